//! Actions shared by the interactive bootloader families (u-boot, barebox, depthcharge,
//! ipxe, grub, uefi and the generic `bootloader` method): substituting job data into the
//! boot commands, interrupting the bootloader, sending the commands, locating a kernel on
//! secondary media, and the login tail every family appends after the boot.

use crate::common::env::ExportDeviceEnvironment;
use crate::common::login::{AutoLoginAction, ExpectShellSession, OverlayUnpack};
use crate::common::power::ResetDevice;
use lava_pipeline::BlockLookups;
use lava_pipeline::params::namespace;
use lava_pipeline::value::python_repr;
use lava_pipeline::{
    Action, ActionMeta, Device, ErrorKind, LavaError, LavaResult, Pipeline, PipelineBuilder,
    RunContext, Runnable, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// LAVA's `BOOTLOADER_DEFAULT_CMD_TIMEOUT`: bootloader commands may take longer than the
/// default action timeout (loading kernels over the network).
pub const BOOTLOADER_DEFAULT_CMD_TIMEOUT: u64 = 90;

/// LAVA's `BootHasMixin.has_prompts`.
pub fn has_prompts(params: &Mapping) -> bool {
    params.contains_key("prompts")
}

/// LAVA's `BootHasMixin.has_boot_finished`.
pub fn has_boot_finished(params: &Mapping) -> bool {
    params.contains_key("boot_finished")
}

/// The login tail of the bootloader families: with `prompts`, log in; when a test of the
/// namespace expects a shell, wait for it, unpack a transferred overlay and export the
/// device environment.
pub fn add_login_tail(pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
    let params = pipeline.params();
    if !has_prompts(&params) {
        return Ok(());
    }
    pipeline.add(AutoLoginAction::new().watching_kernel_start())?;
    if pipeline.job().test_has_shell(namespace(&params)) {
        pipeline.add(ExpectShellSession::new())?;
        if params.contains_key("transfer_overlay") {
            pipeline.add(OverlayUnpack::new())?;
        }
        pipeline.add(ExportDeviceEnvironment::new())?;
    }
    Ok(())
}

/// The boot commands of a bootloader boot block, as LAVA's `BootloaderCommandOverlay`
/// resolves them: the job's inline list, or the named entry of the device method.
/// Problems are pushed to `errors`.
pub fn resolve_boot_commands(
    device: &Device,
    params: &Mapping,
    method: &str,
    errors: &mut Vec<String>,
) -> Vec<Value> {
    let block_method = params.method();
    if block_method == Some("bootloader") {
        return params
            .get("commands")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
    }
    match params.get("commands") {
        Some(Value::Sequence(list)) => list.clone(),
        None => {
            errors.push("missing commands".into());
            Vec::new()
        }
        Some(name) => {
            let key = lava_pipeline::value::scalar_string(name).unwrap_or_default();
            let entry = device.boot_method(method).and_then(|m| m.get(key.as_str()));
            match entry {
                None => {
                    errors.push(format!("Command '{key}' not found in supported methods"));
                    Vec::new()
                }
                Some(entry) => match entry.get("commands") {
                    None => {
                        errors.push("No commands found in parameters".into());
                        Vec::new()
                    }
                    Some(Value::Sequence(list)) => list.clone(),
                    Some(other) => vec![other.clone()],
                },
            }
        }
    }
}

/// Whether `mac` starts with a MAC address (`aa:bb:cc:dd:ee:ff` or with `-`), any case.
pub fn is_mac_address(mac: &str) -> bool {
    let bytes = mac.as_bytes();
    if bytes.len() < 17 {
        return false;
    }
    let separator = |i: usize| bytes[i] == b':' || bytes[i] == b'-';
    (0..6).all(|group| {
        let at = group * 3;
        bytes[at].is_ascii_hexdigit()
            && bytes[at + 1].is_ascii_hexdigit()
            && (group == 5 || separator(at + 2))
    })
}

/// `bootloader-overlay`: substitute job data (addresses, file names, server IP) into the
/// boot commands of the block.
#[derive(Debug, Default, Clone)]
pub struct BootloaderCommandOverlay {
    /// The device boot method; the block `method` when unset.
    pub method: Option<String>,
    /// Commands given by the caller instead of the job or device.
    pub commands: Option<Vec<String>>,
}

impl BootloaderCommandOverlay {
    /// Creates the `bootloader-overlay` action.
    pub fn new() -> Self {
        Self::default()
    }

    /// For a boot method other than the block's (e.g. `bootloader: u-boot`).
    pub fn with_method(method: impl Into<String>) -> Self {
        BootloaderCommandOverlay {
            method: Some(method.into()),
            commands: None,
        }
    }

    /// The method this overlay substitutes for.
    pub fn method_for<'a>(&'a self, params: &'a Mapping) -> &'a str {
        self.method
            .as_deref()
            .or_else(|| params.method())
            .unwrap_or_default()
    }

    /// LAVA's validation of the overlay, shared with `depthcharge-overlay`.
    pub fn check(&self, device: &Device, params: &Mapping, errors: &mut Vec<String>) {
        let method = self.method_for(params);
        if self.commands.is_some() {
            return;
        }
        let commands = resolve_boot_commands(device, params, method, errors);
        for command in &commands {
            if !command.is_string() {
                errors.push(format!(
                    "Deploy Commands instruction is not a string: {}",
                    python_repr(command)
                ));
            }
        }
        let lava_mac = device
            .boot_method_params(method)
            .and_then(|p| p.get("lava_mac"))
            .filter(|v| lava_pipeline::value::truthy(Some(v)));
        if let Some(mac) = lava_mac {
            let text = lava_pipeline::value::scalar_string(mac).unwrap_or_default();
            if !is_mac_address(&text) {
                errors.push("lava_mac is not a valid mac address".into());
            }
        }
    }
}

#[async_trait]
impl Action for BootloaderCommandOverlay {
    action_identity!(
        "bootloader-overlay",
        "BootloaderCommandOverlay",
        "substitute job data into bootloader command list",
        "replace placeholders with job data"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        self.check(&ctx.job.device, &ctx.meta.parameters, &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    /// iPXE's boot script (`use_bootscript`) is not written yet.
    fn runnable(&self, meta: &ActionMeta) -> Runnable {
        if lava_pipeline::value::truthy(meta.param("use_bootscript")) {
            Runnable::NotYet {
                missing: Some("boot script"),
            }
        } else {
            Runnable::Yes
        }
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let params = ctx.meta().parameters.clone();
        let method = self.method_for(&params).to_string();
        let commands: Vec<String> = match &self.commands {
            Some(commands) => commands.clone(),
            None => {
                let mut errors = Vec::new();
                let list = resolve_boot_commands(&ctx.job.device, &params, &method, &mut errors);
                if let Some(error) = errors.into_iter().next() {
                    return Err(LavaError::job(error));
                }
                if matches!(params.get("commands"), Some(Value::Sequence(_)))
                    && params.method() != Some("bootloader")
                {
                    ctx.logger.warning(
                        "WARNING: Using boot commands supplied in the job definition, NOT the LAVA device configuration",
                    );
                }
                list.iter()
                    .filter_map(lava_pipeline::value::scalar_string)
                    .collect()
            }
        };
        let lava_mac = ctx
            .job
            .device
            .boot_method_params(&method)
            .and_then(|p| p.get("lava_mac"))
            .and_then(lava_pipeline::value::scalar_string)
            .filter(|mac| is_mac_address(mac));
        crate::runtime::bootloader::prepare_commands(ctx, &method, &commands, lava_mac)?;
        Ok(())
    }
}

/// `bootloader-interrupt`: wait for the interrupt prompt and stop the autoboot.
#[derive(Debug, Default, Clone)]
pub struct BootloaderInterruptAction {
    /// The device boot method; derived from the block when unset.
    pub method: Option<String>,
}

impl BootloaderInterruptAction {
    /// Creates the `bootloader-interrupt` action.
    pub fn new() -> Self {
        Self::default()
    }

    /// Interrupts the bootloader of boot method `method`.
    pub fn with_method(method: impl Into<String>) -> Self {
        BootloaderInterruptAction {
            method: Some(method.into()),
        }
    }
}

/// What `bootloader-interrupt` works with once validated.
#[derive(Debug, Clone, PartialEq)]
pub struct InterruptSettings {
    /// The boot method (e.g. `u-boot`, `grub`) whose parameters are used.
    pub method: String,
    /// The prompt that shows the interrupt worked (`bootloader_prompt`).
    pub bootloader_prompt: Option<String>,
    /// The text announcing the interrupt window (`interrupt_prompt`).
    pub interrupt_prompt: Option<Value>,
    /// Whether to interrupt at all (the method's `needs_interrupt`).
    pub needs_interrupt: bool,
    /// Send a newline after the interrupt character (`interrupt_newline`).
    pub interrupt_newline: bool,
    /// The character(s) sent to interrupt (`interrupt_char`), as written.
    pub interrupt_char: Option<Value>,
    /// Control characters sent to interrupt (`interrupt_ctrl_list`), as written.
    pub interrupt_control_chars: Option<Value>,
}

impl BootloaderInterruptAction {
    /// LAVA's validation: resolve the method and read prompts and characters from the
    /// method parameters, falling back to the device constants.
    pub fn settings(
        &self,
        device: &Device,
        params: &Mapping,
        errors: &mut Vec<String>,
    ) -> LavaResult<InterruptSettings> {
        let deployment = params.to().unwrap_or("");
        let block_method = params.method().unwrap_or("");
        let mut method = match &self.method {
            Some(m) => m.clone(),
            None => {
                let fastboot_like = |m: &str| m == "fastboot" || m == "download";
                if fastboot_like(deployment) || fastboot_like(block_method) {
                    if lava_pipeline::value::truthy(device.lookup(&["fastboot_via_uboot"])) {
                        "u-boot".to_string()
                    } else {
                        return Err(LavaError::job(
                            "Unable to interrupt the bootloader: the device does not use fastboot_via_uboot",
                        ));
                    }
                } else {
                    block_method.to_string()
                }
            }
        };
        let method_params = device.require_boot_method_params(&method)?;
        if device.connect_command()?.is_empty() {
            errors.push("Unable to connect to device %s".into());
        }
        if block_method == "grub-efi" && device.has_boot_method("grub-efi") {
            method = "grub-efi".into();
        }
        let bootloader_prompt = method_params
            .get("bootloader_prompt")
            .and_then(lava_pipeline::value::scalar_string);
        if !method_params.contains_key("bootloader_prompt") {
            errors.push("Missing bootloader prompt for device".into());
        }
        // LAVA evaluates the constant fallback first: a missing constant is a
        // ConfigurationError even when the method parameters give the value.
        let prompt_constant = device
            .get_constant("interrupt-prompt", Some(&method))?
            .clone();
        let interrupt_prompt = Some(
            method_params
                .get("interrupt_prompt")
                .cloned()
                .unwrap_or(prompt_constant),
        );
        let needs_interrupt = method_params
            .get("needs_interrupt")
            .map(|v| lava_pipeline::value::truthy(Some(v)))
            .unwrap_or(true);
        let interrupt_newline = device
            .optional_constant("interrupt-newline", Some(&method))?
            .map(|v| lava_pipeline::value::truthy(Some(v)))
            .unwrap_or(true);
        let interrupt_char = if method != "ipxe" {
            let constant = device
                .get_constant("interrupt-character", Some(&method))?
                .clone();
            Some(
                method_params
                    .get("interrupt_char")
                    .cloned()
                    .unwrap_or(constant),
            )
        } else {
            None
        };
        let control_constant = device
            .optional_constant("interrupt_ctrl_list", Some(&method))?
            .cloned();
        let interrupt_control_chars = method_params
            .get("interrupt_ctrl_list")
            .cloned()
            .or(control_constant);
        Ok(InterruptSettings {
            method,
            bootloader_prompt,
            interrupt_prompt,
            needs_interrupt,
            interrupt_newline,
            interrupt_char,
            interrupt_control_chars,
        })
    }
}

#[async_trait]
impl Action for BootloaderInterruptAction {
    action_identity!(
        "bootloader-interrupt",
        "BootloaderInterruptAction",
        "interrupt bootloader",
        "interrupt bootloader to get an interactive shell"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        let outcome = self.settings(&ctx.job.device, &ctx.meta.parameters, &mut errors);
        ctx.add_errors(errors);
        outcome.map(|_| ())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let mut errors = Vec::new();
        let settings = self.settings(&ctx.job.device, &ctx.meta().parameters, &mut errors)?;
        let text = |v: &Option<Value>| {
            v.as_ref()
                .and_then(lava_pipeline::value::scalar_string)
                .unwrap_or_default()
        };
        let control_chars = match &settings.interrupt_control_chars {
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(lava_pipeline::value::scalar_string)
                .collect(),
            _ => Vec::new(),
        };
        let interrupt = crate::runtime::bootloader::Interrupt {
            bootloader_prompt: settings.bootloader_prompt.clone().unwrap_or_default(),
            interrupt_prompt: text(&settings.interrupt_prompt),
            needs_interrupt: settings.needs_interrupt,
            interrupt_newline: settings.interrupt_newline,
            interrupt_char: text(&settings.interrupt_char),
            control_chars,
        };
        crate::runtime::bootloader::interrupt(ctx, &interrupt).await
    }
}

/// Which line separator the commands are sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineSeparator {
    /// `\n` (LAVA's `LINE_SEPARATOR`).
    #[default]
    Unix,
    /// `\r\n` for UEFI shells (LAVA's `UEFI_LINE_SEPARATOR`).
    Dos,
}

impl LineSeparator {
    /// The separator's characters.
    pub fn as_str(self) -> &'static str {
        match self {
            LineSeparator::Unix => "\n",
            LineSeparator::Dos => "\r\n",
        }
    }
}

/// LAVA's three bootloader-commands actions: the same behaviour under different names
/// and line endings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootloaderCommandsFlavour {
    /// `bootloader-commands` (`BootloaderCommandsAction`).
    #[default]
    Standard,
    /// `bootloader-commands` for UEFI shells (`UefiBootloaderCommandsAction`): DOS line
    /// endings.
    Uefi,
    /// `bootloader-commands-altbank` (`BootloaderCommandsActionAltBank`): U-Boot switched
    /// to the alternate bank (`uboot_altbank_cmd`) instead of the normal boot commands.
    AltBank,
}

impl BootloaderCommandsFlavour {
    /// What ends each command line sent.
    pub fn line_separator(self) -> LineSeparator {
        match self {
            Self::Standard | Self::AltBank => LineSeparator::Unix,
            Self::Uefi => LineSeparator::Dos,
        }
    }
}

/// `bootloader-commands` (and its UEFI and alternate-bank flavours): send the substituted
/// boot commands, waiting for the prompt between them and for the final message after the
/// last one.
#[derive(Debug, Clone)]
pub struct BootloaderCommandsAction {
    /// The boot method whose commands are sent; the job block's `method` when unset.
    pub method: Option<String>,
    /// Wait for the method's `final-message` after the last command.
    pub expect_final: bool,
    /// Which of LAVA's actions this is (name, class, line separator, commands).
    pub flavour: BootloaderCommandsFlavour,
}

impl Default for BootloaderCommandsAction {
    fn default() -> Self {
        Self::new()
    }
}

impl BootloaderCommandsAction {
    /// Creates the `bootloader-commands` action.
    pub fn new() -> Self {
        BootloaderCommandsAction {
            method: None,
            expect_final: true,
            flavour: BootloaderCommandsFlavour::Standard,
        }
    }

    /// Sends the commands of `method`, waiting for its final message when `expect_final`.
    pub fn with_method(method: impl Into<String>, expect_final: bool) -> Self {
        BootloaderCommandsAction {
            method: Some(method.into()),
            expect_final,
            ..Self::new()
        }
    }

    /// Sends the commands without waiting for a final message.
    pub fn without_final() -> Self {
        BootloaderCommandsAction {
            expect_final: false,
            ..Self::new()
        }
    }

    /// The UEFI shell variant (`UefiBootloaderCommandsAction`): DOS line endings.
    pub fn uefi() -> Self {
        BootloaderCommandsAction {
            flavour: BootloaderCommandsFlavour::Uefi,
            ..Self::new()
        }
    }

    /// `bootloader-commands-altbank`, waiting for the final message when `expect_final`.
    pub fn altbank(expect_final: bool) -> Self {
        BootloaderCommandsAction {
            expect_final,
            flavour: BootloaderCommandsFlavour::AltBank,
            ..Self::new()
        }
    }

    /// What ends each command line sent.
    pub fn line_separator(&self) -> LineSeparator {
        self.flavour.line_separator()
    }
}

/// The method an action serves: its own, else the block `method`.
fn method_of<'a>(own: &'a Option<String>, params: &'a Mapping) -> &'a str {
    own.as_deref()
        .or_else(|| params.method())
        .unwrap_or_default()
}

#[async_trait]
impl Action for BootloaderCommandsAction {
    fn name(&self) -> &str {
        match self.flavour {
            BootloaderCommandsFlavour::Standard | BootloaderCommandsFlavour::Uefi => {
                "bootloader-commands"
            }
            BootloaderCommandsFlavour::AltBank => "bootloader-commands-altbank",
        }
    }
    fn class_name(&self) -> &str {
        match self.flavour {
            BootloaderCommandsFlavour::Standard => "BootloaderCommandsAction",
            BootloaderCommandsFlavour::Uefi => "UefiBootloaderCommandsAction",
            BootloaderCommandsFlavour::AltBank => "BootloaderCommandsActionAltBank",
        }
    }
    fn description(&self) -> &str {
        match self.flavour {
            BootloaderCommandsFlavour::AltBank => "send commands to bootloader altbank",
            _ => "send commands to bootloader",
        }
    }
    fn summary(&self) -> &str {
        match self.flavour {
            BootloaderCommandsFlavour::AltBank => "interactive bootloader altbank",
            _ => "interactive bootloader",
        }
    }
    fn default_timeout(&self) -> u64 {
        BOOTLOADER_DEFAULT_CMD_TIMEOUT
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let method = method_of(&self.method, &ctx.meta.parameters);
        ctx.job
            .device
            .require_boot_method_params(method)
            .map(|_| ())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let settings =
            commands_settings(ctx, &self.method, self.expect_final, self.line_separator())?;
        // The alternate bank's one command replaces the method's boot commands.
        let commands = match self.flavour {
            BootloaderCommandsFlavour::AltBank => Some(vec![
                ctx.job
                    .device
                    .require_boot_method_params(&settings.method)?
                    .get("uboot_altbank_cmd")
                    .and_then(lava_pipeline::value::scalar_string)
                    .unwrap_or_default(),
            ]),
            BootloaderCommandsFlavour::Standard | BootloaderCommandsFlavour::Uefi => None,
        };
        crate::runtime::bootloader::send_commands(ctx, &settings, commands).await
    }
}

/// The settings of `bootloader-commands` from the device's method parameters.
fn commands_settings(
    ctx: &RunContext,
    method: &Option<String>,
    expect_final: bool,
    line_separator: LineSeparator,
) -> LavaResult<crate::runtime::bootloader::CommandsSettings> {
    let params = ctx.meta().parameters.clone();
    let method = method_of(method, &params).to_string();
    let method_params = ctx.job.device.require_boot_method_params(&method)?;
    let bootloader_prompt = method_params
        .get("bootloader_prompt")
        .and_then(lava_pipeline::value::scalar_string)
        .ok_or_else(|| LavaError::job("Missing bootloader prompt for device"))?;
    Ok(crate::runtime::bootloader::CommandsSettings {
        method,
        bootloader_prompt,
        expect_final,
        line_separator: line_separator.as_str().to_string(),
    })
}

/// The `commands` of a boot block when they name an entry of `parameters.media` of the
/// device (a boot from secondary media), else `None`.
pub fn secondary_media_commands<'p>(device: &Device, params: &'p Mapping) -> Option<&'p str> {
    let media = device.parameter("media")?.as_mapping()?;
    let commands = params.get("commands")?.as_str()?;
    media.contains_key(commands).then_some(commands)
}

/// `bootloader-from-media`: when the boot commands name secondary media, check the
/// kernel, root UUID and boot partition the commands need.
#[derive(Debug, Default, Clone)]
pub struct BootloaderSecondaryMedia;

impl BootloaderSecondaryMedia {
    /// Creates the `bootloader-from-media` action.
    pub fn new() -> Self {
        BootloaderSecondaryMedia
    }

    /// LAVA's checks, shared with `uboot-from-media`.
    pub fn check(device: &Device, params: &Mapping, errors: &mut Vec<String>) {
        if secondary_media_commands(device, params).is_none() {
            return;
        }
        if !params.contains_key("kernel") {
            errors.push("Missing kernel location".into());
        }
        if !params.contains_key("root_uuid") {
            errors.push("Missing UUID of the roofs inside the deployed image".into());
        }
        if !params.contains_key("boot_part") {
            errors.push(
                "Missing boot_part for the partition number of the boot files inside the deployed image"
                    .into(),
            );
        }
    }
}

#[async_trait]
impl Action for BootloaderSecondaryMedia {
    action_identity!(
        "bootloader-from-media",
        "BootloaderSecondaryMedia",
        "let bootloader know where to find the kernel in the image on secondary media",
        "set bootloader strings for deployed media"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        Self::check(&ctx.job.device, &ctx.meta.parameters, &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        record_secondary_media(ctx);
        Ok(())
    }
}

/// What LAVA's secondary media actions record for `bootloader-overlay` when the boot
/// commands name secondary media: the kernel, ramdisk and DTB paths inside the deployed
/// image, the root UUID and the boot partition.
pub fn record_secondary_media(ctx: &mut RunContext) {
    let params = ctx.meta().parameters.clone();
    if secondary_media_commands(&ctx.job.device, &params).is_none() {
        return;
    }
    let get = |k: &str| {
        params
            .get(k)
            .and_then(lava_pipeline::value::scalar_string)
            .unwrap_or_default()
    };
    ctx.set_data("download-action", "file", "kernel", get("kernel"));
    ctx.set_data("compress-ramdisk", "file", "ramdisk", get("ramdisk"));
    ctx.set_data("download-action", "file", "ramdisk", get("ramdisk"));
    ctx.set_data("download-action", "file", "dtb", get("dtb"));
    ctx.set_data("bootloader-from-media", "uuid", "root", get("root_uuid"));
    let boot_part = params
        .get("boot_part")
        .and_then(lava_pipeline::value::scalar_string)
        .unwrap_or_else(|| "None".into());
    ctx.set_data("bootloader-from-media", "uuid", "boot_part", boot_part);
}

/// `bootloader-retry`: reset, interrupt and command the bootloader, then log in (iPXE).
#[derive(Debug, Clone)]
pub struct BootloaderRetry {
    /// The device boot method whose parameters hold the prompt.
    pub method: String,
}

impl BootloaderRetry {
    /// Retries the bootloader steps of boot method `method`.
    pub fn new(method: impl Into<String>) -> Self {
        BootloaderRetry {
            method: method.into(),
        }
    }
}

#[async_trait]
impl Action for BootloaderRetry {
    action_identity!(
        "bootloader-retry",
        "BootloaderRetry",
        "interactive uboot retry action",
        "uboot commands with retry"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(ResetDevice::new())?;
        pipeline.add(BootloaderInterruptAction::new())?;
        pipeline.add(BootloaderCommandsAction::new())?;
        add_login_tail(pipeline)
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let params = ctx.job.device.require_boot_method_params(&self.method)?;
        if !params.contains_key("bootloader_prompt") {
            ctx.error("Missing bootloader prompt for device");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(yaml: &str) -> Device {
        Device::from_yaml(yaml, None).unwrap()
    }

    fn mapping(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn mac_addresses_match_like_lava() {
        assert!(is_mac_address("00:11:22:AA:bb:cc"));
        assert!(is_mac_address("00-11-22-aa-bb-cc"));
        assert!(is_mac_address("00:11:22:aa:bb:cc-trailing"));
        assert!(!is_mac_address("00:11:22:aa:bb"));
        assert!(!is_mac_address("0g:11:22:aa:bb:cc"));
        assert!(!is_mac_address("00.11.22.aa.bb.cc"));
    }

    #[test]
    fn connect_command_prefers_connect_then_primary() {
        let d = device("commands: {connect: telnet a 1}");
        assert_eq!(d.connect_command().unwrap(), "telnet a 1");
        let d = device(
            "commands:\n  connections:\n    uart1: {connect: telnet b 2}\n    uart0: {connect: telnet a 1, tags: [primary]}\n",
        );
        assert_eq!(d.connect_command().unwrap(), "telnet a 1");
        let d = device("commands:\n  connections:\n    uart0: {tags: [primary]}\n");
        assert_eq!(d.connect_command().unwrap(), "");
        assert!(device("hostname: x").connect_command().is_err());
    }

    #[test]
    fn boot_commands_from_device_or_job() {
        let d = device(
            "actions:\n  boot:\n    methods:\n      u-boot:\n        parameters: {lava_mac: 'zz'}\n        ramdisk:\n          commands: [a, b]\n        nocmds: {}\n",
        );
        let mut errors = Vec::new();
        let p = mapping("{method: u-boot, commands: ramdisk}");
        let cmds = resolve_boot_commands(&d, &p, "u-boot", &mut errors);
        assert_eq!(cmds.len(), 2);
        assert!(errors.is_empty());

        let p = mapping("{method: u-boot, commands: nfs}");
        resolve_boot_commands(&d, &p, "u-boot", &mut errors);
        assert_eq!(errors, ["Command 'nfs' not found in supported methods"]);

        errors.clear();
        let p = mapping("{method: u-boot, commands: nocmds}");
        resolve_boot_commands(&d, &p, "u-boot", &mut errors);
        assert_eq!(errors, ["No commands found in parameters"]);

        errors.clear();
        let p = mapping("{method: u-boot, commands: [x, 3]}");
        BootloaderCommandOverlay::new().check(&d, &p, &mut errors);
        assert_eq!(
            errors,
            [
                "Deploy Commands instruction is not a string: 3",
                "lava_mac is not a valid mac address"
            ]
        );

        errors.clear();
        let p = mapping("{method: bootloader, bootloader: u-boot}");
        let cmds = resolve_boot_commands(&d, &p, "u-boot", &mut errors);
        assert!(cmds.is_empty() && errors.is_empty());
    }

    #[test]
    fn interrupt_settings_fall_back_to_constants() {
        let d = device(
            "commands: {connect: telnet a 1}\nconstants:\n  u-boot:\n    interrupt-prompt: hit any key\n    interrupt-character: ' '\nactions:\n  boot:\n    methods:\n      u-boot:\n        parameters: {bootloader_prompt: '=>', interrupt_char: x}\n",
        );
        let p = mapping("{method: u-boot}");
        let mut errors = Vec::new();
        let s = BootloaderInterruptAction::new()
            .settings(&d, &p, &mut errors)
            .unwrap();
        assert!(errors.is_empty());
        assert_eq!(s.interrupt_prompt, Some(Value::from("hit any key")));
        assert_eq!(s.interrupt_char, Some(Value::from("x")));
        assert!(s.needs_interrupt && s.interrupt_newline);
        assert_eq!(s.bootloader_prompt.as_deref(), Some("=>"));

        // A missing constant is a configuration error even when parameters give it.
        let d = device(
            "commands: {connect: telnet a 1}\nconstants: {}\nactions:\n  boot:\n    methods:\n      u-boot:\n        parameters: {interrupt_prompt: x}\n",
        );
        let err = BootloaderInterruptAction::new()
            .settings(&d, &p, &mut errors)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Configuration);
        assert_eq!(errors, ["Missing bootloader prompt for device"]);
    }

    #[test]
    fn secondary_media_checks_only_for_media_commands() {
        let d = device("parameters:\n  media:\n    usb: {}\n");
        let mut errors = Vec::new();
        BootloaderSecondaryMedia::check(&d, &mapping("{commands: ramdisk}"), &mut errors);
        assert!(errors.is_empty());
        BootloaderSecondaryMedia::check(&d, &mapping("{commands: usb, kernel: k}"), &mut errors);
        assert_eq!(errors.len(), 2);
    }
}
