//! strata-graph: node names, list order, chain queries, generation-checked
//! ids and the permission/role bit sets, against QEMU 10.0.2.
//!
//! Every text marked "QMP" below was produced by qemu-storage-daemon 10.0.2
//! (`qemu-storage-daemon --chardev socket,path=$D/qmp.sock,server=on,wait=off,id=m0
//! --monitor chardev=m0`, images from `qemu-img create -f qcow2 X 1M`); the
//! exchange is quoted next to the data row it confirms.

mod ids;
mod names;
mod props;
mod queries;

use strata_graph::{DriverTraits, Graph, NodeId, NodeSpec, Parent, Perm, Role};

/// A format driver with backing support (qcow2).
pub(crate) const FORMAT: DriverTraits = DriverTraits {
    is_filter: false,
    supports_backing: true,
    filtered_child_is_backing: false,
    is_protocol: false,
};
/// A protocol driver (file).
pub(crate) const PROTOCOL: DriverTraits = DriverTraits {
    is_filter: false,
    supports_backing: false,
    filtered_child_is_backing: false,
    is_protocol: true,
};
/// A filter whose filtered child is `file` (throttle, copy-on-read).
pub(crate) const FILTER: DriverTraits = DriverTraits {
    is_filter: true,
    supports_backing: false,
    filtered_child_is_backing: false,
    is_protocol: false,
};
/// `commit_top` / `mirror_top`: a filter whose filtered child is `backing`.
pub(crate) const BACKING_FILTER: DriverTraits = DriverTraits {
    is_filter: true,
    supports_backing: false,
    filtered_child_is_backing: true,
    is_protocol: false,
};

/// Adds a named node.
pub(crate) fn node(g: &mut Graph, name: &str, driver: &str, traits: DriverTraits) -> NodeId {
    g.add_node(NodeSpec::new(driver, traits).name(name))
        .expect("valid unique name")
}

/// Attaches `child` to node `parent` with empty perms.
pub(crate) fn link(
    g: &mut Graph,
    parent: NodeId,
    child: NodeId,
    name: &str,
    role: Role,
) -> strata_graph::EdgeId {
    g.attach(
        Parent::Node(parent),
        child,
        name,
        role,
        Perm::NONE,
        Perm::ALL,
    )
    .expect("attach")
}

/// `qcow2` over a `file` node called `<name>-file`, as `blockdev-add`
/// with an inline file child creates it.
pub(crate) fn qcow2(g: &mut Graph, name: &str) -> NodeId {
    let file = node(g, &format!("{name}-file"), "file", PROTOCOL);
    let fmt = node(g, name, "qcow2", FORMAT);
    link(g, fmt, file, "file", Role::IMAGE);
    fmt
}

#[test]
fn permission_bits_have_qemu_values_and_names() {
    // (bit, value, QAPI name, bdrv_perm_names text)
    let rows = [
        (
            Perm::CONSISTENT_READ,
            0x01,
            "consistent-read",
            "consistent read",
        ),
        (Perm::WRITE, 0x02, "write", "write"),
        (
            Perm::WRITE_UNCHANGED,
            0x04,
            "write-unchanged",
            "write unchanged",
        ),
        (Perm::RESIZE, 0x08, "resize", "resize"),
    ];
    for (bit, value, qapi, message) in rows {
        assert_eq!(bit.bits(), value);
        assert_eq!(bit.qapi_names(), [qapi]);
        assert_eq!(bit.message_names(), message);
    }
    assert_eq!(Perm::ALL.bits(), 0x0f);
    assert_eq!(
        Perm::ALL.message_names(),
        "consistent read, write, write unchanged, resize"
    );
    // The conflict text of the two-qcow2 scenario (see perm::conflicts).
    assert_eq!(
        (Perm::RESIZE | Perm::WRITE).message_names(),
        "write, resize"
    );
    assert_eq!(Perm::NONE.message_names(), "");
    // GRAPH_MOD (0x10) is gone since 7.0: unknown bits are dropped.
    assert_eq!(Perm::from_bits_truncate(0x1f), Perm::ALL);
    assert_eq!(
        !Perm::WRITE,
        Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED | Perm::RESIZE
    );
    assert_eq!(
        Perm::ALL - Perm::WRITE - Perm::RESIZE,
        Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED
    );
    assert_eq!(
        format!("{:?}", Perm::WRITE | Perm::CONSISTENT_READ),
        r#"{"consistent-read", "write"}"#
    );
}

#[test]
fn role_bits_have_qemu_values() {
    let rows = [
        (Role::DATA, 1 << 0),
        (Role::METADATA, 1 << 1),
        (Role::FILTERED, 1 << 2),
        (Role::COW, 1 << 3),
        (Role::PRIMARY, 1 << 4),
        (Role::IMAGE, 0b1_0011),
        (Role::FILTERED_PRIMARY, 0b1_0100),
    ];
    for (role, bits) in rows {
        assert_eq!(role.bits(), bits, "{role:?}");
    }
    assert!(Role::IMAGE.contains(Role::DATA | Role::METADATA | Role::PRIMARY));
    assert!(!Role::IMAGE.intersects(Role::COW | Role::FILTERED));
}

#[test]
fn children_and_parents_are_inserted_at_the_head() {
    // QMP: blockdev-add base (qcow2, file base-file), then
    // -> {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "top",
    //     "file": {"driver": "file", "filename": "top.qcow2", "node-name": "top-file"}, "backing": "base"}}
    // -> {"execute": "x-debug-query-block-graph"}
    // <- edges, in this order: (top, file, top-file), (top, backing, base), (base, file, base-file)
    // x-debug-query-block-graph prepends every edge (QAPI_LIST_PREPEND) while walking
    // nodes in creation order and their children in list order, so top's list is
    // [backing, file]: the child opened last (backing) is at the head.
    let mut g = Graph::new(0);
    let base = qcow2(&mut g, "base");
    let top_file = node(&mut g, "top-file", "file", PROTOCOL);
    let top = node(&mut g, "top", "qcow2", FORMAT);
    let file = link(&mut g, top, top_file, "file", Role::IMAGE);
    let backing = link(&mut g, top, base, "backing", Role::COW);
    assert_eq!(g.node(top).unwrap().children(), [backing, file]);

    // Parents: the newest user first.
    let other = node(&mut g, "other", "qcow2", FORMAT);
    let second = link(&mut g, other, base, "backing", Role::COW);
    assert_eq!(g.node(base).unwrap().parents(), [second, backing]);
    // A root's children too.
    let root = g.add_root(strata_graph::RootKind::Job {
        job_type: "stream".into(),
        id: "j".into(),
    });
    let a = g
        .attach(
            Parent::Root(root),
            top,
            "main node",
            Role::NONE,
            Perm::NONE,
            Perm::ALL,
        )
        .unwrap();
    let b = g
        .attach(
            Parent::Root(root),
            base,
            "base",
            Role::NONE,
            Perm::NONE,
            Perm::ALL,
        )
        .unwrap();
    assert_eq!(g.root(root).unwrap().children(), [b, a]);
    assert_eq!(g.node(base).unwrap().parents(), [b, second, backing]);
    // Retargeting moves the edge to the head of the new child's parents.
    g.retarget(second, top).unwrap();
    assert_eq!(g.node(top).unwrap().parents(), [second, a]);
    assert_eq!(g.node(base).unwrap().parents(), [b, backing]);
}

#[test]
fn roles_fill_the_file_and_backing_slots_as_bdrv_child_cb_attach() {
    let mut g = Graph::new(0);
    let top = qcow2(&mut g, "top");
    let base = qcow2(&mut g, "base");
    let flt = node(&mut g, "flt", "throttle", FILTER);
    let ct = node(&mut g, "ct", "commit_top", BACKING_FILTER);
    let cbw = node(&mut g, "cbw", "copy-before-write", FILTER);
    let target = qcow2(&mut g, "target");

    let backing = link(&mut g, top, base, "backing", Role::COW);
    let filtered = link(&mut g, flt, top, "file", Role::FILTERED_PRIMARY);
    let ct_backing = link(&mut g, ct, base, "backing", Role::FILTERED_PRIMARY);
    let cbw_file = link(&mut g, cbw, top, "file", Role::FILTERED_PRIMARY);
    let cbw_target = link(&mut g, cbw, target, "target", Role::DATA);

    let n = |g: &Graph, id| g.node(id).unwrap().clone();
    assert_eq!(n(&g, top).backing(), Some(backing));
    assert_eq!(
        n(&g, top).file(),
        Some(n(&g, top).children()[1]),
        "the IMAGE child is bs->file"
    );
    assert_eq!(
        (n(&g, flt).file(), n(&g, flt).backing()),
        (Some(filtered), None)
    );
    assert_eq!(
        (n(&g, ct).file(), n(&g, ct).backing()),
        (None, Some(ct_backing))
    );
    // A DATA child that is not primary (cbw's target) fills no slot.
    assert_eq!(
        (n(&g, cbw).file(), n(&g, cbw).backing()),
        (Some(cbw_file), None)
    );
    assert_eq!(n(&g, cbw).children(), [cbw_target, cbw_file]);
    assert_eq!(g.primary_child(cbw), Some(cbw_file));
    // Detaching clears the slot.
    g.detach(backing).unwrap();
    assert_eq!(n(&g, top).backing(), None);
}

#[test]
fn cycles_are_refused_with_qemus_text() {
    // QMP (chain base <- mid <- top, each blockdev-add'ed with "backing": <name>):
    // -> {"execute": "blockdev-reopen", "arguments": {"options": [{"driver": "qcow2",
    //     "node-name": "base", "file": "base-file", "backing": "top", ...}]}}
    // <- {"error": {"class": "GenericError", "desc": "Making 'top' a backing child of 'base' would create a cycle"}}
    let mut g = Graph::new(0);
    let base = qcow2(&mut g, "base");
    let mid = qcow2(&mut g, "mid");
    let top = qcow2(&mut g, "top");
    link(&mut g, mid, base, "backing", Role::COW);
    link(&mut g, top, mid, "backing", Role::COW);
    let before = dump(&g);
    let err = g
        .attach(
            Parent::Node(base),
            top,
            "backing",
            Role::COW,
            Perm::NONE,
            Perm::ALL,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Making 'top' a backing child of 'base' would create a cycle"
    );
    assert!(matches!(err.kind(), strata_graph::ErrorKind::Cycle { .. }));
    assert_eq!(dump(&g), before, "a refused attach changes nothing");
    // A node is its own descendant.
    let err = g
        .attach(
            Parent::Node(top),
            top,
            "file",
            Role::IMAGE,
            Perm::NONE,
            Perm::ALL,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Making 'top' a file child of 'top' would create a cycle"
    );
    assert_eq!(dump(&g), before);
}

/// What `feed` writes into a fresh hasher, hashed.
pub(crate) fn hashed(feed: impl FnOnce(&mut std::hash::DefaultHasher)) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    feed(&mut h);
    h.finish()
}

#[test]
fn the_canonical_hash_ignores_arena_slots_but_not_content() {
    use std::hash::Hash;
    let hash = |g: &Graph| hashed(|h| g.hash(h));
    let build = |g: &mut Graph| {
        let base = qcow2(g, "base");
        let top = qcow2(g, "top");
        link(g, top, base, "backing", Role::COW)
    };
    let mut plain = Graph::new(7);
    build(&mut plain);
    // Same graph, but a node came and went first: different slots and ids.
    let mut churned = Graph::new(7);
    let gone = node(&mut churned, "gone", "file", PROTOCOL);
    churned.unref_node(gone).unwrap();
    let edge = build(&mut churned);
    assert_eq!(hash(&plain), hash(&churned));
    churned
        .set_perms(edge, Perm::CONSISTENT_READ, Perm::ALL)
        .unwrap();
    assert_ne!(hash(&plain), hash(&churned));
}

/// Everything a graph holds, by id: every node and edge with all their
/// fields, every root, in list order. (`Graph`'s own `Debug` shows only
/// the arenas' sizes.)
pub(crate) fn dump(g: &Graph) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for n in g.nodes() {
        let node = g.node(n).expect("listed nodes are live");
        let _ = writeln!(out, "{n:?} {node:?}");
        for &e in node.children() {
            let _ = writeln!(
                out,
                "  {e:?} {:?}",
                g.edge(e).expect("listed edges are live")
            );
        }
    }
    for r in g.roots() {
        let root = g.root(r).expect("listed roots are live");
        let _ = writeln!(out, "{r:?} {root:?}");
        for &e in root.children() {
            let _ = writeln!(
                out,
                "  {e:?} {:?}",
                g.edge(e).expect("listed edges are live")
            );
        }
    }
    out
}
