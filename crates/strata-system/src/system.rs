//! Starting the stand-in: strata-qsd's daemon (its main loop, chardevs and
//! monitor) set up from a qemu-system command line, in qemu-system's order:
//! chardevs, objects, monitors, `-blockdev`s, `-drive`s, then the devices
//! (the ones `-drive if=virtio` implies after the `-device`s).

use std::sync::Arc;

use strata_block::DeviceAccess;
use strata_qmp::Emulator;
use strata_qsd::args::Setup;
use strata_qsd::daemon::Daemon;

use crate::args::Plan;
use crate::drive::{parse_device, parse_drive, Device, Interface};
use crate::qemu_io::human_monitor_command;

/// Sets everything up; the error is the line to print (exit 1).
pub fn start(argv0: &str, plan: &Plan) -> Result<Daemon, String> {
    let program = strata_qsd::args::program_name(argv0).to_string();
    let mut daemon = Daemon::new(argv0, None, Emulator::System).map_err(|e| e.0)?;
    daemon
        .monitor_mut()
        .set_hmp_handler(Arc::new(human_monitor_command));
    match set_up(&mut daemon, plan) {
        Ok(()) => Ok(daemon),
        Err((option, arg, text)) => {
            daemon.abort_setup();
            Err(format!("{program}: -{option} {arg}: {text}"))
        }
    }
}

/// A failed option: its name, its argument and QEMU's text.
type OptionError = (&'static str, String, String);

fn set_up(daemon: &mut Daemon, plan: &Plan) -> Result<(), OptionError> {
    let steps = plan
        .chardevs
        .iter()
        .map(|a| ("chardev", Setup::Chardev(a.clone())))
        .chain(plan.objects.iter().map(|a| ("object", Setup::Object(a.clone()))))
        .chain(plan.monitors.iter().map(|a| ("mon", Setup::Monitor(a.clone()))))
        .chain(plan.blockdevs.iter().map(|a| ("blockdev", Setup::Blockdev(a.clone()))));
    for (option, step) in steps {
        daemon
            .setup(&step)
            .map_err(|text| (option, setup_arg(&step), text))?;
    }
    if let Some(qtest) = &plan.qtest {
        if !plan.chardevs.iter().any(|c| chardev_id(c) == Some(qtest.as_str())) {
            return Err((
                "qtest",
                format!("chardev:{qtest}"),
                format!("chardev \"{qtest}\" not found"),
            ));
        }
    }
    let mut implied = Vec::new();
    for (index, arg) in plan.drives.iter().enumerate() {
        let fail = |text: String| ("drive", arg.clone(), text);
        let drive = parse_drive(arg, index).map_err(fail)?;
        daemon
            .monitor_mut()
            .layer_mut()
            .drive_add(&drive.id, drive.file.as_deref(), drive.options.clone())
            .map_err(|e| fail(e.to_string()))?;
        if drive.interface == Interface::Virtio {
            implied.push((
                Device {
                    driver: "virtio-blk-pci".to_string(),
                    id: None,
                    drive: Some(drive.id.clone()),
                    share_rw: false,
                },
                drive.read_only,
            ));
        }
    }
    let mut anonymous = 0;
    let explicit = plan
        .devices
        .iter()
        .map(|arg| parse_device(arg).map(|d| (d, false)).map_err(|t| ("device", arg.clone(), t)));
    let all: Vec<(Device, bool)> = explicit
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .chain(implied)
        .collect();
    for (device, read_only) in all {
        let qdev = device.qdev(anonymous);
        if device.id.is_none() {
            anonymous += 1;
        }
        let Some(drive) = device.drive.as_deref().filter(|_| device.is_disk()) else {
            continue;
        };
        let access = if read_only || drive_is_read_only(daemon, drive) {
            DeviceAccess::ReadOnly
        } else {
            DeviceAccess::ReadWrite
        };
        daemon
            .monitor_mut()
            .attach_device(drive, &qdev, access, device.share_rw)
            .map_err(|e| {
                let text = if daemon.monitor_mut().layer().backend_by_name(drive).is_none() {
                    format!("Property '{}.drive' can't find value '{drive}'", device.driver)
                } else {
                    e.desc
                };
                ("device", device_arg(&device), text)
            })?;
    }
    Ok(())
}

/// Whether the BlockBackend's root node is read-only (the device then
/// asks for no write permission, as `blkconf_apply_backend_options` with
/// a read-only BlockBackend).
fn drive_is_read_only(daemon: &mut Daemon, drive: &str) -> bool {
    let layer = daemon.monitor_mut().layer();
    layer
        .backend_node(drive)
        .and_then(|node| layer.core().graph().graph().node(node).ok().map(|n| n.read_only))
        .unwrap_or(false)
}

fn device_arg(device: &Device) -> String {
    let mut arg = device.driver.clone();
    if let Some(drive) = &device.drive {
        arg.push_str(&format!(",drive={drive}"));
    }
    arg
}

fn chardev_id(arg: &str) -> Option<&str> {
    arg.split(',').find_map(|part| part.strip_prefix("id="))
}

fn setup_arg(step: &Setup) -> String {
    match step {
        Setup::Chardev(a)
        | Setup::Monitor(a)
        | Setup::Blockdev(a)
        | Setup::Object(a)
        | Setup::NbdServer(a)
        | Setup::Export(a) => a.clone(),
    }
}

