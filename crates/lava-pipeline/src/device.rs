//! The device as the pipeline and its actions see it: lava-device's typed [`DeviceConfig`],
//! the one model built when the device is rendered or loaded and read at run time.
//!
//! [`Device`] dereferences to [`DeviceConfig`], so its typed sections (`commands`,
//! `actions`, `timeouts`, `parameters`, `constants`, `character_delays`, `hostname`) and
//! accessors (`get_constant`, `connect_command`, `command`, `character_delay_ms`, ...) are
//! read directly; `lookup`/`lookup_str` stay for the keys LAVA reads arbitrarily (a
//! device's own top-level keys such as `fastboot_serial_number`, method parameters).
//! What this module adds are the lookups whose errors are the pipeline's
//! ([`LavaError`]): a method's required parameters. Errors from lava-device become
//! ConfigurationErrors with their message unchanged.
//!
//! ```
//! use lava_pipeline::Device;
//! let device = Device::from_yaml(
//!     "constants: {failure_retry: 1}\nactions: {boot: {methods: {qemu: {parameters: {command: qemu-system-x86_64}}}}}",
//!     None,
//! )
//! .unwrap();
//! assert!(device.has_boot_method("qemu"));
//! assert_eq!(device.get_constant("failure_retry", None).unwrap(), 1);
//! assert!(device.require_boot_method_params("u-boot").is_err());
//! ```

use crate::error::{LavaError, LavaResult};
pub use lava_device::{CommandList, DeviceConfig, DeviceError};
use serde_yaml::{Mapping, Value};
use std::ops::Deref;
use std::path::Path;

/// The name a device built from text without a file is given in errors.
const UNNAMED: &str = "<device>";

/// A device configuration (`--device`): the typed [`DeviceConfig`] it dereferences to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Device {
    config: DeviceConfig,
}

impl From<DeviceConfig> for Device {
    fn from(config: DeviceConfig) -> Self {
        Device::new(config)
    }
}

impl Deref for Device {
    type Target = DeviceConfig;

    fn deref(&self) -> &DeviceConfig {
        &self.config
    }
}

impl Device {
    /// The device whose configuration was rendered or loaded as `config`.
    pub fn new(config: DeviceConfig) -> Self {
        Device { config }
    }

    /// Parse a device YAML text: what `lava-run` does with a rendered configuration, and
    /// the one way tests build a device (`Device::from_yaml("actions: ...", None)`).
    /// Errors are ConfigurationErrors naming `path` (or `<device>`): empty text is
    /// "Empty device configuration", a key of the wrong shape names its key path.
    pub fn from_yaml(text: &str, path: Option<&Path>) -> LavaResult<Self> {
        let origin = path.unwrap_or(Path::new(UNNAMED));
        Ok(Device::new(DeviceConfig::from_yaml_str(text, origin)?))
    }

    /// Read and parse a device YAML file.
    pub fn load(path: &Path) -> LavaResult<Self> {
        Ok(Device::new(DeviceConfig::load(path)?))
    }

    /// The typed configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// `actions.deploy.methods` as written (absent when the device lists none).
    pub fn deploy_methods(&self) -> Option<&Mapping> {
        self.lookup(&["actions", "deploy", "methods"])
            .and_then(Value::as_mapping)
    }

    /// `actions.boot.methods` as written (absent when the device lists none).
    pub fn boot_methods(&self) -> Option<&Mapping> {
        self.lookup(&["actions", "boot", "methods"])
            .and_then(Value::as_mapping)
    }

    /// `actions.boot.methods.<method>`: the method's entry (null when listed bare).
    pub fn boot_method(&self, method: &str) -> Option<&Value> {
        self.actions.boot.methods.get(method)
    }

    /// `actions.boot.methods.<method>.parameters`, when it is a mapping.
    pub fn boot_method_params(&self, method: &str) -> Option<&Mapping> {
        self.actions.boot.method_parameters(method)
    }

    /// `actions.boot.methods.<method>.parameters`, or the JobError naming the method.
    pub fn require_boot_method_params(&self, method: &str) -> LavaResult<&Mapping> {
        self.boot_method_params(method).ok_or_else(|| {
            LavaError::job(format!(
                "Missing parameters for the '{method}' boot method in the device configuration"
            ))
        })
    }

    /// `actions.deploy.methods.<method>`: the method's entry (null when listed bare).
    pub fn deploy_method(&self, method: &str) -> Option<&Value> {
        self.actions.deploy.methods.get(method)
    }

    /// `actions.deploy.methods.<method>.parameters`, when it is a mapping.
    pub fn deploy_method_params(&self, method: &str) -> Option<&Mapping> {
        self.actions.deploy.method_parameters(method)
    }

    /// Whether the device lists this deploy method (value may be null).
    pub fn has_deploy_method(&self, method: &str) -> bool {
        self.actions.deploy.has_method(method)
    }

    /// Whether the device lists this boot method (value may be null).
    pub fn has_boot_method(&self, method: &str) -> bool {
        self.actions.boot.has_method(method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn tiny_devices_load_and_errors_are_configuration_errors() {
        let device = Device::from_yaml("actions: {deploy: {methods: {tftp: }}}", None).unwrap();
        assert!(device.has_deploy_method("tftp"));
        assert_eq!(device.deploy_method("tftp"), Some(&Value::Null));
        let err = device.get_constant("failure_retry", None).unwrap_err();
        let err = LavaError::from(err);
        assert_eq!(err.kind, ErrorKind::Configuration);
        assert_eq!(
            err.message,
            "constants section not present in the device config."
        );

        let err = Device::from_yaml("", Some(Path::new("qemu01.yaml"))).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Configuration);
        assert_eq!(err.message, "Empty device configuration: qemu01.yaml");

        let err = Device::from_yaml(
            "commands: {hard_reset: {a: b}}",
            Some(Path::new("qemu01.yaml")),
        )
        .unwrap_err();
        assert!(
            err.message
                .starts_with("qemu01.yaml: invalid value for 'commands.hard_reset'"),
            "{err}"
        );
    }

    #[test]
    fn method_parameters_are_required_by_name() {
        let device = Device::from_yaml(
            "actions: {boot: {methods: {u-boot: {parameters: {bootloader_prompt: '=>'}}, minimal: }}}",
            None,
        )
        .unwrap();
        let params = device.require_boot_method_params("u-boot").unwrap();
        assert_eq!(
            params.get("bootloader_prompt").and_then(Value::as_str),
            Some("=>")
        );
        let err = device.require_boot_method_params("minimal").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Job);
        assert!(err.message.contains("'minimal' boot method"), "{err}");
        assert!(device.boot_methods().is_some_and(|m| m.len() == 2));
        assert!(device.deploy_methods().is_none());
    }
}
