//! The persistent dirty bitmaps QEMU loads when it opens an image
//! (`qcow2_read_extensions`, `qcow2_load_dirty_bitmaps`). Strata keeps no
//! bitmaps, but an image QEMU refuses because of them is refused here too,
//! with QEMU's text; what lies past the end of the file reads as zeros.

use super::{in_reach, Qcow2, OFFSET_MASK, REFTABLE_OFFSET_MASK};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// Header extension type of persistent dirty bitmaps.
pub(super) const BITMAPS_EXTENSION: u32 = 0x2385_2875;
/// Autoclear bit: the bitmaps extension is consistent.
const AUTOCLEAR_BITMAPS: u64 = 1;
/// `QCOW2_MAX_BITMAPS`.
const MAX_BITMAPS: u32 = 65535;
/// `QCOW2_MAX_BITMAP_DIRECTORY_SIZE`.
const MAX_DIRECTORY_SIZE: u64 = 1024 * MAX_BITMAPS as u64;
/// A directory entry's fixed part (`Qcow2BitmapDirEntry`).
const DIR_ENTRY_LEN: u64 = 24;
const MAX_TABLE_SIZE: u32 = 0x800_0000;
const MAX_PHYS_SIZE: u64 = 0x2000_0000;
const GRANULARITY_BITS: std::ops::RangeInclusive<u8> = 9..=31;
const MAX_NAME_SIZE: u64 = 1023;
const RESERVED_FLAGS: u32 = 0xffff_fffc;
const FLAG_IN_USE: u32 = 1;
const TABLE_ENTRY_RESERVED_MASK: u64 = 0xff00_0000_0000_01fe;
const TABLE_ENTRY_ALL_ONES: u64 = 1;
/// The only bitmap type (`BT_DIRTY_TRACKING_BITMAP`).
const DIRTY_TRACKING: u8 = 1;
const EINVAL_TEXT: &str = "Invalid argument";
const EIO_TEXT: &str = "Input/output error";

/// Where the bitmap directory is, as the extension says.
pub(super) struct Directory {
    nb_bitmaps: u32,
    size: u64,
    offset: u64,
}

/// One directory entry, as `bitmap_list_load` keeps it.
struct Bitmap {
    table_offset: u64,
    table_size: u32,
    flags: u32,
    granularity_bits: u8,
    /// The name up to its first NUL (QEMU prints and compares it as a C
    /// string).
    name: String,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn header_error(text: String) -> Error {
    Error::InvalidHeader(text)
}

/// Reads `buf.len()` bytes at `offset`, zeros past the end of the file;
/// an offset past what QEMU addresses fails as its request check does.
fn read_zero_padded(
    storage: &mut dyn Storage,
    offset: u64,
    buf: &mut [u8],
    file_len: u64,
) -> std::result::Result<(), &'static str> {
    if !in_reach(offset, buf.len() as u64) {
        return Err(EIO_TEXT);
    }
    let present = file_len.saturating_sub(offset).min(buf.len() as u64) as usize;
    if present > 0 {
        storage
            .read_at(offset, &mut buf[..present])
            .map_err(|_| EIO_TEXT)?;
    }
    Ok(())
}

impl Qcow2 {
    /// `qcow2_read_extensions` on the bitmaps extension: the directory it
    /// points to, or none (no extension, or one the autoclear bit no
    /// longer vouches for, which QEMU ignores).
    pub(super) fn bitmap_directory(&self) -> Result<Option<Directory>> {
        let header = &self.header;
        let Some(ext) = header
            .extensions
            .iter()
            .find(|e| e.kind == BITMAPS_EXTENSION)
        else {
            return Ok(None);
        };
        if ext.data.len() != DIR_ENTRY_LEN as usize {
            return Err(header_error("bitmaps_ext: Invalid extension length".into()));
        }
        if header.autoclear_features & AUTOCLEAR_BITMAPS == 0 {
            return Ok(None);
        }
        if be32(&ext.data, 4) != 0 {
            return Err(header_error(
                "bitmaps_ext: Reserved field is not zero".into(),
            ));
        }
        let dir = Directory {
            nb_bitmaps: be32(&ext.data, 0),
            size: be64(&ext.data, 8),
            offset: be64(&ext.data, 16),
        };
        if dir.nb_bitmaps > MAX_BITMAPS {
            return Err(header_error(format!(
                "bitmaps_ext: Image has {} bitmaps, exceeding the QEMU supported maximum of {MAX_BITMAPS}",
                dir.nb_bitmaps
            )));
        }
        if dir.nb_bitmaps == 0 {
            return Err(header_error(
                "found bitmaps extension with zero bitmaps".into(),
            ));
        }
        if !dir.offset.is_multiple_of(self.cluster_size()) {
            return Err(header_error(
                "bitmaps_ext: invalid bitmap directory offset".into(),
            ));
        }
        if dir.size > MAX_DIRECTORY_SIZE {
            return Err(header_error(format!(
                "bitmaps_ext: bitmap directory size ({}) exceeds the maximum supported size ({MAX_DIRECTORY_SIZE})",
                dir.size
            )));
        }
        Ok(Some(dir))
    }

    /// `qcow2_load_dirty_bitmaps`: the directory, each bitmap's table and
    /// data as QEMU loads them; read-write, the directory is rewritten in
    /// place with the bitmaps marked in use, which QEMU refuses to do over
    /// other metadata. `snapshot_l1s` are the snapshots' L1 tables and
    /// `snapshot_table` the snapshot table, as (offset, bytes).
    pub(super) fn check_bitmaps(
        &self,
        storage: &mut dyn Storage,
        file_len: u64,
        dir: &Directory,
        snapshot_table: (u64, u64),
        snapshot_l1s: &[(u64, u64)],
    ) -> Result<()> {
        let bitmaps = self.load_bitmap_list(storage, file_len, dir)?;
        let mut names = std::collections::BTreeSet::new();
        let mut needs_update = false;
        for bitmap in &bitmaps {
            if !names.insert(bitmap.name.as_str()) {
                return Err(header_error(format!(
                    "Bitmap already exists: {}",
                    bitmap.name
                )));
            }
            if bitmap.flags & FLAG_IN_USE == 0 {
                self.check_bitmap_table(storage, file_len, bitmap)?;
                needs_update = true;
            }
        }
        if needs_update && !self.read_only {
            let stored: u64 = bitmaps
                .iter()
                .map(|b| (DIR_ENTRY_LEN + b.name.len() as u64).next_multiple_of(8))
                .sum();
            let overlaps =
                || self.overlaps_metadata(dir.offset, dir.size, snapshot_table, snapshot_l1s);
            let errno_text = if stored != dir.size {
                Some(EINVAL_TEXT)
            } else if overlaps() {
                Some(EIO_TEXT)
            } else {
                None
            };
            if let Some(text) = errno_text {
                return Err(header_error(format!(
                    "Can't update bitmap directory: {text}"
                )));
            }
        }
        Ok(())
    }

    /// `bitmap_list_load` with `check_dir_entry`.
    fn load_bitmap_list(
        &self,
        storage: &mut dyn Storage,
        file_len: u64,
        dir: &Directory,
    ) -> Result<Vec<Bitmap>> {
        if dir.size == 0 {
            return Err(header_error(
                "Requested bitmap directory size is zero".into(),
            ));
        }
        let mut bytes = vec![0u8; dir.size as usize];
        read_zero_padded(storage, dir.offset, &mut bytes, file_len)
            .map_err(|text| header_error(format!("Failed to read bitmap directory: {text}")))?;
        let broken = || header_error("Broken bitmap directory".into());
        let mut bitmaps = Vec::new();
        let mut at = 0u64;
        while at < dir.size {
            if at + DIR_ENTRY_LEN > dir.size {
                return Err(broken());
            }
            if bitmaps.len() as u64 >= u64::from(dir.nb_bitmaps) {
                return Err(header_error(
                    "More bitmaps found than specified in header extension".into(),
                ));
            }
            let e = &bytes[at as usize..];
            let (name_size, extra) = (u64::from(u16::from_be_bytes([e[18], e[19]])), be32(e, 20));
            let next = at + (DIR_ENTRY_LEN + name_size + u64::from(extra)).next_multiple_of(8);
            if next > dir.size {
                return Err(broken());
            }
            if extra != 0 {
                return Err(header_error("Bitmap extra data is not supported".into()));
            }
            let name_field = &e[DIR_ENTRY_LEN as usize..(DIR_ENTRY_LEN + name_size) as usize];
            let name_end = name_field
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(name_field.len());
            let bitmap = Bitmap {
                table_offset: be64(e, 0),
                table_size: be32(e, 8),
                flags: be32(e, 12),
                granularity_bits: e[17],
                name: String::from_utf8_lossy(&name_field[..name_end]).into_owned(),
            };
            if !self.satisfies_constraints(&bitmap, e[16], name_size) {
                return Err(header_error(format!(
                    "Bitmap '{}' doesn't satisfy the constraints",
                    bitmap.name
                )));
            }
            bitmaps.push(bitmap);
            at = next;
        }
        if bitmaps.len() as u64 != u64::from(dir.nb_bitmaps) {
            return Err(header_error(
                "Less bitmaps found than specified in header extension".into(),
            ));
        }
        Ok(bitmaps)
    }

    /// `check_dir_entry`.
    fn satisfies_constraints(&self, bitmap: &Bitmap, kind: u8, name_size: u64) -> bool {
        let cs = self.cluster_size();
        let shape_ok = bitmap.table_size != 0
            && bitmap.table_offset != 0
            && bitmap.table_offset.is_multiple_of(cs)
            && bitmap.table_size <= MAX_TABLE_SIZE
            && GRANULARITY_BITS.contains(&bitmap.granularity_bits)
            && bitmap.flags & RESERVED_FLAGS == 0
            && name_size <= MAX_NAME_SIZE
            && kind == DIRTY_TRACKING;
        if !shape_ok {
            return false;
        }
        let phys_bytes = u64::from(bitmap.table_size) * cs;
        if phys_bytes > MAX_PHYS_SIZE {
            return false;
        }
        // A bitmap in use may be too small (an image resized since).
        bitmap.flags & FLAG_IN_USE != 0
            || self.virtual_size() <= (phys_bytes * 8) << bitmap.granularity_bits
    }

    /// `load_bitmap`: the table's entries, and its size against the
    /// bitmap's serialized size (whole 64-bit words, in clusters).
    fn check_bitmap_table(
        &self,
        storage: &mut dyn Storage,
        file_len: u64,
        bitmap: &Bitmap,
    ) -> Result<()> {
        let cs = self.cluster_size();
        let mut table = vec![0u8; bitmap.table_size as usize * 8];
        let entries_ok = read_zero_padded(storage, bitmap.table_offset, &mut table, file_len)
            .and_then(|()| {
                let valid = table.chunks_exact(8).all(|raw| {
                    let entry = be64(raw, 0);
                    let offset = entry & OFFSET_MASK;
                    entry & TABLE_ENTRY_RESERVED_MASK == 0
                        && (offset == 0
                            || (entry & TABLE_ENTRY_ALL_ONES == 0 && offset.is_multiple_of(cs)))
                });
                if valid {
                    Ok(())
                } else {
                    Err(EINVAL_TEXT)
                }
            });
        if let Err(text) = entries_ok {
            return Err(header_error(format!(
                "Could not read bitmap_table table from image for bitmap '{}': {text}",
                bitmap.name
            )));
        }
        let bits = self.virtual_size().div_ceil(1 << bitmap.granularity_bits);
        let serialized = bits.div_ceil(64) * 8;
        if serialized.div_ceil(cs) != u64::from(bitmap.table_size) {
            return Err(header_error(format!(
                "Could not read bitmap '{}' from image: {EINVAL_TEXT}",
                bitmap.name
            )));
        }
        Ok(())
    }

    /// `qcow2_check_metadata_overlap` with QEMU's default checks
    /// (`cached`: all but inactive L2 tables), the bitmap directory
    /// itself left out: whether `offset..offset + size`, widened to whole
    /// clusters, touches other metadata.
    fn overlaps_metadata(
        &self,
        offset: u64,
        size: u64,
        snapshot_table: (u64, u64),
        snapshot_l1s: &[(u64, u64)],
    ) -> bool {
        let cs = self.cluster_size();
        let start = offset / cs * cs;
        let end = start.saturating_add(size.next_multiple_of(cs));
        if size == 0 {
            return false;
        }
        let hits = |at: u64, len: u64| len > 0 && at < end && start < at.saturating_add(len);
        let header = &self.header;
        let tables = [
            (0, cs),
            (header.l1_table_offset, u64::from(header.l1_size) * 8),
            (
                header.refcount_table_offset,
                u64::from(header.refcount_table_clusters) * cs,
            ),
            snapshot_table,
        ];
        tables
            .iter()
            .chain(snapshot_l1s)
            .any(|&(at, len)| hits(at, len))
            || self
                .l1
                .iter()
                .map(|e| e & OFFSET_MASK)
                .chain(self.reftable.iter().map(|e| e & REFTABLE_OFFSET_MASK))
                .any(|at| at != 0 && hits(at, cs))
    }
}
