//! What a qemu-system stand-in adds to the monitor: guest devices on named
//! BlockBackends (`query-block`'s `qdev` and `io-status`) and
//! `human-monitor-command`, whose commands (`qemu-io`) the stand-in
//! serves through a handler on the block layer.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use strata_block::{BlockLayer, DeviceAccess, Files};
use strata_qmp::{ErrorClass, QmpError};

use crate::monitor::{Monitor, NbdListener};
use crate::replies::block_error;

/// Runs one HMP command line on the block layer; the text is what the
/// monitor prints (`human-monitor-command`'s return value).
/// (Shared, so that a monitor stays cheap to clone for the simulator.)
pub type HmpHandler<F> =
    Arc<dyn Fn(&mut BlockLayer<F>, &str) -> Result<String, QmpError> + Send + Sync>;

/// The devices and the HMP handler.
pub(crate) struct SystemState<F: Files> {
    /// BlockBackend name → the device's QOM path (`qdev`).
    devices: BTreeMap<String, String>,
    hmp: Option<HmpHandler<F>>,
}

impl<F: Files> Clone for SystemState<F> {
    fn clone(&self) -> Self {
        SystemState {
            devices: self.devices.clone(),
            hmp: self.hmp.clone(),
        }
    }
}

impl<F: Files> Default for SystemState<F> {
    fn default() -> Self {
        SystemState {
            devices: BTreeMap::new(),
            hmp: None,
        }
    }
}

impl<F: Files, L: NbdListener> Monitor<F, L> {
    /// Serves `human-monitor-command` through `handler`.
    pub fn set_hmp_handler(&mut self, handler: HmpHandler<F>) {
        self.system.hmp = Some(handler);
    }

    /// A guest device `qdev` attached to the BlockBackend `backend`
    /// (`blk_attach_dev` and the device's permissions).
    pub fn attach_device(
        &mut self,
        backend: &str,
        qdev: &str,
        access: DeviceAccess,
        share_rw: bool,
    ) -> Result<(), QmpError> {
        if self.system.devices.contains_key(backend) {
            return Err(QmpError::generic(format!(
                "Drive '{backend}' is already in use by another device"
            )));
        }
        self.layer_mut()
            .attach_device(backend, access, share_rw)
            .map_err(block_error)?;
        self.system
            .devices
            .insert(backend.to_string(), qdev.to_string());
        Ok(())
    }

    pub(crate) fn human_monitor_command(&mut self, command_line: &str) -> Result<Value, QmpError> {
        let Some(handler) = self.system.hmp.clone() else {
            return Err(QmpError::new(
                ErrorClass::CommandNotFound,
                "The command human-monitor-command has not been found",
            ));
        };
        handler(self.layer_mut(), command_line).map(Value::String)
    }

    /// `qmp_query_block`: the named BlockBackends in creation order, with
    /// their device and medium.
    pub(crate) fn query_block(&mut self) -> Value {
        let infos = self.layer_mut().query_named_block_nodes();
        let mut list = Vec::new();
        for name in self.layer().backend_names() {
            let mut info = json!({
                "device": name,
                "locked": false,
                "removable": false,
                "type": "unknown",
            });
            if let Some(qdev) = self.system.devices.get(&name) {
                info["qdev"] = json!(qdev);
                info["io-status"] = json!("ok");
            }
            let graph = self.layer().core().graph().graph();
            let inserted = self
                .layer()
                .backend_node(&name)
                .and_then(|node| infos.iter().find(|i| i.node_name == graph.name(node)))
                .map(|node_info| self.block_device_info(&infos, node_info, false));
            if let Some(inserted) = inserted {
                info["inserted"] = inserted;
            }
            list.push(info);
        }
        Value::Array(list)
    }
}
