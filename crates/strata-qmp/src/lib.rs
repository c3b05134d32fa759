//! QMP for Strata: qemu-storage-daemon 10.0.2's monitor protocol, byte for
//! byte, without the block layer.
//!
//! This is the only Strata crate that knows JSON.  It offers:
//!
//! * [`Session`]: a sans-I/O QMP connection.  Feed it bytes, take bytes out.
//!   It parses JSON exactly like QEMU's lexer and streamer (single-quoted
//!   strings, error recovery, "stray" bytes), enforces capabilities
//!   negotiation, validates every command against the QAPI schema with
//!   QEMU's error texts, and hands typed [`Command`]s to your
//!   [`CommandHandler`].
//! * [`validate_command`]: the schema check alone.
//! * [`parse_cli_option`]: the arguments of `--blockdev`, `--object`,
//!   `--export` and `--nbd-server`, in keyval or JSON syntax.
//! * [`to_qemu_json`]: QEMU's JSON output format (hash-ordered members,
//!   `\uXXXX` escapes, `%.17g` doubles).
//!
//! # A session
//!
//! ```
//! use strata_qmp::{Command, CommandHandler, EventSink, QmpError, Session, SessionConfig};
//! use serde_json::{json, Value};
//!
//! /// A block layer that knows no jobs.
//! struct NoJobs;
//! impl CommandHandler for NoJobs {
//!     fn dispatch(&mut self, command: Command, _events: &mut EventSink) -> Result<Value, QmpError> {
//!         match command {
//!             Command::QueryJobs => Ok(json!([])),
//!             other => Err(QmpError::generic(format!("not modelled: {other:?}"))),
//!         }
//!     }
//! }
//!
//! let mut session = Session::new(SessionConfig::default());
//! let greeting = String::from_utf8(session.take_output()).unwrap();
//! assert_eq!(
//!     greeting,
//!     "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}, \
//!      \"package\": \"Debian 1:10.0.2+ds-2+deb13u1~bpo12+1\"}, \"capabilities\": [\"oob\"]}}\r\n"
//! );
//!
//! // Nothing but qmp_capabilities works before negotiation.
//! session.feed(b"{\"execute\": \"query-jobs\"}\n", &mut NoJobs);
//! assert_eq!(
//!     session.take_output(),
//!     b"{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \
//!       \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n"
//! );
//!
//! session.feed(b"{'execute': 'qmp_capabilities'}", &mut NoJobs);
//! assert_eq!(session.take_output(), b"{\"return\": {}}\r\n");
//!
//! // Arguments are checked against the schema before the handler sees them.
//! session.feed(br#"{"execute": "block-stream", "arguments": {"device": "d", "speed": "1"}, "id": 7}"#, &mut NoJobs);
//! assert_eq!(
//!     session.take_output(),
//!     b"{\"id\": 7, \"error\": {\"class\": \"GenericError\", \"desc\": \
//!       \"Invalid parameter type for 'speed', expected: integer\"}}\r\n"
//! );
//!
//! session.feed(b"{\"execute\": \"query-jobs\"}", &mut NoJobs);
//! assert_eq!(session.take_output(), b"{\"return\": []}\r\n");
//! ```
//!
//! # Events
//!
//! The caller supplies the time; nothing in this crate reads a clock.
//! Events caused by a command are emitted through the [`EventSink`] passed
//! to [`CommandHandler::dispatch`] (they precede the response, as in QEMU);
//! events from elsewhere (a job finishing later) through
//! [`Session::send_event`].
//!
//! ```
//! use strata_qmp::{Event, Session, SessionConfig, Timestamp};
//! # use strata_qmp::{Command, CommandHandler, EventSink, QmpError};
//! # struct Nothing;
//! # impl CommandHandler for Nothing {
//! #     fn dispatch(&mut self, _: Command, _: &mut EventSink) -> Result<serde_json::Value, QmpError> {
//! #         unreachable!()
//! #     }
//! # }
//! let mut session = Session::new(SessionConfig::default());
//! session.feed(b"{\"execute\": \"qmp_capabilities\"}", &mut Nothing);
//! session.take_output();
//! let event = Event {
//!     name: "JOB_STATUS_CHANGE".into(),
//!     data: Some(serde_json::json!({"id": "j", "status": "created"})),
//! };
//! session.send_event(&event, Timestamp { seconds: 1795562351, microseconds: 849438 });
//! assert_eq!(
//!     String::from_utf8(session.take_output()).unwrap(),
//!     "{\"timestamp\": {\"seconds\": 1795562351, \"microseconds\": 849438}, \
//!      \"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"created\", \"id\": \"j\"}}\r\n"
//! );
//! ```
//!
//! # Command-line options
//!
//! ```
//! use strata_qmp::{parse_cli_option, CliOption, CliValue, DriverOptions};
//!
//! let CliValue::Blockdev(opts) =
//!     parse_cli_option(CliOption::Blockdev, "null-co,node-name=n0,size=0x100000").unwrap()
//! else { unreachable!() };
//! assert_eq!(opts.node_name.as_deref(), Some("n0"));
//! assert!(matches!(opts.kind, DriverOptions::Null(ref n) if n.size == Some(1 << 20)));
//!
//! assert_eq!(
//!     parse_cli_option(CliOption::Blockdev, "null-co,node-name=n0,size=1M").unwrap_err(),
//!     "Parameter 'size' expects integer"
//! );
//! ```

#![deny(missing_docs)]

mod cli;
mod commands;
mod error;
mod ghash;
mod json;
mod keyval;
mod schema;
mod session;
mod utf8;
mod value;
mod visit;
mod writer;

/// The JSON library of this crate's API (`Value` in returns and events).
pub use serde_json;

pub use cli::{cli_error_line, parse_cli_option, CliOption, CliValue};
pub use commands::{
    BlkdebugInjectError, BlkdebugOptions, BlkdebugSetState, BlockCommitArgs, BlockExportOptions,
    BlockStreamArgs, BlockdevOptions, BlockdevRef, BlockdevRefOrNull, CacheOptions, Command,
    CopyOnReadOptions, DetectZeroes, DeviceAddArgs, Discard, DriverOptions, FileOptions,
    NbdServerStartArgs, NullOptions, ObjectOptions, OnError, Qcow2Options, QuorumOptions,
    RawOptions, ThrottleOptions,
};
pub use error::{ErrorClass, QmpError};
pub use json::{parse_json_str, JsonMessage, JsonStreamer};
pub use keyval::{keyval_parse, Keyval};
pub use session::{
    format_event, validate_command, CommandHandler, Emulator, Event, EventSink, Session,
    SessionConfig, Timestamp, VersionInfo,
};
pub use value::{qdict_bucket, QDict, QObject};
pub use writer::to_qemu_json;
