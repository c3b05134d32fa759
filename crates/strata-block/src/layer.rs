//! [`BlockLayer`]: the block core plus the jobs, the event queue and the
//! virtual clock; the typed operations behind QEMU's QMP commands.

use crate::core::{BlockCore, ThrottleGroup};
use crate::error::{Error, Result};
use crate::files::Files;
use crate::jobs::{BlockJob, CommitArgs, Launch, StreamArgs};
use crate::main_loop::{visible, MainLoop, MonitorTurn, Runnable, Wakeup};
use std::collections::BTreeMap;
use strata_jobs::{Cancel, JobEvent, JobStatus, Jobs, Lookup, Wait};

/// An event with the virtual time it was emitted at.
#[derive(Clone, PartialEq, Debug)]
pub struct TimedEvent {
    /// Virtual nanoseconds since the layer was created.
    pub time_ns: u64,
    /// The event.
    pub event: JobEvent,
}

/// The block layer as one value: graph, images, drivers, throttle groups,
/// jobs, events, a virtual clock and a seeded RNG (for generated node
/// names). It never reads the wall clock and never spawns a thread.
#[derive(Clone, Debug)]
pub struct BlockLayer<F: Files> {
    pub(crate) core: BlockCore<F>,
    pub(crate) jobs: Jobs<BlockCore<F>, BlockJob>,
    pub(crate) events: Vec<TimedEvent>,
    pub(crate) main_loop: MainLoop,
}

impl<F: Files> BlockLayer<F> {
    /// A block layer over `files`; `seed` drives generated node names.
    pub fn new(files: F, seed: u64) -> BlockLayer<F> {
        BlockLayer {
            core: BlockCore::new(files, seed),
            jobs: Jobs::new(),
            events: Vec::new(),
            main_loop: MainLoop::default(),
        }
    }

    /// Runs the block layer under another [`crate::policy::Policy`] than
    /// QEMU 10.0's (jobs started from now on follow it).
    pub fn set_policy(&mut self, policy: &'static crate::policy::Policy) {
        self.core.policy = policy;
    }

    /// The policy the block layer follows.
    pub fn policy(&self) -> &'static crate::policy::Policy {
        self.core.policy
    }

    /// The graph, drivers and files.
    pub fn core(&self) -> &BlockCore<F> {
        &self.core
    }

    /// Mutable access to the core (I/O from exports, image creation).
    pub fn core_mut(&mut self) -> &mut BlockCore<F> {
        &mut self.core
    }

    /// The jobs.
    pub fn jobs(&self) -> &Jobs<BlockCore<F>, BlockJob> {
        &self.jobs
    }

    /// Takes the events emitted so far.
    pub fn take_events(&mut self) -> Vec<TimedEvent> {
        std::mem::take(&mut self.events)
    }

    /// The virtual clock.
    pub fn now_ns(&self) -> u64 {
        self.core.now_ns
    }

    /// Moves the virtual clock forward (never back).
    pub fn advance_to(&mut self, now_ns: u64) {
        self.core.now_ns = self.core.now_ns.max(now_ns);
    }

    pub(crate) fn emit(&mut self, events: Vec<JobEvent>) {
        let time_ns = self.core.now_ns;
        self.events.extend(
            events
                .into_iter()
                .map(|event| TimedEvent { time_ns, event }),
        );
    }

    pub(crate) fn with_jobs<T>(
        &mut self,
        op: impl FnOnce(&mut Jobs<BlockCore<F>, BlockJob>, &mut BlockCore<F>, &mut Vec<JobEvent>) -> T,
    ) -> T {
        let mut events = Vec::new();
        let result = op(&mut self.jobs, &mut self.core, &mut events);
        self.emit(events);
        result
    }

    // ----- nodes and objects -------------------------------------------------

    /// `blockdev-add`.
    pub fn blockdev_add(&mut self, opts: &strata_graph::Options) -> Result<strata_graph::NodeId> {
        self.core.blockdev_add(opts)
    }

    /// Whether a throttle-group object `id` exists (QOM ids are one
    /// namespace: other objects are refused with the same id).
    pub fn has_throttle_group(&self, id: &str) -> bool {
        self.core.throttle_groups.contains_key(id)
    }

    /// `object-add qom-type=throttle-group`.
    pub fn add_throttle_group(&mut self, id: &str, limits: BTreeMap<String, u64>) -> Result<()> {
        if self.core.throttle_groups.contains_key(id) {
            return Err(Error::generic(format!(
                "attempt to add duplicate property '{id}' to object (type 'container')"
            )));
        }
        self.core.throttle_groups.insert(
            id.to_string(),
            ThrottleGroup {
                limits,
                busy_until: BTreeMap::new(),
            },
        );
        Ok(())
    }

    // ----- jobs ---------------------------------------------------------------

    /// `block-stream`.
    pub fn block_stream(&mut self, args: &StreamArgs) -> Result<()> {
        self.with_jobs(|jobs, core, events| Launch::new(jobs, core, events).block_stream(args))
    }

    /// `block-commit`: QEMU's checks, then an intermediate commit or an
    /// active (mirror-based) commit.
    pub fn block_commit(&mut self, args: &CommitArgs) -> Result<()> {
        self.with_jobs(|jobs, core, events| Launch::new(jobs, core, events).block_commit(args))
    }

    // ----- the main loop ----------------------------------------------------------

    /// The main loop's memory.
    pub fn main_loop(&self) -> &MainLoop {
        &self.main_loop
    }

    /// Feeds the main loop's state that decides what runs next into
    /// `state` (for state keys: see [`MainLoop`]).
    pub fn hash_main_loop<H: std::hash::Hasher>(&self, state: &mut H) {
        self.main_loop.hash_order(&self.jobs, state);
    }

    /// What can run now, in the order QEMU's main loop runs it (see
    /// [`MainLoop`]): the first is the canonical choice.
    /// [`Runnable::Monitor`] is absent while a job must go on without
    /// yielding or a drain runs.
    pub fn runnable(&self) -> Vec<Runnable> {
        let mut runnable = self.main_loop.runnable(&self.jobs, self.core.now_ns);
        self.core.breakpoints.hold_suspended(&mut runnable);
        runnable
    }

    /// Steps job `id` once at the current virtual time, as the main loop
    /// does: it remembers whether the job yielded and when.
    pub fn step_job(&mut self, id: &str) -> Result<Wait> {
        let progress = |layer: &Self| visible(&layer.jobs, id).map(|j| j.progress().0);
        let before = progress(self);
        let now = self.core.now_ns;
        self.core.breakpoints.issuer = Some(id.to_string());
        let wait = self.with_jobs(|jobs, core, events| jobs.step(id, core, now, events));
        self.core.breakpoints.issuer = None;
        let wait = wait?;
        let progressed = progress(self) != before;
        self.main_loop.stepped(id, wait, progressed);
        Ok(wait)
    }

    /// The monitor's turn begins: whatever stepped last has yielded.
    pub fn begin_monitor_turn(&mut self) -> MonitorTurn {
        let events_before = self.events.len();
        self.main_loop
            .begin_monitor_turn(&self.jobs, self.core.now_ns, events_before)
    }

    /// The monitor's turn ends: the jobs the command started or woke run
    /// before anything else.
    pub fn end_monitor_turn(&mut self, turn: MonitorTurn) {
        let from = turn.events_before.min(self.events.len());
        let command_events = self.events[from..].iter().map(|e| &e.event);
        self.main_loop
            .end_monitor_turn(turn, &self.jobs, self.core.now_ns, command_events);
    }

    /// The daemon's stepping: while the main loop lists a job first, moves
    /// the clock to `now()` and steps that job, until `keep_going` says the
    /// monitor's turn has come anyway. Returns how many steps ran.
    pub fn run_jobs(
        &mut self,
        now: &mut dyn FnMut() -> u64,
        keep_going: &mut dyn FnMut() -> bool,
    ) -> Result<usize> {
        let mut steps = 0;
        loop {
            self.advance_to(now());
            let Some(Runnable::Job(id)) = self.runnable().into_iter().next() else {
                return Ok(steps);
            };
            self.step_job(&id)?;
            steps += 1;
            if !keep_going() {
                return Ok(steps);
            }
        }
    }

    /// `job_cancel_sync_all`, what qemu-storage-daemon does once its main
    /// loop has ended (`quit`, a signal): the job at the head of the job
    /// list (the newest: `job_create` inserts at the head) is cancelled
    /// with force and run to its end (`job_cancel_sync` →
    /// `job_finish_sync`), then the next head, until no job is left. A job
    /// that concluded and waits for its dismiss is dismissed by the cancel.
    /// The other jobs do not move meanwhile (`bdrv_drain_all_begin` paused
    /// them), so only the cancelled job steps, its sleeps passing at once.
    pub fn cancel_sync_all(&mut self) -> Result<()> {
        while let Some(head) = self.jobs.iter().last() {
            let (id, concluded) = (head.id().to_string(), head.status() == JobStatus::Concluded);
            if concluded {
                // `job_cancel_locked` (no verb check on this path) dismisses
                // a concluded job.
                self.dismiss(Lookup::Job, &id)?;
            } else {
                self.cancel(Cancel::Job, &id)?;
                self.finish_sync(&id)?;
            }
        }
        Ok(())
    }

    /// `job_finish_sync`: steps job `id` alone until it is completed
    /// (`concluded`, waiting for its dismiss) or gone.
    fn finish_sync(&mut self, id: &str) -> Result<()> {
        loop {
            match self.jobs.wait(id) {
                Wait::Runnable => {
                    self.step_job(id)?;
                }
                Wait::SleepUntil(t) => self.advance_to(t),
                Wait::Done | Wait::NotStarted | Wait::WaitVerb => return Ok(()),
            }
        }
    }

    /// What the main loop does next if no command comes: the daemon polls
    /// its sockets without waiting, until the timer, or until a client
    /// speaks.
    pub fn next_wakeup(&self) -> Wakeup {
        let wakeup = self.main_loop.next_wakeup(&self.jobs, self.core.now_ns);
        match (wakeup, self.runnable().first()) {
            // Only suspended jobs could run: nothing moves until a
            // command resumes them.
            (Wakeup::Now, Some(Runnable::Monitor)) => Wakeup::Monitor,
            _ => wakeup,
        }
    }

    /// The ids of the jobs that can step now, in creation order.
    pub fn runnable_jobs(&self) -> Vec<String> {
        self.jobs
            .runnable_at(self.core.now_ns)
            .map(str::to_string)
            .collect()
    }

    /// The earliest timer of a sleeping job.
    pub fn next_timer(&self) -> Option<u64> {
        self.jobs.next_timer()
    }

    /// Runs jobs in the main loop's order until none can step, jumping the
    /// clock to the next timer whenever all of them sleep, up to `limit_ns`.
    pub fn run_until_idle(&mut self, limit_ns: u64) -> Result<()> {
        loop {
            if let Some(Runnable::Job(id)) = self.runnable().into_iter().next() {
                self.step_job(&id)?;
                continue;
            }
            match self.next_timer() {
                Some(t) if t <= limit_ns => self.advance_to(t),
                _ => return Ok(()),
            }
        }
    }

    /// `block-job-set-speed` / the `speed` of `job-change`.
    pub fn set_speed(&mut self, id: &str, speed: i64) -> Result<()> {
        Ok(self.with_jobs(|jobs, core, events| jobs.set_speed(id, speed, core, events))?)
    }

    /// `job-pause` / `block-job-pause`.
    pub fn pause(&mut self, lookup: Lookup, id: &str) -> Result<()> {
        Ok(self.with_jobs(|jobs, core, events| jobs.pause(lookup, id, core, events))?)
    }

    /// `job-resume` / `block-job-resume`.
    pub fn resume(&mut self, lookup: Lookup, id: &str) -> Result<()> {
        Ok(self.with_jobs(|jobs, core, events| jobs.resume(lookup, id, core, events))?)
    }

    /// `job-cancel` / `block-job-cancel`.
    pub fn cancel(&mut self, how: Cancel, id: &str) -> Result<()> {
        Ok(self.with_jobs(|jobs, core, events| jobs.cancel(how, id, core, events))?)
    }

    /// `job-complete` / `block-job-complete`.
    pub fn complete(&mut self, lookup: Lookup, id: &str) -> Result<()> {
        Ok(self.with_jobs(|jobs, core, events| jobs.complete(lookup, id, core, events))?)
    }

    /// `job-finalize` / `block-job-finalize`.
    pub fn finalize(&mut self, lookup: Lookup, id: &str) -> Result<()> {
        Ok(self.with_jobs(|jobs, core, events| jobs.finalize(lookup, id, core, events))?)
    }

    /// `job-dismiss` / `block-job-dismiss`.
    pub fn dismiss(&mut self, lookup: Lookup, id: &str) -> Result<()> {
        Ok(self.with_jobs(|jobs, core, events| jobs.dismiss(lookup, id, core, events))?)
    }
}
