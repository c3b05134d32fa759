//! The driver catalogue: what each QEMU driver is to the graph.

use strata_graph::{DriverTraits, Options, Role};

/// A block driver Strata models, by QEMU's `format_name`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Driver {
    /// `file`: the POSIX file protocol driver.
    File,
    /// `raw`: the raw format (not a filter in QEMU, although it forwards).
    Raw,
    /// `qcow2`.
    Qcow2,
    /// `throttle`: a filter charging I/O to a throttle group.
    Throttle,
    /// `copy-on-read`: a filter copying read data into its child.
    CopyOnRead,
    /// `blkdebug`: a filter injecting errors.
    Blkdebug,
    /// `commit_top`: the intermediate commit job's filter.
    CommitTop,
    /// `mirror_top`: the mirror (and active commit) job's filter.
    MirrorTop,
    /// `quorum`: votes among several children.
    Quorum,
    /// `null-co`: a protocol driver without storage (`block/null.c`):
    /// writes go nowhere, reads leave (or, with `read-zeroes`, make) zeroes.
    NullCo,
    /// `null-aio`: `null-co` with AIO callbacks instead of coroutines.
    NullAio,
}

impl Driver {
    /// Every modelled driver.
    pub const ALL: &'static [Driver] = &[
        Driver::File,
        Driver::Raw,
        Driver::Qcow2,
        Driver::Throttle,
        Driver::CopyOnRead,
        Driver::Blkdebug,
        Driver::CommitTop,
        Driver::MirrorTop,
        Driver::Quorum,
        Driver::NullCo,
        Driver::NullAio,
    ];

    /// QEMU's `format_name`.
    pub fn name(self) -> &'static str {
        match self {
            Driver::File => "file",
            Driver::Raw => "raw",
            Driver::Qcow2 => "qcow2",
            Driver::Throttle => "throttle",
            Driver::CopyOnRead => "copy-on-read",
            Driver::Blkdebug => "blkdebug",
            Driver::CommitTop => "commit_top",
            Driver::MirrorTop => "mirror_top",
            Driver::Quorum => "quorum",
            Driver::NullCo => "null-co",
            Driver::NullAio => "null-aio",
        }
    }

    /// The driver with QEMU's `format_name` `name`.
    pub fn from_name(name: &str) -> Option<Driver> {
        Driver::ALL.iter().copied().find(|d| d.name() == name)
    }

    /// What the graph needs to know about the driver.
    pub fn traits(self) -> DriverTraits {
        match self {
            Driver::File | Driver::NullCo | Driver::NullAio => DriverTraits {
                is_protocol: true,
                ..DriverTraits::default()
            },
            Driver::Raw | Driver::Quorum => DriverTraits::default(),
            Driver::Qcow2 => DriverTraits {
                supports_backing: true,
                ..DriverTraits::default()
            },
            Driver::Throttle | Driver::CopyOnRead => DriverTraits {
                is_filter: true,
                ..DriverTraits::default()
            },
            // blkdebug has a protocol name too (`blkdebug:config:image`), so
            // a format over it is named after its `blkdebug::image`.
            Driver::Blkdebug => DriverTraits {
                is_filter: true,
                is_protocol: true,
                ..DriverTraits::default()
            },
            Driver::CommitTop | Driver::MirrorTop => DriverTraits {
                is_filter: true,
                filtered_child_is_backing: true,
                ..DriverTraits::default()
            },
        }
    }

    /// The child name under which the driver opens its primary child
    /// (`file` for formats and most filters, `image` for blkdebug).
    pub fn primary_child_name(self) -> Option<&'static str> {
        match self {
            Driver::File | Driver::Quorum | Driver::NullCo | Driver::NullAio => None,
            Driver::Blkdebug => Some("image"),
            Driver::CommitTop | Driver::MirrorTop => Some("backing"),
            Driver::Raw | Driver::Qcow2 | Driver::Throttle | Driver::CopyOnRead => Some("file"),
        }
    }

    /// The role of the primary child of a node opened with `opts`:
    /// `bdrv_open_file_child` gives filters FILTERED|PRIMARY and formats
    /// DATA|METADATA|PRIMARY. `raw` is special (`raw_open`): FILTERED|PRIMARY
    /// unless `opts` has `offset` or `size`, which make it show a slice.
    pub fn primary_child_role(self, opts: &Options) -> Role {
        let raw_sliced = || opts.get("offset").is_some() || opts.get("size").is_some();
        match self {
            Driver::Raw if raw_sliced() => Role::DATA | Role::PRIMARY,
            Driver::Raw => Role::FILTERED_PRIMARY,
            d if d.traits().is_filter => Role::FILTERED_PRIMARY,
            _ => Role::IMAGE,
        }
    }

    /// `drv->strong_runtime_opts`: options that change a node's data and so
    /// force a `json:` filename. A key ending in `.` is a prefix.
    pub fn strong_runtime_opts(self) -> &'static [&'static str] {
        match self {
            Driver::Throttle => &["throttle-group"],
            Driver::Raw => &["offset", "size"],
            Driver::Blkdebug => &[
                "config",
                "inject-error.",
                "set-state.",
                "align",
                "max-transfer",
                "opt-write-zero",
                "max-write-zero",
                "opt-discard",
                "max-discard",
            ],
            Driver::Quorum => &[
                "vote-threshold",
                "read-pattern",
                "rewrite-corrupted",
                "blkverify",
            ],
            Driver::Qcow2 => &["encrypt.", "data-file", "data-file-raw"],
            Driver::NullCo | Driver::NullAio => &["size", "read-zeroes"],
            _ => &[],
        }
    }
}
