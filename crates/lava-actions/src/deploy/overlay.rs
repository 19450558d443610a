//! The `overlay` deploy family: only build the LAVA overlay (`to: overlay`).

use crate::common::lava_overlay::OverlayAction;
use lava_pipeline::{Declared, StrategyRegistry};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("overlay", |_| Box::new(OverlayAction::new()))
            .device_method_with(
                "overlay",
                "'overlay' not in the device configuration deploy methods",
            )
            .to_only("overlay"),
    );
}
