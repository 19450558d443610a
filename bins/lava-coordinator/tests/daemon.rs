//! The daemon binary end to end: LAVA's command line, a config file, one
//! LAVA-framed exchange over loopback, a log line, and a clean exit on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn daemon_serves_a_lava_frame_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("lava-coordinator.conf");
    std::fs::write(
        &config,
        format!(r#"{{"port": {port}, "blocksize": 4096, "poll_delay": 3, "coordinator_hostname": "localhost", "lava_rs_listen": "127.0.0.1"}}"#),
    )
    .unwrap();
    let log = dir.path().join("coordinator.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lava-coordinator"))
        .arg("--logfile")
        .arg(&log)
        .args(["-l", "DEBUG", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(error) => panic!("daemon not listening: {error}"),
        }
    };
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

    // SIGTERM (our own child, by its id) ends it cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("daemon did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
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
