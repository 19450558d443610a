//! Run-time: a `to: tftp` deployment on the worker, as LAVA's `TftpAction` and
//! `PrepareOverlayTftp` leave it for the bootloader.
//!
//! The files go to a per-job directory under the TFTP server's root
//! (`<root>/<prefix><job id>/tftp-deploy-<level>`, see [`TftpLayout`]); the bootloader
//! names them relative to the root (`download-action/file/<key>`, `compress-ramdisk/file/
//! ramdisk`: `<prefix><job id>/tftp-deploy-<level>/<key>/<file>`), as LAVA records them.
//! Directories are made 0755 and files 0644 once the deployment is done, since tftpd-hpa
//! serves as its own user; the per-job directory is removed by the job's cleanup after
//! finalize (`RunContext::add_override_dir`).
//!
//! Preparation, one function per action: [`extract_nfsrootfs`] (GNU `tar` unpacks the
//! root filesystem, device nodes and owners included), [`extract_modules`],
//! [`apply_overlay`] (into the NFS root by preference, else the persistent NFS export,
//! else the ramdisk), [`prepare_kernel`] (`mkimage` wraps a kernel for `bootm`, or the DTB
//! is appended) and [`compress_ramdisk`]. A ramdisk is never unpacked to a directory:
//! `extract-overlay-ramdisk` strips a U-Boot header if the job says there is one and
//! records the input, `extract-modules` and `apply-overlay-tftp` record what to merge, and
//! `compress-ramdisk` streams the ramdisk once per addition through lava-artefacts'
//! repack (compressed as the job's ramdisk `compression` says) before `mkimage` adds the U-Boot
//! header the device asks for.

use crate::common::power::require_tool;
use lava_pipeline::command::run_command;
use lava_pipeline::value::{scalar_string, truthy};
use lava_pipeline::{ErrorKind, LavaError, LavaResult, RunContext};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// LAVA's `TFTP_SIZE_LIMIT`: the largest file a TFTP server can send (4 GiB).
pub const TFTP_SIZE_LIMIT: u64 = 4 * 1024 * 1024 * 1024;
/// LAVA's `UBOOT_DEFAULT_HEADER_LENGTH`: a legacy U-Boot image header.
pub const UBOOT_HEADER_LENGTH: u64 = 64;

/// Where a TFTP deployment's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpLayout {
    /// The directory the TFTP server serves.
    pub root: PathBuf,
    /// The job's directory under it (`<prefix><job id>`), removed at the end of the job.
    pub job_dir: PathBuf,
    /// This deployment's directory (`<job dir>/tftp-deploy-<level>`).
    pub deploy_dir: PathBuf,
}

impl TftpLayout {
    /// The layout of deployment `name` at `level` of job `job_id` under `root`.
    pub fn new(root: &Path, prefix: &str, job_id: &str, name: &str, level: &str) -> Self {
        let job_dir = root.join(format!("{prefix}{job_id}"));
        let deploy_dir = job_dir.join(format!("{name}-{}", level.replace('.', "-")));
        TftpLayout {
            root: root.to_path_buf(),
            job_dir,
            deploy_dir,
        }
    }

    /// LAVA's `suffix`: the deployment directory relative to the root.
    pub fn suffix(&self) -> String {
        self.deploy_dir
            .strip_prefix(&self.root)
            .unwrap_or(&self.deploy_dir)
            .display()
            .to_string()
    }
}

/// A string of the namespace data, empty strings as absent.
fn data_path(ctx: &RunContext, action: &str, label: &str, key: &str) -> Option<PathBuf> {
    ctx.get_data(action, label, key)
        .and_then(scalar_string)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> LavaError {
    LavaError::infrastructure(format!("{what} {}: {e}", path.display()))
}

fn create_dir_0755(dir: &Path) -> LavaResult<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| io_error("Unable to create", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io_error("Unable to set permissions of", dir, e))
}

/// `tftp-deploy` before its downloads: create the directories (the job's directory is
/// removed by the job's cleanup, after finalize) and record
/// `tftp-deploy/tftp/{tftp_dir,suffix,ramdisk}`.
pub fn start_deploy(ctx: &mut RunContext, layout: &TftpLayout) -> LavaResult<()> {
    create_dir_0755(&layout.job_dir)?;
    ctx.add_override_dir(&layout.job_dir);
    create_dir_0755(&layout.deploy_dir)?;
    ctx.set_data(
        "tftp-deploy",
        "tftp",
        "tftp_dir",
        layout.deploy_dir.display().to_string(),
    );
    ctx.set_data("tftp-deploy", "tftp", "suffix", layout.suffix());
    if ctx.meta().parameters.contains_key("ramdisk") {
        ctx.set_data("tftp-deploy", "tftp", "ramdisk", true);
    }
    Ok(())
}

/// Makes everything under `dir` readable by the TFTP server: directories 0755, files
/// 0644 (downloads are created private to the dispatcher).
pub fn make_servable(dir: &Path) -> LavaResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| io_error("Unable to read", dir, e))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = if meta.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_error("Unable to set permissions of", dir, e))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).map_err(|e| io_error("Unable to read", dir, e))? {
            let entry = entry.map_err(|e| io_error("Unable to read", dir, e))?;
            make_servable(&entry.path())?;
        }
    }
    Ok(())
}

/// `tftp-deploy` after its children: files made servable, then LAVA's size check of the
/// ramdisk, kernel, DTB and TEE against `tftp_size_limit` (dispatcher configuration, else
/// [`TFTP_SIZE_LIMIT`]).
pub fn finish_deploy(ctx: &mut RunContext, layout: &TftpLayout) -> LavaResult<()> {
    // The extracted NFS root keeps the modes its tarball gave: only the downloads and
    // generated files (not the unpacked trees) are made servable.
    for entry in std::fs::read_dir(&layout.deploy_dir)
        .map_err(|e| io_error("Unable to read", &layout.deploy_dir, e))?
    {
        let entry = entry.map_err(|e| io_error("Unable to read", &layout.deploy_dir, e))?;
        make_servable(&entry.path())?;
    }
    let limit = ctx
        .job
        .parameters
        .get("dispatcher")
        .and_then(|d| d.get("tftp_size_limit"))
        .and_then(Value::as_u64)
        .unwrap_or(TFTP_SIZE_LIMIT);
    ctx.logger
        .debug(format!("Checking files for TFTP limit of {limit} bytes."));
    for (action, key) in [
        ("compress-ramdisk", "ramdisk"),
        ("download-action", "kernel"),
        ("download-action", "dtb"),
        ("download-action", "tee"),
    ] {
        if !ctx.meta().parameters.contains_key(key) {
            continue;
        }
        let Some(name) = data_path(ctx, action, "file", key) else {
            continue;
        };
        let file = layout.root.join(&name);
        let size = std::fs::metadata(&file)
            .map_err(|e| io_error("Unable to read", &file, e))?
            .len();
        if size >= limit {
            return Err(LavaError::job(format!(
                "Unable to send '{}' over tftp: file too large ({size} > {limit})",
                file.file_name().unwrap_or_default().to_string_lossy()
            )));
        }
    }
    Ok(())
}

/// `params[key].get(flag, True)` of an image entry.
fn image_flag(params: &Mapping, key: &str, flag: &str) -> bool {
    params
        .get(key)
        .and_then(|v| v.get(flag))
        .map(|v| truthy(Some(v)))
        .unwrap_or(true)
}

/// Unpacks the tarball `archive` (any compression GNU tar recognises) into `dir` with
/// owners and modes as archived.
async fn untar(ctx: &mut RunContext, archive: &Path, dir: &Path) -> LavaResult<()> {
    let tar = require_tool("tar")?;
    let argv = vec![
        tar.display().to_string(),
        "--numeric-owner".into(),
        "-C".into(),
        dir.display().to_string(),
        "-xf".into(),
        archive.display().to_string(),
    ];
    run_command(
        &ctx.logger,
        &argv,
        None,
        ctx.deadline(),
        ErrorKind::Job,
        false,
    )
    .await?;
    Ok(())
}

/// `extract-nfsrootfs`: unpack the downloaded `nfsrootfs` into
/// `<job tmp>/extract-nfsrootfs-<level>` (plus its `prefix`) and record it as
/// `extract-rootfs/file/nfsroot`.
pub async fn extract_nfsrootfs(ctx: &mut RunContext) -> LavaResult<()> {
    let Some(entry) = ctx.meta().param("nfsrootfs").cloned() else {
        return Ok(());
    };
    let archive = data_path(ctx, "download-action", "nfsrootfs", "file")
        .ok_or_else(|| LavaError::job("no file specified extract as nfsrootfs"))?;
    let level = ctx.meta().level.replace('.', "-");
    let root = super::test_overlay::job_tmp_dir(ctx).join(format!("extract-nfsrootfs-{level}"));
    create_dir_0755(&root)?;
    untar(ctx, &archive, &root).await?;
    let mut root_text = root.display().to_string();
    if let Some(prefix) = entry.get("prefix").and_then(scalar_string) {
        ctx.logger.warning(format!(
            "Adding '{prefix}' prefix, any other content will not be visible."
        ));
        root_text = root.join(&prefix).display().to_string();
    }
    ctx.logger
        .debug(format!("Extracted nfsroot to {}", root.display()));
    ctx.set_data("extract-rootfs", "file", "nfsroot", root_text);
    Ok(())
}

/// `qemu-nfs-deploy`: unpack the downloaded `nfsrootfs` image into
/// `<job tmp>/qemu-nfs-deploy-<level>` (plus its `prefix`, when given) and record it as
/// `extract-rootfs/file/nfsroot`, the directory `{NFSROOTFS}` names on QEMU's kernel
/// command line. The job's scratch directory lies under the directory the worker exports.
pub async fn extract_qemu_nfsrootfs(ctx: &mut RunContext, prefix: Option<&str>) -> LavaResult<()> {
    let archive = data_path(ctx, "download-action", "nfsrootfs", "file")
        .ok_or_else(|| LavaError::job("no file specified extract as nfsrootfs"))?;
    let level = ctx.meta().level.replace('.', "-");
    let root = super::test_overlay::job_tmp_dir(ctx).join(format!("qemu-nfs-deploy-{level}"));
    create_dir_0755(&root)?;
    untar(ctx, &archive, &root).await?;
    ctx.logger
        .debug(format!("Extracted nfsroot to {}", root.display()));
    let mut root_text = root.display().to_string();
    if let Some(prefix) = prefix {
        ctx.logger.warning(format!(
            "Adding '{prefix}' prefix, any other content will not be visible."
        ));
        root_text = root.join(prefix).display().to_string();
    }
    ctx.set_data("extract-rootfs", "file", "nfsroot", root_text);
    Ok(())
}

/// `parse-persistent-nfs`: record the server and directory of `persistent_nfs.address`
/// (`persistent-nfs-overlay/nfs_address/{nfsroot,serverip}`).
pub fn parse_persistent_nfs(ctx: &mut RunContext, server: &str, directory: &str) {
    ctx.set_data(
        "persistent-nfs-overlay",
        "nfs_address",
        "nfsroot",
        directory,
    );
    ctx.set_data("persistent-nfs-overlay", "nfs_address", "serverip", server);
}

/// `extract-overlay-ramdisk`: record the ramdisk to rebuild, without the U-Boot header
/// when the job's `ramdisk.header` is `u-boot`; an untouched ramdisk (no modules, no
/// overlay) is used as downloaded.
pub async fn extract_ramdisk(ctx: &mut RunContext) -> LavaResult<()> {
    let params = ctx.meta().parameters.clone();
    let Some(entry) = params.get("ramdisk").filter(|v| truthy(Some(v))) else {
        return Ok(());
    };
    let ramdisk = data_path(ctx, "download-action", "ramdisk", "file")
        .ok_or_else(|| LavaError::bug("Unable to find the downloaded ramdisk"))?;
    let untouched = !image_flag(&params, "ramdisk", "install_modules")
        && !image_flag(&params, "ramdisk", "install_overlay");
    if untouched {
        ctx.logger.info("Not extracting ramdisk.");
        let suffix = data_string(ctx, "tftp-deploy", "tftp", "suffix").unwrap_or_default();
        let name = ramdisk.file_name().unwrap_or_default().to_string_lossy();
        ctx.set_data(
            "compress-ramdisk",
            "file",
            "ramdisk",
            join_relative(&suffix, &["ramdisk", &name]),
        );
        return Ok(());
    }
    let input = if entry.get("header").and_then(Value::as_str) == Some("u-boot") {
        let level = ctx.meta().level.replace('.', "-");
        let dir =
            super::test_overlay::job_tmp_dir(ctx).join(format!("extract-overlay-ramdisk-{level}"));
        create_dir_0755(&dir)?;
        let stripped = dir.join("ramdisk.cpio");
        ctx.logger.debug(format!(
            "Removing the {UBOOT_HEADER_LENGTH}-byte U-Boot header of {}",
            ramdisk.display()
        ));
        strip_header(&ramdisk, &stripped).await.map_err(|e| {
            LavaError::bug(format!(
                "Unable to remove uboot header: {} ({e})",
                ramdisk.display()
            ))
        })?;
        stripped
    } else {
        ramdisk
    };
    ctx.set_data(
        "extract-overlay-ramdisk",
        "ramdisk_file",
        "file",
        input.display().to_string(),
    );
    Ok(())
}

async fn strip_header(from: &Path, to: &Path) -> std::io::Result<()> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    tokio::task::spawn_blocking(move || {
        use std::io::{Seek, SeekFrom};
        let mut input = std::fs::File::open(&from)?;
        input.seek(SeekFrom::Start(UBOOT_HEADER_LENGTH))?;
        let mut output = std::fs::File::create(&to)?;
        std::io::copy(&mut input, &mut output)?;
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
}

fn data_string(ctx: &RunContext, action: &str, label: &str, key: &str) -> Option<String> {
    ctx.get_data(action, label, key)
        .and_then(scalar_string)
        .filter(|s| !s.is_empty())
}

/// `a/b/c` from a possibly empty prefix and parts (Python's `os.path.join`).
fn join_relative(prefix: &str, parts: &[&str]) -> String {
    let mut path = PathBuf::from(prefix);
    for part in parts {
        path.push(part);
    }
    path.display().to_string()
}

/// `extract-modules`: unpack the modules tarball into the NFS root, and record it for the
/// ramdisk rebuild, each unless its image says `install_modules: false`.
pub async fn extract_modules(ctx: &mut RunContext) -> LavaResult<()> {
    let params = ctx.meta().parameters.clone();
    if !truthy(params.get("modules")) {
        return Ok(());
    }
    let modules = data_path(ctx, "download-action", "modules", "file")
        .ok_or_else(|| LavaError::bug("Unable to find the downloaded modules"))?;
    let has_ramdisk = truthy(params.get("ramdisk"));
    let has_nfs = truthy(params.get("nfsrootfs"));
    if !has_ramdisk && !has_nfs {
        return Err(LavaError::job(
            "Unable to identify a location for the unpacked modules",
        ));
    }
    if has_nfs {
        if !image_flag(&params, "nfsrootfs", "install_modules") {
            ctx.logger.info("Skipping applying overlay to NFS");
        } else {
            let root = data_path(ctx, "extract-rootfs", "file", "nfsroot")
                .ok_or_else(|| LavaError::bug("Unable to find the unpacked nfsroot"))?;
            ctx.logger.info(format!(
                "extracting modules file {} to {}",
                modules.display(),
                root.display()
            ));
            untar(ctx, &modules, &root).await?;
        }
    }
    if has_ramdisk {
        if !image_flag(&params, "ramdisk", "install_modules") {
            ctx.logger.info("Not adding modules to the ramdisk.");
        } else {
            ctx.logger.info(format!(
                "extracting modules file {} to the ramdisk",
                modules.display()
            ));
            ctx.set_data(
                "extract-modules",
                "ramdisk",
                "modules",
                modules.display().to_string(),
            );
        }
    }
    Ok(())
}

/// `apply-overlay-tftp`: the test overlay into the NFS root when there is one, else into
/// the persistent NFS export (mounted on the worker for the time of the unpack), else
/// recorded for the ramdisk rebuild; each unless its image says `install_overlay: false`.
pub async fn apply_overlay(ctx: &mut RunContext) -> LavaResult<()> {
    let params = ctx.meta().parameters.clone();
    let namespace = ctx.namespace();
    let overlay = data_path(ctx, "compress-overlay", "output", "file");
    let skip = |ctx: &RunContext, what: &str| {
        ctx.logger
            .info(format!("[{namespace}] Skipping applying overlay to {what}"));
    };
    // The NFS root: a TFTP deployment's `nfsrootfs`, or one among a QEMU NFS deployment's
    // `images`.
    let nfsrootfs = params
        .get("nfsrootfs")
        .filter(|v| !v.is_null())
        .or_else(|| {
            params
                .get("images")
                .and_then(|images| images.get("nfsrootfs"))
                .filter(|v| !v.is_null())
        });
    if let Some(entry) = nfsrootfs {
        if !entry
            .get("install_overlay")
            .map(|v| truthy(Some(v)))
            .unwrap_or(true)
        {
            skip(ctx, "NFS");
            return Ok(());
        }
        let Some(overlay) = overlay else {
            return Ok(());
        };
        let root = data_path(ctx, "extract-rootfs", "file", "nfsroot")
            .ok_or_else(|| LavaError::bug("Unable to find the unpacked nfsroot"))?;
        ctx.logger
            .info(format!("[{namespace}] Applying overlay to NFS"));
        return unpack_overlay(ctx, &overlay, &root).await;
    }
    if params.get("persistent_nfs").is_some_and(|v| !v.is_null()) {
        if !image_flag(&params, "persistent_nfs", "install_overlay") {
            skip(ctx, "persistent NFS");
            return Ok(());
        }
        let Some(overlay) = overlay else {
            return Ok(());
        };
        let address = params
            .get("persistent_nfs")
            .and_then(|p| p.get("address"))
            .and_then(scalar_string)
            .unwrap_or_default();
        ctx.logger.info(format!(
            "[{namespace}] Applying overlay to persistent NFS address {address}"
        ));
        return apply_to_persistent_nfs(ctx, &overlay, &address).await;
    }
    if params.get("ramdisk").is_some_and(|v| !v.is_null()) {
        if !image_flag(&params, "ramdisk", "install_overlay") {
            skip(ctx, "ramdisk");
            return Ok(());
        }
        if let Some(overlay) = overlay {
            ctx.logger.info(format!(
                "[{namespace}] Applying overlay {} to ramdisk",
                overlay.display()
            ));
            ctx.set_data(
                "apply-overlay-tftp",
                "ramdisk",
                "overlay",
                overlay.display().to_string(),
            );
        }
        return Ok(());
    }
    ctx.logger
        .debug(format!("[{namespace}] No overlay directory"));
    Ok(())
}

async fn unpack_overlay(ctx: &mut RunContext, overlay: &Path, dir: &Path) -> LavaResult<()> {
    ctx.logger.debug(format!(
        "Applying overlay {} to directory {}",
        overlay.display(),
        dir.display()
    ));
    let (file, dest, name) = (
        overlay.to_path_buf(),
        dir.to_path_buf(),
        overlay.display().to_string(),
    );
    tokio::task::spawn_blocking(move || {
        lava_shell::fetch::unpack_archive(&file, Some("gz"), 0, &dest, &name)
    })
    .await
    .map_err(|e| LavaError::bug(e.to_string()))?
    .map_err(LavaError::from)
}

async fn apply_to_persistent_nfs(
    ctx: &mut RunContext,
    overlay: &Path,
    address: &str,
) -> LavaResult<()> {
    let mount = require_tool("mount")?.display().to_string();
    let umount = require_tool("umount")?.display().to_string();
    // Not under the job's scratch directory: it must survive a failed umount.
    let dir = std::env::temp_dir().join(format!(
        "lava-persistent-nfs-{}-{}",
        ctx.job.id,
        ctx.meta().level
    ));
    std::fs::create_dir_all(&dir).map_err(|e| io_error("Unable to create", &dir, e))?;
    let dir_text = dir.display().to_string();
    let deadline = ctx.deadline();
    let kind = ErrorKind::Infrastructure;
    run_command(
        &ctx.logger,
        &[
            mount,
            "-t".into(),
            "nfs".into(),
            address.into(),
            dir_text.clone(),
        ],
        None,
        deadline,
        kind,
        false,
    )
    .await?;
    let unpacked = unpack_overlay(ctx, overlay, &dir).await;
    run_command(
        &ctx.logger,
        &[umount, dir_text],
        None,
        deadline,
        kind,
        false,
    )
    .await?;
    std::fs::remove_dir(&dir).map_err(|e| io_error("Unable to remove", &dir, e))?;
    unpacked
}

/// What `uboot-prepare-kernel` does to the downloaded kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPreparation {
    /// The boot command for the kernel type (`bootm`, `bootz`, `booti`).
    pub bootcommand: String,
    /// Wrap the kernel in a uImage.
    pub mkimage_conversion: bool,
    /// `mkimage -A` (`mkimage_arch` of the device deploy parameters).
    pub mkimage_arch: String,
    /// Append the DTB to the kernel (`append_dtb` of the device deploy parameters).
    pub append_dtb: bool,
    /// The uImage entry point is 64 bytes after the load address (`use_xip`).
    pub use_xip: bool,
    /// The load address (`parameters.text_offset`, else `parameters.<bootcommand>.kernel`).
    pub load_address: Option<String>,
}

/// `uboot-prepare-kernel`: append the DTB (`kernel-dtb`) and/or convert the kernel to a
/// uImage (`mkimage -A <arch> -O linux -T kernel -C none -a <load> -e <entry>`), then
/// record the kernel to boot as `prepare-kernel/file/kernel` (relative to the TFTP root);
/// the boot command is recorded as `uboot-prepare-kernel/bootcommand/bootcommand`.
pub async fn prepare_kernel(ctx: &mut RunContext, plan: &KernelPreparation) -> LavaResult<()> {
    ctx.set_data(
        "uboot-prepare-kernel",
        "bootcommand",
        "bootcommand",
        plan.bootcommand.as_str(),
    );
    let old_kernel = data_string(ctx, "download-action", "file", "kernel").unwrap_or_default();
    let old_dir = Path::new(&old_kernel)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if plan.append_dtb {
        let kernel = data_path(ctx, "download-action", "kernel", "file")
            .ok_or_else(|| LavaError::bug("Unable to find the downloaded kernel"))?;
        let dtb = data_path(ctx, "download-action", "dtb", "file")
            .ok_or_else(|| LavaError::job("append_dtb needs a dtb in the deployment"))?;
        let joined = kernel.with_file_name("kernel-dtb");
        ctx.logger.info(format!(
            "Appending {} to {}",
            dtb.display(),
            kernel.display()
        ));
        let mut bytes = tokio::fs::read(&kernel)
            .await
            .map_err(|e| io_error("Unable to read", &kernel, e))?;
        bytes.extend(
            tokio::fs::read(&dtb)
                .await
                .map_err(|e| io_error("Unable to read", &dtb, e))?,
        );
        tokio::fs::write(&joined, bytes)
            .await
            .map_err(|_| LavaError::infrastructure("DTB appending failed"))?;
        ctx.set_data(
            "download-action",
            "kernel",
            "file",
            joined.display().to_string(),
        );
        ctx.set_data(
            "prepare-kernel",
            "file",
            "kernel",
            old_dir.join("kernel-dtb").display().to_string(),
        );
    }
    if plan.mkimage_conversion {
        ctx.logger.info("Converting downloaded kernel to a uImage");
        let kernel = data_path(ctx, "download-action", "kernel", "file")
            .ok_or_else(|| LavaError::bug("Unable to find the downloaded kernel"))?;
        let load = plan.load_address.clone().unwrap_or_default();
        let load = parse_address(&load).ok_or_else(|| {
            LavaError::configuration(format!("Invalid kernel load address '{load}'"))
        })?;
        let entry = if plan.use_xip {
            ctx.logger.debug("Using xip");
            load + 64
        } else {
            load
        };
        let uimage = kernel.with_file_name("uImage");
        let argv = vec![
            require_tool("mkimage")?.display().to_string(),
            "-A".into(),
            plan.mkimage_arch.clone(),
            "-O".into(),
            "linux".into(),
            "-T".into(),
            "kernel".into(),
            "-C".into(),
            "none".into(),
            "-a".into(),
            format!("0x{load:x}"),
            "-e".into(),
            format!("0x{entry:x}"),
            "-d".into(),
            kernel.display().to_string(),
            uimage.display().to_string(),
        ];
        run_command(
            &ctx.logger,
            &argv,
            None,
            ctx.deadline(),
            ErrorKind::Infrastructure,
            false,
        )
        .await
        .map_err(|e| LavaError::infrastructure(format!("uImage creation failed: {}", e.message)))?;
        ctx.set_data(
            "prepare-kernel",
            "file",
            "kernel",
            old_dir.join("uImage").display().to_string(),
        );
    }
    Ok(())
}

/// The inputs of a depthcharge FIT image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitInputs {
    /// `mkimage -A` (`mkimage_arch` of the device deploy parameters).
    pub arch: String,
    /// The kernel (lzma-compressed for arm64).
    pub kernel: String,
    /// The kernel's compression (`none`, `lzma`).
    pub compression: String,
    /// The load address (`parameters.load_address`).
    pub load_address: String,
    /// The DTB, if deployed.
    pub dtb: Option<String>,
    /// The ramdisk (with the overlay when rebuilt), if deployed.
    pub ramdisk: Option<String>,
    /// The FIT image written (`image.itb` beside the kernel).
    pub fit: String,
}

/// LAVA's `mkimage -f auto` command line of a FIT image (the `-D` argument is passed to
/// dtc through mkimage's shell, quotes included).
pub fn fit_command(mkimage: &str, inputs: &FitInputs) -> Vec<String> {
    let mut argv: Vec<String> = [
        mkimage,
        "-D",
        "\"-I dts -O dtb -p 2048\"",
        "-f",
        "auto",
        "-A",
        &inputs.arch,
        "-O",
        "linux",
        "-T",
        "kernel",
        "-C",
        &inputs.compression,
        "-d",
        &inputs.kernel,
        "-a",
        &inputs.load_address,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(dtb) = &inputs.dtb {
        argv.extend(["-b".to_string(), dtb.clone()]);
    }
    if let Some(ramdisk) = &inputs.ramdisk {
        argv.extend(["-i".to_string(), ramdisk.clone()]);
    }
    argv.push(inputs.fit.clone());
    argv
}

/// `prepare-fit`: kernel, DTB and ramdisk packed into `image.itb` beside the kernel (an
/// arm64 kernel compressed with `lzma` first), recorded as `prepare-fit/file/fit`
/// relative to the TFTP root. Without `mkimage_arch` no FIT is made.
pub async fn prepare_fit(ctx: &mut RunContext) -> LavaResult<()> {
    let device = &ctx.job.device;
    let arch = device
        .lookup(&["actions", "deploy", "parameters", "mkimage_arch"])
        .and_then(scalar_string);
    let load_address = device
        .lookup(&["parameters", "load_address"])
        .and_then(scalar_string)
        .unwrap_or_default();
    let Some(arch) = arch else {
        ctx.logger.info("No mkimage arch provided, not using FIT.");
        return Ok(());
    };
    let kernel = data_path(ctx, "download-action", "kernel", "file")
        .ok_or_else(|| LavaError::bug("Unable to find the downloaded kernel"))?;
    let dir = kernel.parent().map(Path::to_path_buf).unwrap_or_default();
    let deadline = ctx.deadline();
    let (kernel_file, compression) = if arch == "arm64" {
        let argv = vec![
            require_tool("lzma")?.display().to_string(),
            "--keep".into(),
            kernel.display().to_string(),
        ];
        run_command(
            &ctx.logger,
            &argv,
            None,
            deadline,
            ErrorKind::Infrastructure,
            false,
        )
        .await?;
        let name = kernel.file_name().unwrap_or_default().to_string_lossy();
        (dir.join(format!("{name}.lzma")), "lzma")
    } else {
        (kernel.clone(), "none")
    };
    let inputs = FitInputs {
        arch,
        kernel: kernel_file.display().to_string(),
        compression: compression.into(),
        load_address,
        dtb: data_path(ctx, "download-action", "dtb", "file").map(|p| p.display().to_string()),
        ramdisk: data_path(ctx, "compress-ramdisk", "file", "full-path")
            .or_else(|| data_path(ctx, "download-action", "ramdisk", "file"))
            .map(|p| p.display().to_string()),
        fit: dir.join("image.itb").display().to_string(),
    };
    let mkimage = require_tool("mkimage")?.display().to_string();
    run_command(
        &ctx.logger,
        &fit_command(&mkimage, &inputs),
        None,
        deadline,
        ErrorKind::Infrastructure,
        false,
    )
    .await
    .map_err(|_| LavaError::infrastructure("FIT image creation failed"))?;
    let kernel_tftp = data_string(ctx, "download-action", "file", "kernel").unwrap_or_default();
    let fit_tftp = Path::new(&kernel_tftp)
        .parent()
        .unwrap_or(Path::new(""))
        .join("image.itb");
    ctx.set_data("prepare-fit", "file", "fit", fit_tftp.display().to_string());
    Ok(())
}

/// A load address as Python's `int(text, 16)` reads it (`0x` prefix optional).
pub fn parse_address(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    u64::from_str_radix(digits, 16).ok()
}

/// `compress-ramdisk`: rebuild the ramdisk recorded by `extract-overlay-ramdisk` with
/// the modules and the overlay merged in (one streaming pass each), add the U-Boot header
/// when `header` is set (`mkimage -A <arch> -T ramdisk -C none`), put the result beside
/// the download and record it (`compress-ramdisk/file/{ramdisk,full-path}`, the ramdisk
/// name relative to the TFTP root for a TFTP deployment).
pub async fn compress_ramdisk(ctx: &mut RunContext, uboot_arch: Option<&str>) -> LavaResult<()> {
    let Some(input) = data_path(ctx, "extract-overlay-ramdisk", "ramdisk_file", "file") else {
        // No ramdisk, or one left untouched.
        return Ok(());
    };
    let downloaded = data_path(ctx, "download-action", "ramdisk", "file")
        .ok_or_else(|| LavaError::bug("Unable to find ramdisk directory"))?;
    let dir = downloaded
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let modules = data_path(ctx, "extract-modules", "ramdisk", "modules");
    let overlay = data_path(ctx, "apply-overlay-tftp", "ramdisk", "overlay");
    // As LAVA: compressed again as the job's `ramdisk: compression:` says (none: a plain
    // cpio), named `ramdisk.cpio` with that compression's suffix.
    let compression_name = ctx
        .meta()
        .param("ramdisk")
        .and_then(|r| r.get("compression"))
        .and_then(scalar_string)
        .filter(|c| !c.is_empty());
    let compression = match compression_name.as_deref() {
        None => None,
        Some(name) => Some(lava_artefacts::Compression::from_name(name).ok_or_else(|| {
            LavaError::job(format!("Cannot find shell command to compress: {name}"))
        })?),
    };
    let mut final_file = dir.join(match &compression_name {
        Some(name) => format!("ramdisk.cpio.{name}"),
        None => "ramdisk.cpio".to_string(),
    });
    ctx.logger.info(format!(
        "Building ramdisk {} containing {}",
        final_file.display(),
        input.display()
    ));
    // One streaming pass: the ramdisk's members, then the modules', then the overlay's.
    let mut additions = Vec::new();
    if let Some(modules) = modules {
        additions.push(lava_artefacts::ramdisk::OverlaySource::Tarball {
            archive: plain_tar(ctx, &modules, &dir).await?,
            at: "/".into(),
        });
    }
    if let Some(overlay) = overlay {
        additions.push(lava_artefacts::ramdisk::OverlaySource::Tarball {
            archive: overlay,
            at: "/".into(),
        });
    }
    let done =
        lava_artefacts::ramdisk::append_overlays(input, additions, compression, final_file.clone())
            .await?;
    ctx.logger.debug(format!(
        ">> {} members ({} added)",
        done.entries, done.added
    ));
    if let Some(arch) = uboot_arch {
        let with_header = final_file.with_file_name(format!(
            "{}.uboot",
            final_file.file_name().unwrap_or_default().to_string_lossy()
        ));
        ctx.logger.debug("Adding RAMdisk u-boot header.");
        let argv = vec![
            require_tool("mkimage")?.display().to_string(),
            "-A".into(),
            arch.to_string(),
            "-T".into(),
            "ramdisk".into(),
            "-C".into(),
            "none".into(),
            "-d".into(),
            final_file.display().to_string(),
            with_header.display().to_string(),
        ];
        run_command(
            &ctx.logger,
            &argv,
            None,
            ctx.deadline(),
            ErrorKind::Infrastructure,
            false,
        )
        .await
        .map_err(|_| LavaError::infrastructure("Unable to add uboot header to ramdisk"))?;
        final_file = with_header;
    }
    ctx.set_data(
        "compress-ramdisk",
        "file",
        "full-path",
        final_file.display().to_string(),
    );
    let name = final_file
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let value = if ctx.meta().param("to").and_then(Value::as_str) == Some("tftp") {
        let suffix = data_string(ctx, "tftp-deploy", "tftp", "suffix").unwrap_or_default();
        join_relative(&suffix, &["ramdisk", &name])
    } else {
        final_file.display().to_string()
    };
    ctx.set_data("compress-ramdisk", "file", "ramdisk", value);
    Ok(())
}

/// A plain tar of `archive` (modules are often xz or bzip2 tarballs, which the overlay
/// merge does not read): decompressed by magic into `dir`, or `archive` itself.
async fn plain_tar(ctx: &mut RunContext, archive: &Path, dir: &Path) -> LavaResult<PathBuf> {
    let head = {
        use std::io::Read;
        let mut buf = [0u8; 8];
        let mut file =
            std::fs::File::open(archive).map_err(|e| io_error("Unable to read", archive, e))?;
        let n = file.read(&mut buf).unwrap_or(0);
        buf[..n].to_vec()
    };
    if lava_artefacts::Compression::from_magic(&head).is_none() {
        return Ok(archive.to_path_buf());
    }
    let target = dir.join("modules.tar");
    ctx.logger
        .debug(format!("Decompressing {}", archive.display()));
    let (from, to) = (archive.to_path_buf(), target.clone());
    tokio::task::spawn_blocking(move || -> LavaResult<()> {
        let mut reader = lava_artefacts::compression::open_decompressed(&from)?;
        let mut out =
            std::fs::File::create(&to).map_err(|e| io_error("Unable to write", &to, e))?;
        std::io::copy(&mut reader, &mut out).map_err(|e| io_error("Unable to write", &to, e))?;
        Ok(())
    })
    .await
    .map_err(|e| LavaError::bug(e.to_string()))??;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_suffix() {
        let layout = TftpLayout::new(Path::new("/srv/tftp"), "lab-", "42", "tftp-deploy", "1.2");
        assert_eq!(layout.job_dir, Path::new("/srv/tftp/lab-42"));
        assert_eq!(
            layout.deploy_dir,
            Path::new("/srv/tftp/lab-42/tftp-deploy-1-2")
        );
        assert_eq!(layout.suffix(), "lab-42/tftp-deploy-1-2");
        assert_eq!(
            join_relative(&layout.suffix(), &["ramdisk", "ramdisk.cpio.gz.uboot"]),
            "lab-42/tftp-deploy-1-2/ramdisk/ramdisk.cpio.gz.uboot"
        );
        assert_eq!(join_relative("", &["ramdisk", "r"]), "ramdisk/r");
    }

    #[test]
    fn fit_command_as_lava() {
        let inputs = FitInputs {
            arch: "arm64".into(),
            kernel: "/t/kernel/Image.lzma".into(),
            compression: "lzma".into(),
            load_address: "0x80080000".into(),
            dtb: Some("/t/dtb/board.dtb".into()),
            ramdisk: None,
            fit: "/t/kernel/image.itb".into(),
        };
        assert_eq!(
            fit_command("mkimage", &inputs).join(" "),
            "mkimage -D \"-I dts -O dtb -p 2048\" -f auto -A arm64 -O linux -T kernel -C lzma \
             -d /t/kernel/Image.lzma -a 0x80080000 -b /t/dtb/board.dtb /t/kernel/image.itb"
        );
    }

    #[test]
    fn addresses_read_as_python_hex() {
        assert_eq!(parse_address("0x80000000"), Some(0x8000_0000));
        assert_eq!(parse_address("80008000"), Some(0x8000_8000));
        assert_eq!(parse_address("0xzz"), None);
    }

    #[test]
    fn servable_modes() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.join("f"), b"x").unwrap();
        std::fs::set_permissions(dir.join("f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        make_servable(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(&dir.join("f")), 0o644);
    }
}
