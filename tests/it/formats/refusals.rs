//! Open decisions on damaged images against qemu-io 10.0.2: the same
//! bytes opened read-only and read-write are refused by Strata exactly
//! when QEMU refuses them, with QEMU's text (found by `cargo xtask
//! fuzz-inputs`: header tables far past the end of the file,
//! `data-file-raw` without a data file, snapshot table entries, and the
//! persistent bitmaps QEMU loads at open).

use super::{p, run, run_tool, Scratch};
use strata_formats::{Access, MemStorage, Qcow2};

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn put(bytes: &mut [u8], at: usize, value: &[u8]) {
    bytes[at..at + value.len()].copy_from_slice(value);
}

/// Where the bitmaps extension's data starts in the header.
fn bitmaps_extension(bytes: &[u8]) -> usize {
    let mut at = be32(bytes, 100) as usize;
    while be32(bytes, at) != 0 {
        if be32(bytes, at) == 0x2385_2875 {
            return at + 8;
        }
        at += 8 + (be32(bytes, at + 4) as usize).next_multiple_of(8);
    }
    panic!("no bitmaps extension")
}

/// QEMU's refusal of `bytes` (the first line after the device name), or
/// `None` when qemu-io opens it.
fn qemu_decision(dir: &Scratch, bytes: &[u8], read_only: bool) -> Option<String> {
    let path = dir.path("case.qcow2");
    std::fs::write(&path, bytes).unwrap();
    let access = if read_only { "-r" } else { "-n" };
    let (_, _, stderr) = run_tool(
        "qemu-io",
        &[access, "-f", "qcow2", "-c", "read 0 512", p(&path)],
    );
    let prefix = format!("qemu-io: can't open device {}: ", p(&path));
    let first = stderr.lines().find(|l| l.starts_with(&prefix))?;
    Some(first[prefix.len()..].to_string())
}

fn strata_decision(bytes: &[u8], read_only: bool) -> Option<String> {
    let mut storage = MemStorage::from_bytes(bytes);
    let access = if read_only {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    Qcow2::open(&mut storage, access)
        .err()
        .map(|e| e.to_string())
}

/// An image qemu-img made with `options` and one more step (`IMAGE`
/// standing for its path).
fn made(dir: &Scratch, options: &str, step: &[&str]) -> Vec<u8> {
    let path = dir.path("made.qcow2");
    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "-o", options, p(&path), "1M"],
    );
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 1 0 64k", p(&path)],
    );
    let args: Vec<&str> = step
        .iter()
        .map(|&arg| if arg == "IMAGE" { p(&path) } else { arg })
        .collect();
    run("qemu-img", &args);
    std::fs::read(&path).unwrap()
}

#[test]
fn damaged_headers_snapshots_and_bitmaps_are_refused_as_qemu_refuses_them() {
    let dir = Scratch::new("refusals");
    let plain = made(&dir, "cluster_size=65536", &["info", "IMAGE"]);
    let snapshot = made(
        &dir,
        "cluster_size=65536",
        &["snapshot", "-c", "s1", "IMAGE"],
    );
    let bitmap = made(
        &dir,
        "cluster_size=65536",
        &["bitmap", "--add", "IMAGE", "b0"],
    );
    let ext = bitmaps_extension(&bitmap);
    let directory = be64(&bitmap, ext + 16) as usize;
    let far = 1u64 << 60;
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut case = |name: &'static str, base: &[u8], edit: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = base.to_vec();
        edit(&mut bytes);
        cases.push((name, bytes));
    };
    case("L1 table far past the end", &plain, &|b| {
        let moved = be64(b, 40) | far;
        put(b, 40, &moved.to_be_bytes())
    });
    case("refcount table far past the end", &plain, &|b| {
        let moved = be64(b, 48) | far;
        put(b, 48, &moved.to_be_bytes())
    });
    case("no snapshots, far away", &plain, &|b| {
        put(b, 64, &far.to_be_bytes())
    });
    case("L1 table past 2^63", &plain, &|b| {
        put(b, 40, &(i64::MAX as u64 & !0xffff).to_be_bytes())
    });
    case("data-file-raw", &plain, &|b| {
        put(b, 88, &2u64.to_be_bytes())
    });
    case("snapshot extra data", &snapshot, &|b| {
        let entry = be64(b, 64) as usize;
        put(b, entry + 36, &1025u32.to_be_bytes())
    });
    case("bitmap granularity", &bitmap, &|b| b[directory + 17] = 8);
    case("bitmap type", &bitmap, &|b| b[directory + 16] = 2);
    case("bitmap reserved flag", &bitmap, &|b| b[directory + 15] |= 4);
    case("bitmap table size", &bitmap, &|b| {
        let grown = be32(b, directory + 8) + 1;
        put(b, directory + 8, &grown.to_be_bytes())
    });
    case("bitmap table entry", &bitmap, &|b| {
        let table = be64(b, directory) as usize;
        b[table + 7] |= 2;
    });
    case("bitmap count", &bitmap, &|b| {
        put(b, ext, &2u32.to_be_bytes())
    });
    case("no bitmaps", &bitmap, &|b| put(b, ext, &0u32.to_be_bytes()));
    case("extension reserved", &bitmap, &|b| b[ext + 7] = 1);
    case("bitmap extra data", &bitmap, &|b| b[directory + 23] = 8);
    case("bitmaps no longer vouched for", &bitmap, &|b| {
        b[directory + 17] = 8;
        put(b, 88, &0u64.to_be_bytes());
    });
    case("bitmap directory over the L1 table", &bitmap, &|b| {
        let l1 = be64(b, 40) as usize;
        let entry = b[directory..directory + 32].to_vec();
        put(b, l1, &entry);
        put(b, ext + 16, &(l1 as u64).to_be_bytes());
    });
    let mut refused = 0;
    for (name, bytes) in &cases {
        for read_only in [true, false] {
            let want = qemu_decision(&dir, bytes, read_only);
            refused += usize::from(want.is_some());
            assert_eq!(
                strata_decision(bytes, read_only),
                want,
                "{name}, read-only: {read_only}"
            );
        }
    }
    assert_eq!(
        refused,
        25,
        "QEMU's refusals among the {} cases",
        cases.len()
    );
}
