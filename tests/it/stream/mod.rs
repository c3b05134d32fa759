//! "Which node becomes the backing file after a stream" — the 2020 thread's
//! question — for each filter case QEMU 10.0.2 was observed on (the
//! conformance scenario is named on each row), under QEMU's rule and under
//! the thread's alternatives.

use strata_block::{header_backing, new_backing_node, stream_bounds, BackingChoice, BackingFormat};
use strata_filters::{driver_perms, refresh_filename, BackingFileInfo, Driver};
use strata_graph::{NodeId, NodeSpec, OptValue, Options, Role};
use strata_perm::{BlockGraph, ReplaceOptions};

fn s(v: &str) -> OptValue {
    OptValue::Str(v.to_string())
}

/// Builds a chain from a bottom-first list of `(name, driver)`; qcow2 and
/// raw nodes get a file node `<name>.img`, filters sit on the node below.
fn chain(layers: &[(&str, Driver)]) -> (BlockGraph, Vec<NodeId>) {
    let hooks = driver_perms();
    let mut bg = BlockGraph::new(7);
    let mut nodes: Vec<NodeId> = Vec::new();
    for &(name, driver) in layers {
        let mut options = Options::new().with("driver", s(driver.name()));
        if driver == Driver::Throttle {
            options.put("throttle-group", s("tg0"));
        }
        let node = bg
            .add_node(
                NodeSpec::new(driver.name(), driver.traits())
                    .name(name)
                    .options(options),
            )
            .unwrap();
        if driver.traits().is_filter {
            let below = *nodes.last().expect("a filter needs a node below it");
            bg.attach_child(&hooks, node, below, "file", Role::FILTERED_PRIMARY)
                .unwrap();
        } else {
            let file_options = Options::new()
                .with("driver", s("file"))
                .with("filename", s(&format!("{name}.img")));
            let file = bg
                .add_node(NodeSpec::new("file", Driver::File.traits()).options(file_options))
                .unwrap();
            bg.attach_child(
                &hooks,
                node,
                file,
                "file",
                driver.primary_child_role(&Options::new()),
            )
            .unwrap();
            if let Some(&below) = nodes.last() {
                bg.attach_child(&hooks, node, below, "backing", Role::COW)
                    .unwrap();
            }
        }
        nodes.push(node);
    }
    struct NoHeaders;
    impl BackingFileInfo for NoHeaders {
        fn auto_backing_file(&self, _: NodeId) -> String {
            String::new()
        }
    }
    for &node in &nodes {
        refresh_filename(&mut bg, &NoHeaders, node).unwrap();
    }
    (bg, nodes)
}

fn by_name(bg: &BlockGraph, name: &str) -> NodeId {
    bg.graph()
        .find_node(name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

/// One case: the chain, the stream's device/base-node/bottom, and the new
/// backing node under QEMU's rule and the two alternatives.
struct Case {
    scenario: &'static str,
    layers: &'static [(&'static str, Driver)],
    device: &'static str,
    base_node: Option<&'static str>,
    bottom: Option<&'static str>,
    qemu: Option<&'static str>,
    base_overlay_rule: Option<&'static str>,
    base_at_start_rule: Option<&'static str>,
}

const TOP_MID_FLT_BASE: &[(&str, Driver)] = &[
    ("base", Driver::Qcow2),
    ("flt", Driver::Throttle),
    ("mid", Driver::Qcow2),
    ("top", Driver::Qcow2),
];

const CASES: &[Case] = &[
    // flt-a-throttle-mid-filter-base: QEMU 10.0.2 leaves top -> base (the
    // filter above the base is cut out: finding 1 of the conformance notes).
    Case {
        scenario: "flt-a-throttle-mid-filter-base",
        layers: TOP_MID_FLT_BASE,
        device: "top",
        base_node: Some("base"),
        bottom: None,
        qemu: Some("base"),
        base_overlay_rule: Some("flt"),
        base_at_start_rule: Some("base"),
    },
    // flt-a-throttle-base-is-filter: base-node=flt keeps the filter.
    Case {
        scenario: "flt-a-throttle-base-is-filter",
        layers: TOP_MID_FLT_BASE,
        device: "top",
        base_node: Some("flt"),
        bottom: None,
        qemu: Some("flt"),
        base_overlay_rule: Some("flt"),
        base_at_start_rule: Some("flt"),
    },
    // flt-c-bottom-keeps-filter: bottom=mid gives top -> flt -> base.
    Case {
        scenario: "flt-c-bottom-keeps-filter",
        layers: TOP_MID_FLT_BASE,
        device: "top",
        base_node: None,
        bottom: Some("mid"),
        qemu: Some("flt"),
        base_overlay_rule: Some("flt"),
        // With bottom, the base at start is the node below it.
        base_at_start_rule: Some("flt"),
    },
    // flt-a-throttle-top-filter-base: top -> flt -> base, base-node=base
    // copies nothing but still rewires to top -> base (finding 2).
    Case {
        scenario: "flt-a-throttle-top-filter-base",
        layers: &[
            ("base", Driver::Qcow2),
            ("flt", Driver::Throttle),
            ("top", Driver::Qcow2),
        ],
        device: "top",
        base_node: Some("base"),
        bottom: None,
        qemu: Some("base"),
        base_overlay_rule: Some("flt"),
        base_at_start_rule: Some("base"),
    },
    // flt-c-bottom-basic analogue without filters: bottom=base streams the
    // whole chain (top loses its backing file; finding 11).
    Case {
        scenario: "flt-c-bottom-basic",
        layers: &[
            ("base", Driver::Qcow2),
            ("mid", Driver::Qcow2),
            ("top", Driver::Qcow2),
        ],
        device: "top",
        base_node: None,
        bottom: Some("base"),
        qemu: None,
        base_overlay_rule: None,
        base_at_start_rule: None,
    },
];

#[test]
fn new_backing_node_per_rule() {
    for case in CASES {
        let (bg, _) = chain(case.layers);
        let g = bg.graph();
        let device = by_name(&bg, case.device);
        let base = case.base_node.map(|n| by_name(&bg, n));
        let bottom = case.bottom.map(|n| by_name(&bg, n));
        let bounds = stream_bounds(g, device, base, bottom).unwrap();
        let name = |choice| new_backing_node(g, &bounds, choice).map(|n| g.name(n).to_string());
        assert_eq!(
            name(BackingChoice::AboveBase).as_deref(),
            case.qemu,
            "{}: QEMU's rule",
            case.scenario
        );
        assert_eq!(
            name(BackingChoice::BaseOverlay).as_deref(),
            case.base_overlay_rule,
            "{}: base_overlay rule",
            case.scenario
        );
        assert_eq!(
            name(BackingChoice::BaseAtStart).as_deref(),
            case.base_at_start_rule,
            "{}: frozen-base rule",
            case.scenario
        );
    }
}

#[test]
fn header_never_names_a_filter() {
    // flt-d-filter-base-no-string: with the filter kept as backing node, the
    // header still says base.img / qcow2, never a json: name (finding 3).
    let (bg, _) = chain(TOP_MID_FLT_BASE);
    let g = bg.graph();
    let flt = by_name(&bg, "flt");
    assert!(g.node(flt).unwrap().filename.starts_with("json:"));
    assert_eq!(
        header_backing(g, Some(flt), None, BackingFormat::Driver),
        Some(("base.img".to_string(), "qcow2".to_string()))
    );
    // An explicit backing-file is written verbatim (flt-d-backing-file-given).
    assert_eq!(
        header_backing(g, Some(flt), Some("whatever"), BackingFormat::Driver),
        Some(("whatever".to_string(), "qcow2".to_string()))
    );
    // A whole-chain stream removes the backing file from the header.
    assert_eq!(header_backing(g, None, None, BackingFormat::Driver), None);
}

#[test]
fn a_filter_directly_above_the_base_is_refused() {
    // stream_start: find_overlay(bs, base) is NULL when bs and base are the
    // same image after skipping filters.
    let (bg, _) = chain(&[("base", Driver::Qcow2), ("flt", Driver::Throttle)]);
    let g = bg.graph();
    let err = stream_bounds(g, by_name(&bg, "flt"), Some(by_name(&bg, "base")), None).unwrap_err();
    assert_eq!(err.message, "'base' is not in the backing chain of 'flt'");
}

#[test]
fn the_base_is_resolved_at_completion() {
    // 030-overlapping-5: the stream's base is the commit's filter; when the
    // commit finishes first, the filter is replaced by node0 below node3, and
    // QEMU's rule picks node0 at completion, which is what QEMU shows.
    let hooks = driver_perms();
    let (mut bg, _) = chain(&[
        ("node0", Driver::Qcow2),
        ("cf", Driver::Throttle),
        ("node3", Driver::Qcow2),
        ("node4", Driver::Qcow2),
    ]);
    let (node0, cf, node3, node4) = (
        by_name(&bg, "node0"),
        by_name(&bg, "cf"),
        by_name(&bg, "node3"),
        by_name(&bg, "node4"),
    );
    let bounds = stream_bounds(bg.graph(), node4, Some(cf), None).unwrap();
    assert_eq!(bounds.above_base, node3);
    bg.replace_node(&hooks, cf, node0, ReplaceOptions::EVERY_PARENT)
        .unwrap();
    assert_eq!(
        new_backing_node(bg.graph(), &bounds, BackingChoice::AboveBase),
        Some(node0)
    );
    // Had the base been frozen at start, the stream would point at a node
    // that has left the chain.
    assert_eq!(
        new_backing_node(bg.graph(), &bounds, BackingChoice::BaseAtStart),
        Some(cf)
    );
}
