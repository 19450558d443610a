//! The daemon binary end to end: LAVA's command line, a config file, one
//! LAVA-framed exchange over loopback, a log line, and a clean exit on SIGTERM.

use lava_test_support::coordinator::CoordinatorDaemon;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn daemon_serves_a_lava_frame_and_logs() {
    let mut daemon = CoordinatorDaemon::start(
        Path::new(env!("CARGO_BIN_EXE_lava-coordinator")),
        r#""lava_rs_listen": "127.0.0.1""#,
    );
    let mut stream = TcpStream::connect(daemon.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let body = r#"{"client_name": "1", "group_name": "g", "role": "r", "hostname": "h", "request": "group_data", "group_size": 1}"#;
    stream
        .write_all(format!("{:08X}", body.len()).as_bytes())
        .unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert_eq!(
        reply,
        r#"0000002F{"response": "group_data", "roles": {"1": "r"}}"#
    );

    // SIGTERM ends it cleanly.
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.success(), "{exit:?}");
    let logged = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(logged.contains("LAVA coordinator has started"), "{logged}");
}

#[test]
fn rejects_an_unknown_log_level_like_lava() {
    let output = Command::new(env!("CARGO_BIN_EXE_lava-coordinator"))
        .args(["--loglevel", "TRACE", "--logfile", "-"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("DEBUG, ERROR, INFO, WARN"));
}

#[test]
fn missing_config_fails_at_start_with_one_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_lava-coordinator"))
        .args([
            "--logfile",
            "-",
            "--config",
            "/nonexistent/lava-coordinator.conf",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            "lava-coordinator: configuration error: /nonexistent/lava-coordinator.conf: "
        ),
        "{stderr}"
    );
    // A message, not a Debug dump of the error value.
    assert!(!stderr.contains("Config("), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn sighup_reopens_the_log_file_after_a_rotation() {
    let mut daemon = CoordinatorDaemon::start(
        Path::new(env!("CARGO_BIN_EXE_lava-coordinator")),
        r#""lava_rs_listen": "127.0.0.1""#,
    );
    let log = daemon.log.clone();
    request_group_data(&daemon, "before-rotation");
    wait_for(
        || read(&log).contains("before-rotation"),
        "first group logged",
    );

    // What logrotate does: rename the file, then SIGHUP from postrotate.
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    daemon.hang_up();
    wait_for(|| log.exists(), "a new log file after SIGHUP");
    request_group_data(&daemon, "after-rotation");
    wait_for(
        || read(&log).contains("after-rotation"),
        "second group logged",
    );

    let old = read(&rotated);
    let new = read(&log);
    assert!(old.contains("LAVA coordinator has started"), "{old}");
    assert!(old.contains("before-rotation"), "{old}");
    assert!(!old.contains("after-rotation"), "{old}");
    assert!(new.contains("SIGHUP: log file reopened"), "{new}");
    assert!(!new.contains("before-rotation"), "{new}");
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.success(), "{exit:?}");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One LAVA `group_data` request for a one-node group named `group` (logged
/// at INFO as the group is formed).
fn request_group_data(daemon: &CoordinatorDaemon, group: &str) {
    let mut stream = TcpStream::connect(daemon.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let body = format!(
        r#"{{"client_name": "1", "group_name": "{group}", "role": "r", "hostname": "h", "request": "group_data", "group_size": 1}}"#
    );
    stream
        .write_all(format!("{:08X}{body}", body.len()).as_bytes())
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("group_data"), "{reply}");
}
