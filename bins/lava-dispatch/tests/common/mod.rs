//! Helpers of the lava-dispatch end-to-end tests alone (what other crates' tests share
//! too is in `lava_test_support`).
#![allow(dead_code)] // each test file uses a part

pub mod board;
pub mod qemu_nfs;
pub mod reference;
pub mod rig;

use std::path::PathBuf;

/// The `lava-run` binary under test.
pub fn lava_run() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lava-run"))
}

/// Runs `job` as job 7 through our `lava-run` on the device dictionary `device` (its
/// templates in `device_types`) with the dispatcher configuration `dispatcher`, writing
/// into `output`; returns (exit code, logs.yaml text, result.yaml text).
pub fn run_job_on_device(
    output: &std::path::Path,
    device: &std::path::Path,
    device_types: &std::path::Path,
    dispatcher: &std::path::Path,
    job: &std::path::Path,
) -> (Option<i32>, String, String) {
    let status = std::process::Command::new(lava_run())
        .args(["--job-id", "7", "--output-dir"])
        .arg(output)
        .arg("--device")
        .arg(device)
        .arg("--device-types")
        .arg(device_types)
        .arg("--dispatcher")
        .arg(dispatcher)
        .arg(job)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let read = |name: &str| std::fs::read_to_string(output.join(name)).unwrap_or_default();
    (status.code(), read("logs.yaml"), read("result.yaml"))
}

/// Every `results` record of a log's text, as (definition, case, result).
pub fn results(log: &str) -> Vec<(String, String, String)> {
    lava_dispatch::results::parse_results(log)
        .into_iter()
        .map(|case| (case.suite, case.name, case.result.as_str().to_string()))
        .collect()
}

/// Whether `results` has `case` of `definition` with `outcome`.
pub fn has(
    results: &[(String, String, String)],
    definition: &str,
    case: &str,
    outcome: &str,
) -> bool {
    results
        .iter()
        .any(|(d, c, r)| d == definition && c == case && r == outcome)
}

/// The UUID of the root filesystem image the disk-image job attaches
/// (`fixtures/qemu/qemu-disk-image.yaml` mounts it by this UUID).
pub const ROOTFS_UUID: &str = "4c415641-2d72-4f6f-a474-66732d646973";

/// The QEMU job fixture `fixtures/qemu/<fixture>` made runnable in `dir`:
/// `@TEST_SYSTEM_DIR@` replaced by `target/test-system`, `@ROOTFS@` by an ext2 image
/// built here with `mke2fs -d` (UUID [`ROOTFS_UUID`], `/etc/issue` saying "lava-rs
/// rootfs"), and `@ROOTFS_EXT4@` by an ext4 root filesystem made of the test system's
/// initramfs tree. `Err` names what is missing (the test system, QEMU, mke2fs, cpio).
pub fn qemu_fixture_job(fixture: &str, dir: &std::path::Path) -> Result<PathBuf, String> {
    use std::process::{Command, Stdio};
    let root = lava_test_support::paths::workspace();
    let test_system = root.join("target/test-system");
    if !test_system.join("initramfs.cpio.gz").is_file() {
        return Err("target/test-system is missing (run `cargo xtask test-system`)".into());
    }
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !qemu.is_ok_and(|s| s.success()) {
        return Err("qemu-system-x86_64 does not run".into());
    }
    let text = std::fs::read_to_string(root.join("fixtures/qemu").join(fixture))
        .map_err(|e| format!("{fixture}: {e}"))?
        .replace("@TEST_SYSTEM_DIR@", &test_system.display().to_string());
    let text = if text.contains("@ROOTFS@") {
        let tree = dir.join("rootfs-tree");
        std::fs::create_dir_all(tree.join("etc")).map_err(|e| e.to_string())?;
        std::fs::write(tree.join("etc/issue"), "lava-rs rootfs\n").map_err(|e| e.to_string())?;
        let image = dir.join("rootfs.ext2");
        let mke2fs = ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
            .ok_or("mke2fs is missing (e2fsprogs)")?;
        let made = Command::new(mke2fs)
            .args(["-q", "-F", "-t", "ext2", "-U", ROOTFS_UUID, "-d"])
            .arg(&tree)
            .arg(&image)
            .arg("8M")
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("mke2fs: {e}"))?;
        if !made.success() {
            return Err(format!("mke2fs failed: {made}"));
        }
        text.replace("@ROOTFS@", &image.display().to_string())
    } else {
        text
    };
    let text = if text.contains("@ROOTFS_EXT4@") {
        let image = ext4_root_from_initramfs(&test_system, dir)?;
        text.replace("@ROOTFS_EXT4@", &image.display().to_string())
    } else {
        text
    };
    let job = dir.join(fixture);
    std::fs::write(&job, text).map_err(|e| e.to_string())?;
    Ok(job)
}

/// An ext4 root filesystem image holding the test system's initramfs tree (without its
/// kernel modules, which the initramfs has loaded, and device nodes), as `dir/rootfs.ext4`:
/// unpacked with `cpio`, made with `mke2fs -d`.
fn ext4_root_from_initramfs(
    test_system: &std::path::Path,
    dir: &std::path::Path,
) -> Result<PathBuf, String> {
    use std::process::{Command, Stdio};
    let tree = dir.join("ext4-root-tree");
    std::fs::create_dir_all(&tree).map_err(|e| e.to_string())?;
    let unpack = format!(
        "gzip -dc '{}' | cpio -id --quiet --no-absolute-filenames -f 'dev/*' 'lib/modules/*'",
        test_system.join("initramfs.cpio.gz").display()
    );
    let unpacked = Command::new("sh")
        .args(["-c", &unpack])
        .current_dir(&tree)
        .status()
        .map_err(|e| format!("cpio: {e}"))?;
    if !unpacked.success() {
        return Err(format!(
            "unpacking the initramfs with cpio failed: {unpacked}"
        ));
    }
    std::fs::create_dir_all(tree.join("dev")).map_err(|e| e.to_string())?;
    let image = dir.join("rootfs.ext4");
    let mke2fs = ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .ok_or("mke2fs is missing (e2fsprogs)")?;
    let made = Command::new(mke2fs)
        .args(["-q", "-F", "-t", "ext4", "-E", "root_owner=0:0", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg("32M")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("mke2fs: {e}"))?;
    if !made.success() {
        return Err(format!("mke2fs failed: {made}"));
    }
    Ok(image)
}
