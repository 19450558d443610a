//! LAVA's coordinator configuration file (`lava-coordinator.conf`), shared
//! by the daemon and its clients.

use std::path::Path;

use serde::Deserialize;

/// Where both LAVA's daemon and its dispatchers look for the file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/lava-coordinator/lava-coordinator.conf";
/// LAVA's default port.
pub const DEFAULT_PORT: u16 = 3079;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file cannot be read.
    #[error("Missing coordinator configuration: {path}: {source}")]
    Missing {
        /// The file's path.
        path: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("Invalid coordinator configuration {path}: {source}")]
    Invalid {
        /// The file's path.
        path: String,
        /// The JSON parser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// The JSON keys LAVA defines, with LAVA's client-side defaults, plus our
/// optional extensions (ignored by LAVA, which ignores unknown keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct CoordinatorConfig {
    /// TCP port (daemon binds it, clients connect to it).
    pub port: u16,
    /// Read chunk of LAVA's daemon; copied into every request envelope.
    pub blocksize: u32,
    /// Seconds between polls (LAVA's client default is 1; the packaged file says 3).
    pub poll_delay: u64,
    /// Host clients connect to (LAVA's daemon ignores it for binding).
    pub coordinator_hostname: String,
    /// Our extension: optional shared secret. When the daemon has one, every
    /// request must carry it in `lava_rs_token`.
    pub lava_rs_token: Option<String>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            port: DEFAULT_PORT,
            blocksize: 4096,
            poll_delay: 1,
            coordinator_hostname: "localhost".to_string(),
            lava_rs_token: None,
        }
    }
}

impl CoordinatorConfig {
    /// Parse the JSON text of the file.
    pub fn from_json(text: &str, path: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(|source| ConfigError::Invalid {
            path: path.to_string(),
            source,
        })
    }

    /// Read and parse the file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Missing {
            path: shown.clone(),
            source,
        })?;
        Self::from_json(&text, &shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packaged_file_parses() {
        let text = r#"{"port": 3079, "blocksize": 4096, "poll_delay": 3,
                       "coordinator_hostname": "localhost"}"#;
        let config = CoordinatorConfig::from_json(text, "x").unwrap();
        assert_eq!(config.poll_delay, 3);
        assert_eq!(config.port, 3079);
        assert_eq!(config.lava_rs_token, None);
    }

    #[test]
    fn missing_keys_take_lavas_client_defaults() {
        let config = CoordinatorConfig::from_json(r#"{"other": 1}"#, "x").unwrap();
        assert_eq!(config, CoordinatorConfig::default());
        assert_eq!(config.poll_delay, 1);
    }

    #[test]
    fn not_json_is_a_configuration_error() {
        assert!(matches!(
            CoordinatorConfig::from_json("port=1", "x"),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            CoordinatorConfig::from_file(Path::new("/nonexistent/lava.conf")),
            Err(ConfigError::Missing { .. })
        ));
    }
}
