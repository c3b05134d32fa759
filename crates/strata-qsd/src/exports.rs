//! The daemon's block exports as the NBD server sees them: every export is
//! a node of the one block layer, reached through the [`BlockHandler`]
//! that owns it (the export's BlockBackend holds the node in the graph).

use std::io;

use strata_block::Files;
use strata_qmp::BlockHandler;

use crate::nbd::{ExportLookup, NbdBackend, ZeroFlags};

/// The exports of `handler`, one selected at a time by
/// [`ExportLookup::backend`].
pub struct LayerExports<'a, F: Files> {
    handler: &'a mut BlockHandler<F>,
    selected: usize,
}

impl<'a, F: Files> LayerExports<'a, F> {
    /// The exports of `handler`.
    pub fn new(handler: &'a mut BlockHandler<F>) -> LayerExports<'a, F> {
        LayerExports {
            handler,
            selected: 0,
        }
    }

    fn node(&self) -> io::Result<strata_graph::NodeId> {
        self.handler
            .exports()
            .get(self.selected)
            .map(|e| e.node)
            .ok_or_else(|| io::Error::from_raw_os_error(5))
    }
}

impl<F: Files> ExportLookup for LayerExports<'_, F> {
    fn export_names(&self) -> Vec<String> {
        // The handler lists newest first; NBD_OPT_LIST goes by creation.
        self.handler
            .exports()
            .iter()
            .rev()
            .map(|e| e.name.clone())
            .collect()
    }

    fn description(&self, name: &str) -> Option<String> {
        self.handler
            .exports()
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.description.clone())
    }

    fn backend(&mut self, name: &str) -> Option<&mut dyn NbdBackend> {
        self.selected = self.handler.exports().iter().position(|e| e.name == name)?;
        Some(self)
    }
}

impl<F: Files> NbdBackend for LayerExports<'_, F> {
    fn size(&mut self) -> u64 {
        let Ok(node) = self.node() else { return 0 };
        self.handler
            .layer_mut()
            .core_mut()
            .length(node)
            .unwrap_or(0)
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let node = self.node()?;
        self.handler.layer_mut().core_mut().read(node, offset, buf)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let node = self.node()?;
        self.handler
            .layer_mut()
            .core_mut()
            .write(node, offset, data)
    }

    /// Strata's formats hold no metadata back and write through to the
    /// files: a completed write is already in the host's page cache.
    fn flush(&mut self) -> io::Result<()> {
        self.node().map(drop)
    }

    /// A discard is a hint: the data may stay.
    fn trim(&mut self, _offset: u64, _len: u64) -> io::Result<()> {
        self.node().map(drop)
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, _flags: ZeroFlags) -> io::Result<()> {
        let node = self.node()?;
        self.handler
            .layer_mut()
            .core_mut()
            .write_zeroes(node, offset, len)
    }

    /// Everything is reported as data (no holes): correct, if coarser
    /// than QEMU's allocation map.
    fn block_status(&mut self, _offset: u64, len: u32) -> io::Result<Vec<(u32, u32)>> {
        self.node()?;
        Ok(vec![(len, 0)])
    }

    fn read_only(&self) -> bool {
        self.handler
            .exports()
            .get(self.selected)
            .is_none_or(|e| !e.writable)
    }
}
