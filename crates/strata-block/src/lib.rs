//! QEMU 10.0's block layer as one value: the graph with its permissions,
//! the drivers and their images, throttle groups, the stream, commit and
//! active-commit jobs, their events and a virtual clock.
//!
//! A [`BlockLayer`] composes strata-graph, strata-perm, strata-filters,
//! strata-formats and strata-jobs. Its methods are QMP's block commands
//! (`blockdev-add`, `block-stream`, `block-commit`, `job-pause`, ...) with
//! QEMU's error texts; the images live in a [`Files`]: [`HostFiles`] for real
//! files (strata-qsd), [`MemFiles`] for memory (the simulator, and this
//! tutorial).
//!
//! **Architecture Invariant:** a block layer never reads the wall clock and
//! never spawns a thread. Jobs move only when the owner steps them
//! ([`BlockLayer::step_job`]), at the virtual time the owner sets
//! ([`BlockLayer::advance_to`]).
//!
//! # Tutorial
//!
//! Two qcow2 images in memory, `top.qcow2` on `base.qcow2`, opened with one
//! nested `blockdev-add`; the chain as the graph sees it; then a
//! `block-stream` that copies the base's data up into `top`, stepped by hand
//! until the job is gone:
//!
//! ```
//! use strata_block::{BlockLayer, MemFiles, StreamArgs};
//! use strata_formats::{CreateOptions, MemStorage, Qcow2};
//! use strata_graph::{OptValue, Options};
//! use strata_jobs::Wait;
//!
//! // `qemu-img create -f qcow2 base.qcow2 1M`, `qemu-io -c 'write -P 0xaa 0 64k'`,
//! // `qemu-img create -f qcow2 -b base.qcow2 -F qcow2 top.qcow2`.
//! let mut files = MemFiles::new();
//! let mut base = MemStorage::new();
//! Qcow2::create(&mut base, &CreateOptions::new(1 << 20))?.write(&mut base, 0, &[0xaa; 65536], None)?;
//! files.insert("base.qcow2", base);
//! let mut top = MemStorage::new();
//! Qcow2::create(&mut top, &CreateOptions::new(1 << 20).backing("base.qcow2", Some("qcow2")))?;
//! files.insert("top.qcow2", top);
//!
//! // blockdev-add {"driver": "qcow2", "node-name": "top", "file": {...},
//! //               "backing": {"driver": "qcow2", "node-name": "base", ...}}
//! let s = |v: &str| OptValue::Str(v.to_string());
//! let image = |name: &str, file: &str| {
//!     let file = Options::new().with("driver", s("file")).with("filename", s(file));
//!     Options::new().with("driver", s("qcow2")).with("node-name", s(name)).with("file", OptValue::Dict(file))
//! };
//! let mut layer = BlockLayer::new(files, 0);
//! let top = layer.blockdev_add(&image("top", "top.qcow2").with("backing", OptValue::Dict(image("base", "base.qcow2"))))?;
//!
//! // The chain, and what the guest reads through `top`: the base's bytes.
//! let g = layer.core().graph().graph();
//! assert_eq!(g.chain(top).map(|n| g.name(n)).collect::<Vec<_>>(), ["top", "base"]);
//! let mut buf = [0; 4];
//! layer.core_mut().read(top, 0, &mut buf)?;
//! assert_eq!(buf, [0xaa; 4]);
//!
//! // block-stream device=top job-id=s0, then step the job until it is gone.
//! let args = StreamArgs { device: "top".into(), job_id: Some("s0".into()), ..StreamArgs::default() };
//! layer.block_stream(&args)?;
//! let mut steps = 0;
//! loop {
//!     match layer.step_job("s0")? {
//!         Wait::Done => break,
//!         Wait::SleepUntil(t) => layer.advance_to(t),
//!         _ => {}
//!     }
//!     steps += 1;
//! }
//! assert!(steps > 2, "one step per yield: run, then each main-loop phase");
//! let events: Vec<_> = layer.take_events().iter().map(|e| e.event.sequence_label().to_string()).collect();
//! assert_eq!(events, [
//!     "created", "running", "waiting", "pending", "BLOCK_JOB_COMPLETED", "concluded", "null",
//! ]);
//!
//! // `top` stands alone now: the base's cluster was copied up, the header
//! // names no backing file, and `base` was closed with its last parent.
//! let g = layer.core().graph().graph();
//! assert_eq!(g.chain(top).map(|n| g.name(n)).collect::<Vec<_>>(), ["top"]);
//! assert_eq!(layer.core().find_node("base"), None);
//! let info = layer.query_named_block_nodes();
//! let top_info = info.iter().find(|n| n.node_name == "top").unwrap();
//! assert_eq!((top_info.backing_file.as_deref(), top_info.backing_file_depth), (None, 0));
//! layer.core_mut().read(top, 0, &mut buf)?;
//! assert_eq!(buf, [0xaa; 4]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Refusals
//!
//! Commands are checked the way QEMU checks them, and fail with QEMU's
//! texts and error classes; a refused command changes nothing:
//!
//! ```
//! use strata_block::{BlockLayer, MemFiles, StreamArgs};
//! use strata_formats::{CreateOptions, MemStorage, Qcow2};
//! use strata_graph::{OptValue, Options};
//!
//! let mut files = MemFiles::new();
//! let mut st = MemStorage::new();
//! Qcow2::create(&mut st, &CreateOptions::new(1 << 20))?;
//! files.insert("a.qcow2", st);
//! let s = |v: &str| OptValue::Str(v.to_string());
//! let file = Options::new().with("driver", s("file")).with("filename", s("a.qcow2"));
//! let opts = Options::new().with("driver", s("qcow2")).with("node-name", s("a")).with("file", OptValue::Dict(file));
//! let mut layer = BlockLayer::new(files, 0);
//! layer.blockdev_add(&opts)?;
//!
//! let err = layer.blockdev_add(&opts).unwrap_err();
//! assert_eq!(err.to_string(), "Duplicate nodes with node-name='a'");
//! let err = layer.block_stream(&StreamArgs { device: "nope".into(), ..StreamArgs::default() }).unwrap_err();
//! assert_eq!((err.class().as_str(), err.to_string().as_str()), ("GenericError", "Cannot find device='nope' nor node-name='nope'"));
//! assert_eq!(layer.core().graph().graph().nodes().count(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod admin;
mod backing_image;
mod blkdebug_config;
mod breakpoint_ops;
mod breakpoints;
mod core;
mod drive;
mod error;
mod export;
mod files;
mod footprint;
mod invariants;
mod io;
mod jobs;
mod layer;
mod locking;
mod main_loop;
mod open;
mod open_filename;
pub mod policy;
mod query;
mod reopen;
mod reopen_options;
mod request_padding;
mod state;
mod state_key;

pub use crate::core::{BlockCore, ThrottleGroup};
pub use breakpoint_ops::BreakpointError;
pub use drive::{DeviceAccess, ShareRw};
pub use error::{strerror, Error, ErrorClass, Result};
pub use files::{Files, HostFiles, MemFiles};
pub use invariants::CheckedInvariants;
pub use jobs::{
    header_backing, header_backing_at_start, new_backing_node, skip_implicit_above_base,
    stream_bounds, ActiveCommitJob, BackingChoice, BackingFormat, BlockJob, CommitArgs, CommitJob,
    NotInChain, StreamArgs, StreamBounds, StreamJob, COMMIT_BUFFER_SIZE, MIRROR_MAX_IO_BYTES,
    STREAM_CHUNK,
};
pub use layer::{BlockLayer, TimedEvent};
pub use locking::{ImageLocks, LockingMode};
pub use main_loop::{MainLoop, MonitorTurn, Runnable, Wakeup};
pub use open_filename::crumple;
pub use open_filename::BackingChain;
pub use query::{NamedNodeInfo, XdbgEdge, XdbgGraph, XdbgNode, XdbgNodeType};
pub use state::{DriverState, InjectError, SetState};
pub use state_key::StateKeyHasher;
pub use strata_formats::{Access, ExtentKind};
