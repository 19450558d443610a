//! Chaos: `lava-run` SIGKILLed in the middle of a job. What it started keeps running (a
//! test shell's `setsid sleep` on the local-shell device, QEMU on the embedded QEMU
//! device); the next job on the same device ends it (the device claim,
//! lava_dispatcher::device_claim), removes the dead job's scratch directory, and completes.

mod common;

use common::lava_run;
use lava_test_support::ci::skip_or_fail;
use lava_test_support::paths::workspace;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Live processes whose command line contains `command` and whose run token
/// (`LAVA_RS_RUN_TOKEN`) starts with `prefix`.
fn marked(command: &str, prefix: &str) -> Vec<u32> {
    lava_procfs::pids()
        .into_iter()
        .filter(|pid| {
            lava_procfs::cmdline(*pid).is_some_and(|c| c.contains(command))
                && lava_procfs::environment_variable(*pid, "LAVA_RS_RUN_TOKEN")
                    .is_some_and(|t| t.to_string_lossy().starts_with(prefix))
                && lava_procfs::is_running(*pid)
        })
        .collect()
}

/// Kills what a failed test left (the test's own processes only).
struct Leftovers(&'static str, String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in marked(self.0, &self.1) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

const KILLED_JOB: &str = "device_type: local-shell
job_name: killed mid-job
timeouts: {job: {minutes: 5}, action: {minutes: 3}, connection: {seconds: 30}}
priority: medium
visibility: public
actions:
- deploy: {to: overlay, timeout: {minutes: 1}}
- boot: {method: minimal, prompts: ['local-shell\\$ '], timeout: {minutes: 1}}
- test:
    timeout: {minutes: 3}
    definitions:
    - from: inline
      name: chaos
      path: inline/chaos.yaml
      repository:
        metadata: {format: Lava-Test Test Definition 1.0, name: chaos, description: chaos}
        run:
          steps:
          - setsid sleep 597 </dev/null >/dev/null 2>&1 &
          - lava-test-case started --result pass
          - sleep 120
";

/// A copy of `device` (a rendered device file) under `dir` whose hostname is `hostname`.
fn device_named(dir: &Path, device: &Path, hostname: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(device).unwrap();
    let old = text
        .lines()
        .find(|l| l.starts_with("hostname: "))
        .expect("the device file has a hostname")
        .to_string();
    let copy = dir.join("device.yaml");
    std::fs::write(&copy, text.replace(&old, &format!("hostname: {hostname}"))).unwrap();
    copy
}

/// One kill-and-rerun case: the jobs' ids end with `tag` and 1 or 2 (the tests of this
/// file run at once). A process that `survives_hangup` (its console gone with the
/// dispatcher) must be named in the next job's log as ended; one that does not may be
/// gone by itself before.
struct KillCase<'a> {
    tag: u32,
    survives_hangup: bool,
    device: &'a Path,
    killed_job: &'a Path,
    /// Text of the killed job's log once it is far enough.
    ready: &'a str,
    /// Text of the command line of the process that outlives the dispatcher.
    stale: &'static str,
    next_job: &'a Path,
}

/// Start `killed_job` on `device`, SIGKILL `lava-run` once `ready` is in its log and a
/// process whose command line holds `stale` carries its token, then run `next_job` on the
/// same device: it ends the stale process, removes the dead job's scratch directory, passes.
fn kill_then_run_again(dir: &Path, case: KillCase<'_>) {
    let KillCase {
        tag,
        survives_hangup,
        device,
        killed_job,
        ready,
        stale,
        next_job,
    } = case;
    let first_id = format!("{}{tag}1", std::process::id());
    let out1 = dir.join("out1");
    let mut first = Command::new(lava_run())
        .args(["--job-id", &first_id, "--output-dir"])
        .arg(&out1)
        .arg("--device")
        .arg(device)
        .arg(killed_job)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!("{}.", first.id());
    let _leftovers = Leftovers(stale, prefix.clone());
    let deadline = Instant::now() + Duration::from_secs(300);
    let log = out1.join("logs.yaml");
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(ready) && !marked(stale, &prefix).is_empty() {
            break;
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first job ended before it was killed:\n{text}"
        );
        assert!(
            Instant::now() < deadline,
            "the first job never got ready:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let left = marked(stale, &prefix);
    if survives_hangup {
        assert_eq!(left.len(), 1, "the killed dispatcher's {stale} outlives it");
    }
    let stale_scratch = Path::new(lava_pipeline::scratch::DISPATCHER_DOWNLOAD_DIR);
    let stale_scratch = lava_pipeline::scratch::root_or_fallback(stale_scratch).join(&first_id);

    let out2 = dir.join("out2");
    let second = Command::new(lava_run())
        .args([
            "--job-id",
            &format!("{}{tag}2", std::process::id()),
            "--output-dir",
        ])
        .arg(&out2)
        .arg("--device")
        .arg(device)
        .arg(next_job)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = std::fs::read_to_string(out2.join("logs.yaml")).unwrap();
    assert!(second.status.success(), "{log}");
    assert!(
        std::fs::read_to_string(out2.join("result.yaml"))
            .unwrap()
            .contains("result: pass")
    );
    if survives_hangup {
        assert!(
            log.contains(&format!("Ending stale process {}", left[0])),
            "the stale process is named in the log:\n{log}"
        );
        assert!(log.contains(&format!("by job {first_id}")), "{log}");
    }
    assert!(
        marked(stale, &prefix).is_empty(),
        "the stale {stale} is gone"
    );
    assert!(
        !stale_scratch.exists(),
        "the killed job's scratch directory {} is removed",
        stale_scratch.display()
    );
}

#[test]
fn the_next_job_on_a_device_ends_what_a_killed_dispatcher_left() {
    let dir = tempfile::tempdir().unwrap();
    // A device of this test's own (its hostname names the claim).
    let fixtures = workspace().join("fixtures/local-shell");
    let hostname = format!("chaos-kill-{}", std::process::id());
    let device = device_named(dir.path(), &fixtures.join("device.yaml"), &hostname);
    let job = dir.path().join("killed.yaml");
    std::fs::write(&job, KILLED_JOB).unwrap();
    kill_then_run_again(
        dir.path(),
        KillCase {
            tag: 1,
            survives_hangup: true,
            device: &device,
            killed_job: &job,
            ready: "\"case\": \"started\"",
            stale: "sleep 597",
            next_job: &fixtures.join("inline-job.yaml"),
        },
    );
}

#[test]
fn the_next_qemu_job_starts_clean_after_a_killed_dispatcher() {
    let root = workspace();
    let job = root.join("target/test-system/qemu-smoke.yaml");
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok();
    if !qemu || !job.exists() {
        skip_or_fail("QEMU or target/test-system is missing (run `cargo xtask test-system`)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hostname = format!("chaos-qemu-{}", std::process::id());
    let device = device_named(
        dir.path(),
        &root.join("fixtures/qemu/device.yaml"),
        &hostname,
    );
    // Killed as soon as QEMU runs; the next job boots the same device.
    kill_then_run_again(
        dir.path(),
        KillCase {
            tag: 2,
            // QEMU's console is its pty: it ends on the hang-up when lava-run dies, or is
            // ended by the next job if it is still there.
            survives_hangup: false,
            device: &device,
            killed_job: &job,
            ready: "execute-qemu",
            // The guest itself, not the `--version` query before it.
            stale: "qemu-system-x86_64 -nographic",
            next_job: &job,
        },
    );
}
