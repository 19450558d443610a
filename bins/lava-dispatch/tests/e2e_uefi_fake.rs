//! End-to-end: `lava-run` on a fake UEFI board (fixtures/uefi-fake: a bash EDK2 BDS
//! menu on a pty, reset by a file, its boot entries kept in a file like NVRAM). A
//! `to: tftp` deployment puts the kernel and DTB under the TFTP root and unpacks the NFS
//! root with the test overlay; `method: uefi-menu` (LAVA's mustang-uefi shape) connects,
//! resets, interrupts the countdown, walks the Boot Manager to replace the job's boot
//! entry with one naming the deployed files, boots it, logs in and runs the test shell;
//! `method: grub-efi` selects the board's GRUB entry, interrupts GRUB and types the GRUB
//! commands. A menu entry the board does not show is LAVA's JobError "No selection was
//! made", and a board that never counts down times out in `uefi-menu-interrupt`.

mod common;

use common::{has, results, run_job_on_device};
use lava_test_support::ci::require_tool;
use lava_test_support::paths::workspace;
use std::path::PathBuf;
use std::process::Command;

/// A board's files: state directory (under /tmp: the fake copies the overlay back there
/// by its absolute path), TFTP root, images, output directory.
struct Board {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Board {
    /// A board whose NVRAM holds `entries` (description, kernel), as left by earlier jobs.
    fn new(entries: &[(&str, &str)]) -> Board {
        let tmp = tempfile::Builder::new()
            .prefix("lava-rs-uefi-")
            .tempdir_in("/tmp")
            .unwrap();
        let root = tmp.path().to_path_buf();
        for dir in ["state", "tftp", "images", "www/tmp"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let nvram: String = entries
            .iter()
            .map(|(desc, kernel)| format!("{desc}\t{kernel}\t\t\n"))
            .collect();
        std::fs::write(root.join("state/entries"), nvram).unwrap();
        Board { _tmp: tmp, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Kernel, DTB and a gzip tar NFS root holding one file.
    fn write_images(&self) {
        let images = self.path("images");
        std::fs::write(images.join("Image"), b"not really an arm64 kernel\n").unwrap();
        std::fs::write(images.join("board.dtb"), b"\xd0\x0d\xfe\xedfake dtb\n").unwrap();
        let src = self.path("rootfs-src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hostname"), b"fake-uefi\n").unwrap();
        let status = Command::new("tar")
            .arg("-C")
            .arg(&src)
            .arg("-czf")
            .arg(images.join("rootfs.tar.gz"))
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Runs fixture job `job` with extra job `timeouts` (YAML lines under `timeouts:`);
    /// returns (exit code, logs.yaml text, result.yaml text).
    fn run(&self, job: &str, fake_args: &str, timeouts: &str) -> (Option<i32>, String, String) {
        self.write_images();
        let device = self.path("uefi-fake01.jinja2");
        std::fs::write(
            &device,
            format!(
                "{{% extends 'uefi-fake.jinja2' %}}\n\
                 {{% set state_dir = '{state}' %}}\n\
                 {{% set tftp_dir = '{tftp}' %}}\n\
                 {{% set fake_uefi = '{fake}' %}}\n\
                 {{% set fake_args = '{fake_args}' %}}\n\
                 {{% set boot_character_delay = 1 %}}\n",
                state = self.path("state").display(),
                tftp = self.path("tftp").display(),
                fake = workspace()
                    .join("fixtures/uefi-fake/fake-uefi.sh")
                    .display(),
            ),
        )
        .unwrap();
        let dispatcher = self.path("dispatcher.yaml");
        std::fs::write(
            &dispatcher,
            format!(
                "dispatcher_ip: 10.0.2.2\ntftp_dir: {}\ntmp_dir: {}\n",
                self.path("tftp").display(),
                self.path("www/tmp").display(),
            ),
        )
        .unwrap();
        let text = std::fs::read_to_string(workspace().join("fixtures/uefi-fake").join(job))
            .unwrap()
            .replace("IMAGES", &self.path("images").display().to_string())
            .replace(
                "  connection: {seconds: 30}\n",
                &format!("  connection: {{seconds: 30}}\n{timeouts}"),
            );
        let job = self.path("job.yaml");
        std::fs::write(&job, text).unwrap();
        run_job_on_device(
            &self.path("output"),
            &device,
            &workspace().join("fixtures/uefi-fake/device-types"),
            &dispatcher,
            &job,
        )
    }
}

fn prerequisites() -> bool {
    require_tool("bash", "bash") && require_tool("tar", "tar") && require_tool("gzip", "gzip")
}

/// Every action in `actions` ended (an `end: <level> <name> (` log line).
fn assert_ended(log: &str, actions: &[&str]) {
    for action in actions {
        let ended = log
            .lines()
            .filter(|l| l.contains("\"msg\": \"end: "))
            .any(|l| l.contains(&format!(" {action} (")));
        assert!(ended, "{action} did not end\n{log}");
    }
}

/// The entry an earlier job left, which the menu sequence removes first.
const OLD_ENTRY: (&str, &str) = ("LAVA nfs test image", "6/tftp-deploy-1/kernel/Image");
/// The board's GRUB, loaded over the network by its firmware.
const GRUB_ENTRY: (&str, &str) = ("LAVA PXE Grub", "grubaa64.efi");

#[test]
fn uefi_menu_job_adds_its_boot_entry_boots_it_and_runs_the_test_shell() {
    if !prerequisites() {
        return;
    }
    let board = Board::new(&[GRUB_ENTRY, OLD_ENTRY]);
    let (code, log, _) = board.run("uefi-menu-job.yaml", "", "");
    let found = results(&log);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        has(&found, "0_smoke", "uefi-echo", "pass"),
        "{found:?}\n{log}"
    );
    assert!(has(&found, "0_smoke", "uefi-false", "fail"), "{found:?}");
    assert_ended(
        &log,
        &[
            "uefi-commands",
            "menu-connect",
            "reset-device",
            "uefi-menu-interrupt",
            "uefi-menu-selector",
            "menu-reset",
            "auto-login-action",
            "lava-test-shell",
            "power-off",
        ],
    );
    // The menu walked as LAVA walks it: selections by number, text entered with Ctrl-M,
    // the job's values substituted.
    for line in [
        "Selecting option 4",
        "Changing menu prompt to 'Delete entry'",
        "Sending 10.0.2.2 Ctrl-M",
        "Sending 7/tftp-deploy-1/kernel/Image Ctrl-M",
        "Sending 7/tftp-deploy-1/dtb/board.dtb Ctrl-M",
        "Sending LAVA nfs test image Ctrl-M",
        "Looking for Loaded: LinuxImage",
    ] {
        assert!(log.contains(line), "{line}\n{log}");
    }
    // The board's NVRAM: the old entry replaced by the job's, naming its NFS root.
    let nvram = std::fs::read_to_string(board.path("state/entries")).unwrap();
    let lines: Vec<&str> = nvram.lines().collect();
    assert_eq!(lines.len(), 2, "{nvram}");
    assert!(lines[0].starts_with("LAVA PXE Grub\t"), "{nvram}");
    let entry: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(
        entry[..3],
        [
            "LAVA nfs test image",
            "7/tftp-deploy-1/kernel/Image",
            "7/tftp-deploy-1/dtb/board.dtb"
        ]
    );
    assert!(entry[3].contains("nfsroot=10.0.2.2:/"), "{nvram}");
    assert!(entry[3].contains("/extract-nfsrootfs-"), "{nvram}");
    // The overlay came through the NFS root.
    assert!(board.path("state/lava-7/bin/lava-test-runner").is_file());
    assert!(board.path("state/power-off").exists(), "{log}");
}

#[test]
fn grub_efi_job_selects_grub_in_the_uefi_menu_and_types_its_commands() {
    if !prerequisites() {
        return;
    }
    let board = Board::new(&[GRUB_ENTRY]);
    std::fs::write(board.path("tftp/grubaa64.efi"), b"not really GRUB\n").unwrap();
    let (code, log, _) = board.run("grub-efi-job.yaml", "", "");
    let found = results(&log);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        has(&found, "0_smoke", "grub-echo", "pass"),
        "{found:?}\n{log}"
    );
    assert!(has(&found, "0_smoke", "grub-false", "fail"), "{found:?}");
    assert_ended(
        &log,
        &[
            "bootloader-overlay",
            "connect-device",
            "reset-device",
            "uefi-menu-interrupt",
            "grub-efi-menu-selector",
            "bootloader-interrupt",
            "bootloader-commands",
            "auto-login-action",
            "lava-test-shell",
        ],
    );
    assert!(log.contains("Selecting option 1"), "{log}");
    // No ramdisk deployed: its GRUB line is dropped; the NFS root substituted.
    assert!(
        log.contains("- linux (tftp,10.0.2.2)/7/tftp-deploy-1/kernel/Image "),
        "{log}"
    );
    assert!(!log.contains("- initrd"), "{log}");
    assert!(log.contains("- boot\""), "{log}");
    assert!(board.path("state/lava-7/bin/lava-test-runner").is_file());
}

#[test]
fn a_menu_entry_the_board_does_not_show_is_no_selection() {
    if !prerequisites() {
        return;
    }
    // No entry of an earlier job: the sequence's "remove it" step finds nothing to select.
    let board = Board::new(&[GRUB_ENTRY]);
    let (code, log, result) = board.run("uefi-menu-job.yaml", "", "");
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("No selection was made"), "{log}");
    assert!(result.contains("error_type: Job"), "{result}");
    assert!(board.path("state/power-off").exists(), "{log}");
}

#[test]
fn a_board_that_never_counts_down_times_out_in_the_interrupt() {
    if !prerequisites() {
        return;
    }
    let board = Board::new(&[OLD_ENTRY]);
    let (code, log, _) = board.run(
        "uefi-menu-job.yaml",
        " --hang",
        "  actions:\n    uefi-menu-interrupt: {seconds: 3}\n",
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("uefi-menu-interrupt timed out after"), "{log}");
    assert!(board.path("state/power-off").exists());
}
