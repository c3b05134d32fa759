//! Scenario catalogs: the project's (`sim/scenarios/*.json` with QEMU's
//! recorded observations in `sim/qemu/`), or the shared conformance
//! harness's (`scenarios/` with QEMU's observations in `golden/`): the
//! same format, so the simulator replays either.

use crate::error::{Error, Result};
use crate::scenario::{Observation, Scenario};
use crate::sched::Schedule;
use crate::{Bound, ExploreOptions, RunOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_block::policy::Policy;

/// `sim/` of this checkout.
pub fn sim_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Where a set of scenarios and QEMU's observations of them live.
#[derive(Clone, Debug)]
pub struct Catalog {
    scenarios: PathBuf,
    observations: PathBuf,
    /// The `cargo xtask sim` option that selects this catalog.
    option: &'static str,
    /// The block layer's policy its scenarios run under.
    policy: &'static Policy,
}

impl Catalog {
    /// The project's scenarios.
    pub fn project() -> Catalog {
        Catalog {
            scenarios: sim_dir().join("scenarios"),
            observations: sim_dir().join("qemu"),
            option: "",
            policy: strata_block::policy::default(),
        }
    }

    /// The shared conformance harness's scenarios and golden observations,
    /// if the harness is in [`Catalog::shared_harness_dir`].
    pub fn shared_harness() -> Option<Catalog> {
        let dir = Catalog::shared_harness_dir();
        dir.join("scenarios").is_dir().then(|| Catalog {
            scenarios: dir.join("scenarios"),
            observations: dir.join("golden"),
            option: "--harness ",
            policy: strata_block::policy::default(),
        })
    }

    /// Where the shared conformance harness is looked for:
    /// `$STRATA_CONFORMANCE`, else `../shared/conformance` beside the
    /// checkout.
    pub fn shared_harness_dir() -> PathBuf {
        let dir = std::env::var_os("STRATA_CONFORMANCE")
            .map(PathBuf::from)
            .unwrap_or_else(|| sim_dir().join("../../shared/conformance"));
        dir.canonicalize().unwrap_or(dir)
    }

    /// The same catalog, its scenarios run under `policy`.
    pub fn with_policy(self, policy: &'static Policy) -> Catalog {
        Catalog { policy, ..self }
    }

    /// The policy its scenarios run under.
    pub fn policy(&self) -> &'static Policy {
        self.policy
    }

    /// Run options with the catalog's policy.
    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            policy: self.policy,
            ..RunOptions::default()
        }
    }

    /// Exploration options with the catalog's policy and `bound`.
    pub fn explore_options(&self, bound: Bound) -> ExploreOptions {
        ExploreOptions {
            preemption_bound: bound,
            policy: self.policy,
            ..ExploreOptions::default()
        }
    }

    /// Every scenario, by name.
    pub fn scenarios(&self) -> Result<Vec<Arc<Scenario>>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.scenarios)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths.iter().map(|p| load(p)).collect()
    }

    /// The scenario called `name`.
    pub fn scenario(&self, name: &str) -> Result<Arc<Scenario>> {
        let path = self.scenarios.join(format!("{name}.json"));
        if !path.exists() {
            return Err(Error::UnknownScenario(name.to_string()));
        }
        load(&path)
    }

    /// QEMU's observation of `name`, when one was recorded.
    pub fn qemu_observation(&self, name: &str) -> Result<Option<Observation>> {
        let path = self.observations.join(format!("{name}.json"));
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)?;
        Observation::from_json(&text)
            .map(Some)
            .map_err(|e| Error::Scenario(format!("{}: {e}", path.display())))
    }

    /// A line saying where the scenarios and observations are.
    pub fn describe(&self) -> String {
        format!(
            "scenarios {}, QEMU's observations {}",
            self.scenarios.display(),
            self.observations.display()
        )
    }

    /// The command that replays `schedule` of `name` from this catalog
    /// (under its policy).
    pub fn replay_command(&self, name: &str, schedule: &Schedule) -> String {
        let policy = if self.policy == strata_block::policy::default() {
            String::new()
        } else {
            format!(" --policy {}", self.policy.name)
        };
        format!(
            "cargo xtask sim {}replay {name} {schedule}{policy}",
            self.option
        )
    }
}

fn load(path: &Path) -> Result<Arc<Scenario>> {
    let text = std::fs::read_to_string(path)?;
    let scenario = Scenario::from_json(&text)
        .map_err(|e| Error::Scenario(format!("{}: {e}", path.display())))?;
    Ok(Arc::new(scenario))
}

/// Every scenario of the project, by name.
pub fn scenarios() -> Result<Vec<Arc<Scenario>>> {
    Catalog::project().scenarios()
}

/// The project's scenario called `name`.
pub fn scenario(name: &str) -> Result<Arc<Scenario>> {
    Catalog::project().scenario(name)
}

/// QEMU's observation of the project's scenario `name`, when recorded.
pub fn qemu_observation(name: &str) -> Result<Option<Observation>> {
    Catalog::project().qemu_observation(name)
}
