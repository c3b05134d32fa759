//! Canonical runs against QEMU's observations: the project's (`sim/qemu/`)
//! and the shared conformance harness's (`golden/`).

use super::canonical;
use strata_sim::{
    compare, qemu_observation, run_like_daemon, scenarios, Catalog, CompareOptions, RunOptions,
};

/// Scenarios whose canonical run differs from QEMU's observation, with
/// why; the test fails when the list is not exactly the set of differing
/// scenarios, so a fix updates it. Empty: the canonical schedule (jobs
/// whose timers fired run before the monitor reads the next command, in
/// the order they yielded) matches every recording.
const KNOWN_GAPS: [(&str, &str); 0] = [];

#[test]
fn every_scenario_has_a_qemu_observation_and_canonical_runs_match_it() {
    let mut differing = Vec::new();
    let all = scenarios().expect("scenarios");
    assert!(all.len() >= 40, "{} scenarios", all.len());
    for s in &all {
        let qemu = qemu_observation(&s.name)
            .expect("readable")
            .unwrap_or_else(|| panic!("{}: no QEMU observation in sim/qemu", s.name));
        assert!(
            qemu.expectations_failed.is_empty(),
            "{}: QEMU failed expectations",
            s.name
        );
        let obs = canonical(s);
        assert!(
            obs.harness_errors.is_empty(),
            "{}: {:?}",
            s.name,
            obs.harness_errors
        );
        let diffs = compare(&qemu, &obs, CompareOptions::default());
        if !diffs.is_empty() {
            differing.push((s.name.clone(), diffs));
        }
    }
    let names: Vec<&str> = differing.iter().map(|(n, _)| n.as_str()).collect();
    let known: Vec<&str> = KNOWN_GAPS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        known,
        "scenarios differing from QEMU changed; first differences: {:#?}",
        differing
            .iter()
            .map(|(n, d)| (n, &d[0]))
            .collect::<Vec<_>>()
    );
}

#[test]
fn the_shared_harness_scenarios_replay_to_qemus_golden_observations() {
    let harness = Catalog::shared_harness().unwrap_or_else(|| {
        panic!(
            "the shared conformance harness is missing: no {}/scenarios \
             (put the harness there or set STRATA_CONFORMANCE to its directory)",
            Catalog::shared_harness_dir().display()
        )
    });
    let all = harness.scenarios().expect("scenarios");
    assert!(!all.is_empty(), "{}", harness.describe());
    let mut differing = Vec::new();
    for s in &all {
        let Some(golden) = harness.qemu_observation(&s.name).expect("readable") else {
            differing.push(format!("{}: no golden observation", s.name));
            continue;
        };
        let diffs = compare(&golden, &canonical(s), CompareOptions::default());
        if let Some(first) = diffs.first() {
            differing.push(format!("{}: {first}", s.name));
        }
    }
    assert_eq!(differing, Vec::<String>::new(), "{}", harness.describe());
}

/// strata-qsd's loop (step the jobs the block layer's main loop lists
/// first, then poll until its next wakeup or a client command) run on
/// memory storage gives every scenario, the project's and the shared
/// harness's, exactly the canonical schedule's observation: the daemon and
/// the simulator cannot order things differently.
#[test]
fn the_daemons_loop_observes_what_the_canonical_schedule_observes() {
    let shared = Catalog::shared_harness().expect(
        "../shared/conformance (the shared harness's scenarios) is missing beside the checkout",
    );
    let mut differing = Vec::new();
    let mut checked = 0;
    for catalog in [Catalog::project(), shared] {
        for s in &catalog.scenarios().expect("scenarios") {
            let daemon = run_like_daemon(s, RunOptions::default())
                .unwrap_or_else(|e| panic!("{}: the daemon's loop failed: {e}", s.name));
            let diffs = compare(&canonical(s), &daemon, CompareOptions::WITH_VOLATILE);
            if let Some(first) = diffs.first() {
                differing.push(format!("{}: {first}", s.name));
            }
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} scenarios");
    assert_eq!(differing, Vec::<String>::new());
}

#[test]
fn a_mismatch_is_reported_path_by_path() {
    let s = strata_sim::scenario("030-single-stream").expect("scenario");
    let mut obs = canonical(&s);
    let qemu = qemu_observation(&s.name).expect("read").expect("recorded");
    assert!(compare(&qemu, &obs, CompareOptions::default()).is_empty());
    obs.images.get_mut("test.img").expect("image").sha256 = Some("0".repeat(64));
    obs.job_event_sequences
        .get_mut("drive0")
        .expect("job")
        .push("paused".into());
    let diffs = compare(&qemu, &obs, CompareOptions::default());
    assert_eq!(diffs.len(), 2, "{diffs:#?}");
    assert!(
        diffs[0].starts_with("job_event_sequences/drive0: "),
        "{diffs:#?}"
    );
    assert!(
        diffs[1].starts_with("images/test.img/sha256: "),
        "{diffs:#?}"
    );
}

#[test]
fn volatile_paths_are_skipped_unless_asked() {
    let s = strata_sim::scenario("030-set-speed").expect("scenario");
    let mut obs = canonical(&s);
    let qemu = qemu_observation(&s.name).expect("read").expect("recorded");
    obs.images.get_mut("test.img").expect("image").allocated = Some(vec![[0, 1]]);
    assert!(compare(&qemu, &obs, CompareOptions::default()).is_empty());
    let strict = CompareOptions::WITH_VOLATILE;
    assert_eq!(compare(&qemu, &obs, strict).len(), 1);
}
