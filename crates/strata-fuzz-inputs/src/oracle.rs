//! QEMU as the judge of the qcow2 target: `qemu-io` opens the same bytes
//! read-only and read-write (backing `null`), and reads the first
//! 64 KiB read-only. Each difference from Strata's decision, error text
//! or guest bytes is a **divergence**, reported by kind and not a failure.

use crate::qcow2::Decisions;
use std::path::Path;
use std::process::Command;
use strata_formats::{Access, MemStorage, Qcow2};

/// How much of the guest view is compared.
const COMPARED_BYTES: u64 = 64 << 10;

/// The kinds of difference between QEMU and Strata on the image at
/// `path` (whose bytes are `bytes`), given Strata's `decisions`.
pub fn divergences(path: &Path, bytes: &[u8], decisions: &Decisions) -> Vec<String> {
    let mut kinds = Vec::new();
    for (access, strata) in [
        (Access::ReadOnly, &decisions.read_only),
        (Access::ReadWrite, &decisions.read_write),
    ] {
        let Some(qemu) = qemu_io(path, access) else {
            continue;
        };
        kinds.extend(decision_divergence(access, &qemu.refusal, strata));
        if access == Access::ReadOnly && qemu.refusal.is_none() && strata.is_ok() {
            let Some(strata_bytes) = strata_first_bytes(bytes) else {
                continue;
            };
            if strata_bytes != qemu.first_bytes {
                kinds.push(read_divergence(&qemu.first_bytes, &strata_bytes));
            }
        }
    }
    kinds
}

/// What qemu-io made of an image.
struct QemuView {
    /// The open's error text, if refused.
    refusal: Option<String>,
    /// The first [`COMPARED_BYTES`] (or the whole virtual size) read
    /// read-only, or `Err` when the read failed.
    first_bytes: Result<Vec<u8>, ()>,
}

fn target(path: &Path) -> String {
    format!(
        r#"json:{{"driver": "qcow2", "backing": null, "file": {{"driver": "file", "filename": "{}"}}}}"#,
        path.display()
    )
}

fn qemu_io(path: &Path, access: Access) -> Option<QemuView> {
    let target = target(path);
    let mut command = Command::new("qemu-io");
    match access {
        Access::ReadOnly => {
            command.args(["-r", "-c"]);
            command.arg(format!("read -v 0 {COMPARED_BYTES}"));
        }
        Access::ReadWrite => {
            command.args(["-c", "write 0 512"]);
        }
    }
    let out = command.arg(&target).output().ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let refusal = stderr.contains("can't open").then(|| {
        let reason = stderr
            .split_once(&format!("{target}: "))
            .map_or(stderr.as_ref(), |(_, reason)| reason);
        reason.lines().next().unwrap_or_default().trim().to_string()
    });
    Some(QemuView {
        refusal,
        first_bytes: hexdump_bytes(&stdout, &stderr),
    })
}

/// The bytes of `read -v`'s hexdump (`00000000:  5a 5a ...  ZZ..`), or
/// `Err` when the read failed (qemu-io says so on stdout).
fn hexdump_bytes(stdout: &str, stderr: &str) -> Result<Vec<u8>, ()> {
    if stdout.contains("read failed") || stderr.contains("read failed") {
        return Err(());
    }
    let mut bytes = Vec::new();
    for line in stdout.lines() {
        let Some((address, rest)) = line.split_once(":  ") else {
            continue;
        };
        if address.len() != 8 || !address.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        let hex = rest.get(..16 * 3).unwrap_or(rest);
        bytes.extend(
            hex.split_whitespace()
                .map_while(|pair| u8::from_str_radix(pair, 16).ok()),
        );
    }
    Ok(bytes)
}

/// Strata's read of what qemu-io reads: the first [`COMPARED_BYTES`];
/// nothing to compare when the image is smaller (qemu-io refuses a read
/// past the end) or does not open.
fn strata_first_bytes(bytes: &[u8]) -> Option<Result<Vec<u8>, ()>> {
    let mut storage = MemStorage::from_bytes(bytes);
    let mut image = Qcow2::open(&mut storage, Access::ReadOnly).ok()?;
    if image.virtual_size() < COMPARED_BYTES {
        return None;
    }
    let mut buf = vec![0u8; COMPARED_BYTES as usize];
    let read = image.read(&mut storage, 0, &mut buf, None);
    Some(read.map(|()| buf).map_err(|_| ()))
}

fn mode(access: Access) -> &'static str {
    match access {
        Access::ReadOnly => "read-only",
        Access::ReadWrite => "read-write",
    }
}

fn decision_divergence(
    access: Access,
    qemu: &Option<String>,
    strata: &Result<(), String>,
) -> Option<String> {
    let mode = mode(access);
    let short = |text: &str| generic(text.lines().next().unwrap_or_default());
    match (qemu, strata) {
        (Some(reason), Ok(())) => Some(format!(
            "{mode}: QEMU refuses ({}), Strata opens",
            short(reason)
        )),
        (None, Err(e)) => Some(format!("{mode}: QEMU opens, Strata refuses ({})", short(e))),
        (Some(reason), Err(e)) if short(reason) != short(e) => Some(format!(
            "{mode}: both refuse, QEMU ({}), Strata ({})",
            short(reason),
            short(e)
        )),
        _ => None,
    }
}

fn read_divergence(qemu: &Result<Vec<u8>, ()>, strata: &Result<Vec<u8>, ()>) -> String {
    match (qemu, strata) {
        (Err(()), _) => "read-only: QEMU's read fails, Strata's succeeds".into(),
        (_, Err(())) => "read-only: Strata's read fails, QEMU's succeeds".into(),
        _ => "read-only: both read, the first 64 KiB differ".into(),
    }
}

/// An error text as a kind: numbers (offsets, indexes) become `N`, and
/// the text is cut at 80 characters.
pub fn generic(text: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for word in text.split_inclusive(|c: char| !c.is_ascii_alphanumeric()) {
        let (body, tail) = word.split_at(
            word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .len(),
        );
        let numeric = !body.is_empty()
            && (body.chars().all(|c| c.is_ascii_digit())
                || body
                    .strip_prefix("0x")
                    .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit())));
        if numeric {
            if !in_number {
                out.push('N');
            }
        } else {
            out.push_str(body);
        }
        in_number = numeric && tail.is_empty();
        out.push_str(tail);
    }
    out.chars().take(80).collect()
}
