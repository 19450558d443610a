//! Where things are: the workspace, its fixtures, the test system, the board rig, a free
//! loopback port.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root resolves")
}

/// A file or directory under `fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    workspace().join("fixtures").join(relative)
}

/// The U-Boot board rig (`cargo xtask test-board u-boot --prepare` writes it):
/// `$LAVA_RS_BOARD_RIG`, else `target/board-u-boot` in the workspace.
pub fn board_rig() -> PathBuf {
    std::env::var_os("LAVA_RS_BOARD_RIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/board-u-boot"))
}

/// The x86 PC board rig (`cargo xtask test-board ipxe --prepare` writes it):
/// `$LAVA_RS_PC_BOARD_RIG`, else `target/board-pc` in the workspace.
pub fn pc_board_rig() -> PathBuf {
    std::env::var_os("LAVA_RS_PC_BOARD_RIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/board-pc"))
}

/// The embedded QEMU device's test system (`cargo xtask test-system` builds it):
/// `$LAVA_RS_TEST_SYSTEM`, else `target/test-system` in the workspace.
pub fn test_system() -> PathBuf {
    std::env::var_os("LAVA_RS_TEST_SYSTEM")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/test-system"))
}

/// Our `lava-run`, built for the tests of another package (cargo gives a test the path of
/// its own package's binaries only): `cargo build -p lava-dispatch --bin lava-run` into the
/// workspace's target directory (`$CARGO_TARGET_DIR` when set), once per test process.
/// `$LAVA_RS_LAVA_RUN` names a binary to use instead. Panics when the build fails.
pub fn lava_run() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| built("LAVA_RS_LAVA_RUN", "lava-dispatch", "lava-run"))
        .clone()
}

/// Our `lava-worker` (`bins/lava-worker`), built as [`lava_run`] is;
/// `$LAVA_RS_LAVA_WORKER` names a binary to use instead.
pub fn lava_worker() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| built("LAVA_RS_LAVA_WORKER", "lava-worker-bin", "lava-worker"))
        .clone()
}

/// `$override_var`, else `bin` of `package` built (debug) into the target directory.
fn built(override_var: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(override_var) {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(workspace())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --bin {bin} failed");
    target.join("debug").join(bin)
}

/// A loopback port free at the time of the call.
pub fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_holds_the_fixtures() {
        assert!(workspace().join("Cargo.lock").is_file());
        assert!(fixture("local-shell/device.yaml").is_file());
        assert_ne!(free_loopback_port(), 0);
    }
}
