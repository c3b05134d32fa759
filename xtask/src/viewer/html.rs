//! Self-contained HTML pages: everything (CSS, SVG, script) inline, no
//! network needed to view them.

use super::dot::{step_dot, SvgCache};
use super::text::{details, headline, seconds};
use strata_sim::Trace;

/// Text with `& < > "` escaped for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = r#"
body { font-family: Helvetica, Arial, sans-serif; margin: 0; color: #222; }
header { padding: 8px 16px; background: #2b3a4a; color: #fff; }
header h1 { font-size: 18px; margin: 0 0 4px 0; }
header code { color: #cde; }
main { display: flex; height: calc(100vh - 64px); }
#timeline { width: 42%; overflow-y: auto; border-right: 1px solid #ccc; font-size: 12px; }
#timeline ol { list-style: none; margin: 0; padding: 0; }
#timeline li.step { padding: 3px 8px; border-bottom: 1px solid #eee; cursor: pointer; }
#timeline li.step.current { background: #fff3c4; }
#timeline li.step.changed-graph .n { font-weight: bold; color: #1a5fb4; }
#timeline .n { display: inline-block; width: 3.5em; color: #888; }
#timeline .t { color: #888; margin-right: 6px; }
#timeline .task { font-weight: bold; margin-right: 6px; }
#timeline ul.details { margin: 2px 0 0 4.5em; padding: 0; list-style: none; color: #555; }
#timeline ul.details li.event { color: #7a3e9d; }
#view { flex: 1; display: flex; flex-direction: column; padding: 8px 16px; overflow: auto; }
#controls { display: flex; align-items: center; gap: 12px; }
#slider { flex: 1; }
#caption { font-size: 13px; margin: 6px 0; min-height: 2.6em; }
#graph svg { max-width: 100%; max-height: calc(100vh - 150px); width: auto; height: auto; }
table.report { border-collapse: collapse; margin: 12px 16px; font-size: 13px; }
table.report th, table.report td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }
table.report td.flagged { background: #fde2e2; }
section.outcome { margin: 12px 16px; border-top: 1px solid #ccc; }
section.outcome svg { max-width: 100%; height: auto; }
"#;

const SCRIPT: &str = r#"
(function () {
  const slider = document.getElementById('slider');
  const items = Array.from(document.querySelectorAll('#timeline li.step'));
  const graph = document.getElementById('graph');
  const caption = document.getElementById('caption');
  function show(i) {
    i = Math.max(0, Math.min(items.length - 1, i));
    slider.value = String(i);
    const item = items[i];
    const template = document.getElementById('svg-' + item.dataset.svg);
    graph.replaceChildren(template.content.cloneNode(true));
    graph.dataset.step = String(i);
    items.forEach(function (li) { li.classList.remove('current'); });
    item.classList.add('current');
    item.scrollIntoView({ block: 'nearest' });
    caption.textContent = item.querySelector('.summary').textContent;
  }
  slider.addEventListener('input', function () { show(Number(slider.value)); });
  items.forEach(function (li, i) { li.addEventListener('click', function () { show(i); }); });
  document.addEventListener('keydown', function (e) {
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
    if (step === undefined || e.target === slider) return;
    e.preventDefault();
    show(Number(slider.value) + step);
  });
  // `#step=N` moves the slider as a user would: it sets the value and
  // fires the slider's input handler (the browser test opens pages so).
  function fromHash() {
    const m = /step=(\d+)/.exec(location.hash);
    slider.value = m ? m[1] : '0';
    slider.dispatchEvent(new Event('input'));
  }
  window.addEventListener('hashchange', fromHash);
  fromHash();
})();
"#;

/// A whole page around `body`.
pub fn page(title: &str, subtitle: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head>\n<body><header><h1>{t}</h1><div>{subtitle}</div></header>\n{body}\n</body></html>\n",
        t = escape(title)
    )
}

/// The timeline page of a run: the timeline (start, then every step) on
/// the left; the slider, arrow keys or a click choose a position, whose
/// graph shows on the right with the changes since the previous one.
pub fn timeline_page(
    title: &str,
    subtitle: &str,
    trace: &Trace,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut svgs = SvgCache::default();
    let mut items = String::new();
    let start = svgs.svg(&step_dot(None, &trace.initial))?;
    items += &format!(
        "<li class=\"step\" data-svg=\"{start}\"><span class=\"summary\"><span class=\"n\">start</span> <span class=\"t\">{}</span> <span class=\"what\">the scenario's images, nothing opened yet</span></span></li>\n",
        seconds(0)
    );
    let mut before = &trace.initial;
    for (i, step) in trace.steps.iter().enumerate() {
        let svg = svgs.svg(&step_dot(Some(before), &step.state))?;
        let graph_changed =
            step.state.vertices != before.vertices || step.state.edges != before.edges;
        let lines: String = details(step)
            .iter()
            .map(|line| {
                let class = if line.starts_with("event ") {
                    "event"
                } else {
                    "change"
                };
                format!("<li class=\"{class}\">{}</li>", escape(line))
            })
            .collect();
        items += &format!(
            "<li class=\"step{}\" data-svg=\"{svg}\"><span class=\"summary\"><span class=\"n\">{i}</span> <span class=\"t\">{}</span> <span class=\"task\">{}</span> <span class=\"what\">{}</span></span><ul class=\"details\">{lines}</ul></li>\n",
            if graph_changed { " changed-graph" } else { "" },
            seconds(step.time_ns),
            escape(&step.task.to_string()),
            escape(&headline(step)),
        );
        before = &step.state;
    }
    let templates: String = svgs
        .svgs
        .iter()
        .enumerate()
        .map(|(i, svg)| format!("<template id=\"svg-{i}\">{svg}</template>\n"))
        .collect();
    let body = format!(
        "<main><div id=\"timeline\"><ol>\n{items}</ol></div>\n<div id=\"view\"><div id=\"controls\"><input id=\"slider\" type=\"range\" min=\"0\" max=\"{}\" value=\"0\"><span>&larr; &rarr; keys move one step</span></div><div id=\"caption\"></div><div id=\"graph\"></div></div></main>\n{templates}<script>{SCRIPT}</script>",
        trace.steps.len()
    );
    Ok(page(title, subtitle, &body))
}

/// A table of plain cells: what an exploration's outcome list and the
/// policy matrix are made of.
pub struct Table {
    /// Column headings.
    pub columns: Vec<String>,
    /// Rows of cells, as many as columns.
    pub rows: Vec<Vec<Cell>>,
}

/// One cell of a [`Table`].
pub struct Cell {
    /// Its text (lines split on `\n`).
    pub text: String,
    /// Where it links (a timeline page), if anywhere.
    pub link: Option<String>,
    /// Whether it shows something wrong (a violation, a difference).
    pub flagged: bool,
}

impl Cell {
    /// A cell of text only.
    pub fn text(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            link: None,
            flagged: false,
        }
    }
}

/// A [`Table`] as an HTML `<table>`.
pub fn table_html(table: &Table) -> String {
    let head: String = table
        .columns
        .iter()
        .map(|c| format!("<th>{}</th>", escape(c)))
        .collect();
    let rows: String = table
        .rows
        .iter()
        .map(|row| {
            let cells: String = row.iter().map(cell_html).collect();
            format!("<tr>{cells}</tr>\n")
        })
        .collect();
    format!(
        "<table class=\"report\"><thead><tr>{head}</tr></thead><tbody>\n{rows}</tbody></table>\n"
    )
}

fn cell_html(cell: &Cell) -> String {
    let text = escape(&cell.text).replace('\n', "<br>");
    let content = match &cell.link {
        Some(href) => format!("<a href=\"{}\">{text}</a>", escape(href)),
        None => text,
    };
    let class = if cell.flagged {
        " class=\"flagged\""
    } else {
        ""
    };
    format!("<td{class}>{content}</td>")
}
