//! Test strategies, one module per family.

pub mod docker;
pub mod interactive;
pub mod monitor;
pub mod multinode;
pub mod service;
pub mod shell;

use lava_pipeline::StrategyRegistry;

/// Register every test strategy.
pub fn register(registry: &mut StrategyRegistry) {
    shell::register(registry);
    interactive::register(registry);
    monitor::register(registry);
    multinode::register(registry);
    docker::register(registry);
    service::register(registry);
}
