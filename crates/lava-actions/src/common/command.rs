//! `user-command`: run a device command (`commands.<name>` or `commands.users.<name>`).

use lava_pipeline::Action;
use serde_yaml::Mapping;

/// The action for a `command` block.
pub fn command_action(_block: &Mapping) -> Box<dyn Action> {
    todo!("user-command is being written")
}
