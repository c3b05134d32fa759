//! Image creation, as `qemu-img create -f qcow2` lays images out.

use super::header::{Header, V2_HEADER_LEN, V3_HEADER_LEN};
use super::{Qcow2, OFFSET_MASK};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// `compat=` of `qemu-img create`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compat {
    /// `0.10`: qcow2 version 2.
    V2,
    /// `1.1` (the default): qcow2 version 3.
    #[default]
    V3,
}

/// What to create; defaults are `qemu-img create`'s.
///
/// ```
/// use strata_formats::{Compat, CreateOptions};
/// let opts = CreateOptions::new(1 << 30).cluster_size(512).compat(Compat::V2);
/// assert_eq!(opts.refcount_bits, 16);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateOptions {
    /// Virtual size in bytes (rounded up to 512, as qemu-img does). With a
    /// backing file and no `-s`, pass the backing file's size.
    pub size: u64,
    /// Cluster size: a power of two from 512 B to 2 MiB (default 64 KiB).
    pub cluster_size: u64,
    /// Refcount width: a power of two from 1 to 64 (default 16; v2 needs 16).
    pub refcount_bits: u32,
    /// Version (default 1.1).
    pub compat: Compat,
    /// Backing file name, stored verbatim.
    pub backing_file: Option<String>,
    /// Backing format, stored in its header extension.
    pub backing_format: Option<String>,
}

impl CreateOptions {
    /// qemu-img's defaults for an image of `size` bytes.
    pub fn new(size: u64) -> CreateOptions {
        CreateOptions {
            size,
            cluster_size: 64 * 1024,
            refcount_bits: 16,
            compat: Compat::V3,
            backing_file: None,
            backing_format: None,
        }
    }

    /// Sets the cluster size.
    pub fn cluster_size(self, cluster_size: u64) -> CreateOptions {
        CreateOptions {
            cluster_size,
            ..self
        }
    }

    /// Sets the refcount width.
    pub fn refcount_bits(self, refcount_bits: u32) -> CreateOptions {
        CreateOptions {
            refcount_bits,
            ..self
        }
    }

    /// Sets the version.
    pub fn compat(self, compat: Compat) -> CreateOptions {
        CreateOptions { compat, ..self }
    }

    /// Sets the backing file and its format.
    pub fn backing(self, file: impl Into<String>, format: Option<&str>) -> CreateOptions {
        CreateOptions {
            backing_file: Some(file.into()),
            backing_format: format.map(str::to_owned),
            ..self
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidArgument(msg));
        if !self.cluster_size.is_power_of_two() || !(512..=2 << 20).contains(&self.cluster_size) {
            return bad(format!(
                "Cluster size must be a power of two between 512 and 2048k, not {}",
                self.cluster_size
            ));
        }
        if !self.refcount_bits.is_power_of_two() || self.refcount_bits > 64 {
            return bad("Refcount width must be a power of two and may not exceed 64 bits".into());
        }
        if self.compat == Compat::V2 && self.refcount_bits != 16 {
            return bad(
                "Different refcount widths than 16 bits require compatibility level 1.1 or above"
                    .into(),
            );
        }
        if self.backing_format.is_some() && self.backing_file.is_none() {
            return bad("Backing format cannot be used without backing file".into());
        }
        if self.size > i64::MAX as u64 - 511 {
            return bad(format!("Image size {} too large", self.size));
        }
        Ok(())
    }
}

impl Qcow2 {
    /// Writes a new empty image over `storage` (truncating it) and opens it
    /// read-write. The layout is qemu-img's: header, refcount table and
    /// first refcount block in clusters 0–2, then the L1 table.
    pub fn create(storage: &mut dyn Storage, opts: &CreateOptions) -> Result<Qcow2> {
        opts.validate()?;
        let cs = opts.cluster_size;
        let size = opts.size.next_multiple_of(512);
        let v3 = opts.compat == Compat::V3;
        let header = Header {
            version: if v3 { 3 } else { 2 },
            cluster_bits: cs.trailing_zeros(),
            size: 0,
            crypt_method: 0,
            l1_size: 0,
            l1_table_offset: 0,
            refcount_table_offset: cs,
            refcount_table_clusters: 1,
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: opts.refcount_bits.trailing_zeros(),
            header_length: if v3 { V3_HEADER_LEN } else { V2_HEADER_LEN } as u32,
            compression_type: 0,
            unknown_header_fields: Vec::new(),
            backing_file: None,
            backing_format: None,
            feature_names: Vec::new(),
            extensions: Vec::new(),
        };
        storage.set_len(0)?;
        storage.write_at(0, &header.to_cluster()?)?;
        let mut reftable = vec![0u8; cs as usize];
        reftable[..8].copy_from_slice(&(2 * cs).to_be_bytes());
        storage.write_at(cs, &reftable)?;
        let mut image = Qcow2::from_header(header, false)?;
        image.reftable = std::sync::Arc::new(vec![0; (cs / 8) as usize]);
        std::sync::Arc::make_mut(&mut image.reftable)[0] = 2 * cs;
        // The first refcount block counts itself, the table and the header.
        storage.write_at(2 * cs, &vec![0u8; cs as usize])?;
        std::sync::Arc::make_mut(&mut image.metadata).insert(2 * cs);
        image.update_refcounts(storage, 0, 3, 1)?;
        image.resize_empty(storage, size)?;
        if let Some(file) = &opts.backing_file {
            image.change_backing_file(storage, Some(file), opts.backing_format.as_deref())?;
        }
        Ok(image)
    }

    /// Gives a new image with no L1 table its size and L1 table.
    fn resize_empty(&mut self, storage: &mut dyn Storage, size: u64) -> Result<()> {
        let cs = self.cluster_size();
        let entries = size.div_ceil(cs * (cs / 8));
        if entries * 8 > super::MAX_L1_BYTES {
            return Err(Error::InvalidArgument(format!(
                "Image size {size} too large for cluster size {cs}"
            )));
        }
        if entries > 0 {
            let offset = self.alloc_contiguous(storage, (entries * 8).div_ceil(cs))?;
            debug_assert_eq!(offset & !OFFSET_MASK, 0);
            storage.write_at(offset, &vec![0u8; (entries * 8) as usize])?;
            self.header.l1_table_offset = offset;
            self.l1 = std::sync::Arc::new(vec![0; entries as usize]);
        }
        self.header.l1_size = entries as u32;
        self.header.size = size;
        self.write_header(storage)
    }
}
