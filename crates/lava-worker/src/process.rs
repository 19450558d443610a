//! lava-run processes as the worker sees them: alive or gone ([`probe`]), signalled
//! ([`terminate`], [`kill_group`]).
//!
//! A process is known by its pid and its start time (`/proc/<pid>/stat` field 22, clock
//! ticks since boot, read by lava-procfs), so a pid reused after the worker restarted is
//! never taken for the job. A child of this process is reaped with a non-blocking
//! `waitpid`; a lava-run that outlived a previous worker process is someone else's child
//! (init reaps it) and is followed through `/proc` alone.

use rustix::process::{Pid, Signal, WaitOptions};

/// Whether a job's process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It runs.
    Alive,
    /// It has ended (and, if it was our child, has been reaped).
    Gone,
}

/// `/proc/<pid>/stat` of `pid`, `None` when there is no such process.
fn stat(pid: i32) -> Option<lava_procfs::ProcessStat> {
    lava_procfs::ProcessStat::read(u32::try_from(pid).ok()?).ok()
}

/// Is the process `pid` started at `ticks` still running? Reaps it when it was our child.
pub fn probe(pid: i32, ticks: u64) -> Liveness {
    let Some(pid_t) = Pid::from_raw(pid) else {
        return Liveness::Gone;
    };
    match stat(pid) {
        Some(found) if found.start_ticks == ticks => {}
        // Gone, or the pid now names another process.
        _ => return Liveness::Gone,
    }
    match rustix::process::waitpid(Some(pid_t), WaitOptions::NOHANG) {
        Ok(Some(_)) => Liveness::Gone,
        Ok(None) => Liveness::Alive,
        // Not our child (it outlived the worker that started it): /proc tells.
        Err(_) => match stat(pid) {
            Some(found) if found.start_ticks == ticks && !found.is_zombie() => Liveness::Alive,
            _ => Liveness::Gone,
        },
    }
}

/// SIGTERM to the job's process group (lava-run and what it started).
pub fn terminate(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process_group(pid, Signal::TERM);
    }
}

/// SIGKILL to the job's process group: whatever is left of the job.
pub fn kill_group(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    }
}

/// Whether any process is still in the job's process group (zombies aside).
pub fn group_has_members(pgid: i32) -> bool {
    let Ok(pgid) = u32::try_from(pgid) else {
        return false;
    };
    lava_procfs::processes()
        .iter()
        .any(|p| p.pgrp == pgid && !p.is_zombie())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_child_is_followed_reaped_and_its_pid_not_mistaken() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Reaped by probe(), as the supervisor reaps lava-run.
        drop(child);
        let found = stat(pid).unwrap();
        assert!(!found.is_zombie());
        let ticks = found.start_ticks;
        assert_eq!(probe(pid, ticks), Liveness::Alive);
        assert_eq!(probe(pid, ticks + 1), Liveness::Gone, "another start time");
        assert!(group_has_members(pid));
        terminate(pid);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while probe(pid, ticks) == Liveness::Alive {
            assert!(
                std::time::Instant::now() < deadline,
                "sleep survived SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Reaped: no zombie left behind.
        assert!(stat(pid).is_none());
        assert!(!group_has_members(pid));
    }
}
