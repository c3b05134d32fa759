//! The simulator's errors.

/// What can go wrong in the simulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scenario file that cannot be read or set up.
    #[error("scenario: {0}")]
    Scenario(String),
    /// No scenario by that name.
    #[error("no scenario named {0:?}")]
    UnknownScenario(String),
    /// A replay string that does not parse or does not fit the run.
    #[error("bad schedule {0:?}")]
    BadSchedule(String),
    /// The scheduler ended the run: it had no choice among the tasks that
    /// can run (a replayed schedule that does not fit the run).
    #[error("the scheduler ended the run at decision {decision}: no choice among the {runnable} tasks that can run")]
    ScheduleEnded {
        /// The decision's index in the schedule.
        decision: usize,
        /// How many tasks could run.
        runnable: usize,
    },
    /// An invariant broke after a step; the message names it.
    #[error("invariant broken after step {step}: {what}")]
    Invariant {
        /// The scheduler step after which it broke.
        step: usize,
        /// What broke.
        what: String,
    },
    /// Nothing can run, no timer is pending and the client still waits.
    #[error("stuck at virtual time {0} ns: nothing can run")]
    Stuck(u64),
    /// The run took more steps than the limit.
    #[error("step limit reached ({0} steps)")]
    StepLimit(usize),
    /// Reading a file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The simulator's result type.
pub type Result<T> = std::result::Result<T, Error>;
