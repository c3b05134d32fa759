//! Schedulers, schedule strings and determinism.

use strata_sim::{
    check_determinism, outcome_key, run, scenario, Pct, Random, Replay, RunOptions, Schedule,
    SchedulerSpec,
};

#[test]
fn schedule_strings_round_trip() {
    for text in ["s:", "s:b", "s:a3b2c", "s:a12d", "s:ba"] {
        let parsed = Schedule::parse(text).expect(text);
        let printed = parsed.to_string();
        assert_eq!(Schedule::parse(&printed).expect("printed"), parsed);
    }
    assert_eq!(Schedule(vec![0, 0, 0, 1, 1, 0, 0]).to_string(), "s:a3b2");
    assert_eq!(Schedule(vec![0, 0]).to_string(), "s:");
    assert!(Schedule::parse("a3").is_err());
    assert!(Schedule::parse("s:A").is_err());
    assert_eq!(Schedule::parse("s:a3b2").expect("parse").preemptions(), 2);
}

#[test]
fn scheduler_names_parse() {
    assert_eq!(
        SchedulerSpec::parse("canonical", 1).expect("c"),
        SchedulerSpec::Canonical
    );
    assert_eq!(
        SchedulerSpec::parse("random", 7).expect("r"),
        SchedulerSpec::Random(7)
    );
    assert_eq!(
        SchedulerSpec::parse("pct:4", 7).expect("p"),
        SchedulerSpec::Pct(7, 4)
    );
    assert!(SchedulerSpec::parse("sideways", 0).is_err());
}

#[test]
fn random_and_pct_runs_are_functions_of_their_seed_and_replay_exactly() {
    let s = scenario("030-parallel-stream").expect("scenario");
    let mut schedules = Vec::new();
    for seed in 0..4 {
        let a = run(&s, &mut Random::new(seed), RunOptions::default()).expect("random");
        let b = run(&s, &mut Random::new(seed), RunOptions::default()).expect("random");
        assert_eq!(a.trace, b.trace, "seed {seed}");
        let again = run(&s, &mut Replay::new(&a.schedule), RunOptions::default()).expect("replay");
        assert_eq!(again.trace, a.trace);
        assert_eq!(outcome_key(&again.observation), outcome_key(&a.observation));
        schedules.push(a.schedule);
        let p = run(&s, &mut Pct::new(seed, 3, 64), RunOptions::default()).expect("pct");
        let q = run(&s, &mut Pct::new(seed, 3, 64), RunOptions::default()).expect("pct");
        assert_eq!(p.trace, q.trace);
    }
    schedules.dedup();
    assert!(schedules.len() > 1, "different seeds, different schedules");
}

#[test]
fn determinism_check_passes_for_canonical_and_explored_schedules() {
    for name in [
        "030-overlapping-5",
        "thread-b-bottom-parallel",
        "030-eio-stop",
    ] {
        let s = scenario(name).expect("scenario");
        let options = RunOptions::default();
        check_determinism(&s, &Schedule::default(), options).expect("canonical");
        let other = Schedule::parse("s:a3b").expect("schedule");
        check_determinism(&s, &other, options).expect("other");
    }
}

#[test]
fn a_choice_beyond_the_runnable_tasks_ends_the_run() {
    // Replay does not clamp: the run stops at the first decision it cannot
    // take, and says so.
    let s = scenario("thread-b-bottom-parallel").expect("scenario");
    let failure = run(
        &s,
        &mut Replay::new(&Schedule(vec![25; 6])),
        RunOptions::default(),
    )
    .expect_err("an impossible choice");
    assert!(
        matches!(
            failure.error,
            strata_sim::Error::ScheduleEnded { decision: 0, runnable } if runnable >= 2
        ),
        "{}",
        failure.error
    );
    assert!(failure.schedule.0.is_empty());
}

#[test]
fn a_wait_that_never_completes_times_out_in_virtual_time() {
    let s = std::sync::Arc::new(
        strata_sim::scenario::Scenario::from_json(
            r#"{"name": "never", "images": [{"name": "a.img", "size": "1M"}],
                "steps": [
                  {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "a",
                     "file": {"driver": "file", "filename": "a.img"}}},
                  {"wait": {"event": "BLOCK_JOB_COMPLETED", "job": "nope", "timeout": 5}},
                  {"execute": "block-stream", "arguments": {"device": "a"}, "expect": "success"}
                ]}"#,
        )
        .expect("scenario"),
    );
    let done = run(&s, &mut strata_sim::Canonical, RunOptions::default()).expect("run");
    let obs = &done.observation;
    assert_eq!(obs.steps[1].result.as_deref(), Some("timeout"));
    // The wait and the refused job-less stream (qsd has no device name to
    // default the job id to) both fail their expectations.
    assert_eq!(obs.expectations_failed, vec![1, 2]);
    let (_, last_time) = done.trace.last().expect("steps");
    assert_eq!(*last_time, 5_000_000_000, "the clock jumped to the timeout");
}
