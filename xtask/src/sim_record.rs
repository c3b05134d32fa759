//! `cargo xtask conformance record`: QEMU's observations of the
//! simulator's scenarios, recorded with the shared conformance harness
//! against qemu-storage-daemon into `sim/qemu/`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// Entry point of `cargo xtask conformance record [NAME...]`.
pub fn main(args: &[String]) -> ExitCode {
    let Some((verb, names)) = args.split_first() else {
        eprintln!("usage: cargo xtask conformance record [SCENARIO...]");
        return ExitCode::from(2);
    };
    if verb != "record" {
        eprintln!("cargo xtask conformance: unknown mode {verb:?} (known: record)");
        return ExitCode::from(2);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let harness = std::env::var_os("STRATA_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/conformance"));
    let run_py = harness.join("run.py");
    if !run_py.exists() {
        eprintln!(
            "cargo xtask conformance record: no harness at {} (set STRATA_CONFORMANCE)",
            harness.display()
        );
        return ExitCode::from(2);
    }
    let scenarios = root.join("sim/scenarios");
    let inputs: Vec<PathBuf> = if names.is_empty() {
        vec![scenarios]
    } else {
        names
            .iter()
            .map(|n| scenarios.join(format!("{n}.json")))
            .collect()
    };
    eprintln!("recording with qemu-storage-daemon into sim/qemu/ (about 0.3 s per scenario)");
    let status = Command::new("python3")
        .arg(&run_py)
        .arg("qsd")
        .args(&inputs)
        .arg("-o")
        .arg(root.join("sim/qemu"))
        .status();
    match status {
        // run.py exits 1 when a scenario's expectations failed: the
        // observation is still QEMU's and is kept.
        Ok(s) if s.code().is_some_and(|c| c <= 1) => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("harness failed: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot run python3: {e}");
            ExitCode::FAILURE
        }
    }
}
