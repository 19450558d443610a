//! The board's software, from Debian packages: U-Boot (`u-boot-qemu`'s `qemu_arm64`), an arm64
//! kernel (`linux-image-*-arm64`), a busybox root (`busybox-static:arm64`) as a ramdisk and as
//! an NFS root tarball, a modules tarball, and the board's DTB dumped from the machine that runs.
//!
//! The arm64 packages are fetched with `apt-get download` (after `dpkg --add-architecture
//! arm64`, which only lets apt know arm64 package lists) into `<rig>/debs/` and read with
//! `dpkg-deb`: nothing foreign is installed and nothing runs under emulation while building.
//! The outputs are rebuilt when the resolved package files or the root's own files change
//! (`<rig>/artefacts/stamp`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::test_system::{
    Initramfs, Module, extract, extract_file, fetch_debs, file_name, fnv1a, gzip_to,
    kernel_package_of, run_captured, unpack_kernel,
};

/// Printed by the root's `/init` just before the shell starts.
pub const BANNER: &str = "lava-rs board ready";
/// The shell prompt of the board's busybox root.
pub const PROMPT: &str = "/ # ";
/// The board's hostname.
pub const HOSTNAME: &str = "lava-rs-board";
/// Modules the root loads (with their dependencies) to mount an NFS root over the board's
/// virtio network card; also what the modules tarball carries.
const NFS_MODULES: &[&str] = &["virtio_pci", "virtio_net", "nfsv3"];
/// Module directories unpacked in the first pass (dependencies outside are fetched later).
const MODULE_DIRS: &[&str] = &[
    "kernel/drivers/net",
    "kernel/drivers/virtio",
    "kernel/net/core",
    "kernel/net/sunrpc",
    "kernel/fs/nfs",
    "kernel/fs/nfs_common",
    "kernel/fs/lockd",
];
/// Bump when the outputs change in a way the stamp would not notice.
const FORMAT_VERSION: u32 = 4;

/// The prepared artefacts, as a lab would publish them.
#[derive(Debug, Clone)]
pub struct Artefacts {
    /// U-Boot 2023.01 for QEMU's arm64 `virt` machine: the board's firmware (`-bios`).
    pub u_boot: PathBuf,
    /// Debian's arm64 kernel: an uncompressed `Image`, booted with `booti`.
    pub kernel: PathBuf,
    /// The busybox root as a gzip-compressed newc cpio.
    pub ramdisk: PathBuf,
    /// The same ramdisk with a U-Boot legacy header (mkimage), for `bootm`/`booti` as is.
    pub ramdisk_u_boot: PathBuf,
    /// The board's device tree, dumped from the same QEMU machine.
    pub dtb: PathBuf,
    /// `lib/modules/<release>/…`: the network and NFS modules, gzip-compressed tar.
    pub modules: PathBuf,
    /// The busybox root as a gzip-compressed tar.
    pub nfsrootfs: PathBuf,
    /// A disk image for the board's USB stick: the root and the boot files on one ext2
    /// partition, gzip-compressed (`media.rs`).
    pub usb_image: PathBuf,
    /// LAVA 2023.01's device-type templates (from Debian's `lava-server` package), where the
    /// board's own template is written next to `base-uboot.jinja2`.
    pub device_types: PathBuf,
}

/// The QEMU arguments that define the board's hardware: one list for the DTB dump and for
/// every power-on, so that the DTB always describes the machine that runs.
pub fn machine_args(u_boot: &Path) -> Vec<String> {
    [
        "-machine",
        "virt",
        "-cpu",
        "cortex-a57",
        "-smp",
        "1",
        "-m",
        "1024",
        "-bios",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([u_boot.display().to_string()])
    .chain(["-nic", "user,model=virtio-net-pci"].map(String::from))
    .collect()
}

/// Make sure every artefact exists under `dir` (`<rig>/artefacts`), rebuilding what is stale.
pub fn prepare(rig: &Path, force: bool) -> Result<Artefacts> {
    let debs = rig.join("debs");
    let out = rig.join("artefacts");
    std::fs::create_dir_all(&debs)?;
    std::fs::create_dir_all(&out)?;
    ensure_arm64_lists()?;

    let [busybox_deb, meta_deb, lava_server_deb]: [PathBuf; 3] = fetch_debs(
        &debs,
        &[
            "busybox-static:arm64",
            "linux-image-arm64:arm64",
            "lava-server",
        ],
    )?
    .try_into()
    .expect("three packages");
    let (image_pkg, _) = kernel_package_of(&meta_deb)?;
    let kernel_deb = fetch_debs(&debs, &[&format!("{image_pkg}:arm64")])?.remove(0);
    let release = image_pkg
        .strip_prefix("linux-image-")
        .context("kernel package name")?
        .to_string();
    let u_boot = PathBuf::from("/usr/lib/u-boot/qemu_arm64/u-boot.bin");
    ensure!(
        u_boot.is_file(),
        "{} is missing (Debian's u-boot-qemu: scripts/install-test-deps.sh)",
        u_boot.display()
    );

    let a = Artefacts {
        kernel: out.join("Image"),
        ramdisk: out.join("ramdisk.cpio.gz"),
        ramdisk_u_boot: out.join("ramdisk.cpio.gz.u-boot"),
        dtb: out.join("qemu-arm64-virt.dtb"),
        modules: out.join("modules.tar.gz"),
        nfsrootfs: out.join("nfsrootfs.tar.gz"),
        usb_image: out.join("usb-image.img.gz"),
        device_types: rig.join("device-types"),
        u_boot,
    };
    let statics = root_files(&release, &[]);
    let mut stamp = format!(
        "format {FORMAT_VERSION}\nkernel {}\nbusybox {}\nlava-server {}\nu-boot {}\nmachine {}\n",
        file_name(&kernel_deb),
        file_name(&busybox_deb),
        file_name(&lava_server_deb),
        std::fs::metadata(&a.u_boot)?.len(),
        machine_args(&a.u_boot).join(" "),
    );
    for (path, _, content) in &statics {
        stamp.push_str(&format!("{path} {:016x}\n", fnv1a(content.as_bytes())));
    }
    let stamp_path = out.join("stamp");
    let outputs = [
        &a.kernel,
        &a.ramdisk,
        &a.ramdisk_u_boot,
        &a.dtb,
        &a.modules,
        &a.nfsrootfs,
        &a.usb_image,
    ];
    if !force
        && outputs.iter().all(|p| p.is_file())
        && a.device_types.join("base-uboot.jinja2").is_file()
        && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
    {
        eprintln!("test-board: artefacts up to date ({})", out.display());
        return Ok(a);
    }
    let _ = std::fs::remove_file(&stamp_path);

    unpack_lava_device_types(&lava_server_deb, rig, &a.device_types)?;

    // The kernel and the modules the root needs.
    let kdir = rig.join("kernel");
    eprintln!("test-board: unpacking {}", file_name(&kernel_deb));
    let (moddir, modules) = unpack_kernel(
        &kernel_deb,
        &kdir,
        &release,
        &["vmlinuz"],
        MODULE_DIRS,
        NFS_MODULES,
    )?;
    std::fs::copy(kdir.join(format!("boot/vmlinuz-{release}")), &a.kernel)?;
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(&mut std::fs::File::open(&a.kernel)?, &mut magic)?;
    // An arm64 Image has "ARM\x64" at offset 56; a gzip-compressed one starts 1f 8b.
    ensure!(
        magic != [0x1f, 0x8b, 0x08, 0x00],
        "{} is gzip-compressed: booti needs an Image",
        a.kernel.display()
    );

    // The root tree, staged on disk: the ramdisk, the NFS root and the modules come from it.
    let module_rels: Vec<String> = modules.iter().map(|m| m.rel.clone()).collect();
    let root = rig.join("root");
    stage_busybox_root(
        &root,
        &busybox_deb,
        root_files(&release, &module_rels),
        &release,
        &moddir,
        &modules,
    )?;
    super::media::install_modules(&kernel_deb, &kdir, &moddir, &release, &root)?;
    std::fs::remove_dir_all(&kdir)?;

    let cpio = cpio_of(&root)?;
    gzip_to(&cpio, &a.ramdisk)?;
    run_captured(
        Command::new("mkimage")
            .args(["-A", "arm64", "-O", "linux", "-T", "ramdisk", "-C", "none"])
            .args(["-a", "0", "-e", "0", "-n", "lava-rs board ramdisk", "-d"])
            .arg(&a.ramdisk)
            .arg(&a.ramdisk_u_boot),
    )
    .context("mkimage (Debian's u-boot-tools)")?;
    tar_gz(&root, &["."], &a.nfsrootfs)?;
    tar_gz(&root, &["lib/modules"], &a.modules)?;

    // The DTB of exactly the machine the power-on script starts.
    let _ = std::fs::remove_file(&a.dtb);
    let mut args = machine_args(&a.u_boot);
    args[1] = format!("virt,dumpdtb={}", a.dtb.display());
    // The media plugged in as on every power-on (blank ones: PCI devices are not in the DTB,
    // but the machine is the same).
    let blank_media = out.join("dtb-dump-media");
    std::fs::create_dir_all(&blank_media)?;
    super::media::plug_media(&blank_media)?;
    args.extend(super::media::qemu_args(&blank_media));
    run_captured(
        Command::new("qemu-system-aarch64")
            .args(&args)
            .args(["-display", "none"]),
    )
    .context("dumping the board's DTB with qemu-system-aarch64")?;
    ensure!(a.dtb.is_file(), "QEMU wrote no DTB to {}", a.dtb.display());
    std::fs::remove_dir_all(&blank_media)?;
    super::media::build_image(&root, &[&a.kernel, &a.ramdisk_u_boot, &a.dtb], &a.usb_image)?;

    std::fs::write(&stamp_path, stamp)?;
    eprintln!(
        "test-board: artefacts ready in {} (kernel {release}, modules: {})",
        out.display(),
        module_names(&modules)
    );
    Ok(a)
}

/// apt knows arm64 package lists: `dpkg --add-architecture arm64` and `apt-get update` once.
fn ensure_arm64_lists() -> Result<()> {
    let foreign = run_captured(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    if foreign.lines().any(|l| l.trim() == "arm64") {
        return Ok(());
    }
    eprintln!("test-board: dpkg --add-architecture arm64 && apt-get update");
    run_captured(Command::new("dpkg").args(["--add-architecture", "arm64"]))
        .context("adding arm64 to dpkg's architectures (needs root)")?;
    run_captured(Command::new("apt-get").args(["-o", "DPkg::Lock::Timeout=600", "update", "-q"]))?;
    Ok(())
}

pub(super) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Stage a busybox root under `root` (replaced): the usual top directories, `bin/busybox`
/// from `busybox_deb` with `bin/sh` and `sbin/init` linked to it, `files` (`(path in the
/// root, mode, content)`), and `modules` copied from `moddir` to `lib/modules/<release>/`.
pub(super) fn stage_busybox_root(
    root: &Path,
    busybox_deb: &Path,
    files: Vec<(&str, u32, String)>,
    release: &str,
    moddir: &Path,
    modules: &[Module],
) -> Result<()> {
    if root.exists() {
        std::fs::remove_dir_all(root)?;
    }
    for d in [
        "bin", "dev", "etc", "lib", "mnt", "proc", "root", "run", "sbin", "sys", "tmp", "usr/bin",
        "usr/sbin", "var", "newroot",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::write(
        root.join("bin/busybox"),
        extract_file(busybox_deb, "./bin/busybox")?,
    )?;
    set_mode(&root.join("bin/busybox"), 0o755)?;
    std::os::unix::fs::symlink("busybox", root.join("bin/sh"))?;
    std::os::unix::fs::symlink("../bin/busybox", root.join("sbin/init"))?;
    for (path, mode, content) in files {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().expect("a file in the root"))?;
        std::fs::write(&file, content)?;
        set_mode(&file, mode)?;
    }
    let target_moddir = root.join(format!("lib/modules/{release}"));
    for m in modules {
        let to = target_moddir.join(&m.rel);
        std::fs::create_dir_all(to.parent().expect("a module path"))?;
        std::fs::copy(moddir.join(&m.rel), &to)?;
    }
    Ok(())
}

/// The modules' names, space-separated, for a progress line.
pub(super) fn module_names(modules: &[Module]) -> String {
    modules
        .iter()
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `tar -czf out -C dir members`, root-owned members.
pub(super) fn tar_gz(dir: &Path, members: &[&str], out: &Path) -> Result<()> {
    run_captured(
        Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "--sort=name"])
            .arg("-czf")
            .arg(out)
            .arg("-C")
            .arg(dir)
            .args(members),
    )?;
    Ok(())
}

/// The staged root as a newc archive (sorted, root-owned, zero times), plus the two device
/// nodes the kernel needs before `/init` mounts devtmpfs.
pub(super) fn cpio_of(root: &Path) -> Result<Vec<u8>> {
    let mut cpio = Initramfs::default();
    let mut paths = BTreeSet::new();
    collect(root, root, &mut paths)?;
    for rel in &paths {
        let path = root.join(rel);
        let meta = std::fs::symlink_metadata(&path)?;
        let name = rel.to_string_lossy();
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?;
            cpio.symlink(&name, &target.to_string_lossy())?;
        } else if meta.is_dir() {
            cpio.dir(&name, mode)?;
        } else {
            cpio.file(&name, mode, &std::fs::read(&path)?)?;
        }
    }
    cpio.char_dev("dev/console", 0o600, 5, 1)?;
    cpio.char_dev("dev/null", 0o666, 1, 3)?;
    cpio.finish()
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        out.insert(path.strip_prefix(root)?.to_path_buf());
        if std::fs::symlink_metadata(&path)?.is_dir() {
            collect(root, &path, out)?;
        }
    }
    Ok(())
}

/// `(path in the root, mode, content)` of the files written for the board's root. `modules`:
/// paths under `/lib/modules/<release>`, dependencies first, loaded before an NFS mount.
fn root_files(release: &str, modules: &[String]) -> Vec<(&'static str, u32, String)> {
    let init = format!(
        r#"#!/bin/busybox sh
# /init of the lava-rs U-Boot board's root (written by `cargo xtask test-board u-boot`):
# the same tree is the ramdisk and the NFS root. Booted as a ramdisk with `nfsroot=` on the
# kernel command line, it loads the network and NFS modules, mounts the NFS root over the
# board's user-mode network (the host is 10.0.2.2) and switches to it.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
. /etc/lava-rs/media.sh
nfsroot=$(sed -n 's/.*nfsroot=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$nfsroot" ] && [ "$(stat -f -c %T /)" != nfs ]; then
    while read -r module; do
        insmod "/lib/modules/{release}/$module" || echo "lava-rs board: could not load $module"
    done < /etc/lava-rs/modules
    ifconfig lo 127.0.0.1 up
    ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up
    route add default gw 10.0.2.2
    server=${{nfsroot%%,*}}
    options=nolock,addr=${{server%%:*}},${{nfsroot#*,}}
    echo "lava-rs board: mounting $server ($options)"
    if mount -t nfs -o "$options" "$server" /newroot; then
        umount /sys /proc
        exec switch_root /newroot /init
    fi
    echo "lava-rs board: NFS root $server could not be mounted; staying in the ramdisk"
fi
/bin/busybox mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
hostname {HOSTNAME}
# The board's own boot checks, one line each (what LAVA's `monitors` test reads on a board
# without a shell).
for fs in proc sysfs devtmpfs devpts tmpfs; do
    grep -q "^[^ ]* [^ ]* $fs " /proc/mounts && result=pass || result=fail
    echo "board-check: $fs $result"
done
echo
echo "{BANNER} ($(uname -sr), root on $(stat -f -c %T /))"
echo
exec /sbin/init
"#
    );
    let inittab = busybox_inittab("ttyAMA0");
    let profile = busybox_profile("the lava-rs board", PROMPT);
    vec![
        ("init", 0o755, init),
        ("etc/inittab", 0o644, inittab),
        ("etc/profile", 0o644, profile),
        ("etc/hostname", 0o644, format!("{HOSTNAME}\n")),
        ("etc/passwd", 0o644, ROOT_PASSWD.to_string()),
        ("etc/group", 0o644, ROOT_GROUP.to_string()),
        ("etc/lava-rs/modules", 0o644, module_list(modules)),
        (
            "etc/lava-rs/media.sh",
            0o644,
            super::media::init_script(release),
        ),
    ]
}

/// `/etc/passwd` of a busybox root: root alone, with busybox's shell.
pub(super) const ROOT_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n";
/// `/etc/group` of a busybox root.
pub(super) const ROOT_GROUP: &str = "root:x:0:\n";

/// `/etc/inittab` of a busybox root: one interactive shell on the console's real tty
/// (`tty`, the console's name, is named in the comment).
pub(super) fn busybox_inittab(tty: &str) -> String {
    format!(
        "\
# busybox init: one interactive shell on the console's real tty (cttyhack finds {tty}).
::respawn:/bin/cttyhack /bin/sh -l
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
"
    )
}

/// `/etc/profile` of a busybox root (`whose`: "the lava-rs board", …): the path, the
/// prompt `prompt`, and a wide terminal for a serial console.
pub(super) fn busybox_profile(whose: &str, prompt: &str) -> String {
    format!(
        r#"# /etc/profile of {whose}.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export HOME=/root
export PS1='{prompt}'
# A serial line reports no size: wide lines keep busybox's line editor from redrawing.
stty cols 1024 rows 40 2>/dev/null
cd /
"#
    )
}

/// `/etc/lava-rs/modules`: the module paths (under `/lib/modules/<release>`), one a line,
/// in load order.
pub(super) fn module_list(modules: &[String]) -> String {
    modules.iter().map(|m| format!("{m}\n")).collect()
}

/// LAVA's device-type templates, as Debian's `lava-server` package ships them (unpacked with
/// `dpkg-deb`, not installed), into `dest` (replaced); `scratch` holds the unpacking.
pub fn unpack_lava_device_types(lava_server_deb: &Path, scratch: &Path, dest: &Path) -> Result<()> {
    let unpacked = scratch.join("lava-server");
    if unpacked.exists() {
        std::fs::remove_dir_all(&unpacked)?;
    }
    std::fs::create_dir_all(&unpacked)?;
    extract(
        lava_server_deb,
        &unpacked,
        &["./usr/share/lava-server/device-types".to_string()],
    )?;
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    std::fs::rename(unpacked.join("usr/share/lava-server/device-types"), dest)?;
    std::fs::remove_dir_all(&unpacked)?;
    Ok(())
}
