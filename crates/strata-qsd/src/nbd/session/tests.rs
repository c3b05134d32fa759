//! Byte-vector tests of the session: exact encodings, incremental input,
//! backend errors, bounds on memory, and garbage.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use quickcheck::{Gen, QuickCheck, TestResult};

use super::*;
use crate::nbd::MemoryBackend;

type Map = BTreeMap<String, (TestBackend, Option<String>)>;

/// A memory disk whose operations can be made to fail.
#[derive(Clone, Debug)]
struct TestBackend {
    disk: MemoryBackend,
    fail_read: Option<io::ErrorKind>,
    fail_write: Option<io::ErrorKind>,
    fail_status: bool,
    /// Extents to report instead of the disk's.
    status: Option<Vec<(u32, u32)>>,
    /// Calls that reached past the end of the disk.
    out_of_range: u32,
    /// Ranged calls made.
    calls: u32,
}

impl TestBackend {
    fn new(size: usize) -> TestBackend {
        TestBackend {
            disk: MemoryBackend::new(size),
            fail_read: None,
            fail_write: None,
            fail_status: false,
            status: None,
            out_of_range: 0,
            calls: 0,
        }
    }
}

impl TestBackend {
    fn note_range(&mut self, offset: u64, len: u64) {
        self.calls += 1;
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.disk.bytes().len() as u64)
        {
            self.out_of_range += 1;
        }
    }
}

impl NbdBackend for TestBackend {
    fn size(&mut self) -> u64 {
        self.disk.size()
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.note_range(offset, buf.len() as u64);
        match self.fail_read {
            Some(kind) => Err(kind.into()),
            None => self.disk.read(offset, buf),
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.note_range(offset, data.len() as u64);
        match self.fail_write {
            Some(kind) => Err(kind.into()),
            None => self.disk.write(offset, data),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.disk.flush()
    }
    fn trim(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.note_range(offset, len);
        self.disk.trim(offset, len)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64, flags: ZeroFlags) -> io::Result<()> {
        self.note_range(offset, len);
        self.disk.write_zeroes(offset, len, flags)
    }
    fn block_status(&mut self, offset: u64, len: u32) -> io::Result<Vec<(u32, u32)>> {
        self.note_range(offset, u64::from(len));
        if self.fail_status {
            return Err(io::Error::from_raw_os_error(5));
        }
        match &self.status {
            Some(extents) => Ok(extents.clone()),
            None => self.disk.block_status(offset, len),
        }
    }
    fn read_only(&self) -> bool {
        self.disk.read_only()
    }
}

fn exports(backend: TestBackend) -> Map {
    let mut map = BTreeMap::new();
    map.insert("disk".to_string(), (backend, None));
    map
}

fn opt(option: u32, data: &[u8]) -> Vec<u8> {
    let mut b = b"IHAVEOPT".to_vec();
    b.put_u32(option);
    b.put_u32(data.len() as u32);
    b.extend_from_slice(data);
    b
}

fn go_data(name: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_u32(name.len() as u32);
    b.extend_from_slice(name.as_bytes());
    b.put_u16(0);
    b
}

fn meta_data(name: &str, query: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_u32(name.len() as u32);
    b.extend_from_slice(name.as_bytes());
    b.put_u32(1);
    b.put_u32(query.len() as u32);
    b.extend_from_slice(query.as_bytes());
    b
}

fn req(flags: u16, kind: u16, handle: u64, offset: u64, len: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_u32(wire::REQUEST_MAGIC);
    b.put_u16(flags);
    b.put_u16(kind);
    b.put_u64(handle);
    b.put_u64(offset);
    b.put_u32(len);
    b
}

/// Client flags, then (optionally) structured replies and base:allocation, then GO.
fn handshake(structured: bool) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 3];
    if structured {
        b.extend(opt(opt::STRUCTURED_REPLY, &[]));
        b.extend(opt(
            opt::SET_META_CONTEXT,
            &meta_data("disk", "base:allocation"),
        ));
    }
    b.extend(opt(opt::GO, &go_data("disk")));
    b
}

/// A session past GO on `disk`, with its output so far discarded.
fn attached(structured: bool, map: &mut Map) -> Session {
    let mut s = Session::new(SessionConfig::default());
    s.receive(&handshake(structured), map);
    assert_eq!(
        s.export_name(),
        Some("disk"),
        "handshake failed: {:?}",
        s.closed()
    );
    let n = s.pending_output().len();
    s.consume_output(n);
    s
}

fn take(s: &mut Session) -> Vec<u8> {
    let out = s.pending_output().to_vec();
    s.consume_output(out.len());
    out
}

fn simple(error: u32, handle: u64) -> Vec<u8> {
    let mut b = Vec::new();
    simple_reply(&mut b, error, handle);
    b
}

fn error_chunk_bytes(handle: u64, error: u32, message: &str) -> Vec<u8> {
    let mut b = Vec::new();
    error_chunk(&mut b, handle, error, message);
    b
}

#[test]
fn greeting_and_go_are_byte_exact() {
    let mut map = exports(TestBackend::new(1 << 20));
    let mut s = Session::new(SessionConfig::default());
    assert_eq!(take(&mut s), b"NBDMAGICIHAVEOPT\x00\x03");
    s.receive(&handshake(false), &mut map);
    let mut expected: Vec<u8> = Vec::new();
    // NBD_REP_INFO BLOCK_SIZE (1, 4096, 32 MiB), NBD_REP_INFO EXPORT, NBD_REP_ACK.
    expected.extend(
        b"\x00\x03\xe8\x89\x04\x55\x65\xa9\x00\x00\x00\x07\x00\x00\x00\x03\x00\x00\x00\x0e",
    );
    expected.extend(b"\x00\x03\x00\x00\x00\x01\x00\x00\x10\x00\x02\x00\x00\x00");
    expected.extend(
        b"\x00\x03\xe8\x89\x04\x55\x65\xa9\x00\x00\x00\x07\x00\x00\x00\x03\x00\x00\x00\x0c",
    );
    // size 1 MiB, flags 0x0d6d (no DF without structured replies).
    expected.extend(b"\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x0d\x6d");
    expected.extend(
        b"\x00\x03\xe8\x89\x04\x55\x65\xa9\x00\x00\x00\x07\x00\x00\x00\x01\x00\x00\x00\x00",
    );
    assert_eq!(take(&mut s), expected);
    assert_eq!(s.export_name(), Some("disk"));
}

#[test]
fn input_in_single_bytes_gives_the_same_output() {
    let mut script = handshake(true);
    script.extend(req(0, cmd::WRITE, 1, 512, 4));
    script.extend(b"abcd");
    script.extend(req(0, cmd::READ, 2, 510, 8));
    script.extend(req(0, cmd::BLOCK_STATUS, 3, 0, 1 << 20));
    script.extend(req(0, cmd::DISC, 4, 0, 0));
    let run = |chunk: usize| {
        let mut map = exports(TestBackend::new(1 << 20));
        let mut s = Session::new(SessionConfig::default());
        for piece in script.chunks(chunk) {
            assert_eq!(s.receive(piece, &mut map), piece.len());
        }
        (take(&mut s), s.closed().cloned())
    };
    let whole = run(script.len());
    assert_eq!(whole.1, Some(Closed::Disconnected));
    for chunk in [1, 3, 7, 28] {
        assert_eq!(run(chunk), whole, "fed in {chunk}-byte pieces");
    }
}

#[test]
fn simple_write_then_read() {
    let mut map = exports(TestBackend::new(4096));
    let mut s = attached(false, &mut map);
    let mut write = req(0, cmd::WRITE, 7, 100, 3);
    write.extend(b"xyz");
    s.receive(&write, &mut map);
    assert_eq!(take(&mut s), simple(0, 7));
    s.receive(&req(0, cmd::READ, 8, 99, 5), &mut map);
    let mut expected = simple(0, 8);
    expected.extend(b"\0xyz\0");
    assert_eq!(take(&mut s), expected);
}

#[test]
fn backend_errors_become_nbd_errnos() {
    let mut backend = TestBackend::new(4096);
    backend.fail_write = Some(io::ErrorKind::StorageFull);
    backend.fail_read = Some(io::ErrorKind::Other);
    let mut map = exports(backend);
    let mut s = attached(false, &mut map);
    let mut write = req(0, cmd::WRITE, 1, 0, 2);
    write.extend(b"hi");
    s.receive(&write, &mut map);
    assert_eq!(take(&mut s), simple(errno::ENOSPC, 1));
    // A failed simple read sends the error and no data.
    s.receive(&req(0, cmd::READ, 2, 0, 512), &mut map);
    assert_eq!(take(&mut s), simple(errno::EIO, 2));

    let mut s = attached(true, &mut map);
    s.receive(&req(cmd_flag::DF, cmd::READ, 3, 0, 512), &mut map);
    assert_eq!(
        take(&mut s),
        error_chunk_bytes(3, errno::EIO, "reading from file failed")
    );
    s.receive(&write, &mut map);
    assert_eq!(
        take(&mut s),
        error_chunk_bytes(1, errno::ENOSPC, "writing to file failed")
    );
}

#[test]
fn sparse_reads_send_holes_and_data() {
    let mut backend = TestBackend::new(1 << 20);
    backend.disk.write(65536, &[0xee; 10]).unwrap();
    let mut map = exports(backend);
    let mut s = attached(true, &mut map);
    s.receive(&req(0, cmd::READ, 5, 65536 - 512, 1024), &mut map);
    let mut expected = Vec::new();
    chunk_header(&mut expected, 0, chunk::OFFSET_HOLE, 5, 12);
    expected.put_u64(65536 - 512);
    expected.put_u32(512);
    chunk_header(
        &mut expected,
        chunk::FLAG_DONE,
        chunk::OFFSET_DATA,
        5,
        8 + 512,
    );
    expected.put_u64(65536);
    expected.extend([0xee; 10]);
    expected.extend([0; 502]);
    assert_eq!(take(&mut s), expected);

    map.get_mut("disk").unwrap().0.fail_status = true;
    s.receive(&req(0, cmd::READ, 6, 0, 512), &mut map);
    let message = "unable to check for holes: Input/output error";
    assert_eq!(take(&mut s), error_chunk_bytes(6, errno::EIO, message));
}

#[test]
fn block_status_extents_are_clipped_merged_and_checked() {
    let mut backend = TestBackend::new(1 << 20);
    // Zero-length, unknown flag bits, equal neighbours, and too long.
    backend.status = Some(vec![(0, 1), (100, 0x10), (100, 0), (400, 3), (u32::MAX, 3)]);
    let mut map = exports(backend);
    let mut s = attached(true, &mut map);
    s.receive(&req(0, cmd::BLOCK_STATUS, 1, 0, 1000), &mut map);
    let mut expected = Vec::new();
    chunk_header(
        &mut expected,
        chunk::FLAG_DONE,
        chunk::BLOCK_STATUS,
        1,
        4 + 16,
    );
    for word in [0, 200, 0, 800, 3] {
        expected.put_u32(word);
    }
    assert_eq!(take(&mut s), expected);

    s.receive(
        &req(cmd_flag::REQ_ONE, cmd::BLOCK_STATUS, 2, 0, 1000),
        &mut map,
    );
    let mut expected = Vec::new();
    chunk_header(
        &mut expected,
        chunk::FLAG_DONE,
        chunk::BLOCK_STATUS,
        2,
        4 + 8,
    );
    for word in [0, 200, 0] {
        expected.put_u32(word);
    }
    assert_eq!(take(&mut s), expected);

    map.get_mut("disk").unwrap().0.status = Some(vec![]);
    s.receive(&req(0, cmd::BLOCK_STATUS, 3, 0, 1000), &mut map);
    assert_eq!(
        take(&mut s),
        error_chunk_bytes(3, errno::EIO, "can't get block status")
    );
}

#[test]
fn block_status_without_negotiation_is_einval() {
    let mut map = exports(TestBackend::new(4096));
    let mut s = attached(false, &mut map);
    s.receive(&req(0, cmd::BLOCK_STATUS, 1, 0, 512), &mut map);
    assert_eq!(take(&mut s), simple(errno::EINVAL, 1));
}

#[test]
fn a_removed_export_ends_the_session_with_eshutdown() {
    let mut map = exports(TestBackend::new(4096));
    let mut s = attached(true, &mut map);
    map.clear();
    s.receive(&req(0, cmd::FLUSH, 9, 0, 0), &mut map);
    assert_eq!(
        take(&mut s),
        error_chunk_bytes(9, errno::ESHUTDOWN, "export removed")
    );
    assert_eq!(s.closed(), Some(&Closed::ExportGone));
    assert_eq!(s.input_room(), 0);
}

#[test]
fn big_options_are_skipped_without_buffering() {
    let mut map = exports(TestBackend::new(4096));
    let mut s = Session::new(SessionConfig::default());
    take(&mut s);
    s.receive(&[0, 0, 0, 3], &mut map);
    let len = 1 << 20;
    let mut header = b"IHAVEOPT".to_vec();
    header.put_u32(opt::GO);
    header.put_u32(len);
    s.receive(&header, &mut map);
    let junk = vec![0x41; 64 * 1024];
    for _ in 0..16 {
        assert_eq!(s.receive(&junk, &mut map), junk.len());
        assert_eq!(s.buffered(), 0, "skipped data is not kept");
    }
    let mut expected = Vec::new();
    option_reply(
        &mut expected,
        opt::GO,
        rep::ERR_TOO_BIG,
        b"option 'go' is too long",
    );
    assert_eq!(take(&mut s), expected);
    // Negotiation goes on.
    s.receive(&opt(opt::GO, &go_data("disk")), &mut map);
    assert_eq!(s.export_name(), Some("disk"));
}

#[test]
fn pipelined_big_reads_stop_at_the_output_limit() {
    let mut map = exports(TestBackend::new(64 << 20));
    let mut s = attached(false, &mut map);
    let mut reads = Vec::new();
    for h in 0..8 {
        reads.extend(req(0, cmd::READ, h, 0, wire::MAX_BUFFER_SIZE));
    }
    let taken = s.receive(&reads, &mut map);
    assert_eq!(taken, reads.len(), "small requests are buffered");
    let backlog = s.pending_output().len();
    assert!(
        (OUTPUT_HIGH_WATER..OUTPUT_HIGH_WATER + 2 * 16 + (32 << 20)).contains(&backlog),
        "{backlog}"
    );
    assert_eq!(
        s.input_room(),
        0,
        "no more input while the output is backed up"
    );
    let mut replies = 0;
    while !s.pending_output().is_empty() {
        replies += take(&mut s).len() / (16 + wire::MAX_BUFFER_SIZE as usize);
        s.process(&mut map);
    }
    assert_eq!(replies, 8);
}

#[test]
fn end_of_input_closes_and_keeps_pending_output() {
    let mut map = exports(TestBackend::new(4096));
    let mut s = Session::new(SessionConfig::default());
    s.end_of_input();
    assert_eq!(s.closed(), Some(&Closed::PeerClosed));
    assert!(!s.is_finished(), "the greeting is still pending");
    take(&mut s);
    assert!(s.is_finished());
    assert_eq!(s.receive(b"late", &mut map), 0);
}

/// Whatever the client sends, the session does not panic, keeps its
/// buffers bounded and answers the same whichever way the bytes are split.
#[test]
fn garbage_never_panics_and_buffers_stay_bounded() {
    fn prop(prefix: u8, garbage: Vec<u8>, split: usize) -> TestResult {
        let mut script = match prefix % 3 {
            0 => Vec::new(),
            1 => vec![0, 0, 0, 3],
            _ => handshake(prefix.is_multiple_of(2)),
        };
        script.extend(garbage);
        let run = |pieces: &[&[u8]]| {
            let mut map = exports(TestBackend::new(1 << 20));
            let mut s = Session::new(SessionConfig::default());
            for piece in pieces {
                let mut rest = *piece;
                while !rest.is_empty() && s.closed().is_none() {
                    let n = s.receive(rest, &mut map);
                    assert!(s.buffered() <= INPUT_LIMIT);
                    assert!(s.pending_output().len() <= OUTPUT_HIGH_WATER + (33 << 20));
                    if n == 0 {
                        take(&mut s);
                        s.process(&mut map);
                    }
                    rest = &rest[n..];
                }
            }
            (s.pending_output().to_vec(), s.closed().cloned())
        };
        let cut = split % (script.len() + 1);
        let (a, b) = script.split_at(cut);
        TestResult::from_bool(run(&[&script]) == run(&[a, b]))
    }
    let seed = std::env::var("STRATA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0b0d);
    println!("nbd garbage property seed: {seed} (STRATA_SEED={seed})");
    QuickCheck::new()
        .rng(Gen::from_size_and_seed(200, seed))
        .tests(500)
        .quickcheck(prop as fn(u8, Vec<u8>, usize) -> TestResult);
}

/// A random option during negotiation (never one that ends it).
#[derive(Clone, Debug)]
struct OptionToken(Vec<u8>);

impl quickcheck::Arbitrary for OptionToken {
    fn arbitrary(g: &mut Gen) -> OptionToken {
        // Not ABORT or EXPORT_NAME: both end negotiation (the oracle
        // tests cover them), and the requests after it would go unused.
        let option = *g.choose(&[3u32, 4, 5, 6, 7, 8, 9, 10, 11, 99]).unwrap();
        let data = match u8::arbitrary(g) % 4 {
            0 => go_data("nope"),
            1 => meta_data("disk", "base:allocation"),
            2 => meta_data("disk", "base:"),
            _ => Vec::arbitrary(g),
        };
        OptionToken(opt(option, &data))
    }
}

/// A random transmission request: real magic, random flags, type, offset
/// and length; writes carry their payload; rarely, plain garbage.
#[derive(Clone, Debug)]
struct RequestToken(Vec<u8>);

impl quickcheck::Arbitrary for RequestToken {
    fn arbitrary(g: &mut Gen) -> RequestToken {
        if u8::arbitrary(g) % 64 == 0 {
            return RequestToken(Vec::arbitrary(g));
        }
        // Mostly valid requests (so that they reach the backend), with
        // every kind of invalid field now and then.
        let size = 1u64 << 20;
        let (any_len, any_kind) = (u64::from(u32::arbitrary(g)), u64::from(u16::arbitrary(g)));
        let (any_flags, any_offset) = (u64::from(u16::arbitrary(g)), u64::arbitrary(g));
        let pick = |g: &mut Gen, from: &[u64]| *g.choose(from).unwrap();
        let kind = pick(g, &[0, 0, 1, 1, 3, 4, 5, 6, 7, 7, 9, any_kind]) as u16;
        let too_big = u64::from(wire::MAX_BUFFER_SIZE) + 1;
        let len = if kind == cmd::WRITE {
            pick(g, &[0, 1, 512, 512, 4096, 4096, 65536, 65536, 100, too_big])
        } else {
            pick(g, &[0, 1, 512, 4096, 4096, 65536, size, too_big, any_len])
        } as u32;
        let flags = pick(g, &[0, 0, 0, 0, 0, 1, 2, 4, 8, 0x10, any_flags]) as u16;
        let offset = pick(
            g,
            &[
                0,
                512,
                4096,
                65536,
                size - 4096,
                size - 512,
                size,
                any_offset,
            ],
        );
        let mut bytes = req(flags, kind, 1, offset, len);
        if kind == cmd::WRITE && len <= 65536 {
            bytes.extend(vec![0xaa; len as usize]);
        }
        RequestToken(bytes)
    }
}

/// Well-framed messages with random contents: no panic, bounded buffers,
/// the same answers however the bytes are split, and the backend only ever
/// sees in-range requests.
#[test]
fn random_messages_are_handled_within_bounds() {
    fn prop(
        structured: bool,
        options: Vec<OptionToken>,
        requests: Vec<RequestToken>,
        split: usize,
    ) -> TestResult {
        let mut script = vec![0, 0, 0, 3];
        script.extend(options.iter().flat_map(|o| o.0.clone()));
        if structured {
            script.extend(opt(opt::STRUCTURED_REPLY, &[]));
            script.extend(opt(
                opt::SET_META_CONTEXT,
                &meta_data("disk", "base:allocation"),
            ));
        }
        script.extend(opt(opt::GO, &go_data("disk")));
        script.extend(requests.iter().flat_map(|r| r.0.clone()));
        let run = |pieces: &[&[u8]]| {
            let mut map = exports(TestBackend::new(1 << 20));
            let mut s = Session::new(SessionConfig::default());
            let mut out = Vec::new();
            for piece in pieces {
                let mut rest = *piece;
                while !rest.is_empty() && s.closed().is_none() {
                    let n = s.receive(rest, &mut map);
                    assert!(s.buffered() <= INPUT_LIMIT);
                    out.extend(take(&mut s));
                    if n == 0 {
                        s.process(&mut map);
                    }
                    rest = &rest[n..];
                }
            }
            out.extend(take(&mut s));
            let disk = &map["disk"].0;
            (out, s.closed().cloned(), disk.out_of_range, disk.calls)
        };
        let cut = split % (script.len() + 1);
        let (a, b) = script.split_at(cut);
        let whole = run(&[&script]);
        BACKEND_CALLS.fetch_add(whole.3 as usize, Ordering::Relaxed);
        if whole.2 != 0 {
            return TestResult::error(format!("{} out-of-range backend calls", whole.2));
        }
        TestResult::from_bool(whole == run(&[a, b]))
    }
    let seed = std::env::var("STRATA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0b0d_5eed);
    println!("nbd message property seed: {seed} (STRATA_SEED={seed})");
    QuickCheck::new()
        .rng(Gen::from_size_and_seed(30, seed))
        .tests(2000)
        .quickcheck(prop as fn(bool, Vec<OptionToken>, Vec<RequestToken>, usize) -> TestResult);
    let calls = BACKEND_CALLS.load(Ordering::Relaxed);
    println!("nbd message property: {calls} ranged backend calls");
    assert!(
        calls > 500,
        "the property hardly reached the backend: {calls} calls"
    );
}

static BACKEND_CALLS: AtomicUsize = AtomicUsize::new(0);
