//! A small least-recently-used cache of metadata tables (L2 tables,
//! refcount blocks), keyed by host offset.
//!
//! Metadata is written through to storage as soon as it changes, so every
//! cached table is clean and eviction never writes.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Tables shared with clones until one of them changes a table.
#[derive(Clone)]
pub(crate) struct TableCache<T> {
    tables: BTreeMap<u64, (Arc<T>, u64)>,
    by_age: BTreeMap<u64, u64>,
    tick: u64,
    capacity: usize,
}

impl<T: Clone> TableCache<T> {
    pub(crate) fn new(capacity: usize) -> TableCache<T> {
        TableCache {
            tables: BTreeMap::new(),
            by_age: BTreeMap::new(),
            tick: 0,
            capacity: capacity.max(1),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tables.len()
    }

    pub(crate) fn get(&mut self, offset: u64) -> Option<Arc<T>> {
        let tick = self.next_tick();
        let (table, age) = self.tables.get_mut(&offset)?;
        self.by_age.remove(age);
        *age = tick;
        self.by_age.insert(tick, offset);
        Some(Arc::clone(table))
    }

    /// The cached table at `offset`, unshared so it can be changed.
    pub(crate) fn get_mut(&mut self, offset: u64) -> Option<&mut T> {
        self.tables.get_mut(&offset).map(|(t, _)| Arc::make_mut(t))
    }

    pub(crate) fn insert(&mut self, offset: u64, table: Arc<T>) {
        self.remove(offset);
        while self.tables.len() >= self.capacity {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.tables.remove(&oldest);
        }
        let tick = self.next_tick();
        self.by_age.insert(tick, offset);
        self.tables.insert(offset, (table, tick));
    }

    pub(crate) fn remove(&mut self, offset: u64) {
        if let Some((_, age)) = self.tables.remove(&offset) {
            self.by_age.remove(&age);
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut c = TableCache::new(2);
        c.insert(1, Arc::new(vec![1u64]));
        c.insert(2, Arc::new(vec![2u64]));
        assert!(c.get(1).is_some());
        c.insert(3, Arc::new(vec![3u64]));
        assert!(c.get(2).is_none());
        assert_eq!(*c.get(1).unwrap(), vec![1]);
        c.get_mut(3).unwrap().push(4);
        assert_eq!(*c.get(3).unwrap(), vec![3, 4]);
        assert_eq!(c.len(), 2);
    }
}
