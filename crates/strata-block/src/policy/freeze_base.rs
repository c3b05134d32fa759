//! `freeze-base`: revert c624b015bf14fe01.

use super::{BackingChoice, BaseSearch, FreezeRange, HeaderString, Policy, StreamFilter};

/// The base frozen again, so it is certainly the new backing node.
pub const FREEZE_BASE: Policy = Policy {
    name: "freeze-base",
    summary: "Freeze the chain down to the base itself, so that the base given \
              at start is the backing node at completion, as the QAPI schema \
              promises; the price is that no other job may change the link \
              above the base while the stream runs. Otherwise as qemu-10.0.",
    source: "Vladimir Sementsov-Ogievskiy, reply of 10 August 2020 (\"Then, we \
             should freeze base node again, so just revert c624b015bf14fe01\")",
    freeze: FreezeRange::Base,
    new_backing: BackingChoice::BaseAtStart,
    header: HeaderString::UnfilteredAtCompletion,
    filter: StreamFilter::ImplicitUnlessNamed,
    base_search: BaseSearch::DirectParent,
};
