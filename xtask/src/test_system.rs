//! `cargo xtask test-system`: the embedded default device's guest.
//!
//! Builds, from Debian packages, a kernel (`target/test-system/vmlinuz`) and a gzip-compressed
//! newc initramfs (`target/test-system/initramfs.cpio.gz`) for a tiny QEMU x86_64 guest whose
//! `/init` (below, POSIX sh for busybox) prepares the system, prints [`BANNER`] and hands over to
//! busybox `init`, which keeps an interactive busybox shell with prompt [`PROMPT`] on the serial
//! console (`console=ttyS0`).
//!
//! The packages (`linux-image-amd64`'s kernel package and `busybox-static`) are fetched with
//! `apt-get download` into `target/test-system/debs/` and read with `dpkg-deb`, so the host's
//! `/boot` and `/lib/modules` are never touched. Outputs are rebuilt only when the resolved
//! package files or the generated guest files change (`target/test-system/stamp`).
//!
//! The command also writes `target/test-system/qemu-smoke.yaml`: the job
//! `fixtures/qemu/qemu-smoke.yaml` with its `@TEST_SYSTEM_DIR@` placeholder replaced by the
//! absolute cache directory, ready to run against `fixtures/qemu/device.yaml`.
//!
//! Where `supermin` is installed (it comes with Debian's `lava-dispatcher`, through libguestfs),
//! the command also prepares what LAVA's own `lava-run` needs to run the same job: LAVA's
//! `apply-overlay-guest` builds the overlay disk with libguestfs, whose supermin appliance boots
//! a kernel from the host's `/boot` and `/lib/modules`, which a container does not have. The same
//! kernel package is unpacked (with the module directories the appliance can use, see
//! [`GUESTFS_MODULE_DIRS`]) under `target/test-system/guestfs/`, and
//! `target/test-system/libguestfs.env` lists the environment (`SUPERMIN_KERNEL`,
//! `SUPERMIN_MODULES`, `SUPERMIN_KERNEL_VERSION`, `LIBGUESTFS_BACKEND=direct`, TCG only, and an
//! appliance cache under `target/`) for whoever starts LAVA's `lava-run` (the reference test and
//! `cargo xtask bench job`). LAVA itself is never changed.
//!
//! `--boot-check` boots the result with the QEMU command line the dispatcher would build from
//! `fixtures/qemu/device.yaml` and the job's `image_arg`s (no dispatcher involved), waits for the
//! prompt, runs `echo ok`, powers off and prints the wall times: the bare-boot baseline.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lava_artefacts::newc::{CpioEntry, NewcWriter, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG};

use crate::shared::workspace_root;

/// Printed by `/init` once the guest is ready, just before the shell starts.
pub const BANNER: &str = "lava-rs test system ready";
/// The shell prompt. Fixed (no `\w`): busybox's familiar root prompt, which LAVA jobs for busybox
/// ramdisks conventionally list in `prompts` (`'/ # '`). LAVA replaces it with its own
/// `default-shell-prompt` (`lava-test: # `) via `export PS1=...` once logged in.
pub const PROMPT: &str = "/ # ";
/// The guest's hostname.
pub const HOSTNAME: &str = "lava-rs-qemu";
/// Placeholder for the absolute cache directory in `fixtures/qemu/qemu-smoke.yaml`.
pub const DIR_PLACEHOLDER: &str = "@TEST_SYSTEM_DIR@";

/// Kernel modules loaded at boot (with their dependencies), for the disk LAVA attaches to carry
/// the test overlay (`apply-overlay-guest`: ext2 on `if=ide`, or `virtio`). The serial console
/// (8250), devtmpfs, initramfs gzip and ACPI power-off are built into Debian's kernel.
const ROOT_MODULES: &[&str] = &[
    "ata_piix",
    "sd_mod",
    "virtio_pci",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
];
/// Directories of the kernel package extracted in one pass; dependencies found outside them
/// are fetched with further passes.
const MODULE_DIRS: &[&str] = &[
    "kernel/fs",
    "kernel/crypto",
    "kernel/lib",
    "kernel/drivers/ata",
    "kernel/drivers/scsi",
    "kernel/drivers/block",
    "kernel/drivers/virtio",
];
/// Bump when the layout of the outputs changes in a way the stamp would not notice (2: the
/// initramfs written by lava-artefacts' newc writer; 3: its init switches to a disk root
/// given as `lava_rs_root=`).
const FORMAT_VERSION: u32 = 3;
/// Module directories (under `lib/modules/<release>`) unpacked for libguestfs' appliance: its
/// minimal initrd loads disk, virtio and crc modules, its root loads filesystems and device
/// mapper ones. Leaving out networking, sound and the other drivers keeps the tree at ~95 MB
/// instead of ~400 MB, and the cached appliance at ~360 MB instead of ~680 MB.
const GUESTFS_MODULE_DIRS: &[&str] = &[
    "kernel/arch",
    "kernel/block",
    "kernel/crypto",
    "kernel/fs",
    "kernel/lib",
    "kernel/mm",
    "kernel/virt",
    "kernel/drivers/ata",
    "kernel/drivers/block",
    "kernel/drivers/char",
    "kernel/drivers/md",
    "kernel/drivers/scsi",
    "kernel/drivers/virtio",
];
/// The file listing libguestfs' environment, in the cache directory.
pub const GUESTFS_ENV_FILE: &str = "libguestfs.env";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// After building, boot the guest with bare QEMU (no dispatcher), wait for the prompt, run
    /// `echo ok`, power off and print the wall times.
    #[arg(long)]
    pub boot_check: bool,
    /// Rebuild even when the cache is up to date.
    #[arg(long)]
    pub force: bool,
    /// Upper bound, in seconds, for each wait of `--boot-check` (prompt, command, power-off).
    #[arg(long, default_value_t = 240)]
    pub timeout: u64,
}

/// The built artefacts.
#[derive(Debug, Clone)]
pub struct TestSystem {
    /// Debian's compressed kernel (bzImage), as shipped.
    pub bzimage: PathBuf,
    /// The same kernel decompressed (ELF `vmlinux`), which QEMU boots through its PVH entry
    /// point: no firmware-driven real-mode boot and no in-guest decompression, which under TCG
    /// takes the time to the prompt from ~27 s to ~11 s here. The job boots this one.
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub job: PathBuf,
    pub kernel_release: String,
    /// The Debian kernel package both kernels come from.
    pub kernel_deb: PathBuf,
}

/// The environment under which libguestfs (LAVA's `apply-overlay-guest`) builds and boots its
/// appliance on this machine.
#[derive(Debug, Clone)]
pub struct GuestfsEnv {
    /// `(name, value)` of each variable, as written to [`GUESTFS_ENV_FILE`].
    pub vars: Vec<(String, String)>,
    /// libguestfs' appliance cache (`LIBGUESTFS_CACHEDIR`).
    pub cache: PathBuf,
}

impl GuestfsEnv {
    /// Whether libguestfs has built its appliance already (the first launch builds it).
    pub fn appliance_cached(&self) -> bool {
        std::fs::read_dir(&self.cache)
            .into_iter()
            .flatten()
            .flatten()
            .any(|uid_dir| uid_dir.path().join("appliance.d/root").is_file())
    }
}

pub fn run(args: Args) -> Result<()> {
    let ts = build(&cache_dir(), args.force)?;
    println!("kernel:    {} ({})", ts.kernel.display(), ts.kernel_release);
    println!("bzImage:   {}", ts.bzimage.display());
    println!("initramfs: {}", ts.initramfs.display());
    println!("job:       {}", ts.job.display());
    println!("device:    {}", device_yaml().display());
    if supermin_available() {
        let env = guestfs_env(&cache_dir(), &ts, args.force)?;
        println!(
            "libguestfs: {} (for LAVA's lava-run; appliance {} {})",
            cache_dir().join(GUESTFS_ENV_FILE).display(),
            if env.appliance_cached() {
                "cached in"
            } else {
                "built on first use in"
            },
            env.cache.display()
        );
        let assignments: Vec<String> = env.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "LAVA:      env {} /usr/bin/lava-run --job-id 1 --output-dir DIR --device {} {}",
            assignments.join(" "),
            device_yaml().display(),
            ts.job.display()
        );
    } else {
        let _ = std::fs::remove_file(cache_dir().join(GUESTFS_ENV_FILE));
        println!("libguestfs: not prepared (no supermin: LAVA's lava-dispatcher is not installed)");
    }
    if args.boot_check {
        ensure!(
            qemu_available(),
            "qemu-system-x86_64 is not on PATH: see DESIGN.md, 'The embedded default device'"
        );
        let report = boot_check(&ts, Duration::from_secs(args.timeout), true)?;
        println!(
            "bare QEMU boot: prompt after {:.2}s, `echo ok` answered after {:.2}s, \
             powered off after {:.2}s (total wall time)",
            report.prompt.as_secs_f64(),
            report.echo.as_secs_f64(),
            report.total.as_secs_f64()
        );
    }
    Ok(())
}

/// `<workspace>/target/test-system`, whatever `CARGO_TARGET_DIR` says.
pub fn cache_dir() -> PathBuf {
    workspace_root().join("target").join("test-system")
}

/// Our rendered device dictionary for the embedded device.
pub fn device_yaml() -> PathBuf {
    workspace_root().join("fixtures/qemu/device.yaml")
}

/// The job template (with [`DIR_PLACEHOLDER`]).
pub fn job_template() -> PathBuf {
    workspace_root().join("fixtures/qemu/qemu-smoke.yaml")
}

// ---------------------------------------------------------------------------------------------
// Building

/// Build (or reuse) the kernel and initramfs in `dir`, and write the ready job file.
pub fn build(dir: &Path, force: bool) -> Result<TestSystem> {
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let kernel_path = dir.join("vmlinuz");
    let vmlinux_path = dir.join("vmlinux");
    let initramfs_path = dir.join("initramfs.cpio.gz");
    let stamp_path = dir.join("stamp");

    let [busybox_deb, meta_deb]: [PathBuf; 2] =
        fetch_debs(&debs, &["busybox-static", "linux-image-amd64"])?
            .try_into()
            .expect("two packages");
    let (image_pkg, image_version) = kernel_package_of(&meta_deb)?;
    // The exact version is known from the metapackage: skip asking apt again when cached.
    let predicted = debs.join(format!(
        "{image_pkg}_{}_amd64.deb",
        image_version.replace(':', "%3a")
    ));
    let kernel_deb = if !image_version.is_empty() && verified(&predicted) {
        predicted
    } else {
        fetch_debs(&debs, &[&image_pkg])?.remove(0)
    };
    let release = image_pkg
        .strip_prefix("linux-image-")
        .context("kernel package name")?
        .to_string();

    let statics = static_files(&release);
    let mut stamp = format!(
        "format {FORMAT_VERSION}\nkernel {}\nbusybox {}\nmodules {}\n",
        file_name(&kernel_deb),
        file_name(&busybox_deb),
        ROOT_MODULES.join(",")
    );
    for (path, _, content) in &statics {
        stamp.push_str(&format!("{path} {:016x}\n", fnv1a(content.as_bytes())));
    }
    let fresh = !force
        && kernel_path.is_file()
        && vmlinux_path.is_file()
        && initramfs_path.is_file()
        && std::fs::read_to_string(&stamp_path).is_ok_and(|old| old == stamp);
    if fresh {
        eprintln!("test-system: up to date ({})", stamp_path.display());
    } else {
        let started = Instant::now();
        let _ = std::fs::remove_file(&stamp_path);
        let kdir = dir.join("kernel");
        eprintln!("test-system: unpacking {}", file_name(&kernel_deb));
        let (moddir, modules) = unpack_kernel(
            &kernel_deb,
            &kdir,
            &release,
            &["vmlinuz", "config"],
            MODULE_DIRS,
            ROOT_MODULES,
        )?;
        eprintln!(
            "test-system: kernel {release}, modules: {}",
            modules
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let busybox = extract_file(&busybox_deb, "./bin/busybox")?;

        let mut cpio = Initramfs::default();
        for d in [
            "bin",
            "dev",
            "etc",
            "lib",
            "mnt",
            "proc",
            "root",
            "run",
            "sbin",
            "sys",
            "tmp",
            "usr",
            "usr/bin",
            "usr/sbin",
            "var",
            "etc/lava-rs",
            "lib/lava-rs",
        ] {
            cpio.dir(d, if d == "tmp" { 0o1777 } else { 0o755 })?;
        }
        cpio.char_dev("dev/console", 0o600, 5, 1)?;
        cpio.char_dev("dev/null", 0o666, 1, 3)?;
        cpio.file("bin/busybox", 0o755, &busybox)?;
        cpio.symlink("bin/sh", "busybox")?;
        for (path, mode, content) in &statics {
            cpio.file(path, *mode, content.as_bytes())?;
        }
        let libmod = format!("lib/modules/{release}");
        let mut dirs = BTreeSet::new();
        for m in &modules {
            let mut p = Path::new(&m.rel).parent();
            while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
                dirs.insert(d.to_path_buf());
                p = d.parent();
            }
        }
        cpio.dir("lib/modules", 0o755)?;
        cpio.dir(&libmod, 0o755)?;
        for d in dirs {
            cpio.dir(&format!("{libmod}/{}", d.display()), 0o755)?;
        }
        let mut dep = String::new();
        let mut load = String::new();
        for m in &modules {
            let data = std::fs::read(moddir.join(&m.rel))?;
            cpio.file(&format!("{libmod}/{}", m.rel), 0o644, &data)?;
            dep.push_str(&format!("{}:", m.rel));
            for d in &m.deps {
                dep.push_str(&format!(" {d}"));
            }
            dep.push('\n');
            load.push_str(&format!("/{libmod}/{}\n", m.rel));
        }
        cpio.file(&format!("{libmod}/modules.dep"), 0o644, dep.as_bytes())?;
        cpio.file("etc/lava-rs/modules", 0o644, load.as_bytes())?;
        let archive = cpio.finish()?;

        let tmp = dir.join("initramfs.cpio.gz.tmp");
        gzip_to(&archive, &tmp)?;
        std::fs::rename(&tmp, &initramfs_path)?;
        let config = std::fs::read_to_string(kdir.join(format!("boot/config-{release}")))?;
        ensure!(
            config.lines().any(|l| l == "CONFIG_PVH=y"),
            "kernel {release} cannot boot as an ELF through PVH (no CONFIG_PVH=y)"
        );
        let bzimage = kdir.join(format!("boot/vmlinuz-{release}"));
        let tmp = dir.join("vmlinux.tmp");
        decompress_bzimage(&bzimage, &tmp)?;
        std::fs::rename(&tmp, &vmlinux_path)?;
        std::fs::copy(&bzimage, &kernel_path)?;
        std::fs::write(&stamp_path, &stamp)?;
        eprintln!(
            "test-system: built in {:.1}s ({} bytes of cpio)",
            started.elapsed().as_secs_f64(),
            archive.len()
        );
    }

    let template = std::fs::read_to_string(job_template())
        .with_context(|| format!("reading {}", job_template().display()))?;
    let abs = std::fs::canonicalize(dir)?;
    let job = dir.join("qemu-smoke.yaml");
    std::fs::write(
        &job,
        template.replace(DIR_PLACEHOLDER, &abs.display().to_string()),
    )?;
    Ok(TestSystem {
        bzimage: abs.join("vmlinuz"),
        kernel: abs.join("vmlinux"),
        initramfs: abs.join("initramfs.cpio.gz"),
        job: abs.join("qemu-smoke.yaml"),
        kernel_release: release,
        kernel_deb,
    })
}

/// Whether `supermin` (libguestfs' appliance builder) is on `PATH`.
pub fn supermin_available() -> bool {
    on_path("supermin").is_some()
}

/// Unpack the kernel of `ts` for libguestfs under `dir/guestfs` (once per kernel package),
/// generate its `modules.dep` with `depmod`, and write `dir/`[`GUESTFS_ENV_FILE`].
///
/// libguestfs is told to use TCG only (`force_tcg`): the embedded device never uses KVM, and
/// where `/dev/kvm` exists without working nested virtualisation QEMU aborts on it ("failed to
/// set MSR"). The appliance cache lives in `dir/guestfs/cache`, so it is rebuilt with the kernel.
pub fn guestfs_env(dir: &Path, ts: &TestSystem, force: bool) -> Result<GuestfsEnv> {
    let root = dir.join("guestfs");
    let tree = root.join("kernel");
    let cache = root.join("cache");
    let stamp_path = root.join("stamp");
    let release = &ts.kernel_release;
    let stamp = format!(
        "format {FORMAT_VERSION}\nkernel {}\nmodules {}\n",
        file_name(&ts.kernel_deb),
        GUESTFS_MODULE_DIRS.join(",")
    );
    let fresh = !force && std::fs::read_to_string(&stamp_path).is_ok_and(|old| old == stamp);
    if !fresh {
        let started = Instant::now();
        if root.exists() {
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("removing {}", root.display()))?;
        }
        std::fs::create_dir_all(&tree)?;
        std::fs::create_dir_all(&cache)?;
        let modroot = format!("./lib/modules/{release}");
        let mut members = vec![
            format!("./boot/vmlinuz-{release}"),
            format!("{modroot}/modules.order"),
            format!("{modroot}/modules.builtin"),
            format!("{modroot}/modules.builtin.modinfo"),
        ];
        members.extend(GUESTFS_MODULE_DIRS.iter().map(|d| format!("{modroot}/{d}")));
        eprintln!(
            "test-system: unpacking {} for libguestfs",
            file_name(&ts.kernel_deb)
        );
        extract(&ts.kernel_deb, &tree, &members)?;
        let depmod = ["/sbin/depmod", "/usr/sbin/depmod"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .or_else(|| on_path("depmod"))
            .context("depmod (kmod) is needed to prepare libguestfs' kernel")?;
        run_captured(Command::new(depmod).arg("-b").arg(&tree).arg(release))?;
        std::fs::write(&stamp_path, &stamp)?;
        eprintln!(
            "test-system: libguestfs kernel ready in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    let tree = std::fs::canonicalize(&tree)?;
    let cache = std::fs::canonicalize(&cache)?;
    let vars: Vec<(String, String)> = [
        ("LIBGUESTFS_BACKEND", "direct".to_string()),
        ("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg".to_string()),
        ("LIBGUESTFS_CACHEDIR", cache.display().to_string()),
        (
            "SUPERMIN_KERNEL",
            tree.join(format!("boot/vmlinuz-{release}"))
                .display()
                .to_string(),
        ),
        ("SUPERMIN_KERNEL_VERSION", release.clone()),
        (
            "SUPERMIN_MODULES",
            tree.join(format!("lib/modules/{release}"))
                .display()
                .to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut text = String::from(
        "# libguestfs' environment for LAVA's lava-run on this machine \
         (written by `cargo xtask test-system`).\n",
    );
    for (name, value) in &vars {
        text.push_str(&format!("{name}={value}\n"));
    }
    std::fs::write(dir.join(GUESTFS_ENV_FILE), text)?;
    Ok(GuestfsEnv { vars, cache })
}

/// The first `name` file in the directories of `PATH`.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub(crate) fn file_name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// FNV-1a, 64 bits: enough to notice that a generated file changed.
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(crate) fn run_captured(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A `.deb` in the cache is trusted once its size matched apt's answer: `<file>.ok` says so.
fn verified(deb: &Path) -> bool {
    let mut ok = deb.as_os_str().to_owned();
    ok.push(".ok");
    deb.is_file() && Path::new(&ok).is_file()
}

/// Make sure the candidate `.deb` of each package is in `debs`; return their paths, in order.
/// One `apt-get download --print-uris` gives the file names and sizes of what is missing (apt
/// prints nothing for a file already present with the right hash); files are downloaded only
/// when absent or unverified, and replace older versions. When apt cannot answer (no lists,
/// offline), falls back to the single verified cached file of each package.
pub(crate) fn fetch_debs(debs: &Path, packages: &[&str]) -> Result<Vec<PathBuf>> {
    let uris = Command::new("apt-get")
        .args(["download", "--print-uris"])
        .args(packages)
        .current_dir(debs)
        .output();
    let apt_ok = matches!(&uris, Ok(out) if out.status.success());
    let lines: Vec<String> = match &uris {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('\''))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let mut found = Vec::new();
    for package in packages {
        // `name:arch` (a foreign architecture) names files `name_<version>_<arch>.deb`.
        let (name, arch) = package.split_once(':').unwrap_or((package, ""));
        let prefix = format!("{name}_");
        let suffix = if arch.is_empty() {
            ".deb".to_string()
        } else {
            format!("_{arch}.deb")
        };
        // 'URI' FILENAME SIZE HASH
        let entry = lines.iter().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[1].starts_with(&prefix) && f[1].ends_with(&suffix))
                .then(|| (f[1].to_string(), f[2]))
        });
        let Some((file, size)) = entry else {
            let cached: Vec<PathBuf> = std::fs::read_dir(debs)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = file_name(p);
                    n.starts_with(&prefix) && n.ends_with(&suffix) && verified(p)
                })
                .collect();
            if let [one] = cached.as_slice() {
                if !apt_ok {
                    eprintln!(
                        "test-system: apt cannot resolve {package}; using {}",
                        one.display()
                    );
                }
                found.push(one.clone());
                continue;
            }
            let why = match &uris {
                Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            };
            bail!(
                "cannot resolve Debian package {package} with apt-get ({why}); \
                 run `apt-get update` (the packages come from Debian bookworm)"
            );
        };
        let path = debs.join(&file);
        let size: u64 = size.parse().context("size in apt-get --print-uris")?;
        let size_ok = std::fs::metadata(&path).map(|m| m.len()).ok() == Some(size);
        if !(size_ok && verified(&path)) {
            let _ = std::fs::remove_file(&path);
            eprintln!("test-system: apt-get download {package}");
            run_captured(
                Command::new("apt-get")
                    .args(["download", package])
                    .current_dir(debs),
            )?;
            let got = std::fs::metadata(&path).map(|m| m.len()).ok();
            ensure!(
                got == Some(size),
                "apt-get download {package}: expected {} of {size} bytes, found {got:?}",
                path.display()
            );
            std::fs::write(debs.join(format!("{file}.ok")), format!("{size}\n"))?;
            for old in std::fs::read_dir(debs)?.filter_map(|e| e.ok().map(|e| e.path())) {
                let n = file_name(&old);
                if n.starts_with(&prefix) && n.ends_with(&suffix) && !n.starts_with(&file) {
                    let _ = std::fs::remove_file(&old);
                }
            }
        }
        found.push(path);
    }
    Ok(found)
}

/// `linux-image-amd64` depends on exactly one versioned kernel image package:
/// `(package, version)`.
pub(crate) fn kernel_package_of(meta: &Path) -> Result<(String, String)> {
    let depends = run_captured(Command::new("dpkg-deb").arg("-f").arg(meta).arg("Depends"))?;
    depends
        .split([',', '|'])
        .map(str::trim)
        .find(|d| d.starts_with("linux-image-"))
        .map(|d| {
            let name = d.split_whitespace().next().unwrap_or(d).to_string();
            let version = d
                .split_once("(=")
                .map(|(_, v)| v.trim_end_matches(')').trim().to_string())
                .unwrap_or_default();
            (name, version)
        })
        .with_context(|| {
            format!(
                "no linux-image-* in Depends of {}: {depends}",
                meta.display()
            )
        })
}

/// `dpkg-deb --fsys-tarfile deb | tar -x -C dir members...`
pub(crate) fn extract(deb: &Path, dir: &Path, members: &[String]) -> Result<()> {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("running dpkg-deb")?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dir)
        .args(members)
        .stdin(dpkg.stdout.take().expect("piped"))
        .output()
        .context("running tar")?;
    let dpkg_status = dpkg.wait()?;
    ensure!(
        tar.status.success() && dpkg_status.success(),
        "extracting {members:?} from {}: {}",
        deb.display(),
        String::from_utf8_lossy(&tar.stderr).trim()
    );
    Ok(())
}

/// One file's content from a package.
pub(crate) fn extract_file(deb: &Path, member: &str) -> Result<Vec<u8>> {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("running dpkg-deb")?;
    let tar = Command::new("tar")
        .args(["-x", "-O", member])
        .stdin(dpkg.stdout.take().expect("piped"))
        .output()
        .context("running tar")?;
    dpkg.wait()?;
    ensure!(
        tar.status.success() && !tar.stdout.is_empty(),
        "extracting {member} from {}: {}",
        deb.display(),
        String::from_utf8_lossy(&tar.stderr).trim()
    );
    Ok(tar.stdout)
}

pub(crate) fn gzip_to(data: &[u8], out: &Path) -> Result<()> {
    let file = std::fs::File::create(out)?;
    let mut gz = Command::new("gzip")
        .args(["-n", "-9", "-c"])
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .context("running gzip")?;
    gz.stdin.take().expect("piped").write_all(data)?;
    ensure!(gz.wait()?.success(), "gzip failed");
    Ok(())
}

/// Write the ELF kernel inside an x86 bzImage to `out`: the setup header gives the offset and
/// length of the compressed payload (`payload_offset`/`payload_length`, boot protocol >= 2.08);
/// the host's xz, zstd or gzip decompresses it.
fn decompress_bzimage(bzimage: &Path, out: &Path) -> Result<()> {
    let data = std::fs::read(bzimage)?;
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    ensure!(
        data.get(0x202..0x206) == Some(b"HdrS"),
        "{}: not a bzImage",
        bzimage.display()
    );
    let setup_sects = match data.get(0x1f1) {
        Some(0) | None => 4,
        Some(n) => usize::from(*n),
    };
    let offset = (setup_sects + 1) * 512 + u32_at(0x248).context("payload_offset")? as usize;
    let length = u32_at(0x24c).context("payload_length")? as usize;
    let payload = data
        .get(offset..offset + length)
        .context("payload outside the bzImage")?;
    let tool: &[&str] = if payload.starts_with(b"\xfd7zXZ\0") {
        &["xz", "-dc", "--single-stream"]
    } else if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        &["zstd", "-dc"]
    } else if payload.starts_with(&[0x1f, 0x8b]) {
        &["gzip", "-dc"]
    } else {
        bail!("{}: unsupported kernel compression", bzimage.display());
    };
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(out)?)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", tool[0]))?;
    let mut stdin = child.stdin.take().expect("piped");
    let payload = payload.to_vec();
    // xz may stop reading at the end of its stream (the bzImage pads the payload): a failed
    // write after that is not an error, the exit status and the ELF check below decide.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&payload);
    });
    let output = child.wait_with_output()?;
    let _ = writer.join();
    ensure!(
        output.status.success(),
        "{} failed: {}",
        tool[0],
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let mut magic = [0u8; 4];
    std::fs::File::open(out)?.read_exact(&mut magic)?;
    ensure!(
        &magic == b"\x7fELF",
        "{}: payload is not an ELF kernel",
        bzimage.display()
    );
    Ok(())
}

/// A module to put in the initramfs: path relative to `/lib/modules/<release>`, and the paths
/// of its direct dependencies.
#[derive(Debug)]
pub(crate) struct Module {
    pub(crate) name: String,
    pub(crate) rel: String,
    pub(crate) deps: Vec<String>,
}

fn mod_name(s: &str) -> String {
    s.replace('-', "_")
}

/// A Debian kernel package unpacked into `kdir` (emptied first): `boot/<name>-<release>`
/// for each of `boot_files`, the `module_dirs` (under `lib/modules/<release>/`) and the
/// modules `roots` need ([`resolve_modules`]). Returns the modules' directory and the modules.
pub(crate) fn unpack_kernel(
    deb: &Path,
    kdir: &Path,
    release: &str,
    boot_files: &[&str],
    module_dirs: &[&str],
    roots: &[&str],
) -> Result<(PathBuf, Vec<Module>)> {
    if kdir.exists() {
        std::fs::remove_dir_all(kdir)?;
    }
    std::fs::create_dir_all(kdir)?;
    let modroot = format!("./lib/modules/{release}");
    let mut members: Vec<String> = boot_files
        .iter()
        .map(|name| format!("./boot/{name}-{release}"))
        .collect();
    members.push(format!("{modroot}/modules.order"));
    members.push(format!("{modroot}/modules.builtin"));
    members.extend(module_dirs.iter().map(|d| format!("{modroot}/{d}")));
    extract(deb, kdir, &members)?;
    let moddir = kdir.join(&modroot);
    let modules = resolve_modules(deb, kdir, &moddir, &modroot, roots)?;
    Ok((moddir, modules))
}

/// The closure of `roots` under `depends=`, dependencies first. Modules built into the
/// kernel are skipped; files outside the first extraction are extracted on demand.
pub(crate) fn resolve_modules(
    deb: &Path,
    kdir: &Path,
    moddir: &Path,
    modroot: &str,
    roots: &[&str],
) -> Result<Vec<Module>> {
    let order = std::fs::read_to_string(moddir.join("modules.order"))?;
    let builtin = std::fs::read_to_string(moddir.join("modules.builtin")).unwrap_or_default();
    let stem = |rel: &str| -> String {
        let f = rel.rsplit('/').next().unwrap_or(rel);
        mod_name(f.split(".ko").next().unwrap_or(f))
    };
    let paths: BTreeMap<String, String> = order
        .lines()
        .map(|l| (stem(l), l.trim().to_string()))
        .collect();
    let builtin: BTreeSet<String> = builtin.lines().map(stem).collect();

    let mut done: Vec<Module> = Vec::new();
    let mut seen = BTreeSet::new();
    // Iterative post-order DFS; a node is (name, deps expanded?).
    let mut stack: Vec<(String, bool)> = roots.iter().rev().map(|m| (mod_name(m), false)).collect();
    while let Some((name, expanded)) = stack.pop() {
        if expanded {
            if seen.insert(name.clone()) {
                let rel = paths[&name].clone();
                let deps = module_depends(&moddir.join(&rel))?
                    .iter()
                    .filter(|d| !builtin.contains(*d))
                    .map(|d| paths[d].clone())
                    .collect();
                done.push(Module { name, rel, deps });
            }
            continue;
        }
        if seen.contains(&name) {
            continue;
        }
        let Some(rel) = paths.get(&name) else {
            if builtin.contains(&name) {
                continue;
            }
            bail!("kernel module {name} is neither in modules.order nor built in");
        };
        let file = moddir.join(rel);
        if !file.is_file() {
            extract(deb, kdir, &[format!("{modroot}/{rel}")])?;
        }
        ensure!(
            !rel.ends_with(".xz") && !rel.ends_with(".zst") && !rel.ends_with(".gz"),
            "compressed kernel modules ({rel}) are not supported by this builder yet"
        );
        stack.push((name.clone(), true));
        for dep in module_depends(&file)?.into_iter().rev() {
            if !seen.contains(&dep) {
                ensure!(
                    paths.contains_key(&dep) || builtin.contains(&dep),
                    "{name} depends on unknown module {dep}"
                );
                stack.push((dep, false));
            }
        }
    }
    Ok(done)
}

/// `depends=` of a kernel module: read from its ELF `.modinfo` section.
fn module_depends(ko: &Path) -> Result<Vec<String>> {
    let data = std::fs::read(ko).with_context(|| format!("reading {}", ko.display()))?;
    let modinfo =
        elf_section(&data, ".modinfo").with_context(|| format!("{}: no .modinfo", ko.display()))?;
    Ok(modinfo
        .split(|b| *b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(mod_name)
                .collect::<Vec<_>>()
        })
        .collect())
}

/// The bytes of section `name` of a little-endian ELF64 file.
fn elf_section<'a>(data: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?));
    if data.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    let shstrndx = usize::from(u16_at(0x3e)?);
    let section = |i: usize| -> Option<(u32, usize, usize)> {
        let h = shoff + i * shentsize;
        Some((
            u32_at(h)?,
            usize::try_from(u64_at(h + 0x18)?).ok()?,
            usize::try_from(u64_at(h + 0x20)?).ok()?,
        ))
    };
    let (_, stroff, strsize) = section(shstrndx)?;
    let strtab = data.get(stroff..stroff + strsize)?;
    (0..shnum).find_map(|i| {
        let (n, off, size) = section(i)?;
        let rest = strtab.get(n as usize..)?;
        let end = rest.iter().position(|b| *b == 0)?;
        (&rest[..end] == name.as_bytes()).then(|| data.get(off..off + size))?
    })
}

// ---------------------------------------------------------------------------------------------
// The initramfs, written with lava-artefacts' cpio newc writer: root-owned members with
// zero times (a reproducible archive) and inode numbers counted from 1.

pub(crate) struct Initramfs {
    writer: NewcWriter<Vec<u8>>,
    ino: u32,
}

impl Default for Initramfs {
    fn default() -> Self {
        Initramfs {
            writer: NewcWriter::new(Vec::new()),
            ino: 0,
        }
    }
}

impl Initramfs {
    pub(crate) fn entry(
        &mut self,
        name: &str,
        mode: u32,
        data: &[u8],
        rdev: (u32, u32),
    ) -> Result<()> {
        self.ino += 1;
        let mut entry = CpioEntry::new(name.to_string(), mode, data.to_vec());
        entry.ino = self.ino;
        (entry.rdevmajor, entry.rdevminor) = rdev;
        self.writer
            .write_entry(&entry)
            .with_context(|| format!("initramfs member {name}"))
    }
    pub(crate) fn dir(&mut self, name: &str, perm: u32) -> Result<()> {
        self.entry(name, S_IFDIR | perm, &[], (0, 0))
    }
    pub(crate) fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<()> {
        self.entry(name, S_IFREG | perm, data, (0, 0))
    }
    pub(crate) fn symlink(&mut self, name: &str, target: &str) -> Result<()> {
        self.entry(name, S_IFLNK | 0o777, target.as_bytes(), (0, 0))
    }
    pub(crate) fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        self.entry(name, S_IFCHR | perm, &[], (major, minor))
    }
    pub(crate) fn finish(mut self) -> Result<Vec<u8>> {
        self.writer.write_trailer()?;
        Ok(self.writer.into_inner()?)
    }
}

// ---------------------------------------------------------------------------------------------
// The guest's own files.

/// `(path in the archive, mode, content)` of the files we write.
fn static_files(release: &str) -> Vec<(&'static str, u32, String)> {
    let init = format!(
        r#"#!/bin/sh
# /init of the lava-rs embedded test system (written by `cargo xtask test-system`).
# POSIX sh, run by busybox ash as PID 1; hands over to busybox init at the end.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null ||
    /bin/busybox mount -t tmpfs -o mode=0755 devtmpfs /dev
/bin/busybox mkdir -p /dev/pts /dev/shm
/bin/busybox mount -t devpts devpts /dev/pts
/bin/busybox mount -t tmpfs -o mode=1777 tmpfs /tmp
/bin/busybox mount -t tmpfs -o mode=0755 tmpfs /run
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
[ -e /dev/null ] || mknod /dev/null c 1 3
hostname {HOSTNAME}
ifconfig lo 127.0.0.1 netmask 255.0.0.0 up
# Kernel modules for the disks LAVA attaches (see /etc/lava-rs/modules), dependencies first.
while read -r module; do
    insmod "$module" 2>/dev/null || echo "lava-rs: could not load $module"
done < /etc/lava-rs/modules
# No udev here: /dev/disk/by-uuid links (LAVA mounts its overlay disk by UUID) for the disks
# present now, and for later ones through the mdev netlink daemon (/etc/mdev.conf).
/lib/lava-rs/disk-links
echo
echo "{BANNER} ($(uname -sr), $(busybox | head -n 1 | cut -d ' ' -f 1-2))"
echo
# A root filesystem on a disk (lava_rs_root=/dev/sdX on the kernel command line, as a LAVA
# job booting a rootfs image asks): mounted, given busybox's links, and switched to; its own
# busybox init then runs.
root=
for arg in $(cat /proc/cmdline); do
    case "$arg" in lava_rs_root=*) root="${{arg#lava_rs_root=}}" ;; esac
done
if [ -n "$root" ]; then
    tries=0
    while [ ! -b "$root" ] && [ "$tries" -lt 20 ]; do sleep 1; tries=$((tries + 1)); done
    mkdir -p /newroot
    if mount -t ext4 "$root" /newroot; then
        echo "lava-rs: switching to the root filesystem on $root"
        chroot /newroot /bin/busybox --install -s
        for fs in /proc /sys /dev /tmp /run; do
            mkdir -p "/newroot$fs"
            mount --move "$fs" "/newroot$fs"
        done
        exec switch_root /newroot /sbin/init
    fi
    echo "lava-rs: could not mount $root, staying in the initramfs"
fi
mdev -d
exec /sbin/init
"#
    );
    let disk_links = r#"#!/bin/sh
# Create /dev/disk/by-uuid/<uuid> links for ext2/3/4 block devices (what udev would do).
mkdir -p /dev/disk/by-uuid
for sys in /sys/class/block/*; do
    name=${sys##*/}
    dev=/dev/$name
    [ -b "$dev" ] || continue
    magic=$(dd if="$dev" bs=1 skip=1080 count=2 2>/dev/null | hexdump -v -e '2/1 "%02x"')
    [ "$magic" = "53ef" ] || continue
    hex=$(dd if="$dev" bs=1 skip=1128 count=16 2>/dev/null | hexdump -v -e '16/1 "%02x"')
    uuid=$(echo "$hex" | sed 's/^\(........\)\(....\)\(....\)\(....\)/\1-\2-\3-\4-/')
    ln -sfn "../../$name" "/dev/disk/by-uuid/$uuid"
done
"#
    .to_string();
    let inittab = "\
# busybox init: one interactive shell on the console's real tty (cttyhack finds ttyS0), respawned.
::respawn:/bin/cttyhack /bin/sh -l
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
"
    .to_string();
    let profile = format!(
        r#"# /etc/profile of the lava-rs test system.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export HOME=/root
export PS1='{PROMPT}'
# A serial line reports no size: ask for wide lines so that busybox's line editor does not
# redraw long commands typed by the dispatcher.
stty cols 1024 rows 40 2>/dev/null
cd /
"#
    );
    let mdev = "\
# Hotplug: new disks get /dev/disk/by-uuid links.
[hsv]d[a-z][0-9]* 0:0 660 */lib/lava-rs/disk-links
"
    .to_string();
    vec![
        ("init", 0o755, init),
        ("lib/lava-rs/disk-links", 0o755, disk_links),
        ("etc/inittab", 0o644, inittab),
        ("etc/profile", 0o644, profile),
        ("etc/mdev.conf", 0o644, mdev),
        ("etc/hostname", 0o644, format!("{HOSTNAME}\n")),
        (
            "etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\n".to_string(),
        ),
        ("etc/group", 0o644, "root:x:0:\n".to_string()),
        ("etc/lava-rs/release", 0o644, format!("{release}\n")),
    ]
}

// ---------------------------------------------------------------------------------------------
// Booting

/// Wall times of a bare boot, all from the QEMU spawn.
#[derive(Debug, Clone, Copy)]
pub struct BootReport {
    pub prompt: Duration,
    pub echo: Duration,
    pub total: Duration,
}

/// The QEMU command line of the embedded device for these artefacts: `command`, `options` and
/// `extra` of `actions.boot.methods.qemu.parameters` in `fixtures/qemu/device.yaml`, then the
/// `image_arg` of each image of the job's deploy, as LAVA's `execute-qemu` assembles them.
pub fn qemu_command_line(ts: &TestSystem) -> Result<Vec<String>> {
    let device: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(device_yaml())?)?;
    let params = &device["actions"]["boot"]["methods"]["qemu"]["parameters"];
    let mut line = String::new();
    line.push_str(
        params["command"]
            .as_str()
            .context("device: qemu parameters.command")?
            .trim(),
    );
    for key in ["options", "extra"] {
        if let Some(items) = params[key].as_sequence() {
            for item in items {
                line.push(' ');
                line.push_str(item.as_str().context("device: qemu option")?);
            }
        }
    }
    let job: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&ts.job)?)?;
    let images = job["actions"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find_map(|a| a["deploy"]["images"].as_mapping())
        .context("job: no deploy images")?;
    for (key, image) in images {
        let key = key.as_str().context("image key")?;
        let path = match key {
            "kernel" => &ts.kernel,
            "ramdisk" => &ts.initramfs,
            other => bail!("job: unexpected image {other}"),
        };
        if let Some(arg) = image["image_arg"].as_str() {
            line.push(' ');
            line.push_str(&arg.replace(&format!("{{{key}}}"), &path.display().to_string()));
        }
    }
    Ok(lava_python::shlex_split(&line)?)
}

/// Whether `qemu-system-x86_64` is on `PATH`.
pub fn qemu_available() -> bool {
    on_path("qemu-system-x86_64").is_some()
}

/// Kills and reaps QEMU however the boot check ends.
struct Guest {
    child: Child,
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The console output seen so far, fed by a reader thread.
struct Console {
    rx: mpsc::Receiver<Vec<u8>>,
    seen: String,
    echo: bool,
}

impl Console {
    /// Wait until `pattern` appears after byte offset `from`; return the offset after it.
    fn wait_for(&mut self, pattern: &str, from: usize, deadline: Instant) -> Result<usize> {
        loop {
            if let Some(i) = self.seen.get(from..).and_then(|s| s.find(pattern)) {
                return Ok(from + i + pattern.len());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            ensure!(!left.is_zero(), "timed out waiting for {pattern:?}");
            match self.rx.recv_timeout(left) {
                Ok(chunk) => {
                    if self.echo {
                        let _ = std::io::stderr().write_all(&chunk);
                    }
                    self.seen.push_str(&String::from_utf8_lossy(&chunk));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("QEMU closed its console while waiting for {pattern:?}")
                }
            }
        }
    }
    fn tail(&self) -> &str {
        let mut start = self.seen.len().saturating_sub(2000);
        while !self.seen.is_char_boundary(start) {
            start += 1;
        }
        &self.seen[start..]
    }
}

/// Boot the guest with bare QEMU, wait for the prompt, run `echo ok`, power off.
/// Every wait is bounded by `timeout`; QEMU is killed and reaped whatever happens.
pub fn boot_check(ts: &TestSystem, timeout: Duration, echo_console: bool) -> Result<BootReport> {
    let argv = qemu_command_line(ts)?;
    eprintln!("test-system: {}", argv.join(" "));
    let started = Instant::now();
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", argv[0]))?;
    let mut guest = Guest { child };
    let (tx, rx) = mpsc::channel();
    for mut stream in [
        Box::new(guest.child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(guest.child.stderr.take().expect("piped")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut console = Console {
        rx,
        seen: String::new(),
        echo: echo_console,
    };
    let mut stdin = guest.child.stdin.take().expect("piped");
    let result = (|| -> Result<BootReport> {
        let at = console.wait_for(BANNER, 0, started + timeout)?;
        let at = console.wait_for(PROMPT, at, started + timeout)?;
        let prompt = started.elapsed();
        stdin.write_all(b"echo o''k\n")?;
        stdin.flush()?;
        // The quotes keep the typed (echoed) command from matching: only the output does.
        let deadline = Instant::now() + timeout;
        let at = console.wait_for("\nok", at, deadline)?;
        console.wait_for(PROMPT, at, deadline)?;
        let echo = started.elapsed();
        stdin.write_all(b"poweroff\n")?;
        stdin.flush()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = guest.child.try_wait()? {
                ensure!(status.success(), "QEMU exited with {status}");
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "timed out waiting for QEMU to power off"
            );
            // Keep draining the console so QEMU never blocks on a full pipe.
            while let Ok(chunk) = console.rx.try_recv() {
                if console.echo {
                    let _ = std::io::stderr().write_all(&chunk);
                }
                console.seen.push_str(&String::from_utf8_lossy(&chunk));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(BootReport {
            prompt,
            echo,
            total: started.elapsed(),
        })
    })();
    drop(stdin);
    drop(guest);
    if echo_console {
        eprintln!();
    }
    result.with_context(|| format!("boot check failed; console tail:\n{}", console.tail()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initramfs_lists_with_cpio() {
        let mut c = Initramfs::default();
        c.dir("etc", 0o755).unwrap();
        c.file("etc/hello", 0o644, b"hello world\n").unwrap();
        c.symlink("etc/link", "hello").unwrap();
        c.char_dev("console", 0o600, 5, 1).unwrap();
        let data = c.finish().unwrap();
        assert!(data.len().is_multiple_of(512));
        let members = lava_artefacts::newc::read_newc(&data).unwrap();
        let inos: Vec<u32> = members.iter().map(|m| m.ino).collect();
        assert_eq!(inos, [1, 2, 3, 4]);
        assert_eq!(members[1].data, b"hello world\n");
        assert_eq!((members[3].rdevmajor, members[3].rdevminor), (5, 1));
        let Ok(mut cpio) = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            lava_test_support::ci::skip_or_fail("the cpio cross-check needs cpio on PATH");
            return;
        };
        cpio.stdin.take().unwrap().write_all(&data).unwrap();
        let out = cpio.wait_with_output().unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8(out.stdout).unwrap();
        assert!(listing.contains("etc/hello"), "{listing}");
        assert!(listing.contains("etc/link -> hello"), "{listing}");
        assert!(
            listing.contains("5,") && listing.contains("console"),
            "{listing}"
        );
        assert!(!listing.contains("TRAILER"), "{listing}");
    }

    #[test]
    fn elf_section_of_a_real_binary() {
        // Any ELF64 executable carries a .text section; the test binary itself will do.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(elf_section(&me, ".text").is_some_and(|s| !s.is_empty()));
        assert!(elf_section(&me, ".no-such-section").is_none());
        assert!(elf_section(b"not an elf", ".text").is_none());
    }

    #[test]
    fn the_device_and_job_fixtures_agree_with_the_guest() {
        let device = std::fs::read_to_string(device_yaml()).unwrap();
        let job = std::fs::read_to_string(job_template()).unwrap();
        assert!(job.contains(DIR_PLACEHOLDER));
        let job: serde_yaml::Value = serde_yaml::from_str(&job).unwrap();
        let prompts = job["actions"]
            .as_sequence()
            .unwrap()
            .iter()
            .find_map(|a| a["boot"]["prompts"].as_sequence())
            .unwrap();
        assert!(
            prompts.iter().any(|p| p.as_str() == Some(PROMPT)),
            "{prompts:?}"
        );
        let device: serde_yaml::Value = serde_yaml::from_str(&device).unwrap();
        let params = &device["actions"]["boot"]["methods"]["qemu"]["parameters"];
        let options: Vec<&str> = ["options", "extra"]
            .iter()
            .filter_map(|k| params[*k].as_sequence())
            .flatten()
            .map(|o| o.as_str().unwrap())
            .collect();
        for wanted in ["-nographic", "-accel tcg", "-m 256"] {
            assert!(
                options.contains(&wanted),
                "{wanted} missing from {options:?}"
            );
        }
    }

    /// Builds the test system (downloads ~72 MB of Debian packages the first time) and boots it
    /// to the prompt under QEMU. Skips when QEMU is absent, unless `CI=true`.
    #[test]
    fn builds_and_boots_to_the_prompt() {
        if !qemu_available() {
            lava_test_support::ci::skip_or_fail("qemu-system-x86_64 is not on PATH");
            return;
        }
        let ts = build(&cache_dir(), false).expect("build the test system");
        assert!(ts.kernel.is_file() && ts.initramfs.is_file() && ts.job.is_file());
        let job = std::fs::read_to_string(&ts.job).unwrap();
        assert!(!job.contains(DIR_PLACEHOLDER));
        let report = boot_check(&ts, Duration::from_secs(300), false).expect("boot to the prompt");
        eprintln!("bare boot: {report:?}");
        assert!(report.prompt <= report.echo && report.echo <= report.total);
    }
}
