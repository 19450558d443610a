//! LAVA's `lava-test-shell` at run time.
//!
//! [`run_test_shell`] drives the test shell of the running test action on its
//! namespace's console: provoke a prompt with the check character, run the
//! pre-commands, `export SHELL=…`, source `<results_dir>/environment` with its return
//! code checked, start `<results_dir>/bin/lava-test-runner <results_dir>/<stage>`, then
//! read the console until `<LAVA_TEST_RUNNER EXIT>`. Each read waits for the earliest
//! of: the runner's exit or install-failure marker, a `<LAVA_SIGNAL_…>` or MultiNode
//! marker, or the running definition's `parse:` pattern, for at most
//! min(action timeout, connection timeout); a read that times out drains the other
//! namespaces' connections as feedback and reads again, until the action deadline
//! (LAVATimeoutError). Markers go through lava-shell's signal parser and
//! [`ResultsBuilder`]; result records reach the job log with their `starttc`/`endtc`
//! log-line markers. End of file on the console is a ConnectionClosedError (an
//! InfrastructureError); `lava-test-raise` is a TestError. LAVA has no per-definition
//! timeout: the block timeout bounds the whole stage.

use std::collections::HashMap;
use std::time::Duration;

use lava_connection::{ErrorKind as ConnErrorKind, Patterns};
use lava_pipeline::timeout::deadline_in;
use lava_pipeline::{LavaError, LavaResult, RunContext};
use lava_shell::results::{LogLevel, MarkerKind};
use lava_shell::signals::{
    MULTINODE_PATTERN, MultinodeOutcome, MultinodeReply, RUNNER_EXIT, RUNNER_INSTALL_FAIL,
    SIGNAL_PATTERN, Signal, multinode_reply_line, parse_line,
};
use lava_shell::{MultinodeRequest, ResultRecord, ResultsBuilder, ShellOutput};
use serde_yaml::{Mapping, Value};
use tokio::time::Instant;

use crate::runtime::console::{
    ConsoleConnection, action_timeout, character_delay_ms, on_console, wait_deadline,
};
use crate::runtime::test_overlay::stored_overlay;

/// How long the environment's return code is awaited.
const RETURN_CODE_WAIT: Duration = Duration::from_secs(15);
/// How long another namespace's connection is read for feedback.
const FEEDBACK_READ: Duration = Duration::from_secs(1);

/// Answers the MultiNode markers a test shell prints (`<LAVA_MULTI_NODE> <LAVA_SEND ...>`).
#[async_trait::async_trait]
pub trait MultinodeAnswers: Send {
    /// One marker: the result of its `multinode-<api>-<id>` case and the line to type back.
    async fn answer(&mut self, request: &MultinodeRequest) -> MultinodeOutcome;

    /// Asked after each answer: `Ok(true)` to go on reading, `Ok(false)` to stop watching this
    /// run (LAVA does after a MultiNode timeout), an error to fail the test action.
    fn keep_running(&mut self, _logger: &lava_pipeline::JobLogger) -> LavaResult<bool> {
        Ok(true)
    }
}

/// MultiNode calls outside a MultiNode job: every call fails, waits are answered `nack`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMultinode;

#[async_trait::async_trait]
impl MultinodeAnswers for NoMultinode {
    async fn answer(&mut self, request: &MultinodeRequest) -> MultinodeOutcome {
        let api = request.api();
        let reply = matches!(api, "WAIT" | "WAIT_ALL" | "SYNC")
            .then(|| multinode_reply_line(api, &MultinodeReply::Nack));
        MultinodeOutcome {
            passed: false,
            reply,
        }
    }
}

/// `lava-test-shell` of the running test action, MultiNode calls answered `nack`.
pub async fn run_test_shell(ctx: &mut RunContext) -> LavaResult<()> {
    run_test_shell_with(ctx, &mut NoMultinode).await
}

/// `lava-test-shell` with a MultiNode hook (the MultiNode test action passes its own).
pub async fn run_test_shell_with(
    ctx: &mut RunContext,
    hook: &mut dyn MultinodeAnswers,
) -> LavaResult<()> {
    if ctx.meta().can_skip_timeout() {
        ctx.logger.info(
            "The timeout has 'skip' enabled. If this test action block times out, the job will continue at the next action block.",
        );
    }
    match ctx
        .meta()
        .param("connection-namespace")
        .and_then(Value::as_str)
    {
        Some(ns) => ctx
            .logger
            .debug(format!("Using connection namespace: {ns}")),
        None => ctx
            .logger
            .debug(format!("Using namespace: {}", ctx.namespace())),
    }
    on_console!(ctx, console => drive(ctx, console, hook))
}

/// Per-case log-line markers, as LAVA's logger keeps them:
/// `[start_test_case, end_test_case, test_case]`.
#[derive(Default)]
struct Markers(HashMap<String, [Option<u64>; 3]>);

impl Markers {
    fn mark(&mut self, case: &str, kind: MarkerKind, line: u64) {
        let slot = match kind {
            MarkerKind::StartTestCase => 0,
            MarkerKind::EndTestCase => 1,
            MarkerKind::TestCase => 2,
        };
        self.0.entry(case.to_string()).or_default()[slot] = Some(line.saturating_sub(1));
    }

    /// Adds `starttc`/`endtc` to a record whose case has markers (and forgets them).
    fn apply(&mut self, record: &mut Mapping) {
        let Some(case) = record.get("case").and_then(Value::as_str) else {
            return;
        };
        let Some([start, end, test_case]) = self.0.remove(case) else {
            return;
        };
        let to_value = |v: Option<u64>| v.map(|n| Value::Number(n.into())).unwrap_or(Value::Null);
        record.insert("starttc".into(), to_value(start.or(test_case)));
        record.insert("endtc".into(), to_value(end.or(test_case)));
    }
}

fn to_mapping(record: &ResultRecord) -> Mapping {
    record
        .0
        .iter()
        .map(|(k, v)| (Value::String(k.clone()), v.clone()))
        .collect()
}

/// The state of one run: outputs are emitted through the logger as they come.
struct Run {
    results: ResultsBuilder,
    markers: Markers,
    finished: bool,
}

impl Run {
    /// Emits `outputs`; returns the first error asked for, after emitting the rest.
    async fn emit(&mut self, ctx: &mut RunContext, outputs: Vec<ShellOutput>) -> LavaResult<()> {
        let mut failure = None;
        for output in outputs {
            match output {
                ShellOutput::Result(record) => {
                    let mut record = to_mapping(&record);
                    self.markers.apply(&mut record);
                    ctx.logger.results(record);
                }
                ShellOutput::Log { level, message } => match level {
                    LogLevel::Debug => ctx.logger.debug(message),
                    LogLevel::Info => ctx.logger.info(message),
                    LogLevel::Warning => ctx.logger.warning(message),
                    LogLevel::Error => ctx.logger.error(message),
                    LogLevel::Event => ctx.logger.event(message),
                },
                ShellOutput::Marker { case, kind } => {
                    self.markers.mark(&case, kind, ctx.logger.line_count())
                }
                ShellOutput::Feedback { namespace } => {
                    if let Some(connection) = ctx.connections.get_mut(&namespace) {
                        connection.drain(FEEDBACK_READ).await;
                    }
                }
                ShellOutput::Error(e) => {
                    if failure.is_none() {
                        failure = Some(LavaError::test(e.to_string()));
                    }
                }
                ShellOutput::Finished => self.finished = true,
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Reads every other namespace's connection for a moment (LAVA's feedback).
async fn drain_feedback(ctx: &mut RunContext) {
    for (namespace, connection) in ctx.connections.iter_mut() {
        let lines = connection.drain(FEEDBACK_READ).await;
        if !lines.is_empty() {
            ctx.logger.debug(format!(
                "Listened to connection for namespace '{namespace}' done"
            ));
        }
    }
}

async fn drive(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    hook: &mut dyn MultinodeAnswers,
) -> LavaResult<()> {
    let overlay = stored_overlay(ctx)?;
    let stage = ctx
        .meta()
        .param("stage")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;

    if console.session().prompts().is_none() {
        let prompt = ctx
            .job
            .device
            .get_constant("default-shell-prompt", None)
            .ok()
            .and_then(lava_pipeline::value::scalar_string)
            .unwrap_or_else(|| "lava-test: # ".to_string());
        console.session().set_prompts(&[prompt.as_str()])?;
        ctx.logger
            .debug(format!("Setting default test shell prompt ['{prompt}']"));
    }
    let delay = character_delay_ms(ctx, "test");
    if delay > 0 {
        ctx.logger
            .debug(format!("Using a character delay of {delay} (ms)"));
    }
    console
        .session()
        .set_character_delay(Duration::from_millis(delay));

    // Force an initial prompt: not all shells answer without an excuse.
    let check = console.check_char.clone();
    console.session().sendline(&check).await?;
    wait_prompt(ctx, console).await?;

    let pre_commands = ctx
        .get_data("test", "lava-test-shell", "pre-command-list")
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(lava_pipeline::value::scalar_string)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for command in pre_commands {
        console.session().sendline(&command).await?;
        wait_prompt(ctx, console).await?;
    }

    ctx.logger.debug(format!("Using {}", overlay.results_dir));
    if !overlay.lava_test_sh_cmd.is_empty() {
        console
            .session()
            .sendline(&overlay.shell_export_command())
            .await?;
        wait_prompt(ctx, console).await?;
    }
    send_checked(ctx, console, &overlay.environment_command()).await?;
    wait_prompt(ctx, console).await?;

    let definitions: Vec<_> = overlay.definitions.clone();
    let connection_namespace = ctx
        .meta()
        .param("connection-namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut run = Run {
        results: ResultsBuilder::new(&ctx.namespace(), stage, &ctx.meta().level, &definitions)
            .with_connection_namespace(connection_namespace),
        markers: Markers::default(),
        finished: false,
    };

    console
        .session()
        .sendline(&overlay.runner_command(stage))
        .await?;
    let per_read =
        Duration::from_secs(ctx.meta().timeout.min(ctx.meta().connection_timeout).max(1));
    ctx.logger.info(format!(
        "Test shell timeout: {}s (minimum of the action and connection timeout)",
        per_read.as_secs()
    ));

    let outcome = read_loop(ctx, console, hook, &mut run, per_read).await;
    // Whatever ended the loop: an open suite is failed, missing expected cases reported.
    let finish = run.results.finish();
    let finished = run.emit(ctx, finish).await;
    outcome?;
    finished
}

async fn wait_prompt(ctx: &mut RunContext, console: &mut ConsoleConnection) -> LavaResult<()> {
    match console.session().wait_for_prompt(wait_deadline(ctx)).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ConnErrorKind::Timeout && Instant::now() >= ctx.deadline() => {
            Err(action_timeout(ctx))
        }
        Err(e) => Err(LavaError::from(e)),
    }
}

/// Sends `command ; printf "<LAVA_SIGNAL_RETRUNCODE $?>\n"` and checks the code.
async fn send_checked(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    command: &str,
) -> LavaResult<()> {
    let line = format!("{command} ; printf \"<LAVA_SIGNAL_RETRUNCODE $?>\\n\"");
    console.session().sendline(&line).await?;
    let deadline = (Instant::now() + RETURN_CODE_WAIT).min(ctx.deadline());
    match console
        .session()
        .expect(&[r"<LAVA_SIGNAL_RETRUNCODE (\d+)>"], deadline)
        .await
    {
        Ok(found) => {
            let code = found.group(1).unwrap_or("0");
            if code != "0" {
                return Err(LavaError::job(format!(
                    "'{command}' failed with return code {code}!"
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == ConnErrorKind::Timeout => Err(LavaError::job(format!(
            "Failed to check '{command}' return code!"
        ))),
        Err(e) => Err(LavaError::from(e)),
    }
}

async fn read_loop(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    hook: &mut dyn MultinodeAnswers,
    run: &mut Run,
    per_read: Duration,
) -> LavaResult<()> {
    let base = [
        regex_escape(RUNNER_EXIT),
        regex_escape(RUNNER_INSTALL_FAIL),
        SIGNAL_PATTERN.to_string(),
        MULTINODE_PATTERN.to_string(),
    ];
    let mut compiled: Option<(Option<String>, Patterns)> = None;
    while !run.finished {
        let active = run.results.active_pattern().map(|p| p.pattern.clone());
        if compiled.as_ref().is_none_or(|(p, _)| *p != active) {
            let mut list: Vec<String> = base.to_vec();
            if let Some(pattern) = &active {
                ctx.logger
                    .info(format!("Test case result pattern: {pattern:?}"));
                list.push(format!("(?m){pattern}"));
            }
            compiled = Some((active.clone(), Patterns::new(&list)?));
        }
        let patterns = &compiled.as_ref().expect("compiled above").1;
        let deadline = deadline_in(per_read).min(ctx.deadline());
        let found = match console.session().wait_for(patterns, deadline).await {
            Ok(found) => found,
            Err(e) if e.kind() == ConnErrorKind::Timeout => {
                if Instant::now() >= ctx.deadline() {
                    return Err(action_timeout(ctx));
                }
                drain_feedback(ctx).await;
                continue;
            }
            Err(e) if e.kind() == ConnErrorKind::ConnectionClosed => {
                return Err(LavaError::new(
                    lava_pipeline::ErrorKind::ConnectionClosed,
                    "Connection closed",
                ));
            }
            Err(e) => return Err(LavaError::from(e)),
        };
        if found.index == 4 {
            let Some(pattern) = run.results.active_pattern() else {
                continue;
            };
            if let Some(matched) = pattern.find(&found.matched) {
                let outputs = run.results.pattern_match(&matched);
                run.emit(ctx, outputs).await?;
            }
            continue;
        }
        for event in parse_line(&found.matched) {
            if let Signal::Multinode { request } = &event.signal {
                let outcome = hook.answer(request).await;
                if let Some(reply) = &outcome.reply {
                    console.session().sendline(reply).await?;
                    console.session().sendline("").await?;
                }
                let outputs = run.results.multinode_case(request, outcome.passed);
                run.emit(ctx, outputs).await?;
                if !hook.keep_running(&ctx.logger)? {
                    return Ok(());
                }
                continue;
            }
            let outputs = run.results.handle(&event);
            run.emit(ctx, outputs).await?;
        }
    }
    Ok(())
}

fn regex_escape(text: &str) -> String {
    regex::escape(text)
}
