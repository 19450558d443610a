//! The PC rig proven with LAVA's own dispatcher: `fixtures/board/ipxe-ramdisk.yaml` and
//! `grub-ramdisk.yaml` (the GRUB one with `--ignored`; LAVA jobs for a PC booting through iPXE or GRUB: TFTP deploy, the
//! `ramdisk` commands, an inline test definition with passing and failing cases) run to
//! Complete under Debian's `/usr/bin/lava-run` 2023.01 on the rig's rendered device files
//! and give the result set `e2e_pc_board.rs` holds our `lava-run` to (the U-Boot board's
//! `common::board::RAMDISK_CASES`, in suite `0_pc-smoke`).
//!
//! LAVA's log goes to stderr (run without `--url`), kept in a file and read for its results.
//! The rig comes from `cargo xtask test-board ipxe --prepare`; with `CI=true` it and LAVA
//! must be there, elsewhere the test says what is missing and skips.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::board::{Board, RAMDISK_CASES};
use common::reference::{LAVA_RUN, LAVA_WORK_DIR, TestCase, result_set, spawn, tail, wait};
use lava_test_support::ci::skip_or_fail;

/// Bound on the whole run; the job's own timeout is 15 minutes.
const RUN_LIMIT: Duration = Duration::from_secs(16 * 60);

fn lava_runs(firmware: &str) {
    if !Path::new(LAVA_RUN).is_file() {
        skip_or_fail(format!(
            "{LAVA_RUN} is missing (Debian's lava-dispatcher: scripts/install-test-deps.sh)"
        ));
        return;
    }
    let Some(board) = Board::pc(firmware) else {
        return;
    };
    let scratch = tempfile::Builder::new()
        .prefix("lava-reference-pc-board-")
        .tempdir()
        .unwrap();
    let job = board.job(&format!("{firmware}-ramdisk"), scratch.path());
    let job_id = std::process::id() * 10 + firmware.len() as u32;
    let log_path = scratch.path().join("lava-stderr.log");
    let mut lava = Command::new(LAVA_RUN);
    lava.arg("--job-id")
        .arg(job_id.to_string())
        .arg("--output-dir")
        .arg(scratch.path().join("lava"))
        .arg("--device")
        .arg(&board.device)
        .arg("--dispatcher")
        .arg(&board.dispatcher)
        .arg(&job)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let status = wait(spawn(lava, format!("{LAVA_WORK_DIR}/{job_id}/")), RUN_LIMIT);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "LAVA's lava-run: {status}\n{}",
        tail(&log)
    );
    let results = result_set(&log);
    let expected: Vec<TestCase> = RAMDISK_CASES
        .iter()
        .map(|(case, result, measurement, units)| TestCase {
            suite: "0_pc-smoke".into(),
            case: case.to_string(),
            result: result.to_string(),
            measurement: measurement.map(str::to_string),
            units: units.map(str::to_string),
        })
        .collect();
    assert_eq!(
        results.cases,
        expected,
        "LAVA's cases on the PC\n{}",
        tail(&log)
    );
    assert_eq!(results.job.as_deref(), Some("pass"), "{}", tail(&log));
    // LAVA powered the PC on (through hard_reset) and off (finalize).
    let events = board.power_events();
    assert!(
        events.iter().any(|e| e == "hard-reset")
            && events.last().map(String::as_str) == Some("power-off"),
        "power events: {events:?}"
    );
}

#[test]
fn lava_runs_the_ipxe_ramdisk_job_on_the_pc_rig() {
    lava_runs("ipxe");
}

/// Passes as the iPXE one does (about 75 s on 2 loaded cores), left out of `cargo test` by
/// default to keep the PC rig within its CI budget: `cargo test -p lava-dispatch --test
/// lava_reference_pc_board -- --ignored` runs it.
#[test]
#[ignore = "the CI budget: run with --ignored"]
fn lava_runs_the_grub_ramdisk_job_on_the_pc_rig() {
    lava_runs("grub");
}
