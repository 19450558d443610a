//! The `avh` deploy: build the firmware package an Arm Virtual Hardware instance boots.

use crate::common::apply_overlay::{ApplyOverlayAvh, ApplyOverlayImage};
use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::fastboot::test_needs_overlay;
use crate::common::lava_overlay::OverlayAction;
use crate::deploy::fastboot::images;
use lava_pipeline::BlockLookups;
use lava_pipeline::{
    Action, Declared, LavaError, LavaResult, PipelineBuilder, StrategyRegistry, ValidateContext,
    action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("avh", |_| Box::new(AvhRetryAction))
            .device_method_with(
                "avh",
                "'avh' not in the device configuration deploy methods",
            )
            .to_with("avh", None, "'to' parameter is not 'avh'"),
    );
}

/// `deploy-avh-retry`.
#[derive(Debug, Default)]
pub struct AvhRetryAction;

#[async_trait]
impl Action for AvhRetryAction {
    action_identity!(
        "deploy-avh-retry",
        "AvhRetryAction",
        "deploy avh image with retry",
        "deploy avh image"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(AvhDeploy::default())
    }
}

/// The images an AVH deploy needs when it is given separate images.
pub const REQUIRED_IMAGES: [&str; 3] = ["kernel", "dtb", "rootfs"];

/// `deploy-avh`.
#[derive(Debug, Default)]
pub struct AvhDeploy {
    /// The directory the AVH images and firmware package are downloaded to.
    pub path: String,
    /// The device options updated by the job's `options`.
    pub options: Mapping,
}

#[async_trait]
impl Action for AvhDeploy {
    action_identity!(
        "deploy-avh",
        "AvhDeploy",
        "create and upload avh firmware zip package",
        "create and upload avh firmware zip package"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.path = download_dir(pipeline, "avh");
        self.options = pipeline
            .device()
            .deploy_method("avh")
            .and_then(|v| v.get("options"))
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        if let Some(job_options) = pipeline.param("options").and_then(Value::as_mapping) {
            for (k, v) in job_options {
                self.options.insert(k.clone(), v.clone());
            }
        }
        let needs_overlay = test_needs_overlay(pipeline);
        if needs_overlay {
            pipeline.add(OverlayAction::new())?;
        }
        let params = pipeline.params();
        let uniquify = params.flag_or("uniquify", true);
        let download = |key: &str, path: &str, image: Mapping| {
            let action = DownloaderAction::new(key, path, image);
            if uniquify {
                action
            } else {
                action.without_uniquify()
            }
        };
        if params.flag("images") {
            for (key, image) in images(&params)? {
                pipeline.add(download(&key, &self.path, image))?;
                if key == "rootfs" && needs_overlay {
                    pipeline.add(ApplyOverlayImage::new(&key, true))?;
                }
            }
        } else if let Some(package) = params.truthy_value("fw_package") {
            let package = package.as_mapping().cloned().unwrap_or_default();
            pipeline.add(download("fw_package", &self.path, package))?;
            if needs_overlay {
                pipeline.add(ApplyOverlayAvh::new())?;
            }
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let params = ctx.meta.params();
        if let Some(options) = params.get("options")
            && !options.is_mapping()
        {
            return Err(LavaError::job("'deploy.options' should be a dictionary"));
        }
        if self.options.get("model").is_none_or(Value::is_null) {
            return Err(LavaError::job(
                "avh 'options.model' not provided in either device dictionary or job definition",
            ));
        }
        let token = ctx
            .job
            .parameters
            .get("secrets")
            .and_then(|s| s.get("avh_api_token"));
        match token {
            None => {
                return Err(LavaError::job(
                    "'secrets.avh_api_token' key is required for AVH deploy",
                ));
            }
            Some(Value::String(_)) => {}
            Some(_) => return Err(LavaError::job("'secrets.avh_api_token' should be a string")),
        }
        if let Some(images) = params.truthy_value("images") {
            let Some(images) = images.as_mapping() else {
                return Err(LavaError::job("'deploy.images' should be a dictionary"));
            };
            for image in REQUIRED_IMAGES {
                if !images.contains_key(image) {
                    return Err(LavaError::job(format!(
                        "No '{image}' image specified for AVH deploy"
                    )));
                }
            }
            let root_partition = images.get("rootfs").and_then(|r| r.get("root_partition"));
            if ctx.job.test_needs_overlay(ctx.meta.namespace())
                && root_partition.is_none_or(Value::is_null)
            {
                return Err(LavaError::job(
                    "Unable to apply overlay without 'root_partition'",
                ));
            }
        } else if !params.flag("fw_package") {
            return Err(LavaError::job(
                "either 'images' or 'fw_package' is needed to deploy avh",
            ));
        }
        Ok(())
    }
}
