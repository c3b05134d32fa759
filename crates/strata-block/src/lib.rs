//! The block layer as one value (issue: strata-filters and strata-jobs).
#![deny(missing_docs)]

mod admin;
mod core;
mod error;
mod files;
mod io;
mod layer;
mod open;
mod query;
mod state;
mod state_key;
mod stream;

pub use crate::core::{BlockCore, ThrottleGroup};
pub use error::{strerror, Error, ErrorClass, Result};
pub use files::{Files, HostFiles, MemFiles};
pub use layer::{BlockJob, BlockLayer, TimedEvent};
pub use query::{NamedNodeInfo, XdbgEdge, XdbgGraph, XdbgNode, XdbgNodeType};
pub use state::{DriverState, InjectError, SetState};
pub use stream::{StreamArgs, StreamJob, STREAM_CHUNK};
