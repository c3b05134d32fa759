//! `qemu-10.0`: what QEMU 10.0 does, the model's default.

use super::{BackingChoice, BaseSearch, FreezeRange, HeaderString, Policy, StreamFilter};

/// QEMU 10.0: Max's `above_base` rule with Andrey's copy-on-read filter.
pub const QEMU_10_0: Policy = Policy {
    name: "qemu-10.0",
    summary: "The node below `above_base` at completion becomes the backing \
              node, so filters between the bottom COW node and the base are \
              dropped; the stream reads through its own copy-on-read filter \
              whose `bottom` freezes the chain down to `base_overlay` only; \
              the header names the first non-filter below the new backing.",
    source: "Max Reitz, \"[PATCH v7 14/47] stream: Deal with filters\", 25 June 2020 \
             (merged in 5.2), with Andrey Shinkevich's stream COR filter (6.0)",
    freeze: FreezeRange::BaseOverlay,
    new_backing: BackingChoice::AboveBase,
    header: HeaderString::UnfilteredAtCompletion,
    filter: StreamFilter::ImplicitUnlessNamed,
    base_search: BaseSearch::DirectParent,
};
