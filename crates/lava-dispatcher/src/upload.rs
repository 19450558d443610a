//! The job's log sent to lava-server while it runs ([`LogUpload`], `lava-run --url`), by
//! [`lava_log_upload`], and drained before `result.yaml` is written.

use crate::RunError;
use lava_log_upload::{HttpSettings, HttpSink, LogFile, UploadReport, UploadSettings};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// The longest the final upload may take after the job (LAVA waits forever); a signal
/// ends it sooner (with [`crate::JobRun::cancel_on_signals`]). What is not sent stays in
/// `logs.yaml` and is counted in [`crate::Outcome::log_upload`].
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Where and how often the log is sent (`lava-run --url --token --job-log-interval`).
#[derive(Debug, Clone)]
pub struct LogUpload {
    /// lava-server's base URL.
    pub url: String,
    /// The job token (masked in the log and in every message).
    pub token: String,
    /// Time between two sends.
    pub interval: Duration,
}

/// A running upload.
pub(crate) struct Running(lava_log_upload::UploaderHandle);

/// Start sending `log` (inside the tokio runtime).
pub(crate) fn start(upload: &LogUpload, job_id: &str, log: &Path) -> Result<Running, RunError> {
    let settings = HttpSettings::new(&upload.url, &upload.token, job_id);
    let sink = HttpSink::new(&settings).map_err(RunError::LogUpload)?;
    let handle = lava_log_upload::spawn(
        LogFile::new(log),
        sink,
        UploadSettings::every(upload.interval),
    );
    Ok(Running(handle))
}

impl Running {
    /// Send what is left, within [`DRAIN_TIMEOUT`] or until `stop`.
    pub(crate) async fn finish(self, stop: impl Future<Output = ()>) -> UploadReport {
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        self.0.finish(deadline, stop).await
    }
}
