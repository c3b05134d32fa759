//! The graph value: nodes, edges and non-node parents, and the structural
//! mutations that everything else is built from. None of these checks
//! permissions or frozen links; strata-perm wraps them in transactions.

use crate::arena::{Arena, RawId};
use crate::bits::{Perm, Role};
use crate::error::{Error, ErrorKind, Result};
use crate::names::{check_user_node_name, NameGenerator};
use crate::options::Options;
use smallvec::SmallVec;
use std::hash::{Hash, Hasher};

/// A node (`BlockDriverState`) id. Stale ids are errors, never aliases.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct NodeId(RawId);

/// An edge (`BdrvChild`) id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EdgeId(RawId);

/// A non-node parent (a BlockBackend or a block job) id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RootId(RawId);

/// Who holds an edge.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Parent {
    /// Another node (child class `child_of_bds`).
    Node(NodeId),
    /// A BlockBackend or a job (child classes `child_root`, `child_job`).
    Root(RootId),
}

/// What the graph needs to know about a node's driver, without knowing the
/// driver: which of its children form the backing chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct DriverTraits {
    /// `drv->is_filter`: the node shows exactly its filtered child's data.
    pub is_filter: bool,
    /// `drv->supports_backing`: the node may have a COW (backing) child.
    pub supports_backing: bool,
    /// `drv->filtered_child_is_backing`: the filtered child sits in
    /// `bs->backing` (only `commit_top` and `mirror_top`).
    pub filtered_child_is_backing: bool,
    /// `drv->protocol_name` is set: a protocol driver such as `file`.
    pub is_protocol: bool,
}

/// What a non-node parent is.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum RootKind {
    /// A BlockBackend: a named device (`Some`) or an anonymous one (an
    /// export's, a job's, ...).
    Backend {
        /// The BlockBackend's name, if it has one.
        name: Option<String>,
    },
    /// A block job holding job children (`main node`, `base`, ...).
    Job {
        /// The job type as QEMU names it (`stream`, `commit`, `mirror`).
        job_type: String,
        /// The job id.
        id: String,
    },
}

/// A non-node parent and its children.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Root {
    kind: RootKind,
    children: SmallVec<[EdgeId; 4]>,
}

impl Root {
    /// What this parent is.
    pub fn kind(&self) -> &RootKind {
        &self.kind
    }

    /// Its edges, newest first.
    pub fn children(&self) -> &[EdgeId] {
        &self.children
    }
}

/// The description of a node to create.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NodeSpec {
    name: Option<String>,
    driver: String,
    traits: DriverTraits,
    read_only: bool,
    implicit: bool,
    never_freeze: bool,
    options: Options,
    options_path: Vec<String>,
}

impl NodeSpec {
    /// A node of `driver`, writable, explicit, with no options.
    pub fn new(driver: impl Into<String>, traits: DriverTraits) -> NodeSpec {
        NodeSpec {
            name: None,
            driver: driver.into(),
            traits,
            read_only: false,
            implicit: false,
            never_freeze: false,
            options: Options::new(),
            options_path: Vec::new(),
        }
    }

    /// The user's node name (checked by `add_node`); none means generated.
    pub fn name(mut self, name: impl Into<String>) -> NodeSpec {
        self.name = Some(name.into());
        self
    }

    /// Opened read-only.
    pub fn read_only(mut self, read_only: bool) -> NodeSpec {
        self.read_only = read_only;
        self
    }

    /// Inserted automatically by a job (no `filter-node-name`).
    pub fn implicit(mut self, implicit: bool) -> NodeSpec {
        self.implicit = implicit;
        self
    }

    /// Links to this node may never be frozen.
    pub fn never_freeze(mut self, never_freeze: bool) -> NodeSpec {
        self.never_freeze = never_freeze;
        self
    }

    /// The driver options (used to compute filenames).
    pub fn options(mut self, options: Options) -> NodeSpec {
        self.options = options;
        self
    }

    /// The keys under which the options were nested in the dictionary
    /// they were opened from (`["file"]` for a `blockdev-add`'s file child).
    pub fn options_path(mut self, path: Vec<String>) -> NodeSpec {
        self.options_path = path;
        self
    }
}

/// What `bdrv_reopen_queue_child` reads of a node besides the graph: the
/// parent it inherits its options from and its `read-only` option, given
/// and effective. A node whose parent opened it with its own options (a
/// child given inline, or a backing file named in a header) is reopened
/// with that parent, inheriting from the parent's new options; a node
/// opened by reference keeps its own.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Inheritance {
    /// `bs->inherits_from`.
    pub inherits_from: Option<NodeId>,
    /// `read-only` in `bs->explicit_options` (what the user gave; a
    /// `blockdev-add` root gets QEMU's explicit default, `false`).
    pub explicit_read_only: Option<bool>,
    /// `read-only` in `bs->options`: given, inherited or defaulted at open,
    /// and absent after a reopen that neither gave nor inherited one.
    pub read_only_option: Option<bool>,
    /// `BDRV_O_UNMAP`, from `discard` at open: as given (`unmap`), else
    /// QEMU's default, `unmap` for a child its parent opened
    /// (`bdrv_inherited_options`) and `ignore` for a node opened on its
    /// own. Fixed at open, whatever later happens to `inherits_from`.
    pub discard_unmap: bool,
}

/// A node (`BlockDriverState`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Node {
    name: String,
    driver: String,
    traits: DriverTraits,
    /// Whether the node is open read-only.
    pub read_only: bool,
    /// Whether a job inserted this node implicitly.
    pub implicit: bool,
    never_freeze: bool,
    /// The driver's options as given at open (strong options included).
    pub options: Options,
    /// The keys under which those options were nested in the dictionary
    /// they were opened from (`["file"]`, `["backing", "file"]`): QEMU's
    /// copies of that dictionary on the way down decide the order of the
    /// node's flattened keys, and so of its `json:` name.
    pub options_path: Vec<String>,
    /// `bs->filename` as `bdrv_refresh_filename` last computed it.
    pub filename: String,
    /// `bs->exact_filename`.
    pub exact_filename: String,
    /// `bs->full_open_options`.
    pub full_open_options: Options,
    /// Where the node's options came from, as a reopen needs to know.
    pub inheritance: Inheritance,
    children: SmallVec<[EdgeId; 4]>,
    parents: SmallVec<[EdgeId; 4]>,
    file: Option<EdgeId>,
    backing: Option<EdgeId>,
    refcnt: u32,
}

impl Node {
    /// The node name (user-given or generated `#block...`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The driver's format name (`qcow2`, `file`, `copy-on-read`, ...).
    pub fn driver(&self) -> &str {
        &self.driver
    }
    /// What the graph knows of the driver.
    pub fn traits(&self) -> DriverTraits {
        self.traits
    }
    /// Whether links to this node may never be frozen.
    pub fn never_freeze(&self) -> bool {
        self.never_freeze
    }
    /// Child edges, newest first (QEMU inserts at the head).
    pub fn children(&self) -> &[EdgeId] {
        &self.children
    }
    /// Parent edges, newest first.
    pub fn parents(&self) -> &[EdgeId] {
        &self.parents
    }
    /// `bs->file`.
    pub fn file(&self) -> Option<EdgeId> {
        self.file
    }
    /// `bs->backing`.
    pub fn backing(&self) -> Option<EdgeId> {
        self.backing
    }
    /// References held on the node (edges and owners such as the monitor).
    pub fn refcnt(&self) -> u32 {
        self.refcnt
    }
}

/// An edge (`BdrvChild`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Edge {
    parent: Parent,
    child: NodeId,
    name: String,
    role: Role,
    /// Permissions the parent takes on the child.
    pub perm: Perm,
    /// Permissions the parent lets other parents take.
    pub shared: Perm,
    /// Whether the link may not be changed.
    pub frozen: bool,
}

impl Edge {
    /// The holder of the edge.
    pub fn parent(&self) -> Parent {
        self.parent
    }
    /// The node the edge points to.
    pub fn child(&self) -> NodeId {
        self.child
    }
    /// The child name (`file`, `backing`, `main node`, `root`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The role bits.
    pub fn role(&self) -> Role {
        self.role
    }
}

/// What [`Graph::unref_node`] did.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct UnrefOutcome {
    /// Nodes that were deleted, in deletion order.
    pub deleted: Vec<NodeId>,
    /// Surviving nodes that lost a parent on the way (their permissions
    /// need a refresh).
    pub lost_parents: Vec<NodeId>,
}

/// The block graph.
#[derive(Clone, Debug)]
pub struct Graph {
    nodes: Arena<Node>,
    edges: Arena<Edge>,
    roots: Arena<Root>,
    node_order: Vec<NodeId>,
    root_order: Vec<RootId>,
    names: NameGenerator,
}

impl Graph {
    /// An empty graph whose generated node names use `seed`.
    pub fn new(seed: u64) -> Graph {
        Graph {
            nodes: Arena::default(),
            edges: Arena::default(),
            roots: Arena::default(),
            node_order: Vec::new(),
            root_order: Vec::new(),
            names: NameGenerator::new(seed),
        }
    }

    /// Whether `other` is a clone of this graph that neither graph has
    /// changed since: the same nodes, edges and roots (the very values,
    /// not equal copies) in the same order. A caller that keeps a clone
    /// learns cheaply that nothing it computed from the graph is stale.
    pub fn shares_all(&self, other: &Graph) -> bool {
        self.nodes.shares_all(&other.nodes)
            && self.edges.shares_all(&other.edges)
            && self.roots.shares_all(&other.roots)
            && self.node_order == other.node_order
            && self.root_order == other.root_order
    }

    // ----- lookups -------------------------------------------------------

    /// The node `id`.
    pub fn node(&self, id: NodeId) -> Result<&Node> {
        self.nodes.get(id.0).ok_or(Error::new(ErrorKind::StaleId))
    }

    /// Mutable access to the node `id` (flags, options, filenames).
    pub fn node_mut(&mut self, id: NodeId) -> Result<&mut Node> {
        self.nodes
            .get_mut(id.0)
            .ok_or(Error::new(ErrorKind::StaleId))
    }

    /// The edge `id`.
    pub fn edge(&self, id: EdgeId) -> Result<&Edge> {
        self.edges.get(id.0).ok_or(Error::new(ErrorKind::StaleId))
    }

    /// The non-node parent `id`.
    pub fn root(&self, id: RootId) -> Result<&Root> {
        self.roots.get(id.0).ok_or(Error::new(ErrorKind::StaleId))
    }

    /// Whether `id` names a live node.
    pub fn contains_node(&self, id: NodeId) -> bool {
        self.nodes.contains(id.0)
    }

    /// Looks a node up by name (`bdrv_find_node`).
    pub fn find_node(&self, name: &str) -> Option<NodeId> {
        self.node_order
            .iter()
            .copied()
            .find(|&id| self.nodes.get(id.0).is_some_and(|n| n.name == name))
    }

    /// Every node in creation order (`graph_bdrv_states`).
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.node_order.iter().copied()
    }

    /// Every non-node parent in creation order.
    pub fn roots(&self) -> impl Iterator<Item = RootId> + '_ {
        self.root_order.iter().copied()
    }

    /// The edges a parent holds, newest first.
    pub fn children_of(&self, parent: Parent) -> Result<&[EdgeId]> {
        match parent {
            Parent::Node(id) => Ok(self.node(id)?.children()),
            Parent::Root(id) => Ok(self.root(id)?.children()),
        }
    }

    /// The node name of `id`, for messages.
    pub fn name(&self, id: NodeId) -> &str {
        self.nodes.get(id.0).map_or("", |n| n.name.as_str())
    }

    /// How QEMU describes the holder of `edge` in messages
    /// (`get_parent_desc`): `node 'x'`, `block device 'x'`,
    /// `an unnamed block device`, `stream job 'j'`.
    pub fn parent_description(&self, edge: EdgeId) -> Result<String> {
        Ok(match self.edge(edge)?.parent {
            Parent::Node(id) => format!("node '{}'", self.node(id)?.name),
            Parent::Root(id) => match &self.root(id)?.kind {
                RootKind::Backend { name: Some(name) } => format!("block device '{name}'"),
                RootKind::Backend { name: None } => "an unnamed block device".to_string(),
                RootKind::Job { job_type, id } => format!("{job_type} job '{id}'"),
            },
        })
    }

    // ----- nodes and roots ------------------------------------------------

    /// `bdrv_assign_node_name`'s checks of a user node name (well formed,
    /// not taken), for a driver that runs them before opening anything.
    pub fn check_node_name(&self, name: &str) -> Result<()> {
        check_user_node_name(name, |n| self.find_node(n).is_some())
    }

    /// Creates a node with one reference (its creator's).
    ///
    /// A user name is checked as `bdrv_assign_node_name` does; without one,
    /// the node gets a generated `#block` name.
    pub fn add_node(&mut self, spec: NodeSpec) -> Result<NodeId> {
        let name = match spec.name {
            Some(name) => {
                self.check_node_name(&name)?;
                name
            }
            None => self.names.next_name(),
        };
        let node = Node {
            name,
            driver: spec.driver,
            traits: spec.traits,
            read_only: spec.read_only,
            implicit: spec.implicit,
            never_freeze: spec.never_freeze,
            options: spec.options,
            options_path: spec.options_path,
            filename: String::new(),
            exact_filename: String::new(),
            full_open_options: Options::new(),
            inheritance: Inheritance::default(),
            children: SmallVec::new(),
            parents: SmallVec::new(),
            file: None,
            backing: None,
            refcnt: 1,
        };
        let id = NodeId(self.nodes.insert(node));
        self.node_order.push(id);
        Ok(id)
    }

    /// Creates a non-node parent (a BlockBackend or a job).
    pub fn add_root(&mut self, kind: RootKind) -> RootId {
        let id = RootId(self.roots.insert(Root {
            kind,
            children: SmallVec::new(),
        }));
        self.root_order.push(id);
        id
    }

    /// Deletes a non-node parent that holds no edge any more.
    pub fn remove_root(&mut self, id: RootId) -> Result<()> {
        if !self.root(id)?.children.is_empty() {
            return Err(Error::new(ErrorKind::InUse("root parent".into())));
        }
        self.roots.remove(id.0);
        self.root_order.retain(|&r| r != id);
        Ok(())
    }

    /// Takes a reference on a node (`bdrv_ref`).
    pub fn ref_node(&mut self, id: NodeId) -> Result<()> {
        self.node_mut(id)?.refcnt += 1;
        Ok(())
    }

    /// Drops a reference (`bdrv_unref`); at zero the node is deleted and
    /// its children are detached and unreferenced in list order, as
    /// `bdrv_close` does.
    pub fn unref_node(&mut self, id: NodeId) -> Result<UnrefOutcome> {
        self.all_or_nothing(|g| {
            let mut outcome = UnrefOutcome::default();
            g.unref_into(id, &mut outcome)?;
            outcome.lost_parents.retain(|n| g.contains_node(*n));
            outcome.lost_parents.dedup();
            Ok(outcome)
        })
    }

    /// Runs `change`; on error the graph is put back as it was, so that a
    /// deletion cascade refused half-way leaves nothing half-deleted.
    fn all_or_nothing<T>(&mut self, change: impl FnOnce(&mut Graph) -> Result<T>) -> Result<T> {
        let saved = self.clone();
        let result = change(self);
        if result.is_err() {
            *self = saved;
        }
        result
    }

    fn unref_into(&mut self, id: NodeId, outcome: &mut UnrefOutcome) -> Result<()> {
        let node = self.node_mut(id)?;
        node.refcnt -= 1;
        if node.refcnt > 0 {
            return Ok(());
        }
        if !node.parents.is_empty() {
            return Err(Error::new(ErrorKind::InUse(format!(
                "node '{}'",
                node.name
            ))));
        }
        // Closing a node drops its children (`bdrv_close`), which QEMU
        // asserts are not frozen: refuse rather than lose a frozen link.
        let node = self.node(id)?;
        if let Some(edge) = node
            .children
            .iter()
            .find_map(|&e| self.edge(e).ok().filter(|edge| edge.frozen))
        {
            return Err(Error::new(ErrorKind::FrozenLink(edge.name.clone())));
        }
        let children: Vec<EdgeId> = node.children.to_vec();
        for edge in children {
            let child = self.unlink_edge(edge)?;
            outcome.lost_parents.push(child);
            self.unref_into(child, outcome)?;
        }
        self.nodes.remove(id.0);
        self.node_order.retain(|&n| n != id);
        outcome.deleted.push(id);
        Ok(())
    }

    // ----- edges -----------------------------------------------------------

    /// Attaches `child` to `parent` (`bdrv_attach_child_common` without the
    /// permission refresh): the edge takes a reference on the child and is
    /// inserted at the head of both lists. A node parent's `file`/`backing`
    /// slot is set by the role, as `bdrv_child_cb_attach` does.
    pub fn attach(
        &mut self,
        parent: Parent,
        child: NodeId,
        name: &str,
        role: Role,
        perm: Perm,
        shared: Perm,
    ) -> Result<EdgeId> {
        self.node(child)?;
        if let Parent::Node(parent_id) = parent {
            self.check_no_cycle(parent_id, child, name)?;
        } else if let Parent::Root(root) = parent {
            self.root(root)?;
        }
        let edge = Edge {
            parent,
            child,
            name: name.to_string(),
            role,
            perm,
            shared,
            frozen: false,
        };
        let id = EdgeId(self.edges.insert(edge));
        self.ref_node(child)?;
        self.link_edge(id)?;
        Ok(id)
    }

    /// Removes an edge and drops its reference on the child
    /// (`bdrv_unref_child`); returns what the unref did. The edge must not
    /// be frozen.
    pub fn detach(&mut self, edge: EdgeId) -> Result<UnrefOutcome> {
        if self.edge(edge)?.frozen {
            return Err(Error::new(ErrorKind::FrozenLink(
                self.edge(edge)?.name.clone(),
            )));
        }
        self.all_or_nothing(|g| {
            if let Parent::Node(parent) = g.edge(edge)?.parent {
                g.unset_inherits_from(parent, edge)?;
            }
            let child = g.unlink_edge(edge)?;
            let mut outcome = UnrefOutcome {
                deleted: Vec::new(),
                lost_parents: vec![child],
            };
            g.unref_into(child, &mut outcome)?;
            outcome.lost_parents.retain(|n| g.contains_node(*n));
            Ok(outcome)
        })
    }

    /// `bdrv_unset_inherits_from`: when the last link from `root` to the
    /// child of `edge` goes, the child stops inheriting from `root`, and so
    /// does every node below it that inherited from `root`.
    fn unset_inherits_from(&mut self, root: NodeId, edge: EdgeId) -> Result<()> {
        let child = self.edge(edge)?.child;
        if self.node(child)?.inheritance.inherits_from == Some(root) {
            let other_link = self
                .node(root)?
                .children
                .iter()
                .any(|&e| e != edge && self.edge(e).is_ok_and(|c| c.child == child));
            if !other_link {
                self.node_mut(child)?.inheritance.inherits_from = None;
            }
        }
        let grandchildren: Vec<EdgeId> = self.node(child)?.children.iter().copied().collect();
        for grandchild in grandchildren {
            self.unset_inherits_from(root, grandchild)?;
        }
        Ok(())
    }

    /// Points an edge at another node (`bdrv_replace_child_noperm`): the
    /// edge moves to the head of the new child's parents and of its
    /// parent's children, takes a reference on the new child and drops the
    /// one on the old child. The edge must not be frozen.
    pub fn retarget(&mut self, edge: EdgeId, new_child: NodeId) -> Result<UnrefOutcome> {
        self.node(new_child)?;
        if self.edge(edge)?.frozen {
            return Err(Error::new(ErrorKind::FrozenLink(
                self.edge(edge)?.name.clone(),
            )));
        }
        self.all_or_nothing(|g| {
            let old_child = g.unlist_edge(edge)?;
            g.edges.get_mut(edge.0).expect("edge checked above").child = new_child;
            g.ref_node(new_child)?;
            g.link_edge(edge)?;
            let mut outcome = UnrefOutcome {
                deleted: Vec::new(),
                lost_parents: vec![old_child],
            };
            g.unref_into(old_child, &mut outcome)?;
            outcome.lost_parents.retain(|n| g.contains_node(*n));
            Ok(outcome)
        })
    }

    /// Sets an edge's permissions.
    pub fn set_perms(&mut self, edge: EdgeId, perm: Perm, shared: Perm) -> Result<()> {
        let e = self
            .edges
            .get_mut(edge.0)
            .ok_or(Error::new(ErrorKind::StaleId))?;
        e.perm = perm;
        e.shared = shared;
        Ok(())
    }

    /// Sets an edge's frozen flag (strata-perm checks the rules).
    pub fn set_frozen(&mut self, edge: EdgeId, frozen: bool) -> Result<()> {
        self.edges
            .get_mut(edge.0)
            .ok_or(Error::new(ErrorKind::StaleId))?
            .frozen = frozen;
        Ok(())
    }

    /// Refuses to make `child` a `link` child of `parent` when `parent` is
    /// `child` or lies below it: "Making '<child>' a <link> child of
    /// '<parent>' would create a cycle".
    pub fn check_no_cycle(&self, parent: NodeId, child: NodeId, link: &str) -> Result<()> {
        let parent_name = &self.node(parent)?.name;
        if !self.has_descendant(child, parent) {
            return Ok(());
        }
        Err(Error::new(ErrorKind::Cycle {
            child: self.name(child).to_string(),
            link: link.to_string(),
            parent: parent_name.clone(),
        }))
    }

    /// Whether `descendant` is `ancestor` or reachable below it
    /// (`bdrv_recurse_has_child`).
    pub fn has_descendant(&self, ancestor: NodeId, descendant: NodeId) -> bool {
        if ancestor == descendant {
            return true;
        }
        let Ok(node) = self.node(ancestor) else {
            return false;
        };
        node.children.iter().any(|&e| {
            self.edge(e)
                .is_ok_and(|edge| self.has_descendant(edge.child, descendant))
        })
    }

    fn link_edge(&mut self, id: EdgeId) -> Result<()> {
        let edge = self.edge(id)?.clone();
        self.node_mut(edge.child)?.parents.insert(0, id);
        match edge.parent {
            Parent::Root(root) => {
                self.roots
                    .get_mut(root.0)
                    .ok_or(Error::new(ErrorKind::StaleId))?
                    .children
                    .insert(0, id);
            }
            Parent::Node(parent) => {
                let node = self.node_mut(parent)?;
                node.children.insert(0, id);
                assign_chain_slot(node, id, edge.role);
            }
        }
        Ok(())
    }

    /// Takes an edge out of both lists and frees it.
    fn unlink_edge(&mut self, id: EdgeId) -> Result<NodeId> {
        let child = self.unlist_edge(id)?;
        self.edges.remove(id.0);
        Ok(child)
    }

    /// Takes an edge out of its child's parents and its parent's children
    /// (clearing a `file`/`backing` slot it filled), keeping the edge itself.
    fn unlist_edge(&mut self, id: EdgeId) -> Result<NodeId> {
        let edge = self.edge(id)?.clone();
        self.node_mut(edge.child)?.parents.retain(|e| *e != id);
        match edge.parent {
            Parent::Root(root) => {
                self.roots
                    .get_mut(root.0)
                    .ok_or(Error::new(ErrorKind::StaleId))?
                    .children
                    .retain(|e| *e != id);
            }
            Parent::Node(parent) => {
                let node = self.node_mut(parent)?;
                node.children.retain(|e| *e != id);
                if node.file == Some(id) {
                    node.file = None;
                }
                if node.backing == Some(id) {
                    node.backing = None;
                }
            }
        }
        Ok(edge.child)
    }
}

/// `bdrv_child_cb_attach`: which slot (`file` or `backing`) an edge fills.
fn assign_chain_slot(node: &mut Node, edge: EdgeId, role: Role) {
    if node.traits.is_filter || role.contains(Role::FILTERED) {
        if role.contains(Role::PRIMARY) {
            if node.traits.filtered_child_is_backing {
                node.backing = Some(edge);
            } else {
                node.file = Some(edge);
            }
        }
    } else if role.contains(Role::COW) {
        node.backing = Some(edge);
    } else if role.contains(Role::PRIMARY) {
        node.file = Some(edge);
    }
}

/// A canonical hash: by node names and child names, independent of the
/// arena slots that values happen to occupy.
impl Hash for Graph {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for &id in &self.node_order {
            let node = &self.nodes.get(id.0).expect("ordered nodes are live");
            (
                &node.name,
                &node.driver,
                node.traits,
                node.read_only,
                node.implicit,
                node.never_freeze,
            )
                .hash(state);
            (&node.options, &node.filename, node.refcnt).hash(state);
            let inheritance = node.inheritance;
            (
                inheritance.inherits_from.map(|parent| self.name(parent)),
                inheritance.explicit_read_only,
                inheritance.read_only_option,
            )
                .hash(state);
            for &e in &node.children {
                self.hash_edge(e, state);
            }
        }
        for &id in &self.root_order {
            let root = self.roots.get(id.0).expect("ordered roots are live");
            root.kind.hash(state);
            for &e in &root.children {
                self.hash_edge(e, state);
            }
        }
        self.names.hash(state);
    }
}

impl Graph {
    /// Feeds `state` the ids the graph's values hold and what decides the
    /// ids of values added from now on: every live node, edge and root by
    /// id, and each arena's generation counter. The canonical hash leaves
    /// ids out, but whoever holds ids (a job's nodes, the blockers) hashes
    /// them: two graphs equal in both hashes give the same ids to what
    /// they add next (see [`Arena`]), so ids held later hash the same too.
    pub fn hash_ids<H: Hasher>(&self, state: &mut H) {
        self.node_order.hash(state);
        for &id in &self.node_order {
            let node = self.nodes.get(id.0).expect("ordered nodes are live");
            node.children.hash(state);
        }
        self.root_order.hash(state);
        for &id in &self.root_order {
            let root = self.roots.get(id.0).expect("ordered roots are live");
            root.children.hash(state);
        }
        self.nodes.hash_layout(state);
        self.edges.hash_layout(state);
        self.roots.hash_layout(state);
    }

    fn hash_edge<H: Hasher>(&self, e: EdgeId, state: &mut H) {
        let edge = self.edges.get(e.0).expect("listed edges are live");
        (
            &edge.name,
            self.name(edge.child),
            edge.role,
            edge.perm,
            edge.shared,
            edge.frozen,
        )
            .hash(state);
    }
}
