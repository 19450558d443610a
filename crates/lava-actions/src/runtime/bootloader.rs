//! Run-time: talking to an interactive bootloader (U-Boot, barebox...) on the device
//! console, as LAVA's `BootloaderCommandOverlay`, `BootloaderInterruptAction`,
//! `BootloaderCommandsAction` and the booting part of `AutoLoginAction` do.
//!
//! [`prepare_commands`] (`bootloader-overlay`) builds the substitution table from what the
//! deployment recorded ([`super::boot_commands`]) and stores the final command list;
//! [`interrupt`] (`bootloader-interrupt`) waits for the interrupt prompt and stops the
//! autoboot; [`send_commands`] (`bootloader-commands`) sends each command, waiting for the
//! bootloader prompt between them and for the method's `final-message` after the last,
//! with the method's `error-messages` constants as named failures (an InfrastructureError
//! "matched a bootloader error message: '<message>' (<index>)"); [`wait_for_kernel_start`]
//! waits for the `kernel-start-message` with the same error messages. Every wait ends at
//! the action's deadline, which is then the action's own timeout error.

use super::boot_commands::{
    BootAddresses, NbdAddress, NfsRoot, OverlayInputs, Substitutions, dispatcher_ip, substitute,
};
use super::console::{ConsoleConnection, on_console, wait_error};
use lava_connection::{Match, Patterns};
use lava_pipeline::value::{python_repr, scalar_string, truthy};
use lava_pipeline::{LavaError, LavaResult, RunContext};
use serde_yaml::Value;
use tokio::time::Instant;

/// A list constant (`error-messages`) or parameter as strings.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar_string).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => scalar_string(other).into_iter().collect(),
    }
}

/// The method's `error-messages` constant (LAVA: `missing_ok`).
pub fn error_messages(ctx: &RunContext, method: &str) -> Vec<String> {
    strings(
        ctx.job
            .device
            .optional_constant("error-messages", Some(method))
            .ok()
            .flatten(),
    )
}

/// The method's `final-message` constant, if any.
pub fn final_message(ctx: &RunContext, method: &str) -> Option<String> {
    ctx.job
        .device
        .optional_constant("final-message", Some(method))
        .ok()
        .flatten()
        .and_then(scalar_string)
        .filter(|m| !m.is_empty())
}

fn data_string(ctx: &RunContext, action: &str, label: &str, key: &str) -> Option<String> {
    ctx.get_data(action, label, key)
        .and_then(scalar_string)
        .filter(|s| !s.is_empty())
}

/// What `bootloader-overlay` reads from the namespace data, the device and the
/// dispatcher configuration.
/// No dispatcher address configured and no default route: LAVA's InfrastructureError.
pub fn overlay_inputs(
    ctx: &RunContext,
    method: &str,
    lava_mac: Option<String>,
) -> LavaResult<OverlayInputs> {
    let dispatcher = ctx.job.parameters.get("dispatcher");
    let server_ip = dispatcher_ip(dispatcher, None)
        .ok_or_else(|| LavaError::infrastructure("Unable to find dispatcher 'default' gateway"))?;
    let bootcommand = data_string(ctx, "uboot-prepare-kernel", "bootcommand", "bootcommand");
    let device_params = ctx.job.device.lookup(&["parameters"]);
    let add_header = ctx
        .job
        .device
        .lookup(&["actions", "deploy", "parameters", "add_header"])
        .and_then(scalar_string);
    let has = |action: &str, label: &str, key: &str| {
        ctx.get_data(action, label, key)
            .is_some_and(|v| truthy(Some(v)))
    };
    let nfs = if has("download-action", "file", "nfsrootfs") {
        Some(NfsRoot::Extracted {
            directory: data_string(ctx, "extract-rootfs", "file", "nfsroot"),
        })
    } else {
        data_string(ctx, "persistent-nfs-overlay", "nfs_address", "nfsroot").map(|address| {
            NfsRoot::Persistent {
                address,
                server: data_string(ctx, "persistent-nfs-overlay", "nfs_address", "serverip"),
            }
        })
    };
    // An `nbd` deployment's initrd is the ramdisk the commands load (`{RAMDISK}`).
    let ramdisk = if has("nbd-deploy", "nbd", "initrd") {
        data_string(ctx, "download-action", "file", "initrd")
    } else {
        data_string(ctx, "compress-ramdisk", "file", "ramdisk")
    };
    let nbd = ctx.meta().parameters.contains_key("lava-xnbd").then(|| {
        let value =
            |key: &str| data_string(ctx, "nbd-deploy", "nbd", key).unwrap_or_else(|| "None".into());
        NbdAddress {
            ip: value("nbd_server_ip"),
            port: value("nbd_server_port"),
        }
    });
    Ok(OverlayInputs {
        server_ip,
        preseed_config: data_string(ctx, "download-action", "file", "preseed"),
        preseed_local: data_string(ctx, "compress-ramdisk", "file", "preseed_local"),
        dtb: data_string(ctx, "download-action", "file", "dtb"),
        ramdisk,
        kernel: data_string(ctx, "download-action", "file", "kernel"),
        prepared_kernel: data_string(ctx, "prepare-kernel", "file", "kernel"),
        lava_mac,
        tee: data_string(ctx, "download-action", "file", "tee"),
        boot_addresses: bootcommand
            .as_deref()
            .map(|command| BootAddresses::from_device_parameters(command, device_params)),
        has_ramdisk: has("tftp-deploy", "tftp", "ramdisk")
            || has("download-action", "file", "ramdisk")
            || has("download-action", "file", "initrd"),
        ramdisk_has_uboot_header: method != "u-boot" || add_header.as_deref() == Some("u-boot"),
        has_initrd: has("download-action", "file", "initrd"),
        has_tee: has("download-action", "file", "tee"),
        nfs,
        nbd,
        root_uuid: data_string(ctx, "bootloader-from-media", "uuid", "root"),
        root_part: data_string(ctx, "bootloader-from-media", "uuid", "boot_part"),
    })
}

/// `bootloader-overlay`: substitute the job's data into `commands` for boot method
/// `method`, store the table (`bootloader-overlay/<method>/substitutions`) and the
/// commands (`bootloader-overlay/<method>/commands`), log both as LAVA does.
pub fn prepare_commands(
    ctx: &mut RunContext,
    method: &str,
    commands: &[String],
    lava_mac: Option<String>,
) -> LavaResult<Vec<String>> {
    let inputs = overlay_inputs(ctx, method, lava_mac)?;
    if inputs.boot_addresses.is_none() && ctx.meta().parameters.contains_key("type") {
        return Err(LavaError::job("Kernel image type can't be determined"));
    }
    if let Some(kernel) = &inputs.prepared_kernel {
        ctx.logger
            .info(format!("Using kernel file from prepare-kernel: {kernel}"));
    }
    let table = Substitutions::from_inputs(&inputs);
    if let Some(addresses) = &inputs.boot_addresses {
        let value = |k: &str| table.get(k).map(Value::from).unwrap_or(Value::Null);
        ctx.set_result("kernel_addr", value("{KERNEL_ADDR}"));
        ctx.set_result("dtb_addr", value("{DTB_ADDR}"));
        ctx.set_result("ramdisk_addr", value("{RAMDISK_ADDR}"));
        ctx.set_result(
            "tee_addr",
            addresses
                .tee
                .clone()
                .map(Value::from)
                .unwrap_or(Value::Null),
        );
    }
    ctx.set_data(
        "bootloader-overlay",
        method,
        "substitutions",
        table.to_value(),
    );
    let parsed = substitute(commands, &table);
    ctx.set_data(
        "bootloader-overlay",
        method,
        "commands",
        Value::Sequence(parsed.iter().map(|c| Value::from(c.as_str())).collect()),
    );
    ctx.logger.debug("substitutions:");
    for line in table.log_lines() {
        ctx.logger.debug(line);
    }
    ctx.logger.info("Parsed boot commands:");
    for command in &parsed {
        ctx.logger.info(format!("- {command}"));
    }
    Ok(parsed)
}

/// Logs LAVA's "Wait for prompt" line and waits for one of `patterns` until `deadline`.
async fn wait_logged(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    patterns: &[String],
    deadline: Instant,
) -> LavaResult<Match> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    ctx.logger.debug(format!(
        "{}: Wait for prompt {} (timeout {})",
        ctx.meta().name,
        python_repr(&Value::Sequence(
            patterns.iter().map(|p| Value::from(p.as_str())).collect()
        )),
        lava_pipeline::timeout::seconds_to_str(remaining.as_secs_f64())
    ));
    let compiled = Patterns::new(patterns)?;
    console
        .session()
        .wait_for(&compiled, deadline)
        .await
        .map_err(|e| wait_error(ctx, e))
}

/// LAVA's error for a bootloader error message matched at `index` of `patterns`.
fn bootloader_error(patterns: &[String], index: usize) -> LavaError {
    LavaError::infrastructure(format!(
        "matched a bootloader error message: '{}' ({index})",
        patterns[index]
    ))
}

/// What `bootloader-interrupt` does, from its validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Interrupt {
    /// The bootloader prompt (`bootloader_prompt`).
    pub bootloader_prompt: String,
    /// The text announcing the interrupt window.
    pub interrupt_prompt: String,
    /// Interrupt at all (`needs_interrupt`), else only wait for the bootloader prompt.
    pub needs_interrupt: bool,
    /// Send the interrupt character with a newline (`interrupt-newline`).
    pub interrupt_newline: bool,
    /// The interrupt character(s) (`interrupt_char` / `interrupt-character`).
    pub interrupt_char: String,
    /// Control characters sent instead (`interrupt_ctrl_list`), e.g. `c` for Ctrl-C.
    pub control_chars: Vec<String>,
}

/// `bootloader-interrupt`: wait for the interrupt prompt then send the control characters
/// or the interrupt character; without `needs_interrupt`, wait for the bootloader prompt
/// and record `interrupt/interrupt/at_bootloader_prompt`.
pub async fn interrupt(ctx: &mut RunContext, settings: &Interrupt) -> LavaResult<()> {
    on_console!(ctx, console => interrupt_inner(ctx, console, settings))
}

async fn interrupt_inner(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    settings: &Interrupt,
) -> LavaResult<()> {
    let deadline = ctx.deadline();
    if !settings.needs_interrupt {
        ctx.logger
            .info("Not interrupting bootloader, waiting for bootloader prompt");
        wait_logged(
            ctx,
            console,
            std::slice::from_ref(&settings.bootloader_prompt),
            deadline,
        )
        .await?;
        ctx.set_data("interrupt", "interrupt", "at_bootloader_prompt", true);
        return Ok(());
    }
    wait_logged(
        ctx,
        console,
        std::slice::from_ref(&settings.interrupt_prompt),
        deadline,
    )
    .await?;
    if !settings.control_chars.is_empty() {
        for key in &settings.control_chars {
            let Some(key) = key.chars().next() else {
                continue;
            };
            console.session().send_control(key).await?;
        }
    } else if settings.interrupt_newline {
        console.session().sendline(&settings.interrupt_char).await?;
    } else {
        console.session().send(&settings.interrupt_char).await?;
    }
    Ok(())
}

/// What `bootloader-commands` needs besides the commands.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandsSettings {
    /// The boot method whose commands and constants are used.
    pub method: String,
    /// The bootloader prompt awaited between commands.
    pub bootloader_prompt: String,
    /// Wait for the method's `final-message` after the last command.
    pub expect_final: bool,
    /// The line separator (`\n`, or `\r\n` for UEFI shells).
    pub line_separator: String,
}

/// `bootloader-commands`: wait for the bootloader prompt (unless the interrupt already
/// saw it), send each command of `bootloader-overlay/<method>/commands` and wait for the
/// prompt (or an error message) after each, and for the final message after the last.
/// `commands` replaces the stored list (the alternate bank's single command).
pub async fn send_commands(
    ctx: &mut RunContext,
    settings: &CommandsSettings,
    commands: Option<Vec<String>>,
) -> LavaResult<()> {
    let commands = match commands {
        Some(list) => list,
        None => strings(ctx.get_data("bootloader-overlay", &settings.method, "commands")),
    };
    let errors = error_messages(ctx, &settings.method);
    let final_message = final_message(ctx, &settings.method);
    on_console!(ctx, console => commands_inner(ctx, console, settings, &commands, &errors, final_message.as_deref()))
}

async fn commands_inner(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    settings: &CommandsSettings,
    commands: &[String],
    errors: &[String],
    final_message: Option<&str>,
) -> LavaResult<()> {
    console.session().set_linesep(&settings.line_separator);
    let deadline = ctx.deadline();
    let at_prompt = ctx
        .get_data("interrupt", "interrupt", "at_bootloader_prompt")
        .is_some_and(|v| truthy(Some(v)));
    if !at_prompt {
        wait_logged(
            ctx,
            console,
            std::slice::from_ref(&settings.bootloader_prompt),
            deadline,
        )
        .await?;
    }
    let mut prompts = vec![settings.bootloader_prompt.clone()];
    prompts.extend(errors.iter().cloned());
    for (index, line) in commands.iter().enumerate() {
        console.session().sendline(line).await?;
        if index + 1 == commands.len() {
            match final_message {
                Some(message) if settings.expect_final => {
                    prompts = vec![message.to_string()];
                    prompts.extend(errors.iter().cloned());
                }
                _ => break,
            }
        }
        let found = wait_logged(ctx, console, &prompts, deadline).await?;
        if found.index != 0 {
            return Err(bootloader_error(&prompts, found.index));
        }
    }
    Ok(())
}

/// The booting part of `auto-login-action`: wait for the kernel start message (the
/// block's `parameters.kernel-start-message`, else the device constant; the method's
/// deprecated `boot_message` instead when given) or one of the boot method's
/// `error-messages`. Nothing to wait for without a kernel start message.
pub async fn wait_for_kernel_start(
    ctx: &mut RunContext,
    method: &str,
    boot_message: Option<String>,
) -> LavaResult<()> {
    let message = ctx
        .meta()
        .param("parameters")
        .and_then(|p| p.get("kernel-start-message"))
        .and_then(scalar_string)
        .or_else(|| {
            ctx.job
                .device
                .optional_constant("kernel-start-message", None)
                .ok()
                .flatten()
                .and_then(scalar_string)
        })
        .filter(|m| !m.is_empty());
    let Some(message) = message else {
        return Ok(());
    };
    let mut patterns = vec![boot_message.unwrap_or(message)];
    patterns.extend(error_messages(ctx, method));
    on_console!(ctx, console => async {
        let deadline = ctx.deadline();
        let found = wait_logged(ctx, console, &patterns, deadline).await?;
        if found.index != 0 {
            return Err(bootloader_error(&patterns, found.index));
        }
        Ok(())
    })
}

/// LAVA's `REBOOT_COMMAND_LIST`: the soft reboot commands when neither the job nor the
/// device gives any.
pub const REBOOT_COMMAND_LIST: [&str; 3] = ["reboot", "reboot -n", "reboot -nf"];

/// `send-reboot-commands`: send the block's `soft_reboot` commands (else the device's
/// `commands.soft_reboot`, else [`REBOOT_COMMAND_LIST`]) on the console and wait for the
/// shutdown message (block `parameters.shutdown-message`, else the device constant).
pub async fn soft_reboot(ctx: &mut RunContext) -> LavaResult<()> {
    let commands = match ctx.meta().param("soft_reboot") {
        Some(value) => strings(Some(value)),
        None => {
            let device = ctx.job.device.soft_reboot_command();
            if device.is_empty() {
                ctx.logger
                    .warning("No soft reboot command defined in the test job. Using defaults.");
                REBOOT_COMMAND_LIST.iter().map(|c| c.to_string()).collect()
            } else {
                device
            }
        }
    };
    let message = ctx
        .meta()
        .param("parameters")
        .and_then(|p| p.get("shutdown-message"))
        .and_then(scalar_string)
        .map(Ok)
        .unwrap_or_else(|| {
            ctx.job
                .device
                .get_constant("shutdown-message", None)
                .map(|v| scalar_string(v).unwrap_or_default())
        })?;
    on_console!(ctx, console => async {
        for command in &commands {
            console.session().sendline(command).await?;
        }
        let deadline = ctx.deadline();
        wait_logged(ctx, console, std::slice::from_ref(&message), deadline).await?;
        Ok::<(), LavaError>(())
    })?;
    ctx.set_result(
        "commands",
        Value::Sequence(commands.iter().map(|c| Value::from(c.as_str())).collect()),
    );
    Ok(())
}
