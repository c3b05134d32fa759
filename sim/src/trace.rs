//! A run step by step, as plain data: for every step the task that ran,
//! what it did (the client's command with its reply, a job's copied bytes,
//! the links it froze, the nodes it inserted or dropped, the permissions
//! it changed, the headers it rewrote), the events it raised, and the
//! block graph after it. Renderers (`cargo xtask sim replay --html`, `-v`,
//! `--graph-json`) consume this; nothing here knows how it is shown.

use crate::graph::perm_mask;
use crate::run::{drive, Failure, Run, RunOptions};
use crate::scenario::{datum_text, EventData, Scenario, StepRecord};
use crate::sched::Scheduler;
use crate::world::{Task, World};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use strata_block::{DriverState, XdbgGraph, XdbgNodeType};

/// A run and its trace.
#[derive(Clone, Debug)]
pub struct TracedRun {
    /// The run (observation, schedule, tasks).
    pub run: Run,
    /// Every step, the state before the first one included.
    pub trace: Trace,
}

/// Every state of a run: `initial`, then one [`TraceStep`] per step.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The state before the first step (the scenario's images exist,
    /// nothing is open).
    pub initial: StepState,
    /// The steps in the order they ran.
    pub steps: Vec<TraceStep>,
}

impl Trace {
    /// The state after step `i` (`None` before the first step).
    pub fn state_after(&self, step: Option<usize>) -> &StepState {
        step.map_or(&self.initial, |i| &self.steps[i].state)
    }
}

/// One step of a run.
#[derive(Clone, Debug)]
pub struct TraceStep {
    /// The task that ran.
    pub task: Task,
    /// Virtual time (ns) at which it ran.
    pub time_ns: u64,
    /// What the task did, as the client or the clock sees it.
    pub action: Action,
    /// The events the step raised, in order.
    pub events: Vec<EventData>,
    /// What changed in the graph, the images' headers and the jobs.
    pub changes: Vec<Change>,
    /// The state after the step.
    pub state: StepState,
}

/// What a step did, by the kind of task.
#[derive(Clone, PartialEq, Debug)]
pub enum Action {
    /// The client ran a QMP command.
    Command {
        /// Its name.
        name: String,
        /// Its arguments as the scenario wrote them (JSON text).
        arguments: Option<String>,
        /// The recorded return (JSON text; `None` when the scenario does
        /// not record it), or the error's description.
        reply: Result<Option<String>, String>,
    },
    /// The client finished another kind of step (wait, settle, note, ...).
    Client {
        /// What it was, in one line.
        what: String,
    },
    /// The client is in the middle of a multi-turn step (a settle that
    /// unthrottles one job at a time) or capturing the final state.
    ClientBusy,
    /// A job ran until its next yield.
    Job {
        /// The job id.
        id: String,
    },
    /// The clock moved.
    Advance {
        /// To this virtual time (ns).
        to_ns: u64,
    },
}

/// The state after a step.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct StepState {
    /// `x-debug-query-block-graph`'s value at this point.
    pub xdbg: XdbgGraph,
    /// The graph's vertices (nodes, BlockBackends, jobs) by [`GraphVertex::key`].
    pub vertices: Vec<GraphVertex>,
    /// The graph's edges, sorted.
    pub edges: Vec<GraphLink>,
    /// The jobs on the job list.
    pub jobs: Vec<JobState>,
}

/// A node, a BlockBackend or a job in a step's graph.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct GraphVertex {
    /// An identity that lasts across steps: the node name, `job:ID`,
    /// `blk:NAME`, or `blk(CHILDREN)` for an anonymous BlockBackend.
    pub key: String,
    /// What it is.
    pub kind: VertexKind,
    /// The name QEMU reports (`""` for an anonymous BlockBackend).
    pub name: String,
    /// A node's driver, a job's type.
    pub driver: Option<String>,
    /// A `file` node's file.
    pub filename: Option<String>,
    /// A node a job inserted implicitly (no node name given).
    pub implicit: bool,
    /// A node open read-only.
    pub read_only: bool,
    /// The backing file named in a format node's image header.
    pub backing_file: Option<String>,
}

/// `XDbgBlockGraphNodeType`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum VertexKind {
    /// A BlockBackend.
    Backend,
    /// A block job.
    Job,
    /// A node (`BlockDriverState`).
    Node,
}

/// An edge (`BdrvChild`) in a step's graph.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct GraphLink {
    /// The parent's key.
    pub parent: String,
    /// The child name (`file`, `backing`, `root`, ...).
    pub role: String,
    /// The child's key.
    pub child: String,
    /// Permissions taken (QAPI names).
    pub perm: Vec<String>,
    /// Permissions shared (QAPI names).
    pub shared: Vec<String>,
    /// Whether the link is frozen.
    pub frozen: bool,
}

impl GraphLink {
    /// `parent -role-> child`.
    pub fn describe(&self) -> String {
        format!("{} -{}-> {}", self.parent, self.role, self.child)
    }

    fn identity(&self) -> (&str, &str, &str) {
        (&self.parent, &self.role, &self.child)
    }
}

/// A job on the job list.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct JobState {
    /// The job id.
    pub id: String,
    /// The job type (`stream`, `commit`, ...).
    pub job_type: String,
    /// The status (`running`, `concluded`, ...).
    pub status: String,
    /// Progress so far (bytes for stream and commit).
    pub current_progress: u64,
    /// Estimated total progress.
    pub total_progress: u64,
}

/// One thing a step changed.
#[derive(Clone, PartialEq, Debug)]
pub enum Change {
    /// A vertex appeared (a node inserted, a job or BlockBackend created).
    Added(String),
    /// A vertex went away (a node dropped, a job freed).
    Removed(String),
    /// A link appeared.
    Linked(GraphLink),
    /// A link went away.
    Unlinked(GraphLink),
    /// A link's permissions changed: the link before, then after.
    Permissions(GraphLink, GraphLink),
    /// A link was frozen.
    Frozen(GraphLink),
    /// A link was unfrozen.
    Unfrozen(GraphLink),
    /// A node was reopened read-only (`true`) or read-write.
    ReadOnly(String, bool),
    /// A node's image header now names another backing file.
    Header {
        /// The node.
        node: String,
        /// The backing file before.
        before: Option<String>,
        /// The backing file after.
        after: Option<String>,
    },
    /// A job's progress grew by this many bytes.
    Copied {
        /// The job.
        job: String,
        /// The growth.
        bytes: u64,
        /// The progress now, and its total.
        now: (u64, u64),
    },
    /// A job changed status.
    Status {
        /// The job.
        job: String,
        /// The status before (`None`: new job).
        before: Option<String>,
        /// The status after (`None`: off the job list).
        after: Option<String>,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let perms = |l: &GraphLink| format!("{} / {}", perm_mask(&l.perm), perm_mask(&l.shared));
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "(none)".into());
        match self {
            Change::Added(v) => write!(f, "+ {v}"),
            Change::Removed(v) => write!(f, "- {v}"),
            Change::Linked(l) => {
                let frozen = if l.frozen { " frozen" } else { "" };
                write!(f, "+ {}  [{}]{frozen}", l.describe(), perms(l))
            }
            Change::Unlinked(l) => write!(f, "- {}", l.describe()),
            Change::Permissions(a, b) => {
                write!(f, "~ {}  [{}] -> [{}]", a.describe(), perms(a), perms(b))
            }
            Change::Frozen(l) => write!(f, "froze {}", l.describe()),
            Change::Unfrozen(l) => write!(f, "unfroze {}", l.describe()),
            Change::ReadOnly(n, true) => write!(f, "{n} read-only"),
            Change::ReadOnly(n, false) => write!(f, "{n} read-write"),
            Change::Header {
                node,
                before,
                after,
            } => write!(
                f,
                "header of {node}: backing file {} -> {}",
                opt(before),
                opt(after)
            ),
            Change::Copied { job, bytes, now } => {
                write!(f, "{job} copied {bytes} bytes ({} of {})", now.0, now.1)
            }
            Change::Status { job, before, after } => {
                write!(f, "{job}: {} -> {}", opt(before), opt(after))
            }
        }
    }
}

/// Runs `scenario` under `scheduler`, recording every step.
pub fn run_traced(
    scenario: &Arc<Scenario>,
    scheduler: &mut dyn Scheduler,
    options: RunOptions,
) -> std::result::Result<TracedRun, Failure> {
    let mut recorder: Option<Recorder> = None;
    let run = drive(
        scenario,
        scheduler,
        options,
        &mut |world, task| match task {
            None => recorder = Some(Recorder::new(world)),
            Some((task, time_ns)) => {
                if let Some(r) = recorder.as_mut() {
                    r.record(world, task, time_ns);
                }
            }
        },
    )?;
    let recorder = recorder.expect("the world is observed before its first step");
    Ok(TracedRun {
        run,
        trace: Trace {
            initial: recorder.initial,
            steps: recorder.steps,
        },
    })
}

/// Collects the steps as the run makes them.
struct Recorder {
    initial: StepState,
    steps: Vec<TraceStep>,
    records_seen: usize,
    events_seen: usize,
}

impl Recorder {
    fn new(world: &World) -> Recorder {
        Recorder {
            initial: state_of(world),
            steps: Vec::new(),
            records_seen: world.records().len(),
            events_seen: world.events().len(),
        }
    }

    fn record(&mut self, world: &World, task: &Task, time_ns: u64) {
        // The capture at the end moves the records into the observation.
        let new_records = world.records().get(self.records_seen..).unwrap_or(&[]);
        let action = action_of(task, new_records);
        self.records_seen = world.records().len();
        let events = world.events()[self.events_seen..].to_vec();
        self.events_seen = world.events().len();
        let state = state_of(world);
        let before = self.steps.last().map_or(&self.initial, |s| &s.state);
        let changes = changes_between(before, &state);
        self.steps.push(TraceStep {
            task: task.clone(),
            time_ns,
            action,
            events,
            changes,
            state,
        });
    }
}

fn action_of(task: &Task, new_records: &[StepRecord]) -> Action {
    match task {
        Task::Job(id) => Action::Job { id: id.clone() },
        Task::Advance(t) => Action::Advance { to_ns: *t },
        Task::Client => match new_records.last() {
            None => Action::ClientBusy,
            Some(rec) => client_action(rec),
        },
    }
}

fn client_action(rec: &StepRecord) -> Action {
    if let Some(name) = &rec.execute {
        let reply = match &rec.error {
            Some(e) => Err(e.desc.clone()),
            None => Ok(rec.return_value.as_ref().map(datum_text)),
        };
        return Action::Command {
            name: name.clone(),
            arguments: rec.arguments.as_ref().map(datum_text),
            reply,
        };
    }
    let spec = [
        ("wait", &rec.wait),
        ("settle", &rec.settle),
        ("wait_status", &rec.wait_status),
        ("wait_progress", &rec.wait_progress),
        ("sleep", &rec.sleep),
    ]
    .into_iter()
    .find_map(|(kind, d)| d.as_ref().map(|d| format!("{kind} {}", datum_text(d))));
    let what = match (spec, &rec.note) {
        (Some(spec), _) => spec,
        (None, Some(note)) => format!("note: {note}"),
        (None, None) => "graph".to_string(),
    };
    let result = rec
        .result
        .as_deref()
        .map_or(String::new(), |r| format!(": {r}"));
    Action::Client {
        what: format!("{what}{result}"),
    }
}

/// The graph, headers and jobs of `world` as plain data.
fn state_of(world: &World) -> StepState {
    let layer = world.layer();
    let xdbg = layer.query_block_graph();
    let keys = vertex_keys(&xdbg);
    let jobs: Vec<JobState> = layer
        .jobs()
        .query_jobs()
        .into_iter()
        .map(|j| JobState {
            id: j.id,
            job_type: j.job_type.as_str().to_string(),
            status: j.status.as_str().to_string(),
            current_progress: j.current_progress,
            total_progress: j.total_progress,
        })
        .collect();
    let mut vertices: Vec<GraphVertex> = xdbg
        .nodes
        .iter()
        .map(|n| vertex(world, &jobs, &keys[&n.id], n.node_type, &n.name))
        .collect();
    vertices.sort();
    let frozen: BTreeSet<(String, String, String)> = world.frozen_links().into_iter().collect();
    let mut edges: Vec<GraphLink> = xdbg
        .edges
        .iter()
        .map(|e| {
            let (parent, child) = (keys[&e.parent].clone(), keys[&e.child].clone());
            let frozen = frozen.contains(&(parent.clone(), e.name.clone(), child.clone()));
            GraphLink {
                parent,
                role: e.name.clone(),
                child,
                perm: e.perm.qapi_names().into_iter().map(String::from).collect(),
                shared: e
                    .shared
                    .qapi_names()
                    .into_iter()
                    .map(String::from)
                    .collect(),
                frozen,
            }
        })
        .collect();
    edges.sort();
    StepState {
        xdbg,
        vertices,
        edges,
        jobs,
    }
}

/// Keys that last across steps (xdbg ids are per query): node names, job
/// ids, BlockBackend names, and anonymous BlockBackends by their children.
fn vertex_keys(xdbg: &XdbgGraph) -> BTreeMap<u64, String> {
    let mut keys = BTreeMap::new();
    for n in &xdbg.nodes {
        let key = match n.node_type {
            XdbgNodeType::BlockDriver => n.name.clone(),
            XdbgNodeType::BlockJob => format!("job:{}", n.name),
            XdbgNodeType::BlockBackend if !n.name.is_empty() => format!("blk:{}", n.name),
            XdbgNodeType::BlockBackend => continue,
        };
        keys.insert(n.id, key);
    }
    let mut anonymous: BTreeMap<String, usize> = BTreeMap::new();
    let unkeyed: Vec<_> = xdbg
        .nodes
        .iter()
        .filter(|n| !keys.contains_key(&n.id))
        .collect();
    for n in unkeyed {
        let mut children: Vec<&str> = xdbg
            .edges
            .iter()
            .filter(|e| e.parent == n.id)
            .filter_map(|e| keys.get(&e.child).map(String::as_str))
            .collect();
        children.sort_unstable();
        let base = format!("blk({})", children.join(","));
        let seen = anonymous.entry(base.clone()).or_default();
        *seen += 1;
        let key = match *seen {
            1 => base,
            n => format!("{base}#{n}"),
        };
        keys.insert(n.id, key);
    }
    keys
}

fn vertex(
    world: &World,
    jobs: &[JobState],
    key: &str,
    kind: XdbgNodeType,
    name: &str,
) -> GraphVertex {
    let mut v = GraphVertex {
        key: key.to_string(),
        kind: match kind {
            XdbgNodeType::BlockBackend => VertexKind::Backend,
            XdbgNodeType::BlockJob => VertexKind::Job,
            XdbgNodeType::BlockDriver => VertexKind::Node,
        },
        name: name.to_string(),
        driver: None,
        filename: None,
        implicit: false,
        read_only: false,
        backing_file: None,
    };
    match kind {
        XdbgNodeType::BlockJob => {
            v.driver = jobs
                .iter()
                .find(|j| j.id == name)
                .map(|j| j.job_type.clone());
        }
        XdbgNodeType::BlockDriver => describe_node(world, &mut v),
        XdbgNodeType::BlockBackend => {}
    }
    v
}

fn describe_node(world: &World, v: &mut GraphVertex) {
    let core = world.layer().core();
    let Some(id) = core.find_node(&v.name) else {
        return;
    };
    let Ok(node) = core.graph().graph().node(id) else {
        return;
    };
    v.driver = Some(node.driver().to_string());
    v.implicit = node.implicit;
    v.read_only = node.read_only;
    match core.driver_state(id) {
        Some(DriverState::File { path }) => v.filename = Some(path.clone()),
        Some(DriverState::Format { image, .. }) => {
            v.backing_file = image.backing_file().map(str::to_string)
        }
        _ => {}
    }
}

/// What changed from `before` to `after`, vertices first, then links,
/// headers and jobs.
pub fn changes_between(before: &StepState, after: &StepState) -> Vec<Change> {
    let mut changes = Vec::new();
    vertex_changes(before, after, &mut changes);
    link_changes(before, after, &mut changes);
    job_changes(before, after, &mut changes);
    changes
}

fn vertex_changes(before: &StepState, after: &StepState, out: &mut Vec<Change>) {
    let old: BTreeMap<&str, &GraphVertex> = before
        .vertices
        .iter()
        .map(|v| (v.key.as_str(), v))
        .collect();
    let new: BTreeMap<&str, &GraphVertex> =
        after.vertices.iter().map(|v| (v.key.as_str(), v)).collect();
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(Change::Removed(key.to_string()));
    }
    for (key, v) in &new {
        let Some(o) = old.get(key) else {
            out.push(Change::Added(key.to_string()));
            continue;
        };
        if o.read_only != v.read_only {
            out.push(Change::ReadOnly(key.to_string(), v.read_only));
        }
        if o.backing_file != v.backing_file {
            out.push(Change::Header {
                node: key.to_string(),
                before: o.backing_file.clone(),
                after: v.backing_file.clone(),
            });
        }
    }
}

fn link_changes(before: &StepState, after: &StepState, out: &mut Vec<Change>) {
    let old: BTreeMap<_, &GraphLink> = before.edges.iter().map(|l| (l.identity(), l)).collect();
    let new: BTreeMap<_, &GraphLink> = after.edges.iter().map(|l| (l.identity(), l)).collect();
    for (id, l) in &old {
        if !new.contains_key(id) {
            out.push(Change::Unlinked((*l).clone()));
        }
    }
    for (id, l) in &new {
        let Some(o) = old.get(id) else {
            out.push(Change::Linked((*l).clone()));
            continue;
        };
        if (&o.perm, &o.shared) != (&l.perm, &l.shared) {
            out.push(Change::Permissions((*o).clone(), (*l).clone()));
        }
        match (o.frozen, l.frozen) {
            (false, true) => out.push(Change::Frozen((*l).clone())),
            (true, false) => out.push(Change::Unfrozen((*l).clone())),
            _ => {}
        }
    }
}

fn job_changes(before: &StepState, after: &StepState, out: &mut Vec<Change>) {
    let old: BTreeMap<&str, &JobState> = before.jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    let new: BTreeMap<&str, &JobState> = after.jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    for (id, j) in &new {
        let was = old.get(id);
        if let Some(bytes) = j
            .current_progress
            .checked_sub(was.map_or(0, |o| o.current_progress))
            .filter(|b| *b > 0)
        {
            out.push(Change::Copied {
                job: id.to_string(),
                bytes,
                now: (j.current_progress, j.total_progress),
            });
        }
        if was.map(|o| &o.status) != Some(&j.status) {
            out.push(Change::Status {
                job: id.to_string(),
                before: was.map(|o| o.status.clone()),
                after: Some(j.status.clone()),
            });
        }
    }
    for (id, j) in &old {
        if !new.contains_key(id) {
            out.push(Change::Status {
                job: id.to_string(),
                before: Some(j.status.clone()),
                after: None,
            });
        }
    }
}
