//! An arena whose ids carry a generation, so that a stale id is an error
//! and never an alias of a newer value stored in the same slot.

use std::sync::Arc;

/// A generation-checked index into an [`Arena`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RawId {
    index: u32,
    generation: u32,
}

/// A value behind an `Arc`: cloning an arena (a simulator's world, a
/// transaction's snapshot for rollback) shares every value, and the first
/// `get_mut` of a shared one copies it alone.
#[derive(Clone, Debug)]
struct Slot<T> {
    generation: u32,
    value: Arc<T>,
}

/// Values stored in slots, addressed by [`RawId`]s.
///
/// Every insertion gets a fresh generation from a counter that only grows, so
/// an id that outlived its value can never match a later value in the slot.
///
/// Which slot a value takes depends only on which slots are taken: the
/// lowest free one, and the slot list never ends in a free slot. So two
/// arenas holding values at the same ids, with the same generation counter,
/// give the same ids to what they store next, whatever was inserted and
/// removed before (`Graph::hash_ids` feeds exactly that to a state key:
/// the ids held, and the counter by [`Arena::hash_layout`]). A free list in
/// removal order (as `slab` keeps) would make the ids depend on the path
/// by which an arena came to hold its values.
#[derive(Clone, Debug)]
pub struct Arena<T> {
    slots: Vec<Option<Slot<T>>>,
    next_generation: u32,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Arena {
            slots: Vec::new(),
            next_generation: 0,
        }
    }
}

impl<T> Arena<T> {
    /// Whether `other` holds the very values of this arena in the same
    /// slots: one is a clone of the other and neither has changed a value
    /// since (a change to a shared value copies it first, see
    /// [`Arena::get_mut`]), inserted or removed one.
    pub fn shares_all(&self, other: &Arena<T>) -> bool {
        self.slots.len() == other.slots.len()
            && self
                .slots
                .iter()
                .zip(other.slots.iter())
                .all(|pair| match pair {
                    (None, None) => true,
                    (Some(a), Some(b)) => {
                        a.generation == b.generation && Arc::ptr_eq(&a.value, &b.value)
                    }
                    _ => false,
                })
    }

    /// Feeds `state` what decides, with the ids of the values it holds
    /// (which whoever holds them hashes), the ids of values stored from now
    /// on: the generation counter.
    pub fn hash_layout<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u32(self.next_generation);
    }
}

impl<T: Clone> Arena<T> {
    /// Stores `value` in the lowest free slot and returns its id.
    pub fn insert(&mut self, value: T) -> RawId {
        let generation = self.next_generation;
        self.next_generation = self
            .next_generation
            .checked_add(1)
            .expect("arena generations exhausted");
        let slot = Some(Slot {
            generation,
            value: Arc::new(value),
        });
        let index = match self.slots.iter().position(Option::is_none) {
            Some(free) => {
                self.slots[free] = slot;
                free
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        RawId {
            index: u32::try_from(index).expect("arena index fits u32"),
            generation,
        }
    }

    /// The value for `id`, or `None` if `id` is stale or was never issued.
    pub fn get(&self, id: RawId) -> Option<&T> {
        self.slots
            .get(id.index as usize)
            .and_then(Option::as_ref)
            .filter(|slot| slot.generation == id.generation)
            .map(|slot| &*slot.value)
    }

    /// Mutable access to the value for `id`, if `id` is live.
    pub fn get_mut(&mut self, id: RawId) -> Option<&mut T> {
        self.slots
            .get_mut(id.index as usize)
            .and_then(Option::as_mut)
            .filter(|slot| slot.generation == id.generation)
            .map(|slot| Arc::make_mut(&mut slot.value))
    }

    /// Removes the value for `id`; `false` if `id` was not live.
    pub fn remove(&mut self, id: RawId) -> bool {
        if self.get(id).is_none() {
            return false;
        }
        self.slots[id.index as usize] = None;
        // No trailing free slots: the list's length depends only on
        // which slots are taken.
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        true
    }

    /// Whether `id` names a live value.
    pub fn contains(&self, id: RawId) -> bool {
        self.get(id).is_some()
    }
}
