//! LAVA's own coordinator daemon (Debian's `lava-coordinator`, Python) on a free loopback
//! port with its own configuration file, for the interoperability tests of the coordinator
//! and of MultiNode jobs.

use crate::ci::require_tool;
use crate::paths::free_loopback_port;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// LAVA's own daemon on a free port with its own configuration file. The process is
/// killed (by its id) and reaped when this is dropped.
pub struct LavaDaemon {
    child: Child,
    /// Where it listens.
    pub address: SocketAddr,
    _dir: tempfile::TempDir,
    /// Its log file (`--loglevel DEBUG`).
    pub log: PathBuf,
}

impl LavaDaemon {
    /// Starts the daemon and waits (at most 20 s) until it accepts connections.
    pub fn start() -> LavaDaemon {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let port = free_loopback_port();
        let config = dir.path().join("lava-coordinator.conf");
        std::fs::write(
            &config,
            format!(
                r#"{{"port": {port}, "blocksize": 4096, "poll_delay": 3, "coordinator_hostname": "127.0.0.1"}}"#
            ),
        )
        .expect("write the daemon's configuration");
        let log = dir.path().join("lava-coordinator.log");
        let child = Command::new(LAVA_DAEMON)
            .arg("--logfile")
            .arg(&log)
            .args(["--loglevel", "DEBUG", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .spawn()
            .expect("start lava-coordinator");
        let address = SocketAddr::from(([127, 0, 0, 1], port));
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
            // A connect that sends nothing is harmless to LAVA's daemon (it logs an
            // invalid header and goes on).
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
