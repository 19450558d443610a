//! The `qdl` deploy: download the qcomflash tarball and put the overlay in its rootfs.

use crate::common::downloader::DownloaderAction;
use crate::common::fastboot::test_needs_overlay;
use crate::common::lava_overlay::OverlayAction;
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Declared, ErrorKind, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
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
            pipeline.add(ApplyQDLOverlay::new(&rootfs))?;
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

// TODO(lead): replace with common::apply_overlay::ApplyQDLOverlay once it exists.
/// `apply-overlay-qdl`: put the overlay into the rootfs image of the flat build.
#[derive(Debug, Default)]
struct ApplyQDLOverlay {
    rootfs_image: String,
}

impl ApplyQDLOverlay {
    fn new(rootfs_image: &str) -> Self {
        ApplyQDLOverlay {
            rootfs_image: rootfs_image.to_string(),
        }
    }
}

#[async_trait]
impl Action for ApplyQDLOverlay {
    action_identity!(
        "apply-overlay-qdl",
        "ApplyQDLOverlay",
        "apply overlay to image in qcomflash tarball",
        "apply overlay to image in qcomflash tarball"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if self.rootfs_image.is_empty() {
            ctx.error("rootfs_image is empty or missing");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}
