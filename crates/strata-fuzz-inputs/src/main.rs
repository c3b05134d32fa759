//! `strata-fuzz-inputs`: the runner behind `cargo xtask fuzz-inputs`
//! (which builds it and strata-qsd with overflow checks and debug
//! assertions on, then runs it). See `docs/FUZZ-INPUTS.md`.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use strata_fuzz_inputs::run::{run, Mode, RunOptions, Tally};
use strata_fuzz_inputs::Target;

#[derive(Parser)]
#[command(
    name = "cargo xtask fuzz-inputs",
    about = "Seeded fuzzing of Strata's untrusted inputs: QMP bytes, qcow2 images, NBD requests"
)]
struct Cli {
    /// Inputs per target.
    #[arg(long, default_value_t = 1000)]
    cases: u64,
    /// One target (default: all three).
    #[arg(long, value_enum)]
    target: Option<TargetArg>,
    /// The seed: input i of seed S depends on S, i and the target only.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Index of the first input (`--start i --cases 1` replays input i).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// strata-qsd to send QMP and NBD inputs to; without it they go to the
    /// monitor and the export code in this process.
    #[arg(long)]
    qsd: Option<PathBuf>,
    /// Scratch directory for the daemon (images, sockets, stderr).
    #[arg(long, default_value = "target/fuzz-inputs/run")]
    dir: PathBuf,
    /// Every how many qcow2 images qemu-io decides too (0: never).
    #[arg(long, default_value_t = 10)]
    qemu_every: u64,
    /// Print the inputs instead of running them (escaped; qcow2 images as
    /// their length and the bytes that differ from the pristine image).
    #[arg(long)]
    print: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum TargetArg {
    Qmp,
    Qcow2,
    Nbd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let targets = match cli.target {
        None => Target::ALL.to_vec(),
        Some(TargetArg::Qmp) => vec![Target::Qmp],
        Some(TargetArg::Qcow2) => vec![Target::Qcow2],
        Some(TargetArg::Nbd) => vec![Target::Nbd],
    };
    let mut failed = false;
    for target in targets {
        if cli.print {
            for i in cli.start..cli.start + cli.cases {
                println!("{} {i}: {}", target.name(), describe(target, cli.seed, i));
            }
            continue;
        }
        let mode = match &cli.qsd {
            Some(binary) if target != Target::Qcow2 => Mode::Daemon {
                binary: binary.clone(),
                dir: cli.dir.join(target.name()),
            },
            _ => Mode::InProcess,
        };
        let options = RunOptions {
            target,
            seed: cli.seed,
            start: cli.start,
            cases: cli.cases,
            mode,
            qemu_every: cli.qemu_every,
        };
        match run(&options) {
            Ok(tally) => {
                report(&options, &tally);
                failed |= !tally.failures.is_empty();
            }
            Err(e) => {
                eprintln!("{}: {e}", target.name());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn report(options: &RunOptions, tally: &Tally) {
    let name = options.target.name();
    let place = match &options.mode {
        Mode::InProcess => "in process".to_string(),
        Mode::Daemon { binary, .. } => binary.display().to_string(),
    };
    println!(
        "{name}: {} inputs (seed {}, {}..{}) against {place}: {} failures, slowest {:?}, peak daemon memory {} KiB",
        tally.inputs,
        options.seed,
        options.start,
        options.start + options.cases,
        tally.failure_counts.values().sum::<u64>(),
        tally.slowest,
        tally.peak_kib,
    );
    for (kind, n) in &tally.failure_counts {
        println!("  {kind}: {n}");
    }
    for (what, n) in &tally.counts {
        println!("  {what}: {n}");
    }
    if !tally.divergences.is_empty() {
        println!("  divergences from QEMU: {}", tally.divergence_total());
        for (kind, (n, first)) in &tally.divergences {
            println!("    {n} x {kind} (first: --start {first} --cases 1)");
        }
    }
    for (i, failure) in &tally.failures {
        println!(
            "  FAILED {name} input {i} (--seed {} --start {i} --cases 1): {failure}",
            options.seed
        );
    }
}

/// Input `i` of `seed` for `target`, printable.
fn describe(target: Target, seed: u64, i: u64) -> String {
    use strata_fuzz_inputs::{below, case_gen, nbd, qcow2, qmp};
    let mut g = case_gen(target, seed, i);
    let escaped = |bytes: &[u8]| bytes.escape_ascii().to_string();
    match target {
        Target::Qmp => {
            let input = qmp::generate(&mut g);
            format!("{:?} {}", input.negotiation, escaped(&input.bytes))
        }
        Target::Nbd => escaped(&nbd::generate(&mut g)),
        Target::Qcow2 => {
            // Only the memory images: the qemu-img ones need a scratch
            // directory and come after them.
            let images = qcow2::pristine_images();
            let choice = below(&mut g, images.len() as u64 + 3) as usize;
            let Some(pristine) = images.get(choice) else {
                return format!("damage to qemu-img image {}", choice - images.len());
            };
            let bytes = qcow2::mutate(&mut g, &pristine.bytes);
            let changed: Vec<String> = (0..bytes.len().max(pristine.bytes.len()))
                .filter(|&k| bytes.get(k) != pristine.bytes.get(k))
                .take(40)
                .map(|k| format!("{k:#x}:{:?}", bytes.get(k)))
                .collect();
            format!(
                "{} ({} bytes): {}",
                pristine.name,
                bytes.len(),
                changed.join(" ")
            )
        }
    }
}
