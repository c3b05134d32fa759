//! The options of the link primitives: which child slot
//! [`BlockGraph::set_file_or_backing`](crate::BlockGraph::set_file_or_backing)
//! changes, and how
//! [`BlockGraph::replace_node`](crate::BlockGraph::replace_node) treats the
//! parents it may not move.

/// One of the two structural children a node keeps a slot for
/// (`bs->file`, `bs->backing`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum ChildSlot {
    /// The `file` child: the protocol node under a format node.
    File,
    /// The `backing` child: the COW backing file, or a filter's child kept
    /// in `backing` (`bdrv_set_backing_hd`).
    Backing,
}

impl ChildSlot {
    /// The child's name, which is also its slot's: `file` or `backing`.
    pub fn name(self) -> &'static str {
        match self {
            ChildSlot::File => "file",
            ChildSlot::Backing => "backing",
        }
    }
}

/// What `bdrv_replace_node_common` does with a parent of `from` that must
/// not move to `to` (a job's link, or a link inside `to`'s own subtree).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum AutoSkip {
    /// Leave it on `from` (`auto_skip = true`, as `bdrv_replace_node` does).
    Skip,
    /// Fail with "Should not change '<link>' link to '<node>'"
    /// (`auto_skip = false`).
    Refuse,
}

/// Whether `bdrv_replace_node_common` also cuts `from`'s chain off `to`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Detach {
    /// Remove the link from `from`'s chain into `to` as well
    /// (`detach_subchain = true`, as `bdrv_drop_filter` does).
    Subchain,
    /// Move the parents only (`detach_subchain = false`).
    Nothing,
}

/// How [`BlockGraph::replace_node`](crate::BlockGraph::replace_node) moves
/// parents: the two flags of QEMU's `bdrv_replace_node_common`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct ReplaceOptions {
    /// Parents that must not move: skipped or refused.
    pub auto_skip: AutoSkip,
    /// Whether the link from `from`'s chain into `to` goes too.
    pub detach: Detach,
}

impl ReplaceOptions {
    /// `bdrv_replace_node`: skip what must not move, detach nothing.
    pub const REPLACE_NODE: ReplaceOptions = ReplaceOptions {
        auto_skip: AutoSkip::Skip,
        detach: Detach::Nothing,
    };

    /// `bdrv_drop_filter`: skip what must not move, and cut the filter off
    /// its child.
    pub const DROP_FILTER: ReplaceOptions = ReplaceOptions {
        auto_skip: AutoSkip::Skip,
        detach: Detach::Subchain,
    };

    /// Every parent must move (`auto_skip = false`), nothing is detached.
    pub const EVERY_PARENT: ReplaceOptions = ReplaceOptions {
        auto_skip: AutoSkip::Refuse,
        detach: Detach::Nothing,
    };
}
