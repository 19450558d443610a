//! The job log: one YAML flow mapping per line, exactly as LAVA writes it.
//!
//! A [`JobLogger`] is shared by every action of a job (clone it freely). Each record is
//! serialised once, masked (secrets become `[MASKED]`) and written to every sink:
//! `<output-dir>/logs.yaml` as a YAML list item (`- {...}`), and stderr as a bare line (or
//! a human rendering: [`StderrStyle::Human`] coloured for a terminal, [`StderrStyle::Plain`]
//! the same layout without escape sequences). The human rendering shows a multi-line
//! message as lines, continuation lines indented under the first, where `logs.yaml` keeps
//! LAVA's escaped `\n`. With [`StderrStyle::Human`], transfers show a live status line
//! below the records ([`JobLogger::progress_line`], see [`progress`]).

pub mod progress;
pub use progress::{Clock, ProgressLine};

use progress::TerminalSink;

use lava_python::{write_yaml_double_quoted, yaml_float};
use serde_yaml::{Mapping, Value};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Record levels (`lvl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Debugging detail (`debug`).
    Debug,
    /// Progress messages (`info`).
    Info,
    /// Problems that do not stop the job (`warning`).
    Warning,
    /// Errors (`error`).
    Error,
    /// An exception raised in the dispatcher (`exception`).
    Exception,
    /// A test or action result map (`results`).
    Results,
    /// Output read from the device (`target`).
    Target,
    /// Text sent to the device (`input`).
    Input,
    /// Output of another namespace's device in a multinode job (`feedback`).
    Feedback,
    /// Events such as MultiNode synchronisation (`event`).
    Event,
}

impl Level {
    /// The `lvl` value written in the log for this level.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Exception => "exception",
            Level::Results => "results",
            Level::Target => "target",
            Level::Input => "input",
            Level::Feedback => "feedback",
            Level::Event => "event",
        }
    }
}

/// Called with every record after it is written.
type RecordObserver = Box<dyn FnMut(Level, &str) + Send>;

/// Records longer than this have their `msg` replaced (LAVA master: 100 000).
pub const MAX_RECORD_LEN: usize = 100_000;

/// How records are shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StderrStyle {
    /// No stderr output.
    Off,
    /// LAVA's YAML lines.
    Yaml,
    /// A readable, coloured rendering for terminals, with live progress lines.
    Human,
    /// The [`StderrStyle::Human`] layout as plain text: no colours, no live progress line
    /// (`NO_COLOR`, or a human log written to a file or a pipe).
    Plain,
}

/// A shared, thread-safe job logger.
#[derive(Clone)]
pub struct JobLogger {
    inner: Arc<Mutex<LoggerInner>>,
}

struct LoggerInner {
    file: Option<BufWriter<File>>,
    stderr: StderrStyle,
    /// Where the stderr rendering goes (stderr itself unless injected).
    terminal: TerminalSink,
    secrets: Vec<String>,
    /// Records emitted so far (LAVA's `line` counter used for test-case markers).
    line: u64,
    /// Captured records (tests and in-process users).
    capture: Option<Vec<String>>,
    on_record: Option<RecordObserver>,
}

impl Default for JobLogger {
    fn default() -> Self {
        Self::new(StderrStyle::Off)
    }
}

impl JobLogger {
    /// A logger that writes only to stderr in the given style.
    pub fn new(stderr: StderrStyle) -> Self {
        Self::with_stderr_writer(stderr, io::stderr())
    }

    /// A logger that writes what [`JobLogger::new`] would write to stderr to `writer`
    /// (an in-memory terminal in tests, or another stream).
    pub fn with_stderr_writer(stderr: StderrStyle, writer: impl Write + Send + 'static) -> Self {
        JobLogger {
            inner: Arc::new(Mutex::new(LoggerInner {
                file: None,
                stderr,
                terminal: TerminalSink::new(Box::new(writer)),
                secrets: Vec::new(),
                line: 0,
                capture: None,
                on_record: None,
            })),
        }
    }

    /// A logger keeping every serialised record in memory (see [`JobLogger::captured`]).
    pub fn capturing() -> Self {
        let logger = Self::new(StderrStyle::Off);
        logger.lock().capture = Some(Vec::new());
        logger
    }

    /// Also write `- <record>` lines to this file (LAVA's `logs.yaml`).
    pub fn open_file(&self, path: &Path) -> io::Result<()> {
        let file = File::create(path)?;
        self.lock().file = Some(BufWriter::new(file));
        Ok(())
    }

    /// Values to replace by `[MASKED]` in every record (job secrets, the token).
    pub fn add_secret(&self, secret: &str) {
        if !secret.is_empty() {
            self.lock().secrets.push(secret.to_string());
        }
    }

    /// Call `f` with every record (level and serialised line) after it is written.
    pub fn set_observer(&self, f: impl FnMut(Level, &str) + Send + 'static) {
        self.lock().on_record = Some(Box::new(f));
    }

    /// The serialised records captured so far.
    pub fn captured(&self) -> Vec<String> {
        self.lock().capture.clone().unwrap_or_default()
    }

    /// Number of records emitted so far.
    pub fn line_count(&self) -> u64 {
        self.lock().line
    }

    /// Logs `msg` at `debug`.
    pub fn debug(&self, msg: impl AsRef<str>) {
        self.log_str(Level::Debug, msg.as_ref());
    }
    /// Logs `msg` at `info`.
    pub fn info(&self, msg: impl AsRef<str>) {
        self.log_str(Level::Info, msg.as_ref());
    }
    /// Logs `msg` at `warning`.
    pub fn warning(&self, msg: impl AsRef<str>) {
        self.log_str(Level::Warning, msg.as_ref());
    }
    /// Logs `msg` at `error`.
    pub fn error(&self, msg: impl AsRef<str>) {
        self.log_str(Level::Error, msg.as_ref());
    }
    /// Logs `msg` at `exception`.
    pub fn exception(&self, msg: impl AsRef<str>) {
        self.log_str(Level::Exception, msg.as_ref());
    }
    /// Logs device output `msg` at `target`.
    pub fn target(&self, msg: impl AsRef<str>) {
        self.log_str(Level::Target, msg.as_ref());
    }
    /// Logs text sent to the device at `input`.
    pub fn input(&self, msg: impl AsRef<str>) {
        self.log_str(Level::Input, msg.as_ref());
    }
    /// Logs `msg` at `event`.
    pub fn event(&self, msg: impl AsRef<str>) {
        self.log_str(Level::Event, msg.as_ref());
    }

    /// A `feedback` record naming the namespace it came from.
    pub fn feedback(&self, msg: &str, namespace: &str) {
        let mut rec = Mapping::new();
        rec.insert("dt".into(), Value::String(now_iso()));
        rec.insert("lvl".into(), "feedback".into());
        rec.insert("msg".into(), Value::String(msg.to_string()));
        rec.insert("ns".into(), Value::String(namespace.to_string()));
        self.write_record(Level::Feedback, &rec);
    }

    /// A `results` record; `msg` is the result map.
    pub fn results(&self, result: Mapping) {
        self.log_value(Level::Results, Value::Mapping(result));
    }

    fn log_str(&self, level: Level, msg: &str) {
        self.log_value(level, Value::String(msg.to_string()));
    }

    /// Emit one record with an arbitrary `msg` value.
    pub fn log_value(&self, level: Level, msg: Value) {
        self.log_value_to(level, msg, true);
    }

    /// [`JobLogger::log_value`], shown on stderr only when `to_stderr`.
    fn log_value_to(&self, level: Level, msg: Value, to_stderr: bool) {
        let mut rec = Mapping::new();
        rec.insert("dt".into(), Value::String(now_iso()));
        rec.insert("lvl".into(), level.as_str().into());
        rec.insert("msg".into(), msg);
        self.write_record_to(level, &rec, to_stderr);
    }

    fn write_record(&self, level: Level, rec: &Mapping) {
        self.write_record_to(level, rec, true);
    }

    fn write_record_to(&self, level: Level, rec: &Mapping, to_stderr: bool) {
        let mut line = dump_flow_mapping(rec);
        if line.len() >= MAX_RECORD_LEN {
            let mut short = rec.clone();
            let replacement = match rec.get("msg") {
                Some(Value::String(_)) => Value::String("<line way too long ...>".into()),
                _ => {
                    let mut m = Mapping::new();
                    m.insert("skip".into(), "line way too long ...".into());
                    Value::Mapping(m)
                }
            };
            short.insert("msg".into(), replacement);
            line = dump_flow_mapping(&short);
        }
        let mut inner = self.lock();
        line = mask(line, &inner.secrets);
        inner.line += 1;
        if let Some(file) = inner.file.as_mut() {
            // A failing log file must not abort the job; the record still reaches stderr.
            let _ = writeln!(file, "- {line}");
            let _ = file.flush();
        }
        match inner.stderr {
            _ if !to_stderr => {}
            StderrStyle::Off => {}
            StderrStyle::Yaml => inner.terminal.write_line(&line),
            StderrStyle::Human | StderrStyle::Plain => {
                let colour = inner.stderr == StderrStyle::Human;
                let text = mask(human_line(level, rec, colour), &inner.secrets);
                inner.terminal.write_line(&text);
            }
        }
        if let Some(capture) = inner.capture.as_mut() {
            capture.push(line.clone());
        }
        if let Some(cb) = inner.on_record.as_mut() {
            cb(level, &line);
        }
    }

    /// Flush the file sink.
    pub fn flush(&self) {
        if let Some(file) = self.lock().file.as_mut() {
            let _ = file.flush();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoggerInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `text` with every secret replaced by `[MASKED]`.
fn mask(mut text: String, secrets: &[String]) -> String {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "[MASKED]");
        }
    }
    text
}

/// Readable rendering: time, level (coloured when `colour`), message. A message of several
/// lines is shown as lines, the continuation lines indented to the message column; other
/// control characters (which would move the cursor) are shown as `?`.
fn human_line(level: Level, rec: &Mapping, colour: bool) -> String {
    let dt = rec.get("dt").and_then(Value::as_str).unwrap_or("");
    let time = dt.get(11..19).unwrap_or(dt);
    let msg = match rec.get("msg") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => dump_flow(other),
        None => String::new(),
    };
    let name = format!("{:<9}", level.as_str());
    let label = if colour {
        let code = match level {
            Level::Error | Level::Exception => "\x1b[1;31m",
            Level::Warning => "\x1b[33m",
            Level::Info => "\x1b[1;37m",
            Level::Results => "\x1b[32m",
            Level::Target => "\x1b[36m",
            Level::Input => "\x1b[35m",
            Level::Debug | Level::Feedback | Level::Event => "\x1b[2m",
        };
        format!("{code}{name}\x1b[0m")
    } else {
        name
    };
    let indent = " ".repeat(time.len() + 1 + 9 + 1);
    let mut out = format!("{time} {label} ");
    let body = msg.strip_suffix('\n').unwrap_or(&msg);
    for (i, part) in body.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&indent);
        }
        let part = part.strip_suffix('\r').unwrap_or(part);
        out.extend(
            part.chars()
                .map(|c| if c.is_control() && c != '\t' { '?' } else { c }),
        );
    }
    out
}

/// Current UTC time as Python's `datetime.isoformat()` with `+00:00`.
pub fn now_iso() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_iso(now.as_secs(), now.subsec_micros())
}

/// Format a Unix time as `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`.
pub fn format_iso(secs: u64, micros: u32) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    if micros == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}+00:00")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{micros:06}+00:00")
    }
}

/// `YYYY-MM-DD HH:MM:SS.ffffff+00:00`, the validate "Start time" format.
pub fn now_spaced() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (y, m, d, hh, mm, ss) = civil(now.as_secs());
    format!(
        "{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}.{:06}+00:00",
        now.subsec_micros()
    )
}

/// Split Unix seconds into civil UTC date and time (Howard Hinnant's algorithm).
fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d, rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Serialise a mapping as one double-quoted YAML flow line.
pub fn dump_flow_mapping(map: &Mapping) -> String {
    let mut out = String::with_capacity(128);
    write_mapping(&mut out, map);
    out
}

/// Serialise any value in LAVA's one-line double-quoted flow style.
pub fn dump_flow(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_mapping(out: &mut String, map: &Mapping) {
    if map.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if is_simple_key(k) {
            write_value(out, k);
            out.push_str(": ");
        } else {
            out.push_str("? ");
            write_value(out, k);
            out.push_str(" : ");
        }
        write_value(out, v);
    }
    out.push('}');
}

/// The longest key libyaml writes as an implicit (`key: value`) flow key, in bytes of the
/// scalar (a tag's handle counts too); a YAML reader refuses implicit keys of more than
/// 1024 characters, so longer keys need the explicit form.
const MAX_SIMPLE_KEY_BYTES: usize = 128;

/// Whether libyaml's emitter (LAVA's `yaml.CDumper`) writes `key` as an implicit key;
/// otherwise it writes the explicit `? key : value`: a key longer than
/// [`MAX_SIMPLE_KEY_BYTES`], one spanning lines, or a non-empty sequence or mapping.
fn is_simple_key(key: &Value) -> bool {
    match key {
        Value::String(s) => {
            s.len() <= MAX_SIMPLE_KEY_BYTES
                && !s.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
        }
        // Written `! "text"`: the tag handle `!` counts.
        Value::Number(n) => n.to_string().len() < MAX_SIMPLE_KEY_BYTES,
        Value::Null | Value::Bool(_) => true,
        Value::Sequence(items) => items.is_empty(),
        Value::Mapping(map) => map.is_empty(),
        Value::Tagged(tagged) => is_simple_key(&tagged.value),
    }
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => write_yaml_double_quoted(out, s),
        Value::Null => out.push_str("! \"null\""),
        Value::Bool(b) => out.push_str(if *b { "! \"true\"" } else { "! \"false\"" }),
        Value::Number(n) => {
            out.push_str("! ");
            let text = match n.as_f64().filter(|_| n.is_f64()) {
                Some(f) => yaml_float(f),
                None => n.to_string(),
            };
            write_yaml_double_quoted(out, &text);
        }
        Value::Sequence(seq) => {
            if seq.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in seq.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Mapping(map) => write_mapping(out, map),
        Value::Tagged(t) => write_value(out, &t.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_lava_flow_lines() {
        let logger = JobLogger::capturing();
        logger.info("start: 1 tftp-deploy (timeout 00:10:00) [common]");
        let mut result = Mapping::new();
        result.insert("definition".into(), "0_smoke".into());
        result.insert("case".into(), "boot".into());
        result.insert("starttc".into(), Value::Number(41.into()));
        result.insert("measurement".into(), Value::Number(12.5.into()));
        logger.results(result);
        logger.feedback("[  3.1] usb", "host");
        let lines = logger.captured();
        assert!(lines[0].starts_with("{\"dt\": \""));
        assert!(lines[0].ends_with(
            "\"lvl\": \"info\", \"msg\": \"start: 1 tftp-deploy (timeout 00:10:00) [common]\"}"
        ));
        assert!(lines[1].ends_with(
            "\"lvl\": \"results\", \"msg\": {\"definition\": \"0_smoke\", \"case\": \"boot\", \"starttc\": ! \"41\", \"measurement\": ! \"12.5\"}}"
        ));
        assert!(lines[2].ends_with("\"msg\": \"[  3.1] usb\", \"ns\": \"host\"}"));
        assert_eq!(logger.line_count(), 3);
    }

    #[test]
    fn escapes_like_libyaml() {
        let v = Value::String("a\"b\\c\td\x1be\u{e9}\u{2603}\u{1F600}\u{85}".into());
        assert_eq!(dump_flow(&v), r#""a\"b\\c\td\ee\xE9\u2603\U0001F600\N""#);
        assert_eq!(dump_flow(&Value::Null), "! \"null\"");
        assert_eq!(dump_flow(&Value::Bool(true)), "! \"true\"");
        assert_eq!(dump_flow(&Value::Number(1.0.into())), "! \"1.0\"");
        assert_eq!(dump_flow(&Value::Number(1e17.into())), "! \"1.0e+17\"");
    }

    /// Found by `cargo xtask fuzz log`: a 1254-byte key written as an implicit key made a
    /// line no YAML reader accepts. The expected lines are LAVA's (`lava_common.log.dump`).
    #[test]
    fn long_multiline_and_collection_keys_are_explicit_like_libyaml() {
        let record = |key: Value| {
            let mut msg = Mapping::new();
            msg.insert(key, Value::Number(1.into()));
            let mut map = Mapping::new();
            map.insert("msg".into(), Value::Mapping(msg));
            dump_flow_mapping(&map)
        };
        let k128 = "k".repeat(128);
        assert_eq!(
            record(k128.clone().into()),
            format!("{{\"msg\": {{\"{k128}\": ! \"1\"}}}}")
        );
        let k129 = "k".repeat(129);
        assert_eq!(
            record(k129.clone().into()),
            format!("{{\"msg\": {{? \"{k129}\" : ! \"1\"}}}}")
        );
        // Bytes, not characters: 65 two-byte characters are 130 bytes.
        assert!(record("\u{e9}".repeat(64).into()).contains("{\"\\xE9"));
        assert!(record("\u{e9}".repeat(65).into()).contains("{? \"\\xE9"));
        assert_eq!(
            record("x\u{85}y".into()),
            "{\"msg\": {? \"x\\Ny\" : ! \"1\"}}"
        );
        assert_eq!(record("x\ry".into()), "{\"msg\": {? \"x\\ry\" : ! \"1\"}}");
        assert_eq!(
            record(Value::Number(5.into())),
            "{\"msg\": {! \"5\": ! \"1\"}}"
        );
        let seq = Value::Sequence(vec!["a".into()]);
        assert_eq!(record(seq), "{\"msg\": {? [\"a\"] : ! \"1\"}}");
        // Every form reads back.
        for key in [k129, "x\ny".to_string(), "\u{e9}".repeat(700)] {
            let line = record(key.clone().into());
            let read: Mapping = serde_yaml::from_str(&line).unwrap();
            let msg = read.get("msg").and_then(Value::as_mapping).unwrap();
            assert!(msg.contains_key(key.as_str()), "{line}");
        }
    }

    #[test]
    fn secrets_are_masked_and_long_lines_replaced() {
        let logger = JobLogger::capturing();
        logger.add_secret("hunter2");
        logger.info("password is hunter2");
        logger.info("x".repeat(MAX_RECORD_LEN + 10));
        let lines = logger.captured();
        assert!(lines[0].contains("password is [MASKED]"));
        assert!(lines[1].contains("\"<line way too long ...>\""));
    }

    /// An in-memory terminal for the stderr rendering.
    #[derive(Clone, Default)]
    struct Screen(Arc<Mutex<Vec<u8>>>);

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Screen {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn human_styles_show_message_lines_and_plain_has_no_escapes() {
        for style in [StderrStyle::Human, StderrStyle::Plain] {
            let screen = Screen::default();
            let logger = JobLogger::with_stderr_writer(style, screen.clone());
            let dir = tempfile::tempdir().unwrap();
            logger.open_file(&dir.path().join("logs.yaml")).unwrap();
            logger.add_secret("hunter2");
            logger.error("first line\r\nsecond hunter2\n\tthird\x07\n");
            let text = screen.text();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 3, "{style:?}: {text:?}");
            assert!(lines[0].ends_with(" first line"), "{text:?}");
            // Continuation lines start at the message column of the first line.
            let column =
                lines[0].find("first").unwrap() - if style == StderrStyle::Human { 11 } else { 0 };
            assert_eq!(lines[1], format!("{}second [MASKED]", " ".repeat(column)));
            assert_eq!(lines[2], format!("{}\tthird?", " ".repeat(column)));
            assert_eq!(
                text.contains('\x1b'),
                style == StderrStyle::Human,
                "{text:?}"
            );
            // logs.yaml keeps LAVA's one escaped line, masked.
            let file = std::fs::read_to_string(dir.path().join("logs.yaml")).unwrap();
            assert!(
                file.ends_with("\"msg\": \"first line\\r\\nsecond [MASKED]\\n\\tthird\\a\\n\"}\n"),
                "{file}"
            );
        }
    }

    #[test]
    fn iso_time() {
        assert_eq!(format_iso(0, 0), "1970-01-01T00:00:00+00:00");
        assert_eq!(
            format_iso(1_772_359_200, 123_456),
            "2026-03-01T10:00:00.123456+00:00"
        );
        assert_eq!(
            format_iso(951_782_400, 1),
            "2000-02-29T00:00:00.000001+00:00"
        );
    }
}
