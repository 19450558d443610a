//! The UEFI boot methods: `uefi-menu` (select entries of the firmware boot menu) and
//! `uefi` (drop to the UEFI shell and type the commands), with the menu actions they
//! share with `grub-efi`.

use crate::common::bootloader::{
    BootloaderCommandOverlay, BootloaderCommandsAction, LineSeparator, add_login_tail,
};
use crate::common::env::ExportDeviceEnvironment;
use crate::common::login::AutoLoginAction;
use crate::common::power::{ConnectDevice, ResetDevice};
use crate::runtime::boot_commands::{Substitutions, dispatcher_ip};
use crate::runtime::console::{connect_device, device_connect_command};
use crate::runtime::menu::{self, MenuParameters, MenuSelection, MenuStep};
use lava_pipeline::value::{python_repr, scalar_string, truthy};
use lava_pipeline::{
    Action, Declared, Device, ErrorKind, LavaError, LavaResult, Pipeline, PipelineBuilder,
    RunContext, StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use lava_python::str_repr;
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("uefi", |_| Box::new(UefiShellAction))
            .method("uefi")
            .check(|device, _| {
                if device.has_boot_method("uefi") {
                    let method_params = device.boot_method_params("uefi").filter(|p| !p.is_empty());
                    let Some(method_params) = method_params else {
                        return Err("there were no parameters in the \"uefi\" device configuration boot method".into());
                    };
                    if !method_params.contains_key("shell_interrupt_string") {
                        return Err("\"shell_interrupt_string\" was not in the uefi device configuration boot method parameters".into());
                    }
                    if method_params.contains_key("shell_interrupt_prompt")
                        && method_params.contains_key("bootloader_prompt")
                    {
                        return Ok(());
                    }
                }
                Err("missing or invalid parameters in the uefi device configuration boot methods".into())
            }),
    );
    registry.register(
        Declared::boot("uefi-menu", |_| Box::new(UefiMenuAction))
            .method("uefi-menu")
            .device_method("uefi-menu")
            .check(|device, _| {
                let method_params = device.boot_method_params("uefi-menu");
                let has = |k: &str| method_params.is_some_and(|p| p.contains_key(k));
                if has("interrupt_prompt") && has("interrupt_string") {
                    Ok(())
                } else {
                    Err("\"interrupt_prompt\" or \"interrupt_string\" was not in the device configuration uefi-menu boot method parameters".into())
                }
            }),
    );
}

/// Whether the block's `commands` mention fastboot (a menu entry that starts fastboot
/// instead of booting a system).
fn commands_mention_fastboot(params: &Mapping) -> bool {
    match params.get("commands") {
        Some(Value::String(s)) => s.contains("fastboot"),
        Some(Value::Sequence(items)) => items.iter().any(|i| i.as_str() == Some("fastboot")),
        _ => false,
    }
}

/// `uefi-menu-action`: substitute job data into the menu, interrupt and select.
#[derive(Debug, Default)]
pub struct UefiMenuAction;

#[async_trait]
impl Action for UefiMenuAction {
    action_identity!(
        "uefi-menu-action",
        "UefiMenuAction",
        "interrupt and select uefi menu items",
        "interact with uefi menu"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let fastboot = commands_mention_fastboot(pipeline.parameters());
        pipeline.add(UefiSubstituteCommands)?;
        if !fastboot {
            pipeline.add(MenuConnect)?;
            pipeline.add(ResetDevice::new())?;
        }
        pipeline.add(UEFIMenuInterrupt::uefi_menu())?;
        pipeline.add(UefiMenuSelector::uefi_menu())?;
        pipeline.add(MenuReset)?;
        pipeline.add(AutoLoginAction::new())?;
        pipeline.add(ExportDeviceEnvironment::new())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let has_prompt = ctx
            .job
            .device
            .boot_method_params("uefi-menu")
            .is_some_and(|p| p.contains_key("bootloader_prompt"));
        if !has_prompt {
            ctx.error("Missing bootloader prompt for device");
        }
        Ok(())
    }
}

/// `uefi-commands`: substitute the server IP and file names into the menu entries.
#[derive(Debug, Default)]
pub struct UefiSubstituteCommands;

impl UefiSubstituteCommands {
    /// Validation: the `uefi-menu` command set the block names; one message per problem into `errors`.
    pub fn check(device: &Device, params: &Mapping, errors: &mut Vec<String>) {
        let name = params
            .get("commands")
            .and_then(lava_pipeline::value::scalar_string)
            .unwrap_or_else(|| "None".into());
        let Some(items) = device
            .boot_method("uefi-menu")
            .and_then(|m| m.get(name.as_str()))
        else {
            errors.push(format!("Missing commands for {name}"));
            return;
        };
        for item in items.as_sequence().into_iter().flatten() {
            if item.get("select").is_none() {
                errors.push(format!(
                    "Invalid device configuration for uefi-commands: {}",
                    python_repr(item)
                ));
            }
        }
    }
}

#[async_trait]
impl Action for UefiSubstituteCommands {
    action_identity!(
        "uefi-commands",
        "UefiSubstituteCommands",
        "set job-specific variables into the uefi menu commands",
        "substitute job values into uefi commands"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        Self::check(&ctx.job.device, &ctx.meta.parameters, &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let name = ctx
            .meta()
            .param("commands")
            .and_then(scalar_string)
            .unwrap_or_default();
        let sequence = ctx
            .job
            .device
            .boot_method("uefi-menu")
            .and_then(|m| m.get(name.as_str()))
            .cloned()
            .ok_or_else(|| LavaError::job(format!("Missing commands for {name}")))?;
        let table = menu_substitutions(ctx, &name)?;
        let substituted = substitute_menu(&sequence, &table);
        ctx.set_data(
            SUBSTITUTED_MENU.0,
            SUBSTITUTED_MENU.1,
            SUBSTITUTED_MENU.2,
            substituted,
        );
        Ok(())
    }
}

/// Where `uefi-commands` leaves the menu sequence with the job's values substituted, for
/// `uefi-menu-selector` (LAVA changes the device configuration in place instead).
const SUBSTITUTED_MENU: (&str, &str, &str) = ("uefi-commands", "menu", "sequence");

/// The table `uefi-commands` substitutes into the menu entries of the sequence `name`:
/// the dispatcher's address, the deployed kernel, ramdisk and DTB, the entry's name
/// (`TEST_MENU_NAME`, "LAVA <name> test image") and the NFS root with its server.
fn menu_substitutions(ctx: &RunContext, name: &str) -> LavaResult<Substitutions> {
    let dispatcher = ctx.job.parameters.get("dispatcher");
    let server_ip = dispatcher_ip(dispatcher, None)
        .ok_or_else(|| LavaError::infrastructure("Unable to find dispatcher 'default' gateway"))?;
    let data = |action: &str, label: &str, key: &str| {
        ctx.get_data(action, label, key)
            .and_then(scalar_string)
            .filter(|s| !s.is_empty())
    };
    let mut table = Substitutions::default();
    table.set("{SERVER_IP}", Some(server_ip));
    table.set("{RAMDISK}", data("compress-ramdisk", "file", "ramdisk"));
    table.set("{KERNEL}", data("download-action", "file", "kernel"));
    table.set("{DTB}", data("download-action", "file", "dtb"));
    // LAVA's key has no braces, so the device types' `{TEST_MENU_NAME}` became
    // `{LAVA nfs test image}`, a label no menu shows: both spellings are replaced here.
    let menu_name = format!("LAVA {name} test image");
    table.set("{TEST_MENU_NAME}", Some(menu_name.clone()));
    table.set("TEST_MENU_NAME", Some(menu_name));
    if truthy(ctx.get_data("download-action", "file", "nfsrootfs")) {
        table.set("{NFSROOTFS}", data("extract-rootfs", "file", "nfsroot"));
        table.set("{NFS_SERVER_IP}", dispatcher_ip(dispatcher, Some("nfs")));
    } else if let Some(address) = data("persistent-nfs-overlay", "nfs_address", "nfsroot") {
        table.set("{NFSROOTFS}", Some(address));
        table.set(
            "{NFS_SERVER_IP}",
            data("persistent-nfs-overlay", "nfs_address", "serverip"),
        );
    }
    Ok(table)
}

/// The menu sequence with `table` applied to each step's `enter` text and `items`.
fn substitute_menu(sequence: &Value, table: &Substitutions) -> Value {
    let mut sequence = sequence.clone();
    for step in sequence.as_sequence_mut().into_iter().flatten() {
        let Some(select) = step.get_mut("select").and_then(Value::as_mapping_mut) else {
            continue;
        };
        if let Some(Value::String(enter)) = select.get_mut("enter") {
            *enter = table.apply(enter);
        }
        if let Some(Value::Sequence(items)) = select.get_mut("items") {
            for item in items.iter_mut() {
                if let Value::String(text) = item {
                    *text = table.apply(text);
                }
            }
        }
    }
    sequence
}

/// The `parameters` of device boot method `method`, as a ConfigurationError naming the
/// key when absent.
fn method_parameters(device: &Device, method: &str) -> LavaResult<Mapping> {
    Ok(device.require_boot_method_params(method)?.clone())
}

/// A string of the `parameters` of boot method `method`; a ConfigurationError naming the
/// key when absent.
fn method_string(params: &Mapping, method: &str, key: &str) -> LavaResult<String> {
    params.get(key).and_then(scalar_string).ok_or_else(|| {
        LavaError::configuration(format!(
            "actions.boot.methods.{method}.parameters.{key}: expected a string, found {}",
            params
                .get(key)
                .map(python_repr)
                .unwrap_or_else(|| "nothing".into())
        ))
    })
}

/// Which menu sequence a selector follows and how it ends.
struct SelectorPlan {
    /// The device boot method holding the menu's parameters and sequences.
    method: &'static str,
    /// The sequence (already substituted, or as the device gives it).
    sequence: Option<Value>,
    /// The prompt under the first menu, when not the method's `bootloader_prompt`.
    prompt: Option<String>,
    /// The message awaited after the last step, when not the method's `boot_message`
    /// (`Some(None)`: none).
    boot_message: Option<Option<String>>,
}

/// Runs a menu selector: the method's menu parameters, the block's (else the method's,
/// else `dos`) line separator, the steps of `plan.sequence`.
async fn run_selector(ctx: &mut RunContext, plan: SelectorPlan) -> LavaResult<()> {
    let method = plan.method;
    let params = method_parameters(&ctx.job.device, method)?;
    let mut parameters = MenuParameters::from_params(
        &params,
        &format!("actions.boot.methods.{method}.parameters"),
    )?;
    if let Some(prompt) = plan.prompt {
        parameters.prompt = prompt;
    }
    if let Some(message) = plan.boot_message {
        parameters.boot_message = message;
    }
    let separator = ctx
        .meta()
        .param("line_separator")
        .or_else(|| {
            ctx.job
                .device
                .boot_method(method)
                .and_then(|m| m.get("line_separator"))
        })
        .and_then(scalar_string)
        .unwrap_or_else(|| "dos".into());
    let line_separator = match separator.as_str() {
        "dos" => LineSeparator::Dos,
        "unix" => LineSeparator::Unix,
        _ => return Err(LavaError::job("Unrecognised line separator configuration.")),
    };
    let steps = match &plan.sequence {
        Some(sequence) => MenuStep::parse_sequence(sequence)?,
        None => Vec::new(),
    };
    let selection = MenuSelection {
        parameters,
        steps,
        line_separator: line_separator.as_str().to_string(),
    };
    menu::select(ctx, &selection).await
}

/// `menu-connect`: connect for menu operations (no prompt is awaited).
#[derive(Debug, Default)]
pub struct MenuConnect;

#[async_trait]
impl Action for MenuConnect {
    action_identity!(
        "menu-connect",
        "MenuConnect",
        "change into a menu session",
        "Customise connection for menu operations"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if ctx.job.device.connect_command()?.is_empty() {
            ctx.error("Unable to connect to device");
        }
        Ok(())
    }
    /// Connects (no prompt awaited: the board may still be off) and sends an empty line.
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let command = device_connect_command(ctx)?;
        connect_device(ctx, &command).await?;
        menu::poke(ctx).await
    }
}

/// `menu-reset`: back from the menu session to a shell session.
#[derive(Debug, Default)]
pub struct MenuReset;

#[async_trait]
impl Action for MenuReset {
    action_identity!(
        "menu-reset",
        "MenuReset",
        "change out of menu session to a shell session",
        "reset to shell connection"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        // A ConnectDevice: the same connection checks.
        ConnectDevice::new().validate(ctx)
    }
    /// The menu's connection goes on as the shell's ("Already connected"), poked with an
    /// empty line.
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let command = device_connect_command(ctx)?;
        connect_device(ctx, &command).await?;
        menu::poke(ctx).await
    }
}

/// `uefi-menu-interrupt` / `uefi-shell-menu-interrupt`: wait for the firmware's
/// interrupt prompt and send the interrupt string.
#[derive(Debug, Clone)]
pub struct UEFIMenuInterrupt {
    /// The device boot method holding the prompts.
    method: &'static str,
}

impl UEFIMenuInterrupt {
    /// For `uefi-menu` (and `grub-efi`).
    pub fn uefi_menu() -> Self {
        UEFIMenuInterrupt {
            method: "uefi-menu",
        }
    }

    /// For the UEFI shell's menu.
    pub fn uefi_shell() -> Self {
        UEFIMenuInterrupt { method: "uefi" }
    }

    /// Validation: `interrupt_prompt` and `interrupt_string` of the boot `method`; one message per problem into `errors`.
    pub fn check(device: &Device, method: &str, errors: &mut Vec<String>) {
        let params = device.boot_method_params(method);
        let has = |k: &str| params.is_some_and(|p| p.contains_key(k));
        if !has("interrupt_prompt") {
            errors.push("Missing interrupt prompt".into());
        }
        if !has("interrupt_string") {
            errors.push("Missing interrupt string".into());
        }
    }
}

#[async_trait]
impl Action for UEFIMenuInterrupt {
    fn name(&self) -> &str {
        match self.method {
            "uefi" => "uefi-shell-menu-interrupt",
            _ => "uefi-menu-interrupt",
        }
    }
    fn class_name(&self) -> &str {
        match self.method {
            "uefi" => "UefiShellMenuInterrupt",
            _ => "UEFIMenuInterrupt",
        }
    }
    fn description(&self) -> &str {
        match self.method {
            "uefi" => "interrupt default boot and to menu",
            _ => "interrupt for uefi menu",
        }
    }
    fn summary(&self) -> &str {
        self.description()
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        Self::check(&ctx.job.device, self.method, &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let params = method_parameters(&ctx.job.device, self.method)?;
        let prompt = method_string(&params, self.method, "interrupt_prompt")?;
        let interrupt = method_string(&params, self.method, "interrupt_string")?;
        menu::interrupt(ctx, &prompt, &interrupt).await
    }
}

/// The menu item keys a selector sequence may use.
pub const MENU_ITEM_KEYS: [&str; 6] = ["items", "prompt", "enter", "escape", "wait", "fallback"];

/// LAVA's `SelectorMenuAction.validate`: a list of steps whose `select` keys are known.
pub fn check_menu_items(items: &Value, errors: &mut Vec<String>) {
    let Some(items) = items.as_sequence() else {
        errors.push("menu sequence must be a list".into());
        return;
    };
    let mut unknown: Vec<String> = Vec::new();
    for item in items {
        let first = item
            .get("select")
            .and_then(Value::as_mapping)
            .and_then(|s| s.keys().next())
            .and_then(lava_pipeline::value::scalar_string);
        if let Some(key) = first
            && !MENU_ITEM_KEYS.contains(&key.as_str())
            && !unknown.contains(&key)
        {
            unknown.push(key);
        }
    }
    if !unknown.is_empty() {
        unknown.sort();
        let set: Vec<String> = unknown.iter().map(|k| str_repr(k)).collect();
        errors.push(format!("Unable to recognise item {{{}}}", set.join(", ")));
    }
}

/// LAVA's `UefiMenuSelector.validate` for the menu of `method_name`: `commands` and
/// `items` may be preset by the variant (shell menu, grub-efi).
pub fn check_uefi_menu_selector(
    device: &Device,
    params: &Mapping,
    method_name: &str,
    mut commands: Option<Value>,
    mut items: Option<Value>,
    errors: &mut Vec<String>,
) {
    let method = device.boot_method(method_name);
    let method_params = device.boot_method_params(method_name);
    let has = |k: &str| method_params.is_some_and(|p| p.contains_key(k));
    if !(has("item_markup") && has("item_class") && has("separator")) {
        errors.push("Missing device parameters for UEFI menu operations".into());
        return;
    }
    let set = |v: &Option<Value>| v.as_ref().is_some_and(|v| truthy(Some(v)));
    if !params.contains_key("commands") && !set(&commands) {
        errors.push("Missing commands in action parameters".into());
        return;
    }
    if !set(&commands)
        && let Some(name) = params.get("commands").and_then(Value::as_str)
    {
        if method.and_then(|m| m.get(name)).is_none() {
            errors.push(format!("Missing commands for {name}"));
            return;
        }
        commands = Some(Value::from(name));
    }
    if !set(&commands) {
        return;
    }
    if !set(&items) {
        let name = commands
            .as_ref()
            .and_then(lava_pipeline::value::scalar_string)
            .unwrap_or_default();
        match method.and_then(|m| m.get(name.as_str())) {
            Some(found) => items = Some(found.clone()),
            None => {
                errors.push(format!(
                    "No boot configuration called '{name}' for boot method '{method_name}'"
                ));
                return;
            }
        }
    }
    let separator = params
        .get("line_separator")
        .or_else(|| method.and_then(|m| m.get("line_separator")))
        .and_then(Value::as_str)
        .unwrap_or("dos");
    if separator != "dos" && separator != "unix" {
        errors.push("Unrecognised line separator configuration.".into());
    }
    check_menu_items(items.as_ref().unwrap_or(&Value::Null), errors);
}

/// `uefi-menu-selector` / `uefi-shell-menu-selector`: pick menu entries by label.
#[derive(Debug, Clone)]
pub struct UefiMenuSelector {
    shell: bool,
}

impl UefiMenuSelector {
    /// The variant selecting from the UEFI menu (not the shell).
    pub fn uefi_menu() -> Self {
        UefiMenuSelector { shell: false }
    }

    /// The variant dropping to the UEFI shell (`shell_menu` entries of `uefi`).
    pub fn uefi_shell() -> Self {
        UefiMenuSelector { shell: true }
    }

    fn check_shell(device: &Device, params: &Mapping, errors: &mut Vec<String>) {
        let commands = params
            .get("shell_menu")
            .or_else(|| {
                device
                    .boot_method_params("uefi")
                    .and_then(|p| p.get("shell_menu"))
            })
            .cloned()
            .unwrap_or_else(|| Value::from("shell"));
        let name = lava_pipeline::value::scalar_string(&commands).unwrap_or_default();
        let items = device
            .boot_method("uefi")
            .and_then(|m| m.get(name.as_str()))
            .cloned();
        if items.is_none() {
            errors.push(format!("Missing menu commands for {name}"));
        }
        check_uefi_menu_selector(device, params, "uefi", Some(commands), items, errors);
    }
}

#[async_trait]
impl Action for UefiMenuSelector {
    fn name(&self) -> &str {
        if self.shell {
            "uefi-shell-menu-selector"
        } else {
            "uefi-menu-selector"
        }
    }
    fn class_name(&self) -> &str {
        if self.shell {
            "UefiShellMenuSelector"
        } else {
            "UefiMenuSelector"
        }
    }
    fn description(&self) -> &str {
        if self.shell {
            "select uefi menu items to drop to a uefi shell"
        } else {
            "select specified uefi menu items"
        }
    }
    fn summary(&self) -> &str {
        if self.shell {
            "use uefi menu to drop to shell"
        } else {
            "select options in the uefi menu"
        }
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        if self.shell {
            Self::check_shell(&ctx.job.device, &ctx.meta.parameters, &mut errors);
        } else {
            check_uefi_menu_selector(
                &ctx.job.device,
                &ctx.meta.parameters,
                "uefi-menu",
                None,
                None,
                &mut errors,
            );
        }
        ctx.add_errors(errors);
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let plan = if self.shell {
            Self::shell_plan(ctx)?
        } else {
            // The sequence `uefi-commands` substituted, else the device's as it is.
            let sequence =
                match ctx.get_data(SUBSTITUTED_MENU.0, SUBSTITUTED_MENU.1, SUBSTITUTED_MENU.2) {
                    Some(sequence) => Some(sequence.clone()),
                    None => ctx
                        .meta()
                        .param("commands")
                        .and_then(Value::as_str)
                        .and_then(|name| {
                            ctx.job
                                .device
                                .boot_method("uefi-menu")
                                .and_then(|m| m.get(name))
                        })
                        .cloned(),
                };
            SelectorPlan {
                method: "uefi-menu",
                sequence,
                prompt: None,
                boot_message: None,
            }
        };
        run_selector(ctx, plan).await
    }
}

impl UefiMenuSelector {
    /// The UEFI shell's menu: the sequence named by `shell_menu` (block, else method
    /// parameter, else `shell`), the method's `menu_prompt` and `menu_boot_message` when
    /// given.
    fn shell_plan(ctx: &RunContext) -> LavaResult<SelectorPlan> {
        let params = method_parameters(&ctx.job.device, "uefi")?;
        let name = ctx
            .meta()
            .param("shell_menu")
            .or_else(|| params.get("shell_menu"))
            .and_then(scalar_string)
            .unwrap_or_else(|| "shell".into());
        let sequence = ctx
            .job
            .device
            .boot_method("uefi")
            .and_then(|m| m.get(name.as_str()))
            .cloned()
            .ok_or_else(|| LavaError::job(format!("Missing menu commands for {name}")))?;
        let boot_message = params
            .get("menu_boot_message")
            .and_then(scalar_string)
            .map(Some);
        Ok(SelectorPlan {
            method: "uefi",
            sequence: Some(sequence),
            prompt: params.get("menu_prompt").and_then(scalar_string),
            boot_message,
        })
    }

    /// The GRUB entry of `grub-efi`: the `uefi-menu` sequence named by its `menu_options`,
    /// no boot message awaited (GRUB's own prompt follows).
    pub(crate) async fn run_grub(ctx: &mut RunContext) -> LavaResult<()> {
        let method = ctx.job.device.boot_method("uefi-menu");
        let sequence = method
            .and_then(|m| m.get("menu_options"))
            .and_then(scalar_string)
            .and_then(|name| method.and_then(|m| m.get(name.as_str())))
            .cloned()
            .ok_or_else(|| {
                LavaError::configuration(
                    "actions.boot.methods.uefi-menu.menu_options: expected the name of a menu sequence of uefi-menu",
                )
            })?;
        run_selector(
            ctx,
            SelectorPlan {
                method: "uefi-menu",
                sequence: Some(sequence),
                prompt: None,
                boot_message: Some(None),
            },
        )
        .await
    }
}

/// `uefi-shell-interrupt`: interrupt the menu to get the UEFI shell.
#[derive(Debug, Default)]
pub struct UefiShellInterrupt;

#[async_trait]
impl Action for UefiShellInterrupt {
    action_identity!(
        "uefi-shell-interrupt",
        "UefiShellInterrupt",
        "interrupt uefi menu to get to a shell",
        "first uefi interrupt"
    );
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let params = method_parameters(&ctx.job.device, "uefi")?;
        let prompt = method_string(&params, "uefi", "shell_interrupt_prompt")?;
        let interrupt = method_string(&params, "uefi", "shell_interrupt_string")?;
        menu::interrupt(ctx, &prompt, &interrupt).await
    }
}

/// `uefi-shell-main-action`: connect, reset, reach the UEFI shell (through its menu when
/// `shell_menu` names one) and type the boot commands.
#[derive(Debug, Default)]
pub struct UefiShellAction;

impl UefiShellAction {
    /// Whether the shell is reached without a menu selection.
    pub fn skip_menu(device: &Device, params: &Mapping) -> bool {
        let shell_menu = params.get("shell_menu").or_else(|| {
            device
                .boot_method_params("uefi")
                .and_then(|p| p.get("shell_menu"))
        });
        !matches!(shell_menu, Some(Value::String(s)) if !s.is_empty())
    }
}

#[async_trait]
impl Action for UefiShellAction {
    action_identity!(
        "uefi-shell-main-action",
        "UefiShellAction",
        "UEFI shell boot action",
        "run UEFI shell to system"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let skip_menu = Self::skip_menu(pipeline.device(), pipeline.parameters());
        pipeline.add(BootloaderCommandOverlay::new())?;
        pipeline.add(MenuConnect)?;
        pipeline.add(ResetDevice::new())?;
        if !skip_menu {
            pipeline.add(UEFIMenuInterrupt::uefi_shell())?;
            pipeline.add(UefiMenuSelector::uefi_shell())?;
        }
        pipeline.add(UefiShellInterrupt)?;
        pipeline.add(BootloaderCommandsAction::uefi())?;
        add_login_tail(pipeline)
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let has_prompt = ctx
            .job
            .device
            .boot_method_params("uefi")
            .is_some_and(|p| p.contains_key("bootloader_prompt"));
        if !has_prompt {
            ctx.error("Missing bootloader prompt for device");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(yaml: &str) -> Device {
        Device::from_yaml(yaml, None).unwrap()
    }

    fn mapping(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    const MENU_DEVICE: &str = "actions:\n  boot:\n    methods:\n      uefi-menu:\n        parameters: {interrupt_prompt: p, interrupt_string: ' ', item_markup: ['[', ']'], item_class: 0-9, separator: ' ', bootloader_prompt: 'Start:'}\n        nfs:\n        - select: {items: [Boot Manager]}\n        - select: {wait: x}\n        bad:\n        - select: {jump: 1}\n        - select: {hop: 2}\n        - {noselect: 1}\n";

    #[test]
    fn menu_selector_checks() {
        let d = device(MENU_DEVICE);
        let mut errors = Vec::new();
        check_uefi_menu_selector(
            &d,
            &mapping("{commands: nfs}"),
            "uefi-menu",
            None,
            None,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        check_uefi_menu_selector(
            &d,
            &mapping("{commands: bad}"),
            "uefi-menu",
            None,
            None,
            &mut errors,
        );
        assert_eq!(errors, ["Unable to recognise item {'hop', 'jump'}"]);
        errors.clear();
        check_uefi_menu_selector(
            &d,
            &mapping("{commands: other}"),
            "uefi-menu",
            None,
            None,
            &mut errors,
        );
        assert_eq!(errors, ["Missing commands for other"]);
        errors.clear();
        check_uefi_menu_selector(
            &d,
            &mapping("{commands: nfs, line_separator: mac}"),
            "uefi-menu",
            None,
            None,
            &mut errors,
        );
        assert_eq!(errors, ["Unrecognised line separator configuration."]);
        errors.clear();
        UefiSubstituteCommands::check(&d, &mapping("{commands: bad}"), &mut errors);
        assert_eq!(
            errors,
            ["Invalid device configuration for uefi-commands: {'noselect': 1}"]
        );
    }

    #[test]
    fn strategies() {
        let d = device(MENU_DEVICE);
        assert!(
            crate::strategy(lava_pipeline::Section::Boot, "uefi-menu")
                .accepts(&d, &mapping("{method: uefi-menu, commands: nfs}"))
                .is_ok()
        );
        assert!(
            crate::strategy(lava_pipeline::Section::Boot, "uefi")
                .accepts(&d, &mapping("{method: uefi}"))
                .is_err()
        );
        let shell = device(
            "actions:\n  boot:\n    methods:\n      uefi:\n        parameters: {shell_interrupt_string: ' ', shell_interrupt_prompt: p, bootloader_prompt: 'Shell>', shell_menu: shell}\n",
        );
        assert!(
            crate::strategy(lava_pipeline::Section::Boot, "uefi")
                .accepts(&shell, &mapping("{method: uefi}"))
                .is_ok()
        );
        assert!(!UefiShellAction::skip_menu(&shell, &mapping("{}")));
        assert!(UefiShellAction::skip_menu(
            &shell,
            &mapping("{shell_menu: ''}")
        ));
        assert!(UefiShellAction::skip_menu(&d, &mapping("{}")));
    }
}
