//! A canonical key for a world's state, so that a simulator can explore
//! each distinct state once.

use crate::files::MemFiles;
use crate::layer::BlockLayer;
use crate::state::DriverState;
use std::hash::{Hash, Hasher};
#[cfg(doc)]
use strata_graph::Graph;
use xxhash_rust::xxh3::xxh3_64;

impl BlockLayer<MemFiles> {
    /// A hash of everything that decides what the world does next: the
    /// graph (by node names), the ids its nodes, edges and roots hold and
    /// those its arenas will give out next ([`Graph::hash_ids`]: jobs and
    /// blockers hold ids, and a node added later gets the same id in two
    /// worlds with equal keys only then), each node's driver state, the
    /// files' contents, the jobs and the clock. Two worlds with equal keys
    /// behave the same under the same schedule. The values are hashed as
    /// they are, not formatted: a state key is computed for every state an
    /// exploration visits.
    pub fn state_key(&self) -> u64 {
        let mut h = StateKeyHasher::default();
        self.core.bg.hash(&mut h);
        let g = self.core.bg.graph();
        g.hash_ids(&mut h);
        for node in g.nodes() {
            g.name(node).hash(&mut h);
            self.core.state.get(&node).map(DriverStateKey).hash(&mut h);
        }
        self.core.files.hash_contents(&mut h);
        self.jobs.hash(&mut h);
        self.core.throttle_groups.hash(&mut h);
        (self.core.now_ns, self.core.io_wait_until).hash(&mut h);
        h.finish()
    }
}

/// The hasher of state keys: it collects the bytes that `Hash` feeds it and
/// hashes them in one go with XXH3 and its fixed default secret, so a key
/// is the same in every process and on every thread. A key is made of many
/// small fields, and appending each to a buffer costs less than a
/// streaming hasher's update.
pub struct StateKeyHasher {
    bytes: Vec<u8>,
}

impl Default for StateKeyHasher {
    /// Room for a typical world's key up front: growing the buffer field
    /// by field reallocates it several times per state.
    fn default() -> StateKeyHasher {
        StateKeyHasher {
            bytes: Vec::with_capacity(4096),
        }
    }
}

impl Hasher for StateKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    fn finish(&self) -> u64 {
        xxh3_64(&self.bytes)
    }
}

/// A node's driver state as a state key sees it. A format's image counts
/// by what the graph reads of its header; the rest of its metadata is in
/// its file, whose content is hashed with the files, and its caches do
/// not change what it reads.
struct DriverStateKey<'a>(&'a DriverState);

impl Hash for DriverStateKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        std::mem::discriminant(self.0).hash(h);
        match self.0 {
            DriverState::File { path } => path.hash(h),
            DriverState::Format {
                image,
                auto_backing_file,
            } => (
                image.backing_file(),
                image.backing_format(),
                image.virtual_size(),
                image.origin(),
                auto_backing_file,
            )
                .hash(h),
            DriverState::Throttle { group } => group.hash(h),
            DriverState::CopyOnRead { bottom } => bottom.hash(h),
            DriverState::Blkdebug {
                inject,
                set_state,
                state,
                align,
            } => (inject, set_state, state, align).hash(h),
            DriverState::MirrorTop(mirror) => mirror.hash(h),
            DriverState::Quorum { threshold } => threshold.hash(h),
            DriverState::Null {
                length,
                read_zeroes,
            } => (length, read_zeroes).hash(h),
            DriverState::CommitTop | DriverState::Busy => {}
        }
    }
}
