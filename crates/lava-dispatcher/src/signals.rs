//! `lava-run`'s signals, as LAVA's: the first SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1 or
//! SIGUSR2 cancels the job (the blocks stop, finalize still runs, the result is `fail` with
//! `error_type: Canceled`); a second one is LAVA's "canceled again": finalize stops
//! waiting too. Once the job is over ([`JobSignals::job_finished`]) a signal only ends
//! the final log upload ([`JobSignals::next`]; the records stay in `logs.yaml`), as LAVA
//! master does.

use lava_pipeline::JobLogger;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The signal handlers of one run; they stop when dropped.
pub(crate) struct JobSignals {
    again: CancellationToken,
    received: watch::Receiver<usize>,
    finished: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl JobSignals {
    /// Take over the six signals (inside the runtime, before the job is read): the first
    /// cancels `cancel`.
    pub(crate) fn install(cancel: CancellationToken, logger: &JobLogger) -> Self {
        let again = CancellationToken::new();
        let (count, received) = watch::channel(0usize);
        let count = Arc::new(count);
        let finished = Arc::new(AtomicBool::new(false));
        let kinds = [
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::quit(), "SIGQUIT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::user_defined1(), "SIGUSR1"),
            (SignalKind::user_defined2(), "SIGUSR2"),
        ];
        let mut tasks = Vec::new();
        for (kind, name) in kinds {
            let Ok(mut stream) = signal(kind) else {
                continue;
            };
            let (count, cancel, again, logger, finished) = (
                count.clone(),
                cancel.clone(),
                again.clone(),
                logger.clone(),
                finished.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    count.send_modify(|n| *n += 1);
                    let n = *count.borrow();
                    if finished.load(Ordering::SeqCst) {
                        // The log is complete: the signal only ends the upload.
                    } else if n == 1 {
                        logger.error(format!("Received {name}: the job was canceled"));
                        cancel.cancel();
                    } else if n == 2 {
                        logger.error(format!(
                            "Received {name}: the job was canceled again (too long to cancel)"
                        ));
                        again.cancel();
                    }
                }
            }));
        }
        JobSignals {
            again,
            received,
            finished,
            tasks,
        }
    }

    /// Cancelled by the second signal.
    pub(crate) fn again(&self) -> CancellationToken {
        self.again.clone()
    }

    /// The job is over (its result logged): later signals are not logged and cancel
    /// nothing.
    pub(crate) fn job_finished(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }

    /// Completes at the next signal received after this call.
    pub(crate) fn next(&self) -> impl Future<Output = ()> + use<> {
        let mut received = self.received.clone();
        received.mark_unchanged();
        async move {
            if received.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for JobSignals {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
