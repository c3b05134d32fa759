//! Driver permissions and filenames checked against graphs that
//! qemu-storage-daemon 10.0.2 reported (`x-debug-query-block-graph`).
//!
//! Each expected edge list below is copied from an observation of QEMU
//! recorded by the conformance harness (the scenario is named next to it):
//! the model builds the same graph through strata-perm with the drivers'
//! hooks and must report the same permissions on every edge.

use std::collections::BTreeSet;
use strata_filters::{driver_perms, refresh_filename, BackingFileInfo, Driver};
use strata_graph::{NodeId, NodeSpec, OptValue, Options, Perm, RootKind};
use strata_perm::{BlockGraph, ChildSlot, PermHooks, ReplaceOptions};

/// One expected edge: parent, child name, child, perm, shared (QAPI names).
type ExpectedEdge = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

/// Edges as (parent, child name, child, perm, shared), in a stable order.
type EdgeSet = BTreeSet<(String, String, String, Vec<&'static str>, Vec<&'static str>)>;

const CR: &str = "consistent-read";
const W: &str = "write";
const WU: &str = "write-unchanged";
const RS: &str = "resize";
const ALL: &[&str] = &[CR, RS, W, WU];

fn s(v: &str) -> OptValue {
    OptValue::Str(v.to_string())
}

/// `blockdev-add` of a nested `qcow2` over `file` chain, bottom first, as
/// the scenarios do: the top is read-write, every backing node (and its file
/// node) is read-only, as QEMU opens backing children by default.
fn nested_chain(
    bg: &mut BlockGraph,
    hooks: &dyn PermHooks,
    layers: &[(&str, Driver, &str)],
) -> Vec<NodeId> {
    let mut below: Option<NodeId> = None;
    let mut nodes = Vec::new();
    for (i, &(name, driver, file)) in layers.iter().enumerate() {
        let read_only = i + 1 < layers.len();
        let file_node = bg
            .add_node(
                NodeSpec::new("file", Driver::File.traits())
                    .read_only(read_only)
                    .options(
                        Options::new()
                            .with("driver", s("file"))
                            .with("filename", s(file)),
                    ),
            )
            .unwrap();
        let node = bg
            .add_node(
                NodeSpec::new(driver.name(), driver.traits())
                    .name(name)
                    .read_only(read_only)
                    .options(Options::new().with("driver", s(driver.name()))),
            )
            .unwrap();
        bg.attach_child(
            hooks,
            node,
            file_node,
            "file",
            driver.primary_child_role(&Options::new()),
        )
        .unwrap();
        bg.unref_node(hooks, file_node).unwrap();
        if let Some(backing) = below {
            bg.attach_child(hooks, node, backing, "backing", strata_graph::Role::COW)
                .unwrap();
            bg.unref_node(hooks, backing).unwrap();
        }
        below = Some(node);
        nodes.push(node);
    }
    nodes
}

/// The graph's edges with the harness's naming of unnamed nodes
/// (`<parent>/<child name>`) and of roots (`job:<id>`, `blk(<child>)`).
fn edges(bg: &BlockGraph) -> EdgeSet {
    let g = bg.graph();
    let display = |node: NodeId| -> String {
        let name = g.name(node);
        if !name.starts_with('#') {
            return name.to_string();
        }
        let parent_edge = g
            .node(node)
            .unwrap()
            .parents()
            .iter()
            .map(|&e| g.edge(e).unwrap())
            .find_map(|e| match e.parent() {
                strata_graph::Parent::Node(p) => Some(format!("{}/{}", g.name(p), e.name())),
                strata_graph::Parent::Root(_) => None,
            });
        parent_edge.unwrap_or_else(|| name.to_string())
    };
    let mut out = BTreeSet::new();
    for node in g.nodes() {
        for &e in g.node(node).unwrap().children() {
            let edge = g.edge(e).unwrap();
            out.insert((
                display(node),
                edge.name().to_string(),
                display(edge.child()),
                sorted(edge.perm),
                sorted(edge.shared),
            ));
        }
    }
    for root in g.roots() {
        for &e in g.root(root).unwrap().children() {
            let edge = g.edge(e).unwrap();
            let parent = match g.root(root).unwrap().kind() {
                RootKind::Job { id, .. } => format!("job:{id}"),
                RootKind::Backend { .. } => format!("blk({})", display(edge.child())),
            };
            out.insert((
                parent,
                edge.name().to_string(),
                display(edge.child()),
                sorted(edge.perm),
                sorted(edge.shared),
            ));
        }
    }
    out
}

fn sorted(perm: Perm) -> Vec<&'static str> {
    let mut names = perm.qapi_names();
    names.sort_unstable();
    names
}

fn expected(rows: &[ExpectedEdge]) -> EdgeSet {
    rows.iter()
        .map(|&(p, link, c, perm, shared)| {
            let mut perm = perm.to_vec();
            let mut shared = shared.to_vec();
            perm.sort_unstable();
            shared.sort_unstable();
            (p.to_string(), link.to_string(), c.to_string(), perm, shared)
        })
        .collect()
}

#[test]
fn nested_chain_perms_match_qemu() {
    // 030-parallel-stream and the other TestParallelOps observations: the
    // untouched part of the nine-image chain after `blockdev-add` (here the
    // first three layers, which QEMU reports the same way).
    let hooks = driver_perms();
    let mut bg = BlockGraph::new(1);
    nested_chain(
        &mut bg,
        &hooks,
        &[
            ("node0", Driver::Raw, "img-0.img"),
            ("node1", Driver::Qcow2, "img-1.img"),
            ("node2", Driver::Qcow2, "img-2.img"),
        ],
    );
    assert_eq!(
        edges(&bg),
        expected(&[
            ("node0", "file", "node0/file", &[], ALL),
            ("node1", "backing", "node0", &[], ALL),
            ("node1", "file", "node1/file", &[CR], &[CR, WU]),
            ("node2", "backing", "node1", &[], ALL),
            ("node2", "file", "node2/file", &[CR, RS, W], &[CR, WU]),
        ])
    );
}

#[test]
fn stream_job_graph_perms_match_qemu() {
    // x-stream-graph-during-job: `block-stream device=top base-node=base
    // filter-node-name=sf job-id=s speed=1024` on top -> mid -> base, graph
    // taken while the job sleeps after its first chunk. The model performs
    // stream_start's graph steps: insert the COR filter above top
    // (bdrv_insert_node), freeze sf -> top -> mid, then the job's links.
    let hooks = driver_perms();
    let mut bg = BlockGraph::new(2);
    let nodes = nested_chain(
        &mut bg,
        &hooks,
        &[
            ("base", Driver::Qcow2, "base.img"),
            ("mid", Driver::Qcow2, "mid.img"),
            ("top", Driver::Qcow2, "top.img"),
        ],
    );
    let (mid, top) = (nodes[1], nodes[2]);
    let cor = Driver::CopyOnRead;
    let sf = bg
        .add_node(NodeSpec::new(cor.name(), cor.traits()).name("sf"))
        .unwrap();
    bg.attach_child(
        &hooks,
        sf,
        top,
        "file",
        cor.primary_child_role(&Options::new()),
    )
    .unwrap();
    bg.replace_node(&hooks, top, sf, ReplaceOptions::REPLACE_NODE)
        .unwrap();
    bg.freeze_chain(sf, Some(mid)).unwrap();
    let job = bg.add_root(RootKind::Job {
        job_type: "stream".into(),
        id: "s".into(),
    });
    let blk = bg.add_root(RootKind::Backend { name: None });
    let rw = Perm::CONSISTENT_READ | Perm::WRITE | Perm::WRITE_UNCHANGED;
    bg.root_attach_child(&hooks, job, sf, "main node", Perm::NONE, Perm::ALL)
        .unwrap();
    bg.root_attach_child(&hooks, blk, sf, "root", Perm::CONSISTENT_READ, rw)
        .unwrap();
    bg.root_attach_child(&hooks, job, top, "active node", Perm::NONE, rw)
        .unwrap();
    bg.root_attach_child(
        &hooks,
        job,
        mid,
        "intermediate node",
        Perm::NONE,
        Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED,
    )
    .unwrap();
    assert_eq!(
        edges(&bg),
        expected(&[
            ("base", "file", "base/file", &[CR], &[CR, WU]),
            ("blk(sf)", "root", "sf", &[CR], &[CR, W, WU]),
            ("job:s", "active node", "top", &[], &[CR, W, WU]),
            ("job:s", "intermediate node", "mid", &[], &[CR, WU]),
            ("job:s", "main node", "sf", &[], ALL),
            ("mid", "backing", "base", &[CR], &[CR, WU]),
            ("mid", "file", "mid/file", &[CR], &[CR, WU]),
            ("sf", "file", "top", &[CR, WU], &[CR, W, WU]),
            ("top", "backing", "mid", &[CR], ALL),
            ("top", "file", "top/file", &[CR, RS, W, WU], &[CR, WU]),
        ])
    );
    // The frozen links are exactly the COR chain: sf -> top and top -> mid.
    let g = bg.graph();
    let frozen: Vec<_> = g
        .nodes()
        .flat_map(|n| g.node(n).unwrap().children().to_vec())
        .filter(|&e| g.edge(e).unwrap().frozen)
        .map(|e| g.edge(e).unwrap().name().to_string())
        .collect();
    assert_eq!(frozen.len(), 2, "frozen links: {frozen:?}");
    assert_eq!(
        bg.set_file_or_backing(&hooks, top, Some(nodes[0]), ChildSlot::Backing)
            .unwrap_err()
            .to_string(),
        "Cannot change frozen 'backing' link from 'top' to 'mid'"
    );
}

/// Header strings as the image files say them.
struct Headers(Vec<(NodeId, &'static str)>);

impl BackingFileInfo for Headers {
    fn auto_backing_file(&self, node: NodeId) -> String {
        self.0
            .iter()
            .find(|(n, _)| *n == node)
            .map_or(String::new(), |(_, s)| s.to_string())
    }
}

#[test]
fn filenames_follow_bdrv_refresh_filename() {
    // A chain whose backing nodes are what the headers name keeps plain
    // filenames (030-overlapping-5: img-4's header became `img-0.img`).
    let hooks = driver_perms();
    let mut bg = BlockGraph::new(3);
    let nodes = nested_chain(
        &mut bg,
        &hooks,
        &[
            ("base", Driver::Qcow2, "base.img"),
            ("mid", Driver::Qcow2, "mid.img"),
        ],
    );
    let headers = Headers(vec![(nodes[1], "base.img")]);
    refresh_filename(&mut bg, &headers, nodes[1]).unwrap();
    assert_eq!(bg.graph().node(nodes[0]).unwrap().filename, "base.img");
    assert_eq!(bg.graph().node(nodes[1]).unwrap().filename, "mid.img");

    // A backing node that is not what the header names makes the overlay's
    // name a json: description that embeds its backing (qemu-block-graph.md
    // §5.6: "mid and top above a throttle node both had json: names").
    let headers = Headers(vec![(nodes[1], "other.img")]);
    refresh_filename(&mut bg, &headers, nodes[1]).unwrap();
    let mid_name = &bg.graph().node(nodes[1]).unwrap().filename;
    assert_eq!(
        mid_name,
        r#"json:{"backing": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.img"}}, "driver": "qcow2", "file": {"driver": "file", "filename": "mid.img"}}"#
    );
}
