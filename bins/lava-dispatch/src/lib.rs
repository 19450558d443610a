//! The `lava-dispatch` / `lava-run` command line: parses arguments and calls the libraries.
//!
//! Besides LAVA's flags, `lava-run` serves a test writer running a job locally: `--job-id`
//! and `--output-dir` have defaults ([`local`]), a result table ends every job on a terminal,
//! `--results` writes JUnit XML or JSON for CI ([`report`]), `--fail-on-test-failure` makes a
//! failed test case fail the command, and `--log-format` chooses the stderr rendering.
//!
//! As a lab's `lava-worker` starts it, `--url`, `--token` and `--job-log-interval` send the
//! log to lava-server while the job runs, drained before `result.yaml`
//! (`lava_dispatcher::LogUpload`), and LAVA's six signals cancel the job.

#![warn(missing_docs)]

#[path = "../../cli.rs"]
mod cli;
pub mod local;
mod multinode;
mod render_device;
pub mod report;
pub mod results;
mod run_job;

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// Command line of `lava-run` (LAVA's flags) plus our extra subcommands.
#[derive(Parser, Debug)]
#[command(name = "lava-run", version, about = "Run one LAVA job on one device")]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(after_help = local::AFTER_HELP)]
pub struct Cli {
    /// One of our extra subcommands; `None` runs a job (LAVA's `lava-run` behaviour).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The flags of a job run, used when no subcommand is given.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The subcommands that are ours, not LAVA's.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Render a device dictionary (Jinja2) into a device configuration YAML.
    #[command(name = "render-device", alias = "render")]
    RenderDevice(render_device::RenderDeviceArgs),
    /// Run a whole MultiNode submission on this machine: split it into node jobs, start an
    /// embedded coordinator on a free loopback port and run every node's job.
    Multinode(multinode::MultinodeArgs),
}

/// LAVA's `lava-run` flags, plus options for local runs.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Job id (used in paths, LAVA_JOB_ID and the process title). Default: the next number
    /// in ./lava-output (one more than the highest number there, 1 at first).
    #[arg(long)]
    pub job_id: Option<String>,
    /// Directory for logs.yaml, description.yaml and result.yaml. Default:
    /// `./lava-output/<job id>`.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Device configuration YAML (or a device dictionary *.jinja2).
    #[arg(long, required = true)]
    pub device: Option<PathBuf>,
    /// Dispatcher configuration YAML.
    #[arg(long)]
    pub dispatcher: Option<PathBuf>,
    /// DUT environment YAML.
    #[arg(long)]
    pub env_dut: Option<PathBuf>,
    /// Validate the job and write description.yaml, then stop.
    #[arg(long)]
    pub validate: bool,
    /// Write the pipeline description to this file as well.
    #[arg(long)]
    pub describe: Option<PathBuf>,
    /// lava-server URL to send logs to.
    #[arg(long)]
    pub url: Option<String>,
    /// Token for the log upload.
    #[arg(long)]
    pub token: Option<String>,
    /// Seconds between log batches sent by HTTP.
    #[arg(long, default_value_t = 5)]
    pub job_log_interval: u64,
    /// Accepted for compatibility with LAVA.
    #[arg(long)]
    pub skip_sudo_warning: bool,
    /// Accepted for compatibility with LAVA (remote debugger in Python).
    #[arg(long)]
    pub debug: bool,
    /// Device-type template directories used when --device is a dictionary.
    #[arg(long = "device-types")]
    pub device_types: Vec<PathBuf>,
    /// MultiNode coordinator configuration (LAVA's JSON `lava-coordinator.conf`), instead of
    /// LAVA's fixed /etc/lava-coordinator/lava-coordinator.conf.
    #[arg(long)]
    pub coordinator_config: Option<PathBuf>,
    /// After the job, write its test results to FILE for CI: JUnit XML when FILE ends in
    /// .xml (one testsuite per test suite, the lava suite included), JSON when it ends in
    /// .json.
    #[arg(long, value_name = "FILE", value_parser = local::results_path)]
    pub results: Option<PathBuf>,
    /// Exit with status 3 when the job completed but a test case failed (status 1, a failed
    /// job, comes first).
    #[arg(long)]
    pub fail_on_test_failure: bool,
    /// How the log is shown on stderr: `human` (time, level, message; coloured on a
    /// terminal unless NO_COLOR is set) or `yaml` (LAVA's log lines). Default: human on a
    /// terminal, yaml otherwise. logs.yaml is always LAVA's format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<local::LogFormat>,
    /// The job definition (YAML).
    #[arg(required = true)]
    pub definition: Option<PathBuf>,
}

/// Process-wide allocator setting for the dispatcher binaries, called first in `main`.
///
/// glibc gives threads that allocate at the same time their own malloc arenas (up to
/// eight per core), and memory freed into an arena stays resident there. The dispatcher
/// allocates little and from few threads (two async workers, short-lived blocking ones
/// for files, downloads and the ramdisk), so one shared arena costs no measurable
/// contention and keeps the resident set at what is in use: about 1 MiB less peak RSS
/// on the QEMU job. This is `MALLOC_ARENA_MAX=1`; a value in the environment wins.
pub fn tune_process_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes glibc's allocator parameters; it is called
        // before any thread of ours exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Parse `args` and run; returns the process exit code (0 ok, 1 failure, 2 usage, 3 a failed
/// test case with `--fail-on-test-failure`).
pub fn main_with_args<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    let cli: Cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Some(Command::RenderDevice(args)) => report(render_device::run(&args)),
        Some(Command::Multinode(args)) => report(multinode::run(&args)),
        None => report(run_job::run(&cli.run)),
    }
}

fn report(result: anyhow::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            1
        }
    }
}
