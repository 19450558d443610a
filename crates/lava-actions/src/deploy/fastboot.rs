//! The `fastboot` deploy: download the images, apply the overlay, put the device in
//! fastboot mode and flash each image in the device's `flash_cmds_order`.

use crate::common::apply_overlay::{ApplyOverlayImage, ApplyOverlaySparseImage};
use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::env::DeployDeviceEnvironment;
use crate::common::fastboot::{
    EnterFastbootAction, FastbootTool, UBootEnterFastbootAction, WaitDeviceBoardID,
    add_detect_fastboot_if_needed, check_fastboot_connection, check_fastboot_options,
    check_fastboot_serial_unless_detected, check_optional_container, has_hard_reset,
    test_needs_deployment, test_needs_overlay,
};
use crate::common::lava_overlay::OverlayAction;
use crate::common::power::{ConnectDevice, PDUReboot, PrePower, ReadFeedback, ResetDevice};
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Declared, ErrorKind, LavaError, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("fastboot", |_| Box::new(FastbootAction::default()))
            .to("fastboot")
            .device_section()
            .check(|device, _| {
                if crate::common::fastboot::fastboot_auto_detection(device) {
                    return Ok(());
                }
                if !device.has("adb_serial_number") {
                    return Err("\"adb_serial_number\" is not in the device configuration".into());
                }
                if !device.has("fastboot_serial_number") {
                    return Err(
                        "\"fastboot_serial_number\" is not in the device configuration".into(),
                    );
                }
                Ok(())
            })
            .device_key("fastboot_options")
            .device_method_with(
                "fastboot",
                "\"fastboot\" was not in the device configuration deploy methods\"",
            ),
    );
}

/// The `images` of a deploy block, in job order.
pub(crate) fn images(params: &Mapping) -> LavaResult<Vec<(String, Mapping)>> {
    let Some(images) = params.get("images") else {
        return Ok(Vec::new());
    };
    let Some(images) = images.as_mapping() else {
        return Err(LavaError::job("'deploy.images' should be a dictionary"));
    };
    Ok(images
        .iter()
        .map(|(k, v)| {
            let key = lava_pipeline::value::scalar_string(k).unwrap_or_default();
            (key, v.as_mapping().cloned().unwrap_or_default())
        })
        .collect())
}

/// `fastboot-deploy`.
#[derive(Debug, Default)]
pub struct FastbootAction {
    /// Where the images are downloaded.
    pub path: String,
    /// Set when the device is reset with its power command (wait for a prompt).
    pub force_prompt: bool,
}

#[async_trait]
impl Action for FastbootAction {
    action_identity!(
        "fastboot-deploy",
        "FastbootAction",
        "download files and deploy using fastboot",
        "fastboot deployment"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let needs_overlay = test_needs_overlay(pipeline);
        let needs_deployment = test_needs_deployment(pipeline);
        if needs_overlay {
            pipeline.add(OverlayAction::new())?;
        }
        self.path = download_dir(pipeline, "fastboot");
        let params = pipeline.params();
        for (key, image) in images(&params)? {
            pipeline.add(DownloaderAction::new(&key, &self.path, image.clone()))?;
            if truthy(image.get("apply-overlay")) && needs_overlay {
                let sparse = image.get("sparse").is_none_or(|v| truthy(Some(v)));
                if sparse {
                    pipeline.add(ApplyOverlaySparseImage::new(&key))?;
                } else {
                    let root = truthy(image.get("root_partition"));
                    pipeline.add(ApplyOverlayImage::new(&key, root))?;
                }
            }
            if needs_overlay && needs_deployment {
                pipeline.add(DeployDeviceEnvironment::new())?;
            }
        }
        let device = pipeline.device();
        if truthy(device.lookup(&["fastboot_via_uboot"])) {
            pipeline.add(ConnectDevice::new())?;
            pipeline.add(UBootEnterFastbootAction::new())?;
            add_detect_fastboot_if_needed(pipeline)?;
        } else if has_hard_reset(device) {
            self.force_prompt = true;
            pipeline.add(ConnectDevice::new())?;
            pipeline.add(PrePower)?;
            pipeline.add(ResetDevice::new())?;
            add_detect_fastboot_if_needed(pipeline)?;
        } else {
            pipeline.add(EnterFastbootAction::new())?;
        }
        pipeline.add(FastbootFlashOrderAction::default())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        check_optional_container(&ctx.meta.parameters, ctx);
        Ok(())
    }
}

/// The strings of a device list setting (`flash_cmds_order`).
fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(lava_pipeline::value::scalar_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The order images are flashed in: the device's `flash_cmds_order` first, then the
/// job's other images (LAVA appends those in set order; lava-rs keeps the job order).
pub fn flash_order(device_order: &[String], job_images: &[String]) -> Vec<String> {
    let mut order: Vec<String> = device_order.to_vec();
    for image in job_images {
        if !device_order.contains(image) {
            order.push(image.clone());
        }
    }
    order
        .into_iter()
        .filter(|cmd| job_images.contains(cmd))
        .collect()
}

/// `fastboot-flash-order-action`: flash each image, with the reboots the images ask for.
#[derive(Debug, Default)]
pub struct FastbootFlashOrderAction {
    /// The image keys in flashing order.
    pub order: Vec<String>,
}

#[async_trait]
impl Action for FastbootFlashOrderAction {
    action_identity!(
        "fastboot-flash-order-action",
        "FastbootFlashOrderAction",
        "Determine support for each flash operation",
        "Handle reset and options for each flash url."
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        let params = pipeline.params();
        let images = images(&params)?;
        let keys: Vec<String> = images.iter().map(|(k, _)| k.clone()).collect();
        self.order = flash_order(&string_list(device.lookup(&["flash_cmds_order"])), &keys);
        let board_id = device.lookup(&["fastboot_serial_number"]).cloned();
        pipeline.add(ReadFeedback::new(false, true))?;
        for cmd in self.order.clone() {
            let image = images
                .iter()
                .find(|(k, _)| *k == cmd)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            pipeline.add(WaitDeviceBoardID::with_board_id(board_id.clone()))?;
            let reboot = image
                .get("reboot")
                .and_then(Value::as_str)
                .map(str::to_string);
            pipeline.add(FastbootFlashAction::new(&cmd, reboot.clone()))?;
            match reboot.as_deref() {
                Some("fastboot-reboot") => pipeline.add(FastbootReboot::new(
                    RebootKind::System,
                    FastbootTool::from_builder(pipeline),
                ))?,
                Some("fastboot-reboot-bootloader") => pipeline.add(FastbootReboot::new(
                    RebootKind::Bootloader,
                    FastbootTool::from_builder(pipeline),
                ))?,
                Some("fastboot-reboot-fastboot") => pipeline.add(FastbootReboot::new(
                    RebootKind::Fastboot,
                    FastbootTool::from_builder(pipeline),
                ))?,
                Some("hard-reset") => pipeline.add(PDUReboot)?,
                _ => continue,
            }
            pipeline.add(ReadFeedback::new(false, true))?;
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        check_optional_container(&ctx.meta.parameters, ctx);
        let device = &ctx.job.device;
        check_fastboot_connection(device, ctx);
        check_fastboot_serial_unless_detected(device, ctx);
        if !device.has("flash_cmds_order") {
            ctx.error("device flash commands order missing");
        }
        check_fastboot_options(device, ctx);
        Ok(())
    }
}

/// `fastboot-flash-action`: `fastboot flash <partition> <image>`.
#[derive(Debug, Default)]
pub struct FastbootFlashAction {
    /// The partition (image key) to flash.
    pub command: String,
    /// The reboot requested after this image, if any.
    pub reboot: Option<String>,
    /// How `fastboot` is called (serial number, options, docker).
    pub tool: FastbootTool,
    /// `actions.deploy.methods.fastboot.interrupt_prompt`/`interrupt_string`.
    pub interrupt_prompt: Option<String>,
    /// `actions.deploy.methods.fastboot.interrupt_string`, read with `interrupt_prompt`.
    pub interrupt_string: Option<String>,
}

impl FastbootFlashAction {
    /// Flashes the partition `command`; `reboot` is the image's `reboot` setting.
    pub fn new(command: &str, reboot: Option<String>) -> Self {
        FastbootFlashAction {
            command: command.to_string(),
            reboot,
            ..Self::default()
        }
    }
}

#[async_trait]
impl Action for FastbootFlashAction {
    action_identity!(
        "fastboot-flash-action",
        "FastbootFlashAction",
        "Run a specified flash command",
        "Execute fastboot flash command"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.tool = FastbootTool::from_builder(pipeline);
        let method = pipeline.device().deploy_method("fastboot");
        let get = |k: &str| {
            method
                .and_then(Value::as_mapping)
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        self.interrupt_prompt = get("interrupt_prompt");
        self.interrupt_string = get("interrupt_string");
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        check_optional_container(&ctx.meta.parameters, ctx);
        if self.command.is_empty() {
            ctx.error("Invalid configuration - missing flash command");
        }
        check_fastboot_connection(&ctx.job.device, ctx);
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// Which reboot a [`FastbootReboot`] issues between flash operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RebootKind {
    /// `fastboot reboot`
    #[default]
    System,
    /// `fastboot reboot-bootloader`
    Bootloader,
    /// `fastboot reboot fastboot` (into fastbootd)
    Fastboot,
}

/// `fastboot-reboot`, `fastboot-reboot-bootloader` or `fastboot-reboot-fastboot` between
/// flash operations.
#[derive(Debug, Default)]
pub struct FastbootReboot {
    /// Which reboot to run.
    pub kind: RebootKind,
    /// How `fastboot` is called (serial number, options, docker).
    pub tool: FastbootTool,
}

impl FastbootReboot {
    /// A reboot of `kind`, fastboot called through `tool`.
    pub fn new(kind: RebootKind, tool: FastbootTool) -> Self {
        FastbootReboot { kind, tool }
    }

    /// The fastboot arguments of the reboot.
    pub fn arguments(&self) -> &'static [&'static str] {
        match self.kind {
            RebootKind::System => &["reboot"],
            RebootKind::Bootloader => &["reboot-bootloader"],
            RebootKind::Fastboot => &["reboot", "fastboot"],
        }
    }
}

#[async_trait]
impl Action for FastbootReboot {
    fn name(&self) -> &str {
        match self.kind {
            RebootKind::System => "fastboot-reboot",
            RebootKind::Bootloader => "fastboot-reboot-bootloader",
            RebootKind::Fastboot => "fastboot-reboot-fastboot",
        }
    }
    fn class_name(&self) -> &str {
        match self.kind {
            RebootKind::System => "FastbootReboot",
            RebootKind::Bootloader => "FastbootRebootBootloader",
            RebootKind::Fastboot => "FastbootRebootFastboot",
        }
    }
    fn description(&self) -> &str {
        match self.kind {
            RebootKind::System => "Reset a device between flash operations using fastboot reboot.",
            RebootKind::Bootloader => {
                "Reset a device between flash operations using fastboot reboot-bootloader."
            }
            RebootKind::Fastboot => {
                "Reset a device between flash operations using fastboot reboot fastboot."
            }
        }
    }
    fn summary(&self) -> &str {
        match self.kind {
            RebootKind::System => "execute a reboot using fastboot",
            RebootKind::Bootloader => "execute a reboot to bootloader using fastboot",
            RebootKind::Fastboot => "execute a reboot to fastbootd using fastboot",
        }
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        check_optional_container(&ctx.meta.parameters, ctx);
        check_fastboot_connection(&ctx.job.device, ctx);
        check_fastboot_serial_unless_detected(&ctx.job.device, ctx);
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lava_pipeline::Device;
    use serde_yaml::Mapping;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn device_order_comes_first_and_skips_images_not_in_the_job() {
        let order = flash_order(
            &strings(&["partition", "hyp", "boot", "rootfs"]),
            &strings(&["rootfs", "extra", "boot"]),
        );
        assert_eq!(order, strings(&["boot", "rootfs", "extra"]));
    }

    #[test]
    fn images_keep_job_order_and_reject_lists() {
        let params: Mapping = serde_yaml::from_str("images: {b: {url: x}, a: {url: y}}").unwrap();
        let keys: Vec<String> = images(&params)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, strings(&["b", "a"]));
        let bad: Mapping = serde_yaml::from_str("images: [a, b]").unwrap();
        assert!(images(&bad).is_err());
    }

    #[test]
    fn strategy_reasons_follow_lava() {
        let device = Device::from_yaml(
            "actions: {deploy: {methods: {fastboot: null}}}\nadb_serial_number: x\nfastboot_serial_number: y\n",
            None,
        )
        .unwrap();
        let params: Mapping = serde_yaml::from_str("to: fastboot").unwrap();
        assert_eq!(
            crate::strategy(lava_pipeline::Section::Deploy, "fastboot")
                .accepts(&device, &params)
                .unwrap_err(),
            "\"fastboot_options\" is not in the device configuration"
        );
        let device = Device::from_yaml(
            "actions: {deploy: {methods: {fastboot: null}}}\nfastboot_auto_detection: true\nfastboot_options: []\n",
            None,
        )
        .unwrap();
        assert!(
            crate::strategy(lava_pipeline::Section::Deploy, "fastboot")
                .accepts(&device, &params)
                .is_ok()
        );
        let params: Mapping = serde_yaml::from_str("to: tftp").unwrap();
        assert!(
            crate::strategy(lava_pipeline::Section::Deploy, "fastboot")
                .accepts(&device, &params)
                .is_err()
        );
    }

    fn describe(device: &str, job: &str) -> Vec<(String, String)> {
        let device = Device::from_yaml(device, None).unwrap();
        let (_job, pipeline) = lava_pipeline::JobParser::new(&crate::registry(), &crate::FIXED)
            .parse(job, device, &lava_pipeline::ParseOptions::default())
            .unwrap();
        fn walk(actions: &[lava_pipeline::DescribedAction], out: &mut Vec<(String, String)>) {
            for a in actions {
                out.push((a.level.clone(), a.name.clone()));
                walk(&a.pipeline, out);
            }
        }
        let mut out = Vec::new();
        walk(&pipeline.describe(), &mut out);
        out
    }

    const DEVICE: &str = "
adb_serial_number: abc
fastboot_serial_number: abc
fastboot_options: []
flash_cmds_order: [boot, system]
actions:
  deploy:
    connections: {fastboot: null}
    methods: {fastboot: null}
  boot:
    connections: {serial: null}
    methods: {fastboot: [reboot]}
";

    const JOB: &str = "
job_name: t
timeouts: {job: {minutes: 10}, action: {minutes: 2}}
visibility: public
actions:
- deploy:
    to: fastboot
    images:
      system: {url: 'http://example.com/system.img', reboot: hard-reset}
      boot: {url: 'http://example.com/boot.img', reboot: fastboot-reboot-bootloader}
";

    #[test]
    fn without_power_control_the_device_enters_fastboot_over_adb() {
        let tree = describe(DEVICE, JOB);
        let names: Vec<&str> = tree.iter().map(|(_, n)| n.as_str()).collect();
        assert!(names.contains(&"enter-fastboot-action"), "{names:?}");
        assert!(!names.contains(&"pre-power-command"), "{names:?}");
        let order: Vec<&str> = tree
            .iter()
            .filter(|(l, _)| l.starts_with("1.4."))
            .map(|(_, n)| n.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "read-feedback",
                "wait-device-boardid",
                "fastboot-flash-action",
                "fastboot-reboot-bootloader",
                "read-feedback",
                "wait-device-boardid",
                "fastboot-flash-action",
                "pdu-reboot",
                "read-feedback",
            ]
        );
    }

    #[test]
    fn power_control_resets_the_device_instead() {
        let device = format!("{DEVICE}commands: {{hard_reset: reset-it, power_off: off-it}}\n");
        let tree = describe(&device, JOB);
        let top: Vec<&str> = tree
            .iter()
            .filter(|(l, _)| l.matches('.').count() == 1 && l.starts_with("1."))
            .map(|(_, n)| n.as_str())
            .collect();
        assert_eq!(
            top,
            [
                "download-retry",
                "download-retry",
                "connect-device",
                "pre-power-command",
                "reset-device",
                "fastboot-flash-order-action",
            ]
        );
    }
}
