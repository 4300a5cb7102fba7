//! Tidy checks over the source tree: no import cycle between top-level modules, nor between
//! the children of one directory module (`ops/cli` ↔ `ops/stats`).
//!
//! A module "uses" another when its files name it by path (`crate::store`, `super::stats`),
//! in code or in a doc link: a doc link is a dependency a reader follows too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module name → the names it refers to (among its siblings).
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The `.rs` files of a module: `dir/name.rs` and everything under `dir/name/`.
fn module_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let file = dir.join(format!("{name}.rs"));
    if file.is_file() {
        files.push(file);
    }
    let mut pending = vec![dir.join(name)];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The modules directly in `dir` (files and directories), leaving out `skip`.
fn modules_in(dir: &Path, skip: &[&str]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = match path.file_stem().and_then(|s| s.to_str()) {
            Some(name) => name.to_string(),
            None => continue,
        };
        let is_module = path.is_dir() || path.extension().is_some_and(|e| e == "rs");
        if is_module && !skip.contains(&name.as_str()) {
            names.insert(name);
        }
    }
    names
}

/// The first segment of every path that follows `prefix` in `text`: `crate::a::b` gives `a`,
/// `crate::{a, b::c}` gives `a` and `b`.
fn first_segments(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in text.match_indices(prefix) {
        let rest = &text[at + prefix.len()..];
        if !rest.starts_with('{') {
            found.insert(ident(rest));
            continue;
        }
        let (mut depth, mut item_start) = (0, 1);
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 1 => {
                    found.insert(ident(&rest[item_start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 1 => {
                    found.insert(ident(&rest[item_start..i]));
                    item_start = i + 1;
                }
                _ => {}
            }
        }
    }
    found.remove("");
    found
}

/// The graph of the modules in `dir`: each refers to a sibling by `prefixes` (`crate::` at
/// the top, `super::` and `crate::ops::` inside `ops`). `super::` means the parent only in
/// the module's own file and `mod.rs`.
fn graph(dir: &Path, modules: &BTreeSet<String>, parent: Option<&str>) -> Graph {
    let mut graph = Graph::new();
    for module in modules {
        let mut uses = BTreeSet::new();
        for file in module_files(dir, module) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let mut prefixes = Vec::new();
            match parent {
                None => prefixes.push("crate::".to_string()),
                Some(parent) => {
                    prefixes.push(format!("crate::{parent}::"));
                    if file.parent() == Some(dir) {
                        prefixes.push("super::".to_string());
                    }
                }
            }
            for prefix in &prefixes {
                uses.extend(first_segments(&text, prefix));
            }
        }
        uses.retain(|used| used != module && modules.contains(used));
        graph.insert(module.clone(), uses);
    }
    graph
}

/// A cycle in `graph`, as the path that closes it (`a -> b -> a`), if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit<'g>(
        graph: &'g Graph,
        node: &'g str,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[start..].iter().map(|n| n.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn top_level_modules_import_no_cycle() {
    let modules = modules_in(&src(), &["lib", "main", "tidy"]);
    assert!(modules.contains("store") && modules.contains("ingest"));
    let graph = graph(&src(), &modules, None);
    assert!(graph["ingest"].contains("store"), "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle between modules: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_children_of_a_module_import_no_cycle() {
    for parent in modules_in(&src(), &[]) {
        let dir = src().join(&parent);
        if !dir.is_dir() {
            continue;
        }
        let children = modules_in(&dir, &["mod", "tests"]);
        if let Some(cycle) = find_cycle(&graph(&dir, &children, Some(&parent))) {
            panic!("import cycle inside {parent}: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn paths_are_read_as_modules() {
    let check = |text: &str, prefix: &str, expect: &[&str]| {
        let found = first_segments(text, prefix);
        let found: Vec<&str> = found.iter().map(String::as_str).collect();
        assert_eq!(found, expect, "{text}");
    };
    check("use crate::store::Tx;", "crate::", &["store"]);
    check(
        "use crate::{\n    config::Config,\n    model::{A, B},\n    parse,\n};",
        "crate::",
        &["config", "model", "parse"],
    );
    check("/// see [`crate::kpi`]", "crate::", &["kpi"]);
    check(
        "use super::{check, daemon};",
        "super::",
        &["check", "daemon"],
    );
    check("use std::fmt;", "crate::", &[]);
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_string(), BTreeSet::from([to.to_string()])))
        .collect();
    assert_eq!(
        find_cycle(&graph).map(|c| c.join(" -> ")),
        Some("a -> b -> c -> a".to_string())
    );
    let mut acyclic = graph;
    acyclic.remove("c");
    assert_eq!(find_cycle(&acyclic), None);
}
