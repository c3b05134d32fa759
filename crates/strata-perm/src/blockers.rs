//! Legacy operation blockers (`bdrv_op_block_all` / `bdrv_op_is_blocked`).

use std::collections::BTreeMap;
use std::sync::Arc;
use strata_graph::{NodeId, RootId};

macro_rules! op_types {
    ($($(#[$m:meta])* $name:ident = $bit:expr,)*) => {
        /// `BlockOpType`: the operations a blocker can forbid.
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        pub enum BlockOp { $($(#[$m])* $name,)* }

        impl BlockOp {
            /// Every operation type, in QEMU's order.
            pub const ALL: &'static [BlockOp] = &[$(BlockOp::$name,)*];
            fn bit(self) -> u16 { match self { $(BlockOp::$name => 1 << $bit,)* } }
        }
    };
}

op_types! {
    /// Backup source.
    BackupSource = 0,
    /// Backup target.
    BackupTarget = 1,
    /// Medium change.
    Change = 2,
    /// Commit source (the device a commit is started on).
    CommitSource = 3,
    /// Commit target (nodes a commit writes or drops).
    CommitTarget = 4,
    /// `blockdev-del` / drive_del.
    DriveDel = 5,
    /// Eject.
    Eject = 6,
    /// External snapshot.
    ExternalSnapshot = 7,
    /// Internal snapshot.
    InternalSnapshot = 8,
    /// Internal snapshot deletion.
    InternalSnapshotDelete = 9,
    /// Mirror source.
    MirrorSource = 10,
    /// Mirror target.
    MirrorTarget = 11,
    /// Resize.
    Resize = 12,
    /// Stream.
    Stream = 13,
    /// Node replacement.
    Replace = 14,
}

/// A set of [`BlockOp`]s.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct OpSet(u16);

impl OpSet {
    /// Every operation.
    pub fn all() -> OpSet {
        OpSet(BlockOp::ALL.iter().fold(0, |bits, op| bits | op.bit()))
    }

    /// This set without `ops`.
    pub fn without(self, ops: &[BlockOp]) -> OpSet {
        OpSet(ops.iter().fold(self.0, |bits, op| bits & !op.bit()))
    }

    /// Whether `op` is in the set.
    pub fn contains(self, op: BlockOp) -> bool {
        self.0 & op.bit() != 0
    }
}

/// Who installed a blocker, so that exactly its blockers can be lifted.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum BlockerOwner {
    /// `parent->backing_blocker`: installed on the backing node of `parent`.
    Backing(NodeId),
    /// A job or BlockBackend (by its root id in the graph).
    Root(RootId),
}

/// One blocker.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Blocker {
    /// What it forbids.
    pub ops: OpSet,
    /// Why, e.g. `block device is in use by block job: stream`.
    pub reason: String,
    /// Who installed it.
    pub owner: BlockerOwner,
}

/// All blockers, per node, newest first (QEMU inserts at the head and
/// reports the first one).
///
/// The map is shared by clones until one changes it: a graph is cloned for
/// every transaction's rollback and every simulated world, and blockers
/// change far less often.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct OpBlockers {
    by_node: Arc<BTreeMap<NodeId, Vec<Blocker>>>,
}

impl OpBlockers {
    /// Installs a blocker on `node`.
    pub fn block(&mut self, node: NodeId, blocker: Blocker) {
        Arc::make_mut(&mut self.by_node)
            .entry(node)
            .or_default()
            .insert(0, blocker);
    }

    /// Lifts every blocker `owner` installed on `node`.
    pub fn unblock(&mut self, node: NodeId, owner: &BlockerOwner) {
        let owned = |list: &Vec<Blocker>| list.iter().any(|b| &b.owner == owner);
        if !self.by_node.get(&node).is_some_and(owned) {
            return;
        }
        let by_node = Arc::make_mut(&mut self.by_node);
        if let Some(list) = by_node.get_mut(&node) {
            list.retain(|b| &b.owner != owner);
            if list.is_empty() {
                by_node.remove(&node);
            }
        }
    }

    /// Lifts every blocker `owner` installed anywhere.
    pub fn unblock_everywhere(&mut self, owner: &BlockerOwner) {
        let nodes: Vec<NodeId> = self.by_node.keys().copied().collect();
        for node in nodes {
            self.unblock(node, owner);
        }
    }

    /// The blocker QEMU reports for `op` on `node`: the newest covering it.
    pub fn first_blocking(&self, node: NodeId, op: BlockOp) -> Option<&Blocker> {
        self.by_node.get(&node)?.iter().find(|b| b.ops.contains(op))
    }

    /// Forgets a deleted node's blockers.
    pub fn forget(&mut self, node: NodeId) {
        if self.by_node.contains_key(&node) {
            Arc::make_mut(&mut self.by_node).remove(&node);
        }
    }
}
