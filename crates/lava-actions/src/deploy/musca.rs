//! The `musca` deploy: copy a test binary to an Arm Musca board's USB mass storage and
//! check the board accepted it.

use crate::common::downloader::DownloaderAction;
use crate::common::downloader::download_dir;
use crate::common::power::{DisconnectDevice, ResetDevice};
use crate::deploy::vemsd::{Board, MassStorage};
use lava_pipeline::{
    Action, ActionMeta, Declared, LavaResult, PipelineBuilder, Runnable, StrategyRegistry,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("musca", |_| Box::new(MuscaAction::default()))
            .device_method("musca")
            .to_with(
                "musca",
                Some("\"to\" was not in parameters"),
                "\"to\" was not \"musca\"",
            )
            .device_key("board_id"),
    );
}

const TEST_BINARY: &str = "test_binary";

/// `musca-deploy`.
#[derive(Debug, Default)]
pub struct MuscaAction {
    /// The directory the test binary is downloaded to.
    pub download_dir: String,
}

#[async_trait]
impl Action for MuscaAction {
    action_identity!(
        "musca-deploy",
        "MuscaAction",
        "deploy image to Musca device",
        "Musca device image deployment"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.download_dir = download_dir(pipeline, "musca");
        pipeline.add(DisconnectDevice::new())?;
        let image = pipeline
            .param("images")
            .and_then(|i| i.get(TEST_BINARY))
            .filter(|v| lava_pipeline::value::truthy(Some(v)))
            .and_then(Value::as_mapping)
            .cloned();
        if let Some(image) = image {
            pipeline.add(DownloaderAction::new(
                TEST_BINARY,
                &self.download_dir,
                image,
            ))?;
        }
        pipeline.add(ResetDevice::new())?;
        pipeline.add(WaitMuscaMassStorageAction::new("add"))?;
        pipeline.add(MassStorage::mount(Board::Musca))?;
        pipeline.add(DeployMuscaTestBinary)?;
        pipeline.add(MassStorage::unmount(Board::Musca))?;
        pipeline.add(WaitMuscaMassStorageAction::new("change"))?;
        pipeline.add(MassStorage::mount(Board::Musca))?;
        pipeline.add(CheckMuscaFlashAction)?;
        pipeline.add(MassStorage::unmount(Board::Musca))
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let Some(images) = ctx.meta.parameters.get("images") else {
            ctx.error("Missing 'images'");
            return Ok(());
        };
        if images.get(TEST_BINARY).is_none() {
            ctx.error("Missing 'test_binary'");
        }
        Ok(())
    }
}

/// `wait-musca-path`: wait for the FAT16 mass storage at `/dev/disk/by-id/<id_serial>`.
#[derive(Debug, Default)]
pub struct WaitMuscaMassStorageAction {
    /// The udev action waited for (`add`, then `change` after flashing).
    pub udev_action: String,
    /// `/dev/disk/by-id/<id_serial>` from the device's musca deploy method.
    pub devicepath: Option<String>,
}

impl WaitMuscaMassStorageAction {
    /// Waits for the mass storage to reach the udev action `udev_action` (`add`, `remove`...).
    pub fn new(udev_action: &str) -> Self {
        WaitMuscaMassStorageAction {
            udev_action: udev_action.to_string(),
            devicepath: None,
        }
    }
}

#[async_trait]
impl Action for WaitMuscaMassStorageAction {
    action_identity!(
        "wait-musca-path",
        "WaitMuscaMassStorageAction",
        "wait for musca mass storage",
        "wait for musca mass storage"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.devicepath = pipeline
            .device()
            .deploy_method("musca")
            .and_then(|v| v.get("id_serial"))
            .and_then(lava_pipeline::value::scalar_string)
            .map(|id| format!("/dev/disk/by-id/{id}"));
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `deploy-musca-test-binary`.
#[derive(Debug, Default)]
pub struct DeployMuscaTestBinary;

#[async_trait]
impl Action for DeployMuscaTestBinary {
    action_identity!(
        "deploy-musca-test-binary",
        "DeployMuscaTestBinary",
        "deploy test binary to usb msd",
        "copy test binary to Musca device"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let image = ctx
            .meta
            .parameters
            .get("images")
            .and_then(|i| i.get(TEST_BINARY));
        if !lava_pipeline::value::truthy(image) {
            ctx.error("Missing 'test_binary' in 'images'");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `check-musca-flash`: a `FAIL.TXT` on the board means the flashing failed.
#[derive(Debug, Default)]
pub struct CheckMuscaFlashAction;

#[async_trait]
impl Action for CheckMuscaFlashAction {
    action_identity!(
        "check-musca-flash",
        "CheckMuscaFlashAction",
        "checks if software flashed to the musca correctly",
        "check for FAIL.TXT on musca"
    );
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}
