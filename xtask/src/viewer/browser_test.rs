//! `cargo xtask viewer-test`: the timeline reports in a real browser.
//!
//! For each report it generates, it opens the page in headless Chromium
//! (Debian's `chromium`) with `--dump-dom`, at `#step=N` fragments that set
//! the slider and fire its input handler as a drag does, and checks the
//! rendered DOM against the simulator's trace: the timeline lists every
//! position (start and each step), the graph shown at a chosen step has
//! exactly that step's vertices and links, and moving the slider to
//! another step shows that step's different graph. It also saves a
//! screenshot (`target/viewer-test/NAME.png`) for a person to look at.
//! An exploration's report must list every outcome the explorer found,
//! each with its final graph and a linked timeline; the policy matrix's
//! report, every violation with its counterexample's timeline.
//!
//! Chromium's own command line (`--dump-dom`, `--screenshot`) rather than a
//! DevTools-protocol crate: it needs no crate that downloads a browser or a
//! driver, no websocket client, and each check is one process whose output
//! is the DOM after the page's script ran.

use super::{write_exploration, write_timeline, OutcomeReport};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use strata_sim::scenario::Scenario;
use strata_sim::{
    explore, run_traced, Canonical, Catalog, Change, ExploreOptions, Progress, Replay, RunOptions,
    StepState, Trace,
};

/// A thread-B stream (two jobs at once) and a thread-A stream whose base
/// is a filter: the reports the issue asks to see.
const SCENARIOS: [&str; 2] = ["030-parallel-stream", "thread-a-mid-filter-base"];

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Entry point of `cargo xtask viewer-test`.
pub fn main() -> ExitCode {
    match run_all() {
        Ok(()) => {
            println!("viewer-test: every report renders as the trace says");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("viewer-test: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_all() -> Res<()> {
    let browser = chromium()?;
    let root = strata_sim::sim_dir()
        .parent()
        .ok_or("sim/ has no parent")?
        .to_path_buf();
    let out = root.join("target/viewer-test");
    std::fs::create_dir_all(&out)?;
    let cat = Catalog::project();
    for name in SCENARIOS {
        check_report(&browser, &out, &cat.scenario(name)?)?;
    }
    check_exploration(&browser, &out, &cat, EXPLORED)?;
    check_policies(&browser, &out, &cat, SCENARIOS[1])
}

/// The policy matrix's report has a row for the scenario, a cell per
/// policy, and every violation the matrix found linked to a timeline page
/// that exists.
fn check_policies(browser: &Path, out: &Path, cat: &Catalog, name: &str) -> Res<()> {
    let scenarios = vec![cat.scenario(name)?];
    let matrix = strata_sim::policy_matrix(&scenarios, strata_sim::policy::ALL, 0)?;
    let dir = out.join("policies");
    let index = crate::sim_policies::write_html(&dir, &scenarios, &matrix)?;
    let dom = dump_dom(
        browser,
        &format!("file://{}", index.canonicalize()?.display()),
    )?;
    let violations: usize = matrix.rows[0]
        .cells
        .iter()
        .map(|c| c.violations.len())
        .sum();
    let rows = dom.matches("<tr><td>").count();
    let cells = dom.matches("<th>").count();
    let wanted_cells = 1 + matrix.policies.len() + 5;
    if (rows, cells) != (1 + violations, wanted_cells) {
        return Err(format!(
            "policies: the report shows {rows} rows and {cells} headings; the matrix has 1 scenario, {} policies and {violations} violations",
            matrix.policies.len()
        )
        .into());
    }
    let links: Vec<&str> = dom
        .split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    if links.len() != violations || links.iter().any(|l| !dir.join(l).exists()) {
        return Err(format!(
            "policies: {} links for {violations} violations, or a linked timeline is missing",
            links.len()
        )
        .into());
    }
    println!(
        "policies: {name} under {} policies, {violations} violations, each linked to its timeline",
        matrix.policies.len()
    );
    Ok(())
}

/// The commit/stream race whose stale header QEMU leaves either way.
const EXPLORED: &str = "030-overlapping-5";

/// An exploration's report lists every outcome the explorer found, each
/// with its final graph and a timeline page that exists.
fn check_exploration(browser: &Path, out: &Path, cat: &Catalog, name: &str) -> Res<()> {
    let s = cat.scenario(name)?;
    let found = explore(&s, ExploreOptions::default(), &Progress::default())?;
    let mut reports = Vec::new();
    for o in &found.outcomes {
        let traced = run_traced(&s, &mut Replay::new(&o.example), RunOptions::default())
            .map_err(|f| format!("{name}: {}", f.error))?;
        reports.push(OutcomeReport {
            schedules: o.schedules,
            vs_qemu: String::new(),
            differs_from_qemu: false,
            differences: Vec::new(),
            replay: cat.replay_command(name, &o.example),
            trace: traced.trace,
        });
    }
    let dir = out.join(name);
    let index = write_exploration(&dir, name, "viewer-test", &reports)?;
    let dom = dump_dom(
        browser,
        &format!("file://{}", index.canonicalize()?.display()),
    )?;
    let rows = dom.matches("<tr><td>").count();
    let graphs = dom.matches("<section class=\"outcome\"").count();
    if (rows, graphs) != (found.outcomes.len(), found.outcomes.len()) {
        return Err(format!(
            "{name}: the outcome list shows {rows} rows and {graphs} graphs, the exploration found {} outcomes",
            found.outcomes.len()
        )
        .into());
    }
    for n in 1..=found.outcomes.len() {
        let page = format!("outcome-{n}.html");
        if !dom.contains(&format!("href=\"{page}\"")) || !dir.join(&page).exists() {
            return Err(format!("{name}: no timeline {page} linked from the outcome list").into());
        }
    }
    println!("{name}: {rows} outcomes listed, each with its final graph and timeline");
    Ok(())
}

/// Chromium's path; an error telling how to install it when missing.
fn chromium() -> Res<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.ok_or_else(|| {
        "chromium is missing: the browser test needs Debian's chromium \
         (apt-get install -y chromium; .ci/run installs it when missing)"
            .into()
    })
}

fn check_report(browser: &Path, out: &Path, scenario: &Arc<Scenario>) -> Res<()> {
    let name = &scenario.name;
    let traced = run_traced(scenario, &mut Canonical, RunOptions::default())
        .map_err(|f| format!("{name}: {}", f.error))?;
    let trace = &traced.trace;
    let page = out.join(format!("{name}.html"));
    write_timeline(&page, name, "viewer-test", trace)?;
    let (first, second) = chosen_positions(trace).ok_or_else(|| {
        format!("{name}: no job appears in the trace, nothing to move the slider between")
    })?;
    let url = format!("file://{}", page.canonicalize()?.display());
    let shown_first = check_position(browser, &url, trace, first)?;
    let shown_second = check_position(browser, &url, trace, second)?;
    if shown_first == shown_second {
        return Err(format!(
            "{name}: moving the slider from {first} to {second} left the graph unchanged"
        )
        .into());
    }
    let shot = out.join(format!("{name}.png"));
    screenshot(browser, &format!("{url}#step={first}"), &shot)?;
    println!(
        "{name}: {} positions, graph at {first} ({} vertices, {} links) and at {second} checked; screenshot {}",
        trace.steps.len() + 1,
        shown_first.0.len(),
        shown_first.1.len(),
        shot.display()
    );
    Ok(())
}

/// Two slider positions with different graphs, from the model: the first
/// step that adds a job, and the end.
fn chosen_positions(trace: &Trace) -> Option<(usize, usize)> {
    let job_added = trace.steps.iter().position(|s| {
        s.changes
            .iter()
            .any(|c| matches!(c, Change::Added(key) if key.starts_with("job:")))
    })?;
    Some((job_added + 1, trace.steps.len()))
}

/// The state a slider position shows: 0 is the start, N is after step N-1.
fn state_at(trace: &Trace, position: usize) -> &StepState {
    trace.state_after(position.checked_sub(1))
}

/// What a graph shows: its vertices and its links (`parent->child`, one
/// entry per link).
type Shown = (BTreeSet<String>, Vec<String>);

fn expected(state: &StepState) -> Shown {
    let vertices = state.vertices.iter().map(|v| v.key.clone()).collect();
    let mut links: Vec<String> = state
        .edges
        .iter()
        .map(|l| format!("{}->{}", l.parent, l.child))
        .collect();
    links.sort();
    (vertices, links)
}

fn check_position(browser: &Path, url: &str, trace: &Trace, position: usize) -> Res<Shown> {
    let dom = dump_dom(browser, &format!("{url}#step={position}"))?;
    let items = timeline_items(&dom);
    if items.len() != trace.steps.len() + 1 {
        return Err(format!(
            "{url}: the timeline lists {} positions, the trace has {} (start and {} steps)",
            items.len(),
            trace.steps.len() + 1,
            trace.steps.len()
        )
        .into());
    }
    for svg in &items {
        if !dom.contains(&format!("<template id=\"svg-{svg}\"><svg")) {
            return Err(format!("{url}: no graph for a timeline entry (svg-{svg})").into());
        }
    }
    let shown = shown_graph(&dom, position)?;
    let want = expected(state_at(trace, position));
    if shown != want {
        return Err(format!(
            "{url}#step={position}: the page shows\n  {shown:?}\nthe trace has\n  {want:?}"
        )
        .into());
    }
    Ok(shown)
}

fn chromium_command(browser: &Path) -> Res<Command> {
    let profile = std::env::temp_dir().join(format!("strata-viewer-test-{}", std::process::id()));
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    Ok(cmd)
}

fn dump_dom(browser: &Path, url: &str) -> Res<String> {
    let out = chromium_command(browser)?
        .arg("--dump-dom")
        .arg(url)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "chromium --dump-dom {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn screenshot(browser: &Path, url: &str, png: &Path) -> Res<()> {
    let _ = std::fs::remove_file(png);
    let out = chromium_command(browser)?
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1600,1000")
        .arg(url)
        .output()?;
    let size = std::fs::metadata(png).map(|m| m.len()).unwrap_or(0);
    if !out.status.success() || size < 10_000 {
        return Err(format!(
            "chromium --screenshot {url}: no screenshot ({size} bytes): {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// The `data-svg` of every timeline entry.
fn timeline_items(dom: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find("<li class=\"step") {
        rest = &rest[at..];
        if let Some(svg) = attribute(rest, "data-svg") {
            items.push(svg);
        }
        rest = &rest[1..];
    }
    items
}

/// The value of the first `name="..."` in the tag that starts `tag`.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let end = tag.find('>')?;
    let tag = &tag[..end];
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

fn unescape(text: &str) -> String {
    text.replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&quot;", "\"")
        .replace("&#45;", "-")
        .replace("&amp;", "&")
}

/// The vertices and links drawn in `#graph` (what was removed since the
/// previous step is drawn too, dashed: not part of the step's graph), and
/// a check that it is the graph of `position`.
fn shown_graph(dom: &str, position: usize) -> Res<Shown> {
    let start = dom
        .find("<div id=\"graph\"")
        .ok_or("no #graph in the page")?;
    let graph = &dom[start..];
    let step = attribute(graph, "data-step");
    if step != Some(position.to_string()) {
        return Err(format!("#graph shows step {step:?}, not {position}").into());
    }
    let end = graph.find("</svg>").ok_or("#graph holds no SVG")?;
    let svg = &graph[..end];
    let mut vertices = BTreeSet::new();
    let mut links = Vec::new();
    let mut rest = svg;
    while let Some(at) = rest.find("<g id=\"") {
        rest = &rest[at..];
        let class = attribute(rest, "class").unwrap_or_default();
        let title = rest
            .find("<title>")
            .map(|t| &rest[t + 7..])
            .and_then(|t| t.find("</title>").map(|e| unescape(&t[..e])));
        rest = &rest[1..];
        let classes: Vec<&str> = class.split_whitespace().collect();
        let (Some(title), false) = (title, classes.contains(&"removed")) else {
            continue;
        };
        match classes.first() {
            Some(&"node") if !classes.contains(&"legend") => {
                vertices.insert(title);
            }
            Some(&"edge") => links.push(title),
            _ => {}
        }
    }
    links.sort();
    Ok((vertices, links))
}
