//! `strata-qsd`: Strata's qemu-storage-daemon replacement (QMP daemon and NBD block exports).
//!
//! The binary takes qemu-storage-daemon's command line and serves QMP on
//! unix sockets and NBD exports of real image files, with QEMU 10.0.2's
//! answers, events and errors:
//!
//! ```text
//! strata-qsd --chardev socket,path=qmp.sock,server=on,wait=off,id=m0 --monitor chardev=m0 \
//!     --blockdev qcow2,node-name=top,file.driver=file,file.filename=top.img \
//!     --nbd-server addr.type=unix,addr.path=nbd.sock --export nbd,id=e0,node-name=top \
//!     --pidfile qsd.pid
//! ```
//!
//! The pieces: [`args`] splits the command line (getopt's rules and
//! texts), [`chardev`] reads `--chardev`, [`daemon`] carries the options
//! out in order and runs the event loop (one thread owns the block layer;
//! QMP goes through [`strata_monitor::Monitor`], which is the only place
//! that knows JSON), [`exports`] shows the block layer's exports to the
//! [`nbd`] server, and [`sys`] wraps `poll(2)` and `signalfd(2)`.
//!
//! # The command line
//!
//! ```
//! use strata_qsd::args::{parse, Invocation, Setup};
//!
//! let args: Vec<String> = ["--chardev", "socket,path=q.sock,server=on,wait=off,id=m0",
//!                          "--monitor", "chardev=m0", "--pidfile", "qsd.pid"]
//!     .iter().map(|s| s.to_string()).collect();
//! let Ok(Invocation::Run(plan)) = parse("strata-qsd", &args) else { unreachable!() };
//! assert_eq!(plan.steps[1], Setup::Monitor("chardev=m0".into()));
//! assert_eq!(plan.pidfile.as_deref(), Some("qsd.pid"));
//!
//! // Refusals read like qemu-storage-daemon's.
//! let err = parse("strata-qsd", &["--bogus".to_string()]).unwrap_err();
//! assert_eq!(err.line(), "strata-qsd: unrecognized option '--bogus'");
//! ```
//!
//! # A daemon on a thread
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use std::os::unix::net::UnixStream;
//! use strata_qsd::args::{parse, Invocation};
//! use strata_qsd::daemon::Daemon;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let socket = dir.path().join("qmp.sock");
//! let args = vec![
//!     "--chardev".to_string(),
//!     format!("socket,path={},server=on,wait=off,id=m0", socket.display()),
//!     "--monitor".to_string(),
//!     "chardev=m0".to_string(),
//! ];
//! let Ok(Invocation::Run(plan)) = parse("strata-qsd", &args) else { unreachable!() };
//! let (ready, started) = std::sync::mpsc::channel();
//! let daemon = std::thread::spawn(move || {
//!     // The daemon blocks SIGTERM on its own thread and reads it from a
//!     // signalfd: start it on the thread that runs it.
//!     let daemon = Daemon::start("strata-qsd", plan).map_err(|e| e.0).unwrap();
//!     ready.send(()).unwrap();
//!     daemon.run_loop()
//! });
//! started.recv().unwrap();
//!
//! let mut client = UnixStream::connect(&socket).unwrap();
//! let mut lines = BufReader::new(client.try_clone().unwrap()).lines();
//! assert!(lines.next().unwrap().unwrap().starts_with("{\"QMP\": "));
//! client.write_all(b"{\"execute\": \"qmp_capabilities\"}\n").unwrap();
//! assert_eq!(lines.next().unwrap().unwrap(), "{\"return\": {}}");
//! client.write_all(b"{\"execute\": \"quit\"}\n").unwrap();
//! assert_eq!(lines.next().unwrap().unwrap(), "{\"return\": {}}");
//! assert_eq!(daemon.join().unwrap(), 0);
//! ```
#![deny(missing_docs)]

pub mod args;
pub mod chardev;
pub mod daemon;
pub mod exports;
pub mod nbd;
pub mod pidfile;
pub mod sys;
