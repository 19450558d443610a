//! Helpers shared by the xtask modules: where things are.
#![allow(dead_code)] // used by the modules as they grow

use std::path::{Path, PathBuf};

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `../shared` next to the workspace, if present.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = workspace_root().parent()?.join("shared");
    dir.is_dir().then_some(dir)
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, or `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Build a release binary of the workspace and return its path.
pub fn build_release_bin(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "--package",
            package,
            "--bin",
            bin,
        ])
        .current_dir(workspace_root())
        .status()?;
    anyhow::ensure!(status.success(), "cargo build of {package}/{bin} failed");
    Ok(target_dir().join("release").join(bin))
}

/// Build a debug binary of the workspace (shares artefacts with `cargo test`) and return
/// its path: what the conformance checkers run.
pub fn build_bin(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--package", package, "--bin", bin])
        .current_dir(workspace_root())
        .status()?;
    anyhow::ensure!(status.success(), "cargo build of {package}/{bin} failed");
    Ok(target_dir().join("debug").join(bin))
}

/// CI runs with `CI=true`: there a missing tool is a failure, never a skip or a fallback
/// (the tests' own rule, one definition).
pub use lava_test_support::ci::in_ci;
