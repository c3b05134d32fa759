//! A fake driver shaped like QEMU's stream loop (and, with `mirror`, like
//! mirror / active commit), plus a tiny driving harness.

use strata_jobs::{
    BlockErrorAction, Errno, IoOperation, JobCore, JobCtl, JobDriver, JobEvent, JobFailure,
    JobSpec, JobStatus, JobType, Jobs, RunStep, Wait,
};

/// The context the fake driver works on: a log of the callbacks QEMU would
/// run, in order.
#[derive(Default, Debug)]
pub struct Ctx {
    pub log: Vec<String>,
}

/// What the fake job does.
#[derive(Clone, Debug)]
pub struct Fake {
    pub job_type: JobType,
    /// Chunks to copy.
    pub chunks: u64,
    /// Bytes per chunk.
    pub chunk: u64,
    /// The chunk whose first copy fails, and how.
    pub fail_at: Option<(u64, Errno)>,
    /// Mirror-like: READY once copied, `.complete`, `.cancel` = force || !ready.
    pub mirror: bool,
    /// `.prepare` fails with this.
    pub prepare_fails: Option<Errno>,
    /// Each chunk's read is in flight this long (`RunStep::IoWait`).
    pub io_latency: Option<u64>,
    begun: bool,
    in_flight: bool,
    next_chunk: u64,
    failed_once: bool,
    ignored: Option<Errno>,
    should_complete: bool,
}

pub const CHUNK: u64 = 512 * 1024;

impl Fake {
    pub fn stream(chunks: u64) -> Fake {
        Fake {
            job_type: JobType::Stream,
            chunks,
            chunk: CHUNK,
            fail_at: None,
            mirror: false,
            prepare_fails: None,
            io_latency: None,
            begun: false,
            in_flight: false,
            next_chunk: 0,
            failed_once: false,
            ignored: None,
            should_complete: false,
        }
    }

    /// Active commit: a mirror reporting type `commit`.
    pub fn active_commit(chunks: u64) -> Fake {
        Fake {
            job_type: JobType::Commit,
            mirror: true,
            ..Fake::stream(chunks)
        }
    }

    pub fn failing_at(self, chunk: u64, errno: Errno) -> Fake {
        Fake {
            fail_at: Some((chunk, errno)),
            ..self
        }
    }

    pub fn with_type(self, job_type: JobType) -> Fake {
        Fake { job_type, ..self }
    }

    pub fn with_io_latency(self, ns: u64) -> Fake {
        Fake {
            io_latency: Some(ns),
            ..self
        }
    }

    pub fn prepare_failing(self, errno: Errno) -> Fake {
        Fake {
            prepare_fails: Some(errno),
            ..self
        }
    }

    fn copy_one(&mut self, job: &mut JobCtl<'_>) -> RunStep {
        if !self.failed_once && self.fail_at.is_some_and(|(at, _)| at == self.next_chunk) {
            self.failed_once = true;
            let errno = self.fail_at.unwrap().1;
            let on_error = job.core().on_error();
            match job.error_action(on_error, IoOperation::Read, errno) {
                // stream: n = 0, retry the same offset after the pause.
                BlockErrorAction::Stop => return RunStep::RatelimitSleep,
                BlockErrorAction::Report => {
                    return RunStep::Finished(Err(JobFailure::errno(errno)))
                }
                BlockErrorAction::Ignore => {
                    self.ignored.get_or_insert(errno);
                }
            }
        }
        job.progress_update(self.chunk);
        job.ratelimit_processed_bytes(self.chunk);
        self.next_chunk += 1;
        if self.next_chunk < self.chunks {
            return RunStep::RatelimitSleep;
        }
        if self.mirror {
            job.transition_to_ready();
            return RunStep::Yield;
        }
        RunStep::Finished(
            self.ignored
                .map_or(Ok(()), |errno| Err(JobFailure::errno(errno))),
        )
    }
}

impl JobDriver<Ctx> for Fake {
    fn job_type(&self) -> JobType {
        self.job_type
    }

    fn run_step(&mut self, job: &mut JobCtl<'_>, ctx: &mut Ctx) -> RunStep {
        ctx.log.push(format!("run {}", job.core().id()));
        if !self.begun {
            self.begun = true;
            job.progress_set_remaining(self.chunks * self.chunk);
            return match (self.chunks, self.mirror) {
                (0, false) => RunStep::Finished(Ok(())),
                (0, true) => {
                    job.transition_to_ready();
                    RunStep::Yield
                }
                _ => RunStep::RatelimitSleep,
            };
        }
        if job.core().is_ready() {
            // mirror's ready loop: leave on complete or any cancel.
            return if self.should_complete || job.cancel_requested() {
                RunStep::Finished(Ok(()))
            } else {
                RunStep::Yield
            };
        }
        if self.in_flight {
            self.in_flight = false;
            return self.copy_one(job);
        }
        if job.is_cancelled() {
            return RunStep::Finished(Ok(()));
        }
        if let Some(latency) = self.io_latency {
            self.in_flight = true;
            return RunStep::IoWait {
                until_ns: job.now_ns() + latency,
            };
        }
        self.copy_one(job)
    }

    fn prepare(&mut self, job: &JobCore, ctx: &mut Ctx) -> Result<(), JobFailure> {
        ctx.log.push(format!("prepare {}", job.id()));
        self.prepare_fails
            .map_or(Ok(()), |errno| Err(JobFailure::errno(errno)))
    }

    fn commit(&mut self, job: &JobCore, ctx: &mut Ctx) {
        ctx.log.push(format!("commit {}", job.id()));
    }

    fn abort(&mut self, job: &JobCore, ctx: &mut Ctx) {
        ctx.log.push(format!("abort {}", job.id()));
    }

    fn clean(&mut self, job: &JobCore, ctx: &mut Ctx) {
        ctx.log.push(format!("clean {}", job.id()));
    }

    fn can_complete(&self) -> bool {
        self.mirror
    }

    fn complete(&mut self, _job: &JobCore, _ctx: &mut Ctx) -> Result<(), String> {
        self.should_complete = true;
        Ok(())
    }

    fn cancel(&mut self, job: &JobCore, force: bool) -> bool {
        // mirror_cancel: before READY every cancel is forced.
        !self.mirror || force || !job.is_ready()
    }

    fn free(&mut self, job: &JobCore, ctx: &mut Ctx) {
        ctx.log.push(format!("free {}", job.id()));
    }
}

/// A registry with its context, event sink and virtual clock.
pub struct Harness {
    pub jobs: Jobs<Ctx, Fake>,
    pub ctx: Ctx,
    pub events: Vec<JobEvent>,
    pub now: u64,
}

impl Harness {
    pub fn new() -> Harness {
        Harness {
            jobs: Jobs::new(),
            ctx: Ctx::default(),
            events: Vec::new(),
            now: 0,
        }
    }

    /// Creates and starts a job.
    pub fn spawn(&mut self, spec: JobSpec, fake: Fake) {
        let id = spec.id().to_string();
        self.jobs.create(spec, fake, &mut self.events).unwrap();
        self.jobs.start(&id, &mut self.events).unwrap();
    }

    /// Steps `id` (jumping the clock to its timer) until it waits for a
    /// verb or is gone; returns the final wait.
    pub fn settle_job(&mut self, id: &str) -> Wait {
        for _ in 0..10_000 {
            match self.jobs.wait(id) {
                Wait::Runnable => {}
                Wait::SleepUntil(t) => self.now = self.now.max(t),
                other => return other,
            }
            self.jobs
                .step(id, &mut self.ctx, self.now, &mut self.events)
                .unwrap();
        }
        panic!("job {id} never settled");
    }

    /// The harness's `job_event_sequences` for one job.
    pub fn sequence(&self, id: &str) -> Vec<&'static str> {
        self.events
            .iter()
            .filter(|e| e.job_id() == id)
            .map(JobEvent::sequence_label)
            .collect()
    }

    pub fn status(&self, id: &str) -> Option<JobStatus> {
        self.jobs.get(id).map(JobCore::status)
    }
}
