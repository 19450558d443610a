//! Run-time: `lava-test-interactive`, scripted commands at a prompt without a test shell
//! (typically U-Boot's `=> `), as LAVA's `TestInteractiveAction` does.
//!
//! Each script of the block's `interactive` list sets its `prompts`; each command of its
//! `script` is sent (after substituting the bootloader's table, `{SERVER_IP}`, `{JOB_ID}`
//! and groups of earlier successes), then the prompts, `failures` and `successes`
//! messages are awaited. A named command is a test case of suite `<stage>_<script>`
//! (pass: a prompt without `successes`, or a success); a failure with an `exception`
//! raises that error kind; an unnamed command that fails is a TestError. Each script is
//! itself a `lava` case `<stage>_<script>`. Waits end at the action's deadline (its own
//! timeout error). Scripts with MultiNode commands (`lava-send`, `lava-wait`...) are not
//! run by lava-rs yet ([`uses_multinode`]).

use super::boot_commands::dispatcher_ip;
use super::console::{ConsoleConnection, on_console, wait_error};
use super::substitute_line;
use lava_connection::Patterns;
use lava_pipeline::value::scalar_string;
use lava_pipeline::{ErrorKind, LavaError, LavaResult, RunContext};
use serde_yaml::{Mapping, Value};
use std::time::{Duration, Instant};

/// The MultiNode commands of interactive scripts.
pub const MULTINODE_COMMANDS: [&str; 4] = ["lava-send", "lava-wait", "lava-wait-all", "lava-sync"];

/// Whether any script of an `interactive` list uses a MultiNode command.
pub fn uses_multinode(interactive: Option<&Value>) -> bool {
    interactive
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("script").and_then(Value::as_sequence))
        .flatten()
        .any(|cmd| MULTINODE_COMMANDS.iter().any(|k| cmd.get(*k).is_some()))
}

/// The ordered substitution table of the scripts: `(placeholder, value)`.
type Table = Vec<(String, String)>;

fn set(table: &mut Table, key: String, value: String) {
    match table.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => table.push((key, value)),
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar_string).collect(),
        Some(v) => scalar_string(v).into_iter().collect(),
        None => Vec::new(),
    }
}

fn messages(value: Option<&Value>) -> Vec<(String, Option<String>, Option<String>)> {
    value
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .map(|p| {
            let get = |k: &str| p.get(k).and_then(scalar_string);
            (
                get("message").unwrap_or_default(),
                get("exception"),
                get("error"),
            )
        })
        .collect()
}

/// LAVA's `raise_exception` of a matched failure.
pub fn failure_error(exception: &str, message: &str) -> LavaError {
    match exception {
        "InfrastructureError" => LavaError::infrastructure(message),
        "JobError" => LavaError::job(message),
        "TestError" => LavaError::test(message),
        other => LavaError::job(format!("Unknown exception '{other}' with '{message}'")),
    }
}

fn named_groups(pattern: &str, text: &str) -> Vec<(String, String)> {
    let Ok(regex) = regex::RegexBuilder::new(pattern)
        .dot_matches_new_line(true)
        .build()
    else {
        return Vec::new();
    };
    let Some(captures) = regex.captures(text) else {
        return Vec::new();
    };
    regex
        .capture_names()
        .flatten()
        .filter_map(|name| {
            captures
                .name(name)
                .map(|m| (name.to_string(), m.as_str().to_string()))
        })
        .collect()
}

/// `lava-test-interactive`: every script of the block, in order.
pub async fn run_scripts(ctx: &mut RunContext) -> LavaResult<()> {
    let params = ctx.meta().parameters.clone();
    let mut table: Table = Vec::new();
    if let Some(Value::Mapping(subs)) =
        ctx.get_data("bootloader-overlay", "u-boot", "substitutions")
    {
        for (k, v) in subs {
            if let (Some(k), Some(v)) = (scalar_string(k), scalar_string(v)) {
                table.push((k, v));
            }
        }
    }
    if !table.iter().any(|(k, _)| k == "{SERVER_IP}") {
        let ip = dispatcher_ip(ctx.job.parameters.get("dispatcher"), None).ok_or_else(|| {
            LavaError::infrastructure("Unable to find dispatcher 'default' gateway")
        })?;
        table.push(("{SERVER_IP}".into(), ip));
    }
    set(&mut table, "{JOB_ID}".into(), ctx.job.id.clone());
    let delay = Duration::from_millis(ctx.job.device.character_delay_ms("test"));
    on_console!(ctx, console => async {
        let previous = console.session().character_delay();
        console.session().set_character_delay(delay);
        let outcome = run_all(ctx, console, &params, &mut table).await;
        console.session().set_character_delay(previous);
        outcome
    })
}

async fn run_all(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    params: &Mapping,
    table: &mut Table,
) -> LavaResult<()> {
    let stage = params
        .get("stage")
        .and_then(scalar_string)
        .unwrap_or_else(|| "0".into());
    let scripts = params
        .get("interactive")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    for script in &scripts {
        let name = script
            .get("name")
            .and_then(scalar_string)
            .unwrap_or_default();
        let started = Instant::now();
        let timeout = ctx.meta().timeout.min(ctx.meta().connection_timeout);
        ctx.logger.info(format!(
            "Test interactive timeout: {timeout}s (minimum of the action and connection timeout)"
        ));
        let outcome = run_script(ctx, console, &stage, script, table).await;
        let mut record = Mapping::new();
        record.insert("definition".into(), "lava".into());
        record.insert("case".into(), format!("{stage}_{name}").into());
        record.insert(
            "result".into(),
            if outcome.is_ok() { "pass" } else { "fail" }.into(),
        );
        record.insert(
            "duration".into(),
            format!("{:.2}", started.elapsed().as_secs_f64()).into(),
        );
        ctx.logger.results(record);
        outcome?;
    }
    Ok(())
}

async fn run_script(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    stage: &str,
    script: &Value,
    table: &mut Table,
) -> LavaResult<()> {
    let prompts = strings(script.get("prompts"));
    let script_name = script
        .get("name")
        .and_then(scalar_string)
        .unwrap_or_default();
    let discard_echo = script.get("echo").and_then(Value::as_str) == Some("discard");
    let commands = script
        .get("script")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    for cmd in &commands {
        if let Some(delay) = cmd.get("delay") {
            let seconds = delay.as_f64().unwrap_or_default().max(0.0);
            ctx.logger.info(format!(
                "Delaying for {}s",
                scalar_string(delay).unwrap_or_default()
            ));
            tokio::time::sleep(Duration::from_secs_f64(seconds).min(ctx.remaining())).await;
            continue;
        }
        if MULTINODE_COMMANDS.iter().any(|k| cmd.get(*k).is_some()) {
            return Err(LavaError::job(
                "MultiNode commands in interactive tests cannot run in lava-rs yet",
            ));
        }
        let command = cmd
            .get("command")
            .and_then(scalar_string)
            .map(|c| substitute_line(&c, table));
        let case_name = cmd.get("name").and_then(scalar_string);
        let started = Instant::now();
        let outcome = run_command(
            ctx,
            console,
            cmd,
            command.as_deref(),
            &prompts,
            discard_echo,
            table,
        )
        .await;
        if let Some(case) = &case_name {
            let mut record = Mapping::new();
            record.insert("definition".into(), format!("{stage}_{script_name}").into());
            record.insert("case".into(), case.clone().into());
            let passed = matches!(outcome, Ok(true));
            record.insert("result".into(), if passed { "pass" } else { "fail" }.into());
            record.insert(
                "duration".into(),
                format!("{:.2}", started.elapsed().as_secs_f64()).into(),
            );
            ctx.logger.results(record);
        }
        let passed = outcome?;
        if case_name.is_none() && !passed {
            return Err(LavaError::test(format!(
                "Failed to run command '{}'",
                command.unwrap_or_else(|| "None".into())
            )));
        }
    }
    Ok(())
}

/// One command: `Ok(true)` when it passed.
async fn run_command(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    cmd: &Value,
    command: Option<&str>,
    prompts: &[String],
    discard_echo: bool,
    table: &mut Table,
) -> LavaResult<bool> {
    match command {
        None => ctx.logger.info("Sending nothing, waiting"),
        Some(command) => {
            ctx.logger.info(format!("Sending '{command}'"));
            console.session().sendline(command).await?;
            if discard_echo {
                let line = wait(ctx, console, &["\n".to_string()]).await?;
                ctx.logger.debug(format!(
                    "Ignoring echo: {:?}",
                    format!("{}{}", line.before, line.matched)
                ));
            }
        }
    }
    let failures = messages(cmd.get("failures"));
    let successes = messages(cmd.get("successes"));
    let wait_for_prompt = cmd
        .get("wait_for_prompt")
        .map(|v| lava_pipeline::value::truthy(Some(v)))
        .unwrap_or(true);
    let mut expect: Vec<String> = prompts.to_vec();
    expect.extend(failures.iter().map(|f| f.0.clone()));
    expect.extend(successes.iter().map(|s| s.0.clone()));
    ctx.logger
        .debug(format!("Waiting for '{}'", expect.join("', '")));
    let found = wait(ctx, console, &expect).await?;
    let matched = &expect[found.index];
    if prompts.contains(matched) {
        if !successes.is_empty() {
            ctx.logger.error(format!(
                "Matched a prompt (was expecting a success): '{matched}'"
            ));
            return Ok(false);
        }
        ctx.logger.debug(format!("Matched a prompt: '{matched}'"));
        return Ok(true);
    }
    let failure_index = found.index.checked_sub(prompts.len());
    let is_failure = failures.iter().any(|f| &f.0 == matched);
    let mut passed = false;
    if is_failure {
        ctx.logger.error(format!("Matched a failure: '{matched}'"));
        if let Some((_, Some(exception), error)) = failure_index.and_then(|i| failures.get(i)) {
            return Err(failure_error(
                exception,
                error.as_deref().unwrap_or(matched),
            ));
        }
    } else {
        let groups = named_groups(matched, &found.matched);
        if groups.is_empty() {
            ctx.logger.info(format!("Matched a success: '{matched}'"));
        } else {
            let shown: Vec<String> = groups
                .iter()
                .map(|(k, v)| format!("'{k}': '{v}'"))
                .collect();
            ctx.logger.info(format!(
                "Matched a success: '{matched}' (groups: {{{}}})",
                shown.join(", ")
            ));
        }
        for (k, v) in groups {
            set(table, format!("{{{k}}}"), v);
        }
        passed = true;
    }
    if wait_for_prompt {
        let found = wait(ctx, console, prompts).await?;
        ctx.logger
            .debug(format!("Matched a prompt: '{}'", prompts[found.index]));
    }
    Ok(passed)
}

/// Waits for `patterns` until the action's deadline: then the action's own timeout.
async fn wait(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    patterns: &[String],
) -> LavaResult<lava_connection::Match> {
    let compiled = Patterns::new(patterns)?;
    let deadline = ctx.deadline();
    match console.session().wait_for(&compiled, deadline).await {
        Ok(found) => Ok(found),
        Err(e) if e.kind() == lava_connection::ErrorKind::ConnectionClosed => Err(LavaError::new(
            ErrorKind::ConnectionClosed,
            "Connection closed",
        )),
        Err(e) => Err(wait_error(ctx, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutions_leave_unknown_placeholders() {
        let table = vec![
            ("{SERVER_IP}".to_string(), "10.0.2.2".to_string()),
            ("{EMPTY}".to_string(), String::new()),
        ];
        assert_eq!(
            substitute_line("ping {SERVER_IP} {EMPTY} {OTHER}", &table),
            "ping 10.0.2.2 {EMPTY} {OTHER}"
        );
    }

    #[test]
    fn multinode_scripts_are_recognised() {
        let yaml: Value = serde_yaml::from_str(
            "[{name: a, prompts: ['=>'], script: [{command: x}, {lava-send: ready}]}]",
        )
        .unwrap();
        assert!(uses_multinode(Some(&yaml)));
        let yaml: Value =
            serde_yaml::from_str("[{name: a, prompts: ['=>'], script: [{command: x}]}]").unwrap();
        assert!(!uses_multinode(Some(&yaml)));
    }

    #[test]
    fn failure_exceptions_map_to_kinds() {
        assert_eq!(failure_error("TestError", "m").kind, ErrorKind::Test);
        assert_eq!(
            failure_error("InfrastructureError", "m").kind,
            ErrorKind::Infrastructure
        );
        let unknown = failure_error("Boom", "m");
        assert_eq!(unknown.kind, ErrorKind::Job);
        assert_eq!(unknown.message, "Unknown exception 'Boom' with 'm'");
    }

    #[test]
    fn success_groups() {
        assert_eq!(
            named_groups("ip: (?P<ip>[0-9.]+)", "ip: 10.0.0.1"),
            [("ip".to_string(), "10.0.0.1".to_string())]
        );
    }
}
