//! ShellSession behaviour over an in-memory transport that dribbles bytes one at a time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{dribbling_pipe, in_secs};
use lava_connection::{
    ConnectionError, ErrorKind, LogLevel, MemoryLog, Patterns, SessionConfig, ShellSession,
    escape_control_chars,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROMPT: &str = "lava-test: # ";

fn session(config: SessionConfig) -> (ShellSession, tokio::io::DuplexStream, Arc<MemoryLog>) {
    let (transport, device) = dribbling_pipe();
    let log = Arc::new(MemoryLog::new());
    let shell = ShellSession::new(transport, log.clone(), config).unwrap();
    (shell, device, log)
}

#[tokio::test]
async fn prompt_split_across_one_byte_reads() {
    let (mut shell, mut device, _log) = session(SessionConfig::default().with_prompts(&[PROMPT]));
    let writer = tokio::spawn(async move {
        device
            .write_all(b"[    0.1] booting\nlava-test: # ")
            .await
            .unwrap();
        device
    });
    let found = shell.wait_for_prompt(in_secs(5.0)).await.unwrap();
    assert_eq!(found.before, "[    0.1] booting\n");
    assert_eq!(found.matched, PROMPT);
    writer.await.unwrap();
}

#[tokio::test]
async fn pattern_spanning_reads_with_captures() {
    let (mut shell, mut device, _log) = session(SessionConfig::default());
    let writer = tokio::spawn(async move {
        device
            .write_all(b"x <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=boot RESULT=pass>\n")
            .await
            .unwrap();
        device
    });
    let signal =
        Patterns::new(&[r"<LAVA_TEST_RUNNER EXIT>", r"<LAVA_SIGNAL_(\S+) ([^>]+)>"]).unwrap();
    let found = shell.wait_for(&signal, in_secs(5.0)).await.unwrap();
    assert_eq!(found.index, 1);
    assert_eq!(found.group(1), Some("TESTCASE"));
    assert_eq!(found.group(2), Some("TEST_CASE_ID=boot RESULT=pass"));
    writer.await.unwrap();
}

#[tokio::test]
async fn consumed_prompt_is_never_matched_again() {
    let (mut shell, mut device, _log) = session(SessionConfig::default().with_prompts(&[PROMPT]));
    let writer = tokio::spawn(async move {
        device.write_all(b"lava-test: # ").await.unwrap();
        device
    });
    shell.wait_for_prompt(in_secs(5.0)).await.unwrap();
    let mut device = writer.await.unwrap();
    let reader = tokio::spawn(async move {
        let mut typed = [0u8; 3];
        device.read_exact(&mut typed).await.unwrap();
        (device, typed)
    });
    shell.sendline("ls").await.unwrap();
    let (mut device, typed) = reader.await.unwrap();
    assert_eq!(&typed, b"ls\n");
    // The prompt already matched must not satisfy the next wait.
    let err = shell.wait_for_prompt(in_secs(0.2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let writer = tokio::spawn(async move {
        device.write_all(b"a.txt\nlava-test: # ").await.unwrap();
        device
    });
    let found = shell.wait_for_prompt(in_secs(5.0)).await.unwrap();
    assert_eq!(found.before, "a.txt\n");
    writer.await.unwrap();
}

#[tokio::test]
async fn end_of_file_is_connection_closed_and_flushes_the_partial_line() {
    let (mut shell, mut device, log) = session(SessionConfig::default().with_prompts(&[PROMPT]));
    tokio::spawn(async move {
        device.write_all(b"last line\nno newline").await.unwrap();
    });
    let err = shell.wait_for_prompt(in_secs(5.0)).await.unwrap_err();
    assert!(
        matches!(err, ConnectionError::ConnectionClosed { .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed);
    assert!(err.is_infrastructure());
    assert!(err.to_string().contains("lava-test: # "), "{err}");
    assert_eq!(log.target_lines(), ["last line", "no newline"]);
}

#[tokio::test]
async fn timeout_names_what_was_awaited() {
    let (mut shell, _device, _log) = session(SessionConfig::default());
    let started = tokio::time::Instant::now();
    let err = shell
        .expect(&["login:", "Password:"], in_secs(0.3))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        err.to_string().contains(r#"["login:", "Password:"]"#),
        "{err}"
    );
    assert!(waited >= Duration::from_millis(290) && waited < Duration::from_secs(2));
}

#[tokio::test]
async fn character_delay_is_honoured_and_input_is_logged() {
    let config = SessionConfig::default().with_character_delay_ms(25);
    let (mut shell, mut device, log) = session(config);
    let reader = tokio::spawn(async move {
        let mut received = Vec::new();
        let mut byte = [0u8; 1];
        while received.last() != Some(&b'\n') {
            device.read_exact(&mut byte).await.unwrap();
            received.push(byte[0]);
        }
        received
    });
    let started = tokio::time::Instant::now();
    shell.sendline("abcde").await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(reader.await.unwrap(), b"abcde\n");
    // Six characters, each followed by the delay.
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    assert_eq!(log.input_lines(), ["abcde"]);
    assert!(
        log.lines(LogLevel::Debug)
            .contains(&"Sending with 25 millisecond of delay".to_string())
    );
    assert!(
        log.lines(LogLevel::Debug)
            .contains(&"Sending line: 'abcde'".to_string())
    );
}

#[tokio::test]
async fn crlf_line_separator() {
    let (mut shell, mut device, log) = session(SessionConfig::default());
    shell.set_linesep("\r\n");
    let reader = tokio::spawn(async move {
        let mut typed = [0u8; 6];
        device.read_exact(&mut typed).await.unwrap();
        typed
    });
    shell.sendline("boot").await.unwrap();
    assert_eq!(&reader.await.unwrap(), b"boot\r\n");
    assert_eq!(log.input_lines(), ["boot"]);
}

#[tokio::test]
async fn log_records_are_whole_lines_with_esc_removed() {
    let (mut shell, mut device, log) = session(SessionConfig::default());
    let writer = tokio::spawn(async move {
        device
            .write_all(
                b"\x1b[1mbold\x1b[0m\r\r\n[ 1.0] Kernel panic - not syncing: VFS: \
                  Unable to mount root fs\r\nbell\x07 and\rcr\r\nDONE",
            )
            .await
            .unwrap();
        device
    });
    // A match in the middle of a line does not cut the logged line.
    let found = shell
        .expect(&["Kernel panic - not syncing"], in_secs(5.0))
        .await
        .unwrap();
    assert_eq!(found.before, "\x1b[1mbold\x1b[0m\r\r\n[ 1.0] ");
    shell.expect(&["DONE"], in_secs(5.0)).await.unwrap();
    let _device = writer.await.unwrap();
    shell.finalise();
    let lines = log.target_lines();
    assert_eq!(
        lines,
        [
            "[1mbold[0m",
            "[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root fs",
            "bell\x07 and\rcr",
            "DONE",
        ]
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.contains('\x1b') && !l.contains('\n'))
    );
    assert_eq!(escape_control_chars(&lines[2]), "bell\\a and\\rcr");
}

#[tokio::test]
async fn invalid_utf8_is_replaced() {
    let (mut shell, mut device, log) = session(SessionConfig::default());
    let writer = tokio::spawn(async move {
        device.write_all(b"caf\xc3").await.unwrap();
        device.write_all(b"\xa9 \xff!\n").await.unwrap();
        device
    });
    shell.expect(&["!"], in_secs(5.0)).await.unwrap();
    writer.await.unwrap();
    shell.finalise();
    assert_eq!(log.target_lines(), ["café \u{FFFD}!"]);
}

#[tokio::test]
async fn using_a_disconnected_session_is_a_bug() {
    let (mut shell, _device, _log) = session(SessionConfig::default().with_prompts(&[PROMPT]));
    shell.disconnect("test over").await.unwrap();
    assert!(!shell.is_connected());
    let err = shell.sendline("ls").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Bug);
    let err = shell.wait_for_prompt(in_secs(1.0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed);
}

#[tokio::test]
async fn waiting_for_a_prompt_without_prompts_is_a_bug() {
    let (mut shell, _device, _log) = session(SessionConfig::default());
    let err = shell.wait_for_prompt(in_secs(1.0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Bug);
}

#[tokio::test]
async fn feedback_is_logged_with_namespace_and_consumed() {
    let (mut shell, mut device, log) = session(SessionConfig::default().with_prompts(&[PROMPT]));
    let _writer = tokio::spawn(async move {
        device.write_all(b"from the other node\n").await.unwrap();
        device
    });
    let n = shell
        .listen_feedback(in_secs(0.2), Some("host"))
        .await
        .unwrap();
    assert_eq!(n, 20);
    let records = log.records();
    let feedback: Vec<_> = records
        .iter()
        .filter(|r| r.level == LogLevel::Feedback)
        .collect();
    assert_eq!(feedback.len(), 1);
    assert_eq!(feedback[0].text, "from the other node");
    assert_eq!(feedback[0].namespace.as_deref(), Some("host"));
    assert_eq!(shell.unconsumed(), "");
}
