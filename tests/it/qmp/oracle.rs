//! Replays the recorded tables against the installed qemu-storage-daemon, so
//! that every expected text in this directory is QEMU's, now.
//!
//! qemu-storage-daemon 10.0.2 is installed on every machine of this project
//! (CI included); these tests fail loudly if it is missing.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Case;

const QSD: &str = "qemu-storage-daemon";

/// A qemu-storage-daemon with one QMP socket monitor, killed on drop.
struct Qsd {
    child: Child,
    dir: PathBuf,
    sock: PathBuf,
}

impl Qsd {
    fn start(tag: &str) -> Qsd {
        let dir =
            std::env::temp_dir().join(format!("strata-qmp-oracle-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let sock = dir.join("qmp.sock");
        let child = Command::new(QSD)
            .arg("--chardev")
            .arg(format!(
                "socket,path={},server=on,wait=off,id=m0",
                sock.display()
            ))
            .args(["--monitor", "chardev=m0"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{QSD} must be installed (Debian package qemu-utils): {e}"));
        let qsd = Qsd { child, dir, sock };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&qsd.sock).is_err() {
            assert!(Instant::now() < deadline, "{QSD} did not create its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        qsd
    }

    /// Reads until `want` bytes arrived (or 3 s passed), then 50 ms more
    /// for anything unexpected.
    fn read(stream: &mut UnixStream, want: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 65536];
        let mut grace = None;
        loop {
            let now = Instant::now();
            let until = grace.unwrap_or(deadline);
            if now >= until {
                return out;
            }
            stream.set_read_timeout(Some(until - now)).unwrap();
            match stream.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading from {QSD}: {e}"),
            }
            if out.len() >= want && grace.is_none() {
                grace = Some(Instant::now() + Duration::from_millis(50));
            }
        }
    }

    fn read_line(stream: &mut UnixStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while !out.ends_with(b"\r\n") {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream.read_exact(&mut byte).expect("a line from qsd");
            out.push(byte[0]);
        }
        out
    }

    /// One exchange on a fresh connection, as the tables were recorded.
    fn exchange(&self, case: &Case) -> String {
        let mut stream = UnixStream::connect(&self.sock).expect("connect to qsd");
        Self::read_line(&mut stream);
        if case.negotiated {
            stream
                .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
                .unwrap();
            assert_eq!(Self::read_line(&mut stream), b"{\"return\": {}}\r\n");
        }
        stream.write_all(case.input).unwrap();
        String::from_utf8_lossy(&Self::read(&mut stream, case.output.len())).into_owned()
    }
}

impl Drop for Qsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn replay(tag: &str, table: &[Case]) {
    let qsd = Qsd::start(tag);
    let mut failures = Vec::new();
    for case in table {
        let got = qsd.exchange(case);
        if got != case.output {
            failures.push(format!(
                "input:    {}\nrecorded: {}\nqsd now:  {}",
                String::from_utf8_lossy(case.input).escape_debug(),
                case.output.escape_debug(),
                got.escape_debug()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n\n{}",
        failures.len(),
        table.len(),
        failures.join("\n\n")
    );
}

#[test]
fn qsd_confirms_protocol_table() {
    replay("protocol", super::protocol::TABLE);
}

#[test]
fn qsd_confirms_out_of_band_steps() {
    let qsd = Qsd::start("oob");
    let mut stream = UnixStream::connect(&qsd.sock).expect("connect to qsd");
    Qsd::read_line(&mut stream);
    let (enable, answer) = super::protocol::OOB_ENABLE;
    stream.write_all(enable).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&Qsd::read_line(&mut stream)),
        answer
    );
    for (input, expected) in super::protocol::OOB_STEPS {
        stream.write_all(input).unwrap();
        let got = String::from_utf8_lossy(&Qsd::read(&mut stream, expected.len())).into_owned();
        assert_eq!(got, *expected, "{}", String::from_utf8_lossy(input));
    }
}

#[test]
fn qsd_confirms_validation_table() {
    replay("validation", super::validation::TABLE);
}

#[test]
fn qsd_confirms_cli_errors() {
    let mut failures = Vec::new();
    for &(option, arg, expected) in super::cli::ERRORS {
        let mut child = Command::new(QSD)
            .args([option.flag(), arg])
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{QSD} must be installed: {e}"));
        // An argument qsd accepts would leave it running: give up after 10 s.
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for qsd") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut stderr)
            .expect("qsd stderr");
        let first = stderr.lines().next().unwrap_or_default();
        if first != expected || status.and_then(|s| s.code()) != Some(1) {
            failures.push(format!(
                "{} {arg}\n  recorded: {expected}\n  qsd now:  {first} ({status:?})",
                option.flag()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
