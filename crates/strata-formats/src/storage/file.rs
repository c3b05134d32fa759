//! [`FileStorage`]: an image on a real file.

use super::{Access, Storage};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A real file, accessed with positioned reads and writes only (no mmap, so
/// crash behaviour is the kernel's ordinary write-back), `fdatasync` on
/// [`flush`](Storage::flush).
#[derive(Debug)]
pub struct FileStorage {
    file: File,
}

impl FileStorage {
    /// Opens an existing file, read-only or read-write.
    pub fn open(path: impl AsRef<Path>, access: Access) -> io::Result<FileStorage> {
        let file = OpenOptions::new()
            .read(true)
            .write(access == Access::ReadWrite)
            .open(path)?;
        Ok(FileStorage { file })
    }

    /// Creates (or truncates) a file and opens it read-write.
    pub fn create(path: impl AsRef<Path>) -> io::Result<FileStorage> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(FileStorage { file })
    }

    /// Wraps an already open file.
    pub fn from_file(file: File) -> FileStorage {
        FileStorage { file }
    }

    /// The file inside.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Storage for FileStorage {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Past the end of the file reads as zeroes, like QEMU's file-posix.
        buf[done..].fill(0);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn len(&mut self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// `fallocate(FALLOC_FL_ZERO_RANGE)`, as file-posix's
    /// `handle_aiocb_write_zeroes` tries first; zero bytes where the file
    /// system cannot. The file is synced first: ext4 reports a range zeroed
    /// while the file has dirty pages as data to `SEEK_DATA`, and QEMU's
    /// zero writes of a copy loop usually run before the data writes issued
    /// with them (their reads come first), that is, on clean files. A hole
    /// is what the model (and `MemStorage`) makes of a zero write.
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.file.sync_data()?;
        let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        };
        // SAFETY: fallocate on a file descriptor this value owns; no memory
        // is passed.
        let rc =
            unsafe { libc::fallocate(self.file.as_raw_fd(), libc::FALLOC_FL_ZERO_RANGE, off, n) };
        if rc == 0 {
            return Ok(());
        }
        match io::Error::last_os_error() {
            e if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) => {
                super::write_zero_bytes(self, offset, len)
            }
            e => Err(e),
        }
    }

    /// `lseek(SEEK_DATA)` and `lseek(SEEK_HOLE)`, as file-posix's
    /// `find_allocation`: the end of the file is a hole.
    fn data_status(&mut self, offset: u64, len: u64) -> io::Result<(bool, u64)> {
        let eof = self.len()?;
        let limit = offset.saturating_add(len).min(eof.max(offset));
        let Some(next_data) = self.seek(offset, libc::SEEK_DATA)? else {
            return Ok((false, limit - offset));
        };
        if next_data > offset {
            return Ok((false, next_data.min(limit) - offset));
        }
        let hole = self.seek(offset, libc::SEEK_HOLE)?.unwrap_or(eof);
        Ok((true, hole.min(limit) - offset))
    }
}

impl FileStorage {
    /// `lseek(fd, offset, whence)`; `None` for `ENXIO` (no data, or no
    /// hole, from `offset` on).
    fn seek(&self, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: lseek on a file descriptor this value owns. Positioned
        // reads and writes do not use the file offset it moves.
        let pos = unsafe { libc::lseek(self.file.as_raw_fd(), off, whence) };
        if pos >= 0 {
            return Ok(Some(pos as u64));
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
            e => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_zero_and_writes_extend() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = FileStorage::create(dir.path().join("f")).unwrap();
        st.write_at(10, b"abc").unwrap();
        assert_eq!(st.len().unwrap(), 13);
        let mut buf = [0xffu8; 8];
        st.read_at(9, &mut buf).unwrap();
        assert_eq!(&buf, b"\0abc\0\0\0\0");
        st.set_len(11).unwrap();
        st.flush().unwrap();
        st.read_at(9, &mut buf).unwrap();
        assert_eq!(&buf, b"\0a\0\0\0\0\0\0");
    }

    #[test]
    fn large_writes_land_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = FileStorage::create(dir.path().join("f")).unwrap();
        let data: Vec<u8> = (0..(9 << 20) + 123).map(|i| (i % 251) as u8).collect();
        st.write_at(777, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        st.read_at(777, &mut back).unwrap();
        assert!(back == data);
        assert_eq!(st.len().unwrap(), 777 + data.len() as u64);
    }

    #[test]
    fn read_only_files_refuse_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        FileStorage::create(&path).unwrap();
        let mut st = FileStorage::open(&path, Access::ReadOnly).unwrap();
        let err = st.write_at(0, b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(9), "EBADF from a read-only fd");
    }
}
