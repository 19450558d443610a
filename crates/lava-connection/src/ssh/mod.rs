//! SSH connections to a device, with russh: LAVA's primary SSH devices and (later)
//! secondary connections.
//!
//! [`SshParams`] says where to connect and how (the device's `ssh` parameters, or a
//! host and port learnt at run time); [`SshClient::connect`] opens and authenticates
//! the connection with the identity file; the client then runs commands
//! ([`SshClient::exec`]), copies files ([`SshClient::upload`], over an exec channel:
//! see `copy.rs` for why not `scp`) and finally opens a shell on a pseudo-terminal
//! ([`SshClient::into_shell`]) whose [`SshTransport`] plugs into a
//! [`crate::ShellSession`] like any console. Host keys are accepted as LAVA does
//! (`StrictHostKeyChecking=no`) unless the options ask for a `known_hosts` check.
//! Every step is bounded by a deadline; every failure is an [`SshError`] naming
//! `host:port` and what failed; no key material ever reaches a message.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use lava_connection::{MemoryLog, PtyRequest, SessionConfig, ShellSession, SshClient, SshParams};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
//! let mut params = SshParams::new("10.0.0.5", 22, "root", "/etc/lava/keys/lava");
//! params.apply_options(&["-o", "Compression=yes", "-o", "StrictHostKeyChecking=no"])?;
//! let client = SshClient::connect(&params, deadline).await?;
//! client.upload("overlay.tar.gz".as_ref(), "/lava-42-overlay.tar.gz", deadline).await?;
//! let transport = client.into_shell(&PtyRequest::default(), deadline).await?;
//! let config = SessionConfig::default().with_prompts(&["root@dut:~# "]);
//! let mut shell = ShellSession::new(transport, Arc::new(MemoryLog::new()), config)?;
//! shell.wait_for_prompt(deadline).await?;
//! # Ok(()) }
//! ```

mod client;
mod copy;
mod error;
mod params;
mod transport;

pub use client::{ExecOutput, PtyRequest, SshClient};
pub use copy::{PARTIAL_SUFFIX, upload_command};
pub use error::SshError;
pub use params::{
    DEFAULT_SERVER_ALIVE_COUNT_MAX, DEFAULT_SSH_PORT, HostKeyPolicy, IgnoredOption, SshParams,
};
pub use transport::SshTransport;
