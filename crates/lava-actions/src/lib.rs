//! The built-in strategies of the LAVA dispatcher: deploy (`to:`), boot (`method:`) and
//! test blocks, the actions they build, and the fixed actions every job has (`finalize`,
//! `user-command`).
//!
//! [`registry`] returns a [`StrategyRegistry`] holding every strategy; [`FIXED`] builds the
//! actions not chosen by a strategy. Each strategy family lives in its own module and
//! registers itself in that module's `register` function: adding a method is one module.
//!
//! ```
//! let registry = lava_actions::registry();
//! assert!(registry.of(lava_pipeline::Section::Boot).count() > 0 || true);
//! ```

#![warn(missing_docs)]

pub mod boot;
pub mod common;
pub mod deploy;
pub mod protocols;
pub mod runtime;
pub mod test;

use lava_pipeline::{Action, FixedActions, StrategyRegistry};
use serde_yaml::Mapping;

/// The registered strategies of `section` named `name`, in registration order (tests
/// ask a strategy its reasons through this).
#[cfg(test)]
pub(crate) fn strategies(
    section: lava_pipeline::Section,
    name: &str,
) -> Vec<std::sync::Arc<dyn lava_pipeline::Strategy>> {
    registry()
        .of(section)
        .filter(|s| s.name() == name)
        .cloned()
        .collect()
}

/// The first registered strategy of `section` named `name`.
#[cfg(test)]
pub(crate) fn strategy(
    section: lava_pipeline::Section,
    name: &str,
) -> std::sync::Arc<dyn lava_pipeline::Strategy> {
    strategies(section, name).remove(0)
}

/// Every built-in strategy.
pub fn registry() -> StrategyRegistry {
    let mut registry = StrategyRegistry::new();
    deploy::register(&mut registry);
    boot::register(&mut registry);
    test::register(&mut registry);
    registry
}

/// The fixed actions: `finalize` and `user-command`.
pub struct Fixed;

/// The fixed actions, for [`lava_pipeline::JobParser::new`].
pub static FIXED: Fixed = Fixed;

impl FixedActions for Fixed {
    fn finalize(&self) -> Box<dyn Action> {
        common::finalize::finalize_action()
    }
    fn command(&self, block: &Mapping) -> Box<dyn Action> {
        common::command::command_action(block)
    }
}
