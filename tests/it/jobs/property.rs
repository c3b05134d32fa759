//! Seeded quickcheck property: random verbs and steps on a fake job never
//! leave `JobSTT`, refused verbs change nothing, and every job can be
//! brought to `null`.
//!
//! The seed is printed; rerun a failure with `STRATA_SEED=<seed>`.

use super::fake::{Fake, Harness};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use std::sync::atomic::{AtomicUsize, Ordering};
use strata_jobs::{
    BlockdevOnError, Cancel, Errno, ErrorKind, JobSpec, JobStatus, JobTable, JobVerb, Lookup, Wait,
};

#[derive(Clone, Debug)]
enum Op {
    Step,
    Pause(Lookup),
    Resume(Lookup),
    JobCancel,
    BlockCancel(bool),
    Complete(Lookup),
    Finalize(Lookup),
    Dismiss(Lookup),
    SetSpeed(i64),
    DrainBegin,
    DrainEnd,
}

#[derive(Clone, Debug)]
struct Scenario {
    fake: Fake,
    on_error: BlockdevOnError,
    auto_finalize: bool,
    auto_dismiss: bool,
    start_at: usize,
    ops: Vec<Op>,
}

fn lookup(g: &mut Gen) -> Lookup {
    *g.choose(&[Lookup::Job, Lookup::BlockJob]).unwrap()
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        match u8::arbitrary(g) % 16 {
            0..=5 => Op::Step,
            6 => Op::Pause(lookup(g)),
            7 => Op::Resume(lookup(g)),
            8 => Op::JobCancel,
            9 => Op::BlockCancel(bool::arbitrary(g)),
            10 => Op::Complete(lookup(g)),
            11 => Op::Finalize(lookup(g)),
            12 => Op::Dismiss(lookup(g)),
            13 => Op::SetSpeed(*g.choose(&[-1, 0, 1, 1024, 1 << 20, 64 << 20]).unwrap()),
            14 => Op::DrainBegin,
            _ => Op::DrainEnd,
        }
    }
}

impl Arbitrary for Scenario {
    fn arbitrary(g: &mut Gen) -> Scenario {
        let chunks = u64::arbitrary(g) % 5;
        let mut fake = if bool::arbitrary(g) {
            Fake::active_commit(chunks)
        } else {
            Fake::stream(chunks)
        };
        if bool::arbitrary(g) {
            let errno = *g.choose(&[Errno::EIO, Errno::ENOSPC]).unwrap();
            fake = fake.failing_at(u64::arbitrary(g) % (chunks + 1), errno);
        }
        if u8::arbitrary(g) % 4 == 0 {
            fake = fake.prepare_failing(Errno::EPERM);
        }
        if bool::arbitrary(g) {
            fake = fake.with_io_latency(*g.choose(&[0, 1, 50_000_000]).unwrap());
        }
        let ops: Vec<Op> = Arbitrary::arbitrary(g);
        Scenario {
            fake,
            on_error: *g.choose(BlockdevOnError::ALL).unwrap(),
            auto_finalize: bool::arbitrary(g),
            auto_dismiss: bool::arbitrary(g),
            start_at: usize::arbitrary(g) % (ops.len() + 1),
            ops,
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Scenario>> {
        let this = self.clone();
        Box::new(self.ops.shrink().map(move |ops| Scenario {
            start_at: this.start_at.min(ops.len()),
            ops,
            ..this.clone()
        }))
    }
}

/// The verb an op is checked against, for the ops that are verbs.
fn verb_of(op: &Op) -> Option<JobVerb> {
    Some(match op {
        Op::Pause(_) => JobVerb::Pause,
        Op::Resume(_) => JobVerb::Resume,
        Op::JobCancel | Op::BlockCancel(_) => JobVerb::Cancel,
        Op::Complete(_) => JobVerb::Complete,
        Op::Finalize(_) => JobVerb::Finalize,
        Op::Dismiss(_) => JobVerb::Dismiss,
        Op::SetSpeed(_) => JobVerb::SetSpeed,
        Op::Step | Op::DrainBegin | Op::DrainEnd => return None,
    })
}

struct Run {
    h: Harness,
    drains: u32,
}

impl Run {
    fn apply(&mut self, op: &Op) -> Result<(), String> {
        let h = &mut self.h;
        let (jobs, ctx, ev) = (&mut h.jobs, &mut h.ctx, &mut h.events);
        let result = match op {
            Op::Step => {
                match jobs.wait("j") {
                    Wait::Runnable => {}
                    Wait::SleepUntil(t) => h.now = h.now.max(t),
                    _ => return Ok(()),
                }
                jobs.step("j", ctx, h.now, ev).map(drop)
            }
            Op::Pause(l) => jobs.pause(*l, "j", ctx, ev),
            Op::Resume(l) => jobs.resume(*l, "j", ctx, ev),
            Op::JobCancel => jobs.cancel(Cancel::Job, "j", ctx, ev),
            Op::BlockCancel(force) => jobs.cancel(Cancel::BlockJob { force: *force }, "j", ctx, ev),
            Op::Complete(l) => jobs.complete(*l, "j", ctx, ev),
            Op::Finalize(l) => jobs.finalize(*l, "j", ctx, ev),
            Op::Dismiss(l) => jobs.dismiss(*l, "j", ctx, ev),
            Op::SetSpeed(speed) => jobs.set_speed("j", *speed, ctx, ev),
            Op::DrainBegin => {
                let r = jobs.pause_internal("j");
                if r.is_ok() {
                    self.drains += 1;
                }
                r
            }
            Op::DrainEnd if self.drains > 0 => {
                self.drains -= 1;
                jobs.resume_internal("j")
            }
            Op::DrainEnd => return Ok(()),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => match e.kind() {
                ErrorKind::IllegalTransition { .. } | ErrorKind::NotRunnable(_) => {
                    Err(format!("{op:?}: {e}"))
                }
                _ => Ok(()),
            },
        }
    }

    /// Applies a verb op with the table check around it.
    fn apply_checked(&mut self, op: &Op) -> Result<(), String> {
        let Some(verb) = verb_of(op) else {
            return self.apply(op);
        };
        // Settle first, as the verb itself does, so the status the verb sees
        // is known.
        self.h
            .jobs
            .settle(&mut self.h.ctx, &mut self.h.events)
            .map_err(|e| e.to_string())?;
        let before = self.h.jobs.get("j").cloned();
        let events = self.h.events.len();
        let Some(before) = before else {
            return self.apply(op);
        };
        let allowed = JobTable::verb_allowed(verb, before.status());
        let (jobs, ctx, ev) = (&mut self.h.jobs, &mut self.h.ctx, &mut self.h.events);
        let result = match op {
            Op::Pause(l) => jobs.pause(*l, "j", ctx, ev),
            Op::Resume(l) => jobs.resume(*l, "j", ctx, ev),
            Op::JobCancel => jobs.cancel(Cancel::Job, "j", ctx, ev),
            Op::BlockCancel(force) => jobs.cancel(Cancel::BlockJob { force: *force }, "j", ctx, ev),
            Op::Complete(l) => jobs.complete(*l, "j", ctx, ev),
            Op::Finalize(l) => jobs.finalize(*l, "j", ctx, ev),
            Op::Dismiss(l) => jobs.dismiss(*l, "j", ctx, ev),
            Op::SetSpeed(speed) => jobs.set_speed("j", *speed, ctx, ev),
            _ => unreachable!(),
        };
        match &result {
            Err(e) if matches!(e.kind(), ErrorKind::VerbRefused { .. }) => {
                if allowed {
                    return Err(format!(
                        "{op:?} refused in {} though the table allows it",
                        before.status()
                    ));
                }
                let text = format!(
                    "Job 'j' in state '{}' cannot accept command verb '{verb}'",
                    before.status()
                );
                if e.to_string() != text {
                    return Err(format!("{op:?}: text {e} != {text}"));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::IllegalTransition { .. } | ErrorKind::NotRunnable(_)
                ) =>
            {
                return Err(format!("{op:?}: {e}"));
            }
            _ if !allowed && result.is_ok() => {
                return Err(format!(
                    "{op:?} accepted in {} though the table forbids it",
                    before.status()
                ));
            }
            _ => {}
        }
        if let Err(e) = result {
            let after = self.h.jobs.get("j");
            if after != Some(&before) || self.h.events.len() != events {
                return Err(format!("{op:?} failed ({e}) but changed the job"));
            }
        }
        Ok(())
    }

    /// Brings the job to `null` with verbs a user would use.
    fn finish(&mut self) -> Result<(), String> {
        while self.drains > 0 {
            self.apply(&Op::DrainEnd)?;
        }
        for _ in 0..1_000 {
            let Some(core) = self.h.jobs.get("j") else {
                return Ok(());
            };
            let op = match (core.next_wait(), core.status()) {
                (Wait::NotStarted, _) => {
                    self.h
                        .jobs
                        .start("j", &mut self.h.events)
                        .map_err(|e| e.to_string())?;
                    continue;
                }
                (Wait::Runnable | Wait::SleepUntil(_), _) => Op::Step,
                (_, JobStatus::Pending) => Op::Finalize(Lookup::Job),
                (_, JobStatus::Concluded) => Op::Dismiss(Lookup::Job),
                (_, _) => Op::JobCancel,
            };
            self.apply_checked(&op)?;
        }
        Err("the job never reached null".into())
    }
}

/// Every `JOB_STATUS_CHANGE` sequence is a path in `JobSTT` from
/// `undefined`, ending in `null`, with one block-job end event at most.
fn check_events(h: &Harness) -> Result<(), String> {
    let mut status = JobStatus::Undefined;
    for event in h.events.iter() {
        if let strata_jobs::JobEvent::JobStatusChange { status: to, .. } = event {
            if !JobTable::transition_allowed(status, *to) || status == *to {
                return Err(format!("{status} -> {to} in {:?}", h.sequence("j")));
            }
            status = *to;
        }
    }
    if status != JobStatus::Null {
        return Err(format!("ended in {status}"));
    }
    let ends = h
        .events
        .iter()
        .filter(|e| matches!(e.name(), "BLOCK_JOB_COMPLETED" | "BLOCK_JOB_CANCELLED"))
        .count();
    if ends > 1 {
        return Err(format!("{ends} end events in {:?}", h.sequence("j")));
    }
    Ok(())
}

/// Scenarios and operations run, to show the property did real work.
static SCENARIOS: AtomicUsize = AtomicUsize::new(0);
static OPS: AtomicUsize = AtomicUsize::new(0);

fn property(s: Scenario) -> TestResult {
    SCENARIOS.fetch_add(1, Ordering::Relaxed);
    OPS.fetch_add(s.ops.len(), Ordering::Relaxed);
    let spec = JobSpec::new("j")
        .with_on_error(s.on_error)
        .with_auto_finalize(s.auto_finalize)
        .with_auto_dismiss(s.auto_dismiss);
    let mut run = Run {
        h: Harness::new(),
        drains: 0,
    };
    run.h
        .jobs
        .create(spec, s.fake.clone(), &mut run.h.events)
        .unwrap();
    let mut outcome = Ok(());
    for (i, op) in s.ops.iter().enumerate() {
        if i == s.start_at && run.h.jobs.wait("j") == Wait::NotStarted {
            run.h.jobs.start("j", &mut run.h.events).unwrap();
        }
        outcome = run.apply_checked(op);
        if outcome.is_err() {
            break;
        }
    }
    let outcome = outcome
        .and_then(|()| run.finish())
        .and_then(|()| check_events(&run.h));
    match outcome {
        Ok(()) => TestResult::passed(),
        Err(e) => TestResult::error(format!("{e}; events {:?}", run.h.sequence("j"))),
    }
}

#[test]
fn random_verbs_and_steps_respect_qemus_tables() {
    let seed = std::env::var("STRATA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x05ee_d0b5);
    println!("jobs property seed: {seed} (STRATA_SEED={seed})");
    QuickCheck::new()
        .rng(Gen::from_size_and_seed(60, seed))
        .tests(10_000)
        .quickcheck(property as fn(Scenario) -> TestResult);
    let (scenarios, ops) = (
        SCENARIOS.load(Ordering::Relaxed),
        OPS.load(Ordering::Relaxed),
    );
    println!("jobs property: {scenarios} scenarios, {ops} random operations");
    assert!(
        scenarios >= 10_000 && ops > 10 * scenarios,
        "{scenarios} scenarios, {ops} ops"
    );
}

#[test]
fn the_property_catches_a_forbidden_path() {
    // The checker itself must be able to fail.
    let mut h = Harness::new();
    h.events.push(strata_jobs::JobEvent::JobStatusChange {
        id: "j".into(),
        status: JobStatus::Created,
    });
    h.events.push(strata_jobs::JobEvent::JobStatusChange {
        id: "j".into(),
        status: JobStatus::Concluded,
    });
    assert!(check_events(&h).is_err());
}
