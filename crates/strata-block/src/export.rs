//! The BlockBackend of a block export (`blk_exp_add`): an anonymous root
//! parent of the exported node, so that the export's permissions take part
//! in the graph like any other user's.

use crate::error::Result;
use crate::files::Files;
use crate::layer::BlockLayer;
use strata_formats::Access;
use strata_graph::{NodeId, Perm, RootId, RootKind};

impl<F: Files> BlockLayer<F> {
    /// Attaches an anonymous BlockBackend to the node named `node_name`
    /// (`blk_exp_add`): it takes `consistent-read` (and `write` for
    /// [`Access::ReadWrite`], QMP's `writable`) and shares everything but
    /// `resize`, as qsd 10.0.2 shows in `x-debug-query-block-graph`.
    /// Returns the backend and the node.
    pub fn add_export_backend(
        &mut self,
        node_name: &str,
        access: Access,
    ) -> Result<(RootId, NodeId)> {
        let node = self.core.lookup_bs(None, Some(node_name))?;
        let mut perm = Perm::CONSISTENT_READ;
        if access == Access::ReadWrite {
            perm |= Perm::WRITE;
        }
        // Two steps, as QEMU takes them: `blk_insert_bs` shares everything,
        // then `nbd_export_create` unshares `resize` with `blk_set_perm`.
        let root = self.core.bg.add_root(RootKind::Backend { name: None });
        let attached = self.core.with_hooks(|bg, hooks| {
            bg.root_attach_child(hooks, root, node, "root", perm, Perm::ALL)
        });
        let edge = match attached {
            Ok(edge) => edge,
            Err(err) => {
                self.core.release_root(root);
                // blk_insert_bs passes `errp` down untouched: on the command
                // line (`&error_fatal`) QEMU exits before the hint is added.
                return Err(err.without_hint());
            }
        };
        let shared = Perm::ALL - Perm::RESIZE;
        let unshared = self
            .core
            .with_hooks(|bg, hooks| bg.set_child_perm(hooks, edge, perm, shared));
        if let Err(err) = unshared {
            self.core.release_root(root);
            return Err(err);
        }
        Ok((root, node))
    }

    /// Detaches and deletes an export's BlockBackend.
    pub fn remove_export_backend(&mut self, root: RootId) {
        self.core.release_root(root);
    }
}
