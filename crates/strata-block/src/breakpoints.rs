//! blkdebug's breakpoints (`ACTION_SUSPEND` rules, qemu-io's `break`,
//! `resume`, `remove_break`, `wait_break`): a request that raises a
//! breakpoint's event on its blkdebug node is suspended until a command
//! resumes its tag.
//!
//! Strata's requests are not coroutines: the request that hits a
//! breakpoint completes, and the job that issued it does not run again
//! until the tag is resumed, which is what the job's observers see of a
//! suspended request (it stays busy, it reaches no pause point, it neither
//! progresses nor finishes).

use crate::error::{Error, Result};
use crate::files::Files;
use crate::layer::BlockLayer;
use crate::main_loop::Runnable;
use crate::state::DriverState;
use strata_graph::NodeId;

/// A breakpoint command that found nothing to act on (qemu-io prints
/// `strerror` of QEMU's errno for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakpointError {
    /// No blkdebug node below the device (`-ENOTSUP`).
    NoBlkdebug,
    /// No breakpoint or suspended request has the tag (`-ENOENT`).
    NoSuchTag,
}

/// The breakpoints of every blkdebug node and the suspended requests.
#[derive(Clone, Debug, Default)]
pub(crate) struct Breakpoints {
    /// (blkdebug node, event, tag), in the order they were set.
    rules: Vec<(NodeId, String, String)>,
    /// (blkdebug node, tag, the job whose request it is).
    suspended: Vec<(NodeId, String, Option<String>)>,
    /// The job whose step issues the current requests.
    pub(crate) issuer: Option<String>,
}

impl Breakpoints {
    /// `blkdebug_debug_event`'s `suspend_request`: the first breakpoint
    /// of `event` on `node` fires once and is removed.
    pub(crate) fn hit(&mut self, node: NodeId, event: &str) {
        let Some(i) = self
            .rules
            .iter()
            .position(|(n, e, _)| *n == node && e == event)
        else {
            return;
        };
        let (node, _, tag) = self.rules.remove(i);
        self.suspended.push((node, tag, self.issuer.clone()));
    }

    /// Jobs with a suspended request do not run; the monitor always can.
    pub(crate) fn hold_suspended(&self, runnable: &mut Vec<Runnable>) {
        if self.suspended.is_empty() {
            return;
        }
        runnable.retain(|r| match r {
            Runnable::Job(id) => !self
                .suspended
                .iter()
                .any(|(_, _, job)| job.as_deref() == Some(id.as_str())),
            Runnable::Monitor => true,
        });
        if !runnable.contains(&Runnable::Monitor) {
            runnable.push(Runnable::Monitor);
        }
    }
}

impl<F: Files> BlockLayer<F> {
    /// `bdrv_debug_breakpoint`: a breakpoint on `event` tagged `tag`, on
    /// the first blkdebug node down `node`'s primary children.
    pub fn set_breakpoint(
        &mut self,
        node: NodeId,
        event: &str,
        tag: &str,
    ) -> std::result::Result<(), BreakpointError> {
        let blkdebug = self.blkdebug_below(node).ok_or(BreakpointError::NoBlkdebug)?;
        self.core
            .breakpoints
            .rules
            .push((blkdebug, event.to_string(), tag.to_string()));
        Ok(())
    }

    /// `bdrv_debug_remove_breakpoint`: the breakpoints tagged `tag` go and
    /// the requests they suspended resume.
    pub fn remove_breakpoint(
        &mut self,
        node: NodeId,
        tag: &str,
    ) -> std::result::Result<(), BreakpointError> {
        let blkdebug = self.blkdebug_below(node).ok_or(BreakpointError::NoBlkdebug)?;
        let bp = &mut self.core.breakpoints;
        let before = bp.rules.len() + bp.suspended.len();
        bp.rules.retain(|(n, _, t)| !(*n == blkdebug && t == tag));
        bp.suspended.retain(|(n, t, _)| !(*n == blkdebug && t == tag));
        if bp.rules.len() + bp.suspended.len() == before {
            return Err(BreakpointError::NoSuchTag);
        }
        Ok(())
    }

    /// `bdrv_debug_resume`: the first request suspended with `tag` resumes.
    pub fn resume_breakpoint(
        &mut self,
        node: NodeId,
        tag: &str,
    ) -> std::result::Result<(), BreakpointError> {
        let blkdebug = self.blkdebug_below(node).ok_or(BreakpointError::NoBlkdebug)?;
        let bp = &mut self.core.breakpoints;
        let i = bp
            .suspended
            .iter()
            .position(|(n, t, _)| *n == blkdebug && t == tag)
            .ok_or(BreakpointError::NoSuchTag)?;
        bp.suspended.remove(i);
        Ok(())
    }

    /// `bdrv_debug_is_suspended`: whether a request waits under `tag`.
    pub fn is_suspended(&self, node: NodeId, tag: &str) -> bool {
        let Some(blkdebug) = self.blkdebug_below(node) else {
            return false;
        };
        self.core
            .breakpoints
            .suspended
            .iter()
            .any(|(n, t, _)| *n == blkdebug && t == tag)
    }

    /// `wait_break`: runs the jobs (the clock jumping to their timers, up
    /// to `limit_ns`) until a request is suspended under `tag`.
    pub fn run_until_suspended(&mut self, node: NodeId, tag: &str, limit_ns: u64) -> Result<()> {
        while !self.is_suspended(node, tag) {
            match self.runnable().into_iter().next() {
                Some(Runnable::Job(id)) => {
                    self.step_job(&id)?;
                }
                _ => match self.next_timer() {
                    Some(t) if t <= limit_ns => self.advance_to(t.max(self.now_ns())),
                    _ => return Err(Error::generic("wait_break: nothing left to run")),
                },
            }
        }
        Ok(())
    }

    /// The first blkdebug node from `node` down the primary children
    /// (`bdrv_debug_breakpoint`'s walk).
    fn blkdebug_below(&self, node: NodeId) -> Option<NodeId> {
        let core = &self.core;
        let mut at = Some(node);
        while let Some(n) = at {
            if matches!(core.state.get(&n), Some(DriverState::Blkdebug { .. })) {
                return Some(n);
            }
            let g = core.bg.graph();
            at = g
                .primary_child(n)
                .and_then(|e| g.edge(e).ok())
                .map(|e| e.child());
        }
        None
    }
}
