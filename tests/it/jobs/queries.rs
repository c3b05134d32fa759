//! The registry: IDs, lookups, `query-jobs` / `query-block-jobs`, and the
//! events' data fields. The QMP in the comments was run against
//! qemu-storage-daemon 10.0.2.

use super::fake::{Fake, Harness, CHUNK};
use strata_jobs::{
    BlockErrorAction, BlockJobInfo, BlockdevOnError, Cancel, Errno, ErrorClass, IoOperation,
    IoStatus, JobEvent, JobInfo, JobSpec, JobStatus, JobType, Lookup, MirrorCopyMode,
};

#[test]
fn id_errors() {
    // qsd: block-stream {job-id:"1bad"} -> "Invalid job ID '1bad'"; a
    // 200-character ID is accepted.
    let mut h = Harness::new();
    for (id, text) in [
        ("1bad", "Invalid job ID '1bad'"),
        ("", "Invalid job ID ''"),
        ("a b", "Invalid job ID 'a b'"),
    ] {
        let err = h
            .jobs
            .create(JobSpec::new(id), Fake::stream(1), &mut h.events)
            .unwrap_err();
        assert_eq!(err.to_string(), text);
    }
    h.jobs
        .create(
            JobSpec::new("a".repeat(200)),
            Fake::stream(1),
            &mut h.events,
        )
        .unwrap();
    h.jobs
        .create(JobSpec::new("j"), Fake::stream(1), &mut h.events)
        .unwrap();
    let err = h
        .jobs
        .create(JobSpec::new("j"), Fake::stream(1), &mut h.events)
        .unwrap_err();
    assert_eq!(err.to_string(), "Job ID 'j' already in use");
    assert_eq!(h.jobs.len(), 2);
    assert_eq!(
        h.events.len(),
        2,
        "only the two created jobs emitted 'created'"
    );
}

#[test]
fn lookup_errors_and_classes() {
    // qsd: block-job-pause {device:nope} -> DeviceNotActive "Block job 'nope' not found";
    //      job-pause {id:nope} -> GenericError "Job not found".
    let mut h = Harness::new();
    let err = h
        .jobs
        .pause(Lookup::BlockJob, "nope", &mut h.ctx, &mut h.events)
        .unwrap_err();
    assert_eq!(
        (err.class(), err.to_string()),
        (
            ErrorClass::DeviceNotActive,
            "Block job 'nope' not found".into()
        )
    );
    let err = h
        .jobs
        .pause(Lookup::Job, "nope", &mut h.ctx, &mut h.events)
        .unwrap_err();
    assert_eq!(
        (err.class(), err.to_string()),
        (ErrorClass::GenericError, "Job not found".into())
    );
    // A non-block job is invisible to block-job-* ...
    // qsd: blockdev-create {job-id:c, options:{driver:file, ...}} (manual
    // dismiss); query-block-jobs -> []; block-job-dismiss {id:c} ->
    // DeviceNotActive "Block job 'c' not found"; job-dismiss {id:c} -> ok.
    // Events: created running waiting pending concluded null, nothing else.
    h.spawn(
        JobSpec::new("c").with_auto_dismiss(false),
        Fake::stream(1).with_type(JobType::Create),
    );
    let err = h
        .jobs
        .cancel(
            Cancel::BlockJob { force: true },
            "c",
            &mut h.ctx,
            &mut h.events,
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "Block job 'c' not found");
    let err = h
        .jobs
        .set_speed("c", 1, &mut h.ctx, &mut h.events)
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::DeviceNotActive);
    // ...and to query-block-jobs, but not to query-jobs.
    assert!(h.jobs.query_block_jobs().is_empty());
    assert_eq!(h.jobs.query_jobs().len(), 1);
    // It only emits JOB_STATUS_CHANGE.
    h.settle_job("c");
    let err = h
        .jobs
        .dismiss(Lookup::BlockJob, "c", &mut h.ctx, &mut h.events)
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::DeviceNotActive);
    h.jobs
        .dismiss(Lookup::Job, "c", &mut h.ctx, &mut h.events)
        .unwrap();
    assert_eq!(
        h.sequence("c"),
        [
            "created",
            "running",
            "waiting",
            "pending",
            "concluded",
            "null"
        ]
    );
}

#[test]
fn change_is_refused_without_driver_support() {
    // qsd: block-job-change {id:j2, type:mirror, copy-mode:write-blocking} on a
    // stream -> "Job type does not support change".
    let mut h = Harness::new();
    h.spawn(JobSpec::new("j"), Fake::stream(2));
    let err = h
        .jobs
        .change(
            "j",
            MirrorCopyMode::WriteBlocking,
            &mut h.ctx,
            &mut h.events,
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "Job type does not support change");
}

#[test]
fn queries_list_newest_first() {
    // qsd: block-stream j1 {speed:1024}; block-stream j2 {speed:1024,
    // auto-finalize:false, auto-dismiss:false}; query-jobs -> [j2, j1];
    // query-block-jobs -> [{device:j2, busy:false, paused:false, status:running,
    // offset:524288, len:67108864, speed:1024, io-status:ok, ready:false,
    // auto-finalize:false, auto-dismiss:false, type:stream}, {device:j1, ...}]
    let mut h = Harness::new();
    for (id, manual) in [("j1", false), ("j2", true)] {
        let spec = JobSpec::new(id)
            .with_auto_finalize(!manual)
            .with_auto_dismiss(!manual);
        h.jobs
            .create(spec, Fake::stream(128), &mut h.events)
            .unwrap();
        h.jobs
            .set_speed(id, 1024, &mut h.ctx, &mut h.events)
            .unwrap();
        h.jobs.start(id, &mut h.events).unwrap();
        h.jobs.step(id, &mut h.ctx, 0, &mut h.events).unwrap();
        h.jobs.step(id, &mut h.ctx, 0, &mut h.events).unwrap();
    }
    let ids: Vec<_> = h.jobs.query_jobs().into_iter().map(|j| j.id).collect();
    assert_eq!(ids, ["j2", "j1"]);
    assert_eq!(
        h.jobs.query_block_jobs()[0],
        BlockJobInfo {
            job_type: JobType::Stream,
            device: "j2".into(),
            len: 128 * CHUNK,
            offset: CHUNK,
            busy: false,
            paused: false,
            speed: 1024,
            io_status: IoStatus::Ok,
            ready: false,
            status: JobStatus::Running,
            auto_finalize: false,
            auto_dismiss: false,
            error: None,
            actively_synced: None,
        }
    );
    // qsd: job-pause j1; query-block-jobs -> j1 {status:paused, paused:true}
    h.jobs
        .pause(Lookup::Job, "j1", &mut h.ctx, &mut h.events)
        .unwrap();
    let j1 = &h.jobs.query_block_jobs()[1];
    assert_eq!(
        (j1.paused, j1.busy, j1.status),
        (true, true, JobStatus::Running),
        "paused before its pause point"
    );
    h.jobs.step("j1", &mut h.ctx, 0, &mut h.events).unwrap();
    let j1 = &h.jobs.query_block_jobs()[1];
    assert_eq!(
        (j1.paused, j1.busy, j1.status),
        (true, false, JobStatus::Paused)
    );

    // qsd: job-cancel j2; query-jobs -> j2 {status:concluded, error:"Operation canceled"}
    h.jobs
        .cancel(Cancel::Job, "j2", &mut h.ctx, &mut h.events)
        .unwrap();
    h.settle_job("j2");
    assert_eq!(
        h.jobs.query_jobs()[0],
        JobInfo {
            id: "j2".into(),
            job_type: JobType::Stream,
            status: JobStatus::Concluded,
            current_progress: CHUNK,
            total_progress: 128 * CHUNK,
            error: Some("Operation canceled".into()),
        }
    );
    assert_eq!(
        h.jobs.query_block_jobs()[0].error.as_deref(),
        Some("Operation canceled")
    );
}

#[test]
fn mirror_query_and_ready_event() {
    // qsd: blockdev-mirror {job-id:m, sync:full} on a 4 MiB image ->
    // BLOCK_JOB_READY {device:m, len:4194304, offset:4194304, speed:0, type:mirror};
    // query-block-jobs -> {status:ready, ready:true, actively-synced:false, ...}
    let mut h = Harness::new();
    h.spawn(
        JobSpec::new("m"),
        Fake::active_commit(8).with_type(JobType::Mirror),
    );
    h.settle_job("m");
    assert!(h.events.contains(&JobEvent::BlockJobReady {
        job_type: JobType::Mirror,
        device: "m".into(),
        len: 8 * CHUNK,
        offset: 8 * CHUNK,
        speed: 0
    }));
    let info = &h.jobs.query_block_jobs()[0];
    assert_eq!(
        (info.status, info.ready, info.paused),
        (JobStatus::Ready, true, false)
    );
    // qsd: job-pause m; query-block-jobs -> {status:standby, paused:true, ready:true}
    h.jobs
        .pause(Lookup::Job, "m", &mut h.ctx, &mut h.events)
        .unwrap();
    h.settle_job("m");
    let info = &h.jobs.query_block_jobs()[0];
    assert_eq!(
        (info.status, info.ready, info.paused),
        (JobStatus::Standby, true, true)
    );
}

#[test]
fn failure_event_data() {
    // golden 030-eio-report: BLOCK_JOB_ERROR {operation:read, action:report};
    // BLOCK_JOB_COMPLETED {type:stream, len:2097152, offset:524288, error:"Input/output error"}
    let mut h = Harness::new();
    h.spawn(
        JobSpec::new("drive0"),
        Fake::stream(4).failing_at(1, Errno::EIO),
    );
    h.settle_job("drive0");
    let data: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.name() != "JOB_STATUS_CHANGE")
        .cloned()
        .collect();
    assert_eq!(
        data,
        [
            JobEvent::BlockJobError {
                device: "drive0".into(),
                operation: IoOperation::Read,
                action: BlockErrorAction::Report
            },
            JobEvent::BlockJobCompleted {
                job_type: JobType::Stream,
                device: "drive0".into(),
                len: 4 * CHUNK,
                offset: CHUNK,
                speed: 0,
                error: Some("Input/output error".into())
            },
        ]
    );
}

#[test]
fn ignore_reaches_the_end_and_still_fails() {
    // golden 030-eio-ignore: BLOCK_JOB_ERROR {action:ignore}; COMPLETED with
    // offset = len = 2 MiB and error "Input/output error".
    let mut h = Harness::new();
    h.spawn(
        JobSpec::new("j").with_on_error(BlockdevOnError::Ignore),
        Fake::stream(4).failing_at(1, Errno::EIO),
    );
    h.settle_job("j");
    assert!(h.events.contains(&JobEvent::BlockJobError {
        device: "j".into(),
        operation: IoOperation::Read,
        action: BlockErrorAction::Ignore
    }));
    assert!(h.events.contains(&JobEvent::BlockJobCompleted {
        job_type: JobType::Stream,
        device: "j".into(),
        len: 4 * CHUNK,
        offset: 4 * CHUNK,
        speed: 0,
        error: Some("Input/output error".into())
    }));
}

#[test]
fn stop_is_a_user_pause_and_resume_resets_io_status() {
    // golden 030-eio-stop: query-block-jobs while stopped -> {status:paused,
    // offset:524288, io-status:failed}; block-job-resume; COMPLETED offset = len.
    let mut h = Harness::new();
    h.spawn(
        JobSpec::new("j").with_on_error(BlockdevOnError::Stop),
        Fake::stream(4).failing_at(1, Errno::EIO),
    );
    h.settle_job("j");
    let core = h.jobs.get("j").unwrap();
    assert_eq!(
        (core.status(), core.user_paused(), core.pause_count()),
        (JobStatus::Paused, true, 1)
    );
    let info = &h.jobs.query_block_jobs()[0];
    assert_eq!((info.offset, info.io_status), (CHUNK, IoStatus::Failed));
    // A second user pause is refused like any other.
    let err = h
        .jobs
        .pause(Lookup::BlockJob, "j", &mut h.ctx, &mut h.events)
        .unwrap_err();
    assert_eq!(err.to_string(), "Job is already paused");
    h.jobs
        .resume(Lookup::BlockJob, "j", &mut h.ctx, &mut h.events)
        .unwrap();
    assert_eq!(h.jobs.get("j").unwrap().io_status(), IoStatus::Ok);
    h.settle_job("j");
    assert!(h.events.contains(&JobEvent::BlockJobCompleted {
        job_type: JobType::Stream,
        device: "j".into(),
        len: 4 * CHUNK,
        offset: 4 * CHUNK,
        speed: 0,
        error: None
    }));
}

#[test]
fn pending_event_data() {
    // qsd: block-stream {job-id:j1, auto-finalize:false} -> BLOCK_JOB_PENDING {type:stream, id:j1}
    let mut h = Harness::new();
    h.spawn(
        JobSpec::new("j1").with_auto_finalize(false),
        Fake::stream(1),
    );
    h.settle_job("j1");
    assert!(h.events.contains(&JobEvent::BlockJobPending {
        job_type: JobType::Stream,
        id: "j1".into()
    }));
    assert_eq!(
        h.ctx
            .log
            .iter()
            .filter(|l| l.starts_with("prepare"))
            .count(),
        0,
        "prepare waits for job-finalize"
    );
}

#[test]
fn internal_pauses_count() {
    // Drains pause jobs too (JOB_STATUS_CHANGE paused/running in golden
    // 030-parallel-stream); a user resume cannot undo them.
    let mut h = Harness::new();
    h.spawn(JobSpec::new("j"), Fake::stream(4));
    h.jobs.step("j", &mut h.ctx, 0, &mut h.events).unwrap();
    h.jobs.pause_internal("j").unwrap();
    h.jobs
        .pause(Lookup::Job, "j", &mut h.ctx, &mut h.events)
        .unwrap();
    h.settle_job("j");
    assert_eq!(h.status("j"), Some(JobStatus::Paused));
    h.jobs
        .resume(Lookup::Job, "j", &mut h.ctx, &mut h.events)
        .unwrap();
    assert_eq!(h.jobs.get("j").unwrap().pause_count(), 1);
    assert_eq!(
        h.jobs.wait("j"),
        strata_jobs::Wait::WaitVerb,
        "still drained"
    );
    h.jobs.resume_internal("j").unwrap();
    assert_eq!(
        h.jobs.resume_internal("j").unwrap_err().to_string(),
        "Can't resume a job that was not paused"
    );
    h.settle_job("j");
    assert_eq!(
        h.sequence("j"),
        [
            "created",
            "running",
            "paused",
            "running",
            "waiting",
            "pending",
            "BLOCK_JOB_COMPLETED",
            "concluded",
            "null"
        ]
    );
}

#[test]
fn cancel_before_start_emits_no_block_event() {
    let mut h = Harness::new();
    h.jobs
        .create(JobSpec::new("j"), Fake::stream(2), &mut h.events)
        .unwrap();
    h.jobs
        .cancel(Cancel::Job, "j", &mut h.ctx, &mut h.events)
        .unwrap();
    h.settle_job("j");
    assert_eq!(
        h.sequence("j"),
        ["created", "aborting", "concluded", "null"]
    );
    assert_eq!(h.ctx.log, ["abort j", "clean j", "free j"]);
}

#[test]
fn a_drain_waits_for_a_sleeping_job_to_pause() {
    // golden 030-parallel-stream: jobs sleeping between chunks show
    // paused/running pairs when other jobs' setup drains their nodes.
    let mut h = Harness::new();
    h.jobs
        .create(JobSpec::new("j"), Fake::stream(4), &mut h.events)
        .unwrap();
    h.jobs
        .set_speed("j", 1024, &mut h.ctx, &mut h.events)
        .unwrap();
    h.jobs.start("j", &mut h.events).unwrap();
    h.jobs.step("j", &mut h.ctx, 0, &mut h.events).unwrap();
    h.jobs.step("j", &mut h.ctx, 0, &mut h.events).unwrap();
    assert!(!h.jobs.drained_poll("j"), "sleeping: nothing to wait for");
    assert_eq!(h.jobs.runnable_at(514_007_843_136).count(), 0);
    assert_eq!(
        h.jobs.runnable_at(514_007_843_137).collect::<Vec<_>>(),
        ["j"]
    );
    h.jobs.pause_internal("j").unwrap();
    assert_eq!(
        h.jobs.runnable_at(0).collect::<Vec<_>>(),
        ["j"],
        "the pause kicked it"
    );
    let mut steps = 0;
    while h.jobs.drained_poll("j") {
        h.jobs.step("j", &mut h.ctx, 1_000, &mut h.events).unwrap();
        steps += 1;
    }
    assert_eq!((steps, h.status("j")), (1, Some(JobStatus::Paused)));
    h.jobs.resume_internal("j").unwrap();
    // Back to running, then asleep for the rest of its delay.
    h.jobs.step("j", &mut h.ctx, 1_000, &mut h.events).unwrap();
    assert_eq!(
        h.jobs.wait("j"),
        strata_jobs::Wait::SleepUntil(514_007_843_137)
    );
    assert_eq!(h.sequence("j"), ["created", "running", "paused", "running"]);
}
