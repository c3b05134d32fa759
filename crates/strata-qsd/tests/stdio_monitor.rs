//! `--chardev stdio,id=stdio --monitor chardev=stdio`, as QEMU's
//! `tests/qsd-jobs` drives qemu-storage-daemon: QMP on the daemon's own
//! stdin and stdout, so the binary runs as a child process. The expected
//! lines are qemu-storage-daemon 10.0.2's for the same input.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a step may take before the test gives up.
const BOUND: Duration = Duration::from_secs(20);

fn start(dir: &std::path::Path) -> Child {
    let nbd = dir.join("nbd.sock");
    Command::new(env!("CARGO_BIN_EXE_strata-qsd"))
        .args([
            "--chardev",
            "stdio,id=stdio",
            "--monitor",
            "chardev=stdio",
            "--blockdev",
            "null-co,node-name=n0",
            "--nbd-server",
            &format!("addr.type=unix,addr.path={}", nbd.display()),
            "--export",
            "nbd,id=e0,node-name=n0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most [`BOUND`]) for the child to exit; its exit code.
fn exit_code(child: &mut Child) -> i32 {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().expect("exited, not killed");
        }
        assert!(Instant::now() < deadline, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A line of output, its timestamp masked as iotests' `_filter_qmp` does.
fn masked(line: String) -> String {
    match line.strip_prefix("{\"timestamp\": {") {
        Some(rest) => {
            let after = &rest[rest.find("}, ").expect("a timestamp object") + 3..];
            format!("{{\"timestamp\": TS, {after}")
        }
        None => line,
    }
}

/// The output lines from here to the end.
fn lines(stdout: impl BufRead) -> Vec<String> {
    stdout.lines().map(|line| masked(line.unwrap())).collect()
}

#[test]
fn a_stdio_session_ends_with_quit_and_the_shutdowns_events_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path());
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"{\"execute\": \"qmp_capabilities\"}\n\
              {\"execute\": \"query-block-exports\"}\n\
              {\"execute\": \"quit\"}\n",
        )
        .unwrap();
    assert_eq!(exit_code(&mut child), 0);
    let got = lines(BufReader::new(child.stdout.take().unwrap()));
    assert!(got[0].starts_with("{\"QMP\": {\"version\": "), "{got:?}");
    assert_eq!(
        got[1..],
        [
            r#"{"return": {}}"#,
            r#"{"return": [{"node-name": "n0", "shutting-down": false, "type": "nbd", "id": "e0"}]}"#,
            // bdrv_close_all closes the export before quit's answer goes out.
            r#"{"timestamp": TS, "event": "BLOCK_EXPORT_DELETED", "data": {"id": "e0"}}"#,
            r#"{"return": {}}"#,
        ]
    );
}

/// How many of `pid`'s descriptors are the pipe `inode`.
fn descriptors_on(pid: u32, inode: u64) -> usize {
    let wanted = format!("pipe:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_str() == Some(wanted.as_str()))
        .count()
}

#[test]
fn eof_on_stdin_stops_reading_but_the_monitor_stays() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path());
    let stdin = child.stdin.take().unwrap();
    let pipe = std::fs::metadata(format!("/proc/self/fd/{}", stdin.as_raw_fd()))
        .unwrap()
        .ino();
    let mut stdin = stdin;
    stdin
        .write_all(b"{\"execute\": \"qmp_capabilities\"}\n")
        .unwrap();
    drop(stdin);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut read_line = || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        masked(line.trim_end().to_string())
    };
    assert!(read_line().starts_with("{\"QMP\": "));
    assert_eq!(read_line(), r#"{"return": {}}"#);
    // At EOF the daemon closes its duplicate of stdin (fd 0 stays): then
    // it has read everything and is still running.
    let deadline = Instant::now() + BOUND;
    while descriptors_on(child.id(), pipe) > 1 {
        assert!(Instant::now() < deadline, "EOF was never read");
        assert!(child.try_wait().unwrap().is_none(), "EOF ended the daemon");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SIGTERM: the events of the shutdown still reach stdout.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(exit_code(&mut child), 0);
    assert_eq!(
        lines(stdout),
        [r#"{"timestamp": TS, "event": "BLOCK_EXPORT_DELETED", "data": {"id": "e0"}}"#]
    );
}
