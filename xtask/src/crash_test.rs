//! `cargo xtask crash-test`: kill -9 of strata-qsd during a stream, an
//! intermediate commit and an active commit, with qemu-io writing through
//! an NBD export of the top meanwhile, at a seeded random moment. After
//! each kill every image must be `qemu-img check`-clean (leaks allowed),
//! every write qemu-io saw flushed must be there, and everything else of
//! the top's guest view must be what it was (sector by sector, a write
//! that was in flight may be there or not). See docs/FUZZ-INPUTS.md.

use clap::Parser;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "cargo xtask crash-test",
    about = "kill -9 of strata-qsd during jobs, images checked after"
)]
struct Cli {
    /// How many kills (the job kinds take turns).
    #[arg(long, default_value_t = 3)]
    cases: u64,
    /// Case i of seed S depends on S and i only.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Index of the first case.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Where the cases' images go (relative to the workspace root); a
    /// passing case's directory is removed.
    #[arg(long, default_value = "target/crash-test")]
    keep: PathBuf,
}

/// Virtual size of every image, and the unit the writer writes.
const SIZE: u64 = 32 << 20;
const SLOT: u64 = 64 << 10;
/// How many writes qemu-io makes during a case.
const WRITES: u64 = 48;
/// The jobs' speed (bytes/s): each layer holds 6-12 MiB of data, so a job
/// runs for about a second and the kill lands anywhere in it.
const SPEED: u64 = 12 << 20;

#[derive(Clone, Copy, Debug)]
enum Job {
    Stream,
    IntermediateCommit,
    ActiveCommit,
}

impl Job {
    fn of_case(i: u64) -> Job {
        [Job::Stream, Job::IntermediateCommit, Job::ActiveCommit][(i % 3) as usize]
    }

    fn command(self) -> String {
        let args = match self {
            Job::Stream => r#""device": "top", "base-node": "base""#.to_string(),
            Job::IntermediateCommit => {
                r#""device": "top", "top-node": "mid", "base-node": "base""#.to_string()
            }
            Job::ActiveCommit => r#""device": "top", "base-node": "base""#.to_string(),
        };
        let name = match self {
            Job::Stream => "block-stream",
            _ => "block-commit",
        };
        format!(
            r#"{{"execute": "{name}", "arguments": {{"job-id": "j", "speed": {SPEED}, {args}}}}}"#
        )
    }
}

/// What one case saw.
#[derive(Default)]
struct Outcome {
    /// The job's events seen before the kill.
    completed_before_kill: bool,
    ready_before_kill: bool,
    certain_writes: u64,
    uncertain_writes: u64,
}

pub fn main(args: &[String]) -> ExitCode {
    let cli = match Cli::try_parse_from(
        std::iter::once("crash-test".to_string()).chain(args.iter().cloned()),
    ) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Err(e) = crate::conformance::build_strata_qsd(&root) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let binary = root.join("target/release/strata-qsd");
    let (mut passed, mut failed) = (0, 0);
    let mut tallies = std::collections::BTreeMap::<String, u64>::new();
    for i in cli.start..cli.start + cli.cases {
        let dir = root
            .join(&cli.keep)
            .join(format!("seed-{}-case-{i}", cli.seed));
        let job = Job::of_case(i);
        match run_case(&binary, &dir, cli.seed, i, job) {
            Ok(outcome) => {
                passed += 1;
                let when = if outcome.completed_before_kill {
                    "after the job completed"
                } else if outcome.ready_before_kill {
                    "while the job was ready"
                } else {
                    "while the job ran"
                };
                *tallies.entry(format!("{job:?} killed {when}")).or_insert(0) += 1;
                *tallies.entry("flushed writes checked".into()).or_insert(0) +=
                    outcome.certain_writes;
                *tallies
                    .entry("in-flight writes (old or new)".into())
                    .or_insert(0) += outcome.uncertain_writes;
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(e) => {
                failed += 1;
                println!(
                    "FAILED case {i} ({job:?}, --seed {} --start {i} --cases 1, kept in {}): {e}",
                    cli.seed,
                    dir.display()
                );
            }
        }
    }
    println!(
        "crash-test: {} kills (seed {}), {passed} passed, {failed} failed",
        cli.cases, cli.seed
    );
    for (what, n) in tallies {
        println!("  {what}: {n}");
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(program: &str, args: &[&str], dir: &Path) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// base <- mid <- top, each with data in 64 KiB slots of its own.
fn make_chain(dir: &Path, rng: &mut Pcg64) -> Result<(), String> {
    let size = SIZE.to_string();
    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "base.qcow2", &size],
        dir,
    )?;
    for (image, backing) in [("mid.qcow2", "base.qcow2"), ("top.qcow2", "mid.qcow2")] {
        run(
            "qemu-img",
            &[
                "create", "-q", "-f", "qcow2", "-b", backing, "-F", "qcow2", image, &size,
            ],
            dir,
        )?;
    }
    for (k, image) in ["base.qcow2", "mid.qcow2", "top.qcow2"]
        .into_iter()
        .enumerate()
    {
        let mut args = vec!["-f".to_string(), "qcow2".to_string()];
        for _ in 0..rng.random_range(96..192) {
            let slot = rng.random_range(0..SIZE / SLOT);
            args.push("-c".into());
            args.push(format!(
                "write -P {} {} {SLOT}",
                0x11 * (k + 1),
                slot * SLOT
            ));
        }
        args.push(image.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("qemu-io", &args, dir)?;
    }
    Ok(())
}

fn run_case(binary: &Path, dir: &Path, seed: u64, i: u64, job: Job) -> Result<Outcome, String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut rng = Pcg64::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i);
    make_chain(dir, &mut rng)?;
    run(
        "qemu-img",
        &["convert", "-O", "raw", "top.qcow2", "before.raw"],
        dir,
    )?;
    let mut daemon = start_daemon(binary, dir)?;
    let mut qmp = Qmp::connect(&dir.join("qmp.sock"))?;
    let mut writer = start_writer(dir, &mut rng)?;
    let reply = qmp.execute(&job.command())?;
    if reply != r#"{"return": {}}"# {
        return Err(format!("{job:?}: {reply}"));
    }
    std::thread::sleep(Duration::from_millis(rng.random_range(0..2500)));
    let mut outcome = Outcome {
        completed_before_kill: qmp.saw("BLOCK_JOB_COMPLETED"),
        ready_before_kill: qmp.saw("BLOCK_JOB_READY"),
        ..Outcome::default()
    };
    daemon.kill().map_err(|e| format!("kill: {e}"))?;
    daemon.wait().map_err(|e| e.to_string())?;
    let writes = finish_writer(&mut writer)?;
    for image in ["base.qcow2", "mid.qcow2", "top.qcow2"] {
        check_clean(dir, image)?;
    }
    run(
        "qemu-img",
        &["convert", "-O", "raw", "top.qcow2", "after.raw"],
        dir,
    )?;
    compare_views(dir, &writes, &mut outcome)?;
    Ok(outcome)
}

fn start_daemon(binary: &Path, dir: &Path) -> Result<Child, String> {
    let blockdev = |name: &str, backing: Option<&str>| {
        let backing = backing.map_or(String::new(), |b| format!(",backing={b}"));
        format!(
            "driver=qcow2,node-name={name}{backing},file.driver=file,file.filename={name}.qcow2"
        )
    };
    let child = Command::new(binary)
        .current_dir(dir)
        .args([
            "--chardev",
            "socket,path=qmp.sock,server=on,wait=off,id=m0",
            "--monitor",
            "chardev=m0",
        ])
        .args(["--blockdev", &blockdev("base", None)])
        .args(["--blockdev", &blockdev("mid", Some("base"))])
        .args(["--blockdev", &blockdev("top", Some("mid"))])
        .args(["--nbd-server", "addr.type=unix,addr.path=nbd.sock"])
        .args(["--export", "type=nbd,id=e,node-name=top,writable=on"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("qsd.log")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    // Ready once both sockets accept: a socket file appears at `bind`, a
    // moment before `listen`.
    let deadline = Instant::now() + Duration::from_secs(20);
    let accepts = |name: &str| UnixStream::connect(dir.join(name)).is_ok();
    while !(accepts("qmp.sock") && accepts("nbd.sock")) {
        if Instant::now() > deadline {
            return Err("strata-qsd made no sockets in 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(child)
}

/// A QMP client whose events are collected by a thread.
struct Qmp {
    stream: UnixStream,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Qmp {
    fn connect(socket: &Path) -> Result<Qmp, String> {
        let stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        let collected = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                collected.lock().unwrap().push(line);
            }
        });
        let mut qmp = Qmp { stream, lines };
        qmp.execute(r#"{"execute": "qmp_capabilities"}"#)?;
        Ok(qmp)
    }

    /// Sends `command`; its reply (the first line that is not an event
    /// after the ones already seen).
    fn execute(&mut self, command: &str) -> Result<String, String> {
        let seen = self.lines.lock().unwrap().len();
        writeln!(self.stream, "{command}").map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let reply = self.lines.lock().unwrap()[seen..]
                .iter()
                .find(|l| l.starts_with("{\"return\"") || l.starts_with("{\"error\""))
                .cloned();
            if let Some(reply) = reply {
                return Ok(reply);
            }
            if Instant::now() > deadline {
                return Err(format!("no reply to {command}"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn saw(&self, event: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(event))
    }
}

/// One write qemu-io was asked for.
struct Write64k {
    offset: u64,
    pattern: u8,
}

/// qemu-io on the export: distinct 64 KiB slots, each write followed by
/// a flush and a pause of up to 50 ms, a final read showing the last
/// flush came back.
fn start_writer(dir: &Path, rng: &mut Pcg64) -> Result<(Child, Vec<Write64k>), String> {
    let mut slots: Vec<u64> = (0..SIZE / SLOT).collect();
    let mut writes = Vec::new();
    let mut args = vec!["-f".to_string(), "raw".to_string()];
    for k in 0..WRITES {
        let pick = rng.random_range(k as usize..slots.len());
        slots.swap(k as usize, pick);
        let write = Write64k {
            offset: slots[k as usize] * SLOT,
            pattern: 0x80 + k as u8,
        };
        // Paced so that the writes span the moment of the kill.
        args.extend([
            "-c".into(),
            format!("write -P {} {} {SLOT}", write.pattern, write.offset),
            "-c".into(),
            "flush".into(),
            "-c".into(),
            format!("sleep {}", rng.random_range(0..50)),
        ]);
        writes.push(write);
    }
    args.extend([
        "-c".into(),
        "read 0 512".into(),
        "nbd+unix:///top?socket=nbd.sock".into(),
    ]);
    let child = Command::new("qemu-io")
        .args(&args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("qemu-io: {e}"))?;
    Ok((child, writes))
}

/// Waits for qemu-io; each write with whether its flush came back
/// (`Some(true)`), it was acknowledged without a flush seen
/// (`Some(false)`), or never acknowledged (`None`).
fn finish_writer(
    writer: &mut (Child, Vec<Write64k>),
) -> Result<Vec<(Write64k, Option<bool>)>, String> {
    let out = writer.0.wait_with_output_ref()?;
    let acked: Vec<bool> = writer
        .1
        .iter()
        .map(|w| {
            out.contains(&format!(
                "wrote {SLOT}/{SLOT} bytes at offset {}\n",
                w.offset
            ))
        })
        .collect();
    let final_read = out.contains("read 512/512 bytes at offset 0\n");
    let writes = std::mem::take(&mut writer.1);
    Ok(writes
        .into_iter()
        .enumerate()
        .map(|(k, w)| {
            let flushed = acked.get(k + 1).copied().unwrap_or(final_read);
            (w, acked[k].then_some(flushed))
        })
        .collect())
}

trait WaitOutput {
    fn wait_with_output_ref(&mut self) -> Result<String, String>;
}

impl WaitOutput for Child {
    fn wait_with_output_ref(&mut self) -> Result<String, String> {
        let mut text = String::new();
        if let Some(mut stdout) = self.stdout.take() {
            std::io::Read::read_to_string(&mut stdout, &mut text).map_err(|e| e.to_string())?;
        }
        self.wait().map_err(|e| e.to_string())?;
        Ok(text)
    }
}

/// `qemu-img check`: exit 0 (clean) or 3 (leaked clusters only).
fn check_clean(dir: &Path, image: &str) -> Result<(), String> {
    let out = Command::new("qemu-img")
        .args(["check", "-f", "qcow2", image])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("qemu-img: {e}"))?;
    match out.status.code() {
        Some(0 | 3) => Ok(()),
        _ => Err(format!(
            "qemu-img check {image}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// The top's view after the kill against before, sector by sector.
fn compare_views(
    dir: &Path,
    writes: &[(Write64k, Option<bool>)],
    outcome: &mut Outcome,
) -> Result<(), String> {
    let before = std::fs::read(dir.join("before.raw")).map_err(|e| e.to_string())?;
    let after = std::fs::read(dir.join("after.raw")).map_err(|e| e.to_string())?;
    if before.len() != after.len() {
        return Err(format!(
            "guest size {} became {}",
            before.len(),
            after.len()
        ));
    }
    // Per sector: `None` keeps its old bytes; `Some((true, p))` holds a
    // flushed write's pattern; `Some((false, p))` either (a write that was
    // not seen flushed, acknowledged or not, may have reached the disk).
    let mut expected = vec![None; before.len() / 512];
    for (write, state) in writes {
        match state {
            Some(true) => outcome.certain_writes += 1,
            Some(false) => outcome.uncertain_writes += 1,
            None => {}
        }
        let first = (write.offset / 512) as usize;
        for sector in &mut expected[first..first + (SLOT / 512) as usize] {
            *sector = Some((*state == Some(true), write.pattern));
        }
    }
    for (s, expect) in expected.iter().enumerate() {
        let range = s * 512..(s + 1) * 512;
        let (old, now) = (&before[range.clone()], &after[range]);
        let is_pattern = |p: u8| now.iter().all(|&b| b == p);
        let ok = match *expect {
            Some((true, p)) => is_pattern(p),
            Some((false, p)) => is_pattern(p) || now == old,
            None => now == old,
        };
        if !ok {
            let what = match expect {
                Some((true, p)) => format!("the flushed write of {p:#x}"),
                Some((false, p)) => format!("what it was or the write of {p:#x}"),
                None => "what it was".to_string(),
            };
            return Err(format!(
                "guest sector {s} (offset {:#x}) is not {what}",
                s * 512
            ));
        }
    }
    Ok(())
}
