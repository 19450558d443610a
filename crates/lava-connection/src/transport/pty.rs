//! A command running on a pseudo-terminal: how LAVA runs a device's `connect` command
//! (`telnet localhost 7001`, `qemu-system-x86_64 … -nographic`, `/bin/sh`).
//!
//! The command is an argv vector, never a string for a shell to interpret. The child
//! starts a new session (so it is its own process group leader) with the pty slave as
//! controlling terminal and stdin/stdout/stderr. Killing the transport sends SIGKILL to
//! the whole process group and to every other process of the terminal's session (an
//! interactive shell's background jobs live in groups of their own), then reaps the
//! child; dropping it does the same.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::signal::{Signal, killpg};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{BoxFuture, Transport};
use crate::error::ConnectionError;

/// How long a drop waits for a killed child before handing the reaping to a thread.
const REAP_WAIT: Duration = Duration::from_millis(200);

/// A command to start on a new pseudo-terminal.
#[derive(Debug, Clone)]
pub struct PtyCommand {
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    rows: u16,
    cols: u16,
}

impl PtyCommand {
    /// A command from its argv (`argv[0]` is looked up in `PATH`).
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        PtyCommand {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            current_dir: None,
            // pexpect's default terminal size.
            rows: 24,
            cols: 80,
        }
    }

    /// A command from a device-configuration command line, split like `shlex.split`.
    pub fn from_command_line(command: &str) -> Result<Self, ConnectionError> {
        Ok(Self::new(super::split_command(command)?))
    }

    /// Sets an environment variable for the child (the rest is inherited).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the child in `dir`.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// The terminal size the child sees.
    pub fn window_size(mut self, rows: u16, cols: u16) -> Self {
        self.rows = rows;
        self.cols = cols;
        self
    }

    /// The command line, for messages.
    pub fn describe(&self) -> String {
        self.argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Starts the command. Must be called within a tokio runtime.
    pub fn spawn(self) -> Result<PtyTransport, ConnectionError> {
        let description = self.describe();
        let spawn_error = |source: io::Error| ConnectionError::Spawn {
            command: description.clone(),
            source,
        };
        let Some((program, args)) = self.argv.split_first() else {
            return Err(ConnectionError::InvalidCommand {
                command: String::new(),
                reason: "the command is empty".into(),
            });
        };
        let (master, slave) = open_pty(self.rows, self.cols).map_err(spawn_error)?;

        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::from(slave.try_clone().map_err(spawn_error)?))
            .stdout(Stdio::from(slave.try_clone().map_err(spawn_error)?))
            .stderr(Stdio::from(slave));
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        // SAFETY: the closure only calls async-signal-safe functions (setsid, ioctl).
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                // Make the pty (now stdin) the controlling terminal of the new session.
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(spawn_error)?;
        // `command` still holds the slave descriptors: drop them so EOF can be seen.
        drop(command);

        set_nonblocking(&master).map_err(|e| ConnectionError::io("pty master", e))?;
        // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same
        // for the AsyncFd's whole life.
        let master = unsafe { AsyncFd::register(master) }
            .map_err(|e| ConnectionError::io("pty master", e.into()))?;
        let pid = Pid::from_raw(child.id() as i32);
        tracing::debug!(command = %description, pid = pid.as_raw(), "spawned on a pty");
        Ok(PtyTransport {
            master,
            child: Some(child),
            pid,
            description,
            exit_status: None,
            group_killed: false,
        })
    }
}

/// Opens a pty pair, both ends close-on-exec so no other child inherits them.
fn open_pty(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let slave_path = ptsname_r(&master)?;
    let slave = nix::fcntl::open(
        slave_path.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which lives on our stack.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ as _, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((OwnedFd::from(master), slave))
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// A running command on a pty. Reading gives what the command prints (with the terminal's
/// echo of what was written); writing types into it.
#[derive(Debug)]
pub struct PtyTransport {
    master: AsyncFd<OwnedFd>,
    child: Option<Child>,
    pid: Pid,
    description: String,
    exit_status: Option<ExitStatus>,
    group_killed: bool,
}

impl PtyTransport {
    /// The child's process id, which is also its process group and session id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// The child's exit status if it has exited (and was reaped).
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit_status.is_none()
            && let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.exit_status = Some(status);
            self.child = None;
        }
        self.exit_status
    }

    fn signal_group(&self, signal: Signal) {
        if !self.group_killed {
            // ESRCH (group already gone) is fine.
            let _ = killpg(self.pid, signal);
        }
    }

    /// Kills the group and reaps the child, waiting at most [`REAP_WAIT`] here; a child
    /// that takes longer (e.g. stuck in the kernel) is reaped by a helper thread.
    fn kill_and_reap(&mut self) {
        if !self.group_killed {
            // Even if the leader exited, its descendants may still be in the group; and
            // an interactive shell puts background jobs in groups of their own, so every
            // process of the terminal's session goes too.
            let _ = killpg(self.pid, Signal::SIGKILL);
            for pid in session_members(self.pid) {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            }
            self.group_killed = true;
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        let started = std::time::Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.exit_status = Some(status);
                    return;
                }
                Ok(None) if started.elapsed() < REAP_WAIT => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(None) => {
                    let pid = self.pid.as_raw();
                    let _ = std::thread::Builder::new()
                        .name(format!("reap-{pid}"))
                        .spawn(move || {
                            let _ = child.wait();
                        });
                    return;
                }
                Err(_) => return,
            }
        }
    }
}

/// The processes whose session id is `sid` (Linux `/proc`; empty elsewhere).
fn session_members(sid: Pid) -> Vec<Pid> {
    let Ok(sid) = u32::try_from(sid.as_raw()) else {
        return Vec::new();
    };
    lava_procfs::processes()
        .into_iter()
        .filter(|p| p.session == sid)
        .filter_map(|p| i32::try_from(p.pid).ok().map(Pid::from_raw))
        .collect()
}

impl AsyncRead for PtyTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.master.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_fd(), unfilled).map_err(io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Linux reports EIO once every slave descriptor is closed: end of file.
                Ok(Err(e)) if e.raw_os_error() == Some(Errno::EIO as i32) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.master.poll_write_ready(cx))?;
            match guard.try_io(|fd| {
                nix::unistd::write(fd.get_ref().as_fd(), data).map_err(io::Error::from)
            }) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Transport for PtyTransport {
    fn describe(&self) -> &str {
        &self.description
    }

    fn process_id(&self) -> Option<u32> {
        Some(self.pid())
    }

    fn kill(&mut self) {
        self.kill_and_reap();
    }

    /// SIGTERM (and SIGCONT, should it be stopped) to the group; the pty stays open.
    fn terminate(&mut self) {
        self.signal_group(Signal::SIGCONT);
        self.signal_group(Signal::SIGTERM);
    }

    /// SIGHUP and SIGTERM to the group (what closing a terminal does), up to `grace` for
    /// the child to exit, then SIGKILL to the group.
    fn close(&mut self, grace: Duration) -> BoxFuture<'_, Result<(), ConnectionError>> {
        Box::pin(async move {
            self.signal_group(Signal::SIGHUP);
            self.signal_group(Signal::SIGCONT);
            self.signal_group(Signal::SIGTERM);
            let deadline = tokio::time::Instant::now() + grace;
            while self.try_exit_status().is_none() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            self.kill_and_reap();
            Ok(())
        })
    }
}

impl Drop for PtyTransport {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}
