//! `cargo xtask conformance runnable`: how many of LAVA's corpus jobs lava-rs would run, not
//! only describe. Each case of `../shared/conformance/pipeline-cases*` goes through our
//! `lava-run --validate` (the corpus' host tools stood in, as for the pipeline
//! conformance); a job runs when validation passes, and the actions that stop the others
//! are counted from the "cannot run in lava-rs yet" lines validation reports.

use crate::pipeline::{CORPORA, host_tool_stubs};
use crate::shared::{build_bin, shared_dir};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

/// What validation said of one job.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Runs,
    /// Stopped by these actions (`action (method)`).
    Stops(Vec<String>),
    /// Failed validation for another reason (its first line).
    Invalid(String),
}

/// The actions named by `actions[N].section: action 'X' (method m) cannot run in lava-rs
/// yet` lines, as `X (m)`.
fn stopping_actions(log: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in log.lines() {
        let Some(at) = line.find(": action '") else {
            continue;
        };
        if !line.contains("cannot run in lava-rs yet") {
            continue;
        }
        let rest = &line[at + ": action '".len()..];
        let Some((action, after)) = rest.split_once('\'') else {
            continue;
        };
        let method = after
            .trim_start()
            .strip_prefix("(method ")
            .and_then(|m| m.split_once(')'))
            .map(|(m, _)| format!(" ({m})"))
            .unwrap_or_default();
        found.push(format!("{action}{method}"));
    }
    found.sort();
    found.dedup();
    found
}

fn validate(lava_run: &Path, case: &Path, path: &str) -> Result<Verdict> {
    let out = tempfile::tempdir()?;
    let mut command = Command::new(lava_run);
    command
        .args(["--job-id", "1", "--validate", "--output-dir"])
        .arg(out.path())
        .arg("--device")
        .arg(case.join("device.yaml"));
    for (flag, file) in [
        ("--dispatcher", "dispatcher.yaml"),
        ("--env-dut", "env-dut.yaml"),
    ] {
        if case.join(file).is_file() {
            command.arg(flag).arg(case.join(file));
        }
    }
    let output = command
        .arg(case.join("job.yaml"))
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", lava_run.display()))?;
    if output.status.success() {
        return Ok(Verdict::Runs);
    }
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stops = stopping_actions(&log);
    if !stops.is_empty() {
        return Ok(Verdict::Stops(stops));
    }
    Ok(Verdict::Invalid(job_error(&log)))
}

/// The job's `error_msg` from its `job` result record (the last one), on one line.
fn job_error(log: &str) -> String {
    log.lines()
        .rev()
        .filter(|l| l.contains("\"error_msg\""))
        .find_map(|l| {
            let record: serde_yaml::Value = serde_yaml::from_str(l).ok()?;
            let message = record.get("msg")?.get("error_msg")?.as_str()?;
            Some(message.trim().replace('\n', "; "))
        })
        .unwrap_or_else(|| "no job error in the log".into())
}

/// Prints `N of M run` and what stops the rest, action by action.
pub fn report(filter: Option<&str>) -> Result<bool> {
    let Some(shared) = shared_dir() else {
        anyhow::ensure!(
            !crate::shared::in_ci(),
            "CI=true but ../shared/conformance (LAVA's corpus) is absent"
        );
        println!("runnable share skipped: ../shared/conformance is absent");
        return Ok(true);
    };
    let conformance = shared.join("conformance");
    let lava_run = build_bin("lava-dispatch", "lava-run")?;
    let stubs = host_tool_stubs(&conformance)?;
    let path = format!(
        "{}:{}",
        stubs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (mut total, mut runs) = (0, 0);
    let mut stops: BTreeMap<String, usize> = BTreeMap::new();
    let mut invalid = Vec::new();
    for corpus in CORPORA {
        let Ok(entries) = std::fs::read_dir(conformance.join(corpus)) else {
            continue;
        };
        let mut cases: Vec<_> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        cases.sort();
        for case in cases.iter().filter(|c| c.join("job.yaml").is_file()) {
            let name = case.file_name().unwrap_or_default().to_string_lossy();
            if filter.is_some_and(|f| !name.contains(f)) {
                continue;
            }
            total += 1;
            match validate(&lava_run, case, &path)? {
                Verdict::Runs => runs += 1,
                Verdict::Stops(actions) => {
                    for action in actions {
                        *stops.entry(action).or_default() += 1;
                    }
                }
                Verdict::Invalid(why) => invalid.push(format!("{corpus}/{name}: {why}")),
            }
        }
    }
    println!("{runs} of {total} run");
    let mut ranked: Vec<(&String, &usize)> = stops.iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if !ranked.is_empty() {
        println!("what stops (action × jobs):");
        for (action, count) in ranked {
            println!("  {action} × {count}");
        }
    }
    for line in &invalid {
        println!("fails validation: {line}");
    }
    Ok(invalid.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_error_is_read_from_the_job_result_record() {
        let log = "{\"lvl\": \"error\", \"msg\": \"JobError: Your job cannot terminate cleanly.\"}\n\
                   {\"lvl\": \"results\", \"msg\": {\"case\": \"job\", \"result\": \"fail\", \"error_msg\": \"Invalid job data: ['x']\\n\", \"error_type\": \"Job\"}}\n";
        assert_eq!(job_error(log), "Invalid job data: ['x']");
        assert_eq!(job_error("{}"), "no job error in the log");
    }

    #[test]
    fn the_stopping_actions_are_read_from_validation_lines() {
        let log = "{\"msg\": \"x\"}\n\
                   actions[1].boot: action 'wait-device-path' (method u-boot) cannot run in lava-rs yet\n\
                   actions[0].deploy: action 'dd-image' (method usb) cannot run in lava-rs yet\n\
                   actions[2].boot: action 'wait-device-path' (method u-boot) cannot run in lava-rs yet\n\
                   actions[3].test: action 'lava-test-service' cannot run in lava-rs yet\n";
        assert_eq!(
            stopping_actions(log),
            [
                "dd-image (usb)",
                "lava-test-service",
                "wait-device-path (u-boot)"
            ]
        );
    }
}
