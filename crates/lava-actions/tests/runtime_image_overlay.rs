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
