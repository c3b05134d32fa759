//! Each driver's `.bdrv_child_perm`, as QEMU 10.0 implements it.

use crate::driver::Driver;
use strata_graph::{Edge, Graph, NodeId, OptValue, Perm};
use strata_perm::{default_child_perm, PermHooks, ReopenQueue};

/// The run-time state of a `mirror_top` node that its permissions depend on
/// (`MirrorBDSOpaque`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct MirrorTopState {
    /// The job is being stopped: forward nothing to the real image.
    pub stop: bool,
    /// The mirror is an active commit: no consistent read, share writes.
    pub is_commit: bool,
}

/// [`PermHooks`] that dispatch on each node's driver. `mirror_top` asks
/// `mirror_state` for its run-time flags.
pub struct DriverPerms<F: Fn(NodeId) -> MirrorTopState> {
    mirror_state: F,
}

impl<F: Fn(NodeId) -> MirrorTopState> DriverPerms<F> {
    /// Hooks whose `mirror_top` nodes report their state through `mirror_state`.
    pub fn new(mirror_state: F) -> DriverPerms<F> {
        DriverPerms { mirror_state }
    }
}

/// Hooks for graphs without mirror jobs.
pub fn driver_perms() -> DriverPerms<fn(NodeId) -> MirrorTopState> {
    DriverPerms::new(|_| MirrorTopState::default())
}

impl<F: Fn(NodeId) -> MirrorTopState> PermHooks for DriverPerms<F> {
    fn child_perm(
        &self,
        graph: &Graph,
        parent: NodeId,
        edge: &Edge,
        perm: Perm,
        shared: Perm,
        queue: &ReopenQueue,
    ) -> (Perm, Perm) {
        let default = || default_child_perm(graph, parent, edge.role(), perm, shared, queue);
        let Ok(node) = graph.node(parent) else {
            return default();
        };
        match Driver::from_name(node.driver()) {
            Some(Driver::Raw) => raw_child_perm(default(), perm),
            Some(Driver::CopyOnRead) => cor_child_perm(perm, shared),
            Some(Driver::CommitTop) => (Perm::NONE, Perm::ALL),
            Some(Driver::MirrorTop) => mirror_top_child_perm((self.mirror_state)(parent), default),
            Some(Driver::Quorum) => {
                quorum_child_perm(perm, shared, node.options.get("rewrite-corrupted"))
            }
            Some(Driver::Blkdebug) => blkdebug_child_perm(
                default(),
                node.options.get("take-child-perms"),
                node.options.get("unshare-child-perms"),
            ),
            _ => default(),
        }
    }
}

/// `raw_child_perm`: the defaults, but WRITE and RESIZE only when the
/// parent itself needs them.
fn raw_child_perm((nperm, nshared): (Perm, Perm), parent_perm: Perm) -> (Perm, Perm) {
    let forwarded = parent_perm & (Perm::WRITE | Perm::RESIZE);
    ((nperm - (Perm::WRITE | Perm::RESIZE)) | forwarded, nshared)
}

/// `cor_child_perm`: forward consistent read, write and resize; always take
/// write-unchanged (copy-on-read writes); share write-unchanged.
fn cor_child_perm(perm: Perm, shared: Perm) -> (Perm, Perm) {
    let passthrough = Perm::CONSISTENT_READ | Perm::WRITE | Perm::RESIZE;
    let unchanged = Perm::ALL - passthrough;
    (
        (perm & passthrough) | Perm::WRITE_UNCHANGED,
        (shared & passthrough) | unchanged,
    )
}

/// `quorum_child_perm`: pass permissions through (plus write when corrupted
/// children are rewritten), but never share write or resize, which would
/// let the children drift apart.
fn quorum_child_perm(
    perm: Perm,
    shared: Perm,
    rewrite_corrupted: Option<&OptValue>,
) -> (Perm, Perm) {
    let mut nperm = perm & Perm::ALL;
    if matches!(rewrite_corrupted, Some(OptValue::Bool(true))) {
        nperm |= Perm::WRITE;
    }
    (
        nperm,
        shared & (Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED),
    )
}

/// `bdrv_mirror_top_child_perm`.
fn mirror_top_child_perm(
    state: MirrorTopState,
    default: impl Fn() -> (Perm, Perm),
) -> (Perm, Perm) {
    if state.stop {
        return (Perm::NONE, Perm::ALL);
    }
    let (mut nperm, mut nshared) = default();
    if state.is_commit {
        nperm = nperm - Perm::CONSISTENT_READ;
        nshared |= Perm::WRITE;
    }
    (nperm, nshared)
}

/// `blkdebug_child_perm`: the defaults plus `take-child-perms`, minus
/// `unshare-child-perms`.
fn blkdebug_child_perm(
    (nperm, nshared): (Perm, Perm),
    take: Option<&OptValue>,
    unshare: Option<&OptValue>,
) -> (Perm, Perm) {
    (nperm | perm_list(take), nshared - perm_list(unshare))
}

fn perm_list(value: Option<&OptValue>) -> Perm {
    let Some(OptValue::List(items)) = value else {
        return Perm::NONE;
    };
    items
        .iter()
        .filter_map(|item| match item {
            OptValue::Str(name) => Perm::ALL
                .iter_named()
                .find(|(label, _)| label == name)
                .map(|(_, bit)| bit),
            _ => None,
        })
        .fold(Perm::NONE, |acc, bit| acc | bit)
}
