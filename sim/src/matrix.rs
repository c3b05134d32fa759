//! The policy matrix: every scenario explored under every policy, each
//! outcome checked against the [`Property`]s.
//!
//! The matrix is plain data ([`PolicyMatrix`]); [`PolicyMatrix::to_text`]
//! renders it for a terminal, and anything else (a JSON writer, an HTML
//! viewer) can render the same value.

use crate::compare::outcome_key;
use crate::error::Result;
use crate::explore::{explore, Bound, ExploreOptions, Progress};
use crate::properties::{Baseline, Property, Violation};
use crate::scenario::Scenario;
use crate::sched::Schedule;
use crate::state_graph::schedule_cmp;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Arc;
use strata_block::policy::{self, Policy};

/// Rows: scenarios; columns: policies (`qemu-10.0` first).
#[derive(Clone, Debug)]
pub struct PolicyMatrix {
    /// The preemption bound of every exploration.
    pub bound: usize,
    /// The columns.
    pub policies: Vec<&'static Policy>,
    /// One row per scenario.
    pub rows: Vec<MatrixRow>,
}

/// One scenario under every policy.
#[derive(Clone, Debug)]
pub struct MatrixRow {
    /// The scenario's name.
    pub scenario: String,
    /// One cell per policy, in the matrix's column order.
    pub cells: Vec<MatrixCell>,
}

/// One scenario explored under one policy.
#[derive(Clone, Debug)]
pub struct MatrixCell {
    /// States visited.
    pub states: u64,
    /// Distinct outcomes.
    pub outcomes: usize,
    /// Whether the set of outcomes differs from `qemu-10.0`'s.
    pub differs: bool,
    /// Per violated property, its smallest counterexample.
    pub violations: BTreeMap<Property, Counterexample>,
}

/// The smallest schedule found that violates a property.
#[derive(Clone, Debug)]
pub struct Counterexample {
    /// The schedule (replayable).
    pub schedule: Schedule,
    /// What was seen.
    pub detail: String,
}

impl MatrixCell {
    /// The cell as text: outcomes, the codes of the violated properties,
    /// `*` when the outcomes differ from `qemu-10.0`'s.
    pub fn text(&self) -> String {
        let codes: String = self.violations.keys().map(|p| p.code()).collect();
        let codes = if codes.is_empty() { "-".into() } else { codes };
        let differs = if self.differs { " *" } else { "" };
        format!("{} {codes}{differs}", self.outcomes)
    }
}

/// Explores every scenario under every policy (`qemu-10.0` is always
/// explored, as the column the others are compared with).
pub fn policy_matrix(
    scenarios: &[Arc<Scenario>],
    policies: &[&'static Policy],
    bound: usize,
) -> Result<PolicyMatrix> {
    let mut columns = vec![policy::default()];
    columns.extend(policies.iter().copied().filter(|p| *p != policy::default()));
    let baselines = scenarios
        .iter()
        .map(Baseline::new)
        .collect::<Result<Vec<_>>>()?;
    // Every (scenario, policy) pair is independent: explored in parallel,
    // collected in order, so the matrix does not depend on the threads.
    let pairs: Vec<(usize, &'static Policy)> = (0..scenarios.len())
        .flat_map(|s| columns.iter().map(move |&p| (s, p)))
        .collect();
    let explored = pairs
        .into_par_iter()
        .map(|(s, p)| explore_cell(&scenarios[s], &baselines[s], p, bound))
        .collect::<Result<Vec<_>>>()?;
    let mut explored = explored.into_iter();
    let rows = scenarios
        .iter()
        .map(|scenario| {
            let row: Vec<_> = explored.by_ref().take(columns.len()).collect();
            let reference = row[0].1.clone();
            let cells = row
                .into_iter()
                .map(|(cell, keys)| MatrixCell {
                    differs: keys != reference,
                    ..cell
                })
                .collect();
            MatrixRow {
                scenario: scenario.name.clone(),
                cells,
            }
        })
        .collect();
    Ok(PolicyMatrix {
        bound,
        policies: columns,
        rows,
    })
}

/// One cell and the keys of its outcomes.
fn explore_cell(
    scenario: &Arc<Scenario>,
    baseline: &Baseline,
    policy: &'static Policy,
    bound: usize,
) -> Result<(MatrixCell, BTreeSet<String>)> {
    let options = ExploreOptions {
        preemption_bound: Bound::Preemptions(bound),
        policy,
        check_structure: true,
        ..ExploreOptions::default()
    };
    let found = explore(scenario, options, &Progress::default())?;
    let mut violations: BTreeMap<Property, Counterexample> = BTreeMap::new();
    let mut keep = |v: Violation, schedule: &Schedule| {
        let smaller = violations
            .get(&v.property)
            .is_none_or(|c| schedule_cmp(schedule, &c.schedule).is_lt());
        if smaller {
            let example = Counterexample {
                schedule: schedule.clone(),
                detail: v.detail,
            };
            violations.insert(v.property, example);
        }
    };
    let mut keys = BTreeSet::new();
    for outcome in &found.outcomes {
        keys.insert(outcome_key(&outcome.observation));
        for v in baseline.check(&outcome.observation) {
            keep(v, &outcome.example);
        }
    }
    for (schedule, message) in found.structure.values() {
        let property = Property::of_failure(message);
        let detail = message.trim_start_matches(property.name());
        keep(
            Violation {
                property,
                detail: detail.trim_start_matches(": ").to_string(),
            },
            schedule,
        );
    }
    for (schedule, message) in &found.failures {
        keys.insert(format!("failure: {message}"));
        let property = Property::of_failure(message);
        keep(
            Violation {
                property,
                detail: message.clone(),
            },
            schedule,
        );
    }
    let cell = MatrixCell {
        states: found.states,
        outcomes: found.outcomes.len(),
        differs: false,
        violations,
    };
    Ok((cell, keys))
}

impl PolicyMatrix {
    /// The matrix, its legend, and each violation's smallest counterexample
    /// as a replay command.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let width = self
            .rows
            .iter()
            .map(|r| r.scenario.len())
            .max()
            .unwrap_or(8);
        let _ = writeln!(
            out,
            "policy matrix, preemption bound {}: outcomes, violated properties, * = outcomes differ from qemu-10.0",
            self.bound
        );
        let _ = write!(out, "{:width$}", "scenario");
        for p in &self.policies {
            let _ = write!(out, " {:>13}", p.name);
        }
        out.push('\n');
        for row in &self.rows {
            let _ = write!(out, "{:width$}", row.scenario);
            for cell in &row.cells {
                let _ = write!(out, " {:>13}", cell.text());
            }
            out.push('\n');
        }
        out.push_str(&self.totals());
        out.push_str("\nproperties:\n");
        for p in Property::ALL {
            let _ = writeln!(out, "  {} {:22} {}", p.code(), p.name(), p.reason());
        }
        out.push_str(&self.counterexamples_text());
        out
    }

    /// Per policy: how many scenarios violate each property.
    fn totals(&self) -> String {
        let mut out = String::from("\nscenarios violating, per policy:\n");
        for (i, p) in self.policies.iter().enumerate() {
            let mut counts: BTreeMap<Property, usize> = BTreeMap::new();
            let mut differ = 0;
            for row in &self.rows {
                differ += usize::from(row.cells[i].differs);
                for prop in row.cells[i].violations.keys() {
                    *counts.entry(*prop).or_default() += 1;
                }
            }
            let list: Vec<String> = counts
                .iter()
                .map(|(prop, n)| format!("{} {n}", prop.name()))
                .collect();
            let _ = writeln!(
                out,
                "  {:13} differs from qemu-10.0 in {differ}; {}",
                p.name,
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                }
            );
        }
        out
    }

    fn counterexamples_text(&self) -> String {
        let mut out = String::from("\nsmallest counterexamples:\n");
        for row in &self.rows {
            for (cell, p) in row.cells.iter().zip(&self.policies) {
                for (prop, c) in &cell.violations {
                    let _ = writeln!(
                        out,
                        "  {} under {}: {}: {}\n    {}",
                        row.scenario,
                        p.name,
                        prop.name(),
                        c.detail,
                        replay_command(&row.scenario, &c.schedule, p)
                    );
                }
            }
        }
        out
    }
}

/// The command that replays `schedule` of the project's scenario `name`
/// under `policy`.
pub fn replay_command(name: &str, schedule: &Schedule, policy: &'static Policy) -> String {
    crate::Catalog::project()
        .with_policy(policy)
        .replay_command(name, schedule)
}
