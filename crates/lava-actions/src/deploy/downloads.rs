//! The `downloads` deploy family: only download files (into `downloads/<namespace>`),
//! optionally post-processed in a Docker container.

use crate::common::downloader::DownloaderAction;
use crate::common::lava_overlay::OverlayAction;
use lava_pipeline::BlockLookups;
use lava_pipeline::params::namespace;
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Declared, LavaResult, PipelineBuilder, Runnable, StrategyRegistry,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// `downloads`: download the images without deploying them.
#[derive(Debug, Default)]
pub struct DownloadsAction {
    /// `downloads/<namespace>` under the job's temporary directory.
    pub download_dir: String,
}

#[async_trait]
impl Action for DownloadsAction {
    action_identity!(
        "downloads",
        "DownloadsAction",
        "Just downloads files",
        "downloads files"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let params = pipeline.params();
        let ns = namespace(&params).to_string();
        if pipeline.job().test_needs_overlay(&ns) {
            pipeline.add(OverlayAction::new())?;
        }
        self.download_dir = format!("downloads/{ns}");
        let uniquify = params.flag("uniquify");
        if let Some(images) = params.get("images").and_then(Value::as_mapping) {
            for (key, image) in images {
                let key = lava_pipeline::value::scalar_string(key).unwrap_or_default();
                let mut download = DownloaderAction::new(
                    &key,
                    &self.download_dir,
                    image.as_mapping().cloned().unwrap_or_default(),
                );
                download.uniquify = uniquify;
                pipeline.add(download)?;
            }
        }
        let docker = params
            .get("postprocess")
            .and_then(|p| p.get("docker"))
            .filter(|d| truthy(Some(d)));
        if let Some(docker) = docker {
            let steps = docker
                .get("steps")
                .and_then(Value::as_sequence)
                .map(|s| {
                    s.iter()
                        .filter_map(lava_pipeline::value::scalar_string)
                        .collect()
                })
                .unwrap_or_default();
            pipeline.add(PostprocessWithDocker {
                path: self.download_dir.clone(),
                steps,
            })?;
        }
        Ok(())
    }
}

/// `download-postprocess-docker`: run `postprocess.docker.steps` over the downloads.
#[derive(Debug)]
pub struct PostprocessWithDocker {
    /// The downloads directory the steps run in.
    pub path: String,
    /// The shell steps, run in order (`postprocess.docker.steps`).
    pub steps: Vec<String>,
}

#[async_trait]
impl Action for PostprocessWithDocker {
    action_identity!(
        "download-postprocess-docker",
        "PostprocessWithDocker",
        "Postprocess downloaded images with Docker",
        "download-postprocess"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if self.steps.is_empty() {
            ctx.error("postprocessing steps missing");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("downloads", |_| Box::new(DownloadsAction::default())).to("downloads"),
    );
}
