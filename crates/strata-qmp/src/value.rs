//! `QObject`: a JSON value as QEMU holds it, and `QDict`'s iteration order.
//!
//! QEMU keeps JSON objects in a hash table of 512 buckets (`qobject/qdict.c`)
//! and walks it bucket by bucket, newest entry first within a bucket.  That
//! order is visible on the wire (it is why QEMU prints
//! `{"micro": 2, "minor": 0, "major": 10}`) and decides which of several bad
//! request members QEMU complains about first.  [`QDict`] therefore remembers
//! insertion order and derives QEMU's order from it on demand.

/// A JSON value with QEMU's number kinds (`QNum` is a signed, unsigned or
/// double number, and the difference matters to the input visitor).
#[derive(Clone, Debug, PartialEq)]
pub enum QObject {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// An integer above `i64::MAX` that fits `u64`.
    Uint(u64),
    /// Any other number (may be infinite: QEMU parses `1e400` as `inf`).
    Double(f64),
    /// A string.  QEMU's "modified UTF-8" `\xC0\x80` is held as `'\0'`.
    Str(String),
    /// An array.
    List(Vec<QObject>),
    /// An object.
    Dict(QDict),
}

impl QObject {
    /// The dictionary inside, if this is one.
    pub fn as_dict(&self) -> Option<&QDict> {
        match self {
            QObject::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The string inside, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            QObject::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Converts a `serde_json` value (numbers keep their kind).
    pub fn from_json(value: &serde_json::Value) -> QObject {
        use serde_json::Value;
        match value {
            Value::Null => QObject::Null,
            Value::Bool(b) => QObject::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    QObject::Int(i)
                } else if let Some(u) = n.as_u64() {
                    QObject::Uint(u)
                } else {
                    QObject::Double(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => QObject::Str(s.clone()),
            Value::Array(items) => QObject::List(items.iter().map(QObject::from_json).collect()),
            Value::Object(map) => {
                let mut dict = QDict::new();
                for (k, v) in map {
                    dict.insert(k.clone(), QObject::from_json(v));
                }
                QObject::Dict(dict)
            }
        }
    }

    /// Converts to a `serde_json` value, keeping insertion order.  A
    /// non-finite double (which JSON cannot express) becomes `null`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            QObject::Null => Value::Null,
            QObject::Bool(b) => Value::Bool(*b),
            QObject::Int(i) => Value::from(*i),
            QObject::Uint(u) => Value::from(*u),
            QObject::Double(d) => serde_json::Number::from_f64(*d)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            QObject::Str(s) => Value::String(s.clone()),
            QObject::List(items) => Value::Array(items.iter().map(QObject::to_json).collect()),
            QObject::Dict(d) => Value::Object(
                d.iter_inserted()
                    .map(|(k, v)| (k.to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A JSON object: insertion order plus QEMU's hash order ([`QDict::iter_qemu`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QDict {
    entries: Vec<(String, QObject)>,
}

impl QDict {
    /// An empty dictionary.
    pub fn new() -> QDict {
        QDict::default()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no members.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&QObject> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Mutable access to the value of `key`.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut QObject> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// True when `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces.  Like `qdict_put_obj`, a replaced value keeps its
    /// old position.
    pub fn insert(&mut self, key: impl Into<String>, value: QObject) {
        let key = key.into();
        match self.get_mut(&key) {
            Some(slot) => *slot = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<QObject> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(pos).1)
    }

    /// Members in insertion order.
    pub fn iter_inserted(&self) -> impl Iterator<Item = (&str, &QObject)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Members in the order QEMU iterates (and prints) them.
    pub fn iter_qemu(&self) -> impl Iterator<Item = (&str, &QObject)> {
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        // Bucket ascending; inside a bucket the newest entry comes first.
        order.sort_by_key(|&i| (qdict_bucket(&self.entries[i].0), std::cmp::Reverse(i)));
        order
            .into_iter()
            .map(move |i| (self.entries[i].0.as_str(), &self.entries[i].1))
    }
}

/// The bucket QEMU's `qdict.c` puts `key` in (`tdb_hash(key) % 512`).
///
/// QEMU stores `'\0'` as the two bytes `C0 80`, and hashes those bytes.
pub fn qdict_bucket(key: &str) -> u32 {
    let bytes = crate::utf8::to_modified_utf8(key);
    let mut value: u32 = 0x238F_13AFu32.wrapping_mul(bytes.len() as u32);
    for (i, &b) in bytes.iter().enumerate() {
        value = value.wrapping_add((b as u32) << (i as u32 * 5 % 24));
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345) % 512
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_triple_prints_in_qemu_order() {
        // qsd's greeting: {"micro": 2, "minor": 0, "major": 10}; the output
        // visitor inserts major, minor, micro.
        let mut d = QDict::new();
        d.insert("major", QObject::Int(10));
        d.insert("minor", QObject::Int(0));
        d.insert("micro", QObject::Int(2));
        let keys: Vec<&str> = d.iter_qemu().map(|(k, _)| k).collect();
        assert_eq!(keys, ["micro", "minor", "major"]);
    }

    #[test]
    fn replacing_keeps_position() {
        let mut d = QDict::new();
        d.insert("a", QObject::Int(1));
        d.insert("b", QObject::Int(2));
        d.insert("a", QObject::Int(3));
        let keys: Vec<&str> = d.iter_inserted().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(d.get("a"), Some(&QObject::Int(3)));
    }
}
