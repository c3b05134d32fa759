//! `bdrv_default_perms` and the per-driver hook that may override it.

use crate::{Refusal, ReopenQueue};
use strata_graph::{Edge, Graph, NodeId, Perm, Role};

/// `DEFAULT_PERM_PASSTHROUGH`: every permission a filter forwards.
const PASSTHROUGH: Perm = Perm::ALL;
/// `DEFAULT_PERM_UNCHANGED`: always shared by filters; empty since 7.0.
const UNCHANGED: Perm = Perm::NONE;

/// What drivers decide about permissions. Filters, formats and jobs
/// implement it to override QEMU's defaults where their driver does.
pub trait PermHooks {
    /// `.bdrv_child_perm`: the permissions node `parent` takes and shares on
    /// `edge`, given the parent's cumulative perms. The default is
    /// [`default_child_perm`].
    fn child_perm(
        &self,
        graph: &Graph,
        parent: NodeId,
        edge: &Edge,
        perm: Perm,
        shared: Perm,
        queue: &ReopenQueue,
    ) -> (Perm, Perm) {
        default_child_perm(graph, parent, edge.role(), perm, shared, queue)
    }

    /// `.bdrv_check_perm`: a driver's own check of a node's cumulative
    /// permissions (e.g. file locking). The default accepts.
    fn check_perm(
        &self,
        _graph: &Graph,
        _node: NodeId,
        _perm: Perm,
        _shared: Perm,
    ) -> Result<(), Refusal> {
        Ok(())
    }

    /// `bs->force_share`: every link to this node shares everything.
    fn force_share(&self, _graph: &Graph, _node: NodeId) -> bool {
        false
    }
}

/// QEMU's defaults everywhere: for users of the graph without drivers.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultPerms;

impl PermHooks for DefaultPerms {}

/// `bdrv_default_perms` (QEMU 10.0): the branch is chosen by the role.
pub fn default_child_perm(
    graph: &Graph,
    parent: NodeId,
    role: Role,
    perm: Perm,
    shared: Perm,
    queue: &ReopenQueue,
) -> (Perm, Perm) {
    if role.contains(Role::FILTERED) {
        filter_default(perm, shared)
    } else if role.contains(Role::COW) {
        cow_default(perm, shared)
    } else if role.intersects(Role::DATA | Role::METADATA) {
        storage_default(role, perm, shared, queue.writable_after(graph, parent))
    } else {
        // Job and root links carry role 0 and never reach a driver hook.
        (perm, shared)
    }
}

/// `bdrv_filter_default_perms`: pass everything through.
pub fn filter_default(perm: Perm, shared: Perm) -> (Perm, Perm) {
    (perm & PASSTHROUGH, (shared & PASSTHROUGH) | UNCHANGED)
}

/// `bdrv_default_perms_for_cow`: only consistent read is ever taken from a
/// backing file; writes and resizes are shared if the parent shares writes.
fn cow_default(perm: Perm, shared: Perm) -> (Perm, Perm) {
    let nperm = perm & Perm::CONSISTENT_READ;
    let mut nshared = if shared.contains(Perm::WRITE) {
        Perm::WRITE | Perm::RESIZE
    } else {
        Perm::NONE
    };
    nshared |= Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED;
    (nperm, nshared)
}

/// `bdrv_default_perms_for_storage`: metadata needs consistent reads (and
/// writes on a writable parent) and forbids others to write or resize.
fn storage_default(role: Role, perm: Perm, shared: Perm, parent_writable: bool) -> (Perm, Perm) {
    let (mut perm, mut shared) = filter_default(perm, shared);
    if role.contains(Role::METADATA) {
        if parent_writable {
            perm |= Perm::WRITE | Perm::RESIZE;
        }
        perm |= Perm::CONSISTENT_READ;
        shared = shared - (Perm::WRITE | Perm::RESIZE);
    }
    if role.contains(Role::DATA) {
        shared = shared - Perm::RESIZE;
        if perm.contains(Perm::WRITE_UNCHANGED) {
            perm |= Perm::WRITE;
        }
        if perm.contains(Perm::WRITE) {
            perm |= Perm::RESIZE;
        }
    }
    (perm, shared)
}
