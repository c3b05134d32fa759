//! The checks a reviewer makes of the workspace's shape, kept true by the
//! test suite (docs/ARCHITECTURE.md states them as invariants):
//! no file-level import cycle inside a crate, the leaf crates depend on no
//! Strata crate, only the protocol/monitor side (and the simulator's
//! scenario file format) knows JSON, and every declared dependency is used.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root (this package is `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every package directory of the workspace.
fn packages() -> Vec<PathBuf> {
    let root = root();
    let mut dirs: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .expect("crates/")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.extend(["sim", "xtask", "tests"].map(|d| root.join(d)));
    dirs.sort();
    dirs
}

/// The `.rs` files below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// A source file's code without comments and without its `#[cfg(test)]`
/// tail (unit tests may reach anywhere).
fn code_of(path: &Path) -> String {
    let text = fs::read_to_string(path).expect("readable source");
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module path of a file below `src` (`lib.rs`/`main.rs`/`mod.rs` name
/// their directory's module).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file
        .strip_prefix(src)
        .expect("below src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The `crate::a::b` paths a piece of code names.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let path: Vec<String> = rest
            .split("::")
            .map(|seg| {
                seg.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|seg| seg.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
            .collect();
        if !path.is_empty() {
            paths.push(path);
        }
    }
    paths
}

/// File-level import edges of one crate: module → modules it names
/// through `crate::` (its own submodules excluded: declaring them is not a
/// dependency).
fn import_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = rust_files(src);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut edges = BTreeMap::new();
    for file in &files {
        let module = module_of(src, file);
        let mut targets = BTreeSet::new();
        for path in crate_paths(&code_of(file)) {
            let target = (1..=path.len())
                .rev()
                .map(|k| path[..k].join("::"))
                .find(|candidate| modules.contains(candidate));
            if let Some(target) = target {
                let own_child = target.starts_with(&format!("{module}::")) || module.is_empty();
                if target != module && !own_child {
                    targets.insert(target);
                }
            }
        }
        edges.insert(module, targets);
    }
    edges
}

/// A cycle in `edges`, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|start| visit(start, edges, &mut done, &mut Vec::new()))
}

/// The dependencies a manifest declares, by section (`dependencies`,
/// `dev-dependencies`, ...), as crate names.
fn declared_dependencies(package: &Path) -> BTreeMap<String, Vec<String>> {
    let manifest = fs::read_to_string(package.join("Cargo.toml")).expect("Cargo.toml");
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in manifest.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        if !section.ends_with("dependencies") {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if !name.is_empty() {
            sections.entry(section.clone()).or_default().push(name);
        }
    }
    sections
}

fn package_name(package: &Path) -> String {
    package
        .file_name()
        .expect("named")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn no_crate_has_a_file_level_import_cycle() {
    let mut cycles = Vec::new();
    for package in packages() {
        for dir in ["src", "it"] {
            let src = package.join(dir);
            if src.is_dir() {
                if let Some(cycle) = find_cycle(&import_edges(&src)) {
                    cycles.push(format!(
                        "{}: {}",
                        package_name(&package),
                        cycle.join(" -> ")
                    ));
                }
            }
        }
    }
    assert_eq!(cycles, Vec::<String>::new());
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        find_cycle(&edges),
        Some(
            vec!["a", "b", "c", "a"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
    assert_eq!(
        crate_paths("use crate::jobs::stream::{x, y};"),
        vec![vec!["jobs".to_string(), "stream".to_string()]]
    );
}

/// Crates meant to be picked up alone depend on no other Strata crate.
#[test]
fn leaf_crates_depend_on_no_strata_crate() {
    for leaf in [
        "strata-graph",
        "strata-formats",
        "strata-jobs",
        "strata-qmp",
    ] {
        let package = root().join("crates").join(leaf);
        let strata: Vec<String> = declared_dependencies(&package)
            .get("dependencies")
            .into_iter()
            .flatten()
            .filter(|d| d.starts_with("strata-"))
            .cloned()
            .collect();
        assert_eq!(
            strata,
            Vec::<String>::new(),
            "{leaf} depends on Strata crates"
        );
    }
}

/// One layer knows the wire format: JSON is parsed and printed by
/// strata-qmp (the protocol) and strata-monitor (the block layer's QMP
/// shape); the simulator's scenario file format is its one module that
/// reads the harness's JSON files.
#[test]
fn only_the_protocol_and_monitor_side_knows_json() {
    let allowed = ["strata-qmp", "strata-monitor"];
    let mut knowing = Vec::new();
    for package in packages() {
        let name = package_name(&package);
        if allowed.contains(&name.as_str()) || ["xtask", "tests"].contains(&name.as_str()) {
            continue;
        }
        for file in rust_files(&package.join("src")) {
            if code_of(&file).contains("serde") {
                knowing.push(
                    file.strip_prefix(root())
                        .expect("in root")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    assert_eq!(knowing, vec!["sim/src/scenario.rs".to_string()]);
}

/// A dependency nobody uses is not a design choice: every declared
/// dependency is named in the package's code (sources, examples, benches
/// for dev-dependencies too).
#[test]
fn every_declared_dependency_is_used() {
    let mut unused = Vec::new();
    for package in packages() {
        let code: String = ["src", "it", "examples", "benches"]
            .iter()
            .flat_map(|d| rust_files(&package.join(d)))
            .chain([package.join("lib.rs")].into_iter().filter(|p| p.exists()))
            .map(|f| fs::read_to_string(f).expect("readable"))
            .collect();
        for (section, names) in declared_dependencies(&package) {
            for name in names {
                let ident = name.replace('-', "_");
                let used = code.contains(&format!("{ident}::"))
                    || code.contains(&format!("use {ident}"))
                    || code.contains(&format!("extern crate {ident}"))
                    || code.contains(&format!("{ident}!"))
                    || code.contains(&format!("{ident}::{{"));
                if !used {
                    unused.push(format!("{} [{section}] {name}", package_name(&package)));
                }
            }
        }
    }
    assert_eq!(unused, Vec::<String>::new());
}
