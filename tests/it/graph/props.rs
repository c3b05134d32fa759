//! Seeded structural properties of strata-graph under random operations.
//!
//! After every operation: parent and child lists mirror each other, every
//! reference is accounted for (`refcnt` = parent edges + the test's own
//! references), `file`/`backing` slots point at own children, the graph has
//! no cycle, names are unique and found, node order is creation order,
//! removed ids answer nothing, and a refused operation changed nothing.
//!
//! Replay with `STRATA_SEED=<n> cargo test -p strata-tests --test it graph::props`.

use super::{dump, BACKING_FILTER, FILTER, FORMAT, PROTOCOL};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use std::collections::BTreeMap;
use strata_graph::{EdgeId, Graph, NodeId, NodeSpec, Parent, Perm, Role, RootId, RootKind};

const DEFAULT_SEED: u64 = 0x0067_7261_7068;

fn seed() -> u64 {
    let seed = std::env::var("STRATA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    println!("graph::props: STRATA_SEED={seed}");
    seed
}

#[derive(Clone, Debug)]
enum Op {
    AddNode { kind: u8, named: bool },
    Attach { parent: u8, child: u8, role: u8 },
    AttachRoot { root: u8, child: u8 },
    AddRoot { named: bool },
    RemoveRoot { root: u8 },
    Detach { edge: u8 },
    Retarget { edge: u8, to: u8 },
    Ref { node: u8 },
    Unref { node: u8 },
    Freeze { edge: u8, frozen: bool },
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        let n = |g: &mut Gen| u8::arbitrary(g);
        match u8::arbitrary(g) % 14 {
            0..=2 => Op::AddNode {
                kind: n(g),
                named: bool::arbitrary(g),
            },
            3..=5 => Op::Attach {
                parent: n(g),
                child: n(g),
                role: n(g),
            },
            6 => Op::AttachRoot {
                root: n(g),
                child: n(g),
            },
            7 => Op::AddRoot {
                named: bool::arbitrary(g),
            },
            8 => Op::RemoveRoot { root: n(g) },
            9 => Op::Detach { edge: n(g) },
            10 => Op::Retarget {
                edge: n(g),
                to: n(g),
            },
            11 => Op::Ref { node: n(g) },
            12 => Op::Unref { node: n(g) },
            _ => Op::Freeze {
                edge: n(g),
                frozen: bool::arbitrary(g),
            },
        }
    }
}

#[derive(Clone, Debug)]
struct Ops(Vec<Op>);

impl Arbitrary for Ops {
    fn arbitrary(g: &mut Gen) -> Ops {
        let len = usize::arbitrary(g) % 60;
        Ops((0..len).map(|_| Op::arbitrary(g)).collect())
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Ops>> {
        Box::new(self.0.shrink().map(Ops))
    }
}

#[derive(Default)]
struct World {
    g: Option<Graph>,
    ids: Vec<NodeId>,
    /// References the test holds on each node (creation, `ref_node`).
    held: BTreeMap<NodeId, u32>,
    roots: Vec<RootId>,
    /// Every edge id ever issued.
    edges: Vec<EdgeId>,
    serial: u32,
}

fn pick<T: Copy>(items: &[T], i: u8) -> Option<T> {
    (!items.is_empty()).then(|| items[i as usize % items.len()])
}

impl World {
    fn g(&mut self) -> &mut Graph {
        self.g.get_or_insert_with(|| Graph::new(9))
    }

    fn apply(&mut self, op: &Op) -> Result<(), String> {
        let before = dump(self.g());
        let result: Result<(), strata_graph::Error> = match *op {
            Op::AddNode { kind, named } => {
                let traits = [FORMAT, PROTOCOL, FILTER, BACKING_FILTER][kind as usize % 4];
                let mut spec = NodeSpec::new("drv", traits);
                if named {
                    self.serial += 1;
                    spec = spec.name(format!("n{}", self.serial));
                }
                let id = self.g().add_node(spec).map_err(|e| e.to_string())?;
                if self.ids.contains(&id) {
                    return Err(format!("id {id:?} issued twice"));
                }
                self.ids.push(id);
                self.held.insert(id, 1);
                Ok(())
            }
            Op::Attach {
                parent,
                child,
                role,
            } => {
                let (Some(p), Some(c)) = (pick(&self.ids, parent), pick(&self.ids, child)) else {
                    return Ok(());
                };
                let (name, role) = [
                    ("file", Role::IMAGE),
                    ("backing", Role::COW),
                    ("file", Role::FILTERED_PRIMARY),
                    ("data", Role::DATA),
                ][role as usize % 4];
                self.g()
                    .attach(Parent::Node(p), c, name, role, Perm::NONE, Perm::ALL)
                    .map(|e| self.edges.push(e))
            }
            Op::AttachRoot { root, child } => {
                let (Some(r), Some(c)) = (pick(&self.roots, root), pick(&self.ids, child)) else {
                    return Ok(());
                };
                self.g()
                    .attach(
                        Parent::Root(r),
                        c,
                        "root",
                        Role::FILTERED_PRIMARY,
                        Perm::CONSISTENT_READ,
                        Perm::ALL,
                    )
                    .map(|e| self.edges.push(e))
            }
            Op::AddRoot { named } => {
                self.serial += 1;
                let name = named.then(|| format!("dev{}", self.serial));
                let r = self.g().add_root(RootKind::Backend { name });
                self.roots.push(r);
                Ok(())
            }
            Op::RemoveRoot { root } => {
                let Some(r) = pick(&self.roots, root) else {
                    return Ok(());
                };
                let result = self.g().remove_root(r);
                if result.is_ok() {
                    self.roots.retain(|&x| x != r);
                }
                result
            }
            Op::Detach { edge } => {
                let Some(e) = pick(&self.edges, edge) else {
                    return Ok(());
                };
                self.g().detach(e).map(drop)
            }
            Op::Retarget { edge, to } => {
                let (Some(e), Some(t)) = (pick(&self.edges, edge), pick(&self.ids, to)) else {
                    return Ok(());
                };
                // Retargeting is only ever done where it cannot make a cycle
                // (should_update_child); keep to that.
                let g = self.g();
                if let Ok(Parent::Node(p)) = g.edge(e).map(|x| x.parent()) {
                    if g.has_descendant(t, p) {
                        return Ok(());
                    }
                }
                g.retarget(e, t).map(drop)
            }
            Op::Ref { node } => {
                let Some(n) = pick(&self.ids, node) else {
                    return Ok(());
                };
                let result = self.g().ref_node(n);
                if result.is_ok() {
                    *self.held.entry(n).or_default() += 1;
                }
                result
            }
            Op::Unref { node } => {
                let Some(n) =
                    pick(&self.ids, node).filter(|n| self.held.get(n).is_some_and(|&h| h > 0))
                else {
                    return Ok(());
                };
                let result = self.g().unref_node(n).map(drop);
                if result.is_ok() {
                    *self.held.get_mut(&n).unwrap() -= 1;
                }
                result
            }
            Op::Freeze { edge, frozen } => {
                let Some(e) = pick(&self.edges, edge) else {
                    return Ok(());
                };
                self.g().set_frozen(e, frozen)
            }
        };
        if let Err(err) = result {
            if dump(self.g()) != before {
                return Err(format!("refused ({err}) but the graph changed"));
            }
        }
        self.check()
    }

    fn check(&mut self) -> Result<(), String> {
        let g = self.g.as_ref().expect("created by apply");
        let live: Vec<NodeId> = g.nodes().collect();
        let created: Vec<NodeId> = self
            .ids
            .iter()
            .copied()
            .filter(|n| g.contains_node(*n))
            .collect();
        if live != created {
            return Err("nodes() is not the live nodes in creation order".into());
        }
        for &n in &self.ids {
            if !g.contains_node(n) {
                if g.node(n).is_ok()
                    || !g.name(n).is_empty()
                    || g.children_of(Parent::Node(n)).is_ok()
                {
                    return Err(format!("stale node {n:?} still answers"));
                }
                continue;
            }
            let node = g.node(n).unwrap();
            if g.find_node(node.name()) != Some(n) {
                return Err(format!("find_node('{}') is not its node", node.name()));
            }
            let held = self.held.get(&n).copied().unwrap_or(0);
            if node.refcnt() as usize != node.parents().len() + held as usize {
                return Err(format!(
                    "'{}': refcnt {} != {} parents + {held} held",
                    node.name(),
                    node.refcnt(),
                    node.parents().len()
                ));
            }
            for &e in node.children() {
                let edge = g
                    .edge(e)
                    .map_err(|_| format!("'{}' lists a dead child edge", node.name()))?;
                if edge.parent() != Parent::Node(n) {
                    return Err("a child edge names another parent".into());
                }
                let listed = g
                    .node(edge.child())
                    .map_err(|_| "an edge points at a dead node".to_string())?
                    .parents()
                    .iter()
                    .filter(|&&x| x == e)
                    .count();
                if listed != 1 {
                    return Err(format!(
                        "edge listed {listed} times among its child's parents"
                    ));
                }
                if g.has_descendant(edge.child(), n) {
                    return Err(format!("cycle through '{}'", node.name()));
                }
            }
            for &e in node.parents() {
                let edge = g.edge(e).map_err(|_| "a dead parent edge".to_string())?;
                if edge.child() != n {
                    return Err("a parent edge points elsewhere".into());
                }
                let listed = g
                    .children_of(edge.parent())
                    .map_err(|_| "a dead parent".to_string())?
                    .iter()
                    .filter(|&&x| x == e)
                    .count();
                if listed != 1 {
                    return Err(format!(
                        "edge listed {listed} times among its parent's children"
                    ));
                }
            }
            for slot in [node.file(), node.backing()].into_iter().flatten() {
                if !node.children().contains(&slot) {
                    return Err(format!(
                        "'{}': file/backing slot is not a child",
                        node.name()
                    ));
                }
            }
        }
        for &r in &self.roots {
            for &e in g
                .root(r)
                .map_err(|_| "a live root is gone".to_string())?
                .children()
            {
                let edge = g
                    .edge(e)
                    .map_err(|_| "a root lists a dead edge".to_string())?;
                if edge.parent() != Parent::Root(r) {
                    return Err("a root edge names another parent".into());
                }
            }
        }
        if g.roots().count() != self.roots.len() {
            return Err("roots() is not the live roots".into());
        }
        Ok(())
    }
}

fn run(ops: Ops) -> TestResult {
    let mut world = World::default();
    for (i, op) in ops.0.iter().enumerate() {
        if let Err(msg) = world.apply(op) {
            return TestResult::error(format!("op {i} {op:?}: {msg}"));
        }
    }
    TestResult::passed()
}

#[test]
fn random_structural_operations_keep_the_graph_consistent() {
    QuickCheck::new()
        .rng(Gen::from_size_and_seed(100, seed()))
        .tests(500)
        .quickcheck(run as fn(Ops) -> TestResult);
}
