//! Console matcher throughput benchmark (lava-connection).
//!
//! Builds and runs the `console_bench` example of `lava-connection` in release mode: it
//! generates ≥ 100 MB of kernel-log-like console output (prompts rare) and feeds it through
//! the same decode → log-line splitter → prompt matcher path a `ShellSession` uses,
//! reporting the median MB/s of several runs. The goal is ≥ 500 MB/s.
//!
//! `cargo xtask bench console [--mb N] [--runs N] [--chunk BYTES] [--signals]`; with no
//! arguments it runs the prompt list and then the lava-test-shell signal patterns.

use anyhow::{Context, Result, ensure};

use crate::shared::workspace_root;

pub fn bench(args: &[String]) -> Result<()> {
    let runs: Vec<Vec<String>> = if args.is_empty() {
        vec![vec![], vec!["--signals".to_string()]]
    } else {
        vec![args.to_vec()]
    };
    for extra in runs {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "run",
                "--release",
                "--quiet",
                "--package",
                "lava-connection",
                "--example",
                "console_bench",
                "--",
            ])
            .args(&extra)
            .current_dir(workspace_root())
            .status()
            .context("running cargo for the console benchmark")?;
        ensure!(status.success(), "console benchmark failed ({status})");
    }
    Ok(())
}
