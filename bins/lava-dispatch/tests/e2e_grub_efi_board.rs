//! Our `lava-run` on the OVMF rig (`cargo xtask test-board grub-efi --prepare`): QEMU
//! x86_64 with Debian's OVMF. A `method: grub-efi` job deploys the test system's kernel
//! and initramfs by TFTP, waits through the firmware (`uefi-menu-interrupt`,
//! `grub-efi-menu-selector`) while it PXE-boots the rig's network GRUB, interrupts GRUB,
//! types the boot commands, and runs its test shell in the booted system, which checks it
//! booted under EFI (`/sys/firmware/efi`). A `method: uefi` job does the same through
//! OVMF's UEFI shell (`rig-up shell`): its `tftp` fetches the files onto a FAT disk and
//! the kernel's EFI stub is started from there. The two take turns on the rig's ports.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use common::rig::RigUp;
use common::{has, lava_run, results};
use lava_test_support::ci::{require_tool, skip_or_fail};
use lava_test_support::paths::workspace;

/// The prepared rig: `$LAVA_RS_GRUB_EFI_RIG`, else `target/board-grub-efi`.
fn rig_dir() -> PathBuf {
    std::env::var_os("LAVA_RS_GRUB_EFI_RIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/board-grub-efi"))
}

/// One rig (one console port): the tests take turns.
static RIG: Mutex<()> = Mutex::new(());

/// The prepared rig's directory, or `None` (after saying why, or failing under CI).
fn prepared_rig() -> Option<PathBuf> {
    for tool in ["qemu-system-x86_64", "telnet", "grub-mkimage", "mformat"] {
        if !require_tool(
            tool,
            "scripts/install-test-deps.sh installs the grub-efi rig",
        ) {
            return None;
        }
    }
    let dir = rig_dir();
    if !dir.join("rig.txt").is_file() {
        skip_or_fail(format!(
            "the grub-efi rig is not prepared ({}: run `cargo xtask test-board grub-efi --prepare`)",
            dir.join("rig.txt").display()
        ));
        return None;
    }
    Some(dir)
}

/// Runs `job` on `device` (files of the rig) with our lava-run, the rig started in
/// `mode`; returns (success, logs.yaml text).
fn run_on_rig(
    dir: &std::path::Path,
    mode: &str,
    device: &str,
    job: &str,
    id: &str,
) -> (bool, String) {
    let _turn = RIG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let output = tempfile::tempdir().unwrap();
    // `shell`: the UEFI shell instead of GRUB by PXE.
    let _rig = RigUp::up(dir, &[mode], "the grub-efi rig");
    let status = Command::new(lava_run())
        .args(["--job-id", id, "--output-dir"])
        .arg(output.path())
        .arg("--device")
        .arg(dir.join(device))
        .arg("--dispatcher")
        .arg(dir.join("dispatcher.yaml"))
        .arg(dir.join(job))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let log = std::fs::read_to_string(output.path().join("logs.yaml")).unwrap_or_default();
    (status.success(), log)
}

/// The suite's three cases as the smoke test definition gives them, and the job passed.
fn assert_smoke(suite: &str, log: &str) {
    let found = results(log);
    for (case, result) in [
        ("always-pass", "pass"),
        ("always-fail", "fail"),
        ("efi-firmware", "pass"),
    ] {
        assert!(has(&found, suite, case, result), "{case}: {found:?}\n{log}");
    }
    assert!(has(&found, "lava", "job", "pass"), "{found:?}");
}

#[test]
fn grub_efi_job_boots_through_ovmf_and_grub_and_runs_its_tests() {
    let Some(dir) = prepared_rig() else {
        return;
    };
    let (success, log) = run_on_rig(&dir, "grub", "device.yaml", "grub-efi-job.yaml", "41");
    assert!(success, "{log}");
    assert_smoke("0_grub-efi-smoke", &log);
    for seen in [
        "NBP file downloaded successfully",
        "for a command-line",
        "Sending line: 'linux (tftp,10.0.2.2)/41/tftp-deploy-1/kernel/vmlinuz console=ttyS0,115200'",
        "end: 2.6 grub-efi-menu-selector",
        "end: 2.8 bootloader-commands",
    ] {
        assert!(log.contains(seen), "{seen}\n{log}");
    }
}

#[test]
fn uefi_shell_job_fetches_the_kernel_with_the_shells_tftp_and_runs_its_tests() {
    let Some(dir) = prepared_rig() else {
        return;
    };
    let (success, log) = run_on_rig(
        &dir,
        "shell",
        "device-shell.yaml",
        "uefi-shell-job.yaml",
        "42",
    );
    assert!(success, "{log}");
    assert_smoke("0_uefi-shell-smoke", &log);
    for seen in [
        "UEFI Interactive Shell",
        "end: 2.4 uefi-shell-interrupt",
        "Sending line: 'tftp 10.0.2.2 42/tftp-deploy-1/kernel/vmlinuz vmlinuz'",
        "EFI stub: Loaded initrd from command line option",
    ] {
        assert!(log.contains(seen), "{seen}\n{log}");
    }
}
