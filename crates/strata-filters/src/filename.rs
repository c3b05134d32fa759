//! `bdrv_refresh_filename`: a node's `filename`, `exact_filename` and
//! `full_open_options`, which decide the strings written into image headers.

use crate::driver::Driver;
use strata_graph::{EdgeId, Graph, NodeId, OptValue, Options};
use strata_perm::{BlockGraph, Result};
use strata_qmp::{qdict_bucket, to_qemu_json, QDict, QObject};

/// The longest filename QEMU keeps (`PATH_MAX`); longer `json:` names are
/// cut and end in `...`.
const PATH_MAX: usize = 4096;

/// What the filename logic needs from format drivers: the backing file
/// string the image header named when the node was opened (after an
/// implicit backing open, the backing node's filename): `auto_backing_file`.
pub trait BackingFileInfo {
    /// `bs->auto_backing_file`, empty if none.
    fn auto_backing_file(&self, node: NodeId) -> String;
}

/// Refreshes `node` and, first, every node below it (`bdrv_refresh_filename`).
pub fn refresh_filename(
    bg: &mut BlockGraph,
    info: &dyn BackingFileInfo,
    node: NodeId,
) -> Result<()> {
    for edge in bg.graph().node(node)?.children().to_vec() {
        let child = bg.graph().edge(edge)?.child();
        refresh_filename(bg, info, child)?;
    }
    let names = compute(bg.graph(), info, node)?;
    let n = bg.node_mut(node)?;
    n.exact_filename = names.exact_filename;
    n.filename = names.filename;
    n.full_open_options = names.full_open_options;
    Ok(())
}

struct Names {
    exact_filename: String,
    filename: String,
    full_open_options: Options,
}

fn compute(graph: &Graph, info: &dyn BackingFileInfo, id: NodeId) -> Result<Names> {
    let node = graph.node(id)?;
    if node.implicit {
        if let Some(&edge) = node.children().first() {
            let child = graph.node(graph.edge(edge)?.child())?;
            return Ok(Names {
                exact_filename: child.exact_filename.clone(),
                filename: child.filename.clone(),
                full_open_options: child.full_open_options.clone(),
            });
        }
    }
    let driver = Driver::from_name(node.driver());
    let backing_overridden = backing_overridden(graph, info, id)?;
    let (mut opts, strong) = strong_options(&node.options, &node.options_path, driver);
    let null_exact_filename = |driver: Driver| {
        // null_refresh_filename: "null-co://" unless an option other than
        // driver, filename or latency-ns is in the full open options.
        if strong {
            String::new()
        } else {
            format!("{}://", driver.name())
        }
    };
    let generate_json = strong || backing_overridden;
    for &edge in node.children() {
        if Some(edge) == node.backing() && !backing_overridden && !node.traits().is_filter {
            continue;
        }
        let e = graph.edge(edge)?;
        opts.put(
            e.name(),
            OptValue::Dict(graph.node(e.child())?.full_open_options.clone()),
        );
    }
    if backing_overridden && node.backing().is_none() {
        opts.put("backing", OptValue::Null);
    }
    let exact_filename = match driver {
        Some(Driver::File) => node
            .options
            .get_str("filename")
            .unwrap_or_default()
            .to_string(),
        Some(Driver::CommitTop | Driver::MirrorTop) => {
            child_field(graph, node.backing(), |n| n.filename.clone())?
        }
        Some(null @ (Driver::NullCo | Driver::NullAio)) => null_exact_filename(null),
        Some(Driver::Blkdebug) => {
            blkdebug_exact_filename(graph, node.file().or(graph.primary_child(id)), &opts)?
        }
        _ => primary_exact_filename(graph, id, generate_json)?,
    };
    let filename = if exact_filename.is_empty() {
        json_filename(&opts)
    } else {
        exact_filename.clone()
    };
    Ok(Names {
        exact_filename,
        filename,
        full_open_options: opts,
    })
}

/// `bdrv_backing_overridden`: the backing node is not what the header's
/// string opened (or the header's backing was suppressed). It compares with
/// the backing node's filename as last refreshed, as QEMU does.
pub fn backing_overridden(graph: &Graph, info: &dyn BackingFileInfo, id: NodeId) -> Result<bool> {
    let node = graph.node(id)?;
    if node.traits().is_filter || !node.traits().supports_backing {
        return Ok(false);
    }
    let auto = info.auto_backing_file(id);
    Ok(match node.backing() {
        Some(edge) => auto != graph.node(graph.edge(edge)?.child())?.filename,
        None => !auto.is_empty(),
    })
}

/// `append_strong_runtime_options`: `driver`, `filename` and the driver's
/// strong options present in the node's options; whether any strong option
/// other than `driver`/`filename` was present.
fn strong_options(
    options: &Options,
    options_path: &[String],
    driver: Option<Driver>,
) -> (Options, bool) {
    let mut opts = Options::new();
    let mut found_any = false;
    let keys = ["driver", "filename"].into_iter().chain(
        driver
            .map_or(&[][..], |d| d.strong_runtime_opts())
            .iter()
            .copied(),
    );
    for key in keys {
        let mut given = false;
        if let Some(prefix) = key.strip_suffix('.') {
            // QEMU copies them from the node's flattened options in QDict
            // order, which decides their order among keys of one bucket.
            let mut flat = Options::new();
            for (k, v) in options.iter() {
                if k == prefix || k.starts_with(key) {
                    put_flattened(&mut flat, k, v);
                }
            }
            for (k, v) in order_after_copies(&flat, options_path) {
                opts.put(k, v.clone());
                given = true;
            }
        } else if let Some(v) = options.get(key) {
            opts.put(key, v.clone());
            given = true;
        }
        if given && key != "driver" && key != "filename" {
            found_any = true;
        }
    }
    if opts.get("driver").is_none() {
        if let Some(d) = driver {
            opts.put("driver", OptValue::Str(d.name().to_string()));
        }
    }
    (opts, found_any)
}

/// `qdict_flatten`: QEMU keeps a node's options flat (`inject-error.0.event`),
/// so a list or dictionary option reaches the `json:` name as dotted keys.
fn put_flattened(opts: &mut Options, key: &str, value: &OptValue) {
    match value {
        OptValue::List(items) => {
            for (i, item) in items.iter().enumerate() {
                put_flattened(opts, &format!("{key}.{i}"), item);
            }
        }
        OptValue::Dict(dict) => {
            for (k, v) in qdict_order(dict) {
                put_flattened(opts, &format!("{key}.{k}"), v);
            }
        }
        scalar => opts.put(key, scalar.clone()),
    }
}

/// The generic rule: a non-filter whose primary child is a protocol node
/// with an exact filename, and that has no strong options or overridden
/// backing, is named after that file.
fn primary_exact_filename(graph: &Graph, id: NodeId, generate_json: bool) -> Result<String> {
    let node = graph.node(id)?;
    let Some(edge) = graph.primary_child(id) else {
        return Ok(String::new());
    };
    let child = graph.node(graph.edge(edge)?.child())?;
    let usable = !child.exact_filename.is_empty()
        && child.traits().is_protocol
        && !node.traits().is_filter
        && !generate_json;
    Ok(if usable {
        child.exact_filename.clone()
    } else {
        String::new()
    })
}

/// `blkdebug_refresh_filename`: `blkdebug:<config>:<child>` when only
/// `config`/`image`/`x-image`/`driver` are set.
fn blkdebug_exact_filename(graph: &Graph, image: Option<EdgeId>, opts: &Options) -> Result<String> {
    let child_exact = child_field(graph, image, |n| n.exact_filename.clone())?;
    let plain = opts
        .iter()
        .all(|(k, _)| matches!(k, "config" | "image" | "x-image" | "driver"));
    if child_exact.is_empty() || !plain {
        return Ok(String::new());
    }
    Ok(format!(
        "blkdebug:{}:{}",
        opts.get_str("config").unwrap_or_default(),
        child_exact
    ))
}

fn child_field(
    graph: &Graph,
    edge: Option<EdgeId>,
    field: impl Fn(&strata_graph::Node) -> String,
) -> Result<String> {
    match edge {
        Some(e) => Ok(field(graph.node(graph.edge(e)?.child())?)),
        None => Ok(String::new()),
    }
}

/// `json:{...}`: the options as `qobject_to_json` prints the QDict, cut at
/// `PATH_MAX` like QEMU's `bdrv_refresh_filename`.
fn json_filename(opts: &Options) -> String {
    let qdict = QObject::Dict(qdict(opts));
    let mut name = format!("json:{}", to_qemu_json(&qdict, false));
    if name.len() >= PATH_MAX {
        let mut cut = PATH_MAX - 4;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name.push_str("...");
    }
    name
}

/// The options as the QDict they stand for (insertion order kept: it
/// decides QEMU's order among keys of one hash bucket).
fn qdict(opts: &Options) -> QDict {
    let mut dict = QDict::new();
    for (key, value) in opts.iter() {
        dict.insert(key, qobject(value));
    }
    dict
}

fn qobject(value: &OptValue) -> QObject {
    match value {
        OptValue::Str(s) => QObject::Str(s.clone()),
        OptValue::Int(n) => QObject::Int(*n),
        OptValue::Bool(b) => QObject::Bool(*b),
        OptValue::Null => QObject::Null,
        OptValue::Dict(d) => QObject::Dict(qdict(d)),
        OptValue::List(items) => QObject::List(items.iter().map(qobject).collect()),
    }
}

/// The options in the order QEMU's `QDict` iterates them: by hash bucket,
/// newest first within a bucket (strata-qmp's one `qdict_bucket`).
fn qdict_order(opts: &Options) -> Vec<(&str, &OptValue)> {
    iterate_as_qdict(opts.iter().collect(), "")
}

/// The order of a node's flattened options as `append_strong_runtime_options`
/// copies them. Each nesting level above the node copies the dictionary
/// twice with the keys still prefixed (`qdict_clone_shallow`, then
/// `qdict_extract_subqdict` of the child's keys), each copy inserting in
/// the order it iterates; the node's own dictionary is iterated once more.
fn order_after_copies<'a>(flat: &'a Options, path: &[String]) -> Vec<(&'a str, &'a OptValue)> {
    let mut order: Vec<(&str, &OptValue)> = flat.iter().collect();
    for level in 0..path.len() {
        let prefix = format!("{}.", path[level..].join("."));
        for _copy in 0..2 {
            order = iterate_as_qdict(order, &prefix);
        }
    }
    iterate_as_qdict(order, "")
}

/// A QDict's iteration order over entries inserted in `inserted` order,
/// their keys prefixed by `prefix` in it: by hash bucket, and within one
/// bucket the last inserted first (`QLIST_INSERT_HEAD`).
fn iterate_as_qdict<'a>(
    inserted: Vec<(&'a str, &'a OptValue)>,
    prefix: &str,
) -> Vec<(&'a str, &'a OptValue)> {
    let mut entries: Vec<(usize, (&str, &OptValue))> = inserted.into_iter().enumerate().collect();
    entries.sort_by_key(|(index, (key, _))| {
        (
            qdict_bucket(&format!("{prefix}{key}")),
            std::cmp::Reverse(*index),
        )
    });
    entries.into_iter().map(|(_, entry)| entry).collect()
}
