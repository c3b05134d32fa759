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
//! state is keyed without the main loop's order. Worker threads share one
//! visited set and steal each other's work (`crate::workers`); they record
//! the graph they explored (`crate::state_graph`), and the report is made
//! from that graph alone, so it does not depend on the thread count. The
//! search is split into a fixed set of runs above which every process
//! explores the same part ([`Part`]s); a process may explore a share of
//! them ([`explore_shard`]) and [`merge`] makes the whole report from the
//! union of all shares' graphs, exactly as one process reports it
//! (docs/EXPLORE.md).

use crate::choice_order::{canonical_number, replayable};
use crate::compare::outcome_key;
use crate::error::{Error, Result};
use crate::reduction::{Reduction, SleepMemory, SleepSet, StepWatch, Visit as Sleepers};
use crate::run::RunOptions;
use crate::scenario::{
    ChoiceRecord, EndRecord, LegRecord, Observation, ObservationRecord, PartRecord, Scenario,
    ShardRecord,
};
use crate::state_graph::{Choice, End, Leg, StateGraph};
pub use crate::state_graph::{Exploration, Outcome};
use crate::visited::{Visit, Visited};
use crate::workers::run_workers;
use crate::world::{Task, World};
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use strata_block::StateKeyHasher;
use xxhash_rust::xxh3::xxh3_64;

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

impl ExploreOptions {
    /// How a run of one of the exploration's schedules goes.
    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            check_invariants: self.check_invariants,
            policy: self.policy,
            ..RunOptions::default()
        }
    }
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

/// Progress counters, readable while an exploration runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// States visited so far.
    pub states: AtomicU64,
    /// Schedules finished so far.
    pub schedules: AtomicU64,
}

/// A point where the scheduler decides: the world and what the path to it
/// spent (the path itself is found afterwards, see [`crate::state_graph`]).
#[derive(Clone)]
struct Frontier {
    world: World,
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

/// A run still to make: from the start, or from a decision state by one
/// of its choices (whose step is already taken: the sleep sets of its
/// siblings need the footprint it was observed with).
struct Move {
    frontier: Frontier,
    choice: Option<Chosen>,
}

/// A choice taken at a decision state.
struct Chosen {
    /// The decision state's key.
    state: u64,
    /// The choice's number ([`Explorer::number`]).
    index: usize,
    /// Preemptions it costs (0 without a bound).
    cost: usize,
    /// The structural properties its step broke.
    findings: Vec<(String, String)>,
}
/// Decision points the search goes breadth first to before the workers
/// take over (fixed, so that shards split the same tree the same way).
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

/// What one part of an exploration found: the breadth-first part above
/// the subtrees (number 0, which every shard explores the same way), or
/// the subtrees one process explored (number 1). [`merge`] makes the
/// report of a whole exploration from all of them, whichever processes
/// explored them.
#[derive(Clone, Debug)]
pub struct Part {
    /// Which part.
    pub index: usize,
    /// Distinct decision states it reached.
    pub states: u64,
    /// The graph it explored.
    pub graph: StateGraph,
    /// Whether it explored everything (`false` when the time limit
    /// stopped it).
    pub complete: bool,
}

impl Part {
    fn new(index: usize, graph: StateGraph, complete: bool) -> Part {
        Part {
            index,
            states: graph.states(),
            graph,
            complete,
        }
    }
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
        ShardRecord {
            scenario: self.scenario.clone(),
            bound: self.bound.to_string(),
            policy: self.policy.clone(),
            shard: format!("{}/{}", self.shard.index, self.shard.count),
            seconds: self.seconds,
            parts: self.parts.iter().map(part_record).collect(),
        }
    }

    fn from_record(r: ShardRecord) -> std::result::Result<ShardFile, String> {
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
            parts: r.parts.into_iter().map(part_from_record).collect(),
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

fn leg_record(leg: &Leg) -> LegRecord {
    LegRecord {
        end: match &leg.end {
            End::State(key) => EndRecord::State(*key),
            End::Outcome(digest) => EndRecord::Outcome(*digest),
            End::Failure(message) => EndRecord::Failure(message.clone()),
        },
        findings: leg.findings.clone(),
    }
}

fn leg_from_record(leg: LegRecord) -> Leg {
    Leg {
        end: match leg.end {
            EndRecord::State(key) => End::State(key),
            EndRecord::Outcome(digest) => End::Outcome(digest),
            EndRecord::Failure(message) => End::Failure(message),
        },
        findings: leg.findings,
    }
}

fn part_record(p: &Part) -> PartRecord {
    let mut observations: Vec<ObservationRecord> = p
        .graph
        .observations
        .iter()
        .map(|(digest, (key, observation))| ObservationRecord {
            digest: *digest,
            key: key.clone(),
            observation: observation.clone(),
        })
        .collect();
    observations.sort_by_key(|o| o.digest);
    PartRecord {
        index: p.index,
        states: p.states,
        complete: p.complete,
        origin: p
            .graph
            .origin
            .as_ref()
            .map(|(budget, leg)| (*budget as u64, leg_record(leg))),
        choices: p
            .graph
            .choices
            .iter()
            .map(|(&(state, index), c)| ChoiceRecord {
                state,
                index,
                cost: c.cost as u64,
                leg: leg_record(&c.leg),
            })
            .collect(),
        observations,
    }
}

fn part_from_record(p: PartRecord) -> Part {
    let budget = |b: u64| usize::try_from(b).unwrap_or(usize::MAX);
    let graph = StateGraph {
        origin: p.origin.map(|(b, leg)| (budget(b), leg_from_record(leg))),
        choices: p
            .choices
            .into_iter()
            .map(|c| {
                let choice = Choice {
                    cost: budget(c.cost),
                    leg: leg_from_record(c.leg),
                };
                ((c.state, c.index), choice)
            })
            .collect(),
        observations: p
            .observations
            .into_iter()
            .map(|o| (o.digest, (o.key, o.observation)))
            .collect(),
    };
    Part {
        index: p.index,
        states: p.states,
        graph,
        complete: p.complete,
    }
}
/// Explores `scenario` exhaustively within `options`.
pub fn explore(
    scenario: &Arc<Scenario>,
    options: ExploreOptions,
    progress: &Progress,
) -> Result<Exploration> {
    let parts = explore_shard(scenario, options, progress, Shard::WHOLE)?;
    Ok(merge(scenario, &options, parts))
}

/// Explores `shard`'s subtrees of `scenario`: breadth first to [`SPLIT`]
/// runs still to make, then the share's runs on as many workers as the
/// current rayon pool has threads, sharing one visited set and stealing
/// each other's work (`crate::workers`).
pub fn explore_shard(
    scenario: &Arc<Scenario>,
    options: ExploreOptions,
    progress: &Progress,
    shard: Shard,
) -> Result<Vec<Part>> {
    let start = Move {
        frontier: Frontier {
            world: World::with_policy(scenario.clone(), options.policy)?,
            preemptions: 0,
            burst: None,
            sleep: SleepSet::default(),
        },
        choice: None,
    };
    let explorer = Explorer {
        options,
        progress,
        deadline: options.time_limit.map(|t| Instant::now() + t),
        visited: Visited::default(),
        sleeps: Mutex::default(),
    };
    let mut above = Recorder::default();
    let mut queue = VecDeque::from([start]);
    while queue.len() < SPLIT {
        let Some(next) = queue.pop_front() else { break };
        explorer.run(&mut above, next, &mut |m| queue.push_back(m));
    }
    let mine: Vec<Move> = queue
        .into_iter()
        .enumerate()
        .filter(|(i, _)| shard.takes(*i))
        .map(|(_, m)| m)
        .collect();
    let workers = run_workers(
        explorer.threads(),
        mine,
        Recorder::default,
        |recorder, m, spawner| explorer.run(recorder, m, &mut |child| spawner.spawn(child)),
    );
    let mut below = Recorder::default();
    for w in workers {
        below.graph.absorb(w.graph);
        below.stopped |= w.stopped;
    }
    // Every shard reports the part above the subtrees, which each one
    // explores the same way: `merge` unites identical records once.
    Ok(vec![above.into_part(0), below.into_part(1)])
}

/// The report of a whole exploration of `scenario` with `options` from
/// its parts, from any number of shards, in any order: the union of their
/// graphs ([`StateGraph`]), so exactly what one process reports. Without a
/// bound the graph's paths number choices in an order a replay does not
/// see (`crate::choice_order`): each schedule shown is translated to the
/// one a replay follows.
pub fn merge(scenario: &Arc<Scenario>, options: &ExploreOptions, parts: Vec<Part>) -> Exploration {
    let mut graph = StateGraph::default();
    let mut complete = true;
    for part in parts {
        complete &= part.complete;
        graph.absorb(part.graph);
    }
    let found = graph.report(complete);
    match options.preemption_bound {
        Bound::Unbounded => replayable(found, scenario, options.run_options()),
        Bound::Preemptions(_) => found,
    }
}

/// What one worker recorded.
#[derive(Default)]
struct Recorder {
    graph: StateGraph,
    /// Whether the time limit stopped it.
    stopped: bool,
}

impl Recorder {
    fn into_part(self, index: usize) -> Part {
        Part::new(index, self.graph, !self.stopped)
    }
}

/// What every worker shares.
struct Explorer<'p> {
    options: ExploreOptions,
    progress: &'p Progress,
    /// When the time limit runs out.
    deadline: Option<Instant>,
    visited: Visited,
    /// With reduction: the sleep set each state was explored with (one
    /// worker then, see [`Explorer::threads`], so the lock is never
    /// contended).
    sleeps: Mutex<SleepMemory>,
}

/// Where running on from a move stopped.
enum Reached {
    Finished(Box<Observation>),
    Decision(Vec<Task>),
}

impl Explorer<'_> {
    /// Makes move `m` (its choice's step and the steps after it while only
    /// one task can run), records where it led, and when that is a
    /// decision state to explore, spawns one move per choice within the
    /// budget (the first choice is spawned last: taken next).
    fn run(&self, recorder: &mut Recorder, mut m: Move, spawn: &mut impl FnMut(Move)) {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            recorder.stopped = true;
            return;
        }
        let mut findings = match &mut m.choice {
            Some(c) => std::mem::take(&mut c.findings),
            None => Vec::new(),
        };
        let reached = self.run_to_decision(&mut m.frontier, &mut findings);
        let (end, decision) = match reached {
            Ok(Reached::Finished(obs)) => (End::Outcome(observation_digest(recorder, *obs)), None),
            Ok(Reached::Decision(runnable)) => {
                let key = m.frontier.key(self.options.preemption_bound, &runnable);
                (End::State(key), Some((key, runnable)))
            }
            Err(e) => (End::Failure(e.to_string()), None),
        };
        let leg = Leg { end, findings };
        match m.choice {
            Some(c) => recorder
                .graph
                .record(c.state, c.index, Choice { cost: c.cost, leg }),
            None => {
                let budget = self.options.preemption_bound.budget_after(0);
                recorder.graph.origin = Some((budget, leg));
            }
        }
        match decision {
            Some((key, runnable)) => self.expand(recorder, m.frontier, key, runnable, spawn),
            None => self.finish_schedule(),
        }
    }

    /// Takes the choices of decision state `key` that it must explore (it
    /// is new or reached with a larger budget than before; with reduction,
    /// the tasks that do not sleep, or that slept when it was explored
    /// before and are awake now) and spawns a move per choice whose step
    /// did not fail.
    fn expand(
        &self,
        recorder: &mut Recorder,
        f: Frontier,
        key: u64,
        runnable: Vec<Task>,
        spawn: &mut impl FnMut(Move),
    ) {
        let bound = self.options.preemption_bound;
        let budget = bound.budget_after(f.preemptions);
        let sleepers = match self.reducing() {
            true => self
                .sleeps
                .lock()
                .expect("no worker panics")
                .arrive(key, &f.sleep),
            false => Sleepers::New,
        };
        let visit = self.visited.raise(key, budget);
        if sleepers == Sleepers::Done || (!visit.explores() && !self.reducing()) {
            return self.finish_schedule();
        }
        if visit == Visit::New {
            self.progress.states.fetch_add(1, Ordering::Relaxed);
        }
        let chosen: Vec<(usize, Task)> = runnable
            .iter()
            .cloned()
            .enumerate()
            .filter(|(i, task)| f.cost(*i, task) <= budget)
            .filter(|(_, task)| match &sleepers {
                Sleepers::Awake(woken) => woken.contains(task),
                _ => !f.sleep.contains(task),
            })
            .collect();
        if chosen.is_empty() {
            // Every task sleeps: each order from here was explored elsewhere.
            return self.finish_schedule();
        }
        // Siblings explored before a child sleep in it while independent
        // of its step.
        let mut explored_siblings = f.sleep.clone();
        // The first choice takes the parent itself: one clone fewer per
        // state.
        let mut parents: Vec<Frontier> = chosen.iter().skip(1).map(|_| f.clone()).collect();
        parents.insert(0, f);
        let mut moves = Vec::with_capacity(chosen.len());
        for (f, (i, task)) in parents.into_iter().zip(chosen) {
            let cost = f.cost(i, &task);
            let mut child = Frontier {
                preemptions: f.preemptions + cost,
                burst: f.burst_after(i, &task),
                ..f
            };
            let cost = if bound == Bound::Unbounded { 0 } else { cost };
            let i = self.number(&runnable, i);
            let watch = self
                .reducing()
                .then(|| StepWatch::before(&child.world, &task));
            if let Err(e) = self.step(&mut child.world, &task) {
                let leg = Leg {
                    end: End::Failure(e.to_string()),
                    findings: Vec::new(),
                };
                recorder.graph.record(key, i, Choice { cost, leg });
                self.finish_schedule();
                continue;
            }
            if let Some(watch) = watch {
                let footprint = watch.after(&child.world);
                child.sleep = explored_siblings.after(&footprint);
                explored_siblings.add(&task, &footprint);
            }
            let mut findings = Vec::new();
            self.check_structure(&child.world, &mut findings);
            moves.push(Move {
                frontier: child,
                choice: Some(Chosen {
                    state: key,
                    index: i,
                    cost,
                    findings,
                }),
            });
        }
        // Spawned last, the first choice is taken first: depth first in
        // the canonical order.
        for m in moves.into_iter().rev() {
            spawn(m);
        }
    }

    /// Steps while only one task can run.
    fn run_to_decision(
        &self,
        f: &mut Frontier,
        findings: &mut Vec<(String, String)>,
    ) -> Result<Reached> {
        let mut steps = 0;
        loop {
            if let Some(obs) = f.world.finished() {
                return Ok(Reached::Finished(Box::new(obs.clone())));
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
                    self.check_structure(&f.world, findings);
                    f.burst = f.burst_after(0, &runnable[0]);
                }
                _ => return Ok(Reached::Decision(runnable)),
            }
        }
    }

    /// The number under which the graph records the choice of
    /// `runnable[position]`: its position with a bound, whose state key
    /// holds the main loop's order; without one, its number in an order
    /// that depends only on the key (`crate::choice_order`), so that a
    /// state reached again with its tasks listed in another order, or
    /// explored again for tasks a sleep set held, numbers every task as
    /// before.
    fn number(&self, runnable: &[Task], position: usize) -> usize {
        match self.options.preemption_bound {
            Bound::Unbounded => canonical_number(runnable, position),
            Bound::Preemptions(_) => position,
        }
    }

    /// Whether sleep sets prune: asked for, and sound (without a bound).
    fn reducing(&self) -> bool {
        self.options.reduction == Reduction::On && self.options.preemption_bound == Bound::Unbounded
    }

    /// How many workers explore the subtrees. With reduction, one: the
    /// argument that sleep sets with state caching lose no state
    /// (`crate::reduction`) is made for a depth-first search, where a
    /// state found in the visited set, or a sibling whose task sleeps,
    /// was explored completely before; with workers running at once it
    /// may still be under way, and that case is not proved sound.
    fn threads(&self) -> usize {
        match self.reducing() {
            true => 1,
            false => rayon::current_num_threads(),
        }
    }

    fn step(&self, world: &mut World, task: &Task) -> Result<()> {
        world.step(task)?;
        if self.options.check_invariants {
            world
                .check_invariants_after_step()
                .map_err(|what| Error::Invariant { step: 0, what })?;
        }
        Ok(())
    }

    /// Notes a structural property the world breaks (property: the
    /// message's text before its first `:`).
    fn check_structure(&self, world: &World, findings: &mut Vec<(String, String)>) {
        if !self.options.check_structure {
            return;
        }
        if let Err(message) = world.layer().check_structure() {
            let property = message.split(':').next().unwrap_or_default().to_string();
            if !findings.iter().any(|(p, _)| *p == property) {
                findings.push((property, message));
            }
        }
    }

    fn finish_schedule(&self) {
        self.progress.schedules.fetch_add(1, Ordering::Relaxed);
    }
}

/// The observation's digest, recording it (and its outcome key) the first
/// time this worker reaches it.
fn observation_digest(recorder: &mut Recorder, obs: Observation) -> u64 {
    let digest = xxh3_64(format!("{obs:?}").as_bytes());
    recorder
        .graph
        .observations
        .entry(digest)
        .or_insert_with(|| (outcome_key(&obs), obs));
    digest
}
