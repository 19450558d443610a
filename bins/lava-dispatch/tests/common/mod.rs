//! Helpers of the lava-dispatch end-to-end tests alone (what other crates' tests share
//! too is in `lava_test_support`).
#![allow(dead_code)] // each test file uses a part

use std::path::PathBuf;

/// The `lava-run` binary under test.
pub fn lava_run() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lava-run"))
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
