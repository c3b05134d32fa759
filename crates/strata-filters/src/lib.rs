//! The block layer's drivers as QEMU 10.0 defines them, for a
//! [`strata_perm::BlockGraph`]: which are filters, the roles of their
//! children, the permissions they take and share on each child
//! ([`DriverPerms`]), and the filenames `bdrv_refresh_filename` gives their
//! nodes ([`refresh_filename`]) — the strings that end up in image headers
//! after a stream or a commit.
//!
//! **Architecture Invariant:** strata-filters does no I/O of its own and
//! never reads the wall clock.
//!
//! # Tutorial
//!
//! A throttle filter on a qcow2 node `base`: the qcow2 node is named after its
//! file, the filter gets a `json:` name (throttle has a strong option and no
//! filename callback). That `json:` string is what `block-commit
//! base-node=flt` writes into the overlay's header:
//!
//! ```
//! use strata_filters::{driver_perms, refresh_filename, BackingFileInfo, Driver};
//! use strata_graph::{NodeId, NodeSpec, OptValue, Options};
//! use strata_perm::BlockGraph;
//!
//! struct NoBackingFiles;
//! impl BackingFileInfo for NoBackingFiles {
//!     fn auto_backing_file(&self, _node: NodeId) -> String {
//!         String::new() // base.img's header names no backing file
//!     }
//! }
//!
//! let hooks = driver_perms();
//! let mut bg = BlockGraph::new(0);
//! let s = |v: &str| OptValue::Str(v.to_string());
//! let node = |bg: &mut BlockGraph, d: Driver, name: &str, opts: Options| {
//!     bg.add_node(NodeSpec::new(d.name(), d.traits()).name(name).options(opts.with("driver", s(d.name())))).unwrap()
//! };
//! let f = node(&mut bg, Driver::File, "base-file", Options::new().with("filename", s("base.img")));
//! let base = node(&mut bg, Driver::Qcow2, "base", Options::new());
//! let flt = node(&mut bg, Driver::Throttle, "flt", Options::new().with("throttle-group", s("tg0")));
//! let role = |d: Driver| d.primary_child_role(&Options::new());
//! bg.attach_child(&hooks, base, f, "file", role(Driver::Qcow2)).unwrap();
//! bg.attach_child(&hooks, flt, base, "file", role(Driver::Throttle)).unwrap();
//!
//! refresh_filename(&mut bg, &NoBackingFiles, flt).unwrap();
//! assert_eq!(bg.graph().node(base).unwrap().filename, "base.img");
//! assert_eq!(
//!     bg.graph().node(flt).unwrap().filename,
//!     r#"json:{"throttle-group": "tg0", "driver": "throttle", "file": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.img"}}}"#
//! );
//! ```
#![deny(missing_docs)]

mod driver;
mod filename;
mod perms;

pub use driver::Driver;
pub use filename::{backing_overridden, refresh_filename, BackingFileInfo};
pub use perms::{driver_perms, DriverPerms, MirrorTopState};
