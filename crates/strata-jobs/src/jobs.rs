//! The job registry: creation, stepping, the QMP verbs and the queries.

use crate::driver::JobDriver;
use crate::error::{Error, ErrorKind, Result};
use crate::event::JobEvent;
use crate::info::{BlockJobInfo, JobInfo};
use crate::job::{Co, JobCore, JobSpec, MainLoop, Wait};
use crate::status::{JobStatus, JobTable, JobVerb, MirrorCopyMode};
use std::marker::PhantomData;

/// Which QMP command family looks the job up; they differ in the error for
/// an unknown ID and in which jobs they see.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lookup {
    /// `job-*`: any job; unknown IDs give `Job not found`.
    Job,
    /// `block-job-*`: block jobs only; unknown IDs give `Block job '<id>'
    /// not found` (class DeviceNotActive).
    BlockJob,
}

/// The two cancel commands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cancel {
    /// `job-cancel`: always forced.
    Job,
    /// `block-job-cancel` with its `force` argument (default false); it
    /// refuses a user-paused job unless forced.
    BlockJob {
        /// QMP `force`.
        force: bool,
    },
}

/// `id_wellformed` (util/id.c): an ASCII letter, then ASCII letters,
/// digits, `-`, `.` or `_`. There is no length limit for job IDs.
pub fn id_wellformed(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

#[derive(Clone, Debug, Hash)]
struct Entry<D> {
    core: JobCore,
    driver: D,
}

/// All jobs, in creation order, each with its driver `D` over the block
/// layer context `C`. Every job is alone in its transaction (QMP
/// `transaction` with grouped completion is not modelled).
///
/// **Who runs what.** Verbs change flags and may wake a job (make it
/// [`Wait::Runnable`]) but never run its coroutine: QEMU would run it at
/// once inside `job_enter`, here the caller steps it. A verb first
/// *settles* the main-loop work QEMU does in one go (prepare, commit or
/// abort, clean, conclusion), because no QMP command can run between those
/// in QEMU.
pub struct Jobs<C, D> {
    entries: Vec<Entry<D>>,
    context: PhantomData<fn(&mut C)>,
}

// Manual impls: `C` is only a marker and need not be `Clone` or `Debug`.
impl<C, D: Clone> Clone for Jobs<C, D> {
    fn clone(&self) -> Self {
        Jobs {
            entries: self.entries.clone(),
            context: PhantomData,
        }
    }
}

impl<C, D: std::fmt::Debug> std::fmt::Debug for Jobs<C, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.iter()).finish()
    }
}

/// Every job's core state and driver, in creation order: what a state key
/// needs of the jobs.
impl<C, D: std::hash::Hash> std::hash::Hash for Jobs<C, D> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.entries.hash(state);
    }
}

impl<C, D: JobDriver<C>> Default for Jobs<C, D> {
    fn default() -> Self {
        Jobs::new()
    }
}

impl<C, D: JobDriver<C>> Jobs<C, D> {
    /// No jobs.
    pub fn new() -> Self {
        Jobs {
            entries: Vec::new(),
            context: PhantomData,
        }
    }

    /// How many jobs exist (not yet `null`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no jobs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The job `id`'s core state.
    pub fn get(&self, id: &str) -> Option<&JobCore> {
        self.position(id).map(|i| &self.entries[i].core)
    }

    /// The job `id`'s driver.
    pub fn driver(&self, id: &str) -> Option<&D> {
        self.position(id).map(|i| &self.entries[i].driver)
    }

    /// The job `id`'s driver, mutably (e.g. for a simulator's fault injection).
    pub fn driver_mut(&mut self, id: &str) -> Option<&mut D> {
        self.position(id).map(|i| &mut self.entries[i].driver)
    }

    /// The jobs in creation order (oldest first).
    pub fn iter(&self) -> impl Iterator<Item = &JobCore> {
        self.entries.iter().map(|e| &e.core)
    }

    /// What job `id` waits for ([`Wait::Done`] once it is gone).
    pub fn wait(&self, id: &str) -> Wait {
        self.get(id).map_or(Wait::Done, JobCore::next_wait)
    }

    /// The earliest armed sleep timer of any job.
    pub fn next_timer(&self) -> Option<u64> {
        self.iter()
            .filter_map(|job| match job.next_wait() {
                Wait::SleepUntil(t) => Some(t),
                _ => None,
            })
            .min()
    }

    /// The jobs that can step at `now_ns` (runnable, or their timer
    /// expired), in creation order: the choices of a scheduler.
    pub fn runnable_at(&self, now_ns: u64) -> impl Iterator<Item = &str> + '_ {
        self.iter()
            .filter(move |job| match job.next_wait() {
                Wait::Runnable => true,
                Wait::SleepUntil(t) => t <= now_ns,
                _ => false,
            })
            .map(JobCore::id)
    }

    /// `child_job_drained_poll`: whether a drain must still wait for job
    /// `id` (it is busy, not completed, and its driver does not say
    /// otherwise). A drain pauses the job ([`Jobs::pause_internal`]) and
    /// steps it while this holds; a job whose `job_exit` is pending is busy
    /// too, and QEMU runs that bottom half while draining.
    pub fn drained_poll(&self, id: &str) -> bool {
        self.position(id).is_some_and(|i| {
            let Entry { core, driver } = &self.entries[i];
            core.drained_poll() && driver.drained_poll(core)
        })
    }

    /// `job_create`: checks the ID, registers the job (`created`). The
    /// driver's setup may then fail: see [`Jobs::early_fail`].
    pub fn create(&mut self, spec: JobSpec, driver: D, events: &mut Vec<JobEvent>) -> Result<()> {
        if !id_wellformed(spec.id()) {
            return Err(Error::new(ErrorKind::InvalidId(spec.id().to_string())));
        }
        if self.position(spec.id()).is_some() {
            return Err(Error::new(ErrorKind::IdInUse(spec.id().to_string())));
        }
        let mut core = JobCore::new(spec, driver.job_type());
        core.transition(JobStatus::Created, events)?;
        self.entries.push(Entry { core, driver });
        Ok(())
    }

    /// `job_early_fail`: a created job whose setup failed goes `null`.
    pub fn early_fail(&mut self, id: &str, ctx: &mut C, events: &mut Vec<JobEvent>) -> Result<()> {
        let i = self.find(Lookup::Job, id)?;
        let core = &mut self.entries[i].core;
        debug_assert_eq!(core.status(), JobStatus::Created);
        core.dismiss(events)?;
        self.reap(ctx);
        Ok(())
    }

    /// `job_start`: `running`; the job is runnable (its first step is the
    /// pause point before `run()`).
    pub fn start(&mut self, id: &str, events: &mut Vec<JobEvent>) -> Result<()> {
        let i = self.find(Lookup::Job, id)?;
        self.entries[i].core.start(events)
    }

    /// Runs job `id` to its next yield, or through one main-loop phase,
    /// at virtual time `now_ns`. A sleeping job may step once its timer
    /// expired. Returns what it waits for next.
    pub fn step(
        &mut self,
        id: &str,
        ctx: &mut C,
        now_ns: u64,
        events: &mut Vec<JobEvent>,
    ) -> Result<Wait> {
        let i = self.find(Lookup::Job, id)?;
        let Entry { core, driver } = &mut self.entries[i];
        let result = core.step(driver, ctx, now_ns, events);
        let wait = core.next_wait();
        self.reap(ctx);
        result.map(|()| wait)
    }

    // ------------------------------------------------------------------ verbs

    /// `job-pause` / `block-job-pause` (`job_user_pause`).
    pub fn pause(
        &mut self,
        lookup: Lookup,
        id: &str,
        ctx: &mut C,
        events: &mut Vec<JobEvent>,
    ) -> Result<()> {
        let i = self.settle_and_find(lookup, id, ctx, events)?;
        let core = &mut self.entries[i].core;
        check_verb(core, JobVerb::Pause)?;
        if core.user_paused() {
            return Err(Error::new(ErrorKind::AlreadyPaused));
        }
        core.set_user_paused(true);
        core.pause();
        Ok(())
    }

    /// `job-resume` / `block-job-resume` (`job_user_resume`): the
    /// "not paused" check comes before the verb check, as in QEMU.
    pub fn resume(
        &mut self,
        lookup: Lookup,
        id: &str,
        ctx: &mut C,
        events: &mut Vec<JobEvent>,
    ) -> Result<()> {
        let i = self.settle_and_find(lookup, id, ctx, events)?;
        let core = &mut self.entries[i].core;
        if !core.user_paused() || core.pause_count() == 0 {
            return Err(Error::new(ErrorKind::NotPaused));
        }
        check_verb(core, JobVerb::Resume)?;
        if core.job_type().is_block_job() {
            core.iostatus_reset();
        }
        core.set_user_paused(false);
        core.resume();
        Ok(())
    }

    /// `job-cancel` / `block-job-cancel` (`job_user_cancel` →
    /// `job_cancel_locked`).
    pub fn cancel(
        &mut self,
        how: Cancel,
        id: &str,
        ctx: &mut C,
        events: &mut Vec<JobEvent>,
    ) -> Result<()> {
        let (lookup, force) = match how {
            Cancel::Job => (Lookup::Job, true),
            Cancel::BlockJob { force } => (Lookup::BlockJob, force),
        };
        let i = self.settle_and_find(lookup, id, ctx, events)?;
        let Entry { core, driver } = &mut self.entries[i];
        if lookup == Lookup::BlockJob && core.user_paused() && !force {
            return Err(Error::new(ErrorKind::BlockJobPaused(id.to_string())));
        }
        check_verb(core, JobVerb::Cancel)?;
        if core.status() == JobStatus::Concluded {
            core.dismiss(events)?;
            self.reap(ctx);
            return Ok(());
        }
        // job_cancel_async: the driver may upgrade (or keep) force.
        let force = driver.cancel(core, force);
        core.mark_cancelled(force);
        if !core.started() {
            core.completed(events)?;
        } else if core.deferred_to_main_loop() {
            if core.is_cancelled() {
                core.abort_deferred(events)?;
            }
        } else {
            core.enter_if(|_| true);
        }
        Ok(())
    }

    /// `job-complete` / `block-job-complete` (`job_complete_locked`).
    pub fn complete(
        &mut self,
        lookup: Lookup,
        id: &str,
        ctx: &mut C,
        events: &mut Vec<JobEvent>,
    ) -> Result<()> {
        let i = self.settle_and_find(lookup, id, ctx, events)?;
        let Entry { core, driver } = &mut self.entries[i];
        check_verb(core, JobVerb::Complete)?;
        if core.cancel_requested() || !driver.can_complete() {
            return Err(Error::new(ErrorKind::CannotComplete(id.to_string())));
        }
        driver
            .complete(core, ctx)
            .map_err(|text| Error::new(ErrorKind::Driver(text)))?;
        // mirror_complete: a paused job is entered when it is resumed.
        if !core.paused() {
            core.enter_if(|_| true);
        }
        Ok(())
    }

    /// `job-finalize` / `block-job-finalize`: the pending job becomes
    /// runnable through prepare, commit/abort, clean and conclusion.
    pub fn finalize(
        &mut self,
        lookup: Lookup,
        id: &str,
        ctx: &mut C,
        events: &mut Vec<JobEvent>,
    ) -> Result<()> {
        let i = self.settle_and_find(lookup, id, ctx, events)?;
        let core = &mut self.entries[i].core;
        check_verb(core, JobVerb::Finalize)?;
        core.begin_finalize();
        Ok(())
    }

    /// `job-dismiss` / `block-job-dismiss`: a concluded job goes `null`.
    pub fn dismiss(
        &mut self,
        lookup: Lookup,
        id: &str,
        ctx: &mut C,
        events: &mut Vec<JobEvent>,
    ) -> Result<()> {
        let i = self.settle_and_find(lookup, id, ctx, events)?;
        let core = &mut self.entries[i].core;
        check_verb(core, JobVerb::Dismiss)?;
        core.dismiss(events)?;
        self.reap(ctx);
        Ok(())
    }

    /// `block-job-set-speed` (`block_job_set_speed`; also what
    /// `block_job_create` does with the creation `speed`). A higher speed
    /// or 0 wakes a sleeping job, which then re-evaluates its delay.
    pub fn set_speed(
        &mut self,
        id: &str,
        speed: i64,
        ctx: &mut C,
        events: &mut Vec<JobEvent>,
    ) -> Result<()> {
        let i = self.settle_and_find(Lookup::BlockJob, id, ctx, events)?;
        let Entry { core, driver } = &mut self.entries[i];
        check_verb(core, JobVerb::SetSpeed)?;
        let speed = u64::try_from(speed).map_err(|_| Error::new(ErrorKind::NegativeSpeed))?;
        let kick = core.store_speed(speed);
        driver.set_speed(speed);
        if kick {
            core.enter_if(|co| matches!(co, Co::Sleeping { .. }));
        }
        Ok(())
    }

    /// `block-job-change` (`block_job_change`).
    pub fn change(
        &mut self,
        id: &str,
        copy_mode: MirrorCopyMode,
        ctx: &mut C,
        events: &mut Vec<JobEvent>,
    ) -> Result<()> {
        let i = self.settle_and_find(Lookup::BlockJob, id, ctx, events)?;
        let Entry { core, driver } = &mut self.entries[i];
        check_verb(core, JobVerb::Change)?;
        match driver.change(core, ctx, copy_mode) {
            None => Err(Error::new(ErrorKind::ChangeUnsupported)),
            Some(result) => result.map_err(|text| Error::new(ErrorKind::Driver(text))),
        }
    }

    /// `job_pause` without the user: a drain (`child_job_drained_begin`)
    /// or another internal pause. Wakes a sleeping job so that it reaches
    /// its pause point.
    pub fn pause_internal(&mut self, id: &str) -> Result<()> {
        let i = self.find(Lookup::Job, id)?;
        self.entries[i].core.pause();
        Ok(())
    }

    /// `job_resume` without the user: the end of a drain. A resume without
    /// a pending pause is refused (QEMU asserts) with
    /// [`ErrorKind::NotPaused`].
    pub fn resume_internal(&mut self, id: &str) -> Result<()> {
        let i = self.find(Lookup::Job, id)?;
        let core = &mut self.entries[i].core;
        if core.pause_count() == 0 {
            return Err(Error::new(ErrorKind::NotPaused));
        }
        core.resume();
        Ok(())
    }

    // ---------------------------------------------------------------- queries

    /// Finishes, for every job, the main-loop work QEMU does in one go once
    /// it has begun (prepare, commit/abort, clean, conclusion): no QMP
    /// command can observe a job between those. Every verb settles first;
    /// a QMP layer settles before `query-jobs` and `query-block-jobs` too.
    pub fn settle(&mut self, ctx: &mut C, events: &mut Vec<JobEvent>) -> Result<()> {
        for Entry { core, driver } in &mut self.entries {
            while core.co == Co::Freeing
                || matches!(core.co, Co::MainLoop(phase) if phase.is_atomic_continuation())
            {
                core.step(driver, ctx, 0, events)?;
            }
        }
        self.reap(ctx);
        Ok(())
    }

    /// `query-jobs`: newest first, as QEMU inserts jobs at the head of its list.
    pub fn query_jobs(&self) -> Vec<JobInfo> {
        self.entries
            .iter()
            .rev()
            .filter(|e| !e.core.is_freeing())
            .map(|Entry { core, .. }| {
                let (current_progress, total_progress) = core.progress();
                JobInfo {
                    id: core.id().to_string(),
                    job_type: core.job_type(),
                    status: core.status(),
                    current_progress,
                    total_progress,
                    error: core.error().map(str::to_string),
                }
            })
            .collect()
    }

    /// `query-block-jobs`: block jobs only, newest first.
    pub fn query_block_jobs(&self) -> Vec<BlockJobInfo> {
        self.entries
            .iter()
            .rev()
            .filter(|e| e.core.job_type().is_block_job() && !e.core.is_freeing())
            .map(|Entry { core, .. }| {
                let (offset, len) = core.progress();
                BlockJobInfo {
                    job_type: core.job_type(),
                    device: core.id().to_string(),
                    len,
                    offset,
                    busy: core.busy(),
                    paused: core.pause_count() > 0,
                    speed: core.speed(),
                    io_status: core.io_status(),
                    ready: core.is_ready(),
                    status: core.status(),
                    auto_finalize: core.auto_finalize(),
                    auto_dismiss: core.auto_dismiss(),
                    error: core.ret().map(|errno| {
                        core.error()
                            .map_or_else(|| errno.strerror(), str::to_string)
                    }),
                    actively_synced: core.actively_synced(),
                }
            })
            .collect()
    }

    // ---------------------------------------------------------------- helpers

    fn position(&self, id: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.core.id() == id)
    }

    fn find(&self, lookup: Lookup, id: &str) -> Result<usize> {
        match (lookup, self.position(id)) {
            (Lookup::Job, Some(i)) => Ok(i),
            (Lookup::Job, None) => Err(Error::new(ErrorKind::JobNotFound)),
            (Lookup::BlockJob, Some(i)) if self.entries[i].core.job_type().is_block_job() => Ok(i),
            (Lookup::BlockJob, _) => Err(Error::new(ErrorKind::BlockJobNotFound(id.to_string()))),
        }
    }

    fn settle_and_find(
        &mut self,
        lookup: Lookup,
        id: &str,
        ctx: &mut C,
        events: &mut Vec<JobEvent>,
    ) -> Result<usize> {
        self.settle(ctx, events)?;
        self.find(lookup, id)
    }

    /// Frees jobs that reached `null` (`job_unref` → `.free`).
    fn reap(&mut self, ctx: &mut C) {
        for Entry { core, driver } in &mut self.entries {
            if core.co == Co::Gone {
                driver.free(core, ctx);
            }
        }
        self.entries.retain(|e| e.core.co != Co::Gone);
    }
}

fn check_verb(core: &JobCore, verb: JobVerb) -> Result<()> {
    if JobTable::verb_allowed(verb, core.status()) {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::VerbRefused {
            id: core.id().to_string(),
            status: core.status(),
            verb,
        }))
    }
}

impl MainLoop {
    #[cfg(test)]
    fn all() -> [MainLoop; 7] {
        [
            MainLoop::Exit,
            MainLoop::Prepare,
            MainLoop::Finish,
            MainLoop::Clean,
            MainLoop::Conclude,
            MainLoop::AwaitFinalize,
            MainLoop::AwaitDismiss,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_wellformed_follows_util_id_c() {
        for ok in ["a", "drive0", "a-b.c_d", "Z9", &"x".repeat(200)] {
            assert!(id_wellformed(ok), "{ok}");
        }
        for bad in ["", "1bad", "-a", "a b", "a/b", "é", "_x"] {
            assert!(!id_wellformed(bad), "{bad}");
        }
    }

    #[test]
    fn only_the_finalization_phases_are_settled() {
        let atomic: Vec<_> = MainLoop::all()
            .into_iter()
            .filter(|p| p.is_atomic_continuation())
            .collect();
        assert_eq!(
            atomic,
            [
                MainLoop::Prepare,
                MainLoop::Finish,
                MainLoop::Clean,
                MainLoop::Conclude
            ]
        );
    }
}
