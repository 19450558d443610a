//! `cargo xtask soak N --worker`: the jobs through `lava-worker`, as a lab runs them.
//!
//! A fake lava-server (`lava_worker::test_server::FakeLava`, in this process: no
//! PostgreSQL) and our `lava-worker` program, started as a lab's unit starts it (its own
//! process group, a worker directory, a log file, the token given) with `lava-run` found
//! in `PATH` (the soak's copy of our binary, as `/usr/bin/lava-run` is found in
//! production). Each job is submitted to the server and the soak waits until the worker
//! has reported it FINISHED and forgotten it. On top of the soak's checks for every job
//! (processes, files), per job:
//!
//! - **reported**: the server holds the job FINISHED with `result: pass` and no error
//!   type (the worker read them from `result.yaml`), RUNNING posted, and lava-run's log
//!   uploaded (a test case's `results` record and the final `job` record passing);
//! - **forgotten**: the job's directory under `<worker-dir>/tmp` is removed, the state
//!   file owns no job and remembers this one as acknowledged;
//! - **reaped**: the worker has no child left (lava-run reaped, no zombie);
//!
//! and across the soak: the worker's resident set (`VmRSS` after each job) in the last
//! decile within 10 % (and 2 MiB) of the first decile's, its open descriptors (after each
//! job) in the last decile no more than in the first (sockets: at most [`SOCKET_SLACK`]
//! more, its HTTP client's idle connections), a clean exit (status 0) on SIGTERM, and no `ERROR`
//! line in its log. lava-run's peak RSS is its `VmHWM`, polled while it runs.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lava_worker::test_server::{FakeJob, FakeLava, JobState};
use rustix::process::{Pid, Signal, kill_process, kill_process_group};

use super::{JOB_LIMIT, JobReport, Problems, grew};

/// The worker's name on the fake server.
const NAME: &str = "lava-rs-soak";
/// The server version both sides speak.
const VERSION: &str = "2023.01";
/// After FINISHED, how long the worker may take to remove the job's directory and forget
/// the job (it does both right after the server's answer).
const FORGET_LIMIT: Duration = Duration::from_secs(30);
/// How long the worker may take to stop on SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// How often the soak looks at the job, the worker and lava-run's memory.
const POLL: Duration = Duration::from_millis(20);

/// How many more sockets the worker may hold in the last decile than in the first: its
/// HTTP client keeps idle connections to the server, one or two more depending on when a
/// response was last read; a leak grows by one per job.
const SOCKET_SLACK: usize = 2;

/// The worker's resident set and descriptors after one job.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    /// Descriptors other than sockets (files, pipes, event queues).
    files: usize,
    /// Sockets (the connections to the server).
    sockets: usize,
}

/// A fake lava-server and our `lava-worker` serving it; the worker is killed with its
/// process group when dropped, the server stopped.
pub struct WorkerRig {
    lava: FakeLava,
    worker: Option<Child>,
    worker_dir: PathBuf,
    log: PathBuf,
    root: PathBuf,
    samples: Vec<Sample>,
    ids: Vec<u64>,
}

impl WorkerRig {
    /// The runtime the fake server runs on (its tasks end with the server; the runtime
    /// outlives the rig).
    pub fn runtime() -> Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("starting the fake lava-server's runtime")
    }

    /// Start the fake server on `runtime` and `lava_worker` with `bin` (which holds
    /// `lava-run`) first in its `PATH` and `tmp` as its `TMPDIR`; everything else under
    /// `root`.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        root: &Path,
        lava_worker: &Path,
        bin: &Path,
        tmp: &Path,
    ) -> Result<WorkerRig> {
        let lava = runtime
            .block_on(FakeLava::start(NAME, VERSION))
            .context("starting the fake lava-server")?;
        let worker_dir = root.join("worker");
        let log = root.join("lava-worker.log");
        let path = match std::env::var_os("PATH") {
            Some(path) => std::env::join_paths(
                std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path)),
            )?,
            None => bin.as_os_str().to_owned(),
        };
        let worker = Command::new(lava_worker)
            .args(["--name", NAME, "--url", &lava.url(), "--token"])
            .arg(lava.worker_token())
            .arg("--worker-dir")
            .arg(&worker_dir)
            .arg("--log-file")
            .arg(&log)
            // The shortest period the command line takes: a job waits at most a second
            // for the ping that starts it.
            .args(["--ping-interval", "1", "--http-timeout", "30"])
            .env("PATH", path)
            .env("TMPDIR", tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("lava-worker.stderr"))?)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", lava_worker.display()))?;
        let mut rig = WorkerRig {
            lava,
            worker: Some(worker),
            worker_dir,
            log,
            root: root.to_path_buf(),
            samples: Vec::new(),
            ids: Vec::new(),
        };
        // Ready once it has pinged.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !rig
            .lava
            .requests()
            .iter()
            .any(|r| r.target.contains("?version="))
        {
            rig.ensure_worker_runs()?;
            ensure!(
                Instant::now() < deadline,
                "lava-worker did not ping the fake server within 30 s; log:\n{}",
                rig.log_text()
            );
            std::thread::sleep(POLL);
        }
        Ok(rig)
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.worker.as_ref().map_or(0, Child::id)
    }

    /// Submit one job (files `device` and `job`), wait until it is reported and forgotten,
    /// check it; returns its id and, when it completed, its figures.
    pub fn run_job(
        &mut self,
        device: &Path,
        job: &Path,
        problems: &mut Problems,
    ) -> Result<(String, Option<JobReport>)> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        let id = self.lava.submit(&read(job)?, &read(device)?);
        self.ids.push(id);
        let name = id.to_string();
        let started = Instant::now();
        let mut peak_rss_kib = 0;
        let mut finished_after = None;
        let job_dir = self.worker_dir.join("tmp").join(&name);
        let forgotten = loop {
            self.ensure_worker_runs()?;
            // lava-run (and `nice` before it execs lava-run) is the worker's child.
            for child in lava_procfs::children(self.pid()) {
                if let Ok(memory) = lava_procfs::memory(child.pid) {
                    peak_rss_kib = peak_rss_kib.max(memory.peak_kib);
                }
            }
            let state = self.lava.job(id).map(|j| j.state);
            if finished_after.is_none() && state == Some(JobState::Finished) {
                finished_after = Some(started.elapsed());
            }
            if let Some(finished) = finished_after {
                if self.owned_jobs()? == 0 && !job_dir.exists() {
                    break true;
                }
                if started.elapsed() > finished + FORGET_LIMIT {
                    break false;
                }
            } else if started.elapsed() > JOB_LIMIT {
                // Cancelled on the server; the worker ends lava-run (soak end or Drop
                // kills the rest).
                self.lava.cancel(id);
                problems.add(
                    &name,
                    format!(
                        "not reported FINISHED within {JOB_LIMIT:?} (server state {state:?}); cancelled"
                    ),
                );
                return Ok((name, None));
            }
            std::thread::sleep(POLL);
        };
        let job = self.lava.job(id).context("the fake server lost a job")?;
        if !forgotten {
            problems.add(
                &name,
                format!(
                    "still owned by the worker {FORGET_LIMIT:?} after FINISHED (directory {} {})",
                    job_dir.display(),
                    if job_dir.exists() { "left" } else { "removed" }
                ),
            );
        }
        if !lava_worker::State::load(&self.worker_dir)?.was_reported(id) {
            problems.add(
                &name,
                "not remembered as acknowledged in the state file".into(),
            );
        }
        let children = lava_procfs::children(self.pid());
        if !children.is_empty() {
            problems.add(
                &name,
                format!(
                    "the worker has children left after the job: {:?}",
                    children
                        .iter()
                        .map(|c| format!("{} ({})", c.pid, c.state))
                        .collect::<Vec<_>>()
                ),
            );
        }
        self.sample()?;
        let complaints = check_report(&job);
        if !complaints.is_empty() {
            let saved = self.root.join(format!("failed-{name}.log"));
            std::fs::write(&saved, format!("{job:#?}\n"))?;
            problems.add(
                &name,
                format!(
                    "{} (the server's copy in {})",
                    complaints.join("; "),
                    saved.display()
                ),
            );
            return Ok((name, None));
        }
        Ok((
            name,
            Some(JobReport {
                wall: finished_after.expect("set before the loop ends"),
                peak_rss_kib,
            }),
        ))
    }

    /// Stop the worker with SIGTERM, check its exit, its log and its state, print its
    /// figures.
    pub fn finish(mut self, problems: &mut Problems) -> Result<()> {
        let mut worker = self.worker.take().expect("the worker runs until finish");
        let pid = Pid::from_raw(worker.id() as i32);
        if let Some(pid) = pid {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + STOP_LIMIT;
        let status = loop {
            match worker.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() <= deadline => std::thread::sleep(POLL),
                _ => {
                    if let Some(pid) = pid {
                        let _ = kill_process_group(pid, Signal::KILL);
                    }
                    let _ = worker.wait();
                    break None;
                }
            }
        };
        match status {
            Some(status) if status.success() => {}
            Some(status) => problems.add(
                "(worker)",
                format!("lava-worker exited {status} on SIGTERM"),
            ),
            None => problems.add(
                "(worker)",
                format!("lava-worker did not stop within {STOP_LIMIT:?} of SIGTERM; killed"),
            ),
        }
        let state = lava_worker::State::load(&self.worker_dir)?;
        if !state.jobs().is_empty() {
            problems.add(
                "(worker)",
                format!("the state file still owns {} job(s)", state.jobs().len()),
            );
        }
        let acknowledged = self
            .ids
            .iter()
            .filter(|id| state.was_reported(**id))
            .count();
        let log = self.log_text();
        let level = |name: &str| {
            log.lines()
                .filter(|line| line.split_whitespace().nth(1) == Some(name))
                .count()
        };
        let (errors, warnings) = (level("ERROR"), level("WARN"));
        if errors > 0 {
            problems.add(
                "(worker)",
                format!("{errors} ERROR line(s) in {}", self.log.display()),
            );
        }
        let rss: Vec<f64> = self.samples.iter().map(|s| s.rss_kib as f64).collect();
        let files: Vec<usize> = self.samples.iter().map(|s| s.files).collect();
        let sockets: Vec<usize> = self.samples.iter().map(|s| s.sockets).collect();
        if rss.is_empty() {
            println!("  lava-worker: no job ran");
            return Ok(());
        }
        let decile = (rss.len() / 10).max(1);
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        let (first, last) = (mean(&rss[..decile]), mean(&rss[rss.len() - decile..]));
        let max = rss.iter().copied().fold(0.0, f64::max);
        let deciles = |xs: &[usize]| {
            (
                xs[..decile].iter().max().copied().unwrap_or(0),
                xs[xs.len() - decile..].iter().max().copied().unwrap_or(0),
                xs.iter().min().copied().unwrap_or(0),
                xs.iter().max().copied().unwrap_or(0),
            )
        };
        let (first_files, last_files, min_files, max_files) = deciles(&files);
        let (first_sockets, last_sockets, min_sockets, max_sockets) = deciles(&sockets);
        println!(
            "  lava-worker: RSS (VmRSS after each job) first decile {:.1} MiB, last decile {:.1} MiB ({:+.1} %), max {:.1} MiB",
            first / 1024.0,
            last / 1024.0,
            (last / first - 1.0) * 100.0,
            max / 1024.0
        );
        println!(
            "  lava-worker: open descriptors after each job: files {first_files} at most in the first decile, {last_files} in the last ({min_files}..{max_files}); sockets {first_sockets}, {last_sockets} ({min_sockets}..{max_sockets})"
        );
        println!(
            "  lava-worker: {acknowledged} of {} jobs acknowledged in its state, {} owned at the end; exit on SIGTERM: {}; log: {errors} ERROR, {warnings} WARN line(s)",
            self.ids.len(),
            state.jobs().len(),
            match status {
                Some(status) => status.to_string(),
                None => "none (killed)".to_string(),
            }
        );
        if acknowledged != self.ids.len() {
            problems.add(
                "(worker)",
                format!(
                    "{} job(s) not acknowledged in the state file",
                    self.ids.len() - acknowledged
                ),
            );
        }
        if rss.len() >= 10 && grew(first, last) {
            problems.add(
                "(worker)",
                format!(
                    "lava-worker's RSS grew from {:.1} MiB (first decile) to {:.1} MiB (last decile)",
                    first / 1024.0,
                    last / 1024.0
                ),
            );
        }
        if files.len() >= 10
            && (last_files > first_files || last_sockets > first_sockets + SOCKET_SLACK)
        {
            problems.add(
                "(worker)",
                format!(
                    "lava-worker's open descriptors grew: files {first_files} -> {last_files}, sockets {first_sockets} -> {last_sockets} (first decile -> last)"
                ),
            );
        }
        Ok(())
    }

    /// The worker's resident set and descriptors after a job: the fewest descriptors of
    /// five looks 20 ms apart, since the worker holds two more for a moment while it saves
    /// its state (the new file and the directory it syncs), which a single look can catch.
    fn sample(&mut self) -> Result<()> {
        let pid = self.pid();
        let (mut files, mut sockets) = (usize::MAX, usize::MAX);
        for look in 0..5 {
            if look > 0 {
                std::thread::sleep(POLL);
            }
            let open = lava_procfs::descriptors(pid)?;
            let socket_count = open
                .iter()
                .filter(|(_, target)| target.to_string_lossy().starts_with("socket:"))
                .count();
            files = files.min(open.len() - socket_count);
            sockets = sockets.min(socket_count);
        }
        self.samples.push(Sample {
            rss_kib: lava_procfs::memory(pid)?.rss_kib,
            files,
            sockets,
        });
        Ok(())
    }

    /// The worker's figures after the last job, for the progress lines.
    pub fn progress(&self) -> String {
        self.samples.last().map_or(String::new(), |s| {
            format!(
                "; lava-worker RSS {:.1} MiB, {} files, {} sockets open",
                s.rss_kib as f64 / 1024.0,
                s.files,
                s.sockets
            )
        })
    }

    /// The jobs the worker's state file owns.
    fn owned_jobs(&self) -> Result<usize> {
        Ok(lava_worker::State::load(&self.worker_dir)?.jobs().len())
    }

    /// Fails when the worker has exited.
    fn ensure_worker_runs(&mut self) -> Result<()> {
        if let Some(worker) = &mut self.worker
            && let Some(status) = worker.try_wait()?
        {
            self.worker = None;
            bail!(
                "lava-worker exited ({status}) during the soak; log:\n{}",
                self.log_text()
            );
        }
        Ok(())
    }

    fn log_text(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let stderr =
            std::fs::read_to_string(self.root.join("lava-worker.stderr")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{}\n{stderr}", tail.join("\n"))
    }
}

impl Drop for WorkerRig {
    fn drop(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            if let Some(pid) = Pid::from_raw(worker.id() as i32) {
                let _ = kill_process_group(pid, Signal::KILL);
            }
            let _ = worker.wait();
        }
        self.lava.stop();
    }
}

/// What is wrong with a job the server holds as finished (empty: nothing).
fn check_report(job: &FakeJob) -> Vec<String> {
    let mut complaints = Vec::new();
    let Some(finished) = &job.finished else {
        return vec![format!("not FINISHED on the server ({:?})", job.state)];
    };
    let field = |name: &str| finished.get(name).map(String::as_str).unwrap_or_default();
    if field("result") != "pass" || !field("error_type").is_empty() {
        complaints.push(format!(
            "reported result {:?}, error type {:?} (expected pass and none); errors: {:?}",
            field("result"),
            field("error_type"),
            field("errors")
        ));
    }
    if job.running_posts == 0 {
        complaints.push("RUNNING never posted".into());
    }
    let has = |parts: &[&str]| {
        job.logs
            .iter()
            .any(|record| parts.iter().all(|p| record.contains(p)))
    };
    let test_result = job.logs.iter().any(|record| {
        record.contains("\"lvl\": \"results\"") && !record.contains("\"definition\": \"lava\"")
    });
    if !test_result {
        complaints.push("no test case's results record in the uploaded log".into());
    }
    if !has(&["\"case\": \"job\"", "\"result\": \"pass\""]) {
        complaints.push(format!(
            "no passing job record in the uploaded log ({} records)",
            job.logs.len()
        ));
    }
    complaints
}
