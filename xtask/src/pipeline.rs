//! Pipeline-description conformance (`cargo xtask conformance pipeline`) and the validate
//! benchmark (`cargo xtask bench validate`).

use crate::shared::{build_bin, build_release_bin, shared_dir};
use crate::test_system::on_path;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

pub(crate) const CORPORA: &[&str] = &["pipeline-cases", "pipeline-cases-extra"];

/// Run LAVA's checker over both public pipeline corpora with our `lava-run --validate`.
/// Prints the checker's `N passed, M failed` per corpus, a total, and failures by family.
pub fn conformance(filter: Option<&str>) -> Result<bool> {
    let Some(shared) = shared_dir() else {
        anyhow::ensure!(
            !crate::shared::in_ci(),
            "CI=true but ../shared/conformance (LAVA's corpus) is absent"
        );
        println!("pipeline conformance skipped: ../shared/conformance is absent");
        return Ok(true);
    };
    let conformance = shared.join("conformance");
    let bin = build_bin("lava-dispatch", "lava-run")?;
    let stubs = host_tool_stubs(&conformance)?;
    let path = format!(
        "{}:{}",
        stubs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let template = format!(
        "{} --device {{device}} --job-id {{job_id}} --validate --output-dir \"$(dirname {{out}})\" --describe {{out}} {{extra_args}} {{job}} 2>/dev/null",
        bin.display()
    );
    let (mut passed, mut failed) = (0, 0);
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut all_ok = true;
    for corpus in CORPORA {
        let dir = conformance.join(corpus);
        if !dir.is_dir() {
            continue;
        }
        let mut cmd = Command::new("python3");
        cmd.arg(conformance.join("check_pipeline.py"))
            .arg(&dir)
            .arg(&template)
            .env("PATH", &path);
        if let Some(f) = filter {
            cmd.args(["-k", f]);
        }
        let out = cmd
            .output()
            .context("running check_pipeline.py (needs python3 with PyYAML)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("FAIL ") {
                let name = rest.split(':').next().unwrap_or(rest).to_string();
                let family = family_of(&dir.join(&name));
                failures.entry(family).or_default().push(rest.to_string());
            }
        }
        let summary = text
            .lines()
            .rev()
            .find(|l| l.contains(" passed, "))
            .unwrap_or("no result line");
        println!("{corpus}: {summary}");
        if let Some((p, f)) = parse_summary(summary) {
            passed += p;
            failed += f;
        }
        all_ok &= out.status.success();
        if !out.stderr.is_empty() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    for (family, cases) in &failures {
        println!("failing in family {family} ({}):", cases.len());
        for case in cases {
            println!("  {case}");
        }
    }
    println!("pipeline: {passed} passed, {failed} failed");
    Ok(all_ok)
}

/// Some cases need host tools LAVA looks up in `$PATH` while building the pipeline
/// (`host_tools_looked_up_at_parse` in their meta.yaml: uuu, bcu, ...). As in LAVA's own
/// tests, stand-ins are enough: they are looked up, never run. Returns their directory.
pub(crate) fn host_tool_stubs(conformance: &Path) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join("lava-rs-conformance-tools");
    std::fs::create_dir_all(&dir)?;
    for corpus in CORPORA {
        let Ok(cases) = std::fs::read_dir(conformance.join(corpus)) else {
            continue;
        };
        for case in cases.flatten() {
            let Ok(text) = std::fs::read_to_string(case.path().join("meta.yaml")) else {
                continue;
            };
            let Ok(meta) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
                continue;
            };
            let tools = meta
                .get("host_tools_looked_up_at_parse")
                .and_then(|t| t.as_sequence());
            for tool in tools.into_iter().flatten().filter_map(|t| t.as_str()) {
                let stub = dir.join(tool);
                if !stub.exists() && on_path(tool).is_none() {
                    std::fs::write(
                        &stub,
                        "#!/bin/sh\necho \"conformance stand-in: not a real tool\" >&2\nexit 1\n",
                    )?;
                    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755))?;
                }
            }
        }
    }
    Ok(dir)
}

fn parse_summary(line: &str) -> Option<(u32, u32)> {
    let mut words = line.split_whitespace();
    let passed = words.next()?.parse().ok()?;
    words.next();
    let failed = words.next()?.parse().ok()?;
    Some((passed, failed))
}

fn family_of(case: &Path) -> String {
    std::fs::read_to_string(case.join("meta.yaml"))
        .ok()
        .and_then(|t| serde_yaml::from_str::<serde_yaml::Value>(&t).ok())
        .and_then(|m| m.get("family").and_then(|f| f.as_str()).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// `cargo xtask bench validate [RUNS]`: whole-process wall time and peak RSS of our
/// `lava-run --validate` against LAVA's own `lava-run` (Debian's lava-dispatcher, installed
/// when absent) on the same job and device, interleaved, medians and ratios.
pub fn bench_validate(args: &[String]) -> Result<()> {
    let runs: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(15);
    let ours = build_release_bin("lava-dispatch", "lava-run")?;
    let lava = ensure_lava_run()?;
    let (job, device) = bench_case()?;
    println!(
        "job: {}\ndevice: {}\nruns: {runs} each, interleaved",
        job.display(),
        device.display()
    );
    let scratch = std::env::temp_dir().join("lava-rs-bench-validate");
    let mut ours_samples = Vec::new();
    let mut lava_samples = Vec::new();
    for i in 0..runs + 1 {
        let a = measure(&ours, &job, &device, &scratch.join("ours"))?;
        let b = measure(&lava, &job, &device, &scratch.join("lava"))?;
        if i > 0 {
            // the first pair warms the page cache
            ours_samples.push(a);
            lava_samples.push(b);
        }
    }
    let (ow, om) = medians(&ours_samples);
    let (lw, lm) = medians(&lava_samples);
    println!("{:<28} {:>12} {:>14}", "", "wall (median)", "peak RSS");
    println!(
        "{:<28} {:>10.4} s {:>10.1} MiB",
        "lava-rs lava-run --validate", ow, om
    );
    println!(
        "{:<28} {:>10.4} s {:>10.1} MiB",
        "LAVA lava-run --validate", lw, lm
    );
    println!(
        "speed-up: {:.1}x faster; memory: {:.1}x less (targets: >= 50x, >= 10x)",
        lw / ow,
        lm / om
    );
    Ok(())
}

/// A job and device both implementations accept without network: our own job
/// (`fixtures/bench/validate-job.yaml`, file:// images written here), on LAVA's rendered
/// qemu device from the conformance corpus when present, else on our QEMU device fixture.
fn bench_case() -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let root = crate::shared::workspace_root();
    let dir = std::env::temp_dir().join("lava-rs-bench-validate-inputs");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("vmlinuz"), vec![0u8; 4096])?;
    std::fs::write(dir.join("initramfs.cpio.gz"), vec![0u8; 4096])?;
    let template = std::fs::read_to_string(root.join("fixtures/bench/validate-job.yaml"))?;
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        template.replace("@IMAGES@", &dir.display().to_string()),
    )?;
    let device = shared_dir()
        .map(|s| s.join("conformance/pipeline-cases/kvm/device.yaml"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| root.join("fixtures/qemu/device.yaml"));
    Ok((job, device))
}

/// (wall seconds, peak RSS MiB) of one `--validate` run, via GNU time.
fn measure(bin: &Path, job: &Path, device: &Path, out: &Path) -> Result<(f64, f64)> {
    let _ = std::fs::remove_dir_all(out);
    // Wall time is measured here (GNU time's %e has a 10 ms resolution); peak RSS by GNU time.
    let started = std::time::Instant::now();
    let output = Command::new("/usr/bin/time")
        .args(["-f", "%e %M"])
        .arg(bin)
        .args(["--job-id", "1", "--validate", "--output-dir"])
        .arg(out)
        .arg("--device")
        .arg(device)
        .arg(job)
        .output()
        .context("running /usr/bin/time (apt-get install time)")?;
    let wall = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        output.status.success(),
        "{} --validate failed: {}",
        bin.display(),
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    let mut parts = last.split_whitespace();
    let _coarse_wall = parts.next();
    let kib: f64 = parts.next().unwrap_or("0").parse()?;
    Ok((wall, kib / 1024.0))
}

fn medians(samples: &[(f64, f64)]) -> (f64, f64) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    (
        median(samples.iter().map(|s| s.0).collect()),
        median(samples.iter().map(|s| s.1).collect()),
    )
}

/// LAVA's `lava-run` from Debian's lava-dispatcher, installed with apt when absent.
fn ensure_lava_run() -> Result<std::path::PathBuf> {
    let path = std::path::PathBuf::from("/usr/bin/lava-run");
    if !path.exists() || !Path::new("/usr/bin/time").exists() {
        println!("installing Debian's lava-dispatcher and time (apt)...");
        let status = Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-o",
                "DPkg::Lock::Timeout=600",
                "--no-install-recommends",
                "lava-dispatcher",
                "time",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        anyhow::ensure!(status.success(), "apt-get install lava-dispatcher failed");
    }
    Ok(path)
}
