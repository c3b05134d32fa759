//! Opening an image by filename, as `bdrv_open` does when it is given one:
//! `qemu-img`'s argument, or a backing file named in an image header.
//!
//! A `json:{...}` pseudo-filename is a whole options tree
//! (`parse_json_protocol`), whose options yield to the ones given
//! explicitly; a plain name is a file whose format is given or probed
//! (`find_image_format`). Either way the tree is then opened by
//! [`BlockCore::open_node`], the path `blockdev-add` takes, so that every
//! driver the block layer knows can appear in a header.

use crate::core::BlockCore;
use crate::error::{strerror, Error, Result};
use crate::files::Files;
use strata_filters::Driver;
use strata_formats::{Access, Format, FormatOrigin};
use strata_graph::{NodeId, OptValue, Options};
use strata_qmp::QObject;

/// Whether an image is opened with the backing chain its header names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BackingChain {
    /// Opened, as `qemu-img map` and `convert` open it.
    FromHeader,
    /// Left closed (`BDRV_O_NO_BACKING`), as `qemu-img info` opens it.
    NotOpened,
}

impl<F: Files> BlockCore<F> {
    /// qemu-img's `img_open`: `filename` opened read-only as `format`
    /// (probed when `None`) under a BlockBackend of its own.
    pub fn open_as_qemu_img(
        &mut self,
        filename: &str,
        format: Option<&str>,
        chain: BackingChain,
    ) -> Result<NodeId> {
        let mut explicit = Options::new().with("read-only", OptValue::Bool(true));
        if let Some(format) = format {
            explicit.put("driver", text(format));
        }
        if chain == BackingChain::NotOpened {
            explicit.put("backing", OptValue::Null);
        }
        let node = self.open_filename(filename, explicit, true)?;
        self.monitor_adopt(node);
        self.refresh_filename(node)?;
        Ok(node)
    }

    /// `bdrv_open_inherit` with a filename: `explicit` options first, the
    /// filename's after them.
    pub(crate) fn open_filename(
        &mut self,
        filename: &str,
        explicit: Options,
        inherited_read_only: bool,
    ) -> Result<NodeId> {
        let (opts, origin) = if let Some(json) = filename.strip_prefix("json:") {
            self.with_probed_driver(join(explicit, parse_json_filename(json)?))?
        } else if let Some(driver) = explicit_protocol_driver(&explicit) {
            // bdrv_fill_options: a driver given explicitly decides whether
            // the name is a protocol's (a backing format `blkdebug` or
            // `file` in a header), and that driver parses it.
            (
                protocol_with_filename(&explicit, driver, filename)?,
                FormatOrigin::Given,
            )
        } else if let Some(legacy) = filename.strip_prefix("blkdebug:") {
            self.blkdebug_filename_options(filename, legacy, explicit)?
        } else {
            self.plain_filename_options(filename, explicit)?
        };
        // A filename starts a dictionary of its own.
        let outer_path = std::mem::take(&mut self.opening_path);
        let opened = self.open_node(&opts, inherited_read_only, origin);
        self.opening_path = outer_path;
        opened
    }

    /// Options without a driver get the format probed from their `file`.
    pub(crate) fn with_probed_driver(
        &mut self,
        mut opts: Options,
    ) -> Result<(Options, FormatOrigin)> {
        if opts.get("driver").is_some() {
            return Ok((opts, FormatOrigin::Given));
        }
        let path = match opts.get("file") {
            Some(OptValue::Dict(file)) => file.get_str("filename").map(str::to_string),
            _ => None,
        };
        let path = path.ok_or_else(|| Error::generic("Must specify either driver or file"))?;
        let format = self.probe_format(&path)?;
        opts.put("driver", text(format.name()));
        Ok((opts, FormatOrigin::Probed))
    }

    /// A plain filename names a file (`bdrv_find_protocol` without a
    /// prefix): the file node itself, or a format node over it, the format
    /// probed when none is given.
    fn plain_filename_options(
        &mut self,
        path: &str,
        mut explicit: Options,
    ) -> Result<(Options, FormatOrigin)> {
        let (driver, origin) = match explicit.get_str("driver") {
            Some(driver) => (driver.to_string(), FormatOrigin::Given),
            None => (
                self.probe_format(path)?.name().to_string(),
                FormatOrigin::Probed,
            ),
        };
        if driver == "file" {
            explicit.put("filename", text(path));
            return Ok((explicit, origin));
        }
        explicit.put("driver", text(&driver));
        let file = Options::new()
            .with("driver", text("file"))
            .with("filename", text(path));
        explicit.put("file", OptValue::Dict(file));
        Ok((explicit, origin))
    }

    /// `blkdebug:<config>:<image>` (`blkdebug_parse_filename`, the name a
    /// format over a rule-less blkdebug node gets): a format node (given or
    /// probed from the image) over a blkdebug node over the image file.
    fn blkdebug_filename_options(
        &mut self,
        filename: &str,
        legacy: &str,
        mut explicit: Options,
    ) -> Result<(Options, FormatOrigin)> {
        let blkdebug = protocol_options_for_name(filename)?;
        let (_, image) = split_blkdebug_filename(legacy)?;
        let origin = if explicit.get_str("driver").is_none() {
            let format = self.probe_format(image)?;
            explicit.put("driver", text(format.name()));
            FormatOrigin::Probed
        } else {
            FormatOrigin::Given
        };
        explicit.put("file", OptValue::Dict(blkdebug));
        Ok((explicit, origin))
    }

    /// `find_image_format` for the formats Strata has: qcow2's magic, or
    /// raw (an empty file is raw too).
    fn probe_format(&mut self, path: &str) -> Result<Format> {
        let storage = self
            .files
            .open(path, Access::ReadOnly)
            .and_then(|()| self.files.storage(path))
            .map_err(|e| could_not_open(path, &e))?;
        Format::probe(storage).map_err(|e| {
            Error::generic(format!(
                "Could not read image for determining its format: {}",
                strerror(e.errno())
            ))
        })
    }

    /// `bdrv_get_full_backing_filename`: a name with a protocol prefix
    /// (`json:` included) or an absolute path is used as it is; a relative
    /// one is relative to the directory of the overlay's file.
    pub(crate) fn full_backing_filename(&self, overlay: NodeId, backing: &str) -> String {
        if path_has_protocol(backing) || backing.starts_with('/') {
            return backing.to_string();
        }
        let overlay_path = self.protocol_path(overlay).unwrap_or_default();
        match overlay_path.rfind('/') {
            Some(slash) => format!("{}{}", &overlay_path[..=slash], backing),
            None => backing.to_string(),
        }
    }
}

/// `bdrv_open_inherit` given a filename next to options that already name
/// a driver (`bdrv_open_backing_file` passes the header's backing file so
/// unless the backing options hold a reference or `file.filename`): the
/// name flows down the primary children as `bdrv_fill_options` and
/// `bdrv_open_child_bs` hand it on, and lands in the protocol node's
/// `filename`, which it may not already have.
pub(crate) fn pass_filename_down(opts: &Options, filename: &str) -> Result<Options> {
    let driver = opts.get_str("driver").and_then(Driver::from_name);
    match driver {
        Some(driver) if driver.traits().is_protocol => {
            protocol_with_filename(opts, driver, filename)
        }
        // A format (or filter) opens its `file` child with the name before
        // its driver runs; no driver means a format probed from that child.
        Some(Driver::Raw | Driver::Qcow2 | Driver::Throttle | Driver::CopyOnRead) | None => {
            child_with_filename(opts, "file", filename)
        }
        // Drivers without a `file` child Strata models (quorum, the job
        // filters) are left as they are.
        Some(_) => Ok(opts.clone()),
    }
}

/// `bdrv_fill_options` of a protocol driver: the filename becomes the
/// `filename` option, parsed by the driver.
fn protocol_with_filename(opts: &Options, driver: Driver, filename: &str) -> Result<Options> {
    if opts.get("filename").is_some() {
        return Err(Error::generic(
            "Can't specify 'file' and 'filename' options at the same time",
        ));
    }
    match driver {
        // blkdebug_parse_filename: `blkdebug:<config>:<image>`, or a name
        // without the prefix that is the image alone (`x-image`), which
        // blkdebug_open opens as `image`.
        Driver::Blkdebug => match filename.strip_prefix("blkdebug:") {
            Some(legacy) => {
                let (config, image) = split_blkdebug_filename(legacy)?;
                child_with_filename(&with_blkdebug_config(opts.clone(), config), "image", image)
            }
            None => child_with_filename(opts, "image", filename),
        },
        // null_co_parse_filename accepts only its own protocol's name.
        Driver::NullCo | Driver::NullAio if filename != format!("{}://", driver.name()) => {
            Err(Error::generic(format!(
                "The only allowed filename for this driver is '{}://'",
                driver.name()
            )))
        }
        Driver::NullCo | Driver::NullAio => Ok(opts.clone()),
        // raw_parse_filename: the name without a `file:` prefix.
        _ => {
            let path = filename.strip_prefix("file:").unwrap_or(filename);
            Ok(opts.clone().with("filename", text(path)))
        }
    }
}

/// `bdrv_open_child_bs(filename, options, key)`: the child's options get
/// the filename; a child given by reference cannot take one.
fn child_with_filename(opts: &Options, key: &str, filename: &str) -> Result<Options> {
    let child = match opts.get(key) {
        Some(OptValue::Dict(child)) => pass_filename_down(child, filename)?,
        Some(OptValue::Str(_)) => return Err(Error::generic(
            "Cannot reference an existing block device with additional options or a new filename",
        )),
        _ => protocol_options_for_name(filename)?,
    };
    Ok(opts.clone().with(key, OptValue::Dict(child)))
}

/// A protocol node opened by its name alone (a child of a protocol-level
/// node inherits `BDRV_O_PROTOCOL`): `bdrv_find_protocol` picks the driver
/// from the name's prefix, `blkdebug:` for blkdebug (nested names such as
/// `blkdebug::blkdebug::a.img` open a blkdebug node over another), and a
/// file without a prefix.
fn protocol_options_for_name(filename: &str) -> Result<Options> {
    if filename.starts_with("blkdebug:") {
        let blkdebug = Options::new().with("driver", text("blkdebug"));
        return protocol_with_filename(&blkdebug, Driver::Blkdebug, filename);
    }
    Ok(Options::new()
        .with("driver", text("file"))
        .with("filename", text(filename)))
}

/// The driver given in `explicit`, if it is a protocol driver (one with a
/// `protocol_name`, which makes `bdrv_fill_options` open the name as that
/// protocol's).
fn explicit_protocol_driver(explicit: &Options) -> Option<Driver> {
    explicit
        .get_str("driver")
        .and_then(Driver::from_name)
        .filter(|driver| driver.traits().is_protocol)
}

/// `blkdebug_parse_filename`: what follows `blkdebug:` is the config
/// file's path (possibly empty) and the image's name after the first colon.
fn split_blkdebug_filename(legacy: &str) -> Result<(&str, &str)> {
    legacy
        .split_once(':')
        .ok_or_else(|| Error::generic("blkdebug requires both config file and image path"))
}

/// A blkdebug node's options with the config file a legacy name gives
/// (none when the name leaves it empty).
fn with_blkdebug_config(blkdebug: Options, config: &str) -> Options {
    if config.is_empty() {
        return blkdebug;
    }
    blkdebug.with("config", text(config))
}

/// `Could not open '<path>': <strerror>`, as `raw_open_common` says it.
pub(crate) fn could_not_open(path: &str, err: &std::io::Error) -> Error {
    Error::generic(format!(
        "Could not open '{path}': {}",
        strerror(err.raw_os_error().unwrap_or(5))
    ))
}

fn text(value: &str) -> OptValue {
    OptValue::Str(value.to_string())
}

/// `path_has_protocol`: a colon before the first slash.
pub(crate) fn path_has_protocol(path: &str) -> bool {
    path.find([':', '/'])
        .is_some_and(|i| path.as_bytes()[i] == b':')
}

/// `qdict_join(explicit, json, false)`: options given directly win over
/// the ones in the filename. (Explicit options are top-level scalars here,
/// so joining the top level is joining the flattened dictionaries.)
fn join(mut explicit: Options, json: Options) -> Options {
    for (key, value) in json.iter() {
        if explicit.get(key).is_none() {
            explicit.put(key, value.clone());
        }
    }
    explicit
}

/// `parse_json_filename`: the text after `json:` as an options tree.
/// QEMU flattens it (`qdict_flatten`) and its drivers take their children
/// and lists by key prefix, so a dotted key (`image.driver`,
/// `inject-error.0.event`, as `bdrv_refresh_filename` writes flattened
/// options) means the same as the nested form; both become nested here.
fn parse_json_filename(body: &str) -> Result<Options> {
    // QEMU's own JSON parser (qobject_from_json), as strata-qmp has it.
    let value = strata_qmp::parse_json_str(body)
        .map_err(|e| Error::generic(format!("Could not parse the JSON options: {e}")))?;
    match value.as_ref().map(option_value).transpose()? {
        Some(OptValue::Dict(options)) => Ok(options),
        _ => Err(Error::generic("Invalid JSON object given")),
    }
}

fn option_value(value: &QObject) -> Result<OptValue> {
    Ok(match value {
        QObject::Null => OptValue::Null,
        QObject::Bool(b) => OptValue::Bool(*b),
        QObject::Str(s) => OptValue::Str(s.clone()),
        QObject::Int(n) => OptValue::Int(*n),
        QObject::Uint(n) => OptValue::Int(*n as i64),
        QObject::Double(d) => {
            return Err(Error::generic(format!(
                "Could not parse the JSON options: number {d} is not modelled"
            )))
        }
        QObject::List(items) => {
            OptValue::List(items.iter().map(option_value).collect::<Result<_>>()?)
        }
        QObject::Dict(members) => {
            let mut flat = Options::new();
            for (key, member) in members.iter_inserted() {
                flat.put(key.to_string(), option_value(member)?);
            }
            OptValue::Dict(crumple(flat))
        }
    })
}

/// `qdict_crumple`: dotted keys become nested dictionaries, and a
/// dictionary keyed `0`, `1`, ... a list.
pub fn crumple(flat: Options) -> Options {
    let mut nested = Options::new();
    for (key, value) in flat.iter() {
        insert_at_path(&mut nested, key, value.clone());
    }
    let mut out = Options::new();
    for (key, value) in nested.iter() {
        out.put(key, numbered_dicts_as_lists(value.clone()));
    }
    out
}

fn insert_at_path(dict: &mut Options, key: &str, value: OptValue) {
    let Some((head, rest)) = key.split_once('.') else {
        dict.put(key, value);
        return;
    };
    let mut child = match dict.get(head) {
        Some(OptValue::Dict(child)) => child.clone(),
        _ => Options::new(),
    };
    insert_at_path(&mut child, rest, value);
    dict.put(head, OptValue::Dict(child));
}

fn numbered_dicts_as_lists(value: OptValue) -> OptValue {
    let OptValue::Dict(dict) = value else {
        return value;
    };
    let numbered = !dict.is_empty() && (0..dict.len()).all(|i| dict.get(&i.to_string()).is_some());
    if numbered {
        let items = (0..dict.len())
            .filter_map(|i| dict.get(&i.to_string()).cloned())
            .map(numbered_dicts_as_lists)
            .collect();
        return OptValue::List(items);
    }
    let mut out = Options::new();
    for (key, value) in dict.iter() {
        out.put(key, numbered_dicts_as_lists(value.clone()));
    }
    OptValue::Dict(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_prefixes_are_colons_before_any_slash() {
        assert!(path_has_protocol("json:{\"a\": \"/x\"}"));
        assert!(!path_has_protocol("dir/a:b.img"));
        assert!(!path_has_protocol("base.img"));
    }

    #[test]
    fn flattened_and_nested_json_read_alike() {
        let flat = parse_json_filename(
            r#"{"driver": "blkdebug", "inject-error.0.event": "read_aio", "inject-error.0.errno": 5, "image.driver": "file", "image.filename": "b.img"}"#,
        )
        .expect("parses");
        let nested = parse_json_filename(
            r#"{"driver": "blkdebug", "inject-error": [{"event": "read_aio", "errno": 5}], "image": {"driver": "file", "filename": "b.img"}}"#,
        )
        .expect("parses");
        assert_eq!(flat, nested);
    }

    #[test]
    fn a_json_filename_must_hold_an_object() {
        let err = parse_json_filename("[1]").expect_err("not an object");
        assert_eq!(err.to_string(), "Invalid JSON object given");
        let err = parse_json_filename("{").expect_err("not JSON");
        assert!(
            err.to_string()
                .starts_with("Could not parse the JSON options: "),
            "{err}"
        );
    }

    #[test]
    fn explicit_options_win_over_the_filename() {
        let explicit = Options::new().with("driver", text("qcow2"));
        let json = Options::new()
            .with("driver", text("raw"))
            .with("backing", OptValue::Null);
        let joined = join(explicit, json);
        assert_eq!(joined.get_str("driver"), Some("qcow2"));
        assert_eq!(joined.get("backing"), Some(&OptValue::Null));
    }

    fn file_node(filename: Option<&str>) -> Options {
        let file = Options::new().with("driver", text("file"));
        match filename {
            Some(name) => file.with("filename", text(name)),
            None => file,
        }
    }

    #[test]
    fn a_handed_down_filename_meets_the_protocol_nodes_own() {
        let qcow2 = Options::new()
            .with("driver", text("qcow2"))
            .with("file", OptValue::Dict(file_node(Some("base.img"))));
        let blkdebug = Options::new()
            .with("driver", text("blkdebug"))
            .with("image", OptValue::Dict(qcow2));
        let err = pass_filename_down(&blkdebug, "base.img").expect_err("two filenames");
        assert_eq!(
            err.to_string(),
            "Can't specify 'file' and 'filename' options at the same time"
        );
    }

    #[test]
    fn a_handed_down_filename_completes_a_file_node_without_one() {
        let qcow2 = Options::new()
            .with("driver", text("qcow2"))
            .with("file", OptValue::Dict(file_node(None)));
        let filled = pass_filename_down(&qcow2, "file:dir/base.img").expect("one filename");
        let Some(OptValue::Dict(file)) = filled.get("file") else {
            panic!("file child lost: {filled:?}");
        };
        assert_eq!(file.get_str("filename"), Some("dir/base.img"));
    }

    fn child<'a>(opts: &'a Options, key: &str) -> &'a Options {
        match opts.get(key) {
            Some(OptValue::Dict(child)) => child,
            other => panic!("no child {key}: {other:?}"),
        }
    }

    #[test]
    fn a_blkdebug_driver_parses_its_legacy_name_into_config_and_image_file() {
        let blkdebug = Options::new().with("driver", text("blkdebug"));
        let opened =
            protocol_with_filename(&blkdebug, Driver::Blkdebug, "blkdebug:rules.cfg:a.img")
                .expect("a legacy name");
        assert_eq!(opened.get_str("config"), Some("rules.cfg"));
        let image = child(&opened, "image");
        assert_eq!(image.get_str("driver"), Some("file"));
        assert_eq!(image.get_str("filename"), Some("a.img"));
    }

    #[test]
    fn a_nested_legacy_name_opens_blkdebug_over_blkdebug() {
        let blkdebug = Options::new().with("driver", text("blkdebug"));
        let opened =
            protocol_with_filename(&blkdebug, Driver::Blkdebug, "blkdebug::blkdebug::a.img")
                .expect("a nested legacy name");
        assert_eq!(opened.get("config"), None);
        let inner = child(&opened, "image");
        assert_eq!(inner.get_str("driver"), Some("blkdebug"));
        assert_eq!(child(inner, "image").get_str("filename"), Some("a.img"));
    }

    #[test]
    fn a_legacy_name_needs_a_colon_after_the_config() {
        let blkdebug = Options::new().with("driver", text("blkdebug"));
        let err = protocol_with_filename(&blkdebug, Driver::Blkdebug, "blkdebug:a.img")
            .expect_err("no image part");
        assert_eq!(
            err.to_string(),
            "blkdebug requires both config file and image path"
        );
    }

    #[test]
    fn only_an_explicit_protocol_driver_takes_the_name_itself() {
        let given = |driver: &str| Options::new().with("driver", text(driver));
        assert_eq!(
            explicit_protocol_driver(&given("blkdebug")),
            Some(Driver::Blkdebug)
        );
        assert_eq!(explicit_protocol_driver(&given("file")), Some(Driver::File));
        assert_eq!(explicit_protocol_driver(&given("qcow2")), None);
        assert_eq!(explicit_protocol_driver(&Options::new()), None);
    }

    #[test]
    fn a_referenced_child_takes_no_handed_down_filename() {
        let raw = Options::new()
            .with("driver", text("raw"))
            .with("file", text("node0"));
        let err = pass_filename_down(&raw, "base.img").expect_err("a reference");
        assert!(err
            .to_string()
            .starts_with("Cannot reference an existing block device"));
    }
}
