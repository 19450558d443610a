//! End-to-end MultiNode: `lava-run multinode` splits a submission, runs one real `lava-run`
//! per node on local-shell devices, and the nodes talk through a coordinator — our embedded
//! one, or Debian's `lava-coordinator` (Python; skipped outside CI when it is absent). A
//! secondary-connection group (seed 001's shape) logs its guest into a private loopback sshd
//! whose address the host role publishes. `lava-network` runs in three local shells on both
//! coordinators, and its same test definition in a pair of QEMU guests (the embedded
//! default device, whose guests have only `lo`).

mod common;

use lava_test_support::coordinator::{CoordinatorDaemon, lava_daemon_available};
use lava_test_support::paths::workspace;
use lava_test_support::sshd::Sshd;

use lava_dispatch::report::TestCase;
use lava_dispatch::results::read_results;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `lava-run multinode` left: its exit code, its output, each node's results by job id.
struct GroupRun {
    code: i32,
    stdout: String,
    nodes: Vec<(String, Vec<TestCase>)>,
}

fn local_shell_device() -> PathBuf {
    workspace().join("fixtures/local-shell/device.yaml")
}

/// The server/client pair on local-shell devices.
fn run_pair(submission: &Path, first_job_id: u64, extra: &[&str]) -> GroupRun {
    let device = local_shell_device();
    run_group(
        submission,
        first_job_id,
        &[("server", &device), ("client", &device)],
        extra,
    )
}

fn run_group(
    submission: &Path,
    first_job_id: u64,
    devices: &[(&str, &Path)],
    extra: &[&str],
) -> GroupRun {
    let out = tempfile::tempdir().unwrap().keep();
    let mut command = Command::new(env!("CARGO_BIN_EXE_lava-run"));
    command.arg("multinode").arg(submission);
    for (role, device) in devices {
        command
            .arg("--device")
            .arg(format!("{role}={}", device.display()));
    }
    let output = command
        .arg("--output-dir")
        .arg(&out)
        .args(["--job-id", &first_job_id.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // One device per role and a role may have several nodes: every node's directory.
    let count = (0u64..)
        .take_while(|i| out.join((first_job_id + i).to_string()).is_dir())
        .count()
        .max(devices.len()) as u64;
    let nodes = (0..count)
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

fn outcome<'a>(rows: &'a [TestCase], suite: &str, case: &str) -> Option<&'a str> {
    rows.iter()
        .find(|r| r.suite == suite && r.name == case)
        .map(|r| r.result.as_str())
}

/// The job's own result (`lava`/`job`).
fn job_result(rows: &[TestCase]) -> Option<&str> {
    outcome(rows, "lava", "job")
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
    let run = run_pair(&submission, 9301, &[]);
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
    let run = run_pair(&submission, 9311, &[]);
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

#[test]
fn two_roles_run_against_lavas_own_coordinator() {
    if !lava_daemon_available() {
        return;
    }
    let coordinator = CoordinatorDaemon::lavas();
    let submission = workspace().join("fixtures/multinode/local-shell-pair.yaml");
    let address = coordinator.address.to_string();
    let run = run_pair(&submission, 9321, &["--coordinator", &address]);
    assert_pair_passed(&run);
}

/// The cases of `lava-network-trio.yaml`'s test definition.
const NETWORK_CASES: &[&str] = &[
    "broadcast",
    "collect-server",
    "collect-client",
    "query-ipv4",
    "query-hostname",
    "query-mac",
    "query-self",
    "hosts",
    "hosts-has-group",
    "hosts-has-aliases",
];

/// `nodes` nodes, each with every lava-network case passed.
fn assert_network_nodes_passed(run: &GroupRun, nodes: usize) {
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.nodes.len(), nodes, "{}", run.stdout);
    for (id, rows) in &run.nodes {
        for case in NETWORK_CASES {
            assert_eq!(
                outcome(rows, "0_network", case),
                Some("pass"),
                "node {id}, {case}: {rows:?}"
            );
        }
        assert_eq!(job_result(rows), Some("pass"), "node {id}");
    }
}

fn run_network_trio(first_job_id: u64, extra: &[&str]) -> GroupRun {
    let device = local_shell_device();
    run_group(
        &workspace().join("fixtures/multinode/lava-network-trio.yaml"),
        first_job_id,
        &[("server", &device), ("client", &device)],
        extra,
    )
}

#[test]
fn three_nodes_share_network_details_with_lava_network_on_the_embedded_coordinator() {
    assert_network_nodes_passed(&run_network_trio(9341, &[]), 3);
}

#[test]
fn three_nodes_share_network_details_with_lava_network_on_lavas_coordinator() {
    if !lava_daemon_available() {
        return;
    }
    let coordinator = CoordinatorDaemon::lavas();
    let address = coordinator.address.to_string();
    assert_network_nodes_passed(&run_network_trio(9361, &["--coordinator", &address]), 3);
}

/// The lava-network trio's test block in a MultiNode pair of QEMU guests: the deploy and
/// boot of the embedded default device's smoke job (`target/test-system/qemu-smoke.yaml`,
/// its `context` moved into each role), for roles `server` and `client`.
fn qemu_network_pair(smoke: &Path) -> String {
    use serde_yaml::{Mapping, Value};
    let load = |path: &Path| -> Value {
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let smoke = load(smoke);
    let trio = load(&workspace().join("fixtures/multinode/lava-network-trio.yaml"));
    let test = trio["actions"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|a| a.get("test").is_some())
        .unwrap()
        .clone();
    let roles = Value::Sequence(vec!["server".into(), "client".into()]);
    let mut actions: Vec<Value> = smoke["actions"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|a| {
            let (key, block) = a.as_mapping()?.iter().next()?;
            let key = key.as_str()?;
            if key != "deploy" && key != "boot" {
                return None;
            }
            let mut block = block.as_mapping()?.clone();
            block.insert("role".into(), roles.clone());
            let mut action = Mapping::new();
            action.insert(key.into(), Value::Mapping(block));
            Some(Value::Mapping(action))
        })
        .collect();
    assert_eq!(actions.len(), 2, "the smoke job's deploy and boot");
    actions.push(test);
    let role = serde_yaml::from_str::<Value>(&format!(
        "{{device_type: qemu, count: 1, context: {}}}",
        serde_json::to_string(&smoke["context"]).unwrap()
    ))
    .unwrap();
    let mut submission: Mapping = serde_yaml::from_str(
        "{job_name: lava-network in a QEMU pair, visibility: public, priority: medium,
          timeouts: {job: {minutes: 10}, action: {minutes: 4}, connection: {minutes: 2}}}",
    )
    .unwrap();
    let mut role_map = Mapping::new();
    role_map.insert("server".into(), role.clone());
    role_map.insert("client".into(), role);
    let protocols = serde_yaml::from_str::<Value>("{lava-multinode: {timeout: {minutes: 5}}}");
    let mut protocols = protocols.unwrap();
    protocols["lava-multinode"]
        .as_mapping_mut()
        .unwrap()
        .insert("roles".into(), Value::Mapping(role_map));
    submission.insert("protocols".into(), protocols);
    submission.insert("actions".into(), Value::Sequence(actions));
    serde_yaml::to_string(&submission).unwrap()
}

#[test]
fn lava_network_runs_the_same_test_definition_in_a_qemu_pair() {
    let smoke = workspace().join("target/test-system/qemu-smoke.yaml");
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok();
    if !qemu || !smoke.exists() {
        lava_test_support::ci::skip_or_fail(
            "QEMU or target/test-system is missing (run `cargo xtask test-system`)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let submission = dir.path().join("qemu-pair.yaml");
    std::fs::write(&submission, qemu_network_pair(&smoke)).unwrap();
    let device = workspace().join("fixtures/qemu/device.yaml");
    let run = run_group(
        &submission,
        9381,
        &[("server", &device), ("client", &device)],
        &[],
    );
    assert_network_nodes_passed(&run, 2);
}

#[test]
fn a_secondary_ssh_connection_starts_when_the_host_says_and_runs_its_test_shell() {
    let Some(server) = Sshd::start() else {
        return;
    };
    let root = workspace();
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    // The guest's device names no reachable host (TEST-NET-1): the address it logs in to
    // must be the one the host role published.
    let device = std::fs::read_to_string(root.join("fixtures/ssh/device.yaml"))
        .unwrap()
        .replace("@SSH_HOST@", "192.0.2.1")
        .replace("@SSH_PORT@", &server.port().to_string())
        .replace("@SSH_USER@", server.user())
        .replace(
            "@SSH_IDENTITY_FILE@",
            &server.identity_file().display().to_string(),
        )
        .replace("@SCRATCH@", &scratch.display().to_string());
    let guest_device = dir.path().join("guest-device.yaml");
    std::fs::write(&guest_device, device).unwrap();
    let submission = dir.path().join("ssh-secondary.yaml");
    let text = std::fs::read_to_string(root.join("fixtures/multinode/ssh-secondary.yaml"))
        .unwrap()
        .replace("@SSH_HOST@", server.host());
    std::fs::write(&submission, text).unwrap();

    let host_device = local_shell_device();
    let run = run_group(
        &submission,
        9331,
        &[("host", &host_device), ("guest", &guest_device)],
        &[],
    );
    let (_, host) = &run.nodes[0];
    let (_, guest) = &run.nodes[1];
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, server.log());
    for case in [
        "multinode-send-ipv4",
        "multinode-send-lava_start",
        "multinode-sync-clients",
    ] {
        assert_eq!(
            outcome(host, "0_host", case),
            Some("pass"),
            "{case}: {host:?}"
        );
    }
    for case in ["over-ssh", "guest-role", "multinode-sync-clients"] {
        assert_eq!(
            outcome(guest, "0_guest", case),
            Some("pass"),
            "{case}: {guest:?}"
        );
    }
    assert_eq!(job_result(host), Some("pass"));
    assert_eq!(job_result(guest), Some("pass"));
}
