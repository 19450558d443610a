//! The `u-boot` boot method: substitute the job's files into the device's U-Boot
//! commands, connect, reset, interrupt U-Boot, send the commands and log in.

use crate::common::bootloader::{
    BootloaderCommandOverlay, BootloaderCommandsAction, BootloaderInterruptAction,
    BootloaderSecondaryMedia, add_login_tail, secondary_media_commands,
};
use crate::common::power::{ConnectDevice, ResetDevice, require_tool};
use crate::common::prepare_overlay::map_kernel_uboot;
use lava_pipeline::value::{scalar_string, truthy};
use lava_pipeline::{
    Action, ActionMeta, Declared, Device, ErrorKind, LavaError, LavaResult, Pipeline,
    PipelineBuilder, RunContext, Runnable, StrategyRegistry, ValidateContext, action_identity,
    async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("u-boot", |_| Box::new(UBootAction::new()))
            .method("u-boot")
            .param("commands", "commands not specified in boot parameters")
            .device_method("u-boot"),
    );
}

/// `uboot-action`: prepare the commands and connect, then the U-Boot interaction.
#[derive(Debug, Default)]
pub struct UBootAction;

impl UBootAction {
    /// Creates the `uboot-action` action.
    pub fn new() -> Self {
        UBootAction
    }
}

#[async_trait]
impl Action for UBootAction {
    action_identity!(
        "uboot-action",
        "UBootAction",
        "interactive uboot action",
        "pass uboot commands"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(UBootSecondaryMedia::new())?;
        pipeline.add(BootloaderCommandOverlay::new())?;
        pipeline.add(ConnectDevice::new())?;
        pipeline.add(UBootCommandsAction::new())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if ctx.meta.parameters.contains_key("type") {
            ctx.job.warn(
                "Specifying a type in the boot action is deprecated. Please specify the kernel type in the deploy parameters."
                    .into(),
            );
        }
        Ok(())
    }
}

/// How `uboot-commands` talks to U-Boot, from the device's u-boot parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UBootFlow {
    /// Send the boot commands.
    #[default]
    Commands,
    /// Expose the storage over USB mass storage, flash it with bmaptool, reset.
    UmsFlash {
        /// The block device U-Boot exposes (`uboot_mass_storage_device` of the u-boot parameters).
        device: Option<String>,
    },
    /// Switch to the alternate bank, interrupt again, then the boot commands.
    AltBank,
}

/// `uboot-commands`: reset, interrupt and command U-Boot, then log in.
#[derive(Debug, Default)]
pub struct UBootCommandsAction {
    flow: UBootFlow,
}

impl UBootCommandsAction {
    /// Creates the `uboot-commands` action.
    pub fn new() -> Self {
        Self::default()
    }

    /// The flow the device parameters ask for.
    pub fn flow(method_params: Option<&Mapping>) -> UBootFlow {
        let flag = |key: &str| truthy(method_params.and_then(|p| p.get(key)));
        if flag("uboot_ums_flash") {
            UBootFlow::UmsFlash {
                device: method_params
                    .and_then(|p| p.get("uboot_mass_storage_device"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
            }
        } else if flag("uboot_altbank") {
            UBootFlow::AltBank
        } else {
            UBootFlow::Commands
        }
    }
}

#[async_trait]
impl Action for UBootCommandsAction {
    action_identity!(
        "uboot-commands",
        "UBootCommandsAction",
        "interactive uboot commands action",
        "uboot commands"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let method_params = pipeline.device().boot_method_params("u-boot");
        self.flow = Self::flow(method_params);
        let reset = pipeline
            .param("reset")
            .map(|v| truthy(Some(v)))
            .unwrap_or(true);
        if reset {
            pipeline.add(ResetDevice::new())?;
        }
        pipeline.add(BootloaderInterruptAction::new())?;
        match &self.flow {
            UBootFlow::UmsFlash { device } => {
                pipeline.add(BootloaderCommandsAction::without_final())?;
                pipeline.add(WaitDevicePathAction::new(device.clone()))?;
                pipeline.add(FlashUBootUMSAction::new(device.clone()))?;
                pipeline.add(ResetDevice::new())?;
            }
            UBootFlow::AltBank => {
                pipeline.add(BootloaderCommandsAction::altbank(false))?;
                pipeline.add(BootloaderInterruptAction::new())?;
                pipeline.add(BootloaderCommandsAction::new())?;
            }
            UBootFlow::Commands => pipeline.add(BootloaderCommandsAction::new())?,
        }
        add_login_tail(pipeline)
    }
}

/// `uboot-from-media`: when booting from secondary media, check the kernel type and that
/// the media written by the storage deployment is the one the commands name.
#[derive(Debug, Default)]
pub struct UBootSecondaryMedia;

impl UBootSecondaryMedia {
    /// Creates the `uboot-from-media` action.
    pub fn new() -> Self {
        UBootSecondaryMedia
    }

    /// The `device` of the last removable-media deployment of `namespace` before the
    /// root action numbered `block` (what LAVA's `storage-deploy` recorded at validation).
    pub fn deployed_media_device(
        job_params: &Mapping,
        namespace: &str,
        block: usize,
    ) -> Option<String> {
        let actions = job_params.get("actions")?.as_sequence()?;
        actions
            .iter()
            .take(block.saturating_sub(1))
            .filter_map(|a| a.get("deploy"))
            .filter(|d| {
                d.get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("common")
                    == namespace
                    && matches!(
                        d.get("to").and_then(Value::as_str),
                        Some("usb" | "sata" | "sd")
                    )
            })
            .filter_map(|d| d.get("device").and_then(scalar_string))
            .next_back()
    }

    /// LAVA's checks of a secondary media boot.
    pub fn check(
        device: &Device,
        params: &Mapping,
        deployed: Option<&str>,
        errors: &mut Vec<String>,
    ) {
        let Some(media) = secondary_media_commands(device, params) else {
            return;
        };
        BootloaderSecondaryMedia::check(device, params, errors);
        match params.get("kernel_type").and_then(scalar_string) {
            Some(kernel_type) => {
                // Only the mapping's warnings matter here; the result is used at run time.
                let _ = map_kernel_uboot(&kernel_type, device.lookup(&["parameters"]));
            }
            None => errors.push("Missing kernel_type for secondary media boot".into()),
        }
        let media_params = device.parameter("media").and_then(|m| m.get(media));
        let known = deployed.is_some_and(|d| media_params.and_then(|m| m.get(d)).is_some());
        if !known {
            errors.push(format!(
                "{} does not match requested media type {media}",
                deployed.unwrap_or("None")
            ));
        }
    }
}

#[async_trait]
impl Action for UBootSecondaryMedia {
    action_identity!(
        "uboot-from-media",
        "UBootSecondaryMedia",
        "let uboot know where to find the kernel in the image on secondary media",
        "set uboot strings for deployed media"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let params = &ctx.meta.params();
        let block: usize = ctx
            .meta
            .level
            .split('.')
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let deployed = Self::deployed_media_device(
            &ctx.job.parameters,
            lava_pipeline::params::namespace(params),
            block,
        );
        let mut errors = Vec::new();
        Self::check(&ctx.job.device, params, deployed.as_deref(), &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let params = ctx.meta().parameters.clone();
        if secondary_media_commands(&ctx.job.device, &params).is_none() {
            return Ok(());
        }
        crate::common::bootloader::record_secondary_media(ctx);
        let kernel_type = params
            .get("kernel_type")
            .and_then(scalar_string)
            .unwrap_or_default();
        let bootcommand = map_kernel_uboot(&kernel_type, ctx.job.device.lookup(&["parameters"]));
        ctx.logger
            .debug(format!("Using bootcommand: {bootcommand}"));
        ctx.set_data(
            "uboot-prepare-kernel",
            "kernel-type",
            "kernel-type",
            kernel_type,
        );
        ctx.set_data(
            "uboot-prepare-kernel",
            "bootcommand",
            "bootcommand",
            bootcommand,
        );
        Ok(())
    }
}

/// `wait-device-path`: wait for udev to announce a device path (the USB mass storage
/// U-Boot exposes).
#[derive(Debug)]
pub struct WaitDevicePathAction {
    path: Option<String>,
}

impl WaitDevicePathAction {
    /// Waits for `path` to appear.
    pub fn new(path: Option<String>) -> Self {
        WaitDevicePathAction { path }
    }

    /// The device path to wait for.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
}

#[async_trait]
impl Action for WaitDevicePathAction {
    action_identity!(
        "wait-device-path",
        "WaitDevicePathAction",
        "wait for udev device path",
        "wait for udev device path"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if self.path.is_none() {
            ctx.error("invalid device path");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `flash-uboot-ums`: write the deployed image to the USB mass storage with bmaptool.
#[derive(Debug)]
pub struct FlashUBootUMSAction {
    usb_mass_device: Option<String>,
}

impl FlashUBootUMSAction {
    /// Flashes the block device `usb_mass_device` that U-Boot exposes.
    pub fn new(usb_mass_device: Option<String>) -> Self {
        FlashUBootUMSAction { usb_mass_device }
    }

    /// The block device U-Boot exposes.
    pub fn usb_mass_device(&self) -> Option<&str> {
        self.usb_mass_device.as_deref()
    }
}

#[async_trait]
impl Action for FlashUBootUMSAction {
    action_identity!(
        "flash-uboot-ums",
        "FlashUBootUMSAction",
        "Write the image file to USB Mass Storage",
        "USB Mass storage flash"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        require_tool("bmaptool")?;
        let method = ctx
            .meta
            .parameters
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let has_device = ctx
            .job
            .device
            .boot_method_params(method)
            .is_some_and(|p| p.contains_key("uboot_mass_storage_device"));
        if !has_device {
            return Err(LavaError::job("uboot_mass_storage_device is not set"));
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn strategy_reasons() {
        let device =
            Device::from_yaml("actions:\n  boot:\n    methods:\n      u-boot: {}\n", None).unwrap();
        let other =
            Device::from_yaml("actions:\n  boot:\n    methods:\n      grub: {}\n", None).unwrap();
        assert!(
            crate::strategy(lava_pipeline::Section::Boot, "u-boot")
                .accepts(&device, &mapping("{method: u-boot, commands: nfs}"))
                .is_ok()
        );
        assert_eq!(
            crate::strategy(lava_pipeline::Section::Boot, "u-boot")
                .accepts(&device, &mapping("{method: grub, commands: nfs}")),
            Err("\"method\" was not \"u-boot\"".into())
        );
        assert_eq!(
            crate::strategy(lava_pipeline::Section::Boot, "u-boot")
                .accepts(&device, &mapping("{method: u-boot}")),
            Err("commands not specified in boot parameters".into())
        );
        assert!(
            crate::strategy(lava_pipeline::Section::Boot, "u-boot")
                .accepts(&other, &mapping("{method: u-boot, commands: x}"))
                .is_err()
        );
    }

    #[test]
    fn uboot_flow_from_device_parameters() {
        assert_eq!(UBootCommandsAction::flow(None), UBootFlow::Commands);
        let p = mapping("{uboot_ums_flash: true, uboot_mass_storage_device: /dev/sdz}");
        assert_eq!(
            UBootCommandsAction::flow(Some(&p)),
            UBootFlow::UmsFlash {
                device: Some("/dev/sdz".into())
            }
        );
        let p = mapping("{uboot_ums_flash: false, uboot_altbank: true}");
        assert_eq!(UBootCommandsAction::flow(Some(&p)), UBootFlow::AltBank);
    }

    #[test]
    fn secondary_media_matches_storage_deploy() {
        let job = mapping(
            "actions:\n- deploy: {to: tftp}\n- deploy: {to: usb, device: SanDisk}\n- deploy: {to: usb, device: Other, namespace: x}\n- boot: {method: u-boot, commands: usb}\n",
        );
        assert_eq!(
            UBootSecondaryMedia::deployed_media_device(&job, "common", 4).as_deref(),
            Some("SanDisk")
        );
        assert_eq!(
            UBootSecondaryMedia::deployed_media_device(&job, "common", 2),
            None
        );

        let device = Device::from_yaml(
            "parameters:\n  bootz: {}\n  media:\n    usb:\n      SanDisk: {device_id: 0}\n",
            None,
        )
        .unwrap();
        let params = mapping(
            "{method: u-boot, commands: usb, kernel: k, root_uuid: u, boot_part: 1, kernel_type: zimage}",
        );
        let mut errors = Vec::new();
        UBootSecondaryMedia::check(&device, &params, Some("SanDisk"), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        UBootSecondaryMedia::check(&device, &params, Some("Other"), &mut errors);
        assert_eq!(errors, ["Other does not match requested media type usb"]);
        errors.clear();
        // Not a media boot: nothing to check.
        UBootSecondaryMedia::check(&device, &mapping("{commands: ramdisk}"), None, &mut errors);
        assert!(errors.is_empty());
    }
}
