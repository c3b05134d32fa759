//! The daemon's loop on memory storage: the proof that the simulator and
//! strata-qsd order things the same way.
//!
//! strata-qsd's loop is: step jobs while the block layer's main loop lists
//! one first ([`BlockLayer::run_jobs`]), then poll the sockets until the
//! main loop's next wakeup ([`BlockLayer::next_wakeup`]) or a client
//! speaks, and run what the client sent through the monitor. This module
//! runs that loop with the scenario's client as the socket and the virtual
//! clock as the real one. Its observation must equal the canonical
//! schedule's: a test checks it for every scenario.
//!
//! [`BlockLayer::run_jobs`]: strata_block::BlockLayer::run_jobs
//! [`BlockLayer::next_wakeup`]: strata_block::BlockLayer::next_wakeup

use std::sync::Arc;

use strata_block::Wakeup;

use crate::error::{Error, Result};
use crate::run::RunOptions;
use crate::scenario::{Observation, Scenario};
use crate::world::{Task, World};

/// Runs `scenario` the way strata-qsd's loop would, on memory storage and
/// a virtual clock that moves only while the loop polls.
pub fn run_like_daemon(scenario: &Arc<Scenario>, options: RunOptions) -> Result<Observation> {
    let mut world = World::with_policy(scenario.clone(), options.policy)?;
    for turn in 0..options.step_limit {
        if let Some(observation) = world.finished() {
            return Ok(observation.clone());
        }
        world.run_jobs_as_daemon()?;
        check(&world, options, turn)?;
        if world.monitor_readable() {
            world.step(&Task::Client)?;
        } else {
            let wake = poll_until(&world).ok_or(Error::Stuck(world.now_ns()))?;
            world.step(&Task::Advance(wake))?;
        }
        check(&world, options, turn)?;
    }
    Err(Error::StepLimit(options.step_limit))
}

/// When `poll(2)` returns with nothing from the client: the main loop's
/// next timer or the client's own deadline (the end of its sleep or wait),
/// whichever comes first.
fn poll_until(world: &World) -> Option<u64> {
    let timer = match world.layer().next_wakeup() {
        Wakeup::Timer(t) => Some(t),
        Wakeup::Now | Wakeup::Monitor => None,
    };
    let deadline = world.client_deadline().filter(|d| *d > world.now_ns());
    timer.into_iter().chain(deadline).min()
}

fn check(world: &World, options: RunOptions, turn: usize) -> Result<()> {
    if !options.check_invariants {
        return Ok(());
    }
    world
        .check_invariants()
        .map_err(|what| Error::Invariant { step: turn, what })
}
