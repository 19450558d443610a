//! The result records of a finished job, read back from its `logs.yaml`, and the table
//! `lava-run multinode` (and `cargo xtask main-job`) print.

use anyhow::{Context, Result};
use serde_yaml::Value;
use std::path::Path;

/// One `results` record: a test case, or the `lava` suite's `job`/`validate` case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRow {
    pub suite: String,
    pub case: String,
    pub result: String,
    /// `measurement units`, empty when none.
    pub measurement: String,
}

/// The test results of the job whose log is `log`: every test suite's cases plus the `lava`
/// suite's `validate` and `job` records (per-action `lava` records stay in the log).
pub fn read_results(log: &Path) -> Result<Vec<ResultRow>> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(parse_results(&text)
        .into_iter()
        .filter(|row| row.suite != "lava" || matches!(row.case.as_str(), "job" | "validate"))
        .collect())
}

/// Every `results` record of a log's text, in order, per-action `lava` records included.
pub fn parse_results(text: &str) -> Vec<ResultRow> {
    text.lines().filter_map(result_row).collect()
}

/// The job's own result (`lava`/`job`): `pass`, `fail`, or `None` if the log has none.
pub fn job_result(rows: &[ResultRow]) -> Option<&str> {
    rows.iter()
        .find(|row| row.suite == "lava" && row.case == "job")
        .map(|row| row.result.as_str())
}

/// The rows as an aligned table, one line each, with a header.
pub fn table(rows: &[ResultRow]) -> String {
    let mut out = format!(
        "{:<16} {:<32} {:<6} measurement\n",
        "suite", "case", "result"
    );
    for row in rows {
        out.push_str(
            format!(
                "{:<16} {:<32} {:<6} {}",
                row.suite, row.case, row.result, row.measurement
            )
            .trim_end(),
        );
        out.push('\n');
    }
    out
}

fn result_row(line: &str) -> Option<ResultRow> {
    if !line.contains("\"lvl\": \"results\"") {
        return None;
    }
    let item: Value = serde_yaml::from_str(line.trim_start_matches("- ")).ok()?;
    let msg = item.get("msg")?;
    let field = |key: &str| msg.get(key).map(text);
    let suite = field("definition").unwrap_or_default();
    let case = field("case").unwrap_or_default();
    let measurement = match (field("measurement"), field("units")) {
        (Some(m), Some(u)) => format!("{m} {u}"),
        (Some(m), None) => m,
        _ => String::new(),
    };
    Some(ResultRow {
        suite,
        case,
        result: field("result").unwrap_or_default(),
        measurement,
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        // `! "42.0"` in LAVA's log lines reads back as a tagged string.
        Value::Tagged(tagged) => text(&tagged.value),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_test_cases_and_the_job_record_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs.yaml");
        std::fs::write(
            &log,
            concat!(
                "- {\"dt\": \"x\", \"lvl\": \"info\", \"msg\": \"start: 1 deploy\"}\n",
                "- {\"dt\": \"x\", \"lvl\": \"results\", \"msg\": {\"definition\": \"lava\", \"case\": \"validate\", \"result\": \"pass\"}}\n",
                "- {\"dt\": \"x\", \"lvl\": \"results\", \"msg\": {\"definition\": \"lava\", \"case\": \"boot-qemu\", \"result\": \"pass\"}}\n",
                "- {\"dt\": \"x\", \"lvl\": \"results\", \"msg\": {\"definition\": \"0_smoke\", \"case\": \"speed\", \"result\": \"pass\", \"measurement\": ! \"12.5\", \"units\": \"MB/s\"}}\n",
                "- {\"dt\": \"x\", \"lvl\": \"results\", \"msg\": {\"definition\": \"lava\", \"case\": \"job\", \"result\": \"fail\"}}\n",
            ),
        )
        .unwrap();
        let rows = read_results(&log).unwrap();
        let cases: Vec<_> = rows.iter().map(|r| r.case.as_str()).collect();
        assert_eq!(cases, ["validate", "speed", "job"]);
        assert_eq!(rows[1].measurement, "12.5 MB/s");
        assert_eq!(job_result(&rows), Some("fail"));
        let table = table(&rows);
        assert!(
            table.lines().nth(2).unwrap().ends_with("pass   12.5 MB/s"),
            "{table}"
        );
    }
}
