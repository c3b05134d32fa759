//! What a world has recorded (data, events, step records), fed to a state
//! key's hasher exactly as an observation would print it.
//!
//! `Datum` has no `Hash`: its `PartialEq` compares dictionaries as sets and
//! `1` with `1.0`, and a `Hash` must agree with that. A state key must not:
//! two worlds whose records print differently lead to different
//! observations, so dictionaries count in written order and numbers by
//! their type and bits.

use crate::scenario::{Datum, EventData, StepRecord};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use strata_block::StateKeyHasher;

/// Feeding a hasher with everything an observation prints of a value.
pub(crate) trait ExactHash {
    /// Feeds `h` with `self`, exactly.
    fn exact_hash<H: Hasher>(&self, h: &mut H);
}

impl ExactHash for Datum {
    fn exact_hash<H: Hasher>(&self, h: &mut H) {
        std::mem::discriminant(self).hash(h);
        match self {
            Datum::Null => {}
            Datum::Bool(b) => b.hash(h),
            Datum::Int(i) => i.hash(h),
            Datum::Float(f) => f.to_bits().hash(h),
            Datum::Str(s) => s.hash(h),
            Datum::List(items) => items.exact_hash(h),
            Datum::Dict(members) => {
                exact_hash_members(members.iter().map(|(name, value)| (name, value)), h)
            }
        }
    }
}

/// Named values (a dictionary's members, a world's labels) in their order.
pub(crate) fn exact_hash_members<'a, H: Hasher>(
    members: impl ExactSizeIterator<Item = (&'a String, &'a Datum)>,
    h: &mut H,
) {
    members.len().hash(h);
    for (name, value) in members {
        name.hash(h);
        value.exact_hash(h);
    }
}

impl<T: ExactHash> ExactHash for [T] {
    fn exact_hash<H: Hasher>(&self, h: &mut H) {
        self.len().hash(h);
        for item in self {
            item.exact_hash(h);
        }
    }
}

impl<T: ExactHash> ExactHash for Vec<T> {
    fn exact_hash<H: Hasher>(&self, h: &mut H) {
        self.as_slice().exact_hash(h);
    }
}

impl<T: ExactHash> ExactHash for Option<T> {
    fn exact_hash<H: Hasher>(&self, h: &mut H) {
        self.is_some().hash(h);
        if let Some(value) = self {
            value.exact_hash(h);
        }
    }
}

impl ExactHash for EventData {
    fn exact_hash<H: Hasher>(&self, h: &mut H) {
        let EventData { name, data } = self;
        name.hash(h);
        data.exact_hash(h);
    }
}

impl ExactHash for StepRecord {
    fn exact_hash<H: Hasher>(&self, h: &mut H) {
        // Every field by name: a field added to StepRecord does not
        // compile here until it is hashed.
        let StepRecord {
            i,
            note,
            execute,
            arguments,
            wait,
            settle,
            wait_status,
            wait_progress,
            sleep,
            result,
            error,
            return_value,
            data,
            same_as,
            same,
            status,
            jobs,
            graph,
            expect,
            expect_met,
        } = self;
        (i, note, execute, result, error, same_as, same, status).hash(h);
        (jobs, graph, expect_met).hash(h);
        for datum in [
            arguments,
            wait,
            settle,
            wait_status,
            wait_progress,
            sleep,
            return_value,
            data,
            expect,
        ] {
            datum.exact_hash(h);
        }
    }
}

/// An append-only list that the clones of a world share until one of them
/// appends, with a running digest of its items: a state key hashes the
/// digest, not every item again (a world's history only grows, and the
/// explorer keys every state it visits).
#[derive(Clone, Debug)]
pub(crate) struct History<T> {
    items: Arc<Vec<T>>,
    digest: u64,
}

impl<T> Default for History<T> {
    fn default() -> History<T> {
        History {
            items: Arc::default(),
            digest: 0,
        }
    }
}

impl<T: ExactHash + Clone> History<T> {
    /// Appends `item` (copying the list if another world shares it).
    pub(crate) fn push(&mut self, item: T) {
        let mut h = StateKeyHasher::default();
        self.digest.hash(&mut h);
        item.exact_hash(&mut h);
        self.digest = h.finish();
        Arc::make_mut(&mut self.items).push(item);
    }

    /// The items, oldest first.
    pub(crate) fn as_slice(&self) -> &[T] {
        &self.items
    }

    /// The items, leaving the list empty.
    pub(crate) fn take(&mut self) -> Vec<T> {
        self.digest = 0;
        Arc::unwrap_or_clone(std::mem::take(&mut self.items))
    }

    /// A digest of the items and their order: equal lists, equal digests.
    pub(crate) fn digest(&self) -> u64 {
        self.digest
    }
}
