//! The `musca` boot: power the Musca board and connect to its USB serial console.

use crate::common::env::ExportDeviceEnvironment;
use crate::common::fastboot::{WaitUSBSerialDeviceAction, test_has_shell};
use crate::common::login::{AutoLoginAction, ExpectShellSession, OverlayUnpack};
use crate::common::power::{ConnectDevice, ResetDevice};
use lava_pipeline::{
    Action, Declared, LavaResult, PipelineBuilder, StrategyRegistry, action_identity, async_trait,
};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("musca", |_| Box::new(MuscaBoot))
            .device_method_with(
                "musca",
                "\"musca\" was not in device configuration boot methods",
            )
            .method("musca")
            .device_key("board_id"),
    );
}

/// `musca-boot`.
#[derive(Debug, Default)]
pub struct MuscaBoot;

#[async_trait]
impl Action for MuscaBoot {
    action_identity!(
        "musca-boot",
        "MuscaBoot",
        "power device and trigger software to run",
        "power device and trigger software to run"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(ResetDevice::new())?;
        pipeline.add(WaitUSBSerialDeviceAction::new())?;
        pipeline.add(ConnectDevice::new())?;
        if pipeline.param("prompts").is_some() {
            pipeline.add(AutoLoginAction::new())?;
        }
        if test_has_shell(pipeline) {
            pipeline.add(ExpectShellSession::new())?;
            if pipeline.param("transfer_overlay").is_some() {
                pipeline.add(OverlayUnpack::new())?;
            }
            pipeline.add(ExportDeviceEnvironment::new())?;
        }
        Ok(())
    }
}
