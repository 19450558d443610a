//! `cargo xtask test-board qemu-nfs`: a QEMU x86_64 device whose root is on NFS, for LAVA's
//! `deploy: to: nfs` + `boot: method: qemu-nfs` (docs/qemu-nfs.md).
//!
//! The guest is the embedded device's kernel (`cargo xtask test-system`: Debian's
//! `linux-image-amd64`, booted as an ELF through PVH) with a busybox tree that is both its
//! initrd and its NFS root: booted as the initrd with `nfsroot=` on the kernel command line,
//! `/init` loads the virtio network and NFS modules (Debian builds NFS as modules, so the
//! kernel cannot mount an NFS root by itself), configures `eth0` (`ip=dhcp`: busybox
//! `udhcpc` against QEMU's user-mode DHCP), mounts the root the dispatcher extracted and
//! switches to it. The dispatcher reaches nothing in the guest but its serial console.
//!
//! The lab part is the NFS server (`nfs_server`: nfs-ganesha exporting LAVA's
//! `/var/lib/lava/dispatcher/tmp` on ports [`NFS_PORT`]/[`MOUNT_PORT`], which the device's
//! `extra_nfsroot_args` name, so the guest never asks rpcbind), reached by the guest at
//! 10.0.2.2 (QEMU's user network forwards it to the host's loopback).
//!
//! Layout under `<target>/board-qemu-nfs/`: `artefacts/` (`initrd.cpio.gz`,
//! `nfsrootfs.tar.gz`), `bin/rig-up` and `bin/rig-down` (the supervisor
//! `xtask test-board qemu-nfs --serve` in a process group of its own, holding the NFS
//! server's lock), `dispatcher.yaml` (`dispatcher_nfs_ip: 10.0.2.2`), `rig.txt` (the
//! artefact URLs and files the tests read). The device is `fixtures/qemu/device-nfs.yaml`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::artefacts::{
    ROOT_GROUP, ROOT_PASSWD, busybox_inittab, busybox_profile, cpio_of, module_list, module_names,
    set_mode, stage_busybox_root, tar_gz,
};
use super::{cable, nfs_server, rig};
use crate::shared::workspace_root;
use crate::test_system::{self, fetch_debs, file_name, fnv1a, gzip_to, unpack_kernel};

/// The NFS server's port (the rig's range is 22200–22249).
pub const NFS_PORT: u16 = 22_200;
/// The NFS server's mount protocol port.
pub const MOUNT_PORT: u16 = 22_201;
/// Printed by the root's `/init` just before the shell starts.
pub const BANNER: &str = "lava-rs qemu-nfs guest ready";
/// The guest's hostname.
pub const HOSTNAME: &str = "lava-rs-qemu-nfs";
/// Modules `/init` loads (with their dependencies) before mounting the NFS root.
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
const FORMAT_VERSION: u32 = 1;
/// How long a second rig waits for another rig's NFS server to end.
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// The rig's directory.
pub fn dir() -> PathBuf {
    workspace_root().join("target").join("board-qemu-nfs")
}

/// `test-board qemu-nfs [--prepare | --stop | --serve]`.
pub fn run(args: &super::Args) -> Result<()> {
    let dir = dir();
    let run = dir.join("run");
    if args.serve {
        std::fs::create_dir_all(&run)?;
        let result = serve(&run);
        if let Err(e) = &result {
            let _ = std::fs::write(run.join("failed"), format!("{e:#}\n"));
        }
        return result;
    }
    if args.stop {
        return script(&dir.join("bin/rig-down"));
    }
    let summary = prepare(&dir, args.force)?;
    if !args.prepare {
        script(&dir.join("bin/rig-up"))?;
        eprintln!("test-board: the rig is up; `cargo xtask test-board qemu-nfs --stop` ends it");
    }
    print!("{summary}");
    Ok(())
}

fn script(path: &Path) -> Result<()> {
    let status = Command::new(path)
        .status()
        .with_context(|| format!("running {}", path.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", path.display());
    }
    Ok(())
}

/// Build the artefacts (when stale) and write the scripts, the dispatcher configuration and
/// `rig.txt`; returns `rig.txt`'s text.
fn prepare(dir: &Path, force: bool) -> Result<String> {
    let ts = test_system::build(&test_system::cache_dir(), false)?;
    let out = dir.join("artefacts");
    std::fs::create_dir_all(&out)?;
    let busybox_deb =
        fetch_debs(&test_system::cache_dir().join("debs"), &["busybox-static"])?.remove(0);
    let initrd = out.join("initrd.cpio.gz");
    let nfsrootfs = out.join("nfsrootfs.tar.gz");

    let files = root_files(&ts.kernel_release, &[]);
    let mut stamp = format!(
        "format {FORMAT_VERSION}\nkernel {}\nbusybox {}\nmodules {}\n",
        file_name(&ts.kernel_deb),
        file_name(&busybox_deb),
        NFS_MODULES.join(",")
    );
    for (path, _, content) in &files {
        let _ = writeln!(stamp, "{path} {:016x}", fnv1a(content.as_bytes()));
    }
    let stamp_path = out.join("stamp");
    let fresh = !force
        && initrd.is_file()
        && nfsrootfs.is_file()
        && std::fs::read_to_string(&stamp_path).is_ok_and(|old| old == stamp);
    if fresh {
        eprintln!("test-board qemu-nfs: artefacts up to date");
    } else {
        let _ = std::fs::remove_file(&stamp_path);
        build_root(dir, &ts, &busybox_deb, &initrd, &nfsrootfs)?;
        std::fs::write(&stamp_path, stamp)?;
    }

    for d in ["bin", "run"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let xtask = std::env::current_exe().context("the xtask binary's path")?;
    write_scripts(dir, &xtask)?;
    let dispatcher = dir.join("dispatcher.yaml");
    std::fs::write(
        &dispatcher,
        "# The guest reaches this host at 10.0.2.2 through QEMU's user-mode network, which\n\
         # forwards it to the host's loopback, where the rig's NFS server listens: LAVA's\n\
         # {NFS_SERVER_IP}.\ndispatcher_nfs_ip: 10.0.2.2\n",
    )?;
    let url = |p: &Path| format!("file://{}", p.display());
    let mut summary = String::new();
    writeln!(
        summary,
        "device: {}",
        workspace_root()
            .join("fixtures/qemu/device-nfs.yaml")
            .display()
    )?;
    writeln!(summary, "dispatcher: {}", dispatcher.display())?;
    writeln!(summary, "kernel: {}", url(&ts.kernel))?;
    writeln!(summary, "initrd: {}", url(&initrd))?;
    writeln!(summary, "nfsrootfs: {}", url(&nfsrootfs))?;
    writeln!(summary, "nfs_port: {NFS_PORT}")?;
    std::fs::write(dir.join("rig.txt"), &summary)?;
    Ok(summary)
}

/// The guest's tree, staged under `<dir>/root`: the initrd (newc, gzip) and the NFS root
/// (tar, gzip) are made from it.
fn build_root(
    dir: &Path,
    ts: &test_system::TestSystem,
    busybox_deb: &Path,
    initrd: &Path,
    nfsrootfs: &Path,
) -> Result<()> {
    let started = Instant::now();
    let release = &ts.kernel_release;
    let kdir = dir.join("kernel");
    let (moddir, modules) = unpack_kernel(
        &ts.kernel_deb,
        &kdir,
        release,
        &[],
        MODULE_DIRS,
        NFS_MODULES,
    )?;
    let root = dir.join("root");
    let rels: Vec<String> = modules.iter().map(|m| m.rel.clone()).collect();
    stage_busybox_root(
        &root,
        busybox_deb,
        root_files(release, &rels),
        release,
        &moddir,
        &modules,
    )?;
    set_mode(&root.join("tmp"), 0o1777)?;
    std::fs::remove_dir_all(&kdir)?;
    gzip_to(&cpio_of(&root)?, initrd)?;
    tar_gz(&root, &["."], nfsrootfs)?;
    eprintln!(
        "test-board qemu-nfs: initrd and NFS root built in {:.1}s (kernel {release}, modules: {})",
        started.elapsed().as_secs_f64(),
        module_names(&modules)
    );
    Ok(())
}

/// `(path in the root, mode, content)` of the files written for the guest's tree.
/// `modules`: paths under `/lib/modules/<release>`, dependencies first.
fn root_files(release: &str, modules: &[String]) -> Vec<(&'static str, u32, String)> {
    let init = format!(
        r#"#!/bin/busybox sh
# /init of the lava-rs qemu-nfs guest (written by `cargo xtask test-board qemu-nfs`): the
# same tree is the initrd and the NFS root. Booted as the initrd with `nfsroot=` on the
# kernel command line, it loads the network and NFS modules, configures eth0 (`ip=dhcp`:
# QEMU's user-mode DHCP; the host is 10.0.2.2), mounts the NFS root and switches to it.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
nfsroot=$(sed -n 's/.*nfsroot=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$nfsroot" ] && [ "$(stat -f -c %T /)" != nfs ]; then
    while read -r module; do
        insmod "/lib/modules/{release}/$module" || echo "lava-rs qemu-nfs: could not load $module"
    done < /etc/lava-rs/modules
    ifconfig lo 127.0.0.1 up
    if ! grep -q 'ip=dhcp' /proc/cmdline ||
        ! udhcpc -i eth0 -n -q -t 10 -s /etc/lava-rs/udhcpc.script; then
        echo "lava-rs qemu-nfs: eth0 set to QEMU's user-mode address 10.0.2.15"
        ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up
        route add default gw 10.0.2.2
    fi
    server=${{nfsroot%%,*}}
    options=nolock,addr=${{server%%:*}},${{nfsroot#*,}}
    echo "lava-rs qemu-nfs: mounting $server ($options)"
    if mount -t nfs -o "$options" "$server" /newroot; then
        umount /sys /proc
        exec switch_root /newroot /init
    fi
    echo "lava-rs qemu-nfs: NFS root $server could not be mounted; staying in the initrd"
fi
/bin/busybox mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
hostname {HOSTNAME}
echo
echo "{BANNER} ($(uname -sr), root on $(stat -f -c %T /))"
echo
exec /sbin/init
"#
    );
    let udhcpc = r#"#!/bin/sh
# udhcpc's hook: apply the lease QEMU's user-mode DHCP server gives.
case "$1" in
    bound|renew)
        ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
        for gw in $router; do route add default gw "$gw" dev "$interface"; break; done
        ;;
    deconfig)
        ifconfig "$interface" 0.0.0.0 up
        ;;
esac
exit 0
"#
    .to_string();
    let inittab = busybox_inittab("ttyS0");
    let profile = busybox_profile("the lava-rs qemu-nfs guest", "/ # ");
    vec![
        ("init", 0o755, init),
        ("etc/inittab", 0o644, inittab),
        ("etc/profile", 0o644, profile),
        ("etc/hostname", 0o644, format!("{HOSTNAME}\n")),
        ("etc/passwd", 0o644, ROOT_PASSWD.to_string()),
        ("etc/group", 0o644, ROOT_GROUP.to_string()),
        ("etc/lava-rs/udhcpc.script", 0o755, udhcpc),
        ("etc/lava-rs/modules", 0o644, module_list(modules)),
    ]
}

/// `bin/rig-up` and `bin/rig-down`.
fn write_scripts(dir: &Path, xtask: &Path) -> Result<()> {
    let q = |p: &Path| lava_python::shlex_quote(&p.display().to_string());
    let header = "# Written by `cargo xtask test-board qemu-nfs`; see docs/qemu-nfs.md.\nset -eu\n";
    let rig_up = rig::rig_up_script(
        "start the rig's NFS server under one supervisor in a process group of its own;\n\
         # wait until it answers (it first waits, bounded, for another rig's NFS server to end).",
        header,
        &q(&dir.join("run")),
        &format!("{} test-board qemu-nfs --serve", q(xtask)),
        6600,
    );
    let rig_down = rig::rig_down_script(
        "end the rig's supervisor and its servers (the supervisor's process group).",
        header,
        &q(&dir.join("run")),
        "",
        "",
    );
    for (name, text) in [("rig-up", rig_up), ("rig-down", rig_down)] {
        let path = dir.join("bin").join(name);
        std::fs::write(&path, text)?;
        set_mode(&path, 0o755)?;
    }
    Ok(())
}

/// The supervisor: the NFS server's lock, then rpcbind and nfs-ganesha as children; `ready`
/// once NFS answers; ends (with an error) when one of them exits.
fn serve(run: &Path) -> Result<()> {
    let _lock = nfs_server::lock(LOCK_WAIT)?;
    let mut children: Vec<(String, Child)> = Vec::new();
    let mut spawn =
        |name: &str, cmd: &mut Command| cable::spawn_logged(run, &mut children, name, cmd);
    let started = nfs_server::start(
        run,
        "the qemu-nfs rig (`cargo xtask test-board qemu-nfs`)",
        nfs_server::Ports {
            nfs: NFS_PORT,
            mount: MOUNT_PORT,
        },
        &mut spawn,
    );
    let result = started.and_then(|()| supervise(run, &mut children));
    cable::end(&mut children);
    result
}

fn supervise(run: &Path, children: &mut [(String, Child)]) -> Result<()> {
    cable::wait_for_port(NFS_PORT, children)?;
    std::fs::write(run.join("ready"), "")?;
    eprintln!("rig: ready (NFS on port {NFS_PORT}, mount on {MOUNT_PORT})");
    loop {
        exited(children)?;
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn exited(children: &mut [(String, Child)]) -> Result<()> {
    for (name, child) in children.iter_mut() {
        if let Some(status) = child.try_wait()? {
            bail!("rig: {name} exited ({status}); see its log");
        }
    }
    Ok(())
}
