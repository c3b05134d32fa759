//! The project's scenarios (`sim/scenarios/*.json`) and QEMU's recorded
//! observations of them (`sim/qemu/*.json`).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_qmp::scenario::{Observation, Scenario};

/// `sim/` of this checkout.
pub fn sim_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Every scenario, by name.
pub fn scenarios() -> Result<Vec<Arc<Scenario>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(sim_dir().join("scenarios"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

fn load(path: &Path) -> Result<Arc<Scenario>> {
    let text = std::fs::read_to_string(path)?;
    let scenario = Scenario::from_json(&text)
        .map_err(|e| Error::Scenario(format!("{}: {e}", path.display())))?;
    Ok(Arc::new(scenario))
}

/// The scenario called `name`.
pub fn scenario(name: &str) -> Result<Arc<Scenario>> {
    let path = sim_dir().join("scenarios").join(format!("{name}.json"));
    if !path.exists() {
        return Err(Error::UnknownScenario(name.to_string()));
    }
    load(&path)
}

/// QEMU's observation of `name`, when one was recorded.
pub fn qemu_observation(name: &str) -> Result<Option<Observation>> {
    let path = sim_dir().join("qemu").join(format!("{name}.json"));
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)?;
    Observation::from_json(&text)
        .map(Some)
        .map_err(|e| Error::Scenario(format!("{}: {e}", path.display())))
}
