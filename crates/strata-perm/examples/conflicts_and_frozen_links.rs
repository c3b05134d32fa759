//! QEMU's permission rules on a small graph: what each link takes and
//! shares, a conflict refused with QEMU's exact text, a frozen backing link
//! refusing every change, and an op blocker making a node busy. Every refused
//! change leaves the graph exactly as it was.
//!
//! ```text
//! cargo run -p strata-perm --example conflicts_and_frozen_links
//! ```

use std::hash::{DefaultHasher, Hash, Hasher};
use strata_graph::{DriverTraits, EdgeId, NodeId, NodeSpec, Perm, Role, RootKind};
use strata_perm::{
    BlockGraph, BlockOp, BlockerOwner, ChildSlot, DefaultPerms, ReplaceOptions, Result,
};

fn main() -> Result<()> {
    let hooks = &DefaultPerms; // bdrv_default_perms, as a format driver uses them
    let format = DriverTraits {
        supports_backing: true,
        ..DriverTraits::default()
    };
    let protocol = DriverTraits {
        is_protocol: true,
        ..DriverTraits::default()
    };

    // base (read-only) <- top, each qcow2 on its own file, and a BlockBackend
    // `drive0` writing to top.
    let mut bg = BlockGraph::new(0);
    let base_file = bg.add_node(
        NodeSpec::new("file", protocol)
            .name("base-file")
            .read_only(true),
    )?;
    let base = bg.add_node(NodeSpec::new("qcow2", format).name("base").read_only(true))?;
    bg.attach_child(hooks, base, base_file, "file", Role::IMAGE)?;
    let top_file = bg.add_node(NodeSpec::new("file", protocol).name("top-file"))?;
    let top = bg.add_node(NodeSpec::new("qcow2", format).name("top"))?;
    bg.attach_child(hooks, top, top_file, "file", Role::IMAGE)?;
    bg.set_file_or_backing(hooks, top, Some(base), ChildSlot::Backing)?;
    let drive0 = bg.add_root(RootKind::Backend {
        name: Some("drive0".into()),
    });
    let all_but_resize = Perm::ALL - Perm::RESIZE;
    bg.root_attach_child(
        hooks,
        drive0,
        top,
        "root",
        Perm::CONSISTENT_READ | Perm::WRITE,
        all_but_resize,
    )?;
    print_links(&bg);

    println!("\n== a second qcow2 node writing to top's file");
    let intruder = bg.add_node(NodeSpec::new("qcow2", format).name("intruder"))?;
    refused(&mut bg, |bg| {
        bg.attach_child(hooks, intruder, top_file, "file", Role::IMAGE)
            .map(drop)
    });

    println!("\n== a writer on the read-only base");
    let writer = bg.add_root(RootKind::Backend {
        name: Some("writer".into()),
    });
    refused(&mut bg, |bg| {
        bg.root_attach_child(hooks, writer, base, "root", Perm::WRITE, Perm::ALL)
            .map(drop)
    });

    println!("\n== the backing link top -> base frozen (as a stream job freezes it)");
    bg.freeze_chain(top, Some(base))?;
    refused(&mut bg, |bg| {
        bg.set_file_or_backing(hooks, top, None, ChildSlot::Backing)
    });
    refused(&mut bg, |bg| {
        bg.replace_node(hooks, base, base_file, ReplaceOptions::REPLACE_NODE)
    });
    refused(&mut bg, |bg| bg.freeze_chain(top, None));
    bg.unfreeze_chain(top, Some(base))?;
    println!("unfrozen: the same change now works");
    bg.set_file_or_backing(hooks, top, None, ChildSlot::Backing)?;
    println!(
        "top has a backing child: {}",
        bg.graph().node(top)?.backing().is_some()
    );

    println!("\n== an op blocker, as a running job installs on its nodes");
    let job = bg.add_root(RootKind::Job {
        job_type: "stream".into(),
        id: "job0".into(),
    });
    bg.block_all(
        top,
        "block device is in use by block job: stream",
        BlockerOwner::Root(job),
    );
    refused(&mut bg, |bg| bg.check_op(top, BlockOp::CommitSource));
    bg.unblock(top, &BlockerOwner::Root(job));
    println!(
        "after unblock, commit on top: {:?}",
        bg.check_op(top, BlockOp::CommitSource)
    );
    Ok(())
}

/// Tries `change`, prints QEMU's error text, and shows that nothing moved.
fn refused(bg: &mut BlockGraph, change: impl FnOnce(&mut BlockGraph) -> Result<()>) {
    let before = fingerprint(bg);
    match change(bg) {
        Ok(()) => println!("unexpectedly allowed"),
        Err(err) => println!("refused: {err}"),
    }
    assert_eq!(fingerprint(bg), before, "a refused change leaves no trace");
}

/// A hash of everything a block graph holds: nodes, links, permissions,
/// frozen flags and blockers.
fn fingerprint(bg: &BlockGraph) -> u64 {
    let mut hasher = DefaultHasher::new();
    bg.hash(&mut hasher);
    hasher.finish()
}

/// Every link with the permissions it takes and shares, like
/// `x-debug-query-block-graph` shows them.
fn print_links(bg: &BlockGraph) {
    let g = bg.graph();
    let mut edges: Vec<(EdgeId, NodeId)> = Vec::new();
    for node in g.nodes() {
        for &edge in g.node(node).map(|n| n.parents()).unwrap_or(&[]) {
            edges.push((edge, node));
        }
    }
    for (edge, child) in edges {
        let Ok(e) = g.edge(edge) else { continue };
        let parent = g.parent_description(edge).unwrap_or_default();
        println!(
            "{:<10} <- {parent}: takes [{}], shares [{}]",
            g.name(child),
            e.perm.qapi_names().join(", "),
            e.shared.qapi_names().join(", "),
        );
    }
}
