//! `above-base`: the series as Max proposed it in the thread.

use super::{BackingChoice, BaseSearch, FreezeRange, HeaderString, Policy, StreamFilter};

/// Max's v7 14/47: `above_base` tracked and frozen, `backing(above_base)`
/// at completion; no stream filter yet, the header string fixed at start.
pub const ABOVE_BASE: Policy = Policy {
    name: "above-base",
    summary: "Track the node directly above the base, freeze the chain down to \
              it, and make its backing node at completion the new backing: \
              filters above the base that existed at start are frozen and then \
              dropped. The stream has no filter of its own yet, and the header \
              string is the one known at start, as in QEMU 5.1.",
    source: "Max Reitz, \"[PATCH v7 14/47] stream: Deal with filters\", 25 June 2020, \
             and his replies of 16 July and 10 August 2020",
    freeze: FreezeRange::AboveBase,
    new_backing: BackingChoice::AboveBase,
    header: HeaderString::StringAtStart,
    filter: StreamFilter::None,
    base_search: BaseSearch::DirectParent,
};
