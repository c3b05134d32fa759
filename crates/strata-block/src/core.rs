//! [`BlockCore`]: everything the jobs act on — the graph, the driver state
//! of every node, the image files, the throttle groups and the clock.

use crate::error::{Error, Result};
use crate::files::Files;
use crate::state::DriverState;
use std::collections::BTreeMap;
use strata_filters::{refresh_filename, BackingFileInfo, DriverPerms, MirrorTopState};
use strata_graph::NodeId;
use strata_perm::BlockGraph;

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
    pub(crate) state: BTreeMap<NodeId, DriverState>,
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
    /// The position the stream job takes where the 2020 thread's
    /// participants disagreed ([`crate::policy`]); QEMU 10.0's by default.
    pub(crate) policy: &'static crate::policy::Policy,
}

impl<F: Files> BlockCore<F> {
    pub(crate) fn new(files: F, seed: u64) -> BlockCore<F> {
        BlockCore {
            bg: BlockGraph::new(seed),
            files,
            state: BTreeMap::new(),
            monitor: Vec::new(),
            throttle_groups: BTreeMap::new(),
            now_ns: 0,
            io_wait_until: 0,
            mirror_targets: BTreeMap::new(),
            policy: crate::policy::default(),
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
        let hooks = DriverPerms::new(|node| match state.get(&node) {
            Some(DriverState::MirrorTop(s)) => *s,
            _ => MirrorTopState::default(),
        });
        let result = change(&mut self.bg, &hooks).map_err(Error::from);
        self.forget_vanished();
        result
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
    /// the graph deletes.
    pub(crate) fn unref(&mut self, node: NodeId) -> Result<()> {
        let deleted = self.with_hooks(|bg, hooks| bg.unref_node(hooks, node))?;
        self.forget_deleted(&deleted);
        Ok(())
    }
}

/// `auto_backing_file` from the format drivers' state.
struct AutoBacking<'a>(&'a BTreeMap<NodeId, DriverState>);

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
