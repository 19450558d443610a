//! `cargo xtask bench worker [N] [--lava-run PATH] [--lava-worker PATH] [--timeout SECS]`:
//! N concurrent local-shell jobs (default 10) through one worker of the lab (`cargo xtask
//! lab`'s server, started for the run if it is not running, and stopped again then). Four
//! rounds: our `lava-worker` with our `lava-run` on `fixtures/local-shell/inline-job.yaml`;
//! then, on the same job without its test action (see [`without_test_actions`]), ours with
//! ours, Debian's `lava-worker` with our `lava-run`, and Debian's with Debian's — the pair the
//! ratios compare (LAVA's worker and dispatcher against ours).
//!
//! The jobs are submitted at once through the REST API to N local-shell devices
//! (`lava-rs-bench-NN`, added to the lab's worker); each round's count of Complete jobs is
//! reported, the others listed with their health and log, and the measures are those of the
//! Complete jobs; the command fails unless all jobs of the rounds with our `lava-run` are
//! Complete. Per job: the dispatcher's peak RSS and CPU time (user + system) as GNU `time`
//! reports them for the dispatcher and what it waited for (a wrapper placed where the lab's
//! worker finds `lava-run`), and its duration on the server (`start_time` to `end_time`).
//! The worker's own: `VmHWM` and user + system time of its process. Ours/LAVA's per-job
//! ratios are set against the targets (≤ 1/10 each). Our programs are release builds
//! unless `--lava-run`/`--lava-worker` name others. Outputs stay in `target/worker-bench/`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lava_test_support::lab::{self, Api, LabInfo, LabOptions, Worker};

use crate::shared::{build_release_bin, target_dir, workspace_root};

/// LAVA's dispatcher, as Debian's `lava-dispatcher` installs it.
const LAVA_RUN: &str = "/usr/bin/lava-run";
const LAVA_WORKER: &str = "/usr/bin/lava-worker";
const GNU_TIME: &str = "/usr/bin/time";
/// The unit of `/proc/<pid>/stat`'s times (the kernel's USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;
/// The targets: our per-job RSS and CPU at most this fraction of LAVA's.
const TARGET_RATIO: f64 = 0.10;

/// One job's dispatcher, as GNU time and the server saw it.
#[derive(Debug, Clone, Copy)]
struct JobStats {
    max_rss_kib: u64,
    cpu_s: f64,
    /// Start to end on the server.
    duration_s: f64,
}

/// One dispatcher's run of the N jobs.
struct Round {
    name: &'static str,
    /// The jobs that ended Complete.
    jobs: Vec<JobStats>,
    /// The others, with their health and log address.
    failed: Vec<String>,
    worker_rss_kib: u64,
    worker_cpu_s: f64,
    wall: Duration,
}

pub fn bench(args: &[String]) -> Result<()> {
    let mut count = 10usize;
    let mut lava_run: Option<PathBuf> = None;
    let mut lava_worker: Option<PathBuf> = None;
    let mut timeout = Duration::from_secs(900);
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--lava-run" => {
                lava_run = Some(iter.next().context("--lava-run needs a path")?.into());
            }
            "--lava-worker" => {
                lava_worker = Some(iter.next().context("--lava-worker needs a path")?.into());
            }
            "--timeout" => {
                let secs = iter.next().context("--timeout needs seconds")?;
                timeout = Duration::from_secs(
                    secs.parse()
                        .with_context(|| format!("--timeout {secs:?}: expected seconds"))?,
                );
            }
            n => {
                count = n
                    .parse()
                    .with_context(|| format!("{n:?}: expected the number of jobs"))?;
            }
        }
    }
    ensure!(count > 0, "at least one job");
    for tool in [LAVA_RUN, LAVA_WORKER, GNU_TIME] {
        ensure!(
            Path::new(tool).exists(),
            "{tool} is missing (scripts/install-test-deps.sh installs it)"
        );
    }
    let ours = match lava_run {
        Some(path) => path
            .canonicalize()
            .with_context(|| format!("--lava-run {}", path.display()))?,
        None => {
            println!("==> building lava-run (release)");
            build_release_bin("lava-dispatch", "lava-run")?
        }
    };

    let our_worker = match lava_worker {
        Some(path) => path
            .canonicalize()
            .with_context(|| format!("--lava-worker {}", path.display()))?,
        None => {
            println!("==> building lava-worker (release)");
            build_release_bin("lava-worker-bin", "lava-worker")?
        }
    };

    println!("==> the lab (starting it if it is not running)");
    let (info, started) = lab::start(&LabOptions::default())?;
    let _stop = StopLab(started);
    let devices: Vec<String> = (1..=count)
        .map(|n| format!("lava-rs-bench-{n:02}"))
        .collect();
    println!(
        "==> {count} local-shell devices on worker {}",
        info.worker_name
    );
    lab::add_local_shell_devices(&devices)?;

    let out = target_dir().join("worker-bench");
    let _ = fs::remove_dir_all(&out);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let inline = fs::read_to_string(workspace_root().join("fixtures/local-shell/inline-job.yaml"))?;
    let boot_only = without_test_actions(&inline)?;
    let mut rounds = Vec::new();
    let rounds_to_run: [(&'static str, &Path, &Path, &String); 4] = [
        ("ours, with the test", &our_worker, &ours, &inline),
        ("ours", &our_worker, &ours, &boot_only),
        (
            "Debian's worker + our lava-run",
            Path::new(LAVA_WORKER),
            &ours,
            &boot_only,
        ),
        (
            "LAVA",
            Path::new(LAVA_WORKER),
            Path::new(LAVA_RUN),
            &boot_only,
        ),
    ];
    for (name, worker, dispatcher, job) in rounds_to_run {
        println!("==> {count} jobs at once: {name}");
        let dir = out.join(name.replace([',', ' ', '\''], "-"));
        let round = runtime.block_on(round(
            &info, name, worker, dispatcher, job, count, &dir, timeout,
        ))?;
        rounds.push(round);
    }
    report(&rounds, count);
    println!("outputs: {}", out.display());
    ensure!(
        rounds[..3].iter().all(|round| round.failed.is_empty()),
        "some of our jobs did not complete (listed above)"
    );
    Ok(())
}

/// Stops the lab at the end when this benchmark started it.
struct StopLab(bool);

impl Drop for StopLab {
    fn drop(&mut self) {
        if self.0
            && let Err(err) = lab::stop()
        {
            eprintln!("stopping the lab: {err}");
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn round(
    info: &LabInfo,
    name: &'static str,
    worker: &Path,
    dispatcher: &Path,
    job: &str,
    count: usize,
    dir: &Path,
    timeout: Duration,
) -> Result<Round> {
    let times = dir.join("times");
    fs::create_dir_all(&times)?;
    let wrapper = dir.join("lava-run");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             # cargo xtask bench worker: the dispatcher under GNU time, one record per job\n\
             for arg; do case $arg in --job-id=*) id=${{arg#--job-id=}};; esac; done\n\
             exec {GNU_TIME} -o '{}/'\"$id\" -f '%M %U %S' '{}' \"$@\"\n",
            times.display(),
            dispatcher.display()
        ),
    )?;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))?;
    // Before the worker starts: it would pick up what an interrupted round left.
    let api = Api::new(info)?;
    let stale = api.fail_unfinished().await?;
    if stale > 0 {
        println!("    failed {stale} unfinished jobs left on the server");
    }
    let mut worker = Worker::start(info, worker, Some(&wrapper), &dir.join("worker"))?;
    let worker_pid = worker.id().context("the worker runs")?;
    let job = job.replace(
        "job_name: local-shell inline smoke",
        &format!("job_name: bench worker {name}"),
    );
    let start = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(api.submit(&job).await?);
    }
    let mut jobs = Vec::new();
    let mut failed = Vec::new();
    for id in &ids {
        let remaining = timeout.saturating_sub(start.elapsed());
        let finished = api.wait_finished(*id, remaining).await?;
        if finished["health"] != "Complete" {
            failed.push(format!(
                "job {id} {} ({}scheduler/job/{id}/log_file/plain)",
                finished["health"], info.url
            ));
            continue;
        }
        let record = times.join(id.to_string());
        let text = fs::read_to_string(&record).with_context(|| {
            format!("{name}: job {id}: no GNU time record {}", record.display())
        })?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        let parse = |i: usize| -> Result<f64> {
            fields.get(i).and_then(|f| f.parse().ok()).with_context(|| {
                format!(
                    "{}: expected 'KiB user sys', found {text:?}",
                    record.display()
                )
            })
        };
        jobs.push(JobStats {
            max_rss_kib: parse(0)? as u64,
            cpu_s: parse(1)? + parse(2)?,
            duration_s: server_duration(&finished).unwrap_or(f64::NAN),
        });
    }
    let wall = start.elapsed();
    let (worker_rss_kib, worker_cpu_s) = process_usage(worker_pid)?;
    worker.stop();
    Ok(Round {
        name,
        jobs,
        failed,
        worker_rss_kib,
        worker_cpu_s,
        wall,
    })
}

/// The job without its `test` actions: deploy the overlay, boot to the shell, finalize.
/// LAVA's `lava-run` cannot run the test shell on the local-shell device (the overlay is
/// unpacked there by lava-rs's `local_overlay` device parameter, which LAVA does not have;
/// LAVA's `transfer_overlay` needs a web server on the worker), so the two dispatchers are
/// compared on this job.
fn without_test_actions(job: &str) -> Result<String> {
    let mut value: serde_yaml::Value = serde_yaml::from_str(job)?;
    let actions = value
        .get_mut("actions")
        .and_then(serde_yaml::Value::as_sequence_mut)
        .context("the job has no actions list")?;
    actions.retain(|action| action.get("test").is_none());
    Ok(serde_yaml::to_string(&value)?)
}

/// Seconds from the job's `start_time` to its `end_time` (RFC 3339, UTC, as the API gives).
fn server_duration(job: &serde_json::Value) -> Option<f64> {
    let seconds = |key: &str| -> Option<f64> {
        let text = job[key].as_str()?;
        // 2026-12-05T15:59:53.219742Z: only the time of day differs within a job here;
        // a job crossing midnight is reported as NaN rather than guessed.
        let (_date, time) = text.trim_end_matches('Z').split_once('T')?;
        let mut parts = time.split(':');
        let (h, m, s): (f64, f64, f64) = (
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
        );
        Some(h * 3600.0 + m * 60.0 + s)
    };
    let (start, end) = (seconds("start_time")?, seconds("end_time")?);
    let same_day = job["start_time"].as_str()?.get(..10) == job["end_time"].as_str()?.get(..10);
    same_day.then_some(end - start)
}

/// A live process's peak RSS (`VmHWM`, KiB) and user + system CPU seconds (its own, not
/// its children's).
fn process_usage(pid: u32) -> Result<(u64, f64)> {
    let memory = lava_procfs::memory(pid)?;
    let stat = lava_procfs::ProcessStat::read(pid)?;
    let ticks = (stat.utime_ticks + stat.stime_ticks) as f64;
    Ok((memory.peak_kib, ticks / USER_HZ))
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

fn report(rounds: &[Round], count: usize) {
    println!(
        "\n{:<50} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>8}",
        format!("{count} concurrent jobs (worker + lava-run)"),
        "RSS/job MiB",
        "max MiB",
        "CPU/job s",
        "job s",
        "worker MiB",
        "worker CPU s",
        "wall s"
    );
    for round in rounds {
        let rss = mean(round.jobs.iter().map(|j| j.max_rss_kib as f64)) / 1024.0;
        let max = round.jobs.iter().map(|j| j.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
        let cpu = mean(round.jobs.iter().map(|j| j.cpu_s));
        let duration = mean(round.jobs.iter().map(|j| j.duration_s));
        println!(
            "{:<50} {rss:>12.1} {max:>12.1} {cpu:>12.2} {duration:>12.1} {:>12.1} {:>12.2} {:>8.0}",
            format!("{} ({}/{count} Complete)", round.name, round.jobs.len()),
            round.worker_rss_kib as f64 / 1024.0,
            round.worker_cpu_s,
            round.wall.as_secs_f64()
        );
        for failure in &round.failed {
            println!("    {}: {failure}", round.name);
        }
    }
    if let [_, ours, _, lava] = rounds {
        let ratio = |f: &dyn Fn(&JobStats) -> f64| {
            mean(ours.jobs.iter().map(f)) / mean(lava.jobs.iter().map(f))
        };
        let rss = ratio(&|j| j.max_rss_kib as f64);
        let cpu = ratio(&|j| j.cpu_s);
        let verdict = |r: f64| if r <= TARGET_RATIO { "met" } else { "NOT met" };
        println!(
            "ours/LAVA per job (deploy, boot, finalize): RSS {rss:.3} (target ≤ {TARGET_RATIO}: {}), CPU {cpu:.3} (target ≤ {TARGET_RATIO}: {})",
            verdict(rss),
            verdict(cpu)
        );
        println!(
            "ours/LAVA worker: RSS {:.3}, CPU {:.3}",
            ours.worker_rss_kib as f64 / lava.worker_rss_kib as f64,
            ours.worker_cpu_s / lava.worker_cpu_s
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_duration_comes_from_the_server_times() {
        let job = serde_json::json!({
            "start_time": "2026-12-05T15:59:53.219742Z",
            "end_time": "2026-12-05T16:00:55.845750Z",
        });
        let d = server_duration(&job).unwrap();
        assert!((d - 62.626008).abs() < 1e-6, "{d}");
        let midnight = serde_json::json!({
            "start_time": "2026-12-05T23:59:59.0Z",
            "end_time": "2026-12-06T00:00:01.0Z",
        });
        assert_eq!(server_duration(&midnight), None);
    }

    #[test]
    fn this_process_has_a_peak_rss_and_cpu_time() {
        let (rss, cpu) = process_usage(std::process::id()).unwrap();
        assert!(rss > 0);
        assert!(cpu >= 0.0);
    }
}
