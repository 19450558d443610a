//! The `mps` deploy: copy a recovery image and/or test binaries to an Arm MPS board's USB
//! mass storage.

use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::fastboot::WaitUSBMassStorageDeviceAction;
use crate::common::power::{DisconnectDevice, PowerOff, ResetDevice};
use crate::deploy::fastboot::images;
use crate::deploy::vemsd::{Board, MassStorage, Step, VExpressStep};
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Declared, ErrorKind, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("mps", |_| Box::new(MpsAction::default()))
            .device_method("mps")
            .to_with(
                "mps",
                Some("\"to\" was not in parameters"),
                "\"to\" was not \"mps\"",
            )
            .device_key("usb_filesystem_label"),
    );
}

/// LAVA's check of the image keys: one `recovery_image` or `test_binary`, or a
/// `recovery_image` plus `test_binary_*` keys.
pub fn image_key_errors(keys: &[String]) -> Vec<String> {
    let mut errors = Vec::new();
    if keys.len() == 1 {
        if keys[0] != "recovery_image" && keys[0] != "test_binary" {
            errors.push("Missing 'recovery_image' or 'test_binary'".to_string());
        }
    } else {
        for key in keys {
            if key != "recovery_image" && !key.starts_with("test_binary_") {
                errors.push("Missing 'recovery_image' or not starting with 'test_binary_'".into());
            }
        }
    }
    errors
}

/// `mps-deploy`.
#[derive(Debug, Default)]
pub struct MpsAction {
    /// The directory the images are downloaded to.
    pub download_dir: String,
}

#[async_trait]
impl Action for MpsAction {
    action_identity!(
        "mps-deploy",
        "MpsAction",
        "deploy image to MPS device",
        "MPS device image deployment"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.download_dir = download_dir(pipeline, "mps");
        pipeline.add(DisconnectDevice::new())?;
        pipeline.add(ResetDevice::new())?;
        pipeline.add(WaitUSBMassStorageDeviceAction::new())?;
        let params = pipeline.params();
        let images = images(&params)?;
        for (key, image) in &images {
            pipeline.add(DownloaderAction::new(
                key,
                &self.download_dir,
                image.clone(),
            ))?;
        }
        pipeline.add(MassStorage::mount(Board::VExpress))?;
        let mut keys: Vec<String> = images.into_iter().map(|(k, _)| k).collect();
        keys.sort();
        for key in keys {
            if key == "recovery_image" {
                pipeline.add(VExpressStep::new(Step::Extract))?;
                pipeline.add(VExpressStep::new(Step::DeployRecovery))?;
            } else {
                pipeline.add(DeployMPSTestBinary::new(&key))?;
            }
        }
        let hard_reboot = truthy(
            pipeline
                .device()
                .deploy_method_params("mps")
                .and_then(|v| v.get("hard-reboot")),
        );
        if hard_reboot {
            pipeline.add(MassStorage::unmount(Board::VExpress))?;
            pipeline.add(PowerOff::new())?;
        } else {
            pipeline.add(DeployMPSRebootTxt::default())?;
            pipeline.add(MassStorage::unmount(Board::VExpress))?;
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let Some(images) = ctx.meta.parameters.get("images") else {
            ctx.error("Missing 'images'");
            return Ok(());
        };
        let keys: Vec<String> = images
            .as_mapping()
            .into_iter()
            .flat_map(|m| m.keys())
            .filter_map(lava_pipeline::value::scalar_string)
            .collect();
        ctx.add_errors(image_key_errors(&keys));
        Ok(())
    }
}

/// `deploy-mps-test-binary`: copy one test binary (renamed if asked) to the board.
#[derive(Debug, Default)]
pub struct DeployMPSTestBinary {
    /// The image key of the test binary (`test_binary` or `test_binary_N`).
    pub param_key: String,
}

impl DeployMPSTestBinary {
    /// Copies the test binary of image key `key`.
    pub fn new(key: &str) -> Self {
        DeployMPSTestBinary {
            param_key: key.to_string(),
        }
    }
}

#[async_trait]
impl Action for DeployMPSTestBinary {
    action_identity!(
        "deploy-mps-test-binary",
        "DeployMPSTestBinary",
        "deploy test binary to usb msd",
        "copy test binary to MPS device and rename if required"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let image = ctx
            .meta
            .parameters
            .get("images")
            .and_then(|i| i.get(self.param_key.as_str()));
        if !truthy(image) {
            ctx.error(format!("Missing '{}' in 'images'", self.param_key));
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `deploy-mps-reboot-txt`: write `reboot.txt` to trigger a soft reset.
#[derive(Debug, Default)]
pub struct DeployMPSRebootTxt {
    /// The text written to `reboot.txt` (the device's mps `reboot-string`).
    pub reboot_string: Option<String>,
}

#[async_trait]
impl Action for DeployMPSRebootTxt {
    action_identity!(
        "deploy-mps-reboot-txt",
        "DeployMPSRebootTxt",
        "deploy reboot.txt to mps",
        "copy reboot.txt to MPS device to trigger restart"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.reboot_string = pipeline
            .device()
            .deploy_method_params("mps")
            .and_then(|v| v.get("reboot-string"))
            .filter(|v| !v.is_null())
            .and_then(lava_pipeline::value::scalar_string);
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if self.reboot_string.is_none() {
            ctx.error("Missing 'reboot_string' in device configuration");
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

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn image_keys() {
        assert!(image_key_errors(&keys(&["test_binary"])).is_empty());
        assert_eq!(image_key_errors(&keys(&["kernel"])).len(), 1);
        assert!(image_key_errors(&keys(&["recovery_image", "test_binary_1"])).is_empty());
        assert_eq!(
            image_key_errors(&keys(&["recovery_image", "test_binary", "x"])).len(),
            2
        );
    }
}
