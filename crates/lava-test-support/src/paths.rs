//! Where things are: the workspace, its fixtures, the test system, a free loopback port.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

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

/// The embedded QEMU device's test system (`cargo xtask test-system` builds it):
/// `$LAVA_RS_TEST_SYSTEM`, else `target/test-system` in the workspace.
pub fn test_system() -> PathBuf {
    std::env::var_os("LAVA_RS_TEST_SYSTEM")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/test-system"))
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
