//! The qcow2 header, its extensions and the backing file name: everything
//! in the first cluster (docs/interop/qcow2.txt in QEMU).

use crate::error::{Error, Result};

/// `QFI\xfb`.
pub(crate) const MAGIC: u32 = 0x5146_49fb;
/// Bytes of a version 2 header.
pub(crate) const V2_HEADER_LEN: usize = 72;
/// Bytes of the fixed part of a version 3 header (through `header_length`).
pub(crate) const V3_MIN_HEADER_LEN: usize = 104;
/// Bytes of the header QEMU 10 writes for version 3 (with `compression_type`
/// and padding).
pub(crate) const V3_HEADER_LEN: usize = 112;
/// Longest backing file name QEMU accepts.
pub(crate) const MAX_BACKING_NAME: usize = 1023;
/// Longest backing format name QEMU keeps (`char backing_format[16]`).
pub(crate) const MAX_BACKING_FORMAT: usize = 15;

/// Header extension types.
pub(crate) mod ext {
    pub const END: u32 = 0;
    pub const BACKING_FORMAT: u32 = 0xe279_2aca;
    pub const FEATURE_TABLE: u32 = 0x6803_f857;
}

/// Incompatible feature bits.
pub(crate) mod incompat {
    pub const DIRTY: u64 = 1 << 0;
    pub const CORRUPT: u64 = 1 << 1;
    pub const DATA_FILE: u64 = 1 << 2;
    pub const COMPRESSION: u64 = 1 << 3;
    pub const EXTENDED_L2: u64 = 1 << 4;
    pub const KNOWN: u64 = DIRTY | CORRUPT | DATA_FILE | COMPRESSION | EXTENDED_L2;
}

/// Autoclear feature bits.
pub(crate) mod autoclear {
    /// The external data file is a valid raw image (`data-file-raw`).
    pub const DATA_FILE_RAW: u64 = 1 << 1;
}

/// One entry of the feature-name table extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureName {
    /// 0 incompatible, 1 compatible, 2 autoclear.
    pub kind: u8,
    /// Bit number within its feature word.
    pub bit: u8,
    /// The name (at most 46 bytes).
    pub name: String,
}

/// A header extension kept verbatim (everything but the backing format and
/// the feature-name table, which are regenerated on rewrite as QEMU does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderExtension {
    /// The extension's type magic.
    pub kind: u32,
    /// Its data, without padding.
    pub data: Vec<u8>,
}

/// Everything the first cluster of a qcow2 image says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// 2 (compat 0.10) or 3 (compat 1.1).
    pub version: u32,
    /// log2 of the cluster size, 9..=21.
    pub cluster_bits: u32,
    /// Virtual size in bytes.
    pub size: u64,
    /// 0 (no encryption; anything else is refused at open).
    pub crypt_method: u32,
    /// Entries of the active L1 table.
    pub l1_size: u32,
    /// Host offset of the active L1 table.
    pub l1_table_offset: u64,
    /// Host offset of the refcount table.
    pub refcount_table_offset: u64,
    /// Clusters of the refcount table.
    pub refcount_table_clusters: u32,
    /// Internal snapshots.
    pub nb_snapshots: u32,
    /// Host offset of the snapshot table.
    pub snapshots_offset: u64,
    /// Incompatible feature bits (v3).
    pub incompatible_features: u64,
    /// Compatible feature bits (v3).
    pub compatible_features: u64,
    /// Autoclear feature bits (v3).
    pub autoclear_features: u64,
    /// log2 of the refcount width in bits, 0..=6 (4 for v2).
    pub refcount_order: u32,
    /// Header length as read (72 for v2).
    pub header_length: u32,
    /// 0 zlib, 1 zstd (v3 headers longer than 104 bytes).
    pub compression_type: u8,
    /// Header bytes past the 112 QEMU knows, kept verbatim.
    pub unknown_header_fields: Vec<u8>,
    /// The backing file name, verbatim (`json:{...}` included).
    pub backing_file: Option<String>,
    /// The backing format from its header extension.
    pub backing_format: Option<String>,
    /// The feature-name table as read.
    pub feature_names: Vec<FeatureName>,
    /// Every other extension, in image order, kept verbatim.
    pub extensions: Vec<HeaderExtension>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// QEMU 10's own feature-name table, written into every v3 header.
const QEMU_FEATURES: [(u8, u8, &str); 8] = [
    (0, 0, "dirty bit"),
    (0, 1, "corrupt bit"),
    (0, 2, "external data file"),
    (0, 3, "compression type"),
    (0, 4, "extended L2 entries"),
    (1, 0, "lazy refcounts"),
    (2, 0, "bitmaps"),
    (2, 1, "raw external data"),
];

impl Header {
    /// Reads the cluster size from the first bytes, so the caller knows how
    /// much to read for [`Header::parse`].
    pub(crate) fn peek_cluster_bits(first: &[u8]) -> Result<u32> {
        if first.len() < V2_HEADER_LEN {
            return Err(Error::header("header truncated"));
        }
        if be32(first, 0) != MAGIC {
            return Err(Error::NotQcow2);
        }
        let version = be32(first, 4);
        if !(2..=3).contains(&version) {
            return Err(Error::UnsupportedVersion(version));
        }
        let cluster_bits = be32(first, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(Error::header(format!(
                "Unsupported cluster size: 2^{cluster_bits}"
            )));
        }
        Ok(cluster_bits)
    }

    /// Parses the first cluster (`buf` is exactly one cluster long, zero
    /// filled past the end of the file).
    pub(crate) fn parse(buf: &[u8]) -> Result<Header> {
        let cluster_bits = Header::peek_cluster_bits(buf)?;
        let cluster_size = 1usize << cluster_bits;
        if buf.len() != cluster_size {
            return Err(Error::header("header truncated"));
        }
        let version = be32(buf, 4);
        let mut h = Header {
            version,
            cluster_bits,
            size: be64(buf, 24),
            crypt_method: be32(buf, 32),
            l1_size: be32(buf, 36),
            l1_table_offset: be64(buf, 40),
            refcount_table_offset: be64(buf, 48),
            refcount_table_clusters: be32(buf, 56),
            nb_snapshots: be32(buf, 60),
            snapshots_offset: be64(buf, 64),
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: V2_HEADER_LEN as u32,
            compression_type: 0,
            unknown_header_fields: Vec::new(),
            backing_file: None,
            backing_format: None,
            feature_names: Vec::new(),
            extensions: Vec::new(),
        };
        if version == 3 {
            h.incompatible_features = be64(buf, 72);
            h.compatible_features = be64(buf, 80);
            h.autoclear_features = be64(buf, 88);
            h.refcount_order = be32(buf, 96);
            h.header_length = be32(buf, 100);
            let len = h.header_length as usize;
            if len < V3_MIN_HEADER_LEN {
                return Err(Error::header("qcow2 header too short"));
            }
            if len > cluster_size {
                return Err(Error::header("qcow2 header exceeds cluster size"));
            }
            if len > V3_MIN_HEADER_LEN {
                h.compression_type = buf[104];
            }
            if len > V3_HEADER_LEN {
                h.unknown_header_fields = buf[V3_HEADER_LEN..len].to_vec();
            }
        }
        let backing_offset = be64(buf, 8);
        let backing_len = be32(buf, 16) as u64;
        if backing_offset > cluster_size as u64 {
            return Err(Error::header("Invalid backing file offset"));
        }
        if h.refcount_order > 6 {
            return Err(Error::header(
                "Reference count entry width too large; may not exceed 64 bits",
            ));
        }
        let ext_end = if backing_offset != 0 {
            backing_offset.min(cluster_size as u64) as usize
        } else {
            cluster_size
        };
        h.read_extensions(buf, ext_end)?;
        if backing_offset != 0 {
            if backing_len > MAX_BACKING_NAME as u64
                || backing_offset.saturating_add(backing_len) > cluster_size as u64
            {
                return Err(Error::header("Backing file name too long"));
            }
            let at = backing_offset as usize;
            let name = &buf[at..at + backing_len as usize];
            h.backing_file = Some(String::from_utf8_lossy(name).into_owned());
        }
        h.check_features()?;
        Ok(h)
    }

    fn read_extensions(&mut self, buf: &[u8], end: usize) -> Result<()> {
        let mut at = self.header_length as usize;
        while at + 8 <= end {
            let kind = be32(buf, at);
            let len = be32(buf, at + 4) as usize;
            at += 8;
            if len > end - at {
                return Err(Error::header("Header extension too large"));
            }
            let data = &buf[at..at + len];
            match kind {
                ext::END => return Ok(()),
                ext::BACKING_FORMAT => {
                    if len > MAX_BACKING_FORMAT {
                        return Err(Error::header(format!(
                            "ext_backing_format: len={len} too large (>=16)"
                        )));
                    }
                    self.backing_format = Some(String::from_utf8_lossy(data).into_owned());
                }
                ext::FEATURE_TABLE => {
                    self.feature_names = data
                        .chunks_exact(48)
                        .map(|e| FeatureName {
                            kind: e[0],
                            bit: e[1],
                            name: String::from_utf8_lossy(&e[2..])
                                .trim_end_matches('\0')
                                .to_owned(),
                        })
                        .collect();
                }
                _ => self.extensions.push(HeaderExtension {
                    kind,
                    data: data.to_vec(),
                }),
            }
            at += len.div_ceil(8) * 8;
        }
        Ok(())
    }

    /// Refuses what this crate cannot handle, naming it (QEMU's texts
    /// where QEMU refuses too, in QEMU's order).
    fn check_features(&self) -> Result<()> {
        self.check_compression_type()?;
        let unknown = self.incompatible_features & !incompat::KNOWN;
        if unknown != 0 {
            return Err(Error::UnknownIncompatibleFeatures {
                bits: unknown,
                names: self.feature_list(0, unknown),
            });
        }
        match self.crypt_method {
            0 => {}
            // AES and LUKS: Strata takes no secrets, as QEMU without one.
            1 | 2 => {
                return Err(Error::header(
                    "Parameter 'encrypt.key-secret' is required for cipher",
                ))
            }
            // QEMU prints the field as a signed int.
            other => {
                return Err(Error::header(format!(
                    "Unsupported encryption method {}",
                    other as i32
                )))
            }
        }
        Ok(())
    }

    /// Refuses the features QEMU has and this crate lacks, once the image
    /// passed every check QEMU makes at open (so that a damaged image is
    /// refused for what QEMU refuses it for).
    pub(crate) fn check_unsupported(&self) -> Result<()> {
        if self.incompatible_features & incompat::DATA_FILE != 0 {
            return Err(Error::Unsupported(
                "external data file (incompatible feature bit 2)".into(),
            ));
        }
        if self.incompatible_features & incompat::EXTENDED_L2 != 0 {
            return Err(Error::Unsupported(
                "extended L2 entries (incompatible feature bit 4)".into(),
            ));
        }
        if self.compression_type == 1 {
            return Err(Error::Unsupported("compression type zstd".into()));
        }
        Ok(())
    }

    /// Bytes per L2 entry: 16 with extended L2 entries (subclusters).
    pub(crate) fn l2_entry_len(&self) -> u64 {
        if self.incompatible_features & incompat::EXTENDED_L2 != 0 {
            16
        } else {
            8
        }
    }

    /// `validate_compression_type`: zlib without the incompatible bit,
    /// zstd with it.
    fn check_compression_type(&self) -> Result<()> {
        let bit_set = self.incompatible_features & incompat::COMPRESSION != 0;
        match (self.compression_type, bit_set) {
            (0, false) | (1, true) => Ok(()),
            (0, true) => Err(Error::header(
                "qcow2: Compression type incompatible feature bit must not be set",
            )),
            (1, false) => Err(Error::header(
                "qcow2: Compression type incompatible feature bit must be set",
            )),
            (t, _) => Err(Error::header(format!(
                "qcow2: unknown compression type: {t}"
            ))),
        }
    }

    /// The bits of `mask` in feature word `kind` as QEMU's
    /// `report_unsupported_feature` prints them: the names the image's
    /// table gives, in table order (at most 46 characters each), then the
    /// bits left unnamed as one hexadecimal mask.
    fn feature_list(&self, kind: u8, mask: u64) -> String {
        let mut left = mask;
        let mut parts = Vec::new();
        for feature in &self.feature_names {
            let bit = 1u64.checked_shl(u32::from(feature.bit)).unwrap_or(0);
            if feature.kind == kind && left & bit != 0 {
                parts.push(feature.name.chars().take(46).collect::<String>());
                left &= !bit;
            }
        }
        if left != 0 {
            parts.push(format!("Unknown incompatible feature: {left:x}"));
        }
        parts.join(", ")
    }

    /// The whole first cluster as QEMU's `qcow2_update_header` lays it out:
    /// header, backing format, feature table (v3, clusters over 4 KiB), kept
    /// extensions, end marker, backing file name.
    pub(crate) fn to_cluster(&self) -> Result<Vec<u8>> {
        let cluster_size = 1usize << self.cluster_bits;
        let mut buf = Vec::with_capacity(cluster_size);
        buf.extend_from_slice(&MAGIC.to_be_bytes());
        buf.extend_from_slice(&self.version.to_be_bytes());
        buf.extend_from_slice(&[0; 12]); // backing file offset and size, patched below
        buf.extend_from_slice(&self.cluster_bits.to_be_bytes());
        buf.extend_from_slice(&self.size.to_be_bytes());
        buf.extend_from_slice(&self.crypt_method.to_be_bytes());
        buf.extend_from_slice(&self.l1_size.to_be_bytes());
        buf.extend_from_slice(&self.l1_table_offset.to_be_bytes());
        buf.extend_from_slice(&self.refcount_table_offset.to_be_bytes());
        buf.extend_from_slice(&self.refcount_table_clusters.to_be_bytes());
        buf.extend_from_slice(&self.nb_snapshots.to_be_bytes());
        buf.extend_from_slice(&self.snapshots_offset.to_be_bytes());
        if self.version >= 3 {
            let header_length = (V3_HEADER_LEN + self.unknown_header_fields.len()) as u32;
            buf.extend_from_slice(&self.incompatible_features.to_be_bytes());
            buf.extend_from_slice(&self.compatible_features.to_be_bytes());
            buf.extend_from_slice(&self.autoclear_features.to_be_bytes());
            buf.extend_from_slice(&self.refcount_order.to_be_bytes());
            buf.extend_from_slice(&header_length.to_be_bytes());
            buf.push(self.compression_type);
            buf.extend_from_slice(&[0; 7]);
            buf.extend_from_slice(&self.unknown_header_fields);
        }
        if let Some(fmt) = &self.backing_format {
            push_extension(&mut buf, ext::BACKING_FORMAT, fmt.as_bytes());
        }
        // QEMU 10 leaves the table out of clusters of 4 KiB and less, where
        // it would crowd out the backing file name.
        if self.version >= 3 && cluster_size > 4096 {
            push_extension(&mut buf, ext::FEATURE_TABLE, &self.feature_table_bytes());
        }
        for e in &self.extensions {
            push_extension(&mut buf, e.kind, &e.data);
        }
        push_extension(&mut buf, ext::END, &[]);
        if let Some(name) = &self.backing_file {
            let at = buf.len() as u64;
            buf[8..16].copy_from_slice(&at.to_be_bytes());
            buf[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
            buf.extend_from_slice(name.as_bytes());
        }
        if buf.len() > cluster_size {
            return Err(Error::HeaderFull);
        }
        buf.resize(cluster_size, 0);
        Ok(buf)
    }

    /// QEMU's table, plus any entry of the image's own table QEMU does not
    /// name (so a rewrite loses no name).
    fn feature_table_bytes(&self) -> Vec<u8> {
        let ours = QEMU_FEATURES.iter().map(|&(kind, bit, name)| FeatureName {
            kind,
            bit,
            name: name.into(),
        });
        let theirs = self
            .feature_names
            .iter()
            .filter(|f| {
                !QEMU_FEATURES
                    .iter()
                    .any(|&(k, b, _)| k == f.kind && b == f.bit)
            })
            .cloned();
        let mut out = Vec::new();
        for f in ours.chain(theirs) {
            let mut entry = [0u8; 48];
            entry[0] = f.kind;
            entry[1] = f.bit;
            let name = f.name.as_bytes();
            let n = name.len().min(46);
            entry[2..2 + n].copy_from_slice(&name[..n]);
            out.extend_from_slice(&entry);
        }
        out
    }
}

fn push_extension(buf: &mut Vec<u8>, kind: u32, data: &[u8]) {
    buf.extend_from_slice(&kind.to_be_bytes());
    buf.extend_from_slice(&(data.len() as u32).to_be_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len() + (data.len().div_ceil(8) * 8 - data.len()), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            version: 3,
            cluster_bits: 16,
            size: 1 << 30,
            crypt_method: 0,
            l1_size: 2,
            l1_table_offset: 0x30000,
            refcount_table_offset: 0x10000,
            refcount_table_clusters: 1,
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: 112,
            compression_type: 0,
            unknown_header_fields: Vec::new(),
            backing_file: Some("json:{\"driver\": \"raw\"}".into()),
            backing_format: Some("raw".into()),
            feature_names: Vec::new(),
            extensions: vec![HeaderExtension {
                kind: 0x1234_5678,
                data: vec![1, 2, 3],
            }],
        }
    }

    #[test]
    fn a_rewrite_round_trips_every_field_and_unknown_extension() {
        let h = sample();
        let again = Header::parse(&h.to_cluster().unwrap()).unwrap();
        assert_eq!(again.extensions, h.extensions);
        assert_eq!(again.backing_file, h.backing_file);
        assert_eq!(again.backing_format, h.backing_format);
        assert_eq!(again.feature_names.len(), QEMU_FEATURES.len());
        assert_eq!(
            Header {
                feature_names: Vec::new(),
                ..again
            },
            h
        );
    }

    #[test]
    fn unknown_incompatible_bits_are_named_from_the_table() {
        let mut h = sample();
        h.incompatible_features = 1 << 9 | 1 << 20;
        h.feature_names.push(FeatureName {
            kind: 0,
            bit: 9,
            name: "shiny feature".into(),
        });
        let err = Header::parse(&h.to_cluster().unwrap()).unwrap_err();
        match err {
            Error::UnknownIncompatibleFeatures { bits, names } => {
                assert_eq!(bits, 1 << 9 | 1 << 20);
                assert_eq!(names, "shiny feature, Unknown incompatible feature: 100000");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn refused_features_say_what_they_are() {
        for (bits, text) in [
            (incompat::DATA_FILE, "external data file"),
            (incompat::EXTENDED_L2, "extended L2"),
        ] {
            let mut h = sample();
            h.incompatible_features = bits;
            let parsed = Header::parse(&h.to_cluster().unwrap()).unwrap();
            let err = parsed.check_unsupported().unwrap_err();
            assert!(err.to_string().contains(text), "{err}");
        }
    }

    #[test]
    fn truncated_and_foreign_headers_are_typed_errors() {
        assert!(matches!(
            Header::peek_cluster_bits(&[0; 10]),
            Err(Error::InvalidHeader(_))
        ));
        assert!(matches!(
            Header::peek_cluster_bits(&[0; 80]),
            Err(Error::NotQcow2)
        ));
        let mut buf = sample().to_cluster().unwrap();
        buf[23] = 30;
        assert!(matches!(
            Header::peek_cluster_bits(&buf),
            Err(Error::InvalidHeader(_))
        ));
    }

    #[test]
    fn a_full_first_cluster_is_header_full() {
        let mut h = sample();
        h.cluster_bits = 9;
        h.backing_file = Some("x".repeat(400));
        assert!(matches!(h.to_cluster(), Err(Error::HeaderFull)));
    }
}
