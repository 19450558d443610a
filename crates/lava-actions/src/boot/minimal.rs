//! The `minimal` boot family: connect to the console and reset the device, then log in
//! (`minimal-boot`).

use super::qemu::add_login_steps;
use crate::common::power::{ConnectDevice, PreOs, PrePower, ResetDevice};
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, Device, LavaResult, PipelineBuilder, Section, Strategy, StrategyRegistry,
    action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// `minimal-boot`: connect, optional pre-power / pre-OS commands, reset (unless
/// `reset: false`), then login (retried).
#[derive(Debug, Default)]
pub struct MinimalBoot;

#[async_trait]
impl Action for MinimalBoot {
    action_identity!(
        "minimal-boot",
        "MinimalBoot",
        "connect and reset device",
        "connect and reset device"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let params = pipeline.parameters().clone();
        pipeline.add(ConnectDevice::new())?;
        if truthy(params.get("pre_power_command")) {
            pipeline.add(PrePower)?;
        }
        if truthy(params.get("pre_os_command")) {
            pipeline.add(PreOs)?;
        }
        if params.get("reset").is_none_or(|v| truthy(Some(v))) {
            pipeline.add(ResetDevice::new())?;
        }
        add_login_steps(pipeline, true)
    }
}

/// `method: minimal` on devices with the `minimal` boot method.
pub struct Minimal;

impl Strategy for Minimal {
    fn section(&self) -> Section {
        Section::Boot
    }
    fn name(&self) -> &str {
        "minimal"
    }
    fn accepts(&self, device: &Device, params: &Mapping) -> Result<(), String> {
        if !device.has_boot_method("minimal") {
            return Err("\"minimal\" was not in device configuration boot methods".into());
        }
        if params.get("method").and_then(Value::as_str) != Some("minimal") {
            return Err("\"method\" was not \"minimal\"".into());
        }
        Ok(())
    }
    fn action(&self, _params: &Mapping) -> Box<dyn Action> {
        Box::new(MinimalBoot)
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(Minimal);
}
