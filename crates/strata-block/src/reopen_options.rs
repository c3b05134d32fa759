//! `bdrv_reopen_prepare`'s last check: the options a reopen hands a node
//! that nothing in the reopen consumes (the block layer's runtime options,
//! the `backing` and `file` references, the options passed down to the
//! children that inherit from the node, the driver's own reopenable
//! options) must keep the values the node has, or QEMU refuses with
//! `Cannot change the option 'KEY'` for the first such key in its `QDict`'s
//! order. So a child opened by reference cannot be given inline
//! (`file.driver`), a child cannot be given where the node has none, and a
//! child opened inline cannot change its own options (`filename`).

use crate::error::{Error, Result};
use strata_graph::{Graph, NodeId, OptValue, Options};
use strata_qmp::qdict_bucket;

/// The block layer's runtime options `bdrv_reopen_prepare` absorbs
/// (`bdrv_runtime_opts`), besides `node-name` and `driver`, which it puts
/// back and so compares.
const ABSORBED: [&str; 7] = [
    "read-only",
    "auto-read-only",
    "detect-zeroes",
    "discard",
    "force-share",
    "cache.direct",
    "cache.no-flush",
];

/// The first option of `given` (the options a reopen hands `node`) that
/// the reopen does not consume and that differs from the node's own.
pub(crate) fn refuse_changed_options(graph: &Graph, node: NodeId, given: &Options) -> Result<()> {
    let n = graph.node(node)?;
    let old = flattened(&n.options);
    let extracted = inherited_child_prefixes(graph, node, given)?;
    let mut remaining: Vec<(String, OptValue)> = flattened(given)
        .into_iter()
        .filter(|(key, _)| !ABSORBED.contains(&key.as_str()))
        .filter(|(key, _)| !matches!(key.as_str(), "backing" | "file"))
        .filter(|(key, _)| !extracted.iter().any(|prefix| key.starts_with(prefix)))
        .filter(|(key, _)| !handled_by_driver(n.driver(), key))
        .collect();
    // `node-name` and `driver` are absorbed, then put back: the newest
    // entries of their buckets.
    remaining.sort_by_key(|(key, _)| matches!(key.as_str(), "node-name" | "driver"));
    let old_value = |key: &str| match key {
        "driver" => Some(OptValue::Str(n.driver().to_string())),
        _ => old.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
    };
    let changed = remaining
        .iter()
        .enumerate()
        .filter(|(_, (key, value))| {
            !names_current_child(graph, node, key, value) && old_value(key).as_ref() != Some(value)
        })
        .min_by_key(|(index, (key, _))| (qdict_bucket(key), std::cmp::Reverse(*index)));
    match changed {
        Some((_, (key, _))) => Err(Error::generic(format!("Cannot change the option '{key}'"))),
        None => Ok(()),
    }
}

/// `bdrv_reopen_queue_child` passes `CHILD.*` down to each child that
/// inherits from the node, unless the options name that child by a value
/// of its own (a reference or `null`).
fn inherited_child_prefixes(graph: &Graph, node: NodeId, given: &Options) -> Result<Vec<String>> {
    let mut prefixes = Vec::new();
    for &edge in graph.node(node)?.children() {
        let link = graph.edge(edge)?;
        let inherits = graph.node(link.child())?.inheritance.inherits_from == Some(node);
        let named_by_value = given
            .get(link.name())
            .is_some_and(|v| !matches!(v, OptValue::Dict(_)));
        if inherits && !named_by_value {
            prefixes.push(format!("{}.", link.name()));
        }
    }
    Ok(prefixes)
}

/// A child reference naming the node's current child of that name passes
/// (`child_name=node_name`).
fn names_current_child(graph: &Graph, node: NodeId, key: &str, value: &OptValue) -> bool {
    let OptValue::Str(name) = value else {
        return false;
    };
    graph.node(node).is_ok_and(|n| {
        n.children().iter().any(|&edge| {
            graph
                .edge(edge)
                .is_ok_and(|link| link.name() == key && graph.name(link.child()) == name)
        })
    })
}

/// The options a driver's `bdrv_reopen_prepare` takes out of the
/// dictionary (it may change them): qcow2's runtime options, raw's window,
/// throttle's group, the file driver's cache-dropping switches. Other
/// drivers' options stay and must not change.
fn handled_by_driver(driver: &str, key: &str) -> bool {
    match driver {
        "qcow2" => {
            matches!(
                key,
                "lazy-refcounts"
                    | "pass-discard-request"
                    | "pass-discard-snapshot"
                    | "pass-discard-other"
                    | "discard-no-unref"
                    | "cache-size"
                    | "l2-cache-size"
                    | "l2-cache-entry-size"
                    | "refcount-cache-size"
                    | "cache-clean-interval"
            ) || key.starts_with("overlap-check")
                || key.starts_with("encrypt.")
        }
        "raw" => matches!(key, "offset" | "size"),
        "throttle" => key == "throttle-group",
        "file" => matches!(key, "drop-cache" | "x-check-cache-dropped"),
        _ => false,
    }
}

/// `qdict_flatten`: nested dictionaries and lists as dotted keys, in
/// insertion order.
fn flattened(options: &Options) -> Vec<(String, OptValue)> {
    let mut flat = Vec::new();
    for (key, value) in options.iter() {
        flatten_into(&mut flat, key.to_string(), value);
    }
    flat
}

fn flatten_into(flat: &mut Vec<(String, OptValue)>, key: String, value: &OptValue) {
    match value {
        OptValue::Dict(dict) => {
            for (k, v) in dict.iter() {
                flatten_into(flat, format!("{key}.{k}"), v);
            }
        }
        OptValue::List(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten_into(flat, format!("{key}.{i}"), item);
            }
        }
        scalar => flat.push((key, scalar.clone())),
    }
}
