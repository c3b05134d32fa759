//! block-stream, as iotest 030 and the conformance scenarios run it.

use super::{content, file_content, image_opts, make_files, s, Img};
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
    let base = image_opts("raw", "backing.img").with("node-name", s("base"));
    let mid = image_opts("qcow2", "mid.img")
        .with("node-name", s("mid"))
        .with("backing", OptValue::Dict(base));
    let top = image_opts("qcow2", "test.img")
        .with("node-name", s("drive0"))
        .with("backing", OptValue::Dict(mid));
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
