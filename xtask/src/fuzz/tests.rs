//! The generator's contract: deterministic, parseable, and runnable in the
//! simulator without a simulator error (a panic, `Stuck` or a broken
//! invariant there is a Strata bug, whatever the scenario asks).

use super::generate::{generate, scenario_name};
use super::harness::simulate;
use strata_sim::scenario::Scenario;

/// Enough scenarios to meet every operation of the generator, few enough
/// for a debug build.
const SAMPLE: u64 = 24;

#[test]
fn same_seed_and_index_give_the_same_scenario() {
    for index in 0..SAMPLE {
        assert_eq!(generate(7, index), generate(7, index), "scenario {index}");
    }
}

#[test]
fn other_indices_and_seeds_give_other_scenarios() {
    let steps = |seed, index| generate(seed, index)["steps"].clone();
    for index in 0..SAMPLE {
        assert_ne!(steps(7, index), steps(7, index + 1), "scenario {index}");
        assert_ne!(steps(7, index), steps(8, index), "scenario {index}");
    }
}

#[test]
fn scenario_depends_on_its_index_only_not_on_the_batch() {
    // A batch starting at 5 has the same scenario 5 as one starting at 0.
    let name = scenario_name(3, 5);
    let scenario = generate(3, 5);
    assert_eq!(scenario["name"], name.as_str());
    assert_eq!(scenario, generate(3, 5));
}

#[test]
fn every_generated_scenario_parses() {
    for index in 0..SAMPLE * 4 {
        let text = generate(11, index).to_string();
        if let Err(e) = Scenario::from_json(&text) {
            panic!("{}: {e}", scenario_name(11, index));
        }
    }
}

#[test]
fn every_generated_scenario_runs_in_the_simulator() {
    for index in 0..SAMPLE {
        if let Err(e) = simulate(&generate(11, index)) {
            panic!("{}: {e}", scenario_name(11, index));
        }
    }
}
