//! The package test (`cargo xtask deb --install-test`, a step of `cargo xtask test`): build
//! both packages, install them with dpkg on this machine next to Debian's LAVA, use them as a
//! person would, remove them and check that LAVA's files are back.
//!
//! It changes the machine (packages, diversions), so it needs root; without root it says so
//! and skips, except in CI (`CI=true`), where that is a failure. Debian's `lava-dispatcher`
//! and `lava-coordinator` must be installed (scripts/install-test-deps.sh): their files are
//! what the diversions must give back. Our packages are purged whatever happens, also when
//! a check fails half-way.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

const PACKAGES: [&str; 2] = ["lava-rs-dispatcher", "lava-rs-coordinator"];

/// Files of Debian's LAVA that our packages divert while installed, and when LAVA gets each
/// back: at `dpkg -r` (false) or at `dpkg -P` (true, configuration files).
const LAVA_FILES: [(&str, bool); 12] = [
    ("/usr/bin/lava-run", false),
    ("/usr/bin/lava-worker", false),
    ("/usr/share/man/man8/lava-worker.8.gz", false),
    ("/lib/systemd/system/lava-worker.service", false),
    ("/etc/lava-dispatcher/lava-worker", true),
    ("/etc/logrotate.d/lava-worker-log", true),
    ("/usr/bin/lava-coordinator", false),
    ("/usr/share/man/man1/lava-run.1.gz", false),
    ("/usr/share/man/man1/lava-coordinator.1.gz", false),
    ("/lib/systemd/system/lava-coordinator.service", false),
    ("/etc/lava-coordinator/lava-coordinator.conf", true),
    ("/etc/logrotate.d/lava-coordinator-log", true),
];

const UNIT: &str = "/lib/systemd/system/lava-coordinator.service";
const WORKER_UNIT: &str = "/lib/systemd/system/lava-worker.service";
const WORKER_DEFAULTS: &str = "/etc/lava-dispatcher/lava-worker";

/// Run the whole test; prints each check and the time taken.
pub fn run() -> Result<()> {
    let started = Instant::now();
    if !rustix::process::geteuid().is_root() {
        if crate::shared::in_ci() {
            bail!("package test: CI=true but not root: cannot install packages");
        }
        println!("package test: SKIPPED (installing packages needs root)");
        return Ok(());
    }
    for tool in ["dpkg", "dpkg-deb", "dpkg-divert", "dpkg-shlibdeps", "man"] {
        ensure!(
            which(tool),
            "package test: {tool} is missing (scripts/install-test-deps.sh installs it)"
        );
    }
    ensure!(
        is_python_script(Path::new("/usr/bin/lava-run"))?
            && is_python_script(Path::new("/usr/bin/lava-worker"))?
            && is_python_script(Path::new("/usr/bin/lava-coordinator"))?,
        "package test: Debian's LAVA (lava-dispatcher, lava-coordinator) is not installed: \
         scripts/install-test-deps.sh installs it"
    );
    // A run stopped half-way may have left ours installed: start from LAVA's files.
    purge()?;
    let lava_before = fingerprint_lava_files()?;

    let debs = crate::deb::build_packages(true)?;
    for deb in &debs {
        println!(
            "package {}: {} KiB",
            deb.file_name().unwrap_or_default().to_string_lossy(),
            std::fs::metadata(deb)?.len().div_ceil(1024)
        );
    }
    let installed = Installed::install(&debs)?;
    check_installed()?;
    check_coordinator_unit()?;
    check_worker_unit()?;

    installed.remove()?;
    let lava_after_remove = fingerprint_lava_files()?;
    for ((path, at_purge), (before, after)) in LAVA_FILES
        .iter()
        .zip(lava_before.iter().zip(&lava_after_remove))
    {
        if !at_purge {
            ensure!(before == after, "after dpkg -r, {path} is not LAVA's again");
        }
    }
    for program in ["lava-run", "lava-worker", "lava-coordinator"] {
        ensure!(
            is_python_script(&Path::new("/usr/bin").join(program))?,
            "after dpkg -r, /usr/bin/{program} is not LAVA's Python script"
        );
    }
    ensure!(
        !Path::new("/usr/bin/lava-dispatch").exists(),
        "/usr/bin/lava-dispatch left behind by dpkg -r"
    );
    println!("ok: dpkg -r gives LAVA's programs, manual pages and unit back");

    purge()?;
    ensure!(
        fingerprint_lava_files()? == lava_before,
        "after dpkg -P, LAVA's files differ from before the test"
    );
    let diversions = command_output(Command::new("dpkg-divert").arg("--list"))?;
    ensure!(
        !diversions.contains("lava-rs-"),
        "diversions of ours left after dpkg -P:\n{diversions}"
    );
    println!("ok: dpkg -P gives LAVA's configuration back and leaves no diversion");
    println!(
        "package test: passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Our packages while installed; purged when dropped (a failed check included).
struct Installed {
    removed: bool,
}

impl Installed {
    fn install(debs: &[PathBuf]) -> Result<Self> {
        let installed = Installed { removed: false };
        dpkg(Command::new("dpkg").arg("--install").args(debs))?;
        println!("ok: dpkg -i {}", PACKAGES.join(" "));
        Ok(installed)
    }

    fn remove(mut self) -> Result<()> {
        self.removed = true;
        dpkg(Command::new("dpkg").arg("--remove").args(PACKAGES))
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !self.removed
            && let Err(error) = purge()
        {
            eprintln!("package test: purging our packages failed: {error:#}");
        }
    }
}

/// `dpkg --purge` of our packages, installed or not.
fn purge() -> Result<()> {
    dpkg(Command::new("dpkg").arg("--purge").args(PACKAGES))
}

fn dpkg(command: &mut Command) -> Result<()> {
    let output = command
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The installed programs, manual pages, completions and diversions.
fn check_installed() -> Result<()> {
    let version = format!("lava-run {}", env!("CARGO_PKG_VERSION"));
    let said = command_output(Command::new("lava-run").arg("--version"))?;
    ensure!(said.trim() == version, "lava-run --version said {said:?}");
    let said = command_output(Command::new("lava-coordinator").arg("--version"))?;
    ensure!(
        said.trim() == format!("lava-coordinator {}", env!("CARGO_PKG_VERSION")),
        "lava-coordinator --version said {said:?}"
    );
    ensure!(
        is_python_script(Path::new("/usr/bin/lava-run.lava"))?,
        "LAVA's lava-run is not at /usr/bin/lava-run.lava while ours is installed"
    );
    println!("ok: {version}; LAVA's kept as /usr/bin/lava-run.lava");
    let said = command_output(Command::new("lava-worker").arg("--version"))?;
    ensure!(
        said.trim() == format!("lava-worker {}", env!("CARGO_PKG_VERSION")),
        "lava-worker --version said {said:?}"
    );
    ensure!(
        is_python_script(Path::new("/usr/bin/lava-worker.lava"))?,
        "LAVA's lava-worker is not at /usr/bin/lava-worker.lava while ours is installed"
    );
    println!(
        "ok: {}; LAVA's kept as /usr/bin/lava-worker.lava",
        said.trim()
    );

    for (page, section) in [
        ("lava-run", "1"),
        ("lava-run-multinode", "1"),
        ("lava-dispatch", "1"),
        ("lava-dispatch-render-device", "1"),
        ("lava-coordinator", "1"),
        ("lava-worker", "8"),
    ] {
        let path = command_output(Command::new("man").args(["-w", page]))?;
        let expected = format!("/usr/share/man/man{section}/{page}.{section}.gz");
        ensure!(path.trim() == expected, "man -w {page} found {path:?}");
        let text = command_output(
            Command::new("man")
                .args(["-P", "cat", page])
                .env("LC_ALL", "C")
                .env("MANWIDTH", "100"),
        )?;
        ensure!(
            text.contains("SYNOPSIS") && text.contains(page) && text.contains("--help"),
            "man {page} does not show the command line:\n{text}"
        );
    }
    println!("ok: man -w finds our pages (programs and subcommands), each renders");

    for program in [
        "lava-run",
        "lava-dispatch",
        "lava-coordinator",
        "lava-worker",
    ] {
        let script = format!("/usr/share/bash-completion/completions/{program}");
        let registered = command_output(
            Command::new("bash").args(["-c", &format!("source {script} && complete -p {program}")]),
        )?;
        ensure!(
            registered.contains(program),
            "{script} does not register a completion: {registered:?}"
        );
    }
    println!("ok: bash completions load and register");

    let conffiles = command_output(Command::new("dpkg-query").args([
        "-W",
        "-f=${Conffiles}",
        "lava-rs-coordinator",
    ]))?;
    for conffile in [
        "/etc/lava-coordinator/lava-coordinator.conf",
        "/etc/logrotate.d/lava-coordinator-log",
    ] {
        ensure!(
            conffiles.contains(conffile),
            "{conffile} is not a conffile of lava-rs-coordinator: {conffiles}"
        );
    }
    let conffiles = command_output(Command::new("dpkg-query").args([
        "-W",
        "-f=${Conffiles}",
        "lava-rs-dispatcher",
    ]))?;
    for conffile in [WORKER_DEFAULTS, "/etc/logrotate.d/lava-worker-log"] {
        ensure!(
            conffiles.contains(conffile),
            "{conffile} is not a conffile of lava-rs-dispatcher: {conffiles}"
        );
    }
    ensure!(
        Path::new("/etc/logrotate.d/lava-worker-log.disabled").exists(),
        "LAVA's worker logrotate rule was not kept aside"
    );
    let rule = std::fs::read_to_string("/etc/logrotate.d/lava-coordinator-log")?;
    ensure!(
        rule.contains("--signal=HUP"),
        "/etc/logrotate.d/lava-coordinator-log is not ours (no SIGHUP):\n{rule}"
    );
    ensure!(
        Path::new("/etc/logrotate.d/lava-coordinator-log.disabled").exists(),
        "LAVA's logrotate rule was not kept aside"
    );
    if which("logrotate") {
        for rule in [
            "/etc/logrotate.d/lava-coordinator-log",
            "/etc/logrotate.d/lava-worker-log",
        ] {
            let output = Command::new("logrotate").args(["--debug", rule]).output()?;
            ensure!(
                output.status.success(),
                "logrotate rejects {rule}:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        println!("ok: conffiles registered; logrotate accepts the rotation rules");
    }
    Ok(())
}

/// Start the coordinator as the installed unit does (its `ExecStart`, its `Environment`),
/// with a configuration on a free loopback port, and talk LAVA's protocol to it.
fn check_coordinator_unit() -> Result<()> {
    let unit = std::fs::read_to_string(UNIT).with_context(|| format!("reading {UNIT}"))?;
    let argv = exec_start(&unit)?;
    ensure!(
        argv.first().map(String::as_str) == Some("/usr/bin/lava-coordinator"),
        "{UNIT}: ExecStart runs {argv:?}"
    );
    let scratch = tempfile::tempdir()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = scratch.path().join("lava-coordinator.conf");
    std::fs::write(
        &config,
        format!(
            r#"{{"port": {port}, "blocksize": 4096, "poll_delay": 3, "coordinator_hostname": "localhost", "lava_rs_listen": "127.0.0.1"}}"#
        ),
    )?;
    let log = scratch.path().join("lava-coordinator.log");
    // The unit's own options first; the test's file and port replace LAVA's defaults.
    let mut command = Command::new(&argv[0]);
    command
        .args(replace_option(
            &argv[1..],
            "--logfile",
            &log.to_string_lossy(),
        ))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null());
    let mut daemon = OwnedChild(
        command
            .spawn()
            .with_context(|| format!("starting {command:?}"))?,
    );
    let reply = exchange_when_listening(port)?;
    ensure!(
        reply == r#"0000002F{"response": "group_data", "roles": {"1": "r"}}"#,
        "the coordinator answered {reply:?}"
    );
    daemon.terminate()?;
    let logged = std::fs::read_to_string(&log)?;
    ensure!(
        logged.contains("LAVA coordinator has started"),
        "coordinator log: {logged}"
    );
    println!(
        "ok: the unit's ExecStart ({}) serves LAVA's protocol on 127.0.0.1:{port}",
        argv.join(" ")
    );
    Ok(())
}

/// Start the worker as the installed unit does: its `ExecStart` with its `Environment=` and
/// the installed defaults file (all commented out: LAVA's defaults), then with a defaults
/// file as a lab writes it (`URL`, `TOKEN="--token ..."`, `WORKER_NAME="--name ..."`)
/// pointing at a fake lava-server; the worker must ping it and stop cleanly on SIGTERM.
fn check_worker_unit() -> Result<()> {
    let unit =
        std::fs::read_to_string(WORKER_UNIT).with_context(|| format!("reading {WORKER_UNIT}"))?;
    let installed = std::fs::read_to_string(WORKER_DEFAULTS)?;
    let argv = exec_start_with(&unit, &environment_file(&installed))?;
    ensure!(
        argv == [
            "/usr/bin/lava-worker",
            "--level",
            "DEBUG",
            "--url",
            "http://localhost/"
        ],
        "{WORKER_UNIT} with {WORKER_DEFAULTS} runs {argv:?}"
    );

    let runtime = tokio::runtime::Runtime::new()?;
    let name = "package-test.lab";
    let lava = runtime.block_on(lava_worker::test_server::FakeLava::start(name, "2023.01"))?;
    let lab_defaults = format!(
        "# as a lab writes it\nURL=\"{}\"\nTOKEN=\"--token {}\"\nWORKER_NAME=\"--name {name}\"\n\
         LOGLEVEL=\"INFO\"\nHTTP_TIMEOUT=\"--http-timeout 5\"\n",
        lava.url(),
        lava.worker_token()
    );
    let argv = exec_start_with(&unit, &environment_file(&lab_defaults))?;
    let scratch = tempfile::tempdir()?;
    let log = scratch.path().join("lava-worker.log");
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .arg("--worker-dir")
        .arg(scratch.path().join("worker"))
        .arg("--log-file")
        .arg(&log)
        .args(["--ping-interval", "1"])
        .stdin(Stdio::null());
    let mut worker = OwnedChild(
        command
            .spawn()
            .with_context(|| format!("starting {command:?}"))?,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let pinged = |lava: &lava_worker::test_server::FakeLava| {
        lava.requests().iter().any(|r| {
            r.target == format!("/scheduler/internal/v1/workers/{name}/?version=2023.01")
                && r.token.as_deref() == Some(lava.worker_token().as_str())
        })
    };
    while !pinged(&lava) {
        ensure!(
            Instant::now() < deadline,
            "the worker started as the unit does never pinged the server; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    worker.terminate()?;
    println!(
        "ok: the unit's ExecStart with a lab's {WORKER_DEFAULTS} ({}) pings lava-server and stops on SIGTERM",
        argv.join(" ")
    );
    Ok(())
}

/// The assignments of a systemd `EnvironmentFile` (comments and blank lines skipped,
/// surrounding quotes removed).
fn environment_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| {
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            (name.trim().to_string(), unquoted.to_string())
        })
        .collect()
}

/// The unit's `ExecStart` split into words, `${NAME}`/`$NAME` replaced from its
/// `Environment=` lines (as systemd does for words).
fn exec_start(unit: &str) -> Result<Vec<String>> {
    exec_start_with(unit, &[])
}

/// [`exec_start`] with the assignments of the unit's environment files after its
/// `Environment=` lines (later ones win, as in systemd). A whole-word `$NAME` becomes the
/// value's words (none when unset or empty, as systemd splits it); `${NAME}` inside a word
/// must be set.
fn exec_start_with(unit: &str, files: &[(String, String)]) -> Result<Vec<String>> {
    let mut environment = Vec::new();
    let mut exec = None;
    for line in unit.lines() {
        if let Some(assignments) = line.strip_prefix("Environment=") {
            for assignment in assignments.split_whitespace() {
                if let Some((name, value)) = assignment.split_once('=') {
                    environment.push((name.to_string(), value.trim_matches('"').to_string()));
                }
            }
        } else if let Some(command) = line.strip_prefix("ExecStart=") {
            exec = Some(command);
        }
    }
    environment.extend(files.iter().cloned());
    let value = |name: &str| {
        environment
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let exec = exec.context("the unit has no ExecStart")?;
    let mut argv = Vec::new();
    for word in exec.split_whitespace() {
        if let Some(name) = word.strip_prefix('$').filter(|n| !n.starts_with('{')) {
            argv.extend(
                value(name)
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string),
            );
            continue;
        }
        let mut word = word.to_string();
        for (name, _) in &environment {
            if let Some(v) = value(name) {
                word = word.replace(&format!("${{{name}}}"), &v);
            }
        }
        ensure!(
            !word.contains('$'),
            "ExecStart word {word:?} names an unset variable"
        );
        argv.push(word);
    }
    Ok(argv)
}

/// `args` with the value of `option` replaced (or the option added).
fn replace_option(args: &[String], option: &str, value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut replaced = false;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == option {
            words.next();
            replaced = true;
            out.extend([option.to_string(), value.to_string()]);
        } else {
            out.push(word.clone());
        }
    }
    if !replaced {
        out.extend([option.to_string(), value.to_string()]);
    }
    out
}

/// One LAVA `group_data` request, retried until the daemon listens (10 s at most).
fn exchange_when_listening(port: u16) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(error) => bail!("the coordinator does not listen on 127.0.0.1:{port}: {error}"),
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = r#"{"client_name": "1", "group_name": "package-test", "role": "r", "hostname": "h", "request": "group_data", "group_size": 1}"#;
    stream.write_all(format!("{:08X}{body}", body.len()).as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// A child process of the test, ended (SIGTERM, then SIGKILL) and reaped however the test ends.
struct OwnedChild(std::process::Child);

impl OwnedChild {
    /// SIGTERM, and a clean exit within 10 s.
    fn terminate(&mut self) -> Result<()> {
        let pid = rustix::process::Pid::from_raw(self.0.id() as i32).context("child pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait()? {
                ensure!(status.success(), "the daemon exited {status} on SIGTERM");
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the daemon did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnedChild {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Content hash of each LAVA file (None where absent), in [`LAVA_FILES`] order.
fn fingerprint_lava_files() -> Result<Vec<Option<Vec<u8>>>> {
    LAVA_FILES
        .iter()
        .map(|(path, _)| match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("reading {path}")),
        })
        .collect()
}

fn is_python_script(path: &Path) -> Result<bool> {
    let mut head = [0u8; 64];
    let read = match std::fs::File::open(path) {
        Ok(mut file) => file.read(&mut head)?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let first_line = String::from_utf8_lossy(&head[..read]);
    let first_line = first_line.lines().next().unwrap_or_default();
    Ok(first_line.starts_with("#!") && first_line.contains("python3"))
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

fn command_output(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_start_is_expanded_from_the_units_environment() {
        let unit = "[Service]\nEnvironment=LOGLEVEL=INFO\n\
                    ExecStart=/usr/bin/lava-coordinator --loglevel ${LOGLEVEL} --x $LOGLEVEL\n";
        assert_eq!(
            exec_start(unit).unwrap(),
            [
                "/usr/bin/lava-coordinator",
                "--loglevel",
                "INFO",
                "--x",
                "INFO"
            ]
        );
        let unset = "ExecStart=/usr/bin/lava-coordinator --loglevel ${LEVEL}\n";
        assert!(exec_start(unset).is_err());
    }

    #[test]
    fn the_worker_units_options_come_from_its_environment_file() {
        let unit = "Environment=URL=http://localhost/ LOGLEVEL=DEBUG\n\
                    ExecStart=/usr/bin/lava-worker --level $LOGLEVEL --url $URL $TOKEN $WORKER_NAME\n";
        assert_eq!(
            exec_start_with(unit, &environment_file("# URL=\"x\"\n")).unwrap(),
            [
                "/usr/bin/lava-worker",
                "--level",
                "DEBUG",
                "--url",
                "http://localhost/"
            ]
        );
        let lab = "URL=\"https://lava.lab/\"\nTOKEN=\"--token abc\"\nWORKER_NAME='--name w1'\n";
        assert_eq!(
            exec_start_with(unit, &environment_file(lab)).unwrap(),
            [
                "/usr/bin/lava-worker",
                "--level",
                "DEBUG",
                "--url",
                "https://lava.lab/",
                "--token",
                "abc",
                "--name",
                "w1"
            ]
        );
    }

    #[test]
    fn an_option_is_replaced_or_added() {
        let args: Vec<String> = ["--logfile", "/var/log/x", "-l", "INFO"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            replace_option(&args, "--logfile", "/tmp/y"),
            ["--logfile", "/tmp/y", "-l", "INFO"]
        );
        assert_eq!(
            replace_option(&args[2..], "--logfile", "/tmp/y"),
            ["-l", "INFO", "--logfile", "/tmp/y"]
        );
    }
}
