//! Partial-order reduction (`strata_sim::reduction`): steps the relation
//! calls independent commute, and sleep sets keep every outcome.

use super::{explored_with, outcome_keys};
use std::sync::Arc;
use strata_sim::scenario::Scenario;
use strata_sim::{
    footprint, scenario, scenarios, Bound, Exploration, ExploreOptions, Footprint, Random,
    Reduction, Scheduler, StepWatch, Task, World,
};

fn explored(s: &Arc<Scenario>, bound: Bound, reduction: Reduction) -> Exploration {
    let options = ExploreOptions {
        preemption_bound: bound,
        reduction,
        ..ExploreOptions::default()
    };
    explored_with(s, options)
}

/// `task`'s step from `world`: the world after it and the footprint
/// observed.
fn stepped(world: &World, task: &Task) -> (World, Footprint) {
    let mut after = world.clone();
    let watch = StepWatch::before(&after, task);
    after.step(task).expect("step");
    let footprint = watch.after(&after);
    (after, footprint)
}

/// Whether `a` then `b` and `b` then `a` are both possible from `world`
/// and meet in one state.
fn commute(world: &World, a: &Task, b: &Task) -> bool {
    let (after_a, _) = stepped(world, a);
    let (after_b, _) = stepped(world, b);
    if !after_a.runnable().contains(b) || !after_b.runnable().contains(a) {
        return false;
    }
    let (ab, _) = stepped(&after_a, b);
    let (ba, _) = stepped(&after_b, a);
    ab.unordered_state_key(&ab.runnable()) == ba.unordered_state_key(&ba.runnable())
}

/// Along one schedule of `s` (`scheduler` picks), every pair of tasks the
/// relation calls independent commutes; returns how many such pairs there
/// were.
fn check_independent_pairs(s: &Arc<Scenario>, scheduler: &mut dyn Scheduler) -> usize {
    let mut world = World::new(s.clone()).expect("world");
    let mut checked = 0;
    while world.finished().is_none() {
        let runnable = world.runnable();
        assert!(!runnable.is_empty(), "{}: stuck", s.name);
        let observed: Vec<Footprint> = runnable.iter().map(|t| stepped(&world, t).1).collect();
        for (i, a) in runnable.iter().enumerate() {
            for (j, b) in runnable.iter().enumerate().skip(i + 1) {
                if observed[i].independent(&observed[j]) {
                    assert!(
                        commute(&world, a, b),
                        "{}: {a} and {b} called independent at {} ns, but they do not commute",
                        s.name,
                        world.now_ns()
                    );
                    checked += 1;
                }
            }
        }
        let pick = if runnable.len() > 1 {
            scheduler
                .pick(&runnable)
                .expect("a random scheduler always picks")
        } else {
            0
        };
        world.step(&runnable[pick]).expect("step");
    }
    checked
}

/// A dependent pair is never called independent: along the canonical
/// schedule and random ones of every project scenario, every pair of
/// runnable tasks whose observed footprints are independent reaches one
/// state in either order. And the check is not empty: the parallel
/// streams' copy steps are independent.
#[test]
fn steps_called_independent_commute_in_every_project_scenario() {
    let mut checked = 0;
    for s in scenarios().expect("scenarios") {
        for seed in 0..2 {
            checked += check_independent_pairs(&s, &mut Random::new(seed));
        }
    }
    let parallel = scenario("030-parallel-stream").expect("scenario");
    assert!(check_independent_pairs(&parallel, &mut Random::new(7)) > 0);
    assert!(checked > 0);
}

/// The relation itself: the client, the clock and a job outside its copy
/// loop are dependent with everything, two copy steps are independent only
/// on disjoint nodes.
#[test]
fn only_copy_steps_on_disjoint_nodes_are_independent() {
    let local = |nodes: &[&str]| Footprint::Local(nodes.iter().map(|n| n.to_string()).collect());
    assert!(local(&["node2", "node1"]).independent(&local(&["node4", "node3"])));
    assert!(!local(&["node2", "node1"]).independent(&local(&["node3", "node2"])));
    assert!(!local(&["node2"]).independent(&Footprint::Global));
    assert!(!Footprint::Global.independent(&Footprint::Global));

    let s = scenario("030-parallel-stream").expect("scenario");
    let mut world = World::new(s).expect("world");
    assert_eq!(footprint(&world, &Task::Client), Footprint::Global);
    assert_eq!(footprint(&world, &Task::Advance(1)), Footprint::Global);
    // Run until the four streams were started (six steps recorded: the
    // note, blockdev-add, four block-stream) and copy: each is local to
    // its own layers.
    while world.records().len() < 6
        || !world
            .runnable()
            .iter()
            .any(|t| matches!(t, Task::Advance(_)))
    {
        let first = world.runnable()[0].clone();
        world.step(&first).expect("step");
    }
    let jobs: Vec<Footprint> = [
        "stream-node2",
        "stream-node4",
        "stream-node6",
        "stream-node8",
    ]
    .iter()
    .map(|id| footprint(&world, &Task::Job(id.to_string())))
    .collect();
    for (i, a) in jobs.iter().enumerate() {
        assert!(matches!(a, Footprint::Local(n) if !n.is_empty()), "{a:?}");
        assert!(!a.independent(a));
        for b in &jobs[i + 1..] {
            assert!(a.independent(b), "{a:?} {b:?}");
        }
    }
}

/// With a preemption bound the reduction does nothing (it would not be
/// sound there): every project scenario explores to the same outcomes,
/// states and schedules at bounds 0 and 1 with and without it.
#[test]
fn reduction_changes_nothing_within_a_preemption_bound() {
    for s in scenarios().expect("scenarios") {
        for bound in 0..=1 {
            let bound = Bound::Preemptions(bound);
            let on = explored(&s, bound, Reduction::On);
            let off = explored(&s, bound, Reduction::Off);
            assert_eq!(outcome_keys(&on), outcome_keys(&off), "{}", s.name);
            assert_eq!((on.states, on.schedules), (off.states, off.schedules));
        }
    }
}

/// Without a bound sleep sets keep every outcome and every state (they
/// prune transitions only; `thread-b-bottom-parallel` revisits a state
/// whose tasks run in another order than at the first visit, where a
/// woken task once took another's choice number in the explored graph and
/// a state was lost), and prune transitions where streams run in
/// parallel.
#[test]
fn reduction_keeps_every_outcome_without_a_bound() {
    let mut pruned = false;
    for name in [
        "030-stream-commit-1",
        "thread-b-bottom-parallel",
        "030-set-speed",
        "x-stream-twice",
    ] {
        let s = scenario(name).expect("scenario");
        let on = explored(&s, Bound::Unbounded, Reduction::On);
        let off = explored(&s, Bound::Unbounded, Reduction::Off);
        assert_eq!(outcome_keys(&on), outcome_keys(&off), "{name}");
        assert_eq!(on.states, off.states, "{name}");
        assert!(on.schedules <= off.schedules, "{name}");
        pruned |= on.schedules < off.schedules;
    }
    assert!(pruned);
    assert_eq!(Reduction::parse("on"), Some(Reduction::On));
    assert_eq!(Reduction::parse("off"), Some(Reduction::Off));
    assert_eq!(Reduction::parse("yes"), None);
}
