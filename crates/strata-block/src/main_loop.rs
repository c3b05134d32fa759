//! [`MainLoop`]: the order in which QEMU's main loop runs things when
//! several could run, kept once for everyone who steps the block layer.
//!
//! QEMU runs one thing at a time in its main loop: a job's coroutine until
//! it yields, a bottom half, an expired timer, the monitor's next command.
//! Which of them goes next when several are ready is what decides the
//! outcome of concurrent jobs, so it exists here only:
//! [`BlockLayer::runnable`] lists what can run now in the canonical order.
//! The daemon steps the first listed job until the monitor's turn comes
//! ([`BlockLayer::run_jobs`]); the simulator's canonical scheduler always
//! takes the first; every other scheduler chooses among what is listed.
//!
//! The rules, from QEMU 10.0's main loop:
//! * a job that a command just entered (`job_start`, or `job_enter` of a
//!   sleeping job woken by `block-job-set-speed`, `job-resume`, ...) runs
//!   until it first yields: nothing else is listed;
//! * a job in its completion (`waiting`, `pending`, `aborting`) that stepped
//!   last finishes it in one go (`job_completed` does not yield);
//! * while a job's free closes a node, `bdrv_close` drains, and the drain
//!   runs the other jobs' pending completions first (oldest first); the
//!   monitor is not polled there;
//! * otherwise the jobs whose timers fired run before the monitor reads the
//!   next command, in the order they yielded (QEMU's timer list is ordered
//!   by arming), and the monitor comes last.

use std::collections::BTreeMap;
use std::hash::Hash;

use strata_jobs::{Cancel, JobEvent, JobStatus, Wait};

use crate::error::Result;
use crate::files::Files;
use crate::layer::BlockLayer;

/// Something QEMU's main loop can run now.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Runnable {
    /// A job's coroutine, by job id: one step up to its next yield.
    Job(String),
    /// The monitor: a client's next command.
    Monitor,
}

/// What the main loop does next when no command comes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wakeup {
    /// A job is listed first: it steps now.
    Now,
    /// Every job sleeps: the earliest timer, in virtual nanoseconds.
    Timer(u64),
    /// Nothing but the monitor can run.
    Monitor,
}

/// What the main loop remembers of who ran: enough to list the runnable
/// things in QEMU's order.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct MainLoop {
    /// Jobs a command entered that have not yielded yet.
    entered: Vec<String>,
    /// The job that stepped last without yielding.
    running: Option<String>,
    /// When each job last yielded (a sequence number).
    yielded: BTreeMap<String, u64>,
    yields: u64,
}

/// What the main loop noted when the monitor's turn began, to tell which
/// jobs the command entered when it ends.
#[derive(Debug)]
#[must_use = "end the command with BlockLayer::end_monitor_turn"]
pub struct MonitorTurn {
    sleeping: Vec<String>,
    events_before: usize,
}

impl MainLoop {
    /// The jobs a command entered that have not yielded yet, in the order
    /// they were entered.
    pub fn entered(&self) -> &[String] {
        &self.entered
    }

    fn yield_order(&self, job: &str) -> u64 {
        self.yielded.get(job).copied().unwrap_or(0)
    }
}

impl<F: Files> BlockLayer<F> {
    /// The main loop's memory.
    pub fn main_loop(&self) -> &MainLoop {
        &self.main_loop
    }

    /// What can run now, in the order QEMU's main loop runs it: the first
    /// is the canonical choice. [`Runnable::Monitor`] is absent while a job
    /// must go on without yielding or a drain runs.
    pub fn runnable(&self) -> Vec<Runnable> {
        let jobs = self.runnable_jobs();
        if let Some(job) = self.atomic_job(&jobs) {
            return vec![Runnable::Job(job)];
        }
        if let Some(closing) = self.jobs.iter().find(|j| j.is_freeing()) {
            return self.drain_order(closing.id());
        }
        let (entered, mut others): (Vec<String>, Vec<String>) = jobs
            .into_iter()
            .partition(|j| self.main_loop.entered.contains(j));
        others.sort_by_key(|j| self.main_loop.yield_order(j));
        entered
            .into_iter()
            .chain(others)
            .map(Runnable::Job)
            .chain([Runnable::Monitor])
            .collect()
    }

    /// A job in a stretch that QEMU runs without yielding: entered by a
    /// command and not yielded yet, or in its completion after stepping
    /// last.
    fn atomic_job(&self, runnable: &[String]) -> Option<String> {
        let in_completion = |id: &str| {
            self.jobs
                .get(id)
                .filter(|j| !j.is_freeing())
                .is_some_and(|j| {
                    matches!(
                        j.status(),
                        JobStatus::Waiting | JobStatus::Pending | JobStatus::Aborting
                    )
                })
        };
        runnable
            .iter()
            .find(|j| {
                self.main_loop.entered.contains(j)
                    || (self.main_loop.running.as_deref() == Some(j.as_str()) && in_completion(j))
            })
            .cloned()
    }

    /// `bdrv_close`'s drain: the pending completions of other jobs (oldest
    /// yield first), then the closing job itself.
    fn drain_order(&self, closing: &str) -> Vec<Runnable> {
        let mut pending: Vec<String> = self
            .jobs
            .iter()
            .filter(|j| j.exit_pending())
            .map(|j| j.id().to_string())
            .collect();
        pending.sort_by_key(|j| self.main_loop.yield_order(j));
        pending
            .into_iter()
            .chain([closing.to_string()])
            .map(Runnable::Job)
            .collect()
    }

    /// Steps job `id` once at the current virtual time, as the main loop
    /// does: it remembers whether the job yielded and when.
    pub fn step_job(&mut self, id: &str) -> Result<Wait> {
        // As query-jobs sees it: a job being freed is gone.
        let progress = |layer: &Self| {
            layer
                .jobs
                .get(id)
                .filter(|j| !j.is_freeing())
                .map(|j| j.progress().0)
        };
        let before = progress(self);
        let now = self.core.now_ns;
        let wait = self.with_jobs(|jobs, core, events| jobs.step(id, core, now, events))?;
        let main_loop = &mut self.main_loop;
        main_loop.running = (wait == Wait::Runnable).then(|| id.to_string());
        main_loop.yields += 1;
        main_loop.yielded.insert(id.to_string(), main_loop.yields);
        // An entered job runs until it yields: after a sleep, or after one
        // iteration of its copy loop (its zero-length rate-limit sleep
        // yields too).
        if wait != Wait::Runnable || progress(self) != before {
            self.main_loop.entered.retain(|j| j != id);
        }
        Ok(wait)
    }

    /// The monitor's turn begins: whatever stepped last has yielded.
    pub fn begin_monitor_turn(&mut self) -> MonitorTurn {
        self.main_loop.running = None;
        MonitorTurn {
            sleeping: self.sleeping_jobs(),
            events_before: self.events.len(),
        }
    }

    /// The monitor's turn ends: the jobs the command created
    /// (`job_start` enters them) and the sleeping jobs it woke
    /// (`job_enter_cond`) run before anything else.
    pub fn end_monitor_turn(&mut self, turn: MonitorTurn) {
        let created: Vec<String> = self.events[turn.events_before.min(self.events.len())..]
            .iter()
            .filter_map(|e| match &e.event {
                JobEvent::JobStatusChange {
                    id,
                    status: JobStatus::Created,
                } => Some(id.clone()),
                _ => None,
            })
            .collect();
        self.main_loop.entered.extend(created);
        let runnable = self.runnable_jobs();
        for job in turn.sleeping {
            if runnable.contains(&job) && !self.main_loop.entered.contains(&job) {
                self.main_loop.entered.push(job);
            }
        }
    }

    /// The jobs waiting for a timer that has not fired.
    fn sleeping_jobs(&self) -> Vec<String> {
        let now = self.core.now_ns;
        self.jobs
            .iter()
            .filter(|j| matches!(j.next_wait(), Wait::SleepUntil(t) if t > now))
            .map(|j| j.id().to_string())
            .collect()
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
        while let Some(head) = self.jobs.iter().last().map(|j| j.id().to_string()) {
            self.cancel(Cancel::Job, &head)?;
            self.finish_sync(&head)?;
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
        match (self.runnable().first(), self.next_timer()) {
            (Some(Runnable::Job(_)), _) => Wakeup::Now,
            (_, Some(t)) => Wakeup::Timer(t),
            (_, None) => Wakeup::Monitor,
        }
    }
}
