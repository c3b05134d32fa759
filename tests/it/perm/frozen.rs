//! Frozen links: which links a freeze covers, never_freeze nodes, and the
//! five refusals with QEMU's texts.

use super::*;
use strata_perm::{ChildSlot, DefaultPerms, ErrorKind, ReplaceOptions};

/// The frozen edges of the graph as (parent, child name, child).
fn frozen(bg: &BlockGraph) -> BTreeSet<(String, String, String)> {
    shown_links(bg, |e| e.frozen)
}

fn shown_links(
    bg: &BlockGraph,
    keep: impl Fn(&Edge) -> bool,
) -> BTreeSet<(String, String, String)> {
    let g = bg.graph();
    g.nodes()
        .flat_map(|n| g.node(n).unwrap().children().to_vec())
        .map(|e| g.edge(e).unwrap().clone())
        .filter(|e| keep(e))
        .map(|e| {
            let Parent::Node(p) = e.parent() else {
                unreachable!()
            };
            (
                g.name(p).to_string(),
                e.name().to_string(),
                g.name(e.child()).to_string(),
            )
        })
        .collect()
}

fn links(rows: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    rows.iter()
        .map(|(p, n, c)| (p.to_string(), n.to_string(), c.to_string()))
        .collect()
}

#[test]
fn a_freeze_covers_top_inclusive_to_the_link_into_base() {
    let hooks = &DefaultPerms;
    let mut bg = BlockGraph::new(0);
    let n = chain(&mut bg, hooks, &["base", "mid", "top"], |_| false);
    let thr = bg
        .add_node(NodeSpec::new("throttle", FILTER).name("thr"))
        .unwrap();
    bg.attach_child(hooks, thr, n[1], "file", Role::FILTERED_PRIMARY)
        .unwrap();
    bg.replace_node(hooks, n[1], thr, ReplaceOptions::REPLACE_NODE)
        .unwrap();
    // top -> thr -> mid -> base; file links are never chain links.
    bg.freeze_chain(n[2], Some(n[1])).unwrap();
    assert_eq!(
        frozen(&bg),
        links(&[("top", "backing", "thr"), ("thr", "file", "mid")])
    );
    bg.unfreeze_chain(n[2], Some(n[1])).unwrap();
    assert!(frozen(&bg).is_empty());
    // To the end of the chain.
    bg.freeze_chain(n[2], None).unwrap();
    assert_eq!(
        frozen(&bg),
        links(&[
            ("top", "backing", "thr"),
            ("thr", "file", "mid"),
            ("mid", "backing", "base")
        ])
    );
    bg.unfreeze_chain(n[2], None).unwrap();
    // An empty range freezes nothing.
    bg.freeze_chain(n[2], Some(n[2])).unwrap();
    assert!(frozen(&bg).is_empty());
}

#[test]
fn a_frozen_backing_link_cannot_be_changed() {
    // With the stream of `stream_running` running (it froze #block->top and top->mid):
    // -> {"execute": "blockdev-reopen", "arguments": {"options": [{"driver": "qcow2", "node-name": "top",
    //     "file": "top-file", "backing": "base"}]}}
    // <- {"error": {"class": "GenericError", "desc": "Cannot change frozen 'backing' link from 'top' to 'mid'"}}
    let mut s = stream_running();
    let cor = s.bg.graph().name(s.cor).to_string();
    assert_eq!(
        frozen(&s.bg),
        links(&[(cor.as_str(), "file", "top"), ("top", "backing", "mid")])
    );
    let before = snapshot(&s.bg);
    let err =
        s.bg.set_file_or_backing(&TestHooks, s.top, Some(s.base), ChildSlot::Backing)
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Cannot change frozen 'backing' link from 'top' to 'mid'"
    );
    assert!(matches!(err.kind(), ErrorKind::FrozenLinkChange { .. }));
    assert_eq!(snapshot(&s.bg), before);
    // Removing it is a change too.
    assert_eq!(
        s.bg.set_file_or_backing(&TestHooks, s.top, None, ChildSlot::Backing)
            .unwrap_err()
            .to_string(),
        "Cannot change frozen 'backing' link from 'top' to 'mid'"
    );
    // The filter's frozen file link, likewise.
    assert_eq!(
        s.bg.set_file_or_backing(&TestHooks, s.cor, Some(s.mid), ChildSlot::File)
            .unwrap_err()
            .to_string(),
        format!("Cannot change frozen 'file' link from '{cor}' to 'top'")
    );
    assert_eq!(snapshot(&s.bg), before);
}

#[test]
fn links_to_a_never_freeze_node_cannot_be_frozen() {
    // Chain n0 <- ... <- n4 with n0..n3 read-only and the commit of `commit_running(true)`:
    // -> {"execute": "block-stream", "arguments": {"job-id": "j", "device": "n3", "base-node": "n2", "speed": 1}}
    // <- {"error": {"class": "GenericError", "desc": "Cannot freeze 'backing' link to 'commit-filter'"}}
    // (n3 is read-only, so stream_start freezes n3..above_base = commit-filter around its
    // reopen; the same text as iotest 030 TestParallelOps.test_overlapping_4.)
    let mut c = commit_running(true);
    assert_eq!(
        frozen(&c.bg),
        links(&[
            ("commit-filter", "backing", "n2"),
            ("n2", "backing", "n1"),
            ("n1", "backing", "n0")
        ])
    );
    let before = snapshot(&c.bg);
    let err = c.bg.freeze_chain(c.n[3], Some(c.filter)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Cannot freeze 'backing' link to 'commit-filter'"
    );
    assert!(matches!(err.kind(), ErrorKind::NeverFreeze { .. }));
    assert_eq!(snapshot(&c.bg), before);
}

#[test]
fn freezing_over_a_frozen_link_is_refused() {
    // -> (chain base <- mid <- top, top with "read-only": true)
    // -> {"execute": "blockdev-add", "arguments": {"driver": "copy-on-read", "node-name": "cor2", "file": "mid", "bottom": "base"}}
    // <- {"return": {}}
    // -> {"execute": "block-stream", "arguments": {"job-id": "j", "device": "top"}}
    // <- {"error": {"class": "GenericError", "desc": "Cannot change 'backing' link from 'mid' to 'base'"}}
    // -> {"execute": "block-stream", "arguments": {"job-id": "j", "device": "top", "base-node": "mid"}}
    // <- {"return": {}}
    // The read-only top makes stream_start freeze top..above_base: without a base,
    // above_base is `base` itself (links top->mid, mid->base); with base-node=mid it is top
    // (no link).
    let hooks = &TestHooks;
    let mut bg = BlockGraph::new(0);
    let n = chain(&mut bg, hooks, &["base", "mid", "top"], |i| i == 2);
    let cor2 = bg
        .add_node(NodeSpec::new("copy-on-read", FILTER).name("cor2"))
        .unwrap();
    bg.attach_child(hooks, cor2, n[1], "file", Role::FILTERED_PRIMARY)
        .unwrap();
    bg.freeze_chain(cor2, Some(n[0])).unwrap();
    let before = snapshot(&bg);
    let err = bg.freeze_chain(n[2], Some(n[0])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Cannot change 'backing' link from 'mid' to 'base'"
    );
    assert!(matches!(err.kind(), ErrorKind::ChainFrozen { .. }));
    assert_eq!(snapshot(&bg), before);
    assert_eq!(
        bg.check_chain_not_frozen(n[2], None)
            .unwrap_err()
            .to_string(),
        "Cannot change 'backing' link from 'mid' to 'base'"
    );
    bg.check_chain_not_frozen(n[2], Some(n[1])).unwrap();
    bg.freeze_chain(n[2], Some(n[2])).unwrap();
    // The already-frozen check comes before never_freeze, over the whole range.
    bg.unfreeze_chain(cor2, Some(n[0])).unwrap();
    bg.freeze_chain(n[2], Some(n[1])).unwrap();
    assert_eq!(
        bg.freeze_chain(n[2], None).unwrap_err().to_string(),
        "Cannot change 'backing' link from 'top' to 'mid'"
    );
}

#[test]
fn replacing_a_node_whose_parent_link_is_frozen_is_refused() {
    // -> (chain base <- mid <- top)
    // -> {"execute": "blockdev-add", "arguments": {"driver": "copy-on-read", "node-name": "cor", "file": "top", "bottom": "mid"}}
    // <- {"return": {}}
    // -> {"execute": "block-commit", "arguments": {"job-id": "c", "device": "cor", "top-node": "mid", "base-node": "base"}}
    // <- {"error": {"class": "GenericError", "desc": "Cannot change 'backing' link to 'mid'"}}
    // commit_start's bdrv_append(commit_top, mid) must move top->mid, frozen by cor's bottom.
    let hooks = &TestHooks;
    let mut bg = BlockGraph::new(0);
    let n = chain(&mut bg, hooks, &["base", "mid", "top"], |_| false);
    let cor = bg
        .add_node(NodeSpec::new("copy-on-read", FILTER).name("cor"))
        .unwrap();
    bg.attach_child(hooks, cor, n[2], "file", Role::FILTERED_PRIMARY)
        .unwrap();
    bg.freeze_chain(cor, Some(n[1])).unwrap();
    let ct = bg
        .add_node(
            NodeSpec::new("commit_top", BACKING_FILTER)
                .implicit(true)
                .never_freeze(true),
        )
        .unwrap();
    let before = snapshot(&bg);
    let err = bg.append(hooks, ct, n[1]).unwrap_err();
    assert_eq!(err.to_string(), "Cannot change 'backing' link to 'mid'");
    assert!(matches!(err.kind(), ErrorKind::FrozenReplace { .. }));
    assert_eq!(snapshot(&bg), before);
    // replace_node itself, and dropping mid as an intermediate.
    let err = bg
        .replace_node(hooks, n[1], n[0], ReplaceOptions::EVERY_PARENT)
        .unwrap_err();
    assert_eq!(err.to_string(), "Cannot change 'backing' link to 'mid'");
    assert_eq!(snapshot(&bg), before);
}

#[test]
fn a_replacement_that_must_move_a_job_link_is_refused() {
    // iotest 030 TestParallelOps.test_overlapping_4 (conformance scenario 030-overlapping-4:
    // raw node0 <- qcow2 node1 <- ... <- node8, backing nodes read-only) with node4 opened
    // "read-only": false, so that the stream needs no temporary freeze:
    // -> {"execute": "block-commit", "arguments": {"base": "img-0.img", "device": "node8",
    //     "filter-node-name": "commit-filter", "job-id": "drive0", "speed": 1048576, "top": "img-2.img"}}
    // <- {"return": {}}
    // -> {"execute": "block-stream", "arguments": {"base-node": "node2", "device": "node4", "job-id": "node4", "speed": 1}}
    // <- {"return": {}}   (the stream holds commit-filter as an 'intermediate node')
    // -> {"execute": "block-job-set-speed", "arguments": {"device": "drive0", "speed": 0}}
    // <- {"return": {}}
    // The commit's bdrv_drop_intermediate (replace_node, auto_skip=false) then fails; the
    // daemon's log says:
    //   qemu-storage-daemon: Should not change 'intermediate node' link to 'commit-filter'
    // Here: the 5-image commit of `commit_running(false)` and a stream of n3 holding
    // commit-filter the same way.
    let hooks = &TestHooks;
    let mut c = commit_running(false);
    let (stream, _) = root_on(
        &mut c.bg,
        hooks,
        job("stream", "j"),
        c.filter,
        "intermediate node",
        Perm::NONE,
        Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED,
    )
    .unwrap();
    // commit_prepare: unfreeze, then drop commit-filter..n0's intermediates.
    c.bg.unfreeze_chain(c.filter, Some(c.n[0])).unwrap();
    let before = snapshot(&c.bg);
    let err =
        c.bg.replace_node(hooks, c.filter, c.n[0], ReplaceOptions::EVERY_PARENT)
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Should not change 'intermediate node' link to 'commit-filter'"
    );
    assert!(matches!(err.kind(), ErrorKind::ShouldNotChange { .. }));
    assert_eq!(snapshot(&c.bg), before);
    // With auto_skip the job link stays and the overlay moves.
    let edge = c.bg.graph().root(stream).unwrap().children()[0];
    c.bg.replace_node(hooks, c.filter, c.n[0], ReplaceOptions::REPLACE_NODE)
        .unwrap();
    assert_eq!(c.bg.graph().edge(edge).unwrap().child(), c.filter);
    assert_eq!(c.bg.graph().cow_node(c.n[3]), Some(c.n[0]));
    assert_perms_fresh(&c.bg, hooks);
}

#[test]
fn unfreezing_allows_the_change() {
    let mut s = stream_running();
    s.bg.unfreeze_chain(s.cor, Some(s.mid)).unwrap();
    assert!(frozen(&s.bg).is_empty());
    s.bg.set_file_or_backing(&TestHooks, s.top, Some(s.base), ChildSlot::Backing)
        .unwrap();
    assert_eq!(s.bg.graph().cow_node(s.top), Some(s.base));
    assert_perms_fresh(&s.bg, &TestHooks);
}

#[test]
fn frozen_links_survive_unref_and_detach_attempts() {
    // QEMU asserts that bdrv_unref_child and bdrv_close never meet a frozen
    // link; the model refuses instead, and the refusal changes nothing (the
    // backing blocker included).
    let hooks = &DefaultPerms;
    let mut bg = BlockGraph::new(0);
    let n = chain(&mut bg, hooks, &["base", "top"], |_| false);
    bg.freeze_chain(n[1], None).unwrap();
    let backing = bg.graph().node(n[1]).unwrap().backing().unwrap();
    let before = snapshot(&bg);
    let err = bg.unref_child(hooks, backing).unwrap_err();
    assert_eq!(err.to_string(), "link 'backing' is frozen");
    assert_eq!(snapshot(&bg), before);
    // Dropping the last reference to top would close it and drop the link.
    let err = bg.unref_node(hooks, n[1]).unwrap_err();
    assert_eq!(err.to_string(), "link 'backing' is frozen");
    assert_eq!(snapshot(&bg), before);
    // A cascade that meets a frozen link further down is undone as a whole.
    let over = bg
        .add_node(NodeSpec::new("qcow2", FORMAT).name("over"))
        .unwrap();
    bg.attach_child(hooks, over, n[1], "backing", Role::COW)
        .unwrap();
    bg.unref_node(hooks, n[1]).unwrap();
    let before = snapshot(&bg);
    assert!(bg.unref_node(hooks, over).is_err());
    assert_eq!(snapshot(&bg), before);
    bg.unfreeze_chain(n[1], None).unwrap();
    let deleted = bg.unref_node(hooks, over).unwrap();
    let top_file = before.0.contains("top-file");
    assert!(top_file);
    // over -> top -> (base keeps the monitor's reference; top-file goes).
    assert_eq!(deleted.len(), 3);
    assert_eq!(deleted[1..], [n[1], over]);
    assert!(bg.graph().contains_node(n[0]));
}
