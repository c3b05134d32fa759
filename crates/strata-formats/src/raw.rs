//! The raw format: the image is the storage, byte for byte.

use crate::error::{Error, Result};
use crate::extent::{Extent, ExtentKind};
use crate::probe::{probed_driver, FormatOrigin, PROBE_BUF_SIZE};
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
    origin: FormatOrigin,
}

impl Raw {
    /// Opens the storage as a raw image (its current length is the size).
    pub fn open(storage: &mut dyn Storage, access: Access) -> Result<Raw> {
        Ok(Raw {
            size: storage.len()?,
            read_only: access.is_read_only(),
            origin: FormatOrigin::Given,
        })
    }

    /// How the image's format was chosen.
    pub fn origin(&self) -> FormatOrigin {
        self.origin
    }

    /// Records how the image's format was chosen: a probed one guards its
    /// first sector (see [`Raw::write`]).
    pub fn set_origin(&mut self, origin: FormatOrigin) {
        self.origin = origin;
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

    /// Writes `data` at `offset`. When the format was probed, a write
    /// into the first sector is refused if the sector it leaves would
    /// probe as another format (`raw_co_pwritev`, which sees the whole
    /// sector: a probed raw node read-modify-writes partial sectors).
    pub fn write(&mut self, storage: &mut dyn Storage, offset: u64, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        self.check_range(offset, data.len() as u64)?;
        if self.origin == FormatOrigin::Probed && offset < PROBE_BUF_SIZE as u64 && !data.is_empty()
        {
            self.check_first_sector(storage, offset as usize, data)?;
        }
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

    /// The first sector as `data` written at `offset` leaves it (past the
    /// end of the image, zeroes) must still probe as raw.
    fn check_first_sector(
        &self,
        storage: &mut dyn Storage,
        offset: usize,
        data: &[u8],
    ) -> Result<()> {
        let mut sector = [0u8; PROBE_BUF_SIZE];
        let stored = (self.size as usize).min(PROBE_BUF_SIZE);
        storage.read_at(0, &mut sector[..stored])?;
        let overlap = data.len().min(PROBE_BUF_SIZE - offset);
        sector[offset..offset + overlap].copy_from_slice(&data[..overlap]);
        match probed_driver(&sector) {
            "raw" => Ok(()),
            other => Err(Error::WouldProbeAs(other)),
        }
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

    #[test]
    fn a_probed_raw_image_never_becomes_another_format() {
        let mut st = MemStorage::from_bytes(&[0; 4096]);
        let mut raw = Raw::open(&mut st, Access::ReadWrite).unwrap();
        let qcow2_magic = b"QFI\xfb\0\0\0\x03";
        raw.write(&mut st, 0, qcow2_magic).unwrap();
        raw.write(&mut st, 0, &[0; 8]).unwrap();
        raw.set_origin(FormatOrigin::Probed);
        // The magic alone makes the sector qcow2's, wherever it lands.
        assert!(matches!(
            raw.write(&mut st, 0, qcow2_magic),
            Err(Error::WouldProbeAs("qcow2"))
        ));
        raw.write(&mut st, 4, b"\0\0\0\x03").unwrap();
        assert!(matches!(
            raw.write(&mut st, 0, b"QFI\xfb"),
            Err(Error::WouldProbeAs("qcow2"))
        ));
        assert_eq!(
            Error::WouldProbeAs("qcow2").errno(),
            1,
            "EPERM, as raw_co_pwritev"
        );
        // Past the first sector anything goes.
        raw.write(&mut st, 512, qcow2_magic).unwrap();
        let mut buf = [9; 8];
        raw.read(&mut st, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"\0\0\0\0\0\0\0\x03");
    }
}
