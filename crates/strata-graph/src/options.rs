//! Driver options as QEMU keeps them: an insertion-ordered tree of scalars
//! (a `QDict`), as plain data. Insertion order is kept because it decides
//! QEMU's iteration order among keys of one hash bucket; the `json:{...}`
//! rendering that follows that order is strata-qmp's (strata-filters uses
//! it for pseudo-filenames).

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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> OptValue {
        OptValue::Str(v.to_string())
    }

    #[test]
    fn put_keeps_position() {
        let mut o = Options::new().with("a", s("1"));
        o.put("a", s("q"));
        assert_eq!(o.len(), 1);
        assert_eq!(o.get("a"), Some(&s("q")));
    }
}
