//! QMP bytes: well-formed commands on the images a run provides (so that
//! inputs build real state: nodes, jobs, exports), the same commands with
//! their bytes damaged, commands QEMU knows with random arguments, random
//! JSON, and token soup (deep nesting, huge numbers, bad UTF-8, stray
//! quotes).
//!
//! Every input goes to a fresh session (a fresh connection for the
//! daemon) on the same monitor, negotiated first or not, and may leave
//! anything behind for the next one.

use crate::{below, chance, guarded, Failure};
use quickcheck::{Arbitrary, Gen};
use strata_block::{BlockLayer, MemFiles};
use strata_formats::{CreateOptions, MemStorage, Qcow2};
use strata_monitor::Monitor;
use strata_qmp::{JsonStreamer, QObject, Session, SessionConfig};

/// The images the corpus names (relative paths: the daemon's working
/// directory, or the in-process monitor's memory files), and their sizes.
pub const IMAGES: [(&str, u64); 3] = [
    ("base.qcow2", 4 << 20),
    ("top.qcow2", 4 << 20),
    ("raw.img", 1 << 20),
];

/// Fresh in-memory copies of [`IMAGES`], as the in-process runs open them.
pub fn memory_images() -> MemFiles {
    let mut files = MemFiles::new();
    for (name, bytes) in image_bytes() {
        files.insert(name, MemStorage::from_bytes(&bytes));
    }
    files
}

/// The corpus's images as bytes: `top.qcow2` has `base.qcow2` as its
/// backing file, both carry data; `raw.img` is zeros.
pub fn image_bytes() -> Vec<(&'static str, Vec<u8>)> {
    IMAGES
        .iter()
        .map(|&(name, size)| {
            if !name.ends_with(".qcow2") {
                return (name, vec![0; size as usize]);
            }
            let mut storage = MemStorage::new();
            let mut options = CreateOptions::new(size).cluster_size(65536);
            let mut fill = 0x11;
            if name == "top.qcow2" {
                options = options.backing("base.qcow2", Some("qcow2"));
                fill = 0x22;
            }
            let mut image = Qcow2::create(&mut storage, &options).expect("a memory image");
            image
                .write(&mut storage, 65536, &vec![fill; 3 << 16], None)
                .expect("a memory write");
            (name, storage.to_vec())
        })
        .collect()
}

/// Well-formed commands on the corpus's images; most are valid in some
/// state the others build.
const CORPUS: &[&str] = &[
    r#"{"execute": "query-version"}"#,
    r#"{"execute": "query-commands"}"#,
    r#"{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "base", "file": {"driver": "file", "filename": "base.qcow2"}}}"#,
    r#"{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "top", "file": {"driver": "file", "filename": "top.qcow2"}}}"#,
    r#"{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "top", "backing": "base", "file": {"driver": "file", "node-name": "top-file", "filename": "top.qcow2"}}}"#,
    r#"{"execute": "blockdev-add", "arguments": {"driver": "raw", "node-name": "r", "read-only": true, "file": {"driver": "file", "filename": "raw.img", "locking": "off"}}}"#,
    r#"{"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "null", "size": 1048576}}"#,
    r#"{"execute": "object-add", "arguments": {"qom-type": "throttle-group", "id": "tg", "limits": {"iops-total": 100}}}"#,
    r#"{"execute": "blockdev-add", "arguments": {"driver": "throttle", "node-name": "thr", "throttle-group": "tg", "file": "top"}}"#,
    r#"{"execute": "blockdev-add", "arguments": {"driver": "copy-on-read", "node-name": "cor", "file": "top"}}"#,
    r#"{"execute": "object-del", "arguments": {"id": "tg"}}"#,
    r#"{"execute": "block-stream", "arguments": {"device": "top", "job-id": "j", "speed": 1024}}"#,
    r#"{"execute": "block-stream", "arguments": {"device": "top", "job-id": "j", "base-node": "base"}}"#,
    r#"{"execute": "block-commit", "arguments": {"device": "top", "job-id": "j", "speed": 1024}}"#,
    r#"{"execute": "block-commit", "arguments": {"device": "top", "job-id": "j", "top-node": "top", "base-node": "base", "auto-finalize": false}}"#,
    r#"{"execute": "block-job-set-speed", "arguments": {"device": "j", "speed": 0}}"#,
    r#"{"execute": "block-job-pause", "arguments": {"device": "j"}}"#,
    r#"{"execute": "block-job-resume", "arguments": {"device": "j"}}"#,
    r#"{"execute": "block-job-cancel", "arguments": {"device": "j", "force": true}}"#,
    r#"{"execute": "block-job-complete", "arguments": {"device": "j"}}"#,
    r#"{"execute": "job-finalize", "arguments": {"id": "j"}}"#,
    r#"{"execute": "job-dismiss", "arguments": {"id": "j"}}"#,
    r#"{"execute": "query-jobs"}"#,
    r#"{"execute": "query-block-jobs"}"#,
    r#"{"execute": "query-block"}"#,
    r#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#,
    r#"{"execute": "x-debug-query-block-graph"}"#,
    r#"{"execute": "blockdev-reopen", "arguments": {"options": [{"driver": "qcow2", "node-name": "top", "backing": null, "file": "top-file"}]}}"#,
    r#"{"execute": "blockdev-snapshot", "arguments": {"node": "base", "overlay": "top"}}"#,
    r#"{"execute": "nbd-server-start", "arguments": {"addr": {"type": "unix", "data": {"path": "fuzz-nbd.sock"}}}}"#,
    r#"{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e", "node-name": "top", "writable": true}}"#,
    r#"{"execute": "block-export-del", "arguments": {"id": "e"}}"#,
    r#"{"execute": "query-block-exports"}"#,
    r#"{"execute": "nbd-server-stop"}"#,
    r#"{"execute": "blockdev-del", "arguments": {"node-name": "top"}}"#,
    r#"{"execute": "blockdev-del", "arguments": {"node-name": "base"}}"#,
];

/// Command names: qemu-storage-daemon 10.0.2's and a few it does not have.
const COMMANDS: &[&str] = &[
    "qmp_capabilities",
    "query-version",
    "query-commands",
    "blockdev-add",
    "blockdev-del",
    "blockdev-snapshot",
    "blockdev-reopen",
    "object-add",
    "object-del",
    "block-stream",
    "block-commit",
    "block-job-set-speed",
    "block-job-pause",
    "block-job-resume",
    "block-job-cancel",
    "block-job-complete",
    "block-job-finalize",
    "block-job-dismiss",
    "job-pause",
    "job-resume",
    "job-cancel",
    "job-complete",
    "job-finalize",
    "job-dismiss",
    "query-jobs",
    "query-block-jobs",
    "query-block",
    "query-named-block-nodes",
    "x-debug-query-block-graph",
    "nbd-server-start",
    "nbd-server-stop",
    "block-export-add",
    "block-export-del",
    "query-block-exports",
    "drive-mirror",
    "blockdev-backup",
    "",
];

/// Argument names the commands above take.
const KEYS: &[&str] = &[
    "device",
    "node-name",
    "job-id",
    "speed",
    "base",
    "base-node",
    "top",
    "top-node",
    "backing-file",
    "driver",
    "file",
    "filename",
    "read-only",
    "id",
    "qom-type",
    "force",
    "auto-finalize",
    "auto-dismiss",
    "on-error",
    "filter-node-name",
    "addr",
    "type",
    "data",
    "path",
    "writable",
    "options",
    "backing",
    "limits",
    "flat",
    "overlay",
    "node",
    "size",
    "locking",
    "throttle-group",
    "cache",
    "discard",
    "detect-zeroes",
    "bottom",
];

/// Strings that name something the corpus makes, and awkward ones.
const WORDS: &[&str] = &[
    "top",
    "base",
    "j",
    "e",
    "tg",
    "top-file",
    "top.qcow2",
    "base.qcow2",
    "raw.img",
    "qcow2",
    "raw",
    "file",
    "unix",
    "nbd",
    "stop",
    "ignore",
    "report",
    "enospc",
    "#block123",
    "",
    "-",
    "1bad",
    "top\u{0}",
    "\u{fffd}",
    "json:{\"driver\": \"null-co\"}",
    "..",
    ".",
];

/// Bytes that mean something to the JSON lexer.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\u0000",
    b"'",
    b"1e999999",
    b"-0",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"0x10",
    b"true",
    b"null",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xff",
    b"\x00",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b"{\"execute\": ",
    b"\"arguments\": ",
    b"\"exec-oob\": ",
    b"\"id\": ",
    b"\"control\": ",
];

/// One input: bytes for a fresh session, negotiated first or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QmpInput {
    /// Whether `qmp_capabilities` is sent (and answered) first.
    pub negotiation: Negotiation,
    /// What the client sends.
    pub bytes: Vec<u8>,
}

/// Which mode of the monitor the input meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Negotiation {
    /// Capabilities negotiated: commands run.
    Negotiated,
    /// Straight after the greeting: only `qmp_capabilities` is allowed.
    Greeted,
}

/// The bytes that negotiate capabilities, and their answer.
pub const NEGOTIATE: (&[u8], &str) = (
    b"{\"execute\": \"qmp_capabilities\"}\n",
    "{\"return\": {}}\r\n",
);

/// What a monitor that still works answers to [`PROBE`].
pub const PROBE_ANSWER_START: &str = "{\"return\": {\"qemu\": ";

/// The request that shows the monitor still answers (after negotiation).
pub const PROBE: &[u8] = b"{\"execute\": \"query-version\"}\n";

/// Input `g` makes.
pub fn generate(g: &mut Gen) -> QmpInput {
    let negotiation = if chance(g, 85) {
        Negotiation::Negotiated
    } else {
        Negotiation::Greeted
    };
    let bytes = match below(g, 10) {
        0..=2 => corpus_lines(g),
        3..=5 => {
            let lines = corpus_lines(g);
            mutate_bytes(g, lines)
        }
        6 | 7 => structured(g),
        8 => json_text(g, 4).into_bytes(),
        _ => token_soup(g),
    };
    QmpInput { negotiation, bytes }
}

/// One to four corpus commands, sometimes with an `id`, rarely `quit`.
fn corpus_lines(g: &mut Gen) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + below(g, 4) {
        let line = if chance(g, 1) {
            r#"{"execute": "quit"}"#
        } else {
            *g.choose(CORPUS).unwrap()
        };
        match below(g, 4) {
            0 => out.extend_from_slice(
                format!("{}, \"id\": {}}}", &line[..line.len() - 1], json_text(g, 1)).as_bytes(),
            ),
            _ => out.extend_from_slice(line.as_bytes()),
        }
        out.push(b'\n');
    }
    out
}

/// `bytes` with one to four edits: bit flips, JSON tokens inserted,
/// ranges deleted or repeated, a cut.
fn mutate_bytes(g: &mut Gen, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + below(g, 4) {
        let at = below(g, bytes.len() as u64 + 1) as usize;
        match below(g, 6) {
            0 if at < bytes.len() => bytes[at] ^= 1 << below(g, 8),
            1 => {
                let token = *g.choose(TOKENS).unwrap();
                bytes.splice(at..at, token.iter().copied());
            }
            2 => {
                let end = (at + 1 + below(g, 16) as usize).min(bytes.len());
                bytes.drain(at..end.max(at));
            }
            3 => {
                let end = (at + 1 + below(g, 64) as usize).min(bytes.len());
                let copy = bytes[at..end.max(at)].to_vec();
                for _ in 0..below(g, 200) {
                    bytes.splice(at..at, copy.iter().copied());
                }
            }
            4 => bytes.truncate(at),
            _ => {
                let word = g.choose(WORDS).unwrap().as_bytes();
                bytes.splice(at..at, word.iter().copied());
            }
        }
    }
    bytes
}

/// A known command with random arguments.
fn structured(g: &mut Gen) -> Vec<u8> {
    let name = g.choose(COMMANDS).unwrap();
    let mut members = Vec::new();
    for _ in 0..below(g, 6) {
        let key = g.choose(KEYS).unwrap();
        members.push(format!("\"{key}\": {}", value(g, 3)));
    }
    let arguments = if chance(g, 10) {
        value(g, 2)
    } else {
        format!("{{{}}}", members.join(", "))
    };
    format!("{{\"execute\": \"{name}\", \"arguments\": {arguments}}}\n").into_bytes()
}

/// A JSON value, biased towards names the corpus makes.
fn value(g: &mut Gen, depth: u32) -> String {
    if chance(g, 40) {
        format!("\"{}\"", g.choose(WORDS).unwrap().escape_default())
    } else {
        json_text(g, depth)
    }
}

/// Random JSON text (numbers at the edges of QEMU's integer types,
/// escapes, nesting up to `depth`).
pub fn json_text(g: &mut Gen, depth: u32) -> String {
    let kinds = if depth == 0 { 7 } else { 9 };
    match below(g, kinds) {
        0 => "null".into(),
        1 => bool::arbitrary(g).to_string(),
        2 => i64::arbitrary(g).to_string(),
        3 => g
            .choose(&[
                "9223372036854775807",
                "9223372036854775808",
                "18446744073709551615",
                "-9223372036854775808",
                "1.5e308",
                "-1e-320",
                "0",
                "-1",
                "4294967296",
            ])
            .unwrap()
            .to_string(),
        4 => format!("{:?}", f64::arbitrary(g)).replace("inf", "1e999"),
        5 => format!("\"{}\"", String::arbitrary(g).escape_default()),
        6 => format!("\"{}\"", "x".repeat(below(g, 70_000) as usize)),
        7 => {
            let items: Vec<String> = (0..below(g, 4)).map(|_| json_text(g, depth - 1)).collect();
            format!("[{}]", items.join(", "))
        }
        _ => {
            let members: Vec<String> = (0..below(g, 4))
                .map(|_| {
                    let key = g.choose(KEYS).unwrap();
                    format!("\"{key}\": {}", json_text(g, depth - 1))
                })
                .collect();
            format!("{{{}}}", members.join(", "))
        }
    }
}

/// Tokens in random order, or one pathological shape: nesting far
/// beyond QEMU's limit, a string that never ends, a long run of one byte.
fn token_soup(g: &mut Gen) -> Vec<u8> {
    let repeat = 1 + below(g, 200_000) as usize;
    match below(g, 5) {
        0 => b"[".repeat(repeat),
        1 => [b"{\"a\":".repeat(repeat), b"1".to_vec()].concat(),
        2 => [b"\"".as_slice(), &b"\\u0041".repeat(repeat)].concat(),
        3 => vec![*g.choose(b"{[\"\\ 0\xff\n").unwrap(); repeat],
        _ => {
            let mut out = Vec::new();
            for _ in 0..below(g, 64) {
                out.extend_from_slice(g.choose(TOKENS).unwrap());
            }
            out
        }
    }
}

/// Every line of `output` ends in CRLF and is one JSON object.
pub fn check_replies(output: &[u8]) -> Result<(), Failure> {
    if output.is_empty() {
        return Ok(());
    }
    if !output.ends_with(b"\r\n") {
        return Err(Failure::BadReply(tail(output)));
    }
    for line in output[..output.len() - 2].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut streamer = JsonStreamer::new();
        let mut messages = Vec::new();
        streamer.feed(&nonfinite_as_zero(line), &mut messages);
        streamer.flush(&mut messages);
        match messages.as_slice() {
            [Ok(QObject::Dict(_))] => {}
            _ => return Err(Failure::BadReply(tail(line))),
        }
    }
    Ok(())
}

/// `line` with the doubles QEMU prints that JSON has no word for (`inf`,
/// `-inf`, `nan`, `-nan`: `%.17g` of a non-finite value, echoed in an `id`
/// exactly as qemu-storage-daemon 10.0.2 does) replaced by zeros.
fn nonfinite_as_zero(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut rest = line;
    while let Some(&first) = rest.first() {
        let after_value_start = matches!(out.last(), Some(b' ' | b'[' | b':' | b','));
        let word = [b"-inf".as_slice(), b"inf", b"-nan", b"nan"]
            .into_iter()
            .find(|w| after_value_start && rest.starts_with(w));
        match word {
            Some(w) => {
                out.push(b'0');
                rest = &rest[w.len()..];
            }
            None => {
                out.push(first);
                rest = &rest[1..];
            }
        }
    }
    out
}

/// The last bytes of `bytes`, for a message.
fn tail(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(200)..]).into_owned()
}

/// A monitor over memory images that takes inputs one after the other,
/// each on a fresh session: what the daemon does, without the sockets.
pub struct InProcess {
    monitor: Monitor<MemFiles>,
}

impl Default for InProcess {
    fn default() -> Self {
        InProcess::new()
    }
}

impl InProcess {
    /// A monitor over fresh copies of [`IMAGES`].
    pub fn new() -> InProcess {
        let files = memory_images();
        InProcess {
            monitor: Monitor::new(BlockLayer::new(files, 0)),
        }
    }

    /// Runs `input`, then the jobs it started for a bounded virtual time,
    /// then checks the replies, the block layer's invariants and that a
    /// new session is still answered. `quit` starts a new monitor.
    pub fn run(&mut self, input: &QmpInput) -> Result<(), Failure> {
        guarded(input.bytes.len(), || {
            let mut session = self.session(input.negotiation)?;
            session.feed(&input.bytes, &mut self.monitor);
            let quit = session.quit_requested();
            check_replies(&session.take_output())?;
            let layer = self.monitor.layer_mut();
            let horizon = layer.now_ns() + 10_000_000_000;
            layer
                .run_until_idle(horizon)
                .map_err(|e| Failure::Unanswered(format!("jobs failed to step: {e}")))?;
            layer.advance_to(horizon);
            layer.check_invariants().map_err(Failure::Corrupted)?;
            self.monitor.take_events();
            self.monitor.take_command_events();
            if quit {
                *self = InProcess::new();
            }
            self.probe()
        })
    }

    fn session(&mut self, negotiation: Negotiation) -> Result<Session, Failure> {
        let mut session = Session::new(SessionConfig::default());
        check_replies(&session.take_output())?;
        if negotiation == Negotiation::Negotiated {
            session.feed(NEGOTIATE.0, &mut self.monitor);
            let answer = session.take_output();
            if answer != NEGOTIATE.1.as_bytes() {
                return Err(Failure::Unanswered(tail(&answer)));
            }
        }
        Ok(session)
    }

    fn probe(&mut self) -> Result<(), Failure> {
        let mut session = self.session(Negotiation::Negotiated)?;
        session.feed(PROBE, &mut self.monitor);
        let answer = session.take_output();
        if answer.starts_with(PROBE_ANSWER_START.as_bytes()) {
            Ok(())
        } else {
            Err(Failure::Unanswered(tail(&answer)))
        }
    }
}
