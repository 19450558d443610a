//! Byte streams to a device and the prompt-matching shell session over them.
//!
//! This crate's one job is to talk to a device's console the way LAVA does: start the
//! device's `connect` command on a pseudo-terminal ([`PtyCommand`] → [`PtyTransport`]),
//! or open a serial port ([`SerialTransport`]), a telnet socket ([`TelnetTransport`]) or
//! a shell over SSH ([`SshClient`] → [`SshTransport`], see [`ssh`]);
//! then drive a [`ShellSession`] over that [`Transport`]: [`ShellSession::sendline`]
//! with the device's character delay, [`ShellSession::wait_for`] a list of regular
//! expressions (pexpect's `expect`) or [`ShellSession::wait_for_prompt`], every wait
//! bounded by a deadline. Everything received is logged as complete `target` lines and
//! everything sent as `input` lines through a [`ConsoleLog`] (the job logger plugs in
//! there; [`MemoryLog`] keeps records for tests). Like a terminal, the session answers
//! the device's cursor position questions ([`Terminal`]; BusyBox's shell asks after every
//! prompt). Errors are [`ConnectionError`]s whose [`ErrorKind`] names the LAVA error
//! class.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use lava_connection::{MemoryLog, PtyCommand, SessionConfig, ShellSession};
//!
//! # async fn run() -> Result<(), lava_connection::ConnectionError> {
//! let log = Arc::new(MemoryLog::new());
//! let command = PtyCommand::from_command_line("/bin/sh")?.env("PS1", "lava-test: # ");
//! let config = SessionConfig::default()
//!     .with_prompts(&["lava-test: # "])
//!     .with_character_delay_ms(0);
//! let mut shell = ShellSession::spawn(command, log.clone(), config)?;
//! let deadline = || tokio::time::Instant::now() + Duration::from_secs(10);
//! shell.wait_for_prompt(deadline()).await?;
//! shell.sendline("uname -s").await?;
//! let found = shell.expect(&[r"Linux", r"Darwin"], deadline()).await?;
//! assert_eq!(found.index, 0);
//! shell.disconnect("done").await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod decode;
mod error;
pub mod lines;
mod log;
pub mod matcher;
mod received;
mod session;
pub mod ssh;
pub mod terminal;
pub mod transport;

pub use decode::Utf8Decoder;
pub use error::{ConnectionError, ErrorKind};
pub use lines::{LineSplitter, escape_control_chars};
pub use log::{ConsoleLog, LogLevel, LogRecord, MemoryLog, TracingLog};
pub use matcher::{Match, MatchBuffer, Patterns};
pub use received::ReceivedText;
pub use session::{LINE_SEPARATOR, QUESTION_GRACE, SessionConfig, ShellSession};
pub use ssh::{
    ExecOutput, HostKeyPolicy, PtyRequest, SshClient, SshError, SshParams, SshTransport,
};
pub use terminal::Terminal;
pub use transport::pty::{PtyCommand, PtyTransport};
pub use transport::serial::SerialTransport;
pub use transport::telnet::{TelnetParser, TelnetTransport};
pub use transport::{BoxFuture, Transport, split_command};
