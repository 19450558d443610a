//! The `tftp` deployment: download kernel, ramdisk, DTB, NFS root filesystem, modules...
//! into a directory served by the TFTP daemon, then prepare the overlay.

use crate::common::downloader::DownloaderAction;
use crate::common::env::DeployDeviceEnvironment;
use crate::common::lava_overlay::OverlayAction;
use crate::common::power::require_tool;
use crate::common::prepare_overlay::PrepareOverlayTftp;
use crate::runtime::tftp::{self, TftpLayout};
use lava_pipeline::params::namespace;
use lava_pipeline::{
    Action, Declared, LavaError, LavaResult, Pipeline, PipelineBuilder, RunContext,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("tftp", |_| Box::new(TftpAction::new()))
            .to("tftp")
            .device_method_with(
                "tftp",
                "\"tftp\" was not in the device configuration deploy methods\"",
            ),
    );
}

/// The tftpd-hpa configuration LAVA reads the served directory from.
pub const TFTPD_CONFIG: &str = "/etc/default/tftpd-hpa";
/// tftpd-hpa's default served directory.
pub const DEFAULT_TFTPD_DIR: &str = "/srv/tftp";

/// `TFTP_DIRECTORY` of a tftpd-hpa configuration text (shell-style `KEY="value"`).
pub fn tftp_directory_setting(config: &str) -> Option<String> {
    config.lines().find_map(|line| {
        let (key, value) = line.trim().split_once('=')?;
        (key.trim() == "TFTP_DIRECTORY").then(|| {
            value
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_string()
        })
    })
}

/// LAVA's `tftpd_dir()`: the directory tftpd-hpa serves, or an InfrastructureError.
pub fn tftpd_dir() -> LavaResult<PathBuf> {
    let text = std::fs::read_to_string(TFTPD_CONFIG)
        .map_err(|_| LavaError::infrastructure("Unable to identify tftpd directory"))?;
    let dir = tftp_directory_setting(&text)
        .ok_or_else(|| LavaError::infrastructure("Unable to identify tftpd directory"))?;
    Ok(std::fs::canonicalize(&dir).unwrap_or_else(|_| PathBuf::from(dir)))
}

/// The directory the TFTP server serves, for a job whose dispatcher configuration is
/// `dispatcher`: its `tftp_dir` (a lava-rs key, for a worker whose TFTP server is not
/// tftpd-hpa or not the system's), else tftpd-hpa's `TFTP_DIRECTORY` ([`tftpd_dir`]).
pub fn tftp_root(dispatcher: Option<&Value>) -> LavaResult<PathBuf> {
    match dispatcher
        .and_then(|d| d.get("tftp_dir"))
        .and_then(lava_pipeline::value::scalar_string)
    {
        Some(dir) => Ok(std::fs::canonicalize(&dir).unwrap_or_else(|_| PathBuf::from(dir))),
        None => tftpd_dir(),
    }
}

/// Where a TFTP-served deployment puts its files: `<root>/<prefix><job id>/
/// <action>-<level>` (LAVA's `mkdtemp` under the TFTP root, named per level instead of at
/// random). The root falls back to tftpd-hpa's default while building; validation reports
/// a missing configuration.
pub fn tftp_layout(pipeline: &PipelineBuilder<'_>, action: &str) -> TftpLayout {
    let dispatcher = pipeline.job().parameters.get("dispatcher");
    let root = tftp_root(dispatcher).unwrap_or_else(|_| PathBuf::from(DEFAULT_TFTPD_DIR));
    let prefix = dispatcher
        .and_then(|d| d.get("prefix"))
        .and_then(lava_pipeline::value::scalar_string)
        .unwrap_or_default();
    TftpLayout::new(
        &root,
        &prefix,
        &pipeline.job().id,
        action,
        pipeline.parent_level().unwrap_or("0"),
    )
}

/// LAVA's check that a TFTP deployment directory is served by tftpd (or, for unit
/// tests, lives in the temporary directory).
pub fn check_tftp_dir(dir: &Path, tftpd: &Path) -> Result<(), String> {
    if dir.starts_with(tftpd) || dir.starts_with(std::env::temp_dir()) {
        Ok(())
    } else {
        Err("tftpd directory is not configured correctly, see /etc/default/tftpd-hpa".into())
    }
}

/// The mapping parameters of an image entry (`kernel: {url: ...}`).
pub fn image_params(value: &Value) -> Mapping {
    value.as_mapping().cloned().unwrap_or_default()
}

/// The image keys a TFTP deployment downloads, in LAVA's order.
pub const TFTP_IMAGE_KEYS: [&str; 8] = [
    "ramdisk",
    "kernel",
    "dtb",
    "nfsrootfs",
    "modules",
    "preseed",
    "tee",
    "dtbo",
];

/// `tftp-deploy`: download the files into the TFTP directory and prepare them.
#[derive(Debug, Default)]
pub struct TftpAction {
    /// Where the files go (under the TFTP root).
    layout: Option<TftpLayout>,
}

impl TftpAction {
    /// Creates the `tftp-deploy` action.
    pub fn new() -> Self {
        Self::default()
    }

    /// The download directory chosen when the pipeline was built.
    pub fn tftp_dir(&self) -> Option<&Path> {
        self.layout.as_ref().map(|l| l.deploy_dir.as_path())
    }
}

#[async_trait]
impl Action for TftpAction {
    action_identity!(
        "tftp-deploy",
        "TftpAction",
        "download files and deploy using tftp",
        "tftp deployment"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let layout = tftp_layout(pipeline, "tftp-deploy");
        let dir = layout.deploy_dir.clone();
        let dir_text = dir.display().to_string();
        self.layout = Some(layout);
        let params = pipeline.params();
        if pipeline.job().test_needs_overlay(namespace(&params)) {
            pipeline.add(OverlayAction::new())?;
        }
        for key in TFTP_IMAGE_KEYS {
            let Some(value) = params.get(key) else {
                continue;
            };
            if key == "dtbo" {
                for (index, entry) in value.as_sequence().into_iter().flatten().enumerate() {
                    pipeline.add(DownloaderAction::new(
                        &format!("{key}{index}"),
                        &dir_text,
                        image_params(entry),
                    ))?;
                }
            } else {
                pipeline.add(DownloaderAction::new(key, &dir_text, image_params(value)))?;
            }
        }
        if let Some(extra) = params.get("extra_files").and_then(Value::as_mapping) {
            let extra_dir = dir.join("extra_files").display().to_string();
            for (name, entry) in extra {
                let name = lava_pipeline::value::scalar_string(name).unwrap_or_default();
                pipeline.add(DownloaderAction::new(
                    &name,
                    &extra_dir,
                    image_params(entry),
                ))?;
            }
        }
        pipeline.add(PrepareOverlayTftp::new())?;
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
        require_tool("in.tftpd")?;
        let tftpd = tftp_root(ctx.job.parameters.get("dispatcher"))?;
        if let Some(dir) = self.tftp_dir()
            && let Err(message) = check_tftp_dir(dir, &tftpd)
        {
            ctx.error(message);
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, children: &mut Pipeline) -> LavaResult<()> {
        let layout = self
            .layout
            .clone()
            .ok_or_else(|| LavaError::bug("tftp-deploy run before populate"))?;
        tftp::start_deploy(ctx, &layout)?;
        children.run_actions(ctx).await?;
        tftp::finish_deploy(ctx, &layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lava_pipeline::Device;
    use serde_yaml::Mapping;

    #[test]
    fn reads_tftp_directory_from_tftpd_hpa_config() {
        let text = "# /etc/default/tftpd-hpa\nTFTP_USERNAME=\"tftp\"\nTFTP_DIRECTORY=\"/srv/tftp\"\nTFTP_ADDRESS=\":69\"\n";
        assert_eq!(tftp_directory_setting(text).as_deref(), Some("/srv/tftp"));
        assert_eq!(
            tftp_directory_setting("TFTP_DIRECTORY=/var/lib/tftp"),
            Some("/var/lib/tftp".into())
        );
        assert_eq!(tftp_directory_setting("TFTP_USERNAME=tftp"), None);
    }

    #[test]
    fn tftp_dir_must_be_served() {
        assert!(
            check_tftp_dir(
                Path::new("/srv/tftp/12/tftp-deploy-1"),
                Path::new("/srv/tftp")
            )
            .is_ok()
        );
        assert!(check_tftp_dir(&std::env::temp_dir().join("x"), Path::new("/srv/tftp")).is_ok());
        assert!(check_tftp_dir(Path::new("/var/x"), Path::new("/srv/tftp")).is_err());
    }

    #[test]
    fn strategy_reasons() {
        let device = Device::from_yaml(
            "actions:\n  deploy:\n    methods:\n      tftp: null\n",
            None,
        )
        .unwrap();
        let p = |y: &str| -> Mapping { serde_yaml::from_str(y).unwrap() };
        assert!(
            crate::strategy(lava_pipeline::Section::Deploy, "tftp")
                .accepts(&device, &p("{to: tftp}"))
                .is_ok()
        );
        assert_eq!(
            crate::strategy(lava_pipeline::Section::Deploy, "tftp")
                .accepts(&device, &p("{to: nfs}")),
            Err("\"to\" parameter is not \"tftp\"".into())
        );
        let other = Device::from_yaml("actions:\n  deploy:\n    methods:\n      nfs: null\n", None)
            .unwrap();
        assert!(
            crate::strategy(lava_pipeline::Section::Deploy, "tftp")
                .accepts(&other, &p("{to: tftp}"))
                .is_err()
        );
    }
}
