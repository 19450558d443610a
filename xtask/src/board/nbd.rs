//! The board's NBD root (`deploy: to: nbd`): an initrd that brings up the network, attaches
//! `/dev/nbd0` to the server the kernel command line names and switches to it, and an ext4
//! image of the board's busybox root to serve.
//!
//! The initrd has the shape LAVA documents for NBD: it reads `nbd.server=` and `nbd.port=`
//! from the kernel command line (LAVA's `base_nbdroot_args`), loads the modules it needs
//! (virtio network, `nbd`, `ext4`, with their dependencies, from Debian's arm64 kernel),
//! connects with an NBD client and `switch_root`s to the NBD root. Debian's busybox-static
//! has no `nbd-client` applet, so the client is Debian's `nbd-client:arm64` with the shared
//! libraries it links (found by following `DT_NEEDED` with `readelf`, nothing run under
//! emulation). The root image is the rig's staged busybox root (`<rig>/root`, from
//! `artefacts`) written by `mke2fs -d` (no loop mount), gzip-compressed as a lab would
//! publish it. Both are rebuilt when their inputs change (`<rig>/artefacts/nbd-stamp`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use super::artefacts::{cpio_of, module_names, set_mode};
use crate::test_system::{
    extract_file, fetch_debs, file_name, fnv1a, gzip_to, kernel_package_of, run_captured,
    unpack_kernel,
};

/// Modules the initrd loads, with their dependencies, before it connects (ext4 asks the
/// crypto API for `crc32c` when it mounts: `crc32c_generic` provides it).
const NBD_MODULES: &[&str] = &["virtio_pci", "virtio_net", "nbd", "crc32c_generic", "ext4"];
/// Module directories (and files) unpacked in the first pass: every module of the closure
/// is in one of them, so the kernel package is read once (a module outside would cost
/// another pass over the whole package).
const MODULE_DIRS: &[&str] = &[
    "kernel/drivers/net",
    "kernel/drivers/virtio",
    "kernel/drivers/block",
    "kernel/net/core",
    "kernel/fs/ext4",
    "kernel/fs/jbd2",
    "kernel/fs/mbcache.ko",
    "kernel/lib/crc16.ko",
    "kernel/crypto/crc32c_generic.ko",
];
/// Debian's arm64 NBD client and the packages of the libraries it links.
const CLIENT_PACKAGES: &[&str] = &[
    "nbd-client:arm64",
    "libc6:arm64",
    "libgnutls30:arm64",
    "libnl-3-200:arm64",
    "libnl-genl-3-200:arm64",
    "libgmp10:arm64",
    "libhogweed6:arm64",
    "libnettle8:arm64",
    "libidn2-0:arm64",
    "libp11-kit0:arm64",
    "libtasn1-6:arm64",
    "libunistring2:arm64",
    "libffi8:arm64",
];
/// The NBD root image's size (sparse; the busybox root uses a few MiB).
const IMAGE_SIZE: &str = "64M";
/// Bump when the outputs change in a way the stamp would not notice.
const FORMAT_VERSION: u32 = 1;

/// The NBD deployment's artefacts.
#[derive(Debug, Clone)]
pub struct NbdArtefacts {
    /// The NBD initrd, a gzip-compressed newc cpio without a U-Boot header (the `nbd`
    /// commands pass its size: `booti <kernel> <initrd>:${initrd_size} <dtb>`).
    pub initrd: PathBuf,
    /// The board's busybox root as an ext4 image, gzip-compressed.
    pub nbdroot: PathBuf,
}

/// Make sure the NBD initrd and root image exist under `<rig>/artefacts`, rebuilding them
/// when stale. Needs the staged root `artefacts::prepare` leaves in `<rig>/root`.
pub fn prepare(rig: &Path, force: bool) -> Result<NbdArtefacts> {
    let debs = rig.join("debs");
    let out = rig.join("artefacts");
    let root = rig.join("root");
    ensure!(
        root.join("init").is_file(),
        "{} has no staged root: the board's artefacts are prepared first",
        root.display()
    );
    let a = NbdArtefacts {
        initrd: out.join("nbd-initrd.cpio.gz"),
        nbdroot: out.join("nbdroot.ext4.gz"),
    };
    let mut packages: Vec<&str> = vec!["busybox-static:arm64", "linux-image-arm64:arm64"];
    packages.extend(CLIENT_PACKAGES);
    let fetched = fetch_debs(&debs, &packages)?;
    let (busybox_deb, meta_deb, client_debs) = (&fetched[0], &fetched[1], &fetched[2..]);
    let (image_pkg, _) = kernel_package_of(meta_deb)?;
    let kernel_deb = fetch_debs(&debs, &[&format!("{image_pkg}:arm64")])?.remove(0);
    let release = image_pkg
        .strip_prefix("linux-image-")
        .context("kernel package name")?
        .to_string();

    let mut stamp = format!(
        "format {FORMAT_VERSION}\nkernel {}\nmodules {NBD_MODULES:?}\nimage size {IMAGE_SIZE}\n\
         init {:016x}\nroot {:016x}\n",
        file_name(&kernel_deb),
        fnv1a(init_script(&release).as_bytes()),
        tree_hash(&root)?,
    );
    for deb in fetched.iter() {
        stamp.push_str(&format!("deb {}\n", file_name(deb)));
    }
    let stamp_path = out.join("nbd-stamp");
    if !force
        && a.initrd.is_file()
        && a.nbdroot.is_file()
        && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
    {
        eprintln!("test-board: NBD artefacts up to date");
        return Ok(a);
    }
    let _ = std::fs::remove_file(&stamp_path);

    // The initrd's tree.
    let tree = rig.join("nbd-initrd");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    for d in [
        "bin",
        "dev",
        "etc/lava-rs",
        "lib",
        "newroot",
        "proc",
        "sbin",
        "sys",
        "usr/bin",
        "usr/sbin",
    ] {
        std::fs::create_dir_all(tree.join(d))?;
    }
    std::fs::write(
        tree.join("bin/busybox"),
        extract_file(busybox_deb, "./bin/busybox")?,
    )?;
    set_mode(&tree.join("bin/busybox"), 0o755)?;
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh"))?;

    // Kernel modules, dependencies first.
    let kdir = rig.join("nbd-kernel");
    eprintln!(
        "test-board: NBD initrd modules from {}",
        file_name(&kernel_deb)
    );
    let (moddir, modules) =
        unpack_kernel(&kernel_deb, &kdir, &release, &[], MODULE_DIRS, NBD_MODULES)?;
    let mut list = String::new();
    for m in &modules {
        let to = tree.join(format!("lib/modules/{release}")).join(&m.rel);
        std::fs::create_dir_all(to.parent().expect("a module path"))?;
        std::fs::copy(moddir.join(&m.rel), &to)?;
        list.push_str(&m.rel);
        list.push('\n');
    }
    std::fs::remove_dir_all(&kdir)?;
    std::fs::write(tree.join("etc/lava-rs/modules"), list)?;

    // nbd-client and the libraries it links.
    let sysroot = rig.join("nbd-sysroot");
    if sysroot.exists() {
        std::fs::remove_dir_all(&sysroot)?;
    }
    std::fs::create_dir_all(&sysroot)?;
    for deb in client_debs {
        run_captured(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&sysroot))
            .with_context(|| format!("unpacking {}", deb.display()))?;
    }
    let client = ["sbin/nbd-client", "usr/sbin/nbd-client"]
        .iter()
        .map(|p| sysroot.join(p))
        .find(|p| p.is_file())
        .context("Debian's nbd-client package has no sbin/nbd-client")?;
    let libraries = shared_libraries(&sysroot, &client)?;
    copy_file(&client, &tree.join("sbin/nbd-client"), 0o755)?;
    for (target, source) in &libraries {
        copy_file(source, &tree.join(target.trim_start_matches('/')), 0o755)?;
    }
    std::fs::remove_dir_all(&sysroot)?;

    std::fs::write(tree.join("init"), init_script(&release))?;
    set_mode(&tree.join("init"), 0o755)?;
    let cpio = cpio_of(&tree)?;
    gzip_to(&cpio, &a.initrd)?;
    std::fs::remove_dir_all(&tree)?;

    // The root image: the staged busybox root, as ext4, written without mounting.
    let image = out.join("nbdroot.ext4");
    let _ = std::fs::remove_file(&image);
    run_captured(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", "lava-nbdroot"])
            .args(["-E", "root_owner=0:0", "-d"])
            .arg(&root)
            .arg(&image)
            .arg(IMAGE_SIZE),
    )
    .context("mke2fs (Debian's e2fsprogs)")?;
    let status = Command::new("gzip")
        .args(["-n", "-f", "-6"])
        .arg(&image)
        .status()
        .context("running gzip")?;
    ensure!(status.success(), "gzip {} failed", image.display());

    std::fs::write(&stamp_path, stamp)?;
    eprintln!(
        "test-board: NBD initrd ({} libraries, modules: {}) and root image ready",
        libraries.len(),
        module_names(&modules)
    );
    Ok(a)
}

/// Prepares the NBD artefacts ([`prepare`]) and adds their URLs to the rig's summary
/// (`rig.txt`, written by `rig::write` just before); returns the lines added.
pub fn publish(rig: &super::rig::Rig, force: bool) -> Result<String> {
    let a = prepare(&rig.dir, force)?;
    let lines = format!(
        "initrd-nbd: file://{}\nnbdroot: file://{}\n",
        a.initrd.display(),
        a.nbdroot.display()
    );
    let mut text = std::fs::read_to_string(rig.summary_file())
        .with_context(|| format!("reading {}", rig.summary_file().display()))?;
    text.push_str(&lines);
    std::fs::write(rig.summary_file(), text)?;
    Ok(lines)
}

fn copy_file(from: &Path, to: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(to.parent().expect("a file path"))?;
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    set_mode(to, mode)
}

/// A hash of a directory tree's paths, modes and file contents (what the image is made of).
fn tree_hash(root: &Path) -> Result<u64> {
    let mut text = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let mut entries = BTreeSet::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if std::fs::symlink_metadata(&path)?.is_dir() {
                stack.push(path.clone());
            }
            entries.insert(path);
        }
    }
    for path in entries {
        let meta = std::fs::symlink_metadata(&path)?;
        let rel = path.strip_prefix(root)?.display().to_string();
        text.extend(rel.as_bytes());
        text.extend(
            format!(
                " {:o}\n",
                std::os::unix::fs::PermissionsExt::mode(&meta.permissions())
            )
            .as_bytes(),
        );
        if meta.is_file() {
            text.extend(fnv1a(&std::fs::read(&path)?).to_le_bytes());
        } else if meta.file_type().is_symlink() {
            text.extend(std::fs::read_link(&path)?.display().to_string().as_bytes());
        }
    }
    Ok(fnv1a(&text))
}

/// `readelf`'s view of an ELF file: its `DT_NEEDED` libraries and its interpreter.
fn elf_needs(file: &Path) -> Result<(Vec<String>, Option<String>)> {
    let dynamic = run_captured(Command::new("readelf").arg("-d").arg(file))
        .with_context(|| format!("readelf -d {} (Debian's binutils)", file.display()))?;
    let needed = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_string()))
        .collect();
    let headers = run_captured(Command::new("readelf").arg("-l").arg(file))?;
    let interpreter = headers.lines().find_map(|l| {
        let rest = l.split_once("program interpreter: ")?.1;
        Some(rest.trim_end_matches(']').trim().to_string())
    });
    Ok((needed, interpreter))
}

/// The shared libraries `binary` needs, transitively: `(path on the board, file in the
/// sysroot)`, the libraries in Debian's multiarch directory and the interpreter at its own
/// path.
fn shared_libraries(sysroot: &Path, binary: &Path) -> Result<BTreeMap<String, PathBuf>> {
    const DIRS: &[&str] = &["lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu"];
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    let (mut pending, interpreter) = elf_needs(binary)?;
    let interpreter = interpreter.context("nbd-client has no program interpreter")?;
    let real = std::fs::canonicalize(sysroot.join(interpreter.trim_start_matches('/')))
        .with_context(|| format!("the interpreter {interpreter} in the arm64 packages"))?;
    found.insert(interpreter, real);
    let mut seen = BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(file) = DIRS
            .iter()
            .map(|d| sysroot.join(d).join(&name))
            .find(|p| p.exists())
        else {
            bail!("{name}, needed by nbd-client, is in none of the packages {CLIENT_PACKAGES:?}");
        };
        let real = std::fs::canonicalize(&file)?;
        let (needs, _) = elf_needs(&real)?;
        pending.extend(needs);
        found.insert(format!("/lib/aarch64-linux-gnu/{name}"), real);
    }
    Ok(found)
}

/// The initrd's `/init`: LAVA's NBD initrd shape on the board's busybox.
fn init_script(release: &str) -> String {
    format!(
        r#"#!/bin/busybox sh
# /init of the lava-rs board's NBD initrd (written by `cargo xtask test-board u-boot`): the
# kernel command line names the NBD server (nbd.server=, nbd.port=, LAVA's nbd commands);
# this loads the network, nbd and ext4 modules, attaches /dev/nbd0 to the server over the
# board's user-mode network (the board is 10.0.2.15, QEMU's gateway 10.0.2.2) and switches
# to the root on it. On failure it says why and leaves a shell.
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
fail() {{
    echo "lava-rs nbd initrd: $*; staying in the initrd"
    exec sh
}}
arg() {{
    sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" /proc/cmdline
}}
server=$(arg nbd.server)
port=$(arg nbd.port)
[ -n "$server" ] && [ -n "$port" ] || fail "no nbd.server= and nbd.port= on the kernel command line"
while read -r module; do
    insmod "/lib/modules/{release}/$module" || echo "lava-rs nbd initrd: could not load $module"
done < /etc/lava-rs/modules
ifconfig lo 127.0.0.1 up
ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up || fail "no network interface"
route add default gw 10.0.2.2
echo "lava-rs nbd initrd: attaching /dev/nbd0 to $server:$port"
attached=
for try in 1 2 3 4 5; do
    if nbd-client "$server" "$port" /dev/nbd0; then
        attached=yes
        break
    fi
    sleep 1
done
[ -n "$attached" ] || fail "nbd-client could not attach /dev/nbd0 to $server:$port"
mount -t ext4 /dev/nbd0 /newroot || fail "/dev/nbd0 has no ext4 file system"
echo "lava-rs nbd initrd: root on /dev/nbd0, switching to it"
umount /sys /proc
exec switch_root /newroot /init
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_reads_lavas_kernel_arguments() {
        let init = init_script("6.1.0-99-arm64");
        assert!(init.contains("insmod \"/lib/modules/6.1.0-99-arm64/$module\""));
        assert!(init.contains("server=$(arg nbd.server)"));
        assert!(init.contains("nbd-client \"$server\" \"$port\" /dev/nbd0"));
        assert!(init.contains("exec switch_root /newroot /init"));
        // The argument reader, run by this host's sh on a LAVA-shaped command line.
        let cmdline = "console=ttyAMA0,115200n8 rw nbd.server=192.168.1.5 nbd.port=22350 \
                       root=/dev/ram0 ramdisk_size=16384 rootdelay=7";
        let script = format!(
            "arg() {{ echo ' {cmdline}' | sed -n \"s/.*[ ]$1=\\([^ ]*\\).*/\\1/p\"; }}; \
             echo \"$(arg nbd.server) $(arg nbd.port)\""
        );
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "192.168.1.5 22350"
        );
    }
}
