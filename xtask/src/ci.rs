//! `cargo xtask test`: the project's whole test command, as the README and `.ci/run` use it:
//! formatting, the crate layering (`layering`), clippy with warnings denied, every workspace
//! test (and no rig left running after them), `cargo deny check`, the Debian packages installed and removed again (`deb_test`),
//! a bounded fuzz run and a short soak, direct and through lava-worker (`fuzz`, `soak`), and
//! the conformance corpora.

use crate::shared::workspace_root;
use anyhow::{Result, bail};
use std::process::Command;
use std::time::Instant;

/// Run every check in order; stop at the first failing step.
pub fn test(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let cargo = env!("CARGO");
    let mut steps: Vec<(&str, Vec<&str>)> = vec![
        ("format", vec!["fmt", "--all", "--check"]),
        (
            "clippy",
            vec![
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        ("tests", vec!["test", "--workspace", "--no-fail-fast"]),
    ];
    if quick {
        steps.retain(|(name, _)| *name == "tests");
    } else {
        println!("==> layering");
        crate::layering::check()?;
    }
    for (name, cargo_args) in steps {
        run_step(name, Command::new(cargo).args(&cargo_args))?;
    }
    timed("no rig left running by the tests", no_rig_left)?;
    if !quick {
        fresh_machine()?;
        timed("supply chain (cargo deny)", crate::supply_chain::check)?;
        timed("packages (build, install, remove)", crate::deb_test::run)?;
        // Bounded: every fuzz target 10 s, and a short soak (docs/hardening.md).
        run_step(
            "fuzz (every target, 10 s each)",
            Command::new(cargo).args(["xtask", "fuzz", "--seconds", "10"]),
        )?;
        run_step(
            "soak (20 local-shell jobs, 2 QEMU jobs: nothing leaks)",
            Command::new(cargo).args(["xtask", "soak", "20"]),
        )?;
        run_step(
            "soak through lava-worker (10 local-shell jobs: nothing leaks in the worker)",
            Command::new(cargo).args(["xtask", "soak", "10", "--worker", "--qemu", "0"]),
        )?;
        let pipeline_ok = crate::pipeline::conformance(None)?;
        let templates_ok = crate::templates::conformance(None)?;
        println!(
            "conformance: pipeline {}, templates {}",
            if pipeline_ok {
                "all passed"
            } else {
                "some cases fail (listed above)"
            },
            if templates_ok {
                "all passed"
            } else {
                "some cases fail (listed above)"
            }
        );
        if !pipeline_ok || !templates_ok {
            bail!("conformance failed: a case that passed before now fails (listed above)");
        }
    }
    Ok(())
}

/// The README's first command as on a fresh machine: in a mount namespace with QEMU purged
/// and no backports source, `cargo xtask main-job` must install QEMU and boot the guest
/// (`scripts/test-fresh-machine.sh`). Needs root; in CI it is never skipped.
fn fresh_machine() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        if crate::shared::in_ci() {
            bail!("CI=true but not root: the fresh-machine test needs root");
        }
        println!("==> fresh-machine: skipped (needs root)");
        return Ok(());
    }
    run_step(
        "fresh-machine",
        Command::new("bash").args(["scripts/test-fresh-machine.sh", "--main-job"]),
    )
}

/// Every test ends the rigs it started (their guards run `rig-down`, even on a panic):
/// after the tests, no rig port is held and no rig process runs (`board::quiet`).
fn no_rig_left() -> Result<()> {
    let left = crate::board::quiet::leftovers();
    for l in &left {
        println!("left running: pid {} ({}): {}", l.pid, l.program, l.why);
    }
    if !left.is_empty() {
        bail!(
            "the tests left {} rig process(es) running (above)",
            left.len()
        );
    }
    Ok(())
}

fn run_step(name: &str, command: &mut Command) -> Result<()> {
    timed(name, || {
        let status = command.current_dir(workspace_root()).status()?;
        if !status.success() {
            bail!("step {name} failed");
        }
        Ok(())
    })
}

/// Run one step between `==>` and `<==` lines giving its outcome and time.
fn timed(name: &str, step: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("==> {name}");
    let start = Instant::now();
    let result = step();
    println!(
        "<== {name}: {} in {:.0}s",
        if result.is_ok() { "ok" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    result
}
