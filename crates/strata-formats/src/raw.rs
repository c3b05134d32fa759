//! The raw format: the image is the storage, byte for byte.

use crate::error::{Error, Result};
use crate::extent::{Extent, ExtentKind};
use crate::storage::{Access, DebugEvent, Storage};

/// A raw image: its virtual size is its storage's length.
///
/// Raw has no metadata, no backing file and no allocation information of
/// its own: every byte is allocated, as data or (in a hole of its file)
/// as zeroes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raw {
    size: u64,
    read_only: bool,
}

impl Raw {
    /// Opens the storage as a raw image (its current length is the size).
    pub fn open(storage: &mut dyn Storage, access: Access) -> Result<Raw> {
        Ok(Raw {
            size: storage.len()?,
            read_only: access.is_read_only(),
        })
    }

    /// The image's size in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.size
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read(&mut self, storage: &mut dyn Storage, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        storage.debug_event(DebugEvent::ReadAio);
        Ok(storage.read_at(offset, buf)?)
    }

    /// Writes `data` at `offset`.
    pub fn write(&mut self, storage: &mut dyn Storage, offset: u64, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        self.check_range(offset, data.len() as u64)?;
        storage.debug_event(DebugEvent::WriteAio);
        Ok(storage.write_at(offset, data)?)
    }

    /// Makes `len` bytes at `offset` read as zeroes: `raw_co_pwrite_zeroes`
    /// passes the request to its file ([`Storage::write_zeroes`]).
    pub fn write_zeroes(&mut self, storage: &mut dyn Storage, offset: u64, len: u64) -> Result<()> {
        self.check_writable()?;
        self.check_range(offset, len)?;
        Ok(storage.write_zeroes(offset, len)?)
    }

    /// Grows the image to `size` bytes (`raw_co_truncate` passing the size
    /// on to its file): the new area reads as zeroes.
    pub fn grow(&mut self, storage: &mut dyn Storage, size: u64) -> Result<()> {
        self.check_writable()?;
        if size < self.size {
            return Err(Error::InvalidArgument(format!(
                "cannot grow an image of {} bytes to {size}",
                self.size
            )));
        }
        storage.set_len(size)?;
        self.size = size;
        Ok(())
    }

    /// Raw has no allocation information of its own: its file's holes read
    /// as [`ExtentKind::Zero`], the rest is [`ExtentKind::Data`]
    /// (`raw_co_block_status` passes the question to the file, whose
    /// `SEEK_DATA`/`SEEK_HOLE` answer it: [`Storage::data_status`]).
    pub fn block_status(
        &self,
        storage: &mut dyn Storage,
        offset: u64,
        max_len: u64,
    ) -> Result<Extent> {
        self.check_range(offset, max_len)?;
        let (data, len) = storage.data_status(offset, max_len)?;
        Ok(Extent {
            offset,
            len: len.min(max_len),
            kind: if data {
                ExtentKind::Data
            } else {
                ExtentKind::Zero
            },
        })
    }

    /// Makes completed writes durable.
    pub fn flush(&mut self, storage: &mut dyn Storage) -> Result<()> {
        Ok(storage.flush()?)
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Error::OutOfRange {
                offset,
                len,
                size: self.size,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStorage;

    #[test]
    fn raw_reads_writes_and_bounds() {
        let mut st = MemStorage::from_bytes(&[1; 4096]);
        let mut raw = Raw::open(&mut st, Access::ReadWrite).unwrap();
        assert_eq!(raw.virtual_size(), 4096);
        raw.write(&mut st, 10, b"xyz").unwrap();
        raw.write_zeroes(&mut st, 0, 5).unwrap();
        let mut buf = [9; 16];
        raw.read(&mut st, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"\0\0\0\0\0\x01\x01\x01\x01\x01xyz\x01\x01\x01");
        assert!(matches!(
            raw.write(&mut st, 4095, b"ab"),
            Err(Error::OutOfRange { .. })
        ));
        let mut ro = Raw::open(&mut st, Access::ReadOnly).unwrap();
        assert!(matches!(ro.write(&mut st, 0, b"a"), Err(Error::ReadOnly)));
    }
}
