//! The simulator: every scenario's canonical run against QEMU 10.0.2's
//! recorded observation, snapshots of graphs and observations, bounded
//! explorations, schedulers and determinism.

mod conformance;
mod explore;
mod inspect;
mod policies;
mod reduction;
mod scale;
mod schedules;
mod snapshots;
mod state_keys;
mod trace;

use std::collections::BTreeSet;
use std::sync::Arc;
use strata_sim::scenario::{Observation, Scenario};
use strata_sim::{
    explore, outcome_key, replay_command, run, Canonical, Exploration, ExploreOptions, Progress,
    RunOptions,
};

/// The canonical run's observation; panics with the replay command.
pub fn canonical(s: &Arc<Scenario>) -> Observation {
    match run(s, &mut Canonical, RunOptions::default()) {
        Ok(done) => done.observation,
        Err(f) => panic!(
            "{}: {}  [{}]",
            s.name,
            f.error,
            strata_sim::replay_command(&s.name, &f.schedule)
        ),
    }
}

/// insta settings: snapshots in `tests/it/sim/snapshots`, named by
/// scenario only.
pub fn insta_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// `s` explored with `options`; panics on a failure, with its replay
/// command.
pub fn explored_with(s: &Arc<Scenario>, options: ExploreOptions) -> Exploration {
    let found = explore(s, options, &Progress::default()).expect("explore");
    assert!(
        found.failures.is_empty(),
        "{}: {:?}",
        s.name,
        found
            .failures
            .iter()
            .map(|(sch, e)| format!("{e} [{}]", replay_command(&s.name, sch)))
            .collect::<Vec<_>>()
    );
    found
}

/// The keys of an exploration's distinct outcomes.
pub fn outcome_keys(found: &Exploration) -> BTreeSet<String> {
    found
        .outcomes
        .iter()
        .map(|o| outcome_key(&o.observation))
        .collect()
}

/// What a report shows of an exploration, outcome by outcome: two
/// explorations of one scenario must show the same.
pub fn report(found: &Exploration) -> Vec<String> {
    let mut lines = vec![format!(
        "{} states, {} schedules, {:?}, {:?}",
        found.states, found.schedules, found.failures, found.structure
    )];
    lines.extend(found.outcomes.iter().map(|o| {
        format!(
            "{} schedule(s), example {}, {}",
            o.schedules,
            o.example,
            outcome_key(&o.observation)
        )
    }));
    lines
}
