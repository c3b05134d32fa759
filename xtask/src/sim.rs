//! `cargo xtask sim`: run, explore, replay and render the simulator's
//! scenarios.

use crate::viewer;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_sim::policy::{self, Policy};
use strata_sim::scenario::{Observation, Scenario};
use strata_sim::{
    compare, explore_shard, merge, run, run_traced, to_dot, Bound, Catalog, CompareOptions,
    Exploration, ExploreOptions, Progress, Reduction, Replay, Schedule, SchedulerSpec, Shard,
    ShardFile, TracedRun,
};

#[derive(Parser)]
#[command(name = "cargo xtask sim", about = "The deterministic simulator")]
struct SimCli {
    /// Use the shared conformance harness's scenarios and QEMU's golden
    /// observations ($STRATA_CONFORMANCE or ../shared/conformance) instead
    /// of the project's.
    #[arg(long, global = true)]
    harness: bool,
    /// The block layer's policy (default qemu-10.0); `policies` compares
    /// several: `--policy a --policy b`.
    #[arg(long = "policy", global = true, value_name = "P")]
    policies: Vec<String>,
    #[command(subcommand)]
    command: Option<SimCommand>,
}

#[derive(Subcommand)]
enum SimCommand {
    /// List the scenarios.
    List,
    /// Run scenarios once and compare with QEMU's recorded observations.
    Run {
        /// Scenario names (default: all).
        names: Vec<String>,
        /// Run every scenario.
        #[arg(long)]
        all: bool,
        /// canonical, random, pct, pct:DEPTH, or a schedule string.
        #[arg(long, default_value = "canonical")]
        scheduler: String,
        /// Seed of random and pct.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print every difference, not only the first few.
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        outputs: TraceOutputs,
    },
    /// Explore every schedule of a scenario (within a preemption bound).
    Explore {
        /// The scenario.
        name: String,
        /// At most this many non-canonical decisions per schedule, or
        /// `none`: every schedule.
        #[arg(long, default_value = "2", value_parser = parse_bound)]
        bound: Bound,
        /// Worker threads (the result does not depend on it).
        #[arg(long)]
        threads: Option<usize>,
        /// Explore only share K of N (`K/N`, K from 0) and write what it
        /// found to `--output` for `merge`.
        #[arg(long, value_name = "K/N", value_parser = parse_shard, requires = "output")]
        shard: Option<Shard>,
        /// Stop after this many seconds (the report says the
        /// exploration is incomplete).
        #[arg(long, value_name = "SECS")]
        time_limit: Option<u64>,
        /// Partial-order reduction (sleep sets): `on` or `off`; it prunes
        /// only with `--bound none`, where it is sound (docs/EXPLORE.md).
        #[arg(long, default_value = "on", value_parser = parse_reduction)]
        reduction: Reduction,
        /// Where a shard writes its partial result (JSON).
        #[arg(long, value_name = "FILE", requires = "shard")]
        output: Option<PathBuf>,
        /// Write the outcome list (`DIR/index.html`, each outcome's final
        /// graph) and each outcome's timeline (`DIR/outcome-N.html`).
        #[arg(long, value_name = "DIR")]
        html: Option<PathBuf>,
    },
    /// The report of an exploration from the partial results of all its
    /// shards (`explore --shard K/N --output FILE`): exactly what one
    /// process exploring everything reports.
    Merge {
        /// One file per shard.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replay one schedule of a scenario.
    Replay {
        /// The scenario.
        name: String,
        /// The schedule (`s:...`), as printed by run or explore.
        schedule: String,
        /// Print every step's events and what it changed in the graph.
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        outputs: TraceOutputs,
    },
    /// Print a scenario's observation (canonical schedule) as JSON.
    Show {
        /// The scenario.
        name: String,
    },
    /// Whether exploration finds every observation QEMU gave in repeated
    /// runs (directories the harness wrote, e.g. with `run.py qsd`).
    Covers {
        /// Directories of `NAME.json` observations.
        #[arg(required = true)]
        dirs: Vec<std::path::PathBuf>,
        /// At most this many preemptions.
        #[arg(long, default_value_t = 2)]
        bound: usize,
    },
    /// Explore scenarios under each policy: the matrix of outcomes and
    /// properties violated (docs/POLICIES.md).
    Policies(crate::sim_policies::PoliciesArgs),
    /// The final graph as DOT (or SVG through graphviz).
    Render {
        /// The scenario.
        name: String,
        /// Write `target/sim/NAME.svg` with graphviz `dot`.
        #[arg(long)]
        svg: bool,
    },
}

/// The step-by-step reports of one run.
#[derive(clap::Args, Default)]
struct TraceOutputs {
    /// Write the timeline with the block graph at every step as one
    /// self-contained HTML file.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write the graph at every step in `x-debug-query-block-graph`'s JSON
    /// shape.
    #[arg(long, value_name = "FILE")]
    graph_json: Option<PathBuf>,
}

impl TraceOutputs {
    fn wanted(&self) -> bool {
        self.html.is_some() || self.graph_json.is_some()
    }

    /// Writes the reports of `traced`, a run of `name`.
    fn write(
        &self,
        cat: &Catalog,
        name: &str,
        traced: &TracedRun,
    ) -> Result<(), Box<dyn std::error::Error>> {
        if let Some(path) = &self.html {
            let replay = cat.replay_command(name, &traced.run.schedule);
            let subtitle = format!(
                "{} steps; replay: <code>{}</code>",
                traced.trace.steps.len(),
                viewer::escape(&replay)
            );
            viewer::write_timeline(path, name, &subtitle, &traced.trace)?;
            println!("timeline: {}", path.display());
        }
        if let Some(path) = &self.graph_json {
            std::fs::write(path, viewer::graph_json(&traced.trace))?;
            println!("graph at every step: {}", path.display());
        }
        Ok(())
    }
}

/// Entry point of `cargo xtask sim ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    let argv = std::iter::once("cargo xtask sim".to_string()).chain(args.iter().cloned());
    let cli = match SimCli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let cat = if cli.harness {
        match Catalog::shared_harness() {
            Some(cat) => cat,
            None => {
                eprintln!(
                    "cargo xtask sim: no shared conformance harness (set STRATA_CONFORMANCE)"
                );
                return ExitCode::from(2);
            }
        }
    } else {
        Catalog::project()
    };
    let cat = &match single_policy(&cli.policies, cli.command.as_ref()) {
        Ok(policy) => cat.with_policy(policy),
        Err(e) => {
            eprintln!("cargo xtask sim: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        None if cli.harness => run_all(std::slice::from_ref(cat)),
        None => run_all(
            &std::iter::once(Catalog::project())
                .chain(Catalog::shared_harness())
                .map(|c| c.with_policy(cat.policy()))
                .collect::<Vec<_>>(),
        ),
        Some(SimCommand::List) => list(cat),
        Some(SimCommand::Run {
            names,
            all,
            scheduler,
            seed,
            verbose,
            outputs,
        }) => run_some(cat, &names, all, (&scheduler, seed), verbose, &outputs),
        Some(SimCommand::Explore {
            name,
            bound,
            threads,
            shard,
            time_limit,
            reduction,
            output,
            html,
        }) => {
            let options = ExploreOptions {
                time_limit: time_limit.map(Duration::from_secs),
                reduction,
                ..cat.explore_options(bound)
            };
            match (shard, output) {
                (Some(shard), Some(output)) => {
                    explore_shard_to(cat, &name, (options, shard), threads, &output)
                }
                _ => explore_one(cat, &name, options, threads, html.as_deref()),
            }
        }
        Some(SimCommand::Merge { files }) => merge_shards(cat, &files),
        Some(SimCommand::Replay {
            name,
            schedule,
            verbose,
            outputs,
        }) => replay(cat, &name, &schedule, verbose, &outputs),
        Some(SimCommand::Show { name }) => show(cat, &name),
        Some(SimCommand::Render { name, svg }) => render(cat, &name, svg),
        Some(SimCommand::Covers { dirs, bound }) => crate::sim_covers::covers(cat, &dirs, bound),
        Some(SimCommand::Policies(args)) => {
            crate::sim_policies::policies(cat, &cli.policies, &args)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cargo xtask sim: {e}");
            ExitCode::from(2)
        }
    }
}

type Res = Result<bool, Box<dyn std::error::Error>>;

/// The one policy of a command other than `policies` (which takes many).
fn single_policy(
    names: &[String],
    command: Option<&SimCommand>,
) -> Result<&'static Policy, String> {
    let many = matches!(command, Some(SimCommand::Policies(_)));
    match names {
        [] => Ok(policy::default()),
        _ if many => Ok(policy::default()),
        [name] => policy::by_name(name).ok_or_else(|| crate::sim_policies::unknown_policy(name)),
        _ => Err("only `policies` takes more than one --policy".into()),
    }
}

fn list(cat: &Catalog) -> Res {
    for s in cat.scenarios()? {
        let qemu = if cat.qemu_observation(&s.name)?.is_some() {
            ""
        } else {
            " (no QEMU recording)"
        };
        println!("{:40} {}{qemu}", s.name, s.description);
    }
    Ok(true)
}

fn selected(
    cat: &Catalog,
    names: &[String],
    all: bool,
) -> Result<Vec<Arc<Scenario>>, strata_sim::Error> {
    if all || names.is_empty() {
        return cat.scenarios();
    }
    names.iter().map(|n| cat.scenario(n)).collect()
}

/// The verdict of one run against QEMU.
struct Verdict {
    steps: usize,
    outcome: String,
    matches: Option<Vec<String>>,
    replay: String,
    failed: bool,
}

fn judge(
    cat: &Catalog,
    s: &Arc<Scenario>,
    spec: &SchedulerSpec,
) -> Result<Verdict, strata_sim::Error> {
    let mut scheduler = spec.build();
    let qemu = cat.qemu_observation(&s.name)?;
    Ok(match run(s, scheduler.as_mut(), cat.run_options()) {
        Ok(done) => {
            let failed_expect = &done.observation.expectations_failed;
            let outcome = if failed_expect.is_empty() {
                "ok".to_string()
            } else {
                format!("expectations failed: steps {failed_expect:?}")
            };
            let matches = qemu.map(|q| compare(&q, &done.observation, CompareOptions::default()));
            Verdict {
                steps: done.trace.len(),
                outcome,
                failed: matches.as_ref().is_some_and(|d| !d.is_empty()),
                matches,
                replay: cat.replay_command(&s.name, &done.schedule),
            }
        }
        Err(f) => Verdict {
            steps: 0,
            outcome: f.error.to_string(),
            matches: None,
            replay: cat.replay_command(&s.name, &f.schedule),
            failed: true,
        },
    })
}

fn print_table(rows: &[(String, Verdict)], verbose: bool) {
    println!("{:42} {:>7}  {:7} outcome", "scenario", "steps", "QEMU");
    for (name, v) in rows {
        let m = match &v.matches {
            None => "-",
            Some(d) if d.is_empty() => "yes",
            Some(_) => "no",
        };
        println!("{name:42} {:>7}  {m:7} {}", v.steps, v.outcome);
    }
    for (name, v) in rows {
        if let Some(d) = v.matches.as_ref().filter(|d| !d.is_empty()) {
            println!(
                "\n{name}: {} difference(s) from QEMU  [{}]",
                d.len(),
                v.replay
            );
            let shown = if verbose { d.len() } else { d.len().min(6) };
            for line in &d[..shown] {
                println!("    {line}");
            }
            if shown < d.len() {
                println!("    ... (-v shows all)");
            }
        } else if v.failed {
            println!("\n{name}: {}  [{}]", v.outcome, v.replay);
        }
    }
}

fn run_some(
    cat: &Catalog,
    names: &[String],
    all: bool,
    (scheduler, seed): (&str, u64),
    verbose: bool,
    outputs: &TraceOutputs,
) -> Res {
    let spec = SchedulerSpec::parse(scheduler, seed)?;
    println!("scheduler: {spec}");
    let scenarios = selected(cat, names, all)?;
    if outputs.wanted() {
        let [s] = &scenarios[..] else {
            return Err("--html and --graph-json report one scenario: name exactly one".into());
        };
        match run_traced(s, spec.build().as_mut(), cat.run_options()) {
            Ok(traced) => outputs.write(cat, &s.name, &traced)?,
            Err(f) => println!(
                "{}: {}  [{}]",
                s.name,
                f.error,
                cat.replay_command(&s.name, &f.schedule)
            ),
        }
    }
    let mut rows = Vec::new();
    for s in scenarios {
        rows.push((s.name.clone(), judge(cat, &s, &spec)?));
    }
    print_table(&rows, verbose);
    summary(&rows)
}

fn summary(rows: &[(String, Verdict)]) -> Res {
    let matching = rows
        .iter()
        .filter(|(_, v)| v.matches.as_ref().is_some_and(|d| d.is_empty()))
        .count();
    let recorded = rows.iter().filter(|(_, v)| v.matches.is_some()).count();
    let failed = rows.iter().filter(|(_, v)| v.failed).count();
    println!(
        "\n{} scenarios, {matching} of {recorded} with a QEMU recording match it, {failed} differ or fail",
        rows.len()
    );
    Ok(failed == 0)
}

/// `cargo xtask sim`: every scenario of each catalog (the project's, and
/// the shared harness's when it is there), canonical schedule, checked for
/// determinism, compared with QEMU.
fn run_all(catalogs: &[Catalog]) -> Res {
    let mut all_ok = true;
    for cat in catalogs {
        println!("{}", cat.describe());
        let mut rows = Vec::new();
        let mut deterministic = true;
        for s in cat.scenarios()? {
            let v = judge(cat, &s, &SchedulerSpec::Canonical)?;
            let options = cat.run_options();
            if let Err(e) = strata_sim::check_determinism(&s, &Schedule::default(), options) {
                println!("NOT DETERMINISTIC: {e}");
                deterministic = false;
            }
            rows.push((s.name.clone(), v));
        }
        print_table(&rows, false);
        all_ok &= summary(&rows)? && deterministic;
        println!();
    }
    Ok(all_ok)
}

fn parse_bound(text: &str) -> Result<Bound, String> {
    Bound::parse(text).ok_or_else(|| format!("{text:?}: a number of preemptions or `none`"))
}

fn parse_reduction(text: &str) -> Result<Reduction, String> {
    Reduction::parse(text).ok_or_else(|| format!("{text:?}: `on` or `off`"))
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    Shard::parse(text).ok_or_else(|| format!("{text:?}: K/N with K < N"))
}

fn set_threads(threads: Option<usize>) -> Result<(), rayon::ThreadPoolBuildError> {
    match threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global(),
        None => Ok(()),
    }
}

/// Explores `shard` of `name` under a progress spinner: its parts and
/// the seconds they took.
fn explore_with_progress(
    cat: &Catalog,
    name: &str,
    options: ExploreOptions,
    shard: Shard,
) -> Result<(Vec<strata_sim::Part>, f64), Box<dyn std::error::Error>> {
    let s = cat.scenario(name)?;
    let progress = Arc::new(Progress::default());
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}")?);
    let watcher = {
        let (bar, progress) = (bar.clone(), progress.clone());
        std::thread::spawn(move || loop {
            bar.set_message(format!(
                "{} states, {} schedules",
                progress.states.load(Ordering::Relaxed),
                progress.schedules.load(Ordering::Relaxed)
            ));
            bar.tick();
            if bar.is_finished() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        })
    };
    let start = Instant::now();
    let found = explore_shard(&s, options, &progress, shard);
    let secs = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let _ = watcher.join();
    Ok((found?, secs))
}

fn explore_shard_to(
    cat: &Catalog,
    name: &str,
    (options, shard): (ExploreOptions, Shard),
    threads: Option<usize>,
    output: &Path,
) -> Res {
    set_threads(threads)?;
    let (parts, seconds) = explore_with_progress(cat, name, options, shard)?;
    let complete = parts.iter().all(|p| p.complete);
    let states: u64 = parts.iter().map(|p| p.states).sum();
    let above: u64 = parts
        .iter()
        .filter(|p| p.index == 0)
        .map(|p| p.states)
        .sum();
    let file = ShardFile {
        scenario: name.to_string(),
        bound: options.preemption_bound,
        policy: cat.policy().name.to_string(),
        shard,
        seconds,
        parts,
    };
    std::fs::write(output, file.to_json())?;
    if !complete {
        println!(
            "{name}: shard {}/{}: INCOMPLETE: stopped at the time limit",
            shard.index, shard.count
        );
    }
    println!(
        "{name}: shard {}/{}: {states} states ({above} of them above the subtrees, which every shard explores), {seconds:.2} s; {}",
        shard.index,
        shard.count,
        output.display()
    );
    Ok(complete)
}

fn merge_shards(cat: &Catalog, files: &[PathBuf]) -> Res {
    let mut shards = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path)?;
        shards.push(ShardFile::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    ShardFile::check_complete(&shards)?;
    let (scenario, bound, policy) = (
        shards[0].scenario.clone(),
        shards[0].bound,
        shards[0].policy.clone(),
    );
    if policy != cat.policy().name {
        return Err(format!(
            "the shards explored policy {policy}: merge them with --policy {policy}"
        )
        .into());
    }
    // The shards' time on their own machines, added up.
    let seconds: f64 = shards.iter().map(|f| f.seconds).sum();
    let s = cat.scenario(&scenario)?;
    let parts = shards.into_iter().flat_map(|f| f.parts).collect();
    let found = merge(&s, &cat.explore_options(bound), parts);
    report_exploration(cat, &scenario, bound, (&found, seconds), None)
}

fn explore_one(
    cat: &Catalog,
    name: &str,
    options: ExploreOptions,
    threads: Option<usize>,
    html: Option<&Path>,
) -> Res {
    set_threads(threads)?;
    let (parts, secs) = explore_with_progress(cat, name, options, Shard::WHOLE)?;
    let found = merge(&cat.scenario(name)?, &options, parts);
    report_exploration(cat, name, options.preemption_bound, (&found, secs), html)
}

/// The summary line, each outcome against QEMU's recording and the
/// first outcome, the failures, and with `html` the outcomes' reports.
fn report_exploration(
    cat: &Catalog,
    name: &str,
    bound: Bound,
    (found, secs): (&Exploration, f64),
    html: Option<&Path>,
) -> Res {
    let s = cat.scenario(name)?;
    println!(
        "{name}: preemption bound {bound}: {} states, {} schedules, {} distinct outcome(s), {:.2} s, {:.0} states/s",
        found.states,
        found.schedules,
        found.outcomes.len(),
        secs,
        found.states as f64 / secs.max(1e-9)
    );
    if !found.complete {
        println!("  INCOMPLETE: stopped at the time limit; the counts are of the states explored until then");
    }
    let qemu = cat.qemu_observation(name)?;
    let first = found.outcomes.first().map(|o| o.observation.clone());
    let mut reports = Vec::new();
    for (i, o) in found.outcomes.iter().enumerate() {
        let vs_qemu = match &qemu {
            Some(q) if compare(q, &o.observation, CompareOptions::default()).is_empty() => {
                "same as QEMU"
            }
            Some(_) => "NOT what QEMU showed",
            None => "no QEMU recording",
        };
        let replay = cat.replay_command(name, &o.example);
        println!(
            "  outcome {}: {} schedule(s), {vs_qemu}; {replay}",
            i + 1,
            o.schedules,
        );
        let differences = match (&first, i > 0) {
            (Some(first), true) => compare(first, &o.observation, CompareOptions::WITH_VOLATILE),
            _ => Vec::new(),
        };
        for d in &differences {
            println!("      differs from outcome 1: {d}");
        }
        if html.is_some() {
            let traced = run_traced(&s, &mut Replay::new(&o.example), cat.run_options())
                .map_err(|f| format!("{}  [{}]", f.error, cat.replay_command(name, &f.schedule)))?;
            reports.push(viewer::OutcomeReport {
                schedules: o.schedules,
                vs_qemu: vs_qemu.to_string(),
                differs_from_qemu: vs_qemu == "NOT what QEMU showed",
                differences,
                replay,
                trace: traced.trace,
            });
        }
    }
    for (schedule, e) in &found.failures {
        println!("  FAILED: {e}  [{}]", cat.replay_command(name, schedule));
    }
    if let Some(dir) = html {
        let subtitle = format!(
            "preemption bound {bound}: {} states, {} schedules, {} distinct outcome(s), {} failure(s)",
            found.states,
            found.schedules,
            found.outcomes.len(),
            found.failures.len()
        );
        let index = viewer::write_exploration(dir, name, &subtitle, &reports)?;
        println!("outcomes: {}", index.display());
    }
    Ok(found.failures.is_empty() && found.complete)
}

fn replay(cat: &Catalog, name: &str, schedule: &str, verbose: bool, outputs: &TraceOutputs) -> Res {
    let s = cat.scenario(name)?;
    let schedule = Schedule::parse(schedule)?;
    match run_traced(&s, &mut Replay::new(&schedule), cat.run_options()) {
        Ok(traced) => {
            if verbose {
                print!("{}", viewer::text_timeline(&traced.trace));
            } else {
                for (i, (task, t)) in traced.run.trace.iter().enumerate() {
                    println!("{i:6} {:>12.6}s  {task}", *t as f64 / 1e9);
                }
            }
            outputs.write(cat, name, &traced)?;
            report_against_qemu(cat, name, &traced.run.observation)
        }
        Err(f) => {
            println!(
                "{name}: {}  [{}]",
                f.error,
                cat.replay_command(name, &f.schedule)
            );
            Ok(false)
        }
    }
}

fn report_against_qemu(cat: &Catalog, name: &str, obs: &Observation) -> Res {
    match cat.qemu_observation(name)? {
        None => {
            println!("{name}: no QEMU recording");
            Ok(true)
        }
        Some(q) => {
            let diffs = compare(&q, obs, CompareOptions::default());
            println!("{name}: {} difference(s) from QEMU", diffs.len());
            for d in &diffs {
                println!("    {d}");
            }
            let with_volatile = CompareOptions::WITH_VOLATILE;
            for d in compare(&q, obs, with_volatile)
                .into_iter()
                .filter(|d| !diffs.contains(d))
            {
                println!("    (volatile, varies in QEMU too) {d}");
            }
            Ok(diffs.is_empty())
        }
    }
}

fn canonical(cat: &Catalog, name: &str) -> Result<Observation, Box<dyn std::error::Error>> {
    let s = cat.scenario(name)?;
    let done = run(&s, &mut strata_sim::Canonical, cat.run_options())
        .map_err(|f| format!("{}  [{}]", f.error, cat.replay_command(name, &f.schedule)))?;
    Ok(done.observation)
}

fn show(cat: &Catalog, name: &str) -> Res {
    println!("{}", canonical(cat, name)?.to_json());
    Ok(true)
}

fn render(cat: &Catalog, name: &str, svg: bool) -> Res {
    let obs = canonical(cat, name)?;
    let dot = to_dot(obs.graph.as_ref().ok_or("no final graph")?);
    if !svg {
        print!("{dot}");
        return Ok(true);
    }
    viewer::ensure_dot()?;
    let dir = strata_sim::sim_dir().join("../target/sim");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(format!("{name}.svg"));
    std::fs::write(&out, viewer::dot_to_svg(&dot)?)?;
    println!("{}", out.display());
    Ok(true)
}
