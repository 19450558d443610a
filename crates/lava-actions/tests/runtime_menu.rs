//! The UEFI menu actions as they run, against a scripted menu on a pty: `menu-connect`,
//! `uefi-menu-interrupt` / `uefi-shell-interrupt`, `uefi-menu-selector` (items, fallback,
//! escape, enter, the boot message) and `grub-efi-menu-selector`, each reading what the
//! "firmware" received; an item shown nowhere is "No selection was made".

use lava_actions::boot::grub::GrubMenuSelector;
use lava_actions::boot::uefi::{
    MenuConnect, UEFIMenuInterrupt, UefiMenuSelector, UefiShellInterrupt,
};
use lava_actions::runtime::console::finalise_connections;
use lava_pipeline::{Action, Device, ErrorKind, RunContext};
use lava_test_support::ci::require_tool;
use lava_test_support::runtime::{ActionSpec, capturing_context};
use std::path::Path;

/// A menu firmware: an interrupt key, a `Start:` menu, a `Choice:` submenu, an escape
/// key, a typed line, then `Loaded: LinuxImage`; what it received goes to `received`.
const FIRMWARE: &str = r#"#!/bin/bash
out=$1
line=
readline() { while IFS= read -r line; do line=${line//$'\r'/}; [ -n "$line" ] && return 0; done; exit 0; }
key() { while IFS= read -r -s -n 1 k; do [ -n "$k" ] && [ "$k" != $'\r' ] && return 0; done; exit 0; }
printf 'Press a key to stop the boot\r\n'
key; printf 'key=[%s]\n' "$k" >> "$out"
printf '[1] Alpha\r\n[2] Boot Manager\r\n[3] Reboot\r\nStart: '
readline; echo "start=$line" >> "$out"
printf '[1] Add Entry\r\n[9] Return to main menu\r\nChoice: '
readline; echo "choice=$line" >> "$out"
printf 'Name: '
key; printf 'escape=%d\n' "'$k" >> "$out"
printf 'Type: '
readline; echo "enter=$line" >> "$out"
printf 'Loaded: LinuxImage\r\n'
sleep 30
"#;

fn device(dir: &Path, sequence: &str) -> Device {
    let script = dir.join("firmware.sh");
    std::fs::write(&script, FIRMWARE).unwrap();
    let received = dir.join("received");
    Device::from_yaml(
        &format!(
            "commands:\n  connect: bash {script} {received}\n\
             actions:\n  boot:\n    connections: {{serial: }}\n    methods:\n      uefi-menu:\n        menu_options: steps\n        parameters:\n          interrupt_prompt: Press a key\n          interrupt_string: ' '\n          item_markup: ['[', ']']\n          item_class: '0-9'\n          separator: ' '\n          bootloader_prompt: 'Start:'\n          boot_message: 'Loaded: LinuxImage'\n        steps:\n{sequence}\
             \x20     uefi:\n        parameters:\n          shell_interrupt_prompt: Press a key\n          shell_interrupt_string: ' '\n          bootloader_prompt: 'Shell>'\n",
            script = script.display(),
            received = received.display(),
        ),
        None,
    )
    .unwrap()
}

const STEPS: &str = "        - select: {items: [Boot Manager], wait: 'Choice:'}\n        - select: {items: [Missing], fallback: Return to main menu, wait: 'Name:'}\n        - select: {escape: true, wait: 'Type:'}\n        - select: {enter: hello world}\n";

async fn run(
    ctx: &mut RunContext,
    name: &str,
    params: &str,
    action: Box<dyn Action>,
) -> lava_pipeline::LavaResult<()> {
    ActionSpec::new(name, "boot", "1.1")
        .timeout(20)
        .connection_timeout(10)
        .parameters(serde_yaml::from_str(params).unwrap())
        .run(ctx, action)
        .await
}

fn received(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("received")).unwrap_or_default()
}

#[tokio::test]
async fn the_menu_is_interrupted_and_walked_as_the_sequence_says() {
    if !require_tool("bash", "bash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = capturing_context("1", Default::default(), device(dir.path(), STEPS), 60);
    let params = "{method: uefi-menu, commands: steps}";
    run(&mut ctx, "menu-connect", params, Box::new(MenuConnect))
        .await
        .unwrap();
    run(
        &mut ctx,
        "uefi-menu-interrupt",
        params,
        Box::new(UEFIMenuInterrupt::uefi_menu()),
    )
    .await
    .unwrap();
    let selected = run(
        &mut ctx,
        "uefi-menu-selector",
        params,
        Box::new(UefiMenuSelector::uefi_menu()),
    )
    .await;
    let log = ctx.logger.captured().join("\n");
    finalise_connections(&mut ctx).await;
    selected.unwrap_or_else(|e| panic!("{e:?}\n{log}"));
    assert_eq!(
        received(dir.path()),
        "key=[ ]\nstart=2\nchoice=9\nescape=27\nenter=hello world\n",
        "{log}"
    );
    for line in [
        "Looking for Start:",
        "Selecting option 2",
        "Changing menu prompt to 'Choice:'",
        "Sending escape",
        "Sending hello world Ctrl-M",
        "Looking for Loaded: LinuxImage",
    ] {
        assert!(log.contains(line), "{line}\n{log}");
    }
}

#[tokio::test]
async fn an_item_the_menu_does_not_show_is_no_selection() {
    if !require_tool("bash", "bash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let steps = "        - select: {items: [Setup], wait: 'Choice:'}\n";
    let mut ctx = capturing_context("1", Default::default(), device(dir.path(), steps), 60);
    let params = "{method: uefi-menu, commands: steps}";
    run(&mut ctx, "menu-connect", params, Box::new(MenuConnect))
        .await
        .unwrap();
    // The shell's interrupt: the same wait and key, from the `uefi` method's parameters.
    run(
        &mut ctx,
        "uefi-shell-interrupt",
        "{method: uefi}",
        Box::new(UefiShellInterrupt),
    )
    .await
    .unwrap();
    let error = run(
        &mut ctx,
        "uefi-menu-selector",
        params,
        Box::new(UefiMenuSelector::uefi_menu()),
    )
    .await
    .unwrap_err();
    finalise_connections(&mut ctx).await;
    assert_eq!(error.kind, ErrorKind::Job);
    assert_eq!(error.message, "No selection was made");
    assert_eq!(received(dir.path()), "key=[ ]\n");
}

#[tokio::test]
async fn grub_efi_selects_the_menu_options_sequence_without_a_boot_message() {
    if !require_tool("bash", "bash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Only the first step: the firmware then waits at `Choice:`, and no boot message is
    // awaited (GRUB's own prompt follows).
    let steps = "        - select: {items: [Boot Manager]}\n";
    let mut ctx = capturing_context("1", Default::default(), device(dir.path(), steps), 60);
    let params = "{method: grub-efi, commands: ramdisk}";
    run(&mut ctx, "menu-connect", params, Box::new(MenuConnect))
        .await
        .unwrap();
    run(
        &mut ctx,
        "uefi-menu-interrupt",
        params,
        Box::new(UEFIMenuInterrupt::uefi_menu()),
    )
    .await
    .unwrap();
    let selected = run(
        &mut ctx,
        "grub-efi-menu-selector",
        params,
        Box::new(GrubMenuSelector),
    )
    .await;
    let log = ctx.logger.captured().join("\n");
    finalise_connections(&mut ctx).await;
    selected.unwrap_or_else(|e| panic!("{e:?}\n{log}"));
    assert!(log.contains("Selecting option 2"), "{log}");
    assert!(!log.contains("Looking for Loaded"), "{log}");
}
