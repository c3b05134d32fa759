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
//!
//! Without a bound ([`Bound::Unbounded`]) every choice is taken, and a
//! state is keyed without the main loop's order. The search is split into
//! a fixed set of subtrees ([`Part`]s); a process may explore a share of
//! them ([`explore_shard`]) and [`merge`] makes the whole report from all
//! shares, exactly as one process reports it (docs/EXPLORE.md).

use crate::compare::outcome_key;
use crate::error::{Error, Result};
use crate::reduction::{Reduction, SleepMemory, SleepSet, StepWatch, Visit};
use crate::scenario::{Observation, OutcomeRecord, PartRecord, Scenario, ShardRecord};
use crate::sched::Schedule;
use crate::world::{Task, World};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use strata_block::StateKeyHasher;

/// How far from the canonical schedule an exploration goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// At most this many preemptions per schedule (see the module's
    /// documentation).
    Preemptions(usize),
    /// Every schedule: states are keyed without the main loop's order
    /// ([`World::unordered_state_key`]), so two orders of the same steps
    /// meet again.
    Unbounded,
}

impl Bound {
    /// `none` (every schedule) or a number of preemptions.
    pub fn parse(text: &str) -> Option<Bound> {
        match text {
            "none" => Some(Bound::Unbounded),
            n => n.parse().ok().map(Bound::Preemptions),
        }
    }

    /// The preemptions left after spending `spent`.
    fn budget_after(self, spent: usize) -> usize {
        match self {
            Bound::Preemptions(k) => k - spent,
            Bound::Unbounded => usize::MAX,
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Preemptions(k) => write!(f, "{k}"),
            Bound::Unbounded => f.write_str("unbounded"),
        }
    }
}

/// The exploration's limits.
#[derive(Clone, Copy, Debug)]
pub struct ExploreOptions {
    /// How many non-canonical decisions a schedule may take, if bounded.
    pub preemption_bound: Bound,
    /// Check the invariants after every step.
    pub check_invariants: bool,
    /// Give up on a schedule after this many steps.
    pub step_limit: usize,
    /// Stop exploring once this much time has passed (the report then
    /// says the exploration is incomplete).
    pub time_limit: Option<std::time::Duration>,
    /// The block layer's policy (QEMU 10.0's by default).
    pub policy: &'static strata_block::policy::Policy,
    /// Check the structural properties after every step
    /// (`BlockLayer::check_structure`) and report the first schedule
    /// breaking each, without stopping it.
    pub check_structure: bool,
    /// Partial-order reduction (sleep sets), applied only without a bound
    /// (see [`crate::reduction`]).
    pub reduction: Reduction,
}

impl Default for ExploreOptions {
    fn default() -> ExploreOptions {
        ExploreOptions {
            preemption_bound: Bound::Preemptions(2),
            check_invariants: true,
            step_limit: 200_000,
            time_limit: None,
            policy: strata_block::policy::default(),
            check_structure: false,
            reduction: Reduction::On,
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
    /// Whether every state was explored (`false` when the time limit
    /// stopped it).
    pub complete: bool,
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
    /// The tasks whose steps here are known to lead only where another
    /// order of the same steps already led (with reduction only).
    sleep: SleepSet,
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
    /// cheaper choices. Without a bound no choice costs anything: the key
    /// is the world's alone, and leaves the main loop's order out.
    fn key(&self, bound: Bound, runnable: &[Task]) -> u64 {
        if bound == Bound::Unbounded {
            return self.world.unordered_state_key(runnable);
        }
        let mut h = StateKeyHasher::default();
        (self.world.state_key(), &self.burst).hash(&mut h);
        h.finish()
    }
}

/// Subtrees explored independently (fixed, so that the result does not
/// depend on the number of threads or shards).
const SPLIT: usize = 16;

/// Which subtrees one process explores: those whose number is `index`
/// modulo `count` (every share also explores the breadth-first part
/// above them: the work shards duplicate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This share, from 0.
    pub index: usize,
    /// How many shares.
    pub count: usize,
}

impl Shard {
    /// All of it, in one process.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// `K/N` with `K < N`.
    pub fn parse(text: &str) -> Option<Shard> {
        let (k, n) = text.split_once('/')?;
        let shard = Shard {
            index: k.parse().ok()?,
            count: n.parse().ok()?,
        };
        (shard.index < shard.count).then_some(shard)
    }

    fn takes(self, subtree: usize) -> bool {
        subtree % self.count == self.index
    }
}

/// What one part of an exploration found, with its own visited set: the
/// breadth-first part above the subtrees (number 0), or a subtree (1 to
/// 16). [`merge`] makes the report of a whole exploration from all of
/// them, whichever processes explored them.
#[derive(Clone, Debug)]
pub struct Part {
    /// Which part.
    pub index: usize,
    /// Distinct states it visited.
    pub states: u64,
    /// Schedules it finished.
    pub schedules: u64,
    /// Its distinct outcomes in the order it found them, by outcome key
    /// ([`outcome_key`]).
    pub outcomes: Vec<(String, Outcome)>,
    /// Its failures, in the order found.
    pub failures: Vec<(Schedule, String)>,
    /// The smallest schedule it found breaking each structural property.
    pub structure: BTreeMap<String, (Schedule, String)>,
    /// Whether it explored everything (`false` when the time limit
    /// stopped it).
    pub complete: bool,
}

/// What one shard of an exploration writes for [`merge`]: which
/// exploration it belongs to (shards merge only with shards of the same
/// one) and the parts it explored. Its file is a
/// [`ShardRecord`](crate::scenario::ShardRecord) in JSON.
#[derive(Clone, Debug)]
pub struct ShardFile {
    /// The scenario.
    pub scenario: String,
    /// The preemption bound.
    pub bound: Bound,
    /// The block layer's policy, by name.
    pub policy: String,
    /// Which share.
    pub shard: Shard,
    /// Seconds the share took.
    pub seconds: f64,
    /// What it found.
    pub parts: Vec<Part>,
}

impl ShardFile {
    /// The file's text.
    pub fn to_json(&self) -> String {
        self.to_record().to_json()
    }

    /// Parses what [`ShardFile::to_json`] wrote.
    pub fn from_json(text: &str) -> std::result::Result<ShardFile, String> {
        let record = ShardRecord::from_json(text).map_err(|e| e.to_string())?;
        ShardFile::from_record(record)
    }

    fn to_record(&self) -> ShardRecord {
        let pair = |(s, text): &(Schedule, String)| (s.to_string(), text.clone());
        let part = |p: &Part| PartRecord {
            index: p.index,
            states: p.states,
            schedules: p.schedules,
            outcomes: p
                .outcomes
                .iter()
                .map(|(key, o)| OutcomeRecord {
                    key: key.clone(),
                    schedules: o.schedules,
                    example: o.example.to_string(),
                    observation: o.observation.clone(),
                })
                .collect(),
            failures: p.failures.iter().map(pair).collect(),
            structure: p
                .structure
                .iter()
                .map(|(k, v)| (k.clone(), pair(v)))
                .collect(),
            complete: p.complete,
        };
        ShardRecord {
            scenario: self.scenario.clone(),
            bound: self.bound.to_string(),
            policy: self.policy.clone(),
            shard: format!("{}/{}", self.shard.index, self.shard.count),
            seconds: self.seconds,
            parts: self.parts.iter().map(part).collect(),
        }
    }

    fn from_record(r: ShardRecord) -> std::result::Result<ShardFile, String> {
        let schedule = |text: &str| Schedule::parse(text).map_err(|e| e.to_string());
        let pair = |(s, text): (String, String)| Ok((schedule(&s)?, text));
        let outcome = |o: OutcomeRecord| {
            let outcome = Outcome {
                observation: o.observation,
                schedules: o.schedules,
                example: schedule(&o.example)?,
            };
            Ok((o.key, outcome))
        };
        let part = |p: PartRecord| {
            Ok(Part {
                index: p.index,
                states: p.states,
                schedules: p.schedules,
                outcomes: p
                    .outcomes
                    .into_iter()
                    .map(outcome)
                    .collect::<std::result::Result<_, String>>()?,
                failures: p
                    .failures
                    .into_iter()
                    .map(pair)
                    .collect::<std::result::Result<_, String>>()?,
                structure: p
                    .structure
                    .into_iter()
                    .map(|(k, v)| Ok((k, pair(v)?)))
                    .collect::<std::result::Result<_, String>>()?,
                complete: p.complete,
            })
        };
        let bound = match r.bound.as_str() {
            "unbounded" => Bound::Unbounded,
            n => Bound::parse(n).ok_or_else(|| format!("bound {n:?}"))?,
        };
        Ok(ShardFile {
            scenario: r.scenario,
            bound,
            policy: r.policy,
            shard: Shard::parse(&r.shard).ok_or_else(|| format!("shard {:?}", r.shard))?,
            seconds: r.seconds,
            parts: r
                .parts
                .into_iter()
                .map(part)
                .collect::<std::result::Result<_, String>>()?,
        })
    }

    /// Checks that `files` are every share of one exploration, once each.
    pub fn check_complete(files: &[ShardFile]) -> std::result::Result<(), String> {
        let Some(first) = files.first() else {
            return Err("no shard files".into());
        };
        let exploration =
            |f: &ShardFile| (f.scenario.clone(), f.bound, f.policy.clone(), f.shard.count);
        if let Some(other) = files.iter().find(|f| exploration(f) != exploration(first)) {
            return Err(format!(
                "shards of different explorations: {:?} and {:?}",
                exploration(first),
                exploration(other)
            ));
        }
        let mut indices: Vec<usize> = files.iter().map(|f| f.shard.index).collect();
        indices.sort_unstable();
        if !indices.iter().copied().eq(0..first.shard.count) {
            return Err(format!(
                "shards {indices:?} given; one of each of 0..{} needed",
                first.shard.count
            ));
        }
        Ok(())
    }
}

/// Explores `scenario` exhaustively within `options`.
pub fn explore(
    scenario: &Arc<Scenario>,
    options: ExploreOptions,
    progress: &Progress,
) -> Result<Exploration> {
    Ok(merge(explore_shard(
        scenario,
        options,
        progress,
        Shard::WHOLE,
    )?))
}

/// Explores `shard`'s subtrees of `scenario` (rayon across them).
pub fn explore_shard(
    scenario: &Arc<Scenario>,
    options: ExploreOptions,
    progress: &Progress,
    shard: Shard,
) -> Result<Vec<Part>> {
    let start = Frontier {
        world: World::with_policy(scenario.clone(), options.policy)?,
        schedule: Schedule::default(),
        preemptions: 0,
        burst: None,
        sleep: SleepSet::default(),
    };
    let deadline = options.time_limit.map(|t| Instant::now() + t);
    let mut above = Explorer::new(options, progress, deadline);
    // Breadth-first to a frontier of SPLIT decision points.
    let mut frontier = Vec::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(f) = queue.pop_front() {
        if frontier.len() + queue.len() + 1 >= SPLIT {
            frontier.push(f);
            frontier.extend(queue.drain(..));
            break;
        }
        let children = above.expand(f);
        if children.is_empty() {
            continue;
        }
        queue.extend(children);
    }
    let mine: Vec<(usize, Frontier)> = frontier
        .into_iter()
        .enumerate()
        .filter(|(i, _)| shard.takes(*i))
        .collect();
    let subtrees = mine.into_par_iter().map(|(i, f)| {
        let mut e = Explorer::new(options, progress, deadline);
        e.dfs(f);
        e.into_part(i + 1)
    });
    // Every shard reports the part above the subtrees, which each one
    // explores: `merge` counts it once.
    let mut parts = vec![above.into_part(0)];
    parts.par_extend(subtrees);
    Ok(parts)
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

/// The report of a whole exploration from its parts, from any number of
/// shards, in any order (a part given more than once counts once: every
/// shard explores the part above the subtrees, the same way).
pub fn merge(mut parts: Vec<Part>) -> Exploration {
    parts.sort_by_key(|p| p.index);
    parts.dedup_by_key(|p| p.index);
    let mut result = Exploration {
        complete: true,
        ..Exploration::default()
    };
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for part in parts {
        result.states += part.states;
        result.schedules += part.schedules;
        result.complete &= part.complete;
        result.failures.extend(part.failures);
        for (property, (schedule, message)) in part.structure {
            note_smallest(&mut result.structure, property, schedule, message);
        }
        for (key, outcome) in part.outcomes {
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
    /// With reduction: the sleep set each state was explored with.
    sleeps: SleepMemory,
    schedules: u64,
    outcomes: BTreeMap<String, Outcome>,
    order: Vec<String>,
    failures: Vec<(Schedule, String)>,
    structure: BTreeMap<String, (Schedule, String)>,
    /// When the time limit runs out.
    deadline: Option<Instant>,
    /// Whether the time limit stopped it.
    stopped: bool,
}

impl<'p> Explorer<'p> {
    fn new(
        options: ExploreOptions,
        progress: &'p Progress,
        deadline: Option<Instant>,
    ) -> Explorer<'p> {
        Explorer {
            options,
            progress,
            visited: BTreeMap::new(),
            sleeps: SleepMemory::default(),
            schedules: 0,
            outcomes: BTreeMap::new(),
            order: Vec::new(),
            failures: Vec::new(),
            structure: BTreeMap::new(),
            deadline,
            stopped: false,
        }
    }

    fn into_part(mut self, index: usize) -> Part {
        let outcomes = self
            .order
            .into_iter()
            .map(|k| {
                let o = self
                    .outcomes
                    .remove(&k)
                    .expect("every key in order has an outcome");
                (k, o)
            })
            .collect();
        Part {
            index,
            states: self.visited.len() as u64,
            schedules: self.schedules,
            outcomes,
            failures: self.failures,
            structure: self.structure,
            complete: !self.stopped,
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
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.stopped = true;
            return Vec::new();
        }
        let runnable = match self.run_to_decision(&mut f) {
            Ok(Some(r)) => r,
            Ok(None) => return Vec::new(),
            Err(e) => {
                self.fail(&f.schedule, e);
                return Vec::new();
            }
        };
        let budget = self.options.preemption_bound.budget_after(f.preemptions);
        let key = f.key(self.options.preemption_bound, &runnable);
        let awake = match self.reducing() {
            true => self.sleeps.arrive(key, &f.sleep),
            false => Visit::New,
        };
        let explored = self.visited.get(&key).is_some_and(|b| *b >= budget);
        if awake == Visit::Done || (explored && !self.reducing()) {
            self.finish_schedule();
            return Vec::new();
        }
        if self.visited.insert(key, budget).is_none() {
            self.progress.states.fetch_add(1, Ordering::Relaxed);
        }
        let chosen: Vec<(usize, &Task)> = runnable
            .iter()
            .enumerate()
            .filter(|(i, task)| f.cost(*i, task) <= budget)
            .filter(|(_, task)| match &awake {
                Visit::Awake(woken) => woken.contains(task),
                _ => !f.sleep.contains(task),
            })
            .collect();
        if chosen.is_empty() {
            // Every task sleeps: each order from here was explored elsewhere.
            self.finish_schedule();
            return Vec::new();
        }
        // Siblings explored before a child sleep in it while independent
        // of its step.
        let mut explored_siblings = f.sleep.clone();
        let mut children = Vec::with_capacity(chosen.len());
        let mut parent = Some(f);
        for (n, &(i, task)) in chosen.iter().enumerate() {
            // The last child takes the parent itself: one clone fewer
            // per state.
            let f = if n + 1 == chosen.len() {
                parent.take().expect("the parent is taken last")
            } else {
                parent
                    .clone()
                    .expect("the parent stays until the last child")
            };
            let mut child = Frontier {
                preemptions: f.preemptions + f.cost(i, task),
                burst: f.burst_after(i, task),
                ..f
            };
            child.schedule.0.push(i);
            let watch = self
                .reducing()
                .then(|| StepWatch::before(&child.world, task));
            if let Err(e) = self.step(&mut child.world, task) {
                self.fail(&child.schedule, e);
                continue;
            }
            if let Some(watch) = watch {
                let footprint = watch.after(&child.world);
                child.sleep = explored_siblings.after(&footprint);
                explored_siblings.add(task, &footprint);
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
                    let watch = self
                        .reducing()
                        .then(|| StepWatch::before(&f.world, &runnable[0]));
                    self.step(&mut f.world, &runnable[0])?;
                    if let Some(watch) = watch {
                        f.sleep = f.sleep.after(&watch.after(&f.world));
                    }
                    self.check_structure(&f.world, &f.schedule);
                    f.burst = f.burst_after(0, &runnable[0]);
                }
                _ => return Ok(Some(runnable)),
            }
        }
    }

    /// Whether sleep sets prune: asked for, and sound (without a bound).
    fn reducing(&self) -> bool {
        self.options.reduction == Reduction::On && self.options.preemption_bound == Bound::Unbounded
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
