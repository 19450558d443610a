//! The `recovery` deployment: download firmware images for a device switched into
//! recovery mode (the boot `recovery` method does the switching).

use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::power::ConnectDevice;
use crate::deploy::tftp::image_params;
use lava_pipeline::value::scalar_string;
use lava_pipeline::{
    Action, Declared, LavaResult, PipelineBuilder, StrategyRegistry, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("recovery", |_| Box::new(RecoveryModeAction::default()))
            .device_method_with(
                "recovery",
                "'recovery' not in the device configuration deploy methods",
            )
            .to_only("recovery")
            .param("images", "\"images\" is not in the deployment parameters"),
    );
}

/// `deploy-recovery-mode`: download the images; connect when the recovery method is
/// tagged `serial`.
#[derive(Debug, Default)]
pub struct RecoveryModeAction {
    recovery_dir: String,
}

impl RecoveryModeAction {
    /// Where the images are downloaded (relative to the job's temporary directory).
    pub fn recovery_dir(&self) -> &str {
        &self.recovery_dir
    }
}

#[async_trait]
impl Action for RecoveryModeAction {
    action_identity!(
        "deploy-recovery-mode",
        "RecoveryModeAction",
        "deploy firmware by switching to recovery mode",
        "deploy firmware in recovery mode"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.recovery_dir = download_dir(pipeline, "deploy-recovery-mode");
        let params = pipeline.params();
        if let Some(images) = params.get("images").and_then(Value::as_mapping) {
            for (key, entry) in images {
                let key = scalar_string(key).unwrap_or_default();
                pipeline.add(DownloaderAction::new(
                    &key,
                    &self.recovery_dir,
                    image_params(entry),
                ))?;
            }
        }
        let serial = pipeline
            .device()
            .deploy_method("recovery")
            .and_then(|v| v.get("tags"))
            .and_then(Value::as_sequence)
            .is_some_and(|tags| tags.iter().any(|t| t.as_str() == Some("serial")));
        if serial {
            pipeline.add(ConnectDevice::new())?;
        }
        Ok(())
    }
}
