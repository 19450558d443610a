//! Helpers shared by the integration tests: our coordinator on a loopback
//! port, LAVA's daemon on another, clients for both.
#![allow(dead_code)] // each test file uses a part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use lava_test_support::ci::{require_tool, skip_or_fail};
use std::time::{Duration, Instant};

use lava_coordinator::{BrokerSettings, Coordinator, CoordinatorHandle};
use lava_multinode::{ClientSettings, CoordinatorClient, Identity};

use lava_test_support::coordinator::{LAVA_CONFIG, python};

/// Our coordinator on 127.0.0.1:<free port>, with test-friendly settings
/// adjusted by `tweak`.
pub async fn start_ours(tweak: impl FnOnce(&mut BrokerSettings)) -> CoordinatorHandle {
    let mut settings = BrokerSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..BrokerSettings::default()
    };
    tweak(&mut settings);
    Coordinator::bind(settings, 1)
        .await
        .expect("bind loopback")
        .spawn()
}

/// A client of `group` with job id `client` and `role`, talking to `address`.
pub fn client(
    address: SocketAddr,
    group: &str,
    client: &str,
    role: &str,
    push: bool,
) -> CoordinatorClient {
    let mut settings = ClientSettings::for_address(address);
    settings.push = push;
    settings.poll_delay = Duration::from_millis(50);
    settings.max_backoff = Duration::from_millis(200);
    CoordinatorClient::new(
        settings,
        Identity {
            group_name: group.to_string(),
            client_name: client.to_string(),
            role: role.to_string(),
            hostname: "worker-test".to_string(),
        },
    )
}

/// Whether LAVA's dispatcher can be driven from Python: Debian's python3
/// imports `lava_dispatcher`'s MultiNode protocol and test-shell classes, and
/// the coordinator configuration file that LAVA's `set_up` insists on
/// (its path is hard-coded) exists. Skips, or fails under CI
/// ([`lava_test_support::ci::skip_or_fail`]).
pub fn lava_dispatcher_available() -> bool {
    let imports = Command::new(python())
        .args([
            "-c",
            "import lava_dispatcher.protocols.multinode, lava_dispatcher.actions.test.multinode",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !imports {
        skip_or_fail(format!(
            "{} cannot import LAVA's lava_dispatcher module (apt-get install -y lava-dispatcher)",
            python()
        ));
        return false;
    }
    require_tool(LAVA_CONFIG, "apt-get install -y lava-coordinator")
}

pub fn wire_client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/lava_wire_client.py")
}

/// Start our Python stand-in for LAVA's client wire; see [`collect`].
pub fn lava_wire_client(
    address: SocketAddr,
    poll_delay: f64,
    group: &str,
    size: usize,
    client: &str,
    role: &str,
    ops: &[&str],
) -> ScriptProcess {
    let mut command = Command::new(python());
    command
        .arg(wire_client_script())
        .arg(address.ip().to_string())
        .arg(address.port().to_string())
        .arg(poll_delay.to_string())
        .args([group, &size.to_string(), client, role])
        .args(ops);
    ScriptProcess::start(command, &format!("wire client {client}"))
}

/// Wait (bounded) for a wire client that must succeed; its JSON lines.
pub fn collect(client: ScriptProcess) -> Vec<serde_json::Value> {
    let output = client.finish(Instant::now() + Duration::from_secs(60));
    assert!(output.success, "wire client failed: {}", output.stderr);
    output.lines
}

pub fn protocol_driver_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/lava_protocol_driver.py")
}

/// One group member played by LAVA's own `MultinodeProtocol` class
/// (`support/lava_protocol_driver.py`).
#[derive(Debug, Clone)]
pub struct DriverMember<'a> {
    pub target_group: &'a str,
    pub group_size: u64,
    pub role: &'a str,
    pub job_id: &'a str,
    /// The job-level protocol timeout, in seconds (the poll timeout).
    pub timeout_secs: u64,
    /// Delayed start: wait for this role's `lava_start` before the markers.
    pub expect_role: Option<&'a str>,
    /// Test-shell markers, e.g. `SEND id k=v` (see the script's usage).
    pub markers: &'a [&'a str],
}

/// Start LAVA's protocol class for `member` against the coordinator at
/// `address`, polling every `poll_delay_secs`.
pub fn lava_protocol_driver(
    address: SocketAddr,
    poll_delay_secs: u64,
    member: &DriverMember,
) -> ScriptProcess {
    let mut command = Command::new(python());
    command
        .arg(protocol_driver_script())
        .args(["--host", &address.ip().to_string()])
        .args(["--port", &address.port().to_string()])
        .args(["--poll-delay", &poll_delay_secs.to_string()])
        .args(["--target-group", member.target_group])
        .args(["--group-size", &member.group_size.to_string()])
        .args(["--role", member.role])
        .args(["--job-id", member.job_id])
        .args(["--timeout", &member.timeout_secs.to_string()]);
    if let Some(role) = member.expect_role {
        command.args(["--expect-role", role]);
    }
    command.args(member.markers);
    ScriptProcess::start(
        command,
        &format!("LAVA's protocol driver for job {}", member.job_id),
    )
}

/// What a script printed (one JSON document per line) and how it ended.
#[derive(Debug)]
pub struct ScriptOutput {
    pub lines: Vec<serde_json::Value>,
    pub success: bool,
    pub stderr: String,
}

/// A running helper script. Killed (by its id) and reaped when dropped, so
/// a failing test leaves no process behind.
pub struct ScriptProcess {
    child: Child,
    label: String,
    stdout: std::sync::mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl ScriptProcess {
    /// Spawn `command` with piped output; `label` names it in failures.
    pub fn start(mut command: Command, label: &str) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {label}: {error}"));
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let (sender, stdout) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut text);
            let _ = sender.send(text);
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
            text
        });
        ScriptProcess {
            child,
            label: label.to_string(),
            stdout,
            stderr: Some(stderr),
        }
    }

    /// Wait until the script has finished (its output closes), at most
    /// until `deadline`; past it the script is killed and this panics with
    /// what it logged.
    pub fn finish(mut self, deadline: Instant) -> ScriptOutput {
        let waited = self
            .stdout
            .recv_timeout(deadline.saturating_duration_since(Instant::now()));
        let Ok(stdout) = waited else {
            self.kill_and_reap();
            let log = self.take_stderr();
            panic!("{} did not finish in time; its log:\n{log}", self.label);
        };
        let status = self.child.wait().expect("reap the script");
        let label = &self.label;
        ScriptOutput {
            lines: stdout
                .lines()
                .map(|line| {
                    serde_json::from_str(line).unwrap_or_else(|_| {
                        panic!("{label} printed a line that is not JSON: {line}")
                    })
                })
                .collect(),
            success: status.success(),
            stderr: self.take_stderr(),
        }
    }

    fn take_stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|reader| reader.join().unwrap_or_default())
            .unwrap_or_default()
    }

    fn kill_and_reap(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ScriptProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_and_reap();
        }
    }
}
