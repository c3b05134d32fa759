//! `cargo xtask bench daemon`: strata-qsd against qemu-storage-daemon on
//! the same 1 GiB three-image chain, in one run: a full `block-stream` into
//! the top and a `block-commit` of the middle image into the base. Prints
//! MiB/s, CPU seconds, peak RSS and the time from spawn to QMP ready, with
//! Strata's ratio to QEMU.

use crate::bench_formats::{build_chain, copy_chain};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use strata_qmp::serde_json::{self, json, Value};

type BenchResult<T> = Result<T, String>;

/// 1 GiB streamed (everything below the top), 256 MiB committed (mid holds
/// 1 MiB of every 4 MiB).
const STREAM_BYTES: f64 = (1u64 << 30) as f64;
const COMMIT_BYTES: f64 = (256u64 << 20) as f64;

/// What one daemon measured for one job.
#[derive(Clone, Copy, Debug)]
struct Figures {
    startup: Duration,
    job: Duration,
    cpu_s: f64,
    peak_rss_kib: u64,
}

/// Runs the benchmark; `--dir PATH` sets the scratch directory (default
/// `/dev/shm` when it exists, so that disk write-back does not dominate).
pub fn run(args: &[String]) -> ExitCode {
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(default_dir);
    match bench(&dir.join("strata-bench-daemon")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cargo xtask bench daemon: {message}");
            ExitCode::FAILURE
        }
    }
}

fn default_dir() -> PathBuf {
    if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
}

fn bench(root: &Path) -> BenchResult<()> {
    let _ = std::fs::remove_dir_all(root);
    let pristine = root.join("pristine");
    eprintln!("building the 1 GiB chain in {} ...", pristine.display());
    build_chain(&pristine)?;
    let strata = strata_binary()?;
    let daemons: [(&str, PathBuf); 2] = [
        ("qemu-storage-daemon", PathBuf::from("qemu-storage-daemon")),
        ("strata-qsd", strata),
    ];
    let mut results = Vec::new();
    for (job, bytes) in [("stream", STREAM_BYTES), ("commit", COMMIT_BYTES)] {
        for (name, binary) in &daemons {
            let dir = copy_chain(&pristine, &root.join(format!("{job}-{name}")))?;
            let figures = run_daemon(binary, &dir, job)?;
            verify(&pristine, &dir, job).map_err(|e| format!("{name} {job}: {e}"))?;
            results.push((job, *name, bytes, figures));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    print_table(&results);
    let _ = std::fs::remove_dir_all(root);
    Ok(())
}

fn strata_binary() -> BenchResult<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "strata-qsd"])
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err("cargo build --release -p strata-qsd failed".into());
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("xtask lives in the workspace")
                .join("target")
        });
    target
        .join("release/strata-qsd")
        .canonicalize()
        .map_err(|e| e.to_string())
}

/// Starts `binary` in `dir`, opens the chain, runs the job, and reads the
/// process's CPU time and peak RSS before `quit`.
fn run_daemon(binary: &Path, dir: &Path, job: &str) -> BenchResult<Figures> {
    let sock = dir.join("qmp.sock");
    let pidfile = dir.join("daemon.pid");
    let spawned = Instant::now();
    let mut child = Command::new(binary)
        .current_dir(dir)
        .args([
            "--chardev",
            &format!("socket,path={},server=on,wait=off,id=m0", sock.display()),
        ])
        .args([
            "--monitor",
            "chardev=m0",
            "--pidfile",
            &pidfile.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
    let result = drive(&mut child, &sock, &pidfile, spawned, job);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn drive(
    child: &mut Child,
    sock: &Path,
    pidfile: &Path,
    spawned: Instant,
    job: &str,
) -> BenchResult<Figures> {
    while !pidfile.exists() {
        if spawned.elapsed() > Duration::from_secs(20) {
            return Err("the daemon did not start".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut qmp = Qmp::connect(sock)?;
    qmp.execute("qmp_capabilities", json!({}))?;
    let startup = spawned.elapsed();
    let chain = json!({
        "driver": "qcow2", "node-name": "top", "file": {"driver": "file", "filename": "top.qcow2"},
        "backing": {"driver": "qcow2", "node-name": "mid", "file": {"driver": "file", "filename": "mid.qcow2"},
            "backing": {"driver": "qcow2", "node-name": "base", "file": {"driver": "file", "filename": "base.qcow2"}}}
    });
    qmp.execute("blockdev-add", chain)?;
    let started = Instant::now();
    match job {
        "stream" => qmp.execute("block-stream", json!({"device": "top", "job-id": "j"}))?,
        _ => qmp.execute(
            "block-commit",
            json!({"device": "top", "job-id": "j", "top-node": "mid", "base-node": "base"}),
        )?,
    };
    qmp.wait_event("BLOCK_JOB_COMPLETED")?;
    let job_time = started.elapsed();
    let (cpu_s, peak_rss_kib) = proc_figures(child.id())?;
    let _ = qmp.execute("quit", json!({}));
    Ok(Figures {
        startup,
        job: job_time,
        cpu_s,
        peak_rss_kib,
    })
}

/// Outside the timing: the result must read like the chain it replaced,
/// and pass `qemu-img check`.
fn verify(pristine: &Path, dir: &Path, job: &str) -> BenchResult<()> {
    let (result, reference) = match job {
        "stream" => (dir.join("top.qcow2"), pristine.join("top.qcow2")),
        _ => (dir.join("base.qcow2"), pristine.join("mid.qcow2")),
    };
    for args in [
        vec![
            "check".to_string(),
            "-q".to_string(),
            result.display().to_string(),
        ],
        vec![
            "compare".to_string(),
            "-q".to_string(),
            result.display().to_string(),
            reference.display().to_string(),
        ],
    ] {
        let status = Command::new("qemu-img")
            .args(&args)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("qemu-img {} failed", args.join(" ")));
        }
    }
    Ok(())
}

/// CPU seconds (user + system) and peak RSS (VmHWM) from /proc.
fn proc_figures(pid: u32) -> BenchResult<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Linux reports CPU time in clock ticks of 1/100 s.
    Ok((ticks / 100.0, hwm))
}

/// A minimal QMP client: commands in, answers and events out.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    events: Vec<Value>,
}

impl Qmp {
    fn connect(sock: &Path) -> BenchResult<Qmp> {
        let stream = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
        };
        qmp.read()?; // the greeting
        Ok(qmp)
    }

    fn read(&mut self) -> BenchResult<Value> {
        let mut line = String::new();
        if self
            .reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err("the daemon closed the connection".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("bad JSON from the daemon: {e}"))
    }

    fn execute(&mut self, command: &str, arguments: Value) -> BenchResult<Value> {
        let request = json!({"execute": command, "arguments": arguments});
        writeln!(self.writer, "{request}").map_err(|e| e.to_string())?;
        loop {
            let message = self.read()?;
            if message.get("event").is_some() {
                self.events.push(message);
            } else if let Some(error) = message.get("error") {
                return Err(format!("{command}: {error}"));
            } else {
                return Ok(message["return"].clone());
            }
        }
    }

    fn wait_event(&mut self, name: &str) -> BenchResult<Value> {
        loop {
            if let Some(at) = self.events.iter().position(|e| e["event"] == name) {
                return Ok(self.events.remove(at));
            }
            let message = self.read()?;
            if message.get("event").is_some() {
                self.events.push(message);
            }
        }
    }
}

fn print_table(results: &[(&str, &str, f64, Figures)]) {
    println!(
        "{:<8} {:<22} {:>10} {:>8} {:>12} {:>11}",
        "job", "daemon", "MiB/s", "CPU s", "peak RSS MiB", "startup ms"
    );
    for (job, name, bytes, f) in results {
        let mib_s = bytes / (1 << 20) as f64 / f.job.as_secs_f64();
        println!(
            "{job:<8} {name:<22} {mib_s:>10.1} {:>8.2} {:>12.1} {:>11.1}",
            f.cpu_s,
            f.peak_rss_kib as f64 / 1024.0,
            f.startup.as_secs_f64() * 1000.0
        );
    }
    for job in ["stream", "commit"] {
        let pick = |daemon: &str| {
            results
                .iter()
                .find(|(j, n, _, _)| *j == job && *n == daemon)
                .map(|(_, _, b, f)| (*b, *f))
        };
        if let (Some((bytes, q)), Some((_, s))) = (pick("qemu-storage-daemon"), pick("strata-qsd"))
        {
            let throughput = (bytes / s.job.as_secs_f64()) / (bytes / q.job.as_secs_f64());
            println!(
                "{job}: throughput ratio {throughput:.2} (target >= 1.0), peak RSS ratio {:.2} (target <= 1.0), startup ratio {:.2} (target <= 1.0), CPU ratio {:.2}",
                s.peak_rss_kib as f64 / q.peak_rss_kib.max(1) as f64,
                s.startup.as_secs_f64() / q.startup.as_secs_f64(),
                s.cpu_s / q.cpu_s.max(0.01)
            );
        }
    }
}
