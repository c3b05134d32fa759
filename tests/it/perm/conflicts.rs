//! Permission conflicts and read-only refusals, with QEMU's texts; every
//! refused operation leaves graph, perms, frozen flags and blockers as they
//! were.

use super::*;
use strata_perm::{ChildSlot, DefaultPerms, ErrorKind, Refusal, ReplaceOptions};

#[test]
fn second_qcow2_on_one_file_node_is_refused() {
    // -> {"execute": "blockdev-add", "arguments": {"driver": "file", "node-name": "f", "filename": "a.qcow2"}}
    // <- {"return": {}}
    // -> {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "base", "file": "f"}}
    // <- {"return": {}}
    // -> {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "base2", "file": "f", "read-only": true}}
    // <- {"error": {"class": "GenericError", "desc": "Permission conflict on node 'f': permissions
    //     'write, resize' are both required by node 'base' (uses node 'f' as 'file' child) and
    //     unshared by node 'base2' (uses node 'f' as 'file' child)."}}
    // -> {"execute": "x-debug-query-block-graph"}
    // <- {"return": {"edges": [{"name": "file", "parent": 2, "shared-perm": ["write-unchanged",
    //     "consistent-read"], "perm": ["resize", "write", "consistent-read"], "child": 1}],
    //     "nodes": [{"name": "base", ...}, {"name": "f", ...}]}}
    let hooks = &DefaultPerms;
    let mut bg = BlockGraph::new(0);
    let f = bg
        .add_node(NodeSpec::new("file", PROTOCOL).name("f"))
        .unwrap();
    let base = bg
        .add_node(NodeSpec::new("qcow2", FORMAT).name("base"))
        .unwrap();
    bg.attach_child(hooks, base, f, "file", Role::IMAGE)
        .unwrap();
    let base2 = bg
        .add_node(NodeSpec::new("qcow2", FORMAT).name("base2").read_only(true))
        .unwrap();
    let before = snapshot(&bg);
    let err = bg
        .attach_child(hooks, base2, f, "file", Role::IMAGE)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Permission conflict on node 'f': permissions 'write, resize' are both required by node 'base' \
         (uses node 'f' as 'file' child) and unshared by node 'base2' (uses node 'f' as 'file' child)."
    );
    assert!(matches!(err.kind(), ErrorKind::Conflict { .. }));
    assert_eq!(snapshot(&bg), before);
    bg.unref_node(hooks, base2).unwrap();
    assert_eq!(
        shown_edges(&bg),
        expected_edges(&[("base", "file", "f", &[RS, W, CR], &[WU, CR])])
    );
}

#[test]
fn stream_graph_has_qemus_permissions() {
    // The running stream of `stream_running`, then
    // -> {"execute": "x-debug-query-block-graph"}
    // <- edges (parent, name, child, perm, shared), with #block093 the implicit copy-on-read
    //    filter, "j" the job and "" the job's BlockBackend:
    //    (#block093, file, top, [write-unchanged, consistent-read], [write-unchanged, write, consistent-read])
    //    (top, file, top-file, [resize, write-unchanged, write, consistent-read], [write-unchanged, consistent-read])
    //    (top, backing, mid, [consistent-read], [resize, write-unchanged, write, consistent-read])
    //    (mid, file, mid-file, [resize, write, consistent-read], [write-unchanged, consistent-read])
    //    (mid, backing, base, [consistent-read], [write-unchanged, consistent-read])
    //    (base, file, base-file, [resize, write, consistent-read], [write-unchanged, consistent-read])
    //    (j, main node, #block093, [], [resize, write-unchanged, write, consistent-read])
    //    (j, active node, top, [], [write-unchanged, write, consistent-read])
    //    (j, intermediate node, mid, [], [write-unchanged, consistent-read])
    //    ("", root, #block093, [consistent-read], [write-unchanged, write, consistent-read])
    let s = stream_running();
    let cor = s.bg.graph().name(s.cor).to_string();
    let cor = cor.as_str();
    assert_eq!(
        shown_edges(&s.bg),
        expected_edges(&[
            (cor, "file", "top", &[WU, CR], &[WU, W, CR]),
            ("top", "file", "top-file", &[RS, WU, W, CR], &[WU, CR]),
            ("top", "backing", "mid", &[CR], ALL),
            ("mid", "file", "mid-file", &[RS, W, CR], &[WU, CR]),
            ("mid", "backing", "base", &[CR], &[WU, CR]),
            ("base", "file", "base-file", &[RS, W, CR], &[WU, CR]),
            ("j", "main node", cor, &[], ALL),
            ("j", "active node", "top", &[], &[WU, W, CR]),
            ("j", "intermediate node", "mid", &[], &[WU, CR]),
            ("", "root", cor, &[CR], &[WU, W, CR]),
        ])
    );
    assert_perms_fresh(&s.bg, &TestHooks);
}

#[test]
fn writer_on_a_stream_intermediate_conflicts_with_the_stream_job() {
    // With the stream of `stream_running` running:
    // -> {"execute": "nbd-server-start", "arguments": {"addr": {"type": "unix", "data": {"path": "$D/nbd.sock"}}}}
    // <- {"return": {}}
    // -> {"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e1", "node-name": "mid", "writable": true}}
    // <- {"error": {"class": "GenericError", "desc": "Permission conflict on node 'mid': permissions
    //     'write' are both required by an unnamed block device (uses node 'mid' as 'root' child) and
    //     unshared by stream job 'j' (uses node 'mid' as 'intermediate node' child)."}}
    // A writable export's BlockBackend takes consistent-read + write and shares everything.
    let mut s = stream_running();
    let export = s.bg.add_root(RootKind::Backend { name: None });
    let before = snapshot(&s.bg);
    let err =
        s.bg.root_attach_child(
            &TestHooks,
            export,
            s.mid,
            "root",
            Perm::CONSISTENT_READ | Perm::WRITE,
            Perm::ALL,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Permission conflict on node 'mid': permissions 'write' are both required by an unnamed block \
         device (uses node 'mid' as 'root' child) and unshared by stream job 'j' (uses node 'mid' as \
         'intermediate node' child)."
    );
    assert_eq!(snapshot(&s.bg), before);
    // A reader is fine.
    s.bg.root_attach_child(
        &TestHooks,
        export,
        s.mid,
        "root",
        Perm::CONSISTENT_READ,
        Perm::ALL,
    )
    .unwrap();
    assert_perms_fresh(&s.bg, &TestHooks);
}

#[test]
fn backing_change_under_a_commit_intermediate_conflicts_with_the_commit_job() {
    // Chain n0 <- n1 <- n2 <- n3 <- n4, n0..n2 read-only, then the commit of
    // `commit_running(false)` and
    // -> {"execute": "block-stream", "arguments": {"job-id": "j", "device": "n3", "base-node": "n2", "speed": 1}}
    // <- {"return": {}}
    // -> {"execute": "block-job-set-speed", "arguments": {"device": "c", "speed": 0}}
    // <- {"return": {}}
    // The stream has nothing to copy and at once sets n3's backing to n2 (stream_prepare);
    // that fails: BLOCK_JOB_COMPLETED {"device": "j", "type": "stream", "error": "Operation not
    // permitted"}, and the daemon's log says:
    //   qemu-storage-daemon: Permission conflict on node 'n2': permissions 'consistent read' are
    //   both required by node 'n3' (uses node 'n2' as 'backing' child) and unshared by commit job
    //   'c' (uses node 'n2' as 'intermediate node' child).
    let hooks = &TestHooks;
    let mut c = commit_running(false);
    let (n2, n3) = (c.n[2], c.n[3]);
    // The stream: an implicit copy-on-read filter above n3 read by the job's BlockBackend.
    let cor =
        c.bg.add_node(NodeSpec::new("copy-on-read", FILTER).implicit(true))
            .unwrap();
    c.bg.attach_child(hooks, cor, n3, "file", Role::FILTERED_PRIMARY)
        .unwrap();
    c.bg.replace_node(hooks, n3, cor, ReplaceOptions::REPLACE_NODE)
        .unwrap();
    c.bg.freeze_chain(cor, Some(n3)).unwrap();
    let rw = Perm::CONSISTENT_READ | Perm::WRITE | Perm::WRITE_UNCHANGED;
    let (stream, _) = root_on(
        &mut c.bg,
        hooks,
        job("stream", "j"),
        cor,
        "main node",
        Perm::NONE,
        Perm::ALL,
    )
    .unwrap();
    let read = Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED;
    c.bg.root_attach_child(
        hooks,
        stream,
        c.filter,
        "intermediate node",
        Perm::NONE,
        read,
    )
    .unwrap();
    root_on(
        &mut c.bg,
        hooks,
        RootKind::Backend { name: None },
        cor,
        "root",
        Perm::CONSISTENT_READ,
        rw,
    )
    .unwrap();
    assert_perms_fresh(&c.bg, hooks);

    let before = snapshot(&c.bg);
    let err =
        c.bg.set_file_or_backing(hooks, n3, Some(n2), ChildSlot::Backing)
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Permission conflict on node 'n2': permissions 'consistent read' are both required by node 'n3' \
         (uses node 'n2' as 'backing' child) and unshared by commit job 'c' (uses node 'n2' as \
         'intermediate node' child)."
    );
    assert_eq!(snapshot(&c.bg), before);
}

#[test]
fn named_block_devices_are_described_by_name() {
    // qemu-storage-daemon has no named BlockBackends (no -drive, no devices), so this
    // text is not QMP-confirmed: it is blk_root_get_parent_desc's `block device '%s'`
    // for a BlockBackend with a name (block/block-backend.c).
    let hooks = &DefaultPerms;
    let mut bg = BlockGraph::new(0);
    let base = qcow2(&mut bg, hooks, "base", false);
    let f = bg.graph().find_node("base-file").unwrap();
    let drive = RootKind::Backend {
        name: Some("drive0".into()),
    };
    let device = bg.add_root(drive.clone());
    let before = snapshot(&bg);
    let err = bg
        .root_attach_child(
            hooks,
            device,
            f,
            "root",
            Perm::CONSISTENT_READ | Perm::WRITE,
            Perm::ALL,
        )
        .unwrap_err();
    // The new parent is at the head of f's parents: it is `b` of the first failing pair.
    assert_eq!(
        err.to_string(),
        "Permission conflict on node 'base-file': permissions 'write' are both required by block device \
         'drive0' (uses node 'base-file' as 'root' child) and unshared by node 'base' (uses node \
         'base-file' as 'file' child)."
    );
    assert_eq!(snapshot(&bg), before);
    bg.remove_root(device).unwrap();
    // A device that unshares write makes a new qcow2 writer the one refused.
    root_on(
        &mut bg,
        hooks,
        drive,
        base,
        "root",
        Perm::CONSISTENT_READ,
        Perm::CONSISTENT_READ,
    )
    .unwrap();
    let top = bg
        .add_node(NodeSpec::new("qcow2", FORMAT).name("top"))
        .unwrap();
    bg.attach_child(hooks, top, base, "backing", Role::COW)
        .unwrap();
    let err = root_on(
        &mut bg,
        hooks,
        RootKind::Backend { name: None },
        base,
        "root",
        Perm::WRITE,
        Perm::ALL,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Permission conflict on node 'base': permissions 'write' are both required by an unnamed block \
         device (uses node 'base' as 'root' child) and unshared by block device 'drive0' (uses node \
         'base' as 'root' child)."
    );
}

#[test]
fn a_writer_on_a_read_only_node_is_refused() {
    // -> {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "top", "read-only": true,
    //     "file": {"driver": "file", "node-name": "top-file", "filename": "top.qcow2", "read-only": true}}}
    // <- {"return": {}}
    // -> {"execute": "blockdev-reopen", "arguments": {"options": [{"driver": "qcow2", "node-name": "top",
    //     "read-only": false, "file": "top-file"}]}}
    // <- {"error": {"class": "GenericError", "desc": "Block node is read-only"}}
    // (block-stream of this top, which reopens it read-write, fails the same way:
    // -> {"execute": "block-stream", "arguments": {"job-id": "j", "device": "top"}}
    // <- {"error": {"class": "GenericError", "desc": "Block node is read-only"}})
    let hooks = &DefaultPerms;
    let mut bg = BlockGraph::new(0);
    let top = qcow2(&mut bg, hooks, "top", true);
    let before = snapshot(&bg);
    let err = bg
        .reopen_read_only(hooks, &ReopenQueue::default().set_read_only(top, false))
        .unwrap_err();
    assert_eq!(err.to_string(), "Block node is read-only");
    assert_eq!(*err.kind(), ErrorKind::ReadOnly);
    assert_eq!(snapshot(&bg), before);
    assert!(
        bg.graph().node(top).unwrap().read_only,
        "the flag is not set on failure"
    );
    // A root writer on the read-only node itself: same check, same text.
    let err = root_on(
        &mut bg,
        hooks,
        RootKind::Backend { name: None },
        top,
        "root",
        Perm::WRITE,
        Perm::ALL,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "Block node is read-only");
    // Write-unchanged counts as a write (copy-on-read on a read-only node).
    let err = root_on(
        &mut bg,
        hooks,
        RootKind::Backend { name: None },
        top,
        "root",
        Perm::WRITE_UNCHANGED,
        Perm::ALL,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "Block node is read-only");
}

#[test]
fn reopening_a_written_node_read_only_is_refused() {
    // -> {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "rw",
    //     "file": {"driver": "file", "filename": "a.qcow2", "node-name": "rw-file"}}}
    // <- {"return": {}}
    // -> {"execute": "nbd-server-start", "arguments": {"addr": {"type": "unix", "data": {"path": "$D/nbd.sock"}}}}
    // <- {"return": {}}
    // -> {"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e1", "node-name": "rw", "writable": true}}
    // <- {"return": {}}
    // -> {"execute": "blockdev-reopen", "arguments": {"options": [{"driver": "qcow2", "node-name": "rw",
    //     "read-only": true, "file": "rw-file"}]}}
    // <- {"error": {"class": "GenericError", "desc": "Read-only block node 'rw' cannot support read-write users"}}
    let hooks = &DefaultPerms;
    let mut bg = BlockGraph::new(0);
    let rw = qcow2(&mut bg, hooks, "rw", false);
    root_on(
        &mut bg,
        hooks,
        RootKind::Backend { name: None },
        rw,
        "root",
        Perm::CONSISTENT_READ | Perm::WRITE,
        Perm::ALL,
    )
    .unwrap();
    let before = snapshot(&bg);
    let err = bg
        .reopen_read_only(hooks, &ReopenQueue::default().set_read_only(rw, true))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Read-only block node 'rw' cannot support read-write users"
    );
    assert_eq!(*err.kind(), ErrorKind::ReadOnlyAfterReopen("rw".into()));
    assert_eq!(snapshot(&bg), before);
    // Without the writer the reopen succeeds and drops write/resize on the file.
    let export = bg.graph().roots().next().unwrap();
    let edge = bg.graph().root(export).unwrap().children()[0];
    bg.unref_child(hooks, edge).unwrap();
    bg.reopen_read_only(hooks, &ReopenQueue::default().set_read_only(rw, true))
        .unwrap();
    assert!(bg.graph().node(rw).unwrap().read_only);
    assert_eq!(
        shown_edges(&bg),
        expected_edges(&[("rw", "file", "rw-file", &[CR], &[WU, CR])])
    );
}

/// A driver check that refuses everything on node `locked` (as file-posix
/// refuses when it cannot take its locks).
struct Locked;

impl PermHooks for Locked {
    fn check_perm(
        &self,
        graph: &Graph,
        node: NodeId,
        _perm: Perm,
        _shared: Perm,
    ) -> Result<(), Refusal> {
        if graph.name(node) == "locked" {
            Err("Failed to get \"write\" lock".into())
        } else {
            Ok(())
        }
    }
}

#[test]
fn set_child_perm_reports_only_failed_tightening() {
    let mut bg = BlockGraph::new(0);
    let n = bg
        .add_node(NodeSpec::new("null-co", PROTOCOL).name("locked"))
        .unwrap();
    let (_, edge) = root_on(
        &mut bg,
        &DefaultPerms,
        RootKind::Backend { name: None },
        n,
        "root",
        Perm::CONSISTENT_READ,
        Perm::ALL,
    )
    .unwrap();
    let before = snapshot(&bg);
    // Tightening (a new perm bit) fails with the driver's message.
    let err = bg
        .set_child_perm(
            &Locked,
            edge,
            Perm::CONSISTENT_READ | Perm::WRITE,
            Perm::ALL,
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "Failed to get \"write\" lock");
    assert_eq!(
        *err.kind(),
        ErrorKind::Driver("Failed to get \"write\" lock".into())
    );
    assert_eq!(snapshot(&bg), before);
    // So does unsharing.
    assert!(bg
        .set_child_perm(&Locked, edge, Perm::CONSISTENT_READ, Perm::NONE)
        .is_err());
    // Loosening that fails is swallowed and keeps the old perms.
    bg.set_child_perm(&Locked, edge, Perm::NONE, Perm::ALL)
        .unwrap();
    assert_eq!(snapshot(&bg), before);
    assert_eq!(bg.graph().edge(edge).unwrap().perm, Perm::CONSISTENT_READ);
    // With a driver that agrees, loosening takes effect.
    bg.set_child_perm(&DefaultPerms, edge, Perm::NONE, Perm::ALL)
        .unwrap();
    assert_eq!(bg.graph().edge(edge).unwrap().perm, Perm::NONE);
}
