//! [`Format`] and [`Image`]: one face for callers that do not care which
//! format an image is.

use crate::error::{Error, Result};
use crate::extent::Extent;
use crate::probe::FormatOrigin;
use crate::qcow2::{CheckReport, Qcow2, ZeroWrite};
use crate::raw::Raw;
use crate::storage::{Access, BackingRead, Storage};

/// An image format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// qcow2, versions 2 and 3.
    Qcow2,
    /// raw.
    Raw,
}

impl Format {
    /// Guesses the format from the magic bytes (qcow2's `QFI\xfb`, raw
    /// otherwise), as QEMU's probing does for these two.
    pub fn probe(storage: &mut dyn Storage) -> Result<Format> {
        let mut magic = [0u8; 4];
        storage.read_at(0, &mut magic)?;
        Ok(if magic == *b"QFI\xfb" {
            Format::Qcow2
        } else {
            Format::Raw
        })
    }

    /// QEMU's driver name: `"qcow2"` or `"raw"`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Qcow2 => "qcow2",
            Format::Raw => "raw",
        }
    }

    /// The format with QEMU driver name `name`, if this crate has it.
    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "qcow2" => Some(Format::Qcow2),
            "raw" => Some(Format::Raw),
            _ => None,
        }
    }
}

/// An open image of either format.
#[derive(Clone, Debug)]
// Images are few and long-lived; boxing would only cost an indirection.
#[allow(clippy::large_enum_variant)]
pub enum Image {
    /// A qcow2 image.
    Qcow2(Qcow2),
    /// A raw image.
    Raw(Raw),
}

impl Image {
    /// Opens `storage` as `format`, or as what [`Format::probe`] finds
    /// (then [`FormatOrigin::Probed`]).
    pub fn open(
        storage: &mut dyn Storage,
        format: Option<Format>,
        access: Access,
    ) -> Result<Image> {
        let (format, origin) = match format {
            Some(f) => (f, FormatOrigin::Given),
            None => (Format::probe(storage)?, FormatOrigin::Probed),
        };
        let mut image = match format {
            Format::Qcow2 => Image::Qcow2(Qcow2::open(storage, access)?),
            Format::Raw => Image::Raw(Raw::open(storage, access)?),
        };
        image.set_origin(origin);
        Ok(image)
    }

    /// How the image's format was chosen (only raw images keep it: a
    /// qcow2 image behaves the same either way).
    pub fn origin(&self) -> FormatOrigin {
        match self {
            Image::Qcow2(_) => FormatOrigin::Given,
            Image::Raw(r) => r.origin(),
        }
    }

    /// Records how the image's format was chosen ([`Raw::set_origin`]).
    pub fn set_origin(&mut self, origin: FormatOrigin) {
        if let Image::Raw(r) = self {
            r.set_origin(origin);
        }
    }

    /// The image's format.
    pub fn format(&self) -> Format {
        match self {
            Image::Qcow2(_) => Format::Qcow2,
            Image::Raw(_) => Format::Raw,
        }
    }

    /// Virtual size in bytes.
    pub fn virtual_size(&self) -> u64 {
        match self {
            Image::Qcow2(q) => q.virtual_size(),
            Image::Raw(r) => r.virtual_size(),
        }
    }

    /// Grows the virtual size to `size` (never shrinks); the new area has
    /// no data of this layer.
    pub fn grow(&mut self, storage: &mut dyn Storage, size: u64) -> Result<()> {
        match self {
            Image::Qcow2(q) => q.grow(storage, size),
            Image::Raw(r) => r.grow(storage, size),
        }
    }

    /// Cluster size (`None` for raw, which has no clusters).
    pub fn cluster_size(&self) -> Option<u64> {
        match self {
            Image::Qcow2(q) => Some(q.cluster_size()),
            Image::Raw(_) => None,
        }
    }

    /// The backing file name from the image's metadata.
    pub fn backing_file(&self) -> Option<&str> {
        match self {
            Image::Qcow2(q) => q.backing_file(),
            Image::Raw(_) => None,
        }
    }

    /// The backing format from the image's metadata.
    pub fn backing_format(&self) -> Option<&str> {
        match self {
            Image::Qcow2(q) => q.backing_format(),
            Image::Raw(_) => None,
        }
    }

    /// See [`Qcow2::block_status`] and [`Raw::block_status`].
    pub fn block_status(
        &mut self,
        storage: &mut dyn Storage,
        offset: u64,
        max_len: u64,
    ) -> Result<Extent> {
        match self {
            Image::Qcow2(q) => q.block_status(storage, offset, max_len),
            Image::Raw(r) => r.block_status(storage, offset, max_len),
        }
    }

    /// See [`Qcow2::block_status_run`]; raw's extents are already one run.
    pub fn block_status_run(
        &mut self,
        storage: &mut dyn Storage,
        offset: u64,
        max_len: u64,
    ) -> Result<Extent> {
        match self {
            Image::Qcow2(q) => q.block_status_run(storage, offset, max_len),
            Image::Raw(r) => r.block_status(storage, offset, max_len),
        }
    }

    /// See [`Qcow2::read`].
    pub fn read(
        &mut self,
        storage: &mut dyn Storage,
        offset: u64,
        buf: &mut [u8],
        backing: Option<&mut dyn BackingRead>,
    ) -> Result<()> {
        match self {
            Image::Qcow2(q) => q.read(storage, offset, buf, backing),
            Image::Raw(r) => r.read(storage, offset, buf),
        }
    }

    /// See [`Qcow2::write`].
    pub fn write(
        &mut self,
        storage: &mut dyn Storage,
        offset: u64,
        data: &[u8],
        backing: Option<&mut dyn BackingRead>,
    ) -> Result<()> {
        match self {
            Image::Qcow2(q) => q.write(storage, offset, data, backing),
            Image::Raw(r) => r.write(storage, offset, data),
        }
    }

    /// See [`Qcow2::write_zeroes`].
    pub fn write_zeroes(
        &mut self,
        storage: &mut dyn Storage,
        offset: u64,
        len: u64,
        zero_write: ZeroWrite,
        backing: Option<&mut dyn BackingRead>,
    ) -> Result<()> {
        match self {
            Image::Qcow2(q) => q.write_zeroes(storage, offset, len, zero_write, backing),
            Image::Raw(r) => r.write_zeroes(storage, offset, len),
        }
    }

    /// See [`Qcow2::change_backing_file`]; raw images have no backing file.
    pub fn change_backing_file(
        &mut self,
        storage: &mut dyn Storage,
        backing_file: Option<&str>,
        backing_format: Option<&str>,
    ) -> Result<()> {
        match self {
            Image::Qcow2(q) => q.change_backing_file(storage, backing_file, backing_format),
            Image::Raw(_) => Err(Error::NotSupportedByFormat("raw")),
        }
    }

    /// Makes completed writes durable.
    pub fn flush(&mut self, storage: &mut dyn Storage) -> Result<()> {
        match self {
            Image::Qcow2(q) => q.flush(storage),
            Image::Raw(r) => r.flush(storage),
        }
    }

    /// See [`Qcow2::check`]; raw images have nothing to check.
    pub fn check(&mut self, storage: &mut dyn Storage) -> Result<CheckReport> {
        match self {
            Image::Qcow2(q) => q.check(storage),
            Image::Raw(_) => Ok(CheckReport::default()),
        }
    }
}
