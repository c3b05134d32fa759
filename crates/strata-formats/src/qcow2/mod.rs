//! qcow2 versions 2 (compat 0.10) and 3 (compat 1.1), as QEMU's
//! docs/interop/qcow2.txt describes them.
//!
//! [`Qcow2`] is plain state (header, L1 table, refcount table, small caches)
//! and every operation takes the storage as a parameter. Metadata changes
//! are written through at once, in the order that keeps the image
//! consistent after any prefix of the writes: refcounts are raised before a
//! table points at a new cluster, and lowered only after no table does. A
//! crash therefore leaks clusters at worst.

mod alloc;
mod bitmaps;
mod cache;
mod check;
mod create;
mod header;
mod write;

pub use check::CheckReport;
pub use create::{Compat, CreateOptions};
pub use header::{FeatureName, Header, HeaderExtension};
pub use write::ZeroWrite;

use crate::error::{Error, Result};
use crate::extent::{Extent, ExtentKind};
use crate::storage::{reborrow, Access, BackingRead, DebugEvent, Storage};
use cache::TableCache;
use header::{autoclear, incompat};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// Bits 9..=55 of L1 and L2 entries: a host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Bits 9..=63 of refcount table entries.
const REFTABLE_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;
/// The entry's cluster has refcount exactly 1 and may be written in place.
const COPIED: u64 = 1 << 63;
/// L2 entry: the cluster is compressed.
const COMPRESSED: u64 = 1 << 62;
/// L2 entry (v3): the cluster reads as zeroes.
const ZERO: u64 = 1;
/// Largest L1 table QEMU opens (`QCOW_MAX_L1_SIZE`).
const MAX_L1_BYTES: u64 = 32 << 20;
/// Largest refcount table QEMU opens (`QCOW_MAX_REFTABLE_SIZE`).
const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// Host offsets must fit the 56 bits of an L2 entry.
const MAX_HOST_OFFSET: u64 = 1 << 56;
/// Largest snapshot table QEMU opens (`QCOW_MAX_SNAPSHOTS`).
const MAX_SNAPSHOTS: u64 = 65536;
/// A snapshot table entry's fixed part (`QCowSnapshotHeader`).
const SNAPSHOT_HEADER_LEN: u64 = 40;
/// Most extra data a snapshot table entry may have
/// (`QCOW_MAX_SNAPSHOT_EXTRA_DATA`).
const MAX_SNAPSHOT_EXTRA_DATA: u32 = 1024;
/// Largest snapshot table, in bytes (`QCOW_MAX_SNAPSHOTS_SIZE`).
const MAX_SNAPSHOT_TABLE_BYTES: u64 = 1024 * MAX_SNAPSHOTS;
/// Bytes of L2 tables kept in memory.
const L2_CACHE_BYTES: u64 = 8 << 20;
/// Bytes of refcount blocks kept in memory.
const REFBLOCK_CACHE_BYTES: u64 = 2 << 20;

/// The snapshot table as read at open.
struct SnapshotTable {
    /// Its length in bytes.
    bytes: u64,
    /// Each snapshot's L1 table: (offset, bytes).
    l1_tables: Vec<(u64, u64)>,
}

/// How one guest cluster is stored, decoded from its L2 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cluster {
    /// Entry 0: look in the backing file.
    Unallocated,
    /// Zero flag, no host cluster.
    ZeroPlain,
    /// Zero flag with a (preallocated) host cluster.
    ZeroAlloc(u64),
    /// Data at this host offset.
    Normal(u64),
    /// Deflate-compressed data.
    Compressed { offset: u64, len: u64 },
}

/// Where a run of guest bytes lives (within one L2 table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mapping {
    /// At this host offset (contiguous for the whole run).
    Data(u64),
    /// In one compressed cluster, described by its L2 entry.
    Compressed(u64),
    Zero,
    Unallocated,
}

/// An open qcow2 image: its metadata, not its bytes.
///
/// Cloning is cheap (tables are shared until changed). Dropping is always
/// safe: nothing is held back from storage; [`Qcow2::flush`] only makes the
/// writes durable.
#[derive(Clone)]
pub struct Qcow2 {
    header: Header,
    l1: Arc<Vec<u64>>,
    reftable: Arc<Vec<u64>>,
    l2_cache: TableCache<Vec<u64>>,
    refblock_cache: TableCache<Vec<u8>>,
    /// Host offsets of L2 tables and refcount blocks, for overlap checks.
    metadata: Arc<BTreeSet<u64>>,
    /// The last decompressed cluster: (L2 entry, bytes).
    compressed: Option<(u64, Arc<Vec<u8>>)>,
    /// First cluster index worth searching for free clusters.
    free_cursor: u64,
    read_only: bool,
    /// Flush the storage between dependent metadata writes.
    barriers: bool,
    /// Set when corruption was found: no write may touch the image again.
    broken: Option<String>,
    /// Metadata I/O QEMU cannot serve from its caches: tables read from
    /// storage, L2 tables and refcount blocks created. A write piece whose
    /// allocation does some yields QEMU's write loop (see `write.rs`).
    metadata_loads: u64,
}

impl fmt::Debug for Qcow2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Qcow2")
            .field("version", &self.header.version)
            .field("virtual_size", &self.header.size)
            .field("cluster_size", &self.cluster_size())
            .field("refcount_bits", &self.refcount_bits())
            .field("backing_file", &self.header.backing_file)
            .field("backing_format", &self.header.backing_format)
            .field("read_only", &self.read_only)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Qcow2 {
    /// Opens a qcow2 image. Read-write opens refuse images whose `corrupt`
    /// or `dirty` bit is set, and clear autoclear bits (none of which this
    /// crate implements), as QEMU does.
    pub fn open(storage: &mut dyn Storage, access: Access) -> Result<Qcow2> {
        let read_only = access.is_read_only();
        let file_len = storage.len()?;
        // The header reads as zeros past the end of the file, as QEMU
        // reads it: a short file is judged by what it says.
        let mut first = [0u8; header::V2_HEADER_LEN];
        read_present(storage, &mut first, file_len)?;
        let cluster_bits = Header::peek_cluster_bits(&first)?;
        let mut cluster0 = vec![0u8; 1 << cluster_bits];
        read_present(storage, &mut cluster0, file_len)?;
        let header = Header::parse(&cluster0)?;
        let mut image = Qcow2::from_header(header, read_only)?;
        image.load_tables(storage, file_len)?;
        let bitmap_directory = image.bitmap_directory()?;
        image.check_data_file()?;
        let snapshots = image.read_snapshot_table(storage, file_len)?;
        if let Some(dir) = bitmap_directory {
            let table = (image.header.snapshots_offset, snapshots.bytes);
            image.check_bitmaps(storage, file_len, &dir, table, &snapshots.l1_tables)?;
        }
        image.header.check_unsupported()?;
        if !read_only {
            if image.header.incompatible_features & incompat::CORRUPT != 0 {
                return Err(Error::MarkedCorrupt);
            }
            if image.header.incompatible_features & incompat::DIRTY != 0 {
                return Err(Error::Dirty);
            }
            if image.header.autoclear_features != 0 {
                image.header.autoclear_features = 0;
                image.write_header(storage)?;
            }
        }
        Ok(image)
    }

    /// Validates the geometry and builds empty in-memory state.
    fn from_header(header: Header, read_only: bool) -> Result<Qcow2> {
        let cs = 1u64 << header.cluster_bits;
        if header.size > i64::MAX as u64 {
            return Err(Error::header(format!(
                "image size {} too large",
                header.size
            )));
        }
        // qcow2_do_open's order: the refcount table, the snapshot table,
        // then the active L1 table.
        validate_table(
            "Reference count table",
            header.refcount_table_offset,
            (u64::from(header.refcount_table_clusters), cs),
            MAX_REFTABLE_BYTES,
            cs,
        )?;
        if header.refcount_table_clusters == 0 {
            return Err(Error::header(
                "Image does not contain a reference count table",
            ));
        }
        validate_table(
            "Snapshot table",
            header.snapshots_offset,
            (u64::from(header.nb_snapshots), SNAPSHOT_HEADER_LEN),
            SNAPSHOT_HEADER_LEN * MAX_SNAPSHOTS,
            cs,
        )?;
        validate_table(
            "Active L1 table",
            header.l1_table_offset,
            (u64::from(header.l1_size), 8),
            MAX_L1_BYTES,
            cs,
        )?;
        let l2_coverage = cs * (cs / header.l2_entry_len());
        if header.size.div_ceil(l2_coverage) > u64::from(header.l1_size) {
            return Err(Error::header("L1 table is too small"));
        }
        Ok(Qcow2 {
            l2_cache: TableCache::new((L2_CACHE_BYTES / cs).max(16) as usize),
            refblock_cache: TableCache::new((REFBLOCK_CACHE_BYTES / cs).max(16) as usize),
            header,
            l1: Arc::new(Vec::new()),
            reftable: Arc::new(Vec::new()),
            metadata: Arc::new(BTreeSet::new()),
            compressed: None,
            free_cursor: 0,
            read_only,
            barriers: false,
            broken: None,
            metadata_loads: 0,
        })
    }

    /// `data-file-raw` says the external data file is a raw image too: an
    /// image without one is refused, as QEMU refuses it.
    fn check_data_file(&self) -> Result<()> {
        let header = &self.header;
        if header.autoclear_features & autoclear::DATA_FILE_RAW != 0
            && header.incompatible_features & incompat::DATA_FILE == 0
        {
            return Err(Error::header("data-file-raw requires a data file"));
        }
        Ok(())
    }

    /// Walks the snapshot table as `qcow2_read_snapshots` reads it at
    /// open (zeros past the end of the file): an entry with more extra
    /// data than QEMU keeps, or a table longer than QEMU's limit, refuses
    /// the image.
    fn read_snapshot_table(
        &self,
        storage: &mut dyn Storage,
        file_len: u64,
    ) -> Result<SnapshotTable> {
        let start = self.header.snapshots_offset;
        let mut offset = start;
        let mut l1_tables = Vec::new();
        for i in 0..self.header.nb_snapshots {
            offset = offset.next_multiple_of(8);
            if !in_reach(offset, SNAPSHOT_HEADER_LEN) {
                return Err(Error::header(
                    "Failed to read snapshot table: Input/output error",
                ));
            }
            let mut fixed = [0u8; SNAPSHOT_HEADER_LEN as usize];
            let present = file_len.saturating_sub(offset).min(SNAPSHOT_HEADER_LEN) as usize;
            if present > 0 {
                storage.read_at(offset, &mut fixed[..present])?;
            }
            let be16 = |at: usize| u64::from(u16::from_be_bytes([fixed[at], fixed[at + 1]]));
            let extra = u32::from_be_bytes([fixed[36], fixed[37], fixed[38], fixed[39]]);
            if extra > MAX_SNAPSHOT_EXTRA_DATA {
                return Err(Error::header(format!(
                    "Too much extra metadata in snapshot table entry {i}"
                )));
            }
            let l1_offset = u64::from_be_bytes(fixed[..8].try_into().expect("8 bytes"));
            let l1_entries = u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
            l1_tables.push((l1_offset, u64::from(l1_entries) * 8));
            offset += SNAPSHOT_HEADER_LEN + u64::from(extra) + be16(12) + be16(14);
            if offset - start > MAX_SNAPSHOT_TABLE_BYTES {
                return Err(Error::header("Snapshot table exceeds the maximum size"));
            }
        }
        Ok(SnapshotTable {
            bytes: offset - start,
            l1_tables,
        })
    }

    /// Reads the L1 and refcount tables (zeros past the end of the file, as
    /// QEMU reads them).
    fn load_tables(&mut self, storage: &mut dyn Storage, file_len: u64) -> Result<()> {
        let cs = self.cluster_size();
        let l1_bytes = u64::from(self.header.l1_size) * 8;
        let rt_bytes = u64::from(self.header.refcount_table_clusters) * cs;
        // Offsets QEMU validated but cannot read (`bdrv_check_request`).
        if !in_reach(self.header.l1_table_offset, l1_bytes) {
            return Err(Error::header("Could not read L1 table: Input/output error"));
        }
        if !in_reach(self.header.refcount_table_offset, rt_bytes) {
            return Err(Error::header(
                "Could not initialize refcount handling: Input/output error",
            ));
        }
        self.l1 = Arc::new(read_table(
            storage,
            "L1 table",
            self.header.l1_table_offset,
            l1_bytes,
            file_len,
        )?);
        self.reftable = Arc::new(read_table(
            storage,
            "refcount table",
            self.header.refcount_table_offset,
            rt_bytes,
            file_len,
        )?);
        let l2s = self.l1.iter().map(|e| e & OFFSET_MASK);
        let blocks = self.reftable.iter().map(|e| e & REFTABLE_OFFSET_MASK);
        let tables: Vec<u64> = l2s.chain(blocks).filter(|&o| o != 0).collect();
        self.metadata = Arc::new(tables.iter().copied().collect());
        if let Some(why) = self.metadata_overlap(&tables) {
            // Reads may go on; writes would make things worse.
            self.broken = Some(why);
        }
        Ok(())
    }

    /// Describes the first overlap between metadata structures, if any:
    /// two tables in one cluster, or a table inside the header, L1 table or
    /// refcount table.
    fn metadata_overlap(&self, tables: &[u64]) -> Option<String> {
        if tables.len() != self.metadata.len() {
            return Some("two L2 tables or refcount blocks share a cluster".into());
        }
        let cs = self.cluster_size();
        let misaligned = tables.iter().find(|&&o| o % cs != 0);
        if let Some(o) = misaligned {
            return Some(format!("metadata table at unaligned offset {o:#x}"));
        }
        let regions = [
            ("the header", 0, cs),
            (
                "the L1 table",
                self.header.l1_table_offset,
                u64::from(self.header.l1_size) * 8,
            ),
            (
                "the refcount table",
                self.header.refcount_table_offset,
                u64::from(self.header.refcount_table_clusters) * cs,
            ),
        ];
        for (i, &(what, start, len)) in regions.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let end = (start + len).next_multiple_of(cs);
            if self.metadata.range(start / cs * cs..end).next().is_some() {
                return Some(format!("an L2 table or refcount block overlaps {what}"));
            }
            for &(other, o_start, o_len) in &regions[i + 1..] {
                if o_len > 0 && o_start < end && start < o_start + o_len {
                    return Some(format!("{what} overlaps {other}"));
                }
            }
        }
        None
    }

    /// The header as read (and as last rewritten).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Virtual size in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.header.size
    }

    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.header.cluster_bits
    }

    /// Refcount width in bits (1..=64).
    pub fn refcount_bits(&self) -> u32 {
        1 << self.header.refcount_order
    }

    /// The backing file name, verbatim.
    pub fn backing_file(&self) -> Option<&str> {
        self.header.backing_file.as_deref()
    }

    /// The backing format from the header extension.
    pub fn backing_format(&self) -> Option<&str> {
        self.header.backing_format.as_deref()
    }

    /// Whether the image was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether to flush the storage between dependent metadata writes
    /// (off by default).
    ///
    /// Without barriers the image survives a crash of the process at any
    /// point (writes reach the storage in program order, leaving leaks at
    /// worst); with them it also survives a power cut on storage that may
    /// reorder unflushed writes, as QEMU's cache dependencies do, at the
    /// cost of one or two flushes per allocating write.
    pub fn set_barriers(&mut self, on: bool) {
        self.barriers = on;
    }

    /// A flush, when barriers are on: everything written before is durable
    /// before anything written after.
    fn barrier(&self, storage: &mut dyn Storage) -> Result<()> {
        if self.barriers {
            storage.flush()?;
        }
        Ok(())
    }

    /// Makes every completed write durable (metadata is never held back).
    pub fn flush(&mut self, storage: &mut dyn Storage) -> Result<()> {
        Ok(storage.flush()?)
    }

    /// Reads guest bytes; unallocated clusters come from `backing` (zeroes
    /// without one).
    pub fn read(
        &mut self,
        storage: &mut dyn Storage,
        offset: u64,
        buf: &mut [u8],
        mut backing: Option<&mut dyn BackingRead>,
    ) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (mapping, n) = self.lookup(storage, pos, (buf.len() - done) as u64)?;
            let dst = &mut buf[done..done + n as usize];
            match mapping {
                Mapping::Data(host) => {
                    storage.debug_event(DebugEvent::ReadAio);
                    storage.read_at(host, dst)?
                }
                Mapping::Zero => dst.fill(0),
                Mapping::Unallocated => match reborrow(&mut backing) {
                    Some(b) => {
                        storage.debug_event(DebugEvent::ReadBackingAio);
                        b.read_backing(pos, dst)?
                    }
                    None => dst.fill(0),
                },
                Mapping::Compressed(entry) => {
                    storage.debug_event(DebugEvent::ReadCompressed);
                    let bytes = self.decompress(storage, entry)?;
                    let within = (pos % self.cluster_size()) as usize;
                    dst.copy_from_slice(&bytes[within..within + dst.len()]);
                }
            }
            done += n as usize;
        }
        Ok(())
    }

    /// What this layer holds from `offset` on, for up to `max_len` bytes:
    /// `qemu-img map` at depth 0. The extent is as long as the kind stays
    /// the same (`len` is 0 only when `max_len` is).
    pub fn block_status(
        &mut self,
        storage: &mut dyn Storage,
        offset: u64,
        max_len: u64,
    ) -> Result<Extent> {
        let mut extent = self.block_status_run(storage, offset, max_len)?;
        while extent.len < max_len {
            let next = self.block_status_run(storage, offset + extent.len, max_len - extent.len)?;
            if next.kind != extent.kind {
                break;
            }
            extent.len += next.len;
        }
        Ok(extent)
    }

    /// `qcow2_co_block_status`: one run of clusters of one kind from
    /// `offset` on, as `qcow2_get_host_offset` finds it (within one L2
    /// table; data only while host-contiguous), at most `max_len` bytes.
    /// The block layer asks the driver once per request, so its runs (a
    /// stream's chunks, a mirror's zero detection) end where these do.
    pub fn block_status_run(
        &mut self,
        storage: &mut dyn Storage,
        offset: u64,
        max_len: u64,
    ) -> Result<Extent> {
        self.check_range(offset, max_len)?;
        if max_len == 0 {
            return Ok(Extent {
                offset,
                len: 0,
                kind: ExtentKind::Unallocated,
            });
        }
        let (mapping, n) = self.lookup(storage, offset, max_len)?;
        let kind = match mapping {
            Mapping::Data(_) | Mapping::Compressed(_) => ExtentKind::Data,
            Mapping::Zero => ExtentKind::Zero,
            Mapping::Unallocated => ExtentKind::Unallocated,
        };
        Ok(Extent {
            offset,
            len: n.min(max_len),
            kind,
        })
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.header.size => Ok(()),
            _ => Err(Error::OutOfRange {
                offset,
                len,
                size: self.header.size,
            }),
        }
    }

    fn l2_entries(&self) -> u64 {
        self.cluster_size() / 8
    }

    /// (L1 index, L2 index) of a guest offset.
    fn indices(&self, offset: u64) -> (usize, usize) {
        let cluster = offset >> self.header.cluster_bits;
        (
            (cluster / self.l2_entries()) as usize,
            (cluster % self.l2_entries()) as usize,
        )
    }

    /// How the guest bytes from `offset` on are stored, for how many bytes
    /// (at most `max_len`, within one L2 table, host-contiguous for data).
    fn lookup(
        &mut self,
        storage: &mut dyn Storage,
        offset: u64,
        max_len: u64,
    ) -> Result<(Mapping, u64)> {
        let cs = self.cluster_size();
        let (l1_index, l2_index) = self.indices(offset);
        let within = offset % cs;
        let table_left = (self.l2_entries() - l2_index as u64) * cs - within;
        let limit = max_len.min(table_left);
        let l2_offset = self.l1.get(l1_index).copied().unwrap_or(0) & OFFSET_MASK;
        if l2_offset == 0 {
            return Ok((Mapping::Unallocated, limit));
        }
        if !l2_offset.is_multiple_of(cs) {
            return Err(Error::corrupt(format!(
                "L2 table offset {l2_offset:#x} unaligned (L1 index: {l1_index:#x})"
            )));
        }
        let table = self.l2_table(storage, l2_offset)?;
        let first = self.classify(table[l2_index])?;
        if self.header.version < 3 && matches!(first, Cluster::ZeroPlain | Cluster::ZeroAlloc(_)) {
            // Version 2 has no zero flag: QEMU takes one for corruption.
            return Err(Error::corrupt(format!(
                "Zero cluster entry found in pre-v3 image (L2 offset: {l2_offset:#x}, L2 index: {l2_index:#x})"
            )));
        }
        let mapping = match first {
            Cluster::Unallocated => Mapping::Unallocated,
            Cluster::ZeroPlain | Cluster::ZeroAlloc(_) => Mapping::Zero,
            Cluster::Normal(host) => Mapping::Data(host + within),
            Cluster::Compressed { .. } => {
                return Ok((Mapping::Compressed(table[l2_index]), limit.min(cs - within)))
            }
        };
        let mut len = cs - within;
        let mut i = l2_index + 1;
        // `count_contiguous_subclusters`: the run goes on while the type
        // stays the same (and host clusters follow each other); a later
        // entry is not judged, it only ends the run.
        while len < limit {
            let next = self.cluster_of(table[i]);
            let same = match (first, next) {
                (Cluster::Normal(a), Cluster::Normal(b))
                | (Cluster::ZeroAlloc(a), Cluster::ZeroAlloc(b)) => {
                    b == a + (i - l2_index) as u64 * cs
                }
                (Cluster::Unallocated, Cluster::Unallocated)
                | (Cluster::ZeroPlain, Cluster::ZeroPlain) => true,
                _ => false,
            };
            if !same {
                break;
            }
            len += cs;
            i += 1;
        }
        Ok((mapping, len.min(limit)))
    }

    /// Decodes an L2 entry, refusing misaligned host clusters.
    fn classify(&self, entry: u64) -> Result<Cluster> {
        let cluster = self.cluster_of(entry);
        if let Cluster::Normal(host) | Cluster::ZeroAlloc(host) = cluster {
            if !host.is_multiple_of(self.cluster_size()) {
                return Err(Error::corrupt(format!(
                    "Cluster allocation offset {host:#x} unaligned (L2 entry {entry:#x})"
                )));
            }
        }
        Ok(cluster)
    }

    /// Decodes an L2 entry as it stands (`qcow2_get_cluster_type`).
    fn cluster_of(&self, entry: u64) -> Cluster {
        if entry & COMPRESSED != 0 {
            let (offset, len) = self.compressed_extent(entry);
            return Cluster::Compressed { offset, len };
        }
        match (entry & ZERO != 0, entry & OFFSET_MASK) {
            (true, 0) => Cluster::ZeroPlain,
            (true, h) => Cluster::ZeroAlloc(h),
            (false, 0) => Cluster::Unallocated,
            (false, h) => Cluster::Normal(h),
        }
    }

    /// Host offset and byte length of a compressed cluster's data.
    fn compressed_extent(&self, entry: u64) -> (u64, u64) {
        let csize_shift = 62 - (self.header.cluster_bits - 8);
        let csize_mask = (1u64 << (self.header.cluster_bits - 8)) - 1;
        let offset = entry & ((1u64 << csize_shift) - 1);
        let sectors = ((entry >> csize_shift) & csize_mask) + 1;
        (offset, sectors * 512 - (offset & 511))
    }

    /// Inflates one compressed cluster (raw deflate, as QEMU's zlib type).
    fn decompress(&mut self, storage: &mut dyn Storage, entry: u64) -> Result<Arc<Vec<u8>>> {
        if let Some((cached, bytes)) = &self.compressed {
            if *cached == entry {
                return Ok(Arc::clone(bytes));
            }
        }
        let (offset, len) = self.compressed_extent(entry);
        let mut input = vec![0u8; len as usize];
        storage.read_at(offset, &mut input)?;
        let mut out = vec![0u8; self.cluster_size() as usize];
        inflate_exact(&input, &mut out)
            .map_err(|why| Error::corrupt(format!("compressed cluster at {offset:#x}: {why}")))?;
        let out = Arc::new(out);
        self.compressed = Some((entry, Arc::clone(&out)));
        Ok(out)
    }

    /// The L2 table at `offset`, from the cache or storage.
    fn l2_table(&mut self, storage: &mut dyn Storage, offset: u64) -> Result<Arc<Vec<u64>>> {
        if let Some(table) = self.l2_cache.get(offset) {
            return Ok(table);
        }
        let cs = self.cluster_size();
        let file_len = storage.len()?;
        self.metadata_loads += 1;
        let table = Arc::new(read_table(storage, "L2 table", offset, cs, file_len)?);
        self.l2_cache.insert(offset, Arc::clone(&table));
        Ok(table)
    }

    /// Rewrites the whole first cluster from `self.header`, in one write.
    fn write_header(&mut self, storage: &mut dyn Storage) -> Result<()> {
        let cluster = self.header.to_cluster()?;
        storage.write_at(0, &cluster)?;
        Ok(())
    }
}

/// Reads a big-endian u64 table, refusing offsets that are misaligned for a
/// table or beyond what a host offset can be; past the end of the file it
/// is zeros.
/// Reads the start of the file into `buf`, leaving what lies past its end
/// zero.
fn read_present(storage: &mut dyn Storage, buf: &mut [u8], file_len: u64) -> Result<()> {
    let present = file_len.min(buf.len() as u64) as usize;
    if present > 0 {
        storage.read_at(0, &mut buf[..present])?;
    }
    Ok(())
}

/// The end of the furthest request the block layer makes
/// (`BDRV_MAX_LENGTH`: 2^63 less the largest alignment).
pub(super) const MAX_REQUEST_END: u64 = (1 << 63) - (1 << 30);

/// Whether `bytes` at `offset` lie within what the block layer reads.
pub(super) fn in_reach(offset: u64, bytes: u64) -> bool {
    offset <= MAX_REQUEST_END && bytes <= MAX_REQUEST_END - offset
}

/// `qcow2_validate_table`: a header's table of `entries` entries of
/// `entry_len` bytes may hold at most `max_bytes`, and lies cluster
/// aligned wholly below 2^63 (past the end of the file it reads as
/// zeros).
fn validate_table(
    name: &str,
    offset: u64,
    (entries, entry_len): (u64, u64),
    max_bytes: u64,
    cluster_size: u64,
) -> Result<()> {
    if entries > max_bytes / entry_len {
        return Err(Error::header(format!("{name} too large")));
    }
    if (i64::MAX as u64) - entries * entry_len < offset || !offset.is_multiple_of(cluster_size) {
        return Err(Error::header(format!("{name} offset invalid")));
    }
    Ok(())
}

fn read_table(
    storage: &mut dyn Storage,
    what: &str,
    offset: u64,
    bytes: u64,
    file_len: u64,
) -> Result<Vec<u64>> {
    if bytes == 0 {
        return Ok(Vec::new());
    }
    if !offset.is_multiple_of(512) {
        return Err(Error::corrupt(format!(
            "{what} at invalid offset {offset:#x}"
        )));
    }
    if offset
        .checked_add(bytes)
        .is_none_or(|end| end > MAX_REQUEST_END)
    {
        return Err(Error::corrupt(format!(
            "{what} at {offset:#x} reaches past the largest host offset"
        )));
    }
    // What lies past the end of the file reads as zeros, as in QEMU
    // (file-posix's short read, zero-filled by the block layer): a table
    // there is all zeros, which opens and reads as unallocated.
    let mut raw = vec![0u8; bytes as usize];
    let present = file_len.saturating_sub(offset).min(bytes) as usize;
    storage.read_at(offset, &mut raw[..present])?;
    Ok(raw
        .chunks_exact(8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .collect())
}

/// Inflates raw deflate `input` into exactly `out.len()` bytes.
fn inflate_exact(input: &[u8], out: &mut [u8]) -> std::result::Result<(), String> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let mut state = DecompressorOxide::new();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, _, written) = decompress(&mut state, input, out, 0, flags);
    match status {
        TINFLStatus::Done | TINFLStatus::HasMoreOutput if written == out.len() => Ok(()),
        TINFLStatus::Done | TINFLStatus::HasMoreOutput => {
            Err(format!("inflated to {written} bytes only"))
        }
        other => Err(format!("inflate failed: {other:?}")),
    }
}
