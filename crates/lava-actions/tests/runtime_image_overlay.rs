//! `apply-overlay-image` as the action runs it: the test overlay written into an ext4
//! filesystem with debugfs, in a partition of an MBR or GPT disk image or in a whole
//! filesystem image, read back with debugfs. (`append-overlays` and `apply-overlay-guest`
//! run in the QEMU end-to-end jobs of lava-dispatch.)

use lava_actions::runtime::image_overlay::{apply_overlay_to_image, partition_offset};
use lava_pipeline::{Device, ErrorKind, LavaResult, RunContext};
use lava_test_support::ci::require_tool;
use lava_test_support::runtime::{ActionSpec, StepAction, capturing_context, step};
use serde_yaml::Mapping;
use std::path::{Path, PathBuf};
use std::process::Command;

const MKE2FS: &str = "/usr/sbin/mke2fs";
const DEBUGFS: &str = "/usr/sbin/debugfs";
/// A partition table's sector.
const SECTOR: u64 = 512;

fn tools() -> bool {
    require_tool(MKE2FS, "e2fsprogs: scripts/install-test-deps.sh")
        && require_tool(DEBUGFS, "e2fsprogs: scripts/install-test-deps.sh")
}

/// An image of `sectors` with an MBR of `(first LBA, sectors)` Linux partitions.
fn mbr_image(path: &Path, sectors: u64, partitions: &[(u32, u32)]) {
    let mut disk = vec![0u8; (sectors * SECTOR) as usize];
    for (i, (start, size)) in partitions.iter().enumerate() {
        let e = &mut disk[446 + 16 * i..446 + 16 * (i + 1)];
        e[4] = 0x83;
        e[8..12].copy_from_slice(&start.to_le_bytes());
        e[12..16].copy_from_slice(&size.to_le_bytes());
    }
    disk[510] = 0x55;
    disk[511] = 0xaa;
    std::fs::write(path, disk).unwrap();
}

/// An image with a protective MBR and a GPT whose used entries (slots 1 and 3 of 4: an
/// empty slot between) start at `starts`.
fn gpt_image(path: &Path, sectors: u64, starts: [u64; 2]) {
    let mut disk = vec![0u8; (sectors * SECTOR) as usize];
    disk[446 + 4] = 0xee;
    disk[510] = 0x55;
    disk[511] = 0xaa;
    let header = &mut disk[512..512 + 92];
    header[..8].copy_from_slice(b"EFI PART");
    header[72..80].copy_from_slice(&2u64.to_le_bytes());
    header[80..84].copy_from_slice(&4u32.to_le_bytes());
    header[84..88].copy_from_slice(&128u32.to_le_bytes());
    for (slot, start) in [1usize, 3].into_iter().zip(starts) {
        let entry = &mut disk[1024 + 128 * slot..1024 + 128 * (slot + 1)];
        entry[..16].copy_from_slice(&[0xaf; 16]);
        entry[32..40].copy_from_slice(&start.to_le_bytes());
    }
    std::fs::write(path, disk).unwrap();
}

fn mkfs(image: &Path, offset: u64, size: &str) {
    let status = Command::new(MKE2FS)
        .args(["-q", "-F", "-t", "ext4", "-E"])
        .arg(format!("offset={offset}"))
        .arg(image)
        .arg(size)
        .status()
        .unwrap();
    assert!(status.success());
}

/// `debugfs -R request` on the filesystem at `offset` of `image`: its stdout.
fn debugfs(image: &Path, offset: u64, request: &str) -> String {
    let out = Command::new(DEBUGFS)
        .arg("-R")
        .arg(request)
        .arg(format!("{}?offset={offset}", image.display()))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test overlay of job 5: a runner script, a config file and a symlink.
fn overlay(dir: &Path) -> PathBuf {
    let tree = dir.join("overlay-tree");
    std::fs::create_dir_all(tree.join("lava-5/bin")).unwrap();
    std::fs::write(
        tree.join("lava-5/bin/lava-test-runner"),
        "#!/bin/sh\necho run\n",
    )
    .unwrap();
    std::fs::write(tree.join("lava-5/lava-test-runner.conf"), "/lava-5/0\n").unwrap();
    let status = Command::new("chmod")
        .args(["0755"])
        .arg(tree.join("lava-5/bin/lava-test-runner"))
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink("bin", tree.join("lava-5/tools")).unwrap();
    let tarball = dir.join("overlay.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&tree)
        .arg("lava-5")
        .status()
        .unwrap();
    assert!(status.success());
    tarball
}

/// Runs `apply-overlay-image` as job `job_id` (one per test: the job id names the scratch
/// directory).
async fn apply(
    job_id: &str,
    image: &Path,
    overlay: &Path,
    root_partition: Option<usize>,
) -> LavaResult<()> {
    let device = Device::from_yaml("constants: {failure_retry: 1}", None).unwrap();
    let job_id = format!("{}{job_id}", std::process::id());
    let mut ctx: RunContext = capturing_context(&job_id, Mapping::new(), device, 120);
    ctx.set_data(
        "download-action",
        "image",
        "file",
        image.display().to_string(),
    );
    ctx.set_data(
        "compress-overlay",
        "output",
        "file",
        overlay.display().to_string(),
    );
    let spec = ActionSpec::new("apply-overlay-image", "deploy", "1.2")
        .timeout(60)
        .timeout_kind(ErrorKind::Infrastructure);
    let action = StepAction::new(
        spec.name(),
        step(move |ctx| Box::pin(apply_overlay_to_image(ctx, "image", root_partition))),
    );
    let result = spec.run(&mut ctx, Box::new(action)).await;
    let scratch = ctx.job.scratch_dir.clone();
    let _ = std::fs::remove_dir_all(scratch);
    result
}

fn assert_overlay_in(image: &Path, offset: u64) {
    assert_eq!(
        debugfs(image, offset, "cat /lava-5/bin/lava-test-runner"),
        "#!/bin/sh\necho run\n"
    );
    assert_eq!(
        debugfs(image, offset, "cat /lava-5/lava-test-runner.conf"),
        "/lava-5/0\n"
    );
    let stat = debugfs(image, offset, "stat /lava-5/bin/lava-test-runner");
    assert!(stat.contains("Mode:  0755"), "{stat}");
    assert!(stat.contains("User:     0   Group:     0"), "{stat}");
    let link = debugfs(image, offset, "stat /lava-5/tools");
    assert!(
        link.contains("Type: symlink") && link.contains("Fast link dest: \"bin\""),
        "{link}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overlay_goes_into_the_root_partition_of_an_mbr_disk() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let overlay = overlay(tmp.path());
    let image = tmp.path().join("disk.img");
    mbr_image(&image, 16384, &[(2048, 2048), (4096, 12288)]);
    assert_eq!(partition_offset(&image, 1).unwrap(), 4096 * SECTOR);
    mkfs(&image, 4096 * SECTOR, "6M");
    // Something already there: a file of the overlay to replace.
    apply("1", &image, &overlay, Some(1)).await.unwrap();
    apply("1", &image, &overlay, Some(1)).await.unwrap();
    assert_overlay_in(&image, 4096 * SECTOR);

    let err = apply("1", &image, &overlay, Some(2)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Job, "{err}");
    assert!(err.message.contains("Unable to find partition 2"), "{err}");
    assert!(err.message.contains("the MBR has 2 partitions"), "{err}");
    // Partition 0 has no filesystem: debugfs' failure is the job's error.
    let err = apply("1", &image, &overlay, Some(0)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Job, "{err}");
    assert!(err.message.contains("Unable to apply the overlay"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpt_partitions_count_in_table_order_and_a_filesystem_image_takes_it_whole() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let overlay = overlay(tmp.path());
    let image = tmp.path().join("gpt.img");
    gpt_image(&image, 16384, [2048, 8192]);
    assert_eq!(partition_offset(&image, 0).unwrap(), 2048 * SECTOR);
    assert_eq!(partition_offset(&image, 1).unwrap(), 8192 * SECTOR);
    assert!(partition_offset(&image, 2).is_err());
    mkfs(&image, 8192 * SECTOR, "4M");
    apply("2", &image, &overlay, Some(1)).await.unwrap();
    assert_overlay_in(&image, 8192 * SECTOR);

    let rootfs = tmp.path().join("rootfs.ext4");
    std::fs::write(&rootfs, []).unwrap();
    mkfs(&rootfs, 0, "4M");
    apply("2", &rootfs, &overlay, None).await.unwrap();
    assert_overlay_in(&rootfs, 0);
    let err = partition_offset(&rootfs, 0).unwrap_err();
    assert!(err.message.contains("no partition table"), "{err}");
}

/// Runs `append-overlays` on image `key` as job `job_id`, the downloads (`key`, and
/// `<key>.<name>` for other overlays) and the test overlay recorded as the deploy records
/// them. Returns the result and whether `append-overlays/guest/applied` was set.
async fn append(
    job_id: &str,
    key: &str,
    params: &str,
    downloads: &[(&str, &Path)],
    overlay: &Path,
) -> (LavaResult<()>, bool) {
    let params: Mapping = serde_yaml::from_str(params).unwrap();
    let device = Device::from_yaml("constants: {failure_retry: 1}", None).unwrap();
    let job_id = format!("{}{job_id}", std::process::id());
    let mut ctx: RunContext = capturing_context(&job_id, Mapping::new(), device, 120);
    for (label, file) in downloads {
        ctx.set_data("download-action", label, "file", file.display().to_string());
    }
    ctx.set_data(
        "compress-overlay",
        "output",
        "file",
        overlay.display().to_string(),
    );
    let spec = ActionSpec::new("append-overlays", "deploy", "1.3")
        .timeout(60)
        .timeout_kind(ErrorKind::Infrastructure);
    let key = key.to_string();
    let action = StepAction::new(
        spec.name(),
        step(move |ctx| {
            let (key, params) = (key.clone(), params.clone());
            Box::pin(async move {
                lava_actions::runtime::image_overlay::append_overlays(ctx, &key, &params).await
            })
        }),
    );
    let result = spec.run(&mut ctx, Box::new(action)).await;
    let applied = lava_actions::runtime::image_overlay::overlay_applied(&ctx);
    let scratch = ctx.job.scratch_dir.clone();
    let _ = std::fs::remove_dir_all(scratch);
    (result, applied)
}

/// A tarball of `modules/extra.ko` (0600, owner 1234:5678) and a symlink to it.
fn modules_tarball(dir: &Path) -> PathBuf {
    let tree = dir.join("modules-tree");
    std::fs::create_dir_all(tree.join("modules")).unwrap();
    std::fs::write(tree.join("modules/extra.ko"), "module\n").unwrap();
    std::os::unix::fs::symlink("extra.ko", tree.join("modules/latest.ko")).unwrap();
    let status = Command::new("chmod")
        .args(["0600"])
        .arg(tree.join("modules/extra.ko"))
        .status()
        .unwrap();
    assert!(status.success());
    let tarball = dir.join("modules.tar");
    let status = Command::new("tar")
        .args(["--numeric-owner", "--owner=1234", "--group=5678", "-cf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&tree)
        .arg("modules")
        .status()
        .unwrap();
    assert!(status.success());
    tarball
}

/// An ext4 filesystem image with `/etc/issue` ("image") and `/lib`.
fn ext4_rootfs(dir: &Path, name: &str) -> PathBuf {
    let tree = dir.join(format!("{name}-tree"));
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("lib")).unwrap();
    std::fs::write(tree.join("etc/issue"), "image\n").unwrap();
    let image = dir.join(name);
    let status = Command::new(MKE2FS)
        .args(["-q", "-F", "-t", "ext4", "-E", "root_owner=0:0", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg("8M")
        .status()
        .unwrap();
    assert!(status.success());
    image
}

const EXT4_OVERLAYS: &str = "
format: ext4
overlays:
  lava: true
  modules: {url: 'file:///m.tar', format: tar, path: /lib/firmware/extra}
  issue: {url: 'file:///issue', format: file, path: /etc/issue}
";

fn assert_ext4_overlays(image: &Path, offset: u64) {
    assert_overlay_in(image, offset);
    assert_eq!(debugfs(image, offset, "cat /etc/issue"), "overlay issue\n");
    assert_eq!(
        debugfs(image, offset, "cat /lib/firmware/extra/modules/extra.ko"),
        "module\n"
    );
    let stat = debugfs(image, offset, "stat /lib/firmware/extra/modules/extra.ko");
    assert!(stat.contains("Mode:  0600"), "{stat}");
    assert!(stat.contains("User:  1234   Group:  5678"), "{stat}");
    let link = debugfs(image, offset, "stat /lib/firmware/extra/modules/latest.ko");
    assert!(
        link.contains("Type: symlink") && link.contains("Fast link dest: \"extra.ko\""),
        "{link}"
    );
    let dir = debugfs(image, offset, "stat /lib/firmware");
    assert!(dir.contains("Type: directory"), "{dir}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_overlays_writes_every_overlay_into_an_ext4_image() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let overlay = overlay(tmp.path());
    let modules = modules_tarball(tmp.path());
    let issue = tmp.path().join("issue");
    std::fs::write(&issue, "overlay issue\n").unwrap();
    let rootfs = ext4_rootfs(tmp.path(), "rootfs.ext4");
    let downloads = [
        ("rootfs", rootfs.as_path()),
        ("rootfs.modules", modules.as_path()),
        ("rootfs.issue", issue.as_path()),
    ];
    let (result, applied) = append("3", "rootfs", EXT4_OVERLAYS, &downloads, &overlay).await;
    result.unwrap();
    assert!(applied, "append-overlays/guest/applied is set");
    assert_ext4_overlays(&rootfs, 0);
    let fsck = Command::new("/usr/sbin/e2fsck")
        .args(["-fn"])
        .arg(&rootfs)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );

    // Not a filesystem: debugfs' complaint is the job's error, naming the image key.
    let junk = tmp.path().join("junk.img");
    std::fs::write(&junk, vec![0u8; 65536]).unwrap();
    let (result, _) = append("3", "rootfs", EXT4_OVERLAYS, &[("rootfs", &junk)], &overlay).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Job, "{err}");
    assert!(
        err.message.starts_with("Unable to update image rootfs in "),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_overlays_on_a_sparse_ext4_partition() {
    if !tools()
        || !require_tool(
            "simg2img",
            "android-sdk-libsparse-utils: scripts/install-test-deps.sh",
        )
        || !require_tool(
            "img2simg",
            "android-sdk-libsparse-utils: scripts/install-test-deps.sh",
        )
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let overlay = overlay(tmp.path());
    let modules = modules_tarball(tmp.path());
    let issue = tmp.path().join("issue");
    std::fs::write(&issue, "overlay issue\n").unwrap();
    let raw = tmp.path().join("disk.raw");
    mbr_image(&raw, 16384, &[(2048, 2048), (4096, 12288)]);
    mkfs(&raw, 4096 * SECTOR, "6M");
    let sparse = tmp.path().join("disk.img");
    let status = Command::new("img2simg")
        .arg(&raw)
        .arg(&sparse)
        .status()
        .unwrap();
    assert!(status.success());
    let params = format!("{EXT4_OVERLAYS}partition: 1\nsparse: true\n");
    let downloads = [
        ("rootfs", sparse.as_path()),
        ("rootfs.modules", modules.as_path()),
        ("rootfs.issue", issue.as_path()),
    ];
    let (result, _) = append("4", "rootfs", &params, &downloads, &overlay).await;
    result.unwrap();
    let magic = std::fs::read(&sparse).unwrap()[..4].to_vec();
    assert_eq!(magic, [0x3a, 0xff, 0x26, 0xed], "sparse again");
    let back = tmp.path().join("back.raw");
    let status = Command::new("simg2img")
        .arg(&sparse)
        .arg(&back)
        .status()
        .unwrap();
    assert!(status.success());
    assert_ext4_overlays(&back, 4096 * SECTOR);
    assert!(
        !tmp.path().join("disk.img.non-sparse").exists()
            && !tmp.path().join("disk.img.sparse").exists(),
        "no conversion left beside the image"
    );

    // Not a sparse image: simg2img's refusal is the job's error, and the image is kept.
    let before = std::fs::read(&raw).unwrap();
    let params = format!("{EXT4_OVERLAYS}partition: 1\nsparse: true\n");
    let downloads_raw = [
        ("rootfs", raw.as_path()),
        ("rootfs.modules", modules.as_path()),
        ("rootfs.issue", issue.as_path()),
    ];
    let (result, _) = append("4", "rootfs", &params, &downloads_raw, &overlay).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Job, "{err}");
    assert!(err.message.starts_with("simg2img failed for "), "{err}");
    assert_eq!(std::fs::read(&raw).unwrap(), before);

    let params = format!("{EXT4_OVERLAYS}partition: 5\nsparse: true\n");
    let (result, _) = append("4", "rootfs", &params, &downloads, &overlay).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Job, "{err}");
    assert!(
        err.message
            .contains("Unable to update image rootfs: Unable to find partition 5"),
        "{err}"
    );
}

/// Runs `append-overlays` on the `ramdisk` image `image` (block `params`), downloaded
/// and kept gzip as the deploy records it, with the test overlay `overlay`, as job
/// `job_id` (one per test); it must succeed. Returns the captured log.
async fn append_to_kept_gzip_ramdisk(
    job_id: &str,
    params: &str,
    image: &Path,
    overlay: &Path,
) -> Vec<String> {
    let params: Mapping = serde_yaml::from_str(params).unwrap();
    let device = Device::from_yaml("constants: {failure_retry: 1}", None).unwrap();
    let mut ctx: RunContext = capturing_context(
        &format!("{}{job_id}", std::process::id()),
        Mapping::new(),
        device,
        120,
    );
    ctx.set_data(
        "download-action",
        "ramdisk",
        "file",
        image.display().to_string(),
    );
    ctx.set_data("download-action", "ramdisk", "compression", "gz");
    ctx.set_data("download-action", "ramdisk", "decompressed", false);
    ctx.set_data(
        "compress-overlay",
        "output",
        "file",
        overlay.display().to_string(),
    );
    let spec = ActionSpec::new("append-overlays", "deploy", "1.3").timeout(60);
    let action = StepAction::new(
        spec.name(),
        step(move |ctx| {
            let params = params.clone();
            Box::pin(async move {
                lava_actions::runtime::image_overlay::append_overlays(ctx, "ramdisk", &params).await
            })
        }),
    );
    spec.run(&mut ctx, Box::new(action)).await.unwrap();
    let _ = std::fs::remove_dir_all(ctx.job.scratch_dir.clone());
    ctx.logger.captured()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_overlays_merges_into_a_tar_image_kept_compressed() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let overlay = overlay(tmp.path());
    let tree = tmp.path().join("image-tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/issue"), "image\n").unwrap();
    let image = tmp.path().join("ramdisk.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&image)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    append_to_kept_gzip_ramdisk(
        "5",
        "{format: tar, compression: gz, overlays: {lava: true}}",
        &image,
        &overlay,
    )
    .await;
    let list = Command::new("tar")
        .arg("-tzvf")
        .arg(&image)
        .output()
        .unwrap();
    assert!(list.status.success(), "still gzip: {list:?}");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("./etc/issue"), "{list}");
    assert!(list.contains("lava-5/bin/lava-test-runner"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with("lava-5/bin/lava-test-runner")),
        "{list}"
    );
}

/// `append-overlays` on a gzip `cpio.newc` ramdisk written by GNU cpio and gzip (the usual
/// tools of real ramdisks): the image kept gzip, its members and the overlay's listed by
/// Debian's cpio, and the log line's counts those of the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_overlays_appends_to_a_gzip_cpio_ramdisk() {
    if !require_tool("cpio", "apt install cpio") || !require_tool("gzip", "apt install gzip") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let overlay = overlay(tmp.path());
    let tree = tmp.path().join("ramdisk-tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::write(tree.join("etc/issue"), "image\n").unwrap();
    let busybox: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(tree.join("bin/busybox"), busybox).unwrap();
    let image = tmp.path().join("ramdisk.cpio.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . | sort | cpio -o -H newc --quiet | gzip -9 > \"$2\"")
        .arg("sh")
        .arg(&tree)
        .arg(&image)
        .status()
        .unwrap();
    assert!(status.success());
    let logged = append_to_kept_gzip_ramdisk(
        "6",
        "{format: cpio.newc, compression: gz, overlays: {lava: true}}",
        &image,
        &overlay,
    )
    .await
    .join("\n");
    let list = Command::new("sh")
        .arg("-c")
        .arg("gzip -t \"$1\" && gzip -dc \"$1\" | cpio -t --quiet")
        .arg("sh")
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "still gzip cpio: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    let names = String::from_utf8_lossy(&list.stdout);
    let names: Vec<&str> = names.lines().collect();
    for name in ["etc/issue", "bin/busybox", "lava-5/bin/lava-test-runner"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let added = names.iter().filter(|n| n.starts_with("lava-5")).count();
    let line = format!(
        "{} rewritten with {} members ({added} added by the overlays)",
        image.display(),
        names.len()
    );
    assert!(logged.contains(&line), "{line} in {logged}");
}
