//! `-drive` and the devices of a qemu-system stand-in: a named
//! BlockBackend (`blk_new_open` under `drive_new`'s id) over the node tree
//! a filename and the legacy options describe, and a guest device's
//! permissions on it (`blkconf_apply_backend_options`).

use crate::error::{Error, Result};
use crate::files::Files;
use crate::layer::BlockLayer;
use strata_formats::FormatOrigin;
use strata_graph::{NodeId, Options, Perm, RootId, RootKind};

/// `share-rw`: whether a device lets others write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShareRw {
    /// Others may not write (the default).
    #[default]
    Off,
    /// Others may write too.
    On,
}

/// What a guest device asks of its BlockBackend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceAccess {
    /// The device writes (`read-only` not set on the drive).
    ReadWrite,
    /// A read-only device.
    ReadOnly,
}

impl<F: Files> BlockLayer<F> {
    /// `blk_new_open` for `-drive id=NAME`: the node tree is opened from
    /// `filename` (a path, `json:{...}` or `blkdebug:...`, the format in
    /// `options`' `driver`) or, without one, from `options` alone; the
    /// BlockBackend `name` takes `consistent-read` (and `write` unless
    /// read-only) and shares everything, as a backend without a device does.
    pub fn drive_add(
        &mut self,
        name: &str,
        filename: Option<&str>,
        options: Options,
    ) -> Result<NodeId> {
        if self.core.backend_root(name).is_some() || self.backend_by_name(name).is_some() {
            return Err(Error::generic(format!("Duplicate ID '{name}' for drive")));
        }
        let core = &mut self.core;
        let node = match filename {
            Some(filename) => core.open_filename(filename, options, false)?,
            None => core.open_node(&options, false, FormatOrigin::Given)?,
        };
        core.refresh_filename(node)?;
        let read_only = core.bg.graph().node(node)?.read_only;
        let mut perm = Perm::CONSISTENT_READ;
        if !read_only {
            perm |= Perm::WRITE;
        }
        let root = core.bg.add_root(RootKind::Backend {
            name: Some(name.to_string()),
        });
        let attached = core.with_hooks(|bg, hooks| {
            bg.root_attach_child(hooks, root, node, "root", perm, Perm::ALL)
        });
        // The BlockBackend holds the tree now; the opener's reference goes.
        let dropped = core.unref(node);
        if let Err(err) = attached.and(dropped) {
            core.release_root(root);
            return Err(err);
        }
        Ok(node)
    }

    /// A guest device's permissions on the BlockBackend `root`
    /// (`blkconf_apply_backend_options`): `consistent-read` (and `write`),
    /// sharing `consistent-read`, `write-unchanged` and `resize`, plus
    /// `write` with `share-rw`.
    pub fn attach_device(
        &mut self,
        root: RootId,
        access: DeviceAccess,
        share_rw: ShareRw,
    ) -> Result<()> {
        let mut perm = Perm::CONSISTENT_READ;
        if access == DeviceAccess::ReadWrite {
            perm |= Perm::WRITE;
        }
        let mut shared = Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED | Perm::RESIZE;
        if share_rw == ShareRw::On {
            shared |= Perm::WRITE;
        }
        let edges = self.core.bg.graph().root(root)?.children().to_vec();
        for edge in edges {
            self.core
                .with_hooks(|bg, hooks| bg.set_child_perm(hooks, edge, perm, shared))?;
        }
        Ok(())
    }

    /// `blk_set_perm` adding `perm` to what the BlockBackend `root`
    /// already takes (qemu-io's commands ask for what they need); QEMU's
    /// error when the graph refuses.
    pub fn extend_backend_perm(&mut self, root: RootId, perm: Perm) -> Result<()> {
        let edges = self.core.bg.graph().root(root)?.children().to_vec();
        for edge in edges {
            let e = self.core.bg.graph().edge(edge)?;
            let (wanted, shared) = (e.perm | perm, e.shared);
            if wanted != e.perm {
                self.core
                    .with_hooks(|bg, hooks| bg.set_child_perm(hooks, edge, wanted, shared))?;
            }
        }
        Ok(())
    }

    /// The anonymous BlockBackend a device given a node name gets
    /// (`blk_new` + `blk_insert_bs`: no permissions until the device asks).
    pub fn add_device_backend(&mut self, node_name: &str) -> Result<RootId> {
        let node = self.core.lookup_bs(None, Some(node_name))?;
        let root = self.core.bg.add_root(RootKind::Backend { name: None });
        let attached = self.core.with_hooks(|bg, hooks| {
            bg.root_attach_child(hooks, root, node, "root", Perm::NONE, Perm::ALL)
        });
        if let Err(err) = attached {
            self.core.release_root(root);
            return Err(err);
        }
        Ok(root)
    }

    /// Deletes a BlockBackend (`blk_unref` of its last reference): its
    /// nodes go unless something else holds them.
    pub fn remove_backend(&mut self, root: RootId) {
        self.core.release_root(root);
    }

    /// The root node of a BlockBackend (`blk_bs`).
    pub fn backend_root_node(&self, root: RootId) -> Option<NodeId> {
        let g = self.core.bg.graph();
        let edge = *g.root(root).ok()?.children().first()?;
        g.edge(edge).ok().map(|e| e.child())
    }

    /// The BlockBackends (named or not) in creation order
    /// (`blk_all_next`).
    pub fn backends(&self) -> Vec<(RootId, Option<String>)> {
        let g = self.core.bg.graph();
        g.roots()
            .filter_map(|root| match g.root(root).ok()?.kind() {
                RootKind::Backend { name } => Some((root, name.clone())),
                _ => None,
            })
            .collect()
    }

    /// The jobs that hold `node` (`block_job_has_bdrv`), oldest first.
    pub fn jobs_on_node(&self, node: NodeId) -> Vec<String> {
        let g = self.core.bg.graph();
        g.roots()
            .filter_map(|root| {
                let r = g.root(root).ok()?;
                let RootKind::Job { id, .. } = r.kind() else {
                    return None;
                };
                r.children()
                    .iter()
                    .any(|&e| g.edge(e).is_ok_and(|e| e.child() == node))
                    .then(|| id.clone())
            })
            .collect()
    }

    /// The named BlockBackend `name`, with or without a medium.
    pub fn backend_by_name(&self, name: &str) -> Option<RootId> {
        let g = self.core.bg.graph();
        g.roots().find(|&root| {
            matches!(g.root(root).map(|r| r.kind()),
                Ok(RootKind::Backend { name: Some(n) }) if n == name)
        })
    }

    /// The root node of the named BlockBackend `name` (`blk_bs`).
    pub fn backend_node(&self, name: &str) -> Option<NodeId> {
        self.core.backend_root(name)
    }
}
