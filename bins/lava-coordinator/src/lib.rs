//! The `lava-coordinator` command line: LAVA's daemon options (`--logfile`,
//! `--loglevel/-l`, `--config`), parsed here and handed to
//! [`lava_coordinator::run_daemon`].
//!
//! The clap definition is a library item so that `cargo xtask deb` generates
//! the manual page and shell completions from the same [`Cli`] the binary
//! parses:
//!
//! ```
//! use clap::CommandFactory;
//! let command = lava_coordinator_cli::Cli::command();
//! assert_eq!(command.get_name(), "lava-coordinator");
//! ```
#![warn(missing_docs)]

#[path = "../../cli.rs"]
mod cli;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;
use lava_coordinator::LogLevel;

/// LAVA's configuration file, read by the daemon and by MultiNode node jobs.
pub const DEFAULT_CONFIG: &str = "/etc/lava-coordinator/lava-coordinator.conf";

/// LAVA's log file for the daemon.
pub const DEFAULT_LOGFILE: &str = "/var/log/lava-coordinator.log";

/// Command line of `lava-coordinator`.
#[derive(Parser, Debug)]
#[command(
    name = "lava-coordinator",
    version,
    about = "LAVA coordinator: the MultiNode message broker",
    long_about = "LAVA coordinator: the MultiNode message broker. Serves LAVA's coordinator \
                  protocol on the port of the configuration file until SIGTERM or Ctrl-C; \
                  SIGHUP reopens the log file (after logrotate renamed it)."
)]
pub struct Cli {
    /// Log file for the coordinator logs ("-" for standard output).
    #[arg(long, default_value = DEFAULT_LOGFILE, value_hint = clap::ValueHint::FilePath)]
    pub logfile: String,
    /// Log level: DEBUG, ERROR, INFO or WARN.
    #[arg(long, short = 'l', default_value = "INFO")]
    pub loglevel: LogLevel,
    /// Configuration file (LAVA's JSON: port, blocksize, poll_delay, coordinator_hostname).
    #[arg(long, default_value = DEFAULT_CONFIG, value_hint = clap::ValueHint::FilePath)]
    pub config: PathBuf,
}

/// Parse `args`, run the daemon until it is stopped and return the process
/// exit code: 0 after a clean stop, 1 with the error printed as one message
/// on standard error, 2 for a bad command line (clap's own message).
pub fn main_with_args<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    let cli: Cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::Error::new(err).context("cannot start the runtime")),
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => 0,
        Err(err) => fail(&err),
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let log = lava_coordinator::init_logging(&cli.logfile, cli.loglevel)?;
    lava_coordinator::run_daemon(&cli.config, log).await?;
    Ok(())
}

fn fail(err: &anyhow::Error) -> i32 {
    eprintln!("lava-coordinator: {err:#}");
    1
}
