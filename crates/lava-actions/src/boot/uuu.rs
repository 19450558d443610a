//! The `uuu` boot: boot the board in USB serial download mode (corrupting the boot
//! media from U-Boot when needed) and run NXP's `uuu` (and `bcu`) commands.

use crate::boot::bootloader::BootBootloaderAction;
use crate::common::bootloader::BootloaderCommandOverlay;
use crate::common::power::{ConnectDevice, DisconnectDevice, PowerOff, ResetDevice, require_tool};
use lava_pipeline::BlockLookups;
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Declared, Device, LavaError, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, action_identity, async_trait,
};
use regex::Regex;
use serde_yaml::{Mapping, Value};
use std::sync::LazyLock;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("uuu", |_| Box::new(UUUBootRetryAction))
            .method("uuu")
            // LAVA raises a ConfigurationError for the next three; a strategy can only
            // decline, so they are reported as the reason.
            .param("commands", "commands not specified in boot parameters")
            .check(|device, _| {
                if !truthy(option(device, "usb_otg_path"))
                    && !truthy(option(device, "usb_otg_path_command"))
                {
                    return Err("'uuu_usb_otg_path' or 'uuu_usb_otg_path_command' not defined in device definition".into());
                }
                if option(device, "corrupt_boot_media_command").is_none() {
                    return Err("uuu_corrupt_boot_media_command not defined in device definition".into());
                }
                Ok(())
            })
            .device_method_with("u-boot", "\"uuu\" was not in the device configuration boot methods"),
    );
}

/// `actions.boot.methods.uuu.options`.
fn uuu_options(device: &Device) -> Option<&Mapping> {
    device
        .boot_method("uuu")
        .and_then(|v| v.get("options"))
        .and_then(Value::as_mapping)
}

fn option<'d>(device: &'d Device, key: &str) -> Option<&'d Value> {
    uuu_options(device)
        .and_then(|o| o.get(key))
        .filter(|v| !v.is_null())
}

/// The U-Boot prompt of the device (`actions.boot.methods.u-boot.parameters`).
fn uboot_prompt(device: &Device) -> Option<Value> {
    device
        .boot_method_params("u-boot")
        .and_then(|v| v.get("bootloader_prompt"))
        .cloned()
}

/// The block parameters as a `bootloader` boot through U-Boot with these commands.
fn as_uboot_boot(params: &Mapping, commands: Vec<String>, prompt: Option<Value>) -> Mapping {
    let mut out = params.clone();
    out.insert("method".into(), "bootloader".into());
    out.insert("bootloader".into(), "u-boot".into());
    out.insert(
        "commands".into(),
        Value::Sequence(commands.into_iter().map(Value::String).collect()),
    );
    out.insert(
        "prompts".into(),
        Value::Sequence(vec![prompt.unwrap_or(Value::Null)]),
    );
    out
}

/// LAVA's `setdefault("timeouts", {}).setdefault("bootloader-interrupt", {"seconds": 15})`.
fn with_interrupt_timeout(params: &mut Mapping) {
    let timeouts = params
        .entry("timeouts".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if let Value::Mapping(timeouts) = timeouts
        && !timeouts.contains_key("bootloader-interrupt")
    {
        let mut seconds = Mapping::new();
        seconds.insert("seconds".into(), 15.into());
        timeouts.insert("bootloader-interrupt".into(), Value::Mapping(seconds));
    }
}

/// `uuu-boot-retry`.
#[derive(Debug, Default)]
pub struct UUUBootRetryAction;

#[async_trait]
impl Action for UUUBootRetryAction {
    action_identity!(
        "uuu-boot-retry",
        "UUUBootRetryAction",
        "wrap action to allow bootloader valid check",
        "check valid bootloader before uuu"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let mut params = (**pipeline.parameters()).clone();
        if params.flag("skip_uuu_if_bootloader_valid") {
            pipeline.add(CheckBootloaderValidAction)?;
            // LAVA's check adds its interrupt timeout to the block's own `timeouts`
            // mapping when there is one, so the uuu actions see it too.
            if params.get("timeouts").is_some_and(Value::is_mapping) {
                with_interrupt_timeout(&mut params);
            }
        }
        pipeline.add_with_params(UUUBootAction::default(), params)
    }
}

/// `check-bootloader-valid`: boot U-Boot with no commands to see if it is usable.
#[derive(Debug, Default)]
pub struct CheckBootloaderValidAction;

#[async_trait]
impl Action for CheckBootloaderValidAction {
    action_identity!(
        "check-bootloader-valid",
        "CheckBootloaderValidAction",
        "Store in 'board_valid_check' namespace_data",
        "Store in 'board_valid_check' namespace_data"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let prompt = uboot_prompt(pipeline.device());
        let mut params = as_uboot_boot(pipeline.parameters(), Vec::new(), prompt);
        with_interrupt_timeout(&mut params);
        pipeline.add_with_params(ConnectDevice::new(), params.clone())?;
        pipeline.add_with_params(
            BootloaderCommandOverlay {
                method: Some("u-boot".into()),
                commands: Some(Vec::new()),
            },
            params.clone(),
        )?;
        pipeline.add_with_params(BootBootloaderAction::default(), params.clone())?;
        pipeline.add_with_params(DisconnectDevice::new(), params)
    }
}

/// The protocols of the `commands` block (`uuu`, `bcu`, `SDPS`...).
pub fn protocols(params: &Mapping) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for command in params
        .get("commands")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        for key in command.as_mapping().into_iter().flat_map(|m| m.keys()) {
            if let Some(key) = lava_pipeline::value::scalar_string(key)
                && !out.contains(&key)
            {
                out.push(key);
            }
        }
    }
    out
}

/// Whether the first command is `bcu: reset usb ...`.
pub fn first_command_is_bcu_reset_usb(params: &Mapping) -> bool {
    let first = params
        .get("commands")
        .and_then(Value::as_sequence)
        .and_then(|s| s.first())
        .and_then(Value::as_mapping)
        .and_then(|m| m.iter().next());
    let Some((protocol, command)) = first else {
        return false;
    };
    if protocol.as_str() != Some("bcu") {
        return false;
    }
    let words: Vec<&str> = command
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .map(str::trim)
        .collect();
    words.len() >= 2 && words[0] == "reset" && words[1] == "usb"
}

static OTG_PATH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d+:\d+$").expect("valid pattern"));
static BCU_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d+-(\d+|\.)+$").expect("valid pattern"));

/// Run a device command (`*_command` settings) and return its output.
fn command_output(command: &Value) -> LavaResult<String> {
    let argv: Vec<String> = match command {
        Value::Sequence(items) => items
            .iter()
            .filter_map(lava_pipeline::value::scalar_string)
            .collect(),
        Value::String(s) => lava_python::shlex_split(s)?,
        _ => Vec::new(),
    };
    let Some((program, args)) = argv.split_first() else {
        return Err(LavaError::job("empty command"));
    };
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| LavaError::infrastructure(format!("Unable to run {program}: {e}")))?;
    if !output.status.success() {
        return Err(LavaError::infrastructure(format!(
            "Command '{}' failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The USB OTG paths `uuu -m` monitors: the device's `usb_otg_path` when every entry looks
/// like `2:112`, else the lines printed by `usb_otg_path_command`.
pub fn eval_otg_path(device: &Device) -> LavaResult<Vec<String>> {
    let raw = option(device, "usb_otg_path");
    if truthy(raw) {
        let paths: Vec<String> = match raw {
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(lava_pipeline::value::scalar_string)
                .collect(),
            Some(v) => lava_pipeline::value::scalar_string(v).into_iter().collect(),
            None => Vec::new(),
        };
        if paths.iter().all(|p| OTG_PATH.is_match(p)) {
            return Ok(paths);
        }
    }
    let Some(command) = option(device, "usb_otg_path_command") else {
        let shown = raw
            .map(lava_pipeline::value::python_repr)
            .unwrap_or_else(|| "None".into());
        return Err(LavaError::job(format!(
            "uuu_usb_otg_path {shown} does not match with uuu path pattern and 'uuu_usb_otg_path_command' not defined in device"
        )));
    };
    let output = command_output(command)?;
    let paths: Vec<String> = output.lines().map(|l| l.trim().to_string()).collect();
    if paths.iter().all(|p| OTG_PATH.is_match(p)) {
        return Ok(paths);
    }
    Err(LavaError::job(format!(
        "Unable to parse uuu_usb_otg_path from command {}",
        lava_pipeline::value::python_repr(command)
    )))
}

/// The bcu board ID: `bcu_board_id` when it looks like `2-1.3`, else the output of
/// `bcu_board_id_command`.
pub fn eval_bcu_board_id(device: &Device) -> LavaResult<String> {
    let name = option(device, "bcu_board_name").and_then(Value::as_str);
    if name == Some("") {
        return Err(LavaError::job(
            "'bcu_board_name' is not defined in device-types",
        ));
    }
    let id = option(device, "bcu_board_id").and_then(lava_pipeline::value::scalar_string);
    if let Some(id) = &id
        && BCU_ID.is_match(id)
    {
        return Ok(id.clone());
    }
    let Some(command) = option(device, "bcu_board_id_command") else {
        let shown = id.map_or_else(|| "None".to_string(), |i| lava_python::str_repr(&i));
        return Err(LavaError::job(format!(
            "bcu_board_id {shown} do not respect bcu format or 'bcu_board_id_command' not defined in device"
        )));
    };
    let found = command_output(command)?.trim().to_string();
    if BCU_ID.is_match(&found) {
        return Ok(found);
    }
    Err(LavaError::job(format!(
        "Unable to parse bcu_id from command {}",
        lava_pipeline::value::python_repr(command)
    )))
}

/// Whether uuu runs in a container (the device's `docker_image` or the block's `docker`).
fn uses_container(device: &Device, params: &Mapping) -> bool {
    truthy(option(device, "docker_image")) || params.contains_key("docker")
}

/// LAVA's `which` for the uuu tools: a missing tool is an error unless in a container.
fn find_tool(container: bool, tool: &str) -> LavaResult<String> {
    if container {
        return Ok(tool.to_string());
    }
    Ok(require_tool(tool)?.display().to_string())
}

/// `uuu`: reach serial download mode, then run the commands.
#[derive(Debug, Default)]
pub struct UUUBootAction {
    /// The board's USB OTG paths (`usb_otg_path` of the device's uuu options).
    pub usb_otg_paths: Vec<String>,
    /// Whether the block has `bcu` commands, which need `bcu_board_id`.
    pub has_bcu_commands: bool,
    /// The board id passed to `bcu`, worked out from the device's uuu options.
    pub bcu_board_id: Option<String>,
}

#[async_trait]
impl Action for UUUBootAction {
    action_identity!(
        "uuu",
        "UUUAction",
        "Boot the board using uboot and perform uuu commands",
        "Pass uuu commands"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        let params = (**pipeline.parameters()).clone();
        self.usb_otg_paths = eval_otg_path(device)?;
        let protocols = protocols(&params);
        self.has_bcu_commands = protocols.iter().any(|p| p == "bcu");
        if self.has_bcu_commands {
            self.bcu_board_id = Some(eval_bcu_board_id(device)?);
        }
        pipeline.add(DisconnectDevice::new())?;
        pipeline.add(ResetDevice::new())?;
        let only_bcu = protocols.len() == 1 && self.has_bcu_commands;
        if !(first_command_is_bcu_reset_usb(&params) || only_bcu) {
            pipeline.add(CheckSerialDownloadMode::default())?;
            pipeline.add(BootBootloaderCorruptBootMediaAction)?;
            pipeline.add(ResetDevice::new())?;
        }
        pipeline.add(ConnectDevice::new())?;
        pipeline.add(UUUCommandsAction {
            usb_otg_paths: self.usb_otg_paths.clone(),
            bcu_board_id: self.bcu_board_id.clone(),
            ..UUUCommandsAction::default()
        })?;
        pipeline.add(DisconnectDevice::new())
    }
}

/// `check-serial-availability`: try `uuu <boot image>` for 10 s to see whether the board
/// is already in serial download mode.
#[derive(Debug, Default)]
pub struct CheckSerialDownloadMode {
    /// The `uuu` binary (found on PATH, or in the job's container).
    pub uuu: String,
    /// The `timeout` binary that bounds the attempt.
    pub timeout: String,
}

#[async_trait]
impl Action for CheckSerialDownloadMode {
    action_identity!(
        "check-serial-availability",
        "CheckSerialDownloadMode",
        "Store in 'otg_availability_check' namespace_data if USB serial download mode available",
        "Store in 'otg_availability_check' namespace_data if USB serial download mode available"
    );
    fn timeout_kind(&self) -> lava_pipeline::ErrorKind {
        lava_pipeline::ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let container = uses_container(pipeline.device(), pipeline.parameters());
        self.uuu = find_tool(container, "uuu")?;
        self.timeout = find_tool(container, "timeout")?;
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `boot-corrupt-boot-media`: erase the boot media from U-Boot so the board falls back to
/// serial download mode (skipped at run time when the board is already there).
#[derive(Debug, Default)]
pub struct BootBootloaderCorruptBootMediaAction;

#[async_trait]
impl Action for BootBootloaderCorruptBootMediaAction {
    action_identity!(
        "boot-corrupt-boot-media",
        "BootBootloaderCorruptBootMediaAction",
        "boot using 'bootloader' method and corrupt boot media",
        "boot bootloader"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        let power_off = truthy(option(device, "power_off_before_corrupt_boot_media"));
        let commands = crate::common::command_list(option(device, "corrupt_boot_media_command"));
        let prompt = uboot_prompt(device);
        let mut params = as_uboot_boot(pipeline.parameters(), commands.clone(), prompt.clone());
        // The erase must finish before the power cycle: wait for the prompt again.
        let mut final_message = Mapping::new();
        final_message.insert(
            "bootloader-final-message".into(),
            prompt.unwrap_or(Value::Null),
        );
        params.insert("parameters".into(), Value::Mapping(final_message));
        if power_off {
            pipeline.add_with_params(PowerOff::new(), params.clone())?;
        }
        pipeline.add_with_params(ConnectDevice::new(), params.clone())?;
        pipeline.add_with_params(
            BootloaderCommandOverlay {
                method: Some("u-boot".into()),
                commands: Some(commands),
            },
            params.clone(),
        )?;
        pipeline.add_with_params(BootBootloaderAction { expect_final: true }, params.clone())?;
        pipeline.add_with_params(DisconnectDevice::new(), params)
    }
}

/// `uuu-boot`: run each `uuu`/`bcu` command of the block.
#[derive(Debug, Default)]
pub struct UUUCommandsAction {
    /// The `uuu` binary (found on PATH, or in the job's container).
    pub uuu: String,
    /// The bcu binary, when the block has `bcu` commands.
    pub bcu: Option<String>,
    /// The board's USB OTG paths (`usb_otg_path` of the device's uuu options).
    pub usb_otg_paths: Vec<String>,
    /// The board id passed to `bcu`, worked out from the device's uuu options.
    pub bcu_board_id: Option<String>,
    /// `(protocol, command)` in job order.
    pub commands: Vec<(String, String)>,
}

#[async_trait]
impl Action for UUUCommandsAction {
    action_identity!(
        "uuu-boot",
        "UUUBootAction",
        "interactive uuu action",
        "uuu commands"
    );
    fn timeout_kind(&self) -> lava_pipeline::ErrorKind {
        lava_pipeline::ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let params = pipeline.params();
        let container = uses_container(pipeline.device(), &params);
        self.uuu = find_tool(container, "uuu")?;
        if self.bcu_board_id.is_some() {
            self.bcu = Some(find_tool(container, "bcu")?);
        }
        self.commands = params
            .get("commands")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(Value::as_mapping)
            .flat_map(|m| m.iter())
            .map(|(k, v)| {
                (
                    lava_pipeline::value::scalar_string(k).unwrap_or_default(),
                    lava_pipeline::value::scalar_string(v).unwrap_or_default(),
                )
            })
            .collect();
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(y: &str) -> Mapping {
        serde_yaml::from_str(y).unwrap()
    }

    #[test]
    fn bcu_reset_usb_detection() {
        assert!(first_command_is_bcu_reset_usb(&params(
            "commands: [{bcu: 'reset usb -keep'}, {uuu: '-b sd {boot}'}]"
        )));
        assert!(!first_command_is_bcu_reset_usb(&params(
            "commands: [{bcu: 'reset sd'}]"
        )));
        assert!(!first_command_is_bcu_reset_usb(&params(
            "commands: [{uuu: 'reset usb'}]"
        )));
    }

    #[test]
    fn protocols_are_unique_in_order() {
        assert_eq!(
            protocols(&params("commands: [{uuu: a}, {bcu: b}, {uuu: c}]")),
            ["uuu", "bcu"]
        );
    }

    #[test]
    fn otg_paths() {
        let device = Device::from_yaml(
            "actions: {boot: {methods: {uuu: {options: {usb_otg_path: '2:143'}}}}}",
            None,
        )
        .unwrap();
        assert_eq!(eval_otg_path(&device).unwrap(), ["2:143"]);
        let device = Device::from_yaml(
            "actions: {boot: {methods: {uuu: {options: {usb_otg_path: ['1:2', 'x']}}}}}",
            None,
        )
        .unwrap();
        let error = eval_otg_path(&device).unwrap_err();
        assert!(
            error.message.contains("does not match"),
            "{}",
            error.message
        );
        let device = Device::from_yaml(
            "actions: {boot: {methods: {uuu: {options: {usb_otg_path: null, usb_otg_path_command: [echo, '3:4']}}}}}",
            None,
        )
        .unwrap();
        assert_eq!(eval_otg_path(&device).unwrap(), ["3:4"]);
    }

    #[test]
    fn bcu_board_ids() {
        let device = Device::from_yaml(
            "actions: {boot: {methods: {uuu: {options: {bcu_board_name: imx8, bcu_board_id: '2-1.3'}}}}}",
            None,
        )
        .unwrap();
        assert_eq!(eval_bcu_board_id(&device).unwrap(), "2-1.3");
        let device = Device::from_yaml(
            "actions: {boot: {methods: {uuu: {options: {bcu_board_name: '', bcu_board_id: '2-1'}}}}}",
            None,
        )
        .unwrap();
        assert!(eval_bcu_board_id(&device).is_err());
    }

    #[test]
    fn interrupt_timeout_is_a_default() {
        let mut p = params("timeouts: {bootloader-interrupt: {seconds: 5}}");
        with_interrupt_timeout(&mut p);
        assert_eq!(
            p.get("timeouts")
                .unwrap()
                .get("bootloader-interrupt")
                .unwrap()
                .get("seconds"),
            Some(&Value::from(5))
        );
        let mut p = params("{}");
        with_interrupt_timeout(&mut p);
        assert_eq!(
            p.get("timeouts")
                .unwrap()
                .get("bootloader-interrupt")
                .unwrap()
                .get("seconds"),
            Some(&Value::from(15))
        );
    }

    fn names(device: &str, job: &str) -> Vec<String> {
        let device = Device::from_yaml(device, None).unwrap();
        let (_job, pipeline) = lava_pipeline::JobParser::new(&crate::registry(), &crate::FIXED)
            .parse(job, device, &lava_pipeline::ParseOptions::default())
            .unwrap();
        pipeline
            .walk()
            .into_iter()
            .filter(|n| n.meta.level.starts_with("1."))
            .map(|n| n.meta.name.clone())
            .collect()
    }

    // A containerised uuu needs no host tools at parse time.
    const DEVICE: &str = "
actions:
  deploy: {methods: {}}
  boot:
    connections: {serial: null}
    methods:
      u-boot: {parameters: {bootloader_prompt: '=>'}}
      uuu:
        options:
          usb_otg_path: '2:1'
          corrupt_boot_media_command: mmc erase 0 0x400
          power_off_before_corrupt_boot_media: false
          docker_image: uuu-image
          remote_options: ''
          bcu_board_name: imx8mpevk
          bcu_board_id: '2-1.3'
";

    fn job(commands: &str) -> String {
        format!(
            "job_name: t\ntimeouts: {{job: {{minutes: 10}}}}\nvisibility: public\nactions:\n- boot:\n    method: uuu\n    commands: {commands}\n"
        )
    }

    #[test]
    fn bcu_only_commands_skip_the_serial_download_check() {
        let tree = names(DEVICE, &job("[{bcu: 'reset usb'}]"));
        assert_eq!(
            tree,
            [
                "uuu",
                "disconnect-device",
                "reset-device",
                "send-reboot-commands",
                "connect-device",
                "uuu-boot",
                "disconnect-device",
            ]
        );
        let tree = names(DEVICE, &job("[{uuu: '-b sd {boot}'}]"));
        assert!(
            tree.contains(&"check-serial-availability".to_string()),
            "{tree:?}"
        );
        assert!(
            tree.contains(&"boot-corrupt-boot-media".to_string()),
            "{tree:?}"
        );
    }
}
