//! Chaos: `lava-run` SIGKILLed in the middle of a job. What it started keeps running
//! (here a test shell's `setsid sleep`, as a QEMU would); the next job on the same device
//! ends it (the device claim, lava_dispatcher::device_claim), removes the dead job's
//! scratch directory, and completes.

mod common;

use common::lava_run;
use lava_test_support::paths::workspace;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The run token (`LAVA_RS_RUN_TOKEN`) in `pid`'s environment.
fn token_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|var| {
        let var = String::from_utf8_lossy(var);
        var.strip_prefix("LAVA_RS_RUN_TOKEN=").map(str::to_string)
    })
}

/// Live processes whose command line is `command` and whose run token starts `prefix`.
fn marked(command: &str, prefix: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).replace('\0', " ").trim() == command
                && token_of(*pid).is_some_and(|t| t.starts_with(prefix))
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z ")
        })
        .collect()
}

/// Kills what a failed test left (the test's own processes only).
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in marked("sleep 597", &self.0) {
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

#[test]
fn the_next_job_on_a_device_ends_what_a_killed_dispatcher_left() {
    let dir = tempfile::tempdir().unwrap();
    // A device of this test's own (its hostname names the claim).
    let hostname = format!("chaos-kill-{}", std::process::id());
    let device_text = std::fs::read_to_string(workspace().join("fixtures/local-shell/device.yaml"))
        .unwrap()
        .replace(
            "hostname: lava-rs-local-shell01",
            &format!("hostname: {hostname}"),
        );
    assert!(device_text.contains(&hostname));
    let device = dir.path().join("device.yaml");
    std::fs::write(&device, device_text).unwrap();
    let job = dir.path().join("killed.yaml");
    std::fs::write(&job, KILLED_JOB).unwrap();
    let first_id = format!("{}1", std::process::id());
    let out1 = dir.path().join("out1");
    let mut first = Command::new(lava_run())
        .args(["--job-id", &first_id, "--output-dir"])
        .arg(&out1)
        .arg("--device")
        .arg(&device)
        .arg(&job)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!("{}.", first.id());
    let _leftovers = Leftovers(prefix.clone());
    // Wait for the test shell to have started its background sleep.
    let deadline = Instant::now() + Duration::from_secs(120);
    let log = out1.join("logs.yaml");
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("\"case\": \"started\"") && !marked("sleep 597", &prefix).is_empty() {
            break;
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first job ended before it was killed:\n{text}"
        );
        assert!(
            Instant::now() < deadline,
            "the first job never started its test:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let stale = marked("sleep 597", &prefix);
    assert_eq!(stale.len(), 1, "the killed dispatcher's sleep outlives it");
    let stale_scratch = Path::new(lava_pipeline::scratch::DISPATCHER_DOWNLOAD_DIR);
    let stale_scratch = lava_pipeline::scratch::root_or_fallback(stale_scratch).join(&first_id);

    // The next job on the device.
    let out2 = dir.path().join("out2");
    let second = Command::new(lava_run())
        .args([
            "--job-id",
            &format!("{}2", std::process::id()),
            "--output-dir",
        ])
        .arg(&out2)
        .arg("--device")
        .arg(&device)
        .arg(workspace().join("fixtures/local-shell/inline-job.yaml"))
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
    assert!(
        log.contains(&format!("Ending stale process {}", stale[0])),
        "the stale process is named in the log:\n{log}"
    );
    assert!(log.contains(&format!("by job {first_id}")), "{log}");
    assert!(
        marked("sleep 597", &prefix).is_empty(),
        "the stale sleep is gone"
    );
    assert!(
        !stale_scratch.exists(),
        "the killed job's scratch directory {} is removed",
        stale_scratch.display()
    );
}
