//! LAVA MultiNode as plain data and I/O: the coordinator's wire types, its
//! frame codec, an async client that speaks LAVA's protocol exactly, the
//! coordinator configuration, and a MultiNode submission split into node jobs.
//! The job protocol built on them (the node's protocol object, the pipeline
//! `Protocol`, the test shell's MultiNode hook) is in `lava-actions`
//! (`protocols::multinode`); the broker is `lava-coordinator`.
//!
//! * [`wire`]: [`Request`], [`Response`], [`Payload`], [`Envelope`]: LAVA's
//!   JSON field names and values (`group_data`, `lava_send`, `lava_wait`,
//!   `lava_wait_all`, `lava_sync`, `clear_group`; replies `wait`, `ack`,
//!   `nack`, `group_data`), plus two optional fields of ours that LAVA's
//!   coordinator ignores (push/long-poll, shared secret).
//! * [`codec`]: the frame (8 upper-case hex digits of length + JSON), written
//!   byte-for-byte like LAVA's Python and read exactly.
//! * [`client`]: [`CoordinatorClient`], one TCP connection per request,
//!   polling every `poll_delay` like LAVA, or held open by a push-capable
//!   coordinator and answered the moment the condition holds.
//! * [`config`]: LAVA's `lava-coordinator.conf`.
//! * [`split`]: a MultiNode submission split into node jobs as lava-server
//!   does ([`split::split_with`], [`split::assign_roles`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use lava_multinode::{ClientSettings, CoordinatorClient, CoordinatorConfig, Identity};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = CoordinatorConfig::from_file("/etc/lava-coordinator/lava-coordinator.conf".as_ref())?;
//! let client = CoordinatorClient::new(
//!     ClientSettings::from_config(&config),
//!     Identity {
//!         group_name: "6c1e0c8e-0d7e-4b7c-9a51-2f5b1d0c9e11".into(),
//!         client_name: "7001".into(),
//!         role: "server".into(),
//!         hostname: "worker-a".into(),
//!     },
//! );
//! client.register(2, Duration::from_secs(90)).await?;
//! client.sync("iperf-done", Duration::from_secs(30)).await?;
//! client.clear_group(2, Duration::from_secs(90)).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod client;
pub mod codec;
pub mod config;
mod error;
pub mod split;
pub mod wire;

pub use client::{ClientError, ClientSettings, ClientStats, CoordinatorClient, Identity};
pub use codec::FrameError;
pub use config::{ConfigError, CoordinatorConfig};
pub use wire::{
    ApiResult, Delivered, Envelope, MessageId, Operation, Payload, Request, Response,
    SenderPayloads,
};
