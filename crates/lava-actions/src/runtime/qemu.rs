//! Run-time: QEMU (`execute-qemu`) and the wait for the kernel to start (the booting
//! part of `auto-login-action`).
//!
//! The command line is LAVA's: the device's `actions.boot.methods.qemu.parameters`
//! `command` (found in `$PATH`), its `options` and `extra`, then the `image_arg` of every
//! downloaded image of the namespace with `{<label>}` replaced by that image's file, then
//! `-L <uefi_dir> -monitor none` when a UEFI firmware was deployed, and the qcow2 test
//! overlay drive when `apply-overlay-guest` made one. With `method: qemu-nfs` the overlay
//! drive gives way to the kernel command line of an NFS root: `--append` with the
//! device's `qemu-nfs` `append` parameters (`console=…`, `root=/dev/nfs`, the
//! `nfsrootargs` with `{NFS_SERVER_IP}` and `{NFSROOTFS}` replaced, then `rw`, and the
//! `ipargs`), quoted as one word ([`NfsRoot`]). `{NFS_SERVER_IP}` is the dispatcher's
//! address for NFS (`dispatcher_nfs_ip`, `dispatcher_ip`, else the default route's) and
//! is replaced in the `image_arg`s too. The job `context` (arch, machine,
//! cpu, memory, no_kvm, extra_options, guestfs_*...) reaches this command line through
//! the device-type template, which the server (or `lava-device`) renders before the
//! dispatcher sees the device; at run time LAVA uses only `context.arch` (the
//! architecture check and the overlay drive interface fallback), and so do we.
//!
//! LAVA joins the words with spaces and lets pexpect split the string again, so an
//! option item such as `-net none` or `-append "console=ttyS0 root=/dev/ram0"` becomes
//! several arguments; we do the same split (`shlex`) and spawn the argv on a pty through
//! [`ConsoleConnection`] (never through a host shell). The connection's `finalise`
//! kills QEMU's whole process group and reaps it, without any fixed wait.

use crate::runtime::console::{ConsoleConnection, action_timeout};
use crate::runtime::substitute_line;
use lava_connection::{ErrorKind as ConnErrorKind, Patterns, SessionConfig};
use lava_pipeline::value::scalar_string;
use lava_pipeline::{Device, ErrorKind, LavaError, LavaResult, RunContext};
use lava_python::shlex_split;
use serde_yaml::{Mapping, Value};

/// Labels LAVA never passes to QEMU as images.
pub const SKIPPED_LABELS: [&str; 4] = ["offset", "available_loops", "uefi", "nfsrootfs"];
/// Architectures whose overlay drive defaults to IDE.
pub const X86_ARCHS: [&str; 4] = ["amd64", "x86_64", "i386", "i686"];

/// One downloaded image as QEMU sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArg {
    /// The image key (`kernel`, `ramdisk`, `rootfs`...).
    pub label: String,
    /// The job's `image_arg`, with `{<label>}` placeholders.
    pub image_arg: String,
    /// The downloaded file.
    pub file: String,
}

/// The qcow2 test overlay made by `apply-overlay-guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDrive {
    /// The qcow2 file.
    pub file: String,
    /// The QEMU drive interface (`if=`), from the device's `guest` settings.
    pub interface: String,
    /// The QEMU drive id (`id=`), `lavatest` unless the device's `guest` settings say otherwise.
    pub driveid: String,
}

/// The NFS root of a `qemu-nfs` boot: the device's `append` parameters and what
/// replaces their placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsRoot {
    /// `append.console` (`ttyS0,115200`…).
    pub console: String,
    /// `append.nfsrootargs`, with `{NFS_SERVER_IP}` and `{NFSROOTFS}` placeholders.
    pub nfsrootargs: String,
    /// `append.ipargs` (`ip=dhcp`…).
    pub ipargs: String,
    /// The unpacked root (`extract-rootfs/file/nfsroot`), when a deployment made one.
    pub root_dir: Option<String>,
}

impl NfsRoot {
    /// The device's `qemu-nfs` `append` parameters; a ConfigurationError naming the
    /// missing key otherwise.
    pub fn from_device(device: &Device, root_dir: Option<String>) -> LavaResult<NfsRoot> {
        let append = device
            .boot_methods()
            .and_then(|m| m.get("qemu-nfs"))
            .and_then(|m| m.get("parameters"))
            .and_then(|p| p.get("append"));
        let field = |key: &str| {
            append
                .and_then(|a| a.get(key))
                .and_then(scalar_string)
                .ok_or_else(|| {
                    LavaError::configuration(format!(
                        "Invalid device configuration - missing \
                         actions.boot.methods.qemu-nfs.parameters.append.{key}"
                    ))
                })
        };
        Ok(NfsRoot {
            console: field("console")?,
            nfsrootargs: field("nfsrootargs")?,
            ipargs: field("ipargs")?,
            root_dir,
        })
    }
}

/// Everything the QEMU command line is made of, besides the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QemuInputs {
    /// The job's downloaded images, each with its `image_arg`.
    pub images: Vec<ImageArg>,
    /// The UEFI firmware directory (`-L`), when a UEFI firmware was deployed.
    pub uefi_dir: Option<String>,
    /// The test overlay drive, when the job has one.
    pub guest: Option<GuestDrive>,
    /// The dispatcher's address for NFS (`{NFS_SERVER_IP}`), when known.
    pub nfs_server_ip: Option<String>,
    /// The NFS root, for `method: qemu-nfs`.
    pub nfs: Option<NfsRoot>,
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar_string).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(v) => scalar_string(v).into_iter().collect(),
    }
}

/// The device's QEMU method parameters (`qemu`, else `qemu-nfs`).
pub(crate) fn qemu_parameters(device: &Device) -> LavaResult<&Mapping> {
    let methods = device.boot_methods().ok_or_else(|| {
        LavaError::configuration("Invalid device configuration - missing parameters")
    })?;
    methods
        .get("qemu")
        .or_else(|| methods.get("qemu-nfs"))
        .and_then(|m| m.get("parameters"))
        .and_then(Value::as_mapping)
        .filter(|p| p.contains_key("command"))
        .ok_or_else(|| {
            LavaError::configuration("Invalid device configuration - missing parameters")
        })
}

/// The words of the QEMU command line before splitting (LAVA's `sub_command`): the
/// binary as written in the device, `options`, `extra`, the substituted `image_arg`s,
/// the UEFI directory and the overlay drive.
pub fn qemu_words(device: &Device, inputs: &QemuInputs) -> LavaResult<Vec<String>> {
    let params = qemu_parameters(device)?;
    let binary = params
        .get("command")
        .and_then(scalar_string)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            LavaError::configuration("No QEMU binary command found - missing context.")
        })?;
    let mut words = vec![binary];
    words.extend(string_list(params.get("options")));
    words.extend(string_list(params.get("extra")));
    // Every `{label}` of every image with an image_arg, and `{NFS_SERVER_IP}`, as LAVA's
    // `substitute`.
    let mut substitutions: Vec<(String, String)> = inputs
        .images
        .iter()
        .map(|image| (format!("{{{}}}", image.label), image.file.clone()))
        .collect();
    substitutions.push((
        "{NFS_SERVER_IP}".into(),
        inputs.nfs_server_ip.clone().unwrap_or_default(),
    ));
    for image in &inputs.images {
        words.push(substitute_line(&image.image_arg, &substitutions));
    }
    if let Some(uefi) = &inputs.uefi_dir {
        words.extend([
            "-L".to_string(),
            uefi.clone(),
            "-monitor".into(),
            "none".into(),
        ]);
    }
    if let Some(nfs) = &inputs.nfs {
        substitutions.push((
            "{NFSROOTFS}".into(),
            nfs.root_dir.clone().unwrap_or_default(),
        ));
        let append = [
            format!("console={}", nfs.console),
            "root=/dev/nfs".to_string(),
            format!("{} rw", substitute_line(&nfs.nfsrootargs, &substitutions)),
            nfs.ipargs.clone(),
        ];
        words.push("--append".into());
        words.push(format!("\"{}\"", append.join(" ")));
    } else if let Some(guest) = &inputs.guest {
        words.push(format!(
            "-drive format=qcow2,file={},media=disk,if={},id={}",
            guest.file, guest.interface, guest.driveid
        ));
    }
    Ok(words)
}

/// The argv QEMU is started with: the words joined by spaces and split like a shell
/// would (without any expansion), as pexpect does with LAVA's command string.
pub fn qemu_argv(device: &Device, inputs: &QemuInputs) -> LavaResult<Vec<String>> {
    let line = qemu_words(device, inputs)?.join(" ");
    Ok(shlex_split(&line)?)
}

/// The image keys the job deploys in `namespace`, in job order (LAVA iterates the
/// namespace's `download-action` labels in the order the downloads registered them).
pub fn deployed_image_keys(job_params: &Mapping, namespace: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let actions = job_params
        .get("actions")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    for block in &actions {
        let Some(deploy) = block.get("deploy").and_then(Value::as_mapping) else {
            continue;
        };
        let ns = deploy
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("common");
        if ns != namespace {
            continue;
        }
        let images = deploy.get("images").and_then(Value::as_mapping);
        let candidates: Vec<&Value> = match images {
            Some(images) => images.keys().collect(),
            None => deploy
                .iter()
                .filter(|(_, v)| v.get("url").is_some())
                .map(|(k, _)| k)
                .collect(),
        };
        for key in candidates {
            if let Some(key) = scalar_string(key)
                && !keys.contains(&key)
            {
                keys.push(key);
            }
        }
    }
    keys
}

/// The QEMU inputs recorded in the namespace data by the deploy actions.
pub fn inputs_from_context(ctx: &RunContext) -> QemuInputs {
    let namespace = ctx.namespace();
    let mut inputs = QemuInputs::default();
    for label in deployed_image_keys(&ctx.job.parameters, &namespace) {
        if SKIPPED_LABELS.contains(&label.as_str()) {
            continue;
        }
        let get = |key: &str| {
            ctx.get_data("download-action", &label, key)
                .and_then(scalar_string)
        };
        match (get("image_arg"), get("file")) {
            (Some(image_arg), Some(file)) if !image_arg.is_empty() && !file.is_empty() => {
                inputs.images.push(ImageArg {
                    label,
                    image_arg,
                    file,
                })
            }
            _ => ctx.logger.warning(format!("Missing image arg for {label}")),
        }
    }
    inputs.uefi_dir = ctx
        .get_data("deployimages", "image", "uefi_dir")
        .and_then(scalar_string)
        .filter(|s| !s.is_empty());
    inputs.guest = guest_drive(ctx);
    inputs
}

/// The qcow2 test overlay drive `apply-overlay-guest` made, unless the overlay went into an
/// image (`append-overlays`): its file and the interface and id from the device's `guest`
/// settings (IDE on x86, else virtio, by default).
pub(crate) fn guest_drive(ctx: &RunContext) -> Option<GuestDrive> {
    let guest = ctx
        .get_data("apply-overlay-guest", "guest", "filename")
        .and_then(scalar_string)
        .filter(|s| !s.is_empty());
    let applied = lava_pipeline::value::truthy(ctx.get_data("append-overlays", "guest", "applied"));
    if let Some(file) = guest
        && !applied
    {
        let arch = ctx.job.context_arch().unwrap_or_default();
        let fallback = if X86_ARCHS.contains(&arch.as_str()) {
            "ide"
        } else {
            "virtio"
        };
        let guest_params = ctx
            .job
            .device
            .deploy_method_params("image")
            .and_then(|v| v.get("guest"));
        let field = |k: &str, default: &str| {
            guest_params
                .and_then(|g| g.get(k))
                .and_then(scalar_string)
                .unwrap_or_else(|| default.to_string())
        };
        let file = std::fs::canonicalize(&file)
            .map(|p| p.display().to_string())
            .unwrap_or(file);
        return Some(GuestDrive {
            file,
            interface: field("interface", fallback),
            driveid: field("driveid", "lavatest"),
        });
    }
    None
}

fn find_in_path(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// The test shell's `pre-command-list` for a QEMU guest with the qcow2 test overlay
/// disk attached: create the results directory and mount the overlay disk there (by
/// the UUID `apply-overlay-guest` gave it).
pub(crate) fn set_overlay_mount_commands(ctx: &mut RunContext) {
    let mountpoint = ctx
        .get_data("test", "results", "lava_test_results_dir")
        .and_then(scalar_string)
        .unwrap_or_default();
    let uuid = ctx
        .get_data("apply-overlay-guest", "guest", "UUID")
        .and_then(scalar_string)
        .unwrap_or_default();
    let commands: Vec<Value> = vec![
        format!("mkdir {mountpoint}").into(),
        format!("mount /dev/disk/by-uuid/{uuid} -t ext2 {mountpoint}").into(),
        format!("ls -la {mountpoint}/bin/lava-test-runner").into(),
    ];
    ctx.set_data(
        "test",
        "lava-test-shell",
        "pre-command-list",
        Value::Sequence(commands),
    );
}

/// `execute-qemu`: build the command line from the device and the namespace data, end
/// any previous connection of the namespace, start QEMU on a pty and install it as the
/// namespace's connection ([`ConsoleConnection`]). The overlay drive, when attached,
/// also sets the test shell's `pre-command-list` (mount the overlay disk) as LAVA does.
pub async fn start_qemu(ctx: &mut RunContext) -> LavaResult<()> {
    if let Some(mut previous) = ctx.take_connection() {
        previous.finalise().await;
    }
    let mut inputs = inputs_from_context(ctx);
    let dispatcher = ctx.job.parameters.get("dispatcher").cloned();
    inputs.nfs_server_ip =
        crate::runtime::boot_commands::dispatcher_ip(dispatcher.as_ref(), Some("nfs"));
    if ctx.meta().param("method").and_then(Value::as_str) == Some("qemu-nfs") {
        ctx.logger
            .debug("Adding NFS arguments to kernel command line.");
        let root_dir = ctx
            .get_data("extract-rootfs", "file", "nfsroot")
            .and_then(scalar_string)
            .filter(|s| !s.is_empty());
        inputs.nfs = Some(NfsRoot::from_device(&ctx.job.device, root_dir)?);
    }
    let mut words = qemu_words(&ctx.job.device, &inputs)?;
    let binary = find_in_path(&words[0]).ok_or_else(|| {
        LavaError::infrastructure(format!("Cannot find command '{}' in $PATH", words[0]))
    })?;
    words[0] = binary.display().to_string();
    if inputs.guest.is_some() && inputs.nfs.is_none() {
        ctx.logger
            .info("Extending command line for qcow2 test overlay");
        set_overlay_mount_commands(ctx);
    }
    let line = words.join(" ");
    ctx.logger.info(format!("Boot command: {line}"));

    let namespace = ctx.connection_namespace();
    let mut config = SessionConfig::default();
    if let Some(maxread) = ctx.job.device.spawn_maxread() {
        config = config.with_spawn_maxread(maxread);
    }
    let prompts = string_list(ctx.meta().param("prompts"));
    if !prompts.is_empty() {
        config = config.with_prompts(&prompts);
    }
    let connection = ConsoleConnection::spawn(&line, ctx.logger.clone(), &namespace, config)?
        .process_is_device();
    ctx.logger.debug("started a shell command");
    ctx.set_connection(Box::new(connection));
    Ok(())
}

/// LAVA's `qemu_data`: the QEMU found at validation, logged then and recorded as
/// `execute-qemu`'s results (`qemu_version`, `host_arch`, `job_arch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuData {
    /// The Debian package's version (`1:10.0.2+ds-…`), else the fourth word of
    /// `--version` (`10.0.2`).
    pub version: String,
    /// The package's architecture (`amd64`), else the host's machine (`x86_64`).
    pub host_arch: String,
    /// The job's `context.arch`.
    pub job_arch: String,
}

/// How long a version lookup may take.
const VERSION_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl QemuData {
    /// LAVA's lookup at validation: the Debian package of the job's architecture
    /// (`qemu-system-x86` for amd64/x86_64, `qemu-system-arm` for arm64/arm/armhf/
    /// aarch64) as `dpkg-query` answers ([`installed_debian_package`]), else `binary --version` (LAVA runs
    /// `qemu-system-<arch>` there; the device's own binary is the QEMU that will run).
    /// Returns the data and the line to log; `None` when neither answers (LAVA then
    /// records no results either). Not for QEMU in a container (`docker:`), which
    /// lava-rs does not run.
    pub fn find(job_arch: &str, binary: &str) -> Option<(QemuData, String)> {
        let package_suffix = match job_arch {
            "amd64" | "x86_64" => Some("x86"),
            "arm64" | "arm" | "armhf" | "aarch64" => Some("arm"),
            _ => None,
        };
        // What LAVA names in its line: the package, else `qemu`.
        let (label, version, host_arch) = match package_suffix
            .map(|suffix| format!("qemu-system-{suffix}"))
            .and_then(|package| Some((installed_debian_package(&package)?, package)))
        {
            Some((installed, package)) => (package, installed.version, installed.architecture),
            None => {
                let text = command_stdout(binary, &["--version"])?;
                let version = text.split_whitespace().nth(3)?.to_string();
                // LAVA asks `uname -m`; the build's architecture names the same machine.
                (
                    "qemu".to_string(),
                    version,
                    std::env::consts::ARCH.to_string(),
                )
            }
        };
        let line =
            format!("{label}, installed at version: {version}, host architecture: {host_arch}");
        let data = QemuData {
            version,
            host_arch,
            job_arch: job_arch.to_string(),
        };
        Some((data, line))
    }

    /// Records the data as the running action's results.
    pub fn record(&self, ctx: &mut RunContext) {
        ctx.set_result("qemu_version", self.version.clone());
        ctx.set_result("host_arch", self.host_arch.clone());
        ctx.set_result("job_arch", self.job_arch.clone());
    }
}

/// A Debian package as dpkg's database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianPackage {
    /// `Version:` (`1:10.0.2+ds-2`).
    pub version: String,
    /// `Architecture:` (`amd64`).
    pub architecture: String,
}

/// What `dpkg-query -W -f='${Version} ${Architecture}' <package>` answers, read from
/// dpkg's own database (`$DPKG_ADMINDIR/status`, by default `/var/lib/dpkg/status`)
/// instead of a `dpkg-query` process (some 5 ms at every validation): the package's
/// paragraph, when it is known with a version and not purged. `None` off Debian.
pub fn installed_debian_package(package: &str) -> Option<DebianPackage> {
    let admin_dir = std::env::var_os("DPKG_ADMINDIR").unwrap_or_else(|| "/var/lib/dpkg".into());
    let status = std::fs::read_to_string(std::path::Path::new(&admin_dir).join("status")).ok()?;
    debian_package_in_status(&status, package)
}

/// The paragraph of `package` in the text of a dpkg `status` file (see
/// [`installed_debian_package`]).
pub fn debian_package_in_status(status: &str, package: &str) -> Option<DebianPackage> {
    let heading = format!("Package: {package}\n");
    let mut from = 0;
    let start = loop {
        let at = from + status[from..].find(&heading)?;
        if at == 0 || status.as_bytes()[at - 1] == b'\n' {
            break at;
        }
        from = at + heading.len();
    };
    let paragraph = &status[start..];
    let paragraph = &paragraph[..paragraph.find("\n\n").unwrap_or(paragraph.len())];
    let field = |name: &str| {
        paragraph
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    if field("Status").is_some_and(|s| s.ends_with("not-installed")) {
        return None;
    }
    Some(DebianPackage {
        version: field("Version")?.to_string(),
        architecture: field("Architecture").unwrap_or_default().to_string(),
    })
}

/// The standard output of `program args…` when it runs and exits 0 within
/// [`VERSION_LOOKUP_TIMEOUT`] (killed and reaped past it); `None` otherwise.
fn command_stdout(program: &str, args: &[&str]) -> Option<String> {
    use std::io::Read;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let status = crate::common::power::wait_bounded(&mut child, VERSION_LOOKUP_TIMEOUT);
    let mut text = String::new();
    // The output of a version query fits in the pipe: it is all there once the child exited.
    child.stdout.take()?.read_to_string(&mut text).ok()?;
    status.filter(|s| s.success()).map(|_| text)
}

/// The booting part of `auto-login-action`: wait for the kernel start message (block
/// `parameters.kernel-start-message`, else the device constant) or one of the boot
/// method's `error-messages` constants. A bootloader error message is an
/// InfrastructureError as in LAVA; QEMU exiting first is a ConnectionClosedError naming
/// its exit; no kernel before the deadline is a boot hang, logged as such and raised as
/// the action's own timeout error.
pub async fn wait_for_kernel_start(ctx: &mut RunContext, method: &str) -> LavaResult<()> {
    let params = ctx.meta().params();
    let message = params
        .get("parameters")
        .and_then(|p| p.get("kernel-start-message"))
        .and_then(scalar_string)
        .or_else(|| {
            ctx.job
                .device
                .get_constant("kernel-start-message", None)
                .ok()
                .and_then(scalar_string)
        })
        .filter(|m| !m.is_empty());
    let Some(message) = message else {
        return Ok(());
    };
    let mut patterns = vec![message.clone()];
    if let Ok(errors) = ctx.job.device.get_constant("error-messages", Some(method)) {
        patterns.extend(string_list(Some(errors)));
    }
    ctx.logger.debug(format!(
        "{}: Wait for prompt {:?} (timeout {})",
        ctx.meta().name,
        patterns,
        lava_pipeline::timeout::seconds_to_str(ctx.remaining().as_secs_f64())
    ));
    let compiled = Patterns::new(&patterns)?;
    let deadline = ctx.deadline();
    let mut connection = crate::runtime::console::take_console(ctx)?;
    let outcome = match connection.as_any_mut().downcast_mut::<ConsoleConnection>() {
        Some(console) => Ok(console.session().wait_for(&compiled, deadline).await),
        None => Err(LavaError::bug(
            "the namespace's connection is not a console connection",
        )),
    };
    ctx.set_connection(connection);
    match outcome? {
        Ok(found) if found.index == 0 => Ok(()),
        Ok(found) => Err(LavaError::infrastructure(format!(
            "matched a bootloader error message: '{}' ({})",
            patterns[found.index], found.index
        ))),
        Err(e) if e.kind() == ConnErrorKind::ConnectionClosed => {
            ctx.logger.error(format!(
                "QEMU exited before the kernel started (no '{message}' seen)"
            ));
            Err(LavaError::new(
                ErrorKind::ConnectionClosed,
                format!("QEMU exited before the kernel started (no '{message}' seen)"),
            ))
        }
        Err(e) if e.kind() == ConnErrorKind::Timeout => {
            ctx.logger.error(format!(
                "Boot hang: the kernel start message '{message}' was not seen"
            ));
            Err(action_timeout(ctx))
        }
        Err(e) => Err(LavaError::from(e)),
    }
}

/// LAVA's fatal kernel message: its start, its end and the JobError message used when
/// the end never comes.
pub const KERNEL_PANIC_START: &str = r"Kernel panic - not syncing";
/// The regex that ends a kernel panic message.
pub const KERNEL_PANIC_END: &str = r"end Kernel panic[^\r]*\r";

/// After the kernel started: wait for one of `prompts` while watching for a kernel
/// panic. A panic is LAVA's fatal `panic` kernel message: logged at error as
/// `<action> kernel 'panic'`, recorded in the results (`extra: [{kind: panic,
/// message}]`) and raised as a JobError carrying the whole panic text (from the start
/// of its line to the `end Kernel panic` line); when that end never comes, the
/// JobError is `Kernel panic - not syncing`. Returns the index of the prompt matched.
/// Nothing borrowed from the context is held across a wait, so the future is `Send`.
pub async fn wait_for_prompt_watching_panic(
    ctx: &mut RunContext,
    prompts: &[String],
) -> LavaResult<usize> {
    let mut patterns = vec![KERNEL_PANIC_START.to_string()];
    patterns.extend(prompts.iter().cloned());
    let compiled = Patterns::new(&patterns)?;
    let end = Patterns::new(&[KERNEL_PANIC_END])?;
    let deadline = ctx.deadline();
    let name = ctx.meta().name.clone();
    let logger = ctx.logger.clone();
    let mut connection = crate::runtime::console::take_console(ctx)?;
    let outcome: LavaResult<Result<usize, String>> = async {
        let Some(console) = connection.as_any_mut().downcast_mut::<ConsoleConnection>() else {
            return Err(LavaError::bug(
                "the namespace's connection is not a console connection",
            ));
        };
        let found = console.session().wait_for(&compiled, deadline).await;
        let found = match found {
            Ok(found) => found,
            Err(e) => return Err(boot_wait_error(&name, &logger, e)),
        };
        if found.index > 0 {
            return Ok(Ok(found.index - 1));
        }
        let line_start = found.before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let mut message = format!("{}{}", &found.before[line_start..], found.matched);
        match console.session().wait_for(&end, deadline).await {
            Ok(m) => {
                message.push_str(&m.before);
                message.push_str(m.matched.trim_end_matches('\r'));
                Ok(Err(message))
            }
            Err(_) => {
                logger.warning("Failed to match end of kernel error");
                Ok(Err(String::new()))
            }
        }
    }
    .await;
    ctx.set_connection(connection);
    match outcome? {
        Ok(index) => Ok(index),
        Err(message) => {
            ctx.logger.error(format!("{name} kernel 'panic'"));
            let text = if message.is_empty() {
                KERNEL_PANIC_START.to_string()
            } else {
                message
            };
            let mut record = Mapping::new();
            record.insert("kind".into(), "panic".into());
            record.insert("message".into(), text.clone().into());
            ctx.set_result("extra", Value::Sequence(vec![Value::Mapping(record)]));
            Err(LavaError::job(text))
        }
    }
}

fn boot_wait_error(
    name: &str,
    logger: &lava_pipeline::JobLogger,
    e: lava_connection::ConnectionError,
) -> LavaError {
    match e.kind() {
        ConnErrorKind::Timeout => {
            logger.error(format!("{name}: no prompt before the deadline (boot hang)"));
            LavaError::job("wait for prompt timed out")
        }
        ConnErrorKind::ConnectionClosed => {
            logger.error("QEMU exited before a prompt was seen");
            LavaError::new(ErrorKind::ConnectionClosed, "Connection closed")
        }
        _ => LavaError::from(e),
    }
}
