//! End-to-end MultiNode: `lava-run multinode` splits a submission, runs one real `lava-run`
//! per node on local-shell devices, and the nodes talk through a coordinator — our embedded
//! one, or Debian's `lava-coordinator` (Python; skipped outside CI when it is absent).

use lava_dispatch::results::{ResultRow, job_result, read_results};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LAVA_COORDINATOR: &str = "/usr/bin/lava-coordinator";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// What `lava-run multinode` left: its exit code, its output, each node's results by job id.
struct GroupRun {
    code: i32,
    stdout: String,
    nodes: Vec<(String, Vec<ResultRow>)>,
}

fn run_group(submission: &Path, first_job_id: u64, extra: &[&str]) -> GroupRun {
    let root = workspace();
    let device = root.join("fixtures/local-shell/device.yaml");
    let out = tempfile::tempdir().unwrap().keep();
    let output = Command::new(env!("CARGO_BIN_EXE_lava-run"))
        .arg("multinode")
        .arg(submission)
        .arg("--device")
        .arg(format!("server={}", device.display()))
        .arg("--device")
        .arg(format!("client={}", device.display()))
        .arg("--output-dir")
        .arg(&out)
        .args(["--job-id", &first_job_id.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let nodes = (0..2)
        .map(|i| {
            let id = (first_job_id + i).to_string();
            let rows = read_results(&out.join(&id).join("logs.yaml")).unwrap_or_default();
            (id, rows)
        })
        .collect();
    GroupRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        nodes,
    }
}

fn outcome<'a>(rows: &'a [ResultRow], suite: &str, case: &str) -> Option<&'a str> {
    rows.iter()
        .find(|r| r.suite == suite && r.case == case)
        .map(|r| r.result.as_str())
}

fn assert_pair_passed(run: &GroupRun) {
    assert_eq!(run.code, 0, "{}", run.stdout);
    let (_, server) = &run.nodes[0];
    let (_, client) = &run.nodes[1];
    for case in [
        "multinode-send-server-ready",
        "multinode-sync-exchange-done",
        "role-is-server",
        "group-has-two",
    ] {
        assert_eq!(
            outcome(server, "0_server", case),
            Some("pass"),
            "{case}: {server:?}"
        );
    }
    for case in [
        "multinode-wait-server-ready",
        "got-address",
        "got-port",
        "multinode-sync-exchange-done",
        "role-is-client",
    ] {
        assert_eq!(
            outcome(client, "0_client", case),
            Some("pass"),
            "{case}: {client:?}"
        );
    }
    assert_eq!(job_result(server), Some("pass"));
    assert_eq!(job_result(client), Some("pass"));
    assert!(run.stdout.contains("all passed"), "{}", run.stdout);
}

#[test]
fn two_roles_exchange_a_message_and_sync_on_the_embedded_coordinator() {
    let submission = workspace().join("fixtures/multinode/local-shell-pair.yaml");
    let run = run_group(&submission, 9301, &[]);
    assert_pair_passed(&run);
}

#[test]
fn a_wait_nobody_answers_ends_in_the_multinode_timeout_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let submission = dir.path().join("silent-server.yaml");
    let text =
        std::fs::read_to_string(workspace().join("fixtures/multinode/local-shell-pair.yaml"))
            .unwrap()
            // The server never sends; the client's wait must give up after the group timeout.
            .replace("- lava-send server-ready ip=127.0.0.1 port=5201", "- true")
            .replace("- lava-sync exchange-done", "- true")
            .replace(
                "timeout: {minutes: 2}\n    roles:",
                "timeout: {seconds: 5}\n    roles:",
            );
    std::fs::write(&submission, text).unwrap();
    let started = Instant::now();
    let run = run_group(&submission, 9311, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the group ended by itself"
    );
    let (_, client) = &run.nodes[1];
    assert_eq!(
        outcome(client, "0_client", "multinode-wait-server-ready"),
        Some("fail"),
        "{client:?}"
    );
    let (_, server) = &run.nodes[0];
    assert_eq!(job_result(server), Some("pass"), "{server:?}");
}

/// Debian's Python coordinator on a free port, killed and reaped on drop.
struct LavaCoordinator {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl LavaCoordinator {
    fn start() -> LavaCoordinator {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("lava-coordinator.conf");
        let mut file = std::fs::File::create(&config).unwrap();
        write!(
            file,
            r#"{{"port": {port}, "blocksize": 4096, "poll_delay": 1, "coordinator_hostname": "127.0.0.1"}}"#
        )
        .unwrap();
        let child = Command::new(LAVA_COORDINATOR)
            .arg("--logfile")
            .arg(dir.path().join("lava-coordinator.log"))
            .args(["--loglevel", "DEBUG", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .spawn()
            .expect("start lava-coordinator");
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let coordinator = LavaCoordinator {
            child,
            address,
            _dir: dir,
        };
        let started = Instant::now();
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "LAVA's coordinator did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        coordinator
    }
}

impl Drop for LavaCoordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_roles_run_against_lavas_own_coordinator() {
    if !Path::new(LAVA_COORDINATOR).exists() {
        assert!(!in_ci(), "CI must have Debian's lava-coordinator");
        eprintln!("skipping: {LAVA_COORDINATOR} is not installed");
        return;
    }
    let coordinator = LavaCoordinator::start();
    let submission = workspace().join("fixtures/multinode/local-shell-pair.yaml");
    let address = coordinator.address.to_string();
    let run = run_group(&submission, 9321, &["--coordinator", &address]);
    assert_pair_passed(&run);
}
