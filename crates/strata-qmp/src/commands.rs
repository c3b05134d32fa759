//! Typed, validated commands: what a [`CommandHandler`](crate::CommandHandler)
//! receives.
//!
//! Every value here went through [`validate_command`](crate::validate_command)
//! first, so the conversion from JSON cannot fail on anything a client sent;
//! the types mirror QEMU 10.0's QAPI (member names in kebab-case on the wire,
//! snake_case here).

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::QmpError;
use crate::value::QObject;

/// `BlockdevOnError`: what a job does on an I/O error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Report the error and end the job (the default).
    Report,
    /// Ignore the error and go on.
    Ignore,
    /// Pause on ENOSPC, report anything else.
    Enospc,
    /// Pause the job.
    Stop,
    /// Inherit from the block device (`report` for jobs).
    Auto,
}

/// `BlockdevDiscardOptions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// Ignore discard requests.
    Ignore,
    /// Forward discard requests.
    Unmap,
}

/// `BlockdevDetectZeroesOptions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectZeroes {
    /// No detection.
    Off,
    /// Zero writes become write-zeroes.
    On,
    /// ... and may unmap when discard is enabled.
    Unmap,
}

/// `BlockdevCacheOptions`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CacheOptions {
    /// O_DIRECT.
    pub direct: Option<bool>,
    /// Ignore flush requests.
    pub no_flush: Option<bool>,
}

/// `BlockdevRef`: a node name, or the options of a new node.
#[derive(Clone, Debug, PartialEq)]
pub enum BlockdevRef {
    /// An existing node, by node name.
    Reference(String),
    /// A node defined inline.
    Definition(Box<BlockdevOptions>),
}

/// `BlockdevRefOrNull` (`backing`): like [`BlockdevRef`], or `null` for
/// "no backing file".
#[derive(Clone, Debug, PartialEq)]
pub enum BlockdevRefOrNull {
    /// An existing node, by node name.
    Reference(String),
    /// A node defined inline.
    Definition(Box<BlockdevOptions>),
    /// `null`: explicitly no backing file.
    Null,
}

impl<'de> Deserialize<'de> for BlockdevRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(BlockdevRef::Reference(s)),
            v => BlockdevOptions::from_json(v)
                .map(|o| BlockdevRef::Definition(Box::new(o)))
                .map_err(serde::de::Error::custom),
        }
    }
}

impl<'de> Deserialize<'de> for BlockdevRefOrNull {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(BlockdevRefOrNull::Null),
            Value::String(s) => Ok(BlockdevRefOrNull::Reference(s)),
            v => BlockdevOptions::from_json(v)
                .map(|o| BlockdevRefOrNull::Definition(Box::new(o)))
                .map_err(serde::de::Error::custom),
        }
    }
}

/// `null` is a value here (not "absent"): `Some(BlockdevRefOrNull::Null)`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `BlockdevOptions`: the arguments of `blockdev-add`, one element of
/// `blockdev-reopen`, an inline child.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockdevOptions {
    /// The driver (a `BlockdevDriver` value, e.g. `"qcow2"`).
    pub driver: String,
    /// `node-name`.
    pub node_name: Option<String>,
    /// `discard`.
    pub discard: Option<Discard>,
    /// `cache`.
    pub cache: Option<CacheOptions>,
    /// `active`.
    pub active: Option<bool>,
    /// `read-only`.
    pub read_only: Option<bool>,
    /// `auto-read-only`.
    pub auto_read_only: Option<bool>,
    /// `force-share`.
    pub force_share: Option<bool>,
    /// `detect-zeroes`.
    pub detect_zeroes: Option<DetectZeroes>,
    /// The driver-specific members.
    pub kind: DriverOptions,
    /// All options as validated, in the client's order (keyval strings
    /// already converted): the source for `json:{...}` filenames.
    pub options: Value,
}

/// `BlockdevOptions`' branch for the drivers Strata models.
#[derive(Clone, Debug, PartialEq)]
pub enum DriverOptions {
    /// `file`.
    File(FileOptions),
    /// `raw`.
    Raw(RawOptions),
    /// `qcow2`.
    Qcow2(Qcow2Options),
    /// `throttle`.
    Throttle(ThrottleOptions),
    /// `copy-on-read`.
    CopyOnRead(CopyOnReadOptions),
    /// `blkdebug`.
    Blkdebug(BlkdebugOptions),
    /// `quorum`.
    Quorum(QuorumOptions),
    /// `null-co` (and `null-aio`).
    Null(NullOptions),
    /// A driver QEMU knows and Strata does not model (its options were still
    /// validated; they are in [`BlockdevOptions::options`]).
    Other,
}

/// `BlockdevOptionsFile`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileOptions {
    /// Path of the image file.
    pub filename: String,
    /// `locking` (`auto`/`on`/`off`).
    pub locking: Option<String>,
    /// `aio`.
    pub aio: Option<String>,
}

/// `BlockdevOptionsRaw`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawOptions {
    /// The protocol child.
    pub file: BlockdevRef,
    /// `offset`.
    pub offset: Option<i64>,
    /// `size`.
    pub size: Option<i64>,
}

/// `BlockdevOptionsQcow2` (the members Strata uses; all were validated).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Qcow2Options {
    /// The protocol child.
    pub file: BlockdevRef,
    /// `backing`: absent (open the one in the header), a node, or `null`.
    #[serde(default, deserialize_with = "present")]
    pub backing: Option<BlockdevRefOrNull>,
    /// `lazy-refcounts`.
    pub lazy_refcounts: Option<bool>,
    /// `cache-size`.
    pub cache_size: Option<i64>,
    /// `data-file`.
    pub data_file: Option<BlockdevRef>,
}

/// `BlockdevOptionsThrottle`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ThrottleOptions {
    /// The throttle group's object id.
    pub throttle_group: String,
    /// The filtered child.
    pub file: BlockdevRef,
}

/// `BlockdevOptionsCor`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CopyOnReadOptions {
    /// The filtered child.
    pub file: BlockdevRef,
    /// `bottom`: node name of the lowest node to copy from.
    pub bottom: Option<String>,
}

/// `BlkdebugInjectErrorOptions`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlkdebugInjectError {
    /// The `BlkdebugEvent` that triggers the rule.
    pub event: String,
    /// Only in this state.
    pub state: Option<i64>,
    /// Only for this `BlkdebugIOType`.
    pub iotype: Option<String>,
    /// The errno to fail with (default EIO).
    pub errno: Option<i64>,
    /// Only for this sector.
    pub sector: Option<i64>,
    /// Disable after the first hit.
    pub once: Option<bool>,
    /// Fail immediately (not after the request).
    pub immediately: Option<bool>,
}

/// `BlkdebugSetStateOptions`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct BlkdebugSetState {
    /// The `BlkdebugEvent` that triggers the rule.
    pub event: String,
    /// Only in this state.
    pub state: Option<i64>,
    /// The state to enter.
    pub new_state: i64,
}

/// `BlockdevOptionsBlkdebug`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlkdebugOptions {
    /// The debugged child.
    pub image: BlockdevRef,
    /// A config file (unsupported by Strata beyond validation).
    pub config: Option<String>,
    /// Request alignment.
    pub align: Option<i64>,
    /// `max-transfer`.
    pub max_transfer: Option<i32>,
    /// Error injection rules.
    pub inject_error: Option<Vec<BlkdebugInjectError>>,
    /// State transition rules.
    pub set_state: Option<Vec<BlkdebugSetState>>,
}

/// `BlockdevOptionsQuorum`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct QuorumOptions {
    /// `blkverify` mode.
    pub blkverify: Option<bool>,
    /// The children.
    pub children: Vec<BlockdevRef>,
    /// Votes needed.
    pub vote_threshold: i64,
    /// `rewrite-corrupted`.
    pub rewrite_corrupted: Option<bool>,
    /// `read-pattern` (`quorum`/`fifo`).
    pub read_pattern: Option<String>,
}

/// `BlockdevOptionsNull`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NullOptions {
    /// Virtual size (default 1 GiB).
    pub size: Option<i64>,
    /// Completion latency.
    pub latency_ns: Option<u64>,
    /// Reads return zeroes.
    pub read_zeroes: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Common {
    driver: String,
    node_name: Option<String>,
    discard: Option<Discard>,
    cache: Option<CacheOptions>,
    active: Option<bool>,
    read_only: Option<bool>,
    auto_read_only: Option<bool>,
    force_share: Option<bool>,
    detect_zeroes: Option<DetectZeroes>,
}

impl BlockdevOptions {
    /// Builds the typed options from *validated* JSON.
    pub fn from_json(options: Value) -> Result<BlockdevOptions, String> {
        let common: Common = serde_json::from_value(options.clone()).map_err(|e| e.to_string())?;
        fn branch<T: for<'de> Deserialize<'de>>(v: &Value) -> Result<T, String> {
            serde_json::from_value(v.clone()).map_err(|e| e.to_string())
        }
        let kind = match common.driver.as_str() {
            "file" => DriverOptions::File(branch(&options)?),
            "raw" => DriverOptions::Raw(branch(&options)?),
            "qcow2" => DriverOptions::Qcow2(branch(&options)?),
            "throttle" => DriverOptions::Throttle(branch(&options)?),
            "copy-on-read" => DriverOptions::CopyOnRead(branch(&options)?),
            "blkdebug" => DriverOptions::Blkdebug(branch(&options)?),
            "quorum" => DriverOptions::Quorum(branch(&options)?),
            "null-co" | "null-aio" => DriverOptions::Null(branch(&options)?),
            _ => DriverOptions::Other,
        };
        Ok(BlockdevOptions {
            driver: common.driver,
            node_name: common.node_name,
            discard: common.discard,
            cache: common.cache,
            active: common.active,
            read_only: common.read_only,
            auto_read_only: common.auto_read_only,
            force_share: common.force_share,
            detect_zeroes: common.detect_zeroes,
            kind,
            options,
        })
    }
}

/// `block-stream`'s arguments.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockStreamArgs {
    /// `job-id` (required in practice by qsd: `Invalid job ID ''`).
    pub job_id: Option<String>,
    /// The device or node to stream into.
    pub device: String,
    /// `base` (a filename in the chain).
    pub base: Option<String>,
    /// `base-node`.
    pub base_node: Option<String>,
    /// `backing-file` string to write into the image header.
    pub backing_file: Option<String>,
    /// `backing-mask-protocol`.
    pub backing_mask_protocol: Option<bool>,
    /// `bottom`: the lowest node to copy.
    pub bottom: Option<String>,
    /// Speed limit in bytes/s.
    pub speed: Option<i64>,
    /// `on-error`.
    pub on_error: Option<OnError>,
    /// Node name of the implicit copy-on-read filter.
    pub filter_node_name: Option<String>,
    /// `auto-finalize`.
    pub auto_finalize: Option<bool>,
    /// `auto-dismiss`.
    pub auto_dismiss: Option<bool>,
}

/// `block-commit`'s arguments.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockCommitArgs {
    /// `job-id`.
    pub job_id: Option<String>,
    /// The device or node whose chain is committed.
    pub device: String,
    /// `base-node`.
    pub base_node: Option<String>,
    /// `base` (filename; deprecated).
    pub base: Option<String>,
    /// `top-node`.
    pub top_node: Option<String>,
    /// `top` (filename; deprecated).
    pub top: Option<String>,
    /// `backing-file`.
    pub backing_file: Option<String>,
    /// `backing-mask-protocol`.
    pub backing_mask_protocol: Option<bool>,
    /// Speed limit in bytes/s.
    pub speed: Option<i64>,
    /// `on-error`.
    pub on_error: Option<OnError>,
    /// Node name of the commit filter.
    pub filter_node_name: Option<String>,
    /// `auto-finalize`.
    pub auto_finalize: Option<bool>,
    /// `auto-dismiss`.
    pub auto_dismiss: Option<bool>,
}

/// `ThrottleLimits` and the `x-*` properties of a `throttle-group` object,
/// as given (`limits` and `x-*` both kept; QEMU refuses mixing them later).
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectOptions {
    /// `qom-type` (an `ObjectType` value).
    pub qom_type: String,
    /// `id`.
    pub id: String,
    /// The properties besides `qom-type` and `id`, validated, in the
    /// client's order.  For `throttle-group`: `limits` (an object of
    /// `iops-total`, `bps-read-max`, ...) and/or `x-iops-total`, ....
    pub props: serde_json::Map<String, Value>,
}

/// `nbd-server-start`'s arguments (`NbdServerOptionsLegacy`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NbdServerStartArgs {
    /// `SocketAddressLegacy`, validated: `{"type": "unix", "data": {"path": ...}}`.
    pub addr: Value,
    /// `tls-creds`.
    pub tls_creds: Option<String>,
    /// `tls-authz`.
    pub tls_authz: Option<String>,
    /// `max-connections`.
    pub max_connections: Option<u32>,
    /// `handshake-max-seconds`.
    pub handshake_max_seconds: Option<u32>,
}

/// `BlockExportOptions` (`block-export-add`, `--export`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockExportOptions {
    /// `type` (`nbd`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Export id.
    pub id: String,
    /// The exported node.
    pub node_name: String,
    /// `writable`.
    pub writable: Option<bool>,
    /// `writethrough`.
    pub writethrough: Option<bool>,
    /// NBD: export name (default: the node name).
    pub name: Option<String>,
    /// NBD: description.
    pub description: Option<String>,
    /// NBD: `allocation-depth`.
    pub allocation_depth: Option<bool>,
    /// `iothread`: the iothread object whose AioContext the export moves
    /// its node to.
    pub iothread: Option<String>,
    /// `fixed-iothread`: refuse (rather than ignore) a failed move, and
    /// let nothing move the node away later.
    pub fixed_iothread: Option<bool>,
}

/// A validated command with typed arguments.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `quit`.
    Quit,
    /// `blockdev-add`.
    BlockdevAdd(BlockdevOptions),
    /// `blockdev-del`.
    BlockdevDel {
        /// The node to delete.
        node_name: String,
    },
    /// `blockdev-reopen`.
    BlockdevReopen {
        /// New options for each node.
        options: Vec<BlockdevOptions>,
    },
    /// `blockdev-snapshot`.
    BlockdevSnapshot {
        /// The node that gets the overlay on top.
        node: String,
        /// The overlay (a node without backing).
        overlay: String,
    },
    /// `object-add`.
    ObjectAdd(ObjectOptions),
    /// `object-del`.
    ObjectDel {
        /// The object id.
        id: String,
    },
    /// `block-stream`.
    BlockStream(BlockStreamArgs),
    /// `block-commit`.
    BlockCommit(BlockCommitArgs),
    /// `block-job-set-speed`.
    BlockJobSetSpeed {
        /// Job id.
        device: String,
        /// New speed in bytes/s.
        speed: i64,
    },
    /// `block-job-pause`.
    BlockJobPause {
        /// Job id.
        device: String,
    },
    /// `block-job-resume`.
    BlockJobResume {
        /// Job id.
        device: String,
    },
    /// `block-job-cancel`.
    BlockJobCancel {
        /// Job id.
        device: String,
        /// `force`.
        force: Option<bool>,
    },
    /// `block-job-complete`.
    BlockJobComplete {
        /// Job id.
        device: String,
    },
    /// `block-job-finalize`.
    BlockJobFinalize {
        /// Job id.
        id: String,
    },
    /// `block-job-dismiss`.
    BlockJobDismiss {
        /// Job id.
        id: String,
    },
    /// `job-pause`.
    JobPause {
        /// Job id.
        id: String,
    },
    /// `job-resume`.
    JobResume {
        /// Job id.
        id: String,
    },
    /// `job-cancel`.
    JobCancel {
        /// Job id.
        id: String,
    },
    /// `job-complete`.
    JobComplete {
        /// Job id.
        id: String,
    },
    /// `job-finalize`.
    JobFinalize {
        /// Job id.
        id: String,
    },
    /// `job-dismiss`.
    JobDismiss {
        /// Job id.
        id: String,
    },
    /// `query-jobs`.
    QueryJobs,
    /// `query-block-jobs`.
    QueryBlockJobs,
    /// `query-named-block-nodes`.
    QueryNamedBlockNodes {
        /// `flat`: omit the backing chain of each node's image info.
        flat: Option<bool>,
    },
    /// `x-debug-query-block-graph`.
    XDebugQueryBlockGraph,
    /// `nbd-server-start`.
    NbdServerStart(NbdServerStartArgs),
    /// `nbd-server-stop`.
    NbdServerStop,
    /// `block-export-add`.
    BlockExportAdd(BlockExportOptions),
    /// `block-export-del`.
    BlockExportDel {
        /// Export id.
        id: String,
        /// `mode` (`safe`/`hard`).
        mode: Option<String>,
    },
    /// `query-block-exports`.
    QueryBlockExports,
    /// `query-block`: the named BlockBackends and those with a device.
    QueryBlock,
    /// `query-blockstats` (served for qemu-system only).
    QueryBlockstats {
        /// `query-nodes`: every named node instead of the BlockBackends.
        query_nodes: bool,
    },
    /// `device_add` (qemu-system only).
    DeviceAdd(DeviceAddArgs),
    /// `device_del` (qemu-system only).
    DeviceDel {
        /// The device's id.
        id: String,
    },
    /// `human-monitor-command` (qemu-system only): one HMP command line.
    HumanMonitorCommand {
        /// `command-line`.
        command_line: String,
    },
}

/// `device_add`'s arguments that a stand-in without a guest reads (the
/// bus places a device in a machine that does not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceAddArgs {
    /// The device type.
    pub driver: String,
    /// `id`.
    pub id: Option<String>,
    /// `drive`: a BlockBackend's or a node's name.
    pub drive: Option<String>,
    /// `share-rw`.
    pub share_rw: bool,
}

impl Command {
    /// Builds the typed command from the *validated* arguments of `name`.
    /// `None` for the commands the session answers itself.
    pub fn from_validated(name: &str, args: &QObject) -> Result<Option<Command>, QmpError> {
        let v = args.to_json();
        let internal = |e: String| QmpError::generic(format!("internal error: {name}: {e}"));
        let field = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        let req = |key: &str| field(key).ok_or_else(|| internal(format!("no {key}")));
        let boolean = |key: &str| v.get(key).and_then(Value::as_bool);
        fn typed<T: for<'de> Deserialize<'de>>(v: &Value) -> Result<T, String> {
            serde_json::from_value(v.clone()).map_err(|e| e.to_string())
        }
        Ok(Some(match name {
            "qmp_capabilities" | "query-version" | "query-commands" => return Ok(None),
            "quit" => Command::Quit,
            "blockdev-add" => {
                Command::BlockdevAdd(BlockdevOptions::from_json(v).map_err(internal)?)
            }
            "blockdev-del" => Command::BlockdevDel {
                node_name: req("node-name")?,
            },
            "blockdev-reopen" => {
                let list = v
                    .get("options")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let options = list
                    .into_iter()
                    .map(BlockdevOptions::from_json)
                    .collect::<Result<_, _>>()
                    .map_err(internal)?;
                Command::BlockdevReopen { options }
            }
            "blockdev-snapshot" => Command::BlockdevSnapshot {
                node: req("node")?,
                overlay: req("overlay")?,
            },
            "object-add" => {
                let mut props = v.as_object().cloned().unwrap_or_default();
                let qom_type = props
                    .remove("qom-type")
                    .and_then(|t| t.as_str().map(str::to_string));
                let id = props
                    .remove("id")
                    .and_then(|t| t.as_str().map(str::to_string));
                Command::ObjectAdd(ObjectOptions {
                    qom_type: qom_type.ok_or_else(|| internal("no qom-type".into()))?,
                    id: id.ok_or_else(|| internal("no id".into()))?,
                    props,
                })
            }
            "object-del" => Command::ObjectDel { id: req("id")? },
            "block-stream" => Command::BlockStream(typed(&v).map_err(internal)?),
            "block-commit" => Command::BlockCommit(typed(&v).map_err(internal)?),
            "block-job-set-speed" => Command::BlockJobSetSpeed {
                device: req("device")?,
                speed: v
                    .get("speed")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| internal("no speed".into()))?,
            },
            "block-job-pause" => Command::BlockJobPause {
                device: req("device")?,
            },
            "block-job-resume" => Command::BlockJobResume {
                device: req("device")?,
            },
            "block-job-cancel" => Command::BlockJobCancel {
                device: req("device")?,
                force: boolean("force"),
            },
            "block-job-complete" => Command::BlockJobComplete {
                device: req("device")?,
            },
            "block-job-finalize" => Command::BlockJobFinalize { id: req("id")? },
            "block-job-dismiss" => Command::BlockJobDismiss { id: req("id")? },
            "job-pause" => Command::JobPause { id: req("id")? },
            "job-resume" => Command::JobResume { id: req("id")? },
            "job-cancel" => Command::JobCancel { id: req("id")? },
            "job-complete" => Command::JobComplete { id: req("id")? },
            "job-finalize" => Command::JobFinalize { id: req("id")? },
            "job-dismiss" => Command::JobDismiss { id: req("id")? },
            "query-jobs" => Command::QueryJobs,
            "query-block-jobs" => Command::QueryBlockJobs,
            "query-named-block-nodes" => Command::QueryNamedBlockNodes {
                flat: boolean("flat"),
            },
            "x-debug-query-block-graph" => Command::XDebugQueryBlockGraph,
            "nbd-server-start" => Command::NbdServerStart(typed(&v).map_err(internal)?),
            "nbd-server-stop" => Command::NbdServerStop,
            "block-export-add" => Command::BlockExportAdd(typed(&v).map_err(internal)?),
            "block-export-del" => Command::BlockExportDel {
                id: req("id")?,
                mode: field("mode"),
            },
            "query-block-exports" => Command::QueryBlockExports,
            "query-block" => Command::QueryBlock,
            "device_add" => Command::DeviceAdd(DeviceAddArgs {
                driver: req("driver")?,
                id: field("id"),
                drive: field("drive"),
                share_rw: boolean("share-rw").unwrap_or(false),
            }),
            "device_del" => Command::DeviceDel { id: req("id")? },
            "query-blockstats" => Command::QueryBlockstats {
                query_nodes: boolean("query-nodes").unwrap_or(false),
            },
            "human-monitor-command" => Command::HumanMonitorCommand {
                command_line: req("command-line")?,
            },
            other => return Err(internal(format!("no typed form for {other}"))),
        }))
    }
}
