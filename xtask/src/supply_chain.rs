//! `cargo xtask deny` (and a step of `cargo xtask test`): `cargo deny check` against
//! `deny.toml`: advisories, licences, bans and sources.
//!
//! The RustSec advisory database is a git repository cargo-deny clones from GitHub. Where it
//! cannot be fetched (a machine that reaches crates.io but not GitHub), advisories cannot be
//! checked honestly: the step says so in a banner and checks licences, bans and sources. A
//! database fetched earlier (`$CARGO_HOME/advisory-dbs`) is used instead when there is one,
//! with its age printed, through cargo-deny's `--offline` (which also keeps `cargo metadata`
//! off the network, so the crates are fetched first with `cargo fetch`).
//!
//! cargo-deny itself is installed by `scripts/install-test-deps.sh`
//! (`cargo install --locked cargo-deny`); a missing tool is an error, never a skip.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::shared::workspace_root;

/// Run the checks; an error when any check that ran fails.
pub fn check() -> Result<()> {
    let version = Command::new(env!("CARGO"))
        .args(["deny", "--version"])
        .output();
    match version {
        Ok(output) if output.status.success() => {
            print!("{}", String::from_utf8_lossy(&output.stdout));
        }
        _ => bail!(
            "cargo-deny is not installed: `cargo install --locked cargo-deny` \
             (scripts/install-test-deps.sh does it)"
        ),
    }
    if fetch_advisory_database()? {
        return deny(&[], &["check"]);
    }
    match earlier_database() {
        Some((path, age)) => {
            banner(&format!(
                "the RustSec advisory database could not be fetched: advisories are checked \
                 against the copy fetched earlier at {} (last change {age}), which may miss \
                 recent advisories",
                path.display()
            ));
            cargo_fetch()?;
            deny(&["--offline"], &["check"])
        }
        None => {
            banner(
                "the RustSec advisory database could not be fetched (no network access to \
                 GitHub?) and none was fetched before: ADVISORIES ARE NOT CHECKED; licences, \
                 bans and sources are",
            );
            deny(&[], &["check", "licenses", "bans", "sources"])
        }
    }
}

/// `cargo deny fetch db`: true when the database is now current.
fn fetch_advisory_database() -> Result<bool> {
    let output = Command::new(env!("CARGO"))
        .args(["deny", "--color", "never", "fetch", "db"])
        .current_dir(workspace_root())
        .output()
        .context("running cargo deny fetch db")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr
            .lines()
            .find(|line| line.contains("fatal:") || line.contains("ERROR"))
            .unwrap_or("cargo deny fetch db failed");
        println!("cargo deny fetch db: {}", reason.trim());
    }
    Ok(output.status.success())
}

/// A database a previous `cargo deny` fetched, with the date of its last commit.
fn earlier_database() -> Option<(PathBuf, String)> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))?;
    let databases = cargo_home.join("advisory-dbs");
    let database = std::fs::read_dir(&databases)
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path.join(".git").exists() && path.join("crates").is_dir())?;
    let output = Command::new("git")
        .args(["log", "-1", "--format=%cs"])
        .current_dir(&database)
        .output()
        .ok()?;
    let age = String::from_utf8_lossy(&output.stdout).trim().to_string();
    output.status.success().then_some((
        database,
        if age.is_empty() {
            "unknown".into()
        } else {
            age
        },
    ))
}

fn cargo_fetch() -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(["fetch", "--locked", "--quiet"])
        .current_dir(workspace_root())
        .status()
        .context("running cargo fetch")?;
    if !status.success() {
        bail!("cargo fetch failed");
    }
    Ok(())
}

fn deny(global: &[&str], check: &[&str]) -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .arg("deny")
        .args(["--color", "never"])
        .args(global)
        .args(check)
        .current_dir(workspace_root())
        .status()
        .context("running cargo deny")?;
    if !status.success() {
        bail!("cargo deny {} failed (above)", check.join(" "));
    }
    Ok(())
}

fn banner(message: &str) {
    println!("{}", "!".repeat(78));
    println!("supply chain: {message}");
    println!("{}", "!".repeat(78));
}
