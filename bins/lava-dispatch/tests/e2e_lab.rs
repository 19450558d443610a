//! End-to-end: `lava-run` as a lab's `lava-worker` starts it, on the local-shell device:
//! the log uploaded to a (fake) lava-server, the job's scratch directory under the
//! dispatcher prefix and removed at the end, and the signals a worker or an operator sends.

mod common;

use common::lava_run;

use lava_log_upload::test_server::{FakeServer, Fault};
use lava_test_support::paths::free_loopback_port;
use lava_test_support::unique_job_id;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "Qm0pX7e2eT0k3nNeverInAnyFile0123";

fn fixture(name: &str) -> String {
    lava_test_support::paths::fixture(&format!("local-shell/{name}"))
        .display()
        .to_string()
}

/// The records of a `logs.yaml`, without their `- ` list markers.
fn records(logs: &Path) -> Vec<String> {
    std::fs::read_to_string(logs)
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix("- ").unwrap_or(l).to_string())
        .collect()
}

/// Every file below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_below(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn the_log_reaches_the_server_line_for_line_and_the_token_nowhere() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let id = unique_job_id();
    let server = runtime.block_on(FakeServer::start(TOKEN, &id)).unwrap();
    // The server misbehaves on the first requests: nothing may be lost or doubled.
    server.push_faults([
        Fault::Drop,
        Fault::Status(503),
        Fault::Partial(3),
        Fault::DropAfterStore,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let run = Command::new(lava_run())
        .args(["--url", &server.url(), "--token", TOKEN, "--job-id", &id])
        .args(["--job-log-interval", "1", "--output-dir"])
        .arg(&output)
        .args([
            "--device",
            &fixture("device.yaml"),
            &fixture("inline-job.yaml"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");

    let logs = records(&output.join("logs.yaml"));
    assert!(logs.len() > 50, "{} records", logs.len());
    assert_eq!(
        server.stored(),
        logs,
        "the server's log is logs.yaml, line for line"
    );
    assert!(server.gaps().is_empty());
    // LAVA sends the job's own result record before it writes result.yaml.
    assert!(
        logs.last()
            .unwrap()
            .contains("\"case\": \"job\", \"result\": \"pass\""),
        "{}",
        logs.last().unwrap()
    );
    let requests = server.requests();
    assert!(requests.len() >= 5, "{requests:?}");
    assert!(requests.iter().all(|r| r.token.as_deref() == Some(TOKEN)));
    assert!(requests.iter().all(|r| {
        r.user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("lava "))
    }));

    assert!(!stderr.contains(TOKEN), "{stderr}");
    assert!(!String::from_utf8_lossy(&run.stdout).contains(TOKEN));
    for file in files_below(&output) {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(TOKEN), "the token is in {}", file.display());
    }
}

#[test]
fn a_dead_server_does_not_stall_the_job_and_a_signal_ends_the_final_upload() {
    // Nothing listens on this port.
    let port = free_loopback_port();
    let id = unique_job_id();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let started = Instant::now();
    let mut child = Command::new(lava_run())
        .args([
            "--url",
            &format!("http://127.0.0.1:{port}/"),
            "--token",
            TOKEN,
        ])
        .args(["--job-id", &id, "--job-log-interval", "1", "--output-dir"])
        .arg(&output)
        .args([
            "--device",
            &fixture("device.yaml"),
            &fixture("inline-job.yaml"),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The job ends (its last record written) while the upload is still failing.
    let logs = output.join("logs.yaml");
    wait_for(&mut child, Duration::from_secs(120), || {
        std::fs::read_to_string(&logs).is_ok_and(|t| t.contains("\"case\": \"job\""))
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "lava-run keeps trying to send the log"
    );
    assert!(
        !output.join("result.yaml").exists(),
        "the log is drained first"
    );
    send(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(status, Some(0));
    assert!(started.elapsed() < Duration::from_secs(120));
    let result = std::fs::read_to_string(output.join("result.yaml")).unwrap();
    assert!(result.contains("result: pass"), "{result}");
    let last = records(&logs).pop().unwrap();
    assert!(
        last.contains("\"case\": \"job\", \"result\": \"pass\""),
        "a signal after the job adds nothing to its log: {last}"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("log records were not sent to http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "{stderr}");
}

/// The local-shell job with a test step that sleeps, so a signal arrives mid-test.
fn sleeping_job(dir: &Path) -> PathBuf {
    let job = std::fs::read_to_string(fixture("inline-job.yaml"))
        .unwrap()
        .replace(
            "- lava-test-case always-pass --shell true",
            "- lava-test-case always-pass --shell true\n          - sleep 300",
        );
    let path = dir.join("sleeping-job.yaml");
    std::fs::write(&path, job).unwrap();
    path
}

fn send(child: &Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// Poll `ready` until true; fails the test (killing the child) after `limit`.
fn wait_for(child: &mut Child, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > limit || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("lava-run did not reach the expected point");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("lava-run did not end within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The scratch directory lava-run logged it removed.
fn removed_scratch(logs: &str) -> PathBuf {
    let marker = "Root tmp directory removed at ";
    let at = logs.find(marker).expect("the scratch directory is removed") + marker.len();
    PathBuf::from(&logs[at..at + logs[at..].find('"').unwrap()])
}

#[test]
fn each_signal_cancels_the_job_and_finalize_runs() {
    let dir = tempfile::tempdir().unwrap();
    let job = sleeping_job(dir.path());
    let dispatcher = dir.path().join("dispatcher.yaml");
    std::fs::write(&dispatcher, "prefix: e2e-lab-\n").unwrap();
    let signals = [
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGUSR2, "SIGUSR2"),
    ];
    for (signal, name) in signals {
        let id = unique_job_id();
        let output = dir.path().join(format!("out-{name}"));
        let mut child = Command::new(lava_run())
            .args(["--job-id", &id, "--log-format", "yaml", "--output-dir"])
            .arg(&output)
            .arg("--dispatcher")
            .arg(&dispatcher)
            .args(["--device", &fixture("device.yaml")])
            .arg(&job)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let logs = output.join("logs.yaml");
        // The test shell is running (its first case has passed, the sleep has begun).
        wait_for(&mut child, Duration::from_secs(120), || {
            std::fs::read_to_string(&logs)
                .is_ok_and(|t| t.contains("TEST_CASE_ID=always-pass RESULT=pass"))
        });
        let scratch = [
            PathBuf::from("/var/lib/lava/dispatcher/tmp"),
            std::env::temp_dir().join(format!("lava-dispatcher-{}", unsafe { libc::geteuid() })),
        ]
        .map(|root| root.join(format!("e2e-lab-{id}")))
        .into_iter()
        .find(|p| p.is_dir())
        .expect("the job's scratch directory, named with the dispatcher prefix");
        let mode = std::fs::metadata(&scratch).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{name}: {}", scratch.display());

        send(&child, signal);
        let status = wait_exit(&mut child, Duration::from_secs(60));
        assert_eq!(status, Some(1), "{name}");
        let result = std::fs::read_to_string(output.join("result.yaml")).unwrap();
        assert!(
            result.contains("result: fail")
                && result.contains("error_type: Canceled")
                && result.contains("error_msg: The job was canceled"),
            "{name}: {result}"
        );
        let text = std::fs::read_to_string(&logs).unwrap();
        let received = text
            .find(&format!("Received {name}: the job was canceled"))
            .unwrap_or_else(|| panic!("{name} is logged"));
        let finalize = text.find("start: 4 finalize").expect("finalize runs");
        assert!(
            received < finalize,
            "{name}: finalize runs after the signal"
        );
        assert!(
            text.contains("end: 4 finalize"),
            "{name}: finalize completes"
        );
        assert_eq!(removed_scratch(&text), scratch);
        assert!(
            !scratch.exists(),
            "{name}: {} is removed",
            scratch.display()
        );
    }
}

#[test]
fn a_second_signal_stops_finalize_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let job = sleeping_job(dir.path());
    // A device whose power-off hangs: finalize would wait for its whole timeout.
    let device = std::fs::read_to_string(fixture("device.yaml"))
        .unwrap()
        .replace("power_off: /bin/true", "power_off: sleep 600");
    let device_path = dir.path().join("device.yaml");
    std::fs::write(&device_path, device).unwrap();
    let id = unique_job_id();
    let output = dir.path().join("out");
    let mut child = Command::new(lava_run())
        .args(["--job-id", &id, "--log-format", "yaml", "--output-dir"])
        .arg(&output)
        .arg("--device")
        .arg(&device_path)
        .arg(&job)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let logs = output.join("logs.yaml");
    wait_for(&mut child, Duration::from_secs(120), || {
        std::fs::read_to_string(&logs)
            .is_ok_and(|t| t.contains("TEST_CASE_ID=always-pass RESULT=pass"))
    });
    send(&child, libc::SIGTERM);
    wait_for(&mut child, Duration::from_secs(60), || {
        std::fs::read_to_string(&logs).is_ok_and(|t| t.contains("start: 4.1 power-off"))
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "power-off hangs");
    send(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(status, Some(1));
    let text = std::fs::read_to_string(&logs).unwrap();
    assert!(
        text.contains("the job was canceled again (too long to cancel)"),
        "{text}"
    );
    let result = std::fs::read_to_string(output.join("result.yaml")).unwrap();
    assert!(result.contains("error_type: Canceled"), "{result}");
}

#[test]
fn env_dut_variables_are_exported_on_the_device() {
    // The local-shell job's overlay deploy has no deploy-device-env (as LAVA's); the QEMU
    // job's image deploy has.
    let job = lava_test_support::paths::test_system().join("qemu-smoke.yaml");
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok();
    if !qemu || !job.exists() {
        lava_test_support::ci::skip_or_fail(
            "QEMU or target/test-system is missing (run `cargo xtask test-system`)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let env_dut = dir.path().join("env-dut.yaml");
    std::fs::write(
        &env_dut,
        "purge: true\noverrides:\n  LAVA_RS_ENV_DUT: from-env-dut\n",
    )
    .unwrap();
    let output = dir.path().join("out");
    let run = Command::new(lava_run())
        .args(["--job-id", &unique_job_id(), "--log-format", "yaml"])
        .arg("--output-dir")
        .arg(&output)
        .arg("--env-dut")
        .arg(&env_dut)
        .arg("--device")
        .arg(lava_test_support::paths::fixture("qemu/device.yaml"))
        .arg(&job)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(run.code(), Some(0));
    let log = std::fs::read_to_string(output.join("logs.yaml")).unwrap();
    assert!(
        log.contains(r#""echo export LAVA_RS_ENV_DUT=\\'from-env-dut\\' >> ~/.bashrc""#),
        "the variable is exported on the device"
    );
    // purge: the worker's own environment is not exported.
    assert!(
        !log.contains("echo export PATH="),
        "purge drops the worker's environment"
    );
}
