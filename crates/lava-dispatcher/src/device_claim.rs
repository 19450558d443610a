//! What a killed dispatcher left running on a device, found and ended by the next job on
//! that device.
//!
//! A dispatcher killed with SIGKILL (the OOM killer, a worker's hard stop) cannot end its
//! children: a QEMU, a console command, a test shell's background process keep running and
//! hold the device (its serial port, its disk image, its network ports). So:
//!
//! - every process a dispatcher starts carries the dispatcher's **run token** in its
//!   environment ([`RUN_TOKEN_ENV`]`=<pid>.<start time>`, set by [`mark_process`] at the start
//!   of `lava-run`'s `main` and inherited by every child and their children);
//! - a running job holds a **claim** on its device: a file
//!   `<scratch root>/lava-rs-devices/<hostname>/<token>` (the scratch root is the job
//!   scratch directories' root, `/var/lib/lava/dispatcher/tmp`) holding the job id and its
//!   scratch directory, removed when the job ends;
//! - when a job starts ([`DeviceClaim::acquire`]), every claim of the device whose
//!   dispatcher is gone (no process with that pid and start time) is stale: each process
//!   still carrying its token is ended (SIGTERM, SIGKILL after [`TERM_GRACE`]) and logged
//!   as a warning, the dead job's scratch directory is removed, then the claim. Claims of
//!   live dispatchers are left alone.
//!
//! A process that clears its environment (`env -i`) escapes the token; the processes
//! lava-rs starts (QEMU, console commands, shells, tools) keep it.
//!
//! ```no_run
//! // First thing in main, before any thread exists:
//! lava_dispatcher::device_claim::mark_process();
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lava_pipeline::JobLogger;
use rustix::process::{Pid, Signal, kill_process};

/// The environment variable carrying the run token of the dispatcher that started a process.
pub const RUN_TOKEN_ENV: &str = "LAVA_RS_RUN_TOKEN";
/// The directory of device claims under the scratch root.
pub const CLAIMS_DIR: &str = "lava-rs-devices";
/// After SIGTERM, how long a stale process gets before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// This process's run token: `<pid>.<start time in clock ticks since boot>` (the start
/// time tells a dead dispatcher from a new process that reuses its pid).
pub fn process_token() -> String {
    let pid = std::process::id();
    format!("{pid}.{}", lava_procfs::start_ticks(pid).unwrap_or(0))
}

/// Put this process's run token in its environment, for every child to inherit.
///
/// Call it first thing in `main`, before any thread is started (changing the environment
/// of a multi-threaded process is not safe).
pub fn mark_process() {
    // SAFETY: called at the start of main, while the process has a single thread.
    unsafe { std::env::set_var(RUN_TOKEN_ENV, process_token()) };
}

/// A job's claim on its device; removed when dropped.
#[derive(Debug)]
pub struct DeviceClaim {
    file: PathBuf,
}

impl DeviceClaim {
    /// End what dead dispatchers left running on `device`, then claim it for `job_id`,
    /// whose scratch directory `scratch_dir` is below the scratch root.
    pub fn acquire(
        scratch_dir: &Path,
        device: &str,
        job_id: &str,
        logger: &JobLogger,
    ) -> io::Result<DeviceClaim> {
        let scratch_root = scratch_dir.parent().unwrap_or(Path::new("/"));
        let dir = scratch_root.join(CLAIMS_DIR).join(file_name(device));
        lava_pipeline::scratch::create_private_dir_all(&dir)?;
        let own = process_token();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let token = entry.file_name().to_string_lossy().into_owned();
            if token == own || is_alive(&token) {
                continue;
            }
            let holder = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let mut lines = holder.lines();
            let stale_job = lines.next().unwrap_or("?").to_string();
            let stale_scratch = lines.next().map(PathBuf::from);
            for (pid, command) in processes_with_token(&token) {
                logger.warning(format!(
                    "Ending stale process {pid} ({command}) left on device {device} by job \
                     {stale_job}, whose dispatcher is gone"
                ));
                end_process(pid);
            }
            if let Some(stale_scratch) = stale_scratch
                .filter(|d| d.parent() == Some(scratch_root) && d.as_path() != scratch_dir)
                && stale_scratch.exists()
            {
                logger.warning(format!(
                    "Removing the scratch directory {} of job {stale_job}, whose dispatcher is gone",
                    stale_scratch.display()
                ));
                std::fs::remove_dir_all(&stale_scratch).or_else(ignore_not_found)?;
            }
            std::fs::remove_file(entry.path()).or_else(ignore_not_found)?;
        }
        if std::env::var(RUN_TOKEN_ENV).ok().as_deref() != Some(own.as_str()) {
            logger.debug(format!(
                "{RUN_TOKEN_ENV} is not this dispatcher's token: its children cannot be \
                 found if it is killed (call lava_dispatcher::device_claim::mark_process)"
            ));
        }
        let file = dir.join(&own);
        std::fs::write(&file, format!("{job_id}\n{}\n", scratch_dir.display()))?;
        Ok(DeviceClaim { file })
    }

    /// The claim file.
    pub fn path(&self) -> &Path {
        &self.file
    }
}

impl Drop for DeviceClaim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

fn ignore_not_found(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// A device name as one path component.
fn file_name(device: &str) -> String {
    let name: String = device
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match name.as_str() {
        "" | "." | ".." => "unnamed".to_string(),
        _ => name,
    }
}

/// Whether the dispatcher of `token` (`<pid>.<start time>`) still runs.
fn is_alive(token: &str) -> bool {
    let Some((pid, start)) = token.split_once('.') else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    lava_procfs::start_ticks(pid) == Some(start)
}

/// Live processes whose environment carries `token`: pid and command line.
fn processes_with_token(token: &str) -> Vec<(u32, String)> {
    lava_procfs::pids()
        .into_iter()
        .filter(|pid| {
            lava_procfs::environment_variable(*pid, RUN_TOKEN_ENV)
                .is_some_and(|value| value == token)
        })
        .map(|pid| (pid, lava_procfs::cmdline(pid).unwrap_or_default()))
        .collect()
}

/// SIGTERM, then SIGKILL once [`TERM_GRACE`] has passed.
fn end_process(pid: u32) {
    let Some(target) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    if kill_process(target, Signal::TERM).is_err() {
        return;
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline {
        if !lava_procfs::is_running(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill_process(target, Signal::KILL);
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let own = process_token();
        assert!(is_alive(&own));
        let (pid, start) = own.split_once('.').unwrap();
        let earlier = start.parse::<u64>().unwrap().wrapping_sub(1);
        assert!(!is_alive(&format!("{pid}.{earlier}")));
        assert!(!is_alive("junk"));
    }

    #[test]
    fn device_names_are_one_path_component() {
        assert_eq!(file_name("qemu01"), "qemu01");
        assert_eq!(file_name("../x/y"), ".._x_y");
        assert_eq!(file_name(".."), "unnamed");
    }

    #[test]
    fn stale_claims_end_their_processes_and_live_ones_are_kept() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(CLAIMS_DIR).join("dev1");
        std::fs::create_dir_all(&dir).unwrap();
        // A "dead dispatcher": a token no process has, carried by a sleeping child.
        let stale = "999999999.1";
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .env(RUN_TOKEN_ENV, stale)
            .spawn()
            .unwrap();
        // The parent may resume before the child's new environment is readable in /proc
        // (the exec's vfork release comes before its stack is laid out): wait for it.
        wait_for(Duration::from_secs(10), || {
            lava_procfs::environment_variable(child.id(), RUN_TOKEN_ENV)
                .is_some_and(|value| value == stale)
        });
        let stale_scratch = root.path().join("lava-41");
        std::fs::create_dir(&stale_scratch).unwrap();
        std::fs::write(
            dir.join(stale),
            format!("41\n{}\n", stale_scratch.display()),
        )
        .unwrap();
        // A live claim (this process) is kept.
        let live = process_token();
        let logger = JobLogger::capturing();
        let scratch = root.path().join("lava-42");
        let claim = DeviceClaim::acquire(&scratch, "dev1", "42", &logger).unwrap();
        let ended = wait_for(Duration::from_secs(10), || {
            child.try_wait().unwrap().is_some()
        });
        if !ended {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(ended, "the stale sleep was ended");
        assert!(!dir.join(stale).exists());
        assert_eq!(claim.path(), dir.join(&live));
        assert!(
            !stale_scratch.exists(),
            "the dead job's scratch directory is removed"
        );
        let held = std::fs::read_to_string(claim.path()).unwrap();
        assert_eq!(held, format!("42\n{}\n", scratch.display()));
        let log = logger.captured().join("\n");
        assert!(log.contains("Ending stale process"), "{log}");
        assert!(log.contains("by job 41"), "{log}");
        drop(claim);
        assert!(!dir.join(&live).exists());
    }
}
