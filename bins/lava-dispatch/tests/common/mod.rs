//! Helpers shared by the lava-dispatch end-to-end tests.
#![allow(dead_code)] // each test file uses a part

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The `lava-run` binary under test.
pub fn lava_run() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lava-run"))
}

/// Whether the tests run in CI, where every prerequisite must be present.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Every `results` record of a log's text, as (definition, case, result).
pub fn results(log: &str) -> Vec<(String, String, String)> {
    lava_dispatch::results::parse_results(log)
        .into_iter()
        .map(|case| (case.suite, case.name, case.result.as_str().to_string()))
        .collect()
}

/// Whether `results` has `case` of `definition` with `outcome`.
pub fn has(
    results: &[(String, String, String)],
    definition: &str,
    case: &str,
    outcome: &str,
) -> bool {
    results
        .iter()
        .any(|(d, c, r)| d == definition && c == case && r == outcome)
}

/// The processes whose command line contains `marker`, as "pid: command line".
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(marker) {
                found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}
