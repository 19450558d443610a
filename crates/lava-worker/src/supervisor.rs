//! The worker's loop: ping the server, start, cancel and follow the jobs it lists, report
//! each job's end, until told to stop.
//!
//! Per ping (every ping interval; after an unanswered ping or a server error, sooner, with
//! a back-off from 1 s doubling up to the ping interval): jobs listed `running` that the
//! worker does not own are started (unless their end was acknowledged in the last day),
//! `cancel` jobs are cancelled, `start` jobs started (a job already owned only gets its
//! RUNNING state posted again). Every check interval (1 s by default) each owned job is
//! looked at: a lava-run that ended is reaped and its process group's leftovers killed; a
//! cancelled one is escalated (SIGTERM to its group at the cancel, SIGTERM again after
//! 60 s, SIGKILL to the group after 120 s); a finished one is reported, in the same check
//! that saw it end (`FINISHED` with
//! `result.yaml`'s result, `stderr`, `description.yaml`), retried with a back-off while the
//! server is away, then its directories are removed and the job forgotten.
//!
//! Stopping: without `wait_jobs` the worker returns at once and its lava-run processes go
//! on (their own process groups; systemd's `KillMode=process`); the next worker process
//! finds them in the state file and follows them. With `wait_jobs` it goes on following
//! and cancelling (but starts nothing new) until every job is reported.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::{JobTicket, PingReply, ServerClient};
use crate::config::{TokenSource, WorkerConfig};
use crate::error::{ServerError, WorkerError};
use crate::launch::{collect_outputs, launch};
use crate::process::{Liveness, kill_group, probe, terminate};
use crate::state::{JobRecord, JobStatus, State, now};
use crate::token::{read_token_file, write_token_file};

/// How registration is retried (LAVA: every 5 s until it succeeds).
const REGISTER_RETRY: Duration = Duration::from_secs(5);

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Told to stop (jobs left running, followed by the next worker process).
    Stopped,
    /// Told to stop with `wait_jobs`: every job has ended and was reported.
    JobsDone,
    /// The server answered with a version mismatch and `exit_on_version_mismatch` is set.
    VersionMismatch,
}

/// Run the worker until `shutdown` completes (or a version mismatch with
/// `exit_on_version_mismatch`). Errors are those that leave the worker unable to keep its
/// state (the worker directory unwritable, a foreign state file, the HTTP client).
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Exit, WorkerError> {
    std::fs::create_dir_all(config.jobs_dir())
        .map_err(|e| WorkerError::io(config.jobs_dir(), e))?;
    let client = ServerClient::new(&config)?;
    let state = State::load(&config.worker_dir)?;
    tracing::info!(
        name = %config.name, url = %config.url, jobs = state.jobs().len(),
        "lava-worker starting"
    );
    let mut shutdown = std::pin::pin!(shutdown);
    let token = tokio::select! {
        token = obtain_token(&config, &client) => token?,
        () = &mut shutdown => return Ok(Exit::Stopped),
    };
    let mut supervisor = Supervisor {
        check_interval: config.check_interval,
        config,
        client,
        state,
        token,
        report_retry: HashMap::new(),
        seen_alive: HashSet::new(),
        stopping: false,
        ping_backoff: Duration::ZERO,
        next_ping: Instant::now(),
    };
    let mut check = tokio::time::interval(supervisor.check_interval);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if supervisor.stopping {
            if !supervisor.config.wait_jobs {
                tracing::info!(
                    jobs = supervisor.state.jobs().len(),
                    "lava-worker stopping (running jobs go on)"
                );
                return Ok(Exit::Stopped);
            }
            if supervisor.state.jobs().is_empty() {
                tracing::info!("lava-worker stopping: every job has ended");
                return Ok(Exit::JobsDone);
            }
            if let Some(exit) = supervisor.step(&mut check).await? {
                return Ok(exit);
            }
            continue;
        }
        tokio::select! {
            exit = supervisor.step(&mut check) => {
                if let Some(exit) = exit? {
                    return Ok(exit);
                }
            }
            () = &mut shutdown => {
                supervisor.stopping = true;
                if supervisor.config.wait_jobs {
                    tracing::info!(
                        jobs = supervisor.state.jobs().len(),
                        "stop requested: waiting for the running jobs (--wait-jobs)"
                    );
                }
            }
        }
    }
}

/// The worker token, in LAVA's order: registration with credentials, the given token,
/// the token file, anonymous registration. Registration is retried until it succeeds.
async fn obtain_token(config: &WorkerConfig, client: &ServerClient) -> Result<String, WorkerError> {
    let credentials = match &config.token {
        TokenSource::Given(token) => {
            write_token_file(&config.token_file, token)?;
            return Ok(token.clone());
        }
        TokenSource::File => {
            if let Some(token) = read_token_file(&config.token_file)? {
                return Ok(token);
            }
            None
        }
        TokenSource::Register { username, password } => {
            Some((username.as_str(), password.as_str()))
        }
    };
    loop {
        match client.register(credentials).await {
            Ok(token) => {
                write_token_file(&config.token_file, &token)?;
                tracing::info!(file = %config.token_file.display(), "registered; token stored");
                return Ok(token);
            }
            Err(err) => {
                tracing::error!(
                    "registration failed: {err}; retrying in {}s",
                    REGISTER_RETRY.as_secs()
                );
                tokio::time::sleep(REGISTER_RETRY).await;
            }
        }
    }
}

struct Supervisor {
    config: WorkerConfig,
    client: ServerClient,
    state: State,
    token: String,
    check_interval: Duration,
    /// Jobs whose FINISHED report failed: when to try again and the next back-off.
    report_retry: HashMap<u64, (Instant, Duration)>,
    /// Jobs whose lava-run this process saw alive (only those get their process group
    /// killed at the end: after a restart the group id may name someone else's group).
    seen_alive: HashSet<u64>,
    stopping: bool,
    ping_backoff: Duration,
    next_ping: Instant,
}

impl Supervisor {
    /// Wait for the next ping or check and do it.
    async fn step(
        &mut self,
        check: &mut tokio::time::Interval,
    ) -> Result<Option<Exit>, WorkerError> {
        tokio::select! {
            () = tokio::time::sleep_until(self.next_ping) => {
                let exit = self.ping_cycle().await?;
                Ok(exit)
            }
            _ = check.tick() => {
                self.check_jobs().await?;
                Ok(None)
            }
        }
    }

    async fn ping_cycle(&mut self) -> Result<Option<Exit>, WorkerError> {
        // Until the reply, a cancelled cycle pings again at once.
        match self.client.ping(&self.token).await {
            Ok(reply) => {
                self.ping_backoff = Duration::ZERO;
                self.next_ping = Instant::now() + self.config.ping_interval;
                tracing::debug!(?reply, "ping");
                self.handle(reply).await?;
                Ok(None)
            }
            Err(err) if err.status() == Some(409) => {
                if self.config.exit_on_version_mismatch {
                    tracing::error!("{err}: exiting (--exit-on-version-mismatch)");
                    return Ok(Some(Exit::VersionMismatch));
                }
                tracing::error!("{err}: the server gives this worker no job");
                self.next_ping = Instant::now() + self.config.ping_interval;
                Ok(None)
            }
            Err(
                err @ (ServerError::Unreachable { .. } | ServerError::Status { status: 500.., .. }),
            ) => {
                self.ping_backoff = (self.ping_backoff * 2)
                    .max(Duration::from_secs(1))
                    .min(self.config.ping_interval);
                tracing::warn!("ping: {err}; again in {}s", self.ping_backoff.as_secs_f32());
                self.next_ping = Instant::now() + self.ping_backoff;
                Ok(None)
            }
            Err(err) => {
                tracing::error!("ping: {err}");
                self.next_ping = Instant::now() + self.config.ping_interval;
                Ok(None)
            }
        }
    }

    async fn handle(&mut self, reply: PingReply) -> Result<(), WorkerError> {
        for ticket in &reply.running {
            if self.state.job(ticket.id).is_none()
                && !self.state.was_reported(ticket.id)
                && !self.stopping
            {
                tracing::warn!(
                    job = ticket.id,
                    "the server lists job {} as running here: starting it",
                    ticket.id
                );
                self.start(ticket).await?;
            }
        }
        for ticket in &reply.cancel {
            self.cancel(ticket)?;
        }
        for ticket in &reply.start {
            if self.state.job(ticket.id).is_some() {
                self.post_running(ticket.id, &ticket.token).await;
            } else if !self.stopping {
                self.start(ticket).await?;
            }
        }
        Ok(())
    }

    async fn start(&mut self, ticket: &JobTicket) -> Result<(), WorkerError> {
        let files = match self.client.job_files(ticket).await {
            Ok(files) => files,
            Err(err) => {
                tracing::error!(job = ticket.id, "cannot fetch job {}: {err}", ticket.id);
                return Ok(());
            }
        };
        let launched = match launch(&self.config, ticket.id, &ticket.token, &files) {
            Ok(launched) => launched,
            Err(err) => {
                tracing::error!(job = ticket.id, "cannot prepare job {}: {err}", ticket.id);
                return Ok(());
            }
        };
        let mut record = JobRecord {
            id: ticket.id,
            token: ticket.token.clone(),
            prefix: launched.prefix,
            pid: 0,
            start_ticks: 0,
            status: JobStatus::Finished,
            since: now(),
            terms: 0,
            canceled: false,
        };
        match launched.process {
            Ok((pid, ticks)) => {
                tracing::info!(job = ticket.id, pid, dir = %launched.dir.display(), "job {} started", ticket.id);
                record.pid = pid;
                record.start_ticks = ticks;
                record.status = JobStatus::Running;
                self.seen_alive.insert(ticket.id);
            }
            Err(reason) => {
                tracing::error!(job = ticket.id, "job {} not started: {reason}", ticket.id)
            }
        }
        self.state.insert(record)?;
        self.post_running(ticket.id, &ticket.token).await;
        Ok(())
    }

    async fn post_running(&self, id: u64, token: &str) {
        if let Err(err) = self.client.report_running(id, token).await {
            tracing::warn!(job = id, "RUNNING not reported for job {id}: {err}");
        }
    }

    fn cancel(&mut self, ticket: &JobTicket) -> Result<(), WorkerError> {
        let Some(record) = self.state.job_mut(ticket.id) else {
            if self.state.was_reported(ticket.id) {
                return Ok(());
            }
            tracing::info!(
                job = ticket.id,
                "cancel of job {} (not running here)",
                ticket.id
            );
            return self.state.insert(JobRecord {
                id: ticket.id,
                token: ticket.token.clone(),
                prefix: String::new(),
                pid: 0,
                start_ticks: 0,
                status: JobStatus::Finished,
                since: now(),
                terms: 0,
                canceled: true,
            });
        };
        if record.status != JobStatus::Running {
            return Ok(());
        }
        record.canceled = true;
        if probe(record.pid, record.start_ticks) == Liveness::Alive {
            tracing::info!(
                job = ticket.id,
                pid = record.pid,
                "canceling job {}: SIGTERM",
                ticket.id
            );
            terminate(record.pid);
            record.terms = 1;
            record.set_status(JobStatus::Canceling);
        }
        self.state.save()
    }

    async fn check_jobs(&mut self) -> Result<(), WorkerError> {
        let ids: Vec<u64> = self.state.jobs().iter().map(|j| j.id).collect();
        for id in ids {
            let Some(record) = self.state.job(id).cloned() else {
                continue;
            };
            match record.status {
                JobStatus::Running | JobStatus::Canceling => {
                    self.follow(record)?;
                    // A job seen ended is reported now, not a check period later.
                    if let Some(ended) = self
                        .state
                        .job(id)
                        .filter(|job| job.status == JobStatus::Finished)
                        .cloned()
                    {
                        self.report(ended).await?;
                    }
                }
                JobStatus::Finished => self.report(record).await?,
            }
        }
        Ok(())
    }

    /// A running or cancelled job: has it ended? escalate a cancel.
    fn follow(&mut self, record: JobRecord) -> Result<(), WorkerError> {
        let alive = record.pid != 0 && probe(record.pid, record.start_ticks) == Liveness::Alive;
        let Some(job) = self.state.job_mut(record.id) else {
            return Ok(());
        };
        if !alive {
            if self.seen_alive.remove(&record.id) {
                // Whatever the job left in its process group goes with it.
                kill_group(record.pid);
            }
            tracing::info!(job = record.id, "job {} has ended", record.id);
            job.set_status(JobStatus::Finished);
            return self.state.save();
        }
        self.seen_alive.insert(record.id);
        if record.status == JobStatus::Canceling {
            let waited = Duration::from_secs(now().saturating_sub(record.since));
            let grace = self.config.cancel_grace;
            if waited >= grace.kill {
                tracing::warn!(
                    job = record.id,
                    "job {} still running {}s after the cancel: SIGKILL",
                    record.id,
                    waited.as_secs()
                );
                kill_group(record.pid);
            } else if waited >= grace.second_term && job.terms < 2 {
                tracing::warn!(
                    job = record.id,
                    "job {} still running {}s after the cancel: SIGTERM again",
                    record.id,
                    waited.as_secs()
                );
                terminate(record.pid);
                job.terms = 2;
                return self.state.save();
            }
        }
        Ok(())
    }

    /// A finished job: report it (when its back-off allows), then forget it.
    async fn report(&mut self, record: JobRecord) -> Result<(), WorkerError> {
        if let Some((at, _)) = self.report_retry.get(&record.id)
            && Instant::now() < *at
        {
            return Ok(());
        }
        let dir = self.config.jobs_dir().join(record.dir_name());
        let mut finished = collect_outputs(&dir);
        if record.canceled && !dir.join("result.yaml").exists() {
            finished.error_type = "Canceled".to_string();
        }
        match self
            .client
            .report_finished(record.id, &record.token, &finished)
            .await
        {
            Ok(()) => {}
            // The job was deleted on the server: nothing left to report (as LAVA master).
            Err(err)
                if err.status() == Some(404)
                    && err.server_message() == Some(&format!("Unknown job '{}'", record.id)) =>
            {
                tracing::warn!(job = record.id, "{err}: forgetting job {}", record.id);
            }
            Err(err) => {
                let backoff = self
                    .report_retry
                    .get(&record.id)
                    .map_or(Duration::from_secs(1), |(_, b)| {
                        (*b * 2).min(self.config.ping_interval)
                    });
                tracing::warn!(
                    job = record.id,
                    "FINISHED not reported for job {}: {err}; again in {}s",
                    record.id,
                    backoff.as_secs()
                );
                self.report_retry
                    .insert(record.id, (Instant::now() + backoff, backoff));
                return Ok(());
            }
        }
        tracing::info!(job = record.id, result = %finished.result, error_type = %finished.error_type, "job {} reported finished", record.id);
        self.report_retry.remove(&record.id);
        remove_dir(&dir);
        remove_dir(&self.config.download_root.join(record.dir_name()));
        self.state.acknowledge(record.id)
    }
}

fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove {}: {e}", dir.display()),
    }
}
