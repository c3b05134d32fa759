//! A job whose free closes a node: QEMU's `bdrv_close` drains the node, and
//! the drain runs pending bottom halves first, so the job lingers, off the
//! job list, until the close goes on.

use strata_jobs::{JobCore, JobCtl, JobDriver, JobEvent, JobSpec, JobType, Jobs, RunStep, Wait};

/// Finishes at once; counts its frees in the context.
struct Closing {
    closes_a_node: bool,
}

impl JobDriver<u32> for Closing {
    fn job_type(&self) -> JobType {
        JobType::Stream
    }

    fn run_step(&mut self, _job: &mut JobCtl<'_>, _freed: &mut u32) -> RunStep {
        RunStep::Finished(Ok(()))
    }

    fn free(&mut self, _job: &JobCore, freed: &mut u32) {
        *freed += 1;
    }

    fn free_closes_a_node(&self, _job: &JobCore, _freed: &u32) -> bool {
        self.closes_a_node
    }
}

/// Steps `j` until it is dismissed (`null`), or gone.
fn to_null(jobs: &mut Jobs<u32, Closing>, freed: &mut u32, ev: &mut Vec<JobEvent>) {
    while !ev.iter().any(|e| e.sequence_label() == "null") {
        jobs.step("j", freed, 0, ev).unwrap();
    }
}

fn started(closes_a_node: bool) -> (Jobs<u32, Closing>, Vec<JobEvent>) {
    let (mut jobs, mut ev) = (Jobs::new(), Vec::new());
    jobs.create(JobSpec::new("j"), Closing { closes_a_node }, &mut ev)
        .unwrap();
    jobs.start("j", &mut ev).unwrap();
    (jobs, ev)
}

#[test]
fn a_free_that_closes_a_node_is_one_more_step_off_the_job_list() {
    let (mut jobs, mut ev) = started(true);
    let mut freed = 0;
    to_null(&mut jobs, &mut freed, &mut ev);
    assert_eq!(freed, 0, "not freed yet");
    assert!(jobs.get("j").unwrap().is_freeing());
    assert_eq!(jobs.wait("j"), Wait::Runnable);
    assert!(
        jobs.query_jobs().is_empty(),
        "dismissed jobs are off the list"
    );
    assert!(jobs.query_block_jobs().is_empty());
    assert_eq!(jobs.step("j", &mut freed, 0, &mut ev).unwrap(), Wait::Done);
    assert_eq!(freed, 1);
}

#[test]
fn a_free_that_closes_nothing_happens_with_the_dismiss() {
    let (mut jobs, mut ev) = started(false);
    let mut freed = 0;
    to_null(&mut jobs, &mut freed, &mut ev);
    assert_eq!(freed, 1);
    assert_eq!(jobs.wait("j"), Wait::Done);
}

#[test]
fn a_verb_settles_a_pending_free_first() {
    let (mut jobs, mut ev) = started(true);
    let mut freed = 0;
    to_null(&mut jobs, &mut freed, &mut ev);
    jobs.settle(&mut freed, &mut ev).unwrap();
    assert_eq!(freed, 1);
    assert_eq!(jobs.wait("j"), Wait::Done);
}
