//! Policies: the 2020 qemu-block thread's positions as variants of the model.
//!
//! The thread "[PATCH v7 14/47] stream: Deal with filters" (Max Reitz,
//! Vladimir Sementsov-Ogievskiy, Andrey Shinkevich, June–August 2020)
//! argued which node a stream makes the backing file of its top when
//! filters sit in the chain. Each position differs from the others in a few
//! places of `block-stream`; a [`Policy`] names those places, and each
//! position is one small file in this directory that fills them in:
//!
//! - (a) [`FreezeRange`]: which links the stream freezes at start;
//! - (b) [`BackingChoice`]: which node becomes the backing node at
//!   completion, and whether it is resolved then or at start;
//! - (c) [`HeaderString`]: the backing string and format written into the
//!   streamed image's header;
//! - (d) [`StreamFilter`]: whether the stream inserts its own copy-on-read
//!   filter, and whether that filter is implicit without `filter-node-name`;
//! - (e) [`BaseSearch`]: whether implicit filters above the base are
//!   skipped when finding the node above the base.
//!
//! The default, [`QEMU_10_0`], is QEMU 10.0's behaviour bit for bit; the
//! others exist to compare (`cargo xtask sim policies`). A new position is
//! a new file with one `pub const` and a line in [`ALL`].
//!
//! ```
//! use strata_block::policy::{self, BackingChoice, StreamFilter};
//!
//! let freeze_base = policy::by_name("freeze-base").unwrap();
//! assert_eq!(freeze_base.new_backing, BackingChoice::BaseAtStart);
//! assert_eq!(policy::by_name("qemu-5.1").unwrap().filter, StreamFilter::None);
//! assert_eq!(policy::default().name, "qemu-10.0");
//! assert!(policy::by_name("qemu-4.2").is_none());
//! ```

mod above_base;
mod base_overlay;
mod freeze_base;
mod qemu_10_0;
mod qemu_5_1;
mod skip_implicit;

pub use above_base::ABOVE_BASE;
pub use base_overlay::BASE_OVERLAY;
pub use freeze_base::FREEZE_BASE;
pub use qemu_10_0::QEMU_10_0;
pub use qemu_5_1::QEMU_5_1;
pub use skip_implicit::SKIP_IMPLICIT;

/// One position of the thread, as the values of its variation points.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Policy {
    /// The name users pass (`--policy NAME`, `--strata-policy NAME`).
    pub name: &'static str,
    /// The position in one sentence, in the project's words.
    pub summary: &'static str,
    /// The thread message (or commit) it comes from: author and date.
    pub source: &'static str,
    /// (a) the links frozen at stream start.
    pub freeze: FreezeRange,
    /// (b) the new backing node and when it is resolved.
    pub new_backing: BackingChoice,
    /// (c) the string and format written into the header.
    pub header: HeaderString,
    /// (d) the stream's own filter.
    pub filter: StreamFilter,
    /// (e) how the node above the base is found.
    pub base_search: BaseSearch,
}

/// (a) How far down the stream freezes its top's chain at start. The links
/// from the top down to `base_overlay` are always frozen (nothing may take
/// away the data being copied); the variants say what else is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FreezeRange {
    /// Down to `base_overlay` (QEMU 10.0: the copy-on-read filter's
    /// `bottom`; QEMU 5.1: `bdrv_freeze_backing_chain(bs, bottom)`).
    BaseOverlay,
    /// Down to `above_base`, so filters above the base stay where they are
    /// during the job (Max Reitz's v7: `bdrv_freeze_backing_chain(bs,
    /// above_base)`).
    AboveBase,
    /// Down to the base itself, so the base cannot change (QEMU before
    /// c624b015bf14fe01).
    Base,
}

/// (c) What the streamed image's header names as its backing file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum HeaderString {
    /// QEMU 10.0: the user's `backing-file`, else the filename of the first
    /// non-filter below the new backing node, read at completion; the
    /// format is that node's driver. A filter's name never reaches a header.
    UnfilteredAtCompletion,
    /// QEMU 5.1 and Max's v7: the string fixed at start (`backing-file`, else
    /// `base` as given, else the `base-node`'s filename — a filter's
    /// `json:` name when the base is a filter); the format is the new
    /// backing node's driver, a filter's driver if it is one.
    StringAtStart,
}

/// (d) Whether the stream reads through a copy-on-read filter of its own.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum StreamFilter {
    /// No filter: the job copies on read from the top itself (QEMU 5.1).
    None,
    /// A copy-on-read filter above the top, implicit when the user gave no
    /// `filter-node-name` (QEMU 10.0).
    ImplicitUnlessNamed,
}

/// (e) How `above_base` is found.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BaseSearch {
    /// The node whose chain child is the base (QEMU 10.0).
    DirectParent,
    /// From the base upwards past implicit filters (another job's filter
    /// that the user could not name) to the first node that is not one.
    SkipImplicitFilters,
}

/// (b) of a [`Policy`]: the rule for choosing the new backing node of
/// the streamed image, and when it is resolved.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BackingChoice {
    /// QEMU 10.0 (Max Reitz's rule): the chain child of `above_base` at
    /// completion; filters between `base_overlay` and the base are dropped.
    AboveBase,
    /// The thread's alternative (Vladimir Sementsov-Ogievskiy): the chain
    /// child of `base_overlay` at completion; filters above the base stay.
    BaseOverlay,
    /// "Freeze the base": the base named at start, whatever happened since.
    BaseAtStart,
}

/// Every policy, the default first.
pub const ALL: &[&Policy] = &[
    &QEMU_10_0,
    &QEMU_5_1,
    &BASE_OVERLAY,
    &ABOVE_BASE,
    &FREEZE_BASE,
    &SKIP_IMPLICIT,
];

/// QEMU 10.0's behaviour.
pub fn default() -> &'static Policy {
    &QEMU_10_0
}

/// The policy called `name`.
pub fn by_name(name: &str) -> Option<&'static Policy> {
    ALL.iter().copied().find(|p| p.name == name)
}

/// The names of all policies, for error messages and help.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|p| p.name).collect()
}
