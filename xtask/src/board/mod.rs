//! `cargo xtask test-board u-boot`: a U-Boot board on this machine, wired as a lab wires one.
//!
//! The board is QEMU's arm64 `virt` machine with Debian's U-Boot 2023.01 as its firmware; the
//! lab around it is Debian's tftpd-hpa (LAVA's `/srv/tftp`), ser2net (the console server) and
//! power scripts (the PDU). Everything comes from Debian packages (`artefacts`), the lab's
//! files are written as an admin would write them (`rig`), and one supervisor owns the
//! console cable and the servers (`cable`). Any LAVA job written for a U-Boot board runs on
//! it, with LAVA's `lava-run` or ours: the command prints the device file and the artefacts'
//! URLs.
//!
//! ```text
//! cargo xtask test-board u-boot            # prepare (target/board-u-boot), start, print
//! cargo xtask test-board u-boot --prepare  # prepare and print only (tests start the rig)
//! cargo xtask test-board u-boot --stop     # power off, end every rig process
//! ```

mod artefacts;
mod cable;
mod rig;

use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::shared::workspace_root;

/// The default TCP port of the board's console (ser2net's telnet accepter, loopback only).
const CONSOLE_PORT: u16 = 52_011;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The board: `u-boot` (the only one so far).
    pub board: String,
    /// Prepare the artefacts and write the rig's files, without starting it.
    #[arg(long)]
    pub prepare: bool,
    /// Power the board off and end the rig's processes.
    #[arg(long, conflicts_with = "prepare")]
    pub stop: bool,
    /// Rebuild the artefacts even when they are up to date.
    #[arg(long)]
    pub force: bool,
    /// The console's TCP port on 127.0.0.1.
    #[arg(long, default_value_t = CONSOLE_PORT)]
    pub console_port: u16,
    /// The host address the board reaches (default: this host's address on its default
    /// route).
    #[arg(long)]
    pub host_ip: Option<std::net::Ipv4Addr>,
    /// Internal: run the rig's supervisor (started by `bin/rig-up`).
    #[arg(long, hide = true)]
    pub serve: bool,
}

pub fn run(args: Args) -> Result<()> {
    ensure!(
        args.board == "u-boot",
        "unknown board {:?}: the rig has `u-boot`",
        args.board
    );
    let rig = rig::Rig {
        dir: workspace_root().join("target").join("board-u-boot"),
        console_port: args.console_port,
        host_ip: match args.host_ip {
            Some(ip) => ip,
            None => rig::host_ip()?,
        },
    };
    if args.serve {
        return cable::serve(&rig);
    }
    if args.stop {
        if !rig.bin("rig-down").is_file() {
            eprintln!("test-board: no rig at {}", rig.dir.display());
            return Ok(());
        }
        return run_script(&rig.bin("rig-down"));
    }
    let artefacts = artefacts::prepare(&rig.dir, args.force)?;
    let xtask = std::env::current_exe().context("the xtask binary's path")?;
    let summary = rig::write(&rig, &artefacts, &xtask)?;
    if !args.prepare {
        if cable::running(&rig.run()) {
            eprintln!("test-board: the rig is already up");
        } else {
            run_script(&rig.bin("rig-up"))?;
            eprintln!("test-board: the rig is up; `cargo xtask test-board u-boot --stop` ends it");
        }
    }
    print!("{summary}");
    Ok(())
}

fn run_script(script: &std::path::Path) -> Result<()> {
    let status = Command::new(script)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    Ok(())
}
