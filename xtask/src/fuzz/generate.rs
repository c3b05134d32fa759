//! Random scenarios in the conformance harness's format.
//!
//! Scenario `index` of `seed` depends on those two numbers only: its own
//! PCG stream is seeded from both, so a batch can be regenerated, sharded
//! or extended without changing any scenario in it.
//!
//! The generator keeps a rough model of what it built (chain nodes,
//! filters, jobs) so that most commands name things that exist, and picks
//! wrong arguments on purpose about a third of the time. It does not try
//! to predict QEMU: commands after the opening expect `any`, and what QEMU
//! answers is the observation. Jobs are started throttled (1 KiB/s: the
//! first chunk is copied, then the job sleeps for minutes) so that later
//! commands meet them running, and every wait that follows a change of
//! speed waits for a state in which a job cannot move on its own: what is
//! recorded then does not depend on timing.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use serde_json::{json, Map, Value};

/// The name of scenario `index` of `seed` (also its file name, `.json`).
pub fn scenario_name(seed: u64, index: u64) -> String {
    format!("fuzz-{seed}-{index}")
}

/// Scenario `index` of `seed`, as the JSON the harness reads.
pub fn generate(seed: u64, index: u64) -> Value {
    let mut g = Gen::new(seed, index);
    g.images();
    g.open_chain();
    let ops = g.rng.random_range(3..=10);
    for _ in 0..ops {
        g.operation();
    }
    g.finish(scenario_name(seed, index))
}

/// SplitMix64's finaliser: a well-mixed 64-bit value from each input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Throttled jobs copy one chunk and then sleep for minutes.
const SLOW: i64 = 1024;
/// How long a wait for a job's settled state may take, in seconds.
const SYNC_TIMEOUT: f64 = 10.0;
/// Job states in which a job cannot progress on its own (the harness's
/// settle states, plus `absent` for a job that is gone or never was).
const STABLE: [&str; 6] = [
    "ready",
    "standby",
    "pending",
    "concluded",
    "paused",
    "absent",
];
/// `query-named-block-nodes` keys that do not depend on the host or on
/// timing (`image` has the host's `actual-size`).
const NODE_KEYS: [&str; 5] = ["node-name", "drv", "ro", "backing_file_depth", "file"];
/// `query-block-jobs` keys that do not depend on timing (no offsets, no
/// `busy`).
const BLOCK_JOB_KEYS: [&str; 8] = [
    "device",
    "type",
    "status",
    "speed",
    "paused",
    "ready",
    "auto-finalize",
    "auto-dismiss",
];

/// One layer of the chain: its image and its format node.
struct Layer {
    image: String,
    format: &'static str,
    node: String,
    /// Its protocol node's explicit name, when it has one (needed to
    /// reopen the layer, whose options must name every child).
    protocol_node: Option<String>,
    /// The node under it in the graph (a layer or an inserted filter).
    below: Option<String>,
    /// Whether its protocol node is a blkdebug node (then it cannot be
    /// given inline as a backing child).
    blkdebug: bool,
}

/// How the chain's format nodes are opened.
#[derive(Clone, Copy)]
enum Opening {
    /// One `blockdev-add` of the top with every backing inline.
    Nested,
    /// One `blockdev-add` per node, bottom up, backing by name.
    NodeByNode,
    /// Node by node up to a layer, nested above it.
    Mixed(usize),
}

struct Gen {
    rng: Pcg64,
    images: Vec<Value>,
    steps: Vec<Value>,
    layers: Vec<Layer>,
    size: u64,
    spare: bool,
    /// Filters added (inserted between layers, over the top, or by reopen).
    filters: Vec<String>,
    /// The format and filter nodes added so far, in order.
    opened: Vec<String>,
    /// Job ids started (whether QEMU accepted them or not).
    jobs: Vec<String>,
    throttle_group: bool,
    nbd_server: bool,
    exports: Vec<String>,
    counter: usize,
}

impl Gen {
    fn new(seed: u64, index: u64) -> Gen {
        Gen {
            rng: Pcg64::seed_from_u64(mix(seed ^ mix(index))),
            images: Vec::new(),
            steps: Vec::new(),
            layers: Vec::new(),
            size: 0,
            spare: false,
            filters: Vec::new(),
            opened: Vec::new(),
            jobs: Vec::new(),
            throttle_group: false,
            nbd_server: false,
            exports: Vec::new(),
            counter: 0,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    fn step(&mut self, step: Value) {
        self.steps.push(step);
    }

    /// A command whose result is only recorded.
    fn any(&mut self, execute: &str, arguments: Value) {
        self.step(json!({"execute": execute, "arguments": arguments, "expect": "any"}));
    }

    /// A command the generator built to succeed (opening the chain).
    fn must(&mut self, execute: &str, arguments: Value) {
        self.step(json!({"execute": execute, "arguments": arguments}));
    }

    // ----- images ---------------------------------------------------------

    fn images(&mut self) {
        let count = self.rng.random_range(2..=6);
        self.size = *self.pick(&[1u64 << 20, 2 << 20, 3 << 20, 4 << 20]);
        let raw_base = self.chance(0.3);
        for i in 0..count {
            let image = format!("img{i}.img");
            let format = if i == 0 && raw_base { "raw" } else { "qcow2" };
            let spec = self.image_spec(i, &image, format);
            self.images.push(spec);
            self.layers.push(Layer {
                image,
                format,
                node: format!("n{i}"),
                protocol_node: None,
                below: None,
                blkdebug: false,
            });
        }
        if self.chance(0.3) {
            self.spare = true;
            let writes = self.writes();
            self.images
                .push(json!({"name": "spare.img", "format": "qcow2",
                "size": self.size, "writes": writes}));
        }
    }

    fn image_spec(&mut self, i: usize, name: &str, format: &str) -> Value {
        let mut spec = Map::new();
        spec.insert("name".into(), json!(name));
        spec.insert("format".into(), json!(format));
        if format == "raw" && self.chance(0.5) {
            spec.insert("content".into(), json!("sector-numbers"));
        }
        if format == "qcow2" {
            let cluster = *self.pick(&[512u64, 4096, 65536, 65536, 65536, 1 << 20, 2 << 20]);
            spec.insert("cluster_size".into(), json!(cluster));
            if self.chance(0.5) {
                let compat = *self.pick(&["0.10", "1.1"]);
                spec.insert("options".into(), json!({"compat": compat}));
            }
        }
        if i == 0 {
            spec.insert("size".into(), json!(self.size));
        } else {
            let below = &self.layers[i - 1];
            spec.insert("backing".into(), json!(below.image));
            spec.insert("backing_format".into(), json!(below.format));
            if self.chance(0.2) {
                self.size += 1 << 20;
                spec.insert("size".into(), json!(self.size));
            }
        }
        spec.insert("writes".into(), self.writes());
        Value::Object(spec)
    }

    fn writes(&mut self) -> Value {
        let count = self.rng.random_range(0..=3);
        let writes: Vec<Value> = (0..count)
            .map(|_| {
                let unit = *self.pick(&[512u64, 4096, 65536]);
                let length = unit * self.rng.random_range(1..=8u64);
                let offset = unit * self.rng.random_range(0..(self.size - length) / unit);
                if self.chance(0.2) {
                    json!({"zero": true, "offset": offset, "length": length})
                } else {
                    let pattern = self.rng.random_range(1..=255u8);
                    json!({"pattern": pattern, "offset": offset, "length": length})
                }
            })
            .collect();
        Value::Array(writes)
    }

    // ----- opening ----------------------------------------------------------

    fn open_chain(&mut self) {
        let n = self.layers.len();
        let opening = match self.rng.random_range(0..3) {
            0 => Opening::Nested,
            1 => Opening::NodeByNode,
            _ => Opening::Mixed(self.rng.random_range(0..n)),
        };
        let by_name_up_to = match opening {
            Opening::Nested => 0,
            Opening::NodeByNode => n,
            Opening::Mixed(k) => k + 1,
        };
        for i in 0..by_name_up_to {
            if i > 0 && self.chance(0.25) {
                self.insert_filter_below(i);
            }
            let options = self.layer_options(i, BackingSpec::ByName, Placement::OwnCommand);
            self.must("blockdev-add", options);
            self.opened.push(self.layers[i].node.clone());
        }
        if by_name_up_to < n {
            let options = self.nested_options(n - 1, by_name_up_to);
            self.must("blockdev-add", options);
            let nested = self.layers[by_name_up_to..].iter().map(|l| l.node.clone());
            self.opened.extend(nested);
        }
        if self.spare && self.chance(0.5) {
            self.must(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "spare",
                    "file": {"driver": "file", "filename": "spare.img"}}),
            );
        }
    }

    /// Options of layer `i` with its backing (if it has one) as given.
    fn layer_options(&mut self, i: usize, backing: BackingSpec, placement: Placement) -> Value {
        let layer_image = self.layers[i].image.clone();
        let format = self.layers[i].format;
        let mut file = json!({"driver": "file", "filename": layer_image});
        if self.chance(0.5) {
            let name = format!("p{i}");
            file["node-name"] = json!(name);
            self.layers[i].protocol_node = Some(name);
        }
        // QEMU passes the header's backing name along to an inline backing
        // child, which a blkdebug protocol node refuses (harness finding 10).
        if matches!(placement, Placement::OwnCommand) && self.chance(0.15) {
            file = self.blkdebug_protocol(file);
            self.layers[i].blkdebug = true;
        }
        let mut options = json!({"driver": format, "node-name": self.layers[i].node, "file": file});
        if i > 0 && format == "qcow2" {
            match backing {
                BackingSpec::ByName => {
                    let below = self.layers[i]
                        .below
                        .clone()
                        .unwrap_or_else(|| self.layers[i - 1].node.clone());
                    self.layers[i].below = Some(below.clone());
                    options["backing"] = json!(below);
                }
                BackingSpec::Inline(v) => {
                    self.layers[i].below = Some(self.layers[i - 1].node.clone());
                    options["backing"] = v;
                }
            }
        }
        options
    }

    /// Layer `top`'s options with the layers down to `from` inline and the
    /// one below `from` by name.
    fn nested_options(&mut self, top: usize, from: usize) -> Value {
        let mut below: Option<Value> = None;
        for i in from..=top {
            let spec = match below.take() {
                Some(v) => BackingSpec::Inline(v),
                None => BackingSpec::ByName,
            };
            let placement = if i == top {
                Placement::OwnCommand
            } else {
                Placement::Inline
            };
            below = Some(self.layer_options(i, spec, placement));
        }
        below.expect("at least one layer")
    }

    /// blkdebug as the protocol layer over `file` (its `image`), sometimes
    /// with an alignment or an injected error.
    fn blkdebug_protocol(&mut self, file: Value) -> Value {
        let mut node = json!({"driver": "blkdebug", "image": file});
        if self.chance(0.5) {
            node["align"] = json!(*self.pick(&[512, 4096, 65536]));
        }
        if self.chance(0.3) {
            let event = *self.pick(&["read_aio", "write_aio", "cor_write"]);
            let errno = *self.pick(&[5, 28]);
            node["inject-error"] = json!([{"event": event, "errno": errno, "once": true}]);
        }
        node
    }

    /// A filter node over layer `i - 1`, which layer `i` will use as its
    /// backing.
    fn insert_filter_below(&mut self, i: usize) {
        let lower = self.layers[i - 1].node.clone();
        let name = self.fresh("f");
        let options = self.filter_options(&name, &lower, Intent::Valid);
        self.must("blockdev-add", options);
        self.layers[i].below = Some(name.clone());
        self.opened.push(name.clone());
        self.filters.push(name);
    }

    /// A filter node `name` over `child`: throttle, copy-on-read (with or
    /// without `bottom`), blkdebug or raw.
    fn filter_options(&mut self, name: &str, child: &str, intent: Intent) -> Value {
        match self.rng.random_range(0..4) {
            0 => {
                self.ensure_throttle_group();
                json!({"driver": "throttle", "node-name": name, "throttle-group": "tg0", "file": child})
            }
            1 => {
                let mut o = json!({"driver": "copy-on-read", "node-name": name, "file": child});
                if self.chance(0.4) {
                    o["bottom"] = json!(self.opened_node(intent));
                }
                o
            }
            2 => {
                let mut o = json!({"driver": "blkdebug", "node-name": name, "image": child});
                if self.chance(0.4) {
                    o["align"] = json!(4096);
                }
                o
            }
            _ => json!({"driver": "raw", "node-name": name, "file": child}),
        }
    }

    fn ensure_throttle_group(&mut self) {
        if !self.throttle_group {
            self.throttle_group = true;
            // Limits high enough not to slow anything down: the group is
            // there for the graph, not for timing.
            let limits = if self.chance(0.5) {
                json!({})
            } else {
                json!({"bps-total": 1i64 << 30})
            };
            self.must(
                "object-add",
                json!({"qom-type": "throttle-group", "id": "tg0", "limits": limits}),
            );
        }
    }

    // ----- node choice ------------------------------------------------------

    /// Any node the scenario made, or one that does not exist.
    fn any_node(&mut self) -> String {
        let mut names: Vec<String> = self.layers.iter().map(|l| l.node.clone()).collect();
        names.extend(self.filters.iter().cloned());
        if self.spare {
            names.push("spare".into());
        }
        if self.chance(0.08) {
            return "nope".into();
        }
        self.pick(&names).clone()
    }

    /// A node already added (while the chain is being opened, only those
    /// below), or, when the command may fail, sometimes one that does not
    /// exist.
    fn opened_node(&mut self, intent: Intent) -> String {
        let wrong = self.chance(0.08);
        if self.opened.is_empty() || (wrong && intent == Intent::MayFail) {
            return "nope".into();
        }
        self.pick(&self.opened.clone()).clone()
    }

    /// A chain node, the upper ones more often.
    fn chain_node(&mut self) -> usize {
        let n = self.layers.len();
        let a = self.rng.random_range(0..n);
        let b = self.rng.random_range(0..n);
        a.max(b)
    }

    /// A node below layer `top` (`top` may be one past the chain: any
    /// layer then): a layer, or the filter between it and the layer above.
    fn node_below(&mut self, top: usize) -> String {
        if top == 0 || self.chance(0.1) {
            return self.any_node();
        }
        let i = self.rng.random_range(0..top.min(self.layers.len()));
        let filter = self
            .layers
            .get(i + 1)
            .and_then(|above| above.below.clone())
            .filter(|f| f.starts_with('f'));
        match filter {
            Some(f) if self.chance(0.3) => f,
            _ => self.layers[i].node.clone(),
        }
    }

    fn job_id(&mut self) -> Option<String> {
        match self.rng.random_range(0..100) {
            0..7 => None,
            7..15 if !self.jobs.is_empty() => Some(self.pick(&self.jobs.clone()).clone()),
            _ => Some(self.fresh("j")),
        }
    }

    fn some_job(&mut self) -> String {
        if self.jobs.is_empty() || self.chance(0.1) {
            "nojob".into()
        } else {
            self.pick(&self.jobs.clone()).clone()
        }
    }

    // ----- operations -------------------------------------------------------

    fn operation(&mut self) {
        match self.rng.random_range(0..100) {
            0..22 => self.block_stream(),
            22..40 => self.block_commit(),
            40..58 => self.job_verb(),
            58..63 => self.blockdev_del(),
            63..70 => self.reopen(),
            70..75 => self.filter_on_top(),
            75..82 => self.export(),
            82..90 => self.query(),
            90..96 => self.settle(),
            _ => self.wait_event(),
        }
    }

    fn job_common(&mut self, args: &mut Map<String, Value>) -> Option<String> {
        let id = self.job_id();
        if let Some(id) = &id {
            args.insert("job-id".into(), json!(id));
        }
        let speed = match self.rng.random_range(0..100) {
            0..85 => SLOW,
            85..95 => 0,
            _ => -1,
        };
        args.insert("speed".into(), json!(speed));
        if self.chance(0.25) {
            let e = *self.pick(&["report", "stop", "enospc", "ignore", "bogus"]);
            args.insert("on-error".into(), json!(e));
        }
        if self.chance(0.15) {
            args.insert("auto-finalize".into(), json!(false));
        }
        if self.chance(0.12) {
            args.insert("auto-dismiss".into(), json!(false));
        }
        if self.chance(0.2) {
            args.insert("filter-node-name".into(), json!(self.fresh("jf")));
        }
        id
    }

    fn after_job_start(&mut self, id: Option<String>, speed: Option<&Value>) {
        let Some(id) = id else { return };
        if !self.jobs.contains(&id) {
            self.jobs.push(id.clone());
        }
        if speed == Some(&json!(0)) {
            self.settle();
        } else {
            // The first chunk is copied in the background: give QEMU the
            // time the simulator's job takes within the command.
            self.step(json!({"sleep": 0.1}));
        }
    }

    /// Waits until the job cannot move on its own.
    fn sync_job(&mut self, id: &str) {
        self.step(
            json!({"wait_status": {"job": id, "status": STABLE, "timeout": SYNC_TIMEOUT},
            "optional": true}),
        );
    }

    fn block_stream(&mut self) {
        let mut args = Map::new();
        let top = self.chain_node();
        let device = if self.chance(0.85) {
            self.layers[top].node.clone()
        } else {
            self.any_node()
        };
        args.insert("device".into(), json!(device));
        match self.rng.random_range(0..100) {
            0..35 => {}
            35..60 => {
                args.insert("base-node".into(), json!(self.node_below(top)));
            }
            60..72 => {
                let i = self.rng.random_range(0..self.layers.len());
                args.insert("base".into(), json!(self.layers[i].image));
            }
            72..95 => {
                args.insert("bottom".into(), json!(self.node_below(top + 1)));
            }
            _ => {
                args.insert("base-node".into(), json!(self.node_below(top)));
                args.insert("bottom".into(), json!(self.node_below(top)));
            }
        }
        if self.chance(0.1) {
            let i = self.rng.random_range(0..self.layers.len());
            args.insert("backing-file".into(), json!(self.layers[i].image));
        }
        let id = self.job_common(&mut args);
        let speed = args.get("speed").cloned();
        self.any("block-stream", Value::Object(args));
        self.after_job_start(id, speed.as_ref());
    }

    fn block_commit(&mut self) {
        let mut args = Map::new();
        let n = self.layers.len();
        let device = if self.chance(0.85) {
            self.layers[n - 1].node.clone()
        } else {
            self.any_node()
        };
        args.insert("device".into(), json!(device));
        let top = self.chain_node();
        match self.rng.random_range(0..100) {
            0..40 => {}
            40..85 => {
                args.insert("top-node".into(), json!(self.layers[top].node));
            }
            _ => {
                args.insert("top".into(), json!(self.layers[top].image));
            }
        }
        match self.rng.random_range(0..100) {
            0..40 => {}
            40..85 => {
                args.insert("base-node".into(), json!(self.node_below(top)));
            }
            85..95 => {
                let i = self.rng.random_range(0..n);
                args.insert("base".into(), json!(self.layers[i].image));
            }
            _ => {
                args.insert("base-node".into(), json!(self.node_below(top)));
                args.insert("base".into(), json!(self.layers[0].image));
            }
        }
        if self.chance(0.1) {
            let i = self.rng.random_range(0..n);
            args.insert("backing-file".into(), json!(self.layers[i].image));
        }
        if self.chance(0.05) {
            args.insert("backing-mask-protocol".into(), json!(true));
        }
        let id = self.job_common(&mut args);
        let speed = args.get("speed").cloned();
        self.any("block-commit", Value::Object(args));
        self.after_job_start(id, speed.as_ref());
    }

    fn job_verb(&mut self) {
        let id = self.some_job();
        let block_job = self.chance(0.6);
        let verb = *self.pick(&[
            "pause",
            "resume",
            "cancel",
            "complete",
            "finalize",
            "dismiss",
            "set-speed",
        ]);
        let (name, args) = match (verb, block_job) {
            ("set-speed", _) => {
                let speed = *self.pick(&[0i64, 0, SLOW, -5]);
                (
                    "block-job-set-speed".to_string(),
                    json!({"device": id, "speed": speed}),
                )
            }
            ("cancel", true) => {
                let mut a = json!({"device": id});
                if self.chance(0.3) {
                    a["force"] = json!(true);
                }
                ("block-job-cancel".into(), a)
            }
            (v, true) => (format!("block-job-{v}"), json!({"device": id})),
            (v, false) => (format!("job-{v}"), json!({"id": id})),
        };
        self.any(&name, args);
        if verb == "pause" {
            // A pause leaves every job where it can stay: paused, or in a
            // state the pause was refused in.
            self.sync_job(&id);
        } else {
            // Any other verb may set a job moving (a resume, a speed, a
            // completion): let everything come to rest.
            self.settle();
        }
    }

    fn blockdev_del(&mut self) {
        let node = if !self.filters.is_empty() && self.chance(0.4) {
            self.filters.last().cloned().expect("a filter")
        } else {
            self.any_node()
        };
        self.any("blockdev-del", json!({"node-name": node}));
    }

    /// `blockdev-reopen` of a layer with another backing: a raw filter
    /// added for it, `null`, the spare node, or some other node.
    fn reopen(&mut self) {
        let candidates: Vec<usize> = (1..self.layers.len())
            .filter(|&i| {
                let layer = &self.layers[i];
                // A blkdebug protocol node has no name to give again.
                layer.protocol_node.is_some() && layer.format == "qcow2" && !layer.blkdebug
            })
            .collect();
        if candidates.is_empty() {
            return self.query();
        }
        let i = *self.pick(&candidates);
        let backing = match self.rng.random_range(0..4) {
            0 => {
                let name = self.fresh("r");
                let lower = self.layers[i].below.clone().expect("a backing");
                self.any(
                    "blockdev-add",
                    json!({"driver": "raw", "node-name": name, "file": lower}),
                );
                self.filters.push(name.clone());
                json!(name)
            }
            1 => Value::Null,
            _ => json!(self.any_node()),
        };
        let layer = &self.layers[i];
        let file = json!(layer.protocol_node.clone().expect("a named protocol node"));
        let options =
            json!({"driver": "qcow2", "node-name": layer.node, "file": file, "backing": backing});
        self.any("blockdev-reopen", json!({"options": [options]}));
        self.maybe_record_graph();
    }

    fn maybe_record_graph(&mut self) {
        if self.chance(0.3) {
            self.step(json!({"graph": true}));
        }
    }

    /// A filter over the chain's top (or another node), which later jobs
    /// may name as their device.
    fn filter_on_top(&mut self) {
        let child = if self.chance(0.7) {
            self.layers.last().expect("layers").node.clone()
        } else {
            self.any_node()
        };
        let name = self.fresh("f");
        let options = self.filter_options(&name, &child, Intent::MayFail);
        self.any("blockdev-add", options);
        self.opened.push(name.clone());
        self.filters.push(name);
    }

    fn export(&mut self) {
        if !self.nbd_server || self.chance(0.1) {
            self.nbd_server = true;
            self.any(
                "nbd-server-start",
                json!({"addr": {"type": "unix", "data": {"path": "nbd.sock"}}}),
            );
        }
        if !self.exports.is_empty() && self.chance(0.3) {
            let id = self.pick(&self.exports.clone()).clone();
            self.any("block-export-del", json!({"id": id}));
            self.step(
                json!({"wait": {"event": "BLOCK_EXPORT_DELETED", "data": {"id": id},
                "timeout": 2}, "optional": true}),
            );
            return;
        }
        let id = self.fresh("e");
        let node = if self.chance(0.6) {
            self.layers.last().expect("layers").node.clone()
        } else {
            self.any_node()
        };
        let writable = self.chance(0.5);
        self.any(
            "block-export-add",
            json!({"type": "nbd", "id": id, "node-name": node, "writable": writable}),
        );
        self.exports.push(id);
    }

    fn query(&mut self) {
        match self.rng.random_range(0..5) {
            0 => self.step(json!({"execute": "query-jobs", "record": ["id", "type", "status"]})),
            1 => self.step(json!({"execute": "query-block-jobs", "record": BLOCK_JOB_KEYS})),
            2 => self.step(json!({"execute": "query-named-block-nodes",
                "arguments": {"flat": true}, "record": NODE_KEYS})),
            3 => self.step(json!({"execute": "query-block-exports",
                "record": ["id", "node-name", "type"]})),
            _ => self.step(json!({"graph": true})),
        }
    }

    fn settle(&mut self) {
        if self.chance(0.8) {
            self.step(json!({"settle": {"serial": true}}));
        } else {
            self.step(json!({"settle": true}));
        }
    }

    /// A wait for a job's event, after the jobs were settled (an event
    /// that comes, comes before the wait).
    fn wait_event(&mut self) {
        self.step(json!({"settle": {"serial": true}}));
        let id = self.some_job();
        let event = *self.pick(&[
            "BLOCK_JOB_COMPLETED",
            "BLOCK_JOB_READY",
            "BLOCK_JOB_CANCELLED",
            "BLOCK_JOB_PENDING",
            "BLOCK_JOB_ERROR",
        ]);
        self.step(
            json!({"wait": {"event": event, "job": id, "timeout": 0.5}, "optional": true,
            "record": ["type", "error", "operation", "action", "offset", "len"]}),
        );
    }

    fn finish(self, name: String) -> Value {
        json!({
            "name": name,
            "description": "generated by cargo xtask fuzz",
            "images": self.images,
            "steps": self.steps,
        })
    }
}

/// Whether a command is built to succeed (the opening, which expects
/// success) or may name things that do not exist.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Intent {
    Valid,
    MayFail,
}

/// Where a node's options go.
#[derive(Clone, Copy)]
enum Placement {
    /// The root of its own `blockdev-add`.
    OwnCommand,
    /// Inline, as another node's backing.
    Inline,
}

/// How a layer's backing is given.
enum BackingSpec {
    /// The node below, by name.
    ByName,
    /// These options, inline.
    Inline(Value),
}
