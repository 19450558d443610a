//! The one error type of the crate, and whose fault each error is.

use std::path::PathBuf;

use crate::checksum::Mismatch;
use crate::compression::Compression;

/// Whose fault an [`ArtefactError`] is; a dispatcher maps it onto its error kinds (LAVA:
/// `JobError`, `InfrastructureError`, `Bug`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The submitted input: a URL, a checksum, a declared compression, an archive.
    Input,
    /// The environment: the network, the server, the local disk.
    Environment,
    /// This crate or its caller broke an internal rule.
    Bug,
}

/// Why an artefact could not be fetched, decoded or written.
#[derive(Debug, thiserror::Error)]
pub enum ArtefactError {
    /// The URL's scheme is neither `http(s)` nor `file`, or the `file:` URL is malformed.
    #[error("Unsupported url protocol scheme: {0}")]
    UnsupportedScheme(String),
    /// The download's target is a directory.
    #[error("Download '{}' is a directory, not a file", .0.display())]
    TargetIsDirectory(PathBuf),
    /// The bytes downloaded are not a valid stream of the declared compression.
    #[error("Decompression of '{url}' ({compression}) failed: {detail}")]
    Decompress {
        /// The source URL.
        url: String,
        /// The compression the stream was decoded as.
        compression: Compression,
        /// The decoder's message.
        detail: String,
    },
    /// A checksum of the downloaded bytes differs from the one expected.
    #[error("{} for '{url}' does not match.", .mismatch.algorithm)]
    ChecksumMismatch {
        /// The source URL.
        url: String,
        /// Which checksum, what was computed and what was expected.
        mismatch: Mismatch,
    },
    /// A cpio or tar archive is corrupt, truncated or not of the expected format.
    #[error("{0}")]
    InvalidArchive(String),
    /// An archive member's path is absolute or climbs out of the archive root.
    #[error("Refusing archive member {why}: {name:?}")]
    UnsafeMemberPath {
        /// The member's name as written in the archive.
        name: String,
        /// What is wrong with it ("with an absolute path", "outside the archive root").
        why: &'static str,
    },
    /// The HTTP client could not be built (TLS roots, resolver).
    #[error("Unable to build the HTTP client: {0}")]
    HttpClient(String),
    /// The request failed (no connection, no answer).
    #[error("Unable to download '{url}': {detail}")]
    Request {
        /// The source URL.
        url: String,
        /// The error and its causes, joined by `: `.
        detail: String,
    },
    /// The response body broke off.
    #[error("Unable to download '{url}': {detail}")]
    Transfer {
        /// The source URL.
        url: String,
        /// The error and its causes, joined by `: `.
        detail: String,
    },
    /// The server answered with a status other than 200.
    #[error("Unable to download '{url}'")]
    HttpStatus {
        /// The source URL.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// Fewer or more bytes arrived than the source announced.
    #[error(
        "Download finished ({downloaded} bytes) but was not expected size ({expected} bytes), check your networking."
    )]
    SizeMismatch {
        /// Bytes received.
        downloaded: u64,
        /// Bytes announced (`Content-Length` or the file's size).
        expected: u64,
    },
    /// Reading or writing a local file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done ("Unable to write /path").
        context: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An internal rule was broken (a worker thread panicked, a writer was misused).
    #[error("{0}")]
    Bug(String),
}

impl ArtefactError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            ArtefactError::UnsupportedScheme(_)
            | ArtefactError::TargetIsDirectory(_)
            | ArtefactError::Decompress { .. }
            | ArtefactError::ChecksumMismatch { .. }
            | ArtefactError::InvalidArchive(_)
            | ArtefactError::UnsafeMemberPath { .. } => Fault::Input,
            ArtefactError::HttpClient(_)
            | ArtefactError::Request { .. }
            | ArtefactError::Transfer { .. }
            | ArtefactError::HttpStatus { .. }
            | ArtefactError::SizeMismatch { .. }
            | ArtefactError::Io { .. } => Fault::Environment,
            ArtefactError::Bug(_) => Fault::Bug,
        }
    }

    /// An [`ArtefactError::Io`] saying what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ArtefactError::Io {
            context: context.into(),
            source,
        }
    }
}

/// An artefact error as LAVA's: the input's fault (a URL, a checksum, a declared
/// compression, an archive) is a JobError, the environment's (network, server, disk) an
/// InfrastructureError, and a broken internal rule a Bug; the message is kept.
impl From<ArtefactError> for lava_error::LavaError {
    fn from(error: ArtefactError) -> Self {
        let kind = match error.fault() {
            Fault::Input => lava_error::ErrorKind::Job,
            Fault::Environment => lava_error::ErrorKind::Infrastructure,
            Fault::Bug => lava_error::ErrorKind::Bug,
        };
        lava_error::LavaError::new(kind, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lava_error::{ErrorKind, LavaError};

    #[test]
    fn the_fault_decides_lavas_kind() {
        let scheme = LavaError::from(ArtefactError::UnsupportedScheme("ftp".into()));
        assert_eq!(scheme.kind, ErrorKind::Job);
        assert_eq!(scheme.message, "Unsupported url protocol scheme: ftp");
        let io = ArtefactError::io("Writing", std::io::Error::other("disk full"));
        assert_eq!(LavaError::from(io).kind, ErrorKind::Infrastructure);
        assert_eq!(
            LavaError::from(ArtefactError::Bug("rule".into())).kind,
            ErrorKind::Bug
        );
    }
}
