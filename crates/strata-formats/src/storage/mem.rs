//! [`MemStorage`]: images in memory for the simulator.

use super::Storage;
use std::fmt;
use std::io;
use std::sync::{Arc, OnceLock};
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// Bytes per copy-on-write chunk.
const CHUNK: usize = 64 * 1024;

/// File system blocks per chunk (one bit each in a chunk's bitmaps).
const BLOCKS: usize = CHUNK / FS_BLOCK;

/// The modelled host file system's block size (ext4's 4 KiB): what a hole
/// is made of, as `SEEK_DATA`/`SEEK_HOLE` report them.
const FS_BLOCK: usize = 4096;

/// A chunk's or a store's digest: XXH3-128, not a cryptographic hash. The
/// digests only tell a simulator's states and memo keys apart (nothing
/// hostile picks the bytes), and hashing is most of what an exploration
/// spends when it is slow: XXH3 is an order of magnitude faster than SHA-256.
type Digest = [u8; 16];

/// One chunk of bytes, which of its file system blocks hold data (bit `i`:
/// block `i`; a block without data reads as zeroes), which are unwritten
/// extents (`FALLOC_FL_ZERO_RANGE`: allocated, read as zeroes, a hole to
/// `SEEK_DATA` until read) and, once asked for, its digest and those of
/// its blocks.
#[derive(Default)]
struct Chunk {
    data: Vec<u8>,
    allocated: u16,
    unwritten: u16,
    digest: OnceLock<Digest>,
    /// Each file system block's digest, kept until that block is written:
    /// a small write (a qcow2 L2 entry, a refcount) then costs the digest
    /// of one block, not of the whole chunk, in the next state key.
    blocks: [OnceLock<Digest>; BLOCKS],
}

impl Clone for Chunk {
    /// A clone is about to be written: it starts without the chunk's
    /// digest, and keeps its blocks' until the write says which changed.
    fn clone(&self) -> Chunk {
        Chunk {
            data: self.data.clone(),
            allocated: self.allocated,
            unwritten: self.unwritten,
            digest: OnceLock::new(),
            blocks: self.blocks.clone(),
        }
    }
}

impl Chunk {
    /// The chunk's digest, of its blocks' bytes and of where it holds data
    /// (a hole and a block of written zeroes differ to `qemu-img map`); a
    /// chunk without data shares the all-zero digest with a missing one.
    fn digest(&self) -> Digest {
        *self.digest.get_or_init(|| {
            if self.allocated == 0 && self.unwritten == 0 {
                [0; 16]
            } else {
                let mut h = Xxh3::new();
                for block in 0..BLOCKS {
                    h.update(&self.block_digest(block));
                }
                h.update(&self.allocated.to_le_bytes());
                h.update(&self.unwritten.to_le_bytes());
                h.digest128().to_le_bytes()
            }
        })
    }

    fn block_digest(&self, block: usize) -> Digest {
        *self.blocks[block].get_or_init(|| {
            let start = block * FS_BLOCK;
            xxh3_128(&self.data[start..start + FS_BLOCK]).to_le_bytes()
        })
    }

    /// Forgets the digests that a change of bytes `within..end` (of the
    /// chunk) makes stale.
    fn bytes_changed(&mut self, within: usize, end: usize) {
        self.digest = OnceLock::new();
        for block in within / FS_BLOCK..end.div_ceil(FS_BLOCK) {
            self.blocks[block] = OnceLock::new();
        }
    }

    fn holds_data(&self, block: usize) -> bool {
        self.allocated & (1 << block) != 0
    }
}

/// The bits of the file system blocks of a chunk that `within..end` (bytes
/// of the chunk) touches at all (`Touched`) or covers whole (`Covered`).
fn block_bits(within: usize, end: usize, blocks: BlockCover) -> u16 {
    let (first, last) = match blocks {
        BlockCover::Touched => (within / FS_BLOCK, end.div_ceil(FS_BLOCK)),
        BlockCover::Covered => (within.div_ceil(FS_BLOCK), end / FS_BLOCK),
    };
    (first..last).fold(0, |bits, b| bits | (1 << b))
}

/// The pieces of `offset..end` per chunk: chunk index, offset within the
/// chunk, length.
fn chunk_spans(offset: u64, end: u64) -> impl Iterator<Item = (usize, usize, usize)> {
    let mut pos = offset;
    std::iter::from_fn(move || {
        (pos < end).then(|| {
            let idx = (pos / CHUNK as u64) as usize;
            let within = (pos % CHUNK as u64) as usize;
            let n = (CHUNK as u64 - within as u64).min(end - pos) as usize;
            pos += n as u64;
            (idx, within, n)
        })
    })
}

#[derive(Clone, Copy)]
enum BlockCover {
    Touched,
    Covered,
}

/// The bytes of a store at one moment: shared chunks plus a length.
///
/// Invariant: bytes of the last chunk past `len` are zero, so content
/// comparisons need not care how the store got to its length.
#[derive(Clone, Default)]
struct Contents {
    chunks: Arc<Vec<Option<Arc<Chunk>>>>,
    len: u64,
}

impl Contents {
    fn read(&self, offset: u64, buf: &mut [u8]) {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let idx = (pos / CHUNK as u64) as usize;
            let within = (pos % CHUNK as u64) as usize;
            let n = (CHUNK - within).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match self.chunks.get(idx).and_then(Option::as_ref) {
                Some(chunk) if pos < self.len => {
                    dst.copy_from_slice(&chunk.data[within..within + n])
                }
                _ => dst.fill(0),
            }
            done += n;
        }
    }

    fn write(&mut self, offset: u64, buf: &[u8]) {
        let chunks = Arc::make_mut(&mut self.chunks);
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let idx = (pos / CHUNK as u64) as usize;
            let within = (pos % CHUNK as u64) as usize;
            let n = (CHUNK - within).min(buf.len() - done);
            if chunks.len() <= idx {
                chunks.resize(idx + 1, None);
            }
            if n == CHUNK {
                // A whole chunk: a fresh one from the bytes, without
                // copying (or zeroing) what it replaces.
                chunks[idx] = Some(Arc::new(Chunk {
                    data: buf[done..done + n].to_vec(),
                    allocated: u16::MAX,
                    ..Chunk::default()
                }));
                done += n;
                continue;
            }
            let slot = chunks[idx].get_or_insert_with(|| {
                Arc::new(Chunk {
                    data: vec![0; CHUNK],
                    ..Chunk::default()
                })
            });
            let chunk = Arc::make_mut(slot);
            chunk.bytes_changed(within, within + n);
            chunk.data[within..within + n].copy_from_slice(&buf[done..done + n]);
            let touched = block_bits(within, within + n, BlockCover::Touched);
            chunk.allocated |= touched;
            chunk.unwritten &= !touched;
            done += n;
        }
        self.len = self.len.max(offset + buf.len() as u64);
    }

    /// `FALLOC_FL_ZERO_RANGE` as ext4 does it (`ext4_zero_range`): every
    /// block the range touches is allocated, the blocks inside it as
    /// unwritten extents (holes to `SEEK_DATA`), and so are the partly
    /// covered blocks at its edges that were holes; a partly covered block
    /// that held data keeps it, with the range's bytes zeroed. The store
    /// grows to the range's end.
    fn zero_range(&mut self, offset: u64, len: u64) {
        let chunks = Arc::make_mut(&mut self.chunks);
        let end = offset + len;
        for (idx, within, n) in chunk_spans(offset, end) {
            if chunks.len() <= idx {
                chunks.resize(idx + 1, None);
            }
            let chunk = Arc::make_mut(chunks[idx].get_or_insert_with(|| {
                Arc::new(Chunk {
                    data: vec![0; CHUNK],
                    ..Chunk::default()
                })
            }));
            let covered = block_bits(within, within + n, BlockCover::Covered);
            let edges = block_bits(within, within + n, BlockCover::Touched) & !covered;
            chunk.bytes_changed(within, within + n);
            chunk.data[within..within + n].fill(0);
            chunk.unwritten |= covered | (edges & !chunk.allocated);
            chunk.allocated &= !covered;
        }
        self.len = self.len.max(end);
    }

    /// A buffered read: ext4 reports the unwritten blocks it read (now
    /// up to date in the page cache) as data to `SEEK_DATA`.
    fn read_into_cache(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.len);
        for (idx, within, n) in chunk_spans(offset, end) {
            let touched = block_bits(within, within + n, BlockCover::Touched);
            let unwritten = self
                .chunks
                .get(idx)
                .and_then(Option::as_ref)
                .is_some_and(|chunk| chunk.unwritten & touched != 0);
            if unwritten {
                let chunks = Arc::make_mut(&mut self.chunks);
                if let Some(Some(arc)) = chunks.get_mut(idx) {
                    let chunk = Arc::make_mut(arc);
                    chunk.digest = OnceLock::new();
                    chunk.allocated |= chunk.unwritten & touched;
                    chunk.unwritten &= !touched;
                }
            }
        }
    }

    /// Whether the file system block at `offset` holds data.
    fn holds_data(&self, offset: u64) -> bool {
        let idx = (offset / CHUNK as u64) as usize;
        let block = (offset % CHUNK as u64) as usize / FS_BLOCK;
        self.chunks
            .get(idx)
            .and_then(Option::as_ref)
            .is_some_and(|chunk| chunk.holds_data(block))
    }

    /// `SEEK_DATA`/`SEEK_HOLE` from `offset`: whether it is in data, and
    /// how far (at most `len` bytes, and not past the end) that holds.
    fn data_status(&self, offset: u64, len: u64) -> (bool, u64) {
        let data = self.holds_data(offset);
        let limit = offset.saturating_add(len).min(self.len.max(offset));
        let mut pos = (offset / FS_BLOCK as u64 + 1) * FS_BLOCK as u64;
        while pos < limit && self.holds_data(pos) == data {
            pos += FS_BLOCK as u64;
        }
        (data, pos.min(limit) - offset)
    }

    fn set_len(&mut self, len: u64) {
        if len < self.len {
            let chunks = Arc::make_mut(&mut self.chunks);
            let keep = len.div_ceil(CHUNK as u64) as usize;
            chunks.truncate(keep);
            let within = (len % CHUNK as u64) as usize;
            if within != 0 {
                if let Some(Some(last)) = chunks.last_mut() {
                    let chunk = Arc::make_mut(last);
                    chunk.bytes_changed(within, CHUNK);
                    chunk.data[within..].fill(0);
                    let cut = block_bits(within, CHUNK, BlockCover::Covered);
                    chunk.allocated &= !cut;
                    chunk.unwritten &= !cut;
                }
            }
        }
        self.len = len;
    }

    fn hash(&self) -> ContentHash {
        let mut h = Xxh3::new();
        h.update(&self.len.to_le_bytes());
        let used = self.len.div_ceil(CHUNK as u64) as usize;
        for idx in 0..used {
            let digest = match self.chunks.get(idx).and_then(Option::as_ref) {
                Some(chunk) => chunk.digest(),
                None => [0; 16],
            };
            h.update(&digest);
        }
        ContentHash(h.digest128().to_le_bytes())
    }
}

/// A content digest of a [`MemStorage`] (XXH3-128 over the chunks' digests):
/// two stores with the same length and the same bytes have the same hash,
/// however they were written.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(pub [u8; 16]);

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// An in-memory store for the simulator.
///
/// * `clone()` shares every chunk (copy-on-write in 64 KiB chunks), so a
///   clone of a 4 MiB image copies 64 pointers, not 4 MiB.
/// * [`content_hash`](MemStorage::content_hash) digests the bytes, caching
///   each chunk's digest until the chunk is written again.
/// * [`crash_view`](MemStorage::crash_view) returns the store as it was at
///   the last [`flush`](Storage::flush): what a power cut would leave.
///
/// ```
/// use strata_formats::{MemStorage, Storage};
/// let mut a = MemStorage::new();
/// a.write_at(0, b"hello").unwrap();
/// a.flush().unwrap();
/// a.write_at(0, b"HELLO").unwrap();
/// let b = a.clone();
/// assert_eq!(a.content_hash(), b.content_hash());
/// assert_eq!(a.crash_view().to_vec(), b"hello");
/// ```
#[derive(Clone, Default)]
pub struct MemStorage {
    current: Contents,
    durable: Contents,
}

impl MemStorage {
    /// An empty store (length 0, nothing unflushed).
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// A store holding `bytes`, all of them already durable.
    pub fn from_bytes(bytes: &[u8]) -> MemStorage {
        let mut contents = Contents::default();
        contents.write(0, bytes);
        MemStorage {
            current: contents.clone(),
            durable: contents,
        }
    }

    /// Every byte, in a fresh vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.current.len as usize];
        self.current.read(0, &mut out);
        out
    }

    /// The length in bytes (no `&mut` needed, unlike [`Storage::len`]).
    pub fn size(&self) -> u64 {
        self.current.len
    }

    /// The digest of the current bytes.
    pub fn content_hash(&self) -> ContentHash {
        self.current.hash()
    }

    /// The store as of the last flush: every write since then is dropped.
    pub fn crash_view(&self) -> MemStorage {
        MemStorage {
            current: self.durable.clone(),
            durable: self.durable.clone(),
        }
    }

    /// Whether every write has been flushed.
    pub fn is_flushed(&self) -> bool {
        Arc::ptr_eq(&self.current.chunks, &self.durable.chunks)
            && self.current.len == self.durable.len
    }
}

impl fmt::Debug for MemStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemStorage")
            .field("len", &self.current.len)
            .field("flushed", &self.is_flushed())
            .finish()
    }
}

impl Storage for MemStorage {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.current.read(offset, buf);
        self.current.read_into_cache(offset, buf.len() as u64);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        check_end(offset, buf.len() as u64)?;
        self.current.write(offset, buf);
        Ok(())
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        check_end(offset, len)?;
        self.current.zero_range(offset, len);
        Ok(())
    }

    fn data_status(&mut self, offset: u64, len: u64) -> io::Result<(bool, u64)> {
        Ok(self.current.data_status(offset, len))
    }

    fn len(&mut self) -> io::Result<u64> {
        Ok(self.current.len)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if len > MAX_LEN {
            return Err(io::Error::from_raw_os_error(crate::error::errno::EFBIG));
        }
        self.current.set_len(len);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.durable = self.current.clone();
        Ok(())
    }
}

/// The largest store: 1 TiB, so that a bogus offset fails instead of
/// allocating a chunk table for it.
const MAX_LEN: u64 = 1 << 40;

fn check_end(offset: u64, len: u64) -> io::Result<()> {
    offset
        .checked_add(len)
        .filter(|end| *end <= MAX_LEN)
        .map(|_| ())
        .ok_or_else(|| io::Error::from_raw_os_error(crate::error::errno::EFBIG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_until_written() {
        let mut a = MemStorage::new();
        a.write_at(100_000, &[7; 10]).unwrap();
        let mut b = a.clone();
        b.write_at(100_005, &[9; 2]).unwrap();
        let (mut x, mut y) = ([0; 10], [0; 10]);
        a.read_at(100_000, &mut x).unwrap();
        b.read_at(100_000, &mut y).unwrap();
        assert_eq!(x, [7; 10]);
        assert_eq!(y, [7, 7, 7, 7, 7, 9, 9, 7, 7, 7]);
        assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn equal_contents_hash_equal() {
        let mut a = MemStorage::new();
        a.set_len(200_000).unwrap();
        let mut b = MemStorage::new();
        b.write_at(150_000, &[1; 100]).unwrap();
        b.write_at(150_000, &[0; 100]).unwrap();
        b.set_len(200_000).unwrap();
        // Written zeroes are data (qemu-img map tells them from a hole)...
        assert_ne!(a.content_hash(), b.content_hash());
        // ...until a zero write makes their block a hole to SEEK_DATA again,
        // an unwritten extent: the same as a zero write into a's hole.
        b.write_zeroes(147_456, 4096).unwrap();
        assert_eq!(b.data_status(147_456, 4096).unwrap(), (false, 4096));
        assert_ne!(a.content_hash(), b.content_hash());
        a.write_zeroes(147_456, 4096).unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        b.set_len(200_001).unwrap();
        assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn reading_an_unwritten_extent_makes_it_data_and_a_hole_stays_a_hole() {
        let mut st = MemStorage::new();
        st.set_len(64 * 1024).unwrap();
        st.write_zeroes(8192, 16384).unwrap();
        let mut buf = [1u8; 4096];
        st.read_at(0, &mut buf).unwrap();
        st.read_at(12288, &mut buf).unwrap();
        assert_eq!(buf, [0; 4096]);
        // Block 0 was never written: still a hole. Of the zeroed range only
        // the block read (12288..16384) is data now.
        assert_eq!(st.data_status(0, 65536).unwrap(), (false, 12288));
        assert_eq!(st.data_status(12288, 65536).unwrap(), (true, 4096));
        assert_eq!(st.data_status(16384, 65536).unwrap(), (false, 49152));
    }

    #[test]
    fn zeroing_part_of_a_hole_block_makes_it_an_unwritten_extent() {
        let mut st = MemStorage::new();
        st.set_len(64 * 1024).unwrap();
        st.write_at(16384, &[3; 4096]).unwrap();
        // 512..3584 is inside hole block 0; 16384 + 512.. ends inside the
        // data block 4, which keeps its data.
        st.write_zeroes(512, 3072).unwrap();
        st.write_zeroes(16896, 1024).unwrap();
        assert_eq!(st.data_status(0, 65536).unwrap(), (false, 16384));
        let mut buf = [1u8; 8192];
        st.read_at(0, &mut buf).unwrap();
        assert_eq!(buf, [0; 8192]);
        // Read, block 0 (an unwritten extent now) is data; block 1 was
        // never touched and stays a hole.
        assert_eq!(st.data_status(0, 65536).unwrap(), (true, 4096));
        assert_eq!(st.data_status(4096, 65536).unwrap(), (false, 12288));
        assert_eq!(st.data_status(16384, 65536).unwrap(), (true, 4096));
    }

    #[test]
    fn shrinking_zeroes_the_cut_tail() {
        let mut a = MemStorage::new();
        a.write_at(0, &[5; 100]).unwrap();
        a.set_len(10).unwrap();
        a.set_len(100).unwrap();
        let mut buf = [1; 100];
        a.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf[..10], &[5; 10]);
        assert!(buf[10..].iter().all(|&b| b == 0));
    }

    #[test]
    fn crash_view_drops_unflushed_writes() {
        let mut a = MemStorage::new();
        a.write_at(0, b"one").unwrap();
        assert!(!a.is_flushed());
        assert_eq!(a.crash_view().size(), 0);
        a.flush().unwrap();
        a.write_at(3, b"two").unwrap();
        a.set_len(4).unwrap();
        assert_eq!(a.crash_view().to_vec(), b"one");
        assert_eq!(a.to_vec(), b"onet");
    }

    #[test]
    fn absurd_offsets_fail_instead_of_allocating() {
        let mut a = MemStorage::new();
        let err = a.write_at(u64::MAX - 1, b"xy").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(27));
        assert!(a.set_len(1 << 50).is_err());
    }
}
