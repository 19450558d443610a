//! A dispatcher process (ours or LAVA's) started in its own process group and owned: stopped
//! group-wide and reaped however its owner ends. `marker` is a string in the command line of
//! every process the dispatcher starts for the job (its scratch directory): QEMU run on a pty
//! may sit in a session of its own, out of the group's reach, and is found by it.
//!
//! Used by `cargo xtask bench job` and, through `#[path]`, by lava-dispatch's
//! `lava_reference` test: one copy of the stop and straggler rules for both.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

/// After SIGTERM, how long a dispatcher gets to run its finalize before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(30);

pub struct OwnedDispatcher {
    child: Child,
    marker: String,
    reaped: bool,
}

impl OwnedDispatcher {
    /// Starts `command` as the leader of a new process group.
    pub fn spawn(command: &mut Command, marker: String) -> io::Result<Self> {
        let child = command.process_group(0).spawn()?;
        Ok(OwnedDispatcher {
            child,
            marker,
            reaped: false,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once the dispatcher has exited (then whatever it left running with
    /// the marker is killed), `None` while it runs.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        if status.is_some() {
            self.reaped = true;
            self.kill_stragglers();
        }
        Ok(status)
    }

    /// SIGTERM to the group (the dispatcher runs its finalize), SIGKILL after the grace.
    pub fn stop(&mut self) {
        if self.reaped {
            return;
        }
        if let Some(group) = Pid::from_raw(self.child.id() as i32) {
            let _ = kill_process_group(group, Signal::TERM);
            let deadline = Instant::now() + TERM_GRACE;
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = kill_process_group(group, Signal::KILL);
        }
        let _ = self.child.wait();
        self.reaped = true;
        self.kill_stragglers();
    }

    /// Kill whatever still runs with the marker in its command line.
    fn kill_stragglers(&self) {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
                .and_then(Pid::from_raw)
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&self.marker) {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
    }
}

impl Drop for OwnedDispatcher {
    fn drop(&mut self) {
        self.stop();
    }
}
