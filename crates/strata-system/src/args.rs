//! qemu-system's command line: options with one dash or two, each taking
//! its argument from the next word, and QEMU's texts for refusals. Parsing
//! only sorts the options into a [`Plan`]; the help probes the iotests
//! harness makes at start-up are answered without starting anything.

use std::fmt;

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// A help probe: print the text and exit 0.
    Probe(Probe),
    /// Run without a guest.
    Run(Plan),
}

/// The start-up probes (`-machine help`, `-drive format=help`,
/// `-device help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// `-machine help`.
    Machines,
    /// `-drive format=help`.
    Formats,
    /// `-device help`.
    Devices,
}

/// The options that set something up, sorted by kind; each list keeps the
/// command line's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `-chardev`.
    pub chardevs: Vec<String>,
    /// `-mon` (and `-qmp`, as `chardev=...,mode=control`).
    pub monitors: Vec<String>,
    /// `-object`.
    pub objects: Vec<String>,
    /// `-blockdev`.
    pub blockdevs: Vec<String>,
    /// `-drive`.
    pub drives: Vec<String>,
    /// `-device`.
    pub devices: Vec<String>,
    /// `-qtest chardev:ID`: the chardev the qtest protocol runs on.
    pub qtest: Option<String>,
    /// `-S`: the guest does not start (it has nothing to run anyway).
    pub paused: bool,
}

/// A refused command line: the line to print on stderr (exit 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The options accepted and what they do; `true`: takes an argument.
const OPTIONS: &[(&str, bool)] = &[
    ("accel", true),
    ("add-fd", true),
    ("blockdev", true),
    ("chardev", true),
    ("device", true),
    ("display", true),
    ("drive", true),
    ("incoming", true),
    ("M", true),
    ("machine", true),
    ("mon", true),
    ("monitor", true),
    ("name", true),
    ("nodefaults", false),
    ("nographic", false),
    ("object", true),
    ("qmp", true),
    ("qmp-pretty", true),
    ("qtest", true),
    ("S", false),
    ("serial", true),
    ("vga", true),
];

/// Parses `args` (without the program name); `program` prefixes errors.
pub fn parse(program: &str, args: &[String]) -> Result<Invocation, ArgError> {
    let mut plan = Plan::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(name) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|n| !n.is_empty())
        else {
            return Err(ArgError(format!(
                "{program}: {arg}: strata-system runs no guest: disk image arguments are not supported"
            )));
        };
        let takes_arg = OPTIONS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, t)| t)
            .ok_or_else(|| ArgError(format!("{program}: {arg}: invalid option")))?;
        let value = if takes_arg {
            let v = args
                .get(i)
                .cloned()
                .ok_or_else(|| ArgError(format!("{program}: {arg}: requires an argument")))?;
            i += 1;
            v
        } else {
            String::new()
        };
        if let Some(probe) = probe(name, &value) {
            return Ok(Invocation::Probe(probe));
        }
        apply(program, &mut plan, name, value)?;
    }
    Ok(Invocation::Run(plan))
}

/// `monitor_parse`'s chardev for `-qmp DEV` (`qemu_chr_new_noreplay` with
/// the legacy `stdio` / `unix:PATH[,opts]` syntax), named
/// `compat_monitorN`.
fn compat_chardev(value: &str, index: usize) -> Option<String> {
    let id = format!("compat_monitor{index}");
    if value == "stdio" {
        return Some(format!("stdio,id={id}"));
    }
    let unix = value.strip_prefix("unix:")?;
    let (path, options) = unix.split_once(',').unwrap_or((unix, ""));
    let mut chardev = format!("socket,path={path},id={id}");
    for option in options.split(',').filter(|o| !o.is_empty()) {
        // The legacy syntax allows bare `server` and `nowait`.
        let option = match option {
            "server" => "server=on",
            "nowait" => "wait=off",
            other => other,
        };
        chardev.push(',');
        chardev.push_str(option);
    }
    Some(chardev)
}

fn probe(name: &str, value: &str) -> Option<Probe> {
    match (name, value) {
        ("machine" | "M", "help" | "?") => Some(Probe::Machines),
        ("device", "help" | "?") => Some(Probe::Devices),
        ("drive", v) if v.split(',').any(|o| o == "format=help") => Some(Probe::Formats),
        _ => None,
    }
}

fn apply(program: &str, plan: &mut Plan, name: &str, value: String) -> Result<(), ArgError> {
    match name {
        "chardev" => plan.chardevs.push(value),
        "mon" => plan.monitors.push(value),
        "qmp" | "qmp-pretty" => {
            let chardev = compat_chardev(&value, plan.monitors.len()).ok_or_else(|| {
                ArgError(format!(
                    "{program}: -{name} {value}: strata-system serves stdio and unix: monitors"
                ))
            })?;
            let id = format!("compat_monitor{}", plan.monitors.len());
            let pretty = if name == "qmp-pretty" {
                ",pretty=on"
            } else {
                ""
            };
            plan.chardevs.push(chardev);
            plan.monitors
                .push(format!("chardev={id},mode=control{pretty}"));
        }
        "object" => plan.objects.push(value),
        "blockdev" => plan.blockdevs.push(value),
        "drive" => plan.drives.push(value),
        "device" => plan.devices.push(value),
        "qtest" => {
            let chardev = value.strip_prefix("chardev:").ok_or_else(|| {
                ArgError(format!(
                    "{program}: -qtest {value}: strata-system serves qtest on a chardev only"
                ))
            })?;
            plan.qtest = Some(chardev.to_string());
        }
        "S" => plan.paused = true,
        "monitor" | "serial" if value != "null" && value != "none" => {
            return Err(ArgError(format!(
                "{program}: -{name} {value}: not supported by strata-system"
            )))
        }
        // Nothing to show, no guest to configure.
        _ => {}
    }
    Ok(())
}

/// `-machine help`.
pub fn machines_help() -> &'static str {
    "Supported machines are:
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.0)
pc-i440fx-10.0       Standard PC (i440FX + PIIX, 1996) (default)
q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-10.0)
pc-q35-10.0          Standard PC (Q35 + ICH9, 2009)
none                 empty machine
"
}

/// `-drive format=help`: the drivers Strata models, both lists.
pub fn formats_help() -> String {
    let formats = "blkdebug copy-on-read file null-aio null-co qcow2 quorum raw throttle";
    format!("Supported formats: {formats}\nSupported formats (read-only): {formats}\n")
}

/// `-device help`: the storage devices the stand-in attaches drives to.
pub fn devices_help() -> &'static str {
    "Storage devices:
name \"scsi-hd\", bus SCSI, desc \"virtual SCSI disk\"
name \"virtio-blk-pci\", bus PCI, alias \"virtio-blk\"
name \"virtio-scsi-pci\", bus PCI, alias \"virtio-scsi\"
"
}
