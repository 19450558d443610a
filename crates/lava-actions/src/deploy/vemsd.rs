//! The `vemsd` deploy: write a Versatile Express board recovery image to the board's USB
//! mass storage from its MCC prompt. The mass-storage actions are shared with `mps` and
//! `musca`.

use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::fastboot::WaitUSBMassStorageDeviceAction;
use crate::common::power::{ConnectDevice, ResetDevice};
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Declared, Device, ErrorKind, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    // A recovery image deployment involves no OS: no deployment data.
    registry.register(
        Declared::deploy("vemsd", |_| Box::new(VExpressMsdRetry))
            .to("vemsd")
            .device_method("vemsd")
            .without_deployment_data(),
    );
}

/// `actions.deploy.methods.vemsd.parameters.<key>` as a string.
fn vemsd_param(device: &Device, key: &str) -> Option<String> {
    device
        .deploy_method_params("vemsd")
        .and_then(|p| p.get(key))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `vexpress-fw-deploy-retry`.
#[derive(Debug, Default)]
pub struct VExpressMsdRetry;

#[async_trait]
impl Action for VExpressMsdRetry {
    action_identity!(
        "vexpress-fw-deploy-retry",
        "VExpressMsdRetry",
        "deploy vexpress board recovery image with retry",
        "VExpress FW deployment with retry"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(VExpressMsdAction::default())
    }
}

/// `vexpress-fw-deploy`.
#[derive(Debug, Default)]
pub struct VExpressMsdAction {
    /// The directory the recovery image is downloaded to.
    pub download_dir: String,
}

#[async_trait]
impl Action for VExpressMsdAction {
    action_identity!(
        "vexpress-fw-deploy",
        "VExpressMsdAction",
        "deploy vexpress board recovery image",
        "VExpress FW deployment"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.download_dir = download_dir(pipeline, "vemsd");
        let image = pipeline
            .param("recovery_image")
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        pipeline.add(DownloaderAction::new(
            "recovery_image",
            &self.download_dir,
            image,
        ))?;
        pipeline.add(ConnectDevice::new())?;
        pipeline.add(ResetDevice::new())?;
        pipeline.add(VExpressStep::new(Step::Extract))?;
        pipeline.add(VExpressStep::new(Step::EnterMcc))?;
        pipeline.add(VExpressStep::new(Step::EnableMassStorage))?;
        pipeline.add(WaitUSBMassStorageDeviceAction::new())?;
        pipeline.add(MassStorage::mount(Board::VExpress))?;
        pipeline.add(VExpressStep::new(Step::DeployRecovery))?;
        pipeline.add(MassStorage::unmount(Board::VExpress))?;
        if truthy(
            pipeline
                .device()
                .deploy_method_params("vemsd")
                .and_then(|v| v.get("flash_prompt")),
        ) {
            pipeline.add(VExpressStep::new(Step::FlashErase))?;
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !ctx.meta.parameters.contains_key("recovery_image") {
            ctx.error("recovery_image is required");
        }
        Ok(())
    }
}

/// The Versatile Express steps that work on the recovery image or the MCC prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Step {
    /// `extract-vexpress-recovery-image`
    #[default]
    Extract,
    /// `enter-vexpress-mcc`
    EnterMcc,
    /// `enable-vexpress-usbmsd`
    EnableMassStorage,
    /// `deploy-vexpress-recovery-image`
    DeployRecovery,
    /// `erase-vexpress-flash`
    FlashErase,
}

/// One Versatile Express step; holds the MCC settings its run needs.
#[derive(Debug, Default)]
pub struct VExpressStep {
    /// Which step this action is.
    pub step: Step,
    /// `actions.deploy.methods.vemsd.parameters`, when the device has them.
    pub settings: Mapping,
}

impl VExpressStep {
    /// The action for `step`; its settings are read from the device.
    pub fn new(step: Step) -> Self {
        VExpressStep {
            step,
            settings: Mapping::new(),
        }
    }

    /// The device settings each step requires, with LAVA's messages.
    fn required(&self) -> &'static [(&'static str, &'static str)] {
        match self.step {
            Step::Extract | Step::DeployRecovery => &[],
            Step::EnterMcc => &[
                ("mcc_prompt", "Versatile Express MCC prompt unset"),
                ("autorun_prompt", "Versatile Express autorun prompt unset"),
                ("mcc_reset_msg", "Versatile Express MCC reset message unset"),
            ],
            Step::EnableMassStorage => &[
                ("mcc_prompt", "Versatile Express MCC prompt unset"),
                (
                    "msd_mount_cmd",
                    "Versatile Express USB Mass Storage mount command unset",
                ),
            ],
            Step::FlashErase => &[
                ("mcc_prompt", "Versatile Express MCC prompt unset"),
                ("flash_prompt", "Versatile Express flash prompt unset"),
                (
                    "flash_enter_cmd",
                    "Versatile Express flash enter command unset",
                ),
                (
                    "flash_erase_cmd",
                    "Versatile Express flash erase command unset",
                ),
                (
                    "flash_erase_msg",
                    "Versatile Express flash erase message unset",
                ),
                (
                    "flash_exit_cmd",
                    "Versatile Express flash exit command unset",
                ),
            ],
        }
    }
}

#[async_trait]
impl Action for VExpressStep {
    fn name(&self) -> &str {
        match self.step {
            Step::Extract => "extract-vexpress-recovery-image",
            Step::EnterMcc => "enter-vexpress-mcc",
            Step::EnableMassStorage => "enable-vexpress-usbmsd",
            Step::DeployRecovery => "deploy-vexpress-recovery-image",
            Step::FlashErase => "erase-vexpress-flash",
        }
    }
    fn class_name(&self) -> &str {
        match self.step {
            Step::Extract => "ExtractVExpressRecoveryImage",
            Step::EnterMcc => "EnterVExpressMCC",
            Step::EnableMassStorage => "EnableVExpressMassStorage",
            Step::DeployRecovery => "DeployVExpressRecoveryImage",
            Step::FlashErase => "VExpressFlashErase",
        }
    }
    fn description(&self) -> &str {
        match self.step {
            Step::Extract => "unpack versatile express recovery image",
            Step::EnterMcc => "enter Versatile Express MCC",
            Step::EnableMassStorage => "enable vexpress usb msd",
            Step::DeployRecovery => "deploy vexpress recovery image to usb msd",
            Step::FlashErase => "erase vexpress flash",
        }
    }
    fn summary(&self) -> &str {
        match self.step {
            Step::Extract => "unpack versatile express recovery image ready for deployment",
            Step::EnterMcc => "enter Versatile Express MCC, interrupting autorun if needed",
            Step::EnableMassStorage => "enable vexpress usb mass storage device",
            Step::DeployRecovery => {
                "copy recovery image contents to vexpress usb mass storage device"
            }
            Step::FlashErase => "erase vexpress flash using the commands set by the user",
        }
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.settings = pipeline
            .device()
            .deploy_method_params("vemsd")
            .cloned()
            .unwrap_or_default();
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        for (key, message) in self.required() {
            if vemsd_param(&ctx.job.device, key).is_none() {
                ctx.error(*message);
            }
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// The boards whose USB mass storage the dispatcher mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Board {
    /// Versatile Express and MPS: found by filesystem label.
    #[default]
    VExpress,
    /// Musca: found by `/dev/disk/by-id/<id_serial>`.
    Musca,
}

/// Mount or unmount a board's USB mass storage on the dispatcher.
#[derive(Debug, Default)]
pub struct MassStorage {
    /// The board whose storage is handled.
    pub board: Board,
    /// True to mount, false to unmount.
    pub mount: bool,
    /// The filesystem label or disk ID.
    pub disk_identifier: Option<String>,
}

impl MassStorage {
    /// Mounts the mass storage of `board`.
    pub fn mount(board: Board) -> Self {
        MassStorage {
            board,
            mount: true,
            disk_identifier: None,
        }
    }
    /// Unmounts the mass storage of `board`.
    pub fn unmount(board: Board) -> Self {
        MassStorage {
            board,
            mount: false,
            disk_identifier: None,
        }
    }
}

#[async_trait]
impl Action for MassStorage {
    fn name(&self) -> &str {
        match (self.board, self.mount) {
            (Board::VExpress, true) => "mount-vexpress-usbmsd",
            (Board::VExpress, false) => "unmount-vexpress-usbmsd",
            (Board::Musca, true) => "mount-musca-usbmsd",
            (Board::Musca, false) => "unmount-musca-usbmsd",
        }
    }
    fn class_name(&self) -> &str {
        match (self.board, self.mount) {
            (Board::VExpress, true) => "MountVExpressMassStorageDevice",
            (Board::VExpress, false) => "UnmountVExpressMassStorageDevice",
            (Board::Musca, true) => "MountMuscaMassStorageDevice",
            (Board::Musca, false) => "UnmountMuscaMassStorageDevice",
        }
    }
    fn description(&self) -> &str {
        match (self.board, self.mount) {
            (Board::VExpress, true) => "mount vexpress usb msd",
            (Board::VExpress, false) => "unmount vexpress usb msd",
            (Board::Musca, true) => "mount musca usb msd",
            (Board::Musca, false) => "unmount musca usb msd",
        }
    }
    fn summary(&self) -> &str {
        match (self.board, self.mount) {
            (Board::VExpress, true) => "mount vexpress usb mass storage device on the dispatcher",
            (Board::VExpress, false) => "unmount vexpress usb mass storage device",
            (Board::Musca, true) => "mount musca usb mass storage device on the dispatcher",
            (Board::Musca, false) => "unmount musca usb mass storage device",
        }
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        self.disk_identifier = match self.board {
            Board::VExpress => device.lookup_str(&["usb_filesystem_label"]),
            Board::Musca => device
                .deploy_method("musca")
                .and_then(|v| v.get("id_serial"))
                .and_then(Value::as_str),
        }
        .map(str::to_string);
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !self.mount {
            return Ok(());
        }
        match self.board {
            Board::VExpress => {
                if self.disk_identifier.is_none() {
                    ctx.error("Filesystem %s unset for Versatile Express");
                }
            }
            Board::Musca => {
                let method = ctx.job.device.deploy_method("musca");
                if method.and_then(|m| m.get("id_serial")).is_none() {
                    ctx.error("id_serial parameter not set for actions.deploy.methods.musca");
                }
                if self.disk_identifier.is_none() {
                    ctx.error("USB ID unset for Musca");
                }
            }
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}
