//! `qemu-5.1`: the stream before the series.

use super::{BackingChoice, BaseSearch, FreezeRange, HeaderString, Policy, StreamFilter};

/// QEMU 5.1: one `bottom` node (the overlay of the base) tracked since
/// c624b015bf14fe01, no filter of the stream's own, and a header string
/// fixed at start with the new backing node's driver as its format.
pub const QEMU_5_1: Policy = Policy {
    name: "qemu-5.1",
    summary: "The stream tracks one `bottom` node (the overlay of the base) and \
              makes `backing(bottom)` at completion the backing node; it has \
              no filter of its own and copies on read from the top; the \
              header gets the string known at start (`backing-file`, `base`, \
              or the base node's filename) with the new backing node's \
              driver as format, even a filter's.",
    source: "Andrey Shinkevich, c624b015bf14fe01 \"block/stream: introduce a bottom \
             node\" (May 2019), as QEMU 5.1 shipped it",
    freeze: FreezeRange::BaseOverlay,
    new_backing: BackingChoice::BaseOverlay,
    header: HeaderString::StringAtStart,
    filter: StreamFilter::None,
    base_search: BaseSearch::DirectParent,
};
