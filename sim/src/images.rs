//! Images made the way the harness makes them (`qemu-img create`, then
//! `qemu-io write`) and inspected the way it inspects them afterwards
//! (`qemu-img info`, `map`, `convert`), all in memory. Inspection opens an
//! image as qemu-img does, through strata-block's open path
//! (`BlockCore::open_as_qemu_img`), and reads it through strata-block's I/O.

use crate::error::{Error, Result};
use crate::scenario::{ImageRecord, ImageSpec};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Mutex;
use strata_block::{strerror, BackingChain, BlockCore, BlockLayer, DriverState, MemFiles};
use strata_formats::{
    Access, Compat, CreateOptions, ExtentKind, Image, MemStorage, Qcow2, Storage,
};
use strata_graph::{NodeId, OptValue, Options};
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// A process-wide pure memo: each value is a function of its key alone,
/// so sharing it between runs, threads and scenarios changes no result.
struct Memo<K, V>(Mutex<BTreeMap<K, V>>);

impl<K: Ord, V: Clone> Memo<K, V> {
    const fn new() -> Memo<K, V> {
        Memo(Mutex::new(BTreeMap::new()))
    }

    fn get(&self, key: &K) -> Option<V> {
        self.0.lock().ok()?.get(key).cloned()
    }

    fn insert(&self, key: K, value: V) {
        if let Ok(mut memo) = self.0.lock() {
            memo.insert(key, value);
        }
    }

    /// The value of the last key of `keys` that has one, with its index.
    fn last_known(&self, keys: &[K]) -> Option<(usize, V)> {
        let memo = self.0.lock().ok()?;
        (0..keys.len())
            .rev()
            .find_map(|i| memo.get(&keys[i]).map(|v| (i, v.clone())))
    }

    fn get_or_compute(&self, key: K, compute: impl FnOnce() -> V) -> V {
        if let Some(value) = self.get(&key) {
            return value;
        }
        let value = compute();
        self.insert(key, value.clone());
        value
    }

    fn clear(&self) {
        if let Ok(mut memo) = self.0.lock() {
            memo.clear();
        }
    }
}

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

/// Image sets already made, by the specs of a scenario's first images:
/// worlds of the same images share the (copy-on-write) storage, and with it
/// the cached digests of its chunks, and scenarios that start with the same
/// images make them once. (A pure memo: the files only depend on the specs
/// of the images made so far.)
static CREATED: Memo<String, MemFiles> = Memo::new();

/// Creates every image of a scenario, in order.
pub fn create_images(images: &[ImageSpec]) -> Result<MemFiles> {
    let sizes = image_sizes(images)?;
    let keys: Vec<String> = (1..=images.len())
        .map(|n| format!("{:?}", &images[..n]))
        .collect();
    let (made, mut files) = CREATED
        .last_known(&keys)
        .map_or((0, MemFiles::new()), |(i, files)| (i + 1, files));
    for i in made..images.len() {
        files = create_image(files, &images[i], sizes[i])?;
        CREATED.insert(keys[i].clone(), files.clone());
    }
    Ok(files)
}

/// Each image's virtual size: its own, or its backing file's.
fn image_sizes(images: &[ImageSpec]) -> Result<Vec<u64>> {
    let mut sizes: BTreeMap<&str, u64> = BTreeMap::new();
    let mut out = Vec::with_capacity(images.len());
    for img in images {
        let size = match (img.size, &img.backing) {
            (Some(size), _) => size,
            (None, Some((backing, _))) => *sizes
                .get(backing.as_str())
                .ok_or_else(|| Error::Scenario(format!("{}: no size", img.name)))?,
            (None, None) => return Err(Error::Scenario(format!("{}: no size", img.name))),
        };
        sizes.insert(&img.name, size);
        out.push(size);
    }
    Ok(out)
}

/// `qemu-img create`, then the spec's `qemu-io` writes.
fn create_image(mut files: MemFiles, img: &ImageSpec, size: u64) -> Result<MemFiles> {
    let storage = if img.format == "raw" {
        if let Some((key, value)) = img.options.first() {
            return Err(not_modelled(img, key, value));
        }
        raw_bytes(img, size)
    } else {
        let mut storage = MemStorage::new();
        let mut opts = CreateOptions::new(size);
        if let Some(cluster) = img.cluster_size {
            opts = opts.cluster_size(cluster);
        }
        for (key, value) in &img.options {
            opts = with_option(opts, key, value).ok_or_else(|| not_modelled(img, key, value))?;
        }
        if let Some((file, fmt)) = &img.backing {
            opts = opts.backing(file.clone(), Some(fmt));
        }
        Qcow2::create(&mut storage, &opts)
            .map_err(|e| Error::Scenario(format!("{}: {e}", img.name)))?;
        storage
    };
    files.insert(img.name.clone(), storage);
    if img.writes.is_empty() {
        Ok(files)
    } else {
        write_image(files, img)
    }
}

/// One `qemu-img create -o key=value` option of qcow2, where modelled.
fn with_option(opts: CreateOptions, key: &str, value: &str) -> Option<CreateOptions> {
    match key {
        "compat" => match value {
            "0.10" | "v2" => Some(opts.compat(Compat::V2)),
            "1.1" | "v3" => Some(opts.compat(Compat::V3)),
            _ => None,
        },
        "refcount_bits" => value.parse().ok().map(|bits| opts.refcount_bits(bits)),
        "cluster_size" => value.parse().ok().map(|size| opts.cluster_size(size)),
        _ => None,
    }
}

fn not_modelled(img: &ImageSpec, key: &str, value: &str) -> Error {
    Error::Scenario(format!(
        "{}: image option {key}={value} is not modelled",
        img.name
    ))
}

/// A raw image as the harness makes it: every sector written (its
/// `sector-numbers` content), or by `qemu-img create`, which leaves a
/// sparse file whose first block file-posix's `allocate_first_block` wrote.
fn raw_bytes(img: &ImageSpec, size: u64) -> MemStorage {
    if !img.sector_numbers {
        let mut storage = MemStorage::new();
        let first_block = vec![0u8; size.min(4096) as usize];
        storage
            .set_len(size)
            .and_then(|()| storage.write_at(0, &first_block))
            .expect("a memory store takes any image size the harness makes");
        return storage;
    }
    let mut bytes = vec![0u8; size as usize];
    for (i, sector) in bytes.chunks_mut(512).enumerate() {
        sector[..4].copy_from_slice(&(i as u32).to_be_bytes());
        sector[508..].copy_from_slice(&(i as u32).to_be_bytes());
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
/// exploration ends many schedules on the same files. (A pure memo: the
/// answer only depends on the key.)
static INSPECTED: Memo<(String, u128), ImageRecord> = Memo::new();

/// What `qemu-img info`, `map` and `convert` say about `img` in `files`,
/// remembered by the files' contents (their chunk digests are cached, so
/// the key is cheap for files shared with earlier runs).
pub fn inspect_image(files: &MemFiles, img: &ImageSpec) -> ImageRecord {
    let mut key = Xxh3::new();
    key.update(format!("{img:?}").as_bytes());
    for (name, hash) in files.content_hashes() {
        key.update(name.as_bytes());
        key.update(&hash.0);
    }
    let key = (img.name.clone(), key.digest128());
    INSPECTED.get_or_compute(key, || inspect_uncached(files, img))
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
    let info = info_of(storage, img);
    rec.virtual_size = info.virtual_size;
    rec.backing_filename = info.backing_filename;
    rec.backing_filename_format = info.backing_filename_format;
    rec.corrupt = info.corrupt;
    rec.allocated = info.allocated;
    rec.info_error = info.info_error;
    match guest_sha256(files, img) {
        Ok(sha256) => rec.sha256 = Some(sha256),
        Err(GuestError::Open(e)) => {
            // qemu-img map and convert both open the backing chain.
            rec.allocated = None;
            rec.map_error = Some(e.clone());
            rec.convert_error = Some(e);
        }
        Err(GuestError::Read(e)) => rec.convert_error = Some(e),
    }
    rec
}

/// qemu-img's `img_open` of a scenario image (`-f` its format) in a
/// scratch block layer over `files`: the open path of `blockdev-add`, so
/// that whatever the header names (a `json:` tree of filters, a `backing`
/// override, a file to probe) opens as in QEMU. The error is what the
/// harness records of qemu-img's.
fn qemu_img_open(
    files: &MemFiles,
    img: &ImageSpec,
    chain: BackingChain,
) -> std::result::Result<(BlockLayer<MemFiles>, NodeId), String> {
    let mut layer = BlockLayer::new(files.clone(), 1);
    let node = layer
        .core_mut()
        .open_as_qemu_img(&img.name, Some(&img.format), chain)
        .map_err(|e| format!("qemu-img: Could not open '{}': {e}", img.name))?;
    Ok((layer, node))
}

/// What `qemu-img info` and `map` (depth 0) say of one file, by the spec
/// and the file's content: a pure memo, as they read that file alone.
static INFO: Memo<(String, [u8; 16]), ImageRecord> = Memo::new();

fn info_of(storage: &MemStorage, img: &ImageSpec) -> ImageRecord {
    let key = (format!("{img:?}"), storage.content_hash().0);
    INFO.get_or_compute(key, || info_uncached(storage, img))
}

/// `qemu-img info` opens the image without its backing chain: the file
/// alone is all it reads.
fn info_uncached(storage: &MemStorage, img: &ImageSpec) -> ImageRecord {
    let mut rec = ImageRecord::default();
    let mut alone = MemFiles::new();
    alone.insert(img.name.clone(), storage.clone());
    let (mut layer, node) = match qemu_img_open(&alone, img, BackingChain::NotOpened) {
        Ok(opened) => opened,
        Err(e) => {
            rec.info_error = Some(e);
            return rec;
        }
    };
    let core = layer.core_mut();
    if let Some(DriverState::Format { image, .. }) = core.driver_state(node) {
        rec.backing_filename = image.backing_file().map(str::to_string);
        rec.backing_filename_format = image.backing_format().map(str::to_string);
        // qemu-img info reports `corrupt` for version 3 images only.
        if let Image::Qcow2(q) = image {
            if q.header().version >= 3 {
                rec.corrupt = Some(q.header().incompatible_features & 2 != 0);
            }
        }
    }
    let Ok(size) = core.length(node) else {
        return rec;
    };
    rec.virtual_size = Some(size);
    rec.allocated = Some(depth0_data(core, node, size));
    rec
}

/// `qemu-img map` entries of depth 0 with data, merged: the node's own
/// block status (strata-block's `block_status`; for raw, where its file
/// holds data rather than holes).
fn depth0_data(core: &mut BlockCore<MemFiles>, node: NodeId, size: u64) -> Vec<[u64; 2]> {
    let mut ranges = Vec::new();
    let mut offset = 0;
    while offset < size {
        let Ok((kind, len)) = core.block_status(node, offset, size - offset) else {
            break;
        };
        if len == 0 {
            break;
        }
        if kind == ExtentKind::Data {
            push_merged(&mut ranges, offset, len);
        }
        offset += len;
    }
    ranges
}

fn push_merged(ranges: &mut Vec<[u64; 2]>, start: u64, len: u64) {
    match ranges.last_mut() {
        Some(last) if last[0] + last[1] >= start => last[1] = start + len - last[0],
        _ => ranges.push([start, len]),
    }
}

/// Why `qemu-img convert` (and `map`) gave no guest content, with the text
/// the harness records.
enum GuestError {
    /// The image or its backing chain did not open: map and convert fail.
    Open(String),
    /// A read failed: convert fails.
    Read(String),
}

/// sha256 digests of guest contents already hashed, by a XXH3-128 key of
/// the image's spec with the contents of every file its chain opens:
/// scenarios and schedules end with the same files again and again.
/// (A pure memo: a 128-bit collision between two keys of a run is not a
/// practical concern.)
static GUEST_SHA256: Memo<u128, String> = Memo::new();

/// The sha256 of the guest-visible bytes of an image opened with its
/// backing chain from the header (`qemu-img convert -O raw | sha256sum`).
fn guest_sha256(files: &MemFiles, img: &ImageSpec) -> std::result::Result<String, GuestError> {
    let mut guest = GuestReader::open(files, img)?;
    let files_key = guest.files_key(img);
    if let Some(sha) = GUEST_SHA256.get(&files_key) {
        return Ok(sha);
    }
    let sha = sha256_resuming(&mut guest)?;
    GUEST_SHA256.insert(files_key, sha.clone());
    Ok(sha)
}

/// SHA-256 states after a prefix of some guest content, by the prefix's
/// key: XXH3-128 over each 64 KiB block's length and digest up to there,
/// all-zero blocks digesting to zero, so the key of the whole content does
/// not depend on how the chain stores it. Contents of a run mostly differ
/// in a few blocks, and the same content ends many schedules over
/// different files (a stream or commit does not change what the guest
/// sees); SHA-256 costs ten times what XXH3 does, so a block is hashed
/// only where its prefix is new.
static SHA256_AFTER_PREFIX: Memo<u128, Sha256> = Memo::new();

/// The guest content's sha256 in one pass over it: at each block, the
/// state after the prefix ending there is taken from the memo when known
/// and computed from the previous one otherwise. (Every prefix of a
/// content hashed before is known, so the blocks hashed are those after
/// the longest known prefix.)
fn sha256_resuming(guest: &mut GuestReader) -> std::result::Result<String, GuestError> {
    let mut key = Xxh3::new();
    let mut sha = Sha256::new();
    let mut states = Vec::new();
    guest.for_each_block(|block| {
        let digest = if block.any_read {
            block_digest(block.bytes)
        } else {
            0
        };
        key.update(&(block.bytes.len() as u64).to_le_bytes());
        key.update(&digest.to_le_bytes());
        let prefix = key.digest128();
        match SHA256_AFTER_PREFIX.get(&prefix) {
            Some(known) => sha = known,
            None => {
                sha.update(block.bytes);
                states.push((prefix, sha.clone()));
            }
        }
    })?;
    for (prefix, state) in states {
        SHA256_AFTER_PREFIX.insert(prefix, state);
    }
    Ok(hex(&sha.finalize()))
}

/// An image opened read-only with its backing chain from the header, as
/// `qemu-img convert` opens it.
struct GuestReader {
    layer: BlockLayer<MemFiles>,
    node: NodeId,
}

impl GuestReader {
    fn open(files: &MemFiles, img: &ImageSpec) -> std::result::Result<GuestReader, GuestError> {
        let (layer, node) =
            qemu_img_open(files, img, BackingChain::FromHeader).map_err(GuestError::Open)?;
        Ok(GuestReader { layer, node })
    }

    /// What the guest content is a function of: the spec and the bytes of
    /// every file the chain opened.
    fn files_key(&self, img: &ImageSpec) -> u128 {
        let core = self.layer.core();
        let mut key = Xxh3::new();
        key.update(format!("{img:?}").as_bytes());
        for node in core.graph().graph().nodes() {
            if let Some(DriverState::File { path }) = core.driver_state(node) {
                let content = core.files().get(path).map(MemStorage::content_hash);
                key.update(path.as_bytes());
                key.update(&content.map_or([0; 16], |c| c.0));
            }
        }
        key.digest128()
    }

    /// The guest-visible bytes in order, a 64 KiB block at a time, read
    /// the way `qemu-img convert` reads them: request by request, whole,
    /// those the chain maps to zeroes skipped. A failed read is reported at
    /// the start of its request, as QEMU does.
    fn for_each_block(
        &mut self,
        mut consume: impl FnMut(GuestBlock<'_>),
    ) -> std::result::Result<(), GuestError> {
        let requests = self.convert_requests()?;
        let core = self.layer.core_mut();
        let len = requests.last().map_or(0, |r| r.offset + r.len);
        let mut blocks = BlockAssembler::new(len);
        let mut data = Vec::new();
        for req in &requests {
            if req.reads {
                data.resize(req.len as usize, 0);
                core.read(self.node, req.offset, &mut data)
                    .map_err(|e| read_error(req.offset, &e))?;
                blocks.push_read(&data, &mut consume);
            } else {
                blocks.push_skipped(req.len, &mut consume);
            }
        }
        Ok(())
    }

    /// `qemu-img convert`'s read requests over the whole guest content
    /// (`convert_iteration_sectors`, in 512-byte sectors): a block status
    /// run of the whole chain (`bdrv_block_status_above` with `want_zero`),
    /// cut back to end on the source's alignment (`src_alignment`: its
    /// cluster size) when it crosses a boundary of it, and a run to read
    /// cut into requests of its 2 MiB buffer.
    fn convert_requests(&mut self) -> std::result::Result<Vec<ConvertRequest>, GuestError> {
        let core = self.layer.core_mut();
        let len = core.length(self.node).map_err(|e| read_error(0, &e))?;
        let alignment = source_alignment(core, self.node);
        let total = len.div_ceil(SECTOR);
        let mut requests = Vec::new();
        let (mut sector, mut next_status, mut reads) = (0, 0, true);
        while sector < total {
            let mut n = total - sector;
            if next_status <= sector {
                let offset = sector * SECTOR;
                let (zero, run) = core
                    .zero_status_above(self.node, offset, len - offset)
                    .map_err(|e| read_error(offset, &e))?;
                n = run.div_ceil(SECTOR).max(1);
                let tail = (sector + n) % alignment;
                if n > tail {
                    n -= tail;
                }
                reads = !zero;
                next_status = sector + n;
            }
            n = n.min(next_status - sector);
            if reads {
                n = n.min(CONVERT_BUF_SECTORS);
            }
            let offset = sector * SECTOR;
            requests.push(ConvertRequest {
                offset,
                len: (n * SECTOR).min(len - offset),
                reads,
            });
            sector += n;
        }
        Ok(requests)
    }
}

/// One request of `qemu-img convert`: a stretch the chain maps to zeroes
/// is skipped, any other is read (unallocated over a raw bottom included).
struct ConvertRequest {
    offset: u64,
    len: u64,
    reads: bool,
}

/// A 64 KiB block of guest content (the last one maybe shorter).
struct GuestBlock<'a> {
    bytes: &'a [u8],
    /// Whether any of it was read: if not, it is zeroes by the chain's map.
    any_read: bool,
}

/// Cuts the bytes of consecutive requests into 64 KiB blocks.
struct BlockAssembler {
    index: usize,
    len: u64,
    block: Vec<u8>,
    filled: usize,
    read_any: bool,
}

impl BlockAssembler {
    fn new(len: u64) -> BlockAssembler {
        BlockAssembler {
            index: 0,
            len,
            block: vec![0; BLOCK.min(len) as usize],
            filled: 0,
            read_any: false,
        }
    }

    /// Bytes of a request read.
    fn push_read(&mut self, mut data: &[u8], consume: &mut impl FnMut(GuestBlock<'_>)) {
        while !data.is_empty() {
            let take = self.room().min(data.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.read_any = true;
            data = &data[take..];
            self.advance(take, consume);
        }
    }

    /// `len` bytes of a skipped request: zeroes.
    fn push_skipped(&mut self, mut len: u64, consume: &mut impl FnMut(GuestBlock<'_>)) {
        while len > 0 {
            let take = self.room().min(len as usize);
            self.block[self.filled..self.filled + take].fill(0);
            len -= take as u64;
            self.advance(take, consume);
        }
    }

    /// Bytes the current block still takes.
    fn room(&self) -> usize {
        BLOCK.min(self.len - self.index as u64 * BLOCK) as usize - self.filled
    }

    fn advance(&mut self, taken: usize, consume: &mut impl FnMut(GuestBlock<'_>)) {
        self.filled += taken;
        if self.room() > 0 {
            return;
        }
        let block = GuestBlock {
            bytes: &self.block[..self.filled],
            any_read: self.read_any,
        };
        consume(block);
        self.index += 1;
        self.filled = 0;
        self.read_any = false;
    }
}

/// `src_alignment` of `qemu-img convert`, in sectors: the source's request
/// alignment (one sector for a file opened without O_DIRECT) or, larger,
/// the cluster size `bdrv_get_info` gives (qcow2's; raw has none).
fn source_alignment(core: &BlockCore<MemFiles>, node: NodeId) -> u64 {
    match core.driver_state(node) {
        Some(DriverState::Format { image, .. }) => {
            image.cluster_size().map_or(1, |c| (c / SECTOR).max(1))
        }
        _ => 1,
    }
}

/// `qemu-img convert`'s report of a failed read: the start of the request
/// that failed.
fn read_error(offset: u64, err: &std::io::Error) -> GuestError {
    GuestError::Read(format!(
        "qemu-img: error while reading at byte {offset}: {}",
        strerror(err.raw_os_error().unwrap_or(5))
    ))
}

/// Bytes the guest content is keyed and hashed by at a time (64 KiB: below
/// malloc's mmap threshold, so no page faults per buffer).
const BLOCK: u64 = 64 * 1024;

const SECTOR: u64 = 512;

/// Sectors of one request to read at most: qemu-img convert's buffer
/// (`IO_BUF_SIZE`, 2 MiB; a raw file target's optimal transfer and discard
/// alignment do not raise it).
const CONVERT_BUF_SECTORS: u64 = 2 * 1024 * 1024 / SECTOR;

/// A block's digest for [`GuestReader::prefix_keys`]: zero for all-zero
/// bytes, so that zeroes read and zeroes known from the map key alike.
fn block_digest(block: &[u8]) -> u128 {
    if block.iter().all(|&b| b == 0) {
        0
    } else {
        xxh3_128(block)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Drops every memo of this module (image sets, inspections, guest
/// digests, checks), so that a benchmark can measure runs that start cold.
pub fn forget_memos() {
    CREATED.clear();
    INSPECTED.clear();
    INFO.clear();
    GUEST_SHA256.clear();
    SHA256_AFTER_PREFIX.clear();
    CHECKED.clear();
}

/// Every qcow2 image's `check` at the end of a run: the names of images
/// that are not clean, with the report.
pub fn unclean_images(files: &MemFiles) -> Vec<String> {
    files
        .iter()
        .filter_map(|(name, storage)| {
            check_report(storage).map(|report| format!("{name}: {report}"))
        })
        .collect()
}

/// Reports of `check` by file content, `None` for a clean image or a file
/// that is not qcow2 (a pure memo: `check` reads that file alone).
static CHECKED: Memo<[u8; 16], Option<String>> = Memo::new();

fn check_report(storage: &MemStorage) -> Option<String> {
    CHECKED.get_or_compute(storage.content_hash().0, || check_uncached(storage))
}

fn check_uncached(storage: &MemStorage) -> Option<String> {
    let mut storage = storage.clone();
    let Ok(Image::Qcow2(mut q)) = Image::open(&mut storage, None, Access::ReadOnly) else {
        return None;
    };
    match q.check(&mut storage) {
        Ok(report) if report.is_clean() => None,
        Ok(report) => Some(format!("{report:?}")),
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_formats::Storage;

    fn qcow2_with_data() -> MemStorage {
        let spec = ImageSpec {
            name: "t.img".into(),
            format: "qcow2".into(),
            size: Some(1 << 20),
            cluster_size: None,
            options: Vec::new(),
            backing: None,
            sector_numbers: false,
            writes: vec![crate::scenario::ImageWrite {
                pattern: 7,
                offset: 0,
                length: 65536,
                zero: false,
            }],
            no_inspect: false,
        };
        let files = create_images(&[spec]).expect("create");
        files.get("t.img").expect("made").clone()
    }

    #[test]
    fn a_clean_image_has_no_check_report() {
        let mut files = MemFiles::new();
        files.insert("t.img", qcow2_with_data());
        assert_eq!(unclean_images(&files), Vec::<String>::new());
    }

    #[test]
    fn a_leaked_cluster_is_reported_by_name() {
        let mut storage = qcow2_with_data();
        // One more cluster with a refcount but no reference: a leak.
        let Ok(Image::Qcow2(q)) = Image::open(&mut storage, None, Access::ReadOnly) else {
            panic!("qcow2");
        };
        let reftable = q.header().refcount_table_offset;
        let mut entry = [0u8; 8];
        storage.read_at(reftable, &mut entry).expect("read");
        let block = u64::from_be_bytes(entry);
        let len = storage.size();
        let cluster = len / 65536;
        storage
            .write_at(block + cluster * 2, &1u16.to_be_bytes())
            .expect("write");
        storage.write_at(len, &[0u8; 65536]).expect("grow");
        let mut files = MemFiles::new();
        files.insert("t.img", storage);
        let bad = unclean_images(&files);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].starts_with("t.img: "), "{bad:?}");
    }
}
