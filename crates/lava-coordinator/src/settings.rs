//! The daemon's settings, read from LAVA's JSON configuration file.
//!
//! LAVA's keys: `port` (bound), `blocksize` (accepted, unused: we read exact
//! lengths), `poll_delay` (ignored, as by LAVA's daemon) and
//! `coordinator_hostname` (ignored for binding, as by LAVA's daemon).
//! Our optional keys, all prefixed `lava_rs_` so LAVA's tools ignore them:
//!
//! | key | default | meaning |
//! |-----|---------|---------|
//! | `lava_rs_listen` | `0.0.0.0` | address to bind (LAVA always binds 0.0.0.0) |
//! | `lava_rs_token` | none | shared secret; when set, every request must carry it in `lava_rs_token` or gets `nack` |
//! | `lava_rs_max_frame_bytes` | 65536 | largest request body accepted (LAVA's client sends at most 65534) |
//! | `lava_rs_max_reading_bytes` | 33554432 | request bytes being read at once, all connections together; more wait (within the read deadline) |
//! | `lava_rs_read_deadline_ms` | 10000 | a request must arrive completely within this |
//! | `lava_rs_max_hold_ms` | 60000 | longest a held (push) request is kept open |
//! | `lava_rs_max_connections` | 16384 | connections served at once, lowered to what the descriptor limit allows; more wait in the backlog |
//! | `lava_rs_group_idle_expiry_s` | 86400 (0: off) | forget groups silent for this long |
//! | `lava_rs_forming_group_expiry_s` | 600 (0: off) | forget groups still forming (fewer members than `group_size`) silent for this long |
//! | `lava_rs_max_groups`, `lava_rs_max_groups_per_address`, `lava_rs_max_clients_per_group`, `lava_rs_max_message_ids_per_group`, `lava_rs_max_payload_bytes_per_group` | see [`GroupLimits`] | memory bounds |
//!
//! The reasons for each default are in `docs/limits.md`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::CoordinatorError;
use crate::groups::{Expiry, GroupLimits};

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerSettings {
    /// Address to listen on: `lava_rs_listen` with LAVA's `port` key (default `0.0.0.0:3079`).
    pub listen: SocketAddr,
    /// Shared secret clients must send (`lava_rs_token`); `None` accepts any client.
    pub token: Option<String>,
    /// Largest request frame accepted, in bytes (`lava_rs_max_frame_bytes`).
    pub max_frame_bytes: usize,
    /// Request bytes being read at once, all connections together (`lava_rs_max_reading_bytes`).
    pub max_reading_bytes: usize,
    /// How long a client may take to send a whole frame (`lava_rs_read_deadline_ms`).
    pub read_deadline: Duration,
    /// Longest time a request is held open waiting for peers (`lava_rs_max_hold_ms`).
    pub max_hold: Duration,
    /// Connections served at once (`lava_rs_max_connections`).
    pub max_connections: usize,
    /// When idle groups are forgotten (`lava_rs_group_idle_expiry_s`,
    /// `lava_rs_forming_group_expiry_s`).
    pub expiry: Expiry,
    /// Limits on groups, members, message IDs and payload (`lava_rs_max_*` keys).
    pub limits: GroupLimits,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3079),
            token: None,
            max_frame_bytes: 64 * 1024,
            max_reading_bytes: 32 * 1024 * 1024,
            read_deadline: Duration::from_secs(10),
            max_hold: Duration::from_secs(60),
            max_connections: 16384,
            expiry: Expiry::default(),
            limits: GroupLimits::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct ConfigFile {
    port: u16,
    blocksize: Option<serde_json::Value>,
    lava_rs_listen: IpAddr,
    lava_rs_token: Option<String>,
    lava_rs_max_frame_bytes: usize,
    lava_rs_max_reading_bytes: usize,
    lava_rs_read_deadline_ms: u64,
    lava_rs_max_hold_ms: u64,
    lava_rs_max_connections: usize,
    lava_rs_group_idle_expiry_s: u64,
    lava_rs_forming_group_expiry_s: u64,
    lava_rs_max_groups: usize,
    lava_rs_max_groups_per_address: usize,
    lava_rs_max_clients_per_group: usize,
    lava_rs_max_message_ids_per_group: usize,
    lava_rs_max_payload_bytes_per_group: usize,
}

impl Default for ConfigFile {
    fn default() -> Self {
        let settings = BrokerSettings::default();
        let limits = GroupLimits::default();
        ConfigFile {
            port: settings.listen.port(),
            blocksize: None,
            lava_rs_listen: settings.listen.ip(),
            lava_rs_token: None,
            lava_rs_max_frame_bytes: settings.max_frame_bytes,
            lava_rs_max_reading_bytes: settings.max_reading_bytes,
            lava_rs_read_deadline_ms: settings.read_deadline.as_millis() as u64,
            lava_rs_max_hold_ms: settings.max_hold.as_millis() as u64,
            lava_rs_max_connections: settings.max_connections,
            lava_rs_group_idle_expiry_s: seconds(settings.expiry.any),
            lava_rs_forming_group_expiry_s: seconds(settings.expiry.forming),
            lava_rs_max_groups: limits.max_groups,
            lava_rs_max_groups_per_address: limits.max_groups_per_address,
            lava_rs_max_clients_per_group: limits.max_clients_per_group,
            lava_rs_max_message_ids_per_group: limits.max_message_ids_per_group,
            lava_rs_max_payload_bytes_per_group: limits.max_payload_bytes_per_group,
        }
    }
}

impl BrokerSettings {
    /// Settings from the JSON text of a LAVA coordinator configuration file.
    pub fn from_json(text: &str) -> Result<Self, CoordinatorError> {
        let file: ConfigFile =
            serde_json::from_str(text).map_err(|e| CoordinatorError::Config(e.to_string()))?;
        let _ = file.blocksize;
        Ok(BrokerSettings {
            listen: SocketAddr::new(file.lava_rs_listen, file.port),
            token: file.lava_rs_token.filter(|t| !t.is_empty()),
            max_frame_bytes: file.lava_rs_max_frame_bytes,
            max_reading_bytes: file
                .lava_rs_max_reading_bytes
                .max(file.lava_rs_max_frame_bytes),
            read_deadline: Duration::from_millis(file.lava_rs_read_deadline_ms.max(1)),
            max_hold: Duration::from_millis(file.lava_rs_max_hold_ms),
            max_connections: file.lava_rs_max_connections.max(1),
            expiry: Expiry {
                forming: duration(file.lava_rs_forming_group_expiry_s),
                any: duration(file.lava_rs_group_idle_expiry_s),
            },
            limits: GroupLimits {
                max_groups: file.lava_rs_max_groups,
                max_groups_per_address: file.lava_rs_max_groups_per_address,
                max_clients_per_group: file.lava_rs_max_clients_per_group,
                max_message_ids_per_group: file.lava_rs_max_message_ids_per_group,
                max_payload_bytes_per_group: file.lava_rs_max_payload_bytes_per_group,
            },
        })
    }

    /// Settings from a configuration file; a missing or invalid file is an
    /// error (LAVA's daemon exits too).
    pub fn from_file(path: &Path) -> Result<Self, CoordinatorError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CoordinatorError::Config(format!("{}: {e}", path.display())))?;
        Self::from_json(&text)
            .map_err(|e| CoordinatorError::Config(format!("{}: {e}", path.display())))
    }
}

/// Seconds in the file, 0 for off.
fn seconds(duration: Option<Duration>) -> u64 {
    duration.map_or(0, |d| d.as_secs())
}

/// A duration from the file's seconds, 0 meaning off.
fn duration(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packaged_lava_file_gives_lavas_behaviour() {
        let text = r#"{"port": 3079, "blocksize": 4096, "poll_delay": 3,
                       "coordinator_hostname": "localhost"}"#;
        let settings = BrokerSettings::from_json(text).unwrap();
        assert_eq!(settings, BrokerSettings::default());
        assert_eq!(settings.listen.to_string(), "0.0.0.0:3079");
        // Expiry is on and frames stay near what LAVA's client can send.
        assert_eq!(settings.expiry, Expiry::default());
        assert!(settings.expiry.forming.is_some() && settings.expiry.any.is_some());
        assert!(settings.max_frame_bytes >= lava_multinode::codec::LAVA_CLIENT_MAX_REQUEST);
        assert!(settings.max_frame_bytes <= 64 * 1024);
    }

    #[test]
    fn extensions_are_read() {
        let text = r#"{"port": 0, "lava_rs_listen": "127.0.0.1", "lava_rs_token": "s3cret",
                       "lava_rs_group_idle_expiry_s": 3600, "lava_rs_max_groups": 3,
                       "lava_rs_forming_group_expiry_s": 0, "lava_rs_max_groups_per_address": 2}"#;
        let settings = BrokerSettings::from_json(text).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:0");
        assert_eq!(settings.token.as_deref(), Some("s3cret"));
        assert_eq!(settings.expiry.any, Some(Duration::from_secs(3600)));
        assert_eq!(settings.expiry.forming, None);
        assert_eq!(settings.limits.max_groups, 3);
        assert_eq!(settings.limits.max_groups_per_address, 2);
    }

    #[test]
    fn invalid_file_is_an_error() {
        assert!(BrokerSettings::from_json("{").is_err());
        assert!(BrokerSettings::from_file(Path::new("/nonexistent.conf")).is_err());
    }
}
