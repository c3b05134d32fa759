//! QEMU 10.0's permission system, frozen links and op blockers, on top of a
//! [`strata_graph::Graph`].
//!
//! Every change to a [`BlockGraph`] is a transaction, as in QEMU since 6.1:
//! the structure changes first, then the permissions of the affected subgraph
//! are recomputed in topological order (each node's parents checked pairwise,
//! then the node itself, then its children's new permissions), and on any
//! error the graph, its permissions, frozen flags and blockers are put back
//! exactly as they were. Error texts are QEMU's.
//!
//! **Architecture Invariant:** strata-perm never does I/O and knows no driver;
//! drivers speak through [`PermHooks`]. Without hooks ([`DefaultPerms`]) the
//! rules are `bdrv_default_perms`.
//!
//! # Tutorial
//!
//! A writable qcow2 node `base` on a file node `f`; a second qcow2 on the same
//! file is refused with QEMU's message, and the refused attach leaves nothing
//! behind:
//!
//! ```
//! use strata_graph::{DriverTraits, NodeSpec, Role};
//! use strata_perm::{BlockGraph, DefaultPerms};
//!
//! let fmt = DriverTraits { supports_backing: true, ..Default::default() };
//! let proto = DriverTraits { is_protocol: true, ..Default::default() };
//! let mut bg = BlockGraph::new(0);
//! let f = bg.add_node(NodeSpec::new("file", proto).name("f")).unwrap();
//! let base = bg.add_node(NodeSpec::new("qcow2", fmt).name("base")).unwrap();
//! bg.attach_child(&DefaultPerms, base, f, "file", Role::IMAGE).unwrap();
//!
//! let base2 = bg.add_node(NodeSpec::new("qcow2", fmt).name("base2").read_only(true)).unwrap();
//! let before = bg.clone();
//! let err = bg.attach_child(&DefaultPerms, base2, f, "file", Role::IMAGE).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "Permission conflict on node 'f': permissions 'write, resize' are both required by node 'base' \
//!      (uses node 'f' as 'file' child) and unshared by node 'base2' (uses node 'f' as 'file' child)."
//! );
//! assert_eq!(format!("{:?}", bg.graph().node(f).unwrap()), format!("{:?}", before.graph().node(f).unwrap()));
//! ```
//!
//! Freezing a chain refuses a second freeze and every change of a frozen link:
//!
//! ```
//! use strata_graph::{DriverTraits, NodeSpec, Role};
//! use strata_perm::{BlockGraph, ChildSlot, DefaultPerms};
//!
//! let fmt = DriverTraits { supports_backing: true, ..Default::default() };
//! let mut bg = BlockGraph::new(0);
//! let base = bg.add_node(NodeSpec::new("qcow2", fmt).name("base")).unwrap();
//! let top = bg.add_node(NodeSpec::new("qcow2", fmt).name("top")).unwrap();
//! bg.attach_child(&DefaultPerms, top, base, "backing", Role::COW).unwrap();
//! bg.freeze_chain(top, Some(base)).unwrap();
//! assert_eq!(bg.freeze_chain(top, None).unwrap_err().to_string(), "Cannot change 'backing' link from 'top' to 'base'");
//! assert_eq!(
//!     bg.set_file_or_backing(&DefaultPerms, top, None, ChildSlot::Backing).unwrap_err().to_string(),
//!     "Cannot change frozen 'backing' link from 'top' to 'base'"
//! );
//! ```
#![deny(missing_docs)]

mod block_graph;
mod blockers;
mod defaults;
mod error;
mod links;
mod refresh;

pub use block_graph::BlockGraph;
pub use blockers::{BlockOp, Blocker, BlockerOwner, OpBlockers, OpSet};
pub use defaults::{default_child_perm, filter_default, DefaultPerms, PermHooks};
pub use error::{Error, ErrorKind, Refusal, Result};
pub use links::{AutoSkip, ChildSlot, Detach, ReplaceOptions};
pub use refresh::{cumulative_perms, recompute_all};

use std::collections::BTreeMap;
use strata_graph::{Graph, NodeId};

/// Read-only flags that a pending reopen will set (`BlockReopenQueue`, as
/// far as permissions care).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ReopenQueue {
    read_only: BTreeMap<NodeId, bool>,
    order: Vec<NodeId>,
}

impl ReopenQueue {
    /// Queues `node` to become read-only (`true`) or read-write (`false`).
    pub fn set_read_only(mut self, node: NodeId, read_only: bool) -> ReopenQueue {
        if self.read_only.insert(node, read_only).is_none() {
            self.order.push(node);
        }
        self
    }

    /// `bdrv_is_writable_after_reopen`.
    pub fn writable_after(&self, graph: &Graph, node: NodeId) -> bool {
        match self.read_only.get(&node) {
            Some(&read_only) => !read_only,
            None => graph.node(node).is_ok_and(|n| !n.read_only),
        }
    }

    fn nodes(&self) -> Vec<NodeId> {
        self.order.clone()
    }

    fn iter(&self) -> impl Iterator<Item = (NodeId, bool)> + '_ {
        self.order.iter().map(|n| (*n, self.read_only[n]))
    }
}
