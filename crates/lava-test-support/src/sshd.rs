//! A private OpenSSH server for tests: `/usr/sbin/sshd` on a free loopback port, run
//! from a scratch directory with its own host key, client key, `authorized_keys`,
//! `sshd_config` (`-f`) and pid file, in the foreground (`-D -e`, its log in the
//! scratch directory). Nothing of the system's sshd or `/etc/ssh` is used or touched;
//! the only thing outside the scratch directory is sshd's privilege-separation
//! directory `/run/sshd`, created (empty) when it is missing and we are root.
//!
//! Dropping an [`Sshd`] kills the server and every session process it forked, and reaps
//! the server.
//!
//! When a tool is missing, [`Sshd::start`] follows the CI rule ([`crate::ci::skip_or_fail`]):
//! it panics under CI (`CI=true`) and otherwise returns `None` after printing why, so the
//! caller skips.

use crate::ci::{require_tool, skip_or_fail};
use crate::paths::free_loopback_port;
use lava_procfs::descendants;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const PRIVSEP_DIR: &str = "/run/sshd";

/// A running private sshd. See the module documentation.
pub struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    user: String,
    identity_file: PathBuf,
}

impl Sshd {
    /// Starts a server accepting the client key ([`Sshd::identity_file`]) for the
    /// current user; `None` (after printing why) when it cannot run outside CI.
    pub fn start() -> Option<Sshd> {
        Self::start_with("")
    }

    /// [`Sshd::start`] with extra `sshd_config` lines.
    pub fn start_with(extra_config: &str) -> Option<Sshd> {
        for tool in [SSHD, "/usr/bin/ssh-keygen"] {
            if !require_tool(tool, "openssh-server: scripts/install-test-deps.sh") {
                return None;
            }
        }
        if !Path::new(PRIVSEP_DIR).is_dir() {
            if !is_root() {
                return unavailable(&format!("{PRIVSEP_DIR} is missing and we are not root"));
            }
            std::fs::create_dir_all(PRIVSEP_DIR).expect("create sshd's privilege separation dir");
        }
        let user = current_user();
        let dir = tempfile::Builder::new()
            .prefix("lava-rs-sshd-")
            .tempdir()
            .expect("scratch dir");
        let host_key = dir.path().join("host_ed25519_key");
        let identity_file = dir.path().join("client_ed25519_key");
        keygen(&host_key, "ed25519", "");
        keygen(&identity_file, "ed25519", "");
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(identity_file.with_extension("pub"), &authorized).expect("authorized_keys");

        let mut last_log = String::new();
        // A port found free may be taken before sshd binds it: try a few.
        for _ in 0..5 {
            let port = free_loopback_port();
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\n\
                     ListenAddress 127.0.0.1\n\
                     HostKey {host_key}\n\
                     PidFile {pid}\n\
                     AuthorizedKeysFile {authorized}\n\
                     StrictModes no\n\
                     UsePAM no\n\
                     PermitRootLogin prohibit-password\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     PrintMotd no\n\
                     PrintLastLog no\n\
                     LogLevel VERBOSE\n\
                     {extra_config}\n",
                    host_key = host_key.display(),
                    pid = dir.path().join("sshd.pid").display(),
                    authorized = authorized.display(),
                ),
            )
            .expect("sshd_config");
            let log = std::fs::File::create(dir.path().join("sshd.log")).expect("sshd.log");
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start sshd");
            if wait_listening(&mut child, port) {
                return Some(Sshd {
                    dir,
                    child,
                    port,
                    user,
                    identity_file,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default();
        }
        panic!("sshd did not start; its log:\n{last_log}");
    }

    /// The address the server listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user logged in as (the one running the tests).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The authorized client key (no passphrase).
    pub fn identity_file(&self) -> &Path {
        &self.identity_file
    }

    /// The scratch directory (the server's files live here; tests may add theirs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new key `name` of `kind` (`ed25519`, `rsa`), protected by `passphrase` when
    /// not empty, added to `authorized_keys` when `authorize`.
    pub fn new_key(&self, name: &str, kind: &str, passphrase: &str, authorize: bool) -> PathBuf {
        let path = self.dir.path().join(name);
        keygen(&path, kind, passphrase);
        if authorize {
            use std::io::Write;
            let public = std::fs::read(path.with_extension("pub")).expect("public key");
            std::fs::OpenOptions::new()
                .append(true)
                .open(self.dir.path().join("authorized_keys"))
                .and_then(|mut f| f.write_all(&public))
                .expect("authorize key");
        }
        path
    }

    /// The server's public host key line (`ssh-ed25519 AAAA… comment`).
    pub fn host_public_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host_ed25519_key.pub"))
            .expect("host public key")
    }

    /// The processes the server forked for connections (and what runs under them).
    pub fn session_pids(&self) -> Vec<u32> {
        descendants(self.child.id())
    }

    /// Kills every session process: each client sees its connection dropped.
    pub fn kill_sessions(&self) {
        for pid in self.session_pids() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill_sessions();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unavailable(reason: &str) -> Option<Sshd> {
    skip_or_fail(format!("{reason} (scripts/install-test-deps.sh)"));
    None
}

fn is_root() -> bool {
    command_output("id", &["-u"]).trim() == "0"
}

fn current_user() -> String {
    command_output("id", &["-un"]).trim().to_string()
}

fn command_output(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn keygen(path: &Path, kind: &str, passphrase: &str) {
    let mut command = Command::new("/usr/bin/ssh-keygen");
    command
        .args([
            "-q",
            "-t",
            kind,
            "-N",
            passphrase,
            "-C",
            "lava-rs-test",
            "-f",
        ])
        .arg(path);
    if kind == "rsa" {
        command.args(["-b", "2048"]);
    }
    let status = command.stdin(Stdio::null()).status().expect("ssh-keygen");
    assert!(status.success(), "ssh-keygen -t {kind} failed");
}

/// Waits until the server answers with an SSH banner (false if it exits first).
fn wait_listening(child: &mut Child, port: u16) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut banner = [0u8; 8];
            if stream.read_exact(&mut banner).is_ok() && banner.starts_with(b"SSH-") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
