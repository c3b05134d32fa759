//! `skip-implicit`: Max's way to keep another job's filter.

use super::{BackingChoice, BaseSearch, FreezeRange, HeaderString, Policy, StreamFilter};

/// qemu-10.0, except that `above_base` is found by ascending from the base
/// past implicit filters, which the user could not have named.
pub const SKIP_IMPLICIT: Policy = Policy {
    name: "skip-implicit",
    summary: "As qemu-10.0, but the node above the base is found by ascending \
              from the base past implicit filters (another job's filter made \
              without `filter-node-name`) to the first node that is not one: \
              a user who named the base could not have named those filters, \
              so they stay.",
    source: "Max Reitz, reply of 10 August 2020 (\"we should ascend from @base up \
             to the first non-implicit node to get the @above_base we want\")",
    freeze: FreezeRange::BaseOverlay,
    new_backing: BackingChoice::AboveBase,
    header: HeaderString::UnfilteredAtCompletion,
    filter: StreamFilter::ImplicitUnlessNamed,
    base_search: BaseSearch::SkipImplicitFilters,
};
