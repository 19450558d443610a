//! The UEFI boot methods: `uefi-menu` (select entries of the firmware boot menu) and
//! `uefi` (drop to the UEFI shell and type the commands), with the menu actions they
//! share with `grub-efi`.

use crate::common::bootloader::{
    BootloaderCommandOverlay, BootloaderCommandsAction, add_login_tail,
};
use crate::common::env::ExportDeviceEnvironment;
use crate::common::login::AutoLoginAction;
use crate::common::power::{ConnectDevice, ResetDevice};
use lava_pipeline::value::{python_repr, truthy};
use lava_pipeline::{
    Action, ActionMeta, Declared, Device, ErrorKind, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
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
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
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
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
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
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
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
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
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
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
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
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
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
