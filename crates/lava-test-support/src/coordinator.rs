//! A coordinator daemon on a free loopback port with its own configuration file: LAVA's
//! own (Debian's `lava-coordinator`, Python) for the interoperability tests of the
//! coordinator and of MultiNode jobs, or any program with LAVA's command line (ours).

use crate::ci::require_tool;
use crate::paths::free_loopback_port;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// LAVA's coordinator daemon, as Debian's `lava-coordinator` installs it.
pub const LAVA_DAEMON: &str = "/usr/bin/lava-coordinator";
/// The configuration file LAVA's dispatcher-side protocol checks for.
pub const LAVA_CONFIG: &str = "/etc/lava-coordinator/lava-coordinator.conf";

/// Whether LAVA's daemon is installed; [`require_tool`]'s CI rule when it is not.
pub fn lava_daemon_available() -> bool {
    require_tool(LAVA_DAEMON, "apt-get install -y lava-coordinator")
}

/// The Python that LAVA's daemon runs with (Debian's), or any python3.
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A coordinator daemon on a free port with its own configuration file. The process is
/// killed (by its id) and reaped when this is dropped.
pub struct CoordinatorDaemon {
    child: Child,
    /// Where it listens.
    pub address: SocketAddr,
    _dir: tempfile::TempDir,
    /// Its log file (`--loglevel DEBUG`).
    pub log: PathBuf,
}

impl CoordinatorDaemon {
    /// LAVA's own daemon ([`LAVA_DAEMON`]); see [`CoordinatorDaemon::start`].
    pub fn lavas() -> CoordinatorDaemon {
        Self::start(Path::new(LAVA_DAEMON), "")
    }

    /// Starts `program` with LAVA's command line (`--logfile`, `--loglevel DEBUG`,
    /// `--config`) and a configuration listing `extra_settings` (JSON members, e.g.
    /// `"lava_rs_listen": "127.0.0.1"`) after LAVA's own, then waits (at most 20 s) until
    /// it accepts connections.
    pub fn start(program: &Path, extra_settings: &str) -> CoordinatorDaemon {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let port = free_loopback_port();
        let config = dir.path().join("lava-coordinator.conf");
        let extra = if extra_settings.is_empty() {
            String::new()
        } else {
            format!(", {extra_settings}")
        };
        std::fs::write(
            &config,
            format!(
                r#"{{"port": {port}, "blocksize": 4096, "poll_delay": 3, "coordinator_hostname": "127.0.0.1"{extra}}}"#
            ),
        )
        .expect("write the daemon's configuration");
        let log = dir.path().join("lava-coordinator.log");
        let child = Command::new(program)
            .arg("--logfile")
            .arg(&log)
            .args(["--loglevel", "DEBUG", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let daemon = CoordinatorDaemon {
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
            // A connect that sends nothing is harmless to LAVA's daemon (it logs an
            // invalid header and goes on).
            if std::net::TcpStream::connect_timeout(&self.address, Duration::from_millis(200))
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the coordinator did not listen on {}", self.address);
    }

    /// SIGTERM (to this daemon, by its id), then its exit status; panics (after killing
    /// it) when it has not ended within `grace`.
    pub fn terminate(&mut self, grace: Duration) -> ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a child pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the daemon") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the coordinator did not stop within {grace:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGHUP (to this daemon, by its id): ours reopens its log file.
    pub fn hang_up(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a child pid");
        rustix::process::kill_process(pid, rustix::process::Signal::HUP)
            .expect("send SIGHUP to the daemon");
    }

    /// Whether the daemon is still running (it crashes on some inputs).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for CoordinatorDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
