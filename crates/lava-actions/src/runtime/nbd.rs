//! Run-time: a `to: nbd` deployment, its root filesystem served over NBD by Debian's
//! `nbd-server`, where LAVA runs `xnbd-server`.
//!
//! The facts kept from LAVA: the `lava-xnbd` protocol's `set_port` call picks the port
//! ([`choose_port`]: the dispatcher configuration's `nbd_server_port` when it is a number,
//! else a free port drawn at random from a range, else NBD's registered port 10809) and
//! records `nbd-deploy/nbd/{nbd_server_port,nbd_server_ip}`, which the bootloader commands
//! read as `{NBDSERVERPORT}` and `{NBDSERVERIP}`; `xnbd-server-deploy` starts the server on
//! that port; the protocol's finalize ends it; the root image is served as downloaded (LAVA
//! never writes the test overlay into it: jobs fetch the overlay after boot with
//! `transfer_overlay`).
//!
//! What differs, and why ([`NbdServer`]):
//! - LAVA draws the port from its constants 55000–56000; lava-rs reads the range from the
//!   dispatcher configuration (`nbd_server_port_min`, `nbd_server_port_max`, same defaults),
//!   so that a lab (or a test) can keep the server in its own ports.
//! - The server reads a configuration file the job writes (`<scratch>/nbd-server-<port>/
//!   nbd-server.conf`, a `[generic]` section only), never the system's
//!   `/etc/nbd-server/config`, whose exports and `user` belong to the system's own server.
//!   The one export is given on the command line with the port: the kernel arguments LAVA
//!   builds carry a server and a port but no export name, and nbd-server answers the
//!   default (empty) export name, over the newstyle handshake, only for a command-line export.
//! - The server's pid file is the job's (`-p`), and the job owns the server: finalize ends
//!   every process whose command line names the job's configuration file (the daemon and
//!   the child it forks per client; SIGTERM, SIGKILL after a grace), then removes the files.
//!   LAVA instead runs `pkill -f nbd-server.*<port>`, which may also hit another job's server.
//! - The image is downloaded into the job's scratch directory, not under the TFTP root: the
//!   board needs only the kernel, initrd and DTB over TFTP.

use lava_pipeline::value::scalar_string;
use lava_pipeline::{ErrorKind, JobLogger, LavaError, LavaResult};
use serde_yaml::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a started nbd-server may take to listen on its port.
const START_LIMIT: Duration = Duration::from_secs(10);
/// NBD's IANA-registered port: LAVA's choice when no port in the range is free.
pub const NBD_DEFAULT_PORT: u16 = 10809;
/// LAVA's `XNBD_PORT_RANGE_MIN`: the lowest port drawn (inclusive).
pub const PORT_RANGE_MIN: u16 = 55000;
/// LAVA's `XNBD_PORT_RANGE_MAX`: the end of the range (exclusive).
pub const PORT_RANGE_MAX: u16 = 56000;
/// How many random ports are tried before falling back to [`NBD_DEFAULT_PORT`] (LAVA's 10).
pub const PORT_TRIES: usize = 10;
/// How long a stopped server gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where the port of a `set_port` call comes from, read from the dispatcher configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortChoice {
    /// `nbd_server_port` when it is a number: always this port.
    pub fixed: Option<u16>,
    /// The range random ports are drawn from: `[min, max)`.
    pub min: u16,
    /// See `min`.
    pub max: u16,
}

impl PortChoice {
    /// The choice a dispatcher configuration makes (`nbd_server_port`, `nbd_server_port_min`,
    /// `nbd_server_port_max`); an unusable range is a ConfigurationError naming the keys.
    pub fn from_dispatcher(dispatcher: Option<&Value>) -> LavaResult<PortChoice> {
        let key = |k: &str| dispatcher.and_then(|d| d.get(k)).and_then(scalar_string);
        let fixed = key("nbd_server_port")
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .map(|p| {
                p.parse::<u16>().map_err(|_| {
                    LavaError::configuration(format!(
                        "dispatcher configuration: nbd_server_port {p} is not a TCP port"
                    ))
                })
            })
            .transpose()?;
        let bound = |k: &str, default: u16| -> LavaResult<u16> {
            match key(k) {
                None => Ok(default),
                Some(text) => text.parse::<u16>().map_err(|_| {
                    LavaError::configuration(format!(
                        "dispatcher configuration: {k} {text:?} is not a TCP port"
                    ))
                }),
            }
        };
        let min = bound("nbd_server_port_min", PORT_RANGE_MIN)?;
        let max = bound("nbd_server_port_max", PORT_RANGE_MAX)?;
        if min == 0 || max <= min {
            return Err(LavaError::configuration(format!(
                "dispatcher configuration: nbd_server_port_min ({min}) must be a port below \
                 nbd_server_port_max ({max})"
            )));
        }
        Ok(PortChoice { fixed, min, max })
    }
}

/// LAVA's `get_free_port`: the fixed port, else up to [`PORT_TRIES`] ports drawn at random
/// from the range, the first that can be bound on every address, else [`NBD_DEFAULT_PORT`].
pub fn choose_port(choice: &PortChoice) -> u16 {
    if let Some(port) = choice.fixed {
        return port;
    }
    let span = u64::from(choice.max - choice.min);
    let mut seed = random_seed();
    for _ in 0..PORT_TRIES {
        seed = next_random(seed);
        let port = choice.min + (seed % span) as u16;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    NBD_DEFAULT_PORT
}

/// A seed that differs between processes and calls (time and pid).
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// One step of splitmix64: enough spread for picking a port.
fn next_random(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One nbd-server of a job: where its files are and how it was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdServer {
    /// The TCP port it listens on (every address).
    pub port: u16,
    /// The exported image.
    pub export: PathBuf,
    /// The job's directory for the server's files (`<scratch>/nbd-server-<port>`).
    pub dir: PathBuf,
}

impl NbdServer {
    /// The server of `export` on `port`, its files under `scratch`.
    pub fn new(scratch: &Path, port: u16, export: &Path) -> NbdServer {
        NbdServer {
            port,
            export: export.to_path_buf(),
            dir: scratch.join(format!("nbd-server-{port}")),
        }
    }

    /// The configuration file the server reads instead of the system's.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("nbd-server.conf")
    }

    /// The server's pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("nbd-server.pid")
    }

    /// The configuration: the `[generic]` section only (the export is on the command line,
    /// see the module documentation).
    pub fn config_text(&self, job_id: &str) -> String {
        format!(
            "# nbd-server configuration of LAVA job {job_id}, written by lava-run.\n\
             # The export ({export}) is given on the command line with port {port}: it then\n\
             # answers the default (empty) export name the device's nbd-client asks for.\n\
             [generic]\n\
             \tallowlist = false\n",
            export = self.export.display(),
            port = self.port,
        )
    }

    /// The command line: `nbd-server -C <config> -p <pid file> <port> <image>`.
    pub fn argv(&self, program: &Path) -> Vec<String> {
        vec![
            program.display().to_string(),
            "-C".into(),
            self.config_file().display().to_string(),
            "-p".into(),
            self.pid_file().display().to_string(),
            self.port.to_string(),
            self.export.display().to_string(),
        ]
    }

    /// Writes the configuration file (the directory is created 0700).
    pub fn write_config(&self, job_id: &str) -> LavaResult<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| io_error("Unable to create", &self.dir, e))?;
        let file = self.config_file();
        std::fs::write(&file, self.config_text(job_id))
            .map_err(|e| io_error("Unable to write", &file, e))
    }

    /// The pids of this server's processes: every process whose command line names its
    /// configuration file (the daemon and its per-client children).
    pub fn processes(&self) -> Vec<u32> {
        let config = self.config_file().display().to_string();
        lava_procfs::processes_with_argument(&config)
    }

    /// Ends the server (SIGTERM, SIGKILL after [`STOP_GRACE`]) and removes its files; each
    /// step logged. Never fails: a finalize goes on.
    pub async fn stop(&self, logger: &JobLogger) {
        logger.debug(format!("clean NBD port {}", self.port));
        let pids = self.processes();
        if pids.is_empty() {
            logger.debug(format!("nbd-server on port {} is not running", self.port));
        }
        for pid in &pids {
            logger.debug(format!(
                "Ending nbd-server (pid {pid}, port {}) with SIGTERM",
                self.port
            ));
            signal(*pid, libc::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        let mut left = self.processes();
        while !left.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            left = self.processes();
        }
        for pid in left {
            logger.warning(format!(
                "nbd-server (pid {pid}, port {}) still running after {} s: SIGKILL",
                self.port,
                STOP_GRACE.as_secs()
            ));
            signal(pid, libc::SIGKILL);
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            logger.warning(format!("Unable to remove {}: {e}", self.dir.display()));
        }
    }
}

fn signal(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) with a pid read from /proc; a process gone meanwhile gives ESRCH.
    unsafe {
        libc::kill(pid, signal);
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> LavaError {
    LavaError::infrastructure(format!("{what} {}: {e}", path.display()))
}

/// Starts `server` (configuration written first): nbd-server forks into the background once
/// it listens; a failure to start, or an `error` in its output (LAVA's check), is a
/// JobError naming nbd-server's message.
pub async fn start(
    logger: &JobLogger,
    server: &NbdServer,
    job_id: &str,
    deadline: tokio::time::Instant,
) -> LavaResult<()> {
    let program = crate::common::power::require_tool("nbd-server")?;
    server.write_config(job_id)?;
    let output = lava_pipeline::command::run_command(
        logger,
        &server.argv(&program),
        None,
        deadline,
        ErrorKind::Job,
        true,
    )
    .await?;
    let text = output.output.trim().to_string();
    if output.status != 0 || text.to_lowercase().contains("error") {
        return Err(LavaError::job(format!("nbd-server: {text}")));
    }
    // nbd-server forks into the background before it listens: the server is up once its
    // port listens (read from /proc, without a connection the server would serve).
    let until = tokio::time::Instant::now() + START_LIMIT;
    while !lava_procfs::tcp_listening(server.port) {
        if server.processes().is_empty() || tokio::time::Instant::now() >= until {
            return Err(LavaError::infrastructure(format!(
                "nbd-server on port {} is not listening {} s after starting (its processes: \
                 {:?}): {text}",
                server.port,
                START_LIMIT.as_secs(),
                server.processes()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatcher(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn port_choice_from_the_dispatcher_configuration() {
        assert_eq!(
            PortChoice::from_dispatcher(None).unwrap(),
            PortChoice {
                fixed: None,
                min: 55000,
                max: 56000
            }
        );
        let fixed = dispatcher("{nbd_server_port: '12345'}");
        assert_eq!(
            PortChoice::from_dispatcher(Some(&fixed)).unwrap().fixed,
            Some(12345)
        );
        let auto = dispatcher(
            "{nbd_server_port: auto, nbd_server_port_min: 22350, nbd_server_port_max: 22400}",
        );
        assert_eq!(
            PortChoice::from_dispatcher(Some(&auto)).unwrap(),
            PortChoice {
                fixed: None,
                min: 22350,
                max: 22400
            }
        );
        let bad = dispatcher("{nbd_server_port_min: 9000, nbd_server_port_max: 8000}");
        let err = PortChoice::from_dispatcher(Some(&bad)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Configuration);
        assert!(
            err.message.contains("nbd_server_port_min (9000)"),
            "{err:?}"
        );
        let not_port = dispatcher("{nbd_server_port: '99999'}");
        assert!(PortChoice::from_dispatcher(Some(&not_port)).is_err());
    }

    #[test]
    fn chosen_ports_are_free_and_in_the_range() {
        let choice = PortChoice {
            fixed: None,
            min: 22390,
            max: 22400,
        };
        for _ in 0..20 {
            let port = choose_port(&choice);
            assert!(
                (22390..22400).contains(&port) || port == NBD_DEFAULT_PORT,
                "{port}"
            );
        }
        // A range whose one port is taken falls back to NBD's port, as LAVA's does.
        let taken = TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let choice = PortChoice {
            fixed: None,
            min: port,
            max: port + 1,
        };
        assert_eq!(choose_port(&choice), NBD_DEFAULT_PORT);
        let fixed = PortChoice {
            fixed: Some(port),
            min: 1,
            max: 2,
        };
        assert_eq!(choose_port(&fixed), port);
    }

    #[test]
    fn server_command_line_and_configuration() {
        let server = NbdServer::new(
            Path::new("/var/lib/lava/dispatcher/tmp/12"),
            22350,
            Path::new("/var/lib/lava/dispatcher/tmp/12/downloads/nbdroot/root.ext4"),
        );
        assert_eq!(
            server.argv(Path::new("/usr/bin/nbd-server")).join(" "),
            "/usr/bin/nbd-server -C /var/lib/lava/dispatcher/tmp/12/nbd-server-22350/nbd-server.conf \
             -p /var/lib/lava/dispatcher/tmp/12/nbd-server-22350/nbd-server.pid 22350 \
             /var/lib/lava/dispatcher/tmp/12/downloads/nbdroot/root.ext4"
        );
        let text = server.config_text("12");
        assert!(text.contains("\n[generic]\n"), "{text}");
        // No export section: the one export is the command line's.
        assert_eq!(text.matches('[').count(), 1, "{text}");
    }

    /// A real nbd-server: started, answering the newstyle handshake with the default
    /// (empty) export name, and ended with its files by `stop`.
    #[tokio::test]
    async fn serves_the_default_export_and_stops() {
        if !lava_test_support::ci::require_tool("nbd-server", "apt-get install nbd-server") {
            return;
        }
        let scratch = tempfile::tempdir().unwrap();
        let image = scratch.path().join("root.img");
        std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
        let choice = PortChoice {
            fixed: None,
            min: 22380,
            max: 22390,
        };
        let port = choose_port(&choice);
        let server = NbdServer::new(scratch.path(), port, &image);
        let logger = JobLogger::capturing();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        start(&logger, &server, "7", deadline).await.unwrap();
        let pids = server.processes();
        assert!(!pids.is_empty());
        let size = tokio::task::spawn_blocking(move || handshake_size(port))
            .await
            .unwrap();
        assert_eq!(size, 1 << 20);
        server.stop(&logger).await;
        assert!(server.processes().is_empty());
        assert!(!server.dir.exists());
        for pid in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}/cmdline")).exists() || {
                    // A zombie of a daemon reparented elsewhere has an empty command line.
                    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty())
                }
            );
        }
    }

    /// The size the server announces for the empty export name (fixed newstyle,
    /// NBD_OPT_EXPORT_NAME).
    fn handshake_size(port: u16) -> u64 {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut greeting = [0u8; 18];
        socket.read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting[..16], b"NBDMAGICIHAVEOPT");
        socket.write_all(&1u32.to_be_bytes()).unwrap();
        let mut option = b"IHAVEOPT".to_vec();
        option.extend(1u32.to_be_bytes());
        option.extend(0u32.to_be_bytes());
        socket.write_all(&option).unwrap();
        let mut size = [0u8; 8];
        socket.read_exact(&mut size).unwrap();
        u64::from_be_bytes(size)
    }
}
