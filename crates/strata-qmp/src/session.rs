//! The QMP session: a sans-I/O state machine for one monitor connection.
//!
//! Feed it the bytes a client sent ([`Session::feed`]); take what to send
//! back ([`Session::take_output`]).  It frames and parses the JSON stream the
//! way QEMU does, enforces capabilities negotiation, checks every request
//! against the QAPI schema, answers `qmp_capabilities`, `query-version` and
//! `query-commands` itself and hands everything else, typed, to a
//! [`CommandHandler`].  Events are queued with [`Session::send_event`] and
//! the caller's clock: the crate reads no time of its own.

use serde_json::Value;

use crate::commands::Command;
use crate::error::{ErrorClass, QmpError};
use crate::json::{JsonMessage, JsonStreamer};
use crate::schema::Schema;
use crate::value::{QDict, QObject};
use crate::visit::{visit_root, Mode};
use crate::writer::to_qemu_json;

/// What executes validated commands: the block layer.
pub trait CommandHandler {
    /// Runs `command` and returns its QAPI return value (`{}` for commands
    /// without one; `Value::Null` is taken as `{}` too), or QEMU's error.
    ///
    /// Events the command causes (a job's `JOB_STATUS_CHANGE`s, ...) go to
    /// `events`: QEMU sends them *before* the command's response, and so does
    /// the session.
    ///
    /// Returned objects may be built in any member order: the session puts
    /// known return types into QAPI schema order first, because QEMU's
    /// output order depends on it (see [`QDict::iter_qemu`]).
    fn dispatch(&mut self, command: Command, events: &mut EventSink) -> Result<Value, QmpError>;
}

/// Events raised while a command runs; sent ahead of its response.
#[derive(Debug, Default)]
pub struct EventSink {
    queued: Vec<(Event, Timestamp)>,
}

impl EventSink {
    /// Queues `event`, stamped with the caller's clock.
    pub fn emit(&mut self, event: Event, timestamp: Timestamp) {
        self.queued.push((event, timestamp));
    }
}

/// `VersionInfo`, as `query-version` and the greeting report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// Major version.
    pub major: i64,
    /// Minor version.
    pub minor: i64,
    /// Micro version.
    pub micro: i64,
    /// The distribution's package string.
    pub package: String,
}

impl VersionInfo {
    /// What the qemu-storage-daemon this crate mimics reports.
    pub fn qsd_10_0_2() -> VersionInfo {
        VersionInfo {
            major: 10,
            minor: 0,
            micro: 2,
            package: "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1".to_string(),
        }
    }

    fn to_qobject(&self) -> QObject {
        let mut triple = QDict::new();
        triple.insert("major", QObject::Int(self.major));
        triple.insert("minor", QObject::Int(self.minor));
        triple.insert("micro", QObject::Int(self.micro));
        let mut info = QDict::new();
        info.insert("qemu", QObject::Dict(triple));
        info.insert("package", QObject::Str(self.package.clone()));
        QObject::Dict(info)
    }
}

/// How the monitor is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// The version reported.
    pub version: VersionInfo,
    /// Offer the `oob` capability.  QEMU offers it when the monitor runs in
    /// an I/O thread, which for qemu-storage-daemon 10.0.2 is every monitor
    /// (socket and stdio alike, both observed).
    pub offer_oob: bool,
    /// `--monitor ...,pretty=on`: pretty-printed responses.
    pub pretty: bool,
    /// Which QEMU program's commands the session serves.
    pub emulator: Emulator,
}

/// The QEMU program a session stands in for: qemu-system has commands
/// (`human-monitor-command`) that qemu-storage-daemon has not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Emulator {
    /// qemu-storage-daemon.
    #[default]
    StorageDaemon,
    /// qemu-system-*.
    System,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            version: VersionInfo::qsd_10_0_2(),
            offer_oob: true,
            pretty: false,
            emulator: Emulator::StorageDaemon,
        }
    }
}

/// An event to deliver.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event name, e.g. `JOB_STATUS_CHANGE`.
    pub name: String,
    /// Its data (`None` for events without data).
    pub data: Option<Value>,
}

/// When an event happened, as QEMU stamps it (wall-clock seconds and
/// microseconds since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds.
    pub seconds: i64,
    /// Microseconds within the second.
    pub microseconds: i64,
}

/// The commands qemu-storage-daemon 10.0.2 lists in `query-commands`, in its
/// order, restricted to those Strata implements.
const QUERY_COMMANDS_ORDER: &[&str] = &[
    "object-del",
    "object-add",
    "quit",
    "query-commands",
    "query-version",
    "qmp_capabilities",
    "query-block-exports",
    "block-export-del",
    "block-export-add",
    "nbd-server-stop",
    "nbd-server-start",
    "blockdev-del",
    "blockdev-reopen",
    "blockdev-add",
    "block-job-finalize",
    "block-job-dismiss",
    "block-job-complete",
    "block-job-resume",
    "block-job-pause",
    "block-job-cancel",
    "block-job-set-speed",
    "block-stream",
    "x-debug-query-block-graph",
    "query-named-block-nodes",
    "block-commit",
    "blockdev-snapshot",
    "query-block-jobs",
    "query-block",
    "query-jobs",
    "job-finalize",
    "job-dismiss",
    "job-complete",
    "job-cancel",
    "job-resume",
    "job-pause",
];

/// One QMP monitor connection.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    streamer: JsonStreamer,
    negotiated: bool,
    oob_enabled: bool,
    quit: bool,
    output: Vec<u8>,
}

impl Session {
    /// A new connection; the greeting is already queued for output.
    pub fn new(config: SessionConfig) -> Session {
        let mut session = Session {
            config,
            streamer: JsonStreamer::new(),
            negotiated: false,
            oob_enabled: false,
            quit: false,
            output: Vec::new(),
        };
        let mut caps = Vec::new();
        if session.config.offer_oob {
            caps.push(QObject::Str("oob".to_string()));
        }
        let mut qmp = QDict::new();
        qmp.insert("version", session.config.version.to_qobject());
        qmp.insert("capabilities", QObject::List(caps));
        let mut greeting = QDict::new();
        greeting.insert("QMP", QObject::Dict(qmp));
        session.send(&QObject::Dict(greeting));
        session
    }

    /// True once `qmp_capabilities` succeeded.
    pub fn is_negotiated(&self) -> bool {
        self.negotiated
    }

    /// True once the client enabled out-of-band execution.
    pub fn oob_enabled(&self) -> bool {
        self.oob_enabled
    }

    /// True once `quit` succeeded: send the output, then close.
    pub fn quit_requested(&self) -> bool {
        self.quit
    }

    /// Everything queued for the client since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Bytes from the client: every complete request is answered (through
    /// `handler` where needed) before this returns.
    pub fn feed(&mut self, bytes: &[u8], handler: &mut dyn CommandHandler) {
        let mut messages = Vec::new();
        self.streamer.feed(bytes, &mut messages);
        for message in messages {
            self.handle(message, handler);
        }
    }

    /// Queues an event.  Like QEMU, a monitor still negotiating capabilities
    /// gets no events at all (they are dropped, not deferred).
    pub fn send_event(&mut self, event: &Event, timestamp: Timestamp) {
        if !self.negotiated {
            return;
        }
        let mut ts = QDict::new();
        ts.insert("seconds", QObject::Int(timestamp.seconds));
        ts.insert("microseconds", QObject::Int(timestamp.microseconds));
        let mut dict = QDict::new();
        dict.insert("event", QObject::Str(event.name.clone()));
        dict.insert("timestamp", QObject::Dict(ts));
        if let Some(data) = &event.data {
            let mut data = QObject::from_json(data);
            if let Some(ty) = Schema::get()
                .events
                .get(&event.name)
                .and_then(|e| e.data.as_deref())
            {
                crate::visit::reorder(ty, &mut data);
            }
            dict.insert("data", data);
        }
        self.send(&QObject::Dict(dict));
    }

    fn send(&mut self, obj: &QObject) {
        let text = to_qemu_json(obj, self.config.pretty) + "\n";
        // monitor_puts() turns every "\n" into "\r\n".
        self.output
            .extend_from_slice(text.replace('\n', "\r\n").as_bytes());
    }

    fn handle(&mut self, message: JsonMessage, handler: &mut dyn CommandHandler) {
        let (id, result) = match message {
            Err(parse_error) => (None, Err(QmpError::generic(parse_error))),
            Ok(request) => {
                let id = request.as_dict().and_then(|d| d.get("id")).cloned();
                (id, self.dispatch(&request, handler))
            }
        };
        let mut response = QDict::new();
        match result {
            Ok(ret) => response.insert("return", ret),
            Err(mut err) => {
                if !self.negotiated && err.class == ErrorClass::CommandNotFound {
                    err.desc =
                        "Expecting capabilities negotiation with 'qmp_capabilities'".to_string();
                }
                let mut e = QDict::new();
                e.insert("class", QObject::Str(err.class.as_str().to_string()));
                e.insert("desc", QObject::Str(err.desc));
                response.insert("error", QObject::Dict(e));
            }
        }
        if let Some(id) = id {
            response.insert("id", id);
        }
        self.send(&QObject::Dict(response));
    }

    fn dispatch(
        &mut self,
        request: &QObject,
        handler: &mut dyn CommandHandler,
    ) -> Result<QObject, QmpError> {
        let Some(dict) = request.as_dict() else {
            return Err(QmpError::generic("QMP input must be a JSON object"));
        };
        let (name, oob) = check_request(dict, self.oob_enabled)?;
        let exists = if self.negotiated {
            Schema::get().commands.contains_key(&name)
                && (self.config.emulator == Emulator::System
                    || !crate::schema::SYSTEM_ONLY_COMMANDS.contains(&name.as_str()))
        } else {
            name == "qmp_capabilities"
        };
        if !exists {
            return Err(QmpError::new(
                ErrorClass::CommandNotFound,
                format!("The command {name} has not been found"),
            ));
        }
        if oob {
            // None of the commands Strata serves is allow-oob (as in qsd).
            return Err(QmpError::generic(format!(
                "The command {name} does not support OOB"
            )));
        }
        let empty = QObject::Dict(QDict::new());
        let args = dict.get("arguments").unwrap_or(&empty);
        let args = validate_command(&name, args)?;
        match name.as_str() {
            "qmp_capabilities" => self.qmp_capabilities(&args),
            "query-version" => Ok(self.config.version.to_qobject()),
            "query-commands" => Ok(QObject::List(
                QUERY_COMMANDS_ORDER
                    .iter()
                    .map(|c| {
                        let mut info = QDict::new();
                        info.insert("name", QObject::Str(c.to_string()));
                        QObject::Dict(info)
                    })
                    .collect(),
            )),
            _ => {
                let command = Command::from_validated(&name, &args)?.expect("handled above");
                let quit = matches!(command, Command::Quit);
                let mut sink = EventSink::default();
                let result = handler.dispatch(command, &mut sink);
                for (event, timestamp) in sink.queued {
                    self.send_event(&event, timestamp);
                }
                let value = result?;
                self.quit |= quit;
                let mut ret = match value {
                    Value::Null => QObject::Dict(QDict::new()),
                    v => QObject::from_json(&v),
                };
                if let Some(ty) = Schema::get()
                    .commands
                    .get(&name)
                    .and_then(|c| c.ret.as_deref())
                {
                    crate::visit::reorder(ty, &mut ret);
                }
                Ok(ret)
            }
        }
    }

    fn qmp_capabilities(&mut self, args: &QObject) -> Result<QObject, QmpError> {
        if self.negotiated {
            return Err(QmpError::new(
                ErrorClass::CommandNotFound,
                "Capabilities negotiation is already complete, command ignored",
            ));
        }
        let enable: Vec<&str> = match args.as_dict().and_then(|d| d.get("enable")) {
            Some(QObject::List(caps)) => caps.iter().filter_map(QObject::as_str).collect(),
            _ => Vec::new(),
        };
        // qmp_caps_accept(): every occurrence of a capability not offered
        // is listed ("Capability oob, oob not available").
        let unavailable: Vec<&str> = enable
            .iter()
            .copied()
            .filter(|c| *c == "oob" && !self.config.offer_oob)
            .collect();
        if !unavailable.is_empty() {
            return Err(QmpError::generic(format!(
                "Capability {} not available",
                unavailable.join(", ")
            )));
        }
        let wants_oob = enable.contains(&"oob");
        self.negotiated = true;
        self.oob_enabled = wants_oob;
        Ok(QObject::Dict(QDict::new()))
    }
}

/// `qmp_dispatch_check_obj`: the request's own members, in QEMU's order.
/// Returns the command name and whether it came as `exec-oob`.
fn check_request(dict: &QDict, allow_oob: bool) -> Result<(String, bool), QmpError> {
    let mut exec_key: Option<&str> = None;
    for (key, value) in dict.iter_qemu() {
        if key == "execute" || (key == "exec-oob" && allow_oob) {
            if !matches!(value, QObject::Str(_)) {
                return Err(QmpError::generic(format!(
                    "QMP input member '{key}' must be a string"
                )));
            }
            if let Some(first) = exec_key {
                return Err(QmpError::generic(format!(
                    "QMP input member '{key}' clashes with '{first}'"
                )));
            }
            exec_key = Some(key);
        } else if key == "arguments" {
            if !matches!(value, QObject::Dict(_)) {
                return Err(QmpError::generic(
                    "QMP input member 'arguments' must be an object",
                ));
            }
        } else if key != "id" {
            return Err(QmpError::generic(format!(
                "QMP input member '{key}' is unexpected"
            )));
        }
    }
    let key = exec_key.ok_or_else(|| QmpError::generic("QMP input lacks member 'execute'"))?;
    let name = dict
        .get(key)
        .and_then(QObject::as_str)
        .unwrap_or_default()
        .to_string();
    Ok((name, key == "exec-oob"))
}

/// Checks `args` against command `name`'s QAPI argument type, as QEMU's
/// generated marshaller would, and returns them normalised.
///
/// Errors are `GenericError`s with QEMU's text; an unknown command is
/// `CommandNotFound` ("The command foo has not been found").
pub fn validate_command(name: &str, args: &QObject) -> Result<QObject, QmpError> {
    let Some(def) = Schema::get().commands.get(name) else {
        return Err(QmpError::new(
            ErrorClass::CommandNotFound,
            format!("The command {name} has not been found"),
        ));
    };
    visit_root(def.args.as_deref(), args, Mode::Json).map_err(QmpError::generic)
}

/// Formats one event line exactly as QEMU sends it (with `\r\n`).
pub fn format_event(event: &Event, timestamp: Timestamp, pretty: bool) -> Vec<u8> {
    let mut session = Session::new(SessionConfig {
        pretty,
        ..SessionConfig::default()
    });
    session.negotiated = true;
    session.output.clear();
    session.send_event(event, timestamp);
    session.output
}
