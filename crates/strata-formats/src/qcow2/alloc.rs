//! Refcounts and cluster allocation.
//!
//! Write order (the crash contract): a cluster's refcount is raised and
//! written before anything points at it, and lowered only after nothing
//! does. A crash between two writes therefore leaves leaked clusters at
//! worst, never a cluster in use with too low a refcount.

use super::{Qcow2, REFTABLE_OFFSET_MASK};
use crate::error::{Error, Result};
use crate::storage::Storage;
use std::sync::Arc;

/// Used clusters tolerated past the end of the file before the refcounts
/// are called corrupt.
const MAX_USED_PAST_EOF: u64 = 1 << 20;

/// Reads entry `index` of a refcount block of width `1 << order` bits.
pub(crate) fn get_refcount(block: &[u8], order: u32, index: usize) -> u64 {
    match order {
        0..=2 => {
            let bits = 1usize << order;
            let byte = block[index * bits / 8];
            u64::from(byte >> ((index * bits) % 8)) & ((1 << bits) - 1)
        }
        3 => u64::from(block[index]),
        4 => u64::from(u16::from_be_bytes([block[2 * index], block[2 * index + 1]])),
        5 => u64::from(u32::from_be_bytes(
            block[4 * index..4 * index + 4].try_into().expect("4 bytes"),
        )),
        _ => u64::from_be_bytes(block[8 * index..8 * index + 8].try_into().expect("8 bytes")),
    }
}

/// Writes entry `index` of a refcount block (`value` fits the width).
fn set_refcount(block: &mut [u8], order: u32, index: usize, value: u64) {
    match order {
        0..=2 => {
            let bits = 1usize << order;
            let shift = (index * bits) % 8;
            let mask = (((1u16 << bits) - 1) as u8) << shift;
            let byte = &mut block[index * bits / 8];
            *byte = (*byte & !mask) | (((value as u8) << shift) & mask);
        }
        3 => block[index] = value as u8,
        4 => block[2 * index..2 * index + 2].copy_from_slice(&(value as u16).to_be_bytes()),
        5 => block[4 * index..4 * index + 4].copy_from_slice(&(value as u32).to_be_bytes()),
        _ => block[8 * index..8 * index + 8].copy_from_slice(&value.to_be_bytes()),
    }
}

/// Byte range of a refcount block holding entries `first..first + count`.
fn entry_bytes(order: u32, first: usize, count: usize) -> std::ops::Range<usize> {
    let bits = 1usize << order;
    (first * bits / 8)..((first + count) * bits).div_ceil(8)
}

impl Qcow2 {
    /// The largest refcount the image's width can hold.
    pub(crate) fn max_refcount(&self) -> u64 {
        match self.refcount_bits() {
            64 => u64::MAX,
            bits => (1 << bits) - 1,
        }
    }

    /// Refcount entries per refcount block.
    pub(crate) fn refblock_entries(&self) -> u64 {
        (self.cluster_size() * 8) >> self.header.refcount_order
    }

    /// The refcount of host cluster `cluster` (0 when no block covers it).
    pub(crate) fn refcount(&mut self, storage: &mut dyn Storage, cluster: u64) -> Result<u64> {
        let per_block = self.refblock_entries();
        let Some(block) = self.refblock(storage, cluster / per_block)? else {
            return Ok(0);
        };
        Ok(get_refcount(
            &block,
            self.header.refcount_order,
            (cluster % per_block) as usize,
        ))
    }

    /// The refcount block at refcount-table index `index`, if there is one.
    fn refblock(&mut self, storage: &mut dyn Storage, index: u64) -> Result<Option<Arc<Vec<u8>>>> {
        let offset = self.reftable.get(index as usize).copied().unwrap_or(0) & REFTABLE_OFFSET_MASK;
        if offset == 0 {
            return Ok(None);
        }
        if let Some(block) = self.refblock_cache.get(offset) {
            return Ok(Some(block));
        }
        let cs = self.cluster_size();
        if !offset.is_multiple_of(cs) {
            return Err(Error::corrupt(format!(
                "refcount block offset {offset:#x} unaligned"
            )));
        }
        let file_len = storage.len()?;
        if offset.checked_add(cs).is_none_or(|end| end > file_len) {
            return Err(Error::corrupt(format!(
                "refcount block at {offset:#x} is past the end of the file"
            )));
        }
        let mut block = vec![0u8; cs as usize];
        self.metadata_loads += 1;
        storage.read_at(offset, &mut block)?;
        let block = Arc::new(block);
        self.refblock_cache.insert(offset, Arc::clone(&block));
        Ok(Some(block))
    }

    /// Finds up to `max` free clusters in a row at or after the cursor and
    /// moves the cursor past them. Returns (first cluster index, count).
    fn find_free_run(&mut self, storage: &mut dyn Storage, max: u64) -> Result<(u64, u64)> {
        let cs = self.cluster_size();
        // Clusters past the end of the file are free unless a crash leaked
        // them; a long run of used ones there means corrupt refcounts, and
        // scanning on would take forever.
        let limit =
            (super::MAX_HOST_OFFSET / cs).min(storage.len()?.div_ceil(cs) + MAX_USED_PAST_EOF);
        let mut start = self.free_cursor;
        while start < limit && self.refcount(storage, start)? != 0 {
            start += 1;
        }
        let mut n = 0;
        while n < max && start + n < limit && self.refcount(storage, start + n)? == 0 {
            n += 1;
        }
        if n == 0 {
            return Err(Error::corrupt(
                "no free cluster below 2^56 bytes or near the end of the file",
            ));
        }
        self.free_cursor = start + n;
        Ok((start, n))
    }

    /// Allocates up to `max` contiguous clusters (at least one) with
    /// refcount 1. Returns (host offset, count).
    pub(crate) fn alloc_clusters(
        &mut self,
        storage: &mut dyn Storage,
        max: u64,
    ) -> Result<(u64, u64)> {
        let (first, n) = self.find_free_run(storage, max)?;
        self.update_refcounts(storage, first, n, 1)?;
        Ok((first * self.cluster_size(), n))
    }

    /// Allocates exactly `n` contiguous clusters (tables need that).
    pub(crate) fn alloc_contiguous(&mut self, storage: &mut dyn Storage, n: u64) -> Result<u64> {
        loop {
            let (first, got) = self.find_free_run(storage, n)?;
            if got == n {
                self.update_refcounts(storage, first, n, 1)?;
                return Ok(first * self.cluster_size());
            }
        }
    }

    /// Drops one reference to each cluster of host range `offset..offset+len`.
    pub(crate) fn free_range(
        &mut self,
        storage: &mut dyn Storage,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        let cs = self.cluster_size();
        let first = offset / cs;
        let end = (offset + len).div_ceil(cs);
        self.update_refcounts(storage, first, end - first, -1)
    }

    /// Adds `delta` (+1 or -1) to the refcounts of clusters
    /// `first..first + n`, creating refcount blocks as needed for raises.
    pub(crate) fn update_refcounts(
        &mut self,
        storage: &mut dyn Storage,
        first: u64,
        n: u64,
        delta: i8,
    ) -> Result<()> {
        let per_block = self.refblock_entries();
        let order = self.header.refcount_order;
        let max = self.max_refcount();
        let cs = self.cluster_size();
        let mut cluster = first;
        while cluster < first + n {
            let index = cluster / per_block;
            let within = (cluster % per_block) as usize;
            let count = (first + n - cluster).min(per_block - within as u64) as usize;
            if delta > 0 {
                self.ensure_refblock(storage, index)?;
            }
            let Some(block) = self.refblock(storage, index)? else {
                return Err(Error::corrupt(format!(
                    "freeing cluster {cluster:#x} that no refcount block covers"
                )));
            };
            let mut values = Vec::with_capacity(count);
            for i in within..within + count {
                let old = get_refcount(&block, order, i);
                let new = match delta {
                    1 if old < max => old + 1,
                    1 => {
                        return Err(Error::RefcountOverflow(
                            (cluster + (i - within) as u64) * cs,
                        ))
                    }
                    _ if old > 0 => old - 1,
                    _ => {
                        let at = (cluster + (i - within) as u64) * cs;
                        return Err(Error::corrupt(format!(
                            "refcount of cluster at {at:#x} would drop below 0"
                        )));
                    }
                };
                values.push(new);
            }
            let offset = self.reftable[index as usize] & REFTABLE_OFFSET_MASK;
            let block = self
                .refblock_cache
                .get_mut(offset)
                .expect("block was just loaded");
            for (i, value) in (within..).zip(values.iter().copied()) {
                set_refcount(block, order, i, value);
            }
            let bytes = entry_bytes(order, within, count);
            let chunk = block[bytes.clone()].to_vec();
            storage.write_at(offset + bytes.start as u64, &chunk)?;
            if delta < 0 && values.contains(&0) {
                self.free_cursor = self.free_cursor.min(cluster);
            }
            cluster += count as u64;
        }
        Ok(())
    }

    /// Makes sure refcount block `index` exists, allocating it (and growing
    /// the refcount table) if needed. The new block is written before the
    /// table points at it.
    fn ensure_refblock(&mut self, storage: &mut dyn Storage, index: u64) -> Result<()> {
        if index as usize >= self.reftable.len() {
            self.grow_reftable(storage, index + 1)?;
        }
        if self.reftable[index as usize] & REFTABLE_OFFSET_MASK != 0 {
            return Ok(());
        }
        let cs = self.cluster_size();
        let per_block = self.refblock_entries();
        self.metadata_loads += 1;
        let (cluster, _) = self.find_free_run(storage, 1)?;
        let mut block = vec![0u8; cs as usize];
        let covers_itself = cluster / per_block == index;
        if covers_itself {
            set_refcount(
                &mut block,
                self.header.refcount_order,
                (cluster % per_block) as usize,
                1,
            );
        }
        let offset = cluster * cs;
        self.check_no_overlap(offset, cs)?;
        storage.write_at(offset, &block)?;
        if !covers_itself {
            self.update_refcounts(storage, cluster, 1, 1)?;
        }
        // Setting the block's own refcount may have grown the refcount
        // table, with a new block for `index` among the grown table's.
        if self.reftable[index as usize] & REFTABLE_OFFSET_MASK != 0 {
            return self.update_refcounts(storage, cluster, 1, -1);
        }
        self.barrier(storage)?;
        self.set_reftable_entry(storage, index, offset)?;
        self.refblock_cache.insert(offset, Arc::new(block));
        Arc::make_mut(&mut self.metadata).insert(offset);
        Ok(())
    }

    fn set_reftable_entry(
        &mut self,
        storage: &mut dyn Storage,
        index: u64,
        value: u64,
    ) -> Result<()> {
        Arc::make_mut(&mut self.reftable)[index as usize] = value;
        let at = self.header.refcount_table_offset + index * 8;
        storage.write_at(at, &value.to_be_bytes())?;
        Ok(())
    }

    /// Moves the refcount table to a bigger place with at least
    /// `min_entries` entries.
    ///
    /// Order: new refcount blocks and the new table are written into
    /// clusters nothing references; refcounts for them are raised; then one
    /// header write switches tables; then the old table is freed.
    fn grow_reftable(&mut self, storage: &mut dyn Storage, min_entries: u64) -> Result<()> {
        let cs = self.cluster_size();
        let per_block = self.refblock_entries();
        let old_entries = self.reftable.len() as u64;
        let wanted = min_entries.max(old_entries * 2).max(cs / 8);
        let table_clusters = (wanted * 8).div_ceil(cs);
        if table_clusters * cs > super::MAX_REFTABLE_BYTES {
            return Err(Error::Unsupported(
                "a refcount table larger than 8 MiB".into(),
            ));
        }
        let new_entries = table_clusters * cs / 8;
        // Place everything past every used cluster and past the end of file.
        let file_clusters = storage.len()?.div_ceil(cs);
        let mut area = self.free_cursor.max(file_clusters);
        let (blocks, area_len) = loop {
            let (blocks, area_len) = self.layout_grown_table(area, table_clusters, old_entries);
            let mut busy = None;
            for c in area..area + area_len {
                if self.refcount(storage, c)? != 0 {
                    busy = Some(c);
                }
            }
            match busy {
                Some(c) => area = c + 1,
                None => break (blocks, area_len),
            }
        };
        let order = self.header.refcount_order;
        let table_start = area + blocks.len() as u64;
        let mut new_table = self.reftable.as_ref().clone();
        new_table.resize(new_entries as usize, 0);
        // Write the new blocks, counting area clusters they cover.
        for (k, &index) in blocks.iter().enumerate() {
            let mut block = vec![0u8; cs as usize];
            for c in area..area + area_len {
                if c / per_block == index {
                    set_refcount(&mut block, order, (c % per_block) as usize, 1);
                }
            }
            let offset = (area + k as u64) * cs;
            storage.write_at(offset, &block)?;
            new_table[index as usize] = offset;
            self.refblock_cache.insert(offset, Arc::new(block));
            Arc::make_mut(&mut self.metadata).insert(offset);
        }
        // Raise refcounts of area clusters that existing blocks cover.
        for c in area..area + area_len {
            let index = c / per_block;
            if !blocks.contains(&index) {
                self.update_refcounts(storage, c, 1, 1)?;
            }
        }
        let mut raw = Vec::with_capacity((table_clusters * cs) as usize);
        new_table
            .iter()
            .for_each(|e| raw.extend_from_slice(&e.to_be_bytes()));
        storage.write_at(table_start * cs, &raw)?;
        self.barrier(storage)?;
        // Switch: one write of refcount_table_offset and _clusters.
        let old_offset = self.header.refcount_table_offset;
        let old_clusters = u64::from(self.header.refcount_table_clusters);
        self.header.refcount_table_offset = table_start * cs;
        self.header.refcount_table_clusters = table_clusters as u32;
        let mut switch = [0u8; 12];
        switch[..8].copy_from_slice(&(table_start * cs).to_be_bytes());
        switch[8..].copy_from_slice(&(table_clusters as u32).to_be_bytes());
        storage.write_at(48, &switch)?;
        self.reftable = Arc::new(new_table);
        self.free_cursor = self.free_cursor.max(area + area_len);
        self.barrier(storage)?;
        self.free_range(storage, old_offset, old_clusters * cs)?;
        Ok(())
    }

    /// For a grown table of `table_clusters` clusters placed at cluster
    /// `area` behind its own new refcount blocks: which refcount-table
    /// indices need new blocks, and how many clusters the area spans.
    fn layout_grown_table(
        &self,
        area: u64,
        table_clusters: u64,
        old_entries: u64,
    ) -> (Vec<u64>, u64) {
        let per_block = self.refblock_entries();
        let mut n_blocks = 0u64;
        loop {
            let area_len = n_blocks + table_clusters;
            let first = area / per_block;
            let last = (area + area_len - 1) / per_block;
            let missing: Vec<u64> = (first..=last)
                .filter(|&i| {
                    i >= old_entries || self.reftable[i as usize] & REFTABLE_OFFSET_MASK == 0
                })
                .collect();
            if missing.len() as u64 <= n_blocks {
                return (missing, area_len);
            }
            n_blocks = missing.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_round_trips_without_touching_neighbours() {
        for order in 0..=6u32 {
            let bits = 1u32 << order;
            let max = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            let mut block = vec![0u8; 512];
            let entries = 512 * 8 / bits as usize;
            for i in 0..entries {
                set_refcount(&mut block, order, i, (i as u64 * 7919) & max);
            }
            set_refcount(&mut block, order, 3, max);
            for i in 0..entries {
                let want = if i == 3 { max } else { (i as u64 * 7919) & max };
                assert_eq!(
                    get_refcount(&block, order, i),
                    want,
                    "order {order} entry {i}"
                );
            }
        }
    }

    #[test]
    fn sub_byte_widths_are_little_endian_within_a_byte() {
        // QEMU: entry i of a 1-bit table is bit (i % 8) of byte i / 8.
        let mut block = vec![0u8; 2];
        set_refcount(&mut block, 0, 9, 1);
        assert_eq!(block, [0, 0b10]);
        set_refcount(&mut block, 2, 0, 0xf);
        assert_eq!(block[0], 0x0f);
        assert_eq!(entry_bytes(0, 9, 1), 1..2);
        assert_eq!(entry_bytes(4, 1, 2), 2..6);
    }
}
