//! block-stream, as iotest 030 and the conformance scenarios run it.

use super::{
    content, file_content, image_opts, make_files, nested_chain, numbered_chain, parallel_layer, s,
    Img,
};
use strata_block::{BlockLayer, StreamArgs};
use strata_graph::OptValue;

const MIB: u64 = 1 << 20;

/// 030 TestSingleDrive's images: backing.img (raw, sector numbers, 0x1 in
/// its first sector), mid.img (0x1 at 512 KiB), test.img (empty).
fn single_drive() -> Vec<Img> {
    vec![
        Img::raw("backing.img", MIB)
            .sector_numbers()
            .write(1, 0, 512),
        Img::qcow2("mid.img", MIB)
            .on("backing.img", "raw")
            .write(1, 512 * 1024, 512),
        Img::qcow2("test.img", MIB).on("mid.img", "qcow2"),
    ]
}

/// The nested blockdev-add of 030-single-*: drive0 -> mid -> base.
fn single_drive_layer() -> BlockLayer<strata_block::MemFiles> {
    let files = make_files(&single_drive());
    let mut layer = BlockLayer::new(files, 7);
    let top = nested_chain(&[
        ("raw", "backing.img", "base"),
        ("qcow2", "mid.img", "mid"),
        ("qcow2", "test.img", "drive0"),
    ]);
    layer.blockdev_add(&top).expect("blockdev-add");
    layer
}

fn stream(device: &str, job_id: &str) -> StreamArgs {
    StreamArgs {
        device: device.into(),
        job_id: Some(job_id.into()),
        ..StreamArgs::default()
    }
}

fn event_labels(layer: &mut BlockLayer<strata_block::MemFiles>) -> Vec<String> {
    layer
        .take_events()
        .iter()
        .map(|e| e.event.sequence_label().to_string())
        .collect()
}

#[test]
fn test_stream_copies_the_whole_chain() {
    // 030-single-stream: QEMU 10.0.2 completes; test.img has no backing
    // file, reads like the old chain.
    let mut layer = single_drive_layer();
    let drive0 = layer.core().find_node("drive0").unwrap();
    let before = content(&mut layer, drive0);
    layer
        .block_stream(&stream("drive0", "drive0"))
        .expect("block-stream");
    layer.run_until_idle(u64::MAX).unwrap();
    assert_eq!(
        event_labels(&mut layer),
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
    let g = layer.core().graph().graph();
    assert_eq!(g.cow_node(drive0), None, "drive0 keeps no backing node");
    assert!(
        g.find_node("mid").is_none(),
        "mid was owned by drive0 and is gone"
    );
    assert_eq!(content(&mut layer, drive0), before);
    let files = layer.core().files().clone();
    assert_eq!(
        file_content(&files, "test.img", "qcow2"),
        before,
        "the header no longer names a backing file"
    );
}

#[test]
fn test_stream_partial_keeps_the_base() {
    // 030-single-stream-partial: base=backing.img; mid's cluster is copied
    // and test.img's backing becomes backing.img (raw).
    let mut layer = single_drive_layer();
    let drive0 = layer.core().find_node("drive0").unwrap();
    let before = content(&mut layer, drive0);
    let args = StreamArgs {
        base: Some("backing.img".into()),
        ..stream("drive0", "drive0")
    };
    layer.block_stream(&args).expect("block-stream");
    layer.run_until_idle(u64::MAX).unwrap();
    let g = layer.core().graph().graph();
    let base = g.find_node("base").unwrap();
    assert_eq!(g.cow_node(drive0), Some(base));
    assert_eq!(content(&mut layer, drive0), before);
    let files = layer.core().files().clone();
    assert_eq!(
        file_content(&files, "test.img", "qcow2"),
        before,
        "header names backing.img as raw"
    );
}

#[test]
fn test_stream_no_op_copies_nothing() {
    // 030-single-stream-no-op: base=mid.img, len 0, graph unchanged.
    let mut layer = single_drive_layer();
    let drive0 = layer.core().find_node("drive0").unwrap();
    let args = StreamArgs {
        base: Some("mid.img".into()),
        ..stream("drive0", "drive0")
    };
    layer.block_stream(&args).expect("block-stream");
    layer.run_until_idle(u64::MAX).unwrap();
    let completed = layer
        .take_events()
        .into_iter()
        .find(|e| e.event.sequence_label() == "BLOCK_JOB_COMPLETED")
        .unwrap();
    let text = format!("{:?}", completed.event);
    assert!(
        text.contains("len: 0") && text.contains("offset: 0"),
        "{text}"
    );
    let g = layer.core().graph().graph();
    assert_eq!(g.cow_node(drive0), g.find_node("mid"));
}

#[test]
fn argument_errors_have_qemu_texts() {
    // 030-single-device-not-found, 030-single-job-id-missing,
    // 030-stream-base-node-name (QEMU 10.0.2's texts, recorded by the
    // conformance harness).
    let mut layer = single_drive_layer();
    let cases: Vec<(StreamArgs, &str)> = vec![
        (
            stream("nonexistent", "x"),
            "Cannot find device='nonexistent' nor node-name='nonexistent'",
        ),
        (
            StreamArgs {
                job_id: None,
                ..stream("mid", "")
            },
            "Invalid job ID ''",
        ),
        (
            StreamArgs {
                base_node: Some("none".into()),
                ..stream("drive0", "s")
            },
            "Cannot find device='' nor node-name='none'",
        ),
        (
            StreamArgs {
                base_node: Some("drive0".into()),
                ..stream("mid", "s")
            },
            "Node 'drive0' is not a backing image of 'mid'",
        ),
        (
            StreamArgs {
                base_node: Some("mid".into()),
                ..stream("mid", "s")
            },
            "Node 'mid' is not a backing image of 'mid'",
        ),
        (
            StreamArgs {
                base: Some("backing.img".into()),
                base_node: Some("base".into()),
                ..stream("drive0", "s")
            },
            "'base' and 'base-node' cannot be specified at the same time",
        ),
        (
            StreamArgs {
                base: Some("nonexistent.img".into()),
                ..stream("drive0", "s")
            },
            "Can't find 'nonexistent.img' in the backing chain",
        ),
        (
            StreamArgs {
                backing_file: Some("x".into()),
                ..stream("drive0", "s")
            },
            "backing file specified, but streaming the entire chain",
        ),
        (
            StreamArgs {
                filter_node_name: Some("mid".into()),
                ..stream("drive0", "s")
            },
            "Could not create node: Duplicate nodes with node-name='mid'",
        ),
        (
            StreamArgs {
                speed: Some(-1),
                ..stream("drive0", "s")
            },
            "Parameter 'speed' expects a non-negative value",
        ),
    ];
    for (args, text) in cases {
        let before = format!(
            "{:?}",
            layer.core().graph().graph().nodes().collect::<Vec<_>>()
        );
        let err = layer.block_stream(&args).unwrap_err();
        assert_eq!(err.to_string(), text, "{args:?}");
        let after = format!(
            "{:?}",
            layer.core().graph().graph().nodes().collect::<Vec<_>>()
        );
        assert_eq!(
            before, after,
            "a refused stream leaves the graph as it was ({text})"
        );
        assert!(layer.jobs().is_empty());
    }
    // The speed error comes after the job exists: created, then null.
    let labels = event_labels(&mut layer);
    assert_eq!(labels, ["created", "null"]);
}

/// 030 TestEIO / TestENOSPC: backing.img (raw, 2 MiB) behind a blkdebug
/// node failing the read at sector 1024 once (state toggled by set-state).
fn eio_layer(errno: i64) -> BlockLayer<strata_block::MemFiles> {
    let files = make_files(&[
        Img::raw("backing.img", 2 * MIB).sector_numbers(),
        Img::qcow2("test.img", 2 * MIB).on("backing.img", "raw"),
    ]);
    let mut layer = BlockLayer::new(files, 3);
    let rule = |pairs: &[(&str, OptValue)]| {
        let mut o = strata_graph::Options::new();
        for (k, v) in pairs {
            o.put(*k, v.clone());
        }
        OptValue::Dict(o)
    };
    let inject = rule(&[
        ("errno", OptValue::Int(errno)),
        ("event", s("read_aio")),
        ("immediately", OptValue::Bool(false)),
        ("once", OptValue::Bool(true)),
        ("sector", OptValue::Int(1024)),
        ("state", OptValue::Int(1)),
    ]);
    let set_state = vec![
        rule(&[
            ("event", s("read_aio")),
            ("new_state", OptValue::Int(2)),
            ("state", OptValue::Int(1)),
        ]),
        rule(&[
            ("event", s("read_aio")),
            ("new_state", OptValue::Int(1)),
            ("state", OptValue::Int(2)),
        ]),
    ];
    let image = strata_graph::Options::new()
        .with("driver", s("file"))
        .with("filename", s("backing.img"));
    let blkdebug = strata_graph::Options::new()
        .with("driver", s("blkdebug"))
        .with("image", OptValue::Dict(image))
        .with("inject-error", OptValue::List(vec![inject]))
        .with("set-state", OptValue::List(set_state));
    let base = strata_graph::Options::new()
        .with("driver", s("raw"))
        .with("file", OptValue::Dict(blkdebug))
        .with("node-name", s("base"));
    layer.blockdev_add(&base).expect("base");
    let top = image_opts("qcow2", "test.img")
        .with("node-name", s("drive0"))
        .with("backing", s("base"));
    layer.blockdev_add(&top).expect("drive0");
    layer
}

fn completed(layer: &mut BlockLayer<strata_block::MemFiles>) -> (Vec<String>, String) {
    let events = layer.take_events();
    let labels = events
        .iter()
        .map(|e| e.event.sequence_label().to_string())
        .collect();
    let done = events
        .iter()
        .find(|e| e.event.sequence_label() == "BLOCK_JOB_COMPLETED")
        .map(|e| format!("{:?}", e.event));
    (labels, done.unwrap_or_default())
}

#[test]
fn eio_report_fails_at_the_second_chunk() {
    // 030-eio-report: BLOCK_JOB_ERROR(read, report), COMPLETED with
    // "Input/output error" at offset 512 KiB; the backing file stays.
    let mut layer = eio_layer(5);
    layer.block_stream(&stream("drive0", "drive0")).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let (labels, done) = completed(&mut layer);
    assert_eq!(
        labels,
        [
            "created",
            "running",
            "BLOCK_JOB_ERROR",
            "aborting",
            "BLOCK_JOB_COMPLETED",
            "concluded",
            "null"
        ]
    );
    assert!(
        done.contains("offset: 524288") && done.contains("Input/output error"),
        "{done}"
    );
    let g = layer.core().graph().graph();
    assert_eq!(
        g.cow_node(g.find_node("drive0").unwrap()),
        g.find_node("base")
    );
}

#[test]
fn eio_ignore_runs_to_the_end_but_fails() {
    // 030-eio-ignore: offset == len, still an error, backing kept.
    let mut layer = eio_layer(5);
    let args = StreamArgs {
        on_error: Some(strata_jobs::BlockdevOnError::Ignore),
        ..stream("drive0", "drive0")
    };
    layer.block_stream(&args).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let (labels, done) = completed(&mut layer);
    assert!(
        labels.contains(&"BLOCK_JOB_ERROR".to_string()) && labels.contains(&"aborting".to_string()),
        "{labels:?}"
    );
    assert!(
        done.contains("offset: 2097152") && done.contains("Input/output error"),
        "{done}"
    );
}

#[test]
fn eio_stop_pauses_and_resumes() {
    // 030-eio-stop: paused with io-status failed at 512 KiB; after resume
    // the job completes cleanly and the backing file is gone.
    let mut layer = eio_layer(5);
    let args = StreamArgs {
        on_error: Some(strata_jobs::BlockdevOnError::Stop),
        ..stream("drive0", "drive0")
    };
    layer.block_stream(&args).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let job = layer.jobs().get("drive0").expect("the job waits");
    assert_eq!(job.status(), strata_jobs::JobStatus::Paused);
    assert_eq!(job.progress().0, 524288);
    assert_eq!(job.io_status(), strata_jobs::IoStatus::Failed);
    layer
        .resume(strata_jobs::Lookup::BlockJob, "drive0")
        .unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let (labels, done) = completed(&mut layer);
    assert_eq!(
        labels,
        [
            "created",
            "running",
            "BLOCK_JOB_ERROR",
            "paused",
            "running",
            "waiting",
            "pending",
            "BLOCK_JOB_COMPLETED",
            "concluded",
            "null"
        ]
    );
    assert!(
        done.contains("offset: 2097152") && !done.contains("error: Some"),
        "{done}"
    );
    let g = layer.core().graph().graph();
    assert_eq!(g.cow_node(g.find_node("drive0").unwrap()), None);
}

#[test]
fn enospc_with_on_error_enospc_pauses() {
    // 030-enospc-enospc: ENOSPC pauses (io-status nospace).
    let mut layer = eio_layer(28);
    let args = StreamArgs {
        on_error: Some(strata_jobs::BlockdevOnError::Enospc),
        ..stream("drive0", "drive0")
    };
    layer.block_stream(&args).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    assert_eq!(
        layer.jobs().get("drive0").unwrap().io_status(),
        strata_jobs::IoStatus::Nospace
    );
}

#[test]
fn parallel_streams_with_bottom_all_complete() {
    // 030-parallel-stream: four throttled jobs with bottom=, unthrottled
    // top-down; all complete, node8 -> node6 -> node4 -> node2 -> node0.
    let mut layer = parallel_layer();
    let node8 = layer.core().find_node("node8").unwrap();
    let before = content(&mut layer, node8);
    for i in [2, 4, 6, 8] {
        let args = StreamArgs {
            bottom: Some(format!("node{}", i - 1)),
            speed: Some(1024),
            ..stream(&format!("node{i}"), &format!("stream-node{i}"))
        };
        layer
            .block_stream(&args)
            .unwrap_or_else(|e| panic!("stream-node{i}: {e}"));
    }
    // Every job copies its first chunk and then sleeps for ~512 s.
    layer.run_until_idle(0).unwrap();
    for i in [8, 6, 4, 2] {
        layer.set_speed(&format!("stream-node{i}"), 0).unwrap();
    }
    layer.run_until_idle(u64::MAX).unwrap();
    let (labels, _) = completed(&mut layer);
    assert_eq!(
        labels
            .iter()
            .filter(|l| *l == "BLOCK_JOB_COMPLETED")
            .count(),
        4
    );
    let g = layer.core().graph().graph();
    let chain: Vec<&str> = g.chain(node8).map(|n| g.name(n)).collect();
    assert_eq!(chain, ["node8", "node6", "node4", "node2", "node0"]);
    assert_eq!(content(&mut layer, node8), before);
    let files = layer.core().files().clone();
    for i in [2, 4, 6, 8] {
        assert_eq!(
            file_content(&files, &format!("img-{i}.img"), "qcow2"),
            file_content(&files, &format!("img-{}.img", i - 1), "qcow2")
        );
    }
}

#[test]
fn parallel_streams_with_base_meet_the_lower_jobs_filter() {
    // 030-parallel-stream-base: with base= instead of bottom=, the walk of
    // stream-node4 meets stream-node2's implicit COR filter.
    let mut layer = parallel_layer();
    let base_stream = |i: usize| StreamArgs {
        base: Some(format!("img-{}.img", i - 2)),
        speed: Some(1024),
        ..stream(&format!("node{i}"), &format!("stream-node{i}"))
    };
    layer.block_stream(&base_stream(2)).unwrap();
    let err = layer.block_stream(&base_stream(4)).unwrap_err().to_string();
    assert!(
        err.starts_with("Node '#block")
            && err.ends_with("' is busy: block device is in use by block job: stream"),
        "{err}"
    );
}

#[test]
fn frozen_links_refuse_reopen_and_del() {
    // x-frozen-reopen: during a throttled stream n4 -> n1, changing n4's
    // backing is refused, and deleting chain members is blocked.
    let files = make_files(&[
        Img::qcow2("c0.img", 2 * MIB).write(0xa0, 0, 512 * 1024),
        Img::qcow2("c1.img", 2 * MIB)
            .on("c0.img", "qcow2")
            .write(0xa1, 512 * 1024, 256 * 1024),
        Img::qcow2("c2.img", 2 * MIB)
            .on("c1.img", "qcow2")
            .write(0xa2, 768 * 1024, 256 * 1024),
        Img::qcow2("c3.img", 2 * MIB)
            .on("c2.img", "qcow2")
            .write(0xa3, MIB, 256 * 1024),
        Img::qcow2("c4.img", 2 * MIB).on("c3.img", "qcow2"),
        Img::qcow2("spare.img", 2 * MIB),
    ]);
    let mut layer = BlockLayer::new(files, 5);
    layer.blockdev_add(&numbered_chain(4)).unwrap();
    layer
        .blockdev_add(
            &image_opts("qcow2", "spare.img")
                .with("node-name", s("spare"))
                .with("read-only", OptValue::Bool(true)),
        )
        .unwrap();
    let args = StreamArgs {
        base_node: Some("n1".into()),
        speed: Some(1024),
        ..stream("n4", "st")
    };
    layer.block_stream(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    let reopen = |backing: OptValue| {
        vec![image_opts("qcow2", "c4.img")
            .with("node-name", s("n4"))
            .with("backing", backing)]
    };
    for backing in [s("spare"), OptValue::Null] {
        let err = layer.blockdev_reopen(&reopen(backing)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot change frozen 'backing' link from 'n4' to 'n3'"
        );
    }
    assert_eq!(
        layer.blockdev_del("n3").unwrap_err().to_string(),
        "Node 'n3' is busy: block device is in use by block job: stream"
    );
    assert_eq!(
        layer.blockdev_del("n4").unwrap_err().to_string(),
        "Node 'n4' is busy: block device is in use by block job: stream"
    );
    layer.set_speed("st", 0).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let g = layer.core().graph().graph();
    let chain: Vec<&str> = g
        .chain(g.find_node("n4").unwrap())
        .map(|n| g.name(n))
        .collect();
    assert_eq!(chain, ["n4", "n1", "n0"]);
    // With the job gone, the node can be deleted.
    layer.blockdev_del("n4").unwrap();
    assert!(layer.core().find_node("n1").is_none());
}

#[test]
fn the_stream_graph_while_running_matches_qemu() {
    // x-stream-graph-during-job, through the block layer this time: the job
    // sleeps after its first chunk; sf sits above top.
    let files = make_files(&[
        Img::qcow2("base.img", 2 * MIB).write(1, 0, MIB),
        Img::qcow2("mid.img", 2 * MIB)
            .on("base.img", "qcow2")
            .write(2, MIB, 512 * 1024),
        Img::qcow2("top.img", 2 * MIB).on("mid.img", "qcow2"),
    ]);
    let mut layer = BlockLayer::new(files, 9);
    layer
        .blockdev_add(&nested_chain(&[
            ("qcow2", "base.img", "base"),
            ("qcow2", "mid.img", "mid"),
            ("qcow2", "top.img", "top"),
        ]))
        .unwrap();
    let args = StreamArgs {
        base_node: Some("base".into()),
        filter_node_name: Some("sf".into()),
        speed: Some(1024),
        ..stream("top", "s")
    };
    layer.block_stream(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    let graph = layer.query_block_graph();
    let names: std::collections::BTreeMap<u64, String> =
        graph.nodes.iter().map(|n| (n.id, n.name.clone())).collect();
    let edges: std::collections::BTreeSet<(String, String, String, Vec<&str>)> = graph
        .edges
        .iter()
        .map(|e| {
            (
                names[&e.parent].clone(),
                e.name.clone(),
                names[&e.child].clone(),
                e.perm.qapi_names(),
            )
        })
        .collect();
    for expected in [
        (
            "sf",
            "file",
            "top",
            vec!["consistent-read", "write-unchanged"],
        ),
        ("s", "main node", "sf", vec![]),
        ("s", "active node", "top", vec![]),
        ("s", "intermediate node", "mid", vec![]),
        ("", "root", "sf", vec!["consistent-read"]),
        ("top", "backing", "mid", vec!["consistent-read"]),
    ] {
        let row = (
            expected.0.to_string(),
            expected.1.to_string(),
            expected.2.to_string(),
            expected.3,
        );
        assert!(edges.contains(&row), "missing {row:?} in {edges:#?}");
    }
    let job = layer.jobs().get("s").unwrap();
    // Nothing to copy in the first two chunks (the base's data lies below
    // the base), so they cost nothing; the third is copied, then it sleeps.
    assert_eq!(
        job.progress().0,
        3 * 524288,
        "the job sleeps after its first copied chunk"
    );
}

#[test]
fn test_stream_intermediate_streams_into_mid() {
    // 030-single-stream-intermediate: device=mid; mid loses its backing
    // file, drive0 keeps mid.
    let mut layer = single_drive_layer();
    let mid = layer.core().find_node("mid").unwrap();
    let before = content(&mut layer, mid);
    layer.block_stream(&stream("mid", "stream-mid")).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let g = layer.core().graph().graph();
    let drive0 = g.find_node("drive0").unwrap();
    assert_eq!(
        g.chain(drive0).map(|n| g.name(n)).collect::<Vec<_>>(),
        ["drive0", "mid"]
    );
    assert!(
        g.node(mid).unwrap().read_only,
        "mid is read-only again after the job"
    );
    assert_eq!(content(&mut layer, mid), before);
    let files = layer.core().files().clone();
    assert_eq!(file_content(&files, "mid.img", "qcow2"), before);
}

#[test]
fn test_stream_pause_holds_the_offset() {
    // 030-single-stream-pause: a paused job's offset does not move while
    // time passes; after resume it completes.
    let mut layer = single_drive_layer();
    let args = StreamArgs {
        speed: Some(1024),
        ..stream("drive0", "drive0")
    };
    layer.block_stream(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    layer
        .pause(strata_jobs::Lookup::BlockJob, "drive0")
        .unwrap();
    layer.run_until_idle(0).unwrap();
    let paused_at = layer.jobs().get("drive0").unwrap().progress().0;
    assert_eq!(
        layer.jobs().get("drive0").unwrap().status(),
        strata_jobs::JobStatus::Paused
    );
    layer.set_speed("drive0", 0).unwrap();
    layer.advance_to(500_000_000);
    layer.run_until_idle(layer.now_ns()).unwrap();
    assert_eq!(layer.jobs().get("drive0").unwrap().progress().0, paused_at);
    layer
        .resume(strata_jobs::Lookup::BlockJob, "drive0")
        .unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    assert!(layer.jobs().is_empty());
    let g = layer.core().graph().graph();
    assert_eq!(g.cow_node(g.find_node("drive0").unwrap()), None);
}

#[test]
fn test_read_only_top_cannot_be_streamed_into() {
    // 030-single-read-only: ro-top (read-only, with an explicitly read-only
    // file) over mid: "Block node is read-only"; blockdev-del then works.
    let mut images = single_drive();
    images.push(Img::qcow2("ro-top.img", MIB));
    let files = make_files(&images);
    let mut layer = BlockLayer::new(files, 7);
    layer
        .blockdev_add(&nested_chain(&[
            ("raw", "backing.img", "base"),
            ("qcow2", "mid.img", "mid"),
            ("qcow2", "test.img", "drive0"),
        ]))
        .unwrap();
    let file = strata_graph::Options::new()
        .with("driver", s("file"))
        .with("filename", s("ro-top.img"))
        .with("read-only", OptValue::Bool(true));
    let ro_top = strata_graph::Options::new()
        .with("driver", s("qcow2"))
        .with("file", OptValue::Dict(file))
        .with("node-name", s("ro-top"))
        .with("read-only", OptValue::Bool(true))
        .with("backing", s("mid"));
    layer.blockdev_add(&ro_top).unwrap();
    let args = StreamArgs {
        base_node: Some("base".into()),
        ..stream("ro-top", "stream")
    };
    assert_eq!(
        layer.block_stream(&args).unwrap_err().to_string(),
        "Block node is read-only"
    );
    let g = layer.core().graph().graph();
    assert!(g.node(g.find_node("ro-top").unwrap()).unwrap().read_only);
    layer.blockdev_del("ro-top").unwrap();
    assert!(layer.core().find_node("ro-top").is_none());
}

#[test]
fn bottom_must_be_in_the_chain() {
    // flt-c-bottom-errors: "Node 'other' is not in a chain starting from 'top'".
    let mut layer = single_drive_layer();
    layer
        .blockdev_add(
            &image_opts("qcow2", "mid.img")
                .with("node-name", s("other"))
                .with("read-only", OptValue::Bool(true)),
        )
        .unwrap();
    let args = StreamArgs {
        bottom: Some("other".into()),
        ..stream("drive0", "s")
    };
    assert_eq!(
        layer.block_stream(&args).unwrap_err().to_string(),
        "Node 'other' is not in a chain starting from 'drive0'"
    );
}

#[test]
fn test_quorum_child_is_streamed_under_the_quorum() {
    // 030 TestQuorum.test_stream_quorum: three children img-i over
    // backing-i; stream node0 (a quorum child): its COR filter goes between
    // the quorum and node0, and afterwards node0 holds backing-0's data.
    let mut images = Vec::new();
    for i in 0..3 {
        let backing: &'static str = ["backing-0.img", "backing-1.img", "backing-2.img"][i];
        let img: &'static str = ["img-0.img", "img-1.img", "img-2.img"][i];
        images.push(Img::qcow2(backing, MIB).write(0x55, 0, 1024));
        images.push(Img::qcow2(img, MIB).on(backing, "qcow2"));
    }
    let mut layer = BlockLayer::new(make_files(&images), 13);
    let children: Vec<OptValue> = (0..3)
        .map(|i| {
            OptValue::Dict(
                image_opts("qcow2", &format!("img-{i}.img"))
                    .with("node-name", s(&format!("node{i}"))),
            )
        })
        .collect();
    let quorum = strata_graph::Options::new()
        .with("driver", s("quorum"))
        .with("node-name", s("quorum"))
        .with("vote-threshold", OptValue::Int(2))
        .with("children", OptValue::List(children));
    let q = layer.blockdev_add(&quorum).unwrap();
    let before = content(&mut layer, q);
    layer
        .block_stream(&stream("node0", "stream-node0"))
        .unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let g = layer.core().graph().graph();
    let node0 = g.find_node("node0").unwrap();
    assert_eq!(g.cow_node(node0), None);
    assert_eq!(content(&mut layer, q), before);
    let files = layer.core().files().clone();
    assert_eq!(
        file_content(&files, "img-0.img", "qcow2")[..1024],
        [0x55; 1024]
    );
}

#[test]
fn test_smaller_backing_file_finishes() {
    // 030-smaller-backing: a 1 MiB raw backing under a 2 MiB qcow2; the job
    // finishes at the end of the backing file, and only the first MiB of
    // test.img holds data.
    let files = make_files(&[
        Img::raw("backing.img", MIB).sector_numbers(),
        Img::qcow2("test.img", 2 * MIB).on("backing.img", "raw"),
    ]);
    let mut layer = BlockLayer::new(files, 17);
    let top = nested_chain(&[
        ("raw", "backing.img", "base"),
        ("qcow2", "test.img", "drive0"),
    ]);
    let drive0 = layer.blockdev_add(&top).unwrap();
    let before = content(&mut layer, drive0);
    layer.block_stream(&stream("drive0", "drive0")).unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    assert!(layer.jobs().is_empty());
    assert_eq!(content(&mut layer, drive0), before);
    let (kind, n) = layer.core_mut().block_status(drive0, 0, 2 * MIB).unwrap();
    assert_eq!((kind, n), (strata_formats::ExtentKind::Data, MIB));
    let (kind, _) = layer.core_mut().block_status(drive0, MIB, MIB).unwrap();
    assert_ne!(kind, strata_formats::ExtentKind::Data);
}

#[test]
fn test_stream_stop_cancels_cleanly() {
    // 030-stream-stop: a cancelled stream emits BLOCK_JOB_CANCELLED and
    // leaves the graph as it was (the COR filter is gone).
    let mut layer = single_drive_layer();
    let names_before: Vec<String> = {
        let g = layer.core().graph().graph();
        g.nodes().map(|n| g.name(n).to_string()).collect()
    };
    let args = StreamArgs {
        speed: Some(1024),
        ..stream("drive0", "drive0")
    };
    layer.block_stream(&args).unwrap();
    layer.run_until_idle(0).unwrap();
    layer
        .cancel(strata_jobs::Cancel::BlockJob { force: false }, "drive0")
        .unwrap();
    layer.run_until_idle(u64::MAX).unwrap();
    let labels = event_labels(&mut layer);
    assert_eq!(
        labels,
        [
            "created",
            "running",
            "aborting",
            "BLOCK_JOB_CANCELLED",
            "concluded",
            "null"
        ]
    );
    let g = layer.core().graph().graph();
    let names_after: Vec<String> = g.nodes().map(|n| g.name(n).to_string()).collect();
    assert_eq!(names_after, names_before);
    assert_eq!(
        g.cow_node(g.find_node("drive0").unwrap()),
        g.find_node("mid")
    );
}

#[test]
fn throttled_reads_take_virtual_time() {
    // 030-set-speed's slow backing: a throttle node with bps-read 1 MiB/s
    // under the raw backing makes a 2 MiB stream last about 2 s of virtual
    // time; iops-read 4 makes each request cost 250 ms.
    for (limit, value, expect_ns) in [
        ("bps-read", MIB, 2_000_000_000u64),
        ("iops-read", 4, 1_000_000_000),
    ] {
        let files = make_files(&[
            Img::raw("backing.img", 2 * MIB).sector_numbers(),
            Img::qcow2("test.img", 2 * MIB).on("backing.img", "raw"),
        ]);
        let mut layer = BlockLayer::new(files, 19);
        layer
            .add_throttle_group("slow", [(limit.to_string(), value)].into_iter().collect())
            .unwrap();
        let file = strata_graph::Options::new()
            .with("driver", s("file"))
            .with("filename", s("backing.img"));
        let throttle = strata_graph::Options::new()
            .with("driver", s("throttle"))
            .with("file", OptValue::Dict(file))
            .with("throttle-group", s("slow"));
        let base = strata_graph::Options::new()
            .with("driver", s("raw"))
            .with("file", OptValue::Dict(throttle))
            .with("node-name", s("base"));
        layer.blockdev_add(&base).unwrap();
        layer
            .blockdev_add(
                &image_opts("qcow2", "test.img")
                    .with("node-name", s("drive0"))
                    .with("backing", s("base")),
            )
            .unwrap();
        layer.block_stream(&stream("drive0", "drive0")).unwrap();
        layer.run_until_idle(u64::MAX).unwrap();
        assert!(layer.jobs().is_empty(), "{limit}");
        let done = layer
            .take_events()
            .into_iter()
            .find(|e| e.event.sequence_label() == "BLOCK_JOB_COMPLETED")
            .unwrap();
        assert!(
            done.time_ns >= expect_ns * 3 / 4 && done.time_ns <= expect_ns * 5 / 4,
            "{limit}: completed at {} ns",
            done.time_ns
        );
    }
}

#[test]
fn block_status_above_reports_the_first_layer_that_maps() {
    // What an NBD export's base:allocation shows (qemu-storage-daemon
    // 10.0.2 exporting the same chain gives data 0–1M, zero 1–2M, data
    // 2–2.5M, zero 2.5–4M through `qemu-img map` on the export).
    let files = make_files(&[
        Img::qcow2("base.img", 4 * MIB).write(1, 0, MIB),
        Img::qcow2("top.img", 4 * MIB)
            .on("base.img", "qcow2")
            .write(2, 2 * MIB, 512 * 1024),
    ]);
    let mut layer = BlockLayer::new(files, 23);
    let top = layer
        .blockdev_add(&nested_chain(&[
            ("qcow2", "base.img", "base"),
            ("qcow2", "top.img", "top"),
        ]))
        .unwrap();
    let core = layer.core_mut();
    use strata_block::ExtentKind::{Data, Unallocated};
    assert_eq!(
        core.block_status_above(top, 0, 4 * MIB).unwrap(),
        (Data, MIB)
    );
    assert_eq!(
        core.block_status_above(top, MIB, 3 * MIB).unwrap(),
        (Unallocated, MIB)
    );
    assert_eq!(
        core.block_status_above(top, 2 * MIB, 2 * MIB).unwrap(),
        (Data, 512 * 1024)
    );
    assert_eq!(
        core.block_status_above(top, 2 * MIB + 512 * 1024, 1536 * 1024)
            .unwrap(),
        (Unallocated, 1536 * 1024)
    );
}
