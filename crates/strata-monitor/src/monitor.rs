//! [`Monitor`]: every command of the schema on one [`BlockLayer`], with
//! the server-side state qemu-storage-daemon keeps next to it (the NBD
//! server, the exports and their BlockBackends, the events of the exports),
//! answering with exactly the members qemu-storage-daemon 10.0.2 answers
//! with.
//!
//! One monitor value lives as long as its block layer: the daemon feeds it
//! every client's commands, the simulator every step of a scenario, so
//! nothing a command leaves behind is lost between two commands. Sockets are
//! the host's business: the NBD server's listening socket is made and
//! closed through an [`NbdListener`] (real sockets in the daemon,
//! [`NoListener`] — the server as state only — in the simulator).

use serde_json::{json, Value};
use strata_block::{BlockLayer, CommitArgs, DriverState, Files, NamedNodeInfo, StreamArgs};
use strata_formats::{Access, Image};
use strata_graph::{NodeId, Options, Role, RootId};
use strata_jobs::{Cancel, Lookup};
use strata_qmp::{
    BlockCommitArgs, BlockExportOptions, BlockStreamArgs, Command, CommandHandler, Event,
    EventSink, NbdServerStartArgs, ObjectOptions, QmpError, Timestamp,
};

use crate::config::NbdAddress;
use crate::replies::{
    block_device_info, block_error, block_graph, block_job_infos, image_info, job_event, job_infos,
    on_error, options_from_json, qcow2_specific, QCOW2_DIRTY,
};

/// The host side of `nbd-server-start` and `nbd-server-stop`: the listening
/// socket. The monitor keeps the server's state and calls this only after
/// QEMU's own checks passed.
pub trait NbdListener {
    /// Binds the listening socket; the error is the command's (QEMU's text,
    /// e.g. `Failed to bind socket to PATH: Address already in use`).
    fn listen(&mut self, addr: &NbdAddress) -> Result<(), QmpError>;
    /// Closes the listening socket and every connection.
    fn close(&mut self);
}

/// An NBD server without sockets: it exists as the monitor's state only,
/// which is all the simulator needs (exports are checked against it exactly
/// as in the daemon).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NoListener;

impl NbdListener for NoListener {
    fn listen(&mut self, _addr: &NbdAddress) -> Result<(), QmpError> {
        Ok(())
    }

    fn close(&mut self) {}
}

/// One block export (`block-export-add`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Export {
    /// The export id.
    pub id: String,
    /// The NBD export name (default: the node name).
    pub name: String,
    /// The NBD export description.
    pub description: Option<String>,
    /// Whether clients may write.
    pub writable: bool,
    /// The AioContext its BlockBackend (and so its node) runs in.
    pub context: AioContext,
    /// `fixed-iothread`: nothing may move the node to another context.
    pub fixed_iothread: bool,
    backend: RootId,
}

/// Whether `bdrv_block_device_info` shows implicit filter nodes
/// (`query-named-block-nodes`) or skips them (`query-block`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImplicitFilters {
    /// Every node of the chain.
    Shown,
    /// Automatically inserted filters are stepped over.
    Skipped,
}

/// An AioContext, as QEMU's checks see it: which event loop a node and
/// its BlockBackends run in. Strata runs everything on one thread; the
/// context is the attribute that decides what QEMU allows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AioContext {
    /// The main loop's (`qemu_get_aio_context`).
    Main,
    /// The AioContext of the `iothread` object with this id.
    IoThread(String),
}

/// A [`CommandHandler`] over a [`BlockLayer`]: every command of
/// qemu-storage-daemon's schema that Strata models, with the server-side
/// state; `L` makes the NBD server's socket.
#[derive(Clone)]
pub struct Monitor<F: Files, L: NbdListener = NoListener> {
    layer: BlockLayer<F>,
    listener: L,
    nbd_server: Option<NbdAddress>,
    /// Newest first, like QEMU's `block_exports` list.
    exports: Vec<Export>,
    /// The ids of the `iothread` objects.
    iothreads: std::collections::BTreeSet<String>,
    /// Events waiting for the clients, in the order they were raised, with
    /// the virtual time they happened at: the monitor's own
    /// (`BLOCK_EXPORT_DELETED`) and the job events raised before them.
    events: Vec<(u64, Event)>,
    /// The wall-clock time of virtual time 0.
    origin: Timestamp,
    /// Events a command raised: its own client got them ahead of the
    /// response, every other client gets them from
    /// [`Monitor::take_command_events`].
    command_events: Vec<(Event, Timestamp)>,
    /// How many bytes a file takes on its storage (`actual-size`).
    allocated_size: Option<fn(&str) -> Option<u64>>,
    /// qemu-system's guest devices and HMP (none in qemu-storage-daemon).
    pub(crate) system: crate::system_state::SystemState<F>,
}

impl<F: Files> Monitor<F> {
    /// A monitor owning `layer`, whose NBD server has no sockets.
    pub fn new(layer: BlockLayer<F>) -> Monitor<F> {
        Monitor::with_listener(layer, NoListener)
    }
}

impl<F: Files, L: NbdListener> Monitor<F, L> {
    /// A monitor owning `layer`, whose NBD server listens through `listener`.
    pub fn with_listener(layer: BlockLayer<F>, listener: L) -> Monitor<F, L> {
        Monitor {
            layer,
            listener,
            nbd_server: None,
            exports: Vec::new(),
            iothreads: std::collections::BTreeSet::new(),
            events: Vec::new(),
            origin: Timestamp {
                seconds: 0,
                microseconds: 0,
            },
            command_events: Vec::new(),
            allocated_size: None,
            system: crate::system_state::SystemState::default(),
        }
    }

    /// Sets how `query-named-block-nodes` learns the space a file takes
    /// (`actual-size`; the daemon asks the host's file system).  Without
    /// it the member is left out, as QEMU does where it cannot tell.
    pub fn set_allocated_size_probe(&mut self, probe: fn(&str) -> Option<u64>) {
        self.allocated_size = Some(probe);
    }

    /// `bdrv_get_allocated_file_size`: the file under `node`, through
    /// format and filter nodes' primary children.
    fn actual_size(&self, node: NodeId) -> Option<u64> {
        let probe = self.allocated_size?;
        let core = self.layer.core();
        let graph = core.graph().graph();
        let mut node = node;
        loop {
            match core.driver_state(node) {
                Some(DriverState::File { path }) => return probe(path),
                // null_allocated_file_size.
                Some(DriverState::Null { .. }) => return Some(0),
                _ => {}
            }
            node = graph
                .node(node)
                .ok()?
                .children()
                .iter()
                .filter_map(|&e| graph.edge(e).ok())
                .find(|e| e.role().contains(Role::PRIMARY))?
                .child();
        }
    }

    /// Sets the wall-clock time that virtual time 0 stands for: event
    /// timestamps are this plus the block layer's virtual time.
    pub fn set_clock_origin(&mut self, origin: Timestamp) {
        self.origin = origin;
    }

    /// The wall-clock timestamp of virtual time `time_ns`.
    pub fn timestamp(&self, time_ns: u64) -> Timestamp {
        let micros = self.origin.seconds as i128 * 1_000_000
            + self.origin.microseconds as i128
            + (time_ns / 1_000) as i128;
        Timestamp {
            seconds: (micros / 1_000_000) as i64,
            microseconds: (micros % 1_000_000) as i64,
        }
    }

    /// The block layer.
    pub fn layer(&self) -> &BlockLayer<F> {
        &self.layer
    }

    /// The block layer, for stepping jobs and for I/O of exports.
    pub fn layer_mut(&mut self) -> &mut BlockLayer<F> {
        &mut self.layer
    }

    /// Where the NBD server listens, once `nbd-server-start` (or
    /// `--nbd-server`) succeeded.
    pub fn nbd_server(&self) -> Option<&NbdAddress> {
        self.nbd_server.as_ref()
    }

    /// The exports, newest first.
    pub fn exports(&self) -> &[Export] {
        &self.exports
    }

    /// The events raised since the last call outside of commands (by job
    /// steps), job events and export events in the order they happened,
    /// each with its timestamp: for every negotiated client.
    pub fn take_events(&mut self) -> Vec<(Event, Timestamp)> {
        // Everything in `events` was raised before what the layer still
        // holds (see `push_event`): the two in that order are in order.
        self.absorb_layer_events();
        std::mem::take(&mut self.events)
            .into_iter()
            .map(|(time, event)| (event, self.timestamp(time)))
            .collect()
    }

    /// Moves the layer's job events, in the order they were raised, into
    /// the monitor's own queue.
    fn absorb_layer_events(&mut self) {
        let jobs = self.layer.take_events().into_iter();
        self.events
            .extend(jobs.map(|e| (e.time_ns, job_event(&e.event))));
    }

    /// Queues an event of the monitor's own after every job event raised
    /// before it.
    pub(crate) fn push_event(&mut self, event: Event) {
        self.absorb_layer_events();
        self.events.push((self.layer.now_ns(), event));
    }

    /// The events the last commands raised, for the clients that did not
    /// send them (the sender got them ahead of its response).
    pub fn take_command_events(&mut self) -> Vec<(Event, Timestamp)> {
        std::mem::take(&mut self.command_events)
    }

    /// Feeds the server-side state (the NBD server, the exports, how many
    /// events wait) into `state`: with the layer's own key, what tells two
    /// simulated daemons apart.
    pub fn hash_server_state<H: std::hash::Hasher>(&self, state: &mut H) {
        use std::hash::Hash;
        (
            &self.nbd_server,
            &self.exports,
            &self.iothreads,
            self.events.len(),
        )
            .hash(state);
    }

    /// The NBD server's socket side.
    pub fn listener(&self) -> &L {
        &self.listener
    }

    /// The NBD server's socket side, for accepting connections.
    pub fn listener_mut(&mut self) -> &mut L {
        &mut self.listener
    }

    /// `--nbd-server` / `nbd-server-start`: refused while a server runs,
    /// then the socket, then the TLS credentials (the socket closes again
    /// if they fail), then the server is recorded.
    pub fn nbd_server_start(
        &mut self,
        addr: NbdAddress,
        tls_creds: Option<&str>,
    ) -> Result<(), QmpError> {
        if self.nbd_server.is_some() {
            return Err(QmpError::generic("NBD server already running"));
        }
        self.listener.listen(&addr)?;
        if let Some(id) = tls_creds {
            self.listener.close();
            return Err(self.tls_creds_error(id));
        }
        self.nbd_server = Some(addr);
        Ok(())
    }

    /// `nbd_get_tls_creds`: Strata has no TLS credentials objects
    /// (`object-add` refuses every `tls-creds-*` type), so a server never
    /// starts with TLS and never silently serves plaintext instead. QEMU's
    /// texts: the id names no object, or one of another type.
    fn tls_creds_error(&self, id: &str) -> QmpError {
        if self.iothreads.contains(id) || self.layer.has_throttle_group(id) {
            QmpError::generic(format!("Object with id '{id}' is not TLS credentials"))
        } else {
            QmpError::generic(format!("No TLS credentials with id '{id}'"))
        }
    }

    /// `nbd-server-stop`: every NBD export goes (newest first), then the
    /// server.
    pub fn nbd_server_stop(&mut self) -> Result<(), QmpError> {
        if self.nbd_server.is_none() {
            return Err(QmpError::generic("NBD server not running"));
        }
        for export in std::mem::take(&mut self.exports) {
            self.delete_export(export);
        }
        self.listener.close();
        self.nbd_server = None;
        Ok(())
    }

    /// What qemu-storage-daemon 10.0.2 does once its main loop ends
    /// (`quit`, a termination signal): every export goes first, with its
    /// `BLOCK_EXPORT_DELETED` (`blk_exp_close_all`), then
    /// `job_cancel_sync_all` (the newest job cancelled and run to its end,
    /// then the next) — the order of the events it sends, found by
    /// `cargo xtask fuzz`. The events wait in [`Monitor::take_events`] (a
    /// command's reach its client ahead of the answer).
    pub fn shutdown(&mut self) -> Result<(), QmpError> {
        for export in std::mem::take(&mut self.exports) {
            self.delete_export(export);
        }
        self.layer.cancel_sync_all().map_err(block_error)
    }

    /// `--export` / `block-export-add`, checked in `blk_exp_add`'s order.
    pub fn export_add(&mut self, options: &BlockExportOptions) -> Result<(), QmpError> {
        if !strata_jobs::id_wellformed(&options.id) {
            return Err(QmpError::generic("Invalid block export id"));
        }
        if self.exports.iter().any(|e| e.id == options.id) {
            return Err(QmpError::generic(format!(
                "Block export id '{}' is already in use",
                options.id
            )));
        }
        if options.kind != "nbd" {
            return Err(QmpError::generic(
                "No driver found for the requested export type",
            ));
        }
        let writable = options.writable.unwrap_or(false);
        let node = self
            .layer
            .core()
            .lookup_bs(None, Some(&options.node_name))
            .map_err(block_error)?;
        let fixed_iothread = options.fixed_iothread.unwrap_or(false);
        let context = self.export_context(node, options.iothread.as_deref(), fixed_iothread)?;
        let read_only = self
            .layer
            .core()
            .graph()
            .graph()
            .node(node)
            .map(|n| n.read_only)
            .unwrap_or(false);
        if read_only && writable {
            return Err(QmpError::generic(
                "Cannot export read-only node as writable",
            ));
        }
        let (backend, _) = self
            .layer
            .add_export_backend(&options.node_name, Access::from_read_only(!writable))
            .map_err(block_error)?;
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| options.node_name.clone());
        let refused = if self.nbd_server.is_none() {
            Some("NBD server not running".to_string())
        } else if self.exports.iter().any(|e| e.name == name) {
            Some(format!("NBD server already has export named '{name}'"))
        } else {
            None
        };
        if let Some(desc) = refused {
            self.layer.remove_export_backend(backend);
            return Err(QmpError::generic(desc));
        }
        self.exports.insert(
            0,
            Export {
                id: options.id.clone(),
                name,
                description: options.description.clone(),
                writable,
                context,
                fixed_iothread,
                backend,
            },
        );
        Ok(())
    }

    /// The node an export's BlockBackend is attached to now: the exported
    /// node, or whatever took its place (`blockdev-snapshot`, a job's
    /// graph change), as `blk_bs(exp->blk)`.
    pub fn export_node(&self, export: &Export) -> Option<NodeId> {
        let graph = self.layer.core().graph().graph();
        let edge = *graph.root(export.backend).ok()?.children().first()?;
        Some(graph.edge(edge).ok()?.child())
    }

    /// The exports whose BlockBackend is on `node`.
    fn exports_on(&self, node: NodeId) -> impl Iterator<Item = usize> + '_ {
        (0..self.exports.len()).filter(move |&i| self.export_node(&self.exports[i]) == Some(node))
    }

    /// The context `node` runs in: its exports' (they all share one),
    /// the main loop's without any.
    fn node_context(&self, node: NodeId) -> AioContext {
        self.exports_on(node)
            .next()
            .map_or(AioContext::Main, |i| self.exports[i].context.clone())
    }

    /// `blk_exp_add`'s `iothread`: the context the new export runs in.
    /// Moving the node (`bdrv_try_change_aio_context`) fails while a
    /// `fixed-iothread` export holds it elsewhere; the failure is the
    /// export's only with `fixed-iothread` (ignored otherwise: the export
    /// stays where the node is).
    fn export_context(
        &mut self,
        node: NodeId,
        iothread: Option<&str>,
        fixed_iothread: bool,
    ) -> Result<AioContext, QmpError> {
        let current = self.node_context(node);
        let Some(id) = iothread else {
            return Ok(current);
        };
        if !self.iothreads.contains(id) {
            return Err(QmpError::generic(format!("iothread \"{id}\" not found")));
        }
        let wanted = AioContext::IoThread(id.to_string());
        if wanted == current {
            return Ok(current);
        }
        let on_node: Vec<usize> = self.exports_on(node).collect();
        let pinned = on_node.iter().any(|&i| self.exports[i].fixed_iothread);
        match (pinned, fixed_iothread) {
            // blk_root_can_set_aio_ctx of a BlockBackend that may not move.
            (true, true) => Err(QmpError::generic(
                "Cannot change iothread of active block backend",
            )),
            (true, false) => Ok(current),
            (false, _) => {
                for i in on_node {
                    self.exports[i].context = wanted.clone();
                }
                Ok(wanted)
            }
        }
    }

    /// `block-export-del` (no client ever holds an export here longer than
    /// a request, so `safe` never finds it in use).
    pub fn export_del(&mut self, id: &str) -> Result<(), QmpError> {
        let index = self
            .exports
            .iter()
            .position(|e| e.id == id)
            .ok_or_else(|| QmpError::generic(format!("Export '{id}' is not found")))?;
        let export = self.exports.remove(index);
        self.delete_export(export);
        Ok(())
    }

    fn delete_export(&mut self, export: Export) {
        self.layer.remove_export_backend(export.backend);
        self.push_event(Event {
            name: "BLOCK_EXPORT_DELETED".into(),
            data: Some(json!({ "id": export.id })),
        });
    }

    fn object_add(&mut self, object: &ObjectOptions) -> Result<(), QmpError> {
        let id = &object.id;
        // `user_creatable_add_type`'s check, before any object exists.
        if !strata_jobs::id_wellformed(id) {
            return Err(QmpError::generic("Parameter 'id' expects an identifier"));
        }
        if self.iothreads.contains(id) {
            return Err(QmpError::generic(format!(
                "attempt to add duplicate property '{id}' to object (type 'container')"
            )));
        }
        match object.qom_type.as_str() {
            "throttle-group" => self.throttle_group_add(object),
            "iothread" if self.layer.has_throttle_group(id) => Err(QmpError::generic(format!(
                "attempt to add duplicate property '{id}' to object (type 'container')"
            ))),
            "iothread" => {
                self.iothreads.insert(id.clone());
                Ok(())
            }
            other => Err(QmpError::generic(format!(
                "strata-qsd does not model objects of type '{other}'"
            ))),
        }
    }

    /// `object-del`: an iothread goes at once (QEMU's iothread has no
    /// `can_be_deleted`), a throttle group once no node uses it.
    fn object_del(&mut self, id: &str) -> Result<(), QmpError> {
        if self.iothreads.remove(id) {
            return Ok(());
        }
        self.layer.del_throttle_group(id).map_err(block_error)
    }

    fn throttle_group_add(&mut self, object: &ObjectOptions) -> Result<(), QmpError> {
        let mut limits = std::collections::BTreeMap::new();
        if let Some(Value::Object(given)) = object.props.get("limits") {
            for (key, value) in given {
                limits.insert(key.clone(), value.as_u64().unwrap_or(0));
            }
        }
        for (key, value) in &object.props {
            if let Some(name) = key.strip_prefix("x-") {
                limits.insert(name.to_string(), value.as_u64().unwrap_or(0));
            }
        }
        self.layer
            .add_throttle_group(&object.id, limits)
            .map_err(block_error)
    }

    fn block_stream(&mut self, args: BlockStreamArgs) -> Result<(), QmpError> {
        let args = StreamArgs {
            job_id: args.job_id,
            device: args.device,
            base: args.base,
            base_node: args.base_node,
            bottom: args.bottom,
            backing_file: args.backing_file,
            backing_mask_protocol: args.backing_mask_protocol,
            speed: args.speed,
            on_error: args.on_error.map(on_error),
            filter_node_name: args.filter_node_name,
            auto_finalize: args.auto_finalize,
            auto_dismiss: args.auto_dismiss,
        };
        self.layer.block_stream(&args).map_err(block_error)
    }

    fn block_commit(&mut self, args: BlockCommitArgs) -> Result<(), QmpError> {
        let args = CommitArgs {
            job_id: args.job_id,
            device: args.device,
            base_node: args.base_node,
            base: args.base,
            top_node: args.top_node,
            top: args.top,
            backing_file: args.backing_file,
            backing_mask_protocol: args.backing_mask_protocol,
            speed: args.speed,
            on_error: args.on_error.map(on_error),
            filter_node_name: args.filter_node_name,
            auto_finalize: args.auto_finalize,
            auto_dismiss: args.auto_dismiss,
        };
        self.layer.block_commit(&args).map_err(block_error)
    }

    fn query_named_block_nodes(&mut self, flat: bool) -> Value {
        let infos = self.layer.query_named_block_nodes();
        // bdrv_named_nodes_list prepends: newest node first.
        let list = infos
            .iter()
            .rev()
            .map(|info| self.block_device_info(&infos, info, flat, ImplicitFilters::Shown))
            .collect();
        Value::Array(list)
    }

    /// `bdrv_block_device_info`: `backing_file` names the COW child node;
    /// unless `flat`, the image infos follow filter and COW children down
    /// (`backing-image`), and `backing_file_depth` counts the steps.
    /// `bdrv_block_device_info`; for `query-block` (a BlockBackend's
    /// view) the implicit filters are skipped.
    pub(crate) fn block_device_info(
        &self,
        infos: &[NamedNodeInfo],
        info: &NamedNodeInfo,
        flat: bool,
        implicit: ImplicitFilters,
    ) -> Value {
        let core = self.layer.core();
        let graph = core.graph().graph();
        let by_node = |node: NodeId| infos.iter().find(|i| i.node_name == graph.name(node));
        let node = core.find_node(&info.node_name);
        let backing_file = node
            .and_then(|n| graph.cow_node(n))
            .and_then(by_node)
            .map(|b| b.file.clone());
        let mut chain = vec![info];
        let mut below = node;
        while let Some(next) = below
            .filter(|_| !flat)
            .and_then(|n| graph.filter_or_cow_node(n))
        {
            let next = match implicit {
                ImplicitFilters::Shown => next,
                ImplicitFilters::Skipped => graph.skip_implicit_filters(next),
            };
            let Some(next_info) = by_node(next) else {
                break;
            };
            chain.push(next_info);
            below = Some(next);
        }
        let image = chain
            .iter()
            .rev()
            .fold(None, |backing, i| Some(self.image_info(i, backing)))
            .expect("the chain starts with the node itself");
        block_device_info(info, image, chain.len() - 1, backing_file)
    }

    /// `ImageInfo` of one node: the header's fields, `bdrv_get_info`'s
    /// (cluster size, dirty flag: a filter answers with its child's) and
    /// the format's own specific info.
    fn image_info(&self, info: &NamedNodeInfo, backing: Option<Value>) -> Value {
        let core = self.layer.core();
        let graph = core.graph().graph();
        let node = core.find_node(&info.node_name);
        let image_of = |node: NodeId| match core.driver_state(node) {
            Some(DriverState::Format { image, .. }) => Some(image),
            _ => None,
        };
        let own = node.and_then(image_of);
        let answering = node.and_then(|n| image_of(graph.skip_filters(n)));
        let mut value = image_info(info, backing);
        let Value::Object(fields) = &mut value else {
            return value;
        };
        if let Some(size) = node.and_then(|n| self.actual_size(n)) {
            fields.insert("actual-size".into(), json!(size));
        }
        if let Some(image) = answering {
            if let Some(cluster_size) = image.cluster_size() {
                fields.insert("cluster-size".into(), json!(cluster_size));
            }
            if let Image::Qcow2(qcow2) = image {
                let dirty = qcow2.header().incompatible_features & QCOW2_DIRTY != 0;
                fields.insert("dirty-flag".into(), json!(dirty));
            }
        }
        if let Some(Image::Qcow2(qcow2)) = own {
            fields.insert("format-specific".into(), qcow2_specific(qcow2.header()));
        }
        value
    }
}

impl<F: Files, L: NbdListener> CommandHandler for Monitor<F, L> {
    fn dispatch(&mut self, command: Command, sink: &mut EventSink) -> Result<Value, QmpError> {
        // The command runs in the monitor's turn of the main loop; the
        // jobs it starts or wakes run first afterwards.
        let turn = self.layer.begin_monitor_turn();
        let result = self.run(command);
        self.layer.end_monitor_turn(turn);
        for (event, timestamp) in self.take_events() {
            sink.emit(event.clone(), timestamp);
            self.command_events.push((event, timestamp));
        }
        result
    }
}

impl<F: Files, L: NbdListener> Monitor<F, L> {
    fn run(&mut self, command: Command) -> Result<Value, QmpError> {
        let layer = &mut self.layer;
        let done = |r: strata_block::Result<()>| r.map(|()| json!({})).map_err(block_error);
        match command {
            // qemu-storage-daemon's `qmp_quit` only ends the main loop;
            // the shutdown follows, and its events reach the client before
            // the answer (the monitor's output is flushed at
            // `monitor_cleanup`). The daemon exits once the answer is out.
            Command::Quit => {
                self.announce_quit();
                self.shutdown().map(|()| json!({}))
            }
            Command::BlockdevAdd(options) => {
                let opts = options_from_json(&options.options);
                done(layer.blockdev_add(&opts).map(|_| ()))
            }
            Command::BlockdevDel { node_name } => done(layer.blockdev_del(&node_name)),
            Command::BlockdevSnapshot { node, overlay } => {
                done(layer.blockdev_snapshot(&node, &overlay))
            }
            Command::BlockdevReopen { options } => {
                let list: Vec<Options> = options
                    .iter()
                    .map(|o| options_from_json(&o.options))
                    .collect();
                done(layer.blockdev_reopen(&list))
            }
            Command::ObjectAdd(object) => self.object_add(&object).map(|()| json!({})),
            Command::ObjectDel { id } => self.object_del(&id).map(|()| json!({})),
            Command::BlockStream(args) => self.block_stream(args).map(|()| json!({})),
            Command::BlockCommit(args) => self.block_commit(args).map(|()| json!({})),
            Command::BlockJobSetSpeed { device, speed } => done(layer.set_speed(&device, speed)),
            Command::BlockJobPause { device } => done(layer.pause(Lookup::BlockJob, &device)),
            Command::BlockJobResume { device } => done(layer.resume(Lookup::BlockJob, &device)),
            Command::BlockJobCancel { device, force } => done(layer.cancel(
                Cancel::BlockJob {
                    force: force.unwrap_or(false),
                },
                &device,
            )),
            Command::BlockJobComplete { device } => done(layer.complete(Lookup::BlockJob, &device)),
            Command::BlockJobFinalize { id } => done(layer.finalize(Lookup::BlockJob, &id)),
            Command::BlockJobDismiss { id } => done(layer.dismiss(Lookup::BlockJob, &id)),
            Command::JobPause { id } => done(layer.pause(Lookup::Job, &id)),
            Command::JobResume { id } => done(layer.resume(Lookup::Job, &id)),
            Command::JobCancel { id } => done(layer.cancel(Cancel::Job, &id)),
            Command::JobComplete { id } => done(layer.complete(Lookup::Job, &id)),
            Command::JobFinalize { id } => done(layer.finalize(Lookup::Job, &id)),
            Command::JobDismiss { id } => done(layer.dismiss(Lookup::Job, &id)),
            Command::QueryJobs => Ok(job_infos(&layer.jobs().query_jobs())),
            Command::QueryBlockJobs => Ok(block_job_infos(&layer.jobs().query_block_jobs())),
            Command::QueryNamedBlockNodes { flat } => {
                Ok(self.query_named_block_nodes(flat.unwrap_or(false)))
            }
            Command::XDebugQueryBlockGraph => Ok(block_graph(&layer.query_block_graph())),
            Command::NbdServerStart(NbdServerStartArgs {
                addr, tls_creds, ..
            }) => {
                let addr = NbdAddress::from_json(&addr)?;
                self.nbd_server_start(addr, tls_creds.as_deref())
                    .map(|()| json!({}))
            }
            Command::NbdServerStop => self.nbd_server_stop().map(|()| json!({})),
            Command::BlockExportAdd(options) => self.export_add(&options).map(|()| json!({})),
            Command::BlockExportDel { id, .. } => self.export_del(&id).map(|()| json!({})),
            // qemu-storage-daemon has no devices and names no
            // BlockBackend (exports' are anonymous): `qmp_query_block`
            // skips every one; a qemu-system stand-in has drives.
            Command::QueryBlock => Ok(self.query_block()),
            Command::HumanMonitorCommand { command_line } => {
                self.human_monitor_command(&command_line)
            }
            Command::DeviceAdd(args) => self.device_add(&args).map(|()| json!({})),
            Command::DeviceDel { id } => self.device_del(&id).map(|()| json!({})),
            Command::QueryBlockstats { query_nodes } => Ok(self.query_blockstats(query_nodes)),
            Command::QueryBlockExports => Ok(Value::Array(
                self.exports
                    .iter()
                    .map(|e| {
                        let graph = self.layer.core().graph().graph();
                        let node_name = self.export_node(e).map(|n| graph.name(n).to_string());
                        json!({
                            "id": e.id,
                            "type": "nbd",
                            "node-name": node_name.unwrap_or_default(),
                            "shutting-down": false,
                        })
                    })
                    .collect(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MonitorOption;
    use crate::replies::full_backing_filename;
    use strata_block::MemFiles;
    use strata_formats::MemStorage;
    use strata_graph::OptValue;
    use strata_jobs::JobEvent;
    use strata_qmp::{Session, SessionConfig};

    /// A handler over one 1 MiB raw file `disk.img`, and a negotiated
    /// session on it.
    fn handler() -> (Monitor<MemFiles>, Session) {
        let mut files = MemFiles::new();
        files.insert("disk.img", MemStorage::from_bytes(&vec![0u8; 1 << 20]));
        let mut handler = Monitor::new(BlockLayer::new(files, 7));
        handler.set_clock_origin(Timestamp {
            seconds: 1_700_000_000,
            microseconds: 999_999,
        });
        let mut session = Session::new(SessionConfig::default());
        session.feed(b"{'execute': 'qmp_capabilities'}", &mut handler);
        session.take_output();
        (handler, session)
    }

    fn exchange(session: &mut Session, handler: &mut Monitor<MemFiles>, request: &str) -> String {
        session.feed(request.as_bytes(), handler);
        String::from_utf8(session.take_output()).unwrap()
    }

    const ADD_DISK: &str = r#"{"execute": "blockdev-add", "arguments": {"driver": "raw", "node-name": "d", "file": {"driver": "file", "filename": "disk.img"}}}"#;

    #[test]
    fn exports_are_checked_in_blk_exp_adds_order() {
        let (mut h, mut s) = handler();
        assert_eq!(exchange(&mut s, &mut h, ADD_DISK), "{\"return\": {}}\r\n");
        let add = |id: &str, node: &str, extra: &str| {
            format!(
                r#"{{"execute": "block-export-add", "arguments": {{"type": "nbd", "id": "{id}", "node-name": "{node}"{extra}}}}}"#
            )
        };
        // Texts and order as qsd 10.0.2 answered them.
        let rows = [
            (add("e0", "d", ""), "NBD server not running"),
            (add("0e", "d", ""), "Invalid block export id"),
            (
                add("e0", "nope", ""),
                "Cannot find device='' nor node-name='nope'",
            ),
        ];
        for (request, desc) in rows {
            let want =
                format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{desc}\"}}}}\r\n");
            assert_eq!(exchange(&mut s, &mut h, &request), want, "{request}");
        }
        let start = r#"{"execute": "nbd-server-start", "arguments": {"addr": {"type": "unix", "data": {"path": "/s"}}}}"#;
        assert_eq!(exchange(&mut s, &mut h, start), "{\"return\": {}}\r\n");
        assert_eq!(
            h.nbd_server(),
            Some(&NbdAddress::Unix { path: "/s".into() })
        );
        assert_eq!(
            exchange(&mut s, &mut h, &add("e0", "d", "")),
            "{\"return\": {}}\r\n"
        );
        assert!(exchange(&mut s, &mut h, &add("e0", "d", ""))
            .contains("Block export id 'e0' is already in use"));
        assert!(exchange(&mut s, &mut h, &add("e1", "d", ""))
            .contains("NBD server already has export named 'd'"));
        assert_eq!(
            exchange(
                &mut s,
                &mut h,
                &add("e2", "d", r#", "name": "x", "writable": true"#)
            ),
            "{\"return\": {}}\r\n"
        );
        assert_eq!(
            exchange(&mut s, &mut h, r#"{"execute": "query-block-exports"}"#),
            "{\"return\": [{\"node-name\": \"d\", \"shutting-down\": false, \"type\": \"nbd\", \"id\": \"e2\"}, \
             {\"node-name\": \"d\", \"shutting-down\": false, \"type\": \"nbd\", \"id\": \"e0\"}]}\r\n"
        );
        // The exports' BlockBackends are real parents: the node is in use.
        assert!(exchange(
            &mut s,
            &mut h,
            r#"{"execute": "blockdev-del", "arguments": {"node-name": "d"}}"#
        )
        .contains("Node d is in use"));
        let graph = exchange(
            &mut s,
            &mut h,
            r#"{"execute": "x-debug-query-block-graph"}"#,
        );
        assert!(
            graph.contains(r#"{"name": "root", "parent": 3, "shared-perm": ["write-unchanged", "write", "consistent-read"], "perm": ["write", "consistent-read"]"#),
            "{graph}"
        );
    }

    #[test]
    fn nbd_server_stop_deletes_the_exports_newest_first_with_events() {
        let (mut h, mut s) = handler();
        exchange(&mut s, &mut h, ADD_DISK);
        h.layer_mut().advance_to(2_500_000);
        exchange(
            &mut s,
            &mut h,
            r#"{"execute": "nbd-server-start", "arguments": {"addr": {"type": "unix", "data": {"path": "/s"}}}}"#,
        );
        exchange(
            &mut s,
            &mut h,
            r#"{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "a", "node-name": "d"}}"#,
        );
        exchange(
            &mut s,
            &mut h,
            r#"{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "b", "node-name": "d", "name": "b"}}"#,
        );
        let out = exchange(&mut s, &mut h, r#"{"execute": "nbd-server-stop"}"#);
        // Events first, stamped origin + virtual time, then the response.
        assert_eq!(
            out,
            "{\"timestamp\": {\"seconds\": 1700000001, \"microseconds\": 2499}, \"event\": \"BLOCK_EXPORT_DELETED\", \"data\": {\"id\": \"b\"}}\r\n\
             {\"timestamp\": {\"seconds\": 1700000001, \"microseconds\": 2499}, \"event\": \"BLOCK_EXPORT_DELETED\", \"data\": {\"id\": \"a\"}}\r\n\
             {\"return\": {}}\r\n"
        );
        assert_eq!(h.take_command_events().len(), 2, "for the other clients");
        assert!(h.exports().is_empty());
        assert!(
            exchange(&mut s, &mut h, r#"{"execute": "nbd-server-stop"}"#)
                .contains("NBD server not running")
        );
        // Nothing holds the node any more.
        assert_eq!(
            exchange(
                &mut s,
                &mut h,
                r#"{"execute": "blockdev-del", "arguments": {"node-name": "d"}}"#
            ),
            "{\"return\": {}}\r\n"
        );
    }

    #[test]
    fn named_block_nodes_flat_and_with_chain() {
        let (mut h, mut s) = handler();
        exchange(&mut s, &mut h, ADD_DISK);
        let flat = exchange(
            &mut s,
            &mut h,
            r#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#,
        );
        assert!(
            flat.contains(
                r#""ro": false, "node-name": "d", "backing_file_depth": 0, "drv": "raw""#
            ),
            "{flat}"
        );
        assert!(flat.contains(r#""image": {"virtual-size": 1048576, "filename": "disk.img", "format": "raw", "dirty-flag": false}"#), "{flat}");
        assert!(
            flat.contains(r#""cache": {"no-flush": false, "direct": false, "writeback": true}"#),
            "{flat}"
        );
    }

    #[test]
    fn qcow2_image_info_is_qsds() {
        let (mut h, mut s) = handler();
        let mut storage = MemStorage::new();
        strata_formats::Qcow2::create(&mut storage, &strata_formats::CreateOptions::new(1 << 20))
            .unwrap();
        h.layer_mut()
            .core_mut()
            .files_mut()
            .insert("q.img", storage);
        let add = r#"{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "q", "file": {"driver": "file", "filename": "q.img"}}}"#;
        assert_eq!(exchange(&mut s, &mut h, add), "{\"return\": {}}\r\n");
        let flat = exchange(
            &mut s,
            &mut h,
            r#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#,
        );
        // As qsd 10.0.2 prints a fresh `qemu-img create -f qcow2` image
        // (less actual-size: no probe was set).
        let want = r#""image": {"virtual-size": 1048576, "filename": "q.img", "cluster-size": 65536, "format": "qcow2", "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "compression-type": "zlib", "lazy-refcounts": false, "refcount-bits": 16, "corrupt": false, "extended-l2": false}}, "dirty-flag": false}"#;
        assert!(flat.contains(want), "{flat}");
        // With a probe, actual-size is the file's, for the format node too.
        h.set_allocated_size_probe(|path| (path == "q.img").then_some(200704));
        let flat = exchange(
            &mut s,
            &mut h,
            r#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#,
        );
        let want = r#""format": "qcow2", "actual-size": 200704, "format-specific""#;
        assert!(flat.contains(want), "{flat}");
        assert_eq!(
            flat.matches(r#""actual-size": 200704"#).count(),
            2,
            "{flat}"
        );
    }

    #[test]
    fn chains_follow_filter_and_cow_children() {
        let (mut h, mut s) = handler();
        for (name, backing) in [("base.img", None), ("top.img", Some("base.img"))] {
            let mut storage = MemStorage::new();
            let mut opts = strata_formats::CreateOptions::new(1 << 20);
            if let Some(backing) = backing {
                opts = opts.backing(backing, Some("qcow2"));
            }
            strata_formats::Qcow2::create(&mut storage, &opts).unwrap();
            h.layer_mut().core_mut().files_mut().insert(name, storage);
        }
        let steps = [
            r#"{"execute": "object-add", "arguments": {"qom-type": "throttle-group", "id": "tg0"}}"#,
            r#"{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "base", "file": {"driver": "file", "filename": "base.img"}}}"#,
            r#"{"execute": "blockdev-add", "arguments": {"driver": "throttle", "node-name": "flt", "throttle-group": "tg0", "file": "base"}}"#,
            r#"{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "top", "file": {"driver": "file", "filename": "top.img"}, "backing": "flt"}}"#,
        ];
        for step in steps {
            assert_eq!(
                exchange(&mut s, &mut h, step),
                "{\"return\": {}}\r\n",
                "{step}"
            );
        }
        let full = exchange(&mut s, &mut h, r#"{"execute": "query-named-block-nodes"}"#);
        let flt_json = r#"json:{\"throttle-group\": \"tg0\", \"driver\": \"throttle\", \"file\": {\"driver\": \"qcow2\", \"file\": {\"driver\": \"file\", \"filename\": \"base.img\"}}}"#;
        // qsd 10.0.2 with the same graph: top's backing_file is the filter
        // node's filename, its depth counts the filter, and the filter
        // answers with its child's cluster size.
        assert!(
            full.contains(r#""node-name": "top", "backing_file_depth": 2, "drv": "qcow2""#),
            "{full}"
        );
        assert!(
            full.contains(&format!(r#""backing_file": "{flt_json}""#)),
            "{full}"
        );
        assert!(
            full.contains(&format!(
                r#""filename": "{flt_json}", "cluster-size": 65536, "format": "throttle""#
            )),
            "{full}"
        );
        let flat = exchange(
            &mut s,
            &mut h,
            r#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#,
        );
        assert!(!flat.contains("backing-image"), "{flat}");
        assert!(
            flat.contains(r#""node-name": "top", "backing_file_depth": 0"#),
            "{flat}"
        );
    }

    #[test]
    fn file_sizes_count_whole_sectors() {
        let (mut h, mut s) = handler();
        let odd = MemStorage::from_bytes(&[7u8; 196_616]);
        h.layer_mut().core_mut().files_mut().insert("odd", odd);
        let add = r#"{"execute": "blockdev-add", "arguments": {"driver": "file", "node-name": "f", "filename": "odd"}}"#;
        assert_eq!(exchange(&mut s, &mut h, add), "{\"return\": {}}\r\n");
        let flat = exchange(
            &mut s,
            &mut h,
            r#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#,
        );
        // qsd 10.0.2 on a 196616-byte file: 197120.
        assert!(
            flat.contains(r#""virtual-size": 197120, "filename": "odd""#),
            "{flat}"
        );
    }

    #[test]
    fn job_events_keep_qemus_data() {
        let event = job_event(&JobEvent::BlockJobError {
            device: "j".into(),
            operation: strata_jobs::IoOperation::Read,
            action: strata_jobs::BlockErrorAction::Stop,
        });
        assert_eq!(event.name, "BLOCK_JOB_ERROR");
        assert_eq!(
            event.data,
            Some(json!({"device": "j", "operation": "read", "action": "stop"}))
        );
    }

    #[test]
    fn timestamps_carry_into_seconds() {
        let (h, _) = handler();
        assert_eq!(
            h.timestamp(1_500),
            Timestamp {
                seconds: 1_700_000_001,
                microseconds: 0
            }
        );
    }

    #[test]
    fn options_keep_order_and_types() {
        let json = json!({
            "driver": "qcow2", "node-name": "top", "read-only": true, "cache-size": 65536,
            "backing": null,
            "file": {"driver": "file", "filename": "top.img"},
        });
        let opts = options_from_json(&json);
        let keys: Vec<&str> = opts.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "driver",
                "node-name",
                "read-only",
                "cache-size",
                "backing",
                "file"
            ]
        );
        assert_eq!(opts.get("read-only"), Some(&OptValue::Bool(true)));
        assert_eq!(opts.get("cache-size"), Some(&OptValue::Int(65536)));
        assert_eq!(opts.get("backing"), Some(&OptValue::Null));
        let Some(OptValue::Dict(file)) = opts.get("file") else {
            panic!("file is a dict: {opts:?}")
        };
        assert_eq!(file.get_str("filename"), Some("top.img"));
    }

    #[test]
    fn full_backing_filename_is_relative_to_the_image() {
        assert_eq!(full_backing_filename("top.img", "base.img"), "base.img");
        assert_eq!(
            full_backing_filename("/d/top.img", "base.img"),
            "/d/base.img"
        );
        assert_eq!(full_backing_filename("/d/top.img", "/e/b.img"), "/e/b.img");
    }

    #[test]
    fn monitor_options() {
        let m = MonitorOption::from_json(&json!({"chardev": "m0", "pretty": true}));
        assert_eq!(
            m,
            MonitorOption {
                chardev: "m0".into(),
                pretty: true,
                control: true
            }
        );
        assert!(!MonitorOption::from_json(&json!({"chardev": "m", "mode": "readline"})).control);
    }

    #[test]
    fn nbd_addresses_flat_and_legacy() {
        let legacy = json!({"type": "unix", "data": {"path": "/s"}});
        let flat = json!({"addr": {"type": "inet", "host": "::", "port": "10809"}});
        assert_eq!(
            NbdAddress::from_json(&legacy).unwrap(),
            NbdAddress::Unix { path: "/s".into() }
        );
        assert_eq!(
            NbdAddress::from_nbd_server_option(&flat).unwrap(),
            NbdAddress::Inet {
                host: "::".into(),
                port: "10809".into()
            }
        );
    }
}
