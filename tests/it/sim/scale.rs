//! Exploration at scale: every schedule (`Bound::Unbounded`), and an
//! exploration split into shards run as separate processes whose merged
//! partial results are exactly the single run's report.

use super::{explored_with, outcome_keys, report};
use std::path::PathBuf;
use std::process::Command;
use strata_sim::{
    explore, explore_shard, merge, outcome_key, run, scenario, Bound, Exploration, ExploreOptions,
    Progress, Replay, RunOptions, Shard, ShardFile,
};

fn explored(name: &str, bound: Bound) -> Exploration {
    let s = scenario(name).expect("scenario");
    let options = ExploreOptions {
        preemption_bound: bound,
        ..ExploreOptions::default()
    };
    explored_with(&s, options)
}

#[test]
fn bounds_parse_and_print_as_the_summary_line_shows_them() {
    assert_eq!(Bound::parse("none"), Some(Bound::Unbounded));
    assert_eq!(Bound::parse("3"), Some(Bound::Preemptions(3)));
    assert_eq!(Bound::parse("three"), None);
    assert_eq!(Bound::Unbounded.to_string(), "unbounded");
    assert_eq!(Bound::Preemptions(2).to_string(), "2");
    assert_eq!(Shard::parse("1/4"), Some(Shard { index: 1, count: 4 }));
    assert_eq!(Shard::parse("4/4"), None);
    assert_eq!(Shard::parse("1"), None);
}

/// Every schedule within a bound is a schedule: exploring all of them
/// (with states keyed without the main loop's order, so that different
/// orders of the same steps meet) finds every outcome a bounded
/// exploration finds, and more where preemptions matter.
#[test]
fn unbounded_exploration_finds_every_outcome_of_a_bounded_one() {
    for name in [
        "030-stream-commit-1",
        "thread-b-bottom-parallel",
        "030-set-speed",
        "x-stream-twice",
    ] {
        let unbounded = outcome_keys(&explored(name, Bound::Unbounded));
        let bounded = outcome_keys(&explored(name, Bound::Preemptions(3)));
        assert!(
            bounded.is_subset(&unbounded),
            "{name}: {} outcome(s) at bound 3 not found unbounded",
            bounded.difference(&unbounded).count()
        );
    }
    // 030-set-speed's client commands race its job's timer: more
    // interleavings than three preemptions reach give new outcomes.
    let set_speed = |bound| explored("030-set-speed", bound).outcomes.len();
    assert!(set_speed(Bound::Unbounded) > set_speed(Bound::Preemptions(3)));
}

/// Scenarios whose unbounded states are reached with their tasks listed
/// in different orders (`thread-b-bottom-parallel`'s example of its
/// second completion order once replayed to the first).
const REPLAYED: [&str; 4] = [
    "thread-b-bottom-parallel",
    "030-set-speed",
    "030-stream-commit-1",
    "x-quit-cancels-jobs",
];

/// An unbounded state's key leaves the order of the tasks that can run
/// out, while a replay picks by position in that order: every example
/// schedule the exploration prints must still replay, choice by choice,
/// to its outcome.
#[test]
fn every_example_schedule_of_an_unbounded_exploration_replays_to_its_outcome() {
    for name in REPLAYED {
        let s = scenario(name).expect("scenario");
        let found = explored(name, Bound::Unbounded);
        for o in &found.outcomes {
            let again = run(&s, &mut Replay::new(&o.example), RunOptions::default())
                .unwrap_or_else(|f| panic!("{name} {}: {}", o.example, f.error));
            assert_eq!(
                outcome_key(&again.observation),
                outcome_key(&o.observation),
                "{name}: example {} replays to another outcome",
                o.example
            );
        }
    }
}

/// The environment variable that makes the shard test's process one
/// shard's worker (`K/N:FILE`) instead of the test that runs them.
const WORKER: &str = "STRATA_TEST_SHARD_WORKER";

const SHARDED: &str = "030-stream-commit-1";
const SHARDED_BOUND: Bound = Bound::Preemptions(2);

fn sharded_options() -> ExploreOptions {
    ExploreOptions {
        preemption_bound: SHARDED_BOUND,
        ..ExploreOptions::default()
    }
}

/// One shard's process: explores its share and writes its file.
fn shard_worker(spec: &str) {
    let (shard, path) = spec.split_once(':').expect("K/N:FILE");
    let shard = Shard::parse(shard).expect("K/N");
    let s = scenario(SHARDED).expect("scenario");
    let parts = explore_shard(&s, sharded_options(), &Progress::default(), shard).expect("explore");
    let file = ShardFile {
        scenario: SHARDED.into(),
        bound: SHARDED_BOUND,
        policy: strata_sim::policy::default().name.into(),
        shard,
        seconds: 0.0,
        parts,
    };
    std::fs::write(path, file.to_json()).expect("write the shard's file");
}

/// Runs this test's binary once per shard, as a cluster's job array runs
/// one process per index, and merges their files.
fn run_shards_as_processes(count: usize) -> Exploration {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths: Vec<PathBuf> = (0..count)
        .map(|k| dir.path().join(format!("shard-{k}.json")))
        .collect();
    let children: Vec<_> = paths
        .iter()
        .enumerate()
        .map(|(k, path)| {
            Command::new(std::env::current_exe().expect("test binary"))
                .args([
                    "--exact",
                    "sim::scale::shards_run_as_processes_merge_into_the_single_run",
                    "--test-threads=1",
                ])
                .env(WORKER, format!("{k}/{count}:{}", path.display()))
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn a shard")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("shard exits").success());
    }
    let files: Vec<ShardFile> = paths
        .iter()
        .map(|p| ShardFile::from_json(&std::fs::read_to_string(p).expect("read")).expect("parse"))
        .collect();
    ShardFile::check_complete(&files).expect("every shard once");
    let s = scenario(SHARDED).expect("scenario");
    merge(
        &s,
        &sharded_options(),
        files.into_iter().flat_map(|f| f.parts).collect(),
    )
}

#[test]
fn shards_run_as_processes_merge_into_the_single_run() {
    if let Ok(spec) = std::env::var(WORKER) {
        // This process is one shard's worker, started by the test below.
        shard_worker(&spec);
        return;
    }
    let single = explored(SHARDED, SHARDED_BOUND);
    assert!(
        single.outcomes.len() > 1,
        "a scenario with several outcomes"
    );
    for count in [1, 3] {
        assert_eq!(
            report(&run_shards_as_processes(count)),
            report(&single),
            "{count} shard(s)"
        );
    }
    // A shard missing is refused, not merged into a smaller report.
    let s = scenario(SHARDED).expect("scenario");
    let lone = ShardFile {
        scenario: SHARDED.into(),
        bound: SHARDED_BOUND,
        policy: strata_sim::policy::default().name.into(),
        shard: Shard { index: 1, count: 2 },
        seconds: 0.0,
        parts: explore_shard(
            &s,
            sharded_options(),
            &Progress::default(),
            Shard { index: 1, count: 2 },
        )
        .expect("explore"),
    };
    assert!(ShardFile::check_complete(&[lone]).is_err());
}

/// A time limit stops an exploration and says so; one that finishes in
/// time is complete.
#[test]
fn a_time_limit_stops_an_exploration_and_marks_it_incomplete() {
    let run = |name: &str, limit: u64| {
        let options = ExploreOptions {
            preemption_bound: Bound::Unbounded,
            time_limit: Some(std::time::Duration::from_secs(limit)),
            ..ExploreOptions::default()
        };
        let s = scenario(name).expect("scenario");
        explore(&s, options, &Progress::default()).expect("explore")
    };
    // Hundreds of thousands of states: far more than one second explores.
    let stopped = run("030-parallel-stream", 1);
    assert!(!stopped.complete);
    assert!(stopped.states > 0);
    let done = run("thread-b-bottom-parallel", 600);
    assert!(done.complete);
    assert_eq!(done.outcomes.len(), 2);
}
