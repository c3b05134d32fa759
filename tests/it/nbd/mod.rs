//! strata-qsd's NBD server against the real QEMU 10.0.2 tools.
//!
//! Every test starts a server on a Unix socket in a temporary directory over
//! in-memory exports ([`MemoryBackend`]), run the daemon's way: one thread
//! pumps non-blocking [`Connection`]s.  Then `qemu-img`, `qemu-io` and `qemu-nbd` talk to it, and
//! [`oracle`] replays raw exchanges against `qemu-storage-daemon` and our
//! server and compares the bytes.

mod oracle;
mod tools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use strata_qsd::nbd::{Connection, MemoryBackend, NbdAddress, NbdListener, Pump, SessionConfig};

/// Exports by name: backend and description.
pub type Exports = BTreeMap<String, (MemoryBackend, Option<String>)>;

/// A running server; [`finish`](Server::finish) stops it and returns the exports.
pub struct Server {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    owner: Option<JoinHandle<Exports>>,
}

impl Server {
    /// Serve `exports` on a fresh socket.
    pub fn start(exports: Exports) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nbd.sock");
        let listener = NbdListener::bind(&NbdAddress::Unix(socket.clone())).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let owner = std::thread::spawn(move || event_loop(listener, exports, &flag));
        Server {
            _dir: dir,
            socket,
            stop,
            owner: Some(owner),
        }
    }

    /// `nbd+unix:///NAME?socket=PATH`.
    pub fn uri(&self, export: &str) -> String {
        format!("nbd+unix:///{export}?socket={}", self.socket.display())
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stop serving and hand back the exports as the clients left them.
    pub fn finish(mut self) -> Exports {
        self.stop.store(true, Ordering::SeqCst);
        self.owner
            .take()
            .unwrap()
            .join()
            .expect("server thread panicked")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(owner) = self.owner.take() {
            let _ = owner.join();
        }
    }
}

/// The daemon's way: one thread owns the exports and pumps every connection.
fn event_loop(listener: NbdListener, mut exports: Exports, stop: &AtomicBool) -> Exports {
    listener.set_nonblocking(true).unwrap();
    let mut connections = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        while let Ok(stream) = listener.accept() {
            stream.set_nonblocking(true).unwrap();
            connections.push(Connection::new(stream, SessionConfig::default()));
        }
        connections.retain_mut(|c| matches!(c.pump(&mut exports), Ok(Pump::Open)));
        // No poll(2) here: a short nap keeps the test loop simple.
        std::thread::sleep(Duration::from_micros(200));
    }
    exports
}

/// One export named `name` over `backend`.
pub fn exports(list: Vec<(&str, MemoryBackend, Option<&str>)>) -> Exports {
    list.into_iter()
        .map(|(n, b, d)| (n.to_string(), (b, d.map(str::to_string))))
        .collect()
}

/// Run a QEMU tool; panics with its output if it cannot be started.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Stdout of a tool that must succeed.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
