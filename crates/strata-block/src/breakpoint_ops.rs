//! qemu-io's breakpoint commands on the block layer (`break`, `resume`,
//! `remove_break`, `wait_break`): they find the blkdebug node below a
//! device's node and act on [`crate::breakpoints`]' state.

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

impl<F: Files> BlockLayer<F> {
    /// `bdrv_debug_breakpoint`: a breakpoint on `event` tagged `tag`, on
    /// the first blkdebug node down `node`'s primary children.
    pub fn set_breakpoint(
        &mut self,
        node: NodeId,
        event: &str,
        tag: &str,
    ) -> std::result::Result<(), BreakpointError> {
        let blkdebug = self
            .blkdebug_below(node)
            .ok_or(BreakpointError::NoBlkdebug)?;
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
        let blkdebug = self
            .blkdebug_below(node)
            .ok_or(BreakpointError::NoBlkdebug)?;
        let bp = &mut self.core.breakpoints;
        let before = bp.rules.len() + bp.suspended.len();
        bp.rules.retain(|(n, _, t)| !(*n == blkdebug && t == tag));
        bp.suspended
            .retain(|(n, t, _)| !(*n == blkdebug && t == tag));
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
        let blkdebug = self
            .blkdebug_below(node)
            .ok_or(BreakpointError::NoBlkdebug)?;
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
