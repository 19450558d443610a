//! The device console at run time.
//!
//! [`ConsoleConnection`] wraps a [`ShellSession`] over the device's `connect` command
//! (started on a pty, argv split like `shlex.split`, never through a host shell) and is
//! the namespace's [`Connection`] in the job context: `drain` reads pending output as
//! feedback, `finalise` ends the command's whole process group and reaps it.
//! [`JobConsoleLog`] sends console traffic to the [`JobLogger`] as `target`, `input`,
//! `debug` and `feedback` records.
//!
//! One function per boot-time behaviour, each taking the [`RunContext`] of the running
//! action: [`connect_device`] (`connect-device`), [`auto_login`] (`login-action`,
//! with the kernel-message watch of [`kernel`]), [`expect_shell`]
//! (`expect-shell-connection`), [`export_device_env`] (`export-device-env`),
//! [`reset_device`] (`hard_reset` or power off + on) and [`power_off`] (finalize).
//! Every wait is bounded by the action deadline and the connection timeout.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lava_connection::{
    ConnectionError, ConsoleLog, ErrorKind as ConnErrorKind, Match, Patterns, PtyCommand,
    SessionConfig, ShellSession, Transport,
};
use lava_pipeline::command::run_command;
use lava_pipeline::timeout::deadline_in;
use lava_pipeline::{Connection, ErrorKind, JobLogger, LavaError, LavaResult, RunContext};
use lava_python::shlex_split;
use serde_yaml::{Mapping, Value};
use tokio::time::Instant;

/// LAVA's check character, sent to provoke a prompt.
pub const CHECK_CHAR: &str = "#";
/// LAVA's `LOGIN_INCORRECT_MSG`.
pub const LOGIN_INCORRECT_MSG: &str = "Login incorrect";
/// LAVA's `LOGIN_TIMED_OUT_MSG`.
pub const LOGIN_TIMED_OUT_MSG: &str = "Login timed out";
/// LAVA's `DISTINCTIVE_PROMPT_CHARACTERS`.
const DISTINCTIVE_PROMPT_CHARACTERS: &str = "\\:";

/// Console records to the job log.
pub struct JobConsoleLog {
    logger: JobLogger,
    /// Lines read by [`Connection::drain`], handed back to its caller.
    drained: Mutex<Vec<String>>,
    /// Feedback read ahead of its action ([`Connection::listen_ahead`]): held, with its
    /// namespace, until the drain that ends the window logs it, so the log keeps LAVA's
    /// order (feedback inside `read-feedback`).
    held: Mutex<Option<Vec<(String, String)>>>,
}

impl JobConsoleLog {
    /// Records through `logger`.
    pub fn new(logger: JobLogger) -> Self {
        JobConsoleLog {
            logger,
            drained: Mutex::new(Vec::new()),
            held: Mutex::new(None),
        }
    }

    fn take_drained(&self) -> Vec<String> {
        std::mem::take(&mut *self.drained.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// From now on feedback lines are held instead of logged.
    fn hold_feedback(&self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get_or_insert_with(Vec::new);
    }

    /// Logs the held feedback lines and stops holding.
    fn release_feedback(&self) {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        for (line, namespace) in held.into_iter().flatten() {
            self.logger.feedback(&line, &namespace);
        }
    }
}

impl ConsoleLog for JobConsoleLog {
    fn target_line(&self, line: &str) {
        self.logger.target(line);
    }
    fn input_line(&self, line: &str) {
        self.logger.input(line);
    }
    fn debug(&self, message: &str) {
        self.logger.debug(message);
    }
    fn feedback_line(&self, line: &str, namespace: Option<&str>) {
        let namespace = namespace.unwrap_or("common");
        match self.held.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(held) => held.push((line.to_string(), namespace.to_string())),
            None => self.logger.feedback(line, namespace),
        }
        self.drained
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line.to_string());
    }
}

/// A device console: a command on a pty (or another transport, e.g. an SSH shell) and
/// the shell session over it.
pub struct ConsoleConnection {
    session: ShellSession,
    log: Arc<JobConsoleLog>,
    namespace: String,
    pid: Option<u32>,
    /// The command is the device itself (QEMU): powering off ends it.
    process_is_device: bool,
    /// The character sent to provoke a prompt (`#`).
    pub check_char: String,
    /// The timeout of the action that opened the connection (LAVA's pexpect spawn
    /// timeout, which its plain `wait()` and test connections use).
    pub spawn_timeout: Option<Duration>,
    /// The end of a feedback window opened by [`Connection::listen_ahead`].
    feedback_until: Option<Instant>,
}

impl std::fmt::Debug for ConsoleConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleConnection")
            .field("session", &self.session)
            .field("namespace", &self.namespace)
            .field("pid", &self.pid)
            .finish()
    }
}

impl ConsoleConnection {
    /// Starts `command` (a device command line, split like `shlex.split`) on a pty.
    pub fn spawn(
        command: &str,
        logger: JobLogger,
        namespace: &str,
        config: SessionConfig,
    ) -> LavaResult<Self> {
        let argv = shlex_split(command)?;
        if argv.is_empty() {
            return Err(LavaError::configuration(
                "The device connect command is empty",
            ));
        }
        let transport = PtyCommand::new(argv).spawn()?;
        Self::over_transport(transport, logger, namespace, config)
    }

    /// A console over an open transport (a pty command, an SSH shell...).
    pub fn over_transport(
        transport: impl Transport + 'static,
        logger: JobLogger,
        namespace: &str,
        config: SessionConfig,
    ) -> LavaResult<Self> {
        let pid = transport.process_id();
        let log = Arc::new(JobConsoleLog::new(logger));
        let session = ShellSession::new(transport, log.clone(), config)?;
        Ok(ConsoleConnection {
            session,
            log,
            namespace: namespace.to_string(),
            pid,
            process_is_device: false,
            check_char: CHECK_CHAR.to_string(),
            spawn_timeout: None,
            feedback_until: None,
        })
    }

    /// Marks the command as the device itself (a QEMU guest): `power-off` ends it
    /// ([`Connection::power_off_device`]) instead of waiting for `finalise`.
    pub fn process_is_device(mut self) -> Self {
        self.process_is_device = true;
        self
    }

    /// The shell session.
    pub fn session(&mut self) -> &mut ShellSession {
        &mut self.session
    }

    /// The pid (and process group id) of the connection command; 0 when no local
    /// process runs behind the connection (an SSH shell: see [`Self::process_id`]).
    pub fn pid(&self) -> u32 {
        self.pid.unwrap_or(0)
    }

    /// The local process behind the connection, if there is one.
    pub fn process_id(&self) -> Option<u32> {
        self.pid
    }

    /// The namespace this connection was opened in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

#[lava_pipeline::async_trait]
impl Connection for ConsoleConnection {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    async fn drain(&mut self, budget: Duration) -> Vec<String> {
        let ns = self.namespace.clone();
        // A window opened ahead ends where it was set; a read past its end still takes
        // what is already pending.
        let until = self
            .feedback_until
            .take()
            .unwrap_or_else(|| deadline_in(budget));
        self.log.release_feedback();
        let _ = self.session.listen_feedback(until, Some(&ns)).await;
        self.log.take_drained()
    }

    async fn listen_ahead(&mut self, until: Instant) {
        let ns = self.namespace.clone();
        self.feedback_until = Some(until);
        self.log.hold_feedback();
        let _ = self.session.listen_feedback(until, Some(&ns)).await;
    }

    fn power_off_device(&mut self) -> Option<String> {
        if !self.process_is_device || !self.session.is_connected() {
            return None;
        }
        self.session.terminate_process();
        Some(self.session.describe().to_string())
    }

    async fn finalise(&mut self) {
        // Feedback read ahead for a drain that never came is logged, not lost.
        self.log.release_feedback();
        if self.session.is_connected() {
            let _ = self.session.disconnect("finalise").await;
        }
        // Whatever happened above, nothing of the process group survives.
        self.session.finalise();
    }
}

/// The running action's own timeout error (what the executor raises at its deadline).
pub fn action_timeout(ctx: &RunContext) -> LavaError {
    let meta = ctx.meta();
    LavaError::new(
        meta.timeout_kind,
        format!("{} timed out after {} seconds", meta.name, meta.timeout),
    )
}

/// A wait failure: past the action deadline it is the action timeout, otherwise the
/// connection's own error.
pub(crate) fn wait_error(ctx: &RunContext, e: ConnectionError) -> LavaError {
    if e.kind() == ConnErrorKind::Timeout && Instant::now() >= ctx.deadline() {
        action_timeout(ctx)
    } else {
        LavaError::from(e)
    }
}

/// The end of one wait: the connection timeout from now, bounded by the action deadline.
pub fn wait_deadline(ctx: &RunContext) -> Instant {
    let per_read = Duration::from_secs(ctx.meta().connection_timeout.max(1));
    deadline_in(per_read).min(ctx.deadline())
}

/// The device `character_delays.<section>` in milliseconds (0 when unset).
pub fn character_delay_ms(ctx: &RunContext, section: &str) -> u64 {
    ctx.job.device.character_delay_ms(section)
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(lava_pipeline::value::scalar_string)
            .collect(),
        Some(v) => lava_pipeline::value::scalar_string(v).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Takes the namespace's connection out of the context. JobError "No connection to
/// the DUT" when there is none. Put it back with `ctx.set_connection`.
pub fn take_console(ctx: &mut RunContext) -> LavaResult<Box<dyn Connection>> {
    ctx.take_connection().ok_or_else(|| {
        ctx.logger
            .error("No connection to the DUT, Check that a boot action precede test actions");
        LavaError::job("No connection to the DUT")
    })
}

/// Runs `$body` (a future using `$console: &mut ConsoleConnection` and `$ctx`) on the
/// namespace's console, putting the connection back afterwards, also on error.
macro_rules! on_console {
    ($ctx:ident, $console:ident => $body:expr) => {{
        let mut connection = $crate::runtime::console::take_console($ctx)?;
        let result = match connection
            .as_any_mut()
            .downcast_mut::<$crate::runtime::console::ConsoleConnection>()
        {
            Some($console) => $body.await,
            None => Err(lava_pipeline::LavaError::bug(
                "the namespace's connection is not a console connection",
            )),
        };
        $ctx.set_connection(connection);
        result
    }};
}
pub(crate) use on_console;

/// The device's console command as LAVA's `connect-device` picks it: the deprecated
/// `commands.connect`, else the `connect` of the `commands.connections` entry tagged
/// `primary` (a `telnet` to a console server, a serial port...).
pub fn device_connect_command(ctx: &RunContext) -> LavaResult<String> {
    let mut errors = Vec::new();
    let found = crate::common::power::resolve_connection(&ctx.job.device, true, None, &mut errors)?;
    match found {
        Some(found) if !found.command.is_empty() => Ok(found.command),
        _ => Err(LavaError::job(format!(
            "Unable to connect to device: {}",
            errors
                .first()
                .map(String::as_str)
                .unwrap_or("no 'connect' command")
        ))),
    }
}

/// `connect-device`: start `command` on a pty and install it as the namespace's
/// connection. An existing connection is kept ("Already connected").
pub async fn connect_device(ctx: &mut RunContext, command: &str) -> LavaResult<()> {
    if ctx.connection_as::<ConsoleConnection>().is_some() {
        ctx.logger.debug("Already connected");
        return Ok(());
    }
    let namespace = ctx.connection_namespace();
    ctx.logger.info(format!(
        "[{namespace}] {} Connecting to device using '{command}'",
        ctx.meta().name
    ));
    let config = boot_session_config(ctx);
    let mut connection = ConsoleConnection::spawn(command, ctx.logger.clone(), &namespace, config)?;
    connection.spawn_timeout = Some(Duration::from_secs(ctx.meta().timeout));
    ctx.set_connection(Box::new(connection));
    Ok(())
}

/// `connect-shell`: a secondary console (`commands.connections.<name>`) as the
/// namespace's connection, then an empty line to make its prompt appear.
pub async fn connect_shell(ctx: &mut RunContext, command: &str) -> LavaResult<()> {
    if ctx.connection_as::<ConsoleConnection>().is_some() {
        ctx.logger.debug("Already connected");
        return Ok(());
    }
    let namespace = ctx.connection_namespace();
    ctx.logger.info(format!(
        "[{namespace}] {} Connecting to shell using '{command}'",
        ctx.meta().name
    ));
    let config = boot_session_config(ctx);
    let mut connection = ConsoleConnection::spawn(command, ctx.logger.clone(), &namespace, config)?;
    connection.spawn_timeout = Some(Duration::from_secs(ctx.meta().timeout));
    ctx.logger.debug("Forcing a prompt");
    connection.session.sendline("").await?;
    ctx.set_connection(Box::new(connection));
    Ok(())
}

/// The session settings of a console opened by a boot action: the boot character
/// delay, the device's `spawn_maxread`, the block's `prompts`.
pub fn boot_session_config(ctx: &RunContext) -> SessionConfig {
    let mut config =
        SessionConfig::default().with_character_delay_ms(character_delay_ms(ctx, "boot"));
    if let Some(maxread) = ctx.job.device.spawn_maxread() {
        config = config.with_spawn_maxread(maxread);
    }
    let prompts = string_list(ctx.meta().param("prompts"));
    if !prompts.is_empty() {
        config = config.with_prompts(&prompts);
    }
    config
}

/// The `auto_login` block and the prompts of a boot action.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoginSettings {
    /// The prompts that mean a shell is ready (the block's `prompts`).
    pub prompts: Vec<String>,
    /// The login prompt to answer (`auto_login.login_prompt`).
    pub login_prompt: Option<String>,
    /// The user name sent at the login prompt (`auto_login.username`).
    pub username: Option<String>,
    /// The password prompt to answer (`auto_login.password_prompt`).
    pub password_prompt: Option<String>,
    /// The password sent at the password prompt (`auto_login.password`).
    pub password: Option<String>,
    /// Commands run once logged in (`auto_login.login_commands`).
    pub login_commands: Option<Vec<String>>,
    /// A message that means the boot failed (the boot block's `failure_message`).
    pub failure_message: Option<String>,
    /// Do not watch for kernel messages (the block's `ignore_kernel_messages`).
    pub ignore_kernel_messages: bool,
}

impl LoginSettings {
    /// From the boot block parameters (`prompts`, `auto_login`, `failure_message`,
    /// `ignore_kernel_messages`).
    pub fn from_params(params: &Mapping) -> Self {
        let auto = params.get("auto_login");
        let field = |k: &str| {
            auto.and_then(|a| a.get(k))
                .and_then(lava_pipeline::value::scalar_string)
        };
        LoginSettings {
            prompts: string_list(params.get("prompts")),
            login_prompt: field("login_prompt"),
            username: field("username"),
            password_prompt: field("password_prompt"),
            password: field("password"),
            login_commands: auto
                .and_then(|a| a.get("login_commands"))
                .map(|v| string_list(Some(v))),
            failure_message: params
                .get("failure_message")
                .and_then(lava_pipeline::value::scalar_string),
            ignore_kernel_messages: lava_pipeline::value::truthy(
                params.get("ignore_kernel_messages"),
            ),
        }
    }
}

/// Waits for one of `patterns` until `deadline`, mapping errors as LAVA does.
async fn wait_patterns(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    patterns: &[String],
    deadline: Instant,
) -> LavaResult<Match> {
    let compiled = Patterns::new(patterns)?;
    console
        .session
        .wait_for(&compiled, deadline)
        .await
        .map_err(|e| wait_error(ctx, e))
}

/// LAVA's `force_prompt_wait`: wait half the remaining time, then up to six times a
/// tenth of it, sending the check character between tries.
async fn force_prompt_wait(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    patterns: &[String],
) -> LavaResult<Match> {
    let remaining = ctx.remaining();
    let mut partial = remaining / 2;
    let compiled = Patterns::new(patterns)?;
    ctx.logger.debug(format!(
        "Waiting using forced prompt support (timeout {})",
        lava_pipeline::timeout::seconds_to_str(partial.as_secs_f64())
    ));
    let mut tries = 0;
    loop {
        let deadline = deadline_in(partial).min(ctx.deadline());
        match console.session.wait_for(&compiled, deadline).await {
            Ok(found) => return Ok(found),
            Err(e) if e.kind() == ConnErrorKind::Timeout && tries < 6 => {
                if Instant::now() >= ctx.deadline() {
                    return Err(action_timeout(ctx));
                }
                ctx.logger.warning(format!(
                    "ShellSession command timed out.: Sending {} in case of corruption. Connection timeout {}, retry in {}",
                    console.check_char,
                    lava_pipeline::timeout::seconds_to_str(remaining.as_secs_f64()),
                    lava_pipeline::timeout::seconds_to_str(partial.as_secs_f64()),
                ));
                tries += 1;
                partial = remaining / 10;
                let check = console.check_char.clone();
                console.session.sendline(&check).await?;
            }
            Err(e) => return Err(wait_error(ctx, e)),
        }
    }
}

/// Kernel messages watched while waiting for a login or shell prompt.
pub mod kernel {
    /// One kind of kernel message: its start and end patterns.
    #[derive(Debug, Clone, Copy)]
    pub struct KernelMessage {
        /// The regex that starts the message.
        pub start: &'static str,
        /// The regex that ends it.
        pub end: &'static str,
        /// The kind reported in the log (e.g. `exception`), when it has one.
        pub kind: Option<&'static str>,
        /// Whether it ends the job (a kernel panic).
        pub fatal: bool,
    }

    /// LAVA's `KERNEL_MESSAGES`, in its order.
    pub const KERNEL_MESSAGES: &[KernelMessage] = &[
        KernelMessage {
            start: r"-\[ cut here \]",
            end: r"-+\[ end trace \w* \]-+[^\n]*\r",
            kind: None,
            fatal: false,
        },
        KernelMessage {
            start: r"Unhandled fault",
            end: r"\r",
            kind: Some("fault"),
            fatal: false,
        },
        KernelMessage {
            start: r"BUG: KCSAN:",
            end: r"=+\r",
            kind: Some("kcsan"),
            fatal: false,
        },
        KernelMessage {
            start: r"BUG: KASAN:",
            end: r"=+\r",
            kind: Some("kasan"),
            fatal: false,
        },
        KernelMessage {
            start: r"BUG: KFENCE:",
            end: r"=+\r",
            kind: Some("kfence"),
            fatal: false,
        },
        KernelMessage {
            start: r"Oops(?: -|:)",
            end: r"\r",
            kind: Some("oops"),
            fatal: false,
        },
        KernelMessage {
            start: r"WARNING:",
            end: r"end trace[^\r]*\r",
            kind: Some("warning"),
            fatal: false,
        },
        KernelMessage {
            start: r"(kernel BUG at|BUG:)",
            end: r"\r",
            kind: Some("bug"),
            fatal: false,
        },
        KernelMessage {
            start: r"invalid opcode:",
            end: r"\r",
            kind: Some("invalid opcode"),
            fatal: false,
        },
        KernelMessage {
            start: r"Kernel panic - not syncing",
            end: r"end Kernel panic[^\r]*\r",
            kind: Some("panic"),
            fatal: true,
        },
        KernelMessage {
            start: r"U-Boot SPL 20[0-9][0-9]",
            end: r"\r",
            kind: Some("DUT_has_reset"),
            fatal: true,
        },
    ];

    /// The start patterns, put before the prompts.
    pub fn init_prompts() -> Vec<String> {
        KERNEL_MESSAGES
            .iter()
            .map(|m| m.start.to_string())
            .collect()
    }

    /// The kind of an unclassified message (`-[ cut here ]`).
    pub fn classify(message: &str) -> &'static str {
        if message.contains("Oops") {
            "oops"
        } else if message.contains("BUG") {
            "bug"
        } else if message.contains("WARNING") {
            "warning"
        } else {
            "unknown"
        }
    }
}

/// What the kernel-message watch found (`results` of the login action).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelReport {
    /// `{kind, message}` per message.
    pub messages: Vec<(String, String)>,
    /// A fatal message or the job's failure message.
    pub halt: Option<String>,
}

/// Waits for a prompt in `prompts` (after the kernel start patterns unless ignored),
/// recording kernel messages on the way. Returns the index in `prompts` matched.
async fn watch_kernel_messages(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    prompts: &[String],
    failure: Option<&str>,
    ignore: bool,
    report: &mut KernelReport,
) -> LavaResult<usize> {
    if ignore {
        ctx.logger
            .debug("Skipping kernel messages. Flag set to false");
        return force_prompt_wait(ctx, console, prompts)
            .await
            .map(|m| m.index);
    }
    ctx.logger.info("Parsing kernel messages");
    let starts = kernel::init_prompts();
    let mut all: Vec<String> = starts.clone();
    all.extend(prompts.iter().cloned());
    if let Some(failure) = failure {
        all.push(failure.to_string());
    }
    ctx.logger
        .debug(lava_pipeline::value::python_repr(&Value::Sequence(
            all.iter().map(|s| Value::String(s.clone())).collect(),
        )));
    loop {
        ctx.logger.debug(format!(
            "[{}] Waiting for messages, (timeout {})",
            ctx.meta().name,
            lava_pipeline::timeout::seconds_to_str(ctx.remaining().as_secs_f64())
        ));
        let found = force_prompt_wait(ctx, console, &all).await?;
        if found.index > 0 {
            ctx.logger.debug(format!(
                "Matched prompt #{}: {}",
                found.index, all[found.index]
            ));
        }
        if found.index < starts.len() {
            let kind = &kernel::KERNEL_MESSAGES[found.index];
            let line_start = found.before.rfind('\n').map(|i| i + 1).unwrap_or(0);
            let mut message = format!("{}{}", &found.before[line_start..], found.matched);
            let mut end_patterns = vec![kind.end.to_string()];
            end_patterns.extend(all[starts.len()..].iter().cloned());
            let deadline = ctx.deadline();
            let end = wait_patterns(ctx, console, &end_patterns, deadline).await;
            match end {
                Ok(end) if end.index == 0 => {
                    message.push_str(&end.before);
                    message.push_str(end.matched.trim_end_matches('\r'));
                }
                Ok(_) => {
                    ctx.logger
                        .warning("Unable to match end of the kernel message");
                    return Ok(0);
                }
                Err(e) if e.kind == ErrorKind::ConnectionClosed || e.kind == ErrorKind::Test => {
                    ctx.logger.warning("Failed to match end of kernel error");
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
            let kind_name = kind
                .kind
                .map(str::to_string)
                .unwrap_or_else(|| kernel::classify(&message).to_string());
            if kind.fatal {
                ctx.logger
                    .error(format!("{} kernel '{kind_name}'", ctx.meta().name));
                report.halt = Some(message.clone());
            } else {
                ctx.logger
                    .warning(format!("{}: kernel '{kind_name}'", ctx.meta().name));
            }
            report.messages.push((kind_name, message));
            if kind.fatal {
                return Ok(0);
            }
            continue;
        }
        let index = found.index - starts.len();
        if index >= prompts.len() {
            // The job's failure message.
            let failure = failure.unwrap_or_default();
            let halt = format!("Matched job-specific failure message: '{failure}'");
            ctx.logger.error(format!("{} {halt}", ctx.meta().name));
            report
                .messages
                .push(("custom-error".into(), failure.to_string()));
            report.halt = Some(halt);
        }
        return Ok(index);
    }
}

fn check_prompt_characters(ctx: &RunContext, prompt: &str) {
    if !prompt
        .chars()
        .any(|c| DISTINCTIVE_PROMPT_CHARACTERS.contains(c))
    {
        ctx.logger.warning(format!(
            "The string '{prompt}' does not look like a typical prompt and could match status messages instead. Please check the job log files and use a prompt string which matches the actual prompt string more closely."
        ));
    }
}

/// `login-action` with the running action's parameters (the boot block).
pub async fn auto_login(ctx: &mut RunContext) -> LavaResult<()> {
    let settings = LoginSettings::from_params(&ctx.meta().parameters);
    auto_login_with(ctx, &settings).await
}

/// `login-action`: wait for the login prompt (watching kernel messages), send the
/// username and password, wait for a shell prompt, run `login_commands`.
pub async fn auto_login_with(ctx: &mut RunContext, settings: &LoginSettings) -> LavaResult<()> {
    on_console!(ctx, console => login_inner(ctx, console, settings))
}

async fn login_inner(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    settings: &LoginSettings,
) -> LavaResult<()> {
    for prompt in &settings.prompts {
        check_prompt_characters(ctx, prompt);
    }
    if let Some(failure) = &settings.failure_message {
        ctx.logger.info(format!(
            "Checking for user specified failure message: {failure}"
        ));
    }
    let linesep = ctx
        .get_data("deploy-device-env", "environment", "line_separator")
        .and_then(Value::as_str)
        .unwrap_or(lava_connection::LINE_SEPARATOR)
        .to_string();
    console.session.set_linesep(&linesep);
    ctx.logger
        .debug(format!("Using line separator: #{linesep:?}#"));
    let mut report = KernelReport::default();
    let result = login_sequence(ctx, console, settings, &mut report).await;
    if report.messages.is_empty() {
        ctx.set_result("success", "No kernel warnings or errors detected.");
    } else {
        ctx.logger.warning("Kernel warnings or errors detected.");
        let list: Vec<Value> = report
            .messages
            .iter()
            .map(|(kind, message)| {
                let mut m = Mapping::new();
                m.insert("kind".into(), kind.clone().into());
                m.insert("message".into(), message.clone().into());
                Value::Mapping(m)
            })
            .collect();
        ctx.set_result("extra", Value::Sequence(list));
    }
    if !settings.prompts.is_empty() {
        let _ = console.session.set_prompts(&settings.prompts);
    }
    result?;
    if let Some(halt) = report.halt {
        return Err(LavaError::job(halt));
    }
    Ok(())
}

async fn login_sequence(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    settings: &LoginSettings,
    report: &mut KernelReport,
) -> LavaResult<()> {
    let failure = settings.failure_message.as_deref();
    let (Some(login_prompt), Some(username)) = (&settings.login_prompt, &settings.username) else {
        ctx.logger.debug("No login prompt set.");
        watch_kernel_messages(
            ctx,
            console,
            &settings.prompts,
            failure,
            settings.ignore_kernel_messages,
            report,
        )
        .await?;
        return Ok(());
    };
    ctx.logger.info("Waiting for the login prompt");
    let mut prompts = settings.prompts.clone();
    prompts.push(login_prompt.clone());
    prompts.push(LOGIN_INCORRECT_MSG.into());
    watch_kernel_messages(
        ctx,
        console,
        &prompts,
        failure,
        settings.ignore_kernel_messages,
        report,
    )
    .await?;
    if report.halt.is_some() {
        return Ok(());
    }
    ctx.logger.debug(format!("Sending username {username}"));
    console.session.sendline(username).await?;
    if let Some(password_prompt) = &settings.password_prompt {
        ctx.logger.info("Waiting for password prompt");
        let mut prompts = settings.prompts.clone();
        prompts.push(password_prompt.clone());
        prompts.push(LOGIN_TIMED_OUT_MSG.into());
        let found = {
            let deadline = wait_deadline(ctx);
            wait_patterns(ctx, console, &prompts, deadline)
        }
        .await?;
        if found.index > 0 {
            ctx.logger.debug(format!(
                "Matched prompt #{}: {}",
                found.index, prompts[found.index]
            ));
            if prompts[found.index] == LOGIN_TIMED_OUT_MSG {
                return Err(LavaError::job(
                    "Password prompt not matched, please update the job definition with the correct one.",
                ));
            }
        }
        let password = settings.password.clone().unwrap_or_default();
        ctx.logger.debug(format!("Sending password {password}"));
        console.session.sendline(&password).await?;
    }
    let mut prompts = settings.prompts.clone();
    prompts.push(LOGIN_INCORRECT_MSG.into());
    prompts.push(LOGIN_TIMED_OUT_MSG.into());
    let found = {
        let deadline = wait_deadline(ctx);
        wait_patterns(ctx, console, &prompts, deadline)
    }
    .await?;
    if found.index > 0 {
        ctx.logger
            .debug(format!("Matched {} {}", found.index, prompts[found.index]));
        if prompts[found.index] == LOGIN_INCORRECT_MSG {
            return Err(LavaError::job(LOGIN_INCORRECT_MSG));
        }
        if prompts[found.index] == LOGIN_TIMED_OUT_MSG {
            return Err(LavaError::job(LOGIN_TIMED_OUT_MSG));
        }
    }
    if let Some(commands) = &settings.login_commands {
        ctx.logger.debug("Running login commands");
        for command in commands {
            console.session.sendline(command).await?;
            wait_patterns(ctx, console, &settings.prompts, wait_deadline(ctx)).await?;
        }
    }
    Ok(())
}

/// `expect-shell-connection`: send an empty line and wait for one of `prompts`.
pub async fn expect_shell(ctx: &mut RunContext, prompts: &[String]) -> LavaResult<()> {
    on_console!(ctx, console => expect_inner(ctx, console, prompts))
}

async fn expect_inner(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    prompts: &[String],
) -> LavaResult<()> {
    console.session.set_prompts(prompts)?;
    ctx.logger.debug(format!(
        "Forcing a shell prompt, looking for {}",
        lava_pipeline::value::python_repr(&Value::Sequence(
            prompts.iter().map(|p| Value::String(p.clone())).collect()
        ))
    ));
    console.session.sendline("").await?;
    {
        let deadline = wait_deadline(ctx);
        wait_patterns(ctx, console, prompts, deadline)
    }
    .await?;
    Ok(())
}

/// Sends `line` and waits for the session's prompt (LAVA's `sendline` + `wait`).
pub async fn send_and_wait(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    line: &str,
) -> LavaResult<()> {
    console.session.sendline(line).await?;
    console
        .session
        .wait_for_prompt(wait_deadline(ctx))
        .await
        .map_err(|e| wait_error(ctx, e))?;
    Ok(())
}

/// `export-device-env`: append the `env_dut` exports to the shell file, source it,
/// export the device's dynamic data.
pub async fn export_device_env(ctx: &mut RunContext) -> LavaResult<()> {
    let shell_file = ctx
        .get_data("deploy-device-env", "environment", "shell_file")
        .and_then(lava_pipeline::value::scalar_string);
    let env = ctx
        .get_data("deploy-device-env", "environment", "env_dict")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let dynamic = ctx.job.device.dynamic_data().cloned().unwrap_or_default();
    if ctx.connection_as::<ConsoleConnection>().is_none() {
        return Ok(());
    }
    on_console!(ctx, console => export_inner(ctx, console, shell_file, env, dynamic))
}

async fn export_inner(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    shell_file: Option<String>,
    env: Mapping,
    dynamic: Mapping,
) -> LavaResult<()> {
    let file = shell_file.clone().unwrap_or_else(|| "None".into());
    for (key, value) in &env {
        let key = lava_pipeline::value::scalar_string(key).unwrap_or_default();
        let value = lava_pipeline::value::scalar_string(value).unwrap_or_default();
        send_and_wait(
            ctx,
            console,
            &format!("echo export {key}=\\'{value}\\' >> {file}"),
        )
        .await?;
    }
    if let Some(file) = &shell_file {
        send_and_wait(ctx, console, &format!(". {file}")).await?;
    }
    for (key, value) in &dynamic {
        let key = lava_pipeline::value::scalar_string(key).unwrap_or_default();
        let value = lava_pipeline::value::scalar_string(value).unwrap_or_default();
        send_and_wait(ctx, console, &format!("export {key}='{value}'")).await?;
    }
    Ok(())
}

/// The device command(s) named `name` (`hard_reset`, `power_off`, `power_on`): a string
/// or a list of strings.
fn device_commands(ctx: &RunContext, name: &str) -> Vec<String> {
    ctx.job.device.command_vec(name)
}

/// Runs lab commands through the protected runner: failure is an InfrastructureError.
async fn run_lab_commands(ctx: &mut RunContext, commands: &[String]) -> LavaResult<()> {
    for command in commands {
        let argv = shlex_split(command)?;
        if argv.is_empty() {
            continue;
        }
        run_command(
            &ctx.logger,
            &argv,
            None,
            ctx.deadline(),
            ErrorKind::Infrastructure,
            false,
        )
        .await?;
    }
    Ok(())
}

/// `reset-device`: `commands.hard_reset`, else `power_off` then `power_on`.
pub async fn reset_device(ctx: &mut RunContext) -> LavaResult<()> {
    let hard_reset = device_commands(ctx, "hard_reset");
    if !hard_reset.is_empty() {
        return run_lab_commands(ctx, &hard_reset).await;
    }
    let off = device_commands(ctx, "power_off");
    let on = device_commands(ctx, "power_on");
    if off.is_empty() && on.is_empty() {
        ctx.logger.debug("No power command found, skipping reset");
        return Ok(());
    }
    run_lab_commands(ctx, &off).await?;
    run_lab_commands(ctx, &on).await
}

/// `power-off` (finalize): `commands.power_off` when the device has one.
pub async fn power_off(ctx: &mut RunContext) -> LavaResult<()> {
    let off = device_commands(ctx, "power_off");
    if off.is_empty() {
        ctx.logger.debug("No power_off command found");
        return Ok(());
    }
    run_lab_commands(ctx, &off).await
}

/// Closes every console connection of the job (finalize): ends each process group.
pub async fn finalise_connections(ctx: &mut RunContext) {
    for (_, connection) in ctx.connections.iter_mut() {
        connection.finalise().await;
    }
}

/// The block's `prompts` (a string or a list), as `expect-shell-connection` uses them.
pub fn block_prompts(ctx: &RunContext) -> Vec<String> {
    match ctx.meta().param("prompts") {
        Some(Value::String(prompt)) => vec![prompt.clone()],
        Some(Value::Sequence(list)) => list
            .iter()
            .filter_map(lava_pipeline::value::scalar_string)
            .collect(),
        _ => Vec::new(),
    }
}
