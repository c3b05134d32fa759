//! The block layer as one value (issue: strata-filters and strata-jobs).
#![deny(missing_docs)]

mod admin;
mod core;
mod error;
mod export;
mod files;
mod invariants;
mod io;
mod jobs;
mod layer;
mod main_loop;
mod open;
mod query;
mod state;
mod state_key;

pub use crate::core::{BlockCore, ThrottleGroup};
pub use error::{strerror, Error, ErrorClass, Result};
pub use files::{Files, HostFiles, MemFiles};
pub use jobs::{
    header_backing, new_backing_node, stream_bounds, ActiveCommitJob, BackingChoice, BlockJob,
    CommitArgs, CommitJob, NotInChain, StreamArgs, StreamBounds, StreamJob, COMMIT_BUFFER_SIZE,
    MIRROR_MAX_IO_BYTES, STREAM_CHUNK,
};
pub use layer::{BlockLayer, TimedEvent};
pub use main_loop::{MainLoop, MonitorTurn, Runnable, Wakeup};
pub use query::{NamedNodeInfo, XdbgEdge, XdbgGraph, XdbgNode, XdbgNodeType};
pub use state::{DriverState, InjectError, SetState};
pub use strata_formats::ExtentKind;
