//! Helpers shared by the integration tests: our coordinator on a loopback
//! port, LAVA's daemon on another, clients for both.
#![allow(dead_code)] // each test file uses a part

use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lava_coordinator::{BrokerSettings, Coordinator, CoordinatorHandle};
use lava_multinode::{ClientSettings, CoordinatorClient, Identity};

pub const LAVA_DAEMON: &str = "/usr/bin/lava-coordinator";
/// The configuration file LAVA's dispatcher-side protocol checks for.
pub const LAVA_CONFIG: &str = "/etc/lava-coordinator/lava-coordinator.conf";

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

/// Whether an external tool is there. Without it the test is skipped with
/// a printed reason, unless CI=true, where its absence is a failure.
pub fn tool_available(path: &str, what: &str) -> bool {
    requirement_met(
        Path::new(path).exists(),
        &format!("{what} ({path})"),
        "apt-get install -y lava-coordinator",
    )
}

/// Whether LAVA's dispatcher can be driven from Python: Debian's python3
/// imports `lava_dispatcher`'s MultiNode protocol and test-shell classes, and
/// the coordinator configuration file that LAVA's `set_up` insists on
/// (its path is hard-coded) exists. Skips or fails like [`tool_available`].
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
    requirement_met(
        imports,
        &format!("{} with LAVA's lava_dispatcher module", python()),
        "apt-get install -y lava-dispatcher",
    ) && requirement_met(
        Path::new(LAVA_CONFIG).exists(),
        &format!("LAVA's coordinator configuration ({LAVA_CONFIG})"),
        "apt-get install -y lava-coordinator",
    )
}

fn requirement_met(present: bool, what: &str, install: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is required when CI=true: {install}");
    }
    eprintln!("SKIPPED: {what} is missing ({install})");
    false
}

/// The Python that LAVA's daemon runs with (Debian's), or any python3.
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

pub fn wire_client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/lava_wire_client.py")
}

pub fn free_loopback_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// LAVA's own daemon on a free port with its own configuration file. The
/// process is killed (by its id) when this is dropped.
pub struct LavaDaemon {
    child: Child,
    pub address: SocketAddr,
    _dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl LavaDaemon {
    pub fn start() -> LavaDaemon {
        let dir = tempfile::tempdir().unwrap();
        let port = free_loopback_port();
        let config = dir.path().join("lava-coordinator.conf");
        let mut file = std::fs::File::create(&config).unwrap();
        write!(
            file,
            r#"{{"port": {port}, "blocksize": 4096, "poll_delay": 3, "coordinator_hostname": "127.0.0.1"}}"#
        )
        .unwrap();
        let log = dir.path().join("lava-coordinator.log");
        let child = Command::new(LAVA_DAEMON)
            .arg("--logfile")
            .arg(&log)
            .args(["--loglevel", "DEBUG", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .spawn()
            .expect("start lava-coordinator");
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let daemon = LavaDaemon {
            child,
            address,
            _dir: dir,
            log,
        };
        daemon.wait_until_listening();
        daemon
    }

    fn wait_until_listening(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            // `ss` would be nicer; a connect that sends nothing is harmless to
            // LAVA's daemon (it logs an invalid header and goes on).
            if std::net::TcpStream::connect_timeout(&self.address, Duration::from_millis(200))
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("LAVA's coordinator did not listen on {}", self.address);
    }

    /// Whether the daemon is still running (it crashes on some inputs).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for LavaDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
