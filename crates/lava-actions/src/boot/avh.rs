//! The `avh` boot: create an Arm Virtual Hardware instance and use its console.

use crate::common::env::ExportDeviceEnvironment;
use crate::common::fastboot::test_has_shell;
use crate::common::login::{AutoLoginAction, ExpectShellSession};
use lava_pipeline::{
    Action, ActionMeta, Device, LavaError, LavaResult, PipelineBuilder, Runnable, Section,
    Strategy, StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(BootAvhStrategy);
}

/// `method: avh`.
pub struct BootAvhStrategy;

impl Strategy for BootAvhStrategy {
    fn section(&self) -> Section {
        Section::Boot
    }
    fn name(&self) -> &str {
        "avh"
    }
    fn accepts(&self, device: &Device, params: &Mapping) -> Result<(), String> {
        if !device.has_boot_method("avh") {
            return Err("'avh' not in the device configuration boot methods".into());
        }
        if params.get("method").and_then(Value::as_str) != Some("avh") {
            return Err("'method' is not 'avh'".into());
        }
        Ok(())
    }
    fn action(&self, _params: &Mapping) -> Box<dyn Action> {
        Box::new(BootAvhAction)
    }
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
