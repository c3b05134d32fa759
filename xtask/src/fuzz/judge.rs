//! What a scenario's runs say: QEMU crashed, QEMU found the scenario
//! invalid, or the Strata sides agree with QEMU or differ (and how).

use strata_sim::scenario::Observation;
use strata_sim::{compare, CompareOptions};

/// The Strata side a difference is on.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Side {
    /// strata-qsd through the harness.
    Daemon,
    /// strata-sim in-process.
    Simulator,
}

impl Side {
    /// Lower-case name, for summaries and file names.
    pub fn name(self) -> &'static str {
        match self {
            Side::Daemon => "daemon",
            Side::Simulator => "simulator",
        }
    }
}

/// QEMU's outcome of a scenario over its repeated runs.
pub enum QemuOutcome {
    /// qemu-storage-daemon died of a signal in some run (`server_exit`).
    Crashed(String),
    /// An expectation failed or the harness failed in some run.
    Invalid(String),
    /// The first run, with the paths that differed between runs declared
    /// volatile.
    Valid(Box<Observation>),
}

/// QEMU's outcome from its runs of one scenario.
pub fn qemu_outcome(runs: &[Observation]) -> QemuOutcome {
    for run in runs {
        if let Some(exit) = &run.server_exit {
            if exit.code.is_some_and(|c| c < 0) && !exit.killed {
                let code = exit.code.unwrap_or_default();
                return QemuOutcome::Crashed(format!(
                    "qemu-storage-daemon died of signal {}",
                    -code
                ));
            }
        }
    }
    for run in runs {
        if !run.harness_errors.is_empty() {
            let first = run.harness_errors[0]
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            return QemuOutcome::Invalid(format!("harness error: {first}"));
        }
        if !run.expectations_failed.is_empty() {
            return QemuOutcome::Invalid(format!(
                "expectations failed: steps {:?}",
                run.expectations_failed
            ));
        }
    }
    let mut first = runs.first().cloned().unwrap_or_default();
    first.volatile.extend(volatile_paths(runs));
    QemuOutcome::Valid(Box::new(first))
}

/// Every path in which a later run differs from the first (the scenario's
/// declared volatile paths included): what QEMU leaves to chance here.
pub fn volatile_paths(runs: &[Observation]) -> Vec<String> {
    let Some((first, rest)) = runs.split_first() else {
        return Vec::new();
    };
    let mut paths: Vec<String> = rest
        .iter()
        .flat_map(|run| compare(first, run, CompareOptions::WITH_VOLATILE))
        .map(|line| diff_path(&line).to_string())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// The path of a `compare` line (`path: a != b` or `path [scenario
/// differs]`).
pub fn diff_path(line: &str) -> &str {
    let end = line
        .find(": ")
        .or_else(|| line.find(" ["))
        .unwrap_or(line.len());
    &line[..end]
}

/// The differences between QEMU's observation and a Strata side's.
pub fn differences(qemu: &Observation, strata: &Observation) -> Vec<String> {
    compare(qemu, strata, CompareOptions::default())
}

/// The kind of a difference: its path with step indices, node, image and
/// job names left out, so that one rule's difference in many scenarios is
/// one kind (`steps/(block-commit)/error/desc`, `images/*/backing-filename`,
/// `graph/edges/-backing->/perm`).
pub fn kind(line: &str) -> String {
    let path = diff_path(line);
    if let Some(rest) = path.strip_prefix("steps/") {
        let (step, inner) = rest.split_once('/').unwrap_or((rest, ""));
        let command = step.find('(').map_or(step, |i| &step[i..]);
        let inner = if inner.starts_with("graph/") {
            graph_kind(inner)
        } else {
            inner.to_string()
        };
        return format!("steps/{command}/{inner}");
    }
    if path.starts_with("graph/") {
        return graph_kind(path);
    }
    for prefix in ["images/", "job_event_sequences/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            let field = rest
                .split_once('/')
                .map(|(_, f)| format!("/{f}"))
                .unwrap_or_default();
            return format!("{prefix}*{field}");
        }
    }
    path.to_string()
}

/// `graph/nodes/NAME/field` → `graph/nodes/*/field`; `graph/edges/P
/// -ROLE-> C/perm` → `graph/edges/-ROLE->/perm`. Node names may contain
/// `/`, so the field is recognised by name.
fn graph_kind(path: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or("");
    if path.starts_with("graph/nodes/") {
        let field = ["driver", "filename", "read-only", "type"]
            .contains(&last)
            .then_some(last);
        return format!(
            "graph/nodes/*{}",
            field.map(|f| format!("/{f}")).unwrap_or_default()
        );
    }
    let role = path
        .find(" -")
        .and_then(|start| {
            path[start + 1..]
                .find("-> ")
                .map(|end| &path[start + 1..start + 1 + end + 2])
        })
        .unwrap_or("");
    let field = ["perm", "shared-perm"].contains(&last).then_some(last);
    format!(
        "graph/edges/{role}{}",
        field.map(|f| format!("/{f}")).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_leave_out_indices_and_names() {
        assert_eq!(
            kind("steps/12(block-commit)/error/desc: Some(\"a\") != Some(\"b\")"),
            "steps/(block-commit)/error/desc"
        );
        assert_eq!(
            kind("images/img2.img/backing-filename: None != Some(\"x\")"),
            "images/*/backing-filename"
        );
        assert_eq!(
            kind("graph/edges/n2 -backing-> n1/perm: [] != [\"consistent-read\"]"),
            "graph/edges/-backing->/perm"
        );
        assert_eq!(
            kind("graph/nodes/n2/backing/driver: Some(\"a\") != None"),
            "graph/nodes/*/driver"
        );
        assert_eq!(
            kind("steps/3(graph)/graph/nodes/f1: None != Some(\"block-driver\")"),
            "steps/(graph)/graph/nodes/*"
        );
        assert_eq!(
            kind("job_event_sequences/j3: a != b"),
            "job_event_sequences/*"
        );
    }
}
