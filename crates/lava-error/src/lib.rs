//! LAVA's error kinds ([`ErrorKind`]) and the error every dispatcher crate's work ends in
//! ([`LavaError`], [`LavaResult`]).
//!
//! The kind decides three things, exactly as in LAVA: whether a retry action retries
//! (Infrastructure, Job and Test errors only), the job result's `error_type`, and the
//! `error_help` line logged when the job fails. The crate depends on no crate of ours but
//! [`lava_python`], so the crates below the pipeline (connections, the test shell, devices,
//! MultiNode) implement `From<TheirError> for LavaError` next to their own error enums,
//! and callers convert with `?`.
//!
//! ```
//! use lava_error::{ErrorKind, LavaError, LavaResult};
//!
//! fn argv(line: &str) -> LavaResult<Vec<String>> {
//!     Ok(lava_python::shlex_split(line)?)
//! }
//! let error = argv("telnet 'open").unwrap_err();
//! assert_eq!(error.kind, ErrorKind::Job);
//! assert_eq!(error.kind.error_type(), "Job");
//! assert!(LavaError::infrastructure("tftp is missing").kind.is_retryable());
//! ```

#![warn(missing_docs)]

use std::fmt;

/// The class of a failure, as LAVA names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The lab's fault: tools, network, PDU, serial.
    Infrastructure,
    /// EOF on the device connection (a kind of InfrastructureError).
    ConnectionClosed,
    /// The submission's fault: bad job data, artefacts, prompts not found.
    Job,
    /// A test failed to run as written.
    Test,
    /// The device or dispatcher configuration is wrong.
    Configuration,
    /// A test-shell timeout (rewritten as TestError by enclosing pipelines).
    Timeout,
    /// A MultiNode wait or sync call timed out.
    MultinodeTimeout,
    /// The job was canceled by a signal.
    Canceled,
    /// Our fault.
    Bug,
}

impl ErrorKind {
    /// LAVA's class name (`InfrastructureError`, `JobError`, ...).
    pub fn class_name(self) -> &'static str {
        match self {
            ErrorKind::Infrastructure => "InfrastructureError",
            ErrorKind::ConnectionClosed => "ConnectionClosedError",
            ErrorKind::Job => "JobError",
            ErrorKind::Test => "TestError",
            ErrorKind::Configuration => "ConfigurationError",
            ErrorKind::Timeout => "LAVATimeoutError",
            ErrorKind::MultinodeTimeout => "MultinodeProtocolTimeoutError",
            ErrorKind::Canceled => "JobCanceled",
            ErrorKind::Bug => "LAVABug",
        }
    }

    /// The job result's `error_type`.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorKind::Infrastructure | ErrorKind::ConnectionClosed => "Infrastructure",
            ErrorKind::Job => "Job",
            ErrorKind::Test => "Test",
            ErrorKind::Configuration => "Configuration",
            ErrorKind::Timeout => "LAVATimeout",
            ErrorKind::MultinodeTimeout => "MultinodeTimeout",
            ErrorKind::Canceled => "Canceled",
            ErrorKind::Bug => "Bug",
        }
    }

    /// The `error_help` line logged at `error` when the job fails.
    pub fn error_help(self) -> &'static str {
        match self {
            ErrorKind::Infrastructure => {
                "InfrastructureError: The Infrastructure is not working correctly. Please report this error to LAVA admins."
            }
            ErrorKind::ConnectionClosed => "ConnectionClosedError: connection closed",
            ErrorKind::Job => "JobError: Your job cannot terminate cleanly.",
            ErrorKind::Test => "TestError: A test failed to run, look at the error message.",
            ErrorKind::Configuration => {
                "ConfigurationError: The LAVA instance is not configured correctly. Please report this error to LAVA admins."
            }
            ErrorKind::Timeout => "LAVATimeoutError: test shell has timed out.",
            ErrorKind::MultinodeTimeout => {
                "MultinodeProtocolTimeoutError: Multinode wait/sync call has timed out."
            }
            ErrorKind::Canceled => "JobCanceled: The job was canceled",
            ErrorKind::Bug => "LAVABug: This is probably a bug in LAVA, please report it.",
        }
    }

    /// Whether a retry action tries again after this kind of failure.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Infrastructure
                | ErrorKind::ConnectionClosed
                | ErrorKind::Job
                | ErrorKind::Test
        )
    }
}

/// A failure with its LAVA kind and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LavaError {
    /// LAVA's class of the failure.
    pub kind: ErrorKind,
    /// What went wrong, as logged and put in the result's `error_msg`.
    pub message: String,
}

impl LavaError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        LavaError {
            kind,
            message: message.into(),
        }
    }
    /// An `InfrastructureError`.
    pub fn infrastructure(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Infrastructure, message)
    }
    /// A `JobError`.
    pub fn job(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Job, message)
    }
    /// A `TestError`.
    pub fn test(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Test, message)
    }
    /// A `ConfigurationError`.
    pub fn configuration(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Configuration, message)
    }
    /// A `LAVATimeoutError`.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    /// A `LAVABug`.
    pub fn bug(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Bug, message)
    }
    /// A `JobCanceled`.
    pub fn canceled(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Canceled, message)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.class_name())
    }
}

/// Shorthand for results of pipeline work.
pub type LavaResult<T> = Result<T, LavaError>;

/// A command line that does not split (an unclosed quote, a trailing backslash) is the
/// submission's fault: the job or the device configuration it brought.
impl From<lava_python::ShlexError> for LavaError {
    fn from(error: lava_python::ShlexError) -> Self {
        LavaError::job(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_decide_retry_and_error_type() {
        assert!(ErrorKind::ConnectionClosed.is_retryable());
        assert!(!ErrorKind::Configuration.is_retryable());
        assert_eq!(ErrorKind::ConnectionClosed.error_type(), "Infrastructure");
        assert_eq!(
            ErrorKind::MultinodeTimeout.to_string(),
            "MultinodeProtocolTimeoutError"
        );
    }

    #[test]
    fn unsplittable_command_is_a_job_error() {
        let error = LavaError::from(lava_python::shlex_split("a 'b").unwrap_err());
        assert_eq!(error.kind, ErrorKind::Job);
        assert_eq!(error.message, r#"No closing quotation in "a 'b""#);
    }
}
