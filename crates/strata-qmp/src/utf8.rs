//! QEMU's "modified UTF-8" (`util/unicode.c`): how it decodes bytes in JSON
//! strings, and which code points it refuses.

/// True for the code points QEMU accepts in strings: not beyond U+10FFFF, not
/// a surrogate, not a noncharacter (U+FDD0..U+FDEF, U+xxFFFE, U+xxFFFF).
pub(crate) fn is_valid_codepoint(cp: u32) -> bool {
    cp <= 0x10FFFF
        && !(0xFDD0..=0xFDEF).contains(&cp)
        && (cp & 0xFFFE) != 0xFFFE
        && !(0xD800..=0xDFFF).contains(&cp)
}

/// Decodes one character at `bytes[pos..]` like `mod_utf8_codepoint(s, 6,
/// &end)` on a NUL-terminated string: returns the code point (`None` for an
/// invalid sequence) and the position after what was consumed.  Bytes past
/// the end read as NUL.
pub(crate) fn mod_utf8_codepoint(bytes: &[u8], pos: usize) -> (Option<u32>, usize) {
    const MIN_CP: [u32; 5] = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let byte = at(pos);
    if byte == 0 {
        return (None, pos);
    }
    let mut p = pos + 1;
    if byte < 0x80 {
        return (Some(byte as u32), p);
    }
    if byte >= 0xFE || byte & 0x40 == 0 {
        return (None, p);
    }
    let len = byte.leading_ones() as usize;
    let mut cp = (byte as u32) & ((0x80u32 >> len) - 1);
    for i in 1..len {
        let b = if i < 6 { at(p) } else { 0 };
        if b & 0xC0 != 0x80 {
            return (None, p);
        }
        p += 1;
        cp = (cp << 6) | (b as u32 & 0x3F);
    }
    if !is_valid_codepoint(cp) || (cp < MIN_CP[len - 2] && !(cp == 0 && len == 2)) {
        return (None, p);
    }
    (Some(cp), p)
}

/// Bytes as QEMU would print them: each invalid sequence becomes U+FFFD,
/// `C0 80` becomes `'\0'`.  Decoding stops at a NUL byte, as C does.
pub(crate) fn decode_lossy(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut pos = 0;
    while pos < bytes.len() && bytes[pos] != 0 {
        let (cp, end) = mod_utf8_codepoint(bytes, pos);
        out.push(cp.and_then(char::from_u32).unwrap_or('\u{FFFD}'));
        pos = end.max(pos + 1);
    }
    out
}

/// The bytes QEMU holds for `s`: UTF-8 with `'\0'` as `C0 80`.
pub(crate) fn to_modified_utf8(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for ch in s.chars() {
        if ch == '\0' {
            out.extend_from_slice(&[0xC0, 0x80]);
        } else {
            let mut buf = [0; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlong_nul_is_the_only_overlong_accepted() {
        assert_eq!(mod_utf8_codepoint(&[0xC0, 0x80], 0), (Some(0), 2));
        assert_eq!(mod_utf8_codepoint(&[0xC1, 0x81], 0).0, None);
        assert_eq!(mod_utf8_codepoint(&[0xEF, 0xBF, 0xBE], 0).0, None); // U+FFFE
        assert_eq!(mod_utf8_codepoint(&[0xC3], 0), (None, 1));
    }

    #[test]
    fn lossy_decoding_matches_qemu() {
        assert_eq!(decode_lossy(b"\"\xff"), "\"\u{FFFD}");
        assert_eq!(decode_lossy(b"a\xc0\x80b"), "a\0b");
    }
}
