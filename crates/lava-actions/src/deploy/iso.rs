//! The `iso-installer` deployment: an empty disk image, the installer ISO and its preseed
//! file downloaded, the kernel and initrd pulled out of the ISO and the QEMU command line
//! prepared for the installer boot (`method: qemu-iso`).
//!
//! The run-time behaviour (the empty disk made with `qemu-img`, the files pulled out of
//! the ISO with `xorriso`, the preseed served over TFTP, the installer command line) is
//! in [`crate::runtime::iso`]; `docs/qemu-iso.md` describes the whole flow.

use crate::common::apply_overlay::ApplyOverlayGuest;
use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::env::DeployDeviceEnvironment;
use crate::common::lava_overlay::OverlayAction;
use lava_pipeline::{
    Action, ActionMeta, BlockLookups, BlockParams, Declared, LavaResult, ParamError, Pipeline,
    PipelineBuilder, RunContext, StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// LAVA's `INSTALLER_IMAGE_MAX_SIZE`, in MiB (8 GiB).
pub const INSTALLER_IMAGE_MAX_SIZE_MB: u64 = 8 * 1024;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("iso-installer", |_| Box::new(DeployIsoAction))
            .device_method_with(
                "image",
                "\"image\" is not in the device configuration deploy methods",
            )
            .check(|_, params| {
                if params.to() != Some("iso-installer") {
                    return Err(
                        "\"to\" was not in parameters, or \"to\" was not \"iso-installer\"".into(),
                    );
                }
                let Some(iso) = params.get("iso") else {
                    return Err("\"iso\" was not in the parameters".into());
                };
                if iso.get("installation_size").is_none() {
                    return Err("\"installation_size\" was not in the iso parameters".into());
                }
                Ok(())
            }),
    );
}

/// A required nested mapping of the block (`images.iso`), with its key path in the error.
fn required_image(params: &BlockParams, key: &str) -> Result<Mapping, ParamError> {
    let images = params
        .mapping("images")?
        .ok_or_else(|| ParamError::Missing {
            path: params.key_path("images"),
        })?;
    images
        .raw_mapping(key)?
        .cloned()
        .ok_or_else(|| ParamError::Missing {
            path: images.key_path(key),
        })
}

/// `deploy-iso-installer`: the empty image, the preseed and ISO downloads, the files
/// pulled from the ISO, the QEMU command line, then the overlay when a test needs it.
#[derive(Debug, Default)]
pub struct DeployIsoAction;

#[async_trait]
impl Action for DeployIsoAction {
    action_identity!(
        "deploy-iso-installer",
        "DeployIsoAction",
        "setup deployment for emulated installer",
        "pull kernel and initrd out of iso"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let params = pipeline.params();
        let preseed = required_image(&params, "preseed")?;
        let iso = required_image(&params, "iso")?;
        pipeline.add(IsoEmptyImage)?;
        let preseed_dir = download_dir(pipeline, "preseed");
        pipeline.add(DownloaderAction::new("preseed", &preseed_dir, preseed))?;
        let iso_dir = download_dir(pipeline, "iso");
        pipeline.add(DownloaderAction::new("iso", &iso_dir, iso))?;
        pipeline.add(IsoPullInstaller)?;
        pipeline.add(QemuCommandLine)?;
        let namespace = pipeline.namespace().to_string();
        let job = pipeline.job();
        if job.test_needs_overlay(&namespace) {
            pipeline.add(OverlayAction::new())?;
            pipeline.add(ApplyOverlayGuest::new())?;
        }
        if job.test_needs_deployment_data(&namespace) {
            pipeline.add(DeployDeviceEnvironment::new())?;
        }
        Ok(())
    }
}

/// The installation size in bytes (`2G`, `800M`), or LAVA's reason it is not one.
pub fn installation_size(value: Option<&Value>) -> Result<u64, String> {
    let Some(text) = value.and_then(Value::as_str) else {
        return Err("installation size needs to be a string, e.g. 2G or 800M".into());
    };
    let digits = &text[..text.len().saturating_sub(1)];
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err("installation size needs to contain a digit, e.g. 2G or 800M".into());
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("Unable to recognise size indication in {text} - use M or G"))?;
    let bytes = if text.ends_with('G') {
        number.saturating_mul(1024 * 1024 * 1024)
    } else if text.ends_with('M') {
        number.saturating_mul(1024 * 1024)
    } else {
        return Err(format!(
            "Unable to recognise size indication in {text} - use M or G"
        ));
    };
    if bytes > INSTALLER_IMAGE_MAX_SIZE_MB * 1024 * 1024 {
        return Err(format!(
            "Base installation size cannot exceed {INSTALLER_IMAGE_MAX_SIZE_MB} Mb"
        ));
    }
    Ok(bytes)
}

/// `prepare-empty-image`: create the disk the installer writes to.
#[derive(Debug, Default)]
pub struct IsoEmptyImage;

#[async_trait]
impl Action for IsoEmptyImage {
    action_identity!(
        "prepare-empty-image",
        "IsoEmptyImage",
        "create empty image of specified size",
        "create destination image"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let size = ctx
            .meta
            .param("iso")
            .and_then(|iso| iso.get("installation_size"));
        if let Err(reason) = installation_size(size) {
            ctx.error(reason);
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let size = installation_size(
            ctx.meta()
                .param("iso")
                .and_then(|iso| iso.get("installation_size")),
        )
        .map_err(lava_pipeline::LavaError::job)?;
        crate::runtime::iso::create_empty_image(ctx, size).await?;
        Ok(())
    }
}

/// `pull-installer-files`: copy the `kernel` and `initrd` the job names out of the ISO.
#[derive(Debug, Default)]
pub struct IsoPullInstaller;

/// The files a job may pull out of the ISO.
pub const ISO_FILE_KEYS: [&str; 2] = ["kernel", "initrd"];

#[async_trait]
impl Action for IsoPullInstaller {
    action_identity!(
        "pull-installer-files",
        "IsoPullInstaller",
        "pull kernel and initrd out of iso",
        "copy files out of installer iso"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let iso = ctx.meta.param("iso");
        let mut files = Vec::new();
        let mut valid = true;
        for key in ISO_FILE_KEYS {
            let Some(name) = iso.and_then(|iso| iso.get(key)) else {
                continue;
            };
            let name = lava_pipeline::value::scalar_string(name).unwrap_or_default();
            if !name.starts_with('/') {
                ctx.error(format!(
                    "Paths to pull from the ISO need to start with / - check {key}"
                ));
                valid = false;
            }
            files.push(name);
        }
        let mut unique = files.clone();
        unique.sort();
        unique.dedup();
        if valid && unique.len() != files.len() {
            ctx.error("filenames to extract from installer image must be unique.");
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let files = iso_files(ctx.meta());
        crate::runtime::iso::pull_installer_files(ctx, &files).await
    }
}

/// The `(key, path in the ISO)` of the job's `iso.kernel` and `iso.initrd`, in that order.
pub fn iso_files(meta: &ActionMeta) -> Vec<(String, String)> {
    let iso = meta.param("iso");
    ISO_FILE_KEYS
        .iter()
        .filter_map(|key| {
            let name = iso.and_then(|iso| iso.get(*key))?;
            Some((
                key.to_string(),
                lava_pipeline::value::scalar_string(name).unwrap_or_default(),
            ))
        })
        .collect()
}

/// Whether the device's `qemu` boot method names the QEMU command and the installer's
/// console and boot order (`boot_options`).
pub fn qemu_installer_parameters_set(device: &lava_pipeline::Device) -> bool {
    let parameters = device.boot_method_params("qemu");
    let set = |key: &str, option: Option<&str>| {
        let value = parameters.and_then(|p| p.get(key));
        let value = match option {
            Some(option) => value.and_then(|v| v.get(option)),
            None => value,
        };
        lava_pipeline::value::truthy(value)
    };
    set("command", None)
        && set("boot_options", Some("console"))
        && set("boot_options", Some("boot_order"))
}

/// `prepare-qemu-commands`: the installer's QEMU command line and kernel arguments.
#[derive(Debug, Default)]
pub struct QemuCommandLine;

#[async_trait]
impl Action for QemuCommandLine {
    action_identity!(
        "prepare-qemu-commands",
        "QemuCommandLine",
        "prepare qemu command and options to append to kernel command line",
        "build qemu command line with kernel command string"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !qemu_installer_parameters_set(&ctx.job.device) {
            ctx.error("Invalid parameters for prepare-qemu-commands");
        }
        if let Some(data) = ctx.meta.param("deployment_data") {
            let missing: Vec<&str> = crate::runtime::iso::INSTALLER_DATA_KEYS
                .into_iter()
                .filter(|key| data.get(*key).is_none())
                .collect();
            if !missing.is_empty() {
                ctx.error(format!(
                    "The deployment data of this 'os' has no installer {}: use os: debian_installer",
                    missing.join(", ")
                ));
            }
        }
        let dispatcher = ctx.job.parameters.get("dispatcher");
        if let Err(error) = crate::deploy::tftp::tftp_root(dispatcher) {
            ctx.error(error.message);
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::iso::prepare_installer_command(ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installation_sizes_as_lava_reads_them() {
        let size = |text: &str| installation_size(Some(&Value::from(text)));
        assert_eq!(size("2G"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(size("800M"), Ok(800 * 1024 * 1024));
        assert_eq!(
            size("800K").unwrap_err(),
            "Unable to recognise size indication in 800K - use M or G"
        );
        assert_eq!(
            size("G").unwrap_err(),
            "installation size needs to contain a digit, e.g. 2G or 800M"
        );
        assert_eq!(
            size("9G").unwrap_err(),
            "Base installation size cannot exceed 8192 Mb"
        );
        assert_eq!(
            installation_size(Some(&Value::from(2))).unwrap_err(),
            "installation size needs to be a string, e.g. 2G or 800M"
        );
    }
}
