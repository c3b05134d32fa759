//! Reports a person looks at: a run's timeline with the block graph at
//! every step (HTML, one self-contained file), an exploration's outcomes,
//! the graph at every step as `x-debug-query-block-graph` JSON, and the
//! timeline as text. They render the simulator's plain-data trace
//! (`strata_sim::Trace`); the model crates know nothing of them.

pub mod browser_test;
mod dot;
mod html;
mod text;

pub use dot::{dot_to_svg, ensure_dot, step_dot};
pub use html::{escape, page, table_html, timeline_page, Cell, Table};
pub use text::timeline as text_timeline;

use std::path::{Path, PathBuf};
use strata_sim::Trace;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Writes `trace`'s timeline page to `path`.
pub fn write_timeline(path: &Path, title: &str, subtitle: &str, trace: &Trace) -> Res<()> {
    ensure_dot()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, timeline_page(title, subtitle, trace)?)?;
    Ok(())
}

/// The graph at every position of `trace` (start, then after each step),
/// each in `x-debug-query-block-graph`'s shape:
/// `[{"step": null|N, "task": ..., "time-ns": ..., "graph": {nodes, edges}}]`.
pub fn graph_json(trace: &Trace) -> String {
    let start = serde_json::json!({
        "step": null,
        "task": "start",
        "time-ns": 0,
        "graph": strata_monitor::block_graph(&trace.initial.xdbg),
    });
    let steps = trace.steps.iter().enumerate().map(|(i, s)| {
        serde_json::json!({
            "step": i,
            "task": s.task.to_string(),
            "time-ns": s.time_ns,
            "graph": strata_monitor::block_graph(&s.state.xdbg),
        })
    });
    let all: Vec<serde_json::Value> = std::iter::once(start).chain(steps).collect();
    serde_json::to_string_pretty(&all).expect("JSON values print")
}

/// One outcome of an exploration, as its report shows it.
pub struct OutcomeReport {
    /// How many explored schedules ended there.
    pub schedules: u64,
    /// How it compares with QEMU's recording.
    pub vs_qemu: String,
    /// Whether that comparison found a difference.
    pub differs_from_qemu: bool,
    /// The fields that differ from the canonical outcome (outcome 1).
    pub differences: Vec<String>,
    /// The command that replays its smallest schedule.
    pub replay: String,
    /// The trace of its smallest schedule.
    pub trace: Trace,
}

/// Writes an exploration's report into `dir`: `index.html` (the outcome
/// list with each outcome's final graph) and `outcome-N.html` (the
/// timeline of its smallest schedule). Returns the index's path.
pub fn write_exploration(
    dir: &Path,
    title: &str,
    subtitle: &str,
    outcomes: &[OutcomeReport],
) -> Res<PathBuf> {
    ensure_dot()?;
    std::fs::create_dir_all(dir)?;
    let mut table = Table {
        columns: [
            "outcome",
            "schedules",
            "QEMU",
            "differs from outcome 1 in",
            "timeline",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    let mut graphs = String::new();
    for (i, o) in outcomes.iter().enumerate() {
        let n = i + 1;
        let file = format!("outcome-{n}.html");
        let sub = format!("outcome {n} of {title}: {}", escape(&o.replay));
        write_timeline(
            &dir.join(&file),
            &format!("{title}: outcome {n}"),
            &sub,
            &o.trace,
        )?;
        let differences = if o.differences.is_empty() && i == 0 {
            "(the canonical outcome)".to_string()
        } else {
            o.differences.join("\n")
        };
        table.rows.push(vec![
            Cell {
                text: format!("outcome {n}"),
                link: Some(format!("#outcome-{n}")),
                flagged: false,
            },
            Cell::text(o.schedules.to_string()),
            Cell {
                text: o.vs_qemu.clone(),
                link: None,
                flagged: o.differs_from_qemu,
            },
            Cell::text(differences),
            Cell {
                text: o.replay.clone(),
                link: Some(file.clone()),
                flagged: false,
            },
        ]);
        let last = o.trace.steps.last().map_or(&o.trace.initial, |s| &s.state);
        let svg = dot_to_svg(&step_dot(None, last))?;
        graphs += &format!(
            "<section class=\"outcome\" id=\"outcome-{n}\"><h2>outcome {n}: final graph</h2><p><a href=\"{file}\">timeline of its smallest schedule</a></p>{svg}</section>\n"
        );
    }
    let index = dir.join("index.html");
    std::fs::write(
        &index,
        page(title, subtitle, &(table_html(&table) + &graphs)),
    )?;
    Ok(index)
}
