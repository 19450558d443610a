//! `user-command`: run a device command (`commands.<name>` or `commands.users.<name>`).

use super::{command_list, run_host_commands};
use lava_pipeline::{
    Action, ErrorKind, LavaError, LavaResult, Pipeline, RunContext, ValidateContext,
    action_identity, async_trait,
};
use lava_python::shlex_quote;
use serde_yaml::{Mapping, Value};

/// Device commands a `command` block may name directly (not under `commands.users`).
pub const BUILTIN_COMMANDS: [&str; 9] = [
    "pre_power_command",
    "pre_os_command",
    "hard_reset",
    "power_on",
    "power_off",
    "recovery_mode",
    "recovery_exit",
    "usbg_ms_commands_disable",
    "stop_test_services",
];

/// What a command block resolves to: the lines to run and the lines that undo them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvedCommand {
    /// The command lines to run now.
    pub run: Vec<String>,
    /// The command lines to run at the end of the job (a user command's `undo`).
    pub undo: Vec<String>,
    /// `stop_test_services`: the stop commands are recorded by `lava-test-service` at
    /// run time in the namespace data (`lava-test-service`/`stop-services`/`cmd-list`).
    pub from_services: bool,
}

/// The `user-command` action of a `command:` block.
#[derive(Debug)]
pub struct CommandAction {
    /// The command name (`name:` of the block).
    pub name: String,
    /// The block's namespace.
    pub namespace: String,
    ran: bool,
}

impl CommandAction {
    /// The action for a `command` block (its `name`, `namespace`...).
    pub fn new(block: &Mapping) -> Self {
        CommandAction {
            name: block
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            namespace: block
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("common")
                .to_string(),
            ran: false,
        }
    }

    /// Resolve the command against the device (and, for `stop_test_services`, the job's
    /// test blocks), as LAVA's validation does. `Err(Ok(msg))` is a recorded error,
    /// `Err(Err(e))` an error that aborts validation.
    pub fn resolve(
        &self,
        job: &lava_pipeline::Job,
    ) -> Result<ResolvedCommand, Result<String, LavaError>> {
        let device = &job.device;
        let name = self.name.as_str();
        if BUILTIN_COMMANDS.contains(&name) {
            if name == "usbg_ms_commands_disable" {
                return match device
                    .deploy_method("usbg-ms")
                    .and_then(|v| v.get("disable"))
                {
                    Some(Value::Sequence(items)) => {
                        let parts: Vec<String> = items
                            .iter()
                            .filter_map(lava_pipeline::value::scalar_string)
                            .collect();
                        Ok(ResolvedCommand {
                            run: vec![parts.join(" ")],
                            ..Default::default()
                        })
                    }
                    Some(v) => Ok(ResolvedCommand {
                        run: command_list(Some(v)),
                        ..Default::default()
                    }),
                    None => Err(Ok(
                        "Command 'usbg_ms_commands.disable' not defined for this device".into(),
                    )),
                };
            }
            if name == "stop_test_services" {
                return if self.services_declared(job) {
                    Ok(ResolvedCommand {
                        from_services: true,
                        ..Default::default()
                    })
                } else {
                    Err(Ok("Command for 'stop_test_services' not found. \
                            No 'test.services' action defined?"
                        .into()))
                };
            }
            let commands = device.lookup(&["commands"]).and_then(Value::as_mapping);
            return match commands.and_then(|c| c.get(name)) {
                Some(v) => Ok(ResolvedCommand {
                    run: command_list(Some(v)),
                    ..Default::default()
                }),
                None => Err(Ok(format!("Command '{name}' not defined for this device"))),
            };
        }
        let users = device
            .lookup(&["commands", "users"])
            .filter(|u| lava_pipeline::value::truthy(Some(u)));
        let Some(users) = users else {
            return Err(Ok("Device has no configured user commands".into()));
        };
        let Some(entry) = users.get(name) else {
            return Err(Ok(format!("Unknown user command '{name}'")));
        };
        let valid = |v: Option<&Value>| match v {
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Sequence(items)) => {
                !items.is_empty()
                    && items
                        .iter()
                        .all(|c| c.as_str().is_some_and(|s| !s.is_empty()))
            }
            _ => false,
        };
        let undo = entry.get("undo");
        if !valid(entry.get("do")) || (undo.is_some() && !valid(undo)) {
            return Err(Err(LavaError::configuration(format!(
                "User command \"{name}\" is invalid: \"do\" and \"undo\" should be \
                 non-empty strings or non-empty lists of non-empty strings"
            ))));
        }
        Ok(ResolvedCommand {
            run: command_list(entry.get("do")),
            undo: command_list(undo),
            from_services: false,
        })
    }

    /// Whether a test block of this namespace declares `services` (whose validation
    /// records the stop commands in LAVA).
    fn services_declared(&self, job: &lava_pipeline::Job) -> bool {
        let Some(actions) = job.parameters.get("actions").and_then(Value::as_sequence) else {
            return false;
        };
        actions.iter().filter_map(|a| a.get("test")).any(|test| {
            let ns = test
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("common");
            ns == self.namespace && test.get("services").is_some()
        })
    }
}

#[async_trait]
impl Action for CommandAction {
    action_identity!(
        "user-command",
        "CommandAction",
        "execute one of the commands listed by the admin",
        "execute commands"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        match self.resolve(ctx.job) {
            Ok(_) => Ok(()),
            Err(Ok(message)) => {
                ctx.error(message);
                Ok(())
            }
            Err(Err(e)) => Err(e),
        }
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let resolved = self.resolve(&ctx.job).map_err(|e| match e {
            Ok(message) => LavaError::job(message),
            Err(e) => e,
        })?;
        ctx.logger
            .info(format!("Running user command '{}'", self.name));
        self.ran = true;
        let commands = if resolved.from_services {
            stop_service_commands(ctx)
        } else {
            resolved.run
        };
        run_host_commands(ctx, &commands, ErrorKind::Infrastructure).await
    }
    async fn cleanup(&mut self, ctx: &mut RunContext) -> LavaResult<()> {
        if !self.ran {
            ctx.logger
                .debug("Skipping user-command 'undo' as 'do' was not called");
            return Ok(());
        }
        let Ok(resolved) = self.resolve(&ctx.job) else {
            return Ok(());
        };
        if resolved.undo.is_empty() {
            return Ok(());
        }
        ctx.logger
            .info(format!("Running cleanup for user command '{}'", self.name));
        run_host_commands(ctx, &resolved.undo, ErrorKind::Infrastructure).await
    }
}

/// The `docker compose ... down` commands recorded by `lava-test-service`.
fn stop_service_commands(ctx: &RunContext) -> Vec<String> {
    let Some(Value::Sequence(list)) =
        ctx.get_data("lava-test-service", "stop-services", "cmd-list")
    else {
        return Vec::new();
    };
    list.iter()
        .map(|cmd| match cmd {
            Value::Sequence(argv) => argv
                .iter()
                .filter_map(lava_pipeline::value::scalar_string)
                .map(|a| shlex_quote(&a))
                .collect::<Vec<_>>()
                .join(" "),
            other => lava_pipeline::value::scalar_string(other).unwrap_or_default(),
        })
        .collect()
}

/// The action for a `command` block.
pub fn command_action(block: &Mapping) -> Box<dyn Action> {
    Box::new(CommandAction::new(block))
}
