//! `lava-coordinator`: the MultiNode message broker daemon, with LAVA's
//! command line (`--logfile`, `--loglevel/-l`, `--config`).

use std::path::PathBuf;

use clap::Parser;
use lava_coordinator::LogLevel;

#[derive(Parser)]
#[command(name = "lava-coordinator", about = "LAVA coordinator", version)]
struct Cli {
    /// Log file for the coordinator logs ("-" for standard output).
    #[arg(long, default_value = "/var/log/lava-coordinator.log")]
    logfile: String,
    /// Log level: DEBUG, ERROR, INFO or WARN.
    #[arg(long, short = 'l', default_value = "INFO")]
    loglevel: LogLevel,
    /// Configuration file.
    #[arg(long, default_value = lava_multinode_default_config())]
    config: PathBuf,
}

const fn lava_multinode_default_config() -> &'static str {
    "/etc/lava-coordinator/lava-coordinator.conf"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    lava_coordinator::init_logging(&cli.logfile, cli.loglevel)?;
    lava_coordinator::run_daemon(&cli.config).await?;
    Ok(())
}
