//! `cargo xtask bench sim`: the simulator's speed, from one run.
//!
//! * replaying every scenario once (canonical schedule) against
//!   qemu-storage-daemon running the same scenarios through the shared
//!   conformance harness (image creation and inspection included on both
//!   sides);
//! * exhaustive exploration (preemption bound 1) of every scenario: states
//!   per second on one core and on all cores;
//! * the four-job `030-parallel-stream` exploration at bound 2.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;
use strata_sim::{explore, run, scenarios, Canonical, ExploreOptions, Progress, RunOptions};

/// Entry point.
pub fn run_bench(args: &[String]) -> ExitCode {
    match bench(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cargo xtask bench sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let skip_qemu = args.iter().any(|a| a == "--no-qemu");
    let all = scenarios()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{} scenarios, {cores} core(s)", all.len());

    let start = Instant::now();
    let mut steps = 0;
    for s in &all {
        let done = run(s, &mut Canonical, RunOptions::default())
            .map_err(|f| format!("{}: {}", s.name, f.error))?;
        steps += done.trace.len();
    }
    let sim_secs = start.elapsed().as_secs_f64();
    println!(
        "replay, canonical schedule: {sim_secs:.3} s for all scenarios ({steps} steps, {:.1} ms per scenario)",
        sim_secs * 1e3 / all.len() as f64
    );
    if !skip_qemu {
        match qemu_seconds() {
            Ok(q) => println!(
                "qemu-storage-daemon, same scenarios through the harness: {q:.3} s  => Strata is {:.0}x faster",
                q / sim_secs
            ),
            Err(e) => println!("qemu-storage-daemon: not measured ({e})"),
        }
    }

    let options = ExploreOptions {
        preemption_bound: 1,
        ..ExploreOptions::default()
    };
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let start = Instant::now();
        let mut states = 0;
        let mut schedules = 0;
        for s in &all {
            let found = pool.install(|| explore(s, options, &Progress::default()))?;
            states += found.states;
            schedules += found.schedules;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "exploration of every scenario, bound 1, {threads} thread(s): {states} states, {schedules} schedules, {secs:.2} s, {:.0} states/s",
            states as f64 / secs
        );
    }

    let s = strata_sim::scenario("030-parallel-stream")?;
    let options = ExploreOptions {
        preemption_bound: 2,
        ..ExploreOptions::default()
    };
    let start = Instant::now();
    let found = explore(&s, options, &Progress::default())?;
    println!(
        "030-parallel-stream (four jobs), bound 2, {cores} thread(s): {} states, {} schedules, {} outcomes, {:.2} s",
        found.states,
        found.schedules,
        found.outcomes.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Wall time of the shared harness running the scenarios against
/// qemu-storage-daemon (output to a scratch directory).
fn qemu_seconds() -> Result<f64, Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let harness = std::env::var_os("STRATA_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/conformance"));
    let run_py = harness.join("run.py");
    if !run_py.exists() {
        return Err(format!("no harness at {}", harness.display()).into());
    }
    let out = root.join("target/sim/bench-qsd");
    let start = Instant::now();
    let status = Command::new("python3")
        .arg(&run_py)
        .arg("qsd")
        .arg(root.join("sim/scenarios"))
        .arg("-o")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()?;
    let secs = start.elapsed().as_secs_f64();
    if status.code().is_some_and(|c| c <= 1) {
        Ok(secs)
    } else {
        Err(format!("harness failed: {status}").into())
    }
}
