//! Generation-checked ids: a stale id is an error, never an alias of
//! whatever later occupies its slot; references and deletion.

use super::{dump, hashed, link, node, qcow2, PROTOCOL};
use strata_graph::{ErrorKind, Graph, NodeSpec, Parent, Perm, Role, RootKind};

#[test]
fn stale_node_edge_and_root_ids_are_errors_not_aliases() {
    let mut g = Graph::new(0);
    let old = node(&mut g, "old", "file", PROTOCOL);
    let parent = node(&mut g, "parent", "qcow2", super::FORMAT);
    let old_edge = link(&mut g, parent, old, "file", Role::IMAGE);
    let root = g.add_root(RootKind::Backend { name: None });

    g.detach(old_edge).unwrap();
    g.unref_node(old).unwrap();
    g.remove_root(root).unwrap();
    // New values very likely reuse the freed slots.
    let new = node(&mut g, "new", "file", PROTOCOL);
    let new_edge = link(&mut g, parent, new, "file", Role::IMAGE);
    let new_root = g.add_root(RootKind::Backend { name: None });
    assert_ne!(old, new);
    assert_ne!(old_edge, new_edge);
    assert_ne!(root, new_root);

    assert_eq!(*g.node(old).unwrap_err().kind(), ErrorKind::StaleId);
    assert_eq!(*g.edge(old_edge).unwrap_err().kind(), ErrorKind::StaleId);
    assert_eq!(*g.root(root).unwrap_err().kind(), ErrorKind::StaleId);
    assert!(g.node_mut(old).is_err());
    assert!(!g.contains_node(old));
    assert!(g.children_of(Parent::Node(old)).is_err());
    assert!(g.children_of(Parent::Root(root)).is_err());
    assert!(g.ref_node(old).is_err());
    assert!(g.unref_node(old).is_err());
    assert!(g.set_perms(old_edge, Perm::ALL, Perm::ALL).is_err());
    assert!(g.set_frozen(old_edge, true).is_err());
    assert!(g.detach(old_edge).is_err());
    assert!(g.retarget(new_edge, old).is_err());
    assert!(g.parent_description(old_edge).is_err());
    let before = dump(&g);
    assert!(g
        .attach(
            Parent::Node(parent),
            old,
            "file",
            Role::IMAGE,
            Perm::NONE,
            Perm::ALL
        )
        .is_err());
    assert!(g
        .attach(
            Parent::Node(old),
            new,
            "file",
            Role::IMAGE,
            Perm::NONE,
            Perm::ALL
        )
        .is_err());
    assert!(g
        .attach(
            Parent::Root(root),
            new,
            "root",
            Role::NONE,
            Perm::NONE,
            Perm::ALL
        )
        .is_err());
    assert!(g.remove_root(root).is_err());
    assert_eq!(dump(&g), before, "refused calls change nothing");
    // The live values are untouched.
    assert_eq!(g.node(new).unwrap().name(), "new");
    assert_eq!(g.edge(new_edge).unwrap().child(), new);
    assert!(g.root(new_root).is_ok());
}

#[test]
fn every_reuse_of_a_slot_gets_a_new_id() {
    let mut g = Graph::new(0);
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..50 {
        let id = g.add_node(NodeSpec::new("file", PROTOCOL)).unwrap();
        assert!(
            seen.insert(id),
            "round {round}: id {id:?} was issued before"
        );
        g.unref_node(id).unwrap();
        for old in &seen {
            assert!(g.node(*old).is_err());
        }
    }
}

#[test]
fn unref_deletes_at_zero_and_closes_children_in_list_order() {
    let mut g = Graph::new(0);
    let base = qcow2(&mut g, "base");
    let top = qcow2(&mut g, "top");
    let backing = link(&mut g, top, base, "backing", Role::COW);
    let top_file = g.find_node("top-file").unwrap();
    let base_file = g.find_node("base-file").unwrap();
    // Creator ref + one per parent edge.
    assert_eq!(g.node(base).unwrap().refcnt(), 2);
    // Give every child's creator reference to its parent edge.
    for n in [base, top_file, base_file] {
        g.unref_node(n).unwrap();
    }
    assert!(g.contains_node(base), "the backing edge keeps base alive");
    assert_eq!(g.node(base).unwrap().refcnt(), 1);

    let outcome = g.unref_node(top).unwrap();
    // top's children are [backing, file]: backing (and below it) first.
    assert_eq!(outcome.deleted, [base_file, base, top_file, top]);
    assert!(
        outcome.lost_parents.is_empty(),
        "every survivor was deleted"
    );
    assert!(g.edge(backing).is_err());
    assert_eq!(g.nodes().count(), 0);
}

#[test]
fn detach_and_retarget_report_survivors_and_refuse_frozen_links() {
    let mut g = Graph::new(0);
    let base = qcow2(&mut g, "base");
    let other = qcow2(&mut g, "other");
    let top = qcow2(&mut g, "top");
    let backing = link(&mut g, top, base, "backing", Role::COW);

    g.set_frozen(backing, true).unwrap();
    let before = dump(&g);
    let err = g.detach(backing).unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::FrozenLink("backing".into()));
    assert!(g.retarget(backing, other).is_err());
    assert_eq!(dump(&g), before);
    g.set_frozen(backing, false).unwrap();

    let moved = g.retarget(backing, other).unwrap();
    assert_eq!(moved.lost_parents, [base]);
    assert!(moved.deleted.is_empty(), "base still has its creator ref");
    assert_eq!(
        g.edge(backing).unwrap().child(),
        other,
        "the edge keeps its id"
    );
    assert_eq!(g.node(top).unwrap().backing(), Some(backing));
    let gone = g.detach(backing).unwrap();
    assert_eq!(gone.lost_parents, [other]);
    assert_eq!(g.node(top).unwrap().backing(), None);
}

#[test]
fn parent_descriptions_are_get_parent_desc() {
    // QEMU's texts: child_of_bds `node '%s'`; child_root `block device '%s'` or
    // `an unnamed block device`; child_job `%s job '%s'` (QMP-confirmed uses in
    // perm::conflicts).
    let mut g = Graph::new(0);
    let n = qcow2(&mut g, "n");
    let top = qcow2(&mut g, "top");
    let rows = [
        (Parent::Node(top), "node 'top'"),
        (
            Parent::Root(g.add_root(RootKind::Backend {
                name: Some("drive0".into()),
            })),
            "block device 'drive0'",
        ),
        (
            Parent::Root(g.add_root(RootKind::Backend { name: None })),
            "an unnamed block device",
        ),
        (
            Parent::Root(g.add_root(RootKind::Job {
                job_type: "stream".into(),
                id: "j".into(),
            })),
            "stream job 'j'",
        ),
    ];
    for (parent, text) in rows {
        let e = g
            .attach(parent, n, "x", Role::NONE, Perm::NONE, Perm::ALL)
            .unwrap();
        assert_eq!(g.parent_description(e).unwrap(), text);
    }
}

/// The id a new node gets depends on which slots are taken, not on the
/// order in which the others were freed: a simulator's state key hashes
/// the ids graphs hold (`Graph::hash_ids`), and two graphs equal in it must
/// give the next node the same id, or two worlds with one key would part
/// at the next node (which a free list in removal order did: 030's
/// parallel streams completing in different orders, issue 17).
#[test]
fn a_new_node_takes_the_same_id_whatever_order_the_others_were_freed_in() {
    let ids_hash = |g: &Graph| hashed(|h| g.hash_ids(h));
    let freed_in = |order: [&str; 2]| {
        let mut g = Graph::new(0);
        let a = node(&mut g, "a", "file", PROTOCOL);
        let b = node(&mut g, "b", "file", PROTOCOL);
        node(&mut g, "c", "file", PROTOCOL);
        for name in order {
            g.unref_node(if name == "a" { a } else { b }).unwrap();
        }
        g
    };
    let mut one = freed_in(["a", "b"]);
    let mut other = freed_in(["b", "a"]);
    assert_eq!(ids_hash(&one), ids_hash(&other));
    let next = node(&mut one, "d", "file", PROTOCOL);
    assert_eq!(node(&mut other, "d", "file", PROTOCOL), next);
    assert_eq!(ids_hash(&one), ids_hash(&other));
    // The canonical hash leaves ids out; `hash_ids` tells apart graphs
    // that hold the same names at different ids.
    let mut plain = Graph::new(0);
    node(&mut plain, "d", "file", PROTOCOL);
    let mut churned = Graph::new(0);
    let gone = node(&mut churned, "gone", "file", PROTOCOL);
    churned.unref_node(gone).unwrap();
    node(&mut churned, "d", "file", PROTOCOL);
    assert_ne!(ids_hash(&plain), ids_hash(&churned));
}
