//! The permission refresh of QEMU 10.0 (`bdrv_list_refresh_perms`): a
//! topologically sorted subgraph, and for each node the pairwise parent
//! check, the node's own checks, and the new permissions of its children.

use crate::error::{Error, ErrorKind, Result};
use crate::{PermHooks, ReopenQueue};
use std::collections::BTreeSet;
use strata_graph::{Graph, NodeId, Perm};

/// `bdrv_topological_dfs` over several starts: every node comes before all
/// of its descendants; a node reachable from several starts appears once.
pub(crate) fn topological(graph: &Graph, starts: &[NodeId]) -> Vec<NodeId> {
    let mut found = BTreeSet::new();
    // QEMU prepends to a list; pushing and reversing once is the same order.
    let mut reversed = Vec::new();
    for &start in starts {
        dfs(graph, start, &mut found, &mut reversed);
    }
    reversed.reverse();
    reversed
}

fn dfs(graph: &Graph, node: NodeId, found: &mut BTreeSet<NodeId>, reversed: &mut Vec<NodeId>) {
    if !graph.contains_node(node) || !found.insert(node) {
        return;
    }
    for &edge in graph.node(node).map(|n| n.children()).unwrap_or(&[]) {
        if let Ok(e) = graph.edge(edge) {
            dfs(graph, e.child(), found, reversed);
        }
    }
    reversed.push(node);
}

/// Refreshes the subtrees of `starts`; the first problem found is the
/// error, and the graph is then left half-updated for the caller to roll
/// back.
pub(crate) fn refresh(
    graph: &mut Graph,
    hooks: &dyn PermHooks,
    starts: &[NodeId],
    queue: &ReopenQueue,
) -> Result<()> {
    for node in topological(graph, starts) {
        check_parents(graph, node)?;
        refresh_node(graph, hooks, node, queue)?;
    }
    Ok(())
}

/// The cumulative permissions of a node: the union of what its parents
/// take, the intersection of what they share.
pub fn cumulative_perms(graph: &Graph, node: NodeId) -> (Perm, Perm) {
    let mut perm = Perm::NONE;
    let mut shared = Perm::ALL;
    for &edge in graph.node(node).map(|n| n.parents()).unwrap_or(&[]) {
        if let Ok(e) = graph.edge(edge) {
            perm |= e.perm;
            shared &= e.shared;
        }
    }
    (perm, shared)
}

/// `bdrv_parent_perms_conflict`: every ordered pair of parent links, in
/// list order, must have `b.perm ⊆ a.shared`.
fn check_parents(graph: &Graph, node: NodeId) -> Result<()> {
    let parents = graph.node(node)?.parents();
    for &a in parents {
        for &b in parents {
            if a == b {
                continue;
            }
            let (ea, eb) = (graph.edge(a)?, graph.edge(b)?);
            let disputed = eb.perm - ea.shared;
            if !disputed.is_empty() {
                return Err(Error::new(ErrorKind::Conflict {
                    node: graph.name(node).to_string(),
                    perms: disputed.message_names(),
                    user: graph.parent_description(b)?,
                    user_link: eb.name().to_string(),
                    other: graph.parent_description(a)?,
                    other_link: ea.name().to_string(),
                }));
            }
        }
    }
    Ok(())
}

/// `bdrv_node_refresh_perm`: writability, the driver's check, then the
/// children's new permissions.
fn refresh_node(
    graph: &mut Graph,
    hooks: &dyn PermHooks,
    node: NodeId,
    queue: &ReopenQueue,
) -> Result<()> {
    let (perm, shared) = cumulative_perms(graph, node);
    if perm.intersects(Perm::WRITE | Perm::WRITE_UNCHANGED) && !queue.writable_after(graph, node) {
        return Err(Error::new(if graph.node(node)?.read_only {
            ErrorKind::ReadOnly
        } else {
            ErrorKind::ReadOnlyAfterReopen(graph.name(node).to_string())
        }));
    }
    hooks.check_perm(graph, node, perm, shared)?;
    for edge in graph.node(node)?.children().to_vec() {
        let e = graph.edge(edge)?;
        let (nperm, mut nshared) = hooks.child_perm(graph, node, e, perm, shared, queue);
        if hooks.force_share(graph, e.child()) {
            nshared = Perm::ALL;
        }
        graph.set_perms(edge, nperm, nshared)?;
    }
    Ok(())
}

/// Recomputes every node edge's permissions from scratch, without checks:
/// the reference a stored graph must equal after every operation.
pub fn recompute_all(graph: &Graph, hooks: &dyn PermHooks) -> Graph {
    let mut fresh = graph.clone();
    let starts: Vec<NodeId> = graph.nodes().collect();
    let queue = ReopenQueue::default();
    for node in topological(graph, &starts) {
        let (perm, shared) = cumulative_perms(&fresh, node);
        for edge in fresh
            .node(node)
            .map(|n| n.children().to_vec())
            .unwrap_or_default()
        {
            let Ok(e) = fresh.edge(edge) else { continue };
            let (nperm, mut nshared) = hooks.child_perm(&fresh, node, e, perm, shared, &queue);
            if hooks.force_share(&fresh, e.child()) {
                nshared = Perm::ALL;
            }
            // Edges sit behind `Arc`s shared with `graph`: writing the
            // permissions an edge already has would copy it for nothing
            // (the stored graph is usually right).
            if (e.perm, e.shared) != (nperm, nshared) {
                let _ = fresh.set_perms(edge, nperm, nshared);
            }
        }
    }
    fresh
}
