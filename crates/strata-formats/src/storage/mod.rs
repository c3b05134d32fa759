//! Where image bytes live: the [`Storage`] trait and its two implementations.
//!
//! * [`FileStorage`]: a real file, positioned I/O, `fdatasync` on flush.
//! * [`MemStorage`]: memory for the simulator, cloned in microseconds
//!   (chunks shared copy-on-write), hashed by content, and able to show what
//!   would survive a crash ([`MemStorage::crash_view`]).
//!
//! Format code never owns its storage: every operation of
//! [`Qcow2`](crate::Qcow2) and [`Raw`](crate::Raw) takes `&mut dyn Storage`,
//! so the block layer can route a node's I/O through its own adapter (a
//! blkdebug filter, a throttle, ...).

mod file;
mod mem;

pub use file::FileStorage;
pub use mem::{ContentHash, MemStorage};

use std::io;

/// How an image or its file is opened: QEMU's `read-only` option
/// (`BDRV_O_RDWR` clear or set).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Access {
    /// Reads only: every write fails, and a qcow2 image marked corrupt or
    /// dirty still opens (as `qemu-img check` needs).
    ReadOnly,
    /// Reads and writes.
    ReadWrite,
}

impl Access {
    /// The access a QEMU `read-only` flag asks for.
    pub fn from_read_only(read_only: bool) -> Access {
        if read_only {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        }
    }

    /// Whether writes are refused.
    pub fn is_read_only(self) -> bool {
        self == Access::ReadOnly
    }
}

/// A byte store an image lives on.
///
/// Reads past the end fill the buffer with zeroes, as QEMU's `file-posix`
/// does; writes past the end extend it.
#[allow(clippy::len_without_is_empty)] // the length of a store, not a collection
pub trait Storage {
    /// Reads `buf.len()` bytes at `offset`; bytes past the end read as zero.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, extending the store if needed.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// The current length in bytes.
    fn len(&mut self) -> io::Result<u64>;
    /// Truncates or extends (with zeroes) to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> io::Result<()>;
    /// The format is about to do the I/O `event` names on this store
    /// (QEMU's `BLKDBG_EVENT(bs->file, ...)`): a blkdebug node below arms
    /// its rules on it. Plain stores ignore it.
    fn debug_event(&mut self, event: DebugEvent) {
        let _ = event;
    }

    /// Makes `len` bytes at `offset` read as zeroes the way QEMU's
    /// file-posix does on Linux (`fallocate(FALLOC_FL_ZERO_RANGE)`,
    /// extending the store if needed): the file system blocks inside the
    /// range stop holding data (`SEEK_DATA` skips them), the partly covered
    /// ones keep what they were. The default writes zero bytes.
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        write_zero_bytes(self, offset, len)
    }

    /// `SEEK_DATA`/`SEEK_HOLE` at `offset`, as file-posix's block status
    /// asks: whether `offset` holds data (rather than a hole), and for how
    /// many of the next `len` bytes that holds. The default knows no holes.
    fn data_status(&mut self, offset: u64, len: u64) -> io::Result<(bool, u64)> {
        let _ = offset;
        Ok((true, len))
    }
}

/// The points of a format's I/O that QEMU announces to its `file` child
/// (`BlkdebugEvent`), the ones Strata's formats reach.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum DebugEvent {
    /// A read of guest data from the image's own clusters.
    ReadAio,
    /// A read of guest data the layer leaves to its backing file.
    ReadBackingAio,
    /// A read of a compressed cluster.
    ReadCompressed,
    /// A write of guest data.
    WriteAio,
    /// The read of what a partly written new cluster keeps.
    CowRead,
    /// The write of a new cluster together with what it keeps.
    CowWrite,
}

impl DebugEvent {
    /// QEMU's name of the event (`BlkdebugEvent`), as blkdebug rules say it.
    pub fn name(self) -> &'static str {
        match self {
            DebugEvent::ReadAio => "read_aio",
            DebugEvent::ReadBackingAio => "read_backing_aio",
            DebugEvent::ReadCompressed => "read_compressed",
            DebugEvent::WriteAio => "write_aio",
            DebugEvent::CowRead => "cow_read",
            DebugEvent::CowWrite => "cow_write",
        }
    }
}

/// Writes `len` zero bytes at `offset`, 1 MiB at a time.
pub(crate) fn write_zero_bytes<S: Storage + ?Sized>(
    storage: &mut S,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    const ZERO_BUF: u64 = 1 << 20;
    let zeroes = vec![0u8; len.min(ZERO_BUF) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZERO_BUF);
        storage.write_at(offset + done, &zeroes[..n as usize])?;
        done += n;
    }
    Ok(())
}

impl<S: Storage + ?Sized> Storage for &mut S {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, buf)
    }
    fn len(&mut self) -> io::Result<u64> {
        (**self).len()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        (**self).set_len(len)
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
    fn debug_event(&mut self, event: DebugEvent) {
        (**self).debug_event(event)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        (**self).write_zeroes(offset, len)
    }
    fn data_status(&mut self, offset: u64, len: u64) -> io::Result<(bool, u64)> {
        (**self).data_status(offset, len)
    }
}

impl<S: Storage + ?Sized> Storage for Box<S> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, buf)
    }
    fn len(&mut self) -> io::Result<u64> {
        (**self).len()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        (**self).set_len(len)
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
    fn debug_event(&mut self, event: DebugEvent) {
        (**self).debug_event(event)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        (**self).write_zeroes(offset, len)
    }
    fn data_status(&mut self, offset: u64, len: u64) -> io::Result<(bool, u64)> {
        (**self).data_status(offset, len)
    }
}

/// Reads of a layer's backing file, as the layer sees it.
///
/// Implementations zero-fill past the backing file's end (a backing file
/// shorter than its overlay reads as zeroes there, as in QEMU).
pub trait BackingRead {
    /// Reads `buf.len()` bytes of the backing file at `offset`.
    fn read_backing(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Whether the backing file's metadata says `len` bytes at `offset` read
    /// as zeroes (zero clusters, unallocated down to the bottom of the
    /// chain, or past its end), like QEMU's `bdrv_block_status_above`
    /// reporting `BDRV_BLOCK_ZERO`. Data that happens to be zero does not
    /// count. The default knows nothing and says `false`, which only makes
    /// partial-cluster zero writes allocate data where QEMU would not.
    fn backing_is_zero(&mut self, offset: u64, len: u64) -> io::Result<bool> {
        let _ = (offset, len);
        Ok(false)
    }
}

impl<B: BackingRead + ?Sized> BackingRead for &mut B {
    fn read_backing(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_backing(offset, buf)
    }
    fn backing_is_zero(&mut self, offset: u64, len: u64) -> io::Result<bool> {
        (**self).backing_is_zero(offset, len)
    }
}

/// Reborrows an optional backing reader for one call (shortening the trait
/// object's lifetime, which `Option::as_deref_mut` cannot do).
pub(crate) fn reborrow<'s>(
    backing: &'s mut Option<&mut dyn BackingRead>,
) -> Option<&'s mut dyn BackingRead> {
    match backing {
        Some(b) => Some(&mut **b),
        None => None,
    }
}
