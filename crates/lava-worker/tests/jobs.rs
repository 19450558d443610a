//! The worker against a fake lava-server (`lava_worker::test_server`), running real jobs
//! with our `lava-run` on the local-shell device: a job starts, its log arrives, its end is
//! reported; a cancel runs finalize and leaves no process; the server away mid-job; two
//! jobs at once and `--wait-jobs`; a restart of the worker with a job running;
//! registration; version mismatch.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lava_test_support::paths::{fixture, lava_run};
use lava_test_support::process::processes_with;
use lava_worker::test_server::{FakeLava, JobState};
use lava_worker::{Exit, TokenSource, WorkerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NAME: &str = "worker1.lab";
/// A job on a loaded machine (2 cores, several test runs) takes seconds to a minute.
const JOB_TIME: Duration = Duration::from_secs(240);

fn device() -> String {
    std::fs::read_to_string(fixture("local-shell/device.yaml")).unwrap()
}

fn smoke_job() -> String {
    std::fs::read_to_string(fixture("local-shell/inline-job.yaml")).unwrap()
}

/// A local-shell job whose test runs `steps`.
fn job_running(name: &str, steps: &[&str]) -> String {
    let steps: String = steps.iter().map(|s| format!("          - {s}\n")).collect();
    format!(
        "device_type: local-shell
job_name: {name}
timeouts:
  job: {{minutes: 5}}
  action: {{minutes: 3}}
  connection: {{seconds: 30}}
priority: medium
visibility: public
actions:
- deploy:
    to: overlay
    timeout: {{minutes: 1}}
- boot:
    method: minimal
    prompts: ['local-shell\\$ ']
    timeout: {{minutes: 1}}
- test:
    timeout: {{minutes: 3}}
    definitions:
    - from: inline
      name: steps
      path: inline/steps.yaml
      repository:
        metadata:
          format: Lava-Test Test Definition 1.0
          name: steps
          description: worker test steps
        run:
          steps:
{steps}"
    )
}

fn config(lava: &FakeLava, dir: &Path) -> WorkerConfig {
    let mut config = WorkerConfig::new(NAME, &lava.url())
        .unwrap()
        .with_worker_dir(dir.join("worker"));
    config.token = TokenSource::Given(lava.worker_token());
    config.lava_run = lava_run();
    config.ping_interval = Duration::from_secs(1);
    config.check_interval = Duration::from_millis(200);
    config.http_timeout = Duration::from_secs(10);
    config.job_log_interval = 1;
    config.download_root = dir.join("dispatcher-tmp");
    config
}

/// A worker running on a task, stopped by [`RunningWorker::stop`].
struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<Exit, lava_worker::WorkerError>>,
}

impl RunningWorker {
    fn start(config: WorkerConfig) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(lava_worker::run(config, async {
            let _ = stopped.await;
        }));
        RunningWorker {
            stop: Some(stop),
            task,
        }
    }

    /// Ask the worker to stop (SIGTERM's effect).
    fn request_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    async fn stop(mut self) -> Exit {
        self.request_stop();
        self.wait(Duration::from_secs(30)).await
    }

    async fn wait(self, timeout: Duration) -> Exit {
        tokio::time::timeout(timeout, self.task)
            .await
            .expect("the worker returns in time")
            .expect("the worker task does not panic")
            .expect("the worker ends without error")
    }
}

/// The job's lava-run pid from the worker's state file.
fn state_pid(worker_dir: &Path, id: u64) -> Option<i32> {
    let text = std::fs::read_to_string(worker_dir.join("state.json")).ok()?;
    let state: serde_json::Value = serde_json::from_str(&text).ok()?;
    state["jobs"]
        .as_array()?
        .iter()
        .find(|j| j["id"] == id)
        .and_then(|j| j["pid"].as_i64())
        .map(|p| p as i32)
}

fn state_jobs(worker_dir: &Path) -> usize {
    let text = std::fs::read_to_string(worker_dir.join("state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    state["jobs"].as_array().unwrap().len()
}

fn alive(pid: i32) -> bool {
    lava_procfs::is_running(pid as u32)
}

fn has_record(logs: &[String], needle: &str) -> bool {
    logs.iter().any(|line| line.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_its_log_arrives_and_its_end_is_reported() {
    let lava = FakeLava::start(NAME, "2023.01").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&lava, dir.path());
    let worker_dir = config.worker_dir.clone();
    let id = lava.submit_with(
        &smoke_job(),
        &device(),
        "prefix: lab-\n",
        "overrides: {LANG: C}\n",
        "",
    );
    let job_dir = format!("lab-{id}");
    std::fs::create_dir_all(dir.path().join("dispatcher-tmp").join(&job_dir)).unwrap();
    let worker = RunningWorker::start(config);

    let job = lava
        .wait_for(id, JOB_TIME, "FINISHED reported", |j| {
            j.state == JobState::Finished
        })
        .await;
    let finished = job.finished.clone().unwrap();
    assert_eq!(finished["result"], "pass", "{finished:?}");
    assert_eq!(finished["error_type"], "");
    assert!(
        finished["description"].contains("lava-test-shell"),
        "the pipeline description is sent: {finished:?}"
    );
    assert!(job.running_posts >= 1);
    // lava-run's own uploader sent the log, with the test's results.
    assert!(has_record(&job.logs, "always-pass"), "logs: {:?}", job.logs);
    assert!(has_record(&job.logs, "\"lvl\": \"results\""));

    // The directories are removed and the job forgotten once the server acknowledged.
    let exit = worker.stop().await;
    assert_eq!(exit, Exit::Stopped);
    assert!(!worker_dir.join("tmp").join(&job_dir).exists());
    assert!(!dir.path().join("dispatcher-tmp").join(&job_dir).exists());
    assert_eq!(state_jobs(&worker_dir), 0);
    assert_eq!(
        std::fs::read_to_string(worker_dir.join("token")).unwrap(),
        lava.worker_token()
    );

    // LAVA's shapes: paths, headers, form bodies.
    let requests = lava.requests();
    let ping = requests
        .iter()
        .find(|r| r.target.starts_with("/scheduler/internal/v1/workers/"))
        .unwrap();
    assert_eq!(ping.method, "GET");
    assert_eq!(
        ping.target,
        format!("/scheduler/internal/v1/workers/{NAME}/?version=2023.01")
    );
    assert_eq!(ping.token.as_deref(), Some(lava.worker_token().as_str()));
    assert_eq!(ping.user_agent.as_deref(), Some("lava-worker 2023.01"));
    let job_path = format!("/scheduler/internal/v1/jobs/{id}/");
    let fetches = requests
        .iter()
        .filter(|r| r.method == "GET" && r.target == job_path)
        .count();
    assert_eq!(fetches, 1, "the definition is fetched once");
    let running = requests
        .iter()
        .find(|r| r.method == "POST" && r.target == job_path)
        .unwrap();
    assert_eq!(
        running.form.get("state").map(String::as_str),
        Some("RUNNING")
    );
    assert_eq!(running.token.as_deref(), Some(job.token.as_str()));
    assert_eq!(
        running.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let uploads: Vec<_> = requests
        .iter()
        .filter(|r| r.target == format!("{job_path}logs/"))
        .collect();
    assert!(!uploads.is_empty());
    assert!(
        uploads
            .iter()
            .all(|r| r.token.as_deref() == Some(job.token.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_runs_finalize_and_leaves_no_process() {
    let lava = FakeLava::start(NAME, "2023.01").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&lava, dir.path());
    let worker_dir = config.worker_dir.clone();
    let marker = "sleep 4711";
    let id = lava.submit(&job_running("cancel me", &[marker]), &device());
    let worker = RunningWorker::start(config);

    lava.wait_for(id, JOB_TIME, "the test shell runs the step", |j| {
        has_record(&j.logs, marker)
            || !processes_with(marker).is_empty() && j.state == JobState::Running
    })
    .await;
    let pid = state_pid(&worker_dir, id).expect("the job's pid is in the state file");
    lava.cancel(id);
    let job = lava
        .wait_for(id, JOB_TIME, "FINISHED after the cancel", |j| {
            j.state == JobState::Finished
        })
        .await;
    let finished = job.finished.unwrap();
    assert_eq!(finished["result"], "fail");
    assert_eq!(finished["error_type"], "Canceled", "{finished:?}");
    assert!(
        has_record(&job.logs, " finalize (duration"),
        "finalize ran and its log arrived: {:?}",
        job.logs
    );
    assert!(!alive(pid), "lava-run {pid} is gone");
    assert!(!lava_worker::process::group_has_members(pid));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !processes_with(marker).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "left running: {:?}",
            processes_with(marker)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(worker.stop().await, Exit::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_goes_on_while_the_server_is_away_and_its_end_is_reported_on_return() {
    let lava = FakeLava::start(NAME, "2023.01").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&lava, dir.path());
    let worker_dir = config.worker_dir.clone();
    let id = lava.submit(
        &job_running(
            "outage",
            &["sleep 6", "lava-test-case after-outage --shell true"],
        ),
        &device(),
    );
    let worker = RunningWorker::start(config);
    lava.wait_for(id, JOB_TIME, "RUNNING", |j| {
        j.state == JobState::Running && !j.logs.is_empty()
    })
    .await;
    let pid = state_pid(&worker_dir, id).unwrap();

    lava.stop();
    // Longer than the job's steps: lava-run finishes its work while the server is away.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(
        lava.job(id).unwrap().state == JobState::Running,
        "nothing reached the server"
    );
    assert!(
        state_pid(&worker_dir, id).is_some(),
        "the worker still owns the job"
    );
    let alive_during_outage = alive(pid);

    lava.resume().await.unwrap();
    let job = lava
        .wait_for(id, JOB_TIME, "FINISHED once the server is back", |j| {
            j.state == JobState::Finished
        })
        .await;
    let finished = job.finished.unwrap();
    assert_eq!(
        finished["result"], "pass",
        "{finished:?} (alive during the outage: {alive_during_outage})"
    );
    // Nothing of the log was lost: the results of the steps run during the outage arrived.
    assert!(
        has_record(&job.logs, "after-outage"),
        "logs: {:?}",
        job.logs
    );
    assert_eq!(worker.stop().await, Exit::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_run_at_once_and_wait_jobs_waits_for_both() {
    let lava = FakeLava::start(NAME, "2023.01").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&lava, dir.path());
    config.wait_jobs = true;
    let worker_dir = config.worker_dir.clone();
    let device_b = device().replace("lava-rs-local-shell01", "lava-rs-local-shell02");
    let a = lava.submit(&job_running("job a", &["sleep 5"]), &device());
    let b = lava.submit(&job_running("job b", &["sleep 5"]), &device_b);
    let mut worker = RunningWorker::start(config);

    // Both run at the same time: both RUNNING before either is finished.
    let deadline = tokio::time::Instant::now() + JOB_TIME;
    loop {
        let (ja, jb) = (lava.job(a).unwrap(), lava.job(b).unwrap());
        assert!(
            ja.state != JobState::Finished && jb.state != JobState::Finished,
            "one job ended before the other started"
        );
        if state_pid(&worker_dir, a).is_some_and(alive)
            && state_pid(&worker_dir, b).is_some_and(alive)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both jobs never ran together"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stop requested with --wait-jobs: the worker returns only once both are reported.
    worker.request_stop();
    let exit = worker.wait(JOB_TIME).await;
    assert_eq!(exit, Exit::JobsDone);
    for id in [a, b] {
        let job = lava.job(id).unwrap();
        assert_eq!(job.state, JobState::Finished);
        assert_eq!(job.finished.unwrap()["result"], "pass");
    }
    assert_eq!(state_jobs(&worker_dir), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_follows_the_job_its_predecessor_started() {
    let lava = FakeLava::start(NAME, "2023.01").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&lava, dir.path());
    let worker_dir = config.worker_dir.clone();
    let id = lava.submit(&job_running("restart", &["sleep 8"]), &device());
    let first = RunningWorker::start(config.clone());
    lava.wait_for(id, JOB_TIME, "RUNNING", |j| j.state == JobState::Running)
        .await;
    let pid = state_pid(&worker_dir, id).unwrap();
    assert_eq!(first.stop().await, Exit::Stopped);
    assert!(
        alive(pid),
        "lava-run outlives the worker (KillMode=process)"
    );

    let second = RunningWorker::start(config);
    let job = lava
        .wait_for(id, JOB_TIME, "FINISHED by the second worker", |j| {
            j.state == JobState::Finished
        })
        .await;
    assert_eq!(job.finished.unwrap()["result"], "pass");
    let fetches = lava
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.target == format!("/scheduler/internal/v1/jobs/{id}/"))
        .count();
    assert_eq!(fetches, 1, "the job was not started again");
    assert!(!alive(pid));
    assert_eq!(second.stop().await, Exit::Stopped);
}

#[tokio::test]
async fn an_unregistered_worker_registers_and_stores_its_token() {
    let lava = FakeLava::start(NAME, "2023.01").await.unwrap();
    lava.unregister_worker();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&lava, dir.path());
    config.token = TokenSource::File;
    let token_file: PathBuf = config.token_file.clone();
    let worker = RunningWorker::start(config);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !lava
        .requests()
        .iter()
        .any(|r| r.target.contains("?version="))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ping after registration"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(worker.stop().await, Exit::Stopped);
    let requests = lava.requests();
    let register = &requests[0];
    assert_eq!(
        (register.method.as_str(), register.target.as_str()),
        ("POST", "/scheduler/internal/v1/workers/")
    );
    assert_eq!(register.token, None);
    assert_eq!(register.form.get("name").map(String::as_str), Some(NAME));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let stored = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(stored, lava.worker_token());
    let ping = requests
        .iter()
        .find(|r| r.target.contains("?version="))
        .unwrap();
    assert_eq!(ping.token.as_deref(), Some(stored.as_str()));
}

#[tokio::test]
async fn a_version_mismatch_ends_the_worker_when_asked() {
    let lava = FakeLava::start(NAME, "2024.09").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&lava, dir.path());
    config.exit_on_version_mismatch = true;
    let worker = RunningWorker::start(config);
    assert_eq!(
        worker.wait(Duration::from_secs(30)).await,
        Exit::VersionMismatch
    );
}

#[tokio::test]
async fn a_job_that_cannot_start_and_a_cancel_before_the_start_are_reported() {
    let lava = FakeLava::start(NAME, "2023.01").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = WorkerConfig::new(NAME, &lava.url())
        .unwrap()
        .with_worker_dir(dir.path().join("worker"));
    config.token = TokenSource::Given(lava.worker_token());
    config.lava_run = dir.path().join("no-such-lava-run");
    config.nice = false;
    config.ping_interval = Duration::from_secs(1);
    config.check_interval = Duration::from_millis(100);
    config.download_root = dir.path().join("dispatcher-tmp");
    let broken = lava.submit(&smoke_job(), &device());
    let canceled = lava.submit(&smoke_job(), &device());
    lava.cancel(canceled);
    let worker = RunningWorker::start(config);

    let job = lava
        .wait_for(broken, Duration::from_secs(30), "FINISHED", |j| {
            j.state == JobState::Finished
        })
        .await;
    let finished = job.finished.unwrap();
    assert_eq!(
        (finished["result"].as_str(), finished["error_type"].as_str()),
        ("fail", "Bug")
    );
    assert!(
        finished["errors"].contains("cannot start")
            && finished["errors"].contains("no-such-lava-run"),
        "the reason is the job's errors: {finished:?}"
    );
    let job = lava
        .wait_for(canceled, Duration::from_secs(30), "FINISHED", |j| {
            j.state == JobState::Finished
        })
        .await;
    let finished = job.finished.unwrap();
    assert_eq!(
        (finished["result"].as_str(), finished["error_type"].as_str()),
        ("fail", "Canceled")
    );
    assert_eq!(worker.stop().await, Exit::Stopped);
}
