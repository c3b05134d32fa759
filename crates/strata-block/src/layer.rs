//! [`BlockLayer`]: the block core plus the jobs, the event queue and the
//! virtual clock; the typed operations behind QEMU's QMP commands.

use crate::commit::CommitJob;
use crate::core::{BlockCore, ThrottleGroup};
use crate::error::{Error, Result};
use crate::files::Files;
use crate::mirror::ActiveCommitJob;
use crate::stream::{StreamArgs, StreamJob};
use std::collections::BTreeMap;
use strata_jobs::{
    Cancel, JobCore, JobCtl, JobDriver, JobEvent, JobFailure, JobSpec, JobType, Jobs, Lookup,
    RunStep, Wait,
};

/// A block job's driver: the job kinds Strata models.
#[derive(Clone, Hash, Debug)]
pub enum BlockJob {
    /// `block-stream`.
    Stream(StreamJob),
    /// `block-commit` of an intermediate image (`commit_start`).
    Commit(CommitJob),
    /// `block-commit` of the active layer (`commit_active_start`, mirror-based).
    ActiveCommit(ActiveCommitJob),
}

impl BlockJob {
    /// The job's own parent in the graph (the `BlockJob`'s children).
    fn job_root(&self) -> strata_graph::RootId {
        match self {
            BlockJob::Stream(s) => s.job_root,
            BlockJob::Commit(c) => c.job_root,
            BlockJob::ActiveCommit(m) => m.job_root,
        }
    }
}

impl<F: Files> JobDriver<BlockCore<F>> for BlockJob {
    fn job_type(&self) -> JobType {
        match self {
            BlockJob::Stream(_) => JobType::Stream,
            BlockJob::Commit(_) | BlockJob::ActiveCommit(_) => JobType::Commit,
        }
    }

    fn run_step(&mut self, job: &mut JobCtl<'_>, core: &mut BlockCore<F>) -> RunStep {
        match self {
            BlockJob::Stream(s) => s.run_step(job, core),
            BlockJob::Commit(c) => c.run_step(job, core),
            BlockJob::ActiveCommit(m) => m.run_step(job, core),
        }
    }

    fn prepare(
        &mut self,
        _job: &JobCore,
        core: &mut BlockCore<F>,
    ) -> std::result::Result<(), JobFailure> {
        match self {
            BlockJob::Stream(s) => s.prepare(core),
            BlockJob::Commit(c) => c.prepare(core),
            BlockJob::ActiveCommit(m) => m.exit(core, false),
        }
    }

    fn abort(&mut self, _job: &JobCore, core: &mut BlockCore<F>) {
        match self {
            BlockJob::Stream(_) => {}
            BlockJob::Commit(c) => c.abort(core),
            BlockJob::ActiveCommit(m) => {
                let _ = m.exit(core, true);
            }
        }
    }

    fn clean(&mut self, _job: &JobCore, core: &mut BlockCore<F>) {
        match self {
            BlockJob::Stream(s) => s.clean(core),
            BlockJob::Commit(c) => c.clean(core),
            BlockJob::ActiveCommit(_) => {}
        }
    }

    fn can_complete(&self) -> bool {
        matches!(self, BlockJob::ActiveCommit(_))
    }

    fn complete(
        &mut self,
        job: &JobCore,
        _core: &mut BlockCore<F>,
    ) -> std::result::Result<(), String> {
        match self {
            BlockJob::ActiveCommit(m) => m.complete(job),
            _ => Ok(()),
        }
    }

    fn cancel(&mut self, job: &JobCore, force: bool) -> bool {
        match self {
            // mirror_cancel: before READY every cancel is forced.
            BlockJob::ActiveCommit(_) => force || !job.is_ready(),
            _ => true,
        }
    }

    fn free(&mut self, _job: &JobCore, core: &mut BlockCore<F>) {
        core.release_root(self.job_root());
    }

    fn free_closes_a_node(&self, _job: &JobCore, core: &BlockCore<F>) -> bool {
        core.release_closes_a_node(self.job_root())
    }
}

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
}

impl<F: Files> BlockLayer<F> {
    /// A block layer over `files`; `seed` drives generated node names.
    pub fn new(files: F, seed: u64) -> BlockLayer<F> {
        BlockLayer {
            core: BlockCore::new(files, seed),
            jobs: Jobs::new(),
            events: Vec::new(),
        }
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
        let plan = self.core.stream_check(args)?;
        let job_id = match &args.job_id {
            Some(id) => id.clone(),
            None => self.core.bg.device_name(plan.bs).unwrap_or_default(),
        };
        let stream = self.core.stream_prepare_graph(&plan, args, &job_id)?;
        let spec = job_spec(
            &job_id,
            args.auto_finalize,
            args.auto_dismiss,
            args.on_error,
        );
        let created = self.with_jobs(|jobs, _, events| {
            jobs.create(spec, BlockJob::Stream(stream.clone()), events)
        });
        if let Err(err) = created {
            let mut doomed = stream;
            doomed.clean(&mut self.core);
            self.core.release_root(doomed.job_root);
            return Err(err.into());
        }
        let attached = self
            .core
            .stream_attach_main(&stream)
            .and_then(|_| self.set_initial_speed(&job_id, args.speed));
        let attached = attached.and_then(|_| self.core.stream_attach_job(&stream));
        if let Err(err) = attached {
            // stream_start's fail path: the job goes, then the filter, and
            // the top is read-only again if it was.
            self.with_jobs(|jobs, core, events| jobs.early_fail(&job_id, core, events))?;
            let mut doomed = stream;
            doomed.clean(&mut self.core);
            return Err(err);
        }
        self.with_jobs(|jobs, _, events| jobs.start(&job_id, events))?;
        Ok(())
    }

    pub(crate) fn set_initial_speed(&mut self, job_id: &str, speed: Option<i64>) -> Result<()> {
        match speed {
            Some(speed) if speed != 0 => {
                self.with_jobs(|jobs, core, events| jobs.set_speed(job_id, speed, core, events))?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Steps job `id` once at the current virtual time.
    pub fn step_job(&mut self, id: &str) -> Result<Wait> {
        let now = self.core.now_ns;
        Ok(self.with_jobs(|jobs, core, events| jobs.step(id, core, now, events))?)
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

    /// Runs jobs in creation order until none can step, jumping the clock
    /// to the next timer whenever all of them sleep, up to `limit_ns`.
    pub fn run_until_idle(&mut self, limit_ns: u64) -> Result<()> {
        loop {
            let runnable = self.runnable_jobs();
            if let Some(id) = runnable.first() {
                self.step_job(id)?;
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

pub(crate) fn job_spec(
    id: &str,
    auto_finalize: Option<bool>,
    auto_dismiss: Option<bool>,
    on_error: Option<strata_jobs::BlockdevOnError>,
) -> JobSpec {
    let mut spec = JobSpec::new(id);
    if let Some(f) = auto_finalize {
        spec = spec.with_auto_finalize(f);
    }
    if let Some(d) = auto_dismiss {
        spec = spec.with_auto_dismiss(d);
    }
    if let Some(e) = on_error {
        spec = spec.with_on_error(e);
    }
    spec
}
