//! The NBD server of `strata-qsd`: what `--nbd-server`, `nbd-server-start`
//! and `block-export-add type=nbd` serve.
//!
//! Three layers, each usable without the next:
//!
//! * [`NbdBackend`] / [`ExportLookup`]: what an export is (the daemon
//!   implements them over its block layer; [`MemoryBackend`] is an
//!   in-memory disk).
//! * [`Session`]: the protocol, sans I/O — bytes in, bytes out.
//! * [`server`]: sockets — a blocking [`serve_connection`] and a
//!   non-blocking [`Connection`] for an event loop that owns the block
//!   layer.
//!
//! ```
//! use std::collections::BTreeMap;
//! use strata_qsd::nbd::{MemoryBackend, Session, SessionConfig};
//!
//! let mut exports = BTreeMap::new();
//! exports.insert("disk".to_string(), (MemoryBackend::new(1 << 20), None));
//!
//! let mut session = Session::new(SessionConfig::default());
//! session.consume_output(18); // the greeting
//! let mut go = vec![0, 0, 0, 3]; // client flags: FIXED_NEWSTYLE | NO_ZEROES
//! go.extend_from_slice(b"IHAVEOPT");
//! go.extend_from_slice(&7u32.to_be_bytes()); // NBD_OPT_GO
//! go.extend_from_slice(&10u32.to_be_bytes()); // data length
//! go.extend_from_slice(&4u32.to_be_bytes());
//! go.extend_from_slice(b"disk");
//! go.extend_from_slice(&0u16.to_be_bytes()); // no info requests
//! session.receive(&go, &mut exports);
//! assert_eq!(session.export_name(), Some("disk"));
//! ```

mod backend;
pub mod server;
mod session;
mod wire;

pub use backend::{
    ExportLookup, MemoryBackend, NbdBackend, ZeroFlags, NBD_STATE_HOLE, NBD_STATE_ZERO,
};
pub use server::{serve_connection, Connection, NbdAddress, NbdListener, NbdStream, Pump};
pub use session::{Closed, ProtocolError, ProtocolErrorKind, Session, SessionConfig};
pub use wire::{nbd_errno, MAX_BUFFER_SIZE};
