//! `cargo xtask bench sim`: the simulator's speed, from one run.
//!
//! * the replay ratio: loading and replaying every scenario once
//!   (canonical schedule; the median of `--runs N` rounds, default 5, each
//!   from cold memos) against qemu-storage-daemon running the same
//!   scenarios through the shared conformance harness (daemon start-up,
//!   image creation and inspection included on both sides), wall and CPU
//!   time, with the load average; `--replay-only` stops there;
//! * exhaustive exploration of every scenario: states per second at
//!   preemption bound 1 on one core and on all cores, and the whole
//!   exploration at bound 2 (the default) on all cores;
//! * the four-job `030-parallel-stream` exploration at bound 2 on one
//!   thread and on two (states per second of wall and of CPU time, and
//!   the speed-up of two threads; the counts must not differ);
//! * every scenario explored without a bound (`Bound::Unbounded`), each
//!   stopped after `--unbounded-limit SECS` (default 60): states, time,
//!   and the scenarios that do not finish in that time; with partial-order
//!   reduction (sleep sets) and without, on one thread: states per second
//!   and the reduction ratio (transitions, i.e. schedules, and time,
//!   without over with).

use rayon::prelude::*;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_sim::scenario::Scenario;
use strata_sim::{
    explore, run, scenarios, Bound, Canonical, ExploreOptions, Progress, Reduction, RunOptions,
};

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
    let rounds = match args.iter().position(|a| a == "--runs") {
        Some(i) => args
            .get(i + 1)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .ok_or("--runs needs a positive number")?,
        None => 5,
    };
    let unbounded_limit = match args.iter().position(|a| a == "--unbounded-limit") {
        Some(i) => args
            .get(i + 1)
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or("--unbounded-limit needs a number of seconds")?,
        None => 60,
    };
    let all = scenarios()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{} scenarios, {cores} core(s), load average {}",
        all.len(),
        load_average()
    );

    replay_ratio(all.len(), cores, rounds, skip_qemu)?;
    if args.iter().any(|a| a == "--replay-only") {
        return Ok(());
    }

    for (bound, threads) in [(1, 1), (1, cores), (2, cores)] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let options = ExploreOptions {
            preemption_bound: Bound::Preemptions(bound),
            ..ExploreOptions::default()
        };
        strata_sim::forget_memos();
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
            "exploration of every scenario, bound {bound}, {threads} thread(s): {states} states, {schedules} schedules, {secs:.2} s, {:.0} states/s",
            states as f64 / secs
        );
    }

    parallel_stream(cores)?;
    unbounded(&all, Duration::from_secs(unbounded_limit))
}

/// `030-parallel-stream` (four jobs) at bound 2 on one thread and on two
/// (and on every core when there are more): states per second of wall
/// time and of the process's CPU time (the machine may be shared), and
/// the speed-up of two threads over one. Every run must report the same
/// counts: the explorer's result does not depend on the thread count.
fn parallel_stream(cores: usize) -> Result<(), Box<dyn std::error::Error>> {
    let s = strata_sim::scenario("030-parallel-stream")?;
    let options = ExploreOptions {
        preemption_bound: Bound::Preemptions(2),
        ..ExploreOptions::default()
    };
    let mut threads = vec![1, 2];
    if cores > 2 {
        threads.push(cores);
    }
    let mut rates = Vec::new();
    let mut counts = Vec::new();
    for n in threads.iter().copied() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build()?;
        strata_sim::forget_memos();
        let (start, cpu_start) = (Instant::now(), cpu_seconds());
        let found = pool.install(|| explore(&s, options, &Progress::default()))?;
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds().zip(cpu_start).map(|(end, start)| end - start);
        let per_cpu = cpu.map_or("CPU time not known".to_string(), |c| {
            format!(
                "{c:.2} s CPU, {:.0} states per CPU-second",
                found.states as f64 / c
            )
        });
        rates.push(found.states as f64 / secs);
        counts.push((found.states, found.schedules, found.outcomes.len()));
        println!(
            "030-parallel-stream (four jobs), bound 2, {n} thread(s): {} states, {} schedules, {} outcomes, {secs:.2} s, {:.0} states/s; {per_cpu}",
            found.states,
            found.schedules,
            found.outcomes.len(),
            found.states as f64 / secs
        );
    }
    println!(
        "030-parallel-stream, bound 2: 2 threads explore {:.2}x as many states per second as one",
        rates[1] / rates[0]
    );
    if counts.iter().any(|c| *c != counts[0]) {
        return Err(format!("the counts depend on the thread count: {counts:?}").into());
    }
    Ok(())
}

/// The CPU time (user and system) this process has used so far, from
/// `/proc/self/stat` (Linux; its clock ticks are 1/100 s).
fn cpu_seconds() -> Option<f64> {
    stat_seconds(11, 12)
}

/// The CPU time (user and system) of this process's children that it
/// waited for, with theirs, from `/proc/self/stat`.
fn children_cpu_seconds() -> Option<f64> {
    stat_seconds(13, 14)
}

/// The sum of two clock-tick fields of `/proc/self/stat`, counted from the
/// field after the command name (which is in parentheses), in seconds.
fn stat_seconds(user: usize, system: usize) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(user)? + ticks(system)?) / 100.0)
}

/// Every scenario without a bound, each stopped after `limit`, with
/// reduction and without.
fn unbounded(all: &[Arc<Scenario>], limit: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let mut unfinished = Vec::new();
    for s in all {
        let [on, off] = [Reduction::On, Reduction::Off].map(|r| unbounded_one(s, limit, r));
        let (on, off) = (on?, off?);
        if !on.found.complete {
            unfinished.push(s.name.clone());
        }
        for (r, e) in [("on", &on), ("off", &off)] {
            println!(
                "unbounded {} (reduction {r}): {} states, {} schedules, {} outcomes, {:.2} s, {:.0} states/s, {}",
                s.name,
                e.found.states,
                e.found.schedules,
                e.found.outcomes.len(),
                e.secs,
                e.found.states as f64 / e.secs.max(1e-9),
                if e.found.complete { "complete" } else { "STOPPED at the time limit" }
            );
        }
        println!(
            "unbounded {}: reduction ratio {:.2}x schedules, {:.2}x time",
            s.name,
            off.found.schedules as f64 / on.found.schedules.max(1) as f64,
            off.secs / on.secs.max(1e-9)
        );
    }
    println!(
        "unbounded: {} of {} scenarios explored completely (with reduction) within {} s each; not finished: {unfinished:?}",
        all.len() - unfinished.len(),
        all.len(),
        limit.as_secs()
    );
    Ok(())
}

struct Timed {
    found: strata_sim::Exploration,
    secs: f64,
}

fn unbounded_one(
    s: &Arc<Scenario>,
    limit: Duration,
    reduction: Reduction,
) -> Result<Timed, Box<dyn std::error::Error>> {
    let options = ExploreOptions {
        preemption_bound: Bound::Unbounded,
        time_limit: Some(limit),
        reduction,
        ..ExploreOptions::default()
    };
    // One thread both ways: with reduction the explorer uses one worker
    // (docs/EXPLORE.md), so the time ratio compares like with like.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    strata_sim::forget_memos();
    let start = Instant::now();
    let found = pool.install(|| explore(s, options, &Progress::default()))?;
    Ok(Timed {
        found,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// The replay ratio: every project scenario replayed by the simulator
/// (loaded from disk, run on the canonical schedule, images created and
/// inspected) against the same scenarios run through the shared harness
/// against qemu-storage-daemon (daemon start-up, image creation and
/// inspection included), one after the other, as a user runs them. Both
/// sides are measured in this run, so they share the machine's load; wall
/// time is what a user waits for, CPU time (QEMU's: the harness and every
/// process it waited for) is what the load does not change.
fn replay_ratio(
    scenarios: usize,
    cores: usize,
    rounds: usize,
    skip_qemu: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let one = median_replay(1, rounds)?;
    let all = median_replay(cores, rounds)?;
    println!(
        "Strata replay of {scenarios} scenarios, canonical schedule, {} steps, median of {rounds}: 1 thread {:.3} s wall ({:.1} ms per scenario), {} s CPU; {cores} threads {:.3} s wall",
        one.steps,
        one.wall,
        one.wall * 1e3 / scenarios as f64,
        seconds_text(one.cpu),
        all.wall
    );
    if skip_qemu {
        return Ok(());
    }
    let qemu = match qemu_seconds() {
        Ok(q) => q,
        Err(e) => {
            println!("qemu-storage-daemon: not measured ({e})");
            return Ok(());
        }
    };
    println!(
        "qemu-storage-daemon, same scenarios through the harness, one at a time: {:.3} s wall, {} s CPU",
        qemu.wall,
        seconds_text(qemu.cpu)
    );
    let cpu_ratio = one
        .cpu
        .zip(qemu.cpu)
        .filter(|(strata, _)| *strata > 0.0)
        .map_or("not known".to_string(), |(strata, q)| {
            format!("{:.0}x", q / strata)
        });
    println!(
        "REPLAY RATIO (qemu-storage-daemon wall / Strata wall, this run, load average {}): {:.0}x on 1 thread, {:.0}x on {cores} threads; CPU time {cpu_ratio}",
        load_average(),
        qemu.wall / one.wall,
        qemu.wall / all.wall
    );
    Ok(())
}

/// Seconds of wall time and, where known, of CPU time.
struct Spent {
    wall: f64,
    cpu: Option<f64>,
}

/// One replay measurement: its time and the steps taken.
struct Replayed {
    wall: f64,
    cpu: Option<f64>,
    steps: usize,
}

fn seconds_text(secs: Option<f64>) -> String {
    secs.map_or("?".to_string(), |s| format!("{s:.3}"))
}

/// The load average over the last minute, as `/proc/loadavg` gives it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "not known".to_string())
}

/// The median (by wall time) of `rounds` measurements of [`replay_all`].
fn median_replay(threads: usize, rounds: usize) -> Result<Replayed, Box<dyn std::error::Error>> {
    let mut measured = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        measured.push(replay_all(threads)?);
    }
    measured.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    Ok(measured.swap_remove(rounds / 2))
}

/// Time to load every scenario and replay each once on `threads` threads
/// (rayon across scenarios, never inside a run), and the steps taken.
/// Each call starts from cold memos so that the second measurement does
/// not reuse the first one's image work.
fn replay_all(threads: usize) -> Result<Replayed, Box<dyn std::error::Error>> {
    strata_sim::forget_memos();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    let all = scenarios()?;
    let steps = pool.install(|| {
        all.par_iter()
            .map(|s| {
                run(s, &mut Canonical, RunOptions::default())
                    .map(|done| done.trace.len())
                    .map_err(|f| format!("{}: {}", s.name, f.error))
            })
            .sum::<Result<usize, String>>()
    })?;
    Ok(Replayed {
        wall: start.elapsed().as_secs_f64(),
        cpu: cpu_seconds().zip(cpu_start).map(|(end, start)| end - start),
        steps,
    })
}

/// Time of the shared harness running the scenarios against
/// qemu-storage-daemon (output to a scratch directory): wall, and the CPU
/// time of the harness and of every process it waited for.
fn qemu_seconds() -> Result<Spent, Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let harness = std::env::var_os("STRATA_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/conformance"));
    let run_py = harness.join("run.py");
    if !run_py.exists() {
        return Err(format!("no harness at {}", harness.display()).into());
    }
    let out = root.join("target/sim/bench-qsd");
    let (start, cpu_start) = (Instant::now(), children_cpu_seconds());
    let status = Command::new("python3")
        .arg(&run_py)
        .arg("qsd")
        .arg(root.join("sim/scenarios"))
        .arg("-o")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = children_cpu_seconds()
        .zip(cpu_start)
        .map(|(end, start)| end - start);
    if status.code().is_some_and(|c| c <= 1) {
        Ok(Spent { wall, cpu })
    } else {
        Err(format!("harness failed: {status}").into())
    }
}
