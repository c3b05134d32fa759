//! The chain queries of block.c on one graph that has every kind of link:
//!
//! ```text
//! top --backing(COW)--> cor --file--> mid --backing(COW)--> ct --backing(FILTERED)--> thr --file--> base
//!  |                   (implicit       |                   (commit_top,              (explicit
//!  file                 copy-on-read)  file                 implicit)                 throttle)
//! ```
//!
//! Every qcow2 also has a `file` child, which is never part of a chain.

use super::{link, node, qcow2, BACKING_FILTER, FILTER};
use strata_graph::{EdgeId, Graph, NodeId, NodeSpec, Role};

struct Chain {
    g: Graph,
    top: NodeId,
    cor: NodeId,
    mid: NodeId,
    ct: NodeId,
    thr: NodeId,
    base: NodeId,
    top_backing: EdgeId,
    cor_file: EdgeId,
    mid_backing: EdgeId,
    ct_backing: EdgeId,
    thr_file: EdgeId,
}

fn chain() -> Chain {
    let mut g = Graph::new(3);
    let base = qcow2(&mut g, "base");
    let thr = node(&mut g, "thr", "throttle", FILTER);
    let thr_file = link(&mut g, thr, base, "file", Role::FILTERED_PRIMARY);
    let ct = g
        .add_node(NodeSpec::new("commit_top", BACKING_FILTER).implicit(true))
        .unwrap();
    let ct_backing = link(&mut g, ct, thr, "backing", Role::FILTERED_PRIMARY);
    let mid = qcow2(&mut g, "mid");
    let mid_backing = link(&mut g, mid, ct, "backing", Role::COW);
    let cor = g
        .add_node(NodeSpec::new("copy-on-read", FILTER).implicit(true))
        .unwrap();
    let cor_file = link(&mut g, cor, mid, "file", Role::FILTERED_PRIMARY);
    let top = qcow2(&mut g, "top");
    let top_backing = link(&mut g, top, cor, "backing", Role::COW);
    Chain {
        g,
        top,
        cor,
        mid,
        ct,
        thr,
        base,
        top_backing,
        cor_file,
        mid_backing,
        ct_backing,
        thr_file,
    }
}

#[test]
fn child_accessors_distinguish_filtered_and_cow_children() {
    let c = chain();
    let g = &c.g;
    // (node, filter_child, cow_child)
    let rows = [
        (c.top, None, Some(c.top_backing)),
        (c.cor, Some(c.cor_file), None),
        (c.mid, None, Some(c.mid_backing)),
        (c.ct, Some(c.ct_backing), None),
        (c.thr, Some(c.thr_file), None),
        (c.base, None, None),
    ];
    for (n, filter, cow) in rows {
        let name = g.name(n);
        assert_eq!(g.filter_child(n), filter, "filter_child({name})");
        assert_eq!(g.cow_child(n), cow, "cow_child({name})");
        assert_eq!(
            g.filter_or_cow_child(n),
            filter.or(cow),
            "filter_or_cow_child({name})"
        );
        let child = |e: Option<EdgeId>| e.map(|e| g.edge(e).unwrap().child());
        assert_eq!(g.filter_node(n), child(filter));
        assert_eq!(g.cow_node(n), child(cow));
        assert_eq!(g.filter_or_cow_node(n), child(filter.or(cow)));
    }
    // A qcow2's file child is its primary child but never a chain link.
    let top_file = g.node(c.top).unwrap().file().unwrap();
    assert_eq!(g.primary_child(c.top), Some(top_file));
    assert_eq!(g.primary_child(c.cor), Some(c.cor_file));
    assert_eq!(g.primary_child(c.ct), Some(c.ct_backing));
    let base_file = g
        .edge(g.node(c.base).unwrap().file().unwrap())
        .unwrap()
        .child();
    assert_eq!(g.primary_child(base_file), None);
    assert_eq!(g.filter_or_cow_child(base_file), None);
}

#[test]
fn skip_filters_and_skip_implicit_filters() {
    let c = chain();
    let g = &c.g;
    // (start, skip_filters, skip_implicit_filters)
    let rows = [
        (c.top, c.top, c.top),
        (c.cor, c.mid, c.mid),
        (c.mid, c.mid, c.mid),
        // ct is implicit: skip it; thr is explicit: stop there.
        (c.ct, c.base, c.thr),
        (c.thr, c.base, c.thr),
        (c.base, c.base, c.base),
    ];
    for (start, skipped, implicit_skipped) in rows {
        let name = g.name(start);
        assert_eq!(g.skip_filters(start), skipped, "skip_filters({name})");
        assert_eq!(
            g.skip_implicit_filters(start),
            implicit_skipped,
            "skip_implicit_filters({name})"
        );
    }
}

#[test]
fn backing_chain_walks_go_through_filters() {
    let c = chain();
    let g = &c.g;
    let names = |it: &mut dyn Iterator<Item = NodeId>| {
        it.map(|n| g.name(n).to_string()).collect::<Vec<_>>()
    };
    let ct_name = g.name(c.ct).to_string();
    let cor_name = g.name(c.cor).to_string();
    assert_eq!(
        names(&mut g.chain(c.top)),
        [
            "top",
            cor_name.as_str(),
            "mid",
            ct_name.as_str(),
            "thr",
            "base"
        ]
    );
    // backing_chain_next: the next non-filter image below skip_filters(x).
    let rows = [
        (c.top, Some(c.mid)),
        (c.cor, Some(c.base)),
        (c.mid, Some(c.base)),
        (c.ct, None),
        (c.base, None),
    ];
    for (n, next) in rows {
        assert_eq!(
            g.backing_chain_next(n),
            next,
            "backing_chain_next({})",
            g.name(n)
        );
    }
    // chain_contains is inclusive at the top and walks filters.
    for (top, base, contains) in [
        (c.top, c.top, true),
        (c.top, c.cor, true),
        (c.top, c.thr, true),
        (c.top, c.base, true),
        (c.mid, c.ct, true),
        (c.mid, c.top, false),
        (c.base, c.thr, false),
    ] {
        assert_eq!(
            g.chain_contains(top, base),
            contains,
            "{} {}",
            g.name(top),
            g.name(base)
        );
    }
    let top_file = g
        .edge(g.node(c.top).unwrap().file().unwrap())
        .unwrap()
        .child();
    assert!(
        !g.chain_contains(c.top, top_file),
        "file children are no chain links"
    );
}

#[test]
fn find_overlay_and_find_base_ignore_filters() {
    let c = chain();
    let g = &c.g;
    let top_file = g
        .edge(g.node(c.top).unwrap().file().unwrap())
        .unwrap()
        .child();
    // (active, bs, overlay)
    let rows = [
        (c.top, Some(c.base), Some(c.mid)),
        // Filters between an overlay and bs are invisible.
        (c.top, Some(c.thr), Some(c.mid)),
        (c.top, Some(c.ct), Some(c.mid)),
        (c.top, Some(c.mid), Some(c.top)),
        // bs is skip_filtered first: cor is mid.
        (c.top, Some(c.cor), Some(c.top)),
        // active == bs after skipping.
        (c.top, Some(c.top), None),
        (c.cor, Some(c.mid), None),
        // Not in the chain.
        (c.top, Some(top_file), None),
        (c.mid, Some(c.top), None),
        // No bs: the bottom-most image.
        (c.top, None, Some(c.base)),
        (c.base, None, Some(c.base)),
    ];
    for (active, bs, overlay) in rows {
        assert_eq!(
            g.find_overlay(active, bs),
            overlay,
            "find_overlay({}, {:?})",
            g.name(active),
            bs.map(|b| g.name(b))
        );
    }
    assert_eq!(g.find_base(c.top), c.base);
    assert_eq!(g.find_base(c.cor), c.base);
    assert_eq!(g.find_base(c.base), c.base);
    assert_eq!(g.find_base(c.thr), c.base);
}

#[test]
fn queries_on_stale_ids_answer_nothing() {
    let mut c = chain();
    let lone = node(&mut c.g, "lone", "throttle", FILTER);
    c.g.unref_node(lone).unwrap();
    let g = &c.g;
    assert_eq!(g.filter_child(lone), None);
    assert_eq!(g.cow_child(lone), None);
    assert_eq!(g.primary_child(lone), None);
    assert!(!g.chain_contains(c.top, lone));
    assert_eq!(g.find_node("lone"), None);
    assert_eq!(g.name(lone), "");
}
