//! QEMU's block graph as pure data: nodes (`BlockDriverState`), edges
//! (`BdrvChild`) with roles and permissions, non-node parents (BlockBackends
//! and jobs), and the backing-chain queries of QEMU 10.0's block.c.
//!
//! **Architecture Invariant:** strata-graph never does I/O, never checks a
//! permission and never knows a driver: drivers describe themselves with
//! [`DriverTraits`]. Permission checks, frozen links and op blockers live in
//! strata-perm, on top of these structural operations.
//!
//! # Tutorial
//!
//! Build `top -> mid -> base` the way a qcow2 chain looks, with a throttle
//! filter between `mid` and `base`, and ask the questions the stream job asks:
//!
//! ```
//! use strata_graph::{DriverTraits, Graph, NodeSpec, Parent, Perm, Role};
//!
//! let format = DriverTraits { supports_backing: true, ..DriverTraits::default() };
//! let filter = DriverTraits { is_filter: true, ..DriverTraits::default() };
//! let mut g = Graph::new(42);
//! let base = g.add_node(NodeSpec::new("qcow2", format).name("base")).unwrap();
//! let flt = g.add_node(NodeSpec::new("throttle", filter).name("flt")).unwrap();
//! let mid = g.add_node(NodeSpec::new("qcow2", format).name("mid")).unwrap();
//! let top = g.add_node(NodeSpec::new("qcow2", format).name("top")).unwrap();
//! g.attach(Parent::Node(flt), base, "file", Role::FILTERED_PRIMARY, Perm::NONE, Perm::ALL).unwrap();
//! g.attach(Parent::Node(mid), flt, "backing", Role::COW, Perm::NONE, Perm::ALL).unwrap();
//! g.attach(Parent::Node(top), mid, "backing", Role::COW, Perm::NONE, Perm::ALL).unwrap();
//!
//! // The chain walks through the filter...
//! assert_eq!(g.chain(top).map(|n| g.name(n)).collect::<Vec<_>>(), ["top", "mid", "flt", "base"]);
//! // ...but "the next image" skips it.
//! assert_eq!(g.backing_chain_next(mid), Some(base));
//! // The overlay of `base` is `mid`: filters in between are invisible.
//! assert_eq!(g.find_overlay(top, Some(base)), Some(mid));
//! assert!(g.chain_contains(top, flt));
//!
//! // Names follow QEMU's rules and errors.
//! let err = g.add_node(NodeSpec::new("qcow2", format).name("1bad")).unwrap_err();
//! assert_eq!(err.to_string(), "Invalid node-name: '1bad'");
//! // Unnamed nodes get `#block<counter><two digits>`.
//! let auto = g.add_node(NodeSpec::new("copy-on-read", filter)).unwrap();
//! assert!(g.name(auto).starts_with("#block0"));
//! ```
//!
//! Ids carry a generation, so an id kept past its node's deletion is an
//! error rather than a name for whatever reuses the slot:
//!
//! ```
//! use strata_graph::{DriverTraits, Graph, NodeSpec};
//!
//! let mut g = Graph::new(0);
//! let old = g.add_node(NodeSpec::new("file", DriverTraits::default()).name("a")).unwrap();
//! g.unref_node(old).unwrap();
//! let new = g.add_node(NodeSpec::new("file", DriverTraits::default()).name("b")).unwrap();
//! assert!(g.node(old).is_err());
//! assert_eq!(g.node(new).unwrap().name(), "b");
//! ```
#![deny(missing_docs)]

mod arena;
mod bits;
mod error;
mod graph;
mod names;
mod options;
mod query;

pub use bits::{Perm, Role};
pub use error::{Error, ErrorKind, Result};
pub use graph::{
    DriverTraits, Edge, EdgeId, Graph, Inheritance, Node, NodeId, NodeSpec, Parent, Root, RootId,
    RootKind, UnrefOutcome,
};
pub use names::id_wellformed;
pub use options::{OptValue, Options};
