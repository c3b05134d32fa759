//! The driver catalogue at work: what each driver is, the permissions each
//! driver takes and shares on its children in a real-looking graph, and the
//! filenames `bdrv_refresh_filename` gives the nodes — the strings that
//! `block-stream` and `block-commit` write into image headers.
//!
//! ```text
//! cargo run -p strata-filters --example driver_catalogue
//! ```
//!
//! The graph: a copy-on-read filter over `top` (qcow2), whose backing file
//! is a throttle filter over `base` (qcow2); and a raw node showing a 1 MiB
//! slice of a disk (`offset`/`size` make raw a format, not a filter).
//! Only `base` keeps a plain filename: the filters have strong options,
//! `top`'s backing node is not the file its header names (QEMU's
//! `bdrv_backing_overridden`), and the raw slice has strong options too, so
//! their names are `json:{...}`.

use strata_filters::{driver_perms, refresh_filename, BackingFileInfo, Driver};
use strata_graph::{NodeId, NodeSpec, OptValue, Options};
use strata_perm::{BlockGraph, ChildSlot, PermHooks, Result};

/// What the image headers name as backing files: only `top.qcow2` has one.
struct Headers {
    top: NodeId,
}

impl BackingFileInfo for Headers {
    fn auto_backing_file(&self, node: NodeId) -> String {
        if node == self.top {
            "base.qcow2".to_string()
        } else {
            String::new()
        }
    }
}

fn main() -> Result<()> {
    print_catalogue();

    let hooks = driver_perms();
    let mut bg = BlockGraph::new(0);
    let base = image(&mut bg, &hooks, "base", "base.qcow2", Options::new())?;
    let throttle = filter_over(
        &mut bg,
        &hooks,
        Driver::Throttle,
        "thr",
        base,
        opts("throttle-group", "tg0"),
    )?;
    let top = image(&mut bg, &hooks, "top", "top.qcow2", Options::new())?;
    bg.set_file_or_backing(&hooks, top, Some(throttle), ChildSlot::Backing)?;
    let cor = filter_over(
        &mut bg,
        &hooks,
        Driver::CopyOnRead,
        "cor",
        top,
        Options::new(),
    )?;
    let slice = opts("offset", "1048576").with("size", OptValue::Str("1048576".into()));
    let part = image(&mut bg, &hooks, "part", "disk.img", slice)?;

    println!("\n== permissions (taken / shared) on every link");
    let g = bg.graph();
    for node in g.nodes() {
        for &edge in g.node(node)?.children() {
            let e = g.edge(edge)?;
            println!(
                "{:>5} --{:<7}--> {:<9} role {:?}: takes [{}] / shares [{}]",
                g.name(node),
                e.name(),
                g.name(e.child()),
                e.role(),
                e.perm.qapi_names().join(", "),
                e.shared.qapi_names().join(", "),
            );
        }
    }

    println!("\n== bdrv_refresh_filename");
    let headers = Headers { top };
    for node in [cor, top, throttle, base, part] {
        refresh_filename(&mut bg, &headers, node)?;
        let n = bg.graph().node(node)?;
        println!("{:>5}: {}", n.name(), n.filename);
    }
    Ok(())
}

/// Every modelled driver and what the graph knows of it.
fn print_catalogue() {
    println!("driver        filter protocol backing  primary child  strong options");
    for &d in Driver::ALL {
        let t = d.traits();
        println!(
            "{:<13} {:<6} {:<8} {:<8} {:<14} {}",
            d.name(),
            t.is_filter,
            t.is_protocol,
            t.supports_backing,
            d.primary_child_name().unwrap_or("-"),
            d.strong_runtime_opts().join(" "),
        );
    }
}

fn opts(key: &str, value: &str) -> Options {
    Options::new().with(key, OptValue::Str(value.to_string()))
}

/// A node of `driver` named `name` with `options` (plus `driver`).
fn add(bg: &mut BlockGraph, driver: Driver, name: &str, options: Options) -> Result<NodeId> {
    let options = options.with("driver", OptValue::Str(driver.name().to_string()));
    bg.add_node(
        NodeSpec::new(driver.name(), driver.traits())
            .name(name)
            .options(options),
    )
}

/// A format node (raw if `options` has a slice, else qcow2) on a file node
/// for `filename`, linked with the role its driver gives the child.
fn image(
    bg: &mut BlockGraph,
    hooks: &dyn PermHooks,
    name: &str,
    filename: &str,
    options: Options,
) -> Result<NodeId> {
    let driver = if options.is_empty() {
        Driver::Qcow2
    } else {
        Driver::Raw
    };
    let role = driver.primary_child_role(&options);
    let file = add(
        bg,
        Driver::File,
        &format!("{name}-file"),
        opts("filename", filename),
    )?;
    let node = add(bg, driver, name, options)?;
    bg.attach_child(hooks, node, file, "file", role)?;
    bg.unref_node(hooks, file)?;
    Ok(node)
}

/// A filter node of `driver` over `child`, which it takes over as `file`.
fn filter_over(
    bg: &mut BlockGraph,
    hooks: &dyn PermHooks,
    driver: Driver,
    name: &str,
    child: NodeId,
    options: Options,
) -> Result<NodeId> {
    let role = driver.primary_child_role(&options);
    let node = add(bg, driver, name, options)?;
    let child_name = driver.primary_child_name().unwrap_or("file");
    bg.attach_child(hooks, node, child, child_name, role)?;
    Ok(node)
}
