//! Rate limiting as `include/qemu/ratelimit.h` and blockjob.c's
//! `block_job_ratelimit_sleep` / `_processed_bytes` do it.

use super::fake::{Fake, Harness, CHUNK};
use strata_jobs::{
    Cancel, ErrorKind, JobEvent, JobSpec, JobType, RateLimit, Wait, BLOCK_JOB_SLICE_TIME,
};

/// Creates "j" at `speed`, starts it, and runs it until its first chunk
/// is copied: it then sleeps for what that chunk cost.
fn first_chunk_copied(speed: i64) -> Harness {
    let mut h = Harness::new();
    h.jobs
        .create(JobSpec::new("j"), Fake::stream(4), &mut h.events)
        .unwrap();
    h.jobs
        .set_speed("j", speed, &mut h.ctx, &mut h.events)
        .unwrap();
    h.jobs.start("j", &mut h.events).unwrap();
    // The loop starts with a sleep; with nothing charged yet it is 0 ns but
    // it still yields.
    assert_eq!(
        h.jobs.step("j", &mut h.ctx, 0, &mut h.events).unwrap(),
        Wait::SleepUntil(0)
    );
    h.jobs.step("j", &mut h.ctx, 0, &mut h.events).unwrap();
    assert_eq!(h.jobs.get("j").unwrap().progress(), (CHUNK, 4 * CHUNK));
    h
}

#[test]
fn quota_per_slice() {
    for (speed, quota) in [
        (0, 0),
        (1, 1),
        (9, 1),
        (10, 1),
        (1024, 102),
        (1 << 20, 104_857),
        (8 << 20, 838_860),
    ] {
        let mut limit = RateLimit::default();
        limit.set_speed(speed, BLOCK_JOB_SLICE_TIME);
        assert_eq!(limit.slice_quota(), quota, "speed {speed}");
    }
}

#[test]
fn unlimited_never_delays() {
    let mut limit = RateLimit::default();
    limit.set_speed(0, BLOCK_JOB_SLICE_TIME);
    assert_eq!(limit.calculate_delay(u64::MAX / 2, 5), 0);
    assert_eq!(limit.calculate_delay(0, 5), 0);
}

#[test]
fn slices_reset_only_after_they_end() {
    let mut limit = RateLimit::default();
    limit.set_speed(1000, BLOCK_JOB_SLICE_TIME); // quota 100 per slice
    assert_eq!(limit.calculate_delay(50, 1_000), 0);
    // 150 of 100 in the slice [1000, 100_001_000): 1.5 slices from its start.
    assert_eq!(limit.calculate_delay(100, 2_000), 150_001_000 - 2_000);
    // At the (stretched) end the slice is still current...
    assert_eq!(limit.calculate_delay(0, 150_001_000), 0);
    // ...after it, accounting starts afresh.
    assert_eq!(limit.calculate_delay(99, 150_001_001), 0);
    assert_eq!(limit.calculate_delay(1, 150_001_002), 100_000_000 - 1);
}

#[test]
fn speed_1024_sleeps_about_512_seconds_after_the_first_chunk() {
    // 030 / qsd probe: block-stream {speed:1024} copies one 512 KiB chunk and
    // then sleeps (the job is cancelled at offset 524288).
    let h = first_chunk_copied(1024);
    assert_eq!(h.jobs.wait("j"), Wait::SleepUntil(514_007_843_137));
}

#[test]
fn stepping_before_the_timer_is_a_caller_bug() {
    let mut h = first_chunk_copied(1024);
    let err = h
        .jobs
        .step("j", &mut h.ctx, 1_000, &mut h.events)
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::NotRunnable(_)), "{err}");
}

#[test]
fn higher_speed_kicks_a_sleeping_job() {
    let mut h = first_chunk_copied(1024);
    h.jobs
        .set_speed("j", 8 << 20, &mut h.ctx, &mut h.events)
        .unwrap();
    assert_eq!(h.jobs.wait("j"), Wait::Runnable);
    // Re-evaluated at 1 s: 512 KiB is under the new quota, so a 0 ns sleep...
    assert_eq!(
        h.jobs
            .step("j", &mut h.ctx, 1_000_000_000, &mut h.events)
            .unwrap(),
        Wait::SleepUntil(1_000_000_000)
    );
    // ...after which the second chunk is copied.
    h.jobs
        .step("j", &mut h.ctx, 1_000_000_000, &mut h.events)
        .unwrap();
    assert_eq!(h.jobs.get("j").unwrap().progress().0, 2 * CHUNK);
}

#[test]
fn zero_speed_kicks_and_lower_speed_does_not() {
    let mut h = first_chunk_copied(1024);
    h.jobs
        .set_speed("j", 1000, &mut h.ctx, &mut h.events)
        .unwrap();
    assert!(matches!(h.jobs.wait("j"), Wait::SleepUntil(_)));
    h.jobs
        .set_speed("j", 1000, &mut h.ctx, &mut h.events)
        .unwrap();
    assert!(matches!(h.jobs.wait("j"), Wait::SleepUntil(_)));
    h.jobs.set_speed("j", 0, &mut h.ctx, &mut h.events).unwrap();
    assert_eq!(h.jobs.wait("j"), Wait::Runnable);
    assert_eq!(h.jobs.get("j").unwrap().speed(), 0);
}

#[test]
fn negative_speed_is_refused() {
    // qsd: block-job-set-speed {device:j2, speed:-1}
    let mut h = first_chunk_copied(1024);
    let err = h
        .jobs
        .set_speed("j", -1, &mut h.ctx, &mut h.events)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Parameter 'speed' expects a non-negative value"
    );
    assert_eq!(h.jobs.get("j").unwrap().speed(), 1024);
}

#[test]
fn negative_speed_at_creation_is_an_early_failure() {
    // golden 030-set-speed-invalid: block-stream {speed:-1} -> "created", "null".
    let mut h = Harness::new();
    h.jobs
        .create(JobSpec::new("j"), Fake::stream(4), &mut h.events)
        .unwrap();
    let err = h
        .jobs
        .set_speed("j", -1, &mut h.ctx, &mut h.events)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Parameter 'speed' expects a non-negative value"
    );
    h.jobs.early_fail("j", &mut h.ctx, &mut h.events).unwrap();
    assert_eq!(h.sequence("j"), ["created", "null"]);
    assert_eq!(h.ctx.log, ["free j"]);
    assert!(h.jobs.is_empty());
}

#[test]
fn cancel_wakes_a_throttled_job() {
    // qsd: block-stream {job-id:j1, speed:1024} ...; job-cancel j1 ->
    // BLOCK_JOB_CANCELLED {len:67108864, offset:524288, speed:1024, type:stream}
    let mut h = first_chunk_copied(1024);
    h.jobs
        .cancel(Cancel::Job, "j", &mut h.ctx, &mut h.events)
        .unwrap();
    assert_eq!(h.jobs.wait("j"), Wait::Runnable);
    h.settle_job("j");
    assert_eq!(h.now, 0, "nothing waited for the timer");
    let cancelled = h
        .events
        .iter()
        .find(|e| e.name() == "BLOCK_JOB_CANCELLED")
        .unwrap();
    assert_eq!(
        cancelled,
        &JobEvent::BlockJobCancelled {
            job_type: JobType::Stream,
            device: "j".into(),
            len: 4 * CHUNK,
            offset: CHUNK,
            speed: 1024
        }
    );
}

#[test]
fn every_iteration_yields_even_unthrottled() {
    let mut h = Harness::new();
    h.spawn(JobSpec::new("j"), Fake::stream(4));
    let mut steps = 0;
    while h.jobs.wait("j") != Wait::Done {
        h.jobs.step("j", &mut h.ctx, 0, &mut h.events).unwrap();
        steps += 1;
    }
    // The first step ends in the loop's first (0 ns) sleep; each later step
    // wakes, copies a chunk and sleeps again (the last one returns); then
    // exit, prepare, commit, clean and the conclusion are one step each.
    assert_eq!(steps, 1 + 4 + 5);
}
