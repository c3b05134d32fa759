//! Typed errors: QMP-visible refusals with QEMU's texts, and the errno-style
//! failures a job's driver reports.

use crate::status::{JobStatus, JobVerb};
use std::fmt;

/// The QMP error class an error is reported with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ErrorClass {
    /// `GenericError`: almost everything.
    GenericError,
    /// `DeviceNotActive`: `block-job-*` on an unknown job.
    DeviceNotActive,
}

impl ErrorClass {
    /// The QMP name of the class.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
        }
    }
}

/// What went wrong. The `Display` of an [`Error`] is QEMU's text.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The ID fails `id_wellformed`. QEMU: `Invalid job ID '<id>'`.
    InvalidId(String),
    /// Another job has this ID. QEMU: `Job ID '<id>' already in use`.
    IdInUse(String),
    /// A `job-*` command named no job. QEMU: `Job not found`.
    JobNotFound,
    /// A `block-job-*` command named no block job (class DeviceNotActive).
    /// QEMU: `Block job '<id>' not found`.
    BlockJobNotFound(String),
    /// `JobVerbTable` refuses the verb in this status. QEMU: `Job '<id>' in
    /// state '<status>' cannot accept command verb '<verb>'`.
    VerbRefused {
        /// The job.
        id: String,
        /// Its status when the verb arrived.
        status: JobStatus,
        /// The refused verb.
        verb: JobVerb,
    },
    /// Pause of a user-paused job. QEMU: `Job is already paused`.
    AlreadyPaused,
    /// Resume of a job that is not user-paused. QEMU: `Can't resume a job
    /// that was not paused`.
    NotPaused,
    /// `block-job-cancel` without `force` of a user-paused job. QEMU: `The
    /// block job for device '<device>' is currently paused`.
    BlockJobPaused(String),
    /// `complete` of a job whose driver cannot complete, or that was asked
    /// to cancel. QEMU: `The active block job '<id>' cannot be completed`.
    CannotComplete(String),
    /// A negative speed. QEMU: `Parameter 'speed' expects a non-negative value`.
    NegativeSpeed,
    /// `block-job-change` on a driver without `.change`. QEMU: `Job type
    /// does not support change`.
    ChangeUnsupported,
    /// The driver refused a verb with its own text (e.g. mirror's complete).
    Driver(String),
    /// `step` on a job that is not runnable at that time: a caller bug.
    NotRunnable(String),
    /// A status change `JobSTT` forbids: a bug (QEMU asserts).
    IllegalTransition {
        /// The job.
        id: String,
        /// Its status.
        from: JobStatus,
        /// The forbidden target.
        to: JobStatus,
    },
}

/// An error from the job layer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Error {
    kind: ErrorKind,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Error {
        Error { kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The QMP error class QEMU reports this with.
    pub fn class(&self) -> ErrorClass {
        match self.kind {
            ErrorKind::BlockJobNotFound(_) => ErrorClass::DeviceNotActive,
            _ => ErrorClass::GenericError,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::InvalidId(id) => write!(f, "Invalid job ID '{id}'"),
            ErrorKind::IdInUse(id) => write!(f, "Job ID '{id}' already in use"),
            ErrorKind::JobNotFound => write!(f, "Job not found"),
            ErrorKind::BlockJobNotFound(id) => write!(f, "Block job '{id}' not found"),
            ErrorKind::VerbRefused { id, status, verb } => {
                write!(
                    f,
                    "Job '{id}' in state '{status}' cannot accept command verb '{verb}'"
                )
            }
            ErrorKind::AlreadyPaused => write!(f, "Job is already paused"),
            ErrorKind::NotPaused => write!(f, "Can't resume a job that was not paused"),
            ErrorKind::BlockJobPaused(device) => {
                write!(f, "The block job for device '{device}' is currently paused")
            }
            ErrorKind::CannotComplete(id) => {
                write!(f, "The active block job '{id}' cannot be completed")
            }
            ErrorKind::NegativeSpeed => write!(f, "Parameter 'speed' expects a non-negative value"),
            ErrorKind::ChangeUnsupported => write!(f, "Job type does not support change"),
            ErrorKind::Driver(text) => f.write_str(text),
            ErrorKind::NotRunnable(what) => write!(f, "job is not runnable: {what}"),
            ErrorKind::IllegalTransition { id, from, to } => {
                write!(f, "job '{id}': illegal status transition {from} -> {to}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for job-layer results.
pub type Result<T> = std::result::Result<T, Error>;

/// A positive errno value, as QEMU's drivers return them negated.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Errno(pub i32);

impl Errno {
    /// A failed I/O request's errno, EIO when the error carries none
    /// (QEMU's requests fail with a negative errno, never without one).
    pub fn of_io(err: &std::io::Error) -> Errno {
        Errno(err.raw_os_error().unwrap_or(Errno::EIO.0))
    }

    /// EPERM.
    pub const EPERM: Errno = Errno(1);
    /// ENOENT.
    pub const ENOENT: Errno = Errno(2);
    /// EIO.
    pub const EIO: Errno = Errno(5);
    /// ENOMEM.
    pub const ENOMEM: Errno = Errno(12);
    /// EACCES.
    pub const EACCES: Errno = Errno(13);
    /// EBUSY.
    pub const EBUSY: Errno = Errno(16);
    /// EINVAL.
    pub const EINVAL: Errno = Errno(22);
    /// EFBIG.
    pub const EFBIG: Errno = Errno(27);
    /// ENOSPC.
    pub const ENOSPC: Errno = Errno(28);
    /// EROFS.
    pub const EROFS: Errno = Errno(30);
    /// ENOTSUP (= EOPNOTSUPP on Linux).
    pub const ENOTSUP: Errno = Errno(95);
    /// ECANCELED: what a force-cancelled job returns.
    pub const ECANCELED: Errno = Errno(125);

    /// glibc's `strerror` text, which QEMU uses when a job failed without
    /// an error message of its own.
    pub fn strerror(self) -> String {
        let text = match self {
            Errno::EPERM => "Operation not permitted",
            Errno::ENOENT => "No such file or directory",
            Errno::EIO => "Input/output error",
            Errno::ENOMEM => "Cannot allocate memory",
            Errno::EACCES => "Permission denied",
            Errno::EBUSY => "Device or resource busy",
            Errno::EINVAL => "Invalid argument",
            Errno::EFBIG => "File too large",
            Errno::ENOSPC => "No space left on device",
            Errno::EROFS => "Read-only file system",
            Errno::ENOTSUP => "Operation not supported",
            Errno::ECANCELED => "Operation canceled",
            Errno(other) => return format!("Unknown error {other}"),
        };
        text.to_string()
    }
}

/// Why a job's `run()` or `prepare()` failed: a return code and, when the
/// driver set one, its own error text (else the text is `strerror`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct JobFailure {
    /// The (positive) errno; QEMU's `job->ret` is its negation.
    pub errno: Errno,
    /// The driver's error text, if it set `errp`.
    pub message: Option<String>,
}

impl JobFailure {
    /// A failure reported as a bare return code.
    pub fn errno(errno: Errno) -> JobFailure {
        JobFailure {
            errno,
            message: None,
        }
    }

    /// A failed I/O request, reported by its errno ([`Errno::of_io`]).
    pub fn io(err: &std::io::Error) -> JobFailure {
        JobFailure::errno(Errno::of_io(err))
    }

    /// A failure with the driver's own text.
    pub fn with_message(errno: Errno, message: impl Into<String>) -> JobFailure {
        JobFailure {
            errno,
            message: Some(message.into()),
        }
    }

    /// The text QEMU reports: the driver's message or `strerror(errno)`.
    pub fn text(&self) -> String {
        self.message
            .clone()
            .unwrap_or_else(|| self.errno.strerror())
    }
}
