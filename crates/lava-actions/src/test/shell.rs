//! The `shell` test family: run the test definitions in the overlay with
//! lava-test-runner (`lava-test-retry` → `lava-test-shell`).

use lava_pipeline::{
    Action, Declared, ErrorKind, LavaError, LavaResult, Pipeline, PipelineBuilder, RunContext,
    StrategyRegistry, TestNeeds, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// LAVA's `TestShellAction.validate` checks on the definitions (JobError when missing).
pub fn check_definitions(params: &Mapping, errors: &mut Vec<String>) -> LavaResult<()> {
    let definitions = params
        .get("definitions")
        .ok_or_else(|| LavaError::job("Missing test 'definitions'"))?;
    for testdef in definitions.as_sequence().into_iter().flatten() {
        if testdef.get("repository").is_none() {
            errors.push("Repository missing from test definition".into());
        }
    }
    Ok(())
}

/// `lava-test-retry`: the test shell (retried).
#[derive(Debug, Default)]
pub struct TestShellRetry;

#[async_trait]
impl Action for TestShellRetry {
    action_identity!(
        "lava-test-retry",
        "TestShellRetry",
        "Retry wrapper for lava-test-shell",
        "Retry support for Lava Test Shell"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(TestShellAction)
    }
}

/// `lava-test-shell`: start lava-test-runner for the block's stage and follow its
/// signals until it exits.
#[derive(Debug, Default)]
pub struct TestShellAction;

#[async_trait]
impl Action for TestShellAction {
    action_identity!(
        "lava-test-shell",
        "TestShellAction",
        "Executing lava-test-runner",
        "Lava Test Shell"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Timeout
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        let result = check_definitions(&ctx.meta.parameters, &mut errors);
        ctx.add_errors(errors);
        result
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::test_shell::run_test_shell(ctx).await
    }
}

/// Whether a value is a list of mappings each holding every `required` key; the
/// message names the missing keys of the first incomplete item, as LAVA.
pub fn check_required(items: Option<&Value>, required: &[&str]) -> Result<(), String> {
    for item in items.and_then(Value::as_sequence).into_iter().flatten() {
        let mut missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| item.get(*k).is_none())
            .collect();
        if !missing.is_empty() {
            missing.sort_unstable();
            let shown: Vec<String> = missing.iter().map(|m| format!("'{m}'")).collect();
            return Err(format!(
                "missing required parameters [{}]",
                shown.join(", ")
            ));
        }
    }
    Ok(())
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::test("lava-test-shell", |_| Box::new(TestShellRetry))
            .param("definitions", "\"definitions\" not in parameters")
            .needs(|_| TestNeeds::SHELL),
    );
}
