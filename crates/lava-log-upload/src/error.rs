//! Why a batch was not delivered. Messages never carry the token (it is masked).

use thiserror::Error;

/// A failed attempt to deliver a batch; the uploader retries after a back-off.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    /// No complete reply within the request timeout.
    #[error("no reply within the request timeout")]
    Timeout,
    /// Connection refused, reset or closed before the reply.
    #[error("connection failed: {0}")]
    Transport(String),
    /// The server answered something else than 200.
    #[error("the server answered HTTP {code}: {body}")]
    Status {
        /// The HTTP status code.
        code: u16,
        /// The start of the reply body.
        body: String,
    },
    /// A 200 reply without a usable `line_count`.
    #[error("the server's reply has no line_count: {0}")]
    Reply(String),
    /// The server took none of the batch's records (`line_count` 0).
    #[error("the server accepted no record of the batch")]
    NoProgress,
    /// The log file could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The log file.
        path: String,
        /// The I/O error.
        message: String,
    },
}
