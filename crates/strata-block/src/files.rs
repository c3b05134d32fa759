//! Where image files live: the host's file system (for strata-qsd and
//! users) or a map of in-memory files (for the simulator).

use crate::locking::ImageLocks;
use std::collections::BTreeMap;
use std::io;
use strata_formats::{Access, FileStorage, MemStorage, Storage};

/// A file system of images, addressed by the path strings QEMU would use.
///
/// Two `file` nodes on the same path share one store, as on a real disk.
pub trait Files {
    /// The store behind one path.
    type Storage: Storage;

    /// Makes `path` available for I/O with `access`; fails as `open(2)`
    /// would.
    fn open(&mut self, path: &str, access: Access) -> io::Result<()>;

    /// The store of an opened path.
    fn storage(&mut self, path: &str) -> io::Result<&mut Self::Storage>;

    /// One name for every path that reaches the same file (`a.img`,
    /// `./a.img`, `/dir/a.img`), to recognise a backing chain that comes
    /// back to a file.
    fn canonical_name(&self, path: &str) -> String;

    /// `realpath(3)`: the canonical absolute name of an existing path,
    /// `None` if nothing is there.
    fn real_path(&self, path: &str) -> Option<String>;

    /// Whether an opened `path` is a regular file (the `file` driver
    /// refuses directories and devices, which open(2) may accept).
    fn is_regular_file(&self, _path: &str) -> bool {
        true
    }

    /// The host's image locks (file-posix's lock bytes); none for files
    /// only this process sees.
    fn image_locks(&self) -> Option<&ImageLocks> {
        None
    }

    /// The host's image locks, to change.
    fn image_locks_mut(&mut self) -> Option<&mut ImageLocks> {
        None
    }
}

/// Image files in memory: cheap to clone (stores share their chunks) and to
/// hash, for the simulator.
///
/// Paths are names relative to a working directory; an absolute path inside
/// it ([`MemFiles::with_working_dir`]) names the same file, as on a disk.
#[derive(Clone, Debug, Default)]
pub struct MemFiles {
    files: BTreeMap<String, MemStorage>,
    working_dir: Option<String>,
}

impl MemFiles {
    /// An empty file system.
    pub fn new() -> MemFiles {
        MemFiles::default()
    }

    /// The same files, with `dir` as the working directory: `dir/NAME`
    /// names the file `NAME`.
    pub fn with_working_dir(mut self, dir: impl Into<String>) -> MemFiles {
        self.working_dir = Some(dir.into());
        self
    }

    /// The name `path` stands for: relative to the working directory.
    fn name<'a>(&self, path: &'a str) -> &'a str {
        self.working_dir
            .as_deref()
            .and_then(|dir| path.strip_prefix(dir))
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(path)
    }

    /// Whether `path` names a directory: the working directory, or one
    /// that holds a file.
    fn is_directory(&self, path: &str) -> bool {
        let dir = path.trim_end_matches('/');
        let name = self.name(dir);
        matches!(name, "" | ".")
            || self.working_dir.as_deref() == Some(dir)
            || self
                .files
                .keys()
                .any(|f| f.starts_with(&format!("{name}/")))
    }

    /// Adds or replaces a file.
    pub fn insert(&mut self, path: impl Into<String>, storage: MemStorage) {
        let path = path.into();
        let name = self.name(&path).to_string();
        self.files.insert(name, storage);
    }

    /// A file's store, if it exists.
    pub fn get(&self, path: &str) -> Option<&MemStorage> {
        self.files.get(self.name(path))
    }

    /// A content hash of every file (path and content), for state keys.
    pub fn content_hashes(&self) -> Vec<(&str, strata_formats::ContentHash)> {
        self.files
            .iter()
            .map(|(path, storage)| (path.as_str(), storage.content_hash()))
            .collect()
    }

    /// Feeds `h` what hashing [`MemFiles::content_hashes`] would (its
    /// length, then each path and content hash), without collecting them:
    /// a state key takes this for every state explored.
    pub fn hash_contents<H: std::hash::Hasher>(&self, h: &mut H) {
        use std::hash::Hash;
        h.write_usize(self.files.len());
        for (path, storage) in &self.files {
            (path.as_str(), storage.content_hash()).hash(h);
        }
    }

    /// Every file, by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MemStorage)> {
        self.files.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl Files for MemFiles {
    type Storage = MemStorage;

    fn open(&mut self, path: &str, _access: Access) -> io::Result<()> {
        if self.files.contains_key(self.name(path)) {
            Ok(())
        } else if self.is_directory(path) {
            Err(io::Error::from_raw_os_error(EISDIR))
        } else {
            Err(io::Error::from_raw_os_error(libc_enoent()))
        }
    }

    fn canonical_name(&self, path: &str) -> String {
        let name = self.name(path);
        name.strip_prefix("./").unwrap_or(name).to_string()
    }

    fn real_path(&self, path: &str) -> Option<String> {
        let exists = self.files.contains_key(self.name(path)) || self.is_directory(path);
        exists.then(|| self.canonical_name(path))
    }

    fn storage(&mut self, path: &str) -> io::Result<&mut MemStorage> {
        let name = self.name(path).to_string();
        self.files
            .get_mut(&name)
            .ok_or_else(|| io::Error::from_raw_os_error(libc_enoent()))
    }
}

/// Image files on the host, relative to the process's working directory
/// as QEMU resolves them.
#[derive(Debug, Default)]
pub struct HostFiles {
    open: BTreeMap<String, FileStorage>,
    locks: ImageLocks,
}

impl HostFiles {
    /// No file opened yet.
    pub fn new() -> HostFiles {
        HostFiles::default()
    }

    /// Makes the completed writes of every opened file durable
    /// (`fdatasync`), as QEMU's `bdrv_close_all` flushes every node at exit.
    pub fn flush_all(&mut self) -> io::Result<()> {
        self.open.values_mut().try_for_each(Storage::flush)
    }
}

impl Files for HostFiles {
    type Storage = FileStorage;

    fn open(&mut self, path: &str, access: Access) -> io::Result<()> {
        let reopen = match self.open.get(path) {
            None => true,
            Some(_) => access == Access::ReadWrite,
        };
        if reopen {
            let storage = FileStorage::open(path, access)?;
            self.open.insert(path.to_string(), storage);
        }
        Ok(())
    }

    fn canonical_name(&self, path: &str) -> String {
        std::fs::canonicalize(path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| path.to_string())
    }

    fn real_path(&self, path: &str) -> Option<String> {
        std::fs::canonicalize(path)
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    fn is_regular_file(&self, path: &str) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.is_file())
    }

    fn image_locks(&self) -> Option<&ImageLocks> {
        Some(&self.locks)
    }

    fn image_locks_mut(&mut self) -> Option<&mut ImageLocks> {
        Some(&mut self.locks)
    }

    fn storage(&mut self, path: &str) -> io::Result<&mut FileStorage> {
        self.open
            .get_mut(path)
            .ok_or_else(|| io::Error::from_raw_os_error(libc_enoent()))
    }
}

/// `ENOENT` (2 on every platform QEMU's file-posix runs on).
/// `EISDIR`: opening a directory for I/O.
const EISDIR: i32 = 21;

fn libc_enoent() -> i32 {
    2
}
