//! The `uuu` deploy: download the images NXP's `uuu` writes, applying the overlay.

use crate::common::apply_overlay::{ApplyOverlayImage, ApplyOverlaySparseImage};
use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::fastboot::test_needs_overlay;
use crate::common::lava_overlay::OverlayAction;
use crate::deploy::fastboot::images;
use lava_pipeline::BlockLookups;
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, Declared, LavaResult, PipelineBuilder, StrategyRegistry, action_identity, async_trait,
};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("uuu", |_| Box::new(UUUDeployAction::default()))
            .to("uuu")
            .device_section()
            .check(|_, params| {
                let Some(images) = params.get("images") else {
                    return Err("'images' not in deploy parameters".into());
                };
                if images.get("boot").is_none() {
                    return Err("'boot' image is required, not found in 'images' parameter".into());
                }
                Ok(())
            }),
    );
}

/// `uuu-deploy`.
#[derive(Debug, Default)]
pub struct UUUDeployAction {
    /// Where the images are downloaded (the `root_location` the boot mounts in docker).
    pub root_location: String,
    /// The image keys, which `uuu` commands refer to as `{key}`.
    pub images: Vec<String>,
}

#[async_trait]
impl Action for UUUDeployAction {
    action_identity!(
        "uuu-deploy",
        "UUUAction",
        "deploy images using uuu",
        "uuu deployment"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let needs_overlay = test_needs_overlay(pipeline);
        if needs_overlay {
            pipeline.add(OverlayAction::new())?;
        }
        self.root_location = download_dir(pipeline, "uuu");
        let params = pipeline.params();
        let uniquify = params.flag_or("uniquify", true);
        for (key, image) in images(&params)? {
            self.images.push(key.clone());
            let mut download = DownloaderAction::new(&key, &self.root_location, image.clone());
            if !uniquify {
                download = download.without_uniquify();
            }
            pipeline.add(download)?;
            if truthy(image.get("apply-overlay")) && needs_overlay {
                let use_root = image.get("root_partition").is_some_and(|v| !v.is_null());
                if truthy(image.get("sparse")) {
                    pipeline.add(ApplyOverlaySparseImage::new(&key))?;
                } else {
                    pipeline.add(ApplyOverlayImage::new(&key, use_root))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use lava_pipeline::Device;
    use serde_yaml::Mapping;

    #[test]
    fn strategy_requires_a_boot_image() {
        let device = Device::from_yaml("actions: {deploy: {methods: {}}}", None).unwrap();
        let p = |y: &str| -> Mapping { serde_yaml::from_str(y).unwrap() };
        assert_eq!(
            crate::strategy(lava_pipeline::Section::Deploy, "uuu")
                .accepts(&device, &p("{to: uuu, images: {rootfs: {url: x}}}"))
                .unwrap_err(),
            "'boot' image is required, not found in 'images' parameter"
        );
        assert!(
            crate::strategy(lava_pipeline::Section::Deploy, "uuu")
                .accepts(&device, &p("{to: uuu, images: {boot: {url: x}}}"))
                .is_ok()
        );
    }
}
