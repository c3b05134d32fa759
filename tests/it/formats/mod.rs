//! strata-formats against the real `qemu-img` and `qemu-io` (10.0.2).
//!
//! * `read`: images made by qemu-img/qemu-io read correctly through Strata.
//! * `write`: images made and written by Strata pass `qemu-img check`, read
//!   back identically and map the same.
//! * `props`: seeded quickcheck properties (crash consistency, corrupt input).
//!
//! Every interop case runs on both storages: [`FileStorage`] on the file
//! itself and [`MemStorage`] holding a copy of its bytes.

mod enospc;
mod props;
mod read;
mod refusals;
mod write;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use strata_formats::{Access, ExtentKind, FileStorage, Image, MemStorage, Storage};

/// A scratch directory under the system temp dir, removed on drop.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("strata-formats-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a tool; returns (success, stdout, stderr).
pub fn run_tool(tool: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a tool that must succeed; returns its stdout.
pub fn run(tool: &str, args: &[&str]) -> String {
    let (ok, stdout, stderr) = run_tool(tool, args);
    assert!(ok, "{tool} {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Runs qemu-io commands on an image (`-f qcow2`), each must succeed.
pub fn qemu_io(path: &Path, cmds: &[&str]) {
    let mut args = vec!["-f", "qcow2"];
    for c in cmds {
        args.extend(["-c", c]);
    }
    args.push(p(path));
    let out = run("qemu-io", &args);
    assert!(
        !out.contains("error") && !out.contains("failed"),
        "qemu-io {cmds:?}: {out}"
    );
}

/// The guest bytes of an image as QEMU reads them (`qemu-img convert -O raw`).
pub fn qemu_raw(path: &Path) -> Vec<u8> {
    let out = path.with_extension("qemu-raw");
    run("qemu-img", &["convert", "-O", "raw", p(path), p(&out)]);
    let bytes = std::fs::read(&out).expect("read converted image");
    std::fs::remove_file(&out).expect("remove converted image");
    bytes
}

/// `qemu-img map --output=json` at depth 0, merged by kind.
pub fn qemu_map(path: &Path) -> Vec<(u64, u64, ExtentKind)> {
    let json = run("qemu-img", &["map", "--output=json", p(path)]);
    let mut out = Vec::new();
    for entry in json.split('{').skip(1) {
        let num = |key: &str| -> u64 {
            let at = entry
                .find(&format!("\"{key}\": "))
                .unwrap_or_else(|| panic!("{key} in {entry}"));
            let rest = &entry[at + key.len() + 4..];
            rest[..rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len())]
                .parse()
                .expect("number")
        };
        let flag = |key: &str| entry.contains(&format!("\"{key}\": true"));
        let kind = match (num("depth"), flag("present"), flag("data"), flag("zero")) {
            (0, true, true, _) => ExtentKind::Data,
            (0, true, false, true) => ExtentKind::Zero,
            _ => ExtentKind::Unallocated,
        };
        push_merged(&mut out, num("start"), num("length"), kind);
    }
    out
}

fn push_merged(out: &mut Vec<(u64, u64, ExtentKind)>, start: u64, len: u64, kind: ExtentKind) {
    match out.last_mut() {
        Some((s, l, k)) if *k == kind && *s + *l == start => *l += len,
        _ => out.push((start, len, kind)),
    }
}

/// Strata's depth-0 map of an image, merged by kind.
pub fn strata_map(image: &mut Image, storage: &mut dyn Storage) -> Vec<(u64, u64, ExtentKind)> {
    let size = image.virtual_size();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < size {
        let e = image
            .block_status(storage, pos, size - pos)
            .expect("block_status");
        assert!(
            e.len > 0 && e.offset == pos,
            "empty or misplaced extent {e:?}"
        );
        push_merged(&mut out, e.offset, e.len, e.kind);
        pos = e.end();
    }
    out
}

/// The two storages every interop case runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    File,
    Memory,
}

pub const BACKENDS: [Backend; 2] = [Backend::File, Backend::Memory];

/// Opens the image file on `backend` (memory: a copy of the file's bytes).
pub fn open_storage(path: &Path, backend: Backend, access: Access) -> Box<dyn Storage> {
    match backend {
        Backend::File => Box::new(FileStorage::open(path, access).expect("open image file")),
        Backend::Memory => Box::new(MemStorage::from_bytes(
            &std::fs::read(path).expect("read image file"),
        )),
    }
}

/// Saves a memory storage to `path` so qemu-img can look at it.
pub fn save(storage: &MemStorage, path: &Path) {
    std::fs::write(path, storage.to_vec()).expect("write image file");
}

/// A deterministic byte pattern (so misplaced data is caught).
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            seed.wrapping_mul(31)
                .wrapping_add((i / 512) as u8)
                .wrapping_add(1)
        })
        .collect()
}

/// Asserts `qemu-img check` finds nothing wrong.
pub fn assert_qemu_check_clean(path: &Path) {
    let (ok, stdout, stderr) = run_tool("qemu-img", &["check", p(path)]);
    assert!(
        ok && stdout.contains("No errors were found"),
        "qemu-img check {}:\n{stdout}\n{stderr}",
        path.display()
    );
    assert!(!stdout.contains("leaked"), "leaks: {stdout}");
}
