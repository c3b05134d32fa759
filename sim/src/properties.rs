//! Properties: what users of `block-stream` rely on, as checks of an
//! explored outcome (and of every step, for the structural ones).
//!
//! Each property has a name, the reason it matters, and a check that can
//! fail. They come from the 2020 qemu-block thread: what each participant
//! wanted to hold (docs/POLICIES.md). A property that QEMU 10.0 violates is
//! reported as such under the `qemu-10.0` policy: the model is not "fixed".

use crate::images::{create_images, inspect_image};
use crate::scenario::{Datum, Execute, Graph, Observation, Scenario, StepKind};
use std::collections::{BTreeMap, BTreeSet};

/// A named property.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Property {
    /// @base becomes the top's backing node.
    BaseBecomesBacking,
    /// Every job the client asks for starts and completes.
    JobsSucceed,
    /// Every header's backing string opens.
    HeaderOpens,
    /// Guest-visible content of every top image is unchanged.
    GuestDataPreserved,
    /// A user filter above the base survives the stream.
    FilterKept,
    /// A user filter above the base goes with the stream.
    FilterDropped,
    /// Every filter has exactly one child (every step).
    FilterOneChild,
    /// Every node without a parent is the monitor's (every step).
    NoOrphans,
    /// Frozen links are changed only by the job that froze them (every step).
    FrozenOwned,
    /// Stored permissions equal a recomputation (every step).
    PermsRecomputed,
    /// The run itself ends (no stuck state, no other broken invariant).
    RunEnds,
}

impl Property {
    /// Every property, in the matrix's order.
    pub const ALL: [Property; 11] = [
        Property::BaseBecomesBacking,
        Property::JobsSucceed,
        Property::HeaderOpens,
        Property::GuestDataPreserved,
        Property::FilterKept,
        Property::FilterDropped,
        Property::FilterOneChild,
        Property::NoOrphans,
        Property::FrozenOwned,
        Property::PermsRecomputed,
        Property::RunEnds,
    ];

    /// The property's name.
    pub fn name(self) -> &'static str {
        match self {
            Property::BaseBecomesBacking => "base-becomes-backing",
            Property::JobsSucceed => "jobs-succeed",
            Property::HeaderOpens => "header-opens",
            Property::GuestDataPreserved => "guest-data-preserved",
            Property::FilterKept => "filter-kept",
            Property::FilterDropped => "filter-dropped",
            Property::FilterOneChild => "filter-one-child",
            Property::NoOrphans => "no-orphans",
            Property::FrozenOwned => "frozen-owned",
            Property::PermsRecomputed => "perms-recomputed",
            Property::RunEnds => "run-ends",
        }
    }

    /// Its one-letter code in the matrix.
    pub fn code(self) -> char {
        match self {
            Property::BaseBecomesBacking => 'B',
            Property::JobsSucceed => 'J',
            Property::HeaderOpens => 'H',
            Property::GuestDataPreserved => 'G',
            Property::FilterKept => 'K',
            Property::FilterDropped => 'D',
            Property::FilterOneChild => 'F',
            Property::NoOrphans => 'O',
            Property::FrozenOwned => 'Z',
            Property::PermsRecomputed => 'P',
            Property::RunEnds => 'X',
        }
    }

    /// Why it matters, in one sentence.
    pub fn reason(self) -> &'static str {
        match self {
            Property::BaseBecomesBacking => {
                "QAPI documents that @base becomes the top's backing file after streaming; \
                 Max held to it whenever the client changed nothing during the job"
            }
            Property::JobsSucceed => {
                "iotest 030's parallel stream and stream+commit cases need every job the \
                 client starts to start and complete without error"
            }
            Property::HeaderOpens => {
                "the next qemu-img or QEMU opens the image from its header alone; Andrey \
                 feared a filter's json: name landing there"
            }
            Property::GuestDataPreserved => {
                "streaming and committing move data, never change what a guest reads: a \
                 difference is data loss"
            }
            Property::FilterKept => {
                "Vladimir: a filter above the base belongs to the base and stays (reported, \
                 not a verdict)"
            }
            Property::FilterDropped => {
                "Max: streaming to @base drops what lies between the top and @base, filters \
                 too (reported, not a verdict)"
            }
            Property::FilterOneChild => {
                "a filter without a child serves no I/O, with two it is ambiguous"
            }
            Property::NoOrphans => {
                "a node nobody references and the monitor does not own is leaked"
            }
            Property::FrozenOwned => {
                "a frozen link protects a job's assumptions; only its owner may change it"
            }
            Property::PermsRecomputed => {
                "stored permissions that differ from a recomputation let conflicting \
                 users in"
            }
            Property::RunEnds => "a run that gets stuck or breaks an invariant has no outcome",
        }
    }

    /// The property called `name`.
    pub fn by_name(name: &str) -> Option<Property> {
        Property::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The property a step failure (an invariant's message) breaks.
    pub fn of_failure(message: &str) -> Property {
        let prefixed = Property::ALL
            .into_iter()
            .find(|p| message.contains(&format!("{}: ", p.name())));
        prefixed.unwrap_or(if message.contains("frozen link") {
            Property::FrozenOwned
        } else if message.contains("stored perms") {
            Property::PermsRecomputed
        } else {
            Property::RunEnds
        })
    }
}

/// A property that failed, and how.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Violation {
    /// The property.
    pub property: Property,
    /// What was seen.
    pub detail: String,
}

impl Violation {
    fn new(property: Property, detail: impl Into<String>) -> Violation {
        Violation {
            property,
            detail: detail.into(),
        }
    }
}

/// What the outcome checks compare with: the scenario and its images as
/// created, before anything ran.
#[derive(Clone, Debug)]
pub struct Baseline {
    scenario: std::sync::Arc<Scenario>,
    /// Per image: guest content sha256 (or `None`) and whether it opened.
    images: BTreeMap<String, (Option<String>, bool)>,
}

impl Baseline {
    /// Inspects the scenario's images as created.
    pub fn new(scenario: &std::sync::Arc<Scenario>) -> crate::Result<Baseline> {
        let files = create_images(&scenario.images)?;
        let images = scenario
            .images
            .iter()
            .filter(|i| !i.no_inspect)
            .map(|i| {
                let rec = inspect_image(&files, i);
                let opens = rec.info_error.is_none() && rec.convert_error.is_none();
                (i.name.clone(), (rec.sha256, opens))
            })
            .collect();
        Ok(Baseline {
            scenario: scenario.clone(),
            images,
        })
    }

    /// Every outcome property `obs` violates.
    pub fn check(&self, obs: &Observation) -> Vec<Violation> {
        let mut out = Vec::new();
        out.extend(self.jobs_succeed(obs));
        out.extend(self.header_opens(obs));
        out.extend(self.guest_data_preserved(obs));
        for stream in self.undisturbed_streams(obs) {
            out.extend(stream.check(obs));
        }
        out
    }

    fn jobs_succeed(&self, obs: &Observation) -> Vec<Violation> {
        let mut out = Vec::new();
        for (i, e) in self.executes() {
            let refused = obs.steps.get(i).and_then(|r| r.error.as_ref());
            if let (true, Some(err), true) = (
                STARTS_JOB.contains(&e.name.as_str()),
                refused,
                e.expect == crate::scenario::Expect::Success,
            ) {
                out.push(Violation::new(
                    Property::JobsSucceed,
                    format!("step {i} {} refused: {}", e.name, err.desc),
                ));
            }
        }
        let cancelled = self.cancelled_jobs();
        for (job, seq) in &obs.job_event_sequences {
            let aborted = seq.iter().any(|s| s == "aborting");
            if aborted && !cancelled.contains(job.as_str()) {
                out.push(Violation::new(
                    Property::JobsSucceed,
                    format!("job {job} failed"),
                ));
            }
        }
        out
    }

    fn header_opens(&self, obs: &Observation) -> Vec<Violation> {
        let mut out = Vec::new();
        for (name, rec) in &obs.images {
            let opened = self.images.get(name).is_some_and(|(_, opens)| *opens);
            let error = rec.info_error.as_ref().or(rec.convert_error.as_ref());
            if let (true, Some(error)) = (opened, error) {
                out.push(Violation::new(
                    Property::HeaderOpens,
                    format!(
                        "{name} (backing {:?}): {error}",
                        rec.backing_filename.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
        out
    }

    fn guest_data_preserved(&self, obs: &Observation) -> Vec<Violation> {
        let changes = self
            .executes()
            .any(|(_, e)| CHANGES_GUEST_DATA.contains(&e.name.as_str()));
        if changes || !self.runtime_chains_follow_headers() {
            return Vec::new();
        }
        let backing: BTreeSet<&str> = self
            .scenario
            .images
            .iter()
            .filter_map(|i| i.backing.as_ref().map(|(file, _)| file.as_str()))
            .collect();
        let mut out = Vec::new();
        for (name, (before, _)) in &self.images {
            let after = obs.images.get(name).and_then(|r| r.sha256.as_ref());
            if backing.contains(name.as_str()) {
                continue;
            }
            if let (Some(before), Some(after)) = (before, after) {
                if before != after {
                    out.push(Violation::new(
                        Property::GuestDataPreserved,
                        format!("{name}: guest content changed"),
                    ));
                }
            }
        }
        out
    }

    /// Whether every image the client opened with an explicit `backing`
    /// gets the image its header names (through filters, which hold no
    /// data). Otherwise the guest saw other data at run time than the
    /// images as created show, and "before" is unknown.
    fn runtime_chains_follow_headers(&self) -> bool {
        let added: BTreeMap<String, &Execute> = self
            .executes()
            .filter(|(_, e)| e.name == "blockdev-add")
            .filter_map(|(_, e)| arg(e, "node-name").map(|n| (n, e)))
            .collect();
        let headers: BTreeMap<&str, Option<&str>> = self
            .scenario
            .images
            .iter()
            .map(|i| (i.name.as_str(), i.backing.as_ref().map(|(f, _)| f.as_str())))
            .collect();
        added.values().all(|e| {
            let backing = e.arguments.as_ref().and_then(|a| a.get("backing"));
            let (Some(file), Some(backing)) = (inline_filename(e), backing) else {
                return true;
            };
            let header = headers.get(file.as_str()).copied().flatten();
            match backing {
                Datum::Str(node) => image_below(node, &added).as_deref() == header,
                Datum::Null => header.is_none(),
                _ => true,
            }
        })
    }

    /// The scenario's executes with their step indexes.
    fn executes(&self) -> impl Iterator<Item = (usize, &Execute)> {
        self.scenario
            .steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.kind {
                StepKind::Execute(e) => Some((i, e.as_ref())),
                _ => None,
            })
    }

    fn cancelled_jobs(&self) -> BTreeSet<String> {
        self.executes()
            .filter(|(_, e)| e.name == "block-job-cancel" || e.name == "job-cancel")
            .filter_map(|(_, e)| arg(e, "device").or_else(|| arg(e, "id")))
            .collect()
    }

    /// The streams to a named base that completed while the client changed
    /// nothing in the graph.
    fn undisturbed_streams(&self, obs: &Observation) -> Vec<StreamCase> {
        let mut cases = Vec::new();
        for (i, e) in self.executes() {
            let ok = obs.steps.get(i).is_some_and(|r| r.error.is_none());
            if e.name != "block-stream" || !ok {
                continue;
            }
            let Some(case) = self.stream_case(i, e) else {
                continue;
            };
            let completed = obs
                .job_event_sequences
                .get(&case.job)
                .is_some_and(|seq| seq.iter().any(|s| s == "BLOCK_JOB_COMPLETED"))
                && !obs.job_event_sequences[&case.job]
                    .iter()
                    .any(|s| s == "aborting");
            if completed && !self.changed_during(i, &case.job) {
                cases.push(case);
            }
        }
        cases
    }

    fn stream_case(&self, i: usize, e: &Execute) -> Option<StreamCase> {
        let device = arg(e, "device")?;
        let base = match (arg(e, "base-node"), arg(e, "base")) {
            (Some(node), _) => BaseName::Node(node),
            (None, Some(file)) => BaseName::File(file),
            (None, None) => return None,
        };
        let job = arg(e, "job-id").unwrap_or_else(|| device.clone());
        let user_filters = self.user_filters_above_base(i, &device, &base);
        Some(StreamCase {
            job,
            device,
            base,
            user_filters,
        })
    }

    /// Whether a graph-changing command runs between step `start` and the
    /// wait for `job`'s completion (or the first settle).
    fn changed_during(&self, start: usize, job: &str) -> bool {
        for step in &self.scenario.steps[start + 1..] {
            match &step.kind {
                StepKind::Execute(e) if CHANGES_GRAPH.contains(&e.name.as_str()) => return true,
                StepKind::Wait(w)
                    if w.job.as_deref() == Some(job)
                        && w.event.as_deref() == Some("BLOCK_JOB_COMPLETED") =>
                {
                    return false
                }
                StepKind::Settle(_) => return false,
                _ => {}
            }
        }
        false
    }

    /// The filters the client added (`blockdev-add` before step `stream`)
    /// that lie between the top's last image above the base and the base.
    fn user_filters_above_base(&self, stream: usize, device: &str, base: &BaseName) -> Vec<String> {
        let added: BTreeMap<String, &Execute> = self.scenario.steps[..stream]
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Execute(e) if e.name == "blockdev-add" => {
                    arg(e, "node-name").map(|n| (n, e.as_ref()))
                }
                _ => None,
            })
            .collect();
        let mut run = Vec::new();
        let mut current = device.to_string();
        for _ in 0..added.len() + 1 {
            let Some(e) = added.get(&current) else {
                return Vec::new();
            };
            let is_filter = arg(e, "driver").is_some_and(|d| FILTERS.contains(&d.as_str()));
            let next = if is_filter {
                arg(e, "file").or_else(|| arg(e, "image"))
            } else {
                run.clear();
                arg(e, "backing")
            };
            if is_filter {
                run.push(current.clone());
            }
            let Some(next) = next else { return Vec::new() };
            if base.is_node(&next, &added) {
                return run;
            }
            current = next;
        }
        Vec::new()
    }
}

/// How the client named the base.
#[derive(Clone, Debug)]
enum BaseName {
    Node(String),
    File(String),
}

impl BaseName {
    /// Whether node `name` (added with `added`'s arguments) is the base.
    fn is_node(&self, name: &str, added: &BTreeMap<String, &Execute>) -> bool {
        match self {
            BaseName::Node(n) => n == name,
            BaseName::File(file) => added
                .get(name)
                .and_then(|e| e.arguments.as_ref()?.get("file")?.get("filename")?.as_str())
                .is_some_and(|f| f == file),
        }
    }

    /// The base in the final graph: by name, or the image over a protocol
    /// node of that filename.
    fn in_graph<'g>(&self, g: &'g Graph) -> Option<&'g str> {
        match self {
            BaseName::Node(n) => g
                .nodes
                .iter()
                .find(|x| &x.name == n)
                .map(|x| x.name.as_str()),
            BaseName::File(file) => g.edges.iter().find_map(|e| {
                let child = g.nodes.iter().find(|n| n.name == e.child)?;
                let named = child
                    .filename
                    .as_deref()
                    .is_some_and(|f| f.ends_with(file.as_str()));
                (e.role == "file" && named).then_some(e.parent.as_str())
            }),
        }
    }
}

/// One completed stream to a named base, with nothing changed meanwhile.
#[derive(Clone, Debug)]
struct StreamCase {
    job: String,
    device: String,
    base: BaseName,
    /// User filters between the last image above the base and the base at
    /// the stream's start, top-down.
    user_filters: Vec<String>,
}

impl StreamCase {
    fn check(&self, obs: &Observation) -> Vec<Violation> {
        let Some(g) = &obs.graph else {
            return Vec::new();
        };
        let Some(top) = unfiltered(g, &self.device) else {
            return Vec::new();
        };
        let backing = child_of(g, top, "backing");
        let mut out = Vec::new();
        let base = self.base.in_graph(g);
        if base.is_some() && backing != base {
            out.push(Violation::new(
                Property::BaseBecomesBacking,
                format!(
                    "stream {}: {top}'s backing is {}, not the base {}",
                    self.job,
                    backing.unwrap_or("none"),
                    base.unwrap_or("?")
                ),
            ));
        }
        if let Some(first) = self.user_filters.first() {
            let kept = backing.is_some_and(|b| self.user_filters.iter().any(|f| f == b));
            let (broken, how) = if kept {
                (Property::FilterDropped, "kept")
            } else {
                (Property::FilterKept, "dropped")
            };
            out.push(Violation::new(
                broken,
                format!(
                    "stream {}: user filter {first} above the base {how}",
                    self.job
                ),
            ));
        }
        out
    }
}

/// The first non-filter node at or below `name`.
fn unfiltered<'g>(g: &'g Graph, name: &str) -> Option<&'g str> {
    let mut current = g.nodes.iter().find(|n| n.name == name)?;
    for _ in 0..g.nodes.len() {
        let is_filter = current
            .driver
            .as_deref()
            .is_some_and(|d| FILTERS.contains(&d) || d == "commit_top" || d == "mirror_top");
        if !is_filter {
            return Some(current.name.as_str());
        }
        let child = g.edges.iter().find(|e| {
            e.parent == current.name && ["file", "image", "backing"].contains(&e.role.as_str())
        })?;
        current = g.nodes.iter().find(|n| n.name == child.child)?;
    }
    None
}

/// The child of `parent` in role `role`.
fn child_of<'g>(g: &'g Graph, parent: &str, role: &str) -> Option<&'g str> {
    g.edges
        .iter()
        .find(|e| e.parent == parent && e.role == role)
        .map(|e| e.child.as_str())
}

/// The filename of a `blockdev-add`'s inline `file`.
fn inline_filename(e: &Execute) -> Option<String> {
    let file = e.arguments.as_ref()?.get("file")?.get("filename")?;
    file.as_str().map(str::to_string)
}

/// The image file of node `name`, through filters added by name.
fn image_below(name: &str, added: &BTreeMap<String, &Execute>) -> Option<String> {
    let mut current = name.to_string();
    for _ in 0..=added.len() {
        let e = added.get(&current)?;
        if let Some(file) = inline_filename(e) {
            return Some(file);
        }
        current = arg(e, "file").or_else(|| arg(e, "image"))?;
    }
    None
}

/// A string argument of a command.
fn arg(e: &Execute, key: &str) -> Option<String> {
    e.arguments.as_ref()?.get(key)?.as_str().map(str::to_string)
}

/// Drivers that are filters with one child.
const FILTERS: [&str; 3] = ["throttle", "copy-on-read", "blkdebug"];

/// Commands that start a block job.
const STARTS_JOB: [&str; 5] = [
    "block-stream",
    "block-commit",
    "blockdev-mirror",
    "drive-mirror",
    "blockdev-backup",
];

/// Commands that change the graph.
const CHANGES_GRAPH: [&str; 9] = [
    "blockdev-add",
    "blockdev-del",
    "blockdev-reopen",
    "blockdev-snapshot",
    "block-stream",
    "block-commit",
    "blockdev-mirror",
    "x-blockdev-change",
    "blockdev-create",
];

/// Commands after which a guest may legitimately read something else.
const CHANGES_GUEST_DATA: [&str; 4] = [
    "blockdev-reopen",
    "block_resize",
    "blockdev-create",
    "x-blockdev-change",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_their_property() {
        let cases = [
            (
                "filter-one-child: filter 'x' has 0 children",
                Property::FilterOneChild,
            ),
            ("no-orphans: node 'n' has no parent", Property::NoOrphans),
            (
                "frozen link a -backing-> b changed by a command that does not own it",
                Property::FrozenOwned,
            ),
            (
                "edge file -> f: stored perms X, recomputed Y",
                Property::PermsRecomputed,
            ),
            ("stuck at 5 ns", Property::RunEnds),
        ];
        for (message, property) in cases {
            assert_eq!(Property::of_failure(message), property, "{message}");
        }
        for p in Property::ALL {
            assert_eq!(Property::by_name(p.name()), Some(p));
        }
    }
}
