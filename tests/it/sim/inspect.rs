//! The simulator inspects images as qemu-img opens them: a header whose
//! backing string is a `json:` tree (filters, blkdebug rules, `backing`
//! overrides), names no backing format (probed), or cannot be opened. Each
//! case inspects the same bytes twice, with `strata_sim::inspect_image` and
//! with the harness's own inspection (`run.py`'s `inspect_image`, which runs
//! qemu-img 10.0.2), and wants the same record.

use std::path::Path;
use std::process::Command;
use strata_block::MemFiles;
use strata_formats::{Image, MemStorage, Storage};
use strata_qmp::serde_json;
use strata_sim::scenario::{ImageRecord, ImageSpec, ImageWrite};

/// How a case rewrites `top.img`'s header.
enum Header {
    /// `qemu-img rebase -u -b BACKING -F FORMAT`: qemu-img writes it.
    Rebase(&'static str, &'static str),
    /// A backing file without a backing format, which qemu-img 10.0 no
    /// longer writes: Strata's qcow2 code writes it.
    NoFormat(&'static str),
}

/// What qemu-img makes of `top.img`.
enum Expect {
    /// It opens and reads the chain.
    Reads,
    /// map and convert fail to open it, with this text.
    FailsToOpen(&'static str),
}

struct Case {
    name: &'static str,
    header: Header,
    expect: Expect,
}

const CASES: &[Case] = &[
    Case {
        name: "raw over qcow2, as block-commit writes it",
        header: Header::Rebase(
            r#"json:{"driver": "raw", "file": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.img"}}}"#,
            "raw",
        ),
        expect: Expect::Reads,
    },
    Case {
        name: "backing: null overrides base.img's own backing",
        header: Header::Rebase(
            r#"json:{"backing": null, "driver": "qcow2", "file": {"driver": "file", "filename": "base.img"}}"#,
            "qcow2",
        ),
        expect: Expect::Reads,
    },
    Case {
        name: "a backing override naming another image",
        header: Header::Rebase(
            r#"json:{"driver": "qcow2", "file": {"driver": "file", "filename": "base.img"}, "backing": {"driver": "raw", "file": {"driver": "file", "filename": "raw.img"}}}"#,
            "qcow2",
        ),
        expect: Expect::Reads,
    },
    Case {
        name: "blkdebug with its rules flattened, as QEMU writes them",
        header: Header::Rebase(
            r#"json:{"inject-error.0.state": 2, "set-state.0.event": "read_aio", "image": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.img"}}, "driver": "blkdebug", "set-state.0.new_state": 2, "inject-error.0.event": "l1_update", "inject-error.0.errno": 5}"#,
            "blkdebug",
        ),
        expect: Expect::Reads,
    },
    Case {
        name: "no backing format: qcow2 probed",
        header: Header::NoFormat("base.img"),
        expect: Expect::Reads,
    },
    Case {
        name: "no backing format: raw probed",
        header: Header::NoFormat("raw.img"),
        expect: Expect::Reads,
    },
    Case {
        name: "a missing backing file",
        header: Header::Rebase("missing.img", "qcow2"),
        expect: Expect::FailsToOpen(
            "qemu-img: Could not open 'top.img': Could not open backing file: Could not open 'missing.img': No such file or directory",
        ),
    },
    Case {
        name: "a throttle filter whose group does not exist in qemu-img",
        header: Header::Rebase(
            r#"json:{"throttle-group": "tg0", "driver": "throttle", "file": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.img"}}}"#,
            "throttle",
        ),
        expect: Expect::FailsToOpen(
            "qemu-img: Could not open 'top.img': Could not open backing file: Throttle group 'tg0' does not exist",
        ),
    },
    Case {
        name: "the header's format wins over the json: driver",
        header: Header::Rebase(r#"json:{"driver": "raw"}"#, "qcow2"),
        expect: Expect::FailsToOpen(
            "qemu-img: Could not open 'top.img': Could not open backing file: A block device must be specified for \"file\"",
        ),
    },
];

fn spec(name: &str, format: &str, backing: Option<&str>, write: (u8, u64, u64)) -> ImageSpec {
    ImageSpec {
        name: name.into(),
        format: format.into(),
        size: Some(1 << 20),
        cluster_size: None,
        options: Vec::new(),
        backing: backing.map(|b| (b.to_string(), "qcow2".to_string())),
        sector_numbers: false,
        writes: vec![ImageWrite {
            pattern: write.0,
            offset: write.1,
            length: write.2,
            zero: false,
        }],
        no_inspect: false,
    }
}

/// base0.img <- base.img <- top.img (qcow2), and raw.img, each with data
/// of its own.
fn images() -> Vec<ImageSpec> {
    vec![
        spec("base0.img", "qcow2", None, (10, 0, 128 << 10)),
        spec(
            "base.img",
            "qcow2",
            Some("base0.img"),
            (11, 128 << 10, 128 << 10),
        ),
        spec("raw.img", "raw", None, (12, 256 << 10, 64 << 10)),
        spec(
            "top.img",
            "qcow2",
            Some("base.img"),
            (13, 768 << 10, 128 << 10),
        ),
    ]
}

fn write_files(files: &MemFiles, dir: &Path) {
    for (name, storage) in files.iter() {
        std::fs::write(dir.join(name), storage.to_vec()).expect("write image");
    }
}

fn read_files(files: &MemFiles, dir: &Path) -> MemFiles {
    let mut out = MemFiles::new();
    for (name, _) in files.iter() {
        let bytes = std::fs::read(dir.join(name)).expect("read image");
        out.insert(name, MemStorage::from_bytes(&bytes));
    }
    out
}

fn rewrite_header(dir: &Path, header: &Header) {
    match header {
        Header::Rebase(backing, format) => {
            stdout_of(
                Command::new("qemu-img")
                    .current_dir(dir)
                    .args(["rebase", "-u", "-f", "qcow2", "-b", backing, "-F", format])
                    .arg("top.img"),
            );
        }
        Header::NoFormat(backing) => {
            let path = dir.join("top.img");
            let mut storage = MemStorage::from_bytes(&std::fs::read(&path).expect("read"));
            let mut image = Image::open(&mut storage, None, strata_formats::Access::ReadWrite)
                .expect("open top.img");
            image
                .change_backing_file(&mut storage, Some(backing), None)
                .expect("change backing file");
            storage.flush().expect("flush");
            std::fs::write(&path, storage.to_vec()).expect("write");
        }
    }
}

/// The shared harness's `inspect_image` of `top.img` in `dir`.
fn harness_inspection(dir: &Path) -> ImageRecord {
    let harness = std::env::var("STRATA_CONFORMANCE").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance").to_string()
    });
    let script = "import json, sys; sys.path.insert(0, sys.argv[1]); import run; \
                  print(json.dumps(run.inspect_image({'name': 'top.img', 'format': 'qcow2'}, sys.argv[2], sys.argv[2])))";
    let out = stdout_of(
        Command::new("python3")
            .args(["-c", script, &harness])
            .arg(dir),
    );
    serde_json::from_slice(&out).expect("an image record")
}

/// Runs `command`, which must succeed, for its output.
fn stdout_of(command: &mut Command) -> Vec<u8> {
    let out = command.output().expect("runs");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn headers_open_as_qemu_img_opens_them() {
    let specs = images();
    let made = strata_sim::create_images(&specs).expect("images");
    let top = &specs[3];
    for case in CASES {
        let scratch = tempfile::tempdir().expect("tempdir");
        write_files(&made, scratch.path());
        rewrite_header(scratch.path(), &case.header);
        let files = read_files(&made, scratch.path());
        let strata = strata_sim::inspect_image(&files, top);
        let qemu = harness_inspection(scratch.path());
        assert_eq!(
            strata, qemu,
            "{}: strata (left) vs qemu-img (right)",
            case.name
        );
        match case.expect {
            Expect::Reads => assert!(qemu.sha256.is_some(), "{}: {qemu:?}", case.name),
            Expect::FailsToOpen(text) => {
                assert_eq!(qemu.convert_error.as_deref(), Some(text), "{}", case.name);
                assert_eq!(qemu.map_error.as_deref(), Some(text), "{}", case.name);
            }
        }
    }
}
