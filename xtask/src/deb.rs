//! `cargo xtask deb`: the Debian packages `lava-rs-dispatcher` and `lava-rs-coordinator`,
//! built with Debian's `dpkg-deb` into `target/debian/` (cargo-deb is not used: the layout,
//! control files and maintainer scripts are written here, so nothing beyond dpkg is needed).
//!
//! The binaries are built with the `deb` profile (release with thin LTO, see the workspace
//! `Cargo.toml`); manual pages and bash/zsh/fish completions are generated from the same clap
//! definitions the programs parse (`lava_dispatch::Cli`, `lava_coordinator_cli::Cli`).
//!
//! **Next to Debian's LAVA.** Our packages ship files at the paths of Debian's
//! `lava-dispatcher` and `lava-coordinator` (`/usr/bin/lava-run`, `/usr/bin/lava-coordinator`,
//! their manual pages, the coordinator's unit, configuration and logrotate file). The
//! `preinst` diverts each of those paths with `dpkg-divert` (LAVA's file moves aside, e.g. to
//! `/usr/bin/lava-run.lava`, still runnable; a configuration file is copied aside, see
//! [`Package::preinst`]) and the `postrm` removes the diversions,
//! so LAVA's files are back once ours are gone: programs, manual pages and the unit at
//! `dpkg -r`; the configuration files at `dpkg -P`, when dpkg has deleted ours (dpkg keeps a
//! removed package's conffiles until purge, and a purge after the diversion was gone would
//! delete LAVA's file instead).
//!
//! `lava-worker` ships in [`dispatcher_package`] with Debian's layout: the program, its
//! section 8 manual page, `lava-worker.service` (LAVA's command line built from
//! `/etc/lava-dispatcher/lava-worker`), that defaults file as a conffile and a logrotate rule
//! that makes the worker reopen its log; each diverted like the coordinator's files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::shared::{target_dir, workspace_root};

/// The cargo profile of the packaged binaries.
const PROFILE: &str = "deb";

/// Who answers for the packages (Debian's `Maintainer` field).
const MAINTAINER: &str = "lava-rs developers <lava-rs@example.invalid>";

/// The packages' version: the workspace's.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `cargo xtask deb [--no-build]`: build the binaries and both packages; print their paths.
pub fn run(args: &[String]) -> Result<()> {
    let build = !args.iter().any(|a| a == "--no-build");
    for package in build_packages(build)? {
        let size = std::fs::metadata(&package)?.len();
        println!("{} ({} KiB)", package.display(), size.div_ceil(1024));
    }
    Ok(())
}

/// Build the binaries (unless `build` is false and they exist) and every package; returns
/// the `.deb` paths.
pub fn build_packages(build: bool) -> Result<Vec<PathBuf>> {
    if build {
        build_binaries()?;
    }
    let out = target_dir().join("debian");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let architecture = command_output(Command::new("dpkg").arg("--print-architecture"))?;
    let mut built = Vec::new();
    for package in [dispatcher_package()?, coordinator_package()?] {
        built.push(package.build(&out, architecture.trim())?);
    }
    Ok(built)
}

fn build_binaries() -> Result<()> {
    println!("==> cargo build --profile {PROFILE} (lava-run, lava-worker, lava-coordinator)");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--locked", "--profile", PROFILE])
        .args(["--package", "lava-dispatch", "--bin", "lava-run"])
        .args(["--package", "lava-worker-bin", "--bin", "lava-worker"])
        .args([
            "--package",
            "lava-coordinator-bin",
            "--bin",
            "lava-coordinator",
        ])
        .current_dir(workspace_root())
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "cargo build --profile {PROFILE} failed");
    Ok(())
}

fn binary(name: &str) -> Result<PathBuf> {
    let path = target_dir().join(PROFILE).join(name);
    ensure!(
        path.is_file(),
        "{} is missing: run `cargo xtask deb` without --no-build",
        path.display()
    );
    Ok(path)
}

// ---------------------------------------------------------------------------------------
// What each package holds.

/// One file in a package.
struct Entry {
    /// Absolute path on the installed system.
    path: String,
    content: Content,
    mode: u32,
    /// Listed in `DEBIAN/conffiles`.
    conffile: bool,
    /// Where Debian's LAVA file at the same path is moved while ours is installed.
    diverts_to: Option<&'static str>,
}

enum Content {
    Bytes(Vec<u8>),
    File(PathBuf),
    /// A symbolic link to this target.
    Symlink(&'static str),
}

impl Entry {
    fn file(path: impl Into<String>, content: Content) -> Self {
        Entry {
            path: path.into(),
            content,
            mode: 0o644,
            conffile: false,
            diverts_to: None,
        }
    }

    fn program(path: &'static str, built: PathBuf) -> Self {
        Entry {
            mode: 0o755,
            ..Entry::file(path, Content::File(built))
        }
    }

    fn conffile(self) -> Self {
        Entry {
            conffile: true,
            ..self
        }
    }

    fn diverting(self, to: &'static str) -> Self {
        Entry {
            diverts_to: Some(to),
            ..self
        }
    }
}

struct Package {
    name: &'static str,
    summary: &'static str,
    description: &'static str,
    section: &'static str,
    /// Binaries whose shared-library needs make the `Depends` field.
    binaries: Vec<PathBuf>,
    entries: Vec<Entry>,
    postinst: &'static str,
    prerm: String,
    postrm_extra: String,
}

fn dispatcher_package() -> Result<Package> {
    let run = binary("lava-run")?;
    let mut entries = vec![
        Entry::program("/usr/bin/lava-run", run.clone()).diverting("/usr/bin/lava-run.lava"),
        // The same program under its other name: a link, not a second 12 MB copy.
        Entry::file("/usr/bin/lava-dispatch", Content::Symlink("lava-run")),
        copyright("lava-rs-dispatcher"),
    ];
    for (page, mut entry) in manuals(lava_dispatch::Cli::command())? {
        if page == "lava-run" {
            entry = entry.diverting("/usr/share/man/man1/lava-run.lava.1.gz");
        }
        entries.push(entry);
    }
    entries.extend(manuals(dispatch_command())?.into_iter().map(|(_, e)| e));
    entries.extend(completions("lava-run", lava_dispatch::Cli::command));
    entries.extend(completions("lava-dispatch", dispatch_command));
    let worker = binary("lava-worker")?;
    entries.extend(worker_entries(worker.clone())?);
    Ok(Package {
        name: "lava-rs-dispatcher",
        summary: "LAVA dispatcher in Rust: lava-run, lava-dispatch and lava-worker",
        description: "Runs LAVA V2 jobs (LAVA's job YAML, device dictionaries and test\n\
                      definitions) on devices and writes LAVA's logs and results.\n\
                      lava-run takes LAVA's command line, so LAVA's worker can start it;\n\
                      lava-worker is the worker daemon itself, speaking lava-server's\n\
                      worker protocol (lava-server 2023.01).\n\
                      Installed next to Debian's lava-dispatcher, it diverts that\n\
                      package's lava-run and lava-worker (kept as /usr/bin/*.lava), the\n\
                      worker's unit, defaults file and logrotate rule until removed\n\
                      (the configuration files until purged).",
        section: "devel",
        binaries: vec![run, worker],
        entries,
        postinst: WORKER_POSTINST,
        prerm: service_prerm("lava-worker.service"),
        postrm_extra: service_postrm("lava-worker.service"),
    })
}

/// lava-worker's files, at Debian's lava-dispatcher paths, each diverting LAVA's.
fn worker_entries(worker: PathBuf) -> Result<Vec<Entry>> {
    let mut entries = vec![
        Entry::program("/usr/bin/lava-worker", worker).diverting("/usr/bin/lava-worker.lava"),
        Entry::file(
            "/lib/systemd/system/lava-worker.service",
            Content::Bytes(WORKER_UNIT.as_bytes().to_vec()),
        )
        .diverting("/lib/systemd/system/lava-worker.service.lava"),
        Entry::file(
            "/etc/lava-dispatcher/lava-worker",
            Content::Bytes(WORKER_DEFAULTS.as_bytes().to_vec()),
        )
        .conffile()
        .diverting("/etc/lava-dispatcher/lava-worker.lava"),
        Entry::file(
            "/etc/logrotate.d/lava-worker-log",
            Content::Bytes(
                service_logrotate(
                    "/var/log/lava-dispatcher/lava-worker.log",
                    "lava-worker.service",
                )
                .into_bytes(),
            ),
        )
        .conffile()
        .diverting("/etc/logrotate.d/lava-worker-log.disabled"),
    ];
    // Debian ships lava-worker's page in section 8 (a daemon).
    let (_, page) = manual(lava_worker_cli::Cli::command(), "8")?;
    entries.push(page.diverting("/usr/share/man/man8/lava-worker.lava.8.gz"));
    entries.extend(completions("lava-worker", lava_worker_cli::Cli::command));
    Ok(entries)
}

/// Debian's unit, command line and environment files unchanged (the defaults file's
/// variables hold whole options), plus the log reopened on reload. `KillMode=process`: a
/// restart of the worker leaves its lava-run processes running; the next worker follows
/// them from its state file.
const WORKER_UNIT: &str = "\
[Unit]
Description=LAVA worker (lava-rs)
Documentation=man:lava-worker(8)
After=network.target remote-fs.target

[Service]
Type=simple
Environment=URL=http://localhost/ LOGLEVEL=DEBUG
EnvironmentFile=-/etc/default/lava-worker
EnvironmentFile=-/etc/lava-dispatcher/lava-worker
ExecStart=/usr/bin/lava-worker --level $LOGLEVEL --url $URL $TOKEN $WORKER_NAME $WS_URL $HTTP_TIMEOUT $JOB_LOG_INTERVAL
ExecReload=/bin/kill -HUP $MAINPID
TimeoutStopSec=20
Restart=always
KillMode=process

[Install]
WantedBy=multi-user.target
";

/// The defaults file: LAVA's variables, each holding a whole option as the unit's
/// `ExecStart` splits it.
const WORKER_DEFAULTS: &str = "\
# Configuration of the lava-worker daemon (lava-rs), read by lava-worker.service.
# Each variable holds whole command-line options; see lava-worker(8).

# Worker name, as known to the server (default: the host's FQDN).
# Set it for hosts with a random host name (containers, ...).
# WORKER_NAME=\"--name <hostname.fqdn>\"

# Logging level, upper case (DEBUG, INFO, WARN, ERROR).
# LOGLEVEL=\"DEBUG\"

# Server connection.
# URL=\"http://localhost/\"
# TOKEN=\"--token <token>\"
# WS_URL=\"--ws-url http://localhost/ws/\"
# HTTP_TIMEOUT=\"--http-timeout 600\"
# JOB_LOG_INTERVAL=\"--job-log-interval 5\"
";

/// Enable and (re)start the worker as Debian's lava-dispatcher does, where systemd runs,
/// except where the administrator disabled the worker (a dispatcher-only host stays one).
const WORKER_POSTINST: &str = "\
if [ \"$1\" = configure ] && command -v deb-systemd-helper >/dev/null; then
    deb-systemd-helper unmask lava-worker.service >/dev/null || true
    if deb-systemd-helper --quiet was-enabled lava-worker.service; then
        deb-systemd-helper enable lava-worker.service >/dev/null || true
        if [ -d /run/systemd/system ]; then
            systemctl --system daemon-reload >/dev/null || true
            deb-systemd-invoke restart lava-worker.service >/dev/null || true
        fi
    else
        deb-systemd-helper update-state lava-worker.service >/dev/null || true
    fi
fi
";

fn coordinator_package() -> Result<Package> {
    let coordinator = binary("lava-coordinator")?;
    let mut entries = vec![
        Entry::program("/usr/bin/lava-coordinator", coordinator.clone())
            .diverting("/usr/bin/lava-coordinator.lava"),
        // Where Debian's lava-coordinator has its unit (bookworm packages ship /lib: shipping
        // /usr/lib would alias LAVA's file under merged /usr without dpkg noticing).
        Entry::file(
            "/lib/systemd/system/lava-coordinator.service",
            Content::Bytes(COORDINATOR_UNIT.as_bytes().to_vec()),
        )
        .diverting("/lib/systemd/system/lava-coordinator.service.lava"),
        Entry::file(
            "/etc/lava-coordinator/lava-coordinator.conf",
            Content::Bytes(COORDINATOR_CONF.as_bytes().to_vec()),
        )
        .conffile()
        .diverting("/etc/lava-coordinator/lava-coordinator.conf.lava"),
        // `.disabled`: a name logrotate skips, so LAVA's rule for the same log is not read
        // twice while ours is installed.
        Entry::file(
            "/etc/logrotate.d/lava-coordinator-log",
            Content::Bytes(
                service_logrotate("/var/log/lava-coordinator.log", "lava-coordinator.service")
                    .into_bytes(),
            ),
        )
        .conffile()
        .diverting("/etc/logrotate.d/lava-coordinator-log.disabled"),
        copyright("lava-rs-coordinator"),
    ];
    for (_, entry) in manuals(lava_coordinator_cli::Cli::command())? {
        entries.push(entry.diverting("/usr/share/man/man1/lava-coordinator.lava.1.gz"));
    }
    entries.extend(completions(
        "lava-coordinator",
        lava_coordinator_cli::Cli::command,
    ));
    Ok(Package {
        name: "lava-rs-coordinator",
        summary: "LAVA coordinator in Rust: the MultiNode message broker",
        description: "Serves LAVA's coordinator protocol, so LAVA's dispatchers and\n\
                      lava-rs's synchronise MultiNode groups through it. Reads LAVA's\n\
                      /etc/lava-coordinator/lava-coordinator.conf. Installed next to Debian's\n\
                      lava-coordinator, it diverts that package's program, unit and\n\
                      configuration until removed (the configuration until purged).",
        section: "net",
        binaries: vec![coordinator],
        entries,
        postinst: COORDINATOR_POSTINST,
        prerm: service_prerm("lava-coordinator.service"),
        postrm_extra: service_postrm("lava-coordinator.service"),
    })
}

/// LAVA's rotation of a daemon's log file, plus the SIGHUP (to the unit's main process)
/// that makes the daemon reopen it.
fn service_logrotate(log: &str, unit: &str) -> String {
    format!(
        "\
{log} {{
\tweekly
\trotate 12
\tcompress
\tdelaycompress
\tmissingok
\tnotifempty
\tcreate 644 root root
\tpostrotate
\t\tif [ -d /run/systemd/system ]; then systemctl kill --kill-whom=main --signal=HUP {unit} >/dev/null 2>&1 || true; fi
\tendscript
}}
"
    )
}

/// Stop the unit before its program is removed, where systemd runs.
fn service_prerm(unit: &str) -> String {
    format!(
        "\
if [ \"$1\" = remove ] && [ -d /run/systemd/system ]; then
    deb-systemd-invoke stop {unit} >/dev/null || true
fi
"
    )
}

/// After the diversions are gone: LAVA's unit (if back) is started again where it is
/// enabled; without it, the unit's enablement state is purged.
fn service_postrm(unit: &str) -> String {
    format!(
        "\
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
if [ \"$1\" = remove ] && [ -e /lib/systemd/system/{unit} ] \\
        && [ -d /run/systemd/system ]; then
    deb-systemd-invoke start {unit} >/dev/null || true
fi
if [ \"$1\" = purge ] && [ ! -e /lib/systemd/system/{unit} ] \\
        && command -v deb-systemd-helper >/dev/null; then
    deb-systemd-helper purge {unit} >/dev/null || true
fi
"
    )
}

/// `lava-dispatch`: the same program as `lava-run` under its other name.
fn dispatch_command() -> clap::Command {
    lava_dispatch::Cli::command()
        .name("lava-dispatch")
        .bin_name("lava-dispatch")
}

/// The unit: LAVA's command line and environment files, the log reopened on reload.
/// `ExecStart` is what `cargo xtask test`'s package test starts.
const COORDINATOR_UNIT: &str = "\
[Unit]
Description=LAVA coordinator (lava-rs)
Documentation=man:lava-coordinator(1)
After=network.target remote-fs.target

[Service]
Type=simple
Environment=LOGLEVEL=INFO
EnvironmentFile=-/etc/default/lava-coordinator
EnvironmentFile=-/etc/lava-coordinator/lava-coordinator
ExecStart=/usr/bin/lava-coordinator --logfile /var/log/lava-coordinator.log --loglevel ${LOGLEVEL}
ExecReload=/bin/kill -HUP $MAINPID
Restart=always

[Install]
WantedBy=multi-user.target
";

/// LAVA's configuration file, in LAVA's format with LAVA's values.
const COORDINATOR_CONF: &str = "\
{
    \"port\": 3079,
    \"blocksize\": 4096,
    \"poll_delay\": 3,
    \"coordinator_hostname\": \"localhost\"
}
";

/// Enable and (re)start the unit as Debian's lava-coordinator does, where systemd runs.
const COORDINATOR_POSTINST: &str = "\
if [ \"$1\" = configure ]; then
    if command -v deb-systemd-helper >/dev/null; then
        deb-systemd-helper unmask lava-coordinator.service >/dev/null || true
        deb-systemd-helper enable lava-coordinator.service >/dev/null || true
    fi
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        deb-systemd-invoke restart lava-coordinator.service >/dev/null || true
    fi
fi
";

/// Debian's machine-readable copyright file.
fn copyright(package: &str) -> Entry {
    let mit = include_str!("../../LICENSE-MIT");
    let mit_body: String = mit
        .lines()
        .skip_while(|line| !line.starts_with("Permission"))
        .map(|line| {
            if line.is_empty() {
                " .\n".to_string()
            } else {
                format!(" {line}\n")
            }
        })
        .collect();
    let text = format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: lava-rs\n\
         Comment: The programs are statically linked with Rust crates under their own\n \
         permissive licences (MIT, Apache-2.0, BSD, ISC, Zlib, Unicode-3.0, BSL-1.0,\n \
         bzip2-1.0.6) and MPL-2.0 (serialport); `cargo deny list` in the source tree\n \
         names each crate's licence.\n\
         \n\
         Files: *\n\
         Copyright: 2026 The lava-rs developers\n\
         License: MIT or Apache-2.0\n\
         \n\
         License: Apache-2.0\n \
         On Debian systems, the full text of the Apache License, Version 2.0 is in\n \
         /usr/share/common-licenses/Apache-2.0.\n\
         \n\
         License: MIT\n{mit_body}"
    );
    Entry::file(
        format!("/usr/share/doc/{package}/copyright"),
        Content::Bytes(text.into_bytes()),
    )
}

// ---------------------------------------------------------------------------------------
// Generated documentation.

/// Section 1 manual pages of `command` and of each of its subcommands (`lava-run-multinode`,
/// the names clap_mangen's SUBCOMMANDS section refers to), gzipped as Debian ships them:
/// (page name, entry).
fn manuals(command: clap::Command) -> Result<Vec<(String, Entry)>> {
    let name = command.get_name().to_string();
    let mut pages = Vec::new();
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        // clap names are `&'static str` (without its `string` feature): xtask is a short
        // process, the few page names are leaked.
        let sub_name: &'static str = format!("{name}-{}", sub.get_name()).leak();
        pages.extend(manuals(sub.clone().name(sub_name))?);
    }
    pages.insert(0, manual(command, "1")?);
    Ok(pages)
}

/// The manual page of `command` alone in `section`, gzipped: (page name, entry).
fn manual(command: clap::Command, section: &'static str) -> Result<(String, Entry)> {
    let name = command.get_name().to_string();
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .section(section)
        .render(&mut page)
        .with_context(|| format!("rendering the manual page of {name}"))?;
    let entry = Entry::file(
        format!("/usr/share/man/man{section}/{name}.{section}.gz"),
        Content::Bytes(gzip(&page)?),
    );
    Ok((name, entry))
}

/// Completion scripts for bash, zsh and fish, at the paths those shells load them from.
fn completions(program: &str, command: fn() -> clap::Command) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (shell, directory, file) in [
        (
            Shell::Bash,
            "/usr/share/bash-completion/completions",
            program.to_string(),
        ),
        (
            Shell::Zsh,
            "/usr/share/zsh/vendor-completions",
            format!("_{program}"),
        ),
        (
            Shell::Fish,
            "/usr/share/fish/vendor_completions.d",
            format!("{program}.fish"),
        ),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command(), program, &mut script);
        entries.push(Entry::file(
            format!("{directory}/{file}"),
            Content::Bytes(script),
        ));
    }
    entries
}

/// gzip with no name and no time stamp, so the same input gives the same package.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

// ---------------------------------------------------------------------------------------
// Building one package.

impl Package {
    /// Lay the package out under `out/<name>/` and build `out/<name>_<version>_<arch>.deb`.
    fn build(&self, out: &Path, architecture: &str) -> Result<PathBuf> {
        let root = out.join(self.name);
        if root.exists() {
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("clearing {}", root.display()))?;
        }
        for entry in &self.entries {
            let destination = root.join(entry.path.trim_start_matches('/'));
            std::fs::create_dir_all(destination.parent().expect("absolute path"))?;
            match &entry.content {
                Content::Bytes(bytes) => std::fs::write(&destination, bytes),
                Content::File(source) => std::fs::copy(source, &destination).map(drop),
                Content::Symlink(target) => std::os::unix::fs::symlink(target, &destination),
            }
            .with_context(|| format!("writing {}", destination.display()))?;
            match entry.content {
                Content::Symlink(_) => continue,
                Content::File(_) if entry.mode == 0o755 => strip(&destination)?,
                _ => {}
            }
            set_mode(&destination, entry.mode)?;
        }
        set_directory_modes(&root)?;
        let control = root.join("DEBIAN");
        std::fs::create_dir_all(&control)?;
        set_mode(&control, 0o755)?;
        write_control_file(
            &control.join("control"),
            &self.control(architecture, &root)?,
        )?;
        let conffiles: String = self
            .entries
            .iter()
            .filter(|e| e.conffile)
            .map(|e| format!("{}\n", e.path))
            .collect();
        if !conffiles.is_empty() {
            write_control_file(&control.join("conffiles"), &conffiles)?;
        }
        for (name, script) in [
            ("preinst", self.preinst()),
            ("postinst", self.script("postinst", self.postinst)),
            ("prerm", self.script("prerm", &self.prerm)),
            ("postrm", self.postrm()),
        ] {
            if let Some(script) = script {
                let path = control.join(name);
                std::fs::write(&path, script)?;
                set_mode(&path, 0o755)?;
            }
        }
        let deb = out.join(format!("{}_{VERSION}_{architecture}.deb", self.name));
        let status = Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&root)
            .arg(&deb)
            .stdout(std::process::Stdio::null())
            .status()
            .context("running dpkg-deb (Debian's dpkg package)")?;
        ensure!(
            status.success(),
            "dpkg-deb --build {} failed",
            root.display()
        );
        Ok(deb)
    }

    fn control(&self, architecture: &str, root: &Path) -> Result<String> {
        let installed_kib = directory_size(root)?.div_ceil(1024);
        let depends = shared_library_depends(&self.binaries)?;
        let description: String = self
            .description
            .lines()
            .map(|line| format!(" {}\n", line.trim()))
            .collect();
        Ok(format!(
            "Package: {}\n\
             Version: {VERSION}\n\
             Architecture: {architecture}\n\
             Maintainer: {MAINTAINER}\n\
             Installed-Size: {installed_kib}\n\
             Depends: {depends}\n\
             Section: {}\n\
             Priority: optional\n\
             Description: {}\n{description}",
            self.name, self.section, self.summary
        ))
    }

    fn diversions(&self) -> impl Iterator<Item = (&Entry, &'static str)> {
        self.entries
            .iter()
            .filter_map(|e| e.diverts_to.map(|to| (e, to)))
    }

    /// Divert LAVA's files before ours are unpacked over them. A program or manual page is
    /// moved aside (`--rename`). A configuration file is copied aside and left in place:
    /// dpkg knows LAVA's checksum for the path, and a file missing there would read to dpkg
    /// as deleted by the administrator, so ours would never be installed; an unchanged LAVA
    /// file is replaced by ours at configure, an edited one gets dpkg's usual question.
    fn preinst(&self) -> Option<String> {
        let mut body = String::from("case \"$1\" in\ninstall|upgrade)\n");
        for (entry, to) in self.diversions() {
            let helper = if entry.conffile {
                "divert_conffile"
            } else {
                "divert"
            };
            body += &format!("    {helper} {} {to}\n", entry.path);
        }
        body += "    ;;\nesac\n";
        let helpers = format!(
            "divert() {{\n    dpkg-divert --package {name} --add --rename --divert \"$2\" \"$1\"\n}}\n\
             divert_conffile() {{\n    dpkg-divert --package {name} --add --divert \"$2\" \"$1\"\n    \
             if [ -e \"$1\" ] && [ ! -e \"$2\" ]; then cp -p \"$1\" \"$2\"; fi\n}}\n",
            name = self.name
        );
        self.script("preinst", &format!("{helpers}{body}"))
    }

    /// Give LAVA's files back: programs and the like once ours are removed, configuration
    /// files once ours are purged (see the module doc). A configuration file still in place
    /// (an aborted install) and identical to LAVA's copy lets the copy go first.
    fn postrm(&self) -> Option<String> {
        let helpers = format!(
            "undivert() {{\n    dpkg-divert --package {name} --remove --rename --divert \"$2\" \"$1\"\n}}\n\
             undivert_conffile() {{\n    \
             if [ -e \"$1\" ] && [ -e \"$2\" ] && cmp -s \"$1\" \"$2\"; then rm -f \"$2\"; fi\n    \
             undivert \"$1\" \"$2\"\n}}\n",
            name = self.name
        );
        let mut body = String::from("case \"$1\" in\nremove|abort-install|disappear)\n");
        for (entry, to) in self.diversions().filter(|(e, _)| !e.conffile) {
            body += &format!("    undivert {} {to}\n", entry.path);
        }
        body += "    ;;\nesac\ncase \"$1\" in\npurge|abort-install|disappear)\n";
        for (entry, to) in self.diversions().filter(|(e, _)| e.conffile) {
            body += &format!("    undivert_conffile {} {to}\n", entry.path);
        }
        body += "    ;;\nesac\n";
        self.script("postrm", &format!("{helpers}{body}{}", self.postrm_extra))
    }

    fn script(&self, name: &str, body: &str) -> Option<String> {
        (!body.trim().is_empty()).then(|| {
            format!(
                "#!/bin/sh\n# {} {name} (written by `cargo xtask deb`)\nset -e\n{body}",
                self.name
            )
        })
    }
}

/// Strip a packaged program as Debian's `dh_strip` does (debug information and symbols not
/// needed for linking): the `deb` profile keeps line tables, which made `lava-run` 50 MB.
fn strip(program: &Path) -> Result<()> {
    let status = Command::new("strip")
        .args([
            "--remove-section=.comment",
            "--remove-section=.note",
            "--strip-unneeded",
        ])
        .arg(program)
        .status()
        .context("running strip (Debian's binutils package)")?;
    ensure!(status.success(), "strip {} failed", program.display());
    Ok(())
}

/// `Depends` for the binaries' shared libraries, as Debian's `dpkg-shlibdeps` computes it.
fn shared_library_depends(binaries: &[PathBuf]) -> Result<String> {
    // dpkg-shlibdeps reads debian/control from its working directory; a minimal one does.
    let scratch = tempfile::tempdir()?;
    std::fs::create_dir(scratch.path().join("debian"))?;
    std::fs::write(
        scratch.path().join("debian/control"),
        "Source: lava-rs\n\nPackage: lava-rs\nArchitecture: any\n",
    )?;
    let output = Command::new("dpkg-shlibdeps")
        .arg("-O")
        .args(binaries)
        .current_dir(scratch.path())
        .output()
        .context("running dpkg-shlibdeps (Debian's dpkg-dev package)")?;
    ensure!(
        output.status.success(),
        "dpkg-shlibdeps failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout)?;
    let depends = stdout
        .lines()
        .find_map(|line| line.strip_prefix("shlibs:Depends="))
        .with_context(|| format!("no shlibs:Depends in dpkg-shlibdeps' output: {stdout}"))?;
    Ok(depends.to_string())
}

fn write_control_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, 0o644)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// Every directory 0755, whatever the umask made them.
fn set_directory_modes(root: &Path) -> Result<()> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        set_mode(&directory, 0o755)?;
        for child in std::fs::read_dir(&directory)? {
            let child = child?;
            if child.file_type()?.is_dir() {
                pending.push(child.path());
            }
        }
    }
    Ok(())
}

/// Bytes of the regular files under `root` (for `Installed-Size`).
fn directory_size(root: &Path) -> Result<u64> {
    let mut total = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for child in std::fs::read_dir(&directory)? {
            let child = child?;
            let kind = child.file_type()?;
            if kind.is_dir() {
                pending.push(child.path());
            } else {
                total += child.metadata()?.len();
            }
        }
    }
    Ok(total)
}

fn command_output(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}
