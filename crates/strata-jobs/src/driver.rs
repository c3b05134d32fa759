//! The contract between the job core and a job's driver (QEMU's `JobDriver`
//! / `BlockJobDriver` callbacks), as an explicit step machine.

use crate::error::JobFailure;
use crate::job::{JobCore, JobCtl};
use crate::status::{JobType, MirrorCopyMode};

/// What the driver's `run()` does at the end of one step: the way it
/// yields, or that it returned.
///
/// One [`JobDriver::run_step`] call is what QEMU's `run()` does between two
/// yields. The variants name the QEMU call that ends that stretch.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum RunStep {
    /// The driver yielded for I/O (the job stays busy) and wants to be
    /// called again: no pause point, no timer.
    Continue,
    /// `block_job_ratelimit_sleep()`: sleep as long as the rate limit
    /// demands (always at least one yield, even for 0 ns), passing pause
    /// points, then call the driver again.
    RatelimitSleep,
    /// `job_sleep_ns(ns)`: sleep `ns` nanoseconds (a pause point follows),
    /// unless the job is force-cancelled.
    Sleep(u64),
    /// `job_yield()`: wait until something enters the job (complete,
    /// cancel, pause/resume, `set-speed` does not), then a pause point.
    Yield,
    /// The driver's I/O is in flight until this virtual time (e.g. a
    /// request held by a throttle group): the coroutine yields but the job
    /// stays busy, so there is no pause point, no verb wakes it and drains
    /// wait for it; the next step, at or after that time, calls the driver
    /// again.
    IoWait {
        /// When the I/O completes (absolute virtual ns).
        until_ns: u64,
    },
    /// `job_pause_point()`: pause here if a pause is pending.
    PausePoint,
    /// `run()` returned: `Ok` is ret 0, `Err` the failure.
    Finished(Result<(), JobFailure>),
}

/// A job's driver, generic over the context `C` its callbacks need (the
/// block layer). Every callback is optional except `job_type` and
/// `run_step`; the defaults are what QEMU does when the callback is NULL.
///
/// Callbacks run only inside [`crate::Jobs::step`] (run, prepare,
/// commit/abort, clean, free), inside [`crate::Jobs::settle`] (which every
/// verb does first: prepare, commit/abort, clean, free), or inside the verb
/// that invokes them (cancel, complete, set-speed, change; free for
/// dismiss and early failure).
pub trait JobDriver<C> {
    /// The job's type (`JobDriver.job_type`).
    fn job_type(&self) -> JobType;

    /// One stretch of `run()` between two yields. Use `job` to report
    /// progress, charge the rate limit, apply the error policy, and move
    /// to READY; check [`JobCtl::is_cancelled`] where QEMU's driver does.
    fn run_step(&mut self, job: &mut JobCtl<'_>, ctx: &mut C) -> RunStep;

    /// `.prepare`: runs at finalization when `run()` succeeded and the job
    /// was not force-cancelled. A failure turns the job into an abort.
    fn prepare(&mut self, _job: &JobCore, _ctx: &mut C) -> Result<(), JobFailure> {
        Ok(())
    }

    /// `.commit`: the job succeeded.
    fn commit(&mut self, _job: &JobCore, _ctx: &mut C) {}

    /// `.abort`: the job failed or was cancelled.
    fn abort(&mut self, _job: &JobCore, _ctx: &mut C) {}

    /// `.clean`: after commit or abort, always.
    fn clean(&mut self, _job: &JobCore, _ctx: &mut C) {}

    /// Whether `.free` will close a node (drop the last reference to it).
    /// QEMU's `bdrv_close` drains the node first, and the drain runs every
    /// pending bottom half, so other jobs' pending completions run before
    /// the node goes.
    fn free_closes_a_node(&self, _job: &JobCore, _ctx: &C) -> bool {
        false
    }

    /// Whether the driver has `.complete` (mirror, active commit).
    fn can_complete(&self) -> bool {
        false
    }

    /// `.complete`: called for `job-complete` once the verb table and the
    /// core's checks passed. `Err` is the driver's error text. On success
    /// the core enters the job unless it is paused (as `mirror_complete` does).
    fn complete(&mut self, _job: &JobCore, _ctx: &mut C) -> Result<(), String> {
        Ok(())
    }

    /// `.cancel`: returns the effective `force`. Without a `.cancel` QEMU
    /// treats every cancel as forced (the default); mirror returns
    /// `force || !ready`, so a soft cancel before READY is forced too.
    fn cancel(&mut self, _job: &JobCore, _force: bool) -> bool {
        true
    }

    /// `BlockJobDriver.set_speed`: told the new speed after the core stored it.
    fn set_speed(&mut self, _speed: u64) {}

    /// `.change` (`block-job-change`): `None` when the driver has none
    /// ("Job type does not support change"), else its result.
    fn change(
        &mut self,
        _job: &JobCore,
        _ctx: &mut C,
        _copy_mode: MirrorCopyMode,
    ) -> Option<Result<(), String>> {
        None
    }

    /// `BlockJobDriver.drained_poll`: asked only while the job is busy and
    /// not completed; `false` lets a drain end without waiting for it
    /// (mirror answers by its in-flight requests). The default waits.
    fn drained_poll(&self, _job: &JobCore) -> bool {
        true
    }

    /// `.free` (`block_job_free`): the job reached `null` and leaves the
    /// registry; release its nodes (and op blockers) here.
    fn free(&mut self, _job: &JobCore, _ctx: &mut C) {}
}

impl<C, D: JobDriver<C> + ?Sized> JobDriver<C> for Box<D> {
    fn job_type(&self) -> JobType {
        (**self).job_type()
    }
    fn run_step(&mut self, job: &mut JobCtl<'_>, ctx: &mut C) -> RunStep {
        (**self).run_step(job, ctx)
    }
    fn prepare(&mut self, job: &JobCore, ctx: &mut C) -> Result<(), JobFailure> {
        (**self).prepare(job, ctx)
    }
    fn commit(&mut self, job: &JobCore, ctx: &mut C) {
        (**self).commit(job, ctx)
    }
    fn abort(&mut self, job: &JobCore, ctx: &mut C) {
        (**self).abort(job, ctx)
    }
    fn clean(&mut self, job: &JobCore, ctx: &mut C) {
        (**self).clean(job, ctx)
    }
    fn can_complete(&self) -> bool {
        (**self).can_complete()
    }
    fn complete(&mut self, job: &JobCore, ctx: &mut C) -> Result<(), String> {
        (**self).complete(job, ctx)
    }
    fn cancel(&mut self, job: &JobCore, force: bool) -> bool {
        (**self).cancel(job, force)
    }
    fn set_speed(&mut self, speed: u64) {
        (**self).set_speed(speed)
    }
    fn change(
        &mut self,
        job: &JobCore,
        ctx: &mut C,
        copy_mode: MirrorCopyMode,
    ) -> Option<Result<(), String>> {
        (**self).change(job, ctx, copy_mode)
    }
    fn drained_poll(&self, job: &JobCore) -> bool {
        (**self).drained_poll(job)
    }
    fn free(&mut self, job: &JobCore, ctx: &mut C) {
        (**self).free(job, ctx)
    }
    fn free_closes_a_node(&self, job: &JobCore, ctx: &C) -> bool {
        (**self).free_closes_a_node(job, ctx)
    }
}
