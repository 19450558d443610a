//! End-to-end: `lava-run` on a fake U-Boot board (fixtures/uboot-fake: a bash U-Boot on a
//! pty, reset and powered off by files). A `to: tftp` deployment puts kernel, DTB and the
//! ramdisk (the overlay merged in, a U-Boot header added by `mkimage`) under the TFTP
//! root; `method: u-boot` resets the board, interrupts the autoboot, sends the substituted
//! commands (the board loads the files from the TFTP root), logs in and runs the test
//! shell; finalize powers the board off. A failing U-Boot command is LAVA's named
//! InfrastructureError, and a board that never shows its interrupt prompt times out.

mod common;

use common::{has, results, run_job_on_device};
use lava_test_support::ci::require_tool;
use lava_test_support::paths::workspace;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A board's files: state directory (under /tmp: the fake unpacks the overlay there by
/// its absolute path), TFTP root, images, output directory.
struct Board {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    /// More lines for the device dictionary (`{% set … %}`).
    device_lines: String,
    /// Text replacements in the job file (from, to).
    job_edits: Vec<(String, String)>,
}

impl Board {
    fn new() -> Board {
        let tmp = tempfile::Builder::new()
            .prefix("lava-rs-uboot-")
            .tempdir_in("/tmp")
            .unwrap();
        let root = tmp.path().to_path_buf();
        for dir in ["state", "tftp", "images", "www/tmp"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        Board {
            _tmp: tmp,
            root,
            device_lines: String::new(),
            job_edits: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Kernel, DTB and a gzip newc ramdisk holding one file under the state directory.
    fn write_images(&self) {
        let images = self.path("images");
        std::fs::write(images.join("Image"), b"not really an arm64 kernel\n").unwrap();
        std::fs::write(images.join("board.dtb"), b"\xd0\x0d\xfe\xedfake dtb\n").unwrap();
        let marker = self.path("state/from-ramdisk");
        let src = self.path("ramdisk-src");
        let inside = src.join(marker.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::write(&inside, b"ramdisk member\n").unwrap();
        let relative = marker.strip_prefix("/").unwrap().display().to_string();
        let script = format!(
            "cd '{}' && printf '%s\\n' '{relative}' | cpio --quiet -o -H newc | gzip -c > '{}'",
            src.display(),
            images.join("ramdisk.cpio.gz").display()
        );
        let status = Command::new("sh").args(["-c", &script]).status().unwrap();
        assert!(status.success());
    }

    /// The device dictionary and the dispatcher configuration (TFTP root, scratch, the
    /// worker's address).
    fn write_config(
        &self,
        fake_args: &str,
        ramdisk_format: &str,
        extra_dispatcher: &str,
    ) -> (PathBuf, PathBuf) {
        let device = self.path("uboot-fake01.jinja2");
        std::fs::write(
            &device,
            format!(
                "{{% extends 'uboot-fake.jinja2' %}}\n\
                 {{% set state_dir = '{state}' %}}\n\
                 {{% set tftp_dir = '{tftp}' %}}\n\
                 {{% set fake_uboot = '{fake}' %}}\n\
                 {{% set fake_args = '{fake_args}' %}}\n\
                 {{% set uboot_ramdisk_format = '{ramdisk_format}' %}}\n\
                 {{% set boot_character_delay = 1 %}}\n{device_lines}",
                device_lines = self.device_lines,
                state = self.path("state").display(),
                tftp = self.path("tftp").display(),
                fake = workspace()
                    .join("fixtures/uboot-fake/fake-uboot.sh")
                    .display(),
            ),
        )
        .unwrap();
        let dispatcher = self.path("dispatcher.yaml");
        std::fs::write(
            &dispatcher,
            format!(
                "dispatcher_ip: 10.0.2.2\ntftp_dir: {}\n{extra_dispatcher}",
                self.path("tftp").display(),
            ),
        )
        .unwrap();
        (device, dispatcher)
    }

    fn job(&self, name: &str, timeouts: &str) -> PathBuf {
        let mut text =
            std::fs::read_to_string(workspace().join("fixtures/uboot-fake").join(name)).unwrap();
        for (from, to) in &self.job_edits {
            assert!(text.contains(from.as_str()), "{from} is not in {name}");
            text = text.replace(from.as_str(), to);
        }
        let text = text
            .replace("IMAGES", &self.path("images").display().to_string())
            .replace(
                "  connection: {seconds: 30}\n",
                &format!("  connection: {{seconds: 30}}\n{timeouts}"),
            );
        let job = self.path("job.yaml");
        std::fs::write(&job, text).unwrap();
        job
    }

    /// Runs the job; returns (exit code, logs.yaml text, result.yaml text).
    fn run(&self, fake_args: &str, ramdisk_format: &str) -> (Option<i32>, String, String) {
        self.run_with("ramdisk-job.yaml", fake_args, ramdisk_format, "")
    }

    /// [`Board::run`] with more job `timeouts` (YAML lines under `timeouts:`).
    fn run_with(
        &self,
        job: &str,
        fake_args: &str,
        ramdisk_format: &str,
        timeouts: &str,
    ) -> (Option<i32>, String, String) {
        self.run_full(job, fake_args, ramdisk_format, timeouts, "")
    }

    /// [`Board::run_with`] with more dispatcher configuration lines.
    fn run_full(
        &self,
        job: &str,
        fake_args: &str,
        ramdisk_format: &str,
        timeouts: &str,
        extra_dispatcher: &str,
    ) -> (Option<i32>, String, String) {
        self.write_images();
        let scratch = format!("tmp_dir: {}\n", self.path("www/tmp").display());
        let (device, dispatcher) =
            self.write_config(fake_args, ramdisk_format, &(scratch + extra_dispatcher));
        let job = self.job(job, timeouts);
        run_job_on_device(
            &self.path("output"),
            &device,
            &workspace().join("fixtures/uboot-fake/device-types"),
            &dispatcher,
            &job,
        )
    }
}

fn prerequisites() -> bool {
    require_tool("in.tftpd", "tftpd-hpa")
        && require_tool("mkimage", "u-boot-tools")
        && require_tool("cpio", "cpio")
        && require_tool("bash", "bash")
}

/// Asserts the job ended with exit code 0 and recorded each (definition, case, result);
/// returns every result it recorded.
fn assert_passed_with(
    code: Option<i32>,
    log: &str,
    expected: &[(&str, &str, &str)],
) -> Vec<(String, String, String)> {
    assert_eq!(code, Some(0), "{log}");
    let found = results(log);
    for (definition, case, outcome) in expected {
        assert!(
            has(&found, definition, case, outcome),
            "{definition} {case} {outcome}: {found:?}\n{log}"
        );
    }
    found
}

fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn tftp_uboot_ramdisk_job_runs_the_test_shell_on_the_board() {
    if !prerequisites() {
        return;
    }
    let board = Board::new();
    let (code, log, _) = board.run("", "u-boot");
    let found = assert_passed_with(
        code,
        &log,
        &[
            ("0_smoke", "board-echo", "pass"),
            ("0_smoke", "board-false", "fail"),
        ],
    );
    for action in [
        "tftp-deploy",
        "uboot-prepare-kernel",
        "compress-ramdisk",
        "bootloader-overlay",
        "bootloader-interrupt",
        "bootloader-commands",
        "auto-login-action",
        "power-off",
    ] {
        let ended = lines_with(&log, "\"msg\": \"end: ")
            .iter()
            .any(|l| l.contains(&format!(" {action} (")));
        assert!(ended, "{action} did not end\n{log}");
    }
    assert!(
        has(&found, "lava", "bootloader-overlay", "pass"),
        "{found:?}"
    );
    assert!(has(&found, "lava", "pdu-reboot", "pass"), "{found:?}");
    assert!(has(&found, "lava", "power-off", "pass"), "{found:?}");
    // The commands as U-Boot received them: files named relative to the TFTP root, in
    // the per-job directory; booti with the ramdisk's address (it has a U-Boot header).
    let suffix = "7/tftp-deploy-1";
    for command in [
        "- setenv serverip 10.0.2.2",
        &format!("- tftp 0x80000000 {suffix}/kernel/Image"),
        &format!("- tftp 0x82000000 {suffix}/ramdisk/ramdisk.cpio.gz.uboot"),
        &format!("- tftp 0x81000000 {suffix}/dtb/board.dtb"),
        "- booti 0x80000000 0x82000000 0x81000000",
    ] {
        assert!(log.contains(command), "{command}\n{log}");
    }
    assert!(!log.contains("tftp {TEE_ADDR}") && !log.contains("- tftp 0x83000000"));
    assert!(log.contains("Bytes transferred"), "{log}");
    // The ramdisk the board loaded: a legacy U-Boot image of the job's ramdisk with the
    // overlay merged in (the fake unpacked both under its state directory).
    let loaded = std::fs::read(board.path("state/loaded/0x82000000")).unwrap();
    assert_eq!(
        &loaded[..4],
        &[0x27, 0x05, 0x19, 0x56],
        "U-Boot image magic"
    );
    assert!(board.path("state/from-ramdisk").is_file());
    assert!(board.path("state/lava-7/bin/lava-test-runner").is_file());
    // Finalize powered the board off; cleanup removed the job's TFTP directory.
    assert!(board.path("state/power-off").exists(), "{log}");
    assert!(
        !board.path("tftp/7").exists(),
        "the job's TFTP directory is removed"
    );
    // As LAVA: after finalize, before the scratch directory.
    let position = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle}\n{log}"))
    };
    assert!(position("end: 4 finalize") < position("Override tmp directory removed"));
    assert!(position("Override tmp directory removed") < position("Root tmp directory removed"));
}

#[test]
fn the_feedback_window_is_read_while_a_slow_power_off_runs() {
    if !prerequisites() {
        return;
    }
    // A PDU taking 3 s to power the board off, and read-feedback's default 1 s window:
    // finalize listens to the console while the power-off runs, so read-feedback has no
    // window left to wait out afterwards (LAVA listens 1 s more after the power-off).
    let mut board = Board::new();
    board.device_lines = "{% set power_off_seconds = 3 %}\n".to_string();
    let (code, log, _) = board.run("", "u-boot");
    assert_eq!(code, Some(0), "{log}");
    assert!(board.path("state/power-off").exists(), "{log}");
    let ended = |action: &str| -> f64 {
        let line = lines_with(&log, "\"msg\": \"end: ")
            .into_iter()
            .find(|l| l.contains(&format!(" {action} (")))
            .unwrap_or_else(|| panic!("{action} did not end\n{log}"));
        let duration = line
            .split("duration ")
            .nth(1)
            .and_then(|d| d.split(')').next())
            .unwrap_or_else(|| panic!("no duration in {line}"));
        duration
            .split(':')
            .try_fold(0.0, |total, part| {
                part.parse::<f64>().map(|p| total * 60.0 + p)
            })
            .unwrap_or_else(|e| panic!("{duration}: {e}"))
    };
    assert!(ended("power-off") >= 3.0, "{log}");
    assert!(
        ended("read-feedback") < 1.0,
        "read-feedback waited after the power-off\n{log}"
    );
}

#[test]
fn the_rebuilt_ramdisk_keeps_the_jobs_compression() {
    if !prerequisites() || !require_tool("xz", "xz-utils") {
        return;
    }
    // An xz ramdisk: unpacked, the overlay added, compressed again with xz and named as
    // LAVA names it (ramdisk.cpio.xz, then .uboot with the header).
    let mut board = Board::new();
    board.job_edits = vec![
        ("ramdisk.cpio.gz".into(), "ramdisk.cpio.xz".into()),
        ("compression: gz".into(), "compression: xz".into()),
    ];
    board.write_images();
    let images = board.path("images");
    let status = Command::new("sh")
        .arg("-c")
        .arg("gzip -dc ramdisk.cpio.gz | xz -T1 --check=crc32 > ramdisk.cpio.xz")
        .current_dir(&images)
        .status()
        .unwrap();
    assert!(status.success());
    let (code, log, _) = board.run("", "u-boot");
    assert_passed_with(code, &log, &[("0_smoke", "board-echo", "pass")]);
    assert!(
        log.contains("- tftp 0x82000000 7/tftp-deploy-1/ramdisk/ramdisk.cpio.xz.uboot"),
        "{log}"
    );
    let loaded = std::fs::read(board.path("state/loaded/0x82000000")).unwrap();
    assert_eq!(&loaded[64..70], b"\xfd7zXZ\0", "xz after the U-Boot header");
    assert!(board.path("state/lava-7/bin/lava-test-runner").is_file());
}

#[test]
fn a_failing_uboot_command_is_the_named_bootloader_error() {
    if !prerequisites() {
        return;
    }
    let board = Board::new();
    let (code, log, result) = board.run(" --fail tftp", "u-boot");
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("matched a bootloader error message: 'File not found' (7)"),
        "{log}"
    );
    assert!(result.contains("error_type: Infrastructure"), "{result}");
    // The board is powered off in finalize.
    assert!(board.path("state/power-off").exists(), "{log}");
    assert!(!board.path("tftp/7").exists());
}

#[test]
fn a_board_that_hangs_before_the_interrupt_prompt_times_out() {
    if !prerequisites() {
        return;
    }
    let board = Board::new();
    let (code, log, _) = board.run_with(
        "ramdisk-job.yaml",
        " --hang",
        "raw",
        "  actions:\n    bootloader-interrupt: {seconds: 5}\n",
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("bootloader-interrupt timed out after"),
        "{log}"
    );
    assert!(board.path("state/power-off").exists());
}

#[test]
fn raw_ramdisks_are_passed_without_an_address() {
    if !prerequisites() {
        return;
    }
    let board = Board::new();
    let (_, log, _) = board.run(" --fail booti", "raw");
    // No U-Boot header: LAVA passes "-" for the ramdisk to booti, and keeps the
    // compressed ramdisk's name.
    assert!(log.contains("- booti 0x80000000 - 0x81000000"), "{log}");
    assert!(log.contains("ramdisk/ramdisk.cpio.gz\""), "{log}");
    assert!(
        log.contains("matched a bootloader error message: 'Bad Linux ARM64 Image magic!' (8)"),
        "{log}"
    );
}

#[test]
fn interactive_tests_at_the_uboot_prompt() {
    if !prerequisites() {
        return;
    }
    let board = Board::new();
    let (code, log, _) = board.run_with("interactive-job.yaml", "", "u-boot", "");
    assert_passed_with(
        code,
        &log,
        &[
            ("0_uboot-env", "setenv", "pass"),
            ("0_uboot-env", "printenv", "pass"),
            ("0_uboot-env", "substituted", "pass"),
            ("0_uboot-env", "tftp-missing", "fail"),
            ("0_uboot-env", "dhcp", "pass"),
            ("lava", "0_uboot-env", "pass"),
        ],
    );
    assert!(log.contains("Sending 'setenv board fake-7'"), "{log}");
    assert!(
        log.contains("Sending 'echo seen fake-7 from 10.0.2.2'"),
        "{log}"
    );
    assert!(board.path("state/power-off").exists());
}

#[test]
fn monitors_read_the_kernel_self_test() {
    if !prerequisites() {
        return;
    }
    let board = Board::new();
    let (code, log, _) = board.run_with("monitor-job.yaml", "", "u-boot", "");
    assert_passed_with(
        code,
        &log,
        &[
            ("fake-selftest", "crc32", "pass"),
            ("fake-selftest", "dma", "fail"),
            ("lava", "lava-test-monitor", "pass"),
        ],
    );
    assert!(log.contains("ok: end string found, lava test monitoring stopped"));
}

#[test]
fn the_board_fetches_the_overlay_over_http() {
    if !prerequisites() || !require_tool("curl", "curl") || !require_tool("python3", "python3") {
        return;
    }
    let board = Board::new();
    // The lab's web server: the dispatcher's scratch root published as /tmp.
    let port = lava_test_support::paths::free_loopback_port();
    let mut server = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .arg("--directory")
        .arg(board.path("www"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (code, log, _) = board.run_full(
        "transfer-job.yaml",
        "",
        "u-boot",
        "",
        &format!("dispatcher_http_ip: 127.0.0.1:{port}\n"),
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_passed_with(code, &log, &[("0_transferred", "transferred-echo", "pass")]);
    assert!(
        log.contains(&format!(
            "curl -sSfO http://127.0.0.1:{port}/tmp/7/compress-overlay-"
        )),
        "{log}"
    );
}

#[test]
fn a_second_console_from_the_device_connections() {
    if !prerequisites() {
        return;
    }
    let board = Board::new();
    let (code, log, _) = board.run_with("second-console-job.yaml", "", "u-boot", "");
    assert_passed_with(code, &log, &[("0_second-console", "arithmetic", "pass")]);
    assert!(
        log.contains("[second] connect-shell Connecting to shell using '/bin/sh -c"),
        "{log}"
    );
}
