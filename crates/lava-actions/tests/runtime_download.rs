//! Streaming downloads (file:// and a local HTTP server), decompression, checksums and
//! the ramdisk cpio surgery.

use lava_actions::runtime::download::{Compression, Expected, download_image, stream_download};
use lava_actions::runtime::ramdisk::{
    CpioEntry, checked_member, merge_overlay, read_newc, read_tar, repack_with_overlay, write_newc,
};
use lava_pipeline::action::{ActionMeta, ActionNode};
use lava_pipeline::run::run_node;
use lava_pipeline::{
    Action, Device, ErrorKind, Job, JobLogger, LavaResult, Pipeline, RunContext, async_trait,
};
use serde_yaml::{Mapping, Value};
use sha2::Digest;
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type BoxFut<'a> = Pin<Box<dyn Future<Output = LavaResult<()>> + Send + 'a>>;
type StepFn = Box<dyn for<'a> Fn(&'a mut RunContext) -> BoxFut<'a> + Send + Sync>;

fn step<F>(f: F) -> StepFn
where
    F: for<'a> Fn(&'a mut RunContext) -> BoxFut<'a> + Send + Sync + 'static,
{
    Box::new(f)
}

struct Step(StepFn);

#[async_trait]
impl Action for Step {
    lava_pipeline::action_identity!("http-download", "Step", "test step", "test step");
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        (self.0)(ctx).await
    }
}

fn context() -> RunContext {
    let device = Device::from_yaml("constants: {failure_retry: 1}", None).unwrap();
    let job = Job::new("1", Mapping::new(), device, 600);
    RunContext::new(Arc::new(job), JobLogger::capturing())
}

/// Runs `f` as action `http-download` (level 1.1) and returns its outcome.
async fn run_step(ctx: &mut RunContext, f: StepFn) -> LavaResult<()> {
    let meta = ActionMeta {
        name: "http-download".into(),
        class: "Step".into(),
        description: String::new(),
        summary: String::new(),
        section: "deploy".into(),
        level: "1.1".into(),
        timeout: 60,
        connection_timeout: 10,
        max_retries: 1,
        retry_interval: 1,
        repeat: false,
        timeout_kind: ErrorKind::Infrastructure,
        parameters: Arc::new(Mapping::new()),
        url: None,
    };
    let mut node = ActionNode::new(meta, Box::new(Step(f)), Pipeline::default());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    run_node(&mut node, ctx, deadline, false).await
}

async fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::write::{BzEncoder, GzipEncoder, XzEncoder, ZstdEncoder};
    macro_rules! enc {
        ($e:ident) => {{
            let mut e = $e::new(Vec::new());
            e.write_all(data).await.unwrap();
            e.shutdown().await.unwrap();
            e.into_inner()
        }};
    }
    match c {
        Compression::Gz => enc!(GzipEncoder),
        Compression::Xz => enc!(XzEncoder),
        Compression::Zstd => enc!(ZstdEncoder),
        Compression::Bz2 => enc!(BzEncoder),
    }
}

fn sample(len: usize) -> Vec<u8> {
    // Compressible but not trivial.
    let mut x: u32 = 12345;
    (0..len)
        .map(|i| {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            if i % 7 == 0 {
                (x >> 16) as u8
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(data))
}

/// A tiny HTTP/1.1 server on 127.0.0.1: `routes` map paths to bodies; `/short/<p>`
/// announces the full length of `<p>` but sends half and closes; anything else is 404.
async fn serve(routes: HashMap<String, Vec<u8>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req);
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                if let Some(name) = path.strip_prefix("/short")
                    && let Some(body) = routes.get(name)
                {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&body[..body.len() / 2]).await;
                    return;
                }
                match routes.get(&path) {
                    Some(body) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                        let _ = sock.write_all(body).await;
                    }
                    None => {
                        let _ = sock
                            .write_all(
                                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            )
                            .await;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
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
async fn every_compression_over_http_and_file() {
    let data = sample(2 * 1024 * 1024 + 5);
    let mut routes = HashMap::new();
    let kinds = [
        (Compression::Gz, "gz"),
        (Compression::Xz, "xz"),
        (Compression::Zstd, "zst"),
        (Compression::Bz2, "bz2"),
    ];
    let mut compressed = Vec::new();
    for (c, ext) in kinds {
        let z = compress(c, &data).await;
        routes.insert(format!("/rootfs.img.{ext}"), z.clone());
        compressed.push((c, ext, z));
    }
    let base = serve(routes).await;
    let tmp = tempfile::tempdir().unwrap();
    let logger = JobLogger::capturing();
    for (c, ext, z) in &compressed {
        let target = tmp.path().join(format!("http-{ext}/rootfs.img"));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let expected = Expected {
            sha256: Some(sha256(z)),
            ..Default::default()
        };
        let url = format!("{base}/rootfs.img.{ext}");
        let done = stream_download(
            &logger,
            &url,
            &Mapping::new(),
            Some(*c),
            &target,
            &expected,
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert_eq!(done.size, z.len() as u64, "{ext}: size is of the download");
        assert_eq!(done.written, data.len() as u64);
        assert_eq!(std::fs::read(&target).unwrap(), data, "{ext}");
        // file:// through the same path.
        let src = tmp.path().join(format!("src.{ext}"));
        std::fs::write(&src, z).unwrap();
        let target = tmp.path().join(format!("file-{ext}/rootfs.img"));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let url = format!("file://{}", src.display());
        stream_download(
            &logger,
            &url,
            &Mapping::new(),
            Some(*c),
            &target,
            &expected,
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), data, "file {ext}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_match_and_mismatch_leaves_nothing() {
    let data = sample(100_000);
    let z = compress(Compression::Xz, &data).await;
    let base = serve(HashMap::from([("/a.img.xz".to_string(), z.clone())])).await;
    let url = format!("{base}/a.img.xz");
    let tmp = tempfile::tempdir().unwrap();
    let logger = JobLogger::capturing();
    let good = Expected {
        md5: Some(format!("{:x}", md5::Md5::digest(&z))),
        sha256: Some(sha256(&z)),
        sha512: Some(format!("{:x}", sha2::Sha512::digest(&z))),
    };
    let target = tmp.path().join("ok/a.img");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let done = stream_download(
        &logger,
        &url,
        &Mapping::new(),
        Some(Compression::Xz),
        &target,
        &good,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(done.md5, good.md5);
    assert_eq!(done.sha512, good.sha512);

    for (name, bad) in [
        (
            "sha256",
            Expected {
                sha256: Some("00".repeat(32)),
                ..Default::default()
            },
        ),
        (
            "md5",
            Expected {
                md5: Some("0".repeat(32)),
                ..Default::default()
            },
        ),
        (
            "sha512",
            Expected {
                sha512: Some("0".repeat(128)),
                ..Default::default()
            },
        ),
    ] {
        let dir = tmp.path().join(format!("bad-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let err = stream_download(
            &logger,
            &url,
            &Mapping::new(),
            Some(Compression::Xz),
            &dir.join("a.img"),
            &bad,
            |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Job, "{name}: {err}");
        assert_eq!(err.message, format!("{name} for '{url}' does not match."));
        assert!(dir_is_empty(&dir), "{name}: a file was left behind");
    }
    let log = logger.captured().join("\n");
    assert!(log.contains("sha256 sum for"), "{log}");
    assert!(log.contains("expected: 0000"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_infrastructure_errors() {
    let data = sample(200_000);
    let base = serve(HashMap::from([("/img".to_string(), data)])).await;
    let tmp = tempfile::tempdir().unwrap();
    let logger = JobLogger::capturing();
    let none = Expected::default();

    let url = format!("{base}/missing.img");
    let err = stream_download(
        &logger,
        &url,
        &Mapping::new(),
        None,
        &tmp.path().join("missing.img"),
        &none,
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Infrastructure);
    assert_eq!(err.message, format!("Unable to download '{url}'"));
    assert!(logger.captured().join("\n").contains("(404)"));

    let url = format!("{base}/short/img");
    let err = stream_download(
        &logger,
        &url,
        &Mapping::new(),
        None,
        &tmp.path().join("img"),
        &none,
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Infrastructure, "{err}");

    // Nothing listens on port 9 of the loopback.
    let url = "http://127.0.0.1:9/img".to_string();
    let err = stream_download(
        &logger,
        &url,
        &Mapping::new(),
        None,
        &tmp.path().join("img"),
        &none,
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Infrastructure);
    assert!(
        err.message
            .starts_with(&format!("Unable to download '{url}': ")),
        "{err}"
    );
    assert!(dir_is_empty(tmp.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_mislabelled_archive_is_a_job_error() {
    let data = sample(500_000);
    let z = compress(Compression::Gz, &data).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let logger = JobLogger::capturing();
    std::fs::write(src.join("cut.gz"), &z[..z.len() / 2]).unwrap();
    let url = format!("file://{}/cut.gz", src.display());
    let err = stream_download(
        &logger,
        &url,
        &Mapping::new(),
        Some(Compression::Gz),
        &out.join("cut"),
        &Expected::default(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Job, "{err}");
    assert!(dir_is_empty(&out));

    // A gzip file declared as xz.
    std::fs::write(src.join("wrong.xz"), &z).unwrap();
    let url = format!("file://{}/wrong.xz", src.display());
    let err = stream_download(
        &logger,
        &url,
        &Mapping::new(),
        Some(Compression::Xz),
        &out.join("wrong"),
        &Expected::default(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Job, "{err}");
    assert!(dir_is_empty(&out));
    assert!(
        logger
            .captured()
            .join("\n")
            .contains("Make sure the 'compression'")
    );

    // A missing source file.
    let url = format!("file://{}/nothing", src.display());
    let err = stream_download(
        &logger,
        &url,
        &Mapping::new(),
        None,
        &out.join("nothing"),
        &Expected::default(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Infrastructure);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramdisk_key_is_kept_compressed() {
    let tmp = tempfile::tempdir().unwrap();
    let z = compress(Compression::Gz, b"cpio").await;
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

fn entry(name: &str, mode: u32, ino: u32, data: &[u8]) -> CpioEntry {
    CpioEntry {
        name: name.into(),
        ino,
        mode,
        uid: 0,
        gid: 0,
        nlink: 1,
        mtime: 1_700_000_000,
        devmajor: 0,
        devminor: 0,
        rdevmajor: 0,
        rdevminor: 0,
        data: data.to_vec(),
    }
}

#[test]
fn cpio_round_trip_and_traversal_refusal() {
    let entries = vec![
        entry(".", 0o40755, 1, b""),
        entry("bin", 0o40755, 2, b""),
        entry("bin/busybox", 0o100755, 3, &sample(1001)),
        entry("bin/sh", 0o120777, 4, b"busybox"),
        entry("init", 0o100755, 5, b"#!/bin/sh\nexec sh\n"),
    ];
    let bytes = write_newc(&entries);
    assert_eq!(bytes.len() % 512, 0);
    let back = read_newc(&bytes).unwrap();
    assert_eq!(back, entries);
    assert_eq!(write_newc(&back), bytes);
    // Two archives back to back (as in initramfs images with early firmware).
    let mut two = bytes.clone();
    two.extend(write_newc(&[entry("extra", 0o100644, 9, b"x")]));
    assert_eq!(read_newc(&two).unwrap().len(), 6);
    // Interoperates with the system cpio when present.
    if let Ok(out) = std::process::Command::new("cpio").arg("--version").output()
        && out.status.success()
    {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.cpio"), &bytes).unwrap();
        let list = std::process::Command::new("sh")
            .arg("-c")
            .arg("cpio -it < a.cpio 2>/dev/null")
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&list.stdout);
        assert!(names.contains("bin/busybox"), "{names}");
    }

    for evil in ["../etc/passwd", "/etc/passwd", "a/../../b"] {
        let bytes = write_newc(&[entry(evil, 0o100644, 1, b"x")]);
        let err = read_newc(&bytes).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Job, "{evil}");
        assert!(checked_member(evil).is_err());
    }
    assert_eq!(checked_member("./a//b/").unwrap(), "a/b");
    // Truncated archive.
    assert!(read_newc(&bytes[..60]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_is_merged_into_a_gzip_ramdisk() {
    let tmp = tempfile::tempdir().unwrap();
    let entries = vec![
        entry(".", 0o40755, 1, b""),
        entry("bin", 0o40755, 2, b""),
        entry("bin/sh", 0o100755, 3, b"shell"),
        entry("init", 0o100755, 4, b"old init"),
    ];
    let ramdisk = tmp.path().join("initrd.cpio.gz");
    std::fs::write(
        &ramdisk,
        compress(Compression::Gz, &write_newc(&entries)).await,
    )
    .unwrap();
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

    // The overlay replaces a file of the same path.
    let mut merged = entries.clone();
    let mut members = read_tar(&gunzip(&tarball)).unwrap();
    members.push(lava_actions::runtime::ramdisk::TarMember {
        name: "init".into(),
        mode: 0o100755,
        data: b"new init".to_vec(),
    });
    merge_overlay(&mut merged, &members).unwrap();
    assert_eq!(
        merged.iter().find(|e| e.name == "init").unwrap().data,
        b"new init"
    );

    // A traversal in the overlay is refused.
    let evil = vec![lava_actions::runtime::ramdisk::TarMember {
        name: "../../etc/passwd".into(),
        mode: 0o100644,
        data: b"x".to_vec(),
    }];
    assert_eq!(
        merge_overlay(&mut merged, &evil).unwrap_err().kind,
        ErrorKind::Job
    );
}

fn gunzip(path: &Path) -> Vec<u8> {
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repack_without_overlay_keeps_every_byte_and_archive_boundary() {
    let tmp = tempfile::tempdir().unwrap();
    // An early-firmware archive, then the main one; the main one ends its members on
    // every alignment (0..3 bytes of padding) and has a member larger than any buffer.
    let early = write_newc(&[
        entry("kernel", 0o40755, 1, b""),
        entry("kernel/x86/microcode.bin", 0o100644, 2, &sample(333)),
    ]);
    let main = write_newc(&[
        entry(".", 0o40755, 1, b""),
        entry("a", 0o100644, 2, b"1"),
        entry("bb", 0o100644, 3, b"22"),
        entry("ccc", 0o100644, 4, b"333"),
        entry("dddd", 0o100644, 5, b"4444"),
        entry("big", 0o100755, 6, &sample(300_000)),
        entry("link", 0o120777, 7, b"big"),
    ]);
    let mut cpio = early.clone();
    cpio.extend(&main);
    for (name, compression) in [
        ("initrd.cpio.gz", Some(Compression::Gz)),
        ("initrd.cpio.xz", Some(Compression::Xz)),
        ("initrd.cpio.zst", Some(Compression::Zstd)),
        ("initrd.cpio.bz2", Some(Compression::Bz2)),
        ("initrd.cpio", None),
    ] {
        let ramdisk = tmp.path().join(name);
        let bytes = match compression {
            Some(c) => compress(c, &cpio).await,
            None => cpio.clone(),
        };
        std::fs::write(&ramdisk, bytes).unwrap();
        let output = tmp.path().join("out.cpio.gz");
        let done = repack_with_overlay(ramdisk, None, output.clone())
            .await
            .unwrap();
        assert_eq!((done.entries, done.added), (9, 0), "{name}");
        assert_eq!(gunzip(&output), cpio, "{name}: byte-identical");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_repack_merges_the_overlay_into_the_last_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let early = write_newc(&[entry("early", 0o100644, 1, b"fw")]);
    let main = write_newc(&[
        entry(".", 0o40755, 1, b""),
        entry("./bin", 0o40700, 2, b""),
        entry("./init", 0o100755, 3, b"old init"),
        entry("./etc", 0o40755, 4, b""),
    ]);
    let mut cpio = early.clone();
    cpio.extend(&main);
    let ramdisk = tmp.path().join("initrd.cpio.gz");
    std::fs::write(&ramdisk, compress(Compression::Gz, &cpio).await).unwrap();
    let location = tmp.path().join("overlay");
    std::fs::create_dir_all(location.join("lava-7/bin")).unwrap();
    std::fs::write(location.join("lava-7/bin/lava-test-runner"), b"#!/bin/sh\n").unwrap();
    let tarball = tmp.path().join("overlay.tar.gz");
    lava_shell::tarball::build_tarball(&location, "/lava-7", &tarball).unwrap();
    // The tarball as lava-shell writes it, plus a replacement /init and a /bin entry.
    let mut members = read_tar(&gunzip(&tarball)).unwrap();
    members.push(lava_actions::runtime::ramdisk::TarMember {
        name: "bin".into(),
        mode: 0o40755,
        data: vec![],
    });
    members.push(lava_actions::runtime::ramdisk::TarMember {
        name: "init".into(),
        mode: 0o100755,
        data: b"new init".to_vec(),
    });
    let mut expected = read_newc(&cpio).unwrap();
    merge_overlay(&mut expected, &members).unwrap();
    // Write those members back as a plain tar with the system's tar, as the overlay.
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("lava-7/bin")).unwrap();
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::write(tree.join("lava-7/bin/lava-test-runner"), b"#!/bin/sh\n").unwrap();
    std::fs::write(tree.join("init"), b"new init").unwrap();
    let plain = tmp.path().join("overlay.tar");
    let tar = std::process::Command::new("tar")
        .args([
            "-cf",
            plain.to_str().unwrap(),
            "-C",
            tree.to_str().unwrap(),
            "lava-7",
            "bin",
            "init",
        ])
        .status()
        .unwrap();
    assert!(tar.success());

    let output = tmp.path().join("ramdisk.cpio.gz");
    let done = repack_with_overlay(ramdisk, Some(plain), output.clone())
        .await
        .unwrap();
    let back = gunzip(&output);
    // The early archive is untouched and still ends with its own trailer.
    assert_eq!(&back[..early.len()], &early[..]);
    let merged = read_newc(&back).unwrap();
    let names: Vec<&str> = merged.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "early",
            ".",
            "./bin",
            "./etc",
            "./lava-7",
            "./lava-7/bin",
            "./lava-7/bin/lava-test-runner",
            "./init"
        ],
        "replaced /init moves to the end, /bin keeps the ramdisk's entry"
    );
    assert_eq!(merged[2].mode, 0o40700);
    assert_eq!(merged[7].data, b"new init");
    assert_eq!(merged.len(), done.entries);
    assert_eq!(done.added, 3);
    // The in-memory merge has the same names and contents.
    let names_in_memory: Vec<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names_in_memory, names);
    let mut inos: Vec<u32> = merged[1..].iter().map(|e| e.ino).collect();
    inos.sort();
    inos.dedup();
    assert_eq!(
        inos.len(),
        merged.len() - 1,
        "inode numbers unique in the main archive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_ramdisk_fails_as_a_job_error_and_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cpio = write_newc(&[
        entry(".", 0o40755, 1, b""),
        entry("big", 0o100644, 2, &sample(200_000)),
    ]);
    let gz = compress(Compression::Gz, &cpio).await;
    let evil = write_newc(&[entry("../escape", 0o100644, 1, b"x")]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated-gzip", gz[..gz.len() / 2].to_vec(), ""),
        ("truncated-cpio", compress(Compression::Gz, &cpio[..100_000]).await, "Truncated cpio archive"),
        ("not-cpio", compress(Compression::Gz, b"hello, not an archive at all, sorry............................................................................................").await, "Not a cpio newc archive"),
        ("traversal", compress(Compression::Gz, &evil).await, "outside the archive root"),
    ];
    for (name, bytes, message) in cases {
        let ramdisk = tmp.path().join(name);
        std::fs::write(&ramdisk, bytes).unwrap();
        let output = tmp.path().join(format!("{name}.out.gz"));
        let err = repack_with_overlay(ramdisk, None, output.clone())
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Job, "{name}: {err:?}");
        assert!(err.message.contains(message), "{name}: {}", err.message);
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(name) && n != name)
            .collect();
        assert!(left.is_empty(), "{name}: left behind {left:?}");
    }
}
