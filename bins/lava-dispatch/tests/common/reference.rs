//! The reference runs' shared parts: LAVA's `lava-run` where Debian installs it, the result
//! set of a run read from either dispatcher's log, and an owned, bounded wait for a run.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_yaml::Value;

use lava_test_support::ci::skip_or_fail;
use lava_test_support::process::OwnedDispatcher;

/// LAVA's dispatcher, as Debian's `lava-dispatcher` installs it.
pub const LAVA_RUN: &str = "/usr/bin/lava-run";
/// Where LAVA's `lava-run` keeps each job's files (`<dir>/<job id>`).
pub const LAVA_WORK_DIR: &str = "/var/lib/lava/dispatcher/tmp";

/// One test-suite case as both dispatchers report it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TestCase {
    pub suite: String,
    pub case: String,
    pub result: String,
    pub measurement: Option<String>,
    pub units: Option<String>,
}

/// What the comparison looks at: the test-suite cases (sorted) and the `lava` suite's job result.
#[derive(Debug, PartialEq, Eq)]
pub struct ResultSet {
    pub cases: Vec<TestCase>,
    pub job: Option<String>,
}

/// The result set of a log: our `logs.yaml` (`- {...}` lines) or LAVA's stderr (`{...}` lines).
pub fn result_set(log: &str) -> ResultSet {
    let mut cases = Vec::new();
    let mut job = None;
    for msg in messages(log, "results") {
        let field = |key: &str| msg.get(key).and_then(scalar);
        let (Some(suite), Some(case)) = (field("definition"), field("case")) else {
            continue;
        };
        if suite == "lava" {
            if case == "job" {
                job = field("result");
            }
            continue;
        }
        cases.push(TestCase {
            suite,
            case,
            result: field("result").unwrap_or_default(),
            measurement: field("measurement"),
            units: field("units"),
        });
    }
    cases.sort();
    ResultSet { cases, job }
}

/// The `msg` of every record of level `level` in a log: our `logs.yaml` (`- {...}` lines)
/// or LAVA's stderr (`{...}` lines); both write the level as `"lvl": "<level>"`.
fn messages<'a>(log: &'a str, level: &str) -> impl Iterator<Item = Value> + 'a {
    let marker = format!("\"lvl\": \"{level}\"");
    log.lines()
        .filter(move |line| line.contains(&marker))
        .filter_map(|line| {
            let item = serde_yaml::from_str::<Value>(line.trim_start_matches("- ")).ok()?;
            item.get("msg").cloned()
        })
}

/// The `extra` of the `lava` suite's result record of action `case` (`execute-qemu`),
/// every value as text.
pub fn action_extra(log: &str, case: &str) -> Option<std::collections::BTreeMap<String, String>> {
    messages(log, "results").find_map(|msg| {
        let field = |key: &str| msg.get(key).and_then(scalar);
        if field("definition")? != "lava" || field("case")? != case {
            return None;
        }
        let extra = msg.get("extra")?.as_mapping()?;
        Some(
            extra
                .iter()
                .filter_map(|(k, v)| Some((scalar(k)?, scalar(v)?)))
                .collect(),
        )
    })
}

/// The first `info` message that starts with `prefix`.
pub fn info_line(log: &str, prefix: &str) -> Option<String> {
    messages(log, "info").find_map(|msg| scalar(&msg).filter(|text| text.starts_with(prefix)))
}

/// A scalar as text, seen through YAML tags (both logs write numbers as `! "42.0"`).
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::Tagged(tagged) => scalar(&tagged.value),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The last lines of a log, for assertion messages.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Wait for `dispatcher` to exit; past `limit`, stop it and fail.
pub fn wait(mut dispatcher: OwnedDispatcher, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = dispatcher.try_wait().expect("waiting for the dispatcher") {
            return status;
        }
        if Instant::now() >= deadline {
            dispatcher.stop();
            panic!("the dispatcher did not finish within {limit:?}; stopped it");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Start `command` owned (see [`OwnedDispatcher`]).
pub fn spawn(mut command: Command, marker: String) -> OwnedDispatcher {
    OwnedDispatcher::spawn(&mut command, marker)
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"))
}

/// Whether Debian's `lava-run` is installed; when not, says so (a failure under `CI=true`).
pub fn lava_installed() -> bool {
    if Path::new(LAVA_RUN).is_file() {
        return true;
    }
    skip_or_fail(format!(
        "{LAVA_RUN} is missing (Debian's lava-dispatcher: scripts/install-test-deps.sh)"
    ));
    false
}

/// A job for a rig's device: the job file, the rendered device file and the dispatcher
/// configuration, as both dispatchers take them.
pub struct JobOnDevice<'a> {
    /// The job definition.
    pub job: &'a Path,
    /// The rendered device file (`--device`).
    pub device: &'a Path,
    /// The dispatcher configuration (`--dispatcher`).
    pub dispatcher: &'a Path,
}

impl JobOnDevice<'_> {
    fn command(&self, program: &Path, job_id: &str, output_dir: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .arg("--job-id")
            .arg(job_id)
            .arg("--output-dir")
            .arg(output_dir)
            .arg("--device")
            .arg(self.device)
            .arg("--dispatcher")
            .arg(self.dispatcher)
            .arg(self.job)
            .stdout(Stdio::null());
        command
    }

    /// Run it with our `lava-run`, output under `out`, bounded by `limit`: its exit status
    /// and its log (`out/logs.yaml`, empty when missing).
    pub fn run_ours(&self, job_id: &str, out: &Path, limit: Duration) -> (ExitStatus, String) {
        let mut ours = self.command(&super::lava_run(), job_id, out);
        ours.stderr(Stdio::null());
        let status = wait(spawn(ours, format!("lava-rs-{job_id}/")), limit);
        let log = std::fs::read_to_string(out.join("logs.yaml")).unwrap_or_default();
        (status, log)
    }

    /// Run it with Debian's `lava-run` ([`LAVA_RUN`]), output under `scratch/lava`, its log
    /// (stderr, as run without `--url`) kept in `scratch/lava-stderr.log`, bounded by `limit`:
    /// its exit status and that log.
    pub fn run_lava(&self, job_id: u32, scratch: &Path, limit: Duration) -> (ExitStatus, String) {
        let log_path = scratch.join("lava-stderr.log");
        let mut lava = self.command(
            Path::new(LAVA_RUN),
            &job_id.to_string(),
            &scratch.join("lava"),
        );
        lava.stderr(std::fs::File::create(&log_path).unwrap());
        let status = wait(spawn(lava, format!("{LAVA_WORK_DIR}/{job_id}/")), limit);
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        (status, log)
    }
}
