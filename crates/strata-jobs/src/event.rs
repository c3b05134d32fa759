//! The events the job layer emits, with exactly QEMU's data fields.
//!
//! Events are appended to a caller-supplied `Vec` in the order QEMU sends
//! them; they carry no timestamp (the QMP layer adds it). Serialized with
//! serde they have QMP's shape: `{"event": "NAME", "data": {...}}`.

use crate::status::{BlockErrorAction, IoOperation, JobStatus, JobType};
use serde::Serialize;

/// One QMP event of the job layer.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
#[serde(tag = "event", content = "data", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobEvent {
    /// Every status change of a job with an ID.
    JobStatusChange {
        /// The job ID.
        id: String,
        /// The new status.
        status: JobStatus,
    },
    /// A block job finished: success, failure (`error` set), or soft cancel
    /// of a ready mirror.
    BlockJobCompleted {
        /// The job type.
        #[serde(rename = "type")]
        job_type: JobType,
        /// The job ID.
        device: String,
        /// Total progress.
        len: u64,
        /// Current progress.
        offset: u64,
        /// The speed limit in bytes per second (0: none).
        speed: u64,
        /// The error text when the job failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A block job was force-cancelled.
    BlockJobCancelled {
        /// The job type.
        #[serde(rename = "type")]
        job_type: JobType,
        /// The job ID.
        device: String,
        /// Total progress.
        len: u64,
        /// Current progress.
        offset: u64,
        /// The speed limit.
        speed: u64,
    },
    /// A block job became ready (running -> ready; not re-sent after standby).
    BlockJobReady {
        /// The job type.
        #[serde(rename = "type")]
        job_type: JobType,
        /// The job ID.
        device: String,
        /// Total progress.
        len: u64,
        /// Current progress.
        offset: u64,
        /// The speed limit.
        speed: u64,
    },
    /// A block job's error policy handled an I/O error (also for `ignore`).
    BlockJobError {
        /// The job ID.
        device: String,
        /// Whether a read or a write failed.
        operation: IoOperation,
        /// What the policy decided.
        action: BlockErrorAction,
    },
    /// A block job with `auto-finalize: false` waits for `job-finalize`.
    BlockJobPending {
        /// The job type.
        #[serde(rename = "type")]
        job_type: JobType,
        /// The job ID.
        id: String,
    },
}

impl JobEvent {
    /// The QMP event name.
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::JobStatusChange { .. } => "JOB_STATUS_CHANGE",
            JobEvent::BlockJobCompleted { .. } => "BLOCK_JOB_COMPLETED",
            JobEvent::BlockJobCancelled { .. } => "BLOCK_JOB_CANCELLED",
            JobEvent::BlockJobReady { .. } => "BLOCK_JOB_READY",
            JobEvent::BlockJobError { .. } => "BLOCK_JOB_ERROR",
            JobEvent::BlockJobPending { .. } => "BLOCK_JOB_PENDING",
        }
    }

    /// The job the event is about (`id` or `device`).
    pub fn job_id(&self) -> &str {
        match self {
            JobEvent::JobStatusChange { id, .. } | JobEvent::BlockJobPending { id, .. } => id,
            JobEvent::BlockJobCompleted { device, .. }
            | JobEvent::BlockJobCancelled { device, .. }
            | JobEvent::BlockJobReady { device, .. }
            | JobEvent::BlockJobError { device, .. } => device,
        }
    }

    /// The conformance harness's compressed form (`job_event_sequences`):
    /// the new status for `JOB_STATUS_CHANGE`, the event name otherwise.
    pub fn sequence_label(&self) -> &'static str {
        match self {
            JobEvent::JobStatusChange { status, .. } => status.as_str(),
            other => other.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, to_value};

    #[test]
    fn json_matches_qemu_storage_daemon() {
        // Events as qsd 10.0.2 sent them (timestamps dropped).
        let cases = [
            (
                JobEvent::JobStatusChange {
                    id: "j1".into(),
                    status: JobStatus::Created,
                },
                json!({"event": "JOB_STATUS_CHANGE", "data": {"status": "created", "id": "j1"}}),
            ),
            (
                JobEvent::BlockJobPending {
                    job_type: JobType::Stream,
                    id: "j1".into(),
                },
                json!({"event": "BLOCK_JOB_PENDING", "data": {"type": "stream", "id": "j1"}}),
            ),
            (
                JobEvent::BlockJobCancelled {
                    job_type: JobType::Stream,
                    device: "j2".into(),
                    len: 67108864,
                    offset: 524288,
                    speed: 1024,
                },
                json!({"event": "BLOCK_JOB_CANCELLED",
                       "data": {"device": "j2", "len": 67108864, "offset": 524288, "speed": 1024, "type": "stream"}}),
            ),
            (
                JobEvent::BlockJobReady {
                    job_type: JobType::Mirror,
                    device: "m".into(),
                    len: 4194304,
                    offset: 4194304,
                    speed: 0,
                },
                json!({"event": "BLOCK_JOB_READY",
                       "data": {"device": "m", "len": 4194304, "offset": 4194304, "speed": 0, "type": "mirror"}}),
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
                json!({"event": "BLOCK_JOB_COMPLETED",
                       "data": {"device": "drive0", "len": 2097152, "offset": 524288, "speed": 0,
                                "type": "stream", "error": "Input/output error"}}),
            ),
            (
                JobEvent::BlockJobError {
                    device: "drive0".into(),
                    operation: IoOperation::Read,
                    action: BlockErrorAction::Stop,
                },
                json!({"event": "BLOCK_JOB_ERROR", "data": {"device": "drive0", "operation": "read", "action": "stop"}}),
            ),
        ];
        for (event, want) in cases {
            assert_eq!(to_value(&event).unwrap(), want, "{}", event.name());
            assert_eq!(want["event"], event.name());
        }
    }
}
