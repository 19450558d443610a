//! Real processes on a pseudo-terminal.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::in_secs;
use lava_connection::{
    ErrorKind, MemoryLog, PtyCommand, PtyTransport, SessionConfig, ShellSession, Transport,
};

const PROMPT: &str = "lava-test: # ";

fn shell_with_prompt(log: &Arc<MemoryLog>) -> ShellSession {
    let command = PtyCommand::new(["/bin/sh"])
        .env("PS1", PROMPT)
        .env("ENV", "");
    let config = SessionConfig::default().with_prompts(&[PROMPT]);
    ShellSession::spawn(command, log.clone(), config).unwrap()
}

/// Lines of `text` (pty output uses `\r\n`).
fn lines(text: &str) -> Vec<&str> {
    text.split('\n').map(|l| l.trim_end_matches('\r')).collect()
}

#[tokio::test]
async fn shell_commands_and_prompts() {
    let log = Arc::new(MemoryLog::new());
    let mut shell = shell_with_prompt(&log);
    shell.wait_for_prompt(in_secs(10.0)).await.unwrap();

    shell.sendline("echo $((6 * 7))").await.unwrap();
    let found = shell.wait_for_prompt(in_secs(10.0)).await.unwrap();
    // The terminal echoes the command, then the output follows.
    assert_eq!(lines(&found.before), ["echo $((6 * 7))", "42", ""]);

    shell.sendline("printf 'rc=%s\\n' 3").await.unwrap();
    let found = shell.expect(&[r"rc=(\d+)"], in_secs(10.0)).await.unwrap();
    assert_eq!(found.group(1), Some("3"));
    shell.wait_for_prompt(in_secs(10.0)).await.unwrap();

    shell.disconnect("test done").await.unwrap();
    let target = log.target_lines();
    assert!(target.contains(&"42".to_string()), "{target:?}");
    assert!(target.contains(&"rc=3".to_string()), "{target:?}");
    assert_eq!(
        log.input_lines(),
        ["echo $((6 * 7))", "printf 'rc=%s\\n' 3"]
    );
}

#[tokio::test]
async fn stale_prompt_regression() {
    // LAVA's stale buffer: a prompt already seen must not end the wait for the next
    // command; the wait ends at the prompt printed after that command's output.
    let log = Arc::new(MemoryLog::new());
    let mut shell = shell_with_prompt(&log);
    shell.wait_for_prompt(in_secs(10.0)).await.unwrap();
    // Two prompts at once: one is consumed per wait.
    shell.sendline("").await.unwrap();
    shell.sendline("").await.unwrap();
    shell.wait_for_prompt(in_secs(10.0)).await.unwrap();
    shell.wait_for_prompt(in_secs(10.0)).await.unwrap();
    // The output of a slow command comes before the matched prompt.
    shell.sendline("sleep 0.3; echo fin''ished").await.unwrap();
    let found = shell.wait_for_prompt(in_secs(10.0)).await.unwrap();
    assert!(
        lines(&found.before).contains(&"finished"),
        "{:?}",
        found.before
    );
    let err = shell.wait_for_prompt(in_secs(0.3)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn end_of_file_when_the_command_exits() {
    let log = Arc::new(MemoryLog::new());
    let command = PtyCommand::from_command_line("/bin/sh -c 'echo bye; printf tail'").unwrap();
    let mut shell = ShellSession::spawn(command, log.clone(), SessionConfig::default()).unwrap();
    let err = shell
        .expect(&["never printed"], in_secs(10.0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{err}");
    assert!(shell.at_eof());
    assert_eq!(log.target_lines(), ["bye", "tail"]);
}

#[tokio::test]
async fn timeout_while_the_device_is_silent() {
    let log = Arc::new(MemoryLog::new());
    let command = PtyCommand::new(["sleep", "30"]);
    let mut shell = ShellSession::spawn(command, log, SessionConfig::default()).unwrap();
    let started = tokio::time::Instant::now();
    let err = shell.expect(&["login:"], in_secs(0.3)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.to_string().contains("\"login:\""), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn missing_command_is_an_infrastructure_error() {
    let err = PtyCommand::new(["/nonexistent/lava-connect"])
        .spawn()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Infrastructure);
    assert!(
        err.to_string().contains("/nonexistent/lava-connect"),
        "{err}"
    );
}

/// Processes (pid, state) whose process group is `pgid`, from /proc.
fn group_members(pgid: u32) -> BTreeSet<(u32, char)> {
    proc_stat_matching(|p| p.pgrp == pgid)
}

async fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

#[tokio::test]
async fn drop_kills_the_whole_process_group_and_reaps() {
    let transport = PtyCommand::new(["/bin/sh", "-c", "sleep 1000 & sleep 1000 & wait"])
        .spawn()
        .unwrap();
    let leader = transport.pid();
    assert!(
        wait_until(|| group_members(leader).len() >= 3).await,
        "children never started: {:?}",
        group_members(leader)
    );
    let children: Vec<u32> = group_members(leader)
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|&pid| pid != leader)
        .collect();
    drop(transport);
    // The leader is our child: it must be gone entirely (reaped, no zombie).
    assert!(
        !std::path::Path::new(&format!("/proc/{leader}")).exists(),
        "leader {leader} still present after drop"
    );
    // The grandchildren were killed (at most zombies waiting for init to reap them).
    assert!(
        wait_until(|| group_members(leader).iter().all(|&(_, state)| state == 'Z')).await,
        "live members remain: {:?}",
        group_members(leader)
    );
    for pid in children {
        let state = group_members(leader)
            .into_iter()
            .find(|&(p, _)| p == pid)
            .map(|(_, s)| s);
        assert!(matches!(state, None | Some('Z')), "{pid} is {state:?}");
    }
}

#[tokio::test]
async fn close_ends_the_command_gracefully() {
    let mut transport: PtyTransport = PtyCommand::new(["/bin/sh", "-c", "sleep 1000"])
        .spawn()
        .unwrap();
    let leader = transport.pid();
    transport.close(Duration::from_secs(2)).await.unwrap();
    let status = transport.try_exit_status().expect("reaped");
    assert!(!status.success());
    assert!(!std::path::Path::new(&format!("/proc/{leader}")).exists());
}

#[tokio::test]
async fn session_drop_leaves_no_child() {
    let log = Arc::new(MemoryLog::new());
    let mut shell = shell_with_prompt(&log);
    shell.wait_for_prompt(in_secs(10.0)).await.unwrap();
    shell.sendline("sleep 1000 &").await.unwrap();
    shell.wait_for_prompt(in_secs(10.0)).await.unwrap();
    let shell_pid = shell.process_id().expect("a pty command has a pid");
    // The shell is interactive: job control puts the background job in a group of its
    // own, inside the terminal's session.
    assert!(
        wait_until(|| session_members(shell_pid).len() >= 2).await,
        "the background job never started: {:?}",
        session_members(shell_pid)
    );
    drop(shell);
    assert!(!std::path::Path::new(&format!("/proc/{shell_pid}")).exists());
    // Every process of the terminal's session is gone, whatever group job control put
    // the background job in.
    assert!(
        wait_until(|| session_members(shell_pid).iter().all(|&(_, s)| s == 'Z')).await,
        "{:?}",
        session_members(shell_pid)
    );
}

/// Processes (pid, state) whose session is `sid`, from /proc.
fn session_members(sid: u32) -> BTreeSet<(u32, char)> {
    proc_stat_matching(|p| p.session == sid)
}

fn proc_stat_matching(keep: impl Fn(&lava_procfs::ProcessStat) -> bool) -> BTreeSet<(u32, char)> {
    lava_procfs::processes()
        .iter()
        .filter(|p| keep(p))
        .map(|p| (p.pid, p.state))
        .collect()
}
