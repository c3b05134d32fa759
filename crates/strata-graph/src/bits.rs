//! Child roles and permission bits: small bit sets with QEMU's values and names.

use std::fmt;

macro_rules! bitset {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $flag:ident = $value:expr, $label:expr;)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(u8);

        impl $name {
            $($(#[$fmeta])* pub const $flag: $name = $name($value);)*
            /// The empty set.
            pub const NONE: $name = $name(0);
            const NAMED: &'static [($name, &'static str)] = &[$(($name($value), $label)),*];

            /// The raw bits, with QEMU's values.
            pub const fn bits(self) -> u8 { self.0 }
            /// The set with exactly these bits (unknown bits are dropped).
            pub const fn from_bits_truncate(bits: u8) -> $name {
                let mut all = 0;
                $(all |= $value;)*
                $name(bits & all)
            }
            /// Whether every bit of `other` is in `self`.
            pub const fn contains(self, other: $name) -> bool { self.0 & other.0 == other.0 }
            /// Whether `self` and `other` share a bit.
            pub const fn intersects(self, other: $name) -> bool { self.0 & other.0 != 0 }
            /// Whether no bit is set.
            pub const fn is_empty(self) -> bool { self.0 == 0 }
            /// The set's members in QEMU's bit order, with their names.
            pub fn iter_named(self) -> impl Iterator<Item = (&'static str, $name)> {
                Self::NAMED.iter().filter(move |(bit, _)| self.contains(*bit)).map(|(bit, label)| (*label, *bit))
            }
        }

        impl std::ops::BitOr for $name { type Output = $name; fn bitor(self, o: $name) -> $name { $name(self.0 | o.0) } }
        impl std::ops::BitOrAssign for $name { fn bitor_assign(&mut self, o: $name) { self.0 |= o.0 } }
        impl std::ops::BitAnd for $name { type Output = $name; fn bitand(self, o: $name) -> $name { $name(self.0 & o.0) } }
        impl std::ops::BitAndAssign for $name { fn bitand_assign(&mut self, o: $name) { self.0 &= o.0 } }
        impl std::ops::Not for $name { type Output = $name; fn not(self) -> $name { $name::from_bits_truncate(!self.0) } }
        impl std::ops::Sub for $name { type Output = $name; fn sub(self, o: $name) -> $name { $name(self.0 & !o.0) } }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_set().entries(self.iter_named().map(|(label, _)| label)).finish()
            }
        }
    };
}

bitset! {
    /// `BdrvChildRole`: what a child is to its parent (block-common.h).
    Role {
        /// The child stores guest data.
        DATA = 1 << 0, "data";
        /// The child stores metadata.
        METADATA = 1 << 1, "metadata";
        /// The child shows exactly the parent's data (a filter's child).
        FILTERED = 1 << 2, "filtered";
        /// The child is a backing file: unallocated data comes from it.
        COW = 1 << 3, "cow";
        /// The parent's primary child (the one that names it).
        PRIMARY = 1 << 4, "primary";
    }
}

impl Role {
    /// `BDRV_CHILD_IMAGE`: what a format node's `file` child is.
    pub const IMAGE: Role = Role(Role::DATA.0 | Role::METADATA.0 | Role::PRIMARY.0);
    /// A filter's filtered child, and a BlockBackend's root child.
    pub const FILTERED_PRIMARY: Role = Role(Role::FILTERED.0 | Role::PRIMARY.0);
}

bitset! {
    /// `BLK_PERM_*` in QEMU 10.0 (no graph-mod since 7.0).
    Perm {
        /// Reads see consistent data.
        CONSISTENT_READ = 0x01, "consistent-read";
        /// Writes that change visible data.
        WRITE = 0x02, "write";
        /// Writes that keep visible data (copy-on-read).
        WRITE_UNCHANGED = 0x04, "write-unchanged";
        /// Changing the node's size.
        RESIZE = 0x08, "resize";
    }
}

impl Perm {
    /// `BLK_PERM_ALL`.
    pub const ALL: Perm = Perm(0x0f);

    /// The names `bdrv_perm_names` prints in error messages: spaced, in bit
    /// order, joined by ", " (e.g. `write, resize`).
    pub fn message_names(self) -> String {
        self.iter_named()
            .map(|(label, _)| match label {
                "consistent-read" => "consistent read",
                "write-unchanged" => "write unchanged",
                other => other,
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The QAPI `BlockPermission` names, in bit order.
    pub fn qapi_names(self) -> Vec<&'static str> {
        self.iter_named().map(|(label, _)| label).collect()
    }
}
