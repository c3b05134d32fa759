//! `cargo xtask`: the project's automation, written in Rust so that it runs
//! wherever cargo does.

mod bench_daemon;
mod bench_formats;
mod conformance;
mod crash_test;
mod fuzz;
mod fuzz_inputs;
mod sim;
mod sim_bench;
mod sim_covers;
mod sim_policies;
mod sim_record;
mod viewer;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Simulator runs allocate and free 64 KiB storage chunks by the thousand:
/// glibc's malloc hands such memory back to the kernel and faults it in
/// again (a tenth of a replay's time), mimalloc keeps it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Strata project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay and explore stream/commit scenarios in the deterministic simulator.
    Sim {
        /// Arguments for the simulator (list, run, explore, replay, render).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Conformance against qemu-storage-daemon: `record` runs the
    /// simulator's scenarios against QEMU into `sim/qemu/`; `diff` runs the
    /// harness against qemu-storage-daemon and strata-qsd and compares.
    Conformance {
        /// `record [SCENARIO...]`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Differential testing on generated scenarios: QEMU (several runs),
    /// strata-qsd and the simulator; reduces every kind of difference.
    Fuzz {
        /// `--seed S --count N [--jobs K] [--keep DIR] ...` (see `--help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Seeded fuzzing of the untrusted inputs (QMP bytes, qcow2 images, NBD
    /// requests) against strata-qsd built with overflow checks:
    /// `--cases N [--target qmp|qcow2|nbd] [--seed S] [--start I]`.
    FuzzInputs {
        /// Options for the runner (see `--help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// kill -9 of strata-qsd during stream and commit jobs with a writer on
    /// an NBD export; images checked after: `--cases N [--seed S]`.
    CrashTest {
        /// Options (see `--help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Open generated timeline reports in headless Chromium and check the
    /// rendered page against the simulator's trace (needs `chromium`).
    ViewerTest,
    /// Run a benchmark: `formats` (Strata's qcow2 against qemu-img on a
    /// 1 GiB chain; options: `--runs N`), `daemon` (strata-qsd against
    /// qemu-storage-daemon: stream and commit on a 1 GiB chain), `sim`.
    Bench {
        /// What to benchmark.
        what: String,
        /// Options for that benchmark.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Sim { args } => sim::main(&args),
        Command::Conformance { args } => match args.first().map(String::as_str) {
            Some("record") => sim_record::main(&args),
            _ => conformance::main(&args),
        },
        Command::Fuzz { args } => fuzz::main(&args),
        Command::FuzzInputs { args } => fuzz_inputs::main(&args),
        Command::CrashTest { args } => crash_test::main(&args),
        Command::ViewerTest => viewer::browser_test::main(),
        Command::Bench { what, args } => {
            match what.as_str() {
                "formats" => bench_formats::run(&args),
                "daemon" => bench_daemon::run(&args),
                "sim" => sim_bench::run_bench(&args),
                other => {
                    eprintln!("cargo xtask bench: unknown benchmark {other:?} (known: formats, daemon, sim)");
                    ExitCode::from(2)
                }
            }
        }
    }
}
