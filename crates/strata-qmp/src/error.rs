//! The error a QMP command answers with: `{"class": ..., "desc": ...}`.

use std::fmt;

/// QEMU's `QapiErrorClass`: the only part of an error a client may act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorClass {
    /// Everything that has no class of its own (almost every error).
    GenericError,
    /// The command does not exist, or is not available in this state
    /// (before and after capabilities negotiation).
    CommandNotFound,
    /// A block job was looked up by device or id and not found
    /// (`block-job-*` commands).
    DeviceNotActive,
    /// A device was looked up by name and not found (e.g. `block-commit`).
    DeviceNotFound,
    /// Missing KVM capability (never raised by Strata; part of the enum).
    KvmMissingCap,
}

impl ErrorClass {
    /// The class name as QEMU prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::KvmMissingCap => "KVMMissingCap",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed command: QEMU's error class and its human-readable description.
///
/// `desc` is for humans, but byte-level clients (and the conformance
/// harness) compare it, so every text this crate produces is QEMU's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QmpError {
    /// The error class.
    pub class: ErrorClass,
    /// The description, exactly as QEMU words it.
    pub desc: String,
    /// `error_append_hint`'s text (with its newline): printed by the
    /// command line after the description, never sent in a QMP reply.
    pub hint: Option<String>,
}

impl QmpError {
    /// A `GenericError` with the given description (QEMU's `error_setg`).
    pub fn generic(desc: impl Into<String>) -> QmpError {
        QmpError {
            class: ErrorClass::GenericError,
            desc: desc.into(),
            hint: None,
        }
    }

    /// An error of the given class (QEMU's `error_set`).
    pub fn new(class: ErrorClass, desc: impl Into<String>) -> QmpError {
        QmpError {
            class,
            desc: desc.into(),
            hint: None,
        }
    }
}

impl fmt::Display for QmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.desc)
    }
}

impl std::error::Error for QmpError {}
