//! qemu-img, qemu-io and qemu-nbd reading and writing through our exports.

use strata_qmp::serde_json::{self, Value};
use strata_qsd::nbd::{MemoryBackend, NbdBackend};

use super::{exports, run, run_ok, Exports, Server};

const MIB: usize = 1024 * 1024;

/// A 4 MiB disk (64 KiB clusters) with 64 KiB of 0x5a at 1 MiB.
fn sparse_disk() -> MemoryBackend {
    let mut disk = MemoryBackend::new(4 * MIB);
    disk.write(MIB as u64, &[0x5a; 64 * 1024]).unwrap();
    disk
}

fn one(backend: MemoryBackend) -> Exports {
    exports(vec![("disk", backend, None)])
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `qemu-img map --output=json` as (start, length, data, zero) rows.
fn map(uri: &str) -> Vec<(u64, u64, bool, bool)> {
    let rows = json(&run_ok(
        "qemu-img",
        &["map", "--output=json", "-f", "raw", uri],
    ));
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_u64().unwrap();
            let b = |k: &str| r[k].as_bool().unwrap();
            (n("start"), n("length"), b("data"), b("zero"))
        })
        .collect()
}

#[test]
fn info_reports_size_and_protocol() {
    let server = Server::start(one(sparse_disk()));
    let info = json(&run_ok(
        "qemu-img",
        &["info", "--output=json", "-f", "raw", &server.uri("disk")],
    ));
    assert_eq!(info["virtual-size"], 4 * MIB as u64);
    assert_eq!(info["format"], "raw");
    assert_eq!(info["children"][0]["info"]["format"], "nbd");
}

/// QEMU's server rounds an export's size down to 512 bytes
/// (`QEMU_ALIGN_DOWN(size, BDRV_SECTOR_SIZE)` in `nbd_export_create`).
#[test]
fn export_size_is_rounded_down_to_sectors() {
    let server = Server::start(one(MemoryBackend::new(1000)));
    let info = json(&run_ok(
        "qemu-img",
        &["info", "--output=json", "-f", "raw", &server.uri("disk")],
    ));
    assert_eq!(info["virtual-size"], 512);
}

#[test]
fn qemu_io_writes_and_reads_back_patterns() {
    let server = Server::start(one(MemoryBackend::new(4 * MIB)));
    let out = run_ok(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0xab 4096 8192",
            "-c",
            "write -P 0xcd -f 12288 512", // FUA
            "-c",
            "read -P 0xab 4096 8192",
            "-c",
            "read -P 0xcd 12288 512",
            "-c",
            "read -P 0 0 4096",
            "-c",
            "flush",
            &server.uri("disk"),
        ],
    );
    assert!(!out.contains("Pattern verification failed"), "{out}");
    assert_eq!(out.matches("wrote ").count(), 2, "{out}");
    assert_eq!(out.matches("read ").count(), 3, "{out}");
    let disk = server.finish().remove("disk").unwrap().0;
    assert!(disk.bytes()[4096..12288].iter().all(|&b| b == 0xab));
    assert!(disk.bytes()[12288..12800].iter().all(|&b| b == 0xcd));
    assert!(disk.bytes()[..4096].iter().all(|&b| b == 0));
    assert!(
        disk.flushes() >= 2,
        "FUA write and flush reached the backend: {}",
        disk.flushes()
    );
}

/// The pattern check can fail: a wrong pattern is reported.
#[test]
fn qemu_io_notices_wrong_data() {
    let server = Server::start(one(sparse_disk()));
    let out = run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "read -P 0x11 1048576 512",
            &server.uri("disk"),
        ],
    );
    assert!(!out.status.success());
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("Pattern verification failed at offset 1048576"),
        "{out}"
    );
}

#[test]
fn map_reports_holes_and_data() {
    let server = Server::start(one(sparse_disk()));
    let mib = MIB as u64;
    assert_eq!(
        map(&server.uri("disk")),
        vec![
            (0, mib, false, true),
            (mib, 65536, true, false),
            (mib + 65536, 3 * mib - 65536, false, true)
        ]
    );
}

#[test]
fn discard_and_write_zeroes_change_the_map() {
    let mut disk = MemoryBackend::new(MIB);
    disk.write(0, &[1; 256 * 1024]).unwrap();
    let server = Server::start(one(disk));
    let uri = server.uri("disk");
    run_ok(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "discard 0 64k",
            "-c",
            "write -z 64k 64k",
            "-c",
            "write -z -u 128k 64k",
            &uri,
        ],
    );
    // write -z without -u sends NBD_CMD_FLAG_NO_HOLE: zeroes stay allocated.
    assert_eq!(
        map(&uri),
        vec![
            (0, 65536, false, true),
            (65536, 65536, true, false),
            (131072, 65536, false, true),
            (196608, 65536, true, false),
            (262144, 786432, false, true),
        ]
    );
    let disk = server.finish().remove("disk").unwrap().0;
    assert!(disk.bytes()[..196608].iter().all(|&b| b == 0));
    assert!(disk.bytes()[196608..262144].iter().all(|&b| b == 1));
}

#[test]
fn convert_from_the_export_copies_every_byte() {
    let mut disk = sparse_disk();
    let pattern: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    disk.write(2 * MIB as u64 + 7, &pattern).unwrap();
    let expected = disk.bytes().to_vec();
    let server = Server::start(one(disk));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.raw");
    let out_s = out.to_str().unwrap();
    run_ok(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            &server.uri("disk"),
            out_s,
        ],
    );
    assert!(std::fs::read(&out).unwrap() == expected, "copy differs");
    let qcow = dir.path().join("copy.qcow2");
    let qcow_s = qcow.to_str().unwrap();
    run_ok(
        "qemu-img",
        &[
            "convert",
            "-m",
            "8",
            "-f",
            "raw",
            "-O",
            "qcow2",
            &server.uri("disk"),
            qcow_s,
        ],
    );
    let cmp = run_ok(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "qcow2",
            &server.uri("disk"),
            qcow_s,
        ],
    );
    assert!(cmp.contains("Images are identical"), "{cmp}");
}

#[test]
fn convert_into_the_export_writes_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.raw");
    let src_s = src.to_str().unwrap();
    run_ok("qemu-img", &["create", "-f", "raw", src_s, "2M"]);
    run_ok(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x77 100k 300k",
            "-c",
            "write -P 0x3c 1M 4k",
            src_s,
        ],
    );
    let mut disk = MemoryBackend::new(2 * MIB);
    disk.write(0, &[0xff; 2 * MIB]).unwrap(); // stale data convert must zero
    let server = Server::start(one(disk));
    run_ok(
        "qemu-img",
        &[
            "convert",
            "-n",
            "-f",
            "raw",
            "-O",
            "raw",
            src_s,
            &server.uri("disk"),
        ],
    );
    let disk = server.finish().remove("disk").unwrap().0;
    assert!(
        disk.bytes() == std::fs::read(&src).unwrap().as_slice(),
        "export differs from source"
    );
}

#[test]
fn read_only_export_serves_reads_and_refuses_rw_open() {
    let server = Server::start(one(sparse_disk().into_read_only()));
    let uri = server.uri("disk");
    let out = run_ok(
        "qemu-io",
        &["-r", "-f", "raw", "-c", "read -P 0x5a 1M 64k", &uri],
    );
    assert!(out.contains("read 65536/65536"), "{out}");
    let rw = run("qemu-io", &["-f", "raw", "-c", "write 0 512", &uri]);
    let err = String::from_utf8_lossy(&rw.stderr);
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn unknown_export_is_reported_by_name() {
    let server = Server::start(one(sparse_disk()));
    let out = run("qemu-img", &["info", &server.uri("nope")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Requested export not available"), "{err}");
    assert!(
        err.contains("server reported: export 'nope' not present"),
        "{err}"
    );
}

#[test]
fn qemu_nbd_lists_exports_descriptions_and_contexts() {
    let list = exports(vec![
        ("disk", sparse_disk(), None),
        ("ro", sparse_disk().into_read_only(), Some("hello")),
    ]);
    let server = Server::start(list);
    let out = run_ok("qemu-nbd", &["-L", "-k", server.socket().to_str().unwrap()]);
    for needle in [
        "exports available: 2",
        " export: 'disk'\n  size:  4194304\n  flags: 0xded ( flush fua trim zeroes df multi cache fast-zero )",
        " export: 'ro'\n  description: hello\n  size:  4194304\n  flags: 0x58f ( readonly flush fua df multi cache )",
        // No extended headers here (QEMU 10 would say 64-bit).
        "  min block: 1\n  opt block: 4096\n  max block: 33554432\n  transaction size: 32-bit\n  available meta contexts: 1\n   base:allocation",
    ] {
        assert!(out.contains(needle), "{needle:?} not in\n{out}");
    }
}

#[test]
fn several_clients_share_one_export() {
    let server = Server::start(one(MemoryBackend::new(MIB)));
    let uri = server.uri("disk");
    let writers: Vec<_> = (0..4u8)
        .map(|i| {
            let uri = uri.clone();
            std::thread::spawn(move || {
                let cmd = format!("write -P {} {}k 64k", i + 1, u32::from(i) * 64);
                run_ok("qemu-io", &["-f", "raw", "-c", &cmd, &uri])
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let disk = server.finish().remove("disk").unwrap().0;
    for i in 0..4usize {
        assert!(
            disk.bytes()[i * 65536..(i + 1) * 65536]
                .iter()
                .all(|&b| b == i as u8 + 1),
            "{i}"
        );
    }
}

#[test]
fn tcp_loopback_serves_qemu_io() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use strata_qsd::nbd::{NbdAddress, NbdListener};

    let listener = NbdListener::bind(&NbdAddress::Tcp("127.0.0.1:0".parse().unwrap())).unwrap();
    let NbdAddress::Tcp(addr) = listener.local_addr().unwrap() else {
        panic!("not TCP")
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let owner = std::thread::spawn(move || super::event_loop(listener, one(sparse_disk()), &flag));
    let uri = format!("nbd://127.0.0.1:{}/disk", addr.port());
    let out = run_ok(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "read -P 0x5a 1M 64k",
            "-c",
            "write -P 3 0 512",
            &uri,
        ],
    );
    stop.store(true, Ordering::SeqCst);
    let disk = owner.join().unwrap().remove("disk").unwrap().0;
    assert!(!out.contains("Pattern verification failed"), "{out}");
    assert!(disk.bytes()[..512].iter().all(|&b| b == 3));
}
