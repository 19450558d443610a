//! The `avh` boot: create an Arm Virtual Hardware instance and use its console.

use crate::common::env::ExportDeviceEnvironment;
use crate::common::fastboot::test_has_shell;
use crate::common::login::{AutoLoginAction, ExpectShellSession};
use lava_pipeline::{
    Action, ActionMeta, Declared, LavaError, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("avh", |_| Box::new(BootAvhAction))
            .device_method_with("avh", "'avh' not in the device configuration boot methods")
            .method_with("avh", "'method' is not 'avh'"),
    );
}

/// `boot-avh`.
#[derive(Debug, Default)]
pub struct BootAvhAction;

#[async_trait]
impl Action for BootAvhAction {
    action_identity!(
        "boot-avh",
        "BootAvhAction",
        "boot avh device",
        "boot avh device"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(CallAvhAction::default())?;
        if pipeline.param("prompts").is_some() {
            pipeline.add(AutoLoginAction::new())?;
            if test_has_shell(pipeline) {
                pipeline.add(ExpectShellSession::new())?;
                pipeline.add(ExportDeviceEnvironment::new())?;
            }
        }
        Ok(())
    }
}

/// `call-avh`: create the instance from the uploaded firmware and open its console.
#[derive(Debug, Default)]
pub struct CallAvhAction {
    /// The kernel command line overrides (`bootargs`).
    pub bootargs: Option<Value>,
}

#[async_trait]
impl Action for CallAvhAction {
    action_identity!("call-avh", "CallAvhAction", "call avh api", "call avh api");
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.bootargs = pipeline.param("bootargs").cloned();
        Ok(())
    }
    fn validate(&self, _ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        match &self.bootargs {
            Some(v) if lava_pipeline::value::truthy(Some(v)) && !v.is_mapping() => {
                Err(LavaError::job("'boot.bootargs' should be a dictionary"))
            }
            _ => Ok(()),
        }
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}
