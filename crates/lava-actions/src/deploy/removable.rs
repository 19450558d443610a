//! Removable media deployments (`to: usb | sata | sd`): the dispatcher downloads the
//! image and the device, booted into a first system, writes it to the media with dd or
//! a configured writer.

use crate::common::apply_overlay::ApplyOverlayImage;
use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::env::DeployDeviceEnvironment;
use crate::common::lava_overlay::OverlayAction;
use crate::deploy::tftp::image_params;
use lava_pipeline::BlockLookups;
use lava_pipeline::params::namespace;
use lava_pipeline::value::{scalar_string, truthy};
use lava_pipeline::{
    Action, Declared, Device, LavaResult, Pipeline, PipelineBuilder, RunContext, StrategyRegistry,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// The media a removable deployment may write.
pub const REMOVABLE_MEDIA: [&str; 3] = ["sata", "sd", "usb"];

/// LAVA's `DD_PROMPTS`: what dd prints when done.
pub const DD_PROMPTS: [&str; 2] = [r"[0-9]+\+[0-9]+ records out", r"[0-9]+ bytes \(.*\) copied"];

/// Register this family's strategies: one per medium, so hints name the `to:` values.
pub fn register(registry: &mut StrategyRegistry) {
    for media in REMOVABLE_MEDIA {
        registry.register(
            Declared::deploy(media, |_| Box::new(MassStorage::new())).check(
                move |device, params| {
                    let to = params.to();
                    if REMOVABLE_MEDIA.contains(&to.unwrap_or_default()) && to != Some(media) {
                        return Err(format!("\"to\" parameter is not \"{media}\""));
                    }
                    removable_accepts(device, params)
                },
            ),
        );
    }
}

/// LAVA's `Removable.accepts`, for any medium.
pub fn removable_accepts(device: &Device, params: &Mapping) -> Result<(), String> {
    let media = params.to().unwrap_or_default();
    if !REMOVABLE_MEDIA.contains(&media) {
        return Err("\"media\" was not \"sata\", \"sd\", or \"usb\"".into());
    }
    let Some(device_media) = device.parameter("media") else {
        return Err(
            "\"parameters\" was not in the device or \"media\" was not in the parameters".into(),
        );
    };
    let job_device = params.get("device").and_then(scalar_string);
    let entry = job_device
        .as_deref()
        .and_then(|d| device_media.get(media).and_then(|m| m.get(d)));
    let Some(entry) = entry else {
        return Err("media was not in the device \"media\" parameters".into());
    };
    if entry.get("uuid").is_some() {
        Ok(())
    } else {
        Err(format!(
            "\"uuid\" was not in the parameters for the media device {}",
            job_device.unwrap_or_default()
        ))
    }
}

/// `storage-deploy`: download the image on the dispatcher, then write it to the media.
#[derive(Debug, Default)]
pub struct MassStorage {
    image_path: String,
}

impl MassStorage {
    /// Creates the `storage-deploy` action.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the image is downloaded (relative to the job's temporary directory).
    pub fn image_path(&self) -> &str {
        &self.image_path
    }
}

#[async_trait]
impl Action for MassStorage {
    action_identity!(
        "storage-deploy",
        "MassStorage",
        "Deploy image to mass storage",
        "write image to storage"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.image_path = download_dir(pipeline, "storage-deploy");
        let params = pipeline.params();
        let needs_overlay = pipeline.job().test_needs_overlay(namespace(&params));
        if needs_overlay {
            pipeline.add(OverlayAction::new())?;
        }
        let uniquify = params.flag_or("uniquify", true);
        let download = |key: &str, entry: &Value| {
            let action = DownloaderAction::new(key, &self.image_path, image_params(entry));
            if uniquify {
                action
            } else {
                action.without_uniquify()
            }
        };
        if let Some(images) = params.get("images").and_then(Value::as_mapping) {
            for (key, entry) in images {
                let key = scalar_string(key).unwrap_or_default();
                pipeline.add(download(&key, entry))?;
                if truthy(entry.get("apply-overlay")) && needs_overlay {
                    pipeline.add(ApplyOverlayImage::new("image", true))?;
                }
            }
            pipeline.add(DDAction::new())?;
        } else if let Some(image) = params.get("image") {
            pipeline.add(download("image", image))?;
            if needs_overlay {
                pipeline.add(ApplyOverlayImage::new("image", true))?;
            }
            pipeline.add(DDAction::new())?;
        }
        if pipeline
            .job()
            .test_needs_deployment_data(namespace(&params))
        {
            pipeline.add(DeployDeviceEnvironment::new())?;
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !ctx.meta.parameters.contains_key("device") {
            ctx.error("No device specified for mass storage deployment");
        }
        Ok(())
    }
}

/// `dd-image`: on the device, pipe the image from the dispatcher into dd (or a writer
/// tool) targeting the media's `/dev/disk/by-id` path (`runtime::removable`).
#[derive(Debug, Default)]
pub struct DDAction;

impl DDAction {
    /// Creates the `dd-image` action.
    pub fn new() -> Self {
        DDAction
    }

    /// LAVA's checks of the download/writer tools, media and image.
    pub fn check(device: &Device, params: &Mapping, errors: &mut Vec<String>) {
        let before = errors.len();
        if !params.contains_key("device") {
            errors.push("missing device for deployment".into());
        }
        let download = params.truthy_value("download");
        let writer = params.truthy_value("writer");
        if download.is_none() && writer.is_none() {
            errors.push("Neither a download nor a write tool found in parameters".into());
        }
        let is_abs = |tool: Option<&Value>| {
            tool.and_then(scalar_string)
                .is_some_and(|t| t.starts_with('/'))
        };
        if let Some(download) = download {
            if download.get("tool").is_none() {
                errors.push("missing download or writer tool for deployment".into());
            }
            if download.get("options").is_none() {
                errors.push("missing options for download tool".into());
            }
            if download.get("prompt").is_none() {
                errors.push("missing prompt for download tool".into());
            }
            if !is_abs(download.get("tool")) {
                errors.push("download tool parameter needs to be an absolute path".into());
            }
        }
        if let Some(writer) = writer {
            if writer.get("tool").is_none() {
                errors.push("missing writer tool for deployment".into());
            }
            if writer.get("options").is_none() {
                errors.push("missing options for writer tool".into());
            }
            if !params.contains_key("download") && writer.get("prompt").is_none() {
                errors.push("missing prompt for writer tool".into());
            }
            if !is_abs(writer.get("tool")) {
                errors.push("writer tool parameter needs to be an absolute path".into());
            }
        }
        let to = params.get("to").and_then(scalar_string).unwrap_or_default();
        let boot_params = device.parameter("media").and_then(|m| m.get(&to));
        if boot_params.is_none() {
            errors.push(format!("media '{to}' unavailable for this device"));
        }
        let images = params
            .get("images")
            .and_then(Value::as_mapping)
            .unwrap_or(params);
        if !images.contains_key("image") {
            errors.push("Missing image parameter".into());
        }
        if errors.len() > before {
            return;
        }
        match params.get("tool").and_then(|t| t.get("prompts")) {
            Some(Value::Sequence(prompts)) if prompts.iter().any(|p| !truthy(Some(p))) => {
                errors.push("items of 'tool prompts' cannot be empty".into());
            }
            Some(Value::Sequence(_)) => {}
            Some(_) => errors.push("'tool prompts' should be a list".into()),
            None => {}
        }
        let Some(boot_params) = boot_params else {
            return;
        };
        if truthy(boot_params.get("UUID-required")) {
            let media_device = params
                .get("device")
                .and_then(scalar_string)
                .unwrap_or_default();
            let entry = boot_params.get(media_device.as_str());
            if entry.and_then(|e| e.get("uuid")).is_none() {
                errors.push(format!("A UUID is required for {media_device}"));
            }
            if entry.and_then(|e| e.get("root_part")).is_some() {
                errors.push("'root_part' is not valid as a UUID is required".into());
            }
        }
    }
}

#[async_trait]
impl Action for DDAction {
    action_identity!(
        "dd-image",
        "DDAction",
        "deploy image to drive",
        "write image to drive"
    );
    fn default_timeout(&self) -> u64 {
        600
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        Self::check(&ctx.job.device, &ctx.meta.parameters, &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::removable::dd_image(ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn device() -> Device {
        Device::from_yaml(
            "parameters:\n  media:\n    usb:\n      SanDisk: {uuid: usb-SanDisk-0:0, device_id: 0}\n      NoUuid: {device_id: 1}\n",
            None,
        )
        .unwrap()
    }

    #[test]
    fn removable_strategy_per_medium() {
        let usb = crate::strategy(lava_pipeline::Section::Deploy, "usb");
        let sata = crate::strategy(lava_pipeline::Section::Deploy, "sata");
        let job = mapping("{to: usb, device: SanDisk}");
        assert!(usb.accepts(&device(), &job).is_ok());
        assert!(sata.accepts(&device(), &job).is_err());
        assert_eq!(
            usb.accepts(&device(), &mapping("{to: usb, device: NoUuid}")),
            Err("\"uuid\" was not in the parameters for the media device NoUuid".into())
        );
        assert_eq!(
            usb.accepts(&device(), &mapping("{to: usb, device: Other}")),
            Err("media was not in the device \"media\" parameters".into())
        );
        assert_eq!(
            usb.accepts(&device(), &mapping("{to: tftp}")),
            Err("\"media\" was not \"sata\", \"sd\", or \"usb\"".into())
        );
    }

    /// A SATA disk as LAVA's `base.jinja2` renders `sata_uuid`: `UUID-required: True`.
    fn sata_device(extra: &str) -> Device {
        Device::from_yaml(
            &format!(
                "parameters:\n  media:\n    sata:\n      UUID-required: True\n      disk0:\n        \
                 uuid: ata-QEMU_HARDDISK_LAVA-RS-SATA0\n        device_id: 0\n        \
                 uboot_interface: scsi\n        grub_interface: hd0\n        boot_part: 1\n{extra}"
            ),
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_sata_disk_needs_its_uuid_and_no_root_part() {
        let sata = crate::strategy(lava_pipeline::Section::Deploy, "sata");
        let job = "{to: sata, device: disk0, image: {url: x}, download: {tool: /usr/bin/wget, options: -O-, prompt: HTTP}}";
        assert!(sata.accepts(&sata_device(""), &mapping(job)).is_ok());
        let mut errors = Vec::new();
        DDAction::check(&sata_device(""), &mapping(job), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        // UUID-required: a partition number in the dictionary is refused (the uuid names
        // the whole disk).
        DDAction::check(
            &sata_device("        root_part: 1\n"),
            &mapping(job),
            &mut errors,
        );
        assert_eq!(errors, ["'root_part' is not valid as a UUID is required"]);
    }

    #[test]
    fn dd_checks_tools_and_media() {
        let mut errors = Vec::new();
        DDAction::check(
            &device(),
            &mapping(
                "{to: usb, device: SanDisk, image: {url: x}, download: {tool: /usr/bin/wget, options: -O-, prompt: HTTP}}",
            ),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        DDAction::check(
            &device(),
            &mapping("{to: sata, writer: {tool: dd, options: x}}"),
            &mut errors,
        );
        assert_eq!(
            errors,
            [
                "missing device for deployment",
                "missing prompt for writer tool",
                "writer tool parameter needs to be an absolute path",
                "media 'sata' unavailable for this device",
                "Missing image parameter"
            ]
        );
    }
}
