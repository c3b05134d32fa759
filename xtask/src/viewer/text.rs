//! The trace as text: one line per step, then its events and changes
//! (`cargo xtask sim replay -v`), and the words the HTML timeline shows.

use strata_sim::scenario::datum_text;
use strata_sim::{Action, Trace, TraceStep};

/// What a step did, in one line: `block-stream {...} -> ok`, `job s`, ...
pub fn headline(step: &TraceStep) -> String {
    match &step.action {
        Action::Command {
            name,
            arguments,
            reply,
        } => {
            let args = arguments.as_deref().unwrap_or("");
            let reply = match reply {
                Ok(None) => "ok".to_string(),
                Ok(Some(value)) => format!("return {value}"),
                Err(desc) => format!("error: {desc}"),
            };
            format!("{name} {args} -> {reply}")
        }
        Action::Client { what } => what.clone(),
        Action::ClientBusy => "client (settling, or capturing the final state)".into(),
        Action::Job { id } => format!("job {id} runs to its next yield"),
        Action::Advance { to_ns } => format!("clock -> {}", seconds(*to_ns)),
    }
}

/// Virtual nanoseconds as seconds.
pub fn seconds(ns: u64) -> String {
    format!("{:.6}s", ns as f64 / 1e9)
}

/// The lines under a step: its events, then its changes.
pub fn details(step: &TraceStep) -> Vec<String> {
    let events = step
        .events
        .iter()
        .map(|e| format!("event {} {}", e.name, datum_text(&e.data)));
    events
        .chain(step.changes.iter().map(ToString::to_string))
        .collect()
}

/// The whole trace: `replay -v`'s timeline with per-step graph diffs.
pub fn timeline(trace: &Trace) -> String {
    let mut out = String::new();
    for (i, step) in trace.steps.iter().enumerate() {
        out += &format!(
            "{i:6} {:>12}  {:<14} {}\n",
            seconds(step.time_ns),
            step.task.to_string(),
            headline(step)
        );
        for line in details(step) {
            out += &format!("{:29}{line}\n", "");
        }
    }
    out
}
