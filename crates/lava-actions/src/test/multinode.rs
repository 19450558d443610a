//! The MultiNode test family: a test shell that also answers the MultiNode signals
//! (`multinode-test`); monitors and interactive tests keep their own actions.

use super::interactive::TestInteractiveRetry;
use super::monitor::TestMonitorRetry;
use super::shell::check_definitions;
use crate::runtime::multinode::CoordinatorAnswers;
use crate::runtime::test_shell::run_test_shell_with;
use lava_pipeline::{
    Action, Declared, ErrorKind, LavaResult, Pipeline, RunContext, StrategyRegistry, TestNeeds,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::Mapping;

/// The MultiNode protocol name.
pub const MULTINODE_PROTOCOL: &str = "lava-multinode";

/// `multinode-test`: lava-test-shell plus the MultiNode API over the coordinator.
#[derive(Debug, Default)]
pub struct MultinodeTestAction;

#[async_trait]
impl Action for MultinodeTestAction {
    action_identity!(
        "multinode-test",
        "MultinodeTestAction",
        "Executing lava-test-runner",
        "Multinode Lava Test Shell"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Test
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        check_definitions(&ctx.meta.parameters, &mut errors)?;
        if !ctx.job.has_protocol(MULTINODE_PROTOCOL) {
            errors.push("Invalid job - missing protocol".into());
        }
        if !ctx.meta.parameters.contains_key(MULTINODE_PROTOCOL) {
            errors.push("Missing protocol".into());
        }
        if !errors.is_empty() {
            errors.push("Invalid base class TestAction".into());
        }
        ctx.add_errors(errors);
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let mut answers = CoordinatorAnswers::for_job(ctx)?;
        run_test_shell_with(ctx, &mut answers).await
    }
}

/// What a MultiNode test block really is (LAVA picks by the block's keys).
fn inner(params: &Mapping) -> &'static str {
    if params.contains_key("monitors") {
        "monitors"
    } else if params.contains_key("interactive") {
        "interactive"
    } else if params.contains_key("docker") {
        "docker"
    } else {
        "shell"
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    let build = |params: &Mapping| -> Box<dyn Action> {
        match inner(params) {
            "monitors" => Box::new(TestMonitorRetry),
            "interactive" => Box::new(TestInteractiveRetry),
            _ => Box::new(MultinodeTestAction),
        }
    };
    registry.register(
        Declared::test("multinode-test", build)
            .priority(2)
            .param("role", "\"role\" not in parameters")
            .check(|_, params| {
                let Some(protocol) = params.get(MULTINODE_PROTOCOL) else {
                    return Err(format!("{MULTINODE_PROTOCOL} was not in parameters"));
                };
                if protocol.get("target_group").is_none() {
                    return Err(format!(
                        "\"target_group\" was not in parameters for {MULTINODE_PROTOCOL}"
                    ));
                }
                Ok(())
            })
            .needs(|params| {
                let inner = inner(params);
                TestNeeds {
                    overlay: matches!(inner, "shell" | "docker"),
                    ..if inner == "shell" {
                        TestNeeds::SHELL
                    } else {
                        TestNeeds::default()
                    }
                }
            }),
    );
}
