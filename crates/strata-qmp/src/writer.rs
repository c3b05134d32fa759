//! QEMU's JSON writer (`qobject/json-writer.c`): what QMP responses look like
//! byte for byte.
//!
//! Compact output separates with `", "` and `": "`; object members come in
//! [`QDict`](crate::QDict) hash order; strings escape everything outside
//! printable ASCII as `\uXXXX` (upper-case hex, surrogate pairs beyond the
//! BMP); doubles print as C's `%.17g` (so `inf` can appear, as in QEMU).

use crate::utf8::is_valid_codepoint;
use crate::value::QObject;

/// Serialises `obj` as QEMU does, compact (`pretty = false`, the default of a
/// QMP monitor) or with QEMU's `pretty=on` layout.  No trailing newline.
pub fn to_qemu_json(obj: &QObject, pretty: bool) -> String {
    let mut w = Writer {
        out: String::new(),
        pretty,
        depth: 0,
        need_comma: false,
    };
    w.value(None, obj);
    w.out
}

struct Writer {
    out: String,
    pretty: bool,
    depth: usize,
    need_comma: bool,
}

impl Writer {
    fn newline(&mut self) {
        if self.pretty {
            self.out.push('\n');
            self.out.extend(std::iter::repeat_n(' ', self.depth * 4));
        }
    }

    fn comma_name(&mut self, name: Option<&str>) {
        if self.need_comma {
            self.out.push(',');
            if self.pretty {
                self.newline();
            } else {
                self.out.push(' ');
            }
        } else {
            if !self.out.is_empty() {
                self.newline();
            }
            self.need_comma = true;
        }
        if let Some(name) = name {
            quote(&mut self.out, name);
            self.out.push_str(": ");
        }
    }

    fn value(&mut self, name: Option<&str>, obj: &QObject) {
        self.comma_name(name);
        match obj {
            QObject::Null => self.out.push_str("null"),
            QObject::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            QObject::Int(i) => self.out.push_str(&i.to_string()),
            QObject::Uint(u) => self.out.push_str(&u.to_string()),
            QObject::Double(d) => self.out.push_str(&format_g17(*d)),
            QObject::Str(s) => quote(&mut self.out, s),
            QObject::List(items) => {
                self.open('[');
                for item in items {
                    self.value(None, item);
                }
                self.close(']');
            }
            QObject::Dict(dict) => {
                self.open('{');
                for (k, v) in dict.iter_qemu() {
                    self.value(Some(k), v);
                }
                self.close('}');
            }
        }
    }

    fn open(&mut self, bracket: char) {
        self.out.push(bracket);
        self.depth += 1;
        self.need_comma = false;
    }

    fn close(&mut self, bracket: char) {
        self.depth -= 1;
        self.need_comma = true;
        self.newline();
        self.out.push(bracket);
    }
}

/// Appends `s` as a JSON string the way QEMU's `quoted_str` does.
fn quote(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ => {
                let mut cp = ch as u32;
                if !is_valid_codepoint(cp) {
                    cp = 0xFFFD;
                }
                if cp > 0xFFFF {
                    let v = cp - 0x10000;
                    out.push_str(&format!(
                        "\\u{:04X}\\u{:04X}",
                        0xD800 + (v >> 10),
                        0xDC00 + (v & 0x3FF)
                    ));
                } else if !(0x20..0x7F).contains(&cp) {
                    out.push_str(&format!("\\u{cp:04X}"));
                } else {
                    out.push(ch);
                }
            }
        }
    }
    out.push('"');
}

/// C's `printf("%.17g", d)`.
pub(crate) fn format_g17(d: f64) -> String {
    const PRECISION: i32 = 17;
    if d.is_nan() {
        return if d.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if d.is_infinite() {
        return if d < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Exact rounding to 17 significant digits gives the decimal exponent.
    let sci = format!("{:.*e}", (PRECISION - 1) as usize, d);
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    if !(-4..PRECISION).contains(&exp) {
        let mantissa = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (PRECISION - 1 - exp) as usize;
        trim_fraction(&format!("{d:.decimals$}")).to_string()
    }
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_pseudo_filenames_use_qdict_order() {
        // qsd 10.0.2 wrote this backing file name into an image header
        // (shared/conformance golden flt-f-intermediate-commit-base-is-filter).
        let value = serde_json::json!({
            "driver": "throttle",
            "throttle-group": "tg0",
            "file": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.img"}}
        });
        assert_eq!(
            format!("json:{}", to_qemu_json(&QObject::from_json(&value), false)),
            r#"json:{"throttle-group": "tg0", "driver": "throttle", "file": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.img"}}}"#
        );
    }

    #[test]
    fn g17_matches_glibc() {
        // Echoed ids seen from qsd 10.0.2 (see tests/it/qmp): 0.1, -0.0, 1e400,
        // 18446744073709551616, -9223372036854775809, 1E2, 1e-7, 1.2345...e29.
        assert_eq!(format_g17(0.1), "0.10000000000000001");
        assert_eq!(format_g17(-0.0), "-0");
        assert_eq!(format_g17(f64::INFINITY), "inf");
        assert_eq!(format_g17(18446744073709551616.0), "1.8446744073709552e+19");
        assert_eq!(
            format_g17(-9223372036854775809.0),
            "-9.2233720368547758e+18"
        );
        assert_eq!(format_g17(100.0), "100");
        assert_eq!(format_g17(1e-7), "9.9999999999999995e-08");
        assert_eq!(
            format_g17(123456789012345678901234567890.0),
            "1.2345678901234568e+29"
        );
        assert_eq!(format_g17(0.5), "0.5");
        assert_eq!(format_g17(1500.0), "1500");
    }
}
