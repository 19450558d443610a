//! `cargo xtask test-board ipxe` and `test-board grub`: an x86 PC on this machine, wired as a
//! lab wires one, booting through iPXE or through GRUB 2 from LAVA's TFTP directory.
//!
//! One board serves both: QEMU's `pc` machine (x86_64, TCG) with SeaBIOS and Debian's iPXE
//! ROM (`ipxe-qemu`'s `efi-virtio.rom`, QEMU's own choice for its virtio network card) as the
//! network boot firmware, console on the first serial port (SeaBIOS and iPXE print there when
//! the iPXE device's power commands turn SeaBIOS's serial console on, fw_cfg
//! `etc/sercon-port`; the GRUB device leaves it off, see `bios_serial_console`), on the rig's
//! persistent cable behind ser2net
//! (`cable.rs`), power scripts like the U-Boot board's (`rig::write_scripts`). The network is
//! QEMU's user-mode network; its DHCP server hands out the PXE boot file, a GRUB 2 network
//! image made with `grub-mknetdir` from Debian's `grub-pc-bin` and served by QEMU's built-in
//! TFTP server at 10.0.2.2 (the lab's PXE server). So a power-on goes SeaBIOS, iPXE (`Press
//! Ctrl-B for the iPXE command line...`), DHCP, GRUB chain-loaded over PXE, GRUB's menu (10 s,
//! `… or 'c' for a command-line`):
//!
//! - the **ipxe** device (`lava-rs-pc-ipxe`, extending LAVA's `x86.jinja2`) interrupts iPXE with
//!   Ctrl-B and types LAVA's `ipxe` commands at `iPXE>`: `dhcp net0`, `kernel
//!   tftp://{SERVER_IP}/…`, `initrd …`, `boot`;
//! - the **grub** device (`lava-rs-pc-grub`, extending LAVA's `base-grub.jinja2`) lets iPXE
//!   chain GRUB, interrupts GRUB's menu with `c` and types LAVA's `grub` commands at `grub>`:
//!   `net_bootp`, `linux (tftp,{SERVER_IP})/…`, `initrd …`, `boot`.
//!
//! Both fetch the job's files from the rig's tftpd-hpa (LAVA's `/srv/tftp`) at the host's own
//! address (`dispatcher_ip`; QEMU answers TFTP at 10.0.2.2 itself). The kernel and ramdisk are
//! `cargo xtask test-system`'s (Debian's x86_64 kernel, a busybox initramfs with the prompt
//! `/ # `). Layout under `<target>/board-pc/`: `bin/` (the rig's scripts), `run/`,
//! `netboot/` (QEMU's TFTP directory: GRUB), `devices/` (two dictionaries, their device
//! YAML), `device-types/` (LAVA 2023.01's templates from Debian's `lava-server` and ours),
//! `dispatcher.yaml`, `rig-ipxe.txt` and `rig-grub.txt` (what `test-board NAME` prints).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use super::artefacts::unpack_lava_device_types;
use super::rig::{self, Rig};
use crate::test_system::{self, fetch_debs, file_name, run_captured};

/// The default TCP port of the PC's console (ser2net's telnet accepter, loopback only).
pub const CONSOLE_PORT: u16 = 22_100;
/// The rig's name on `test-board`'s command line for its own supervisor (`test-board pc
/// --serve`): one PC serves the `ipxe` and the `grub` device.
pub const RIG_NAME: &str = "pc";
/// GRUB's network image in the PXE directory: the DHCP boot file.
const GRUB_BOOT_FILE: &str = "boot/grub/i386-pc/core.0";
/// Debian's iPXE ROM QEMU loads for its virtio network card (`ipxe-qemu`).
const IPXE_ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";
/// Debian's GRUB 2 BIOS modules (`grub-pc-bin`).
const GRUB_MODULES: &str = "/usr/lib/grub/i386-pc";
/// How long GRUB's menu waits before its default entry, in seconds.
const GRUB_MENU_TIMEOUT: u32 = 10;

/// A boot path of the PC: the firmware LAVA drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// iPXE, interrupted with Ctrl-B.
    Ipxe,
    /// GRUB 2, chain-loaded over PXE, interrupted with `c`.
    Grub,
}

impl Firmware {
    /// `test-board`'s name for it.
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Ipxe => "ipxe",
            Firmware::Grub => "grub",
        }
    }
    /// The device type (the template's name without `.jinja2`).
    pub fn device_type(self) -> &'static str {
        match self {
            Firmware::Ipxe => "lava-rs-pc-ipxe",
            Firmware::Grub => "lava-rs-pc-grub",
        }
    }
    /// The device's hostname (the dictionary's name).
    pub fn hostname(self) -> &'static str {
        match self {
            Firmware::Ipxe => "lava-rs-pc-ipxe01",
            Firmware::Grub => "lava-rs-pc-grub01",
        }
    }
    fn template(self) -> &'static str {
        match self {
            Firmware::Ipxe => {
                include_str!("../../../fixtures/board/device-types/lava-rs-pc-ipxe.jinja2")
            }
            Firmware::Grub => {
                include_str!("../../../fixtures/board/device-types/lava-rs-pc-grub.jinja2")
            }
        }
    }
    /// `test-board NAME`'s board, if it is the PC's.
    pub fn from_name(name: &str) -> Option<Firmware> {
        match name {
            "ipxe" => Some(Firmware::Ipxe),
            "grub" => Some(Firmware::Grub),
            _ => None,
        }
    }
    const ALL: [Firmware; 2] = [Firmware::Ipxe, Firmware::Grub];
}

/// The PC rig, with its defaults or the given console port and host address.
pub fn rig(console_port: Option<u16>, host_ip: Option<std::net::Ipv4Addr>) -> Result<Rig> {
    Ok(Rig {
        board: RIG_NAME,
        dir: crate::shared::workspace_root()
            .join("target")
            .join("board-pc"),
        nfs: false,
        console_port: console_port.unwrap_or(CONSOLE_PORT),
        host_ip: match host_ip {
            Some(ip) => ip,
            None => rig::host_ip()?,
        },
    })
}

/// What the PC boots, as a lab would publish it.
#[derive(Debug, Clone)]
pub struct Artefacts {
    /// Debian's x86_64 kernel (bzImage), `test-system`'s.
    pub kernel: PathBuf,
    /// `test-system`'s busybox initramfs (gzip-compressed newc).
    pub ramdisk: PathBuf,
    /// LAVA 2023.01's device-type templates, with ours written next to them.
    pub device_types: PathBuf,
    /// QEMU's TFTP directory: GRUB's network image, modules and `grub.cfg`.
    pub netboot: PathBuf,
}

/// Build (or reuse) the PC's software under `rig.dir`.
pub fn prepare(rig: &Rig, force: bool) -> Result<Artefacts> {
    for (path, package) in [(IPXE_ROM, "ipxe-qemu"), (GRUB_MODULES, "grub-pc-bin")] {
        ensure!(
            Path::new(path).exists(),
            "{path} is missing (Debian's {package}: scripts/install-test-deps.sh, \
             install_pc_board_rig)"
        );
    }
    // test-system's own outputs, rebuilt by `cargo xtask test-system --force`, not here.
    let ts = test_system::build(&test_system::cache_dir(), false)?;
    let debs = rig.dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    let lava_server = fetch_debs(&debs, &["lava-server"])?.remove(0);
    let a = Artefacts {
        kernel: ts.bzimage,
        ramdisk: ts.initramfs,
        device_types: rig.dir.join("device-types"),
        netboot: rig.dir.join("netboot"),
    };
    // LAVA's templates, unpacked again when the package changes.
    let stamp = rig.dir.join("device-types.stamp");
    let wanted = file_name(&lava_server);
    if force
        || !a.device_types.join("x86.jinja2").is_file()
        || std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str())
    {
        unpack_lava_device_types(&lava_server, &rig.dir, &a.device_types)?;
        std::fs::write(&stamp, &wanted)?;
    }
    // GRUB's PXE directory: grub-mknetdir's image (prefix `(pxe)/boot/grub`: its modules and
    // grub.cfg come from the PXE server it was loaded from) and a menu on the serial port.
    if force || !a.netboot.join(GRUB_BOOT_FILE).is_file() {
        if a.netboot.exists() {
            std::fs::remove_dir_all(&a.netboot)?;
        }
        std::fs::create_dir_all(&a.netboot)?;
        run_captured(
            Command::new("grub-mknetdir")
                .arg(format!("--net-directory={}", a.netboot.display()))
                .arg("--subdir=boot/grub")
                .arg("-d")
                .arg(GRUB_MODULES),
        )
        .context("grub-mknetdir (Debian's grub-pc-bin)")?;
        ensure!(
            a.netboot.join(GRUB_BOOT_FILE).is_file(),
            "grub-mknetdir wrote no {GRUB_BOOT_FILE} under {}",
            a.netboot.display()
        );
    }
    std::fs::write(a.netboot.join("boot/grub/grub.cfg"), grub_cfg())?;
    Ok(a)
}

/// The PC's GRUB menu: GRUB on the serial port (not the BIOS console, whose serial
/// redirection drops fast input), one entry and a timeout, so that LAVA's interrupt (`c`)
/// reaches the `grub>` prompt. No text of the menu may contain the prompt: LAVA's wait for
/// `grub>` after the interrupt would match the menu instead of the command line.
fn grub_cfg() -> String {
    format!(
        "# The lava-rs PC's GRUB menu (written by `cargo xtask test-board grub`).\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial\n\
         terminal_output serial\n\
         set timeout={GRUB_MENU_TIMEOUT}\n\
         menuentry 'Wait for the dispatcher' {{\n    \
         echo 'lava-rs PC: no job; power-cycle the board'\n    \
         sleep 3600\n\
         }}\n"
    )
}

/// The QEMU arguments that make the PC (without its serial port, which power-on adds, and
/// without the BIOS setting of [`bios_serial_console`], which the iPXE device's power
/// commands add).
pub fn machine_args(a: &Artefacts) -> Vec<String> {
    let mut args: Vec<String> = [
        "-machine", "pc", "-cpu", "qemu64", "-smp", "1", "-m", "512", "-vga", "none",
    ]
    .map(String::from)
    .to_vec();
    args.push("-netdev".into());
    args.push(format!(
        "user,id=net0,tftp={},bootfile={GRUB_BOOT_FILE}",
        a.netboot.display()
    ));
    args.extend(["-device", "virtio-net-pci,netdev=net0", "-boot", "order=n"].map(String::from));
    args
}

/// The BIOS setting "console redirection to COM1" (SeaBIOS's serial console, fw_cfg
/// `etc/sercon-port`), as extra arguments of the power commands: SeaBIOS, and the iPXE ROM
/// through the BIOS console, then print on the serial port and read keys from it. Only the
/// iPXE device turns it on. With it on, GRUB loses keys: SeaBIOS keeps polling the UART for
/// its console while GRUB calls the BIOS (PXE, timer), taking characters GRUB's own serial
/// terminal was to read (measured: `net_bootp` arrived as `netoot`), as a PC's BIOS
/// redirection fights a bootloader that drives the UART itself. So the GRUB device boots
/// with it off, as a lab admin sets such a PC.
fn bios_serial_console(rig: &Rig) -> String {
    format!(
        "-fw_cfg name=etc/sercon-port,file={}",
        rig.run().join("sercon-port").display()
    )
}

/// Write the rig's scripts, both dictionaries, their device YAML and the dispatcher
/// configuration; return the summary lines of each firmware.
pub fn write(rig: &Rig, a: &Artefacts, xtask: &Path) -> Result<Vec<(Firmware, String)>> {
    rig::write_scripts(
        rig,
        xtask,
        "docs/board-pc.md",
        "qemu-system-x86_64",
        &machine_args(a),
    )?;
    // fw_cfg etc/sercon-port: the port as two bytes, little-endian.
    std::fs::write(rig.run().join("sercon-port"), 0x3f8u16.to_le_bytes())?;
    std::fs::write(
        rig.dispatcher(),
        format!(
            "# The PC reaches this host at its own address through QEMU's user-mode network\n\
             # (10.0.2.2 answers TFTP itself, with GRUB): LAVA's {{SERVER_IP}}.\n\
             dispatcher_ip: {}\n",
            rig.host_ip
        ),
    )?;
    let renderer = lava_device::Renderer::new([a.device_types.clone()]);
    let url = |p: &Path| format!("file://{}", p.display());
    let mut summaries = Vec::new();
    for firmware in Firmware::ALL {
        std::fs::write(
            a.device_types
                .join(format!("{}.jinja2", firmware.device_type())),
            firmware.template(),
        )?;
        let dictionary = dictionary_path(rig, firmware);
        std::fs::write(&dictionary, dictionary_text(rig, firmware))?;
        let rendered = renderer
            .render_file(&dictionary, &Default::default())
            .with_context(|| format!("rendering {}", dictionary.display()))?;
        std::fs::write(device_path(rig, firmware), rendered)?;
        let mut out = String::new();
        writeln!(out, "device_type: {}", firmware.device_type())?;
        writeln!(out, "device: {}", device_path(rig, firmware).display())?;
        writeln!(out, "dispatcher: {}", rig.dispatcher().display())?;
        writeln!(out, "prompt: {}", test_system::PROMPT)?;
        writeln!(out, "kernel: {}", url(&a.kernel))?;
        writeln!(out, "ramdisk: {}", url(&a.ramdisk))?;
        std::fs::write(summary_path(rig, firmware), &out)?;
        summaries.push((firmware, out));
    }
    Ok(summaries)
}

/// `devices/<hostname>.jinja2`.
pub fn dictionary_path(rig: &Rig, firmware: Firmware) -> PathBuf {
    rig.dir
        .join("devices")
        .join(format!("{}.jinja2", firmware.hostname()))
}

/// `devices/<hostname>.yaml`, the rendered device.
pub fn device_path(rig: &Rig, firmware: Firmware) -> PathBuf {
    rig.dir
        .join("devices")
        .join(format!("{}.yaml", firmware.hostname()))
}

/// `rig-<name>.txt`: the lines `test-board NAME` prints.
pub fn summary_path(rig: &Rig, firmware: Firmware) -> PathBuf {
    rig.dir.join(format!("rig-{}.txt", firmware.name()))
}

/// The device dictionary as a lab admin writes one for this PC: the device type, and how the
/// lab wired it (console server port, power commands).
fn dictionary_text(rig: &Rig, firmware: Firmware) -> String {
    let (bios, settings) = match firmware {
        Firmware::Ipxe => (
            "BIOS console redirection to COM1 on: iPXE prints through the BIOS console",
            format!(" {}", bios_serial_console(rig)),
        ),
        Firmware::Grub => (
            "BIOS console redirection off: GRUB drives the serial port itself",
            String::new(),
        ),
    };
    format!(
        r#"{{# {host}: the lava-rs PC rig booting through {fw} (written by `cargo xtask test-board {fw}`). #}}
{{% extends '{device_type}.jinja2' %}}
{{# The console: ser2net's telnet port; the connection stays open across power cycles. #}}
{{% set connection_command = 'telnet 127.0.0.1 {port}' %}}
{{# Power control, like a PDU: scripts that start and stop the PC (QEMU) in the background, #}}
{{# with this PC's firmware setting ({bios}). #}}
{{% set power_on_command = '{on}{settings}' %}}
{{% set power_off_command = '{off}' %}}
{{% set hard_reset_command = '{reset}{settings}' %}}
"#,
        host = firmware.hostname(),
        fw = firmware.name(),
        device_type = firmware.device_type(),
        port = rig.console_port,
        on = rig.bin("power-on").display(),
        off = rig.bin("power-off").display(),
        reset = rig.bin("hard-reset").display(),
    )
}

/// `test-board ipxe|grub|pc` (the supervisor, `--serve`, is started as `pc`).
pub fn run(args: &super::Args) -> Result<()> {
    let rig = rig(args.console_port, args.host_ip)?;
    if args.serve {
        return super::cable::serve(&rig);
    }
    if args.stop {
        if !rig.bin("rig-down").is_file() {
            eprintln!("test-board: no rig at {}", rig.dir.display());
            return Ok(());
        }
        return super::run_script(&rig.bin("rig-down"));
    }
    if args.boot_check {
        bail!("--boot-check is the U-Boot board's; the PC's jobs are its check (e2e_pc_board)");
    }
    let wanted = Firmware::from_name(&args.board);
    let artefacts = prepare(&rig, args.force)?;
    let xtask = std::env::current_exe().context("the xtask binary's path")?;
    let summaries = write(&rig, &artefacts, &xtask)?;
    if !args.prepare {
        if super::cable::running(&rig.run()) {
            eprintln!("test-board: the rig is already up");
        } else {
            super::run_script(&rig.bin("rig-up"))?;
            eprintln!(
                "test-board: the rig is up; `cargo xtask test-board {} --stop` ends it",
                args.board
            );
        }
    }
    for (firmware, summary) in summaries {
        if wanted.is_none_or(|w| w == firmware) {
            print!("{summary}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(firmware: Firmware) -> Option<(serde_yaml::Value, String)> {
        let Some(lava) = super::super::rig::lava_templates_for_tests("board-pc", "x86.jinja2")
        else {
            eprintln!("skipping: no LAVA templates (cargo xtask test-board ipxe --prepare)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let rig = Rig {
            board: RIG_NAME,
            nfs: false,
            dir: dir.path().to_path_buf(),
            console_port: 4321,
            host_ip: "192.0.2.7".parse().unwrap(),
        };
        let types = dir.path().join("types");
        std::fs::create_dir_all(&types).unwrap();
        std::fs::write(
            types.join(format!("{}.jinja2", firmware.device_type())),
            firmware.template(),
        )
        .unwrap();
        let path = dir.path().join("pc.jinja2");
        std::fs::write(&path, dictionary_text(&rig, firmware)).unwrap();
        let text = lava_device::Renderer::new([types, lava])
            .render_file(&path, &Default::default())
            .unwrap();
        Some((serde_yaml::from_str(&text).unwrap(), text))
    }

    fn commands(method: &serde_yaml::Value) -> Vec<String> {
        method["ramdisk"]["commands"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn the_ipxe_dictionary_renders_a_pc_wired_to_the_rig() {
        let Some((device, text)) = render(Firmware::Ipxe) else {
            return;
        };
        assert_eq!(
            device["commands"]["connect"], "telnet 127.0.0.1 4321",
            "{text}"
        );
        let ipxe = &device["actions"]["boot"]["methods"]["ipxe"];
        assert_eq!(ipxe["parameters"]["bootloader_prompt"], "iPXE>");
        let ramdisk = commands(ipxe);
        assert_eq!(ramdisk.first().map(String::as_str), Some("dhcp net0"));
        assert!(
            ramdisk
                .iter()
                .any(|c| c.starts_with("kernel tftp://{SERVER_IP}/{KERNEL}"))
                && ramdisk.contains(&"initrd tftp://{SERVER_IP}/{RAMDISK}".to_string())
                && ramdisk.last().map(String::as_str) == Some("boot"),
            "{ramdisk:?}"
        );
        let ipxe_constants = &device["constants"]["ipxe"];
        assert_eq!(
            ipxe_constants["interrupt-prompt"],
            "Press Ctrl-B for the iPXE command line"
        );
        assert!(
            device["character_delays"]["boot"].as_u64().is_some(),
            "{text}"
        );
    }

    #[test]
    fn the_grub_dictionary_renders_a_pc_wired_to_the_rig() {
        let Some((device, text)) = render(Firmware::Grub) else {
            return;
        };
        assert_eq!(
            device["commands"]["connect"], "telnet 127.0.0.1 4321",
            "{text}"
        );
        let grub = &device["actions"]["boot"]["methods"]["grub"];
        assert_eq!(grub["parameters"]["bootloader_prompt"], "grub>");
        let ramdisk = commands(grub);
        assert_eq!(ramdisk.first().map(String::as_str), Some("net_bootp"));
        assert!(
            ramdisk
                .iter()
                .any(|c| c.starts_with("linux (tftp,{SERVER_IP})/{KERNEL} console=ttyS0,115200"))
                && ramdisk.contains(&"initrd (tftp,{SERVER_IP})/{RAMDISK}".to_string())
                && ramdisk.last().map(String::as_str) == Some("boot"),
            "{ramdisk:?}"
        );
        assert_eq!(device["constants"]["grub"]["interrupt-character"], "c");
    }

    #[test]
    fn the_grub_menu_is_on_the_serial_port_with_a_timeout() {
        let cfg = grub_cfg();
        assert!(cfg.contains("terminal_input serial\n"));
        assert!(cfg.contains("terminal_output serial\n"));
        assert!(cfg.contains(&format!("set timeout={GRUB_MENU_TIMEOUT}\n")));
        assert!(cfg.contains("menuentry "));
        assert!(
            !cfg.contains("grub>"),
            "the menu must not show the prompt: {cfg}"
        );
    }
}
