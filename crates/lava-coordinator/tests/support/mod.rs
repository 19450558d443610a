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
    if Path::new(path).exists() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} ({path}) is required when CI=true: apt-get install -y lava-coordinator");
    }
    eprintln!("SKIPPED: {what} not found at {path} (apt-get install -y lava-coordinator)");
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

/// Run our Python stand-in for LAVA's client; returns its JSON lines.
pub fn lava_wire_client(
    address: SocketAddr,
    poll_delay: f64,
    group: &str,
    size: usize,
    client: &str,
    role: &str,
    ops: &[&str],
) -> Child {
    Command::new(python())
        .arg(wire_client_script())
        .arg(address.ip().to_string())
        .arg(address.port().to_string())
        .arg(poll_delay.to_string())
        .args([group, &size.to_string(), client, role])
        .args(ops)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3")
}

/// Wait for a wire client (bounded) and parse its lines.
pub fn collect(child: Child) -> Vec<serde_json::Value> {
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "wire client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}
