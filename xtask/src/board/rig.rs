//! The lab around the board: the scripts a lab admin would write (power control like a PDU,
//! the rig's services up and down: `write_scripts`, shared by every board of `test-board`),
//! the device dictionary, its rendered device YAML, a dispatcher configuration, and the lines
//! `test-board u-boot` prints.
//!
//! Layout under `<target>/board-u-boot/`:
//! - `bin/power-on`, `bin/power-off`, `bin/hard-reset`: the board's power commands. The board
//!   is QEMU started in the background (`-daemonize`, pid file `run/qemu.pid`); its serial
//!   port is a client of the cable (`run/cable.sock`). Each command appends a line to
//!   `run/power.log`, which tests read. `bin/board-fault hang` makes the next power-on start a
//!   board that stays silent (QEMU started with `-S`: a hung board), for retry tests.
//! - `bin/rig-up`, `bin/rig-down`: start and stop the rig's services (the supervisor
//!   `xtask test-board <board> --serve`, see `cable.rs`, in a process group of its own, with
//!   tftpd-hpa, ser2net and the NFS server as its children); `rig-down` also powers the
//!   board off. Tests run them around their jobs.
//! - `devices/lava-rs-board01.jinja2` (the dictionary), `devices/lava-rs-board01.yaml`
//!   (rendered with LAVA's templates from `device-types/`), `dispatcher.yaml`
//!   (`dispatcher_ip: 10.0.2.2`, where the board reaches the host).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::artefacts::{self, Artefacts};

/// The device type (the template's name without `.jinja2`).
pub const DEVICE_TYPE: &str = "lava-rs-uboot-board";
/// The device's hostname (the dictionary's name).
pub const HOSTNAME: &str = "lava-rs-board01";
/// LAVA's TFTP directory, served by the rig's tftpd-hpa.
pub const TFTP_ROOT: &str = "/srv/tftp";
/// The device-type template, kept in the repository.
const TEMPLATE: &str =
    include_str!("../../../fixtures/board/device-types/lava-rs-uboot-board.jinja2");

/// The rig's paths and wiring.
#[derive(Debug, Clone)]
pub struct Rig {
    /// The board's name on the command line (`test-board NAME --serve` starts its supervisor).
    pub board: &'static str,
    /// `<target>/board-<name>`.
    pub dir: PathBuf,
    /// Whether the rig serves NFS roots (nfs-ganesha and rpcbind next to tftpd and ser2net).
    pub nfs: bool,
    /// The TCP port of ser2net's telnet accepter (the board's console).
    pub console_port: u16,
    /// The host's address as the board reaches it: tftpd-hpa listens there; the dispatcher
    /// configuration's `dispatcher_ip`.
    pub host_ip: std::net::Ipv4Addr,
}

/// The host's own IPv4 address on its default route (the source address the kernel would
/// choose; a UDP "connect" sends nothing). The board's user-mode network reaches it through
/// QEMU's NAT like any outside address.
pub fn host_ip() -> Result<std::net::Ipv4Addr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket
        .connect("192.0.2.255:9")
        .or_else(|_| socket.connect("10.255.255.255:9"))
        .context("this host has no IPv4 route: the board cannot reach its servers")?;
    match socket.local_addr()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Ok(ip),
        other => anyhow::bail!(
            "this host's IPv4 address is {other}: the board needs an address other than \
             loopback to reach the host's TFTP server"
        ),
    }
}

impl Rig {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }
    pub fn run(&self) -> PathBuf {
        self.dir.join("run")
    }
    pub fn dictionary(&self) -> PathBuf {
        self.dir.join("devices").join(format!("{HOSTNAME}.jinja2"))
    }
    pub fn device(&self) -> PathBuf {
        self.dir.join("devices").join(format!("{HOSTNAME}.yaml"))
    }
    pub fn dispatcher(&self) -> PathBuf {
        self.dir.join("dispatcher.yaml")
    }
    /// The lines `test-board u-boot` prints, also kept in `rig.txt`.
    pub fn summary_file(&self) -> PathBuf {
        self.dir.join("rig.txt")
    }
}

/// Write scripts, dictionary, device YAML and dispatcher configuration for `a`; return the
/// summary lines.
pub fn write(rig: &Rig, a: &Artefacts, xtask: &Path) -> Result<String> {
    let mut machine = artefacts::machine_args(&a.u_boot);
    std::fs::create_dir_all(rig.run())?;
    super::media::plug_media(&rig.run())?;
    machine.extend(super::media::qemu_args(&rig.run()));
    write_scripts(
        rig,
        xtask,
        "docs/board-u-boot.md",
        "qemu-system-aarch64",
        &machine,
    )?;

    // The device type next to LAVA's templates; the dictionary as a lab admin writes it.
    std::fs::write(
        a.device_types.join(format!("{DEVICE_TYPE}.jinja2")),
        TEMPLATE,
    )?;
    let dictionary = dictionary(rig);
    std::fs::write(rig.dictionary(), &dictionary)?;
    let renderer = lava_device::Renderer::new([a.device_types.clone()]);
    let rendered = renderer
        .render_file(&rig.dictionary(), &Default::default())
        .with_context(|| format!("rendering {}", rig.dictionary().display()))?;
    std::fs::write(rig.device(), rendered)?;
    std::fs::write(
        rig.dispatcher(),
        format!(
            "# The board reaches this host at its own address through QEMU's user-mode\n\
             # network (10.0.2.2 is QEMU's built-in TFTP server): LAVA's {{SERVER_IP}} and\n\
             # {{NFS_SERVER_IP}}.\ndispatcher_ip: {}\n{}",
            rig.host_ip,
            super::media::dispatcher_line()
        ),
    )?;

    let url = |p: &Path| format!("file://{}", p.display());
    let mut out = String::new();
    writeln!(out, "device_type: {DEVICE_TYPE}")?;
    writeln!(out, "device: {}", rig.device().display())?;
    writeln!(out, "dispatcher: {}", rig.dispatcher().display())?;
    writeln!(out, "prompt: {}", artefacts::PROMPT)?;
    writeln!(out, "kernel: {}", url(&a.kernel))?;
    writeln!(out, "ramdisk: {}", url(&a.ramdisk))?;
    writeln!(out, "dtb: {}", url(&a.dtb))?;
    writeln!(out, "modules: {}", url(&a.modules))?;
    writeln!(out, "nfsrootfs: {}", url(&a.nfsrootfs))?;
    writeln!(out, "usb_image: {}", url(&a.usb_image))?;
    std::fs::write(rig.summary_file(), &out)?;
    Ok(out)
}

/// The rig's power and service scripts under `bin/` (see the module doc): power-on starts
/// `qemu` with `machine` (the board's hardware) daemonized, its serial port on the cable.
/// `doc` names the board's documentation in the scripts' headers.
pub fn write_scripts(
    rig: &Rig,
    xtask: &Path,
    doc: &str,
    qemu: &str,
    machine: &[String],
) -> Result<()> {
    for d in ["bin", "run", "devices"] {
        std::fs::create_dir_all(rig.dir.join(d))?;
    }
    let run = rig.run();
    let q = |p: &Path| lava_python::shlex_quote(&p.display().to_string());
    let machine: Vec<String> = machine
        .iter()
        .map(|s| lava_python::shlex_quote(s))
        .collect();
    // /proc/PID/comm holds the first 15 bytes of the program's name.
    let comm: String = qemu.chars().take(15).collect();
    let header = format!(
        "# Written by `cargo xtask test-board {}`; see {doc}.\nset -eu\n",
        rig.board
    );

    let power_on = format!(
        r#"#!/bin/sh
# power-on [QEMU ARGUMENT…]: switch the board on, like a PDU outlet. The board is QEMU in the
# background; its serial port plugs into the rig's cable, which ser2net exports (the console
# stays connected across power cycles). Arguments are the board's firmware settings for this
# power-on (extra QEMU arguments), which a device dictionary may give.
{header}RUN={run}
echo "$(date -u +%FT%T.%NZ) power-on" >> "$RUN/power.log"
if [ -f "$RUN/qemu.pid" ] && kill -0 "$(cat "$RUN/qemu.pid")" 2>/dev/null; then
    exit 0
fi
[ -S "$RUN/cable.sock" ] || {{ echo "power-on: the rig is down (run bin/rig-up)" >&2; exit 1; }}
hang=
if [ -f "$RUN/fault-hang" ]; then
    # One hung boot (bin/board-fault hang): the CPU never starts, the console stays silent.
    rm -f "$RUN/fault-hang"
    hang=-S
    echo "$(date -u +%FT%T.%NZ) power-on: hung board (fault injected)" >> "$RUN/power.log"
fi
exec {qemu} {machine} $hang "$@" \
    -display none -monitor none \
    -chardev socket,id=cable,path="$RUN/cable.sock" -serial chardev:cable \
    -daemonize -pidfile "$RUN/qemu.pid" 2>>"$RUN/qemu.log"
"#,
        run = q(&run),
        machine = machine.join(" "),
    );
    let power_off = format!(
        r#"#!/bin/sh
# power-off: switch the board off (QEMU ended; TERM, then KILL after 5 s).
{header}RUN={run}
echo "$(date -u +%FT%T.%NZ) power-off" >> "$RUN/power.log"
[ -f "$RUN/qemu.pid" ] || exit 0
pid=$(cat "$RUN/qemu.pid")
if [ "$(cat /proc/"$pid"/comm 2>/dev/null)" != {comm} ]; then
    rm -f "$RUN/qemu.pid"
    exit 0
fi
# QEMU daemonized: its parent is whichever process adopts orphans, which may collect it a
# second or two after it ended. A zombie (state Z) is off: only running counts.
running() {{
    kill -0 "$pid" 2>/dev/null && [ "$(cut -d' ' -f3 /proc/"$pid"/stat 2>/dev/null)" != Z ]
}}
kill -TERM "$pid" 2>/dev/null || true
i=0
while running; do
    i=$((i + 1))
    [ $i -eq 250 ] && kill -KILL "$pid" 2>/dev/null
    sleep 0.02
done
rm -f "$RUN/qemu.pid"
"#,
        run = q(&run),
    );
    let hard_reset = format!(
        r#"#!/bin/sh
# hard-reset [QEMU ARGUMENT…]: power-cycle the board (arguments as for power-on).
{header}BIN=$(dirname "$0")
echo "$(date -u +%FT%T.%NZ) hard-reset" >> {run}/power.log
"$BIN/power-off"
exec "$BIN/power-on" "$@"
"#,
        run = q(&run),
    );
    let fault = format!(
        r#"#!/bin/sh
# board-fault hang: the next power-on starts a board that never prints (a hung board).
{header}case "${{1:-}}" in
    hang) : > {run}/fault-hang ;;
    clear) rm -f {run}/fault-hang ;;
    *) echo "usage: board-fault hang|clear" >&2; exit 2 ;;
esac
"#,
        run = q(&run),
    );
    let rig_up = rig_up_script(
        "start the rig's services (cable, ser2net, tftpd-hpa, NFS server) under one\n\
         # supervisor in a process group of its own; wait until the console port answers.",
        &header,
        &q(&run),
        &format!(
            "{xtask} test-board {board} --serve --console-port {port} --host-ip {ip}",
            xtask = q(xtask),
            board = rig.board,
            port = rig.console_port,
            ip = rig.host_ip,
        ),
        300,
    );
    let rig_down = rig_down_script(
        "power the board off and end the rig's services (the supervisor's process group).",
        &header,
        &q(&run),
        "\"$(dirname \"$0\")/power-off\"\n",
        " \"$RUN/cable.sock\" \"$RUN/console\"",
    );
    for (name, text) in [
        ("power-on", power_on),
        ("power-off", power_off),
        ("hard-reset", hard_reset),
        ("board-fault", fault),
        ("rig-up", rig_up),
        ("rig-down", rig_down),
    ] {
        let path = rig.bin(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    Ok(())
}

/// `bin/rig-up`: start `serve` (the rig's supervisor, a shell command line) with `setsid` in a
/// process group of its own, its output in `$RUN/rig.log`, and wait (`ticks` tenths of a
/// second at most) for it to write `$RUN/ready`; on failure show its log and run `rig-down`.
/// `purpose` follows `# rig-up: ` in the script's comment; `header` and `run` (shell-quoted)
/// as [`write_scripts`] makes them.
pub(super) fn rig_up_script(
    purpose: &str,
    header: &str,
    run: &str,
    serve: &str,
    ticks: u32,
) -> String {
    format!(
        r#"#!/bin/sh
# rig-up: {purpose}
{header}RUN={run}
if [ -f "$RUN/rig.pid" ] && kill -0 "$(cat "$RUN/rig.pid")" 2>/dev/null; then
    exit 0
fi
rm -f "$RUN/ready" "$RUN/failed"
setsid {serve} </dev/null >>"$RUN/rig.log" 2>&1 &
echo $! > "$RUN/rig.pid"
i=0
while [ ! -f "$RUN/ready" ]; do
    i=$((i + 1))
    if [ -f "$RUN/failed" ] || [ $i -gt {ticks} ] || ! kill -0 "$(cat "$RUN/rig.pid")" 2>/dev/null; then
        echo "rig-up: the rig did not come up; its log ($RUN/rig.log) ends:" >&2
        tail -n 20 "$RUN/rig.log" >&2
        "$(dirname "$0")/rig-down" || true
        exit 1
    fi
    sleep 0.1
done
"#
    )
}

/// `bin/rig-down`: run `first` (shell lines, may be empty), then end the supervisor's process
/// group (TERM, KILL after five seconds) and remove its pid file, `ready` and `extra_rm`
/// (shell words, each preceded by a space). `purpose` follows `# rig-down: `.
pub(super) fn rig_down_script(
    purpose: &str,
    header: &str,
    run: &str,
    first: &str,
    extra_rm: &str,
) -> String {
    format!(
        r#"#!/bin/sh
# rig-down: {purpose}
{header}RUN={run}
{first}[ -f "$RUN/rig.pid" ] || exit 0
pid=$(cat "$RUN/rig.pid")
kill -TERM "-$pid" 2>/dev/null || true
i=0
while kill -0 "-$pid" 2>/dev/null; do
    i=$((i + 1))
    [ $i -eq 50 ] && kill -KILL "-$pid" 2>/dev/null
    sleep 0.1
done
rm -f "$RUN/rig.pid" "$RUN/ready"{extra_rm}
"#
    )
}

/// The device dictionary, as a lab admin writes one: the device type, and how this lab wired
/// the board (console server port, power commands).
fn dictionary(rig: &Rig) -> String {
    format!(
        r#"{{# {HOSTNAME}: the lava-rs board rig (written by `cargo xtask test-board u-boot`). #}}
{{% extends '{DEVICE_TYPE}.jinja2' %}}
{{# The console: ser2net's telnet port; the connection stays open across power cycles. #}}
{{% set connection_command = 'telnet 127.0.0.1 {port}' %}}
{{# Power control, like a PDU: scripts that start and stop the board (QEMU) in the background. #}}
{{% set power_on_command = '{on}' %}}
{{% set power_off_command = '{off}' %}}
{{% set hard_reset_command = '{reset}' %}}
{media}"#,
        port = rig.console_port,
        on = rig.bin("power-on").display(),
        off = rig.bin("power-off").display(),
        reset = rig.bin("hard-reset").display(),
        media = super::media::dictionary_lines(),
    )
}

/// LAVA's device-type templates for unit tests: the copy (from Debian's lava-server) in the
/// rig `target/<rig_dir>` when prepared, else the conformance corpus next to the workspace;
/// `None` when neither holds `template`.
#[cfg(test)]
pub(super) fn lava_templates_for_tests(rig_dir: &str, template: &str) -> Option<PathBuf> {
    let rig = crate::shared::workspace_root()
        .join("target")
        .join(rig_dir)
        .join("device-types");
    if rig.join(template).is_file() {
        return Some(rig);
    }
    crate::shared::shared_dir()
        .map(|d| d.join("conformance/templates"))
        .filter(|d| d.join(template).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lava_templates() -> Option<PathBuf> {
        lava_templates_for_tests("board-u-boot", "base-uboot.jinja2")
    }

    #[test]
    fn the_dictionary_renders_a_u_boot_board_wired_to_the_rig() {
        let Some(lava) = lava_templates() else {
            eprintln!("skipping: no LAVA templates (cargo xtask test-board u-boot --prepare)");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let rig = Rig {
            board: "u-boot",
            nfs: true,
            dir: dir.path().to_path_buf(),
            console_port: 4321,
            host_ip: "192.0.2.7".parse().unwrap(),
        };
        let types = dir.path().join("types");
        std::fs::create_dir_all(&types).unwrap();
        std::fs::write(types.join(format!("{DEVICE_TYPE}.jinja2")), TEMPLATE).unwrap();
        let path = dir.path().join("board.jinja2");
        std::fs::write(&path, dictionary(&rig)).unwrap();
        let text = lava_device::Renderer::new([types, lava])
            .render_file(&path, &Default::default())
            .unwrap();
        let device: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let at = |keys: &[&str]| {
            keys.iter()
                .try_fold(&device, |v, k| v.get(*k))
                .cloned()
                .unwrap_or_else(|| panic!("no {keys:?} in\n{text}"))
        };
        assert_eq!(at(&["commands", "connect"]), "telnet 127.0.0.1 4321");
        let power_on = format!("{}", dir.path().join("bin/power-on").display());
        assert_eq!(at(&["commands", "power_on"]), power_on.as_str());
        assert_eq!(at(&["parameters", "booti", "kernel"]), "0x40400000");
        for medium in &super::super::media::MEDIA {
            assert_eq!(
                at(&["parameters", "media", medium.kind, medium.label, "uuid"]),
                medium.by_id
            );
            let id = at(&[
                "parameters",
                "media",
                medium.kind,
                medium.label,
                "device_id",
            ]);
            assert!(id == 0 || id == "0", "{}: device_id {id:?}", medium.kind);
        }
        let sata_commands = at(&["actions", "boot", "methods", "u-boot", "sata", "commands"]);
        let sata: Vec<&str> = sata_commands
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        assert!(
            sata.first() == Some(&"scsi scan")
                && sata.contains(&"load scsi {ROOT_PART} {KERNEL_ADDR} {KERNEL}"),
            "{sata:?}"
        );
        assert_eq!(at(&["parameters", "booti", "ramdisk"]), "0x48000000");
        assert_eq!(at(&["parameters", "booti", "dtb"]), "0x47000000");
        assert_eq!(
            at(&["actions", "deploy", "parameters", "add_header"]),
            "u-boot"
        );
        assert_eq!(
            at(&["actions", "deploy", "parameters", "mkimage_arch"]),
            "arm64"
        );
        let uboot = at(&["actions", "boot", "methods", "u-boot"]);
        assert_eq!(uboot["parameters"]["bootloader_prompt"], "=>");
        assert_eq!(
            uboot["parameters"]["interrupt_prompt"],
            "Hit any key to stop autoboot"
        );
        let ramdisk: Vec<&str> = uboot["ramdisk"]["commands"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        assert!(
            ramdisk.contains(&"setenv serverip {SERVER_IP}")
                && ramdisk.contains(&"tftp {KERNEL_ADDR} {KERNEL}")
                && ramdisk
                    .iter()
                    .any(|c| c
                        .starts_with("setenv bootargs 'console=ttyAMA0,115200n8 root=/dev/ram0"))
                && ramdisk.last() == Some(&"{BOOTX}"),
            "{ramdisk:?}"
        );
        let nfs: Vec<&str> = uboot["nfs"]["commands"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        assert!(
            nfs.iter()
                .any(|c| c.contains("nfsroot={NFS_SERVER_IP}:{NFSROOTFS},tcp,hard,vers=3")),
            "{nfs:?}"
        );
    }
}
