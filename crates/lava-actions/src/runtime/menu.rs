//! Run-time: firmware menus on the device console (the UEFI boot menu of EDK2's ARM BDS,
//! the UEFI shell's entry in it, the GRUB entry of `grub-efi`), as LAVA's `MenuConnect`,
//! `MenuReset`, `UEFIMenuInterrupt`, `UefiShellInterrupt`, `UefiMenuSelector` and
//! `GrubMenuSelector` do at run time.
//!
//! A menu is read from the console text: [`SelectorMenu`] finds the selector of a
//! labelled entry (`[3] Boot Manager` → `3`) in the text the last wait skipped over, from
//! its last line up, so the newest copy of a redrawn menu wins. A device's sequence of
//! [`MenuStep`]s (`select: {items, wait, enter, escape, fallback}`) is followed by
//! [`select`]: for each step the awaited prompt changes to its `wait`, each item's
//! selector is sent as a line, `escape` sends Ctrl-[, `enter` sends its text and Ctrl-M,
//! and after each of them the new prompt is awaited. A label found in neither the menu nor
//! as the step's `fallback` is LAVA's JobError "No selection was made".
//!
//! Waits never send anything (a blank line would advance a menu): each ends at the
//! connection timeout, a JobError "wait for prompt timed out", or at the action deadline,
//! the action's own timeout.
//!
//! ```
//! use lava_actions::runtime::menu::SelectorMenu;
//! let menu = SelectorMenu::new("[", "]", "0-9", " ", None);
//! let text = "[1] Linux from SD\r\n[2] Shell\r\n[3] Boot Manager\r\n";
//! assert_eq!(menu.select(text, "Boot Manager").unwrap().as_deref(), Some("3"));
//! assert_eq!(menu.select(text, "Reboot").unwrap(), None);
//! ```

use super::console::{ConsoleConnection, action_timeout, on_console, wait_deadline};
use lava_connection::{ErrorKind as ConnErrorKind, Patterns};
use lava_pipeline::value::{python_repr, scalar_string};
use lava_pipeline::{LavaError, LavaResult, RunContext};
use regex::Regex;
use serde_yaml::{Mapping, Value};
use tokio::time::Instant;

/// LAVA's `DEFAULT_UEFI_LABEL_CLASS`: the label characters when the device gives no
/// `label_class`.
pub const DEFAULT_LABEL_CLASS: &str = r"a-zA-Z0-9\s\:";

/// A numbered menu as its lines show it: `<open><selector><close><separator><label>`,
/// e.g. `[2] Shell` with markup `[`/`]`, item class `0-9` and separator ` `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorMenu {
    /// The text before the selector (`item_markup[0]`), matched literally.
    pub open: String,
    /// The text after the selector (`item_markup[1]`), matched literally.
    pub close: String,
    /// The characters of a selector, as a regex class body (`item_class`, e.g. `0-9`).
    pub item_class: String,
    /// What separates the selector from the label, as a regex (`separator`).
    pub separator: String,
    /// The characters of a label, as a regex class body (`label_class`).
    pub label_class: String,
}

impl SelectorMenu {
    /// A menu; `label_class` defaults to [`DEFAULT_LABEL_CLASS`].
    pub fn new(
        open: &str,
        close: &str,
        item_class: &str,
        separator: &str,
        label_class: Option<&str>,
    ) -> SelectorMenu {
        SelectorMenu {
            open: open.to_string(),
            close: close.to_string(),
            item_class: item_class.to_string(),
            separator: separator.to_string(),
            label_class: label_class.unwrap_or(DEFAULT_LABEL_CLASS).to_string(),
        }
    }

    /// The regex of one entry: group 1 the selector, group 2 the label.
    pub fn pattern(&self) -> String {
        format!(
            "{}([{}]+){}{}([{}]*)",
            regex::escape(&self.open),
            self.item_class,
            regex::escape(&self.close),
            self.separator,
            self.label_class
        )
    }

    /// The selector of the entry labelled exactly `label` in `output`, searching its
    /// lines (trimmed) from the last one up. A pattern the device's classes make invalid
    /// is a ConfigurationError.
    pub fn select(&self, output: &str, label: &str) -> LavaResult<Option<String>> {
        let pattern = self.pattern();
        let regex = Regex::new(&pattern).map_err(|e| {
            LavaError::configuration(format!(
                "Invalid menu item pattern '{pattern}' (from item_markup, item_class, separator and label_class): {e}"
            ))
        })?;
        for line in output.split('\n').rev() {
            if let Some(found) = regex.captures(line.trim())
                && found.get(2).map(|m| m.as_str()) == Some(label)
            {
                return Ok(found.get(1).map(|m| m.as_str().to_string()));
            }
        }
        Ok(None)
    }
}

/// The keys of a method's `parameters` a menu needs, read with errors naming the key.
#[derive(Debug, Clone, PartialEq)]
pub struct MenuParameters {
    /// How entries look.
    pub menu: SelectorMenu,
    /// The prompt under the first menu (`bootloader_prompt`, e.g. `Start:`).
    pub prompt: String,
    /// Awaited after the last step (`boot_message`), e.g. `Loaded: LinuxImage`.
    pub boot_message: Option<String>,
}

/// A required string in `params`, else a ConfigurationError naming `path.key`.
fn required_string(params: &Mapping, path: &str, key: &str) -> LavaResult<String> {
    params.get(key).and_then(scalar_string).ok_or_else(|| {
        LavaError::configuration(format!(
            "{path}.{key}: expected a string, found {}",
            params
                .get(key)
                .map(python_repr)
                .unwrap_or_else(|| "nothing".into())
        ))
    })
}

impl MenuParameters {
    /// From the `parameters` of boot method `method` (`path` names it in errors, e.g.
    /// `actions.boot.methods.uefi-menu.parameters`).
    pub fn from_params(params: &Mapping, path: &str) -> LavaResult<MenuParameters> {
        let markup: Vec<String> = match params.get("item_markup") {
            Some(Value::Sequence(items)) if items.len() == 2 => {
                items.iter().filter_map(scalar_string).collect()
            }
            _ => Vec::new(),
        };
        if markup.len() != 2 {
            return Err(LavaError::configuration(format!(
                "{path}.item_markup: expected a list of two strings (the text before and after a selector), found {}",
                params
                    .get("item_markup")
                    .map(python_repr)
                    .unwrap_or_else(|| "nothing".into())
            )));
        }
        let label_class = params.get("label_class").and_then(scalar_string);
        Ok(MenuParameters {
            menu: SelectorMenu::new(
                &markup[0],
                &markup[1],
                &required_string(params, path, "item_class")?,
                &required_string(params, path, "separator")?,
                label_class.as_deref(),
            ),
            prompt: required_string(params, path, "bootloader_prompt")?,
            boot_message: params.get("boot_message").and_then(scalar_string),
        })
    }
}

/// One `select:` step of a menu sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MenuStep {
    /// Labels selected one after the other (`items`).
    pub items: Vec<String>,
    /// The label selected when an item is not in the menu (`fallback`).
    pub fallback: Option<String>,
    /// The prompt awaited after each thing this step sends (`wait`).
    pub wait: Option<String>,
    /// Text typed and ended with Ctrl-M (`enter`).
    pub enter: Option<String>,
    /// Send Ctrl-[ (`escape`).
    pub escape: bool,
}

impl MenuStep {
    /// The steps of a device's menu sequence (a list of `select:` mappings). A step
    /// without `select` is LAVA's JobError "Unable to recognise selection".
    pub fn parse_sequence(sequence: &Value) -> LavaResult<Vec<MenuStep>> {
        let Some(list) = sequence.as_sequence() else {
            return Err(LavaError::job("menu sequence must be a list"));
        };
        list.iter()
            .map(|block| {
                let Some(select) = block.get("select").and_then(Value::as_mapping) else {
                    return Err(LavaError::job(format!(
                        "Unable to recognise selection {}",
                        python_repr(block)
                    )));
                };
                let text = |k: &str| select.get(k).and_then(scalar_string);
                let items = match select.get("items") {
                    Some(Value::Sequence(items)) => {
                        items.iter().filter_map(scalar_string).collect()
                    }
                    Some(item) => scalar_string(item).into_iter().collect(),
                    None => Vec::new(),
                };
                Ok(MenuStep {
                    items,
                    fallback: text("fallback"),
                    wait: text("wait"),
                    enter: text("enter"),
                    escape: select.contains_key("escape"),
                })
            })
            .collect()
    }
}

/// What [`select`] does.
#[derive(Debug, Clone, PartialEq)]
pub struct MenuSelection {
    /// The menu's shape and prompts.
    pub parameters: MenuParameters,
    /// The steps, job data already substituted.
    pub steps: Vec<MenuStep>,
    /// The line separator selections are sent with (`\r\n` for UEFI, LAVA's `dos`).
    pub line_separator: String,
}

/// Waits for `prompt` without sending anything; returns the text skipped over (pexpect's
/// `before`). A connection timeout is LAVA's JobError "wait for prompt timed out".
async fn menu_wait(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    prompt: &str,
) -> LavaResult<String> {
    let patterns = Patterns::new(&[prompt])?;
    let deadline: Instant = wait_deadline(ctx);
    match console.session().wait_for(&patterns, deadline).await {
        Ok(found) => Ok(found.before),
        Err(e) if e.kind() == ConnErrorKind::Timeout => {
            if Instant::now() >= ctx.deadline() {
                Err(action_timeout(ctx))
            } else {
                Err(LavaError::job("wait for prompt timed out"))
            }
        }
        Err(e) => Err(LavaError::from(e)),
    }
}

/// `menu-connect` / `menu-reset` after the connection is there: an empty line to bring
/// up the next prompt (LAVA sends a newline and the line separator).
pub async fn poke(ctx: &mut RunContext) -> LavaResult<()> {
    on_console!(ctx, console => async {
        console.check_char = "\n".to_string();
        console.session().sendline("\n").await?;
        Ok::<(), LavaError>(())
    })
}

/// `uefi-menu-interrupt` / `uefi-shell-interrupt`: wait for `prompt`, then send
/// `interrupt` as it is (no line end).
pub async fn interrupt(ctx: &mut RunContext, prompt: &str, interrupt: &str) -> LavaResult<()> {
    on_console!(ctx, console => async {
        menu_wait(ctx, console, prompt).await?;
        console.session().send(interrupt).await?;
        Ok::<(), LavaError>(())
    })
}

/// `uefi-menu-selector` and its shell and GRUB variants: run the device's
/// `pre_os_command`, wait for the menu prompt, follow the steps, then wait for the boot
/// message.
pub async fn select(ctx: &mut RunContext, selection: &MenuSelection) -> LavaResult<()> {
    let pre_os = ctx.job.device.pre_os_command();
    if !pre_os.is_empty() {
        ctx.logger.info("Running pre OS command.");
        let deadline = ctx.deadline();
        for command in &pre_os {
            let argv = lava_python::shlex_split(command)?;
            let outcome = lava_pipeline::command::run_command(
                &ctx.logger,
                &argv,
                None,
                deadline,
                lava_pipeline::ErrorKind::Infrastructure,
                false,
            )
            .await;
            if outcome.is_err() {
                return Err(LavaError::infrastructure(format!("{command} failed")));
            }
        }
    }
    on_console!(ctx, console => select_inner(ctx, console, selection))
}

async fn select_inner(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    selection: &MenuSelection,
) -> LavaResult<()> {
    let parameters = &selection.parameters;
    console.session().set_linesep(&selection.line_separator);
    ctx.logger
        .debug(format!("Looking for {}", parameters.prompt));
    let mut prompt = parameters.prompt.clone();
    let mut menu_text = menu_wait(ctx, console, &prompt).await?;
    for step in &selection.steps {
        let change_prompt = match &step.wait {
            Some(wait) => {
                prompt = wait.clone();
                true
            }
            None => false,
        };
        // After each thing sent, the new prompt (LAVA re-reads the menu from there).
        macro_rules! await_change {
            () => {
                if change_prompt {
                    ctx.logger
                        .debug(format!("Changing menu prompt to '{prompt}'"));
                    menu_text = menu_wait(ctx, console, &prompt).await?;
                }
            };
        }
        for item in &step.items {
            let mut choice = parameters.menu.select(&menu_text, item)?;
            match &choice {
                Some(found) => ctx.logger.debug(format!("Selecting option {found}")),
                None => {
                    if let Some(fallback) = &step.fallback {
                        choice = parameters.menu.select(&menu_text, fallback)?;
                    }
                }
            }
            let Some(choice) = choice else {
                return Err(LavaError::job("No selection was made"));
            };
            console.session().sendline(&choice).await?;
            await_change!();
        }
        if step.escape {
            ctx.logger.debug("Sending escape");
            console.session().send_control('[').await?;
            await_change!();
        }
        if let Some(enter) = &step.enter {
            ctx.logger.debug(format!("Sending {enter} Ctrl-M"));
            console.session().send(enter).await?;
            console.session().send_control('M').await?;
            await_change!();
        }
    }
    if let Some(message) = &parameters.boot_message {
        ctx.logger.debug(format!("Looking for {message}"));
        menu_wait(ctx, console, message).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    const BDS: &str = "[1] LAVA nfs test image\r\n[2] Shell\r\n[3] Boot Manager\r\n[4] Reboot\r\n";

    #[test]
    fn the_pattern_matches_edk2_bds_entries() {
        let menu = SelectorMenu::new("[", "]", "0-9", " ", None);
        assert_eq!(menu.pattern(), r"\[([0-9]+)\] ([a-zA-Z0-9\s\:]*)");
        assert_eq!(menu.select(BDS, "Shell").unwrap().as_deref(), Some("2"));
        assert_eq!(
            menu.select(BDS, "LAVA nfs test image").unwrap().as_deref(),
            Some("1")
        );
        // The whole label, not a prefix of it.
        assert_eq!(menu.select(BDS, "Boot").unwrap(), None);
        assert_eq!(
            menu.select(
                "[12] TFTP on MAC Address: 00:01:73:69:5A:EF  \n",
                "TFTP on MAC Address: 00:01:73:69:5A:EF"
            )
            .unwrap()
            .as_deref(),
            Some("12")
        );
    }

    #[test]
    fn the_latest_copy_of_a_redrawn_menu_wins() {
        let menu = SelectorMenu::new("[", "]", "0-9", " ", None);
        let text = format!("{BDS}Start: 3\r\n[1] Add Boot Device Entry\r\n[7] Boot Manager\r\n");
        assert_eq!(
            menu.select(&text, "Boot Manager").unwrap().as_deref(),
            Some("7")
        );
    }

    #[test]
    fn other_markup_and_separators() {
        // GRUB-like `1) Label` entries, a label class without spaces.
        let menu = SelectorMenu::new("", ")", "0-9", r"\s+", Some("a-z"));
        assert_eq!(
            menu.select("1)  debian\n2) rescue\n", "rescue")
                .unwrap()
                .as_deref(),
            Some("2")
        );
        let broken = SelectorMenu::new("[", "]", "9-0", " ", None);
        let error = broken.select(BDS, "Shell").unwrap_err();
        assert_eq!(error.kind, lava_pipeline::ErrorKind::Configuration);
        assert!(
            error.message.contains("Invalid menu item pattern"),
            "{error:?}"
        );
    }

    #[test]
    fn parameters_are_read_with_key_paths() {
        let path = "actions.boot.methods.uefi-menu.parameters";
        let params = MenuParameters::from_params(
            &mapping("{item_markup: ['[', ']'], item_class: 0-9, separator: ' ', bootloader_prompt: 'Start:', boot_message: 'Loaded: LinuxImage'}"),
            path,
        )
        .unwrap();
        assert_eq!(params.menu.label_class, DEFAULT_LABEL_CLASS);
        assert_eq!(params.prompt, "Start:");
        assert_eq!(params.boot_message.as_deref(), Some("Loaded: LinuxImage"));
        let error = MenuParameters::from_params(
            &mapping("{item_markup: '[]', item_class: 0-9, separator: ' ', bootloader_prompt: x}"),
            path,
        )
        .unwrap_err();
        assert_eq!(
            error.message,
            "actions.boot.methods.uefi-menu.parameters.item_markup: expected a list of two strings (the text before and after a selector), found '[]'"
        );
        let error = MenuParameters::from_params(
            &mapping("{item_markup: ['[', ']'], item_class: 0-9, separator: ' '}"),
            path,
        )
        .unwrap_err();
        assert_eq!(
            error.message,
            "actions.boot.methods.uefi-menu.parameters.bootloader_prompt: expected a string, found nothing"
        );
    }

    #[test]
    fn steps_are_typed() {
        let steps = MenuStep::parse_sequence(&serde_yaml::from_str(
            "- select: {items: [Boot Manager], wait: 'Choice:'}\n- select: {items: [Remove], fallback: Return, wait: Delete}\n- select: {enter: y, wait: 'IP:'}\n- select: {escape: true}\n- select: {items: Shell}\n",
        ).unwrap())
        .unwrap();
        assert_eq!(steps.len(), 5);
        assert_eq!(steps[0].items, ["Boot Manager"]);
        assert_eq!(steps[0].wait.as_deref(), Some("Choice:"));
        assert_eq!(steps[1].fallback.as_deref(), Some("Return"));
        assert_eq!(steps[2].enter.as_deref(), Some("y"));
        assert!(steps[3].escape && steps[3].items.is_empty());
        assert_eq!(steps[4].items, ["Shell"]);
        let error = MenuStep::parse_sequence(&serde_yaml::from_str("- {noselect: 1}\n").unwrap())
            .unwrap_err();
        assert_eq!(
            error.message,
            "Unable to recognise selection {'noselect': 1}"
        );
        assert_eq!(error.kind, lava_pipeline::ErrorKind::Job);
    }
}
