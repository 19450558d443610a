//! `cargo xtask main-job`: set up and run the main job — a real LAVA job on the embedded
//! QEMU device — with our `lava-run`, then print its results. Where QEMU cannot be
//! installed, the same job shape runs on the local-shell device, and it says so.

use crate::shared::{build_bin, workspace_root};
use crate::test_system;
use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::Path;
use std::process::Command;

pub fn run(_args: &[String]) -> Result<()> {
    let root = workspace_root();
    let (job, device) = match ensure_qemu() {
        Ok(()) => {
            println!("==> building the embedded device (Debian kernel + busybox initramfs)");
            let system = test_system::build(&test_system::cache_dir(), false)?;
            (system.job, test_system::device_yaml())
        }
        Err(why) if crate::shared::in_ci() => {
            anyhow::bail!("CI=true and QEMU is not available: {why:#}")
        }
        Err(why) => {
            println!(
                "==> QEMU is not available here: {why:#}\n    running the same job shape on \
                 the local-shell device instead"
            );
            (
                root.join("fixtures/local-shell/inline-job.yaml"),
                root.join("fixtures/local-shell/device.yaml"),
            )
        }
    };
    println!("==> building lava-run");
    let lava_run = build_bin("lava-dispatch", "lava-run")?;
    let out = root.join("target/main-job");
    let _ = std::fs::remove_dir_all(&out);
    println!(
        "==> lava-run --job-id 1 --output-dir {} --device {} {}",
        out.display(),
        device.display(),
        job.display()
    );
    let status = Command::new(&lava_run)
        .args(["--job-id", "1", "--output-dir"])
        .arg(&out)
        .arg("--device")
        .arg(&device)
        .arg(&job)
        .status()
        .context("running lava-run")?;
    print_results(&out.join("logs.yaml"))?;
    println!(
        "logs: {}/logs.yaml, result: {}/result.yaml",
        out.display(),
        out.display()
    );
    anyhow::ensure!(status.success(), "the job failed (see the log above)");
    Ok(())
}

/// QEMU present, or installed now (as root) by `scripts/install-qemu.sh`; otherwise why not
/// (the script has printed apt's own error above).
fn ensure_qemu() -> Result<()> {
    let present = || {
        Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present() {
        return Ok(());
    }
    println!("==> qemu-system-x86_64 is missing: installing it (scripts/install-qemu.sh)");
    let script = workspace_root().join("scripts/install-qemu.sh");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        status.success(),
        "{} failed ({status}; its messages are above)",
        script.display()
    );
    anyhow::ensure!(
        present(),
        "{} succeeded but qemu-system-x86_64 --version still does not run",
        script.display()
    );
    Ok(())
}

/// The job's result table (lava-run's own, from `lava_dispatch::report`). On a terminal,
/// lava-run has printed it already at the end of the job.
fn print_results(log: &Path) -> Result<()> {
    if std::io::stderr().is_terminal() {
        return Ok(());
    }
    let report = lava_dispatch::report::Report {
        job_id: "1".into(),
        cases: lava_dispatch::results::read_results(log)?,
    };
    print!("\n{}", report.table(false));
    Ok(())
}
