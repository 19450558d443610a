//! The MultiNode coordinator: a TCP message broker that speaks LAVA's
//! `lava-coordinator` protocol byte for byte (8-hex-digit length + JSON, one
//! request per connection; `group_data`, `lava_send`, `lava_wait`,
//! `lava_wait_all`, `lava_sync`, `clear_group`, `aggregate`, `complete`;
//! replies `wait`, `ack`, `nack`, `group_data`), so LAVA's dispatchers can
//! use it unchanged.
//!
//! Unlike LAVA's daemon it serves connections concurrently (tokio), bounds
//! everything (frame size, per-connection read deadline, connections, groups,
//! members, message IDs, payload bytes; see [`settings`]) and answers `nack`
//! to the inputs that crash LAVA's (a `lava_wait_all` for a role nobody
//! has, a `lava_send` reusing a `lava_sync` ID, missing fields). See
//! [`groups`] for every deliberate difference.
//!
//! **Push.** A request carrying `"lava_rs_hold_ms": N` whose answer would be
//! `wait` is held open for up to N ms (capped by `lava_rs_max_hold_ms`) and
//! answered the moment its condition holds; if the hold ends first the reply
//! is `{"response": "wait", "lava_rs_held": true}`. LAVA's clients never send
//! the field and are answered exactly as by LAVA's daemon; LAVA's daemon
//! ignores the field, so our client falls back to polling against it.
//!
//! **Shared secret.** Off by default. With `"lava_rs_token": "…"` in the
//! configuration file, every request must carry the same value in its
//! `lava_rs_token` field, otherwise it is answered `nack`. LAVA's own
//! clients cannot send it, so enable it only for groups run by our
//! dispatcher. It is a plain-text bearer secret (no TLS): it keeps stray or
//! misconfigured clients out, not an attacker on the network path.
//!
//! Main types: [`Coordinator`] (bind, then [`Coordinator::serve`] or
//! [`Coordinator::spawn`]), [`BrokerSettings`], [`groups::Groups`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), lava_coordinator::CoordinatorError> {
//! use lava_coordinator::{BrokerSettings, Coordinator};
//! let mut settings = BrokerSettings::from_file("/etc/lava-coordinator/lava-coordinator.conf".as_ref())?;
//! settings.listen = "127.0.0.1:0".parse().unwrap();
//! let server = Coordinator::bind(settings, 1).await?.spawn();
//! println!("listening on {}", server.local_addr());
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod groups;
pub mod logging;
pub mod server;
pub mod settings;

use std::net::SocketAddr;
use std::path::Path;

pub use groups::{GroupLimits, Groups, Outcome};
pub use logging::{LogHandle, LogLevel, init_logging};
pub use server::{BrokerStats, Coordinator, CoordinatorHandle};
pub use settings::BrokerSettings;

/// Errors of the coordinator library.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The configuration file could not be read or parsed; the message names the file.
    #[error("configuration error: {0}")]
    Config(String),
    /// The listening socket could not be bound.
    #[error("unable to bind {address}: {source}")]
    Bind {
        /// The address the coordinator tried to listen on.
        address: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A server task panicked or was cancelled; the message says which.
    #[error("coordinator task failed: {0}")]
    Task(String),
}

/// What the `lava-coordinator` binary does: read the configuration, bind
/// (retrying while the port is busy) and serve until Ctrl-C / SIGTERM,
/// reopening the log file on SIGHUP (logrotate's `postrotate`).
pub async fn run_daemon(config: &Path, log: LogHandle) -> Result<(), CoordinatorError> {
    let reopen = reopen_log_on_hangup(log);
    let result = serve_until_stopped(config).await;
    if let Some(reopen) = reopen {
        reopen.abort();
    }
    result
}

async fn serve_until_stopped(config: &Path) -> Result<(), CoordinatorError> {
    tracing::info!("[INIT] LAVA coordinator has started.");
    tracing::info!("[INIT] Version {}", env!("CARGO_PKG_VERSION"));
    tracing::info!("[INIT] Loading configuration from {}", config.display());
    let settings = BrokerSettings::from_file(config)?;
    match server::raise_descriptor_limit() {
        Some(limit) => tracing::info!("[INIT] descriptor limit {limit}"),
        None => tracing::info!("[INIT] descriptor limit unlimited"),
    }
    let coordinator = Coordinator::bind(settings, 8).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    let signals = tokio::spawn(async move {
        wait_for_termination().await;
        tracing::info!("[INIT] stopping");
        stop.cancel();
    });
    let served = coordinator.serve(shutdown).await;
    signals.abort();
    served
}

/// Reopen the log file at every SIGHUP, for as long as the daemon runs. The
/// signal is watched from here on (before serving), so a SIGHUP never finds
/// its default action (ending the process). A file that cannot be reopened
/// keeps the old one and says so in it.
fn reopen_log_on_hangup(log: LogHandle) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(
                    "[INIT] cannot watch SIGHUP, the log file is never reopened: {error}"
                );
                return None;
            }
        };
        Some(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match log.reopen() {
                    Ok(()) => tracing::info!("[INIT] SIGHUP: log file reopened"),
                    Err(error) => {
                        tracing::error!("[INIT] SIGHUP: {error}; logging to the old file")
                    }
                }
            }
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = log;
        None
    }
}

async fn wait_for_termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
