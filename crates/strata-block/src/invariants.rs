//! Invariants a simulator checks after every step.

use crate::files::Files;
use crate::layer::BlockLayer;
use crate::state::{DriverState, DriverStates};
use strata_filters::{DriverPerms, MirrorTopState};
use strata_graph::{EdgeId, Graph, NodeId, Parent};

/// What a passed [`BlockLayer::check_invariants`] depended on: the graph
/// (a clone, sharing every node and edge) and, per node with driver state,
/// what the permission hooks read of it. A layer that still shares all of
/// it passes again: the check is a function of these alone.
#[derive(Clone, Debug)]
pub struct CheckedInvariants {
    graph: Graph,
    drivers: Vec<(NodeId, Option<MirrorTopState>)>,
}

impl CheckedInvariants {
    fn of(graph: &Graph, state: &DriverStates) -> CheckedInvariants {
        CheckedInvariants {
            graph: graph.clone(),
            drivers: state.keys().map(|&n| (n, mirror_top(state, n))).collect(),
        }
    }

    fn still_holds(&self, graph: &Graph, state: &DriverStates) -> bool {
        self.graph.shares_all(graph)
            && self.drivers.len() == state.len()
            && self
                .drivers
                .iter()
                .zip(state.keys())
                .all(|(&(n, mirror), &m)| n == m && mirror == mirror_top(state, m))
    }
}

fn mirror_top(state: &DriverStates, node: NodeId) -> Option<MirrorTopState> {
    match state.get(&node) {
        Some(DriverState::MirrorTop(s)) => Some(*s),
        _ => None,
    }
}

impl<F: Files> BlockLayer<F> {
    /// [`BlockLayer::check_invariants`], skipped when `last` (what the
    /// previous passed check of this layer or of the one it was cloned
    /// from depended on) still holds; `last` then records this check.
    pub fn check_invariants_since(
        &self,
        last: &mut Option<CheckedInvariants>,
    ) -> Result<(), String> {
        let (graph, state) = (self.core.bg.graph(), &self.core.state);
        if last.as_ref().is_some_and(|c| c.still_holds(graph, state)) {
            return Ok(());
        }
        *last = None;
        self.check_invariants()?;
        *last = Some(CheckedInvariants::of(graph, state));
        Ok(())
    }

    /// Checks what must hold between any two operations: every edge's
    /// stored permissions equal a recomputation from scratch with the
    /// drivers' hooks (`strata_perm::recompute_all`), no edge points to or
    /// from a missing node, and every node has driver state and vice
    /// versa. The error says what broke.
    pub fn check_invariants(&self) -> Result<(), String> {
        let g = self.core.bg.graph();
        let state = &self.core.state;
        let hooks = DriverPerms::new(|node| match state.get(&node) {
            Some(DriverState::MirrorTop(s)) => *s,
            _ => MirrorTopState::default(),
        });
        let fresh = strata_perm::recompute_all(g, &hooks);
        let mut edges: Vec<EdgeId> = Vec::new();
        for node in g.nodes() {
            let n = g.node(node).map_err(|e| format!("node {node:?}: {e}"))?;
            edges.extend(n.children());
            for &p in n.parents() {
                let e = g
                    .edge(p)
                    .map_err(|e| format!("dangling parent edge of {}: {e}", n.name()))?;
                if e.child() != node {
                    return Err(format!("parent edge of {} points elsewhere", n.name()));
                }
            }
            if !state.contains_key(&node) {
                return Err(format!("node {} has no driver state", n.name()));
            }
        }
        for root in g.roots() {
            edges.extend(
                g.children_of(Parent::Root(root))
                    .map_err(|e| e.to_string())?,
            );
        }
        for edge in edges {
            let e = g.edge(edge).map_err(|e| format!("dangling edge: {e}"))?;
            let child = g
                .node(e.child())
                .map_err(|_| format!("edge {} points to a deleted node", e.name()))?;
            let f = fresh.edge(edge).map_err(|e| e.to_string())?;
            if (e.perm, e.shared) != (f.perm, f.shared) {
                return Err(format!(
                    "edge {} -> {}: stored perms {:?}/{:?}, recomputed {:?}/{:?}",
                    e.name(),
                    child.name(),
                    e.perm,
                    e.shared,
                    f.perm,
                    f.shared
                ));
            }
        }
        if let Some(node) = state.keys().find(|n| g.node(**n).is_err()) {
            return Err(format!("driver state for deleted node {node:?}"));
        }
        Ok(())
    }

    /// The graph's shape between two operations: every filter has exactly
    /// one child (a filter with none serves no I/O; with two, QEMU's
    /// `bdrv_filter_child` is ambiguous), and every node without a parent
    /// is one the monitor owns (anything else is unreachable: a leak). The
    /// error starts with the name of the property that broke
    /// (`filter-one-child`, `no-orphans`). QEMU 10.0 itself breaks the
    /// first for a while: a stream's dropped filter has no child until the
    /// job is freed. So this is a property the simulator reports per
    /// policy, not one of [`BlockLayer::check_invariants`].
    pub fn check_structure(&self) -> Result<(), String> {
        let g = self.core.bg.graph();
        for node in g.nodes() {
            let n = g.node(node).map_err(|e| format!("node {node:?}: {e}"))?;
            if n.traits().is_filter && n.children().len() != 1 {
                return Err(format!(
                    "filter-one-child: filter '{}' has {} children",
                    n.name(),
                    n.children().len()
                ));
            }
            if n.parents().is_empty() && !self.core.monitor.contains(&node) {
                return Err(format!(
                    "no-orphans: node '{}' has no parent and the monitor does not own it",
                    n.name()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{BlockLayer, MemFiles};
    use strata_filters::Driver;
    use strata_graph::NodeSpec;

    fn add(layer: &mut BlockLayer<MemFiles>, driver: Driver, name: &str) -> strata_graph::NodeId {
        let spec = NodeSpec::new(driver.name(), driver.traits()).name(name);
        layer.core.bg.add_node(spec).expect("node")
    }

    #[test]
    fn structure_properties_can_fail() {
        let mut layer = BlockLayer::new(MemFiles::new(), 0);
        let null = add(&mut layer, Driver::NullCo, "n");
        let broken = layer.check_structure().unwrap_err();
        assert!(broken.starts_with("no-orphans: node 'n'"), "{broken}");
        layer.core.monitor_adopt(null);
        assert_eq!(layer.check_structure(), Ok(()));
        let throttle = add(&mut layer, Driver::Throttle, "t");
        layer.core.monitor_adopt(throttle);
        let broken = layer.check_structure().unwrap_err();
        assert!(
            broken.starts_with("filter-one-child: filter 't' has 0"),
            "{broken}"
        );
    }
}
