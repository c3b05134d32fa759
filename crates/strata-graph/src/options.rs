//! Driver options as QEMU keeps them: an insertion-ordered tree of scalars
//! (a `QDict`), and its `json:{...}` rendering for pseudo-filenames.
//!
//! The rendering is QEMU's filename syntax, not the QMP protocol: it ends up
//! in image headers (`bdrv_refresh_filename`), so it must match QEMU byte for
//! byte, including the order in which a `QDict` iterates its keys.

use std::fmt::Write as _;

/// One option value.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum OptValue {
    /// A string (`QString`).
    Str(String),
    /// An integer (`QNum`).
    Int(i64),
    /// A boolean (`QBool`).
    Bool(bool),
    /// `null` (`QNull`), e.g. `"backing": null`.
    Null,
    /// A nested dictionary.
    Dict(Options),
    /// A list (`QList`).
    List(Vec<OptValue>),
}

/// An insertion-ordered dictionary of options.
///
/// Insertion order is kept because it decides QEMU's iteration order among
/// keys that fall into the same hash bucket.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct Options {
    entries: Vec<(String, OptValue)>,
}

impl Options {
    /// An empty dictionary.
    pub fn new() -> Options {
        Options::default()
    }

    /// Sets `key`; an existing key keeps its place (like `qdict_put`).
    pub fn put(&mut self, key: impl Into<String>, value: OptValue) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Builder form of [`Options::put`].
    pub fn with(mut self, key: impl Into<String>, value: OptValue) -> Options {
        self.put(key, value);
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&OptValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The string value of `key`, if it is a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(OptValue::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// Removes `key` and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<OptValue> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &OptValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in the order QEMU's `QDict` iterates them: by hash bucket,
    /// and newest first within a bucket (buckets are head-inserted lists).
    pub fn iter_qdict_order(&self) -> impl Iterator<Item = (&str, &OptValue)> {
        let mut order: Vec<(u32, usize)> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (qdict_bucket(k), i))
            .collect();
        order.sort_by_key(|&(bucket, index)| (bucket, std::cmp::Reverse(index)));
        order
            .into_iter()
            .map(move |(_, i)| (self.entries[i].0.as_str(), &self.entries[i].1))
    }

    /// The `json:{...}` pseudo-filename body, as `qobject_to_json` prints it.
    pub fn to_qemu_json(&self) -> String {
        let mut out = String::new();
        write_dict(&mut out, self);
        out
    }
}

const QDICT_BUCKET_MAX: u32 = 512;

/// `tdb_hash` from qobject/qdict.c, reduced to a bucket index.
fn qdict_bucket(key: &str) -> u32 {
    let bytes = key.as_bytes();
    let mut value = 0x238F_13AFu32.wrapping_mul(bytes.len() as u32);
    for (i, &byte) in bytes.iter().enumerate() {
        value = value.wrapping_add(u32::from(byte) << ((i as u32 * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345) % QDICT_BUCKET_MAX
}

fn write_dict(out: &mut String, dict: &Options) {
    out.push('{');
    for (i, (key, value)) in dict.iter_qdict_order().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_string(out, key);
        out.push_str(": ");
        write_value(out, value);
    }
    out.push('}');
}

fn write_value(out: &mut String, value: &OptValue) {
    match value {
        OptValue::Str(s) => write_string(out, s),
        OptValue::Int(n) => {
            let _ = write!(out, "{n}");
        }
        OptValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        OptValue::Null => out.push_str("null"),
        OptValue::Dict(d) => write_dict(out, d),
        OptValue::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
    }
}

/// `quoted_str` from util/json-writer.c: ASCII only, everything else escaped.
fn write_string(out: &mut String, s: &str) {
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
            c if (c as u32) < 0x20 || (c as u32) >= 0x7f => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{:04X}", unit);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> OptValue {
        OptValue::Str(v.to_string())
    }

    #[test]
    fn throttle_filename_matches_qemu_10_0_2() {
        // Observed in flt-f-intermediate-commit-base-is-filter: the header that
        // qemu-storage-daemon 10.0.2 wrote after `block-commit base-node=flt`.
        let file = Options::new()
            .with("driver", s("file"))
            .with("filename", s("base.img"));
        let qcow2 = Options::new()
            .with("driver", s("qcow2"))
            .with("file", OptValue::Dict(file));
        let throttle = Options::new()
            .with("driver", s("throttle"))
            .with("throttle-group", s("tg0"))
            .with("file", OptValue::Dict(qcow2));
        assert_eq!(
            throttle.to_qemu_json(),
            r#"{"throttle-group": "tg0", "driver": "throttle", "file": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.img"}}}"#
        );
    }

    #[test]
    fn qcow2_keys_iterate_backing_driver_file() {
        let o = Options::new()
            .with("driver", s("qcow2"))
            .with("file", s("x"))
            .with("backing", OptValue::Null);
        let keys: Vec<_> = o.iter_qdict_order().map(|(k, _)| k).collect();
        assert_eq!(keys, ["backing", "driver", "file"]);
    }

    #[test]
    fn put_keeps_position_and_strings_are_escaped() {
        let mut o = Options::new().with("a", s("1"));
        o.put("a", s("q\"\\\u{e9}"));
        assert_eq!(o.len(), 1);
        assert_eq!(o.to_qemu_json(), "{\"a\": \"q\\\"\\\\\\u00E9\"}");
    }
}
