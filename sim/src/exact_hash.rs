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
