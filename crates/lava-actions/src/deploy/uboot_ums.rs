//! The `u-boot-ums` deployment: download an image and apply the overlay; U-Boot's USB
//! mass storage emulation writes it at boot time.

use crate::common::apply_overlay::ApplyOverlayImage;
use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::env::DeployDeviceEnvironment;
use crate::common::lava_overlay::OverlayAction;
use crate::deploy::tftp::image_params;
use lava_pipeline::{
    Action, Declared, LavaResult, PipelineBuilder, StrategyRegistry, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("u-boot-ums", |_| Box::new(UBootUMSAction::new()))
            .to("u-boot-ums")
            .device_section()
            .param("image", "\"image\" was not in the deploy parameters")
            .device_method_with(
                "u-boot-ums",
                "\"u-boot-ums\" was not in the device configuration deploy methods\"",
            ),
    );
}

/// `uboot-ums-deploy`: download the image, then the overlay into it.
#[derive(Debug, Default)]
pub struct UBootUMSAction {
    path: String,
}

impl UBootUMSAction {
    /// Creates the `uboot-ums-deploy` action.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the image is downloaded (relative to the job's temporary directory).
    pub fn path(&self) -> &str {
        &self.path
    }
}

#[async_trait]
impl Action for UBootUMSAction {
    action_identity!(
        "uboot-ums-deploy",
        "UBootUMSAction",
        "download image and deploy using uboot mass storage emulation",
        "uboot-ums deployment"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.path = download_dir(pipeline, "uboot-ums-deploy");
        let params = pipeline.params();
        let image = params.get("image").map(image_params).unwrap_or_default();
        pipeline.add(DownloaderAction::new("image", &self.path, image))?;
        let ns = params
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("common");
        if pipeline.job().test_needs_overlay(ns) {
            pipeline.add(OverlayAction::new())?;
            pipeline.add(ApplyOverlayImage::new("image", true))?;
            if pipeline.job().test_needs_deployment_data(ns) {
                pipeline.add(DeployDeviceEnvironment::new())?;
            }
        }
        Ok(())
    }
}
