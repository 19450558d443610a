//! The `download` deploy family: put the device in fastboot mode where needed and
//! download the images (`download-deploy`).

use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::fastboot::{EnterFastbootAction, UBootEnterFastbootAction};
use crate::common::lava_overlay::OverlayAction;
use crate::common::power::{ConnectDevice, ResetDevice};
use lava_pipeline::params::namespace;
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, Declared, LavaError, LavaResult, PipelineBuilder, StrategyRegistry, action_identity,
    async_trait,
};
use serde_yaml::{Mapping, Value};

/// Add a download per entry of the block's `images`.
pub(crate) fn add_image_downloads(
    pipeline: &mut PipelineBuilder<'_>,
    images: &Mapping,
    path: &str,
) -> LavaResult<()> {
    for (key, image) in images {
        let key = lava_pipeline::value::scalar_string(key).unwrap_or_default();
        pipeline.add(DownloaderAction::new(
            &key,
            path,
            image.as_mapping().cloned().unwrap_or_default(),
        ))?;
    }
    Ok(())
}

/// `download-deploy`: power the device into fastboot, then download the images.
#[derive(Debug, Default)]
pub struct DownloadAction {
    /// Where the images go.
    pub download_dir: String,
}

#[async_trait]
impl Action for DownloadAction {
    action_identity!(
        "download-deploy",
        "DownloadAction",
        "download files",
        "download deployment"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let params = pipeline.params();
        let device = pipeline.device();
        if truthy(device.lookup(&["fastboot_via_uboot"])) {
            pipeline.add(ConnectDevice::new())?;
            pipeline.add(UBootEnterFastbootAction::new())?;
        } else if device.has_command("hard_reset") {
            pipeline.add(ConnectDevice::new())?;
            pipeline.add(ResetDevice::new())?;
        } else {
            pipeline.add(EnterFastbootAction::new())?;
        }
        self.download_dir = download_dir(pipeline, "download");
        let images = params
            .get("images")
            .and_then(Value::as_mapping)
            .ok_or_else(|| LavaError::job("Missing 'images' in the deploy block"))?;
        add_image_downloads(pipeline, images, &self.download_dir.clone())?;
        if pipeline.job().test_needs_overlay(namespace(&params)) {
            pipeline.add(OverlayAction::new())?;
        }
        Ok(())
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("download", |_| Box::new(DownloadAction::default())).to("download"),
    );
}
