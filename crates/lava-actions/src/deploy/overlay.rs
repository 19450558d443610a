//! The `overlay` deploy family: only build the LAVA overlay (`to: overlay`).

use crate::common::lava_overlay::OverlayAction;
use lava_pipeline::{Action, Device, Section, Strategy, StrategyRegistry};
use serde_yaml::{Mapping, Value};

/// `to: overlay` on devices with the `overlay` deploy method.
pub struct Overlay;

impl Strategy for Overlay {
    fn section(&self) -> Section {
        Section::Deploy
    }
    fn name(&self) -> &str {
        "overlay"
    }
    fn accepts(&self, device: &Device, params: &Mapping) -> Result<(), String> {
        if !device.has_deploy_method("overlay") {
            return Err("'overlay' not in the device configuration deploy methods".into());
        }
        if params.get("to").and_then(Value::as_str) != Some("overlay") {
            return Err("\"to\" parameter is not \"overlay\"".into());
        }
        Ok(())
    }
    fn action(&self, _params: &Mapping) -> Box<dyn Action> {
        Box::new(OverlayAction::new())
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(Overlay);
}
