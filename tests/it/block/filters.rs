//! The 2020 thread's filter cases (a)–(d) end to end: a chain with a
//! throttle filter, a stream, and the graph and header afterwards, each row
//! as qemu-storage-daemon 10.0.2 left it (scenario named on the row).

use super::{image_opts, make_files, numbered_chain, s, Img};
use std::collections::BTreeMap;
use strata_block::{BlockLayer, MemFiles, StreamArgs};
use strata_formats::{Access, Image, Storage};
use strata_graph::OptValue;

const K: u64 = 1024;

/// How the chain is built.
#[derive(Clone, Copy)]
enum Layout {
    /// top -> mid -> flt -> base (flt added by reference over base).
    MidFilterBase,
    /// top -> flt -> mid -> base (flt wraps a nested mid).
    FilterAboveMid,
    /// top -> flt -> base.
    TopFilterBase,
}

fn layer(layout: Layout) -> BlockLayer<MemFiles> {
    let files = make_files(&[
        Img::qcow2("base.img", 2048 * K)
            .write(1, 0, 768 * K)
            .write(2, 1024 * K, 64 * K),
        Img::qcow2("mid.img", 2048 * K)
            .on("base.img", "qcow2")
            .write(3, 512 * K, 128 * K)
            .write(4, 1536 * K, 64 * K),
        Img::qcow2("top.img", 2048 * K).on(
            match layout {
                Layout::TopFilterBase => "base.img",
                _ => "mid.img",
            },
            "qcow2",
        ),
    ]);
    let mut layer = BlockLayer::new(files, 21);
    layer.add_throttle_group("tg0", BTreeMap::new()).unwrap();
    let throttle = |file: OptValue| {
        strata_graph::Options::new()
            .with("driver", s("throttle"))
            .with("file", file)
            .with("node-name", s("flt"))
            .with("throttle-group", s("tg0"))
    };
    let base = image_opts("qcow2", "base.img").with("node-name", s("base"));
    match layout {
        Layout::MidFilterBase => {
            layer.blockdev_add(&base).unwrap();
            layer.blockdev_add(&throttle(s("base"))).unwrap();
            let mid = image_opts("qcow2", "mid.img")
                .with("node-name", s("mid"))
                .with("backing", s("flt"));
            let top = image_opts("qcow2", "top.img")
                .with("node-name", s("top"))
                .with("backing", OptValue::Dict(mid));
            layer.blockdev_add(&top).unwrap();
        }
        Layout::FilterAboveMid => {
            let mid = image_opts("qcow2", "mid.img")
                .with("node-name", s("mid"))
                .with("backing", OptValue::Dict(base));
            layer.blockdev_add(&throttle(OptValue::Dict(mid))).unwrap();
            layer
                .blockdev_add(
                    &image_opts("qcow2", "top.img")
                        .with("node-name", s("top"))
                        .with("backing", s("flt")),
                )
                .unwrap();
        }
        Layout::TopFilterBase => {
            layer.blockdev_add(&base).unwrap();
            layer.blockdev_add(&throttle(s("base"))).unwrap();
            layer
                .blockdev_add(
                    &image_opts("qcow2", "top.img")
                        .with("node-name", s("top"))
                        .with("backing", s("flt")),
                )
                .unwrap();
        }
    }
    layer
}

/// The header of an image file: backing file and format.
fn header(files: &MemFiles, name: &str) -> (Option<String>, Option<String>) {
    let mut storage = files.get(name).expect("file").clone();
    let image =
        Image::open(&mut storage as &mut dyn Storage, None, Access::ReadOnly).expect("open");
    (
        image.backing_file().map(str::to_string),
        image.backing_format().map(str::to_string),
    )
}

struct Case {
    scenario: &'static str,
    layout: Layout,
    args: StreamArgs,
    /// The error text, or the chain below top afterwards.
    outcome: Result<&'static [&'static str], &'static str>,
    /// top.img's header afterwards.
    top_header: Option<&'static str>,
}

fn args(f: impl FnOnce(&mut StreamArgs)) -> StreamArgs {
    let mut a = StreamArgs {
        device: "top".into(),
        job_id: Some("s".into()),
        ..StreamArgs::default()
    };
    f(&mut a);
    a
}

fn cases() -> Vec<Case> {
    use Layout::*;
    vec![
        Case {
            scenario: "flt-a-throttle-mid-filter-base",
            layout: MidFilterBase,
            args: args(|a| a.base_node = Some("base".into())),
            outcome: Ok(&["top", "base"]),
            top_header: Some("base.img"),
        },
        Case {
            scenario: "flt-a-throttle-base-filename",
            layout: MidFilterBase,
            args: args(|a| a.base = Some("base.img".into())),
            outcome: Ok(&["top", "base"]),
            top_header: Some("base.img"),
        },
        Case {
            scenario: "flt-a-throttle-base-is-filter",
            layout: MidFilterBase,
            args: args(|a| a.base_node = Some("flt".into())),
            outcome: Ok(&["top", "flt", "base"]),
            top_header: Some("base.img"),
        },
        Case {
            scenario: "flt-a-throttle-full-stream",
            layout: MidFilterBase,
            args: args(|_| {}),
            outcome: Ok(&["top"]),
            top_header: None,
        },
        Case {
            scenario: "flt-a-throttle-filter-above-mid",
            layout: FilterAboveMid,
            args: args(|a| a.base_node = Some("base".into())),
            outcome: Ok(&["top", "base"]),
            top_header: Some("base.img"),
        },
        Case {
            scenario: "flt-a-throttle-top-filter-base",
            layout: TopFilterBase,
            args: args(|a| a.base_node = Some("base".into())),
            outcome: Ok(&["top", "base"]),
            top_header: Some("base.img"),
        },
        Case {
            scenario: "flt-c-bottom-keeps-filter",
            layout: MidFilterBase,
            args: args(|a| a.bottom = Some("mid".into())),
            outcome: Ok(&["top", "flt", "base"]),
            top_header: Some("base.img"),
        },
        Case {
            scenario: "flt-c-bottom-is-top",
            layout: MidFilterBase,
            args: args(|a| a.bottom = Some("top".into())),
            outcome: Ok(&["top", "mid", "flt", "base"]),
            // qsd 10.0.2, same layout: stream_prepare rewrites the header
            // with mid's filename, a json: one because mid's backing (the
            // filter) overrides its header.
            top_header: Some(MID_OVER_FILTER),
        },
        Case {
            scenario: "flt-c-bottom-errors",
            layout: MidFilterBase,
            args: args(|a| a.bottom = Some("flt".into())),
            outcome: Err("Node 'flt' is a filter, use a non-filter node as 'bottom'"),
            top_header: Some("mid.img"),
        },
        Case {
            scenario: "flt-c-bottom-errors",
            layout: MidFilterBase,
            args: args(|a| {
                a.bottom = Some("mid".into());
                a.base_node = Some("base".into());
            }),
            outcome: Err("'bottom' and 'base-node' cannot be specified at the same time"),
            top_header: Some("mid.img"),
        },
        Case {
            scenario: "flt-c-bottom-errors",
            layout: MidFilterBase,
            args: args(|a| {
                a.bottom = Some("mid".into());
                a.base = Some("base.img".into());
            }),
            outcome: Err("'base' and 'bottom' cannot be specified at the same time"),
            top_header: Some("mid.img"),
        },
        Case {
            scenario: "flt-c-bottom-errors",
            layout: MidFilterBase,
            args: args(|a| a.bottom = Some("nope".into())),
            outcome: Err("Cannot find device='' nor node-name='nope'"),
            top_header: Some("mid.img"),
        },
        Case {
            scenario: "flt-c-bottom-errors",
            layout: MidFilterBase,
            args: args(|a| {
                a.bottom = Some("mid".into());
                a.backing_file = Some("x.img".into());
            }),
            outcome: Err("backing file specified, but streaming the entire chain"),
            top_header: Some("mid.img"),
        },
        Case {
            scenario: "flt-d-backing-file-given",
            layout: MidFilterBase,
            args: args(|a| {
                a.base_node = Some("base".into());
                a.backing_file = Some("base.img".into());
            }),
            outcome: Ok(&["top", "base"]),
            top_header: Some("base.img"),
        },
        Case {
            scenario: "flt-d-bottom-filter-string",
            layout: MidFilterBase,
            args: args(|a| a.bottom = Some("mid".into())),
            outcome: Ok(&["top", "flt", "base"]),
            top_header: Some("base.img"),
        },
    ]
}

/// The json: filename of `mid` over the throttle filter, as QEMU writes it.
const MID_OVER_FILTER: &str = r#"json:{"backing": {"throttle-group": "tg0", "driver": "throttle", "file": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.img"}}}, "driver": "qcow2", "file": {"driver": "file", "filename": "mid.img"}}"#;

#[test]
fn stream_through_filters_matches_qemu() {
    for case in cases() {
        let mut layer = layer(case.layout);
        let top = layer.core().find_node("top").unwrap();
        let result = layer.block_stream(&case.args);
        layer.run_until_idle(u64::MAX).unwrap();
        match (case.outcome, result) {
            (Ok(chain), Ok(())) => {
                let g = layer.core().graph().graph();
                let got: Vec<&str> = g.chain(top).map(|n| g.name(n)).collect();
                assert_eq!(got, chain, "{}: chain", case.scenario);
            }
            (Err(text), Err(err)) => assert_eq!(err.to_string(), text, "{}", case.scenario),
            (want, got) => panic!("{}: wanted {want:?}, got {got:?}", case.scenario),
        }
        let (file, format) = header(layer.core().files(), "top.img");
        assert_eq!(
            file.as_deref(),
            case.top_header,
            "{}: top.img's backing file",
            case.scenario
        );
        if file.is_some() {
            assert_eq!(
                format.as_deref(),
                Some("qcow2"),
                "{}: never a filter's format",
                case.scenario
            );
        }
        // The throttle node is monitor-owned: it survives every case.
        assert!(layer.core().find_node("flt").is_some(), "{}", case.scenario);
    }
}

#[test]
fn parallel_filter_jobs_depend_on_their_order() {
    // flt-b-two-filter-jobs: the upper job first, then the lower one: both
    // run. flt-b-filter-job-then-lower-stream: a job inside the upper job's
    // range is refused with "Node 'n3' is busy".
    let files = make_files(&[
        Img::qcow2("c0.img", 2048 * K).write(0xa0, 0, 512 * K),
        Img::qcow2("c1.img", 2048 * K)
            .on("c0.img", "qcow2")
            .write(0xa1, 512 * K, 256 * K),
        Img::qcow2("c2.img", 2048 * K)
            .on("c1.img", "qcow2")
            .write(0xa2, 768 * K, 256 * K),
        Img::qcow2("c3.img", 2048 * K)
            .on("c2.img", "qcow2")
            .write(0xa3, 1024 * K, 256 * K),
        Img::qcow2("c4.img", 2048 * K)
            .on("c3.img", "qcow2")
            .write(0xa4, 1792 * K, 256 * K),
    ]);
    let chain = || numbered_chain(4);
    let stream = |device: &str, id: &str, base: &str, filter: Option<&str>| StreamArgs {
        device: device.into(),
        job_id: Some(id.into()),
        base_node: Some(base.into()),
        filter_node_name: filter.map(str::to_string),
        speed: Some(1024),
        ..StreamArgs::default()
    };
    let mut layer = BlockLayer::new(files.clone(), 4);
    layer.blockdev_add(&chain()).unwrap();
    layer
        .block_stream(&stream("n4", "A", "n2", Some("fa")))
        .unwrap();
    let err = layer
        .block_stream(&stream("n3", "B2", "n1", None))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Node 'n3' is busy: block device is in use by block job: stream"
    );
    layer
        .block_stream(&stream("n2", "B", "n0", Some("fb")))
        .unwrap();
    layer.run_until_idle(0).unwrap();
    // Serial settle, newest job first (the harness's final settle).
    // Unthrottled jobs finish without the clock moving; the other one
    // keeps sleeping meanwhile.
    for id in ["B", "A"] {
        layer.set_speed(id, 0).unwrap();
        layer.run_until_idle(layer.now_ns()).unwrap();
    }
    let g = layer.core().graph().graph();
    let n4 = g.find_node("n4").unwrap();
    assert_eq!(
        g.chain(n4).map(|n| g.name(n)).collect::<Vec<_>>(),
        ["n4", "n2", "n0"]
    );
    assert_eq!(
        header(layer.core().files(), "c4.img").0.as_deref(),
        Some("c2.img")
    );
    assert_eq!(
        header(layer.core().files(), "c2.img").0.as_deref(),
        Some("c0.img")
    );

    // The lower job first: the upper one would walk into its filter.
    let mut layer = BlockLayer::new(files, 4);
    layer.blockdev_add(&chain()).unwrap();
    layer
        .block_stream(&stream("n2", "B", "n0", Some("fb")))
        .unwrap();
    let err = layer
        .block_stream(&stream("n4", "A", "n2", Some("fa")))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Node 'fb' is busy: block device is in use by block job: stream"
    );
}

/// blkdebug's rules as `x-commit-base-through-blkdebug` recorded them in
/// top.img's header: flattened (`inject-error.0.event`), as QEMU keeps a
/// node's options, in QDict order.
const BLKDEBUG_OVER_BASE: &str = r#"json:{"inject-error.0.state": 2, "set-state.0.event": "read_aio", "image": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.img"}}, "driver": "blkdebug", "set-state.0.new_state": 2, "inject-error.0.event": "l1_update", "inject-error.0.errno": 5}"#;

#[test]
fn blkdebug_rules_name_the_node_flattened_and_open_again_from_a_header() {
    let files = make_files(&[
        Img::qcow2("base.img", 1024 * K).write(11, 0, 256 * K),
        Img::qcow2("top.img", 1024 * K).on("base.img", "qcow2"),
    ]);
    let rule = |pairs: &[(&str, OptValue)]| {
        let mut rule = strata_graph::Options::new();
        for (key, value) in pairs {
            rule.put(*key, value.clone());
        }
        OptValue::List(vec![OptValue::Dict(rule)])
    };
    let mut layer = BlockLayer::new(files, 5);
    layer
        .blockdev_add(&image_opts("qcow2", "base.img").with("node-name", s("base")))
        .unwrap();
    let dbg = strata_graph::Options::new()
        .with("driver", s("blkdebug"))
        .with("node-name", s("dbg"))
        .with("image", s("base"))
        .with(
            "inject-error",
            rule(&[
                ("errno", OptValue::Int(5)),
                ("event", s("l1_update")),
                ("state", OptValue::Int(2)),
            ]),
        )
        .with(
            "set-state",
            rule(&[("event", s("read_aio")), ("new_state", OptValue::Int(2))]),
        );
    let dbg = layer.blockdev_add(&dbg).unwrap();
    // Opened without a `file` option, the node has no name yet
    // (bdrv_open_common); a query refreshes it.
    assert_eq!(layer.core().graph().graph().node(dbg).unwrap().filename, "");
    layer.core_mut().query_named_block_nodes();
    let g = layer.core().graph().graph();
    assert_eq!(g.node(dbg).unwrap().filename, BLKDEBUG_OVER_BASE);

    // The same string in a header opens a blkdebug node with those rules
    // over base.img, which blockdev-add names the same way again.
    let mut files = layer.core().files().clone();
    let top = files.get("top.img").unwrap().clone();
    files.insert("top.img", with_backing(top, BLKDEBUG_OVER_BASE, "blkdebug"));
    let mut layer = BlockLayer::new(files, 6);
    let top = layer
        .blockdev_add(&image_opts("qcow2", "top.img").with("node-name", s("top")))
        .unwrap();
    let g = layer.core().graph().graph();
    let backing = g.cow_node(top).unwrap();
    assert_eq!(g.node(backing).unwrap().driver(), "blkdebug");
    assert_eq!(g.node(backing).unwrap().filename, BLKDEBUG_OVER_BASE);
    let mut byte = [0u8; 1];
    layer.core_mut().read(top, 0, &mut byte).unwrap();
    assert_eq!(byte, [11]);
}

/// `storage` with its qcow2 header naming `backing` in `format`.
fn with_backing(
    mut storage: strata_formats::MemStorage,
    backing: &str,
    format: &str,
) -> strata_formats::MemStorage {
    let mut image = Image::open(&mut storage, None, strata_formats::Access::ReadWrite).unwrap();
    image
        .change_backing_file(&mut storage, Some(backing), Some(format))
        .unwrap();
    storage.flush().unwrap();
    storage
}

/// qcow2 over a blkdebug protocol node with a once-only `inject-error` on
/// `read_aio` (as `x-blkdebug-inject-on-event` recorded QEMU): opening
/// reads the header and tables without any event, so it succeeds; the
/// first read of guest data announces `read_aio` to the file child and
/// fails with the rule's errno; the rule is gone after that.
#[test]
fn blkdebug_rules_arm_on_the_formats_data_events_only() {
    let files = make_files(&[Img::qcow2("disk.img", 1024 * K).write(7, 0, 64 * K)]);
    let rule = strata_graph::Options::new()
        .with("event", s("read_aio"))
        .with("errno", OptValue::Int(28))
        .with("once", OptValue::Bool(true));
    let dbg = strata_graph::Options::new()
        .with("driver", s("blkdebug"))
        .with("inject-error", OptValue::List(vec![OptValue::Dict(rule)]))
        .with(
            "image",
            OptValue::Dict(
                strata_graph::Options::new()
                    .with("driver", s("file"))
                    .with("filename", s("disk.img")),
            ),
        );
    let opts = strata_graph::Options::new()
        .with("driver", s("qcow2"))
        .with("node-name", s("disk"))
        .with("file", OptValue::Dict(dbg));
    let mut layer = BlockLayer::new(files, 7);
    let disk = layer.blockdev_add(&opts).expect("the open fires no event");
    let mut buf = vec![0u8; 4096];
    let core = layer.core_mut();
    let unallocated = core.read(disk, 512 * K, &mut buf);
    assert!(
        unallocated.is_ok(),
        "no data read, no event: {unallocated:?}"
    );
    let err = core.read(disk, 0, &mut buf).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28));
    core.read(disk, 0, &mut buf)
        .expect("the once-only rule is gone");
    assert_eq!(buf, vec![7u8; 4096]);
}
