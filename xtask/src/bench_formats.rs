//! `cargo xtask bench formats`: Strata's qcow2 code against QEMU's on the
//! work stream and commit do, on real files.
//!
//! A 1 GiB chain `base <- mid <- top` is built with qemu-img/qemu-io: base
//! full of data, mid with a quarter (1 MiB of every 4 MiB), top empty. Then,
//! on separate copies of that chain:
//!
//! * **stream**: Strata copies everything allocated below the top into the
//!   top and drops its backing file; QEMU does the same copy with
//!   `qemu-img convert -O qcow2 top.qcow2 out.qcow2` (target cache `unsafe`,
//!   so Strata does not flush either).
//! * **commit**: Strata copies mid's clusters into base and points top at
//!   base; QEMU runs `qemu-img commit -d mid.qcow2` (cache `writeback`, so
//!   both flush at the end).
//!
//! Results are checked (`qemu-img compare`, `qemu-img check`) outside the
//! timed part. Each measurement runs `--runs` times (default 4) on a fresh
//! copy of the chain, after a `sync`, alternating which tool goes first;
//! the median and the best run are printed. Files live in `/dev/shm` unless
//! `--dir` says otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};
use strata_formats::{Access, Chain, ExtentKind, FileStorage, Image, ZeroWrite};

/// Guest size of the chain.
const SIZE: u64 = 1 << 30;
/// Bytes per copy request: 2 MiB, like qemu-img convert's buffer, small
/// enough that a chunk is still in the CPU cache when it is written out.
const CHUNK: u64 = 2 << 20;
const MIB: f64 = (1 << 20) as f64;

type BenchResult<T> = Result<T, String>;

/// Entry point; `args` are what follows `cargo xtask bench formats`.
pub fn run(args: &[String]) -> ExitCode {
    if cfg!(debug_assertions) {
        // Timings of unoptimised code mean nothing: run the release build.
        let status = Command::new(env!("CARGO"))
            .args([
                "run",
                "--quiet",
                "--release",
                "--package",
                "xtask",
                "--",
                "bench",
                "formats",
            ])
            .args(args)
            .status();
        return match status {
            Ok(s) if s.success() => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        };
    }
    let opts = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench formats: {e}");
            return ExitCode::from(2);
        }
    };
    match bench(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench formats: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--runs N` (default 4: each tool goes first twice) and `--dir PATH`
/// (default `/dev/shm` when it exists, so that disk write-back, which
/// neither tool controls, does not drown the figures; else the temp dir).
struct Options {
    runs: usize,
    dir: PathBuf,
}

impl Options {
    fn parse(args: &[String]) -> BenchResult<Options> {
        let shm = Path::new("/dev/shm");
        let mut opts = Options {
            runs: 4,
            dir: if shm.is_dir() {
                shm.to_owned()
            } else {
                std::env::temp_dir()
            },
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--runs" => {
                    opts.runs = value
                        .parse::<usize>()
                        .map_err(|e| format!("--runs: {e}"))?
                        .max(1)
                }
                "--dir" => opts.dir = PathBuf::from(value),
                other => {
                    return Err(format!(
                        "unknown option {other} (known: --runs N, --dir PATH)"
                    ))
                }
            }
        }
        Ok(opts)
    }
}

fn bench(opts: &Options) -> BenchResult<()> {
    let root = opts
        .dir
        .join(format!("strata-bench-formats-{}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let result = bench_in(&root, opts.runs);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn bench_in(root: &Path, runs: usize) -> BenchResult<()> {
    let orig = root.join("orig");
    eprintln!("building the 1 GiB chain in {} ...", orig.display());
    build_chain(&orig)?;
    let work = root.join("work");
    let mut rows = Vec::new();
    for job in [Job::Stream, Job::Commit] {
        let (mut strata, mut qemu) = (Vec::new(), Vec::new());
        for run in 0..runs {
            // Alternate which tool goes first; each measurement starts from
            // a fresh copy of the chain, synced, with nothing else left over.
            let order = if run % 2 == 0 {
                [Tool::Strata, Tool::Qemu]
            } else {
                [Tool::Qemu, Tool::Strata]
            };
            for tool in order {
                copy_chain(&orig, &work)?;
                run_tool("sync", &[])?;
                let took = timed(|| job.run(tool, &work))?;
                job.verify(&orig, &work)?;
                eprintln!("{job:?} run {}/{runs}: {tool:?} {took:.2?}", run + 1);
                match tool {
                    Tool::Strata => strata.push(took),
                    Tool::Qemu => qemu.push(took),
                }
                std::fs::remove_dir_all(&work).map_err(|e| e.to_string())?;
            }
        }
        rows.push((job, strata, qemu));
    }
    println!(
        "{:<26} {:>6} {:>12} {:>12} {:>14}",
        "work", "", "Strata MiB/s", "QEMU MiB/s", "Strata / QEMU"
    );
    for (job, mut strata, mut qemu) in rows {
        let bytes = job.bytes() as f64 / MIB;
        for (stat, s, q) in [
            ("median", median(&mut strata), median(&mut qemu)),
            ("best", strata[0], qemu[0]),
        ] {
            let (s, q) = (bytes / s.as_secs_f64(), bytes / q.as_secs_f64());
            println!(
                "{:<26} {stat:>6} {s:>12.0} {q:>12.0} {:>14.2}",
                job.label(),
                s / q
            );
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "({runs} runs each, alternating which tool goes first; 1 GiB chain, 64 KiB clusters; in {}; \
         load average {})",
        root.display(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Tool {
    Strata,
    Qemu,
}

#[derive(Clone, Copy, Debug)]
enum Job {
    /// Copy everything below the top into it (a full stream).
    Stream,
    /// Copy mid into base.
    Commit,
}

impl Job {
    fn label(self) -> &'static str {
        match self {
            Job::Stream => "stream (1024 MiB copied)",
            Job::Commit => "commit (256 MiB copied)",
        }
    }

    fn bytes(self) -> u64 {
        match self {
            Job::Stream => SIZE,
            Job::Commit => SIZE / 4,
        }
    }

    fn run(self, tool: Tool, dir: &Path) -> BenchResult<()> {
        let (top, out, mid) = (
            p(&dir.join("top.qcow2")),
            p(&dir.join("out.qcow2")),
            p(&dir.join("mid.qcow2")),
        );
        match (self, tool) {
            (Job::Stream, Tool::Strata) => strata_stream(dir),
            (Job::Stream, Tool::Qemu) => {
                run_tool("qemu-img", &["convert", "-O", "qcow2", &top, &out])
            }
            (Job::Commit, Tool::Strata) => strata_commit(dir),
            (Job::Commit, Tool::Qemu) => run_tool("qemu-img", &["commit", "-q", "-d", &mid]),
        }
    }

    /// Checks the result against the untouched original chain: same guest
    /// bytes, and `qemu-img check` clean for what Strata wrote.
    fn verify(self, orig: &Path, dir: &Path) -> BenchResult<()> {
        let o = |n: &str| p(&orig.join(n));
        let d = |n: &str| p(&dir.join(n));
        match self {
            Job::Stream => {
                let result = if dir.join("out.qcow2").exists() {
                    d("out.qcow2")
                } else {
                    d("top.qcow2")
                };
                run_tool("qemu-img", &["check", "-q", &result])?;
                run_tool("qemu-img", &["compare", "-q", &result, &o("top.qcow2")])
            }
            Job::Commit => {
                run_tool("qemu-img", &["check", "-q", &d("base.qcow2")])?;
                run_tool(
                    "qemu-img",
                    &["compare", "-q", &d("base.qcow2"), &o("mid.qcow2")],
                )?;
                run_tool(
                    "qemu-img",
                    &["compare", "-q", &d("top.qcow2"), &o("top.qcow2")],
                )
            }
        }
    }
}

/// base: 1 GiB of data; mid: 1 MiB of every 4 MiB; top: empty.
pub(crate) fn build_chain(dir: &Path) -> BenchResult<()> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let (base, mid, top) = (
        dir.join("base.qcow2"),
        dir.join("mid.qcow2"),
        dir.join("top.qcow2"),
    );
    run_tool(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", &p(&base), "1G"],
    )?;
    run_tool(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -q -P 0xa5 0 1G", &p(&base)],
    )?;
    run_tool(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            &p(&mid),
        ],
    )?;
    let writes: Vec<String> = (0..SIZE / (4 << 20))
        .map(|i| format!("write -q -P 0x5a {} 1M", i * (4 << 20)))
        .collect();
    let mut args = vec!["-f".to_string(), "qcow2".to_string()];
    for w in writes {
        args.extend(["-c".to_string(), w]);
    }
    args.push(p(&mid));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_tool("qemu-io", &args)?;
    run_tool(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "mid.qcow2",
            "-F",
            "qcow2",
            &p(&top),
        ],
    )
}

/// Copies the three images into a fresh directory.
pub(crate) fn copy_chain(from: &Path, to: &Path) -> BenchResult<PathBuf> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for name in ["base.qcow2", "mid.qcow2", "top.qcow2"] {
        std::fs::copy(from.join(name), to.join(name)).map_err(|e| format!("copy {name}: {e}"))?;
    }
    Ok(to.to_owned())
}

/// A full stream into the top: every extent the top lacks is read through
/// the chain below it and written into the top; then the backing file goes.
///
/// Format state is per layer, so the layers below can be read on one
/// thread while the top is written on another (as `qemu-img convert`
/// overlaps its requests). Chunks are cluster aligned, so no write needs
/// copy-on-write from the backing file.
fn strata_stream(dir: &Path) -> BenchResult<()> {
    let mut top_st =
        FileStorage::open(dir.join("top.qcow2"), Access::ReadWrite).map_err(|e| e.to_string())?;
    let mut top = Image::open(&mut top_st, None, Access::ReadWrite).map_err(|e| e.to_string())?;
    let mut below =
        Chain::open_files(dir.join("mid.qcow2"), Access::ReadOnly).map_err(|e| e.to_string())?;
    let mut extents = Vec::new();
    let mut pos = 0;
    while pos < SIZE {
        let e = top
            .block_status(&mut top_st, pos, SIZE - pos)
            .map_err(|e| e.to_string())?;
        if e.kind == ExtentKind::Unallocated {
            extents.push((e.offset, e.len));
        }
        pos = e.end();
    }
    copy_pipelined(
        &extents,
        |offset, buf| below.read(0, offset, buf).map_err(|e| e.to_string()),
        |offset, data| {
            top.write(&mut top_st, offset, data, None)
                .map_err(|e| e.to_string())
        },
    )?;
    top.change_backing_file(&mut top_st, None, None)
        .map_err(|e| e.to_string())
}

/// Commit of mid into base: mid's data and zero clusters are written into
/// base, then top is pointed at base; everything flushed, as `qemu-img
/// commit` (cache=writeback) flushes. Reading mid and writing base overlap
/// on two threads.
fn strata_commit(dir: &Path) -> BenchResult<()> {
    let err = |e: strata_formats::Error| e.to_string();
    let mut mid_st =
        FileStorage::open(dir.join("mid.qcow2"), Access::ReadOnly).map_err(|e| e.to_string())?;
    let mut mid = Image::open(&mut mid_st, None, Access::ReadOnly).map_err(err)?;
    let mut base_st =
        FileStorage::open(dir.join("base.qcow2"), Access::ReadWrite).map_err(|e| e.to_string())?;
    let mut base = Image::open(&mut base_st, None, Access::ReadWrite).map_err(err)?;
    let (mut data, mut zero) = (Vec::new(), Vec::new());
    let mut pos = 0;
    while pos < SIZE {
        let e = mid
            .block_status(&mut mid_st, pos, SIZE - pos)
            .map_err(err)?;
        match e.kind {
            ExtentKind::Data => data.push((e.offset, e.len)),
            ExtentKind::Zero => zero.push((e.offset, e.len)),
            ExtentKind::Unallocated => {}
        }
        pos = e.end();
    }
    for &(offset, len) in &zero {
        base.write_zeroes(&mut base_st, offset, len, ZeroWrite::KeepAllocated, None)
            .map_err(err)?;
    }
    copy_pipelined(
        &data,
        |offset, buf| mid.read(&mut mid_st, offset, buf, None).map_err(err),
        |offset, bytes| base.write(&mut base_st, offset, bytes, None).map_err(err),
    )?;
    base.flush(&mut base_st).map_err(err)?;
    let mut top_st =
        FileStorage::open(dir.join("top.qcow2"), Access::ReadWrite).map_err(|e| e.to_string())?;
    let mut top = Image::open(&mut top_st, None, Access::ReadWrite).map_err(err)?;
    top.change_backing_file(&mut top_st, Some("base.qcow2"), Some("qcow2"))
        .map_err(err)?;
    top.flush(&mut top_st).map_err(err)
}

/// Copies `extents` in chunks of at most [`CHUNK`]: `read` runs on a
/// second thread, at most two chunks ahead of `write`.
fn copy_pipelined(
    extents: &[(u64, u64)],
    mut read: impl FnMut(u64, &mut [u8]) -> BenchResult<()> + Send,
    mut write: impl FnMut(u64, &[u8]) -> BenchResult<()>,
) -> BenchResult<()> {
    let chunks: Vec<(u64, u64)> = extents
        .iter()
        .flat_map(|&(offset, len)| {
            (0..len)
                .step_by(CHUNK as usize)
                .map(move |d| (offset + d, CHUNK.min(len - d)))
        })
        .collect();
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(u64, usize, Vec<u8>)>(2);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    for _ in 0..3 {
        empty_tx
            .send(vec![0u8; CHUNK as usize])
            .map_err(|e| e.to_string())?;
    }
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> BenchResult<()> {
            for &(offset, len) in &chunks {
                let mut buf = empty_rx.recv().map_err(|e| e.to_string())?;
                read(offset, &mut buf[..len as usize])?;
                full_tx
                    .send((offset, len as usize, buf))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        // On a write error the channels drop here, which stops the reader.
        let written = drain(full_rx, empty_tx, &mut write);
        let read = reader
            .join()
            .map_err(|_| "reader thread panicked".to_string())?;
        written.and(read)
    })
}

/// Writes every chunk the reader sends and hands the buffers back.
fn drain(
    full: std::sync::mpsc::Receiver<(u64, usize, Vec<u8>)>,
    empty: std::sync::mpsc::Sender<Vec<u8>>,
    write: &mut impl FnMut(u64, &[u8]) -> BenchResult<()>,
) -> BenchResult<()> {
    for (offset, len, buf) in full {
        write(offset, &buf[..len])?;
        let _ = empty.send(buf);
    }
    Ok(())
}

fn timed(f: impl FnOnce() -> BenchResult<()>) -> BenchResult<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

/// The median (and sorts `times`, so that `times[0]` is the best).
fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    let mid = times.len() / 2;
    match times.len() % 2 {
        0 => (times[mid - 1] + times[mid]) / 2,
        _ => times[mid],
    }
}

fn run_tool(name: &str, args: &[&str]) -> BenchResult<()> {
    let out = Command::new(name)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{name} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
