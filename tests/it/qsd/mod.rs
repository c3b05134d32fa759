//! strata-qsd's daemon in this process: the event loop on its own thread,
//! real image files made with qemu-img, and QMP clients on the unix socket
//! (several at once, garbage, a client that vanishes mid-command, events for
//! everyone, quit and SIGTERM).  The byte-level QMP texts are
//! `tests/it/qmp`'s business; here it is the serving that is checked.

mod chardevs_and_iothreads;
mod safety;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::thread::JoinHandleExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use strata_qsd::args::{parse, Invocation};
use strata_qsd::daemon::Daemon;

/// A daemon serving `--chardev socket,...,id=m0 --monitor chardev=m0`
/// plus `extra` options, on a thread of this process.
pub(crate) struct Running {
    dir: tempfile::TempDir,
    pub(crate) socket: PathBuf,
    thread: Option<JoinHandle<i32>>,
}

impl Running {
    pub(crate) fn start(extra: &[String]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let mut args = vec![
            "--chardev".to_string(),
            format!("socket,path={},server=on,wait=off,id=m0", socket.display()),
            "--monitor".to_string(),
            "chardev=m0".to_string(),
        ];
        args.extend_from_slice(extra);
        let Ok(Invocation::Run(plan)) = parse("strata-qsd", &args) else {
            panic!("a run: {args:?}")
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || match Daemon::start("strata-qsd", plan) {
            Ok(daemon) => {
                ready_tx.send(Ok(())).unwrap();
                daemon.run_loop()
            }
            Err(err) => {
                ready_tx.send(Err(err.0)).unwrap();
                1
            }
        });
        ready_rx.recv().unwrap().expect("daemon starts");
        Running {
            dir,
            socket,
            thread: Some(thread),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Waits for the loop to end; its exit code.
    pub(crate) fn join(mut self) -> i32 {
        self.thread.take().unwrap().join().unwrap()
    }

    fn signal(&self, signal: i32) {
        let thread = self.thread.as_ref().unwrap().as_pthread_t();
        // SAFETY: the thread is alive until joined; the signal is one the
        // daemon thread blocks and reads from its signalfd.
        assert_eq!(unsafe { libc::pthread_kill(thread, signal) }, 0);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.signal(libc::SIGTERM);
            let _ = self.thread.take().unwrap().join();
        }
    }
}

/// A QMP client reading line by line.
pub(crate) struct Client {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    /// Lines that were events, in arrival order.
    pub(crate) events: Vec<String>,
}

impl Client {
    fn connect(socket: &Path) -> Client {
        Client::greeted(UnixStream::connect(socket).unwrap())
    }

    /// A client on a connected `stream`, once the greeting came.
    pub(crate) fn greeted(stream: UnixStream) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut client = Client {
            stream,
            reader,
            events: Vec::new(),
        };
        let greeting = client.line();
        assert!(greeting.starts_with("{\"QMP\": {\"version\""), "{greeting}");
        client
    }

    pub(crate) fn negotiated(socket: &Path) -> Client {
        Client::connect(socket).negotiate()
    }

    pub(crate) fn negotiate(mut self) -> Client {
        assert_eq!(
            self.execute(r#"{"execute": "qmp_capabilities"}"#),
            r#"{"return": {}}"#
        );
        self
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with("\r\n"), "QMP lines end in CRLF: {line:?}");
        line.trim_end().to_string()
    }

    fn send(&mut self, bytes: &str) {
        self.stream.write_all(bytes.as_bytes()).unwrap();
    }

    /// Sends a request; the response line (events before it are kept).
    pub(crate) fn execute(&mut self, request: &str) -> String {
        // One write: after `quit` the daemon may be gone before a second.
        self.send(&format!("{request}\n"));
        loop {
            let line = self.line();
            if line.contains("\"event\": ") && line.starts_with("{\"timestamp\"") {
                self.events.push(line);
            } else {
                return line;
            }
        }
    }

    /// Reads events until one contains `needle`.
    fn wait_event(&mut self, needle: &str) -> String {
        if let Some(i) = self.events.iter().position(|e| e.contains(needle)) {
            return self.events.remove(i);
        }
        loop {
            let line = self.line();
            if line.contains(needle) {
                return line;
            }
            self.events.push(line);
        }
    }
}

/// `base.img` (1 MiB, pattern 0x11 in the first 64 KiB) under `top.img`.
fn make_chain(daemon: &Running) -> (String, String) {
    let base = daemon.path("base.img");
    let top = daemon.path("top.img");
    let ok = |c: &mut Command| assert!(c.output().unwrap().status.success(), "{c:?}");
    ok(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", &base, "1M"]));
    ok(Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -P 0x11 0 64k", &base]));
    ok(Command::new("qemu-img").args([
        "create", "-q", "-f", "qcow2", "-b", &base, "-F", "qcow2", &top,
    ]));
    (base, top)
}

fn add_top(client: &mut Client, top: &str) {
    let add = format!(
        r#"{{"execute": "blockdev-add", "arguments": {{"driver": "qcow2", "node-name": "top", "file": {{"driver": "file", "filename": "{top}"}}}}}}"#
    );
    assert_eq!(client.execute(&add), r#"{"return": {}}"#);
}

#[test]
fn quit_answers_then_exits_zero_and_removes_the_socket() {
    let daemon = Running::start(&[]);
    let mut client = Client::negotiated(&daemon.socket);
    assert_eq!(
        client.execute(r#"{"execute": "query-version", "id": 1}"#),
        r#"{"return": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"}, "id": 1}"#
    );
    assert_eq!(
        client.execute(r#"{"execute": "quit"}"#),
        r#"{"return": {}}"#
    );
    let socket = daemon.socket.clone();
    assert_eq!(daemon.join(), 0);
    assert!(!socket.exists(), "the monitor socket is removed on exit");
}

/// The event name, or the status of a `JOB_STATUS_CHANGE`.
fn event_label(line: &str) -> &str {
    let after = |key: &str| {
        line.split(key)
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1))
            .unwrap_or("?")
    };
    match after("\"event\": ") {
        "JOB_STATUS_CHANGE" => after("\"status\": "),
        event => event,
    }
}

#[test]
fn quit_cancels_the_jobs_and_their_events_come_before_the_answer() {
    // qemu-storage-daemon 10.0.2, same requests: `job_cancel_sync_all`
    // after the main loop; its events are written before the answer.
    let daemon = Running::start(&[]);
    let (_, top) = make_chain(&daemon);
    let mut client = Client::negotiated(&daemon.socket);
    let mut watcher = Client::negotiated(&daemon.socket);
    add_top(&mut client, &top);
    let stream = r#"{"execute": "block-stream", "arguments": {"job-id": "s", "device": "top", "speed": 1024}}"#;
    assert_eq!(client.execute(stream), r#"{"return": {}}"#);
    client.events.clear();
    assert_eq!(
        client.execute(r#"{"execute": "quit"}"#),
        r#"{"return": {}}"#
    );
    let labels: Vec<&str> = client.events.iter().map(|e| event_label(e)).collect();
    assert_eq!(
        labels,
        ["aborting", "BLOCK_JOB_CANCELLED", "concluded", "null"]
    );
    assert_eq!(daemon.join(), 0);
    for expected in [
        "created",
        "running",
        "aborting",
        "BLOCK_JOB_CANCELLED",
        "concluded",
        "null",
    ] {
        let line = watcher.line();
        assert_eq!(event_label(&line), expected, "{line}");
    }
}

#[test]
fn sigterm_exits_zero() {
    let daemon = Running::start(&[]);
    let _client = Client::negotiated(&daemon.socket);
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.join(), 0);
}

#[test]
fn garbage_gets_qemus_errors_and_the_session_goes_on() {
    let daemon = Running::start(&[]);
    let mut client = Client::negotiated(&daemon.socket);
    client.send("]\n");
    assert_eq!(
        client.line(),
        r#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#
    );
    assert_eq!(
        client.execute(r#"{"execute": "no-such-command"}"#),
        r#"{"error": {"class": "CommandNotFound", "desc": "The command no-such-command has not been found"}}"#
    );
    assert_eq!(
        client.execute(r#"{"execute": "query-jobs"}"#),
        r#"{"return": []}"#
    );
}

#[test]
fn requests_split_or_pipelined_are_answered_in_order() {
    let daemon = Running::start(&[]);
    let mut client = Client::negotiated(&daemon.socket);
    // Byte by byte, with the socket flushed in between.
    for byte in r#"{"execute": "query-jobs", "id": "slow"}"#.bytes() {
        client.stream.write_all(&[byte]).unwrap();
        client.stream.flush().unwrap();
    }
    assert_eq!(client.line(), r#"{"return": [], "id": "slow"}"#);
    // Three requests in one write.
    client.send(concat!(
        r#"{"execute": "query-jobs", "id": 1}"#,
        r#"{"execute": "query-block-jobs", "id": 2}"#,
        r#"{"execute": "query-block-exports", "id": 3}"#,
    ));
    for id in 1..=3 {
        assert_eq!(client.line(), format!(r#"{{"return": [], "id": {id}}}"#));
    }
}

#[test]
fn a_client_gone_mid_command_is_dropped_and_others_are_served() {
    let daemon = Running::start(&[]);
    let mut steady = Client::negotiated(&daemon.socket);
    {
        let mut leaving = Client::negotiated(&daemon.socket);
        leaving.send(r#"{"execute": "query-named-block-no"#);
    }
    for _ in 0..3 {
        assert_eq!(
            steady.execute(r#"{"execute": "query-block-jobs"}"#),
            r#"{"return": []}"#
        );
    }
    // A new client still gets its greeting.
    let mut late = Client::negotiated(&daemon.socket);
    assert_eq!(
        late.execute(r#"{"execute": "query-jobs"}"#),
        r#"{"return": []}"#
    );
}

#[test]
fn job_events_reach_every_negotiated_client_in_order() {
    let daemon = Running::start(&[]);
    let (_, top) = make_chain(&daemon);
    let mut starter = Client::negotiated(&daemon.socket);
    let mut watcher = Client::negotiated(&daemon.socket);
    let mut silent = Client::connect(&daemon.socket);
    add_top(&mut starter, &top);
    let response = starter
        .execute(r#"{"execute": "block-stream", "arguments": {"job-id": "s", "device": "top"}}"#);
    assert_eq!(response, r#"{"return": {}}"#);
    // qsd sends a command's events ahead of its response.
    assert!(
        starter
            .events
            .first()
            .is_some_and(|e| e.contains("\"created\"")),
        "{:?}",
        starter.events
    );
    for client in [&mut starter, &mut watcher] {
        let completed = client.wait_event("BLOCK_JOB_COMPLETED");
        assert!(
            completed.ends_with(
                r#""event": "BLOCK_JOB_COMPLETED", "data": {"device": "s", "len": 1048576, "offset": 1048576, "speed": 0, "type": "stream"}}"#
            ),
            "{completed}"
        );
        client.wait_event("\"null\"");
    }
    // A client that never negotiated gets no events: its next line is the
    // answer to its first command.
    assert_eq!(
        silent.execute(r#"{"execute": "qmp_capabilities"}"#),
        r#"{"return": {}}"#
    );
    assert_eq!(
        silent.execute(r#"{"execute": "query-jobs"}"#),
        r#"{"return": []}"#
    );
    // The stream made top.img independent of base.img.
    drop(daemon);
    let info = Command::new("qemu-img")
        .args(["info", "--output=json", &top])
        .output()
        .unwrap();
    let info = String::from_utf8(info.stdout).unwrap();
    assert!(!info.contains("backing-filename"), "{info}");
}

#[test]
fn throttled_job_runs_in_real_time() {
    let daemon = Running::start(&[]);
    let (_, top) = make_chain(&daemon);
    let mut client = Client::negotiated(&daemon.socket);
    add_top(&mut client, &top);
    client.execute(
        r#"{"execute": "block-stream", "arguments": {"job-id": "s", "device": "top", "speed": 1024}}"#,
    );
    // The first run of data (base.img's 64 KiB) is copied at once, then
    // the job sleeps for a minute: after 300 ms it still stands there.
    std::thread::sleep(Duration::from_millis(300));
    let jobs = client.execute(r#"{"execute": "query-jobs"}"#);
    assert_eq!(
        jobs,
        r#"{"return": [{"current-progress": 65536, "status": "running", "total-progress": 1048576, "type": "stream", "id": "s"}]}"#
    );
    client
        .execute(r#"{"execute": "block-job-set-speed", "arguments": {"device": "s", "speed": 0}}"#);
    client.wait_event("BLOCK_JOB_COMPLETED");
}

#[test]
fn nbd_export_serves_the_node_to_qemu_io() {
    let daemon = Running::start(&[]);
    let (_, top) = make_chain(&daemon);
    let nbd = daemon.path("nbd.sock");
    let mut client = Client::negotiated(&daemon.socket);
    add_top(&mut client, &top);
    let start = format!(
        r#"{{"execute": "nbd-server-start", "arguments": {{"addr": {{"type": "unix", "data": {{"path": "{nbd}"}}}}}}}}"#
    );
    assert_eq!(client.execute(&start), r#"{"return": {}}"#);
    assert_eq!(
        client.execute(r#"{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e0", "node-name": "top", "writable": true}}"#),
        r#"{"return": {}}"#
    );
    // qemu-io blocks on the socket the daemon thread serves.
    let uri = format!("nbd+unix:///top?socket={nbd}");
    let io = Command::new("qemu-io")
        .args([
            "-f",
            "raw",
            "-c",
            "read -P 0x11 0 64k",
            "-c",
            "write -P 0x22 64k 4k",
            &uri,
        ])
        .output()
        .unwrap();
    assert!(
        io.status.success()
            && !String::from_utf8_lossy(&io.stdout).contains("Pattern verification failed"),
        "{io:?}"
    );
    assert_eq!(
        client.execute(r#"{"execute": "query-block-exports"}"#),
        r#"{"return": [{"node-name": "top", "shutting-down": false, "type": "nbd", "id": "e0"}]}"#
    );
    assert_eq!(
        client.execute(r#"{"execute": "blockdev-del", "arguments": {"node-name": "top"}}"#),
        r#"{"error": {"class": "GenericError", "desc": "Node top is in use"}}"#
    );
    assert_eq!(
        client.execute(r#"{"execute": "block-export-del", "arguments": {"id": "e0"}}"#),
        r#"{"return": {}}"#
    );
    assert!(client
        .events
        .iter()
        .any(|e| e.contains("BLOCK_EXPORT_DELETED")));
    assert_eq!(
        client.execute(r#"{"execute": "quit"}"#),
        r#"{"return": {}}"#
    );
    drop(daemon);
    let check = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "read -P 0x22 64k 4k", &top])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&check.stdout).contains("Pattern verification failed"),
        "{check:?}"
    );
}

#[test]
fn setup_errors_are_qsds() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s");
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--monitor".into(), "chardev=zz".into()],
            "strata-qsd: --monitor chardev=zz: chardev \"zz\" not found".into(),
        ),
        (
            vec!["--blockdev".into(), "driver=nope".into()],
            "strata-qsd: --blockdev driver=nope: Parameter 'driver' does not accept value 'nope'"
                .into(),
        ),
        (
            vec![
                "--blockdev".into(),
                "driver=file,node-name=a,filename=/nonexist".into(),
            ],
            "strata-qsd: --blockdev driver=file,node-name=a,filename=/nonexist: Could not open '/nonexist': No such file or directory".into(),
        ),
        (
            vec!["--export".into(), "type=nbd,id=e,node-name=x".into()],
            "strata-qsd: --export type=nbd,id=e,node-name=x: Cannot find device='' nor node-name='x'"
                .into(),
        ),
        (
            vec![
                "--chardev".into(),
                format!("socket,path={}/nodir/s,server=on,wait=off,id=m0", dir.path().display()),
            ],
            format!(
                "strata-qsd: --chardev socket,path={0}/nodir/s,server=on,wait=off,id=m0: Failed to bind socket to {0}/nodir/s: No such file or directory",
                dir.path().display()
            ),
        ),
        (
            vec!["--pidfile".into(), "/nonexist/p".into()],
            "strata-qsd: cannot create PID file: Could not create '/nonexist/p': No such file or directory".into(),
        ),
    ];
    let _ = socket;
    for (args, want) in cases {
        let Ok(Invocation::Run(plan)) = parse("strata-qsd", &args) else {
            panic!("{args:?}")
        };
        let got = std::thread::spawn(move || Daemon::start("strata-qsd", plan).err().map(|e| e.0))
            .join()
            .unwrap();
        assert_eq!(got.as_deref(), Some(want.as_str()), "{args:?}");
    }
}
