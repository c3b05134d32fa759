//! block-commit (intermediate and active), as iotest 030 and the
//! conformance scenarios run it against qemu-storage-daemon 10.0.2.

use super::{
    content, file_content, image_opts, make_files, nested_chain, numbered_chain, parallel_layer,
    parallel_layer_with_writable, s, Img,
};
use std::collections::{BTreeMap, BTreeSet};
use strata_block::{BlockLayer, CommitArgs, ErrorClass, MemFiles, StreamArgs};
use strata_formats::{Access, Compat, CreateOptions, Format, Image, MemStorage, Qcow2};
use strata_graph::{NodeId, OptValue, Perm};
use strata_jobs::{Cancel, JobEvent, JobType, Lookup, Wait};

const MIB: u64 = 1 << 20;
const K: u64 = 1024;

type Layer = BlockLayer<MemFiles>;

/// x-commit-errors' chain: top -> mid -> base (qcow2, 2 MiB).
fn three_images() -> MemFiles {
    make_files(&[
        Img::qcow2("base.img", 2 * MIB)
            .write(0xb1, 0, 768 * K)
            .write(0xb2, MIB, 64 * K),
        Img::qcow2("mid.img", 2 * MIB)
            .on("base.img", "qcow2")
            .write(0x41, 512 * K, 128 * K)
            .write(0x42, 1536 * K, 64 * K),
        Img::qcow2("top.img", 2 * MIB)
            .on("mid.img", "qcow2")
            .write(0x71, 0, 64 * K),
    ])
}

fn three_layer() -> Layer {
    let mut layer = BlockLayer::new(three_images(), 5);
    layer.blockdev_add(&top_mid_base()).unwrap();
    layer
}

/// top -> mid -> base, nested, all qcow2.
fn top_mid_base() -> strata_graph::Options {
    nested_chain(&[
        ("qcow2", "base.img", "base"),
        ("qcow2", "mid.img", "mid"),
        ("qcow2", "top.img", "top"),
    ])
}

/// The flt-f chain: top -> mid -> flt (throttle, tg0) -> base.
fn throttled_layer() -> Layer {
    let mut layer = BlockLayer::new(three_images(), 5);
    layer.add_throttle_group("tg0", BTreeMap::new()).unwrap();
    layer
        .blockdev_add(&image_opts("qcow2", "base.img").with("node-name", s("base")))
        .unwrap();
    layer
        .blockdev_add(
            &strata_graph::Options::new()
                .with("driver", s("throttle"))
                .with("file", s("base"))
                .with("node-name", s("flt"))
                .with("throttle-group", s("tg0")),
        )
        .unwrap();
    let mid = image_opts("qcow2", "mid.img")
        .with("node-name", s("mid"))
        .with("backing", s("flt"));
    layer
        .blockdev_add(
            &image_opts("qcow2", "top.img")
                .with("node-name", s("top"))
                .with("backing", OptValue::Dict(mid)),
        )
        .unwrap();
    layer
}

fn commit(device: &str, job_id: &str) -> CommitArgs {
    CommitArgs {
        device: device.into(),
        job_id: Some(job_id.into()),
        ..CommitArgs::default()
    }
}

fn stream(device: &str, job_id: &str) -> StreamArgs {
    StreamArgs {
        device: device.into(),
        job_id: Some(job_id.into()),
        ..StreamArgs::default()
    }
}

fn node(layer: &Layer, name: &str) -> NodeId {
    layer
        .core()
        .find_node(name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

/// The node's chain below it, by name (`#...` for implicit nodes).
fn chain(layer: &Layer, top: &str) -> Vec<String> {
    let g = layer.core().graph().graph();
    g.chain(node(layer, top))
        .map(|n| {
            let node = g.node(n).unwrap();
            if node.implicit {
                format!("#{}", node.driver())
            } else {
                node.name().to_string()
            }
        })
        .collect()
}

fn read_only(layer: &Layer, name: &str) -> bool {
    layer
        .core()
        .graph()
        .graph()
        .node(node(layer, name))
        .unwrap()
        .read_only
}

/// Per job: the status labels and BLOCK_JOB_* names, in order.
fn sequences(events: &[JobEvent]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events {
        out.entry(e.job_id().to_string())
            .or_default()
            .push(e.sequence_label().to_string());
    }
    out
}

/// `(name, device, type, len, offset, error)` of one BLOCK_JOB_* event.
type BlockEvent = (&'static str, String, JobType, u64, u64, Option<String>);

/// The BLOCK_JOB_COMPLETED/CANCELLED/READY events, in order.
fn block_events(events: &[JobEvent]) -> Vec<BlockEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            JobEvent::BlockJobCompleted {
                job_type,
                device,
                len,
                offset,
                error,
                ..
            } => Some((
                e.name(),
                device.clone(),
                *job_type,
                *len,
                *offset,
                error.clone(),
            )),
            JobEvent::BlockJobCancelled {
                job_type,
                device,
                len,
                offset,
                ..
            }
            | JobEvent::BlockJobReady {
                job_type,
                device,
                len,
                offset,
                ..
            } => Some((e.name(), device.clone(), *job_type, *len, *offset, None)),
            _ => None,
        })
        .collect()
}

/// Compares two guest views, naming the first differing offset.
fn same(a: &[u8], b: &[u8], what: &str) {
    let first = a.iter().zip(b).position(|(x, y)| x != y);
    assert!(
        a.len() == b.len() && first.is_none(),
        "{what}: lengths {} / {}, first difference at {first:?}",
        a.len(),
        b.len()
    );
}

fn take(layer: &mut Layer) -> Vec<JobEvent> {
    layer.take_events().into_iter().map(|t| t.event).collect()
}

/// Steps only job `id` until it is gone, following its timers.
fn run_job(layer: &mut Layer, id: &str) {
    for _ in 0..100_000 {
        match layer.jobs().wait(id) {
            Wait::Runnable => {
                layer.step_job(id).unwrap();
            }
            Wait::SleepUntil(t) => {
                layer.advance_to(t);
                layer.step_job(id).unwrap();
            }
            Wait::Done => return,
            other => panic!("job {id} waits for {other:?}"),
        }
    }
    panic!("job {id} never finished");
}

/// The qcow2 header's backing file and format of an image file.
fn header(layer: &Layer, file: &str) -> (Option<String>, Option<String>) {
    let mut storage = layer.core().files().get(file).unwrap().clone();
    let image = Image::open(&mut storage, Some(Format::Qcow2), Access::ReadOnly).unwrap();
    (
        image.backing_file().map(str::to_string),
        image.backing_format().map(str::to_string),
    )
}

/// Every edge as `(parent, name, child, perm, shared, frozen)`, by names
/// (`job:<id>` for jobs, `blk` for anonymous BlockBackends, `#<driver>`
/// for implicit nodes).
fn edges(layer: &Layer) -> BTreeSet<EdgeRow> {
    let g = layer.core().graph().graph();
    let name = |n: NodeId| {
        let node = g.node(n).unwrap();
        if node.implicit {
            format!("#{}", node.driver())
        } else {
            node.name().to_string()
        }
    };
    let mut out = BTreeSet::new();
    for n in g.nodes() {
        for &e in g.node(n).unwrap().parents() {
            let edge = g.edge(e).unwrap();
            let parent = match edge.parent() {
                strata_graph::Parent::Node(p) => name(p),
                strata_graph::Parent::Root(r) => match g.root(r).unwrap().kind() {
                    strata_graph::RootKind::Job { id, .. } => format!("job:{id}"),
                    strata_graph::RootKind::Backend { name } => {
                        name.clone().unwrap_or_else(|| "blk".into())
                    }
                },
            };
            out.insert((
                parent,
                edge.name().to_string(),
                name(n),
                edge.perm,
                edge.shared,
                edge.frozen,
            ));
        }
    }
    out
}

fn edge_row(
    parent: &str,
    name: &str,
    child: &str,
    perm: Perm,
    shared: Perm,
    frozen: bool,
) -> (String, String, String, Perm, Perm, bool) {
    (
        parent.into(),
        name.into(),
        child.into(),
        perm,
        shared,
        frozen,
    )
}

const CR: Perm = Perm::CONSISTENT_READ;
const W: Perm = Perm::WRITE;
const WU: Perm = Perm::WRITE_UNCHANGED;

fn assert_edges(layer: &Layer, expected: &[EdgeRow]) {
    let have = edges(layer);
    for row in expected {
        assert!(have.contains(row), "missing {row:?} in {have:#?}");
    }
}

/// An edge as `(parent, name, child, perm, shared, frozen)`.
type EdgeRow = (String, String, String, Perm, Perm, bool);

/// What a refused command must leave as it was: edges (with permissions
/// and frozen flags), read-only flags, jobs, and every file's bytes.
type Snapshot = (
    BTreeSet<EdgeRow>,
    Vec<bool>,
    usize,
    Vec<(String, strata_formats::ContentHash)>,
);

fn snapshot(layer: &Layer) -> Snapshot {
    let g = layer.core().graph().graph();
    let ro = g.nodes().map(|n| g.node(n).unwrap().read_only).collect();
    let files = layer
        .core()
        .files()
        .content_hashes()
        .into_iter()
        .map(|(path, hash)| (path.to_string(), hash))
        .collect();
    (edges(layer), ro, layer.jobs().len(), files)
}

#[test]
fn argument_errors_have_qemu_texts_and_change_nothing() {
    // x-commit-errors (QEMU 10.0.2's recorded texts and classes) plus the
    // other checks of qmp_block_commit, in QEMU's order.
    let mut layer = three_layer();
    let generic = ErrorClass::Generic;
    let cases: Vec<(CommitArgs, ErrorClass, &str)> = vec![
        (
            CommitArgs {
                top_node: Some("base".into()),
                base_node: Some("mid".into()),
                ..commit("top", "c")
            },
            generic,
            "'mid' is not in this backing file chain",
        ),
        (
            CommitArgs {
                top_node: Some("mid".into()),
                base_node: Some("mid".into()),
                ..commit("top", "c")
            },
            generic,
            "cannot commit an image into itself",
        ),
        (
            CommitArgs {
                top_node: Some("nope".into()),
                ..commit("top", "c")
            },
            generic,
            "Cannot find device='' nor node-name='nope'",
        ),
        (
            CommitArgs {
                base_node: Some("nope".into()),
                ..commit("top", "c")
            },
            generic,
            "Cannot find device='' nor node-name='nope'",
        ),
        (
            CommitArgs {
                base: Some("base.img".into()),
                base_node: Some("base".into()),
                ..commit("top", "c")
            },
            generic,
            "'base-node' and 'base' are mutually exclusive",
        ),
        (
            CommitArgs {
                top: Some("mid.img".into()),
                top_node: Some("mid".into()),
                ..commit("top", "c")
            },
            generic,
            "'top-node' and 'top' are mutually exclusive",
        ),
        (
            commit("nope", "c"),
            ErrorClass::DeviceNotFound,
            "Device 'nope' not found",
        ),
        (
            CommitArgs {
                job_id: None,
                ..commit("top", "")
            },
            generic,
            "Invalid job ID ''",
        ),
        (commit("mid", "c"), generic, "Need a root block node"),
        (
            CommitArgs {
                top: Some("nope.img".into()),
                ..commit("top", "c")
            },
            generic,
            "Top image file nope.img not found",
        ),
        (
            CommitArgs {
                base: Some("nope.img".into()),
                ..commit("top", "c")
            },
            generic,
            "Can't find 'nope.img' in the backing chain",
        ),
        (
            CommitArgs {
                backing_file: Some("x".into()),
                ..commit("top", "c")
            },
            generic,
            "'backing-file' specified, but 'top' is the active layer",
        ),
        (
            CommitArgs {
                top_node: Some("mid".into()),
                filter_node_name: Some("base".into()),
                ..commit("top", "c")
            },
            generic,
            "Duplicate nodes with node-name='base'",
        ),
        (
            CommitArgs {
                filter_node_name: Some("mid".into()),
                ..commit("top", "c")
            },
            generic,
            "Duplicate nodes with node-name='mid'",
        ),
        (
            CommitArgs {
                top_node: Some("mid".into()),
                speed: Some(-1),
                ..commit("top", "c")
            },
            generic,
            "Parameter 'speed' expects a non-negative value",
        ),
        (
            CommitArgs {
                speed: Some(-1),
                ..commit("top", "c")
            },
            generic,
            "Parameter 'speed' expects a non-negative value",
        ),
    ];
    for (args, class, text) in cases {
        let before = snapshot(&layer);
        let err = layer.block_commit(&args).unwrap_err();
        assert_eq!(
            (err.class(), err.to_string().as_str()),
            (class, text),
            "{args:?}"
        );
        assert_eq!(
            snapshot(&layer),
            before,
            "{text}: graph, perms, frozen flags, read-only flags"
        );
    }
    // Only the speed errors come after the job exists: created, then null.
    let seq = sequences(&take(&mut layer));
    // QEMU creates the job before commit_top: a duplicate filter name of
    // an intermediate commit comes after "created" too.
    assert_eq!(
        seq["c"],
        ["created", "null", "created", "null", "created", "null"]
    );
    assert_eq!(chain(&layer, "top"), ["top", "mid", "base"]);
    assert!(read_only(&layer, "mid") && read_only(&layer, "base"));
}

#[test]
fn a_filter_as_top_resolves_to_the_base() {
    // flt-f-commit-top-is-filter.
    let mut layer = throttled_layer();
    let args = CommitArgs {
        top_node: Some("flt".into()),
        base_node: Some("base".into()),
        ..commit("top", "c")
    };
    let err = layer.block_commit(&args).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Invalid files for merge: top and base are the same"
    );
    assert!(layer.jobs().is_empty());
}

#[test]
fn intermediate_commit_graph_while_running_matches_qemu() {
    // The graph QSD 10.0.2 showed for commit top-node=mid base-node=base
    // speed=1024 on top -> mid -> base, then a cancel restores it.
    let mut layer = three_layer();
    let args = CommitArgs {
        top_node: Some("mid".into()),
        base_node: Some("base".into()),
        speed: Some(1024),
        ..commit("top", "c")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    assert_eq!(chain(&layer, "top"), ["top", "#commit_top", "mid", "base"]);
    let all = Perm::ALL;
    assert_edges(
        &layer,
        &[
            edge_row("top", "backing", "#commit_top", Perm::NONE, all, false),
            edge_row("#commit_top", "backing", "mid", Perm::NONE, all, true),
            edge_row("mid", "backing", "base", Perm::NONE, all, true),
            edge_row("job:c", "main node", "top", Perm::NONE, all, false),
            edge_row(
                "job:c",
                "intermediate node",
                "mid",
                Perm::NONE,
                W | WU,
                false,
            ),
            edge_row("job:c", "base", "base", Perm::NONE, all, false),
            edge_row("blk", "root", "base", CR | W, CR | WU, false),
            edge_row("blk", "root", "mid", Perm::NONE, all, false),
        ],
    );
    assert!(
        !read_only(&layer, "base"),
        "the base is read-write while the job runs"
    );
    assert!(
        layer
            .core()
            .graph()
            .graph()
            .node(node(&layer, "top"))
            .unwrap()
            .parents()
            .len()
            == 1
    );
    // As in QSD: the first chunk (nothing above the base) is skipped, the
    // second (mid's 128 KiB at 512 KiB) copied, then it sleeps.
    let job = layer.jobs().get("c").unwrap();
    assert_eq!(job.progress(), (COMMITTED_FIRST, 2 * MIB));
    layer
        .cancel(Cancel::BlockJob { force: false }, "c")
        .unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let events = take(&mut layer);
    assert_eq!(
        sequences(&events)["c"],
        [
            "created",
            "running",
            "aborting",
            "BLOCK_JOB_CANCELLED",
            "concluded",
            "null"
        ]
    );
    assert_eq!(chain(&layer, "top"), ["top", "mid", "base"]);
    assert!(
        read_only(&layer, "base"),
        "clean reopens the base read-only"
    );
    let left: Vec<_> = edges(&layer)
        .into_iter()
        .filter(|e| e.5 || e.0.starts_with("job:") || e.0 == "blk")
        .collect();
    assert!(
        left.is_empty(),
        "no frozen link, job link or BlockBackend left: {left:?}"
    );
}

/// Progress before the first sleep: 512 KiB skipped, then mid's 128 KiB
/// at 512 KiB copied (the allocation query stops at the end of the run).
const COMMITTED_FIRST: u64 = 512 * 1024 + 128 * 1024;

#[test]
fn overlapping_2_intermediate_commit_blocks_streams() {
    // 030-overlapping-2: the texts QSD 10.0.2 recorded, then node6 -> node3.
    let mut layer = parallel_layer();
    let node8 = node(&layer, "node8");
    let before = content(&mut layer, node8);
    let node5_id = node(&layer, "node5");
    let node5_before = content(&mut layer, node5_id);
    let node6_id = node(&layer, "node6");
    let node6_before = content(&mut layer, node6_id);
    let args = CommitArgs {
        top: Some("img-5.img".into()),
        base: Some("img-3.img".into()),
        speed: Some(MIB as i64),
        ..commit("node8", "commit-node3")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    assert_eq!(
        chain(&layer, "node6"),
        [
            "node6",
            "#commit_top",
            "node5",
            "node4",
            "node3",
            "node2",
            "node1",
            "node0"
        ]
    );
    let refused = [
        (
            stream("node3", "stream-node3"),
            "Node 'node3' is busy: block device is in use by block job: commit",
        ),
        (
            StreamArgs {
                base: Some("img-2.img".into()),
                ..stream("node6", "stream-node6")
            },
            "Node 'node5' is busy: block device is in use by block job: commit",
        ),
        (
            StreamArgs {
                base: Some("img-2.img".into()),
                ..stream("node4", "stream-node4")
            },
            "Node 'node4' is busy: block device is in use by block job: commit",
        ),
        (
            StreamArgs {
                base: Some("img-4.img".into()),
                ..stream("node6", "stream-node6-v2")
            },
            "Node 'node5' is busy: block device is in use by block job: commit",
        ),
        (
            StreamArgs {
                base: Some("img-5.img".into()),
                ..stream("node8", "stream-drive0")
            },
            "Node 'node8' is busy: block device is in use by block job: commit",
        ),
    ];
    for (args, text) in refused {
        assert_eq!(layer.block_stream(&args).unwrap_err().to_string(), text);
    }
    layer.set_speed("commit-node3", 0).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let events = take(&mut layer);
    assert_eq!(
        sequences(&events)["commit-node3"],
        [
            "created",
            "running",
            "waiting",
            "pending",
            "BLOCK_JOB_COMPLETED",
            "concluded",
            "null"
        ]
    );
    assert_eq!(
        block_events(&events),
        [(
            "BLOCK_JOB_COMPLETED",
            "commit-node3".to_string(),
            JobType::Commit,
            4 * MIB,
            4 * MIB,
            None
        )]
    );
    assert_eq!(
        chain(&layer, "node8"),
        ["node8", "node7", "node6", "node3", "node2", "node1", "node0"]
    );
    let g = layer.core().graph().graph();
    assert!(g.find_node("node4").is_none() && g.find_node("node5").is_none());
    assert!(read_only(&layer, "node3"), "the base is read-only again");
    assert_eq!(
        header(&layer, "img-6.img"),
        (Some("img-3.img".into()), Some("qcow2".into()))
    );
    same(
        &content(&mut layer, node8),
        &before,
        "content(&mut layer, node8)",
    );
    let files = layer.core().files().clone();
    same(
        &file_content(&files, "img-3.img", "qcow2"),
        &node5_before,
        "img-3 holds what node5 showed",
    );
    same(
        &file_content(&files, "img-6.img", "qcow2"),
        &node6_before,
        "img-6 opened alone reads as node6 did",
    );
    assert!(edges(&layer)
        .iter()
        .all(|e| !e.5 && !e.0.starts_with("job:") && e.0 != "blk"));
}

#[test]
fn overlapping_3_active_commit_blocks_and_completes() {
    // 030-overlapping-3: READY with len 1.5 MiB, then complete; QSD keeps
    // the graph (no BlockBackend above node8), node3 stays read-write.
    let mut layer = parallel_layer();
    let node8 = node(&layer, "node8");
    let before = content(&mut layer, node8);
    let args = CommitArgs {
        base: Some("img-3.img".into()),
        speed: Some(MIB as i64),
        ..commit("node8", "commit-drive0")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    let all = Perm::ALL;
    let mut expected = vec![
        edge_row(
            "#mirror_top",
            "backing",
            "node8",
            Perm::NONE,
            CR | W | WU,
            true,
        ),
        edge_row(
            "job:commit-drive0",
            "main node",
            "#mirror_top",
            CR,
            CR | W | WU,
            false,
        ),
        edge_row(
            "job:commit-drive0",
            "source",
            "node8",
            Perm::NONE,
            CR | W | WU,
            false,
        ),
        edge_row(
            "job:commit-drive0",
            "target",
            "node3",
            Perm::NONE,
            all,
            false,
        ),
        edge_row("blk", "root", "node3", W, CR | W | WU, false),
        edge_row("node4", "backing", "node3", Perm::NONE, all, true),
        edge_row("node3", "backing", "node2", Perm::NONE, all, false),
    ];
    for i in 4..=7 {
        let n = format!("node{i}");
        expected.push(edge_row(
            "job:commit-drive0",
            "intermediate node",
            &n,
            Perm::NONE,
            W | WU,
            false,
        ));
    }
    assert_edges(&layer, &expected);
    assert!(!read_only(&layer, "node3"));
    let err = layer
        .block_stream(&StreamArgs {
            base: Some("img-3.img".into()),
            ..stream("node5", "stream-node6")
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Node 'node5' is busy: block device is in use by block job: commit"
    );
    layer.set_speed("commit-drive0", 0).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let err = layer.block_commit(&commit("node8", "x")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Need a root block node",
        "the job's links make node8 a non-root"
    );
    layer.complete(Lookup::BlockJob, "commit-drive0").unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let events = take(&mut layer);
    assert_eq!(
        sequences(&events)["commit-drive0"],
        [
            "created",
            "running",
            "ready",
            "BLOCK_JOB_READY",
            "waiting",
            "pending",
            "BLOCK_JOB_COMPLETED",
            "concluded",
            "null"
        ]
    );
    let len = 1536 * K;
    assert_eq!(
        block_events(&events),
        [
            (
                "BLOCK_JOB_READY",
                "commit-drive0".to_string(),
                JobType::Commit,
                len,
                len,
                None
            ),
            (
                "BLOCK_JOB_COMPLETED",
                "commit-drive0".to_string(),
                JobType::Commit,
                len,
                len,
                None
            ),
        ]
    );
    assert_eq!(
        chain(&layer, "node8"),
        ["node8", "node7", "node6", "node5", "node4", "node3", "node2", "node1", "node0"],
        "finding 9: nothing above node8 to move"
    );
    assert!(
        !read_only(&layer, "node3"),
        "active commit leaves the base read-write"
    );
    assert!(read_only(&layer, "node4"));
    let files = layer.core().files().clone();
    same(
        &file_content(&files, "img-3.img", "qcow2"),
        &before,
        "img-3 now reads like node8",
    );
    assert!(edges(&layer)
        .iter()
        .all(|e| !e.5 && !e.0.starts_with("job:") && e.0 != "blk"));
    assert!(layer.core().graph().graph().nodes().all(|n| !layer
        .core()
        .graph()
        .graph()
        .node(n)
        .unwrap()
        .implicit));
}

#[test]
fn overlapping_4_stream_cannot_freeze_into_the_commit_filter() {
    // 030-overlapping-4: node3 -> commit-filter -> node2; the stream's
    // temporary freeze of node4 -> node3 -> commit-filter is refused.
    let mut layer = parallel_layer();
    let node3_id = node(&layer, "node3");
    let node3_before = content(&mut layer, node3_id);
    let args = CommitArgs {
        top: Some("img-2.img".into()),
        base: Some("img-0.img".into()),
        filter_node_name: Some("commit-filter".into()),
        speed: Some(MIB as i64),
        job_id: None,
        ..commit("node8", "")
    };
    let err = layer.block_commit(&args).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Invalid job ID ''",
        "QSD has no drive0 BlockBackend"
    );
    let args = CommitArgs {
        job_id: Some("drive0".into()),
        ..args
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    assert_eq!(
        chain(&layer, "node3"),
        ["node3", "commit-filter", "node2", "node1", "node0"]
    );
    let err = layer
        .block_stream(&StreamArgs {
            base_node: Some("node2".into()),
            ..stream("node4", "node4")
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Cannot freeze 'backing' link to 'commit-filter'"
    );
    layer.set_speed("drive0", 0).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let events = take(&mut layer);
    assert_eq!(
        block_events(&events),
        [(
            "BLOCK_JOB_COMPLETED",
            "drive0".to_string(),
            JobType::Commit,
            4 * MIB,
            4 * MIB,
            None
        )]
    );
    assert_eq!(chain(&layer, "node8")[5..], ["node3", "node0"]);
    assert!(read_only(&layer, "node0"));
    assert_eq!(
        header(&layer, "img-3.img"),
        (Some("img-0.img".into()), Some("raw".into()))
    );
    let files = layer.core().files().clone();
    same(
        &file_content(&files, "img-3.img", "qcow2"),
        &node3_before,
        "file_content(&files, img-3.img, qcow2)",
    );
}

fn overlapping_5_start() -> Layer {
    let mut layer = parallel_layer();
    let args = CommitArgs {
        top_node: Some("node2".into()),
        base_node: Some("node0".into()),
        filter_node_name: Some("commit-filter".into()),
        speed: Some(MIB as i64),
        ..commit("node8", "drive0")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    let args = StreamArgs {
        base_node: Some("commit-filter".into()),
        ..stream("node4", "node4")
    };
    layer.block_stream(&args).unwrap();
    layer
}

#[test]
fn overlapping_5_commit_first_then_stream() {
    // 030-overlapping-5 in QEMU's usual order: drop_intermediate moves
    // node3 to node0; the stream re-reads its base at prepare.
    let mut layer = overlapping_5_start();
    let node8 = node(&layer, "node8");
    let before = content(&mut layer, node8);
    let node3_id = node(&layer, "node3");
    let node3_before = content(&mut layer, node3_id);
    layer.set_speed("drive0", 0).unwrap();
    run_job(&mut layer, "drive0");
    assert_eq!(
        header(&layer, "img-3.img"),
        (Some("img-0.img".into()), Some("raw".into()))
    );
    run_job(&mut layer, "node4");
    let events = take(&mut layer);
    assert_eq!(
        block_events(&events),
        [
            (
                "BLOCK_JOB_COMPLETED",
                "drive0".to_string(),
                JobType::Commit,
                4 * MIB,
                4 * MIB,
                None
            ),
            (
                "BLOCK_JOB_COMPLETED",
                "node4".to_string(),
                JobType::Stream,
                4 * MIB,
                4 * MIB,
                None
            ),
        ]
    );
    assert_eq!(
        chain(&layer, "node8"),
        ["node8", "node7", "node6", "node5", "node4", "node0"]
    );
    assert_eq!(
        header(&layer, "img-4.img"),
        (Some("img-0.img".into()), Some("raw".into()))
    );
    same(
        &content(&mut layer, node8),
        &before,
        "content(&mut layer, node8)",
    );
    let files = layer.core().files().clone();
    same(
        &file_content(&files, "img-4.img", "qcow2"),
        &node3_before,
        "file_content(&files, img-4.img, qcow2)",
    );
}

#[test]
fn overlapping_5_stream_first_then_commit() {
    // The other order (QSD confirmed both steps): node4 -> commit-filter
    // with header img-2.img/qcow2 (filter skipped); then the commit moves
    // node4 to node0 and rewrites its header to img-0.img/raw.
    let mut layer = overlapping_5_start();
    let node8 = node(&layer, "node8");
    let before = content(&mut layer, node8);
    run_job(&mut layer, "node4");
    assert_eq!(
        chain(&layer, "node4"),
        ["node4", "commit-filter", "node2", "node1", "node0"]
    );
    assert_eq!(
        header(&layer, "img-4.img"),
        (Some("img-2.img".into()), Some("qcow2".into()))
    );
    layer.set_speed("drive0", 0).unwrap();
    run_job(&mut layer, "drive0");
    let events = take(&mut layer);
    assert_eq!(
        block_events(&events)
            .iter()
            .map(|e| (e.0, e.1.as_str(), e.5.clone()))
            .collect::<Vec<_>>(),
        [
            ("BLOCK_JOB_COMPLETED", "node4", None),
            ("BLOCK_JOB_COMPLETED", "drive0", None)
        ]
    );
    assert_eq!(
        chain(&layer, "node8"),
        ["node8", "node7", "node6", "node5", "node4", "node0"]
    );
    assert_eq!(
        header(&layer, "img-4.img"),
        (Some("img-0.img".into()), Some("raw".into()))
    );
    assert_eq!(
        header(&layer, "img-3.img"),
        (Some("img-2.img".into()), Some("qcow2".into()))
    );
    same(
        &content(&mut layer, node8),
        &before,
        "content(&mut layer, node8)",
    );
}

#[test]
fn stream_commit_1_stream_ends_while_active_commit_runs() {
    // 030-stream-commit-1: READY(drive0, 1.5 MiB), COMPLETED(node2, 4 MiB),
    // COMPLETED(drive0); final node8 ... node3 -> node2 -> node0.
    let mut layer = parallel_layer();
    let node8 = node(&layer, "node8");
    let before = content(&mut layer, node8);
    layer
        .block_stream(&StreamArgs {
            base_node: Some("node0".into()),
            ..stream("node2", "node2")
        })
        .unwrap();
    let args = CommitArgs {
        base: Some("img-3.img".into()),
        ..commit("node8", "drive0")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    layer.complete(Lookup::BlockJob, "drive0").unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let events = take(&mut layer);
    let mut seen: Vec<_> = block_events(&events)
        .into_iter()
        .map(|e| (e.0, e.1, e.3, e.4, e.5))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "BLOCK_JOB_COMPLETED",
                "drive0".to_string(),
                1536 * K,
                1536 * K,
                None
            ),
            (
                "BLOCK_JOB_COMPLETED",
                "node2".to_string(),
                4 * MIB,
                4 * MIB,
                None
            ),
            (
                "BLOCK_JOB_READY",
                "drive0".to_string(),
                1536 * K,
                1536 * K,
                None
            ),
        ]
    );
    assert_eq!(
        chain(&layer, "node8"),
        ["node8", "node7", "node6", "node5", "node4", "node3", "node2", "node0"]
    );
    assert_eq!(
        header(&layer, "img-2.img"),
        (Some("img-0.img".into()), Some("raw".into()))
    );
    same(
        &content(&mut layer, node8),
        &before,
        "content(&mut layer, node8)",
    );
    let files = layer.core().files().clone();
    same(
        &file_content(&files, "img-3.img", "qcow2"),
        &before,
        "file_content(&files, img-3.img, qcow2)",
    );
}

#[test]
fn stream_commit_2_both_throttled() {
    // 030-stream-commit-2: READY(drive0, 512 KiB), both complete; final
    // node8 ... node5 -> node4 -> node0.
    let mut layer = parallel_layer();
    let node8 = node(&layer, "node8");
    let before = content(&mut layer, node8);
    let speed = Some(MIB as i64);
    layer
        .block_stream(&StreamArgs {
            base_node: Some("node0".into()),
            speed,
            ..stream("node4", "node4")
        })
        .unwrap();
    let args = CommitArgs {
        base: Some("img-5.img".into()),
        speed,
        ..commit("node8", "drive0")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    layer.set_speed("drive0", 0).unwrap();
    layer.set_speed("node4", 0).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    layer.complete(Lookup::BlockJob, "drive0").unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let events = take(&mut layer);
    let ready = block_events(&events)
        .into_iter()
        .find(|e| e.0 == "BLOCK_JOB_READY")
        .unwrap();
    assert_eq!(
        (ready.1.as_str(), ready.2, ready.3, ready.4),
        ("drive0", JobType::Commit, 512 * K, 512 * K)
    );
    let seq = sequences(&events);
    assert!(seq["drive0"].ends_with(&[
        "BLOCK_JOB_COMPLETED".into(),
        "concluded".into(),
        "null".into()
    ]));
    assert!(seq["node4"].ends_with(&[
        "BLOCK_JOB_COMPLETED".into(),
        "concluded".into(),
        "null".into()
    ]));
    assert_eq!(
        chain(&layer, "node8"),
        ["node8", "node7", "node6", "node5", "node4", "node0"]
    );
    assert!(!read_only(&layer, "node5"));
    same(
        &content(&mut layer, node8),
        &before,
        "content(&mut layer, node8)",
    );
    let files = layer.core().files().clone();
    same(
        &file_content(&files, "img-5.img", "qcow2"),
        &before,
        "file_content(&files, img-5.img, qcow2)",
    );
}

#[test]
fn active_commit_cancel_before_and_after_ready() {
    // QSD 10.0.2 probe: a cancel before READY aborts (CANCELLED, base
    // read-only again); a soft cancel after READY completes without the
    // pivot (COMPLETED, base stays read-write).
    let mut layer = three_layer();
    let args = CommitArgs {
        base_node: Some("base".into()),
        speed: Some(1024),
        ..commit("top", "a")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    layer
        .cancel(Cancel::BlockJob { force: false }, "a")
        .unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let events = take(&mut layer);
    assert_eq!(
        sequences(&events)["a"],
        [
            "created",
            "running",
            "aborting",
            "BLOCK_JOB_CANCELLED",
            "concluded",
            "null"
        ]
    );
    let cancelled = &block_events(&events)[0];
    // top's 64 KiB first (then the rate limit), of 256 KiB dirty (QSD
    // gives 256 KiB for these images in flt-f-active-commit-mid-filter).
    assert_eq!((cancelled.3, cancelled.4), (256 * K, 64 * K));
    assert!(read_only(&layer, "base"));
    assert_eq!(chain(&layer, "top"), ["top", "mid", "base"]);

    let args = CommitArgs {
        base_node: Some("base".into()),
        ..commit("top", "b")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    layer
        .cancel(Cancel::BlockJob { force: false }, "b")
        .unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let events = take(&mut layer);
    assert_eq!(
        sequences(&events)["b"],
        [
            "created",
            "running",
            "ready",
            "BLOCK_JOB_READY",
            "waiting",
            "pending",
            "BLOCK_JOB_COMPLETED",
            "concluded",
            "null"
        ]
    );
    assert_eq!(block_events(&events)[1].3, 256 * K);
    assert!(!read_only(&layer, "base"));
    assert_eq!(chain(&layer, "top"), ["top", "mid", "base"]);
    let top = node(&layer, "top");
    let shown = content(&mut layer, top);
    let files = layer.core().files().clone();
    same(
        &file_content(&files, "base.img", "qcow2"),
        &shown,
        "file_content(&files, base.img, qcow2)",
    );
}

#[test]
fn guest_writes_while_ready_reach_the_base() {
    // A write through mirror_top during READY lands in top and in the base.
    let mut layer = three_layer();
    let args = CommitArgs {
        base_node: Some("base".into()),
        filter_node_name: Some("mt".into()),
        ..commit("top", "c")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    assert_eq!(layer.jobs().get("c").unwrap().status().as_str(), "ready");
    let mt = node(&layer, "mt");
    layer.core_mut().write(mt, MIB, &[0x5a; 4096]).unwrap();
    layer.core_mut().write_zeroes(mt, 0, 4096).unwrap();
    layer.complete(Lookup::Job, "c").unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let top = node(&layer, "top");
    let shown = content(&mut layer, top);
    assert_eq!(&shown[MIB as usize..MIB as usize + 4096], &[0x5a; 4096]);
    assert_eq!(&shown[..4096], &[0; 4096]);
    let base = node(&layer, "base");
    same(
        &content(&mut layer, base),
        &shown,
        "content(&mut layer, base)",
    );
    assert!(layer.core().find_node("mt").is_none(), "the filter is gone");
}

#[test]
fn commit_into_a_filter_writes_its_json_name() {
    // flt-f-intermediate-commit-base-is-filter (finding 4): top -> flt,
    // header = flt's json: filename with format throttle.
    let mut layer = throttled_layer();
    let args = CommitArgs {
        top_node: Some("mid".into()),
        base_node: Some("flt".into()),
        ..commit("top", "c")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    assert_eq!(chain(&layer, "top"), ["top", "flt", "base"]);
    assert_eq!(
        header(&layer, "top.img"),
        (
            Some(r#"json:{"throttle-group": "tg0", "driver": "throttle", "file": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.img"}}}"#.into()),
            Some("throttle".into())
        )
    );
    let top = node(&layer, "top");
    let shown = content(&mut layer, top);
    let files = layer.core().files().clone();
    let mut expected = file_content(&files, "mid.img", "qcow2");
    expected[..64 * K as usize].fill(0x71);
    assert_eq!(shown, expected);
}

#[test]
fn commit_drops_a_filter_above_the_base() {
    // flt-f-intermediate-commit-filter-above-base: top -> base, header
    // base.img/qcow2; the filter (monitor-owned) survives outside the chain.
    let mut layer = throttled_layer();
    let args = CommitArgs {
        top_node: Some("mid".into()),
        base_node: Some("base".into()),
        ..commit("top", "c")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    assert_eq!(chain(&layer, "top"), ["top", "base"]);
    assert_eq!(chain(&layer, "flt"), ["flt", "base"]);
    assert_eq!(
        header(&layer, "top.img"),
        (Some("base.img".into()), Some("qcow2".into()))
    );
    let events = take(&mut layer);
    assert_eq!(
        sequences(&events)["c"],
        [
            "created",
            "running",
            "waiting",
            "pending",
            "BLOCK_JOB_COMPLETED",
            "concluded",
            "null"
        ]
    );
}

#[test]
fn active_commit_through_filters_keeps_the_graph() {
    // flt-f-active-commit-mid-filter: READY with len 256 KiB, graph and
    // headers unchanged, base holds everything.
    let mut layer = throttled_layer();
    let args = CommitArgs {
        base_node: Some("base".into()),
        ..commit("top", "c")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    layer.complete(Lookup::BlockJob, "c").unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let events = take(&mut layer);
    let done = block_events(&events);
    assert_eq!(
        (done[1].0, done[1].3, done[1].4),
        ("BLOCK_JOB_COMPLETED", 256 * K, 256 * K)
    );
    assert_eq!(chain(&layer, "top"), ["top", "mid", "flt", "base"]);
    let top = node(&layer, "top");
    let shown = content(&mut layer, top);
    let base = node(&layer, "base");
    same(
        &content(&mut layer, base),
        &shown,
        "content(&mut layer, base)",
    );
    assert_eq!(
        header(&layer, "top.img"),
        (Some("mid.img".into()), Some("qcow2".into()))
    );
}

fn five_layer() -> Layer {
    let files = make_files(&[
        Img::qcow2("c0.img", 2 * MIB).write(0xa0, 0, 512 * K),
        Img::qcow2("c1.img", 2 * MIB)
            .on("c0.img", "qcow2")
            .write(0xa1, 512 * K, 256 * K),
        Img::qcow2("c2.img", 2 * MIB)
            .on("c1.img", "qcow2")
            .write(0xa2, 768 * K, 256 * K),
        Img::qcow2("c3.img", 2 * MIB)
            .on("c2.img", "qcow2")
            .write(0xa3, MIB, 256 * K),
        Img::qcow2("c4.img", 2 * MIB)
            .on("c3.img", "qcow2")
            .write(0xa4, 1792 * K, 256 * K),
    ]);
    let mut layer = BlockLayer::new(files, 3);
    layer.blockdev_add(&numbered_chain(4)).unwrap();
    layer
}

#[test]
fn running_streams_block_commits() {
    // flt-e-stream-and-intermediate-commit and
    // flt-e-stream-base-is-commit-top (finding 8).
    let mut layer = five_layer();
    let args = StreamArgs {
        base_node: Some("n0".into()),
        filter_node_name: Some("fs".into()),
        speed: Some(1024),
        ..stream("n2", "st")
    };
    layer.block_stream(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    let args = CommitArgs {
        top_node: Some("n3".into()),
        base_node: Some("n2".into()),
        filter_node_name: Some("fc".into()),
        speed: Some(1024),
        ..commit("n4", "cm")
    };
    let err = layer.block_commit(&args).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Node 'fs' is busy: block device is in use by block job: stream"
    );
    layer.set_speed("st", 0).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();

    let mut layer = five_layer();
    let args = StreamArgs {
        base_node: Some("n2".into()),
        speed: Some(1024),
        ..stream("n4", "st")
    };
    layer.block_stream(&args).unwrap();
    let args = CommitArgs {
        top_node: Some("n2".into()),
        base_node: Some("n0".into()),
        filter_node_name: Some("fc".into()),
        ..commit("n4", "cm")
    };
    assert_eq!(
        layer.block_commit(&args).unwrap_err().to_string(),
        "Need a root block node"
    );
}

#[test]
fn stream_then_active_commit_both_complete() {
    // flt-e-stream-then-active-commit: n2 -> n0; READY len 256 KiB; n4
    // stays on top of n3.
    let mut layer = five_layer();
    let n4 = node(&layer, "n4");
    let before = content(&mut layer, n4);
    layer
        .block_stream(&StreamArgs {
            base_node: Some("n0".into()),
            speed: Some(1024),
            ..stream("n2", "st")
        })
        .unwrap();
    layer
        .block_commit(&CommitArgs {
            base_node: Some("n3".into()),
            speed: Some(1024),
            ..commit("n4", "cm")
        })
        .unwrap();
    layer.set_speed("st", 0).unwrap();
    layer.set_speed("cm", 0).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    layer.complete(Lookup::BlockJob, "cm").unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let events = take(&mut layer);
    let done: BTreeSet<_> = block_events(&events)
        .into_iter()
        .map(|e| (e.0, e.1, e.3, e.4))
        .collect();
    assert!(done.contains(&("BLOCK_JOB_COMPLETED", "st".to_string(), 2 * MIB, 2 * MIB)));
    assert!(done.contains(&("BLOCK_JOB_COMPLETED", "cm".to_string(), 256 * K, 256 * K)));
    assert_eq!(chain(&layer, "n4"), ["n4", "n3", "n2", "n0"]);
    same(&content(&mut layer, n4), &before, "content(&mut layer, n4)");
    assert!(!read_only(&layer, "n3"));
}

#[test]
fn intermediate_commit_on_error_report_and_retry() {
    // A failing write into the base (blkdebug under it, sector 1024 once):
    // report fails the job with QEMU's text and keeps the chain; stop
    // pauses, and the resumed job retries the chunk and completes; ignore
    // retries the chunk at once (commit's "ignore = retry").
    for (policy, expected_error) in [
        (
            strata_jobs::BlockdevOnError::Report,
            Some("Input/output error"),
        ),
        (strata_jobs::BlockdevOnError::Stop, None),
        (strata_jobs::BlockdevOnError::Ignore, None),
    ] {
        let files = make_files(&[
            Img::raw("base.raw", 2 * MIB).sector_numbers(),
            Img::qcow2("mid.img", 2 * MIB)
                .on("base.raw", "raw")
                .write(0x41, 512 * K, 128 * K),
            Img::qcow2("top.img", 2 * MIB)
                .on("mid.img", "qcow2")
                .write(0x71, 0, 64 * K),
        ]);
        let mut layer = BlockLayer::new(files, 5);
        let inject = strata_graph::Options::new()
            .with("event", s("write_aio"))
            .with("errno", OptValue::Int(5))
            .with("sector", OptValue::Int(1024))
            .with("once", OptValue::Bool(true));
        let blkdebug = strata_graph::Options::new()
            .with("driver", s("blkdebug"))
            .with("inject-error", OptValue::List(vec![OptValue::Dict(inject)]))
            .with(
                "image",
                OptValue::Dict(
                    strata_graph::Options::new()
                        .with("driver", s("file"))
                        .with("filename", s("base.raw")),
                ),
            );
        layer
            .blockdev_add(
                &strata_graph::Options::new()
                    .with("driver", s("raw"))
                    .with("node-name", s("base"))
                    .with("file", OptValue::Dict(blkdebug)),
            )
            .unwrap();
        let mid = image_opts("qcow2", "mid.img")
            .with("node-name", s("mid"))
            .with("backing", s("base"));
        layer
            .blockdev_add(
                &image_opts("qcow2", "top.img")
                    .with("node-name", s("top"))
                    .with("backing", OptValue::Dict(mid)),
            )
            .unwrap();
        let top = node(&layer, "top");
        let before = content(&mut layer, top);
        let args = CommitArgs {
            top_node: Some("mid".into()),
            base_node: Some("base".into()),
            on_error: Some(policy),
            ..commit("top", "c")
        };
        layer.block_commit(&args).unwrap();
        layer.run_until_idle(u64::MAX).unwrap();
        if policy == strata_jobs::BlockdevOnError::Stop {
            let job = layer.jobs().get("c").unwrap();
            assert_eq!(job.status().as_str(), "paused");
            assert_eq!(job.progress().0, 512 * K, "paused at the failing chunk");
            layer.resume(Lookup::BlockJob, "c").unwrap();
            layer.run_until_idle(u64::MAX).unwrap();
        }
        let events = take(&mut layer);
        let names: Vec<_> = events
            .iter()
            .map(|e| e.name())
            .filter(|n| n.starts_with("BLOCK_JOB"))
            .collect();
        assert_eq!(
            names,
            ["BLOCK_JOB_ERROR", "BLOCK_JOB_COMPLETED"],
            "{policy:?}"
        );
        assert!(matches!(
            &events
                .iter()
                .find(|e| e.name() == "BLOCK_JOB_ERROR")
                .unwrap(),
            JobEvent::BlockJobError {
                operation: strata_jobs::IoOperation::Write,
                ..
            }
        ));
        let done = block_events(&events);
        assert_eq!(done[0].5.as_deref(), expected_error, "{policy:?}");
        let expected_chain: &[&str] = if expected_error.is_some() {
            &["top", "mid", "base"]
        } else {
            &["top", "base"]
        };
        assert_eq!(chain(&layer, "top"), expected_chain, "{policy:?}");
        same(
            &content(&mut layer, top),
            &before,
            "content(&mut layer, top)",
        );
    }
}

#[test]
fn overlapping_1_a_running_stream_refuses_commits() {
    // 030-overlapping-1's block-commit rows: the COMMIT_TARGET walk meets
    // the stream's filter or its nodes; the last is the overlay check.
    let mut layer = parallel_layer();
    let args = StreamArgs {
        base: Some("img-1.img".into()),
        filter_node_name: Some("stream-filter".into()),
        speed: Some(MIB as i64),
        ..stream("node4", "stream-node4")
    };
    layer.block_stream(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    let busy = |n: &str| format!("Node '{n}' is busy: block device is in use by block job: stream");
    let refused = [
        (
            CommitArgs {
                base: Some("img-4.img".into()),
                ..commit("node8", "commit-node4")
            },
            busy("stream-filter"),
        ),
        (
            CommitArgs {
                base: Some("img-1.img".into()),
                top: Some("img-3.img".into()),
                ..commit("node8", "commit-node1")
            },
            busy("node3"),
        ),
        (
            CommitArgs {
                base: Some("img-0.img".into()),
                top: Some("img-1.img".into()),
                ..commit("node8", "commit-node0")
            },
            busy("node2"),
        ),
    ];
    for (args, text) in refused {
        let before = snapshot(&layer);
        assert_eq!(layer.block_commit(&args).unwrap_err().to_string(), text);
        assert_eq!(snapshot(&layer), before, "{text}");
    }
    layer.set_speed("stream-node4", 0).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    assert_eq!(chain(&layer, "node8")[4..], ["node4", "node1", "node0"]);
}

#[test]
fn overlapping_4_with_a_writable_stream_top_fails_the_commit() {
    // Reference probe B (QSD 10.0.2): node4 read-write, so the stream is
    // accepted and holds commit-filter as an intermediate node;
    // drop_intermediate then cannot move that job link ("Should not
    // change"), the commit fails with EIO and its abort restores node3 ->
    // node2; the stream ends with node4 -> node2; node0 keeps the data
    // already committed.
    let mut layer = parallel_layer_with_writable(Some(4));
    let node4 = node(&layer, "node4");
    let before = content(&mut layer, node4);
    let args = CommitArgs {
        top: Some("img-2.img".into()),
        base: Some("img-0.img".into()),
        filter_node_name: Some("commit-filter".into()),
        speed: Some(MIB as i64),
        ..commit("node8", "drive0")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    let args = StreamArgs {
        base_node: Some("node2".into()),
        speed: Some(MIB as i64),
        ..stream("node4", "node4")
    };
    layer.block_stream(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    assert_edges(
        &layer,
        &[edge_row(
            "job:node4",
            "intermediate node",
            "commit-filter",
            Perm::NONE,
            CR | WU,
            false,
        )],
    );
    layer.set_speed("drive0", 0).unwrap();
    run_job(&mut layer, "drive0");
    assert_eq!(
        chain(&layer, "node3"),
        ["node3", "node2", "node1", "node0"],
        "commit_abort put node2 back under node3"
    );
    assert_eq!(
        header(&layer, "img-3.img"),
        (Some("img-2.img".into()), Some("qcow2".into()))
    );
    assert!(read_only(&layer, "node0"));
    layer.set_speed("node4", 0).unwrap();
    run_job(&mut layer, "node4");
    let events = take(&mut layer);
    let done: Vec<_> = block_events(&events)
        .into_iter()
        .map(|e| (e.1, e.5))
        .collect();
    assert_eq!(
        done,
        [
            ("drive0".to_string(), Some("Input/output error".to_string())),
            ("node4".to_string(), None),
        ]
    );
    assert_eq!(chain(&layer, "node4"), ["node4", "node2", "node1", "node0"]);
    assert!(layer.core().find_node("commit-filter").is_none());
    same(
        &content(&mut layer, node4),
        &before,
        "node4 reads as before",
    );
    let files = layer.core().files().clone();
    let img0 = file_content(&files, "img-0.img", "raw");
    let img1 = file_content(&files, "img-1.img", "qcow2");
    same(
        &img0,
        &img1,
        "node0 holds what node2 showed (all committed before the failure)",
    );
}

#[test]
fn a_base_shorter_than_top_is_grown() {
    // commit_run and mirror_run truncate the base up to top's length
    // (blk_co_truncate) before copying: both kinds of commit complete and
    // the base shows what the committed layers showed.
    let files = make_files(&[
        Img::qcow2("base.img", MIB).write(1, 0, 64 * K),
        Img::qcow2("mid.img", 2 * MIB)
            .on("base.img", "qcow2")
            .write(2, MIB, 64 * K),
        Img::qcow2("top.img", 2 * MIB).on("mid.img", "qcow2"),
    ]);
    for top_node in [Some("mid"), None] {
        let mut layer = BlockLayer::new(files.clone(), 2);
        layer.blockdev_add(&top_mid_base()).unwrap();
        let mid = layer.core().find_node("mid").unwrap();
        let before = content(&mut layer, mid);
        let args = CommitArgs {
            top_node: top_node.map(str::to_string),
            base_node: Some("base".into()),
            ..commit("top", "c")
        };
        layer.block_commit(&args).unwrap();
        layer.run_until_idle(u64::MAX).unwrap();
        if top_node.is_none() {
            layer.complete(Lookup::BlockJob, "c").unwrap();
            layer.run_until_idle(u64::MAX).unwrap();
        }
        let events = take(&mut layer);
        let done = block_events(&events);
        assert_eq!(done.last().unwrap().5, None, "{top_node:?}");
        let base = layer.core().find_node("base").unwrap();
        assert_eq!(layer.core_mut().length(base).unwrap(), 2 * MIB);
        same(
            &content(&mut layer, base),
            &before,
            "base shows what mid showed",
        );
    }
}

#[test]
fn a_filter_above_the_commit_top_leaves_a_stale_header() {
    // Finding 5: top -> flt -> mid -> base, commit top-node=mid: the
    // graph becomes top -> flt -> base, but the only parent of the commit
    // filter is flt's `file` link (not COW), so top.img still names mid.img.
    let mut layer = BlockLayer::new(three_images(), 5);
    layer.add_throttle_group("tg0", BTreeMap::new()).unwrap();
    let base = image_opts("qcow2", "base.img").with("node-name", s("base"));
    layer
        .blockdev_add(
            &image_opts("qcow2", "mid.img")
                .with("node-name", s("mid"))
                .with("backing", OptValue::Dict(base)),
        )
        .unwrap();
    layer
        .blockdev_add(
            &strata_graph::Options::new()
                .with("driver", s("throttle"))
                .with("file", s("mid"))
                .with("node-name", s("flt"))
                .with("throttle-group", s("tg0")),
        )
        .unwrap();
    layer
        .blockdev_add(
            &image_opts("qcow2", "top.img")
                .with("node-name", s("top"))
                .with("backing", s("flt")),
        )
        .unwrap();
    let top = node(&layer, "top");
    let before = content(&mut layer, top);
    let args = CommitArgs {
        top_node: Some("mid".into()),
        base_node: Some("base".into()),
        ..commit("top", "c")
    };
    layer.block_commit(&args).unwrap();
    assert_eq!(
        chain(&layer, "top"),
        ["top", "flt", "#commit_top", "mid", "base"]
    );
    layer.run_until_idle(u64::MAX).unwrap();
    assert_eq!(chain(&layer, "top"), ["top", "flt", "base"]);
    assert_eq!(
        header(&layer, "top.img"),
        (Some("mid.img".into()), Some("qcow2".into())),
        "stale: the header was not rewritten"
    );
    same(&content(&mut layer, top), &before, "top reads as before");
}

/// A 1 MiB base (qcow2 of `compat`) under a top whose only data is
/// 256 KiB of zero clusters: what an active commit writes as zeroes.
fn zero_top_files(compat: Compat) -> MemFiles {
    let mut files = MemFiles::new();
    for (name, opts) in [
        ("base.img", CreateOptions::new(MIB).compat(compat)),
        (
            "top.img",
            CreateOptions::new(MIB).backing("base.img", Some("qcow2")),
        ),
    ] {
        let mut storage = MemStorage::new();
        Qcow2::create(&mut storage, &opts).unwrap();
        files.insert(name, storage);
    }
    let mut writer = BlockLayer::new(files, 0);
    let top = writer
        .blockdev_add(&image_opts("qcow2", "top.img").with("node-name", s("w")))
        .unwrap();
    writer
        .core_mut()
        .write_zeroes(top, 256 * K, 256 * K)
        .unwrap();
    writer.core().files().clone()
}

/// How the base is opened for [`throttled_zero_commit_is_ready_at_once`].
enum BaseOpening {
    /// As the top's inline `backing`, with these extra options.
    Inline(&'static [(&'static str, &'static str)]),
    /// By a `blockdev-add` of its own, with these extra options.
    Alone(&'static [(&'static str, &'static str)]),
}

/// Whether a 1 KiB/s active commit of [`zero_top_files`] is READY before
/// any virtual time passes: its zero write did not charge the rate limit.
fn throttled_zero_commit_is_ready_at_once(compat: Compat, base: BaseOpening) -> bool {
    let mut layer = BlockLayer::new(zero_top_files(compat), 5);
    let with_extra = |extra: &[(&str, &str)]| {
        extra.iter().fold(
            image_opts("qcow2", "base.img").with("node-name", s("base")),
            |opts, (key, value)| opts.with(*key, s(value)),
        )
    };
    let top = image_opts("qcow2", "top.img").with("node-name", s("top"));
    let top = match base {
        BaseOpening::Inline(extra) => top.with("backing", OptValue::Dict(with_extra(extra))),
        BaseOpening::Alone(extra) => {
            layer.blockdev_add(&with_extra(extra)).unwrap();
            top.with("backing", s("base"))
        }
    };
    layer.blockdev_add(&top).unwrap();
    let args = CommitArgs {
        speed: Some(1024),
        ..commit("top", "j")
    };
    layer.block_commit(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    sequences(&take(&mut layer))["j"]
        .iter()
        .any(|e| e == "BLOCK_JOB_READY")
}

#[test]
fn active_commit_zero_writes_cost_the_rate_limit_unless_the_base_unmaps() {
    // QSD 10.0.2 (x-commit-zero-write-rate-limit, and qcow2 traces of the
    // same chain): mirror_iteration charges a zero write only if the target
    // cannot write zeroes by unmapping, which needs BDRV_O_UNMAP (a child
    // its parent opened defaults to discard=unmap, a node of its own
    // blockdev-add to ignore) and a qcow2 v3 image.
    assert!(throttled_zero_commit_is_ready_at_once(
        Compat::V3,
        BaseOpening::Inline(&[])
    ));
    assert!(!throttled_zero_commit_is_ready_at_once(
        Compat::V3,
        BaseOpening::Inline(&[("discard", "ignore")])
    ));
    assert!(!throttled_zero_commit_is_ready_at_once(
        Compat::V2,
        BaseOpening::Inline(&[])
    ));
    assert!(!throttled_zero_commit_is_ready_at_once(
        Compat::V3,
        BaseOpening::Alone(&[])
    ));
    assert!(throttled_zero_commit_is_ready_at_once(
        Compat::V3,
        BaseOpening::Alone(&[("discard", "unmap")])
    ));
}
