//! Run-time: a later image's `append-overlays` prepared while the deploy's earlier images
//! download.
//!
//! LAVA's deploy downloads its images one after the other and appends the test overlay to
//! an image right after that image's download. The work of the append (decompressing the
//! ramdisk, adding the overlay's members, compressing it again) depends only on the
//! image's source and the overlay, both known once the first download starts; the first
//! image (a kernel) takes a while, mostly hashing. So when a download of a deploy's
//! `images:` starts ([`prepare_later_images`]), every later image of the same map that
//! qualifies is prepared on tokio's blocking pool: its `file://` source is read where it
//! lies, hashed, and written with the overlay appended to a staging file in the job's
//! scratch directory (`prefetch/<key>/`). An image qualifies when its URL is a `file://`
//! one, its `format` is `cpio.newc` and its `overlays` are the job's test overlay alone
//! (`lava: true`; other overlays are downloads of their own).
//!
//! When that image's `append-overlays` runs, it takes the staging file
//! ([`take_prepared`]) instead of doing the work, if and only if what it would have
//! appended is what was prepared: the same overlays and compression, and the image it
//! downloaded has the SHA-256 the source had while it was read (the source did not change
//! while it was read either: its size and times are checked before and after). Otherwise
//! the staging file is removed and the work is done as usual. The log records are the
//! same either way, plus one debug record saying the work was done ahead; the action's
//! duration is then the wait for the preparation.
//!
//! Every preparation is awaited before the job's scratch directory goes: by the image's
//! `append-overlays` when it runs, and by its cleanup ([`discard_prepared`]) when the job
//! ends before it does.

use crate::common::downloader::Url;
use crate::runtime::image_download::effective_compression;
use lava_artefacts::Compression;
use lava_artefacts::ramdisk::{OverlaySource, Repacked};
use lava_pipeline::RunContext;
use lava_pipeline::value::scalar_string;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use tokio::task::JoinHandle;

/// Images being prepared, by (namespace, image key): kept in the job's
/// [`lava_pipeline::Extensions`].
#[derive(Default)]
pub struct PreparedImages {
    images: BTreeMap<(String, String), Preparation>,
}

/// One image being prepared.
struct Preparation {
    /// What is appended: the job's test overlay at the image root.
    overlays: Vec<OverlaySource>,
    /// How the result is compressed (as `append-overlays` would write it).
    compression: Option<Compression>,
    /// The directory holding the staging file.
    staging_dir: PathBuf,
    task: JoinHandle<Option<Prepared>>,
}

/// What a finished preparation produced.
struct Prepared {
    /// The staging file and its member counts.
    repacked: Repacked,
    /// Hex SHA-256 of the source as it was read.
    source_sha256: String,
}

/// At the start of image `key`'s download: starts preparing every later image of the
/// running deploy's `images:` map that qualifies (see the module documentation) and is
/// not being prepared yet. Does nothing outside an `images:` deploy or before the test
/// overlay exists.
pub fn prepare_later_images(ctx: &mut RunContext, key: &str) {
    let Some(images) = ctx.meta().param("images").and_then(Value::as_mapping) else {
        return;
    };
    let Some(overlay) = ctx
        .get_data("compress-overlay", "output", "file")
        .and_then(scalar_string)
        .filter(|f| !f.is_empty())
    else {
        return;
    };
    let later: Vec<(String, Mapping)> = images
        .iter()
        .skip_while(|(k, _)| k.as_str() != Some(key))
        .skip(1)
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_mapping()?.clone())))
        .collect();
    let namespace = ctx.namespace();
    let scratch = crate::runtime::test_overlay::job_tmp_dir(ctx);
    for (image_key, params) in later {
        let id = (namespace.clone(), image_key.clone());
        if ctx
            .extensions
            .get_or_default::<PreparedImages>()
            .images
            .contains_key(&id)
        {
            continue;
        }
        let Some(plan) = plan(&image_key, &params, &overlay) else {
            continue;
        };
        let staging_dir = scratch.join("prefetch").join(&image_key);
        let staging = staging_dir.join(plan.file_name);
        let (source, overlays, compression) = (
            plan.source,
            vec![OverlaySource::Tarball {
                archive: PathBuf::from(&overlay),
                at: "/".into(),
            }],
            plan.compression,
        );
        let task = {
            let (overlays, staging_dir) = (overlays.clone(), staging_dir.clone());
            tokio::task::spawn_blocking(move || {
                prepare(&source, &overlays, compression, &staging_dir, &staging)
            })
        };
        ctx.extensions
            .get_or_default::<PreparedImages>()
            .images
            .insert(
                id,
                Preparation {
                    overlays,
                    compression,
                    staging_dir,
                    task,
                },
            );
    }
}

/// In image `key`'s `append-overlays`: the prepared image, moved to `image`, when it was
/// prepared with exactly `overlays` and `compression` from the bytes the download
/// recorded (`download-action/<key>/sha256`); `None` otherwise (nothing prepared, or
/// unusable: its staging file is removed).
pub async fn take_prepared(
    ctx: &mut RunContext,
    key: &str,
    image: &Path,
    overlays: &[OverlaySource],
    compression: Option<Compression>,
) -> Option<Repacked> {
    let preparation = remove(ctx, key)?;
    let downloaded_sha256 = ctx
        .get_data("download-action", key, "sha256")
        .and_then(scalar_string);
    let staging_dir = preparation.staging_dir.clone();
    let usable = preparation.overlays == overlays && preparation.compression == compression;
    let taken = match preparation.task.await {
        Ok(Some(prepared))
            if usable && downloaded_sha256.as_deref() == Some(prepared.source_sha256.as_str()) =>
        {
            std::fs::rename(&prepared.repacked.path, image)
                .ok()
                .map(|()| Repacked {
                    path: image.to_path_buf(),
                    ..prepared.repacked
                })
        }
        _ => None,
    };
    let _ = std::fs::remove_dir_all(&staging_dir);
    taken
}

/// In image `key`'s cleanup: waits for a preparation still there and removes its staging
/// file (the job ended before the image's `append-overlays` took it).
pub async fn discard_prepared(ctx: &mut RunContext, key: &str) {
    if let Some(preparation) = remove(ctx, key) {
        let _ = preparation.task.await;
        let _ = std::fs::remove_dir_all(&preparation.staging_dir);
    }
}

fn remove(ctx: &mut RunContext, key: &str) -> Option<Preparation> {
    let id = (ctx.namespace(), key.to_string());
    ctx.extensions
        .get_mut::<PreparedImages>()?
        .images
        .remove(&id)
}

/// What preparing one image takes.
struct Plan {
    source: PathBuf,
    file_name: String,
    compression: Option<Compression>,
}

/// The preparation of image `key` (image map `params`), when it qualifies.
fn plan(key: &str, params: &Mapping, overlay: &str) -> Option<Plan> {
    if params.get("format").and_then(Value::as_str) != Some("cpio.newc") {
        return None;
    }
    let overlays = params.get("overlays")?.as_mapping()?;
    let only_lava = overlays.len() == 1
        && overlays
            .get("lava")
            .is_some_and(|v| lava_pipeline::value::truthy(Some(v)));
    if !only_lava || overlay.is_empty() {
        return None;
    }
    let url = Url::parse(&params.get("url").and_then(scalar_string)?);
    if url.scheme != "file" || !Path::new(&url.path).is_file() {
        return None;
    }
    // As `append-overlays` finds it on disk: the declared compression unless the download
    // decompressed the image (never for the ramdisk).
    let compression = match params.get("compression").and_then(Value::as_str) {
        Some(name) if effective_compression(key, params).is_none() => {
            Some(Compression::from_name(name)?)
        }
        _ => None,
    };
    Some(Plan {
        file_name: url.basename().to_string(),
        source: PathBuf::from(url.path),
        compression,
    })
}

/// Blocking: hashes `source`, writes it with `overlays` appended to `staging` (in
/// `staging_dir`, created private), and checks the source did not change meanwhile.
/// `None` when anything fails: the image's `append-overlays` then does the work itself
/// and reports the failure as usual.
fn prepare(
    source: &Path,
    overlays: &[OverlaySource],
    compression: Option<Compression>,
    staging_dir: &Path,
    staging: &Path,
) -> Option<Prepared> {
    lava_pipeline::scratch::create_private_dir_all(staging_dir).ok()?;
    let before = Stamp::of(source).ok()?;
    let mut hasher = lava_artefacts::checksum::Hasher::new(false, false);
    let mut file = std::fs::File::open(source).ok()?;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buffer).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let repacked =
        lava_artefacts::ramdisk::append_overlays_blocking(source, overlays, compression, staging)
            .ok()?;
    (Stamp::of(source).ok()? == before).then(|| Prepared {
        repacked,
        source_sha256: hasher.finish().sha256,
    })
}

/// What says a file's contents did not change: its identity, size and times.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    inode: (u64, u64),
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Stamp {
            inode: (m.dev(), m.ino()),
            size: m.size(),
            modified: (m.mtime(), m.mtime_nsec()),
            changed: (m.ctime(), m.ctime_nsec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn only_a_file_cpio_ramdisk_with_the_test_overlay_alone_qualifies() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("initrd.cpio.gz");
        std::fs::write(&source, b"x").unwrap();
        let url = format!("file://{}", source.display());
        let ramdisk = |extra: &str| {
            image(&format!(
                "url: {url}\nformat: cpio.newc\ncompression: gz\n{extra}"
            ))
        };
        let ok = plan("ramdisk", &ramdisk("overlays: {lava: true}"), "/o.tar.gz").unwrap();
        assert_eq!(ok.source, source);
        assert_eq!(ok.file_name, "initrd.cpio.gz");
        assert_eq!(
            ok.compression,
            Some(Compression::Gz),
            "the ramdisk stays compressed"
        );
        // Any other image with `compression` is decompressed by its download.
        let rootfs = plan("rootfs", &ramdisk("overlays: {lava: true}"), "/o.tar.gz").unwrap();
        assert_eq!(rootfs.compression, None);

        for (why, params) in [
            ("no overlays", ramdisk("")),
            ("lava: false", ramdisk("overlays: {lava: false}")),
            (
                "another overlay too",
                ramdisk(
                    "overlays: {lava: true, modules: {url: 'file:///m.tar', format: tar, path: /}}",
                ),
            ),
            (
                "an ext4 image",
                image(&format!(
                    "url: {url}\nformat: ext4\noverlays: {{lava: true}}"
                )),
            ),
            (
                "an http source",
                image("url: http://h/i.cpio.gz\nformat: cpio.newc\noverlays: {lava: true}"),
            ),
            (
                "a missing file",
                image("url: file:///nonexistent/i.cpio\nformat: cpio.newc\noverlays: {lava: true}"),
            ),
            (
                "a compression that cannot be written back",
                image(&format!(
                    "url: {url}\nformat: cpio.newc\ncompression: zip\noverlays: {{lava: true}}"
                )),
            ),
        ] {
            assert!(plan("ramdisk", &params, "/o.tar.gz").is_none(), "{why}");
        }
    }
}
