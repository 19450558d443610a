//! Actions shared by several strategy families (overlay, test definitions, downloads,
//! login, shell expectations, environment export, power, finalize, user commands).

pub mod apply_overlay;
pub mod bootloader;
pub mod command;
pub mod download;
pub mod env;
pub mod fastboot;
pub mod finalize;
pub mod login;
pub mod overlay;
pub mod power;
pub mod prepare_overlay;
pub mod testdef;

use lava_pipeline::command::{run_command, shlex_split};
use lava_pipeline::{ErrorKind, LavaResult, RunContext};
use serde_yaml::Value;

/// The commands of a device or job setting that may be one string or a list of strings
/// (`commands.power_on`, user command `do`/`undo`...). Other values give no command.
pub fn command_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(lava_pipeline::value::scalar_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Run each shell-style command line on the worker, in order, under the current
/// deadline; a failure is an error of `kind` (InfrastructureError for lab commands).
pub async fn run_host_commands(
    ctx: &mut RunContext,
    commands: &[String],
    kind: ErrorKind,
) -> LavaResult<()> {
    for line in commands {
        let argv = shlex_split(line)?;
        if argv.is_empty() {
            continue;
        }
        let deadline = ctx.deadline();
        run_command(&ctx.logger, &argv, None, deadline, kind, false).await?;
    }
    Ok(())
}

/// A string block parameter.
pub fn param_str<'a>(params: &'a serde_yaml::Mapping, key: &str) -> Option<&'a str> {
    params.get(key).and_then(Value::as_str)
}
