//! The deterministic scheduler simulator.
//!
//! A [`World`] is the block layer on memory storage, a virtual clock and a
//! scenario's client. Its tasks are the client (its next command, or the
//! end of a wait) and every job's step machine; a [`Scheduler`] picks which
//! runnable task steps next, and when none can run the clock jumps to the
//! next timer. A run is a pure function of the scenario and the scheduler
//! (with its seed), and its decisions print as a short [`Schedule`] string
//! that `cargo xtask sim replay NAME SCHEDULE` replays.
//!
//! ```
//! use std::sync::Arc;
//! use strata_sim::scenario::Scenario;
//! use strata_sim::{run, Canonical, RunOptions};
//!
//! let scenario = Arc::new(Scenario::from_json(r#"{
//!   "name": "tiny-stream",
//!   "images": [
//!     {"name": "base.img", "format": "raw", "size": "1M", "content": "sector-numbers"},
//!     {"name": "top.img", "backing": "base.img", "backing_format": "raw"}
//!   ],
//!   "steps": [
//!     {"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "top",
//!        "file": {"driver": "file", "filename": "top.img"}}},
//!     {"execute": "block-stream", "arguments": {"device": "top", "job-id": "s"}},
//!     {"wait": {"event": "BLOCK_JOB_COMPLETED", "job": "s"}}
//!   ]
//! }"#).unwrap());
//! let done = run(&scenario, &mut Canonical, RunOptions::default()).unwrap();
//! let obs = &done.observation;
//! assert_eq!(obs.expectations_failed, Vec::<usize>::new());
//! assert_eq!(obs.images["top.img"].backing_filename, None);
//! assert_eq!(obs.images["top.img"].sha256, obs.images["base.img"].sha256);
//! assert_eq!(done.schedule.to_string(), "s:");
//!
//! // Every other schedule reaches the same outcome here.
//! let found = strata_sim::explore(&scenario, Default::default(), &Default::default()).unwrap();
//! assert_eq!(found.outcomes.len(), 1);
//! ```
#![deny(missing_docs)]

mod catalog;
mod choice_order;
mod compare;
mod daemon_loop;
mod error;
mod exact_hash;
mod explore;
mod graph;
mod images;
mod matrix;
mod policies_doc;
mod properties;
mod reduction;
mod run;
pub mod scenario;
mod sched;
mod state_graph;
mod trace;
mod visited;
mod workers;
mod world;

pub use catalog::{qemu_observation, scenario, scenarios, sim_dir, Catalog};
pub use compare::{block_job_order, compare, fold_transients, outcome_key, CompareOptions};
pub use daemon_loop::run_like_daemon;
pub use error::{Error, Result};
pub use explore::{
    explore, explore_shard, merge, Bound, Exploration, ExploreOptions, Outcome, Part, Progress,
    Shard, ShardFile,
};
pub use graph::{normalised_graph, perm_mask, to_dot};
pub use images::{create_images, forget_memos, inspect_image};
pub use matrix::{
    policy_matrix, replay_command as matrix_replay_command, Counterexample, MatrixCell, MatrixRow,
    PolicyMatrix,
};
pub use policies_doc::policies_doc;
pub use properties::{Baseline, Property, Violation};
pub use reduction::{footprint, Footprint, Reduction, StepWatch};
pub use run::{check_determinism, replay_command, run, Failure, Run, RunOptions};
pub use sched::{Canonical, Pct, Random, Replay, Schedule, Scheduler, SchedulerSpec};
pub use state_graph::{schedule_cmp, schedule_rank, Choice, End, Leg, StateGraph};
pub use strata_block::policy;
pub use trace::{
    changes_between, run_traced, Action, Change, GraphLink, GraphVertex, JobState, StepState,
    Trace, TraceStep, TracedRun, VertexKind,
};
pub use world::{Task, World};
