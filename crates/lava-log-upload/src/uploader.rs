//! The upload loop: every interval, send what the log file holds beyond what the server
//! accepted, in batches; on failure, back off and send the same records again.
//!
//! Progress is two numbers: `index`, how many records the server accepted (LAVA's form
//! field), and the byte offset in the log file just after them. A reply's `line_count`
//! advances both by that many records, so a batch the server took only in part is sent
//! again from the first record it did not take, and a batch whose reply was lost is sent
//! again with the same `index`, which the server uses to skip what it already stored:
//! nothing is lost and nothing is stored twice.
//!
//! The loop runs as its own task: the job never waits for the server. At the end of the
//! job [`UploaderHandle::finish`] sends everything left, bounded by a deadline (and a
//! caller's stop signal); what could not be sent stays in the log file and is counted in
//! the [`UploadReport`].

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use crate::error::SendError;
use crate::sink::Sink;
use crate::source::{BatchLimits, LogFile};

/// LAVA's largest batch.
pub const MAX_RECORDS: usize = 1000;

/// Shortest time between two sends: an interval of 0 (`--job-log-interval 0`) sends as
/// soon as records are written, without spinning on an idle log.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Largest batch in bytes of records (Django refuses request bodies over 2.5 MB by
/// default; form encoding makes the body larger than the records).
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// How the uploader paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadSettings {
    /// Time between two sends (`--job-log-interval`; at least [`MIN_INTERVAL`]).
    pub interval: Duration,
    /// Bound of one batch.
    pub limits: BatchLimits,
    /// Bound of one request, reply included.
    pub request_timeout: Duration,
    /// First wait after a failure; doubled after each further failure.
    pub backoff_initial: Duration,
    /// Longest wait after a failure.
    pub backoff_max: Duration,
}

impl UploadSettings {
    /// LAVA's batching with a send every `interval`; 120 s per request (LAVA master's
    /// bound), back-off from 1 s to 30 s.
    pub fn every(interval: Duration) -> Self {
        UploadSettings {
            interval,
            limits: BatchLimits {
                records: MAX_RECORDS,
                bytes: MAX_BATCH_BYTES,
            },
            request_timeout: Duration::from_secs(120),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What was delivered when the uploader stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReport {
    /// Records the server accepted (the final `index`).
    pub accepted: u64,
    /// Complete records of the log file not delivered.
    pub pending: u64,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<SendError>,
}

#[derive(Debug, Default)]
struct Progress {
    index: u64,
    offset: u64,
    last_error: Option<SendError>,
}

/// The running uploader; dropping it stops the upload.
pub struct UploaderHandle {
    finishing: watch::Sender<bool>,
    task: JoinHandle<()>,
    progress: Arc<Mutex<Progress>>,
    log: LogFile,
}

/// Start uploading the records of `log` to `sink` (on the current tokio runtime).
pub fn spawn<S: Sink + 'static>(log: LogFile, sink: S, settings: UploadSettings) -> UploaderHandle {
    let (finishing, finish_rx) = watch::channel(false);
    let progress = Arc::new(Mutex::new(Progress::default()));
    let task = tokio::spawn(run(
        log.clone(),
        sink,
        settings,
        finish_rx,
        progress.clone(),
    ));
    UploaderHandle {
        finishing,
        task,
        progress,
        log,
    }
}

impl UploaderHandle {
    /// Send every record written so far, then stop. Gives up at `deadline` or when `stop`
    /// completes (e.g. a signal), whichever comes first; the report counts what is left.
    pub async fn finish(
        mut self,
        deadline: Instant,
        stop: impl Future<Output = ()>,
    ) -> UploadReport {
        let _ = self.finishing.send(true);
        tokio::select! {
            _ = &mut self.task => {}
            _ = sleep_until(deadline) => self.task.abort(),
            _ = stop => self.task.abort(),
        }
        let (index, offset, last_error) = {
            let p = lock(&self.progress);
            (p.index, p.offset, p.last_error.clone())
        };
        let log = self.log.clone();
        let pending = tokio::task::spawn_blocking(move || log.count_from(offset))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        UploadReport {
            accepted: index,
            pending,
            last_error: if pending == 0 { None } else { last_error },
        }
    }
}

impl Drop for UploaderHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(progress: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    progress.lock().unwrap_or_else(|p| p.into_inner())
}

async fn run<S: Sink>(
    log: LogFile,
    mut sink: S,
    settings: UploadSettings,
    mut finishing: watch::Receiver<bool>,
    progress: Arc<Mutex<Progress>>,
) {
    let interval = settings.interval.max(MIN_INTERVAL);
    let mut limits = settings.limits;
    let mut backoff = settings.backoff_initial;
    let mut next = Instant::now() + interval;
    loop {
        if !*finishing.borrow() {
            tokio::select! {
                _ = sleep_until(next) => {}
                changed = finishing.changed() => {
                    if changed.is_err() {
                        return; // the handle is gone
                    }
                }
            }
        }
        let outcome = send_pending(&log, &mut sink, &settings, &mut limits, &progress).await;
        lock(&progress).last_error = outcome.clone().err();
        match outcome {
            Ok(()) => {
                backoff = settings.backoff_initial;
                if *finishing.borrow() {
                    return;
                }
                next = Instant::now() + interval;
            }
            Err(_) => {
                next = Instant::now() + backoff;
                backoff = (backoff * 2).min(settings.backoff_max);
                if *finishing.borrow() {
                    sleep_until(next).await;
                }
            }
        }
    }
}

/// Send batches until the log file holds no complete record beyond what was accepted.
async fn send_pending<S: Sink>(
    log: &LogFile,
    sink: &mut S,
    settings: &UploadSettings,
    limits: &mut BatchLimits,
    progress: &Mutex<Progress>,
) -> Result<(), SendError> {
    loop {
        let (index, offset) = {
            let p = lock(progress);
            (p.index, p.offset)
        };
        let reader = log.clone();
        let read_limits = *limits;
        let batch = tokio::task::spawn_blocking(move || reader.read_batch(offset, read_limits))
            .await
            .map_err(|e| read_error(log, e.to_string()))?
            .map_err(|e| read_error(log, e.to_string()))?;
        if batch.is_empty() {
            return Ok(());
        }
        let reply = timeout(settings.request_timeout, sink.send(&batch, index))
            .await
            .unwrap_or(Err(SendError::Timeout));
        match reply {
            Ok(0) => return Err(SendError::NoProgress),
            Ok(count) => {
                let count = (count as usize).min(batch.len());
                let mut p = lock(progress);
                p.index += count as u64;
                p.offset = batch.ends[count - 1];
            }
            Err(e) => {
                if matches!(e, SendError::Status { code: 413, .. }) {
                    // Too large for the server: halve the batch (down to one record).
                    limits.records = (batch.len() / 2).max(1);
                    limits.bytes = (limits.bytes / 2).max(1);
                }
                return Err(e);
            }
        }
    }
}

fn read_error(log: &LogFile, message: String) -> SendError {
    SendError::Read {
        path: log.path().display().to_string(),
        message,
    }
}
