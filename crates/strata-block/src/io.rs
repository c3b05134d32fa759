//! I/O through the graph: what a read, a write or an allocation query on a
//! node does, driver by driver, down to the files.
//!
//! A format's metadata code ([`strata_formats::Image`]) does its I/O
//! through two small adapters that route it back into the graph: its `file`
//! child for its own bytes, its backing child for unallocated ranges. The
//! image's state is taken out of the node while it works, so that the
//! adapters can borrow the rest of the block layer.

use crate::core::BlockCore;
use crate::files::Files;
use crate::request_padding::RequestPadding;
use crate::state::DriverState;
use std::cell::RefCell;
use std::io;
use strata_filters::Driver;
use strata_formats::{BackingRead, DebugEvent, ExtentKind, Image, Storage, ZeroWrite};
use strata_graph::NodeId;

/// QEMU's bounce-buffer limit for one copy-on-read write.
const MAX_COR_CHUNK: u64 = 1 << 20;

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

fn format_error(err: strata_formats::Error) -> io::Error {
    io::Error::from_raw_os_error(err.errno())
}

/// What a block-status query asks (QEMU 10.0's `want_zero`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StatusQuery {
    /// Zeroes told apart from data as far as the drivers can (`qemu-img
    /// map`, mirror's zero detection).
    Zeroes,
    /// Allocation only (`bdrv_is_allocated`, what stream, commit and
    /// copy-on-read ask): a protocol node maps its whole range as data
    /// without asking the file system.
    Allocation,
}

impl<F: Files> BlockCore<F> {
    fn driver_of(&self, node: NodeId) -> Option<Driver> {
        self.bg
            .graph()
            .node(node)
            .ok()
            .and_then(|n| Driver::from_name(n.driver()))
    }

    pub(crate) fn file_child(&self, node: NodeId) -> Option<NodeId> {
        let g = self.bg.graph();
        g.node(node)
            .ok()?
            .file()
            .and_then(|e| g.edge(e).ok())
            .map(|e| e.child())
    }

    fn backing_child(&self, node: NodeId) -> Option<NodeId> {
        let g = self.bg.graph();
        g.node(node)
            .ok()?
            .backing()
            .and_then(|e| g.edge(e).ok())
            .map(|e| e.child())
    }

    /// A filter's filtered child, a raw node's file.
    fn forward_child(&self, node: NodeId) -> Option<NodeId> {
        let g = self.bg.graph();
        g.filter_node(node).or_else(|| self.file_child(node))
    }

    fn quorum_children(&self, node: NodeId) -> Vec<NodeId> {
        let g = self.bg.graph();
        let mut children: Vec<(String, NodeId)> = g
            .node(node)
            .map(|n| n.children().to_vec())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| g.edge(e).ok().map(|e| (e.name().to_string(), e.child())))
            .collect();
        children.sort();
        children.into_iter().map(|(_, n)| n).collect()
    }

    /// `bdrv_getlength`.
    pub fn length(&mut self, node: NodeId) -> io::Result<u64> {
        match self.state.get(&node) {
            Some(DriverState::File { path }) => {
                let path = path.clone();
                self.files.storage(&path)?.len()
            }
            Some(DriverState::Format { image, .. }) => Ok(image.virtual_size()),
            Some(DriverState::Null { length, .. }) => Ok(*length),
            Some(DriverState::Quorum { .. }) => match self.quorum_children(node).first() {
                Some(&child) => self.length(child),
                None => Ok(0),
            },
            Some(_) => match self.forward_child(node) {
                Some(child) => self.length(child),
                None => Err(eio()),
            },
            None => Err(eio()),
        }
    }

    /// `bdrv_co_truncate` to a larger `size` with preallocation off: a
    /// filter passes it down, a format grows its image (a raw one its
    /// file), a file grows. When the backing file would show through the
    /// new area, that area is written as zeroes (`BDRV_REQ_ZERO_WRITE`).
    pub fn grow(&mut self, node: NodeId, size: u64) -> io::Result<()> {
        let old = self.length(node)?;
        if size <= old {
            return Ok(());
        }
        match self.state.get(&node) {
            Some(DriverState::File { path }) => {
                let path = path.clone();
                self.files.storage(&path)?.set_len(size)
            }
            Some(DriverState::Format { .. }) => {
                self.with_image(node, |image, storage, _| {
                    image.grow(storage, size).map_err(format_error)
                })?;
                let backing_len = match self.backing_child(node) {
                    Some(backing) => self.length(backing)?,
                    None => 0,
                };
                if backing_len > old {
                    self.write_zeroes(node, old, size - old)?;
                }
                Ok(())
            }
            Some(_) => match self.forward_child(node) {
                Some(child) => self.grow(child, size),
                None => Err(eio()),
            },
            None => Err(eio()),
        }
    }

    /// Reads `buf.len()` bytes of what `node` shows at `offset`.
    pub fn read(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match self.driver_of(node) {
            Some(Driver::File) => {
                let path = self.path_of(node)?;
                self.files.storage(&path)?.read_at(offset, buf)
            }
            Some(Driver::Qcow2 | Driver::Raw) => {
                self.with_image(node, |image, storage, backing| {
                    image
                        .read(storage, offset, buf, backing)
                        .map_err(format_error)
                })
            }
            Some(Driver::Blkdebug) => {
                self.blkdebug_read_check(node, offset, buf.len() as u64)?;
                let child = self.forward_child(node).ok_or_else(eio)?;
                self.read(child, offset, buf)
            }
            Some(Driver::Throttle) => {
                self.throttle_charge(node, buf.len() as u64, false);
                let child = self.forward_child(node).ok_or_else(eio)?;
                self.read(child, offset, buf)
            }
            Some(Driver::Quorum) => self.quorum_read(node, offset, buf),
            // null_co_preadv only zeroes with read-zeroes and leaves the
            // buffer as it was otherwise: zeroes are one of the contents
            // QEMU may return.
            Some(Driver::NullCo | Driver::NullAio) => {
                buf.fill(0);
                Ok(())
            }
            // cor_co_preadv_part: every read through the filter (a job's,
            // an export's, a backing read from the image above) copies into
            // the filter's child what it lacks, as the stream's prefetch.
            Some(Driver::CopyOnRead) => {
                self.cor_prefetch(node, offset, buf.len() as u64)?;
                let child = self.forward_child(node).ok_or_else(eio)?;
                self.read(child, offset, buf)
            }
            Some(Driver::CommitTop | Driver::MirrorTop) => {
                let child = self.forward_child(node).ok_or_else(eio)?;
                self.read(child, offset, buf)
            }
            None => Err(eio()),
        }
    }

    /// Writes `data` at `offset` of `node`.
    pub fn write(&mut self, node: NodeId, offset: u64, data: &[u8]) -> io::Result<()> {
        match self.driver_of(node) {
            Some(Driver::File) => {
                let path = self.path_of(node)?;
                self.files.storage(&path)?.write_at(offset, data)
            }
            Some(Driver::Qcow2 | Driver::Raw) => {
                self.with_image(node, |image, storage, backing| {
                    image
                        .write(storage, offset, data, backing)
                        .map_err(format_error)
                })
            }
            Some(Driver::Blkdebug) => {
                self.blkdebug_write_check(node, offset, data.len() as u64)?;
                let child = self.forward_child(node).ok_or_else(eio)?;
                self.write(child, offset, data)
            }
            Some(Driver::Throttle) => {
                self.throttle_charge(node, data.len() as u64, true);
                let child = self.forward_child(node).ok_or_else(eio)?;
                self.write(child, offset, data)
            }
            Some(Driver::Quorum) => {
                for child in self.quorum_children(node) {
                    self.write(child, offset, data)?;
                }
                Ok(())
            }
            Some(Driver::CopyOnRead | Driver::CommitTop) => {
                let child = self.forward_child(node).ok_or_else(eio)?;
                self.write(child, offset, data)
            }
            Some(Driver::NullCo | Driver::NullAio) => Ok(()),
            Some(Driver::MirrorTop) => {
                let child = self.forward_child(node).ok_or_else(eio)?;
                self.write(child, offset, data)?;
                self.mirror_top_write(node, offset, Some(data), data.len() as u64)
            }
            None => Err(eio()),
        }
    }

    /// Writes zeroes (`bdrv_co_pwrite_zeroes` without unmapping).
    pub fn write_zeroes(&mut self, node: NodeId, offset: u64, len: u64) -> io::Result<()> {
        match self.driver_of(node) {
            Some(Driver::Qcow2 | Driver::Raw) => {
                self.with_image(node, |image, storage, backing| {
                    image
                        .write_zeroes(storage, offset, len, ZeroWrite::KeepAllocated, backing)
                        .map_err(format_error)
                })
            }
            Some(Driver::File) => {
                let path = self.path_of(node)?;
                self.files.storage(&path)?.write_zeroes(offset, len)
            }
            Some(Driver::NullCo | Driver::NullAio) => Ok(()),
            Some(Driver::Blkdebug) => {
                self.blkdebug_zero_write_check(node, offset, len)?;
                let child = self.forward_child(node).ok_or_else(eio)?;
                self.write_zeroes(child, offset, len)
            }
            Some(Driver::MirrorTop) => {
                let child = self.forward_child(node).ok_or_else(eio)?;
                self.write_zeroes(child, offset, len)?;
                self.mirror_top_write(node, offset, None, len)
            }
            _ => {
                let child = self.forward_child(node).ok_or_else(eio)?;
                self.write_zeroes(child, offset, len)
            }
        }
    }

    /// A write through an active commit's `mirror_top` (already done on
    /// its child): the same bytes go to the base, so that the base keeps
    /// up with the guest (`data == None`: zeroes).
    pub(crate) fn mirror_top_write(
        &mut self,
        mirror_top: NodeId,
        offset: u64,
        data: Option<&[u8]>,
        len: u64,
    ) -> io::Result<()> {
        let Some(&target) = self.mirror_targets.get(&mirror_top) else {
            return Ok(());
        };
        match data {
            Some(data) => self.write(target, offset, data),
            None => self.write_zeroes(target, offset, len),
        }
    }

    /// What one layer holds at `offset` (`bdrv_co_block_status` of that
    /// node alone, as `qemu-img map` and mirror ask: `want_zero`): a
    /// qcow2 mapping; for a file, data or (in a hole) zeroes; and the
    /// filtered child's answer for filters and raw (`BDRV_BLOCK_RAW`: what
    /// its file says, unallocated included).
    pub fn block_status(
        &mut self,
        node: NodeId,
        offset: u64,
        len: u64,
    ) -> io::Result<(ExtentKind, u64)> {
        self.block_status_as(StatusQuery::Zeroes, node, offset, len)
    }

    /// `bdrv_co_block_status` of one layer for `query`.
    fn block_status_as(
        &mut self,
        query: StatusQuery,
        node: NodeId,
        offset: u64,
        len: u64,
    ) -> io::Result<(ExtentKind, u64)> {
        match self.driver_of(node) {
            // raw_co_block_status without want_zero: no lseek, all data.
            Some(Driver::File) if query == StatusQuery::Allocation => Ok((ExtentKind::Data, len)),
            Some(Driver::File) => {
                let path = self.path_of(node)?;
                let (data, n) = self.files.storage(&path)?.data_status(offset, len)?;
                let kind = if data {
                    ExtentKind::Data
                } else {
                    ExtentKind::Zero
                };
                Ok((kind, n.max(1).min(len)))
            }
            Some(Driver::Qcow2) => {
                let (kind, n) = self.with_image(node, |image, storage, _| {
                    image
                        .block_status_run(storage, offset, len)
                        .map(|e| (e.kind, e.len))
                        .map_err(format_error)
                })?;
                Ok((kind, n))
            }
            Some(Driver::Quorum) => Ok((ExtentKind::Data, len)),
            // null_co_block_status: allocated data, zero with read-zeroes.
            Some(Driver::NullCo | Driver::NullAio) => match self.state.get(&node) {
                Some(DriverState::Null {
                    read_zeroes: true, ..
                }) => Ok((ExtentKind::Zero, len)),
                _ => Ok((ExtentKind::Data, len)),
            },
            _ => {
                let child = self.forward_child(node).ok_or_else(eio)?;
                self.block_status_as(query, child, offset, len)
            }
        }
    }

    /// `bdrv_block_status_above(top, NULL)`: what the first layer down the
    /// chain that maps `offset` holds there (`Unallocated` when no layer
    /// does: the range reads as zeroes, unless the bottom is a raw node
    /// over a format node with a backing file of its own), and for how
    /// many bytes.
    pub fn block_status_above(
        &mut self,
        top: NodeId,
        offset: u64,
        len: u64,
    ) -> io::Result<(ExtentKind, u64)> {
        self.status_above_to_bottom(top, offset, len)
            .map(|(kind, n, _)| (kind, n))
    }

    /// Whether the range reads as zeroes by metadata in
    /// `bdrv_block_status_above(top, NULL)` with `want_zero` (its
    /// `BDRV_BLOCK_ZERO`, what `qemu-img convert` skips reading), and for how
    /// many bytes. Unallocated down the whole chain counts as zeroes only when
    /// the bottom layer's driver supports a backing file (it has none):
    /// `bdrv_co_do_block_status` adds the flag there, not for a raw bottom.
    pub fn zero_status_above(
        &mut self,
        top: NodeId,
        offset: u64,
        len: u64,
    ) -> io::Result<(bool, u64)> {
        let (kind, n, bottom) = self.status_above_to_bottom(top, offset, len)?;
        let zero = match kind {
            ExtentKind::Zero => true,
            ExtentKind::Data => false,
            ExtentKind::Unallocated => self
                .bg
                .graph()
                .node(bottom)
                .is_ok_and(|node| node.traits().supports_backing),
        };
        Ok((zero, n))
    }

    /// Whether reading the range through `top` does no file I/O: every run
    /// reads as zeroes from a qcow2 layer's own metadata (zero clusters, or
    /// nothing allocated down to a qcow2 bottom) or lies past the end of a
    /// shorter layer. Such a read completes without yielding
    /// (`qcow2_co_preadv_part` fills zeroes in place); any other reaches a
    /// file and yields until the I/O is done.
    pub(crate) fn reads_without_file_io(
        &mut self,
        top: NodeId,
        offset: u64,
        len: u64,
    ) -> io::Result<bool> {
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let (kind, n, layer) = self.status_above_to_bottom(top, pos, end - pos)?;
            let past_end = pos >= self.length(layer)?;
            let qcow2_zeroes = kind != ExtentKind::Data
                && self.driver_of(self.status_source(layer)) == Some(Driver::Qcow2);
            if n == 0 || !(past_end || qcow2_zeroes) {
                return Ok(false);
            }
            pos += n;
        }
        Ok(true)
    }

    /// The node whose own metadata answers a block-status query on `node`:
    /// filters and raw pass it down to their child, a qcow2 node answers it.
    fn status_source(&self, node: NodeId) -> NodeId {
        let mut current = node;
        while self.driver_of(current) != Some(Driver::Qcow2) {
            match self.forward_child(current) {
                Some(child) => current = child,
                None => break,
            }
        }
        current
    }

    /// [`Self::block_status_above`] with the last layer it asked.
    fn status_above_to_bottom(
        &mut self,
        top: NodeId,
        offset: u64,
        len: u64,
    ) -> io::Result<(ExtentKind, u64, NodeId)> {
        let mut n = len;
        let mut current = top;
        loop {
            let size = self.length(current)?;
            if offset >= size {
                return Ok((ExtentKind::Zero, n, current));
            }
            let (kind, run) = self.block_status(current, offset, n.min(size - offset))?;
            if kind != ExtentKind::Unallocated {
                return Ok((kind, run.min(n), current));
            }
            n = n.min(run);
            match self.bg.graph().filter_or_cow_node(current) {
                Some(next) => current = next,
                None => return Ok((ExtentKind::Unallocated, n, current)),
            }
        }
    }

    /// qcow2's `is_zero` (what a partial-cluster zero write asks of the
    /// chain below): whether the range reads as zeroes by metadata, with
    /// `want_zero` (`bdrv_block_status_above`, run after run: a hole in a
    /// raw file, zero clusters, the end of a shorter layer, nothing
    /// allocated down to the bottom). Data that happens to be zero does
    /// not count.
    pub(crate) fn reads_as_zero(&mut self, top: NodeId, offset: u64, len: u64) -> io::Result<bool> {
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let (kind, n) = self.block_status_above(top, pos, end - pos)?;
            if kind == ExtentKind::Data || n == 0 {
                return Ok(false);
            }
            pos += n;
        }
        Ok(true)
    }

    /// `bdrv_is_allocated`: whether `node` itself maps the range (data or
    /// zero), and for how many bytes the answer holds.
    pub fn is_allocated(&mut self, node: NodeId, offset: u64, len: u64) -> io::Result<(bool, u64)> {
        let size = self.length(node)?;
        if offset >= size {
            return Ok((false, 0));
        }
        let (kind, n) = self.block_status_as(
            StatusQuery::Allocation,
            node,
            offset,
            len.min(size - offset),
        )?;
        Ok((kind != ExtentKind::Unallocated, n))
    }

    /// `bdrv_is_allocated_above(top, base, include_base = true)` (the only
    /// way stream, commit and mirror call it): the depth (1 = `top`) of the
    /// first layer down the filter-or-COW chain, `base` included, that maps
    /// the range, or 0; and for how many bytes that holds. Beyond the end of a
    /// shorter layer the range counts as allocated zeroes there; a length
    /// of 0 means the chain ended before `offset`.
    pub fn is_allocated_above(
        &mut self,
        top: NodeId,
        base: Option<NodeId>,
        offset: u64,
        len: u64,
    ) -> io::Result<(u32, u64)> {
        let mut n = len;
        let mut node = top;
        let mut depth = 1;
        loop {
            let size = self.length(node)?;
            if offset >= size {
                // This layer is short: what it synthesizes past its end is
                // allocated here, unless it is the very first layer.
                return Ok(if depth == 1 { (0, 0) } else { (depth, n) });
            }
            let (allocated, run) = self.is_allocated(node, offset, n)?;
            if allocated {
                return Ok((depth, run));
            }
            n = n.min(run);
            if Some(node) == base {
                return Ok((0, n));
            }
            match self.bg.graph().filter_or_cow_node(node) {
                Some(next) => node = next,
                None => return Ok((0, n)),
            }
            depth += 1;
        }
    }

    /// `bdrv_co_do_copy_on_readv` on `node`: every stretch not allocated in
    /// `node` is read (through its backing chain) and written back into it,
    /// as zeroes when the data is all zero.
    pub fn copy_on_read(&mut self, node: NodeId, offset: u64, len: u64) -> io::Result<()> {
        let cluster = self.cluster_size(node);
        let start = offset / cluster * cluster;
        let end = (offset + len).div_ceil(cluster) * cluster;
        let end = end.min(self.length(node)?.max(offset + len));
        let mut pos = start;
        while pos < end {
            let (allocated, run) = self.is_allocated(node, pos, (end - pos).min(MAX_COR_CHUNK))?;
            let run = run.max(1).min(end - pos);
            if !allocated {
                let mut buf = vec![0u8; run as usize];
                self.read(node, pos, &mut buf)?;
                self.blkdebug_event(node, "cor_write");
                if buf.iter().all(|&b| b == 0) {
                    self.write_zeroes(node, pos, run)?;
                } else {
                    self.write(node, pos, &buf)?;
                }
            }
            pos += run;
        }
        Ok(())
    }

    /// The copy part of a read through a copy-on-read filter
    /// (`cor_co_preadv_part`; a stream's `PREFETCH` read is only that): ranges not allocated in the filter's child
    /// are copied into it only where they are allocated between the next
    /// image and `bottom` (everywhere without `bottom`).
    pub fn cor_prefetch(&mut self, cor: NodeId, offset: u64, len: u64) -> io::Result<()> {
        let bottom = match self.state.get(&cor) {
            Some(DriverState::CopyOnRead { bottom }) => *bottom,
            _ => None,
        };
        let child = self.forward_child(cor).ok_or_else(eio)?;
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let (allocated, mut n) = self.is_allocated(child, pos, end - pos)?;
            let mut copy = bottom.is_none();
            if !allocated && bottom.is_some() {
                let next = self.bg.graph().backing_chain_next(child);
                let (depth, run) = match next {
                    Some(next) => self.is_allocated_above(next, bottom, pos, n)?,
                    None => (0, 0),
                };
                copy = depth > 0;
                n = run;
                if n == 0 {
                    break;
                }
            }
            if n == 0 {
                break;
            }
            if copy && !allocated {
                self.copy_on_read(child, pos, n)?;
            }
            pos += n;
        }
        Ok(())
    }

    /// Copies `[offset, offset + len)` of `from` into `to` with a plain
    /// read and write (`commit_run`'s copy, a mirror's `COPY`): zeroes
    /// are written as data. The error says which side failed.
    pub(crate) fn copy_range(
        &mut self,
        from: NodeId,
        to: NodeId,
        offset: u64,
        len: u64,
    ) -> std::result::Result<(), (strata_jobs::IoOperation, io::Error)> {
        let mut buf = vec![0u8; len as usize];
        self.read(from, offset, &mut buf)
            .map_err(|e| (strata_jobs::IoOperation::Read, e))?;
        self.write(to, offset, &buf)
            .map_err(|e| (strata_jobs::IoOperation::Write, e))
    }

    /// `bdrv_change_backing_file`: rewrites the image header and, like
    /// QEMU, the node's idea of what its header says (`auto_backing_file`).
    pub fn change_backing_file(
        &mut self,
        node: NodeId,
        file: Option<&str>,
        format: Option<&str>,
    ) -> io::Result<()> {
        self.with_image(node, |image, storage, _| {
            image
                .change_backing_file(storage, file, format)
                .map_err(format_error)
        })?;
        if let Some(DriverState::Format {
            auto_backing_file, ..
        }) = self.state.get_mut(&node)
        {
            *auto_backing_file = file.unwrap_or_default().to_string();
        }
        Ok(())
    }

    /// The cluster size `bdrv_get_info` reports for a node: a qcow2 node's
    /// own; a raw node asks its file (`raw_co_get_info`); a driver without
    /// `bdrv_co_get_info` asks the node it filters (throttle,
    /// copy-on-read, blkdebug, the job filters). `None` where QEMU reports
    /// 0 (file-posix) or fails (null-co, quorum).
    pub(crate) fn cluster_size_of(&self, node: NodeId) -> Option<u64> {
        match self.state.get(&node) {
            Some(DriverState::Format { image, .. }) => match image.cluster_size() {
                Some(cluster) => Some(cluster),
                None => self.cluster_size_of(self.file_child(node)?),
            },
            Some(DriverState::File { .. }) => None,
            _ => self.cluster_size_of(self.bg.graph().filter_node(node)?),
        }
    }

    /// `bdrv_can_write_zeroes_with_unmap`: the node was opened with
    /// `BDRV_O_UNMAP` and its driver takes `BDRV_REQ_MAY_UNMAP` in zero
    /// writes.
    pub(crate) fn can_write_zeroes_with_unmap(&self, node: NodeId) -> bool {
        let opened_with_unmap = self
            .bg
            .graph()
            .node(node)
            .is_ok_and(|n| n.inheritance.discard_unmap);
        opened_with_unmap && self.zero_writes_may_unmap(node)
    }

    /// `BDRV_REQ_MAY_UNMAP` in the node's `supported_zero_flags`: qcow2 from
    /// version 3 on, the file protocol, and what raw and the filters over a
    /// file child (blkdebug, throttle, copy-on-read) pass on from it.
    fn zero_writes_may_unmap(&self, node: NodeId) -> bool {
        let from_file = || {
            self.file_child(node)
                .is_some_and(|child| self.zero_writes_may_unmap(child))
        };
        match self.state.get(&node) {
            Some(DriverState::File { .. }) => true,
            Some(DriverState::Format {
                image: Image::Qcow2(qcow2),
                ..
            }) => qcow2.header().version >= 3,
            Some(
                DriverState::Format {
                    image: Image::Raw(_),
                    ..
                }
                | DriverState::Blkdebug { .. }
                | DriverState::Throttle { .. }
                | DriverState::CopyOnRead { .. },
            ) => from_file(),
            _ => false,
        }
    }

    /// `bdrv_round_to_subclusters`' unit for `node`: its
    /// [`Self::cluster_size_of`], or a sector where there is none (QEMU
    /// leaves sector-aligned requests as they are then).
    fn cluster_size(&self, node: NodeId) -> u64 {
        self.cluster_size_of(node).unwrap_or(512)
    }

    fn path_of(&self, node: NodeId) -> io::Result<String> {
        match self.state.get(&node) {
            Some(DriverState::File { path }) => Ok(path.clone()),
            _ => Err(eio()),
        }
    }

    /// Runs `op` on a format node's image with adapters for its file and
    /// backing children.
    pub(crate) fn with_image<T>(
        &mut self,
        node: NodeId,
        op: impl FnOnce(&mut Image, &mut dyn Storage, Option<&mut dyn BackingRead>) -> io::Result<T>,
    ) -> io::Result<T> {
        let taken = self.state.insert(node, DriverState::Busy);
        let Some(DriverState::Format {
            mut image,
            auto_backing_file,
        }) = taken
        else {
            if let Some(state) = taken {
                self.state.insert(node, state);
            }
            return Err(eio());
        };
        let result = self.with_child_io(node, |storage, backing| op(&mut image, storage, backing));
        self.state.insert(
            node,
            DriverState::Format {
                image,
                auto_backing_file,
            },
        );
        result
    }

    /// Runs `op` with a node's file child as [`Storage`] and its backing
    /// child as [`BackingRead`].
    pub(crate) fn with_child_io<T>(
        &mut self,
        node: NodeId,
        op: impl FnOnce(&mut dyn Storage, Option<&mut dyn BackingRead>) -> io::Result<T>,
    ) -> io::Result<T> {
        let file = self.file_child(node).ok_or_else(eio)?;
        let backing = self.backing_child(node);
        let cell = RefCell::new(&mut *self);
        let mut storage = ChildIo {
            core: &cell,
            node: file,
        };
        let mut backing_io = backing.map(|node| ChildIo { core: &cell, node });
        op(
            &mut storage,
            backing_io.as_mut().map(|b| b as &mut dyn BackingRead),
        )
    }

    fn quorum_read(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let threshold = match self.state.get(&node) {
            Some(DriverState::Quorum { threshold }) => *threshold as usize,
            _ => 1,
        };
        let mut versions: Vec<(Vec<u8>, usize)> = Vec::new();
        for child in self.quorum_children(node) {
            let mut data = vec![0u8; buf.len()];
            if self.read(child, offset, &mut data).is_err() {
                continue;
            }
            match versions.iter_mut().find(|(v, _)| *v == data) {
                Some((_, votes)) => *votes += 1,
                None => versions.push((data, 1)),
            }
        }
        let winner = versions
            .into_iter()
            .max_by_key(|(_, votes)| *votes)
            .filter(|(_, votes)| *votes >= threshold);
        match winner {
            Some((data, _)) => {
                buf.copy_from_slice(&data);
                Ok(())
            }
            None => Err(eio()),
        }
    }

    /// `blkdebug_debug_event`: rules for the current state fire; the
    /// first inject rule of an event resets the active list. Nodes of
    /// other drivers ignore events (`bdrv_co_debug_event` does not pass
    /// them down).
    pub(crate) fn blkdebug_event(&mut self, node: NodeId, event: &str) {
        self.breakpoints.hit(node, event);
        let Some(DriverState::Blkdebug {
            inject,
            set_state,
            state,
            ..
        }) = self.state.get_mut(&node)
        else {
            return;
        };
        let current = *state;
        let mut new_state = current;
        for rule in set_state.iter().rev() {
            if rule.event == event && (rule.state == 0 || rule.state == current) {
                new_state = rule.new_state;
            }
        }
        let fires: Vec<usize> = (0..inject.len())
            .filter(|&i| {
                inject[i].event == event && (inject[i].state == 0 || inject[i].state == current)
            })
            .collect();
        if !fires.is_empty() {
            for rule in inject.iter_mut() {
                rule.armed = false;
            }
            for i in fires {
                inject[i].armed = true;
            }
        }
        *state = new_state;
    }

    /// A read through a blkdebug node: one request, widened to its `align`
    /// (`bdrv_co_preadv_part` pads it).
    fn blkdebug_read_check(&mut self, node: NodeId, offset: u64, len: u64) -> io::Result<()> {
        match RequestPadding::of(offset, len, self.blkdebug_align(node)) {
            Some(pad) => {
                let (start, bytes) = pad.widened();
                self.blkdebug_check(node, start, bytes)
            }
            None => self.blkdebug_check(node, offset, len),
        }
    }

    /// A write through a blkdebug node (`bdrv_co_pwritev_part`): an
    /// unaligned one first reads what its padding covers, whatever that
    /// read's outcome (QEMU ignores it: an injected error is used up
    /// there), then writes the widened request. The bytes written around
    /// the data are the ones read; after a failed read QEMU writes its
    /// uninitialised buffer there (`qemu_blockalign` in
    /// `bdrv_init_padding`), which Strata does not imitate (the file
    /// keeps its bytes): what that buffer holds is the heap's choice,
    /// zeroes or the stale bytes of an earlier padding buffer, and
    /// differs between runs of the same requests (fuzz 9200/123 in
    /// `xtask/fuzz-known.txt`).
    fn blkdebug_write_check(&mut self, node: NodeId, offset: u64, len: u64) -> io::Result<()> {
        let Some(pad) = RequestPadding::of(offset, len, self.blkdebug_align(node)) else {
            return self.blkdebug_check(node, offset, len);
        };
        self.blkdebug_rmw_reads(node, &pad);
        let (start, bytes) = pad.widened();
        self.blkdebug_check(node, start, bytes)
    }

    /// A zero write through a blkdebug node (`bdrv_co_do_zero_pwritev`):
    /// an unaligned one reads its padding (outcome ignored), then writes
    /// the head block, the aligned middle and the tail block, the first
    /// failure failing it.
    fn blkdebug_zero_write_check(&mut self, node: NodeId, offset: u64, len: u64) -> io::Result<()> {
        let Some(pad) = RequestPadding::of(offset, len, self.blkdebug_align(node)) else {
            return self.blkdebug_check(node, offset, len);
        };
        self.blkdebug_rmw_reads(node, &pad);
        for (start, bytes) in pad.zero_writes() {
            self.blkdebug_check(node, start, bytes)?;
        }
        Ok(())
    }

    /// `bdrv_padding_rmw_read`: its reads until one fails; the caller
    /// never learns of the failure.
    fn blkdebug_rmw_reads(&mut self, node: NodeId, pad: &RequestPadding) {
        for (start, bytes) in pad.rmw_reads() {
            if self.blkdebug_check(node, start, bytes).is_err() {
                return;
            }
        }
    }

    fn blkdebug_align(&self, node: NodeId) -> u64 {
        match self.state.get(&node) {
            Some(DriverState::Blkdebug { align, .. }) => *align,
            _ => 1,
        }
    }

    /// `rule_check`: an armed rule covering the request fails it.
    fn blkdebug_check(&mut self, node: NodeId, offset: u64, len: u64) -> io::Result<()> {
        let Some(DriverState::Blkdebug { inject, .. }) = self.state.get_mut(&node) else {
            return Ok(());
        };
        // An armed rule with errno 0 matches and lets the request through.
        let hit = inject.iter().position(|rule| {
            rule.armed
                && rule.sector.is_none_or(|sector| {
                    let at = sector * 512;
                    len > 0 && at >= offset && at < offset + len
                })
        });
        match hit {
            None => Ok(()),
            Some(i) if inject[i].errno == 0 => Ok(()),
            Some(i) => {
                let errno = inject[i].errno;
                if inject[i].once {
                    inject.remove(i);
                }
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }

    /// Charges a throttled request to its group: every limit that applies
    /// (`bps-total`, `bps-read`/`bps-write`, `iops-total`,
    /// `iops-read`/`iops-write`) is a budget that moves forward in virtual
    /// time by the request's cost; the request completes when the last of
    /// them is free, and its issuer waits until then.
    fn throttle_charge(&mut self, node: NodeId, bytes: u64, write: bool) {
        let Some(DriverState::Throttle { group }) = self.state.get(&node) else {
            return;
        };
        let Some(tg) = self.throttle_groups.get_mut(group) else {
            return;
        };
        let dir = if write { "write" } else { "read" };
        let limits = [
            ("bps-total".to_string(), bytes),
            (format!("bps-{dir}"), bytes),
            ("iops-total".to_string(), 1),
            (format!("iops-{dir}"), 1),
        ];
        let mut done = self.now_ns;
        for (key, cost) in limits {
            let limit = tg.limits.get(&key).copied().unwrap_or(0);
            if limit == 0 {
                continue;
            }
            let free = tg.busy_until.entry(key).or_insert(0);
            *free = (*free).max(self.now_ns) + cost.saturating_mul(1_000_000_000) / limit;
            done = done.max(*free);
        }
        self.io_wait_until = self.io_wait_until.max(done);
    }
}

/// A format's view of one of its children: its file (as [`Storage`]) or
/// its backing node (as [`BackingRead`]).
struct ChildIo<'a, 'c, F: Files> {
    core: &'a RefCell<&'c mut BlockCore<F>>,
    node: NodeId,
}

impl<F: Files> Storage for ChildIo<'_, '_, F> {
    fn debug_event(&mut self, event: DebugEvent) {
        self.core
            .borrow_mut()
            .blkdebug_event(self.node, event.name());
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.core.borrow_mut().read(self.node, offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.core.borrow_mut().write(self.node, offset, buf)
    }
    fn len(&mut self) -> io::Result<u64> {
        self.core.borrow_mut().length(self.node)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut core = self.core.borrow_mut();
        match core.state.get(&self.node) {
            Some(DriverState::File { path }) => {
                let path = path.clone();
                core.files.storage(&path)?.set_len(len)
            }
            // A format over a format node (raw over qcow2) truncates that
            // image (`bdrv_co_truncate` on its child), not the file below.
            Some(DriverState::Format { .. }) => core.grow(self.node, len),
            _ => {
                let child = core.forward_child(self.node).ok_or_else(eio)?;
                drop(core);
                ChildIo {
                    core: self.core,
                    node: child,
                }
                .set_len(len)
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        let mut core = self.core.borrow_mut();
        match core.state.get(&self.node) {
            Some(DriverState::File { path }) => {
                let path = path.clone();
                core.files.storage(&path)?.flush()
            }
            _ => Ok(()),
        }
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.core.borrow_mut().write_zeroes(self.node, offset, len)
    }
    fn data_status(&mut self, offset: u64, len: u64) -> io::Result<(bool, u64)> {
        let (kind, n) = self
            .core
            .borrow_mut()
            .block_status(self.node, offset, len)?;
        Ok((kind != ExtentKind::Zero, n))
    }
}

impl<F: Files> BackingRead for ChildIo<'_, '_, F> {
    fn read_backing(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut core = self.core.borrow_mut();
        let size = core.length(self.node)?;
        let inside = size.saturating_sub(offset).min(buf.len() as u64) as usize;
        buf[inside..].fill(0);
        if inside > 0 {
            core.read(self.node, offset, &mut buf[..inside])?;
        }
        Ok(())
    }

    fn backing_is_zero(&mut self, offset: u64, len: u64) -> io::Result<bool> {
        self.core.borrow_mut().reads_as_zero(self.node, offset, len)
    }
}
