//! The `tmpfs` deploy family: images downloaded for QEMU (`deployimages`), with the
//! overlay as a qcow2 guest drive.

use crate::common::apply_overlay::ApplyOverlayGuest;
use crate::common::downloader::{DownloaderAction, download_dir, download_path};
use crate::common::env::DeployDeviceEnvironment;
use crate::common::lava_overlay::OverlayAction;
use lava_pipeline::params::namespace;
use lava_pipeline::{
    Action, Declared, LavaError, LavaResult, Pipeline, PipelineBuilder, RunContext,
    StrategyRegistry, action_identity, async_trait,
};
use serde_yaml::Value;

/// `deployimages`: download every image (and `uefi`), with the overlay when a test needs
/// it.
#[derive(Debug, Default)]
pub struct DeployImagesAction {
    /// Whether the block deploys a `uefi` firmware (QEMU then gets `-L <its directory>`).
    uefi: bool,
}

impl DeployImagesAction {
    /// The action of a block that deploys a `uefi` firmware (`uefi`) or not; `populate`
    /// sets it from the block itself.
    pub fn new(uefi: bool) -> Self {
        DeployImagesAction { uefi }
    }
}

#[async_trait]
impl Action for DeployImagesAction {
    action_identity!(
        "deployimages",
        "DeployImagesAction",
        "deploy images",
        "deploy images"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let params = pipeline.params();
        let ns = namespace(&params).to_string();
        let job = pipeline.job();
        let path = download_dir(pipeline, "images");
        if job.test_needs_overlay(&ns) {
            pipeline.add(OverlayAction::new())?;
        }
        if job.test_needs_deployment_data(&ns) {
            pipeline.add(DeployDeviceEnvironment::new())?;
        }
        if let Some(uefi) = params.get("uefi") {
            self.uefi = true;
            let uefi_path = download_dir(pipeline, "uefi");
            pipeline.add(DownloaderAction::new(
                "uefi",
                &uefi_path,
                uefi.as_mapping().cloned().unwrap_or_default(),
            ))?;
        }
        let images = params
            .get("images")
            .and_then(Value::as_mapping)
            .ok_or_else(|| LavaError::job("Missing 'images' in the deploy block"))?;
        for (key, image) in images {
            let key = lava_pipeline::value::scalar_string(key).unwrap_or_default();
            pipeline.add(DownloaderAction::new(
                &key,
                &path,
                image.as_mapping().cloned().unwrap_or_default(),
            ))?;
        }
        if job.test_needs_overlay(&ns) {
            pipeline.add(ApplyOverlayGuest::new())?;
        }
        Ok(())
    }
    /// Records the UEFI firmware's directory (`deployimages/image/uefi_dir`, where the
    /// `uefi` download lands) for QEMU's `-L`, as LAVA does, then runs the downloads.
    async fn run(&mut self, ctx: &mut RunContext, children: &mut Pipeline) -> LavaResult<()> {
        if self.uefi {
            let dir = download_path(ctx, "uefi");
            ctx.set_data(
                "deployimages",
                "image",
                "uefi_dir",
                dir.display().to_string(),
            );
        }
        children.run_actions(ctx).await
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("tmpfs", |_| Box::new(DeployImagesAction::default()))
            .device_method_with(
                "image",
                "\"image\" is not in the device configuration deploy methods",
            )
            .to_only("tmpfs")
            .param("images", "\"images\" was not in the deployment parameters")
            .check(|_, params| match params.get("type") {
                Some(kind) if kind.as_str() != Some("monitor") => {
                    Err("\"type\" parameter was set but it was not \"monitor\"".into())
                }
                _ => Ok(()),
            }),
    );
}
