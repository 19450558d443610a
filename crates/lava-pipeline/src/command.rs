//! The protected command runner: every process the dispatcher starts goes through here.
//!
//! Commands are argv vectors (job strings are never interpreted by a host shell), run
//! with a deadline, killed (whole process group) when the deadline passes or the future
//! is dropped, and their output is logged line by line as `>> <line>` debug records.
//! A missing tool is an InfrastructureError; a failing command gets the kind the caller
//! chooses (InfrastructureError for lab commands, JobError for user-supplied ones).

use crate::error::{ErrorKind, LavaError, LavaResult};
use crate::log::JobLogger;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

/// The outcome of a finished command.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The exit code; -1 when the process was killed by a signal.
    pub status: i32,
    /// stdout and stderr, interleaved as read.
    pub output: String,
}

/// Run `argv` until it exits or `deadline` passes; log its output; fail with
/// `failure_kind` on a non-zero exit (unless `allow_fail`).
pub async fn run_command(
    logger: &JobLogger,
    argv: &[String],
    cwd: Option<&Path>,
    deadline: Instant,
    failure_kind: ErrorKind,
    allow_fail: bool,
) -> LavaResult<CommandOutput> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| LavaError::bug("run_command needs a non-empty argv"))?;
    logger.debug(format!(
        "Calling: {}",
        crate::value::python_repr(&serde_yaml::Value::Sequence(
            argv.iter()
                .map(|a| serde_yaml::Value::String(a.clone()))
                .collect()
        ))
    ));
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let start = std::time::Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| LavaError::infrastructure(format!("Unable to run {program:?}: {e}")))?;
    let pgid = child.id();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let collect = async {
        let mut output = String::new();
        let mut out_lines = BufReader::new(stdout).lines();
        let mut err_lines = BufReader::new(stderr).lines();
        let (mut out_done, mut err_done) = (false, false);
        while !(out_done && err_done) {
            tokio::select! {
                line = out_lines.next_line(), if !out_done => match line {
                    Ok(Some(l)) => { logger.debug(format!(">> {l}")); output.push_str(&l); output.push('\n'); }
                    _ => out_done = true,
                },
                line = err_lines.next_line(), if !err_done => match line {
                    Ok(Some(l)) => { logger.debug(format!(">> {l}")); output.push_str(&l); output.push('\n'); }
                    _ => err_done = true,
                },
            }
        }
        let status = child.wait().await;
        (output, status)
    };
    let (output, status) = match tokio::time::timeout_at(deadline, collect).await {
        Ok(r) => r,
        Err(_) => {
            kill_group(pgid);
            return Err(LavaError::new(
                failure_kind,
                format!(
                    "Command {program:?} timed out after {} seconds",
                    start.elapsed().as_secs()
                ),
            ));
        }
    };
    let status = status
        .map_err(|e| LavaError::infrastructure(format!("Unable to wait for {program:?}: {e}")))?
        .code()
        .unwrap_or(-1);
    logger.debug(format!(
        "Returned {status} in {} seconds",
        start.elapsed().as_secs()
    ));
    if status != 0 && !allow_fail {
        let shown = argv.join(" ");
        logger.error(format!("Unable to run: {shown}"));
        return Err(LavaError::new(
            failure_kind,
            format!("Unable to run: '{shown}' (exit code {status})"),
        ));
    }
    Ok(CommandOutput { status, output })
}

/// Kill a whole process group (best effort; the group may already be gone).
pub fn kill_group(pid: Option<u32>) {
    let pid = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn runs_logs_and_classifies() {
        let logger = JobLogger::capturing();
        let deadline = Instant::now() + Duration::from_secs(10);
        let ok = run_command(
            &logger,
            &["sh".into(), "-c".into(), "echo hi; echo err >&2".into()],
            None,
            deadline,
            ErrorKind::Infrastructure,
            false,
        )
        .await
        .unwrap();
        assert_eq!(ok.status, 0);
        assert!(ok.output.contains("hi\n") && ok.output.contains("err\n"));
        assert!(logger.captured().iter().any(|l| l.contains(">> hi")));
        let failed = run_command(
            &logger,
            &["false".into()],
            None,
            deadline,
            ErrorKind::Job,
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(failed.kind, ErrorKind::Job);
        let missing = run_command(
            &logger,
            &["/nonexistent/tool".into()],
            None,
            deadline,
            ErrorKind::Job,
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(missing.kind, ErrorKind::Infrastructure);
    }

    #[tokio::test]
    async fn deadline_kills_the_process_group() {
        let logger = JobLogger::capturing();
        let deadline = Instant::now() + Duration::from_millis(300);
        let started = std::time::Instant::now();
        let err = run_command(
            &logger,
            &["sh".into(), "-c".into(), "sleep 30 & sleep 30".into()],
            None,
            deadline,
            ErrorKind::Infrastructure,
            false,
        )
        .await
        .unwrap_err();
        assert!(err.message.contains("timed out"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
