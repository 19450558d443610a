//! Errors of this crate: every one names the file (and, for templates, the line) at fault.

use std::path::PathBuf;

use lava_error::LavaError;

/// What went wrong while rendering a device dictionary or loading a device configuration.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The error from the operating system.
        #[source]
        source: std::io::Error,
    },
    /// Jinja2 rendering failed: a missing template, a syntax error, a template loop, a bad
    /// filter argument... `file` is the template where it happened (a path when it is known).
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Render {
        /// The template (or path) where rendering failed.
        file: String,
        /// The line in `file`, when the template engine reports one.
        line: Option<usize>,
        /// The template engine's description of the failure.
        message: String,
    },
    /// The render context is not a YAML mapping.
    #[error("{path}: the render context must be a YAML mapping: {message}")]
    Context {
        /// The context file.
        path: PathBuf,
        /// The YAML parser's message, or the kind of value found instead.
        message: String,
    },
    /// The device configuration is empty (LAVA: "Empty device configuration").
    #[error("Empty device configuration: {path}")]
    Empty {
        /// The device configuration file.
        path: PathBuf,
    },
    /// The device configuration is not YAML (LAVA: "`<path>` could not be parsed").
    #[error("{path} could not be parsed: {message}")]
    Parse {
        /// The device configuration file.
        path: PathBuf,
        /// The YAML parser's message.
        message: String,
    },
    /// The device configuration is YAML but not a mapping.
    #[error("{path}: the device configuration must be a mapping, found {found}")]
    NotMapping {
        /// The device configuration file.
        path: PathBuf,
        /// The YAML kind found instead (sequence, string...).
        found: &'static str,
    },
    /// The configuration has no `commands` section where LAVA needs one (the console).
    #[error("commands section not present in the device config.")]
    NoCommands {
        /// The device configuration file.
        path: PathBuf,
    },
    /// The configuration has no `constants` section (LAVA's message, kept as it is because it
    /// reaches the job's result; `path` is for callers).
    #[error("constants section not present in the device config.")]
    NoConstants {
        /// The device configuration file.
        path: PathBuf,
    },
    /// `get_constant` found no such constant (LAVA's message, kept as it is).
    #[error(
        "Constant {}{key} does not exist in the device config 'constants' section.",
        prefix.as_deref().map(|p| format!("{p},")).unwrap_or_default()
    )]
    MissingConstant {
        /// The device configuration file.
        path: PathBuf,
        /// The `constants` sub-section searched, when not the top level.
        prefix: Option<String>,
        /// The constant that was asked for.
        key: String,
    },
    /// A key has a value of the wrong shape.
    #[error("{path}: invalid value for '{key}': {message}")]
    Invalid {
        /// The device configuration file.
        path: PathBuf,
        /// The key with the bad value.
        key: String,
        /// What was expected and what was found.
        message: String,
    },
}

impl DeviceError {
    /// The template line of a [`DeviceError::Render`] error.
    pub fn line(&self) -> Option<usize> {
        match self {
            DeviceError::Render { line, .. } => *line,
            _ => None,
        }
    }
}

/// A device that does not render or load is the lab's configuration at fault:
/// `ConfigurationError`, with the error's text (which names the file).
impl From<DeviceError> for LavaError {
    fn from(error: DeviceError) -> Self {
        LavaError::configuration(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_error_is_a_configuration_error_naming_the_file() {
        let error = LavaError::from(DeviceError::Empty {
            path: "devices/qemu01.jinja2".into(),
        });
        assert_eq!(error.kind, lava_error::ErrorKind::Configuration);
        assert_eq!(
            error.message,
            "Empty device configuration: devices/qemu01.jinja2"
        );
    }
}
