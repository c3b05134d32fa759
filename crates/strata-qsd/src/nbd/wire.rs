//! NBD wire constants, the names QEMU prints for them, and errno mapping.
//!
//! Values are from the NBD protocol (`doc/proto.md`) as QEMU 10.0 uses them.

use std::io;

/// `NBDMAGIC`: the first eight bytes the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: the newstyle magic, also the magic of every option request.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of option replies.
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of transmission requests.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of simple replies.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Magic of structured reply chunks.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Handshake flag: fixed newstyle negotiation.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag: no 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flag: fixed newstyle.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag: no zeroes.
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Transmission flag bits (16 bits, sent with the export size).
pub mod tflag {
    /// Always set.
    pub const HAS_FLAGS: u16 = 1 << 0;
    /// The export is read-only.
    pub const READ_ONLY: u16 = 1 << 1;
    /// `NBD_CMD_FLUSH` is supported.
    pub const SEND_FLUSH: u16 = 1 << 2;
    /// `NBD_CMD_FLAG_FUA` is supported.
    pub const SEND_FUA: u16 = 1 << 3;
    /// `NBD_CMD_TRIM` is supported.
    pub const SEND_TRIM: u16 = 1 << 5;
    /// `NBD_CMD_WRITE_ZEROES` is supported.
    pub const SEND_WRITE_ZEROES: u16 = 1 << 6;
    /// `NBD_CMD_FLAG_DF` is supported (structured replies only).
    pub const SEND_DF: u16 = 1 << 7;
    /// Several connections see one cache.
    pub const CAN_MULTI_CONN: u16 = 1 << 8;
    /// `NBD_CMD_CACHE` is supported.
    pub const SEND_CACHE: u16 = 1 << 10;
    /// `NBD_CMD_FLAG_FAST_ZERO` is supported.
    pub const SEND_FAST_ZERO: u16 = 1 << 11;
}

/// Option numbers (`NBD_OPT_*`).
pub mod opt {
    /// Select an export and enter transmission; no reply on error.
    pub const EXPORT_NAME: u32 = 1;
    /// End negotiation.
    pub const ABORT: u32 = 2;
    /// List exports.
    pub const LIST: u32 = 3;
    /// Start TLS.
    pub const STARTTLS: u32 = 5;
    /// Describe an export.
    pub const INFO: u32 = 6;
    /// Describe an export and enter transmission.
    pub const GO: u32 = 7;
    /// Use structured replies.
    pub const STRUCTURED_REPLY: u32 = 8;
    /// List metadata contexts.
    pub const LIST_META_CONTEXT: u32 = 9;
    /// Select metadata contexts.
    pub const SET_META_CONTEXT: u32 = 10;
    /// 64-bit extended headers (not supported here).
    pub const EXTENDED_HEADERS: u32 = 11;
}

/// Option reply types (`NBD_REP_*`).
pub mod rep {
    /// Done.
    pub const ACK: u32 = 1;
    /// One export of `NBD_OPT_LIST`.
    pub const SERVER: u32 = 2;
    /// One `NBD_INFO_*` item.
    pub const INFO: u32 = 3;
    /// One metadata context.
    pub const META_CONTEXT: u32 = 4;
    /// Unknown option.
    pub const ERR_UNSUP: u32 = 0x8000_0001;
    /// Refused by policy.
    pub const ERR_POLICY: u32 = 0x8000_0002;
    /// Malformed option.
    pub const ERR_INVALID: u32 = 0x8000_0003;
    /// Unknown export.
    pub const ERR_UNKNOWN: u32 = 0x8000_0006;
    /// Option or reply too large.
    pub const ERR_TOO_BIG: u32 = 0x8000_0009;
}

/// `NBD_INFO_*` items of `NBD_OPT_INFO` / `NBD_OPT_GO`.
pub mod info {
    /// Size and transmission flags.
    pub const EXPORT: u16 = 0;
    /// The export's name.
    pub const NAME: u16 = 1;
    /// The export's description.
    pub const DESCRIPTION: u16 = 2;
    /// Minimum, preferred and maximum block sizes.
    pub const BLOCK_SIZE: u16 = 3;
}

/// Commands (`NBD_CMD_*`).
pub mod cmd {
    /// Read.
    pub const READ: u16 = 0;
    /// Write.
    pub const WRITE: u16 = 1;
    /// Disconnect.
    pub const DISC: u16 = 2;
    /// Flush.
    pub const FLUSH: u16 = 3;
    /// Discard.
    pub const TRIM: u16 = 4;
    /// Prefetch.
    pub const CACHE: u16 = 5;
    /// Write zeroes.
    pub const WRITE_ZEROES: u16 = 6;
    /// Block status.
    pub const BLOCK_STATUS: u16 = 7;
}

/// Command flags (`NBD_CMD_FLAG_*`).
pub mod cmd_flag {
    /// Force unit access.
    pub const FUA: u16 = 1 << 0;
    /// Write zeroes without punching holes.
    pub const NO_HOLE: u16 = 1 << 1;
    /// Do not fragment a structured read.
    pub const DF: u16 = 1 << 2;
    /// One extent per context in block status.
    pub const REQ_ONE: u16 = 1 << 3;
    /// Fail write zeroes unless it is fast.
    pub const FAST_ZERO: u16 = 1 << 4;
}

/// Structured reply chunk types (`NBD_REPLY_TYPE_*`).
pub mod chunk {
    /// Final empty chunk.
    pub const NONE: u16 = 0;
    /// Data at an offset.
    pub const OFFSET_DATA: u16 = 1;
    /// Zeroes at an offset.
    pub const OFFSET_HOLE: u16 = 2;
    /// Block status extents.
    pub const BLOCK_STATUS: u16 = 5;
    /// Error with a message.
    pub const ERROR: u16 = 0x8001;
    /// Flag of the last chunk of a reply.
    pub const FLAG_DONE: u16 = 1;
}

/// `base:allocation` state bits.
pub mod state {
    /// Not allocated.
    pub const HOLE: u32 = 1 << 0;
    /// Reads as zeroes.
    pub const ZERO: u32 = 1 << 1;
}

/// The only metadata context, and the id QEMU gives it.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// Context id of `base:allocation` (QEMU's `NBD_META_ID_BASE_ALLOCATION`).
pub const BASE_ALLOCATION_ID: u32 = 0;

/// Largest READ/WRITE/CACHE payload and option length (QEMU's `NBD_MAX_BUFFER_SIZE`).
pub const MAX_BUFFER_SIZE: u32 = 32 * 1024 * 1024;
/// Longest export name or query string (`NBD_MAX_STRING_SIZE`).
pub const MAX_STRING_SIZE: u32 = 4096;
/// Most extents sent in one block status chunk (QEMU: 1 MiB of extents).
pub const MAX_BLOCK_STATUS_EXTENTS: usize = 1024 * 1024 / 8;
/// Length of a transmission request header.
pub const REQUEST_HEADER_LEN: usize = 28;

/// NBD error numbers (the protocol fixes them; they are Linux's values).
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: u32 = 1;
    /// Input/output error.
    pub const EIO: u32 = 5;
    /// Cannot allocate memory.
    pub const ENOMEM: u32 = 12;
    /// Invalid argument.
    pub const EINVAL: u32 = 22;
    /// No space left on device.
    pub const ENOSPC: u32 = 28;
    /// Value too large.
    pub const EOVERFLOW: u32 = 75;
    /// Operation not supported.
    pub const ENOTSUP: u32 = 95;
    /// Server shutting down.
    pub const ESHUTDOWN: u32 = 108;
}

/// The NBD error number for a backend error.
///
/// An OS error code is mapped like QEMU's `system_errno_to_nbd_errno`
/// (Linux numbering; unknown codes become `EINVAL`).  An error without an OS
/// code is mapped by kind: `PermissionDenied`/`ReadOnlyFilesystem` to
/// `EPERM`, `StorageFull`/`QuotaExceeded`/`FileTooLarge` to `ENOSPC`,
/// `OutOfMemory` to `ENOMEM`, `Unsupported` to `ENOTSUP`, `InvalidInput` to
/// `EINVAL`, and anything else to `EIO` (a model block layer's failures are
/// I/O errors unless it says otherwise).
pub fn nbd_errno(error: &io::Error) -> u32 {
    if let Some(code) = error.raw_os_error() {
        return match code {
            1 | 30 => errno::EPERM,         // EPERM, EROFS
            5 => errno::EIO,                // EIO
            12 => errno::ENOMEM,            // ENOMEM
            28 | 27 | 122 => errno::ENOSPC, // ENOSPC, EFBIG, EDQUOT
            75 => errno::EOVERFLOW,         // EOVERFLOW
            95 => errno::ENOTSUP,           // EOPNOTSUPP
            108 => errno::ESHUTDOWN,        // ESHUTDOWN
            _ => errno::EINVAL,
        };
    }
    match error.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => errno::EPERM,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge => {
            errno::ENOSPC
        }
        io::ErrorKind::OutOfMemory => errno::ENOMEM,
        io::ErrorKind::Unsupported => errno::ENOTSUP,
        io::ErrorKind::InvalidInput => errno::EINVAL,
        _ => errno::EIO,
    }
}

/// QEMU's `nbd_opt_lookup`: the name an option has in messages.
pub fn option_name(option: u32) -> &'static str {
    match option {
        opt::EXPORT_NAME => "export name",
        opt::ABORT => "abort",
        opt::LIST => "list",
        opt::STARTTLS => "starttls",
        opt::INFO => "info",
        opt::GO => "go",
        opt::STRUCTURED_REPLY => "structured reply",
        opt::LIST_META_CONTEXT => "list meta context",
        opt::SET_META_CONTEXT => "set meta context",
        opt::EXTENDED_HEADERS => "extended headers",
        _ => "<unknown>",
    }
}

/// QEMU's `nbd_cmd_lookup`: the name a command has in messages.
pub fn command_name(command: u16) -> &'static str {
    match command {
        cmd::READ => "read",
        cmd::WRITE => "write",
        cmd::DISC => "disconnect",
        cmd::FLUSH => "flush",
        cmd::TRIM => "trim",
        cmd::CACHE => "cache",
        cmd::WRITE_ZEROES => "write zeroes",
        cmd::BLOCK_STATUS => "block status",
        _ => "<unknown>",
    }
}

/// Big-endian appends to an output buffer.
pub(crate) trait PutBe {
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
}

impl PutBe for Vec<u8> {
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
}

/// Big-endian reads from a slice of known length.
pub(crate) fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
pub(crate) fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
pub(crate) fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_map_like_qemu() {
        let cases = [
            (1, errno::EPERM),
            (30, errno::EPERM),
            (5, errno::EIO),
            (28, errno::ENOSPC),
            (122, errno::ENOSPC),
            (2, errno::EINVAL),
        ];
        for (os, nbd) in cases {
            assert_eq!(
                nbd_errno(&io::Error::from_raw_os_error(os)),
                nbd,
                "os errno {os}"
            );
        }
    }

    #[test]
    fn kinds_map_without_os_code() {
        assert_eq!(
            nbd_errno(&io::Error::from(io::ErrorKind::StorageFull)),
            errno::ENOSPC
        );
        assert_eq!(
            nbd_errno(&io::Error::from(io::ErrorKind::PermissionDenied)),
            errno::EPERM
        );
        assert_eq!(
            nbd_errno(&io::Error::from(io::ErrorKind::Unsupported)),
            errno::ENOTSUP
        );
        assert_eq!(nbd_errno(&io::Error::other("disk on fire")), errno::EIO);
    }
}
