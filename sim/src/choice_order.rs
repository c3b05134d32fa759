//! How an exploration without a preemption bound numbers a state's
//! choices, and how a path of its graph becomes a schedule that
//! [`Replay`](crate::sched::Replay) follows.
//!
//! Without a bound a state is keyed without the main loop's order
//! (`World::unordered_state_key`): the tasks that can run count as a set.
//! Two paths can reach one state with its tasks listed in different
//! orders, so the position of a task in the list is not a property of the
//! state, and a graph numbering choices by it would send a replay, which
//! picks by position, down another task. The explored graph therefore
//! numbers a state's choices by the tasks' [`canonical_cmp`] order, which
//! depends only on the set (hence only on the key), and the report
//! translates each path it shows to the positions a replay meets along
//! it, by running the path once ([`replayable`]).

use crate::run::{run, RunOptions};
use crate::scenario::Scenario;
use crate::sched::{Schedule, Scheduler};
use crate::state_graph::{schedule_cmp, Exploration};
use crate::world::Task;
use std::cmp::Ordering;
use std::sync::Arc;

/// The order that numbers an unbounded state's choices: the jobs by id,
/// then the client, then the clock's moves by time (the main loop's own
/// order but for the jobs' yield order, so the first choice is usually
/// the canonical one).
pub fn canonical_cmp(a: &Task, b: &Task) -> Ordering {
    fn rank(task: &Task) -> (u8, &str, u64) {
        match task {
            Task::Job(id) => (0, id, 0),
            Task::Client => (1, "", 0),
            Task::Advance(t) => (2, "", *t),
        }
    }
    rank(a).cmp(&rank(b))
}

/// The number of `runnable[position]` in [`canonical_cmp`] order.
pub(crate) fn canonical_number(runnable: &[Task], position: usize) -> usize {
    let task = &runnable[position];
    runnable
        .iter()
        .filter(|t| canonical_cmp(t, task) == Ordering::Less)
        .count()
}

/// Follows a path of canonical numbers, each translated to the position of
/// its task in the list the run meets; beyond the path, the first task
/// listed (as [`Replay`](crate::sched::Replay) does).
struct Translate<'a> {
    path: &'a [usize],
    next: usize,
}

impl Scheduler for Translate<'_> {
    fn pick(&mut self, runnable: &[Task]) -> Option<usize> {
        let Some(&number) = self.path.get(self.next) else {
            return Some(0);
        };
        self.next += 1;
        let mut order: Vec<&Task> = runnable.iter().collect();
        order.sort_by(|a, b| canonical_cmp(a, b));
        let task = order.get(number)?;
        runnable.iter().position(|t| t == *task)
    }
}

/// The schedule a replay follows to take `path` (canonical numbers): the
/// positions met by running it, as many as the path has.
pub(crate) fn translate(
    scenario: &Arc<Scenario>,
    options: RunOptions,
    path: &Schedule,
) -> Schedule {
    let mut scheduler = Translate {
        path: &path.0,
        next: 0,
    };
    let mut taken = match run(scenario, &mut scheduler, options) {
        Ok(done) => done.schedule,
        Err(failure) => failure.schedule,
    };
    taken.0.truncate(path.0.len());
    taken
}

/// `found`, whose schedules are paths of an unbounded exploration's graph
/// (canonical numbers), with schedules a replay follows instead, each
/// list ordered again by them. The run that translates a path checks no
/// invariants: it needs the tasks a replay meets, not the failures.
pub(crate) fn replayable(
    found: Exploration,
    scenario: &Arc<Scenario>,
    options: RunOptions,
) -> Exploration {
    let options = RunOptions {
        check_invariants: false,
        ..options
    };
    let replayed = |path: &Schedule| translate(scenario, options, path);
    let mut outcomes = found.outcomes;
    for o in &mut outcomes {
        o.example = replayed(&o.example);
    }
    outcomes.sort_by(|a, b| schedule_cmp(&a.example, &b.example));
    let mut failures: Vec<(Schedule, String)> = found
        .failures
        .into_iter()
        .map(|(path, message)| (replayed(&path), message))
        .collect();
    failures.sort_by(|a, b| schedule_cmp(&a.0, &b.0).then_with(|| a.1.cmp(&b.1)));
    let structure = found
        .structure
        .into_iter()
        .map(|(property, (path, message))| (property, (replayed(&path), message)))
        .collect();
    Exploration {
        outcomes,
        failures,
        structure,
        ..found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_has_one_number_whatever_order_its_state_lists_the_tasks_in() {
        let a = Task::Job("a".into());
        let b = Task::Job("b".into());
        let late = Task::Advance(5);
        let listed = [a.clone(), b.clone(), Task::Client, late.clone()];
        let reordered = [b.clone(), a.clone(), Task::Client, late.clone()];
        let number = |list: &[Task], task: &Task| {
            canonical_number(list, list.iter().position(|t| t == task).expect("listed"))
        };
        for task in &listed {
            assert_eq!(number(&listed, task), number(&reordered, task));
        }
        assert_eq!(number(&reordered, &a), 0);
        assert_eq!(number(&reordered, &late), 3);
        // A replay meeting the reordered list takes the task the number
        // names.
        let mut replay = Translate {
            path: &[0, 1, 4],
            next: 0,
        };
        let mut take = |list: &[Task]| replay.pick(list).map(|i| list[i].clone());
        assert_eq!(take(&reordered), Some(a));
        assert_eq!(take(&reordered), Some(b));
        // A number beyond the tasks ends the run instead of taking another.
        assert_eq!(take(&reordered), None);
        assert_eq!(
            take(&reordered),
            Some(reordered[0].clone()),
            "beyond the path: the first"
        );
    }
}
