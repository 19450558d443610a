//! The result records of a finished job, read back from its `logs.yaml` as typed
//! [`TestCase`]s (what [`crate::report`] renders).
//!
//! Every `results` record becomes one case, in log order: test-shell cases, and the `lava`
//! suite's records (`validate`, one per action that records a result, `job`). A case's
//! duration is the `duration` LAVA records for actions, or for a test-shell case the time
//! between the log records its `starttc` and `endtc` (record indexes) point at.

use crate::report::{JobError, TestCase, TestResult};
use anyhow::{Context, Result};
use serde_yaml::Value;
use std::path::Path;

/// Every result record of the job whose log is `log`, in order.
pub fn read_results(log: &Path) -> Result<Vec<TestCase>> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(parse_results(&text))
}

/// Every `results` record of a log's text, in order.
pub fn parse_results(text: &str) -> Vec<TestCase> {
    let records: Vec<&str> = text.lines().filter(|l| l.starts_with("- ")).collect();
    records
        .iter()
        .filter_map(|line| test_case(line, &records))
        .collect()
}

fn test_case(line: &str, records: &[&str]) -> Option<TestCase> {
    if !line.contains("\"lvl\": \"results\"") {
        return None;
    }
    let item: Value = serde_yaml::from_str(line.trim_start_matches("- ")).ok()?;
    let msg = item.get("msg")?;
    let field = |key: &str| msg.get(key).map(text);
    let record_index = |key: &str| field(key).and_then(|v| v.parse::<usize>().ok());
    let duration = field("duration")
        .and_then(|d| d.parse::<f64>().ok())
        .or_else(|| {
            let start = record_time(records.get(record_index("starttc")?)?)?;
            let end = record_time(records.get(record_index("endtc")?)?)?;
            Some((end - start).max(0.0))
        });
    let error = field("error_type").map(|error_type| JobError {
        error_type,
        message: field("error_msg").unwrap_or_default(),
    });
    Some(TestCase {
        suite: field("definition").unwrap_or_default(),
        name: field("case").unwrap_or_default(),
        result: TestResult::from_lava(&field("result").unwrap_or_default()),
        measurement: field("measurement"),
        units: field("units"),
        duration,
        error,
    })
}

/// A record's `dt` as seconds since the Unix epoch (LAVA writes UTC, `+00:00`).
fn record_time(line: &str) -> Option<f64> {
    let rest = line.split_once("{\"dt\": \"")?.1;
    let dt = rest.split_once('"')?.0;
    let (date, time) = dt.split_once('T')?;
    let time = time.trim_end_matches("+00:00");
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let mut time_parts = time.splitn(3, ':');
    let hours = time_parts.next()?.parse::<f64>().ok()?;
    let minutes = time_parts.next()?.parse::<f64>().ok()?;
    let seconds = time_parts.next()?.parse::<f64>().ok()?;
    Some(days_from_civil(y, m, d) as f64 * 86_400.0 + hours * 3600.0 + minutes * 60.0 + seconds)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

    const LOG: &str = concat!(
        "- {\"dt\": \"2026-02-28T23:59:59.500000+00:00\", \"lvl\": \"info\", \"msg\": \"start: 1 deploy\"}\n",
        "- {\"dt\": \"2026-03-01T00:00:00.000000+00:00\", \"lvl\": \"results\", \"msg\": {\"definition\": \"lava\", \"case\": \"validate\", \"result\": \"pass\"}}\n",
        "- {\"dt\": \"2026-03-01T00:00:01.000000+00:00\", \"lvl\": \"results\", \"msg\": {\"definition\": \"lava\", \"namespace\": \"common\", \"case\": \"boot-qemu\", \"level\": \"2.1\", \"duration\": \"3.25\", \"result\": \"pass\"}}\n",
        "- {\"dt\": \"2026-03-01T00:00:02.250000+00:00\", \"lvl\": \"debug\", \"msg\": \"Received signal: <STARTTC> speed\"}\n",
        "- {\"dt\": \"2026-03-01T00:00:04.000000+00:00\", \"lvl\": \"debug\", \"msg\": \"Received signal: <ENDTC> speed\"}\n",
        "- {\"dt\": \"2026-03-01T00:00:04.100000+00:00\", \"lvl\": \"results\", \"msg\": {\"definition\": \"0_smoke\", \"case\": \"speed\", \"result\": \"pass\", \"measurement\": ! \"12.5\", \"units\": \"MB/s\", \"starttc\": ! \"3\", \"endtc\": ! \"4\"}}\n",
        "- {\"dt\": \"2026-03-01T00:00:05.000000+00:00\", \"lvl\": \"results\", \"msg\": {\"definition\": \"0_smoke\", \"case\": \"odd\", \"result\": \"unknown\"}}\n",
        "- {\"dt\": \"2026-03-01T00:00:06.000000+00:00\", \"lvl\": \"results\", \"msg\": {\"definition\": \"lava\", \"case\": \"job\", \"result\": \"fail\", \"error_msg\": \"lava-test-shell timed out\", \"error_type\": \"Test\"}}\n",
    );

    #[test]
    fn every_result_record_becomes_a_typed_case() {
        let cases = parse_results(LOG);
        let names: Vec<_> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["validate", "boot-qemu", "speed", "odd", "job"]);
        assert_eq!(cases[1].duration, Some(3.25));
        assert!(cases[1].is_action_record() && !cases[0].is_action_record());
        let speed = &cases[2];
        assert_eq!(speed.suite, "0_smoke");
        assert_eq!(speed.result, TestResult::Pass);
        assert_eq!(speed.measurement.as_deref(), Some("12.5"));
        assert_eq!(speed.units.as_deref(), Some("MB/s"));
        // starttc/endtc point at the STARTTC and ENDTC records: 1.75 s apart.
        assert!((speed.duration.unwrap() - 1.75).abs() < 1e-6, "{speed:?}");
        assert_eq!(cases[3].result, TestResult::Unknown);
        assert_eq!(cases[3].duration, None);
        let job = &cases[4];
        assert_eq!(job.result, TestResult::Fail);
        assert_eq!(
            job.error,
            Some(JobError {
                error_type: "Test".into(),
                message: "lava-test-shell timed out".into()
            })
        );
    }

    #[test]
    fn record_times_cross_midnight_and_month_ends() {
        let lines: Vec<&str> = LOG.lines().collect();
        let before = record_time(lines[0]).unwrap();
        let after = record_time(lines[1]).unwrap();
        assert!((after - before - 0.5).abs() < 1e-6);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn reads_a_log_file_and_names_it_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs.yaml");
        std::fs::write(&log, LOG).unwrap();
        assert_eq!(read_results(&log).unwrap().len(), 5);
        let missing = dir.path().join("none.yaml");
        let error = format!("{:#}", read_results(&missing).unwrap_err());
        assert!(error.contains("none.yaml"), "{error}");
    }
}
