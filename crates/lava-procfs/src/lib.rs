//! Linux processes as `/proc` shows them: one copy of the process walks the dispatcher,
//! the worker, the connections, the tests and xtask need.
//!
//! A process is read from `/proc/<pid>/stat` into a [`ProcessStat`] (state, parent,
//! process group, session, start time); the command name in that file may hold spaces and
//! parentheses, so the fields are counted from its last `)`. The start time (clock ticks
//! since boot) tells a process from a later one that reuses its pid. [`processes`] lists
//! every process (those that end during the walk are left out), [`children`] and
//! [`descendants`] follow parents, [`is_running`] tells a live process from a zombie or a
//! gone one. [`cmdline`], [`arguments`], [`environ`], [`descriptors`] and [`memory`] read
//! the other files of a process; [`processes_with_argument`] finds processes by one
//! argument, and [`tcp_listening`] tells whether a server listens on a port. Errors
//! ([`ProcError`]) name the file and what was wrong in it; [`ProcError::is_gone`] tells a
//! process that has ended.
//!
//! ```
//! let me = std::process::id();
//! let stat = lava_procfs::ProcessStat::read(me).unwrap();
//! assert!(lava_procfs::is_running(me) && !stat.is_zombie());
//! assert_eq!(lava_procfs::start_ticks(me), Some(stat.start_ticks));
//! assert!(lava_procfs::processes().iter().any(|p| p.pid == me));
//! assert!(lava_procfs::open_descriptors(me).unwrap() >= 3);
//! assert!(lava_procfs::memory(me).unwrap().peak_kib > 0);
//! ```

#![warn(missing_docs)]

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// Where the kernel shows its processes.
const PROC: &str = "/proc";

/// A file of `/proc` that could not be read or did not hold what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file could not be read (the process may have ended: [`ProcError::is_gone`]).
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file was read but is not in the kernel's format.
    #[error("{}: {what}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What was expected and not found.
        what: String,
    },
}

impl ProcError {
    /// Whether the process has ended (its directory is gone), rather than `/proc` being
    /// unreadable or malformed.
    pub fn is_gone(&self) -> bool {
        match self {
            ProcError::Read { source, .. } => {
                source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(3)
            }
            ProcError::Format { .. } => false,
        }
    }
}

/// The fields of `/proc/<pid>/stat` the house uses (see proc(5) for their numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStat {
    /// The process id (field 1).
    pub pid: u32,
    /// The state letter (field 3): `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// The parent's pid (field 4).
    pub ppid: u32,
    /// The process group id (field 5).
    pub pgrp: u32,
    /// The session id (field 6).
    pub session: u32,
    /// User-mode CPU time in clock ticks (field 14).
    pub utime_ticks: u64,
    /// Kernel-mode CPU time in clock ticks (field 15).
    pub stime_ticks: u64,
    /// The start time in clock ticks since boot (field 22).
    pub start_ticks: u64,
}

impl ProcessStat {
    /// Read `/proc/<pid>/stat`.
    pub fn read(pid: u32) -> Result<ProcessStat, ProcError> {
        let path = proc_file(pid, "stat");
        let text = std::fs::read_to_string(&path).map_err(|source| ProcError::Read {
            path: path.clone(),
            source,
        })?;
        ProcessStat::parse(&text).map_err(|what| ProcError::Format { path, what })
    }

    /// Parse the text of a `stat` file; the error says which field is missing or wrong.
    pub fn parse(text: &str) -> Result<ProcessStat, String> {
        let (head, rest) = text
            .rsplit_once(')')
            .ok_or("expected `pid (command) state ...`: no `)` closing the command")?;
        let pid = head
            .split_once(" (")
            .and_then(|(pid, _)| pid.trim().parse().ok())
            .ok_or("expected the pid before ` (command)`")?;
        // `rest` starts with field 3 (state): field n is rest's (n - 3)th word.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let number = |n: usize, name: &str| -> Result<u64, String> {
            fields
                .get(n - 3)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| format!("expected a number as field {n} ({name})"))
        };
        let narrow = |n: usize, name: &str| -> Result<u32, String> {
            u32::try_from(number(n, name)?).map_err(|_| format!("field {n} ({name}) too large"))
        };
        Ok(ProcessStat {
            pid,
            state: fields
                .first()
                .and_then(|s| s.chars().next())
                .ok_or("expected the state as field 3")?,
            ppid: narrow(4, "ppid")?,
            pgrp: narrow(5, "pgrp")?,
            session: narrow(6, "session")?,
            utime_ticks: number(14, "utime")?,
            stime_ticks: number(15, "stime")?,
            start_ticks: number(22, "starttime")?,
        })
    }

    /// Whether the process has ended and waits to be reaped (`Z`), or is being torn down
    /// (`X`).
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// The ids of every process, in `/proc`'s order.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir(PROC)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// Every process's [`ProcessStat`]; processes that end during the walk are left out.
pub fn processes() -> Vec<ProcessStat> {
    pids()
        .into_iter()
        .filter_map(|pid| ProcessStat::read(pid).ok())
        .collect()
}

/// The start time of `pid` in clock ticks since boot, `None` when there is no such
/// process.
pub fn start_ticks(pid: u32) -> Option<u64> {
    ProcessStat::read(pid).ok().map(|stat| stat.start_ticks)
}

/// Whether `pid` exists and has not ended (a zombie has).
pub fn is_running(pid: u32) -> bool {
    ProcessStat::read(pid).is_ok_and(|stat| !stat.is_zombie())
}

/// The processes whose parent is `ppid`, zombies included (they are children until
/// reaped).
pub fn children(ppid: u32) -> Vec<ProcessStat> {
    processes().into_iter().filter(|p| p.ppid == ppid).collect()
}

/// Every process below `root` (children, grandchildren, ...), parents before their
/// children.
pub fn descendants(root: u32) -> Vec<u32> {
    let all = processes();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(all.iter().filter(|p| p.ppid == parent).map(|p| p.pid));
        next += 1;
    }
    found.remove(0);
    found
}

/// The command line of `pid`, its arguments joined by single spaces; `None` when the
/// process is gone. Empty for kernel threads and zombies.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(proc_file(pid, "cmdline")).ok()?;
    let text = String::from_utf8_lossy(&raw);
    Some(text.strip_suffix('\0').unwrap_or(&text).replace('\0', " "))
}

/// The arguments of `pid` one by one (`argv`, as the process was started); `None` when
/// the process is gone, empty for kernel threads and zombies.
pub fn arguments(pid: u32) -> Option<Vec<OsString>> {
    let raw = std::fs::read(proc_file(pid, "cmdline")).ok()?;
    let raw = raw.strip_suffix(b"\0").unwrap_or(&raw);
    if raw.is_empty() {
        return Some(Vec::new());
    }
    Some(
        raw.split(|b| *b == 0)
            .map(|arg| OsString::from_vec(arg.to_vec()))
            .collect(),
    )
}

/// The pids (this process left out) started with `argument` as one whole argument.
pub fn processes_with_argument(argument: &str) -> Vec<u32> {
    let own = std::process::id();
    let mut found: Vec<u32> = pids()
        .into_iter()
        .filter(|pid| *pid != own)
        .filter(|pid| arguments(*pid).is_some_and(|args| args.iter().any(|arg| arg == argument)))
        .collect();
    found.sort_unstable();
    found
}

/// Whether a TCP socket of this network namespace listens on `port` (any address, IPv4
/// or IPv6), from `/proc/net/tcp` and `/proc/net/tcp6`: a server's readiness seen without
/// connecting to it.
pub fn tcp_listening(port: u16) -> bool {
    ["net/tcp", "net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(Path::new(PROC).join(table))
            .is_ok_and(|text| listening_in_table(&text, port))
    })
}

/// Whether the text of a `/proc/net/tcp{,6}` table has a socket in state LISTEN (`0A`)
/// whose local address ends in `:port` (hexadecimal).
fn listening_in_table(text: &str, port: u16) -> bool {
    let port = format!("{port:04X}");
    text.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1);
        let state = fields.nth(1);
        state == Some("0A") && local.and_then(|l| l.rsplit(':').next()) == Some(port.as_str())
    })
}

/// The environment of `pid` as `NAME=value` entries. Reading another user's process
/// needs the right to trace it; right after a `fork`/`exec` the list can still be empty
/// (the new program's stack is laid out after its parent resumes).
pub fn environ(pid: u32) -> Result<Vec<OsString>, ProcError> {
    let path = proc_file(pid, "environ");
    let raw = std::fs::read(&path).map_err(|source| ProcError::Read { path, source })?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| OsString::from_vec(entry.to_vec()))
        .collect())
}

/// The value of the environment variable `name` in `pid`'s environment, if set.
pub fn environment_variable(pid: u32, name: &str) -> Option<OsString> {
    environ(pid).ok()?.into_iter().find_map(|entry| {
        let entry = entry.into_vec();
        let value = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        Some(OsString::from_vec(value.to_vec()))
    })
}

/// How many descriptors `pid` has open (the entries of `/proc/<pid>/fd`; for this
/// process, the listing's own descriptor is counted too).
pub fn open_descriptors(pid: u32) -> Result<usize, ProcError> {
    Ok(descriptors(pid)?.len())
}

/// The descriptors `pid` has open, in numeric order, each with what it refers to (a path,
/// or the kernel's `socket:[inode]`, `pipe:[inode]`, `anon_inode:[eventpoll]`, ...; empty
/// when it closed while being read).
pub fn descriptors(pid: u32) -> Result<Vec<(u32, PathBuf)>, ProcError> {
    let path = proc_file(pid, "fd");
    let entries = std::fs::read_dir(&path).map_err(|source| ProcError::Read {
        path: path.clone(),
        source,
    })?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ProcError::Read {
            path: path.clone(),
            source,
        })?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        found.push((fd, std::fs::read_link(entry.path()).unwrap_or_default()));
    }
    found.sort();
    Ok(found)
}

/// A process's resident memory, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// The resident set now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// The largest resident set so far (`VmHWM`), KiB.
    pub peak_kib: u64,
}

impl Memory {
    /// Parse the text of a `status` file; the error names the missing field.
    pub fn parse(status: &str) -> Result<Memory, String> {
        let kib = |name: &str| -> Result<u64, String> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|value| value.split_whitespace().next()?.parse().ok())
                .ok_or_else(|| format!("expected a `{name}:` line in kB"))
        };
        Ok(Memory {
            rss_kib: kib("VmRSS")?,
            peak_kib: kib("VmHWM")?,
        })
    }
}

/// The resident memory of `pid` (a zombie or a kernel thread has none: a format error).
pub fn memory(pid: u32) -> Result<Memory, ProcError> {
    let path = proc_file(pid, "status");
    let text = std::fs::read_to_string(&path).map_err(|source| ProcError::Read {
        path: path.clone(),
        source,
    })?;
    Memory::parse(&text).map_err(|what| ProcError::Format { path, what })
}

fn proc_file(pid: u32, name: &str) -> PathBuf {
    Path::new(PROC).join(pid.to_string()).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    /// Poll `condition` every 20 ms until it holds (true) or `limit` has passed (false).
    fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if condition() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        condition()
    }

    /// A child killed with what it started, and reaped, however the test ends.
    struct Owned(Child);

    impl Drop for Owned {
        fn drop(&mut self) {
            for pid in descendants(self.0.id()) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let text = "4242 (a (b) c) S 1 4242 4240 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 \
                    991 10000 300 18446744073709551615\n";
        let stat = ProcessStat::parse(text).unwrap();
        assert_eq!(
            stat,
            ProcessStat {
                pid: 4242,
                state: 'S',
                ppid: 1,
                pgrp: 4242,
                session: 4240,
                utime_ticks: 7,
                stime_ticks: 3,
                start_ticks: 991,
            }
        );
        assert!(!stat.is_zombie());
        let zombie = ProcessStat::parse(&text.replace(") S ", ") Z ")).unwrap();
        assert!(zombie.is_zombie());
        let err = ProcessStat::parse("4242 (x) S 1 2\n").unwrap_err();
        assert!(err.contains("field 6 (session)"), "{err}");
        assert!(ProcessStat::parse("garbage").is_err());
    }

    #[test]
    fn errors_name_the_file_and_tell_a_gone_process() {
        // pid_max is at most 2^22: no process has this id.
        let err = ProcessStat::read(u32::MAX - 1).unwrap_err();
        assert!(err.is_gone());
        assert!(
            err.to_string()
                .contains(&format!("/proc/{}/stat", u32::MAX - 1)),
            "{err}"
        );
        assert!(!is_running(u32::MAX - 1));
        assert_eq!(start_ticks(u32::MAX - 1), None);
        assert_eq!(cmdline(u32::MAX - 1), None);
    }

    #[test]
    fn memory_is_read_from_status() {
        let status =
            "Name:\tlava-run\nVmPeak:\t  20000 kB\nVmHWM:\t    9876 kB\nVmRSS:\t 9000 kB\n";
        assert_eq!(
            Memory::parse(status).unwrap(),
            Memory {
                rss_kib: 9000,
                peak_kib: 9876
            }
        );
        assert!(Memory::parse("Name:\tx\n").unwrap_err().contains("VmRSS"));
        let own = memory(std::process::id()).unwrap();
        assert!(own.rss_kib > 0 && own.peak_kib >= own.rss_kib);
    }

    #[test]
    fn a_child_is_seen_with_its_command_environment_and_descendants_then_reaped() {
        let marker = format!("lava-procfs-{}", std::process::id());
        let mut child = Owned(
            Command::new("/bin/sh")
                .args(["-c", "sleep 4714 & wait", &marker])
                .env("LAVA_PROCFS_TEST", &marker)
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        // The environment can read empty right after the exec: wait for it.
        assert!(wait_for(Duration::from_secs(10), || {
            environment_variable(pid, "LAVA_PROCFS_TEST").is_some_and(|v| v == *marker)
        }));
        assert!(wait_for(Duration::from_secs(10), || descendants(
            std::process::id()
        )
        .contains(&pid)
            && !descendants(pid).is_empty()));
        let grandchild = descendants(pid)[0];
        assert_eq!(
            cmdline(pid).unwrap(),
            format!("/bin/sh -c sleep 4714 & wait {marker}")
        );
        assert!(wait_for(Duration::from_secs(10), || {
            cmdline(grandchild).is_some_and(|c| c == "sleep 4714")
        }));
        let own = std::process::id();
        assert!(children(own).iter().any(|c| c.pid == pid && c.ppid == own));
        let stat = ProcessStat::read(pid).unwrap();
        assert_eq!(ProcessStat::read(grandchild).unwrap().pgrp, stat.pgrp);
        assert!(is_running(pid));
        assert!(environ(pid).unwrap().iter().any(|e| {
            e.to_str()
                .is_some_and(|e| e.starts_with("LAVA_PROCFS_TEST="))
        }));

        // The grandchild first (the shell's end would orphan it), then the shell:
        // killed but not reaped, a zombie is still a child and no longer running.
        let _ = Command::new("kill")
            .args(["-9", &grandchild.to_string()])
            .status();
        let _ = child.0.kill();
        assert!(wait_for(Duration::from_secs(10), || !is_running(pid)));
        assert!(ProcessStat::read(pid).unwrap().is_zombie());
        assert!(children(own).iter().any(|c| c.pid == pid));
        child.0.wait().unwrap();
        assert!(ProcessStat::read(pid).unwrap_err().is_gone());
    }

    #[test]
    fn descriptors_are_counted() {
        // A child's descriptors, not this process's (other tests open files meanwhile):
        // the standard three and whatever this process inherited without close-on-exec,
        // then one more opened by the shell before its exec.
        let sleeping = |script: &str| {
            let child = Owned(
                Command::new("/bin/sh")
                    .args(["-c", script])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let pid = child.0.id();
            assert!(wait_for(Duration::from_secs(10), || {
                cmdline(pid).is_some_and(|c| c == "sleep 4715")
            }));
            child
        };
        let plain = sleeping("exec sleep 4715");
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", plain.0.id()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(open_descriptors(plain.0.id()).unwrap(), fds.len());
        assert!(fds.len() >= 3, "{fds:?}");
        let free = (3..=9).find(|n| !fds.contains(&n.to_string())).unwrap();
        let more = sleeping(&format!("exec {free}</dev/null; exec sleep 4715"));
        assert_eq!(open_descriptors(more.0.id()).unwrap(), fds.len() + 1);
        let listed = descriptors(more.0.id()).unwrap();
        assert!(
            listed.contains(&(free, PathBuf::from("/dev/null"))),
            "{listed:?}"
        );
        assert!(
            listed.contains(&(0, PathBuf::from("/dev/null"))),
            "{listed:?}"
        );
        assert!(open_descriptors(u32::MAX - 1).unwrap_err().is_gone());
    }

    #[test]
    fn arguments_are_read_one_by_one_and_found() {
        let child = Owned(
            Command::new("sleep")
                .args(["4716", "0.25"])
                .stdin(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        assert!(wait_for(Duration::from_secs(10), || {
            arguments(pid).is_some_and(|args| args.len() == 3)
        }));
        let expected: Vec<OsString> = ["sleep", "4716", "0.25"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(arguments(pid).unwrap(), expected);
        assert_eq!(processes_with_argument("0.25"), vec![pid]);
        assert!(processes_with_argument("0.2").is_empty());
        assert!(arguments(u32::MAX - 1).is_none());
    }

    #[test]
    fn listening_sockets_are_read_from_the_tables() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:CCEC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
           1: 0100007F:D2F0 0100007F:CCEC 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        assert!(listening_in_table(table, 0xCCEC));
        // Only as the remote end of a connection, or established: not listening.
        assert!(!listening_in_table(table, 0xD2F0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(tcp_listening(port));
        drop(listener);
        assert!(!tcp_listening(port));
    }
}
