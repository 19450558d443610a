//! The `interactive` test family: send commands and match prompts
//! (`lava-test-interactive-retry` → `lava-test-interactive`).

use super::shell::check_required;
use lava_pipeline::{
    Action, ActionMeta, Declared, ErrorKind, LavaResult, Pipeline, PipelineBuilder, RunContext,
    Runnable, StrategyRegistry, action_identity, async_trait,
};

/// `lava-test-interactive-retry`: the interactive test (retried).
#[derive(Debug, Default)]
pub struct TestInteractiveRetry;

#[async_trait]
impl Action for TestInteractiveRetry {
    action_identity!(
        "lava-test-interactive-retry",
        "TestInteractiveRetry",
        "Retry wrapper for lava-test-interactive",
        "Retry support for Lava Test Interactive"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(TestInteractiveAction)
    }
}

/// `lava-test-interactive`: run each script's commands and check the prompts.
#[derive(Debug, Default)]
pub struct TestInteractiveAction;

#[async_trait]
impl Action for TestInteractiveAction {
    action_identity!(
        "lava-test-interactive",
        "TestInteractiveAction",
        "Executing lava-test-interactive",
        "Lava Test Interactive"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Timeout
    }
    /// Scripts using MultiNode commands (`lava-send`, `lava-wait`...) are not run yet.
    fn runnable(&self, meta: &ActionMeta) -> Runnable {
        if crate::runtime::interactive::uses_multinode(meta.param("interactive")) {
            Runnable::NotYet {
                missing: Some("MultiNode commands"),
            }
        } else {
            Runnable::Yes
        }
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::interactive::run_scripts(ctx).await
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::test("lava-test-interactive", |_| Box::new(TestInteractiveRetry)).check(
            |_, params| {
                let Some(scripts) = params.get("interactive") else {
                    return Err("\"interactive\" not in parameters".into());
                };
                check_required(Some(scripts), &["name", "prompts", "script"])
            },
        ),
    );
}
