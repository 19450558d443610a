//! Our `lava-run` on the U-Boot board rig (`cargo xtask test-board u-boot --prepare`): the
//! jobs of `fixtures/board/`, each a LAVA job for a U-Boot board, run end to end: TFTP deploy,
//! U-Boot interrupted and driven over ser2net's telnet console, the board powered by the rig's
//! scripts, tests on the board.
//!
//! - the ramdisk job gives the result set LAVA 2023.01 gives on the same rig
//!   (`lava_reference_board.rs` holds LAVA to `RAMDISK_CASES`, this test holds us to it);
//! - the NFS job boots into its NFS root (the rig's nfs-ganesha) with the same cases, plus one
//!   checking the root is NFS (LAVA 2023.01 passes the same job on the rig);
//! - `interactive` at the U-Boot prompt, with a passing and a failing case;
//! - `monitors`: the board's boot checks read from the console;
//! - a failing U-Boot command ends the boot with LAVA's named error, and finalize powers the
//!   board off (the rig's power log says so);
//! - a hung board (no output after power-on) is recovered by the boot's `failure_retry`
//!   through the device's `hard_reset` command;
//! - the NBD job boots into its root on `/dev/nbd0`, served by the job's nbd-server on a
//!   port from the dispatcher's range, fetches its overlay over http (`transfer_overlay`)
//!   and runs the same cases, and no nbd-server of the job is left after it;
//! - removable media: from the ramdisk, `deploy: to: usb` (dd-image) writes a disk image to
//!   the board's blank USB stick, U-Boot boots kernel, ramdisk and DTB from it
//!   (`commands: usb`) and the tests run on the stick's root; `deploy: to: sata` does the
//!   same with the board's SATA disk (`commands: sata`: `scsi scan`, `load scsi 0:1 …`);
//!   `deploy: to: sd` writes the board's SD card, which the ramdisk then reads (the rig's
//!   U-Boot has no MMC support: no boot from the card);
//! - a flasher (`deploy: to: flasher`): the device dictionary's flasher command writes the
//!   downloaded image onto the board's stick from the worker, U-Boot boots it with the job's
//!   own commands and the board fetches its overlay (`transfer_overlay`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::board::{Board, RAMDISK_CASES, flasher_cases, ramdisk_cases, sd_cases};
use common::reference::{JobOnDevice, ResultSet, result_set, tail};
use serde_yaml::Value;

/// Bound on one whole run (the jobs' own timeouts are at most 15 minutes).
const RUN_LIMIT: Duration = Duration::from_secs(16 * 60);

/// What a run of our `lava-run` left: exit status, log text, result set.
struct Run {
    success: bool,
    log: String,
    results: ResultSet,
}

impl Run {
    /// The `lava`/`job` record's `msg`.
    fn job_record(&self) -> Value {
        self.log
            .lines()
            .filter(|l| l.contains("\"lvl\": \"results\"") && l.contains("\"case\": \"job\""))
            .filter_map(|l| serde_yaml::from_str::<Value>(l.trim_start_matches("- ")).ok())
            .filter_map(|v| v.get("msg").cloned())
            .find(|msg| msg.get("definition").and_then(Value::as_str) == Some("lava"))
            .unwrap_or(Value::Null)
    }

    fn cases_of(&self, suite: &str) -> Vec<(String, String)> {
        self.results
            .cases
            .iter()
            .filter(|c| c.suite == suite)
            .map(|c| (c.case.clone(), c.result.clone()))
            .collect()
    }

    /// The run succeeded, suite `suite` holds exactly the `expected` (case, result) pairs
    /// (in any order) and the job passed; failures show the log's tail.
    fn assert_passed_with(&self, suite: &str, expected: &[(&str, &str)]) {
        assert!(self.success, "our lava-run failed\n{}", tail(&self.log));
        let mut expected: Vec<(String, String)> = expected
            .iter()
            .map(|(case, result)| (case.to_string(), result.to_string()))
            .collect();
        expected.sort();
        let mut cases = self.cases_of(suite);
        cases.sort();
        assert_eq!(cases, expected, "{}", tail(&self.log));
        assert_eq!(
            self.results.job.as_deref(),
            Some("pass"),
            "{}",
            tail(&self.log)
        );
    }
}

/// Run `fixtures/board/<name>.yaml` on the board with our `lava-run`.
fn run(board: &Board, name: &str, scratch: &Path) -> Run {
    run_with(board, name, scratch, &board.dispatcher)
}

/// The job id of `fixtures/board/<name>.yaml`'s run in this test process.
fn job_id(name: &str) -> String {
    format!("{}", std::process::id() * 100 + name.len() as u32)
}

/// [`run`] with another dispatcher configuration.
fn run_with(board: &Board, name: &str, scratch: &Path, dispatcher: &Path) -> Run {
    run_on(board, name, scratch, &board.device, dispatcher)
}

/// [`run`] with another device file and dispatcher configuration.
fn run_on(board: &Board, name: &str, scratch: &Path, device: &Path, dispatcher: &Path) -> Run {
    let job = board.job(name, scratch);
    let job_id = job_id(name);
    let run = JobOnDevice {
        job: &job,
        device,
        dispatcher,
    };
    let (status, log) = run.run_ours(&job_id, &scratch.join(format!("out-{name}")), RUN_LIMIT);
    Run {
        success: status.success(),
        results: result_set(&log),
        log,
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("e2e-board-")
        .tempdir()
        .unwrap()
}

#[test]
fn ramdisk_job_gives_lavas_result_set() {
    let Some(board) = Board::up() else { return };
    let dir = scratch();
    let run = run(&board, "uboot-ramdisk", dir.path());
    assert!(run.success, "our lava-run failed\n{}", tail(&run.log));
    assert_eq!(
        run.results.cases,
        ramdisk_cases("0_board-smoke"),
        "{}",
        tail(&run.log)
    );
    assert_eq!(
        run.results.job.as_deref(),
        Some("pass"),
        "{}",
        tail(&run.log)
    );
    let events = board.power_events();
    assert_eq!(
        events.last().map(String::as_str),
        Some("power-off"),
        "finalize powers the board off: {events:?}"
    );
}

#[test]
fn nfs_job_runs_its_tests_on_the_nfs_root() {
    let Some(board) = Board::up() else { return };
    let dir = scratch();
    let run = run(&board, "uboot-nfs", dir.path());
    let expected: Vec<(&str, &str)> = RAMDISK_CASES
        .iter()
        .map(|(case, result, ..)| (*case, *result))
        .chain([("root-on-nfs", "pass")])
        .collect();
    run.assert_passed_with("0_board-nfs", &expected);
}

#[test]
fn interactive_at_the_u_boot_prompt() {
    let Some(board) = Board::up() else { return };
    let dir = scratch();
    let run = run(&board, "uboot-interactive", dir.path());
    assert!(run.success, "our lava-run failed\n{}", tail(&run.log));
    assert_eq!(
        run.cases_of("0_u-boot-shell"),
        [
            ("board-name".to_string(), "pass".to_string()),
            ("bootm-no-image".to_string(), "fail".to_string()),
            ("version".to_string(), "pass".to_string()),
        ],
        "{}",
        tail(&run.log)
    );
    assert_eq!(
        run.results.job.as_deref(),
        Some("pass"),
        "{}",
        tail(&run.log)
    );
}

#[test]
fn monitors_read_the_boards_boot_checks() {
    let Some(board) = Board::up() else { return };
    let dir = scratch();
    let run = run(&board, "uboot-monitors", dir.path());
    assert!(run.success, "our lava-run failed\n{}", tail(&run.log));
    let mut cases = run.cases_of("board-checks");
    cases.sort();
    let expected: Vec<(String, String)> = ["devpts", "devtmpfs", "proc", "sysfs", "tmpfs"]
        .iter()
        .map(|c| (c.to_string(), "pass".to_string()))
        .collect();
    assert_eq!(cases, expected, "{}", tail(&run.log));
    assert_eq!(
        run.results.job.as_deref(),
        Some("pass"),
        "{}",
        tail(&run.log)
    );
}

#[test]
fn a_failing_u_boot_command_is_named_and_finalize_powers_off() {
    let Some(board) = Board::up() else { return };
    let dir = scratch();
    let run = run(&board, "uboot-command-fails", dir.path());
    assert!(!run.success, "the job should fail\n{}", tail(&run.log));
    let job = run.job_record();
    // LAVA 2023.01 on the same rig: "matched a bootloader error message: 'File not found' (7)",
    // an InfrastructureError.
    let error = job.get("error_msg").and_then(Value::as_str).unwrap_or("");
    assert!(
        error.contains("matched a bootloader error message: 'File not found'"),
        "error_msg: {error:?}\n{}",
        tail(&run.log)
    );
    assert_eq!(
        job.get("error_type").and_then(Value::as_str),
        Some("Infrastructure")
    );
    let events = board.power_events();
    assert_eq!(
        events.last().map(String::as_str),
        Some("power-off"),
        "finalize ran the power-off script: {events:?}"
    );
    assert!(!board.powered(), "the board is still powered");
}

#[test]
fn a_hung_board_is_recovered_by_the_boot_retry() {
    let Some(board) = Board::up() else { return };
    let status = Command::new(board.bin("board-fault"))
        .arg("hang")
        .status()
        .unwrap();
    assert!(status.success());
    let dir = scratch();
    let run = run(&board, "uboot-hung-retry", dir.path());
    assert!(run.success, "our lava-run failed\n{}", tail(&run.log));
    assert_eq!(
        run.results.job.as_deref(),
        Some("pass"),
        "{}",
        tail(&run.log)
    );
    assert!(
        run.cases_of("0_board-smoke")
            .contains(&("always-pass".into(), "pass".into())),
        "{}",
        tail(&run.log)
    );
    let events = board.power_events();
    let hung = events
        .iter()
        .position(|e| e.contains("hung board"))
        .unwrap_or_else(|| panic!("no hung boot: {events:?}"));
    assert!(
        events[hung..].iter().filter(|e| *e == "hard-reset").count() >= 1,
        "the retry hard-reset the board: {events:?}"
    );
}

/// The NBD job's ports (this test's range, 22350–22399): nbd-server's are drawn from
/// `[NBD_PORT_MIN, NBD_PORT_MAX)`, the lab's web server listens on `WEB_PORT`.
const NBD_PORT_MIN: u16 = 22350;
const NBD_PORT_MAX: u16 = 22390;
const WEB_PORT: u16 = 22399;

/// The lab's web server for `transfer_overlay`: the dispatcher's scratch root published as
/// `/tmp` (LAVA's Apache configuration), on loopback, which the board reaches as 10.0.2.2.
/// Ended when dropped.
struct WebServer(std::process::Child);

impl WebServer {
    fn start(dir: &Path) -> WebServer {
        let www = dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::os::unix::fs::symlink(lava_pipeline::scratch::usable_root(), www.join("tmp")).unwrap();
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(WEB_PORT.to_string())
            .arg("--directory")
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python3 -m http.server");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", WEB_PORT)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the web server did not listen on port {WEB_PORT}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        WebServer(child)
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn nbd_job_runs_its_tests_on_the_nbd_root() {
    let Some(board) = Board::up() else { return };
    if !lava_test_support::ci::require_tool(
        "nbd-server",
        "scripts/install-test-deps.sh installs it",
    ) {
        return;
    }
    if !board.has_artefact("nbdroot") {
        lava_test_support::ci::skip_or_fail(
            "the board rig has no NBD artefacts (run `cargo xtask test-board u-boot --prepare`)",
        );
        return;
    }
    let dir = scratch();
    let _web = WebServer::start(dir.path());
    let dispatcher = dir.path().join("dispatcher.yaml");
    // The rig's own dispatcher_http_ip (its web server for removable media) gives way to
    // this test's.
    let mut config: String = std::fs::read_to_string(&board.dispatcher)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("dispatcher_http_ip:"))
        .map(|l| format!("{l}\n"))
        .collect();
    config.push_str(&format!(
        "nbd_server_port_min: {NBD_PORT_MIN}\nnbd_server_port_max: {NBD_PORT_MAX}\n\
         dispatcher_http_ip: 10.0.2.2:{WEB_PORT}\n"
    ));
    std::fs::write(&dispatcher, config).unwrap();
    let run = run_with(&board, "uboot-nbd", dir.path(), &dispatcher);
    let servers = lava_test_support::process::processes_with(&format!(
        "/{}/nbd-server-",
        job_id("uboot-nbd")
    ));
    assert!(servers.is_empty(), "nbd-server left running: {servers:?}");
    let expected: Vec<(&str, &str)> = RAMDISK_CASES
        .iter()
        .map(|(case, result, ..)| (*case, *result))
        .chain([("root-on-nbd", "pass")])
        .collect();
    run.assert_passed_with("0_board-nbd", &expected);
    // The port came from the dispatcher's range and reached the kernel's command line.
    let port: u16 = run
        .log
        .lines()
        .find_map(|l| l.split("Set_port ").nth(1))
        .and_then(|rest| rest.split('"').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no Set_port line\n{}", tail(&run.log)));
    assert!((NBD_PORT_MIN..NBD_PORT_MAX).contains(&port), "port {port}");
    assert!(
        run.log
            .contains(&format!(" nbd.port={port} root=/dev/ram0")),
        "{}",
        tail(&run.log)
    );
    assert!(
        run.log.contains(&format!("clean NBD port {port}")),
        "finalize ended the server\n{}",
        tail(&run.log)
    );
}

#[test]
fn usb_job_writes_the_stick_and_boots_from_it() {
    let Some(board) = Board::up() else { return };
    board.blank_media();
    let dir = scratch();
    let run = run(&board, "uboot-usb", dir.path());
    run.assert_passed_with(
        "0_board-usb",
        &[
            ("always-pass", "pass"),
            ("always-fail", "fail"),
            ("root-on-stick", "pass"),
            ("root-is-ext2", "pass"),
            ("stick-by-id", "pass"),
            ("declared-fail", "fail"),
        ],
    );
    // The board's own words, in order: dd's statistics for a non-empty write, then U-Boot
    // reading the kernel from the stick, then the kernel booting the stick's root.
    let target = target_lines(&run.log);
    let written = after(&target, 0, "dd statistics", &run.log, &|l| {
        l.ends_with(" records out") && !l.starts_with("0+0 ")
    });
    let loaded = after(&target, written, "load from the stick", &run.log, &|l| {
        l.starts_with("=> load usb 0:1 ") && l.ends_with(" /boot/Image")
    });
    after(
        &target,
        loaded,
        "bytes read from the stick",
        &run.log,
        &|l| l.contains(" bytes read in ") && !l.starts_with("0 "),
    );
    after(
        &target,
        loaded,
        "the stick's root mounted",
        &run.log,
        &|l| l.starts_with("lava-rs board: root LABEL=lava-rs-media (/dev/sd"),
    );
}

#[test]
fn sata_job_writes_the_disk_and_boots_from_it() {
    let Some(board) = Board::up() else { return };
    board.blank_media();
    let dir = scratch();
    let run = run(&board, "uboot-sata", dir.path());
    run.assert_passed_with(
        "0_board-sata",
        &[
            ("always-pass", "pass"),
            ("always-fail", "fail"),
            ("root-on-sata-disk", "pass"),
            ("root-is-ext2", "pass"),
            ("sata-by-id", "pass"),
            ("declared-fail", "fail"),
        ],
    );
    // In order: dd wrote the disk; U-Boot's AHCI scan found it and U-Boot read the kernel
    // from its first partition; the kernel booted the disk's root.
    let target = target_lines(&run.log);
    let written = after(&target, 0, "dd statistics", &run.log, &|l| {
        l.ends_with(" records out") && !l.starts_with("0+0 ")
    });
    let scanned = after(&target, written, "scsi scan", &run.log, &|l| {
        l == "=> scsi scan"
    });
    after(
        &target,
        scanned,
        "the disk on the AHCI bus",
        &run.log,
        &|l| l.contains("Device 0: (0:0) Vendor: ATA Prod.: QEMU HARDDISK"),
    );
    let loaded = after(&target, scanned, "load from the disk", &run.log, &|l| {
        l.starts_with("=> load scsi 0:1 ") && l.ends_with(" /boot/Image")
    });
    after(
        &target,
        loaded,
        "bytes read from the disk",
        &run.log,
        &|l| l.contains(" bytes read in ") && !l.starts_with("0 "),
    );
    after(&target, loaded, "the disk's root mounted", &run.log, &|l| {
        l.starts_with("lava-rs board: root LABEL=lava-rs-media (/dev/sd")
    });
}

#[test]
fn sd_job_writes_the_card_the_ramdisk_reads() {
    let Some(board) = Board::up() else { return };
    board.blank_media();
    let dir = scratch();
    let run = run(&board, "uboot-sd", dir.path());
    assert!(run.success, "our lava-run failed\n{}", tail(&run.log));
    // The result set LAVA 2023.01 gives on the rig (lava_reference_board.rs).
    assert_eq!(run.results.cases, sd_cases(), "{}", tail(&run.log));
    assert_eq!(
        run.results.job.as_deref(),
        Some("pass"),
        "{}",
        tail(&run.log)
    );
    // dd-image wrote to the card's by-id name, and dd wrote something.
    let target = target_lines(&run.log);
    let sent = after(&target, 0, "the dd-image command", &run.log, &|l| {
        l.contains("| dd of='/dev/disk/by-id/mmc-QEMU!_0xdeadbeef' bs=4M")
    });
    after(&target, sent, "dd statistics", &run.log, &|l| {
        l.ends_with(" records out") && !l.starts_with("0+0 ")
    });
}

/// The board's console lines (`target` records) of a job's log, in order.
fn target_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("\"lvl\": \"target\""))
        .filter_map(|l| serde_yaml::from_str::<Value>(l.trim_start_matches("- ")).ok())
        .filter_map(|v| v.get("msg").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The index of the first of `target`'s lines from `from` on that `what` accepts; a failure
/// naming `name` (with the log's tail) when there is none.
fn after(
    target: &[String],
    from: usize,
    name: &str,
    log: &str,
    what: &dyn Fn(&str) -> bool,
) -> usize {
    from + target[from..]
        .iter()
        .position(|l| what(l))
        .unwrap_or_else(|| panic!("no {name} on the console\n{}", tail(log)))
}

#[test]
fn flasher_job_writes_the_stick_from_the_worker_and_boots_from_it() {
    let Some(board) = Board::up() else { return };
    board.blank_media();
    let dir = scratch();
    let device = board.flasher_device(dir.path());
    let run = run_on(
        &board,
        "uboot-flasher",
        dir.path(),
        &device,
        &board.dispatcher,
    );
    assert!(run.success, "our lava-run failed\n{}", tail(&run.log));
    assert_eq!(run.results.cases, flasher_cases(), "{}", tail(&run.log));
    assert_eq!(
        run.results.job.as_deref(),
        Some("pass"),
        "{}",
        tail(&run.log)
    );
    // The flasher ran on the worker with the downloaded, decompressed image, before the
    // board was powered on; then U-Boot loaded the kernel from the stick.
    let flashed = run
        .log
        .find("Calling: ['dd', 'if=image/")
        .unwrap_or_else(|| panic!("no flasher command in the log\n{}", tail(&run.log)));
    let loaded = run
        .log
        .find("load usb 0:1 ")
        .unwrap_or_else(|| panic!("no load from the stick\n{}", tail(&run.log)));
    assert!(flashed < loaded, "{}", tail(&run.log));
    board.assert_reset_then_powered_off();
}
