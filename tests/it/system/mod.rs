//! strata-system, the qemu-system stand-in for QEMU's block iotests: its
//! command line (the harness's start-up probes, qemu-system's refusals,
//! `-drive`'s legacy options), the devices that name BlockBackends, and
//! `human-monitor-command`'s `qemu-io` with qemu-io's texts. (QEMU's own
//! 030 and 040 run against the binary in `.ci/run`.)

use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;

use strata_graph::OptValue;
use strata_qsd::daemon::Daemon;
use strata_system::args::{parse, Invocation, Plan, Probe};
use strata_system::drive::{parse_device, parse_drive, Drive, Interface};
use strata_system::qemu_io::{cvtstr, parse_number};

use crate::qsd::{Client, Running};

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn invocation(args: &[&str]) -> Result<Invocation, String> {
    parse("qemu-system-x86_64", &strings(args)).map_err(|e| e.0)
}

#[test]
fn the_harness_probes_are_answered_before_anything_starts() {
    let cases: &[(&[&str], Probe)] = &[
        (&["-machine", "help"], Probe::Machines),
        (
            &["-nodefaults", "-M", "none", "-device", "help"],
            Probe::Devices,
        ),
        (&["-nodefaults", "-drive", "format=help"], Probe::Formats),
    ];
    for (args, probe) in cases {
        assert_eq!(invocation(args), Ok(Invocation::Probe(*probe)), "{args:?}");
    }
    // The default machine is the one testenv.py looks for.
    let machines = strata_system::args::machines_help();
    assert!(
        machines.lines().any(|l| l.ends_with(" (default)")),
        "{machines}"
    );
    // iotests.py reads the formats from the first two lines.
    let formats = strata_system::args::formats_help();
    let lines: Vec<&str> = formats.lines().collect();
    assert!(lines[0].starts_with("Supported formats: ") && lines[0].contains(" qcow2 "));
    assert!(lines[1].starts_with("Supported formats (read-only): "));
    assert!(strata_system::args::devices_help().contains("\"virtio-blk-pci\""));
}

#[test]
fn refusals_read_like_qemu_systems() {
    let cases: &[(&[&str], &str)] = &[
        (&["-bogus"], "qemu-system-x86_64: -bogus: invalid option"),
        (&["--bogus"], "qemu-system-x86_64: --bogus: invalid option"),
        (
            &["-drive"],
            "qemu-system-x86_64: -drive: requires an argument",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(invocation(args).unwrap_err(), *want, "{args:?}");
    }
}

#[test]
fn options_are_sorted_by_kind_in_order() {
    let Ok(Invocation::Run(plan)) = invocation(&[
        "-display",
        "none",
        "-vga",
        "none",
        "-chardev",
        "socket,id=mon,fd=13",
        "-mon",
        "chardev=mon,mode=control",
        "-chardev",
        "socket,id=qtest,fd=3",
        "-qtest",
        "chardev:qtest",
        "-accel",
        "qtest",
        "-nodefaults",
        "-drive",
        "if=none,id=a",
        "-device",
        "scsi-hd,drive=a",
        "-drive",
        "if=none,id=b",
        "-S",
    ]) else {
        panic!("a run")
    };
    assert_eq!(
        plan,
        Plan {
            chardevs: strings(&["socket,id=mon,fd=13", "socket,id=qtest,fd=3"]),
            monitors: strings(&["chardev=mon,mode=control"]),
            drives: strings(&["if=none,id=a", "if=none,id=b"]),
            devices: strings(&["scsi-hd,drive=a"]),
            qtest: Some("qtest".into()),
            paused: true,
            ..Plan::default()
        }
    );
}

#[test]
fn drive_options_become_a_typed_options_tree() {
    let drive = parse_drive(
        "if=none,id=drive0,file=blkdebug::t.img,format=qcow2,cache=writeback,aio=threads,\
         backing.node-name=mid,backing.backing.node-name=base,read-only=on",
    )
    .unwrap();
    assert_eq!(drive.id.as_deref(), Some("drive0"));
    assert_eq!(drive.interface, Interface::None);
    assert_eq!(drive.file.as_deref(), Some("blkdebug::t.img"));
    assert_eq!(drive.options.get_str("driver"), Some("qcow2"));
    assert_eq!(drive.options.get("read-only"), Some(&OptValue::Bool(true)));
    let Some(OptValue::Dict(backing)) = drive.options.get("backing") else {
        panic!("backing options nest at the dot")
    };
    assert_eq!(backing.get_str("node-name"), Some("mid"));
    assert!(drive.options.get("cache").is_none() && drive.options.get("aio").is_none());

    // Numbered children become a list (quorum's), ids default per interface.
    let quorum = parse_drive(
        "driver=quorum,vote-threshold=2,children.0.file.filename=a,children.1.file.filename=b",
    )
    .unwrap();
    assert_eq!((quorum.id, quorum.interface), (None, Interface::Virtio));
    assert_eq!(Drive::default_id(Interface::None, 1), "none1");
    assert!(matches!(quorum.options.get("children"), Some(OptValue::List(l)) if l.len() == 2));

    assert_eq!(
        parse_drive("format=raw,driver=raw").unwrap_err(),
        "Cannot specify both 'driver' and 'format'"
    );
    assert_eq!(
        parse_drive("read-only=maybe").unwrap_err(),
        "Parameter 'read-only' expects 'on' or 'off'"
    );
    let device = parse_device("scsi-hd,id=scsi0,drive=drive0,bus=vio-scsi.0").unwrap();
    assert_eq!(
        (device.id.as_deref(), device.drive.as_deref()),
        (Some("scsi0"), Some("drive0"))
    );
}

#[test]
fn qemu_io_numbers_and_sizes() {
    let sizes = [
        (512.0, "512 bytes"),
        (1536.0, "1.500 KiB"),
        (1048576.0, "1 MiB"),
        (3.0 * 1073741824.0, "3 GiB"),
    ];
    for (value, text) in sizes {
        assert_eq!(cvtstr(value), text);
    }
    let numbers = [
        ("512", Some(512)),
        ("64k", Some(65536)),
        ("1M", Some(1 << 20)),
        ("0x200", Some(512)),
        ("1x", None),
    ];
    for (text, value) in numbers {
        assert_eq!(parse_number(text), value, "{text}");
    }
}

/// A stand-in started in this process, its QMP monitor on one end of a
/// socket pair as iotests' `VM` passes it (`-chardev socket,fd=N`).
fn system(drives: &[String]) -> (Client, std::thread::JoinHandle<i32>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let fd = theirs.into_raw_fd();
    let mut args = strings(&[
        "-chardev",
        &format!("socket,id=mon,fd={fd}"),
        "-mon",
        "chardev=mon,mode=control",
    ]);
    args.extend_from_slice(drives);
    let Ok(Invocation::Run(plan)) = parse("qemu-system-x86_64", &args) else {
        panic!("a run")
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let started: Result<Daemon, String> =
            strata_system::system::start("qemu-system-x86_64", &plan);
        match started {
            Ok(daemon) => {
                ready_tx.send(Ok(())).unwrap();
                daemon.run_loop()
            }
            Err(line) => {
                ready_tx.send(Err(line)).unwrap();
                1
            }
        }
    });
    ready_rx.recv().unwrap().expect("the stand-in starts");
    (Client::greeted(ours).negotiate(), thread)
}

fn hmp(client: &mut Client, line: &str) -> String {
    let request = strata_qmp::serde_json::json!({"execute": "human-monitor-command", "arguments": {"command-line": line}});
    client.execute(&request.to_string())
}

#[test]
fn drives_are_named_backends_and_qemu_io_writes_through_them() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let (mut client, thread) = system(&strings(&[
        "-drive",
        &format!(
            "if=virtio,id=drive0,file=blkdebug::{},format=raw,cache=writeback",
            image.display()
        ),
    ]));
    let block = client.execute(r#"{"execute": "query-block"}"#);
    for needle in [
        r#""device": "drive0""#,
        r#""qdev": "/machine/peripheral-anon/device[0]/virtio-backend""#,
        r#""drv": "raw""#,
        r#""io-status": "ok""#,
    ] {
        assert!(block.contains(needle), "{needle} in {block}");
    }
    let wrote = hmp(&mut client, r#"qemu-io drive0 "write -P 0xab 0 512""#);
    assert!(
        wrote.starts_with(r#"{"return": "wrote 512/512 bytes at offset 0\r\n512 bytes, 1 ops; "#),
        "{wrote}"
    );
    let read = hmp(&mut client, r#"qemu-io drive0 "read -P 0xab 0 512""#);
    assert!(
        read.starts_with(r#"{"return": "read 512/512 bytes at offset 0\r\n"#),
        "{read}"
    );
    let mismatch = hmp(&mut client, r#"qemu-io drive0 "read -P 0xcd 0 512""#);
    assert!(
        mismatch.starts_with(
            r#"{"return": "Pattern verification failed at offset 0, 512 bytes\r\nread 512/512"#
        ),
        "{mismatch}"
    );
    let cases = [
        (
            r#"qemu-io drive0 "break write_aio bp_drive0""#,
            r#"{"return": ""}"#,
        ),
        (
            r#"qemu-io drive0 "remove_break bp_drive0""#,
            r#"{"return": ""}"#,
        ),
        (
            r#"qemu-io drive0 "remove_break bp_drive0""#,
            r#"{"return": "remove_break failed: No such file or directory\r\n"}"#,
        ),
        (
            r#"qemu-io nosuch "flush""#,
            r#"{"return": "Error: Cannot find device='' nor node-name='nosuch'\r\n"}"#,
        ),
        ("bogus", r#"{"return": "unknown command: 'bogus'\r\n"}"#),
    ];
    for (line, want) in cases {
        assert_eq!(hmp(&mut client, line), want, "{line}");
    }
    assert_eq!(
        client.execute(r#"{"execute": "device_del", "arguments": {"id": "nosuch"}}"#),
        r#"{"error": {"class": "DeviceNotFound", "desc": "Device 'nosuch' not found"}}"#
    );
    assert_eq!(
        client.execute(r#"{"execute": "quit"}"#),
        r#"{"return": {}}"#
    );
    assert_eq!(thread.join().unwrap(), 0);
    // The guest's write went to the file.
    assert_eq!(&std::fs::read(&image).unwrap()[..512], &[0xab; 512][..]);
}

#[test]
fn a_breakpoint_needs_a_blkdebug_node_and_the_daemon_has_no_hmp() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::write(&image, vec![0u8; 65536]).unwrap();
    let (mut client, thread) = system(&strings(&[
        "-drive",
        &format!("if=none,id=d0,file={},format=raw", image.display()),
        "-drive",
        &format!(
            "if=none,id=ro,file={},format=raw,read-only=on",
            image.display()
        ),
    ]));
    assert_eq!(
        hmp(&mut client, r#"qemu-io d0 "break read_aio bp""#),
        r#"{"return": "breakpoint failed: Operation not supported\r\n"}"#
    );
    // if=none: a BlockBackend without a device.
    let block = client.execute(r#"{"execute": "query-block"}"#);
    assert!(
        block.contains(r#""device": "d0""#) && !block.contains("qdev"),
        "{block}"
    );
    // A command that writes asks its BlockBackend for `write` first.
    assert_eq!(
        hmp(&mut client, r#"qemu-io ro "aio_write 0 2k""#),
        r#"{"return": "Block node is read-only\r\n"}"#
    );
    // A machine announces its shutdown ahead of quit's answer.
    assert_eq!(
        client.execute(r#"{"execute": "quit"}"#),
        r#"{"return": {}}"#
    );
    assert!(
        client.events.last().is_some_and(|e| e.contains(
            r#""event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}"#
        )),
        "{:?}",
        client.events
    );
    assert_eq!(thread.join().unwrap(), 0);

    let daemon = Running::start(&[]);
    let mut qsd = Client::negotiated(&daemon.socket);
    assert_eq!(
        hmp(&mut qsd, "qemu-io d0 \"flush\""),
        r#"{"error": {"class": "CommandNotFound", "desc": "The command human-monitor-command has not been found"}}"#
    );
    assert_eq!(qsd.execute(r#"{"execute": "quit"}"#), r#"{"return": {}}"#);
    assert_eq!(daemon.join(), 0);
}

#[test]
fn a_drive_that_cannot_open_stops_the_start_with_the_option_in_the_text() {
    let Ok(Invocation::Run(plan)) =
        invocation(&["-drive", "if=none,id=d0,file=/nonexistent/x.img,format=raw"])
    else {
        panic!("a run")
    };
    let refused =
        std::thread::spawn(move || strata_system::system::start("qemu-system-x86_64", &plan).err())
            .join()
            .unwrap();
    assert_eq!(
        refused.as_deref(),
        Some("qemu-system-x86_64: -drive if=none,id=d0,file=/nonexistent/x.img,format=raw: Could not open '/nonexistent/x.img': No such file or directory")
    );
}
