//! The sans-I/O NBD server connection: bytes in, bytes out.
//!
//! [`Session`] implements fixed newstyle negotiation and the transmission
//! phase the way QEMU 10.0.2's `nbd/server.c` answers them (checked against
//! `qemu-storage-daemon`), minus TLS and extended headers.  It owns no socket
//! and no block layer: the caller feeds received bytes with
//! [`receive`](Session::receive), sends [`pending_output`](Session::pending_output),
//! and passes an [`ExportLookup`] whenever the session may need a backend.

use std::fmt;

use super::backend::{ExportLookup, NbdBackend, ZeroFlags};
use super::wire::{
    self, be_u16, be_u32, be_u64, chunk, cmd, cmd_flag, errno, info, opt, rep, tflag, PutBe,
};

/// Options carrying more data than this are skipped unread and refused:
/// the largest valid `NBD_OPT_GO` (a 4096-byte name and 65535 info
/// requests) is about 132 KiB.
const OPTION_BUFFER_LIMIT: usize = 256 * 1024;
/// At most this much unprocessed input is buffered: one maximal write request
/// plus slack for pipelined small requests.
const INPUT_LIMIT: usize = wire::REQUEST_HEADER_LEN + wire::MAX_BUFFER_SIZE as usize + 64 * 1024;
/// No new request is processed while this much output waits to be sent.
const OUTPUT_HIGH_WATER: usize = wire::MAX_BUFFER_SIZE as usize;

#[cfg(test)]
mod tests;

/// Per-server settings of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Advertise `NBD_FLAG_CAN_MULTI_CONN` (QEMU does unless the server's
    /// `max-connections` is 1).
    pub multi_conn: bool,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig { multi_conn: true }
    }
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The client sent `NBD_OPT_ABORT` (acknowledged).
    Aborted,
    /// The client sent `NBD_CMD_DISC`.
    Disconnected,
    /// The client closed its side of the connection.
    PeerClosed,
    /// The export went away under an established connection; the pending
    /// request was answered with `ESHUTDOWN`.
    ExportGone,
    /// The client broke the protocol; the session dropped it.
    Protocol(ProtocolError),
}

/// A protocol violation that ends a session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProtocolError {
    /// What went wrong.
    pub kind: ProtocolErrorKind,
    /// QEMU's text for it (as `qemu-storage-daemon` logs it).
    pub message: String,
}

/// The kinds of [`ProtocolError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolErrorKind {
    /// The client flags have bits the server did not offer.
    BadClientFlags,
    /// An option or request header had the wrong magic number.
    BadMagic,
    /// An option announced more than 32 MiB of data, or `NBD_OPT_EXPORT_NAME`
    /// a name longer than 4096 bytes.
    OptionTooLong,
    /// A client without fixed newstyle sent something but `NBD_OPT_EXPORT_NAME`.
    UnsupportedOption,
    /// `NBD_OPT_EXPORT_NAME` named no export (this option cannot fail politely).
    UnknownExport,
    /// A write announced more than 32 MiB of payload (answered with `EINVAL`,
    /// then dropped because the payload cannot be skipped).
    RequestTooLarge,
}

impl ProtocolError {
    fn new(kind: ProtocolErrorKind, message: impl Into<String>) -> ProtocolError {
        ProtocolError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::Aborted => f.write_str("client aborted negotiation"),
            Closed::Disconnected => f.write_str("client disconnected"),
            Closed::PeerClosed => f.write_str("connection closed by client"),
            Closed::ExportGone => f.write_str("export removed"),
            Closed::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

/// Negotiation state kept across options.
#[derive(Debug, Default)]
struct Negotiation {
    fixed_newstyle: bool,
    no_zeroes: bool,
    structured: bool,
    /// The export `NBD_OPT_SET_META_CONTEXT` selected `base:allocation` for.
    meta_export: Option<String>,
}

/// What the client was promised for the transmission phase.
#[derive(Debug)]
struct Transmission {
    export: String,
    size: u64,
    flags: u16,
    structured: bool,
    base_allocation: bool,
}

#[derive(Debug)]
enum Phase {
    ClientFlags,
    Options,
    /// Dropping the data of an option, then sending `reply`.
    SkipOption {
        remaining: usize,
        reply: Vec<u8>,
    },
    Transmission(Transmission),
    Closed,
}

/// One NBD connection, server side, without I/O.
///
/// ```
/// use std::collections::BTreeMap;
/// use strata_qsd::nbd::{MemoryBackend, Session, SessionConfig};
///
/// let mut exports = BTreeMap::new();
/// exports.insert("disk".to_string(), (MemoryBackend::new(1 << 20), None));
/// let mut session = Session::new(SessionConfig::default());
/// // The greeting: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE | NO_ZEROES.
/// assert_eq!(session.pending_output(), b"NBDMAGICIHAVEOPT\x00\x03");
/// session.consume_output(18);
/// // Client flags, then NBD_OPT_ABORT.
/// session.receive(&[0, 0, 0, 3], &mut exports);
/// session.receive(b"IHAVEOPT\x00\x00\x00\x02\x00\x00\x00\x00", &mut exports);
/// assert!(session.closed().is_some());
/// assert_eq!(session.pending_output().len(), 20); // the NBD_REP_ACK
/// ```
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    phase: Phase,
    neg: Negotiation,
    input: Vec<u8>,
    input_pos: usize,
    output: Vec<u8>,
    output_pos: usize,
    closed: Option<Closed>,
}

/// Result of handling one message.
enum Step {
    /// Need more input.
    Wait,
    /// Consumed this many bytes; go on.
    Consumed(usize),
}

impl Session {
    /// A new connection; its greeting is already in
    /// [`pending_output`](Self::pending_output).
    pub fn new(config: SessionConfig) -> Session {
        let mut output = Vec::with_capacity(64);
        output.put_u64(wire::NBDMAGIC);
        output.put_u64(wire::IHAVEOPT);
        output.put_u16(wire::FLAG_FIXED_NEWSTYLE | wire::FLAG_NO_ZEROES);
        Session {
            config,
            phase: Phase::ClientFlags,
            neg: Negotiation::default(),
            input: Vec::new(),
            input_pos: 0,
            output,
            output_pos: 0,
            closed: None,
        }
    }

    /// Bytes to send to the client.
    pub fn pending_output(&self) -> &[u8] {
        &self.output[self.output_pos..]
    }

    /// Mark `n` bytes of [`pending_output`](Self::pending_output) as sent.
    pub fn consume_output(&mut self, n: usize) {
        self.output_pos = (self.output_pos + n).min(self.output.len());
        if self.output_pos == self.output.len() {
            self.output.clear();
            self.output_pos = 0;
        } else if self.output_pos > self.output.len() / 2 {
            self.output.drain(..self.output_pos);
            self.output_pos = 0;
        }
    }

    /// How many more bytes [`receive`](Self::receive) accepts now.  Zero
    /// while too much output waits (send it, then call
    /// [`process`](Self::process)) or once the session is closed.
    pub fn input_room(&self) -> usize {
        if self.closed.is_some() || self.backlogged() {
            return 0;
        }
        match self.phase {
            Phase::SkipOption { remaining, .. } if self.buffered() == 0 => remaining.max(1),
            _ => INPUT_LIMIT.saturating_sub(self.buffered()),
        }
    }

    /// Feed bytes received from the client and handle every complete
    /// message.  Accepts at most [`input_room`](Self::input_room) bytes and
    /// returns how many it took.
    pub fn receive(&mut self, data: &[u8], exports: &mut dyn ExportLookup) -> usize {
        let n = data.len().min(self.input_room());
        self.input.extend_from_slice(&data[..n]);
        self.process(exports);
        n
    }

    /// Handle buffered input (after output has drained below the limit).
    pub fn process(&mut self, exports: &mut dyn ExportLookup) {
        let input = std::mem::take(&mut self.input);
        while self.closed.is_none() && !self.backlogged() {
            match self.step(&input[self.input_pos..], exports) {
                Step::Wait => break,
                Step::Consumed(n) => self.input_pos += n,
            }
        }
        self.input = input;
        if self.closed.is_some() {
            self.input.clear();
            self.input_pos = 0;
        } else if self.input_pos > 0 {
            self.input.drain(..self.input_pos);
            self.input_pos = 0;
        }
    }

    /// The client closed its side: the session ends (pending output may
    /// still be sent).
    pub fn end_of_input(&mut self) {
        if self.closed.is_none() {
            self.close(Closed::PeerClosed);
        }
    }

    /// Why the session ended, once it has.  Send the pending output, then
    /// close the connection.
    pub fn closed(&self) -> Option<&Closed> {
        self.closed.as_ref()
    }

    /// Closed and nothing left to send.
    pub fn is_finished(&self) -> bool {
        self.closed.is_some() && self.pending_output().is_empty()
    }

    /// The export this connection is attached to, in the transmission phase.
    pub fn export_name(&self) -> Option<&str> {
        match &self.phase {
            Phase::Transmission(t) => Some(&t.export),
            _ => None,
        }
    }

    fn buffered(&self) -> usize {
        self.input.len() - self.input_pos
    }

    fn backlogged(&self) -> bool {
        self.pending_output().len() >= OUTPUT_HIGH_WATER
    }

    fn close(&mut self, why: Closed) {
        self.phase = Phase::Closed;
        self.closed = Some(why);
    }

    fn protocol_error(&mut self, kind: ProtocolErrorKind, message: impl Into<String>) {
        self.close(Closed::Protocol(ProtocolError::new(kind, message)));
    }

    fn step(&mut self, input: &[u8], exports: &mut dyn ExportLookup) -> Step {
        match &mut self.phase {
            Phase::ClientFlags => self.client_flags(input),
            Phase::Options => self.option(input, exports),
            Phase::SkipOption { remaining, reply } => {
                let n = (*remaining).min(input.len());
                *remaining -= n;
                if *remaining == 0 {
                    let reply = std::mem::take(reply);
                    self.output.extend_from_slice(&reply);
                    self.phase = Phase::Options;
                } else if n == 0 {
                    return Step::Wait;
                }
                Step::Consumed(n)
            }
            Phase::Transmission(_) => self.request(input, exports),
            Phase::Closed => Step::Wait,
        }
    }

    // ---- handshake ----

    fn client_flags(&mut self, input: &[u8]) -> Step {
        let Some(b) = input.get(..4) else {
            return Step::Wait;
        };
        let mut flags = be_u32(b);
        self.neg.fixed_newstyle = flags & wire::FLAG_C_FIXED_NEWSTYLE != 0;
        self.neg.no_zeroes = flags & wire::FLAG_C_NO_ZEROES != 0;
        flags &= !(wire::FLAG_C_FIXED_NEWSTYLE | wire::FLAG_C_NO_ZEROES);
        if flags != 0 {
            self.protocol_error(
                ProtocolErrorKind::BadClientFlags,
                format!("Unknown client flags 0x{flags:x} received"),
            );
        } else {
            self.phase = Phase::Options;
        }
        Step::Consumed(4)
    }

    fn option(&mut self, input: &[u8], exports: &mut dyn ExportLookup) -> Step {
        let Some(h) = input.get(..16) else {
            return Step::Wait;
        };
        let (magic, option, length) = (be_u64(h), be_u32(&h[8..]), be_u32(&h[12..]));
        if magic != wire::IHAVEOPT {
            self.protocol_error(ProtocolErrorKind::BadMagic, "Bad magic received");
            return Step::Consumed(16);
        }
        if length > wire::MAX_BUFFER_SIZE {
            self.protocol_error(
                ProtocolErrorKind::OptionTooLong,
                format!(
                    "len ({length}) is larger than max len ({})",
                    wire::MAX_BUFFER_SIZE
                ),
            );
            return Step::Consumed(16);
        }
        let length = length as usize;
        if !self.neg.fixed_newstyle && option != opt::EXPORT_NAME {
            self.protocol_error(
                ProtocolErrorKind::UnsupportedOption,
                format!(
                    "Unsupported option {option} ({})",
                    wire::option_name(option)
                ),
            );
            return Step::Consumed(16);
        }
        let name = wire::option_name(option);
        let skip_with = |reply: Vec<u8>| Phase::SkipOption {
            remaining: length,
            reply,
        };
        match option {
            opt::ABORT => {
                // The client may hang up without reading this; QEMU replies anyway.
                option_reply(&mut self.output, option, rep::ACK, &[]);
                self.close(Closed::Aborted);
                return Step::Consumed(16);
            }
            opt::EXPORT_NAME if length > wire::MAX_STRING_SIZE as usize => {
                self.protocol_error(ProtocolErrorKind::OptionTooLong, "Bad length received");
                return Step::Consumed(16);
            }
            opt::EXPORT_NAME
            | opt::INFO
            | opt::GO
            | opt::LIST_META_CONTEXT
            | opt::SET_META_CONTEXT
                if length <= OPTION_BUFFER_LIMIT => {}
            opt::EXPORT_NAME
            | opt::INFO
            | opt::GO
            | opt::LIST_META_CONTEXT
            | opt::SET_META_CONTEXT => {
                let reply = option_error(
                    option,
                    rep::ERR_TOO_BIG,
                    &format!("option '{name}' is too long"),
                );
                self.phase = skip_with(reply);
                return Step::Consumed(16);
            }
            opt::LIST | opt::STRUCTURED_REPLY | opt::STARTTLS if length > 0 => {
                let reply = option_error(
                    option,
                    rep::ERR_INVALID,
                    &format!("option '{name}' has unexpected length"),
                );
                self.phase = skip_with(reply);
                return Step::Consumed(16);
            }
            opt::LIST | opt::STRUCTURED_REPLY | opt::STARTTLS => {}
            _ => {
                let msg = format!("Unsupported option {option} ({name})");
                self.phase = skip_with(option_error(option, rep::ERR_UNSUP, &msg));
                return Step::Consumed(16);
            }
        }
        let Some(payload) = input.get(16..16 + length) else {
            return Step::Wait;
        };
        match option {
            opt::LIST => self.opt_list(exports),
            opt::STRUCTURED_REPLY => self.opt_structured_reply(),
            opt::STARTTLS => {
                let reply = option_error(option, rep::ERR_POLICY, "TLS not configured");
                self.output.extend_from_slice(&reply);
            }
            opt::EXPORT_NAME => self.opt_export_name(payload, exports),
            opt::INFO | opt::GO => {
                if let Err(reply) = self.opt_info(option, payload, exports) {
                    self.output.extend_from_slice(&reply);
                }
            }
            _ => {
                if let Err(reply) = self.opt_meta_context(option, payload, exports) {
                    self.output.extend_from_slice(&reply);
                }
            }
        }
        Step::Consumed(16 + length)
    }

    fn opt_list(&mut self, exports: &mut dyn ExportLookup) {
        for name in exports.export_names() {
            let description = exports.description(&name).unwrap_or_default();
            let mut data = Vec::with_capacity(4 + name.len() + description.len());
            data.put_u32(name.len() as u32);
            data.extend_from_slice(name.as_bytes());
            data.extend_from_slice(description.as_bytes());
            option_reply(&mut self.output, opt::LIST, rep::SERVER, &data);
        }
        option_reply(&mut self.output, opt::LIST, rep::ACK, &[]);
    }

    fn opt_structured_reply(&mut self) {
        if self.neg.structured {
            let reply = option_error(
                opt::STRUCTURED_REPLY,
                rep::ERR_INVALID,
                "structured reply already negotiated",
            );
            self.output.extend_from_slice(&reply);
        } else {
            self.neg.structured = true;
            option_reply(&mut self.output, opt::STRUCTURED_REPLY, rep::ACK, &[]);
        }
    }

    fn opt_export_name(&mut self, payload: &[u8], exports: &mut dyn ExportLookup) {
        let name = String::from_utf8_lossy(payload).into_owned();
        let Some(t) = self.attach(&name, exports) else {
            self.protocol_error(ProtocolErrorKind::UnknownExport, "export not found");
            return;
        };
        self.output.put_u64(t.size);
        self.output.put_u16(t.flags);
        if !self.neg.no_zeroes {
            self.output.extend_from_slice(&[0; 124]);
        }
        self.phase = Phase::Transmission(t);
    }

    /// The transmission state for export `name`, if it exists.
    fn attach(&self, name: &str, exports: &mut dyn ExportLookup) -> Option<Transmission> {
        let backend = exports.backend(name)?;
        let size = backend.size() & !511;
        let flags = transmission_flags(
            backend.read_only(),
            self.neg.structured,
            self.config.multi_conn,
        );
        Some(Transmission {
            export: name.to_string(),
            size,
            flags,
            structured: self.neg.structured,
            base_allocation: self.neg.structured && self.neg.meta_export.as_deref() == Some(name),
        })
    }

    /// `NBD_OPT_INFO` / `NBD_OPT_GO`; `Err` carries the error reply.
    fn opt_info(
        &mut self,
        option: u32,
        payload: &[u8],
        exports: &mut dyn ExportLookup,
    ) -> Result<(), Vec<u8>> {
        let mut r = OptReader {
            data: payload,
            option,
        };
        let name = r.name()?;
        let requests = r.u16()?;
        let (mut send_name, mut _block_size) = (false, false);
        for _ in 0..requests {
            match r.u16()? {
                info::NAME => send_name = true,
                info::BLOCK_SIZE => _block_size = true,
                _ => {}
            }
        }
        r.finish()?;
        let Some(t) = self.attach(&name, exports) else {
            return Err(unknown_export(option, &name));
        };
        if send_name {
            info_reply(&mut self.output, option, info::NAME, name.as_bytes());
        }
        if let Some(description) = exports.description(&name) {
            info_reply(
                &mut self.output,
                option,
                info::DESCRIPTION,
                description.as_bytes(),
            );
        }
        // Every backend accepts byte-aligned requests, so the minimum is 1
        // whether or not the client asked (QEMU: the request alignment).
        let mut sizes = Vec::with_capacity(12);
        sizes.put_u32(1);
        sizes.put_u32(4096);
        sizes.put_u32(wire::MAX_BUFFER_SIZE);
        info_reply(&mut self.output, option, info::BLOCK_SIZE, &sizes);
        let mut export = Vec::with_capacity(10);
        export.put_u64(t.size);
        export.put_u16(t.flags);
        info_reply(&mut self.output, option, info::EXPORT, &export);
        option_reply(&mut self.output, option, rep::ACK, &[]);
        if option == opt::GO {
            self.phase = Phase::Transmission(t);
        }
        Ok(())
    }

    /// `NBD_OPT_LIST_META_CONTEXT` / `NBD_OPT_SET_META_CONTEXT`.
    fn opt_meta_context(
        &mut self,
        option: u32,
        payload: &[u8],
        exports: &mut dyn ExportLookup,
    ) -> Result<(), Vec<u8>> {
        let name = wire::option_name(option);
        let list = option == opt::LIST_META_CONTEXT;
        if !list {
            if !self.neg.structured {
                let msg =
                    format!("request option '{name}' when structured reply is not negotiated");
                return Err(option_error(option, rep::ERR_INVALID, &msg));
            }
            self.neg.meta_export = None;
        }
        let mut r = OptReader {
            data: payload,
            option,
        };
        let export = r.name()?;
        if exports.backend(&export).is_none() {
            return Err(unknown_export(option, &export));
        }
        let queries = r.u32()?;
        let mut base_allocation = list && queries == 0;
        for _ in 0..queries {
            let len = r.u32()?;
            if len > wire::MAX_STRING_SIZE {
                r.bytes(len as usize)?;
                continue;
            }
            let query = r.string(len as usize)?;
            base_allocation |= match query.strip_prefix("base:") {
                Some("allocation") => true,
                Some("") => list,
                _ => false,
            };
        }
        r.finish()?;
        if base_allocation {
            let mut data = Vec::with_capacity(4 + wire::BASE_ALLOCATION.len());
            data.put_u32(wire::BASE_ALLOCATION_ID);
            data.extend_from_slice(wire::BASE_ALLOCATION.as_bytes());
            option_reply(&mut self.output, option, rep::META_CONTEXT, &data);
        }
        option_reply(&mut self.output, option, rep::ACK, &[]);
        if !list && base_allocation {
            self.neg.meta_export = Some(export);
        }
        Ok(())
    }

    // ---- transmission ----

    fn request(&mut self, input: &[u8], exports: &mut dyn ExportLookup) -> Step {
        let Some(h) = input.get(..wire::REQUEST_HEADER_LEN) else {
            return Step::Wait;
        };
        let req = Request {
            magic: be_u32(h),
            flags: be_u16(&h[4..]),
            kind: be_u16(&h[6..]),
            handle: be_u64(&h[8..]),
            offset: be_u64(&h[16..]),
            len: be_u32(&h[24..]),
        };
        let Phase::Transmission(t) = &self.phase else {
            unreachable!("request outside transmission")
        };
        let structured = t.structured;
        if req.magic != wire::REQUEST_MAGIC {
            // QEMU answers the bad header with EINVAL, then hangs up.
            let message = format!("invalid magic (got 0x{:x})", req.magic);
            generic_reply(
                &mut self.output,
                structured,
                req.handle,
                errno::EINVAL,
                &message,
            );
            self.protocol_error(ProtocolErrorKind::BadMagic, message);
            return Step::Consumed(wire::REQUEST_HEADER_LEN);
        }
        if req.kind == cmd::DISC {
            self.close(Closed::Disconnected);
            return Step::Consumed(wire::REQUEST_HEADER_LEN);
        }
        let has_length_limit = matches!(req.kind, cmd::READ | cmd::WRITE | cmd::CACHE);
        if has_length_limit && req.len > wire::MAX_BUFFER_SIZE {
            let message = format!(
                "len ({}) is larger than max len ({})",
                req.len,
                wire::MAX_BUFFER_SIZE
            );
            generic_reply(
                &mut self.output,
                structured,
                req.handle,
                errno::EINVAL,
                &message,
            );
            if req.kind == cmd::WRITE {
                self.protocol_error(ProtocolErrorKind::RequestTooLarge, message);
            }
            return Step::Consumed(wire::REQUEST_HEADER_LEN);
        }
        let payload_len = if req.kind == cmd::WRITE {
            req.len as usize
        } else {
            0
        };
        let Some(payload) =
            input.get(wire::REQUEST_HEADER_LEN..wire::REQUEST_HEADER_LEN + payload_len)
        else {
            return Step::Wait;
        };
        let consumed = wire::REQUEST_HEADER_LEN + payload_len;
        let export = t.export.clone();
        let Some(backend) = exports.backend(&export) else {
            generic_reply(
                &mut self.output,
                structured,
                req.handle,
                errno::ESHUTDOWN,
                "export removed",
            );
            self.close(Closed::ExportGone);
            return Step::Consumed(consumed);
        };
        let Phase::Transmission(t) = &self.phase else {
            unreachable!()
        };
        if let Err(message) = validate(t, &req) {
            generic_reply(
                &mut self.output,
                structured,
                req.handle,
                errno::EINVAL,
                &message,
            );
        } else {
            execute(&mut self.output, t, &req, payload, backend);
        }
        Step::Consumed(consumed)
    }
}

/// One transmission request header.
#[derive(Debug)]
struct Request {
    magic: u32,
    flags: u16,
    kind: u16,
    handle: u64,
    offset: u64,
    len: u32,
}

/// QEMU's sanity checks of `nbd_co_receive_request`, in its order; QEMU
/// 10.0.2 answers all of them with `EINVAL`.
fn validate(t: &Transmission, req: &Request) -> Result<(), String> {
    let writes = matches!(req.kind, cmd::WRITE | cmd::TRIM | cmd::WRITE_ZEROES);
    if writes && t.flags & tflag::READ_ONLY != 0 {
        return Err("Export is read-only".to_string());
    }
    if req.offset > t.size || u64::from(req.len) > t.size - req.offset {
        return Err(format!(
            "operation past EOF; From: {}, Len: {}, Size: {}",
            req.offset, req.len, t.size
        ));
    }
    let mut valid = cmd_flag::FUA;
    match req.kind {
        cmd::READ if t.structured => valid |= cmd_flag::DF,
        cmd::WRITE_ZEROES => valid |= cmd_flag::NO_HOLE | cmd_flag::FAST_ZERO,
        cmd::BLOCK_STATUS => valid |= cmd_flag::REQ_ONE,
        _ => {}
    }
    if req.flags & !valid != 0 {
        return Err(format!(
            "unsupported flags for command {} (got 0x{:x})",
            wire::command_name(req.kind),
            req.flags
        ));
    }
    Ok(())
}

/// Run a validated request against the backend and append its reply.
fn execute(
    out: &mut Vec<u8>,
    t: &Transmission,
    req: &Request,
    payload: &[u8],
    backend: &mut dyn NbdBackend,
) {
    let fua = req.flags & cmd_flag::FUA != 0;
    let (offset, len) = (req.offset, u64::from(req.len));
    let outcome = match req.kind {
        cmd::READ => return read(out, t, req, backend),
        cmd::BLOCK_STATUS => return block_status(out, t, req, backend),
        cmd::WRITE => backend
            .write(offset, payload)
            .and_then(|()| flush_if(fua, backend))
            .map_err(|e| (e, "writing to file failed")),
        cmd::WRITE_ZEROES => {
            let flags = ZeroFlags {
                may_unmap: req.flags & cmd_flag::NO_HOLE == 0,
                fast_only: req.flags & cmd_flag::FAST_ZERO != 0,
            };
            backend
                .write_zeroes(offset, len, flags)
                .and_then(|()| flush_if(fua, backend))
                .map_err(|e| (e, "writing to file failed"))
        }
        cmd::TRIM => backend
            .trim(offset, len)
            .and_then(|()| flush_if(fua, backend))
            .map_err(|e| (e, "discard failed")),
        cmd::FLUSH => backend.flush().map_err(|e| (e, "flush failed")),
        cmd::CACHE => backend
            .cache(offset, req.len)
            .map_err(|e| (e, "caching data failed")),
        other => {
            let message = format!("invalid request type ({other}) received");
            return generic_reply(out, t.structured, req.handle, errno::EINVAL, &message);
        }
    };
    match outcome {
        Ok(()) => simple_reply(out, 0, req.handle),
        Err((e, message)) => {
            generic_reply(out, t.structured, req.handle, wire::nbd_errno(&e), message)
        }
    }
}

fn flush_if(fua: bool, backend: &mut dyn NbdBackend) -> std::io::Result<()> {
    if fua {
        backend.flush()
    } else {
        Ok(())
    }
}

fn read(out: &mut Vec<u8>, t: &Transmission, req: &Request, backend: &mut dyn NbdBackend) {
    // QEMU flushes before a FUA read (the protocol only defines FUA for writes).
    if req.flags & cmd_flag::FUA != 0 {
        if let Err(e) = backend.flush() {
            return generic_reply(
                out,
                t.structured,
                req.handle,
                wire::nbd_errno(&e),
                "flush failed",
            );
        }
    }
    if t.structured && req.flags & cmd_flag::DF == 0 && req.len > 0 {
        return sparse_read(out, req, backend);
    }
    let len = req.len as usize;
    let start = out.len();
    if t.structured {
        if len == 0 {
            return chunk_header(out, chunk::FLAG_DONE, chunk::NONE, req.handle, 0);
        }
        chunk_header(
            out,
            chunk::FLAG_DONE,
            chunk::OFFSET_DATA,
            req.handle,
            8 + req.len,
        );
        out.put_u64(req.offset);
    } else {
        simple_reply(out, 0, req.handle);
    }
    let data_start = out.len();
    out.resize(data_start + len, 0);
    if let Err(e) = backend.read(req.offset, &mut out[data_start..]) {
        out.truncate(start);
        generic_reply(
            out,
            t.structured,
            req.handle,
            wire::nbd_errno(&e),
            "reading from file failed",
        );
    }
}

/// A structured read that sends zero extents as holes, as QEMU's
/// `nbd_co_send_sparse_read` does.
fn sparse_read(out: &mut Vec<u8>, req: &Request, backend: &mut dyn NbdBackend) {
    let total = u64::from(req.len);
    let mut progress = 0u64;
    while progress < total {
        let at = req.offset + progress;
        let remaining = (total - progress) as u32;
        let extents = match backend.block_status(at, remaining) {
            Ok(raw) => normalize_extents(&raw, remaining, usize::MAX),
            Err(e) => {
                let message = format!(
                    "unable to check for holes: {}",
                    strerror(wire::nbd_errno(&e))
                );
                return error_chunk(out, req.handle, wire::nbd_errno(&e), &message);
            }
        };
        if extents.is_empty() {
            return error_chunk(
                out,
                req.handle,
                errno::EIO,
                "unable to check for holes: no extents",
            );
        }
        for (n, flags) in extents {
            let chunk_at = req.offset + progress;
            progress += u64::from(n);
            let done = if progress == total {
                chunk::FLAG_DONE
            } else {
                0
            };
            if flags & wire::state::ZERO != 0 {
                chunk_header(out, done, chunk::OFFSET_HOLE, req.handle, 12);
                out.put_u64(chunk_at);
                out.put_u32(n);
                continue;
            }
            let start = out.len();
            chunk_header(out, done, chunk::OFFSET_DATA, req.handle, 8 + n);
            out.put_u64(chunk_at);
            let data_start = out.len();
            out.resize(data_start + n as usize, 0);
            if let Err(e) = backend.read(chunk_at, &mut out[data_start..]) {
                // Unlike QEMU (which drops the connection here), report the
                // error: the chunks already sent stay valid.
                out.truncate(start);
                return error_chunk(
                    out,
                    req.handle,
                    wire::nbd_errno(&e),
                    "reading from file failed",
                );
            }
        }
    }
}

fn block_status(out: &mut Vec<u8>, t: &Transmission, req: &Request, backend: &mut dyn NbdBackend) {
    if req.len == 0 {
        return generic_reply(
            out,
            t.structured,
            req.handle,
            errno::EINVAL,
            "need non-zero length",
        );
    }
    if !t.base_allocation {
        return generic_reply(
            out,
            t.structured,
            req.handle,
            errno::EINVAL,
            "CMD_BLOCK_STATUS not negotiated",
        );
    }
    let max = if req.flags & cmd_flag::REQ_ONE != 0 {
        1
    } else {
        wire::MAX_BLOCK_STATUS_EXTENTS
    };
    let mut extents: Vec<(u32, u32)> = Vec::new();
    let mut covered = 0u32;
    while covered < req.len {
        let remaining = req.len - covered;
        let raw = match backend.block_status(req.offset + u64::from(covered), remaining) {
            Ok(raw) => raw,
            Err(e) => {
                return error_chunk(
                    out,
                    req.handle,
                    wire::nbd_errno(&e),
                    "can't get block status",
                )
            }
        };
        let more = normalize_extents(&raw, remaining, usize::MAX);
        if more.is_empty() {
            return error_chunk(out, req.handle, errno::EIO, "can't get block status");
        }
        if append_extents(&mut extents, &more, max) {
            break;
        }
        covered += more.iter().map(|e| e.0).sum::<u32>();
    }
    chunk_header(
        out,
        chunk::FLAG_DONE,
        chunk::BLOCK_STATUS,
        req.handle,
        4 + 8 * extents.len() as u32,
    );
    out.put_u32(wire::BASE_ALLOCATION_ID);
    for (len, flags) in extents {
        out.put_u32(len);
        out.put_u32(flags);
    }
}

/// Clip a backend's extents to `len`, drop empty ones, keep only the
/// `base:allocation` bits and merge neighbours with equal flags.
fn normalize_extents(raw: &[(u32, u32)], len: u32, max: usize) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut left = len;
    let clipped = raw
        .iter()
        .map(|&(n, flags)| (n, flags & (wire::state::HOLE | wire::state::ZERO)));
    for (n, flags) in clipped {
        let n = n.min(left);
        if n == 0 {
            continue;
        }
        left -= n;
        if append_extents(&mut out, &[(n, flags)], max) {
            break;
        }
    }
    out
}

/// Append extents, merging equal flags; true once `max` extents are full and
/// an extent did not fit (QEMU's `nbd_extent_array_add`).
fn append_extents(extents: &mut Vec<(u32, u32)>, more: &[(u32, u32)], max: usize) -> bool {
    for &(n, flags) in more {
        if let Some(last) = extents.last_mut().filter(|last| last.1 == flags) {
            last.0 += n;
        } else if extents.len() >= max {
            return true;
        } else {
            extents.push((n, flags));
        }
    }
    false
}

// ---- reply encoding ----

fn option_reply(out: &mut Vec<u8>, option: u32, kind: u32, data: &[u8]) {
    out.put_u64(wire::REPLY_MAGIC);
    out.put_u32(option);
    out.put_u32(kind);
    out.put_u32(data.len() as u32);
    out.extend_from_slice(data);
}

fn option_error(option: u32, kind: u32, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + message.len());
    option_reply(&mut out, option, kind, message.as_bytes());
    out
}

fn info_reply(out: &mut Vec<u8>, option: u32, item: u16, data: &[u8]) {
    let mut payload = Vec::with_capacity(2 + data.len());
    payload.put_u16(item);
    payload.extend_from_slice(data);
    option_reply(out, option, rep::INFO, &payload);
}

/// `export '<name>' not present`, the name cut at 80 characters like QEMU's
/// `nbd_sanitize_name`.
fn unknown_export(option: u32, name: &str) -> Vec<u8> {
    let sane = match name.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &name[..cut]),
        None => name.to_string(),
    };
    option_error(
        option,
        rep::ERR_UNKNOWN,
        &format!("export '{sane}' not present"),
    )
}

fn simple_reply(out: &mut Vec<u8>, error: u32, handle: u64) {
    out.put_u32(wire::SIMPLE_REPLY_MAGIC);
    out.put_u32(error);
    out.put_u64(handle);
}

fn chunk_header(out: &mut Vec<u8>, flags: u16, kind: u16, handle: u64, len: u32) {
    out.put_u32(wire::STRUCTURED_REPLY_MAGIC);
    out.put_u16(flags);
    out.put_u16(kind);
    out.put_u64(handle);
    out.put_u32(len);
}

fn error_chunk(out: &mut Vec<u8>, handle: u64, error: u32, message: &str) {
    let message = &message.as_bytes()[..message.len().min(u16::MAX as usize)];
    chunk_header(
        out,
        chunk::FLAG_DONE,
        chunk::ERROR,
        handle,
        6 + message.len() as u32,
    );
    out.put_u32(error);
    out.put_u16(message.len() as u16);
    out.extend_from_slice(message);
}

/// QEMU's `nbd_send_generic_reply`: errors as a structured error chunk when
/// structured replies were negotiated, otherwise (and on success) a simple reply.
fn generic_reply(out: &mut Vec<u8>, structured: bool, handle: u64, error: u32, message: &str) {
    if structured && error != 0 {
        error_chunk(out, handle, error, message);
    } else {
        simple_reply(out, error, handle);
    }
}

fn transmission_flags(read_only: bool, structured: bool, multi_conn: bool) -> u16 {
    let mut flags = tflag::HAS_FLAGS | tflag::SEND_FLUSH | tflag::SEND_FUA | tflag::SEND_CACHE;
    if multi_conn {
        flags |= tflag::CAN_MULTI_CONN;
    }
    if read_only {
        flags |= tflag::READ_ONLY;
    } else {
        flags |= tflag::SEND_TRIM | tflag::SEND_WRITE_ZEROES | tflag::SEND_FAST_ZERO;
    }
    if structured {
        flags |= tflag::SEND_DF;
    }
    flags
}

fn strerror(nbd_errno: u32) -> &'static str {
    match nbd_errno {
        errno::EPERM => "Operation not permitted",
        errno::EIO => "Input/output error",
        errno::ENOMEM => "Cannot allocate memory",
        errno::ENOSPC => "No space left on device",
        errno::EOVERFLOW => "Value too large for defined data type",
        errno::ENOTSUP => "Operation not supported",
        errno::ESHUTDOWN => "Cannot send after transport endpoint shutdown",
        _ => "Invalid argument",
    }
}

/// Reads the fields of one option's data; every failure is the option
/// error reply QEMU sends for it.
struct OptReader<'a> {
    data: &'a [u8],
    option: u32,
}

impl<'a> OptReader<'a> {
    fn invalid(&self, message: &str) -> Vec<u8> {
        option_error(self.option, rep::ERR_INVALID, message)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Vec<u8>> {
        if n > self.data.len() {
            let message = format!(
                "Inconsistent lengths in option {}",
                wire::option_name(self.option)
            );
            return Err(self.invalid(&message));
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, Vec<u8>> {
        self.bytes(2).map(be_u16)
    }

    fn u32(&mut self) -> Result<u32, Vec<u8>> {
        self.bytes(4).map(be_u32)
    }

    /// `n` bytes without NUL, as text (invalid UTF-8 is replaced, so it
    /// matches no export).
    fn string(&mut self, n: usize) -> Result<String, Vec<u8>> {
        let b = self.bytes(n)?;
        if b.contains(&0) {
            let message = format!(
                "Unexpected embedded NUL in option {}",
                wire::option_name(self.option)
            );
            return Err(self.invalid(&message));
        }
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    /// A length-prefixed export name (`nbd_opt_read_name`).
    fn name(&mut self) -> Result<String, Vec<u8>> {
        let len = self.u32()?;
        if len > wire::MAX_STRING_SIZE {
            return Err(self.invalid(&format!("Invalid name length: {len}")));
        }
        self.string(len as usize)
    }

    fn finish(&self) -> Result<(), Vec<u8>> {
        if self.data.is_empty() {
            Ok(())
        } else {
            let message = format!(
                "option '{}' has unexpected length",
                wire::option_name(self.option)
            );
            Err(self.invalid(&message))
        }
    }
}
