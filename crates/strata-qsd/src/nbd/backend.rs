//! What an export serves: the [`NbdBackend`] trait, the [`ExportLookup`]
//! registry of exports, and [`MemoryBackend`], an in-memory disk.

use std::collections::BTreeMap;
use std::io;

use super::wire::state;

/// How `NBD_CMD_WRITE_ZEROES` may be carried out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZeroFlags {
    /// The range may be deallocated (no `NBD_CMD_FLAG_NO_HOLE`), like
    /// QEMU's `BDRV_REQ_MAY_UNMAP`.
    pub may_unmap: bool,
    /// Fail with [`io::ErrorKind::Unsupported`] rather than write zeroes
    /// slowly (`NBD_CMD_FLAG_FAST_ZERO`, QEMU's `BDRV_REQ_NO_FALLBACK`).
    pub fast_only: bool,
}

/// The block device behind one export.
///
/// Offsets and lengths are already checked against [`size`](Self::size)
/// (rounded down to 512 bytes, as QEMU's NBD server does) and against the
/// 32 MiB request limit before a method is called; writes never reach a
/// backend whose [`read_only`](Self::read_only) is true.  Errors are mapped
/// to NBD error numbers by [`nbd_errno`](super::nbd_errno).
pub trait NbdBackend {
    /// Length in bytes.
    fn size(&mut self) -> u64;
    /// Fill `buf` from `offset`.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Write `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Make completed writes stable.
    fn flush(&mut self) -> io::Result<()>;
    /// Discard a range (its contents become unspecified).
    fn trim(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// Make a range read as zeroes.
    fn write_zeroes(&mut self, offset: u64, len: u64, flags: ZeroFlags) -> io::Result<()>;
    /// `base:allocation` of `[offset, offset + len)` as consecutive
    /// `(length, flags)` extents from `offset`, flags made of
    /// [`NBD_STATE_HOLE`] and [`NBD_STATE_ZERO`].  The extents may cover less
    /// than `len` (the server asks again for the rest when it needs it) but
    /// must cover something.
    fn block_status(&mut self, offset: u64, len: u32) -> io::Result<Vec<(u32, u32)>>;
    /// Whether the export refuses writes.
    fn read_only(&self) -> bool;
    /// Prefetch a range (`NBD_CMD_CACHE`); a hint, so doing nothing is right.
    fn cache(&mut self, _offset: u64, _len: u32) -> io::Result<()> {
        Ok(())
    }
}

/// `base:allocation` flag: the extent is not allocated.
pub const NBD_STATE_HOLE: u32 = state::HOLE;
/// `base:allocation` flag: the extent reads as zeroes.
pub const NBD_STATE_ZERO: u32 = state::ZERO;

/// The exports a server offers, by name.
///
/// The session asks again on every request, so an export removed with
/// `block-export-del` stops being served at once.
///
/// A lookup may hand out *itself* as the backend, after noting which export
/// was asked for.  That suits a block layer owning every export's node (the
/// daemon's case), where a separate backend value would have to borrow the
/// layer:
///
/// ```
/// use std::io;
/// use strata_qsd::nbd::{ExportLookup, NbdBackend, ZeroFlags, NBD_STATE_HOLE, NBD_STATE_ZERO};
///
/// /// Every export is a window on one store, like nodes of one block layer.
/// struct Layer {
///     store: Vec<u8>,
///     exports: Vec<(String, u64, u64)>, // name, start, length
///     selected: usize,
/// }
///
/// impl ExportLookup for Layer {
///     fn export_names(&self) -> Vec<String> {
///         self.exports.iter().map(|e| e.0.clone()).collect() // creation order, like QEMU
///     }
///     fn description(&self, _name: &str) -> Option<String> {
///         None
///     }
///     fn backend(&mut self, name: &str) -> Option<&mut dyn NbdBackend> {
///         self.selected = self.exports.iter().position(|e| e.0 == name)?;
///         Some(self)
///     }
/// }
///
/// impl Layer {
///     fn window(&mut self, offset: u64, len: usize) -> &mut [u8] {
///         let start = (self.exports[self.selected].1 + offset) as usize;
///         &mut self.store[start..start + len]
///     }
/// }
///
/// impl NbdBackend for Layer {
///     fn size(&mut self) -> u64 {
///         self.exports[self.selected].2
///     }
///     fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
///         buf.copy_from_slice(self.window(offset, buf.len()));
///         Ok(())
///     }
///     fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
///         self.window(offset, data.len()).copy_from_slice(data);
///         Ok(())
///     }
///     fn flush(&mut self) -> io::Result<()> {
///         Ok(())
///     }
///     fn trim(&mut self, _offset: u64, _len: u64) -> io::Result<()> {
///         Ok(()) // a hint: keeping the data is allowed
///     }
///     fn write_zeroes(&mut self, offset: u64, len: u64, _flags: ZeroFlags) -> io::Result<()> {
///         self.window(offset, len as usize).fill(0);
///         Ok(())
///     }
///     fn block_status(&mut self, _offset: u64, len: u32) -> io::Result<Vec<(u32, u32)>> {
///         Ok(vec![(len, 0)]) // all data; a hole would be NBD_STATE_HOLE | NBD_STATE_ZERO
///     }
///     fn read_only(&self) -> bool {
///         false
///     }
/// }
///
/// let mut layer = Layer {
///     store: vec![0; 2048],
///     exports: vec![("a".into(), 0, 1024), ("b".into(), 1024, 1024)],
///     selected: 0,
/// };
/// layer.backend("b").unwrap().write(0, b"hi").unwrap();
/// assert_eq!(&layer.store[1024..1026], b"hi");
/// assert!(layer.backend("c").is_none());
/// # let _ = (NBD_STATE_HOLE, NBD_STATE_ZERO);
/// ```
pub trait ExportLookup {
    /// Export names in the order `NBD_OPT_LIST` reports them.
    fn export_names(&self) -> Vec<String>;
    /// The export's description (`NBD_INFO_DESCRIPTION`), if it has one.
    fn description(&self, name: &str) -> Option<String>;
    /// The backend of export `name`, or `None` if there is no such export.
    fn backend(&mut self, name: &str) -> Option<&mut dyn NbdBackend>;
}

/// Exports kept in a map: name to backend, with an optional description.
impl<B: NbdBackend> ExportLookup for BTreeMap<String, (B, Option<String>)> {
    fn export_names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
    fn description(&self, name: &str) -> Option<String> {
        self.get(name).and_then(|(_, d)| d.clone())
    }
    fn backend(&mut self, name: &str) -> Option<&mut dyn NbdBackend> {
        self.get_mut(name).map(|(b, _)| b as &mut dyn NbdBackend)
    }
}

/// A sparse in-memory disk: data plus an allocation map of fixed-size
/// clusters, so that block status has holes to report.
///
/// A write allocates the clusters it touches; `trim` and `write_zeroes` with
/// `may_unmap` deallocate the clusters they cover completely (and zero the
/// rest of the range).  Unallocated clusters read as zeroes and report
/// `HOLE | ZERO`; allocated ones report `0`.
#[derive(Clone, Debug)]
pub struct MemoryBackend {
    data: Vec<u8>,
    allocated: Vec<bool>,
    cluster_size: usize,
    read_only: bool,
    flushes: u64,
}

impl MemoryBackend {
    /// An empty (all-hole) disk of `size` bytes with 64 KiB clusters.
    pub fn new(size: usize) -> MemoryBackend {
        MemoryBackend::with_cluster_size(size, 64 * 1024)
    }

    /// An empty disk with `cluster_size`-byte clusters (at least 1).
    pub fn with_cluster_size(size: usize, cluster_size: usize) -> MemoryBackend {
        let cluster_size = cluster_size.max(1);
        MemoryBackend {
            data: vec![0; size],
            allocated: vec![false; size.div_ceil(cluster_size)],
            cluster_size,
            read_only: false,
            flushes: 0,
        }
    }

    /// The same disk, refusing writes.
    pub fn into_read_only(mut self) -> MemoryBackend {
        self.read_only = true;
        self
    }

    /// The disk's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// How many flushes were requested (FUA writes count one each).
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    fn range(&self, offset: u64, len: u64) -> io::Result<std::ops::Range<usize>> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.data.len() as u64);
        match end {
            Some(end) => Ok(offset as usize..end as usize),
            None => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
    }

    fn clusters_touched(&self, r: &std::ops::Range<usize>) -> std::ops::Range<usize> {
        if r.is_empty() {
            return 0..0;
        }
        r.start / self.cluster_size..(r.end - 1) / self.cluster_size + 1
    }

    /// Zero the range and deallocate every cluster it covers completely.
    fn punch(&mut self, r: std::ops::Range<usize>) {
        self.data[r.clone()].fill(0);
        let first_full = r.start.div_ceil(self.cluster_size);
        let end_full = if r.end == self.data.len() {
            self.allocated.len()
        } else {
            r.end / self.cluster_size
        };
        for c in first_full..end_full.max(first_full) {
            self.allocated[c] = false;
        }
    }
}

impl NbdBackend for MemoryBackend {
    fn size(&mut self) -> u64 {
        self.data.len() as u64
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let r = self.range(offset, buf.len() as u64)?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let r = self.range(offset, data.len() as u64)?;
        for c in self.clusters_touched(&r) {
            self.allocated[c] = true;
        }
        self.data[r].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flushes += 1;
        Ok(())
    }

    fn trim(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let r = self.range(offset, len)?;
        self.punch(r);
        Ok(())
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, flags: ZeroFlags) -> io::Result<()> {
        let r = self.range(offset, len)?;
        if flags.may_unmap {
            self.punch(r);
        } else {
            for c in self.clusters_touched(&r) {
                self.allocated[c] = true;
            }
            self.data[r].fill(0);
        }
        Ok(())
    }

    fn block_status(&mut self, offset: u64, len: u32) -> io::Result<Vec<(u32, u32)>> {
        let r = self.range(offset, u64::from(len))?;
        let mut extents: Vec<(u32, u32)> = Vec::new();
        let mut pos = r.start;
        while pos < r.end {
            let cluster = pos / self.cluster_size;
            let end = ((cluster + 1) * self.cluster_size).min(r.end);
            let flags = if self.allocated[cluster] {
                0
            } else {
                NBD_STATE_HOLE | NBD_STATE_ZERO
            };
            let n = (end - pos) as u32;
            match extents.last_mut() {
                Some(last) if last.1 == flags => last.0 += n,
                _ => extents.push((n, flags)),
            }
            pos = end;
        }
        Ok(extents)
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_allocate_and_trims_punch_whole_clusters() {
        let mut m = MemoryBackend::with_cluster_size(4096, 1024);
        m.write(1500, &[7; 10]).unwrap();
        assert_eq!(
            m.block_status(0, 4096).unwrap(),
            vec![(1024, 3), (1024, 0), (2048, 3)]
        );
        m.trim(1000, 1100).unwrap();
        // Cluster 1 (1024..2048) is covered completely, so it is a hole again.
        assert_eq!(m.block_status(0, 4096).unwrap(), vec![(4096, 3)]);
        m.write_zeroes(0, 10, ZeroFlags::default()).unwrap();
        assert_eq!(m.block_status(0, 4096).unwrap(), vec![(1024, 0), (3072, 3)]);
    }

    #[test]
    fn out_of_range_is_invalid_input() {
        let mut m = MemoryBackend::new(512);
        let e = m.read(500, &mut [0; 13]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(m.write(u64::MAX, &[1]).is_err());
    }
}
