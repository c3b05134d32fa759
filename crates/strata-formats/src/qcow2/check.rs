//! `check`: recompute every refcount from the metadata and compare, like
//! `qemu-img check` (without repairing).

use super::alloc::get_refcount;
use super::bitmaps::BITMAPS_EXTENSION;
use super::{Cluster, Qcow2, COPIED, OFFSET_MASK, REFTABLE_OFFSET_MASK};
use crate::error::{Error, Result};
use crate::storage::Storage;
use std::collections::BTreeMap;

/// Files with more clusters than this are not checked (memory bound).
const MAX_CHECKED_CLUSTERS: u64 = 1 << 28;
/// Snapshot L1 entries walked at most (time bound on corrupt tables).
const MAX_SNAPSHOT_L1_ENTRIES: u64 = 1 << 22;
/// Bitmap table entries read at most.
const MAX_BITMAP_TABLE_ENTRIES: u64 = 1 << 23;

/// What `check` found, in `qemu-img check`'s terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Errors: clusters referenced more often than their refcount says,
    /// references past the end of the file, misaligned tables, wrong
    /// `OFLAG_COPIED` flags.
    pub corruptions: u64,
    /// Clusters whose refcount is higher than their references.
    pub leaks: u64,
    /// Guest clusters of the virtual disk.
    pub total_clusters: u64,
    /// Guest clusters allocated in this image (data, compressed or
    /// preallocated zero).
    pub allocated_clusters: u64,
    /// End of the last cluster in use.
    pub image_end_offset: u64,
    /// One line per problem, in qemu-img's wording where it has one.
    pub messages: Vec<String>,
}

impl CheckReport {
    /// No corruption and no leak.
    pub fn is_clean(&self) -> bool {
        self.corruptions == 0 && self.leaks == 0
    }

    fn corruption(&mut self, msg: String) {
        self.corruptions += 1;
        self.messages.push(format!("ERROR {msg}"));
    }
}

/// Reference counts computed from the metadata.
struct Census {
    counts: Vec<u32>,
    cluster_bits: u32,
}

impl Census {
    /// Counts one reference to each cluster of `offset..offset+len`.
    fn add(&mut self, report: &mut CheckReport, what: &str, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = offset >> self.cluster_bits;
        let last = (offset.saturating_add(len) - 1) >> self.cluster_bits;
        for c in first..=last {
            match self.counts.get_mut(c as usize) {
                Some(n) => *n = n.saturating_add(1),
                None => {
                    report.corruption(format!("{what} at {offset:#x} is past the end of the file"));
                    return;
                }
            }
        }
    }
}

impl Qcow2 {
    /// Recomputes refcounts from the header, L1/L2 tables, refcount
    /// structures, snapshots and bitmaps, and compares them with the stored
    /// refcounts. Corrupt metadata is reported, not returned as an error;
    /// only storage failures are errors.
    pub fn check(&mut self, storage: &mut dyn Storage) -> Result<CheckReport> {
        let cs = self.cluster_size();
        let file_len = storage.len()?;
        let nb = file_len.div_ceil(cs);
        if nb > MAX_CHECKED_CLUSTERS {
            return Err(Error::Unsupported(format!(
                "checking a file of {nb} clusters"
            )));
        }
        let mut report = CheckReport {
            total_clusters: self.header.size.div_ceil(cs),
            ..CheckReport::default()
        };
        let mut census = Census {
            counts: vec![0; nb as usize],
            cluster_bits: self.header.cluster_bits,
        };
        census.add(&mut report, "header", 0, cs);
        let l1 = self.l1.as_ref().clone();
        let l1_offset = self.header.l1_table_offset;
        census.add(&mut report, "L1 table", l1_offset, l1.len() as u64 * 8);
        report.allocated_clusters = self.count_l1(storage, &mut census, &mut report, &l1)?;
        self.count_refcount_structures(&mut census, &mut report);
        self.count_snapshots(storage, &mut census, &mut report, file_len)?;
        self.count_bitmaps(storage, &mut census, &mut report, file_len)?;
        let stored = self.stored_refcounts(storage, &mut report, nb, file_len)?;
        for (c, (&computed, &on_disk)) in census.counts.iter().zip(&stored).enumerate() {
            let computed = u64::from(computed);
            if computed != on_disk {
                if on_disk < computed {
                    report.corruption(format!(
                        "cluster {c} refcount={on_disk} reference={computed}"
                    ));
                } else {
                    report.leaks += 1;
                    report.messages.push(format!(
                        "Leaked cluster {c} refcount={on_disk} reference={computed}"
                    ));
                }
            }
            if computed > 0 {
                report.image_end_offset = (c as u64 + 1) * cs;
            }
        }
        self.check_copied_flags(storage, &mut report, &l1, &stored)?;
        Ok(report)
    }

    /// Counts the L2 tables and data clusters of one L1 table. Returns the
    /// number of guest clusters allocated.
    fn count_l1(
        &mut self,
        storage: &mut dyn Storage,
        census: &mut Census,
        report: &mut CheckReport,
        l1: &[u64],
    ) -> Result<u64> {
        let cs = self.cluster_size();
        let mut allocated = 0;
        for (i, &entry) in l1.iter().enumerate() {
            let l2 = entry & OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            if !l2.is_multiple_of(cs) {
                report.corruption(format!("L2 table offset {l2:#x} unaligned (l1 index {i})"));
                continue;
            }
            census.add(report, "L2 table", l2, cs);
            let Some(table) = self.table_for_check(storage, report, l2)? else {
                continue;
            };
            for &e in table.iter() {
                match self.classify(e) {
                    Ok(Cluster::Normal(host) | Cluster::ZeroAlloc(host)) => {
                        allocated += 1;
                        census.add(report, "data cluster", host, cs);
                    }
                    Ok(Cluster::Compressed { offset, len }) => {
                        allocated += 1;
                        census.add(report, "compressed cluster", offset, len);
                    }
                    Ok(Cluster::Unallocated | Cluster::ZeroPlain) => {}
                    Err(e) => report.corruption(e.to_string()),
                }
            }
        }
        Ok(allocated)
    }

    /// An L2 table for checking, or `None` (reported) if it is past the end.
    fn table_for_check(
        &mut self,
        storage: &mut dyn Storage,
        report: &mut CheckReport,
        offset: u64,
    ) -> Result<Option<std::sync::Arc<Vec<u64>>>> {
        match self.l2_table(storage, offset) {
            Ok(t) => Ok(Some(t)),
            Err(Error::Corrupt(msg)) => {
                report.corruption(msg);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn count_refcount_structures(&self, census: &mut Census, report: &mut CheckReport) {
        let cs = self.cluster_size();
        let rt = self.header.refcount_table_offset;
        census.add(
            report,
            "refcount table",
            rt,
            u64::from(self.header.refcount_table_clusters) * cs,
        );
        for (i, &e) in self.reftable.iter().enumerate() {
            let block = e & REFTABLE_OFFSET_MASK;
            if block == 0 {
                continue;
            }
            if !block.is_multiple_of(cs) {
                report.corruption(format!(
                    "refcount block {i} is not cluster aligned; refcount table entry corrupted"
                ));
                continue;
            }
            census.add(report, "refcount block", block, cs);
        }
    }

    /// Counts the snapshot table and every snapshot's L1 table and clusters.
    fn count_snapshots(
        &mut self,
        storage: &mut dyn Storage,
        census: &mut Census,
        report: &mut CheckReport,
        file_len: u64,
    ) -> Result<()> {
        let mut at = self.header.snapshots_offset;
        let start = at;
        let mut budget = MAX_SNAPSHOT_L1_ENTRIES;
        for _ in 0..self.header.nb_snapshots {
            let mut fixed = [0u8; 40];
            if at + 40 > file_len {
                report.corruption("snapshot table is past the end of the file".into());
                return Ok(());
            }
            storage.read_at(at, &mut fixed)?;
            let be64 = |i: usize| u64::from_be_bytes(fixed[i..i + 8].try_into().expect("8 bytes"));
            let be32 = |i: usize| u32::from_be_bytes(fixed[i..i + 4].try_into().expect("4 bytes"));
            let be16 = |i: usize| u16::from_be_bytes(fixed[i..i + 2].try_into().expect("2 bytes"));
            let (l1_offset, l1_size) = (be64(0), be32(8));
            let (id_len, name_len, extra_len) = (be16(12), be16(14), be32(36));
            at += (40 + u64::from(extra_len) + u64::from(id_len) + u64::from(name_len))
                .next_multiple_of(8);
            let bytes = u64::from(l1_size) * 8;
            if bytes > super::MAX_L1_BYTES
                || l1_offset.saturating_add(bytes) > file_len
                || l1_offset % 512 != 0
            {
                report.corruption(format!("snapshot L1 table at {l1_offset:#x} is invalid"));
                continue;
            }
            budget = match budget.checked_sub(u64::from(l1_size)) {
                Some(left) => left,
                None => {
                    return Err(Error::Unsupported(
                        "checking snapshots with more than 2^22 L1 entries in all".into(),
                    ))
                }
            };
            census.add(report, "snapshot L1 table", l1_offset, bytes);
            let l1 = super::read_table(storage, "snapshot L1 table", l1_offset, bytes, file_len)?;
            self.count_l1(storage, census, report, &l1)?;
        }
        census.add(report, "snapshot table", start, at - start);
        Ok(())
    }

    /// Counts the bitmap directory, bitmap tables and bitmap data clusters.
    fn count_bitmaps(
        &mut self,
        storage: &mut dyn Storage,
        census: &mut Census,
        report: &mut CheckReport,
        file_len: u64,
    ) -> Result<()> {
        let Some(ext) = self
            .header
            .extensions
            .iter()
            .find(|e| e.kind == BITMAPS_EXTENSION)
        else {
            return Ok(());
        };
        if ext.data.len() < 24 {
            report.corruption("bitmaps extension too short".into());
            return Ok(());
        }
        let dir_size = u64::from_be_bytes(ext.data[8..16].try_into().expect("8 bytes"));
        let dir_offset = u64::from_be_bytes(ext.data[16..24].try_into().expect("8 bytes"));
        if dir_size > 64 << 20 || dir_offset.saturating_add(dir_size) > file_len {
            report.corruption("bitmap directory is past the end of the file".into());
            return Ok(());
        }
        census.add(report, "bitmap directory", dir_offset, dir_size);
        let mut dir = vec![0u8; dir_size as usize];
        storage.read_at(dir_offset, &mut dir)?;
        let mut at = 0usize;
        let mut budget = MAX_BITMAP_TABLE_ENTRIES;
        while at + 24 <= dir.len() {
            let table_offset = u64::from_be_bytes(dir[at..at + 8].try_into().expect("8 bytes"));
            let table_size = u32::from_be_bytes(dir[at + 8..at + 12].try_into().expect("4 bytes"));
            let name_len = u16::from_be_bytes(dir[at + 18..at + 20].try_into().expect("2 bytes"));
            let extra_len = u32::from_be_bytes(dir[at + 20..at + 24].try_into().expect("4 bytes"));
            at += (24 + extra_len as usize + name_len as usize).next_multiple_of(8);
            let bytes = u64::from(table_size) * 8;
            if table_offset.saturating_add(bytes) > file_len || table_offset % 512 != 0 {
                report.corruption(format!("bitmap table at {table_offset:#x} is invalid"));
                continue;
            }
            budget = match budget.checked_sub(u64::from(table_size)) {
                Some(left) => left,
                None => {
                    return Err(Error::Unsupported(
                        "checking bitmaps with more than 2^23 table entries in all".into(),
                    ))
                }
            };
            census.add(report, "bitmap table", table_offset, bytes);
            for e in super::read_table(storage, "bitmap table", table_offset, bytes, file_len)? {
                let data = e & OFFSET_MASK;
                if data != 0 {
                    census.add(report, "bitmap data cluster", data, self.cluster_size());
                }
            }
        }
        Ok(())
    }

    /// Refcounts as stored, for clusters `0..nb`; broken refcount blocks
    /// are reported and read as 0.
    fn stored_refcounts(
        &mut self,
        storage: &mut dyn Storage,
        report: &mut CheckReport,
        nb: u64,
        file_len: u64,
    ) -> Result<Vec<u64>> {
        let cs = self.cluster_size();
        let per_block = self.refblock_entries();
        let order = self.header.refcount_order;
        let mut blocks: BTreeMap<u64, Option<Vec<u8>>> = BTreeMap::new();
        let mut out = Vec::with_capacity(nb as usize);
        for c in 0..nb {
            let index = c / per_block;
            if !blocks.contains_key(&index) {
                let offset =
                    self.reftable.get(index as usize).copied().unwrap_or(0) & REFTABLE_OFFSET_MASK;
                let block = if offset == 0 || !offset.is_multiple_of(cs) {
                    None
                } else if offset.checked_add(cs).is_none_or(|end| end > file_len) {
                    report.corruption(format!("refcount block {index} is outside image"));
                    None
                } else {
                    let mut b = vec![0u8; cs as usize];
                    storage.read_at(offset, &mut b)?;
                    Some(b)
                };
                blocks.clear();
                blocks.insert(index, block);
            }
            let value = match &blocks[&index] {
                Some(b) => get_refcount(b, order, (c % per_block) as usize),
                None => 0,
            };
            out.push(value);
        }
        Ok(out)
    }

    /// `OFLAG_COPIED` must be set exactly on active L2 tables and clusters
    /// whose refcount is 1.
    fn check_copied_flags(
        &mut self,
        storage: &mut dyn Storage,
        report: &mut CheckReport,
        l1: &[u64],
        stored: &[u64],
    ) -> Result<()> {
        let bits = self.header.cluster_bits;
        let refcount = |offset: u64| stored.get((offset >> bits) as usize).copied().unwrap_or(0);
        for &entry in l1 {
            let l2 = entry & OFFSET_MASK;
            if l2 == 0 || !l2.is_multiple_of(self.cluster_size()) {
                continue;
            }
            if (refcount(l2) == 1) != (entry & COPIED != 0) {
                report.corruption(format!(
                    "OFLAG_COPIED L2 cluster: l1_entry={entry:x} refcount={}",
                    refcount(l2)
                ));
            }
            let Some(table) = self.table_for_check(storage, &mut CheckReport::default(), l2)?
            else {
                continue;
            };
            for &e in table.iter() {
                if let Ok(Cluster::Normal(host) | Cluster::ZeroAlloc(host)) = self.classify(e) {
                    if (refcount(host) == 1) != (e & COPIED != 0) {
                        report.corruption(format!(
                            "OFLAG_COPIED data cluster: l2_entry={e:x} refcount={}",
                            refcount(host)
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
