//! `base-overlay`: Vladimir's proposal in the thread.

use super::{BackingChoice, BaseSearch, FreezeRange, HeaderString, Policy, StreamFilter};

/// Freeze down to the bottom COW node only; the new backing node is
/// `backing(base_overlay)` at completion, so filters above the base stay.
pub const BASE_OVERLAY: Policy = Policy {
    name: "base-overlay",
    summary: "Freeze the chain down to the bottom COW node only and make \
              `backing(base_overlay)` at completion the backing node: filters \
              above the base belong to the base and are kept, and a parallel \
              stream below may insert its filter there. Otherwise as qemu-10.0.",
    source: "Vladimir Sementsov-Ogievskiy, reply of 7 August 2020 (\"I vote for \
             freezing up to base_overlay, and use backing(base_overlay) as final backing\")",
    freeze: FreezeRange::BaseOverlay,
    new_backing: BackingChoice::BaseOverlay,
    header: HeaderString::UnfilteredAtCompletion,
    filter: StreamFilter::ImplicitUnlessNamed,
    base_search: BaseSearch::DirectParent,
};
