//! The events the job layer emits, with exactly QEMU's data fields.
//!
//! Events are appended to a caller-supplied `Vec` in the order QEMU sends
//! them; they carry no timestamp (the QMP layer adds it). They are plain
//! data: the monitor (strata-monitor) gives them QMP's shape.

use crate::status::{BlockErrorAction, IoOperation, JobStatus, JobType};

/// One QMP event of the job layer.
#[derive(Clone, PartialEq, Eq, Debug)]
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
        error: Option<String>,
    },
    /// A block job was force-cancelled.
    BlockJobCancelled {
        /// The job type.
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
