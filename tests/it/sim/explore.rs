//! Bounded explorations: the outcomes QEMU showed are found, the ones it
//! did not are listed, and the fields that differ between outcomes are the
//! scenario's volatile ones.

use super::{explored_with, insta_settings, report};
use std::sync::Arc;
use strata_sim::scenario::Scenario;
use strata_sim::{
    compare, outcome_key, qemu_observation, replay_command, scenario, to_dot, Bound,
    CompareOptions, Exploration, ExploreOptions, Outcome, Replay, RunOptions,
};

fn explored(s: &Arc<Scenario>, bound: usize) -> Exploration {
    let options = ExploreOptions {
        preemption_bound: Bound::Preemptions(bound),
        ..ExploreOptions::default()
    };
    explored_with(s, options)
}

/// Paths in which the outcomes differ from the first one.
fn differing_paths(found: &Exploration) -> Vec<String> {
    let strict = CompareOptions::WITH_VOLATILE;
    let first = &found.outcomes[0].observation;
    let mut paths: Vec<String> = found.outcomes[1..]
        .iter()
        .flat_map(|o| compare(first, &o.observation, strict))
        .map(|d| d.split(": ").next().unwrap_or_default().to_string())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// The outcomes equal to QEMU's recorded observation (volatile paths aside).
fn outcomes_qemu_showed<'a>(s: &Scenario, found: &'a Exploration) -> Vec<&'a Outcome> {
    let qemu = qemu_observation(&s.name).expect("read").expect("recorded");
    found
        .outcomes
        .iter()
        .filter(|o| compare(&qemu, &o.observation, CompareOptions::default()).is_empty())
        .collect()
}

/// The outcome set as text: per outcome its schedules, one replay
/// command, whether QEMU showed it, and its final graph.
fn outcome_set(s: &Scenario, found: &Exploration) -> String {
    let qemu = qemu_observation(&s.name).expect("read");
    let mut out = String::new();
    for (i, o) in found.outcomes.iter().enumerate() {
        let seen = qemu
            .as_ref()
            .is_some_and(|q| compare(q, &o.observation, CompareOptions::default()).is_empty());
        out.push_str(&format!(
            "outcome {}: {} schedule(s); QEMU showed it: {}; {}\n",
            i + 1,
            o.schedules,
            if seen { "yes" } else { "no" },
            replay_command(&s.name, &o.example)
        ));
        out.push_str(&to_dot(o.observation.graph.as_ref().expect("graph")));
    }
    out
}

#[test]
fn set_speed_outcomes_differ_only_in_the_volatile_allocation() {
    let s = scenario("030-set-speed").expect("scenario");
    let found = explored(&s, 1);
    // QEMU's runs differ in how much the cancelled stream copied (the
    // harness marks test.img's allocation volatile): the monitor may handle
    // the client's next commands before the job's due timer or while its
    // chunk is in flight. One client burst finds all three allocations:
    // both chunks, the first only, none.
    let allocations: Vec<_> = found
        .outcomes
        .iter()
        .map(|o| o.observation.images["test.img"].allocated.clone())
        .collect();
    const M: u64 = 1 << 20;
    assert_eq!(
        allocations,
        [
            Some(vec![[0, 2 * M]]),
            Some(vec![[0, M / 2], [M, M]]),
            Some(vec![[M, M]]),
        ]
    );
    assert_eq!(differing_paths(&found), ["images/test.img/allocated"]);
    let qemu = qemu_observation(&s.name).expect("read").expect("recorded");
    for o in &found.outcomes {
        assert!(compare(&qemu, &o.observation, CompareOptions::default()).is_empty());
    }
    insta_settings()
        .bind(|| insta::assert_snapshot!("030-set-speed.outcomes", outcome_set(&s, &found)));
}

#[test]
fn parallel_stream_completion_orders_are_all_found_and_all_volatile() {
    let s = scenario("030-parallel-stream").expect("scenario");
    let found = explored(&s, 1);
    // One preemption lets one of the four streams run ahead (or fall
    // behind) for as long as it can: six orders of the four completions.
    assert_eq!(
        found.outcomes.len(),
        6,
        "completion orders within one preemption"
    );
    assert_eq!(differing_paths(&found), ["events/order"]);
    let qemu = qemu_observation(&s.name).expect("read").expect("recorded");
    for o in &found.outcomes {
        assert!(compare(&qemu, &o.observation, CompareOptions::default()).is_empty());
    }
    insta_settings()
        .bind(|| insta::assert_snapshot!("030-parallel-stream.outcomes", outcome_set(&s, &found)));
}

#[test]
fn stream_pause_exploration_finds_qemu_outcome_and_other_pause_points() {
    // QEMU pauses after the first chunk; a pause that lands before it (or
    // after a second, skipped-then-copied chunk) is what a slower or faster
    // monitor would see.
    let s = scenario("030-single-stream-pause").expect("scenario");
    let found = explored(&s, 1);
    let matching = outcomes_qemu_showed(&s, &found);
    assert_eq!(matching.len(), 1);
    assert_eq!(found.outcomes.len(), 3);
    // Its replay string reproduces it.
    let again = strata_sim::run(
        &s,
        &mut Replay::new(&matching[0].example),
        RunOptions::default(),
    )
    .expect("replay");
    assert_eq!(
        outcome_key(&again.observation),
        outcome_key(&matching[0].observation)
    );
    insta_settings().bind(|| {
        insta::assert_snapshot!("030-single-stream-pause.outcomes", outcome_set(&s, &found))
    });
}

#[test]
fn explorations_do_not_depend_on_the_number_of_threads() {
    let s = scenario("thread-b-bottom-parallel").expect("scenario");
    let with = |threads: usize| explored_on(&s, 2, threads);
    let one = with(1);
    // Workers share one visited set and steal each other's work: the
    // order they explore in varies from run to run, the report must not.
    for threads in [2, 3, 4] {
        let many = with(threads);
        assert_eq!(report(&one), report(&many), "{threads} threads");
    }
}

/// `s` explored within `bound` on a pool of `threads` threads.
fn explored_on(s: &Arc<Scenario>, bound: usize, threads: usize) -> Exploration {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    pool.install(|| explored(s, bound))
}

/// Every scenario explores without breaking an invariant, and the report
/// (states, schedules, outcomes with their examples, failures) is the same
/// on one thread and on two: which worker reaches a state first must not
/// change what is found there.
#[test]
fn every_scenario_explores_within_one_preemption_alike_on_one_and_two_threads() {
    for s in strata_sim::scenarios().expect("scenarios") {
        let one = explored_on(&s, 1, 1);
        assert!(!one.outcomes.is_empty(), "{}", s.name);
        let two = explored_on(&s, 1, 2);
        assert_eq!(report(&one), report(&two), "{}", s.name);
    }
}

#[test]
fn overlapping_5_finds_both_headers_of_img_3_that_qemu_writes() {
    // QEMU writes img-3's header either way: stale (the stream dropped node3
    // and freed it before the commit finished) or rewritten to img-0/raw
    // (closing node3 drains it, and the drain runs the commit's pending
    // completion first while node3 still sits above the commit filter).
    let s = scenario("030-overlapping-5").expect("scenario");
    let found = explored(&s, 2);
    let seen = outcomes_qemu_showed(&s, &found);
    let headers: Vec<_> = seen
        .iter()
        .map(|o| o.observation.images["img-3.img"].backing_filename.clone())
        .collect();
    assert_eq!(
        headers,
        [Some("img-2.img".to_string()), Some("img-0.img".to_string())]
    );
    let strict = CompareOptions::WITH_VOLATILE;
    let paths: Vec<String> = compare(&seen[0].observation, &seen[1].observation, strict)
        .iter()
        .map(|d| d.split(": ").next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "images/img-3.img/backing-filename",
            "images/img-3.img/backing-filename-format"
        ]
    );
}
