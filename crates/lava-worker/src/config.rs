//! The worker's settings ([`WorkerConfig`]), with LAVA's defaults, and how it gets its
//! token ([`TokenSource`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::WorkerError;

/// LAVA's worker directory.
pub const DEFAULT_WORKER_DIR: &str = "/var/lib/lava/dispatcher/worker";
/// The dispatcher's download area, `/var/lib/lava/dispatcher/tmp/<prefix><id>` of a job is
/// removed after the job as LAVA does.
pub const DEFAULT_DOWNLOAD_ROOT: &str = "/var/lib/lava/dispatcher/tmp";
/// The server version a ping reports by default: lava-server compares it with its own
/// version string and refuses jobs to a worker of another version (Debian bookworm's
/// lava-server is 2023.01).
pub const DEFAULT_REPORTED_VERSION: &str = "2023.01";
/// LAVA's ping period.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
/// LAVA's HTTP timeout.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(600);
/// LAVA's log batching period handed to lava-run.
pub const DEFAULT_JOB_LOG_INTERVAL: u64 = 5;

/// Where the worker token comes from, in LAVA's order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Auto-register with these credentials, then store the token in the token file.
    Register {
        /// The lava-server user.
        username: String,
        /// Its password.
        password: String,
    },
    /// This token (stored in the token file as LAVA does).
    Given(String),
    /// The token file; when it does not exist, anonymous auto-registration (allowed from
    /// the server's `WORKER_AUTO_REGISTER_NETMASK`), then the token is stored there.
    File,
}

/// Cancel escalation: after SIGTERM to the job's process group, SIGTERM again after
/// `second_term`, SIGKILL to the group after `kill` (LAVA: 60 s and 120 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelGrace {
    /// Time from the cancel to the second SIGTERM.
    pub second_term: Duration,
    /// Time from the cancel to SIGKILL.
    pub kill: Duration,
}

impl Default for CancelGrace {
    fn default() -> Self {
        CancelGrace {
            second_term: Duration::from_secs(60),
            kill: Duration::from_secs(120),
        }
    }
}

/// Everything the worker needs to run; [`WorkerConfig::new`] gives LAVA's defaults.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The worker's name on the server (`[-_a-zA-Z0-9.]+`).
    pub name: String,
    /// The server's base URL, without a trailing `/`.
    pub url: String,
    /// The event websocket (`<url>/ws/` by default). Accepted for LAVA's command line; the
    /// worker does not subscribe to it (jobs start at ping-interval latency).
    pub ws_url: String,
    /// Bound of every HTTP request.
    pub http_timeout: Duration,
    /// Ping period.
    pub ping_interval: Duration,
    /// How often the local jobs are checked (end of a job, cancel escalation, pending
    /// reports); LAVA checks once per ping.
    pub check_interval: Duration,
    /// `--job-log-interval` handed to lava-run.
    pub job_log_interval: u64,
    /// The worker directory (token, state, job directories).
    pub worker_dir: PathBuf,
    /// The token file (`<worker-dir>/token` by default).
    pub token_file: PathBuf,
    /// Where the token comes from.
    pub token: TokenSource,
    /// Pass `--debug` to lava-run and leave its output on the worker's.
    pub debug: bool,
    /// Stop (successfully) when the server answers a ping with a version mismatch.
    pub exit_on_version_mismatch: bool,
    /// At shutdown, keep supervising until every local job is finished and reported.
    pub wait_jobs: bool,
    /// The version reported in pings and the user agent.
    pub reported_version: String,
    /// The dispatcher program (`lava-run`, looked up in `PATH`).
    pub lava_run: PathBuf,
    /// Start lava-run under `nice`, as LAVA 2023.01 does.
    pub nice: bool,
    /// The dispatcher's download area (job directories removed after each job).
    pub download_root: PathBuf,
    /// Cancel escalation times.
    pub cancel_grace: CancelGrace,
}

impl WorkerConfig {
    /// LAVA's defaults for a worker `name` of the server at `url`; the name is checked and
    /// a trailing `/` of the URL dropped.
    pub fn new(name: &str, url: &str) -> Result<Self, WorkerError> {
        check_name(name)?;
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(WorkerError::Config(format!(
                "--url: expected an http:// or https:// URL, found {url:?}"
            )));
        }
        let worker_dir = PathBuf::from(DEFAULT_WORKER_DIR);
        Ok(WorkerConfig {
            name: name.to_string(),
            ws_url: format!("{url}/ws/"),
            url,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            check_interval: Duration::from_secs(1),
            job_log_interval: DEFAULT_JOB_LOG_INTERVAL,
            token_file: worker_dir.join("token"),
            worker_dir,
            token: TokenSource::File,
            debug: false,
            exit_on_version_mismatch: false,
            wait_jobs: false,
            reported_version: DEFAULT_REPORTED_VERSION.to_string(),
            lava_run: PathBuf::from("lava-run"),
            nice: true,
            download_root: PathBuf::from(DEFAULT_DOWNLOAD_ROOT),
            cancel_grace: CancelGrace::default(),
        })
    }

    /// Use `dir` as the worker directory, with the token file inside it.
    pub fn with_worker_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.worker_dir = dir.as_ref().to_path_buf();
        self.token_file = self.worker_dir.join("token");
        self
    }

    /// The per-job directories' parent, `<worker-dir>/tmp`.
    pub fn jobs_dir(&self) -> PathBuf {
        self.worker_dir.join("tmp")
    }

    /// The `User-Agent` of the worker's requests: LAVA's `lava-worker <version>`.
    pub fn user_agent(&self) -> String {
        format!("lava-worker {}", self.reported_version)
    }
}

/// LAVA's rule for worker names: `[-_a-zA-Z0-9.]+`.
pub fn check_name(name: &str) -> Result<(), WorkerError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(WorkerError::Config(format!(
            "--name: {name:?} is not a valid worker name (expected letters, digits, '-', '_' and '.')"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_lavas() {
        let config = WorkerConfig::new("w1.lab", "https://lava.example.org/").unwrap();
        assert_eq!(config.url, "https://lava.example.org");
        assert_eq!(config.ws_url, "https://lava.example.org/ws/");
        assert_eq!(
            config.token_file,
            Path::new("/var/lib/lava/dispatcher/worker/token")
        );
        assert_eq!(config.user_agent(), "lava-worker 2023.01");
        assert_eq!(config.ping_interval, Duration::from_secs(20));
        let moved = config.with_worker_dir("/srv/w");
        assert_eq!(moved.token_file, Path::new("/srv/w/token"));
        assert_eq!(moved.jobs_dir(), Path::new("/srv/w/tmp"));
    }

    #[test]
    fn names_and_urls_are_checked() {
        assert!(check_name("a-b_c.9").is_ok());
        for bad in ["", "w 1", "w/1", "wé"] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains("--name"), "{err}");
        }
        let err = WorkerConfig::new("w", "lava.example.org").unwrap_err();
        assert!(err.to_string().contains("--url"), "{err}");
    }
}
