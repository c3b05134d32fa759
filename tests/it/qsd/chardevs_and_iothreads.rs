//! What QEMU's own daemon iotests (`tests/qsd-jobs`,
//! `tests/graph-changes-while-io`) need of strata-qsd beyond a listening
//! monitor: a monitor that connects to its client (`server=off`, as
//! iotests' `QemuStorageDaemon` starts it) or comes as an inherited
//! descriptor, `iothread` objects and the exports' `iothread` option, and
//! the `null-co` driver. The texts are qemu-storage-daemon 10.0.2's for
//! the same commands. (The stdio monitor needs the daemon's own stdin and
//! stdout: `crates/strata-qsd/tests/stdio_monitor.rs` runs the binary.)

use std::os::fd::IntoRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;

use strata_qsd::args::{parse, Invocation};
use strata_qsd::daemon::Daemon;

use super::{Client, Running};

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// The line a daemon started with `args` is refused with, if it is.
fn setup_error(args: &[&str]) -> Option<String> {
    let args = strings(args);
    let Ok(Invocation::Run(plan)) = parse("strata-qsd", &args) else {
        panic!("{args:?}")
    };
    // The daemon blocks termination signals on the thread that starts it.
    std::thread::spawn(move || Daemon::start("strata-qsd", plan).err().map(|e| e.0))
        .join()
        .unwrap()
}

#[test]
fn a_client_mode_monitor_connects_to_the_listening_test() {
    let listening = tempfile::tempdir().unwrap();
    let path = listening.path().join("test.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let daemon = Running::start(&strings(&[
        "--chardev",
        &format!("socket,id=qmp-sock,path={}", path.display()),
        "--monitor",
        "qmp-sock",
    ]));
    // The daemon connected while starting: the connection waits here.
    let (stream, _) = listener.accept().unwrap();
    let mut client = Client::greeted(stream).negotiate();
    assert_eq!(
        client.execute(r#"{"execute": "query-block-exports"}"#),
        r#"{"return": []}"#
    );
    assert_eq!(
        client.execute(r#"{"execute": "quit"}"#),
        r#"{"return": {}}"#
    );
    assert_eq!(daemon.join(), 0);
    assert!(path.exists(), "the test's socket is the test's to remove");
}

#[test]
fn an_inherited_socket_is_a_monitor() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let fd = theirs.into_raw_fd();
    let daemon = Running::start(&strings(&[
        "--chardev",
        &format!("socket,id=inherited,fd={fd}"),
        "--monitor",
        "chardev=inherited",
    ]));
    let mut client = Client::greeted(ours).negotiate();
    assert_eq!(
        client.execute(r#"{"execute": "query-jobs"}"#),
        r#"{"return": []}"#
    );
    assert_eq!(
        client.execute(r#"{"execute": "quit"}"#),
        r#"{"return": {}}"#
    );
    assert_eq!(daemon.join(), 0);
}

#[test]
fn chardev_setup_errors_are_qsds() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nobody-listens");
    let not_a_socket = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
    let cases = [
        (
            format!("socket,id=s,path={}", missing.display()),
            format!(
                "Failed to connect to '{}': No such file or directory",
                missing.display()
            ),
        ),
        (
            format!("socket,id=s,fd={not_a_socket}"),
            format!("File descriptor '{not_a_socket}' is not a socket"),
        ),
        (
            "socket,id=s,fd=x".to_string(),
            "Unable to parse FD number x".to_string(),
        ),
        (
            "socket,id=s,fd=-1".to_string(),
            "File descriptor '-1' is not a socket".to_string(),
        ),
        (
            format!("socket,id=s,path={},wait=off", missing.display()),
            "'wait' option is incompatible with socket in client connect mode".to_string(),
        ),
        (
            "stdio,id=s,bogus=1".to_string(),
            "Invalid parameter 'bogus'".to_string(),
        ),
    ];
    for (arg, text) in cases {
        let got = setup_error(&["--chardev", &arg]);
        assert_eq!(
            got,
            Some(format!("strata-qsd: --chardev {arg}: {text}")),
            "{arg}"
        );
    }
}

/// A daemon with iothread `io0`, a null-co node `n0` exported as `e0`
/// in io0's context with `fixed-iothread`, as graph-changes-while-io
/// starts it.
fn iothread_daemon() -> (Running, Client) {
    let dir = tempfile::tempdir().unwrap();
    let nbd = dir.path().join("nbd.sock");
    let daemon = Running::start(&strings(&[
        "--object",
        "iothread,id=io0",
        "--blockdev",
        "null-co,node-name=n0,read-zeroes=true,size=1048576",
        "--nbd-server",
        &format!("addr.type=unix,addr.path={}", nbd.display()),
        "--export",
        "nbd,id=e0,node-name=n0,iothread=io0,fixed-iothread=true,writable=true",
    ]));
    // The NBD socket lives as long as the daemon: keep its directory.
    std::mem::forget(dir);
    let client = Client::negotiated(&daemon.socket);
    (daemon, client)
}

#[test]
fn exports_move_to_iothreads_as_qemu_allows() {
    let (_daemon, mut client) = iothread_daemon();
    let rows = [
        (
            r#"{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e1", "node-name": "n0", "name": "x1", "iothread": "nope"}}"#,
            r#"{"error": {"class": "GenericError", "desc": "iothread \"nope\" not found"}}"#,
        ),
        (
            r#"{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e1", "node-name": "nope", "iothread": "nope"}}"#,
            r#"{"error": {"class": "GenericError", "desc": "Cannot find device='' nor node-name='nope'"}}"#,
        ),
        (
            r#"{"execute": "object-add", "arguments": {"qom-type": "iothread", "id": "io0"}}"#,
            r#"{"error": {"class": "GenericError", "desc": "attempt to add duplicate property 'io0' to object (type 'container')"}}"#,
        ),
        (
            r#"{"execute": "object-add", "arguments": {"qom-type": "iothread", "id": "io1"}}"#,
            r#"{"return": {}}"#,
        ),
        // e0 pins n0 to io0: a fixed export elsewhere is refused ...
        (
            r#"{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e1", "node-name": "n0", "name": "x1", "iothread": "io1", "fixed-iothread": true}}"#,
            r#"{"error": {"class": "GenericError", "desc": "Cannot change iothread of active block backend"}}"#,
        ),
        // ... a movable one stays where the node is.
        (
            r#"{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e1", "node-name": "n0", "name": "x1", "iothread": "io1"}}"#,
            r#"{"return": {}}"#,
        ),
        (
            r#"{"execute": "object-del", "arguments": {"id": "io1"}}"#,
            r#"{"return": {}}"#,
        ),
        (
            r#"{"execute": "object-del", "arguments": {"id": "io1"}}"#,
            r#"{"error": {"class": "GenericError", "desc": "object 'io1' not found"}}"#,
        ),
    ];
    for (request, want) in rows {
        assert_eq!(client.execute(request), want, "{request}");
    }
}

#[test]
fn an_export_refused_at_setup_names_the_missing_iothread() {
    let got = setup_error(&[
        "--blockdev",
        "null-co,node-name=n0",
        "--export",
        "nbd,id=e0,node-name=n0,iothread=nope",
    ]);
    assert_eq!(
        got.as_deref(),
        Some("strata-qsd: --export nbd,id=e0,node-name=n0,iothread=nope: iothread \"nope\" not found")
    );
}

#[test]
fn null_co_reads_zeroes_and_drops_writes() {
    let dir = tempfile::tempdir().unwrap();
    let nbd = dir.path().join("nbd.sock");
    let _daemon = Running::start(&strings(&[
        "--blockdev",
        "null-co,node-name=n0,read-zeroes=true,size=1048576",
        "--nbd-server",
        &format!("addr.type=unix,addr.path={}", nbd.display()),
        "--export",
        "nbd,id=e0,node-name=n0,writable=true",
    ]));
    let uri = format!("nbd+unix:///n0?socket={}", nbd.display());
    let io = Command::new("qemu-io")
        .args([
            "-f",
            "raw",
            "-c",
            "read -P 0 0 1M",
            "-c",
            "write -P 0x22 4k 4k",
            "-c",
            "read -P 0 4k 4k",
            &uri,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&io.stdout);
    assert!(
        io.status.success() && !stdout.contains("Pattern verification failed"),
        "{io:?}"
    );
    assert!(
        stdout.contains("read 1048576/1048576 bytes at offset 0"),
        "{stdout}"
    );
    let map = Command::new("qemu-img")
        .args(["map", "--output=json", "-f", "raw", &uri])
        .output()
        .unwrap();
    // null_co_block_status with read-zeroes: zero (NBD shows no data).
    assert_eq!(
        String::from_utf8_lossy(&map.stdout).trim(),
        r#"[{ "start": 0, "length": 1048576, "depth": 0, "present": true, "zero": true, "data": false, "compressed": false, "offset": 0}]"#,
        "{map:?}"
    );
}
