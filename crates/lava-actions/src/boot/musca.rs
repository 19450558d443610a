//! The `musca` boot: power the Musca board and connect to its USB serial console.

use crate::common::env::ExportDeviceEnvironment;
use crate::common::fastboot::{WaitUSBSerialDeviceAction, test_has_shell};
use crate::common::login::{AutoLoginAction, ExpectShellSession, OverlayUnpack};
use crate::common::power::{ConnectDevice, ResetDevice};
use lava_pipeline::{
    Action, Device, LavaResult, PipelineBuilder, Section, Strategy, StrategyRegistry,
    action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(MuscaBootStrategy);
}

/// `method: musca`.
pub struct MuscaBootStrategy;

impl Strategy for MuscaBootStrategy {
    fn section(&self) -> Section {
        Section::Boot
    }
    fn name(&self) -> &str {
        "musca"
    }
    fn accepts(&self, device: &Device, params: &Mapping) -> Result<(), String> {
        if !device.has_boot_method("musca") {
            return Err("\"musca\" was not in device configuration boot methods".into());
        }
        if params.get("method").and_then(Value::as_str) != Some("musca") {
            return Err("\"method\" was not \"musca\"".into());
        }
        if !device.has("board_id") {
            return Err("\"board_id\" is not in the device configuration".into());
        }
        Ok(())
    }
    fn action(&self, _params: &Mapping) -> Box<dyn Action> {
        Box::new(MuscaBoot)
    }
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
