//! QEMU's observed event sequences, replayed on the fake driver.
//!
//! Each row names where the sequence was observed: a golden recording of
//! the conformance harness (`job_event_sequences` in
//! /work/shared/conformance/golden/<name>.json), or a qemu-storage-daemon
//! 10.0.2 probe whose QMP is quoted in the row's `source`.

use super::fake::{Fake, Harness};
use strata_jobs::{BlockdevOnError, Cancel, Errno, IoStatus, JobSpec, JobStatus, Lookup, Wait};

/// A QMP verb on job "j".
#[derive(Clone, Copy, Debug)]
enum Call {
    JobPause,
    JobResume,
    BlockPause,
    BlockResume,
    JobCancel,
    BlockCancel { force: bool },
    Complete,
    Finalize,
    Dismiss,
    SetSpeed(i64),
}

#[derive(Clone, Copy, Debug)]
enum Act {
    /// `job_start` (done before the first act unless a case has this act).
    Start,
    /// Step the job (jumping the clock to its timers) until it waits for a verb.
    Settle,
    /// Step exactly this many times.
    Steps(u32),
    /// A verb that must succeed.
    Ok(Call),
    /// A verb that must fail with this text.
    Refused(Call, &'static str),
    /// The job's status now.
    Status(JobStatus),
    /// The job's io-status now.
    Io(IoStatus),
}

struct Case {
    name: &'static str,
    source: &'static str,
    spec: JobSpec,
    fake: Fake,
    acts: Vec<Act>,
    expect: Vec<&'static str>,
    /// The driver callbacks in order (run steps left out).
    callbacks: Vec<&'static str>,
}

fn spec() -> JobSpec {
    JobSpec::new("j")
}

fn cases() -> Vec<Case> {
    use Act::*;
    use Call::*;
    const SUCCESS_TAIL: [&str; 5] = [
        "waiting",
        "pending",
        "BLOCK_JOB_COMPLETED",
        "concluded",
        "null",
    ];
    let success = |head: &[&'static str]| [head, &SUCCESS_TAIL[..]].concat();
    let committed = vec!["prepare j", "commit j", "clean j", "free j"];
    let aborted = vec!["abort j", "clean j", "free j"];
    vec![
        Case {
            name: "success, auto-finalize, auto-dismiss",
            source: "golden 030-overlapping-1 stream-node4",
            spec: spec(),
            fake: Fake::stream(4),
            acts: vec![Settle],
            expect: success(&["created", "running"]),
            callbacks: committed.clone(),
        },
        Case {
            name: "manual finalize and dismiss",
            source: "qsd: block-stream {device:n1, job-id:j1, auto-finalize:false, auto-dismiss:false}; \
                     job-dismiss -> refused in 'pending'; block-job-finalize; block-job-dismiss",
            spec: spec().with_auto_finalize(false).with_auto_dismiss(false),
            fake: Fake::stream(4),
            acts: vec![
                Settle,
                Status(JobStatus::Pending),
                Refused(Dismiss, "Job 'j' in state 'pending' cannot accept command verb 'dismiss'"),
                Ok(Finalize),
                Settle,
                Status(JobStatus::Concluded),
                Refused(JobCancel, "Job 'j' in state 'concluded' cannot accept command verb 'cancel'"),
                Ok(Dismiss),
            ],
            expect: vec![
                "created",
                "running",
                "waiting",
                "pending",
                "BLOCK_JOB_PENDING",
                "BLOCK_JOB_COMPLETED",
                "concluded",
                "null",
            ],
            callbacks: committed.clone(),
        },
        Case {
            name: "cancel while pending (manual finalize)",
            source: "qsd: block-stream {auto-finalize:false, auto-dismiss:false}; job-cancel; job-dismiss",
            spec: spec().with_auto_finalize(false).with_auto_dismiss(false),
            fake: Fake::stream(4),
            acts: vec![Settle, Ok(JobCancel), Settle, Status(JobStatus::Concluded), Ok(Dismiss)],
            expect: vec![
                "created",
                "running",
                "waiting",
                "pending",
                "BLOCK_JOB_PENDING",
                "aborting",
                "BLOCK_JOB_CANCELLED",
                "concluded",
                "null",
            ],
            callbacks: aborted.clone(),
        },
        Case {
            name: "on-error report",
            source: "golden 030-eio-report",
            spec: spec(),
            fake: Fake::stream(4).failing_at(1, Errno::EIO),
            acts: vec![Settle],
            expect: vec!["created", "running", "BLOCK_JOB_ERROR", "aborting", "BLOCK_JOB_COMPLETED", "concluded", "null"],
            callbacks: aborted.clone(),
        },
        Case {
            name: "on-error ignore: carries on, still fails",
            source: "golden 030-eio-ignore",
            spec: spec().with_on_error(BlockdevOnError::Ignore),
            fake: Fake::stream(4).failing_at(1, Errno::EIO),
            acts: vec![Settle],
            expect: vec!["created", "running", "BLOCK_JOB_ERROR", "aborting", "BLOCK_JOB_COMPLETED", "concluded", "null"],
            callbacks: aborted.clone(),
        },
        Case {
            name: "on-error stop, resume",
            source: "golden 030-eio-stop",
            spec: spec().with_on_error(BlockdevOnError::Stop),
            fake: Fake::stream(4).failing_at(1, Errno::EIO),
            acts: vec![Settle, Status(JobStatus::Paused), Io(IoStatus::Failed), Ok(BlockResume), Io(IoStatus::Ok), Settle],
            expect: success(&["created", "running", "BLOCK_JOB_ERROR", "paused", "running"]),
            callbacks: committed.clone(),
        },
        Case {
            name: "on-error enospc with EIO reports",
            source: "030 TestEIO.test_enospc (same sequence as golden 030-eio-report)",
            spec: spec().with_on_error(BlockdevOnError::Enospc),
            fake: Fake::stream(4).failing_at(1, Errno::EIO),
            acts: vec![Settle],
            expect: vec!["created", "running", "BLOCK_JOB_ERROR", "aborting", "BLOCK_JOB_COMPLETED", "concluded", "null"],
            callbacks: aborted.clone(),
        },
        Case {
            name: "on-error enospc with ENOSPC stops",
            source: "golden 030-enospc-enospc",
            spec: spec().with_on_error(BlockdevOnError::Enospc),
            fake: Fake::stream(4).failing_at(1, Errno::ENOSPC),
            acts: vec![Settle, Status(JobStatus::Paused), Io(IoStatus::Nospace), Ok(JobResume), Settle],
            expect: success(&["created", "running", "BLOCK_JOB_ERROR", "paused", "running"]),
            callbacks: committed.clone(),
        },
        Case {
            name: "on-error auto with ENOSPC stops",
            source: "blockjob.c block_job_error_action (auto = enospc)",
            spec: spec().with_on_error(BlockdevOnError::Auto),
            fake: Fake::stream(2).failing_at(0, Errno::ENOSPC),
            acts: vec![Settle, Status(JobStatus::Paused), Io(IoStatus::Nospace), Ok(JobResume), Settle],
            expect: success(&["created", "running", "BLOCK_JOB_ERROR", "paused", "running"]),
            callbacks: committed.clone(),
        },
        Case {
            name: "user pause and resume",
            source: "golden 030-single-stream-pause; qsd: job-pause twice -> 'Job is already paused'",
            spec: spec(),
            fake: Fake::stream(4),
            acts: vec![
                Steps(2),
                Ok(BlockPause),
                Settle,
                Status(JobStatus::Paused),
                Refused(BlockPause, "Job is already paused"),
                Ok(BlockResume),
                Refused(JobResume, "Can't resume a job that was not paused"),
                Settle,
            ],
            expect: success(&["created", "running", "paused", "running"]),
            callbacks: committed.clone(),
        },
        Case {
            name: "block-job-cancel of a user-paused job needs force",
            source: "qsd: job-pause j1; block-job-cancel j1 -> 'The block job for device 'j1' is currently paused'",
            spec: spec(),
            fake: Fake::stream(4),
            acts: vec![
                Steps(2),
                Ok(JobPause),
                Settle,
                Refused(BlockCancel { force: false }, "The block job for device 'j' is currently paused"),
                Ok(BlockCancel { force: true }),
                Settle,
            ],
            expect: vec!["created", "running", "paused", "running", "aborting", "BLOCK_JOB_CANCELLED", "concluded", "null"],
            callbacks: aborted.clone(),
        },
        Case {
            name: "soft cancel of a stream is a cancel",
            source: "golden 030-stream-stop",
            spec: spec(),
            fake: Fake::stream(4),
            acts: vec![Steps(2), Ok(BlockCancel { force: false }), Settle],
            expect: vec!["created", "running", "aborting", "BLOCK_JOB_CANCELLED", "concluded", "null"],
            callbacks: aborted.clone(),
        },
        Case {
            name: "mirror: ready, standby, complete in standby, resume",
            source: "qsd: blockdev-mirror {job-id:m, sync:full}; job-pause m; job-complete m (accepted in standby); \
                     job-resume m",
            spec: spec(),
            fake: Fake::active_commit(2),
            acts: vec![
                Settle,
                Status(JobStatus::Ready),
                Ok(JobPause),
                Settle,
                Status(JobStatus::Standby),
                Ok(Complete),
                Settle,
                Status(JobStatus::Standby),
                Ok(JobResume),
                Settle,
            ],
            expect: success(&["created", "running", "ready", "BLOCK_JOB_READY", "standby", "ready"]),
            callbacks: committed.clone(),
        },
        Case {
            name: "mirror: complete",
            source: "golden 030-overlapping-3 commit-drive0",
            spec: spec(),
            fake: Fake::active_commit(2),
            acts: vec![
                Settle,
                Refused(Finalize, "Job 'j' in state 'ready' cannot accept command verb 'finalize'"),
                Ok(Complete),
                Settle,
            ],
            expect: success(&["created", "running", "ready", "BLOCK_JOB_READY"]),
            callbacks: committed.clone(),
        },
        Case {
            name: "mirror: force cancel in ready",
            source: "qsd: blockdev-mirror {job-id:m3}; block-job-cancel {device:m3, force:true}",
            spec: spec(),
            fake: Fake::active_commit(2),
            acts: vec![Settle, Ok(BlockCancel { force: true }), Settle],
            expect: vec![
                "created",
                "running",
                "ready",
                "BLOCK_JOB_READY",
                "aborting",
                "BLOCK_JOB_CANCELLED",
                "concluded",
                "null",
            ],
            callbacks: aborted.clone(),
        },
        Case {
            name: "mirror: soft cancel in ready completes without pivot",
            source: "qsd: blockdev-mirror {job-id:m2}; block-job-cancel {device:m2}",
            spec: spec(),
            fake: Fake::active_commit(2),
            acts: vec![
                Settle,
                Ok(BlockCancel { force: false }),
                Refused(Complete, "The active block job 'j' cannot be completed"),
                Settle,
            ],
            expect: success(&["created", "running", "ready", "BLOCK_JOB_READY"]),
            callbacks: committed.clone(),
        },
        Case {
            name: "mirror: force cancel in standby",
            source: "qsd: blockdev-mirror {job-id:m4, auto-finalize:false}; job-pause m4; \
                     block-job-cancel {device:m4, force:true}",
            spec: spec().with_auto_finalize(false),
            fake: Fake::active_commit(2),
            acts: vec![Settle, Ok(JobPause), Settle, Ok(BlockCancel { force: true }), Settle],
            expect: vec![
                "created",
                "running",
                "ready",
                "BLOCK_JOB_READY",
                "standby",
                "ready",
                "aborting",
                "BLOCK_JOB_CANCELLED",
                "concluded",
                "null",
            ],
            callbacks: aborted.clone(),
        },
        Case {
            name: "mirror: soft cancel before ready is forced",
            source: "qsd: blockdev-mirror {job-id:m5, speed:1, auto-finalize:false}; block-job-cancel m5",
            spec: spec().with_auto_finalize(false),
            fake: Fake::active_commit(4),
            acts: vec![Ok(SetSpeed(1)), Steps(2), Ok(BlockCancel { force: false }), Settle],
            expect: vec!["created", "running", "aborting", "BLOCK_JOB_CANCELLED", "concluded", "null"],
            callbacks: aborted.clone(),
        },
        Case {
            name: "mirror: soft cancel after run() returned is ignored",
            source: "job.c job_cancel_async_locked: soft cancels are ignored once deferred to the main loop",
            spec: spec(),
            fake: Fake::active_commit(2),
            acts: vec![Settle, Ok(Complete), Steps(1), Ok(BlockCancel { force: false }), Settle],
            expect: success(&["created", "running", "ready", "BLOCK_JOB_READY"]),
            callbacks: committed.clone(),
        },
        Case {
            name: "mirror: force cancel after run() returned aborts",
            source: "job.c job_cancel_locked -> job_completed_txn_abort waits for job_exit, which sees force_cancel",
            spec: spec(),
            fake: Fake::active_commit(2),
            acts: vec![Settle, Ok(Complete), Steps(1), Ok(JobCancel), Status(JobStatus::Ready), Settle],
            expect: vec![
                "created",
                "running",
                "ready",
                "BLOCK_JOB_READY",
                "aborting",
                "BLOCK_JOB_CANCELLED",
                "concluded",
                "null",
            ],
            callbacks: aborted.clone(),
        },
        Case {
            name: "prepare fails",
            source: "job.c job_prepare_locked: a failing .prepare aborts the job (strerror text)",
            spec: spec(),
            fake: Fake::stream(2).prepare_failing(Errno::EPERM),
            acts: vec![Settle],
            expect: vec![
                "created",
                "running",
                "waiting",
                "pending",
                "aborting",
                "BLOCK_JOB_COMPLETED",
                "concluded",
                "null",
            ],
            callbacks: vec!["prepare j", "abort j", "clean j", "free j"],
        },
        Case {
            name: "pause before start pauses at the entry pause point",
            source: "job.c job_co_entry: a pause point before run()",
            spec: spec(),
            fake: Fake::stream(1),
            acts: vec![Ok(JobPause), Start, Settle, Status(JobStatus::Paused), Ok(JobResume), Settle],
            expect: success(&["created", "running", "paused", "running"]),
            callbacks: committed.clone(),
        },
    ]
}

fn call(h: &mut Harness, call: Call) -> strata_jobs::Result<()> {
    let (jobs, ctx, ev) = (&mut h.jobs, &mut h.ctx, &mut h.events);
    match call {
        Call::JobPause => jobs.pause(Lookup::Job, "j", ctx, ev),
        Call::JobResume => jobs.resume(Lookup::Job, "j", ctx, ev),
        Call::BlockPause => jobs.pause(Lookup::BlockJob, "j", ctx, ev),
        Call::BlockResume => jobs.resume(Lookup::BlockJob, "j", ctx, ev),
        Call::JobCancel => jobs.cancel(Cancel::Job, "j", ctx, ev),
        Call::BlockCancel { force } => jobs.cancel(Cancel::BlockJob { force }, "j", ctx, ev),
        Call::Complete => jobs.complete(Lookup::Job, "j", ctx, ev),
        Call::Finalize => jobs.finalize(Lookup::Job, "j", ctx, ev),
        Call::Dismiss => jobs.dismiss(Lookup::Job, "j", ctx, ev),
        Call::SetSpeed(speed) => jobs.set_speed("j", speed, ctx, ev),
    }
}

fn run_case(case: &Case) -> Harness {
    let mut h = Harness::new();
    h.jobs
        .create(case.spec.clone(), case.fake.clone(), &mut h.events)
        .unwrap();
    if !case.acts.iter().any(|a| matches!(a, Act::Start)) {
        h.jobs.start("j", &mut h.events).unwrap();
    }
    for act in &case.acts {
        match *act {
            Act::Start => h.jobs.start("j", &mut h.events).unwrap(),
            Act::Settle => {
                h.settle_job("j");
            }
            Act::Steps(n) => {
                for _ in 0..n {
                    if let Wait::SleepUntil(t) = h.jobs.wait("j") {
                        h.now = t;
                    }
                    h.jobs.step("j", &mut h.ctx, h.now, &mut h.events).unwrap();
                }
            }
            Act::Ok(c) => {
                call(&mut h, c).unwrap_or_else(|e| panic!("{}: {c:?} failed: {e}", case.name))
            }
            Act::Refused(c, text) => {
                let before = h.jobs.get("j").cloned();
                let events = h.events.len();
                let err = call(&mut h, c).expect_err(case.name);
                assert_eq!(err.to_string(), text, "{}: {c:?}", case.name);
                assert_eq!(
                    h.jobs.get("j").cloned(),
                    before,
                    "{}: a refused verb changed the job",
                    case.name
                );
                assert_eq!(
                    h.events.len(),
                    events,
                    "{}: a refused verb emitted events",
                    case.name
                );
            }
            Act::Status(s) => assert_eq!(h.status("j"), Some(s), "{}", case.name),
            Act::Io(io) => assert_eq!(h.jobs.get("j").unwrap().io_status(), io, "{}", case.name),
        }
    }
    h
}

#[test]
fn qemu_event_sequences() {
    for case in cases() {
        let h = run_case(&case);
        assert_eq!(
            h.sequence("j"),
            case.expect,
            "{} ({})",
            case.name,
            case.source
        );
        assert_eq!(h.jobs.wait("j"), Wait::Done, "{}", case.name);
        let callbacks: Vec<_> = h
            .ctx
            .log
            .iter()
            .filter(|l| !l.starts_with("run "))
            .map(String::as_str)
            .collect();
        assert_eq!(callbacks, case.callbacks, "{}", case.name);
    }
}
