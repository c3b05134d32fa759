//! `-drive` and `-device`: QemuOpts strings turned into what the block
//! layer opens (`drive_new`/`blockdev_init`'s legacy options) and into the
//! guest devices that name BlockBackends.

use strata_graph::{OptValue, Options};
use strata_qmp::DeviceAddArgs;
use strata_qsd::chardev::split_qemu_opts;

impl Drive {
    /// `drive_new`'s id for a drive without one: the interface's name and
    /// the drive's unit on it (`unit` drives of that interface came
    /// before).
    pub fn default_id(interface: Interface, unit: usize) -> String {
        match interface {
            Interface::None => format!("none{unit}"),
            Interface::Virtio => format!("virtio{unit}"),
        }
    }
}

/// A `-drive`, ready to open.
#[derive(Clone, Debug, PartialEq)]
pub struct Drive {
    /// The BlockBackend's name (`id`); without one, [`Drive::default_id`].
    pub id: Option<String>,
    /// `file`: a path, `json:{...}` or `blkdebug:...`.
    pub file: Option<String>,
    /// The block driver options (`format` as `driver`, the rest nested at
    /// their dots).
    pub options: Options,
    /// `if`: which device the drive gets implicitly.
    pub interface: Interface,
}

/// `if=`: the interface a drive is meant for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    /// `if=none`: no device until a `-device ...,drive=ID`.
    None,
    /// `if=virtio` (the default): a virtio-blk-pci device of its own.
    Virtio,
}

/// The legacy options `drive_new` and `blockdev_init` consume themselves;
/// Strata models neither cache modes, AIO back ends nor error actions, so
/// they are accepted and have no effect.
const IGNORED_KEYS: &[&str] = &[
    "cache", "aio", "media", "index", "bus", "unit", "serial", "werror", "rerror", "addr",
];

/// Option leaves that are booleans in QEMU's block options (QemuOpts reads
/// them as `on`/`off`).
const BOOL_KEYS: &[&str] = &[
    "read-only",
    "auto-read-only",
    "force-share",
    "direct",
    "no-flush",
    "lazy-refcounts",
    "pass-discard-request",
    "pass-discard-snapshot",
    "pass-discard-other",
    "blkverify",
    "rewrite-corrupted",
];

/// Parses a `-drive` argument. Errors are QEMU's text without the option
/// prefix.
pub fn parse_drive(arg: &str) -> Result<Drive, String> {
    let mut id = None;
    let mut file = None;
    let mut format = None;
    let mut interface = Interface::Virtio;
    let mut read_only = false;
    let mut flat: Vec<(String, String)> = Vec::new();
    for (key, value) in split_qemu_opts(arg) {
        let Some(key) = key else {
            return Err(format!("Invalid parameter '{value}'"));
        };
        match key.as_str() {
            "id" => id = Some(value),
            "file" => file = Some(value),
            "format" => format = Some(value),
            "if" => {
                interface = match value.as_str() {
                    "none" => Interface::None,
                    "virtio" => Interface::Virtio,
                    other => return Err(format!("strata-system: if={other} is not supported")),
                }
            }
            "read-only" | "readonly" => read_only = qemu_bool(&key, &value)?,
            k if IGNORED_KEYS.contains(&k) => {}
            k if k.starts_with("throttling.") || k == "copy-on-read" || k == "snapshot" => {
                return Err(format!(
                    "strata-system: drive option '{k}' is not supported"
                ))
            }
            _ => flat.push((key, value)),
        }
    }
    let mut options = Options::new();
    if let Some(format) = format {
        if flat.iter().any(|(k, _)| k == "driver") {
            return Err("Cannot specify both 'driver' and 'format'".to_string());
        }
        options.put("driver", OptValue::Str(format));
    }
    if read_only {
        options.put("read-only", OptValue::Bool(true));
    }
    for (key, value) in flat {
        let typed = typed_value(&key, value)?;
        options.put(key, typed);
    }
    let options = strata_block::crumple(options);
    Ok(Drive {
        id,
        file,
        options,
        interface,
    })
}

/// Parses a `-device` argument (`driver[,id=...][,drive=...][,share-rw=...]`;
/// bus addresses place a device in a machine that does not exist).
pub fn parse_device(arg: &str) -> Result<DeviceAddArgs, String> {
    let mut parts = split_qemu_opts(arg).into_iter();
    let driver = match parts.next() {
        Some((None, driver)) | Some((Some(_), driver)) if !driver.is_empty() => driver,
        _ => return Err("Parameter 'driver' is missing".to_string()),
    };
    let mut device = DeviceAddArgs {
        driver,
        id: None,
        drive: None,
        share_rw: false,
    };
    for (key, value) in parts {
        match key.as_deref() {
            Some("id") => device.id = Some(value),
            Some("drive") => device.drive = Some(value),
            Some("share-rw") => device.share_rw = qemu_bool("share-rw", &value)?,
            _ => {}
        }
    }
    Ok(device)
}

/// `qapi_bool_parse`.
fn qemu_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(format!("Parameter '{key}' expects 'on' or 'off'")),
    }
}

/// QemuOpts values are strings; the block layer reads booleans as such.
fn typed_value(key: &str, value: String) -> Result<OptValue, String> {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    if BOOL_KEYS.contains(&leaf) {
        return qemu_bool(key, &value).map(OptValue::Bool);
    }
    Ok(OptValue::Str(value))
}
