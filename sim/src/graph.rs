//! The final graph as the harness records it (`run.py`'s
//! `normalise_graph`), and as DOT in the style of QEMU's
//! `scripts/render_block_graph.py`.

use crate::scenario::{Graph, GraphEdge, GraphNode};
use std::collections::{BTreeMap, BTreeSet};
use strata_block::{BlockLayer, MemFiles, XdbgNodeType};

struct RawNode {
    kind: XdbgNodeType,
    name: String,
}

struct RawEdge {
    parent: u64,
    child: u64,
    role: String,
    perm: Vec<String>,
    shared: Vec<String>,
}

fn sorted(names: Vec<&str>) -> Vec<String> {
    let mut v: Vec<String> = names.into_iter().map(str::to_string).collect();
    v.sort();
    v
}

/// The normalised graph of `layer`: explicit node names kept, auto-named
/// nodes named by their position (`parent/role`, `^role:child`,
/// `job:id/role`), backends `blk(...)`.
pub fn normalised_graph(layer: &mut BlockLayer<MemFiles>) -> Graph {
    let xdbg = layer.query_block_graph();
    let info: BTreeMap<String, (String, bool, String)> = layer
        .query_named_block_nodes()
        .into_iter()
        .map(|n| (n.node_name, (n.driver, n.read_only, n.file)))
        .collect();
    let nodes: BTreeMap<u64, RawNode> = xdbg
        .nodes
        .iter()
        .map(|n| {
            (
                n.id,
                RawNode {
                    kind: n.node_type,
                    name: n.name.clone(),
                },
            )
        })
        .collect();
    let edges: Vec<RawEdge> = xdbg
        .edges
        .iter()
        .map(|e| RawEdge {
            parent: e.parent,
            child: e.child,
            role: e.name.clone(),
            perm: sorted(e.perm.qapi_names()),
            shared: sorted(e.shared.qapi_names()),
        })
        .collect();
    let names = assign_names(&nodes, &edges, &info);
    let mut out_nodes: Vec<GraphNode> = nodes
        .iter()
        .map(|(id, n)| {
            let mut node = GraphNode {
                name: names[id].clone(),
                node_type: n.kind.as_str().to_string(),
                driver: None,
                read_only: None,
                filename: None,
            };
            if n.kind == XdbgNodeType::BlockDriver {
                if let Some((drv, ro, file)) = info.get(&n.name) {
                    node.driver = Some(drv.clone());
                    node.read_only = Some(*ro);
                    if drv == "file" {
                        node.filename = Some(file.clone());
                    }
                }
            }
            node
        })
        .collect();
    out_nodes.sort_by(|a, b| {
        (a.node_type != "block-driver", &a.name).cmp(&(b.node_type != "block-driver", &b.name))
    });
    let mut out_edges: Vec<GraphEdge> = edges
        .iter()
        .map(|e| GraphEdge {
            parent: names[&e.parent].clone(),
            role: e.role.clone(),
            child: names[&e.child].clone(),
            perm: e.perm.clone(),
            shared_perm: e.shared.clone(),
        })
        .collect();
    out_edges.sort();
    Graph {
        nodes: out_nodes,
        edges: out_edges,
    }
}

fn assign_names(
    nodes: &BTreeMap<u64, RawNode>,
    edges: &[RawEdge],
    info: &BTreeMap<String, (String, bool, String)>,
) -> BTreeMap<u64, String> {
    let is_driver = |id: &u64| nodes[id].kind == XdbgNodeType::BlockDriver;
    let mut names = BTreeMap::new();
    for (id, n) in nodes {
        match n.kind {
            XdbgNodeType::BlockDriver if !n.name.starts_with('#') => {
                names.insert(*id, n.name.clone());
            }
            XdbgNodeType::BlockJob => {
                names.insert(*id, format!("job:{}", n.name));
            }
            XdbgNodeType::BlockBackend if !n.name.is_empty() => {
                names.insert(*id, format!("blk:{}", n.name));
            }
            _ => {}
        }
    }
    let unnamed = |names: &BTreeMap<u64, String>| {
        nodes
            .keys()
            .filter(|id| !names.contains_key(id) && is_driver(id))
            .count()
    };
    let mut progress = true;
    while progress && unnamed(&names) > 0 {
        progress = false;
        // 1. below a named node: <parent>/<role>
        loop {
            let mut cand: BTreeMap<u64, String> = BTreeMap::new();
            for e in edges {
                if names.contains_key(&e.child) || !is_driver(&e.child) {
                    continue;
                }
                if let Some(p) = names.get(&e.parent).filter(|_| is_driver(&e.parent)) {
                    let nm = format!("{p}/{}", e.role);
                    offer(&mut cand, e.child, nm);
                }
            }
            if cand.is_empty() {
                break;
            }
            names.extend(cand);
            progress = true;
        }
        if unnamed(&names) == 0 {
            break;
        }
        // 2. above a named node: ^<role>:<child>
        let mut cand = BTreeMap::new();
        for e in edges {
            if names.contains_key(&e.parent) || !is_driver(&e.parent) || !is_driver(&e.child) {
                continue;
            }
            if let Some(c) = names.get(&e.child) {
                offer(&mut cand, e.parent, format!("^{}:{c}", e.role));
            }
        }
        if !cand.is_empty() {
            names.extend(cand);
            progress = true;
            continue;
        }
        // 3. used by a job: job:<id>/<role>
        let mut cand = BTreeMap::new();
        for e in edges {
            if names.contains_key(&e.child) || nodes[&e.parent].kind != XdbgNodeType::BlockJob {
                continue;
            }
            if let Some(p) = names.get(&e.parent) {
                offer(&mut cand, e.child, format!("{p}/{}", e.role));
            }
        }
        if !cand.is_empty() {
            names.extend(cand);
            progress = true;
        }
    }
    // Leftovers: by driver (stable sort keeps id order among equals).
    let drv = |id: &u64| {
        info.get(&nodes[id].name)
            .map(|i| i.0.clone())
            .unwrap_or_default()
    };
    let mut left: Vec<u64> = nodes
        .keys()
        .filter(|id| !names.contains_key(id) && is_driver(id))
        .copied()
        .collect();
    left.sort_by_key(drv);
    for (i, id) in left.iter().enumerate() {
        let d = info
            .get(&nodes[id].name)
            .map(|i| i.0.as_str())
            .unwrap_or("?");
        names.insert(*id, format!("?auto{i}:{d}"));
    }
    // Anonymous backends: blk(<root children>).
    let mut anon: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for id in nodes.keys() {
        if names.contains_key(id) {
            continue;
        }
        let mut roots: Vec<String> = edges
            .iter()
            .filter(|e| e.parent == *id)
            .map(|e| names.get(&e.child).cloned().unwrap_or_else(|| "?".into()))
            .collect();
        roots.sort();
        anon.entry(format!("blk({})", roots.join(",")))
            .or_default()
            .push(*id);
    }
    for (base, ids) in anon {
        if ids.len() == 1 {
            names.insert(ids[0], base);
            continue;
        }
        // The harness orders them by the JSON text of their sorted links
        // (`json.dumps`), which is not the order of the lists themselves:
        // `["consistent-read", "write"]` comes before `["consistent-read"]`.
        let key = |id: &u64| {
            let mut k: Vec<(String, Vec<String>, Vec<String>)> = edges
                .iter()
                .filter(|e| e.parent == *id)
                .map(|e| (e.role.clone(), e.perm.clone(), e.shared.clone()))
                .collect();
            k.sort();
            json_dumps_links(&k)
        };
        let mut ids = ids;
        ids.sort_by_key(key);
        for (i, id) in ids.iter().enumerate() {
            names.insert(*id, format!("{base}#{}", i + 1));
        }
    }
    names
}

/// `json.dumps` of a backend's sorted links (names and permission names
/// are plain ASCII words: nothing to escape).
fn json_dumps_links(links: &[(String, Vec<String>, Vec<String>)]) -> String {
    let list = |words: &[String]| {
        let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
        format!("[{}]", quoted.join(", "))
    };
    let entries: Vec<String> = links
        .iter()
        .map(|(name, perm, shared)| format!("[\"{name}\", {}, {}]", list(perm), list(shared)))
        .collect();
    format!("[{}]", entries.join(", "))
}

fn offer(cand: &mut BTreeMap<u64, String>, id: u64, name: String) {
    match cand.get(&id) {
        Some(old) if *old <= name => {}
        _ => {
            cand.insert(id, name);
        }
    }
}

/// The permission letters of `render_block_graph.py`: `w r u s` for
/// write, consistent-read, write-unchanged, resize; `_` when absent.
pub fn perm_mask(perms: &[String]) -> String {
    [
        ("write", 'w'),
        ("consistent-read", 'r'),
        ("write-unchanged", 'u'),
        ("resize", 's'),
    ]
    .iter()
    .map(|(name, c)| {
        if perms.iter().any(|p| p == name) {
            *c
        } else {
            '_'
        }
    })
    .collect()
}

/// A normalised graph as DOT: block drivers as ellipses labelled
/// `name [driver]`, jobs and backends as boxes, edges labelled with the
/// child name and `perm / shared` masks.
pub fn to_dot(graph: &Graph) -> String {
    let mut out = String::from("digraph {\n    node [shape=box]\n    rankdir=LR\n");
    let ids: BTreeMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut seen = BTreeSet::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        let (label, shape) = match n.node_type.as_str() {
            "block-driver" => (
                format!("{} [{}]", n.name, n.driver.as_deref().unwrap_or("?")),
                "ellipse",
            ),
            _ => (n.name.clone(), "box"),
        };
        seen.insert(i);
        out.push_str(&format!("    n{i} [label={label:?}, shape={shape}]\n"));
    }
    for e in &graph.edges {
        let (Some(p), Some(c)) = (ids.get(e.parent.as_str()), ids.get(e.child.as_str())) else {
            continue;
        };
        let label = format!(
            "{}\n{}\n{}",
            e.role,
            perm_mask(&e.perm),
            perm_mask(&e.shared_perm)
        );
        out.push_str(&format!("    n{p} -> n{c} [label={label:?}]\n"));
    }
    out.push_str("}\n");
    out
}
