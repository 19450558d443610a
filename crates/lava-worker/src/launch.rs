//! Starting one job as LAVA's worker does: the job directory `<worker-dir>/tmp/<prefix><id>/`
//! with `job.yaml`, `device.yaml`, `dispatcher.yaml`, `env-dut.yaml` (when given), the
//! child's environment from the server's `env` ([`child_environment`]), and `lava-run` with
//! LAVA's arguments ([`lava_run_arguments`]) under `nice`, in a process group of its own,
//! its standard output and error in the job directory's `stdout` and `stderr` files.
//! [`collect_outputs`] reads what the worker reports at the end.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::client::{Finished, JobFiles};
use crate::config::WorkerConfig;
use crate::error::WorkerError;

/// The `prefix` of a dispatcher configuration (a mapping's `prefix` string), else `""`.
pub fn dispatcher_prefix(dispatcher: &str) -> String {
    #[derive(Deserialize)]
    struct WithPrefix {
        #[serde(default)]
        prefix: Option<serde_yaml::Value>,
    }
    match serde_yaml::from_str::<WithPrefix>(dispatcher) {
        Ok(WithPrefix {
            prefix: Some(serde_yaml::Value::String(prefix)),
        }) => prefix,
        _ => String::new(),
    }
}

/// The server's `env` file: `purge`, `removes`, `overrides`.
#[derive(Debug, Default, Deserialize)]
struct EnvConfig {
    #[serde(default)]
    purge: bool,
    #[serde(default)]
    removes: Vec<String>,
    #[serde(default)]
    overrides: BTreeMap<String, serde_yaml::Value>,
}

/// The child's environment: the worker's own (or none with `purge: true`), without the
/// `removes`, with the `overrides`. `env` is the server's YAML text (empty: unchanged).
pub fn child_environment(
    env: &str,
    own: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<(OsString, OsString)>, String> {
    let config: EnvConfig = if env.trim().is_empty() {
        EnvConfig::default()
    } else {
        serde_yaml::from_str::<Option<EnvConfig>>(env)
            .map_err(|e| format!("env: expected a mapping of purge, removes and overrides: {e}"))?
            .unwrap_or_default()
    };
    let mut vars: BTreeMap<OsString, OsString> = if config.purge {
        BTreeMap::new()
    } else {
        own.into_iter().collect()
    };
    for name in &config.removes {
        vars.remove(&OsString::from(name));
    }
    for (name, value) in config.overrides {
        let text = match value {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Null => String::new(),
            other => serde_yaml::to_string(&other)
                .map_err(|e| format!("env: overrides.{name}: {e}"))?
                .trim_end()
                .to_string(),
        };
        vars.insert(name.into(), text.into());
    }
    Ok(vars.into_iter().collect())
}

/// LAVA's `lava-run` arguments, in the reference's order.
pub fn lava_run_arguments(
    config: &WorkerConfig,
    dir: &Path,
    id: u64,
    token: &str,
    with_env_dut: bool,
) -> Vec<OsString> {
    let path = |name: &str| -> OsString {
        let mut arg = OsString::new();
        arg.push(dir.join(name));
        arg
    };
    let option = |name: &str, value: OsString| -> OsString {
        let mut arg = OsString::from(format!("--{name}="));
        arg.push(value);
        arg
    };
    let mut args = vec![
        option("device", path("device.yaml")),
        option("dispatcher", path("dispatcher.yaml")),
        option("output-dir", dir.as_os_str().to_owned()),
        option("job-id", id.to_string().into()),
        option("url", config.url.clone().into()),
        option("token", token.into()),
        option(
            "job-log-interval",
            config.job_log_interval.to_string().into(),
        ),
    ];
    if config.debug {
        args.push("--debug".into());
    }
    args.push(path("job.yaml"));
    if with_env_dut {
        args.push(option("env-dut", path("env-dut.yaml")));
    }
    args
}

/// A started job: its directory and its process (or why none started).
#[derive(Debug)]
pub struct Launched {
    /// `<worker-dir>/tmp/<prefix><id>`.
    pub dir: PathBuf,
    /// The dispatcher configuration's prefix.
    pub prefix: String,
    /// lava-run's pid and start ticks; `Err` with the reason (already written to the
    /// job's `stderr` file) when it could not start.
    pub process: Result<(i32, u64), String>,
}

/// Write the job directory and start lava-run. An error is returned only when the job
/// directory cannot be written; a failed start is `Launched::process`'s `Err`.
pub fn launch(
    config: &WorkerConfig,
    id: u64,
    token: &str,
    files: &JobFiles,
) -> Result<Launched, WorkerError> {
    let prefix = dispatcher_prefix(&files.dispatcher);
    let dir = config.jobs_dir().join(format!("{prefix}{id}"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(|e| WorkerError::io(&dir, e))?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| WorkerError::io(path, e))
    };
    write("job.yaml", &files.definition)?;
    write("device.yaml", &files.device)?;
    write("dispatcher.yaml", &files.dispatcher)?;
    let with_env_dut = !files.env_dut.is_empty();
    if with_env_dut {
        write("env-dut.yaml", &files.env_dut)?;
    }
    let process = spawn(config, &dir, id, token, files, with_env_dut);
    if let Err(reason) = &process {
        write("stderr", reason)?;
    }
    Ok(Launched {
        dir,
        prefix,
        process,
    })
}

fn spawn(
    config: &WorkerConfig,
    dir: &Path,
    id: u64,
    token: &str,
    files: &JobFiles,
    with_env_dut: bool,
) -> Result<(i32, u64), String> {
    let environment = child_environment(&files.env, std::env::vars_os())?;
    let mut command = if config.nice {
        let mut command = Command::new("nice");
        command.arg(&config.lava_run);
        command
    } else {
        Command::new(&config.lava_run)
    };
    command
        .args(lava_run_arguments(config, dir, id, token, with_env_dut))
        .env_clear()
        .envs(environment)
        .stdin(Stdio::null())
        .process_group(0);
    if !config.debug {
        let open = |name: &str| {
            std::fs::File::create(dir.join(name))
                .map_err(|e| format!("cannot create {}: {e}", dir.join(name).display()))
        };
        command.stdout(open("stdout")?).stderr(open("stderr")?);
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", config.lava_run.display()))?;
    let pid = child.id() as i32;
    // The Child handle is dropped without waiting: the supervisor reaps the pid
    // (process::probe), also after a restart of the worker.
    drop(child);
    let ticks = lava_procfs::start_ticks(pid as u32).unwrap_or(0);
    Ok((pid, ticks))
}

/// What lava-run left for the final report: `result.yaml`'s result and error type (`fail`
/// and `Bug` without it; an empty error type for a pass), `stderr` as `errors` (NUL
/// characters dropped), `description.yaml` as the description.
pub fn collect_outputs(dir: &Path) -> Finished {
    #[derive(Deserialize)]
    struct JobResult {
        result: Option<String>,
        error_type: Option<String>,
    }
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let parsed = serde_yaml::from_str::<JobResult>(&read("result.yaml")).ok();
    let result = parsed
        .as_ref()
        .and_then(|r| r.result.clone())
        .filter(|r| r == "pass" || r == "fail")
        .unwrap_or_else(|| "fail".to_string());
    let error_type = parsed
        .and_then(|r| r.error_type)
        .unwrap_or_else(|| if result == "pass" { "" } else { "Bug" }.to_string());
    Finished {
        result,
        error_type,
        errors: read("stderr").replace('\0', ""),
        description: read("description.yaml"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_comes_from_a_mapping_only() {
        assert_eq!(
            dispatcher_prefix("prefix: lab1-\ndispatcher_ip: 1.2.3.4\n"),
            "lab1-"
        );
        assert_eq!(dispatcher_prefix(""), "");
        assert_eq!(dispatcher_prefix("- a\n"), "");
        assert_eq!(dispatcher_prefix("prefix: [1]\n"), "");
    }

    #[test]
    fn the_environment_follows_purge_removes_overrides() {
        let own = || {
            vec![
                (OsString::from("PATH"), OsString::from("/bin")),
                (OsString::from("HOME"), OsString::from("/root")),
            ]
        };
        let mut sorted = own();
        sorted.sort();
        assert_eq!(child_environment("", own()).unwrap(), sorted);
        let env =
            child_environment("removes: [HOME]\noverrides: {LANG: C, N: 3}\n", own()).unwrap();
        let names: Vec<_> = env.iter().map(|(k, v)| format!("{k:?}={v:?}")).collect();
        assert_eq!(
            names,
            ["\"LANG\"=\"C\"", "\"N\"=\"3\"", "\"PATH\"=\"/bin\""]
        );
        let purged = child_environment("purge: true\noverrides: {A: b}\n", own()).unwrap();
        assert_eq!(purged, vec![("A".into(), "b".into())]);
        let err = child_environment("removes: 3\n", own()).unwrap_err();
        assert!(err.starts_with("env:"), "{err}");
    }

    #[test]
    fn lava_run_gets_lavas_arguments_in_lavas_order() {
        let mut config = WorkerConfig::new("w1", "http://lava.lab/").unwrap();
        let dir = Path::new("/w/tmp/8124");
        let args = lava_run_arguments(&config, dir, 8124, "tok", true);
        assert_eq!(
            args,
            [
                "--device=/w/tmp/8124/device.yaml",
                "--dispatcher=/w/tmp/8124/dispatcher.yaml",
                "--output-dir=/w/tmp/8124",
                "--job-id=8124",
                "--url=http://lava.lab",
                "--token=tok",
                "--job-log-interval=5",
                "/w/tmp/8124/job.yaml",
                "--env-dut=/w/tmp/8124/env-dut.yaml",
            ]
        );
        config.debug = true;
        let args = lava_run_arguments(&config, dir, 1, "t", false);
        assert_eq!(args[7], "--debug");
        assert_eq!(args.len(), 9);
    }

    #[test]
    fn outputs_default_to_lavas_fail_and_bug() {
        let dir = tempfile::tempdir().unwrap();
        let missing = collect_outputs(dir.path());
        assert_eq!(
            (missing.result.as_str(), missing.error_type.as_str()),
            ("fail", "Bug")
        );
        std::fs::write(
            dir.path().join("result.yaml"),
            "definition: lava\ncase: job\nresult: fail\nerror_type: Canceled\nerror_msg: x\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("stderr"), "oops\0\n").unwrap();
        std::fs::write(dir.path().join("description.yaml"), "job: {}\n").unwrap();
        let found = collect_outputs(dir.path());
        assert_eq!(found.error_type, "Canceled");
        assert_eq!(found.errors, "oops\n");
        assert_eq!(found.description, "job: {}\n");
        std::fs::write(dir.path().join("result.yaml"), "result: pass\n").unwrap();
        let pass = collect_outputs(dir.path());
        assert_eq!(
            (pass.result.as_str(), pass.error_type.as_str()),
            ("pass", "")
        );
    }
}
