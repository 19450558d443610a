//! The board's removable media, for LAVA's `deploy: to: usb` (`dd-image`) and
//! `boot: method: u-boot, commands: usb`: a USB stick plugged into the board, the board's
//! root naming it as udev would, a disk image a lab would publish, and the web server LAVA
//! expects on the dispatcher host.
//!
//! - **The stick**: QEMU's `usb-storage` on a PCI EHCI controller (`usb-ehci`: Debian's
//!   U-Boot for `qemu_arm64` has EHCI and no XHCI), backed by `run/usb-disk.img`, which lives
//!   as long as the rig's run directory (a stick left in the board), written blank (128 MiB,
//!   sparse) when the rig is prepared and there is none. Its USB serial is [`USB_SERIAL`].
//! - **The root** (`/etc/lava-rs/media.sh`, sourced by the board's `/init` on every boot that
//!   is not an NFS boot) loads the USB storage, SCSI disk, ext4 and network modules, waits
//!   (at most 10 s) for the disk, makes udev's `/dev/disk/by-id/usb-<vendor>_<model>_<serial>-
//!   <target>:<lun>` links (busybox has no udev), and brings the network up (LAVA's first
//!   deployment must reach the dispatcher's web server). When the kernel command line says
//!   `root=LABEL=…` or `root=UUID=…`, it mounts that filesystem and switches to it.
//! - **The image** (`artefacts/usb-image.img.gz`, built without loop mounts): an MBR with one
//!   Linux partition from 1 MiB, an ext2 filesystem labelled [`MEDIA_LABEL`] made with
//!   `mke2fs -d` at that offset, holding the board's root and `/boot/Image`,
//!   `/boot/ramdisk.cpio.gz.u-boot` and `/boot/qemu-arm64-virt.dtb`.
//! - **The web server**: LAVA's `dd-image` has the board fetch the image from
//!   `http://<dispatcher_http_ip>/tmp/<path>`, which a LAVA worker's Apache serves from
//!   `/var/lib/lava/dispatcher/tmp`. The rig's supervisor runs Debian's Python
//!   `http.server` on `127.0.0.1:`[`HTTP_PORT`] over `/var/lib/lava/dispatcher` (so
//!   `/tmp/…` is the scratch root), and `dispatcher.yaml` says
//!   `dispatcher_http_ip: 10.0.2.2:52300`: QEMU's user-mode network forwards the board's TCP
//!   connections to 10.0.2.2 to the host's loopback (the board's Linux would not route a
//!   loopback address, and the host's own address is shared with other rigs' servers).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};

use super::nfs_server::NFS_EXPORT;
use crate::test_system::{Module, resolve_modules};

/// The TCP port of the rig's web server (the dispatcher's `/tmp`), on the host's address.
pub const HTTP_PORT: u16 = 52_300;
/// The USB serial number of the board's stick.
pub const USB_SERIAL: &str = "LAVA-RS-USB0";
/// The stick's `/dev/disk/by-id` name on the board (udev's scheme: QEMU's SCSI vendor and
/// model, the USB serial, target and LUN): the device dictionary's `usb_uuid`.
pub const USB_BY_ID: &str = "usb-QEMU_QEMU_HARDDISK_LAVA-RS-USB0-0:0";
/// The stick's name in the device dictionary's `parameters.media.usb` (`usb_label`).
pub const USB_LABEL: &str = "lava-rs-usb";
/// The filesystem label of the image's root partition (a job's `root_uuid: LABEL=…`).
pub const MEDIA_LABEL: &str = "lava-rs-media";
/// Size of the stick (a sparse file).
const DISK_SIZE: u64 = 128 << 20;
/// Modules the root loads for the stick and its filesystem, and for the network.
const MODULES: &[&str] = &[
    "ehci_pci",
    "usb_storage",
    "sd_mod",
    "crc32c_generic",
    "ext4",
    "virtio_pci",
    "virtio_net",
];

/// The stick as QEMU devices: an EHCI controller and a USB mass-storage device on it.
pub fn qemu_args(disk: &Path) -> Vec<String> {
    vec![
        "-device".into(),
        "usb-ehci,id=ehci".into(),
        "-drive".into(),
        format!("if=none,id=usbstick,format=raw,file={}", disk.display()),
        "-device".into(),
        format!("usb-storage,bus=ehci.0,drive=usbstick,serial={USB_SERIAL}"),
    ]
}

/// The stick's backing file under the rig's run directory.
pub fn disk(run: &Path) -> std::path::PathBuf {
    run.join("usb-disk.img")
}

/// Plugs a blank stick in (a sparse file) when there is none; a written one is kept.
pub fn plug_stick(disk: &Path) -> Result<()> {
    if !disk.exists() {
        std::fs::File::create(disk)
            .and_then(|f| f.set_len(DISK_SIZE))
            .with_context(|| format!("creating the board's USB stick {}", disk.display()))?;
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
    format!(
        r#"# /etc/lava-rs/media.sh, sourced by /init (written by `cargo xtask test-board u-boot`):
# the board's USB stick named as udev names it, the network up, and a root on the stick
# when the kernel command line asks for one (root=LABEL=... or root=UUID=...).
case " $(cat /proc/cmdline) " in *" nfsroot="*) return 0 ;; esac
while read -r module; do
    insmod "/lib/modules/{release}/$module" 2>/dev/null
done < /etc/lava-rs/media-modules
i=0
while [ ! -e /sys/block/sda ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
mkdir -p /dev/disk/by-id
for block in /sys/block/sd*; do
    [ -e "$block/device" ] || continue
    name=${{block##*/}}
    device=$(readlink -f "$block/device")
    vendor=$(sed -e 's/ *$//' -e 's/ /_/g' "$block/device/vendor")
    model=$(sed -e 's/ *$//' -e 's/ /_/g' "$block/device/model")
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
    [ -n "$serial" ] || continue
    id="usb-${{vendor}}_${{model}}_${{serial}}-${{scsi#*:*:}}"
    ln -sf "../../$name" "/dev/disk/by-id/$id"
    for part in "$block/$name"*; do
        [ -e "$part/partition" ] || continue
        ln -sf "../../${{part##*/}}" "/dev/disk/by-id/$id-part$(cat "$part/partition")"
    done
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

/// The device dictionary's lines for the stick (LAVA's `base.jinja2` variables).
pub fn dictionary_lines() -> String {
    format!(
        "{{# The USB stick (parameters.media.usb): its /dev/disk/by-id name on the board and its \
         U-Boot device number. #}}\n\
         {{% set usb_label = '{USB_LABEL}' %}}\n\
         {{% set usb_uuid = '{USB_BY_ID}' %}}\n\
         {{% set usb_device_id = 0 %}}\n"
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
        let args = qemu_args(Path::new("/r/usb-disk.img")).join(" ");
        assert!(args.contains(&format!("serial={USB_SERIAL}")), "{args}");
        assert!(USB_BY_ID.contains(USB_SERIAL));
        assert!(dictionary_lines().contains(&format!("usb_uuid = '{USB_BY_ID}'")));
        assert_eq!(
            dispatcher_line().lines().last(),
            Some("dispatcher_http_ip: 10.0.2.2:52300")
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
