//! The block jobs: `block-stream` (`stream.rs`, with the base rule in
//! `stream/base.rs`), the intermediate `block-commit` (`commit.rs`) and
//! the active commit (`active_commit.rs`). Each file holds its job's entry
//! point with QEMU's checks, its driver (the step machine) and its
//! completion; `launch.rs` holds what every entry point does the same way.
//! Here: the enum of all jobs that the job list drives, and the choice
//! `block-commit` makes between the two commits.

mod active_commit;
mod commit;
mod launch;
mod stream;

pub use active_commit::{ActiveCommitJob, MIRROR_MAX_IO_BYTES};
pub use commit::{CommitArgs, CommitJob, COMMIT_BUFFER_SIZE};
pub(crate) use launch::Launch;
pub use stream::base::{
    header_backing, header_backing_at_start, new_backing_node, skip_implicit_above_base,
    stream_bounds, BackingChoice, BackingFormat, NotInChain, StreamBounds,
};
pub use stream::{StreamArgs, StreamJob, STREAM_CHUNK};

use crate::core::BlockCore;
use crate::error::Result;
use crate::files::Files;
use commit::CommitPlan;
use strata_jobs::{JobCore, JobCtl, JobDriver, JobFailure, JobType, RunStep};

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

impl From<StreamJob> for BlockJob {
    fn from(job: StreamJob) -> BlockJob {
        BlockJob::Stream(job)
    }
}

impl From<CommitJob> for BlockJob {
    fn from(job: CommitJob) -> BlockJob {
        BlockJob::Commit(job)
    }
}

impl From<ActiveCommitJob> for BlockJob {
    fn from(job: ActiveCommitJob) -> BlockJob {
        BlockJob::ActiveCommit(job)
    }
}

impl<F: Files> Launch<'_, F, BlockJob> {
    /// `block-commit`: QEMU's checks, then an intermediate commit or an
    /// active (mirror-based) commit.
    pub(crate) fn block_commit(&mut self, args: &CommitArgs) -> Result<()> {
        match self.core.commit_check(args)? {
            CommitPlan::Active { top, base, job_id } => {
                self.start_active_commit(args, top, base, &job_id)
            }
            CommitPlan::Intermediate { bs, top, base } => self.start_commit(args, bs, top, base),
        }
    }
}
