//! `cargo xtask sim policies`: the 2020 thread's positions compared over
//! every explored interleaving (docs/POLICIES.md).

use std::time::Instant;
use strata_sim::policy::{self, Policy};
use strata_sim::{policy_matrix, Catalog, PolicyMatrix};

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
    Ok(true)
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
