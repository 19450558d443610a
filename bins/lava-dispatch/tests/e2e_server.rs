//! End-to-end in a real lab: Debian's lava-server 2023.01 (`lava_test_support::lab`, what
//! `cargo xtask lab` starts) schedules jobs submitted through its REST API on the
//! local-shell device; a worker runs them with our `lava-run`. No fake server: the job's
//! state, its log and its results are what the server's API answers.
//!
//! Under Debian's `lava-worker` and under ours (`bins/lava-worker`): a job ends Complete with the server's log equal to our `logs.yaml` line for line
//! and its test cases in the results API; a job cancelled from the server ends Canceled
//! with finalize run and nothing left running; a job during which gunicorn restarts still
//! reaches the server whole. Needs root (the lab installs and starts lava-server): skipped
//! otherwise, a failure under CI=true.

use lava_test_support::ci::skip_or_fail;
use lava_test_support::lab::{self, Api, LOCAL_SHELL_DEVICE, LabGuard, Worker};
use lava_test_support::process::processes_with;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest a job of these tests may take from submission to the end (the scheduler
/// runs every 20 s; the jobs themselves take seconds).
const JOB_DEADLINE: Duration = Duration::from_secs(240);

/// A local-shell job whose test definition runs `steps`.
fn job(name: &str, steps: &[&str]) -> String {
    let steps: String = steps
        .iter()
        .map(|step| format!("          - {step}\n"))
        .collect();
    format!(
        "device_type: local-shell\n\
         job_name: {name}\n\
         timeouts:\n  job: {{minutes: 5}}\n  action: {{minutes: 3}}\n  connection: {{seconds: 30}}\n\
         priority: medium\n\
         visibility: public\n\
         actions:\n\
         - deploy:\n    to: overlay\n    timeout: {{minutes: 1}}\n\
         - boot:\n    method: minimal\n    prompts: ['local-shell\\$ ']\n    timeout: {{minutes: 1}}\n\
         - test:\n    timeout: {{minutes: 3}}\n    definitions:\n\
         \x20   - from: inline\n      name: smoke\n      path: inline/smoke.yaml\n      repository:\n\
         \x20       metadata:\n          format: Lava-Test Test Definition 1.0\n          name: smoke\n\
         \x20         description: {name}\n        run:\n          steps:\n{steps}"
    )
}

/// Our `logs.yaml` of job `id`, kept: a hard link to it made as soon as `lava-run` creates
/// it in the worker's job directory (`<worker dir>/tmp/<id>/`), which a worker removes once
/// the job is reported (ours does; LAVA 2023.01's only under its default worker directory).
/// `lava-run` writes the file through one handle, so the link sees every line.
async fn keep_our_log(worker: &Worker, id: u64) -> PathBuf {
    let source = worker.dir().join(format!("tmp/{id}/logs.yaml"));
    let kept = worker.dir().join(format!("logs-{id}.yaml"));
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        match std::fs::hard_link(&source, &kept) {
            Ok(()) => return kept,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!(
                "{}: {err} (did the worker start our lava-run? see {})",
                source.display(),
                worker.dir().join("worker.log").display()
            ),
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn assert_same_log(server: &str, ours: &str, id: u64) {
    let (server, ours): (Vec<&str>, Vec<&str>) = (server.lines().collect(), ours.lines().collect());
    for (n, (s, o)) in server.iter().zip(&ours).enumerate() {
        assert_eq!(s, o, "job {id}: line {} differs", n + 1);
    }
    assert_eq!(
        server.len(),
        ours.len(),
        "job {id}: the server has {} lines, our logs.yaml {}",
        server.len(),
        ours.len()
    );
}

/// The lab and the `lava-run` under test, or `None` (skipped) when this is not root.
fn lab_or_skip() -> Option<LabGuard> {
    if !rustix::process::geteuid().is_root() {
        skip_or_fail("the lab needs root (it installs and starts lava-server)");
        return None;
    }
    Some(LabGuard::start().unwrap_or_else(|err| panic!("starting the lab: {err}")))
}

fn our_lava_run() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lava-run"))
}

/// The three scenarios under the worker `program`. One test at a time: the tests share the
/// machine's lab and its one worker name.
fn scenarios(program: &Path) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(lab) = lab_or_skip() else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let api = Api::new(lab.info()).unwrap();
    // Jobs an interrupted run left queued (a benchmark's, on its own devices of the same
    // worker) would be started by this test's worker and outlive it.
    let stale = runtime.block_on(api.fail_unfinished()).unwrap();
    if stale > 0 {
        eprintln!("failed {stale} unfinished jobs left on the server");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut worker = Worker::start(
        lab.info(),
        program,
        Some(&our_lava_run()),
        &dir.path().join("worker"),
    )
    .unwrap();
    runtime.block_on(async {
        completes_with_the_same_log_and_results(&api, &worker).await;
        cancel_ends_canceled_with_finalize(&api, &worker).await;
        a_web_restart_loses_no_line(&api, &worker).await;
    });
    worker.stop();
    let left = processes_with(&dir.path().display().to_string());
    assert!(left.is_empty(), "left running: {left:?}");
}

async fn completes_with_the_same_log_and_results(api: &Api, worker: &Worker) {
    let id = api
        .submit(
            &std::fs::read_to_string(lava_test_support::paths::fixture(
                "local-shell/inline-job.yaml",
            ))
            .unwrap(),
        )
        .await
        .unwrap();
    let ours = keep_our_log(worker, id).await;
    let job = api.wait_finished(id, JOB_DEADLINE).await.unwrap();
    assert_eq!(
        job["health"],
        "Complete",
        "job {id}: {job}\nworker log: {}",
        worker.dir().join("worker.log").display()
    );
    // The lab's local-shell device, or one `cargo xtask bench worker` added (same type).
    let device = job["actual_device"].as_str().unwrap_or_default();
    assert!(
        device == LOCAL_SHELL_DEVICE || device.starts_with("lava-rs-bench-"),
        "job {id} ran on {device:?}"
    );
    assert_same_log(&api.log(id).await.unwrap(), &read(&ours), id);
    let tests = api.tests(id).await.unwrap();
    for (suite, case, result) in [
        ("0_smoke", "always-pass", "pass"),
        ("0_smoke", "always-fail", "fail"),
        ("0_smoke", "speed", "pass"),
        ("lava", "job", "pass"),
    ] {
        assert!(
            tests
                .iter()
                .any(|(s, c, r)| s == suite && c == case && r == result),
            "job {id}: no {suite}/{case} {result} in the results API: {tests:?}"
        );
    }
}

async fn cancel_ends_canceled_with_finalize(api: &Api, worker: &Worker) {
    let id = api
        .submit(&job(
            "cancelled from the server",
            &["lava-test-case started --shell true", "sleep 3171"],
        ))
        .await
        .unwrap();
    let ours = keep_our_log(worker, id).await;
    // Cancel once the test shell is inside the long step.
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let job = api.job(id).await.unwrap();
        if job["state"] == "Running" && api.log(id).await.unwrap().contains("started") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never reached its sleep: {job}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    api.cancel(id).await.unwrap();
    let job = api.wait_finished(id, JOB_DEADLINE).await.unwrap();
    assert_eq!(job["health"], "Canceled", "job {id}: {job}");
    let log = api.log(id).await.unwrap();
    let finalize = |edge: &str| {
        log.lines().any(|line| {
            line.contains(&format!("\"msg\": \"{edge}: ")) && line.contains(" finalize (")
        })
    };
    assert!(
        finalize("start") && finalize("end"),
        "job {id}: finalize did not run (start and end) in the server's log"
    );
    assert_same_log(&log, &read(&ours), id);
    let left = processes_with("sleep 3171");
    assert!(left.is_empty(), "job {id}: left running: {left:?}");
    let output_dir = worker.dir().join(format!("tmp/{id}"));
    let left = processes_with(&output_dir.display().to_string());
    assert!(left.is_empty(), "job {id}: left running: {left:?}");
}

async fn a_web_restart_loses_no_line(api: &Api, worker: &Worker) {
    let id = api
        .submit(&job(
            "gunicorn restarted mid-job",
            &[
                "lava-test-case before-restart --shell true",
                "sleep 20",
                "lava-test-case after-restart --shell true",
            ],
        ))
        .await
        .unwrap();
    let ours = keep_our_log(worker, id).await;
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let job = api.job(id).await.unwrap();
        if job["state"] == "Running" && api.log(id).await.unwrap().contains("before-restart") {
            break;
        }
        assert!(Instant::now() < deadline, "job {id} never started: {job}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::task::spawn_blocking(lab::restart_web)
        .await
        .unwrap()
        .expect("gunicorn restarts");
    let job = api.wait_finished(id, JOB_DEADLINE).await.unwrap();
    assert_eq!(job["health"], "Complete", "job {id}: {job}");
    assert_same_log(&api.log(id).await.unwrap(), &read(&ours), id);
    let tests = api.tests(id).await.unwrap();
    assert!(
        tests
            .iter()
            .any(|(_, case, result)| case == "after-restart" && result == "pass"),
        "job {id}: {tests:?}"
    );
}

#[test]
fn debian_lava_worker_runs_our_lava_run_for_lava_server() {
    scenarios(Path::new("/usr/bin/lava-worker"));
}

#[test]
fn our_lava_worker_runs_our_lava_run_for_lava_server() {
    scenarios(&lava_test_support::paths::lava_worker());
}
