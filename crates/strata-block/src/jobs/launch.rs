//! What every job's entry point does the same way: `block_job_create`
//! (the job in the list, its links, its initial speed), `job_early_fail`
//! and `job_start`.

use crate::core::BlockCore;
use crate::error::Result;
use crate::files::Files;
use strata_graph::{NodeId, Perm, RootId};
use strata_jobs::{BlockdevOnError, JobDriver, JobEvent, JobSpec, Jobs};
use strata_perm::BlockerOwner;

/// The parts of the block layer a job's entry point works on while it
/// creates and starts its job: the core, the job list and the events.
///
/// Generic over the list's driver type `J` so that each job's module hands
/// over its own driver (`Into<J>`) without naming the enum of all jobs,
/// which names every job's module.
pub(crate) struct Launch<'a, F: Files, J> {
    /// The graph, drivers and files the job is set up in.
    pub(crate) core: &'a mut BlockCore<F>,
    jobs: &'a mut Jobs<BlockCore<F>, J>,
    events: &'a mut Vec<JobEvent>,
}

impl<'a, F: Files, J: JobDriver<BlockCore<F>>> Launch<'a, F, J> {
    /// A launch over the layer's parts (what `BlockLayer::with_jobs` lends).
    pub(crate) fn new(
        jobs: &'a mut Jobs<BlockCore<F>, J>,
        core: &'a mut BlockCore<F>,
        events: &'a mut Vec<JobEvent>,
    ) -> Self {
        Launch { core, jobs, events }
    }

    /// `block_job_create`'s `job_create`: the job joins the list.
    pub(crate) fn create(
        &mut self,
        spec: JobSpec,
        driver: impl Into<J>,
    ) -> strata_jobs::Result<()> {
        self.jobs.create(spec, driver.into(), self.events)
    }

    /// `block_job_create`'s `speed`: set only when given and not zero.
    pub(crate) fn set_initial_speed(&mut self, job_id: &str, speed: Option<i64>) -> Result<()> {
        match speed {
            Some(speed) if speed != 0 => {
                self.jobs.set_speed(job_id, speed, self.core, self.events)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Replaces the driver stored at creation by its state after the
    /// entry point's set-up.
    pub(crate) fn update_driver(&mut self, job_id: &str, driver: impl Into<J>) {
        if let Some(stored) = self.jobs.driver_mut(job_id) {
            *stored = driver.into();
        }
    }

    /// `job_early_fail`: a job whose set-up failed goes away unstarted.
    pub(crate) fn early_fail(&mut self, job_id: &str) -> Result<()> {
        self.jobs.early_fail(job_id, self.core, self.events)?;
        Ok(())
    }

    /// `job_start`.
    pub(crate) fn start(&mut self, job_id: &str) -> Result<()> {
        self.jobs.start(job_id, self.events)?;
        Ok(())
    }
}

/// The job options common to every job command.
pub(crate) fn job_spec(
    id: &str,
    auto_finalize: Option<bool>,
    auto_dismiss: Option<bool>,
    on_error: Option<BlockdevOnError>,
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

impl<F: Files> BlockCore<F> {
    /// `block_job_add_bdrv`: a job link plus a blocker on every operation.
    pub(crate) fn add_job_node(
        &mut self,
        root: RootId,
        job_type: &str,
        node: NodeId,
        name: &str,
        perm: Perm,
        shared: Perm,
    ) -> Result<()> {
        self.with_hooks(|bg, hooks| bg.root_attach_child(hooks, root, node, name, perm, shared))?;
        let reason = format!("block device is in use by block job: {job_type}");
        self.bg.block_all(node, &reason, BlockerOwner::Root(root));
        Ok(())
    }
}
