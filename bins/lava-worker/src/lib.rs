//! The `lava-worker` command line: LAVA's worker options (`--name`, `--url`, `--token`,
//! `--worker-dir`, `--level`, `--log-file`, `--wait-jobs`, ...), turned into a
//! [`lava_worker::WorkerConfig`] and handed to [`lava_worker::run`] until SIGTERM or
//! SIGINT.
//!
//! The clap definition is a library item so that `cargo xtask deb` generates the manual
//! page and shell completions from the same [`Cli`] the binary parses:
//!
//! ```
//! use clap::CommandFactory;
//! let command = lava_worker_cli::Cli::command();
//! assert_eq!(command.get_name(), "lava-worker");
//! ```
//!
//! Under systemd, `lava-worker.service` reads `/etc/lava-dispatcher/lava-worker` (shell
//! variables holding whole options: `TOKEN="--token ..."`, `WORKER_NAME="--name ..."`) as
//! Debian's unit does.
#![warn(missing_docs)]

#[path = "../../cli.rs"]
mod cli;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use lava_coordinator::LogLevel;
use lava_worker::{Exit, TokenSource, WorkerConfig};

/// LAVA's log file of the worker.
pub const DEFAULT_LOG_FILE: &str = "/var/log/lava-dispatcher/lava-worker.log";

/// The environment variable naming the version reported to the server (default
/// [`lava_worker::config::DEFAULT_REPORTED_VERSION`]): lava-server offers jobs only to a
/// worker reporting exactly its own version.
pub const VERSION_VARIABLE: &str = "LAVA_WORKER_VERSION";

/// Command line of `lava-worker`.
#[derive(Parser, Debug)]
#[command(
    name = "lava-worker",
    version,
    about = "LAVA worker: runs lava-server's jobs on this machine's devices with lava-run",
    long_about = "LAVA worker: pings lava-server, starts lava-run for each job the server \
                  schedules on this worker's devices, reports each job's state and result, \
                  cancels jobs on the server's request. SIGTERM or SIGINT stops it (running \
                  jobs go on unless --wait-jobs); SIGHUP reopens the log file.",
    after_help = "Environment: LAVA_WORKER_VERSION is the version reported to the server \
                  (default 2023.01, Debian bookworm's lava-server); the server refuses jobs \
                  to a worker of another version unless ALLOW_VERSION_MISMATCH is set."
)]
pub struct Cli {
    /// Name of the worker, as known to the server (default: the host's FQDN).
    #[arg(long)]
    pub name: Option<String>,
    /// Run lava-run with --debug and leave its output on the worker's.
    #[arg(long)]
    pub debug: bool,
    /// Exit when the server reports a version mismatch.
    #[arg(long)]
    pub exit_on_version_mismatch: bool,
    /// On SIGTERM/SIGINT, wait until every running job has finished.
    #[arg(long)]
    pub wait_jobs: bool,
    /// Path to the worker's data directory.
    #[arg(long, default_value = lava_worker::config::DEFAULT_WORKER_DIR, value_hint = clap::ValueHint::DirPath)]
    pub worker_dir: PathBuf,
    /// Base URL of the server.
    #[arg(long, value_hint = clap::ValueHint::Url)]
    pub url: String,
    /// WebSocket URL of the server (default: the URL followed by ws/); accepted, not used: jobs start
    /// at ping-interval latency.
    #[arg(long, value_hint = clap::ValueHint::Url)]
    pub ws_url: Option<String>,
    /// Timeout of every HTTP request, in seconds.
    #[arg(long, default_value_t = 600)]
    pub http_timeout: u64,
    /// Time between two pings, in seconds.
    #[arg(long, default_value_t = 20)]
    pub ping_interval: u64,
    /// Time between two log uploads of lava-run, in seconds.
    #[arg(long, default_value_t = 5)]
    pub job_log_interval: u64,
    /// Register with this user (the password is asked on the terminal).
    #[arg(long, conflicts_with_all = ["token", "token_file"])]
    pub username: Option<String>,
    /// Worker token (stored in the token file).
    #[arg(long)]
    pub token: Option<String>,
    /// File holding the worker token (default: the file token in the worker directory).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    pub token_file: Option<PathBuf>,
    /// Log file ("-" for standard output).
    #[arg(long, default_value = DEFAULT_LOG_FILE, value_hint = clap::ValueHint::FilePath)]
    pub log_file: String,
    /// Log level: DEBUG, ERROR, INFO or WARN.
    #[arg(long, short = 'l', default_value = "INFO")]
    pub level: LogLevel,
}

impl Cli {
    /// The worker's settings; `password` is asked for when registering with a username.
    pub fn config(
        &self,
        password: impl FnOnce(&str) -> anyhow::Result<String>,
    ) -> anyhow::Result<WorkerConfig> {
        let name = match &self.name {
            Some(name) => name.clone(),
            None => fqdn().context("--name not given and the host name is unknown")?,
        };
        let mut config = WorkerConfig::new(&name, &self.url)?.with_worker_dir(&self.worker_dir);
        if let Some(ws_url) = &self.ws_url {
            config.ws_url = ws_url.clone();
        }
        config.http_timeout = Duration::from_secs(self.http_timeout.max(1));
        config.ping_interval = Duration::from_secs(self.ping_interval.max(1));
        config.check_interval = config.check_interval.min(config.ping_interval);
        config.job_log_interval = self.job_log_interval;
        config.debug = self.debug;
        config.exit_on_version_mismatch = self.exit_on_version_mismatch;
        config.wait_jobs = self.wait_jobs;
        if let Some(file) = &self.token_file {
            config.token_file = file.clone();
        }
        config.token = match (&self.username, &self.token) {
            (Some(username), _) => TokenSource::Register {
                username: username.clone(),
                password: password(username)?,
            },
            (None, Some(token)) => TokenSource::Given(token.clone()),
            (None, None) => TokenSource::File,
        };
        if let Some(version) = std::env::var_os(VERSION_VARIABLE) {
            config.reported_version = version
                .into_string()
                .map_err(|v| anyhow::anyhow!("{VERSION_VARIABLE}: not UTF-8: {v:?}"))?;
        }
        Ok(config)
    }
}

/// Parse `args`, run the worker until it is stopped and return the process exit code: 0
/// after a clean stop (or a version mismatch with --exit-on-version-mismatch), 1 with the
/// error printed as one message on standard error, 2 for a bad command line.
pub fn main_with_args<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    let cli: Cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::Error::new(err).context("cannot start the runtime")),
    };
    match runtime.block_on(run(&cli)) {
        Ok(_) => 0,
        Err(err) => fail(&err),
    }
}

async fn run(cli: &Cli) -> anyhow::Result<Exit> {
    let config = cli.config(ask_password)?;
    if cli.log_file != "-"
        && let Some(dir) = std::path::Path::new(&cli.log_file).parent()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log = lava_coordinator::init_logging(&cli.log_file, cli.level)?;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let stop = async move {
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = hup.recv() => {
                    if let Err(err) = log.reopen() {
                        eprintln!("lava-worker: SIGHUP: {err}");
                    }
                }
            }
        }
    };
    Ok(lava_worker::run(config, stop).await?)
}

fn fail(err: &anyhow::Error) -> i32 {
    eprintln!("lava-worker: {err:#}");
    1
}

/// The host's fully qualified name (Python's `socket.getfqdn()`: the canonical name of
/// the host name, else the host name).
pub fn fqdn() -> Option<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let host = host.trim().to_string();
    if host.is_empty() {
        return None;
    }
    Some(canonical_name(&host).unwrap_or(host))
}

fn canonical_name(host: &str) -> Option<String> {
    let c_host = std::ffi::CString::new(host).ok()?;
    // SAFETY: a zeroed addrinfo is a valid hints value; getaddrinfo's result is freed
    // once read, and ai_canonname is a NUL-terminated string while it lives.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_CANONNAME;
        hints.ai_socktype = libc::SOCK_STREAM;
        let mut found: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut found) != 0 {
            return None;
        }
        let name = (!found.is_null() && !(*found).ai_canonname.is_null()).then(|| {
            std::ffi::CStr::from_ptr((*found).ai_canonname)
                .to_string_lossy()
                .into_owned()
        });
        libc::freeaddrinfo(found);
        name.filter(|n| !n.is_empty())
    }
}

/// The password of `username`, typed on the terminal without echo.
fn ask_password(username: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, Write};
    use std::os::fd::AsRawFd;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("--username: the password is asked on a terminal, and there is none")?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data filled by tcgetattr on an open terminal.
    let saved = unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut termios) != 0 {
            anyhow::bail!("--username: /dev/tty is not a terminal");
        }
        let mut quiet = termios;
        quiet.c_lflag &= !libc::ECHO;
        libc::tcsetattr(fd, libc::TCSANOW, &quiet);
        termios
    };
    let mut writer = &tty;
    let _ = write!(writer, "Password for {username}: ");
    let _ = writer.flush();
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    // SAFETY: restores the settings read above on the same descriptor.
    unsafe {
        libc::tcsetattr(fd, libc::TCSANOW, &saved);
    }
    let _ = writeln!(writer);
    read.context("--username: reading the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("lava-worker").chain(args.iter().copied()))
    }

    #[test]
    fn lavas_options_and_defaults() {
        let cli = parse(&["--url", "http://lava.lab/", "--name", "w1"]).unwrap();
        assert_eq!(
            cli.worker_dir,
            PathBuf::from("/var/lib/lava/dispatcher/worker")
        );
        assert_eq!(cli.log_file, "/var/log/lava-dispatcher/lava-worker.log");
        assert_eq!(cli.level, LogLevel::Info);
        let config = cli.config(|_| unreachable!()).unwrap();
        assert_eq!(config.url, "http://lava.lab");
        assert_eq!(config.ws_url, "http://lava.lab/ws/");
        assert_eq!(config.token, TokenSource::File);
        assert_eq!(config.http_timeout, Duration::from_secs(600));
        assert_eq!(config.job_log_interval, 5);

        let cli = parse(&[
            "--url",
            "https://lava.lab",
            "--name",
            "w2",
            "--token",
            "abc",
            "--worker-dir",
            "/srv/w",
            "--http-timeout",
            "30",
            "--job-log-interval",
            "2",
            "-l",
            "DEBUG",
            "--log-file",
            "-",
            "--wait-jobs",
            "--exit-on-version-mismatch",
            "--debug",
            "--ping-interval",
            "5",
            "--ws-url",
            "wss://lava.lab/ws/",
        ])
        .unwrap();
        let config = cli.config(|_| unreachable!()).unwrap();
        assert_eq!(config.token, TokenSource::Given("abc".into()));
        assert_eq!(config.token_file, PathBuf::from("/srv/w/token"));
        assert!(config.wait_jobs && config.exit_on_version_mismatch && config.debug);
        assert_eq!(config.ping_interval, Duration::from_secs(5));
        assert_eq!(config.ws_url, "wss://lava.lab/ws/");
    }

    #[test]
    fn registration_asks_the_password_and_excludes_tokens() {
        let cli = parse(&["--url", "http://l/", "--name", "w", "--username", "admin"]).unwrap();
        let config = cli.config(|user| Ok(format!("pw-of-{user}"))).unwrap();
        assert_eq!(
            config.token,
            TokenSource::Register {
                username: "admin".into(),
                password: "pw-of-admin".into()
            }
        );
        assert!(parse(&["--url", "http://l/", "--username", "a", "--token", "t"]).is_err());
        assert!(parse(&["--name", "w"]).is_err(), "--url is required");
        assert!(parse(&["--url", "http://l/", "-l", "TRACE"]).is_err());
        let bad = parse(&["--url", "http://l/", "--name", "bad name"]).unwrap();
        let err = bad.config(|_| unreachable!()).unwrap_err().to_string();
        assert!(err.contains("--name"), "{err}");
    }

    #[test]
    fn the_default_name_is_the_hosts() {
        let name = fqdn().expect("a host name");
        assert!(!name.is_empty());
    }
}
