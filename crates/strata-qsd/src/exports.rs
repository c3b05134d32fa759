//! The daemon's block exports as the NBD server sees them: every export is
//! a node of the one block layer, reached through the [`Monitor`]
//! that owns it (the export's BlockBackend holds the node in the graph).

use std::io;

use strata_block::Files;
use strata_monitor::{Monitor, NbdListener};

use crate::nbd::{ExportLookup, NbdBackend, ZeroFlags};

/// The exports of `handler`, one selected at a time by
/// [`ExportLookup::backend`].
pub struct LayerExports<'a, F: Files, L: NbdListener> {
    handler: &'a mut Monitor<F, L>,
    selected: usize,
}

impl<'a, F: Files, L: NbdListener> LayerExports<'a, F, L> {
    /// The exports of `handler`.
    pub fn new(handler: &'a mut Monitor<F, L>) -> LayerExports<'a, F, L> {
        LayerExports {
            handler,
            selected: 0,
        }
    }

    fn node(&self) -> io::Result<strata_graph::NodeId> {
        self.handler
            .exports()
            .get(self.selected)
            .and_then(|e| self.handler.export_node(e))
            .ok_or_else(|| io::Error::from_raw_os_error(5))
    }
}

impl<F: Files, L: NbdListener> ExportLookup for LayerExports<'_, F, L> {
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

impl<F: Files, L: NbdListener> NbdBackend for LayerExports<'_, F, L> {
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

    /// `base:allocation` as QEMU's server reports it: data is 0, a range
    /// that reads as zeroes (a zero cluster, or nothing allocated down the
    /// whole chain) is HOLE|ZERO.
    fn block_status(&mut self, offset: u64, len: u32) -> io::Result<Vec<(u32, u32)>> {
        const HOLE_ZERO: u32 = 1 | 2;
        let node = self.node()?;
        let core = self.handler.layer_mut().core_mut();
        let mut extents: Vec<(u32, u32)> = Vec::new();
        let mut pos = offset;
        let end = offset + u64::from(len);
        while pos < end {
            let (kind, n) = core.block_status_above(node, pos, end - pos)?;
            let n = n.clamp(1, end - pos);
            let flags = if kind == strata_block::ExtentKind::Data {
                0
            } else {
                HOLE_ZERO
            };
            match extents.last_mut() {
                Some((run, last)) if *last == flags => *run += n as u32,
                _ => extents.push((n as u32, flags)),
            }
            pos += n;
        }
        Ok(extents)
    }

    fn read_only(&self) -> bool {
        self.handler
            .exports()
            .get(self.selected)
            .is_none_or(|e| !e.writable)
    }
}
