//! The shared harness's `run.py`, driven against qemu-storage-daemon or
//! strata-qsd, and the simulator run in-process on the same scenario.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use strata_sim::scenario::{Observation, Scenario};
use strata_sim::{Canonical, RunOptions};

/// Which daemon `run.py` starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Daemon {
    /// qemu-storage-daemon (the judge).
    Qemu,
    /// target/release/strata-qsd.
    Strata,
}

/// Where the harness and strata-qsd are.
pub struct Harness {
    run_py: PathBuf,
    strata_qsd: PathBuf,
}

impl Harness {
    /// The harness at `$STRATA_CONFORMANCE` or `../shared/conformance`, and
    /// the workspace's release strata-qsd.
    pub fn locate(root: &Path) -> Result<Harness, String> {
        let dir = std::env::var_os("STRATA_CONFORMANCE")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("../shared/conformance"));
        let run_py = dir.join("run.py");
        if !run_py.exists() {
            return Err(format!(
                "no harness at {} (set STRATA_CONFORMANCE)",
                dir.display()
            ));
        }
        Ok(Harness {
            run_py,
            strata_qsd: root.join("target/release/strata-qsd"),
        })
    }

    fn template(&self, daemon: Daemon) -> String {
        match daemon {
            Daemon::Qemu => "qsd".to_string(),
            Daemon::Strata => crate::conformance::strata_template(&self.strata_qsd),
        }
    }

    /// Makes every recording of `files` at once (a recording: a daemon
    /// and the directory its observations go to, one `NAME.json` each),
    /// each split over `shards` harness processes. Expectation failures
    /// and harness errors are in the observations; `Err` only when the
    /// harness itself could not run.
    pub fn record(
        &self,
        recordings: &[(Daemon, PathBuf)],
        files: &[PathBuf],
        shards: usize,
    ) -> Result<(), String> {
        let mut children = Vec::new();
        for (daemon, out) in recordings {
            for shard in shard(files, shards) {
                let child = Command::new("python3")
                    .arg(&self.run_py)
                    .arg("-q")
                    .arg(self.template(*daemon))
                    .args(&shard)
                    .arg("-o")
                    .arg(out)
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("python3: {e}"))?;
                children.push((*daemon, child));
            }
        }
        for (daemon, mut child) in children {
            let status = child.wait().map_err(|e| format!("run.py: {e}"))?;
            // 1: expectations failed, 2: harness errors: both are recorded.
            if status.code().is_none_or(|c| c > 2) {
                return Err(format!("run.py against {daemon:?}: {status}"));
            }
        }
        Ok(())
    }
}

/// `files` dealt round-robin into at most `jobs` non-empty groups.
fn shard(files: &[PathBuf], jobs: usize) -> Vec<Vec<PathBuf>> {
    let jobs = jobs.clamp(1, files.len().max(1));
    let mut shards = vec![Vec::new(); jobs];
    for (i, f) in files.iter().enumerate() {
        shards[i % jobs].push(f.clone());
    }
    shards.retain(|s| !s.is_empty());
    shards
}

/// The observation `run.py` wrote for scenario `name` into `dir`.
pub fn read_observation(dir: &Path, name: &str) -> Result<Observation, String> {
    let path = dir.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Observation::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Exit code of `cargo xtask fuzz --simulate FILE` when the simulator
/// failed (its message on stdout).
pub const SIMULATOR_FAILED: i32 = 3;

/// `cargo xtask fuzz --simulate FILE`: the simulator's observation of one
/// scenario file as JSON on stdout, or its failure.
pub fn simulate_file(path: &Path) -> ExitCode {
    let outcome = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e}", path.display()))
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
        .and_then(|scenario| simulate(&scenario));
    match outcome {
        Ok(observation) => {
            println!("{}", observation.to_json());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{e}");
            ExitCode::from(SIMULATOR_FAILED as u8)
        }
    }
}

/// The simulator's observation of a scenario file, simulated in a child
/// process: a stack overflow aborts a process, and must not end the batch.
pub fn simulate_isolated(path: &Path) -> Result<Observation, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let output = Command::new(exe)
        .arg("fuzz")
        .arg("--simulate")
        .arg(path)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("simulator process: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match output.status.code() {
        Some(0) => Observation::from_json(&stdout).map_err(|e| format!("simulator output: {e}")),
        Some(SIMULATOR_FAILED) => Err(stdout.trim().to_string()),
        _ => Err(format!("simulator process died: {}", output.status)),
    }
}

/// The simulator's observation of a scenario (canonical schedule, the
/// invariants checked): `Err` when the simulator failed or panicked, which
/// is a Strata bug whatever the scenario.
pub fn simulate(scenario: &serde_json::Value) -> Result<Observation, String> {
    let text = scenario.to_string();
    let parsed = Scenario::from_json(&text).map_err(|e| format!("scenario: {e}"))?;
    let parsed = Arc::new(parsed);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        strata_sim::run(&parsed, &mut Canonical, RunOptions::default())
    }));
    match outcome {
        Ok(Ok(run)) => Ok(run.observation),
        Ok(Err(failure)) => Err(format!("simulator: {}", failure.error)),
        Err(panic) => Err(format!("simulator panicked: {}", panic_text(&panic))),
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}
