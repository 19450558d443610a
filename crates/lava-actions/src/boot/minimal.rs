//! The `minimal` boot family: connect to the console and reset the device, then log in
//! (`minimal-boot`).

use super::qemu::add_login_steps;
use crate::common::power::{ConnectDevice, PreOs, PrePower, ResetDevice};
use lava_pipeline::BlockLookups;
use lava_pipeline::{
    Action, Declared, LavaResult, PipelineBuilder, StrategyRegistry, action_identity, async_trait,
};

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
        let params = pipeline.params();
        pipeline.add(ConnectDevice::new())?;
        if params.flag("pre_power_command") {
            pipeline.add(PrePower)?;
        }
        if params.flag("pre_os_command") {
            pipeline.add(PreOs)?;
        }
        if params.flag_or("reset", true) {
            pipeline.add(ResetDevice::new())?;
        }
        add_login_steps(pipeline, true)
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("minimal", |_| Box::new(MinimalBoot))
            .device_method_with(
                "minimal",
                "\"minimal\" was not in device configuration boot methods",
            )
            .method("minimal"),
    );
}
