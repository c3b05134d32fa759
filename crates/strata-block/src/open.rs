//! `blockdev-add`: opening a tree of nodes from options, the way
//! `bdrv_open_inherit` does — children before or after their parent as
//! QEMU opens them, read-only inherited from the parent (backing nodes
//! default to read-only), and a qcow2 node's backing opened from its header
//! unless the options give one (or `null`): by filename, as `bdrv_open`
//! opens one (`open_filename.rs`).

use crate::core::BlockCore;
use crate::error::{strerror, Error, Result};
use crate::files::Files;
use crate::locking::LockingMode;
use crate::open_filename::{could_not_open, pass_filename_down};
use crate::state::{DriverState, InjectError, SetState};
use strata_filters::Driver;
use strata_formats::{Access, Format, FormatOrigin, Image};
use strata_graph::{Inheritance, NodeId, NodeSpec, OptValue, Options, Role};
use strata_perm::ChildSlot;

/// The most backing files opened below one image from headers: deeper
/// chains are refused rather than recursed into (QEMU has no bound).
pub const MAX_BACKING_DEPTH: usize = 1000;

impl<F: Files> BlockCore<F> {
    /// `blockdev-add`: opens the node tree described by `opts` and hands
    /// its root to the monitor.
    pub fn blockdev_add(&mut self, opts: &Options) -> Result<NodeId> {
        if opts.get_str("node-name").is_none() {
            return Err(Error::generic(
                "'node-name' must be specified for the root node",
            ));
        }
        let node = self.open_node(opts, false, FormatOrigin::Given)?;
        // bds_tree_init: a root's `read-only` defaults to `off` before
        // bdrv_open sees the options, so it counts as given.
        let inheritance = &mut self.bg.node_mut(node)?.inheritance;
        inheritance.explicit_read_only = Some(bool_of(opts, "read-only").unwrap_or(false));
        self.monitor_adopt(node);
        Ok(node)
    }

    /// Opens one node (and what it needs below it) holding one reference
    /// for the caller; `origin` says whether its driver was probed.
    pub(crate) fn open_node(
        &mut self,
        opts: &Options,
        inherited_read_only: bool,
        origin: FormatOrigin,
    ) -> Result<NodeId> {
        let driver_name = opts.get_str("driver").unwrap_or_default();
        let driver = Driver::from_name(driver_name)
            .filter(|d| !matches!(d, Driver::CommitTop | Driver::MirrorTop))
            .ok_or_else(|| Error::generic(format!("Unknown driver '{driver_name}'")))?;
        let read_only = match opts.get("read-only") {
            Some(OptValue::Bool(ro)) => *ro,
            _ => inherited_read_only,
        };
        let node = match driver {
            Driver::File => self.open_file(opts, read_only),
            Driver::Qcow2 | Driver::Raw => self.open_format(driver, opts, read_only, origin),
            Driver::Throttle | Driver::CopyOnRead => self.open_file_filter(driver, opts, read_only),
            Driver::Blkdebug => self.open_blkdebug(opts, read_only),
            Driver::Quorum => self.open_quorum(opts, read_only),
            Driver::NullCo | Driver::NullAio => self.open_null(driver, opts, read_only),
            Driver::CommitTop | Driver::MirrorTop => unreachable!("filtered out above"),
        }?;
        self.set_open_filename(node, opts)?;
        Ok(node)
    }

    /// `bdrv_open_common`: a node opened over a `file` child takes that
    /// child's filename, refreshed then; any other node its `filename`
    /// option. QEMU refreshes it again only where it asks for it (queries,
    /// job starts, header updates), so a backing node attached later, or a
    /// graph changed since, leaves it stale: `block-commit top=` compares
    /// with that stale name.
    fn set_open_filename(&mut self, node: NodeId, opts: &Options) -> Result<()> {
        // The child opened from the `file` option (blkdebug's `image`
        // fills `bs->file` too, but is opened by the driver later).
        let g = self.bg.graph();
        let file = g.node(node)?.file().and_then(|edge| g.edge(edge).ok());
        let filename = match file.filter(|edge| edge.name() == "file") {
            Some(edge) => {
                let child = edge.child();
                self.refresh_filename(child)?;
                self.bg.graph().node(child)?.filename.clone()
            }
            None => opts.get_str("filename").unwrap_or_default().to_string(),
        };
        let n = self.bg.node_mut(node)?;
        n.exact_filename.clone_from(&filename);
        n.filename = filename;
        Ok(())
    }

    fn new_node(
        &mut self,
        driver: Driver,
        opts: &Options,
        read_only: bool,
        state: DriverState,
    ) -> Result<NodeId> {
        let mut spec = NodeSpec::new(driver.name(), driver.traits())
            .read_only(read_only)
            .options(scalar_options(opts))
            .options_path(self.opening_path.clone());
        if let Some(name) = opts.get_str("node-name") {
            spec = spec.name(name);
        }
        let node = self.bg.add_node(spec)?;
        self.bg.node_mut(node)?.inheritance = Inheritance {
            inherits_from: None,
            explicit_read_only: bool_of(opts, "read-only"),
            read_only_option: Some(read_only),
            discard_unmap: discard_unmap(opts) == Some(true),
        };
        self.state.insert(node, state);
        Ok(node)
    }

    /// `bdrv_open_inherit` sets `bs->inherits_from` on a child it opens
    /// with options of its own (`value` given inline rather than by
    /// reference): reopening `parent` will reopen the child too.
    fn record_inheritance(
        &mut self,
        parent: NodeId,
        child: NodeId,
        value: &OptValue,
    ) -> Result<()> {
        if let OptValue::Dict(options) = value {
            let inheritance = &mut self.bg.node_mut(child)?.inheritance;
            inheritance.inherits_from = Some(parent);
            inheritance.discard_unmap = discard_unmap(options).unwrap_or(true);
        }
        Ok(())
    }

    fn open_file(&mut self, opts: &Options, read_only: bool) -> Result<NodeId> {
        // bdrv_open_common assigns the node name before the protocol
        // driver opens its file (a format node's file child is opened
        // earlier, in bdrv_open_inherit).
        if let Some(name) = opts.get_str("node-name") {
            self.bg.graph().check_node_name(name)?;
        }
        let path = opts.get_str("filename").unwrap_or_default().to_string();
        self.files
            .open(&path, Access::from_read_only(read_only))
            .map_err(|e| could_not_open(&path, &e))?;
        if !self.files.is_regular_file(&path) {
            return Err(Error::generic(format!(
                "'file' driver requires '{path}' to be a regular file"
            )));
        }
        let node = self.new_node(
            Driver::File,
            opts,
            read_only,
            DriverState::File { path: path.clone() },
        )?;
        if LockingMode::of(opts).locks() {
            let added = match self.files.image_locks_mut() {
                Some(locks) => locks.add(node, &path),
                None => Ok(()),
            };
            if let Err(err) = added {
                self.unref(node)?;
                return Err(could_not_open(&path, &err));
            }
        }
        Ok(node)
    }

    /// `null_file_open`: `size` defaults to 1 GiB; `latency-ns` only
    /// delays completions, which a model without asynchronous completion
    /// has no use for beyond QEMU's check.
    fn open_null(&mut self, driver: Driver, opts: &Options, read_only: bool) -> Result<NodeId> {
        if int_of(opts, "latency-ns").is_some_and(|ns| ns < 0) {
            return Err(Error::generic("latency-ns is invalid"));
        }
        let state = DriverState::Null {
            length: int_of(opts, "size").map_or(1 << 30, |size| size.max(0) as u64),
            read_zeroes: bool_of(opts, "read-zeroes").unwrap_or(false),
        };
        self.new_node(driver, opts, read_only, state)
    }

    /// The child `key` given as options or as a node-name reference.
    fn open_child(
        &mut self,
        key: &str,
        value: &OptValue,
        inherited_read_only: bool,
    ) -> Result<NodeId> {
        match value {
            OptValue::Dict(child) => {
                let (child, origin) = self.with_implied_driver(child)?;
                self.opening_path.push(key.to_string());
                let opened = self.open_node(&child, inherited_read_only, origin);
                self.opening_path.pop();
                opened
            }
            OptValue::Str(reference) => {
                let node = self.lookup_bs(Some(reference), Some(reference))?;
                self.bg.ref_node(node)?;
                Ok(node)
            }
            // `bdrv_open_child` without options: reachable from a json:
            // filename that lacks the child (blockdev-add's schema
            // requires it).
            OptValue::Null => Err(Error::generic(format!(
                "A block device must be specified for \"{key}\""
            ))),
            _ => Err(Error::generic("Invalid child reference")),
        }
    }

    /// A child's options with the driver QEMU would pick when they name
    /// none: a child with a `file` has its format probed from that file
    /// (`bdrv_open_inherit`'s `find_image_format`); one named by
    /// `filename` alone is a file (`bdrv_find_protocol` without a prefix).
    fn with_implied_driver(&mut self, child: &Options) -> Result<(Options, FormatOrigin)> {
        if child.get("driver").is_none() && child.get("file").is_some() {
            return self.with_probed_driver(child.clone());
        }
        let child = if child.get("driver").is_none() && child.get("filename").is_some() {
            child
                .clone()
                .with("driver", OptValue::Str("file".to_string()))
        } else {
            child.clone()
        };
        Ok((child, FormatOrigin::Given))
    }

    /// Opens `child` first, then creates the node and attaches the child:
    /// if anything after the child fails, the child goes away again.
    fn open_with_first_child(
        &mut self,
        driver: Driver,
        opts: &Options,
        read_only: bool,
        child_key: &str,
        role: Role,
        state: DriverState,
    ) -> Result<(NodeId, NodeId)> {
        let value = opts.get(child_key).cloned().unwrap_or(OptValue::Null);
        let child = self.open_child(child_key, &value, read_only)?;
        let node = match self.new_node(driver, opts, read_only, state) {
            Ok(node) => node,
            Err(err) => {
                self.unref(child)?;
                return Err(err);
            }
        };
        let attached = self.record_inheritance(node, child, &value).and_then(|()| {
            self.with_hooks(|bg, hooks| bg.attach_child(hooks, node, child, child_key, role))
        });
        self.unref(child)?;
        if let Err(err) = attached {
            self.unref(node)?;
            return Err(err);
        }
        Ok((node, child))
    }

    fn open_format(
        &mut self,
        driver: Driver,
        opts: &Options,
        read_only: bool,
        origin: FormatOrigin,
    ) -> Result<NodeId> {
        let role = driver.primary_child_role(opts);
        let placeholder = DriverState::Busy;
        let (node, _) =
            self.open_with_first_child(driver, opts, read_only, "file", role, placeholder)?;
        let format = if driver == Driver::Qcow2 {
            Format::Qcow2
        } else {
            Format::Raw
        };
        let opened = match driver {
            Driver::Raw => self.check_raw_slice(node, opts),
            _ => Ok(()),
        }
        .and_then(|()| self.open_image(node, format, read_only, origin));
        if let Err(err) = opened {
            self.unref(node)?;
            return Err(err);
        }
        if driver == Driver::Qcow2 {
            if let Err(err) = self.open_backing(node, opts) {
                self.unref(node)?;
                return Err(err);
            }
        }
        Ok(node)
    }

    /// `raw_apply_options`: a raw node's `offset` (and `size`) must lie
    /// within its file.
    fn check_raw_slice(&mut self, node: NodeId, opts: &Options) -> Result<()> {
        let number = |key: &str| match opts.get(key) {
            Some(OptValue::Int(n)) => Some(*n as u64),
            Some(OptValue::Str(n)) => n.parse().ok(),
            _ => None,
        };
        let offset = number("offset").unwrap_or(0);
        let file = self
            .file_child(node)
            .ok_or_else(|| Error::generic("raw node without file"))?;
        let real_size = self.length(file).map_err(|e| {
            Error::generic(format!(
                "Could not get image size: {}",
                strerror(e.raw_os_error().unwrap_or(5))
            ))
        })?;
        if offset > real_size {
            return Err(Error::generic(format!(
                "Offset ({offset}) cannot be greater than size of the containing file ({real_size})"
            )));
        }
        if let Some(size) = number("size").filter(|&size| real_size - offset < size) {
            // QEMU's text has the two spaces.
            return Err(Error::generic(format!(
                "The sum of offset ({offset}) and size ({size}) has to be smaller or equal to the  actual size of the containing file ({real_size})"
            )));
        }
        Ok(())
    }

    /// Reads the image's metadata through the node's file child.
    fn open_image(
        &mut self,
        node: NodeId,
        format: Format,
        read_only: bool,
        origin: FormatOrigin,
    ) -> Result<()> {
        let opened = self.with_child_io(node, |storage, _| {
            Image::open(storage, Some(format), Access::from_read_only(read_only))
                .map_err(|e| std::io::Error::other(e.to_string()))
        });
        match opened {
            Ok(mut image) => {
                image.set_origin(origin);
                let auto_backing_file = image.backing_file().unwrap_or_default().to_string();
                self.state.insert(
                    node,
                    DriverState::Format {
                        image,
                        auto_backing_file,
                    },
                );
                Ok(())
            }
            Err(err) => Err(Error::generic(err.to_string())),
        }
    }

    /// `bdrv_open_backing_file`.
    fn open_backing(&mut self, node: NodeId, opts: &Options) -> Result<()> {
        let (header_file, header_format) = match self.state.get(&node) {
            Some(DriverState::Format { image, .. }) => (
                image.backing_file().unwrap_or_default().to_string(),
                image.backing_format().map(str::to_string),
            ),
            _ => return Ok(()),
        };
        // Options for the backing node that name neither a driver nor a
        // file (`-drive ...,backing.node-name=mid`) complete the header's
        // backing file rather than replace it.
        let header_explicit = match opts.get("backing") {
            Some(OptValue::Null) => return Ok(()),
            Some(OptValue::Dict(partial))
                if !header_file.is_empty()
                    && partial.get("driver").is_none()
                    && partial.get("file").is_none() =>
            {
                partial.clone()
            }
            Some(value) => {
                // The explicit options are the ones given, without the
                // filename handed down (`bs->explicit_options` is cloned
                // before `bdrv_fill_options`).
                let value = value.clone();
                let backing = self
                    .backing_options_with_header_file(node, &value, &header_file)
                    .and_then(|with_file| self.open_child("backing", &with_file, true))
                    .map_err(|e| e.prepend("Could not open backing file: "))?;
                self.record_inheritance(node, backing, &value)?;
                return self.attach_backing(node, backing);
            }
            None if header_file.is_empty() => return Ok(()),
            None => Options::new(),
        };
        let filename = self.full_backing_filename(node, &header_file);
        let own_file = self.check_backing_recursion(node)?;
        let backing = self
            .open_header_backing(own_file, &filename, header_format, header_explicit)
            .map_err(|e| e.prepend("Could not open backing file: "))?;
        self.refresh_filename(backing)?;
        let filename = self.bg.graph().node(backing)?.filename.clone();
        if let Some(DriverState::Format {
            auto_backing_file, ..
        }) = self.state.get_mut(&node)
        {
            *auto_backing_file = filename;
        }
        // Opened with options derived from the parent's, as an inline child
        // is (no `discard` given: the children's default, `unmap`).
        let inheritance = &mut self.bg.node_mut(backing)?.inheritance;
        inheritance.inherits_from = Some(node);
        inheritance.discard_unmap = true;
        self.attach_backing(node, backing)
    }

    /// Backing options given as a dictionary still get the header's
    /// backing file as their filename unless they name `file.filename`
    /// (`bdrv_open_backing_file`); a `json:` header name would be parsed
    /// into options instead, which Strata leaves to the options given.
    fn backing_options_with_header_file(
        &self,
        node: NodeId,
        value: &OptValue,
        header_file: &str,
    ) -> Result<OptValue> {
        let OptValue::Dict(opts) = value else {
            return Ok(value.clone());
        };
        let names_file = matches!(opts.get("file"), Some(OptValue::Dict(file)) if file.get("filename").is_some());
        if header_file.is_empty() || names_file || header_file.starts_with("json:") {
            return Ok(value.clone());
        }
        let filename = self.full_backing_filename(node, header_file);
        Ok(OptValue::Dict(pass_filename_down(opts, &filename)?))
    }

    /// Attaches `backing` (opened with one reference for the caller) as
    /// `node`'s backing child.
    fn attach_backing(&mut self, node: NodeId, backing: NodeId) -> Result<()> {
        let attached = self.with_hooks(|bg, hooks| {
            bg.set_file_or_backing(hooks, node, Some(backing), ChildSlot::Backing)
        });
        self.unref(backing)?;
        attached
    }

    /// The backing file a header names, opened by filename (its format
    /// probed when the header records none). QEMU recurses without bound
    /// here: a chain that comes back to a file it is opening from grows
    /// until memory runs out (read-only) or stops at its own image lock
    /// (read-write). Strata refuses, with qemu-img's text for the loop, as
    /// soon as a node whose backing is to be opened sits on a file already
    /// being opened from, and refuses chains deeper than
    /// [`MAX_BACKING_DEPTH`].
    fn open_header_backing(
        &mut self,
        own_file: String,
        filename: &str,
        format: Option<String>,
        mut explicit: Options,
    ) -> Result<NodeId> {
        if let Some(format) = format {
            if explicit.get("driver").is_none() {
                explicit.put("driver", OptValue::Str(format));
            }
        }
        self.opening_backing.push(own_file);
        let opened = self.open_filename(filename, explicit, true);
        self.opening_backing.pop();
        opened
    }

    /// Refuses to open the backing file of `node` if `node`'s own file is
    /// one a backing file is being opened from, or the chain is too deep;
    /// `node`'s file's canonical name otherwise.
    fn check_backing_recursion(&self, node: NodeId) -> Result<String> {
        let own_file = self
            .protocol_path(node)
            .map(|path| self.files.canonical_name(&path))
            .unwrap_or_default();
        if self.opening_backing.contains(&own_file) {
            let path = self.protocol_path(node).unwrap_or_default();
            return Err(Error::generic(format!(
                "Backing file '{path}' creates an infinite loop."
            )));
        }
        if self.opening_backing.len() >= MAX_BACKING_DEPTH {
            return Err(Error::generic(format!(
                "Backing chain deeper than {MAX_BACKING_DEPTH} images"
            )));
        }
        Ok(own_file)
    }

    /// The path of the file node below `node`'s primary children.
    pub(crate) fn protocol_path(&self, node: NodeId) -> Option<String> {
        let g = self.bg.graph();
        let mut current = node;
        loop {
            if let Some(DriverState::File { path }) = self.state.get(&current) {
                return Some(path.clone());
            }
            current = g.edge(g.primary_child(current)?).ok()?.child();
        }
    }

    fn open_file_filter(
        &mut self,
        driver: Driver,
        opts: &Options,
        read_only: bool,
    ) -> Result<NodeId> {
        let state = match driver {
            Driver::Throttle => {
                let group = opts
                    .get_str("throttle-group")
                    .unwrap_or_default()
                    .to_string();
                DriverState::Throttle { group }
            }
            _ => DriverState::CopyOnRead { bottom: None },
        };
        let (node, _) = self.open_with_first_child(
            driver,
            opts,
            read_only,
            "file",
            Role::FILTERED_PRIMARY,
            state,
        )?;
        let configured = match driver {
            Driver::Throttle => self.check_throttle_group(node),
            _ => self.configure_bottom(node, opts.get_str("bottom")),
        };
        if let Err(err) = configured {
            self.unref(node)?;
            return Err(err);
        }
        Ok(node)
    }

    fn check_throttle_group(&self, node: NodeId) -> Result<()> {
        match self.state.get(&node) {
            Some(DriverState::Throttle { group }) if group.is_empty() => {
                Err(Error::generic("Please specify a throttle group"))
            }
            Some(DriverState::Throttle { group }) if !self.throttle_groups.contains_key(group) => {
                Err(Error::generic(format!(
                    "Throttle group '{group}' does not exist"
                )))
            }
            _ => Ok(()),
        }
    }

    /// `cor_open`'s `bottom`: a non-filter node in the chain, which the
    /// filter freezes its chain down to.
    pub(crate) fn configure_bottom(&mut self, node: NodeId, bottom: Option<&str>) -> Result<()> {
        let Some(name) = bottom else { return Ok(()) };
        let bottom = self
            .find_node(name)
            .ok_or_else(|| Error::generic(format!("Bottom node '{name}' not found")))?;
        if self.bg.graph().node(bottom)?.traits().is_filter {
            return Err(Error::generic(format!("Bottom node '{name}' is a filter")));
        }
        self.bg.freeze_chain(node, Some(bottom))?;
        self.bg.ref_node(bottom)?;
        self.state.insert(
            node,
            DriverState::CopyOnRead {
                bottom: Some(bottom),
            },
        );
        Ok(())
    }

    fn open_blkdebug(&mut self, opts: &Options, read_only: bool) -> Result<NodeId> {
        // `read_config`: the config file's rules first, then the options'.
        let config = match opts.get_str("config") {
            Some(path) => crate::blkdebug_config::read(path)?,
            None => Options::new(),
        };
        let rules = |key: &str| [list_of(&config, key), list_of(opts, key)].concat();
        let align = size_of(opts, "align").unwrap_or(0);
        let state = DriverState::Blkdebug {
            inject: rules("inject-error").iter().map(inject_rule).collect(),
            set_state: rules("set-state").iter().map(set_state_rule).collect(),
            state: 1,
            align: align.max(1),
        };
        let node = self.new_node(Driver::Blkdebug, opts, read_only, state)?;
        let image = opts.get("image").cloned().unwrap_or(OptValue::Null);
        let attached = self
            .open_child("image", &image, read_only)
            .and_then(|child| {
                let result = self.record_inheritance(node, child, &image).and_then(|()| {
                    self.with_hooks(|bg, hooks| {
                        bg.attach_child(hooks, node, child, "image", Role::FILTERED_PRIMARY)
                    })
                });
                self.unref(child)?;
                result.map(|_| ())
            });
        // The alignment is checked once the image is open.
        let attached = attached.and_then(|()| check_blkdebug_align(align));
        if let Err(err) = attached {
            self.unref(node)?;
            return Err(err);
        }
        // blkdebug_open ends with the `none` event: its rules arm at once.
        self.blkdebug_event(node, "none");
        Ok(node)
    }

    fn open_quorum(&mut self, opts: &Options, read_only: bool) -> Result<NodeId> {
        let threshold = match opts.get("vote-threshold") {
            Some(OptValue::Int(n)) if *n > 0 => *n as u32,
            // QemuOpts (`-drive`) give numbers as strings.
            Some(OptValue::Str(n)) if n.parse::<u32>().is_ok_and(|n| n > 0) => {
                n.parse().unwrap_or(1)
            }
            _ => return Err(Error::generic("Parameter 'vote-threshold' is missing")),
        };
        let node = self.new_node(
            Driver::Quorum,
            opts,
            read_only,
            DriverState::Quorum { threshold },
        )?;
        for (i, child) in list_of(opts, "children").iter().enumerate() {
            let name = format!("children.{i}");
            let attached = self.open_child(&name, child, read_only).and_then(|c| {
                let result = self.record_inheritance(node, c, child).and_then(|()| {
                    self.with_hooks(|bg, hooks| bg.attach_child(hooks, node, c, &name, Role::DATA))
                });
                self.unref(c)?;
                result.map(|_| ())
            });
            if let Err(err) = attached {
                self.unref(node)?;
                return Err(err);
            }
        }
        Ok(node)
    }
}

/// A node's own options: scalars and lists, without nested children.
pub(crate) fn scalar_options(opts: &Options) -> Options {
    let mut own = Options::new();
    for (key, value) in opts.iter() {
        match (key, value) {
            ("file" | "backing" | "image" | "children", _) => {}
            (_, OptValue::Dict(_)) => {}
            _ => own.put(key, value.clone()),
        }
    }
    own
}

fn list_of(opts: &Options, key: &str) -> Vec<OptValue> {
    match opts.get(key) {
        Some(OptValue::List(items)) => items.clone(),
        _ => Vec::new(),
    }
}

fn int_of(dict: &Options, key: &str) -> Option<i64> {
    match dict.get(key) {
        Some(OptValue::Int(n)) => Some(*n),
        _ => None,
    }
}

/// A size option: a number, or a numeric string (QemuOpts).
fn size_of(dict: &Options, key: &str) -> Option<u64> {
    match dict.get(key) {
        Some(OptValue::Int(n)) => u64::try_from(*n).ok(),
        Some(OptValue::Str(n)) => n.parse().ok(),
        _ => None,
    }
}

/// `blkdebug_open`: `align` (0: none) must be a power of two below
/// `INT_MAX`.
fn check_blkdebug_align(align: u64) -> Result<()> {
    if align != 0 && (align >= i32::MAX as u64 || !align.is_power_of_two()) {
        return Err(Error::generic(format!(
            "Cannot meet constraints with align {align}"
        )));
    }
    Ok(())
}

/// `discard` as given: whether it asks for `BDRV_O_UNMAP`
/// (`bdrv_parse_discard_flags`: `unmap` or `on`; `ignore` or `off` not).
fn discard_unmap(dict: &Options) -> Option<bool> {
    dict.get_str("discard")
        .map(|mode| matches!(mode, "unmap" | "on"))
}

fn bool_of(dict: &Options, key: &str) -> Option<bool> {
    match dict.get(key) {
        Some(OptValue::Bool(b)) => Some(*b),
        _ => None,
    }
}

fn inject_rule(value: &OptValue) -> InjectError {
    let OptValue::Dict(d) = value else {
        return InjectError::default();
    };
    InjectError {
        event: d.get_str("event").unwrap_or_default().to_string(),
        state: int_of(d, "state").unwrap_or(0) as u32,
        errno: int_of(d, "errno").unwrap_or(5) as i32,
        sector: int_of(d, "sector").filter(|&s| s >= 0).map(|s| s as u64),
        once: bool_of(d, "once").unwrap_or(false),
        immediately: bool_of(d, "immediately").unwrap_or(false),
        armed: false,
    }
}

fn set_state_rule(value: &OptValue) -> SetState {
    let OptValue::Dict(d) = value else {
        return SetState::default();
    };
    SetState {
        event: d.get_str("event").unwrap_or_default().to_string(),
        state: int_of(d, "state").unwrap_or(0) as u32,
        new_state: int_of(d, "new_state").unwrap_or(0) as u32,
    }
}
