//! `compare.py` in Rust: the differences between two observations, with
//! the scenario's volatile paths skipped.

use crate::scenario::{Datum, Graph, Observation, StepRecord};
use std::collections::{BTreeMap, BTreeSet};

/// Comparison options (`compare.py`'s flags).
#[derive(Clone, Copy, Debug, Default)]
pub struct CompareOptions {
    /// Also compare the volatile paths.
    pub no_volatile: bool,
    /// Ignore edge permissions.
    pub ignore_perms: bool,
}

impl CompareOptions {
    /// Every path compared, volatile ones included: how two outcomes of one
    /// scenario differ, or whether a run equals one QEMU run exactly.
    pub const WITH_VOLATILE: CompareOptions = CompareOptions {
        no_volatile: true,
        ignore_perms: false,
    };
}

/// One `path: a != b` line per difference.
pub fn compare(a: &Observation, b: &Observation, opts: CompareOptions) -> Vec<String> {
    let volatile: Vec<String> = a.volatile.iter().chain(&b.volatile).cloned().collect();
    let mut cmp = Cmp {
        opts,
        volatile,
        diffs: Vec::new(),
    };
    cmp.run(a, b);
    cmp.diffs
}

/// `compare.py`'s `norm_seq`: transient `paused`→`running` and
/// `standby`→`ready` pairs removed.
pub fn fold_transients(seq: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for x in seq {
        let transient = matches!(
            (out.last().map(String::as_str), x.as_str()),
            (Some("paused"), "running") | (Some("standby"), "ready")
        );
        if transient {
            out.pop();
        } else {
            out.push(x.clone());
        }
    }
    out
}

/// The `BLOCK_JOB_*` events across jobs, in order (`events/order`).
pub fn block_job_order(obs: &Observation) -> Vec<String> {
    obs.events
        .iter()
        .filter(|e| e.event != "JOB_STATUS_CHANGE")
        .map(|e| format!("{}({})", e.event, e.job.as_deref().unwrap_or("None")))
        .collect()
}

/// `fnmatch.fnmatchcase` for `*` and `?`.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// An edge's parent, role and child.
type EdgeKey = (String, String, String);
/// An edge's `perm` and `shared-perm`.
type PermPair = (Vec<String>, Vec<String>);

struct Cmp {
    opts: CompareOptions,
    volatile: Vec<String>,
    diffs: Vec<String>,
}

fn show<T: std::fmt::Debug>(v: &T) -> String {
    let s = format!("{v:?}");
    if s.len() > 300 {
        format!("{}...", &s[..300])
    } else {
        s
    }
}

impl Cmp {
    fn skip(&self, path: &str) -> bool {
        !self.opts.no_volatile
            && self
                .volatile
                .iter()
                .any(|p| glob(p.as_bytes(), path.as_bytes()) || path.starts_with(&format!("{p}/")))
    }

    fn value<T: PartialEq + std::fmt::Debug>(&mut self, path: &str, a: &T, b: &T) {
        if a != b && !self.skip(path) {
            self.diffs
                .push(format!("{path}: {} != {}", show(a), show(b)));
        }
    }

    fn graph(&mut self, path: &str, a: Option<&Graph>, b: Option<&Graph>) {
        if self.skip(path) {
            return;
        }
        let (Some(ga), Some(gb)) = (a, b) else {
            self.value(path, &a, &b);
            return;
        };
        let na: BTreeMap<&str, _> = ga.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let nb: BTreeMap<&str, _> = gb.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let names: BTreeSet<&str> = na.keys().chain(nb.keys()).copied().collect();
        for name in names {
            let p = format!("{path}/nodes/{name}");
            match (na.get(name), nb.get(name)) {
                (Some(x), Some(y)) => {
                    self.value(&format!("{p}/driver"), &x.driver, &y.driver);
                    self.value(&format!("{p}/filename"), &x.filename, &y.filename);
                    self.value(&format!("{p}/read-only"), &x.read_only, &y.read_only);
                    self.value(&format!("{p}/type"), &x.node_type, &y.node_type);
                }
                (x, y) => self.value(&p, &x.map(|n| &n.node_type), &y.map(|n| &n.node_type)),
            }
        }
        let group = |g: &'_ Graph| {
            let mut m: BTreeMap<EdgeKey, Vec<PermPair>> = BTreeMap::new();
            for e in &g.edges {
                m.entry((e.parent.clone(), e.role.clone(), e.child.clone()))
                    .or_default()
                    .push((e.perm.clone(), e.shared_perm.clone()));
            }
            for v in m.values_mut() {
                v.sort();
            }
            m
        };
        let (ea, eb) = (group(ga), group(gb));
        let keys: BTreeSet<_> = ea.keys().chain(eb.keys()).cloned().collect();
        for k in keys {
            let p = format!("{path}/edges/{} -{}-> {}", k.0, k.1, k.2);
            let (la, lb) = (
                ea.get(&k).cloned().unwrap_or_default(),
                eb.get(&k).cloned().unwrap_or_default(),
            );
            if la.len() != lb.len() {
                self.value(
                    &p,
                    &format!("{} edge(s)", la.len()),
                    &format!("{} edge(s)", lb.len()),
                );
                continue;
            }
            if self.opts.ignore_perms {
                continue;
            }
            for (x, y) in la.iter().zip(&lb) {
                self.value(&format!("{p}/perm"), &x.0, &y.0);
                self.value(&format!("{p}/shared-perm"), &x.1, &y.1);
            }
        }
    }

    fn step(&mut self, i: usize, a: &StepRecord, b: &StepRecord) {
        let desc = if let Some(e) = &a.execute {
            e.clone()
        } else if let Some(w) = &a.wait {
            format!(
                "wait {}",
                w.get("event").and_then(Datum::as_str).unwrap_or("None")
            )
        } else if a.settle.is_some() {
            "settle".into()
        } else if a.graph.is_some() || b.graph.is_some() {
            "graph".into()
        } else if a.wait_status.is_some() {
            "wait_status".into()
        } else if a.wait_progress.is_some() {
            "wait_progress".into()
        } else if a.sleep.is_some() {
            "sleep".into()
        } else if a.note.is_some() {
            "note".into()
        } else {
            "?".into()
        };
        let path = format!("steps/{i}({desc})");
        // Datum equality, like Python's: dictionaries in any key order.
        let spec = |s: &StepRecord| {
            [
                s.arguments.clone(),
                s.wait.clone(),
                s.settle.clone(),
                s.wait_status.clone(),
                s.wait_progress.clone(),
            ]
        };
        if a.execute != b.execute || spec(a) != spec(b) {
            self.diffs.push(format!("{path} [scenario differs]"));
            return;
        }
        self.value(&format!("{path}/result"), &a.result, &b.result);
        self.value(&format!("{path}/return"), &a.return_value, &b.return_value);
        self.value(&format!("{path}/data"), &a.data, &b.data);
        self.value(&format!("{path}/same"), &a.same, &b.same);
        self.value(&format!("{path}/status"), &a.status, &b.status);
        self.value(&format!("{path}/jobs"), &a.jobs, &b.jobs);
        if a.error.is_some() || b.error.is_some() {
            let class = |s: &StepRecord| s.error.as_ref().map(|e| e.class.clone());
            let desc = |s: &StepRecord| s.error.as_ref().map(|e| e.desc.clone());
            self.value(&format!("{path}/error/class"), &class(a), &class(b));
            self.value(&format!("{path}/error/desc"), &desc(a), &desc(b));
        }
        if a.graph.is_some() || b.graph.is_some() {
            self.graph(&format!("{path}/graph"), a.graph.as_ref(), b.graph.as_ref());
        }
    }

    fn events(&mut self, a: &Observation, b: &Observation) {
        if self.skip("events") {
            return;
        }
        let jobs: BTreeSet<&String> = a
            .job_event_sequences
            .keys()
            .chain(b.job_event_sequences.keys())
            .collect();
        for j in jobs {
            let sa = a.job_event_sequences.get(j).map(|s| fold_transients(s));
            let sb = b.job_event_sequences.get(j).map(|s| fold_transients(s));
            self.value(&format!("job_event_sequences/{j}"), &sa, &sb);
        }
        self.value("events/order", &block_job_order(a), &block_job_order(b));
    }

    fn run(&mut self, a: &Observation, b: &Observation) {
        self.value("harness_errors", &a.harness_errors, &b.harness_errors);
        if a.steps.len() != b.steps.len() {
            self.value(
                "steps [scenario differs]",
                &format!("{} steps", a.steps.len()),
                &format!("{} steps", b.steps.len()),
            );
        }
        for (i, (x, y)) in a.steps.iter().zip(&b.steps).enumerate() {
            self.step(i, x, y);
        }
        self.events(a, b);
        self.value("final_jobs", &a.final_jobs, &b.final_jobs);
        self.graph("graph", a.graph.as_ref(), b.graph.as_ref());
        let names: BTreeSet<&String> = a.images.keys().chain(b.images.keys()).collect();
        for name in names {
            let p = format!("images/{name}");
            match (a.images.get(name), b.images.get(name)) {
                (Some(x), Some(y)) => {
                    self.value(&format!("{p}/allocated"), &x.allocated, &y.allocated);
                    self.value(
                        &format!("{p}/backing-filename"),
                        &x.backing_filename,
                        &y.backing_filename,
                    );
                    self.value(
                        &format!("{p}/backing-filename-format"),
                        &x.backing_filename_format,
                        &y.backing_filename_format,
                    );
                    self.value(
                        &format!("{p}/convert_error"),
                        &x.convert_error,
                        &y.convert_error,
                    );
                    self.value(&format!("{p}/corrupt"), &x.corrupt, &y.corrupt);
                    self.value(&format!("{p}/format"), &x.format, &y.format);
                    self.value(&format!("{p}/info_error"), &x.info_error, &y.info_error);
                    self.value(&format!("{p}/map_error"), &x.map_error, &y.map_error);
                    self.value(&format!("{p}/sha256"), &x.sha256, &y.sha256);
                    self.value(
                        &format!("{p}/virtual-size"),
                        &x.virtual_size,
                        &y.virtual_size,
                    );
                }
                (x, y) => self.value(&p, &x.is_some(), &y.is_some()),
            }
        }
        self.value("final_queries", &a.final_queries, &b.final_queries);
        let code = |o: &Observation| o.server_exit.as_ref().and_then(|e| e.code);
        self.value("server_exit/code", &code(a), &code(b));
    }
}

/// An observation reduced to what the default comparison looks at for
/// events (folded sequences, `BLOCK_JOB_*` order): two runs with equal
/// outcomes compare equal.
pub fn outcome_key(obs: &Observation) -> String {
    let mut o = obs.clone();
    for seq in o.job_event_sequences.values_mut() {
        *seq = fold_transients(seq);
    }
    o.events.retain(|e| e.event != "JOB_STATUS_CHANGE");
    format!("{o:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_fnmatchcase() {
        assert!(glob(b"images/*/allocated", b"images/test.img/allocated"));
        assert!(glob(b"steps/?/return", b"steps/7/return"));
        assert!(!glob(b"steps/?/return", b"steps/17/return"));
        assert!(!glob(b"events", b"events/order"));
    }

    #[test]
    fn transient_pairs_fold_away() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            fold_transients(&s(&[
                "created", "running", "paused", "running", "ready", "standby", "ready", "null"
            ])),
            s(&["created", "running", "ready", "null"])
        );
    }
}
