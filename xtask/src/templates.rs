//! Template-rendering conformance and benchmark (lava-device).
//!
//! `cargo xtask conformance templates [-k FILTER]` runs LAVA's `check_templates.py` over the
//! public template cases with our release `lava-dispatch render`.
//! `cargo xtask bench render [RUNS [REPEAT]]` (or `-- --runs N --repeat M`) renders every public
//! case in-process with our renderer and with Python Jinja2 configured LAVA's way, REPEAT
//! times per run, and prints both median timings and their ratio.

use crate::shared::{build_bin, shared_dir, workspace_root};
use anyhow::{Context, bail};
use std::path::Path;
use std::process::Command;

/// Run the template checker; Ok(true) when every case passed (or when ../shared is absent).
pub fn conformance(filter: Option<&str>) -> anyhow::Result<bool> {
    let Some(shared) = shared_dir() else {
        anyhow::ensure!(
            !crate::shared::in_ci(),
            "CI=true but ../shared/conformance (LAVA's corpus) is absent"
        );
        println!("templates conformance skipped: ../shared (the conformance corpus) is absent");
        return Ok(true);
    };
    let conformance = shared.join("conformance");
    let bin = build_bin("lava-dispatch", "lava-dispatch")?;
    let command = format!(
        "{} render --path {{templates_dir}} {{context_opt}} {{dictionary}}",
        lava_python::shlex_quote(&bin.display().to_string())
    );
    let mut cmd = Command::new("python3");
    cmd.arg(conformance.join("check_templates.py"))
        .arg(conformance.join("template-cases"))
        .arg(&command)
        .current_dir(workspace_root());
    if let Some(filter) = filter {
        cmd.args(["-k", filter]);
    }
    println!("templates conformance: {command}");
    // The checker's output (one line per case, `byte-identical: N of M`, `N passed, M failed`)
    // goes straight to our stdout.
    let status = cmd
        .status()
        .context("running python3 check_templates.py (needs python3 with PyYAML)")?;
    Ok(status.success())
}

/// Benchmark in-process rendering: ours (release example `render-bench`) against Python
/// Jinja2 with LAVA's environment (`crates/lava-device/bench/render_bench.py`).
pub fn bench(args: &[String]) -> anyhow::Result<()> {
    let Some(shared) = shared_dir() else {
        println!("render bench skipped: ../shared (the conformance corpus) is absent");
        return Ok(());
    };
    let mut runs = 5usize;
    let mut repeat = 10usize;
    let mut it = args.iter();
    let mut positional = 0;
    while let Some(arg) = it.next() {
        if let Ok(n) = arg.parse::<usize>() {
            match positional {
                0 => runs = n.max(1),
                1 => repeat = n.max(1),
                _ => bail!("too many numbers: expected [RUNS [REPEAT]]"),
            }
            positional += 1;
            continue;
        }
        let mut value = |name: &str| -> anyhow::Result<usize> {
            it.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--runs" => runs = value("--runs")?.max(1),
            "--repeat" => repeat = value("--repeat")?.max(1),
            other => {
                bail!(
                    "unknown bench argument {other:?}: expected [RUNS [REPEAT]] or --runs N --repeat M"
                )
            }
        }
    }
    let cases = shared.join("conformance").join("template-cases");
    let templates = shared.join("conformance").join("templates");

    let ours = build_release_example("lava-device", "render-bench")?;
    let script = workspace_root().join("crates/lava-device/bench/render_bench.py");
    ensure_python_jinja2()?;

    println!("render bench: every public template case, {repeat} renders per run, {runs} runs");
    let rust = median_secs(&ours, &[], &cases, &templates, runs, repeat)?;
    let python = median_secs(
        Path::new("python3"),
        &[script.display().to_string()],
        &cases,
        &templates,
        runs,
        repeat,
    )?;
    println!("lava-device (minijinja): {:.3} s median", rust);
    println!("Python Jinja2 (LAVA env): {:.3} s median", python);
    if rust > 0.0 {
        println!("ratio: {:.1}x faster", python / rust);
    }
    Ok(())
}

/// Run a bench program `runs` times; each run prints `seconds: S` (time for `repeat` renders
/// of every case, excluding process start); return the median.
fn median_secs(
    program: &Path,
    pre_args: &[String],
    cases: &Path,
    templates: &Path,
    runs: usize,
    repeat: usize,
) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let out = Command::new(program)
            .args(pre_args)
            .arg(cases)
            .arg(templates)
            .arg(repeat.to_string())
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed: {}",
                program.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let secs: f64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("seconds: "))
            .with_context(|| format!("{} printed no `seconds:` line", program.display()))?
            .trim()
            .parse()?;
        times.push(secs);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn build_release_example(package: &str, example: &str) -> anyhow::Result<std::path::PathBuf> {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "--package",
            package,
            "--example",
            example,
        ])
        .current_dir(workspace_root())
        .status()?;
    anyhow::ensure!(
        status.success(),
        "cargo build of {package} example {example} failed"
    );
    Ok(crate::shared::target_dir()
        .join("release")
        .join("examples")
        .join(example))
}

/// Make sure python3 can import jinja2 and yaml, installing them with pip when absent.
fn ensure_python_jinja2() -> anyhow::Result<()> {
    let ok = |cmd: &mut Command| cmd.status().map(|s| s.success()).unwrap_or(false);
    if ok(Command::new("python3").args(["-c", "import jinja2, yaml"])) {
        return Ok(());
    }
    println!("installing jinja2 and pyyaml with pip for the Python side of the bench");
    if !ok(Command::new("python3").args(["-m", "pip", "install", "--quiet", "jinja2", "pyyaml"])) {
        bail!("python3 -m pip install jinja2 pyyaml failed");
    }
    Ok(())
}
