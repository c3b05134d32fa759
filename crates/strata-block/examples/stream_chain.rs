//! A block layer on in-memory files, used the way a management tool uses
//! qemu-storage-daemon: create a three-image qcow2 chain, `blockdev-add` it,
//! `block-stream` the middle image into the top one while the guest
//! writes, run the job to completion on the virtual clock, and look at the
//! graph (like `x-debug-query-block-graph`), the events and the images.
//!
//! ```text
//! cargo run -p strata-block --example stream_chain
//! ```

use strata_block::{BlockLayer, MemFiles, StreamArgs, XdbgGraph};
use strata_formats::{CreateOptions, MemStorage, Qcow2};
use strata_graph::{OptValue, Options, Perm};
use strata_jobs::Wait;

const MIB: u64 = 1 << 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // base.qcow2 <- mid.qcow2 <- top.qcow2, 4 MiB each; base holds 0x11 in
    // its first MiB, mid 0x22 in its second.
    let mut files = MemFiles::new();
    files.insert("base.qcow2", image(None, &[(0x11, 0)])?);
    files.insert("mid.qcow2", image(Some("base.qcow2"), &[(0x22, MIB)])?);
    files.insert("top.qcow2", image(Some("mid.qcow2"), &[])?);

    let mut layer = BlockLayer::new(files, 0);
    let chain = qcow2("base", "base.qcow2", None);
    let chain = qcow2("mid", "mid.qcow2", Some(chain));
    let top = layer.blockdev_add(&qcow2("top", "top.qcow2", Some(chain)))?;
    println!("== after blockdev-add");
    print_graph(&layer.query_block_graph());

    // block-stream device=top base-node=base job-id=s0 speed=2M: copy what
    // mid holds into top; base stays below.
    let args = StreamArgs {
        device: "top".into(),
        job_id: Some("s0".into()),
        base_node: Some("base".into()),
        speed: Some(2 * MIB as i64),
        ..StreamArgs::default()
    };
    layer.block_stream(&args)?;
    println!("\n== while s0 runs (its copy-on-read filter sits on top)");
    print_graph(&layer.query_block_graph());

    // Step the job; jump the virtual clock whenever it sleeps for its rate
    // limit. Once the clock has moved, the guest writes into top.
    let (mut steps, mut guest_wrote) = (0, false);
    loop {
        match layer.step_job("s0")? {
            Wait::Done => break,
            Wait::SleepUntil(t) => layer.advance_to(t),
            _ => {}
        }
        steps += 1;
        if !guest_wrote && layer.now_ns() > 0 {
            guest_wrote = true;
            println!(
                "\n(at {} ns the guest writes 0x33 at 3 MiB into top)",
                layer.now_ns()
            );
            layer.core_mut().write(top, 3 * MIB, &[0x33; 4096])?;
        }
    }
    println!("\n== events ({steps} steps)");
    for e in layer.take_events() {
        let label = e.event.sequence_label();
        println!(
            "  {:>6.3}s  {label:<20} {:?}",
            e.time_ns as f64 / 1e9,
            e.event
        );
    }

    println!("\n== after the job");
    print_graph(&layer.query_block_graph());
    for info in layer.query_named_block_nodes() {
        if info.format == "qcow2" {
            println!(
                "{}: backing file {:?}, depth {}",
                info.node_name, info.backing_file, info.backing_file_depth
            );
        }
    }
    for offset in [0, MIB, 3 * MIB] {
        let mut byte = [0u8; 1];
        layer.core_mut().read(top, offset, &mut byte)?;
        println!("guest byte at {offset:#x}: {:#04x}", byte[0]);
    }
    Ok(())
}

/// A 4 MiB qcow2 image, on `backing` if given, with 1 MiB of `pattern` at
/// each `offset`.
fn image(backing: Option<&str>, writes: &[(u8, u64)]) -> Result<MemStorage, strata_formats::Error> {
    let mut opts = CreateOptions::new(4 * MIB);
    if let Some(name) = backing {
        opts = opts.backing(name, Some("qcow2"));
    }
    let mut storage = MemStorage::new();
    let mut qcow2 = Qcow2::create(&mut storage, &opts)?;
    for &(pattern, offset) in writes {
        qcow2.write(&mut storage, offset, &vec![pattern; MIB as usize], None)?;
    }
    Ok(storage)
}

/// `{"driver": "qcow2", "node-name": name, "file": {"driver": "file",
/// "filename": file}, "backing": backing}`.
fn qcow2(name: &str, file: &str, backing: Option<Options>) -> Options {
    let s = |v: &str| OptValue::Str(v.to_string());
    let file = Options::new()
        .with("driver", s("file"))
        .with("filename", s(file));
    let opts = Options::new()
        .with("driver", s("qcow2"))
        .with("node-name", s(name))
        .with("file", OptValue::Dict(file));
    match backing {
        Some(backing) => opts.with("backing", OptValue::Dict(backing)),
        None => opts,
    }
}

/// The edges as QEMU's `render_block_graph.py` labels them: child name,
/// then the permissions taken and shared as `wrus` masks.
fn print_graph(graph: &XdbgGraph) {
    let name = |id: u64| {
        graph
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| format!("{} [{}]", n.name, n.node_type.as_str()))
            .unwrap_or_default()
    };
    for edge in &graph.edges {
        println!(
            "  {:<28} --{:<9}--> {:<26} perm {} shared {}",
            name(edge.parent),
            edge.name,
            name(edge.child),
            mask(edge.perm),
            mask(edge.shared)
        );
    }
}

/// `w`rite, consistent `r`ead, write-`u`nchanged, re`s`ize; `_` if absent.
fn mask(perm: Perm) -> String {
    [
        (Perm::WRITE, 'w'),
        (Perm::CONSISTENT_READ, 'r'),
        (Perm::WRITE_UNCHANGED, 'u'),
        (Perm::RESIZE, 's'),
    ]
    .iter()
    .map(|&(p, c)| if perm.contains(p) { c } else { '_' })
    .collect()
}
