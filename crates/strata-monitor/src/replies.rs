//! The QMP shape of what the block layer answers: job events and infos,
//! `x-debug-query-block-graph`, `query-named-block-nodes`' `BlockDeviceInfo`
//! and `ImageInfo`, and the way back: `blockdev-add` options as the block
//! layer's plain-data [`Options`].  This module and strata-qmp are the only
//! places that know JSON; the block layer hands over plain data.

use serde_json::{json, Map, Value};
use strata_block::{ErrorClass as BlockErrorClass, NamedNodeInfo, XdbgGraph};
use strata_formats::Header as Qcow2Header;
use strata_graph::{OptValue, Options, Perm};
use strata_jobs::{BlockJobInfo, BlockdevOnError, JobEvent, JobInfo, JobType};
use strata_qmp::{ErrorClass, Event, OnError, QmpError};

/// A job-layer event as a QMP event (name and data exactly as QEMU's; the
/// members in the order QEMU's QAPI visitor adds them).
pub fn job_event(event: &JobEvent) -> Event {
    let data = match event {
        JobEvent::JobStatusChange { id, status } => json!({"id": id, "status": status.as_str()}),
        JobEvent::BlockJobCompleted {
            job_type,
            device,
            len,
            offset,
            speed,
            error,
        } => {
            let mut data = progress_data(*job_type, device, *len, *offset, *speed);
            if let Some(error) = error {
                data.insert("error".into(), json!(error));
            }
            Value::Object(data)
        }
        JobEvent::BlockJobCancelled {
            job_type,
            device,
            len,
            offset,
            speed,
        }
        | JobEvent::BlockJobReady {
            job_type,
            device,
            len,
            offset,
            speed,
        } => Value::Object(progress_data(*job_type, device, *len, *offset, *speed)),
        JobEvent::BlockJobError {
            device,
            operation,
            action,
        } => json!({"device": device, "operation": operation.as_str(), "action": action.as_str()}),
        JobEvent::BlockJobPending { job_type, id } => {
            json!({"type": job_type.as_str(), "id": id})
        }
    };
    Event {
        name: event.name().to_string(),
        data: Some(data),
    }
}

/// The members every progress-carrying block job event starts with.
fn progress_data(
    job_type: JobType,
    device: &str,
    len: u64,
    offset: u64,
    speed: u64,
) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("type".into(), json!(job_type.as_str()));
    data.insert("device".into(), json!(device));
    data.insert("len".into(), json!(len));
    data.insert("offset".into(), json!(offset));
    data.insert("speed".into(), json!(speed));
    data
}

/// `query-jobs`: `JobInfo` list.
pub(crate) fn job_infos(jobs: &[JobInfo]) -> Value {
    Value::Array(jobs.iter().map(job_info).collect())
}

fn job_info(job: &JobInfo) -> Value {
    let mut info = Map::new();
    info.insert("id".into(), json!(job.id));
    info.insert("type".into(), json!(job.job_type.as_str()));
    info.insert("status".into(), json!(job.status.as_str()));
    info.insert("current-progress".into(), json!(job.current_progress));
    info.insert("total-progress".into(), json!(job.total_progress));
    if let Some(error) = &job.error {
        info.insert("error".into(), json!(error));
    }
    Value::Object(info)
}

/// `query-block-jobs`: `BlockJobInfo` list.
pub(crate) fn block_job_infos(jobs: &[BlockJobInfo]) -> Value {
    Value::Array(jobs.iter().map(block_job_info).collect())
}

fn block_job_info(job: &BlockJobInfo) -> Value {
    let mut info = Map::new();
    info.insert("type".into(), json!(job.job_type.as_str()));
    info.insert("device".into(), json!(job.device));
    info.insert("len".into(), json!(job.len));
    info.insert("offset".into(), json!(job.offset));
    info.insert("busy".into(), json!(job.busy));
    info.insert("paused".into(), json!(job.paused));
    info.insert("speed".into(), json!(job.speed));
    info.insert("io-status".into(), json!(job.io_status.as_str()));
    info.insert("ready".into(), json!(job.ready));
    info.insert("status".into(), json!(job.status.as_str()));
    info.insert("auto-finalize".into(), json!(job.auto_finalize));
    info.insert("auto-dismiss".into(), json!(job.auto_dismiss));
    if let Some(error) = &job.error {
        info.insert("error".into(), json!(error));
    }
    if let Some(synced) = job.actively_synced {
        info.insert("actively-synced".into(), json!(synced));
    }
    Value::Object(info)
}

/// Validated `blockdev-add` options (JSON, in the client's order) as the
/// QDict-like tree the block layer opens nodes from.
pub fn options_from_json(value: &Value) -> Options {
    let mut options = Options::new();
    if let Value::Object(map) = value {
        for (key, value) in map {
            options.put(key.clone(), opt_value(value));
        }
    }
    options
}

fn opt_value(value: &Value) -> OptValue {
    match value {
        Value::Null => OptValue::Null,
        Value::Bool(b) => OptValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => OptValue::Int(i),
            // QAPI numbers of the modelled drivers are integers; a uint64
            // beyond i64 keeps its bits, as QNum's int view does.
            None => n
                .as_u64()
                .map(|u| OptValue::Int(u as i64))
                .unwrap_or_else(|| OptValue::Str(n.to_string())),
        },
        Value::String(s) => OptValue::Str(s.clone()),
        Value::Array(items) => OptValue::List(items.iter().map(opt_value).collect()),
        Value::Object(_) => OptValue::Dict(options_from_json(value)),
    }
}

pub(crate) fn on_error(policy: OnError) -> BlockdevOnError {
    match policy {
        OnError::Report => BlockdevOnError::Report,
        OnError::Ignore => BlockdevOnError::Ignore,
        OnError::Enospc => BlockdevOnError::Enospc,
        OnError::Stop => BlockdevOnError::Stop,
        OnError::Auto => BlockdevOnError::Auto,
    }
}

/// A block-layer refusal with its QMP class and QEMU's text.
pub fn block_error(err: strata_block::Error) -> QmpError {
    let class = match err.class() {
        BlockErrorClass::Generic => ErrorClass::GenericError,
        BlockErrorClass::DeviceNotFound => ErrorClass::DeviceNotFound,
        BlockErrorClass::DeviceNotActive => ErrorClass::DeviceNotActive,
    };
    QmpError {
        hint: err.hint().map(str::to_string),
        ..QmpError::new(class, err.to_string())
    }
}

/// `XDbgBlockGraph`; permission lists in QEMU's order (it prepends, so the
/// highest bit comes first).
pub fn block_graph(graph: &XdbgGraph) -> Value {
    let perms = |p: Perm| {
        let mut names = p.qapi_names();
        names.reverse();
        names
    };
    json!({
        "nodes": graph.nodes.iter().map(|n| json!({
            "id": n.id,
            "type": n.node_type.as_str(),
            "name": n.name,
        })).collect::<Vec<_>>(),
        "edges": graph.edges.iter().map(|e| json!({
            "parent": e.parent,
            "child": e.child,
            "name": e.name,
            "perm": perms(e.perm),
            "shared-perm": perms(e.shared),
        })).collect::<Vec<_>>(),
    })
}

/// `ImageInfo` from what the block layer knows of a node.
pub(crate) fn image_info(info: &NamedNodeInfo, backing: Option<Value>) -> Value {
    let mut image = Map::new();
    image.insert("filename".into(), json!(info.file));
    image.insert("format".into(), json!(info.format));
    // bdrv_get_info fails for null-co (no .bdrv_co_get_info): no
    // dirty-flag then.
    if !matches!(info.driver.as_str(), "null-co" | "null-aio") {
        image.insert("dirty-flag".into(), json!(false));
    }
    // bdrv_getlength counts whole sectors: a file's odd tail rounds up.
    image.insert(
        "virtual-size".into(),
        json!(info.virtual_size.next_multiple_of(512)),
    );
    if info.driver == "file" {
        image.insert(
            "format-specific".into(),
            json!({"type": "file", "data": {}}),
        );
    }
    if let Some(backing_file) = &info.backing_file {
        image.insert("backing-filename".into(), json!(backing_file));
        image.insert(
            "full-backing-filename".into(),
            json!(full_backing_filename(&info.file, backing_file)),
        );
        if let Some(format) = &info.backing_format {
            image.insert("backing-filename-format".into(), json!(format));
        }
    }
    if let Some(backing) = backing {
        image.insert("backing-image".into(), backing);
    }
    Value::Object(image)
}

/// qcow2's incompatible feature bits QEMU reports.
pub(crate) const QCOW2_DIRTY: u64 = 1 << 0;
const QCOW2_CORRUPT: u64 = 1 << 1;
const QCOW2_EXTENDED_L2: u64 = 1 << 4;
/// qcow2's compatible feature bit for lazy refcounts.
const QCOW2_LAZY_REFCOUNTS: u64 = 1 << 0;

/// `qcow2_get_specific_info`: `ImageInfoSpecificQCow2`.
pub(crate) fn qcow2_specific(header: &Qcow2Header) -> Value {
    let compression = if header.compression_type == 1 {
        "zstd"
    } else {
        "zlib"
    };
    let refcount_bits = 1u64 << header.refcount_order;
    let data = if header.version == 2 {
        json!({
            "compat": "0.10",
            "refcount-bits": refcount_bits,
            "compression-type": compression,
        })
    } else {
        json!({
            "compat": "1.1",
            "lazy-refcounts": header.compatible_features & QCOW2_LAZY_REFCOUNTS != 0,
            "corrupt": header.incompatible_features & QCOW2_CORRUPT != 0,
            "extended-l2": header.incompatible_features & QCOW2_EXTENDED_L2 != 0,
            "refcount-bits": refcount_bits,
            "compression-type": compression,
        })
    };
    json!({"type": "qcow2", "data": data})
}

/// `bdrv_get_full_backing_filename`: a relative backing file name is
/// relative to the directory of the image that names it.
pub(crate) fn full_backing_filename(image: &str, backing: &str) -> String {
    if backing.starts_with('/') || backing.starts_with("json:") || image.starts_with("json:") {
        return backing.to_string();
    }
    match image.rfind('/') {
        Some(slash) => format!("{}{}", &image[..=slash], backing),
        None => backing.to_string(),
    }
}

/// `BlockDeviceInfo`: throttling and cache settings are QEMU's defaults
/// (Strata has no per-node I/O limits or cache modes).
pub(crate) fn block_device_info(
    info: &NamedNodeInfo,
    image: Value,
    depth: usize,
    backing_file: Option<String>,
) -> Value {
    let mut device = json!({
        "file": info.file,
        "node-name": info.node_name,
        "ro": info.read_only,
        "drv": info.driver,
        "backing_file_depth": depth,
        "encrypted": false,
        "detect_zeroes": "off",
        "bps": 0, "bps_rd": 0, "bps_wr": 0,
        "iops": 0, "iops_rd": 0, "iops_wr": 0,
        "image": image,
        "write_threshold": 0,
        "cache": {"writeback": true, "direct": false, "no-flush": false},
        "active": true,
    });
    if let Some(backing_file) = backing_file {
        device["backing_file"] = json!(backing_file);
    }
    device
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_jobs::{BlockErrorAction, IoOperation, IoStatus, JobStatus};

    /// Events as qemu-storage-daemon 10.0.2 sent them (timestamps dropped).
    #[test]
    fn job_events_are_qsds() {
        let cases = [
            (
                JobEvent::JobStatusChange {
                    id: "j1".into(),
                    status: JobStatus::Created,
                },
                json!({"status": "created", "id": "j1"}),
            ),
            (
                JobEvent::BlockJobPending {
                    job_type: JobType::Stream,
                    id: "j1".into(),
                },
                json!({"type": "stream", "id": "j1"}),
            ),
            (
                JobEvent::BlockJobCancelled {
                    job_type: JobType::Stream,
                    device: "j2".into(),
                    len: 67108864,
                    offset: 524288,
                    speed: 1024,
                },
                json!({"device": "j2", "len": 67108864, "offset": 524288, "speed": 1024, "type": "stream"}),
            ),
            (
                JobEvent::BlockJobReady {
                    job_type: JobType::Mirror,
                    device: "m".into(),
                    len: 4194304,
                    offset: 4194304,
                    speed: 0,
                },
                json!({"device": "m", "len": 4194304, "offset": 4194304, "speed": 0, "type": "mirror"}),
            ),
            (
                JobEvent::BlockJobCompleted {
                    job_type: JobType::Stream,
                    device: "drive0".into(),
                    len: 2097152,
                    offset: 524288,
                    speed: 0,
                    error: Some("Input/output error".into()),
                },
                json!({"device": "drive0", "len": 2097152, "offset": 524288, "speed": 0,
                       "type": "stream", "error": "Input/output error"}),
            ),
            (
                JobEvent::BlockJobError {
                    device: "drive0".into(),
                    operation: IoOperation::Read,
                    action: BlockErrorAction::Stop,
                },
                json!({"device": "drive0", "operation": "read", "action": "stop"}),
            ),
        ];
        for (event, want) in cases {
            let qmp = job_event(&event);
            assert_eq!(qmp.name, event.name());
            assert_eq!(qmp.data, Some(want), "{}", event.name());
        }
    }

    #[test]
    fn job_infos_are_qsds() {
        // qsd 10.0.2: query-block-jobs during a blockdev-mirror.
        let info = BlockJobInfo {
            job_type: JobType::Mirror,
            device: "m".into(),
            len: 4194304,
            offset: 4194304,
            busy: false,
            paused: false,
            speed: 0,
            io_status: IoStatus::Ok,
            ready: true,
            status: JobStatus::Ready,
            auto_finalize: true,
            auto_dismiss: true,
            error: None,
            actively_synced: Some(false),
        };
        assert_eq!(
            block_job_infos(&[info]),
            json!([{"auto-finalize": true, "io-status": "ok", "device": "m", "auto-dismiss": true,
                    "busy": false, "len": 4194304, "offset": 4194304, "status": "ready",
                    "paused": false, "speed": 0, "ready": true, "type": "mirror", "actively-synced": false}])
        );
        // qsd: query-jobs after job-cancel of a manual-dismiss stream.
        let job = JobInfo {
            id: "j2".into(),
            job_type: JobType::Stream,
            status: JobStatus::Concluded,
            current_progress: 524288,
            total_progress: 67108864,
            error: Some("Operation canceled".into()),
        };
        assert_eq!(
            job_infos(&[job]),
            json!([{"current-progress": 524288, "status": "concluded", "total-progress": 67108864,
                    "type": "stream", "id": "j2", "error": "Operation canceled"}])
        );
    }
}
