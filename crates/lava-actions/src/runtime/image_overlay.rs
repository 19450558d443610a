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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuids_are_version_4_text() {
        let a = random_uuid().unwrap();
        let b = random_uuid().unwrap();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').map(|p| p).collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
    }
}
