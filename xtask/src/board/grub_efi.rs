//! `cargo xtask test-board grub-efi`: a UEFI board on this machine, booted by GRUB.
//!
//! The board is QEMU's x86_64 `q35` machine with Debian's OVMF (EDK2) as its firmware
//! (`-drive if=pflash`: the code read-only, a fresh copy of the variable store at each
//! `rig-up`). Its only boot device is a virtio NIC on QEMU's user network, whose built-in
//! TFTP server serves the rig's TFTP root at 10.0.2.2 (also the dispatcher's `tftp_dir`):
//! OVMF boots `grubx64.efi` from it by PXE, a network GRUB built here with
//! `grub-mkimage -O x86_64-efi` (efinet, tftp, linux, serial...) from Debian's
//! `grub-efi-amd64-bin`, whose `grub.cfg` shows one menu entry with a countdown, so GRUB
//! says "`c' for a command-line" as a board's GRUB does (on the firmware's console, which
//! OVMF puts on the serial port).
//! The console is a QEMU chardev socket with telnet (a console server); power is QEMU's
//! monitor on a TCP port (`system_reset` + `cont`, `stop`), like a PDU. The kernel and
//! initramfs are the embedded test system's (`cargo xtask test-system`).
//!
//! OVMF has no numbered boot menu (the `[n] Label` / `Start:` BDS menu of LAVA's
//! `uefi-menu` is ARM's old EDK2 BDS): the device's `uefi-menu` method waits for OVMF's
//! PXE lines instead and its `pxe-grub` sequence selects nothing (the boot order already
//! starts PXE), so `uefi-menu-interrupt` and `grub-efi-menu-selector` run with nothing to
//! select; GRUB's interrupt and commands, the kernel, login and test shell are real.
//!
//! `bin/rig-up shell` starts the same board for OVMF's built-in UEFI shell instead: a
//! blank FAT disk (made with `mformat`) first in the boot order and no PXE boot file, so
//! OVMF falls through to "EFI Internal Shell"; the `uefi` device (`device-shell.yaml`)
//! brings up the NIC (`connect -r`, `ifconfig -s eth0 dhcp`), fetches the kernel and
//! initramfs onto the disk with the shell's `tftp` and starts the kernel's EFI stub.
//!
//! ```text
//! cargo xtask test-board grub-efi            # prepare (target/board-grub-efi), start, print
//! cargo xtask test-board grub-efi --prepare  # prepare and print only (tests start the rig)
//! cargo xtask test-board grub-efi --stop     # end the rig's QEMU
//! ```

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::shared::workspace_root;

/// The console's TCP port (QEMU's telnet chardev, loopback only).
pub const CONSOLE_PORT: u16 = 22_150;
/// The QEMU monitor's TCP port (the rig's PDU, loopback only).
pub const MONITOR_PORT: u16 = 22_151;
/// Debian's OVMF firmware (4 MiB flash layout), code and variable store template.
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Debian's GRUB EFI modules.
const GRUB_MODULES_DIR: &str = "/usr/lib/grub/x86_64-efi";
/// The modules built into the network GRUB.
const GRUB_MODULES: &[&str] = &[
    "efinet",
    "tftp",
    "net",
    "linux",
    "normal",
    "serial",
    "terminal",
    "echo",
    "gzio",
    "boot",
    "configfile",
    "test",
];
/// The shell prompt of the test system's initramfs.
pub const PROMPT: &str = "/ # ";
/// The device type written in the device configuration.
pub const DEVICE_TYPE: &str = "ovmf-grub-efi";

/// The rig's files under `dir`.
pub struct Rig {
    pub dir: PathBuf,
}

impl Rig {
    /// The default place: `target/board-grub-efi`.
    pub fn default_place() -> Rig {
        Rig {
            dir: workspace_root().join("target").join("board-grub-efi"),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    /// A script of the rig (`rig-up`, `rig-down`, `hard-reset`, `power-off`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }
}

/// `cargo xtask test-board grub-efi [--prepare | --stop]`.
pub fn run(prepare_only: bool, stop: bool, force: bool) -> Result<()> {
    let rig = Rig::default_place();
    if stop {
        if !rig.bin("rig-down").is_file() {
            eprintln!("test-board: no rig at {}", rig.dir.display());
            return Ok(());
        }
        return run_script(&rig.bin("rig-down"));
    }
    let summary = prepare(&rig, force)?;
    if !prepare_only {
        run_script(&rig.bin("rig-up"))?;
        eprintln!(
            "test-board: the rig is up (paused until its first hard reset); \
             `cargo xtask test-board grub-efi --stop` ends it"
        );
    }
    print!("{summary}");
    Ok(())
}

fn require(path: &str, package: &str) -> Result<()> {
    ensure!(
        Path::new(path).exists(),
        "{path} is missing: install Debian's {package} (scripts/install-test-deps.sh)"
    );
    Ok(())
}

/// Builds the network GRUB and writes the rig's scripts, device, dispatcher
/// configuration and job; returns the summary (`rig.txt`).
pub fn prepare(rig: &Rig, force: bool) -> Result<String> {
    require(OVMF_CODE, "ovmf")?;
    require(OVMF_VARS, "ovmf")?;
    require(GRUB_MODULES_DIR, "grub-efi-amd64-bin")?;
    require("/usr/bin/grub-mkimage", "grub-common")?;
    require("/usr/bin/qemu-system-x86_64", "qemu-system-x86")?;
    require("/usr/bin/mformat", "mtools")?;
    let system = workspace_root().join("target").join("test-system");
    let kernel = system.join("vmlinuz");
    let ramdisk = system.join("initramfs.cpio.gz");
    ensure!(
        kernel.is_file() && ramdisk.is_file(),
        "the test system is not built ({}): run `cargo xtask test-system` first",
        system.display()
    );
    for dir in ["tftp", "bin", "run", "firmware"] {
        std::fs::create_dir_all(rig.path(dir))?;
    }
    let grub = rig.path("tftp/grubx64.efi");
    if force || !grub.is_file() {
        let status = Command::new("grub-mkimage")
            .args(["-O", "x86_64-efi", "-d", GRUB_MODULES_DIR, "-o"])
            .arg(&grub)
            .args(["-p", "(tftp,10.0.2.2)/"])
            .args(GRUB_MODULES)
            .status()
            .context("running grub-mkimage")?;
        ensure!(status.success(), "grub-mkimage failed ({status})");
    }
    std::fs::write(
        rig.path("tftp/grub.cfg"),
        "# The rig's GRUB: one entry and a countdown, so that GRUB offers \"`c' for a\n\
         # command-line\"; the job types its commands at grub>. GRUB keeps the firmware's\n\
         # console (OVMF's, on the serial port): GRUB's own `serial` terminal would read the\n\
         # same UART as OVMF's console driver, and each would take some of the typed keys.\n\
         set timeout=30\n\
         menuentry 'lava-rs grub-efi rig: the job types the boot commands' {\n\
         \x20 echo 'press c for the command line'\n}\n",
    )?;
    let blank = rig.path("firmware/esp-blank.img");
    if force || !blank.is_file() {
        // 32 MiB FAT: where the UEFI shell's `tftp` writes the kernel and initramfs.
        let _ = std::fs::remove_file(&blank);
        let status = Command::new("mformat")
            .args(["-C", "-h", "16", "-t", "64", "-s", "63", "-i"])
            .arg(&blank)
            .arg("::")
            .status()
            .context("running mformat (mtools)")?;
        ensure!(status.success(), "mformat failed ({status})");
    }
    write_scripts(rig)?;
    std::fs::write(rig.path("device.yaml"), device(rig))?;
    std::fs::write(rig.path("device-shell.yaml"), shell_device(rig))?;
    std::fs::write(
        rig.path("dispatcher.yaml"),
        format!(
            "# QEMU's user network: the board reaches this host at 10.0.2.2, whose TFTP\n\
             # server serves the rig's TFTP root (also LAVA's tftp_dir).\n\
             dispatcher_ip: 10.0.2.2\ntftp_dir: {}\n",
            rig.path("tftp").display()
        ),
    )?;
    let url = |p: &Path| format!("file://{}", p.display());
    let job =
        std::fs::read_to_string(workspace_root().join("fixtures/board-uefi/grub-efi-job.yaml"))
            .context("reading fixtures/board-uefi/grub-efi-job.yaml")?
            .replace("@KERNEL_URL@", &url(&kernel))
            .replace("@RAMDISK_URL@", &url(&ramdisk));
    std::fs::write(rig.path("grub-efi-job.yaml"), job)?;
    let shell_job =
        std::fs::read_to_string(workspace_root().join("fixtures/board-uefi/uefi-shell-job.yaml"))
            .context("reading fixtures/board-uefi/uefi-shell-job.yaml")?
            .replace("@KERNEL_URL@", &url(&kernel))
            .replace("@RAMDISK_URL@", &url(&ramdisk));
    std::fs::write(rig.path("uefi-shell-job.yaml"), shell_job)?;
    let mut out = String::new();
    writeln!(out, "device_type: {DEVICE_TYPE}")?;
    writeln!(out, "device: {}", rig.path("device.yaml").display())?;
    writeln!(out, "dispatcher: {}", rig.path("dispatcher.yaml").display())?;
    writeln!(out, "job: {}", rig.path("grub-efi-job.yaml").display())?;
    writeln!(out, "prompt: {PROMPT}")?;
    writeln!(out, "kernel: {}", url(&kernel))?;
    writeln!(out, "ramdisk: {}", url(&ramdisk))?;
    writeln!(out, "console: telnet 127.0.0.1 {CONSOLE_PORT}")?;
    writeln!(
        out,
        "shell-device: {}",
        rig.path("device-shell.yaml").display()
    )?;
    writeln!(
        out,
        "shell-job: {}",
        rig.path("uefi-shell-job.yaml").display()
    )?;
    std::fs::write(rig.path("rig.txt"), &out)?;
    Ok(out)
}

fn write_script(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// `rig-up` (QEMU daemonized and paused, a fresh variable store), `rig-down`, and the
/// power commands speaking to QEMU's monitor.
fn write_scripts(rig: &Rig) -> Result<()> {
    let run = rig.path("run");
    let pidfile = run.join("qemu.pid");
    let monitor = |commands: &str| {
        format!(
            "#!/bin/bash\n# The rig's PDU: QEMU's monitor on 127.0.0.1:{MONITOR_PORT}.\nset -eu\n\
             exec 3<>/dev/tcp/127.0.0.1/{MONITOR_PORT}\nprintf '{commands}' >&3\n\
             # Let the monitor read and answer before closing.\ntimeout 0.5 cat <&3 >/dev/null || true\n"
        )
    };
    write_script(&rig.bin("hard-reset"), &monitor("system_reset\\ncont\\n"))?;
    write_script(&rig.bin("power-off"), &monitor("stop\\n"))?;
    write_script(
        &rig.bin("rig-up"),
        &format!(
            "#!/bin/bash\n# Starts the board (QEMU + OVMF) paused: the first hard reset powers it on.\n\
             # `rig-up` boots GRUB by PXE; `rig-up shell` boots OVMF's UEFI shell instead: a\n\
             # blank FAT disk first in the boot order (nothing to boot on it), no PXE boot file.\n\
             set -eu\n\
             if [ -s {pid} ] && kill -0 \"$(cat {pid})\" 2>/dev/null; then echo 'rig-up: already up'; exit 0; fi\n\
             cp {vars} {fw}/vars.fd\n\
             net=tftp={tftp},bootfile=grubx64.efi\n\
             disk=()\n\
             if [ \"${{1:-}}\" = shell ]; then\n\
             \x20 cp {fw}/esp-blank.img {fw}/esp.img\n\
             \x20 net=tftp={tftp}\n\
             \x20 disk=(-drive if=none,id=esp,format=raw,file={fw}/esp.img -device virtio-blk-pci,drive=esp,bootindex=1)\n\
             fi\n\
             exec qemu-system-x86_64 -machine q35 -m 768 -smp 1 -no-user-config -nodefaults \\\n\
             \x20 -display none -vga none -daemonize -pidfile {pid} -S \\\n\
             \x20 -drive if=pflash,format=raw,unit=0,readonly=on,file={code} \\\n\
             \x20 -drive if=pflash,format=raw,unit=1,file={fw}/vars.fd \\\n\
             \x20 \"${{disk[@]}}\" \\\n\
             \x20 -netdev user,id=n0,$net \\\n\
             \x20 -device virtio-net-pci,netdev=n0,romfile= \\\n\
             \x20 -chardev socket,id=console,host=127.0.0.1,port={console},server=on,wait=off,telnet=on \\\n\
             \x20 -serial chardev:console \\\n\
             \x20 -monitor tcp:127.0.0.1:{monitor},server=on,wait=off\n",
            pid = pidfile.display(),
            vars = OVMF_VARS,
            code = OVMF_CODE,
            fw = rig.path("firmware").display(),
            tftp = rig.path("tftp").display(),
            console = CONSOLE_PORT,
            monitor = MONITOR_PORT,
        ),
    )?;
    write_script(
        &rig.bin("rig-down"),
        &format!(
            "#!/bin/bash\n# Ends the board's QEMU (the pid QEMU wrote), waiting until it is gone.\n\
             set -u\n\
             [ -s {pid} ] || exit 0\n\
             pid=$(cat {pid})\n\
             if kill -0 \"$pid\" 2>/dev/null; then\n\
             \x20 kill \"$pid\"\n\
             \x20 for _ in $(seq 1 50); do kill -0 \"$pid\" 2>/dev/null || break; sleep 0.1; done\n\
             \x20 kill -9 \"$pid\" 2>/dev/null || true\n\
             fi\n\
             rm -f {pid}\n",
            pid = pidfile.display(),
        ),
    )?;
    Ok(())
}

/// The device configuration: the console and PDU of this rig, `uefi-menu` waiting for
/// OVMF's PXE boot (no numbered menu to select in), `grub-efi` with the network boot
/// commands.
fn device(rig: &Rig) -> String {
    format!(
        r#"# The lava-rs grub-efi rig (written by `cargo xtask test-board grub-efi`): QEMU q35 with
# Debian's OVMF, PXE-booting a network GRUB from QEMU's TFTP server.
hostname: ovmf-grub-efi01
device_type: {DEVICE_TYPE}
constants:
  posix:
    lava_test_sh_cmd: /bin/sh
    lava_test_results_dir: /lava-%s
    lava_test_shell_file: ~/.bashrc
  grub-efi:
    interrupt-prompt: 'for a command-line'
    interrupt-character: 'c'
    # 'c' alone: a line end after it would be an empty GRUB command, a second grub>
    # prompt that the first boot command's wait would take for its own.
    interrupt-newline: False
    error-messages:
    - "error: couldn't send network packet"
    - "error: you need to load the kernel first."
    - "error: file '(.*)' not found"
    - "error: timeout reading"
    - "error: can't find command"
  default-shell-prompt: 'lava-test: # '
  kernel-start-message: 'Linux version [0-9]'
  spawn_maxread: '4092'
  shutdown-message: 'reboot: Restarting system'
  failure_retry: 1
  boot_retry: 1
commands:
  connections:
    uart0:
      connect: telnet 127.0.0.1 {console}
      tags:
      - primary
  hard_reset: {reset}
  power_off: {off}
character_delays:
  # GRUB's serial input under QEMU's TCG drops characters typed 20 ms apart.
  boot: 100
  test: 0
actions:
  deploy:
    connections:
      serial:
    methods:
      tftp:
  boot:
    connections:
      serial:
    methods:
      uefi-menu:
        menu_options: pxe-grub
        parameters:
          # OVMF prints no interrupt prompt or numbered menu: its PXE lines stand in.
          interrupt_prompt: 'Start PXE over IPv4'
          interrupt_string: ''
          item_markup:
          - '['
          - ']'
          item_class: '0-9'
          separator: ' '
          bootloader_prompt: 'NBP file downloaded successfully'
        pxe-grub: []
      grub-efi:
        menu_options: pxe-grub
        parameters:
          bootloader_prompt: 'grub>'
        ramdisk:
          commands:
          - 'linux (tftp,{{SERVER_IP}})/{{KERNEL}} console=ttyS0,115200'
          - 'initrd (tftp,{{SERVER_IP}})/{{RAMDISK}}'
          - boot
timeouts:
  actions:
    uefi-menu-interrupt:
      minutes: 2
    grub-efi-menu-selector:
      minutes: 1
    bootloader-interrupt:
      minutes: 1
    bootloader-commands:
      minutes: 3
    auto-login-action:
      minutes: 3
    power-off:
      seconds: 10
  connections:
    uefi-menu-interrupt:
      minutes: 2
    grub-efi-menu-selector:
      minutes: 1
    bootloader-interrupt:
      minutes: 1
    bootloader-commands:
      minutes: 3
"#,
        console = CONSOLE_PORT,
        reset = rig.bin("hard-reset").display(),
        off = rig.bin("power-off").display(),
    )
}

/// The device configuration of the same board started by `rig-up shell`: OVMF's UEFI
/// shell (`method: uefi`, no menu), which brings up the NIC, fetches the kernel and
/// initramfs with its `tftp` onto the FAT disk and starts the kernel's EFI stub.
fn shell_device(rig: &Rig) -> String {
    format!(
        r#"# The lava-rs UEFI shell rig (written by `cargo xtask test-board grub-efi`, started with
# `bin/rig-up shell`): QEMU q35 with Debian's OVMF booting its built-in UEFI shell.
hostname: ovmf-uefi-shell01
device_type: ovmf-uefi-shell
constants:
  posix:
    lava_test_sh_cmd: /bin/sh
    lava_test_results_dir: /lava-%s
    lava_test_shell_file: ~/.bashrc
  uefi:
    error-messages:
    - 'No network interface card found'
    - 'is not recognized as an internal or external command'
    - 'tftp: .*failed'
  default-shell-prompt: 'lava-test: # '
  kernel-start-message: 'Linux version [0-9]'
  spawn_maxread: '4092'
  shutdown-message: 'reboot: Restarting system'
  failure_retry: 1
  boot_retry: 1
commands:
  connections:
    uart0:
      connect: telnet 127.0.0.1 {console}
      tags:
      - primary
  hard_reset: {reset}
  power_off: {off}
character_delays:
  boot: 100
  test: 0
actions:
  deploy:
    connections:
      serial:
    methods:
      tftp:
  boot:
    connections:
      serial:
    methods:
      uefi:
        parameters:
          # The shell colours "ESC" (escape sequences inside "Press ESC in"): the file name is plain.
          shell_interrupt_prompt: 'startup.nsh'
          shell_interrupt_string: ' '
          # The shell's prompt, and the one after `fs0:`.
          bootloader_prompt: '(Shell|FS0:.)> '
          shell_menu: ''
        ramdisk:
          commands:
          - connect -r
          - ifconfig -s eth0 dhcp
          # DHCP completes in the background: wait 3 s before the first transfer.
          - stall 3000000
          - 'fs0:'
          - 'tftp {{SERVER_IP}} {{KERNEL}} vmlinuz'
          - 'tftp {{SERVER_IP}} {{RAMDISK}} initrd'
          - 'vmlinuz initrd=initrd console=ttyS0,115200'
timeouts:
  actions:
    uefi-shell-interrupt:
      minutes: 2
    bootloader-commands:
      minutes: 3
    auto-login-action:
      minutes: 3
    power-off:
      seconds: 10
  connections:
    uefi-shell-interrupt:
      minutes: 2
    bootloader-commands:
      minutes: 2
"#,
        console = CONSOLE_PORT,
        reset = rig.bin("hard-reset").display(),
        off = rig.bin("power-off").display(),
    )
}

fn run_script(script: &Path) -> Result<()> {
    let status = Command::new(script)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    Ok(())
}
