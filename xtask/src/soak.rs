//! `cargo xtask soak [N] [--qemu M] [--worker]`: N local-shell jobs
//! (`fixtures/local-shell/inline-job.yaml`) and M QEMU jobs (the embedded device's job, when
//! QEMU and `target/test-system` are there) run back to back through `lava-run`, or with
//! `--worker` through `lava-worker` and a fake lava-server ([`worker`], which adds the
//! worker's own checks), each checked for what it leaves behind:
//!
//! - **processes**: this process is the child subreaper (`PR_SET_CHILD_SUBREAPER`), so every
//!   process a job started and did not end (a console shell on a pty in its own session, a
//!   QEMU) is reparented here; after each job any child left is a leak (killed, reaped and
//!   reported);
//! - **files**: the job's `TMPDIR` (a directory of the soak's own) must be empty again, and no
//!   entry naming the job id may remain in the dispatcher's scratch root
//!   (`/var/lib/lava/dispatcher/tmp`) or the local-shell device's results root
//!   (`/tmp/lava-rs-local`);
//! - **descriptors**: the soak's own open descriptors are the same after the last job as
//!   before the first;
//! - **memory**: each job's peak RSS from `wait4`'s rusage; the mean of the last decile of
//!   the local-shell jobs may exceed the first decile's by at most 10 % (and 2 MiB);
//! - **results**: every `result.yaml` exists and records the job complete (`result: pass`).
//!
//! Everything is under `target/soak/lava-run` (`target/soak/worker` with `--worker`). The
//! debug `lava-run` and `lava-worker` are built (in one cargo run) and copied to its `bin`
//! first, so a rebuild during a long soak does not change the programs under test. A
//! summary with the figures is printed; any leak or failed job fails the command.

mod worker;

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::shared::{target_dir, workspace_root};
use crate::test_system;
use worker::WorkerRig;

/// The dispatcher's scratch root (LAVA's `/var/lib/lava/dispatcher/tmp`).
const SCRATCH_ROOT: &str = "/var/lib/lava/dispatcher/tmp";
/// The local-shell device's results root (`lava_test_results_dir` of its device file).
const LOCAL_RESULTS_ROOT: &str = "/tmp/lava-rs-local";
/// The longest one job may run before the soak stops it and fails.
const JOB_LIMIT: Duration = Duration::from_secs(600);
/// How far the last decile's mean peak RSS may exceed the first's: 10 % and 2 MiB.
const RSS_GROWTH_RATIO: f64 = 1.10;
const RSS_GROWTH_SLACK_KIB: f64 = 2048.0;

/// `cargo xtask soak` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Local-shell jobs to run.
    #[arg(default_value_t = 20)]
    jobs: usize,
    /// QEMU jobs to run after them (default: 2 when QEMU and the test system are there).
    #[arg(long)]
    qemu: Option<usize>,
    /// Run the jobs through `lava-worker` (our daemon, with our `lava-run`) against a fake
    /// lava-server, instead of starting `lava-run` directly.
    #[arg(long)]
    worker: bool,
}

/// How the jobs are run.
enum Runner {
    /// `lava-run` started by the soak.
    Direct { lava_run: PathBuf },
    /// Submitted to a fake lava-server, run by `lava-worker`.
    Worker(WorkerRig),
}

/// One finished job.
pub(crate) struct JobReport {
    wall: Duration,
    peak_rss_kib: u64,
}

/// What went wrong across the soak.
#[derive(Default)]
pub(crate) struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, job: &str, what: String) {
        eprintln!("soak: job {job}: {what}");
        self.0.push(format!("job {job}: {what}"));
    }
}

/// Entry point of `cargo xtask soak`.
pub fn run(args: Args) -> Result<()> {
    // One directory per mode: a direct soak and a worker soak can run at the same time.
    let root = target_dir()
        .join("soak")
        .join(if args.worker { "worker" } else { "lava-run" });
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    let bin = root.join("bin");
    build_programs()?;
    let built = target_dir().join("debug");
    let lava_run = install(&built.join("lava-run"), &bin)?;
    let lava_worker = if args.worker {
        Some(install(&built.join("lava-worker"), &bin)?)
    } else {
        None
    };
    become_subreaper()?;
    let qemu_jobs = match args.qemu {
        Some(n) => n,
        None if test_system::qemu_available()
            && test_system::cache_dir().join("stamp").is_file() =>
        {
            2
        }
        None => {
            println!("soak: no QEMU jobs (qemu-system-x86_64 or target/test-system missing)");
            0
        }
    };
    let qemu_job = if qemu_jobs > 0 {
        Some(test_system::build(&test_system::cache_dir(), false)?.job)
    } else {
        None
    };
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    // Before the count: a tokio runtime opens descriptors of its own, and one socket pair
    // for signals that lives as long as the process.
    let runtime = lava_worker
        .as_ref()
        .map(|_| WorkerRig::runtime())
        .transpose()?;
    let fds_before = open_descriptors()?;
    let mut runner = match (&lava_worker, &runtime) {
        (Some(lava_worker), Some(runtime)) => {
            Runner::Worker(WorkerRig::start(runtime, &root, lava_worker, &bin, &tmp)?)
        }
        _ => Runner::Direct { lava_run },
    };
    let base_id = u64::from(std::process::id()) * 100_000;
    let mut problems = Problems::default();
    let mut local = Vec::new();
    let mut qemu = Vec::new();
    let started = Instant::now();
    let local_device = workspace_root().join("fixtures/local-shell/device.yaml");
    let local_job = workspace_root().join("fixtures/local-shell/inline-job.yaml");
    let total = args.jobs + qemu_jobs;
    for i in 0..total {
        let id = (base_id + i as u64).to_string();
        let (device, job, reports) = if i < args.jobs {
            (local_device.clone(), local_job.clone(), &mut local)
        } else {
            let job = qemu_job
                .clone()
                .expect("built when QEMU jobs are asked for");
            (test_system::device_yaml(), job, &mut qemu)
        };
        let (id, report, worker_pid) = match &mut runner {
            Runner::Direct { lava_run } => {
                let report = run_job(lava_run, &device, &job, &id, &root, &mut problems)?;
                (id, report, None)
            }
            Runner::Worker(rig) => {
                let (id, report) = rig.run_job(&device, &job, &mut problems)?;
                (id, report, Some(rig.pid()))
            }
        };
        reports.extend(report);
        check_leftovers(&id, &tmp, worker_pid, &mut problems)?;
        if (i + 1) % (total / 10).max(1) == 0 || i + 1 == total {
            let last_peak = reports
                .last()
                .map_or(0.0, |r| r.peak_rss_kib as f64 / 1024.0);
            let worker = match &runner {
                Runner::Worker(rig) => rig.progress(),
                Runner::Direct { .. } => String::new(),
            };
            println!(
                "soak: {}/{total} jobs, {:.0} s, {} problem(s); last job's peak RSS {last_peak:.1} MiB{worker}",
                i + 1,
                started.elapsed().as_secs_f64(),
                problems.0.len()
            );
        }
    }
    println!();
    println!("soak summary ({:.0} s)", started.elapsed().as_secs_f64());
    let (via, rss_source) = if let Runner::Worker(rig) = runner {
        // Stopped first: its server's connections and runtime are the soak's descriptors.
        rig.finish(&mut problems)?;
        (" through lava-worker", "VmHWM polled")
    } else {
        ("", "wait4")
    };
    // The fake server's connections end on the runtime's thread: give it a moment.
    let mut fds_after = open_descriptors()?;
    let settle = Instant::now();
    while fds_after != fds_before && settle.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
        fds_after = open_descriptors()?;
    }
    if fds_after != fds_before {
        problems.add(
            "(all)",
            format!(
                "the soak's open descriptors went from {fds_before} to {fds_after}: {:?}",
                lava_procfs::descriptors(std::process::id())?
            ),
        );
    }
    summarise(
        &format!("local-shell{via}"),
        args.jobs,
        &local,
        rss_source,
        true,
        &mut problems,
    );
    if qemu_jobs > 0 {
        let kind = format!("qemu{via}");
        summarise(&kind, qemu_jobs, &qemu, rss_source, false, &mut problems);
    }
    println!("  descriptors of the soak process: {fds_before} before, {fds_after} after");
    println!(
        "  leftover processes, files and failed jobs: {}",
        problems.0.len()
    );
    if !problems.0.is_empty() {
        for problem in &problems.0 {
            eprintln!("soak FAILED: {problem}");
        }
        bail!("the soak found {} problem(s)", problems.0.len());
    }
    Ok(())
}

/// Print one kind of job's figures (the peak RSS as `rss_source` measured it); for `flat`,
/// check the peak RSS does not grow.
fn summarise(
    kind: &str,
    asked: usize,
    reports: &[JobReport],
    rss_source: &str,
    flat: bool,
    problems: &mut Problems,
) {
    if reports.is_empty() {
        println!("  {kind}: 0 of {asked} jobs complete");
        return;
    }
    let mut walls: Vec<f64> = reports.iter().map(|r| r.wall.as_secs_f64()).collect();
    walls.sort_by(f64::total_cmp);
    let rss: Vec<f64> = reports.iter().map(|r| r.peak_rss_kib as f64).collect();
    let decile = (rss.len() / 10).max(1);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let first = mean(&rss[..decile]);
    let last = mean(&rss[rss.len() - decile..]);
    let max = rss.iter().copied().fold(0.0, f64::max);
    println!(
        "  {kind}: {} of {asked} jobs complete; wall min/median/max {:.2}/{:.2}/{:.2} s",
        reports.len(),
        walls[0],
        walls[walls.len() / 2],
        walls[walls.len() - 1]
    );
    println!(
        "  {kind}: peak RSS ({rss_source}) first decile {:.1} MiB, last decile {:.1} MiB ({:+.1} %), max {:.1} MiB",
        first / 1024.0,
        last / 1024.0,
        (last / first - 1.0) * 100.0,
        max / 1024.0
    );
    if flat && reports.len() >= 10 && grew(first, last) {
        problems.add(
            "(all)",
            format!(
                "{kind} peak RSS grew from {:.1} MiB (first decile) to {:.1} MiB (last decile)",
                first / 1024.0,
                last / 1024.0
            ),
        );
    }
}

/// Whether a mean RSS grew from `first` to `last` (KiB) beyond the soak's allowance:
/// 10 % and 2 MiB.
pub(crate) fn grew(first: f64, last: f64) -> bool {
    last > first * RSS_GROWTH_RATIO && last - first > RSS_GROWTH_SLACK_KIB
}

/// Build the debug `lava-run` and `lava-worker` in one cargo run, whichever mode: their
/// dependencies are then built once with one set of features, and the second soak of
/// `cargo xtask test` (through the worker) builds nothing.
fn build_programs() -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--package",
            "lava-dispatch",
            "--bin",
            "lava-run",
        ])
        .args(["--package", "lava-worker-bin", "--bin", "lava-worker"])
        .current_dir(workspace_root())
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "building lava-run and lava-worker failed");
    Ok(())
}

/// Copy the program `built` into `bin` (the programs under test stay the same however long
/// the soak runs) and return the copy's path.
fn install(built: &Path, bin: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(bin).with_context(|| format!("creating {}", bin.display()))?;
    let copy = bin.join(built.file_name().context("a program's file name")?);
    std::fs::copy(built, &copy)
        .with_context(|| format!("copying {} to {}", built.display(), copy.display()))?;
    Ok(copy)
}

/// Orphaned descendants of the jobs are reparented to this process, where they are seen.
fn become_subreaper() -> Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    ensure!(
        rc == 0,
        "prctl(PR_SET_CHILD_SUBREAPER): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Run one job to its end; `None` (with the problem recorded) when it did not complete.
fn run_job(
    lava_run: &Path,
    device: &Path,
    job: &Path,
    id: &str,
    root: &Path,
    problems: &mut Problems,
) -> Result<Option<JobReport>> {
    let output = root.join("out");
    if output.exists() {
        std::fs::remove_dir_all(&output)?;
    }
    let stderr = root.join("stderr.log");
    let started = Instant::now();
    let child = Command::new(lava_run)
        .arg("--job-id")
        .arg(id)
        .arg("--output-dir")
        .arg(&output)
        .arg("--device")
        .arg(device)
        .arg(job)
        .env("TMPDIR", root.join("tmp"))
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr)?)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", lava_run.display()))?;
    let pid = child.id() as libc::pid_t;
    let (status, rusage) = loop {
        match wait4(pid, libc::WNOHANG)? {
            Some(done) => break done,
            None if started.elapsed() > JOB_LIMIT => {
                // SAFETY: kill(2) on the job's own process group.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                let done = wait4(pid, 0)?.expect("a blocking wait4 returns the child");
                problems.add(id, format!("did not finish within {JOB_LIMIT:?}; killed"));
                break done;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let wall = started.elapsed();
    let result = std::fs::read_to_string(output.join("result.yaml"));
    let complete = matches!(&result, Ok(text) if text.lines().any(|l| l.trim() == "result: pass"));
    let exited_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !complete || !exited_ok {
        let saved = root.join(format!("failed-{id}"));
        let _ = std::fs::rename(&output, &saved);
        let _ = std::fs::copy(&stderr, saved.join("stderr.log"));
        problems.add(
            id,
            format!(
                "not complete (wait status {status:#x}, result.yaml: {}); kept in {}",
                match &result {
                    Ok(text) => format!("{:?}", text.trim()),
                    Err(e) => format!("missing ({e})"),
                },
                saved.display()
            ),
        );
        return Ok(None);
    }
    Ok(Some(JobReport {
        wall,
        peak_rss_kib: rusage.ru_maxrss.max(0) as u64,
    }))
}

/// `wait4(pid, options)`: `None` while it runs (with `WNOHANG`).
fn wait4(pid: libc::pid_t, options: libc::c_int) -> Result<Option<(libc::c_int, libc::rusage)>> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to locals; pid is our own child.
    let rc = unsafe { libc::wait4(pid, &mut status, options, &mut rusage) };
    match rc {
        0 => Ok(None),
        rc if rc == pid => Ok(Some((status, rusage))),
        _ => bail!("wait4({pid}): {}", std::io::Error::last_os_error()),
    }
}

/// After a job: no child of ours alive but the worker (orphans of the job), nothing in the
/// job's TMPDIR, no entry naming the job id in the scratch and results roots.
fn check_leftovers(
    id: &str,
    tmp: &Path,
    worker: Option<u32>,
    problems: &mut Problems,
) -> Result<()> {
    let orphans = || -> Vec<(u32, String)> {
        lava_procfs::children(std::process::id())
            .into_iter()
            .filter(|child| Some(child.pid) != worker)
            .map(|child| {
                (
                    child.pid,
                    lava_procfs::cmdline(child.pid).unwrap_or_default(),
                )
            })
            .collect()
    };
    // Orphans may take a moment to be reparented after the dispatcher's exit.
    let mut left = orphans();
    for _ in 0..10 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        left = orphans();
    }
    for (pid, command) in &left {
        problems.add(id, format!("left process {pid} running: {command}"));
        // SAFETY: kill(2) on a process reparented to us (a leftover of the job).
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        let _ = wait4(*pid as libc::pid_t, 0);
    }
    let files: Vec<String> = list(tmp)?;
    if !files.is_empty() {
        problems.add(
            id,
            format!("left files in its TMPDIR {}: {files:?}", tmp.display()),
        );
        for name in &files {
            let path = tmp.join(name);
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
    for root in [SCRATCH_ROOT, LOCAL_RESULTS_ROOT] {
        for name in list(Path::new(root))? {
            if names_job(&name, id) {
                problems.add(id, format!("left {root}/{name}"));
                let path = Path::new(root).join(&name);
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
    }
    Ok(())
}

/// Whether a file name ends with the job id as a whole number (`lava-rs-123`, `123`).
fn names_job(name: &str, id: &str) -> bool {
    name.strip_suffix(id)
        .is_some_and(|head| !head.ends_with(|c: char| c.is_ascii_digit()))
}

/// Entry names of `dir` (none when it does not exist).
fn list(dir: &Path) -> Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut names: BTreeSet<String> = BTreeSet::new();
            for entry in entries {
                names.insert(entry?.file_name().to_string_lossy().into_owned());
            }
            Ok(names.into_iter().collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("listing {}", dir.display())),
    }
}

/// This process's open descriptors.
fn open_descriptors() -> Result<usize> {
    Ok(lava_procfs::open_descriptors(std::process::id())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_match_the_job_id_whole() {
        assert!(names_job("lava-rs-12345", "12345"));
        assert!(names_job("12345", "12345"));
        assert!(names_job("lava-12345", "12345"));
        assert!(!names_job("lava-112345", "12345"));
        assert!(!names_job("lava-12345-x", "12345"));
    }
}
