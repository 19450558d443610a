//! Byte streams to a device.
//!
//! A [`Transport`] is an async byte stream ([`AsyncRead`] + [`AsyncWrite`]) that can also
//! be ended: [`Transport::kill`] at once (kill the processes behind it), or
//! [`Transport::close`] gracefully within a grace period. The trait is dyn-compatible so a
//! session holds a `Box<dyn Transport>` whatever is behind it: a command on a
//! pseudo-terminal ([`pty`], how LAVA's `connect` commands run), a serial port
//! ([`serial`]), telnet over TCP ([`telnet`]), or a shell over SSH ([`crate::ssh`]).

pub mod pty;
pub mod serial;
pub mod telnet;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::error::ConnectionError;

/// A boxed future, as returned by [`Transport::close`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An async byte stream to a device that its owner can end.
///
/// Reads return `Ok(0)` at end of file (the device side went away). Dropping a transport
/// must have the effect of [`Transport::kill`]: no process or socket outlives its owner.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin {
    /// What this transport connects to, for log and error messages.
    fn describe(&self) -> &str;

    /// The id of the local process behind the connection, if there is one (a pty
    /// command's pid, which is also its process group and session id).
    fn process_id(&self) -> Option<u32> {
        None
    }

    /// Ends the connection now, killing whatever runs behind it. Idempotent and never
    /// blocks for long.
    fn kill(&mut self);

    /// Asks the local process behind the connection to end (SIGTERM) without closing
    /// the connection: what it prints while ending can still be read, then reads reach
    /// end of file. No effect where no local process runs behind the connection.
    fn terminate(&mut self) {}

    /// Ends the connection gracefully: flushes and shuts down writing, gives the other
    /// side up to `grace` to finish, then kills.
    fn close(&mut self, grace: Duration) -> BoxFuture<'_, Result<(), ConnectionError>> {
        Box::pin(async move {
            let _ = tokio::time::timeout(grace, self.shutdown()).await;
            self.kill();
            Ok(())
        })
    }
}

impl Transport for Box<dyn Transport> {
    fn describe(&self) -> &str {
        (**self).describe()
    }
    fn process_id(&self) -> Option<u32> {
        (**self).process_id()
    }
    fn kill(&mut self) {
        (**self).kill()
    }
    fn terminate(&mut self) {
        (**self).terminate()
    }
    fn close(&mut self, grace: Duration) -> BoxFuture<'_, Result<(), ConnectionError>> {
        (**self).close(grace)
    }
}

/// Splits a device-configuration command line into an argv the way LAVA does
/// (Python's `shlex.split`: POSIX shell words, quotes removed, no expansion of any kind).
///
/// ```
/// let argv = lava_connection::split_command("telnet localhost 7001").unwrap();
/// assert_eq!(argv, ["telnet", "localhost", "7001"]);
/// let argv = lava_connection::split_command(r#"sh -c 'echo "a b"'"#).unwrap();
/// assert_eq!(argv, ["sh", "-c", r#"echo "a b""#]);
/// ```
pub fn split_command(command: &str) -> Result<Vec<String>, ConnectionError> {
    let argv = lava_python::shlex_split(command).map_err(|e| ConnectionError::InvalidCommand {
        command: command.to_string(),
        reason: e.python_message().to_string(),
    })?;
    if argv.is_empty() {
        return Err(ConnectionError::InvalidCommand {
            command: command.to_string(),
            reason: "the command is empty".to_string(),
        });
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_like_shlex() {
        assert_eq!(
            split_command("  qemu-system-x86_64 -append 'console=ttyS0 root=/dev/ram0'  ").unwrap(),
            [
                "qemu-system-x86_64",
                "-append",
                "console=ttyS0 root=/dev/ram0"
            ]
        );
        assert_eq!(split_command(r"a\ b $HOME").unwrap(), ["a b", "$HOME"]);
        let err = split_command("telnet 'unclosed").unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Configuration);
        assert!(split_command("   ").is_err());
    }
}
