//! lava-run processes as the worker sees them: alive or gone ([`probe`]), signalled
//! ([`terminate`], [`kill_group`]).
//!
//! A process is known by its pid and its start time (`/proc/<pid>/stat` field 22, clock
//! ticks since boot), so a pid reused after the worker restarted is never taken for the
//! job. A child of this process is reaped with a non-blocking `waitpid`; a lava-run that
//! outlived a previous worker process is someone else's child (init reaps it) and is
//! followed through `/proc` alone.

use rustix::process::{Pid, Signal, WaitOptions};

/// Whether a job's process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It runs.
    Alive,
    /// It has ended (and, if it was our child, has been reaped).
    Gone,
}

/// The start time of `pid` and whether it is a zombie, from `/proc/<pid>/stat`.
pub fn start_ticks(pid: i32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: fields after it
    // are counted from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is starttime.
    let zombie = fields.first().is_some_and(|s| *s == "Z" || *s == "X");
    let ticks = fields.get(19)?.parse().ok()?;
    Some((ticks, zombie))
}

/// Is the process `pid` started at `ticks` still running? Reaps it when it was our child.
pub fn probe(pid: i32, ticks: u64) -> Liveness {
    let Some(pid_t) = Pid::from_raw(pid) else {
        return Liveness::Gone;
    };
    match start_ticks(pid) {
        Some((found, _)) if found == ticks => {}
        // Gone, or the pid now names another process.
        _ => return Liveness::Gone,
    }
    match rustix::process::waitpid(Some(pid_t), WaitOptions::NOHANG) {
        Ok(Some(_)) => Liveness::Gone,
        Ok(None) => Liveness::Alive,
        // Not our child (it outlived the worker that started it): /proc tells.
        Err(_) => match start_ticks(pid) {
            Some((found, zombie)) if found == ticks && !zombie => Liveness::Alive,
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

/// Whether any process is still in the job's process group.
pub fn group_has_members(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // field 3 state, 4 ppid, 5 pgrp.
        fields.first() != Some(&"Z") && fields.get(2).and_then(|g| g.parse().ok()) == Some(pgid)
    })
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
        let (ticks, zombie) = start_ticks(pid).unwrap();
        assert!(!zombie);
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
        assert!(start_ticks(pid).is_none());
        assert!(!group_has_members(pid));
    }
}
