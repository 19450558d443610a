//! `cargo xtask bench job [N] [--timeout SECS] [--job ramdisk-overlays|smoke]`: an embedded
//! QEMU job on `fixtures/qemu/device.yaml` run N times (default 3) by our release `lava-run`
//! and by Debian's LAVA `lava-run`. The job is `fixtures/qemu/qemu-ramdisk-overlays.yaml` by
//! default (the overlay appended to the ramdisk, `overlays: lava: true`: no overlay disk, so
//! no libguestfs for LAVA), or `target/test-system/qemu-smoke.yaml` with `--job smoke` (the
//! overlay on LAVA's overlay disk). Runs are interleaved with a bare QEMU boot
//! of the same kernel and initramfs to the same prompt (`cargo xtask test-system --boot-check`'s
//! code, no dispatcher).
//!
//! For each: wall time (min/median/max), the overhead beyond the bare boot (a run's wall time
//! minus the bare boot to the prompt of the same round) and the peak RSS of the dispatcher
//! process itself: `VmHWM` of `/proc/<pid>/status`, polled until it exits (for LAVA, the Python
//! `lava-run` process; QEMU and libguestfs' appliance are children and are not counted, which
//! `wait4`'s rusage would not guarantee). Then the ratios ours/LAVA against the targets
//! (≤ 1/10 each), and where each dispatcher's time went, from the timestamps of its log.
//!
//! `--board`: the same for the U-Boot board rig (`cargo xtask test-board u-boot`): its ramdisk
//! job against the rig's own scripted boot to the shell, and against the job's cycle
//! ([`crate::board::job_cycle`]: the job's files, U-Boot commands, kernel command line and
//! test definition, done by a script), whose difference with a run is purely dispatcher
//! time; the rig started for the bench (docs/board-u-boot.md, "What `bench job --board`
//! compares").
//!
//! Every run must end with the job passing. For the smoke job LAVA gets libguestfs'
//! environment from [`test_system::guestfs_env`]; its appliance is built once (one untimed
//! LAVA run) if not cached yet. Each dispatcher runs in its own process group; past the time limit the group is
//! stopped (SIGTERM, then SIGKILL) and any process still naming the job's scratch directory is
//! killed. Outputs of the last round stay in `target/job-bench/`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};

use crate::shared::{build_release_bin, workspace_root};
use crate::test_system;
use lava_test_support::process::OwnedDispatcher;

/// LAVA's dispatcher, as Debian's `lava-dispatcher` installs it.
const LAVA_RUN: &str = "/usr/bin/lava-run";
/// Where LAVA's `lava-run` keeps each job's files (`<dir>/<job id>`).
const LAVA_WORK_DIR: &str = "/var/lib/lava/dispatcher/tmp";
/// How often the dispatcher's `VmHWM` is read.
const RSS_POLL: Duration = Duration::from_millis(10);
/// The targets: our overhead and our RSS at most this fraction of LAVA's.
const TARGET_RATIO: f64 = 0.10;

/// One measured dispatcher run.
#[derive(Debug, Clone)]
pub struct JobRun {
    pub wall: Duration,
    /// `VmHWM` of the dispatcher process, in KiB.
    pub peak_rss_kib: u64,
    /// The log records (`dt`, `msg`) of `start:`/`end:` lines, for the time breakdown.
    pub phases: Vec<Phase>,
    /// Seconds from the spawn to the first log record, and from the last one to the exit.
    pub startup: f64,
    pub teardown: f64,
}

/// One action of a job as its log shows it; times in seconds since the epoch (UTC).
#[derive(Debug, Clone)]
pub struct Phase {
    pub level: String,
    pub name: String,
    pub start: f64,
    pub end: f64,
}

impl Phase {
    pub fn seconds(&self) -> f64 {
        self.end - self.start
    }
}

impl JobRun {
    /// The device's boot inside the job, from the start of action `from` (QEMU's spawn, the
    /// board's power-on) to the end of action `to` (the prompt matched): what the bare boot
    /// measures, under the load of the moment. The rest of the wall time is the dispatcher's
    /// own.
    pub fn boot_in_job(&self, (from, to): BootPhases) -> Option<f64> {
        let find = |name: &str| self.phases.iter().find(|p| p.name == name);
        Some(find(to)?.end - find(from)?.start)
    }
}

/// The actions a job's boot spans: (first started, last ended).
pub type BootPhases = (&'static str, &'static str);
/// The embedded QEMU device: `execute-qemu` starts QEMU, `login-action` matches the prompt.
const QEMU_BOOT: BootPhases = ("execute-qemu", "login-action");
/// The U-Boot board: `reset-device` powers it on, `auto-login-action` matches the prompt.
const BOARD_BOOT: BootPhases = ("reset-device", "auto-login-action");

/// What the dispatchers run: the device file, the job, a dispatcher configuration, and the
/// environment LAVA's `lava-run` needs besides (libguestfs' for the smoke job).
struct Target {
    device: PathBuf,
    job: PathBuf,
    dispatcher_config: Option<PathBuf>,
    lava_env: Vec<(String, String)>,
    boot: BootPhases,
    /// What the bare boot is called in the report.
    bare_label: &'static str,
}

/// A bare boot's wall times (seconds): to the prompt, and to the end of the check; and,
/// where the device can do it without a dispatcher, the job's own device work (its cycle:
/// the job's bootloader commands, its test definition run by hand, the power-off).
struct Bare {
    prompt: f64,
    total: f64,
    job_cycle: Option<f64>,
}

/// Which dispatcher a run used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dispatcher {
    LavaRs,
    Lava,
}

pub fn bench(args: &[String]) -> Result<()> {
    let mut rounds: usize = 3;
    let mut limit = Duration::from_secs(12 * 60);
    let mut smoke = false;
    let mut on_board = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--timeout" => {
                limit = Duration::from_secs(it.next().context("--timeout SECS")?.parse()?);
            }
            "--job" => match it.next().map(String::as_str) {
                Some("smoke") => smoke = true,
                Some("ramdisk-overlays") => smoke = false,
                other => bail!("--job {other:?}: expected ramdisk-overlays or smoke"),
            },
            "--board" => on_board = true,
            n if n.parse::<usize>().is_ok() => rounds = n.parse()?,
            other => bail!(
                "unknown argument {other:?} (expected N, --timeout SECS, --job NAME, --board)"
            ),
        }
    }
    ensure!(rounds > 0, "N must be at least 1");
    if on_board {
        return bench_board(rounds, limit);
    }
    ensure!(
        test_system::qemu_available(),
        "qemu-system-x86_64 is not on PATH: see DESIGN.md, 'The embedded default device'"
    );
    ensure!(
        Path::new(LAVA_RUN).is_file(),
        "{LAVA_RUN} is missing: install Debian's lava-dispatcher (scripts/install-test-deps.sh)"
    );
    ensure!(
        !smoke || test_system::supermin_available(),
        "supermin is missing: LAVA's libguestfs cannot build its appliance"
    );
    let ours = build_release_bin("lava-dispatch", "lava-run")?;
    let ts = test_system::build(&test_system::cache_dir(), false)?;
    let out = workspace_root().join("target/job-bench");
    std::fs::create_dir_all(&out)?;
    let (job, guestfs) = if smoke {
        let guestfs = test_system::guestfs_env(&test_system::cache_dir(), &ts, false)?;
        (ts.job.clone(), Some(guestfs))
    } else {
        (ramdisk_overlays_job(&ts, &out)?, None)
    };
    println!("job bench: {}", job.display());

    let target = Target {
        device: test_system::device_yaml(),
        job,
        dispatcher_config: None,
        lava_env: guestfs.as_ref().map(|g| g.vars.clone()).unwrap_or_default(),
        boot: QEMU_BOOT,
        bare_label: "bare QEMU boot to prompt",
    };
    if guestfs.as_ref().is_some_and(|g| !g.appliance_cached()) {
        eprintln!("job bench: building libguestfs' appliance once (an untimed LAVA run)");
        run_dispatcher(Dispatcher::Lava, &ours, &target, &out, limit)?;
    }
    rounds_and_report(rounds, &ours, &target, &out, limit, &mut || {
        let report = test_system::boot_check(&ts, limit, false)?;
        Ok(Bare {
            prompt: report.prompt.as_secs_f64(),
            total: report.total.as_secs_f64(),
            job_cycle: None,
        })
    })
}

/// Writes the bench's default job (`fixtures/qemu/qemu-ramdisk-overlays.yaml` on the test
/// system `ts`) into `out`; returns its path.
pub fn ramdisk_overlays_job(ts: &test_system::TestSystem, out: &Path) -> Result<PathBuf> {
    let fixture = workspace_root().join("fixtures/qemu/qemu-ramdisk-overlays.yaml");
    let text = std::fs::read_to_string(&fixture)
        .with_context(|| format!("reading {}", fixture.display()))?;
    let dir = ts
        .initramfs
        .parent()
        .context("the test system's directory")?;
    let job = out.join("qemu-ramdisk-overlays.yaml");
    std::fs::write(
        &job,
        text.replace("@TEST_SYSTEM_DIR@", &dir.display().to_string()),
    )?;
    Ok(job)
}

/// `bench job --board`: the U-Boot board rig's ramdisk job (`fixtures/board/uboot-ramdisk.yaml`
/// on the rig's device file), against two references without a dispatcher: the rig's own
/// scripted boot to the shell (`test-board u-boot --boot-check`'s code) and the job's cycle
/// (`board::job_cycle`: the job's files, U-Boot commands and test definition). The rig is
/// started for the bench and stopped after.
fn bench_board(rounds: usize, limit: Duration) -> Result<()> {
    ensure!(
        Path::new(LAVA_RUN).is_file(),
        "{LAVA_RUN} is missing: install Debian's lava-dispatcher (scripts/install-test-deps.sh)"
    );
    let ours = build_release_bin("lava-dispatch", "lava-run")?;
    let out = workspace_root().join("target/job-bench");
    std::fs::create_dir_all(&out)?;
    let rig = crate::board::prepared()?;
    let job = out.join("board-job.yaml");
    let job_text = rig.job("uboot-ramdisk")?;
    std::fs::write(&job, &job_text)?;
    let cycle = crate::board::job_cycle::JobCycle::prepare(&rig.rig, &rig.artefacts, &job_text)?;
    println!(
        "job bench: the job's cycle types {} U-Boot commands ({})",
        cycle.commands().len(),
        cycle.commands().join("; ")
    );
    let target = Target {
        device: rig.rig.device(),
        job,
        dispatcher_config: Some(rig.rig.dispatcher()),
        lava_env: Vec::new(),
        boot: BOARD_BOOT,
        bare_label: "bare board boot to shell",
    };
    let _up = rig.up()?;
    rounds_and_report(rounds, &ours, &target, &out, limit, &mut || {
        let report = crate::board::boot_check::run(&rig.rig, &rig.artefacts, limit)?;
        let job = cycle.run(limit, &out.join("job-cycle-console.txt"))?;
        eprintln!(
            "  job cycle: U-Boot prompt {:.2}s, kernel {:.2}s, shell {:.2}s, tests done {:.2}s, \
             powered off {:.2}s",
            job.bootloader.as_secs_f64(),
            job.kernel.as_secs_f64(),
            job.shell.as_secs_f64(),
            job.tests.as_secs_f64(),
            job.total.as_secs_f64()
        );
        Ok(Bare {
            prompt: report.shell.as_secs_f64(),
            total: report.total.as_secs_f64(),
            job_cycle: Some(job.total.as_secs_f64()),
        })
    })
}

/// N rounds of (bare boot, lava-rs, LAVA), the order rotating; then the report.
fn rounds_and_report(
    rounds: usize,
    ours: &Path,
    target: &Target,
    out: &Path,
    limit: Duration,
    bare_boot: &mut dyn FnMut() -> Result<Bare>,
) -> Result<()> {
    println!(
        "job bench: {rounds} round(s) of (bare boot, lava-rs, LAVA), order rotating; load {}",
        load_average()
    );
    let mut bare: Vec<Bare> = Vec::new();
    let mut runs_ours: Vec<JobRun> = Vec::new();
    let mut runs_lava: Vec<JobRun> = Vec::new();
    let mut overhead_ours = Vec::new();
    let mut overhead_lava = Vec::new();
    let mut cycle_overhead_ours = Vec::new();
    let mut cycle_overhead_lava = Vec::new();
    let mut job_overhead_ours = Vec::new();
    let mut job_overhead_lava = Vec::new();
    for round in 0..rounds {
        let mut order = [None, Some(Dispatcher::LavaRs), Some(Dispatcher::Lava)];
        order.rotate_left(round % 3);
        let mut this_round = (None, None, None);
        for step in order {
            match step {
                None => {
                    let report = bare_boot()?;
                    eprintln!(
                        "  round {}: bare boot: prompt {:.2}s",
                        round + 1,
                        report.prompt
                    );
                    this_round.0 = Some(report);
                }
                Some(which) => {
                    let run = run_dispatcher(which, ours, target, out, limit)?;
                    eprintln!(
                        "  round {}: {}: {:.2}s, peak RSS {:.1} MiB",
                        round + 1,
                        label(which),
                        run.wall.as_secs_f64(),
                        mib(run.peak_rss_kib)
                    );
                    if which == Dispatcher::LavaRs {
                        this_round.1 = Some(run);
                    } else {
                        this_round.2 = Some(run);
                    }
                }
            }
        }
        let (Some(b), Some(o), Some(l)) = this_round else {
            unreachable!("every round runs all three");
        };
        overhead_ours.push(o.wall.as_secs_f64() - b.prompt);
        overhead_lava.push(l.wall.as_secs_f64() - b.prompt);
        cycle_overhead_ours.push(o.wall.as_secs_f64() - b.total);
        cycle_overhead_lava.push(l.wall.as_secs_f64() - b.total);
        if let Some(job_cycle) = b.job_cycle {
            job_overhead_ours.push(o.wall.as_secs_f64() - job_cycle);
            job_overhead_lava.push(l.wall.as_secs_f64() - job_cycle);
        }
        bare.push(b);
        runs_ours.push(o);
        runs_lava.push(l);
    }

    let bare_prompt: Vec<f64> = bare.iter().map(|b| b.prompt).collect();
    let bare_total: Vec<f64> = bare.iter().map(|b| b.total).collect();
    let bare_job: Vec<f64> = bare.iter().filter_map(|b| b.job_cycle).collect();
    let wall = |runs: &[JobRun]| {
        runs.iter()
            .map(|r| r.wall.as_secs_f64())
            .collect::<Vec<_>>()
    };
    let own_time = |runs: &[JobRun]| {
        runs.iter()
            .filter_map(|r| Some(r.wall.as_secs_f64() - r.boot_in_job(target.boot)?))
            .collect::<Vec<_>>()
    };
    let rss = |runs: &[JobRun]| runs.iter().map(|r| mib(r.peak_rss_kib)).collect::<Vec<_>>();
    let with_job = !bare_job.is_empty();
    let row = |name: &str, columns: [&str; 6]| {
        let [wall, overhead, cycle, job, own, rss] = columns;
        let job = if with_job {
            format!("{job:>20}")
        } else {
            String::new()
        };
        println!("{name:<28}{wall:>20}{overhead:>20}{cycle:>20}{job}{own:>20}{rss:>12}");
    };
    println!();
    row(
        "seconds: min/median/max",
        [
            "wall",
            "overhead",
            "beyond the cycle",
            "beyond the job's",
            "outside the boot",
            "RSS MiB",
        ],
    );
    row(
        target.bare_label,
        [&triple(&bare_prompt), "", "", "", "", ""],
    );
    row(
        "  (and to power-off)",
        [&triple(&bare_total), "", "", "", "", ""],
    );
    if with_job {
        row(
            "the job's cycle, no dispatcher",
            [&triple(&bare_job), "", "", "", "", ""],
        );
    }
    for (which, runs, overhead, cycle, job) in [
        (
            Dispatcher::LavaRs,
            &runs_ours,
            &overhead_ours,
            &cycle_overhead_ours,
            &job_overhead_ours,
        ),
        (
            Dispatcher::Lava,
            &runs_lava,
            &overhead_lava,
            &cycle_overhead_lava,
            &job_overhead_lava,
        ),
    ] {
        row(
            label(which),
            [
                &triple(&wall(runs)),
                &triple(overhead),
                &triple(cycle),
                &triple(job),
                &triple(&own_time(runs)),
                &format!("{:.1}", median(&rss(runs))),
            ],
        );
    }
    println!(
        "overhead: wall minus the bare boot to the prompt of the same round; beyond the cycle: \
         wall minus the bare cycle of the same round (power-on, boot, one command at the \
         shell, power-off: the device's own time, which both dispatchers spend too); outside \
         the boot: wall minus the job's own boot ({} start to {} end); RSS: the dispatcher \
         process's VmHWM, median",
        target.boot.0, target.boot.1
    );
    if with_job {
        println!(
            "beyond the job's cycle: wall minus the job's cycle of the same round, the device's \
             work for this very job done without a dispatcher (the job's ramdisk with its test \
             overlay, the device's hard reset, the job's U-Boot commands typed after each \
             prompt with the device's boot character delay, the job's kernel command line, \
             the test definition's runner at the shell, the power-off): purely dispatcher time"
        );
    }
    let overhead_ratio = median(&overhead_ours) / median(&overhead_lava);
    let cycle_ratio = median(&cycle_overhead_ours) / median(&cycle_overhead_lava);
    let job_ratio = median(&job_overhead_ours) / median(&job_overhead_lava);
    let own_ratio = median(&own_time(&runs_ours)) / median(&own_time(&runs_lava));
    let rss_ratio = median(&rss(&runs_ours)) / median(&rss(&runs_lava));
    println!();
    let ratios = [
        ("overhead", Some(overhead_ratio)),
        ("overhead beyond the cycle", Some(cycle_ratio)),
        (
            "overhead beyond the job's cycle",
            with_job.then_some(job_ratio),
        ),
        ("time outside the boot", Some(own_ratio)),
        ("peak RSS", Some(rss_ratio)),
    ];
    for (what, ratio) in ratios {
        let Some(ratio) = ratio else {
            continue;
        };
        // A negative ratio means a baseline longer than a run (the bare cycle's power-off
        // waits for a guest shutdown a dispatcher does not wait for): no comparison.
        if ratio <= 0.0 || !ratio.is_finite() {
            println!(
                "{what} lava-rs/LAVA: {ratio:.3}: not comparable (a baseline longer than a run)"
            );
            continue;
        }
        println!(
            "{what} lava-rs/LAVA: {ratio:.3} (1/{:.1}; target <= {TARGET_RATIO}) {}",
            1.0 / ratio,
            if ratio <= TARGET_RATIO {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    println!();
    for (which, runs) in [
        (Dispatcher::LavaRs, &runs_ours),
        (Dispatcher::Lava, &runs_lava),
    ] {
        print_breakdown(which, runs.last().expect("at least one round"));
    }
    println!("load after: {}", load_average());
    Ok(())
}

/// Run the job once with one dispatcher, measuring wall time and the dispatcher's `VmHWM`;
/// fail unless the job passed.
fn run_dispatcher(
    which: Dispatcher,
    ours: &Path,
    target: &Target,
    out: &Path,
    limit: Duration,
) -> Result<JobRun> {
    let dir = out.join(match which {
        Dispatcher::LavaRs => "lava-rs",
        Dispatcher::Lava => "lava",
    });
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    // The job id names the dispatcher's scratch directory, which marks the run's processes:
    // unique per bench process, so that concurrent runs elsewhere are never touched.
    let job_id = std::process::id() * 10 + if which == Dispatcher::Lava { 2 } else { 1 };
    let (program, marker) = match which {
        Dispatcher::LavaRs => (ours.to_path_buf(), format!("lava-rs-{job_id}/")),
        Dispatcher::Lava => (
            PathBuf::from(LAVA_RUN),
            format!("{LAVA_WORK_DIR}/{job_id}/"),
        ),
    };
    let output = dir.join("output");
    let stderr = dir.join("stderr.log");
    let mut command = Command::new(&program);
    command
        .arg("--job-id")
        .arg(job_id.to_string())
        .arg("--output-dir")
        .arg(&output)
        .arg("--device")
        .arg(&target.device);
    if let Some(config) = &target.dispatcher_config {
        command.arg("--dispatcher").arg(config);
    }
    command
        .arg(&target.job)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr)?);
    if which == Dispatcher::Lava {
        command.envs(target.lava_env.iter().map(|(k, v)| (k, v)));
    }
    let spawned_at = SystemTime::now();
    let started = Instant::now();
    let mut guard = OwnedDispatcher::spawn(&mut command, marker)
        .with_context(|| format!("starting {}", program.display()))?;
    let mut peak_rss_kib = 0;
    let status: ExitStatus = loop {
        if let Some(status) = guard.try_wait()? {
            break status;
        }
        if let Ok(memory) = lava_procfs::memory(guard.id()) {
            peak_rss_kib = peak_rss_kib.max(memory.peak_kib);
        }
        if started.elapsed() > limit {
            guard.stop();
            bail!(
                "{} did not finish within {limit:?}; stopped (logs in {})",
                label(which),
                dir.display()
            );
        }
        std::thread::sleep(RSS_POLL);
    };
    let wall = started.elapsed();
    let exited_at = SystemTime::now();
    let result = std::fs::read_to_string(output.join("result.yaml")).unwrap_or_default();
    ensure!(
        status.success() && result.lines().any(|l| l.trim() == "result: pass"),
        "{} failed ({status}); result.yaml: {result:?}; logs in {}",
        label(which),
        dir.display()
    );
    let log = match which {
        Dispatcher::LavaRs => std::fs::read_to_string(output.join("logs.yaml"))?,
        Dispatcher::Lava => std::fs::read_to_string(&stderr)?,
    };
    let (phases, first, last) = phases(&log);
    let epoch = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    };
    Ok(JobRun {
        wall,
        peak_rss_kib,
        phases,
        startup: first.map_or(0.0, |t| t - epoch(spawned_at)),
        teardown: last.map_or(0.0, |t| epoch(exited_at) - t),
    })
}

/// Where the time of one run went: start-up, each action of levels 1 and 1.x (LAVA's names),
/// and the exit after the last log record.
fn print_breakdown(which: Dispatcher, run: &JobRun) {
    println!(
        "{} (last round, {:.2}s wall): start-up to the first log record {:.2}s",
        label(which),
        run.wall.as_secs_f64(),
        run.startup
    );
    for phase in &run.phases {
        let depth = phase.level.matches('.').count();
        if depth <= 1 && (depth == 0 || phase.seconds() >= 0.05) {
            println!(
                "  {:indent$}{:<8} {:<28} {:>7.2}s",
                "",
                phase.level,
                phase.name,
                phase.seconds(),
                indent = depth * 2
            );
        }
    }
    println!("  last log record to exit {:.2}s", run.teardown);
}

/// The `start:`/`end:` pairs of a log (ours: `- {...}` lines; LAVA's stderr: `{...}` lines),
/// with the times of its first and last records (seconds since the epoch, UTC).
fn phases(log: &str) -> (Vec<Phase>, Option<f64>, Option<f64>) {
    let mut open: Vec<(String, String, f64)> = Vec::new();
    let mut done = Vec::new();
    let (mut first, mut last) = (None, None);
    for line in log.lines() {
        let Some(dt) = field(line, "\"dt\": \"").and_then(parse_utc) else {
            continue;
        };
        first.get_or_insert(dt);
        last = Some(dt);
        let Some(msg) = field(line, "\"msg\": \"") else {
            continue;
        };
        let mut words = msg.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("start:"), Some(level), Some(name)) => {
                open.push((level.to_string(), name.to_string(), dt));
            }
            (Some("end:"), Some(level), Some(_)) => {
                if let Some(i) = open.iter().rposition(|(l, _, _)| l == level) {
                    let (level, name, start) = open.remove(i);
                    done.push(Phase {
                        level,
                        name,
                        start,
                        end: dt,
                    });
                }
            }
            _ => {}
        }
    }
    done.sort_by(|a, b| a.start.total_cmp(&b.start));
    (done, first, last)
}

/// The double-quoted string value after `prefix` in a log line (no unescaping needed for the
/// keys read here).
fn field<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    Some(&rest[..rest.find('"')?])
}

// A log record's time as seconds since the epoch (ours with `+00:00`, LAVA's without).
use lava_dispatcher::outcome::parse_log_time as parse_utc;

fn label(which: Dispatcher) -> &'static str {
    match which {
        Dispatcher::LavaRs => "lava-rs lava-run (release)",
        Dispatcher::Lava => "LAVA lava-run (2023.01)",
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn triple(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.2}/{:.2}/{max:.2}", median(values))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_times_of_both_dispatchers_parse_as_utc() {
        let ours = parse_utc("2026-11-23T16:24:06.476891+00:00").unwrap();
        let lava = parse_utc("2026-11-23T16:24:06.476891").unwrap();
        assert_eq!(ours, lava);
        assert_eq!(parse_utc("1970-01-02T00:00:01"), Some(86_401.0));
        assert!(parse_utc("yesterday").is_none());
    }

    #[test]
    fn phases_pair_starts_and_ends_in_start_order() {
        let log = concat!(
            "- {\"dt\": \"2026-01-01T00:00:00.000000+00:00\", \"lvl\": \"info\", ",
            "\"msg\": \"start: 1 deployimages (timeout 00:02:00) [common]\"}\n",
            "{\"dt\": \"2026-01-01T00:00:00.500000\", \"lvl\": \"debug\", ",
            "\"msg\": \"start: 1.1 lava-overlay (timeout 00:02:00) [common]\"}\n",
            "{\"dt\": \"2026-01-01T00:00:01.000000\", \"lvl\": \"debug\", ",
            "\"msg\": \"end: 1.1 lava-overlay (duration 00:00:01) [common]\"}\n",
            "{\"dt\": \"2026-01-01T00:00:03.000000\", \"lvl\": \"info\", ",
            "\"msg\": \"end: 1 deployimages (duration 00:00:03) [common]\"}\n",
            "{\"dt\": \"2026-01-01T00:00:04.000000\", \"lvl\": \"results\", \"msg\": {}}\n",
        );
        let (phases, first, last) = phases(log);
        let got: Vec<(&str, &str, f64)> = phases
            .iter()
            .map(|p| (p.level.as_str(), p.name.as_str(), p.seconds()))
            .collect();
        assert_eq!(
            got,
            [("1", "deployimages", 3.0), ("1.1", "lava-overlay", 0.5)]
        );
        assert_eq!(last.unwrap() - first.unwrap(), 4.0);
    }

    #[test]
    fn a_stopped_dispatcher_takes_its_group_and_stragglers_along() {
        let alive = |marker: &str| !lava_test_support::process::processes_with(marker).is_empty();
        // One sleeper in the group, one in a session of its own (as QEMU on a pty).
        let mut owned = OwnedDispatcher::spawn(
            Command::new("sh").args(["-c", "setsid sleep 4713.25 & sleep 4713.5 & wait"]),
            "4713.25".into(),
        )
        .unwrap();
        let started = Instant::now();
        while !(alive("sleep 4713.25") && alive("sleep 4713.5")) {
            assert!(started.elapsed() < Duration::from_secs(10), "never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        owned.stop();
        assert!(
            matches!(owned.try_wait(), Ok(Some(_))),
            "stopped and reaped"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive("sleep 4713") {
            assert!(Instant::now() < deadline, "a process survived the stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn medians_and_triples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(triple(&[3.0, 1.0, 2.0]), "1.00/2.00/3.00");
    }
}
