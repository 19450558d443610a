//! `cargo xtask fuzz [TARGET] [--seconds N]`: a coverage-less mutation fuzzer that runs on
//! the stable toolchain, in CI, with no build of its own.
//!
//! Why not libFuzzer or AFL: both need an instrumented build of every target crate (a
//! second copy of the dependency tree in `target/`, minutes of build on CI's two cores) and
//! cargo-fuzz/cargo-afl are not installed. The targets here are parsers of small inputs that
//! run thousands of times a second, so a mutation loop with a LAVA-shaped dictionary and
//! *behavioural* feedback (an input that ends in an outcome not seen before — a new error
//! message shape, a new kind of success — joins the pool) reaches the interesting states
//! of these formats without coverage counters. See `docs/hardening.md`.
//!
//! Shape: the parent (`cargo xtask fuzz`) runs one worker process per target (this binary
//! again, with `--worker`). The worker writes each input to `target/fuzz/TARGET/current`
//! before running it, counts live heap bytes in a global allocator (an input that makes the
//! target hold more than `--rss-limit-mb` aborts it), and has a watchdog thread that aborts
//! it when one input runs longer than `--timeout`. A panic, an abort, an out-of-memory or a
//! timeout makes the parent copy the current input to `target/fuzz/TARGET/crash-HASH`, print
//! that reproducer's path and fail. `--input FILE` runs one file through a target (to
//! reproduce, or to check a fix).

mod alloc;
mod mutate;
mod targets;

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::shared::{target_dir, workspace_root};
use targets::Target;

/// `cargo xtask fuzz` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// One target (`yaml`, `job`, `definition`, `device`, `frame`, `log`, `cpio`, `tar`,
    /// `unpack`); all of them when omitted.
    target: Option<String>,
    /// How long to fuzz each target.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Live heap bytes a target may hold, in MiB: beyond it the input is an out-of-memory.
    #[arg(long = "rss-limit-mb", default_value_t = 512)]
    rss_limit_mb: u64,
    /// The longest one input may run, in seconds: beyond it the input is a timeout.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Run this one file through the target (a reproducer) instead of fuzzing.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Random seed (default: from the clock); printed so a run can be repeated.
    #[arg(long)]
    seed: Option<u64>,
    /// List the targets and exit.
    #[arg(long)]
    list: bool,
    /// Internal: be the worker process of one target.
    #[arg(long, hide = true)]
    worker: bool,
}

/// Entry point of `cargo xtask fuzz`.
pub fn run(args: Args) -> Result<()> {
    if args.list {
        for target in targets::ALL {
            println!("{:<11} {}", target.name, target.about);
        }
        return Ok(());
    }
    let chosen: Vec<&'static Target> = match &args.target {
        Some(name) => vec![targets::find(name).with_context(|| {
            let names: Vec<&str> = targets::ALL.iter().map(|t| t.name).collect();
            format!(
                "unknown fuzz target {name:?}: expected one of {}",
                names.join(", ")
            )
        })?],
        None => targets::ALL.iter().collect(),
    };
    if args.worker {
        let [target] = chosen.as_slice() else {
            bail!("--worker needs one target");
        };
        return worker(target, &args);
    }
    if let Some(input) = &args.input {
        let [target] = chosen.as_slice() else {
            bail!("--input needs one target");
        };
        let data = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
        alloc::set_limit(args.rss_limit_mb << 20);
        let mut state = (target.setup)()?;
        let outcome = (target.run)(&mut state, &data);
        println!("{}: {} -> {outcome}", target.name, input.display());
        return Ok(());
    }
    let seed = args.seed.unwrap_or_else(clock_seed);
    println!(
        "fuzz: seed {seed}, {} s per target, heap limit {} MiB, timeout {} s",
        args.seconds, args.rss_limit_mb, args.timeout
    );
    let mut failures = Vec::new();
    for target in chosen {
        if let Some(failure) = supervise(target, &args, seed)? {
            failures.push(failure);
        }
    }
    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("fuzz FAILED: {failure}");
        }
        bail!("{} fuzz target(s) failed", failures.len());
    }
    Ok(())
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// Where a target's working files go: `target/fuzz/TARGET/`.
fn work_dir(target: &Target) -> PathBuf {
    target_dir().join("fuzz").join(target.name)
}

/// The input being run, written before each run so the parent finds it after a crash.
fn current_path(target: &Target) -> PathBuf {
    work_dir(target).join("current")
}

/// Run one target's worker for `args.seconds`; `Some(description)` when it failed.
fn supervise(target: &Target, args: &Args, seed: u64) -> Result<Option<String>> {
    let dir = work_dir(target);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let current = current_path(target);
    let _ = std::fs::remove_file(&current);
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let mut child = Command::new(exe)
        .args(["fuzz", target.name, "--worker"])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--rss-limit-mb", &args.rss_limit_mb.to_string()])
        .args(["--timeout", &args.timeout.to_string()])
        .args(["--seed", &seed.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the fuzz worker")?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || read_all(stdout));
    let err_reader = std::thread::spawn(move || read_all(stderr));
    // The worker ends itself after `seconds`; its own watchdog ends a hung input after
    // `timeout`. This deadline only catches a worker whose watchdog could not act.
    let deadline = Instant::now() + Duration::from_secs(args.seconds + args.timeout + 30);
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the fuzz worker")? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            killed = true;
            break child.wait().context("reaping the fuzz worker")?;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    print!("{out}");
    if status.success() && !killed {
        return Ok(None);
    }
    let kind = if killed || err.contains(WATCHDOG_MESSAGE) {
        "timeout"
    } else if err.contains(alloc::OOM_MESSAGE) {
        "out-of-memory"
    } else if err.contains("panicked at") {
        "panic"
    } else {
        "crash"
    };
    let tail: Vec<&str> = err.lines().rev().take(30).collect();
    eprintln!("--- fuzz {} worker stderr (last lines) ---", target.name);
    for line in tail.iter().rev() {
        eprintln!("{line}");
    }
    let reproducer = match std::fs::read(&current) {
        Ok(data) => {
            let path = dir.join(format!("crash-{:016x}", fnv1a(&data)));
            std::fs::write(&path, &data).with_context(|| format!("writing {}", path.display()))?;
            format!(
                "{}; reproduce with: cargo xtask fuzz {} --input {}",
                path.display(),
                target.name,
                path.display()
            )
        }
        Err(_) => "no input recorded (the worker failed before its first input)".to_string(),
    };
    Ok(Some(format!(
        "{}: {kind} ({status}); reproducer: {reproducer}",
        target.name
    )))
}

fn read_all(mut reader: impl Read) -> String {
    let mut bytes = Vec::new();
    let _ = reader.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// 64-bit FNV-1a, naming reproducers by content.
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const WATCHDOG_MESSAGE: &str = "fuzz worker: one input ran longer than the timeout";

/// When the input being run started, in milliseconds since the worker started (0: idle).
static RUNNING_SINCE_MS: AtomicU64 = AtomicU64::new(0);

/// The worker: load the seeds, then mutate and run until the time is up.
fn worker(target: &'static Target, args: &Args) -> Result<()> {
    let started = Instant::now();
    let timeout_ms = args.timeout * 1000;
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let since = RUNNING_SINCE_MS.load(Ordering::Relaxed);
            let now = started.elapsed().as_millis() as u64;
            if since != 0 && now.saturating_sub(since) > timeout_ms {
                eprintln!("{WATCHDOG_MESSAGE} ({} s)", timeout_ms / 1000);
                std::process::abort();
            }
        }
    });
    let seeds = load_seeds(target)?;
    if seeds.is_empty() {
        bail!("fuzz target {}: no seed inputs", target.name);
    }
    let max_len = seeds.iter().map(Vec::len).max().unwrap_or(0).max(1024) * 4;
    let mut state = (target.setup)()?;
    alloc::set_limit(args.rss_limit_mb << 20);
    let current = File::create(current_path(target))
        .with_context(|| format!("creating {}", current_path(target).display()))?;
    let mut run_one = |data: &[u8]| -> String {
        let _ = current.set_len(0);
        let _ = current.write_all_at(data, 0);
        RUNNING_SINCE_MS.store(
            started.elapsed().as_millis().max(1) as u64,
            Ordering::Relaxed,
        );
        let outcome = (target.run)(&mut state, data);
        RUNNING_SINCE_MS.store(0, Ordering::Relaxed);
        outcome
    };
    let mut seen = HashSet::new();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    for seed in &seeds {
        if seen.insert(run_one(seed)) {
            pool.push(seed.clone());
        }
    }
    let mut rng = fastrand::Rng::with_seed(args.seed.unwrap_or(1) ^ fnv1a(target.name.as_bytes()));
    let stop = started + Duration::from_secs(args.seconds);
    let mut runs: u64 = seeds.len() as u64;
    while Instant::now() < stop {
        for _ in 0..64 {
            let parent = &pool[rng.usize(..pool.len())];
            let other = &pool[rng.usize(..pool.len())];
            let input = mutate::mutate(&mut rng, parent, other, target.dictionary, max_len);
            runs += 1;
            let outcome = run_one(&input);
            if seen.len() < MAX_OUTCOMES && seen.insert(outcome) && pool.len() < MAX_POOL {
                pool.push(input);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fuzz {:<10} {runs:>9} inputs in {elapsed:.1} s ({:.0}/s), {} seeds, {} distinct outcomes, pool {}, peak heap {:.1} MiB",
        target.name,
        runs as f64 / elapsed,
        seeds.len(),
        seen.len(),
        pool.len(),
        alloc::peak() as f64 / f64::from(1u32 << 20),
    );
    Ok(())
}

/// Distinct outcomes remembered (each one's input joins the pool).
const MAX_OUTCOMES: usize = 20_000;
/// Inputs kept for mutation.
const MAX_POOL: usize = 4_000;

/// The target's seeds: every file of `fuzz/corpus/TARGET/` and of its fixture directories.
fn load_seeds(target: &Target) -> Result<Vec<Vec<u8>>> {
    let root = workspace_root();
    let corpus = root.join("fuzz/corpus").join(target.name);
    let mut dirs = vec![(corpus, "")];
    dirs.extend(
        target
            .fixtures
            .iter()
            .map(|d| (root.join(d), target.fixture_suffix)),
    );
    let mut seeds = Vec::new();
    for (dir, suffix) in &dirs {
        collect_files(dir, suffix, &mut seeds)
            .with_context(|| format!("reading seeds from {}", dir.display()))?;
    }
    Ok(seeds)
}

fn collect_files(dir: &Path, suffix: &str, out: &mut Vec<Vec<u8>>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_files(&path, suffix, out)?;
        } else if path.to_string_lossy().ends_with(suffix) {
            out.push(std::fs::read(&path)?);
        }
    }
    Ok(())
}
