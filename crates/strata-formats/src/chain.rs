//! [`Chain`]: a backing chain of opened images, for callers without a block
//! graph (tools, tests, benchmarks).

use crate::error::{Error, Result};
use crate::extent::ExtentKind;
use crate::image::{Format, Image};
use crate::storage::{Access, BackingRead, FileStorage, Storage};
use std::io;
use std::path::{Path, PathBuf};

/// One opened image and the storage it lives on.
#[derive(Debug)]
pub struct Layer<S> {
    /// The image's format state.
    pub image: Image,
    /// Its bytes.
    pub storage: S,
}

/// Layers from the top (index 0) down to the base.
#[derive(Debug)]
pub struct Chain<S> {
    /// The layers, top first.
    pub layers: Vec<Layer<S>>,
}

/// The layers below some layer, read as that layer's backing file.
struct Below<'a, S>(&'a mut [Layer<S>]);

impl<S: Storage> BackingRead for Below<'_, S> {
    fn read_backing(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_layers(self.0, offset, buf).map_err(io::Error::from)
    }

    fn backing_is_zero(&mut self, offset: u64, len: u64) -> io::Result<bool> {
        layers_are_zero(self.0, offset, len).map_err(io::Error::from)
    }
}

/// Whether the chain `layers` reads as zeroes by metadata over the range.
fn layers_are_zero<S: Storage>(layers: &mut [Layer<S>], offset: u64, len: u64) -> Result<bool> {
    let Some((top, rest)) = layers.split_first_mut() else {
        return Ok(true);
    };
    let end = (offset + len).min(top.image.virtual_size());
    let mut pos = offset;
    while pos < end {
        let e = top.image.block_status(&mut top.storage, pos, end - pos)?;
        let zero = match e.kind {
            ExtentKind::Data => false,
            ExtentKind::Zero => true,
            ExtentKind::Unallocated => layers_are_zero(rest, pos, e.len)?,
        };
        if !zero {
            return Ok(false);
        }
        pos = e.end();
    }
    Ok(true)
}

/// Reads through `layers[0]`, its backing being the rest; zeroes past the
/// end of `layers[0]` (or everywhere if there is no layer).
fn read_layers<S: Storage>(layers: &mut [Layer<S>], offset: u64, buf: &mut [u8]) -> Result<()> {
    let Some((top, rest)) = layers.split_first_mut() else {
        buf.fill(0);
        return Ok(());
    };
    let size = top.image.virtual_size();
    let inside = size.saturating_sub(offset).min(buf.len() as u64) as usize;
    buf[inside..].fill(0);
    if inside == 0 {
        return Ok(());
    }
    let mut below = Below(rest);
    top.image.read(
        &mut top.storage,
        offset,
        &mut buf[..inside],
        Some(&mut below),
    )
}

impl<S: Storage> Chain<S> {
    /// Reads guest bytes as layer `depth` sees them (0 = the top).
    pub fn read(&mut self, depth: usize, offset: u64, buf: &mut [u8]) -> Result<()> {
        read_layers(&mut self.layers[depth..], offset, buf)
    }

    /// Writes guest bytes into layer `depth`, copying on write from the
    /// layers below it.
    pub fn write(&mut self, depth: usize, offset: u64, data: &[u8]) -> Result<()> {
        let (top, rest) = self.layers[depth..]
            .split_first_mut()
            .expect("layer exists");
        top.image
            .write(&mut top.storage, offset, data, Some(&mut Below(rest)))
    }

    /// Flushes every layer.
    pub fn flush(&mut self) -> Result<()> {
        self.layers
            .iter_mut()
            .try_for_each(|l| l.image.flush(&mut l.storage))
    }
}

impl Chain<FileStorage> {
    /// Opens the image at `path` and every backing file under it. Relative
    /// backing names are relative to the directory of the image naming
    /// them, as in QEMU. Only the top is opened read-write (if asked).
    pub fn open_files(path: impl AsRef<Path>, access: Access) -> Result<Chain<FileStorage>> {
        let mut layers = Vec::new();
        let mut next: Option<(PathBuf, Option<Format>)> = Some((path.as_ref().to_owned(), None));
        while let Some((path, format)) = next.take() {
            if layers.len() > MAX_CHAIN {
                return Err(Error::InvalidArgument(
                    "backing chain too long (a loop?)".into(),
                ));
            }
            let layer_access = if layers.is_empty() {
                access
            } else {
                Access::ReadOnly
            };
            let mut storage = FileStorage::open(&path, layer_access)?;
            let image = Image::open(&mut storage, format, layer_access)?;
            if let Some(name) = image.backing_file() {
                if name.starts_with("json:") {
                    return Err(Error::Unsupported(format!("opening backing file {name}")));
                }
                let dir = path.parent().unwrap_or(Path::new("."));
                let format = image.backing_format().and_then(Format::from_name);
                next = Some((dir.join(name), format));
            }
            layers.push(Layer { image, storage });
        }
        Ok(Chain { layers })
    }
}

/// QEMU refuses backing chains deeper than this.
const MAX_CHAIN: usize = 1000;
