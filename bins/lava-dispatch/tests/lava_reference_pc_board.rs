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

use std::time::Duration;

mod common;

use common::board::{Board, ramdisk_cases};
use common::reference::{JobOnDevice, lava_installed, result_set, tail};

/// Bound on the whole run; the job's own timeout is 15 minutes.
const RUN_LIMIT: Duration = Duration::from_secs(16 * 60);

fn lava_runs(firmware: &str) {
    if !lava_installed() {
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
    let run = JobOnDevice {
        job: &job,
        device: &board.device,
        dispatcher: &board.dispatcher,
    };
    let job_id = std::process::id() * 10 + firmware.len() as u32;
    let (status, log) = run.run_lava(job_id, scratch.path(), RUN_LIMIT);
    assert!(
        status.success(),
        "LAVA's lava-run: {status}\n{}",
        tail(&log)
    );
    let results = result_set(&log);
    assert_eq!(
        results.cases,
        ramdisk_cases("0_pc-smoke"),
        "LAVA's cases on the PC\n{}",
        tail(&log)
    );
    assert_eq!(results.job.as_deref(), Some("pass"), "{}", tail(&log));
    // LAVA powered the PC on (through hard_reset) and off (finalize).
    board.assert_reset_then_powered_off();
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
