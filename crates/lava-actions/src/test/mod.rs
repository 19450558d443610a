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
    // LAVA's order: among strategies of equal priority the first accepting one wins.
    docker::register(registry);
    interactive::register(registry);
    monitor::register(registry);
    multinode::register(registry);
    shell::register(registry);
    service::register(registry);
}
