//! Run-time: `lava-test-monitor`, tests read from the console without a shell, as LAVA's
//! `TestMonitorAction` does.
//!
//! For each monitor of the block (`name`, `start`, `end`, `pattern`, optional
//! `fixupdict`): wait for `start`, then match `end` (monitoring stops, `status: passed`)
//! or `pattern` (a test case) until the console's timeout (as in LAVA, that of the action
//! which opened the console, e.g. `connect-device`; within the action's own deadline)
//! passes without either
//! (`status: failed`, the action's result `fail`, monitoring stops) or the console closes
//! (ConnectionClosedError).
//! A `pattern` match with named groups `test_case_id` and `result` (mapped through
//! `fixupdict`, then one of pass/fail/skip/unknown) is a test case of the suite named
//! after the monitor (lower case, spaces as `-`), with `measurement` and `units` when
//! matched; without `result`, a `test_case_id` with a `measurement` is a passing case.

use super::console::{ConsoleConnection, on_console, wait_error};
use lava_connection::{ErrorKind as ConnErrorKind, Patterns};
use lava_pipeline::timeout::deadline_in;
use lava_pipeline::value::scalar_string;
use lava_pipeline::{ErrorKind, LavaError, LavaResult, RunContext};
use serde_yaml::{Mapping, Value};
use std::time::Duration;

/// One monitor of a `monitors` test block.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    /// The suite name (`name`).
    pub name: String,
    /// The text that starts monitoring (`start`).
    pub start: String,
    /// The text that ends monitoring (`end`).
    pub end: String,
    /// The test case pattern (`pattern`), with named groups.
    pub pattern: String,
    /// Result words mapped to LAVA's (`fixupdict`).
    pub fixupdict: Mapping,
}

impl Monitor {
    /// The monitors of a block's `monitors` list.
    pub fn from_params(params: &Mapping) -> Vec<Monitor> {
        let field = |m: &Value, k: &str| m.get(k).and_then(scalar_string).unwrap_or_default();
        params
            .get("monitors")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .map(|m| Monitor {
                name: field(m, "name"),
                start: field(m, "start"),
                end: field(m, "end"),
                pattern: field(m, "pattern"),
                fixupdict: m
                    .get("fixupdict")
                    .and_then(Value::as_mapping)
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// The suite name of the monitor's results.
    pub fn suite(&self) -> String {
        self.name.replace(' ', "-").to_lowercase()
    }
}

/// LAVA's test case id: trimmed, lower case, runs of non-word characters as `_`.
pub fn case_id(raw: &str) -> String {
    let lowered = raw.trim().to_lowercase();
    let mut out = String::new();
    let mut in_run = false;
    for c in lowered.chars() {
        if c.is_alphanumeric() || c == '_' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

/// The result record of a `pattern` match (its named groups in `groups`), or why none.
pub fn case_record(
    monitor: &Monitor,
    level: &str,
    groups: &std::collections::HashMap<String, String>,
) -> Result<Option<Mapping>, String> {
    let mut record = Mapping::new();
    let test_case_id = groups.get("test_case_id");
    if let Some(result) = groups.get("result") {
        let result = monitor
            .fixupdict
            .get(result.as_str())
            .and_then(scalar_string)
            .unwrap_or_else(|| result.clone());
        if !["pass", "fail", "skip", "unknown"].contains(&result.as_str()) {
            return Err(format!("error: bad test results: {result}"));
        }
        let Some(id) = test_case_id else {
            return Ok(None);
        };
        record.insert("definition".into(), monitor.suite().into());
        record.insert("case".into(), case_id(id).into());
        record.insert("level".into(), level.into());
        record.insert("result".into(), result.into());
        let mut extra = Mapping::new();
        extra.insert("test_case_id".into(), id.trim().into());
        record.insert("extra".into(), Value::Mapping(extra));
        if let Some(m) = groups.get("measurement") {
            record.insert("measurement".into(), m.clone().into());
        }
        if let Some(u) = groups.get("units") {
            record.insert("units".into(), u.clone().into());
        }
        return Ok(Some(record));
    }
    let (Some(id), Some(measurement)) = (test_case_id, groups.get("measurement")) else {
        return Ok(None);
    };
    if id.is_empty() || measurement.is_empty() {
        return Ok(None);
    }
    let value: f64 = measurement
        .trim()
        .parse()
        .map_err(|_| format!("error: bad measurement: {measurement}"))?;
    record.insert("definition".into(), monitor.suite().into());
    record.insert("case".into(), case_id(id).into());
    record.insert("level".into(), level.into());
    record.insert("result".into(), "pass".into());
    record.insert("measurement".into(), value.into());
    let mut extra = Mapping::new();
    extra.insert("test_case_id".into(), id.trim().into());
    record.insert("extra".into(), Value::Mapping(extra));
    if let Some(u) = groups.get("units") {
        record.insert("units".into(), u.clone().into());
    }
    Ok(Some(record))
}

/// The named groups of `pattern` matched against `text` (the text the console matched).
fn named_groups(pattern: &str, text: &str) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let Ok(regex) = regex::RegexBuilder::new(pattern)
        .dot_matches_new_line(true)
        .build()
    else {
        return out;
    };
    if let Some(captures) = regex.captures(text) {
        for name in regex.capture_names().flatten() {
            if let Some(m) = captures.name(name) {
                out.insert(name.to_string(), m.as_str().to_string());
            }
        }
    }
    out
}

/// `lava-test-monitor`: every monitor of the block, in order.
pub async fn run_monitors(ctx: &mut RunContext) -> LavaResult<()> {
    let monitors = Monitor::from_params(&ctx.meta().parameters);
    on_console!(ctx, console => monitor_all(ctx, console, &monitors))
}

async fn monitor_all(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    monitors: &[Monitor],
) -> LavaResult<()> {
    // LAVA waits with the console's own timeout: that of the action which opened it.
    let timeout = console
        .spawn_timeout
        .unwrap_or_else(|| Duration::from_secs(ctx.meta().connection_timeout.max(1)));
    let wait_deadline = |ctx: &RunContext| deadline_in(timeout).min(ctx.deadline());
    for monitor in monitors {
        ctx.logger
            .info(format!("Waiting for start message: {}", monitor.start));
        let start = Patterns::new(std::slice::from_ref(&monitor.start))?;
        let deadline = wait_deadline(ctx);
        match console.session().wait_for(&start, deadline).await {
            Ok(_) => {}
            Err(e)
                if e.kind() == ConnErrorKind::Timeout
                    && tokio::time::Instant::now() < ctx.deadline() =>
            {
                return Err(LavaError::job("wait for prompt timed out"));
            }
            Err(e) => return Err(wait_error(ctx, e)),
        }
        ctx.logger
            .info("ok: start string found, lava test monitoring started");
        let patterns = Patterns::new(&[monitor.end.clone(), monitor.pattern.clone()])?;
        loop {
            ctx.logger.debug(format!(
                "test monitoring timeout: {} seconds",
                timeout.as_secs()
            ));
            let deadline = wait_deadline(ctx);
            match console.session().wait_for(&patterns, deadline).await {
                Ok(found) if found.index == 0 => {
                    ctx.logger
                        .info("ok: end string found, lava test monitoring stopped");
                    ctx.set_result("status", "passed");
                    break;
                }
                Ok(found) => {
                    ctx.logger.info("ok: test case found");
                    let groups = named_groups(&monitor.pattern, &found.matched);
                    let level = ctx.meta().level.clone();
                    match case_record(monitor, &level, &groups) {
                        Ok(Some(record)) => {
                            if let Some(case) = record.get("case").and_then(Value::as_str) {
                                ctx.logger.debug(format!("test_case_id: {case}"));
                            }
                            ctx.logger.results(record);
                        }
                        Ok(None) => {}
                        Err(message) => ctx.logger.error(message),
                    }
                }
                Err(e) if e.kind() == ConnErrorKind::ConnectionClosed => {
                    ctx.logger
                        .warning("err: lava test monitoring reached end of file");
                    ctx.set_result("status", "failed");
                    return Err(LavaError::new(
                        ErrorKind::ConnectionClosed,
                        "Connection closed",
                    ));
                }
                Err(e)
                    if e.kind() == ConnErrorKind::Timeout
                        && tokio::time::Instant::now() < ctx.deadline() =>
                {
                    ctx.logger
                        .warning("err: lava test monitoring has timed out");
                    ctx.add_run_error("lava test monitoring has timed out");
                    ctx.set_result("status", "failed");
                    break;
                }
                Err(e) => return Err(wait_error(ctx, e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn monitor() -> Monitor {
        let params: Mapping = serde_yaml::from_str(
            "monitors:\n- name: Boot Tests\n  start: BOOT\n  end: DONE\n  pattern: '(?P<test_case_id>\\w+): (?P<result>PASS|FAIL)'\n  fixupdict: {PASS: pass, FAIL: fail}\n",
        )
        .unwrap();
        Monitor::from_params(&params).remove(0)
    }

    fn groups(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn results_follow_lava() {
        let m = monitor();
        assert_eq!(m.suite(), "boot-tests");
        let found = named_groups(&m.pattern, "crypto_test: FAIL");
        let record = case_record(&m, "3.1", &found).unwrap().unwrap();
        assert_eq!(record.get("case").unwrap(), "crypto_test");
        assert_eq!(record.get("result").unwrap(), "fail");
        assert_eq!(record.get("definition").unwrap(), "boot-tests");

        let err = case_record(
            &m,
            "3.1",
            &groups(&[("test_case_id", "x"), ("result", "MAYBE")]),
        );
        assert_eq!(err, Err("error: bad test results: MAYBE".into()));

        let measured = case_record(
            &m,
            "3.1",
            &groups(&[
                ("test_case_id", " Boot Time "),
                ("measurement", "1.5"),
                ("units", "s"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(measured.get("case").unwrap(), "boot_time");
        assert_eq!(measured.get("result").unwrap(), "pass");
        assert_eq!(measured.get("measurement").unwrap(), &Value::from(1.5));
        assert_eq!(
            case_record(&m, "3.1", &groups(&[("test_case_id", "x")])),
            Ok(None)
        );
    }

    #[test]
    fn case_ids_like_python() {
        assert_eq!(case_id(" Hello, World!! "), "hello_world_");
        assert_eq!(case_id("a--b c"), "a_b_c");
    }
}
