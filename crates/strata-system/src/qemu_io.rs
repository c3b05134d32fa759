//! `human-monitor-command`: HMP's `qemu-io [-d] DEVICE "COMMAND"`, with
//! qemu-io's output for the guest I/O (`read`, `write`, `aio_read`,
//! `aio_write` with `-P`/`-z`, `flush`, `aio_flush`) and blkdebug's
//! breakpoints (`break`, `resume`, `remove_break`, `wait_break`) that
//! QEMU's iotests drive. Requests complete before the command answers,
//! so `aio_*` print their completion at once.

use std::time::{Duration, Instant};

use strata_block::{BlockLayer, BreakpointError, Files};
use strata_graph::{NodeId, Perm, RootId};
use strata_qmp::QmpError;

/// How long `wait_break` lets the jobs run in virtual time.
const WAIT_BREAK_LIMIT_NS: u64 = 60_000_000_000;

/// Runs one HMP command line; the text is the monitor's output (lines end
/// in `\r\n`, as HMP's output through QMP does).
pub fn human_monitor_command<F: Files>(
    layer: &mut BlockLayer<F>,
    line: &str,
) -> Result<String, QmpError> {
    let line = line.trim_start();
    let (name, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let out = match name {
        "qemu-io" => hmp_qemu_io(layer, rest.trim_start()),
        "" => String::new(),
        other => format!("unknown command: '{other}'\n"),
    };
    Ok(out.replace('\n', "\r\n"))
}

/// `hmp_qemu_io`: `[-d] DEVICE "COMMAND"`.
fn hmp_qemu_io<F: Files>(layer: &mut BlockLayer<F>, args: &str) -> String {
    let (qdev, args) = match args.strip_prefix("-d ") {
        Some(rest) => (true, rest.trim_start()),
        None => (false, args),
    };
    let (device, command) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
    let command = match hmp_string(command.trim_start()) {
        Ok(command) => command,
        Err(text) => return format!("{text}\n"),
    };
    if qdev {
        return "Error: strata-system: qemu-io -d (a device id) is not supported\n".to_string();
    }
    let (node, backend) = match layer.backend_by_name(device) {
        Some(root) => match layer.backend_root_node(root) {
            Some(node) => (node, Some(root)),
            None => return format!("Error: Device '{device}' has no medium\n"),
        },
        None => match layer.core().lookup_bs(None, Some(device)) {
            Ok(node) => (node, None),
            Err(err) => return format!("Error: {err}\n"),
        },
    };
    if let Err(text) = take_command_perms(layer, node, backend, &command) {
        return text;
    }
    qemu_io_command(layer, node, &command)
}

/// qemu-io's `command()`: a command that writes extends its
/// BlockBackend's permissions by `write` first (and they stay extended);
/// a node named directly gets a BlockBackend of its own, which a
/// read-only node refuses the same way. The refusal is printed as it is.
fn take_command_perms<F: Files>(
    layer: &mut BlockLayer<F>,
    node: NodeId,
    backend: Option<RootId>,
    command: &str,
) -> Result<(), String> {
    let name = command.split_whitespace().next().unwrap_or_default();
    if !WRITING_COMMANDS.contains(&name) {
        return Ok(());
    }
    let granted = match backend {
        Some(root) => layer.extend_backend_perm(root, Perm::WRITE),
        None => match layer.core().graph().graph().node(node) {
            Ok(n) if n.read_only => Err(strata_block::Error::generic("Block node is read-only")),
            _ => Ok(()),
        },
    };
    granted.map_err(|err| format!("{err}\n"))
}

/// The qemu-io commands whose `perm` is `BLK_PERM_WRITE`.
const WRITING_COMMANDS: &[&str] = &["write", "aio_write", "discard", "aio_discard"];

/// An HMP string argument: a double-quoted string with `\` escapes, or
/// the rest of the line.
fn hmp_string(text: &str) -> Result<String, String> {
    let Some(quoted) = text.strip_prefix('"') else {
        return Ok(text.trim_end().to_string());
    };
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Ok(out),
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated string".to_string())
}

/// One qemu-io command on `node`.
fn qemu_io_command<F: Files>(layer: &mut BlockLayer<F>, node: NodeId, command: &str) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    let Some((&name, args)) = words.split_first() else {
        return String::new();
    };
    match (name, args) {
        ("break", [event, tag]) => breakpoint("breakpoint", layer.set_breakpoint(node, event, tag)),
        ("remove_break", [tag]) => breakpoint("remove_break", layer.remove_breakpoint(node, tag)),
        ("resume", [tag]) => breakpoint("resume", layer.resume_breakpoint(node, tag)),
        ("wait_break", [tag]) => {
            let limit = layer.now_ns().saturating_add(WAIT_BREAK_LIMIT_NS);
            match layer.run_until_suspended(node, tag, limit) {
                Ok(()) => String::new(),
                Err(err) => format!("wait_break failed: {err}\n"),
            }
        }
        ("read" | "aio_read", args) => transfer(layer, node, Transfer::Read, name, args),
        ("write" | "aio_write", args) => transfer(layer, node, Transfer::Write, name, args),
        // Completed requests are in the files already: a flush has
        // nothing to wait for and prints nothing.
        ("flush" | "aio_flush", []) => String::new(),
        ("break" | "remove_break" | "resume" | "wait_break" | "flush" | "aio_flush", _) => {
            format!(
                "bad argument count {} to {name}, expected {}\n",
                args.len(),
                expected_args(name)
            )
        }
        _ => format!("command \"{name}\" not found\n"),
    }
}

fn expected_args(name: &str) -> &'static str {
    match name {
        "break" => "2 arguments",
        "flush" | "aio_flush" => "0 arguments",
        _ => "1 argument",
    }
}

/// qemu-io's report of a failed breakpoint command.
fn breakpoint(what: &str, result: Result<(), BreakpointError>) -> String {
    match result {
        Ok(()) => String::new(),
        Err(BreakpointError::NoBlkdebug) => format!("{what} failed: Operation not supported\n"),
        Err(BreakpointError::NoSuchTag) => format!("{what} failed: No such file or directory\n"),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transfer {
    Read,
    Write,
}

/// `read`/`write` and their `aio_` forms: `[-P pattern] [-z] offset len`.
fn transfer<F: Files>(
    layer: &mut BlockLayer<F>,
    node: NodeId,
    kind: Transfer,
    name: &str,
    args: &[&str],
) -> String {
    let mut pattern = None;
    let mut zeroes = false;
    let mut positional = Vec::new();
    let mut words = args.iter();
    while let Some(&word) = words.next() {
        match word {
            "-P" => match words.next().and_then(|p| parse_number(p)) {
                Some(p) => pattern = Some(p as u8),
                None => return "non-numeric pattern\n".to_string(),
            },
            "-z" if kind == Transfer::Write => zeroes = true,
            "-q" | "-v" | "-C" => {}
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return format!("{name}: invalid option -- '{}'\n", &flag[1..2])
            }
            value => positional.push(value),
        }
    }
    let [offset, count] = positional[..] else {
        return format!(
            "bad argument count {} to {name}, expected 2 arguments\n",
            positional.len()
        );
    };
    let Some(offset) = parse_number(offset) else {
        return format!("non-numeric offset argument -- {offset}\n");
    };
    let Some(count) = parse_number(count) else {
        return format!("non-numeric length argument -- {count}\n");
    };
    let start = Instant::now();
    let (verb, result, mut out) = match kind {
        Transfer::Read => {
            let mut buf = vec![0u8; count as usize];
            let result = layer.core_mut().read(node, offset, &mut buf);
            let mut out = String::new();
            if let (Ok(()), Some(p)) = (&result, pattern) {
                if buf.iter().any(|&b| b != p) {
                    out =
                        format!("Pattern verification failed at offset {offset}, {count} bytes\n");
                }
            }
            ("read", result, out)
        }
        Transfer::Write if zeroes => (
            "wrote",
            layer.core_mut().write_zeroes(node, offset, count),
            String::new(),
        ),
        Transfer::Write => {
            let data = vec![pattern.unwrap_or(0xcd); count as usize];
            (
                "wrote",
                layer.core_mut().write(node, offset, &data),
                String::new(),
            )
        }
    };
    if let Err(err) = result {
        let what = if kind == Transfer::Read {
            "read"
        } else {
            "write"
        };
        return format!("{what} failed: {}\n", strerror_of(&err));
    }
    out.push_str(&report(verb, start.elapsed(), offset, count));
    out
}

fn strerror_of(err: &std::io::Error) -> String {
    err.raw_os_error()
        .map(|errno| strata_block::strerror(errno).to_string())
        .unwrap_or_else(|| err.to_string())
}

/// `print_report`: what was done, then the totals and rates.
fn report(verb: &str, elapsed: Duration, offset: u64, count: u64) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    format!(
        "{verb} {count}/{count} bytes at offset {offset}\n{}, 1 ops; {} ({}/sec and {:.4} ops/sec)\n",
        cvtstr(count as f64),
        timestr(elapsed),
        cvtstr(count as f64 / secs),
        1.0 / secs
    )
}

/// qemu-io's `cvtstr`: a size with a binary unit, `.000` dropped.
pub fn cvtstr(value: f64) -> String {
    const UNITS: [(f64, &str); 6] = [
        (1152921504606846976.0, "EiB"),
        (1125899906842624.0, "PiB"),
        (1099511627776.0, "TiB"),
        (1073741824.0, "GiB"),
        (1048576.0, "MiB"),
        (1024.0, "KiB"),
    ];
    let (text, suffix) = UNITS
        .iter()
        .find(|(unit, _)| value >= *unit)
        .map(|(unit, name)| (format!("{:.3}", value / unit), *name))
        .unwrap_or_else(|| (format!("{value:.6}"), "bytes"));
    match text.find(".000") {
        Some(at) => format!("{} {suffix}", &text[..at]),
        None => format!("{text} {suffix}"),
    }
}

/// qemu-io's `timestr` without a fixed format.
fn timestr(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    if secs == 0 {
        return format!("0.{:04} sec", elapsed.subsec_nanos() / 100_000);
    }
    let frac = elapsed.subsec_nanos() as f64 / 1e9;
    format!(
        "{}:{:02}:{:05.2}",
        secs / 3600,
        (secs / 60) % 60,
        (secs % 60) as f64 + frac
    )
}

/// `cvtnum`: a number with an optional binary suffix (`k`, `M`, `G`,
/// `T`, `P`, `E`, either case; `b` for bytes), or hexadecimal with `0x`.
pub fn parse_number(text: &str) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok();
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let base: u64 = digits.parse().ok()?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        "e" => 60,
        _ => return None,
    };
    base.checked_mul(1u64 << shift)
}
