//! [`RunError`]: why a run could not produce its output files (a failed job is not one).

use std::path::PathBuf;

/// A run that could not write or read its output files. A job that fails (bad definition,
/// unreadable device, a failing action) is an [`crate::Outcome`] with
/// [`crate::JobStatus::Fail`], not a `RunError`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The output directory cannot be created.
    #[error("Unable to create the output directory {}: {source}", path.display())]
    OutputDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An output file (`logs.yaml`, `result.yaml`) cannot be written.
    #[error("Unable to write {}: {source}", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A job log cannot be read back.
    #[error("Unable to read the job log {}: {source}", path.display())]
    ReadLog {
        /// The log file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The log upload cannot start (the HTTP client cannot be set up).
    #[error("Unable to start the log upload: {0}")]
    LogUpload(lava_log_upload::SendError),
}
