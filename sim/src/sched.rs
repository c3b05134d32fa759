//! Schedulers: which runnable task steps next.
//!
//! A decision is only taken where more than one task can run; the
//! schedule of a run is the list of those decisions, printable as a short
//! string (`s:` then a letter per decision, `a` = the canonical choice,
//! `b` the next task, ..., a number after a letter repeats it; trailing
//! `a`s are left out). `s:` is the canonical schedule.

use crate::error::{Error, Result};
use crate::world::Task;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use std::collections::BTreeMap;

/// Picks which runnable task steps next.
pub trait Scheduler {
    /// The index in `runnable` (at least two tasks, canonical order: the
    /// client first when it can run, then jobs in creation order), or
    /// `None` to end the run where the scheduler cannot decide (a replayed
    /// choice that names no task that can run): the run then fails with
    /// [`Error::ScheduleEnded`] rather than taking some other task.
    fn pick(&mut self, runnable: &[Task]) -> Option<usize>;
}

/// What QEMU's main loop would most plausibly do: the client's command as
/// soon as it can run, else the jobs in creation order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Canonical;

impl Scheduler for Canonical {
    fn pick(&mut self, _: &[Task]) -> Option<usize> {
        Some(0)
    }
}

/// A uniformly random choice at every decision, from a seed.
#[derive(Clone, Debug)]
pub struct Random {
    rng: Pcg64,
}

impl Random {
    /// A random scheduler.
    pub fn new(seed: u64) -> Random {
        Random {
            rng: Pcg64::seed_from_u64(seed),
        }
    }
}

impl Scheduler for Random {
    fn pick(&mut self, runnable: &[Task]) -> Option<usize> {
        Some(self.rng.random_range(0..runnable.len()))
    }
}

/// Probabilistic concurrency testing (Burckhardt et al.): every task gets
/// a random priority when first seen, the highest runnable one runs, and
/// at `depth - 1` random decision points the running task drops to the
/// lowest priority.
#[derive(Clone, Debug)]
pub struct Pct {
    rng: Pcg64,
    priorities: BTreeMap<Task, u64>,
    change_points: Vec<usize>,
    decisions: usize,
    lowest: u64,
}

impl Pct {
    /// A PCT scheduler for runs of about `expected_decisions` decisions.
    pub fn new(seed: u64, depth: usize, expected_decisions: usize) -> Pct {
        let mut rng = Pcg64::seed_from_u64(seed);
        let mut change_points: Vec<usize> = (1..depth)
            .map(|_| rng.random_range(0..expected_decisions.max(1)))
            .collect();
        change_points.sort_unstable();
        Pct {
            rng,
            priorities: BTreeMap::new(),
            change_points,
            decisions: 0,
            lowest: 0,
        }
    }
}

impl Scheduler for Pct {
    fn pick(&mut self, runnable: &[Task]) -> Option<usize> {
        for t in runnable {
            if !self.priorities.contains_key(t) {
                let p = self.rng.random_range(1_000..u64::MAX / 2);
                self.priorities.insert(t.clone(), p);
            }
        }
        let best = (0..runnable.len())
            .max_by_key(|&i| self.priorities[&runnable[i]])
            .unwrap_or(0);
        if self.change_points.first() == Some(&self.decisions) {
            self.change_points.remove(0);
            self.lowest += 1;
            self.priorities.insert(runnable[best].clone(), self.lowest);
        }
        self.decisions += 1;
        Some(best)
    }
}

/// Replays a schedule; beyond its end, canonical. A choice beyond the
/// tasks that can run ends the run: the schedule belongs to another
/// scenario or another version of the model.
#[derive(Clone, Debug)]
pub struct Replay {
    choices: Vec<usize>,
    next: usize,
}

impl Replay {
    /// A replay of `schedule`.
    pub fn new(schedule: &Schedule) -> Replay {
        Replay {
            choices: schedule.0.clone(),
            next: 0,
        }
    }
}

impl Scheduler for Replay {
    fn pick(&mut self, runnable: &[Task]) -> Option<usize> {
        let choice = self.choices.get(self.next).copied().unwrap_or(0);
        self.next += 1;
        (choice < runnable.len()).then_some(choice)
    }
}

/// The decisions of a run, in order.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Schedule(pub Vec<usize>);

impl Schedule {
    /// How many decisions differ from the canonical choice: at least the
    /// run's preemptions (a client's burst of commands after one counts
    /// once, see [`crate::explore`]).
    pub fn preemptions(&self) -> usize {
        self.0.iter().filter(|c| **c != 0).count()
    }

    /// Parses the printed form.
    pub fn parse(text: &str) -> Result<Schedule> {
        let bad = || Error::BadSchedule(text.to_string());
        let body = text.strip_prefix("s:").ok_or_else(bad)?;
        let mut choices = Vec::new();
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            if !c.is_ascii_lowercase() {
                return Err(bad());
            }
            let choice = (c as u8 - b'a') as usize;
            let mut count = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                count.push(*d);
                chars.next();
            }
            let n = if count.is_empty() {
                1
            } else {
                count.parse().map_err(|_| bad())?
            };
            choices.extend(std::iter::repeat_n(choice, n));
        }
        // Trailing canonical choices are what a replay does anyway.
        while choices.last() == Some(&0) {
            choices.pop();
        }
        Ok(Schedule(choices))
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = self.0.iter().rposition(|c| *c != 0).map_or(0, |i| i + 1);
        f.write_str("s:")?;
        let mut i = 0;
        while i < end {
            let c = self.0[i];
            let run = self.0[i..end].iter().take_while(|x| **x == c).count();
            let letter = (b'a' + c.min(25) as u8) as char;
            if run > 1 {
                write!(f, "{letter}{run}")?;
            } else {
                write!(f, "{letter}")?;
            }
            i += run;
        }
        Ok(())
    }
}

/// A scheduler chosen by name on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchedulerSpec {
    /// [`Canonical`].
    Canonical,
    /// [`Random`] with a seed.
    Random(u64),
    /// [`Pct`] with a seed and a depth.
    Pct(u64, usize),
    /// [`Replay`] of a schedule.
    Replay(Schedule),
}

impl SchedulerSpec {
    /// `canonical`, `random`, `pct` or `pct:DEPTH`, or a schedule string;
    /// `seed` for the random ones.
    pub fn parse(name: &str, seed: u64) -> Result<SchedulerSpec> {
        match name {
            "canonical" => Ok(SchedulerSpec::Canonical),
            "random" => Ok(SchedulerSpec::Random(seed)),
            "pct" => Ok(SchedulerSpec::Pct(seed, 3)),
            other if other.starts_with("pct:") => other[4..]
                .parse()
                .map(|d| SchedulerSpec::Pct(seed, d))
                .map_err(|_| Error::BadSchedule(other.into())),
            other => Schedule::parse(other).map(SchedulerSpec::Replay),
        }
    }

    /// A fresh scheduler.
    pub fn build(&self) -> Box<dyn Scheduler> {
        match self {
            SchedulerSpec::Canonical => Box::new(Canonical),
            SchedulerSpec::Random(seed) => Box::new(Random::new(*seed)),
            SchedulerSpec::Pct(seed, depth) => Box::new(Pct::new(*seed, *depth, 64)),
            SchedulerSpec::Replay(s) => Box::new(Replay::new(s)),
        }
    }
}

impl std::fmt::Display for SchedulerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchedulerSpec::Canonical => f.write_str("canonical"),
            SchedulerSpec::Random(seed) => write!(f, "random (seed {seed})"),
            SchedulerSpec::Pct(seed, depth) => write!(f, "pct depth {depth} (seed {seed})"),
            SchedulerSpec::Replay(s) => write!(f, "replay {s}"),
        }
    }
}
