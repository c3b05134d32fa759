//! The 2020 thread's predictions, checked: each policy's runs against the
//! properties (docs/POLICIES.md), and the matrix kept as a snapshot.

use super::insta_settings;
use strata_sim::policy::{self, Policy};
use strata_sim::scenario::Observation;
use strata_sim::{
    explore, policy_matrix, run, scenario, scenarios, Baseline, Bound, ExploreOptions, Progress,
    Property, Replay, RunOptions, Schedule,
};

/// The observation of `schedule` of `name` under the policy called `policy`.
fn observed(name: &str, policy: &str, schedule: &str) -> Observation {
    let s = scenario(name).expect("scenario");
    let options = RunOptions {
        policy: policy::by_name(policy).expect("policy"),
        ..RunOptions::default()
    };
    let schedule = Schedule::parse(schedule).expect("schedule");
    run(&s, &mut Replay::new(&schedule), options)
        .unwrap_or_else(|f| panic!("{name} under {policy}: {}", f.error))
        .observation
}

/// The properties violated by `schedule` of `name` under `policy`, with
/// their details.
fn violated(name: &str, policy: &str, schedule: &str) -> Vec<(Property, String)> {
    let baseline = Baseline::new(&scenario(name).expect("scenario")).expect("baseline");
    baseline
        .check(&observed(name, policy, schedule))
        .into_iter()
        .map(|v| (v.property, v.detail))
        .collect()
}

fn properties(found: &[(Property, String)]) -> Vec<Property> {
    found.iter().map(|(p, _)| *p).collect()
}

#[test]
fn freeze_base_refuses_what_030s_parallel_streams_need() {
    // The upper stream's base at start is the lower stream's filter: frozen,
    // the lower job cannot drop it and fails (Vladimir, 7 August 2020).
    let qemu = violated("030-parallel-stream", "qemu-10.0", "s:");
    assert!(
        !properties(&qemu).contains(&Property::JobsSucceed),
        "{qemu:?}"
    );
    let frozen = violated("030-parallel-stream", "freeze-base", "s:");
    assert!(
        frozen
            .iter()
            .any(|(p, d)| *p == Property::JobsSucceed && d.contains("failed")),
        "{frozen:?}"
    );
    // A stream next to a commit whose filter is above the stream's base:
    // freezing down to the base meets the commit's frozen link.
    let commit = violated("030-overlapping-5", "freeze-base", "s:a2b");
    assert!(
        commit
            .iter()
            .any(|(p, d)| *p == Property::JobsSucceed && d.contains("Cannot freeze")),
        "{commit:?}"
    );
}

#[test]
fn base_overlay_keeps_the_user_filter_that_qemu_drops() {
    let qemu = properties(&violated("thread-a-mid-filter-base", "qemu-10.0", "s:"));
    assert_eq!(
        qemu,
        [Property::FilterKept],
        "the filter goes, base is backing"
    );
    let vladimir = properties(&violated("thread-a-mid-filter-base", "base-overlay", "s:"));
    assert_eq!(
        vladimir,
        [Property::BaseBecomesBacking, Property::FilterDropped],
        "the filter stays, so the base is not the top's backing"
    );
}

#[test]
fn header_opens_catches_a_filters_name_in_a_header() {
    // Andrey, 14 August 2020: with the base named by a filter's node name,
    // QEMU 5.1 wrote the filter's json: filename into the qcow2 header.
    let qemu = violated("thread-a-base-is-filter", "qemu-10.0", "s:");
    assert!(
        !properties(&qemu).contains(&Property::HeaderOpens),
        "{qemu:?}"
    );
    let old = violated("thread-a-base-is-filter", "qemu-5.1", "s:");
    assert!(
        old.iter()
            .any(|(p, d)| *p == Property::HeaderOpens && d.contains("json:")),
        "{old:?}"
    );
}

#[test]
fn guest_data_loss_is_detected() {
    // Tracking the node above the base without QEMU 10.0's filter lets a
    // commit's completion slip under the stream: the top loses data.
    let lost = violated("030-overlapping-5", "above-base", "s:a10b9");
    assert!(
        properties(&lost).contains(&Property::GuestDataPreserved),
        "{lost:?}"
    );
    let qemu = violated("030-overlapping-5", "qemu-10.0", "s:a10b9");
    assert!(
        !properties(&qemu).contains(&Property::GuestDataPreserved),
        "{qemu:?}"
    );
}

#[test]
fn outcome_properties_fail_on_a_tampered_observation() {
    let name = "thread-a-mid-filter-base";
    let baseline = Baseline::new(&scenario(name).expect("scenario")).expect("baseline");
    let clean = observed(name, "qemu-10.0", "s:");
    let mut tampered = clean.clone();
    let top = tampered.images.get_mut("top.img").expect("top.img");
    top.sha256 = Some("0".repeat(64));
    top.convert_error = Some("qemu-img: Could not open backing file".into());
    tampered
        .job_event_sequences
        .insert("s".into(), vec!["running".into(), "aborting".into()]);
    let before: Vec<Property> = baseline.check(&clean).iter().map(|v| v.property).collect();
    let after: Vec<Property> = baseline
        .check(&tampered)
        .iter()
        .map(|v| v.property)
        .collect();
    for p in [
        Property::GuestDataPreserved,
        Property::HeaderOpens,
        Property::JobsSucceed,
    ] {
        assert!(!before.contains(&p) && after.contains(&p), "{p:?}");
    }
}

#[test]
fn structure_properties_are_checked_at_every_step() {
    // QEMU 10.0 keeps a stream's dropped filter, childless, until the job
    // is freed: reported, not fixed. QEMU 5.1 had no filter to drop.
    let s = scenario("thread-a-mid-filter-base").expect("scenario");
    let broken = |policy: &'static Policy| {
        let options = ExploreOptions {
            preemption_bound: Bound::Preemptions(0),
            check_structure: true,
            policy,
            ..ExploreOptions::default()
        };
        let found = explore(&s, options, &Progress::default()).expect("explore");
        found.structure.keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(broken(&policy::QEMU_10_0), ["filter-one-child"]);
    assert_eq!(broken(&policy::QEMU_5_1), Vec::<String>::new());
}

#[test]
fn every_policy_has_a_distinct_name_and_position() {
    let mut names = policy::names();
    names.dedup();
    assert_eq!(names.len(), policy::ALL.len());
    for (i, a) in policy::ALL.iter().enumerate() {
        for b in &policy::ALL[i + 1..] {
            let same = (a.freeze, a.new_backing, a.header, a.filter, a.base_search)
                == (b.freeze, b.new_backing, b.header, b.filter, b.base_search);
            assert!(!same, "{} and {} take the same position", a.name, b.name);
        }
    }
}

/// The project's matrix at preemption bound 0 (the canonical schedule of
/// every scenario under every policy; `cargo xtask sim policies` explores
/// bound 2): a change in the model's semantics is a reviewed diff here and
/// in docs/POLICIES.md, which is generated from it
/// (`STRATA_UPDATE_DOCS=1` rewrites it).
#[test]
fn the_policy_matrix_and_its_document() {
    let all = scenarios().expect("scenarios");
    let matrix = policy_matrix(&all, policy::ALL, 0).expect("matrix");
    insta_settings().bind(|| insta::assert_snapshot!("policy-matrix", matrix.to_text()));
    let doc = strata_sim::policies_doc(&matrix);
    let path = strata_sim::sim_dir().join("../docs/POLICIES.md");
    if std::env::var_os("STRATA_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &doc).expect("write docs/POLICIES.md");
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == doc,
        "docs/POLICIES.md is not the generated document: run STRATA_UPDATE_DOCS=1 cargo test -p strata-tests the_policy_matrix"
    );
}
