//! The executor: deadlines, retries, timeouts rewritten as TestError, finalize exactly once,
//! result records and LAVA's log lines.

mod common;

use lava_pipeline::execute::run_job;
use lava_pipeline::{
    Action, Device, FixedActions, JobLogger, JobParser, LavaError, LavaResult, ParseOptions,
    Pipeline, PipelineBuilder, RunContext, Section, Strategy, StrategyRegistry, action_identity,
};
use serde_yaml::Mapping;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Fails `failures` times with an InfrastructureError, then passes.
struct Flaky {
    failures: u32,
    calls: Arc<AtomicU32>,
}

#[lava_pipeline::async_trait]
impl Action for Flaky {
    action_identity!("flaky-step", "Flaky", "fails then passes", "flaky");
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        ctx.set_result("attempt", u64::from(n + 1));
        if n < self.failures {
            Err(LavaError::infrastructure(format!(
                "attempt {} broke",
                n + 1
            )))
        } else {
            Ok(())
        }
    }
}

/// Sleeps far past any deadline.
struct Hang;

#[lava_pipeline::async_trait]
impl Action for Hang {
    action_identity!("hang-step", "Hang", "never ends", "hang");
    fn timeout_kind(&self) -> lava_pipeline::ErrorKind {
        lava_pipeline::ErrorKind::Timeout
    }
    async fn run(&mut self, _ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        Ok(())
    }
}

struct Retry(&'static str, fn() -> Box<dyn Action>);

#[lava_pipeline::async_trait]
impl Action for Retry {
    fn name(&self) -> &str {
        self.0
    }
    fn class_name(&self) -> &str {
        "Retry"
    }
    fn description(&self) -> &str {
        "retry"
    }
    fn summary(&self) -> &str {
        "retry"
    }
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, p: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        p.add_boxed((self.1)(), None, None)
    }
}

struct ByMethod(&'static str, fn() -> Box<dyn Action>);

impl Strategy for ByMethod {
    fn section(&self) -> Section {
        Section::Boot
    }
    fn name(&self) -> &str {
        self.0
    }
    fn accepts(&self, _d: &Device, params: &Mapping) -> Result<(), String> {
        (params.get("method").and_then(|m| m.as_str()) == Some(self.0))
            .then_some(())
            .ok_or_else(|| "no".to_string())
    }
    fn action(&self, _params: &Mapping) -> Box<dyn Action> {
        Box::new(Retry("boot-retry", self.1))
    }
}

struct CountingFinalize;

#[lava_pipeline::async_trait]
impl Action for CountingFinalize {
    action_identity!("finalize", "FinalizeAction", "finish", "finalize");
    async fn run(&mut self, ctx: &mut RunContext, _c: &mut Pipeline) -> LavaResult<()> {
        ctx.logger.info("counting finalize ran");
        Ok(())
    }
}

struct Fixed;
impl FixedActions for Fixed {
    fn finalize(&self) -> Box<dyn Action> {
        Box::new(CountingFinalize)
    }
    fn command(&self, _b: &Mapping) -> Box<dyn Action> {
        Box::new(CountingFinalize)
    }
}

fn registry() -> StrategyRegistry {
    let mut r = StrategyRegistry::new();
    r.register(ByMethod("flaky", || {
        Box::new(Flaky {
            failures: 2,
            calls: Arc::new(AtomicU32::new(0)),
        })
    }));
    r.register(ByMethod("hang", || Box::new(Hang)));
    r
}

async fn run(job: &str) -> (lava_pipeline::execute::JobResult, Vec<String>) {
    let registry = registry();
    let device = Device::from_yaml("constants: {failure_retry: 1, boot_retry: 0}\nactions: {boot: {methods: {flaky: null, hang: null}}}", None).unwrap();
    let (job, mut pipeline) = JobParser::new(&registry, &Fixed)
        .parse(job, device, &ParseOptions::default())
        .unwrap();
    let logger = JobLogger::capturing();
    let mut ctx = RunContext::new(Arc::new(job), logger.clone());
    let result = run_job(&mut pipeline, &mut ctx, false).await;
    (result, logger.captured())
}

#[tokio::test]
async fn retries_until_success_and_finalize_runs_once() {
    let (result, log) = run("timeouts: {job: {minutes: 1}}\nactions:\n- boot: {method: flaky, failure_retry: 3, failure_retry_interval: 1}\n").await;
    assert!(result.passed(), "{:?}", result.error);
    let text = log.join("\n");
    assert!(
        text.contains("\"msg\": \"boot-retry failed: 1 of 3 attempts. 'attempt 1 broke'\""),
        "{text}"
    );
    assert!(text.contains("\"msg\": \"boot-retry failed: 2 of 3 attempts. 'attempt 2 broke'\""));
    assert!(
        text.contains("\"lvl\": \"warning\", \"msg\": \"Retrying: 1 boot-retry (timeout 00:00:")
    );
    assert!(text.contains("\"msg\": \"start: 1 boot-retry (timeout 00:00:30) [common]\""));
    assert!(text.contains("\"msg\": \"Job finished correctly\""));
    assert!(text.contains("\"case\": \"flaky-step\", \"level\": \"1.1\""));
    assert_eq!(
        log.iter()
            .filter(|l| l.contains("counting finalize ran"))
            .count(),
        1
    );
    assert_eq!(
        result.record.get("result").and_then(|v| v.as_str()),
        Some("pass")
    );
}

#[tokio::test]
async fn exhausted_retries_fail_the_job_with_the_last_error_kind() {
    let (result, log) =
        run("timeouts: {job: {minutes: 1}}\nactions:\n- boot: {method: flaky, failure_retry: 2}\n")
            .await;
    let err = result.error.expect("two attempts are not enough");
    assert_eq!(err.kind, lava_pipeline::ErrorKind::Infrastructure);
    assert_eq!(err.message, "attempt 2 broke");
    let text = log.join("\n");
    assert!(text.contains("\"error_type\": \"Infrastructure\""));
    assert!(text.contains("InfrastructureError: The Infrastructure is not working correctly."));
    assert!(text.contains("\"msg\": \"Cleaning after the job\""));
}

#[tokio::test]
async fn a_test_timeout_becomes_a_test_error_and_skip_continues() {
    let (result, log) = run(
        "timeouts: {job: {minutes: 1}}\nactions:\n- boot: {method: hang, timeout: {seconds: 1}}\n",
    )
    .await;
    let err = result.error.expect("timed out");
    assert_eq!(err.kind, lava_pipeline::ErrorKind::Test);
    assert_eq!(err.message, "hang-step timed out after 1 seconds");
    assert!(log.iter().any(|l| {
        l.contains("\"lvl\": \"exception\", \"msg\": \"hang-step timed out after 1 seconds\"")
    }));

    let (result, log) = run("timeouts: {job: {minutes: 1}}\nactions:\n- boot: {method: hang, timeout: {seconds: 1, skip: true}}\n").await;
    assert!(result.passed(), "{:?}", result.error);
    assert!(log.iter().any(|l| {
        l.contains("skip_timeout is set for boot-retry - continuing to next action block.")
    }));
}

#[tokio::test]
async fn cancel_runs_finalize_and_reports_canceled() {
    let registry = registry();
    let device = Device::from_yaml(
        "constants: {failure_retry: 1, boot_retry: 0}\nactions: {boot: {methods: {hang: null}}}",
        None,
    )
    .unwrap();
    let (job, mut pipeline) = JobParser::new(&registry, &Fixed)
        .parse("timeouts: {job: {minutes: 10}}\nactions:\n- boot: {method: hang, timeout: {minutes: 5}}\n", device, &ParseOptions::default())
        .unwrap();
    let logger = JobLogger::capturing();
    let mut ctx = RunContext::new(Arc::new(job), logger.clone());
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let result = run_job(&mut pipeline, &mut ctx, false).await;
    let err = result.error.expect("canceled");
    assert_eq!(err.kind, lava_pipeline::ErrorKind::Canceled);
    let finalized = logger
        .captured()
        .iter()
        .filter(|l| l.contains("counting finalize ran"))
        .count();
    assert_eq!(finalized, 1, "finalize runs exactly once after a cancel");
    assert!(
        logger
            .captured()
            .iter()
            .any(|l| l.contains("\"error_type\": \"Canceled\""))
    );
}

#[tokio::test]
async fn huge_timeouts_from_the_job_or_device_do_not_panic_the_run() {
    // The job checks refuse such a job; a device (not checked) or a caller skipping the
    // checks can still hand them to the executor, which must run and record a result.
    let huge = "{days: 1000000000000000}";
    let (result, log) = run(&format!(
        "timeouts: {{job: {huge}, action: {huge}, connection: {huge}}}\nactions:\n- boot: {{method: flaky, failure_retry: 3, failure_retry_interval: 1, timeout: {huge}}}\n"
    ))
    .await;
    assert!(result.passed(), "{:?}", result.error);
    assert!(log.iter().any(|l| l.contains("Job finished correctly")));
    assert_eq!(
        result.record.get("result").and_then(|v| v.as_str()),
        Some("pass")
    );
}
