//! The block layer driven the way the conformance scenarios drive
//! qemu-storage-daemon: images made like `qemu-img create` + `qemu-io
//! write`, a `blockdev-add`, a job, and the graph, events and image
//! contents afterwards compared with what QEMU 10.0.2 produced.

mod commit;
mod filters;
mod reopen;
mod stream;

use strata_block::{BlockLayer, MemFiles};

const MIB: u64 = 1 << 20;
use strata_formats::{CreateOptions, MemStorage, Qcow2};
use strata_graph::{NodeId, OptValue, Options};

/// One image of a scenario, like the harness's `images` entries.
pub struct Img {
    pub name: &'static str,
    pub raw: bool,
    pub size: u64,
    pub backing: Option<(&'static str, &'static str)>,
    pub sector_numbers: bool,
    pub writes: Vec<(u8, u64, u64)>,
}

impl Img {
    pub fn qcow2(name: &'static str, size: u64) -> Img {
        Img {
            name,
            raw: false,
            size,
            backing: None,
            sector_numbers: false,
            writes: Vec::new(),
        }
    }
    pub fn raw(name: &'static str, size: u64) -> Img {
        Img {
            raw: true,
            ..Img::qcow2(name, size)
        }
    }
    pub fn on(mut self, backing: &'static str, format: &'static str) -> Img {
        self.backing = Some((backing, format));
        self
    }
    pub fn sector_numbers(mut self) -> Img {
        self.sector_numbers = true;
        self
    }
    pub fn write(mut self, pattern: u8, offset: u64, len: u64) -> Img {
        self.writes.push((pattern, offset, len));
        self
    }
}

pub fn s(v: &str) -> OptValue {
    OptValue::Str(v.to_string())
}

/// `{"driver": fmt, "file": {"driver": "file", "filename": file}}`.
pub fn image_opts(fmt: &str, file: &str) -> Options {
    Options::new().with("driver", s(fmt)).with(
        "file",
        OptValue::Dict(
            Options::new()
                .with("driver", s("file"))
                .with("filename", s(file)),
        ),
    )
}

/// The options of a nested `blockdev-add` of a chain, bottom first: each
/// layer `(format, file, node name)` has the one before it as backing.
pub fn nested_chain(layers: &[(&str, &str, &str)]) -> Options {
    let mut below: Option<Options> = None;
    for &(fmt, file, name) in layers {
        let mut opts = image_opts(fmt, file).with("node-name", s(name));
        if let Some(backing) = below.take() {
            opts.put("backing", OptValue::Dict(backing));
        }
        below = Some(opts);
    }
    below.expect("at least one layer")
}

/// `n0`..`n<last>` on `c0.img`..`c<last>.img`, all qcow2 (the thread-b
/// and frozen-link scenarios' chain).
pub fn numbered_chain(last: usize) -> Options {
    let names: Vec<(String, String)> = (0..=last)
        .map(|i| (format!("c{i}.img"), format!("n{i}")))
        .collect();
    let layers: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|(f, n)| ("qcow2", f.as_str(), n.as_str()))
        .collect();
    nested_chain(&layers)
}

/// Creates the images in memory, in order, writing through the block layer
/// itself (with each image's backing chain opened from its header, as
/// qemu-io does).
pub fn make_files(images: &[Img]) -> MemFiles {
    let mut files = MemFiles::new();
    for img in images {
        let storage = if img.raw {
            let mut bytes = vec![0u8; img.size as usize];
            if img.sector_numbers {
                for (i, sector) in bytes.chunks_mut(512).enumerate() {
                    sector[..4].copy_from_slice(&(i as u32).to_be_bytes());
                    sector[508..].copy_from_slice(&(i as u32).to_be_bytes());
                }
            }
            MemStorage::from_bytes(&bytes)
        } else {
            let mut storage = MemStorage::new();
            let mut opts = CreateOptions::new(img.size);
            if let Some((file, fmt)) = img.backing {
                opts = opts.backing(file, Some(fmt));
            }
            Qcow2::create(&mut storage, &opts).expect("create qcow2");
            storage
        };
        files.insert(img.name, storage);
        if img.writes.is_empty() {
            continue;
        }
        let mut writer = BlockLayer::new(files.clone(), 0);
        let fmt = if img.raw { "raw" } else { "qcow2" };
        let node = writer
            .blockdev_add(&image_opts(fmt, img.name).with("node-name", s("w")))
            .expect("open for writing");
        for &(pattern, offset, len) in &img.writes {
            writer
                .core_mut()
                .write(node, offset, &vec![pattern; len as usize])
                .expect("write");
        }
        files.insert(
            img.name,
            writer
                .core()
                .files()
                .get(img.name)
                .expect("written")
                .clone(),
        );
    }
    files
}

/// Guest-visible content of `node`.
pub fn content(layer: &mut BlockLayer<MemFiles>, node: NodeId) -> Vec<u8> {
    let len = layer.core_mut().length(node).expect("length");
    let mut buf = vec![0u8; len as usize];
    layer.core_mut().read(node, 0, &mut buf).expect("read");
    buf
}

/// Guest-visible content of an image file, opened alone with its backing
/// chain from the header (what `qemu-img convert` sees).
pub fn file_content(files: &MemFiles, name: &str, fmt: &str) -> Vec<u8> {
    let mut reader = BlockLayer::new(files.clone(), 1);
    let node = reader
        .blockdev_add(&image_opts(fmt, name).with("node-name", s("r")))
        .expect("open");
    content(&mut reader, node)
}

/// The nine-image chain of 030 TestParallelOps as the conformance
/// scenarios build it: 4 MiB images, 030's writes scaled by 1/4.
pub fn parallel_layer() -> BlockLayer<MemFiles> {
    parallel_layer_with_writable(None)
}

/// The same chain, with node `writable` opened read-write explicitly.
pub fn parallel_layer_with_writable(writable: Option<u32>) -> BlockLayer<MemFiles> {
    let q = MIB / 4;
    let files = make_files(&[
        Img::raw("img-0.img", 4 * MIB).sector_numbers(),
        Img::qcow2("img-1.img", 4 * MIB)
            .on("img-0.img", "raw")
            .write(0xff, 12 * q, 4 * q),
        Img::qcow2("img-2.img", 4 * MIB).on("img-1.img", "qcow2"),
        Img::qcow2("img-3.img", 4 * MIB)
            .on("img-2.img", "qcow2")
            .write(0xff, 8 * q, 2 * q),
        Img::qcow2("img-4.img", 4 * MIB).on("img-3.img", "qcow2"),
        Img::qcow2("img-5.img", 4 * MIB)
            .on("img-4.img", "qcow2")
            .write(0xff, 4 * q, 4 * q),
        Img::qcow2("img-6.img", 4 * MIB).on("img-5.img", "qcow2"),
        Img::qcow2("img-7.img", 4 * MIB)
            .on("img-6.img", "qcow2")
            .write(0xff, 0, 2 * q),
        Img::qcow2("img-8.img", 4 * MIB).on("img-7.img", "qcow2"),
    ]);
    let mut layer = BlockLayer::new(files, 11);
    let mut opts = image_opts("raw", "img-0.img").with("node-name", s("node0"));
    for i in 1..=8 {
        let file = format!("img-{i}.img");
        opts = image_opts("qcow2", &file)
            .with("node-name", s(&format!("node{i}")))
            .with("backing", OptValue::Dict(opts));
        if writable == Some(i) {
            opts.put("read-only", OptValue::Bool(false));
        }
    }
    layer.blockdev_add(&opts).expect("chain");
    layer
}
