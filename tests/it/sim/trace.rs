//! The step trace the viewer renders (`strata_sim::run_traced`): it does
//! not change the run, and what it says a step did agrees with what the
//! run's observation shows by other means.

use std::collections::BTreeMap;
use strata_sim::{
    changes_between, run, run_traced, scenario, scenarios, Canonical, Change, RunOptions,
    TracedRun, VertexKind,
};

fn traced(name: &str) -> TracedRun {
    let s = scenario(name).expect("scenario");
    run_traced(&s, &mut Canonical, RunOptions::default()).expect("canonical run")
}

#[test]
fn tracing_a_run_changes_nothing_of_it() {
    for s in scenarios().expect("scenarios") {
        let plain = run(&s, &mut Canonical, RunOptions::default()).expect("run");
        let traced = run_traced(&s, &mut Canonical, RunOptions::default()).expect("traced");
        assert_eq!(traced.run.observation, plain.observation, "{}", s.name);
        assert_eq!(traced.run.trace, plain.trace, "{}", s.name);
        assert_eq!(traced.trace.steps.len(), plain.trace.len(), "{}", s.name);
        for (step, (task, time)) in traced.trace.steps.iter().zip(&plain.trace) {
            assert_eq!((&step.task, step.time_ns), (task, *time), "{}", s.name);
        }
    }
}

#[test]
fn each_step_lists_exactly_the_changes_between_its_neighbours() {
    let t = traced("thread-a-mid-filter-base").trace;
    assert!(
        t.initial.vertices.is_empty(),
        "nothing is open before the first step"
    );
    let mut before = &t.initial;
    for step in &t.steps {
        assert_eq!(step.changes, changes_between(before, &step.state));
        before = &step.state;
    }
    assert!(changes_between(before, before).is_empty());
}

/// Every byte a job reports as copied shows in one step's `Copied`, and
/// the sum is the job's final progress.
#[test]
fn copied_bytes_add_up_to_each_jobs_progress() {
    let t = traced("030-parallel-stream").trace;
    let mut copied: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_progress: BTreeMap<String, u64> = BTreeMap::new();
    for step in &t.steps {
        for c in &step.changes {
            if let Change::Copied { job, bytes, now } = c {
                *copied.entry(job.clone()).or_default() += bytes;
                assert_eq!(copied[job], now.0, "{job}: running sum = progress");
            }
        }
        for j in &step.state.jobs {
            last_progress.insert(j.id.clone(), j.current_progress);
        }
    }
    assert_eq!(copied.len(), 4, "four parallel streams copy: {copied:?}");
    assert_eq!(copied, last_progress);
}

/// A stream freezes its chain and unfreezes every link it froze.
#[test]
fn every_frozen_link_is_unfrozen_or_gone_at_the_end() {
    let t = traced("030-parallel-stream").trace;
    let froze = t
        .steps
        .iter()
        .flat_map(|s| &s.changes)
        .filter(|c| matches!(c, Change::Frozen(_)))
        .count();
    assert!(froze >= 4, "each of the four streams freezes a link");
    let last = &t.steps.last().expect("steps").state;
    assert!(last.edges.iter().all(|l| !l.frozen), "{:?}", last.edges);
}

/// The stream through a filter inserts an implicit copy-on-read node,
/// drops it at the end, and rewrites top's header to what `qemu-img info`
/// of the final image shows.
#[test]
fn a_filtered_stream_inserts_and_drops_an_implicit_node_and_rewrites_the_header() {
    let done = traced("thread-a-mid-filter-base");
    let steps = &done.trace.steps;
    let implicit_cor = |state: &strata_sim::StepState| {
        state
            .vertices
            .iter()
            .find(|v| v.implicit && v.driver.as_deref() == Some("copy-on-read"))
            .map(|v| v.key.clone())
    };
    let inserted = steps
        .iter()
        .position(|s| implicit_cor(&s.state).is_some())
        .expect("a copy-on-read filter is inserted");
    let key = implicit_cor(&steps[inserted].state).expect("found");
    assert!(steps[inserted]
        .changes
        .contains(&Change::Added(key.clone())));
    assert!(steps[inserted..]
        .iter()
        .any(|s| s.changes.contains(&Change::Removed(key.clone()))));
    let header = steps
        .iter()
        .flat_map(|s| &s.changes)
        .find_map(|c| match c {
            Change::Header { node, after, .. } if node == "top" => Some(after.clone()),
            _ => None,
        })
        .expect("top's header is rewritten");
    let image = &done.run.observation.images["top.img"];
    assert_eq!(header, image.backing_filename);
    let jobs = steps
        .iter()
        .flat_map(|s| &s.state.vertices)
        .filter(|v| v.kind == VertexKind::Job)
        .count();
    assert!(jobs > 0, "the job shows as its own vertex");
}
