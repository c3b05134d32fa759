//! One job: its core state (QEMU's `Job` + `BlockJob` fields), the
//! coroutine it runs, modelled as an explicit resume point, and the handle
//! drivers get while they run.

use crate::error::{Errno, Error, ErrorKind, Result};
use crate::event::JobEvent;
use crate::ratelimit::{RateLimit, BLOCK_JOB_SLICE_TIME};
use crate::status::{
    BlockErrorAction, BlockdevOnError, IoOperation, IoStatus, JobStatus, JobTable, JobType,
};

/// How a job is created: its ID and the QMP options every job has.
/// Built with [`JobSpec::new`] and the `with_*` methods; immutable after.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct JobSpec {
    id: String,
    auto_finalize: bool,
    auto_dismiss: bool,
    on_error: BlockdevOnError,
}

impl JobSpec {
    /// A job `id` with QEMU's defaults: auto-finalize, auto-dismiss,
    /// on-error `report`.
    pub fn new(id: impl Into<String>) -> JobSpec {
        JobSpec {
            id: id.into(),
            auto_finalize: true,
            auto_dismiss: true,
            on_error: BlockdevOnError::Report,
        }
    }

    /// QMP `auto-finalize`.
    pub fn with_auto_finalize(self, auto_finalize: bool) -> JobSpec {
        JobSpec {
            auto_finalize,
            ..self
        }
    }

    /// QMP `auto-dismiss`.
    pub fn with_auto_dismiss(self, auto_dismiss: bool) -> JobSpec {
        JobSpec {
            auto_dismiss,
            ..self
        }
    }

    /// QMP `on-error` (kept for the driver; see [`JobCore::on_error`]).
    pub fn with_on_error(self, on_error: BlockdevOnError) -> JobSpec {
        JobSpec { on_error, ..self }
    }

    /// The job ID.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// What a job waits for: the caller's scheduling information.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wait {
    /// Created but not started ([`crate::Jobs::start`]).
    NotStarted,
    /// It can step now.
    Runnable,
    /// Its timer fires at this virtual time (ns); a step before that is an
    /// error, a verb may wake it earlier.
    SleepUntil(u64),
    /// It waits for a verb: paused, yielded while ready, pending a manual
    /// finalize, concluded waiting for dismiss.
    WaitVerb,
    /// It reached `null` and left the registry.
    Done,
}

/// Where the job's coroutine continues once it runs again.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Resume {
    /// `job_pause_point()`, then `After`.
    PausePoint(After),
    /// Back from the yield of a pause point: restore `status`, then `After`.
    Unpause { status: JobStatus, after: After },
    /// Straight on with `After`.
    Continue(After),
}

/// What comes after a yield or pause point inside `run()`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum After {
    /// Call the driver's `run_step`.
    Run,
    /// Inside `block_job_ratelimit_sleep`'s loop, whose last sleep lasted
    /// `last_delay` ns: sleep again unless that was 0 or the job is cancelled.
    Ratelimit { last_delay: u64 },
}

/// The main-loop part of a job's life, after `run()` returned.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum MainLoop {
    /// `job_exit` is scheduled (a bottom half).
    Exit,
    /// `job_prepare` is next.
    Prepare,
    /// `job_finalize_single`: commit or abort is next.
    Finish,
    /// `.clean` is next.
    Clean,
    /// Events, `concluded`, and maybe dismiss are next.
    Conclude,
    /// `pending`, waiting for `job-finalize`.
    AwaitFinalize,
    /// `concluded`, waiting for `job-dismiss`.
    AwaitDismiss,
}

impl MainLoop {
    /// Phases QEMU runs in one go once it has begun: a verb never sees the
    /// job between them (see [`crate::Jobs`] on settling).
    pub(crate) fn is_atomic_continuation(self) -> bool {
        matches!(
            self,
            MainLoop::Prepare | MainLoop::Finish | MainLoop::Clean | MainLoop::Conclude
        )
    }
}

/// The coroutine's state.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Co {
    NotStarted,
    /// Runnable inside `run()` (busy).
    Busy(Resume),
    /// Busy, waiting for its own I/O to complete at `until`.
    InIo {
        until: u64,
    },
    /// Yielded with the sleep timer armed.
    Sleeping {
        until: u64,
        resume: Resume,
    },
    /// Yielded without a timer (a pause point or `job_yield`).
    Yielded(Resume),
    /// After `run()` returned.
    MainLoop(MainLoop),
    /// `null` and off the job list, but not freed yet: freeing closes a
    /// node, and `bdrv_close` drains it first, which runs every pending
    /// bottom half (`bdrv_drain_poll_top_level`): other jobs' completions
    /// run nested, while the closing node still has its children.
    Freeing,
    /// `null`: freed.
    Gone,
}

/// A job's core state: what job.c and blockjob.c keep in `Job` and
/// `BlockJob`. Read it through the accessors; only the core changes it.
#[derive(Clone, PartialEq, Hash, Debug)]
pub struct JobCore {
    pub(crate) id: String,
    pub(crate) job_type: JobType,
    pub(crate) status: JobStatus,
    pub(crate) pause_count: u32,
    pub(crate) user_paused: bool,
    pub(crate) paused: bool,
    pub(crate) busy: bool,
    pub(crate) cancelled: bool,
    pub(crate) force_cancel: bool,
    pub(crate) auto_finalize: bool,
    pub(crate) auto_dismiss: bool,
    pub(crate) speed: u64,
    pub(crate) limit: RateLimit,
    pub(crate) progress_current: u64,
    pub(crate) progress_total: u64,
    pub(crate) ret: Option<Errno>,
    pub(crate) error: Option<String>,
    pub(crate) io_status: IoStatus,
    pub(crate) on_error: BlockdevOnError,
    pub(crate) deferred_to_main_loop: bool,
    pub(crate) started: bool,
    pub(crate) actively_synced: Option<bool>,
    pub(crate) co: Co,
}

impl JobCore {
    /// A job as `job_create` leaves it, before the `created` transition.
    pub(crate) fn new(spec: JobSpec, job_type: JobType) -> JobCore {
        JobCore {
            id: spec.id,
            job_type,
            status: JobStatus::Undefined,
            pause_count: 1,
            user_paused: false,
            paused: true,
            busy: false,
            cancelled: false,
            force_cancel: false,
            auto_finalize: spec.auto_finalize,
            auto_dismiss: spec.auto_dismiss,
            speed: 0,
            limit: RateLimit::default(),
            progress_current: 0,
            progress_total: 0,
            ret: None,
            error: None,
            io_status: IoStatus::Ok,
            on_error: spec.on_error,
            deferred_to_main_loop: false,
            started: false,
            actively_synced: None,
            co: Co::NotStarted,
        }
    }

    /// The job ID (also `device` in the block-job events).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The job type.
    pub fn job_type(&self) -> JobType {
        self.job_type
    }
    /// The current status.
    pub fn status(&self) -> JobStatus {
        self.status
    }
    /// How many pause requests (user, error policy, drains) are pending.
    pub fn pause_count(&self) -> u32 {
        self.pause_count
    }
    /// Whether a user (or the `stop` error policy) paused the job.
    pub fn user_paused(&self) -> bool {
        self.user_paused
    }
    /// Whether the job sits in a pause point (or was never started).
    pub fn paused(&self) -> bool {
        self.paused
    }
    /// Whether the job's coroutine is running or runnable (not yielded).
    pub fn busy(&self) -> bool {
        self.busy
    }
    /// Whether a cancel was requested (soft or forced): `job_cancel_requested`.
    pub fn cancel_requested(&self) -> bool {
        self.cancelled
    }
    /// Whether the job is force-cancelled: QEMU's `job_is_cancelled`.
    pub fn is_cancelled(&self) -> bool {
        self.force_cancel
    }
    /// QMP `auto-finalize`.
    pub fn auto_finalize(&self) -> bool {
        self.auto_finalize
    }
    /// QMP `auto-dismiss`.
    pub fn auto_dismiss(&self) -> bool {
        self.auto_dismiss
    }
    /// The speed limit in bytes per second (0: none).
    pub fn speed(&self) -> u64 {
        self.speed
    }
    /// The rate limiter.
    pub fn rate_limit(&self) -> &RateLimit {
        &self.limit
    }
    /// `(current, total)` progress: `offset` and `len` of the block-job API.
    pub fn progress(&self) -> (u64, u64) {
        (self.progress_current, self.progress_total)
    }
    /// The failure code (QEMU's negative `job->ret`), if the job failed.
    pub fn ret(&self) -> Option<Errno> {
        self.ret
    }
    /// The error text (`job->err`), if one is set.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    /// The block job's io-status.
    pub fn io_status(&self) -> IoStatus {
        self.io_status
    }
    /// The on-error policy the job was created with.
    pub fn on_error(&self) -> BlockdevOnError {
        self.on_error
    }
    /// Whether `run()` returned and the rest happens in the main loop.
    pub fn deferred_to_main_loop(&self) -> bool {
        self.deferred_to_main_loop
    }
    /// Whether the job was started.
    pub fn started(&self) -> bool {
        self.started
    }
    /// Mirror's `actively-synced` for BlockJobInfo, once the driver set it.
    pub fn actively_synced(&self) -> Option<bool> {
        self.actively_synced
    }
    /// `job_is_ready`: ready or standby.
    pub fn is_ready(&self) -> bool {
        matches!(self.status, JobStatus::Ready | JobStatus::Standby)
    }
    /// `job_is_completed`: waiting or later.
    pub fn is_completed(&self) -> bool {
        matches!(
            self.status,
            JobStatus::Waiting
                | JobStatus::Pending
                | JobStatus::Aborting
                | JobStatus::Concluded
                | JobStatus::Null
        )
    }

    /// The core's half of `child_job_drained_poll`: a job that is not busy
    /// or already completed never holds up a drain. See
    /// [`crate::Jobs::drained_poll`] for the whole check.
    pub fn drained_poll(&self) -> bool {
        self.busy && !self.is_completed()
    }

    /// What the job waits for.
    pub fn next_wait(&self) -> Wait {
        match self.co {
            Co::NotStarted => Wait::NotStarted,
            Co::Busy(_) => Wait::Runnable,
            Co::Sleeping { until, .. } | Co::InIo { until } => Wait::SleepUntil(until),
            Co::Yielded(_) => Wait::WaitVerb,
            Co::MainLoop(MainLoop::AwaitFinalize | MainLoop::AwaitDismiss) => Wait::WaitVerb,
            Co::MainLoop(_) | Co::Freeing => Wait::Runnable,
            Co::Gone => Wait::Done,
        }
    }

    /// Whether the job is dismissed and its free is draining a node it
    /// closes (see [`crate::Jobs`] on nested completions).
    pub fn is_freeing(&self) -> bool {
        self.co == Co::Freeing
    }

    /// Whether `run()` returned and `job_exit`, the bottom half that
    /// completes the job, is pending: a drain runs it.
    pub fn exit_pending(&self) -> bool {
        self.co == Co::MainLoop(MainLoop::Exit)
    }

    pub(crate) fn is_block_job(&self) -> bool {
        self.job_type.is_block_job()
    }

    /// `job_state_transition`: checked against `JobSTT`; an event only for
    /// a real change.
    pub(crate) fn transition(&mut self, to: JobStatus, events: &mut Vec<JobEvent>) -> Result<()> {
        let from = self.status;
        if !JobTable::transition_allowed(from, to) {
            debug_assert!(
                false,
                "job '{}': illegal transition {from} -> {to}",
                self.id
            );
            return Err(Error::new(ErrorKind::IllegalTransition {
                id: self.id.clone(),
                from,
                to,
            }));
        }
        self.status = to;
        if from != to {
            events.push(JobEvent::JobStatusChange {
                id: self.id.clone(),
                status: to,
            });
        }
        Ok(())
    }

    // ---------------------------------------------------------------- verbs' helpers

    /// `job_enter_cond`: wake a started, yielded job (cancelling its timer)
    /// if `only_if` allows.
    pub(crate) fn enter_if(&mut self, only_if: impl Fn(&Co) -> bool) {
        if !self.started || self.deferred_to_main_loop || self.busy || !only_if(&self.co) {
            return;
        }
        match self.co {
            Co::Sleeping { resume, .. } | Co::Yielded(resume) => {
                self.co = Co::Busy(resume);
                self.busy = true;
            }
            // Not busy but neither sleeping nor yielded cannot happen for a
            // started job outside the main loop.
            _ => debug_assert!(false, "job '{}': enter in {:?}", self.id, self.co),
        }
    }

    /// `job_pause_locked`.
    pub(crate) fn pause(&mut self) {
        self.pause_count += 1;
        if !self.paused {
            self.enter_if(|_| true);
        }
    }

    /// `job_resume_locked`: the last resume kicks the job unless its
    /// timer is armed.
    pub(crate) fn resume(&mut self) {
        debug_assert!(
            self.pause_count > 0,
            "job '{}': resume without pause",
            self.id
        );
        self.pause_count = self.pause_count.saturating_sub(1);
        if self.pause_count == 0 {
            self.enter_if(|co| !matches!(co, Co::Sleeping { .. }));
        }
    }

    pub(crate) fn set_user_paused(&mut self, user_paused: bool) {
        self.user_paused = user_paused;
    }

    /// `block_job_iostatus_reset` (the block job's `user_resume`).
    pub(crate) fn iostatus_reset(&mut self) {
        if self.io_status != IoStatus::Ok {
            debug_assert!(self.user_paused && self.pause_count > 0);
            self.io_status = IoStatus::Ok;
        }
    }

    /// The end of `job_cancel_async` once the driver decided `force`:
    /// a user pause is dropped, and a soft cancel is ignored once `run()`
    /// returned.
    pub(crate) fn mark_cancelled(&mut self, force: bool) {
        if self.user_paused {
            if self.is_block_job() {
                self.iostatus_reset();
            }
            self.user_paused = false;
            debug_assert!(self.pause_count > 0);
            self.pause_count = self.pause_count.saturating_sub(1);
        }
        if force || !self.deferred_to_main_loop {
            self.cancelled = true;
            self.force_cancel |= force;
        }
    }

    /// Stores a new speed (`block_job_set_speed` after its checks) and
    /// tells whether the job must be kicked.
    pub(crate) fn store_speed(&mut self, speed: u64) -> bool {
        let old = self.speed;
        self.limit.set_speed(speed, BLOCK_JOB_SLICE_TIME);
        self.speed = speed;
        speed == 0 || speed > old
    }

    /// `job_start`.
    pub(crate) fn start(&mut self, events: &mut Vec<JobEvent>) -> Result<()> {
        if self.started || self.co != Co::NotStarted {
            return Err(Error::new(ErrorKind::NotRunnable(format!(
                "job '{}' was already started",
                self.id
            ))));
        }
        self.started = true;
        self.pause_count = self.pause_count.saturating_sub(1);
        self.busy = true;
        self.paused = false;
        self.transition(JobStatus::Running, events)?;
        // job_co_entry: a pause point before run().
        self.co = Co::Busy(Resume::PausePoint(After::Run));
        Ok(())
    }

    /// `job_do_dismiss`: to `null`; the registry frees the job.
    pub(crate) fn dismiss(&mut self, events: &mut Vec<JobEvent>) -> Result<()> {
        self.busy = false;
        self.paused = false;
        self.deferred_to_main_loop = true;
        self.transition(JobStatus::Null, events)?;
        self.co = Co::Gone;
        Ok(())
    }

    /// `job_update_rc`: a force-cancelled job that returned 0 failed with
    /// ECANCELED; a failed job gets an error text and goes `aborting`.
    pub(crate) fn update_rc(&mut self, events: &mut Vec<JobEvent>) -> Result<()> {
        if self.ret.is_none() && self.force_cancel {
            self.ret = Some(Errno::ECANCELED);
        }
        if let Some(errno) = self.ret {
            if self.error.is_none() {
                self.error = Some(errno.strerror());
            }
            self.transition(JobStatus::Aborting, events)?;
        }
        Ok(())
    }

    /// `job_completed` for a job alone in its transaction.
    pub(crate) fn completed(&mut self, events: &mut Vec<JobEvent>) -> Result<()> {
        self.update_rc(events)?;
        if self.ret.is_some() {
            // job_completed_txn_abort: finalize this job individually.
            self.co = Co::MainLoop(MainLoop::Finish);
            return Ok(());
        }
        // job_completed_txn_success: every job of the txn is completed.
        self.transition(JobStatus::Waiting, events)?;
        self.transition(JobStatus::Pending, events)?;
        if !self.auto_finalize {
            if self.is_block_job() {
                events.push(JobEvent::BlockJobPending {
                    job_type: self.job_type,
                    id: self.id.clone(),
                });
            }
            self.co = Co::MainLoop(MainLoop::AwaitFinalize);
        } else {
            self.co = Co::MainLoop(MainLoop::Prepare);
        }
        Ok(())
    }

    /// A force cancel of a job whose `run()` already returned:
    /// `job_completed_txn_abort` when the job waits for `job-finalize`.
    /// While `job_exit` is still scheduled the flags suffice: `job_exit`
    /// sees them and aborts (QEMU waits for `job_exit` inside the cancel
    /// and gets the same result).
    pub(crate) fn abort_deferred(&mut self, events: &mut Vec<JobEvent>) -> Result<()> {
        if self.co == Co::MainLoop(MainLoop::AwaitFinalize) {
            self.update_rc(events)?;
            self.co = Co::MainLoop(MainLoop::Finish);
        }
        Ok(())
    }

    pub(crate) fn begin_finalize(&mut self) {
        debug_assert_eq!(self.co, Co::MainLoop(MainLoop::AwaitFinalize));
        self.co = Co::MainLoop(MainLoop::Prepare);
    }
}

/// The handle a driver gets during [`JobDriver::run_step`](crate::JobDriver::run_step): the job's core
/// plus the event sink and the virtual time, with the calls QEMU's drivers
/// make on their job.
pub struct JobCtl<'a> {
    pub(crate) core: &'a mut JobCore,
    pub(crate) events: &'a mut Vec<JobEvent>,
    pub(crate) now_ns: u64,
    pub(crate) failure: Option<Error>,
}

impl JobCtl<'_> {
    /// The job's core state.
    pub fn core(&self) -> &JobCore {
        self.core
    }

    /// The virtual time of this step.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// `job_is_cancelled`: force-cancelled (what loops check to stop).
    pub fn is_cancelled(&self) -> bool {
        self.core.force_cancel
    }

    /// `job_cancel_requested`: any cancel, soft included (mirror checks this).
    pub fn cancel_requested(&self) -> bool {
        self.core.cancelled
    }

    /// `job_progress_update`: `n` more bytes done.
    pub fn progress_update(&mut self, n: u64) {
        self.core.progress_current += n;
    }

    /// `job_progress_set_remaining`.
    pub fn progress_set_remaining(&mut self, remaining: u64) {
        self.core.progress_total = self.core.progress_current + remaining;
    }

    /// `job_progress_increase_remaining`.
    pub fn progress_increase_remaining(&mut self, delta: u64) {
        self.core.progress_total += delta;
    }

    /// `block_job_ratelimit_processed_bytes`: charge `n` copied bytes; the
    /// next [`RunStep::RatelimitSleep`](crate::RunStep::RatelimitSleep) waits accordingly.
    pub fn ratelimit_processed_bytes(&mut self, n: u64) {
        self.core.limit.calculate_delay(n, self.now_ns);
    }

    /// `block_job_error_action`: decide per `on_err`, emit
    /// `BLOCK_JOB_ERROR`, and on `stop` pause the job as if by the user and
    /// set its io-status. The job pauses at its next pause point.
    pub fn error_action(
        &mut self,
        on_err: BlockdevOnError,
        operation: IoOperation,
        errno: Errno,
    ) -> BlockErrorAction {
        let action = match on_err {
            BlockdevOnError::Enospc | BlockdevOnError::Auto if errno == Errno::ENOSPC => {
                BlockErrorAction::Stop
            }
            BlockdevOnError::Enospc | BlockdevOnError::Auto => BlockErrorAction::Report,
            BlockdevOnError::Stop => BlockErrorAction::Stop,
            BlockdevOnError::Report => BlockErrorAction::Report,
            BlockdevOnError::Ignore => BlockErrorAction::Ignore,
        };
        self.events.push(JobEvent::BlockJobError {
            device: self.core.id.clone(),
            operation,
            action,
        });
        if action == BlockErrorAction::Stop {
            if !self.core.user_paused {
                self.core.pause();
                self.core.user_paused = true;
            }
            if self.core.io_status == IoStatus::Ok {
                self.core.io_status = if errno == Errno::ENOSPC {
                    IoStatus::Nospace
                } else {
                    IoStatus::Failed
                };
            }
        }
        action
    }

    /// Mirror's `actively_synced` flag, reported by `query-block-jobs`.
    pub fn set_actively_synced(&mut self, actively_synced: bool) {
        self.core.actively_synced = Some(actively_synced);
    }

    /// `job_transition_to_ready`: `ready` and `BLOCK_JOB_READY`.
    pub fn transition_to_ready(&mut self) {
        if let Err(error) = self.core.transition(JobStatus::Ready, self.events) {
            self.failure = Some(error);
            return;
        }
        if self.core.is_block_job() {
            let (offset, len) = self.core.progress();
            self.events.push(JobEvent::BlockJobReady {
                job_type: self.core.job_type,
                device: self.core.id.clone(),
                len,
                offset,
                speed: self.core.speed,
            });
        }
    }
}
