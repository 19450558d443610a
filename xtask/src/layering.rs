//! `cargo xtask layering`: the crate arrows of the design card, checked on `cargo metadata`.
//!
//! Each rule names a library crate and the workspace crates it must not reach through
//! normal (non-dev, non-build) dependencies, directly or transitively: the coordinator
//! broker and the MultiNode wire crate link no job engine, the artefacts and log upload
//! leaves link none of our crates above them, and the Python-compatibility and error leaves
//! link none but `lava-error` → `lava-python`; the device model (used by lava-pipeline)
//! links no engine crate; the worker (lava-worker) links neither the engine nor the run API
//! nor MultiNode (it starts lava-run as a program); the /proc leaf (lava-procfs) links none
//! of our crates. `cargo xtask test` runs the check before the
//! tests, so a new dependency arrow pointing upward fails the build instead of slowly
//! growing a broker into a dispatcher.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::shared::workspace_root;

/// The engine and everything built on it.
const ENGINE: [&str; 5] = [
    "lava-pipeline",
    "lava-shell",
    "lava-actions",
    "lava-connection",
    "lava-device",
];

/// Our crates above `lava-python`, which depends on nothing of ours; `lava-error`, last,
/// depends on `lava-python` only.
const ABOVE_PYTHON: [&str; 9] = [
    "lava-pipeline",
    "lava-shell",
    "lava-actions",
    "lava-connection",
    "lava-device",
    "lava-multinode",
    "lava-coordinator",
    "lava-artefacts",
    "lava-error",
];

/// The crates above lava-device: the device model is read by the engine (lava-pipeline's
/// `Device` holds lava-device's `DeviceConfig`), so it must not read the engine.
const ABOVE_DEVICE: [&str; 4] = [
    "lava-pipeline",
    "lava-shell",
    "lava-actions",
    "lava-connection",
];

/// What the worker (the slave) must not link: it starts lava-run as a program and speaks
/// HTTP to lava-server; the job engine, the run API and MultiNode stay in lava-run.
const NOT_IN_WORKER: [&str; 8] = [
    "lava-pipeline",
    "lava-shell",
    "lava-actions",
    "lava-connection",
    "lava-device",
    "lava-dispatcher",
    "lava-multinode",
    "lava-coordinator",
];

/// Every library crate of ours: the /proc leaf (lava-procfs), used from the
/// connections up to xtask, links none of them.
const ALL_OURS: [&str; 15] = [
    "lava-python",
    "lava-error",
    "lava-yaml",
    "lava-artefacts",
    "lava-log-upload",
    "lava-device",
    "lava-pipeline",
    "lava-shell",
    "lava-actions",
    "lava-connection",
    "lava-multinode",
    "lava-coordinator",
    "lava-dispatcher",
    "lava-worker",
    "lava-test-support",
];

/// (crate, crates it must not reach through normal dependencies).
const RULES: [(&str, &[&str]); 10] = [
    ("lava-coordinator", &ENGINE),
    ("lava-multinode", &ENGINE),
    ("lava-artefacts", &ENGINE),
    ("lava-log-upload", &ENGINE),
    ("lava-error", ABOVE_PYTHON.split_at(8).0),
    ("lava-python", &ABOVE_PYTHON),
    ("lava-device", &ABOVE_DEVICE),
    ("lava-yaml", &ABOVE_PYTHON),
    ("lava-worker", &NOT_IN_WORKER),
    ("lava-procfs", &ALL_OURS),
];

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    resolve: Resolve,
}

#[derive(Deserialize)]
struct Package {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    deps: Vec<NodeDep>,
}

#[derive(Deserialize)]
struct NodeDep {
    pkg: String,
    dep_kinds: Vec<DepKind>,
}

#[derive(Deserialize)]
struct DepKind {
    /// `null` for a normal dependency, `"dev"` or `"build"` otherwise.
    kind: Option<String>,
}

/// Package name → names of the packages it reaches through normal dependencies.
fn normal_closure(metadata: &Metadata, root: &str) -> Result<BTreeSet<String>> {
    let names: BTreeMap<&str, &str> = metadata
        .packages
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .collect();
    let nodes: BTreeMap<&str, &Node> = metadata
        .resolve
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n))
        .collect();
    let start = metadata
        .packages
        .iter()
        .find(|p| p.name == root)
        .with_context(|| format!("no package {root} in the workspace"))?;
    let mut seen = BTreeSet::new();
    let mut todo = vec![start.id.as_str()];
    while let Some(id) = todo.pop() {
        let node = nodes
            .get(id)
            .with_context(|| format!("{id} is missing from cargo metadata's resolve graph"))?;
        for dep in &node.deps {
            let normal = dep.dep_kinds.iter().any(|k| k.kind.is_none());
            if normal && seen.insert(dep.pkg.as_str()) {
                todo.push(dep.pkg.as_str());
            }
        }
    }
    Ok(seen
        .into_iter()
        .filter_map(|id| names.get(id).map(|n| n.to_string()))
        .collect())
}

/// Every rule's violations, as "crate -> forbidden" lines.
fn violations(metadata: &Metadata) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for (krate, forbidden) in RULES {
        let reached = normal_closure(metadata, krate)?;
        for name in forbidden {
            if reached.contains(*name) {
                found.push(format!("{krate} -> {name}"));
            }
        }
    }
    Ok(found)
}

fn workspace_metadata() -> Result<Metadata> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace_root())
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("reading cargo metadata's output")
}

/// Checks every rule; the error lists each crate reached that must not be.
pub fn check() -> Result<()> {
    let found = violations(&workspace_metadata()?)?;
    if !found.is_empty() {
        bail!(
            "dependency arrows point upward (normal dependencies, transitively):\n  {}",
            found.join("\n  ")
        );
    }
    println!("layering: {} crates checked, no upward arrows", RULES.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(edges: &[(&str, &str, Option<&str>)]) -> Metadata {
        let mut names: BTreeSet<&str> = RULES.iter().map(|(k, _)| *k).collect();
        for (from, to, _) in edges {
            names.insert(from);
            names.insert(to);
        }
        Metadata {
            packages: names
                .iter()
                .map(|n| Package {
                    id: format!("id-{n}"),
                    name: n.to_string(),
                })
                .collect(),
            resolve: Resolve {
                nodes: names
                    .iter()
                    .map(|n| Node {
                        id: format!("id-{n}"),
                        deps: edges
                            .iter()
                            .filter(|(from, _, _)| from == n)
                            .map(|(_, to, kind)| NodeDep {
                                pkg: format!("id-{to}"),
                                dep_kinds: vec![DepKind {
                                    kind: kind.map(str::to_string),
                                }],
                            })
                            .collect(),
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn transitive_normal_arrows_are_found_and_dev_arrows_ignored() {
        let m = metadata(&[
            ("lava-coordinator", "lava-multinode", None),
            ("lava-coordinator", "lava-actions", Some("dev")),
            ("lava-multinode", "serde", None),
        ]);
        assert_eq!(violations(&m).unwrap(), Vec::<String>::new());
        let m = metadata(&[
            ("lava-coordinator", "lava-multinode", None),
            ("lava-multinode", "lava-pipeline", None),
        ]);
        assert_eq!(
            violations(&m).unwrap(),
            [
                "lava-coordinator -> lava-pipeline",
                "lava-multinode -> lava-pipeline"
            ]
        );
    }

    /// The workspace as it is keeps every rule.
    #[test]
    fn the_workspace_keeps_the_design_cards_arrows() {
        check().unwrap();
    }
}
