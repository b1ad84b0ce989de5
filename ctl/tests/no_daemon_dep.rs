//! tierctl must build on a machine without clang: it may not depend, directly or
//! through another crate, on the daemon (`tierd`), whose build script compiles the BPF
//! programs with clang. Walks the workspace's Cargo.lock from `tierctl`.

use std::collections::{BTreeMap, BTreeSet};

/// Package name -> names of its dependencies, from Cargo.lock (all versions merged).
fn lock_graph(lock: &str) -> BTreeMap<String, BTreeSet<String>> {
    let doc: toml::Table = lock.parse().expect("Cargo.lock is TOML");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in doc["package"].as_array().expect("[[package]] entries") {
        let name = p["name"].as_str().expect("package name").to_string();
        let deps = p
            .get("dependencies")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str())
            // "name" or "name version" when several versions are locked.
            .filter_map(|d| d.split(' ').next())
            .map(str::to_string);
        graph.entry(name).or_default().extend(deps);
    }
    graph
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(p) = todo.pop() {
        if p == to {
            return true;
        }
        if seen.insert(p.clone()) {
            todo.extend(graph.get(&p).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn tierctl_does_not_depend_on_the_daemon() {
    let graph = lock_graph(include_str!("../../Cargo.lock"));
    assert!(graph.contains_key("tierctl"), "tierctl is in Cargo.lock");
    assert!(
        reaches(&graph, "tierd", "aya"),
        "the walk finds the daemon's own dependencies"
    );
    assert!(
        !reaches(&graph, "tierctl", "tierd"),
        "tierctl depends on the daemon crate: building it would need clang"
    );
}
