//! What a job's step may touch, for an explorer's partial-order reduction
//! (`strata_sim::reduction`): two steps whose footprints are disjoint
//! commute.

use crate::files::Files;
use crate::jobs::BlockJob;
use crate::layer::BlockLayer;
use std::collections::BTreeSet;
use strata_graph::{Graph, NodeId, Parent, Role};

/// The drivers whose I/O touches nothing but the node's own state and its
/// own file: no throttle group, no breakpoint state (blkdebug), no mirror
/// target, no shared I/O clock. A footprint through any other driver is
/// unknown.
const SELF_CONTAINED_DRIVERS: [&str; 4] = ["file", "raw", "qcow2", "copy-on-read"];

impl<F: Files> BlockLayer<F> {
    /// The names of the nodes a step of stream job `id` inside its copy
    /// loop may read or write: the nodes its BlockBackend and its job
    /// attach to (`block_job_add_bdrv`: the filter, the top and every
    /// intermediate node down to the base, excluded) and what those nodes
    /// hold below them other than their backing links (their `file`s: a
    /// stream reads and writes no deeper than its base). `None` when it is
    /// unknown: another kind of job, or a node whose driver shares state
    /// with other nodes (throttling, blkdebug's breakpoints, active
    /// commit's mirror target and I/O clock).
    pub fn stream_footprint(&self, id: &str) -> Option<BTreeSet<String>> {
        let BlockJob::Stream(stream) = self.jobs.driver(id)? else {
            return None;
        };
        let g = self.core.bg.graph();
        let mut pending = Vec::new();
        for root in [stream.blk, stream.job_root] {
            pending.extend(children(g, Parent::Root(root))?);
        }
        let mut names = BTreeSet::new();
        while let Some(node) = pending.pop() {
            let n = g.node(node).ok()?;
            if !SELF_CONTAINED_DRIVERS.contains(&n.driver()) {
                return None;
            }
            if names.insert(n.name().to_string()) {
                pending.extend(non_backing_children(g, node)?);
            }
        }
        Some(names)
    }
}

fn children(g: &Graph, parent: Parent) -> Option<Vec<NodeId>> {
    let edges = g.children_of(parent).ok()?;
    edges
        .iter()
        .map(|&e| g.edge(e).ok().map(|e| e.child()))
        .collect()
}

fn non_backing_children(g: &Graph, node: NodeId) -> Option<Vec<NodeId>> {
    let edges = g.children_of(Parent::Node(node)).ok()?;
    let mut nodes = Vec::new();
    for &e in edges {
        let edge = g.edge(e).ok()?;
        if !edge.role().contains(Role::COW) {
            nodes.push(edge.child());
        }
    }
    Some(nodes)
}
