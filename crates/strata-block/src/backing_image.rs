//! `bdrv_find_backing_image`: which layer of a chain a backing file string
//! (`block-stream base=`, `block-commit top=`/`base=`) names, with QEMU's
//! three ways of comparing and the filenames as QEMU last refreshed them.

use crate::core::BlockCore;
use crate::files::Files;
use crate::open_filename::path_has_protocol;
use crate::state::DriverState;
use strata_filters::Driver;
use strata_graph::NodeId;

impl<F: Files> BlockCore<F> {
    /// The layer below the overlay whose backing file `name` names, filters
    /// skipped (they have no normal filenames to match).
    pub(crate) fn find_backing_image(&mut self, bs: NodeId, name: &str) -> Option<NodeId> {
        let is_protocol = path_has_protocol(name);
        let mut filenames_refreshed = false;
        let mut current = self.bg.graph().skip_filters(bs);
        while self.bg.graph().cow_child(current).is_some() {
            let below = self.bg.graph().backing_chain_next(current)?;
            let header = self.header_backing_file(current);
            let found = if self.backing_overridden(current) {
                // Only the backing node's own filename can match; one
                // refresh covers the rest of the chain below.
                if !filenames_refreshed {
                    self.refresh_filename(below).ok()?;
                    filenames_refreshed = true;
                }
                self.bg.graph().node(below).ok()?.filename == name
            } else if is_protocol || path_has_protocol(&header) {
                name == header
                    || self.make_absolute_filename(current, &header).as_deref() == Some(name)
            } else {
                // Canonical absolute paths, both relative to the overlay.
                let real = |core: &mut Self, path: &str| {
                    core.make_absolute_filename(current, path)
                        .and_then(|full| core.files.real_path(&full))
                };
                match (real(self, name), real(self, &header)) {
                    (Some(wanted), Some(backing)) => wanted == backing,
                    _ => false,
                }
            };
            if found {
                return Some(below);
            }
            current = below;
        }
        None
    }

    /// `bs->backing_file`: the backing file string of a format node's image.
    fn header_backing_file(&self, node: NodeId) -> String {
        match self.state.get(&node) {
            Some(DriverState::Format { image, .. }) => {
                image.backing_file().unwrap_or_default().to_string()
            }
            _ => String::new(),
        }
    }

    /// `bdrv_make_absolute_filename`: `filename` relative to `node`'s
    /// directory; `None` for an empty name or a node without a directory.
    fn make_absolute_filename(&mut self, node: NodeId, filename: &str) -> Option<String> {
        if filename.is_empty() {
            return None;
        }
        if path_has_protocol(filename) || filename.starts_with('/') {
            return Some(filename.to_string());
        }
        Some(format!("{}{filename}", self.dirname(node)?))
    }

    /// `bdrv_dirname`: down the primary children to the protocol node,
    /// whose refreshed `exact_filename` gives the directory (quorum has
    /// none: its children have one each).
    fn dirname(&mut self, node: NodeId) -> Option<String> {
        let mut current = node;
        loop {
            let n = self.bg.graph().node(current).ok()?;
            if Driver::from_name(n.driver()) == Some(Driver::Quorum) {
                return None;
            }
            match self.bg.graph().primary_child(current) {
                Some(edge) => current = self.bg.graph().edge(edge).ok()?.child(),
                None => break,
            }
        }
        self.refresh_filename(current).ok()?;
        let exact = self.bg.graph().node(current).ok()?.exact_filename.clone();
        (!exact.is_empty()).then(|| directory_prefix(&exact).to_string())
    }
}

/// `path_combine(base, "")`: `base` up to its last slash, or up to its
/// protocol prefix's colon.
fn directory_prefix(base: &str) -> &str {
    let after_protocol = if path_has_protocol(base) {
        base.find(':').map_or(0, |colon| colon + 1)
    } else {
        0
    };
    let after_slash = base.rfind('/').map_or(0, |slash| slash + 1);
    &base[..after_protocol.max(after_slash)]
}

#[cfg(test)]
mod tests {
    use super::directory_prefix;

    #[test]
    fn directory_prefix_is_path_combine_with_an_empty_name() {
        assert_eq!(directory_prefix("img0.img"), "");
        assert_eq!(directory_prefix("/dir/sub/img0.img"), "/dir/sub/");
        assert_eq!(directory_prefix("nbd:localhost:10809"), "nbd:");
        assert_eq!(directory_prefix("null-co://"), "null-co://");
    }
}
