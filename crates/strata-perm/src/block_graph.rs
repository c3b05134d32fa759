//! [`BlockGraph`]: a graph plus its op blockers, changed only through
//! transactions that keep permissions, frozen links and blockers consistent.

use crate::blockers::{BlockOp, Blocker, BlockerOwner, OpBlockers, OpSet};
use crate::error::{Error, ErrorKind, Result};
use crate::links::{AutoSkip, ChildSlot, Detach, ReplaceOptions};
use crate::refresh::{cumulative_perms, refresh};
use crate::{PermHooks, ReopenQueue};
use strata_graph::{
    EdgeId, Graph, NodeId, NodeSpec, Parent, Perm, Role, RootId, RootKind, UnrefOutcome,
};

/// The operations a backing node stays open to (`bdrv_backing_attach`).
const BACKING_ALLOWS: &[BlockOp] = &[
    BlockOp::CommitTarget,
    BlockOp::Stream,
    BlockOp::BackupSource,
    BlockOp::BackupTarget,
];

/// A block graph whose changes are transactions: on any error the graph,
/// the permissions, the frozen flags and the blockers are exactly as before.
#[derive(Clone, Debug, Hash)]
pub struct BlockGraph {
    graph: Graph,
    blockers: OpBlockers,
}

impl BlockGraph {
    /// An empty block graph; `seed` feeds generated node names.
    pub fn new(seed: u64) -> BlockGraph {
        BlockGraph {
            graph: Graph::new(seed),
            blockers: OpBlockers::default(),
        }
    }

    /// The graph, read-only.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The blockers, read-only.
    pub fn blockers(&self) -> &OpBlockers {
        &self.blockers
    }

    /// Node fields that are no graph structure (filenames, options, the
    /// implicit flag). Structure and permissions change only through the
    /// methods of this type.
    pub fn node_mut(&mut self, id: NodeId) -> Result<&mut strata_graph::Node> {
        Ok(self.graph.node_mut(id)?)
    }

    /// Runs `change` as one transaction: if it fails, everything is put
    /// back as it was.
    pub fn transaction<T>(
        &mut self,
        change: impl FnOnce(&mut BlockGraph) -> Result<T>,
    ) -> Result<T> {
        let saved = self.clone();
        let result = change(self);
        if result.is_err() {
            *self = saved;
        }
        result
    }

    // ----- nodes and roots ------------------------------------------------

    /// Creates a node holding one reference for its creator.
    pub fn add_node(&mut self, spec: NodeSpec) -> Result<NodeId> {
        Ok(self.graph.add_node(spec)?)
    }

    /// Creates a BlockBackend or job parent.
    pub fn add_root(&mut self, kind: RootKind) -> RootId {
        self.graph.add_root(kind)
    }

    /// Deletes a root parent after its edges are gone; lifts its blockers.
    pub fn remove_root(&mut self, id: RootId) -> Result<()> {
        self.graph.remove_root(id)?;
        self.blockers.unblock_everywhere(&BlockerOwner::Root(id));
        Ok(())
    }

    /// `bdrv_ref`.
    pub fn ref_node(&mut self, id: NodeId) -> Result<()> {
        Ok(self.graph.ref_node(id)?)
    }

    /// `bdrv_unref`: drops a reference; a node that reaches zero is closed,
    /// its children are detached and their permissions loosened (errors of a
    /// loosening refresh are ignored, as in QEMU).
    pub fn unref_node(&mut self, hooks: &dyn PermHooks, id: NodeId) -> Result<Vec<NodeId>> {
        let outcome = self.graph.unref_node(id)?;
        Ok(self.after_unref(hooks, outcome))
    }

    fn after_unref(&mut self, hooks: &dyn PermHooks, outcome: UnrefOutcome) -> Vec<NodeId> {
        for &node in &outcome.deleted {
            self.blockers.forget(node);
            self.blockers
                .unblock_everywhere(&BlockerOwner::Backing(node));
        }
        for &node in &outcome.lost_parents {
            self.refresh_ignoring_errors(hooks, node);
        }
        outcome.deleted
    }

    fn refresh_ignoring_errors(&mut self, hooks: &dyn PermHooks, node: NodeId) {
        let _ =
            self.transaction(|bg| refresh(&mut bg.graph, hooks, &[node], &ReopenQueue::default()));
    }

    // ----- attaching and detaching ------------------------------------------

    /// `bdrv_attach_child`: a node parent takes `child`; permissions come
    /// from the parent's driver and the parent's subtree is refreshed.
    pub fn attach_child(
        &mut self,
        hooks: &dyn PermHooks,
        parent: NodeId,
        child: NodeId,
        name: &str,
        role: Role,
    ) -> Result<EdgeId> {
        self.transaction(|bg| {
            let edge = bg.link(
                Parent::Node(parent),
                child,
                name,
                role,
                Perm::NONE,
                Perm::ALL,
            )?;
            refresh(&mut bg.graph, hooks, &[parent], &ReopenQueue::default())?;
            Ok(edge)
        })
    }

    /// `bdrv_root_attach_child`: a BlockBackend or job takes `child` with
    /// the given permissions; the child's subtree is refreshed.
    pub fn root_attach_child(
        &mut self,
        hooks: &dyn PermHooks,
        root: RootId,
        child: NodeId,
        name: &str,
        perm: Perm,
        shared: Perm,
    ) -> Result<EdgeId> {
        self.transaction(|bg| {
            let role = match bg.graph.root(root)?.kind() {
                RootKind::Backend { .. } => Role::FILTERED_PRIMARY,
                RootKind::Job { .. } => Role::NONE,
            };
            let edge = bg.link(Parent::Root(root), child, name, role, perm, shared)?;
            refresh(&mut bg.graph, hooks, &[child], &ReopenQueue::default())?;
            Ok(edge)
        })
    }

    /// `bdrv_unref_child` / `bdrv_root_unref_child`: removes a (not frozen)
    /// edge and loosens the child's permissions. Returns the deleted nodes.
    pub fn unref_child(&mut self, hooks: &dyn PermHooks, edge: EdgeId) -> Result<Vec<NodeId>> {
        // A transaction: `unlink` lifts the backing blocker before the graph
        // may refuse a frozen edge.
        let outcome = self.transaction(|bg| bg.unlink(edge))?;
        Ok(self.after_unref(hooks, outcome))
    }

    /// `bdrv_child_try_set_perm`: sets a root edge's permissions; a failed
    /// tightening is an error, a failed loosening is silently kept as it was.
    pub fn set_child_perm(
        &mut self,
        hooks: &dyn PermHooks,
        edge: EdgeId,
        perm: Perm,
        shared: Perm,
    ) -> Result<()> {
        let e = self.graph.edge(edge)?;
        let tightens = !(perm - e.perm).is_empty() || !(e.shared - shared).is_empty();
        let child = e.child();
        let result = self.transaction(|bg| {
            bg.graph.set_perms(edge, perm, shared)?;
            refresh(&mut bg.graph, hooks, &[child], &ReopenQueue::default())
        });
        match result {
            Err(err) if tightens => Err(err),
            _ => Ok(()),
        }
    }

    /// Refreshes the permissions of the subtrees of `starts` as one
    /// transaction (`bdrv_list_refresh_perms`).
    pub fn refresh_perms(&mut self, hooks: &dyn PermHooks, starts: &[NodeId]) -> Result<()> {
        self.transaction(|bg| refresh(&mut bg.graph, hooks, starts, &ReopenQueue::default()))
    }

    /// Changes read-only flags as one reopen: permissions are checked with
    /// the new flags pending (`bdrv_reopen_multiple`), then the flags are set.
    pub fn reopen_read_only(&mut self, hooks: &dyn PermHooks, queue: &ReopenQueue) -> Result<()> {
        self.transaction(|bg| {
            refresh(&mut bg.graph, hooks, &queue.nodes(), queue)?;
            for (node, read_only) in queue.iter() {
                bg.graph.node_mut(node)?.read_only = read_only;
            }
            Ok(())
        })
    }

    // ----- changing links ---------------------------------------------------

    /// `bdrv_set_backing_hd` ([`ChildSlot::Backing`]) or the `file` half of
    /// `bdrv_set_file_or_backing_noperm` ([`ChildSlot::File`]): replaces (or
    /// removes, with `None`) the parent's backing or file child. Only the
    /// in-memory graph changes.
    pub fn set_file_or_backing(
        &mut self,
        hooks: &dyn PermHooks,
        parent: NodeId,
        child: Option<NodeId>,
        slot: ChildSlot,
    ) -> Result<()> {
        self.transaction(|bg| {
            let node = bg.graph.node(parent)?;
            let traits = node.traits();
            let current = match slot {
                ChildSlot::Backing => node.backing(),
                ChildSlot::File => node.file(),
            };
            if let Some(edge) = current {
                let e = bg.graph.edge(edge)?;
                if e.frozen {
                    return Err(Error::new(ErrorKind::FrozenLinkChange {
                        link: e.name().to_string(),
                        parent: bg.graph.name(parent).to_string(),
                        child: bg.graph.name(e.child()).to_string(),
                    }));
                }
            }
            if slot == ChildSlot::Backing && !traits.is_filter && !traits.supports_backing {
                return Err(Error::new(ErrorKind::NoBackingSupport {
                    driver: node.driver().to_string(),
                    node: node.name().to_string(),
                }));
            }
            let role = if traits.is_filter {
                Role::FILTERED_PRIMARY
            } else if slot == ChildSlot::Backing {
                Role::COW
            } else {
                match current {
                    Some(edge) => bg.graph.edge(edge)?.role(),
                    None => return Err(Error::new(ErrorKind::NoFileChild)),
                }
            };
            // The old child is only unref'd once the new link is in place
            // and the permissions are refreshed (QEMU's transaction drops
            // its reference when it is finalized): a new child below the
            // old one, held only through it, must not be closed with it.
            let mut old_child = None;
            if let Some(edge) = current {
                let held = bg.graph.edge(edge)?.child();
                bg.graph.ref_node(held)?;
                old_child = Some((held, bg.unlink(edge)?));
            }
            if let Some(child) = child {
                bg.link(
                    Parent::Node(parent),
                    child,
                    slot.name(),
                    role,
                    Perm::NONE,
                    Perm::ALL,
                )?;
            }
            // The old child, parentless now, is refreshed in the same pass
            // (bdrv_reopen_multiple lists it): it no longer asks anything
            // of its own children that the new link may unshare.
            let mut starts = vec![parent];
            starts.extend(old_child.as_ref().map(|(held, _)| *held));
            refresh(&mut bg.graph, hooks, &starts, &ReopenQueue::default())?;
            if let Some((held, outcome)) = old_child {
                bg.after_unref(hooks, outcome);
                bg.unref_node(hooks, held)?;
            }
            Ok(())
        })
    }

    /// `bdrv_replace_node_common`: moves the parents of `from` to `to`.
    ///
    /// Job links and links inside `to`'s own subtree stay (skipped with
    /// [`AutoSkip::Skip`], an error with [`AutoSkip::Refuse`]). With
    /// [`Detach::Subchain`], the link that leads from `from`'s chain into
    /// `to` is removed as well (`bdrv_drop_filter`). Permissions of both
    /// subtrees are refreshed.
    pub fn replace_node(
        &mut self,
        hooks: &dyn PermHooks,
        from: NodeId,
        to: NodeId,
        options: ReplaceOptions,
    ) -> Result<()> {
        self.transaction(|bg| {
            bg.graph.ref_node(from)?;
            let to_cow_parent = if options.detach == Detach::Subchain {
                bg.chain_parent_of(from, to)
            } else {
                None
            };
            for edge in bg.graph.node(from)?.parents().to_vec() {
                let e = bg.graph.edge(edge)?;
                if !bg.should_update_child(edge, to) {
                    if options.auto_skip == AutoSkip::Skip {
                        continue;
                    }
                    return Err(Error::new(ErrorKind::ShouldNotChange {
                        link: e.name().to_string(),
                        node: bg.graph.name(from).to_string(),
                    }));
                }
                if e.frozen {
                    return Err(Error::new(ErrorKind::FrozenReplace {
                        link: e.name().to_string(),
                        node: bg.graph.name(from).to_string(),
                    }));
                }
                let outcome = bg.retarget(edge, to)?;
                bg.after_unref(hooks, outcome);
            }
            let mut lost = Vec::new();
            if let Some(parent) = to_cow_parent {
                if let Some(edge) = bg.graph.filter_or_cow_child(parent) {
                    lost.push(bg.unlink(edge)?);
                }
            }
            refresh(&mut bg.graph, hooks, &[from, to], &ReopenQueue::default())?;
            for outcome in lost {
                bg.after_unref(hooks, outcome);
            }
            bg.unref_node(hooks, from)?;
            Ok(())
        })
    }

    /// `bdrv_append(new_top, old_top)`: `new_top` (which has no backing yet)
    /// takes `old_top` as its backing child (or filtered child, for
    /// `commit_top`/`mirror_top`) and takes over all of `old_top`'s parents.
    pub fn append(
        &mut self,
        hooks: &dyn PermHooks,
        new_top: NodeId,
        old_top: NodeId,
    ) -> Result<()> {
        self.transaction(|bg| {
            let role = if bg.graph.node(new_top)?.traits().is_filter {
                Role::FILTERED_PRIMARY
            } else {
                Role::COW
            };
            bg.link(
                Parent::Node(new_top),
                old_top,
                "backing",
                role,
                Perm::NONE,
                Perm::ALL,
            )?;
            bg.replace_node(hooks, old_top, new_top, ReplaceOptions::REPLACE_NODE)
        })
    }

    /// `should_update_child`: a job link stays, and so does a link that
    /// lies in `to`'s own subtree (moving it would make a cycle).
    fn should_update_child(&self, edge: EdgeId, to: NodeId) -> bool {
        let Ok(e) = self.graph.edge(edge) else {
            return false;
        };
        if let Parent::Root(root) = e.parent() {
            if matches!(
                self.graph.root(root).map(|r| r.kind()),
                Ok(RootKind::Job { .. })
            ) {
                return false;
            }
        }
        !self.subtree_edges(to).contains(&edge)
    }

    fn subtree_edges(&self, top: NodeId) -> Vec<EdgeId> {
        let mut seen = vec![top];
        let mut queue = std::collections::VecDeque::from([top]);
        let mut edges = Vec::new();
        while let Some(node) = queue.pop_front() {
            for &edge in self.graph.node(node).map(|n| n.children()).unwrap_or(&[]) {
                edges.push(edge);
                let child = self.graph.edge(edge).map(|e| e.child());
                if let Ok(child) = child {
                    if !seen.contains(&child) {
                        seen.push(child);
                        queue.push_back(child);
                    }
                }
            }
        }
        edges
    }

    /// The node of `from`'s chain whose chain child is `to`.
    fn chain_parent_of(&self, from: NodeId, to: NodeId) -> Option<NodeId> {
        self.graph
            .chain(from)
            .find(|&n| self.graph.filter_or_cow_node(n) == Some(to))
    }

    // ----- structural primitives that keep backing blockers right ------------

    fn link(
        &mut self,
        parent: Parent,
        child: NodeId,
        name: &str,
        role: Role,
        perm: Perm,
        shared: Perm,
    ) -> Result<EdgeId> {
        let edge = self.graph.attach(parent, child, name, role, perm, shared)?;
        self.install_backing_blocker(edge)?;
        Ok(edge)
    }

    fn unlink(&mut self, edge: EdgeId) -> Result<UnrefOutcome> {
        self.lift_backing_blocker(edge)?;
        Ok(self.graph.detach(edge)?)
    }

    fn retarget(&mut self, edge: EdgeId, to: NodeId) -> Result<UnrefOutcome> {
        self.lift_backing_blocker(edge)?;
        let outcome = self.graph.retarget(edge, to)?;
        self.install_backing_blocker(edge)?;
        Ok(outcome)
    }

    fn install_backing_blocker(&mut self, edge: EdgeId) -> Result<()> {
        let e = self.graph.edge(edge)?;
        if let (Parent::Node(parent), true) = (e.parent(), e.role().contains(Role::COW)) {
            let reason = format!(
                "node is used as backing hd of '{}'",
                self.device_or_node_name(parent)
            );
            let blocker = Blocker {
                ops: OpSet::all().without(BACKING_ALLOWS),
                reason,
                owner: BlockerOwner::Backing(parent),
            };
            self.blockers.block(e.child(), blocker);
        }
        Ok(())
    }

    fn lift_backing_blocker(&mut self, edge: EdgeId) -> Result<()> {
        let e = self.graph.edge(edge)?;
        if let (Parent::Node(parent), true) = (e.parent(), e.role().contains(Role::COW)) {
            self.blockers
                .unblock(e.child(), &BlockerOwner::Backing(parent));
        }
        Ok(())
    }

    // ----- frozen links -------------------------------------------------------

    /// `bdrv_is_backing_chain_frozen`: an error naming the first frozen
    /// chain link from `top` down to (not including) `base`.
    pub fn check_chain_not_frozen(&self, top: NodeId, base: Option<NodeId>) -> Result<()> {
        for edge in self.chain_links(top, base) {
            let e = self.graph.edge(edge)?;
            if e.frozen {
                return Err(Error::new(ErrorKind::ChainFrozen {
                    link: e.name().to_string(),
                    parent: self.edge_parent_name(edge),
                    child: self.graph.name(e.child()).to_string(),
                }));
            }
        }
        Ok(())
    }

    /// `bdrv_freeze_backing_chain`: freezes every chain link from `top`
    /// down to and including the link into `base` (to the end with `None`),
    /// all or nothing.
    pub fn freeze_chain(&mut self, top: NodeId, base: Option<NodeId>) -> Result<()> {
        self.check_chain_not_frozen(top, base)?;
        let links = self.chain_links(top, base);
        for &edge in &links {
            let e = self.graph.edge(edge)?;
            if self.graph.node(e.child())?.never_freeze() {
                return Err(Error::new(ErrorKind::NeverFreeze {
                    link: e.name().to_string(),
                    child: self.graph.name(e.child()).to_string(),
                }));
            }
        }
        for edge in links {
            self.graph.set_frozen(edge, true)?;
        }
        Ok(())
    }

    /// `bdrv_unfreeze_backing_chain`: the inverse of
    /// [`BlockGraph::freeze_chain`] over the same range.
    pub fn unfreeze_chain(&mut self, top: NodeId, base: Option<NodeId>) -> Result<()> {
        for edge in self.chain_links(top, base) {
            debug_assert!(
                self.graph.edge(edge)?.frozen,
                "unfreezing a link that is not frozen"
            );
            self.graph.set_frozen(edge, false)?;
        }
        Ok(())
    }

    /// The chain links from `top` down to the one into `base`.
    fn chain_links(&self, top: NodeId, base: Option<NodeId>) -> Vec<EdgeId> {
        let mut links = Vec::new();
        let mut node = top;
        while Some(node) != base {
            let Some(edge) = self.graph.filter_or_cow_child(node) else {
                break;
            };
            links.push(edge);
            node = self
                .graph
                .edge(edge)
                .map(|e| e.child())
                .expect("chain edges are live");
        }
        links
    }

    fn edge_parent_name(&self, edge: EdgeId) -> String {
        match self.graph.edge(edge).map(|e| e.parent()) {
            Ok(Parent::Node(n)) => self.graph.name(n).to_string(),
            _ => String::new(),
        }
    }

    // ----- op blockers -----------------------------------------------------------

    /// Installs a blocker on every operation of `node` (`bdrv_op_block_all`).
    pub fn block_all(&mut self, node: NodeId, reason: &str, owner: BlockerOwner) {
        self.blockers.block(
            node,
            Blocker {
                ops: OpSet::all(),
                reason: reason.to_string(),
                owner,
            },
        );
    }

    /// Lifts `owner`'s blockers from `node`.
    pub fn unblock(&mut self, node: NodeId, owner: &BlockerOwner) {
        self.blockers.unblock(node, owner);
    }

    /// `bdrv_op_is_blocked`: `Node '<name>' is busy: <reason>` if `op` is
    /// blocked on `node`.
    pub fn check_op(&self, node: NodeId, op: BlockOp) -> Result<()> {
        match self.blockers.first_blocking(node, op) {
            None => Ok(()),
            Some(blocker) => Err(Error::new(ErrorKind::Busy {
                name: self.device_or_node_name(node),
                reason: blocker.reason.clone(),
            })),
        }
    }

    /// `bdrv_get_device_or_node_name`: the name of the first named
    /// BlockBackend among the parents, else the node name.
    pub fn device_or_node_name(&self, node: NodeId) -> String {
        self.device_name(node)
            .unwrap_or_else(|| self.graph.name(node).to_string())
    }

    /// `bdrv_get_device_name`: the first named BlockBackend parent's name.
    pub fn device_name(&self, node: NodeId) -> Option<String> {
        let parents = self.graph.node(node).ok()?.parents();
        parents
            .iter()
            .find_map(|&edge| match self.graph.edge(edge).ok()?.parent() {
                Parent::Root(root) => match self.graph.root(root).ok()?.kind() {
                    RootKind::Backend { name: Some(name) } if !name.is_empty() => {
                        Some(name.clone())
                    }
                    _ => None,
                },
                Parent::Node(_) => None,
            })
    }

    /// The cumulative permissions of a node.
    pub fn cumulative_perms(&self, node: NodeId) -> (Perm, Perm) {
        cumulative_perms(&self.graph, node)
    }
}
