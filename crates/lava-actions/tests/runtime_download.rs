//! Image downloads and the ramdisk overlay as actions run them: namespace data, action
//! results, LAVA's log records and error kinds. The transfers, codecs and cpio surgery
//! themselves are tested in lava-artefacts.

use lava_actions::runtime::image_download::{Checksums, download_image, stream_download};
use lava_artefacts::newc::{read_newc, write_newc};
use lava_artefacts::ramdisk::repack_with_overlay;
use lava_pipeline::{Device, ErrorKind, JobLogger, LavaResult, RunContext};
use lava_test_support::artefacts::{compress, cpio_entry, gunzip, sample};
use lava_test_support::runtime::{ActionSpec, StepAction, StepFn, capturing_context, step};
use serde_yaml::{Mapping, Value};
use sha2::Digest;
use std::path::Path;

fn context() -> RunContext {
    let device = Device::from_yaml("constants: {failure_retry: 1}", None).unwrap();
    capturing_context("1", Mapping::new(), device, 600)
}

/// Runs `f` as action `http-download` (level 1.1) and returns its outcome.
async fn run_step(ctx: &mut RunContext, f: StepFn) -> LavaResult<()> {
    let spec = ActionSpec::new("http-download", "deploy", "1.1");
    spec.run(ctx, Box::new(StepAction::new(spec.name(), f)))
        .await
}

fn gzip(data: &[u8]) -> Vec<u8> {
    compress(lava_artefacts::Compression::Gz, data)
}

fn sha256(data: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(data))
}

fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| d.count() == 0)
        .unwrap_or(true)
}

fn params(url: &str, extra: &[(&str, &str)]) -> Mapping {
    let mut m = Mapping::new();
    m.insert("url".into(), url.into());
    for (k, v) in extra {
        m.insert((*k).into(), (*v).into());
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_url_download_records_data_and_results() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample(3 * 1024 * 1024 + 17);
    let src = tmp.path().join("vmlinuz");
    std::fs::write(&src, &data).unwrap();
    let out = tmp.path().join("out/kernel");
    let url = format!("file://{}", src.display());
    let p = params(
        &url,
        &[
            ("sha256sum", &sha256(&data)),
            ("image_arg", "-kernel {kernel}"),
        ],
    );
    let mut ctx = context();
    let out2 = out.clone();
    let r = run_step(
        &mut ctx,
        step(move |ctx| {
            let p = p.clone();
            let out = out2.clone();
            Box::pin(async move { download_image(ctx, "kernel", &out, &p).await.map(|_| ()) })
        }),
    )
    .await;
    r.unwrap();
    let file = out.join("vmlinuz");
    assert_eq!(std::fs::read(&file).unwrap(), data);
    assert_eq!(
        ctx.data
            .get_str("common", "download-action", "kernel", "file"),
        Some(file.to_str().unwrap())
    );
    assert_eq!(
        ctx.data
            .get_str("common", "download-action", "kernel", "image_arg"),
        Some("-kernel {kernel}")
    );
    assert_eq!(
        ctx.data
            .get_str("common", "download-action", "kernel", "sha256"),
        Some(sha256(&data).as_str())
    );
    let log = ctx.logger.captured().join("\n");
    assert!(log.contains(r#""label": "kernel""#), "{log}");
    assert!(log.contains(&format!("{}", data.len())), "{log}");
    assert!(
        log.contains(&format!(r#""sha256sum": "{}""#, sha256(&data))),
        "{log}"
    );
    assert!(log.contains("MB downloaded in"), "{log}");
    // Only the final file, no temporary left over.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_errors_keep_lava_kinds_and_records() {
    let data = sample(500_000);
    let z = gzip(&data);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let logger = JobLogger::capturing();
    std::fs::write(src.join("a.img.gz"), &z).unwrap();
    let url = format!("file://{}/a.img.gz", src.display());
    let gz = Some(lava_actions::runtime::image_download::Compression::Gz);

    // A checksum mismatch: JobError, LAVA's records, nothing left behind.
    let bad = Checksums {
        sha256: Some("00".repeat(32)),
        ..Default::default()
    };
    let err = stream_download(
        &logger,
        &url,
        &Mapping::new(),
        gz,
        &out.join("a.img"),
        &bad,
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Job, "{err}");
    assert_eq!(err.message, format!("sha256 for '{url}' does not match."));
    let log = logger.captured().join("\n");
    assert!(log.contains("sha256 sum for"), "{log}");
    assert!(log.contains("expected: 0000"), "{log}");
    assert!(log.contains("MB downloaded in"), "{log}");
    assert!(dir_is_empty(&out));

    // A truncated archive, and a gzip file declared as xz: JobErrors.
    std::fs::write(src.join("cut.gz"), &z[..z.len() / 2]).unwrap();
    let cut = format!("file://{}/cut.gz", src.display());
    let err = stream_download(
        &logger,
        &cut,
        &Mapping::new(),
        gz,
        &out.join("cut"),
        &Checksums::default(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Job, "{err}");
    let xz = Some(lava_actions::runtime::image_download::Compression::Xz);
    let err = stream_download(
        &logger,
        &url,
        &Mapping::new(),
        xz,
        &out.join("wrong"),
        &Checksums::default(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Job, "{err}");
    assert!(
        logger
            .captured()
            .join("\n")
            .contains("Make sure the 'compression'")
    );
    assert!(dir_is_empty(&out));

    // A missing source file, and a refused HTTP connection: InfrastructureErrors.
    let missing = format!("file://{}/nothing", src.display());
    let err = stream_download(
        &logger,
        &missing,
        &Mapping::new(),
        None,
        &out.join("nothing"),
        &Checksums::default(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Infrastructure, "{err}");
    // Nothing listens on port 9 of the loopback.
    let refused = "http://127.0.0.1:9/img";
    let err = stream_download(
        &logger,
        refused,
        &Mapping::new(),
        None,
        &out.join("img"),
        &Checksums::default(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Infrastructure, "{err}");
    assert!(
        logger
            .captured()
            .join("\n")
            .contains("Resource not available: "),
        "{:?}",
        logger.captured()
    );
    assert!(dir_is_empty(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramdisk_key_is_kept_compressed() {
    let tmp = tempfile::tempdir().unwrap();
    let z = gzip(b"cpio");
    let src = tmp.path().join("initrd.cpio.gz");
    std::fs::write(&src, &z).unwrap();
    let p = params(
        &format!("file://{}", src.display()),
        &[("compression", "gz")],
    );
    let mut ctx = context();
    let out = tmp.path().join("out");
    let o = out.clone();
    run_step(
        &mut ctx,
        step(move |ctx| {
            let p = p.clone();
            let o = o.clone();
            Box::pin(async move { download_image(ctx, "ramdisk", &o, &p).await.map(|_| ()) })
        }),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(out.join("initrd.cpio.gz")).unwrap(), z);
    assert_eq!(
        ctx.data
            .get("common", "download-action", "ramdisk", "decompressed"),
        Some(&Value::Bool(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_is_merged_into_a_gzip_ramdisk() {
    let tmp = tempfile::tempdir().unwrap();
    let entries = vec![
        cpio_entry(".", 0o40755, 1, b""),
        cpio_entry("bin", 0o40755, 2, b""),
        cpio_entry("bin/sh", 0o100755, 3, b"shell"),
        cpio_entry("init", 0o100755, 4, b"old init"),
    ];
    let ramdisk = tmp.path().join("initrd.cpio.gz");
    std::fs::write(&ramdisk, gzip(&write_newc(&entries))).unwrap();
    // An overlay tree as lava-shell builds it: lava-1/bin/lava-test-runner.
    let location = tmp.path().join("overlay");
    std::fs::create_dir_all(location.join("lava-1/bin")).unwrap();
    let runner = location.join("lava-1/bin/lava-test-runner");
    std::fs::write(&runner, b"#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tarball = tmp.path().join("overlay.tar.gz");
    lava_shell::tarball::build_tarball(&location, "/lava-1", &tarball).unwrap();

    let output = tmp.path().join("ramdisk.cpio.gz");
    let done = repack_with_overlay(ramdisk, Some(tarball.clone()), output.clone())
        .await
        .unwrap();
    assert!(done.added >= 3, "{done:?}");
    // Check with gzip -dc + our reader.
    let back = read_newc(&gunzip(&output)).unwrap();
    let names: Vec<&str> = back.iter().map(|e| e.name.as_str()).collect();
    assert!(names.contains(&"lava-1/bin/lava-test-runner"), "{names:?}");
    assert!(names.contains(&"lava-1/bin"), "{names:?}");
    assert!(names.contains(&"bin/sh"));
    let runner = back
        .iter()
        .find(|e| e.name == "lava-1/bin/lava-test-runner")
        .unwrap();
    assert_eq!(runner.data, b"#!/bin/sh\n");
    assert_eq!(runner.mode & 0o777, 0o755);
    let mut inos: Vec<u32> = back.iter().map(|e| e.ino).collect();
    inos.sort();
    inos.dedup();
    assert_eq!(inos.len(), back.len(), "inode numbers stay unique");

    // Replacement of same-path files and refusal of traversals by merge_overlay itself are
    // lava-artefacts' tests (tests/ramdisk.rs).
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop; `None` (skipped,
/// or failed under CI) when this process may not mount.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => Some(SmallDisk { dir }),
            _ => {
                lava_test_support::ci::skip_or_fail(
                    "cannot mount a tmpfs here (needs root and mount permission): \
                     the full-disk download test is skipped",
                );
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Chaos: the disk fills during a download. The job gets an InfrastructureError naming
/// the file, and the partial file is gone (the space is given back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_a_download_is_an_infrastructure_error_and_leaves_nothing() {
    let Some(disk) = SmallDisk::mount("1m") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = sample(4 * 1024 * 1024);
    for (name, body, compression) in [
        ("vmlinuz", data.clone(), None),
        ("rootfs.img.gz", gzip(&data), Some("gz")),
    ] {
        let src = tmp.path().join(name);
        std::fs::write(&src, &body).unwrap();
        let url = format!("file://{}", src.display());
        let extra: Vec<(&str, &str)> = compression.iter().map(|c| ("compression", *c)).collect();
        let p = params(&url, &extra);
        let out = disk.dir.path().join("kernel");
        let mut ctx = context();
        let out2 = out.clone();
        let error = run_step(
            &mut ctx,
            step(move |ctx| {
                let p = p.clone();
                let out = out2.clone();
                Box::pin(async move { download_image(ctx, "kernel", &out, &p).await.map(|_| ()) })
            }),
        )
        .await
        .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Infrastructure, "{error}");
        let message = error.to_string();
        let expected_file = out.join(name.trim_end_matches(".gz"));
        assert!(
            message.contains(&expected_file.display().to_string()),
            "the error names the file: {message}"
        );
        assert!(message.contains("No space left on device"), "{message}");
        assert!(
            dir_is_empty(&out),
            "partial file left: {:?}",
            std::fs::read_dir(&out).map(|d| d.count())
        );
    }
}
