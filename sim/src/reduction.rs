//! Partial-order reduction for an exploration without a preemption bound:
//! sleep sets (Godefroid) over an independence relation taken from the
//! block layer's semantics, in the explorer's stateful search.
//!
//! **The independence relation.** A step's [`Footprint`] is either
//! [`Footprint::Global`] (it may touch anything) or the set of nodes it may
//! touch. Two steps are independent when both are local and their node sets
//! are disjoint. Only a stream job's step inside its copy loop is local:
//! it reads and writes the nodes between its filter and its base and
//! their files ([`BlockLayer::stream_footprint`], which refuses drivers that
//! share state with other nodes), and changes nothing else that a state
//! key holds but its own job's state. Everything else is global: the
//! client (every command may change the graph, permissions, frozen links
//! or job states, and even a query records a step), a move of the clock
//! (every throttled step reads it), and any job step that emitted an
//! event, changed its job's status or left the copy loop (completions
//! change the graph and the event history, whose order the outcome keeps).
//! The footprint used is the one *observed*: a step is classified before
//! it runs and demoted to global if it did any of those things.
//!
//! **Where it is used, and why it is sound there.** Only with
//! [`Bound::Unbounded`](crate::explore::Bound): with a preemption bound two
//! orders of commuting steps cost different numbers of preemptions, so
//! pruning one of them can lose schedules the bound allows (Coons,
//! Musuvathi, McKinley, "Bounded partial-order reduction", OOPSLA 2013);
//! there the option does nothing. Without a bound the states are keyed
//! without the main loop's order (`World::unordered_state_key`), so two
//! independent steps taken in either order reach the same key: a diamond,
//! which is what a sleep set needs. Sleep sets alone never lose a
//! reachable state (Godefroid, "Partial-order methods for the
//! verification of concurrent systems", 1996), so every final state, and
//! every outcome, is still reached. With state caching the sleep set a
//! state was explored with is stored with it: a state reached again with a
//! sleep set that is not a superset of the stored one has the tasks
//! asleep then but awake now explored, and keeps the intersection
//! ([`SleepMemory`]).
//!
//! **Why no persistent (stubborn) sets.** A persistent set smaller than
//! the enabled set needs a task whose step is independent of every step
//! the others can take before it. Under this relation no such task exists
//! in the scenarios here: every job's last step (its completion) is
//! global, and the clock's move is global and enabled, or enabled after
//! any throttled step, at almost every decision; the stubborn-set closure
//! then always grows to every enabled task. So sleep sets save transitions
//! (the steps into states already visited, and their state keys), not
//! states (docs/EXPLORE.md has the figures).

use crate::world::{Task, World};
use std::collections::{BTreeMap, BTreeSet};
use strata_jobs::{JobStatus, Wait};

/// Whether an exploration prunes with partial-order reduction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// Sleep sets, where they are sound (see the module's documentation).
    #[default]
    On,
    /// Every transition.
    Off,
}

impl Reduction {
    /// `on` or `off`.
    pub fn parse(text: &str) -> Option<Reduction> {
        match text {
            "on" => Some(Reduction::On),
            "off" => Some(Reduction::Off),
            _ => None,
        }
    }
}

impl std::fmt::Display for Reduction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reduction::On => "on",
            Reduction::Off => "off",
        })
    }
}

/// What a step may touch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Footprint {
    /// Anything: dependent with every step.
    Global,
    /// Only these nodes (by name) and its own job's state.
    Local(BTreeSet<String>),
}

impl Footprint {
    /// Whether two steps with these footprints commute.
    pub fn independent(&self, other: &Footprint) -> bool {
        match (self, other) {
            (Footprint::Local(a), Footprint::Local(b)) => a.is_disjoint(b),
            _ => false,
        }
    }
}

/// What `task`'s next step in `world` may touch, judged before it runs: a
/// stream job running in its copy loop is local to its nodes, anything else
/// is global.
pub fn footprint(world: &World, task: &Task) -> Footprint {
    let Task::Job(id) = task else {
        return Footprint::Global;
    };
    let layer = world.layer();
    let in_copy_loop = layer.jobs().get(id).is_some_and(|job| {
        job.status() == JobStatus::Running
            && !job.cancel_requested()
            && !job.paused()
            && matches!(job.next_wait(), Wait::Runnable | Wait::SleepUntil(_))
    });
    match layer.stream_footprint(id) {
        Some(nodes) if in_copy_loop => Footprint::Local(nodes),
        _ => Footprint::Global,
    }
}

/// A step being watched: its footprint judged before it ran, and what it
/// must not change to keep it.
pub struct StepWatch {
    footprint: Footprint,
    job: Option<String>,
    events: usize,
}

impl StepWatch {
    /// Before `task` steps in `world`.
    pub fn before(world: &World, task: &Task) -> StepWatch {
        StepWatch {
            footprint: footprint(world, task),
            job: match task {
                Task::Job(id) => Some(id.clone()),
                _ => None,
            },
            events: world.events().len(),
        }
    }

    /// The step's footprint as observed in `world` after it: global if it
    /// emitted an event or its job left the copy loop.
    pub fn after(self, world: &World) -> Footprint {
        let still_copying = self.job.as_ref().is_some_and(|id| {
            world
                .layer()
                .jobs()
                .get(id)
                .is_some_and(|j| j.status() == JobStatus::Running && !j.paused())
        });
        if world.events().len() != self.events || !still_copying {
            return Footprint::Global;
        }
        self.footprint
    }
}

/// Tasks whose exploration from a state is known to be redundant: each
/// job's step with the footprint observed when it was explored elsewhere.
/// Only local steps sleep (a global step is dependent with every step, so
/// it wakes at once).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SleepSet(BTreeMap<String, BTreeSet<String>>);

impl SleepSet {
    /// Whether `task` sleeps.
    pub fn contains(&self, task: &Task) -> bool {
        matches!(task, Task::Job(id) if self.0.contains_key(id))
    }

    /// Puts `task`'s step, with its observed footprint, to sleep (a
    /// global step never sleeps).
    pub fn add(&mut self, task: &Task, footprint: &Footprint) {
        if let (Task::Job(id), Footprint::Local(nodes)) = (task, footprint) {
            self.0.insert(id.clone(), nodes.clone());
        }
    }

    /// The sleep set after a step with footprint `step`: the sleeping steps
    /// independent of it.
    pub fn after(&self, step: &Footprint) -> SleepSet {
        let Footprint::Local(touched) = step else {
            return SleepSet::default();
        };
        SleepSet(
            self.0
                .iter()
                .filter(|(_, nodes)| nodes.is_disjoint(touched))
                .map(|(id, nodes)| (id.clone(), nodes.clone()))
                .collect(),
        )
    }

    fn is_subset(&self, other: &SleepSet) -> bool {
        self.0.keys().all(|id| other.0.contains_key(id))
    }

    fn intersection(&self, other: &SleepSet) -> SleepSet {
        SleepSet(
            self.0
                .iter()
                .filter(|(id, _)| other.0.contains_key(*id))
                .map(|(id, nodes)| (id.clone(), nodes.clone()))
                .collect(),
        )
    }

    fn minus(&self, other: &SleepSet) -> SleepSet {
        SleepSet(
            self.0
                .iter()
                .filter(|(id, _)| !other.0.contains_key(*id))
                .map(|(id, nodes)| (id.clone(), nodes.clone()))
                .collect(),
        )
    }
}

/// What a state reached with a sleep set must explore.
#[derive(Debug, PartialEq, Eq)]
pub enum Visit {
    /// A new state: every task that does not sleep.
    New,
    /// Explored before with a sleep set holding these tasks, awake now:
    /// only they (the explored graph numbers a state's choices in an
    /// order that depends only on its key, `crate::choice_order`, so a
    /// task woken later keeps its own number).
    Awake(SleepSet),
    /// Explored before with a sleep set no larger: nothing.
    Done,
}

/// The sleep set each visited state was explored with (state caching with
/// sleep sets: Godefroid, Holzmann, Pirottin, "State-space caching
/// revisited", 1995).
#[derive(Default)]
pub struct SleepMemory(BTreeMap<u64, SleepSet>);

impl SleepMemory {
    /// The state `key` is reached with sleep set `sleep`: what to explore.
    pub fn arrive(&mut self, key: u64, sleep: &SleepSet) -> Visit {
        match self.0.get_mut(&key) {
            None => {
                self.0.insert(key, sleep.clone());
                Visit::New
            }
            Some(stored) if stored.is_subset(sleep) => Visit::Done,
            Some(stored) => {
                let awake = stored.minus(sleep);
                *stored = stored.intersection(sleep);
                Visit::Awake(awake)
            }
        }
    }
}
