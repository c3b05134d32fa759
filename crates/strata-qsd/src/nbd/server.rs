//! Sockets for [`Session`]s: listening, a blocking loop, and a non-blocking
//! connection for an event loop.
//!
//! The daemon owns its block layer on one thread and serves NBD from its
//! event loop: [`NbdListener::bind`], set it non-blocking,
//! [`NbdListener::accept`] new streams into [`Connection`]s and call
//! [`Connection::pump`] with the exports whenever the loop runs (or when
//! `poll(2)` says a stream's fd is ready; see [`Connection::wants_write`]).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use super::backend::ExportLookup;
use super::session::{Closed, Session, SessionConfig};

/// Where a server listens (`nbd-server-start`'s `addr`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NbdAddress {
    /// A Unix socket path (an existing socket file there is replaced, as QEMU does).
    Unix(PathBuf),
    /// A TCP address; only loopback addresses are accepted.
    Tcp(SocketAddr),
}

/// A bound NBD listening socket.
#[derive(Debug)]
pub enum NbdListener {
    /// Unix socket.
    Unix(UnixListener),
    /// TCP socket on loopback.
    Tcp(TcpListener),
}

/// An accepted client connection.
#[derive(Debug)]
pub enum NbdStream {
    /// Unix socket.
    Unix(UnixStream),
    /// TCP socket.
    Tcp(TcpStream),
}

impl NbdListener {
    /// Bind `addr`.  A TCP address that is not loopback is refused with
    /// [`io::ErrorKind::InvalidInput`].
    pub fn bind(addr: &NbdAddress) -> io::Result<NbdListener> {
        match addr {
            NbdAddress::Unix(path) => {
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                UnixListener::bind(path).map(NbdListener::Unix)
            }
            NbdAddress::Tcp(sa) if !sa.ip().is_loopback() => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "NBD over TCP is served on loopback addresses only, not {}",
                    sa.ip()
                ),
            )),
            NbdAddress::Tcp(sa) => TcpListener::bind(sa).map(NbdListener::Tcp),
        }
    }

    /// Accept one connection (blocking unless made non-blocking).
    pub fn accept(&self) -> io::Result<NbdStream> {
        match self {
            NbdListener::Unix(l) => l.accept().map(|(s, _)| NbdStream::Unix(s)),
            NbdListener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(NbdStream::Tcp(s))
            }
        }
    }

    /// Switch accepting between blocking and non-blocking.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            NbdListener::Unix(l) => l.set_nonblocking(nonblocking),
            NbdListener::Tcp(l) => l.set_nonblocking(nonblocking),
        }
    }

    /// The bound address (a TCP port of 0 is resolved).
    pub fn local_addr(&self) -> io::Result<NbdAddress> {
        match self {
            NbdListener::Unix(l) => {
                let addr = l.local_addr()?;
                let path = addr
                    .as_pathname()
                    .ok_or_else(|| io::Error::other("unnamed unix socket"))?;
                Ok(NbdAddress::Unix(path.to_path_buf()))
            }
            NbdListener::Tcp(l) => l.local_addr().map(NbdAddress::Tcp),
        }
    }
}

impl AsRawFd for NbdListener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            NbdListener::Unix(l) => l.as_raw_fd(),
            NbdListener::Tcp(l) => l.as_raw_fd(),
        }
    }
}

impl NbdStream {
    /// Switch the stream between blocking and non-blocking.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            NbdStream::Unix(s) => s.set_nonblocking(nonblocking),
            NbdStream::Tcp(s) => s.set_nonblocking(nonblocking),
        }
    }

    /// Close both directions.
    pub fn shutdown(&self) -> io::Result<()> {
        match self {
            NbdStream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            NbdStream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        }
    }
}

impl Read for NbdStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            NbdStream::Unix(s) => s.read(buf),
            NbdStream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for NbdStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            NbdStream::Unix(s) => s.write(buf),
            NbdStream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for NbdStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            NbdStream::Unix(s) => s.as_raw_fd(),
            NbdStream::Tcp(s) => s.as_raw_fd(),
        }
    }
}

/// Socket reads go through a buffer this large.
const READ_CHUNK: usize = 256 * 1024;

/// Errors meaning the client has gone away.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// Serve one connection on a blocking stream until it ends.
///
/// Returns why the session ended; `Err` only for socket errors other than
/// the client going away.
pub fn serve_connection<S: Read + Write>(
    mut stream: S,
    config: SessionConfig,
    exports: &mut dyn ExportLookup,
) -> io::Result<Closed> {
    let mut session = Session::new(config);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        while !session.pending_output().is_empty() {
            match stream.write(session.pending_output()) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => session.consume_output(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_disconnect(&e) => return Ok(Closed::PeerClosed),
                Err(e) => return Err(e),
            }
        }
        if let Some(closed) = session.closed() {
            return Ok(closed.clone());
        }
        // Requests held back while the output was full go first.
        session.process(exports);
        let room = session.input_room();
        if !session.pending_output().is_empty() || room == 0 {
            continue;
        }
        match stream.read(&mut buf[..room.min(READ_CHUNK)]) {
            Ok(0) => session.end_of_input(),
            Ok(n) => {
                session.receive(&buf[..n], exports);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_disconnect(&e) => session.end_of_input(),
            Err(e) => return Err(e),
        }
    }
}

/// What [`Connection::pump`] left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pump {
    /// Waiting for the socket; pump again when it is readable (or writable,
    /// if [`Connection::wants_write`]).
    Open,
    /// The session ended and everything was sent: drop the connection.
    Finished(Closed),
}

/// A connection on a non-blocking stream, for an event loop that owns the
/// exports.
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
    session: Session,
    buf: Vec<u8>,
}

/// Socket operations per [`Connection::pump`], so one busy client cannot
/// starve the rest of the event loop.
const PUMP_ROUNDS: usize = 16;

impl<S: Read + Write> Connection<S> {
    /// Wrap a non-blocking stream; the greeting goes out on the first pump.
    pub fn new(stream: S, config: SessionConfig) -> Connection<S> {
        Connection {
            stream,
            session: Session::new(config),
            buf: vec![0; READ_CHUNK],
        }
    }

    /// Move bytes both ways until the socket would block (or a round limit
    /// is reached), handling requests against `exports`.
    pub fn pump(&mut self, exports: &mut dyn ExportLookup) -> io::Result<Pump> {
        for _ in 0..PUMP_ROUNDS {
            let wrote = self.write_out()?;
            if let Some(finished) = self.finished() {
                return Ok(finished);
            }
            // Requests held back while the output was full go first.
            let before = (
                self.session.pending_output().len(),
                self.session.closed().is_some(),
            );
            self.session.process(exports);
            let processed = before
                != (
                    self.session.pending_output().len(),
                    self.session.closed().is_some(),
                );
            let room = self.session.input_room();
            if room == 0 {
                if !wrote && !processed {
                    break;
                }
                continue;
            }
            let read = match self.stream.read(&mut self.buf[..room.min(READ_CHUNK)]) {
                Ok(0) => {
                    self.session.end_of_input();
                    true
                }
                Ok(n) => {
                    self.session.receive(&self.buf[..n], exports);
                    true
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
                Err(e) if is_disconnect(&e) => {
                    self.session.end_of_input();
                    true
                }
                Err(e) => return Err(e),
            };
            if !wrote && !read && !processed {
                break;
            }
        }
        // A session that closed in the last round with nothing left to send
        // wants neither reading nor writing: poll would never wake it again.
        Ok(self.finished().unwrap_or(Pump::Open))
    }

    /// [`Pump::Finished`] once the session is closed and everything went out.
    fn finished(&self) -> Option<Pump> {
        match self.session.closed() {
            Some(closed) if self.session.pending_output().is_empty() => {
                Some(Pump::Finished(closed.clone()))
            }
            _ => None,
        }
    }

    /// Whether the session takes input now: poll the stream for reading only
    /// then (a full output buffer must drain first).
    pub fn wants_read(&self) -> bool {
        self.session.input_room() > 0
    }

    /// Whether output is waiting for the socket to become writable.
    pub fn wants_write(&self) -> bool {
        !self.session.pending_output().is_empty()
    }

    /// The stream (e.g. for its file descriptor).
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// The protocol state.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Write pending output until the socket would block; true if anything went.
    fn write_out(&mut self) -> io::Result<bool> {
        let mut wrote = false;
        while !self.session.pending_output().is_empty() {
            match self.stream.write(self.session.pending_output()) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.session.consume_output(n);
                    wrote = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_disconnect(&e) => {
                    // Nobody is listening any more: drop what is left.
                    let pending = self.session.pending_output().len();
                    self.session.consume_output(pending);
                    self.session.end_of_input();
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(wrote)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::nbd::MemoryBackend;

    type Map = BTreeMap<String, (MemoryBackend, Option<String>)>;

    fn disk(size: usize) -> Map {
        let mut map = BTreeMap::new();
        map.insert("disk".to_string(), (MemoryBackend::new(size), None));
        map
    }

    /// A client that negotiates `disk` without structured replies, then
    /// sends `count` pipelined maximal reads before reading any reply, and
    /// returns how many replies arrived.
    fn pipelining_client(mut s: UnixStream, count: u64) -> io::Result<u64> {
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut greeting = [0; 18];
        s.read_exact(&mut greeting)?;
        let mut out = vec![0, 0, 0, 3];
        out.extend(b"IHAVEOPT\x00\x00\x00\x07\x00\x00\x00\x0a\x00\x00\x00\x04disk\x00\x00");
        s.write_all(&out)?;
        // BLOCK_SIZE info (20 + 14), EXPORT info (20 + 12), ACK (20).
        let mut replies = [0; 86];
        s.read_exact(&mut replies)?;
        let mut reads = Vec::new();
        for handle in 0..count {
            reads.extend(0x2560_9513u32.to_be_bytes());
            reads.extend([0, 0, 0, 0]);
            reads.extend(handle.to_be_bytes());
            reads.extend(0u64.to_be_bytes());
            reads.extend(crate::nbd::MAX_BUFFER_SIZE.to_be_bytes());
        }
        s.write_all(&reads)?;
        let mut reply = vec![0; 16 + crate::nbd::MAX_BUFFER_SIZE as usize];
        for handle in 0..count {
            s.read_exact(&mut reply)?;
            assert_eq!(&reply[8..16], &handle.to_be_bytes());
        }
        Ok(count)
    }

    #[test]
    fn blocking_server_answers_pipelined_reads_past_the_output_limit() {
        let (server_end, client_end) = UnixStream::pair().unwrap();
        let client = std::thread::spawn(move || pipelining_client(client_end, 4));
        let mut exports = disk(64 << 20);
        let closed = serve_connection(server_end, SessionConfig::default(), &mut exports).unwrap();
        assert_eq!(client.join().unwrap().unwrap(), 4);
        assert_eq!(closed, Closed::PeerClosed);
    }

    #[test]
    fn event_loop_connection_answers_pipelined_reads_past_the_output_limit() {
        let (server_end, client_end) = UnixStream::pair().unwrap();
        server_end.set_nonblocking(true).unwrap();
        let client = std::thread::spawn(move || pipelining_client(client_end, 4));
        let mut exports = disk(64 << 20);
        let mut conn = Connection::new(server_end, SessionConfig::default());
        let closed = loop {
            match conn.pump(&mut exports).unwrap() {
                Pump::Open => std::thread::sleep(Duration::from_micros(100)),
                Pump::Finished(closed) => break closed,
            }
        };
        assert_eq!(client.join().unwrap().unwrap(), 4);
        assert_eq!(closed, Closed::PeerClosed);
        assert!(!conn.wants_write());
    }

    /// A client's bytes handed out `chunk` at a time, then the end of input;
    /// what the server writes is kept.
    struct Trickle {
        input: std::collections::VecDeque<u8>,
        chunk: usize,
        output: Vec<u8>,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.chunk.min(buf.len()).min(self.input.len());
            for (slot, byte) in buf.iter_mut().zip(self.input.drain(..n)) {
                *slot = byte;
            }
            Ok(n)
        }
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Whatever round of a pump the session ends in, an open connection
    /// always waits for the socket in some direction: otherwise poll would
    /// never pump it again and the client would wait for the close forever.
    #[test]
    fn an_open_connection_always_waits_for_its_socket() {
        let mut conversation = vec![0, 0, 0, 3];
        conversation
            .extend(b"IHAVEOPT\x00\x00\x00\x07\x00\x00\x00\x0a\x00\x00\x00\x04disk\x00\x00");
        for chunk in 1..=conversation.len() {
            let mut exports = disk(1 << 20);
            let stream = Trickle {
                input: conversation.iter().copied().collect(),
                chunk,
                output: Vec::new(),
            };
            let mut conn = Connection::new(stream, SessionConfig::default());
            let closed = loop {
                match conn.pump(&mut exports).unwrap() {
                    Pump::Open => assert!(
                        conn.wants_read() || conn.wants_write(),
                        "chunk {chunk}: open, but waiting for nothing"
                    ),
                    Pump::Finished(closed) => break closed,
                }
            };
            assert_eq!(closed, Closed::PeerClosed, "chunk {chunk}");
            assert!(
                !conn.stream().output.is_empty(),
                "chunk {chunk}: no greeting"
            );
        }
    }

    #[test]
    fn tcp_is_loopback_only() {
        let any = NbdAddress::Tcp("0.0.0.0:0".parse().unwrap());
        let err = NbdListener::bind(&any).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let local = NbdListener::bind(&NbdAddress::Tcp("127.0.0.1:0".parse().unwrap())).unwrap();
        match local.local_addr().unwrap() {
            NbdAddress::Tcp(sa) => assert!(sa.port() != 0 && sa.ip().is_loopback()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stale_unix_socket_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let first = NbdListener::bind(&NbdAddress::Unix(path.clone())).unwrap();
        drop(first);
        assert!(path.exists(), "std leaves the socket file behind");
        let again = NbdListener::bind(&NbdAddress::Unix(path.clone())).unwrap();
        assert_eq!(again.local_addr().unwrap(), NbdAddress::Unix(path));
    }
}
