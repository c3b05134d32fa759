//! `cargo xtask fuzz`: differential testing on scenarios nobody wrote.
//!
//! Generates seeded random scenarios (`generate`), runs each several times
//! against qemu-storage-daemon and once against strata-qsd through the
//! shared harness, and through the simulator in-process (`harness`),
//! judges the runs (`judge`: paths that differ between QEMU's own runs are
//! that scenario's volatile paths) and shrinks every kind of difference to
//! a minimal scenario (`reduce`) kept with both observations. See
//! `docs/FUZZ.md`.

mod generate;
mod harness;
mod judge;
mod reduce;
#[cfg(test)]
mod tests;

use clap::{Parser, ValueEnum};
use harness::{read_observation, simulate_isolated, Daemon, Harness};
use judge::{differences, kind, qemu_outcome, QemuOutcome, Side};
use rayon::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use strata_sim::scenario::Observation;

#[derive(Parser)]
#[command(name = "cargo xtask fuzz", about = "Differential testing against QEMU")]
struct FuzzCli {
    /// The batch's seed: scenario i of seed S depends on S and i only.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many scenarios.
    #[arg(long, default_value_t = 20)]
    count: u64,
    /// Index of the first scenario.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Harness processes per recording.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Where the batch, the reduced scenarios and their observations go
    /// (relative to the workspace root).
    #[arg(long, default_value = "target/fuzz")]
    keep: PathBuf,
    /// How many times each scenario runs against qemu-storage-daemon.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Which differences are reduced.
    #[arg(long, value_enum, default_value_t = ReduceMode::FirstOfKind)]
    reduce: ReduceMode,
    /// At most this many candidate runs per reduction.
    #[arg(long, default_value_t = 80)]
    max_tries: usize,
    /// The known differences (default `xtask/fuzz-known.txt`).
    #[arg(long)]
    known: Option<PathBuf>,
    /// Simulate one scenario file and print the observation (how the
    /// batch runs the simulator: in a child process, which a stack
    /// overflow may abort).
    #[arg(long, hide = true)]
    simulate: Option<PathBuf>,
    /// `reuse`: keep QEMU's recordings of an earlier run of the same batch
    /// and run only the Strata sides again (after a rule was changed).
    #[arg(long, value_enum, default_value_t = QemuRuns::Fresh)]
    qemu: QemuRuns,
}

/// Whether QEMU's recordings are made again.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum QemuRuns {
    /// Run qemu-storage-daemon `--runs` times.
    Fresh,
    /// Keep the batch directory's `qsd-*` recordings.
    Reuse,
}

/// Which differences the reducer shrinks.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum ReduceMode {
    /// None (CI: a batch only says whether something new differs).
    None,
    /// The first scenario of each kind of difference.
    FirstOfKind,
    /// Every difference.
    All,
}

/// What one scenario's runs came to.
enum Outcome {
    QemuCrashed(String),
    Invalid(String),
    Judged {
        qemu: Box<Observation>,
        daemon: Box<Observation>,
        daemon_diffs: Vec<String>,
        simulator: Result<(Box<Observation>, Vec<String>), String>,
    },
}

struct Entry {
    index: u64,
    name: String,
    scenario: Value,
    outcome: Outcome,
}

/// A difference: which side, its kind, and the full comparison.
struct Difference {
    index: u64,
    side: Side,
    kind: String,
}

/// Entry point of `cargo xtask fuzz ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    let argv = std::iter::once("cargo xtask fuzz".to_string()).chain(args.iter().cloned());
    let cli = match FuzzCli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &cli.simulate {
        return harness::simulate_file(path);
    }
    match fuzz(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("cargo xtask fuzz: {message}");
            ExitCode::from(2)
        }
    }
}

fn workspace_root() -> Result<PathBuf, String> {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .map_err(|e| format!("workspace root: {e}"))
}

/// Runs the batch; `Ok(false)` when a scenario not in the known list
/// differs (or the simulator failed on it).
fn fuzz(cli: &FuzzCli) -> Result<bool, String> {
    let started = Instant::now();
    let root = workspace_root()?;
    let harness = Harness::locate(&root)?;
    crate::conformance::build_strata_qsd(&root)?;
    let keep = root.join(&cli.keep);
    let batch = keep.join(format!("seed-{}", cli.seed));
    if cli.qemu == QemuRuns::Fresh {
        fresh_dir(&batch)?;
    }
    let scenarios = write_scenarios(cli, &batch.join("scenarios"))?;
    let files: Vec<PathBuf> = scenarios
        .iter()
        .map(|(_, _, path, _)| path.clone())
        .collect();
    for run in 1..=cli.runs {
        if cli.qemu == QemuRuns::Reuse {
            break;
        }
        eprintln!("== qemu-storage-daemon, run {run} of {}", cli.runs);
        harness.record(
            &[(Daemon::Qemu, batch.join(format!("qsd-{run}")))],
            &files,
            cli.jobs,
        )?;
    }
    eprintln!("== strata-qsd");
    fresh_dir(&batch.join("strata"))?;
    harness.record(&[(Daemon::Strata, batch.join("strata"))], &files, cli.jobs)?;
    eprintln!("== simulator");
    let simulated: Vec<Result<Observation, String>> = scenarios
        .par_iter()
        .map(|(_, _, path, _)| simulate_isolated(path))
        .collect();
    let entries: Vec<Entry> = scenarios
        .into_iter()
        .zip(simulated)
        .map(|((index, name, _, scenario), sim)| {
            let outcome = judge_scenario(&batch, cli.runs, &name, sim);
            Entry {
                index,
                name,
                scenario,
                outcome,
            }
        })
        .collect();
    let known_list = cli.known.clone();
    let known = read_known(&known_list.unwrap_or(root.join("xtask/fuzz-known.txt")))?;
    print_figures(cli, &entries, started);
    let reduced = reduce_differences(cli, &harness, &keep, &entries)?;
    print_kinds(&entries, &reduced);
    Ok(check_known(cli, &entries, &known))
}

fn fresh_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Generates the batch into `dir`: (index, name, file, scenario) each.
fn write_scenarios(
    cli: &FuzzCli,
    dir: &Path,
) -> Result<Vec<(u64, String, PathBuf, Value)>, String> {
    fresh_dir(dir)?;
    (cli.start..cli.start + cli.count)
        .map(|index| {
            let scenario = generate::generate(cli.seed, index);
            let name = generate::scenario_name(cli.seed, index);
            let path = write_json(dir, &name, &scenario)?;
            Ok((index, name, path, scenario))
        })
        .collect()
}

fn write_json(dir: &Path, name: &str, value: &Value) -> Result<PathBuf, String> {
    let path = dir.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn judge_scenario(
    batch: &Path,
    runs: usize,
    name: &str,
    simulated: Result<Observation, String>,
) -> Outcome {
    let qemu_runs: Result<Vec<Observation>, String> = (1..=runs)
        .map(|run| read_observation(&batch.join(format!("qsd-{run}")), name))
        .collect();
    let qemu = match qemu_runs.map(|r| qemu_outcome(&r)) {
        Err(e) => return Outcome::Invalid(format!("no observation: {e}")),
        Ok(QemuOutcome::Crashed(why)) => return Outcome::QemuCrashed(why),
        Ok(QemuOutcome::Invalid(why)) => return Outcome::Invalid(why),
        Ok(QemuOutcome::Valid(q)) => *q,
    };
    let daemon = read_observation(&batch.join("strata"), name).unwrap_or_else(|e| Observation {
        scenario: name.to_string(),
        harness_errors: vec![e],
        ..Observation::default()
    });
    let daemon_diffs = differences(&qemu, &daemon);
    let simulator = simulated.map(|sim| {
        let diffs = differences(&qemu, &sim);
        (Box::new(sim), diffs)
    });
    Outcome::Judged {
        qemu: Box::new(qemu),
        daemon: Box::new(daemon),
        daemon_diffs,
        simulator,
    }
}

/// Every difference of the batch, the first kind of each side of each
/// scenario.
fn differences_of(entries: &[Entry]) -> Vec<Difference> {
    let mut out = Vec::new();
    for e in entries {
        let Outcome::Judged {
            daemon_diffs,
            simulator,
            ..
        } = &e.outcome
        else {
            continue;
        };
        if let Some(first) = daemon_diffs.first() {
            out.push(Difference {
                index: e.index,
                side: Side::Daemon,
                kind: kind(first),
            });
        }
        if let Ok((_, diffs)) = simulator {
            if let Some(first) = diffs.first() {
                out.push(Difference {
                    index: e.index,
                    side: Side::Simulator,
                    kind: kind(first),
                });
            }
        }
    }
    out
}

/// A reduced scenario kept on disk, by the difference it came from.
type Reduced = BTreeMap<(u64, Side), PathBuf>;

fn reduce_differences(
    cli: &FuzzCli,
    harness: &Harness,
    keep: &Path,
    entries: &[Entry],
) -> Result<Reduced, String> {
    let mut reduced = Reduced::new();
    if cli.reduce == ReduceMode::None {
        return Ok(reduced);
    }
    let mut kinds_done: BTreeSet<(Side, String)> = BTreeSet::new();
    for d in differences_of(entries) {
        if cli.reduce == ReduceMode::FirstOfKind && !kinds_done.insert((d.side, d.kind.clone())) {
            continue;
        }
        let entry = entries
            .iter()
            .find(|e| e.index == d.index)
            .expect("an entry");
        eprintln!("== reducing {} ({}: {})", entry.name, d.side.name(), d.kind);
        let dir = keep
            .join("reduced")
            .join(format!("{}-{}", entry.name, d.side.name()));
        let evidence = initial_evidence(entry, d.side);
        let mut oracle = Oracle {
            harness,
            scratch: keep.join(format!("seed-{}", cli.seed)).join("reduce"),
            side: d.side,
            kind: d.kind.clone(),
            tries: 0,
        };
        let (scenario, evidence, tries) =
            reduce::reduce(entry.scenario.clone(), evidence, cli.max_tries, &mut |s| {
                oracle.shows(s)
            });
        eprintln!("   {tries} tries");
        keep_reduced(&dir, &entry.name, &scenario, &evidence, d.side)?;
        reduced.insert((d.index, d.side), dir);
    }
    Ok(reduced)
}

/// What shows a difference: QEMU's observation (volatile paths from its
/// runs), the Strata side's, and the comparison.
struct Evidence {
    qemu: Observation,
    strata: Observation,
    diffs: Vec<String>,
}

fn initial_evidence(entry: &Entry, side: Side) -> Evidence {
    let Outcome::Judged {
        qemu,
        daemon,
        daemon_diffs,
        simulator,
    } = &entry.outcome
    else {
        unreachable!("only judged scenarios differ");
    };
    let (strata, diffs) = match (side, simulator) {
        (Side::Daemon, _) => ((**daemon).clone(), daemon_diffs.clone()),
        (Side::Simulator, Ok((sim, diffs))) => ((**sim).clone(), diffs.clone()),
        (Side::Simulator, Err(_)) => unreachable!("a failed simulation has no difference"),
    };
    Evidence {
        qemu: (**qemu).clone(),
        strata,
        diffs,
    }
}

/// Whether a candidate still shows a difference of one kind on one side:
/// two QEMU runs, both valid, and the Strata side differing in that kind.
struct Oracle<'a> {
    harness: &'a Harness,
    scratch: PathBuf,
    side: Side,
    kind: String,
    tries: usize,
}

impl Oracle<'_> {
    fn shows(&mut self, scenario: &Value) -> Option<Evidence> {
        self.tries += 1;
        let dir = self.scratch.join(format!("try-{}", self.tries));
        fresh_dir(&dir).ok()?;
        let name = scenario["name"].as_str()?.to_string();
        let file = write_json(&dir, &name, scenario).ok()?;
        let mut recordings = vec![
            (Daemon::Qemu, dir.join("qsd-1")),
            (Daemon::Qemu, dir.join("qsd-2")),
        ];
        if self.side == Side::Daemon {
            recordings.push((Daemon::Strata, dir.join("strata")));
        }
        self.harness
            .record(&recordings, std::slice::from_ref(&file), 1)
            .ok()?;
        let runs = [
            read_observation(&dir.join("qsd-1"), &name).ok()?,
            read_observation(&dir.join("qsd-2"), &name).ok()?,
        ];
        let QemuOutcome::Valid(qemu) = qemu_outcome(&runs) else {
            return None;
        };
        let qemu = *qemu;
        let strata = match self.side {
            Side::Daemon => read_observation(&dir.join("strata"), &name).ok()?,
            Side::Simulator => simulate_isolated(&file).ok()?,
        };
        let _ = std::fs::remove_dir_all(&dir);
        let diffs = differences(&qemu, &strata);
        diffs
            .iter()
            .any(|d| kind(d) == self.kind)
            .then_some(Evidence {
                qemu,
                strata,
                diffs,
            })
    }
}

/// Writes a reduced scenario (with QEMU's volatile paths declared) and
/// both observations into `dir`.
fn keep_reduced(
    dir: &Path,
    name: &str,
    scenario: &Value,
    evidence: &Evidence,
    side: Side,
) -> Result<(), String> {
    fresh_dir(dir)?;
    let mut scenario = scenario.clone();
    if !evidence.qemu.volatile.is_empty() {
        scenario["volatile"] = serde_json::json!(evidence.qemu.volatile);
    }
    write_json(dir, name, &scenario)?;
    let write = |file: &str, text: String| {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("qemu.observation.json", evidence.qemu.to_json())?;
    write(
        &format!("{}.observation.json", side.name()),
        evidence.strata.to_json(),
    )?;
    write("differences.txt", evidence.diffs.join("\n") + "\n")
}

/// `xtask/fuzz-known.txt`: `SEED/INDEX reason` per line, `#` comments.
fn read_known(path: &Path) -> Result<BTreeMap<(u64, u64), String>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut known = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let parsed = key
            .split_once('/')
            .and_then(|(s, i)| Some((s.parse().ok()?, i.parse().ok()?)));
        let Some(key) = parsed else {
            return Err(format!("{}: bad line {line:?}", path.display()));
        };
        known.insert(key, reason.trim().to_string());
    }
    Ok(known)
}

/// Prints every scenario's outcome and the batch's figures.
fn print_figures(cli: &FuzzCli, entries: &[Entry], started: Instant) {
    let count = |f: &dyn Fn(&Outcome) -> bool| entries.iter().filter(|e| f(&e.outcome)).count();
    let crashed = count(&|o| matches!(o, Outcome::QemuCrashed(_)));
    let invalid = count(&|o| matches!(o, Outcome::Invalid(_)));
    let valid = entries.len() - crashed - invalid;
    let daemon_same =
        count(&|o| matches!(o, Outcome::Judged { daemon_diffs, .. } if daemon_diffs.is_empty()));
    let sim_same =
        count(&|o| matches!(o, Outcome::Judged { simulator: Ok((_, d)), .. } if d.is_empty()));
    let sim_failed = count(&|o| {
        matches!(
            o,
            Outcome::Judged {
                simulator: Err(_),
                ..
            }
        )
    });
    println!(
        "\nfuzz seed {} scenarios {}..{}:",
        cli.seed,
        cli.start,
        cli.start + cli.count
    );
    for e in entries {
        let line = match &e.outcome {
            Outcome::QemuCrashed(why) => format!("QEMU CRASHED ({why})"),
            Outcome::Invalid(why) => format!("invalid on QEMU ({why})"),
            Outcome::Judged {
                daemon_diffs,
                simulator,
                ..
            } => {
                let daemon = daemon_diffs
                    .first()
                    .map_or("identical".into(), |d| d.clone());
                let sim = match simulator {
                    Ok((_, d)) => d.first().map_or("identical".into(), |d| d.clone()),
                    Err(e) => format!("FAILED: {e}"),
                };
                format!("daemon: {daemon} | simulator: {sim}")
            }
        };
        println!("  {:16} {}", e.name, truncate(&line, 200));
    }
    println!(
        "\n{} scenarios in {:.0} s: {valid} valid, {invalid} invalid on QEMU, {crashed} QEMU crashes",
        entries.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "  daemon:    {daemon_same} identical, {} differ",
        valid - daemon_same
    );
    println!(
        "  simulator: {sim_same} identical, {} differ, {sim_failed} failed",
        valid - sim_same - sim_failed
    );
}

fn print_kinds(entries: &[Entry], reduced: &Reduced) {
    let mut kinds: BTreeMap<(Side, String), Vec<u64>> = BTreeMap::new();
    for d in differences_of(entries) {
        kinds.entry((d.side, d.kind)).or_default().push(d.index);
    }
    if kinds.is_empty() {
        return;
    }
    println!("kinds of difference (first differing path of each scenario):");
    for ((side, kind), indices) in &kinds {
        println!(
            "  {:9} {kind}: {} scenario(s) {:?}",
            side.name(),
            indices.len(),
            indices
        );
        for i in indices {
            if let Some(dir) = reduced.get(&(*i, *side)) {
                println!("            reduced: {}", dir.display());
            }
        }
    }
}

/// Whether every differing (or simulator-failing) scenario is listed in
/// the known differences; prints the ones that are not, and the listed
/// ones that no longer differ.
fn check_known(cli: &FuzzCli, entries: &[Entry], known: &BTreeMap<(u64, u64), String>) -> bool {
    let mut new = Vec::new();
    let mut fixed = Vec::new();
    for e in entries {
        let differs = match &e.outcome {
            Outcome::Judged {
                daemon_diffs,
                simulator,
                ..
            } => {
                !daemon_diffs.is_empty()
                    || simulator.as_ref().is_ok_and(|(_, d)| !d.is_empty())
                    || simulator.is_err()
            }
            // QEMU's own verdicts are never Strata's failures.
            Outcome::QemuCrashed(_) | Outcome::Invalid(_) => continue,
        };
        match (differs, known.contains_key(&(cli.seed, e.index))) {
            (true, false) => new.push(e.index),
            (false, true) => fixed.push(e.index),
            _ => {}
        }
    }
    if !fixed.is_empty() {
        println!("known differences that no longer differ (remove them from the list): {fixed:?}");
    }
    if new.is_empty() {
        return true;
    }
    let listed: Vec<String> = new.iter().map(|i| format!("{}/{i}", cli.seed)).collect();
    println!(
        "NEW differences (not in the known list): {}",
        listed.join(" ")
    );
    false
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}
