//! Writes: allocating writes with copy-on-write, zero clusters, and header
//! rewrites for backing-file changes.

use super::header::{MAX_BACKING_FORMAT, MAX_BACKING_NAME};
use super::{Cluster, Qcow2, COMPRESSED, COPIED, OFFSET_MASK, ZERO};
use crate::error::{Error, Result};
use crate::storage::{reborrow, BackingRead, DebugEvent, Storage};
use std::sync::Arc;

/// What [`Qcow2::write_zeroes`] may do with the host clusters behind the
/// clusters it turns into zero clusters: QEMU's `BDRV_REQ_MAY_UNMAP`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum ZeroWrite {
    /// Free them (`BDRV_REQ_MAY_UNMAP` set, as `write_zeroes -u` or a
    /// discard asks).
    MayUnmap,
    /// Keep them allocated, marked zero (the flag clear, as the jobs'
    /// zero writes are).
    KeepAllocated,
}

/// `QCOW2_MAX_WORKERS`: how many pieces of one write QEMU's aio task pool
/// runs at once.
const MAX_WORKERS: u32 = 8;

/// One piece of a write (`qcow2_co_pwritev_part`'s loop allocates it, an
/// aio task writes it).
struct Piece {
    /// The bytes of the write it covers.
    len: usize,
    /// Where its data ends in the file.
    host_end: u64,
    /// Its allocation did metadata I/O QEMU's caches cannot serve, so the
    /// loop yielded there, holding `s->lock`.
    allocation_yielded: bool,
    /// Its task: the data write (with COW) and the L2 update.
    outcome: Result<()>,
}

/// Which pieces of a write QEMU still starts after one of them failed.
///
/// A piece's task fails after a yield (blkdebug reschedules itself before
/// returning an injected error; a host error comes back from the thread
/// pool), and the loop looks at the pool's status only before each
/// allocation, so the failure is seen once the loop itself yields: at a
/// piece whose allocation does metadata I/O (that piece is started, the
/// failed task then waits for `s->lock`, so the loop waits for the lock at
/// the next piece, which it still allocates and starts after the failure
/// is in), or when the pool is full (the waiting piece is started). Without
/// a yield every piece is started.
#[derive(Default)]
struct PieceLoop {
    /// The first failed task's error (`aio_task_pool_status`).
    error: Option<Error>,
    /// Tasks started since the loop last yielded: still running in QEMU.
    busy: u32,
    /// Pieces the loop starts before it sees the failure, once that is
    /// decided.
    left: Option<u32>,
}

impl PieceLoop {
    /// `piece` was allocated and started.
    fn started(&mut self, piece: Piece) {
        let failure_pending = self.error.is_some();
        match &mut self.left {
            Some(left) => *left = left.saturating_sub(1),
            None if piece.allocation_yielded => {
                if failure_pending {
                    self.left = Some(1);
                }
                self.busy = 0;
            }
            None if self.busy == MAX_WORKERS => {
                // `aio_task_pool_wait_slot` yields before starting it.
                if failure_pending {
                    self.left = Some(0);
                }
                self.busy = 0;
            }
            None => {}
        }
        self.busy += 1;
        if let Err(err) = piece.outcome {
            self.error.get_or_insert(err);
        }
    }

    /// The loop has seen the failure: no more pieces.
    fn stopped(&self) -> bool {
        self.left == Some(0)
    }

    /// What the whole write returns.
    fn result(self) -> Result<()> {
        self.error.map_or(Ok(()), Err)
    }
}

/// Where a write into newly allocated clusters goes.
#[derive(Clone, Copy)]
struct NewClusters<'a> {
    /// Host offset of the first new cluster.
    host: u64,
    /// Guest offset of the first cluster written.
    guest_cluster: u64,
    /// Where the data starts in the first cluster.
    within: u64,
    /// The clusters' old L2 entries.
    old: &'a [u64],
}

impl Qcow2 {
    /// Writes `data` at guest `offset`. Clusters not yet owned by this layer
    /// (unallocated, zero, compressed or shared) get new clusters; the parts
    /// of a partly written cluster are copied from what the guest saw there
    /// before (`backing` for unallocated clusters).
    ///
    /// Like `qcow2_co_pwritev_part`, the write goes piece by piece (one
    /// allocation each), and a piece whose data write fails does not stop
    /// the pieces after it at once (see [`PieceLoop`]); the first error is
    /// returned once the loop stops.
    pub fn write(
        &mut self,
        storage: &mut dyn Storage,
        offset: u64,
        data: &[u8],
        mut backing: Option<&mut dyn BackingRead>,
    ) -> Result<()> {
        self.check_writable()?;
        self.check_range(offset, data.len() as u64)?;
        let mut done = 0usize;
        let mut pieces = PieceLoop::default();
        while done < data.len() && !pieces.stopped() {
            let piece = self.guard(|me| {
                me.write_step(
                    storage,
                    offset + done as u64,
                    &data[done..],
                    reborrow(&mut backing),
                )
            })?;
            done += piece.len;
            let (failed, host_end) = (piece.outcome.is_err(), piece.host_end);
            pieces.started(piece);
            // QEMU allocates what continues in the file as part of the same
            // piece (`qcow2_alloc_host_offset`): one data write, failed as
            // a whole. What came after it is not modelled: the write ends.
            if failed
                && done < data.len()
                && self.continues_piece(storage, offset + done as u64, host_end)?
            {
                break;
            }
        }
        pieces.result()
    }

    /// Whether the clusters at guest `pos` would join a piece whose data
    /// ends at `host_end` in the file: overwritten in place right there, or
    /// to be allocated with that cluster free (`qcow2_alloc_clusters_at`).
    fn continues_piece(
        &mut self,
        storage: &mut dyn Storage,
        pos: u64,
        host_end: u64,
    ) -> Result<bool> {
        let cs = self.cluster_size();
        let (l1_index, l2_index) = self.indices(pos);
        let l1_entry = self.l1[l1_index];
        let l2 = l1_entry & OFFSET_MASK;
        // A new L2 table (allocated first) would take the cluster.
        if !host_end.is_multiple_of(cs) || l2 == 0 || l1_entry & COPIED == 0 {
            return Ok(false);
        }
        let entry = self.l2_table(storage, l2)?[l2_index];
        if entry & COPIED != 0 && entry & (COMPRESSED | ZERO) == 0 && entry & OFFSET_MASK != 0 {
            return Ok(entry & OFFSET_MASK == host_end);
        }
        Ok(!self.metadata.contains(&host_end) && self.refcount(storage, host_end / cs)? == 0)
    }

    /// Makes `len` bytes at `offset` read as zeroes, as QEMU's
    /// `qcow2_co_pwrite_zeroes` does behind the block layer's alignment:
    /// on a v3 image, whole clusters become zero clusters (their host
    /// clusters freed with [`ZeroWrite::MayUnmap`], kept otherwise), and so does a
    /// partly covered cluster whose other bytes already read as zero by
    /// metadata (see [`BackingRead::backing_is_zero`]). A v2 image has no
    /// zero flag: without a backing file those clusters are discarded
    /// (unallocated) instead, as `qcow2_subcluster_zeroize` does; with one,
    /// every cluster gets zero bytes written. Everything else gets zero
    /// bytes written too.
    pub fn write_zeroes(
        &mut self,
        storage: &mut dyn Storage,
        offset: u64,
        len: u64,
        zero_write: ZeroWrite,
        mut backing: Option<&mut dyn BackingRead>,
    ) -> Result<()> {
        self.check_writable()?;
        self.check_range(offset, len)?;
        if self.header.version < 3 && backing.is_some() {
            // qcow2_subcluster_zeroize: v2 has no zero flag (-ENOTSUP),
            // and the block layer falls back to writing zero bytes.
            return self.write_zero_bytes(storage, offset, len, backing);
        }
        let cs = self.cluster_size();
        let size = self.header.size;
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let cluster_start = pos / cs * cs;
            let cluster_end = (cluster_start + cs).min(size);
            if pos == cluster_start && end >= cluster_end {
                // Whole clusters (the last one may end at the image's end).
                let whole_end = if end == size { size } else { end / cs * cs };
                pos +=
                    self.guard(|me| me.zero_clusters(storage, pos, whole_end - pos, zero_write))?;
                continue;
            }
            let piece_end = end.min(cluster_end);
            let rest = [(cluster_start, pos), (piece_end, cluster_end)];
            if self.rest_reads_as_zero(storage, cluster_start, &rest, reborrow(&mut backing))? {
                self.guard(|me| {
                    me.zero_clusters(
                        storage,
                        cluster_start,
                        cluster_end - cluster_start,
                        zero_write,
                    )
                })?;
            } else {
                self.write_zero_bytes(storage, pos, piece_end - pos, reborrow(&mut backing))?;
            }
            pos = piece_end;
        }
        Ok(())
    }

    /// QEMU's test before zeroing a whole cluster for a partial request:
    /// the cluster is unallocated or zero here, and the bytes outside the
    /// request (`rest`) read as zero by metadata.
    fn rest_reads_as_zero(
        &mut self,
        storage: &mut dyn Storage,
        cluster_start: u64,
        rest: &[(u64, u64)],
        mut backing: Option<&mut dyn BackingRead>,
    ) -> Result<bool> {
        let (mapping, _) = self.lookup(storage, cluster_start, 1)?;
        match mapping {
            super::Mapping::Zero => Ok(true),
            super::Mapping::Data(_) | super::Mapping::Compressed(_) => Ok(false),
            super::Mapping::Unallocated => {
                for &(start, end) in rest {
                    let zero = match reborrow(&mut backing) {
                        _ if start >= end => true,
                        Some(b) => b.backing_is_zero(start, end - start)?,
                        None => true,
                    };
                    if !zero {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        }
    }

    /// Points the image at a new backing file (or none), as QEMU's
    /// `qcow2_change_backing_file`: names longer than 1023 bytes are
    /// `EINVAL`, and so is a format without a file (as in
    /// `bdrv_change_backing_file`); the format goes into the backing-format
    /// extension (truncated to 15 bytes, like QEMU's `char[16]`); `None`
    /// removes it.
    pub fn change_backing_file(
        &mut self,
        storage: &mut dyn Storage,
        backing_file: Option<&str>,
        backing_format: Option<&str>,
    ) -> Result<()> {
        self.check_writable()?;
        if backing_format.is_some() && backing_file.is_none() {
            return Err(Error::InvalidArgument(
                "backing format without a backing file".into(),
            ));
        }
        if backing_file.is_some_and(|f| f.len() > MAX_BACKING_NAME) {
            return Err(Error::InvalidArgument(format!(
                "backing file name longer than {MAX_BACKING_NAME} bytes"
            )));
        }
        let mut header = self.header.clone();
        header.backing_file = backing_file.map(str::to_owned);
        header.backing_format =
            backing_format.map(|f| truncate_to_boundary(f, MAX_BACKING_FORMAT).to_owned());
        let cluster = header.to_cluster()?;
        storage.write_at(0, &cluster)?;
        self.header = header;
        Ok(())
    }

    /// Grows the virtual size to `size` (`qcow2_co_truncate` with
    /// preallocation off): the new area reads as unallocated. The L1 table
    /// is replaced by a larger copy only when it is too short
    /// (`qcow2_grow_l1_table` with `exact_size`): the new table is written,
    /// then the header points at it, then the old one is freed.
    pub fn grow(&mut self, storage: &mut dyn Storage, size: u64) -> Result<()> {
        self.check_writable()?;
        if size < self.header.size {
            return Err(Error::InvalidArgument(format!(
                "cannot grow an image of {} bytes to {size}",
                self.header.size
            )));
        }
        let cs = self.cluster_size();
        let entries = size.div_ceil(cs * (cs / 8));
        if entries * 8 > super::MAX_L1_BYTES {
            return Err(Error::InvalidArgument(format!(
                "Image size {size} too large for cluster size {cs}"
            )));
        }
        if entries > u64::from(self.header.l1_size) {
            self.grow_l1_table(storage, entries)?;
        }
        self.header.size = size;
        let cluster = self.header.to_cluster()?;
        storage.write_at(0, &cluster)?;
        Ok(())
    }

    fn grow_l1_table(&mut self, storage: &mut dyn Storage, entries: u64) -> Result<()> {
        let cs = self.cluster_size();
        let bytes = entries * 8;
        let offset = self.alloc_contiguous(storage, bytes.div_ceil(cs))?;
        let mut l1 = self.l1.as_ref().clone();
        l1.resize(entries as usize, 0);
        let table: Vec<u8> = l1.iter().flat_map(|e| e.to_be_bytes()).collect();
        storage.write_at(offset, &table)?;
        storage.flush()?;
        let (old_offset, old_entries) = (self.header.l1_table_offset, self.header.l1_size);
        self.header.l1_table_offset = offset;
        self.header.l1_size = entries as u32;
        let cluster = self.header.to_cluster()?;
        storage.write_at(0, &cluster)?;
        self.l1 = Arc::new(l1);
        if old_entries > 0 {
            self.free_range(storage, old_offset, u64::from(old_entries) * 8)?;
        }
        Ok(())
    }

    pub(super) fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        if let Some(why) = &self.broken {
            return Err(Error::Corrupt(why.clone()));
        }
        Ok(())
    }

    /// Runs a write step; corruption found on the way stops all later writes.
    fn guard<T>(&mut self, step: impl FnOnce(&mut Qcow2) -> Result<T>) -> Result<T> {
        let result = step(self);
        if let Err(Error::Corrupt(why)) = &result {
            self.broken = Some(why.clone());
        }
        result
    }

    /// Refuses to write data over metadata: that only happens when the
    /// refcounts or tables are corrupt.
    pub(super) fn check_no_overlap(&self, host: u64, len: u64) -> Result<()> {
        let cs = self.cluster_size();
        let end = host + len;
        let overlaps = |start: u64, bytes: u64| bytes > 0 && start < end && host < start + bytes;
        let l1_bytes = (u64::from(self.header.l1_size) * 8).next_multiple_of(cs);
        let rt_bytes = u64::from(self.header.refcount_table_clusters) * cs;
        let hit = if overlaps(0, cs) {
            Some("the header")
        } else if overlaps(self.header.l1_table_offset, l1_bytes) {
            Some("the L1 table")
        } else if overlaps(self.header.refcount_table_offset, rt_bytes) {
            Some("the refcount table")
        } else if self.metadata.range(host / cs * cs..end).next().is_some() {
            Some("an L2 table or refcount block")
        } else {
            None
        };
        match hit {
            Some(what) => Err(Error::corrupt(format!(
                "write to {host:#x}+{len:#x} would overwrite {what}"
            ))),
            None => Ok(()),
        }
    }

    /// Writes zero bytes through the ordinary write path, 1 MiB at a time.
    fn write_zero_bytes(
        &mut self,
        storage: &mut dyn Storage,
        offset: u64,
        len: u64,
        mut backing: Option<&mut dyn BackingRead>,
    ) -> Result<()> {
        let zeroes = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeroes.len() as u64);
            self.write(
                storage,
                offset + done,
                &zeroes[..n as usize],
                reborrow(&mut backing),
            )?;
            done += n;
        }
        Ok(())
    }

    /// The L2 table for `l1_index`, owned by this image alone (allocated,
    /// or copied from a shared one). Returns its host offset.
    fn l2_for_write(&mut self, storage: &mut dyn Storage, l1_index: usize) -> Result<u64> {
        let entry = self.l1[l1_index];
        let old = entry & OFFSET_MASK;
        if old != 0 && entry & COPIED != 0 {
            return Ok(old);
        }
        let cs = self.cluster_size();
        self.metadata_loads += 1;
        let table: Vec<u64> = if old != 0 {
            self.l2_table(storage, old)?.as_ref().clone()
        } else {
            vec![0; (cs / 8) as usize]
        };
        let new = self.alloc_contiguous(storage, 1)?;
        self.check_no_overlap(new, cs)?;
        let mut raw = Vec::with_capacity(cs as usize);
        table
            .iter()
            .for_each(|e| raw.extend_from_slice(&e.to_be_bytes()));
        storage.write_at(new, &raw)?;
        self.barrier(storage)?;
        let l1_entry = new | COPIED;
        storage.write_at(
            self.header.l1_table_offset + l1_index as u64 * 8,
            &l1_entry.to_be_bytes(),
        )?;
        Arc::make_mut(&mut self.l1)[l1_index] = l1_entry;
        self.l2_cache.insert(new, Arc::new(table));
        Arc::make_mut(&mut self.metadata).insert(new);
        if old != 0 {
            self.l2_cache.remove(old);
            Arc::make_mut(&mut self.metadata).remove(&old);
            self.barrier(storage)?;
            self.free_range(storage, old, cs)?;
        }
        Ok(new)
    }

    /// Writes L2 entries `first..` of the table at `l2` (memory, then disk).
    fn set_l2_entries(
        &mut self,
        storage: &mut dyn Storage,
        l2: u64,
        first: usize,
        entries: &[u64],
    ) -> Result<()> {
        let table = self.l2_cache.get_mut(l2);
        if let Some(table) = table {
            table[first..first + entries.len()].copy_from_slice(entries);
        }
        let mut raw = Vec::with_capacity(entries.len() * 8);
        entries
            .iter()
            .for_each(|e| raw.extend_from_slice(&e.to_be_bytes()));
        storage.write_at(l2 + first as u64 * 8, &raw)?;
        Ok(())
    }

    /// Drops this layer's reference to the host cluster(s) of an L2 entry.
    fn release(&mut self, storage: &mut dyn Storage, entry: u64) -> Result<()> {
        match self.classify(entry)? {
            Cluster::Normal(host) | Cluster::ZeroAlloc(host) => {
                self.free_range(storage, host, self.cluster_size())
            }
            Cluster::Compressed { offset, len } => self.free_range(storage, offset, len),
            Cluster::Unallocated | Cluster::ZeroPlain => Ok(()),
        }
    }

    /// Writes as much of `data` at `pos` as one L2 table and one kind of
    /// cluster allow: one piece of `qcow2_co_pwritev_part`. An error of the
    /// allocation (the loop's part) is returned; one of the data write and
    /// what follows it (the piece's task) is in [`Piece::outcome`].
    fn write_step(
        &mut self,
        storage: &mut dyn Storage,
        pos: u64,
        data: &[u8],
        backing: Option<&mut dyn BackingRead>,
    ) -> Result<Piece> {
        let loads = self.metadata_loads;
        let cs = self.cluster_size();
        let (l1_index, l2_index) = self.indices(pos);
        let within = pos % cs;
        let table_left = (self.l2_entries() - l2_index as u64) * cs - within;
        let limit = (data.len() as u64).min(table_left);
        let l2 = self.l2_for_write(storage, l1_index)?;
        let table = self.l2_table(storage, l2)?;
        let clusters = (within + limit).div_ceil(cs) as usize;
        let entries = &table[l2_index..l2_index + clusters];
        let in_place =
            |e: u64| e & COPIED != 0 && e & (COMPRESSED | ZERO) == 0 && e & OFFSET_MASK != 0;
        if in_place(entries[0]) {
            let host = entries[0] & OFFSET_MASK;
            let run = entries
                .iter()
                .enumerate()
                .take_while(|&(i, &e)| in_place(e) && e & OFFSET_MASK == host + i as u64 * cs)
                .count() as u64;
            self.classify(entries[0])?;
            let len = limit.min(run * cs - within);
            self.check_no_overlap(host + within, len)?;
            storage.debug_event(DebugEvent::WriteAio);
            let outcome = storage
                .write_at(host + within, &data[..len as usize])
                .map_err(Error::from);
            return Ok(Piece {
                len: len as usize,
                host_end: host + within + len,
                allocation_yielded: self.metadata_loads != loads,
                outcome,
            });
        }
        let want = entries.iter().take_while(|&&e| !in_place(e)).count() as u64;
        let old: Vec<u64> = entries[..want as usize].to_vec();
        for &e in &old {
            self.classify(e)?;
        }
        let (host, got) = self.alloc_clusters(storage, want)?;
        let allocation_yielded = self.metadata_loads != loads;
        if let Err(err) = self.check_no_overlap(host, got * cs) {
            let _ = self.free_range(storage, host, got * cs);
            return Err(err);
        }
        let fresh = FreshClusters {
            host,
            got,
            l2,
            l2_index,
        };
        let len = limit.min(got * cs - within);
        let outcome =
            self.fill_fresh_clusters(storage, &fresh, pos, &data[..len as usize], &old, backing);
        let outcome = match outcome {
            Ok(()) => self.release_replaced(storage, &old[..got as usize]),
            Err(err) => {
                // `qcow2_alloc_cluster_abort`: clusters no L2 entry
                // points at go back (if that fails too, they leak, as in
                // QEMU).
                let _ = self.free_range(storage, host, got * cs);
                Err(err)
            }
        };
        Ok(Piece {
            len: len as usize,
            host_end: host + within + len,
            allocation_yielded,
            outcome,
        })
    }

    /// Drops the clusters a piece's new clusters replaced, once the L2
    /// entries point at the new ones.
    fn release_replaced(&mut self, storage: &mut dyn Storage, old: &[u64]) -> Result<()> {
        if old.iter().any(|&e| owns_clusters(e)) {
            self.barrier(storage)?;
        }
        for &e in old {
            self.release(storage, e)?;
        }
        Ok(())
    }

    /// Copy-on-write into newly allocated clusters: the old head, `data`
    /// (as much as fits in them), the old tail, then the L2 entries that
    /// make them the guest's.
    fn fill_fresh_clusters(
        &mut self,
        storage: &mut dyn Storage,
        fresh: &FreshClusters,
        pos: u64,
        data: &[u8],
        old: &[u64],
        backing: Option<&mut dyn BackingRead>,
    ) -> Result<()> {
        let cs = self.cluster_size();
        let within = pos % cs;
        let FreshClusters {
            host,
            got,
            l2,
            l2_index,
        } = *fresh;
        let fill = NewClusters {
            host,
            guest_cluster: pos - within,
            within,
            old,
        };
        // On failure the caller gives the clusters back (`write_step`).
        self.fill_new_clusters(storage, &fill, data, backing)?;
        let new: Vec<u64> = (0..got).map(|i| (host + i * cs) | COPIED).collect();
        self.barrier(storage)?;
        self.set_l2_entries(storage, l2, l2_index, &new)
    }

    /// Writes `data` into newly allocated clusters with what the guest saw
    /// around it before (the head and tail of the first and last cluster).
    fn fill_new_clusters(
        &mut self,
        storage: &mut dyn Storage,
        fill: &NewClusters<'_>,
        data: &[u8],
        backing: Option<&mut dyn BackingRead>,
    ) -> Result<()> {
        let cs = self.cluster_size();
        let NewClusters {
            host,
            guest_cluster,
            within,
            old,
        } = *fill;
        let len = data.len() as u64;
        let mut backing = backing;
        let end = within + len;
        let last = ((end - 1) / cs) as usize;
        // QEMU copies the old contents around the write (`perform_cow`,
        // announced as COW I/O) unless they read as zero by metadata: then
        // it zeroes the new clusters and writes only the data
        // (`handle_alloc_space`).
        let head_zero = within == 0
            || self.reads_as_zero(old[0], guest_cluster, within, reborrow(&mut backing))?;
        let tail_zero = end.is_multiple_of(cs)
            || self.reads_as_zero(
                old[last],
                guest_cluster + end,
                cs - end % cs,
                reborrow(&mut backing),
            )?;
        let copies_old = !(head_zero && tail_zero);
        if copies_old {
            storage.debug_event(DebugEvent::CowRead);
        }
        // Head: what the guest saw before `pos` in the first cluster.
        if within > 0 {
            let mut head = vec![0u8; within as usize];
            self.read_old(
                storage,
                old[0],
                guest_cluster,
                &mut head,
                reborrow(&mut backing),
            )?;
            if copies_old {
                storage.debug_event(DebugEvent::CowWrite);
            }
            storage.write_at(host, &head)?;
        }
        if !copies_old {
            storage.debug_event(DebugEvent::WriteAio);
        }
        storage.write_at(host + within, data)?;
        // Tail: what the guest saw after the write in the last cluster.
        if !end.is_multiple_of(cs) {
            let mut tail = vec![0u8; (cs - end % cs) as usize];
            let tail_guest = guest_cluster + end;
            self.read_old(
                storage,
                old[last],
                tail_guest,
                &mut tail,
                reborrow(&mut backing),
            )?;
            storage.write_at(host + end, &tail)?;
        }
        Ok(())
    }

    /// Whether `len` bytes at `guest` read as zero by metadata alone
    /// (`bdrv_co_is_zero_fast`), given the cluster's old L2 entry.
    fn reads_as_zero(
        &mut self,
        entry: u64,
        guest: u64,
        len: u64,
        backing: Option<&mut dyn BackingRead>,
    ) -> Result<bool> {
        Ok(match self.classify(entry)? {
            Cluster::ZeroPlain | Cluster::ZeroAlloc(_) => true,
            Cluster::Unallocated => match backing {
                Some(b) => b.backing_is_zero(guest, len)?,
                None => true,
            },
            Cluster::Normal(_) | Cluster::Compressed { .. } => false,
        })
    }

    /// What the guest read at `guest` before a write, given the cluster's
    /// old L2 entry.
    fn read_old(
        &mut self,
        storage: &mut dyn Storage,
        entry: u64,
        guest: u64,
        buf: &mut [u8],
        backing: Option<&mut dyn BackingRead>,
    ) -> Result<()> {
        let within = guest % self.cluster_size();
        match self.classify(entry)? {
            Cluster::Normal(host) => {
                storage.debug_event(DebugEvent::ReadAio);
                storage.read_at(host + within, buf)?
            }
            Cluster::Unallocated => match backing {
                Some(b) => {
                    storage.debug_event(DebugEvent::ReadBackingAio);
                    b.read_backing(guest, buf)?
                }
                None => buf.fill(0),
            },
            Cluster::ZeroPlain | Cluster::ZeroAlloc(_) => buf.fill(0),
            Cluster::Compressed { .. } => {
                let bytes = self.decompress(storage, entry)?;
                buf.copy_from_slice(&bytes[within as usize..within as usize + buf.len()]);
            }
        }
        Ok(())
    }

    /// Turns the clusters of `pos..pos + len` (`pos` cluster aligned; `len`
    /// whole clusters, or up to the image's end) into zero clusters, as far
    /// as one L2 table reaches. Returns the bytes done (never 0).
    fn zero_clusters(
        &mut self,
        storage: &mut dyn Storage,
        pos: u64,
        len: u64,
        zero_write: ZeroWrite,
    ) -> Result<u64> {
        let cs = self.cluster_size();
        let (l1_index, l2_index) = self.indices(pos);
        let n = len.div_ceil(cs).min(self.l2_entries() - l2_index as u64) as usize;
        let l2 = self.l2_for_write(storage, l1_index)?;
        let old: Vec<u64> = self.l2_table(storage, l2)?[l2_index..l2_index + n].to_vec();
        let mut new = Vec::with_capacity(n);
        let mut released = Vec::new();
        // Without a zero flag (v2, and only without a backing file: see
        // `write_zeroes`) QEMU discards instead: the cluster becomes
        // unallocated, which reads as zeroes.
        let discard = self.header.version < 3;
        for &e in &old {
            let kind = self.classify(e)?;
            let allocated = matches!(kind, Cluster::Normal(_) | Cluster::ZeroAlloc(_));
            let unmap = matches!(kind, Cluster::Compressed { .. })
                || ((zero_write == ZeroWrite::MayUnmap || discard) && allocated);
            if unmap {
                released.push(e);
            }
            new.push(match (discard, unmap) {
                (true, _) => 0,
                (false, true) => ZERO,
                (false, false) => e | ZERO,
            });
        }
        if new != old {
            self.set_l2_entries(storage, l2, l2_index, &new)?;
        }
        if !released.is_empty() {
            self.barrier(storage)?;
        }
        for e in released {
            self.release(storage, e)?;
        }
        Ok((n as u64 * cs).min(len))
    }
}

/// Whether an L2 entry holds a reference to host clusters.
fn owns_clusters(entry: u64) -> bool {
    entry & !(COPIED | ZERO) != 0
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary.
fn truncate_to_boundary(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Clusters just allocated for a write, and the L2 entries that will point
/// at them.
#[derive(Clone, Copy)]
struct FreshClusters {
    host: u64,
    got: u64,
    l2: u64,
    l2_index: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(allocation_yielded: bool, fails: bool) -> Piece {
        Piece {
            len: 512,
            host_end: 0,
            allocation_yielded,
            outcome: if fails {
                Err(Error::from(std::io::Error::from_raw_os_error(5)))
            } else {
                Ok(())
            },
        }
    }

    /// Pieces started until the loop stops (at most `max`).
    fn run(mut next: impl FnMut(usize) -> Piece, max: usize) -> (usize, Result<()>) {
        let mut pieces = PieceLoop::default();
        let mut n = 0;
        while n < max && !pieces.stopped() {
            pieces.started(next(n));
            n += 1;
        }
        (n, pieces.result())
    }

    #[test]
    fn a_yielding_allocation_after_a_failure_lets_two_more_pieces_start() {
        let (n, result) = run(|i| piece(true, i == 1), 20);
        // Pieces 0 and 1 (failed), then 2 (yielded) and 3.
        assert_eq!(n, 4);
        assert!(result.is_err());
    }

    #[test]
    fn without_yields_the_failure_is_seen_when_the_pool_is_full() {
        let (n, result) = run(|i| piece(i == 0, i == 0), 40);
        // The failed piece and seven more fill the pool; the ninth waits
        // for a slot, then starts.
        assert_eq!(n, 9);
        assert!(result.is_err());
    }

    #[test]
    fn without_a_failure_every_piece_starts() {
        let (n, result) = run(|i| piece(i % 3 == 0, false), 30);
        assert_eq!(n, 30);
        assert!(result.is_ok());
    }
}
