//! The `nfs` deployment: download and unpack a root filesystem into a directory the
//! dispatcher exports over NFS, with modules and the LAVA overlay.

use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::env::DeployDeviceEnvironment;
use crate::common::lava_overlay::OverlayAction;
use crate::common::prepare_overlay::{ApplyOverlayTftp, ExtractModules, ExtractNfsRootfs};
use crate::deploy::tftp::image_params;
use lava_pipeline::params::namespace;
use lava_pipeline::{
    Action, Declared, LavaResult, PipelineBuilder, StrategyRegistry, ValidateContext,
    action_identity, async_trait,
};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("nfs", |_| Box::new(NfsAction::new()))
            .to("nfs")
            .no_device_method(
                "image",
                "\"image\" was in the device configuration deploy methods",
            )
            .device_method_with(
                "nfs",
                "\"nfs\" was not in the device configuration deploy methods\"",
            ),
    );
}

/// `nfs-deploy`: download, unpack, add modules and overlay.
#[derive(Debug, Default)]
pub struct NfsAction {
    download_dir: String,
}

impl NfsAction {
    /// Creates the `nfs-deploy` action.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the files are downloaded (relative to the job's temporary directory).
    pub fn download_dir(&self) -> &str {
        &self.download_dir
    }
}

#[async_trait]
impl Action for NfsAction {
    action_identity!(
        "nfs-deploy",
        "NfsAction",
        "deploy nfsrootfs",
        "NFS deployment"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.download_dir = download_dir(pipeline, "nfs-deploy");
        let params = pipeline.params();
        for key in ["nfsrootfs", "modules"] {
            if let Some(value) = params.get(key) {
                pipeline.add(DownloaderAction::new(
                    key,
                    &self.download_dir,
                    image_params(value),
                ))?;
            }
        }
        pipeline.add(ExtractNfsRootfs::new())?;
        pipeline.add(OverlayAction::new())?;
        pipeline.add(ExtractModules::new())?;
        pipeline.add(ApplyOverlayTftp::new())?;
        if pipeline
            .job()
            .test_needs_deployment_data(namespace(&params))
        {
            pipeline.add(DeployDeviceEnvironment::new())?;
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let params = &ctx.meta.params();
        if params.contains_key("nfsrootfs") && params.contains_key("persistent_nfs") {
            ctx.error("Only one of nfsrootfs or persistent_nfs can be specified");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use lava_pipeline::Device;
    use serde_yaml::Mapping;

    #[test]
    fn nfs_is_refused_on_image_devices() {
        let p: Mapping = serde_yaml::from_str("{to: nfs}").unwrap();
        let image = Device::from_yaml(
            "actions:\n  deploy:\n    methods:\n      image: null\n      nfs: null\n",
            None,
        )
        .unwrap();
        assert_eq!(
            crate::strategy(lava_pipeline::Section::Deploy, "nfs").accepts(&image, &p),
            Err("\"image\" was in the device configuration deploy methods".into())
        );
        let nfs = Device::from_yaml("actions:\n  deploy:\n    methods:\n      nfs: null\n", None)
            .unwrap();
        assert!(
            crate::strategy(lava_pipeline::Section::Deploy, "nfs")
                .accepts(&nfs, &p)
                .is_ok()
        );
    }
}
