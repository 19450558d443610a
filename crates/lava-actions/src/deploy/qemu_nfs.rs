//! The `qemu-nfs` deployment (`to: nfs` on a QEMU device): the kernel, initrd and
//! NFS root of the block's `images` downloaded, the root unpacked into a directory of the
//! job's scratch directory (which the worker exports over NFS), the LAVA overlay applied
//! into it. `boot: method: qemu-nfs` then starts QEMU with the kernel pointed at that
//! root (see `runtime::qemu`).
//!
//! LAVA picks this strategy instead of the plain `nfs` one whenever the device has
//! QEMU's `qemu-nfs` boot method: `nfs` declines devices that also list the `image`
//! deploy method, as LAVA's QEMU device type does.

use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::env::DeployDeviceEnvironment;
use crate::common::lava_overlay::OverlayAction;
use crate::common::prepare_overlay::ApplyOverlayTftp;
use crate::deploy::tftp::image_params;
use lava_pipeline::params::namespace;
use lava_pipeline::value::{scalar_string, truthy};
use lava_pipeline::{
    Action, Declared, ErrorKind, LavaError, LavaResult, Pipeline, PipelineBuilder, RunContext,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("qemu-nfs", |_| Box::new(DeployQemuNfsAction::new()))
            .device_method_with(
                "nfs",
                "\"nfs\" is not in the device configuration deploy methods",
            )
            .to_with("nfs", None, "\"to\" is not \"nfs\"")
            .check(|device, _| {
                if device.has_boot_method("qemu-nfs") {
                    Ok(())
                } else {
                    Err("\"qemu-nfs\" is not in the device configuration boot methods".into())
                }
            })
            .check(|_, params| match params.get("type") {
                Some(kind) if kind.as_str() != Some("monitor") => {
                    Err("\"type\" was set, but it was not \"monitor\"".into())
                }
                _ => Ok(()),
            }),
    );
}

/// The block's `images` mapping (empty when the block has none).
fn images(params: &Mapping) -> Mapping {
    params
        .get("images")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default()
}

/// `deploy-qemu-nfs`: download `uefi` and every image, unpack the NFS root, then the
/// overlay into it when a test needs one.
#[derive(Debug, Default)]
pub struct DeployQemuNfsAction {
    /// Whether the block deploys a `uefi` firmware (QEMU then gets `-L <its directory>`).
    uefi: bool,
}

impl DeployQemuNfsAction {
    /// Creates the `deploy-qemu-nfs` action.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Action for DeployQemuNfsAction {
    action_identity!(
        "deploy-qemu-nfs",
        "DeployQemuNfsAction",
        "deploy qemu with NFS",
        "deploy NFS for QEMU"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let params = pipeline.params();
        let ns = namespace(&params).to_string();
        let job = pipeline.job();
        let path = download_dir(pipeline, "images");
        if let Some(uefi) = params.get("uefi") {
            self.uefi = true;
            let uefi_path = download_dir(pipeline, "uefi");
            pipeline.add(DownloaderAction::new(
                "uefi",
                &uefi_path,
                image_params(uefi),
            ))?;
        }
        let images = params
            .get("images")
            .and_then(Value::as_mapping)
            .ok_or_else(|| LavaError::job("Missing 'images' in the deploy block"))?;
        for (key, image) in images {
            let key = scalar_string(key).unwrap_or_default();
            pipeline.add(DownloaderAction::new(&key, &path, image_params(image)))?;
        }
        pipeline.add(ExtractNfsAction::new())?;
        if job.test_needs_overlay(&ns) {
            pipeline.add(OverlayAction::new())?;
            pipeline.add(ApplyOverlayTftp::new())?;
        }
        if job.test_needs_deployment_data(&ns) {
            pipeline.add(DeployDeviceEnvironment::new())?;
        }
        Ok(())
    }
    /// Records the UEFI firmware's directory (`deployimages/image/uefi_dir`, where QEMU's
    /// `-L` looks), as LAVA does, then runs the children.
    async fn run(&mut self, ctx: &mut RunContext, children: &mut Pipeline) -> LavaResult<()> {
        if self.uefi {
            let dir = crate::common::downloader::download_path(ctx, "uefi");
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

/// `qemu-nfs-deploy`: unpack `images.nfsrootfs` (optionally below its `prefix`) into a
/// directory of the job's scratch directory and record it as
/// `extract-rootfs/file/nfsroot`, the directory QEMU's kernel mounts as its root.
#[derive(Debug, Default)]
pub struct ExtractNfsAction;

impl ExtractNfsAction {
    /// Creates the `qemu-nfs-deploy` action.
    pub fn new() -> Self {
        ExtractNfsAction
    }

    /// LAVA's checks of `images.nfsrootfs.prefix`, one message per problem into `errors`.
    pub fn check(params: &Mapping, errors: &mut Vec<String>) {
        let images = images(params);
        let Some(entry) = images.get("nfsrootfs").filter(|v| truthy(Some(v))) else {
            return;
        };
        if let Some(prefix) = entry.get("prefix") {
            let prefix = scalar_string(prefix).unwrap_or_default();
            if prefix.starts_with('/') {
                errors.push("prefix must not be an absolute path".into());
            }
            if !prefix.ends_with('/') {
                errors.push("prefix must be a directory and end with /".into());
            }
        }
    }
}

#[async_trait]
impl Action for ExtractNfsAction {
    action_identity!(
        "qemu-nfs-deploy",
        "ExtractNfsAction",
        "deploy nfsrootfs for QEMU",
        "NFS deployment for QEMU"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        Self::check(&ctx.meta.parameters, &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let images = images(&ctx.meta().parameters);
        let Some(entry) = images.get("nfsrootfs").filter(|v| truthy(Some(v))) else {
            return Ok(());
        };
        let prefix = entry.get("prefix").and_then(scalar_string);
        crate::runtime::tftp::extract_qemu_nfsrootfs(ctx, prefix.as_deref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lava_pipeline::Device;

    fn block(text: &str) -> Mapping {
        serde_yaml::from_str(text).unwrap()
    }

    const QEMU_DEVICE: &str = "actions:\n  deploy:\n    methods:\n      nfs: null\n      \
        image: null\n  boot:\n    methods:\n      qemu: null\n      qemu-nfs: null\n";

    #[test]
    fn a_qemu_device_takes_nfs_deploys_as_qemu_nfs() {
        let device = Device::from_yaml(QEMU_DEVICE, None).unwrap();
        let registry = crate::registry();
        let chosen = registry
            .select(
                lava_pipeline::Section::Deploy,
                &device,
                &block("{to: nfs, images: {}}"),
            )
            .unwrap();
        assert_eq!(chosen.name(), "qemu-nfs");
    }

    #[test]
    fn declines_as_lava_does() {
        let strategy = crate::strategy(lava_pipeline::Section::Deploy, "qemu-nfs");
        let device = Device::from_yaml(QEMU_DEVICE, None).unwrap();
        assert_eq!(
            strategy.accepts(&device, &block("{to: tmpfs}")),
            Err("\"to\" is not \"nfs\"".into())
        );
        assert_eq!(
            strategy.accepts(&device, &block("{to: nfs, type: other}")),
            Err("\"type\" was set, but it was not \"monitor\"".into())
        );
        let no_boot = Device::from_yaml(
            "actions:\n  deploy:\n    methods:\n      nfs: null\n  boot:\n    methods:\n      \
             qemu: null\n",
            None,
        )
        .unwrap();
        assert_eq!(
            strategy.accepts(&no_boot, &block("{to: nfs}")),
            Err("\"qemu-nfs\" is not in the device configuration boot methods".into())
        );
    }

    #[test]
    fn prefix_checks() {
        let mut errors = Vec::new();
        ExtractNfsAction::check(
            &block("{images: {nfsrootfs: {url: x, prefix: /abs}}}"),
            &mut errors,
        );
        assert_eq!(
            errors,
            [
                "prefix must not be an absolute path",
                "prefix must be a directory and end with /"
            ]
        );
        errors.clear();
        ExtractNfsAction::check(
            &block("{images: {nfsrootfs: {url: x, prefix: rel/}}}"),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
    }
}
