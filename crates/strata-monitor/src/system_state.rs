//! The state a qemu-system stand-in keeps in the monitor (the devices and
//! the HMP handler); what the commands do with it is in `devices.rs`.

use std::sync::Arc;

use strata_block::{BlockLayer, Files};
use strata_graph::RootId;
use strata_qmp::QmpError;

/// Runs one HMP command line on the block layer; the text is what the
/// monitor prints (`human-monitor-command`'s return value). (Shared, so
/// that a monitor stays cheap to clone for the simulator.)
pub type HmpHandler<F> =
    Arc<dyn Fn(&mut BlockLayer<F>, &str) -> Result<String, QmpError> + Send + Sync>;

/// One guest device.
#[derive(Clone, Debug)]
pub(crate) struct Device {
    pub(crate) id: Option<String>,
    /// The QOM path `query-block` shows (`blk_get_attached_dev_id`).
    pub(crate) qdev: String,
    /// Its BlockBackend, for a disk: one the device made for a node name,
    /// or a `-drive`'s; either goes with the device (`blockdev_auto_del`).
    pub(crate) backend: Option<RootId>,
}

/// Whether `quit` raises `SHUTDOWN` (a guest's machine shuts down; a
/// storage daemon has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShutdownEvent {
    /// No event (qemu-storage-daemon).
    #[default]
    Silent,
    /// `SHUTDOWN` with `guest: false` and the host's reason (qemu-system).
    Announced,
}

/// The devices and the HMP handler.
pub(crate) struct SystemState<F: Files> {
    pub(crate) devices: Vec<Device>,
    /// Devices created without an id so far (`/machine/peripheral-anon/device[N]`).
    pub(crate) anonymous: usize,
    pub(crate) hmp: Option<HmpHandler<F>>,
    pub(crate) shutdown_event: ShutdownEvent,
}

impl<F: Files> Clone for SystemState<F> {
    fn clone(&self) -> Self {
        SystemState {
            devices: self.devices.clone(),
            anonymous: self.anonymous,
            hmp: self.hmp.clone(),
            shutdown_event: self.shutdown_event,
        }
    }
}

impl<F: Files> Default for SystemState<F> {
    fn default() -> Self {
        SystemState {
            devices: Vec::new(),
            anonymous: 0,
            hmp: None,
            shutdown_event: ShutdownEvent::Silent,
        }
    }
}
