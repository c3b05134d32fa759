//! The monitor of Strata's block layer: QMP commands onto a
//! [`strata_block::BlockLayer`], with the server-side state
//! qemu-storage-daemon keeps next to it.
//!
//! [`strata_qmp`] knows the wire (bytes, JSON, the QAPI schema) and hands a
//! typed [`strata_qmp::Command`] to a [`strata_qmp::CommandHandler`];
//! [`Monitor`] is that handler for the block layer. It owns the layer for
//! its whole life, together with the NBD server, the exports and the
//! events that are not job events, so that the daemon (`strata-qsd`) and the
//! simulator (`strata-sim`) run every command through the same value. It is
//! also the one place where the block layer's plain data (job events,
//! job infos, node infos, the debug graph) gets its QMP shape.
//!
//! # Running commands
//!
//! ```
//! use strata_block::{BlockLayer, MemFiles};
//! use strata_formats::MemStorage;
//! use strata_monitor::Monitor;
//! use strata_qmp::{Session, SessionConfig};
//!
//! let mut files = MemFiles::new();
//! files.insert("disk.img", MemStorage::from_bytes(&vec![0u8; 1 << 20]));
//! let mut monitor = Monitor::new(BlockLayer::new(files, 0));
//!
//! let mut session = Session::new(SessionConfig::default());
//! session.take_output(); // the greeting
//! let mut ask = |request: &str| {
//!     session.feed(request.as_bytes(), &mut monitor);
//!     String::from_utf8(session.take_output()).unwrap()
//! };
//! ask(r#"{"execute": "qmp_capabilities"}"#);
//! assert_eq!(
//!     ask(r#"{"execute": "blockdev-add", "arguments": {"driver": "raw", "node-name": "disk",
//!            "file": {"driver": "file", "filename": "disk.img"}}}"#),
//!     "{\"return\": {}}\r\n"
//! );
//! // The NBD server is the monitor's state: without one, an export is
//! // refused with QEMU's text, in the simulator as in the daemon.
//! assert_eq!(
//!     ask(r#"{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e", "node-name": "disk"}}"#),
//!     "{\"error\": {\"class\": \"GenericError\", \"desc\": \"NBD server not running\"}}\r\n"
//! );
//! ask(r#"{"execute": "nbd-server-start", "arguments": {"addr": {"type": "unix", "data": {"path": "/nbd.sock"}}}}"#);
//! ask(r#"{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e", "node-name": "disk"}}"#);
//! assert_eq!(monitor.exports()[0].name, "disk");
//! ```
//!
//! # Events
//!
//! Events a command raises reach its own client ahead of the reply (through
//! the session's sink) and every other client through
//! [`Monitor::take_command_events`]; events raised while jobs step come
//! from [`Monitor::take_events`], with wall-clock timestamps from
//! [`Monitor::set_clock_origin`] plus the layer's virtual time.
//!
//! ```
//! use strata_jobs::{JobEvent, JobStatus};
//! use strata_monitor::job_event;
//!
//! let event = job_event(&JobEvent::JobStatusChange { id: "j".into(), status: JobStatus::Created });
//! assert_eq!(event.name, "JOB_STATUS_CHANGE");
//! assert_eq!(event.data.unwrap()["status"], "created");
//! ```
#![deny(missing_docs)]

mod config;
mod devices;
mod monitor;
mod replies;
mod system_state;

pub use config::{MonitorOption, NbdAddress};
pub use monitor::{AioContext, Export, Monitor, NbdListener, NoListener};
pub use replies::{block_error, block_graph, job_event, options_from_json};
pub use system_state::{HmpHandler, ShutdownEvent};
