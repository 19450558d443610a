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
fn missing_config_fails_at_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_lava-coordinator"))
        .args([
            "--logfile",
            "-",
            "--config",
            "/nonexistent/lava-coordinator.conf",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
}
