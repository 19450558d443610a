//! The `lava-worker` program as systemd runs it: LAVA's options, pings to the server, a
//! clean exit on SIGTERM and on SIGINT, a bad command line refused.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lava_worker::test_server::FakeLava;
use rustix::process::{Pid, Signal, kill_process};

const NAME: &str = "worker-bin.lab";

/// Run the program against a fake server until it pinged, send `signal`, return its exit
/// code and log.
async fn run_until_signal(signal: Signal) -> (Option<i32>, String) {
    let lava = FakeLava::start(NAME, "2023.01").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log/lava-worker.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lava-worker"))
        .args([
            "--name",
            NAME,
            "--url",
            &lava.url(),
            "--token",
            &lava.worker_token(),
        ])
        .arg("--worker-dir")
        .arg(dir.path().join("worker"))
        .arg("--log-file")
        .arg(&log)
        .args([
            "--level",
            "DEBUG",
            "--ping-interval",
            "1",
            "--http-timeout",
            "5",
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lava
        .requests()
        .iter()
        .filter(|r| r.target.contains("?version="))
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "lava-worker did not ping");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), signal).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lava-worker did not stop on {signal:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    (status.code(), text)
}

#[tokio::test]
async fn sigterm_and_sigint_stop_the_worker_cleanly() {
    for signal in [Signal::TERM, Signal::INT] {
        let (code, log) = run_until_signal(signal).await;
        assert_eq!(code, Some(0), "exit after {signal:?}; log:\n{log}");
        assert!(log.contains("lava-worker starting"), "log:\n{log}");
        assert!(log.contains("lava-worker stopping"), "log:\n{log}");
    }
}

#[test]
fn bad_options_are_refused_with_status_2_bad_values_with_1() {
    let output = Command::new(env!("CARGO_BIN_EXE_lava-worker"))
        .args(["--name", "w"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--url"));
    let output = Command::new(env!("CARGO_BIN_EXE_lava-worker"))
        .args([
            "--url",
            "http://localhost/",
            "--name",
            "not a name",
            "--log-file",
            "-",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("lava-worker: invalid configuration: --name"),
        "{stderr}"
    );
}
