//! `deploy: to: nfs` + `boot: method: qemu-nfs` end to end, on the qemu-nfs rig (`cargo
//! xtask test-board qemu-nfs --prepare`: the embedded device's kernel, an initrd that mounts
//! an NFS root, nfs-ganesha exporting LAVA's `/var/lib/lava/dispatcher/tmp`):
//! `fixtures/qemu/qemu-nfs.yaml` on `fixtures/qemu/device-nfs.yaml`.
//!
//! - our `lava-run` unpacks the root with the test overlay under the job's scratch directory,
//!   boots QEMU with the kernel pointed at it, and the test shell runs there: the result set
//!   has the passing and failing cases, and the ones checking that `/` is the NFS export;
//!   the job's directory (the unpacked root with it) is gone after the job;
//! - Debian's `/usr/bin/lava-run` 2023.01 runs the same job on the same rig to the same
//!   result set.

use std::path::Path;
use std::time::Duration;

mod common;

use common::qemu_nfs::{NFS_CASES, QemuNfsRig};
use common::reference::{JobOnDevice, LAVA_WORK_DIR, ResultSet, lava_installed, result_set, tail};

/// Bound on one whole run (the job's own timeout is 10 minutes).
const RUN_LIMIT: Duration = Duration::from_secs(11 * 60);

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("e2e-qemu-nfs-")
        .tempdir()
        .unwrap()
}

fn cases(results: &ResultSet) -> Vec<(String, String)> {
    results
        .cases
        .iter()
        .filter(|c| c.suite == "0_qemu-nfs")
        .map(|c| (c.case.clone(), c.result.clone()))
        .collect()
}

fn expected() -> Vec<(String, String)> {
    NFS_CASES
        .iter()
        .map(|(case, result)| (case.to_string(), result.to_string()))
        .collect()
}

#[test]
fn qemu_nfs_job_runs_its_tests_on_the_nfs_root() {
    let Some(rig) = QemuNfsRig::up() else { return };
    let dir = scratch();
    let job = rig.job(dir.path());
    let job_id = format!("{}", std::process::id() * 10 + 1);
    let run = JobOnDevice {
        job: &job,
        device: &rig.device,
        dispatcher: &rig.dispatcher,
    };
    let (status, log) = run.run_ours(&job_id, &dir.path().join("out"), RUN_LIMIT);
    assert!(status.success(), "our lava-run failed\n{}", tail(&log));
    let results = result_set(&log);
    assert_eq!(cases(&results), expected(), "{}", tail(&log));
    assert_eq!(results.job.as_deref(), Some("pass"), "{}", tail(&log));
    // The kernel was pointed at the root the deployment unpacked, under the export.
    let root = format!("{LAVA_WORK_DIR}/{job_id}/qemu-nfs-deploy-1-4");
    assert!(
        log.contains(&format!(
            "root=/dev/nfs nfsroot=10.0.2.2:{root},tcp,hard,vers=3,port=22200,mountport=22201 \
             rw ip=dhcp"
        )),
        "no qemu-nfs kernel command line naming {root}\n{}",
        tail(&log)
    );
    assert!(
        !Path::new(&format!("{LAVA_WORK_DIR}/{job_id}")).exists(),
        "the job's directory (with its NFS root) is left after the job"
    );
}

#[test]
fn lava_gives_the_same_result_set_on_the_rig() {
    if !lava_installed() {
        return;
    }
    let Some(rig) = QemuNfsRig::up() else { return };
    let dir = scratch();
    let job = rig.job(dir.path());
    let run = JobOnDevice {
        job: &job,
        device: &rig.device,
        dispatcher: &rig.dispatcher,
    };
    let (status, log) = run.run_lava(std::process::id() * 10 + 2, dir.path(), RUN_LIMIT);
    assert!(
        status.success(),
        "LAVA's lava-run: {status}\n{}",
        tail(&log)
    );
    let results = result_set(&log);
    eprintln!("LAVA's result set on the qemu-nfs rig: {results:#?}");
    assert!(
        log.contains("root=/dev/nfs nfsroot=10.0.2.2:"),
        "LAVA booted no NFS root\n{}",
        tail(&log)
    );
    assert_eq!(cases(&results), expected(), "LAVA's cases\n{}", tail(&log));
    assert_eq!(results.job.as_deref(), Some("pass"), "{}", tail(&log));
}
