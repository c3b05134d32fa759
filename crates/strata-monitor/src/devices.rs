//! What a qemu-system stand-in adds to the monitor: guest devices on
//! BlockBackends (`-device`, `device_add`, `device_del`; `query-block`'s
//! `qdev` and `io-status`) and `human-monitor-command`, whose commands
//! (`qemu-io`) the stand-in serves through a handler on the block layer.

use serde_json::{json, Value};
use strata_block::{DeviceAccess, Files, ShareRw};
use strata_graph::RootId;
use strata_jobs::Cancel;
use strata_qmp::{DeviceAddArgs, ErrorClass, Event, QmpError};

use crate::monitor::{ImplicitFilters, Monitor, NbdListener};
use crate::replies::block_error;
use crate::system_state::{Device, HmpHandler, ShutdownEvent};

/// The device types a stand-in without a guest accepts; `true`: a disk,
/// which takes a drive.
const DEVICE_TYPES: &[(&str, bool)] = &[
    ("virtio-blk", true),
    ("virtio-blk-pci", true),
    ("scsi-hd", true),
    ("virtio-scsi", false),
    ("virtio-scsi-pci", false),
];

impl<F: Files, L: NbdListener> Monitor<F, L> {
    /// Whether `quit` raises `SHUTDOWN` first.
    pub fn set_shutdown_event(&mut self, event: ShutdownEvent) {
        self.system.shutdown_event = event;
    }

    /// `qmp_quit` on a machine: `SHUTDOWN` comes ahead of the answer
    /// (QEMU's main loop sends it before the monitor's reply goes out).
    pub(crate) fn announce_quit(&mut self) {
        if self.system.shutdown_event == ShutdownEvent::Announced {
            self.push_event(Event {
                name: "SHUTDOWN".into(),
                data: Some(json!({ "guest": false, "reason": "host-qmp-quit" })),
            });
        }
    }

    /// Serves `human-monitor-command` through `handler`.
    pub fn set_hmp_handler(&mut self, handler: HmpHandler<F>) {
        self.system.hmp = Some(handler);
    }

    /// `-device` / `device_add`: a device of a known type; a disk takes
    /// the BlockBackend `drive` names, or a new anonymous one on the node
    /// it names.
    pub fn device_add(&mut self, args: &DeviceAddArgs) -> Result<(), QmpError> {
        let driver = args.driver.as_str();
        let is_disk = DEVICE_TYPES
            .iter()
            .find(|(d, _)| *d == driver)
            .map(|&(_, disk)| disk)
            .ok_or_else(|| {
                QmpError::generic(format!("'{driver}' is not a valid device model name"))
            })?;
        if let Some(id) = &args.id {
            if self
                .system
                .devices
                .iter()
                .any(|d| d.id.as_ref() == Some(id))
            {
                return Err(QmpError::generic(format!("Duplicate device ID '{id}'")));
            }
        }
        let backend = match (&args.drive, is_disk) {
            (Some(drive), true) => Some(self.device_backend(driver, drive)?),
            (None, true) => return Err(QmpError::generic("drive property not set")),
            (_, false) => None,
        };
        let qdev = self.qdev_path(driver, args.id.as_deref());
        self.system.devices.push(Device {
            id: args.id.clone(),
            qdev,
            backend,
        });
        Ok(())
    }

    /// The BlockBackend of a disk: the named one, or an anonymous one made
    /// for the node; its device's permissions taken.
    fn device_backend(&mut self, driver: &str, drive: &str) -> Result<RootId, QmpError> {
        if let Some(root) = self.layer().backend_by_name(drive) {
            if self.system.devices.iter().any(|d| d.backend == Some(root)) {
                return Err(QmpError::generic(format!(
                    "Drive '{drive}' is already in use by another device"
                )));
            }
            self.take_device_perms(root, drive)?;
            return Ok(root);
        }
        let root = self.layer_mut().add_device_backend(drive).map_err(|_| {
            QmpError::generic(format!(
                "Property '{driver}.drive' can't find value '{drive}'"
            ))
        })?;
        if let Err(err) = self.take_device_perms(root, drive) {
            self.layer_mut().remove_backend(root);
            return Err(err);
        }
        Ok(root)
    }

    fn take_device_perms(&mut self, root: RootId, drive: &str) -> Result<(), QmpError> {
        let layer = self.layer();
        let read_only = layer
            .backend_root_node(root)
            .and_then(|node| {
                layer
                    .core()
                    .graph()
                    .graph()
                    .node(node)
                    .ok()
                    .map(|n| n.read_only)
            })
            .ok_or_else(|| QmpError::generic(format!("Drive '{drive}' has no medium")))?;
        let access = if read_only {
            DeviceAccess::ReadOnly
        } else {
            DeviceAccess::ReadWrite
        };
        self.layer_mut()
            .attach_device(root, access, ShareRw::Off)
            .map_err(block_error)
    }

    /// `blk_get_attached_dev_id`'s path: a device's id, else its QOM path;
    /// a virtio-blk's BlockBackend belongs to the virtio device inside the
    /// PCI proxy.
    fn qdev_path(&mut self, driver: &str, id: Option<&str>) -> String {
        let virtio_blk = driver.starts_with("virtio-blk");
        let path = match id {
            Some(id) if !virtio_blk => return id.to_string(),
            Some(id) => format!("/machine/peripheral/{id}"),
            None => {
                let path = format!("/machine/peripheral-anon/device[{}]", self.system.anonymous);
                self.system.anonymous += 1;
                path
            }
        };
        if virtio_blk {
            format!("{path}/virtio-backend")
        } else {
            path
        }
    }

    /// `device_del`: the jobs on the device's medium are cancelled
    /// (`blockdev_mark_auto_del`), the device goes at once (no guest to
    /// ask) with `DEVICE_DELETED`, and so does its BlockBackend.
    pub fn device_del(&mut self, id: &str) -> Result<(), QmpError> {
        let index = self
            .system
            .devices
            .iter()
            .position(|d| d.id.as_deref() == Some(id))
            .ok_or_else(|| {
                QmpError::new(
                    ErrorClass::DeviceNotFound,
                    format!("Device '{id}' not found"),
                )
            })?;
        let device = self.system.devices.remove(index);
        if let Some(root) = device.backend {
            let node = self.layer().backend_root_node(root);
            for job in node
                .map(|n| self.layer().jobs_on_node(n))
                .unwrap_or_default()
            {
                self.layer_mut()
                    .cancel(Cancel::BlockJob { force: false }, &job)
                    .map_err(block_error)?;
            }
            self.layer_mut().remove_backend(root);
        }
        self.push_event(Event {
            name: "DEVICE_DELETED".into(),
            data: Some(json!({ "device": id, "path": format!("/machine/peripheral/{id}") })),
        });
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

    /// `qmp_query_blockstats`: per BlockBackend with a name or a device
    /// (or per named node with `query_nodes`), the node tree's
    /// statistics. Strata keeps no I/O accounting: every counter is 0.
    pub(crate) fn query_blockstats(&mut self, query_nodes: bool) -> Value {
        let layer = self.layer();
        let graph = layer.core().graph().graph();
        if query_nodes {
            // `bdrv_next_node`: every named node, in creation order.
            return Value::Array(
                graph
                    .nodes()
                    .map(|node| node_stats(graph, node, ImplicitFilters::Shown))
                    .collect(),
            );
        }
        let mut list = Vec::new();
        for (root, name) in layer.backends() {
            let device = self.system.devices.iter().find(|d| d.backend == Some(root));
            if name.is_none() && device.is_none() {
                continue;
            }
            let mut stats = match layer.backend_root_node(root) {
                Some(node) => node_stats(graph, node, ImplicitFilters::Skipped),
                None => json!({ "stats": zero_stats() }),
            };
            let mut entry = json!({ "device": name.unwrap_or_default() });
            if let Some(device) = device {
                entry["qdev"] = json!(device.qdev);
            }
            if let (Value::Object(entry), Value::Object(stats)) = (&mut entry, &mut stats) {
                entry.append(stats);
            }
            list.push(entry);
        }
        Value::Array(list)
    }

    /// `qmp_query_block`: the BlockBackends that have a name or a device,
    /// in creation order, with their device and medium.
    pub(crate) fn query_block(&mut self) -> Value {
        let infos = self.layer_mut().query_named_block_nodes();
        let mut list = Vec::new();
        for (root, name) in self.layer().backends() {
            let device = self.system.devices.iter().find(|d| d.backend == Some(root));
            if name.is_none() && device.is_none() {
                continue;
            }
            let mut info = json!({
                "device": name.unwrap_or_default(),
                "locked": false,
                "removable": false,
                "type": "unknown",
            });
            if let Some(device) = device {
                info["qdev"] = json!(device.qdev);
                info["io-status"] = json!("ok");
            }
            let graph = self.layer().core().graph().graph();
            // `bdrv_query_info`: the medium is the root without the
            // implicit filters above it.
            let inserted = self
                .layer()
                .backend_root_node(root)
                .map(|node| graph.skip_implicit_filters(node))
                .and_then(|node| infos.iter().find(|i| i.node_name == graph.name(node)))
                .map(|node_info| {
                    self.block_device_info(&infos, node_info, false, ImplicitFilters::Skipped)
                });
            if let Some(inserted) = inserted {
                info["inserted"] = inserted;
            }
            list.push(info);
        }
        Value::Array(list)
    }
}

/// `bdrv_query_bds_stats`: a node's statistics with its `file` child's
/// (`parent`) and its COW child's (`backing`).
fn node_stats(
    graph: &strata_graph::Graph,
    node: strata_graph::NodeId,
    implicit: ImplicitFilters,
) -> Value {
    let node = match implicit {
        ImplicitFilters::Shown => node,
        ImplicitFilters::Skipped => graph.skip_implicit_filters(node),
    };
    let mut stats = serde_json::Map::new();
    let name = graph.name(node);
    if !name.is_empty() {
        stats.insert("node-name".into(), json!(name));
    }
    stats.insert("stats".into(), zero_stats());
    let file = graph
        .node(node)
        .ok()
        .and_then(|n| n.file())
        .and_then(|e| graph.edge(e).ok())
        .map(|e| e.child());
    if let Some(file) = file {
        stats.insert("parent".into(), node_stats(graph, file, implicit));
    }
    if let Some(backing) = graph.cow_node(node) {
        stats.insert("backing".into(), node_stats(graph, backing, implicit));
    }
    Value::Object(stats)
}

/// `BlockDeviceStats` with nothing accounted.
fn zero_stats() -> Value {
    let mut stats = serde_json::Map::new();
    for counter in [
        "rd_bytes",
        "wr_bytes",
        "zone_append_bytes",
        "unmap_bytes",
        "rd_operations",
        "wr_operations",
        "zone_append_operations",
        "flush_operations",
        "unmap_operations",
        "rd_total_time_ns",
        "wr_total_time_ns",
        "zone_append_total_time_ns",
        "flush_total_time_ns",
        "unmap_total_time_ns",
        "wr_highest_offset",
        "rd_merged",
        "wr_merged",
        "zone_append_merged",
        "unmap_merged",
        "failed_rd_operations",
        "failed_wr_operations",
        "failed_zone_append_operations",
        "failed_flush_operations",
        "failed_unmap_operations",
        "invalid_rd_operations",
        "invalid_wr_operations",
        "invalid_zone_append_operations",
        "invalid_flush_operations",
        "invalid_unmap_operations",
    ] {
        stats.insert(counter.into(), json!(0));
    }
    stats.insert("account_invalid".into(), json!(false));
    stats.insert("account_failed".into(), json!(false));
    stats.insert("timed_stats".into(), json!([]));
    Value::Object(stats)
}
