//! Run-time: overlays put into images before QEMU boots them, as LAVA's deploy does.
//!
//! - `append-overlays` ([`append_overlays`]): a job's `images.<key>.overlays` put into a
//!   `cpio.newc` image: `lava: true` is the job's test overlay unpacked at the root, any
//!   other entry a downloaded tarball unpacked at its `path` or a file copied to it. The
//!   image is decompressed, appended to and recompressed as its `compression` says (when
//!   the download kept it compressed) in one streaming pass by lava-artefacts, written
//!   back in place, so the image's `image_arg` boots it. `append-overlays/guest/applied`
//!   then tells `apply-overlay-guest` and QEMU that the test overlay is in the image.
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
//!   of LAVA's libguestfs appliance. Members keep their modes and become root's.

use crate::common::power::which;
use lava_artefacts::Compression;
use lava_artefacts::ramdisk::OverlaySource;
use lava_pipeline::command::run_command;
use lava_pipeline::value::{scalar_string, truthy};
use lava_pipeline::{ErrorKind, LavaError, LavaResult, RunContext};
use serde_yaml::{Mapping, Value};
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
    ctx: &RunContext,
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

/// `append-overlays` on the `cpio.newc` image `key` (block `params`: its `overlays`,
/// `format`, `compression`). Records `append-overlays/guest/applied` when the test
/// overlay (`lava`) is one of them.
pub async fn append_overlays(ctx: &mut RunContext, key: &str, params: &Mapping) -> LavaResult<()> {
    let format = params.get("format").and_then(Value::as_str).unwrap_or("");
    if format != "cpio.newc" {
        return Err(LavaError::bug(format!(
            "append-overlays cannot modify a {format:?} image in lava-rs yet"
        )));
    }
    let image = data_string(ctx, "download-action", key, "file")
        .map(PathBuf::from)
        .ok_or_else(|| LavaError::bug(format!("Unable to find the downloaded image '{key}'")))?;
    let declared = data_string(ctx, "download-action", key, "compression");
    let decompressed = truthy(ctx.get_data("download-action", key, "decompressed"));
    let compression = match declared.as_deref() {
        Some(name) if !decompressed => Some(Compression::from_name(name).ok_or_else(|| {
            LavaError::job(format!(
                "Unable to update image {key}: compression '{name}' cannot be written back"
            ))
        })?),
        _ => None,
    };
    ctx.logger.info(format!("Modifying '{}'", image.display()));
    if let Some(c) = compression {
        ctx.logger
            .debug(format!("* decompressing, then compressing again ({c})"));
    }
    ctx.logger.debug("Overlays:");
    let sources = overlay_sources(ctx, key, params)?;
    let done = lava_artefacts::ramdisk::append_overlays(image.clone(), sources, compression, image)
        .await?;
    ctx.logger.info(format!(
        "{} rewritten with {} members ({} added by the overlays)",
        done.path.display(),
        done.entries,
        done.added
    ));
    let has_lava = params
        .get("overlays")
        .and_then(Value::as_mapping)
        .is_some_and(|o| o.contains_key("lava"));
    if has_lava {
        ctx.set_data("append-overlays", "guest", "applied", true);
    }
    Ok(())
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

/// debugfs commands writing the overlay `members` (unpacked under `staged`) into a
/// filesystem: parent directories made, files and links replaced, modes set, root-owned.
fn debugfs_commands(
    members: &[lava_artefacts::tar::TarMember],
    staged: &Path,
) -> LavaResult<String> {
    use lava_artefacts::newc::{S_IFDIR, S_IFLNK, S_IFMT, checked_member};
    let mut made = std::collections::BTreeSet::new();
    let mut commands = String::new();
    let quote = |p: &str| -> LavaResult<String> {
        if p.contains(['"', '\n', '\\']) {
            return Err(LavaError::job(format!(
                "Unsupported overlay member name {p:?}"
            )));
        }
        Ok(format!("\"{p}\""))
    };
    for member in members {
        let path = checked_member(&member.name)?;
        if path == "." {
            continue;
        }
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, p)| p)
            .unwrap_or_default()
        {
            parent = format!("{parent}/{part}");
            if made.insert(parent.clone()) {
                commands.push_str(&format!("mkdir {}\n", quote(&parent)?));
            }
        }
        let target = quote(&format!("/{path}"))?;
        match member.mode & S_IFMT {
            S_IFDIR => {
                if made.insert(format!("/{path}")) {
                    commands.push_str(&format!("mkdir {target}\n"));
                }
            }
            S_IFLNK => {
                let link = String::from_utf8_lossy(&member.data);
                commands.push_str(&format!(
                    "rm {target}\nsymlink {target} {}\n",
                    quote(&link)?
                ));
            }
            _ => {
                let source = staged.join(&path);
                commands.push_str(&format!(
                    "rm {target}\nwrite {} {target}\n",
                    quote(&source.display().to_string())?
                ));
            }
        }
        if member.mode & S_IFMT != S_IFLNK {
            commands.push_str(&format!("sif {target} mode 0{:o}\n", member.mode));
        }
        commands.push_str(&format!("sif {target} uid 0\nsif {target} gid 0\n"));
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
    let dir = crate::runtime::test_overlay::job_tmp_dir(ctx)
        .join(format!("apply-overlay-image-{}", ctx.meta().level));
    // A retry starts from scratch.
    let _ = std::fs::remove_dir_all(&dir);
    lava_pipeline::scratch::create_private_dir_all(&dir).map_err(|e| {
        LavaError::infrastructure(format!("Unable to create {}: {e}", dir.display()))
    })?;
    crate::runtime::test_overlay::unpack_overlay_locally(ctx, &dir).await?;
    let members = {
        use std::io::Read;
        let mut tar = Vec::new();
        lava_artefacts::compression::open_decompressed(Path::new(&overlay))?
            .read_to_end(&mut tar)
            .map_err(|e| LavaError::bug(format!("Unable to read the overlay {overlay}: {e}")))?;
        lava_artefacts::tar::read_tar(&tar)?
    };
    let commands = debugfs_commands(&members, &dir)?;
    let script = dir.with_extension("debugfs");
    std::fs::write(&script, commands).map_err(|e| {
        LavaError::infrastructure(format!("Unable to write {}: {e}", script.display()))
    })?;
    let device = if offset > 0 {
        format!("{}?offset={offset}", image.display())
    } else {
        image.display().to_string()
    };
    ctx.logger.debug(format!(
        "Calling: debugfs -w -f {} {device}",
        script.display()
    ));
    let mut command = tokio::process::Command::new(&debugfs);
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
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&script);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !debugfs_benign(l))
        .collect();
    if !output.status.success() || !failures.is_empty() {
        return Err(LavaError::job(format!(
            "Unable to apply the overlay to {device}: {}",
            failures.join("; ")
        )));
    }
    ctx.logger.info(format!(
        "Overlay applied to {device} ({} members)",
        members.len()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
