//! Image locking as file-posix does it (`raw_apply_lock_bytes`,
//! `raw_check_lock_bytes`), so that QEMU and Strata see each other's locks.
//!
//! Every `file` node with locking on holds an open file description of its
//! own, on which it takes shared open-file-description locks (`F_OFD_SETLK`,
//! `F_RDLCK`) on one byte per permission: byte `100 + bit` while the node's
//! parents hold the permission, byte `200 + bit` while they do not share
//! it. A node that is to take a permission fails if another description
//! holds the permission's "unshared" byte; a node that is not to share a
//! permission fails if another description holds its "held" byte. Locks of
//! one description never conflict with themselves, so two nodes on one file
//! in one process see each other, as two QEMU nodes do.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use strata_graph::{Graph, NodeId, OptValue, Options, Perm};
use strata_perm::{PermHooks, Refusal, ReopenQueue};

/// `RAW_LOCK_PERM_BASE`: byte `100 + bit` is held while the permission is.
const PERM_LOCK_BASE: i64 = 100;
/// `RAW_LOCK_SHARED_BASE`: byte `200 + bit` is held while it is not shared.
const SHARED_LOCK_BASE: i64 = 200;

/// The `file` driver's `locking` option (`OnOffAuto`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LockingMode {
    /// Lock, failing if the file system cannot.
    On,
    /// Never lock.
    Off,
    /// Lock where open-file-description locks exist: on Linux, always.
    Auto,
}

impl LockingMode {
    /// The mode a `file` node's options ask for (`auto` when absent).
    pub fn of(opts: &Options) -> LockingMode {
        match opts.get("locking") {
            Some(OptValue::Str(mode)) if mode == "on" => LockingMode::On,
            Some(OptValue::Str(mode)) if mode == "off" => LockingMode::Off,
            _ => LockingMode::Auto,
        }
    }

    /// Whether the node takes lock bytes.
    pub fn locks(self) -> bool {
        self != LockingMode::Off
    }
}

/// One locking `file` node's description and the bytes it holds.
#[derive(Debug)]
struct LockedFile {
    file: File,
    /// `bs->filename`, named by the hint of a refused lock.
    path: String,
    held: Perm,
    unshared: Perm,
}

/// The lock descriptions of every locking `file` node.
#[derive(Debug, Default)]
pub struct ImageLocks {
    files: BTreeMap<NodeId, LockedFile>,
}

impl ImageLocks {
    /// Opens the description `node` locks through.
    pub fn add(&mut self, node: NodeId, path: &str) -> io::Result<()> {
        let file = File::open(path)?;
        let locked = LockedFile {
            file,
            path: path.to_string(),
            held: Perm::NONE,
            unshared: Perm::NONE,
        };
        self.files.insert(node, locked);
        Ok(())
    }

    /// `raw_check_lock_bytes`: whether `node` may take `perm` and share
    /// only `shared`, given what other descriptions hold; QEMU's text and
    /// hint otherwise.
    pub fn check(&self, node: NodeId, perm: Perm, shared: Perm) -> Result<(), Refusal> {
        let Some(locked) = self.files.get(&node) else {
            return Ok(());
        };
        let fd = locked.file.as_raw_fd();
        for (_, bit) in perm.iter_named() {
            if byte_taken_elsewhere(fd, SHARED_LOCK_BASE + bit_index(bit)) {
                return Err(lock_error("", bit, &locked.path));
            }
        }
        for (_, bit) in (Perm::ALL - shared).iter_named() {
            if byte_taken_elsewhere(fd, PERM_LOCK_BASE + bit_index(bit)) {
                return Err(lock_error("shared ", bit, &locked.path));
            }
        }
        Ok(())
    }

    /// `raw_apply_lock_bytes`: `node` holds exactly the bytes of `perm`
    /// and of what it does not share.
    pub fn apply(&mut self, node: NodeId, perm: Perm, shared: Perm) -> io::Result<()> {
        let Some(locked) = self.files.get_mut(&node) else {
            return Ok(());
        };
        let unshared = Perm::ALL - shared;
        if (locked.held, locked.unshared) == (perm, unshared) {
            return Ok(());
        }
        let fd = locked.file.as_raw_fd();
        for (_, bit) in Perm::ALL.iter_named() {
            let index = bit_index(bit);
            set_byte(fd, PERM_LOCK_BASE + index, perm.contains(bit))?;
            set_byte(fd, SHARED_LOCK_BASE + index, unshared.contains(bit))?;
        }
        locked.held = perm;
        locked.unshared = unshared;
        Ok(())
    }

    /// The nodes that lock.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.files.keys().copied().collect()
    }

    /// Closes the descriptions (and so drops the locks) of nodes that are
    /// gone.
    pub fn retain(&mut self, live: impl Fn(NodeId) -> bool) {
        self.files.retain(|node, _| live(*node));
    }
}

/// `qemu_lock_fd_test`: whether a description other than `fd`'s holds the
/// byte (an exclusive lock on it would conflict).
fn byte_taken_elsewhere(fd: i32, byte: i64) -> bool {
    let mut probe = flock(libc::F_WRLCK, byte);
    // SAFETY: `fd` is open for the lifetime of its `LockedFile`; `probe`
    // is a valid flock the kernel fills in.
    let rc = unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut probe) };
    rc == 0 && probe.l_type != libc::F_UNLCK as libc::c_short
}

/// `qemu_lock_fd` / `qemu_unlock_fd` on one byte, shared.
fn set_byte(fd: i32, byte: i64, locked: bool) -> io::Result<()> {
    let kind = if locked { libc::F_RDLCK } else { libc::F_UNLCK };
    let request = flock(kind, byte);
    // SAFETY: as in `byte_taken_elsewhere`; F_OFD_SETLK only reads `request`.
    let rc = unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &request) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn flock(kind: i32, byte: i64) -> libc::flock {
    // SAFETY: flock is plain data; zero is a valid value of every field
    // (l_pid must be 0 for OFD locks).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = byte;
    lock.l_len = 1;
    lock
}

/// The bit number of a single permission (`BLK_PERM_WRITE` = 1 << 1 → 1).
fn bit_index(bit: Perm) -> i64 {
    i64::from(bit.bits().trailing_zeros())
}

/// `Failed to get [shared ]"<perm>" lock`, with the hint
/// `raw_handle_perm_lock` appends (QMP never shows it).
fn lock_error(shared: &str, bit: Perm, path: &str) -> Refusal {
    Refusal {
        message: format!("Failed to get {shared}\"{}\" lock", bit.message_names()),
        hint: Some(format!("Is another process using the image [{path}]?\n")),
    }
}

/// The drivers' hooks plus file-posix's `.bdrv_check_perm`: the lock bytes.
pub(crate) struct LockingHooks<'a> {
    pub(crate) drivers: &'a dyn PermHooks,
    pub(crate) locks: Option<&'a ImageLocks>,
}

impl PermHooks for LockingHooks<'_> {
    fn child_perm(
        &self,
        graph: &Graph,
        parent: NodeId,
        edge: &strata_graph::Edge,
        perm: Perm,
        shared: Perm,
        queue: &ReopenQueue,
    ) -> (Perm, Perm) {
        self.drivers
            .child_perm(graph, parent, edge, perm, shared, queue)
    }

    fn check_perm(
        &self,
        graph: &Graph,
        node: NodeId,
        perm: Perm,
        shared: Perm,
    ) -> Result<(), Refusal> {
        self.drivers.check_perm(graph, node, perm, shared)?;
        match self.locks {
            Some(locks) => locks.check(node, perm, shared),
            None => Ok(()),
        }
    }

    fn force_share(&self, graph: &Graph, node: NodeId) -> bool {
        self.drivers.force_share(graph, node)
    }
}
