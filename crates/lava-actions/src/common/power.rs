//! Power and connection actions: connect to the console, reset, power on/off, the
//! pre-power and pre-OS hooks, reconnect and read feedback from other namespaces.

use super::run_host_commands;
use lava_pipeline::device::CommandList;
use lava_pipeline::timeout::deadline_in;
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, Device, ErrorKind, LavaError, LavaResult, Pipeline, PipelineBuilder, RunContext,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;
use std::time::Duration;

/// Connection tags LAVA knows how to disconnect.
pub const RECOGNIZED_TAGS: [&str; 3] = ["telnet", "ssh", "shell"];

/// Whether `program` is an executable file in `$PATH` (or an executable path).
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let path = std::path::PathBuf::from(program);
        return executable(&path).then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// LAVA's `which`: an InfrastructureError when the tool is missing.
pub fn require_tool(program: &str) -> LavaResult<std::path::PathBuf> {
    which(program).ok_or_else(|| {
        LavaError::infrastructure(format!("Cannot find command '{program}' in $PATH"))
    })
}

/// Waits (blocking) for `child` to exit, at most `timeout`; past it, or when its status
/// cannot be read, kills and reaps it and returns `None`. Polls from every millisecond
/// (a quick tool is not kept waiting) to every 50 ms.
pub fn wait_bounded(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// The console command of the device: the primary (or named) connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionCommand {
    /// The command line to spawn.
    pub command: String,
    /// The `commands.connections` entry used, when not the deprecated `connect`.
    pub hardware: Option<String>,
    /// Tags of that entry.
    pub tags: Vec<String>,
}

/// Resolve the connection command as LAVA's `ConnectDevice.validate` does, pushing its
/// errors. `primary` false with `hardware` selects a secondary console.
pub fn resolve_connection(
    device: &Device,
    primary: bool,
    hardware: Option<&str>,
    errors: &mut Vec<String>,
) -> LavaResult<Option<ConnectionCommand>> {
    let Some(commands) = device.lookup(&["commands"]) else {
        return Ok(None);
    };
    let has = |k: &str| commands.get(k).is_some();
    if !has("connections") && has("connect") && has("must_use_connection") {
        errors.push("Unable to connect to shell - missing connections block.".into());
        return Ok(None);
    }
    let serial_ok = device.actions.boot.connections.contains_key("serial");
    if !serial_ok {
        errors.push("Device not configured to support serial connection.".into());
    }
    let mut found = ConnectionCommand::default();
    if let Some(connect) = commands.get("connect") {
        if primary {
            found.command = connect.as_str().map(str::to_string).ok_or_else(|| {
                LavaError::configuration("Invalid connection command: should be a string")
            })?;
        } else {
            errors.push("Device configuration retains deprecated connect command.".into());
        }
    } else if let Some(connections) = commands.get("connections").and_then(Value::as_mapping) {
        let mut matched = false;
        let mut chosen: Option<String> = hardware.map(str::to_string);
        for (name, value) in connections {
            let name = name.as_str().unwrap_or_default();
            if value.get("connect").is_none() {
                errors.push("Misconfigured connection commands".into());
                return Ok(None);
            }
            let tags: Vec<String> = value
                .get("tags")
                .and_then(Value::as_sequence)
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let is_primary = tags.iter().any(|t| t == "primary");
            if primary {
                if is_primary {
                    chosen = Some(name.to_string());
                    found.tags = tags;
                    break;
                }
            } else if value.get("tags").is_some() {
                if is_primary {
                    continue;
                }
                if Some(name) == hardware {
                    matched = true;
                    found.tags = tags;
                    break;
                }
            } else {
                matched = true;
                found.tags = tags;
                break;
            }
        }
        if primary && chosen.is_none() {
            errors.push("Unable to identify primary connection command.".into());
        }
        if !primary && !matched {
            errors.push(format!(
                "Unable to identify connection command hardware. {}",
                hardware.unwrap_or("None")
            ));
        }
        let command = chosen
            .as_deref()
            .and_then(|h| connections.get(h))
            .and_then(|v| v.get("connect"));
        match command {
            Some(Value::String(s)) => found.command = s.clone(),
            Some(_) => {
                return Err(LavaError::configuration(
                    "Invalid connection command: should be a string",
                ));
            }
            None => {
                return Err(LavaError::configuration(format!(
                    "Unable to identify connection command hardware. {}",
                    chosen.as_deref().unwrap_or("None")
                )));
            }
        }
        found.hardware = chosen;
    }
    let exe = found.command.split(' ').next().unwrap_or_default();
    require_tool(exe)?;
    Ok(Some(found))
}

/// `connect-device`: spawn the console command of the device (primary connection).
#[derive(Debug, Default)]
pub struct ConnectDevice;

impl ConnectDevice {
    /// Creates the `connect-device` action.
    pub fn new() -> Self {
        ConnectDevice
    }
}

#[async_trait]
impl Action for ConnectDevice {
    action_identity!(
        "connect-device",
        "ConnectDevice",
        "use the configured command to connect serial to the device",
        "run connection command"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        let result = resolve_connection(&ctx.job.device, true, None, &mut errors);
        ctx.add_errors(errors);
        result.map(|_| ())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let command = crate::runtime::console::device_connect_command(ctx)?;
        crate::runtime::console::connect_device(ctx, &command).await
    }
}

/// `disconnect-device`: close the console connection of the namespace.
#[derive(Debug, Default)]
pub struct DisconnectDevice;

impl DisconnectDevice {
    /// Creates the `disconnect-device` action.
    pub fn new() -> Self {
        DisconnectDevice
    }
}

#[async_trait]
impl Action for DisconnectDevice {
    action_identity!(
        "disconnect-device",
        "DisconnectDevice",
        "disconnect from console",
        "disconnect from console"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        let device = &ctx.job.device;
        let result = resolve_connection(device, true, None, &mut errors);
        if let Some(connections) = device
            .lookup(&["commands", "connections"])
            .and_then(Value::as_mapping)
        {
            let knows_how = connections.values().any(|c| {
                let tags: Vec<&str> = c
                    .get("tags")
                    .and_then(Value::as_sequence)
                    .map(|t| t.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                tags.contains(&"primary") && tags.iter().any(|t| RECOGNIZED_TAGS.contains(t))
            });
            if !knows_how {
                errors.push(format!(
                    "LAVA does not know how to disconnect: ensure that primary connection has one of the following tags: {}",
                    lava_pipeline::value::python_repr(&Value::Sequence(
                        RECOGNIZED_TAGS.iter().map(|t| Value::from(*t)).collect()
                    ))
                ));
            }
        }
        ctx.add_errors(errors);
        result.map(|_| ())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        match ctx.take_connection() {
            Some(mut connection) => {
                ctx.logger.debug("Stopping connection");
                connection.finalise().await;
            }
            None => ctx.logger.debug("Not connected, no need to disconnect."),
        }
        Ok(())
    }
}

/// `reset-connection` (a retry action): disconnect then connect again.
#[derive(Debug, Default)]
pub struct ResetConnection;

impl ResetConnection {
    /// Creates the `reset-connection` action.
    pub fn new() -> Self {
        ResetConnection
    }
}

#[async_trait]
impl Action for ResetConnection {
    action_identity!(
        "reset-connection",
        "ResetConnection",
        "Disconnect and connect the serial",
        "Reset the connection"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(DisconnectDevice)?;
        pipeline.add(ConnectDevice)
    }
}

/// `reset-device`: a PDU power cycle when `commands.hard_reset` is set, else reboot
/// commands sent on the console.
#[derive(Debug, Default)]
pub struct ResetDevice;

impl ResetDevice {
    /// Creates the `reset-device` action.
    pub fn new() -> Self {
        ResetDevice
    }
}

#[async_trait]
impl Action for ResetDevice {
    action_identity!(
        "reset-device",
        "ResetDevice",
        "reboot or power-cycle the device",
        "reboot the device"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        if pipeline.device().has_command("hard_reset") {
            pipeline.add(PDUReboot)
        } else {
            pipeline.add(SendRebootCommands)
        }
    }
}

/// `send-reboot-commands`: reboot from the shell (`soft_reboot` or the device's commands).
#[derive(Debug, Default)]
pub struct SendRebootCommands;

#[async_trait]
impl Action for SendRebootCommands {
    action_identity!(
        "send-reboot-commands",
        "SendRebootCommands",
        "Issue a reboot command on the device",
        "Issue a reboot command on the device"
    );
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::bootloader::soft_reboot(ctx).await
    }
}

/// `pdu-reboot`: run `commands.hard_reset` on the worker.
#[derive(Debug, Default)]
pub struct PDUReboot;

#[async_trait]
impl Action for PDUReboot {
    action_identity!(
        "pdu-reboot",
        "PDUReboot",
        "issue commands to a PDU to power cycle a device",
        "hard reboot using PDU"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let commands = ctx.job.device.command_vec("hard_reset");
        if commands.is_empty() {
            return Err(LavaError::infrastructure(
                "Hard reset required but not defined.",
            ));
        }
        run_host_commands(ctx, &commands, ErrorKind::Infrastructure).await?;
        ctx.set_result("status", "success");
        Ok(())
    }
}

/// Run a device command named in `commands`, as the power actions do: an empty string
/// only warns, an absent one does nothing.
/// A command written as the empty string: LAVA's way to say a device cannot do it (only a
/// warning), unlike an absent command.
fn is_empty_string(command: Option<&CommandList>) -> bool {
    matches!(command, Some(CommandList::One(text)) if text.is_empty())
}

async fn run_named(ctx: &mut RunContext, name: &str, missing: &str) -> LavaResult<bool> {
    if is_empty_string(ctx.job.device.command(name)) {
        ctx.logger.warning(missing);
        return Ok(false);
    }
    let commands = ctx.job.device.command_vec(name);
    run_host_commands(ctx, &commands, ErrorKind::Infrastructure).await?;
    Ok(!commands.is_empty())
}

/// `pre-power-command`: the device's `commands.pre_power_command`.
#[derive(Debug, Default)]
pub struct PrePower;

#[async_trait]
impl Action for PrePower {
    action_identity!(
        "pre-power-command",
        "PrePower",
        "issue pre power command",
        "send pre-power-command"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        run_named(ctx, "pre_power_command", "Pre power command does not exist").await?;
        ctx.set_result("success", "pre-power-command");
        Ok(())
    }
}

/// `pre-os-command`: the device's `commands.pre_os_command`.
#[derive(Debug, Default)]
pub struct PreOs;

#[async_trait]
impl Action for PreOs {
    action_identity!(
        "pre-os-command",
        "PreOs",
        "issue pre os command",
        "send pre-os-command"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        run_named(ctx, "pre_os_command", "Pre OS command does not exist").await?;
        ctx.set_result("success", "pre-os-command");
        Ok(())
    }
}

/// `power-on`: the pre-power command then `commands.power_on`.
#[derive(Debug, Default)]
pub struct PowerOn;

impl PowerOn {
    /// Creates the `power-on` action.
    pub fn new() -> Self {
        PowerOn
    }
}

#[async_trait]
impl Action for PowerOn {
    action_identity!(
        "power-on",
        "PowerOn",
        "supply power to device",
        "send power_on command"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let device = &ctx.job.device;
        if is_empty_string(device.command("power_on")) {
            ctx.logger.warning("Unable to power on the device");
            return Ok(());
        }
        let pre = device.command_vec("pre_power_command");
        let power = device.command_vec("power_on");
        if !pre.is_empty() {
            ctx.logger.info("Running pre power command");
            run_host_commands(ctx, &pre, ErrorKind::Infrastructure).await?;
        }
        if power.is_empty() {
            return Ok(());
        }
        run_host_commands(ctx, &power, ErrorKind::Infrastructure).await?;
        ctx.set_result("success", "power-on");
        Ok(())
    }
}

/// `power-off`: `commands.power_off` on the worker. In `finalize` it also ends the
/// devices that are processes of the worker (QEMU guests) right away, so that
/// `read-feedback` reads their last words to end of file instead of waiting out its
/// budget on a guest that would only be killed afterwards.
#[derive(Debug, Default)]
pub struct PowerOff {
    ends_device_processes: bool,
}

impl PowerOff {
    /// Creates the `power-off` action.
    pub fn new() -> Self {
        PowerOff::default()
    }

    /// The `finalize` form: also powers off devices that are local processes.
    pub fn finalizing() -> Self {
        PowerOff {
            ends_device_processes: true,
        }
    }
}

#[async_trait]
impl Action for PowerOff {
    action_identity!(
        "power-off",
        "PowerOff",
        "discontinue power to device",
        "send power_off command"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        if self.ends_device_processes {
            for (namespace, connection) in ctx.connections.iter_mut() {
                if let Some(process) = connection.power_off_device() {
                    ctx.logger.info(format!(
                        "Powering off the device of namespace '{namespace}': ending {process}"
                    ));
                }
            }
        }
        if !truthy(ctx.job.device.lookup(&["commands"])) {
            return Ok(());
        }
        let commands = ctx.job.device.command_vec("power_off");
        if self.ends_device_processes && !ctx.connections.is_empty() {
            // `read-feedback` follows: its listening window opens now, while the power-off
            // commands run, instead of after them (the same window, read in parallel).
            let until = deadline_in(feedback_budget(ctx)?);
            let mut connections = std::mem::take(&mut ctx.connections);
            let listen = async {
                for connection in connections.values_mut() {
                    connection.listen_ahead(until).await;
                }
            };
            let (powered_off, ()) = tokio::join!(
                run_host_commands(ctx, &commands, ErrorKind::Infrastructure),
                listen
            );
            ctx.connections = connections;
            powered_off?;
        } else {
            run_host_commands(ctx, &commands, ErrorKind::Infrastructure).await?;
        }
        ctx.set_result("status", "success");
        Ok(())
    }
}

/// The `timeouts: connections: read-feedback` of the job (1 s by default): how long
/// `read-feedback` listens to each connection.
fn feedback_budget(ctx: &RunContext) -> LavaResult<Duration> {
    let seconds = ctx
        .job
        .parameters
        .get("timeouts")
        .and_then(|t| lava_pipeline::value::lookup(t, &["connections", "read-feedback"]))
        .map(lava_pipeline::timeout::parse_timeout)
        .transpose()?
        .unwrap_or(1);
    Ok(Duration::from_secs(seconds))
}

/// `read-feedback`: drain pending output of the other namespaces' connections.
#[derive(Debug)]
pub struct ReadFeedback {
    /// Finalising: read until quiet, then close every connection.
    pub finalize: bool,
    /// Also read the action's own namespace.
    pub repeat: bool,
}

impl ReadFeedback {
    /// Drains the other namespaces' connections; `finalize` reads until quiet and closes them, `repeat` also reads this namespace.
    pub fn new(finalize: bool, repeat: bool) -> Self {
        ReadFeedback { finalize, repeat }
    }
}

#[async_trait]
impl Action for ReadFeedback {
    action_identity!(
        "read-feedback",
        "ReadFeedback",
        "Check for messages on all other namespaces",
        "Read from other namespaces"
    );
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let budget = feedback_budget(ctx)?;
        let own = ctx.namespace();
        let namespaces: Vec<String> = ctx.connections.keys().cloned().collect();
        for ns in namespaces {
            if ns == own && !self.repeat {
                continue;
            }
            let Some(connection) = ctx.connections.get_mut(&ns) else {
                continue;
            };
            let lines = connection.drain(budget).await;
            for line in lines {
                ctx.logger.debug(format!("[{ns}] {line}"));
            }
            if self.finalize {
                ctx.logger
                    .info(format!("Finalising connection for namespace '{ns}'"));
                if let Some(mut connection) = ctx.connections.remove(&ns) {
                    connection.finalise().await;
                }
            }
        }
        Ok(())
    }
}

/// `connect-shell`: connect to a secondary console (`commands.connections.<name>`).
#[derive(Debug)]
pub struct ConnectShell {
    /// The `commands.connections` entry (the boot block's `connection`).
    pub hardware: Option<String>,
}

impl ConnectShell {
    /// Connects to the console whose tag is `hardware`, or the primary one when `None`.
    pub fn new(hardware: Option<&str>) -> Self {
        ConnectShell {
            hardware: hardware.map(str::to_string),
        }
    }
}

#[async_trait]
impl Action for ConnectShell {
    action_identity!(
        "connect-shell",
        "ConnectShell",
        "use the configured command to connect serial to a second shell",
        "run connection command"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        let device = &ctx.job.device;
        let result = resolve_connection(device, false, self.hardware.as_deref(), &mut errors);
        if device.lookup(&["commands", "connections"]).is_none() {
            errors.push("Unable to connect to shell - missing connections block.".into());
        }
        ctx.add_errors(errors);
        result.map(|_| ())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let mut errors = Vec::new();
        let found = resolve_connection(
            &ctx.job.device,
            false,
            self.hardware.as_deref(),
            &mut errors,
        )?
        .filter(|c| !c.command.is_empty())
        .ok_or_else(|| {
            LavaError::job(
                errors
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "Unable to identify connection command".into()),
            )
        })?;
        crate::runtime::console::connect_shell(ctx, &found.command).await
    }
}
