//! NBD requests: a client's whole conversation, mostly well framed so that
//! requests reach the export (options before `NBD_OPT_GO`, then reads,
//! writes, trims, zeroes, flushes, block status and unknown commands with
//! offsets and lengths at and past the export's end), sometimes lying
//! about payload lengths, sometimes with bytes flipped.
//!
//! In process the conversation meets the daemon's export code
//! (`strata_qsd::exports::LayerExports`) over a qcow2 chain in memory;
//! `cargo xtask fuzz-inputs` sends it to a real strata-qsd.

use crate::qmp::{memory_images, NEGOTIATE};
use crate::{below, chance, guarded, pick_or, Failure};
use quickcheck::{Arbitrary, Gen};
use strata_block::{BlockLayer, MemFiles};
use strata_formats::{Access, Qcow2};
use strata_monitor::Monitor;
use strata_qsd::exports::LayerExports;
use strata_qsd::nbd::{Session, SessionConfig};

/// The export every conversation names, and its size.
pub const EXPORT: (&str, u64) = ("top", 4 << 20);

/// The QMP commands that set the export up (each answers `{}`): the
/// qcow2 chain of [`crate::qmp::IMAGES`], served writable.
pub const SETUP: [&str; 3] = [
    r#"{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "top", "file": {"driver": "file", "filename": "top.qcow2"}}}"#,
    r#"{"execute": "nbd-server-start", "arguments": {"addr": {"type": "unix", "data": {"path": "nbd.sock"}}}}"#,
    r#"{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e", "node-name": "top", "writable": true}}"#,
];

const IHAVEOPT: &[u8] = b"IHAVEOPT";
const REQUEST_MAGIC: u32 = 0x2560_9513;
const OPT_EXPORT_NAME: u32 = 1;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const OPT_SET_META_CONTEXT: u32 = 10;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;

fn option(code: u32, data: &[u8]) -> Vec<u8> {
    let mut out = IHAVEOPT.to_vec();
    out.extend(code.to_be_bytes());
    out.extend((data.len() as u32).to_be_bytes());
    out.extend(data);
    out
}

fn go_data(name: &str, infos: &[u16]) -> Vec<u8> {
    let mut out = (name.len() as u32).to_be_bytes().to_vec();
    out.extend(name.as_bytes());
    out.extend((infos.len() as u16).to_be_bytes());
    for info in infos {
        out.extend(info.to_be_bytes());
    }
    out
}

fn meta_data(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut out = (name.len() as u32).to_be_bytes().to_vec();
    out.extend(name.as_bytes());
    out.extend((queries.len() as u32).to_be_bytes());
    for query in queries {
        out.extend((query.len() as u32).to_be_bytes());
        out.extend(query.as_bytes());
    }
    out
}

/// A transmission request's 28-byte header.
pub fn request(flags: u16, kind: u16, cookie: u64, offset: u64, len: u32) -> Vec<u8> {
    let mut out = REQUEST_MAGIC.to_be_bytes().to_vec();
    out.extend(flags.to_be_bytes());
    out.extend(kind.to_be_bytes());
    out.extend(cookie.to_be_bytes());
    out.extend(offset.to_be_bytes());
    out.extend(len.to_be_bytes());
    out
}

/// Client flags and `NBD_OPT_GO` for [`EXPORT`], with structured replies
/// and `base:allocation` when asked for.
pub fn handshake(structured: bool) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 3];
    if structured {
        out.extend(option(OPT_STRUCTURED_REPLY, &[]));
        out.extend(option(
            OPT_SET_META_CONTEXT,
            &meta_data(EXPORT.0, &["base:allocation"]),
        ));
    }
    out.extend(option(OPT_GO, &go_data(EXPORT.0, &[])));
    out
}

/// A conversation `g` makes.
pub fn generate(g: &mut Gen) -> Vec<u8> {
    let mut out = if chance(g, 95) {
        vec![0, 0, 0, 3]
    } else {
        u32::arbitrary(g).to_be_bytes().to_vec()
    };
    for _ in 0..below(g, 4) {
        out.extend(negotiation_option(g));
    }
    let name = if chance(g, 90) { EXPORT.0 } else { "nope" };
    if chance(g, 10) {
        out.extend(option(OPT_EXPORT_NAME, name.as_bytes()));
    } else {
        out.extend(option(OPT_GO, &go_data(name, &[])));
    }
    for cookie in 0..below(g, 12) {
        out.extend(transmission_request(g, cookie));
    }
    if chance(g, 50) {
        out.extend(request(0, CMD_DISC, 99, 0, 0));
    }
    if chance(g, 20) {
        for _ in 0..1 + below(g, 4) {
            let at = below(g, out.len() as u64) as usize;
            out[at] ^= u8::arbitrary(g) | 1;
        }
    }
    out
}

fn negotiation_option(g: &mut Gen) -> Vec<u8> {
    let code = pick_or(g, &[3u32, 5, 6, 8, 9, 10, 11, 99], u32::arbitrary);
    let data = match below(g, 5) {
        0 => go_data(EXPORT.0, &[0, 1, 2, 3, u16::arbitrary(g)]),
        1 => meta_data(EXPORT.0, &["base:allocation"]),
        2 => meta_data(EXPORT.0, &["base:", "qemu:dirty-bitmap:x", ""]),
        3 => {
            // A length that lies about what follows.
            let mut data = go_data(EXPORT.0, &[]);
            data[3] = data[3].wrapping_add(u8::arbitrary(g));
            data
        }
        _ => Vec::<u8>::arbitrary(g),
    };
    option(code, &data)
}

fn transmission_request(g: &mut Gen, cookie: u64) -> Vec<u8> {
    let size = EXPORT.1;
    let kind = pick_or(
        g,
        &[0u16, 0, 1, 1, 1, 3, 4, 5, 6, 6, 7, 7, 8, 9],
        u16::arbitrary,
    );
    let len = pick_or(
        g,
        &[0u32, 1, 512, 4096, 65536, 1 << 20, (32 << 20) + 1],
        u32::arbitrary,
    );
    let offset = pick_or(
        g,
        &[0, 512, 65536, size - 4096, size - 1, size],
        u64::arbitrary,
    );
    let flags = pick_or(g, &[0u16, 0, 0, 1, 2, 4, 8, 0x10, 0x20], u16::arbitrary);
    let mut out = request(flags, kind, cookie, offset, len);
    if kind == CMD_WRITE {
        // The payload the header announces, or less (the next request's
        // header is then read as payload).
        let payload = if chance(g, 90) {
            len.min(1 << 20)
        } else {
            below(g, 64) as u32
        };
        out.extend(std::iter::repeat_n(cookie as u8 | 0x80, payload as usize));
    }
    out
}

/// A well-behaved client's conversation: the handshake, a 4 KiB read at
/// 0 and a flush.
pub fn probe() -> Vec<u8> {
    let mut probe = handshake(false);
    probe.extend(request(0, CMD_READ, 7, 0, 4096));
    probe.extend(request(0, CMD_FLUSH, 8, 0, 0));
    probe
}

/// The server's answer to [`probe`] holds the read's simple reply
/// (magic, error 0, cookie 7), its data and the flush's reply.
pub fn check_probe_answer(output: &[u8]) -> Result<(), Failure> {
    let mut read_reply = 0x6744_6698u32.to_be_bytes().to_vec();
    read_reply.extend(0u32.to_be_bytes());
    read_reply.extend(7u64.to_be_bytes());
    let found = output
        .windows(read_reply.len())
        .position(|w| w == read_reply.as_slice());
    match found {
        Some(at) if output.len() >= at + read_reply.len() + 4096 + 16 => Ok(()),
        _ => Err(Failure::Unanswered(format!(
            "a read of the export: {} bytes of answer",
            output.len()
        ))),
    }
}

/// An export of the memory chain on a monitor, taking conversations one
/// after the other, each on a fresh session.
pub struct InProcess {
    monitor: Monitor<MemFiles>,
}

impl Default for InProcess {
    fn default() -> Self {
        InProcess::new()
    }
}

impl InProcess {
    /// The chain exported writable as [`EXPORT`].
    pub fn new() -> InProcess {
        let files = memory_images();
        let mut monitor = Monitor::new(BlockLayer::new(files, 0));
        let mut session = strata_qmp::Session::new(strata_qmp::SessionConfig::default());
        session.take_output();
        for command in [std::str::from_utf8(NEGOTIATE.0).unwrap()]
            .into_iter()
            .chain(SETUP)
        {
            session.feed(command.as_bytes(), &mut monitor);
            assert_eq!(session.take_output(), NEGOTIATE.1.as_bytes(), "{command}");
        }
        InProcess { monitor }
    }

    /// Runs one conversation to its end, then checks the block layer's
    /// invariants and that a well-behaved client still reads the export.
    pub fn run(&mut self, conversation: &[u8]) -> Result<(), Failure> {
        guarded(conversation.len(), || {
            converse(&mut self.monitor, conversation, 0)?;
            self.monitor
                .layer()
                .check_invariants()
                .map_err(Failure::Corrupted)?;
            self.probe()
        })
    }

    fn probe(&mut self) -> Result<(), Failure> {
        let output = converse(&mut self.monitor, &probe(), 1 << 20)?;
        check_probe_answer(&output)
    }

    /// `check` of every qcow2 image in memory: no corruption (leaks are
    /// allowed: an open image may have some).
    pub fn check_images(&self) -> Result<(), Failure> {
        for (name, storage) in self.monitor.layer().core().files().iter() {
            let mut storage = storage.clone();
            let Ok(mut image) = Qcow2::open(&mut storage, Access::ReadOnly) else {
                continue;
            };
            match image.check(&mut storage) {
                Ok(report) if report.corruptions == 0 => {}
                other => return Err(Failure::Corrupted(format!("{name}: {other:?}"))),
            }
        }
        Ok(())
    }
}

/// Feeds `bytes` to a fresh session on `monitor`'s exports as a socket
/// would (as much as the session takes, its output drained), then the end
/// of input; the first `keep` bytes the server sent.
fn converse(
    monitor: &mut Monitor<MemFiles>,
    bytes: &[u8],
    keep: usize,
) -> Result<Vec<u8>, Failure> {
    let mut session = Session::new(SessionConfig::default());
    let mut exports = LayerExports::new(monitor);
    let mut output = Vec::new();
    let mut rest = bytes;
    let mut stalls = 0;
    while !rest.is_empty() && session.closed().is_none() {
        let n = session.receive(rest, &mut exports);
        drain(&mut session, &mut output, keep);
        if n == 0 {
            session.process(&mut exports);
            stalls += 1;
            if stalls > 1000 {
                return Err(Failure::Unanswered(
                    "the session takes no more input".into(),
                ));
            }
        }
        rest = &rest[n..];
    }
    session.end_of_input();
    drain(&mut session, &mut output, keep);
    if !session.is_finished() {
        return Err(Failure::Unanswered("no end after the end of input".into()));
    }
    Ok(output)
}

/// Sends the session's output: appends it to `output` up to `keep` bytes.
fn drain(session: &mut Session, output: &mut Vec<u8>, keep: usize) {
    let pending = session.pending_output();
    let room = keep.saturating_sub(output.len()).min(pending.len());
    output.extend_from_slice(&pending[..room]);
    session.consume_output(pending.len());
}
