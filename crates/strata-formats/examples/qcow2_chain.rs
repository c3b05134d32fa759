//! strata-formats as a qcow2 library on real files: create a base image and
//! an overlay on it in a temporary directory, write patterns into both, open
//! the chain again from the overlay's header, print where every range of
//! the virtual disk comes from (what `qemu-img map` tells), and check every
//! image as `qemu-img check` does.
//!
//! ```text
//! cargo run -p strata-formats --example qcow2_chain
//! ```
//!
//! The map printed is the one `qemu-img map --output=json top.qcow2` gives
//! for the same images made with the `qemu-img`/`qemu-io` commands quoted in
//! the comments (starts, lengths, depths, data or zero).

use strata_formats::{
    Access, Chain, CreateOptions, ExtentKind, FileStorage, Layer, Qcow2, Storage, ZeroWrite,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let base_path = dir.path().join("base.qcow2");
    let top_path = dir.path().join("top.qcow2");

    // qemu-img create -f qcow2 base.qcow2 4M
    // qemu-io -c 'write -P 0xaa 0 1M' -c 'write -P 0xbb 2M 64k' base.qcow2
    let mut base_st = FileStorage::create(&base_path)?;
    let mut base = Qcow2::create(&mut base_st, &CreateOptions::new(4 * MIB))?;
    base.write(&mut base_st, 0, &[0xaa; MIB as usize], None)?;
    base.write(&mut base_st, 2 * MIB, &[0xbb; 64 * KIB as usize], None)?;
    base_st.flush()?;

    // qemu-img create -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
    let mut top_st = FileStorage::create(&top_path)?;
    Qcow2::create(
        &mut top_st,
        &CreateOptions::new(4 * MIB).backing("base.qcow2", Some("qcow2")),
    )?;
    drop(top_st);

    // Open the chain the way QEMU does: the overlay read-write, its backing
    // file (found through the header, relative to the overlay) read-only.
    let mut chain = Chain::open_files(&top_path, Access::ReadWrite)?;
    println!("chain: {}", describe(&chain));

    // qemu-io -c 'write -P 0xcc 512k 4k' -c 'write -z -u 2M 64k' top.qcow2:
    // a partial-cluster write copies the rest of the cluster up from the
    // base; a zero write hides the base's data without storing zeroes.
    chain.write(0, 512 * KIB, &[0xcc; 4 * KIB as usize])?;
    let top = &mut chain.layers[0];
    top.image.write_zeroes(
        &mut top.storage,
        2 * MIB,
        64 * KIB,
        ZeroWrite::MayUnmap,
        None,
    )?;
    chain.flush()?;

    println!("\nqemu-img map top.qcow2 (start, length, depth, what):");
    for (start, len, depth, kind) in map(&mut chain, 4 * MIB)? {
        let what = match kind {
            ExtentKind::Data => "data",
            ExtentKind::Zero => "zero",
            ExtentKind::Unallocated => "unallocated: reads as zeroes",
        };
        println!("  {start:>#9x} {len:>#9x}  depth {depth}  {what}");
    }

    let mut probe = [0u8; 1];
    for offset in [0, 512 * KIB, 2 * MIB, 3 * MIB] {
        chain.read(0, offset, &mut probe)?;
        println!("guest byte at {offset:#9x}: {:#04x}", probe[0]);
    }

    println!("\nqemu-img check:");
    for (name, layer) in ["top.qcow2", "base.qcow2"].iter().zip(&mut chain.layers) {
        let report = layer.image.check(&mut layer.storage)?;
        println!(
            "  {name}: {} corruptions, {} leaks, {}/{} clusters allocated, image end {:#x}",
            report.corruptions,
            report.leaks,
            report.allocated_clusters,
            report.total_clusters,
            report.image_end_offset
        );
        if !report.is_clean() {
            return Err(format!("{name} is not clean: {:?}", report.messages).into());
        }
    }
    Ok(())
}

/// `top (qcow2, 4 MiB) -> base.qcow2 (qcow2, 4 MiB)`.
fn describe(chain: &Chain<FileStorage>) -> String {
    let layer = |l: &Layer<FileStorage>| {
        format!(
            "{} {} MiB",
            l.image.format().name(),
            l.image.virtual_size() / MIB
        )
    };
    let backing: Vec<String> = chain
        .layers
        .iter()
        .map(|l| {
            l.image
                .backing_file()
                .unwrap_or("(no backing file)")
                .to_string()
        })
        .collect();
    chain
        .layers
        .iter()
        .zip(backing)
        .map(|(l, b)| format!("[{}, backing: {b}]", layer(l)))
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// The extents of the virtual disk as the top layer reads them: each range
/// with the depth of the layer that defines it (0 = top), as `qemu-img map`
/// resolves unallocated ranges down the backing chain.
fn map(
    chain: &mut Chain<FileStorage>,
    size: u64,
) -> strata_formats::Result<Vec<(u64, u64, usize, ExtentKind)>> {
    let mut extents = Vec::new();
    let mut pos = 0;
    while pos < size {
        let (len, depth, kind) = resolve(&mut chain.layers, pos, size - pos)?;
        match extents.last_mut() {
            Some((start, l, d, k)) if *d == depth && *k == kind && *start + *l == pos => *l += len,
            _ => extents.push((pos, len, depth, kind)),
        }
        pos += len;
    }
    Ok(extents)
}

/// Where the range at `offset` comes from: the first layer that allocates
/// it (or the bottom one, if none does), and for how many bytes that holds.
fn resolve(
    layers: &mut [Layer<FileStorage>],
    offset: u64,
    max_len: u64,
) -> strata_formats::Result<(u64, usize, ExtentKind)> {
    let mut len = max_len;
    for (depth, layer) in layers.iter_mut().enumerate() {
        let extent = layer.image.block_status(&mut layer.storage, offset, len)?;
        len = extent.len;
        if extent.kind != ExtentKind::Unallocated {
            return Ok((len, depth, extent.kind));
        }
    }
    Ok((len, layers.len() - 1, ExtentKind::Unallocated))
}
