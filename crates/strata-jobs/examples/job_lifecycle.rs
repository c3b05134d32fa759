//! A job's whole life in QEMU's job state machine, driven by hand: a fake
//! copy driver that moves eight 64 KiB chunks from one buffer to another,
//! rate-limited to 1 MiB/s, created with `auto-finalize=false` and
//! `auto-dismiss=false`, paused and resumed by the user, finalized and
//! dismissed. Every event is printed with the virtual time it happened at
//! and QEMU's event data.
//!
//! ```text
//! cargo run -p strata-jobs --example job_lifecycle
//! ```

use strata_jobs::{
    JobCtl, JobDriver, JobEvent, JobSpec, JobType, Jobs, Lookup, Result, RunStep, Wait,
};

const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 8;

/// What the driver works on: a source and a destination buffer.
struct Disks {
    source: Vec<u8>,
    target: Vec<u8>,
}

/// Copies the source into the target chunk by chunk, sleeping for the rate
/// limit before each chunk, as `stream_run` does.
struct CopyDriver {
    next_chunk: Option<usize>,
}

impl JobDriver<Disks> for CopyDriver {
    fn job_type(&self) -> JobType {
        JobType::Backup
    }

    fn run_step(&mut self, job: &mut JobCtl<'_>, disks: &mut Disks) -> RunStep {
        let Some(chunk) = self.next_chunk else {
            job.progress_set_remaining((CHUNK * CHUNKS) as u64);
            self.next_chunk = Some(0);
            return RunStep::RatelimitSleep;
        };
        if job.is_cancelled() || chunk == CHUNKS {
            return RunStep::Finished(Ok(()));
        }
        let range = chunk * CHUNK..(chunk + 1) * CHUNK;
        disks.target[range.clone()].copy_from_slice(&disks.source[range]);
        job.progress_update(CHUNK as u64);
        job.ratelimit_processed_bytes(CHUNK as u64);
        self.next_chunk = Some(chunk + 1);
        RunStep::RatelimitSleep
    }
}

/// The main loop's side: who steps when, at which virtual time.
struct MainLoop {
    jobs: Jobs<Disks, CopyDriver>,
    disks: Disks,
    now_ns: u64,
    events: Vec<JobEvent>,
    printed: usize,
}

impl MainLoop {
    /// Steps `id` until it waits for something other than time: a verb, or
    /// the end. Sleeping jobs wake when the clock jumps to their timer.
    fn run(&mut self, id: &str) -> Result<Wait> {
        loop {
            match self.jobs.wait(id) {
                Wait::Runnable => {}
                Wait::SleepUntil(t) => self.now_ns = self.now_ns.max(t),
                other => return Ok(other),
            }
            self.jobs
                .step(id, &mut self.disks, self.now_ns, &mut self.events)?;
            self.print_new_events();
        }
    }

    /// Steps `id` once, at the current time.
    fn step(&mut self, id: &str) -> Result<Wait> {
        let wait = self
            .jobs
            .step(id, &mut self.disks, self.now_ns, &mut self.events)?;
        self.print_new_events();
        Ok(wait)
    }

    fn print_new_events(&mut self) {
        for event in &self.events[self.printed..] {
            // Plain data: the monitor gives events their QMP shape.
            println!("  {:>6.3}s  {event:?}", self.now_ns as f64 / 1e9);
        }
        self.printed = self.events.len();
    }

    fn verb(&mut self, name: &str, verb: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        println!("-> {name}");
        verb(self)?;
        self.print_new_events();
        Ok(())
    }
}

fn main() -> Result<()> {
    let source: Vec<u8> = (0..CHUNK * CHUNKS).map(|i| (i / CHUNK) as u8 + 1).collect();
    let mut main_loop = MainLoop {
        jobs: Jobs::new(),
        disks: Disks {
            target: vec![0; source.len()],
            source,
        },
        now_ns: 0,
        events: Vec::new(),
        printed: 0,
    };
    let m = &mut main_loop;

    m.verb(
        "create job0 (auto-finalize=false, auto-dismiss=false), set-speed 1 MiB/s, start",
        |m| {
            let spec = JobSpec::new("job0")
                .with_auto_finalize(false)
                .with_auto_dismiss(false);
            m.jobs
                .create(spec, CopyDriver { next_chunk: None }, &mut m.events)?;
            m.jobs
                .set_speed("job0", 1 << 20, &mut m.disks, &mut m.events)?;
            m.jobs.start("job0", &mut m.events)
        },
    )?;
    for _ in 0..4 {
        if let Wait::SleepUntil(t) = m.step("job0")? {
            m.now_ns = t;
        }
    }
    let (done, total) = m.jobs.get("job0").expect("job0 exists").progress();
    println!("   progress {done}/{total} bytes");

    m.verb("job-pause job0", |m| {
        m.jobs
            .pause(Lookup::Job, "job0", &mut m.disks, &mut m.events)
    })?;
    println!("   waits for: {:?}", m.run("job0")?);
    let err = m
        .jobs
        .finalize(Lookup::Job, "job0", &mut m.disks, &mut m.events)
        .unwrap_err();
    println!("-> job-finalize job0 now: {err}");
    m.verb("job-resume job0", |m| {
        m.jobs
            .resume(Lookup::Job, "job0", &mut m.disks, &mut m.events)
    })?;
    println!("   waits for: {:?}", m.run("job0")?);

    println!("-> query-jobs: {:?}", m.jobs.query_jobs());
    m.verb("job-finalize job0", |m| {
        m.jobs
            .finalize(Lookup::Job, "job0", &mut m.disks, &mut m.events)
    })?;
    println!("   waits for: {:?}", m.run("job0")?);
    m.verb("job-dismiss job0", |m| {
        m.jobs
            .dismiss(Lookup::Job, "job0", &mut m.disks, &mut m.events)
    })?;
    println!("   jobs left: {}", m.jobs.len());

    assert_eq!(m.disks.target, m.disks.source, "every chunk was copied");
    println!(
        "target equals source: {} bytes copied",
        m.disks.target.len()
    );
    Ok(())
}
