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

use crate::main_loop::Runnable;
use strata_graph::NodeId;

/// The breakpoints of every blkdebug node and the suspended requests.
#[derive(Clone, Debug, Default)]
pub(crate) struct Breakpoints {
    /// (blkdebug node, event, tag), in the order they were set.
    pub(crate) rules: Vec<(NodeId, String, String)>,
    /// (blkdebug node, tag, the job whose request it is).
    pub(crate) suspended: Vec<(NodeId, String, Option<String>)>,
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
