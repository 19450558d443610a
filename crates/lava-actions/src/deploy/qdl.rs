//! The `qdl` deploy: download the qcomflash tarball and put the overlay in its rootfs.

use crate::common::downloader::DownloaderAction;
use crate::common::fastboot::test_needs_overlay;
use crate::common::lava_overlay::OverlayAction;
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, Declared, LavaResult, PipelineBuilder, StrategyRegistry, ValidateContext,
    action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("qdl", |_| Box::new(QDLAction::default()))
            .to("qdl")
            .device_section()
            .param("qcomflash", "'qcomflash' not in deploy parameters"),
    );
}

/// The parameter holding the flat build.
const PARAM_KEY: &str = "qcomflash";

/// `qdl-deploy`.
#[derive(Debug, Default)]
pub struct QDLAction {
    /// `qdl/<namespace>` under the job's temporary directory.
    pub download_dir: String,
}

#[async_trait]
impl Action for QDLAction {
    action_identity!(
        "qdl-deploy",
        "QDLAction",
        "deploy qcomflash tarball using qdl",
        "qdl deployment"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let needs_overlay = test_needs_overlay(pipeline);
        if needs_overlay {
            pipeline.add(OverlayAction::new())?;
        }
        self.download_dir = format!("qdl/{}", pipeline.namespace());
        let image = pipeline
            .param(PARAM_KEY)
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let apply_overlay = truthy(image.get("apply-overlay"));
        let uniquify = pipeline.param("uniquify").is_some_and(|v| truthy(Some(v)));
        let download = DownloaderAction::new(PARAM_KEY, &self.download_dir, image);
        pipeline.add(if uniquify {
            download
        } else {
            download.without_uniquify()
        })?;
        if apply_overlay && needs_overlay {
            let rootfs = pipeline
                .param("rootfs_image")
                .and_then(Value::as_str)
                .unwrap_or("rootfs.img")
                .to_string();
            pipeline.add(crate::common::apply_overlay::ApplyQDLOverlay::new(&rootfs))?;
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !truthy(ctx.meta.parameters.get(PARAM_KEY)) {
            ctx.error(format!(
                "action qdl-deploy can't work without {PARAM_KEY} file"
            ));
        }
        Ok(())
    }
}
