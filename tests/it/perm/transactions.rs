//! Successful graph changes: the structure QEMU's functions produce, with
//! stored permissions equal to a from-scratch recomputation afterwards.

use super::*;
use strata_perm::{ChildSlot, DefaultPerms, ReplaceOptions};

/// `top <- mid <- base`, read by an unnamed BlockBackend on top.
fn read_chain() -> (BlockGraph, Vec<NodeId>) {
    let hooks = &DefaultPerms;
    let mut bg = BlockGraph::new(0);
    let n = chain(&mut bg, hooks, &["base", "mid", "top"], |_| false);
    root_on(
        &mut bg,
        hooks,
        RootKind::Backend { name: None },
        n[2],
        "root",
        Perm::CONSISTENT_READ,
        Perm::ALL,
    )
    .unwrap();
    (bg, n)
}

fn chain_names(bg: &BlockGraph, top: NodeId) -> Vec<String> {
    bg.graph()
        .chain(top)
        .map(|n| bg.graph().name(n).to_string())
        .collect()
}

#[test]
fn insert_and_drop_a_filter() {
    let hooks = &DefaultPerms;
    let (mut bg, n) = read_chain();
    // bdrv_insert_node: open the filter on mid, then replace mid by it.
    let thr = bg
        .add_node(NodeSpec::new("throttle", FILTER).name("thr"))
        .unwrap();
    bg.attach_child(hooks, thr, n[1], "file", Role::FILTERED_PRIMARY)
        .unwrap();
    bg.replace_node(hooks, n[1], thr, ReplaceOptions::REPLACE_NODE)
        .unwrap();
    assert_eq!(chain_names(&bg, n[2]), ["top", "thr", "mid", "base"]);
    let thr_file = bg.graph().filter_child(thr).unwrap();
    assert_eq!(
        bg.graph().edge(thr_file).unwrap().perm,
        Perm::CONSISTENT_READ
    );
    assert_perms_fresh(&bg, hooks);
    // bdrv_drop_filter: replace the filter by its child, detaching the filter's link.
    bg.replace_node(hooks, thr, n[1], ReplaceOptions::DROP_FILTER)
        .unwrap();
    assert_eq!(chain_names(&bg, n[2]), ["top", "mid", "base"]);
    assert!(bg.graph().node(thr).unwrap().children().is_empty());
    assert!(bg.graph().node(thr).unwrap().parents().is_empty());
    assert_perms_fresh(&bg, hooks);
    bg.unref_node(hooks, thr).unwrap();
    assert!(!bg.graph().contains_node(thr));
}

#[test]
fn append_an_overlay_and_a_commit_top() {
    let hooks = &TestHooks;
    let (mut bg, n) = read_chain();
    // External snapshot: bdrv_append(new, top) with a COW link named "backing".
    let snap = bg
        .add_node(NodeSpec::new("qcow2", FORMAT).name("snap"))
        .unwrap();
    bg.append(hooks, snap, n[2]).unwrap();
    assert_eq!(chain_names(&bg, snap), ["snap", "top", "mid", "base"]);
    let backing = bg.graph().node(snap).unwrap().backing().unwrap();
    assert_eq!(bg.graph().edge(backing).unwrap().role(), Role::COW);
    // The BlockBackend moved to the overlay.
    let root = bg.graph().roots().next().unwrap();
    let root_edge = bg.graph().root(root).unwrap().children()[0];
    assert_eq!(bg.graph().edge(root_edge).unwrap().child(), snap);
    assert_perms_fresh(&bg, hooks);
    // commit_top: a filter whose filtered child is "backing".
    let ct = bg
        .add_node(
            NodeSpec::new("commit_top", BACKING_FILTER)
                .implicit(true)
                .never_freeze(true),
        )
        .unwrap();
    bg.append(hooks, ct, n[1]).unwrap();
    assert_eq!(bg.graph().filter_node(ct), Some(n[1]));
    assert_eq!(bg.graph().backing_chain_next(n[2]), Some(n[1]));
    let ct_link = bg.graph().filter_child(ct).unwrap();
    let e = bg.graph().edge(ct_link).unwrap();
    assert_eq!(
        (e.name(), e.role(), e.perm, e.shared),
        ("backing", Role::FILTERED_PRIMARY, Perm::NONE, Perm::ALL)
    );
    assert_perms_fresh(&bg, hooks);
}

#[test]
fn drop_intermediates_moves_every_parent() {
    let hooks = &DefaultPerms;
    let (mut bg, n) = read_chain();
    // bdrv_drop_intermediate(top=mid, base): replace mid by base, auto_skip=false.
    bg.replace_node(hooks, n[1], n[0], ReplaceOptions::EVERY_PARENT)
        .unwrap();
    assert_eq!(chain_names(&bg, n[2]), ["top", "base"]);
    assert!(bg.graph().node(n[1]).unwrap().parents().is_empty());
    // mid keeps its own backing link to base (it is mid's child, inside base's... no:
    // base's subtree does not contain it, but it is not a parent link of mid).
    assert_eq!(bg.graph().cow_node(n[1]), Some(n[0]));
    assert_perms_fresh(&bg, hooks);
}

#[test]
fn set_backing_and_set_file() {
    let hooks = &DefaultPerms;
    let (mut bg, n) = read_chain();
    bg.set_file_or_backing(hooks, n[2], Some(n[0]), ChildSlot::Backing)
        .unwrap();
    assert_eq!(chain_names(&bg, n[2]), ["top", "base"]);
    assert_perms_fresh(&bg, hooks);
    bg.set_file_or_backing(hooks, n[2], None, ChildSlot::Backing)
        .unwrap();
    assert_eq!(chain_names(&bg, n[2]), ["top"]);
    // A new file child keeps the role of the old one.
    let f2 = bg
        .add_node(NodeSpec::new("file", PROTOCOL).name("f2"))
        .unwrap();
    bg.set_file_or_backing(hooks, n[2], Some(f2), ChildSlot::File)
        .unwrap();
    let file = bg.graph().node(n[2]).unwrap().file().unwrap();
    let e = bg.graph().edge(file).unwrap();
    assert_eq!((e.child(), e.role(), e.name()), (f2, Role::IMAGE, "file"));
    // The old file node lost its only reference and is gone.
    assert_eq!(bg.graph().find_node("top-file"), None);
    assert_perms_fresh(&bg, hooks);
}

#[test]
fn new_backing_below_the_old_one_survives_its_closing() {
    // blockdev-reopen of top with backing=base, where mid (the old backing)
    // and base are held only through their parents: mid is closed, base,
    // now top's backing child, stays (QEMU links the new child before the
    // transaction unrefs the old one).
    let hooks = &DefaultPerms;
    let (mut bg, n) = read_chain();
    for &creator_ref in &n[..2] {
        bg.unref_node(hooks, creator_ref).unwrap();
    }
    bg.set_file_or_backing(hooks, n[2], Some(n[0]), ChildSlot::Backing)
        .unwrap();
    assert_eq!(chain_names(&bg, n[2]), ["top", "base"]);
    assert!(!bg.graph().contains_node(n[1]));
    assert_eq!(bg.graph().find_node("mid-file"), None);
    assert_eq!(bg.graph().node(n[0]).unwrap().refcnt(), 1);
    assert_perms_fresh(&bg, hooks);
}

#[test]
fn set_backing_refusals_have_qemus_texts() {
    // Texts from bdrv_set_file_or_backing_noperm (block.c); not reachable through
    // blockdev-reopen, which refuses these cases earlier with its own messages.
    let hooks = &DefaultPerms;
    let (mut bg, n) = read_chain();
    let f = bg.graph().find_node("top-file").unwrap();
    let before = snapshot(&bg);
    assert_eq!(
        bg.set_file_or_backing(hooks, f, Some(n[0]), ChildSlot::Backing)
            .unwrap_err()
            .to_string(),
        "Driver 'file' of node 'top-file' does not support backing files"
    );
    assert_eq!(
        bg.set_file_or_backing(hooks, f, Some(n[0]), ChildSlot::File)
            .unwrap_err()
            .to_string(),
        "Cannot set file child to format node without file child"
    );
    // A cycle through the backing link.
    assert_eq!(
        bg.set_file_or_backing(hooks, n[0], Some(n[2]), ChildSlot::Backing)
            .unwrap_err()
            .to_string(),
        "Making 'top' a backing child of 'base' would create a cycle"
    );
    assert_eq!(snapshot(&bg), before);
}

#[test]
fn detach_loosens_and_may_delete() {
    let hooks = &DefaultPerms;
    let (mut bg, n) = read_chain();
    let root = bg.graph().roots().next().unwrap();
    let edge = bg.graph().root(root).unwrap().children()[0];
    bg.unref_child(hooks, edge).unwrap();
    bg.remove_root(root).unwrap();
    let backing = bg.graph().node(n[2]).unwrap().backing().unwrap();
    assert_eq!(
        bg.graph().edge(backing).unwrap().perm,
        Perm::NONE,
        "nobody reads top any more"
    );
    assert_perms_fresh(&bg, hooks);
    // Dropping the monitor's references deletes the whole chain, top first.
    bg.unref_node(hooks, n[0]).unwrap();
    bg.unref_node(hooks, n[1]).unwrap();
    let deleted = bg.unref_node(hooks, n[2]).unwrap();
    assert_eq!(deleted.len(), 6);
    assert_eq!(*deleted.last().unwrap(), n[2]);
    assert_eq!(bg.graph().nodes().count(), 0);
}

#[test]
fn removing_a_backing_link_loosens_the_old_backing_subtree() {
    // (chain base <- mid <- top)
    // -> {"execute": "nbd-server-start", "arguments": {"addr": {"type": "unix", "data": {"path": "$D/nbd.sock"}}}}
    // -> {"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e1", "node-name": "top"}}
    // <- {"return": {}}
    // -> {"execute": "x-debug-query-block-graph"}
    // <- (top, file, top-file, [resize, write, consistent-read], [write-unchanged, consistent-read])
    //    (top, backing, mid, [consistent-read], [resize, write-unchanged, write, consistent-read])
    //    (mid, file, mid-file, [resize, write, consistent-read], [write-unchanged, consistent-read])
    //    (mid, backing, base, [consistent-read], [resize, write-unchanged, write, consistent-read])
    //    (base, file, base-file, [resize, write, consistent-read], [write-unchanged, consistent-read])
    //    ("", root, top, [consistent-read], [write-unchanged, write, consistent-read])
    // -> {"execute": "blockdev-reopen", "arguments": {"options": [{"driver": "qcow2", "node-name": "top",
    //     "file": "top-file", "backing": null}]}}
    // <- {"return": {}}
    // -> {"execute": "x-debug-query-block-graph"}
    // <- the same, without (top, backing, mid), and (mid, backing, base, [], [resize,
    //    write-unchanged, write, consistent-read]): mid's subtree was refreshed.
    let hooks = &DefaultPerms;
    let mut bg = BlockGraph::new(0);
    let n = chain(&mut bg, hooks, &["base", "mid", "top"], |_| false);
    let export_shared = Perm::CONSISTENT_READ | Perm::WRITE | Perm::WRITE_UNCHANGED;
    root_on(
        &mut bg,
        hooks,
        RootKind::Backend { name: None },
        n[2],
        "root",
        Perm::CONSISTENT_READ,
        export_shared,
    )
    .unwrap();
    let common: [Row; 4] = [
        ("top", "file", "top-file", &[RS, W, CR], &[WU, CR]),
        ("mid", "file", "mid-file", &[RS, W, CR], &[WU, CR]),
        ("base", "file", "base-file", &[RS, W, CR], &[WU, CR]),
        ("", "root", "top", &[CR], &[WU, W, CR]),
    ];
    let mut before = common.to_vec();
    before.push(("top", "backing", "mid", &[CR], ALL));
    before.push(("mid", "backing", "base", &[CR], ALL));
    assert_eq!(shown_edges(&bg), expected_edges(&before));
    bg.set_file_or_backing(hooks, n[2], None, ChildSlot::Backing)
        .unwrap();
    let mut after = common.to_vec();
    after.push(("mid", "backing", "base", &[], ALL));
    assert_eq!(shown_edges(&bg), expected_edges(&after));
}

#[test]
fn a_copy_on_read_filter_cannot_sit_on_a_read_only_node() {
    // -> {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "top", "read-only": true,
    //     "file": {"driver": "file", "node-name": "top-file", "filename": "top.qcow2", "read-only": true}}}
    // <- {"return": {}}
    // -> {"execute": "blockdev-add", "arguments": {"driver": "copy-on-read", "node-name": "cor", "file": "top"}}
    // <- {"error": {"class": "GenericError", "desc": "Block node is read-only"}}
    // -> {"execute": "blockdev-add", "arguments": {"driver": "copy-on-read", "node-name": "cor2", "file": "top", "read-only": true}}
    // <- {"error": {"class": "GenericError", "desc": "Block node is read-only"}}
    // (copy-on-read always takes write-unchanged on its child.)
    let hooks = &TestHooks;
    let mut bg = BlockGraph::new(0);
    let top = qcow2(&mut bg, hooks, "top", true);
    for (name, read_only) in [("cor", false), ("cor2", true)] {
        let cor = bg
            .add_node(
                NodeSpec::new("copy-on-read", FILTER)
                    .name(name)
                    .read_only(read_only),
            )
            .unwrap();
        let before = snapshot(&bg);
        let err = bg
            .attach_child(hooks, cor, top, "file", Role::FILTERED_PRIMARY)
            .unwrap_err();
        assert_eq!(err.to_string(), "Block node is read-only");
        assert_eq!(snapshot(&bg), before);
    }
    assert_eq!(
        shown_edges(&bg),
        expected_edges(&[("top", "file", "top-file", &[CR], &[WU, CR])])
    );
}

#[test]
fn dropping_a_filter_over_a_frozen_link_is_refused() {
    // bdrv_drop_filter = replace_node(filter, child, ReplaceOptions::DROP_FILTER):
    // the filter's parent link must move and may not be frozen.
    let hooks = &DefaultPerms;
    let (mut bg, n) = read_chain();
    let thr = bg
        .add_node(NodeSpec::new("throttle", FILTER).name("thr"))
        .unwrap();
    bg.attach_child(hooks, thr, n[1], "file", Role::FILTERED_PRIMARY)
        .unwrap();
    bg.replace_node(hooks, n[1], thr, ReplaceOptions::REPLACE_NODE)
        .unwrap();
    bg.freeze_chain(n[2], Some(thr)).unwrap();
    let before = snapshot(&bg);
    let err = bg
        .replace_node(hooks, thr, n[1], ReplaceOptions::DROP_FILTER)
        .unwrap_err();
    assert_eq!(err.to_string(), "Cannot change 'backing' link to 'thr'");
    assert_eq!(snapshot(&bg), before);
    // Frozen below the filter: the detached subchain link is frozen too.
    bg.unfreeze_chain(n[2], Some(thr)).unwrap();
    bg.freeze_chain(thr, Some(n[1])).unwrap();
    let before = snapshot(&bg);
    assert!(bg
        .replace_node(hooks, thr, n[1], ReplaceOptions::DROP_FILTER)
        .is_err());
    assert_eq!(snapshot(&bg), before);
}
