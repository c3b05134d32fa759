//! `cargo xtask fuzz-inputs`: builds strata-qsd and the
//! `strata-fuzz-inputs` runner with the `fuzz-inputs` profile (release
//! speed, overflow checks and debug assertions on) and runs the runner
//! against that strata-qsd. Not `cargo xtask fuzz`, which compares
//! generated scenarios with QEMU; see docs/FUZZ-INPUTS.md.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

pub fn main(args: &[String]) -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--profile",
            "fuzz-inputs",
            "-p",
            "strata-qsd",
            "-p",
            "strata-fuzz-inputs",
        ])
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("cargo build --profile fuzz-inputs failed");
        return ExitCode::from(2);
    }
    let out = root.join("target/fuzz-inputs");
    let status = Command::new(out.join("strata-fuzz-inputs"))
        .current_dir(&root)
        .arg("--qsd")
        .arg(out.join("strata-qsd"))
        .arg("--dir")
        .arg(out.join("run"))
        .args(args)
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("strata-fuzz-inputs: {e}");
            ExitCode::from(2)
        }
    }
}
