//! qcow2 and raw images, byte-compatible with `qemu-img`, on real files
//! and in memory.
//!
//! Strata's stream and commit jobs move real clusters and rewrite real image
//! headers through this crate, so every image Strata writes can be checked
//! by `qemu-img check` and compared with what QEMU wrote.
//!
//! # Two layers: storage and format
//!
//! A [`Storage`] is a byte store: [`FileStorage`] for real files,
//! [`MemStorage`] for the simulator. A format value ([`Qcow2`], [`Raw`],
//! or the [`Image`] facade) holds the image's metadata only; every operation
//! takes the storage as a parameter, so the block layer can put its own
//! adapter (a blkdebug filter, say) between the format and the bytes.
//!
//! ```
//! use strata_formats::{CreateOptions, ExtentKind, MemStorage, Qcow2};
//!
//! # fn main() -> Result<(), strata_formats::Error> {
//! // Like `qemu-img create -f qcow2 base.qcow2 4M`.
//! let mut storage = MemStorage::new();
//! let mut base = Qcow2::create(&mut storage, &CreateOptions::new(4 << 20))?;
//! base.write(&mut storage, 0, &[0xaa; 4096], None)?;
//!
//! // What `qemu-img map` says at depth 0: one 64 KiB cluster of data...
//! let first = base.block_status(&mut storage, 0, 4 << 20)?;
//! assert_eq!((first.len, first.kind), (64 << 10, ExtentKind::Data));
//! // ...and the rest unallocated (read from the backing file, if any).
//! let rest = base.block_status(&mut storage, first.end(), (4 << 20) - first.end())?;
//! assert_eq!(rest.kind, ExtentKind::Unallocated);
//!
//! // `qemu-img check`: no corruption, no leak.
//! assert!(base.check(&mut storage)?.is_clean());
//! # Ok(())
//! # }
//! ```
//!
//! # Backing files
//!
//! A layer reads unallocated clusters from a [`BackingRead`], and copies
//! the untouched part of a partly written cluster from it. [`Chain`] wires
//! opened layers together; the block layer wires its graph instead.
//!
//! ```
//! use strata_formats::{Chain, CreateOptions, Image, Layer, MemStorage, Qcow2};
//!
//! # fn main() -> Result<(), strata_formats::Error> {
//! let mut base_st = MemStorage::new();
//! let mut base = Qcow2::create(&mut base_st, &CreateOptions::new(1 << 20))?;
//! base.write(&mut base_st, 0, &[1; 1024], None)?;
//!
//! let mut top_st = MemStorage::new();
//! let opts = CreateOptions::new(1 << 20).backing("base.qcow2", Some("qcow2"));
//! let top = Qcow2::create(&mut top_st, &opts)?;
//! assert_eq!(top.backing_file(), Some("base.qcow2"));
//!
//! let mut chain = Chain {
//!     layers: vec![
//!         Layer { image: Image::Qcow2(top), storage: top_st },
//!         Layer { image: Image::Qcow2(base), storage: base_st },
//!     ],
//! };
//! // A partial-cluster write to the top copies the rest of the cluster up.
//! chain.write(0, 256, &[2; 256])?;
//! let mut buf = [0; 2048];
//! chain.read(0, 0, &mut buf)?;
//! assert_eq!((buf[0], buf[256], buf[512], buf[1500]), (1, 2, 1, 0));
//! // The top now owns the whole first cluster, the base's bytes included.
//! let top = &mut chain.layers[0];
//! let mut own = [0; 2048];
//! top.image.read(&mut top.storage, 0, &mut own, None)?;
//! assert_eq!(own, buf);
//! # Ok(())
//! # }
//! ```
//!
//! # Stream and commit rewrite headers as QEMU does
//!
//! [`Qcow2::change_backing_file`] is QEMU's `qcow2_change_backing_file`:
//! names go in verbatim (`json:{...}` included), a name over 1023 bytes is
//! `EINVAL`, and `None` removes the backing file and its format.
//!
//! ```
//! use strata_formats::{Access, CreateOptions, MemStorage, Qcow2};
//! # fn main() -> Result<(), strata_formats::Error> {
//! let mut st = MemStorage::new();
//! let opts = CreateOptions::new(1 << 20).backing("mid.qcow2", Some("qcow2"));
//! let mut top = Qcow2::create(&mut st, &opts)?;
//! top.change_backing_file(&mut st, Some("base.qcow2"), Some("qcow2"))?;
//! assert_eq!(Qcow2::open(&mut st, Access::ReadOnly)?.backing_file(), Some("base.qcow2"));
//! let err = top.change_backing_file(&mut st, Some(&"x".repeat(1024)), None).unwrap_err();
//! assert_eq!(err.errno(), 22);
//! top.change_backing_file(&mut st, None, None)?;
//! assert_eq!(Qcow2::open(&mut st, Access::ReadOnly)?.backing_format(), None);
//! # Ok(())
//! # }
//! ```
//!
//! # Crashes
//!
//! Metadata is written through, in an order that keeps every prefix of the
//! writes consistent: a crash leaks clusters at worst. [`MemStorage`] shows
//! what a crash would leave with [`MemStorage::crash_view`].
//!
//! ```
//! use strata_formats::{Access, CreateOptions, MemStorage, Qcow2, Storage};
//! # fn main() -> Result<(), strata_formats::Error> {
//! let mut st = MemStorage::new();
//! let mut q = Qcow2::create(&mut st, &CreateOptions::new(1 << 20).cluster_size(512))?;
//! q.flush(&mut st)?;
//! q.write(&mut st, 0, &[7; 3000], None)?;
//! // A power cut now loses the write, but leaves a consistent image.
//! let mut crashed = st.crash_view();
//! let mut after = Qcow2::open(&mut crashed, Access::ReadOnly)?;
//! assert_eq!(after.check(&mut crashed)?.corruptions, 0);
//! let mut buf = [1; 16];
//! after.read(&mut crashed, 0, &mut buf, None)?;
//! assert_eq!(buf, [0; 16]);
//! # Ok(())
//! # }
//! ```
//!
//! # Design
//!
//! * Format values own metadata, never bytes: `Qcow2` holds the header, the
//!   L1 and refcount tables and LRU caches of L2 tables and refcount blocks
//!   (all `Arc`-shared, so clones are cheap); the storage comes with each
//!   call.
//! * Every metadata change is written through at once, in crash-safe order
//!   (refcount up, data, L2 entry, refcount down); nothing is held back, so
//!   dropping a format value never loses data and `flush` is just the
//!   storage's flush.
//! * Reads and writes work on runs: one lookup maps as many clusters as are
//!   contiguous on the host within one L2 table, so a large request is one
//!   storage call per run.
//! * Corruption found on the way (tables overlapping, data over metadata)
//!   stops all further writes to that image.
//!
//! # Errors
//!
//! Everything fails with [`Error`]; storage errors keep their errno
//! ([`Error::raw_os_error`]). Bad images (truncated, corrupt, absurd) give a
//! typed error, never a panic, an unbounded allocation or a write.

#![deny(missing_docs)]

mod chain;
mod error;
mod extent;
mod image;
mod probe;
mod qcow2;
mod raw;
mod storage;

pub use chain::{Chain, Layer};
pub use error::{Error, Result};
pub use extent::{Extent, ExtentKind};
pub use image::{Format, Image};
pub use probe::{probed_driver, FormatOrigin, PROBE_BUF_SIZE};
pub use qcow2::{
    CheckReport, Compat, CreateOptions, FeatureName, Header, HeaderExtension, Qcow2, ZeroWrite,
};
pub use raw::Raw;
pub use storage::{Access, BackingRead, ContentHash, DebugEvent, FileStorage, MemStorage, Storage};
