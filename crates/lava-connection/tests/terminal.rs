//! The session answers a device's cursor position questions (`ESC [ 6 n`) as a terminal
//! does, and the answer goes before the next line typed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{dribbling_pipe, in_secs};
use lava_connection::{LogLevel, MemoryLog, PtyCommand, SessionConfig, ShellSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const PROMPT: &str = "lava-test: # ";

/// Reads exactly `len` bytes the session sent.
async fn typed(device: &mut DuplexStream, len: usize) -> String {
    let mut bytes = vec![0; len];
    tokio::time::timeout(Duration::from_secs(5), device.read_exact(&mut bytes))
        .await
        .expect("the session sends")
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn a_question_arriving_after_the_prompt_matched_is_answered_before_the_next_line() {
    let (transport, mut device) = dribbling_pipe();
    let log = Arc::new(MemoryLog::new());
    let config = SessionConfig::default().with_prompts(&[PROMPT]);
    let mut shell = ShellSession::new(transport, log.clone(), config).unwrap();

    // First prompt: the question comes with it and is answered while waiting.
    let (mut device, answer) = tokio::join!(
        async move {
            device
                .write_all(b"booting\r\nlava-test: # \x1b[6n")
                .await
                .unwrap();
            let answer = typed(&mut device, 7).await;
            (device, answer)
        },
        async { shell.expect(&[r"\x1b\[6n"], in_secs(5.0)).await.unwrap() },
    )
    .0;
    assert_eq!(answer, "\x1b[2;14R");

    // Second prompt: the prompt matches before its question arrives; sendline waits
    // for the question and answers it first.
    let device = tokio::spawn(async move {
        device.write_all(b"\r\nlava-test: # ").await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
        device.write_all(b"\x1b[6n").await.unwrap();
        typed(&mut device, 10).await
    });
    shell.wait_for_prompt(in_secs(5.0)).await.unwrap();
    shell.sendline("ls").await.unwrap();
    assert_eq!(device.await.unwrap(), "\x1b[3;14Rls\n");

    let notes: Vec<String> = log
        .records()
        .into_iter()
        .filter(|r| r.level == LogLevel::Debug && r.text.contains("ESC [ 6 n"))
        .map(|r| r.text)
        .collect();
    assert_eq!(notes.len(), 1, "said once per session: {notes:?}");
}

#[tokio::test]
async fn with_answers_off_questions_go_unanswered() {
    let (transport, mut device) = dribbling_pipe();
    let log = Arc::new(MemoryLog::new());
    let config = SessionConfig {
        answer_cursor_queries: false,
        ..SessionConfig::default().with_prompts(&[PROMPT])
    };
    let mut shell = ShellSession::new(transport, log, config).unwrap();
    let device = tokio::spawn(async move {
        device.write_all(b"lava-test: # \x1b[6n").await.unwrap();
        typed(&mut device, 3).await
    });
    shell.expect(&[r"\x1b\[6n"], in_secs(5.0)).await.unwrap();
    shell.sendline("ls").await.unwrap();
    assert_eq!(device.await.unwrap(), "ls\n");
}

/// BusyBox's own shell on a pty: it asks after each prompt, and with every answer ahead
/// of the line it belongs to, no answer is left over for a command reading its input.
#[tokio::test]
async fn busybox_ash_gets_its_answers_before_each_command() {
    if !lava_test_support::ci::require_tool("busybox", "apt-get install busybox-static") {
        return;
    }
    let log = Arc::new(MemoryLog::new());
    let command = PtyCommand::new(["busybox", "sh"])
        .env("PS1", PROMPT)
        .env("ENV", "")
        .env("HOME", "/nonexistent");
    let config = SessionConfig::default().with_prompts(&[PROMPT]);
    let mut shell = ShellSession::spawn(command, log.clone(), config).unwrap();
    shell.wait_for_prompt(in_secs(10.0)).await.unwrap();
    // The first question can only be recognised once seen: one exchange to see it.
    shell.sendline("true").await.unwrap();
    shell.wait_for_prompt(in_secs(10.0)).await.unwrap();
    for n in 0..3 {
        shell
            .sendline(&format!("read -t 1 left; echo \"round {n} left[$left]\""))
            .await
            .unwrap();
        let found = shell
            .expect(&[r"round \d left\[([^\]\r\n]*)\]\r?\n"], in_secs(10.0))
            .await
            .unwrap();
        assert_eq!(
            found.group(1),
            Some(""),
            "an answer was typed into a command"
        );
        shell.wait_for_prompt(in_secs(10.0)).await.unwrap();
    }
    let asked = log
        .records()
        .iter()
        .any(|r| r.level == LogLevel::Debug && r.text.contains("ESC [ 6 n"));
    assert!(asked, "busybox asks where the cursor is after its prompt");
    shell.disconnect("done").await.unwrap();
}
