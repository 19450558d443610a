//! The board rig proven with LAVA's own dispatcher: `fixtures/board/uboot-ramdisk.yaml` (a
//! LAVA job for a U-Boot board: TFTP deploy, `u-boot` boot with the `ramdisk` commands, an
//! inline test definition with passing and failing cases) runs to Complete under Debian's
//! `/usr/bin/lava-run` 2023.01 on the rig's rendered device file, and gives the result set
//! recorded in `common::board::RAMDISK_CASES` (which `e2e_board.rs` holds our `lava-run`
//! to). The point is the rig: a board that LAVA itself drives like a lab's.
//!
//! `fixtures/board/uboot-sd.yaml` (the ramdisk writes the board's SD card with `dd-image`,
//! `deploy: to: sd`, and its tests read the card back) completes under LAVA too, with the
//! result set in `common::board::SD_CASES`, which `e2e_board.rs` holds ours to.
//!
//! `fixtures/board/uboot-flasher.yaml` (the dictionary's flasher writes the board's stick from
//! the worker, U-Boot boots it with the job's commands, the board fetches its overlay) completes
//! under LAVA with the result set in `common::board::FLASHER_CASES`, which `e2e_board.rs` holds
//! ours to.
//!
//! LAVA's log goes to stderr (run without `--url`), kept in a file and read for its results.
//! The rig comes from `cargo xtask test-board u-boot --prepare`; with `CI=true` it and LAVA
//! must be there, elsewhere the test says what is missing and skips.

use std::path::Path;
use std::time::Duration;

mod common;

use common::board::{Board, flasher_cases, ramdisk_cases, sd_cases};
use common::reference::{JobOnDevice, ResultSet, lava_installed, result_set, tail};

/// Bound on the whole run; the job's own timeout is 15 minutes.
const RUN_LIMIT: Duration = Duration::from_secs(16 * 60);

/// Runs `fixtures/board/<name>.yaml` under LAVA's `lava-run` on `device` (the board's own
/// device file when `None`) with job id `id`; asserts it exited 0 and returns its result set
/// and log.
fn run_lava_on_board(
    board: &Board,
    name: &str,
    device: Option<&Path>,
    id: u32,
) -> (ResultSet, String) {
    let scratch = tempfile::Builder::new()
        .prefix("lava-reference-board-")
        .tempdir()
        .unwrap();
    let job = board.job(name, scratch.path());
    let device = device.unwrap_or(&board.device);
    let run = JobOnDevice {
        job: &job,
        device,
        dispatcher: &board.dispatcher,
    };
    let (status, log) = run.run_lava(id, scratch.path(), RUN_LIMIT);
    assert!(
        status.success(),
        "LAVA's lava-run: {status}\n{}",
        tail(&log)
    );
    (result_set(&log), log)
}

#[test]
fn lava_runs_the_u_boot_ramdisk_job_on_the_board_rig() {
    if !lava_installed() {
        return;
    }
    let Some(board) = Board::up() else { return };
    let (results, log) =
        run_lava_on_board(&board, "uboot-ramdisk", None, std::process::id() * 10 + 3);
    eprintln!("LAVA's result set on the board: {results:#?}");
    assert_eq!(
        results.cases,
        ramdisk_cases("0_board-smoke"),
        "LAVA's cases on the board"
    );
    assert_eq!(results.job.as_deref(), Some("pass"), "{}", tail(&log));
    // LAVA powered the board on (through hard_reset) and off (finalize).
    board.assert_reset_then_powered_off();
}

#[test]
fn lava_writes_the_sd_card_on_the_board_rig() {
    if !lava_installed() {
        return;
    }
    let Some(board) = Board::up() else { return };
    board.blank_media();
    let (results, log) = run_lava_on_board(&board, "uboot-sd", None, std::process::id() * 10 + 4);
    assert_eq!(results.cases, sd_cases(), "LAVA's cases on the board");
    assert_eq!(results.job.as_deref(), Some("pass"), "{}", tail(&log));
}

#[test]
fn lava_flashes_the_stick_and_boots_it_on_the_board_rig() {
    if !lava_installed() {
        return;
    }
    let Some(board) = Board::up() else { return };
    board.blank_media();
    let scratch = tempfile::Builder::new()
        .prefix("lava-reference-board-")
        .tempdir()
        .unwrap();
    let device = board.flasher_device(scratch.path());
    let (results, log) = run_lava_on_board(
        &board,
        "uboot-flasher",
        Some(&device),
        std::process::id() * 10 + 5,
    );
    assert_eq!(results.cases, flasher_cases(), "LAVA's cases on the board");
    assert_eq!(results.job.as_deref(), Some("pass"), "{}", tail(&log));
    board.assert_reset_then_powered_off();
}
