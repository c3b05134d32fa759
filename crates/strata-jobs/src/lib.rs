//! QEMU 10.0's job machinery (job.c, blockjob.c, job-qmp.c) as a pure,
//! deterministic state machine: the statuses and QEMU's transition and
//! verb tables, the events with QEMU's data, pause counting, cancel,
//! complete, finalize, dismiss, set-speed with QEMU's rate limiter, and
//! the on-error policies.
//!
//! **Architecture Invariant:** no threads, no async, no clock. A job is an
//! explicit step machine: [`Jobs::step`] runs it from one yield to the next
//! (one stretch of the driver's `run()`, or one main-loop phase: exit,
//! prepare, commit/abort, clean, conclusion) and returns what it waits for
//! next ([`Wait`]). The caller decides which job steps when, and supplies
//! the virtual time in nanoseconds. Events go to a caller-supplied `Vec`.
//!
//! # Tutorial
//!
//! A driver implements [`JobDriver`] over some context `C` (the block layer;
//! here a plain counter of copied chunks). This one copies four 512 KiB
//! chunks, sleeping for the rate limit at the start of each iteration the
//! way `stream_run` does:
//!
//! ```
//! use strata_jobs::{JobCtl, JobDriver, JobEvent, JobSpec, JobType, Jobs, RunStep, Wait};
//!
//! const CHUNK: u64 = 512 * 1024;
//!
//! struct Copy4 { offset: Option<u64> }
//!
//! impl JobDriver<u32> for Copy4 {
//!     fn job_type(&self) -> JobType { JobType::Stream }
//!     fn run_step(&mut self, job: &mut JobCtl<'_>, copied: &mut u32) -> RunStep {
//!         let Some(offset) = self.offset else {
//!             // run() begins: set the length, then the first iteration's sleep.
//!             job.progress_set_remaining(4 * CHUNK);
//!             self.offset = Some(0);
//!             return RunStep::RatelimitSleep;
//!         };
//!         if job.is_cancelled() {
//!             return RunStep::Finished(Ok(()));
//!         }
//!         *copied += 1; // one chunk copied
//!         job.progress_update(CHUNK);
//!         job.ratelimit_processed_bytes(CHUNK);
//!         self.offset = Some(offset + CHUNK);
//!         if offset + CHUNK < 4 * CHUNK { RunStep::RatelimitSleep } else { RunStep::Finished(Ok(())) }
//!     }
//! }
//!
//! let mut jobs: Jobs<u32, Copy4> = Jobs::new();
//! let (mut copied, mut events) = (0, Vec::new());
//! jobs.create(JobSpec::new("job0"), Copy4 { offset: None }, &mut events).unwrap();
//! jobs.set_speed("job0", 1024 * 1024, &mut copied, &mut events).unwrap(); // 1 MiB/s
//! jobs.start("job0", &mut events).unwrap();
//!
//! // Drive it like a simulator: step when runnable, jump the clock to timers.
//! let mut now = 0;
//! loop {
//!     match jobs.wait("job0") {
//!         Wait::Runnable => {}
//!         Wait::SleepUntil(t) => now = now.max(t),
//!         Wait::Done => break,
//!         other => panic!("unexpected {other:?}"),
//!     }
//!     jobs.step("job0", &mut copied, now, &mut events).unwrap();
//! }
//! assert_eq!(copied, 4);
//! // At 1 MiB/s the quota is 104857 bytes per 100 ms slice, so each 512 KiB
//! // chunk costs 524288 / 104857 = 5.0000286 slices; the fourth chunk is
//! // copied after three of them, and the job ends without sleeping again.
//! assert_eq!(now, 3 * 500_002_861);
//!
//! let seq: Vec<_> = events.iter().map(JobEvent::sequence_label).collect();
//! assert_eq!(seq, [
//!     "created", "running", "waiting", "pending",
//!     "BLOCK_JOB_COMPLETED", "concluded", "null",
//! ]);
//! assert_eq!(events[4], JobEvent::BlockJobCompleted {
//!     job_type: JobType::Stream,
//!     device: "job0".into(),
//!     len: 2097152,
//!     offset: 2097152,
//!     speed: 1048576,
//!     error: None,
//! });
//! ```
//!
//! Verbs are checked against QEMU's tables and answer with QEMU's texts;
//! they change flags and may wake a job, and the caller steps it:
//!
//! ```
//! use strata_jobs::{Cancel, JobCtl, JobDriver, JobEvent, JobSpec, JobStatus, JobType, Jobs, Lookup, RunStep, Wait};
//!
//! struct Forever;
//! impl JobDriver<()> for Forever {
//!     fn job_type(&self) -> JobType { JobType::Stream }
//!     fn run_step(&mut self, job: &mut JobCtl<'_>, _: &mut ()) -> RunStep {
//!         if job.is_cancelled() { RunStep::Finished(Ok(())) } else { RunStep::Sleep(1_000_000_000) }
//!     }
//! }
//!
//! let (mut jobs, mut ev) = (Jobs::<(), Forever>::new(), Vec::new());
//! jobs.create(JobSpec::new("s"), Forever, &mut ev).unwrap();
//! jobs.start("s", &mut ev).unwrap();
//! assert_eq!(jobs.step("s", &mut (), 0, &mut ev).unwrap(), Wait::SleepUntil(1_000_000_000));
//!
//! let err = jobs.complete(Lookup::Job, "s", &mut (), &mut ev).unwrap_err();
//! assert_eq!(err.to_string(), "Job 's' in state 'running' cannot accept command verb 'complete'");
//! let err = jobs.pause(Lookup::BlockJob, "nope", &mut (), &mut ev).unwrap_err();
//! assert_eq!((err.class().as_str(), err.to_string().as_str()), ("DeviceNotActive", "Block job 'nope' not found"));
//!
//! // A pause wakes the sleeping job so that it reaches its pause point.
//! jobs.pause(Lookup::Job, "s", &mut (), &mut ev).unwrap();
//! assert_eq!(jobs.step("s", &mut (), 10, &mut ev).unwrap(), Wait::WaitVerb);
//! assert_eq!(jobs.get("s").unwrap().status(), JobStatus::Paused);
//! let err = jobs.cancel(Cancel::BlockJob { force: false }, "s", &mut (), &mut ev).unwrap_err();
//! assert_eq!(err.to_string(), "The block job for device 's' is currently paused");
//!
//! // job-cancel is always forced: running again, then aborting.
//! jobs.cancel(Cancel::Job, "s", &mut (), &mut ev).unwrap();
//! while jobs.wait("s") == Wait::Runnable {
//!     jobs.step("s", &mut (), 20, &mut ev).unwrap();
//! }
//! let seq: Vec<_> = ev.iter().map(JobEvent::sequence_label).collect();
//! assert_eq!(seq, [
//!     "created", "running", "paused", "running", "aborting",
//!     "BLOCK_JOB_CANCELLED", "concluded", "null",
//! ]);
//! ```
//!
//! A mirror-like driver (mirror, active commit) moves to READY and then
//! waits; `complete` or a soft cancel lets it finish successfully, a pause
//! turns `ready` into `standby`:
//!
//! ```
//! use strata_jobs::{JobCore, JobCtl, JobDriver, JobEvent, JobSpec, JobType, Jobs, Lookup, RunStep, Wait};
//!
//! #[derive(Default)]
//! struct Mirror { synced: bool, should_complete: bool }
//!
//! impl JobDriver<()> for Mirror {
//!     fn job_type(&self) -> JobType { JobType::Commit } // active commit reports `commit`
//!     fn run_step(&mut self, job: &mut JobCtl<'_>, _: &mut ()) -> RunStep {
//!         if !self.synced {
//!             self.synced = true;
//!             job.progress_set_remaining(1 << 20);
//!             job.progress_update(1 << 20);
//!             job.transition_to_ready();
//!             return RunStep::Yield;
//!         }
//!         if self.should_complete || job.cancel_requested() {
//!             return RunStep::Finished(Ok(()));
//!         }
//!         RunStep::Yield
//!     }
//!     fn can_complete(&self) -> bool { true }
//!     fn complete(&mut self, _: &JobCore, _: &mut ()) -> Result<(), String> {
//!         self.should_complete = true;
//!         Ok(())
//!     }
//!     // mirror_cancel: before READY every cancel is a force cancel.
//!     fn cancel(&mut self, job: &JobCore, force: bool) -> bool { force || !job.is_ready() }
//! }
//!
//! let (mut jobs, mut ev) = (Jobs::<(), Mirror>::new(), Vec::new());
//! jobs.create(JobSpec::new("c"), Mirror::default(), &mut ev).unwrap();
//! jobs.start("c", &mut ev).unwrap();
//! assert_eq!(jobs.step("c", &mut (), 0, &mut ev).unwrap(), Wait::WaitVerb); // ready
//! jobs.pause(Lookup::Job, "c", &mut (), &mut ev).unwrap();
//! jobs.step("c", &mut (), 0, &mut ev).unwrap(); // standby
//! jobs.complete(Lookup::Job, "c", &mut (), &mut ev).unwrap(); // accepted in standby...
//! assert_eq!(jobs.wait("c"), Wait::WaitVerb); // ...but waits for the resume
//! jobs.resume(Lookup::Job, "c", &mut (), &mut ev).unwrap();
//! while jobs.wait("c") == Wait::Runnable {
//!     jobs.step("c", &mut (), 0, &mut ev).unwrap();
//! }
//! let seq: Vec<_> = ev.iter().map(JobEvent::sequence_label).collect();
//! assert_eq!(seq, [
//!     "created", "running", "ready", "BLOCK_JOB_READY", "standby", "ready",
//!     "waiting", "pending", "BLOCK_JOB_COMPLETED", "concluded", "null",
//! ]);
//! ```
//!
//! # Deviations from QEMU
//!
//! * QEMU's `job_enter` runs the coroutine at once; here verbs only make
//!   the job runnable. A daemon that wants QEMU's exact event order steps
//!   the job right after the verb.
//! * A step ends after at most one driver call. Where QEMU would not yield
//!   (a force-cancelled job's sleep, a pause point without a pause after
//!   the driver returned) the job stays runnable instead of running on.
//! * A force cancel that arrives after `run()` returned but before
//!   `job_exit` ran only sets the flags; the exit step then aborts the job.
//!   QEMU gets the same events inside the cancel (its
//!   `job_completed_txn_abort` waits for `job_exit`).
//! * Every job is alone in its transaction (no grouped completion).
//! * A drain is the caller's loop: [`Jobs::pause_internal`], step the job
//!   while [`Jobs::drained_poll`] holds, [`Jobs::resume_internal`].
//! * Driver `.pause`/`.resume` hooks around pause points are not modelled.
#![deny(missing_docs)]

mod coroutine;
mod driver;
mod error;
mod event;
mod info;
mod job;
mod jobs;
mod ratelimit;
mod status;

pub use driver::{JobDriver, RunStep};
pub use error::{Errno, Error, ErrorClass, ErrorKind, JobFailure, Result};
pub use event::JobEvent;
pub use info::{BlockJobInfo, JobInfo};
pub use job::{JobCore, JobCtl, JobSpec, Wait};
pub use jobs::{id_wellformed, Cancel, Jobs, Lookup};
pub use ratelimit::{RateLimit, BLOCK_JOB_SLICE_TIME};
pub use status::{
    BlockErrorAction, BlockdevOnError, IoOperation, IoStatus, JobStatus, JobTable, JobType,
    JobVerb, MirrorCopyMode,
};
