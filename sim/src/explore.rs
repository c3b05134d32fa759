//! Exhaustive exploration: depth-first over every decision, each distinct
//! state once (by [`World::state_key`]), with a preemption bound: how many
//! times a schedule may leave the canonical choice. A task that a
//! non-canonical choice picked goes on for free while it can (preemption
//! bounding, not delay bounding): in QEMU the monitor handles a burst of
//! commands while a job's I/O is in flight or its timer waits behind them
//! (030's TestSetSpeed sends three commands before a stream's first copy
//! finishes on a loaded host), and a job whose I/O is fast runs many
//! iterations while another's single copy is slow (the stream of
//! `flt-e-stream-then-active-commit` completes before the active commit's
//! first pass in most of QEMU's runs).

use crate::compare::outcome_key;
use crate::error::{Error, Result};
use crate::scenario::{Observation, Scenario};
use crate::sched::Schedule;
use crate::world::{Task, World};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The exploration's limits.
#[derive(Clone, Copy, Debug)]
pub struct ExploreOptions {
    /// At most this many non-canonical decisions per schedule.
    pub preemption_bound: usize,
    /// Check the invariants after every step.
    pub check_invariants: bool,
    /// Give up on a schedule after this many steps.
    pub step_limit: usize,
    /// The block layer's policy (QEMU 10.0's by default).
    pub policy: &'static strata_block::policy::Policy,
    /// Check the structural properties after every step
    /// (`BlockLayer::check_structure`) and report the first schedule
    /// breaking each, without stopping it.
    pub check_structure: bool,
}

impl Default for ExploreOptions {
    fn default() -> ExploreOptions {
        ExploreOptions {
            preemption_bound: 2,
            check_invariants: true,
            step_limit: 200_000,
            policy: strata_block::policy::default(),
            check_structure: false,
        }
    }
}

/// One distinct outcome.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The observation of the first schedule that reached it.
    pub observation: Observation,
    /// How many explored schedules ended here.
    pub schedules: u64,
    /// The smallest schedule found that reaches it (depth-first order
    /// finds the smallest of each subtree first).
    pub example: Schedule,
}

/// What an exploration found.
#[derive(Clone, Debug, Default)]
pub struct Exploration {
    /// Distinct states visited.
    pub states: u64,
    /// Schedules run to the end (or to a state already explored).
    pub schedules: u64,
    /// Distinct outcomes, by their smallest example schedule: the
    /// canonical schedule's outcome first.
    pub outcomes: Vec<Outcome>,
    /// Schedules that broke an invariant or got stuck, with the error.
    pub failures: Vec<(Schedule, String)>,
    /// With `check_structure`: per structural property broken (the text
    /// before its message's first `:`), the smallest schedule found that
    /// breaks it and the message.
    pub structure: BTreeMap<String, (Schedule, String)>,
}

/// Progress counters, readable while an exploration runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// States visited so far.
    pub states: AtomicU64,
    /// Schedules finished so far.
    pub schedules: AtomicU64,
}

/// A point where the scheduler decides: the world and the path to it.
#[derive(Clone)]
struct Frontier {
    world: World,
    schedule: Schedule,
    /// Preemptions spent on the way (see the module's documentation).
    preemptions: usize,
    /// The task a non-canonical choice picked, while it keeps running.
    burst: Option<Task>,
}

impl Frontier {
    /// What choosing `task`, the `index`th runnable one, costs.
    fn cost(&self, index: usize, task: &Task) -> usize {
        usize::from(index != 0 && self.burst.as_ref() != Some(task))
    }

    /// The burst after `task` was chosen as the `index`th runnable one.
    fn burst_after(&self, index: usize, task: &Task) -> Option<Task> {
        (index != 0 || self.burst.as_ref() == Some(task)).then(|| task.clone())
    }

    /// The world's state key, with the burst: in a burst the same world has
    /// cheaper choices.
    fn key(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.world.state_key(), &self.burst).hash(&mut h);
        h.finish()
    }
}

/// Subtrees explored independently (fixed, so that the result does not
/// depend on the number of threads).
const SPLIT: usize = 16;

/// Explores `scenario` exhaustively within `options`.
pub fn explore(
    scenario: &Arc<Scenario>,
    options: ExploreOptions,
    progress: &Progress,
) -> Result<Exploration> {
    let start = Frontier {
        world: World::with_policy(scenario.clone(), options.policy)?,
        schedule: Schedule::default(),
        preemptions: 0,
        burst: None,
    };
    let mut parts = vec![Explorer::new(options, progress)];
    // Breadth-first to a frontier of SPLIT decision points.
    let mut frontier = Vec::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(f) = queue.pop_front() {
        if frontier.len() + queue.len() + 1 >= SPLIT {
            frontier.push(f);
            frontier.extend(queue.drain(..));
            break;
        }
        let children = parts[0].expand(f);
        if children.is_empty() {
            continue;
        }
        queue.extend(children);
    }
    let subtrees: Vec<Explorer> = frontier
        .into_par_iter()
        .map(|f| {
            let mut e = Explorer::new(options, progress);
            e.dfs(f);
            e
        })
        .collect();
    parts.extend(subtrees);
    Ok(merge(parts))
}

/// Keeps the smaller of a known and a new schedule breaking `property`.
fn note_smallest(
    known: &mut BTreeMap<String, (Schedule, String)>,
    property: String,
    schedule: Schedule,
    message: String,
) {
    let smaller = known.get(&property).is_none_or(|(s, _)| schedule < *s);
    if smaller {
        known.insert(property, (schedule, message));
    }
}

fn merge(parts: Vec<Explorer<'_>>) -> Exploration {
    let mut result = Exploration::default();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for part in parts {
        result.states += part.visited.len() as u64;
        result.schedules += part.schedules;
        result.failures.extend(part.failures);
        for (property, (schedule, message)) in part.structure {
            note_smallest(&mut result.structure, property, schedule, message);
        }
        for (key, outcome) in part.order.into_iter().map(|k| {
            let o = part.outcomes[&k].clone();
            (k, o)
        }) {
            match index.get(&key) {
                Some(&i) => {
                    let known = &mut result.outcomes[i];
                    known.schedules += outcome.schedules;
                    if outcome.example < known.example {
                        known.example = outcome.example;
                        known.observation = outcome.observation;
                    }
                }
                None => {
                    index.insert(key, result.outcomes.len());
                    result.outcomes.push(outcome);
                }
            }
        }
    }
    // The canonical schedule (all first choices) sorts before any other.
    result.outcomes.sort_by(|a, b| a.example.cmp(&b.example));
    result
}

struct Explorer<'p> {
    options: ExploreOptions,
    progress: &'p Progress,
    /// State key -> the largest preemption budget it was explored with.
    visited: BTreeMap<u64, usize>,
    schedules: u64,
    outcomes: BTreeMap<String, Outcome>,
    order: Vec<String>,
    failures: Vec<(Schedule, String)>,
    structure: BTreeMap<String, (Schedule, String)>,
}

impl<'p> Explorer<'p> {
    fn new(options: ExploreOptions, progress: &'p Progress) -> Explorer<'p> {
        Explorer {
            options,
            progress,
            visited: BTreeMap::new(),
            schedules: 0,
            outcomes: BTreeMap::new(),
            order: Vec::new(),
            failures: Vec::new(),
            structure: BTreeMap::new(),
        }
    }

    fn dfs(&mut self, f: Frontier) {
        for child in self.expand(f) {
            self.dfs(child);
        }
    }

    /// Runs `f` on to its next decision; returns one frontier per choice
    /// there that is new and within the bound.
    fn expand(&mut self, mut f: Frontier) -> Vec<Frontier> {
        let runnable = match self.run_to_decision(&mut f) {
            Ok(Some(r)) => r,
            Ok(None) => return Vec::new(),
            Err(e) => {
                self.fail(&f.schedule, e);
                return Vec::new();
            }
        };
        let budget = self.options.preemption_bound - f.preemptions;
        let key = f.key();
        if self.visited.get(&key).is_some_and(|b| *b >= budget) {
            self.finish_schedule();
            return Vec::new();
        }
        self.visited.insert(key, budget);
        self.progress.states.fetch_add(1, Ordering::Relaxed);
        let mut children = Vec::new();
        for (i, task) in runnable.iter().enumerate() {
            let cost = f.cost(i, task);
            if cost > budget {
                continue;
            }
            let mut child = f.clone();
            child.schedule.0.push(i);
            child.preemptions += cost;
            child.burst = f.burst_after(i, task);
            if let Err(e) = self.step(&mut child.world, task) {
                self.fail(&child.schedule, e);
                continue;
            }
            self.check_structure(&child.world, &child.schedule);
            children.push(child);
        }
        children
    }

    /// Steps while only one task can run; `None` when the run finished.
    fn run_to_decision(&mut self, f: &mut Frontier) -> Result<Option<Vec<Task>>> {
        let mut steps = 0;
        loop {
            if let Some(obs) = f.world.finished() {
                let obs = obs.clone();
                self.record_outcome(obs, &f.schedule);
                return Ok(None);
            }
            steps += 1;
            if steps > self.options.step_limit {
                return Err(Error::StepLimit(steps));
            }
            let runnable = f.world.runnable();
            match runnable.len() {
                0 => return Err(Error::Stuck(f.world.now_ns())),
                1 => {
                    self.step(&mut f.world, &runnable[0])?;
                    self.check_structure(&f.world, &f.schedule);
                    f.burst = f.burst_after(0, &runnable[0]);
                }
                _ => return Ok(Some(runnable)),
            }
        }
    }

    fn step(&self, world: &mut World, task: &Task) -> Result<()> {
        world.step(task)?;
        if self.options.check_invariants {
            world
                .check_invariants()
                .map_err(|what| Error::Invariant { step: 0, what })?;
        }
        Ok(())
    }

    fn check_structure(&mut self, world: &World, schedule: &Schedule) {
        if !self.options.check_structure {
            return;
        }
        if let Err(message) = world.layer().check_structure() {
            let property = message.split(':').next().unwrap_or_default().to_string();
            note_smallest(&mut self.structure, property, schedule.clone(), message);
        }
    }

    fn finish_schedule(&mut self) {
        self.schedules += 1;
        self.progress.schedules.fetch_add(1, Ordering::Relaxed);
    }

    fn record_outcome(&mut self, obs: Observation, schedule: &Schedule) {
        self.finish_schedule();
        let key = outcome_key(&obs);
        match self.outcomes.get_mut(&key) {
            Some(o) => o.schedules += 1,
            None => {
                self.order.push(key.clone());
                self.outcomes.insert(
                    key,
                    Outcome {
                        observation: obs,
                        schedules: 1,
                        example: schedule.clone(),
                    },
                );
            }
        }
    }

    fn fail(&mut self, schedule: &Schedule, e: Error) {
        self.finish_schedule();
        self.failures.push((schedule.clone(), e.to_string()));
    }
}
