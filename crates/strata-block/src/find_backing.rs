//! `bdrv_find_backing_image`: the node of a backing chain that a backing
//! file string names (`block-stream`'s and `block-commit`'s `base` and
//! `top`).
//!
//! Filters are skipped on the way down: they have no backing file string
//! of their own. Below an image whose backing node is not what its header
//! would open (`bdrv_backing_overridden`, e.g. a filter inserted under
//! it), only the backing node's filename can match. Otherwise the header's
//! string matches, as given or completed by the image's directory, or any
//! name that resolves to the same path from that directory.

use crate::core::BlockCore;
use crate::files::Files;
use crate::open_filename::path_has_protocol;
use crate::state::DriverState;
use strata_graph::NodeId;

impl<F: Files> BlockCore<F> {
    /// The node below which the backing file string `name` is found.
    pub(crate) fn find_backing_image(&mut self, bs: NodeId, name: &str) -> Option<NodeId> {
        let name_is_protocol = path_has_protocol(name);
        let mut filenames_refreshed = false;
        let mut current = self.bg.graph().skip_filters(bs);
        while self.bg.graph().filter_or_cow_child(current).is_some() {
            let below = self.bg.graph().backing_chain_next(current)?;
            let header = self.header_backing_file(current);
            let found = if self.backing_overridden(current) {
                if !filenames_refreshed {
                    // QEMU refreshes the rest of the chain's filenames once.
                    self.refresh_filename(below).ok()?;
                    filenames_refreshed = true;
                }
                self.bg.graph().node(below).ok()?.filename == name
            } else if name_is_protocol || path_has_protocol(&header) {
                name == header || self.absolute_filename(current, &header).as_deref() == Some(name)
            } else {
                let wanted = self.absolute_filename(current, name);
                let from_header = self.absolute_filename(current, &header);
                matches!((wanted, from_header), (Some(a), Some(b)) if normalize(&a) == normalize(&b))
            };
            if found {
                return Some(below);
            }
            current = below;
        }
        None
    }

    /// `bs->backing_file`: the backing file string of the image's header.
    fn header_backing_file(&self, node: NodeId) -> String {
        match self.state.get(&node) {
            Some(DriverState::Format { image, .. }) => {
                image.backing_file().unwrap_or_default().to_string()
            }
            _ => String::new(),
        }
    }

    /// `bdrv_backing_overridden`: the backing node is not the one the
    /// header's string opened (or the header names one and there is none).
    fn backing_overridden(&self, node: NodeId) -> bool {
        let auto = match self.state.get(&node) {
            Some(DriverState::Format {
                auto_backing_file, ..
            }) => auto_backing_file.as_str(),
            _ => "",
        };
        let g = self.bg.graph();
        let backing = g.node(node).ok().and_then(|n| n.backing());
        match backing.and_then(|edge| g.edge(edge).ok()) {
            Some(edge) => g
                .node(edge.child())
                .is_ok_and(|child| child.filename != auto),
            None => !auto.is_empty(),
        }
    }

    /// `bdrv_make_absolute_filename`: a name with a protocol prefix or an
    /// absolute path as it is, a relative one in the node's base
    /// directory; none when the node has no base directory or the name
    /// is empty.
    fn absolute_filename(&self, node: NodeId, name: &str) -> Option<String> {
        if name.is_empty() {
            return None;
        }
        if path_has_protocol(name) || name.starts_with('/') {
            return Some(name.to_string());
        }
        Some(format!("{}{name}", self.base_directory(node)?))
    }

    /// `bdrv_dirname`: the directory of the protocol node under `node`'s
    /// primary children, with its trailing slash; none for a node without
    /// a primary child or file (a quorum).
    fn base_directory(&self, node: NodeId) -> Option<String> {
        let g = self.bg.graph();
        let mut current = node;
        loop {
            if let Some(DriverState::File { path }) = self.state.get(&current) {
                return Some(
                    path.rfind('/')
                        .map_or(String::new(), |slash| path[..=slash].to_string()),
                );
            }
            current = g.edge(g.primary_child(current)?).ok()?.child();
        }
    }
}

/// A path with `.` and `..` resolved lexically (`realpath` on the names
/// a scenario uses, which have no symbolic links).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    if path.starts_with('/') {
        format!("/{body}")
    } else {
        body
    }
}
