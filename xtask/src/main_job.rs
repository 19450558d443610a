//! `cargo xtask main-job`: set up and run the main job — a real LAVA job on the embedded
//! QEMU device — with our `lava-run`, then print its results. Where QEMU cannot be
//! installed, the same job shape runs on the local-shell device, and it says so.

use crate::shared::{build_bin, workspace_root};
use crate::test_system;
use anyhow::{Context, Result};
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

/// A table of the job's result records: suite, case, result, measurement.
fn print_results(log: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    println!(
        "\n{:<16} {:<24} {:<6} measurement",
        "suite", "case", "result"
    );
    for line in text.lines().filter(|l| l.contains("\"lvl\": \"results\"")) {
        let Ok(item) = serde_yaml::from_str::<serde_yaml::Value>(line.trim_start_matches("- "))
        else {
            continue;
        };
        let Some(msg) = item.get("msg") else { continue };
        let field = |k: &str| {
            msg.get(k).map(|v| match v {
                serde_yaml::Value::String(s) => s.clone(),
                // `! "42.0"` in LAVA's log lines reads back as a tagged string
                serde_yaml::Value::Tagged(t) => t.value.as_str().unwrap_or_default().to_string(),
                other => serde_yaml::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            })
        };
        let suite = field("definition").unwrap_or_default();
        if suite == "lava" && !matches!(field("case").as_deref(), Some("job" | "validate")) {
            continue; // per-action records: in the log
        }
        let measurement = match (field("measurement"), field("units")) {
            (Some(m), Some(u)) => format!("{m} {u}"),
            (Some(m), None) => m,
            _ => String::new(),
        };
        println!(
            "{:<16} {:<24} {:<6} {}",
            suite,
            field("case").unwrap_or_default(),
            field("result").unwrap_or_default(),
            measurement
        );
    }
    Ok(())
}
