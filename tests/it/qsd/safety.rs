//! Nothing lost, no one let in (issue 14): backing cycles, backing format
//! probing, image locks seen by QEMU and from QEMU, the pidfile, TLS
//! credentials and the smaller refusals, each against QEMU 10.0.2's text
//! (qemu-storage-daemon, qemu-io) for the same input.

use super::{Client, Running};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::process::{Child, Command, Stdio};

use strata_qsd::args::{parse, Invocation};
use strata_qsd::daemon::Daemon;

fn run_ok(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?}: {out:?}");
}

fn qcow2(path: &str) {
    run_ok(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", path, "1M"]));
}

/// Makes `image`'s header name `backing` (format `qcow2`), unchecked.
fn name_backing(image: &str, backing: &str) {
    run_ok(Command::new("qemu-img").args(["rebase", "-u", "-b", backing, "-F", "qcow2", image]));
}

fn blockdev_add(path: &str, read_only: bool, locking: Option<&str>) -> String {
    let locking = locking.map_or(String::new(), |l| format!(r#", "locking": "{l}""#));
    format!(
        r#"{{"execute": "blockdev-add", "arguments": {{"node-name": "n", "driver": "qcow2", "read-only": {read_only}, "file": {{"driver": "file", "filename": "{path}"{locking}}}}}}}"#
    )
}

fn error(desc: &str) -> String {
    format!(r#"{{"error": {{"class": "GenericError", "desc": "{desc}"}}}}"#)
}

const OK: &str = r#"{"return": {}}"#;

/// QEMU 10.0.2, the same chains through qemu-storage-daemon's blockdev-add:
/// read-write stops at the image's own lock (below); read-only recurses
/// until memory runs out (the daemon never answers). Strata answers with
/// qemu-img's text for the loop, the prefixes as deep as the chain.
#[test]
fn backing_cycles_are_errors_never_recursion() {
    let daemon = Running::start(&[]);
    let (a, b, c) = (
        daemon.path("a.qcow2"),
        daemon.path("b.qcow2"),
        daemon.path("c.qcow2"),
    );
    for image in [&a, &b, &c] {
        qcow2(image);
    }
    name_backing(&a, &a);
    name_backing(&b, &c);
    name_backing(&c, &b);
    let mut client = Client::negotiated(&daemon.socket);
    let once = "Could not open backing file: ";
    let cases = [
        (
            &a,
            false,
            format!(r#"{once}Failed to get shared \"write\" lock"#),
        ),
        (
            &b,
            false,
            format!(r#"{once}{once}Failed to get shared \"write\" lock"#),
        ),
        (
            &a,
            true,
            format!("{once}Backing file '{a}' creates an infinite loop."),
        ),
        (
            &b,
            true,
            format!("{once}{once}Backing file '{b}' creates an infinite loop."),
        ),
    ];
    for (image, read_only, desc) in cases {
        assert_eq!(
            client.execute(&blockdev_add(image, read_only, None)),
            error(&desc),
            "{image} read-only={read_only}"
        );
    }
    // Nothing stayed open: the image opens read-write elsewhere.
    run_ok(Command::new("qemu-img").args(["rebase", "-u", "-b", "", &a]));
}

/// A header that names a backing file without its format: QEMU probes it
/// (`bdrv_open` without a driver), so the guest sees the backing file's
/// data, not its qcow2 header. qemu-img 10 refuses to write such a header,
/// so the test writes the fields itself.
#[test]
fn a_backing_file_without_recorded_format_is_probed() {
    let daemon = Running::start(&[]);
    let (base, top) = (daemon.path("base.img"), daemon.path("top.img"));
    qcow2(&base);
    run_ok(Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -P 0x11 0 64k", &base]));
    qcow2(&top);
    let file = std::fs::OpenOptions::new().write(true).open(&top).unwrap();
    let name = base.as_bytes();
    let mut fields = 32768u64.to_be_bytes().to_vec();
    fields.extend_from_slice(&(name.len() as u32).to_be_bytes());
    file.write_all_at(&fields, 8).unwrap();
    file.write_all_at(name, 32768).unwrap();
    drop(file);

    let mut client = Client::negotiated(&daemon.socket);
    assert_eq!(client.execute(&blockdev_add(&top, false, None)), OK);
    let nbd = daemon.path("nbd.sock");
    let start = format!(
        r#"{{"execute": "nbd-server-start", "arguments": {{"addr": {{"type": "unix", "data": {{"path": "{nbd}"}}}}}}}}"#
    );
    assert_eq!(client.execute(&start), OK);
    assert_eq!(
        client.execute(r#"{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e0", "node-name": "n"}}"#),
        OK
    );
    let uri = format!("nbd+unix:///n?socket={nbd}");
    let io = Command::new("qemu-io")
        .args(["-r", "-f", "raw", "-c", "read -P 0x11 0 64k", &uri])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&io.stdout);
    assert!(
        io.status.success()
            && stdout.starts_with("read 65536/65536")
            && !stdout.contains("Pattern verification failed"),
        "{io:?}"
    );
}

fn qemu_io(args: &[&str]) -> (bool, String) {
    let out = Command::new("qemu-io").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Strata holds an image: QEMU's tools see its lock bytes, with QEMU's
/// texts; `-U` reads; once the node goes, the locks go with it.
#[test]
fn qemu_sees_strata_image_locks() {
    let daemon = Running::start(&[]);
    let image = daemon.path("t.qcow2");
    qcow2(&image);
    let mut client = Client::negotiated(&daemon.socket);
    assert_eq!(client.execute(&blockdev_add(&image, false, None)), OK);
    let hint = format!("Is another process using the image [{image}]?\n");
    let refused =
        |how: &str| format!("qemu-io: can't open device {image}: Failed to get {how}lock\n{hint}");
    assert_eq!(
        qemu_io(&["-c", "read 0 512", &image]),
        (false, refused("\"write\" "))
    );
    assert_eq!(
        qemu_io(&["-r", "-c", "read 0 512", &image]),
        (false, refused("shared \"write\" "))
    );
    assert!(qemu_io(&["-U", "-r", "-c", "read 0 512", &image]).0);
    assert_eq!(
        client.execute(r#"{"execute": "blockdev-del", "arguments": {"node-name": "n"}}"#),
        OK
    );
    assert_eq!(
        qemu_io(&["-c", "write 0 512", &image]),
        (true, String::new())
    );
    // locking=off takes no lock bytes.
    assert_eq!(
        client.execute(&blockdev_add(&image, false, Some("off"))),
        OK
    );
    assert_eq!(
        qemu_io(&["-c", "write 0 512", &image]),
        (true, String::new())
    );
}

/// qemu-storage-daemon holds an image read-write: Strata is refused with
/// QEMU's texts, read-write and read-only; `locking=off` opens it.
#[test]
fn strata_sees_qemu_image_locks() {
    let daemon = Running::start(&[]);
    let image = daemon.path("t.qcow2");
    qcow2(&image);
    let mut qsd = QemuDaemon::holding(&image);
    let mut client = Client::negotiated(&daemon.socket);
    assert_eq!(
        client.execute(&blockdev_add(&image, false, None)),
        error(r#"Failed to get \"write\" lock"#)
    );
    assert_eq!(
        client.execute(&blockdev_add(&image, true, None)),
        error(r#"Failed to get shared \"write\" lock"#)
    );
    assert_eq!(client.execute(&blockdev_add(&image, true, Some("off"))), OK);
    qsd.quit();
}

/// What qemu-storage-daemon 10.0.2 prints on stderr for `args`, with the
/// program named as Strata names itself.
fn qemu_refusal(args: &[String]) -> String {
    let out = Command::new("qemu-storage-daemon")
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?}: {out:?}");
    let text = String::from_utf8(out.stderr).unwrap();
    let text = text.strip_suffix('\n').unwrap_or(&text);
    text.replace("qemu-storage-daemon:", "strata-qsd:")
}

fn strata_refusal(args: &[String]) -> String {
    let Ok(Invocation::Run(plan)) = parse("strata-qsd", args) else {
        panic!("{args:?}")
    };
    Daemon::start("strata-qsd", plan).err().expect("refused").0
}

/// A held image refuses command-line options with QEMU's text, and with
/// the hint `Is another process using the image [...]?` exactly where
/// QEMU prints it: `--blockdev` and an export's `resize` unsharing, but
/// not an export's first attach (QEMU exits there before the hint).
#[test]
fn command_line_lock_refusals_carry_qemus_hint() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("t.qcow2").display().to_string();
    qcow2(&image);
    let mut qsd = QemuDaemon::holding(&image);
    let socket = dir.path().join("n.sock").display().to_string();
    let file = format!("file,node-name=f,filename={image}");
    let nbd = format!("addr.type=unix,addr.path={socket}");
    let export = |writable: &str| {
        ["--blockdev", &file, "--nbd-server", &nbd, "--export"]
            .map(String::from)
            .into_iter()
            .chain([format!("nbd,id=e,node-name=f,writable={writable}")])
            .collect::<Vec<String>>()
    };
    let qcow2_over_f = [
        "--blockdev",
        &file,
        "--blockdev",
        "qcow2,node-name=q,file=f",
    ];
    let inline_qcow2 = format!("driver=qcow2,node-name=q,file.driver=file,file.filename={image}");
    let cases: Vec<Vec<String>> = vec![
        qcow2_over_f.map(String::from).to_vec(),
        vec!["--blockdev".into(), inline_qcow2],
        export("on"),
        export("off"),
    ];
    let mut hinted = 0;
    for args in &cases {
        let want = qemu_refusal(args);
        hinted += usize::from(want.contains("\nIs another process using the image ["));
        assert_eq!(strata_refusal(args), want, "{args:?}");
    }
    assert_eq!(hinted, 3, "QEMU's hint where expected");
    qsd.quit();
}

/// qemu-storage-daemon with `image` opened read-write, on stdio.
struct QemuDaemon {
    child: Child,
}

impl QemuDaemon {
    fn holding(image: &str) -> QemuDaemon {
        let blockdev = format!("driver=qcow2,node-name=q,file.driver=file,file.filename={image}");
        let mut child = Command::new("qemu-storage-daemon")
            .args([
                "--blockdev",
                &blockdev,
                "--chardev",
                "stdio,id=m",
                "--monitor",
                "m",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The greeting comes once the options (the blockdev) are done.
        let mut byte = [0u8];
        let stdout = child.stdout.as_mut().unwrap();
        while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {}
        QemuDaemon { child }
    }

    fn quit(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(b"{\"execute\": \"qmp_capabilities\"}\n{\"execute\": \"quit\"}\n")
            .unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for QemuDaemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start_with_pidfile(pidfile: &str) -> Result<Daemon, String> {
    let args: Vec<String> = vec!["--pidfile".into(), pidfile.into()];
    let Ok(Invocation::Run(plan)) = parse("strata-qsd", &args) else {
        panic!("{args:?}")
    };
    Daemon::start("strata-qsd", plan).map_err(|e| e.0)
}

/// QEMU 10.0.2: the pidfile is 0600 and locked (a second daemon:
/// `cannot create PID file: Cannot lock pid file: Resource temporarily
/// unavailable`); it writes through a symbolic link and deletes the link's
/// target at exit. Strata refuses the link (`O_NOFOLLOW`'s errno) and
/// removes only the file it locked.
#[test]
fn the_pidfile_is_private_locked_and_only_ever_ours() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("qsd.pid").display().to_string();
    let with_pidfile = ["--pidfile".to_string(), pidfile.clone()];
    let first = Running::start(&with_pidfile);
    let meta = std::fs::metadata(&pidfile).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", std::process::id())
    );
    assert_eq!(
        start_with_pidfile(&pidfile).err().as_deref(),
        Some("strata-qsd: cannot create PID file: Cannot lock pid file: Resource temporarily unavailable")
    );
    assert!(
        std::fs::metadata(&pidfile).is_ok(),
        "the refused daemon leaves it"
    );
    // Someone removes the first daemon's pidfile and a second starts: the
    // first's exit leaves the second's alone.
    std::fs::remove_file(&pidfile).unwrap();
    let second = Running::start(&with_pidfile);
    let second_inode = std::fs::metadata(&pidfile).unwrap().ino();
    quit(first);
    assert_eq!(std::fs::metadata(&pidfile).unwrap().ino(), second_inode);
    quit(second);
    assert!(
        std::fs::metadata(&pidfile).is_err(),
        "the second removed its own"
    );

    let target = dir.path().join("target");
    std::fs::write(&target, "precious\n").unwrap();
    let link = dir.path().join("link.pid").display().to_string();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_eq!(
        start_with_pidfile(&link).err(),
        Some(format!("strata-qsd: cannot create PID file: Could not create '{link}': Too many levels of symbolic links"))
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
}

fn quit(daemon: Running) {
    let mut client = Client::negotiated(&daemon.socket);
    assert_eq!(client.execute(r#"{"execute": "quit"}"#), OK);
    assert_eq!(daemon.join(), 0);
}

/// qemu-storage-daemon 10.0.2's answers, command by command.
#[test]
fn refusals_match_qemu() {
    let daemon = Running::start(&[]);
    let dir = daemon.path("d");
    std::fs::create_dir(&dir).unwrap();
    let nbd = daemon.path("nbd.sock");
    let server = |tls: &str| {
        format!(
            r#"{{"execute": "nbd-server-start", "arguments": {{"addr": {{"type": "unix", "data": {{"path": "{nbd}"}}}}{tls}}}}}"#
        )
    };
    let file = |read_only: bool| {
        format!(
            r#"{{"execute": "blockdev-add", "arguments": {{"node-name": "f", "driver": "file", "read-only": {read_only}, "filename": "{dir}"}}}}"#
        )
    };
    let cases = [
        (r#"{"execute": "nbd-server-stop"}"#.to_string(), error("NBD server not running")),
        (
            r#"{"execute": "object-add", "arguments": {"qom-type": "throttle-group", "id": "1bad"}}"#.into(),
            error("Parameter 'id' expects an identifier"),
        ),
        (server(r#", "tls-creds": "nope""#), error("No TLS credentials with id 'nope'")),
        (
            r#"{"execute": "object-add", "arguments": {"qom-type": "throttle-group", "id": "t1"}}"#.into(),
            OK.into(),
        ),
        (server(r#", "tls-creds": "t1""#), error("Object with id 't1' is not TLS credentials")),
        // A refused TLS server left nothing running.
        (server(""), OK.into()),
        (
            r#"{"execute": "query-block"}"#.into(),
            r#"{"return": []}"#.into(),
        ),
        (file(false), error(&format!("Could not open '{dir}': Is a directory"))),
        (file(true), error(&format!("'file' driver requires '{dir}' to be a regular file"))),
    ];
    let mut client = Client::negotiated(&daemon.socket);
    for (request, want) in cases {
        assert_eq!(client.execute(&request), want, "{request}");
    }
}

#[test]
fn nbd_server_option_with_tls_creds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("n.sock").display().to_string();
    let option = format!("addr.type=unix,addr.path={socket},tls-creds=x");
    let args: Vec<String> = vec!["--nbd-server".into(), option.clone()];
    let Ok(Invocation::Run(plan)) = parse("strata-qsd", &args) else {
        panic!("{args:?}")
    };
    assert_eq!(
        Daemon::start("strata-qsd", plan).err().map(|e| e.0),
        Some(format!(
            "strata-qsd: --nbd-server {option}: No TLS credentials with id 'x'"
        ))
    );
}

/// A client that sends its requests and shuts its side of the socket
/// still gets every answer before the daemon closes the connection, as
/// from qemu-storage-daemon 10.0.2 (found by `cargo xtask fuzz-inputs`:
/// strata-qsd dropped the answers still queued).
#[test]
fn a_half_closed_client_gets_every_answer() {
    let daemon = Running::start(&[]);
    let client = Client::negotiated(&daemon.socket);
    let mut stream = client.stream.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut answers = Vec::new();
        stream.read_to_end(&mut answers).unwrap();
        answers
    });
    let stray = 20_000;
    let mut sending = &client.stream;
    sending.write_all(&vec![0xffu8; stray]).unwrap();
    client.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let answers = reader.join().unwrap();
    let line = "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\uFFFD'\"}}\r\n";
    assert_eq!(answers.len(), stray * line.len());
    assert!(answers.chunks(line.len()).all(|a| a == line.as_bytes()));
}

/// `dir/top.qcow2` over `dir/base.img`, a raw backing file the header
/// names without a format (so QEMU probes it), with `first_sector` as the
/// top's guest data at offset 0.
fn chain_over_unformatted_raw(dir: &std::path::Path, first_sector: &[u8]) -> (String, String) {
    let (base, top) = (dir.join("base.img"), dir.join("top.qcow2"));
    let (base, top) = (base.display().to_string(), top.display().to_string());
    run_ok(Command::new("qemu-img").args(["create", "-q", "-f", "raw", &base, "1M"]));
    qcow2(&top);
    let file = std::fs::OpenOptions::new().write(true).open(&top).unwrap();
    let name = b"base.img";
    let mut fields = 32768u64.to_be_bytes().to_vec();
    fields.extend_from_slice(&(name.len() as u32).to_be_bytes());
    file.write_all_at(&fields, 8).unwrap();
    file.write_all_at(name, 32768).unwrap();
    drop(file);
    let sector = dir.join("sector");
    std::fs::write(&sector, first_sector).unwrap();
    let write = format!("write -s {} 0 512", sector.display());
    run_ok(Command::new("qemu-io").args(["-f", "qcow2", "-c", &write, &top]));
    (base, top)
}

/// Starts an active commit of `top` into its probed raw backing file;
/// how the job ends up (the first of BLOCK_JOB_READY and
/// BLOCK_JOB_COMPLETED, the timestamp cut off).
fn commit_into_probed_raw(client: &mut Client, top: &str) -> String {
    let add = format!(
        r#"{{"execute": "blockdev-add", "arguments": {{"node-name": "n", "driver": "qcow2", "file": {{"driver": "file", "filename": "{top}"}}}}}}"#
    );
    assert_eq!(client.execute(&add), OK);
    assert_eq!(
        client
            .execute(r#"{"execute": "block-commit", "arguments": {"job-id": "c", "device": "n"}}"#),
        OK
    );
    loop {
        let event = client.wait_event("\"event\": \"BLOCK_JOB_");
        if event.contains("BLOCK_JOB_READY") || event.contains("BLOCK_JOB_COMPLETED") {
            return event.split_once("\"event\"").unwrap().1.to_string();
        }
    }
}

/// qemu-storage-daemon 10.0.2 serving QMP on a unix socket in `dir`.
fn qemu_daemon_in(dir: &std::path::Path) -> (QemuDaemon, Client) {
    let socket = dir.join("qmp.sock");
    let chardev = format!("socket,path={},server=on,wait=off,id=m", socket.display());
    let daemon = QemuDaemon {
        child: Command::new("qemu-storage-daemon")
            .args(["--chardev", &chardev, "--monitor", "m"])
            .spawn()
            .unwrap(),
    };
    // The socket appears once the daemon listens.
    for _ in 0..500 {
        if let Ok(stream) = std::os::unix::net::UnixStream::connect(&socket) {
            return (daemon, Client::greeted(stream).negotiate());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!(
        "qemu-storage-daemon does not listen on {}",
        socket.display()
    )
}

/// A backing file opened without a recorded format was probed as raw:
/// QEMU then refuses (EPERM) a write to its first sector that would make
/// it probe as another format (`raw_co_pwritev`), so committing a top
/// whose first sector is a qcow2 header fails with `Operation not
/// permitted` and leaves the base raw; ordinary data commits. Strata's
/// job ends as qemu-storage-daemon 10.0.2's, and the base's first sector
/// is the same afterwards.
#[test]
fn a_probed_raw_backing_file_never_becomes_another_format() {
    let header = {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("h.qcow2").display().to_string();
        qcow2(&image);
        std::fs::read(&image).unwrap()[..512].to_vec()
    };
    let mut outcomes = Vec::new();
    for first_sector in [header, vec![0x5a; 512]] {
        let (qemu_dir, strata) = (tempfile::tempdir().unwrap(), Running::start(&[]));
        let strata_dir = std::path::Path::new(&strata.path("x"))
            .parent()
            .unwrap()
            .to_owned();
        let (qemu_base, qemu_top) = chain_over_unformatted_raw(qemu_dir.path(), &first_sector);
        let (strata_base, strata_top) = chain_over_unformatted_raw(&strata_dir, &first_sector);
        let (mut qemu, mut qemu_client) = qemu_daemon_in(qemu_dir.path());
        let want = commit_into_probed_raw(&mut qemu_client, &qemu_top);
        assert_eq!(qemu_client.execute(r#"{"execute": "quit"}"#), OK);
        assert!(qemu.child.wait().unwrap().success());
        let mut client = Client::negotiated(&strata.socket);
        assert_eq!(commit_into_probed_raw(&mut client, &strata_top), want);
        let first_512 = |path: &str| std::fs::read(path).unwrap()[..512].to_vec();
        assert_eq!(first_512(&strata_base), first_512(&qemu_base));
        outcomes.push(want);
    }
    assert!(
        outcomes[0].contains("\"error\": \"Operation not permitted\""),
        "{outcomes:?}"
    );
    assert!(outcomes[1].contains("BLOCK_JOB_READY"), "{outcomes:?}");
}

/// The first sectors QEMU's probing recognises, sector by sector: written
/// over a raw image whose format qemu-io probed, QEMU refuses exactly
/// those Strata's [`strata_formats::probed_driver`] finds not raw.
#[test]
fn probing_knows_the_magics_qemu_refuses_on_a_probed_raw_image() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("r.img").display().to_string();
    run_ok(Command::new("qemu-img").args(["create", "-q", "-f", "raw", &image, "64k"]));
    let sector = |prefix: &[u8], at: usize| {
        let mut s = vec![0u8; 512];
        s[at..at + prefix.len()].copy_from_slice(prefix);
        s
    };
    let mut bochs = sector(b"Bochs Virtual HD Image", 0);
    bochs[32..39].copy_from_slice(b"Redolog");
    bochs[48..55].copy_from_slice(b"Growing");
    bochs[66] = 2;
    let mut parallels = sector(b"WithoutFreeSpace", 0);
    parallels[16] = 2;
    let cases = [
        sector(b"QFI\xfb\0\0\0\x03", 0),
        sector(b"QFI\xfb\0\0\0\x02", 0),
        sector(b"QFI\xfb\0\0\0\x01", 0),
        sector(b"QFI\xfb\0\0\0\x00", 0),
        sector(b"QED\0", 0),
        sector(b"\x7f\x10\xda\xbe", 64),
        sector(b"KDMV", 0),
        sector(b"COWD", 0),
        sector(b"# Disk DescriptorFile\n  \nversion=1\n", 0),
        sector(b"version=3\r\n", 0),
        sector(b"version=4\n", 0),
        sector(b"\nversion=1\n", 0),
        sector(b"conectix", 0),
        sector(b"vhdxfile", 0),
        parallels,
        bochs,
        sector(b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n", 0),
        sector(b"LUKS\xba\xbe\0\x01", 0),
        sector(b"LUKS\xba\xbe\0\x02", 0),
        sector(b"", 0),
    ];
    let mut refused = 0;
    for (i, case) in cases.iter().enumerate() {
        let path = dir.path().join(format!("s{i}"));
        std::fs::write(&path, case).unwrap();
        let write = format!("write -s {} 0 512", path.display());
        let (written, _) = qemu_io(&["-c", &write, &image]);
        let strata = strata_formats::probed_driver(case);
        assert_eq!(written, strata == "raw", "case {i}: Strata probes {strata}");
        refused += usize::from(!written);
    }
    assert_eq!(refused, 15);
}
