//! Which nodes a reopen reopens and with which `read-only`, as
//! `bdrv_reopen_queue_child` decides, and the reopen of that queue
//! (`bdrv_reopen_multiple`: permissions with the new flags pending, then the
//! drivers, then the nodes' options).
//!
//! A node reopens the children it opened with options of its own (QEMU's
//! `bs->inherits_from`), unless the reopen names another node (or `null`)
//! for that child; children opened by reference are left alone. A child's
//! `read-only` is, by precedence: given for it, its own earlier explicit
//! option (when old options are kept, or when the reopen names the child
//! by reference), inherited from the parent's new options (a backing child
//! defaults to read-only), its earlier effective option (when old options
//! are kept). Absent, the node becomes writable.

use crate::core::BlockCore;
use crate::error::{Error, Result};
use crate::files::Files;
use crate::state::DriverState;
use strata_formats::Access;
use strata_graph::{Graph, NodeId, OptValue, Options, Role};

/// Whether options a reopen does not give keep their old values
/// (`keep_old_opts`): `bdrv_reopen_set_read_only` keeps them,
/// `blockdev-reopen` resets them to their defaults.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum OldOptions {
    /// Options not given keep their values.
    Keep,
    /// Options not given get their defaults.
    Reset,
}

/// One queued node (`BlockReopenQueueEntry`) as far as `read-only` goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct QueuedNode {
    node: NodeId,
    /// `read-only` in the node's new options.
    read_only_option: Option<bool>,
    /// `read-only` in the node's new explicit options.
    explicit_read_only: Option<bool>,
}

impl QueuedNode {
    fn read_only(&self) -> bool {
        self.read_only_option == Some(true)
    }
}

/// What a child being queued inherits: its parent's new `read-only` option
/// and the role of the link.
#[derive(Clone, Copy, Debug)]
struct FromParent {
    read_only_option: Option<bool>,
    role: Role,
}

/// A reopen queue (`BlockReopenQueue`), in queuing order.
#[derive(Clone, Default, Debug)]
pub(crate) struct ReopenPlan {
    queued: Vec<QueuedNode>,
    /// The queued nodes given options of their own (the named nodes and
    /// the children given inline), in queuing order, with those options.
    given: Vec<(NodeId, Options)>,
}

impl ReopenPlan {
    /// `bdrv_reopen_queue`: queues `node` with the options `given`, and the
    /// children that inherit from it.
    pub(crate) fn queue(
        &mut self,
        graph: &Graph,
        node: NodeId,
        given: &Options,
        old: OldOptions,
    ) -> Result<()> {
        self.queue_node(graph, node, given, None, old)
    }

    fn queue_node(
        &mut self,
        graph: &Graph,
        node: NodeId,
        given: &Options,
        parent: Option<FromParent>,
        old: OldOptions,
    ) -> Result<()> {
        let inheritance = graph.node(node)?.inheritance;
        let earlier = self.queued.iter().position(|q| q.node == node);
        let mut read_only = read_only_of(given);
        read_only = read_only.or(match (earlier, old) {
            (Some(i), _) => self.queued[i].explicit_read_only,
            (None, OldOptions::Keep) => inheritance.explicit_read_only,
            (None, OldOptions::Reset) => None,
        });
        let explicit_read_only = read_only;
        if let Some(parent) = parent {
            read_only = read_only.or(if parent.role.contains(Role::COW) {
                // bdrv_inherited_options: backing files default to read-only.
                Some(true)
            } else {
                parent.read_only_option
            });
        }
        if old == OldOptions::Keep {
            read_only = read_only.or(inheritance.read_only_option);
        }
        let entry = QueuedNode {
            node,
            read_only_option: read_only,
            explicit_read_only,
        };
        match earlier {
            Some(i) => self.queued[i] = entry,
            None => self.queued.push(entry),
        }
        if !given.is_empty() {
            self.given.push((node, given.clone()));
        }
        let from_here = |role| FromParent {
            read_only_option: read_only,
            role,
        };
        for &edge in graph.node(node)?.children() {
            let link = graph.edge(edge)?;
            let child = link.child();
            if graph.node(child)?.inheritance.inherits_from != Some(node) {
                continue;
            }
            match given.get(link.name()) {
                // Named by reference: only the current child is reopened,
                // with its own options kept.
                Some(OptValue::Str(name)) if name == graph.name(child) => self.queue_node(
                    graph,
                    child,
                    &Options::new(),
                    Some(from_here(link.role())),
                    OldOptions::Keep,
                )?,
                Some(OptValue::Dict(child_options)) => self.queue_node(
                    graph,
                    child,
                    child_options,
                    Some(from_here(link.role())),
                    old,
                )?,
                Some(_) => {}
                None => self.queue_node(
                    graph,
                    child,
                    &Options::new(),
                    Some(from_here(link.role())),
                    old,
                )?,
            }
        }
        Ok(())
    }

    /// The queued nodes given options of their own, in the order
    /// `bdrv_reopen_multiple` prepares them.
    pub(crate) fn given(&self) -> &[(NodeId, Options)] {
        &self.given
    }

    /// The permission layer's view: every queued node with its new flag.
    fn read_only_queue(&self) -> strata_perm::ReopenQueue {
        self.queued
            .iter()
            .fold(strata_perm::ReopenQueue::default(), |queue, q| {
                queue.set_read_only(q.node, q.read_only())
            })
    }
}

/// `read-only` as the options give it.
fn read_only_of(options: &Options) -> Option<bool> {
    match options.get("read-only") {
        Some(OptValue::Bool(read_only)) => Some(*read_only),
        Some(OptValue::Str(text)) => Some(matches!(text.as_str(), "on" | "true")),
        _ => None,
    }
}

impl<F: Files> BlockCore<F> {
    /// `bdrv_reopen_set_read_only`: reopens `node` (and what inherits from
    /// it) read-only or read-write, keeping every other option.
    pub(crate) fn reopen_read_only(&mut self, node: NodeId, read_only: bool) -> Result<()> {
        let mut plan = ReopenPlan::default();
        let given = Options::new().with("read-only", OptValue::Bool(read_only));
        plan.queue(self.bg.graph(), node, &given, OldOptions::Keep)?;
        self.reopen(&plan)
    }

    /// `bdrv_reopen_multiple` after the graph changes: permissions are
    /// checked with every queued node's new flag pending, then the nodes
    /// whose flag changes reopen their files and images (children first),
    /// then every queued node keeps its new options.
    pub(crate) fn reopen(&mut self, plan: &ReopenPlan) -> Result<()> {
        // A node the link changes closed has nothing left to reopen.
        let graph = self.bg.graph();
        let plan = ReopenPlan {
            given: Vec::new(),
            queued: plan
                .queued
                .iter()
                .copied()
                .filter(|q| graph.contains_node(q.node))
                .collect(),
        };
        let changed: Vec<QueuedNode> = plan
            .queued
            .iter()
            .copied()
            .filter(|q| {
                graph
                    .node(q.node)
                    .is_ok_and(|n| n.read_only != q.read_only())
            })
            .collect();
        let queue = plan.read_only_queue();
        self.with_hooks(|bg, hooks| bg.reopen_read_only(hooks, &queue))?;
        for q in changed.iter().rev() {
            self.reopen_driver(q.node, q.read_only())?;
        }
        for q in &plan.queued {
            let inheritance = &mut self.bg.node_mut(q.node)?.inheritance;
            inheritance.read_only_option = q.read_only_option;
            inheritance.explicit_read_only = q.explicit_read_only;
        }
        Ok(())
    }

    /// The driver's side of a reopen: files are reopened for writing, and
    /// images re-read their metadata in the new mode.
    fn reopen_driver(&mut self, node: NodeId, read_only: bool) -> Result<()> {
        match self.state.get(&node) {
            Some(DriverState::File { path }) => {
                let path = path.clone();
                self.files
                    .open(&path, Access::from_read_only(read_only))
                    .map_err(|e| Error::generic(e.to_string()))
            }
            Some(DriverState::Format {
                image,
                auto_backing_file,
            }) => {
                let (format, origin) = (image.format(), image.origin());
                let auto = auto_backing_file.clone();
                let reopened = self.with_child_io(node, |storage, _| {
                    strata_formats::Image::open(
                        storage,
                        Some(format),
                        Access::from_read_only(read_only),
                    )
                    .map_err(|e| std::io::Error::other(e.to_string()))
                });
                let mut image = reopened.map_err(|e| Error::generic(e.to_string()))?;
                image.set_origin(origin);
                self.state.insert(
                    node,
                    DriverState::Format {
                        image,
                        auto_backing_file: auto,
                    },
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
