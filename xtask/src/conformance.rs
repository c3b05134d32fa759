//! `cargo xtask conformance diff [--max-wait S] [SCENARIO...]`: runs the
//! shared conformance harness against qemu-storage-daemon and against
//! strata-qsd on the same scenarios and compares the two recordings.
//!
//! The scenarios default to the project's own (`sim/scenarios`); files or
//! directories given on the command line replace them (e.g. the shared
//! suite, `../shared/conformance/scenarios`).  Recordings go to
//! `target/conformance/{qsd,strata}`; the exit code is compare.py's
//! (0: identical, 1: differences) or 2 when something could not run.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The command line of strata-qsd as the harness starts it.
pub(crate) fn strata_template(binary: &Path) -> String {
    format!(
        "{} --chardev socket,path={{sock}},server=on,wait=off,id=m0 \
         --monitor chardev=m0 --pidfile {{pidfile}}",
        binary.display()
    )
}

/// Runs `cargo xtask conformance diff ...`.
pub fn main(args: &[String]) -> ExitCode {
    let Some((verb, rest)) = args.split_first() else {
        return usage();
    };
    if verb != "diff" {
        return usage();
    }
    let mut max_wait = None;
    let mut inputs = Vec::new();
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--max-wait" => match rest.next() {
                Some(s) => max_wait = Some(s.clone()),
                None => return usage(),
            },
            path => inputs.push(PathBuf::from(path)),
        }
    }
    match diff(max_wait.as_deref(), inputs) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("cargo xtask conformance diff: {message}");
            ExitCode::from(2)
        }
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask conformance diff [--max-wait S] [SCENARIO...]\n       \
         cargo xtask conformance record [SCENARIO...]"
    );
    ExitCode::from(2)
}

fn diff(max_wait: Option<&str>, inputs: Vec<PathBuf>) -> Result<ExitCode, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .map_err(|e| format!("workspace root: {e}"))?;
    let harness = std::env::var_os("STRATA_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/conformance"));
    if !harness.join("run.py").exists() {
        return Err(format!(
            "no harness at {} (set STRATA_CONFORMANCE)",
            harness.display()
        ));
    }
    let inputs = if inputs.is_empty() {
        vec![root.join("sim/scenarios")]
    } else {
        inputs
    };
    build_strata_qsd(&root)?;
    let binary = root.join("target/release/strata-qsd");
    let out = root.join("target/conformance");
    let recordings = [
        ("qsd", "qsd".to_string()),
        ("strata", strata_template(&binary)),
    ];
    for (name, template) in &recordings {
        let dir = out.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        eprintln!("== {name}: {template}");
        let mut run = Command::new("python3");
        run.arg(harness.join("run.py")).arg(template);
        run.args(&inputs).arg("-o").arg(&dir);
        if let Some(wait) = max_wait {
            run.args(["--max-wait", wait]);
        }
        // run.py exits 1 when an expectation failed: still a recording.
        let status = run.status().map_err(|e| format!("python3: {e}"))?;
        if status.code() == Some(2) || status.code().is_none() {
            return Err(format!("run.py against {name} failed ({status})"));
        }
    }
    eprintln!("== compare qsd strata");
    let status = Command::new("python3")
        .arg(harness.join("compare.py"))
        .arg(out.join("qsd"))
        .arg(out.join("strata"))
        .status()
        .map_err(|e| format!("python3: {e}"))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(1) => ExitCode::from(1),
        _ => ExitCode::from(2),
    })
}

pub(crate) fn build_strata_qsd(root: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "strata-qsd"])
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build --release -p strata-qsd: {status}"))
    }
}
