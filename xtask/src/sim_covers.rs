//! `cargo xtask sim covers DIR...`: does exhaustive exploration find what
//! QEMU did across repeated runs? Every observation the harness recorded in
//! the directories (`NAME.json`, one run each) must equal one explored
//! outcome, volatile paths included; what QEMU did differently between runs
//! is listed, so that a `volatile` declaration can be checked too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use strata_sim::scenario::Observation;
use strata_sim::{compare, explore, Catalog, CompareOptions, Outcome, Progress};

/// Compares every path, volatile ones included.
const STRICT: CompareOptions = CompareOptions::WITH_VOLATILE;

/// Runs the check; `Ok(false)` when some QEMU run is not among the outcomes.
pub fn covers(
    cat: &Catalog,
    dirs: &[PathBuf],
    bound: usize,
) -> Result<bool, Box<dyn std::error::Error>> {
    let runs = observations(dirs)?;
    let mut all_covered = true;
    for (name, observed) in &runs {
        let Ok(scenario) = cat.scenario(name) else {
            println!("{name}: not in the catalog, skipped");
            continue;
        };
        let found = explore(
            &scenario,
            cat.explore_options(strata_sim::Bound::Preemptions(bound)),
            &Progress::default(),
        )?;
        let distinct = distinct(observed);
        let missing: Vec<&Observation> = distinct
            .iter()
            .copied()
            .filter(|obs| !found.outcomes.iter().any(|o| same(obs, &o.observation)))
            .collect();
        println!(
            "{name:42} {} run(s), {} distinct, {} of {} explored outcomes; {}",
            observed.len(),
            distinct.len(),
            distinct.len() - missing.len(),
            found.outcomes.len(),
            if missing.is_empty() {
                "all found"
            } else {
                "NOT ALL FOUND"
            }
        );
        if distinct.len() > 1 {
            for d in compare(distinct[0], distinct[1], STRICT) {
                println!("    QEMU's runs differ: {d}");
            }
        }
        for obs in &missing {
            all_covered = false;
            print_nearest(obs, &found.outcomes);
        }
    }
    Ok(all_covered)
}

fn same(a: &Observation, b: &Observation) -> bool {
    compare(a, b, STRICT).is_empty()
}

/// The observations QEMU gave, each different from the others.
fn distinct(observed: &[Observation]) -> Vec<&Observation> {
    let mut kinds: Vec<&Observation> = Vec::new();
    for obs in observed {
        if !kinds.iter().any(|k| same(k, obs)) {
            kinds.push(obs);
        }
    }
    kinds
}

/// The explored outcome closest to a QEMU run it did not find, and how
/// they differ.
fn print_nearest(obs: &Observation, outcomes: &[Outcome]) {
    let nearest = outcomes
        .iter()
        .map(|o| compare(obs, &o.observation, STRICT))
        .min_by_key(Vec::len)
        .unwrap_or_default();
    println!("    a QEMU run no schedule reaches; nearest outcome differs in:");
    for d in nearest.iter().take(8) {
        println!("      {d}");
    }
}

/// Every `NAME.json` observation in `dirs`, by scenario name.
fn observations(
    dirs: &[PathBuf],
) -> Result<BTreeMap<String, Vec<Observation>>, Box<dyn std::error::Error>> {
    let mut runs: BTreeMap<String, Vec<Observation>> = BTreeMap::new();
    for dir in dirs {
        for path in json_files(dir)? {
            let text = std::fs::read_to_string(&path)?;
            // The harness also writes summaries: only observations parse.
            if let Ok(obs) = Observation::from_json(&text) {
                runs.entry(obs.scenario.clone()).or_default().push(obs);
            }
        }
    }
    Ok(runs)
}

fn json_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    Ok(paths)
}
