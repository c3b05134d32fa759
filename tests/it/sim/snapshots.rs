//! One snapshot set per scenario: the final graph as DOT and the whole
//! observation as YAML. `insta::glob!` asserts each scenario on its own and
//! fails at the end, so one run reports every scenario a change of
//! semantics touched, and `cargo insta review` shows them all.

use super::{canonical, insta_settings};
use std::path::Path;
use std::sync::Arc;
use strata_sim::scenario::Scenario;
use strata_sim::{sim_dir, to_dot};

#[test]
fn final_graphs_and_observations() {
    insta_settings().bind(|| {
        insta::glob!(sim_dir().join("scenarios"), "*.json", |path| {
            let obs = canonical(&scenario_at(path));
            let graph = obs.graph.as_ref().expect("final graph");
            insta::assert_snapshot!("graph", to_dot(graph));
            insta::assert_yaml_snapshot!("observation", obs);
        });
    });
}

/// The project's scenario in the file at `path`.
fn scenario_at(path: &Path) -> Arc<Scenario> {
    let name = path.file_stem().and_then(|stem| stem.to_str());
    strata_sim::scenario(name.expect("a scenario file name")).expect("scenario")
}
