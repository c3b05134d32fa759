//! `RunStep::IoWait`: a job whose own I/O is in flight (say, held by a
//! throttle group) stays busy: QEMU neither pauses nor re-enters it until
//! the request completes.

use strata_jobs::{
    Cancel, ErrorKind, JobCtl, JobDriver, JobEvent, JobSpec, JobStatus, JobType, Jobs, Lookup,
    RunStep, Wait,
};

const CHUNK: u64 = 512 * 1024;
const LATENCY: u64 = 1_000;

/// Copies two chunks; each read takes `LATENCY` ns.
#[derive(Default)]
struct SlowIo {
    begun: bool,
    in_flight: bool,
    copied: u64,
}

impl JobDriver<()> for SlowIo {
    fn job_type(&self) -> JobType {
        JobType::Stream
    }

    fn run_step(&mut self, job: &mut JobCtl<'_>, _: &mut ()) -> RunStep {
        if !self.begun {
            self.begun = true;
            job.progress_set_remaining(2 * CHUNK);
            return RunStep::RatelimitSleep;
        }
        if !self.in_flight {
            if job.is_cancelled() {
                return RunStep::Finished(Ok(()));
            }
            self.in_flight = true;
            return RunStep::IoWait {
                until_ns: job.now_ns() + LATENCY,
            };
        }
        self.in_flight = false;
        self.copied += 1;
        job.progress_update(CHUNK);
        if self.copied < 2 {
            RunStep::RatelimitSleep
        } else {
            RunStep::Finished(Ok(()))
        }
    }
}

/// A started job whose first read is in flight until `LATENCY`.
fn reading() -> (Jobs<(), SlowIo>, Vec<JobEvent>) {
    let (mut jobs, mut ev) = (Jobs::new(), Vec::new());
    jobs.create(JobSpec::new("j"), SlowIo::default(), &mut ev)
        .unwrap();
    jobs.start("j", &mut ev).unwrap();
    jobs.step("j", &mut (), 0, &mut ev).unwrap(); // the loop's first sleep
    assert_eq!(
        jobs.step("j", &mut (), 0, &mut ev).unwrap(),
        Wait::SleepUntil(LATENCY)
    );
    (jobs, ev)
}

fn labels(ev: &[JobEvent]) -> Vec<&'static str> {
    ev.iter().map(JobEvent::sequence_label).collect()
}

#[test]
fn a_pause_waits_for_the_io_then_the_next_pause_point() {
    let (mut jobs, mut ev) = reading();
    jobs.pause(Lookup::Job, "j", &mut (), &mut ev).unwrap();
    assert_eq!(jobs.wait("j"), Wait::SleepUntil(LATENCY), "not re-entered");
    assert!(jobs.drained_poll("j"), "a drain would wait for the request");
    let err = jobs.step("j", &mut (), LATENCY - 1, &mut ev).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::NotRunnable(_)));
    assert_eq!(jobs.get("j").unwrap().status(), JobStatus::Running);
    assert_eq!(
        jobs.step("j", &mut (), LATENCY, &mut ev).unwrap(),
        Wait::WaitVerb
    );
    assert_eq!(jobs.get("j").unwrap().progress().0, CHUNK);
    assert_eq!(labels(&ev), ["created", "running", "paused"]);
}

#[test]
fn a_cancel_lets_the_request_finish() {
    let (mut jobs, mut ev) = reading();
    jobs.cancel(Cancel::Job, "j", &mut (), &mut ev).unwrap();
    assert_eq!(jobs.wait("j"), Wait::SleepUntil(LATENCY));
    let mut now = LATENCY;
    while jobs.wait("j") != Wait::Done {
        if let Wait::SleepUntil(t) = jobs.wait("j") {
            now = now.max(t);
        }
        jobs.step("j", &mut (), now, &mut ev).unwrap();
    }
    assert_eq!(now, LATENCY, "no second read");
    assert!(ev.contains(&JobEvent::BlockJobCancelled {
        job_type: JobType::Stream,
        device: "j".into(),
        len: 2 * CHUNK,
        offset: CHUNK,
        speed: 0,
    }));
}
