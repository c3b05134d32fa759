//! Shrinking a scenario that shows a difference to a minimal one that
//! still shows it.
//!
//! The reducer knows scenarios only as JSON; whether a candidate still
//! shows the difference is the caller's question (in `cargo xtask fuzz`:
//! QEMU run twice and valid, the Strata side differing in the same kind).
//! Steps go first, in halving chunks (ddmin without the complements),
//! then single writes, image options and optional command arguments.

use serde_json::Value;

/// Arguments a candidate may lose: the ones that choose what a command
/// does rather than what it acts on. Not `speed`: a job that loses its
/// throttle races the commands after it, and a reduced scenario would
/// show a timing lottery rather than a rule.
const OPTIONAL_ARGUMENTS: [&str; 17] = [
    "base",
    "base-node",
    "bottom",
    "top",
    "top-node",
    "backing-file",
    "backing-mask-protocol",
    "filter-node-name",
    "on-error",
    "auto-finalize",
    "auto-dismiss",
    "force",
    "writable",
    "align",
    "inject-error",
    "limits",
    "name",
];

/// Image keys a candidate may lose.
const OPTIONAL_IMAGE_KEYS: [&str; 5] = ["options", "cluster_size", "content", "writes", "size"];

/// One simplification of a scenario: something removed.
#[derive(Clone, Debug, PartialEq)]
enum Removal {
    /// Remove `len` steps from `start`.
    Steps { start: usize, len: usize },
    /// Remove one write of an image.
    Write { image: usize, write: usize },
    /// Remove a key of an image.
    ImageKey { image: usize, key: &'static str },
    /// Remove an argument of an `execute` step.
    Argument { step: usize, key: &'static str },
}

/// A reduction in progress: the smallest scenario that still shows the
/// difference, what showed it, and the tries left.
struct Reduction<'a, E> {
    current: Value,
    evidence: E,
    tries_left: usize,
    shows: &'a mut dyn FnMut(&Value) -> Option<E>,
}

impl<E> Reduction<'_, E> {
    /// Applies `removal` if the result still shows the difference.
    fn attempt(&mut self, removal: &Removal) -> bool {
        if self.tries_left == 0 {
            return false;
        }
        let Some(candidate) = apply(&self.current, removal) else {
            return false;
        };
        self.tries_left -= 1;
        match (self.shows)(&candidate) {
            Some(evidence) => {
                self.current = candidate;
                self.evidence = evidence;
                true
            }
            None => false,
        }
    }

    fn steps(&self) -> usize {
        self.current["steps"].as_array().map_or(0, Vec::len)
    }

    /// Removes chunks of steps, halving the chunk size down to one step.
    fn drop_steps(&mut self) -> bool {
        let mut changed = false;
        let mut chunk = (self.steps() / 2).max(1);
        loop {
            let mut start = 0;
            while start < self.steps() && self.tries_left > 0 {
                let len = chunk.min(self.steps() - start);
                if self.attempt(&Removal::Steps { start, len }) {
                    changed = true;
                } else {
                    start += len;
                }
            }
            if chunk == 1 {
                return changed;
            }
            chunk /= 2;
        }
    }

    /// Tries every other simplification once, last first (an removal that
    /// succeeds moves only what comes after it).
    fn simplify(&mut self) -> bool {
        let mut changed = false;
        let mut position = simplifications(&self.current).len();
        while position > 0 && self.tries_left > 0 {
            position -= 1;
            let removals = simplifications(&self.current);
            if let Some(removal) = removals.get(position) {
                changed |= self.attempt(removal);
            }
        }
        changed
    }
}

/// Shrinks `scenario`, which shows a difference with `evidence`, as long
/// as `shows` says a smaller one still shows it (returning its evidence),
/// within `max_tries` calls of `shows`. Returns the smallest scenario, its
/// evidence and the number of tries made.
pub fn reduce<E>(
    scenario: Value,
    evidence: E,
    max_tries: usize,
    shows: &mut dyn FnMut(&Value) -> Option<E>,
) -> (Value, E, usize) {
    let mut r = Reduction {
        current: scenario,
        evidence,
        tries_left: max_tries,
        shows,
    };
    while r.tries_left > 0 {
        let dropped = r.drop_steps();
        let simplified = r.simplify();
        if !dropped && !simplified {
            break;
        }
    }
    let tries = max_tries - r.tries_left;
    (r.current, r.evidence, tries)
}

/// Every single-element simplification of `scenario`, in scenario order.
fn simplifications(scenario: &Value) -> Vec<Removal> {
    let mut removals = Vec::new();
    for (image, spec) in scenario["images"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for key in OPTIONAL_IMAGE_KEYS {
            if spec.get(key).is_some() {
                removals.push(Removal::ImageKey { image, key });
            }
        }
        for write in 0..spec["writes"].as_array().map_or(0, Vec::len) {
            removals.push(Removal::Write { image, write });
        }
    }
    for (step, spec) in scenario["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for key in OPTIONAL_ARGUMENTS {
            if spec["arguments"].get(key).is_some() {
                removals.push(Removal::Argument { step, key });
            }
        }
    }
    removals
}

/// `scenario` with `removal` applied; `None` when it does not apply.
fn apply(scenario: &Value, removal: &Removal) -> Option<Value> {
    let mut out = scenario.clone();
    match *removal {
        Removal::Steps { start, len } => {
            let steps = out["steps"].as_array_mut()?;
            if start + len > steps.len() || len == 0 {
                return None;
            }
            steps.drain(start..start + len);
        }
        Removal::Write { image, write } => {
            let writes = out["images"][image]["writes"].as_array_mut()?;
            if write >= writes.len() {
                return None;
            }
            writes.remove(write);
        }
        Removal::ImageKey { image, key } => {
            out["images"][image].as_object_mut()?.remove(key)?;
        }
        Removal::Argument { step, key } => {
            out["steps"][step]["arguments"]
                .as_object_mut()?
                .remove(key)?;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A synthetic difference: shown while a commit with `base-node` and
    /// the write at offset 4096 are both still there.
    #[test]
    fn shrinks_to_what_shows_the_difference() {
        let scenario = json!({
            "name": "synthetic",
            "images": [{"name": "a.img", "size": 1048576, "cluster_size": 65536,
                "writes": [{"pattern": 1, "offset": 0, "length": 512},
                           {"pattern": 2, "offset": 4096, "length": 512}]}],
            "steps": [
                {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "n0"}},
                {"execute": "query-jobs"},
                {"execute": "block-commit", "arguments": {"device": "n0", "base-node": "x", "on-error": "stop"}},
                {"graph": true},
                {"settle": true},
            ]
        });
        let mut shows = |s: &Value| {
            let text = s.to_string();
            (text.contains("\"base-node\"") && text.contains("4096")).then_some(text.len())
        };
        let (reduced, evidence, tries) = reduce(scenario.clone(), 0, 1000, &mut shows);
        assert_eq!(
            reduced,
            json!({
                "name": "synthetic",
                "images": [{"name": "a.img", "writes": [{"pattern": 2, "offset": 4096, "length": 512}]}],
                "steps": [{"execute": "block-commit", "arguments": {"device": "n0", "base-node": "x"}}]
            })
        );
        assert_eq!(evidence, reduced.to_string().len());
        assert!(tries > 0 && tries < 100, "{tries} tries");
    }

    #[test]
    fn stops_after_max_tries() {
        let scenario = json!({"name": "s", "images": [], "steps": [{"sleep": 1}, {"sleep": 2}]});
        let mut calls = 0;
        let mut shows = |_: &Value| {
            calls += 1;
            None::<()>
        };
        let (reduced, _, tries) = reduce(scenario.clone(), (), 1, &mut shows);
        assert_eq!((reduced, tries), (scenario, 1));
        assert_eq!(calls, 1);
    }
}
