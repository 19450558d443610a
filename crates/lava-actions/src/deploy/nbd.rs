//! The `nbd` deployment: kernel, initrd and DTB over TFTP, the root filesystem served
//! by an NBD server on the dispatcher (Debian's `nbd-server` where LAVA runs
//! `xnbd-server`: see [`crate::runtime::nbd`]).
//!
//! `nbd-deploy` records the port the job's `lava-xnbd` protocol chose
//! (`nbd-deploy/nbd/{nbd_server_port,nbd_server_ip}`), downloads kernel, initrd and DTB under
//! the TFTP root and the `nbdroot` image into the job's scratch directory, builds the test
//! overlay (which, as in LAVA, is not written into the image: a job fetches it after boot
//! with `transfer_overlay`), and `xnbd-server-deploy` starts the server, owned by the
//! protocol, which ends it at finalize.

use crate::common::downloader::DownloaderAction;
use crate::common::lava_overlay::OverlayAction;
use crate::common::power::require_tool;
use crate::common::prepare_overlay::{PrepareKernelAction, kernel_has_type};
use crate::deploy::tftp::{check_tftp_dir, image_params, tftp_layout, tftp_root};
use crate::protocols::xnbd::XnbdProtocol;
use crate::runtime::boot_commands::dispatcher_ip;
use crate::runtime::nbd::{self, NbdServer};
use crate::runtime::tftp::{self, TftpLayout};
use lava_pipeline::value::scalar_string;
use lava_pipeline::{
    Action, Declared, LavaError, LavaResult, Pipeline, PipelineBuilder, RunContext,
    StrategyRegistry, ValidateContext, action_identity, async_trait, with_protocol,
};
use serde_yaml::{Mapping, Value};
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
    layout: Option<TftpLayout>,
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
        let layout = tftp_layout(pipeline, "nbd-deploy");
        let dir_text = layout.deploy_dir.display().to_string();
        self.layout = Some(layout);
        // The image is served by nbd-server, not TFTP: it goes to the job's scratch directory.
        let image_dir = pipeline
            .job()
            .scratch_dir
            .join("downloads")
            .display()
            .to_string();
        let params = pipeline.params();
        for key in NBD_IMAGE_KEYS {
            if let Some(value) = params.get(key) {
                let dir = if key == "nbdroot" {
                    &image_dir
                } else {
                    &dir_text
                };
                pipeline.add(DownloaderAction::new(key, dir, image_params(value)))?;
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
        if let Some(layout) = &self.layout
            && let Err(message) = check_tftp_dir(&layout.deploy_dir, &tftpd)
        {
            ctx.error(message);
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, children: &mut Pipeline) -> LavaResult<()> {
        let layout = self
            .layout
            .clone()
            .ok_or_else(|| LavaError::bug("nbd-deploy run before populate"))?;
        tftp::start_deploy(ctx, &layout)?;
        ctx.set_data(
            "nbd-deploy",
            "tftp",
            "tftp_dir",
            layout.deploy_dir.display().to_string(),
        );
        if ctx.meta().parameters.contains_key("initrd") {
            ctx.set_data("tftp-deploy", "tftp", "ramdisk", true);
        }
        ctx.set_data("nbd-deploy", "nbd", "initrd", true);
        // The `set_port` call of the block's `protocols:` list was made before this run.
        if let Some(port) = with_protocol(&ctx.protocols, XnbdProtocol::assigned_port).flatten() {
            let dispatcher = ctx.job.parameters.get("dispatcher");
            let ip = dispatcher_ip(dispatcher, None).ok_or_else(|| {
                LavaError::infrastructure("Unable to find dispatcher 'default' gateway")
            })?;
            ctx.set_data("nbd-deploy", "nbd", "nbd_server_port", u64::from(port));
            ctx.set_data("nbd-deploy", "nbd", "nbd_server_ip", ip);
        }
        children.run_actions(ctx).await?;
        tftp::finish_deploy(ctx, &layout)
    }
}

/// `xnbd-server-deploy`: serve the downloaded `nbdroot` with nbd-server on the port the
/// lava-xnbd protocol chose; the protocol owns the server and ends it at finalize.
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
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let name = ctx.meta().name.clone();
        ctx.logger.debug(format!("{name}: starting nbd-server"));
        let root = ctx
            .get_data("download-action", "nbdroot", "file")
            .and_then(scalar_string)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| LavaError::job("nbdroot was not downloaded"))?;
        let port = ctx
            .get_data("nbd-deploy", "nbd", "nbd_server_port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| {
                LavaError::job(
                    "NBD server port is unset (the job needs 'protocols: lava-xnbd: port: auto' \
                     and a 'set_port' request for nbd-deploy in the deploy block's protocols)",
                )
            })?;
        let ip = ctx
            .get_data("nbd-deploy", "nbd", "nbd_server_ip")
            .and_then(scalar_string)
            .unwrap_or_else(|| "None".into());
        ctx.logger.debug(format!(
            "NBD-IP: {ip}, NBD-PORT: {port}, NBD-ROOT: {}",
            root.display()
        ));
        let server = NbdServer::new(&ctx.job.scratch_dir, port, &root);
        // Owned before it starts: finalize ends whatever a failed start left running.
        let owned = with_protocol(&ctx.protocols, |p: &XnbdProtocol| p.own(server.clone()));
        if owned.is_none() {
            return Err(LavaError::bug(
                "xnbd-server-deploy ran without the job's lava-xnbd protocol",
            ));
        }
        nbd::start(&ctx.logger, &server, &ctx.job.id, ctx.deadline()).await?;
        ctx.logger
            .debug(format!("{name}: starting nbd-server done"));
        Ok(())
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
