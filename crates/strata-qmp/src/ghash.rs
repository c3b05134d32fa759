//! GLib's `GHashTable` (2.74, as linked by qemu-storage-daemon 10.0.2),
//! reduced to what decides iteration order: open addressing with quadratic
//! probing, tombstones, and in-place resizing.
//!
//! QEMU's input visitor keeps the not-yet-visited members of each JSON object
//! in such a table and, after visiting a struct, reports the *first* key
//! left over: "Parameter 'x' is unexpected".  With several unexpected
//! members, which one is named depends on this table's layout.

const MIN_SHIFT: u32 = 3;
const UNUSED: u32 = 0;
const TOMBSTONE: u32 = 1;
const PRIME_MOD: [u32; 32] = [
    1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
    262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213, 33554393, 67108859, 134217689,
    268435399, 536870909, 1073741789, 2147483647,
];

/// `g_str_hash` (djb2 over *signed* chars).
fn str_hash(key: &[u8]) -> u32 {
    key.iter().fold(5381u32, |h, &b| {
        (h << 5).wrapping_add(h).wrapping_add(b as i8 as i32 as u32)
    })
}

/// A string set with `GHashTable`'s layout.
#[derive(Clone, Debug)]
pub(crate) struct GHashSet {
    hashes: Vec<u32>,
    keys: Vec<Option<Vec<u8>>>,
    mod_: u32,
    mask: u32,
    nnodes: usize,
    noccupied: usize,
}

impl GHashSet {
    pub(crate) fn new() -> GHashSet {
        let mut t = GHashSet {
            hashes: Vec::new(),
            keys: Vec::new(),
            mod_: 0,
            mask: 0,
            nnodes: 0,
            noccupied: 0,
        };
        t.set_shift(MIN_SHIFT);
        t.hashes = vec![UNUSED; t.size()];
        t.keys = vec![None; t.size()];
        t
    }

    fn size(&self) -> usize {
        self.mask as usize + 1
    }

    fn set_shift(&mut self, shift: u32) {
        self.mod_ = PRIME_MOD[shift as usize];
        self.mask = (1u32 << shift) - 1;
    }

    fn hash_to_index(&self, hash: u32) -> u32 {
        hash.wrapping_mul(11) % self.mod_
    }

    fn lookup(&self, key: &[u8]) -> (usize, u32) {
        let mut hash = str_hash(key);
        if hash < 2 {
            hash = 2;
        }
        let mut index = self.hash_to_index(hash);
        let mut first_tombstone = None;
        let mut step = 0;
        loop {
            let node_hash = self.hashes[index as usize];
            if node_hash == UNUSED {
                break;
            }
            if node_hash == hash && self.keys[index as usize].as_deref() == Some(key) {
                return (index as usize, hash);
            }
            if node_hash == TOMBSTONE && first_tombstone.is_none() {
                first_tombstone = Some(index as usize);
            }
            step += 1;
            index = (index + step) & self.mask;
        }
        (first_tombstone.unwrap_or(index as usize), hash)
    }

    /// `g_hash_table_insert(h, key, NULL)`.
    pub(crate) fn insert(&mut self, key: &[u8]) {
        let (index, hash) = self.lookup(key);
        let old = self.hashes[index];
        if old >= 2 {
            return;
        }
        self.hashes[index] = hash;
        self.keys[index] = Some(key.to_vec());
        self.nnodes += 1;
        if old == UNUSED {
            self.noccupied += 1;
            self.maybe_resize();
        }
    }

    /// `g_hash_table_remove(h, key)`.
    pub(crate) fn remove(&mut self, key: &[u8]) {
        let (index, _) = self.lookup(key);
        if self.hashes[index] < 2 {
            return;
        }
        self.hashes[index] = TOMBSTONE;
        self.keys[index] = None;
        self.nnodes -= 1;
        self.maybe_resize();
    }

    /// The first key `g_hash_table_iter_next` returns.
    pub(crate) fn first(&self) -> Option<&[u8]> {
        (0..self.size())
            .find(|&i| self.hashes[i] >= 2)
            .and_then(|i| self.keys[i].as_deref())
    }

    fn maybe_resize(&mut self) {
        let size = self.size();
        if (size > self.nnodes * 4 && size > 1 << MIN_SHIFT)
            || size <= self.noccupied + self.noccupied / 16
        {
            self.resize();
        }
    }

    fn resize(&mut self) {
        let old_size = self.size();
        let target = (self.nnodes as f64 * 1.333) as u32;
        let shift = (32 - target.leading_zeros()).max(MIN_SHIFT);
        self.set_shift(shift);
        let new_size = self.size();
        if new_size > old_size {
            self.hashes.resize(new_size, UNUSED);
            self.keys.resize(new_size, None);
        }
        let mut relocated = vec![false; new_size.max(old_size)];
        for i in 0..old_size {
            let mut node_hash = self.hashes[i];
            if node_hash < 2 {
                self.hashes[i] = UNUSED;
                continue;
            }
            if relocated[i] {
                continue;
            }
            self.hashes[i] = UNUSED;
            let mut key = self.keys[i].take();
            loop {
                let mut slot = self.hash_to_index(node_hash);
                let mut step = 0;
                while relocated[slot as usize] {
                    step += 1;
                    slot = (slot + step) & self.mask;
                }
                let slot = slot as usize;
                relocated[slot] = true;
                let replaced = self.hashes[slot];
                self.hashes[slot] = node_hash;
                let evicted = std::mem::replace(&mut self.keys[slot], key);
                if replaced < 2 {
                    break;
                }
                node_hash = replaced;
                key = evicted;
            }
        }
        self.hashes.truncate(new_size);
        self.keys.truncate(new_size);
        self.noccupied = self.nnodes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_growth_and_shrink() {
        let mut t = GHashSet::new();
        let keys: Vec<String> = (0..40).map(|i| format!("key{i}")).collect();
        for k in &keys {
            t.insert(k.as_bytes());
        }
        for k in &keys[..39] {
            t.remove(k.as_bytes());
        }
        assert_eq!(t.first(), Some(keys[39].as_bytes()));
    }
}
