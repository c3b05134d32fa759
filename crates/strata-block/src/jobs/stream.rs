//! The `block-stream` job: `qmp_block_stream`'s checks, `stream_start`,
//! `stream_run` as a step machine, `stream_prepare` and `stream_clean`.
//! Which node becomes the backing file at completion is [`base`]'s rule.

pub(crate) mod base;

use crate::core::BlockCore;
use crate::error::{Error, Result};
use crate::files::Files;
use crate::jobs::launch::{job_spec, Launch};
use crate::policy::{BaseSearch, FreezeRange, HeaderString, Policy, StreamFilter};
use crate::state::DriverState;
use base::{
    header_backing, header_backing_at_start, new_backing_node, skip_implicit_above_base,
    stream_bounds, BackingFormat, StreamBounds,
};
use strata_filters::Driver;
use strata_graph::{NodeId, NodeSpec, OptValue, Options, Perm, Role, RootId, RootKind};
use strata_jobs::{BlockErrorAction, Errno, IoOperation, JobCtl, JobDriver, JobFailure, RunStep};
use strata_perm::{BlockOp, ChildSlot, ReplaceOptions};

/// `STREAM_CHUNK`: what one iteration of the copy loop looks at.
pub const STREAM_CHUNK: u64 = 512 * 1024;

/// The arguments of `block-stream`, after QAPI checking.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct StreamArgs {
    /// `job-id`.
    pub job_id: Option<String>,
    /// `device`: a BlockBackend or node name.
    pub device: String,
    /// `base`: a backing file name.
    pub base: Option<String>,
    /// `base-node`.
    pub base_node: Option<String>,
    /// `bottom`.
    pub bottom: Option<String>,
    /// `backing-file`.
    pub backing_file: Option<String>,
    /// `backing-mask-protocol`.
    pub backing_mask_protocol: Option<bool>,
    /// `speed` (bytes/s).
    pub speed: Option<i64>,
    /// `on-error`.
    pub on_error: Option<strata_jobs::BlockdevOnError>,
    /// `filter-node-name`.
    pub filter_node_name: Option<String>,
    /// `auto-finalize`.
    pub auto_finalize: Option<bool>,
    /// `auto-dismiss`.
    pub auto_dismiss: Option<bool>,
}

/// Where the copy loop is.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Phase {
    /// `run()` has not begun.
    Start,
    /// Copying: the next offset, the length, the first error kept for
    /// `on-error=ignore`.
    Copy {
        offset: u64,
        len: u64,
        error: Option<i32>,
    },
    /// Throttled I/O of the last chunk is in flight; the next iteration
    /// begins with its rate-limit sleep.
    IoDone {
        offset: u64,
        len: u64,
        error: Option<i32>,
    },
}

/// A running stream job's state.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct StreamJob {
    pub(crate) bs: NodeId,
    pub(crate) cor: Option<NodeId>,
    pub(crate) blk: RootId,
    pub(crate) job_root: RootId,
    pub(crate) bounds: StreamBounds,
    backing_file: Option<String>,
    backing_format: BackingFormat,
    bs_read_only: bool,
    on_error: strata_jobs::BlockdevOnError,
    policy: &'static Policy,
    /// The header string known at start (`HeaderString::StringAtStart`).
    string_at_start: Option<String>,
    /// The links the job froze itself (beyond its filter's), as the
    /// `(top, base)` of `freeze_chain`, until it unfreezes them.
    frozen: Option<(NodeId, Option<NodeId>)>,
    phase: Phase,
}

/// What a stream starts from once its bounds and header string are known.
struct StreamStart {
    bs: NodeId,
    bounds: StreamBounds,
    bs_read_only: bool,
    string_at_start: Option<String>,
}

/// What `qmp_block_stream` checked and found, before any graph change.
struct StreamPlan {
    bs: NodeId,
    base: Option<NodeId>,
    bottom: Option<NodeId>,
}

impl<F: Files, J: JobDriver<BlockCore<F>> + From<StreamJob>> Launch<'_, F, J> {
    /// `block-stream`: `qmp_block_stream`'s checks, then `stream_start`.
    pub(crate) fn block_stream(&mut self, args: &StreamArgs) -> Result<()> {
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
        if let Err(err) = self.create(spec, stream.clone()) {
            let mut doomed = stream;
            doomed.clean(self.core);
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
            self.early_fail(&job_id)?;
            let mut doomed = stream;
            doomed.undo_failed_start(self.core);
            return Err(err);
        }
        self.start(&job_id)
    }
}

impl<F: Files> BlockCore<F> {
    /// `qmp_block_stream`'s checks, in QEMU's order, up to `stream_start`.
    fn stream_check(&mut self, args: &StreamArgs) -> Result<StreamPlan> {
        if args.base.is_some() && args.base_node.is_some() {
            return Err(Error::generic(
                "'base' and 'base-node' cannot be specified at the same time",
            ));
        }
        if args.base.is_some() && args.bottom.is_some() {
            return Err(Error::generic(
                "'base' and 'bottom' cannot be specified at the same time",
            ));
        }
        if args.bottom.is_some() && args.base_node.is_some() {
            return Err(Error::generic(
                "'bottom' and 'base-node' cannot be specified at the same time",
            ));
        }
        let bs = self.lookup_bs(Some(&args.device), Some(&args.device))?;
        let mut base = None;
        if let Some(name) = &args.base {
            base = Some(self.find_backing_image(bs, name).ok_or_else(|| {
                Error::generic(format!("Can't find '{name}' in the backing chain"))
            })?);
        }
        if let Some(name) = &args.base_node {
            let node = self.lookup_bs(None, Some(name))?;
            if node == bs || !self.bg.graph().chain_contains(bs, node) {
                return Err(Error::generic(format!(
                    "Node '{name}' is not a backing image of '{}'",
                    args.device
                )));
            }
            base = Some(node);
        }
        let mut bottom = None;
        if let Some(name) = &args.bottom {
            let node = self.lookup_bs(None, Some(name))?;
            if self.bg.graph().node(node)?.traits().is_filter {
                return Err(Error::generic(format!(
                    "Node '{name}' is a filter, use a non-filter node as 'bottom'"
                )));
            }
            if !self.bg.graph().chain_contains(bs, node) {
                return Err(Error::generic(format!(
                    "Node '{name}' is not in a chain starting from '{}'",
                    args.device
                )));
            }
            bottom = Some(node);
        }
        let end = match bottom {
            Some(bottom) => self.bg.graph().filter_or_cow_node(bottom),
            None => base,
        };
        for node in self
            .bg
            .graph()
            .chain(bs)
            .take_while(|&n| Some(n) != end)
            .collect::<Vec<_>>()
        {
            self.bg.check_op(node, BlockOp::Stream)?;
        }
        if base.is_none() && args.backing_file.is_some() {
            return Err(Error::generic(
                "backing file specified, but streaming the entire chain",
            ));
        }
        Ok(StreamPlan { bs, base, bottom })
    }

    /// `stream_start` up to the job's creation: bounds, the temporary
    /// read-write reopen, the copy-on-read filter. Returns the job state
    /// minus its job links, which the caller adds once the job exists.
    fn stream_prepare_graph(
        &mut self,
        plan: &StreamPlan,
        args: &StreamArgs,
        job_id: &str,
    ) -> Result<StreamJob> {
        let bs = plan.bs;
        let policy = self.policy;
        let mut bounds = stream_bounds(self.bg.graph(), bs, plan.base, plan.bottom)
            .map_err(|e| Error::generic(e.message))?;
        if policy.base_search == BaseSearch::SkipImplicitFilters {
            bounds = skip_implicit_above_base(self.bg.graph(), bounds);
        }
        let string_at_start = self.header_string_at_start(plan, args, &bounds);
        let bs_read_only = self.bg.graph().node(bs)?.read_only;
        if policy.filter == StreamFilter::None {
            let start = StreamStart {
                bs,
                bounds,
                bs_read_only,
                string_at_start,
            };
            return self.stream_prepare_unfiltered(start, args, job_id);
        }
        if bs_read_only {
            self.bg.freeze_chain(bs, Some(bounds.above_base))?;
            let reopened = self.reopen_read_only(bs, false);
            self.bg.unfreeze_chain(bs, Some(bounds.above_base))?;
            reopened?;
        }
        let cor =
            match self.insert_cor_filter(bs, bounds.base_overlay, args.filter_node_name.as_deref())
            {
                Ok(cor) => cor,
                Err(err) => {
                    if bs_read_only {
                        self.reopen_read_only(bs, true)?;
                    }
                    return Err(err);
                }
            };
        // The filter froze down to base_overlay; a policy may want more.
        let frozen = freeze_end(policy.freeze, &bounds)
            .filter(|&end| end != Some(bounds.base_overlay))
            .map(|end| (bounds.base_overlay, end));
        if let Some((from, to)) = frozen {
            if let Err(err) = self.bg.freeze_chain(from, to) {
                self.drop_cor_filter(cor)?;
                if bs_read_only {
                    self.reopen_read_only(bs, true)?;
                }
                return Err(err.into());
            }
        }
        let start = StreamStart {
            bs,
            bounds,
            bs_read_only,
            string_at_start,
        };
        Ok(self.new_stream_job(start, (Some(cor), frozen), args, job_id))
    }

    /// `stream_start` of a policy without a stream filter (QEMU 5.1): the
    /// job freezes the chain itself, then reopens the top read-write.
    fn stream_prepare_unfiltered(
        &mut self,
        start: StreamStart,
        args: &StreamArgs,
        job_id: &str,
    ) -> Result<StreamJob> {
        let (bs, bs_read_only) = (start.bs, start.bs_read_only);
        let end = freeze_end(self.policy.freeze, &start.bounds)
            .unwrap_or(Some(start.bounds.base_overlay));
        self.bg.freeze_chain(bs, end)?;
        if bs_read_only {
            if let Err(err) = self.reopen_read_only(bs, false) {
                self.bg.unfreeze_chain(bs, end)?;
                return Err(err);
            }
        }
        Ok(self.new_stream_job(start, (None, Some((bs, end))), args, job_id))
    }

    /// The job over a prepared graph: its job and BlockBackend roots, and
    /// what it keeps from the arguments. `cor` is the stream's own filter
    /// (if the policy inserts one), `frozen` the links the job froze
    /// itself (beyond the filter's).
    fn new_stream_job(
        &mut self,
        start: StreamStart,
        (cor, frozen): (Option<NodeId>, Option<(NodeId, Option<NodeId>)>),
        args: &StreamArgs,
        job_id: &str,
    ) -> StreamJob {
        let job_root = self.bg.add_root(RootKind::Job {
            job_type: "stream".into(),
            id: job_id.to_string(),
        });
        let blk = self.bg.add_root(RootKind::Backend { name: None });
        StreamJob {
            bs: start.bs,
            cor,
            blk,
            job_root,
            bounds: start.bounds,
            backing_file: args.backing_file.clone(),
            backing_format: BackingFormat::from_mask_protocol(args.backing_mask_protocol),
            bs_read_only: start.bs_read_only,
            on_error: args
                .on_error
                .unwrap_or(strata_jobs::BlockdevOnError::Report),
            policy: self.policy,
            string_at_start: start.string_at_start,
            frozen,
            phase: Phase::Start,
        }
    }

    /// The header string a pre-6.0 stream fixed at start: `backing-file`,
    /// else `base` as the user wrote it, else the base node's filename (a
    /// filter's `json:` name if the base is a filter).
    fn header_string_at_start(
        &mut self,
        plan: &StreamPlan,
        args: &StreamArgs,
        bounds: &StreamBounds,
    ) -> Option<String> {
        if let Some(file) = args.backing_file.as_ref().or(args.base.as_ref()) {
            return Some(file.clone());
        }
        // QEMU 5.1 had no `bottom`: its users named backing(bottom) instead.
        let base = plan
            .base
            .or_else(|| self.bg.graph().filter_or_cow_node(bounds.base_overlay))?;
        self.refresh_filename(base).ok()?;
        Some(self.bg.graph().node(base).ok()?.filename.clone())
    }

    /// `block_job_create`'s `main node` link on the filter (on the top
    /// without one).
    fn stream_attach_main(&mut self, job: &StreamJob) -> Result<()> {
        self.add_job_node(
            job.job_root,
            "stream",
            job.cor.unwrap_or(job.bs),
            "main node",
            Perm::NONE,
            Perm::ALL,
        )
    }

    /// The rest of `stream_start`'s links, after the speed was accepted.
    fn stream_attach_job(&mut self, job: &StreamJob) -> Result<()> {
        let reader = job.cor.unwrap_or(job.bs);
        let rw = Perm::CONSISTENT_READ | Perm::WRITE | Perm::WRITE_UNCHANGED;
        self.with_hooks(|bg, hooks| {
            bg.root_attach_child(hooks, job.blk, reader, "root", Perm::CONSISTENT_READ, rw)
        })?;
        if job.cor.is_some() {
            self.add_job_node(
                job.job_root,
                "stream",
                job.bs,
                "active node",
                Perm::NONE,
                rw,
            )?;
        }
        let base_now = self.bg.graph().filter_or_cow_node(job.bounds.above_base);
        let intermediates: Vec<NodeId> = self
            .bg
            .graph()
            .chain(job.bs)
            .skip(1)
            .take_while(|&n| Some(n) != base_now)
            .collect();
        for node in intermediates {
            self.add_job_node(
                job.job_root,
                "stream",
                node,
                "intermediate node",
                Perm::NONE,
                Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED,
            )?;
        }
        Ok(())
    }

    /// `bdrv_insert_node` of a copy-on-read filter with `bottom` above `bs`:
    /// its errors say which half failed, opening the filter ("Could not
    /// create node: ") or moving `bs`'s parents to it ("Could not replace
    /// node: ").
    fn insert_cor_filter(
        &mut self,
        bs: NodeId,
        bottom: NodeId,
        name: Option<&str>,
    ) -> Result<NodeId> {
        let driver = Driver::CopyOnRead;
        let mut options = Options::new().with("driver", OptValue::Str(driver.name().into()));
        options.put("file", OptValue::Str(self.bg.graph().name(bs).to_string()));
        options.put(
            "bottom",
            OptValue::Str(self.bg.graph().name(bottom).to_string()),
        );
        let mut spec = NodeSpec::new(driver.name(), driver.traits())
            .implicit(name.is_none())
            .options(options);
        if let Some(name) = name {
            spec = spec.name(name);
        }
        let cor = self
            .bg
            .add_node(spec)
            .map_err(|err| Error::from(err).prepend("Could not create node: "))?;
        self.state
            .insert(cor, DriverState::CopyOnRead { bottom: None });
        let attached = self.with_hooks(|bg, hooks| {
            bg.attach_child(hooks, cor, bs, "file", Role::FILTERED_PRIMARY)
        });
        let bottom_name = self.bg.graph().name(bottom).to_string();
        let configured = attached
            .and_then(|_| self.configure_bottom(cor, Some(&bottom_name)))
            .map_err(|err| err.prepend("Could not create node: "));
        let replaced = configured.and_then(|_| {
            self.with_hooks(|bg, hooks| {
                bg.replace_node(hooks, bs, cor, ReplaceOptions::REPLACE_NODE)
            })
            .map_err(|err| err.prepend("Could not replace node: "))
        });
        if let Err(err) = replaced {
            self.drop_cor_filter(cor)?;
            return Err(err);
        }
        Ok(cor)
    }

    /// `bdrv_cor_filter_drop`: unfreeze, move the parents back, unref.
    pub(crate) fn drop_cor_filter(&mut self, cor: NodeId) -> Result<()> {
        if let Some(DriverState::CopyOnRead {
            bottom: Some(bottom),
        }) = self.state.get(&cor).cloned()
        {
            self.bg.unfreeze_chain(cor, Some(bottom))?;
            self.state
                .insert(cor, DriverState::CopyOnRead { bottom: None });
            self.unref(bottom)?;
        }
        if let Some(child) = self.bg.graph().filter_node(cor) {
            self.with_hooks(|bg, hooks| {
                bg.replace_node(hooks, cor, child, ReplaceOptions::DROP_FILTER)
            })?;
        }
        self.unref(cor)
    }
}

/// What becomes of a stream's BlockBackend when the job is undone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BackendFate {
    /// Released with the job.
    Released,
    /// Left in the graph, as QEMU's failed `stream_start` leaves it.
    Leaked,
}

/// (a): where a policy's freeze ends, as `freeze_chain`'s base; `None`
/// when the policy freezes no further than the copy-on-read filter does.
fn freeze_end(range: FreezeRange, bounds: &StreamBounds) -> Option<Option<NodeId>> {
    match range {
        FreezeRange::BaseOverlay => None,
        FreezeRange::AboveBase => Some(Some(bounds.above_base)),
        FreezeRange::Base => Some(bounds.base_at_start),
    }
}

impl StreamJob {
    /// One stretch of `stream_run`.
    pub(crate) fn run_step<F: Files>(
        &mut self,
        job: &mut JobCtl<'_>,
        core: &mut BlockCore<F>,
    ) -> RunStep {
        match self.phase.clone() {
            Phase::Start => {
                let unfiltered = core.bg.graph().skip_filters(self.bs);
                if unfiltered == self.bounds.base_overlay {
                    return RunStep::Finished(Ok(()));
                }
                let len = match core.length(self.bs) {
                    Ok(len) => len,
                    Err(e) => return RunStep::Finished(Err(JobFailure::io(&e))),
                };
                job.progress_set_remaining(len);
                self.phase = Phase::Copy {
                    offset: 0,
                    len,
                    error: None,
                };
                if len == 0 {
                    return RunStep::Finished(Ok(()));
                }
                RunStep::RatelimitSleep
            }
            Phase::IoDone { offset, len, error } => {
                self.phase = Phase::Copy { offset, len, error };
                RunStep::RatelimitSleep
            }
            Phase::Copy {
                offset,
                len,
                mut error,
            } => {
                if job.is_cancelled() {
                    return finish(error);
                }
                core.now_ns = job.now_ns();
                core.io_wait_until = 0;
                let (copy, mut n, mut ret) = self.inspect(core, offset, len);
                if copy && ret.is_ok() {
                    ret = match self.cor {
                        Some(cor) => core.cor_prefetch(cor, offset, n),
                        // QEMU 5.1's stream_populate: a copy-on-read read
                        // of the top.
                        None => core.copy_on_read(self.bs, offset, n),
                    };
                }
                if let Err(e) = ret {
                    let errno = e.raw_os_error().unwrap_or(5);
                    let action = job.error_action(self.on_error, IoOperation::Read, Errno(errno));
                    if action == BlockErrorAction::Stop {
                        return RunStep::RatelimitSleep;
                    }
                    error.get_or_insert(errno);
                    if action == BlockErrorAction::Report {
                        return finish(error);
                    }
                }
                job.progress_update(n);
                if copy {
                    job.ratelimit_processed_bytes(n);
                }
                n = n.max(1);
                let next = offset + n;
                self.phase = Phase::Copy {
                    offset: next,
                    len,
                    error,
                };
                if next >= len {
                    return finish(error);
                }
                if core.io_wait_until > job.now_ns() {
                    self.phase = Phase::IoDone {
                        offset: next,
                        len,
                        error,
                    };
                    return RunStep::IoWait {
                        until_ns: core.io_wait_until,
                    };
                }
                RunStep::RatelimitSleep
            }
        }
    }

    /// Whether the chunk at `offset` must be copied, and its length.
    fn inspect<F: Files>(
        &self,
        core: &mut BlockCore<F>,
        offset: u64,
        len: u64,
    ) -> (bool, u64, std::io::Result<()>) {
        let unfiltered = core.bg.graph().skip_filters(self.bs);
        let want = STREAM_CHUNK.min(len - offset);
        let (allocated, n) = match core.is_allocated(unfiltered, offset, want) {
            Ok(v) => v,
            Err(e) => return (false, want, Err(e)),
        };
        if allocated {
            return (false, n, Ok(()));
        }
        let Some(below) = core.bg.graph().cow_node(unfiltered) else {
            return (false, len - offset, Ok(()));
        };
        match core.is_allocated_above(below, Some(self.bounds.base_overlay), offset, n) {
            Ok((0, 0)) => (false, len - offset, Ok(())),
            Ok((depth, n)) => (depth > 0, n, Ok(())),
            Err(e) => (false, n, Err(e)),
        }
    }

    /// `stream_prepare`: drop the filter, re-read the base, set it as the
    /// backing node and write the header.
    pub(crate) fn prepare<F: Files>(
        &mut self,
        core: &mut BlockCore<F>,
    ) -> std::result::Result<(), JobFailure> {
        let unfiltered = core.bg.graph().skip_filters(self.bs);
        let had_backing = core.bg.graph().cow_node(unfiltered).is_some();
        if let Some(cor) = self.cor.take() {
            core.drop_cor_filter(cor)
                .map_err(|e| JobFailure::with_message(Errno(1), e.to_string()))?;
        }
        self.unfreeze(core);
        if !had_backing {
            return Ok(());
        }
        let base = new_backing_node(core.bg.graph(), &self.bounds, self.policy.new_backing);
        if let Some(base) = base {
            let _ = core.refresh_filename(core.bg.graph().skip_filters(base));
        }
        let header = match self.policy.header {
            HeaderString::UnfilteredAtCompletion => header_backing(
                core.bg.graph(),
                base,
                self.backing_file.as_deref(),
                self.backing_format,
            )
            .map(|(file, format)| (Some(file), format)),
            HeaderString::StringAtStart => {
                header_backing_at_start(core.bg.graph(), base, self.string_at_start.as_deref())
            }
        };
        // Relinking the backing node it already has would drop the node's
        // last reference before taking the new one: QEMU's
        // bdrv_set_backing_hd refs first, so an unchanged link is a no-op.
        let relinked = if core.bg.graph().filter_or_cow_node(unfiltered) != base {
            core.with_hooks(|bg, hooks| {
                bg.set_file_or_backing(hooks, unfiltered, base, ChildSlot::Backing)
            })
        } else {
            Ok(())
        };
        let (file, format) = match &header {
            Some((file, format)) => (file.as_deref(), Some(format.as_str())),
            None => (None, None),
        };
        // stream_prepare writes the header whether or not the link could
        // change, and only then reports a failed relink (as EPERM).
        let written = core.change_backing_file(unfiltered, file, format);
        if relinked.is_err() {
            return Err(JobFailure::errno(Errno(1)));
        }
        written.map_err(|e| JobFailure::io(&e))?;
        Ok(())
    }

    /// `stream_clean`: drop a filter left by failure or cancel, release the
    /// job's BlockBackend, restore read-only.
    pub(crate) fn clean<F: Files>(&mut self, core: &mut BlockCore<F>) {
        self.undo(core, BackendFate::Released);
    }

    /// `stream_start`'s fail path after the job was created: as
    /// [`StreamJob::clean`], except that the job's own BlockBackend
    /// (`s->blk`), once attached, is never released (`job_early_fail` does
    /// not run `stream_clean`): it stays, and moves with the filter's
    /// parents to the top node.
    pub(crate) fn undo_failed_start<F: Files>(&mut self, core: &mut BlockCore<F>) {
        let attached = core
            .bg
            .graph()
            .root(self.blk)
            .is_ok_and(|root| !root.children().is_empty());
        let fate = if attached {
            BackendFate::Leaked
        } else {
            BackendFate::Released
        };
        self.undo(core, fate);
    }

    fn undo<F: Files>(&mut self, core: &mut BlockCore<F>, backend: BackendFate) {
        if let Some(cor) = self.cor.take() {
            let _ = core.drop_cor_filter(cor);
        }
        self.unfreeze(core);
        if backend == BackendFate::Released {
            core.release_root(self.blk);
        }
        if self.bs_read_only {
            let _ = core.reopen_read_only(self.bs, true);
        }
    }
}

impl StreamJob {
    /// Releases the links the job froze itself (its filter's go with it).
    fn unfreeze<F: Files>(&mut self, core: &mut BlockCore<F>) {
        if let Some((top, base)) = self.frozen.take() {
            let _ = core.bg.unfreeze_chain(top, base);
        }
    }
}

fn finish(error: Option<i32>) -> RunStep {
    match error {
        Some(errno) => RunStep::Finished(Err(JobFailure::errno(Errno(errno)))),
        None => RunStep::Finished(Ok(())),
    }
}

impl<F: Files> BlockCore<F> {
    /// Whether releasing `root` drops the last reference to a node.
    pub(crate) fn release_closes_a_node(&self, root: RootId) -> bool {
        let g = self.bg.graph();
        let Ok(edges) = g.root(root).map(|r| r.children().to_vec()) else {
            return false;
        };
        let children: Vec<NodeId> = edges
            .iter()
            .filter_map(|&e| g.edge(e).ok().map(|e| e.child()))
            .collect();
        children.iter().any(|&child| {
            let held = children.iter().filter(|&&c| c == child).count();
            g.node(child).is_ok_and(|n| n.refcnt() as usize <= held)
        })
    }

    /// Detaches every edge of a root parent and deletes it.
    pub(crate) fn release_root(&mut self, root: RootId) {
        let edges = self
            .bg
            .graph()
            .root(root)
            .map(|r| r.children().to_vec())
            .unwrap_or_default();
        for edge in edges {
            if let Ok(deleted) = self.with_hooks(|bg, hooks| bg.unref_child(hooks, edge)) {
                self.forget_deleted(&deleted);
            }
        }
        let _ = self.bg.remove_root(root);
    }
}
