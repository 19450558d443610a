//! Pipeline-description conformance (`cargo xtask conformance pipeline`) and the validate
//! benchmark (`cargo xtask bench validate`).

use crate::shared::{build_release_bin, shared_dir};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const CORPORA: &[&str] = &["pipeline-cases", "pipeline-cases-extra"];

/// Run LAVA's checker over both public pipeline corpora with our `lava-run --validate`.
/// Prints the checker's `N passed, M failed` per corpus, a total, and failures by family.
pub fn conformance(filter: Option<&str>) -> Result<bool> {
    let Some(shared) = shared_dir() else {
        println!("pipeline conformance skipped: ../shared/conformance is absent");
        return Ok(true);
    };
    let conformance = shared.join("conformance");
    let bin = build_release_bin("lava-dispatch", "lava-run")?;
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
            .arg(&template);
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

/// `cargo xtask bench validate` (implemented with the benchmark issue work).
pub fn bench_validate(_args: &[String]) -> Result<()> {
    anyhow::bail!("validate bench is not implemented yet")
}
