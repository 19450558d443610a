//! The one error type of this crate and the LAVA error kind each variant stands for.

use std::time::Duration;

use lava_error::{ErrorKind as LavaKind, LavaError};

/// Which of LAVA's error classes a [`ConnectionError`] belongs to.
///
/// `From<ConnectionError> for LavaError` maps these onto LAVA's kinds; the mapping follows LAVA's
/// `shell.py`: transport failures are `InfrastructureError`, end of file on the
/// console is `ConnectionClosedError` (a kind of `InfrastructureError`), an invalid
/// regular expression is a `TestError`, and a timeout is reported separately so the
/// calling action can raise its own timeout exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The lab's fault: a tool is missing, a port cannot be opened, I/O failed.
    Infrastructure,
    /// The device connection reached end of file (`ConnectionClosedError`).
    ConnectionClosed,
    /// A wait reached its deadline before any awaited pattern appeared.
    Timeout,
    /// A pattern given by the job or device is not a valid regular expression.
    Test,
    /// The device configuration is unusable (e.g. an unparsable connect command).
    Configuration,
    /// The caller used the session wrongly (e.g. sending after disconnecting).
    Bug,
}

/// Everything that can go wrong while talking to a device.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The connection command could not be started.
    #[error("Cannot run command {command:?}: {source}")]
    Spawn {
        /// The command as configured.
        command: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The device configuration's connection command cannot be turned into an argv.
    #[error("Invalid connection command {command:?}: {reason}")]
    InvalidCommand {
        /// The command as configured.
        command: String,
        /// Why it cannot be split into arguments (e.g. an unclosed quote).
        reason: String,
    },
    /// A transport-level I/O failure (open, read, write, configure).
    #[error("{what}: {source}")]
    Io {
        /// What was being done (e.g. `Cannot open /dev/ttyUSB0`).
        what: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// End of file on the connection while something was awaited.
    #[error("Connection closed while waiting for {awaited}")]
    ConnectionClosed {
        /// What was being waited for (patterns or prompt).
        awaited: String,
    },
    /// The deadline passed before anything awaited appeared.
    #[error("Timed out after {:.3} seconds waiting for {awaited}", waited.as_secs_f64())]
    Timeout {
        /// What was being waited for (patterns or prompt).
        awaited: String,
        /// How long was waited.
        waited: Duration,
    },
    /// A pattern is not a valid regular expression.
    #[error("Invalid regular expression {pattern:?}: {source}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// The regex compiler's error.
        #[source]
        source: Box<regex::Error>,
    },
    /// A prompt was awaited on a session that has no prompt list (LAVA's `prompt_str is None`).
    #[error("no prompt configured for {connection}")]
    NoPrompt {
        /// A description of the connection (its command or address).
        connection: String,
    },
    /// The session was used after it was disconnected.
    #[error("{operation} called on a disconnected connection")]
    Disconnected {
        /// The method that was called.
        operation: &'static str,
    },
}

impl ConnectionError {
    /// The LAVA error class this error belongs to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ConnectionError::Spawn { .. } | ConnectionError::Io { .. } => ErrorKind::Infrastructure,
            ConnectionError::InvalidCommand { .. } => ErrorKind::Configuration,
            ConnectionError::ConnectionClosed { .. } => ErrorKind::ConnectionClosed,
            ConnectionError::Timeout { .. } => ErrorKind::Timeout,
            ConnectionError::InvalidPattern { .. } => ErrorKind::Test,
            ConnectionError::Disconnected { .. } | ConnectionError::NoPrompt { .. } => {
                ErrorKind::Bug
            }
        }
    }

    /// True for errors LAVA reports as `InfrastructureError` (closed connections included).
    pub fn is_infrastructure(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Infrastructure | ErrorKind::ConnectionClosed
        )
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ConnectionError::Io {
            what: what.into(),
            source,
        }
    }
}

/// The error an action reports for a connection failure, as LAVA's `shell.py` raises it:
/// end of file is `ConnectionClosedError` "Connection closed", a wait reaching its deadline
/// is `TestError` "ShellSession command timed out." (an action whose own deadline passed
/// reports its own timeout instead, which only the action knows), and the other failures
/// keep their class and text.
impl From<ConnectionError> for LavaError {
    fn from(error: ConnectionError) -> Self {
        let kind = match error.kind() {
            ErrorKind::ConnectionClosed => {
                return LavaError::new(LavaKind::ConnectionClosed, "Connection closed");
            }
            ErrorKind::Timeout => return LavaError::test("ShellSession command timed out."),
            ErrorKind::Infrastructure => LavaKind::Infrastructure,
            ErrorKind::Test => LavaKind::Test,
            ErrorKind::Configuration => LavaKind::Configuration,
            ErrorKind::Bug => LavaKind::Bug,
        };
        LavaError::new(kind, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lava_errors_carry_lavas_class_and_text() {
        let closed = LavaError::from(ConnectionError::ConnectionClosed {
            awaited: "login:".into(),
        });
        assert_eq!(
            closed,
            LavaError::new(LavaKind::ConnectionClosed, "Connection closed")
        );
        let timeout = LavaError::from(ConnectionError::Timeout {
            awaited: "login:".into(),
            waited: Duration::from_secs(3),
        });
        assert_eq!(timeout, LavaError::test("ShellSession command timed out."));
        let spawn = LavaError::from(ConnectionError::Spawn {
            command: "telnet".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        assert_eq!(spawn.kind, LavaKind::Infrastructure);
        assert!(spawn.message.starts_with("Cannot run command \"telnet\""));
        let invalid = LavaError::from(ConnectionError::InvalidCommand {
            command: "'".into(),
            reason: "No closing quotation".into(),
        });
        assert_eq!(invalid.kind, LavaKind::Configuration);
        let misuse = LavaError::from(ConnectionError::Disconnected {
            operation: "sendline",
        });
        assert_eq!(misuse.kind, LavaKind::Bug);
    }
}
