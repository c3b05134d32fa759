//! The typed values behind `x-debug-query-block-graph` and
//! `query-named-block-nodes`.

use crate::core::BlockCore;
use crate::files::Files;
use crate::layer::BlockLayer;
use crate::state::DriverState;
use std::collections::BTreeMap;
use strata_graph::{EdgeId, NodeId, Parent, Perm, RootId, RootKind};

/// `XDbgBlockGraphNodeType`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum XdbgNodeType {
    /// A BlockBackend.
    BlockBackend,
    /// A block job.
    BlockJob,
    /// A node.
    BlockDriver,
}

impl XdbgNodeType {
    /// The QAPI name.
    pub fn as_str(self) -> &'static str {
        match self {
            XdbgNodeType::BlockBackend => "block-backend",
            XdbgNodeType::BlockJob => "block-job",
            XdbgNodeType::BlockDriver => "block-driver",
        }
    }
}

/// `XDbgBlockGraphNode`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct XdbgNode {
    /// Session-local id, from 1.
    pub id: u64,
    /// What it is.
    pub node_type: XdbgNodeType,
    /// Node name, job id, or BlockBackend name (`""` when anonymous).
    pub name: String,
}

/// `XDbgBlockGraphEdge`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct XdbgEdge {
    /// The parent's id.
    pub parent: u64,
    /// The child's id.
    pub child: u64,
    /// The child name.
    pub name: String,
    /// Permissions taken.
    pub perm: Perm,
    /// Permissions shared.
    pub shared: Perm,
}

/// `XDbgBlockGraph`: nodes and edges in QEMU's order (the reverse of the
/// visit order, since QEMU prepends).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct XdbgGraph {
    /// Nodes.
    pub nodes: Vec<XdbgNode>,
    /// Edges.
    pub edges: Vec<XdbgEdge>,
}

/// One entry of `query-named-block-nodes` (the fields Strata knows).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct NamedNodeInfo {
    /// `node-name`.
    pub node_name: String,
    /// `drv`.
    pub driver: String,
    /// `ro`.
    pub read_only: bool,
    /// `file`: the node's filename (`json:` for filters).
    pub file: String,
    /// `backing_file`: the backing file named by the image header.
    pub backing_file: Option<String>,
    /// `backing_file_depth`.
    pub backing_file_depth: u64,
    /// `image.virtual-size`.
    pub virtual_size: u64,
    /// `image.format`.
    pub format: String,
    /// `image.backing-filename-format`.
    pub backing_format: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Root(RootId),
    /// A block job without a root, by its position on the job list.
    Job(usize),
    Node(NodeId),
}

/// Assigns ids the way `xdbg_graph_add_node` does: on first sight.
#[derive(Default)]
struct Ids {
    ids: BTreeMap<Key, u64>,
}

impl Ids {
    fn get(&mut self, key: Key) -> u64 {
        let next = self.ids.len() as u64 + 1;
        *self.ids.entry(key).or_insert(next)
    }
}

impl<F: Files> BlockLayer<F> {
    /// `x-debug-query-block-graph`.
    pub fn query_block_graph(&self) -> XdbgGraph {
        let g = self.core.bg.graph();
        let mut ids = Ids::default();
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        let add_edge = |ids: &mut Ids, parent: Key, edge: EdgeId, edges: &mut Vec<XdbgEdge>| {
            let Ok(e) = g.edge(edge) else { return };
            let parent = ids.get(parent);
            let child = ids.get(Key::Node(e.child()));
            edges.push(XdbgEdge {
                parent,
                child,
                name: e.name().to_string(),
                perm: e.perm,
                shared: e.shared,
            });
        };
        let roots: Vec<RootId> = g.roots().collect();
        for &root in &roots {
            if let Ok(r) = g.root(root) {
                if let RootKind::Backend { name } = r.kind() {
                    let id = ids.get(Key::Root(root));
                    nodes.push(XdbgNode {
                        id,
                        node_type: XdbgNodeType::BlockBackend,
                        name: name.clone().unwrap_or_default(),
                    });
                    for &edge in r.children() {
                        add_edge(&mut ids, Key::Root(root), edge, &mut edges);
                    }
                }
            }
        }
        // Every block job on the job list is a node, also one whose nodes
        // are all released already (a concluded active commit:
        // mirror_exit_common's block_job_remove_all_bdrv); a job being
        // freed is off the list and shows only while its root lingers.
        for (position, job) in self
            .jobs
            .iter()
            .enumerate()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            let root = roots.iter().copied().find(|&r| {
                matches!(g.root(r).map(|r| r.kind()), Ok(RootKind::Job { id, .. }) if id == job.id())
            });
            let key = match root {
                Some(root) => Key::Root(root),
                None if !job.is_freeing() => Key::Job(position),
                None => continue,
            };
            nodes.push(XdbgNode {
                id: ids.get(key),
                node_type: XdbgNodeType::BlockJob,
                name: job.id().to_string(),
            });
            let children = root
                .and_then(|r| g.root(r).ok())
                .map_or(&[][..], |r| r.children());
            for &edge in children {
                add_edge(&mut ids, key, edge, &mut edges);
            }
        }
        for node in g.nodes() {
            let id = ids.get(Key::Node(node));
            nodes.push(XdbgNode {
                id,
                node_type: XdbgNodeType::BlockDriver,
                name: g.name(node).to_string(),
            });
            for &edge in g.node(node).map(|n| n.children()).unwrap_or(&[]) {
                add_edge(&mut ids, Key::Node(node), edge, &mut edges);
            }
        }
        nodes.reverse();
        edges.reverse();
        XdbgGraph { nodes, edges }
    }

    /// `query-named-block-nodes`, in creation order.
    pub fn query_named_block_nodes(&mut self) -> Vec<NamedNodeInfo> {
        self.core.query_named_block_nodes()
    }
}

impl<F: Files> BlockCore<F> {
    /// `query-named-block-nodes`, in creation order (filenames refreshed).
    pub fn query_named_block_nodes(&mut self) -> Vec<NamedNodeInfo> {
        let nodes: Vec<NodeId> = self.bg.graph().nodes().collect();
        nodes
            .into_iter()
            .map(|node| self.named_node_info(node))
            .collect()
    }

    fn named_node_info(&mut self, node: NodeId) -> NamedNodeInfo {
        let _ = self.refresh_filename(node);
        let virtual_size = self.length(node).unwrap_or(0);
        let g = self.bg.graph();
        let n = g.node(node).expect("listed nodes are live");
        let (backing_file, backing_format) = match self.state.get(&node) {
            Some(DriverState::Format { image, .. }) => (
                image.backing_file().map(str::to_string),
                image.backing_format().map(str::to_string),
            ),
            _ => (None, None),
        };
        let depth = std::iter::successors(g.backing_chain_next(node), |&n| g.backing_chain_next(n))
            .count() as u64;
        NamedNodeInfo {
            node_name: n.name().to_string(),
            driver: n.driver().to_string(),
            read_only: n.read_only,
            file: n.filename.clone(),
            backing_file,
            backing_file_depth: depth,
            virtual_size,
            format: n.driver().to_string(),
            backing_format,
        }
    }

    /// Whether any BlockBackend is a parent of `node` (`bdrv_has_blk`).
    pub(crate) fn has_blk(&self, node: NodeId) -> bool {
        let g = self.bg.graph();
        g.node(node)
            .map(|n| n.parents().to_vec())
            .unwrap_or_default()
            .into_iter()
            .any(|e| {
                matches!(g.edge(e).map(|e| e.parent()), Ok(Parent::Root(r))
                if matches!(g.root(r).map(|r| r.kind()), Ok(RootKind::Backend { .. })))
            })
    }
}
