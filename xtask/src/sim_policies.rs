//! `cargo xtask sim policies`: the 2020 thread's positions compared over
//! every explored interleaving (docs/POLICIES.md).

use crate::viewer::{self, Cell, Table};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use strata_sim::policy::{self, Policy};
use strata_sim::scenario::Scenario;
use strata_sim::{policy_matrix, run_traced, Catalog, PolicyMatrix, Replay, RunOptions};

/// The arguments of `cargo xtask sim policies` (`--policy` is the sim
/// command's global option, given once per policy).
#[derive(clap::Args)]
pub struct PoliciesArgs {
    /// Scenario names (default: all).
    names: Vec<String>,
    /// At most this many non-canonical decisions per schedule.
    #[arg(long, default_value_t = 2)]
    bound: usize,
    /// Print the matrix as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the matrix as HTML into this directory: `index.html`,
    /// each violation linking to its counterexample's timeline.
    #[arg(long, value_name = "DIR")]
    html: Option<PathBuf>,
}

/// Runs the command: the matrix over the selected scenarios and policies
/// (all when none is given).
pub fn policies(
    cat: &Catalog,
    names: &[String],
    args: &PoliciesArgs,
) -> Result<bool, Box<dyn std::error::Error>> {
    let chosen = chosen_policies(names)?;
    let scenarios = if args.names.is_empty() {
        cat.scenarios()?
    } else {
        args.names
            .iter()
            .map(|n| cat.scenario(n))
            .collect::<Result<_, _>>()?
    };
    let start = Instant::now();
    let matrix = policy_matrix(&scenarios, &chosen, args.bound)?;
    let secs = start.elapsed().as_secs_f64();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&matrix))?);
    } else {
        print!("{}", matrix.to_text());
        let states: u64 = matrix
            .rows
            .iter()
            .flat_map(|r| &r.cells)
            .map(|c| c.states)
            .sum();
        println!("\n{states} states explored in {secs:.1} s");
    }
    if let Some(dir) = &args.html {
        let index = write_html(dir, &scenarios, &matrix)?;
        println!("report: {}", index.display());
    }
    Ok(true)
}

/// Writes the matrix into `dir/index.html` (a cell per scenario and
/// policy, flagged where its outcomes differ from qemu-10.0's) with, under
/// it, every violation linking to the timeline of its smallest
/// counterexample (`SCENARIO--POLICY--PROPERTY.html`).
pub(crate) fn write_html(
    dir: &Path,
    scenarios: &[Arc<Scenario>],
    matrix: &PolicyMatrix,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let mut columns = vec!["scenario".to_string()];
    columns.extend(matrix.policies.iter().map(|p| p.name.to_string()));
    let mut cells = Table {
        columns,
        rows: Vec::new(),
    };
    let mut violations = Table {
        columns: ["scenario", "policy", "property", "what broke", "replay"]
            .map(String::from)
            .to_vec(),
        rows: Vec::new(),
    };
    for (row, scenario) in matrix.rows.iter().zip(scenarios) {
        let mut line = vec![Cell::text(row.scenario.clone())];
        for (cell, p) in row.cells.iter().zip(&matrix.policies) {
            line.push(Cell {
                text: cell.text(),
                link: None,
                flagged: cell.differs,
            });
            for (prop, ex) in &cell.violations {
                let file = format!("{}--{}--{}.html", row.scenario, p.name, prop.name());
                let options = RunOptions {
                    policy: p,
                    ..RunOptions::default()
                };
                let replay = strata_sim::matrix_replay_command(&row.scenario, &ex.schedule, p);
                let traced = run_traced(scenario, &mut Replay::new(&ex.schedule), options)
                    .map_err(|f| format!("{}: {}  [{replay}]", row.scenario, f.error))?;
                let title = format!("{} under {}", row.scenario, p.name);
                let subtitle = format!("{}: {}", prop.name(), viewer::escape(&ex.detail));
                viewer::write_timeline(&dir.join(&file), &title, &subtitle, &traced.trace)?;
                violations.rows.push(vec![
                    Cell::text(row.scenario.clone()),
                    Cell::text(p.name),
                    Cell::text(prop.name()),
                    Cell {
                        text: ex.detail.clone(),
                        link: Some(file),
                        flagged: true,
                    },
                    Cell::text(replay),
                ]);
            }
        }
        cells.rows.push(line);
    }
    let subtitle = format!(
        "preemption bound {}: outcomes and violated properties per scenario and policy; flagged: outcomes differ from qemu-10.0",
        matrix.bound
    );
    let body = viewer::table_html(&cells)
        + "<h2>violations, each with its smallest counterexample's timeline</h2>\n"
        + &viewer::table_html(&violations);
    let index = dir.join("index.html");
    std::fs::write(&index, viewer::page("policy matrix", &subtitle, &body))?;
    Ok(index)
}

fn chosen_policies(names: &[String]) -> Result<Vec<&'static Policy>, String> {
    if names.is_empty() {
        return Ok(policy::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| policy::by_name(n).ok_or_else(|| unknown_policy(n)))
        .collect()
}

/// The matrix as JSON: the same data as the text, for other renderers.
fn to_json(m: &PolicyMatrix) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = m
        .rows
        .iter()
        .map(|row| {
            let cells: Vec<serde_json::Value> = row
                .cells
                .iter()
                .zip(&m.policies)
                .map(|(c, p)| {
                    let violations: serde_json::Map<String, serde_json::Value> = c
                        .violations
                        .iter()
                        .map(|(prop, ex)| {
                            let replay = strata_sim::matrix_replay_command(&row.scenario, &ex.schedule, p);
                            (
                                prop.name().to_string(),
                                serde_json::json!({"detail": ex.detail, "schedule": ex.schedule.to_string(), "replay": replay}),
                            )
                        })
                        .collect();
                    serde_json::json!({
                        "policy": p.name, "states": c.states, "outcomes": c.outcomes,
                        "differs": c.differs, "violations": violations,
                    })
                })
                .collect();
            serde_json::json!({"scenario": row.scenario, "cells": cells})
        })
        .collect();
    serde_json::json!({
        "bound": m.bound,
        "policies": m.policies.iter().map(|p| p.name).collect::<Vec<_>>(),
        "rows": rows,
    })
}

/// The error for a policy name that does not exist.
pub(crate) fn unknown_policy(name: &str) -> String {
    format!(
        "unknown policy '{name}' (known: {})",
        policy::names().join(", ")
    )
}
