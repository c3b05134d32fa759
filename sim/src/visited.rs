//! The visited set every worker of an exploration shares: state key ->
//! the largest preemption budget the state was explored with.
//!
//! Sharded: a key's shard is picked by its top bits (keys are hashes), and
//! each shard is a map behind its own lock, so two workers contend only
//! when their states fall in the same shard at the same moment. Under
//! `--cfg loom` the locks are loom's and the tests below explore every
//! interleaving of two workers raising the same key.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

#[cfg(loom)]
use loom::sync::Mutex;
#[cfg(not(loom))]
use std::sync::Mutex;

/// Shards of the map (a power of two: the top bits of a key pick one).
const SHARD_BITS: u32 = 6;

/// State keys are already hashes: a map keyed by them needs no rehash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

type Shard = HashMap<u64, usize, BuildHasherDefault<KeyHasher>>;

/// What [`Visited::raise`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Visit {
    /// The key was never visited: explore it.
    New,
    /// The key was visited with a smaller budget: explore it again, the
    /// larger budget reaches choices the smaller one could not afford.
    Richer,
    /// The key was visited with at least this budget: nothing new below.
    Known,
}

impl Visit {
    /// Whether the state must be explored.
    pub(crate) fn explores(self) -> bool {
        self != Visit::Known
    }
}

/// A concurrent map of visited state keys to their largest budget.
pub(crate) struct Visited {
    shards: Box<[Mutex<Shard>]>,
}

impl Default for Visited {
    fn default() -> Visited {
        Visited {
            shards: (0..1 << SHARD_BITS)
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
        }
    }
}

impl Visited {
    fn shard(&self, key: u64) -> &Mutex<Shard> {
        &self.shards[(key >> (u64::BITS - SHARD_BITS)) as usize]
    }

    /// Records that `key` was reached with `budget`: whether it must be
    /// explored (first visit, or a larger budget than any before). Of two
    /// workers raising one key at once, exactly one explores each budget
    /// that is larger than every budget recorded before it.
    pub(crate) fn raise(&self, key: u64, budget: usize) -> Visit {
        let mut shard = self.shard(key).lock().expect("no worker panics");
        match shard.get_mut(&key) {
            None => {
                shard.insert(key, budget);
                Visit::New
            }
            Some(known) if *known < budget => {
                *known = budget;
                Visit::Richer
            }
            Some(_) => Visit::Known,
        }
    }

    /// The largest budget `key` was explored with.
    #[cfg(any(test, loom))]
    pub(crate) fn budget(&self, key: u64) -> Option<usize> {
        let shard = self.shard(key).lock().expect("no worker panics");
        shard.get(&key).copied()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_explored_again_only_with_a_larger_budget() {
        let v = Visited::default();
        assert_eq!(v.raise(7, 1), Visit::New);
        assert_eq!(v.raise(7, 1), Visit::Known);
        assert_eq!(v.raise(7, 0), Visit::Known);
        assert_eq!(v.raise(7, 2), Visit::Richer);
        assert_eq!(v.budget(7), Some(2));
        // Keys in different shards and in the same shard stay apart.
        assert_eq!(v.raise(u64::MAX, 0), Visit::New);
        assert_eq!(v.raise(8, 0), Visit::New);
        assert_eq!(v.budget(8), Some(0));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Another worker raises `key` to `theirs` while this one raises it
    /// to `mine`: both decisions and the budget recorded in the end.
    fn race(key: u64, theirs: usize, mine: usize) -> (Visit, Visit, Option<usize>) {
        let visited = Arc::new(Visited::default());
        let other = visited.clone();
        let handle = loom::thread::spawn(move || other.raise(key, theirs));
        let my_visit = visited.raise(key, mine);
        let their_visit = handle.join().expect("the worker finishes");
        (their_visit, my_visit, visited.budget(key))
    }

    #[test]
    fn loom_two_workers_raising_one_key_agree_on_the_largest_budget() {
        loom::model(|| {
            let (low, high, budget) = race(42, 1, 2);
            // The larger budget is always explored; the smaller one only
            // when it came first.
            assert!(high.explores());
            let expected_low = if high == Visit::New {
                Visit::Known
            } else {
                Visit::New
            };
            assert_eq!(low, expected_low);
            assert_eq!(budget, Some(2));
        });
    }

    #[test]
    fn loom_two_workers_reaching_one_new_key_explore_it_once() {
        loom::model(|| {
            let (first, second, _) = race(9, 1, 1);
            assert_eq!([first, second].iter().filter(|v| v.explores()).count(), 1);
        });
    }
}
