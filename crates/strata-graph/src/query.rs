//! The chain queries of block.c / block_int-io.h, on a [`Graph`].
//!
//! All of them follow the same two kinds of links: a filter's filtered
//! child, and a non-filter's COW (backing) child. A format node's `file`
//! child is never part of a backing chain.

use crate::bits::Role;
use crate::graph::{EdgeId, Graph, NodeId};

impl Graph {
    /// `bdrv_filter_child`: a filter's filtered child (`backing` for
    /// `commit_top`/`mirror_top`, else `file`); `None` for non-filters.
    pub fn filter_child(&self, id: NodeId) -> Option<EdgeId> {
        let node = self.node(id).ok()?;
        if !node.traits().is_filter {
            return None;
        }
        node.backing().or(node.file())
    }

    /// `bdrv_cow_child`: a non-filter's backing child.
    pub fn cow_child(&self, id: NodeId) -> Option<EdgeId> {
        let node = self.node(id).ok()?;
        if node.traits().is_filter {
            return None;
        }
        node.backing().filter(|&e| {
            self.edge(e)
                .is_ok_and(|edge| edge.role().contains(Role::COW))
        })
    }

    /// `bdrv_filter_or_cow_child`: the chain edge below a node.
    pub fn filter_or_cow_child(&self, id: NodeId) -> Option<EdgeId> {
        self.filter_child(id).or_else(|| self.cow_child(id))
    }

    /// `bdrv_filter_or_cow_bs`: the next node down the chain.
    pub fn filter_or_cow_node(&self, id: NodeId) -> Option<NodeId> {
        self.child_node(self.filter_or_cow_child(id))
    }

    /// `bdrv_cow_bs`.
    pub fn cow_node(&self, id: NodeId) -> Option<NodeId> {
        self.child_node(self.cow_child(id))
    }

    /// `bdrv_filter_bs`.
    pub fn filter_node(&self, id: NodeId) -> Option<NodeId> {
        self.child_node(self.filter_child(id))
    }

    /// `bdrv_primary_child`: the child with the PRIMARY role, if any.
    pub fn primary_child(&self, id: NodeId) -> Option<EdgeId> {
        let node = self.node(id).ok()?;
        node.children().iter().copied().find(|&e| {
            self.edge(e)
                .is_ok_and(|edge| edge.role().contains(Role::PRIMARY))
        })
    }

    /// `bdrv_skip_filters`: the first non-filter at or below `id`.
    pub fn skip_filters(&self, mut id: NodeId) -> NodeId {
        while let Some(next) = self.filter_node(id) {
            id = next;
        }
        id
    }

    /// `bdrv_skip_implicit_filters`: step down while the node is an
    /// implicit filter.
    pub fn skip_implicit_filters(&self, mut id: NodeId) -> NodeId {
        while self.node(id).is_ok_and(|n| n.implicit) {
            match self.filter_node(id) {
                Some(next) => id = next,
                None => break,
            }
        }
        id
    }

    /// `bdrv_backing_chain_next`: the next non-filter image below the first
    /// non-filter at or below `id`.
    pub fn backing_chain_next(&self, id: NodeId) -> Option<NodeId> {
        self.cow_node(self.skip_filters(id))
            .map(|n| self.skip_filters(n))
    }

    /// `bdrv_chain_contains`: whether walking filter-or-COW links from
    /// `top` (inclusive) reaches `base`.
    pub fn chain_contains(&self, top: NodeId, base: NodeId) -> bool {
        self.chain(top).any(|n| n == base)
    }

    /// The nodes from `top` (inclusive) down the filter-or-COW chain.
    pub fn chain(&self, top: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        std::iter::successors(Some(top), move |&n| self.filter_or_cow_node(n))
    }

    /// `bdrv_find_overlay(active, bs)`: the non-filter image whose next
    /// non-filter backing image is `skip_filters(bs)`; with `bs == None`,
    /// the bottom-most image. `None` if not found or if `active` and `bs`
    /// are the same image.
    pub fn find_overlay(&self, active: NodeId, bs: Option<NodeId>) -> Option<NodeId> {
        let bs = bs.map(|b| self.skip_filters(b));
        let mut active = self.skip_filters(active);
        if Some(active) == bs {
            return None;
        }
        loop {
            let next = self.backing_chain_next(active);
            if next == bs {
                return Some(active);
            }
            active = next?;
        }
    }

    /// `bdrv_find_base`: the deepest non-filter image of the chain.
    pub fn find_base(&self, id: NodeId) -> NodeId {
        self.find_overlay(id, None)
            .unwrap_or_else(|| self.skip_filters(id))
    }

    fn child_node(&self, edge: Option<EdgeId>) -> Option<NodeId> {
        edge.and_then(|e| self.edge(e).ok()).map(|e| e.child())
    }
}
