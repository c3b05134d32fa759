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

use strata_jobs::{JobCore, JobDriver, JobEvent, JobStatus, Jobs, Wait};

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
    pub(crate) events_before: usize,
}

impl MainLoop {
    /// The jobs a command entered that have not yielded yet, in the order
    /// they were entered.
    pub fn entered(&self) -> &[String] {
        &self.entered
    }

    /// Feeds what decides the main loop's future order into `state`, and
    /// nothing else: the entered jobs, the job running on only while it is
    /// in its completion (where it goes on alone), and the order in which
    /// the jobs still listed last yielded (not the counter itself, which
    /// only grows: two states whose jobs yielded in the same order behave
    /// the same).
    pub(crate) fn hash_order<C, D: JobDriver<C>, H: std::hash::Hasher>(
        &self,
        jobs: &Jobs<C, D>,
        state: &mut H,
    ) {
        let running = self.running.as_deref().filter(|id| {
            visible(jobs, id).is_some_and(|j| {
                matches!(
                    j.status(),
                    JobStatus::Waiting | JobStatus::Pending | JobStatus::Aborting
                )
            })
        });
        let mut by_yield: Vec<(u64, &str)> = jobs
            .iter()
            .map(|j| (self.yield_order(j.id()), j.id()))
            .collect();
        by_yield.sort();
        let order: Vec<&str> = by_yield.into_iter().map(|(_, job)| job).collect();
        (&self.entered, running, order).hash(state);
    }

    fn yield_order(&self, job: &str) -> u64 {
        self.yielded.get(job).copied().unwrap_or(0)
    }

    /// What can run at `now_ns`, in the order QEMU's main loop runs it.
    pub(crate) fn runnable<C, D: JobDriver<C>>(
        &self,
        jobs: &Jobs<C, D>,
        now_ns: u64,
    ) -> Vec<Runnable> {
        let ready: Vec<String> = jobs.runnable_at(now_ns).map(str::to_string).collect();
        if let Some(job) = self.atomic_job(jobs, &ready) {
            return vec![Runnable::Job(job)];
        }
        if let Some(closing) = jobs.iter().find(|j| j.is_freeing()) {
            return self.drain_order(jobs, closing.id());
        }
        let (entered, mut others): (Vec<String>, Vec<String>) =
            ready.into_iter().partition(|j| self.entered.contains(j));
        others.sort_by_key(|j| self.yield_order(j));
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
    fn atomic_job<C, D: JobDriver<C>>(
        &self,
        jobs: &Jobs<C, D>,
        ready: &[String],
    ) -> Option<String> {
        let in_completion = |id: &str| {
            visible(jobs, id).is_some_and(|j| {
                matches!(
                    j.status(),
                    JobStatus::Waiting | JobStatus::Pending | JobStatus::Aborting
                )
            })
        };
        ready
            .iter()
            .find(|j| {
                self.entered.contains(j)
                    || (self.running.as_deref() == Some(j.as_str()) && in_completion(j))
            })
            .cloned()
    }

    /// `bdrv_close`'s drain: the pending completions of other jobs (oldest
    /// yield first), then the closing job itself.
    fn drain_order<C, D: JobDriver<C>>(&self, jobs: &Jobs<C, D>, closing: &str) -> Vec<Runnable> {
        let mut pending: Vec<String> = jobs
            .iter()
            .filter(|j| j.exit_pending())
            .map(|j| j.id().to_string())
            .collect();
        pending.sort_by_key(|j| self.yield_order(j));
        pending
            .into_iter()
            .chain([closing.to_string()])
            .map(Runnable::Job)
            .collect()
    }

    /// Job `id` stepped and returned `wait`, having copied something or
    /// not: it runs on if it did not yield, and it yielded now.
    pub(crate) fn stepped(&mut self, id: &str, wait: Wait, progressed: bool) {
        self.running = (wait == Wait::Runnable).then(|| id.to_string());
        self.yields += 1;
        self.yielded.insert(id.to_string(), self.yields);
        // An entered job runs until it yields: after a sleep, or after one
        // iteration of its copy loop (its zero-length rate-limit sleep
        // yields too).
        if wait != Wait::Runnable || progressed {
            self.entered.retain(|j| j != id);
        }
    }

    /// The monitor's turn begins: whatever stepped last has yielded.
    pub(crate) fn begin_monitor_turn<C, D: JobDriver<C>>(
        &mut self,
        jobs: &Jobs<C, D>,
        now_ns: u64,
        events_before: usize,
    ) -> MonitorTurn {
        self.running = None;
        let sleeping = jobs
            .iter()
            .filter(|j| matches!(j.next_wait(), Wait::SleepUntil(t) if t > now_ns))
            .map(|j| j.id().to_string())
            .collect();
        MonitorTurn {
            sleeping,
            events_before,
        }
    }

    /// The monitor's turn ends: the jobs the command created
    /// (`job_start` enters them) and the sleeping jobs it woke
    /// (`job_enter_cond`) run before anything else.
    pub(crate) fn end_monitor_turn<'e, C, D: JobDriver<C>>(
        &mut self,
        turn: MonitorTurn,
        jobs: &Jobs<C, D>,
        now_ns: u64,
        command_events: impl Iterator<Item = &'e JobEvent>,
    ) {
        let created = command_events.filter_map(|e| match e {
            JobEvent::JobStatusChange {
                id,
                status: JobStatus::Created,
            } => Some(id.clone()),
            _ => None,
        });
        self.entered.extend(created);
        let ready: Vec<&str> = jobs.runnable_at(now_ns).collect();
        for job in turn.sleeping {
            if ready.contains(&job.as_str()) && !self.entered.contains(&job) {
                self.entered.push(job);
            }
        }
    }

    /// What the main loop does next if no command comes.
    pub(crate) fn next_wakeup<C, D: JobDriver<C>>(&self, jobs: &Jobs<C, D>, now_ns: u64) -> Wakeup {
        match (self.runnable(jobs, now_ns).first(), jobs.next_timer()) {
            (Some(Runnable::Job(_)), _) => Wakeup::Now,
            (_, Some(t)) => Wakeup::Timer(t),
            (_, None) => Wakeup::Monitor,
        }
    }
}

/// A job as `query-jobs` sees it: a job being freed is gone.
pub(crate) fn visible<'j, C, D: JobDriver<C>>(
    jobs: &'j Jobs<C, D>,
    id: &str,
) -> Option<&'j JobCore> {
    jobs.get(id).filter(|j| !j.is_freeing())
}
