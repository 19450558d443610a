//! Login and shell expectations after boot: `auto-login-action` (a retry action around
//! `login-action`), `expect-shell-connection` and `overlay-unpack`.

use lava_pipeline::BlockLookups;
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, LavaResult, Pipeline, PipelineBuilder, RunContext, Runnable,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Shown by the login action when the login fails.
pub const LOGIN_INCORRECT_MSG: &str = "Login incorrect";
/// Shown when the login times out.
pub const LOGIN_TIMED_OUT_MSG: &str = "Login timed out";

/// The `auto_login` checks of LAVA's AutoLoginAction, plus the `prompts` checks.
pub fn login_errors(params: &Mapping) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(auto) = params.truthy_value("auto_login") {
        match auto.as_mapping() {
            None => errors.push("'auto_login' should be a dictionary".to_string()),
            Some(auto) => {
                match auto.get("login_prompt") {
                    None => errors.push("'login_prompt' is mandatory for auto_login".into()),
                    Some(v) if !truthy(Some(v)) => {
                        errors.push("Value for 'login_prompt' cannot be empty".into())
                    }
                    Some(_) => {}
                }
                if !auto.contains_key("username") {
                    errors.push("'username' is mandatory for auto_login".into());
                }
                if auto.contains_key("password_prompt") && !auto.contains_key("password") {
                    errors.push(
                        "'password' is mandatory if 'password_prompt' is used in auto_login".into(),
                    );
                }
                if let Some(commands) = auto.get("login_commands") {
                    if !commands.is_sequence() {
                        errors.push("'login_commands' must be a list".into());
                    }
                    if !truthy(Some(commands)) {
                        errors.push("'login_commands' must not be empty".into());
                    }
                }
            }
        }
    }
    let prompts = params.get("prompts");
    if prompts.is_none() {
        errors.push("'prompts' is mandatory for AutoLoginAction".into());
    }
    if !matches!(prompts, Some(Value::Sequence(_)) | Some(Value::String(_))) {
        errors.push("'prompts' should be a list or a str".into());
    }
    if !truthy(prompts) {
        errors.push("Value for 'prompts' cannot be empty".into());
    }
    if let Some(Value::Sequence(items)) = prompts
        && items.iter().any(|p| !truthy(Some(p)))
    {
        errors.push("Items of 'prompts' can't be empty".into());
    }
    errors
}

/// `auto-login-action`: wait for the kernel start, then log in (retried).
#[derive(Debug)]
pub struct AutoLoginAction {
    /// Whether a boot is expected (false for a second UART or ssh).
    pub booting: bool,
    /// Wait for the `kernel-start-message` (or a bootloader error message) before the
    /// login, as LAVA does for every booting device. The bootloader families do; the
    /// QEMU and minimal families of lava-rs watch the kernel from the login's prompt wait
    /// instead (their devices need not print LAVA's start message).
    pub watch_kernel_start: bool,
}

impl Default for AutoLoginAction {
    fn default() -> Self {
        AutoLoginAction {
            booting: true,
            watch_kernel_start: false,
        }
    }
}

impl AutoLoginAction {
    /// Creates the `auto-login-action` action.
    pub fn new() -> Self {
        Self::default()
    }
    /// Without waiting for a kernel boot (ssh, secondary connections).
    pub fn without_boot() -> Self {
        AutoLoginAction {
            booting: false,
            watch_kernel_start: false,
        }
    }
    /// Also waits for the kernel start message after a bootloader (see
    /// [`AutoLoginAction::watch_kernel_start`]).
    pub fn watching_kernel_start(mut self) -> Self {
        self.watch_kernel_start = self.booting;
        self
    }
}

#[async_trait]
impl Action for AutoLoginAction {
    action_identity!(
        "auto-login-action",
        "AutoLoginAction",
        "automatically login after boot using job parameters and checking for messages.",
        "Auto-login after boot with support for kernel messages."
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !ctx.meta.parameters.contains_key("method") {
            return Err(lava_pipeline::LavaError::job(
                "auto-login-action needs the boot 'method'",
            ));
        }
        ctx.add_errors(login_errors(&ctx.meta.parameters));
        Ok(())
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(LoginAction)
    }
    async fn run(&mut self, ctx: &mut RunContext, children: &mut Pipeline) -> LavaResult<()> {
        if self.watch_kernel_start {
            let method = ctx
                .meta()
                .param("method")
                .and_then(lava_pipeline::value::scalar_string)
                .unwrap_or_default();
            let boot_message = ctx
                .job
                .device
                .boot_method_params(&method)
                .and_then(|p| p.get("boot_message"))
                .filter(|v| truthy(Some(v)))
                .and_then(lava_pipeline::value::scalar_string);
            if boot_message.is_some() {
                ctx.logger.warning(
                    "boot_message is being deprecated in favour of kernel-start-message in constants",
                );
            }
            crate::runtime::bootloader::wait_for_kernel_start(ctx, &method, boot_message).await?;
        }
        children.run_actions(ctx).await
    }
}

/// `login-action`: match the prompts (or the login prompt and credentials).
#[derive(Debug, Default)]
pub struct LoginAction;

#[async_trait]
impl Action for LoginAction {
    action_identity!(
        "login-action",
        "LoginAction",
        "Real login action.",
        "Login after boot."
    );
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::console::auto_login(ctx).await
    }
}

/// `expect-shell-connection`: send a newline and wait for a shell prompt.
#[derive(Debug, Default)]
pub struct ExpectShellSession;

impl ExpectShellSession {
    /// Creates the `expect-shell-connection` action.
    pub fn new() -> Self {
        ExpectShellSession
    }
}

#[async_trait]
impl Action for ExpectShellSession {
    action_identity!(
        "expect-shell-connection",
        "ExpectShellSession",
        "Wait for a shell",
        "Expect a shell prompt"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !ctx.meta.parameters.contains_key("prompts") {
            ctx.error("Unable to identify test image prompts from parameters.");
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let prompts = crate::runtime::console::block_prompts(ctx);
        crate::runtime::console::expect_shell(ctx, &prompts).await
    }
}

/// `overlay-unpack`: fetch the overlay on the device (`transfer_overlay`) and unpack it.
#[derive(Debug, Default)]
pub struct OverlayUnpack;

impl OverlayUnpack {
    /// Creates the `overlay-unpack` action.
    pub fn new() -> Self {
        OverlayUnpack
    }
}

#[async_trait]
impl Action for OverlayUnpack {
    action_identity!(
        "overlay-unpack",
        "OverlayUnpack",
        "transfer and unpack overlay to persistent rootfs after login",
        "transfer and unpack overlay"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let Some(transfer) = ctx.meta.parameters.get("transfer_overlay") else {
            ctx.error("Unable to identify transfer commands for overlay.");
            return Ok(());
        };
        let method = transfer
            .get("transfer_method")
            .and_then(Value::as_str)
            .unwrap_or("http");
        if method != "zmodem" && transfer.get("download_command").is_none() {
            ctx.error("Unable to identify download command for overlay.");
        }
        if transfer.get("unpack_command").is_none() {
            ctx.error("Unable to identify unpack command for overlay.");
        }
        Ok(())
    }
    /// The http and nfs transfers run; zmodem is not written yet.
    fn runnable(&self, meta: &ActionMeta) -> Runnable {
        let method = meta
            .param("transfer_overlay")
            .and_then(|t| t.get("transfer_method"))
            .and_then(Value::as_str)
            .unwrap_or("http");
        if matches!(method, "http" | "nfs") {
            Runnable::Yes
        } else {
            Runnable::NotYet {
                missing: Some("zmodem transfer"),
            }
        }
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::overlay_transfer::transfer_overlay(ctx).await
    }
}
