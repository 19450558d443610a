//! A later image's `append-overlays` prepared while an earlier image downloads
//! (`runtime::image_prefetch`), as the deploy's actions run it: the prepared ramdisk is
//! taken only when the downloaded image is the source it was made from, and is then the
//! same archive the in-place append makes; otherwise, and at cleanup, its staging files go.

use lava_actions::runtime::image_overlay::append_overlays;
use lava_actions::runtime::image_prefetch::{discard_prepared, prepare_later_images};
use lava_artefacts::checksum::Hasher;
use lava_artefacts::compression::open_decompressed;
use lava_pipeline::{Device, RunContext};
use lava_test_support::ci::require_tool;
use lava_test_support::runtime::{ActionSpec, StepAction, capturing_context, step};
use serde_yaml::Mapping;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

const PREPARED: &str = "Appended while the earlier images downloaded";

fn tools() -> bool {
    require_tool("/usr/bin/cpio", "cpio: scripts/install-test-deps.sh")
        && require_tool("/usr/bin/tar", "tar: scripts/install-test-deps.sh")
}

fn sh(command: &str, dir: &Path) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "{command}");
}

/// A gzip newc ramdisk of a small tree whose `/etc/issue` says `issue`, and the test
/// overlay tarball of job 5.
fn ramdisk_and_overlay(dir: &Path, issue: &str) -> (PathBuf, PathBuf) {
    let tree = dir.join(format!("tree-{issue}"));
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::write(tree.join("etc/issue"), format!("{issue}\n")).unwrap();
    std::fs::write(tree.join("bin/tool"), vec![7u8; 200_000]).unwrap();
    let ramdisk = dir.join(format!("initrd-{issue}.cpio.gz"));
    sh(
        &format!(
            "find . | LC_ALL=C sort | cpio --quiet -o -H newc | gzip -9 > {}",
            ramdisk.display()
        ),
        &tree,
    );
    let overlay_tree = dir.join("overlay-tree");
    std::fs::create_dir_all(overlay_tree.join("lava-5/bin")).unwrap();
    std::fs::write(
        overlay_tree.join("lava-5/bin/lava-test-runner"),
        "#!/bin/sh\n",
    )
    .unwrap();
    let overlay = dir.join("overlay.tar.gz");
    sh(
        &format!(
            "tar -czf {} -C {} lava-5",
            overlay.display(),
            overlay_tree.display()
        ),
        dir,
    );
    (ramdisk, overlay)
}

fn deploy_params(ramdisk_source: &Path) -> Mapping {
    serde_yaml::from_str(&format!(
        "{{to: tmpfs, images: {{kernel: {{url: 'file:///boot/vmlinuz'}}, \
         ramdisk: {{url: 'file://{}', format: cpio.newc, compression: gz, \
         overlays: {{lava: true}}}}}}}}",
        ramdisk_source.display()
    ))
    .unwrap()
}

fn sha256(path: &Path) -> String {
    let mut hasher = Hasher::new(false, false);
    hasher.update(&std::fs::read(path).unwrap());
    hasher.finish().sha256
}

fn decompressed(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    open_decompressed(path)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

fn context(job: &str, overlay: &Path) -> RunContext {
    let device = Device::from_yaml("constants: {failure_retry: 1}", None).unwrap();
    let mut ctx = capturing_context(
        &format!("{}{job}", std::process::id()),
        Mapping::new(),
        device,
        120,
    );
    ctx.set_data(
        "compress-overlay",
        "output",
        "file",
        overlay.display().to_string(),
    );
    ctx
}

/// The kernel's download starting (which prepares the later images), as action 1.3.1.
async fn start_kernel_download(ctx: &mut RunContext, params: &Mapping) {
    let spec = ActionSpec::new("file-download", "deploy", "1.3.1").parameters(params.clone());
    let action = StepAction::new(
        spec.name(),
        step(|ctx| {
            Box::pin(async move {
                prepare_later_images(ctx, "kernel");
                Ok(())
            })
        }),
    );
    spec.run(ctx, Box::new(action)).await.unwrap();
}

/// The ramdisk `downloaded` recorded as its download records it, then its
/// `append-overlays` (1.4.2).
async fn append_to_downloaded(ctx: &mut RunContext, params: &Mapping, downloaded: &Path) {
    ctx.set_data(
        "download-action",
        "ramdisk",
        "file",
        downloaded.display().to_string(),
    );
    ctx.set_data("download-action", "ramdisk", "compression", "gz");
    ctx.set_data("download-action", "ramdisk", "decompressed", false);
    ctx.set_data("download-action", "ramdisk", "sha256", sha256(downloaded));
    let image_params = params["images"]["ramdisk"].as_mapping().unwrap().clone();
    let spec = ActionSpec::new("append-overlays", "deploy", "1.4.2").parameters(params.clone());
    let action = StepAction::new(
        spec.name(),
        step(move |ctx| {
            let image_params = image_params.clone();
            Box::pin(async move { append_overlays(ctx, "ramdisk", &image_params).await })
        }),
    );
    spec.run(ctx, Box::new(action)).await.unwrap();
}

fn logged(ctx: &RunContext, text: &str) -> bool {
    ctx.logger.captured().iter().any(|line| line.contains(text))
}

fn prefetch_dir(ctx: &RunContext) -> PathBuf {
    ctx.job.scratch_dir.join("prefetch")
}

/// The result of the in-place append (nothing prepared) on a copy of `source`.
async fn appended_in_place(dir: &Path, source: &Path, overlay: &Path) -> Vec<u8> {
    let copy = dir.join("in-place.cpio.gz");
    std::fs::copy(source, &copy).unwrap();
    let mut ctx = context("9", overlay);
    append_to_downloaded(&mut ctx, &deploy_params(source), &copy).await;
    assert!(!logged(&ctx, PREPARED));
    let _ = std::fs::remove_dir_all(&ctx.job.scratch_dir);
    decompressed(&copy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prepared_ramdisk_is_the_in_place_append_when_the_download_is_its_source() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (source, overlay) = ramdisk_and_overlay(tmp.path(), "one");
    let expected = appended_in_place(tmp.path(), &source, &overlay).await;

    let params = deploy_params(&source);
    let mut ctx = context("1", &overlay);
    start_kernel_download(&mut ctx, &params).await;
    let downloaded = tmp.path().join("downloaded.cpio.gz");
    std::fs::copy(&source, &downloaded).unwrap();
    append_to_downloaded(&mut ctx, &params, &downloaded).await;

    assert!(logged(&ctx, PREPARED), "{:#?}", ctx.logger.captured());
    assert!(
        logged(&ctx, "rewritten with"),
        "the same record as the in-place append"
    );
    let got = decompressed(&downloaded);
    assert_eq!(got, expected, "the same archive as the in-place append");
    assert!(
        !prefetch_dir(&ctx).join("ramdisk").exists(),
        "staging directory removed"
    );
    let _ = std::fs::remove_dir_all(&ctx.job.scratch_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_other_than_the_prepared_source_is_appended_in_place() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (source, overlay) = ramdisk_and_overlay(tmp.path(), "one");
    let (other, _) = ramdisk_and_overlay(tmp.path(), "two");
    let expected = appended_in_place(tmp.path(), &other, &overlay).await;

    let params = deploy_params(&source);
    let mut ctx = context("2", &overlay);
    start_kernel_download(&mut ctx, &params).await;
    // The download brought other bytes than the source the preparation read.
    let downloaded = tmp.path().join("downloaded.cpio.gz");
    std::fs::copy(&other, &downloaded).unwrap();
    append_to_downloaded(&mut ctx, &params, &downloaded).await;

    assert!(!logged(&ctx, PREPARED));
    assert_eq!(decompressed(&downloaded), expected);
    assert!(String::from_utf8_lossy(&expected).contains("two\n"));
    assert!(!prefetch_dir(&ctx).join("ramdisk").exists());
    let _ = std::fs::remove_dir_all(&ctx.job.scratch_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_waits_for_a_preparation_nobody_took_and_removes_it() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (source, overlay) = ramdisk_and_overlay(tmp.path(), "one");
    let params = deploy_params(&source);
    let mut ctx = context("3", &overlay);
    start_kernel_download(&mut ctx, &params).await;
    // A second start prepares nothing twice.
    start_kernel_download(&mut ctx, &params).await;
    discard_prepared(&mut ctx, "ramdisk").await;
    assert!(!prefetch_dir(&ctx).join("ramdisk").exists());
    let _ = std::fs::remove_dir_all(&ctx.job.scratch_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_prepared_before_the_test_overlay_exists_or_for_the_last_image() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (source, overlay) = ramdisk_and_overlay(tmp.path(), "one");
    let params = deploy_params(&source);
    let device = Device::from_yaml("constants: {failure_retry: 1}", None).unwrap();
    let mut ctx = capturing_context(
        &format!("{}4", std::process::id()),
        Mapping::new(),
        device,
        120,
    );
    start_kernel_download(&mut ctx, &params).await;
    assert!(!prefetch_dir(&ctx).exists(), "no overlay yet");

    let mut ctx = context("4", &overlay);
    let spec = ActionSpec::new("file-download", "deploy", "1.4.1").parameters(params.clone());
    let action = StepAction::new(
        spec.name(),
        step(|ctx| {
            Box::pin(async move {
                prepare_later_images(ctx, "ramdisk");
                Ok(())
            })
        }),
    );
    spec.run(&mut ctx, Box::new(action)).await.unwrap();
    assert!(!prefetch_dir(&ctx).exists(), "no image after the ramdisk");
    let _ = std::fs::remove_dir_all(&ctx.job.scratch_dir);
}
