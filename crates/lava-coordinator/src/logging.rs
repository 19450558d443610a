//! Log set-up matching LAVA's daemon options: `--logfile PATH` (`-` is
//! standard output) and `--loglevel DEBUG|INFO|WARN|ERROR`.
//!
//! A log file is reopened by [`LogHandle::reopen`], which the daemon calls on
//! SIGHUP: logrotate renames the file and sends the signal from `postrotate`,
//! and the lines after it go to a new file at the same path.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::CoordinatorError;

/// LAVA's four log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Every request and reply.
    Debug,
    /// Start-up, groups formed and completed (LAVA's default in its unit).
    Info,
    /// Refused and malformed requests.
    Warn,
    /// Only errors.
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

/// The log file the global subscriber writes to, reopenable at its path.
#[derive(Debug, Clone)]
pub struct LogHandle {
    file: Option<Arc<ReopenableFile>>,
}

impl LogHandle {
    /// Close the log file and open its path again (appending, created if
    /// absent), so lines after a rotation go to the new file. Logging to
    /// standard output has nothing to reopen.
    pub fn reopen(&self) -> Result<(), CoordinatorError> {
        match &self.file {
            Some(file) => file.reopen(),
            None => Ok(()),
        }
    }

    /// The path of the log file, `None` for standard output.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|file| file.path.as_path())
    }
}

/// A file shared by every log line, swapped under its lock on reopen.
#[derive(Debug)]
struct ReopenableFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl ReopenableFile {
    fn open(path: &Path) -> Result<Self, CoordinatorError> {
        Ok(ReopenableFile {
            path: path.to_path_buf(),
            file: Mutex::new(open_for_append(path)?),
        })
    }

    fn reopen(&self) -> Result<(), CoordinatorError> {
        let fresh = open_for_append(&self.path)?;
        let mut current = self.lock();
        let _ = current.flush();
        *current = fresh;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, File> {
        // A panic while writing a line leaves the file usable.
        self.file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn open_for_append(path: &Path) -> Result<File, CoordinatorError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            CoordinatorError::Config(format!("cannot open log file {}: {e}", path.display()))
        })
}

/// One log line's writer: holds the file's lock while the line is written.
struct LineWriter<'a>(MutexGuard<'a, File>);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `MakeWriter` for the subscriber, over the shared reopenable file.
struct SharedFile(Arc<ReopenableFile>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SharedFile {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self.0.lock())
    }
}

/// Install the global subscriber writing to `logfile` (appending) or to
/// standard output for `-`. Lines: time, level, message. The returned handle
/// reopens the file after a rotation.
pub fn init_logging(logfile: &str, level: LogLevel) -> Result<LogHandle, CoordinatorError> {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level.filter())
        .with_target(false)
        .with_ansi(false);
    let (installed, handle) = if logfile == "-" {
        (
            builder.with_writer(std::io::stdout).try_init(),
            LogHandle { file: None },
        )
    } else {
        let file = Arc::new(ReopenableFile::open(Path::new(logfile))?);
        (
            builder.with_writer(SharedFile(file.clone())).try_init(),
            LogHandle { file: Some(file) },
        )
    };
    installed.map_err(|e| CoordinatorError::Config(format!("logging already set up: {e}")))?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reopen_writes_to_a_new_file_after_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.log");
        let file = ReopenableFile::open(&path).unwrap();
        writeln!(file.lock(), "before").unwrap();
        let rotated = dir.path().join("coordinator.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        writeln!(file.lock(), "still old").unwrap();
        file.reopen().unwrap();
        writeln!(file.lock(), "after").unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "before\nstill old\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
    }

    #[test]
    fn reopen_names_the_path_when_it_cannot_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/coordinator.log");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let file = ReopenableFile::open(&path).unwrap();
        std::fs::remove_dir_all(dir.path().join("sub")).unwrap();
        let error = file.reopen().unwrap_err().to_string();
        assert!(error.contains("sub/coordinator.log"), "{error}");
    }
}
