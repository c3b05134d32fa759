//! One snapshot set per scenario: the final graph as DOT and the whole
//! observation as YAML (`cargo insta review` shows what a change of
//! semantics did to each scenario).

use super::{canonical, insta_settings};
use strata_sim::{scenarios, to_dot};

#[test]
fn final_graphs_and_observations() {
    let settings = insta_settings();
    settings.bind(|| {
        for s in scenarios().expect("scenarios") {
            let obs = canonical(&s);
            let graph = obs.graph.as_ref().expect("final graph");
            insta::assert_snapshot!(format!("{}.graph", s.name), to_dot(graph));
            insta::assert_yaml_snapshot!(format!("{}.observation", s.name), obs);
        }
    });
}
