//! The `usbg-ms` deployment: download an image and expose it to the device as a USB
//! gadget mass storage from the dispatcher.

use crate::common::downloader::{DownloaderAction, download_dir};
use crate::common::env::DeployDeviceEnvironment;
use crate::common::lava_overlay::OverlayAction;
use crate::deploy::tftp::image_params;
use lava_pipeline::{
    Action, ActionMeta, Declared, ErrorKind, LavaError, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("usbg-ms", |_| Box::new(USBGMSAction::new()))
            .to_only("usbg-ms")
            .device_method_with(
                "usbg-ms",
                "'usbg-ms' not in the device configuration deploy methods",
            )
            .check(|device, _| {
                let mut keys: Vec<String> = device
                    .deploy_method("usbg-ms")
                    .and_then(Value::as_mapping)
                    .map(|m| {
                        m.keys()
                            .filter_map(lava_pipeline::value::scalar_string)
                            .collect()
                    })
                    .unwrap_or_default();
                keys.sort();
                // LAVA raises a ConfigurationError here; the registry only takes reasons.
                if keys != ["disable", "enable"] {
                    return Err(format!(
                        "usbg-ms 'disable' and 'enable' commands missing: {keys:?}"
                    ));
                }
                Ok(())
            }),
    );
}

/// `usbg-ms`: download the image; the run enables the gadget with the device's
/// `enable` commands (`{IMAGE}` substituted) and cleanup runs `disable`.
#[derive(Debug, Default)]
pub struct USBGMSAction {
    path: String,
    enable: Vec<String>,
    disable: Vec<String>,
}

impl USBGMSAction {
    /// Creates the `usbg-ms` action.
    pub fn new() -> Self {
        Self::default()
    }

    /// The device commands enabling and disabling the gadget.
    pub fn commands(&self) -> (&[String], &[String]) {
        (&self.enable, &self.disable)
    }

    /// Where the image is downloaded (relative to the job's temporary directory).
    pub fn path(&self) -> &str {
        &self.path
    }
}

#[async_trait]
impl Action for USBGMSAction {
    action_identity!(
        "usbg-ms",
        "USBGMSAction",
        "USB Gadget Mass storage",
        "USBG MS"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let method = pipeline.device().deploy_method("usbg-ms");
        self.enable = crate::common::command_list(method.and_then(|m| m.get("enable")));
        self.disable = crate::common::command_list(method.and_then(|m| m.get("disable")));
        self.path = download_dir(pipeline, "usbg-ms");
        let params = pipeline.params();
        let ns = params
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("common");
        if pipeline.job().test_needs_overlay(ns) {
            pipeline.add(OverlayAction::new())?;
        }
        let image = params.get("image").map(image_params).unwrap_or_default();
        pipeline.add(DownloaderAction::new("image", &self.path, image))?;
        if pipeline.job().test_needs_deployment_data(ns) {
            pipeline.add(DeployDeviceEnvironment::new())?;
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !ctx.meta.parameters.contains_key("image") {
            return Err(LavaError::job("Missing 'image'"));
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}
