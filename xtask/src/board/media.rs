//! The board's removable media, for LAVA's removable-media jobs (`deploy: to: usb | sata | sd`,
//! `dd-image`; `boot: method: u-boot, commands: usb | sata`): a USB stick, a SATA disk and an SD
//! card plugged into the board, the board's root naming them as udev would, a disk image a lab
//! would publish, and the web server LAVA expects on the dispatcher host.
//!
//! - **The media** ([`MEDIA`]), each backed by a file of the rig's run directory that lives as
//!   long as it (media left in the board), written blank (128 MiB, sparse) when the rig is
//!   prepared and there is none:
//!   - the stick: QEMU's `usb-storage` on a PCI EHCI controller (`usb-ehci`: Debian's U-Boot
//!     for `qemu_arm64` has EHCI and no XHCI), USB serial [`USB_SERIAL`];
//!   - the SATA disk: an `ide-hd` on QEMU's PCI AHCI controller (`ahci`), which Debian's
//!     U-Boot reads (`scsi scan`, `load scsi 0:1 …`), ATA serial [`SATA_SERIAL`];
//!   - the SD card: QEMU's `sd-card` on a PCI SD host controller (`sdhci-pci`). Debian's U-Boot
//!     for `qemu_arm64` has no MMC support, so the board cannot boot from it; its Linux sees
//!     it (`mmcblk0`), so a deployment can write it.
//! - **The root** (`/etc/lava-rs/media.sh`, sourced by the board's `/init` on every boot that
//!   is not an NFS boot) loads the USB storage, AHCI, SD host, SCSI disk, ext4 and network
//!   modules, waits (at most 10 s) for the media's disks, makes udev's `/dev/disk/by-id` links
//!   (busybox has no udev): `usb-<vendor>_<model>_<serial>-<target>:<lun>` for the stick,
//!   `ata-<model>_<serial>` for the SATA disk, `mmc-<name>_<serial>` for the card, each with
//!   its `-part<N>` links, and brings the network up (LAVA's first deployment must reach the
//!   dispatcher's web server). When the kernel command line says `root=LABEL=…` or
//!   `root=UUID=…`, it mounts that filesystem and switches to it.
//! - **The image** (`artefacts/usb-image.img.gz`, built without loop mounts; any of the media
//!   takes it): an MBR with one Linux partition from 1 MiB, an ext2 filesystem labelled
//!   [`MEDIA_LABEL`] made with `mke2fs -d` at that offset, holding the board's root and
//!   `/boot/Image`, `/boot/ramdisk.cpio.gz.u-boot` and `/boot/qemu-arm64-virt.dtb`.
//! - **The web server**: LAVA's `dd-image` has the board fetch the image from
//!   `http://<dispatcher_http_ip>/tmp/<path>`, which a LAVA worker's Apache serves from
//!   `/var/lib/lava/dispatcher/tmp`. The rig's supervisor runs Debian's Python
//!   `http.server` on `127.0.0.1:`[`HTTP_PORT`] over `/var/lib/lava/dispatcher` (so
//!   `/tmp/…` is the scratch root), and `dispatcher.yaml` says
//!   `dispatcher_http_ip: 10.0.2.2:22300`: QEMU's user-mode network forwards the board's TCP
//!   connections to 10.0.2.2 to the host's loopback (the board's Linux would not route a
//!   loopback address, and the host's own address is shared with other rigs' servers).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};

use super::nfs_server::NFS_EXPORT;
use crate::test_system::{Module, resolve_modules};

/// The TCP port of the rig's web server (the dispatcher's `/tmp`), on the host's address.
pub const HTTP_PORT: u16 = 22_300;
/// The USB serial number of the board's stick.
pub const USB_SERIAL: &str = "LAVA-RS-USB0";
/// The stick's `/dev/disk/by-id` name on the board (udev's scheme: QEMU's SCSI vendor and
/// model, the USB serial, target and LUN): the device dictionary's `usb_uuid`.
pub const USB_BY_ID: &str = "usb-QEMU_QEMU_HARDDISK_LAVA-RS-USB0-0:0";
/// The stick's name in the device dictionary's `parameters.media.usb` (`usb_label`).
pub const USB_LABEL: &str = "lava-rs-usb";
/// The ATA serial number of the board's SATA disk.
pub const SATA_SERIAL: &str = "LAVA-RS-SATA0";
/// The SATA disk's `/dev/disk/by-id` name on the board (udev's scheme: `ata-`, the ATA model
/// QEMU reports and the serial, blanks as underscores): the dictionary's `sata_uuid`.
pub const SATA_BY_ID: &str = "ata-QEMU_HARDDISK_LAVA-RS-SATA0";
/// The SATA disk's name in the device dictionary's `parameters.media.sata` (`sata_label`).
pub const SATA_LABEL: &str = "lava-rs-sata";
/// The SD card's `/dev/disk/by-id` name on the board (udev's scheme: `mmc-`, the card's CID
/// name and serial as the kernel shows them; QEMU's card is `QEMU!`, serial `0xdeadbeef`):
/// the dictionary's `sd_uuid`.
pub const SD_BY_ID: &str = "mmc-QEMU!_0xdeadbeef";
/// The SD card's name in the device dictionary's `parameters.media.sd` (`sd_label`).
pub const SD_LABEL: &str = "lava-rs-sd";
/// The filesystem label of the image's root partition (a job's `root_uuid: LABEL=…`).
pub const MEDIA_LABEL: &str = "lava-rs-media";
/// Size of each medium (a sparse file).
const DISK_SIZE: u64 = 128 << 20;
/// Modules the root loads for the media and their filesystem, and for the network.
const MODULES: &[&str] = &[
    "ehci_pci",
    "usb_storage",
    "ahci",
    "sdhci_pci",
    "sd_mod",
    "crc32c_generic",
    "ext4",
    "virtio_pci",
    "virtio_net",
];

/// One removable medium of the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Medium {
    /// LAVA's kind of media: a removable deployment's `to:` (`usb`, `sata`, `sd`).
    pub kind: &'static str,
    /// Its backing file in the rig's run directory.
    pub file: &'static str,
    /// Its QEMU drive id.
    drive: &'static str,
    /// Its name in the dictionary's `parameters.media.<kind>` (a job's `device:`).
    pub label: &'static str,
    /// Its `/dev/disk/by-id` name on the board (`parameters.media.<kind>.<label>.uuid`).
    pub by_id: &'static str,
}

/// The board's removable media: the USB stick, the SATA disk and the SD card.
pub const MEDIA: [Medium; 3] = [
    Medium {
        kind: "usb",
        file: "usb-disk.img",
        drive: "usbstick",
        label: USB_LABEL,
        by_id: USB_BY_ID,
    },
    Medium {
        kind: "sata",
        file: "sata-disk.img",
        drive: "satadisk",
        label: SATA_LABEL,
        by_id: SATA_BY_ID,
    },
    Medium {
        kind: "sd",
        file: "sd-card.img",
        drive: "sdcard",
        label: SD_LABEL,
        by_id: SD_BY_ID,
    },
];

impl Medium {
    /// Its backing file under the rig's run directory `run`.
    pub fn disk(&self, run: &Path) -> std::path::PathBuf {
        run.join(self.file)
    }

    /// Its controller and drive as QEMU devices, backed by its file under `run`.
    fn qemu_args(&self, run: &Path) -> Vec<String> {
        let drive = format!(
            "if=none,id={},format=raw,file={}",
            self.drive,
            self.disk(run).display()
        );
        let (controller, device) = match self.kind {
            "usb" => (
                "usb-ehci,id=ehci",
                format!(
                    "usb-storage,bus=ehci.0,drive={},serial={USB_SERIAL}",
                    self.drive
                ),
            ),
            "sata" => (
                "ahci,id=ahci",
                format!(
                    "ide-hd,bus=ahci.0,drive={},serial={SATA_SERIAL}",
                    self.drive
                ),
            ),
            _ => (
                "sdhci-pci,id=sdhci",
                format!("sd-card,drive={}", self.drive),
            ),
        };
        vec![
            "-device".into(),
            controller.into(),
            "-drive".into(),
            drive,
            "-device".into(),
            device,
        ]
    }
}

/// The media as QEMU devices, backed by their files under the run directory `run`.
pub fn qemu_args(run: &Path) -> Vec<String> {
    MEDIA.iter().flat_map(|m| m.qemu_args(run)).collect()
}

/// Plugs blank media in (sparse files) where there are none; written ones are kept.
pub fn plug_media(run: &Path) -> Result<()> {
    for medium in &MEDIA {
        let disk = medium.disk(run);
        if !disk.exists() {
            std::fs::File::create(&disk)
                .and_then(|f| f.set_len(DISK_SIZE))
                .with_context(|| {
                    format!(
                        "creating the board's {} medium {}",
                        medium.kind,
                        disk.display()
                    )
                })?;
        }
    }
    Ok(())
}

/// The media modules (with their dependencies) copied into the root under
/// `lib/modules/<release>`, and their list `etc/lava-rs/media-modules`, dependencies first.
pub fn install_modules(
    deb: &Path,
    kdir: &Path,
    moddir: &Path,
    release: &str,
    root: &Path,
) -> Result<Vec<Module>> {
    let modroot = format!("./lib/modules/{release}");
    let modules = resolve_modules(deb, kdir, moddir, &modroot, MODULES)?;
    let target = root.join(format!("lib/modules/{release}"));
    let mut list = String::new();
    for m in &modules {
        let to = target.join(&m.rel);
        std::fs::create_dir_all(to.parent().expect("a module path"))?;
        std::fs::copy(moddir.join(&m.rel), &to)?;
        list.push_str(&m.rel);
        list.push('\n');
    }
    std::fs::write(root.join("etc/lava-rs/media-modules"), list)?;
    Ok(modules)
}

/// `/etc/lava-rs/media.sh`, sourced by the root's `/init`.
pub fn init_script(release: &str) -> String {
    let media = MEDIA.len();
    format!(
        r#"# /etc/lava-rs/media.sh, sourced by /init (written by `cargo xtask test-board u-boot`):
# the board's media (USB stick, SATA disk, SD card) named as udev names them, the network up,
# and a root on a medium when the kernel command line asks for one (root=LABEL=... or
# root=UUID=...).
case " $(cat /proc/cmdline) " in *" nfsroot="*) return 0 ;; esac
while read -r module; do
    insmod "/lib/modules/{release}/$module" 2>/dev/null
done < /etc/lava-rs/media-modules
i=0
while [ "$(ls -d /sys/block/sd* /sys/block/mmcblk* 2>/dev/null | wc -l)" -lt {media} ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
mkdir -p /dev/disk/by-id
# by_id NAME ID: /dev/disk/by-id/ID for block device NAME, ID-partN for its partitions.
by_id() {{
    ln -sf "../../$1" "/dev/disk/by-id/$2"
    for part in "/sys/block/$1/$1"*; do
        [ -e "$part/partition" ] || continue
        ln -sf "../../${{part##*/}}" "/dev/disk/by-id/$2-part$(cat "$part/partition")"
    done
}}
# trim: blanks at either end dropped, inner blanks as underscores (udev's ID_SERIAL).
trim() {{
    sed -e 's/^ *//' -e 's/ *$//' -e 's/  */_/g'
}}
for block in /sys/block/sd*; do
    [ -e "$block/device" ] || continue
    name=${{block##*/}}
    device=$(readlink -f "$block/device")
    vendor=$(trim < "$block/device/vendor")
    model=$(trim < "$block/device/model")
    if [ "$vendor" = ATA ]; then
        # libata answers the unit serial number page with the ATA serial after a 4-byte header.
        serial=$(tail -c +5 "$block/device/vpd_pg80" 2>/dev/null | tr -d '\000' | trim)
        [ -n "$serial" ] && by_id "$name" "ata-${{model}}_${{serial}}"
        continue
    fi
    scsi=${{device##*/}}
    serial=
    dir=$device
    while [ "$dir" != /sys ] && [ -n "$dir" ]; do
        if [ -f "$dir/idVendor" ] && [ -f "$dir/serial" ]; then
            serial=$(cat "$dir/serial")
            break
        fi
        dir=${{dir%/*}}
    done
    [ -n "$serial" ] && by_id "$name" "usb-${{vendor}}_${{model}}_${{serial}}-${{scsi#*:*:}}"
done
for block in /sys/block/mmcblk*; do
    [ -f "$block/device/name" ] && [ -f "$block/device/serial" ] || continue
    by_id "${{block##*/}}" "mmc-$(cat "$block/device/name")_$(cat "$block/device/serial")"
done
root=
for arg in $(cat /proc/cmdline); do
    case "$arg" in root=*) root=${{arg#root=}} ;; esac
done
case "$root:$(stat -f -c %T /)" in
LABEL=*:ramfs | LABEL=*:tmpfs | UUID=*:ramfs | UUID=*:tmpfs)
    device=$(findfs "$root")
    if [ -n "$device" ] && mount -o rw "$device" /newroot; then
        echo "lava-rs board: root $root ($device)"
        umount /sys /proc
        exec switch_root /newroot /init
    fi
    echo "lava-rs board: root $root could not be mounted; staying in the ramdisk"
    ;;
esac
ifconfig lo 127.0.0.1 up
ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up
route add default gw 10.0.2.2
"#
    )
}

/// The device dictionary's lines for the media (LAVA's `base.jinja2` variables, which make
/// `parameters.media`).
pub fn dictionary_lines() -> String {
    format!(
        "{{# The USB stick (parameters.media.usb): its /dev/disk/by-id name on the board and its \
         U-Boot device number. #}}\n\
         {{% set usb_label = '{USB_LABEL}' %}}\n\
         {{% set usb_uuid = '{USB_BY_ID}' %}}\n\
         {{% set usb_device_id = 0 %}}\n\
         {{# The SATA disk (parameters.media.sata): its by-id name and its U-Boot SCSI device \
         number. #}}\n\
         {{% set sata_label = '{SATA_LABEL}' %}}\n\
         {{% set sata_uuid = '{SATA_BY_ID}' %}}\n\
         {{% set sata_id = 0 %}}\n\
         {{# The SD card (parameters.media.sd): its by-id name and its slot; the board's U-Boot \
         has no MMC support and cannot boot from it. #}}\n\
         {{% set sd_label = '{SD_LABEL}' %}}\n\
         {{% set sd_uuid = '{SD_BY_ID}' %}}\n\
         {{% set sd_device_id = 0 %}}\n"
    )
}

/// The dispatcher configuration's line for the web server.
pub fn dispatcher_line() -> String {
    format!(
        "# The web server serving the dispatcher's tmp directory as /tmp (dd-image's image),\n\
         # on the host's loopback, which the board reaches as 10.0.2.2.\n\
         dispatcher_http_ip: 10.0.2.2:{HTTP_PORT}\n"
    )
}

/// The web server as a command for the rig's supervisor.
pub fn http_server() -> Command {
    let served = Path::new(NFS_EXPORT)
        .parent()
        .expect("the scratch root has a parent");
    let mut command = Command::new("/usr/bin/python3");
    command
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg("--directory")
        .arg(served)
        .arg(HTTP_PORT.to_string());
    command
}

/// Builds `out` (gzip-compressed): the disk image with the root tree `root` and the boot
/// files in `/boot` of its one ext2 partition.
pub fn build_image(root: &Path, boot: &[&Path], out: &Path) -> Result<()> {
    let staging = out.with_extension("staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    copy_tree(root, &staging)?;
    std::fs::create_dir_all(staging.join("boot"))?;
    for file in boot {
        let name = file.file_name().context("a boot file name")?;
        std::fs::copy(file, staging.join("boot").join(name))?;
    }
    // Room for the filesystem's own structures and the test overlay.
    let fs_mib = tree_size(&staging)? / (1 << 20) * 11 / 10 + 8;
    let raw = out.with_extension("");
    let _ = std::fs::remove_file(&raw);
    let file = std::fs::File::create(&raw)?;
    file.set_len((fs_mib + 1) << 20)?;
    drop(file);
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(&raw)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("sfdisk (util-linux)")?;
    std::io::Write::write_all(
        sfdisk.stdin.as_mut().expect("piped"),
        b"label: dos\nstart=2048, type=83\n",
    )?;
    drop(sfdisk.stdin.take());
    ensure!(
        sfdisk.wait()?.success(),
        "sfdisk failed on {}",
        raw.display()
    );
    let status = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext2",
            "-L",
            MEDIA_LABEL,
            "-E",
            "offset=1048576",
            "-d",
        ])
        .arg(&staging)
        .arg(&raw)
        .arg(format!("{fs_mib}M"))
        .status()
        .context("mke2fs (e2fsprogs)")?;
    ensure!(status.success(), "mke2fs failed on {}", raw.display());
    std::fs::remove_dir_all(&staging)?;
    let status = Command::new("gzip")
        .args(["-f", "-1", "-n"])
        .arg(&raw)
        .status()
        .context("gzip")?;
    ensure!(status.success(), "gzip failed on {}", raw.display());
    ensure!(out.is_file(), "no {}", out.display());
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

fn tree_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += tree_size(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stick_is_named_as_the_dictionary_says() {
        let args = qemu_args(Path::new("/r")).join(" ");
        assert!(
            args.contains("file=/r/usb-disk.img")
                && args.contains(&format!("serial={USB_SERIAL}"))
                && args.contains("file=/r/sata-disk.img")
                && args.contains(&format!(
                    "ide-hd,bus=ahci.0,drive=satadisk,serial={SATA_SERIAL}"
                ))
                && args.contains("file=/r/sd-card.img")
                && args.contains("sd-card,drive=sdcard"),
            "{args}"
        );
        assert!(USB_BY_ID.contains(USB_SERIAL));
        assert!(SATA_BY_ID.ends_with(SATA_SERIAL));
        let lines = dictionary_lines();
        for medium in &MEDIA {
            assert!(
                lines.contains(&format!("{}_uuid = '{}'", medium.kind, medium.by_id))
                    && lines.contains(&format!("{}_label = '{}'", medium.kind, medium.label)),
                "{lines}"
            );
        }
        assert_eq!(
            dispatcher_line().lines().last(),
            Some("dispatcher_http_ip: 10.0.2.2:22300")
        );
    }

    #[test]
    fn the_image_has_one_ext2_partition_with_the_boot_files() {
        for tool in ["sfdisk", "mke2fs", "debugfs", "gzip"] {
            if !lava_test_support::ci::require_tool(tool, "e2fsprogs, util-linux, gzip") {
                return;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/busybox"), b"elf").unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        let kernel = dir.path().join("Image");
        std::fs::write(&kernel, vec![7u8; 3 << 20]).unwrap();
        let out = dir.path().join("usb-image.img.gz");
        build_image(&root, &[&kernel], &out).unwrap();
        let raw = dir.path().join("usb-image.img");
        let status = Command::new("gzip")
            .args(["-dk"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        let table = Command::new("sfdisk")
            .arg("--dump")
            .arg(&raw)
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&table.stdout);
        assert!(
            table.contains("start=        2048") && table.contains("type=83"),
            "{table}"
        );
        let ls = Command::new("debugfs")
            .args(["-R", "ls -l /boot"])
            .arg(format!("{}?offset=1048576", raw.display()))
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&ls.stdout);
        assert!(
            listing.contains("Image") && listing.contains("3145728"),
            "{listing}"
        );
        let label = Command::new("debugfs")
            .args(["-R", "stats"])
            .arg(format!("{}?offset=1048576", raw.display()))
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&label.stdout).contains(MEDIA_LABEL),
            "the partition is labelled {MEDIA_LABEL}"
        );
    }
}
