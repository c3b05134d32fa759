//! A backing chain with a filter in it, and the questions QEMU's block jobs
//! ask of it: what is the chain, which image lies below which, who is the
//! overlay of the base, what is the base at all.
//!
//! ```text
//! cargo run -p strata-graph --example chain_queries
//! ```
//!
//! The graph built here is `top -> mid -> flt (throttle) -> base`, each image
//! on its own `file` node, with an implicit copy-on-read filter on top (as
//! `block-stream` inserts one; unnamed, it gets a generated `#block` name):
//!
//! ```text
//! cor -> top -> mid -> flt -> base
//!         |      |             |
//!       top-f  mid-f         base-f
//! ```

use strata_graph::{DriverTraits, Graph, NodeId, NodeSpec, OptValue, Options, Parent, Perm, Role};

fn main() -> Result<(), strata_graph::Error> {
    let mut g = Graph::new(42);
    let format = DriverTraits {
        supports_backing: true,
        ..DriverTraits::default()
    };
    let filter = DriverTraits {
        is_filter: true,
        ..DriverTraits::default()
    };

    let base = image(&mut g, format, "base")?;
    let flt = g.add_node(NodeSpec::new("throttle", filter).name("flt"))?;
    let mid = image(&mut g, format, "mid")?;
    let top = image(&mut g, format, "top")?;
    let cor = g.add_node(NodeSpec::new("copy-on-read", filter).implicit(true))?;
    link(&mut g, flt, base, "file", Role::FILTERED_PRIMARY)?;
    link(&mut g, mid, flt, "backing", Role::COW)?;
    link(&mut g, top, mid, "backing", Role::COW)?;
    link(&mut g, cor, top, "file", Role::FILTERED_PRIMARY)?;

    let names = |nodes: &mut dyn Iterator<Item = NodeId>, separator: &str| {
        nodes
            .map(|n| g.name(n).to_string())
            .collect::<Vec<_>>()
            .join(separator)
    };
    println!(
        "nodes, in creation order:   {}",
        names(&mut g.nodes(), ", ")
    );
    println!(
        "chain from cor:             {}",
        names(&mut g.chain(cor), " -> ")
    );
    println!(
        "skip_filters(cor):          {}",
        g.name(g.skip_filters(cor))
    );
    println!(
        "skip_implicit_filters(cor): {}",
        g.name(g.skip_implicit_filters(cor))
    );
    let next = |n: NodeId| g.backing_chain_next(n).map_or("(none)", |n| g.name(n));
    println!("backing_chain_next(top):    {}", next(top));
    println!(
        "backing_chain_next(mid):    {}  (the throttle filter is skipped)",
        next(mid)
    );
    println!("backing_chain_next(base):   {}", next(base));
    let overlay = g
        .find_overlay(cor, Some(base))
        .map_or("(none)", |n| g.name(n));
    println!("find_overlay(cor, base):    {overlay}");
    println!("find_base(cor):             {}", g.name(g.find_base(cor)));
    println!("chain_contains(top, flt):   {}", g.chain_contains(top, flt));
    println!("chain_contains(mid, top):   {}", g.chain_contains(mid, top));

    // A node keeps its options as plain data, in insertion order (which
    // decides QEMU's QDict order; strata-qmp renders them as JSON).
    let opts = &g.node(base)?.options;
    let keys: Vec<&str> = opts.iter().map(|(k, _)| k).collect();
    println!("base's option keys:         {keys:?}");

    // Names are checked with QEMU's rules and texts.
    let err = g
        .add_node(NodeSpec::new("qcow2", format).name("mid"))
        .unwrap_err();
    println!("adding a second 'mid':      {err}");
    Ok(())
}

/// A qcow2 node `name` on a file node `<name>-f`.
fn image(g: &mut Graph, traits: DriverTraits, name: &str) -> Result<NodeId, strata_graph::Error> {
    let s = |v: &str| OptValue::Str(v.to_string());
    let file_opts = Options::new()
        .with("driver", s("file"))
        .with("filename", s(&format!("{name}.qcow2")));
    let file_traits = DriverTraits {
        is_protocol: true,
        ..DriverTraits::default()
    };
    let file = g.add_node(
        NodeSpec::new("file", file_traits)
            .name(format!("{name}-f"))
            .options(file_opts.clone()),
    )?;
    let opts = Options::new()
        .with("driver", s("qcow2"))
        .with("file", OptValue::Dict(file_opts));
    let node = g.add_node(NodeSpec::new("qcow2", traits).name(name).options(opts))?;
    link(g, node, file, "file", Role::IMAGE)?;
    Ok(node)
}

/// Links `parent` to `child` with no permissions taken (strata-graph checks
/// none; strata-perm does).
fn link(
    g: &mut Graph,
    parent: NodeId,
    child: NodeId,
    name: &str,
    role: Role,
) -> Result<(), strata_graph::Error> {
    g.attach(
        Parent::Node(parent),
        child,
        name,
        role,
        Perm::NONE,
        Perm::ALL,
    )?;
    Ok(())
}
