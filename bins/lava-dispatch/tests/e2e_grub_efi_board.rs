//! Our `lava-run` on the grub-efi rig (`cargo xtask test-board grub-efi --prepare`): QEMU
//! x86_64 with Debian's OVMF PXE-booting a network GRUB. A `method: grub-efi` job deploys
//! the test system's kernel and initramfs by TFTP, waits through the firmware
//! (`uefi-menu-interrupt`, `grub-efi-menu-selector`), interrupts GRUB, types the boot
//! commands, and runs its test shell in the booted system, which checks it booted under
//! EFI (`/sys/firmware/efi`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{has, lava_run, results};
use lava_test_support::ci::{require_tool, skip_or_fail};
use lava_test_support::paths::workspace;

/// The prepared rig: `$LAVA_RS_GRUB_EFI_RIG`, else `target/board-grub-efi`.
fn rig_dir() -> PathBuf {
    std::env::var_os("LAVA_RS_GRUB_EFI_RIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/board-grub-efi"))
}

/// The rig's QEMU, up until dropped (`bin/rig-down`, also on a panic).
struct RigUp {
    dir: PathBuf,
}

impl RigUp {
    fn start(dir: PathBuf) -> RigUp {
        let status = Command::new(dir.join("bin/rig-up"))
            .stdin(Stdio::null())
            .status()
            .expect("running the rig's rig-up");
        assert!(
            status.success(),
            "the grub-efi rig did not come up ({status})"
        );
        RigUp { dir }
    }
}

impl Drop for RigUp {
    fn drop(&mut self) {
        let _ = Command::new(self.dir.join("bin/rig-down"))
            .stdin(Stdio::null())
            .status();
    }
}

#[test]
fn grub_efi_job_boots_through_ovmf_and_grub_and_runs_its_tests() {
    for tool in ["qemu-system-x86_64", "telnet", "grub-mkimage"] {
        if !require_tool(
            tool,
            "scripts/install-test-deps.sh installs the grub-efi rig",
        ) {
            return;
        }
    }
    let dir = rig_dir();
    if !dir.join("rig.txt").is_file() {
        skip_or_fail(format!(
            "the grub-efi rig is not prepared ({}: run `cargo xtask test-board grub-efi --prepare`)",
            dir.join("rig.txt").display()
        ));
        return;
    }
    let output = tempfile::tempdir().unwrap();
    let _rig = RigUp::start(dir.clone());
    let status = Command::new(lava_run())
        .args(["--job-id", "41", "--output-dir"])
        .arg(output.path())
        .arg("--device")
        .arg(dir.join("device.yaml"))
        .arg("--dispatcher")
        .arg(dir.join("dispatcher.yaml"))
        .arg(dir.join("grub-efi-job.yaml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let log = std::fs::read_to_string(output.path().join("logs.yaml")).unwrap_or_default();
    let found = results(&log);
    assert!(status.success(), "{log}");
    for (case, result) in [
        ("always-pass", "pass"),
        ("always-fail", "fail"),
        ("efi-firmware", "pass"),
    ] {
        assert!(
            has(&found, "0_grub-efi-smoke", case, result),
            "{case}: {found:?}\n{log}"
        );
    }
    for seen in [
        "NBP file downloaded successfully",
        "for a command-line",
        "Sending line: 'linux (tftp,10.0.2.2)/41/tftp-deploy-1/kernel/vmlinuz console=ttyS0,115200'",
        "end: 2.6 grub-efi-menu-selector",
        "end: 2.8 bootloader-commands",
    ] {
        assert!(log.contains(seen), "{seen}\n{log}");
    }
    assert!(has(&found, "lava", "job", "pass"), "{found:?}");
}
