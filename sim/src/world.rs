//! A world: the block layer on memory storage, its virtual clock, and the
//! scenario's client. Its tasks are the client and each job; the world
//! steps whichever task the scheduler picks.

use crate::error::{Error, Result};
use crate::exact_hash::{exact_hash_members, History};
use crate::graph::normalised_graph;
use crate::images::{create_images, inspect_image, unclean_images};
use crate::scenario::{
    datum_text, execute, qmp_event_data, Datum, ErrorRecord, EventData, EventRecord, Execute,
    FinalQuery, JobRecord, Observation, Scenario, ServerExit, SettleSpec, StepKind, StepRecord,
    WaitSpec, SCRATCH_DIR,
};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use strata_block::policy::Policy;
use strata_block::{BlockLayer, CheckedInvariants, MemFiles, Runnable, StateKeyHasher};
use strata_formats::MemStorage;
use strata_jobs::{JobInfo, JobStatus, JobTable, Wait};
use strata_monitor::Monitor;
use strata_qmp::{Command, CommandHandler, EventSink};

/// How many job timers a clock move may choose from.
pub const TIMER_CHOICES: usize = 3;

/// Nanoseconds per second of the scenario's timeouts and sleeps.
const NS: f64 = 1e9;

/// Statuses in which a job cannot progress on its own (the harness's
/// `STABLE_STATUSES`).
const STABLE: [&str; 7] = [
    "concluded",
    "null",
    "ready",
    "standby",
    "pending",
    "paused",
    "undefined",
];

/// Statuses in which the harness unthrottles a job (`ACTIVE_FOR_SPEED`).
const ACTIVE_FOR_SPEED: [&str; 5] = ["created", "running", "paused", "ready", "standby"];

/// Something that can take a step.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Task {
    /// The scenario's client: its next command, or the end of a wait.
    Client,
    /// A job's step machine, by job id.
    Job(String),
    /// Nothing can run: move the clock to this time (the earliest timer
    /// is the canonical choice; a later one lets a job that slept longer
    /// than asked overtake the others, as a loaded host would).
    Advance(u64),
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Task::Client => f.write_str("client"),
            Task::Job(id) => write!(f, "job:{id}"),
            Task::Advance(t) => write!(f, "advance to {:.6}s", *t as f64 / 1e9),
        }
    }
}

/// How far a settle step got: jobs newest first, the next one to
/// unthrottle, and whether it has been.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct SettleProgress {
    order: Vec<String>,
    next: usize,
    sped: bool,
}

/// The block layer, the clock and the client, as one clonable value.
#[derive(Clone)]
pub struct World {
    scenario: Arc<Scenario>,
    /// The one monitor of the run, owning the block layer: every command
    /// of the scenario goes through it, as through qemu-storage-daemon's.
    monitor: Monitor<MemFiles>,
    /// The client's step; `steps.len()` is the final settle and capture.
    step: usize,
    /// When the client reached its current step (for timeouts).
    entered_ns: u64,
    settle: Option<SettleProgress>,
    events: History<EventData>,
    cursors: BTreeMap<String, usize>,
    labels: BTreeMap<String, Datum>,
    created: Vec<String>,
    last_status: BTreeMap<String, JobStatus>,
    records: History<StepRecord>,
    harness_errors: Vec<String>,
    finished: Option<Observation>,
    /// What the last passed invariant check of the block layer depended
    /// on ([`World::check_invariants_after_step`]); no part of the state.
    invariants_checked: Option<CheckedInvariants>,
}

impl World {
    /// A world with the scenario's images created and nothing run.
    pub fn new(scenario: Arc<Scenario>) -> Result<World> {
        World::with_policy(scenario, strata_block::policy::default())
    }

    /// A world whose block layer follows `policy`.
    pub fn with_policy(scenario: Arc<Scenario>, policy: &'static Policy) -> Result<World> {
        let mut files = create_images(&scenario.images)?.with_working_dir(SCRATCH_DIR);
        // The harness writes the plain files first and the images over
        // them: an image of the same name wins.
        for file in &scenario.files {
            if files.get(&file.name).is_none() {
                files.insert(
                    file.name.clone(),
                    MemStorage::from_bytes(file.content.as_bytes()),
                );
            }
        }
        let mut layer = BlockLayer::new(files, 0);
        layer.set_policy(policy);
        let mut world = World {
            monitor: Monitor::new(layer),
            scenario,
            step: 0,
            entered_ns: 0,
            settle: None,
            events: History::default(),
            cursors: BTreeMap::new(),
            labels: BTreeMap::new(),
            created: Vec::new(),
            last_status: BTreeMap::new(),
            records: History::default(),
            harness_errors: Vec::new(),
            finished: None,
            invariants_checked: None,
        };
        world.enter_step();
        Ok(world)
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The block layer.
    pub fn layer(&self) -> &BlockLayer<MemFiles> {
        self.monitor.layer()
    }

    /// Virtual time in nanoseconds.
    pub fn now_ns(&self) -> u64 {
        self.layer().now_ns()
    }

    /// The client's finished steps, as the harness records them.
    pub fn records(&self) -> &[StepRecord] {
        self.records.as_slice()
    }

    /// Every event so far, in order.
    pub fn events(&self) -> &[EventData] {
        self.events.as_slice()
    }

    /// The observation, once the client has finished.
    pub fn finished(&self) -> Option<&Observation> {
        self.finished.as_ref()
    }

    /// The tasks that can step now: what the block layer's main loop lists
    /// ([`BlockLayer::runnable`], in QEMU's order), with the client in the
    /// monitor's place when it has something to do, then a move of the
    /// clock to the next timer (as if all of them were late). When nothing
    /// can step, the clock moves: to the earliest timer first, or to one of
    /// the next few.
    pub fn runnable(&self) -> Vec<Task> {
        let listed = self.layer().runnable();
        let monitor_turn = listed.contains(&Runnable::Monitor);
        let mut tasks: Vec<Task> = listed
            .into_iter()
            .filter_map(|r| match r {
                Runnable::Job(id) => Some(Task::Job(id)),
                Runnable::Monitor => None,
            })
            .collect();
        if !monitor_turn || self.finished.is_some() {
            return tasks;
        }
        if self.client_ready() {
            tasks.push(Task::Client);
        }
        if tasks.is_empty() {
            tasks = self.clock_moves(true);
        } else {
            // Everything runnable may also be late: the clock moves on to
            // the next job timer first (never the canonical choice, and
            // never to a client timeout).
            tasks.extend(self.clock_moves(false).into_iter().take(1));
        }
        tasks
    }

    /// The times the clock may jump to: the distinct job timers up to the
    /// client's deadline (at most [`TIMER_CHOICES`]), else (when
    /// `to_deadline`) the deadline.
    fn clock_moves(&self, to_deadline: bool) -> Vec<Task> {
        let now = self.now_ns();
        let deadline = self.client_deadline().filter(|d| *d > now);
        let mut timers: Vec<u64> = self
            .layer()
            .jobs()
            .iter()
            .filter_map(|j| match j.next_wait() {
                Wait::SleepUntil(t) if t > now => Some(t),
                _ => None,
            })
            .filter(|t| deadline.is_none_or(|d| *t <= d))
            .collect();
        timers.sort_unstable();
        timers.dedup();
        timers.truncate(TIMER_CHOICES);
        if timers.is_empty() && to_deadline {
            timers.extend(deadline);
        }
        timers.into_iter().map(Task::Advance).collect()
    }

    /// Steps `task` once.
    pub fn step(&mut self, task: &Task) -> Result<()> {
        match task {
            Task::Client => self.step_client(),
            Task::Advance(t) => {
                self.monitor.layer_mut().advance_to(*t);
                Ok(())
            }
            Task::Job(id) => {
                self.monitor
                    .layer_mut()
                    .step_job(id)
                    .map_err(|e| Error::Scenario(format!("stepping job {id}: {e}")))?;
                self.drain_monitor_events()
            }
        }
    }

    /// A hash of everything that decides what happens next and what the
    /// observation will hold.
    pub fn state_key(&self) -> u64 {
        self.key_with(|layer, h| layer.hash_main_loop(h))
    }

    /// [`World::state_key`] with the main loop's order left out: the
    /// jobs it entered as a set, and what can run now (`runnable`, this
    /// world's [`World::runnable`]) as a set. Which of the runnable tasks
    /// comes first only decides which choice is canonical; the set of
    /// tasks that can run, now and after any step, does not depend on it
    /// (`MainLoop` orders what it lists by yield order, and lists the
    /// same jobs whatever that order). Two worlds with equal unordered keys
    /// reach the same outcomes when every choice is explored: an
    /// exploration without a preemption bound keys states this way, so
    /// that two jobs' steps run in either order meet again.
    pub fn unordered_state_key(&self, runnable: &[Task]) -> u64 {
        self.key_with(|layer, h| {
            let mut entered: Vec<&String> = layer.main_loop().entered().iter().collect();
            entered.sort();
            let mut tasks: Vec<&Task> = runnable.iter().collect();
            tasks.sort();
            (entered, tasks).hash(h);
        })
    }

    fn key_with(&self, main_loop: impl FnOnce(&BlockLayer<MemFiles>, &mut StateKeyHasher)) -> u64 {
        let mut h = StateKeyHasher::default();
        self.layer().state_key().hash(&mut h);
        main_loop(self.layer(), &mut h);
        self.monitor.hash_server_state(&mut h);
        (self.step, self.entered_ns, &self.settle, &self.cursors).hash(&mut h);
        exact_hash_members(self.labels.iter(), &mut h);
        (self.events.digest(), self.records.digest()).hash(&mut h);
        self.harness_errors.hash(&mut h);
        h.finish()
    }

    // ----- the client ----------------------------------------------------------

    fn settle_spec(&self) -> Option<&SettleSpec> {
        match self.scenario.steps.get(self.step) {
            Some(step) => match &step.kind {
                StepKind::Settle(s) => Some(s),
                _ => None,
            },
            None => self.scenario.final_settle.as_ref(),
        }
    }

    fn timed_out(&self, seconds: f64) -> bool {
        self.now_ns() >= self.deadline(seconds)
    }

    fn deadline(&self, seconds: f64) -> u64 {
        self.entered_ns + (seconds * NS) as u64
    }

    /// Whether the client has something for the monitor now: the daemon's
    /// monitor socket is readable.
    pub fn monitor_readable(&self) -> bool {
        self.finished.is_none() && self.client_ready()
    }

    /// The daemon's stepping ([`BlockLayer::run_jobs`]) at the current
    /// virtual time, with the events it raised taken as the daemon sends
    /// them.
    pub fn run_jobs_as_daemon(&mut self) -> Result<()> {
        let now = self.now_ns();
        self.monitor
            .layer_mut()
            .run_jobs(&mut || now, &mut || true)
            .map_err(|e| Error::Scenario(format!("stepping jobs: {e}")))?;
        self.drain_monitor_events()
    }

    fn client_ready(&self) -> bool {
        let Some(step) = self.scenario.steps.get(self.step) else {
            return self.settle_ready();
        };
        match &step.kind {
            StepKind::Note | StepKind::Execute(_) | StepKind::Graph => true,
            StepKind::Sleep(s) => self.timed_out(*s),
            StepKind::Wait(w) => self.find_event(w).is_some() || self.timed_out(w.timeout),
            StepKind::WaitStatus {
                job,
                statuses,
                timeout,
                ..
            } => self.status_reached(job, statuses) || self.timed_out(*timeout),
            StepKind::WaitProgress {
                job, min, timeout, ..
            } => self.progress_reached(job, *min) || self.timed_out(*timeout),
            StepKind::Settle(_) => self.settle_ready(),
        }
    }

    /// When the client's current step times out (a sleep's end, a wait's
    /// or a settle's timeout).
    pub fn client_deadline(&self) -> Option<u64> {
        let timeout = match self.scenario.steps.get(self.step).map(|s| &s.kind) {
            Some(StepKind::Sleep(s)) => *s,
            Some(StepKind::Wait(w)) => w.timeout,
            Some(StepKind::WaitStatus { timeout, .. } | StepKind::WaitProgress { timeout, .. }) => {
                *timeout
            }
            _ => self.settle_spec()?.timeout,
        };
        Some(self.deadline(timeout))
    }

    fn jobs(&self) -> Vec<JobInfo> {
        self.layer().jobs().query_jobs()
    }

    fn job_status(&self, id: &str) -> Option<&'static str> {
        self.jobs()
            .into_iter()
            .find(|j| j.id == id)
            .map(|j| j.status.as_str())
    }

    fn status_reached(&self, job: &str, statuses: &[String]) -> bool {
        match self.job_status(job) {
            None => statuses.iter().any(|s| s == "absent"),
            Some(s) => statuses.iter().any(|w| w == s),
        }
    }

    fn progress_reached(&self, job: &str, min: u64) -> bool {
        self.jobs()
            .iter()
            .any(|j| j.id == job && j.current_progress >= min)
    }

    fn all_stable(&self) -> bool {
        self.jobs()
            .iter()
            .all(|j| STABLE.contains(&j.status.as_str()))
    }

    fn settle_ready(&self) -> bool {
        let (Some(spec), Some(progress)) = (self.settle_spec(), &self.settle) else {
            return true; // no final settle: capture at once
        };
        if self.timed_out(spec.timeout) {
            return true;
        }
        match progress.order.get(progress.next) {
            Some(_) if !progress.sped || !spec.serial => true,
            Some(job) => self.job_status(job).is_none_or(|s| STABLE.contains(&s)),
            None => self.all_stable(),
        }
    }

    fn find_event(&self, w: &WaitSpec) -> Option<usize> {
        let start = self.cursors.get(&datum_text(&w.spec)).copied().unwrap_or(0);
        let events = self.events.as_slice();
        (start..events.len()).find(|&i| {
            let e = &events[i];
            w.event.as_ref().is_none_or(|n| *n == e.name)
                && w.job.as_ref().is_none_or(|j| e.job() == Some(j.as_str()))
                && w.data.iter().all(|(k, v)| e.data.get(k) == Some(v))
        })
    }

    /// Called whenever the client moves to a new step.
    fn enter_step(&mut self) {
        self.entered_ns = self.now_ns();
        self.settle = self.settle_spec().map(|_| {
            let live: Vec<String> = self.jobs().into_iter().map(|j| j.id).collect();
            let mut order: Vec<String> = self
                .created
                .iter()
                .rev()
                .filter(|j| live.contains(j))
                .cloned()
                .collect();
            let mut rest: Vec<String> = live.into_iter().filter(|j| !order.contains(j)).collect();
            rest.sort();
            order.extend(rest);
            SettleProgress {
                order,
                next: 0,
                sped: false,
            }
        });
    }

    fn finish_step(&mut self, rec: StepRecord) {
        self.records.push(rec);
        self.step += 1;
        self.enter_step();
    }

    /// The frozen node-to-node links, by node names: `(parent, child
    /// name, child)`.
    pub(crate) fn frozen_links(&self) -> Vec<(String, String, String)> {
        let g = self.layer().core().graph().graph();
        let mut links = Vec::new();
        for node in g.nodes() {
            let Ok(n) = g.node(node) else { continue };
            for &edge in n.children() {
                let Ok(e) = g.edge(edge) else { continue };
                let child = g.node(e.child()).map(|c| c.name().to_string());
                if let (true, Ok(child)) = (e.frozen, child) {
                    links.push((n.name().to_string(), e.name().to_string(), child));
                }
            }
        }
        links.sort();
        links
    }

    /// The names of `name` and every node below it.
    fn subtree_names(&self, name: &str) -> Vec<String> {
        let g = self.layer().core().graph().graph();
        let mut names = Vec::new();
        let mut pending: Vec<_> = g.find_node(name).into_iter().collect();
        while let Some(node) = pending.pop() {
            let Ok(n) = g.node(node) else { continue };
            if names.iter().any(|known| known == n.name()) {
                continue;
            }
            names.push(n.name().to_string());
            pending.extend(
                n.children()
                    .iter()
                    .filter_map(|&e| g.edge(e).ok().map(|e| e.child())),
            );
        }
        names
    }

    fn step_client(&mut self) -> Result<()> {
        let Some(step) = self.scenario.steps.get(self.step).cloned() else {
            return self.step_final();
        };
        // Only jobs own frozen links: no command but a job verb may
        // change or unfreeze one — except that a copy-on-read filter with
        // `bottom` owns the chain it froze, which closing it (blockdev-del)
        // unfreezes.
        let frozen_before = match &step.kind {
            StepKind::Execute(e) if !is_job_verb(&e.name) => Some(self.frozen_links()),
            _ => None,
        };
        let deleted_subtree = match &step.kind {
            StepKind::Execute(e) if e.name == "blockdev-del" => e
                .arguments
                .as_ref()
                .and_then(|a| a.get("node-name"))
                .and_then(Datum::as_str)
                .map(|name| self.subtree_names(name))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let result = self.step_client_inner(step);
        if let Some(before) = frozen_before {
            let after = self.frozen_links();
            if let Some(lost) = before
                .iter()
                .find(|l| !after.contains(l) && !deleted_subtree.contains(&l.0))
            {
                return Err(Error::Invariant {
                    step: 0,
                    what: format!(
                        "frozen link {} -{}-> {} changed by a command that does not own it",
                        lost.0, lost.1, lost.2
                    ),
                });
            }
        }
        result
    }

    fn step_client_inner(&mut self, step: crate::scenario::Step) -> Result<()> {
        let mut rec = StepRecord::for_step(self.step, &step);
        match &step.kind {
            StepKind::Note => {}
            StepKind::Execute(e) => self.do_execute(e, &mut rec)?,
            StepKind::Wait(w) => self.do_wait(w, &mut rec),
            StepKind::Settle(spec) => {
                if !self.do_settle(spec, &mut rec)? {
                    return Ok(());
                }
            }
            StepKind::WaitStatus {
                job,
                statuses,
                optional,
                ..
            } => {
                let ok = self.status_reached(job, statuses);
                rec.result = Some(if ok { "ok" } else { "timeout" }.into());
                rec.expect_met = Some(ok || *optional);
                rec.status = self.job_status(job).map(str::to_string);
            }
            StepKind::WaitProgress {
                job, min, optional, ..
            } => {
                let ok = self.progress_reached(job, *min);
                rec.result = Some(if ok { "ok" } else { "timeout" }.into());
                rec.expect_met = Some(ok || *optional);
                if !ok {
                    // The harness records where a job stood when it gave up.
                    rec.status = self.job_status(job).map(str::to_string);
                }
            }
            StepKind::Graph => {
                rec.graph = Some(normalised_graph(self.monitor.layer_mut()));
                rec.result = Some("ok".into());
                rec.expect_met = Some(true);
            }
            StepKind::Sleep(_) => rec.expect_met = Some(true),
        }
        self.finish_step(rec);
        Ok(())
    }

    fn do_execute(&mut self, e: &Execute, rec: &mut StepRecord) -> Result<()> {
        let (result, events) = execute(&mut self.monitor, e);
        let events = events
            .into_iter()
            .map(|ev| EventData {
                data: scrub_datum(&ev.data),
                ..ev
            })
            .collect();
        self.add_events(events)?;
        let projected = |v: &Datum| match &e.record {
            Some(r) => v.project(r),
            None => v.clone(),
        };
        let result = result.map(|v| scrub_datum(&v)).map_err(|err| ErrorRecord {
            desc: scrub_auto_names(&err.desc),
            ..err
        });
        let mut met = e.expect.met(result.as_ref().err());
        match &result {
            Err(err) => {
                rec.result = Some("error".into());
                rec.error = Some(err.clone());
            }
            Ok(v) => {
                rec.result = Some("ok".into());
                if e.record.is_some() {
                    rec.return_value = Some(projected(v));
                }
                if let Some(label) = &e.label {
                    self.labels.insert(label.clone(), projected(v));
                }
            }
        }
        if let Some(label) = &e.same_as {
            let current = result.as_ref().ok().map(projected);
            let same = current.as_ref() == self.labels.get(label);
            rec.same_as = Some(label.clone());
            rec.same = Some(same);
            met &= same;
        }
        rec.expect_met = Some(met);
        Ok(())
    }

    fn do_wait(&mut self, w: &WaitSpec, rec: &mut StepRecord) {
        match self.find_event(w) {
            Some(i) => {
                self.cursors.insert(datum_text(&w.spec), i + 1);
                rec.result = Some("ok".into());
                rec.data = Some(self.events.as_slice()[i].data.project(&w.record));
                rec.expect_met = Some(true);
            }
            None => {
                rec.result = Some("timeout".into());
                rec.expect_met = Some(w.optional);
            }
        }
    }

    /// One action of a settle; `true` once it is complete.
    fn do_settle(&mut self, spec: &SettleSpec, rec: &mut StepRecord) -> Result<bool> {
        let timed_out = self.timed_out(spec.timeout);
        let mut progress = self.settle.clone().expect("settle entered");
        if !timed_out {
            if let Some(job) = progress.order.get(progress.next).cloned() {
                if !progress.sped {
                    // One block-job-set-speed per action: jobs may run
                    // between two commands.
                    self.unthrottle(&job)?;
                    if spec.serial {
                        progress.sped = true;
                    } else {
                        progress.next += 1;
                    }
                } else {
                    progress.next += 1;
                    progress.sped = false;
                }
                self.settle = Some(progress);
                return Ok(false);
            }
        }
        let ok = !timed_out || self.all_stable();
        rec.result = Some(if ok { "ok" } else { "timeout" }.into());
        rec.expect_met = Some(ok);
        rec.jobs = Some(self.job_records());
        Ok(true)
    }

    fn unthrottle(&mut self, job: &str) -> Result<()> {
        if self
            .job_status(job)
            .is_some_and(|s| ACTIVE_FOR_SPEED.contains(&s))
        {
            // The harness ignores the answer, as QEMU's would not matter.
            let set_speed = Command::BlockJobSetSpeed {
                device: job.to_string(),
                speed: 0,
            };
            let _ = self.monitor.dispatch(set_speed, &mut EventSink::default());
            let events = self.monitor.take_command_events();
            self.add_events(events.into_iter().map(|(e, _)| qmp_event_data(e)).collect())?;
        }
        Ok(())
    }

    fn job_records(&self) -> Vec<JobRecord> {
        let mut jobs: Vec<JobRecord> = self
            .jobs()
            .into_iter()
            .map(|j| JobRecord {
                id: j.id,
                job_type: j.job_type.as_str().to_string(),
                status: j.status.as_str().to_string(),
            })
            .collect();
        jobs.sort();
        jobs
    }

    /// The final settle's actions, then the capture.
    fn step_final(&mut self) -> Result<()> {
        if let Some(spec) = self.scenario.final_settle.clone() {
            let mut rec = StepRecord::default();
            if !self.do_settle(&spec, &mut rec)? {
                return Ok(());
            }
            if rec.result.as_deref() != Some("ok") {
                self.harness_errors.push("final settle timed out".into());
            }
        }
        self.capture();
        Ok(())
    }

    fn capture(&mut self) {
        let final_jobs = self.job_records();
        let graph = normalised_graph(self.monitor.layer_mut());
        let final_queries = self.run_final_queries();
        self.quit();
        let files = self.layer().core().files().clone();
        let images = self
            .scenario
            .images
            .iter()
            .filter(|i| !i.no_inspect)
            .map(|i| (i.name.clone(), inspect_image(&files, i)))
            .collect();
        let mut sequences: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in self.events.as_slice() {
            let Some(job) = e.job() else { continue };
            let label = match e.name.as_str() {
                "JOB_STATUS_CHANGE" => e
                    .data
                    .get("status")
                    .and_then(Datum::as_str)
                    .unwrap_or("?")
                    .to_string(),
                other => other.to_string(),
            };
            sequences.entry(job.to_string()).or_default().push(label);
        }
        let observation = Observation {
            scenario: self.scenario.name.clone(),
            expectations_failed: self
                .records
                .as_slice()
                .iter()
                .filter(|r| r.expect_met == Some(false))
                .map(|r| r.i)
                .collect(),
            steps: self.records.take(),
            events: self
                .events
                .as_slice()
                .iter()
                .map(|e| EventRecord {
                    event: e.name.clone(),
                    job: e.job().map(str::to_string),
                })
                .collect(),
            job_event_sequences: sequences,
            final_jobs,
            graph: Some(graph),
            images,
            final_queries,
            server_exit: Some(ServerExit {
                code: Some(0),
                killed: false,
            }),
            harness_errors: std::mem::take(&mut self.harness_errors),
            volatile: self.scenario.volatile.clone(),
        };
        // The harness records its scratch directory as `{dir}`.
        self.finished = Some(if self.scenario.uses_scratch_dir {
            observation.scrub_scratch_dir()
        } else {
            observation
        });
    }

    /// The harness's shutdown: `quit`, whose events (the jobs still
    /// present are cancelled) it records; the images are inspected after.
    fn quit(&mut self) {
        if let Err(e) = self
            .monitor
            .dispatch(Command::Quit, &mut EventSink::default())
        {
            self.harness_errors.push(format!("quit: {e}"));
        }
        let events = self.monitor.take_command_events();
        if let Err(e) =
            self.add_events(events.into_iter().map(|(e, _)| qmp_event_data(e)).collect())
        {
            self.harness_errors.push(e.to_string());
        }
    }

    /// The scenario's `final_queries`, run after the final graph is
    /// recorded (`None` when it has none, as the harness leaves the key out).
    fn run_final_queries(&mut self) -> Option<Vec<FinalQuery>> {
        if self.scenario.final_queries.is_empty() {
            return None;
        }
        let scenario = self.scenario.clone();
        let mut results = Vec::new();
        for query in &scenario.final_queries {
            let (result, events) = execute(&mut self.monitor, query);
            if let Err(e) = self.add_events(events) {
                self.harness_errors.push(e.to_string());
            }
            let (ret, error) = match result {
                Ok(v) => {
                    let v = scrub_datum(&v);
                    (
                        Some(query.record.as_ref().map_or(v.clone(), |r| v.project(r))),
                        None,
                    )
                }
                Err(e) => (None, Some(e)),
            };
            results.push(FinalQuery {
                execute: query.name.clone(),
                ret,
                error,
            });
        }
        Some(results)
    }

    // ----- events and invariants ---------------------------------------------------

    /// The events job steps raised, as the daemon sends them to every
    /// client.
    fn drain_monitor_events(&mut self) -> Result<()> {
        let events = self
            .monitor
            .take_events()
            .into_iter()
            .map(|(e, _)| qmp_event_data(e))
            .collect();
        self.add_events(events)
    }

    /// Appends events, checking every status change against `JobSTT`.
    fn add_events(&mut self, events: Vec<EventData>) -> Result<()> {
        for e in events {
            if e.name == "JOB_STATUS_CHANGE" {
                let job = e.job().unwrap_or_default().to_string();
                let status = e
                    .data
                    .get("status")
                    .and_then(Datum::as_str)
                    .and_then(JobStatus::from_qapi)
                    .ok_or_else(|| Error::Invariant {
                        step: 0,
                        what: format!("unknown status in {}", datum_text(&e.data)),
                    })?;
                let from = self
                    .last_status
                    .get(&job)
                    .copied()
                    .unwrap_or(JobStatus::Undefined);
                if !JobTable::transition_allowed(from, status) {
                    return Err(Error::Invariant {
                        step: 0,
                        what: format!(
                            "job {job}: {} -> {} is not allowed by JobSTT",
                            from.as_str(),
                            status.as_str()
                        ),
                    });
                }
                if status == JobStatus::Created && !self.created.contains(&job) {
                    self.created.push(job.clone());
                }
                if status == JobStatus::Null {
                    // The id is free again: a new job may take it.
                    self.last_status.remove(&job);
                } else {
                    self.last_status.insert(job, status);
                }
            }
            self.events.push(e);
        }
        Ok(())
    }

    /// The invariants that must hold after every step (the job transitions
    /// are checked as the events arrive); at the end, every qcow2 image is
    /// `check`-clean.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        self.layer().check_invariants()?;
        self.check_finished_images()
    }

    /// [`World::check_invariants`] after a step of this world (or of the
    /// one it was cloned from), which were checked before: the block
    /// layer's invariants are recomputed only if the step changed what
    /// they depend on (the graph, the drivers' permission state). The
    /// explorer checks after every step, and most steps (a copy, a timer)
    /// change neither.
    pub fn check_invariants_after_step(&mut self) -> std::result::Result<(), String> {
        let mut last = self.invariants_checked.take();
        self.layer().check_invariants_since(&mut last)?;
        self.invariants_checked = last;
        self.check_finished_images()
    }

    fn check_finished_images(&self) -> std::result::Result<(), String> {
        if self.finished.is_some() {
            let bad = unclean_images(self.layer().core().files());
            if !bad.is_empty() {
                return Err(format!("qcow2 check: {}", bad.join("; ")));
            }
        }
        Ok(())
    }
}

/// QEMU's generated node names (`#block123`) as the harness records them
/// (`#block`): the number depends on the process, not on the scenario.
pub fn scrub_auto_names(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("#block") {
        out.push_str(&rest[..i + "#block".len()]);
        rest = rest[i + "#block".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

fn scrub_datum(d: &Datum) -> Datum {
    match d {
        Datum::Str(s) => Datum::Str(scrub_auto_names(s)),
        Datum::List(l) => Datum::List(l.iter().map(scrub_datum).collect()),
        Datum::Dict(m) => Datum::Dict(m.iter().map(|(k, v)| (k.clone(), scrub_datum(v))).collect()),
        other => other.clone(),
    }
}

/// Commands that act on jobs (and so may end what a job froze).
fn is_job_verb(command: &str) -> bool {
    command.starts_with("job-") || command.starts_with("block-job-")
}
