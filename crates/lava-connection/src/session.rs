//! [`ShellSession`]: a prompt-matching conversation with a device over any [`Transport`].

use std::sync::Arc;
use std::time::Duration;

use lava_python::str_repr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::error::ConnectionError;
use crate::lines::LineSplitter;
use crate::log::ConsoleLog;
use crate::matcher::{DEFAULT_MAX_BUFFER, DEFAULT_MAX_MATCH_SPAN, Match, Patterns};
use crate::received::ReceivedText;
use crate::terminal::Terminal;
use crate::transport::Transport;
use crate::transport::pty::PtyCommand;

/// LAVA's default line separator (`LINE_SEPARATOR`); UEFI menus use `"\r\n"`.
pub const LINE_SEPARATOR: &str = "\n";

/// How long [`ShellSession::sendline`] lets a device that asks where the cursor is after
/// its prompt take to ask (see [`crate::terminal`]); the question normally follows the
/// prompt within a millisecond.
pub const QUESTION_GRACE: Duration = Duration::from_millis(10);

/// How a [`ShellSession`] behaves. The defaults are LAVA's.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Regular expressions of the shell prompt (`prompts` of the boot action, else the
    /// device constant `default-shell-prompt`).
    pub prompts: Vec<String>,
    /// Appended by [`ShellSession::sendline`].
    pub linesep: String,
    /// Pause after each character sent (device `character_delays.<section>`, in ms).
    pub character_delay: Duration,
    /// Bytes asked for per read.
    pub read_size: usize,
    /// Unconsumed text kept for [`Match::before`] (older text is dropped).
    pub max_buffer: usize,
    /// Longest match of an unbounded pattern (`.*`, `\S+`), like pexpect's
    /// `searchwindowsize`: see [`SessionConfig::with_spawn_maxread`].
    pub max_match_span: usize,
    /// Bound on one send (a device that stops reading must not hang the job).
    pub write_timeout: Duration,
    /// Time [`ShellSession::disconnect`] gives the transport to end before killing it.
    pub close_grace: Duration,
    /// Answer the device's cursor position questions as a terminal does (a screen of
    /// [`crate::terminal::DEFAULT_SCREEN`]): see [`crate::terminal`].
    pub answer_cursor_queries: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            prompts: Vec::new(),
            linesep: LINE_SEPARATOR.to_string(),
            character_delay: Duration::ZERO,
            read_size: 64 * 1024,
            max_buffer: DEFAULT_MAX_BUFFER,
            max_match_span: DEFAULT_MAX_MATCH_SPAN,
            write_timeout: Duration::from_secs(30),
            close_grace: Duration::from_secs(1),
            answer_cursor_queries: true,
        }
    }
}

impl SessionConfig {
    /// Sizes the search window from the device constant `spawn_maxread` as LAVA does
    /// (`searchwindowsize = 2 * spawn_maxread`).
    pub fn with_spawn_maxread(mut self, spawn_maxread: usize) -> Self {
        self.max_match_span = 2 * spawn_maxread.max(1);
        self
    }

    /// Sets the prompts awaited by `wait_for_prompt` (LAVA's `prompt_str`), as regular expressions.
    pub fn with_prompts<S: AsRef<str>>(mut self, prompts: &[S]) -> Self {
        self.prompts = prompts.iter().map(|p| p.as_ref().to_string()).collect();
        self
    }

    /// Character delay in milliseconds, as written in `character_delays`.
    pub fn with_character_delay_ms(mut self, ms: u64) -> Self {
        self.character_delay = Duration::from_millis(ms);
        self
    }
}

/// A shell (or bootloader, or login prompt) on a device, reached through a transport.
///
/// Everything received is logged as `target` lines and everything sent as `input` lines
/// through the [`ConsoleLog`]. Reading happens only inside the waits, so each wait sees
/// all the output since the previous match, and nothing earlier.
pub struct ShellSession {
    transport: Box<dyn Transport>,
    log: Arc<dyn ConsoleLog>,
    received: ReceivedText,
    sent: LineSplitter,
    prompts: Option<Patterns>,
    linesep: String,
    character_delay: Duration,
    write_timeout: Duration,
    close_grace: Duration,
    read_buf: Vec<u8>,
    /// Follows the device's cursor to answer its questions; `None`: they go unanswered.
    terminal: Option<Terminal>,
    eof: bool,
    connected: bool,
}

impl std::fmt::Debug for ShellSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellSession")
            .field("transport", &self.transport.describe())
            .field("prompts", &self.prompts.as_ref().map(Patterns::sources))
            .field("linesep", &self.linesep)
            .field("connected", &self.connected)
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl ShellSession {
    /// A session over an open transport.
    pub fn new(
        transport: impl Transport + 'static,
        log: Arc<dyn ConsoleLog>,
        config: SessionConfig,
    ) -> Result<Self, ConnectionError> {
        let prompts = if config.prompts.is_empty() {
            None
        } else {
            Some(Patterns::new(&config.prompts)?)
        };
        Ok(ShellSession {
            transport: Box::new(transport),
            log,
            received: ReceivedText::new(config.max_buffer, config.max_match_span),
            sent: LineSplitter::new(),
            prompts,
            linesep: config.linesep,
            character_delay: config.character_delay,
            write_timeout: config.write_timeout,
            close_grace: config.close_grace,
            read_buf: vec![0; config.read_size.max(1)],
            terminal: config.answer_cursor_queries.then(Terminal::default),
            eof: false,
            connected: true,
        })
    }

    /// Starts `command` on a pty and opens a session on it. Must be called within a
    /// tokio runtime.
    pub fn spawn(
        command: PtyCommand,
        log: Arc<dyn ConsoleLog>,
        config: SessionConfig,
    ) -> Result<Self, ConnectionError> {
        let transport = command.spawn()?;
        Self::new(transport, log, config)
    }

    /// What the session is connected to.
    pub fn describe(&self) -> &str {
        self.transport.describe()
    }

    /// The local process behind the connection, if any (see [`Transport::process_id`]).
    pub fn process_id(&self) -> Option<u32> {
        self.transport.process_id()
    }

    /// True until [`ShellSession::disconnect`] or [`ShellSession::finalise`].
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// True once the device side reached end of file.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// Replaces the prompt list.
    pub fn set_prompts<S: AsRef<str>>(&mut self, prompts: &[S]) -> Result<(), ConnectionError> {
        let patterns = Patterns::new(prompts)?;
        self.log.debug(&format!(
            "Setting prompt string to {}",
            python_list(patterns.sources())
        ));
        self.prompts = Some(patterns);
        Ok(())
    }

    /// The current prompt list.
    pub fn prompts(&self) -> Option<&Patterns> {
        self.prompts.as_ref()
    }

    /// Sets the line ending sent after each line (LAVA's `linesep`, `
    /// ` unless the device says otherwise).
    pub fn set_linesep(&mut self, linesep: &str) {
        self.linesep = linesep.to_string();
    }

    /// The line ending sent after each line.
    pub fn linesep(&self) -> &str {
        &self.linesep
    }

    /// Sets the pause between characters sent (the device's `character_delays`).
    pub fn set_character_delay(&mut self, delay: Duration) {
        self.character_delay = delay;
    }

    /// The pause between characters sent.
    pub fn character_delay(&self) -> Duration {
        self.character_delay
    }

    /// Asks the process behind the transport to end ([`Transport::terminate`]); what it
    /// prints meanwhile is still read, e.g. by [`ShellSession::listen_feedback`].
    pub fn terminate_process(&mut self) {
        self.transport.terminate();
    }

    /// The transport, e.g. to ask a [`crate::PtyTransport`] for its pid.
    pub fn transport_mut(&mut self) -> &mut dyn Transport {
        &mut *self.transport
    }

    /// Text received and not consumed by a match yet.
    pub fn unconsumed(&self) -> &str {
        self.received.unconsumed()
    }

    /// Sends `text` as is, pausing the character delay after each character.
    pub async fn send(&mut self, text: &str) -> Result<(), ConnectionError> {
        self.ensure_connected("send")?;
        self.write_text(text).await
    }

    /// Sends `line` followed by the line separator (LAVA's `sendline`).
    ///
    /// On a device that asks where the cursor is after its prompt, first lets the
    /// question of the current prompt arrive (at most [`QUESTION_GRACE`], only while the
    /// device sits at a prompt) and answers it, so that the answer precedes the line.
    pub async fn sendline(&mut self, line: &str) -> Result<(), ConnectionError> {
        self.ensure_connected("sendline")?;
        self.let_question_arrive().await?;
        if !self.character_delay.is_zero() {
            self.log.debug(&format!(
                "Sending with {} millisecond of delay",
                self.character_delay.as_millis()
            ));
        }
        self.log.debug(&format!("Sending line: {}", str_repr(line)));
        self.write_text(line).await?;
        let linesep = std::mem::take(&mut self.linesep);
        let result = self.write_text(&linesep).await;
        self.linesep = linesep;
        result
    }

    /// Sends Ctrl-`key` (e.g. `'c'` for an interrupt, `']'` for telnet's escape).
    pub async fn send_control(&mut self, key: char) -> Result<(), ConnectionError> {
        self.ensure_connected("sendcontrol")?;
        self.log.debug(&format!(
            "Sending character: {}",
            str_repr(&key.to_string())
        ));
        let byte = (key.to_ascii_lowercase() as u32 & 0x1f) as u8;
        let byte = if key == '?' { 0x7f } else { byte };
        self.write_bytes(&[byte]).await
    }

    /// Waits until one of `patterns` appears in the output, or `deadline`.
    ///
    /// Returns the first match in the output (earliest start; on a tie the pattern listed
    /// first). The match consumes all output up to its end.
    pub async fn wait_for(
        &mut self,
        patterns: &Patterns,
        deadline: Instant,
    ) -> Result<Match, ConnectionError> {
        self.wait_described(patterns, deadline, || patterns.describe())
            .await
    }

    /// [`ShellSession::wait_for`] with patterns compiled on the spot.
    pub async fn expect<S: AsRef<str>>(
        &mut self,
        patterns: &[S],
        deadline: Instant,
    ) -> Result<Match, ConnectionError> {
        let patterns = Patterns::new(patterns)?;
        self.wait_for(&patterns, deadline).await
    }

    /// Waits for one of the configured prompts.
    pub async fn wait_for_prompt(&mut self, deadline: Instant) -> Result<Match, ConnectionError> {
        let Some(prompts) = self.prompts.take() else {
            return Err(ConnectionError::NoPrompt {
                connection: self.describe().to_string(),
            });
        };
        let result = self
            .wait_described(&prompts, deadline, || {
                format!("prompt {}", prompts.describe())
            })
            .await;
        self.prompts = Some(prompts);
        result
    }

    /// Reads until `deadline` and logs the lines as `feedback` (LAVA's `listen_feedback`
    /// on another namespace's connection). The text read is consumed. Returns the number
    /// of bytes read; end of file is not an error here. A deadline, like every wait of
    /// the session: callers compute it from job data with saturating arithmetic
    /// (`lava_pipeline::timeout::deadline_in`).
    pub async fn listen_feedback(
        &mut self,
        deadline: Instant,
        namespace: Option<&str>,
    ) -> Result<usize, ConnectionError> {
        let mut total = 0;
        while !self.eof {
            let read = tokio::time::timeout_at(deadline, self.transport.read(&mut self.read_buf));
            let n = match read.await {
                Err(_elapsed) => break,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(self.read_error(e)),
            };
            let log = &self.log;
            if n == 0 {
                self.eof = true;
                self.received
                    .finish(|line| log.feedback_line(line, namespace));
                break;
            }
            total += n;
            self.received.push_bytes(&self.read_buf[..n], |line| {
                log.feedback_line(line, namespace)
            });
        }
        self.received.clear();
        Ok(total)
    }

    /// Ends the session gracefully: flushes held partial lines to the log and closes the
    /// transport (processes get the grace period, then are killed).
    pub async fn disconnect(&mut self, reason: &str) -> Result<(), ConnectionError> {
        if !self.connected {
            self.log.debug("Already disconnected");
            return Ok(());
        }
        self.log.debug(&format!(
            "Disconnecting from {}: {reason}",
            self.transport.describe()
        ));
        self.connected = false;
        self.flush_logs();
        self.transport.close(self.close_grace).await
    }

    /// Ends the session now: kills the transport and flushes the log.
    pub fn finalise(&mut self) {
        self.connected = false;
        self.transport.kill();
        self.flush_logs();
    }

    fn ensure_connected(&self, operation: &'static str) -> Result<(), ConnectionError> {
        if self.connected {
            Ok(())
        } else {
            Err(ConnectionError::Disconnected { operation })
        }
    }

    async fn wait_described(
        &mut self,
        patterns: &Patterns,
        deadline: Instant,
        describe: impl Fn() -> String,
    ) -> Result<Match, ConnectionError> {
        let started = Instant::now();
        loop {
            if let Some(found) = self.received.find(patterns) {
                return Ok(found);
            }
            if self.eof || !self.connected {
                return Err(ConnectionError::ConnectionClosed {
                    awaited: describe(),
                });
            }
            if !self.receive_before(deadline).await? {
                return Err(ConnectionError::Timeout {
                    awaited: describe(),
                    waited: started.elapsed(),
                });
            }
        }
    }

    /// One read of the device's output before `deadline` (`false`: none came): logged as
    /// `target` lines, kept for matching, its questions answered.
    async fn receive_before(&mut self, deadline: Instant) -> Result<bool, ConnectionError> {
        let read = tokio::time::timeout_at(deadline, self.transport.read(&mut self.read_buf));
        let n = match read.await {
            Err(_elapsed) => return Ok(false),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(self.read_error(e)),
        };
        let log = &self.log;
        if n == 0 {
            // End of file: nothing more will complete the held line.
            self.eof = true;
            self.received.finish(|line| log.target_line(line));
            return Ok(true);
        }
        self.received
            .push_bytes(&self.read_buf[..n], |line| log.target_line(line));
        self.answer_questions(n).await?;
        Ok(true)
    }

    /// Follows the cursor through the `n` bytes just read and answers the questions
    /// among them.
    async fn answer_questions(&mut self, n: usize) -> Result<(), ConnectionError> {
        let Some(terminal) = self.terminal.as_mut() else {
            return Ok(());
        };
        let first = terminal.queries() == 0;
        // Empty (no allocation) unless a question came.
        let mut replies = Vec::new();
        terminal.feed(&self.read_buf[..n], &mut replies);
        if replies.is_empty() {
            return Ok(());
        }
        if first {
            self.log.debug(
                "The device asks where the cursor is (ESC [ 6 n): answering as a terminal does",
            );
        }
        self.write_bytes(&replies).await
    }

    /// Before a line is sent: what the device has already printed is read (and a question
    /// among it answered); if a question may still be on its way (the device asked at
    /// earlier prompts and sits at one now: [`Terminal::question_may_follow`]), it gets
    /// [`QUESTION_GRACE`] to arrive. The answer then goes before the line.
    async fn let_question_arrive(&mut self) -> Result<(), ConnectionError> {
        let started = Instant::now();
        while let Some(terminal) = &self.terminal {
            if terminal.asked_last() || self.eof {
                break;
            }
            let deadline = if terminal.question_may_follow() {
                started + QUESTION_GRACE
            } else {
                started
            };
            if !self.receive_before(deadline).await? {
                break;
            }
        }
        Ok(())
    }

    fn read_error(&self, e: std::io::Error) -> ConnectionError {
        ConnectionError::io(format!("Reading from {}", self.transport.describe()), e)
    }

    async fn write_text(&mut self, text: &str) -> Result<(), ConnectionError> {
        if text.is_empty() {
            return Ok(());
        }
        if self.character_delay.is_zero() {
            self.write_bytes(text.as_bytes()).await?;
        } else {
            let mut utf8 = [0u8; 4];
            for c in text.chars() {
                self.write_bytes(c.encode_utf8(&mut utf8).as_bytes())
                    .await?;
                tokio::time::sleep(self.character_delay).await;
            }
        }
        let log = &self.log;
        self.sent.push(text, |line| log.input_line(line));
        Ok(())
    }

    async fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), ConnectionError> {
        let write = async {
            self.transport.write_all(bytes).await?;
            self.transport.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if is_closed(&e) => Err(ConnectionError::ConnectionClosed {
                awaited: "the device to accept input".into(),
            }),
            Ok(Err(e)) => Err(ConnectionError::io(
                format!("Writing to {}", self.transport.describe()),
                e,
            )),
            Err(_elapsed) => Err(ConnectionError::Timeout {
                awaited: format!("{} to accept input", self.transport.describe()),
                waited: self.write_timeout,
            }),
        }
    }

    fn flush_logs(&mut self) {
        let log = &self.log;
        self.sent.finish(|line| log.input_line(line));
        self.received.finish(|line| log.target_line(line));
    }
}

impl Drop for ShellSession {
    fn drop(&mut self) {
        // The transport's own drop kills what runs behind it; keep the log complete.
        self.flush_logs();
    }
}

fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | UnexpectedEof
    ) || e.raw_os_error() == Some(libc::EIO)
}

fn python_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| str_repr(s)).collect();
    format!("[{}]", items.join(", "))
}
