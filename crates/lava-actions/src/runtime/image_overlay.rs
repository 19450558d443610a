//! Run-time: overlays put into images before QEMU boots them, as LAVA's deploy does.
//!
//! - `append-overlays` ([`append_overlays`]): a job's `images.<key>.overlays` put into an
//!   image: `lava: true` is the job's test overlay unpacked at the root, any other entry a
//!   downloaded tarball unpacked at its `path` or a file copied to it (a later entry wins a
//!   path). A `cpio.newc` or `tar` image is decompressed, appended to and recompressed as
//!   its `compression` says (when the download kept it compressed) in one streaming pass
//!   by lava-artefacts; into an `ext4` image (or its `partition`) the members are written
//!   with `debugfs -w`, with their modes, owners and symlinks (a `sparse` one made raw by
//!   `simg2img` and sparse again by `img2simg`). The image is changed in place, so its
//!   `image_arg` boots it. `append-overlays/guest/applied` then tells
//!   `apply-overlay-guest` and QEMU that the test overlay is in the image.
//! - `apply-overlay-guest` ([`build_guest_disk`]): the disk LAVA builds with libguestfs,
//!   built here without an appliance: an ext2 filesystem labelled `LAVA` holding the
//!   overlay's `lava_test_results_dir` tree at its root (`mke2fs -d`, e2fsprogs), as a
//!   qcow2 image of the device's `guest.size` megabytes (`qemu-img convert`). QEMU
//!   attaches it and the test shell mounts it by UUID on `lava_test_results_dir`
//!   (`runtime::qemu`).
//! - `apply-overlay-image` ([`apply_overlay_to_image`]): the overlay written straight into
//!   an ext2/3/4 image, or into its `root_partition` (an index into the partitions of an
//!   MBR or GPT partition table, as libguestfs lists them: primary partitions in slot order,
//!   GPT entries in table order), with `debugfs -w` at the partition's byte offset instead
//!   of LAVA's libguestfs appliance. Members keep their modes and owners.

use crate::common::power::which;
use lava_artefacts::Compression;
use lava_artefacts::ramdisk::OverlaySource;
use lava_pipeline::command::run_command;
use lava_pipeline::value::{scalar_string, truthy};
use lava_pipeline::{BlockLookups, ErrorKind, LavaError, LavaResult, RunContext};
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The guest disk's filesystem label (LAVA's `mke2fs(label="LAVA")`).
pub const GUEST_LABEL: &str = "LAVA";

/// A namespace value as a non-empty string.
fn data_string(ctx: &RunContext, action: &str, label: &str, key: &str) -> Option<String> {
    ctx.get_data(action, label, key)
        .and_then(scalar_string)
        .filter(|s| !s.is_empty())
}

/// Whether `append-overlays` put the job's test overlay into an image already.
pub fn overlay_applied(ctx: &RunContext) -> bool {
    truthy(ctx.get_data("append-overlays", "guest", "applied"))
}

/// The overlays of image `key` in the order the job lists them, each with its file.
fn overlay_sources(
    ctx: &mut RunContext,
    key: &str,
    params: &Mapping,
) -> LavaResult<Vec<OverlaySource>> {
    let overlays = params
        .get("overlays")
        .and_then(Value::as_mapping)
        .ok_or_else(|| LavaError::job("Missing 'overlays' dictionary"))?;
    let mut sources = Vec::new();
    for (name, overlay) in overlays {
        let name = scalar_string(name).unwrap_or_default();
        let label = format!("{key}.{name}");
        if name == "lava" {
            let file = data_string(ctx, "compress-overlay", "output", "file")
                .ok_or_else(|| LavaError::bug("Unable to find the overlay"))?;
            ctx.logger
                .debug(format!("- {label}: untar '{file}' to '/'"));
            sources.push(OverlaySource::Tarball {
                archive: file.into(),
                at: "/".into(),
            });
            continue;
        }
        let path = overlay
            .get("path")
            .and_then(scalar_string)
            .ok_or_else(|| LavaError::job(format!("Missing 'path' for 'overlays.{name}'")))?;
        let Some(file) = data_string(ctx, "download-action", &label, "file") else {
            ctx.logger
                .warning(format!("- {label}: <MISSING> to '{path}'"));
            continue;
        };
        match overlay.get("format").and_then(Value::as_str) {
            Some("tar") => {
                ctx.logger
                    .debug(format!("- {label}: untar '{file}' to '{path}'"));
                sources.push(OverlaySource::Tarball {
                    archive: file.into(),
                    at: path,
                });
            }
            _ => {
                ctx.logger
                    .debug(format!("- {label}: cp '{file}' to '{path}'"));
                sources.push(OverlaySource::File {
                    file: file.into(),
                    at: path,
                });
            }
        }
    }
    Ok(sources)
}

/// `append-overlays` on image `key` (block `params`: its `overlays`, `format`,
/// `compression`, and for ext4 `partition` and `sparse`). Records
/// `append-overlays/guest/applied` when the test overlay (`lava`) is one of them.
pub async fn append_overlays(ctx: &mut RunContext, key: &str, params: &Mapping) -> LavaResult<()> {
    let format = params.get("format").and_then(Value::as_str).unwrap_or("");
    let image = data_string(ctx, "download-action", key, "file")
        .map(PathBuf::from)
        .ok_or_else(|| LavaError::bug(format!("Unable to find the downloaded image '{key}'")))?;
    let compression = kept_compression(ctx, key)?;
    match format {
        "cpio.newc" | "tar" => append_to_archive(ctx, key, params, &image, compression).await?,
        "ext4" => append_to_ext4(ctx, key, params, &image, compression).await?,
        other => {
            return Err(LavaError::bug(format!(
                "Unknown format {}",
                lava_python::str_repr(other)
            )));
        }
    }
    let has_lava = params
        .get("overlays")
        .and_then(Value::as_mapping)
        .is_some_and(|o| o.contains_key("lava"));
    if has_lava {
        ctx.set_data("append-overlays", "guest", "applied", true);
    }
    Ok(())
}

/// The compression image `key` still has on disk: its declared `compression` when the
/// download kept it compressed (the `ramdisk` key), else none.
fn kept_compression(ctx: &RunContext, key: &str) -> LavaResult<Option<Compression>> {
    let declared = data_string(ctx, "download-action", key, "compression");
    let decompressed = truthy(ctx.get_data("download-action", key, "decompressed"));
    match declared.as_deref() {
        Some(name) if !decompressed => Compression::from_name(name).map(Some).ok_or_else(|| {
            LavaError::job(format!(
                "Unable to update image {key}: compression '{name}' cannot be written back"
            ))
        }),
        _ => Ok(None),
    }
}

/// A `cpio.newc` or `tar` image: decompressed, merged with the overlays and compressed
/// again in one streaming pass (lava-artefacts' `ramdisk` and `tar_image`), in place.
async fn append_to_archive(
    ctx: &mut RunContext,
    key: &str,
    params: &Mapping,
    image: &Path,
    compression: Option<Compression>,
) -> LavaResult<()> {
    ctx.logger.info(format!("Modifying '{}'", image.display()));
    if let Some(c) = compression {
        ctx.logger
            .debug(format!("* decompressing, then compressing again ({c})"));
    }
    ctx.logger.debug("Overlays:");
    let sources = overlay_sources(ctx, key, params)?;
    let (image, output) = (image.to_path_buf(), image.to_path_buf());
    let done = if params.get("format").and_then(Value::as_str) == Some("tar") {
        lava_artefacts::tar_image::append_overlays(image, sources, compression, output).await?
    } else {
        lava_artefacts::ramdisk::append_overlays(image, sources, compression, output).await?
    };
    ctx.logger.info(format!(
        "{} rewritten with {} members ({} added by the overlays)",
        done.path.display(),
        done.entries,
        done.added
    ));
    Ok(())
}

/// An `ext4` image: the overlays written into its filesystem (or that of its `partition`,
/// an index into its partition table) with `debugfs -w`, in place; a `sparse` image is
/// made raw with `simg2img` first and sparse again with `img2simg` after.
async fn append_to_ext4(
    ctx: &mut RunContext,
    key: &str,
    params: &Mapping,
    image: &Path,
    compression: Option<Compression>,
) -> LavaResult<()> {
    if let Some(c) = compression {
        return Err(LavaError::job(format!(
            "Unable to update image {key}: an ext4 image kept compressed ({c}) cannot be modified"
        )));
    }
    let partition = match params.get("partition") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .and_then(|p| usize::try_from(p).ok())
                .ok_or_else(|| {
                    LavaError::job(format!(
                        "Invalid partition number '{}'",
                        scalar_string(value).unwrap_or_default()
                    ))
                })?,
        ),
    };
    let sparse = params.flag("sparse");
    let debugfs = host_tool("debugfs")?;
    let sparse_tools = if sparse {
        Some((host_tool("simg2img")?, host_tool("img2simg")?))
    } else {
        None
    };
    ctx.logger.info(format!("Modifying '{}'", image.display()));
    if let Some((simg2img, _)) = &sparse_tools {
        ctx.logger
            .debug(format!("Calling simg2img on '{}'", image.display()));
        resparse(ctx, simg2img, image, "non-sparse").await?;
    }
    let offset = match partition {
        Some(index) => partition_offset(image, index).map_err(|e| {
            LavaError::new(
                e.kind,
                format!("Unable to update image {key}: {}", e.message),
            )
        })?,
        None => 0,
    };
    ctx.logger.debug("Overlays:");
    let sources = overlay_sources(ctx, key, params)?;
    let members = lava_artefacts::ramdisk::overlay_members(&sources)?;
    let dir = crate::runtime::test_overlay::job_tmp_dir(ctx)
        .join(format!("append-overlays-{}", ctx.meta().level));
    write_with_debugfs(
        ctx,
        &debugfs,
        &members,
        image,
        offset,
        &dir,
        &format!("Unable to update image {key} in"),
    )
    .await?;
    if let Some((_, img2simg)) = &sparse_tools {
        ctx.logger
            .debug(format!("Calling img2simg on '{}'", image.display()));
        resparse(ctx, img2simg, image, "sparse").await?;
    }
    Ok(())
}

/// `tool image image.<suffix>` (simg2img or img2simg), then the result renamed over
/// `image`.
async fn resparse(ctx: &mut RunContext, tool: &Path, image: &Path, suffix: &str) -> LavaResult<()> {
    let converted = image.with_extension(format!(
        "{}.{suffix}",
        image.extension().and_then(|e| e.to_str()).unwrap_or("img")
    ));
    let argv = [
        tool.display().to_string(),
        image.display().to_string(),
        converted.display().to_string(),
    ];
    let done = run_command(
        &ctx.logger,
        &argv,
        None,
        ctx.deadline(),
        ErrorKind::Job,
        false,
    )
    .await;
    if let Err(e) = done {
        let _ = std::fs::remove_file(&converted);
        // The tool's failure keeps its kind (a timeout stays a timeout).
        return Err(LavaError::new(
            e.kind,
            format!(
                "{} failed for {}: {}",
                tool.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("conversion"),
                image.display(),
                e.message
            ),
        ));
    }
    std::fs::rename(&converted, image).map_err(|e| {
        LavaError::infrastructure(format!("Unable to replace {}: {e}", image.display()))
    })
}

/// A tool of e2fsprogs or QEMU: `$PATH` first, then the system directories a non-root
/// `$PATH` often lacks.
fn host_tool(program: &str) -> LavaResult<PathBuf> {
    which(program)
        .or_else(|| {
            ["/usr/sbin", "/sbin", "/usr/bin"]
                .iter()
                .map(|dir| Path::new(dir).join(program))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            LavaError::infrastructure(format!("Cannot find command '{program}' in $PATH"))
        })
}

/// A random (version 4) UUID for the guest filesystem, in its text form.
fn random_uuid() -> LavaResult<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| LavaError::infrastructure(format!("Unable to read /dev/urandom: {e}")))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// The guest filesystem size in megabytes: the device's
/// `actions.deploy.methods.image.parameters.guest.size`.
fn guest_size_mb(ctx: &RunContext) -> LavaResult<u64> {
    let size = ctx
        .job
        .device
        .deploy_method_params("image")
        .and_then(|p| p.get("guest"))
        .and_then(|g| g.get("size"));
    size.and_then(|s| s.as_u64().or_else(|| scalar_string(s)?.parse().ok()))
        .filter(|s| *s > 0)
        .ok_or_else(|| {
            LavaError::configuration(
                "Device configuration does not specify size of guest filesystem.",
            )
        })
}

/// `apply-overlay-guest`: the overlay disk. Unpacks the compressed overlay in a scratch
/// directory, makes an ext2 filesystem (label `LAVA`, a fresh UUID) of `guest.size`
/// megabytes from its `lava_test_results_dir` subtree, converts it to
/// `<scratch>/lava-guest.qcow2`, and records `apply-overlay-guest/guest/{filename,UUID}`
/// and the action's `success` result (the UUID), as LAVA does.
pub async fn build_guest_disk(ctx: &mut RunContext, file_name: &str) -> LavaResult<PathBuf> {
    let size = guest_size_mb(ctx)?;
    let mke2fs = host_tool("mke2fs")?;
    let qemu_img = host_tool("qemu-img")?;
    let overlay = data_string(ctx, "compress-overlay", "output", "file")
        .ok_or_else(|| LavaError::bug("Unable to find the overlay"))?;
    ctx.logger.debug(format!("Overlay: {overlay}"));
    let mountpoint = data_string(ctx, "test", "results", "lava_test_results_dir")
        .ok_or_else(|| LavaError::bug("Unable to find lava_test_results_dir"))?;
    let dir = crate::runtime::test_overlay::job_tmp_dir(ctx)
        .join(format!("apply-overlay-guest-{}", ctx.meta().level));
    let unpacked = dir.join("overlay");
    // A retry starts from scratch.
    let _ = std::fs::remove_dir_all(&unpacked);
    lava_pipeline::scratch::create_private_dir_all(&unpacked).map_err(|e| {
        LavaError::infrastructure(format!("Unable to create {}: {e}", unpacked.display()))
    })?;
    crate::runtime::test_overlay::unpack_overlay_locally(ctx, &unpacked).await?;
    // Only the results directory's own tree: the guest mounts the disk there.
    let base = Path::new(&mountpoint)
        .file_name()
        .ok_or_else(|| LavaError::bug(format!("Invalid lava_test_results_dir '{mountpoint}'")))?;
    let root = unpacked.join(base);
    if !root.is_dir() {
        return Err(LavaError::bug(format!(
            "The overlay has no {mountpoint} directory"
        )));
    }
    let uuid = random_uuid()?;
    let raw = dir.join("lava-guest.raw");
    let guest = dir.join(file_name);
    let deadline = ctx.deadline();
    let path = |p: &Path| p.display().to_string();
    let mkfs = [
        path(&mke2fs),
        "-q".into(),
        "-F".into(),
        "-t".into(),
        "ext2".into(),
        "-L".into(),
        GUEST_LABEL.into(),
        "-U".into(),
        uuid.clone(),
        "-E".into(),
        "root_owner=0:0".into(),
        "-d".into(),
        path(&root),
        path(&raw),
        format!("{size}M"),
    ];
    run_command(
        &ctx.logger,
        &mkfs,
        None,
        deadline,
        ErrorKind::Infrastructure,
        false,
    )
    .await?;
    let convert = [
        path(&qemu_img),
        "convert".into(),
        "-q".into(),
        "-f".into(),
        "raw".into(),
        "-O".into(),
        "qcow2".into(),
        path(&raw),
        path(&guest),
    ];
    run_command(
        &ctx.logger,
        &convert,
        None,
        deadline,
        ErrorKind::Infrastructure,
        false,
    )
    .await?;
    let _ = std::fs::remove_file(&raw);
    let _ = std::fs::remove_dir_all(&unpacked);
    ctx.set_data("apply-overlay-guest", "guest", "filename", path(&guest));
    ctx.set_data("apply-overlay-guest", "guest", "UUID", uuid.clone());
    ctx.set_result("success", uuid);
    Ok(guest)
}

/// The byte offset of partition `index` (0-based, in libguestfs' `list_partitions` order)
/// of a disk image with an MBR or GPT partition table (512-byte sectors). Logical
/// partitions inside an MBR extended partition are not supported. Errors are JobErrors
/// naming the image.
pub fn partition_offset(image: &Path, index: usize) -> LavaResult<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let name = image.display();
    let fail = |what: String| {
        LavaError::job(format!(
            "Unable to find partition {index} of {name}: {what}"
        ))
    };
    let mut file = std::fs::File::open(image)
        .map_err(|e| LavaError::infrastructure(format!("Unable to read {name}: {e}")))?;
    let mut read_at = |offset: u64, buf: &mut [u8]| -> LavaResult<()> {
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(buf))
            .map_err(|e| fail(format!("cannot read its partition table ({e})")))
    };
    let mut mbr = [0u8; 512];
    read_at(0, &mut mbr)?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Err(fail("no partition table".into()));
    }
    let entry = |i: usize| &mbr[446 + 16 * i..446 + 16 * (i + 1)];
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64;
    let le64 = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
    if (0..4).any(|i| entry(i)[4] == 0xee) {
        let mut header = [0u8; 92];
        read_at(512, &mut header)?;
        if &header[..8] != b"EFI PART" {
            return Err(fail("a protective MBR without a GPT header".into()));
        }
        let entries_lba = le64(&header[72..80]);
        let count = le32(&header[80..84]);
        let size = le32(&header[84..88]);
        if !(128..=4096).contains(&size) || count > 1024 {
            return Err(fail("an invalid GPT header".into()));
        }
        let mut used = 0;
        for i in 0..count {
            let mut raw = vec![0u8; size as usize];
            read_at(entries_lba * 512 + i * size, &mut raw)?;
            if raw[..16].iter().all(|b| *b == 0) {
                continue;
            }
            if used == index {
                return Ok(le64(&raw[32..40]) * 512);
            }
            used += 1;
        }
        return Err(fail(format!("the GPT has {used} partitions")));
    }
    let primary: Vec<&[u8]> = (0..4).map(entry).filter(|e| e[4] != 0).collect();
    match primary.get(index) {
        Some(e) if matches!(e[4], 0x05 | 0x0f | 0x85) => Err(fail(
            "it is an extended partition (logical partitions are not supported)".into(),
        )),
        Some(e) => Ok(le32(&e[8..12]) * 512),
        None => Err(fail(format!("the MBR has {} partitions", primary.len()))),
    }
}

/// Quotes a path for a debugfs script (names with quotes, backslashes or newlines are
/// refused).
fn debugfs_quote(path: &str) -> LavaResult<String> {
    if path.contains(['"', '\n', '\\']) {
        return Err(LavaError::job(format!(
            "Unsupported overlay member name {path:?}"
        )));
    }
    Ok(format!("\"{path}\""))
}

/// The absolute directories holding `members` (each member's parents, and `/`): what
/// [`existing_entries`] lists.
fn parent_directories(members: &[lava_artefacts::tar::TarMember]) -> LavaResult<BTreeSet<String>> {
    let mut dirs = BTreeSet::from(["/".to_string()]);
    for member in members {
        let path = lava_artefacts::newc::checked_member(&member.name)?;
        let mut parent = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            parent = format!("{parent}/{part}");
            dirs.insert(parent.clone());
        }
    }
    Ok(dirs)
}

/// The entries of the filesystem's `dirs` that exist (absolute path to whether it is a
/// directory), from one read-only `debugfs` run of `ls -p` requests. A directory that
/// does not exist lists nothing.
async fn existing_entries(
    ctx: &mut RunContext,
    debugfs: &Path,
    device: &str,
    dirs: &BTreeSet<String>,
    script: &Path,
) -> LavaResult<BTreeMap<String, bool>> {
    let mut requests = String::new();
    for dir in dirs {
        requests.push_str(&format!("ls -p {}\n", debugfs_quote(dir)?));
    }
    std::fs::write(script, requests).map_err(|e| {
        LavaError::infrastructure(format!("Unable to write {}: {e}", script.display()))
    })?;
    let mut command = tokio::process::Command::new(debugfs);
    command
        .arg("-f")
        .arg(script)
        .arg(device)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout_at(ctx.deadline(), command.output())
        .await
        .map_err(|_| crate::runtime::console::action_timeout(ctx))?
        .map_err(|e| LavaError::infrastructure(format!("Unable to run debugfs: {e}")))?;
    Ok(parse_listings(&String::from_utf8_lossy(&output.stdout)))
}

/// `ls -p` listings as a `-f` script prints them: each request echoed
/// (`debugfs: ls -p "/etc"`), then one `/inode/mode/uid/gid/name/size/` line an entry.
fn parse_listings(stdout: &str) -> BTreeMap<String, bool> {
    let mut found = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if let Some(request) = line.strip_prefix("debugfs: ls -p ") {
            current = Some(request.trim_matches('"').trim_end_matches('/').to_string());
            continue;
        }
        let (Some(dir), Some(entry)) = (&current, line.strip_prefix('/')) else {
            continue;
        };
        let fields: Vec<&str> = entry.split('/').collect();
        let (Some(mode), Some(name)) = (fields.get(1), fields.get(4)) else {
            continue;
        };
        if matches!(*name, "." | ".." | "") {
            continue;
        }
        let is_dir = u32::from_str_radix(mode, 8)
            .is_ok_and(|m| m & lava_artefacts::newc::S_IFMT == lava_artefacts::newc::S_IFDIR);
        found.insert(format!("{dir}/{name}"), is_dir);
    }
    found
}

/// debugfs commands writing `members` into a filesystem whose entries under the members'
/// directories are `existing` (path to whether it is a directory), each regular file's
/// contents staged in the file `sources[i]`: missing parent directories made (0755,
/// root's), an existing directory kept, files and links replaced, modes and owners set as
/// the members have them. Nothing is made that exists: debugfs' `mkdir` of an existing
/// name leaves an orphaned inode behind.
fn debugfs_commands(
    members: &[lava_artefacts::tar::TarMember],
    sources: &[Option<PathBuf>],
    existing: &BTreeMap<String, bool>,
) -> LavaResult<String> {
    use lava_artefacts::newc::{S_IFDIR, S_IFLNK, S_IFMT, checked_member};
    // What the filesystem holds as the script goes: path to whether it is a directory.
    let mut present = existing.clone();
    let mut commands = String::new();
    let make_dir = |commands: &mut String, path: &str, present: &mut BTreeMap<String, bool>| {
        match present.get(path) {
            Some(true) => return Ok(false),
            Some(false) => commands.push_str(&format!("rm {}\n", debugfs_quote(path)?)),
            None => {}
        }
        commands.push_str(&format!("mkdir {}\n", debugfs_quote(path)?));
        present.insert(path.to_string(), true);
        LavaResult::Ok(true)
    };
    for (member, source) in members.iter().zip(sources) {
        let path = checked_member(&member.name)?;
        if path == "." {
            continue;
        }
        let parts: Vec<&str> = path.split('/').collect();
        let mut parent = String::new();
        for part in &parts[..parts.len() - 1] {
            parent = format!("{parent}/{part}");
            make_dir(&mut commands, &parent, &mut present)?;
        }
        let absolute = format!("/{path}");
        let target = debugfs_quote(&absolute)?;
        match (member.mode & S_IFMT, source) {
            (S_IFDIR, _) => {
                make_dir(&mut commands, &absolute, &mut present)?;
            }
            (kind, source) => {
                if present.contains_key(&absolute) {
                    commands.push_str(&format!("rm {target}\n"));
                }
                match (kind, source) {
                    (S_IFLNK, _) => {
                        let link = String::from_utf8_lossy(&member.data);
                        commands.push_str(&format!("symlink {target} {}\n", debugfs_quote(&link)?));
                    }
                    (_, Some(source)) => commands.push_str(&format!(
                        "write {} {target}\n",
                        debugfs_quote(&source.display().to_string())?
                    )),
                    (_, None) => {
                        return Err(LavaError::bug(format!("No staged contents for {path}")));
                    }
                }
                present.insert(absolute.clone(), false);
            }
        }
        if member.mode & S_IFMT != S_IFLNK {
            commands.push_str(&format!("sif {target} mode 0{:o}\n", member.mode));
        }
        commands.push_str(&format!(
            "sif {target} uid {}\nsif {target} gid {}\n",
            member.uid, member.gid
        ));
    }
    Ok(commands)
}

/// debugfs' complaints that are not failures: a directory already there, a file to
/// replace that was not.
fn debugfs_benign(line: &str) -> bool {
    line.starts_with("debugfs ")
        || line.contains("Ext2 directory already exists")
        || line.starts_with("rm: File not found by ext2_lookup")
}

/// Writes `members` (in order: a later one wins a path) into the ext2/3/4 filesystem at
/// byte `offset` of `image` with one `debugfs -w` script, the regular files' contents
/// staged under `dir` (removed after). A debugfs failure is a JobError: `failure`, the
/// filesystem, debugfs' complaints.
async fn write_with_debugfs(
    ctx: &mut RunContext,
    debugfs: &Path,
    members: &[lava_artefacts::tar::TarMember],
    image: &Path,
    offset: u64,
    dir: &Path,
    failure: &str,
) -> LavaResult<()> {
    // A retry starts from scratch.
    let _ = std::fs::remove_dir_all(dir);
    lava_pipeline::scratch::create_private_dir_all(dir).map_err(|e| {
        LavaError::infrastructure(format!("Unable to create {}: {e}", dir.display()))
    })?;
    let written = stage_and_write(ctx, debugfs, members, image, offset, dir, failure).await;
    let _ = std::fs::remove_dir_all(dir);
    written
}

async fn stage_and_write(
    ctx: &mut RunContext,
    debugfs: &Path,
    members: &[lava_artefacts::tar::TarMember],
    image: &Path,
    offset: u64,
    dir: &Path,
    failure: &str,
) -> LavaResult<()> {
    use lava_artefacts::newc::{S_IFMT, S_IFREG};
    let mut sources = Vec::with_capacity(members.len());
    for (i, member) in members.iter().enumerate() {
        if member.mode & S_IFMT != S_IFREG {
            sources.push(None);
            continue;
        }
        let staged = dir.join(i.to_string());
        std::fs::write(&staged, &member.data).map_err(|e| {
            LavaError::infrastructure(format!("Unable to write {}: {e}", staged.display()))
        })?;
        sources.push(Some(staged));
    }
    let device = if offset > 0 {
        format!("{}?offset={offset}", image.display())
    } else {
        image.display().to_string()
    };
    let dirs = parent_directories(members)?;
    let existing =
        existing_entries(ctx, debugfs, &device, &dirs, &dir.join("listing.debugfs")).await?;
    let script = dir.join("commands.debugfs");
    std::fs::write(&script, debugfs_commands(members, &sources, &existing)?).map_err(|e| {
        LavaError::infrastructure(format!("Unable to write {}: {e}", script.display()))
    })?;
    ctx.logger.debug(format!(
        "Calling: debugfs -w -f {} {device}",
        script.display()
    ));
    let mut command = tokio::process::Command::new(debugfs);
    command
        .arg("-w")
        .arg("-f")
        .arg(&script)
        .arg(&device)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout_at(ctx.deadline(), command.output())
        .await
        .map_err(|_| crate::runtime::console::action_timeout(ctx))?
        .map_err(|e| LavaError::infrastructure(format!("Unable to run debugfs: {e}")))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !debugfs_benign(l))
        .collect();
    if !output.status.success() || !failures.is_empty() {
        return Err(LavaError::job(format!(
            "{failure} {device}: {}",
            failures.join("; ")
        )));
    }
    ctx.logger.info(format!(
        "Overlay applied to {device} ({} members)",
        members.len()
    ));
    Ok(())
}

/// `apply-overlay-image`: the compressed overlay written into the ext2/3/4 filesystem of
/// image `image_key` (`download-action/<key>/file`): the whole image, or its partition
/// `root_partition`. Without an overlay nothing is done ("No overlay to deploy").
pub async fn apply_overlay_to_image(
    ctx: &mut RunContext,
    image_key: &str,
    root_partition: Option<usize>,
) -> LavaResult<()> {
    let Some(overlay) = data_string(ctx, "compress-overlay", "output", "file") else {
        ctx.logger.debug("No overlay to deploy");
        return Ok(());
    };
    ctx.logger.debug(format!("Overlay: {overlay}"));
    let image = data_string(ctx, "download-action", image_key, "file")
        .map(PathBuf::from)
        .ok_or_else(|| LavaError::bug(format!("Unable to find the image '{image_key}'")))?;
    ctx.logger.debug(format!("Image: {}", image.display()));
    let debugfs = host_tool("debugfs")?;
    let offset = match root_partition {
        Some(index) => {
            ctx.logger.debug(format!("root_partition: {index}"));
            partition_offset(&image, index)?
        }
        None => 0,
    };
    let members = {
        use std::io::Read;
        let mut tar = Vec::new();
        lava_artefacts::compression::open_decompressed(Path::new(&overlay))?
            .read_to_end(&mut tar)
            .map_err(|e| LavaError::bug(format!("Unable to read the overlay {overlay}: {e}")))?;
        lava_artefacts::tar::read_tar(&tar)?
    };
    let dir = crate::runtime::test_overlay::job_tmp_dir(ctx)
        .join(format!("apply-overlay-image-{}", ctx.meta().level));
    write_with_debugfs(
        ctx,
        &debugfs,
        &members,
        &image,
        offset,
        &dir,
        "Unable to apply the overlay to",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_give_each_existing_entry_and_whether_it_is_a_directory() {
        let stdout = "debugfs: ls -p \"/\"\n/2/040755/0/0/.//\n/2/040755/0/0/..//\n\
                      /12/040755/0/0/etc//\n\ndebugfs: ls -p \"/nothing\"\n\
                      debugfs: ls -p \"/etc\"\n/13/100644/0/0/issue/6/\n/14/120777/0/0/mtab/9/\n";
        let found = parse_listings(stdout);
        let expected: BTreeMap<String, bool> = [
            ("/etc".to_string(), true),
            ("/etc/issue".to_string(), false),
            ("/etc/mtab".to_string(), false),
        ]
        .into();
        assert_eq!(found, expected);
    }

    #[test]
    fn existing_directories_are_never_made_again_and_files_are_replaced() {
        use lava_artefacts::tar::TarMember;
        let members = [
            TarMember::new("etc", 0o40755, Vec::new()),
            TarMember::new("etc/issue", 0o100644, b"x".to_vec()),
            TarMember::new("opt/new/file", 0o100600, b"y".to_vec()),
        ];
        let sources = [None, Some("/s/1".into()), Some("/s/2".into())];
        let existing: BTreeMap<String, bool> = [
            ("/etc".to_string(), true),
            ("/etc/issue".to_string(), false),
        ]
        .into();
        let script = debugfs_commands(&members, &sources, &existing).unwrap();
        assert!(!script.contains("mkdir \"/etc\""), "{script}");
        assert!(
            script.contains("rm \"/etc/issue\"\nwrite \"/s/1\" \"/etc/issue\""),
            "{script}"
        );
        assert!(
            script.contains("mkdir \"/opt\"\nmkdir \"/opt/new\"\nwrite \"/s/2\""),
            "{script}"
        );
        assert!(!script.contains("rm \"/opt/new/file\""), "{script}");
    }

    #[test]
    fn random_uuids_are_version_4_text() {
        let a = random_uuid().unwrap();
        let b = random_uuid().unwrap();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
    }
}
