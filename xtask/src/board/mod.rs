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
//! cargo xtask test-board u-boot --boot-check  # the bare boot, timed (no dispatcher)
//! ```
//!
//! `test-board ipxe` and `test-board grub` are an x86 PC built the same way from the same
//! pieces (`pc`, docs/board-pc.md): one PC rig under `target/board-pc`, two devices.

pub mod artefacts;
pub mod boot_check;
mod cable;
pub mod grub_efi;
pub mod job_cycle;
pub mod media;
pub mod nbd;
pub mod nfs_server;
pub mod pc;
pub mod qemu_nfs;
pub mod quiet;
pub mod rig;

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::shared::workspace_root;

/// The default TCP port of the board's console (ser2net's telnet accepter, loopback only).
const CONSOLE_PORT: u16 = 22_011;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The board: `u-boot`, `qemu-nfs` (a QEMU x86_64 guest with its root on NFS), the PC
    /// booting through `ipxe` or `grub` (one rig, `pc`), or `grub-efi` (QEMU x86_64 with
    /// OVMF: a network GRUB, or OVMF's UEFI shell; see `board::grub_efi`).
    pub board: String,
    /// Prepare the artefacts and write the rig's files, without starting it.
    #[arg(long)]
    pub prepare: bool,
    /// Power the board off and end the rig's processes.
    #[arg(long, conflicts_with = "prepare")]
    pub stop: bool,
    /// Boot the board once without a dispatcher (U-Boot interrupted, TFTP, booti, shell) and
    /// print the wall times; the rig is started for it when it is down, and stopped after.
    #[arg(long, conflicts_with_all = ["prepare", "stop"])]
    pub boot_check: bool,
    /// Upper bound, in seconds, of `--boot-check`'s boot.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Rebuild the artefacts even when they are up to date.
    #[arg(long)]
    pub force: bool,
    /// The console's TCP port on 127.0.0.1 (default: 22011 for u-boot, 22100 for the PC).
    #[arg(long)]
    pub console_port: Option<u16>,
    /// The host address the board reaches (default: this host's address on its default
    /// route).
    #[arg(long)]
    pub host_ip: Option<std::net::Ipv4Addr>,
    /// Internal: run the rig's supervisor (started by `bin/rig-up`).
    #[arg(long, hide = true)]
    pub serve: bool,
}

pub fn run(args: Args) -> Result<()> {
    match args.board.as_str() {
        "u-boot" => {}
        "qemu-nfs" => return qemu_nfs::run(&args),
        "ipxe" | "grub" | pc::RIG_NAME => return pc::run(&args),
        "grub-efi" => return grub_efi::run(args.prepare, args.stop, args.force),
        other => bail!(
            "unknown board {other:?}: the rigs are `u-boot`, `qemu-nfs`, `ipxe`, `grub` and `grub-efi`"
        ),
    }
    let rig = rig::Rig {
        board: "u-boot",
        nfs: true,
        dir: workspace_root().join("target").join("board-u-boot"),
        console_port: args.console_port.unwrap_or(CONSOLE_PORT),
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
    let mut summary = rig::write(&rig, &artefacts, &xtask)?;
    summary.push_str(&nbd::publish(&rig, args.force)?);
    if args.boot_check {
        let prepared = PreparedRig { rig, artefacts };
        let up = prepared.up()?;
        let report = boot_check::run(
            &prepared.rig,
            &prepared.artefacts,
            std::time::Duration::from_secs(args.timeout),
        );
        drop(up);
        let r = report?;
        println!(
            "bare boot: U-Boot prompt {:.1}s, kernel start {:.1}s, shell {:.1}s, \
             command answered and powered off {:.1}s",
            r.bootloader.as_secs_f64(),
            r.kernel.as_secs_f64(),
            r.shell.as_secs_f64(),
            r.total.as_secs_f64()
        );
        return Ok(());
    }
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

/// The rig prepared with its defaults (for `bench job --board`).
pub struct PreparedRig {
    pub rig: rig::Rig,
    pub artefacts: artefacts::Artefacts,
}

/// Prepare the artefacts and write the rig's files, as `test-board u-boot --prepare`.
pub fn prepared() -> Result<PreparedRig> {
    let rig = rig::Rig {
        board: "u-boot",
        nfs: true,
        dir: workspace_root().join("target").join("board-u-boot"),
        console_port: CONSOLE_PORT,
        host_ip: rig::host_ip()?,
    };
    let artefacts = artefacts::prepare(&rig.dir, false)?;
    let xtask = std::env::current_exe().context("the xtask binary's path")?;
    rig::write(&rig, &artefacts, &xtask)?;
    nbd::publish(&rig, false)?;
    Ok(PreparedRig { rig, artefacts })
}

impl PreparedRig {
    /// `fixtures/board/<name>.yaml` with the artefacts' URLs in place of its placeholders.
    pub fn job(&self, name: &str) -> Result<String> {
        let path = workspace_root().join(format!("fixtures/board/{name}.yaml"));
        let mut text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let a = &self.artefacts;
        for (placeholder, file) in [
            ("@KERNEL_URL@", &a.kernel),
            ("@RAMDISK_URL@", &a.ramdisk),
            ("@DTB_URL@", &a.dtb),
            ("@MODULES_URL@", &a.modules),
            ("@NFSROOTFS_URL@", &a.nfsrootfs),
            ("@USB_IMAGE_URL@", &a.usb_image),
        ] {
            text = text.replace(placeholder, &format!("file://{}", file.display()));
        }
        Ok(text)
    }

    /// The rig up until the guard drops (then down again, if this call started it).
    pub fn up(&self) -> Result<RigUp> {
        let started = !cable::running(&self.rig.run());
        if started {
            run_script(&self.rig.bin("rig-up"))?;
        }
        Ok(RigUp {
            rig_down: started.then(|| self.rig.bin("rig-down")),
        })
    }
}

/// Ends the rig on drop when it was started for its holder.
pub struct RigUp {
    rig_down: Option<std::path::PathBuf>,
}

impl Drop for RigUp {
    fn drop(&mut self) {
        if let Some(script) = &self.rig_down
            && let Err(e) = run_script(script)
        {
            eprintln!("test-board: {e:#}");
        }
    }
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
