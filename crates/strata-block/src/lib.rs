//! The block layer as one value (issue: strata-filters and strata-jobs).
#![deny(missing_docs)]

mod admin;
mod commit;
mod core;
mod error;
mod export;
mod files;
mod invariants;
mod io;
mod layer;
mod mirror;
mod open;
mod query;
mod state;
mod state_key;
mod stream;

pub use crate::core::{BlockCore, ThrottleGroup};
pub use commit::{CommitArgs, CommitJob, COMMIT_BUFFER_SIZE};
pub use error::{strerror, Error, ErrorClass, Result};
pub use files::{Files, HostFiles, MemFiles};
pub use layer::{BlockJob, BlockLayer, TimedEvent};
pub use mirror::{ActiveCommitJob, MIRROR_MAX_IO_BYTES};
pub use query::{NamedNodeInfo, XdbgEdge, XdbgGraph, XdbgNode, XdbgNodeType};
pub use state::{DriverState, InjectError, SetState};
pub use state_key::StateKeyHasher;
pub use strata_formats::ExtentKind;
pub use stream::{StreamArgs, StreamJob, STREAM_CHUNK};
