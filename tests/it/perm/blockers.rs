//! Op blockers: job blockers, the backing-hd blocker QEMU installs on every
//! backing node, and who lifts them.

use super::*;
use strata_perm::{BlockOp, ChildSlot, DefaultPerms, ErrorKind};

#[test]
fn stream_nodes_are_busy_with_qemus_texts() {
    // With the stream of `stream_running` running:
    // -> {"execute": "block-stream", "arguments": {"job-id": "j2", "device": "top"}}
    // <- {"error": {"class": "GenericError", "desc": "Node 'top' is busy: block device is in use by block job: stream"}}
    // -> {"execute": "block-stream", "arguments": {"job-id": "j2", "device": "mid"}}
    // <- {"error": {"class": "GenericError", "desc": "Node 'mid' is busy: block device is in use by block job: stream"}}
    // -> {"execute": "blockdev-del", "arguments": {"node-name": "base"}}
    // <- {"error": {"class": "GenericError", "desc": "Node 'base' is busy: node is used as backing hd of 'mid'"}}
    // -> {"execute": "blockdev-del", "arguments": {"node-name": "mid"}}
    // <- {"error": {"class": "GenericError", "desc": "Node 'mid' is busy: block device is in use by block job: stream"}}
    let s = stream_running();
    let rows = [
        (
            s.top,
            BlockOp::Stream,
            "Node 'top' is busy: block device is in use by block job: stream",
        ),
        (
            s.mid,
            BlockOp::Stream,
            "Node 'mid' is busy: block device is in use by block job: stream",
        ),
        (
            s.base,
            BlockOp::DriveDel,
            "Node 'base' is busy: node is used as backing hd of 'mid'",
        ),
        // mid also carries top's backing blocker; the job's, newer, is reported.
        (
            s.mid,
            BlockOp::DriveDel,
            "Node 'mid' is busy: block device is in use by block job: stream",
        ),
    ];
    for (node, op, text) in rows {
        let err = s.bg.check_op(node, op).unwrap_err();
        assert_eq!(err.to_string(), text);
        assert!(matches!(err.kind(), ErrorKind::Busy { .. }));
    }
    // The backing blocker leaves stream, commit-target and backup open.
    s.bg.check_op(s.base, BlockOp::Stream).unwrap();
}

#[test]
fn the_backing_blocker_allows_exactly_four_ops() {
    let hooks = &DefaultPerms;
    let mut bg = BlockGraph::new(0);
    let n = chain(&mut bg, hooks, &["base", "top"], |_| false);
    let open = [
        BlockOp::CommitTarget,
        BlockOp::Stream,
        BlockOp::BackupSource,
        BlockOp::BackupTarget,
    ];
    for &op in BlockOp::ALL {
        let result = bg.check_op(n[0], op);
        if open.contains(&op) {
            assert!(result.is_ok(), "{op:?}");
        } else {
            assert_eq!(
                result.unwrap_err().to_string(),
                "Node 'base' is busy: node is used as backing hd of 'top'",
                "{op:?}"
            );
        }
        bg.check_op(n[1], op).unwrap();
    }
    assert_eq!(BlockOp::ALL.len(), 15);
}

#[test]
fn the_backing_blocker_follows_the_backing_link() {
    let hooks = &DefaultPerms;
    let mut bg = BlockGraph::new(0);
    let n = chain(&mut bg, hooks, &["base", "mid"], |_| false);
    let (base, mid) = (n[0], n[1]);
    // File and filter links install none.
    let f = bg.graph().find_node("base-file").unwrap();
    bg.check_op(f, BlockOp::DriveDel).unwrap();
    let thr = bg
        .add_node(NodeSpec::new("throttle", FILTER).name("thr"))
        .unwrap();
    bg.attach_child(hooks, thr, mid, "file", Role::FILTERED_PRIMARY)
        .unwrap();
    bg.check_op(mid, BlockOp::DriveDel).unwrap();
    // An overlay appended above mid (external snapshot) blocks mid for it;
    // the filter link moves to the overlay.
    let top = bg
        .add_node(NodeSpec::new("qcow2", FORMAT).name("top"))
        .unwrap();
    bg.append(hooks, top, mid).unwrap();
    assert_eq!(
        bg.check_op(mid, BlockOp::DriveDel).unwrap_err().to_string(),
        "Node 'mid' is busy: node is used as backing hd of 'top'"
    );
    // Removing base as mid's backing lifts its blocker.
    bg.set_file_or_backing(hooks, mid, None, ChildSlot::Backing)
        .unwrap();
    bg.check_op(base, BlockOp::DriveDel).unwrap();
    // Setting a new backing installs one again, named after the device if any.
    bg.set_file_or_backing(hooks, mid, Some(base), ChildSlot::Backing)
        .unwrap();
    assert_eq!(
        bg.check_op(base, BlockOp::Resize).unwrap_err().to_string(),
        "Node 'base' is busy: node is used as backing hd of 'mid'"
    );
    // Deleting the overlay lifts the blocker it owned.
    bg.unref_node(hooks, thr).unwrap();
    bg.unref_node(hooks, top).unwrap();
    assert!(!bg.graph().contains_node(top));
    bg.check_op(mid, BlockOp::DriveDel).unwrap();
}

#[test]
fn busy_names_prefer_the_device_name() {
    // bdrv_get_device_or_node_name: a named BlockBackend's name (not QMP-confirmable with
    // qemu-storage-daemon, which has no named BlockBackends).
    let hooks = &DefaultPerms;
    let mut bg = BlockGraph::new(0);
    let n = chain(&mut bg, hooks, &["base", "top"], |_| false);
    root_on(
        &mut bg,
        hooks,
        RootKind::Backend { name: None },
        n[1],
        "root",
        Perm::NONE,
        Perm::ALL,
    )
    .unwrap();
    assert_eq!(bg.device_name(n[1]), None);
    let (dev, _) = root_on(
        &mut bg,
        hooks,
        RootKind::Backend {
            name: Some("drive0".into()),
        },
        n[1],
        "root",
        Perm::NONE,
        Perm::ALL,
    )
    .unwrap();
    assert_eq!(bg.device_or_node_name(n[1]), "drive0");
    let job_root = bg.add_root(job("commit", "c"));
    bg.block_all(n[1], &job_reason("commit"), BlockerOwner::Root(job_root));
    assert_eq!(
        bg.check_op(n[1], BlockOp::CommitSource)
            .unwrap_err()
            .to_string(),
        "Node 'drive0' is busy: block device is in use by block job: commit"
    );
    // Removing the job lifts its blockers; removing the device restores the node name.
    bg.remove_root(job_root).unwrap();
    bg.check_op(n[1], BlockOp::CommitSource).unwrap();
    let edge = bg.graph().root(dev).unwrap().children()[0];
    bg.unref_child(hooks, edge).unwrap();
    bg.remove_root(dev).unwrap();
    assert_eq!(bg.device_or_node_name(n[1]), "top");
}

#[test]
fn blockers_of_a_finished_job_are_lifted_with_its_root() {
    let mut s = stream_running();
    for (node, edge) in
        s.bg.graph()
            .root(s.job)
            .unwrap()
            .children()
            .iter()
            .map(|&e| (s.bg.graph().edge(e).unwrap().child(), e))
            .collect::<Vec<_>>()
    {
        s.bg.unref_child(&TestHooks, edge).unwrap();
        assert!(s.bg.graph().contains_node(node));
    }
    s.bg.remove_root(s.job).unwrap();
    s.bg.check_op(s.top, BlockOp::Stream).unwrap();
    assert_eq!(
        s.bg.check_op(s.mid, BlockOp::Resize)
            .unwrap_err()
            .to_string(),
        "Node 'mid' is busy: node is used as backing hd of 'top'"
    );
    assert_perms_fresh(&s.bg, &TestHooks);
}
