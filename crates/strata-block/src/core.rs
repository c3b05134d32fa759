//! [`BlockCore`]: everything the jobs act on — the graph, the driver state
//! of every node, the image files, the throttle groups and the clock.

use crate::error::{Error, Result};
use crate::files::Files;
use crate::locking::LockingHooks;
use crate::state::{DriverState, DriverStates};
use std::collections::BTreeMap;
use strata_filters::{
    backing_overridden, refresh_filename, BackingFileInfo, DriverPerms, MirrorTopState,
};
use strata_graph::{EdgeId, NodeId, Role};
use strata_perm::{cumulative_perms, BlockGraph};

/// A throttle group object (`object-add qom-type=throttle-group`).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct ThrottleGroup {
    /// Limits by QAPI name (`bps-read`, `iops-total`, ...); 0 or absent
    /// means unlimited.
    pub limits: BTreeMap<String, u64>,
    /// When each limit's budget is next free (virtual ns), by limit name.
    pub(crate) busy_until: BTreeMap<String, u64>,
}

/// The graph, the drivers' state, the files, the throttle groups and the
/// virtual clock: the context every job driver works on.
#[derive(Clone, Debug)]
pub struct BlockCore<F: Files> {
    pub(crate) bg: BlockGraph,
    pub(crate) files: F,
    pub(crate) state: DriverStates,
    /// Nodes the monitor owns (`blockdev-add`), in order.
    pub(crate) monitor: Vec<NodeId>,
    pub(crate) throttle_groups: BTreeMap<String, ThrottleGroup>,
    pub(crate) now_ns: u64,
    /// The latest virtual time at which throttled I/O issued so far
    /// completes; the job that issued it waits until then.
    pub(crate) io_wait_until: u64,
    /// Active commits' `mirror_top` nodes and the base each one copies
    /// guest writes into.
    pub(crate) mirror_targets: BTreeMap<NodeId, NodeId>,
    /// The files whose backing files are being opened, outermost first:
    /// a backing chain that comes back to one of them is a cycle
    /// (`open_backing`). Empty between operations.
    pub(crate) opening_backing: Vec<String>,
    /// The option keys under which the node being opened is nested in the
    /// dictionary being opened (`["backing", "file"]`). Empty between
    /// operations.
    pub(crate) opening_path: Vec<String>,
    /// The position the stream job takes where the 2020 thread's
    /// participants disagreed ([`crate::policy`]); QEMU 10.0's by default.
    pub(crate) policy: &'static crate::policy::Policy,
    /// blkdebug breakpoints and the requests they suspended (qemu-io's
    /// `break`; empty unless a qemu-system stand-in sets one).
    pub(crate) breakpoints: crate::breakpoints::Breakpoints,
}

impl<F: Files> BlockCore<F> {
    pub(crate) fn new(files: F, seed: u64) -> BlockCore<F> {
        BlockCore {
            bg: BlockGraph::new(seed),
            files,
            state: DriverStates::default(),
            monitor: Vec::new(),
            throttle_groups: BTreeMap::new(),
            now_ns: 0,
            io_wait_until: 0,
            mirror_targets: BTreeMap::new(),
            opening_backing: Vec::new(),
            opening_path: Vec::new(),
            policy: crate::policy::default(),
            breakpoints: crate::breakpoints::Breakpoints::default(),
        }
    }

    /// The block graph.
    pub fn graph(&self) -> &BlockGraph {
        &self.bg
    }

    /// The image files.
    pub fn files(&self) -> &F {
        &self.files
    }

    /// Mutable access to the image files (for creating images).
    pub fn files_mut(&mut self) -> &mut F {
        &mut self.files
    }

    /// A node's driver state.
    pub fn driver_state(&self, node: NodeId) -> Option<&DriverState> {
        self.state.get(&node)
    }

    /// The virtual clock (ns).
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Runs a permission-changing graph operation with the drivers' hooks.
    pub(crate) fn with_hooks<T>(
        &mut self,
        change: impl FnOnce(&mut BlockGraph, &dyn strata_perm::PermHooks) -> strata_perm::Result<T>,
    ) -> Result<T> {
        let state = &self.state;
        let drivers = DriverPerms::new(|node| match state.get(&node) {
            Some(DriverState::MirrorTop(s)) => *s,
            _ => MirrorTopState::default(),
        });
        let hooks = LockingHooks {
            drivers: &drivers,
            locks: self.files.image_locks(),
        };
        let links_before = self.backing_links();
        let result = change(&mut self.bg, &hooks).map_err(Error::from);
        self.forget_vanished();
        self.apply_image_locks();
        self.refresh_new_backing_nodes(&links_before);
        result
    }

    /// Every COW link (a backing child of a non-filter) and its node.
    fn backing_links(&self) -> Vec<(EdgeId, NodeId)> {
        let g = self.bg.graph();
        g.nodes()
            .filter_map(|node| g.node(node).ok()?.backing())
            .filter_map(|edge| {
                let e = g.edge(edge).ok()?;
                e.role().contains(Role::COW).then(|| (edge, e.child()))
            })
            .collect()
    }

    /// `bdrv_backing_attach`: a node that becomes a backing child has its
    /// filename refreshed then (and nothing above it is).
    fn refresh_new_backing_nodes(&mut self, before: &[(EdgeId, NodeId)]) {
        for (edge, node) in self.backing_links() {
            if !before.contains(&(edge, node)) {
                let _ = self.refresh_filename(node);
            }
        }
    }

    /// `raw_set_perm` after every graph change: each locking file node
    /// holds the lock bytes of its new permissions (a node that is gone
    /// closes its description, which drops its locks).
    fn apply_image_locks(&mut self) {
        let graph = self.bg.graph();
        let Some(locks) = self.files.image_locks_mut() else {
            return;
        };
        locks.retain(|node| graph.contains_node(node));
        for node in locks.nodes() {
            let (perm, shared) = cumulative_perms(graph, node);
            // As `raw_set_perm`, which cannot fail: a byte the kernel
            // refuses stays as it was.
            let _ = locks.apply(node, perm, shared);
        }
    }

    /// Any graph change may delete nodes (their last reference went with a
    /// replaced link): their driver state and monitor ownership go too.
    fn forget_vanished(&mut self) {
        let graph = self.bg.graph();
        if self.state.len() != graph.nodes().count() {
            self.state.retain(|node, _| graph.contains_node(*node));
            self.monitor.retain(|node| graph.contains_node(*node));
        }
    }

    /// `bdrv_refresh_filename` on `node` and everything below it.
    pub(crate) fn refresh_filename(&mut self, node: NodeId) -> Result<()> {
        let info = AutoBacking(&self.state);
        refresh_filename(&mut self.bg, &info, node)?;
        Ok(())
    }

    /// `bdrv_backing_overridden`, against the filenames as last refreshed.
    pub(crate) fn backing_overridden(&self, node: NodeId) -> bool {
        backing_overridden(self.bg.graph(), &AutoBacking(&self.state), node).unwrap_or(false)
    }

    /// Looks a node up by node name.
    pub fn find_node(&self, name: &str) -> Option<NodeId> {
        self.bg.graph().find_node(name)
    }

    /// Whether `node`'s driver supports a backing file and the node has
    /// one, or its image names one (`bs->backing || bs->backing_file[0]`).
    pub(crate) fn has_backing_to_keep(&self, node: NodeId) -> Result<bool> {
        let n = self.bg.graph().node(node)?;
        if !n.traits().supports_backing {
            return Ok(false);
        }
        let names_one = matches!(
            self.state.get(&node),
            Some(DriverState::Format { image, .. }) if image.backing_file().is_some_and(|f| !f.is_empty())
        );
        Ok(n.backing().is_some() || names_one)
    }

    /// `bdrv_lookup_bs(device, node_name)`: a BlockBackend name first, then
    /// a node name; QEMU's text if neither exists.
    pub fn lookup_bs(&self, device: Option<&str>, node_name: Option<&str>) -> Result<NodeId> {
        if let Some(device) = device {
            if let Some(node) = self.backend_root(device) {
                return Ok(node);
            }
        }
        if let Some(name) = node_name {
            if let Some(node) = self.find_node(name) {
                return Ok(node);
            }
        }
        Err(Error::generic(format!(
            "Cannot find device='{}' nor node-name='{}'",
            device.unwrap_or(""),
            node_name.unwrap_or("")
        )))
    }

    /// The root node of the named BlockBackend `name`.
    pub(crate) fn backend_root(&self, name: &str) -> Option<NodeId> {
        let g = self.bg.graph();
        g.roots().find_map(|root| match g.root(root).ok()?.kind() {
            strata_graph::RootKind::Backend { name: Some(n) } if n == name => g
                .root(root)
                .ok()?
                .children()
                .first()
                .and_then(|&e| g.edge(e).ok())
                .map(|e| e.child()),
            _ => None,
        })
    }

    /// Takes a reference for the monitor (`blockdev-add` ownership).
    pub(crate) fn monitor_adopt(&mut self, node: NodeId) {
        self.monitor.push(node);
    }

    /// Forgets driver state of nodes the graph deleted.
    pub(crate) fn forget_deleted(&mut self, deleted: &[NodeId]) {
        for node in deleted {
            self.state.remove(node);
            self.monitor.retain(|n| n != node);
        }
    }

    /// Drops one reference on `node` (`bdrv_unref`), forgetting whatever
    /// the graph deletes. A copy-on-read filter with `bottom` that this
    /// closes first unfreezes the chain it froze down to `bottom` and then
    /// drops its reference on `bottom` (`cor_close`).
    pub(crate) fn unref(&mut self, node: NodeId) -> Result<()> {
        let closing = self.cor_bottoms_closed_by_unref(node);
        for &(cor, bottom) in &closing {
            self.bg.unfreeze_chain(cor, Some(bottom))?;
        }
        let deleted = match self.with_hooks(|bg, hooks| bg.unref_node(hooks, node)) {
            Ok(deleted) => deleted,
            Err(err) => {
                for &(cor, bottom) in &closing {
                    self.bg.freeze_chain(cor, Some(bottom))?;
                }
                return Err(err);
            }
        };
        self.forget_deleted(&deleted);
        for (_, bottom) in closing {
            self.unref(bottom)?;
        }
        Ok(())
    }

    /// The copy-on-read filters with a `bottom` that dropping one
    /// reference on `node` would close, each with its bottom.
    fn cor_bottoms_closed_by_unref(&self, node: NodeId) -> Vec<(NodeId, NodeId)> {
        let g = self.bg.graph();
        let mut dropped: BTreeMap<NodeId, u32> = BTreeMap::new();
        let mut closed = Vec::new();
        let mut pending = vec![node];
        while let Some(n) = pending.pop() {
            let Ok(info) = g.node(n) else { continue };
            let drops = dropped.entry(n).or_insert(0);
            *drops += 1;
            if *drops < info.refcnt() {
                continue;
            }
            if let Some(DriverState::CopyOnRead {
                bottom: Some(bottom),
            }) = self.state.get(&n)
            {
                closed.push((n, *bottom));
            }
            pending.extend(
                info.children()
                    .iter()
                    .filter_map(|&e| g.edge(e).ok().map(|e| e.child())),
            );
        }
        closed
    }
}

/// `auto_backing_file` from the format drivers' state.
struct AutoBacking<'a>(&'a DriverStates);

impl BackingFileInfo for AutoBacking<'_> {
    fn auto_backing_file(&self, node: NodeId) -> String {
        match self.0.get(&node) {
            Some(DriverState::Format {
                auto_backing_file, ..
            }) => auto_backing_file.clone(),
            _ => String::new(),
        }
    }
}
