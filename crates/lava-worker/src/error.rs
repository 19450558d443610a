//! The worker's errors: what stops the worker ([`WorkerError`]) and what one exchange with
//! lava-server can end in ([`ServerError`]).

use std::path::PathBuf;

/// Why the worker cannot start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A bad configuration value (names the option and what was expected).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file of the worker directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The local state file exists but is not the worker's format.
    #[error("{path}: not a lava-worker state file: {message}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

impl WorkerError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WorkerError::Io {
            path: path.into(),
            source,
        }
    }
}

/// How one request to lava-server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No answer: connection refused or reset, DNS, TLS, or the HTTP timeout.
    #[error("{url}: no answer: {message}")]
    Unreachable {
        /// The request URL.
        url: String,
        /// The transport's error.
        message: String,
    },
    /// An HTTP status other than the expected one; `error` is the server's `error` field
    /// when its body was LAVA's `{"error": ...}`, else the body's start.
    #[error("{url}: HTTP {status}: {error}")]
    Status {
        /// The request URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's message.
        error: String,
    },
    /// A 200 reply whose body is not what the protocol says.
    #[error("{url}: unexpected reply: {message}")]
    Reply {
        /// The request URL.
        url: String,
        /// What was wrong.
        message: String,
    },
}

impl ServerError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ServerError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's `error` message, when it answered with a status.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            ServerError::Status { error, .. } => Some(error),
            _ => None,
        }
    }
}
