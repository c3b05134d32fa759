//! The values `query-jobs` and `query-block-jobs` return.

use crate::status::{IoStatus, JobStatus, JobType};
use serde::Serialize;

/// One element of `query-jobs` (`JobInfo`, qapi/job.json, 10.0).
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobInfo {
    /// The job ID.
    pub id: String,
    /// The job type.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The status.
    pub status: JobStatus,
    /// Progress made so far.
    pub current_progress: u64,
    /// Estimated total progress.
    pub total_progress: u64,
    /// The error text once the job failed (including "Operation canceled").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One element of `query-block-jobs` (`BlockJobInfo`, qapi/block-core.json,
/// 10.0). Only block jobs (stream, commit, mirror, backup) appear.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockJobInfo {
    /// The job type.
    #[serde(rename = "type")]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Mirror only: whether writes are mirrored synchronously.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actively_synced: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, to_value};

    #[test]
    fn json_matches_qemu_storage_daemon() {
        // qsd 10.0.2: query-block-jobs during a blockdev-mirror ->
        // {"auto-finalize": true, "io-status": "ok", "device": "m", "auto-dismiss": true,
        //  "busy": false, "len": 4194304, "offset": 4194304, "status": "ready",
        //  "paused": false, "speed": 0, "ready": true, "type": "mirror", "actively-synced": false}
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
            to_value(&info).unwrap(),
            json!({"auto-finalize": true, "io-status": "ok", "device": "m", "auto-dismiss": true,
                   "busy": false, "len": 4194304, "offset": 4194304, "status": "ready",
                   "paused": false, "speed": 0, "ready": true, "type": "mirror", "actively-synced": false})
        );
        // qsd: query-jobs after job-cancel of a manual-dismiss stream ->
        // {"current-progress": 524288, "status": "concluded", "total-progress": 67108864,
        //  "type": "stream", "id": "j2", "error": "Operation canceled"}
        let job = JobInfo {
            id: "j2".into(),
            job_type: JobType::Stream,
            status: JobStatus::Concluded,
            current_progress: 524288,
            total_progress: 67108864,
            error: Some("Operation canceled".into()),
        };
        assert_eq!(
            to_value(&job).unwrap(),
            json!({"current-progress": 524288, "status": "concluded", "total-progress": 67108864,
                   "type": "stream", "id": "j2", "error": "Operation canceled"})
        );
    }
}
