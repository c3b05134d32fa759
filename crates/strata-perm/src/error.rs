//! Typed errors whose `Display` is QEMU 10.0's exact text.

use std::fmt;

/// What was refused. Every variant's `Display` is the message QEMU 10.0
/// gives for the same refusal.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Two parents of `node` disagree (`bdrv_a_allow_b`): `Permission
    /// conflict on node '<node>': permissions '<perms>' are both required by
    /// <user> (uses node '<node>' as '<link>' child) and unshared by <other>
    /// (uses node '<node>' as '<other link>' child).`
    Conflict {
        /// The node both parents use.
        node: String,
        /// The permissions in dispute, as `bdrv_perm_names` prints them.
        perms: String,
        /// The parent that needs them (`get_parent_desc`).
        user: String,
        /// That parent's child name.
        user_link: String,
        /// The parent that does not share them.
        other: String,
        /// That parent's child name.
        other_link: String,
    },
    /// A writer on a read-only node that stays read-only: `Block node is
    /// read-only`.
    ReadOnly,
    /// A writer on a node that a pending reopen makes read-only:
    /// `Read-only block node '<node>' cannot support read-write users`.
    ReadOnlyAfterReopen(String),
    /// A driver's own permission check failed (its message).
    Driver(String),
    /// A link in a chain range is frozen: `Cannot change '<link>' link from
    /// '<parent>' to '<child>'`.
    ChainFrozen {
        /// The child name of the frozen link.
        link: String,
        /// Its parent node.
        parent: String,
        /// Its child node.
        child: String,
    },
    /// A link points at a `never_freeze` node: `Cannot freeze '<link>' link
    /// to '<child>'`.
    NeverFreeze {
        /// The child name of the link.
        link: String,
        /// The node it points to.
        child: String,
    },
    /// Setting `backing`/`file` over a frozen link: `Cannot change frozen
    /// '<link>' link from '<parent>' to '<child>'`.
    FrozenLinkChange {
        /// The child name of the frozen link.
        link: String,
        /// Its parent node.
        parent: String,
        /// Its current child node.
        child: String,
    },
    /// Replacing a node whose parent link is frozen: `Cannot change
    /// '<link>' link to '<node>'`.
    FrozenReplace {
        /// The child name of the frozen link.
        link: String,
        /// The node being replaced.
        node: String,
    },
    /// A node replacement that must move every parent meets one that may
    /// not move (a job link, or a link that would make a cycle): `Should not
    /// change '<link>' link to '<node>'`.
    ShouldNotChange {
        /// The child name of the link that would have to move.
        link: String,
        /// The node being replaced.
        node: String,
    },
    /// `Driver '<driver>' of node '<node>' does not support backing files`.
    NoBackingSupport {
        /// The parent's driver.
        driver: String,
        /// The parent node.
        node: String,
    },
    /// `Cannot set file child to format node without file child`.
    NoFileChild,
    /// An operation is blocked: `Node '<name>' is busy: <reason>`.
    Busy {
        /// The device name of the node if it is a named device's root,
        /// else its node name.
        name: String,
        /// The blocker's reason, e.g. `block device is in use by block job:
        /// stream`.
        reason: String,
    },
    /// A structural error from strata-graph (its own text).
    Graph(strata_graph::Error),
}

/// A refused permission, freeze or graph operation.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Error {
    // Boxed: the texts make the kind large, and results travel a lot.
    kind: Box<ErrorKind>,
    hint: Option<String>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Error {
        Error {
            kind: Box::new(kind),
            hint: None,
        }
    }

    /// What was refused.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The driver's `error_append_hint` line, if it gave one (not part of
    /// `Display`: QMP replies never carry hints).
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

/// A driver's refusal of permissions (`.bdrv_check_perm` failing): QEMU's
/// message and the hint QEMU appends to it, if any.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Refusal {
    /// The error text.
    pub message: String,
    /// The hint line (with its newline), as `error_append_hint` adds it.
    pub hint: Option<String>,
}

impl From<String> for Refusal {
    fn from(message: String) -> Refusal {
        Refusal {
            message,
            hint: None,
        }
    }
}

impl From<&str> for Refusal {
    fn from(message: &str) -> Refusal {
        Refusal::from(message.to_string())
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Error {
        Error {
            kind: Box::new(ErrorKind::Driver(refusal.message)),
            hint: refusal.hint,
        }
    }
}

impl From<strata_graph::Error> for Error {
    fn from(err: strata_graph::Error) -> Error {
        Error::new(ErrorKind::Graph(err))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.kind {
            ErrorKind::Conflict { node, perms, user, user_link, other, other_link } => write!(
                f,
                "Permission conflict on node '{node}': permissions '{perms}' are both required by {user} \
                 (uses node '{node}' as '{user_link}' child) and unshared by {other} (uses node '{node}' \
                 as '{other_link}' child)."
            ),
            ErrorKind::ReadOnly => write!(f, "Block node is read-only"),
            ErrorKind::ReadOnlyAfterReopen(node) => {
                write!(f, "Read-only block node '{node}' cannot support read-write users")
            }
            ErrorKind::Driver(msg) => write!(f, "{msg}"),
            ErrorKind::ChainFrozen { link, parent, child } => {
                write!(f, "Cannot change '{link}' link from '{parent}' to '{child}'")
            }
            ErrorKind::NeverFreeze { link, child } => write!(f, "Cannot freeze '{link}' link to '{child}'"),
            ErrorKind::FrozenLinkChange { link, parent, child } => {
                write!(f, "Cannot change frozen '{link}' link from '{parent}' to '{child}'")
            }
            ErrorKind::FrozenReplace { link, node } => write!(f, "Cannot change '{link}' link to '{node}'"),
            ErrorKind::ShouldNotChange { link, node } => write!(f, "Should not change '{link}' link to '{node}'"),
            ErrorKind::NoBackingSupport { driver, node } => {
                write!(f, "Driver '{driver}' of node '{node}' does not support backing files")
            }
            ErrorKind::NoFileChild => write!(f, "Cannot set file child to format node without file child"),
            ErrorKind::Busy { name, reason } => write!(f, "Node '{name}' is busy: {reason}"),
            ErrorKind::Graph(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
