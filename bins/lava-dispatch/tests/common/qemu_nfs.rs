//! The qemu-nfs rig (`cargo xtask test-board qemu-nfs --prepare`) for the NFS root tests:
//! its NFS server up for as long as a [`QemuNfsRig`] lives, and `fixtures/qemu/qemu-nfs.yaml`
//! written with the rig's artefact URLs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use lava_test_support::paths::{fixture, workspace};

use super::rig::RigUp;

/// One NFS server: tests of a binary take turns (rigs of other binaries and processes wait
/// for the server's lock in the rig's supervisor).
static RIG: Mutex<()> = Mutex::new(());

/// The cases of `fixtures/qemu/qemu-nfs.yaml` (suite `0_qemu-nfs`), sorted.
pub const NFS_CASES: &[(&str, &str)] = &[
    ("always-fail", "fail"),
    ("always-pass", "pass"),
    ("hostname", "pass"),
    ("nfs-mount", "pass"),
    ("root-on-nfs", "pass"),
];

/// The rig's directory: `$LAVA_RS_QEMU_NFS_RIG`, else `target/board-qemu-nfs`.
pub fn rig_dir() -> PathBuf {
    std::env::var_os("LAVA_RS_QEMU_NFS_RIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/board-qemu-nfs"))
}

/// The rig's NFS server, up until this value drops (`bin/rig-up` … `bin/rig-down`).
pub struct QemuNfsRig {
    /// The device file (`fixtures/qemu/device-nfs.yaml`).
    pub device: PathBuf,
    /// The dispatcher configuration (`dispatcher_nfs_ip: 10.0.2.2`).
    pub dispatcher: PathBuf,
    urls: BTreeMap<String, String>,
    /// Declared before the turn: the rig is down before the next test's turn.
    _rig: RigUp,
    _turn: MutexGuard<'static, ()>,
}

impl QemuNfsRig {
    /// The rig, started; `None` (after saying why, or failing under `CI=true`) when it is
    /// not prepared or its tools are missing.
    pub fn up() -> Option<QemuNfsRig> {
        let turn = RIG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (rig, urls) = RigUp::start(
            &rig_dir(),
            "rig.txt",
            &["qemu-system-x86_64", "ganesha.nfsd", "rpcbind"],
            "scripts/install-test-deps.sh installs the qemu-nfs rig",
            "the qemu-nfs rig",
            "cargo xtask test-board qemu-nfs --prepare",
        )?;
        Some(QemuNfsRig {
            device: PathBuf::from(&urls["device"]),
            dispatcher: PathBuf::from(&urls["dispatcher"]),
            urls,
            _rig: rig,
            _turn: turn,
        })
    }

    /// `fixtures/qemu/qemu-nfs.yaml` with the artefact URLs in place, written under `scratch`.
    pub fn job(&self, scratch: &Path) -> PathBuf {
        let mut text =
            std::fs::read_to_string(fixture("qemu/qemu-nfs.yaml")).expect("the qemu-nfs job");
        for (placeholder, key) in [
            ("@KERNEL_URL@", "kernel"),
            ("@INITRD_URL@", "initrd"),
            ("@NFSROOTFS_URL@", "nfsrootfs"),
        ] {
            text = text.replace(placeholder, &self.urls[key]);
        }
        let path = scratch.join("qemu-nfs.yaml");
        std::fs::write(&path, text).expect("writing the job");
        path
    }
}
