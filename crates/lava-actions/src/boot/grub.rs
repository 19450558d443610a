//! The `grub` and `grub-efi` boot methods: interrupt GRUB (through the UEFI menu for
//! grub-efi) and type the commands, or follow the device's grub `sequence`.

use crate::boot::uefi::{UEFIMenuInterrupt, UefiMenuSelector, check_uefi_menu_selector};
use crate::common::bootloader::{
    BootloaderCommandOverlay, BootloaderCommandsAction, BootloaderInterruptAction,
    BootloaderSecondaryMedia, add_login_tail, has_boot_finished, has_prompts,
};
use crate::common::env::ExportDeviceEnvironment;
use crate::common::login::{AutoLoginAction, ExpectShellSession};
use crate::common::power::{ConnectDevice, PowerOff, ResetDevice};
use lava_pipeline::BlockLookups;
use lava_pipeline::value::{scalar_string, truthy};
use lava_pipeline::{
    Action, ActionMeta, Declared, Device, LavaResult, Pipeline, PipelineBuilder, RunContext,
    Runnable, StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies: `grub` and `grub-efi` blocks, each either with a
/// device `sequence` or the interactive commands.
pub fn register(registry: &mut StrategyRegistry) {
    let grub_method = |_: &lava_pipeline::Device, params: &Mapping| {
        if is_grub_method(params) {
            Ok(())
        } else {
            Err("\"method\" was not \"grub\" or \"grub-efi\"".to_string())
        }
    };
    let has_sequence = |device: &lava_pipeline::Device| {
        device
            .boot_method("grub")
            .is_some_and(|g| g.get("sequence").is_some())
    };
    registry.register(
        Declared::boot("grub", |_| Box::new(GrubSequenceAction))
            .check(grub_method)
            .device_method("grub")
            .no_device_method(
                "grub-efi",
                "\"grub-efi\" was not in the device configuration boot methods",
            )
            .check(move |device, _| {
                if has_sequence(device) {
                    Ok(())
                } else {
                    Err("\"sequence\" not in device configuration boot methods".into())
                }
            }),
    );
    for method in ["grub", "grub-efi"] {
        registry.register(
            Declared::boot(method, |_| Box::new(GrubMainAction))
                .check(grub_method)
                .method(method)
                .check(move |device, _| {
                    if has_sequence(device) {
                        Err("\"sequence\" was in \"grub\" parameters".into())
                    } else {
                        Ok(())
                    }
                })
                .check(|device, _| {
                    if device.has_boot_method("grub") || device.has_boot_method("grub-efi") {
                        Ok(())
                    } else {
                        Err("\"grub\" or \"grub-efi\" was not in the device configuration boot methods".into())
                    }
                }),
        );
    }
}

fn is_grub_method(params: &Mapping) -> bool {
    matches!(params.method(), Some("grub" | "grub-efi"))
}

/// After the commands: log in, or wait for an installer to finish and power off.
fn add_grub_tail(pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
    let params = pipeline.params();
    if has_prompts(&params) {
        add_login_tail(pipeline)
    } else if has_boot_finished(&params) {
        pipeline.add(InstallerWait)?;
        pipeline.add(PowerOff::new())
    } else {
        Ok(())
    }
}

/// `grub-sequence-action`: the steps listed in the device's grub `sequence`.
#[derive(Debug, Default)]
pub struct GrubSequenceAction;

#[async_trait]
impl Action for GrubSequenceAction {
    action_identity!(
        "grub-sequence-action",
        "GrubSequenceAction",
        "grub boot sequence",
        "run grub boot using specified sequence of actions"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let sequence: Vec<String> = pipeline
            .device()
            .boot_method("grub")
            .and_then(|g| g.get("sequence"))
            .and_then(Value::as_sequence)
            .map(|s| s.iter().filter_map(scalar_string).collect())
            .unwrap_or_default();
        // Unknown steps are skipped (LAVA's check of them never reports anything).
        for step in sequence {
            match step.as_str() {
                "wait-fastboot-interrupt" => pipeline.add(WaitFastBootInterrupt::new("grub"))?,
                "auto-login" => pipeline.add(AutoLoginAction::new())?,
                "shell-session" => pipeline.add(ExpectShellSession::new())?,
                "export-env" => pipeline.add(ExportDeviceEnvironment::new())?,
                _ => {}
            }
        }
        add_grub_tail(pipeline)
    }
}

/// `grub-main-action`: prepare, connect, reset, interrupt (the UEFI menu first for
/// grub-efi), send the commands, then log in.
#[derive(Debug, Default)]
pub struct GrubMainAction;

#[async_trait]
impl Action for GrubMainAction {
    action_identity!(
        "grub-main-action",
        "GrubMainAction",
        "main grub boot action",
        "run grub boot from power to system"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let params = pipeline.params();
        let method = params.method().unwrap_or("");
        pipeline.add(BootloaderSecondaryMedia::new())?;
        pipeline.add(BootloaderCommandOverlay::new())?;
        pipeline.add(ConnectDevice::new())?;
        let reset_device = pipeline
            .device()
            .boot_method("grub-efi")
            .and_then(|g| g.get("reset_device"))
            .map(|v| truthy(Some(v)))
            .unwrap_or(true);
        let reset = params.flag_or("reset", true);
        if reset && ((method == "grub-efi" && reset_device) || method == "grub") {
            pipeline.add(ResetDevice::new())?;
        }
        if method == "grub-efi" {
            pipeline.add(UEFIMenuInterrupt::uefi_menu())?;
            pipeline.add(GrubMenuSelector)?;
        }
        pipeline.add(BootloaderInterruptAction::new())?;
        pipeline.add(BootloaderCommandsAction::new())?;
        add_grub_tail(pipeline)
    }
}

/// `grub-efi-menu-selector`: select the GRUB entry (`menu_options`) in the UEFI menu.
#[derive(Debug, Default)]
pub struct GrubMenuSelector;

impl GrubMenuSelector {
    /// The UEFI menu the entry is selected in (LAVA keeps the `uefi-menu` method).
    pub const METHOD: &'static str = "uefi-menu";

    /// Validation: the device's grub `menu_options` and the block's commands; one message per problem into `errors`.
    pub fn check(device: &Device, params: &Mapping, errors: &mut Vec<String>) {
        let Some(method) = device.boot_method(Self::METHOD) else {
            errors.push(format!("No {} in device boot methods", Self::METHOD));
            return;
        };
        let Some(options) = method.get("menu_options") else {
            errors.push(format!(
                "Missing entry for menu item to use for {}",
                Self::METHOD
            ));
            return;
        };
        check_uefi_menu_selector(
            device,
            params,
            Self::METHOD,
            Some(options.clone()),
            None,
            errors,
        );
    }
}

#[async_trait]
impl Action for GrubMenuSelector {
    action_identity!(
        "grub-efi-menu-selector",
        "GrubMenuSelector",
        "select specified grub-efi menu items",
        "select grub options in the efi menu"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        Self::check(&ctx.job.device, &ctx.meta.parameters, &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        UefiMenuSelector::run_grub(ctx).await
    }
}

/// `installer-wait`: no shell expected; wait for the installer's `boot_finished` text.
#[derive(Debug, Default)]
pub struct InstallerWait;

#[async_trait]
impl Action for InstallerWait {
    action_identity!(
        "installer-wait",
        "InstallerWait",
        "installer wait",
        "wait for task to finish match arbitrary string"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !ctx.meta.parameters.contains_key("boot_finished") {
            ctx.error("Missing boot_finished string");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `wait-fastboot-interrupt`: wait for the fastboot interrupt prompt and send the
/// interrupt string to reach the next bootloader. LAVA defines it with its fastboot boot
/// actions; here only the grub `sequence` uses it, so it lives with grub.
#[derive(Debug)]
pub struct WaitFastBootInterrupt {
    itype: &'static str,
}

impl WaitFastBootInterrupt {
    /// Waits for the fastboot interrupt before the `itype` bootloader (e.g. `grub`).
    pub fn new(itype: &'static str) -> Self {
        WaitFastBootInterrupt { itype }
    }

    /// The bootloader reached after the interrupt.
    pub fn itype(&self) -> &str {
        self.itype
    }

    /// Validation: the device's `fastboot_serial_number` and `fastboot_options`; one message per problem into `errors`.
    pub fn check(device: &Device, errors: &mut Vec<String>) {
        match device.lookup(&["fastboot_serial_number"]) {
            None => errors.push("device fastboot serial number missing".into()),
            Some(v) if scalar_string(v).as_deref() == Some("0000000000") => {
                errors.push("device fastboot serial number unset".into())
            }
            Some(_) => {}
        }
        match device.lookup(&["fastboot_options"]) {
            None => errors.push("device fastboot options missing".into()),
            Some(Value::Sequence(_)) => {}
            Some(_) => errors.push("device fastboot options is not a list".into()),
        }
        let fastboot = device.deploy_method("fastboot").filter(|f| f.is_mapping());
        let set = |k: &str| truthy(fastboot.and_then(|f| f.get(k)));
        if !set("interrupt_prompt") || !set("interrupt_string") {
            errors.push("Missing interrupt configuration for device.".into());
        }
    }
}

#[async_trait]
impl Action for WaitFastBootInterrupt {
    action_identity!(
        "wait-fastboot-interrupt",
        "WaitFastBootInterrupt",
        "Check for prompt and pass the interrupt string to exit fastboot.",
        "watch output and try to interrupt fastboot"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        Self::check(&ctx.job.device, &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    /// Only the grub `sequence` of fastboot boards (a HiKey's fastboot, then GRUB) builds
    /// it; every other grub form runs.
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NotYet {
            missing: Some("fastboot's interrupt before GRUB, the grub sequence of fastboot boards"),
        }
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
    fn sequence_and_interactive_strategies_exclude_each_other() {
        let seq = device(
            "actions:\n  boot:\n    methods:\n      grub:\n        sequence: [auto-login]\n",
        );
        let plain = device("actions:\n  boot:\n    methods:\n      grub-efi: {}\n");
        let grub = crate::strategies(lava_pipeline::Section::Boot, "grub").remove(1);
        let efi = crate::strategy(lava_pipeline::Section::Boot, "grub-efi");
        let block = mapping("{method: grub}");
        assert!(
            crate::strategy(lava_pipeline::Section::Boot, "grub")
                .accepts(&seq, &block)
                .is_ok()
        );
        assert_eq!(
            grub.accepts(&seq, &block),
            Err("\"sequence\" was in \"grub\" parameters".into())
        );
        assert!(
            crate::strategy(lava_pipeline::Section::Boot, "grub")
                .accepts(&plain, &block)
                .is_err()
        );
        assert!(grub.accepts(&plain, &block).is_ok());
        assert!(efi.accepts(&plain, &block).is_err());
        assert!(efi.accepts(&plain, &mapping("{method: grub-efi}")).is_ok());
    }

    #[test]
    fn grub_menu_selector_uses_the_uefi_menu() {
        let mut errors = Vec::new();
        GrubMenuSelector::check(
            &device("actions:\n  boot:\n    methods:\n      grub-efi: {}\n"),
            &mapping("{}"),
            &mut errors,
        );
        assert_eq!(errors, ["No uefi-menu in device boot methods"]);
        errors.clear();
        GrubMenuSelector::check(
            &device("actions:\n  boot:\n    methods:\n      uefi-menu: {parameters: {}}\n"),
            &mapping("{}"),
            &mut errors,
        );
        assert_eq!(errors, ["Missing entry for menu item to use for uefi-menu"]);
    }

    #[test]
    fn fastboot_interrupt_needs_serial_options_and_prompts() {
        let mut errors = Vec::new();
        WaitFastBootInterrupt::check(
            &device("fastboot_serial_number: '0000000000'\nfastboot_options: x\n"),
            &mut errors,
        );
        assert_eq!(
            errors,
            [
                "device fastboot serial number unset",
                "device fastboot options is not a list",
                "Missing interrupt configuration for device."
            ]
        );
    }
}
