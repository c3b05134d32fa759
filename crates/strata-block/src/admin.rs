//! `blockdev-del`, `blockdev-snapshot`, `blockdev-reopen` and `object-del`.

use crate::core::BlockCore;
use crate::error::{Error, Result};
use crate::files::Files;
use crate::layer::BlockLayer;
use crate::open::scalar_options;
use crate::reopen::{OldOptions, ReopenPlan};
use crate::reopen_options::refuse_changed_options;
use strata_graph::{NodeId, OptValue, Options, Perm};
use strata_perm::{BlockOp, ChildSlot};

impl<F: Files> BlockLayer<F> {
    /// `blockdev-del` (`qmp_blockdev_del`): the checks in QEMU's order, then
    /// the monitor's reference goes.
    pub fn blockdev_del(&mut self, node_name: &str) -> Result<()> {
        let core = &mut self.core;
        let node = core.find_node(node_name).ok_or_else(|| {
            Error::generic(format!("Failed to find node with node-name='{node_name}'"))
        })?;
        if core.has_blk(node) {
            return Err(Error::generic(format!("Node {node_name} is in use")));
        }
        core.bg.check_op(node, BlockOp::DriveDel)?;
        if !core.monitor.contains(&node) {
            return Err(Error::generic(format!(
                "Node {} is not owned by the monitor",
                node_name
            )));
        }
        if core.bg.graph().node(node)?.refcnt() > 1 {
            return Err(Error::generic(format!(
                "Block device {} is in use",
                core.bg.device_or_node_name(node)
            )));
        }
        core.monitor.retain(|&n| n != node);
        core.unref(node)
    }

    /// `blockdev-snapshot`: `external_snapshot_action`'s checks in its
    /// order, `bdrv_append` (the overlay takes `node` as its backing file
    /// and all of its parents), then `external_snapshot_commit`'s reopen
    /// of `node` read-only, whose failure QEMU ignores.
    pub fn blockdev_snapshot(&mut self, node: &str, overlay: &str) -> Result<()> {
        let core = &mut self.core;
        let old_top = core.lookup_bs(Some(node), Some(node))?;
        core.bg.check_op(old_top, BlockOp::ExternalSnapshot)?;
        let new_top = core.lookup_bs(Some(overlay), Some(overlay))?;
        // Only an overlay whose parents expect no valid image yet (a
        // mirror target) may get a backing file while in use.
        let (perm, _) = core.bg.cumulative_perms(new_top);
        if perm.contains(Perm::CONSISTENT_READ) {
            return Err(Error::generic("The overlay is already in use"));
        }
        let graph = core.bg.graph();
        let new = graph.node(new_top)?;
        if new.traits().is_filter {
            return Err(Error::generic("Filters cannot be used as overlays"));
        }
        if graph.cow_child(new_top).is_some() {
            return Err(Error::generic("The overlay already has a backing image"));
        }
        if !new.traits().supports_backing {
            return Err(Error::generic(
                "The overlay does not support backing images",
            ));
        }
        core.with_hooks(|bg, hooks| bg.append(hooks, new_top, old_top))?;
        core.refresh_filename(new_top)?;
        let _ = core.reopen_read_only(old_top, true);
        Ok(())
    }

    /// `object-del` of a throttle group.
    pub fn del_throttle_group(&mut self, id: &str) -> Result<()> {
        if !self.core.throttle_groups.contains_key(id) {
            return Err(Error::generic(format!("object '{id}' not found")));
        }
        let in_use = self
            .core
            .state
            .values()
            .any(|s| matches!(s, crate::DriverState::Throttle { group } if group == id));
        if in_use {
            return Err(Error::generic(format!(
                "object '{id}' is in use, can not be deleted"
            )));
        }
        self.core.throttle_groups.remove(id);
        Ok(())
    }

    /// `blockdev-reopen` of one or more nodes: every node is queued with
    /// the children that inherit from it (`bdrv_reopen_queue`, old options
    /// reset), then each named node's `backing` and `file` links change,
    /// then the queue's `read-only` flags, permissions checked with all of
    /// them pending. Nothing changes on error.
    pub fn blockdev_reopen(&mut self, options: &[Options]) -> Result<()> {
        // A failed reopen changes nothing: also the nodes a dropped link
        // closed come back with their driver state (QEMU frees them only
        // when the transaction commits).
        let saved = (self.core.bg.clone(), self.core.state.clone());
        let result = self.reopen_all(options);
        if result.is_err() {
            (self.core.bg, self.core.state) = saved;
        }
        result
    }

    fn reopen_all(&mut self, options: &[Options]) -> Result<()> {
        let mut plan = ReopenPlan::default();
        for opts in options {
            let node = self.reopened_node(opts)?;
            plan.queue(self.core.bg.graph(), node, opts, OldOptions::Reset)?;
        }
        // bdrv_reopen_prepare, node by node in queuing order: the links
        // first, then whatever the reopen leaves must be unchanged.
        for (node, opts) in plan.given() {
            self.reopen_links(opts, *node)?;
            refuse_changed_options(self.core.bg.graph(), *node, opts)?;
        }
        self.core.reopen(&plan)?;
        self.keep_reopen_options(&plan)
    }

    /// `bdrv_reopen_commit`: a node given options of its own keeps them as
    /// its options (child references left out), so a later filename (a raw
    /// node's `offset` and `size`) or reopen sees the new values.
    fn keep_reopen_options(&mut self, plan: &ReopenPlan) -> Result<()> {
        for (node, opts) in plan.given() {
            // A node the link changes closed has no options left to keep.
            if self.core.bg.graph().contains_node(*node) {
                self.core.bg.node_mut(*node)?.options = scalar_options(opts);
            }
        }
        Ok(())
    }

    fn reopened_node(&self, opts: &Options) -> Result<NodeId> {
        let name = opts.get_str("node-name").unwrap_or_default();
        self.core
            .find_node(name)
            .ok_or_else(|| Error::generic(format!("Failed to find node with node-name='{name}'")))
    }

    /// `bdrv_reopen_prepare` for one named node: its driver stays, and its
    /// `backing` and `file` links change as the options say.
    fn reopen_links(&mut self, opts: &Options, node: NodeId) -> Result<()> {
        let core = &mut self.core;
        let name = core.bg.graph().name(node).to_string();
        let backing_given = opts.get("backing").is_some();
        if !backing_given && core.has_backing_to_keep(node)? {
            // bdrv_reopen_prepare: blockdev-reopen keeps no old option, so
            // a node that has (or names) a backing file must say which.
            return Err(Error::generic(format!("backing is missing for '{name}'")));
        }
        let backing = match opts.get("backing") {
            Some(OptValue::Null) => Some(None),
            Some(OptValue::Str(r)) => Some(Some(core.lookup_bs(None, Some(r))?)),
            // Options for a backing child (`backing.*` once flattened) go
            // to the child that inherits from the node, or are left for
            // the check of unchanged options.
            _ => None,
        };
        if let Some(new) = backing {
            Self::reopen_backing_reference(core, node, &name, new)?;
        }
        if let Some(OptValue::Str(r)) = opts.get("file") {
            Self::reopen_file_reference(core, node, r)?;
        }
        Ok(())
    }

    /// `bdrv_reopen_parse_file_or_backing` for `backing` given as a node
    /// name or `null`: the current backing child (or the node under its
    /// implicit filters) changes nothing; otherwise the link changes unless
    /// a job's implicit node holds it.
    fn reopen_backing_reference(
        core: &mut BlockCore<F>,
        node: NodeId,
        name: &str,
        new: Option<NodeId>,
    ) -> Result<()> {
        if let Some(new) = new {
            Self::refuse_cycle(core, node, new, ChildSlot::Backing)?;
        }
        let g = core.bg.graph();
        let current = g.cow_node(node).or_else(|| g.filter_node(node));
        let unchanged = match (current, new) {
            (Some(c), Some(n)) => g.skip_implicit_filters(c) == n,
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            return Ok(());
        }
        if let Some(c) = current {
            if g.node(c)?.implicit {
                return Err(Error::generic(format!(
                    "Cannot replace implicit backing child of {name}"
                )));
            }
        }
        core.with_hooks(|bg, hooks| bg.set_file_or_backing(hooks, node, new, ChildSlot::Backing))?;
        Ok(())
    }

    /// `bdrv_reopen_parse_file_or_backing` checks first that the new child
    /// does not have `node` below it (before whether anything changes, or
    /// whether the old link is frozen).
    fn refuse_cycle(
        core: &BlockCore<F>,
        node: NodeId,
        child: NodeId,
        slot: ChildSlot,
    ) -> Result<()> {
        Ok(core.bg.graph().check_no_cycle(node, child, slot.name())?)
    }

    /// `bdrv_reopen_parse_file_or_backing` for `file` given as a node name
    /// (an inline `file` reopens the current child): the same node (or the
    /// one under the current child's implicit filters) changes nothing;
    /// another becomes the `file` child, refused if it would make a cycle.
    fn reopen_file_reference(core: &mut BlockCore<F>, node: NodeId, reference: &str) -> Result<()> {
        let new = core.lookup_bs(None, Some(reference))?;
        Self::refuse_cycle(core, node, new, ChildSlot::File)?;
        let g = core.bg.graph();
        let current = g
            .node(node)?
            .file()
            .and_then(|e| g.edge(e).ok())
            .map(|e| e.child());
        if current.is_some_and(|c| c == new || g.skip_implicit_filters(c) == new) {
            return Ok(());
        }
        core.with_hooks(|bg, hooks| {
            bg.set_file_or_backing(hooks, node, Some(new), ChildSlot::File)
        })?;
        Ok(())
    }
}
