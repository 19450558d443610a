//! The `flasher` deployment: download the images, then run the device's own flashing
//! commands on the dispatcher (`runtime::flasher`).

use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::env::DeployDeviceEnvironment;
use crate::common::lava_overlay::OverlayAction;
use crate::deploy::tftp::image_params;
use lava_pipeline::BlockLookups;
use lava_pipeline::value::{scalar_string, truthy};
use lava_pipeline::{
    Action, Declared, LavaResult, Pipeline, PipelineBuilder, RunContext, StrategyRegistry,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("flasher", |_| Box::new(FlasherRetryAction))
            .device_method_with(
                "flasher",
                "'flasher' not in the device configuration deploy methods",
            )
            .to_only("flasher"),
    );
}

/// `deploy-flasher-retry`: the flashing, retried.
#[derive(Debug, Default)]
pub struct FlasherRetryAction;

#[async_trait]
impl Action for FlasherRetryAction {
    action_identity!(
        "deploy-flasher-retry",
        "FlasherRetryAction",
        "deploy flasher with retry",
        "deploy custom flasher"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(FlasherAction::default())
    }
}

/// `deploy-flasher`: download the images (unless `download: false`), then run the
/// device's flasher `commands` with the files substituted.
#[derive(Debug, Default)]
pub struct FlasherAction {
    path: String,
}

impl FlasherAction {
    /// Where the images are downloaded (relative to the job's temporary directory).
    pub fn path(&self) -> &str {
        &self.path
    }
}

#[async_trait]
impl Action for FlasherAction {
    action_identity!(
        "deploy-flasher",
        "FlasherAction",
        "deploy flasher",
        "deploy custom flasher"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let params = pipeline.params();
        let ns = params
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("common");
        if pipeline.job().test_needs_overlay(ns) {
            pipeline.add(OverlayAction::new())?;
        }
        self.path = download_dir(pipeline, "deploy-flasher");
        let uniquify = params.flag_or("uniquify", true);
        if let Some(images) = params.get("images").and_then(Value::as_mapping) {
            for (key, entry) in images {
                let download = entry
                    .get("download")
                    .map(|v| truthy(Some(v)))
                    .unwrap_or(true);
                if !download {
                    continue;
                }
                let key = scalar_string(key).unwrap_or_default();
                let action = DownloaderAction::new(&key, &self.path, image_params(entry));
                pipeline.add(if uniquify {
                    action
                } else {
                    action.without_uniquify()
                })?;
            }
        }
        if pipeline.job().test_needs_deployment_data(ns) {
            pipeline.add(DeployDeviceEnvironment::new())?;
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let commands = ctx
            .job
            .device
            .deploy_method("flasher")
            .and_then(|v| v.get("commands"));
        if !matches!(commands, Some(Value::Sequence(_))) {
            ctx.error("'commands' should be a list");
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, children: &mut Pipeline) -> LavaResult<()> {
        children.run_actions(ctx).await?;
        crate::runtime::flasher::flash(ctx).await
    }
}
