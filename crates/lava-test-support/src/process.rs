//! Processes the tests start or look for.
//!
//! [`OwnedDispatcher`]: a dispatcher process (ours or LAVA's) started in its own process
//! group and owned: stopped group-wide (SIGTERM, SIGKILL after [`TERM_GRACE`]) and reaped
//! however its owner ends. `marker` is a string in the command line of every process the
//! dispatcher starts for the job (its scratch directory): QEMU run on a pty may sit in a
//! session of its own, out of the group's reach, and is found by it. Used by
//! `cargo xtask bench job` and lava-dispatch's `lava_reference` test.
//!
//! [`processes_with`] finds processes by their command line (read by lava-procfs).

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

/// After SIGTERM, how long a dispatcher gets to run its finalize before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(30);

/// A dispatcher started as the leader of its own process group; see the module doc.
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

    /// The dispatcher's process id (also its process group id).
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
        for (pid, _) in command_lines().filter(|(_, line)| line.contains(&self.marker)) {
            if let Some(pid) = Pid::from_raw(pid as i32) {
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

/// The processes whose command line contains `marker`, as "pid: command line"; never the
/// calling (test) process itself.
pub fn processes_with(marker: &str) -> Vec<String> {
    let me = std::process::id();
    command_lines()
        .filter(|(pid, line)| *pid != me && line.contains(marker))
        .map(|(pid, line)| format!("{pid}: {line}"))
        .collect()
}

/// Every process's id and command line (arguments joined by spaces), from `/proc`.
fn command_lines() -> impl Iterator<Item = (u32, String)> {
    lava_procfs::pids()
        .into_iter()
        .filter_map(|pid| Some((pid, lava_procfs::cmdline(pid)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lava_procfs::descendants;

    #[test]
    fn a_dispatcher_is_stopped_with_its_group_and_found_by_its_marker() {
        let marker = format!("lava-test-support-{}", std::process::id());
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "sleep 4712 & wait", &marker]);
        let mut dispatcher = OwnedDispatcher::spawn(&mut command, marker.clone()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while descendants(dispatcher.id()).is_empty() {
            assert!(
                Instant::now() < deadline,
                "the shell never started its child"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            processes_with(&marker).len(),
            1,
            "{:?}",
            processes_with(&marker)
        );
        assert!(dispatcher.try_wait().unwrap().is_none());
        dispatcher.stop();
        assert!(processes_with(&marker).is_empty());
        assert!(processes_with("sleep 4712").is_empty());
    }
}
