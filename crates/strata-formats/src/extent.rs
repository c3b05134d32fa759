//! Allocation answers: what one layer holds for a range of guest bytes.

/// What a layer holds for an [`Extent`], as `qemu-img map` reports it at
/// depth 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExtentKind {
    /// Allocated in this layer with data (`"data": true`), compressed
    /// clusters included.
    Data,
    /// Reads as zeroes because this layer says so (`"zero": true`, a v3
    /// zero cluster), whatever the backing file holds.
    Zero,
    /// Not allocated here: look in the backing file (zeroes if none).
    Unallocated,
}

/// A run of guest bytes that one layer maps the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Extent {
    /// Guest offset of the run.
    pub offset: u64,
    /// Length in bytes (never 0 for a non-empty query).
    pub len: u64,
    /// What the layer holds there.
    pub kind: ExtentKind,
}

impl Extent {
    /// The guest offset just past the run.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}
