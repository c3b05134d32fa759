//! Images made the way the harness makes them (`qemu-img create`, then
//! `qemu-io write`) and inspected the way it inspects them afterwards
//! (`qemu-img info`, `map`, `convert`), all in memory.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Mutex;
use strata_block::{BlockLayer, MemFiles};
use strata_formats::{CreateOptions, ExtentKind, Image, MemStorage, Qcow2};
use strata_graph::{OptValue, Options};
use strata_qmp::scenario::{ImageRecord, ImageSpec};

fn text(v: &str) -> OptValue {
    OptValue::Str(v.to_string())
}

/// `{"driver": fmt, "file": {"driver": "file", "filename": name}}`.
fn image_options(format: &str, name: &str) -> Options {
    Options::new().with("driver", text(format)).with(
        "file",
        OptValue::Dict(
            Options::new()
                .with("driver", text("file"))
                .with("filename", text(name)),
        ),
    )
}

/// Image sets already made, by their specs: worlds of the same images
/// share the (copy-on-write) storage, and with it the cached digests of
/// its chunks. (A pure memo: the files only depend on the specs.)
static CREATED: Mutex<BTreeMap<String, MemFiles>> = Mutex::new(BTreeMap::new());

/// Creates every image of a scenario, in order.
pub fn create_images(images: &[ImageSpec]) -> Result<MemFiles> {
    let key = format!("{images:?}");
    if let Some(files) = CREATED.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(files);
    }
    let files = create_uncached(images)?;
    if let Ok(mut memo) = CREATED.lock() {
        memo.insert(key, files.clone());
    }
    Ok(files)
}

fn create_uncached(images: &[ImageSpec]) -> Result<MemFiles> {
    let mut files = MemFiles::new();
    let mut sizes: BTreeMap<&str, u64> = BTreeMap::new();
    for img in images {
        let size = match (img.size, &img.backing) {
            (Some(size), _) => size,
            (None, Some((backing, _))) => *sizes
                .get(backing.as_str())
                .ok_or_else(|| Error::Scenario(format!("{}: no size", img.name)))?,
            (None, None) => return Err(Error::Scenario(format!("{}: no size", img.name))),
        };
        sizes.insert(&img.name, size);
        let storage = if img.format == "raw" {
            raw_bytes(img, size)
        } else {
            let mut storage = MemStorage::new();
            let mut opts = CreateOptions::new(size);
            if let Some(cluster) = img.cluster_size {
                opts = opts.cluster_size(cluster);
            }
            if let Some((file, fmt)) = &img.backing {
                opts = opts.backing(file.clone(), Some(fmt));
            }
            Qcow2::create(&mut storage, &opts)
                .map_err(|e| Error::Scenario(format!("{}: {e}", img.name)))?;
            storage
        };
        files.insert(img.name.clone(), storage);
        if !img.writes.is_empty() {
            files = write_image(files, img)?;
        }
    }
    Ok(files)
}

fn raw_bytes(img: &ImageSpec, size: u64) -> MemStorage {
    let mut bytes = vec![0u8; size as usize];
    if img.sector_numbers {
        for (i, sector) in bytes.chunks_mut(512).enumerate() {
            sector[..4].copy_from_slice(&(i as u32).to_be_bytes());
            sector[508..].copy_from_slice(&(i as u32).to_be_bytes());
        }
    }
    MemStorage::from_bytes(&bytes)
}

/// `qemu-io -c 'write ...'`: through the block layer, with the image's
/// backing chain opened from its header.
fn write_image(files: MemFiles, img: &ImageSpec) -> Result<MemFiles> {
    let fail = |e: String| Error::Scenario(format!("{}: write: {e}", img.name));
    let mut writer = BlockLayer::new(files, 0);
    let node = writer
        .blockdev_add(&image_options(&img.format, &img.name).with("node-name", text("w")))
        .map_err(|e| fail(e.to_string()))?;
    for w in &img.writes {
        let core = writer.core_mut();
        if w.zero {
            core.write_zeroes(node, w.offset, w.length)
        } else {
            core.write(node, w.offset, &vec![w.pattern; w.length as usize])
        }
        .map_err(|e| fail(e.to_string()))?;
    }
    Ok(writer.core().files().clone())
}

/// Inspections already made, by image and the contents of every file: an
/// exploration ends many schedules on the same files, and the guest
/// content's sha256 is most of a run's cost. (A pure memo: the answer only
/// depends on the key.)
static INSPECTED: Mutex<BTreeMap<(String, [u8; 32]), ImageRecord>> = Mutex::new(BTreeMap::new());

/// What `qemu-img info`, `map` and `convert` say about `img` in `files`,
/// remembered by the files' contents (their chunk digests are cached, so
/// the key is cheap for files shared with earlier runs).
pub fn inspect_image(files: &MemFiles, img: &ImageSpec) -> ImageRecord {
    let mut key = Sha256::new();
    key.update(format!("{img:?}"));
    for (name, hash) in files.content_hashes() {
        key.update(name);
        key.update(hash.0);
    }
    let key = (img.name.clone(), key.finalize().into());
    if let Some(rec) = INSPECTED.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return rec;
    }
    let rec = inspect_uncached(files, img);
    if let Ok(mut memo) = INSPECTED.lock() {
        memo.insert(key, rec.clone());
    }
    rec
}

fn inspect_uncached(files: &MemFiles, img: &ImageSpec) -> ImageRecord {
    let mut rec = ImageRecord {
        format: img.format.clone(),
        ..ImageRecord::default()
    };
    let Some(storage) = files.get(&img.name) else {
        rec.info_error = Some(format!("{}: missing", img.name));
        return rec;
    };
    let mut storage = storage.clone();
    match open_alone(&mut storage, img) {
        Ok(mut image) => {
            rec.virtual_size = Some(image.virtual_size());
            rec.backing_filename = image.backing_file().map(str::to_string);
            rec.backing_filename_format = image.backing_format().map(str::to_string);
            if let Image::Qcow2(q) = &image {
                rec.corrupt = Some(q.header().incompatible_features & 2 != 0);
            }
            rec.allocated = Some(if img.sector_numbers {
                // The harness wrote every sector of the file itself.
                vec![[0, image.virtual_size()]]
            } else {
                allocated(&mut image, &mut storage)
            });
        }
        Err(e) => rec.info_error = Some(e),
    }
    match guest_content(files, img) {
        Ok(content) => rec.sha256 = Some(hex(&Sha256::digest(&content))),
        Err(e) => {
            // qemu-img map and convert both open the backing chain.
            rec.allocated = None;
            rec.map_error = Some(e.clone());
            rec.convert_error = Some(e);
        }
    }
    rec
}

fn open_alone(storage: &mut MemStorage, img: &ImageSpec) -> std::result::Result<Image, String> {
    let format = strata_formats::Format::from_name(&img.format);
    Image::open(storage, format, true).map_err(|e| e.to_string())
}

/// `qemu-img map` entries of depth 0 with data, merged. A raw file's data
/// are its non-zero 4 KiB blocks (what a sparse file on a real file system
/// reports after qemu-img create and qemu-io writes).
fn allocated(image: &mut Image, storage: &mut MemStorage) -> Vec<[u64; 2]> {
    let size = image.virtual_size();
    let mut ranges: Vec<[u64; 2]> = Vec::new();
    let mut push = |start: u64, len: u64| match ranges.last_mut() {
        Some(last) if last[0] + last[1] >= start => last[1] = start + len - last[0],
        _ => ranges.push([start, len]),
    };
    if let Image::Raw(_) = image {
        let bytes = storage.to_vec();
        for (i, block) in bytes.chunks(4096).enumerate() {
            if block.iter().any(|b| *b != 0) {
                push(i as u64 * 4096, block.len() as u64);
            }
        }
        return ranges;
    }
    let mut offset = 0;
    while offset < size {
        let Ok(extent) = image.block_status(storage, offset, size - offset) else {
            break;
        };
        if extent.len == 0 {
            break;
        }
        if extent.kind == ExtentKind::Data {
            push(offset, extent.len);
        }
        offset += extent.len;
    }
    ranges
}

/// The guest-visible bytes of an image opened with its backing chain from
/// the header (`qemu-img convert -O raw`).
fn guest_content(files: &MemFiles, img: &ImageSpec) -> std::result::Result<Vec<u8>, String> {
    let mut reader = BlockLayer::new(files.clone(), 1);
    let opts = image_options(&img.format, &img.name)
        .with("node-name", text("r"))
        .with("read-only", OptValue::Bool(true));
    let node = reader.blockdev_add(&opts).map_err(|e| e.to_string())?;
    let core = reader.core_mut();
    let len = core.length(node).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; len as usize];
    core.read(node, 0, &mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every qcow2 image's `check` at the end of a run: the names of images
/// that are not clean, with the report.
pub fn unclean_images(files: &MemFiles) -> Vec<String> {
    let mut bad = Vec::new();
    for (name, storage) in files.iter() {
        let mut storage = storage.clone();
        let Ok(Image::Qcow2(mut q)) = Image::open(&mut storage, None, true) else {
            continue;
        };
        match q.check(&mut storage) {
            Ok(report) if report.is_clean() => {}
            Ok(report) => bad.push(format!("{name}: {report:?}")),
            Err(e) => bad.push(format!("{name}: {e}")),
        }
    }
    bad
}
