//! A canonical key for a world's state, so that a simulator can explore
//! each distinct state once.

use crate::files::MemFiles;
use crate::layer::BlockLayer;
use crate::state::DriverState;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

impl BlockLayer<MemFiles> {
    /// A hash of everything that decides what the world does next: the
    /// graph (by node names, not arena slots), each node's driver state, the
    /// files' contents, the jobs and the clock. Two worlds with equal keys
    /// behave the same under the same schedule. (`DefaultHasher::new` has
    /// fixed keys, so the key is the same in every process.)
    pub fn state_key(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.core.bg.hash(&mut h);
        let g = self.core.bg.graph();
        for node in g.nodes() {
            g.name(node).hash(&mut h);
            match self.core.state.get(&node) {
                Some(DriverState::Format {
                    image,
                    auto_backing_file,
                }) => {
                    (
                        image.backing_file(),
                        image.backing_format(),
                        image.virtual_size(),
                        auto_backing_file,
                    )
                        .hash(&mut h);
                }
                Some(other) => format!("{other:?}").hash(&mut h),
                None => 0u8.hash(&mut h),
            }
        }
        for (path, content) in self.core.files.content_hashes() {
            (path, content.0).hash(&mut h);
        }
        format!("{:?}", self.jobs).hash(&mut h);
        self.core.throttle_groups.hash(&mut h);
        (self.core.now_ns, self.core.io_wait_until).hash(&mut h);
        h.finish()
    }
}
