//! Where console traffic is recorded: the [`ConsoleLog`] trait and an in-memory sink.
//!
//! A session reports every complete line received as a `target` record, every line it
//! sends as an `input` record and its own notes as `debug` records, matching LAVA's log
//! levels (logs-and-results.md §2). Lines are passed as received (ESC removed, other
//! control characters kept); escaping them is the writer's job, as LAVA's YAML dumper
//! does (see [`crate::lines::escape_control_chars`] for plain-text sinks).

use std::sync::Mutex;

/// A destination for console records. Implementations must be cheap and must not block
/// for long: they are called from the read loop.
pub trait ConsoleLog: Send + Sync {
    /// One complete line received from the device (`lvl: target`).
    fn target_line(&self, line: &str);
    /// One line sent to the device, without its terminator (`lvl: input`).
    fn input_line(&self, line: &str);
    /// A note from the session (`lvl: debug`).
    fn debug(&self, message: &str);
    /// One line drained from another namespace's connection (`lvl: feedback`).
    fn feedback_line(&self, line: &str, namespace: Option<&str>) {
        let _ = namespace;
        self.target_line(line);
    }
}

/// The level of a [`LogRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogLevel {
    /// Output read from the device (LAVA's `target` level).
    Target,
    /// Text sent to the device (`input`).
    Input,
    /// Connection diagnostics (`debug`).
    Debug,
    /// Output of another namespace's device (`feedback`).
    Feedback,
}

/// One record kept by [`MemoryLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The record's level.
    pub level: LogLevel,
    /// The line, without its line ending.
    pub text: String,
    /// The namespace a `feedback` record came from; `None` otherwise.
    pub namespace: Option<String>,
}

/// Keeps every record in memory, in order (for tests and for callers that batch).
#[derive(Debug, Default)]
pub struct MemoryLog {
    records: Mutex<Vec<LogRecord>>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every record so far.
    pub fn records(&self) -> Vec<LogRecord> {
        self.lock().clone()
    }

    /// The texts of the records of one level.
    pub fn lines(&self, level: LogLevel) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|r| r.level == level)
            .map(|r| r.text.clone())
            .collect()
    }

    /// The texts of the `target` records.
    pub fn target_lines(&self) -> Vec<String> {
        self.lines(LogLevel::Target)
    }

    /// The texts of the `input` records.
    pub fn input_lines(&self) -> Vec<String> {
        self.lines(LogLevel::Input)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LogRecord>> {
        // A panic while holding the lock cannot leave a Vec half-written.
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, level: LogLevel, text: &str, namespace: Option<&str>) {
        self.lock().push(LogRecord {
            level,
            text: text.to_string(),
            namespace: namespace.map(str::to_string),
        });
    }
}

impl ConsoleLog for MemoryLog {
    fn target_line(&self, line: &str) {
        self.record(LogLevel::Target, line, None);
    }
    fn input_line(&self, line: &str) {
        self.record(LogLevel::Input, line, None);
    }
    fn debug(&self, message: &str) {
        self.record(LogLevel::Debug, message, None);
    }
    fn feedback_line(&self, line: &str, namespace: Option<&str>) {
        self.record(LogLevel::Feedback, line, namespace);
    }
}

/// Sends records to `tracing` (target `lava_connection::console`), control characters
/// escaped. Useful until a job logger is plugged in.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingLog;

impl ConsoleLog for TracingLog {
    fn target_line(&self, line: &str) {
        let line = crate::lines::escape_control_chars(line);
        tracing::info!(target: "lava_connection::console", lvl = "target", "{line}");
    }
    fn input_line(&self, line: &str) {
        let line = crate::lines::escape_control_chars(line);
        tracing::info!(target: "lava_connection::console", lvl = "input", "{line}");
    }
    fn debug(&self, message: &str) {
        tracing::debug!(target: "lava_connection::console", "{message}");
    }
}
