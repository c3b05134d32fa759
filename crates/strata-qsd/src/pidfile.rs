//! `--pidfile`: `qemu_write_pidfile` (util/oslib-posix.c) and the removal
//! at exit, without QEMU's two ways of reaching another file through a
//! symbolic link.
//!
//! QEMU creates the file mode 0600, takes a write lock on the whole of it
//! (`Cannot lock pid file` while another daemon holds it), checks that the
//! path still names the file it locked, truncates it and writes the pid;
//! the descriptor stays open so the lock lasts the process's life. At exit
//! it unlinks the file's resolved path. Strata does the same, except that it
//! refuses a pidfile that is a symbolic link (QEMU writes through it and at
//! exit deletes its target), and at exit removes the path only while it
//! still names the file this daemon locked.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;

use crate::sys::os_error_text;

/// A written, locked pidfile.
#[derive(Debug)]
pub struct PidFile {
    path: String,
    /// Holds the lock until the daemon exits.
    file: File,
}

/// Why the pidfile could not be written: QEMU's text after
/// `cannot create PID file: `.
#[derive(Debug)]
pub struct PidFileError(pub String);

impl PidFile {
    /// Creates (0600), locks and writes `path` with this process's id.
    pub fn write(path: &str) -> Result<PidFile, PidFileError> {
        let file = loop {
            let file = create(path)?;
            let locked = file
                .metadata()
                .map_err(|e| errno_text("Cannot stat file", &e))?;
            lock_whole_file(&file).map_err(|e| errno_text("Cannot lock pid file", &e))?;
            // The path may have been removed or replaced between the open
            // and the lock by a racing daemon: lock what the path names.
            match std::fs::symlink_metadata(path) {
                Ok(now) if same_file(&now, &locked) => break file,
                _ => continue,
            }
        };
        let pidfile = PidFile {
            path: path.to_string(),
            file,
        };
        pidfile.fill().inspect_err(|_| pidfile.remove())?;
        Ok(pidfile)
    }

    fn fill(&self) -> Result<(), PidFileError> {
        self.file
            .set_len(0)
            .map_err(|e| errno_text("Failed to truncate pid file", &e))?;
        (&self.file)
            .write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(|_| PidFileError("Failed to write pid file".into()))
    }

    /// Unlinks the path if it still names the file this daemon locked
    /// (never another daemon's pidfile, never a link's target).
    pub fn remove(&self) {
        let (Ok(ours), Ok(now)) = (self.file.metadata(), std::fs::symlink_metadata(&self.path))
        else {
            return;
        };
        if same_file(&now, &ours) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `qemu_create(path, O_WRONLY, 0600)`, without following a final
/// symbolic link.
fn create(path: &str) -> Result<File, PidFileError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| errno_text(&format!("Could not create '{path}'"), &e))
}

/// A write lock on the whole file, as QEMU's `F_SETLK`; an
/// open-file-description lock, which conflicts with QEMU's and with another
/// daemon's in this same process.
fn lock_whole_file(file: &File) -> io::Result<()> {
    // SAFETY: flock is plain data; all-zero is valid (l_pid must be 0).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: the descriptor is open; F_OFD_SETLK only reads `lock`.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// `error_setg_errno`: the text, `: `, strerror.
fn errno_text(what: &str, err: &io::Error) -> PidFileError {
    PidFileError(format!("{what}: {}", os_error_text(err)))
}
