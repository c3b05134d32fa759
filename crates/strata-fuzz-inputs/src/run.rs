//! A run: inputs `start..start + cases` of one seed for one target, in
//! process or against a strata-qsd process, tallied.

use crate::daemon::{Daemon, Serve, MEMORY_LIMIT_KIB};
use crate::{below, case_gen, nbd, oracle, qcow2, qmp, time_limit, Failure, Target};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the inputs go.
#[derive(Clone, Debug)]
pub enum Mode {
    /// The monitor, the formats and the export code in this process.
    InProcess,
    /// A strata-qsd process started from this binary, in this directory.
    Daemon {
        /// strata-qsd.
        binary: PathBuf,
        /// Scratch directory (images, sockets, the daemon's stderr).
        dir: PathBuf,
    },
}

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The target.
    pub target: Target,
    /// The seed.
    pub seed: u64,
    /// The first input's index.
    pub start: u64,
    /// How many inputs.
    pub cases: u64,
    /// Where they go.
    pub mode: Mode,
    /// Every how many qcow2 images QEMU (qemu-io) decides too (0: never).
    pub qemu_every: u64,
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Inputs run.
    pub inputs: u64,
    /// Failures by index (the first ones kept in full).
    pub failures: Vec<(u64, Failure)>,
    /// Failures by kind.
    pub failure_counts: BTreeMap<&'static str, u64>,
    /// Other counts (images opened, daemon restarts after `quit`, ...).
    pub counts: BTreeMap<String, u64>,
    /// Open/refuse decisions where QEMU and Strata differ, by kind, with
    /// the first index of each.
    pub divergences: BTreeMap<String, (u64, u64)>,
    /// The slowest input.
    pub slowest: Duration,
    /// The daemon's peak resident memory, KiB.
    pub peak_kib: u64,
}

impl Tally {
    fn fail(&mut self, index: u64, failure: Failure) {
        *self.failure_counts.entry(failure.kind()).or_insert(0) += 1;
        if self.failures.len() < 50 {
            self.failures.push((index, failure));
        }
    }

    fn count(&mut self, what: &str) {
        *self.counts.entry(what.to_string()).or_insert(0) += 1;
    }

    /// Divergences counted (not failures: QEMU's decision is recorded).
    pub fn divergence_total(&self) -> u64 {
        self.divergences.values().map(|(n, _)| n).sum()
    }
}

/// Runs `options`; the tally. Errors are for setting up (a daemon that
/// cannot start at all).
pub fn run(options: &RunOptions) -> Result<Tally, String> {
    let mut tally = Tally::default();
    let indexes = options.start..options.start + options.cases;
    match (&options.mode, options.target) {
        (Mode::InProcess, Target::Qmp) => {
            let mut monitor = qmp::InProcess::new();
            for i in indexes {
                let input = qmp::generate(&mut case_gen(Target::Qmp, options.seed, i));
                timed(&mut tally, i, || monitor.run(&input));
            }
        }
        (Mode::InProcess, Target::Nbd) => {
            let mut export = nbd::InProcess::new();
            for i in indexes {
                let input = nbd::generate(&mut case_gen(Target::Nbd, options.seed, i));
                timed(&mut tally, i, || export.run(&input));
            }
            if let Err(f) = export.check_images() {
                tally.fail(options.start + options.cases, f);
            }
        }
        (_, Target::Qcow2) => run_qcow2(options, &mut tally)?,
        (Mode::Daemon { binary, dir }, target) => {
            run_daemon(options, binary, dir, target, &mut tally)?
        }
    }
    Ok(tally)
}

fn timed(tally: &mut Tally, index: u64, f: impl FnOnce() -> Result<(), Failure>) {
    let start = Instant::now();
    let result = f();
    tally.inputs += 1;
    tally.slowest = tally.slowest.max(start.elapsed());
    if let Err(failure) = result {
        tally.fail(index, failure);
    }
}

fn run_qcow2(options: &RunOptions, tally: &mut Tally) -> Result<(), String> {
    let scratch = std::env::temp_dir().join(format!("strata-fuzz-qcow2-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let mut images = qcow2::pristine_images();
    images.extend(qcow2::qemu_images(&scratch).map_err(|e| format!("qemu-img: {e}"))?);
    for i in options.start..options.start + options.cases {
        let mut g = case_gen(Target::Qcow2, options.seed, i);
        let pristine = &images[below(&mut g, images.len() as u64) as usize];
        let bytes = qcow2::mutate(&mut g, &pristine.bytes);
        let mut decisions = None;
        timed(tally, i, || {
            decisions = Some(qcow2::check_image(&bytes)?);
            Ok(())
        });
        let Some(decisions) = decisions else { continue };
        if decisions.read_write.is_ok() {
            tally.count("opened read-write");
        } else if decisions.read_only.is_ok() {
            tally.count("opened read-only only");
        } else {
            tally.count("refused");
        }
        if options.qemu_every > 0 && i % options.qemu_every == 0 {
            tally.count("decided by QEMU too");
            let path = scratch.join("image.qcow2");
            std::fs::write(&path, &bytes).map_err(|e| e.to_string())?;
            for kind in oracle::divergences(&path, &bytes, &decisions) {
                tally.divergences.entry(kind).or_insert((0, i)).0 += 1;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn run_daemon(
    options: &RunOptions,
    binary: &Path,
    dir: &Path,
    target: Target,
    tally: &mut Tally,
) -> Result<(), String> {
    let serve = if target == Target::Nbd {
        Serve::MonitorAndExport
    } else {
        Serve::Monitor
    };
    let mut daemon = Daemon::start(binary, dir, serve).map_err(|e| format!("strata-qsd: {e}"))?;
    let restart = |daemon: &mut Daemon, tally: &mut Tally| {
        tally.count("daemon restarts");
        daemon.restart().map_err(|e| format!("strata-qsd: {e}"))
    };
    let end = options.start + options.cases;
    for i in options.start..end {
        let mut verdict = send(&mut daemon, target, options.seed, i, end);
        if matches!(verdict, Err(Failure::Unanswered(_))) {
            // The previous input's `quit` may still be under way: this
            // input then goes to the next daemon.
            match daemon.wait_exit(QUIT_LIMIT) {
                Ok(Some(0)) => {
                    tally.count("quit by an input");
                    restart(&mut daemon, tally)?;
                    verdict = send(&mut daemon, target, options.seed, i, end);
                }
                Ok(Some(code)) => verdict = Err(Failure::Crash(format!("exit code {code}"))),
                Ok(None) => {}
                Err(failure) => verdict = Err(failure),
            }
        }
        tally.inputs += 1;
        tally.peak_kib = tally.peak_kib.max(daemon.memory_kib().1);
        match verdict {
            Ok((Continue::Yes, took)) => tally.slowest = tally.slowest.max(took),
            Ok((Continue::Quit, _)) => {
                tally.count("quit by an input");
                restart(&mut daemon, tally)?;
            }
            Err(failure) => {
                tally.fail(i, failure);
                let _ = std::fs::copy(dir.join("stderr.log"), dir.join(format!("stderr-{i}.log")));
                restart(&mut daemon, tally)?;
            }
        }
    }
    tally.peak_kib = tally.peak_kib.max(daemon.memory_kib().1);
    match daemon.quit() {
        Ok(0) => {}
        Ok(code) => tally.fail(end, Failure::Crash(format!("quit exited {code}"))),
        Err(f) => tally.fail(end, f),
    }
    if let Err(f) = check_files(dir) {
        tally.fail(end, f);
    }
    Ok(())
}

/// Sends input `i` of `seed` for `target` and checks the daemon after it;
/// how long the input took.
fn send(
    daemon: &mut Daemon,
    target: Target,
    seed: u64,
    i: u64,
    end: u64,
) -> Result<(Continue, Duration), Failure> {
    let mut g = case_gen(target, seed, i);
    let began = Instant::now();
    let (sent, len) = match target {
        Target::Qmp => {
            let input = qmp::generate(&mut g);
            let answer = daemon.qmp(&input);
            (
                answer.and_then(|a| qmp::check_replies(&a)),
                input.bytes.len(),
            )
        }
        _ => {
            let input = nbd::generate(&mut g);
            (daemon.nbd(&input, 0).map(drop), input.len())
        }
    };
    let took = began.elapsed();
    if took > time_limit(len) {
        return Err(Failure::Hang(took));
    }
    sent?;
    Ok((after_input(daemon, target, i, end)?, took))
}

/// How long a daemon may take to leave after `quit` (its answers are
/// flushed for up to 2 s, jobs are cancelled) on a loaded machine.
const QUIT_LIMIT: Duration = Duration::from_secs(20);

/// Whether the daemon goes on.
enum Continue {
    Yes,
    /// It exited with 0 (an input said `quit`).
    Quit,
}

/// After each input: the daemon lives (or quit cleanly); every 50 inputs
/// and at the end, it answers QMP (and reads from its export) and its
/// memory is bounded.
fn after_input(daemon: &mut Daemon, target: Target, i: u64, end: u64) -> Result<Continue, Failure> {
    if let Some(code) = daemon.exit_code()? {
        return match code {
            0 => Ok(Continue::Quit),
            code => Err(Failure::Crash(format!("exit code {code}"))),
        };
    }
    if i % 50 == 49 || i + 1 == end {
        if let Err(failure) = daemon.probe_qmp() {
            // The input's `quit` may still be under way.
            return match daemon.wait_exit(QUIT_LIMIT)? {
                Some(0) => Ok(Continue::Quit),
                _ => Err(failure),
            };
        }
        if target == Target::Nbd {
            nbd::check_probe_answer(&daemon.nbd(&nbd::probe(), 1 << 20)?)?;
        }
        let (resident, _) = daemon.memory_kib();
        if resident > MEMORY_LIMIT_KIB {
            return Err(Failure::Memory(resident));
        }
    }
    Ok(Continue::Yes)
}

/// `check` of the daemon's qcow2 images once it has quit: no corruption.
fn check_files(dir: &Path) -> Result<(), Failure> {
    for (name, _) in qmp::IMAGES.iter().filter(|(n, _)| n.ends_with(".qcow2")) {
        let path = dir.join(name);
        let mut storage =
            strata_formats::FileStorage::open(&path, strata_formats::Access::ReadOnly)
                .map_err(|e| Failure::Corrupted(format!("{name}: {e}")))?;
        let report = strata_formats::Qcow2::open(&mut storage, strata_formats::Access::ReadOnly)
            .and_then(|mut image| image.check(&mut storage));
        match report {
            Ok(r) if r.corruptions == 0 => {}
            other => return Err(Failure::Corrupted(format!("{name}: {other:?}"))),
        }
    }
    Ok(())
}
