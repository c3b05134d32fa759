//! The `block-commit` command: `qmp_block_commit`'s checks in QEMU's
//! order, and the intermediate commit job (`block/commit.c`): the
//! `commit_top` filter, the copy loop as a step machine, and
//! `bdrv_drop_intermediate` at prepare; and the graph steps both commits
//! share. Active commit lives in `active_commit.rs`.

use crate::core::BlockCore;
use crate::error::{strerror, Error, ErrorClass, Result};
use crate::files::Files;
use crate::jobs::launch::{job_spec, Launch};
use crate::jobs::stream::base::BackingFormat;
use crate::state::DriverState;
use strata_filters::Driver;
use strata_graph::{NodeId, NodeSpec, Parent, Perm, Role, RootId, RootKind};
use strata_jobs::{
    BlockErrorAction, BlockdevOnError, Errno, IoOperation, JobCtl, JobDriver, JobFailure, RunStep,
};
use strata_perm::{BlockOp, ReplaceOptions};

/// `COMMIT_BUFFER_SIZE`: what one iteration of the copy loop looks at.
pub const COMMIT_BUFFER_SIZE: u64 = 512 * 1024;

/// The arguments of `block-commit`, after QAPI checking.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct CommitArgs {
    /// `job-id`.
    pub job_id: Option<String>,
    /// `device`: a BlockBackend or node name; must be a root node.
    pub device: String,
    /// `base-node`.
    pub base_node: Option<String>,
    /// `base` (deprecated): a backing file name.
    pub base: Option<String>,
    /// `top-node`.
    pub top_node: Option<String>,
    /// `top` (deprecated): a backing file name.
    pub top: Option<String>,
    /// `backing-file`: the string written into the overlay of top.
    pub backing_file: Option<String>,
    /// `backing-mask-protocol`.
    pub backing_mask_protocol: Option<bool>,
    /// `speed` (bytes/s).
    pub speed: Option<i64>,
    /// `on-error`.
    pub on_error: Option<BlockdevOnError>,
    /// `filter-node-name`: the name of the `commit_top`/`mirror_top` filter.
    pub filter_node_name: Option<String>,
    /// `auto-finalize`.
    pub auto_finalize: Option<bool>,
    /// `auto-dismiss`.
    pub auto_dismiss: Option<bool>,
}

/// Which job `qmp_block_commit` starts.
pub(crate) enum CommitPlan {
    /// `commit_active_start` (mirror-based), with its job id.
    Active {
        top: NodeId,
        base: NodeId,
        job_id: String,
    },
    /// `commit_start`.
    Intermediate {
        bs: NodeId,
        top: NodeId,
        base: NodeId,
    },
}

impl<F: Files> BlockCore<F> {
    /// `qmp_block_commit`'s checks, in QEMU's order, up to the choice
    /// between active and intermediate commit.
    pub(crate) fn commit_check(&mut self, args: &CommitArgs) -> Result<CommitPlan> {
        // libvirt probes on DeviceNotFound, so the lookup comes first.
        let bs = self
            .lookup_bs(Some(&args.device), Some(&args.device))
            .map_err(|_| {
                Error::with_class(
                    ErrorClass::DeviceNotFound,
                    format!("Device '{}' not found", args.device),
                )
            })?;
        if !self.is_root_node(bs) {
            return Err(Error::generic("Need a root block node"));
        }
        self.bg.check_op(bs, BlockOp::CommitSource)?;
        let top = self.commit_top_node(bs, args)?;
        let base = self.commit_base_node(top, args)?;
        let g = self.bg.graph();
        let walk: Vec<NodeId> = g.chain(top).take_while(|&n| n != base).collect();
        for node in walk.into_iter().chain([base]) {
            self.bg.check_op(node, BlockOp::CommitTarget)?;
        }
        if top == base {
            return Err(Error::generic("cannot commit an image into itself"));
        }
        let g = self.bg.graph();
        let is_active = g.skip_filters(top) == g.skip_filters(bs);
        let (top_perm, _) = self.bg.cumulative_perms(top);
        if top_perm.contains(Perm::WRITE) || is_active {
            if args.backing_file.is_some() {
                return Err(Error::generic(if is_active {
                    "'backing-file' specified, but 'top' is the active layer"
                } else {
                    "'backing-file' specified, but 'top' has a writer on it"
                }));
            }
            // Named after `bs`, as block_job_create would, although the
            // job is created on `top`.
            let job_id = args
                .job_id
                .clone()
                .unwrap_or_else(|| self.bg.device_name(bs).unwrap_or_default());
            return Ok(CommitPlan::Active { top, base, job_id });
        }
        if let Some(overlay) = self.bg.graph().find_overlay(bs, Some(top)) {
            self.bg.check_op(overlay, BlockOp::CommitTarget)?;
        }
        Ok(CommitPlan::Intermediate { bs, top, base })
    }

    /// `top-node` / `top`, defaulting to the active layer.
    fn commit_top_node(&mut self, bs: NodeId, args: &CommitArgs) -> Result<NodeId> {
        match (&args.top_node, &args.top) {
            (Some(_), Some(_)) => Err(Error::generic(
                "'top-node' and 'top' are mutually exclusive",
            )),
            (Some(name), None) => {
                let top = self.lookup_bs(None, Some(name))?;
                if !self.bg.graph().chain_contains(bs, top) {
                    return Err(Error::generic(format!(
                        "'{name}' is not in this backing file chain"
                    )));
                }
                Ok(top)
            }
            (None, Some(name)) => {
                // A shortcut on the filename as last refreshed (QEMU does
                // not refresh it here); the search refreshes what it needs.
                if self.bg.graph().node(bs)?.filename == *name {
                    return Ok(bs);
                }
                self.find_backing_image(bs, name)
                    .ok_or_else(|| Error::generic(format!("Top image file {name} not found")))
            }
            (None, None) => Ok(bs),
        }
    }

    /// `base-node` / `base`, defaulting to the deepest image below top.
    fn commit_base_node(&mut self, top: NodeId, args: &CommitArgs) -> Result<NodeId> {
        match (&args.base_node, &args.base) {
            (Some(_), Some(_)) => Err(Error::generic(
                "'base-node' and 'base' are mutually exclusive",
            )),
            (Some(name), None) => {
                let base = self.lookup_bs(None, Some(name))?;
                if !self.bg.graph().chain_contains(top, base) {
                    return Err(Error::generic(format!(
                        "'{name}' is not in this backing file chain"
                    )));
                }
                Ok(base)
            }
            (None, Some(name)) => self
                .find_backing_image(top, name)
                .ok_or_else(|| Error::generic(format!("Can't find '{name}' in the backing chain"))),
            (None, None) => Ok(self.bg.graph().find_base(top)),
        }
    }

    /// `bdrv_is_root_node`: every parent is a BlockBackend (a job link or a
    /// node parent makes it a non-root).
    fn is_root_node(&self, node: NodeId) -> bool {
        let g = self.bg.graph();
        let Ok(n) = g.node(node) else { return false };
        n.parents()
            .iter()
            .all(|&edge| match g.edge(edge).map(|e| e.parent()) {
                Ok(Parent::Root(root)) => {
                    matches!(g.root(root).map(|r| r.kind()), Ok(RootKind::Backend { .. }))
                }
                _ => false,
            })
    }

    /// The size checks of `commit_start` / `mirror_start_job`: the lengths
    /// of top and base, with QEMU's texts on failure.
    pub(crate) fn commit_sizes(&mut self, top: NodeId, base: NodeId) -> Result<(u64, u64)> {
        let inquire = |what: &str, e: std::io::Error| {
            Error::generic(format!(
                "Could not inquire {what} image size: {}",
                strerror(e.raw_os_error().unwrap_or(5))
            ))
        };
        let base_size = self.length(base).map_err(|e| inquire("base", e))?;
        let top_size = self.length(top).map_err(|e| inquire("top", e))?;
        Ok((top_size, base_size))
    }

    /// Adds an internal filter (`commit_top`, `mirror_top`): never frozen
    /// into, implicit unless named.
    pub(crate) fn new_job_filter(
        &mut self,
        driver: Driver,
        name: Option<&str>,
        read_only: bool,
        state: DriverState,
    ) -> Result<NodeId> {
        let mut spec = NodeSpec::new(driver.name(), driver.traits())
            .read_only(read_only)
            .implicit(name.is_none())
            .never_freeze(true);
        if let Some(name) = name {
            spec = spec.name(name);
        }
        let node = self.bg.add_node(spec)?;
        self.state.insert(node, state);
        Ok(node)
    }

    /// The job links on the nodes between `first` and `base` (exclusive):
    /// WRITE and WRITE_UNCHANGED shared, CONSISTENT_READ too for the
    /// filters sitting directly on the base.
    pub(crate) fn add_intermediate_nodes(
        &mut self,
        job_root: RootId,
        first: Option<NodeId>,
        top: NodeId,
        base: NodeId,
    ) -> Result<()> {
        let g = self.bg.graph();
        let filtered_base = g.find_overlay(top, Some(base)).and_then(|o| g.cow_node(o));
        let nodes: Vec<NodeId> = match first {
            Some(first) => g.chain(first).take_while(|&n| n != base).collect(),
            None => Vec::new(),
        };
        let mut shared = Perm::WRITE_UNCHANGED | Perm::WRITE;
        for node in nodes {
            if Some(node) == filtered_base {
                shared |= Perm::CONSISTENT_READ;
            }
            self.add_job_node(
                job_root,
                "commit",
                node,
                "intermediate node",
                Perm::NONE,
                shared,
            )?;
        }
        Ok(())
    }

    /// An anonymous BlockBackend on `node` with the given permissions.
    pub(crate) fn new_backend(&mut self, node: NodeId, perm: Perm, shared: Perm) -> Result<RootId> {
        let blk = self.bg.add_root(RootKind::Backend { name: None });
        let attached = self
            .with_hooks(|bg, hooks| bg.root_attach_child(hooks, blk, node, "root", perm, shared));
        if let Err(err) = attached {
            let _ = self.bg.remove_root(blk);
            return Err(err);
        }
        Ok(blk)
    }
}

/// Where the copy loop of an intermediate commit is.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Phase {
    /// `run()` has not begun.
    Start,
    /// Copying: the next offset and the length.
    Copy { offset: u64, len: u64 },
}

/// A running intermediate commit's state (`CommitBlockJob`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CommitJob {
    top: NodeId,
    base: NodeId,
    base_overlay: NodeId,
    commit_top: Option<NodeId>,
    pub(crate) job_root: RootId,
    blk_base: Option<RootId>,
    blk_top: Option<RootId>,
    base_perms: Perm,
    chain_frozen: bool,
    base_read_only: bool,
    backing_file: Option<String>,
    backing_format: BackingFormat,
    on_error: BlockdevOnError,
    phase: Phase,
}

impl<F: Files, J: JobDriver<BlockCore<F>> + From<CommitJob>> Launch<'_, F, J> {
    /// `commit_start`.
    pub(crate) fn start_commit(
        &mut self,
        args: &CommitArgs,
        bs: NodeId,
        top: NodeId,
        base: NodeId,
    ) -> Result<()> {
        let g = self.core.bg.graph();
        if g.skip_filters(top) == g.skip_filters(base) {
            return Err(Error::generic(
                "Invalid files for merge: top and base are the same",
            ));
        }
        let (top_size, base_size) = self.core.commit_sizes(top, base)?;
        let mut base_perms = Perm::CONSISTENT_READ | Perm::WRITE;
        if base_size < top_size {
            base_perms |= Perm::RESIZE;
        }
        let job_id = match &args.job_id {
            Some(id) => id.clone(),
            None => self.core.bg.device_name(bs).unwrap_or_default(),
        };
        let job_root = self.core.bg.add_root(RootKind::Job {
            job_type: "commit".into(),
            id: job_id.clone(),
        });
        let mut job = CommitJob {
            top,
            base,
            base_overlay: top,
            commit_top: None,
            job_root,
            blk_base: None,
            blk_top: None,
            base_perms,
            chain_frozen: false,
            base_read_only: false,
            backing_file: args.backing_file.clone(),
            backing_format: BackingFormat::from_mask_protocol(args.backing_mask_protocol),
            on_error: args.on_error.unwrap_or(BlockdevOnError::Report),
            phase: Phase::Start,
        };
        let spec = job_spec(
            &job_id,
            args.auto_finalize,
            args.auto_dismiss,
            args.on_error,
        );
        if let Err(err) = self.create(spec, job.clone()) {
            let _ = self.core.bg.remove_root(job_root);
            return Err(err.into());
        }
        // block_job_create: the main node is the device, then the speed.
        let created = self
            .core
            .add_job_node(job_root, "commit", bs, "main node", Perm::NONE, Perm::ALL)
            .and_then(|_| self.set_initial_speed(&job_id, args.speed));
        let set_up = created.and_then(|_| {
            let result = self
                .core
                .commit_setup(&mut job, args.filter_node_name.as_deref());
            if result.is_err() {
                self.core.commit_undo_setup(&mut job);
            }
            result
        });
        if let Err(err) = set_up {
            self.early_fail(&job_id)?;
            // Only now that the job's links are gone can the overlay take
            // its permissions on top again.
            if let Some(commit_top) = job.commit_top.take() {
                self.core.drop_job_filter(commit_top, top)?;
            }
            return Err(err);
        }
        self.update_driver(&job_id, job);
        self.start(&job_id)
    }
}

impl<F: Files> BlockCore<F> {
    /// `commit_start` after `block_job_create`: base read-write, the
    /// `commit_top` filter, the job's links, the frozen chain and the two
    /// BlockBackends. On error the caller undoes what `job` records.
    fn commit_setup(&mut self, job: &mut CommitJob, filter_node_name: Option<&str>) -> Result<()> {
        let (top, base) = (job.top, job.base);
        if self.bg.graph().node(base)?.read_only {
            self.reopen_read_only(base, false)?;
            job.base_read_only = true;
        }
        let commit_top = self.new_job_filter(
            Driver::CommitTop,
            filter_node_name,
            true,
            DriverState::CommitTop,
        )?;
        let appended = self.with_hooks(|bg, hooks| bg.append(hooks, commit_top, top));
        // From here on the filter lives by its parents.
        self.unref(commit_top)?;
        appended?;
        job.commit_top = Some(commit_top);
        job.base_overlay = self
            .bg
            .graph()
            .find_overlay(top, Some(base))
            .expect("base is below top");
        self.add_intermediate_nodes(job.job_root, Some(top), top, base)?;
        self.bg.freeze_chain(commit_top, Some(base))?;
        job.chain_frozen = true;
        self.add_job_node(job.job_root, "commit", base, "base", Perm::NONE, Perm::ALL)?;
        let shared = Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED;
        job.blk_base = Some(self.new_backend(base, job.base_perms, shared)?);
        job.blk_top = Some(self.new_backend(top, Perm::NONE, Perm::ALL)?);
        Ok(())
    }

    /// `commit_start`'s fail path before `job_early_fail`.
    fn commit_undo_setup(&mut self, job: &mut CommitJob) {
        if job.chain_frozen {
            if let Some(commit_top) = job.commit_top {
                let _ = self.bg.unfreeze_chain(commit_top, Some(job.base));
            }
            job.chain_frozen = false;
        }
        for blk in [job.blk_base.take(), job.blk_top.take()]
            .into_iter()
            .flatten()
        {
            self.release_root(blk);
        }
        if job.base_read_only {
            let _ = self.reopen_read_only(job.base, true);
        }
    }

    /// Replaces a job's filter by `below` in all its parents (what
    /// `bdrv_replace_node(filter, below)` does when a job goes away).
    pub(crate) fn drop_job_filter(&mut self, filter: NodeId, below: NodeId) -> Result<()> {
        self.bg.ref_node(filter)?;
        let replaced = self.with_hooks(|bg, hooks| {
            bg.replace_node(hooks, filter, below, ReplaceOptions::REPLACE_NODE)
        });
        self.unref(filter)?;
        replaced
    }

    /// `bdrv_drop_intermediate(commit_top, base, backing_file, mask)`: every
    /// parent of the filter moves to `base`; COW parents get their header
    /// rewritten to `base`'s filename (filters not skipped) and format.
    fn drop_intermediate(
        &mut self,
        commit_top: NodeId,
        base: NodeId,
        backing_file: Option<&str>,
        backing_format: BackingFormat,
    ) -> std::result::Result<(), Errno> {
        if !self.bg.graph().chain_contains(commit_top, base) {
            return Err(Errno::EIO);
        }
        self.refresh_filename(base).map_err(|_| Errno::EIO)?;
        let base_node = self.bg.graph().node(base).map_err(|_| Errno::EIO)?;
        let file = backing_file.map_or_else(|| base_node.filename.clone(), str::to_string);
        let format = backing_format.of(base_node).to_string();
        let g = self.bg.graph();
        let cow_parents: Vec<NodeId> = g
            .node(commit_top)
            .map_err(|_| Errno::EIO)?
            .parents()
            .iter()
            .filter_map(|&edge| {
                let e = g.edge(edge).ok()?;
                match e.parent() {
                    Parent::Node(parent) if e.role().contains(Role::COW) => Some(parent),
                    _ => None,
                }
            })
            .collect();
        self.bg.ref_node(commit_top).map_err(|_| Errno::EIO)?;
        let replaced = self.with_hooks(|bg, hooks| {
            bg.replace_node(hooks, commit_top, base, ReplaceOptions::EVERY_PARENT)
        });
        let _ = self.unref(commit_top);
        replaced.map_err(|_| Errno::EIO)?;
        for parent in cow_parents {
            self.update_backing_filename(parent, &file, &format)?;
        }
        Ok(())
    }

    /// `bdrv_backing_update_filename`: the header write, with the parent
    /// read-write for the time of it.
    fn update_backing_filename(
        &mut self,
        parent: NodeId,
        file: &str,
        format: &str,
    ) -> std::result::Result<(), Errno> {
        let read_only = self
            .bg
            .graph()
            .node(parent)
            .map_err(|_| Errno::EIO)?
            .read_only;
        if read_only {
            self.reopen_read_only(parent, false)
                .map_err(|_| Errno::EPERM)?;
        }
        let written = self.change_backing_file(parent, Some(file), Some(format));
        if read_only {
            let _ = self.reopen_read_only(parent, true);
        }
        written.map_err(|e| Errno::of_io(&e))
    }
}

impl CommitJob {
    /// One stretch of `commit_run`.
    pub(crate) fn run_step<F: Files>(
        &mut self,
        job: &mut JobCtl<'_>,
        core: &mut BlockCore<F>,
    ) -> RunStep {
        match self.phase.clone() {
            Phase::Start => {
                let len = match core.length(self.top) {
                    Ok(len) => len,
                    Err(e) => return RunStep::Finished(Err(JobFailure::io(&e))),
                };
                job.progress_set_remaining(len);
                if let Err(failure) = grow_base(core, self.base, len) {
                    return RunStep::Finished(Err(failure));
                }
                self.phase = Phase::Copy { offset: 0, len };
                if len == 0 {
                    return RunStep::Finished(Ok(()));
                }
                RunStep::RatelimitSleep
            }
            Phase::Copy { offset, len } => {
                if job.is_cancelled() {
                    return RunStep::Finished(Ok(()));
                }
                core.now_ns = job.now_ns();
                core.io_wait_until = 0;
                let want = COMMIT_BUFFER_SIZE.min(len - offset);
                let step = core
                    .is_allocated_above(self.top, Some(self.base_overlay), offset, want)
                    .map_err(|e| (IoOperation::Read, e))
                    .and_then(|(depth, n)| {
                        let n = if n == 0 { want } else { n };
                        if depth > 0 {
                            core.copy_range(self.top, self.base, offset, n)?;
                        }
                        Ok((depth > 0, n))
                    });
                let (copied, n) = match step {
                    Ok(done) => done,
                    Err((operation, e)) => {
                        let errno = Errno::of_io(&e);
                        // "ignore" retries the chunk, like "stop" after resume.
                        return match job.error_action(self.on_error, operation, errno) {
                            BlockErrorAction::Report => {
                                RunStep::Finished(Err(JobFailure::errno(errno)))
                            }
                            _ => RunStep::RatelimitSleep,
                        };
                    }
                };
                job.progress_update(n);
                if copied {
                    job.ratelimit_processed_bytes(n);
                }
                let next = offset + n;
                self.phase = Phase::Copy { offset: next, len };
                if next >= len {
                    return RunStep::Finished(Ok(()));
                }
                if core.io_wait_until > job.now_ns() {
                    return RunStep::Sleep(core.io_wait_until - job.now_ns());
                }
                RunStep::RatelimitSleep
            }
        }
    }
    /// `commit_prepare`: unfreeze, drop the base BlockBackend, drop the
    /// intermediate nodes.
    pub(crate) fn prepare<F: Files>(
        &mut self,
        core: &mut BlockCore<F>,
    ) -> std::result::Result<(), JobFailure> {
        let commit_top = self.commit_top.expect("a running commit has its filter");
        let _ = core.bg.unfreeze_chain(commit_top, Some(self.base));
        self.chain_frozen = false;
        if let Some(blk) = self.blk_base.take() {
            core.release_root(blk);
        }
        core.drop_intermediate(
            commit_top,
            self.base,
            self.backing_file.as_deref(),
            self.backing_format,
        )
        .map_err(JobFailure::errno)?;
        self.commit_top = None;
        Ok(())
    }

    /// `commit_abort`: unfreeze, release the job's nodes, put top back in
    /// place of the filter. Data already in the base stays.
    pub(crate) fn abort<F: Files>(&mut self, core: &mut BlockCore<F>) {
        let Some(commit_top) = self.commit_top.take() else {
            return;
        };
        if self.chain_frozen {
            let _ = core.bg.unfreeze_chain(commit_top, Some(self.base));
            self.chain_frozen = false;
        }
        if let Some(blk) = self.blk_base.take() {
            core.release_root(blk);
        }
        core.release_root(self.job_root);
        if let Some(below) = core.bg.graph().filter_node(commit_top) {
            let _ = core.drop_job_filter(commit_top, below);
        }
    }

    /// `commit_clean`: the base read-only again if it was; release top's
    /// BlockBackend.
    pub(crate) fn clean<F: Files>(&mut self, core: &mut BlockCore<F>) {
        if self.base_read_only {
            let _ = core.reopen_read_only(self.base, true);
        }
        if let Some(blk) = self.blk_top.take() {
            core.release_root(blk);
        }
    }
}

/// `commit_run` / `mirror_run`: a base shorter than top is grown to top's
/// length first (`blk_co_truncate`, preallocation off).
pub(crate) fn grow_base<F: Files>(
    core: &mut BlockCore<F>,
    base: NodeId,
    len: u64,
) -> std::result::Result<(), JobFailure> {
    core.grow(base, len).map_err(|e| JobFailure::io(&e))
}
