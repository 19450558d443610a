//! The reference runs: the embedded QEMU jobs on `fixtures/qemu/device.yaml` (unchanged)
//! under our `lava-run` and under Debian's LAVA `lava-run` (`/usr/bin/lava-run`, 2023.01)
//! must give the same result set: every test-suite case with its result, measurement and
//! units, and the `lava` suite's `job` result. The jobs: `target/test-system/qemu-smoke.yaml`
//! (kernel and ramdisk, the overlay on LAVA's overlay disk), `fixtures/qemu/
//! qemu-ramdisk-overlays.yaml` (`overlays: lava: true`: the overlay appended to the ramdisk)
//! `fixtures/qemu/qemu-disk-image.yaml` (a rootfs disk image attached, the overlay on its
//! own disk) and `fixtures/qemu/qemu-ext4-overlays.yaml` (`overlays: lava: true` on an ext4
//! root filesystem image: LAVA writes it with libguestfs, lava-rs with debugfs). One job
//! runs at a time (QEMU under TCG on a loaded machine).
//!
//! Where each dispatcher puts its results: ours writes `logs.yaml` to `--output-dir`. LAVA's,
//! run without `--url` (as here), writes only `description.yaml` and `result.yaml` there; its
//! log, one YAML flow mapping per line with the `lvl: results` records among them, goes to
//! stderr, which this test keeps in a file.
//!
//! LAVA builds the test overlay disk, and writes into an ext4 image, with libguestfs (not
//! needed for the ramdisk `overlays: lava: true` job), which needs a kernel for its appliance;
//! `cargo xtask test-system` prepares one and writes the environment for it to
//! `target/test-system/libguestfs.env`. With `CI=true` every prerequisite must be present;
//! elsewhere the test says which one is missing and skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::reference::{
    LAVA_RUN, LAVA_WORK_DIR, ResultSet, TestCase, action_extra, info_line, result_set, spawn, tail,
    wait,
};
use lava_test_support::ci::skip_or_fail;
use lava_test_support::paths::workspace;

/// Bound on one whole job run; the job's own timeout is 10 minutes.
const RUN_LIMIT: Duration = Duration::from_secs(12 * 60);

/// What a run needs besides the dispatchers themselves.
struct Setup {
    workspace: PathBuf,
    device: PathBuf,
    guestfs_env: Vec<(String, String)>,
}

/// The job id of job `job`'s run by `dispatcher` (1: ours, 2: LAVA's). It names the
/// dispatcher's scratch directory, which also marks the run's processes: unique per test
/// process and job, so that two checkouts testing at once neither share LAVA's work
/// directory nor stop each other's QEMU.
fn job_id(job: u32, dispatcher: u32) -> u32 {
    std::process::id() * 100 + job * 10 + dispatcher
}

/// One reference run at a time: two QEMU guests under TCG each, on a loaded machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Everything a reference run needs (libguestfs' environment only when LAVA builds an
/// overlay disk), or what is missing.
fn prerequisites(needs_guestfs: bool) -> Result<Setup, String> {
    let workspace = workspace();
    let test_system = workspace.join("target/test-system");
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !qemu.is_ok_and(|s| s.success()) {
        return Err("qemu-system-x86_64 does not run".into());
    }
    if !Path::new(LAVA_RUN).is_file() {
        return Err(format!(
            "{LAVA_RUN} is missing (Debian's lava-dispatcher: scripts/install-test-deps.sh)"
        ));
    }
    let guestfs_env = if needs_guestfs {
        let env_file = test_system.join("libguestfs.env");
        let env_text = std::fs::read_to_string(&env_file).map_err(|e| {
            format!(
                "{} cannot be read ({e}): `cargo xtask test-system` writes it where supermin is \
                 installed",
                env_file.display()
            )
        })?;
        env_text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    } else {
        Vec::new()
    };
    // LAVA keeps its job files there; a quick probe says whether this user may write them.
    std::fs::create_dir_all(LAVA_WORK_DIR)
        .and_then(|()| tempfile::tempfile_in(LAVA_WORK_DIR))
        .map_err(|e| format!("LAVA's work directory {LAVA_WORK_DIR} is not writable ({e})"))?;
    Ok(Setup {
        device: workspace.join("fixtures/qemu/device.yaml"),
        workspace,
        guestfs_env,
    })
}

/// The job `job` (number `index` among this file's jobs) under both dispatchers: both pass
/// and record the same result set.
fn compare(setup: &Setup, job: &Path, index: u32) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::Builder::new()
        .prefix("lava-reference-")
        .tempdir()
        .unwrap();

    let ours_dir = scratch.path().join("lava-rs");
    let mut ours = Command::new(env!("CARGO_BIN_EXE_lava-run"));
    ours.arg("--job-id")
        .arg(job_id(index, 1).to_string())
        .arg("--output-dir")
        .arg(&ours_dir)
        .arg("--device")
        .arg(&setup.device)
        .arg(job)
        .current_dir(&setup.workspace)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = wait(
        spawn(ours, format!("lava-rs-{}/", job_id(index, 1))),
        RUN_LIMIT,
    );
    let our_log = std::fs::read_to_string(ours_dir.join("logs.yaml")).unwrap_or_default();
    assert!(
        status.success(),
        "our lava-run: {status}\n{}",
        tail(&our_log)
    );

    let lava_dir = scratch.path().join("lava");
    let lava_log_path = scratch.path().join("lava-stderr.log");
    let mut lava = Command::new(LAVA_RUN);
    lava.arg("--job-id")
        .arg(job_id(index, 2).to_string())
        .arg("--output-dir")
        .arg(&lava_dir)
        .arg("--device")
        .arg(&setup.device)
        .arg(job)
        .envs(setup.guestfs_env.iter().map(|(k, v)| (k, v)))
        .current_dir(&setup.workspace)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&lava_log_path).unwrap());
    let marker = format!("{LAVA_WORK_DIR}/{}/", job_id(index, 2));
    let status = wait(spawn(lava, marker), RUN_LIMIT);
    let lava_log = std::fs::read_to_string(&lava_log_path).unwrap_or_default();
    assert!(
        status.success(),
        "LAVA's lava-run: {status}\n{}",
        tail(&lava_log)
    );

    let ours = result_set(&our_log);
    let lava = result_set(&lava_log);
    eprintln!("LAVA: {lava:#?}");
    assert!(
        !lava.cases.is_empty() && lava.job.is_some(),
        "LAVA's log has no test results:\n{}",
        tail(&lava_log)
    );
    assert_eq!(ours, lava, "lava-rs (left) and LAVA (right) disagree");

    // The QEMU LAVA finds at validation (its Debian package), logged then and recorded as
    // `execute-qemu`'s results.
    let qemu = |log: &str| {
        (
            info_line(log, "qemu-system-"),
            action_extra(log, "execute-qemu"),
        )
    };
    let lava_qemu = qemu(&lava_log);
    assert!(
        lava_qemu.0.is_some() && lava_qemu.1.is_some(),
        "LAVA's log names no QEMU version:\n{}",
        tail(&lava_log)
    );
    assert_eq!(
        qemu(&our_log),
        lava_qemu,
        "QEMU's version: lava-rs (left), LAVA (right)"
    );
}

/// The setup, or a skip (a failure under CI) naming what is missing.
fn setup_or_skip(needs_guestfs: bool) -> Option<Setup> {
    match prerequisites(needs_guestfs) {
        Ok(setup) => Some(setup),
        Err(missing) => {
            skip_or_fail(format!("the LAVA reference run cannot run: {missing}"));
            None
        }
    }
}

#[test]
fn the_qemu_job_gives_the_same_results_under_lava_and_lava_rs() {
    let Some(setup) = setup_or_skip(true) else {
        return;
    };
    let job = setup.workspace.join("target/test-system/qemu-smoke.yaml");
    if !job.is_file() {
        skip_or_fail(format!(
            "{} is missing (run `cargo xtask test-system`)",
            job.display()
        ));
        return;
    }
    compare(&setup, &job, 0);
}

#[test]
fn the_ramdisk_overlays_job_gives_the_same_results_under_lava_and_lava_rs() {
    let Some(setup) = setup_or_skip(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    match common::qemu_fixture_job("qemu-ramdisk-overlays.yaml", dir.path()) {
        Ok(job) => compare(&setup, &job, 1),
        Err(missing) => skip_or_fail(format!("the LAVA reference run cannot run: {missing}")),
    }
}

#[test]
fn the_disk_image_job_gives_the_same_results_under_lava_and_lava_rs() {
    let Some(setup) = setup_or_skip(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    match common::qemu_fixture_job("qemu-disk-image.yaml", dir.path()) {
        Ok(job) => compare(&setup, &job, 2),
        Err(missing) => skip_or_fail(format!("the LAVA reference run cannot run: {missing}")),
    }
}

#[test]
fn the_ext4_overlays_job_gives_the_same_results_under_lava_and_lava_rs() {
    // LAVA writes the overlay into the ext4 image with libguestfs; lava-rs with debugfs.
    let Some(setup) = setup_or_skip(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    match common::qemu_fixture_job("qemu-ext4-overlays.yaml", dir.path()) {
        Ok(job) => compare(&setup, &job, 3),
        Err(missing) => skip_or_fail(format!("the LAVA reference run cannot run: {missing}")),
    }
}

#[test]
fn result_sets_are_read_from_both_log_formats() {
    let ours = concat!(
        "- {\"dt\": \"2026-01-01T00:00:00.000000+00:00\", \"lvl\": \"results\", \"msg\": ",
        "{\"definition\": \"0_smoke\", \"case\": \"measured\", \"result\": \"pass\", ",
        "\"measurement\": ! \"42.0\", \"units\": \"widgets\", \"starttc\": ! \"9\"}}\n",
        "- {\"dt\": \"2026-01-01T00:00:00.000000+00:00\", \"lvl\": \"target\", \"msg\": \"x\"}\n",
        "- {\"dt\": \"2026-01-01T00:00:01.000000+00:00\", \"lvl\": \"results\", \"msg\": ",
        "{\"definition\": \"lava\", \"case\": \"validate\", \"result\": \"pass\"}}\n",
        "- {\"dt\": \"2026-01-01T00:00:02.000000+00:00\", \"lvl\": \"results\", \"msg\": ",
        "{\"definition\": \"lava\", \"case\": \"job\", \"result\": \"pass\"}}\n",
    );
    let lava = concat!(
        "{\"dt\": \"2026-01-01T00:00:00.000000\", \"lvl\": \"results\", \"msg\": ",
        "{\"case\": \"measured\", \"definition\": \"0_smoke\", \"endtc\": ! \"10\", ",
        "\"measurement\": ! \"42.0\", \"result\": \"pass\", \"units\": \"widgets\"}}\n",
        "libguestfs: a line that is not YAML at all: {\n",
        "{\"dt\": \"2026-01-01T00:00:02.000000\", \"lvl\": \"results\", \"msg\": ",
        "{\"case\": \"job\", \"definition\": \"lava\", \"result\": \"pass\"}}\n",
    );
    let expected = ResultSet {
        cases: vec![TestCase {
            suite: "0_smoke".into(),
            case: "measured".into(),
            result: "pass".into(),
            measurement: Some("42.0".into()),
            units: Some("widgets".into()),
        }],
        job: Some("pass".into()),
    };
    assert_eq!(result_set(ours), expected);
    assert_eq!(result_set(lava), expected);
    assert_eq!(
        result_set(""),
        ResultSet {
            cases: vec![],
            job: None
        }
    );
}
