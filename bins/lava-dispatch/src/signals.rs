//! `lava-run`'s signals, as LAVA's: the first SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1 or
//! SIGUSR2 cancels the job (the blocks stop, finalize still runs, the result is `fail` with
//! `error_type: Canceled`); a second one is LAVA's "canceled again": finalize stops
//! waiting too. After the job, a signal ends the final log upload (the records stay in
//! `logs.yaml`), as LAVA master does.

use lava_pipeline::JobLogger;
use std::future::Future;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The job's signal handlers (installed for the life of the tokio runtime).
pub struct JobSignals {
    cancel: CancellationToken,
    again: CancellationToken,
    received: watch::Receiver<usize>,
}

impl JobSignals {
    /// Take over the six signals (call inside the runtime, before the job is parsed).
    pub fn install(logger: &JobLogger) -> std::io::Result<Self> {
        let cancel = CancellationToken::new();
        let again = CancellationToken::new();
        let (count, received) = watch::channel(0usize);
        let count = Arc::new(count);
        let kinds = [
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::quit(), "SIGQUIT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::user_defined1(), "SIGUSR1"),
            (SignalKind::user_defined2(), "SIGUSR2"),
        ];
        for (kind, name) in kinds {
            let mut stream = signal(kind)?;
            let (count, cancel, again, logger) =
                (count.clone(), cancel.clone(), again.clone(), logger.clone());
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    count.send_modify(|n| *n += 1);
                    let n = *count.borrow();
                    if n == 1 {
                        logger.error(format!("Received {name}: the job was canceled"));
                        cancel.cancel();
                    } else if n == 2 {
                        logger.error(format!(
                            "Received {name}: the job was canceled again (too long to cancel)"
                        ));
                        again.cancel();
                    }
                }
            });
        }
        Ok(JobSignals {
            cancel,
            again,
            received,
        })
    }

    /// Cancelled by the first signal: the job's cancel token.
    pub fn cancel(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Cancelled by the second signal.
    pub fn again(&self) -> CancellationToken {
        self.again.clone()
    }

    /// Completes at the next signal received after this call.
    pub fn next(&self) -> impl Future<Output = ()> + use<> {
        let mut received = self.received.clone();
        received.mark_unchanged();
        async move {
            if received.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
