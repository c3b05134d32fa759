//! QEMU's keyval syntax (`util/keyval.c`) and the number parsers its input
//! visitor uses (`util/cutils.c`).
//!
//! `driver=qcow2,file.driver=file,file.filename=a,,b.qcow2` becomes
//! `{"driver": "qcow2", "file": {"driver": "file", "filename": "a,b.qcow2"}}`:
//! dotted keys build nested objects, `,,` is a literal comma, purely numeric
//! key fragments (`children.0=a,children.1=b`) build lists, and a first
//! value without `=` belongs to the option's implied key (`--blockdev raw,...`
//! means `driver=raw`).  All values stay strings; the schema-driven visitor
//! converts them.

use crate::value::{QDict, QObject};

/// The result of [`keyval_parse`].
#[derive(Clone, Debug, PartialEq)]
pub struct Keyval {
    /// The parsed options (strings, nested objects, lists).
    pub dict: QDict,
    /// True when the options asked for help (`help` or `?` as a key).
    pub help: bool,
}

/// Parses `params` like `keyval_parse(params, implied_key, &help, errp)`.
pub fn keyval_parse(params: &str, implied_key: Option<&str>) -> Result<Keyval, String> {
    let bytes = params.as_bytes();
    let mut root = QDict::new();
    let mut help = false;
    let mut implied = implied_key;
    let mut s = 0;
    while s < bytes.len() {
        s += parse_one(&mut root, &bytes[s..], implied, &mut help)?;
        implied = None;
    }
    let mut key_of_cur = Vec::new();
    listify_dict(&mut root, &mut key_of_cur)?;
    Ok(Keyval { dict: root, help })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `parse_qapi_name(s, false)`: length of the QAPI name at the start of `s`.
fn qapi_name_len(s: &[u8]) -> usize {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut p = 0;
    if at(p) == b'_' {
        p += 1;
        if at(p) != b'_' {
            return 0;
        }
        p += 1;
        while at(p) != 0 && (at(p).is_ascii_alphanumeric() || at(p) == b'-' || at(p) == b'.') {
            p += 1;
        }
        if at(p) != b'_' {
            return 0;
        }
        p += 1;
    }
    if !at(p).is_ascii_alphabetic() {
        return 0;
    }
    while at(p).is_ascii_alphanumeric() || at(p) == b'-' || at(p) == b'_' {
        p += 1;
    }
    p
}

/// `key_to_index`: a list index (digits), `Some((index, len))`; huge
/// indexes saturate to `i32::MAX` as in QEMU.
fn key_to_index(key: &[u8]) -> Option<(usize, usize)> {
    let len = key.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 {
        return None;
    }
    let index = text(&key[..len])
        .parse::<u64>()
        .unwrap_or(u64::MAX)
        .min(i32::MAX as u64);
    Some((index as usize, len))
}

/// `starts_with_help_option`: length of a leading `help` or `?`.
fn help_option_len(s: &[u8]) -> usize {
    if s.starts_with(b"?") {
        1
    } else if s.starts_with(b"help") {
        4
    } else {
        0
    }
}

/// Finds (creating) the object at `path` under `root`.
fn dict_at<'a>(root: &'a mut QDict, path: &[String]) -> &'a mut QDict {
    let mut cur = root;
    for key in path {
        cur = match cur.get_mut(key) {
            Some(QObject::Dict(d)) => d,
            _ => unreachable!("path was created as objects"),
        };
    }
    cur
}

/// `keyval_parse_one`: parses one `key=value`, returns the bytes consumed.
fn parse_one(
    root: &mut QDict,
    params: &[u8],
    implied_key: Option<&str>,
    help: &mut bool,
) -> Result<usize, String> {
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let mut key: &[u8] = params;
    let mut val_end = None;
    let mut len = params
        .iter()
        .position(|&b| b == b'=' || b == b',')
        .unwrap_or(params.len());
    if len > 0 && at(params, len) != b'=' {
        if help_option_len(params) == len {
            *help = true;
            return Ok(if at(params, len) == b',' {
                len + 1
            } else {
                len
            });
        }
        if let Some(implied) = implied_key {
            key = implied.as_bytes();
            val_end = Some(len);
            len = key.len();
        }
    }
    let is_implied = val_end.is_some();
    let key_end = len;

    let mut path: Vec<String> = Vec::new();
    let mut key_in_cur = String::new();
    let mut s = 0;
    loop {
        let frag_len = match (s != 0).then(|| key_to_index(&key[s..])).flatten() {
            Some((_, l)) => l,
            None => qapi_name_len(&key[s..]),
        };
        if frag_len == 0 || (s + frag_len < key_end && key[s + frag_len] != b'.') {
            return Err(format!("Invalid parameter '{}'", text(&key[..key_end])));
        }
        if frag_len >= 128 {
            let fragment = if s != 0 || s + frag_len != key_end {
                " fragment"
            } else {
                ""
            };
            return Err(format!(
                "Parameter{fragment} '{}' is too long",
                text(&key[s..s + frag_len])
            ));
        }
        if s != 0 {
            let cur = dict_at(root, &path);
            match cur.get(&key_in_cur) {
                Some(QObject::Dict(_)) => {}
                Some(_) => {
                    return Err(format!(
                        "Parameters '{}.*' used inconsistently",
                        text(&key[..s - 1])
                    ))
                }
                None => cur.insert(key_in_cur.clone(), QObject::Dict(QDict::new())),
            }
            path.push(std::mem::take(&mut key_in_cur));
        }
        key_in_cur = text(&key[s..s + frag_len]);
        s += frag_len;
        if at(key, s) != b'.' {
            break;
        }
        s += 1;
    }

    let (value, consumed) = if let Some(val_end) = val_end {
        debug_assert!(is_implied);
        let consumed = if at(params, val_end) == b',' {
            val_end + 1
        } else {
            val_end
        };
        (params[..val_end].to_vec(), consumed)
    } else {
        if at(params, s) != b'=' {
            return Err(format!(
                "Expected '=' after parameter '{}'",
                text(&params[..s])
            ));
        }
        s += 1;
        let mut value = Vec::new();
        loop {
            match at(params, s) {
                0 if s >= params.len() => break,
                b',' => {
                    s += 1;
                    if at(params, s) != b',' || s >= params.len() {
                        break;
                    }
                }
                _ => {}
            }
            value.push(params[s]);
            s += 1;
        }
        (value, s)
    };
    let cur = dict_at(root, &path);
    if let Some(old) = cur.get(&key_in_cur) {
        if !matches!(old, QObject::Str(_)) {
            return Err(format!(
                "Parameters '{}.*' used inconsistently",
                text(&key[..key_end])
            ));
        }
    }
    cur.insert(key_in_cur, QObject::Str(text(&value)));
    Ok(consumed)
}

/// `keyval_listify` for one object: converts index-keyed objects to lists,
/// depth first, in QEMU's hash order (which decides the error reported).
fn listify_dict(
    cur: &mut QDict,
    key_of_cur: &mut Vec<String>,
) -> Result<Option<Vec<QObject>>, String> {
    let keys: Vec<String> = cur.iter_qemu().map(|(k, _)| k.to_string()).collect();
    let mut has_index = false;
    let mut has_member = false;
    for key in &keys {
        if key_to_index(key.as_bytes()).is_some() {
            has_index = true;
        } else {
            has_member = true;
        }
        if let Some(QObject::Dict(sub)) = cur.get_mut(key) {
            key_of_cur.push(key.clone());
            let listified = listify_dict(sub, key_of_cur)?;
            key_of_cur.pop();
            if let Some(list) = listified {
                cur.insert(key.clone(), QObject::List(list));
            }
        }
    }
    let prefix: String = key_of_cur.iter().map(|k| format!("{k}.")).collect();
    if has_index && has_member {
        return Err(format!("Parameters '{prefix}*' used inconsistently"));
    }
    if !has_index {
        return Ok(None);
    }
    let nelt = cur.len() + 1;
    let mut elt: Vec<Option<QObject>> = vec![None; nelt];
    let mut max_index: i64 = -1;
    for (key, value) in cur.iter_qemu() {
        let (index, _) = key_to_index(key.as_bytes()).expect("all keys are indexes");
        max_index = max_index.max(index as i64);
        if index < nelt - 1 {
            elt[index] = Some(value.clone());
        }
    }
    let mut list = Vec::new();
    for (i, item) in elt
        .into_iter()
        .enumerate()
        .take(nelt.min((max_index + 1) as usize))
    {
        match item {
            Some(v) => list.push(v),
            None => return Err(format!("Parameter '{prefix}{i}' missing")),
        }
    }
    Ok(Some(list))
}

/// C's `strtoll`/`strtoull` with base 0 and the whole string consumed
/// (`qemu_strtoi64(s, NULL, 0, ..)`): optional whitespace and sign, then
/// `0x` hex, `0` octal or decimal.  `None` on any error.
fn strtox(s: &str) -> Option<(bool, u64)> {
    let s = s.trim_start_matches([' ', '\t', '\n', '\u{b}', '\u{c}', '\r']);
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if (rest.starts_with("0x") || rest.starts_with("0X"))
        && rest[2..].starts_with(|c: char| c.is_ascii_hexdigit())
    {
        (16, &rest[2..])
    } else if rest.starts_with('0') {
        (8, rest)
    } else {
        (10, rest)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .map(|v| (negative, v))
}

/// `qemu_strtoi64(s, NULL, 0, ..)`.
pub(crate) fn strtoi64(s: &str) -> Option<i64> {
    let (negative, magnitude) = strtox(s)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// `qemu_strtou64(s, NULL, 0, ..)`: a minus sign wraps, as `strtoull` does.
pub(crate) fn strtou64(s: &str) -> Option<u64> {
    let (negative, magnitude) = strtox(s)?;
    Some(if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    })
}

/// `qemu_strtod_finite(s, NULL, ..)` for decimal input.
pub(crate) fn strtod_finite(s: &str) -> Option<f64> {
    let s = s.trim_start_matches([' ', '\t', '\n', '\u{b}', '\u{c}', '\r']);
    let lower = s.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    s.parse::<f64>().ok().filter(|d| d.is_finite())
}

/// `qemu_strtosz(s, NULL, ..)`: `123`, `64k`, `1.5G`, `0x1000`, with QEMU's
/// exact 64.64 fixed-point arithmetic for fractions (`do_strtosz`).
pub(crate) fn strtosz(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let is_space = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    // parse_uint(nptr, &endptr, 10, &val): strtoull, refusing a minus sign.
    let mut p = b.iter().take_while(|&&c| is_space(c)).count();
    let sign = at(p);
    if sign == b'+' || sign == b'-' {
        p += 1;
    }
    let digits = b[p.min(b.len())..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let (mut val, mut end, parsed) = if digits > 0 {
        if sign == b'-' {
            return None;
        }
        (s[p..p + digits].parse::<u64>().ok()?, p + digits, true)
    } else {
        (0, 0, false)
    };
    let mut valf: u64 = 0;
    if parsed && val == 0 && matches!(at(end), b'x' | b'X') {
        let hex = &s[p + digits + 1..];
        let n = hex.bytes().take_while(u8::is_ascii_hexdigit).count();
        if n == 0 {
            return None;
        }
        val = u64::from_str_radix(&hex[..n], 16).ok()?;
        end = p + digits + 1 + n;
        if at(end) == b'.' || suffix_mul(at(end)).is_some() {
            return None;
        }
    } else if at(end) == b'.' || (!parsed && s.contains('.')) {
        let fraction;
        if parsed && at(end) == b'.' && !at(end + 1).is_ascii_digit() {
            end += 1;
            fraction = 0.0;
        } else {
            // strtod() on the rest with any exponent cut off: 'e' is a suffix.
            let rest = &s[end..];
            let cut = rest.find(['e', 'E']).unwrap_or(rest.len());
            let (f, used) = decimal_prefix(&rest[..cut])?;
            if f.is_sign_negative() {
                return None;
            }
            fraction = f;
            end += used;
        }
        if fraction == 1.0 {
            val = val.checked_add(1)?;
        } else {
            valf = (fraction * 18446744073709551616.0) as u64;
            if valf == 0 && fraction > 0.0 {
                valf = 1;
            }
        }
    } else if !parsed {
        return None;
    }
    let mul = match suffix_mul(at(end)) {
        Some(m) => {
            end += 1;
            m
        }
        None => 1,
    };
    if end != b.len() {
        return None;
    }
    if mul == 1 {
        return (valf == 0).then_some(val);
    }
    // 64.64 x 64.0 -> 128.64, rounding 0.5 up, as QEMU does.
    let whole = val as u128 * mul as u128;
    let frac = valf as u128 * mul as u128;
    let total = whole + (frac >> 64) + ((frac as u64) >> 63) as u128;
    u64::try_from(total).ok()
}

/// `suffix_mul(c, 1024)` for a present suffix.
fn suffix_mul(c: u8) -> Option<u64> {
    let shift = match c.to_ascii_uppercase() {
        b'B' => 0,
        b'K' => 10,
        b'M' => 20,
        b'G' => 30,
        b'T' => 40,
        b'P' => 50,
        b'E' => 60,
        _ => return None,
    };
    Some(1u64 << shift)
}

/// The longest decimal number at the start of `s` (C's `strtod` without
/// exponent, hex or inf/nan): its value and length.
fn decimal_prefix(s: &str) -> Option<(f64, usize)> {
    let b = s.as_bytes();
    let mut p = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    let start = p;
    if matches!(b.get(p), Some(b'+' | b'-')) {
        p += 1;
    }
    let int = b[p..].iter().take_while(|c| c.is_ascii_digit()).count();
    p += int;
    let mut frac = 0;
    if b.get(p) == Some(&b'.') {
        frac = b[p + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if int + frac > 0 {
            p += 1 + frac;
        }
    }
    if int + frac == 0 {
        return None;
    }
    s[start..p].parse::<f64>().ok().map(|f| (f, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_like_strtoll_base_0() {
        assert_eq!(strtoi64("0x10"), Some(16));
        assert_eq!(strtoi64("010"), Some(8));
        assert_eq!(strtoi64(" -5"), Some(-5));
        assert_eq!(strtoi64("08"), None);
        assert_eq!(strtoi64("0x"), None);
        assert_eq!(strtoi64("1k"), None);
        assert_eq!(strtou64("-1"), Some(u64::MAX));
        assert_eq!(strtosz("64k"), Some(65536));
        assert_eq!(strtosz("1.5M"), Some(1572864));
        assert_eq!(strtosz("1.5"), None);
        assert_eq!(strtosz("0x1000"), Some(4096));
        assert_eq!(strtosz(".5k"), Some(512));
        assert_eq!(strtosz("1.k"), Some(1024));
        assert_eq!(strtosz("1.5e"), Some(3 << 59));
        assert_eq!(strtosz("16E"), None);
        assert_eq!(strtosz("0x1M"), None);
        assert_eq!(strtosz("-1"), None);
        assert_eq!(strtosz("1Q"), None);
    }
}
