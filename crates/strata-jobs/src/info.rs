//! The values `query-jobs` and `query-block-jobs` return.

use crate::status::{IoStatus, JobStatus, JobType};

/// One element of `query-jobs` (`JobInfo`, qapi/job.json, 10.0).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct JobInfo {
    /// The job ID.
    pub id: String,
    /// The job type.
    pub job_type: JobType,
    /// The status.
    pub status: JobStatus,
    /// Progress made so far.
    pub current_progress: u64,
    /// Estimated total progress.
    pub total_progress: u64,
    /// The error text once the job failed (including "Operation canceled").
    pub error: Option<String>,
}

/// One element of `query-block-jobs` (`BlockJobInfo`, qapi/block-core.json,
/// 10.0). Only block jobs (stream, commit, mirror, backup) appear.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BlockJobInfo {
    /// The job type.
    pub job_type: JobType,
    /// The job ID.
    pub device: String,
    /// Total progress.
    pub len: u64,
    /// Current progress.
    pub offset: u64,
    /// Whether the job's coroutine is running (not yielded).
    pub busy: bool,
    /// Whether any pause is pending (`pause_count > 0`), not only the user's.
    pub paused: bool,
    /// The speed limit in bytes per second (0: none).
    pub speed: u64,
    /// The io-status.
    pub io_status: IoStatus,
    /// Whether the job is ready (ready or standby).
    pub ready: bool,
    /// The status.
    pub status: JobStatus,
    /// QMP `auto-finalize`.
    pub auto_finalize: bool,
    /// QMP `auto-dismiss`.
    pub auto_dismiss: bool,
    /// The error text once the job failed.
    pub error: Option<String>,
    /// Mirror only: whether writes are mirrored synchronously.
    pub actively_synced: Option<bool>,
}
