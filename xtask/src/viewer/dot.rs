//! A step's block graph as DOT in the visual language of QEMU's
//! `scripts/render_block_graph.py` (nodes `name [driver]` as ellipses, jobs
//! and BlockBackends as boxes, edges labelled with the child name and the
//! `perm` / `shared-perm` masks), plus what the script cannot show: frozen
//! links, implicit nodes, image headers and the changes since the previous
//! step. Laid out by graphviz `dot`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use strata_sim::{perm_mask, GraphLink, GraphVertex, StepState, VertexKind};

/// How a vertex or link relates to the previous step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Same,
    Added,
    Removed,
    Changed,
}

impl Mark {
    /// The SVG class the browser test and the page's CSS look for.
    fn class(self) -> &'static str {
        match self {
            Mark::Same => "same",
            Mark::Added => "added",
            Mark::Removed => "removed",
            Mark::Changed => "changed",
        }
    }

    /// Graphviz attributes that draw the mark.
    fn style(self) -> &'static str {
        match self {
            Mark::Same => "",
            Mark::Added => ", color=\"#1a9c3a\", fontcolor=\"#1a9c3a\", penwidth=3",
            Mark::Removed => ", color=\"#d02020\", fontcolor=\"#d02020\", style=dashed",
            Mark::Changed => ", color=\"#e07000\", fontcolor=\"#e07000\", penwidth=3",
        }
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn vertex_label(v: &GraphVertex) -> String {
    match v.kind {
        VertexKind::Node => {
            let mut label = format!("{} [{}]", v.name, v.driver.as_deref().unwrap_or("?"));
            if let Some(file) = &v.filename {
                label += &format!("\n{}", basename(file));
            }
            if let Some(backing) = &v.backing_file {
                label += &format!("\nheader: backing {}", basename(backing));
            }
            if v.read_only {
                label += "\nread-only";
            }
            if v.implicit {
                label += "\n(implicit)";
            }
            label
        }
        VertexKind::Job => format!(
            "{} job ({})",
            v.driver.as_deref().unwrap_or("block"),
            v.name
        ),
        VertexKind::Backend if v.name.is_empty() => "unnamed blk".to_string(),
        VertexKind::Backend => v.name.clone(),
    }
}

fn vertex_line(v: &GraphVertex, mark: Mark) -> String {
    let shape = match v.kind {
        VertexKind::Node => "ellipse",
        VertexKind::Job | VertexKind::Backend => "box",
    };
    // An implicit node is dashed unless a change already styles it.
    let implicit = if v.implicit && mark == Mark::Same {
        ", style=dashed"
    } else {
        ""
    };
    format!(
        "    {:?} [label={:?}, shape={shape}, class=\"{} {}\"{}{implicit}]\n",
        v.key,
        vertex_label(v),
        kind_class(v.kind),
        mark.class(),
        mark.style()
    )
}

fn kind_class(kind: VertexKind) -> &'static str {
    match kind {
        VertexKind::Node => "bds",
        VertexKind::Job => "job",
        VertexKind::Backend => "blk",
    }
}

fn link_line(l: &GraphLink, mark: Mark) -> String {
    let mut label = format!(
        "{}\\l{}\\l{}\\l",
        l.role,
        perm_mask(&l.perm),
        perm_mask(&l.shared)
    );
    let mut frozen = String::new();
    if l.frozen {
        label += "frozen\\l";
        if mark == Mark::Same {
            frozen = ", color=\"#1f5fbf\", fontcolor=\"#1f5fbf\", penwidth=2.5".into();
        }
    }
    format!(
        "    {:?} -> {:?} [label=\"{}\", class=\"{}{}\"{}{frozen}]\n",
        l.parent,
        l.child,
        label.replace('"', "\\\""),
        mark.class(),
        if l.frozen { " frozen" } else { "" },
        mark.style()
    )
}

const LEGEND: &str = "    legend [shape=none, class=\"legend\", fontsize=10, label=\"permission symbols:\\l  w - Write\\l  r - consistent-Read\\l  u - write - Unchanged\\l  s - reSize\\ledge label scheme:\\l  <child type>\\l  <perm>\\l  <shared_perm>\\lgreen: added, red dashed: removed,\\lorange: permissions changed,\\lblue: frozen, dashed node: implicit\\l\"]\n";

/// The graph of `now` as DOT, marking what changed since `before` (the
/// removed vertices and links are drawn dashed in red).
pub fn step_dot(before: Option<&StepState>, now: &StepState) -> String {
    let mut out = String::from("digraph {\n    rankdir=TB\n    node [fontname=\"Helvetica\", fontsize=12]\n    edge [fontname=\"Helvetica\", fontsize=10]\n");
    out.push_str(LEGEND);
    let old_vertices: BTreeMap<&str, &GraphVertex> = before
        .map(|b| b.vertices.iter().map(|v| (v.key.as_str(), v)).collect())
        .unwrap_or_default();
    let new_keys: BTreeSet<&str> = now.vertices.iter().map(|v| v.key.as_str()).collect();
    for v in &now.vertices {
        let mark = match old_vertices.get(v.key.as_str()) {
            None if before.is_some() => Mark::Added,
            Some(o) if (o.read_only, &o.backing_file) != (v.read_only, &v.backing_file) => {
                Mark::Changed
            }
            _ => Mark::Same,
        };
        out.push_str(&vertex_line(v, mark));
    }
    for v in old_vertices
        .values()
        .filter(|v| !new_keys.contains(v.key.as_str()))
    {
        out.push_str(&vertex_line(v, Mark::Removed));
    }
    let old_links: BTreeMap<(&str, &str, &str), &GraphLink> = before
        .map(|b| b.edges.iter().map(|l| (identity(l), l)).collect())
        .unwrap_or_default();
    let new_links: BTreeSet<(&str, &str, &str)> = now.edges.iter().map(identity).collect();
    for l in &now.edges {
        let mark = match old_links.get(&identity(l)) {
            None if before.is_some() => Mark::Added,
            Some(o) if (&o.perm, &o.shared, o.frozen) != (&l.perm, &l.shared, l.frozen) => {
                Mark::Changed
            }
            _ => Mark::Same,
        };
        out.push_str(&link_line(l, mark));
    }
    for (_, l) in old_links.iter().filter(|(id, _)| !new_links.contains(*id)) {
        out.push_str(&link_line(l, Mark::Removed));
    }
    out.push_str("}\n");
    out
}

fn identity(l: &GraphLink) -> (&str, &str, &str) {
    (&l.parent, &l.role, &l.child)
}

/// Lays out DOT graphs with graphviz, each distinct graph once.
#[derive(Default)]
pub struct SvgCache {
    by_dot: BTreeMap<String, usize>,
    /// The distinct SVGs, in the order first asked for.
    pub svgs: Vec<String>,
}

impl SvgCache {
    /// The index of `dot`'s SVG in [`SvgCache::svgs`].
    pub fn svg(&mut self, dot: &str) -> Result<usize, Box<dyn std::error::Error>> {
        if let Some(&i) = self.by_dot.get(dot) {
            return Ok(i);
        }
        let svg = dot_to_svg(dot)?;
        self.svgs.push(svg);
        self.by_dot.insert(dot.to_string(), self.svgs.len() - 1);
        Ok(self.svgs.len() - 1)
    }
}

/// graphviz's `dot`, installed with apt-get when missing.
pub fn ensure_dot() -> Result<(), Box<dyn std::error::Error>> {
    let have = std::process::Command::new("dot").arg("-V").output().is_ok();
    if have {
        return Ok(());
    }
    eprintln!("graphviz is missing: apt-get install -y graphviz");
    let ok = std::process::Command::new("apt-get")
        .args(["install", "-y", "graphviz"])
        .status()?
        .success();
    if ok {
        Ok(())
    } else {
        Err("apt-get install graphviz failed".into())
    }
}

/// `dot -Tsvg`, without the XML prolog (the SVG goes inline into HTML).
pub fn dot_to_svg(dot: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("graphviz dot: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("dot: no stdin")?
        .write_all(dot.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!("dot failed on:\n{dot}").into());
    }
    let text = String::from_utf8(out.stdout)?;
    let start = text.find("<svg").ok_or("dot printed no <svg>")?;
    Ok(text[start..].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vertex(key: &str, driver: &str) -> GraphVertex {
        GraphVertex {
            key: key.into(),
            kind: VertexKind::Node,
            name: key.into(),
            driver: Some(driver.into()),
            filename: None,
            implicit: false,
            read_only: false,
            backing_file: None,
        }
    }

    fn link(parent: &str, child: &str, perm: &[&str], frozen: bool) -> GraphLink {
        GraphLink {
            parent: parent.into(),
            role: "backing".into(),
            child: child.into(),
            perm: perm.iter().map(|p| p.to_string()).collect(),
            shared: vec![],
            frozen,
        }
    }

    fn state(vertices: Vec<GraphVertex>, edges: Vec<GraphLink>) -> StepState {
        StepState {
            vertices,
            edges,
            ..StepState::default()
        }
    }

    fn line_of<'a>(dot: &'a str, start: &str) -> &'a str {
        dot.lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no line {start} in\n{dot}"))
    }

    #[test]
    fn changes_since_the_previous_step_are_marked() {
        let before = state(
            vec![
                vertex("top", "qcow2"),
                vertex("mid", "qcow2"),
                vertex("base", "raw"),
            ],
            vec![
                link("top", "mid", &[], false),
                link("mid", "base", &[], false),
            ],
        );
        let now = state(
            vec![
                vertex("top", "qcow2"),
                vertex("base", "raw"),
                vertex("cor", "copy-on-read"),
            ],
            vec![
                link("top", "base", &[], false),
                link("cor", "top", &["consistent-read"], true),
            ],
        );
        let dot = step_dot(Some(&before), &now);
        assert!(line_of(&dot, "\"cor\" [").contains("added"), "{dot}");
        assert!(line_of(&dot, "\"cor\" [").contains("cor [copy-on-read]"));
        assert!(line_of(&dot, "\"mid\" [").contains("removed"), "{dot}");
        assert!(line_of(&dot, "\"top\" [").contains("same"), "{dot}");
        assert!(line_of(&dot, "\"top\" -> \"mid\"").contains("removed"));
        let frozen = line_of(&dot, "\"cor\" -> \"top\"");
        assert!(
            frozen.contains("added frozen") && frozen.contains("_r__"),
            "{frozen}"
        );
        let first = step_dot(None, &now);
        let marks = first.lines().filter(|l| !l.contains("legend"));
        assert!(marks.clone().all(|l| !l.contains("added")), "{first}");
        assert!(marks.clone().any(|l| l.contains("same")), "{first}");
    }
}
