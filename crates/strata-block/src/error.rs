//! The block layer's error: QEMU's class and text.

use std::fmt;

/// QMP error classes the block layer produces.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ErrorClass {
    /// `GenericError`: nearly everything.
    Generic,
    /// `DeviceNotFound`: e.g. `block-commit` on an unknown device.
    DeviceNotFound,
    /// `DeviceNotActive`: `block-job-*` on an unknown job.
    DeviceNotActive,
}

impl ErrorClass {
    /// The QMP name of the class.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Generic => "GenericError",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
        }
    }
}

/// A refused block-layer operation. Its `Display` is QEMU's text.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Error {
    class: ErrorClass,
    message: String,
    /// `error_append_hint`'s line: the command line prints it after the
    /// message, QMP replies never carry it.
    hint: Option<String>,
}

impl Error {
    /// A `GenericError` with `message`.
    pub fn generic(message: impl Into<String>) -> Error {
        Error::with_class(ErrorClass::Generic, message)
    }

    /// An error of `class` with `message`.
    pub fn with_class(class: ErrorClass, message: impl Into<String>) -> Error {
        Error {
            class,
            message: message.into(),
            hint: None,
        }
    }

    /// The hint QEMU appends to the message, if any (with its newline).
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The error without its hint: where QEMU's `error_setg` on
    /// `&error_fatal` exits before the hint can be appended.
    pub fn without_hint(mut self) -> Error {
        self.hint = None;
        self
    }

    /// The QMP error class.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// Prefixes the text, as QEMU's `error_prepend` does.
    pub fn prepend(mut self, prefix: &str) -> Error {
        self.message.insert_str(0, prefix);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<strata_perm::Error> for Error {
    fn from(err: strata_perm::Error) -> Error {
        let hint = err.hint().map(str::to_string);
        Error {
            hint,
            ..Error::generic(err.to_string())
        }
    }
}

impl From<strata_graph::Error> for Error {
    fn from(err: strata_graph::Error) -> Error {
        Error::generic(err.to_string())
    }
}

impl From<strata_jobs::Error> for Error {
    fn from(err: strata_jobs::Error) -> Error {
        let class = match err.class().as_str() {
            "DeviceNotActive" => ErrorClass::DeviceNotActive,
            "DeviceNotFound" => ErrorClass::DeviceNotFound,
            _ => ErrorClass::Generic,
        };
        Error::with_class(class, err.to_string())
    }
}

/// Shorthand for block-layer results.
pub type Result<T> = std::result::Result<T, Error>;

/// `strerror` for the errnos the block layer meets.
pub fn strerror(errno: i32) -> &'static str {
    match errno {
        1 => "Operation not permitted",
        2 => "No such file or directory",
        5 => "Input/output error",
        13 => "Permission denied",
        20 => "Not a directory",
        21 => "Is a directory",
        22 => "Invalid argument",
        27 => "File too large",
        28 => "No space left on device",
        30 => "Read-only file system",
        95 => "Operation not supported",
        125 => "Operation canceled",
        _ => "Unknown error",
    }
}
