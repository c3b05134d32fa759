//! What the daemon's command line and QMP say about the server side: where
//! the NBD server listens and how a monitor talks.

use serde_json::Value;
use strata_qmp::QmpError;

/// Where the NBD server listens (`SocketAddress`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NbdAddress {
    /// A unix domain socket at `path`.
    Unix {
        /// The socket's path.
        path: String,
    },
    /// A TCP socket.
    Inet {
        /// Host name or address.
        host: String,
        /// Port (a number or a service name).
        port: String,
    },
}

impl NbdAddress {
    /// From a validated flat `SocketAddress` (`--nbd-server addr.type=unix,
    /// addr.path=P`) or legacy `SocketAddressLegacy` (`nbd-server-start`:
    /// `{"type": "unix", "data": {"path": P}}`).
    pub fn from_json(addr: &Value) -> Result<NbdAddress, QmpError> {
        let data = addr.get("data").unwrap_or(addr);
        let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_string);
        match addr.get("type").and_then(Value::as_str) {
            Some("unix") => Ok(NbdAddress::Unix {
                path: text("path").unwrap_or_default(),
            }),
            Some("inet") => Ok(NbdAddress::Inet {
                host: text("host").unwrap_or_default(),
                port: text("port").unwrap_or_default(),
            }),
            other => Err(QmpError::generic(format!(
                "strata-qsd serves NBD on unix and inet sockets only, not {}",
                other.unwrap_or("?")
            ))),
        }
    }

    /// The address of a `--nbd-server` option (validated `NbdServerOptions`).
    pub fn from_nbd_server_option(options: &Value) -> Result<NbdAddress, QmpError> {
        NbdAddress::from_json(options.get("addr").unwrap_or(&Value::Null))
    }
}

/// A `--monitor` option (`MonitorOptions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorOption {
    /// The chardev id.
    pub chardev: String,
    /// `pretty`.
    pub pretty: bool,
    /// `mode=control` (the default); `readline` otherwise.
    pub control: bool,
}

impl MonitorOption {
    /// From the validated value of [`crate::CliValue::Monitor`].
    pub fn from_json(options: &Value) -> MonitorOption {
        MonitorOption {
            chardev: options
                .get("chardev")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            pretty: options
                .get("pretty")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            control: options.get("mode").and_then(Value::as_str) != Some("readline"),
        }
    }
}
