//! The `nbd` deployment: kernel, initrd and DTB over TFTP, the root filesystem served
//! by an NBD server on the dispatcher.

use crate::common::downloader::DownloaderAction;
use crate::common::lava_overlay::OverlayAction;
use crate::common::power::require_tool;
use crate::common::prepare_overlay::{PrepareKernelAction, kernel_has_type};
use crate::deploy::tftp::{check_tftp_dir, image_params, tftp_layout, tftp_root};
use lava_pipeline::{
    Action, ActionMeta, Declared, LavaResult, PipelineBuilder, Runnable, StrategyRegistry,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::Mapping;
use std::path::PathBuf;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("nbd", |_| Box::new(NbdAction::new()))
            .to("nbd")
            .device_method_with(
                "nbd",
                "\"ndb\" was not in the device configuration deploy methods",
            ),
    );
}

/// The image keys an NBD deployment downloads, in LAVA's order.
pub const NBD_IMAGE_KEYS: [&str; 4] = ["initrd", "kernel", "dtb", "nbdroot"];

/// `nbd-deploy`: download into the TFTP directory, overlay, kernel conversion, then
/// start the NBD server.
#[derive(Debug, Default)]
pub struct NbdAction {
    tftp_dir: Option<PathBuf>,
}

impl NbdAction {
    /// Creates the `nbd-deploy` action.
    pub fn new() -> Self {
        Self::default()
    }

    /// LAVA's parameter checks of an NBD deployment.
    pub fn check(params: &Mapping, errors: &mut Vec<String>) {
        if !params.contains_key("kernel") {
            errors.push("nbd-deploy needs a kernel to deploy".into());
            return;
        }
        if !params.contains_key("nbdroot") {
            errors.push("NBD deployment needs a 'nbdroot' parameter".into());
        }
        if !params.contains_key("initrd") {
            errors.push("NBD deployment needs an 'initrd' parameter".into());
        }
        if params.contains_key("nfsrootfs") {
            errors.push(
                "nfsrootfs cannot be used with NBD deployment, use a e.g. ext3/4 filesystem as 'nbdroot=' parameter"
                    .into(),
            );
        }
        if params.contains_key("ramdisk") {
            errors.push(
                "ramdisk cannot be used with NBD deployment, use a e.g. ext3/4 filesystem as 'initrd' parameter"
                    .into(),
            );
        }
    }
}

#[async_trait]
impl Action for NbdAction {
    action_identity!(
        "nbd-deploy",
        "NbdAction",
        "download files and deploy for using tftp+initrd+nbd",
        "nbd deployment"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let dir = tftp_layout(pipeline, "nbd-deploy").deploy_dir;
        let dir_text = dir.display().to_string();
        self.tftp_dir = Some(dir);
        let params = pipeline.params();
        for key in NBD_IMAGE_KEYS {
            if let Some(value) = params.get(key) {
                pipeline.add(DownloaderAction::new(key, &dir_text, image_params(value)))?;
            }
        }
        pipeline.add(OverlayAction::new())?;
        if kernel_has_type(&params) {
            pipeline.add(PrepareKernelAction::new())?;
        }
        pipeline.add(XnbdAction::new())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        Self::check(&ctx.meta.parameters, &mut errors);
        let stop = errors
            .iter()
            .any(|e| e.ends_with("needs a kernel to deploy"));
        ctx.add_errors(errors);
        if stop {
            return Ok(());
        }
        require_tool("in.tftpd")?;
        require_tool("nbd-server")?;
        let tftpd = tftp_root(ctx.job.parameters.get("dispatcher"))?;
        if let Some(dir) = &self.tftp_dir
            && let Err(message) = check_tftp_dir(dir, &tftpd)
        {
            ctx.error(message);
        }
        Ok(())
    }
}

/// `xnbd-server-deploy`: serve the downloaded `nbdroot` with nbd-server on the port the
/// lava-xnbd protocol chose.
#[derive(Debug, Default)]
pub struct XnbdAction;

impl XnbdAction {
    /// Creates the `xnbd-server-deploy` action.
    pub fn new() -> Self {
        XnbdAction
    }
}

#[async_trait]
impl Action for XnbdAction {
    action_identity!(
        "xnbd-server-deploy",
        "XnbdAction",
        "nbd daemon",
        "nbd daemon"
    );
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nbd_parameter_checks() {
        let p = |y: &str| -> Mapping { serde_yaml::from_str(y).unwrap() };
        let mut errors = Vec::new();
        NbdAction::check(&p("{initrd: {}}"), &mut errors);
        assert_eq!(errors, ["nbd-deploy needs a kernel to deploy"]);
        errors.clear();
        NbdAction::check(&p("{kernel: {}, ramdisk: {}}"), &mut errors);
        assert_eq!(errors.len(), 3);
        errors.clear();
        NbdAction::check(&p("{kernel: {}, initrd: {}, nbdroot: {}}"), &mut errors);
        assert!(errors.is_empty());
    }
}
