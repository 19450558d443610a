//! `lava-log-upload` sends a job's log records to lava-server while the job runs, as
//! LAVA's `lava-run --url URL --token TOKEN --job-log-interval N` does: form-encoded POSTs
//! of `lines` (a YAML list of records) and `index` (records the server already accepted)
//! to `{url}/scheduler/internal/v1/jobs/{job_id}/logs/`, with the `LAVA-Token` header and
//! a `lava <version>` user agent, at most 1000 records a batch, resuming from the reply's
//! `line_count`.
//!
//! The records are read from the job's `logs.yaml` ([`LogFile`]), not queued in memory:
//! the file is written anyway, so while the server is away the uploader holds one batch
//! at most and loses nothing. Failures (refused or dropped connections, timeouts, 4xx and
//! 5xx replies) are retried with an exponential back-off ([`UploadSettings`]); every
//! request is bounded by a timeout. The upload runs on a task of its own
//! ([`spawn`]): a slow or dead server never stalls the job. At the end of the job,
//! [`UploaderHandle::finish`] drains what is left within a deadline. The token is never
//! part of a message ([`SendError`] texts are masked).
//!
//! Main types: [`LogFile`] (the source), [`Sink`] and [`HttpSink`] (the destination),
//! [`spawn`] → [`UploaderHandle`] → [`UploadReport`]. With the `test-server` feature,
//! `test_server` is a fake lava-server log endpoint with scripted faults.
//!
//! ```no_run
//! use lava_log_upload::{HttpSettings, HttpSink, LogFile, UploadSettings};
//! use std::time::Duration;
//! # async fn example() -> Result<(), lava_log_upload::SendError> {
//! let sink = HttpSink::new(&HttpSettings::new("https://lava.example.org", "job-token", "8124"))?;
//! let uploader = lava_log_upload::spawn(
//!     LogFile::new("/var/lib/lava/dispatcher/worker/tmp/8124/logs.yaml"),
//!     sink,
//!     UploadSettings::every(Duration::from_secs(5)),
//! );
//! // ... the job runs and its logger appends to logs.yaml ...
//! let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
//! let report = uploader.finish(deadline, std::future::pending()).await;
//! assert_eq!(report.pending, 0);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod error;
pub mod sink;
pub mod source;
#[cfg(feature = "test-server")]
pub mod test_server;
pub mod uploader;

pub use error::SendError;
pub use sink::{HttpSettings, HttpSink, Sink};
pub use source::{Batch, BatchLimits, LogFile};
pub use uploader::{UploadReport, UploadSettings, UploaderHandle, spawn};

/// The `User-Agent` of the log upload: LAVA's `lava <version>`, with our version.
pub const USER_AGENT: &str = concat!("lava ", env!("CARGO_PKG_VERSION"));

/// `text` with every occurrence of `token` replaced by `[MASKED]`.
pub fn mask(text: String, token: &str) -> String {
    if token.is_empty() || !text.contains(token) {
        text
    } else {
        text.replace(token, "[MASKED]")
    }
}
