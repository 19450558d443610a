//! `deploy-qemu-nfs`'s run-time steps without QEMU: `qemu-nfs-deploy` unpacks the
//! `images.nfsrootfs` tarball into the job's scratch directory (below its `prefix` when
//! given) and records it as `extract-rootfs/file/nfsroot`; `apply-overlay-tftp` unpacks the
//! test overlay there unless `images.nfsrootfs.install_overlay` is false. (The boot on that
//! root runs in lava-dispatch's `e2e_qemu_nfs.rs`.)

use lava_actions::runtime::tftp::{apply_overlay, extract_qemu_nfsrootfs};
use lava_pipeline::value::scalar_string;
use lava_pipeline::{Device, ErrorKind, RunContext};
use lava_test_support::ci::require_tool;
use lava_test_support::runtime::{ActionSpec, StepAction, capturing_context, step};
use serde_yaml::Mapping;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tar_czf(tree: &Path, members: &str, out: &Path) {
    let status = Command::new("tar")
        .arg("-czf")
        .arg(out)
        .arg("-C")
        .arg(tree)
        .arg(members)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A root tarball (`./etc/hostname`, `./sub/etc/hostname`, a symlink) and an overlay
/// tarball (`lava-5/bin/lava-test-runner`).
fn tarballs(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("sub/etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "outer\n").unwrap();
    std::fs::write(root.join("sub/etc/hostname"), "inner\n").unwrap();
    std::os::unix::fs::symlink("etc/hostname", root.join("hostname")).unwrap();
    let rootfs = dir.join("rootfs.tar.gz");
    tar_czf(&root, ".", &rootfs);
    let tree = dir.join("overlay");
    std::fs::create_dir_all(tree.join("lava-5/bin")).unwrap();
    std::fs::write(tree.join("lava-5/bin/lava-test-runner"), "#!/bin/sh\n").unwrap();
    let overlay = dir.join("overlay.tar.gz");
    tar_czf(&tree, "lava-5", &overlay);
    (rootfs, overlay)
}

/// `qemu-nfs-deploy` then `apply-overlay-tftp` with the block `images.nfsrootfs` `entry`;
/// returns the recorded root.
async fn deploy(job_id: &str, entry: &str, rootfs: &Path, overlay: &Path) -> (RunContext, PathBuf) {
    let device = Device::from_yaml("constants: {failure_retry: 1}", None).unwrap();
    let job_id = format!("{}{job_id}", std::process::id());
    let mut ctx = capturing_context(&job_id, Mapping::new(), device, 120);
    ctx.set_data(
        "download-action",
        "nfsrootfs",
        "file",
        rootfs.display().to_string(),
    );
    ctx.set_data(
        "compress-overlay",
        "output",
        "file",
        overlay.display().to_string(),
    );
    let params: Mapping =
        serde_yaml::from_str(&format!("{{to: nfs, images: {{nfsrootfs: {entry}}}}}")).unwrap();
    let prefix = params["images"]["nfsrootfs"]
        .get("prefix")
        .and_then(scalar_string);
    let spec = ActionSpec::new("qemu-nfs-deploy", "deploy", "1.4")
        .timeout(60)
        .timeout_kind(ErrorKind::Infrastructure)
        .parameters(params.clone());
    let action = StepAction::new(
        spec.name(),
        lava_test_support::runtime::step(move |ctx| {
            let prefix = prefix.clone();
            Box::pin(async move { extract_qemu_nfsrootfs(ctx, prefix.as_deref()).await })
        }),
    );
    spec.run(&mut ctx, Box::new(action)).await.unwrap();
    let spec = ActionSpec::new("apply-overlay-tftp", "deploy", "1.6")
        .timeout(60)
        .timeout_kind(ErrorKind::Infrastructure)
        .parameters(params);
    let action = StepAction::new(spec.name(), step(|ctx| Box::pin(apply_overlay(ctx))));
    spec.run(&mut ctx, Box::new(action)).await.unwrap();
    let root = ctx
        .get_data("extract-rootfs", "file", "nfsroot")
        .and_then(scalar_string)
        .map(PathBuf::from)
        .expect("extract-rootfs/file/nfsroot");
    (ctx, root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_is_unpacked_in_the_scratch_directory_with_the_overlay() {
    if !require_tool("tar", "GNU tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (rootfs, overlay) = tarballs(tmp.path());

    let (ctx, root) = deploy("1", "{url: x}", &rootfs, &overlay).await;
    assert_eq!(root, ctx.job.scratch_dir.join("qemu-nfs-deploy-1-4"));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "outer\n"
    );
    assert_eq!(
        std::fs::read_link(root.join("hostname")).unwrap(),
        Path::new("etc/hostname")
    );
    assert!(root.join("lava-5/bin/lava-test-runner").is_file());
    let _ = std::fs::remove_dir_all(&ctx.job.scratch_dir);

    // A prefix: the root is the directory below it, and the overlay goes there.
    let (ctx, root) = deploy("2", "{url: x, prefix: sub/}", &rootfs, &overlay).await;
    assert_eq!(root, ctx.job.scratch_dir.join("qemu-nfs-deploy-1-4/sub/"));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "inner\n"
    );
    assert!(root.join("lava-5/bin/lava-test-runner").is_file());
    let _ = std::fs::remove_dir_all(&ctx.job.scratch_dir);

    // install_overlay: false leaves the root as unpacked.
    let (ctx, root) = deploy("3", "{url: x, install_overlay: false}", &rootfs, &overlay).await;
    assert!(root.join("etc/hostname").is_file());
    assert!(!root.join("lava-5").exists());
    let _ = std::fs::remove_dir_all(&ctx.job.scratch_dir);
}
