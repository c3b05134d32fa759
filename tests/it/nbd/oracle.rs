//! Raw NBD exchanges replayed against qemu-storage-daemon 10.0.2 and against
//! our server; every byte the two send back must be the same.
//!
//! Both serve the same disk: 4 MiB, 64 KiB of 0x5a at 1 MiB, exported as
//! `ro` (read-only, description `hello`) and `sp` (writable).  qsd serves it
//! from a raw file; we serve a [`MemoryBackend`] with 64 KiB clusters, whose
//! allocation map matches what the file system reports for the file.
//! Extended headers (which QEMU 10 offers and we do not) are never asked for.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_qsd::nbd::{MemoryBackend, NbdBackend};

use super::{exports, Server};

const QSD: &str = "qemu-storage-daemon";
const MIB: u64 = 1024 * 1024;

/// One thing the client does.
#[derive(Clone, Debug)]
enum Step {
    /// Send bytes.
    Send(Vec<u8>),
    /// Read exactly this many bytes.
    Bytes(usize),
    /// Read option replies up to the final one (`NBD_REP_ACK` or an error).
    Options,
    /// Read one transmission reply; a successful simple reply carries this
    /// many data bytes.
    Reply(usize),
    /// Read until the server closes the connection.
    Eof,
}

use Step::*;

/// A qemu-storage-daemon serving the disk, killed on drop.
struct Qsd {
    child: Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Qsd {
    fn start() -> Qsd {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.raw");
        let mut disk = vec![0u8; 4 * MIB as usize];
        disk[MIB as usize..MIB as usize + 65536].fill(0x5a);
        std::fs::write(&image, &disk).unwrap();
        // Punch the zeroes so that the file is as sparse as the memory disk.
        let punched = Command::new("fallocate")
            .args(["--dig-holes"])
            .arg(&image)
            .status();
        assert!(punched.is_ok_and(|s| s.success()), "fallocate --dig-holes");
        let socket = dir.path().join("nbd.sock");
        let child = Command::new(QSD)
            .arg("--blockdev")
            .arg(format!(
                "driver=file,node-name=f,filename={}",
                image.display()
            ))
            .arg("--nbd-server")
            .arg(format!("addr.type=unix,addr.path={}", socket.display()))
            .args([
                "--export",
                "type=nbd,id=e1,node-name=f,name=ro,description=hello",
            ])
            .args(["--export", "type=nbd,id=e2,node-name=f,name=sp,writable=on"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{QSD} must be installed (Debian package qemu-utils): {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "{QSD} did not create its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Qsd {
            child,
            _dir: dir,
            socket,
        }
    }
}

impl Drop for Qsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ours() -> Server {
    let mut disk = MemoryBackend::new(4 * MIB as usize);
    disk.write(MIB, &[0x5a; 65536]).unwrap();
    let list = vec![
        ("ro", disk.clone().into_read_only(), Some("hello")),
        ("sp", disk, None),
    ];
    Server::start(exports(list))
}

fn read_exact(s: &mut UnixStream, n: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf)
        .map_err(|e| format!("short read of {n}: {e}"))?;
    Ok(buf)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

/// Everything the server sent for `script`, one entry per reading step.
fn transcript(socket: &Path, script: &[Step]) -> Vec<Result<Vec<u8>, String>> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    for step in script {
        let got = match step {
            Send(bytes) => {
                // The server may already have hung up; reading shows that.
                let _ = s.write_all(bytes);
                continue;
            }
            Bytes(n) => read_exact(&mut s, *n),
            Options => read_options(&mut s),
            Reply(data) => read_reply(&mut s, *data),
            Eof => {
                let mut rest = Vec::new();
                match s.read_to_end(&mut rest) {
                    Ok(_) => Ok(rest),
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(rest),
                    Err(e) => Err(format!("no EOF: {e}")),
                }
            }
        };
        out.push(got);
    }
    out
}

fn read_options(s: &mut UnixStream) -> Result<Vec<u8>, String> {
    let mut all = Vec::new();
    loop {
        let header = read_exact(s, 20)?;
        let (kind, len) = (be32(&header[12..]), be32(&header[16..]) as usize);
        all.extend_from_slice(&header);
        all.extend_from_slice(&read_exact(s, len)?);
        if kind == 1 || kind & 0x8000_0000 != 0 {
            return Ok(all);
        }
    }
}

fn read_reply(s: &mut UnixStream, data: usize) -> Result<Vec<u8>, String> {
    let mut all = read_exact(s, 4)?;
    if be32(&all) == 0x6744_6698 {
        let rest = read_exact(s, 12)?;
        let error = be32(&rest);
        all.extend_from_slice(&rest);
        if error == 0 {
            all.extend_from_slice(&read_exact(s, data)?);
        }
        return Ok(all);
    }
    loop {
        let header = read_exact(s, 16)?;
        let (flags, len) = (
            u16::from_be_bytes([header[0], header[1]]),
            be32(&header[12..]) as usize,
        );
        all.extend_from_slice(&header);
        all.extend_from_slice(&read_exact(s, len)?);
        if flags & 1 != 0 {
            return Ok(all);
        }
        all.extend_from_slice(&read_exact(s, 4)?);
    }
}

fn opt(option: u32, data: &[u8]) -> Step {
    let mut b = b"IHAVEOPT".to_vec();
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    Send(b)
}

/// A length-prefixed string.
fn s32(text: &[u8]) -> Vec<u8> {
    let mut b = (text.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(text);
    b
}

fn info_data(name: &[u8], requests: &[u16]) -> Vec<u8> {
    let mut b = s32(name);
    b.extend_from_slice(&(requests.len() as u16).to_be_bytes());
    for r in requests {
        b.extend_from_slice(&r.to_be_bytes());
    }
    b
}

fn meta_data(name: &[u8], queries: &[&[u8]]) -> Vec<u8> {
    let mut b = s32(name);
    b.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        b.extend_from_slice(&s32(q));
    }
    b
}

fn req(flags: u16, kind: u16, handle: u64, offset: u64, len: u32) -> Vec<u8> {
    let mut b = 0x2560_9513u32.to_be_bytes().to_vec();
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(&handle.to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
    b
}

fn write_req(flags: u16, handle: u64, offset: u64, data: &[u8]) -> Vec<u8> {
    let mut b = req(flags, 1, handle, offset, data.len() as u32);
    b.extend_from_slice(data);
    b
}

/// Greeting, client flags (fixed newstyle, no zeroes).
fn hello() -> Vec<Step> {
    vec![Bytes(18), Send(3u32.to_be_bytes().to_vec())]
}

/// Hello, structured replies, `base:allocation` and GO on `export`.
fn go(export: &[u8], structured: bool) -> Vec<Step> {
    let mut script = hello();
    if structured {
        script.extend([opt(8, &[]), Options]);
        script.extend([opt(10, &meta_data(export, &[b"base:allocation"])), Options]);
    }
    script.extend([opt(7, &info_data(export, &[3])), Options]);
    script
}

fn check(script: &[Step]) {
    let qsd = Qsd::start();
    let expected = transcript(&qsd.socket, script);
    let server = ours();
    let actual = transcript(server.socket(), script);
    assert!(
        expected.iter().all(Result::is_ok),
        "qsd itself did not answer: {expected:?}"
    );
    for (i, (want, got)) in expected.iter().zip(&actual).enumerate() {
        assert_eq!(got, want, "reading step {i} differs from qsd");
    }
    assert_eq!(actual.len(), expected.len());
}

#[test]
fn option_negotiation_matches_qsd() {
    let mut script = hello();
    script.extend([
        opt(3, &[]),
        Options,
        opt(3, b"x"),
        Options,
        opt(99, b"abc"),
        Options,
        opt(4, &[]),
        Options,
        opt(5, &[]),
        Options,
        opt(10, &meta_data(b"sp", &[])),
        Options,
        opt(9, &meta_data(b"sp", &[])),
        Options,
        opt(8, &[]),
        Options,
        opt(8, &[]),
        Options,
        opt(8, b"z"),
        Options,
        opt(9, &meta_data(b"sp", &[b"base:"])),
        Options,
        opt(
            9,
            &meta_data(
                b"sp",
                &[b"base:allocation", b"qemu:dirty-bitmap:x", b"other:thing"],
            ),
        ),
        Options,
        opt(10, &meta_data(b"sp", &[b"base:"])),
        Options,
        opt(10, &meta_data(b"nope", &[])),
        Options,
        opt(10, &s32(b"sp")),
        Options,
        opt(6, &info_data(b"nope", &[])),
        Options,
        opt(6, &info_data(b"sp", &[1, 2])),
        Options,
        opt(6, &info_data(b"ro", &[3, 0, 77])),
        Options,
        opt(6, &[0, 0, 0, 2, b's', b'p', 0, 2, 0, 1]),
        Options,
        opt(6, &[info_data(b"sp", &[]), b"x".to_vec()].concat()),
        Options,
        opt(6, &[0, 0, 0x13, 0x88, b's', b'p']),
        Options,
        opt(7, &info_data(b"s\0", &[])),
        Options,
        opt(6, &info_data(&[b'n'; 100], &[])),
        Options,
        opt(2, &[]),
        Options,
        Eof,
    ]);
    check(&script);
}

#[test]
fn dropped_handshakes_match_qsd() {
    let scripts: Vec<Vec<Step>> = vec![
        [hello(), vec![opt(1, b"nope"), Eof]].concat(),
        [hello(), vec![opt(1, b"sp"), Bytes(10)]].concat(),
        vec![
            Bytes(18),
            Send(1u32.to_be_bytes().to_vec()),
            opt(1, b"ro"),
            Bytes(134),
        ],
        vec![Bytes(18), Send(4u32.to_be_bytes().to_vec()), Eof],
        vec![
            Bytes(18),
            Send(0u32.to_be_bytes().to_vec()),
            opt(3, &[]),
            Eof,
        ],
        [
            hello(),
            vec![Send(b"garbage!\0\0\0\0\0\0\0\0".to_vec()), Eof],
        ]
        .concat(),
        [
            hello(),
            vec![
                Send(
                    [
                        b"IHAVEOPT".as_slice(),
                        &99u32.to_be_bytes(),
                        &(33u32 << 20).to_be_bytes(),
                    ]
                    .concat(),
                ),
                Eof,
            ],
        ]
        .concat(),
        [hello(), vec![opt(1, &[b'x'; 5000]), Eof]].concat(),
    ];
    for script in scripts {
        check(&script);
    }
}

#[test]
fn structured_requests_on_a_read_only_export_match_qsd() {
    let mut script = go(b"ro", true);
    let requests: Vec<(Vec<u8>, usize)> = vec![
        (write_req(0, 1, 0, &[1; 512]), 0),
        (req(0, 4, 2, 0, 512), 0),
        (req(0, 6, 3, 0, 512), 0),
        (req(0, 0, 4, 4 * MIB - 512, 1024), 0),
        (req(0, 0, 5, 0, 33 << 20), 0),
        (req(2, 0, 6, 0, 512), 0),
        (req(0, 9, 7, 0, 512), 0),
        (req(0, 7, 8, 0, 0), 0),
        (req(8, 7, 9, MIB - 512, 8192), 0),
        (req(0, 7, 10, 0, 4 * MIB as u32), 0),
        (req(0, 7, 11, MIB + 4096, 4096), 0),
        (req(0, 0, 12, MIB - 512, 70000), 0),
        (req(4, 0, 13, MIB - 512, 8192), 0),
        (req(1, 0, 14, 0, 1024), 0),
        (req(0, 0, 15, 0, 0), 0),
        (req(0, 3, 16, 0, 0), 0),
        (req(0, 3, 17, 5, 5), 0),
        (req(0, 5, 18, 0, 512), 0),
        (req(0, 5, 19, 0, 33 << 20), 0),
        (req(0x10, 7, 20, 0, 512), 0),
    ];
    for (bytes, data) in requests {
        script.extend([Send(bytes), Reply(data)]);
    }
    script.extend([Send(req(0, 2, 99, 0, 0)), Eof]);
    check(&script);
}

#[test]
fn structured_writes_match_qsd() {
    let mut script = go(b"sp", true);
    let requests: Vec<Vec<u8>> = vec![
        write_req(0, 1, 4 * MIB - 512, &[7; 1024]),
        req(0, 6, 2, 4 * MIB, 512),
        req(0, 4, 3, 4 * MIB, 512),
        req(0x12, 6, 4, 8192, 512),
        req(0x20, 6, 5, 8192, 512),
        write_req(0, 6, 2 * MIB, &[0xc3; 4096]),
        write_req(1, 7, 2 * MIB + 4096, &[0x3c; 512]),
        req(0, 0, 8, 2 * MIB, 4608),
        req(1, 4, 9, 3 * MIB, 65536),
        req(0, 3, 10, 0, 0),
    ];
    for bytes in requests {
        script.extend([Send(bytes), Reply(0)]);
    }
    script.extend([Send(req(0, 2, 99, 0, 0)), Eof]);
    check(&script);
}

#[test]
fn simple_replies_match_qsd() {
    let mut script = go(b"sp", false);
    script.extend([
        Send(req(0, 0, 1, 4 * MIB - 512, 1024)),
        Reply(0),
        Send(req(0, 7, 2, 0, 512)),
        Reply(0),
        Send(req(0, 0, 3, MIB - 256, 512)),
        Reply(512),
        Send(req(4, 0, 4, 0, 512)),
        Reply(0),
        Send(write_req(0, 5, 4096, &[9; 100])),
        Reply(0),
        Send(req(0, 0, 6, 4096, 100)),
        Reply(100),
        // A bad request magic: QEMU answers EINVAL, then hangs up.
        Send([0x12345678u32.to_be_bytes().as_slice(), &[0; 24]].concat()),
        Reply(0),
        Eof,
    ]);
    check(&script);
}

#[test]
fn oversized_write_is_refused_then_dropped_like_qsd() {
    let mut script = go(b"sp", true);
    script.extend([Send(req(0, 1, 1, 0, 33 << 20)), Reply(0), Eof]);
    check(&script);
    let mut script = go(b"sp", false);
    script.extend([Send(req(0, 1, 1, 0, 33 << 20)), Reply(0), Eof]);
    check(&script);
}
