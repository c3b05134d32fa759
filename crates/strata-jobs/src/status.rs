//! The QAPI enums of the job layer and QEMU's two tables, `JobSTT` and
//! `JobVerbTable` (job.c, QEMU 10.0).

use std::fmt;

/// Declares a QAPI enum: variants in QAPI order, each with its wire name,
/// plus `ALL`, `as_str` and `Display`.
macro_rules! qapi_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every value, in QAPI declaration order (the order of QEMU's tables).
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The QAPI wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// Parses the QAPI wire name.
            pub fn from_qapi(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

qapi_enum! {
    /// `JobStatus` (qapi/job.json). The letters in the comments are the ones
    /// job.c uses as column headers in its tables.
    JobStatus {
        /// U: never visible; the status before `created`.
        Undefined = "undefined",
        /// C: created, not started.
        Created = "created",
        /// R: running its `run()`.
        Running = "running",
        /// P: paused at a pause point.
        Paused = "paused",
        /// Y: ready to be completed (mirror, active commit).
        Ready = "ready",
        /// S: paused while ready.
        Standby = "standby",
        /// W: `run()` done, waiting for the rest of the transaction.
        Waiting = "waiting",
        /// D: waiting for finalization (automatic, or `job-finalize`).
        Pending = "pending",
        /// X: failed or cancelled, being cleaned up.
        Aborting = "aborting",
        /// E: finished, waiting for `job-dismiss` unless auto-dismissed.
        Concluded = "concluded",
        /// N: gone.
        Null = "null",
    }
}

qapi_enum! {
    /// `JobVerb` (qapi/job.json): the commands a job may be refused.
    JobVerb {
        /// `job-cancel`, `block-job-cancel`.
        Cancel = "cancel",
        /// `job-pause`, `block-job-pause`.
        Pause = "pause",
        /// `job-resume`, `block-job-resume`.
        Resume = "resume",
        /// `block-job-set-speed`.
        SetSpeed = "set-speed",
        /// `job-complete`, `block-job-complete`.
        Complete = "complete",
        /// `job-dismiss`, `block-job-dismiss`.
        Dismiss = "dismiss",
        /// `job-finalize`, `block-job-finalize`.
        Finalize = "finalize",
        /// `block-job-change` (since 8.2).
        Change = "change",
    }
}

qapi_enum! {
    /// `JobType` (qapi/job.json). Active commit reports `commit`.
    JobType {
        /// block-commit (intermediate and active).
        Commit = "commit",
        /// block-stream.
        Stream = "stream",
        /// drive-mirror / blockdev-mirror.
        Mirror = "mirror",
        /// drive-backup / blockdev-backup.
        Backup = "backup",
        /// blockdev-create.
        Create = "create",
        /// x-blockdev-amend.
        Amend = "amend",
        /// snapshot-load.
        SnapshotLoad = "snapshot-load",
        /// snapshot-save.
        SnapshotSave = "snapshot-save",
        /// snapshot-delete.
        SnapshotDelete = "snapshot-delete",
    }
}

impl JobType {
    /// Whether jobs of this type are block jobs (blockjob.c `is_block_job`):
    /// only they are visible to `block-job-*` and `query-block-jobs`, and
    /// only they emit the `BLOCK_JOB_*` events.
    pub fn is_block_job(self) -> bool {
        matches!(
            self,
            JobType::Backup | JobType::Commit | JobType::Mirror | JobType::Stream
        )
    }
}

qapi_enum! {
    /// `BlockdevOnError` (qapi/block-core.json): a job's error policy.
    BlockdevOnError {
        /// Fail the job.
        Report = "report",
        /// Carry on (what "carry on" means is the driver's business).
        Ignore = "ignore",
        /// Stop on ENOSPC, report anything else.
        Enospc = "enospc",
        /// Pause the job (user-visible pause) until it is resumed.
        Stop = "stop",
        /// Like `enospc` for jobs.
        Auto = "auto",
    }
}

qapi_enum! {
    /// `BlockErrorAction` (qapi/block-core.json): what a policy decided.
    BlockErrorAction {
        /// The error was ignored.
        Ignore = "ignore",
        /// The error is reported (the job fails).
        Report = "report",
        /// The job was stopped.
        Stop = "stop",
    }
}

qapi_enum! {
    /// `BlockDeviceIoStatus` (qapi/block-core.json): `io-status` of a block job.
    IoStatus {
        /// No error since the last resume.
        Ok = "ok",
        /// Stopped by an error other than ENOSPC.
        Failed = "failed",
        /// Stopped by ENOSPC.
        Nospace = "nospace",
    }
}

qapi_enum! {
    /// `IoOperationType` (qapi/block-core.json): the `operation` of
    /// `BLOCK_JOB_ERROR`.
    IoOperation {
        /// A read failed.
        Read = "read",
        /// A write failed.
        Write = "write",
    }
}

qapi_enum! {
    /// `MirrorCopyMode` (qapi/block-core.json): the one option
    /// `block-job-change` can change (mirror only).
    MirrorCopyMode {
        /// Copy in the background only.
        Background = "background",
        /// Also write guest writes synchronously to the target.
        WriteBlocking = "write-blocking",
    }
}

/// QEMU's two tables (job.c), indexed in QAPI order.
pub struct JobTable;

/// `JobSTT[from][to]`: columns U, C, R, P, Y, S, W, D, X, E, N.
const STT: [[bool; 11]; 11] = {
    const O: bool = false;
    const I: bool = true;
    [
        /* U */ [O, I, O, O, O, O, O, O, O, O, O],
        /* C */ [O, O, I, O, O, O, O, O, I, O, I],
        /* R */ [O, O, O, I, I, O, I, O, I, O, O],
        /* P */ [O, O, I, O, O, O, O, O, O, O, O],
        /* Y */ [O, O, O, O, O, I, I, O, I, O, O],
        /* S */ [O, O, O, O, I, O, O, O, O, O, O],
        /* W */ [O, O, O, O, O, O, O, I, I, O, O],
        /* D */ [O, O, O, O, O, O, O, O, I, I, O],
        /* X */ [O, O, O, O, O, O, O, O, I, I, O],
        /* E */ [O, O, O, O, O, O, O, O, O, O, I],
        /* N */ [O, O, O, O, O, O, O, O, O, O, O],
    ]
};

/// `JobVerbTable[verb][status]`: columns U, C, R, P, Y, S, W, D, X, E, N.
/// `complete` in standby is 6.0's; `change` is 8.2's.
const VERBS: [[bool; 11]; 8] = {
    const O: bool = false;
    const I: bool = true;
    [
        /* cancel    */ [O, I, I, I, I, I, I, I, O, O, O],
        /* pause     */ [O, I, I, I, I, I, O, O, O, O, O],
        /* resume    */ [O, I, I, I, I, I, O, O, O, O, O],
        /* set-speed */ [O, I, I, I, I, I, O, O, O, O, O],
        /* complete  */ [O, O, O, O, I, I, O, O, O, O, O],
        /* dismiss   */ [O, O, O, O, O, O, O, O, O, I, O],
        /* finalize  */ [O, O, O, O, O, O, O, I, O, O, O],
        /* change    */ [O, I, I, I, I, I, O, O, O, O, O],
    ]
};

impl JobTable {
    /// Whether `JobSTT` allows `from -> to`. `aborting -> aborting` is
    /// allowed (and silent: events are sent only for real changes).
    pub fn transition_allowed(from: JobStatus, to: JobStatus) -> bool {
        STT[from as usize][to as usize]
    }

    /// Whether `JobVerbTable` lets a job in `status` accept `verb`.
    pub fn verb_allowed(verb: JobVerb, status: JobStatus) -> bool {
        VERBS[verb as usize][status as usize]
    }
}
