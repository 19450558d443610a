//! Run-time: the test overlay added to a downloaded ramdisk (`extract-overlay-ramdisk`,
//! `apply-overlay-tftp` on the ramdisk, `compress-ramdisk`), in one streaming pass by
//! [`lava_artefacts::ramdisk`], with LAVA's namespace data pointed at the result.

use lava_artefacts::ramdisk::repack_with_overlay;
use lava_pipeline::{LavaError, LavaResult, RunContext};
use std::path::{Path, PathBuf};

/// The ramdisk overlay step (`extract-overlay-ramdisk` + `apply-overlay-tftp` +
/// `compress-ramdisk` for a ramdisk that gets the overlay): read the downloaded ramdisk
/// (`download-action/ramdisk/file`) and the overlay tarball
/// (`compress-overlay/output/file`), write `<ramdisk dir>/ramdisk.cpio.gz` with the
/// overlay applied, and point `download-action/ramdisk/file` (what QEMU's `{ramdisk}`
/// and the TFTP deploy use) and `compress-ramdisk/file/ramdisk` at it.
pub async fn apply_overlay_to_ramdisk(ctx: &mut RunContext) -> LavaResult<PathBuf> {
    let ramdisk = ctx
        .get_data("download-action", "ramdisk", "file")
        .and_then(serde_yaml::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| LavaError::bug("Unable to find the downloaded ramdisk"))?;
    let overlay = ctx
        .get_data("compress-overlay", "output", "file")
        .and_then(serde_yaml::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    if overlay.is_none() {
        ctx.logger
            .debug("No overlay tarball: repacking the ramdisk unchanged");
    }
    let dir = ramdisk.parent().unwrap_or(Path::new(".")).to_path_buf();
    let output = dir.join("ramdisk.cpio.gz");
    let output = if output == ramdisk {
        dir.join("ramdisk-overlay.cpio.gz")
    } else {
        output
    };
    ctx.logger.debug(format!(
        "Applying the overlay to the ramdisk {} in {}",
        ramdisk.display(),
        output.display()
    ));
    let done = repack_with_overlay(ramdisk, overlay, output).await?;
    ctx.logger.info(format!(
        "ramdisk repacked with {} members ({} added by the overlay): {}",
        done.entries,
        done.added,
        done.path.display()
    ));
    let file = done.path.display().to_string();
    ctx.set_data("download-action", "ramdisk", "file", file.clone());
    ctx.set_data("download-action", "file", "ramdisk", file.clone());
    ctx.set_data("compress-ramdisk", "file", "ramdisk", file);
    Ok(done.path)
}
