//! A real lab on this machine: Debian's lava-server 2023.01 with PostgreSQL 15, on loopback,
//! without systemd (`cargo xtask lab` and the end-to-end tests against a real server).
//!
//! [`start`] installs what is absent (`lava-server`, `lava-dispatcher`, PostgreSQL, with a
//! `policy-rc.d` denying service starts while dpkg runs), starts the PostgreSQL cluster
//! (`pg_ctlcluster 15 main start`, created first when absent), configures lava-server as its
//! postinst does when the database was down at install time, migrates, and adds what a lab
//! needs through `lava-server manage`: a superuser with an API token, a worker with its token,
//! the device types and devices of `fixtures/lab` (dictionaries placed where lava-server
//! reads them). Then it starts gunicorn (`lava_server.wsgi` on `127.0.0.1:PORT`) and
//! `lava-server manage lava-scheduler` as background processes, each the leader of its own
//! process group with a pid file in [`STATE_DIR`], and writes [`LabInfo`] there as
//! `lab.env` (a shell-sourceable file). Starting again while everything runs changes
//! nothing; [`stop`] ends what [`start`] started (and PostgreSQL only if it started it).
//!
//! [`LabGuard`] is the tests' owner: it starts the lab unless one runs already and stops it
//! on drop only if it started it. [`Worker`] runs Debian's `lava-worker` for the lab with a
//! chosen `lava-run` first on its jobs' `PATH`; [`Api`] submits and follows jobs;
//! [`add_local_shell_devices`] adds more local-shell devices (concurrent jobs).
//!
//! ```no_run
//! let (info, _started) = lava_test_support::lab::start(&Default::default())?;
//! println!("{} (token {})", info.url, info.api_token);
//! lava_test_support::lab::stop()?;
//! # Ok::<(), lava_test_support::lab::LabError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group, test_kill_process};

pub mod api;
pub use api::Api;

/// Where the lab keeps its state: pid files, logs, `lab.env`. One lab per machine (it owns
/// the machine's lava-server), so the place is machine-wide.
pub const STATE_DIR: &str = "/run/lava-rs-lab";
/// The superuser whose API token the lab hands out.
pub const ADMIN_USER: &str = "lava-rs-admin";
/// The worker name registered on the server.
pub const WORKER_NAME: &str = "lava-rs-lab";
/// The local-shell device (type `local-shell`, `fixtures/lab/devices`).
pub const LOCAL_SHELL_DEVICE: &str = "lava-rs-local-shell01";
/// The embedded QEMU device (LAVA's type `qemu`, `fixtures/lab/devices`).
pub const QEMU_DEVICE: &str = "lava-rs-qemu01";

/// The directory first on the `PATH` lava-server sends the lab's worker for its jobs
/// (`/etc/lava-server/dispatcher.d/<worker>/env.yaml`): a `lava-run` placed here is the one
/// the worker starts (Debian's `/usr/bin/lava-run` when it is empty). [`Worker::start`]
/// places one.
pub const LAVA_RUN_DIR: &str = "/run/lava-rs-lab/bin";

/// Where lava-server reads device dictionaries and device-type templates.
const DISPATCHER_CONFIG: &str = "/etc/lava-server/dispatcher-config";
/// Debian's Python tools need Debian's python3 first: a clean system `PATH`.
const SYSTEM_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
const PG_VERSION: &str = "15";
/// How long gunicorn gets to answer its first request.
const WEB_START: Duration = Duration::from_secs(90);
/// After SIGTERM, how long a lab process gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Any one `lava-server manage` or `apt-get` command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(900);

/// What went wrong setting the lab up or down.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab installs packages and owns system services: it must run as root.
    #[error("the lab needs root (it installs lava-server and starts PostgreSQL)")]
    NotRoot,
    /// A command could not be started or failed.
    #[error("{command}: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and output, or why it could not run.
        detail: String,
    },
    /// A file of the lab could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The server did not come up, or answered something unexpected.
    #[error("lava-server: {0}")]
    Server(String),
    /// `lab.env` is missing a key or is not the lab's.
    #[error("{path}: {detail}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

type Result<T> = std::result::Result<T, LabError>;

/// How to start the lab.
#[derive(Debug, Clone, Default)]
pub struct LabOptions {
    /// The loopback port of the web/API server; a free one when `None`.
    pub port: Option<u16>,
    /// Where `fixtures/lab` is (the device types and devices to install); the workspace's
    /// when `None`.
    pub fixtures: Option<PathBuf>,
}

/// A running lab, as `lab.env` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabInfo {
    /// The server's base URL, `http://127.0.0.1:PORT/`.
    pub url: String,
    /// The web/API port.
    pub port: u16,
    /// The superuser ([`ADMIN_USER`]).
    pub admin_user: String,
    /// Its API token (`Authorization: Token ...` on `/api/v0.2/`).
    pub api_token: String,
    /// The registered worker's name ([`WORKER_NAME`]).
    pub worker_name: String,
    /// The worker's token (`lava-worker --token`).
    pub worker_token: String,
    /// Whether the lab started PostgreSQL (then [`stop`] stops it).
    pub started_postgres: bool,
}

impl LabInfo {
    fn to_env(&self) -> String {
        format!(
            "# written by `cargo xtask lab`; `cargo xtask lab --stop` ends the lab\n\
             LAVA_LAB_URL={}\nLAVA_LAB_PORT={}\nLAVA_LAB_ADMIN={}\nLAVA_LAB_TOKEN={}\n\
             LAVA_LAB_WORKER={}\nLAVA_LAB_WORKER_TOKEN={}\nLAVA_LAB_STARTED_POSTGRES={}\n",
            self.url,
            self.port,
            self.admin_user,
            self.api_token,
            self.worker_name,
            self.worker_token,
            self.started_postgres
        )
    }

    fn from_env(path: &Path, text: &str) -> Result<Self> {
        let values: BTreeMap<&str, &str> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .collect();
        let get = |key: &str| {
            values
                .get(key)
                .map(|value| value.to_string())
                .ok_or_else(|| LabError::State {
                    path: path.to_path_buf(),
                    detail: format!("no {key}= line"),
                })
        };
        let port = get("LAVA_LAB_PORT")?;
        Ok(LabInfo {
            url: get("LAVA_LAB_URL")?,
            port: port.parse().map_err(|_| LabError::State {
                path: path.to_path_buf(),
                detail: format!("LAVA_LAB_PORT={port:?}: expected a port number"),
            })?,
            admin_user: get("LAVA_LAB_ADMIN")?,
            api_token: get("LAVA_LAB_TOKEN")?,
            worker_name: get("LAVA_LAB_WORKER")?,
            worker_token: get("LAVA_LAB_WORKER_TOKEN")?,
            started_postgres: get("LAVA_LAB_STARTED_POSTGRES")? == "true",
        })
    }

    /// The lab as `lab.env` records it, when a lab was started and not stopped.
    pub fn load() -> Result<Option<Self>> {
        let path = state_dir().join("lab.env");
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(Self::from_env(&path, &text)?)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LabError::Io { path, source }),
        }
    }
}

/// The state directory ([`STATE_DIR`], or `$LAVA_RS_LAB_STATE` for a second lab's files).
pub fn state_dir() -> PathBuf {
    std::env::var_os("LAVA_RS_LAB_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(STATE_DIR))
}

/// The processes the lab starts, by pid-file name.
const DAEMONS: [&str; 2] = ["gunicorn", "scheduler"];

/// Whether every lab process recorded in the state directory is alive.
pub fn is_running() -> bool {
    DAEMONS.iter().all(|name| daemon_pid(name).is_some())
}

/// Starts the lab (see the module doc). Returns its [`LabInfo`] and whether this call
/// started it (`false`: it was running already and nothing changed).
pub fn start(options: &LabOptions) -> Result<(LabInfo, bool)> {
    if !rustix::process::geteuid().is_root() {
        return Err(LabError::NotRoot);
    }
    if is_running()
        && let Some(info) = LabInfo::load()?
        && web_answers(info.port)
    {
        return Ok((info, false));
    }
    // Whatever is left of a lab that half-ran goes first (keeping PostgreSQL's record).
    let started_postgres_before = LabInfo::load().ok().flatten().map(|i| i.started_postgres);
    stop_daemons();
    let dir = state_dir();
    fs::create_dir_all(&dir).map_err(|source| LabError::Io {
        path: dir.clone(),
        source,
    })?;

    let mut started_postgres = started_postgres_before == Some(true);
    let result = bring_up(options, &dir, &mut started_postgres);
    if result.is_err() {
        // Nothing half-started stays behind: the processes, and PostgreSQL if we started it.
        stop_daemons();
        let _ = fs::remove_file(dir.join("lab.env"));
        if started_postgres {
            let _ = run(Command::new("pg_ctlcluster").args([PG_VERSION, "main", "stop"]));
        }
    }
    result.map(|info| (info, true))
}

/// [`start`]'s steps from the packages to the server answering; `started_postgres` is set
/// as soon as PostgreSQL was started here.
fn bring_up(options: &LabOptions, dir: &Path, started_postgres: &mut bool) -> Result<LabInfo> {
    let fixtures = options
        .fixtures
        .clone()
        .unwrap_or_else(|| crate::paths::fixture("lab"));
    *started_postgres |= install_packages()?;
    *started_postgres |= start_postgres()?;
    let started_postgres = *started_postgres;
    configure_server()?;
    let api_token = ensure_admin()?;
    let worker_token = ensure_worker()?;
    install_devices(&fixtures)?;
    install_worker_env()?;

    let port = options
        .port
        .unwrap_or_else(crate::paths::free_loopback_port);
    let info = LabInfo {
        url: format!("http://127.0.0.1:{port}/"),
        port,
        admin_user: ADMIN_USER.to_string(),
        api_token,
        worker_name: WORKER_NAME.to_string(),
        worker_token,
        started_postgres,
    };
    write_file(&dir.join("lab.env"), &info.to_env(), 0o600)?;
    start_web(port)?;
    start_daemon(
        "scheduler",
        Command::new("/usr/bin/lava-server")
            .args(["manage", "lava-scheduler", "--level", "DEBUG", "--log-file"])
            .arg(dir.join("scheduler.log")),
    )?;
    let deadline = Instant::now() + WEB_START;
    while !web_answers(port) {
        if daemon_pid("gunicorn").is_none() {
            return Err(LabError::Server(format!(
                "gunicorn exited at start (see {})",
                dir.join("gunicorn.log").display()
            )));
        }
        if Instant::now() > deadline {
            return Err(LabError::Server(format!(
                "no answer on 127.0.0.1:{port} after {}s (see {})",
                WEB_START.as_secs(),
                dir.join("gunicorn.log").display()
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    if daemon_pid("scheduler").is_none() {
        return Err(LabError::Server(format!(
            "lava-scheduler exited at start (see {})",
            dir.join("scheduler.log").display()
        )));
    }
    Ok(info)
}

/// Restarts the web/API process (gunicorn) on the same port and waits until it answers:
/// what a server upgrade or an admin's restart does to running jobs.
pub fn restart_web() -> Result<()> {
    let info = LabInfo::load()?.ok_or_else(|| LabError::Server("no lab is running".into()))?;
    stop_daemon("gunicorn");
    start_web(info.port)?;
    let deadline = Instant::now() + WEB_START;
    while !web_answers(info.port) {
        if Instant::now() > deadline {
            return Err(LabError::Server(
                "gunicorn did not answer after restart".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// Stops everything [`start`] started: gunicorn, the scheduler and, when the lab started
/// it, PostgreSQL; removes `lab.env`. Idempotent.
pub fn stop() -> Result<()> {
    let info = LabInfo::load()?;
    stop_daemons();
    if info.as_ref().is_some_and(|info| info.started_postgres) {
        run(Command::new("pg_ctlcluster").args([PG_VERSION, "main", "stop"]))?;
    }
    let env = state_dir().join("lab.env");
    match fs::remove_file(&env) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LabError::Io { path: env, source }),
    }
}

/// The tests' owner of a lab: starts one unless it runs already, stops it on drop only if
/// it started it.
pub struct LabGuard {
    info: LabInfo,
    started: bool,
}

impl LabGuard {
    /// Starts (or joins) the lab.
    pub fn start() -> Result<Self> {
        let (info, started) = start(&LabOptions::default())?;
        Ok(LabGuard { info, started })
    }

    /// The running lab.
    pub fn info(&self) -> &LabInfo {
        &self.info
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if self.started
            && let Err(err) = stop()
        {
            eprintln!("stopping the lab: {err}");
        }
    }
}

/// A `lava-worker` serving the lab's worker, in its own process group, with its own worker
/// directory; stopped (group-wide) on drop. The jobs it starts run `lava_run` (linked into
/// [`LAVA_RUN_DIR`], first on the `PATH` the server sends), or Debian's `lava-run` when
/// `None`.
pub struct Worker {
    child: Option<Child>,
    dir: PathBuf,
}

impl Worker {
    /// Starts `program` (`/usr/bin/lava-worker`, or a worker with the same options) for
    /// `info`'s worker, its directory `dir` (jobs under `dir/tmp/<job id>`), pinging every
    /// second.
    pub fn start(
        info: &LabInfo,
        program: &Path,
        lava_run: Option<&Path>,
        dir: &Path,
    ) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|source| LabError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let link = Path::new(LAVA_RUN_DIR).join("lava-run");
        let _ = fs::remove_file(&link);
        if let Some(lava_run) = lava_run {
            std::os::unix::fs::symlink(lava_run, &link).map_err(|source| LabError::Io {
                path: link.clone(),
                source,
            })?;
        }
        let log = dir.join("worker.log");
        let mut command = Command::new(program);
        command
            .arg("--name")
            .arg(&info.worker_name)
            .arg("--url")
            .arg(&info.url)
            .arg("--token")
            .arg(&info.worker_token)
            .arg("--worker-dir")
            .arg(dir)
            .args(["--ping-interval", "1", "--level", "DEBUG", "--log-file"])
            .arg(&log)
            .env("PATH", SYSTEM_PATH)
            .stdin(Stdio::null())
            .stdout(output_file(&dir.join("worker.out"))?)
            .stderr(output_file(&dir.join("worker.err"))?)
            .process_group(0);
        let child = command.spawn().map_err(|err| LabError::Command {
            command: format!("{command:?}"),
            detail: err.to_string(),
        })?;
        Ok(Worker {
            child: Some(child),
            dir: dir.to_path_buf(),
        })
    }

    /// The worker's process id while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The worker's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SIGTERM to the worker's process group, SIGKILL after a grace; reaped.
    /// Then the `lava-run` it placed in [`LAVA_RUN_DIR`] is removed (the lab's jobs run
    /// Debian's again).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(child.id() as i32, || matches!(child.try_wait(), Ok(None)));
            let _ = child.kill();
            let _ = child.wait();
            let _ = fs::remove_file(Path::new(LAVA_RUN_DIR).join("lava-run"));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- installing -------------------------------------------------------------------------

/// Installs lava-server, lava-dispatcher and PostgreSQL when absent; `true` when it
/// started PostgreSQL (for lava-server's postinst).
fn install_packages() -> Result<bool> {
    let mut missing = Vec::new();
    if !Path::new(&format!("/usr/lib/postgresql/{PG_VERSION}/bin/postgres")).exists() {
        missing.push("postgresql");
    }
    if !Path::new("/usr/bin/lava-worker").exists() {
        missing.push("lava-dispatcher");
    }
    let server_missing = !Path::new("/usr/bin/lava-server").exists();
    if missing.is_empty() && !server_missing {
        return Ok(false);
    }
    let _policy = DenyServiceStarts::install()?;
    run(Command::new("apt-get").args(["-q", "update"]))?;
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    let mut started_postgres = false;
    if server_missing {
        // lava-server's postinst creates its database when PostgreSQL answers: start it.
        started_postgres = start_postgres()?;
        apt_install(&["lava-server"])?;
    }
    Ok(started_postgres)
}

fn apt_install(packages: &[&str]) -> Result<()> {
    run(Command::new("apt-get")
        .args([
            "-o",
            "DPkg::Lock::Timeout=600",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
        ])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .map(drop)
}

/// A `policy-rc.d` denying every service start while dpkg runs (no systemd here; the lab
/// starts what it needs itself), removed on drop when it was not there before.
struct DenyServiceStarts {
    created: Option<PathBuf>,
}

impl DenyServiceStarts {
    fn install() -> Result<Self> {
        let path = PathBuf::from("/usr/sbin/policy-rc.d");
        if path.exists() {
            return Ok(DenyServiceStarts { created: None });
        }
        write_file(
            &path,
            "#!/bin/sh\n# cargo xtask lab: no service starts while installing\nexit 101\n",
            0o755,
        )?;
        Ok(DenyServiceStarts {
            created: Some(path),
        })
    }
}

impl Drop for DenyServiceStarts {
    fn drop(&mut self) {
        if let Some(path) = &self.created {
            let _ = fs::remove_file(path);
        }
    }
}

// ---- PostgreSQL and lava-server's configuration -------------------------------------------

/// Starts the `15/main` cluster (created first when absent); `true` when this call started it.
fn start_postgres() -> Result<bool> {
    if !Path::new(&format!("/etc/postgresql/{PG_VERSION}/main")).exists() {
        run(Command::new("pg_createcluster").args([PG_VERSION, "main"]))?;
    }
    if postgres_ready() {
        return Ok(false);
    }
    run(Command::new("pg_ctlcluster").args([PG_VERSION, "main", "start"]))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !postgres_ready() {
        if Instant::now() > deadline {
            return Err(LabError::Server(
                "PostgreSQL did not accept connections within 60 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(true)
}

fn postgres_ready() -> bool {
    system_command("pg_isready")
        .args(["-q", "-h", "localhost"])
        .status()
        .is_ok_and(|status| status.success())
}

/// What `dpkg-reconfigure lava-server` does when the database was down at install time
/// (settings with the database and secret key, the role and database, fixed permissions),
/// then the migrations.
fn configure_server() -> Result<()> {
    let database = Path::new("/etc/lava-server/settings.d/00-database.yaml");
    if !database.exists() {
        // As the lavaserver and postgres users it switches to: a HOME they can read (libpq
        // looks for client certificates there and fails on root's).
        let postinst = run(Command::new("/usr/bin/python3")
            .args([
                "/usr/share/lava-server/postinst.py",
                "--config",
                "--db",
                "--fixup",
            ])
            .env("HOME", "/var/lib/lava-server/home"));
        if !database.exists() {
            postinst?;
            return Err(LabError::State {
                path: database.to_path_buf(),
                detail: "lava-server's postinst.py did not write it".into(),
            });
        }
        // postinst.py keeps a role that exists already (lava-server removed and installed
        // again, its database kept) with its old password, and then cannot migrate: give
        // the role the new password; the migrations below run again.
        set_role_password(database)?;
    }
    manage_as_lavaserver(&["migrate", "--noinput"])?;
    Ok(())
}

/// Sets the database role of lava-server's `00-database.yaml` to its password there.
fn set_role_password(database: &Path) -> Result<()> {
    let settings = fs::read_to_string(database).map_err(|source| LabError::Io {
        path: database.to_path_buf(),
        source,
    })?;
    let setting = |key: &str| {
        settings.lines().find_map(|line| {
            let value = line.trim().strip_prefix(key)?.trim().trim_matches('"');
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                .then(|| value.to_string())
        })
    };
    let (Some(user), Some(password)) = (setting("USER:"), setting("PASSWORD:")) else {
        return Err(LabError::State {
            path: database.to_path_buf(),
            detail: "expected USER: and PASSWORD: (letters, digits, '_', '-')".into(),
        });
    };
    run(Command::new("runuser")
        .args(["-u", "postgres", "--", "psql", "-q", "-c"])
        .arg(format!("ALTER ROLE \"{user}\" PASSWORD '{password}'"))
        .env("HOME", "/var/lib/postgresql"))
    .map(drop)
}

/// The superuser and its API token (created once; the token read back afterwards).
fn ensure_admin() -> Result<String> {
    if manage(&["users", "details", ADMIN_USER]).is_err() {
        manage(&[
            "users",
            "add",
            ADMIN_USER,
            "--superuser",
            "--staff",
            "--passwd",
            &random_secret(24),
        ])?;
    }
    let listed = manage(&["tokens", "list", "--user", ADMIN_USER, "--csv"])?;
    // csv: a header, then `id,secret,description` rows.
    if let Some(token) = listed
        .lines()
        .skip(1)
        .filter_map(|row| {
            let mut fields = row.splitn(3, ',');
            let (_id, secret, description) = (fields.next()?, fields.next()?, fields.next()?);
            (description.trim() == "lava-rs lab").then(|| secret.trim().to_string())
        })
        .next()
    {
        return Ok(token);
    }
    let token = random_secret(40);
    manage(&[
        "tokens",
        "add",
        "--user",
        ADMIN_USER,
        "--description",
        "lava-rs lab",
        "--secret",
        &token,
    ])?;
    Ok(token)
}

/// The worker and its token.
fn ensure_worker() -> Result<String> {
    let details = match manage(&["workers", "details", WORKER_NAME]) {
        Ok(details) => details,
        Err(_) => {
            manage(&[
                "workers",
                "add",
                WORKER_NAME,
                "--description",
                "lava-rs lab worker (cargo xtask lab)",
            ])?;
            manage(&["workers", "details", WORKER_NAME])?
        }
    };
    details
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "token").then(|| value.trim().to_string())
        })
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            LabError::Server(format!(
                "`workers details {WORKER_NAME}` printed no token:\n{details}"
            ))
        })
}

/// The device types and devices of `fixtures/lab`: templates and dictionaries copied where
/// lava-server reads them, then added to the database (device type `qemu` is lava-server's
/// own template).
fn install_devices(fixtures: &Path) -> Result<()> {
    let config = Path::new(DISPATCHER_CONFIG);
    for (kind, names) in [
        ("device-types", vec!["local-shell"]),
        ("devices", vec![LOCAL_SHELL_DEVICE, QEMU_DEVICE]),
    ] {
        for name in names {
            let file = format!("{name}.jinja2");
            let from = fixtures.join(kind).join(&file);
            let text = fs::read_to_string(&from).map_err(|source| LabError::Io {
                path: from.clone(),
                source,
            })?;
            let to = config.join(kind).join(&file);
            write_file(&to, &text, 0o644)?;
            run(Command::new("chown").arg("lavaserver:lavaserver").arg(&to))?;
        }
    }
    // One listing each (every `lava-server manage` call starts Django: seconds on a busy
    // machine), then only what is missing.
    let types = manage(&["device-types", "list", "--csv"])?;
    for device_type in ["local-shell", "qemu"] {
        if !csv_rows(&types).any(|row| row.first() == Some(&device_type)) {
            manage(&["device-types", "add", device_type])?;
        }
    }
    let devices = manage(&["devices", "list", "--all", "--csv"])?;
    for (device, device_type) in [(LOCAL_SHELL_DEVICE, "local-shell"), (QEMU_DEVICE, "qemu")] {
        // hostname,device-type,state,health
        let row: Option<Vec<&str>> = csv_rows(&devices).find(|row| row.first() == Some(&device));
        if row.is_none() {
            manage(&[
                "devices",
                "add",
                device,
                "--device-type",
                device_type,
                "--worker",
                WORKER_NAME,
            ])?;
        }
        // No health check is defined for these types: the device is usable as it is (and
        // back in service after a configuration a scheduler found invalid).
        if row.is_none_or(|row| row.get(3) != Some(&"Good")) {
            manage(&["devices", "update", device, "--health", "GOOD"])?;
        }
    }
    Ok(())
}

/// Adds local-shell devices named `names` to the lab's worker (dictionaries extending
/// `local-shell.jinja2`, health Good): one job runs per device, so N concurrent jobs need N
/// devices. In one `lava-server manage shell` (one Django start, not one per device).
pub fn add_local_shell_devices(names: &[String]) -> Result<()> {
    let dir = Path::new(DISPATCHER_CONFIG).join("devices");
    for name in names {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(LabError::Server(format!(
                "device name {name:?}: expected letters, digits and '-'"
            )));
        }
        let path = dir.join(format!("{name}.jinja2"));
        write_file(&path, "{% extends 'local-shell.jinja2' %}\n", 0o644)?;
        run(Command::new("chown")
            .arg("lavaserver:lavaserver")
            .arg(&path))?;
    }
    let list: Vec<String> = names.iter().map(|name| format!("'{name}'")).collect();
    let script = format!(
        "from lava_scheduler_app.models import Device, DeviceType, Worker\n\
         device_type = DeviceType.objects.get(name='local-shell')\n\
         worker = Worker.objects.get(hostname='{WORKER_NAME}')\n\
         for name in [{}]:\n    \
         device, _ = Device.objects.get_or_create(hostname=name, defaults={{'device_type': device_type, 'worker_host': worker}})\n    \
         device.worker_host = worker\n    \
         device.health = Device.HEALTH_GOOD\n    \
         device.save()\n",
        list.join(", ")
    );
    manage(&["shell", "-c", &script]).map(drop)
}

/// The environment lava-server sends the lab's worker for `lava-run` (LAVA's default
/// `/etc/lava-server/env.yaml` with [`LAVA_RUN_DIR`] first on `PATH`).
fn install_worker_env() -> Result<()> {
    let dir = Path::new("/etc/lava-server/dispatcher.d").join(WORKER_NAME);
    fs::create_dir_all(&dir).map_err(|source| LabError::Io {
        path: dir.clone(),
        source,
    })?;
    fs::create_dir_all(LAVA_RUN_DIR).map_err(|source| LabError::Io {
        path: LAVA_RUN_DIR.into(),
        source,
    })?;
    write_file(
        &dir.join("env.yaml"),
        &format!(
            "# cargo xtask lab: the environment of lava-run on worker {WORKER_NAME}; a lava-run\n\
             # in {LAVA_RUN_DIR} comes first (Debian's otherwise).\n\
             purge: true\n\
             overrides:\n  LC_ALL: C.UTF-8\n  LANG: C\n  \
             PATH: {LAVA_RUN_DIR}:/usr/local/bin:/usr/local/sbin:/bin:/usr/bin:/usr/sbin:/sbin\n"
        ),
        0o644,
    )
}

// ---- processes --------------------------------------------------------------------------

fn start_web(port: u16) -> Result<()> {
    let dir = state_dir();
    start_daemon(
        "gunicorn",
        Command::new("/usr/bin/gunicorn3")
            .args([
                "lava_server.wsgi",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--user",
                "lavaserver",
                "--group",
                "lavaserver",
                "--worker-class",
                "eventlet",
                "--workers",
                "2",
                "--log-level",
                "INFO",
                "--log-file",
            ])
            .arg(dir.join("gunicorn.log")),
    )
}

/// Starts `command` as the leader of a new process group, stdout and stderr to
/// `<name>.out`, and records its pid in `<name>.pid`.
fn start_daemon(name: &str, command: &mut Command) -> Result<()> {
    let dir = state_dir();
    command
        .env("PATH", SYSTEM_PATH)
        .stdin(Stdio::null())
        .stdout(output_file(&dir.join(format!("{name}.out")))?)
        .stderr(output_file(&dir.join(format!("{name}.out")))?)
        .process_group(0);
    let child = command.spawn().map_err(|err| LabError::Command {
        command: format!("{command:?}"),
        detail: err.to_string(),
    })?;
    write_file(
        &dir.join(format!("{name}.pid")),
        &format!("{}\n", child.id()),
        0o644,
    )?;
    // The lab outlives this process (`cargo xtask lab` returns): the pid file owns the
    // child from now on (dropping the handle neither waits for it nor ends it).
    drop(child);
    Ok(())
}

/// The pid recorded for `name` when that process is alive (and not a zombie of ours).
fn daemon_pid(name: &str) -> Option<i32> {
    let text = fs::read_to_string(state_dir().join(format!("{name}.pid"))).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    reap(pid);
    process_alive(pid).then_some(pid)
}

fn process_alive(pid: i32) -> bool {
    let Some(pid) = Pid::from_raw(pid) else {
        return false;
    };
    if test_kill_process(pid).is_err() {
        return false;
    }
    // A zombie answers kill(0) too.
    lava_procfs::is_running(pid.as_raw_nonzero().get() as u32)
}

/// Reaps `pid` if it is our exited child (the guard's process started it).
fn reap(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
    }
}

fn stop_daemons() {
    for name in DAEMONS {
        stop_daemon(name);
    }
}

fn stop_daemon(name: &str) {
    let pid_file = state_dir().join(format!("{name}.pid"));
    if let Some(pid) = daemon_pid(name) {
        // Reaped first when it is this process's child (the tests' guard started it),
        // which would otherwise stay a zombie until this process exits.
        stop_group(pid, || {
            reap(pid);
            process_alive(pid)
        });
        reap(pid);
    }
    let _ = fs::remove_file(pid_file);
}

/// SIGTERM to process group `pgid`, SIGKILL after [`STOP_GRACE`] while `alive()`.
fn stop_group(pgid: i32, mut alive: impl FnMut() -> bool) {
    let Some(group) = Pid::from_raw(pgid) else {
        return;
    };
    let _ = kill_process_group(group, Signal::TERM);
    let deadline = Instant::now() + STOP_GRACE;
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // The leader may be gone while its workers (gunicorn's) still exit: end the group.
    let _ = kill_process_group(group, Signal::KILL);
}

/// Whether the API answers on `port` (an HTTP/1.0 GET of `/api/v0.2/system/version/`,
/// status 200).
fn web_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let request = "GET /api/v0.2/system/version/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

// ---- commands ---------------------------------------------------------------------------

fn system_command(program: &str) -> Command {
    let mut command = Command::new(program);
    command.env("PATH", SYSTEM_PATH);
    command
}

/// `lava-server manage ARGS` as root; its stdout.
fn manage(args: &[&str]) -> Result<String> {
    run(Command::new("/usr/bin/lava-server")
        .arg("manage")
        .args(args))
}

/// `lava-server manage ARGS` as the `lavaserver` user (what owns the server's files).
fn manage_as_lavaserver(args: &[&str]) -> Result<String> {
    run(Command::new("runuser")
        .args(["-u", "lavaserver", "--", "/usr/bin/lava-server", "manage"])
        .args(args)
        .env("HOME", "/var/lib/lava-server/home"))
}

/// The rows of a `lava-server manage ... --csv` listing, without its header.
fn csv_rows(listing: &str) -> impl Iterator<Item = Vec<&str>> {
    listing
        .lines()
        .skip(1)
        .map(|row| row.split(',').map(str::trim).collect())
}

/// Runs `command` with the system `PATH` and a timeout; its stdout, or an error with its
/// status and output.
fn run(command: &mut Command) -> Result<String> {
    command
        .env("PATH", SYSTEM_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let shown = format!("{command:?}");
    let child = command.spawn().map_err(|err| LabError::Command {
        command: shown.clone(),
        detail: err.to_string(),
    })?;
    let pid = child.id() as i32;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output: Output = match receiver.recv_timeout(COMMAND_TIMEOUT) {
        Ok(result) => result.map_err(|err| LabError::Command {
            command: shown.clone(),
            detail: err.to_string(),
        })?,
        Err(_) => {
            stop_group(pid, || process_alive(pid));
            return Err(LabError::Command {
                command: shown,
                detail: format!("no exit after {}s: killed", COMMAND_TIMEOUT.as_secs()),
            });
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let mut detail = format!("{}", output.status);
    for text in [stdout.as_str(), &String::from_utf8_lossy(&output.stderr)] {
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        for line in tail.into_iter().rev() {
            let _ = write!(detail, "\n  {line}");
        }
    }
    Err(LabError::Command {
        command: shown,
        detail,
    })
}

fn output_file(path: &Path) -> Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LabError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| LabError::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::write(path, text).map_err(io)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io)
}

/// A random alphanumeric secret of `len` characters from the kernel's generator.
fn random_secret(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len];
    fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut bytes))
        .expect("/dev/urandom is readable");
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_env_round_trips_and_names_a_missing_key() {
        let info = LabInfo {
            url: "http://127.0.0.1:8123/".into(),
            port: 8123,
            admin_user: ADMIN_USER.into(),
            api_token: "abc".into(),
            worker_name: WORKER_NAME.into(),
            worker_token: "def".into(),
            started_postgres: true,
        };
        let path = Path::new("/run/lava-rs-lab/lab.env");
        assert_eq!(LabInfo::from_env(path, &info.to_env()).unwrap(), info);
        let broken = info.to_env().replace("LAVA_LAB_WORKER_TOKEN=def\n", "");
        let err = LabInfo::from_env(path, &broken).unwrap_err().to_string();
        assert_eq!(
            err,
            "/run/lava-rs-lab/lab.env: no LAVA_LAB_WORKER_TOKEN= line"
        );
    }

    #[test]
    fn secrets_are_alphanumeric_and_differ() {
        let (a, b) = (random_secret(40), random_secret(40));
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
