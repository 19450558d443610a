//! The device configuration as the pipeline sees it: the rendered YAML mapping, with
//! the lookups LAVA's `Device` class offers (`get_constant`, methods, commands).
//!
//! Typed parsing of device dictionaries lives in `lava-device`; this crate only needs the
//! raw mapping so that strategies can read the keys they own.

use crate::error::{LavaError, LavaResult};
use crate::value::lookup;
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// A device configuration (`--device`).
#[derive(Debug, Clone, Default)]
pub struct Device {
    raw: Value,
    path: Option<PathBuf>,
}

impl Device {
    /// Wrap a rendered device mapping, applying LAVA's load-time defaults
    /// (`power_state: off`, `dynamic_data: {}`).
    pub fn from_mapping(mut raw: Mapping, path: Option<PathBuf>) -> Self {
        if !raw.contains_key("power_state") {
            raw.insert("power_state".into(), "off".into());
        }
        if !raw.contains_key("dynamic_data") {
            raw.insert("dynamic_data".into(), Value::Mapping(Mapping::new()));
        }
        Device {
            raw: Value::Mapping(raw),
            path,
        }
    }

    /// Parse a device YAML text (errors as LAVA: empty → "Empty device configuration").
    pub fn from_yaml(text: &str, path: Option<&Path>) -> LavaResult<Self> {
        let shown = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<device>".into());
        let value: Value = serde_yaml::from_str(text)
            .map_err(|e| LavaError::configuration(format!("{shown} could not be parsed: {e}")))?;
        match value {
            Value::Null => Err(LavaError::configuration("Empty device configuration")),
            Value::Mapping(map) => Ok(Self::from_mapping(map, path.map(Path::to_path_buf))),
            other => Err(LavaError::configuration(format!(
                "{shown}: the device configuration must be a mapping, found {}",
                crate::value::type_name(&other)
            ))),
        }
    }

    /// Read and parse a device YAML file.
    pub fn load(path: &Path) -> LavaResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            LavaError::configuration(format!(
                "{}: cannot read the device configuration: {e}",
                path.display()
            ))
        })?;
        Self::from_yaml(&text, Some(path))
    }

    /// The whole configuration.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// The file it came from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// `device[k1][k2]...`
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        lookup(&self.raw, path)
    }

    /// `device[key]` as a string.
    pub fn get_str(&self, path: &[&str]) -> Option<&str> {
        self.get(path).and_then(Value::as_str)
    }

    /// Whether `key` is present at the top level.
    pub fn has(&self, key: &str) -> bool {
        self.get(&[key]).is_some()
    }

    /// LAVA's `Device.get_constant(const, prefix)`.
    pub fn get_constant(&self, key: &str, prefix: Option<&str>) -> LavaResult<Value> {
        let constants = self.get(&["constants"]).ok_or_else(|| {
            LavaError::configuration("constants section not present in the device config.")
        })?;
        match prefix.filter(|p| !p.is_empty()) {
            Some(prefix) => lookup(constants, &[prefix, key]).cloned().ok_or_else(|| {
                LavaError::configuration(format!(
                    "Constant {prefix},{key} does not exist in the device config 'constants' section."
                ))
            }),
            None => lookup(constants, &[key]).cloned().ok_or_else(|| {
                LavaError::configuration(format!(
                    "Constant {key} does not exist in the device config 'constants' section."
                ))
            }),
        }
    }

    /// `actions.deploy.methods` (a mapping, possibly absent).
    pub fn deploy_methods(&self) -> Option<&Mapping> {
        self.get(&["actions", "deploy", "methods"])
            .and_then(Value::as_mapping)
    }

    /// `actions.boot.methods`.
    pub fn boot_methods(&self) -> Option<&Mapping> {
        self.get(&["actions", "boot", "methods"])
            .and_then(Value::as_mapping)
    }

    /// `actions.boot.methods.<method>`: the method's entry (null when listed bare).
    pub fn boot_method(&self, method: &str) -> Option<&Value> {
        self.boot_methods().and_then(|m| m.get(method))
    }

    /// `actions.boot.methods.<method>.parameters`, when it is a mapping.
    pub fn boot_method_params(&self, method: &str) -> Option<&Mapping> {
        self.boot_method(method)
            .and_then(|m| m.get("parameters"))
            .and_then(Value::as_mapping)
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
        self.deploy_methods().and_then(|m| m.get(method))
    }

    /// Whether the device lists this deploy method (value may be null).
    pub fn has_deploy_method(&self, method: &str) -> bool {
        self.deploy_methods()
            .is_some_and(|m| m.contains_key(method))
    }

    /// Whether the device lists this boot method (value may be null).
    pub fn has_boot_method(&self, method: &str) -> bool {
        self.boot_methods().is_some_and(|m| m.contains_key(method))
    }

    /// `commands.<name>` (string or list), if set.
    pub fn command(&self, name: &str) -> Option<&Value> {
        self.get(&["commands", name]).filter(|v| !v.is_null())
    }

    /// `hostname`, if set.
    pub fn hostname(&self) -> Option<&str> {
        self.get_str(&["hostname"])
    }
}
