//! Our `lava-run` on the x86 PC rig (`cargo xtask test-board ipxe --prepare`): the LAVA jobs
//! `fixtures/board/ipxe-ramdisk.yaml` and `grub-ramdisk.yaml` run end to end, each with one
//! boot: TFTP deploy into LAVA's tftpd-hpa directory, the PC powered by the rig's scripts and
//! driven over ser2net's telnet console, the firmware interrupted (iPXE with Ctrl-B; GRUB,
//! chain-loaded by iPXE over PXE, at its menu with `c`), LAVA's `ipxe` or `grub` `ramdisk`
//! commands typed at its prompt (kernel and ramdisk fetched from the host's TFTP server), the
//! busybox ramdisk's shell, tests with passing and failing cases, finalize powering off.

use std::path::Path;
use std::time::Duration;

mod common;

use common::board::{Board, ramdisk_cases};
use common::reference::{JobOnDevice, result_set, tail};

/// Bound on one whole run (the jobs' own timeout is 15 minutes).
const RUN_LIMIT: Duration = Duration::from_secs(16 * 60);

/// Run `fixtures/board/<firmware>-ramdisk.yaml` on the PC booting through `firmware`, and
/// check what LAVA's job gives: the test cases (those of the U-Boot board's job, in suite
/// `0_pc-smoke`), the job passing, the firmware's prompt and the TFTP server in the log,
/// the PC powered off by finalize.
fn ramdisk_job(firmware: &str, prompt: &str, kernel_fetch: &str) {
    let Some(board) = Board::pc(firmware) else {
        return;
    };
    let scratch = tempfile::Builder::new()
        .prefix("e2e-pc-board-")
        .tempdir()
        .unwrap();
    let name = format!("{firmware}-ramdisk");
    let job = board.job(&name, scratch.path());
    let job_id = format!("{}", std::process::id() * 100 + firmware.len() as u32);
    let run = JobOnDevice {
        job: &job,
        device: &board.device,
        dispatcher: &board.dispatcher,
    };
    let (status, log) = run.run_ours(&job_id, &scratch.path().join("out"), RUN_LIMIT);
    assert!(status.success(), "our lava-run failed\n{}", tail(&log));
    let results = result_set(&log);
    assert_eq!(results.cases, ramdisk_cases("0_pc-smoke"), "{}", tail(&log));
    assert_eq!(results.job.as_deref(), Some("pass"), "{}", tail(&log));
    assert!(
        log.contains(prompt),
        "the commands were typed at {prompt:?}\n{}",
        tail(&log)
    );
    // The kernel came from the rig's tftpd-hpa at `dispatcher_ip`, not QEMU's 10.0.2.2.
    let dispatcher = std::fs::read_to_string(&board.dispatcher).unwrap();
    let server = dispatcher
        .lines()
        .find_map(|l| l.strip_prefix("dispatcher_ip: "))
        .expect("the rig's dispatcher_ip");
    let fetch = kernel_fetch.replace("SERVER", server);
    assert!(
        log.contains(&fetch),
        "the kernel was fetched with {fetch:?}\n{}",
        tail(&log)
    );
    let events = board.power_events();
    assert_eq!(
        events.last().map(String::as_str),
        Some("power-off"),
        "finalize powers the PC off: {events:?}"
    );
    assert!(!board.powered(), "the PC is still powered");
    assert_eq!(
        events.iter().filter(|e| *e == "hard-reset").count(),
        1,
        "one boot: {events:?}"
    );
    drop(board);
    assert!(
        !Path::new(&format!("/srv/tftp/{job_id}")).exists(),
        "the job's TFTP directory is removed"
    );
}

#[test]
fn ipxe_ramdisk_job_runs_its_tests() {
    ramdisk_job("ipxe", "iPXE> kernel tftp://", "tftp://SERVER/");
}

#[test]
fn grub_ramdisk_job_runs_its_tests() {
    ramdisk_job("grub", "grub> ", "linux (tftp,SERVER)/");
}
