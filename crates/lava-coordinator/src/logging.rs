//! Log set-up matching LAVA's daemon options: `--logfile PATH` (`-` is
//! standard output) and `--loglevel DEBUG|INFO|WARN|ERROR`.

use std::fs::OpenOptions;
use std::str::FromStr;
use std::sync::Mutex;

use crate::CoordinatorError;

/// LAVA's four log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "DEBUG" => Ok(LogLevel::Debug),
            "INFO" => Ok(LogLevel::Info),
            "WARN" => Ok(LogLevel::Warn),
            "ERROR" => Ok(LogLevel::Error),
            other => Err(format!(
                "invalid choice: {other:?} (choose from DEBUG, ERROR, INFO, WARN)"
            )),
        }
    }
}

impl LogLevel {
    fn filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
        }
    }
}

/// Install the global subscriber writing to `logfile` (appending) or to
/// standard output for `-`. Lines: time, level, message.
pub fn init_logging(logfile: &str, level: LogLevel) -> Result<(), CoordinatorError> {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level.filter())
        .with_target(false)
        .with_ansi(false);
    let installed = if logfile == "-" {
        builder.with_writer(std::io::stdout).try_init()
    } else {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(logfile)
            .map_err(|e| {
                CoordinatorError::Config(format!("cannot open log file {logfile}: {e}"))
            })?;
        builder.with_writer(Mutex::new(file)).try_init()
    };
    installed.map_err(|e| CoordinatorError::Config(format!("logging already set up: {e}")))
}
