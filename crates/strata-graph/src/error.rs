//! The graph's typed errors.

use std::fmt;

/// What went wrong; the `Display` of an [`Error`] is QEMU's text where QEMU
/// has one.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A user node name fails `id_wellformed` (letter first, then
    /// alphanumerics or `-._`). QEMU: `Invalid node-name: '<name>'`.
    InvalidNodeName(String),
    /// A node name has 32 or more characters. QEMU: `Node name too long`.
    NodeNameTooLong,
    /// The node name is taken. QEMU: `Duplicate nodes with node-name='<name>'`.
    DuplicateNodeName(String),
    /// Attaching would make a node its own descendant. QEMU: `Making
    /// '<child>' a <name> child of '<parent>' would create a cycle`.
    Cycle {
        /// The would-be child's node name.
        child: String,
        /// The child name of the link (`backing`, `file`, ...).
        link: String,
        /// The would-be parent's node name.
        parent: String,
    },
    /// An id that names nothing (any more): a caller bug, never QEMU's.
    StaleId,
    /// A frozen link was about to be removed or retargeted without the
    /// permission layer's checks: a caller bug.
    FrozenLink(String),
    /// A node still has parents or a root still has children where none
    /// may be left: a caller bug.
    InUse(String),
}

/// An error from a graph operation.
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::InvalidNodeName(name) => write!(f, "Invalid node-name: '{name}'"),
            ErrorKind::NodeNameTooLong => write!(f, "Node name too long"),
            ErrorKind::DuplicateNodeName(name) => {
                write!(f, "Duplicate nodes with node-name='{name}'")
            }
            ErrorKind::Cycle {
                child,
                link,
                parent,
            } => {
                write!(
                    f,
                    "Making '{child}' a {link} child of '{parent}' would create a cycle"
                )
            }
            ErrorKind::StaleId => write!(f, "stale or unknown graph id"),
            ErrorKind::FrozenLink(name) => write!(f, "link '{name}' is frozen"),
            ErrorKind::InUse(what) => write!(f, "{what} is still in use"),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for graph results.
pub type Result<T> = std::result::Result<T, Error>;
