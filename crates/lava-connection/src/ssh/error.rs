//! [`SshError`]: what can go wrong on an SSH connection, each naming the server
//! (`host:port`) and the step that failed.
//!
//! No variant carries key material: an unusable identity file is named by its path
//! with a fixed description of the problem, never with the parser's message.

use std::path::PathBuf;
use std::time::Duration;

use lava_error::{ErrorKind as LavaKind, LavaError};

use crate::error::ErrorKind;

/// An SSH connection failure.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// A device `ssh` option cannot be understood.
    #[error("Invalid ssh option '{option}': {reason}")]
    InvalidOption {
        /// The option's name as written in the device configuration.
        option: String,
        /// Why it is not understood.
        reason: String,
    },
    /// The identity file cannot be used (missing, unreadable, encrypted, not a key).
    #[error("Cannot use the ssh identity file {}: {reason}", path.display())]
    IdentityFile {
        /// The identity file's path.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The host name does not resolve.
    #[error("Cannot resolve the ssh host {host}: {reason}")]
    Resolve {
        /// The host name as configured.
        host: String,
        /// The resolver's message.
        reason: String,
    },
    /// Nothing listens on the port.
    #[error("ssh connection to {address} refused")]
    Refused {
        /// The `host:port` connected to.
        address: String,
    },
    /// The host or its network cannot be reached.
    #[error("ssh host {address} unreachable: {reason}")]
    Unreachable {
        /// The `host:port` connected to.
        address: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A step did not finish in time.
    #[error("ssh host {address}: no answer within {:.1} seconds ({step})", waited.as_secs_f64())]
    TimedOut {
        /// The `host:port` being connected to.
        address: String,
        /// The step that did not finish (connect, handshake, authentication, ...).
        step: &'static str,
        /// How long was waited.
        waited: Duration,
    },
    /// The SSH protocol handshake failed (not an SSH server, no common algorithm...).
    #[error("SSH handshake with {address} failed: {reason}")]
    Handshake {
        /// The `host:port` connected to.
        address: String,
        /// What the SSH library reported.
        reason: String,
    },
    /// The server's host key was refused by the host key policy.
    #[error("Host key of {address} refused: {reason}")]
    HostKey {
        /// The `host:port` connected to.
        address: String,
        /// Why the policy refused the key.
        reason: String,
    },
    /// The server did not accept the key.
    #[error(
        "Authentication as {user} on {address} failed with identity file {} (the server accepts: {accepted})",
        identity_file.display()
    )]
    AuthFailed {
        /// The user logged in as (the device's `ssh` `user`).
        user: String,
        /// The `host:port` connected to.
        address: String,
        /// The private key offered (the device's `identity_file`).
        identity_file: PathBuf,
        /// The authentication methods the server said it accepts.
        accepted: String,
    },
    /// The connection ended while `during`.
    #[error("ssh connection to {address} lost {during}: {reason}")]
    Disconnected {
        /// The `host:port` connected to.
        address: String,
        /// What was under way when the connection ended.
        during: String,
        /// What the SSH library reported.
        reason: String,
    },
    /// The server refused a channel or a request on it.
    #[error("ssh host {address} refused {what}")]
    Refusal {
        /// The `host:port` connected to.
        address: String,
        /// What was refused (a session channel, a command to run, ...).
        what: String,
    },
    /// A command run on the device failed.
    #[error("{what} on {address} failed: {reason}")]
    Remote {
        /// The `host:port` the command ran on.
        address: String,
        /// The operation that failed (e.g. copying a file to the device).
        what: String,
        /// How the remote command failed (its exit status or signal and output).
        reason: String,
    },
    /// A local file to send cannot be read.
    #[error("Cannot read {}: {source}", path.display())]
    LocalFile {
        /// The local file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
}

impl SshError {
    /// The LAVA error class: device configuration mistakes are `Configuration`,
    /// everything else is the lab's (`Infrastructure`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            SshError::InvalidOption { .. } | SshError::IdentityFile { .. } => {
                ErrorKind::Configuration
            }
            _ => ErrorKind::Infrastructure,
        }
    }
}

/// An SSH failure as the action reports it: `ConfigurationError` for the device's own
/// mistakes, `InfrastructureError` otherwise, with the error's text.
impl From<SshError> for LavaError {
    fn from(error: SshError) -> Self {
        let kind = match error.kind() {
            ErrorKind::Configuration => LavaKind::Configuration,
            _ => LavaKind::Infrastructure,
        };
        LavaError::new(kind, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_mistakes_and_the_labs_failures() {
        let option = LavaError::from(SshError::InvalidOption {
            option: "-o Bad".into(),
            reason: "unknown".into(),
        });
        assert_eq!(option.kind, LavaKind::Configuration);
        assert_eq!(option.message, "Invalid ssh option '-o Bad': unknown");
        let refused = LavaError::from(SshError::Refused {
            address: "10.0.0.2:22".into(),
        });
        assert_eq!(refused.kind, LavaKind::Infrastructure);
    }
}
