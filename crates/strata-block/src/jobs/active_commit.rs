//! Active commit (`commit_active_start` → `mirror_start_job` in
//! `block/mirror.c`): a `mirror_top` filter above top, a dirty bitmap
//! seeded from what `[top .. base_overlay]` allocates, a copy loop that
//! moves to READY, and on exit the replacement of top by the base.
//!
//! Writes through `mirror_top` are copied into the base as they happen
//! (`BlockCore::mirror_top_write` in `io.rs`), so a READY job has nothing left
//! to do until it is completed or cancelled.

use crate::core::BlockCore;
use crate::error::{Error, Result};
use crate::files::Files;
use crate::jobs::commit::{grow_base, CommitArgs};
use crate::jobs::launch::{job_spec, Launch};
use crate::state::DriverState;
use std::collections::BTreeSet;
use strata_filters::{Driver, MirrorTopState};
use strata_formats::ExtentKind;
use strata_graph::{NodeId, Perm, RootId, RootKind};
use strata_jobs::{
    BlockErrorAction, BlockdevOnError, Errno, IoOperation, JobCore, JobCtl, JobDriver, JobFailure,
    RunStep,
};
use strata_perm::ReplaceOptions;

/// `MAX_IO_BYTES`: the largest single copy of the mirror loop.
pub const MIRROR_MAX_IO_BYTES: u64 = 1 << 20;

/// `MAX_IN_FLIGHT`: how many operations the mirror loop keeps in flight.
const MIRROR_MAX_IN_FLIGHT: u64 = 16;

/// `DEFAULT_MIRROR_BUF_SIZE`, the `buf_size` of an active commit
/// (`commit_active_start` passes none): one iteration gathers contiguous
/// dirty chunks up to this many bytes, so a throttled job's first iteration
/// copies up to 16 MiB before its first rate-limit sleep.
const MIRROR_BUF_SIZE: u64 = MIRROR_MAX_IN_FLIGHT * MIRROR_MAX_IO_BYTES;

/// `max_io_bytes` of `mirror_iteration`: the longest data (or failed
/// block-status) operation; zero runs are not cut.
const MIRROR_MAX_OPERATION_BYTES: u64 =
    if MIRROR_BUF_SIZE / MIRROR_MAX_IN_FLIGHT > MIRROR_MAX_IO_BYTES {
        MIRROR_BUF_SIZE / MIRROR_MAX_IN_FLIGHT
    } else {
        MIRROR_MAX_IO_BYTES
    };

/// `IOV_MAX`, the `max_iov` of the nodes: one copy reads at most this
/// many granularity-sized buffers (`mirror_co_read`).
const MIRROR_MAX_IOV: u64 = 1024;

/// How the mirror loop writes one stretch of the target.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MirrorMethod {
    /// `MIRROR_METHOD_COPY`: read from the source, write what was read.
    Copy,
    /// `MIRROR_METHOD_ZERO`: a zero write.
    Zero,
}

/// One operation of `mirror_iteration` (a `MirrorOp`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct MirrorOperation {
    offset: u64,
    bytes: u64,
    method: MirrorMethod,
    /// `bytes_handled`: how far the loop moves on from where the
    /// operation was asked to start (a copy rounded out to the target's
    /// clusters covers more, before and after).
    handled: u64,
}

/// `s->cow_bitmap`: a target that names a backing file it does not have
/// cannot fill the rest of a cluster a copy writes into, so the mirror
/// loop copies whole target clusters itself, until a chunk has been copied
/// once.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct CowCopy {
    /// `target_cluster_size`.
    target_cluster: u64,
    /// Chunks a successful operation has written (the bitmap's set bits).
    copied: BTreeSet<u64>,
    /// Chunks written by operations QEMU would still have in flight: a bit
    /// is set when the operation completes, and an unthrottled loop issues
    /// its next iteration before the last one's reads are done; they count
    /// once the job really sleeps (throttled).
    in_flight: BTreeSet<u64>,
}

/// Where the mirror loop is.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Phase {
    /// `mirror_run` has not begun.
    Start,
    /// Copying dirty chunks (and, once READY, waiting).
    Run,
}

/// A running active commit's state (`MirrorBlockJob` of a commit).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ActiveCommitJob {
    top: NodeId,
    base: NodeId,
    base_overlay: NodeId,
    mirror_top: Option<NodeId>,
    pub(crate) job_root: RootId,
    blk_target: Option<RootId>,
    target_perms: Perm,
    chain_frozen: bool,
    base_read_only: bool,
    on_error: BlockdevOnError,
    should_complete: bool,
    length: u64,
    granularity: u64,
    /// Dirty chunks (index = offset / granularity).
    dirty: BTreeSet<u64>,
    cow: Option<CowCopy>,
    phase: Phase,
    /// `s->ret`: the error of an operation whose policy reported it; the
    /// loop ends with it when it next comes round.
    reported: Option<Errno>,
}

impl<F: Files, J: JobDriver<BlockCore<F>> + From<ActiveCommitJob>> Launch<'_, F, J> {
    /// `commit_active_start`: base read-write, then `mirror_start_job`.
    pub(crate) fn start_active_commit(
        &mut self,
        args: &CommitArgs,
        top: NodeId,
        base: NodeId,
        job_id: &str,
    ) -> Result<()> {
        let base_read_only = self.core.bg.graph().node(base)?.read_only;
        if base_read_only {
            self.core.reopen_read_only(base, false)?;
        }
        let started = self.mirror_start_job(args, top, base, job_id, base_read_only);
        if started.is_err() && base_read_only {
            let _ = self.core.reopen_read_only(base, true);
        }
        started
    }

    /// `mirror_start_job` for a commit (the target is in top's chain).
    fn mirror_start_job(
        &mut self,
        args: &CommitArgs,
        top: NodeId,
        base: NodeId,
        job_id: &str,
        base_read_only: bool,
    ) -> Result<()> {
        let g = self.core.bg.graph();
        if g.skip_filters(top) == g.skip_filters(base) {
            return Err(Error::generic("Can't mirror node into itself"));
        }
        let state = MirrorTopState {
            stop: false,
            is_commit: true,
        };
        let mirror_top = self.core.new_job_filter(
            Driver::MirrorTop,
            args.filter_node_name.as_deref(),
            false,
            DriverState::MirrorTop(state),
        )?;
        if let Err(err) = self
            .core
            .with_hooks(|bg, hooks| bg.append(hooks, mirror_top, top))
        {
            self.core.unref(mirror_top)?;
            return Err(err);
        }
        let job_root = self.core.bg.add_root(RootKind::Job {
            job_type: "commit".into(),
            id: job_id.to_string(),
        });
        let mut job = ActiveCommitJob {
            top,
            base,
            base_overlay: top,
            mirror_top: Some(mirror_top),
            job_root,
            blk_target: None,
            target_perms: Perm::WRITE,
            chain_frozen: false,
            base_read_only,
            on_error: args.on_error.unwrap_or(BlockdevOnError::Report),
            should_complete: false,
            length: 0,
            granularity: 0,
            dirty: BTreeSet::new(),
            cow: None,
            phase: Phase::Start,
            reported: None,
        };
        let spec = job_spec(job_id, args.auto_finalize, args.auto_dismiss, args.on_error);
        if let Err(err) = self.create(spec, job.clone()) {
            let _ = self.core.bg.remove_root(job_root);
            self.core.stop_mirror_top(mirror_top, top)?;
            return Err(err.into());
        }
        let shared = Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED | Perm::WRITE;
        let set_up = self
            .core
            .add_job_node(
                job_root,
                "commit",
                mirror_top,
                "main node",
                Perm::CONSISTENT_READ,
                shared,
            )
            .and_then(|_| self.set_initial_speed(job_id, args.speed))
            .and_then(|_| self.core.mirror_setup(&mut job));
        if let Err(err) = set_up {
            if let Some(blk) = job.blk_target.take() {
                self.core.release_root(blk);
            }
            if job.chain_frozen {
                let _ = self.core.bg.unfreeze_chain(mirror_top, Some(base));
            }
            self.early_fail(job_id)?;
            self.core.stop_mirror_top(mirror_top, top)?;
            return Err(err);
        }
        // The job's main-node link holds the filter from now on.
        self.core.unref(mirror_top)?;
        self.core.mirror_targets.insert(mirror_top, base);
        self.update_driver(job_id, job);
        self.start(job_id)
    }
}

impl<F: Files> BlockCore<F> {
    /// `mirror_start_job` after `block_job_create`: the target
    /// BlockBackend, the source/target/intermediate links, the frozen chain.
    fn mirror_setup(&mut self, job: &mut ActiveCommitJob) -> Result<()> {
        let (top, base) = (job.top, job.base);
        let (top_size, base_size) = self.commit_sizes(top, base)?;
        if base_size < top_size {
            job.target_perms |= Perm::RESIZE;
        }
        let target_shared = Perm::WRITE_UNCHANGED | Perm::CONSISTENT_READ | Perm::WRITE;
        job.blk_target = Some(self.new_backend(base, job.target_perms, target_shared)?);
        job.base_overlay = self
            .bg
            .graph()
            .find_overlay(top, Some(base))
            .expect("base is below top");
        let source_shared = Perm::WRITE_UNCHANGED | Perm::WRITE | Perm::CONSISTENT_READ;
        self.add_job_node(
            job.job_root,
            "commit",
            top,
            "source",
            Perm::NONE,
            source_shared,
        )?;
        self.add_job_node(
            job.job_root,
            "commit",
            base,
            "target",
            Perm::NONE,
            Perm::ALL,
        )?;
        let first = self.bg.graph().filter_or_cow_node(top);
        self.add_intermediate_nodes(job.job_root, first, top, base)?;
        let mirror_top = job.mirror_top.expect("set up with its filter");
        self.bg.freeze_chain(mirror_top, Some(base))?;
        job.chain_frozen = true;
        Ok(())
    }

    /// `bs_opaque->stop = true`, its permissions dropped, and the filter
    /// replaced by what it filters (`below` if it lost its child).
    fn stop_mirror_top(&mut self, mirror_top: NodeId, below: NodeId) -> Result<()> {
        self.mirror_targets.remove(&mirror_top);
        self.state.insert(
            mirror_top,
            DriverState::MirrorTop(MirrorTopState {
                stop: true,
                is_commit: true,
            }),
        );
        self.with_hooks(|bg, hooks| bg.refresh_perms(hooks, &[mirror_top]))?;
        let below = self.bg.graph().filter_node(mirror_top).unwrap_or(below);
        self.drop_job_filter(mirror_top, below)?;
        // The creator's reference, which the job never took over.
        self.unref(mirror_top)
    }

    /// `bdrv_get_default_bitmap_granularity`: the target's `bdrv_get_info`
    /// cluster size within [4 KiB, 64 KiB]; 64 KiB when it has none.
    fn bitmap_granularity(&self, node: NodeId) -> u64 {
        self.cluster_size_of(node)
            .map_or(65536, |c| c.clamp(4096, 65536))
    }

    /// `mirror_run`'s COW set-up: a target whose `backing_file` names an
    /// image (a qcow2 header's; never a raw node's) while no backing node
    /// is attached (`bdrv_backing_chain_next`), with clusters bigger than
    /// the granularity.
    fn mirror_cow(&self, target: NodeId, granularity: u64) -> Option<CowCopy> {
        let names_backing = match self.state.get(&target) {
            Some(DriverState::Format { image, .. }) => {
                image.backing_file().is_some_and(|name| !name.is_empty())
            }
            _ => false,
        };
        let target_cluster = self.cluster_size_of(target).unwrap_or(512);
        let has_backing = self.bg.graph().backing_chain_next(target).is_some();
        (names_backing && !has_backing && granularity < target_cluster).then(|| CowCopy {
            target_cluster,
            copied: BTreeSet::new(),
            in_flight: BTreeSet::new(),
        })
    }
}

impl ActiveCommitJob {
    /// One stretch of `mirror_run`.
    pub(crate) fn run_step<F: Files>(
        &mut self,
        job: &mut JobCtl<'_>,
        core: &mut BlockCore<F>,
    ) -> RunStep {
        // The top of mirror_run's loop: a reported error ends the job
        // before a cancel is looked at.
        if let Some(errno) = self.reported {
            return RunStep::Finished(Err(JobFailure::errno(errno)));
        }
        if job.is_cancelled() {
            return RunStep::Finished(Ok(()));
        }
        core.now_ns = job.now_ns();
        core.io_wait_until = 0;
        match self.phase {
            Phase::Start => self.start(job, core),
            Phase::Run => self.iterate(job, core),
        }
    }

    /// `mirror_run` up to the loop: the length, the seeded bitmap.
    fn start<F: Files>(&mut self, job: &mut JobCtl<'_>, core: &mut BlockCore<F>) -> RunStep {
        job.set_actively_synced(false);
        self.length = match core.length(self.top) {
            Ok(len) => len,
            Err(e) => return RunStep::Finished(Err(JobFailure::io(&e))),
        };
        if let Err(failure) = grow_base(core, self.base, self.length) {
            return RunStep::Finished(Err(failure));
        }
        self.granularity = core.bitmap_granularity(self.base);
        self.cow = core.mirror_cow(self.base, self.granularity);
        self.phase = Phase::Run;
        if self.length == 0 {
            job.transition_to_ready();
            return RunStep::Yield;
        }
        let mut offset = 0;
        while offset < self.length {
            let want = self.length - offset;
            let (depth, count) =
                match core.is_allocated_above(self.top, Some(self.base_overlay), offset, want) {
                    Ok((depth, 0)) => (depth, want),
                    Ok(found) => found,
                    Err(e) => return RunStep::Finished(Err(JobFailure::io(&e))),
                };
            if depth > 0 {
                self.mark_dirty(offset, count);
            }
            offset += count;
        }
        RunStep::PausePoint
    }

    /// One iteration of the mirror loop: copy one dirty stretch, or, once
    /// nothing is dirty, READY, and exit when completing.
    fn iterate<F: Files>(&mut self, job: &mut JobCtl<'_>, core: &mut BlockCore<F>) -> RunStep {
        job.progress_set_remaining(self.dirty_bytes());
        if let Some((offset, len)) = self.next_dirty_run() {
            // QEMU clears the gathered chunks before it looks at the
            // source; a failed operation marks its own chunks dirty again.
            self.clear_dirty(offset, len);
            self.mirror_iteration(job, core, offset, len);
            // QEMU's copies are still in flight when its loop checks for
            // READY (or for a reported error), so that check waits for the
            // next iteration, after the rate-limit sleep.
            let step = self.after_copy(job, core);
            if Self::sleeps(job, &step) {
                self.copies_done();
            }
            return step;
        }
        if self.dirty.is_empty() {
            // Nothing left to issue: QEMU's loop waits for what is in flight.
            self.copies_done();
            if !job.core().is_ready() {
                job.transition_to_ready();
            }
            if self.should_complete || job.cancel_requested() {
                return RunStep::Finished(Ok(()));
            }
            return RunStep::Yield;
        }
        self.after_copy(job, core)
    }

    /// `mirror_iteration` after the gathering: every operation over the
    /// stretch is issued and completes whatever another's outcome (QEMU
    /// checks `s->ret` only before starting one, and they all start before
    /// the first read is done), each charged to the rate limit; a
    /// successful one counts as progress, a failed one leaves its chunks
    /// dirty and takes the error action (a `BLOCK_JOB_ERROR` each). Zero
    /// writes are charged only if the target cannot write zeroes by
    /// unmapping (`bdrv_can_write_zeroes_with_unmap`). The
    /// first reported error waits in [`Self::reported`] for the loop to
    /// come round.
    fn mirror_iteration<F: Files>(
        &mut self,
        job: &mut JobCtl<'_>,
        core: &mut BlockCore<F>,
        offset: u64,
        len: u64,
    ) {
        // A zero write the target turns into unmapping costs the rate
        // limit nothing (`io_bytes_acct`).
        let write_zeroes_ok = core.can_write_zeroes_with_unmap(self.base);
        let mut operations: Vec<(bool, MirrorOperation)> = self
            .mirror_operations(core, offset, len)
            .into_iter()
            .map(|op| (self.write_waits_for_read(core, op), op))
            .collect();
        // An operation runs until it first yields when the loop issues it:
        // a zero write, and a copy whose read does no file I/O, reach the
        // target at once, in issue order; a copy that reads a file writes
        // only once its read is done, after the loop has issued the rest.
        // That order is visible: blkdebug's one-shot error hits the first
        // write to arrive, and on ext4 a range zeroed while the file has
        // dirty pages stays data for `SEEK_DATA`.
        operations.sort_by_key(|(waits, _)| *waits);
        for (_, op) in operations {
            let result = self.mirror_perform(core, op);
            // `io_bytes_acct`: a zero write the target can do by unmapping
            // costs the rate limit nothing; everything else what it handled.
            let free = op.method == MirrorMethod::Zero && write_zeroes_ok;
            job.ratelimit_processed_bytes(if free { 0 } else { op.handled });
            match result {
                Ok(()) => {
                    job.progress_update(op.bytes);
                    self.mark_copied(op);
                }
                Err((operation, e)) => {
                    self.mark_dirty(op.offset, op.bytes);
                    let errno = Errno::of_io(&e);
                    let action = job.error_action(self.on_error, operation, errno);
                    if action == BlockErrorAction::Report && self.reported.is_none() {
                        self.reported = Some(errno);
                    }
                }
            }
        }
    }

    /// The end of a loop iteration that copied: wait for throttled I/O,
    /// else the rate-limit sleep.
    fn after_copy<F: Files>(&self, job: &JobCtl<'_>, core: &BlockCore<F>) -> RunStep {
        if core.io_wait_until > job.now_ns() {
            return RunStep::Sleep(core.io_wait_until - job.now_ns());
        }
        RunStep::RatelimitSleep
    }

    /// Whether `step` puts the job to sleep for a while (throttled I/O or
    /// a rate-limit delay), long enough for the copies in flight to end.
    fn sleeps(job: &JobCtl<'_>, step: &RunStep) -> bool {
        match step {
            RunStep::Sleep(ns) => *ns > 0,
            RunStep::RatelimitSleep => {
                let mut limit = job.core().rate_limit().clone();
                limit.calculate_delay(0, job.now_ns()) > 0
            }
            _ => false,
        }
    }

    /// The copies in flight are done: their chunks are in the COW bitmap.
    fn copies_done(&mut self) {
        if let Some(cow) = &mut self.cow {
            cow.copied.append(&mut cow.in_flight);
        }
    }

    /// Whether `op` writes the target only after its read yielded: a copy
    /// whose read reaches a file (see
    /// [`BlockCore::reads_without_file_io`]).
    fn write_waits_for_read<F: Files>(&self, core: &mut BlockCore<F>, op: MirrorOperation) -> bool {
        op.method == MirrorMethod::Copy
            && !core
                .reads_without_file_io(self.top, op.offset, op.bytes)
                .unwrap_or(false)
    }

    /// `mirror_perform`: one operation on the target.
    fn mirror_perform<F: Files>(
        &self,
        core: &mut BlockCore<F>,
        op: MirrorOperation,
    ) -> std::result::Result<(), (IoOperation, std::io::Error)> {
        match op.method {
            MirrorMethod::Zero => core
                .write_zeroes(self.base, op.offset, op.bytes)
                .map_err(|e| (IoOperation::Write, e)),
            MirrorMethod::Copy => core.copy_range(self.top, self.base, op.offset, op.bytes),
        }
    }

    /// The operations `mirror_iteration` issues over one stretch of dirty
    /// chunks, one per block-status run of the source (its whole chain):
    /// zeroes by metadata that cover whole chunks aligned to the target's
    /// clusters are written as zeroes (`MIRROR_METHOD_ZERO`), however long;
    /// everything else is copied as read (`MIRROR_METHOD_COPY`, no zero
    /// detection), a chunk at least and [`MIRROR_MAX_OPERATION_BYTES`] at
    /// most.
    fn mirror_operations<F: Files>(
        &self,
        core: &mut BlockCore<F>,
        offset: u64,
        len: u64,
    ) -> Vec<MirrorOperation> {
        let g = self.granularity;
        let target_cluster = core.cluster_size_of(self.base);
        let end = offset + len;
        let mut operations = Vec::new();
        let mut pos = offset;
        while pos < end {
            let (zero, n) = match core.block_status_above(self.top, pos, end - pos) {
                Ok((ExtentKind::Data, n)) => (false, n.min(MIRROR_MAX_OPERATION_BYTES)),
                Ok((_, n)) => (true, n),
                Err(_) => (false, (end - pos).min(MIRROR_MAX_OPERATION_BYTES)),
            };
            let whole_chunks = n - n % g;
            let bytes = whole_chunks.max(g).min(self.length - pos);
            let aligned = target_cluster
                .is_none_or(|c| pos.is_multiple_of(c) && (pos + bytes).is_multiple_of(c));
            let operation = if zero && whole_chunks >= g && aligned {
                MirrorOperation {
                    offset: pos,
                    bytes,
                    method: MirrorMethod::Zero,
                    handled: bytes,
                }
            } else {
                self.copy_operation(pos, bytes)
            };
            operations.push(operation);
            pos += operation.handled;
        }
        operations
    }

    /// `mirror_co_read`'s shape of a copy asked for at `offset`: at most
    /// `granularity * max_iov` bytes (and the buffer), and with COW, rounded
    /// out to the target's clusters unless both its first and last chunks
    /// were copied before (`mirror_cow_align`), cut at the end of the image.
    fn copy_operation(&self, offset: u64, bytes: u64) -> MirrorOperation {
        let max_bytes = self.granularity * MIRROR_MAX_IOV;
        let bytes = bytes.min(max_bytes).min(MIRROR_BUF_SIZE);
        let mut operation = MirrorOperation {
            offset,
            bytes,
            method: MirrorMethod::Copy,
            handled: bytes,
        };
        let Some(cow) = &self.cow else {
            return operation;
        };
        let g = self.granularity;
        let end = offset + bytes;
        let need_cow =
            !cow.copied.contains(&(offset / g)) || !cow.copied.contains(&((end - 1) / g));
        let (mut start, mut len) = (offset, bytes);
        if need_cow {
            let c = cow.target_cluster;
            start = offset / c * c;
            len = (end - start).div_ceil(c) * c;
        }
        if len > max_bytes {
            len = if need_cow {
                max_bytes / cow.target_cluster * cow.target_cluster
            } else {
                max_bytes
            };
        }
        len = len.min(self.length - start);
        operation.offset = start;
        operation.bytes = len;
        operation.handled = bytes + (start + len - end);
        operation
    }

    /// `mirror_iteration_done`: a successful operation's chunks need no
    /// more COW (once it is done, see [`CowCopy::in_flight`]).
    fn mark_copied(&mut self, op: MirrorOperation) {
        let g = self.granularity;
        if let Some(cow) = &mut self.cow {
            let first = op.offset / g;
            cow.in_flight.extend(first..first + op.bytes.div_ceil(g));
        }
    }

    fn mark_dirty(&mut self, offset: u64, len: u64) {
        let g = self.granularity;
        self.dirty.extend(offset / g..(offset + len).div_ceil(g));
    }

    fn clear_dirty(&mut self, offset: u64, len: u64) {
        let g = self.granularity;
        for chunk in offset / g..(offset + len).div_ceil(g) {
            self.dirty.remove(&chunk);
        }
    }

    /// Dirty bytes, the last chunk cut at the end of the image.
    fn dirty_bytes(&self) -> u64 {
        self.dirty
            .iter()
            .map(|&c| {
                (c * self.granularity + self.granularity).min(self.length) - c * self.granularity
            })
            .sum()
    }

    /// The first run of contiguous dirty chunks, at most
    /// [`MIRROR_BUF_SIZE`] long, cut at the end of the image.
    fn next_dirty_run(&self) -> Option<(u64, u64)> {
        let g = self.granularity;
        let first = *self.dirty.iter().next()?;
        let mut chunks = 1;
        while (chunks * g) < MIRROR_BUF_SIZE
            && (first + chunks) * g < self.length
            && self.dirty.contains(&(first + chunks))
        {
            chunks += 1;
        }
        let offset = first * g;
        Some((offset, (chunks * g).min(self.length - offset)))
    }

    /// `mirror_complete`.
    pub(crate) fn complete(&mut self, job: &JobCore) -> std::result::Result<(), String> {
        if !job.is_ready() {
            return Err(format!(
                "The active block job '{}' cannot be completed",
                job.id()
            ));
        }
        self.should_complete = true;
        Ok(())
    }

    /// `mirror_exit_common`: unfreeze, drop the target BlockBackend, stop
    /// the filter; on success after `complete`, replace top by the base in
    /// all its parents; release the job's nodes and drop the filter. The
    /// base goes back to read-only only on a real abort.
    pub(crate) fn exit<F: Files>(
        &mut self,
        core: &mut BlockCore<F>,
        abort: bool,
    ) -> std::result::Result<(), JobFailure> {
        let Some(mirror_top) = self.mirror_top.take() else {
            return Ok(());
        };
        if self.chain_frozen {
            let _ = core.bg.unfreeze_chain(mirror_top, Some(self.base));
            self.chain_frozen = false;
        }
        if let Some(blk) = self.blk_target.take() {
            core.release_root(blk);
        }
        let _ = core.bg.ref_node(mirror_top);
        core.mirror_targets.remove(&mirror_top);
        core.state.insert(
            mirror_top,
            DriverState::MirrorTop(MirrorTopState {
                stop: true,
                is_commit: true,
            }),
        );
        let _ = core.with_hooks(|bg, hooks| bg.refresh_perms(hooks, &[mirror_top]));
        let mut result = Ok(());
        if self.should_complete && !abort {
            result = self.pivot(core);
        }
        if abort && self.base_read_only {
            let _ = core.reopen_read_only(self.base, true);
        }
        core.release_root(self.job_root);
        if let Some(below) = core.bg.graph().filter_node(mirror_top) {
            let _ = core.with_hooks(|bg, hooks| {
                bg.replace_node(hooks, mirror_top, below, ReplaceOptions::REPLACE_NODE)
            });
        }
        let _ = core.unref(mirror_top);
        result
    }

    /// `bdrv_replace_node(top, base)`, the base taking top's read-only flag.
    fn pivot<F: Files>(&self, core: &mut BlockCore<F>) -> std::result::Result<(), JobFailure> {
        let top_read_only = core
            .bg
            .graph()
            .node(self.top)
            .map(|n| n.read_only)
            .unwrap_or(false);
        let base_read_only = core
            .bg
            .graph()
            .node(self.base)
            .map(|n| n.read_only)
            .unwrap_or(false);
        if top_read_only != base_read_only {
            let _ = core.reopen_read_only(self.base, top_read_only);
        }
        core.with_hooks(|bg, hooks| {
            bg.replace_node(hooks, self.top, self.base, ReplaceOptions::REPLACE_NODE)
        })
        .map_err(|_| JobFailure::errno(Errno::EPERM))
    }
}
