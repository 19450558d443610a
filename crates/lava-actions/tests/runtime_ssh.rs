//! The SSH device at run time against a real sshd the test starts
//! (`lava_test_support::sshd`): the deploy and boot steps of `to: ssh` /
//! `method: ssh` (overlay built, compressed, copied, connection, login, unpack) and the
//! test shell over the SSH connection, driven through the executor's `run_node`; a
//! connection dropped mid-test, a wrong key and a refused port.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lava_actions::runtime::console::{self, ConsoleConnection};
use lava_actions::runtime::{ssh, test_overlay, test_shell};
use lava_pipeline::{
    Action, Device, ErrorKind, Job, JobLogger, LavaError, LavaResult, Pipeline, RunContext,
    TestInfo, async_trait,
};
use lava_test_support::process::processes_with;
use lava_test_support::runtime::{ActionSpec, captured_result, unique_job_id};
use lava_test_support::sshd::Sshd;
use serde_yaml::{Mapping, Value};

const DEVICE: &str = include_str!("../../../fixtures/ssh/device.yaml");
const JOB: &str = include_str!("../../../fixtures/ssh/ssh-job.yaml");

/// One step of the job: which runtime function to call.
#[derive(Clone, Copy, Debug)]
enum Step {
    BuildOverlay,
    Compress,
    PrepareScpOverlay,
    ScpDeploy,
    PrepareSsh,
    ConnectSsh,
    Login,
    ExpectShell,
    Unpack,
    TestShell,
}

impl Step {
    /// LAVA's name of the action doing this step.
    fn action_name(self) -> &'static str {
        match self {
            Step::BuildOverlay => "lava-overlay",
            Step::Compress => "compress-overlay",
            Step::PrepareScpOverlay => "prepare-scp-overlay",
            Step::ScpDeploy => "scp-deploy",
            Step::PrepareSsh => "prepare-ssh",
            Step::ConnectSsh => "ssh-connection",
            Step::Login => "login-action",
            Step::ExpectShell => "expect-shell-connection",
            Step::Unpack => "scp-overlay-unpack",
            Step::TestShell => "lava-test-shell",
        }
    }
}

struct StepAction(Step);

#[async_trait]
impl Action for StepAction {
    fn name(&self) -> &str {
        self.0.action_name()
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
        match self.0 {
            Step::BuildOverlay => test_overlay::build_overlay(ctx, &["1.1.3.1".to_string()])
                .await
                .map(|_| ()),
            Step::Compress => test_overlay::compress_overlay(ctx).await.map(|_| ()),
            Step::PrepareScpOverlay => ssh::prepare_scp_overlay(ctx, &[]).await,
            Step::ScpDeploy => ssh::scp_deploy(ctx).await,
            Step::PrepareSsh => ssh::prepare_ssh(ctx).await,
            Step::ConnectSsh => ssh::connect_ssh(ctx).await,
            Step::Login => console::auto_login(ctx).await,
            Step::ExpectShell => {
                let prompts = console::block_prompts(ctx);
                console::expect_shell(ctx, &prompts).await
            }
            Step::Unpack => ssh::unpack_overlay(ctx).await,
            Step::TestShell => test_shell::run_test_shell(ctx).await,
        }
    }
}

struct Harness {
    ctx: RunContext,
    job_id: String,
    scratch: tempfile::TempDir,
    blocks: [Mapping; 3],
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.ctx.job.scratch_dir);
    }
}

/// The fixture device with the placeholders filled in for `sshd`.
fn device_yaml(sshd: &Sshd, identity_file: &Path, port: u16, scratch: &Path) -> String {
    DEVICE
        .replace("@SSH_HOST@", sshd.host())
        .replace("@SSH_PORT@", &port.to_string())
        .replace("@SSH_USER@", sshd.user())
        .replace("@SSH_IDENTITY_FILE@", &identity_file.display().to_string())
        .replace("@SCRATCH@", &scratch.display().to_string())
}

impl Harness {
    /// The fixture job on `sshd`, test steps replaced by `steps` when given.
    fn new(sshd: &Sshd, identity_file: &Path, port: u16, steps: Option<&[&str]>) -> Harness {
        let job_id = unique_job_id();
        let scratch = tempfile::Builder::new()
            .prefix("lava-rs-ssh-scratch-")
            .tempdir()
            .unwrap();
        let mut params: Mapping = serde_yaml::from_str(JOB).unwrap();
        let actions = params["actions"].as_sequence().unwrap().clone();
        let block = |key: &str| {
            let mut block = actions
                .iter()
                .find_map(|a| a.get(key))
                .and_then(Value::as_mapping)
                .cloned()
                .unwrap();
            block.insert("namespace".into(), "common".into());
            block
        };
        let (deploy, boot, mut test) = (block("deploy"), block("boot"), block("test"));
        if let Some(steps) = steps {
            let definition = &mut test["definitions"][0]["repository"]["run"];
            definition["steps"] =
                Value::Sequence(steps.iter().map(|s| Value::String(s.to_string())).collect());
        }
        test.insert("stage".into(), 0.into());
        params.insert("dispatcher".into(), Value::Mapping(Mapping::new()));
        let device = Device::from_yaml(
            &device_yaml(sshd, identity_file, port, scratch.path()),
            None,
        )
        .unwrap();
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
        Harness {
            ctx: RunContext::new(Arc::new(job), JobLogger::capturing()),
            job_id,
            scratch,
            blocks: [deploy, boot, test],
        }
    }

    async fn step(&mut self, step: Step, timeout: u64) -> LavaResult<()> {
        let params = match step {
            Step::BuildOverlay | Step::Compress | Step::PrepareScpOverlay => &self.blocks[0],
            Step::TestShell => &self.blocks[2],
            _ => &self.blocks[1],
        };
        ActionSpec::new(step.action_name(), "boot", "2.1")
            .timeout(timeout)
            .connection_timeout(timeout.min(30))
            .timeout_kind(match step {
                Step::TestShell => ErrorKind::Timeout,
                _ => ErrorKind::Infrastructure,
            })
            .parameters(params.clone())
            .run(&mut self.ctx, Box::new(StepAction(step)))
            .await
    }

    async fn steps(&mut self, steps: &[Step]) -> LavaResult<()> {
        for step in steps {
            self.step(*step, 60).await?;
        }
        Ok(())
    }

    /// Deploy (overlay built, compressed, recorded) and boot (copied, connected, logged
    /// in, prompt found, unpacked).
    async fn deploy_and_boot(&mut self) {
        let result = self
            .steps(&[
                Step::BuildOverlay,
                Step::Compress,
                Step::PrepareScpOverlay,
                Step::ScpDeploy,
                Step::PrepareSsh,
                Step::ConnectSsh,
                Step::Login,
                Step::ExpectShell,
                Step::Unpack,
            ])
            .await;
        if let Err(e) = result {
            panic!("{e:?}\n{}", self.ctx.logger.captured().join("\n"));
        }
    }

    fn results_dir(&self) -> PathBuf {
        self.scratch.path().join(format!("lava-{}", self.job_id))
    }

    /// The captured log (also printed when `RT_DEBUG` is set).
    fn log(&self) -> String {
        let log = self.ctx.logger.captured().join("\n");
        if std::env::var_os("RT_DEBUG").is_some() {
            eprintln!("{log}");
        }
        log
    }

    fn result(&self, definition: &str, case: &str) -> Option<String> {
        let result = captured_result(&self.ctx.logger, definition, case)?;
        result.get("result")?.as_str().map(str::to_string)
    }
}

fn assert_no_key_material(text: &str, key_file: &Path) {
    let key = std::fs::read_to_string(key_file).unwrap();
    for line in key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 8)
    {
        assert!(!text.contains(line), "key material in the log");
    }
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overlay_is_copied_and_unpacked_and_the_test_shell_runs_over_ssh() {
    let Some(sshd) = Sshd::start() else { return };
    let mut h = Harness::new(&sshd, sshd.identity_file(), sshd.port(), None);
    h.deploy_and_boot().await;
    let copy = h
        .ctx
        .data
        .get_str("common", "scp-deploy", "scp-overlay-unpack", "overlay")
        .unwrap()
        .to_string();
    let results_dir = h.results_dir();
    assert!(
        copy.starts_with(&format!("{}-overlay-", results_dir.display()))
            && copy.ends_with(".tar.gz"),
        "{copy}"
    );
    assert!(Path::new(&copy).is_file());
    assert!(results_dir.join("bin/lava-test-runner").is_file());
    assert!(h.ctx.connection_as::<ConsoleConnection>().is_some());

    h.step(Step::TestShell, 120)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", h.log()));
    assert_eq!(
        h.result("0_ssh-smoke", "always-pass").as_deref(),
        Some("pass")
    );
    assert_eq!(
        h.result("0_ssh-smoke", "always-fail").as_deref(),
        Some("fail")
    );
    assert_eq!(h.result("0_ssh-smoke", "speed").as_deref(), Some("pass"));
    assert_eq!(h.result("lava", "0_ssh-smoke").as_deref(), Some("pass"));
    let log = h.log();
    assert!(log.contains(&format!(
        "Connecting to device using ssh {}@127.0.0.1:{}",
        sshd.user(),
        sshd.port()
    )));
    assert!(log.contains(&sshd.identity_file().display().to_string()));
    assert_no_key_material(&log, sshd.identity_file());

    console::finalise_connections(&mut h.ctx).await;
    wait_until("the ssh sessions end", || sshd.session_pids().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_test_is_an_infrastructure_error_and_finalize_still_runs() {
    let Some(sshd) = Sshd::start() else { return };
    let marker = format!("sleep 47{}", unique_job_id());
    let steps = ["lava-test-case before --result pass", marker.as_str()];
    let mut h = Harness::new(&sshd, sshd.identity_file(), sshd.port(), Some(&steps));
    h.deploy_and_boot().await;

    let killer = {
        let marker = marker.clone();
        async move {
            wait_until("the test step runs", || !processes_with(&marker).is_empty()).await;
            sshd.kill_sessions();
            sshd
        }
    };
    let started = std::time::Instant::now();
    let (outcome, sshd) = tokio::join!(h.step(Step::TestShell, 120), killer);
    let err: LavaError = outcome.expect_err("the connection was dropped");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        matches!(
            err.kind,
            ErrorKind::Infrastructure | ErrorKind::ConnectionClosed
        ),
        "{err:?}"
    );
    assert_eq!(err.kind.error_type(), "Infrastructure");
    assert!(
        err.message
            .contains(&format!("ssh connection to 127.0.0.1:{} lost", sshd.port())),
        "{err:?}"
    );
    assert_eq!(h.result("0_ssh-smoke", "before").as_deref(), Some("pass"));

    // Finalize after the loss: quick, and nothing is left of the session.
    let started = std::time::Instant::now();
    console::finalise_connections(&mut h.ctx).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    // The step's process dies of the lost session's hang-up, which the kernel delivers a
    // moment after the session ends.
    wait_until("the test step's process ends", || {
        processes_with(&marker).is_empty()
    })
    .await;
    wait_until("the ssh sessions end", || sshd.session_pids().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_an_infrastructure_error_naming_the_key_file() {
    let Some(sshd) = Sshd::start() else { return };
    let stranger = sshd.new_key("stranger", "ed25519", "", false);
    let mut h = Harness::new(&sshd, &stranger, sshd.port(), None);
    h.steps(&[Step::PrepareSsh]).await.unwrap();
    let err = h.step(Step::ConnectSsh, 30).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Infrastructure, "{err:?}");
    assert!(err.message.contains("Authentication as"), "{err:?}");
    assert!(
        err.message.contains(&stranger.display().to_string()),
        "{err:?}"
    );
    assert_no_key_material(&err.message, &stranger);
    assert_no_key_material(&h.log(), &stranger);
    assert!(h.ctx.connection_as::<ConsoleConnection>().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_port_fails_the_copy_at_once() {
    let Some(sshd) = Sshd::start() else { return };
    let closed = lava_test_support::paths::free_loopback_port();
    let mut h = Harness::new(&sshd, sshd.identity_file(), closed, None);
    h.steps(&[Step::BuildOverlay, Step::Compress, Step::PrepareScpOverlay])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = h.step(Step::ScpDeploy, 30).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(err.kind, ErrorKind::Infrastructure, "{err:?}");
    assert_eq!(
        err.message,
        format!("ssh connection to 127.0.0.1:{closed} refused")
    );
}
