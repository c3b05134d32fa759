//! qemu-storage-daemon's QAPI command-line options: `--blockdev`,
//! `--object`, `--export`, `--nbd-server`, `--monitor`.
//!
//! Each takes either JSON (`--blockdev '{"driver": ...}'`, when the argument
//! starts with `{`) or keyval syntax with an implied first key
//! (`--blockdev qcow2,file=f` means `driver=qcow2,file=f`), and is checked
//! against the same QAPI type as the matching QMP command.

use crate::commands::{BlockExportOptions, BlockdevOptions, Command, ObjectOptions};
use crate::json::parse_json_str;
use crate::keyval::keyval_parse;
use crate::value::QObject;
use crate::visit::{visit_root, Mode};

/// A qemu-storage-daemon option whose argument is a QAPI type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CliOption {
    /// `--blockdev` (`BlockdevOptions`, implied key `driver`).
    Blockdev,
    /// `--object` (`ObjectOptions`, implied key `qom-type`).
    Object,
    /// `--export` (`BlockExportOptions`, implied key `type`).
    Export,
    /// `--nbd-server` (`NbdServerOptions`, no implied key).
    NbdServer,
    /// `--monitor` (`MonitorOptions`, implied key `chardev`).
    Monitor,
}

impl CliOption {
    /// The option as typed on the command line.
    pub fn flag(self) -> &'static str {
        match self {
            CliOption::Blockdev => "--blockdev",
            CliOption::Object => "--object",
            CliOption::Export => "--export",
            CliOption::NbdServer => "--nbd-server",
            CliOption::Monitor => "--monitor",
        }
    }

    fn implied_key(self) -> Option<&'static str> {
        match self {
            CliOption::Blockdev => Some("driver"),
            CliOption::Object => Some("qom-type"),
            CliOption::Export => Some("type"),
            CliOption::NbdServer => None,
            CliOption::Monitor => Some("chardev"),
        }
    }

    fn qapi_type(self) -> &'static str {
        match self {
            CliOption::Blockdev => "BlockdevOptions",
            CliOption::Object => "ObjectOptions",
            CliOption::Export => "BlockExportOptions",
            CliOption::NbdServer => "NbdServerOptions",
            CliOption::Monitor => "MonitorOptions",
        }
    }
}

/// A parsed and validated option argument.
#[derive(Clone, Debug, PartialEq)]
pub enum CliValue {
    /// `--blockdev`.
    Blockdev(BlockdevOptions),
    /// `--object`.
    Object(ObjectOptions),
    /// `--export`.
    Export(BlockExportOptions),
    /// `--nbd-server` (`NbdServerOptions`, validated JSON).
    NbdServer(serde_json::Value),
    /// `--monitor` (`MonitorOptions`, validated JSON).
    Monitor(serde_json::Value),
    /// `--object help` (or `?`): qsd lists the object types and exits 0.
    Help,
}

/// Parses and validates the argument of `option`.  The error is QEMU's text;
/// qsd prints it as `qemu-storage-daemon: --blockdev ARG: TEXT` (see
/// [`cli_error_line`]) and exits 1.
pub fn parse_cli_option(option: CliOption, arg: &str) -> Result<CliValue, String> {
    let (value, mode) = if arg.starts_with('{') {
        let value =
            parse_json_str(arg)?.ok_or_else(|| "JSON parse error, premature EOI".to_string())?;
        (value, Mode::Json)
    } else {
        let parsed = keyval_parse(arg, option.implied_key())?;
        if parsed.help {
            if option == CliOption::Object {
                return Ok(CliValue::Help);
            }
            return Err("Help is not available for this option".to_string());
        }
        (QObject::Dict(parsed.dict), Mode::Keyval)
    };
    let checked = visit_root(Some(option.qapi_type()), &value, mode)?;
    Ok(match option {
        CliOption::Blockdev => CliValue::Blockdev(BlockdevOptions::from_json(checked.to_json())?),
        CliOption::Object => {
            match Command::from_validated("object-add", &checked).map_err(|e| e.desc)? {
                Some(Command::ObjectAdd(o)) => CliValue::Object(o),
                other => unreachable!("object-add gives ObjectAdd, not {other:?}"),
            }
        }
        CliOption::Export => {
            CliValue::Export(serde_json::from_value(checked.to_json()).map_err(|e| e.to_string())?)
        }
        CliOption::NbdServer => CliValue::NbdServer(checked.to_json()),
        CliOption::Monitor => CliValue::Monitor(checked.to_json()),
    })
}

/// The line qsd prints on stderr for a bad option argument.
pub fn cli_error_line(option: CliOption, arg: &str, error: &str) -> String {
    format!("qemu-storage-daemon: {} {}: {}", option.flag(), arg, error)
}
