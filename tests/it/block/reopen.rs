//! blockdev-reopen: the checks of `bdrv_reopen_prepare` and
//! `bdrv_reopen_parse_file_or_backing`, and its all-or-nothing rule.

use super::{make_files, s, Img};
use strata_block::BlockLayer;
use strata_graph::{OptValue, Options};

const MIB: u64 = 1 << 20;

/// `o` over `o-top.img` (file node `o-file`), backed by `o-base.img` from
/// its header.
fn layer() -> BlockLayer<strata_block::MemFiles> {
    let files = make_files(&[
        Img::qcow2("o-base.img", MIB).write(3, 0, 65536),
        Img::qcow2("o-top.img", MIB).on("o-base.img", "qcow2"),
    ]);
    let mut layer = BlockLayer::new(files, 3);
    let file = Options::new()
        .with("driver", s("file"))
        .with("node-name", s("o-file"))
        .with("filename", s("o-top.img"));
    layer
        .blockdev_add(
            &Options::new()
                .with("driver", s("qcow2"))
                .with("node-name", s("o"))
                .with("file", OptValue::Dict(file)),
        )
        .unwrap();
    layer
}

fn reopen(file: &str, backing: Option<OptValue>) -> Vec<Options> {
    let opts = Options::new()
        .with("driver", s("qcow2"))
        .with("node-name", s("o"))
        .with("file", s(file));
    vec![match backing {
        Some(backing) => opts.with("backing", backing),
        None => opts,
    }]
}

#[test]
fn a_failed_reopen_brings_back_the_nodes_its_dropped_link_closed() {
    let mut layer = layer();
    let before = layer.query_block_graph();
    // backing: null drops o's backing node (only o owned it); then the
    // file link fails, and the backing node must come back whole.
    let err = layer
        .blockdev_reopen(&reopen("o", Some(OptValue::Null)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Making 'o' a file child of 'o' would create a cycle"
    );
    layer.check_invariants().unwrap();
    assert_eq!(layer.query_block_graph(), before);
    layer
        .blockdev_reopen(&reopen("o-file", Some(OptValue::Null)))
        .unwrap();
    layer.check_invariants().unwrap();
    assert_eq!(layer.query_named_block_nodes().len(), 2);
}

#[test]
fn reopen_names_what_is_missing_or_unknown_as_qemu_does() {
    let mut layer = layer();
    let text = |layer: &mut BlockLayer<_>, opts: Vec<Options>| {
        layer.blockdev_reopen(&opts).unwrap_err().to_string()
    };
    assert_eq!(
        text(&mut layer, reopen("nope", None)),
        "backing is missing for 'o'"
    );
    assert_eq!(
        text(&mut layer, reopen("o-file", Some(s("nope")))),
        "Cannot find device='' nor node-name='nope'"
    );
    assert_eq!(
        text(&mut layer, reopen("o-file", Some(s("o")))),
        "Making 'o' a backing child of 'o' would create a cycle"
    );
}
