//! Starting the stand-in: strata-qsd's daemon (its main loop, chardevs and
//! monitor) set up from a qemu-system command line, in qemu-system's order:
//! chardevs, objects, monitors, `-blockdev`s, `-drive`s, then the devices
//! (the ones `-drive if=virtio` implies after the `-device`s).

use std::sync::Arc;

use strata_monitor::ShutdownEvent;
use strata_qmp::{DeviceAddArgs, Emulator};
use strata_qsd::args::Setup;
use strata_qsd::daemon::Daemon;

use crate::args::Plan;
use crate::drive::{parse_device, parse_drive, Drive, Interface};
use crate::qemu_io::human_monitor_command;

/// Sets everything up; the error is the line to print (exit 1).
pub fn start(argv0: &str, plan: &Plan) -> Result<Daemon, String> {
    let program = strata_qsd::args::program_name(argv0).to_string();
    let mut daemon = Daemon::new(argv0, None, Emulator::System).map_err(|e| e.0)?;
    daemon
        .monitor_mut()
        .set_hmp_handler(Arc::new(human_monitor_command));
    daemon
        .monitor_mut()
        .set_shutdown_event(ShutdownEvent::Announced);
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
        .chain(
            plan.objects
                .iter()
                .map(|a| ("object", Setup::Object(a.clone()))),
        )
        .chain(
            plan.monitors
                .iter()
                .map(|a| ("mon", Setup::Monitor(a.clone()))),
        )
        .chain(
            plan.blockdevs
                .iter()
                .map(|a| ("blockdev", Setup::Blockdev(a.clone()))),
        );
    for (option, step) in steps {
        daemon
            .setup(&step)
            .map_err(|text| (option, setup_arg(&step), text))?;
    }
    if let Some(qtest) = &plan.qtest {
        if !plan
            .chardevs
            .iter()
            .any(|c| chardev_id(c) == Some(qtest.as_str()))
        {
            return Err((
                "qtest",
                format!("chardev:{qtest}"),
                format!("chardev \"{qtest}\" not found"),
            ));
        }
    }
    let mut implied = Vec::new();
    let mut units: Vec<Interface> = Vec::new();
    for arg in &plan.drives {
        let fail = |text: String| ("drive", arg.clone(), text);
        let drive = parse_drive(arg).map_err(fail)?;
        let unit = units.iter().filter(|&&i| i == drive.interface).count();
        units.push(drive.interface);
        let id = drive
            .id
            .clone()
            .unwrap_or_else(|| Drive::default_id(drive.interface, unit));
        daemon
            .monitor_mut()
            .layer_mut()
            .drive_add(&id, drive.file.as_deref(), drive.options.clone())
            .map_err(|e| fail(e.to_string()))?;
        if drive.interface == Interface::Virtio {
            implied.push((
                arg.clone(),
                DeviceAddArgs {
                    driver: "virtio-blk-pci".to_string(),
                    id: None,
                    drive: Some(id),
                    share_rw: false,
                },
            ));
        }
    }
    let explicit = plan
        .devices
        .iter()
        .map(|arg| {
            parse_device(arg)
                .map(|device| (arg.clone(), device))
                .map_err(|text| ("device", arg.clone(), text))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (arg, device) in explicit.into_iter().chain(implied) {
        daemon
            .monitor_mut()
            .device_add(&device)
            .map_err(|e| ("device", arg, e.desc))?;
    }
    Ok(())
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
