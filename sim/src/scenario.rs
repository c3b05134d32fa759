//! The conformance harness's file formats as typed values: scenarios (what a
//! client does to a QMP server) and observations (what it saw).
//!
//! The same scenario file runs against qemu-storage-daemon (through the
//! shared Python harness) and in Strata's simulator; the observations of
//! both have the same shape, so that one comparison judges either. This
//! module only parses and prints; running a scenario is the simulator's job.
//!
//! ```
//! use strata_sim::scenario::{Scenario, StepKind};
//! let scenario = Scenario::from_json(r#"{
//!     "name": "s", "images": [{"name": "a.img", "size": "1M"}],
//!     "steps": [{"execute": "query-jobs"}, {"settle": true}]
//! }"#).unwrap();
//! assert_eq!(scenario.images[0].size, Some(1 << 20));
//! assert!(matches!(scenario.steps[0].kind, StepKind::Execute(_)));
//! ```

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use strata_monitor::{Monitor, NbdListener};
use strata_qmp::{validate_command, Command, CommandHandler, QObject, QmpError};

/// A JSON value without JSON: what a scenario passes as arguments and what
/// an observation records as returns and event data. Dictionaries keep
/// their order for printing but compare like Python's dicts: as sets of
/// members.
#[derive(Clone, Debug)]
pub enum Datum {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Datum>),
    /// A dictionary, in the order written.
    Dict(Vec<(String, Datum)>),
}

impl PartialEq for Datum {
    fn eq(&self, other: &Datum) -> bool {
        match (self, other) {
            (Datum::Dict(a), Datum::Dict(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| other.get(k) == Some(v))
            }
            (Datum::Null, Datum::Null) => true,
            (Datum::Bool(a), Datum::Bool(b)) => a == b,
            (Datum::Int(a), Datum::Int(b)) => a == b,
            (Datum::Float(a), Datum::Float(b)) => a == b,
            (Datum::Int(a), Datum::Float(b)) | (Datum::Float(b), Datum::Int(a)) => *a as f64 == *b,
            (Datum::Str(a), Datum::Str(b)) => a == b,
            (Datum::List(a), Datum::List(b)) => a == b,
            _ => false,
        }
    }
}

impl Datum {
    fn from_json(v: &Value) -> Datum {
        match v {
            Value::Null => Datum::Null,
            Value::Bool(b) => Datum::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Datum::Int(i),
                None => Datum::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Datum::Str(s.clone()),
            Value::Array(a) => Datum::List(a.iter().map(Datum::from_json).collect()),
            Value::Object(o) => Datum::Dict(
                o.iter()
                    .map(|(k, v)| (k.clone(), Datum::from_json(v)))
                    .collect(),
            ),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Datum::Null => Value::Null,
            Datum::Bool(b) => Value::Bool(*b),
            Datum::Int(i) => Value::from(*i),
            Datum::Float(f) => Value::from(*f),
            Datum::Str(s) => Value::String(s.clone()),
            Datum::List(l) => Value::Array(l.iter().map(Datum::to_json).collect()),
            Datum::Dict(d) => {
                Value::Object(d.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// The member `key` of a dictionary.
    pub fn get(&self, key: &str) -> Option<&Datum> {
        match self {
            Datum::Dict(d) => d.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Datum::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A dictionary of `(key, value)` pairs.
    pub fn dict(pairs: impl IntoIterator<Item = (impl Into<String>, Datum)>) -> Datum {
        Datum::Dict(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Keeps only `keys` of a dictionary, or of each dictionary in a list
    /// (the harness's `project`), in the order of `keys`.
    pub fn project(&self, keys: &Record) -> Datum {
        let Record::Keys(keys) = keys else {
            return self.clone();
        };
        match self {
            Datum::List(l) => Datum::List(
                l.iter()
                    .map(|d| d.project(&Record::Keys(keys.clone())))
                    .collect(),
            ),
            Datum::Dict(_) => Datum::Dict(
                keys.iter()
                    .filter_map(|k| self.get(k).map(|v| (k.clone(), v.clone())))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

impl Serialize for Datum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Datum::Null => s.serialize_unit(),
            Datum::Bool(b) => s.serialize_bool(*b),
            Datum::Int(i) => s.serialize_i64(*i),
            Datum::Float(f) => s.serialize_f64(*f),
            Datum::Str(v) => s.serialize_str(v),
            Datum::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for item in l {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Datum::Dict(d) => {
                let mut map = s.serialize_map(Some(d.len()))?;
                for (k, v) in d {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Datum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Datum, D::Error> {
        Ok(Datum::from_json(&Value::deserialize(d)?))
    }
}

/// Why a scenario or observation file could not be read.
#[derive(Debug)]
pub enum FormatError {
    /// Not JSON, or not the expected shape.
    Json(String),
    /// A value the format does not allow.
    Invalid(String),
}

impl std::error::Error for FormatError {}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::Json(m) => write!(f, "malformed file: {m}"),
            FormatError::Invalid(m) => write!(f, "invalid scenario: {m}"),
        }
    }
}

// ----- scenarios -------------------------------------------------------------

/// A scenario: images to create, then steps for a QMP client.
#[derive(Clone, PartialEq, Debug)]
pub struct Scenario {
    /// The scenario's name (its file name without `.json`).
    pub name: String,
    /// What it tests.
    pub description: String,
    /// Paths of the observation that QEMU leaves to chance.
    pub volatile: Vec<String>,
    /// The final settle: `None` for `"final_settle": false`, else serial or not.
    pub final_settle: Option<SettleSpec>,
    /// Other files the harness writes into the scratch directory first.
    pub files: Vec<ScenarioFile>,
    /// Images, created in order before the server starts.
    pub images: Vec<ImageSpec>,
    /// The client's steps.
    pub steps: Vec<Step>,
    /// Commands run after the final graph is recorded, their results
    /// recorded as `final_queries`.
    pub final_queries: Vec<Execute>,
    /// Whether some command's arguments name the scratch directory
    /// (`"{dir}"`, see [`SCRATCH_DIR`]).
    pub uses_scratch_dir: bool,
}

/// A file of `"files"`: written as given before the images are made.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ScenarioFile {
    /// File name in the scratch directory.
    pub name: String,
    /// Its text.
    pub content: String,
}

/// An image the harness creates with qemu-img / qemu-io.
#[derive(Clone, PartialEq, Debug)]
pub struct ImageSpec {
    /// File name in the scratch directory.
    pub name: String,
    /// `qcow2` or `raw`.
    pub format: String,
    /// Virtual size in bytes (optional for a qcow2 with a backing file).
    pub size: Option<u64>,
    /// qcow2 cluster size.
    pub cluster_size: Option<u64>,
    /// Further `qemu-img create -o key=value` options, sorted by key as the
    /// harness passes them.
    pub options: Vec<(String, String)>,
    /// Backing file name, stored as given, and its format.
    pub backing: Option<(String, String)>,
    /// Raw only: every sector holds its big-endian number at both ends.
    pub sector_numbers: bool,
    /// `qemu-io` writes after creation.
    pub writes: Vec<ImageWrite>,
    /// Left out of the final inspection.
    pub no_inspect: bool,
}

/// One `qemu-io -c 'write ...'`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ImageWrite {
    /// The byte written (`-P`), ignored for zero writes.
    pub pattern: u8,
    /// Offset in bytes.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// `write -z`.
    pub zero: bool,
}

/// A step with its optional note.
#[derive(Clone, PartialEq, Debug)]
pub struct Step {
    /// Free text copied into the observation.
    pub note: Option<String>,
    /// What the step does.
    pub kind: StepKind,
}

/// What a step does.
#[derive(Clone, PartialEq, Debug)]
pub enum StepKind {
    /// Only a note.
    Note,
    /// A QMP command.
    Execute(Box<Execute>),
    /// Wait for an event.
    Wait(WaitSpec),
    /// Unthrottle every job and wait until none can progress on its own.
    Settle(SettleSpec),
    /// Poll `query-jobs` until a job has one of the statuses (`"absent"`:
    /// gone).
    WaitStatus {
        /// The step exactly as written (recorded in the observation).
        spec: Datum,
        /// The job.
        job: String,
        /// Acceptable statuses.
        statuses: Vec<String>,
        /// Seconds.
        timeout: f64,
        /// A timeout is not an expectation failure.
        optional: bool,
    },
    /// Poll `query-jobs` until a job's `current-progress` reaches `min`.
    WaitProgress {
        /// The step exactly as written.
        spec: Datum,
        /// The job.
        job: String,
        /// Bytes.
        min: u64,
        /// Seconds.
        timeout: f64,
        /// A timeout is not an expectation failure.
        optional: bool,
    },
    /// Record the normalised graph now.
    Graph,
    /// Sleep (seconds).
    Sleep(f64),
}

/// A QMP command step.
#[derive(Clone, PartialEq, Debug)]
pub struct Execute {
    /// The command name.
    pub name: String,
    /// The arguments as written (`None` when absent).
    pub arguments: Option<Datum>,
    /// The command after QAPI validation, or the error QEMU's dispatcher
    /// answers with (schema errors never reach the block layer).
    pub command: Result<Command, QmpError>,
    /// The validated arguments (defaults not added; `{}` when absent).
    pub validated: Datum,
    /// What the scenario expects.
    pub expect: Expect,
    /// Which parts of the return to record.
    pub record: Option<Record>,
    /// Remember the (projected) return under this label.
    pub label: Option<String>,
    /// Compare the (projected) return with an earlier label.
    pub same_as: Option<String>,
}

/// An `expect` value.
#[derive(Clone, PartialEq, Debug)]
pub enum Expect {
    /// `"success"` (the default).
    Success,
    /// `"error"`.
    Error,
    /// `"any"`.
    Any,
    /// `{"error": substring, "error_class": class}` (either optional).
    ErrorLike {
        /// A substring of the description.
        desc: Option<String>,
        /// The class.
        class: Option<String>,
    },
}

impl Expect {
    /// Whether a result meets the expectation.
    pub fn met(&self, error: Option<&ErrorRecord>) -> bool {
        match (self, error) {
            (Expect::Success, e) => e.is_none(),
            (Expect::Error, e) => e.is_some(),
            (Expect::Any, _) => true,
            (Expect::ErrorLike { .. }, None) => false,
            (Expect::ErrorLike { desc, class }, Some(e)) => {
                desc.as_ref().is_none_or(|d| e.desc.contains(d.as_str()))
                    && class.as_ref().is_none_or(|c| *c == e.class)
            }
        }
    }

    fn as_datum(&self) -> Datum {
        match self {
            Expect::Success => Datum::Str("success".into()),
            Expect::Error => Datum::Str("error".into()),
            Expect::Any => Datum::Str("any".into()),
            Expect::ErrorLike { desc, class } => Datum::Dict(
                desc.iter()
                    .map(|d| ("error".to_string(), Datum::Str(d.clone())))
                    .chain(
                        class
                            .iter()
                            .map(|c| ("error_class".to_string(), Datum::Str(c.clone()))),
                    )
                    .collect(),
            ),
        }
    }
}

/// `"record": true` or a list of keys.
#[derive(Clone, PartialEq, Debug)]
pub enum Record {
    /// Everything.
    All,
    /// These keys of a dictionary or of each element of a list.
    Keys(Vec<String>),
}

/// A `wait` step.
#[derive(Clone, PartialEq, Debug)]
pub struct WaitSpec {
    /// The step's `wait` object as written (the key of its event cursor).
    pub spec: Datum,
    /// Event name.
    pub event: Option<String>,
    /// Job id (`data.id` or `data.device`).
    pub job: Option<String>,
    /// Data members that must match.
    pub data: Vec<(String, Datum)>,
    /// Seconds.
    pub timeout: f64,
    /// A timeout is not an expectation failure.
    pub optional: bool,
    /// The data fields recorded.
    pub record: Record,
}

/// A settle step.
#[derive(Clone, PartialEq, Debug)]
pub struct SettleSpec {
    /// As written (`true` or the object).
    pub spec: Datum,
    /// One job at a time, newest first.
    pub serial: bool,
    /// Seconds.
    pub timeout: f64,
}

fn parse_size(v: &Value) -> Result<u64, FormatError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| FormatError::Invalid(format!("bad size {v}"))),
        Value::String(s) => {
            let (num, mult) = match s.chars().last() {
                Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
                Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
                Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
                _ => (&s[..], 1),
            };
            num.parse::<u64>()
                .map(|n| n * mult)
                .map_err(|_| FormatError::Invalid(format!("bad size {s:?}")))
        }
        _ => Err(FormatError::Invalid(format!("bad size {v}"))),
    }
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn timeout(v: &Value, default: f64) -> f64 {
    v.get("timeout").and_then(Value::as_f64).unwrap_or(default)
}

fn record(v: Option<&Value>, default: Option<Record>) -> Result<Option<Record>, FormatError> {
    match v {
        None | Some(Value::Bool(false)) | Some(Value::Null) => Ok(default),
        Some(Value::Bool(true)) => Ok(Some(Record::All)),
        Some(Value::Array(keys)) => Ok(Some(Record::Keys(
            keys.iter()
                .map(|k| k.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| FormatError::Invalid("record keys must be strings".into()))?,
        ))),
        Some(other) => Err(FormatError::Invalid(format!("bad record {other}"))),
    }
}

/// The event data fields a `wait` records by default.
pub const DEFAULT_EVENT_RECORD: [&str; 5] = ["type", "error", "operation", "action", "status"];

impl Scenario {
    /// Parses a scenario file.
    pub fn from_json(text: &str) -> Result<Scenario, FormatError> {
        let v: Value = serde_json::from_str(text).map_err(|e| FormatError::Json(e.to_string()))?;
        let name = str_field(&v, "name").ok_or_else(|| FormatError::Invalid("no name".into()))?;
        let images = match v.get("images") {
            Some(Value::Array(a)) => a.iter().map(parse_image).collect::<Result<_, _>>()?,
            _ => Vec::new(),
        };
        let steps = match v.get("steps") {
            Some(Value::Array(a)) => a.iter().map(parse_step).collect::<Result<_, _>>()?,
            _ => Vec::new(),
        };
        let files = match v.get("files") {
            Some(Value::Array(a)) => a.iter().map(parse_file).collect::<Result<_, _>>()?,
            _ => Vec::new(),
        };
        let final_queries = match v.get("final_queries") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|q| {
                    let name = str_field(q, "execute").ok_or_else(|| {
                        FormatError::Invalid("final query without execute".into())
                    })?;
                    parse_execute(q, name)
                })
                .collect::<Result<_, _>>()?,
            _ => Vec::new(),
        };
        let final_settle = match v.get("final_settle") {
            Some(Value::Bool(false)) => None,
            Some(o @ Value::Object(_)) => Some(settle_spec(o, o)),
            _ => Some(SettleSpec {
                spec: Datum::dict([("serial", Datum::Bool(true))]),
                serial: true,
                timeout: 30.0,
            }),
        };
        Ok(Scenario {
            name,
            description: str_field(&v, "description").unwrap_or_default(),
            volatile: v
                .get("volatile")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            final_settle,
            files,
            images,
            steps,
            final_queries,
            uses_scratch_dir: text.contains("{dir}"),
        })
    }
}

fn parse_file(v: &Value) -> Result<ScenarioFile, FormatError> {
    let field = |key: &str| {
        str_field(v, key).ok_or_else(|| FormatError::Invalid(format!("file without {key}")))
    };
    Ok(ScenarioFile {
        name: field("name")?,
        content: field("content")?,
    })
}

fn parse_image(v: &Value) -> Result<ImageSpec, FormatError> {
    let name =
        str_field(v, "name").ok_or_else(|| FormatError::Invalid("image without name".into()))?;
    let format = str_field(v, "format").unwrap_or_else(|| "qcow2".into());
    let backing = str_field(v, "backing").map(|b| {
        (
            b,
            str_field(v, "backing_format").unwrap_or_else(|| "qcow2".into()),
        )
    });
    let writes = match v.get("writes") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|w| {
                let pattern = match w.get("pattern") {
                    Some(Value::String(s)) => {
                        let s = s.trim_start_matches("0x");
                        u8::from_str_radix(s, 16)
                            .map_err(|_| FormatError::Invalid(format!("pattern {s}")))?
                    }
                    Some(p) => p.as_u64().unwrap_or(0) as u8,
                    None => 0,
                };
                Ok(ImageWrite {
                    pattern,
                    offset: parse_size(w.get("offset").unwrap_or(&Value::from(0)))?,
                    length: parse_size(w.get("length").unwrap_or(&Value::from(0)))?,
                    zero: w.get("zero").and_then(Value::as_bool).unwrap_or(false),
                })
            })
            .collect::<Result<_, FormatError>>()?,
        _ => Vec::new(),
    };
    // BTreeMap: sorted by key, as the harness joins them.
    let options: BTreeMap<String, String> = match v.get("options") {
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect(),
        Some(_) => return Err(FormatError::Invalid(format!("{name}: options"))),
        None => BTreeMap::new(),
    };
    Ok(ImageSpec {
        options: options.into_iter().collect(),
        format,
        size: v.get("size").map(parse_size).transpose()?,
        cluster_size: v.get("cluster_size").map(parse_size).transpose()?,
        backing,
        sector_numbers: v.get("content").and_then(Value::as_str) == Some("sector-numbers"),
        writes,
        no_inspect: v
            .get("no_inspect")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        name,
    })
}

fn settle_spec(written: &Value, opts: &Value) -> SettleSpec {
    SettleSpec {
        spec: Datum::from_json(written),
        serial: opts.get("serial").and_then(Value::as_bool).unwrap_or(false),
        timeout: timeout(opts, 30.0),
    }
}

/// The scratch directory a scenario's `"{dir}"` stands for where no
/// harness made one: the simulator's files live there.
pub const SCRATCH_DIR: &str = "/strata-scratch";

/// `"{dir}"` replaced by [`SCRATCH_DIR`] in every string (the harness's
/// `subst`), before the command is validated.
fn substitute_dir(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("{dir}", SCRATCH_DIR)),
        Value::Array(a) => Value::Array(a.into_iter().map(substitute_dir).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, substitute_dir(v))).collect())
        }
        other => other,
    }
}

/// A wait step's `"optional": true`.
fn optional(step: &Value) -> bool {
    step.get("optional")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn parse_step(v: &Value) -> Result<Step, FormatError> {
    let note = str_field(v, "note");
    let kind = if let Some(name) = str_field(v, "execute") {
        StepKind::Execute(Box::new(parse_execute(v, name)?))
    } else if let Some(w) = v.get("wait") {
        StepKind::Wait(WaitSpec {
            spec: Datum::from_json(w),
            event: str_field(w, "event"),
            job: str_field(w, "job"),
            data: match w.get("data") {
                Some(Value::Object(o)) => o
                    .iter()
                    .map(|(k, d)| (k.clone(), Datum::from_json(d)))
                    .collect(),
                _ => Vec::new(),
            },
            timeout: timeout(w, 10.0),
            optional: optional(v),
            record: record(
                v.get("record"),
                Some(Record::Keys(
                    DEFAULT_EVENT_RECORD.iter().map(|k| k.to_string()).collect(),
                )),
            )?
            .unwrap_or(Record::All),
        })
    } else if let Some(s) = v.get("settle") {
        let opts = if s.is_object() {
            s.clone()
        } else {
            Value::Object(Default::default())
        };
        StepKind::Settle(settle_spec(s, &opts))
    } else if let Some(w) = v.get("wait_status") {
        let statuses = match w.get("status") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => return Err(FormatError::Invalid("wait_status without status".into())),
        };
        StepKind::WaitStatus {
            spec: Datum::from_json(w),
            job: str_field(w, "job").unwrap_or_default(),
            statuses,
            timeout: timeout(w, 10.0),
            optional: optional(v),
        }
    } else if let Some(w) = v.get("wait_progress") {
        StepKind::WaitProgress {
            spec: Datum::from_json(w),
            job: str_field(w, "job").unwrap_or_default(),
            min: parse_size(w.get("min").unwrap_or(&Value::from(0)))?,
            timeout: timeout(w, 10.0),
            optional: optional(v),
        }
    } else if v.get("graph").is_some() {
        StepKind::Graph
    } else if let Some(s) = v.get("sleep") {
        StepKind::Sleep(s.as_f64().unwrap_or(0.0))
    } else if note.is_some() {
        StepKind::Note
    } else {
        return Err(FormatError::Invalid(format!("unknown step kind: {v}")));
    };
    Ok(Step { note, kind })
}

fn parse_execute(v: &Value, name: String) -> Result<Execute, FormatError> {
    let arguments = v.get("arguments").map(Datum::from_json);
    let args_json = substitute_dir(
        v.get("arguments")
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default())),
    );
    let checked = validate_command(&name, &QObject::from_json(&args_json));
    let validated = checked
        .as_ref()
        .map(|q| Datum::from_json(&q.to_json()))
        .unwrap_or(Datum::Dict(Vec::new()));
    let command = checked.and_then(|q| {
        Command::from_validated(&name, &q)?
            .ok_or_else(|| QmpError::generic(format!("{name} is answered by the session")))
    });
    let expect = match v.get("expect") {
        None => Expect::Success,
        Some(Value::String(s)) => match s.as_str() {
            "success" => Expect::Success,
            "error" => Expect::Error,
            "any" => Expect::Any,
            other => return Err(FormatError::Invalid(format!("expect {other:?}"))),
        },
        Some(o @ Value::Object(_)) => Expect::ErrorLike {
            desc: str_field(o, "error"),
            class: str_field(o, "error_class"),
        },
        Some(other) => return Err(FormatError::Invalid(format!("expect {other}"))),
    };
    Ok(Execute {
        name,
        arguments,
        command,
        validated,
        expect,
        record: record(v.get("record"), None)?,
        label: str_field(v, "label"),
        same_as: str_field(v, "same_as"),
    })
}

// ----- observations -------------------------------------------------------------

/// What one run of a scenario showed, in the harness's observation format
/// (the fields `compare.py` looks at; timing, versions and logs left out).
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct Observation {
    /// The scenario's name.
    pub scenario: String,
    /// One record per step.
    pub steps: Vec<StepRecord>,
    /// Every event in arrival order.
    #[serde(default)]
    pub events: Vec<EventRecord>,
    /// Per job: statuses of `JOB_STATUS_CHANGE` and `BLOCK_JOB_*` names.
    #[serde(default)]
    pub job_event_sequences: BTreeMap<String, Vec<String>>,
    /// The jobs left after the final settle, by id.
    #[serde(default)]
    pub final_jobs: Vec<JobRecord>,
    /// The final graph, normalised.
    pub graph: Option<Graph>,
    /// Per image file.
    #[serde(default)]
    pub images: BTreeMap<String, ImageRecord>,
    /// The results of the scenario's `final_queries`, when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_queries: Option<Vec<FinalQuery>>,
    /// The server's exit.
    #[serde(default)]
    pub server_exit: Option<ServerExit>,
    /// What went wrong in the harness itself.
    #[serde(default)]
    pub harness_errors: Vec<String>,
    /// The scenario's volatile paths.
    #[serde(default)]
    pub volatile: Vec<String>,
    /// Steps whose expectation failed.
    #[serde(default)]
    pub expectations_failed: Vec<usize>,
}

/// One of `final_queries`: the command and its (projected) return or error.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct FinalQuery {
    /// The command name.
    pub execute: String,
    /// The return, projected by the query's `record`.
    #[serde(rename = "return")]
    pub ret: Option<Datum>,
    /// The error, as QMP sent it.
    pub error: Option<ErrorRecord>,
}

/// How the server exited.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ServerExit {
    /// Exit code.
    pub code: Option<i64>,
    /// Whether the harness had to kill it.
    pub killed: bool,
}

/// One step's record.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step index.
    pub i: usize,
    /// The step's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Command name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execute: Option<String>,
    /// Command arguments as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Datum>,
    /// The wait spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Datum>,
    /// The settle spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle: Option<Datum>,
    /// The wait_status spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_status: Option<Datum>,
    /// The wait_progress spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_progress: Option<Datum>,
    /// Seconds slept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<Datum>,
    /// `ok`, `error` or `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The error of a failed command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorRecord>,
    /// The recorded return.
    #[serde(default, rename = "return", skip_serializing_if = "Option::is_none")]
    pub return_value: Option<Datum>,
    /// Recorded event data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Datum>,
    /// The label compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_as: Option<String>,
    /// Whether the return equalled the label's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same: Option<bool>,
    /// A job's status (wait_status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The jobs after a settle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Vec<JobRecord>>,
    /// A graph recorded mid-scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<Graph>,
    /// The expectation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Datum>,
    /// Whether it was met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_met: Option<bool>,
}

impl StepRecord {
    /// The record of `step` before it ran: its index, note and spec.
    pub fn for_step(i: usize, step: &Step) -> StepRecord {
        let mut rec = StepRecord {
            i,
            note: step.note.clone(),
            ..StepRecord::default()
        };
        match &step.kind {
            StepKind::Execute(e) => {
                rec.execute = Some(e.name.clone());
                rec.arguments = e.arguments.clone();
                rec.expect = Some(e.expect.as_datum());
            }
            StepKind::Wait(w) => rec.wait = Some(w.spec.clone()),
            StepKind::Settle(s) => rec.settle = Some(s.spec.clone()),
            StepKind::WaitStatus { spec, .. } => rec.wait_status = Some(spec.clone()),
            StepKind::WaitProgress { spec, .. } => rec.wait_progress = Some(spec.clone()),
            StepKind::Sleep(s) => rec.sleep = Some(Datum::Float(*s)),
            StepKind::Note | StepKind::Graph => {}
        }
        rec
    }
}

/// A command's error.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The error class.
    pub class: String,
    /// The description.
    pub desc: String,
}

/// An event, reduced to its name and job.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EventRecord {
    /// Event name.
    pub event: String,
    /// Job id.
    pub job: Option<String>,
}

/// A job in `query-jobs`, reduced.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// Job type.
    #[serde(rename = "type")]
    pub job_type: String,
    /// Status.
    pub status: String,
}

/// A normalised block graph (`run.py`'s `normalise_graph`).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub struct Graph {
    /// Nodes: block drivers by name, then jobs and backends.
    pub nodes: Vec<GraphNode>,
    /// Edges, sorted.
    pub edges: Vec<GraphEdge>,
}

/// A node of a normalised graph.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct GraphNode {
    /// Normalised name.
    pub name: String,
    /// `block-driver`, `block-job` or `block-backend`.
    #[serde(rename = "type")]
    pub node_type: String,
    /// Driver (block drivers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Read-only (block drivers).
    #[serde(default, rename = "read-only", skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// File name (protocol nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// An edge of a normalised graph.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct GraphEdge {
    /// Parent name.
    pub parent: String,
    /// Child role name.
    pub role: String,
    /// Child name.
    pub child: String,
    /// Permissions taken, sorted.
    pub perm: Vec<String>,
    /// Permissions shared, sorted.
    #[serde(rename = "shared-perm")]
    pub shared_perm: Vec<String>,
}

/// An image file after the run (`qemu-img info`, `map`, `convert`).
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `qcow2` / `raw`.
    pub format: String,
    /// Virtual size.
    #[serde(
        default,
        rename = "virtual-size",
        skip_serializing_if = "Option::is_none"
    )]
    pub virtual_size: Option<u64>,
    /// Backing file name in the header.
    #[serde(default, rename = "backing-filename")]
    pub backing_filename: Option<String>,
    /// Backing format in the header.
    #[serde(default, rename = "backing-filename-format")]
    pub backing_filename_format: Option<String>,
    /// The qcow2 corrupt bit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<bool>,
    /// Depth-0 data extents, merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<Vec<[u64; 2]>>,
    /// sha256 of the guest-visible content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `qemu-img info` failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_error: Option<String>,
    /// `qemu-img map` failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_error: Option<String>,
    /// `qemu-img convert` failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convert_error: Option<String>,
}

impl Observation {
    /// Parses an observation file written by the harness (or by
    /// [`Observation::to_json`]); unknown members are ignored.
    pub fn from_json(text: &str) -> Result<Observation, FormatError> {
        serde_json::from_str(text).map_err(|e| FormatError::Json(e.to_string()))
    }

    /// [`SCRATCH_DIR`] written back as `{dir}` in every string, as the
    /// harness scrubs its scratch directory out of what it records.
    pub fn scrub_scratch_dir(&self) -> Observation {
        let json = serde_json::to_string(self).expect("observations serialise");
        let scrubbed = json
            .replace(&format!("{SCRATCH_DIR}/"), "{dir}/")
            .replace(SCRATCH_DIR, "{dir}");
        serde_json::from_str(&scrubbed).expect("a scrubbed observation parses")
    }

    /// The observation as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("observations serialise")
    }
}

/// A datum as compact JSON (for diff messages).
pub fn datum_text(d: &Datum) -> String {
    d.to_json().to_string()
}

// ----- running steps on a block layer ------------------------------------------

/// An event as the harness sees it: name and data.
#[derive(Clone, PartialEq, Debug)]
pub struct EventData {
    /// The event name.
    pub name: String,
    /// Its data (`{}` when absent).
    pub data: Datum,
}

impl EventData {
    /// The job an event is about: `data.id` for `JOB_STATUS_CHANGE` and
    /// `BLOCK_JOB_PENDING`, else `data.device`, else `data.id` (`event_job`).
    pub fn job(&self) -> Option<&str> {
        let id = || self.data.get("id").and_then(Datum::as_str);
        match self.name.as_str() {
            "JOB_STATUS_CHANGE" | "BLOCK_JOB_PENDING" => id(),
            _ => self.data.get("device").and_then(Datum::as_str).or_else(id),
        }
    }
}

/// Runs an `execute` step's command through `monitor`, the one monitor a
/// run has from its first command to its last, exactly as
/// qemu-storage-daemon's dispatcher would: the return value or the error,
/// and the events the command raised.
pub fn execute<F: strata_block::Files, L: NbdListener>(
    monitor: &mut Monitor<F, L>,
    step: &Execute,
) -> (Result<Datum, ErrorRecord>, Vec<EventData>) {
    let command = match &step.command {
        Ok(c) => c.clone(),
        Err(e) => return (Err(error_record(e)), Vec::new()),
    };
    let mut sink = strata_qmp::EventSink::default();
    let result = monitor.dispatch(command, &mut sink);
    let events = monitor
        .take_command_events()
        .into_iter()
        .map(|(e, _)| qmp_event_data(e))
        .collect();
    (
        result
            .map(|v| Datum::from_json(&v))
            .map_err(|e| error_record(&e)),
        events,
    )
}

/// A QMP event in the harness's terms.
pub fn qmp_event_data(event: strata_qmp::Event) -> EventData {
    EventData {
        name: event.name,
        data: event
            .data
            .as_ref()
            .map(Datum::from_json)
            .unwrap_or(Datum::Dict(Vec::new())),
    }
}

fn error_record(e: &QmpError) -> ErrorRecord {
    ErrorRecord {
        class: e.class.as_str().to_string(),
        desc: e.desc.clone(),
    }
}

// ----- shards of an exploration ---------------------------------------------------

/// An exploration shard's partial result as its file holds it (the
/// explorer's `ShardFile` as plain data: bounds, shares and schedules as
/// their printed forms).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ShardRecord {
    /// The scenario.
    pub scenario: String,
    /// The preemption bound (`2`, `unbounded`).
    pub bound: String,
    /// The block layer's policy, by name.
    pub policy: String,
    /// Which share (`K/N`).
    pub shard: String,
    /// Seconds the share took.
    pub seconds: f64,
    /// The parts it explored.
    pub parts: Vec<PartRecord>,
}

/// One part of an exploration (the explorer's `Part`): the graph it
/// explored (`state_graph::StateGraph`).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct PartRecord {
    /// Which part (0: above the subtrees, which every shard explores).
    pub index: usize,
    /// Distinct decision states it reached.
    pub states: u64,
    /// Whether everything was explored.
    pub complete: bool,
    /// The run from the start to the first decision, with the budget the
    /// exploration starts with.
    pub origin: Option<(u64, LegRecord)>,
    /// Per decision state and choice: what the choice costs and where it
    /// leads.
    pub choices: Vec<ChoiceRecord>,
    /// The observations reached, by digest.
    pub observations: Vec<ObservationRecord>,
}

/// One choice at a decision state.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ChoiceRecord {
    /// The state's key.
    pub state: u64,
    /// The choice's index among the runnable tasks.
    pub index: usize,
    /// Preemptions it costs.
    pub cost: u64,
    /// Where it leads.
    pub leg: LegRecord,
}

/// Where a run between two decisions ends, and the structural properties
/// it broke (property, message).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct LegRecord {
    /// Where it ends.
    pub end: EndRecord,
    /// Structural findings.
    pub findings: Vec<(String, String)>,
}

/// The end of a run between two decisions.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndRecord {
    /// The next decision state's key.
    State(u64),
    /// An observation, by digest.
    Outcome(u64),
    /// A failure's message.
    Failure(String),
}

/// An observation an exploration reached.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ObservationRecord {
    /// Its digest.
    pub digest: u64,
    /// Its outcome key.
    pub key: String,
    /// The observation.
    pub observation: Observation,
}

impl ShardRecord {
    /// The file's text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("shard records serialise")
    }

    /// Parses what [`ShardRecord::to_json`] wrote.
    pub fn from_json(text: &str) -> Result<ShardRecord, FormatError> {
        serde_json::from_str(text).map_err(|e| FormatError::Json(e.to_string()))
    }
}
