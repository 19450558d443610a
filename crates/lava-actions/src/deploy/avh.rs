//! The `avh` deploy family.

use lava_pipeline::StrategyRegistry;

/// Register this family's strategies.
pub fn register(_registry: &mut StrategyRegistry) {}
