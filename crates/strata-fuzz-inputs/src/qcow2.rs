//! qcow2 images: valid images (Strata's, in several geometries, and
//! qemu-img's with compressed clusters, snapshots, extended L2 entries and
//! bitmaps) damaged where the metadata is: header fields set to edge
//! values, L1/L2/refcount entries pointing past the end, into the header
//! or unaligned, refcounts zeroed or saturated, bytes flipped, files cut.
//!
//! [`check_image`] opens each one read-only and read-write, reads, maps,
//! checks and writes it: no panic, bounded time, a refused open and a
//! read-only open leave every byte as it was, and writes never turn an
//! image `check` finds clean into a corrupt one.

use crate::{below, chance, guarded, Failure};
use quickcheck::{Arbitrary, Gen};
use std::io;
use std::path::Path;
use std::process::Command;
use strata_formats::{Access, Compat, CreateOptions, MemStorage, Qcow2, Storage, ZeroWrite};

/// A valid image to damage.
#[derive(Clone, Debug)]
pub struct Pristine {
    /// How it was made.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Strata-made images: v3 with 512 B clusters, 4-bit refcounts, zero
/// clusters and a backing name; v2 with 64 KiB clusters; v3 with 4 KiB
/// clusters and 64-bit refcounts.
pub fn pristine_images() -> Vec<Pristine> {
    let geometries = [
        (
            "strata-v3-512",
            CreateOptions::new(1 << 20)
                .cluster_size(512)
                .refcount_bits(4)
                .backing("b.qcow2", Some("qcow2")),
        ),
        (
            "strata-v2-64k",
            CreateOptions::new(4 << 20).compat(Compat::V2),
        ),
        (
            "strata-v3-4k-r64",
            CreateOptions::new(2 << 20)
                .cluster_size(4096)
                .refcount_bits(64),
        ),
    ];
    geometries
        .into_iter()
        .map(|(name, options)| {
            let mut storage = MemStorage::new();
            let mut image = Qcow2::create(&mut storage, &options).expect("a memory image");
            let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
            image
                .write(&mut storage, 1000, &data, None)
                .expect("a memory write");
            image
                .write_zeroes(&mut storage, 200_000, 100_000, ZeroWrite::MayUnmap, None)
                .expect("memory zeroes");
            Pristine {
                name: name.to_string(),
                bytes: storage.to_vec(),
            }
        })
        .collect()
}

/// qemu-img-made images (in `scratch`): compressed clusters and an
/// internal snapshot; extended L2 entries with subclusters; a persistent
/// dirty bitmap.
pub fn qemu_images(scratch: &Path) -> io::Result<Vec<Pristine>> {
    let recipes: [(&str, &str, &[&str]); 3] = [
        (
            "qemu-snapshot-compressed",
            "cluster_size=4096",
            &[
                "write -P 1 0 64k",
                "write -c -P 2 128k 4k",
                "write -z 256k 8k",
            ],
        ),
        (
            "qemu-extended-l2",
            "extended_l2=on,cluster_size=65536",
            &["write -P 3 0 8k", "write -P 4 100k 4k", "write -z 200k 4k"],
        ),
        ("qemu-bitmap", "cluster_size=65536", &["write -P 5 64k 64k"]),
    ];
    let mut images = Vec::new();
    for (name, options, writes) in recipes {
        let path = scratch.join(format!("{name}.qcow2"));
        let path = path.to_str().expect("a UTF-8 scratch path");
        tool(
            "qemu-img",
            &["create", "-q", "-f", "qcow2", "-o", options, path, "1M"],
        )?;
        let mut io_args = vec!["-f", "qcow2"];
        for write in writes {
            io_args.extend(["-c", write]);
        }
        io_args.push(path);
        tool("qemu-io", &io_args)?;
        match name {
            "qemu-snapshot-compressed" => {
                tool("qemu-img", &["snapshot", "-c", "s1", path])?;
                tool("qemu-io", &["-f", "qcow2", "-c", "write -P 6 0 4k", path])?;
            }
            "qemu-bitmap" => tool("qemu-img", &["bitmap", "--add", path, "b0"])?,
            _ => {}
        }
        images.push(Pristine {
            name: name.to_string(),
            bytes: std::fs::read(path)?,
        });
    }
    Ok(images)
}

fn tool(program: &str, args: &[&str]) -> io::Result<()> {
    let out = Command::new(program).args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// The header fields worth damaging: (offset, width in bytes).
const HEADER_FIELDS: &[(usize, usize)] = &[
    (4, 4),   // version
    (8, 8),   // backing_file_offset
    (16, 4),  // backing_file_size
    (20, 4),  // cluster_bits
    (24, 8),  // size
    (32, 4),  // crypt_method
    (36, 4),  // l1_size
    (40, 8),  // l1_table_offset
    (48, 8),  // refcount_table_offset
    (56, 4),  // refcount_table_clusters
    (60, 4),  // nb_snapshots
    (64, 8),  // snapshots_offset
    (72, 8),  // incompatible_features
    (80, 8),  // compatible_features
    (88, 8),  // autoclear_features
    (96, 4),  // refcount_order
    (100, 4), // header_length
    (104, 1), // compression_type
];

fn get_be(bytes: &[u8], offset: usize, width: usize) -> u64 {
    let mut value = 0u64;
    for i in 0..width {
        let byte = offset.checked_add(i).and_then(|at| bytes.get(at));
        value = value << 8 | u64::from(*byte.unwrap_or(&0));
    }
    value
}

fn put_be(bytes: &mut [u8], offset: usize, width: usize, value: u64) {
    for i in 0..width {
        if let Some(b) = offset.checked_add(i).and_then(|at| bytes.get_mut(at)) {
            *b = (value >> (8 * (width - 1 - i))) as u8;
        }
    }
}

/// A value at the edge of what a field of `width` bytes holding `current`
/// may say about a file of `file_len` bytes with `cluster` byte clusters.
fn edge_value(g: &mut Gen, current: u64, file_len: u64, cluster: u64) -> u64 {
    match below(g, 12) {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => file_len,
        4 => file_len + cluster,
        5 => 1 << 40,
        6 => 1 << 62 | current,
        7 => current.wrapping_add(1),
        8 => current.wrapping_sub(1),
        9 => current.wrapping_mul(2).max(1),
        10 => current | 1 << below(g, 64),
        _ => current.wrapping_add(cluster * (1 + below(g, 8))),
    }
}

/// Where the metadata tables are: (L1 offset and entries, refcount table
/// offset and entries, the first L2 table, cluster size).
struct Layout {
    l1: (usize, usize),
    refcount_table: (usize, usize),
    first_l2: Option<usize>,
    cluster: u64,
}

const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

fn layout(bytes: &[u8]) -> Layout {
    let cluster = 1u64 << get_be(bytes, 20, 4).clamp(9, 21);
    let l1 = (get_be(bytes, 40, 8) as usize, get_be(bytes, 36, 4) as usize);
    let refcount_table = (
        get_be(bytes, 48, 8) as usize,
        (get_be(bytes, 56, 4).saturating_mul(cluster) / 8) as usize,
    );
    let first_l2 = (0..l1.1.min(64))
        .map(|i| get_be(bytes, l1.0.saturating_add(8 * i), 8) & OFFSET_MASK)
        .find(|&offset| offset != 0)
        .map(|offset| offset as usize);
    Layout {
        l1,
        refcount_table,
        first_l2,
        cluster,
    }
}

/// `pristine` with one to four kinds of damage.
pub fn mutate(g: &mut Gen, pristine: &[u8]) -> Vec<u8> {
    let mut bytes = pristine.to_vec();
    for _ in 0..1 + below(g, 4) {
        let len = bytes.len() as u64;
        let layout = layout(&bytes);
        match below(g, 16) {
            0..=3 => {
                let &(offset, width) = g.choose(HEADER_FIELDS).unwrap();
                let current = get_be(&bytes, offset, width);
                let value = edge_value(g, current, len, layout.cluster);
                put_be(&mut bytes, offset, width, value);
            }
            4..=6 => {
                let (table, entries) = match below(g, 3) {
                    0 => layout.l1,
                    1 => layout.refcount_table,
                    _ => (layout.first_l2.unwrap_or(0), layout.cluster as usize / 8),
                };
                let at = table.saturating_add(8 * below(g, entries.clamp(1, 32) as u64) as usize);
                let current = get_be(&bytes, at, 8);
                let value = edge_value(g, current, len, layout.cluster);
                put_be(&mut bytes, at, 8, value);
            }
            7 => {
                // A refcount in the first refcount block (whatever its
                // width, a 16-bit word covers some of them).
                let block = get_be(&bytes, layout.refcount_table.0, 8) as usize;
                let at = block.saturating_add(2 * below(g, 64) as usize);
                put_be(&mut bytes, at, 2, *g.choose(&[0, 0xffff, 1]).unwrap());
            }
            8..=10 => {
                let span = len.min(layout.cluster * 4).max(1);
                let at = below(g, span) as usize;
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= u8::arbitrary(g) | 1;
                }
            }
            11 | 12 => {
                let at = below(g, len) as usize;
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= u8::arbitrary(g) | 1;
                }
            }
            13 => bytes.truncate(below(g, len) as usize),
            14 => {
                let grow = below(g, 3 * layout.cluster) as usize;
                let fill = if chance(g, 50) { 0 } else { u8::arbitrary(g) };
                bytes.extend(std::iter::repeat_n(fill, grow));
            }
            _ => {
                // A header extension's length or type.
                let at = 104 + 8 * below(g, 8) as usize;
                let value = u32::arbitrary(g) as u64;
                put_be(&mut bytes, at, 4, value);
            }
        }
    }
    bytes
}

/// What Strata decided about an image: the open's error text, if refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decisions {
    /// Read-only open.
    pub read_only: Result<(), String>,
    /// Read-write open.
    pub read_write: Result<(), String>,
}

/// A storage that counts what changes it.
struct Counting {
    inner: MemStorage,
    changes: u64,
}

impl Storage for Counting {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.changes += 1;
        self.inner.write_at(offset, buf)
    }
    fn len(&mut self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.changes += 1;
        self.inner.set_len(len)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.changes += 1;
        self.inner.write_zeroes(offset, len)
    }
}

/// The largest file checked after the writes (a check's work and memory
/// grow with the file).
const CHECK_FILE_LIMIT: u64 = 256 << 20;

/// How much of the guest view one check reads at most (the start and the
/// end of a huge virtual size).
const READ_BUDGET: u64 = 8 << 20;

/// Opens `bytes` read-only and read-write and uses each image as a guest
/// and `qemu-img check` would; the decisions, or what went wrong.
pub fn check_image(bytes: &[u8]) -> Result<Decisions, Failure> {
    guarded(bytes.len(), || {
        Ok(Decisions {
            read_only: use_image(bytes, Access::ReadOnly)?,
            read_write: use_image(bytes, Access::ReadWrite)?,
        })
    })
}

fn use_image(bytes: &[u8], access: Access) -> Result<Result<(), String>, Failure> {
    let mut storage = Counting {
        inner: MemStorage::from_bytes(bytes),
        changes: 0,
    };
    let mut image = match Qcow2::open(&mut storage, access) {
        Ok(image) => image,
        Err(e) if storage.changes > 0 => {
            return Err(Failure::WroteRefused(format!(
                "{access:?} open refused ({e}) after {} writes",
                storage.changes
            )))
        }
        Err(e) => return Ok(Err(e.to_string())),
    };
    read_guest_view(&mut image, &mut storage);
    let before = image.check(&mut storage);
    if access == Access::ReadOnly {
        if storage.changes > 0 {
            return Err(Failure::WroteRefused(format!(
                "read-only image changed by {} writes",
                storage.changes
            )));
        }
        return Ok(Ok(()));
    }
    write_guest_data(&mut image, &mut storage);
    let clean_before = matches!(&before, Ok(r) if r.corruptions == 0);
    if storage.len().is_ok_and(|len| len > CHECK_FILE_LIMIT) {
        // A table the damage moved far out made the writes extend the
        // file there, as QEMU's would: a check walks all of it.
        return Ok(Ok(()));
    }
    match image.check(&mut storage) {
        Ok(after) if clean_before && after.corruptions > 0 => Err(Failure::Corrupted(format!(
            "clean before the writes, {} corruptions after",
            after.corruptions
        ))),
        _ => Ok(Ok(())),
    }
}

/// Reads and maps the first and last [`READ_BUDGET`] bytes; errors are
/// answers too.
fn read_guest_view(image: &mut Qcow2, storage: &mut Counting) {
    let size = image.virtual_size();
    let half = READ_BUDGET / 2;
    let mut buf = vec![0u8; 64 << 10];
    for start in [0, size.saturating_sub(half).max(half)] {
        let end = (start + half).min(size);
        let mut offset = start;
        while offset < end {
            let n = (end - offset).min(buf.len() as u64) as usize;
            let _ = image.read(storage, offset, &mut buf[..n], None);
            offset += n as u64;
        }
        let mut pos = start;
        for _ in 0..4096 {
            if pos >= end {
                break;
            }
            match image.block_status(storage, pos, end - pos) {
                Ok(extent) if extent.len > 0 => pos = extent.end(),
                _ => break,
            }
        }
    }
}

/// Writes data and zeroes where the guest view starts and ends, rewrites
/// the backing name and flushes; errors are answers too.
fn write_guest_data(image: &mut Qcow2, storage: &mut Counting) {
    let size = image.virtual_size();
    let data = [0x5au8; 5000];
    for offset in [4096.min(size / 2), size.saturating_sub(5000)] {
        let n = (size - offset).min(data.len() as u64) as usize;
        let _ = image.write(storage, offset, &data[..n], None);
    }
    let _ = image.write_zeroes(storage, 0, size.min(1 << 20), ZeroWrite::MayUnmap, None);
    let _ = image.change_backing_file(storage, Some("x.qcow2"), Some("qcow2"));
    let _ = image.flush(storage);
}
