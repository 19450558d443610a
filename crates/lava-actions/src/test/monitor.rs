//! The `monitors` test family: watch the console for start/end markers and result
//! patterns (`lava-test-monitor-retry` → `lava-test-monitor`).

use super::shell::check_required;
use lava_pipeline::{
    Action, Declared, ErrorKind, LavaResult, Pipeline, PipelineBuilder, RunContext,
    StrategyRegistry, action_identity, async_trait,
};

/// `lava-test-monitor-retry`: the monitors (retried).
#[derive(Debug, Default)]
pub struct TestMonitorRetry;

#[async_trait]
impl Action for TestMonitorRetry {
    action_identity!(
        "lava-test-monitor-retry",
        "TestMonitorRetry",
        "Retry wrapper for lava-test-monitor",
        "Retry support for Lava Test Monitoring"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(TestMonitorAction)
    }
}

/// `lava-test-monitor`: match each monitor's start, patterns and end.
#[derive(Debug, Default)]
pub struct TestMonitorAction;

#[async_trait]
impl Action for TestMonitorAction {
    action_identity!(
        "lava-test-monitor",
        "TestMonitorAction",
        "Executing lava-test-monitor",
        "Lava Test Monitor"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Timeout
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::monitor::run_monitors(ctx).await
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::test("lava-test-monitor", |_| Box::new(TestMonitorRetry)).check(|_, params| {
            let Some(monitors) = params.get("monitors") else {
                return Err("\"monitors\" not in parameters".into());
            };
            check_required(Some(monitors), &["name", "start", "end", "pattern"])
        }),
    );
}
