//! Per-node driver state: what a node's driver keeps besides the graph.

use std::collections::BTreeMap;
use std::sync::Arc;
use strata_filters::MirrorTopState;
use strata_formats::Image;
use strata_graph::NodeId;

/// One `inject-error` rule of a blkdebug node.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct InjectError {
    /// The event that triggers it (`read_aio`, `write_aio`, ...).
    pub event: String,
    /// The state the node must be in (0: any).
    pub state: u32,
    /// The errno to fail with.
    pub errno: i32,
    /// Only requests touching this sector (512 bytes) fail; `None`: any.
    pub sector: Option<u64>,
    /// Remove the rule after it fired once.
    pub once: bool,
    /// Fail at submission rather than at completion (no difference in a
    /// model without asynchronous completion).
    pub immediately: bool,
    /// Whether an event armed the rule (QEMU's `active_rules`).
    pub armed: bool,
}

/// One `set-state` rule of a blkdebug node.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct SetState {
    /// The event that triggers it.
    pub event: String,
    /// The state the node must be in (0: any).
    pub state: u32,
    /// The state to move to.
    pub new_state: u32,
}

/// What a node's driver keeps.
#[derive(Clone, Debug)]
// Format nodes dominate every graph; boxing their image would only add an
// indirection to every I/O.
#[allow(clippy::large_enum_variant)]
pub enum DriverState {
    /// `file`: the path of the opened file.
    File {
        /// The path as given in `filename`.
        path: String,
    },
    /// A format (`qcow2`, `raw`).
    Format {
        /// The open image's metadata.
        image: Image,
        /// `bs->auto_backing_file`.
        auto_backing_file: String,
    },
    /// `throttle`.
    Throttle {
        /// The throttle group's id.
        group: String,
    },
    /// `copy-on-read`.
    CopyOnRead {
        /// `bottom`, if given: copy only from the chain down to it.
        bottom: Option<NodeId>,
    },
    /// `blkdebug`.
    Blkdebug {
        /// `inject-error` rules, in order.
        inject: Vec<InjectError>,
        /// `set-state` rules, in order.
        set_state: Vec<SetState>,
        /// The current state (starts at 1).
        state: u32,
        /// `align`: the node's `request_alignment` (1 without it).
        align: u64,
    },
    /// `commit_top`.
    CommitTop,
    /// `mirror_top`.
    MirrorTop(MirrorTopState),
    /// `quorum`.
    Quorum {
        /// `vote-threshold`.
        threshold: u32,
    },
    /// `null-co` / `null-aio` (`BDRVNullState`).
    Null {
        /// `size` (default 1 GiB).
        length: u64,
        /// `read-zeroes`: block status says zero.
        read_zeroes: bool,
    },
    /// While a format's image is borrowed for I/O.
    Busy,
}

/// Every node's driver state, by node. Each state sits behind an `Arc`
/// shared by clones until one of them changes it: a simulated world is
/// cloned for every choice it explores, and a step changes the state of
/// one or two nodes, not of every node.
#[derive(Clone, Debug, Default)]
pub(crate) struct DriverStates(BTreeMap<NodeId, Arc<DriverState>>);

impl DriverStates {
    pub(crate) fn get(&self, node: &NodeId) -> Option<&DriverState> {
        self.0.get(node).map(Arc::as_ref)
    }

    /// The node's state, copied first if a clone shares it.
    pub(crate) fn get_mut(&mut self, node: &NodeId) -> Option<&mut DriverState> {
        self.0.get_mut(node).map(Arc::make_mut)
    }

    /// Sets the node's state; the one it replaces, if any.
    pub(crate) fn insert(&mut self, node: NodeId, state: DriverState) -> Option<DriverState> {
        self.0
            .insert(node, Arc::new(state))
            .map(Arc::unwrap_or_clone)
    }

    pub(crate) fn remove(&mut self, node: &NodeId) -> Option<DriverState> {
        self.0.remove(node).map(Arc::unwrap_or_clone)
    }

    pub(crate) fn contains_key(&self, node: &NodeId) -> bool {
        self.0.contains_key(node)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &NodeId> {
        self.0.keys()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &DriverState> {
        self.0.values().map(Arc::as_ref)
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&NodeId, &DriverState) -> bool) {
        self.0.retain(|node, state| keep(node, state));
    }
}
