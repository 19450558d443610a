//! The `fvp` deploy: download the images an Arm Fixed Virtual Platform model boots.

use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::fastboot::test_needs_overlay;
use crate::common::lava_overlay::OverlayAction;
use crate::deploy::fastboot::images;
use lava_pipeline::{
    Action, Declared, LavaError, LavaResult, PipelineBuilder, StrategyRegistry, ValidateContext,
    action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("fvp", |_| Box::new(FVPDeploy::default())).to_with(
            "fvp",
            None,
            "'to' was not fvp",
        ),
    );
}

/// Add one downloader per image, honouring the block's `uniquify`.
pub(crate) fn add_downloads(
    pipeline: &mut PipelineBuilder<'_>,
    path: &str,
    uniquify_default: bool,
) -> LavaResult<()> {
    let params = pipeline.params();
    let uniquify = params
        .get("uniquify")
        .map(|v| lava_pipeline::value::truthy(Some(v)))
        .unwrap_or(uniquify_default);
    for (key, image) in images(&params)? {
        let download = DownloaderAction::new(&key, path, image);
        pipeline.add(if uniquify {
            download
        } else {
            download.without_uniquify()
        })?;
    }
    Ok(())
}

/// `fvp-deploy`.
#[derive(Debug, Default)]
pub struct FVPDeploy {
    /// The directory the model's images are downloaded to.
    pub image_path: String,
}

#[async_trait]
impl Action for FVPDeploy {
    action_identity!(
        "fvp-deploy",
        "FVPDeploy",
        "Download images for use with fvp",
        "download images for use with fvp"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.image_path = download_dir(pipeline, "fvp");
        if test_needs_overlay(pipeline) {
            pipeline.add(OverlayAction::new())?;
        }
        add_downloads(pipeline, &self.image_path.clone(), true)
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let params = ctx.meta.params();
        let Some(images) = params.get("images") else {
            return Err(LavaError::job("No 'images' specified on FVP deploy"));
        };
        let disk = params.get("format").and_then(Value::as_str) == Some("disk");
        for image in images.as_mapping().into_iter().flat_map(|m| m.values()) {
            if image.get("overlays").is_some() && disk && image.get("partition").is_none() {
                ctx.error("Missing partition value for 'overlays' value for FVPDeploy.");
            }
        }
        Ok(())
    }
}
