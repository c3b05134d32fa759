//! `strata-system`: a qemu-system stand-in without a guest, for QEMU's
//! block iotests (030, 040, ...).
//!
//! It is strata-qsd's daemon — the same main loop, chardevs and
//! [`strata_monitor::Monitor`] — started from qemu-system's command line:
//! [`args`] sorts the options and answers the harness's help probes,
//! [`drive`] turns `-drive` and `-device` into named BlockBackends and
//! their devices, [`qemu_io`] serves `human-monitor-command`'s `qemu-io`
//! (guest I/O and blkdebug breakpoints), and [`system`] sets it all up in
//! qemu-system's order.
//!
//! ```
//! use strata_system::args::{parse, Invocation, Probe};
//!
//! let args: Vec<String> = ["-nodefaults", "-machine", "help"].iter().map(|s| s.to_string()).collect();
//! assert_eq!(parse("qemu-system-x86_64", &args), Ok(Invocation::Probe(Probe::Machines)));
//! let refused = parse("qemu-system-x86_64", &["-bogus".to_string()]).unwrap_err();
//! assert_eq!(refused.0, "qemu-system-x86_64: -bogus: invalid option");
//! ```
#![deny(missing_docs)]

pub mod args;
pub mod drive;
pub mod qemu_io;
pub mod system;
