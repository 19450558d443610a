//! Run-time: the `iso-installer` deployment and the `qemu-iso` boot (an operating system
//! installer run in QEMU from its ISO, then the installed disk booted).
//!
//! Deploy, in LAVA's order: `prepare-empty-image` creates the raw disk the installer
//! writes to (`qemu-img create`, `installation_size` bytes); the preseed and ISO
//! downloads follow; `pull-installer-files` copies the job's `iso.kernel` and
//! `iso.initrd` out of the ISO with `xorriso -osirrox` (no loop mount, no libguestfs);
//! `prepare-qemu-commands` puts the preseed file where the worker's TFTP server serves
//! it and prepares the installer command line: the device's QEMU `command` and
//! `options`, the empty disk, `-boot <boot_order>`, `-kernel`/`-initrd`, and LAVA's
//! `-append` built from the `debian_installer` deployment data (`base`, `locale`,
//! `keymaps`, `netcfg`, the device's `boot_options.console`) with
//! `preseed/url=tftp://<dispatcher tftp ip>/<path under the TFTP root>`.
//!
//! The preseed URL: LAVA substitutes the preseed's absolute path on the worker after
//! `tftp://<ip>/`, which a TFTP server started with `--secure` (tftpd-hpa's Debian
//! default) resolves under its root again. lava-rs names the file by its path relative
//! to the TFTP root (`<prefix><job id>/deploy-iso-installer-<level>/<file>`), which
//! tftpd-hpa and QEMU's own user-network TFTP server (`-net user,tftp=<root>`) both
//! serve. The TFTP root is the dispatcher configuration's `tftp_dir`, else tftpd-hpa's
//! `TFTP_DIRECTORY`; the job's directory there is removed when the job ends.
//!
//! Boot: `execute-installer-command` starts that command with the ISO's `image_arg`
//! (`{iso}` replaced) on a pty, as the namespace's console; `monitor-installer-connection`
//! waits for the installer's messages of the deployment data (`prompts`): the last one
//! (`reboot: Power down`) is the end of a successful installation, any other one
//! (`ERROR: Installation step failed`...) fails the job with that message, as a LAVA
//! user reading the list expects; `reboot-into-installed` starts QEMU again on the
//! installed disk alone (plus the test overlay disk, mounted by the test shell's
//! pre-commands as for `execute-qemu`) and waits for the installed bootloader's
//! `Loading initial ramdisk` before the login.

use crate::common::power::which;
use crate::runtime::console::{ConsoleConnection, action_timeout};
use crate::runtime::qemu::{guest_drive, qemu_parameters, set_overlay_mount_commands};
use crate::runtime::tftp::TftpLayout;
use lava_connection::{ErrorKind as ConnErrorKind, Patterns, SessionConfig};
use lava_pipeline::command::run_command;
use lava_pipeline::value::scalar_string;
use lava_pipeline::{Device, ErrorKind, LavaError, LavaResult, RunContext};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// What the installed system's bootloader prints while it loads (LAVA's
/// `INSTALLER_QUIET_MSG`): the reboot waits for it before the login.
pub const INSTALLER_QUIET_MSG: &str = "Loading initial ramdisk";
/// The action whose namespace data holds the installer command line.
const COMMANDS: &str = "prepare-qemu-commands";
/// The empty disk's namespace data action and label.
const EMPTY_IMAGE: &str = "prepare-empty-image";
/// The files pulled out of the ISO.
const PULLED: &str = "pull-installer-files";
/// The deployment's name: its TFTP directory and the `suffix` record.
const DEPLOY: &str = "deploy-iso-installer";
/// The disk image file name in the empty image's directory.
pub const EMPTY_IMAGE_FILE: &str = "hd.img";

/// The `debian_installer` deployment data keys the installer command line needs.
pub const INSTALLER_DATA_KEYS: [&str; 5] = ["base", "locale", "keymaps", "netcfg", "prompts"];

fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar_string).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(v) => scalar_string(v).into_iter().collect(),
    }
}

fn data_string(ctx: &RunContext, action: &str, label: &str, key: &str) -> Option<String> {
    ctx.get_data(action, label, key)
        .and_then(scalar_string)
        .filter(|s| !s.is_empty())
}

fn host_tool(program: &str, package: &str) -> LavaResult<PathBuf> {
    which(program).ok_or_else(|| {
        LavaError::infrastructure(format!(
            "Cannot find command '{program}' in $PATH (Debian package {package})"
        ))
    })
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> LavaError {
    LavaError::infrastructure(format!("{what} {}: {e}", path.display()))
}

/// `prepare-empty-image`: a raw disk of `size` bytes in the job's scratch directory,
/// made with `qemu-img create` (sparse), recorded as the action's `output`.
pub async fn create_empty_image(ctx: &mut RunContext, size: u64) -> LavaResult<PathBuf> {
    let dir = crate::runtime::test_overlay::job_tmp_dir(ctx).join(format!(
        "{EMPTY_IMAGE}-{}",
        ctx.meta().level.replace('.', "-")
    ));
    std::fs::create_dir_all(&dir).map_err(|e| io_error("Unable to create", &dir, e))?;
    let output = dir.join(EMPTY_IMAGE_FILE);
    let qemu_img = host_tool("qemu-img", "qemu-utils")?;
    ctx.logger
        .info(format!("Creating base image of size: {size} bytes"));
    let argv = [
        qemu_img.display().to_string(),
        "create".into(),
        "-q".into(),
        "-f".into(),
        "raw".into(),
        output.display().to_string(),
        size.to_string(),
    ];
    run_command(
        &ctx.logger,
        &argv,
        None,
        ctx.deadline(),
        ErrorKind::Infrastructure,
        false,
    )
    .await?;
    let path = output.display().to_string();
    ctx.set_data(EMPTY_IMAGE, EMPTY_IMAGE, "output", path.clone());
    ctx.set_result("success", path);
    Ok(output)
}

/// The `xorriso` argv copying each `(path in the ISO, destination file)` out of `iso`
/// in one run (`-osirrox on` allows copying to the host filesystem).
pub fn xorriso_extract_argv(xorriso: &str, iso: &str, files: &[(String, PathBuf)]) -> Vec<String> {
    let mut argv = vec![
        xorriso.to_string(),
        "-osirrox".into(),
        "on".into(),
        "-indev".into(),
        iso.to_string(),
    ];
    for (inside, destination) in files {
        argv.extend([
            "-extract".into(),
            inside.clone(),
            destination.display().to_string(),
        ]);
    }
    argv
}

/// `pull-installer-files`: copy `files` (`(key, absolute path in the ISO)`, `kernel` and
/// `initrd`) out of the downloaded ISO next to it, each under its base name, and record
/// each destination under the action's data. A missing ISO download is a JobError, as a
/// path the ISO does not hold (the tool's failure); no `xorriso` is an
/// InfrastructureError.
pub async fn pull_installer_files(
    ctx: &mut RunContext,
    files: &[(String, String)],
) -> LavaResult<()> {
    let iso = data_string(ctx, "download-action", "iso", "file")
        .ok_or_else(|| LavaError::job("installer image path is not present in the namespace."))?;
    let destination = Path::new(&iso)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let targets: Vec<(String, PathBuf)> = files
        .iter()
        .map(|(_, inside)| {
            let base = Path::new(inside)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (inside.clone(), destination.join(base))
        })
        .collect();
    if targets.is_empty() {
        ctx.set_result("success", Value::Sequence(Vec::new()));
        return Ok(());
    }
    for (_, target) in &targets {
        // xorriso refuses to overwrite (a retried deployment pulls again).
        let _ = std::fs::remove_file(target);
    }
    let xorriso = host_tool("xorriso", "xorriso")?;
    let argv = xorriso_extract_argv(&xorriso.display().to_string(), &iso, &targets);
    run_command(
        &ctx.logger,
        &argv,
        None,
        ctx.deadline(),
        ErrorKind::Job,
        false,
    )
    .await?;
    for ((key, inside), (_, target)) in files.iter().zip(&targets) {
        let size = std::fs::metadata(target)
            .map_err(|_| {
                LavaError::job(format!(
                    "Unable to pull {inside} out of the installer image {iso}"
                ))
            })?
            .len();
        ctx.logger
            .info(format!("filename: {} size: {size}", target.display()));
        ctx.set_data(PULLED, PULLED, key, target.display().to_string());
    }
    let pulled: Vec<Value> = files.iter().map(|(_, p)| p.clone().into()).collect();
    ctx.set_result("success", Value::Sequence(pulled));
    Ok(())
}

/// The installer's QEMU command: LAVA's `sub_command` words and its `-append` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallerCommand {
    /// The binary and `options` of the device's `qemu` method, the empty disk
    /// (`{emptyimage}`), `-boot <boot_order>`, and `-kernel`/`-initrd` when pulled.
    pub sub_command: Vec<String>,
    /// The `-append` option with its quoted kernel command line (`{preseed}` replaced).
    pub append: String,
    /// The installer's messages to watch for (the deployment data `prompts`).
    pub prompts: Vec<String>,
}

/// A required string of the installer deployment data, or LAVA's kind of complaint.
fn installer_data(data: &Mapping, key: &str) -> LavaResult<String> {
    data.get(key).and_then(scalar_string).ok_or_else(|| {
        LavaError::job(format!(
            "The deployment data of this 'os' has no installer '{key}': use os: debian_installer"
        ))
    })
}

/// The installer command line for `device` and the deploy block's `deployment_data`:
/// `preseed_url` is the full URL of the preseed file, `kernel`/`initrd` the files
/// pulled out of the ISO.
pub fn installer_command(
    device: &Device,
    deployment_data: &Mapping,
    preseed_url: &str,
    kernel: Option<&str>,
    initrd: Option<&str>,
) -> LavaResult<InstallerCommand> {
    let invalid = || LavaError::job("Invalid parameters for prepare-qemu-commands");
    let params = qemu_parameters(device)?;
    let binary = params
        .get("command")
        .and_then(scalar_string)
        .filter(|b| !b.is_empty())
        .ok_or_else(invalid)?;
    let boot_options = params.get("boot_options");
    let option = |key: &str| {
        boot_options
            .and_then(|o| o.get(key))
            .and_then(scalar_string)
            .filter(|s| !s.is_empty())
    };
    let console = format!("console={}", option("console").ok_or_else(invalid)?);
    let boot_order = option("boot_order").ok_or_else(invalid)?;
    let mut sub_command = vec![binary];
    sub_command.extend(string_list(params.get("options")));
    sub_command.push("-drive format=raw,file={emptyimage}".into());
    sub_command.push(format!("-boot {boot_order}"));
    if let Some(kernel) = kernel {
        sub_command.push(format!("-kernel {kernel}"));
    }
    if let Some(initrd) = initrd {
        sub_command.push(format!("-initrd {initrd}"));
    }
    let base = installer_data(deployment_data, "base")?;
    let locale = installer_data(deployment_data, "locale")?;
    let keymaps = installer_data(deployment_data, "keymaps")?;
    let netcfg = installer_data(deployment_data, "netcfg")?;
    let prompts = string_list(deployment_data.get("prompts"));
    if prompts.is_empty() {
        return Err(LavaError::job(
            "The deployment data of this 'os' has no installer 'prompts': use os: debian_installer",
        ));
    }
    let append = format!(
        "-append '{} console=tty0 console=tty1 {locale} {console} {keymaps} {netcfg} \
         preseed/url={preseed_url} --- {console}'",
        base.trim_end()
    );
    Ok(InstallerCommand {
        sub_command,
        append,
        prompts,
    })
}

/// `prepare-qemu-commands`: copy the downloaded preseed file into the TFTP root (the
/// deployment's directory under `<prefix><job id>`, removed at the end of the job),
/// record LAVA's `suffix`, and record the installer command line, its `append` text
/// and the installer prompts for the boot.
pub async fn prepare_installer_command(ctx: &mut RunContext) -> LavaResult<()> {
    let dispatcher = ctx.job.parameters.get("dispatcher").cloned();
    let root = crate::deploy::tftp::tftp_root(dispatcher.as_ref())?;
    let prefix = dispatcher
        .as_ref()
        .and_then(|d| d.get("prefix"))
        .and_then(scalar_string)
        .unwrap_or_default();
    let level = ctx.meta().level.clone();
    let parent_level = level.rsplit_once('.').map(|(p, _)| p).unwrap_or("0");
    let layout = TftpLayout::new(&root, &prefix, &ctx.job.id, DEPLOY, parent_level);
    let preseed = data_string(ctx, "download-action", "preseed", "file")
        .ok_or_else(|| LavaError::job("Unable to identify downloaded preseed filename."))?;
    let name = Path::new(&preseed)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "preseed.cfg".into());
    for dir in [&layout.job_dir, &layout.deploy_dir] {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| io_error("Unable to create", dir, e))?;
    }
    ctx.add_override_dir(&layout.job_dir);
    let served = layout.deploy_dir.join(&name);
    std::fs::copy(&preseed, &served)
        .map_err(|e| io_error("Unable to copy the preseed to", &served, e))?;
    let suffix = layout.suffix();
    ctx.set_data(DEPLOY, "iso", "suffix", suffix.clone());
    let ip = crate::runtime::boot_commands::dispatcher_ip(dispatcher.as_ref(), Some("tftp"))
        .ok_or_else(|| {
            LavaError::infrastructure(
                "Unable to find the dispatcher's IP address for the preseed URL: set dispatcher_ip",
            )
        })?;
    let url = format!("tftp://{ip}/{suffix}/{name}");
    ctx.logger.info(format!("Preseed file served as {url}"));
    let deployment_data = ctx
        .meta()
        .param("deployment_data")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let kernel = data_string(ctx, PULLED, PULLED, "kernel");
    let initrd = data_string(ctx, PULLED, PULLED, "initrd");
    let command = installer_command(
        &ctx.job.device,
        &deployment_data,
        &url,
        kernel.as_deref(),
        initrd.as_deref(),
    )?;
    let words: Vec<Value> = command.sub_command.into_iter().map(Value::from).collect();
    ctx.set_data(COMMANDS, COMMANDS, "sub_command", Value::Sequence(words));
    ctx.set_data(COMMANDS, COMMANDS, "append", command.append);
    let prompts: Vec<Value> = command.prompts.into_iter().map(Value::from).collect();
    ctx.set_data(COMMANDS, COMMANDS, "prompts", Value::Sequence(prompts));
    Ok(())
}

/// The installer's full command line: the recorded words with `{emptyimage}` replaced,
/// the ISO's `image_arg` with `{iso}` replaced, and the `-append` text.
pub fn installer_line(
    sub_command: &[String],
    empty_image: &str,
    iso_arg: Option<(&str, &str)>,
    append: &str,
) -> String {
    let mut words: Vec<String> = sub_command
        .iter()
        .map(|w| w.replace("{emptyimage}", empty_image))
        .collect();
    if let Some((image_arg, iso)) = iso_arg {
        words.push(image_arg.replace("{iso}", iso));
    }
    words.push(append.to_string());
    words.join(" ")
}

fn binary_in_path(line_words: &mut [String]) -> LavaResult<()> {
    let first = line_words
        .first_mut()
        .ok_or_else(|| LavaError::bug("empty QEMU command"))?;
    let binary = which(first).ok_or_else(|| {
        LavaError::infrastructure(format!("Cannot find command '{first}' in $PATH"))
    })?;
    *first = binary.display().to_string();
    Ok(())
}

fn spawn_qemu(ctx: &mut RunContext, line: &str, prompts: &[String]) -> LavaResult<()> {
    let namespace = ctx.connection_namespace();
    let mut config = SessionConfig::default();
    if let Some(maxread) = ctx.job.device.spawn_maxread() {
        config = config.with_spawn_maxread(maxread);
    }
    if !prompts.is_empty() {
        config = config.with_prompts(prompts);
    }
    let connection =
        ConsoleConnection::spawn(line, ctx.logger.clone(), &namespace, config)?.process_is_device();
    ctx.logger.debug("started a shell command");
    ctx.set_connection(Box::new(connection));
    Ok(())
}

/// `execute-installer-command`: end any previous connection, then start the installer
/// (the recorded command line, the ISO as its `image_arg` says) on a pty as the
/// namespace's console, its prompts the installer's messages.
pub async fn start_installer(ctx: &mut RunContext) -> LavaResult<()> {
    if let Some(mut previous) = ctx.take_connection() {
        previous.finalise().await;
    }
    let empty = data_string(ctx, EMPTY_IMAGE, EMPTY_IMAGE, "output")
        .ok_or_else(|| LavaError::job("Unable to find the empty image to install to."))?;
    let mut sub_command = string_list(ctx.get_data(COMMANDS, COMMANDS, "sub_command"));
    let append = data_string(ctx, COMMANDS, COMMANDS, "append")
        .ok_or_else(|| LavaError::job("Unable to find the installer command line."))?;
    binary_in_path(&mut sub_command)?;
    let image_arg = data_string(ctx, "download-action", "iso", "image_arg");
    let iso = data_string(ctx, "download-action", "iso", "file").unwrap_or_default();
    let line = installer_line(
        &sub_command,
        &empty,
        image_arg.as_deref().map(|arg| (arg, iso.as_str())),
        &append,
    );
    ctx.logger.info(line.clone());
    let prompts = string_list(ctx.get_data(COMMANDS, COMMANDS, "prompts"));
    spawn_qemu(ctx, &line, &prompts)
}

/// How a wait for the installer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallerEnd {
    /// The installation's final message (the last prompt).
    Finished(String),
    /// One of the installer's failure messages (any earlier prompt).
    Failed(String),
}

/// The meaning of prompt `index` of the installer's `prompts`: the last one ends a
/// successful installation, every other one is a failure message.
pub fn installer_end(prompts: &[String], index: usize) -> InstallerEnd {
    let message = prompts.get(index).cloned().unwrap_or_default();
    if index + 1 == prompts.len() {
        InstallerEnd::Finished(message)
    } else {
        InstallerEnd::Failed(message)
    }
}

async fn wait_on_console(
    ctx: &mut RunContext,
    patterns: &[String],
) -> LavaResult<Result<usize, lava_connection::ConnectionError>> {
    let compiled = Patterns::new(patterns)?;
    let deadline = ctx.deadline();
    let mut connection = crate::runtime::console::take_console(ctx)?;
    let outcome = match connection.as_any_mut().downcast_mut::<ConsoleConnection>() {
        Some(console) => Ok(console
            .session()
            .wait_for(&compiled, deadline)
            .await
            .map(|found| found.index)),
        None => Err(LavaError::bug(
            "the namespace's connection is not a console connection",
        )),
    };
    ctx.set_connection(connection);
    outcome
}

/// `monitor-installer-connection`: wait for the installer's end. Its failure messages
/// are JobErrors naming the message; QEMU ending before the final message is a
/// ConnectionClosed error; no message before the deadline is the action's timeout.
pub async fn monitor_installer(ctx: &mut RunContext) -> LavaResult<()> {
    let prompts = string_list(ctx.get_data(COMMANDS, COMMANDS, "prompts"));
    if prompts.is_empty() {
        return Err(LavaError::job("Unable to find the installer prompts."));
    }
    ctx.logger.debug(format!(
        "{}: Waiting for prompt {}",
        ctx.meta().name,
        prompts.join(" ")
    ));
    match wait_on_console(ctx, &prompts).await? {
        Ok(index) => match installer_end(&prompts, index) {
            InstallerEnd::Finished(message) => {
                ctx.logger
                    .info(format!("The installer finished: '{message}'"));
                ctx.set_result("success", message);
                Ok(())
            }
            InstallerEnd::Failed(message) => {
                ctx.logger
                    .error(format!("The installer failed: '{message}'"));
                Err(LavaError::job(format!("Installer failed: {message}")))
            }
        },
        Err(e) if e.kind() == ConnErrorKind::ConnectionClosed => Err(LavaError::new(
            ErrorKind::ConnectionClosed,
            "QEMU exited before the installer finished",
        )),
        Err(e) if e.kind() == ConnErrorKind::Timeout => {
            ctx.logger.error("The installer did not finish in time");
            Err(action_timeout(ctx))
        }
        Err(e) => Err(LavaError::from(e)),
    }
}

/// The QEMU words of the installed system's boot: the device's binary and `options`,
/// then the installed disk.
pub fn installed_words(device: &Device, disk: &str) -> LavaResult<Vec<String>> {
    let params = qemu_parameters(device)?;
    let binary = params
        .get("command")
        .and_then(scalar_string)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| LavaError::job("Invalid parameters for reboot-into-installed"))?;
    let mut words = vec![binary];
    words.extend(string_list(params.get("options")));
    words.push(format!("-drive format=raw,file={disk}"));
    Ok(words)
}

/// `reboot-into-installed`: end the installer's QEMU, start QEMU on the installed disk
/// (and the test overlay disk, mounted by the test shell's pre-commands), and wait for
/// the installed bootloader's [`INSTALLER_QUIET_MSG`].
pub async fn reboot_into_installed(ctx: &mut RunContext) -> LavaResult<()> {
    if let Some(mut previous) = ctx.take_connection() {
        previous.finalise().await;
    }
    let disk = data_string(ctx, EMPTY_IMAGE, EMPTY_IMAGE, "output")
        .ok_or_else(|| LavaError::job("Unable to find the installed image."))?;
    let mut words = installed_words(&ctx.job.device, &disk)?;
    binary_in_path(&mut words)?;
    if let Some(guest) = guest_drive(ctx) {
        ctx.logger
            .info("Extending command line for qcow2 test overlay");
        words.push(format!(
            "-drive format=qcow2,file={},media=disk,if={},id={}",
            guest.file, guest.interface, guest.driveid
        ));
        set_overlay_mount_commands(ctx);
    }
    let line = words.join(" ");
    ctx.logger.info(format!("Boot command: {line}"));
    let prompts = string_list(ctx.meta().param("prompts"));
    spawn_qemu(ctx, &line, &prompts)?;
    match wait_on_console(ctx, &[INSTALLER_QUIET_MSG.to_string()]).await? {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ConnErrorKind::ConnectionClosed => Err(LavaError::new(
            ErrorKind::ConnectionClosed,
            format!(
                "QEMU exited before the installed system booted (no '{INSTALLER_QUIET_MSG}' seen)"
            ),
        )),
        Err(e) if e.kind() == ConnErrorKind::Timeout => {
            ctx.logger.error(format!(
                "The installed system did not boot: '{INSTALLER_QUIET_MSG}' was not seen"
            ));
            Err(action_timeout(ctx))
        }
        Err(e) => Err(LavaError::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE: &str = r#"
actions:
  boot:
    methods:
      qemu:
        parameters:
          command: qemu-system-x86_64
          boot_options: {root: /dev/sda1, console: 'ttyS0,115200', boot_order: c}
          options:
          - -nographic
          - -net nic,model=virtio -net user
          - -m 256
          extra:
          - -accel tcg
"#;

    fn installer_data() -> Mapping {
        serde_yaml::from_str(
            r#"
base: 'auto=true install noshell debug verbose BOOT_DEBUG=1 DEBIAN_FRONTEND=text '
locale: debian-installer/locale=en_US
keymaps: console-keymaps-at/keymap=us keyboard-configuration/xkb-keymap=us
netcfg: netcfg/choose_interface=auto netcfg/get_hostname=debian netcfg/get_domain=
prompts:
- 'ERROR: Installation step failed'
- 'ERROR: Failed to retrieve the preconfiguration file'
- Press enter to continue
- 'reboot: Power down'
"#,
        )
        .unwrap()
    }

    #[test]
    fn installer_command_as_lava_builds_it() {
        let device = Device::from_yaml(DEVICE, None).unwrap();
        let command = installer_command(
            &device,
            &installer_data(),
            "tftp://10.0.2.2/lava-7/deploy-iso-installer-1/preseed.cfg",
            Some("/tmp/iso/vmlinuz"),
            Some("/tmp/iso/initrd.gz"),
        )
        .unwrap();
        assert_eq!(
            command.sub_command,
            [
                "qemu-system-x86_64",
                "-nographic",
                "-net nic,model=virtio -net user",
                "-m 256",
                "-drive format=raw,file={emptyimage}",
                "-boot c",
                "-kernel /tmp/iso/vmlinuz",
                "-initrd /tmp/iso/initrd.gz",
            ]
        );
        assert_eq!(
            command.append,
            "-append 'auto=true install noshell debug verbose BOOT_DEBUG=1 DEBIAN_FRONTEND=text \
             console=tty0 console=tty1 debian-installer/locale=en_US console=ttyS0,115200 \
             console-keymaps-at/keymap=us keyboard-configuration/xkb-keymap=us \
             netcfg/choose_interface=auto netcfg/get_hostname=debian netcfg/get_domain= \
             preseed/url=tftp://10.0.2.2/lava-7/deploy-iso-installer-1/preseed.cfg --- \
             console=ttyS0,115200'"
        );
        assert_eq!(command.prompts.last().unwrap(), "reboot: Power down");
        // The whole line splits into QEMU's arguments with the kernel command line whole.
        let line = installer_line(
            &command.sub_command,
            "/tmp/hd.img",
            Some((
                "-drive file={iso},index=2,media=cdrom,readonly=on",
                "/tmp/i.iso",
            )),
            &command.append,
        );
        let argv = lava_python::shlex_split(&line).unwrap();
        assert!(argv.contains(&"format=raw,file=/tmp/hd.img".to_string()));
        assert!(argv.contains(&"file=/tmp/i.iso,index=2,media=cdrom,readonly=on".to_string()));
        let append = &argv[argv.iter().position(|a| a == "-append").unwrap() + 1];
        assert!(append.starts_with("auto=true install"));
        assert!(append.ends_with("--- console=ttyS0,115200"));
    }

    #[test]
    fn installer_command_needs_the_installer_data_and_boot_options() {
        let device = Device::from_yaml(DEVICE, None).unwrap();
        let mut data = installer_data();
        data.remove("netcfg");
        let error = installer_command(&device, &data, "tftp://x/p", None, None).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Job);
        assert!(error.to_string().contains("'netcfg'"), "{error}");
        let no_order = DEVICE.replace(", boot_order: c", "");
        let device = Device::from_yaml(&no_order, None).unwrap();
        let error =
            installer_command(&device, &installer_data(), "tftp://x/p", None, None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("Invalid parameters for prepare-qemu-commands"),
            "{error}"
        );
    }

    #[test]
    fn only_the_last_installer_prompt_is_success() {
        let prompts: Vec<String> = string_list(installer_data().get("prompts"));
        assert_eq!(
            installer_end(&prompts, 3),
            InstallerEnd::Finished("reboot: Power down".into())
        );
        assert_eq!(
            installer_end(&prompts, 0),
            InstallerEnd::Failed("ERROR: Installation step failed".into())
        );
        assert_eq!(
            installer_end(&prompts, 2),
            InstallerEnd::Failed("Press enter to continue".into())
        );
    }

    #[test]
    fn installed_system_boots_the_disk_alone() {
        let device = Device::from_yaml(DEVICE, None).unwrap();
        assert_eq!(
            installed_words(&device, "/tmp/hd.img").unwrap(),
            [
                "qemu-system-x86_64",
                "-nographic",
                "-net nic,model=virtio -net user",
                "-m 256",
                "-drive format=raw,file=/tmp/hd.img",
            ]
        );
    }

    #[test]
    fn xorriso_pulls_every_file_in_one_run() {
        let argv = xorriso_extract_argv(
            "/usr/bin/xorriso",
            "/tmp/d/i.iso",
            &[
                (
                    "/install.amd/vmlinuz".into(),
                    PathBuf::from("/tmp/d/vmlinuz"),
                ),
                (
                    "/install.amd/initrd.gz".into(),
                    PathBuf::from("/tmp/d/initrd.gz"),
                ),
            ],
        );
        assert_eq!(
            argv.join(" "),
            "/usr/bin/xorriso -osirrox on -indev /tmp/d/i.iso \
             -extract /install.amd/vmlinuz /tmp/d/vmlinuz \
             -extract /install.amd/initrd.gz /tmp/d/initrd.gz"
        );
    }
}
