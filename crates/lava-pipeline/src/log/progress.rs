//! The live progress line shown on a terminal while a transfer runs.
//!
//! When the job log is rendered for a person ([`StderrStyle::Human`]), a transfer shows
//! one status line under the log records, redrawn in place (carriage return, then erase
//! to the end of the line) at most every [`REDRAW_INTERVAL`]: the bytes so far (of the
//! total when it is known) with the percentage, the average rate and the time left. The
//! line is drawn through the logger's terminal sink, under the logger's lock, so a
//! record logged meanwhile erases it, takes its row, and the status line is drawn again
//! below the record: the two never share a row. A completed transfer erases its line
//! ([`ProgressLine::clear`]); one that stops early (an error, or a timeout dropping the
//! future) keeps its last state on screen, ended with a newline.
//!
//! The status line never reaches `logs.yaml`. LAVA's own progress records are logged
//! through [`ProgressLine::log_milestone`]: they reach every sink as any `debug` record
//! does, except the terminal while a live line stands in for them. In any other style
//! (`Plain`, `Yaml`, `Off`) the handle draws nothing and milestones are ordinary `debug` records.

use super::{JobLogger, Level, StderrStyle};
use serde_yaml::Value;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Status-line redraws are at least this far apart (about ten a second).
pub const REDRAW_INTERVAL: Duration = Duration::from_millis(100);

/// Status lines are cut to this many characters, so they do not wrap on an 80-column
/// terminal (a wrapped line cannot be redrawn with a carriage return).
pub const STATUS_WIDTH: usize = 79;

/// Where a [`ProgressLine`] reads the time: the system's monotonic clock, or a test's.
pub trait Clock: Send {
    /// The current time.
    fn now(&self) -> Instant;
}

impl<F: Fn() -> Instant + Send> Clock for F {
    fn now(&self) -> Instant {
        self()
    }
}

/// One transfer's status line on the terminal (see the module doc). Dropping it without
/// [`clear`](ProgressLine::clear) keeps the last state drawn, ended with a newline.
pub struct ProgressLine {
    logger: JobLogger,
    /// `None` when the log is not rendered for a person: nothing is drawn.
    live: Option<LiveLine>,
}

impl JobLogger {
    /// A progress line for a transfer named `label` of `total` bytes (when known), timed
    /// by the system clock.
    pub fn progress_line(&self, label: &str, total: Option<u64>) -> ProgressLine {
        self.progress_line_with_clock(label, total, Instant::now)
    }

    /// [`JobLogger::progress_line`] timed by `clock`.
    pub fn progress_line_with_clock(
        &self,
        label: &str,
        total: Option<u64>,
        clock: impl Clock + 'static,
    ) -> ProgressLine {
        let live = (self.lock().stderr == StderrStyle::Human).then(|| {
            let started = clock.now();
            LiveLine {
                owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
                meter: ProgressMeter::new(label, total, started),
                clock: Box::new(clock),
            }
        });
        ProgressLine {
            logger: self.clone(),
            live,
        }
    }
}

impl ProgressLine {
    /// Whether a status line is drawn on the terminal for this transfer.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// `done` bytes have been transferred: redraw the status line if the last redraw is
    /// [`REDRAW_INTERVAL`] old (the first one is due that long after the start, so a
    /// shorter transfer shows none).
    pub fn update(&mut self, done: u64) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let now = live.clock.now();
        if let Some(text) = live.meter.poll(done, now) {
            self.logger.lock().terminal.draw_status(live.owner, text);
        }
    }

    /// One of LAVA's progress records (`debug`): written to every sink, except the
    /// terminal while this line is live.
    pub fn log_milestone(&self, msg: impl Into<String>) {
        self.logger
            .log_value_to(Level::Debug, Value::String(msg.into()), !self.is_live());
    }

    /// The transfer completed: erase the status line.
    pub fn clear(mut self) {
        if let Some(live) = self.live.take() {
            self.logger.lock().terminal.erase_status(live.owner);
        }
    }

    /// The transfer stopped early: keep the last state drawn, ended with a newline (as
    /// dropping the line does).
    pub fn interrupt(self) {
        drop(self);
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            self.logger.lock().terminal.end_status(live.owner);
        }
    }
}

/// The terminal end of a logger: complete lines, and at most one status line kept below
/// them. Every write is one `write_all` followed by a flush.
pub(super) struct TerminalSink {
    out: Box<dyn Write + Send>,
    status: Option<StatusLine>,
}

/// Carriage return, then erase to the end of the line.
const ERASE_LINE: &str = "\r\x1b[K";

impl TerminalSink {
    pub(super) fn new(out: Box<dyn Write + Send>) -> Self {
        TerminalSink { out, status: None }
    }

    /// A complete line (a log record). A status line on screen is erased first and drawn
    /// again below the record.
    pub(super) fn write_line(&mut self, line: &str) {
        let text = match &self.status {
            Some(status) => format!("{ERASE_LINE}{line}\n{}", status.text),
            None => format!("{line}\n"),
        };
        self.emit(&text);
    }

    /// Draw `owner`'s status line over the current one.
    fn draw_status(&mut self, owner: u64, text: String) {
        self.emit(&format!("\r{text}\x1b[K"));
        self.status = Some(StatusLine { owner, text });
    }

    /// Erase `owner`'s status line (a newer line of another owner stays).
    fn erase_status(&mut self, owner: u64) {
        if self.take_status(owner) {
            self.emit(ERASE_LINE);
        }
    }

    /// Keep `owner`'s status line as it is and move below it.
    fn end_status(&mut self, owner: u64) {
        if self.take_status(owner) {
            self.emit("\n");
        }
    }

    fn take_status(&mut self, owner: u64) -> bool {
        let owned = self.status.as_ref().is_some_and(|s| s.owner == owner);
        if owned {
            self.status = None;
        }
        owned
    }

    fn emit(&mut self, text: &str) {
        // A terminal that cannot be written must not abort the job.
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

struct StatusLine {
    owner: u64,
    text: String,
}

/// Tells apart the status lines of concurrent transfers on one terminal.
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

struct LiveLine {
    owner: u64,
    meter: ProgressMeter,
    clock: Box<dyn Clock>,
}

/// What the status line says and when it is due again; the time is always passed in.
struct ProgressMeter {
    label: String,
    total: Option<u64>,
    started: Instant,
    last_draw: Instant,
}

impl ProgressMeter {
    fn new(label: &str, total: Option<u64>, started: Instant) -> Self {
        ProgressMeter {
            label: label.replace(|c: char| c.is_control(), "?"),
            total: total.filter(|t| *t > 0),
            started,
            last_draw: started,
        }
    }

    /// The status text when a redraw is due at `now`.
    fn poll(&mut self, done: u64, now: Instant) -> Option<String> {
        if now.saturating_duration_since(self.last_draw) < REDRAW_INTERVAL {
            return None;
        }
        self.last_draw = now;
        Some(self.render(done, now))
    }

    /// `label  45%  1.2 MiB / 2.7 MiB  3.4 MiB/s  ETA 0:01`, or without a known total
    /// `label  1.2 MiB  3.4 MiB/s`. The rate is the average since the start.
    fn render(&self, done: u64, now: Instant) -> String {
        let elapsed = now.saturating_duration_since(self.started).as_secs_f64();
        let rate = (elapsed > 0.0).then(|| done as f64 / elapsed);
        let rate_text = rate.map_or_else(|| "-- B/s".to_string(), format_rate);
        let figures = match self.total {
            Some(total) => {
                let percent = u128::from(done.min(total)) * 100 / u128::from(total);
                let left = rate.filter(|r| *r > 0.0).and_then(|r| {
                    Duration::try_from_secs_f64((total - done.min(total)) as f64 / r).ok()
                });
                format!(
                    "{percent:>3}%  {} / {}  {rate_text}  ETA {}",
                    format_bytes(done),
                    format_bytes(total),
                    left.map_or_else(|| "--:--".to_string(), format_eta)
                )
            }
            None => format!("{}  {rate_text}", format_bytes(done)),
        };
        fit_label(&self.label, &figures)
    }
}

/// `label  figures` within [`STATUS_WIDTH`], the label shortened (with `...`) first.
fn fit_label(label: &str, figures: &str) -> String {
    let room = STATUS_WIDTH.saturating_sub(figures.chars().count() + 2);
    let label_len = label.chars().count();
    let label = if label_len <= room {
        label.to_string()
    } else if room > 3 {
        let kept: String = label.chars().take(room - 3).collect();
        format!("{kept}...")
    } else {
        String::new()
    };
    let line = if label.is_empty() {
        figures.to_string()
    } else {
        format!("{label}  {figures}")
    };
    line.chars().take(STATUS_WIDTH).collect()
}

/// `512 B`, `1.5 KiB`, `274.0 MiB`, `3.2 GiB`.
fn format_bytes(bytes: u64) -> String {
    scaled(bytes as f64)
}

/// `512 B/s`, `12.5 MiB/s`.
fn format_rate(bytes_per_second: f64) -> String {
    format!("{}/s", scaled(bytes_per_second))
}

/// Binary units with one decimal; plain bytes below 1 KiB.
fn scaled(value: f64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if value < 1024.0 {
        return format!("{value:.0} B");
    }
    let mut value = value / 1024.0;
    let mut unit = 0;
    // 1023.95 would print as 1024.0 of the smaller unit.
    while value >= 1023.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `0:07`, `12:34`, `1:02:03`; `>99h` beyond that.
fn format_eta(left: Duration) -> String {
    let secs = left.as_secs();
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    if hours >= 100 {
        ">99h".to_string()
    } else if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes}:{seconds:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    const MIB: u64 = 1024 * 1024;

    /// A clock the test moves by hand.
    #[derive(Clone)]
    struct ManualClock(Arc<Mutex<Instant>>);

    impl ManualClock {
        fn new() -> Self {
            ManualClock(Arc::new(Mutex::new(Instant::now())))
        }
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    /// An in-memory terminal.
    #[derive(Clone, Default)]
    struct Screen(Arc<Mutex<Vec<u8>>>);

    impl Screen {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The level word of the human record found at `at`, after checking that its row
    /// was started cleanly: right after an erase or a newline, with nothing else drawn
    /// on it before the record's time stamp.
    fn row_of(text: &str, at: usize) -> &str {
        let before = &text[..at];
        let row_start = [
            before.rfind("\r\x1b[K").map(|i| i + 4),
            before.rfind('\n').map(|i| i + 1),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        let prefix = &before[row_start..];
        assert!(
            !prefix.contains('\r') && !prefix.contains("ETA"),
            "{text:?}"
        );
        // `HH:MM:SS <colour>level    <reset> `
        prefix
            .split(['m', ' '])
            .find(|w| w.chars().all(char::is_alphabetic) && !w.is_empty())
            .unwrap_or("")
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn sizes_rates_and_time_left_are_readable() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(274 * MIB), "274.0 MiB");
        assert_eq!(format_bytes(MIB - 1), "1.0 MiB");
        assert_eq!(format_bytes(3 * 1024 * MIB + 200 * MIB), "3.2 GiB");
        assert_eq!(format_rate(512.0), "512 B/s");
        assert_eq!(format_rate(12.5 * MIB as f64), "12.5 MiB/s");
        assert_eq!(format_eta(Duration::from_secs(7)), "0:07");
        assert_eq!(format_eta(Duration::from_secs(754)), "12:34");
        assert_eq!(format_eta(Duration::from_secs(3723)), "1:02:03");
        assert_eq!(format_eta(Duration::from_secs(100 * 3600)), ">99h");
    }

    #[test]
    fn known_total_shows_percent_rate_and_time_left() {
        let start = Instant::now();
        let meter = ProgressMeter::new("rootfs.ext4", Some(100 * MIB), start);
        // 25 MiB in 2 s: 12.5 MiB/s, 75 MiB left → 6 s.
        assert_eq!(
            meter.render(25 * MIB, start + Duration::from_secs(2)),
            "rootfs.ext4   25%  25.0 MiB / 100.0 MiB  12.5 MiB/s  ETA 0:06"
        );
        // The percentage is floored, as LAVA's is.
        assert!(
            meter
                .render(100 * MIB - 1, start + Duration::from_secs(8))
                .contains(" 99%  ")
        );
        // No time has passed: no rate, no estimate.
        assert_eq!(
            meter.render(0, start),
            "rootfs.ext4    0%  0 B / 100.0 MiB  -- B/s  ETA --:--"
        );
    }

    #[test]
    fn unknown_total_shows_bytes_and_rate() {
        let start = Instant::now();
        for total in [None, Some(0)] {
            let meter = ProgressMeter::new("kernel", total, start);
            assert_eq!(
                meter.render(3 * MIB, start + Duration::from_secs(2)),
                "kernel  3.0 MiB  1.5 MiB/s"
            );
        }
    }

    #[test]
    fn long_labels_are_shortened_to_fit_one_row() {
        let start = Instant::now();
        let name = format!("{}.img\r", "very-long-image-name-".repeat(5));
        let meter = ProgressMeter::new(&name, Some(10 * 1024 * MIB), start);
        let line = meter.render(5 * 1024 * MIB, start + Duration::from_secs(40));
        assert_eq!(line.chars().count(), STATUS_WIDTH, "{line}");
        assert!(line.starts_with("very-long-image-name-"), "{line}");
        assert!(line.contains("...   50%  5.0 GiB / 10.0 GiB"), "{line}");
        assert!(!line.contains('\r'));
    }

    #[test]
    fn redraws_are_throttled_by_the_clock() {
        let start = Instant::now();
        let mut meter = ProgressMeter::new("x", Some(1000), start);
        assert_eq!(
            meter.poll(10, start + ms(50)),
            None,
            "too early after the start"
        );
        assert!(meter.poll(20, start + ms(100)).is_some());
        assert_eq!(meter.poll(30, start + ms(150)), None);
        assert_eq!(meter.poll(40, start + ms(199)), None);
        let text = meter.poll(500, start + ms(200)).unwrap();
        assert!(text.contains(" 50%"), "{text}");
        assert!(meter.poll(600, start + ms(350)).is_some());
    }

    #[test]
    fn terminal_shows_one_redrawn_line_below_the_records() {
        let screen = Screen::default();
        let clock = ManualClock::new();
        let logger = JobLogger::with_stderr_writer(StderrStyle::Human, screen.clone());
        let mut line = logger.progress_line_with_clock("rootfs.ext4", Some(4 * MIB), clock.clone());
        assert!(line.is_live());

        line.update(MIB / 2);
        assert_eq!(screen.text(), "", "nothing before the first interval");
        clock.advance(ms(100));
        line.update(MIB);
        clock.advance(ms(40));
        line.update(2 * MIB);
        clock.advance(ms(60));
        line.update(2 * MIB);
        logger.info("a record meanwhile");
        line.log_milestone("progress  50 % (2 MB)");
        line.clear();
        logger.info("after the transfer");

        let text = screen.text();
        let draws: Vec<&str> = text.matches("\r").collect();
        let first = "\rrootfs.ext4   25%  1.0 MiB / 4.0 MiB  10.0 MiB/s  ETA 0:00\x1b[K";
        let second = "\rrootfs.ext4   50%  2.0 MiB / 4.0 MiB  10.0 MiB/s  ETA 0:00\x1b[K";
        assert!(text.starts_with(&format!("{first}{second}")), "{text:?}");
        assert!(draws.len() >= 4, "{text:?}");
        // The record erases the status line, takes its row and the status comes back below.
        let record = text.find("a record meanwhile").unwrap();
        assert_eq!(row_of(&text, record), "info", "{text:?}");
        let after_record = &text[record..];
        let redrawn = "\nrootfs.ext4   50%  2.0 MiB / 4.0 MiB  10.0 MiB/s  ETA 0:00";
        assert!(after_record.contains(redrawn), "{text:?}");
        // The milestone stays off the terminal while the line is live.
        assert!(!text.contains("progress  50 %"), "{text:?}");
        // Cleared: the next record starts on a clean row.
        let next = text.find("after the transfer").unwrap();
        assert_eq!(row_of(&text, next), "info", "{text:?}");
        assert!(text[..next].contains("ETA 0:00\r\x1b[K"), "{text:?}");
        assert!(text.ends_with("after the transfer\n"), "{text:?}");
        assert_eq!(text.matches("ETA").count(), 3, "{text:?}");
    }

    #[test]
    fn an_interrupted_transfer_keeps_its_line_and_ends_it_with_a_newline() {
        let screen = Screen::default();
        let clock = ManualClock::new();
        let logger = JobLogger::with_stderr_writer(StderrStyle::Human, screen.clone());
        let mut line = logger.progress_line_with_clock("initrd", None, clock.clone());
        clock.advance(Duration::from_secs(1));
        line.update(3 * MIB);
        drop(line);
        logger.error("Unable to download");
        let text = screen.text();
        let error = text.find("Unable to download").unwrap();
        assert!(
            text[..error].starts_with("\rinitrd  3.0 MiB  3.0 MiB/s\x1b[K\n"),
            "{text:?}"
        );
        assert!(
            !text[..error].contains("\r\x1b[K"),
            "kept, not erased: {text:?}"
        );
    }

    #[test]
    fn milestones_reach_the_log_file_in_every_style() {
        let dir = tempfile::tempdir().unwrap();
        for style in [
            StderrStyle::Human,
            StderrStyle::Plain,
            StderrStyle::Yaml,
            StderrStyle::Off,
        ] {
            let screen = Screen::default();
            let logger = JobLogger::with_stderr_writer(style, screen.clone());
            let path = dir.path().join("logs.yaml");
            logger.open_file(&path).unwrap();
            let clock = ManualClock::new();
            let mut line = logger.progress_line_with_clock("kernel", Some(100), clock.clone());
            assert_eq!(line.is_live(), style == StderrStyle::Human);
            clock.advance(Duration::from_secs(1));
            line.update(5);
            line.log_milestone("progress   5 % (0 MB)");
            line.clear();
            let file = std::fs::read_to_string(&path).unwrap();
            assert!(
                file.ends_with("\"lvl\": \"debug\", \"msg\": \"progress   5 % (0 MB)\"}\n"),
                "{style:?}: {file}"
            );
            assert_eq!(logger.line_count(), 1);
            let text = screen.text();
            match style {
                StderrStyle::Human => {
                    assert!(text.contains("kernel    5%") && !text.contains("progress"))
                }
                StderrStyle::Yaml => assert!(
                    text.ends_with("\"msg\": \"progress   5 % (0 MB)\"}\n") && !text.contains('\r'),
                    "{text:?}"
                ),
                StderrStyle::Plain => assert!(
                    text.ends_with(" debug     progress   5 % (0 MB)\n")
                        && !text.contains('\r')
                        && !text.contains('\x1b'),
                    "{text:?}"
                ),
                StderrStyle::Off => assert_eq!(text, ""),
            }
        }
    }
}
