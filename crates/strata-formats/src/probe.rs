//! What QEMU's format probing (`bdrv_probe_all`) makes of an image's
//! first sector, for every probing format driver QEMU 10.0.2 is built
//! with, not only the two Strata opens.
//!
//! A raw image whose format was probed must never be written so that it
//! probes as something else next time (`raw_co_pwritev`): a guest could
//! otherwise write a qcow2 header naming any host file as its backing
//! file. [`probed_driver`] is the judge of that rule.

/// How many bytes probing looks at (`BLOCK_PROBE_BUF_SIZE`): the first
/// sector.
pub const PROBE_BUF_SIZE: usize = 512;

/// How an image's format was chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FormatOrigin {
    /// Named by the user or by a header's backing format.
    #[default]
    Given,
    /// Probed from the image's first bytes (`bs->probed`): a raw image
    /// then refuses writes that would make it probe as another format.
    Probed,
}

/// One format driver's probe: whether it claims the bytes.
type Probe = fn(&[u8]) -> bool;

/// The driver QEMU's probing picks for an image starting with `buf`
/// (at most [`PROBE_BUF_SIZE`] bytes are looked at, no filename): the
/// name of the format whose magic matches, or `"raw"`, whose score is the
/// lowest there is.
pub fn probed_driver(buf: &[u8]) -> &'static str {
    let buf = &buf[..buf.len().min(PROBE_BUF_SIZE)];
    let probes: [(&'static str, Probe); 11] = [
        ("qcow2", |b| qcow_version(b).is_some_and(|v| v >= 2)),
        ("qcow", |b| qcow_version(b) == Some(1)),
        ("qed", |b| {
            b.len() >= QED_HEADER_SIZE && b.starts_with(b"QED\0")
        }),
        ("vdi", is_vdi),
        ("vmdk", is_vmdk),
        ("vpc", |b| b.starts_with(b"conectix")),
        ("vhdx", |b| b.starts_with(b"vhdxfile")),
        ("parallels", is_parallels),
        ("bochs", is_bochs),
        ("cloop", |b| b.starts_with(CLOOP_V2_MAGIC)),
        // The magic and a big-endian version 1.
        ("luks", |b| b.starts_with(b"LUKS\xba\xbe\0\x01")),
    ];
    probes
        .iter()
        .find(|(_, matches)| matches(buf))
        .map_or("raw", |(name, _)| name)
}

/// The version after qcow's and qcow2's shared magic, when the buffer
/// holds the whole header of that version (`QCowHeader`: 48 bytes for
/// qcow, 112 for qcow2).
fn qcow_version(buf: &[u8]) -> Option<u32> {
    if !buf.starts_with(b"QFI\xfb") || buf.len() < 8 {
        return None;
    }
    let version = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let header_size = if version == 1 { 48 } else { 112 };
    (buf.len() >= header_size).then_some(version)
}

/// `QEDHeader`'s size.
const QED_HEADER_SIZE: usize = 68;

/// `VdiHeader` (512 bytes): the signature after 64 bytes of text.
fn is_vdi(buf: &[u8]) -> bool {
    const VDI_SIGNATURE: u32 = 0xbeda_107f;
    buf.len() >= PROBE_BUF_SIZE
        && u32::from_le_bytes([buf[64], buf[65], buf[66], buf[67]]) == VDI_SIGNATURE
}

/// vmdk: a sparse extent's magic, or a text descriptor whose first line
/// that is neither a comment nor blank says `version=1`, `2` or `3`.
fn is_vmdk(buf: &[u8]) -> bool {
    if buf.starts_with(b"COWD") || buf.starts_with(b"KDMV") {
        return true;
    }
    let mut rest = buf;
    while let Some(&first) = rest.first() {
        match first {
            b'#' => {
                let line_end = rest.iter().position(|&b| b == b'\n');
                rest = line_end.map_or(&[][..], |end| &rest[end + 1..]);
            }
            b' ' => {
                let text = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
                rest = &rest[text..];
                rest = rest.strip_prefix(b"\r").unwrap_or(rest);
                // Only blank lines may come before the version line.
                match rest.strip_prefix(b"\n") {
                    Some(next) => rest = next,
                    None => return false,
                }
            }
            _ => return is_vmdk_version_line(rest),
        }
    }
    false
}

fn is_vmdk_version_line(line: &[u8]) -> bool {
    let Some(after) = line.strip_prefix(b"version=") else {
        return false;
    };
    matches!(after.first(), Some(b'1'..=b'3'))
        && (after[1..].starts_with(b"\n") || after[1..].starts_with(b"\r\n"))
}

/// `ParallelsHeader`: one of two magics and version 2.
fn is_parallels(buf: &[u8]) -> bool {
    const HEADER_SIZE: usize = 64;
    buf.len() >= HEADER_SIZE
        && (buf.starts_with(b"WithoutFreeSpace") || buf.starts_with(b"WithouFreSpacExt"))
        && u32::from_le_bytes([buf[16], buf[17], buf[18], buf[19]]) == 2
}

/// A bochs growing redolog, version 1 or 2: NUL-terminated strings in
/// fixed fields (magic 32 bytes, type 16, subtype 16), then the version.
fn is_bochs(buf: &[u8]) -> bool {
    let field_is = |at: usize, text: &[u8]| {
        buf.get(at..at + text.len()) == Some(text) && buf.get(at + text.len()) == Some(&0)
    };
    buf.len() >= PROBE_BUF_SIZE
        && field_is(0, b"Bochs Virtual HD Image")
        && field_is(32, b"Redolog")
        && field_is(48, b"Growing")
        && matches!(
            u32::from_le_bytes([buf[64], buf[65], buf[66], buf[67]]),
            0x0001_0000 | 0x0002_0000
        )
}

/// A cloop V2.0 image starts with this shell script.
const CLOOP_V2_MAGIC: &[u8] =
    b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn sector(prefix: &[u8]) -> Vec<u8> {
        let mut s = prefix.to_vec();
        s.resize(PROBE_BUF_SIZE, 0);
        s
    }

    #[test]
    fn magics_probe_as_their_formats_and_the_rest_as_raw() {
        let mut qcow2 = sector(b"QFI\xfb\0\0\0\x03");
        assert_eq!(probed_driver(&qcow2), "qcow2");
        qcow2[7] = 1;
        assert_eq!(probed_driver(&qcow2), "qcow");
        qcow2[7] = 0;
        assert_eq!(probed_driver(&qcow2), "raw");
        assert_eq!(probed_driver(&sector(b"version=1\n")), "vmdk");
        assert_eq!(probed_driver(&sector(b"# c\n  \r\nversion=3\r\n")), "vmdk");
        assert_eq!(probed_driver(&sector(b"\nversion=1\n")), "raw");
        assert_eq!(probed_driver(&sector(b"version=4\n")), "raw");
        assert_eq!(probed_driver(&sector(b"conectix")), "vpc");
        assert_eq!(probed_driver(&sector(CLOOP_V2_MAGIC)), "cloop");
        assert_eq!(probed_driver(&sector(b"LUKS\xba\xbe\0\x01")), "luks");
        assert_eq!(probed_driver(&sector(b"LUKS\xba\xbe\0\x02")), "raw");
        assert_eq!(probed_driver(&sector(b"")), "raw");
        assert_eq!(probed_driver(b"QFI\xfb"), "raw");
    }
}
