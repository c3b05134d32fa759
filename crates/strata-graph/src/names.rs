//! Node names: QEMU's `id_wellformed` rule and its generated `#block` names.

use crate::error::{Error, ErrorKind, Result};

/// `sizeof(bs->node_name)` is 32, so names have at most 31 characters.
const MAX_NODE_NAME_LEN: usize = 31;

/// `id_wellformed` (util/id.c): a letter, then alphanumerics or `-._`.
pub fn id_wellformed(id: &str) -> bool {
    let mut chars = id.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// Checks a user-given node name the way `bdrv_assign_node_name` does, in its
/// order: well-formed, then unique, then short enough.
pub(crate) fn check_user_node_name(name: &str, taken: impl Fn(&str) -> bool) -> Result<()> {
    if !id_wellformed(name) {
        return Err(Error::new(ErrorKind::InvalidNodeName(name.to_string())));
    }
    if taken(name) {
        return Err(Error::new(ErrorKind::DuplicateNodeName(name.to_string())));
    }
    if name.len() > MAX_NODE_NAME_LEN {
        return Err(Error::new(ErrorKind::NodeNameTooLong));
    }
    Ok(())
}

/// `id_generate(ID_BLOCK)`: `#block`, a counter, and two random digits.
///
/// The digits come from a seeded SplitMix64 stream owned by the graph, so a
/// world replays to the same names; the OS's randomness is never used. The
/// generator is five lines, which is why it is not a dependency.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct NameGenerator {
    counter: u64,
    rng_state: u64,
}

impl NameGenerator {
    pub(crate) fn new(seed: u64) -> NameGenerator {
        NameGenerator {
            counter: 0,
            rng_state: seed,
        }
    }

    pub(crate) fn next_name(&mut self) -> String {
        let digits = self.next_random() % 100;
        let name = format!("#block{}{:02}", self.counter, digits);
        self.counter += 1;
        name
    }

    fn next_random(&mut self) -> u64 {
        self.rng_state = self.rng_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
