//! Project automation: `cargo xtask <command>`.
//!
//! Each concern lives in its own module so that they can grow independently:
//! conformance runners, benchmarks and test-system builders.

mod board;
mod ci;
mod console;
mod coordinator;
mod deb;
mod deb_test;
mod deploy_bench;
mod fuzz;
mod iso_installer;
mod job_bench;
mod lab;
mod layering;
mod link_order;
mod main_job;
mod pipeline;
mod runnable_share;
mod shared;
mod soak;
mod supply_chain;
mod support_matrix;
mod templates;
mod test_system;
mod worker_bench;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "lava-rs project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run LAVA's conformance checkers (../shared/conformance) against our binaries.
    Conformance {
        /// Which corpus: pipeline, templates or all; `runnable`: how many pipeline corpus
        /// jobs would run here, and what stops the others.
        #[arg(default_value = "all")]
        corpus: String,
        /// Only cases whose name contains this.
        #[arg(short = 'k')]
        filter: Option<String>,
    },
    /// Set up and run the main job: a real LAVA job on the embedded QEMU device.
    MainJob {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The whole test command: fmt, clippy -D warnings, workspace tests, conformance.
    Test {
        /// Extra options (`--quick`: tests only).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks, reported as ratios against LAVA's own tools where one exists.
    Bench {
        /// validate, render, console, coordinator, ...
        what: String,
        /// Extra arguments for the benchmark.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the embedded QEMU device's kernel and initramfs (target/test-system).
    TestSystem(test_system::Args),
    /// A tiny installer ISO, its preseed, device and job for the qemu-iso job
    /// (target/iso-installer; docs/qemu-iso.md).
    IsoInstaller(iso_installer::Args),
    /// A board rig for LAVA jobs: `u-boot` (QEMU arm64 + U-Boot, target/board-u-boot) or the
    /// x86 PC booting through `ipxe` or `grub` (target/board-pc), with tftpd-hpa, ser2net and
    /// power scripts. Prints the device file and the artefacts' URLs.
    TestBoard(board::Args),
    /// Name what holds the rigs' ports and every rig process left running by any clone
    /// (`--kill`: end them; fails when another program holds a rig port).
    QuietHost {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fuzz the parsers of untrusted input for a bounded time (docs/hardening.md).
    Fuzz(fuzz::Args),
    /// Run jobs back to back through lava-run and check nothing leaks (docs/hardening.md).
    Soak(soak::Args),
    /// Check that no crate reaches a crate above it (the design card's arrows).
    Layering,
    /// Rewrite bins/lava-dispatch/link-order.txt: lava-run's functions in the order a QEMU
    /// job runs them, for the release link (needs valgrind; perf for the native passes).
    LinkOrder {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the Debian packages lava-rs-dispatcher and lava-rs-coordinator (target/debian).
    Deb {
        /// `--no-build`: package the binaries already built; `--install-test`: then install
        /// them on this machine next to Debian's LAVA, check them and remove them (root).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A real lab: Debian's lava-server with PostgreSQL on loopback, our devices added
    /// (`--stop` ends it, `--port PORT`).
    Lab {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// `cargo deny check`: advisories (when the database can be fetched), licences, bans,
    /// sources.
    Deny,
    /// Write docs/support-matrix.md: which methods run, what stops the others, their proofs
    /// (`--fixtures-only` without ../shared).
    SupportMatrix {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Conformance { corpus, filter } => {
            let filter = filter.as_deref();
            let mut ok = true;
            match corpus.as_str() {
                "pipeline" => ok &= pipeline::conformance(filter)?,
                "templates" => ok &= templates::conformance(filter)?,
                "runnable" => ok &= runnable_share::report(filter)?,
                "all" => {
                    ok &= pipeline::conformance(filter)?;
                    ok &= templates::conformance(filter)?;
                }
                other => {
                    anyhow::bail!(
                        "unknown corpus {other:?}: expected pipeline, templates, runnable or all"
                    )
                }
            }
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Test { args } => ci::test(&args),
        Command::MainJob { args } => main_job::run(&args),
        Command::Bench { what, args } => match what.as_str() {
            "validate" => pipeline::bench_validate(&args),
            "render" => templates::bench(&args),
            "console" => console::bench(&args),
            "coordinator" => coordinator::bench(&args),
            "deploy" => deploy_bench::bench(&args),
            "job" => job_bench::bench(&args),
            "worker" => worker_bench::bench(&args),
            other => anyhow::bail!(
                "unknown benchmark {other:?}: expected validate, render, console, coordinator, deploy, job or worker"
            ),
        },
        Command::TestSystem(args) => test_system::run(args),
        Command::IsoInstaller(args) => iso_installer::run(args),
        Command::TestBoard(args) => board::run(args),
        Command::QuietHost { args } => board::quiet::run(&args),
        Command::Layering => layering::check(),
        Command::LinkOrder { args } => link_order::run(&args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Soak(args) => soak::run(args),
        Command::Deb { args } => {
            if args.iter().any(|a| a == "--install-test") {
                deb_test::run()
            } else {
                deb::run(&args)
            }
        }
        Command::Lab { args } => lab::run(&args),
        Command::Deny => supply_chain::check(),
        Command::SupportMatrix { args } => support_matrix::run(&args),
    }
}
