//! One run of a scenario under a scheduler.

use crate::error::{Error, Result};
use crate::scenario::{Observation, Scenario};
use crate::sched::{Schedule, Scheduler};
use crate::world::{Task, World};
use std::sync::Arc;
use strata_block::policy::Policy;

/// How a run goes.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Check the invariants after every step.
    pub check_invariants: bool,
    /// Give up after this many steps.
    pub step_limit: usize,
    /// The block layer's policy (QEMU 10.0's by default).
    pub policy: &'static Policy,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            check_invariants: true,
            step_limit: 1_000_000,
            policy: strata_block::policy::default(),
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Run {
    /// The observation (as the harness would have recorded it).
    pub observation: Observation,
    /// The decisions taken, replayable.
    pub schedule: Schedule,
    /// Every step: the task and the virtual time (ns) it ran at.
    pub trace: Vec<(Task, u64)>,
}

/// A run that went wrong, with the schedule that got there.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: Error,
    /// The decisions up to the failure.
    pub schedule: Schedule,
}

/// Runs `scenario` to the end under `scheduler`.
pub fn run(
    scenario: &Arc<Scenario>,
    scheduler: &mut dyn Scheduler,
    options: RunOptions,
) -> std::result::Result<Run, Failure> {
    drive(scenario, scheduler, options, &mut |_, _| {})
}

/// What a run shows its observer: the world before the first step
/// (`None`), then after each step the task that ran and when.
pub(crate) type Observer<'a> = dyn FnMut(&World, Option<(&Task, u64)>) + 'a;

/// Runs `scenario` to the end, showing `observe` every state.
pub(crate) fn drive(
    scenario: &Arc<Scenario>,
    scheduler: &mut dyn Scheduler,
    options: RunOptions,
    observe: &mut Observer<'_>,
) -> std::result::Result<Run, Failure> {
    let mut schedule = Schedule::default();
    let mut trace = Vec::new();
    let result = drive_world(
        scenario,
        scheduler,
        options,
        (&mut schedule, &mut trace),
        observe,
    );
    match result {
        Ok(observation) => Ok(Run {
            observation,
            schedule,
            trace,
        }),
        Err(error) => Err(Failure { error, schedule }),
    }
}

fn drive_world(
    scenario: &Arc<Scenario>,
    scheduler: &mut dyn Scheduler,
    options: RunOptions,
    (schedule, trace): (&mut Schedule, &mut Vec<(Task, u64)>),
    observe: &mut Observer<'_>,
) -> Result<Observation> {
    let mut world = World::with_policy(scenario.clone(), options.policy)?;
    observe(&world, None);
    loop {
        if let Some(obs) = world.finished() {
            return Ok(obs.clone());
        }
        if trace.len() >= options.step_limit {
            return Err(Error::StepLimit(trace.len()));
        }
        let runnable = world.runnable();
        if runnable.is_empty() {
            return Err(Error::Stuck(world.now_ns()));
        }
        let choice = if runnable.len() > 1 {
            let c = scheduler
                .pick(&runnable)
                .filter(|c| *c < runnable.len())
                .ok_or(Error::ScheduleEnded {
                    decision: schedule.0.len(),
                    runnable: runnable.len(),
                })?;
            schedule.0.push(c);
            c
        } else {
            0
        };
        let task = &runnable[choice];
        let now = world.now_ns();
        trace.push((task.clone(), now));
        world.step(task).map_err(|e| at_step(e, trace.len()))?;
        observe(&world, Some((task, now)));
        if options.check_invariants {
            world.check_invariants().map_err(|what| Error::Invariant {
                step: trace.len(),
                what,
            })?;
        }
    }
}

fn at_step(error: Error, step: usize) -> Error {
    match error {
        Error::Invariant { what, .. } => Error::Invariant { step, what },
        other => other,
    }
}

/// The command that reproduces a run.
pub fn replay_command(scenario: &str, schedule: &Schedule) -> String {
    crate::Catalog::project().replay_command(scenario, schedule)
}

/// Runs `schedule` twice and compares the traces and observations: `Err`
/// with a description when they differ.
pub fn check_determinism(
    scenario: &Arc<Scenario>,
    schedule: &Schedule,
    options: RunOptions,
) -> std::result::Result<(), String> {
    let once = || run(scenario, &mut crate::sched::Replay::new(schedule), options);
    match (once(), once()) {
        (Ok(a), Ok(b)) if a.trace == b.trace && a.observation == b.observation => Ok(()),
        (Ok(_), Ok(_)) => Err(format!(
            "{}: two runs of the same schedule differ",
            replay_command(&scenario.name, schedule)
        )),
        (Err(a), Err(b)) if a.error.to_string() == b.error.to_string() => Ok(()),
        _ => Err(format!(
            "{}: one run failed, the other did not",
            replay_command(&scenario.name, schedule)
        )),
    }
}
