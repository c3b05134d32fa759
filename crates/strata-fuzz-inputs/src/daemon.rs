//! A real strata-qsd for the inputs: a child process in a scratch
//! directory holding the corpus's images, a QMP socket and (for NBD) the
//! writable export [`crate::nbd::SETUP`] describes. Every input is one
//! connection: sent whole, the write side shut, the answer read to the
//! end within [`INPUT_TIME_LIMIT`].

use crate::qmp::{image_bytes, Negotiation, QmpInput, NEGOTIATE, PROBE, PROBE_ANSWER_START};
use crate::{Failure, INPUT_TIME_LIMIT};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Resident memory above which the daemon counts as leaking (KiB): its
/// images are 9 MiB and one NBD request may ask for 32 MiB.
pub const MEMORY_LIMIT_KIB: u64 = 1 << 20;

/// Whether the daemon serves the NBD export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serve {
    /// QMP only.
    Monitor,
    /// QMP and the writable export of `top.qcow2`.
    MonitorAndExport,
}

/// strata-qsd running in a scratch directory.
pub struct Daemon {
    child: Child,
    binary: PathBuf,
    dir: PathBuf,
    serve: Serve,
}

impl Daemon {
    /// Writes fresh images into `dir` and starts `binary` there.
    pub fn start(binary: &Path, dir: &Path, serve: Serve) -> io::Result<Daemon> {
        std::fs::create_dir_all(dir)?;
        for (name, bytes) in image_bytes() {
            std::fs::write(dir.join(name), bytes)?;
        }
        let mut daemon = Daemon {
            child: spawn(binary, dir, serve)?,
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            serve,
        };
        daemon.wait_for_socket()?;
        Ok(daemon)
    }

    /// Ends this daemon (SIGKILL if it still runs) and starts another on
    /// the same images, as an administrator would after a crash: never
    /// two at once, since a daemon's exit removes the socket path.
    pub fn restart(&mut self) -> io::Result<()> {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        self.child = spawn(&self.binary, &self.dir, self.serve)?;
        self.wait_for_socket()
    }

    /// Waits until the sockets accept connections: the socket file
    /// appears at `bind`, a moment before `listen`, and a connection in
    /// between is refused.
    fn wait_for_socket(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut sockets = vec![self.dir.join("qmp.sock")];
        if self.serve == Serve::MonitorAndExport {
            sockets.push(self.dir.join("nbd.sock"));
        }
        for socket in sockets {
            while UnixStream::connect(&socket).is_err() {
                if Instant::now() > deadline {
                    return Err(io::Error::other(format!(
                        "strata-qsd does not listen on {} after 20 s",
                        socket.display()
                    )));
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `Ok(None)` while it runs, `Ok(Some(code))` once it has exited on
    /// its own; a death by signal is a [`Failure::Crash`].
    pub fn exit_code(&mut self) -> Result<Option<i32>, Failure> {
        match self.child.try_wait() {
            Ok(None) => Ok(None),
            Ok(Some(status)) => match (status.code(), status.signal()) {
                (_, Some(signal)) => Err(Failure::Crash(format!("killed by signal {signal}"))),
                (Some(101), _) => Err(Failure::Crash(format!(
                    "panicked (exit 101): {}",
                    self.stderr_tail()
                ))),
                (code, _) => Ok(Some(code.unwrap_or(-1))),
            },
            Err(e) => Err(Failure::Crash(format!("wait: {e}"))),
        }
    }

    /// Waits up to `limit` for the daemon to exit on its own: its exit
    /// code, or `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<Option<i32>, Failure> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(code) = self.exit_code()? {
                return Ok(Some(code));
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(None)
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        text[text.len().saturating_sub(500)..].to_string()
    }

    /// Resident and peak resident memory, KiB (`/proc/PID/status`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// One QMP input on a fresh connection; the replies after the greeting
    /// (and the negotiation).
    pub fn qmp(&self, input: &QmpInput) -> Result<Vec<u8>, Failure> {
        let stream = connect(&self.dir.join("qmp.sock"))?;
        let mut reader = BufReader::new(stream.try_clone().map_err(unanswered)?);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(unanswered)?;
        if !line.starts_with("{\"QMP\": ") {
            return Err(Failure::Unanswered(format!("greeting {line:?}")));
        }
        if input.negotiation == Negotiation::Negotiated {
            (&stream).write_all(NEGOTIATE.0).map_err(unanswered)?;
            line.clear();
            reader.read_line(&mut line).map_err(unanswered)?;
            if line != NEGOTIATE.1 {
                return Err(Failure::Unanswered(format!("negotiation {line:?}")));
            }
        }
        let buffered = reader.buffer().to_vec();
        let mut answer = exchange(stream, &input.bytes, usize::MAX)?;
        answer.splice(0..0, buffered);
        Ok(answer)
    }

    /// A negotiated `query-version` answers.
    pub fn probe_qmp(&self) -> Result<(), Failure> {
        let probe = QmpInput {
            negotiation: Negotiation::Negotiated,
            bytes: PROBE.to_vec(),
        };
        let answer = self.qmp(&probe)?;
        if answer.starts_with(PROBE_ANSWER_START.as_bytes()) {
            Ok(())
        } else {
            Err(Failure::Unanswered(
                String::from_utf8_lossy(&answer).into_owned(),
            ))
        }
    }

    /// One NBD conversation on a fresh connection; the first `keep` bytes
    /// the server sent.
    pub fn nbd(&self, bytes: &[u8], keep: usize) -> Result<Vec<u8>, Failure> {
        exchange(connect(&self.dir.join("nbd.sock"))?, bytes, keep)
    }

    /// `quit`, and the exit code.
    pub fn quit(mut self) -> Result<i32, Failure> {
        let quit = QmpInput {
            negotiation: Negotiation::Negotiated,
            bytes: b"{\"execute\": \"quit\"}\n".to_vec(),
        };
        self.qmp(&quit)?;
        self.wait_exit(INPUT_TIME_LIMIT)?
            .ok_or(Failure::Hang(INPUT_TIME_LIMIT))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `binary` in `dir`, its old sockets removed first.
fn spawn(binary: &Path, dir: &Path, serve: Serve) -> io::Result<Child> {
    let _ = std::fs::remove_file(dir.join("qmp.sock"));
    let _ = std::fs::remove_file(dir.join("nbd.sock"));
    let mut args = vec![
        "--chardev".to_string(),
        "socket,path=qmp.sock,server=on,wait=off,id=m0".into(),
        "--monitor".into(),
        "chardev=m0".into(),
    ];
    if serve == Serve::MonitorAndExport {
        args.extend([
            "--blockdev".into(),
            "driver=qcow2,node-name=top,file.driver=file,file.filename=top.qcow2".into(),
            "--nbd-server".into(),
            "addr.type=unix,addr.path=nbd.sock".into(),
            "--export".into(),
            "type=nbd,id=e,node-name=top,writable=on".into(),
        ]);
    }
    // The daemon runs in `dir`: a relative path to it would not.
    Command::new(binary.canonicalize()?)
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log"))?)
        .spawn()
}

fn unanswered(e: io::Error) -> Failure {
    Failure::Unanswered(e.to_string())
}

fn connect(socket: &Path) -> Result<UnixStream, Failure> {
    let stream = UnixStream::connect(socket)
        .map_err(|e| Failure::Unanswered(format!("connect {}: {e}", socket.display())))?;
    stream
        .set_read_timeout(Some(INPUT_TIME_LIMIT))
        .map_err(unanswered)?;
    Ok(stream)
}

/// Sends `bytes` while another thread reads the answer (the server may
/// answer more than the socket buffers before it reads on), shuts the
/// write side and reads to the end; the first `keep` bytes, or a
/// [`Failure::Hang`] when the end takes longer than [`INPUT_TIME_LIMIT`].
fn exchange(stream: UnixStream, bytes: &[u8], keep: usize) -> Result<Vec<u8>, Failure> {
    let start = Instant::now();
    let mut reading = stream.try_clone().map_err(unanswered)?;
    let reader = thread::spawn(move || -> io::Result<Vec<u8>> {
        let mut kept = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match reading.read(&mut chunk) {
                Ok(0) => return Ok(kept),
                Ok(n) => {
                    let room = keep.saturating_sub(kept.len()).min(n);
                    kept.extend_from_slice(&chunk[..room]);
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(kept),
                Err(e) => return Err(e),
            }
        }
    });
    // The server may close early (a protocol error): what it did not read
    // is not its business.
    let _ = (&stream).write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    match reader.join() {
        Ok(Ok(kept)) => Ok(kept),
        Ok(Err(e))
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(Failure::Hang(start.elapsed()))
        }
        Ok(Err(e)) => Err(unanswered(e)),
        Err(_) => Err(Failure::Panic("the reading thread".into())),
    }
}
