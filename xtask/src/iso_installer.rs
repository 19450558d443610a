//! `cargo xtask iso-installer`: a tiny operating-system installer ISO for the
//! `deploy: to: iso-installer` + `boot: method: qemu-iso` job (`fixtures/qemu/qemu-iso.yaml`).
//!
//! Everything comes from Debian packages: the test system's kernel (`cargo xtask test-system`,
//! built first), `busybox-static`, and on the host `xorriso` (the ISO), `syslinux`,
//! `syslinux-common`, `mtools` and `dosfstools` (the installed disk's boot partition). The
//! ISO (`target/iso-installer/installer.iso`) holds:
//!
//! - `/install.amd/vmlinux`: the test system's kernel (ELF, booted by QEMU through PVH: the
//!   fast boot under TCG) and `/install.amd/initrd.gz`: the installer, whose `/init` (below,
//!   POSIX sh for busybox) behaves like a very small Debian installer: it reads
//!   `preseed/url=tftp://HOST/PATH` from the kernel command line, configures the network with
//!   DHCP, fetches the preseed with busybox `tftp`, and follows its `d-i` lines
//!   (`partman-auto/disk`, `netcfg/get_hostname`, `passwd/root-password-crypted`): it writes
//!   the boot partition image to the disk, formats the root partition (busybox `mke2fs`),
//!   unpacks the base system from the CD, configures it, prints its progress and finally
//!   `Installation complete` and powers off (the kernel's `reboot: Power down`, the end
//!   message LAVA's `debian_installer` deployment data waits for). A failing step prints
//!   its reason, then `ERROR: Installation step failed`, a preseed it cannot fetch
//!   `ERROR: Failed to retrieve the preconfiguration file`, as Debian's installer does;
//! - `/install/boot.img.gz`: the start of the installed disk: an MBR (syslinux's `mbr.bin`)
//!   with two partitions, the first a FAT16 boot partition with SYSLINUX, the bzImage kernel,
//!   the same initrd and a `syslinux.cfg` whose kernel command line says `Loading initial
//!   ramdisk` (what LAVA's `reboot-into-installed` waits for, see [`SYSLINUX_CFG`]) and
//!   `lava_rs.root=LABEL=installed-root`, on which the same `/init` finds the installed root
//!   by its label (disks are named in the order they are probed), mounts it and
//!   `switch_root`s into it;
//! - `/install/base.cpio.gz`: the base system (the test system's initramfs), unpacked by the
//!   installer onto the root partition, then given a login on the serial line (busybox
//!   `getty`/`login`), the preseed's hostname and root password.
//!
//! The command also writes, next to the ISO, the preseed file, the TFTP root the job's
//! dispatcher configuration names (`tftp_dir`; QEMU's user network serves it at 10.0.2.2,
//! `dispatcher_ip`), the device (the embedded QEMU device with a user network whose TFTP
//! server is that root) and the job with its paths filled in.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::shared::workspace_root;
use crate::test_system::{
    Initramfs, extract_file, fetch_debs, file_name, fnv1a, gzip_to, run_captured, unpack_kernel,
};

/// Placeholder for the absolute output directory in `fixtures/qemu/qemu-iso.yaml`.
pub const DIR_PLACEHOLDER: &str = "@ISO_DIR@";
/// The boot partition (FAT16), in MiB, starting at 1 MiB.
const BOOT_MB: u64 = 16;
/// The root partition, in MiB, after the boot partition: the job's `installation_size` must
/// be at least `1 + BOOT_MB + ROOT_MB` MiB.
const ROOT_MB: u64 = 32;
/// Bump when the outputs change in a way the stamp would not notice.
const FORMAT_VERSION: u32 = 1;
/// The installer's kernel modules (with dependencies): the IDE disk and CD-ROM, ISO 9660,
/// ext2 (through ext4) and the virtio network card of LAVA's QEMU template.
const MODULES: &[&str] = &[
    "ata_piix",
    "sd_mod",
    "sr_mod",
    "isofs",
    "crc32c_generic",
    "ext4",
    "virtio_pci",
    "virtio_net",
];
/// Module directories unpacked in one pass (others are fetched on demand).
const MODULE_DIRS: &[&str] = &[
    "kernel/fs",
    "kernel/crypto",
    "kernel/lib",
    "kernel/drivers/ata",
    "kernel/drivers/scsi",
    "kernel/drivers/cdrom",
    "kernel/drivers/block",
    "kernel/drivers/virtio",
    "kernel/drivers/net",
    "kernel/net/core",
];

/// The preseed file: Debian installer `d-i` lines, the ones this installer reads.
const PRESEED: &str = "\
# Preseed for the lava-rs tiny installer (cargo xtask iso-installer).
# Lines are Debian installer answers: d-i <question> <type> <value>.
d-i partman-auto/disk string /dev/sda
d-i netcfg/get_hostname string lava-rs-installed
# The root password is 'root'.
d-i passwd/root-password-crypted password $6$lavarsiso$4Y0gLYXh4VCQQh7iNYVTWRPLkeEMJpFJBzT0rsk9WCrJ3zCmzEJRJfhwHEuSdNRY02x/7njk37xXvz7x2fo0G0
d-i finish-install/reboot_in_progress note
";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Rebuild even when the outputs are up to date.
    #[arg(long)]
    pub force: bool,
}

/// What the command made.
#[derive(Debug, Clone)]
pub struct IsoInstaller {
    pub iso: PathBuf,
    pub preseed: PathBuf,
    pub device: PathBuf,
    pub dispatcher: PathBuf,
    pub job: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let built = build(&output_dir(), args.force)?;
    println!("iso:        {}", built.iso.display());
    println!("preseed:    {}", built.preseed.display());
    println!("device:     {}", built.device.display());
    println!("dispatcher: {}", built.dispatcher.display());
    println!("job:        {}", built.job.display());
    println!(
        "run:        lava-run --job-id 1 --output-dir DIR --device {} --dispatcher {} {}",
        built.device.display(),
        built.dispatcher.display(),
        built.job.display()
    );
    Ok(())
}

/// `<workspace>/target/iso-installer`.
pub fn output_dir() -> PathBuf {
    workspace_root().join("target").join("iso-installer")
}

fn tool(name: &str, package: &str) -> Result<PathBuf> {
    crate::test_system::on_path(name)
        .or_else(|| {
            ["/usr/sbin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
        .with_context(|| {
            format!(
                "{name} is not installed (Debian package {package}; scripts/install-test-deps.sh)"
            )
        })
}

/// Build (or reuse) the ISO and write the preseed, device, dispatcher configuration and job.
pub fn build(dir: &Path, force: bool) -> Result<IsoInstaller> {
    let ts = crate::test_system::build(&crate::test_system::cache_dir(), false)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir)?;
    let iso = dir.join("installer.iso");
    let stamp_path = dir.join("stamp");
    let ts_stamp =
        std::fs::read_to_string(crate::test_system::cache_dir().join("stamp")).unwrap_or_default();
    let init = INSTALLER_INIT;
    let stamp = format!(
        "format {FORMAT_VERSION}\n{ts_stamp}init {:016x}\nsyslinux {:016x}\nudhcpc {:016x}\n\
         modules {}\nboot {BOOT_MB} root {ROOT_MB}\n",
        fnv1a(init.as_bytes()),
        fnv1a(SYSLINUX_CFG.as_bytes()),
        fnv1a(UDHCPC_SCRIPT.as_bytes()),
        MODULES.join(",")
    );
    let fresh = !force
        && iso.is_file()
        && std::fs::read_to_string(&stamp_path).is_ok_and(|old| old == stamp);
    if fresh {
        eprintln!("iso-installer: up to date ({})", stamp_path.display());
    } else {
        let _ = std::fs::remove_file(&stamp_path);
        let started = std::time::Instant::now();
        build_iso(&dir, &ts, init, &iso)?;
        std::fs::write(&stamp_path, &stamp)?;
        eprintln!(
            "iso-installer: built {} in {:.1}s",
            iso.display(),
            started.elapsed().as_secs_f64()
        );
    }
    let preseed = dir.join("preseed.cfg");
    std::fs::write(&preseed, PRESEED)?;
    let tftp = dir.join("tftp");
    std::fs::create_dir_all(&tftp)?;
    let dispatcher = dir.join("dispatcher.yaml");
    std::fs::write(
        &dispatcher,
        format!(
            "# The worker of the qemu-iso job: QEMU's user network reaches the host as 10.0.2.2\n\
             # and its TFTP server serves tftp_dir there.\n\
             dispatcher_ip: 10.0.2.2\ntftp_dir: {}\n",
            tftp.display()
        ),
    )?;
    let device = dir.join("device.yaml");
    std::fs::write(&device, device_yaml(&tftp)?)?;
    let template_path = workspace_root().join("fixtures/qemu/qemu-iso.yaml");
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    let job = dir.join("qemu-iso.yaml");
    std::fs::write(
        &job,
        template.replace(DIR_PLACEHOLDER, &dir.display().to_string()),
    )?;
    Ok(IsoInstaller {
        iso,
        preseed,
        device,
        dispatcher,
        job,
    })
}

/// The embedded QEMU device (`fixtures/qemu/device.yaml`) with LAVA's default QEMU network
/// (virtio, user) instead of none, its TFTP server serving `tftp`.
fn device_yaml(tftp: &Path) -> Result<String> {
    let base = std::fs::read_to_string(crate::test_system::device_yaml())?;
    let none = "          - -net none\n";
    ensure!(
        base.contains(none),
        "fixtures/qemu/device.yaml has no '-net none' option to replace"
    );
    Ok(base.replace(
        none,
        &format!(
            "          - -net nic,model=virtio,macaddr=52:54:00:12:34:58 -net user,tftp={}\n",
            tftp.display()
        ),
    ))
}

fn build_iso(
    dir: &Path,
    ts: &crate::test_system::TestSystem,
    init: &str,
    iso: &Path,
) -> Result<()> {
    let xorriso = tool("xorriso", "xorriso")?;
    let work = dir.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    let tree = work.join("iso");
    std::fs::create_dir_all(tree.join("install.amd"))?;
    std::fs::create_dir_all(tree.join("install"))?;

    let initrd = work.join("initrd.gz");
    installer_initrd(dir, ts, init, &initrd)?;
    std::fs::copy(&ts.kernel, tree.join("install.amd/vmlinux"))?;
    std::fs::copy(&initrd, tree.join("install.amd/initrd.gz"))?;
    std::fs::copy(&ts.initramfs, tree.join("install/base.cpio.gz"))?;
    let boot = work.join("boot.img");
    boot_image(&work, &ts.bzimage, &initrd, &boot)?;
    gzip_to(&std::fs::read(&boot)?, &tree.join("install/boot.img.gz"))?;
    std::fs::create_dir_all(tree.join(".disk"))?;
    std::fs::write(
        tree.join(".disk/info"),
        "lava-rs tiny installer (cargo xtask iso-installer)\n",
    )?;
    let tmp = dir.join("installer.iso.tmp");
    let _ = std::fs::remove_file(&tmp);
    run_captured(
        Command::new(&xorriso)
            .args([
                "-as",
                "mkisofs",
                "-quiet",
                "-r",
                "-J",
                "-V",
                "LAVA_RS_INSTALLER",
                "-o",
            ])
            .arg(&tmp)
            .arg(&tree),
    )?;
    std::fs::rename(&tmp, iso)?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

/// The installer's initrd: busybox, the installer `/init`, the modules it loads.
fn installer_initrd(
    dir: &Path,
    ts: &crate::test_system::TestSystem,
    init: &str,
    out: &Path,
) -> Result<()> {
    let debs = crate::test_system::cache_dir().join("debs");
    let [busybox_deb]: [PathBuf; 1] = fetch_debs(&debs, &["busybox-static"])?
        .try_into()
        .expect("one package");
    let busybox = extract_file(&busybox_deb, "./bin/busybox")?;
    let release = &ts.kernel_release;
    eprintln!("iso-installer: modules from {}", file_name(&ts.kernel_deb));
    let kdir = dir.join("kernel");
    let (moddir, modules) =
        unpack_kernel(&ts.kernel_deb, &kdir, release, &[], MODULE_DIRS, MODULES)?;
    let mut cpio = Initramfs::default();
    for d in [
        "bin",
        "dev",
        "etc",
        "lib",
        "proc",
        "sys",
        "tmp",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "cdrom",
        "target",
        "etc/lava-rs",
    ] {
        cpio.dir(d, if d == "tmp" { 0o1777 } else { 0o755 })?;
    }
    cpio.char_dev("dev/console", 0o600, 5, 1)?;
    cpio.char_dev("dev/null", 0o666, 1, 3)?;
    cpio.file("bin/busybox", 0o755, &busybox)?;
    cpio.symlink("bin/sh", "busybox")?;
    cpio.file("init", 0o755, init.as_bytes())?;
    cpio.file("etc/lava-rs/udhcpc", 0o755, UDHCPC_SCRIPT.as_bytes())?;
    let libmod = format!("lib/modules/{release}");
    cpio.dir("lib/modules", 0o755)?;
    cpio.dir(&libmod, 0o755)?;
    let mut load = String::new();
    for (index, m) in modules.iter().enumerate() {
        // Flat names keep the archive simple; the load order is the list's.
        let name = format!("{libmod}/{index:02}-{}.ko", m.name);
        cpio.file(&name, 0o644, &std::fs::read(moddir.join(&m.rel))?)?;
        load.push_str(&format!("/{name}\n"));
    }
    cpio.file("etc/lava-rs/modules", 0o644, load.as_bytes())?;
    gzip_to(&cpio.finish()?, out)?;
    std::fs::remove_dir_all(&kdir)?;
    Ok(())
}

/// The start of the installed disk: MBR boot code and partition table, then the FAT16 boot
/// partition with SYSLINUX, the kernel and the initrd. The root partition is listed in
/// the table but left to the installer to format.
fn boot_image(work: &Path, bzimage: &Path, initrd: &Path, out: &Path) -> Result<()> {
    let mkfs = tool("mkfs.fat", "dosfstools")?;
    let mcopy = tool("mcopy", "mtools")?;
    let syslinux = tool("syslinux", "syslinux")?;
    let mbr_bin = Path::new("/usr/lib/syslinux/mbr/mbr.bin");
    ensure!(
        mbr_bin.is_file(),
        "{} is missing (Debian package syslinux-common)",
        mbr_bin.display()
    );
    let part = work.join("boot-partition.img");
    run_captured(
        Command::new(&mkfs)
            .args(["-C", "-F", "16", "-n", "LAVARSBOOT"])
            .arg(&part)
            .arg((BOOT_MB * 1024).to_string()),
    )?;
    let cfg = work.join("syslinux.cfg");
    std::fs::write(&cfg, SYSLINUX_CFG)?;
    let kernel = work.join("vmlinuz");
    std::fs::copy(bzimage, &kernel)?;
    let mut mcopy_cmd = Command::new(&mcopy);
    mcopy_cmd
        .arg("-i")
        .arg(&part)
        .arg(&kernel)
        .arg(initrd)
        .arg(&cfg)
        .arg("::/");
    run_captured(&mut mcopy_cmd)?;
    run_captured(Command::new(&syslinux).arg("--install").arg(&part))?;

    let mut disk = vec![0u8; 1024 * 1024];
    let mbr = std::fs::read(mbr_bin)?;
    ensure!(
        mbr.len() <= 440,
        "{} is larger than MBR boot code",
        mbr_bin.display()
    );
    disk[..mbr.len()].copy_from_slice(&mbr);
    let boot_start = 2048u32;
    let boot_sectors = (BOOT_MB * 2048) as u32;
    let root_sectors = (ROOT_MB * 2048) as u32;
    disk[446..462].copy_from_slice(&partition_entry(true, 0x06, boot_start, boot_sectors));
    disk[462..478].copy_from_slice(&partition_entry(
        false,
        0x83,
        boot_start + boot_sectors,
        root_sectors,
    ));
    disk[510] = 0x55;
    disk[511] = 0xaa;
    let mut file = std::fs::File::create(out)?;
    file.write_all(&disk)?;
    let partition = std::fs::read(&part)?;
    ensure!(
        partition.len() as u64 == BOOT_MB * 1024 * 1024,
        "the boot partition image has {} bytes",
        partition.len()
    );
    file.write_all(&partition)?;
    Ok(())
}

/// An MBR partition entry addressed by LBA only (CHS fields saturated, as for a disk too
/// large for CHS).
fn partition_entry(bootable: bool, kind: u8, start: u32, sectors: u32) -> [u8; 16] {
    let mut entry = [0u8; 16];
    entry[0] = if bootable { 0x80 } else { 0 };
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[4] = kind;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&start.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    entry
}

/// The installed disk's bootloader configuration. SYSLINUX reaches the serial line only
/// through SeaBIOS's serial console (QEMU sets it up for `-nographic`), which interleaves
/// cursor escapes into the text at random places (`Loading initial ramdis\e[11;22Hk`), and
/// its `SAY` text never reaches the UART itself. So the installed boot entry announces
/// itself the way GRUB does on a Debian install, with LAVA's `Loading initial ramdisk`,
/// in its kernel command line, which the kernel prints on the serial console first thing.
const SYSLINUX_CFG: &str = "\
PROMPT 0
TIMEOUT 0
DEFAULT installed
LABEL installed
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyS0,115200 lava_rs.root=LABEL=installed-root lava_rs.boot=\"Loading initial ramdisk of the installed system\"
";

/// busybox udhcpc's event script: configure the leased address.
const UDHCPC_SCRIPT: &str = "\
#!/bin/sh
case \"$1\" in
bound|renew) ifconfig \"$interface\" \"$ip\" netmask \"${subnet:-255.255.255.0}\" up ;;
esac
";

/// The installer initrd's `/init`, installer and installed system's first stage in one.
const INSTALLER_INIT: &str = r#"#!/bin/sh
# /init of the lava-rs tiny installer (written by `cargo xtask iso-installer`).
# With lava_rs.root=LABEL=... on the kernel command line: the installed system's first stage
# (mount DEV, switch_root). Otherwise: install as the preseed file says.
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
while read -r module; do
    insmod "$module" 2>/dev/null
done < /etc/lava-rs/modules

# The value of NAME=VALUE on the kernel command line.
arg() {
    for word in $(cat /proc/cmdline); do
        case "$word" in "$1"=*) echo "${word#*=}"; return ;; esac
    done
}
# Wait up to 20 s for a block device to appear.
wait_for() {
    n=0
    while [ ! -b "$1" ] && [ $n -lt 100 ]; do sleep 0.2; n=$((n + 1)); done
    [ -b "$1" ]
}
say() { echo "lava-rs-installer: $*"; }
halt_now() { sync; sleep 1; poweroff -f; }
# The reason first: the dispatcher may end the installer as soon as the error line shows.
fail() { say "$*"; echo "ERROR: Installation step failed"; halt_now; }

root=$(arg lava_rs.root)
if [ -n "$root" ]; then
    # Disks are named in the order they are probed: find the root by its label.
    echo "lava-rs installed system: root $root"
    n=0
    dev=$(findfs "$root" 2>/dev/null)
    while [ -z "$dev" ] && [ $n -lt 100 ]; do
        sleep 0.2
        n=$((n + 1))
        dev=$(findfs "$root" 2>/dev/null)
    done
    [ -n "$dev" ] || { echo "lava-rs: no disk holds $root"; halt_now; }
    mount -t ext4 "$dev" /target || { echo "lava-rs: cannot mount $dev"; halt_now; }
    umount /sys /proc
    umount /dev 2>/dev/null
    exec switch_root /target /init
fi

say "starting (kernel $(uname -r))"
url=$(arg preseed/url)
say "preseed location: $url"
case "$url" in
tftp://*/*) rest=${url#tftp://}; host=${rest%%/*}; path=${rest#*/} ;;
*) echo "ERROR: Failed to retrieve the preconfiguration file (no tftp:// preseed/url)"; halt_now ;;
esac
say "configuring the network with DHCP"
ifconfig lo 127.0.0.1 up
ifconfig eth0 up || say "no network card eth0"
timeout 30 udhcpc -i eth0 -n -q -t 10 -T 1 -s /etc/lava-rs/udhcpc >/dev/null 2>&1 || say "no DHCP answer"
if ! tftp -g -r "$path" -l /tmp/preseed.cfg "$host" || [ ! -s /tmp/preseed.cfg ]; then
    echo "ERROR: Failed to retrieve the preconfiguration file"
    halt_now
fi
say "preseed retrieved from $host"
# The value of a d-i question of the preseed (the last answer wins).
answer() {
    value=
    while read -r owner question kind rest; do
        [ "$owner" = d-i ] && [ "$question" = "$1" ] && value=$rest
    done < /tmp/preseed.cfg
    echo "$value"
}
disk=$(answer partman-auto/disk)
hostname=$(answer netcfg/get_hostname)
password=$(answer passwd/root-password-crypted)
[ -n "$disk" ] || fail "the preseed names no disk (partman-auto/disk)"
say "installing to $disk, hostname ${hostname:-unset}"

wait_for /dev/sr0 || fail "no installation CD"
mkdir -p /cdrom
mount -t iso9660 -o ro /dev/sr0 /cdrom || fail "cannot mount the installation CD"
wait_for "$disk" || fail "no disk $disk"
say "partitioning $disk and writing the boot loader"
zcat /cdrom/install/boot.img.gz > "$disk" || fail "writing $disk"
sync
blockdev --rereadpt "$disk" || fail "re-reading the partition table of $disk"
wait_for "${disk}2" || fail "no root partition ${disk}2"
say "formatting ${disk}2"
mke2fs -q -L installed-root "${disk}2" >/dev/null || fail "formatting ${disk}2"
mount -t ext4 "${disk}2" /target || fail "mounting ${disk}2"
say "installing the base system"
(cd /target && zcat /cdrom/install/base.cpio.gz | cpio -i -d -m 2>/dev/null) || fail "unpacking the base system"
say "configuring the installed system"
[ -z "$hostname" ] || echo "$hostname" > /target/etc/hostname
echo "root:x:0:0:root:/root:/bin/sh" > /target/etc/passwd
echo "root:${password:-*}:19000:0:99999:7:::" > /target/etc/shadow
chmod 600 /target/etc/shadow
# LAVA runs Debian's test shell with /bin/bash (the debian_installer deployment data):
# busybox's ash stands in for it.
printf '#!/bin/sh\nexec /bin/sh "$@"\n' > /target/bin/bash
chmod 755 /target/bin/bash
# The modules are loaded by the first stage already.
: > /target/etc/lava-rs/modules
cat > /target/etc/inittab <<'EOF'
# busybox init of the installed system: a login on the serial line.
ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
EOF
# The hostname the preseed chose, set at every boot.
sed -i "s/^hostname .*/hostname \$(cat \/etc\/hostname)/" /target/init
echo "installed by the lava-rs tiny installer from $url" > /target/etc/lava-rs/installed
umount /target || fail "unmounting ${disk}2"
umount /cdrom
sync
say "Installation complete"
halt_now
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_entries_are_lba() {
        let entry = partition_entry(true, 0x06, 2048, 32768);
        assert_eq!(entry[0], 0x80);
        assert_eq!(entry[4], 0x06);
        assert_eq!(u32::from_le_bytes(entry[8..12].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(entry[12..16].try_into().unwrap()), 32768);
        assert_eq!(partition_entry(false, 0x83, 1, 1)[0], 0);
    }

    #[test]
    fn the_installer_prints_what_lava_waits_for() {
        let init = INSTALLER_INIT;
        for message in [
            "ERROR: Installation step failed",
            "ERROR: Failed to retrieve the preconfiguration file",
            "Installation complete",
        ] {
            assert!(init.contains(message), "{message}");
        }
        assert!(SYSLINUX_CFG.contains("lava_rs.boot=\"Loading initial ramdisk "));
    }

    #[test]
    fn the_preseed_answers_what_the_installer_asks() {
        for question in [
            "partman-auto/disk",
            "netcfg/get_hostname",
            "passwd/root-password-crypted",
        ] {
            assert!(PRESEED.contains(&format!("d-i {question} ")), "{question}");
            assert!(
                INSTALLER_INIT.contains(&format!("answer {question}")),
                "{question}"
            );
        }
        assert!(PRESEED.contains("get_hostname string lava-rs-installed"));
    }
}
