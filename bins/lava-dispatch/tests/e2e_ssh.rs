//! End-to-end: the ssh device job (`fixtures/ssh`) through the real `lava-run` binary,
//! against a private sshd on a loopback port that the test starts
//! (`lava_test_support::sshd`; skipped outside CI when sshd is
//! missing): deploy `to: ssh`, boot `method: ssh`, a test shell with a passing and a
//! failing case; the private key never reaches the log; a connection dropped mid-test
//! fails the job as an InfrastructureError and finalize still runs.

mod common;

use common::{has, lava_run, results};
use lava_test_support::paths::workspace;
use lava_test_support::process::processes_with;
use lava_test_support::sshd::Sshd;
use lava_test_support::unique_job_id;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The fixture device and job for `sshd`, written into `dir`; the test shell's results
/// directory is `dir/scratch`.
struct Fixture {
    dir: tempfile::TempDir,
    job_id: String,
}

impl Fixture {
    fn new(sshd: &Sshd, job_edit: impl FnOnce(String) -> String) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let root = workspace();
        let device = std::fs::read_to_string(root.join("fixtures/ssh/device.yaml"))
            .unwrap()
            .replace("@SSH_HOST@", sshd.host())
            .replace("@SSH_PORT@", &sshd.port().to_string())
            .replace("@SSH_USER@", sshd.user())
            .replace(
                "@SSH_IDENTITY_FILE@",
                &sshd.identity_file().display().to_string(),
            )
            .replace("@SCRATCH@", &scratch.display().to_string());
        std::fs::write(dir.path().join("device.yaml"), device).unwrap();
        let job = std::fs::read_to_string(root.join("fixtures/ssh/ssh-job.yaml")).unwrap();
        std::fs::write(dir.path().join("job.yaml"), job_edit(job)).unwrap();
        Fixture {
            dir,
            job_id: unique_job_id(),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(lava_run());
        command
            .args(["--job-id", &self.job_id, "--output-dir"])
            .arg(self.out())
            .arg("--device")
            .arg(self.dir.path().join("device.yaml"))
            .arg(self.dir.path().join("job.yaml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn scratch(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.out().join("logs.yaml")).unwrap()
    }

    fn result(&self) -> serde_yaml::Value {
        serde_yaml::from_str(&std::fs::read_to_string(self.out().join("result.yaml")).unwrap())
            .unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // The worker-side job directory lava-run keeps its overlay in.
        let _ =
            std::fs::remove_dir_all(std::env::temp_dir().join(format!("lava-rs-{}", self.job_id)));
    }
}

fn assert_no_key_material(text: &str, key_file: &Path) {
    let key = std::fs::read_to_string(key_file).unwrap();
    let body: Vec<&str> = key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 8)
        .collect();
    assert!(!body.is_empty());
    for line in body {
        assert!(!text.contains(line), "private key material in logs.yaml");
    }
}

#[test]
fn ssh_job_deploys_boots_and_runs_its_test_shell_over_ssh() {
    let Some(sshd) = Sshd::start() else { return };
    let fixture = Fixture::new(&sshd, |job| job);
    let started = Instant::now();
    let status = fixture.command().status().unwrap();
    eprintln!("lava-run took {:?}", started.elapsed());
    let log = fixture.log();
    assert_eq!(status.code(), Some(0), "{log}\nsshd:\n{}", sshd.log());
    assert_eq!(
        fixture.result().get("result").and_then(|v| v.as_str()),
        Some("pass")
    );
    let r = results(&log);
    assert!(has(&r, "0_ssh-smoke", "always-pass", "pass"), "{r:?}");
    assert!(has(&r, "0_ssh-smoke", "always-fail", "fail"), "{r:?}");
    assert!(has(&r, "0_ssh-smoke", "speed", "pass"), "{r:?}");
    assert!(has(&r, "lava", "scp-deploy", "pass"), "{r:?}");
    assert!(has(&r, "lava", "job", "pass"), "{r:?}");
    for started in [
        "start: 1 scp-overlay",
        "start: 2 login-ssh",
        "start: 2.1 scp-deploy",
        "start: 2.3 ssh-connection",
        "start: 2.7 scp-overlay-unpack",
        "start: 3 lava-test-retry",
        "start: 4 finalize",
    ] {
        assert!(log.contains(started), "no '{started}' in the log");
    }
    // The test shell ran in the scratch results directory, not at /.
    let results_dir = fixture.scratch().join(format!("lava-{}", fixture.job_id));
    assert!(results_dir.join("bin/lava-test-runner").is_file());
    assert!(!Path::new(&format!("/lava-{}", fixture.job_id)).exists());
    // The key file is named, its content never logged.
    assert!(log.contains(&sshd.identity_file().display().to_string()));
    assert_no_key_material(&log, sshd.identity_file());
    // Finalize closed the connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sshd.session_pids().is_empty() {
        assert!(Instant::now() < deadline, "ssh sessions left behind");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_dropped_ssh_connection_fails_the_job_as_infrastructure_and_finalize_runs() {
    let Some(sshd) = Sshd::start() else { return };
    let marker = format!("sleep 48{}", unique_job_id());
    let fixture = Fixture::new(&sshd, |job| {
        job.replace(
            "- lava-test-case speed --result pass --measurement 42 --units MB/s",
            &format!("- {marker}"),
        )
    });
    let mut child = fixture.command().spawn().unwrap();
    let start = Instant::now();
    // The connection drops once the guest sleeps and the case before it has reached
    // lava-run's log (its signal may still be in flight when the sleep starts).
    let passed_before = || {
        let log = std::fs::read_to_string(fixture.out().join("logs.yaml")).unwrap_or_default();
        has(&results(&log), "0_ssh-smoke", "always-pass", "pass")
    };
    while processes_with(&marker).is_empty() || !passed_before() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("lava-run ended early ({status}):\n{}", fixture.log());
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the test never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sshd.kill_sessions();
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if killed.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lava-run did not notice the lost connection");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = fixture.log();
    assert_eq!(status.code(), Some(1), "{log}");
    let result = fixture.result();
    assert_eq!(
        result.get("error_type").and_then(|v| v.as_str()),
        Some("Infrastructure"),
        "{result:?}"
    );
    let message = result
        .get("error_msg")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    eprintln!("error_msg: {message}");
    assert!(
        message.contains(&format!("ssh connection to 127.0.0.1:{} lost", sshd.port())),
        "{message}"
    );
    let r = results(&log);
    assert!(has(&r, "0_ssh-smoke", "always-pass", "pass"), "{r:?}");
    assert!(log.contains("\"msg\": \"start: 4 finalize"), "finalize ran");
    assert!(
        log.trim_end()
            .ends_with("\"error_type\": \"Infrastructure\"}}"),
        "the log is complete"
    );
    // The step's process dies of the lost session's hang-up, a moment after the session.
    let ended = Instant::now();
    while !processes_with(&marker).is_empty() {
        assert!(
            ended.elapsed() < Duration::from_secs(30),
            "the test step's process outlived the job"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_no_key_material(&log, sshd.identity_file());
}
