//! Node names: `id_wellformed`, QEMU's three errors, generated `#block`
//! names, creation order and lookup by name.

use super::{dump, node, FORMAT, PROTOCOL};
use strata_graph::{id_wellformed, DriverTraits, ErrorKind, Graph, NodeSpec};

/// `blockdev-add` of a null-co node per row, in this order, on one daemon;
/// the expected result is QEMU's reply.
const BLOCKDEV_ADD_NAMES: &[(&str, Result<(), &str>)] = &[
    // -> {"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "1bad"}}
    // <- {"error": {"class": "GenericError", "desc": "Invalid node-name: '1bad'"}}
    ("1bad", Err("Invalid node-name: '1bad'")),
    // -> {"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "a b"}}
    // <- {"error": {"class": "GenericError", "desc": "Invalid node-name: 'a b'"}}
    ("a b", Err("Invalid node-name: 'a b'")),
    // -> {"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "_x"}}
    // <- {"error": {"class": "GenericError", "desc": "Invalid node-name: '_x'"}}
    ("_x", Err("Invalid node-name: '_x'")),
    // -> {"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "ok-name.1_x"}}
    // <- {"return": {}}
    ("ok-name.1_x", Ok(())),
    // 31 characters.
    // -> {"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}
    // <- {"return": {}}
    ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Ok(())),
    // 32 characters.
    // -> {"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}
    // <- {"error": {"class": "GenericError", "desc": "Node name too long"}}
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        Err("Node name too long"),
    ),
    // -> {"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "ok-name.1_x"}}
    // <- {"error": {"class": "GenericError", "desc": "Duplicate nodes with node-name='ok-name.1_x'"}}
    (
        "ok-name.1_x",
        Err("Duplicate nodes with node-name='ok-name.1_x'"),
    ),
    // -> {"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}}
    // <- {"error": {"class": "GenericError", "desc": "Node name too long"}}
    (
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        Err("Node name too long"),
    ),
    // Well-formedness is checked before the length.
    // -> {"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}
    // <- {"error": {"class": "GenericError", "desc": "Invalid node-name: '1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'"}}
    (
        "1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        Err("Invalid node-name: '1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'"),
    ),
    // A generated name cannot be given by the user.
    // -> {"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "#block000"}}
    // <- {"error": {"class": "GenericError", "desc": "Invalid node-name: '#block000'"}}
    ("#block000", Err("Invalid node-name: '#block000'")),
];

#[test]
fn user_node_names_follow_qemu_rules_and_texts() {
    let mut g = Graph::new(0);
    for &(name, expected) in BLOCKDEV_ADD_NAMES {
        let before = dump(&g);
        let got = g.add_node(NodeSpec::new("null-co", DriverTraits::default()).name(name));
        match expected {
            Ok(()) => {
                let id = got.unwrap_or_else(|e| panic!("{name:?} refused: {e}"));
                assert_eq!(g.node(id).unwrap().name(), name);
            }
            Err(text) => {
                assert_eq!(got.unwrap_err().to_string(), text, "name {name:?}");
                assert_eq!(dump(&g), before, "a refused name leaves nothing");
            }
        }
    }
    // Each text comes from its own kind.
    let kind = |name: &str, g: &mut Graph| {
        g.add_node(NodeSpec::new("null-co", DriverTraits::default()).name(name))
            .unwrap_err()
            .kind()
            .clone()
    };
    assert_eq!(kind("9", &mut g), ErrorKind::InvalidNodeName("9".into()));
    assert_eq!(kind(&"c".repeat(32), &mut g), ErrorKind::NodeNameTooLong);
    assert_eq!(
        kind("ok-name.1_x", &mut g),
        ErrorKind::DuplicateNodeName("ok-name.1_x".into())
    );
}

#[test]
fn id_wellformed_is_letter_first_then_alnum_or_dash_dot_underscore() {
    let rows = [
        ("a", true),
        ("Z", true),
        ("a-b.c_d9", true),
        ("node0", true),
        ("", false),
        ("0a", false),
        ("-a", false),
        (".a", false),
        ("a/b", false),
        ("a:b", false),
        ("#block123", false),
        // qemu_isalpha/qemu_isalnum are ASCII only.
        ("é", false),
        ("aé", false),
    ];
    for (id, ok) in rows {
        assert_eq!(id_wellformed(id), ok, "{id:?}");
        // Node names (strata-graph) and job ids (strata-jobs) follow the
        // same util/id.c rule; each leaf crate keeps its own copy so that
        // neither depends on the other, and this keeps them equal.
        assert_eq!(strata_jobs::id_wellformed(id), ok, "job id {id:?}");
    }
}

/// Splits `#block<counter><two digits>` into (counter, digits).
fn parse_generated(name: &str) -> (u64, u64) {
    let rest = name.strip_prefix("#block").expect("#block prefix");
    assert!(rest.len() >= 3, "{name}: counter and two digits");
    assert!(rest.bytes().all(|b| b.is_ascii_digit()), "{name}");
    let (counter, digits) = rest.split_at(rest.len() - 2);
    (counter.parse().unwrap(), digits.parse().unwrap())
}

#[test]
fn generated_names_are_block_counter_and_two_seeded_digits() {
    // QMP: an inline file child without node-name gets a generated name:
    // -> {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "q",
    //     "file": {"driver": "file", "filename": "a.qcow2"}}}
    // -> {"execute": "query-named-block-nodes", "arguments": {"flat": true}}
    // <- node names ["z", "q", "#block084", ...]: counter 0, random digits 84.
    let names_for = |seed: u64| {
        let mut g = Graph::new(seed);
        let mut names = Vec::new();
        for i in 0..24 {
            // User-named nodes do not advance the counter (id_generate is
            // only called for unnamed nodes).
            node(&mut g, &format!("user{i}"), "file", PROTOCOL);
            let id = g.add_node(NodeSpec::new("file", PROTOCOL)).unwrap();
            names.push(g.node(id).unwrap().name().to_string());
        }
        names
    };
    let names = names_for(1);
    for (i, name) in names.iter().enumerate() {
        let (counter, digits) = parse_generated(name);
        assert_eq!(counter, i as u64, "{name}");
        assert!(digits < 100);
        assert!(
            !id_wellformed(name),
            "a generated name never collides with a user name"
        );
    }
    // The digits are random-looking but replay with the seed.
    assert_eq!(names, names_for(1));
    let digits: std::collections::BTreeSet<u64> =
        names.iter().map(|n| parse_generated(n).1).collect();
    assert!(digits.len() > 5, "digits vary: {names:?}");
    assert_ne!(names, names_for(2), "another seed, other digits");
}

#[test]
fn nodes_are_listed_in_creation_order_and_found_by_name() {
    // QMP: blockdev-add null-co "ok-name.1_x", "aaa...a" (31), then qcow2 "q" with an
    // anonymous file child, then null-co "z":
    // -> {"execute": "query-named-block-nodes", "arguments": {"flat": true}}
    // <- ['z', 'q', '#block084', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'ok-name.1_x']
    // bdrv_named_nodes_list walks graph_bdrv_states and prepends each entry, so
    // the list QEMU keeps is creation order: ok-name.1_x, aaa, #block084, q, z
    // (the file child is opened before its qcow2 parent).
    let mut g = Graph::new(0);
    let first = node(&mut g, "ok-name.1_x", "null-co", DriverTraits::default());
    let long = node(&mut g, &"a".repeat(31), "null-co", DriverTraits::default());
    let anon = g.add_node(NodeSpec::new("file", PROTOCOL)).unwrap();
    let q = node(&mut g, "q", "qcow2", FORMAT);
    let z = node(&mut g, "z", "null-co", DriverTraits::default());
    assert_eq!(g.nodes().collect::<Vec<_>>(), [first, long, anon, q, z]);

    assert_eq!(g.find_node("q"), Some(q));
    assert_eq!(g.find_node(g.name(anon)).unwrap(), anon);
    assert_eq!(g.find_node("nope"), None);
    assert_eq!(g.find_node(""), None);

    // Deleting keeps the others' order; the name is free again.
    g.unref_node(long).unwrap();
    assert_eq!(g.nodes().collect::<Vec<_>>(), [first, anon, q, z]);
    assert_eq!(g.find_node(&"a".repeat(31)), None);
    let again = node(&mut g, &"a".repeat(31), "null-co", DriverTraits::default());
    assert_eq!(g.nodes().last(), Some(again));
    assert_ne!(again, long);
}
