//! Seeded properties over random sequences of graph operations.
//!
//! After every operation on a [`BlockGraph`]:
//! * the stored permissions equal `strata_perm::recompute_all`;
//! * a refused operation left graph, permissions, frozen flags and blockers
//!   exactly as they were;
//! * no frozen link changed (only `unfreeze_chain` may unfreeze one);
//! * every removed node's id is refused by every lookup, and no live id or
//!   name answers for a removed node.
//!
//! The run is replayable: `STRATA_SEED=<n> cargo test -p strata-tests --test it perm::props`
//! (the seed in use is printed; without the variable a fixed seed is used).

use super::*;
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use std::collections::BTreeMap;
use strata_perm::{AutoSkip, BlockOp, ChildSlot, Detach, ReplaceOptions, Result as PermResult};

const DEFAULT_SEED: u64 = 0x5742_4154_4131;
const TESTS: u64 = 300;
const MAX_OPS: usize = 60;

fn seed() -> u64 {
    let seed = std::env::var("STRATA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    println!("perm::props: STRATA_SEED={seed}");
    seed
}

/// One random operation; numbers pick nodes, edges or ranges modulo what exists.
#[derive(Clone, Debug)]
enum Op {
    AddNode {
        kind: u8,
        read_only: bool,
        named: bool,
    },
    AttachFile {
        parent: u8,
        child: u8,
    },
    SetBacking {
        parent: u8,
        child: Option<u8>,
    },
    SetFile {
        parent: u8,
        child: u8,
    },
    ReplaceNode {
        from: u8,
        to: u8,
        auto_skip: bool,
    },
    InsertFilter {
        over: u8,
        cor: bool,
    },
    AppendOverlay {
        over: u8,
        commit_top: bool,
    },
    DropFilter {
        node: u8,
    },
    Freeze {
        top: u8,
        depth: Option<u8>,
    },
    Unfreeze {
        which: u8,
    },
    Reopen {
        node: u8,
        read_only: bool,
    },
    AddRoot {
        node: u8,
        kind: u8,
        perm: u8,
        shared: u8,
    },
    SetRootPerm {
        which: u8,
        perm: u8,
        shared: u8,
    },
    RemoveRoot {
        which: u8,
    },
    Unref {
        node: u8,
    },
    UnrefChild {
        node: u8,
        which: u8,
    },
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        let n = |g: &mut Gen| u8::arbitrary(g);
        let b = |g: &mut Gen| bool::arbitrary(g);
        // Node creation is weighted up so that graphs get some size.
        match u8::arbitrary(g) % 22 {
            0..=3 => Op::AddNode {
                kind: n(g),
                read_only: u8::arbitrary(g) % 4 == 0,
                named: b(g),
            },
            4..=6 => Op::SetBacking {
                parent: n(g),
                child: if u8::arbitrary(g) % 5 == 0 {
                    None
                } else {
                    Some(n(g))
                },
            },
            7 => Op::AttachFile {
                parent: n(g),
                child: n(g),
            },
            8 => Op::SetFile {
                parent: n(g),
                child: n(g),
            },
            9 => Op::ReplaceNode {
                from: n(g),
                to: n(g),
                auto_skip: b(g),
            },
            10 => Op::InsertFilter {
                over: n(g),
                cor: b(g),
            },
            11 => Op::AppendOverlay {
                over: n(g),
                commit_top: b(g),
            },
            12 => Op::DropFilter { node: n(g) },
            13 | 14 => Op::Freeze {
                top: n(g),
                depth: if b(g) { Some(n(g)) } else { None },
            },
            15 => Op::Unfreeze { which: n(g) },
            16 => Op::Reopen {
                node: n(g),
                read_only: b(g),
            },
            17 => Op::AddRoot {
                node: n(g),
                kind: n(g),
                perm: n(g),
                shared: n(g),
            },
            18 => Op::SetRootPerm {
                which: n(g),
                perm: n(g),
                shared: n(g),
            },
            19 => Op::RemoveRoot { which: n(g) },
            20 => Op::Unref { node: n(g) },
            _ => Op::UnrefChild {
                node: n(g),
                which: n(g),
            },
        }
    }
}

/// Random operation sequences, shrunk by dropping operations.
#[derive(Clone, Debug)]
struct Ops(Vec<Op>);

impl Arbitrary for Ops {
    fn arbitrary(g: &mut Gen) -> Ops {
        let len = usize::arbitrary(g) % MAX_OPS;
        Ops((0..len).map(|_| Op::arbitrary(g)).collect())
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Ops>> {
        Box::new(self.0.shrink().map(Ops))
    }
}

/// A frozen edge as it must stay: (parent, child, child name).
type FrozenEdge = (Parent, NodeId, String);

struct World {
    bg: BlockGraph,
    /// Every node ever created (stale ones included), in creation order.
    ids: Vec<NodeId>,
    /// Nodes whose creator reference the test still holds.
    owned: BTreeSet<NodeId>,
    /// Successful freezes not yet undone.
    frozen_ranges: Vec<(NodeId, Option<NodeId>)>,
    roots: Vec<RootId>,
    serial: u32,
}

/// What happened to one crate call.
enum Step {
    Skipped,
    Done,
}

impl World {
    fn new(seed: u64) -> World {
        World {
            bg: BlockGraph::new(seed),
            ids: Vec::new(),
            owned: BTreeSet::new(),
            frozen_ranges: Vec::new(),
            roots: Vec::new(),
            serial: 0,
        }
    }

    fn pick(&self, i: u8) -> Option<NodeId> {
        (!self.ids.is_empty()).then(|| self.ids[i as usize % self.ids.len()])
    }

    fn live(&self, i: u8) -> Option<(NodeId, DriverTraits)> {
        let id = self.pick(i)?;
        Some((id, self.bg.graph().node(id).ok()?.traits()))
    }

    fn add_node(
        &mut self,
        driver: &str,
        traits: DriverTraits,
        read_only: bool,
        named: bool,
        never_freeze: bool,
    ) -> NodeId {
        let mut spec = NodeSpec::new(driver, traits)
            .read_only(read_only)
            .never_freeze(never_freeze);
        if named {
            self.serial += 1;
            spec = spec.name(format!("n{}", self.serial));
        }
        let id = self.bg.add_node(spec).expect("fresh names are valid");
        assert!(
            !self.ids.contains(&id),
            "id {id:?} was issued before: an alias"
        );
        self.ids.push(id);
        self.owned.insert(id);
        id
    }

    /// Runs one crate call and checks every property around it.
    fn checked<T>(
        &mut self,
        what: &str,
        call: impl FnOnce(&mut BlockGraph) -> PermResult<T>,
    ) -> Result<Option<T>, String> {
        let before = snapshot(&self.bg);
        let frozen_before = frozen_edges(&self.bg);
        let result = call(&mut self.bg);
        let refused = result.is_err();
        if refused && snapshot(&self.bg) != before {
            return Err(format!(
                "{what}: refused ({}) but the graph changed",
                result.err().unwrap()
            ));
        }
        self.check_frozen(what, &frozen_before, what.starts_with("unfreeze"))?;
        self.check_invariants(what)?;
        Ok(result.ok())
    }

    fn check_frozen(
        &self,
        what: &str,
        before: &BTreeMap<EdgeId, FrozenEdge>,
        unfreezing: bool,
    ) -> Result<(), String> {
        let g = self.bg.graph();
        for (&edge, (parent, child, name)) in before {
            match g.edge(edge) {
                Ok(e) if e.parent() == *parent && e.child() == *child && e.name() == name => {
                    if !e.frozen && !unfreezing {
                        return Err(format!("{what}: frozen link '{name}' was unfrozen"));
                    }
                }
                Ok(_) => return Err(format!("{what}: frozen link '{name}' was retargeted")),
                Err(_) => return Err(format!("{what}: frozen link '{name}' was removed")),
            }
        }
        let now = frozen_edges(&self.bg);
        if !what.starts_with("freeze") && now.keys().any(|e| !before.contains_key(e)) {
            return Err(format!("{what}: a link was frozen outside freeze_chain"));
        }
        Ok(())
    }

    fn check_invariants(&self, what: &str) -> Result<(), String> {
        perms_fresh(&self.bg, &TestHooks).map_err(|e| format!("{what}: {e}"))?;
        let g = self.bg.graph();
        let live: BTreeSet<NodeId> = g.nodes().collect();
        for &id in &self.ids {
            if live.contains(&id) {
                let name = g
                    .node(id)
                    .map_err(|e| format!("{what}: live node refused: {e}"))?
                    .name();
                if g.find_node(name) != Some(id) {
                    return Err(format!("{what}: find_node({name}) is not its node"));
                }
            } else if g.node(id).is_ok() || g.contains_node(id) || !g.name(id).is_empty() {
                return Err(format!("{what}: stale id {id:?} still answers"));
            } else if self.bg.check_op(id, BlockOp::DriveDel).is_err() {
                return Err(format!("{what}: stale id {id:?} still has blockers"));
            }
        }
        for r in g.roots() {
            if !self.roots.contains(&r) {
                return Err(format!("{what}: unknown root {r:?}"));
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<Step, String> {
        let hooks = &TestHooks;
        match *op {
            Op::AddNode {
                kind,
                read_only,
                named,
            } => {
                let (driver, traits) = match kind % 4 {
                    0 | 1 => ("qcow2", FORMAT),
                    2 => ("file", PROTOCOL),
                    _ => ("throttle", FILTER),
                };
                self.add_node(driver, traits, read_only, named, false);
            }
            Op::AttachFile { parent, child } => {
                let (Some((p, traits)), Some(c)) = (self.live(parent), self.pick(child)) else {
                    return Ok(Step::Skipped);
                };
                let node = self.bg.graph().node(p).unwrap();
                // QEMU opens at most one primary child, and never a file child
                // under a filter that already has its filtered child.
                if traits.filtered_child_is_backing
                    || traits.is_protocol
                    || node.file().is_some()
                    || node.backing().is_some() && traits.is_filter
                {
                    return Ok(Step::Skipped);
                }
                let role = if traits.is_filter {
                    Role::FILTERED_PRIMARY
                } else {
                    Role::IMAGE
                };
                self.checked("attach_child", |bg| {
                    bg.attach_child(hooks, p, c, "file", role)
                })?;
            }
            Op::SetBacking { parent, child } => {
                let Some((p, traits)) = self.live(parent) else {
                    return Ok(Step::Skipped);
                };
                // Filters have no COW child; reopen refuses before this call.
                if traits.is_filter {
                    return Ok(Step::Skipped);
                }
                let c = child.map(|c| self.pick(c).expect("ids is not empty"));
                self.checked("set_backing", |bg| {
                    bg.set_file_or_backing(hooks, p, c, ChildSlot::Backing)
                })?;
            }
            Op::SetFile { parent, child } => {
                let (Some((p, traits)), Some(c)) = (self.live(parent), self.pick(child)) else {
                    return Ok(Step::Skipped);
                };
                if traits.is_filter {
                    return Ok(Step::Skipped);
                }
                self.checked("set_file", |bg| {
                    bg.set_file_or_backing(hooks, p, Some(c), ChildSlot::File)
                })?;
            }
            Op::ReplaceNode {
                from,
                to,
                auto_skip,
            } => {
                let (Some(f), Some(t)) = (self.pick(from), self.pick(to)) else {
                    return Ok(Step::Skipped);
                };
                if f == t {
                    return Ok(Step::Skipped);
                }
                self.checked("replace_node", |bg| {
                    let auto_skip = if auto_skip {
                        AutoSkip::Skip
                    } else {
                        AutoSkip::Refuse
                    };
                    let options = ReplaceOptions {
                        auto_skip,
                        detach: Detach::Nothing,
                    };
                    bg.replace_node(hooks, f, t, options)
                })?;
            }
            Op::InsertFilter { over, cor } => {
                let Some(o) = self.pick(over) else {
                    return Ok(Step::Skipped);
                };
                let driver = if cor { "copy-on-read" } else { "throttle" };
                let flt = self.add_node(driver, FILTER, false, true, false);
                let attached = self.checked("insert: attach", |bg| {
                    bg.attach_child(hooks, flt, o, "file", Role::FILTERED_PRIMARY)
                })?;
                if attached.is_some() {
                    self.checked("insert: replace_node", |bg| {
                        bg.replace_node(hooks, o, flt, ReplaceOptions::REPLACE_NODE)
                    })?;
                }
            }
            Op::AppendOverlay { over, commit_top } => {
                let Some(o) = self.pick(over) else {
                    return Ok(Step::Skipped);
                };
                let new = if commit_top {
                    self.add_node("commit_top", BACKING_FILTER, false, false, true)
                } else {
                    self.add_node("qcow2", FORMAT, false, true, false)
                };
                self.checked("append", |bg| bg.append(hooks, new, o))?;
            }
            Op::DropFilter { node } => {
                let Some((f, traits)) = self.live(node) else {
                    return Ok(Step::Skipped);
                };
                let Some(child) = self.bg.graph().filter_node(f).filter(|_| traits.is_filter)
                else {
                    return Ok(Step::Skipped);
                };
                self.checked("drop_filter", |bg| {
                    bg.replace_node(hooks, f, child, ReplaceOptions::DROP_FILTER)
                })?;
            }
            Op::Freeze { top, depth } => {
                let Some(t) = self.pick(top) else {
                    return Ok(Step::Skipped);
                };
                let base = match depth {
                    None => None,
                    Some(d) => {
                        let chain: Vec<NodeId> = self.bg.graph().chain(t).collect();
                        Some(chain[d as usize % chain.len()])
                    }
                };
                let before = frozen_edges(&self.bg);
                if self
                    .checked("freeze", |bg| bg.freeze_chain(t, base))?
                    .is_some()
                {
                    // Remember the range by the node its last frozen link points
                    // to: a range "to the end" would grow with the chain, and
                    // unfreezing a link that is not frozen is a caller bug (an
                    // assertion in QEMU and here).
                    let after = frozen_edges(&self.bg);
                    let mut end = t;
                    while let Some(e) = self.bg.graph().filter_or_cow_child(end) {
                        if !after.contains_key(&e) || before.contains_key(&e) {
                            break;
                        }
                        end = self.bg.graph().edge(e).unwrap().child();
                    }
                    let end = (end != t).then_some(end);
                    if let Some(end) = end {
                        self.frozen_ranges.push((t, Some(end)));
                    }
                }
            }
            Op::Unfreeze { which } => {
                if self.frozen_ranges.is_empty() {
                    return Ok(Step::Skipped);
                }
                let (t, base) = self
                    .frozen_ranges
                    .remove(which as usize % self.frozen_ranges.len());
                self.checked("unfreeze", |bg| bg.unfreeze_chain(t, base))?
                    .ok_or("unfreeze of a frozen range failed")?;
            }
            Op::Reopen { node, read_only } => {
                let Some(n) = self.pick(node) else {
                    return Ok(Step::Skipped);
                };
                let queue = ReopenQueue::default().set_read_only(n, read_only);
                self.checked("reopen", |bg| bg.reopen_read_only(hooks, &queue))?;
            }
            Op::AddRoot {
                node,
                kind,
                perm,
                shared,
            } => {
                let Some(n) = self.pick(node) else {
                    return Ok(Step::Skipped);
                };
                self.serial += 1;
                let (kind, name) = match kind % 3 {
                    0 => (
                        RootKind::Backend {
                            name: Some(format!("dev{}", self.serial)),
                        },
                        "root",
                    ),
                    1 => (RootKind::Backend { name: None }, "root"),
                    _ => (job("stream", &format!("j{}", self.serial)), "main node"),
                };
                let root = self.bg.add_root(kind);
                self.roots.push(root);
                let (perm, shared) = (
                    Perm::from_bits_truncate(perm),
                    Perm::from_bits_truncate(shared),
                );
                if self
                    .checked("root_attach_child", |bg| {
                        bg.root_attach_child(hooks, root, n, name, perm, shared)
                    })?
                    .is_none()
                {
                    self.bg
                        .remove_root(root)
                        .map_err(|e| format!("remove_root of an empty root: {e}"))?;
                    self.roots.pop();
                }
            }
            Op::SetRootPerm {
                which,
                perm,
                shared,
            } => {
                let Some(edge) = self.root_edge(which) else {
                    return Ok(Step::Skipped);
                };
                let (perm, shared) = (
                    Perm::from_bits_truncate(perm),
                    Perm::from_bits_truncate(shared),
                );
                self.checked("set_child_perm", |bg| {
                    bg.set_child_perm(hooks, edge, perm, shared)
                })?;
            }
            Op::RemoveRoot { which } => {
                let Some(edge) = self.root_edge(which) else {
                    return Ok(Step::Skipped);
                };
                let Parent::Root(root) = self.bg.graph().edge(edge).unwrap().parent() else {
                    unreachable!()
                };
                self.checked("root unref_child", |bg| bg.unref_child(hooks, edge))?;
                self.checked("remove_root", |bg| bg.remove_root(root))?;
                self.roots.retain(|&r| r != root);
            }
            Op::Unref { node } => {
                let Some(n) = self.pick(node).filter(|n| self.owned.contains(n)) else {
                    return Ok(Step::Skipped);
                };
                if self
                    .checked("unref_node", |bg| bg.unref_node(hooks, n))?
                    .is_some()
                {
                    self.owned.remove(&n);
                }
            }
            Op::UnrefChild { node, which } => {
                let Some((n, _)) = self.live(node) else {
                    return Ok(Step::Skipped);
                };
                let children = self.bg.graph().node(n).unwrap().children().to_vec();
                let Some(&edge) = children.get(which as usize % children.len().max(1)) else {
                    return Ok(Step::Skipped);
                };
                self.checked("unref_child", |bg| bg.unref_child(hooks, edge))?;
            }
        }
        Ok(Step::Done)
    }

    fn root_edge(&self, which: u8) -> Option<EdgeId> {
        let edges: Vec<EdgeId> = self
            .roots
            .iter()
            .filter_map(|&r| self.bg.graph().root(r).ok()?.children().first().copied())
            .collect();
        (!edges.is_empty()).then(|| edges[which as usize % edges.len()])
    }
}

fn frozen_edges(bg: &BlockGraph) -> BTreeMap<EdgeId, FrozenEdge> {
    let g = bg.graph();
    g.nodes()
        .flat_map(|n| g.node(n).unwrap().children().to_vec())
        .filter_map(|e| {
            let edge = g.edge(e).ok()?;
            edge.frozen
                .then(|| (e, (edge.parent(), edge.child(), edge.name().to_string())))
        })
        .collect()
}

fn run(ops: Ops) -> TestResult {
    let mut world = World::new(11);
    let mut done = 0;
    for (i, op) in ops.0.iter().enumerate() {
        match world.apply(op) {
            Ok(Step::Done) => done += 1,
            Ok(Step::Skipped) => {}
            Err(msg) => return TestResult::error(format!("op {i} {op:?}: {msg}")),
        }
    }
    if done == 0 && !ops.0.is_empty() {
        return TestResult::discard();
    }
    TestResult::passed()
}

#[test]
fn random_operation_sequences_keep_every_invariant() {
    let seed = seed();
    QuickCheck::new()
        .rng(Gen::from_size_and_seed(100, seed))
        .tests(TESTS)
        .max_tests(TESTS * 4)
        .quickcheck(run as fn(Ops) -> TestResult);
}

/// The generator makes sequences that do reach the interesting states: a
/// guard against a property that passes because nothing happens.
#[test]
fn random_sequences_reach_refusals_freezes_and_deletions() {
    let mut g = Gen::from_size_and_seed(100, seed());
    let mut refused = 0;
    let mut frozen = 0;
    let mut deleted = 0;
    for _ in 0..100 {
        let Ops(ops) = Ops::arbitrary(&mut g);
        let mut world = World::new(11);
        for op in &ops {
            let before = snapshot(&world.bg);
            let ids_before = world.bg.graph().nodes().count();
            if world.apply(op).is_ok() {
                if snapshot(&world.bg) == before && !matches!(op, Op::AddNode { .. }) {
                    refused += 1;
                }
                if world.bg.graph().nodes().count() < ids_before {
                    deleted += 1;
                }
            }
            frozen += usize::from(!frozen_edges(&world.bg).is_empty());
        }
    }
    assert!(refused > 50, "refused or no-op steps: {refused}");
    assert!(frozen > 50, "steps with frozen links: {frozen}");
    assert!(deleted > 10, "steps that deleted nodes: {deleted}");
}
