//! The run-time console, overlay and test-shell functions against a real `/bin/sh` on a
//! pty (the local-shell device of `fixtures/local-shell`), driven through the executor's
//! `run_node` so deadlines and error handling are the pipeline's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lava_actions::runtime::console::{self, ConsoleConnection};
use lava_actions::runtime::{test_overlay, test_shell};
use lava_pipeline::{
    Action, Device, ErrorKind, Job, JobLogger, LavaResult, Pipeline, RunContext, TestInfo,
    async_trait,
};
use lava_test_support::runtime::{ActionSpec, captured_results, unique_job_id};
use serde_yaml::{Mapping, Value};
use tokio::time::Instant;

const DEVICE: &str = include_str!("../../../fixtures/local-shell/device.yaml");
const INLINE_JOB: &str = include_str!("../../../fixtures/local-shell/inline-job.yaml");
const GIT_JOB: &str = include_str!("../../../fixtures/local-shell/git-job.yaml");
const PROMPT: &str = r"local-shell\$ ";

/// One step of a test job: which runtime function to call.
enum Step {
    Connect,
    Login,
    Overlay(Vec<String>),
    Compress,
    Unpack(PathBuf),
    TestShell,
    Reset,
}

struct StepAction(Step);

#[async_trait]
impl Action for StepAction {
    fn name(&self) -> &str {
        "step"
    }
    fn class_name(&self) -> &str {
        "Step"
    }
    fn description(&self) -> &str {
        "test step"
    }
    fn summary(&self) -> &str {
        "test step"
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        match &self.0 {
            Step::Connect => {
                let command = console::device_connect_command(ctx)?;
                console::connect_device(ctx, &command).await
            }
            Step::Login => console::auto_login(ctx).await,
            Step::Overlay(levels) => test_overlay::build_overlay(ctx, levels).await.map(|_| ()),
            Step::Compress => test_overlay::compress_overlay(ctx).await.map(|_| ()),
            Step::Unpack(dest) => test_overlay::unpack_overlay_locally(ctx, dest).await,
            Step::TestShell => test_shell::run_test_shell(ctx).await,
            Step::Reset => console::reset_device(ctx).await,
        }
    }
}

struct Harness {
    ctx: RunContext,
    job_id: String,
    test_block: Mapping,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(results_dir(&self.job_id));
        let _ = std::fs::remove_dir_all(&self.ctx.job.scratch_dir);
    }
}

fn results_dir(job_id: &str) -> PathBuf {
    PathBuf::from(format!("/tmp/lava-rs-local/lava-{job_id}"))
}

fn blocks(job: &str) -> (Mapping, Mapping, Mapping) {
    let job: Mapping = serde_yaml::from_str(job).unwrap();
    let actions = job["actions"].as_sequence().unwrap();
    let find = |key: &str| {
        actions
            .iter()
            .find_map(|a| a.get(key))
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap()
    };
    (job.clone(), find("boot"), find("test"))
}

impl Harness {
    fn new(job_text: &str, test_override: impl FnOnce(&mut Mapping)) -> Harness {
        let job_id = unique_job_id();
        let (mut params, _boot, mut test) = blocks(job_text);
        test_override(&mut test);
        test.insert("namespace".into(), "common".into());
        test.insert("stage".into(), 0.into());
        params.insert("dispatcher".into(), Value::Mapping(Mapping::new()));
        let device = Device::from_yaml(DEVICE, None).unwrap();
        let mut job = Job::new(job_id.clone(), params, device, 300);
        job.test_info.insert(
            "common".into(),
            vec![TestInfo {
                strategy: "lava-test-shell".into(),
                parameters: test.clone(),
                needs_overlay: true,
                needs_deployment_data: true,
                has_shell: true,
                needs_character_delay: true,
            }],
        );
        let ctx = RunContext::new(Arc::new(job), JobLogger::capturing());
        Harness {
            ctx,
            job_id,
            test_block: test,
        }
    }

    async fn step(&mut self, step: Step, params: Mapping, timeout: u64) -> LavaResult<()> {
        let mut params = params;
        params
            .entry("namespace".into())
            .or_insert_with(|| "common".into());
        ActionSpec::new("lava-test-shell", "test", "3.1")
            .timeout(timeout)
            .connection_timeout(timeout.min(10))
            .timeout_kind(ErrorKind::Timeout)
            .parameters(params)
            .run(&mut self.ctx, Box::new(StepAction(step)))
            .await
    }

    /// Deploy (overlay, compress, unpack at `/`), boot (connect, login at the prompt).
    async fn deploy_and_boot(&mut self, levels: &[&str]) {
        let levels = levels.iter().map(|l| l.to_string()).collect();
        self.step(Step::Overlay(levels), Mapping::new(), 60)
            .await
            .unwrap();
        self.step(Step::Compress, Mapping::new(), 60).await.unwrap();
        self.step(Step::Unpack(PathBuf::from("/")), Mapping::new(), 60)
            .await
            .unwrap();
        assert!(
            results_dir(&self.job_id)
                .join("bin/lava-test-runner")
                .is_file()
        );
        self.step(Step::Connect, Mapping::new(), 30).await.unwrap();
        let boot: Mapping = serde_yaml::from_str(&format!("prompts: ['{PROMPT}']")).unwrap();
        self.step(Step::Login, boot, 30).await.unwrap();
    }

    async fn test_shell(&mut self, timeout: u64) -> LavaResult<()> {
        let params = self.test_block.clone();
        self.step(Step::TestShell, params, timeout).await
    }

    fn records(&self) -> Vec<Mapping> {
        self.ctx
            .logger
            .captured()
            .iter()
            .map(|line| serde_yaml::from_str::<Mapping>(line).unwrap())
            .collect()
    }

    fn results(&self) -> Vec<Mapping> {
        captured_results(&self.ctx.logger)
    }

    fn result(&self, definition: &str, case: &str) -> Mapping {
        if std::env::var_os("RT_DEBUG").is_some() {
            for line in self.ctx.logger.captured() {
                eprintln!("{line}");
            }
        }
        self.results()
            .into_iter()
            .find(|r| {
                r["definition"].as_str() == Some(definition) && r["case"].as_str() == Some(case)
            })
            .unwrap_or_else(|| panic!("no result {definition}/{case} in {:#?}", self.results()))
    }

    fn pid(&mut self) -> u32 {
        self.ctx.connection_as::<ConsoleConnection>().unwrap().pid()
    }

    async fn finalise(&mut self) {
        console::finalise_connections(&mut self.ctx).await;
    }
}

/// A number as LAVA's log writes it (`! "12.5"`).
fn num(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        Value::Tagged(t) => num(&t.value),
        other => panic!("not a number: {other:?}"),
    }
}

/// Processes whose session id is `sid`.
fn session_members(sid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let fields = &stat[stat.rfind(')')? + 1..];
            let session: u32 = fields.split_whitespace().nth(3)?.parse().ok()?;
            (session == sid).then_some(pid)
        })
        .collect()
}

async fn assert_session_gone(sid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let members = session_members(sid);
        if members.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still running: {members:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn inline_steps(test: &mut Mapping, steps: &[&str]) {
    let defs = test
        .get_mut("definitions")
        .unwrap()
        .as_sequence_mut()
        .unwrap();
    let run = defs[0]["repository"]["run"].clone();
    let mut run = run.as_mapping().unwrap().clone();
    run.insert(
        "steps".into(),
        Value::Sequence(steps.iter().map(|s| Value::String(s.to_string())).collect()),
    );
    defs[0]
        .get_mut("repository")
        .unwrap()
        .as_mapping_mut()
        .unwrap()
        .insert("run".into(), Value::Mapping(run));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_definition_results_as_lava_records_them() {
    let mut h = Harness::new(INLINE_JOB, |_| {});
    h.deploy_and_boot(&["1.3.1.1"]).await;
    let sid = h.pid();
    h.test_shell(60).await.unwrap();

    let uuid = format!("{}_1.3.1.1", h.job_id);
    let pass = h.result("0_smoke", "always-pass");
    assert_eq!(pass["result"].as_str(), Some("pass"));
    let (start, end) = (num(&pass["starttc"]) as u64, num(&pass["endtc"]) as u64);
    assert!(start < end, "markers {start} {end}");
    // starttc/endtc: the logger's line counter minus one when the marker was handled,
    // i.e. the index of the `Received signal` record (the console line's 1-based line
    // when its newline had arrived).
    let records = h.records();
    assert_eq!(
        records[start as usize]["msg"].as_str(),
        Some("Received signal: <STARTTC> always-pass")
    );
    assert_eq!(
        records[end as usize]["msg"].as_str(),
        Some("Received signal: <ENDTC> always-pass")
    );
    assert_eq!(
        h.result("0_smoke", "always-fail")["result"].as_str(),
        Some("fail")
    );
    let speed = h.result("0_smoke", "speed");
    assert_eq!(speed["result"].as_str(), Some("pass"));
    assert_eq!(num(&speed["measurement"]), 12.5);
    assert_eq!(speed["units"].as_str(), Some("MB/s"));
    let suite = h.result("lava", "0_smoke");
    assert_eq!(suite["result"].as_str(), Some("pass"));
    assert_eq!(suite["uuid"].as_str(), Some(uuid.as_str()));
    assert_eq!(suite["path"].as_str(), Some("inline/smoke.yaml"));
    assert_eq!(suite["namespace"].as_str(), Some("common"));
    let keys: Vec<&str> = suite.keys().filter_map(Value::as_str).collect();
    assert_eq!(
        keys,
        [
            "definition",
            "case",
            "uuid",
            "repository",
            "path",
            "duration",
            "result",
            "revision",
            "namespace"
        ]
    );
    // The overlay context keys LAVA stores.
    let dir = results_dir(&h.job_id).display().to_string();
    assert_eq!(
        h.ctx
            .data
            .get_str("common", "test", "results", "lava_test_results_dir"),
        Some(dir.as_str())
    );
    assert!(
        h.ctx
            .data
            .get_str("common", "compress-overlay", "output", "file")
            .is_some()
    );
    assert_eq!(
        h.ctx.data.get_str("common", "test", &uuid, "path"),
        Some("inline/smoke.yaml")
    );
    // The shell is still usable after the run, and finalise ends it.
    h.finalise().await;
    assert_session_gone(sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lava_test_raise_is_a_test_error_and_the_run_is_failed() {
    let mut h = Harness::new(INLINE_JOB, |t| {
        inline_steps(
            t,
            &[
                "lava-test-case before --result pass",
                "lava-test-raise device-fell-over",
                "lava-test-case never --result pass",
            ],
        )
    });
    h.deploy_and_boot(&["1.3.1.1"]).await;
    let sid = h.pid();
    let err = h.test_shell(60).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Test);
    assert!(err.message.contains("device-fell-over"), "{err:?}");
    assert_eq!(
        h.result("0_smoke", "before")["result"].as_str(),
        Some("pass")
    );
    let unfinished = h.result("lava", "0_smoke");
    assert_eq!(unfinished["result"].as_str(), Some("fail"));
    assert!(
        h.results()
            .iter()
            .all(|r| r["case"].as_str() != Some("never"))
    );
    h.finalise().await;
    assert_session_gone(sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_test_times_out_and_leaves_no_process() {
    let mut h = Harness::new(INLINE_JOB, |t| {
        inline_steps(t, &["lava-test-case quick --result pass", "sleep 600"])
    });
    h.deploy_and_boot(&["1.3.1.1"]).await;
    let sid = h.pid();
    let started = std::time::Instant::now();
    let err = h.test_shell(4).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15));
    // The executor turns the action's timeout into a TestError, as LAVA does.
    assert_eq!(err.kind, ErrorKind::Test, "{err:?}");
    assert!(err.message.contains("timed out after 4 seconds"), "{err:?}");
    assert_eq!(
        h.result("0_smoke", "quick")["result"].as_str(),
        Some("pass")
    );
    assert_eq!(h.result("lava", "0_smoke")["result"].as_str(), Some("fail"));
    h.finalise().await;
    assert_session_gone(sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_processes_start_and_stop() {
    let mut h = Harness::new(INLINE_JOB, |t| {
        inline_steps(
            t,
            &[
                "lava-background-process-start sleeper --cmd 'sleep 120'",
                "lava-test-case started --shell kill -0 $(cat $LAVA_RESULT_DIR/results/sleeper/pid)",
                "lava-background-process-stop sleeper",
                "sleep 1",
                "lava-test-case stopped --shell 'p=$(cat $LAVA_RESULT_DIR/results/sleeper/pid); test ! -d /proc/$p || grep -q \"^State:.Z\" /proc/$p/status'",
            ],
        )
    });
    h.deploy_and_boot(&["1.3.1.1"]).await;
    let sid = h.pid();
    h.test_shell(60).await.unwrap();
    assert_eq!(
        h.result("0_smoke", "started")["result"].as_str(),
        Some("pass")
    );
    assert_eq!(
        h.result("0_smoke", "stopped")["result"].as_str(),
        Some("pass")
    );
    h.finalise().await;
    assert_session_gone(sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_dying_mid_test_is_an_infrastructure_error() {
    let mut h = Harness::new(INLINE_JOB, |t| {
        inline_steps(
            t,
            &[
                "read -r _ _ _ _ _ sid _ < /proc/$$/stat; kill -9 $sid",
                "sleep 30",
            ],
        )
    });
    h.deploy_and_boot(&["1.3.1.1"]).await;
    let sid = h.pid();
    let err = h.test_shell(60).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionClosed, "{err:?}");
    assert_eq!(err.kind.error_type(), "Infrastructure");
    h.finalise().await;
    assert_session_gone(sid).await;
}

fn git(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_definition_with_parameters() {
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("params.yaml"),
        "metadata:\n  format: Lava-Test Test Definition 1.0\n  name: params\n  description: parameters\nparams:\n  GREETING: default\n  OTHER: kept\nrun:\n  steps:\n  - lava-test-case job-param --shell test \"$GREETING\" = hello-from-job\n  - lava-test-case default-param --shell test \"$OTHER\" = kept\n  - lava-test-case wrong --shell test \"$GREETING\" = default\n",
    )
    .unwrap();
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "params.yaml"]);
    git(repo.path(), &["commit", "-q", "-m", "tests"]);
    let url = format!("file://{}", repo.path().display());
    let job = GIT_JOB.replace("REPOSITORY_URL", &url);
    let mut h = Harness::new(&job, |_| {});
    h.deploy_and_boot(&["1.3.1.1"]).await;
    h.test_shell(60).await.unwrap();
    assert_eq!(
        h.result("0_params", "job-param")["result"].as_str(),
        Some("pass")
    );
    assert_eq!(
        h.result("0_params", "default-param")["result"].as_str(),
        Some("pass")
    );
    assert_eq!(
        h.result("0_params", "wrong")["result"].as_str(),
        Some("fail")
    );
    let suite = h.result("lava", "0_params");
    assert_eq!(suite["result"].as_str(), Some("pass"));
    assert_eq!(suite["repository"].as_str(), Some(url.as_str()));
    assert!(suite["commit_id"].as_str().is_some_and(|c| c.len() == 40));
    h.finalise().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_test_shell_leaves_no_child() {
    let mut h = Harness::new(INLINE_JOB, |t| inline_steps(t, &["sleep 300"]));
    h.deploy_and_boot(&["1.3.1.1"]).await;
    let sid = h.pid();
    let task = tokio::spawn(async move {
        let _ = h.test_shell(120).await;
        h
    });
    // Let the runner start, then cancel (drop) the whole run with its context.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(session_members(sid).len() > 1, "the test should be running");
    task.abort();
    assert!(task.await.is_err_and(|e| e.is_cancelled()));
    assert_session_gone(sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_is_a_job_error_and_reset_runs_lab_commands() {
    let mut h = Harness::new(INLINE_JOB, |_| {});
    let err = h.test_shell(10).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Job);
    assert_eq!(err.message, "No connection to the DUT");
    h.step(Step::Reset, Mapping::new(), 10).await.unwrap();
    assert!(
        h.records()
            .iter()
            .any(|r| r["msg"].as_str() == Some("Calling: ['/bin/true']"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpack_refuses_members_outside_the_destination() {
    use std::io::Write;
    let mut h = Harness::new(INLINE_JOB, |_| {});
    let scratch = tempfile::tempdir().unwrap();
    // A hand-made tarball with a `../` member, registered as the compressed overlay.
    let bad = scratch.path().join("bad.tar.gz");
    let mut raw = Vec::new();
    {
        let mut header = [0u8; 512];
        let name = b"../escaped";
        header[..name.len()].copy_from_slice(name);
        header[100..107].copy_from_slice(b"0000644");
        header[108..115].copy_from_slice(b"0000000");
        header[116..123].copy_from_slice(b"0000000");
        header[124..135].copy_from_slice(b"00000000002");
        header[136..147].copy_from_slice(b"00000000000");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|b| *b as u32).sum();
        header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        raw.extend_from_slice(&header);
        let mut data = [0u8; 512];
        data[..2].copy_from_slice(b"x\n");
        raw.extend_from_slice(&data);
        raw.extend_from_slice(&[0u8; 1024]);
    }
    let gz = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut gz = gz;
    gz.stdin.take().unwrap().write_all(&raw).unwrap();
    let out = gz.wait_with_output().unwrap();
    std::fs::write(&bad, out.stdout).unwrap();
    let dest = scratch.path().join("root");
    std::fs::create_dir(&dest).unwrap();
    h.ctx.data.set(
        "common",
        "compress-overlay",
        "output",
        "file",
        bad.display().to_string().into(),
    );
    let err = h
        .step(Step::Unpack(dest.clone()), Mapping::new(), 10)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Job, "{err:?}");
    assert!(!scratch.path().join("escaped").exists());
}
