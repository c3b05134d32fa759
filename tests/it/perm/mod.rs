//! strata-perm: `bdrv_default_perms`, permission conflicts, read-only
//! checks, frozen links, op blockers and transactions, with QEMU 10.0.2's
//! texts; and seeded properties over random operation sequences.
//!
//! Every QEMU text here was produced by qemu-storage-daemon 10.0.2, started
//! as `qemu-storage-daemon --chardev socket,path=$D/qmp.sock,server=on,wait=off,id=m0
//! --monitor chardev=m0` in a scratch directory with images from
//! `qemu-img create -f qcow2 X.qcow2 4M` (backing images with `-b`/`-F qcow2`,
//! data written with `qemu-io -c 'write -P 1 0 2M'`). Unless said otherwise a
//! chain `base <- mid <- top` was added as one `blockdev-add` per image:
//! `{"driver": "qcow2", "node-name": "mid", "file": {"driver": "file",
//! "filename": "mid.qcow2", "node-name": "mid-file"}, "backing": "base"}`.
//! The QMP exchange that confirms each text is quoted next to its test; the
//! tests build the same graph through the strata-perm API and need no QEMU.

mod blockers;
mod conflicts;
mod defaults;
mod frozen;
mod props;
mod transactions;

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use strata_graph::{
    DriverTraits, Edge, EdgeId, Graph, NodeId, NodeSpec, Parent, Perm, Role, RootId, RootKind,
};
use strata_perm::{
    default_child_perm, BlockGraph, BlockerOwner, PermHooks, ReopenQueue, ReplaceOptions,
};

pub(crate) const FORMAT: DriverTraits = DriverTraits {
    is_filter: false,
    supports_backing: true,
    filtered_child_is_backing: false,
    is_protocol: false,
};
pub(crate) const PROTOCOL: DriverTraits = DriverTraits {
    is_filter: false,
    supports_backing: false,
    filtered_child_is_backing: false,
    is_protocol: true,
};
pub(crate) const FILTER: DriverTraits = DriverTraits {
    is_filter: true,
    supports_backing: false,
    filtered_child_is_backing: false,
    is_protocol: false,
};
pub(crate) const BACKING_FILTER: DriverTraits = DriverTraits {
    is_filter: true,
    supports_backing: false,
    filtered_child_is_backing: true,
    is_protocol: false,
};

/// `bdrv_default_perms`, except for the two drivers whose own rules the
/// QEMU scenarios here need: `copy-on-read` (`cor_child_perm`: pass
/// consistent-read/write/resize through, always take and share
/// write-unchanged) and `commit_top` (`bdrv_commit_top_child_perm`: take
/// nothing, share everything).
pub(crate) struct TestHooks;

impl PermHooks for TestHooks {
    fn child_perm(
        &self,
        graph: &Graph,
        parent: NodeId,
        edge: &Edge,
        perm: Perm,
        shared: Perm,
        queue: &ReopenQueue,
    ) -> (Perm, Perm) {
        const COR_PASSTHROUGH: Perm = Perm::from_bits_truncate(0x01 | 0x02 | 0x08);
        match graph.node(parent).map(|n| n.driver()) {
            Ok("copy-on-read") => (
                (perm & COR_PASSTHROUGH) | Perm::WRITE_UNCHANGED,
                (shared & COR_PASSTHROUGH) | Perm::WRITE_UNCHANGED,
            ),
            Ok("commit_top") => (Perm::NONE, Perm::ALL),
            _ => default_child_perm(graph, parent, edge.role(), perm, shared, queue),
        }
    }
}

/// `qcow2` node `name` over a `file` node `<name>-file`, both with the
/// given read-only flag, as one `blockdev-add` with an inline file child.
pub(crate) fn qcow2(
    bg: &mut BlockGraph,
    hooks: &dyn PermHooks,
    name: &str,
    read_only: bool,
) -> NodeId {
    let file = bg
        .add_node(
            NodeSpec::new("file", PROTOCOL)
                .name(format!("{name}-file"))
                .read_only(read_only),
        )
        .unwrap();
    let fmt = bg
        .add_node(
            NodeSpec::new("qcow2", FORMAT)
                .name(name)
                .read_only(read_only),
        )
        .unwrap();
    bg.attach_child(hooks, fmt, file, "file", Role::IMAGE)
        .unwrap();
    // The monitor's reference on the file node moves to the edge, as with an
    // inline child (so deleting the qcow2 node closes its file).
    bg.unref_node(hooks, file).unwrap();
    fmt
}

/// `top` takes `base` as its backing child.
pub(crate) fn set_backing(
    bg: &mut BlockGraph,
    hooks: &dyn PermHooks,
    top: NodeId,
    base: NodeId,
) -> EdgeId {
    bg.attach_child(hooks, top, base, "backing", Role::COW)
        .unwrap()
}

/// The chain `names[0] <- names[1] <- ...` of qcow2 nodes, bottom first;
/// `read_only(i)` says whether node i is opened read-only.
pub(crate) fn chain(
    bg: &mut BlockGraph,
    hooks: &dyn PermHooks,
    names: &[&str],
    read_only: impl Fn(usize) -> bool,
) -> Vec<NodeId> {
    let mut nodes: Vec<NodeId> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let n = qcow2(bg, hooks, name, read_only(i));
        if let Some(&below) = nodes.last() {
            set_backing(bg, hooks, n, below);
        }
        nodes.push(n);
    }
    nodes
}

/// A root parent with one child edge.
pub(crate) fn root_on(
    bg: &mut BlockGraph,
    hooks: &dyn PermHooks,
    kind: RootKind,
    child: NodeId,
    name: &str,
    perm: Perm,
    shared: Perm,
) -> strata_perm::Result<(RootId, EdgeId)> {
    let root = bg.add_root(kind);
    let edge = bg.root_attach_child(hooks, root, child, name, perm, shared)?;
    Ok((root, edge))
}

/// A job root (`child_job`).
pub(crate) fn job(kind: &str, id: &str) -> RootKind {
    RootKind::Job {
        job_type: kind.into(),
        id: id.into(),
    }
}

/// Everything a refused operation must leave as it was: every node, edge
/// and root with their ids and fields, the blockers, and the canonical hash.
pub(crate) fn snapshot(bg: &BlockGraph) -> (String, u64) {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bg.hash(&mut h);
    let dump = crate::graph::dump(bg.graph());
    (format!("{dump}{:?}", bg.blockers()), h.finish())
}

/// One edge as `x-debug-query-block-graph` shows it: parent name (node
/// name, or the job id / "" for a BlockBackend), child name, child node,
/// perm and shared in QAPI names, in QEMU's printed order (highest bit
/// first, because the list is built by prepending).
pub(crate) type ShownEdge = (String, String, String, Vec<&'static str>, Vec<&'static str>);

pub(crate) fn shown_edges(bg: &BlockGraph) -> BTreeSet<ShownEdge> {
    let g = bg.graph();
    let mut edges = BTreeSet::new();
    let mut add = |edge: EdgeId| {
        let e = g.edge(edge).unwrap();
        let parent = match e.parent() {
            Parent::Node(n) => g.name(n).to_string(),
            Parent::Root(r) => match g.root(r).unwrap().kind() {
                RootKind::Job { id, .. } => id.clone(),
                RootKind::Backend { name } => name.clone().unwrap_or_default(),
            },
        };
        let rev = |p: Perm| p.qapi_names().into_iter().rev().collect::<Vec<_>>();
        edges.insert((
            parent,
            e.name().to_string(),
            g.name(e.child()).to_string(),
            rev(e.perm),
            rev(e.shared),
        ));
    };
    for n in g.nodes() {
        g.node(n)
            .unwrap()
            .children()
            .iter()
            .copied()
            .for_each(&mut add);
    }
    for r in g.roots() {
        g.root(r)
            .unwrap()
            .children()
            .iter()
            .copied()
            .for_each(&mut add);
    }
    edges
}

/// One expected edge as QEMU prints it: parent, child name, child, perm, shared.
pub(crate) type Row<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [&'static str],
    &'a [&'static str],
);

/// Builds the expected set from rows written as QEMU prints them.
pub(crate) fn expected_edges(rows: &[Row<'_>]) -> BTreeSet<ShownEdge> {
    rows.iter()
        .map(|(p, n, c, perm, shared)| {
            (
                p.to_string(),
                n.to_string(),
                c.to_string(),
                perm.to_vec(),
                shared.to_vec(),
            )
        })
        .collect()
}

/// Asserts that every stored edge permission equals a from-scratch
/// recomputation.
pub(crate) fn assert_perms_fresh(bg: &BlockGraph, hooks: &dyn PermHooks) {
    if let Err(msg) = perms_fresh(bg, hooks) {
        panic!("{msg}");
    }
}

pub(crate) fn perms_fresh(bg: &BlockGraph, hooks: &dyn PermHooks) -> Result<(), String> {
    let fresh = strata_perm::recompute_all(bg.graph(), hooks);
    let g = bg.graph();
    for n in g.nodes() {
        for &e in g.node(n).unwrap().children() {
            let (stored, recomputed) = (g.edge(e).unwrap(), fresh.edge(e).unwrap());
            if (stored.perm, stored.shared) != (recomputed.perm, recomputed.shared) {
                return Err(format!(
                    "edge '{}' of '{}': stored {:?}/{:?}, recomputed {:?}/{:?}",
                    stored.name(),
                    g.name(n),
                    stored.perm,
                    stored.shared,
                    recomputed.perm,
                    recomputed.shared
                ));
            }
        }
    }
    Ok(())
}

pub(crate) const CR: &str = "consistent-read";
pub(crate) const W: &str = "write";
pub(crate) const WU: &str = "write-unchanged";
pub(crate) const RS: &str = "resize";
/// BLK_PERM_ALL as QEMU prints it.
pub(crate) const ALL: &[&str] = &[RS, WU, W, CR];

/// The job blocker reason (`block_job_add_bdrv`).
pub(crate) fn job_reason(kind: &str) -> String {
    format!("block device is in use by block job: {kind}")
}

/// A running, throttled `block-stream` of `top` down to `base`, as
/// qemu-storage-daemon 10.0.2 set it up:
/// -> {"execute": "block-stream", "arguments": {"job-id": "j", "device": "top", "base-node": "base", "speed": 1}}
/// <- {"return": {}}
/// `stream_start` inserts an implicit copy-on-read filter above `top` with
/// `bottom` = `mid` (which freezes cor->top and top->mid), and the job
/// takes `main node` (the filter), `active node` (top) and `intermediate
/// node` (mid) children plus a BlockBackend on the filter, blocking every
/// operation on those nodes.
pub(crate) struct Stream {
    pub bg: BlockGraph,
    pub base: NodeId,
    pub mid: NodeId,
    pub top: NodeId,
    pub cor: NodeId,
    pub job: RootId,
}

pub(crate) fn stream_running() -> Stream {
    let hooks = &TestHooks;
    let mut bg = BlockGraph::new(93);
    let n = chain(&mut bg, hooks, &["base", "mid", "top"], |_| false);
    let (base, mid, top) = (n[0], n[1], n[2]);
    let cor = bg
        .add_node(NodeSpec::new("copy-on-read", FILTER).implicit(true))
        .unwrap();
    bg.attach_child(hooks, cor, top, "file", Role::FILTERED_PRIMARY)
        .unwrap();
    bg.replace_node(hooks, top, cor, ReplaceOptions::REPLACE_NODE)
        .unwrap();
    bg.freeze_chain(cor, Some(mid)).unwrap();
    let job_root = bg.add_root(job("stream", "j"));
    let rw = Perm::CONSISTENT_READ | Perm::WRITE | Perm::WRITE_UNCHANGED;
    let read = Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED;
    for (node, name, shared) in [
        (cor, "main node", Perm::ALL),
        (top, "active node", rw),
        (mid, "intermediate node", read),
    ] {
        bg.root_attach_child(hooks, job_root, node, name, Perm::NONE, shared)
            .unwrap();
        bg.block_all(node, &job_reason("stream"), BlockerOwner::Root(job_root));
    }
    root_on(
        &mut bg,
        hooks,
        RootKind::Backend { name: None },
        cor,
        "root",
        Perm::CONSISTENT_READ,
        rw,
    )
    .unwrap();
    Stream {
        bg,
        base,
        mid,
        top,
        cor,
        job: job_root,
    }
}

/// A running, throttled `block-commit` on the chain n0 <- n1 <- n2 <- n3 <- n4
/// (n0..n2 read-only, n3 read-only if `n3_read_only`, n4 read-write):
/// -> {"execute": "block-commit", "arguments": {"job-id": "c", "device": "n4", "top-node": "n2",
///     "base-node": "n0", "filter-node-name": "commit-filter", "speed": 1}}
/// <- {"return": {}}
/// `commit_start` appends the `commit_top` node `commit-filter` (never
/// frozen) above n2, adds n2 and n1 as `intermediate node` children that
/// share only write and write-unchanged, freezes commit-filter..n0, reopens
/// n0 read-write for its BlockBackend (perm consistent-read+write) and puts
/// a perm-less BlockBackend on n2.
pub(crate) struct Commit {
    pub bg: BlockGraph,
    pub n: Vec<NodeId>,
    pub filter: NodeId,
}

pub(crate) fn commit_running(n3_read_only: bool) -> Commit {
    let hooks = &TestHooks;
    let mut bg = BlockGraph::new(5);
    let n = chain(&mut bg, hooks, &["n0", "n1", "n2", "n3", "n4"], |i| {
        i < 3 || (i == 3 && n3_read_only)
    });
    let job_root = bg.add_root(job("commit", "c"));
    bg.root_attach_child(hooks, job_root, n[4], "main node", Perm::NONE, Perm::ALL)
        .unwrap();
    let filter = bg
        .add_node(
            NodeSpec::new("commit_top", BACKING_FILTER)
                .name("commit-filter")
                .never_freeze(true),
        )
        .unwrap();
    bg.append(hooks, filter, n[2]).unwrap();
    for &i in &[n[2], n[1]] {
        let shared = Perm::WRITE | Perm::WRITE_UNCHANGED;
        bg.root_attach_child(hooks, job_root, i, "intermediate node", Perm::NONE, shared)
            .unwrap();
    }
    bg.freeze_chain(filter, Some(n[0])).unwrap();
    bg.root_attach_child(hooks, job_root, n[0], "base", Perm::NONE, Perm::ALL)
        .unwrap();
    let n0_file = bg.graph().find_node("n0-file").unwrap();
    let queue = ReopenQueue::default()
        .set_read_only(n[0], false)
        .set_read_only(n0_file, false);
    bg.reopen_read_only(hooks, &queue).unwrap();
    let backend = RootKind::Backend { name: None };
    let cr_w = Perm::CONSISTENT_READ | Perm::WRITE;
    let base_shared = Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED;
    root_on(
        &mut bg,
        hooks,
        backend.clone(),
        n[0],
        "root",
        cr_w,
        base_shared,
    )
    .unwrap();
    root_on(&mut bg, hooks, backend, n[2], "root", Perm::NONE, Perm::ALL).unwrap();
    Commit { bg, n, filter }
}
