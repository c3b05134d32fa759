//! The crate's one error type.
//!
//! Every failure is a variant of [`Error`]. Failures of the storage under an
//! image stay [`Error::Io`] with their `io::Error` untouched, so that a job can
//! report `Input/output error` or `No space left on device` from the errno the
//! storage (or a blkdebug filter) produced: see [`Error::raw_os_error`].

use std::io;

/// Linux errno values used when an [`Error`] must become an `io::Error`.
pub(crate) mod errno {
    pub const EPERM: i32 = 1;
    pub const EIO: i32 = 5;
    pub const EACCES: i32 = 13;
    pub const EFBIG: i32 = 27;
    pub const ENOSPC: i32 = 28;
    pub const EINVAL: i32 = 22;
    pub const EROFS: i32 = 30;
    pub const ENOTSUP: i32 = 95;
    pub const EMEDIUMTYPE: i32 = 124;
}

/// What went wrong while opening, reading, writing or checking an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage under the image failed. The `io::Error` is the storage's
    /// own, errno included.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The first bytes are not a qcow2 magic (`QFI\xfb`).
    #[error("Image is not in qcow2 format")]
    NotQcow2,
    /// The qcow2 version is neither 2 nor 3.
    #[error("Unsupported qcow2 version {0}")]
    UnsupportedVersion(u32),
    /// A header field is out of range, truncated or inconsistent.
    /// The text is QEMU's own where QEMU refuses the same header.
    #[error("{0}")]
    InvalidHeader(String),
    /// The image sets incompatible feature bits this crate does not know.
    /// `names` comes from the image's feature-name table when it has one.
    #[error("Unsupported qcow2 feature(s): {names}")]
    UnknownIncompatibleFeatures {
        /// The unknown bits, as a mask.
        bits: u64,
        /// Human-readable names, e.g. `"my feature"` or `"Unknown incompatible feature: 1000"`.
        names: String,
    },
    /// The image uses a qcow2 feature this crate refuses (encryption,
    /// external data file, extended L2 entries, zstd compression).
    #[error("{0} is not supported")]
    Unsupported(String),
    /// The metadata is inconsistent (a table points past the end of the
    /// file, overlaps other metadata, is misaligned, ...). Once this is
    /// returned from a write, the image refuses every further write.
    #[error("qcow2 image is corrupt: {0}")]
    Corrupt(String),
    /// The image's `corrupt` bit is set, so it may only be opened read-only.
    #[error("qcow2: Image is corrupt; cannot be opened read/write")]
    MarkedCorrupt,
    /// The image's `dirty` bit is set (lazy refcounts in use). Strata does
    /// not repair refcounts; `qemu-img check -r all` does.
    #[error("qcow2: Image is dirty (lazy refcounts); repair it with qemu-img check -r all before opening it read/write")]
    Dirty,
    /// A write was attempted on an image opened read-only.
    #[error("image is opened read-only")]
    ReadOnly,
    /// A request reaches past the image's virtual size.
    #[error("request at offset {offset} length {len} is past the end of the image (size {size})")]
    OutOfRange {
        /// Start of the request.
        offset: u64,
        /// Length of the request.
        len: u64,
        /// The image's virtual size.
        size: u64,
    },
    /// An argument is invalid (a backing file name longer than 1023 bytes,
    /// a cluster size that is not a power of two, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A refcount would exceed what `refcount_bits` can hold.
    #[error("refcount overflow for host cluster at offset {0:#x}")]
    RefcountOverflow(u64),
    /// The header, its extensions and the backing file name do not fit in
    /// the first cluster.
    #[error("header extensions and backing file name do not fit in the first cluster")]
    HeaderFull,
    /// The operation does not exist for this format (e.g. a backing file
    /// on a raw image).
    #[error("operation not supported by the {0} format")]
    NotSupportedByFormat(&'static str),
    /// A write to the first sector of a raw image whose format was probed
    /// would make it probe as another format (`raw_co_pwritev`'s EPERM).
    #[error("writing this first sector would make the image probe as {0}")]
    WouldProbeAs(&'static str),
}

impl Error {
    /// The errno of the storage error inside, when this is [`Error::Io`] and
    /// the storage gave one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// The errno QEMU would report for this failure: the storage's own for
    /// [`Error::Io`], and the one QEMU's qcow2 driver returns otherwise.
    pub fn errno(&self) -> i32 {
        use errno::*;
        match self {
            Error::Io(e) => e.raw_os_error().unwrap_or(EIO),
            Error::NotQcow2 => EMEDIUMTYPE,
            Error::UnsupportedVersion(_)
            | Error::UnknownIncompatibleFeatures { .. }
            | Error::Unsupported(_)
            | Error::NotSupportedByFormat(_) => ENOTSUP,
            Error::InvalidHeader(_) | Error::InvalidArgument(_) => EINVAL,
            Error::Corrupt(_) | Error::Dirty => EIO,
            Error::MarkedCorrupt => EACCES,
            Error::ReadOnly => EROFS,
            Error::OutOfRange { .. } => EIO,
            Error::RefcountOverflow(_) => EFBIG,
            Error::HeaderFull => ENOSPC,
            Error::WouldProbeAs(_) => EPERM,
        }
    }

    pub(crate) fn corrupt(msg: impl Into<String>) -> Error {
        Error::Corrupt(msg.into())
    }

    pub(crate) fn header(msg: impl Into<String>) -> Error {
        Error::InvalidHeader(msg.into())
    }
}

impl From<Error> for io::Error {
    /// Storage errors come back out unchanged; the others become the errno
    /// QEMU would return ([`Error::errno`]), as the block layer reports them.
    fn from(err: Error) -> io::Error {
        match err {
            Error::Io(e) => e,
            other => io::Error::from_raw_os_error(other.errno()),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
