//! Worker threads that share one search: each keeps its own depth-first
//! stack (a crossbeam-deque `Worker`, last in first out) and, when it runs
//! dry, steals from the bottom of another's stack (the oldest tasks: the
//! largest subtrees) or from the shared injector holding the roots.
//!
//! Termination: [`Pending`] counts the tasks given out and not yet
//! finished; a task's children are counted before the task itself is
//! finished, so the count reaches zero only when no task is queued or
//! running anywhere. Under `--cfg loom` the counter is loom's, and the test
//! below explores the interleavings of two workers sharing one queue.

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

#[cfg(loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicUsize, Ordering};

/// Tasks given out and not finished.
pub(crate) struct Pending(AtomicUsize);

impl Pending {
    /// `tasks` already given out.
    pub(crate) fn new(tasks: usize) -> Pending {
        Pending(AtomicUsize::new(tasks))
    }

    /// One more task, counted before it is queued.
    pub(crate) fn add(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// A task finished (its children already counted).
    pub(crate) fn finish(&self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether every task is finished: a worker that finds no task to
    /// take may stop only then (another may still be queueing children).
    pub(crate) fn all_finished(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 0
    }
}

/// Where a task's children go: the front of its worker's stack.
pub(crate) struct Spawner<'a, T> {
    local: &'a Worker<T>,
    pending: &'a Pending,
}

impl<T> Spawner<'_, T> {
    /// Queues `task` on this worker's stack (taken next, last in first
    /// out: depth first).
    pub(crate) fn spawn(&mut self, task: T) {
        self.pending.add();
        self.local.push(task);
    }
}

/// Runs `process` on every task, the roots and whatever it spawns, on
/// `threads` threads; each thread has a state made by `start`, returned
/// at the end (in no particular order: what they found must be combined
/// so that the order does not matter).
pub(crate) fn run_workers<T, S>(
    threads: usize,
    roots: Vec<T>,
    start: impl Fn() -> S + Sync,
    process: impl Fn(&mut S, T, &mut Spawner<'_, T>) + Sync,
) -> Vec<S>
where
    T: Send,
    S: Send,
{
    let threads = threads.max(1);
    let injector = Injector::new();
    let pending = Pending::new(roots.len());
    for root in roots {
        injector.push(root);
    }
    let locals: Vec<Worker<T>> = (0..threads).map(|_| Worker::new_lifo()).collect();
    let stealers: Vec<Stealer<T>> = locals.iter().map(Worker::stealer).collect();
    let shared = Shared {
        injector: &injector,
        stealers: &stealers,
        pending: &pending,
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = locals
            .into_iter()
            .enumerate()
            .map(|(me, local)| {
                let (shared, start, process) = (&shared, &start, &process);
                scope.spawn(move || {
                    let mut state = start();
                    shared.work(me, &local, |task, spawner| {
                        process(&mut state, task, spawner)
                    });
                    state
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an exploration worker panicked"))
            .collect()
    })
}

/// What the workers share.
struct Shared<'a, T> {
    injector: &'a Injector<T>,
    stealers: &'a [Stealer<T>],
    pending: &'a Pending,
}

impl<T> Shared<'_, T> {
    /// One worker's loop: its own stack first, then the roots, then the
    /// others' stacks; it stops when every task is finished.
    fn work(&self, me: usize, local: &Worker<T>, mut process: impl FnMut(T, &mut Spawner<'_, T>)) {
        let mut idle_rounds = 0u32;
        loop {
            match local.pop().or_else(|| self.steal(me, local)) {
                Some(task) => {
                    idle_rounds = 0;
                    let mut spawner = Spawner {
                        local,
                        pending: self.pending,
                    };
                    process(task, &mut spawner);
                    self.pending.finish();
                }
                None if self.pending.all_finished() => return,
                None => {
                    // Another worker is expanding the last task: wait for
                    // its children without burning the shared cores.
                    idle_rounds += 1;
                    if idle_rounds < 64 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                }
            }
        }
    }

    /// A batch from the roots, else the oldest task of another worker.
    fn steal(&self, me: usize, local: &Worker<T>) -> Option<T> {
        loop {
            let mut retry = false;
            match self.injector.steal_batch_and_pop(local) {
                Steal::Success(task) => return Some(task),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            let others = self.stealers.len();
            for offset in 1..others {
                match self.stealers[(me + offset) % others].steal() {
                    Steal::Success(task) => return Some(task),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A binary tree of depth 10 by path: every node processed once,
    /// whatever the number of threads.
    fn visit_tree(threads: usize) -> BTreeSet<Vec<u8>> {
        let found = run_workers(
            threads,
            vec![Vec::new()],
            Vec::new,
            |seen: &mut Vec<Vec<u8>>, path: Vec<u8>, spawner| {
                if path.len() < 10 {
                    for branch in [0, 1] {
                        let mut child = path.clone();
                        child.push(branch);
                        spawner.spawn(child);
                    }
                }
                seen.push(path);
            },
        );
        let all: Vec<Vec<u8>> = found.into_iter().flatten().collect();
        let distinct: BTreeSet<Vec<u8>> = all.iter().cloned().collect();
        assert_eq!(all.len(), distinct.len(), "a task ran twice");
        distinct
    }

    #[test]
    fn every_task_runs_once_on_any_number_of_threads() {
        let one = visit_tree(1);
        assert_eq!(one.len(), (1 << 11) - 1);
        assert_eq!(visit_tree(2), one);
        assert_eq!(visit_tree(3), one);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::{Arc, Mutex};

    /// Two workers share one queue guarded by a lock (crossbeam's deque is
    /// not loom-instrumented; what loom checks here is the protocol of
    /// `Pending`): the root spawns two children; each worker stops only
    /// when every task is finished, and no task is lost.
    #[test]
    fn loom_no_worker_stops_while_a_task_can_still_spawn() {
        loom::model(|| {
            let queue = Arc::new(Mutex::new(vec![0u8]));
            let pending = Arc::new(Pending::new(1));
            let done = Arc::new(AtomicUsize::new(0));
            let worker = {
                let (queue, pending, done) = (queue.clone(), pending.clone(), done.clone());
                move || loop {
                    let task = queue.lock().expect("no panic").pop();
                    match task {
                        Some(depth) => {
                            if depth == 0 {
                                for _ in 0..2 {
                                    pending.add();
                                    queue.lock().expect("no panic").push(depth + 1);
                                }
                            }
                            done.fetch_add(1, Ordering::SeqCst);
                            pending.finish();
                        }
                        None if pending.all_finished() => return,
                        None => loom::thread::yield_now(),
                    }
                }
            };
            let other = loom::thread::spawn(worker.clone());
            worker();
            other.join().expect("the worker finishes");
            assert_eq!(done.load(Ordering::SeqCst), 3);
            assert!(queue.lock().expect("no panic").is_empty());
        });
    }
}
