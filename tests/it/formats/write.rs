//! Images created and written by Strata, checked by qemu-img.

use super::*;
use strata_formats::{Chain, Compat, CreateOptions, Error, ExtentKind, Layer, Qcow2, ZeroWrite};

/// One guest operation, applied to a Strata image and to a byte model.
#[derive(Clone, Copy, Debug)]
enum Op {
    Write {
        offset: u64,
        len: u64,
        seed: u8,
    },
    Zeroes {
        offset: u64,
        len: u64,
        zero_write: ZeroWrite,
    },
}

impl Op {
    fn apply(self, image: &mut Qcow2, st: &mut dyn Storage, model: &mut [u8]) {
        match self {
            Op::Write { offset, len, seed } => {
                let data = pattern(seed, len as usize);
                image
                    .write(st, offset, &data, None)
                    .unwrap_or_else(|e| panic!("{self:?}: {e}"));
                model[offset as usize..(offset + len) as usize].copy_from_slice(&data);
            }
            Op::Zeroes {
                offset,
                len,
                zero_write,
            } => {
                image
                    .write_zeroes(st, offset, len, zero_write, None)
                    .unwrap_or_else(|e| panic!("{self:?}: {e}"));
                model[offset as usize..(offset + len) as usize].fill(0);
            }
        }
    }
}

/// Writes that cross clusters and L2 tables, hit zero clusters, unmap and
/// overwrite, scaled to an image of `size` bytes.
fn ops(size: u64) -> Vec<Op> {
    let m = 1 << 20;
    let clamp =
        |offset: u64, len: u64| (offset.min(size - 1), len.min(size - offset.min(size - 1)));
    let ops = vec![
        Op::Write {
            offset: 0,
            len: 4096,
            seed: 1,
        },
        Op::Write {
            offset: size / 2 - 700,
            len: 5000,
            seed: 2,
        },
        Op::Write {
            offset: m,
            len: m + 3,
            seed: 3,
        },
        Op::Zeroes {
            offset: m + 64 * 1024,
            len: 256 * 1024,
            zero_write: ZeroWrite::MayUnmap,
        },
        Op::Zeroes {
            offset: 3 * m,
            len: 2 * m,
            zero_write: ZeroWrite::KeepAllocated,
        },
        Op::Write {
            offset: 3 * m + 100,
            len: 100,
            seed: 4,
        },
        Op::Write {
            offset: size - 10,
            len: 10,
            seed: 5,
        },
        Op::Zeroes {
            offset: 0,
            len: 1000,
            zero_write: ZeroWrite::MayUnmap,
        },
        Op::Write {
            offset: 0,
            len: 8192,
            seed: 6,
        },
        Op::Zeroes {
            offset: size - 4 * m,
            len: 4 * m,
            zero_write: ZeroWrite::MayUnmap,
        },
        Op::Write {
            offset: size - 3 * m,
            len: 600_000,
            seed: 7,
        },
    ];
    // Small images get the same operations, cut at their end.
    ops.into_iter()
        .map(|op| match op {
            Op::Write { offset, len, seed } => {
                let (offset, len) = clamp(offset, len);
                Op::Write { offset, len, seed }
            }
            Op::Zeroes {
                offset,
                len,
                zero_write,
            } => {
                let (offset, len) = clamp(offset, len);
                Op::Zeroes {
                    offset,
                    len,
                    zero_write,
                }
            }
        })
        .collect()
}

/// (compat, cluster size, refcount bits, size)
const CONFIGS: &[(Compat, u64, u32, u64)] = &[
    (Compat::V2, 65536, 16, 8 << 20),
    (Compat::V3, 512, 1, 8 << 20),
    (Compat::V3, 512, 64, 8 << 20),
    (Compat::V3, 4096, 2, 8 << 20),
    (Compat::V3, 65536, 64, 8 << 20),
    (Compat::V3, 2 << 20, 16, 16 << 20),
    // Sizes that end inside a cluster.
    (Compat::V3, 65536, 16, 5_000_192),
    (Compat::V2, 512, 16, 5_000_192),
];

/// Creates and writes an image through Strata on `backend`, leaving it at
/// `path`. Returns the guest bytes it should hold.
fn strata_image(path: &Path, backend: Backend, opts: &CreateOptions, ops: &[Op]) -> Vec<u8> {
    let mut model = vec![0u8; opts.size as usize];
    match backend {
        Backend::File => {
            let mut st = FileStorage::create(path).unwrap();
            let mut q = Qcow2::create(&mut st, opts).unwrap();
            ops.iter()
                .for_each(|op| op.apply(&mut q, &mut st, &mut model));
            q.flush(&mut st).unwrap();
        }
        Backend::Memory => {
            let mut st = MemStorage::new();
            let mut q = Qcow2::create(&mut st, opts).unwrap();
            ops.iter()
                .for_each(|op| op.apply(&mut q, &mut st, &mut model));
            save(&st, path);
        }
    }
    model
}

#[test]
fn strata_written_images_pass_qemu_img_check_and_read_back() {
    let scratch = Scratch::new("write");
    for &(compat, cluster_size, refcount_bits, size) in CONFIGS {
        for backend in BACKENDS {
            let name = format!("{compat:?}-{cluster_size}-{refcount_bits}-{backend:?}");
            let path = scratch.path(&format!("{name}.qcow2"));
            let opts = CreateOptions::new(size)
                .compat(compat)
                .cluster_size(cluster_size)
                .refcount_bits(refcount_bits);
            let model = strata_image(&path, backend, &opts, &ops(size));
            assert_qemu_check_clean(&path);
            assert!(
                qemu_raw(&path) == model,
                "{name}: qemu reads other bytes than were written"
            );
            let mut st = open_storage(&path, backend, Access::ReadOnly);
            let mut image = Image::open(&mut st, None, Access::ReadOnly).unwrap();
            assert_eq!(
                strata_map(&mut image, &mut st),
                qemu_map(&path),
                "{name}: map"
            );
            let mut back = vec![0u8; size as usize];
            image.read(&mut st, 0, &mut back, None).unwrap();
            assert!(
                back == model,
                "{name}: Strata reads other bytes after reopen"
            );
            assert!(image.check(&mut st).unwrap().is_clean(), "{name}");
        }
    }
}

#[test]
fn v3_zero_writes_make_zero_clusters_like_qemu_io() {
    let scratch = Scratch::new("zero");
    let ours = scratch.path("ours.qcow2");
    let theirs = scratch.path("theirs.qcow2");
    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", p(&theirs), "4M"],
    );
    qemu_io(
        &theirs,
        &[
            "write -P 1 0 1M",
            "write -z 64k 128k",
            "write -z -u 512k 64k",
            "write -z 2M 100k",
            "write -z 3M 1k",
        ],
    );
    let mut st = FileStorage::create(&ours).unwrap();
    let mut q = Qcow2::create(&mut st, &CreateOptions::new(4 << 20)).unwrap();
    q.write(&mut st, 0, &[1; 1 << 20], None).unwrap();
    q.write_zeroes(&mut st, 64 << 10, 128 << 10, ZeroWrite::KeepAllocated, None)
        .unwrap();
    q.write_zeroes(&mut st, 512 << 10, 64 << 10, ZeroWrite::MayUnmap, None)
        .unwrap();
    q.write_zeroes(&mut st, 2 << 20, 100 << 10, ZeroWrite::KeepAllocated, None)
        .unwrap();
    q.write_zeroes(&mut st, 3 << 20, 1 << 10, ZeroWrite::KeepAllocated, None)
        .unwrap();
    assert_eq!(qemu_map(&ours), qemu_map(&theirs));
    assert_eq!(qemu_raw(&ours), qemu_raw(&theirs));
    assert_qemu_check_clean(&ours);
}

/// qemu-io 10.0.2: `write -z` on a v2 image without a backing file
/// discards (`qcow2_subcluster_zeroize` has no zero flag there): whole
/// clusters become unallocated, and so does a partly covered one whose
/// other bytes read as zero; a partly covered data cluster gets zero bytes.
#[test]
fn v2_zero_writes_without_backing_discard_like_qemu_io() {
    let scratch = Scratch::new("zero-v2");
    let ours = scratch.path("ours.qcow2");
    let theirs = scratch.path("theirs.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "compat=0.10",
            p(&theirs),
            "4M",
        ],
    );
    qemu_io(
        &theirs,
        &[
            "write -P 1 0 64k",
            "write -z 60k 8k",
            "write -z 128k 64k",
            "write -z 300k 1k",
            "write -P 2 1M 128k",
            "write -z 1M 64k",
        ],
    );
    let mut st = FileStorage::create(&ours).unwrap();
    let opts = CreateOptions::new(4 << 20).compat(Compat::V2);
    let mut q = Qcow2::create(&mut st, &opts).unwrap();
    let keep = ZeroWrite::KeepAllocated;
    q.write(&mut st, 0, &[1; 64 << 10], None).unwrap();
    q.write_zeroes(&mut st, 60 << 10, 8 << 10, keep, None)
        .unwrap();
    q.write_zeroes(&mut st, 128 << 10, 64 << 10, keep, None)
        .unwrap();
    q.write_zeroes(&mut st, 300 << 10, 1 << 10, keep, None)
        .unwrap();
    q.write(&mut st, 1 << 20, &[2; 128 << 10], None).unwrap();
    q.write_zeroes(&mut st, 1 << 20, 64 << 10, keep, None)
        .unwrap();
    assert_eq!(qemu_map(&ours), qemu_map(&theirs));
    assert_eq!(qemu_raw(&ours), qemu_raw(&theirs));
    assert_qemu_check_clean(&ours);
}

/// A raw image's file holds data in 4 KiB blocks (ext4), as file-posix
/// reports them: `qemu-img create` writes the first block, a write (zeroes
/// too) allocates the blocks it touches, `write -z` (`FALLOC_FL_ZERO_RANGE`)
/// makes the blocks it covers whole holes again. (Not modelled: ext4 keeps
/// a zeroed block that was already on disk as data while the file has
/// dirty pages, so qemu-io's `write -z 0 4k` after other writes of the
/// same run leaves qemu-img create's first block data; the model, and
/// strata-qsd, which syncs before zeroing, make it a hole.)
#[test]
fn raw_files_hold_data_where_qemu_io_leaves_it() {
    let scratch = Scratch::new("raw-holes");
    let ours = scratch.path("ours.raw");
    let theirs = scratch.path("theirs.raw");
    for path in [&ours, &theirs] {
        run("qemu-img", &["create", "-q", "-f", "raw", p(path), "1M"]);
    }
    let cmds = [
        "write -P 0 300k 1k",
        "write -P 1 600k 8k",
        "write -z 600k 4k",
        "write -P 1 700k 8k",
        "write -z 701k 4k",
        "write -z 500k 1k",
    ];
    let mut args = vec!["-f", "raw"];
    cmds.iter().for_each(|c| args.extend(["-c", c]));
    args.push(p(&theirs));
    run("qemu-io", &args);
    let mut file = FileStorage::open(&ours, Access::ReadWrite).unwrap();
    let mut mem = MemStorage::new();
    mem.set_len(1 << 20).unwrap();
    mem.write_at(0, &[0; 4096]).unwrap();
    let stores: [&mut dyn Storage; 2] = [&mut file, &mut mem];
    let mut maps = Vec::new();
    for st in stores {
        let mut raw =
            Image::open(st, Some(strata_formats::Format::Raw), Access::ReadWrite).unwrap();
        let k = 1024;
        raw.write(st, 300 * k, &[0; 1024], None).unwrap();
        raw.write(st, 600 * k, &[1; 8192], None).unwrap();
        raw.write_zeroes(st, 600 * k, 4 * k, ZeroWrite::KeepAllocated, None)
            .unwrap();
        raw.write(st, 700 * k, &[1; 8192], None).unwrap();
        raw.write_zeroes(st, 701 * k, 4 * k, ZeroWrite::KeepAllocated, None)
            .unwrap();
        raw.write_zeroes(st, 500 * k, k, ZeroWrite::KeepAllocated, None)
            .unwrap();
        maps.push(strata_map(&mut raw, st));
    }
    let expected = qemu_map(&theirs);
    assert_eq!(qemu_map(&ours), expected, "the real file, through qemu-img");
    assert_eq!(maps[0], expected, "the real file, through Strata");
    assert_eq!(maps[1], expected, "memory");
    assert_eq!(std::fs::read(&ours).unwrap(), mem.to_vec());
}

#[test]
fn empty_images_are_byte_identical_to_qemu_img_create() {
    let scratch = Scratch::new("create");
    let cases: &[(&str, CreateOptions)] = &[
        ("-o compat=1.1", CreateOptions::new(1 << 30)),
        (
            "-o compat=0.10",
            CreateOptions::new(1 << 30).compat(Compat::V2),
        ),
        (
            "-o cluster_size=2M,refcount_bits=1",
            CreateOptions::new(10 << 30)
                .cluster_size(2 << 20)
                .refcount_bits(1),
        ),
        (
            "-b base.qcow2 -F qcow2",
            CreateOptions::new(64 << 20).backing("base.qcow2", Some("qcow2")),
        ),
        (
            "-o compat=0.10 -b b.raw -F raw",
            CreateOptions::new(1000)
                .compat(Compat::V2)
                .backing("b.raw", Some("raw")),
        ),
    ];
    for (i, (args, opts)) in cases.iter().enumerate() {
        let theirs = scratch.path(&format!("theirs{i}.qcow2"));
        let mut argv = vec!["create", "-q", "-f", "qcow2", "-u"];
        argv.extend(args.split(' '));
        argv.push(p(&theirs));
        let size = opts.size.to_string();
        argv.push(&size);
        run("qemu-img", &argv);
        let mut st = MemStorage::new();
        Qcow2::create(&mut st, opts).unwrap();
        assert!(
            st.to_vec() == std::fs::read(&theirs).unwrap(),
            "qemu-img create {args}: bytes differ"
        );
    }
}

#[test]
fn refcount_table_growth_and_many_refcount_blocks_pass_qemu_check() {
    let scratch = Scratch::new("grow");
    // (refcount bits, cluster size, whether 24 MiB outgrow a one-cluster table)
    for (refcount_bits, cluster_size, grows) in [(64, 512, true), (16, 512, true), (1, 1024, false)]
    {
        let path = scratch.path(&format!("grow-{refcount_bits}.qcow2"));
        let size = 24 << 20;
        let opts = CreateOptions::new(size)
            .cluster_size(cluster_size)
            .refcount_bits(refcount_bits);
        let ops: Vec<Op> = (0..24)
            .map(|i| Op::Write {
                offset: i * (1 << 20) + 333,
                len: (1 << 20) - 333,
                seed: i as u8,
            })
            .collect();
        let model = strata_image(&path, Backend::Memory, &opts, &ops);
        let mut st = MemStorage::from_bytes(&std::fs::read(&path).unwrap());
        let q = Qcow2::open(&mut st, Access::ReadOnly).unwrap();
        assert_eq!(
            q.header().refcount_table_clusters > 1,
            grows,
            "{:?}",
            q.header()
        );
        assert_qemu_check_clean(&path);
        assert!(qemu_raw(&path) == model, "refcount_bits={refcount_bits}");
    }
}

/// A qemu-made base with data everywhere and a qemu-made middle with a
/// quarter, under a Strata-made top.
fn chain_for_jobs(scratch: &Scratch, backend: Backend) -> (Chain<Box<dyn Storage>>, Vec<u8>) {
    let base = scratch.path("base.qcow2");
    let mid = scratch.path("mid.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", p(&base), "8M"]);
    qemu_io(&base, &["write -P 1 0 8M"]);
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            p(&mid),
        ],
    );
    qemu_io(
        &mid,
        &["write -P 2 1M 1M", "write -z 4M 1M", "write -P 3 6500k 10k"],
    );
    let top = scratch.path("top.qcow2");
    let mut st = FileStorage::create(&top).unwrap();
    Qcow2::create(
        &mut st,
        &CreateOptions::new(8 << 20).backing("mid.qcow2", Some("qcow2")),
    )
    .unwrap();
    let want = qemu_raw(&top);
    let layers = ["top.qcow2", "mid.qcow2", "base.qcow2"]
        .iter()
        .map(|n| {
            let mut storage = open_storage(&scratch.path(n), backend, Access::ReadWrite);
            let image = Image::open(&mut storage, None, Access::ReadWrite).unwrap();
            Layer { image, storage }
        })
        .collect();
    (Chain { layers }, want)
}

fn write_back(scratch: &Scratch, chain: &mut Chain<Box<dyn Storage>>, backend: Backend) {
    if backend == Backend::Memory {
        // Memory layers are copies: put their bytes back for qemu-img.
        for (layer, name) in chain
            .layers
            .iter_mut()
            .zip(["top.qcow2", "mid.qcow2", "base.qcow2"])
        {
            let len = layer.storage.len().unwrap();
            let mut bytes = vec![0u8; len as usize];
            layer.storage.read_at(0, &mut bytes).unwrap();
            std::fs::write(scratch.path(name), bytes).unwrap();
        }
    }
}

#[test]
fn stream_and_commit_through_the_api_match_qemu() {
    for backend in BACKENDS {
        // Stream: copy everything allocated below the top into the top, then
        // drop the backing file.
        let scratch = Scratch::new("stream");
        let (mut chain, want) = chain_for_jobs(&scratch, backend);
        let size = chain.layers[0].image.virtual_size();
        let mut buf = vec![0u8; 1 << 20];
        for offset in (0..size).step_by(buf.len()) {
            chain.read(0, offset, &mut buf).unwrap();
            chain.write(0, offset, &buf).unwrap();
        }
        let top = &mut chain.layers[0];
        top.image
            .change_backing_file(&mut top.storage, None, None)
            .unwrap();
        chain.flush().unwrap();
        write_back(&scratch, &mut chain, backend);
        let top_path = scratch.path("top.qcow2");
        assert_qemu_check_clean(&top_path);
        assert!(
            qemu_raw(&top_path) == want,
            "{backend:?}: streamed top differs"
        );
        assert!(!run("qemu-img", &["info", p(&top_path)]).contains("backing file"));

        // Commit mid into base: data copied, zero clusters written as zeroes,
        // the top pointed at the base.
        let scratch = Scratch::new("commit");
        let (mut chain, want) = chain_for_jobs(&scratch, backend);
        let mut pos = 0;
        while pos < size {
            let mid = &mut chain.layers[1];
            let e = mid
                .image
                .block_status(&mut mid.storage, pos, size - pos)
                .unwrap();
            match e.kind {
                ExtentKind::Data => {
                    let mut data = vec![0u8; e.len as usize];
                    chain.read(1, e.offset, &mut data).unwrap();
                    chain.write(2, e.offset, &data).unwrap();
                }
                ExtentKind::Zero => {
                    let base = &mut chain.layers[2];
                    base.image
                        .write_zeroes(
                            &mut base.storage,
                            e.offset,
                            e.len,
                            ZeroWrite::KeepAllocated,
                            None,
                        )
                        .unwrap();
                }
                ExtentKind::Unallocated => {}
            }
            pos = e.end();
        }
        let top = &mut chain.layers[0];
        top.image
            .change_backing_file(&mut top.storage, Some("base.qcow2"), Some("qcow2"))
            .unwrap();
        chain.flush().unwrap();
        write_back(&scratch, &mut chain, backend);
        let top_path = scratch.path("top.qcow2");
        assert_qemu_check_clean(&scratch.path("base.qcow2"));
        assert_qemu_check_clean(&top_path);
        assert!(
            qemu_raw(&top_path) == want,
            "{backend:?}: top after commit differs"
        );
        let info = run("qemu-img", &["info", "--output=json", p(&top_path)]);
        assert!(
            info.contains("\"backing-filename\": \"base.qcow2\""),
            "{info}"
        );
    }
}

#[test]
fn change_backing_file_writes_the_header_qemu_img_rebase_writes() {
    let scratch = Scratch::new("rebase");
    let json = r#"json:{"driver": "throttle", "throttle-group": "tg0", "file": {"driver": "qcow2", "file": {"driver": "file", "filename": "/tmp/qt/base.qcow2"}}}"#;
    let steps: &[(Option<&str>, Option<&str>)] = &[
        (Some("new base.qcow2"), Some("qcow2")),
        (Some(json), Some("throttle")),
        (Some("plain.raw"), Some("raw")),
        (None, None),
        (Some("again.qcow2"), Some("qcow2")),
    ];
    for compat in ["0.10", "1.1"] {
        let ours = scratch.path(&format!("ours-{compat}.qcow2"));
        let theirs = scratch.path(&format!("theirs-{compat}.qcow2"));
        let o = format!("compat={compat}");
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                &o,
                "-u",
                "-b",
                "old.qcow2",
                "-F",
                "qcow2",
                p(&theirs),
                "1M",
            ],
        );
        std::fs::copy(&theirs, &ours).unwrap();
        for &(file, format) in steps {
            let mut argv = vec!["rebase", "-u", "-b", file.unwrap_or("")];
            if let Some(f) = format {
                argv.extend(["-F", f]);
            }
            argv.push(p(&theirs));
            run("qemu-img", &argv);
            let mut st = FileStorage::open(&ours, Access::ReadWrite).unwrap();
            let mut q = Qcow2::open(&mut st, Access::ReadWrite).unwrap();
            q.change_backing_file(&mut st, file, format).unwrap();
            assert!(
                std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(),
                "compat={compat} after {file:?} {format:?}: headers differ"
            );
            let reopened = Qcow2::open(&mut st, Access::ReadOnly).unwrap();
            assert_eq!(
                (reopened.backing_file(), reopened.backing_format()),
                (file, format)
            );
        }
    }
}

#[test]
fn change_backing_file_refuses_what_qemu_refuses() {
    let mut st = MemStorage::new();
    let mut q = Qcow2::create(&mut st, &CreateOptions::new(1 << 20).cluster_size(512)).unwrap();
    let before = st.content_hash();
    let err = q
        .change_backing_file(&mut st, Some(&"n".repeat(1024)), None)
        .unwrap_err();
    assert_eq!(err.errno(), 22, "EINVAL for names over 1023 bytes");
    let err = q
        .change_backing_file(&mut st, None, Some("qcow2"))
        .unwrap_err();
    assert_eq!(err.errno(), 22, "EINVAL for a format without a file");
    assert!(matches!(
        q.change_backing_file(&mut st, Some(&"n".repeat(1000)), None),
        Err(Error::HeaderFull)
    ));
    assert_eq!(st.content_hash(), before, "refused changes write nothing");
    q.change_backing_file(&mut st, Some("b"), Some("a-very-long-format-name"))
        .unwrap();
    assert_eq!(
        q.backing_format(),
        Some("a-very-long-for"),
        "QEMU keeps 15 bytes of a format name"
    );
}

/// Patches bytes of a file.
fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    FileStorage::open(path, Access::ReadWrite)
        .unwrap()
        .write_at(offset, bytes)
        .unwrap();
}

fn qemu_check_counts(path: &Path) -> (u64, u64) {
    let (_, json, _) = run_tool("qemu-img", &["check", "--output=json", p(path)]);
    let num = |key: &str| {
        json.find(&format!("\"{key}\": "))
            .map(|at| {
                let rest = &json[at + key.len() + 4..];
                rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap()]
                    .parse::<u64>()
                    .unwrap()
            })
            .unwrap_or(0)
    };
    (num("corruptions"), num("leaks"))
}

#[test]
fn check_counts_leaks_and_corruptions_like_qemu_img_check() {
    let scratch = Scratch::new("check");
    let path = scratch.path("c.qcow2");
    let mut st = FileStorage::create(&path).unwrap();
    let mut q = Qcow2::create(&mut st, &CreateOptions::new(4 << 20)).unwrap();
    q.write(&mut st, 0, &[7; 3 << 20], None).unwrap();
    q.write_zeroes(&mut st, 1 << 20, 64 << 10, ZeroWrite::MayUnmap, None)
        .unwrap();
    drop(q);
    // Layout: refcount block at 0x20000, data from 0x50000 (after the L1
    // table and one L2 table); the unmapped cluster is data cluster 16.
    let cs = 65536u64;
    let freed_cluster = 5 + 16;
    let refblock = 2 * cs;
    patch(&path, refblock + 2 * freed_cluster, &1u16.to_be_bytes());
    let report = Qcow2::open(&mut st, Access::ReadOnly)
        .unwrap()
        .check(&mut st)
        .unwrap();
    assert_eq!((report.corruptions, report.leaks), qemu_check_counts(&path));
    assert_eq!((report.corruptions, report.leaks), (0, 1));
    // A used data cluster with refcount 0: a refcount error and an
    // OFLAG_COPIED error, for both.
    patch(&path, refblock + 2 * 6, &0u16.to_be_bytes());
    let report = Qcow2::open(&mut st, Access::ReadOnly)
        .unwrap()
        .check(&mut st)
        .unwrap();
    assert_eq!((report.corruptions, report.leaks), qemu_check_counts(&path));
    assert_eq!((report.corruptions, report.leaks), (2, 1));
}

#[test]
fn a_corrupt_image_is_never_written() {
    let mut st = MemStorage::new();
    let mut q = Qcow2::create(&mut st, &CreateOptions::new(4 << 20)).unwrap();
    q.write(&mut st, 0, &[1; 65536], None).unwrap();
    // Point guest cluster 0's L2 entry at the refcount table.
    let l2 = 4 * 65536u64;
    st.write_at(l2, &(65536u64 | 1 << 63).to_be_bytes())
        .unwrap();
    let mut q = Qcow2::open(&mut st, Access::ReadWrite).unwrap();
    let before = st.content_hash();
    let err = q.write(&mut st, 100, b"boom", None).unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
    let err = q.write(&mut st, 2 << 20, b"elsewhere", None).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt(_)),
        "later writes are refused too: {err}"
    );
    assert_eq!(st.content_hash(), before, "nothing was written");
    assert!(q.check(&mut st).unwrap().corruptions > 0);
}

#[test]
fn storage_errors_keep_their_errno() {
    /// Fails every write with ENOSPC after `budget` writes.
    struct Full {
        inner: MemStorage,
        budget: usize,
    }
    impl Storage for Full {
        fn read_at(&mut self, o: u64, b: &mut [u8]) -> std::io::Result<()> {
            self.inner.read_at(o, b)
        }
        fn write_at(&mut self, o: u64, b: &[u8]) -> std::io::Result<()> {
            if self.budget == 0 {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            self.budget -= 1;
            self.inner.write_at(o, b)
        }
        fn len(&mut self) -> std::io::Result<u64> {
            self.inner.len()
        }
        fn set_len(&mut self, l: u64) -> std::io::Result<()> {
            self.inner.set_len(l)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let mut st = Full {
        inner: MemStorage::new(),
        budget: usize::MAX,
    };
    let mut q = Qcow2::create(&mut st, &CreateOptions::new(4 << 20)).unwrap();
    st.budget = 1;
    let err = q.write(&mut st, 0, &[1; 4096], None).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28));
    assert_eq!(std::io::Error::from(err).raw_os_error(), Some(28));
    let report = Qcow2::open(&mut st.inner, Access::ReadOnly)
        .unwrap()
        .check(&mut st.inner)
        .unwrap();
    assert_eq!(
        report.corruptions, 0,
        "a failed write leaks at worst: {report:?}"
    );
}

#[test]
fn writes_to_images_with_internal_snapshots_leave_the_snapshot_intact() {
    let scratch = Scratch::new("snapshot");
    let path = scratch.path("s.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", p(&path), "4M"]);
    qemu_io(
        &path,
        &["write -P 1 0 1M", "write -c -P 2 2M 64k", "write -z 3M 64k"],
    );
    run("qemu-img", &["snapshot", "-c", "s1", p(&path)]);
    let before = qemu_raw(&path);
    for backend in BACKENDS {
        let copy = scratch.path(&format!("{backend:?}.qcow2"));
        std::fs::copy(&path, &copy).unwrap();
        let mut st = open_storage(&copy, backend, Access::ReadWrite);
        let mut q = Qcow2::open(&mut st, Access::ReadWrite).unwrap();
        assert_eq!(q.header().nb_snapshots, 1);
        assert!(
            q.check(&mut st).unwrap().is_clean(),
            "{backend:?}: snapshot clusters are counted"
        );
        let mut model = before.clone();
        let ops = [
            Op::Write {
                offset: 1000,
                len: 3000,
                seed: 3,
            },
            Op::Write {
                offset: 2 * 65536 + 5,
                len: 70_000,
                seed: 4,
            },
            Op::Write {
                offset: (2 << 20) + 100,
                len: 10,
                seed: 5,
            },
            Op::Zeroes {
                offset: 5 * 65536,
                len: 65536,
                zero_write: ZeroWrite::MayUnmap,
            },
        ];
        ops.iter()
            .for_each(|op| op.apply(&mut q, &mut st, &mut model));
        q.flush(&mut st).unwrap();
        if backend == Backend::Memory {
            let len = st.len().unwrap();
            let mut bytes = vec![0u8; len as usize];
            st.read_at(0, &mut bytes).unwrap();
            std::fs::write(&copy, bytes).unwrap();
        }
        assert_qemu_check_clean(&copy);
        assert!(qemu_raw(&copy) == model, "{backend:?}: active layer");
        run("qemu-img", &["snapshot", "-a", "s1", p(&copy)]);
        assert!(
            qemu_raw(&copy) == before,
            "{backend:?}: the snapshot kept its data"
        );
        assert_qemu_check_clean(&copy);
    }
}

#[test]
fn grown_images_keep_their_data_and_pass_qemu_check() {
    // 512-byte clusters: one L1 entry covers 32 KiB, so 1 MiB -> 3 MiB
    // needs a larger L1 table (qcow2_grow_l1_table); 64 KiB clusters keep
    // theirs.
    let scratch = Scratch::new("grow-size");
    for cluster_size in [512, 65536] {
        let path = scratch.path(&format!("grow-{cluster_size}.qcow2"));
        let opts = CreateOptions::new(1 << 20).cluster_size(cluster_size);
        let data = vec![7u8; 4096];
        let mut st = FileStorage::create(&path).unwrap();
        let mut q = Qcow2::create(&mut st, &opts).unwrap();
        q.write(&mut st, 4096, &data, None).unwrap();
        q.grow(&mut st, 3 << 20).unwrap();
        q.write(&mut st, (2 << 20) + 512, &data, None).unwrap();
        q.flush(&mut st).unwrap();
        drop(st);
        assert_qemu_check_clean(&path);
        let mut model = vec![0u8; 3 << 20];
        model[4096..8192].copy_from_slice(&data);
        model[(2 << 20) + 512..(2 << 20) + 4608].copy_from_slice(&data);
        assert!(qemu_raw(&path) == model, "cluster_size={cluster_size}");
    }
}
