//! Streaming downloads over file:// and a local HTTP server: every compression,
//! checksums, errors and their faults, nothing left behind on failure.

use lava_artefacts::{
    ArtefactError, Checksums, Compression, DownloadEvent, DownloadRequest, Fault, download,
};
use md5::Digest as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use lava_test_support::artefacts::{compress, sample};

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

fn request(url: &str, compression: Option<Compression>, target: PathBuf) -> DownloadRequest {
    DownloadRequest {
        url: url.to_string(),
        headers: Vec::new(),
        compression,
        target,
        expected: Checksums::default(),
    }
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
        let z = compress(c, &data);
        routes.insert(format!("/rootfs.img.{ext}"), z.clone());
        compressed.push((c, ext, z));
    }
    let base = serve(routes).await;
    let tmp = tempfile::tempdir().unwrap();
    for (c, ext, z) in &compressed {
        let target = tmp.path().join(format!("http-{ext}/rootfs.img"));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let mut req = request(
            &format!("{base}/rootfs.img.{ext}"),
            Some(*c),
            target.clone(),
        );
        req.expected.sha256 = Some(sha256(z));
        let mut events = Vec::new();
        let done = download(&req, |e| {
            if !matches!(e, DownloadEvent::Progress { .. }) {
                events.push(format!("{e:?}"));
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert_eq!(done.size, z.len() as u64, "{ext}: size is of the download");
        assert_eq!(done.written, data.len() as u64);
        assert_eq!(done.sha256, sha256(z));
        assert_eq!(std::fs::read(&target).unwrap(), data, "{ext}");
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(events[0].starts_with("Starting"), "{events:?}");
        assert_eq!(events[1], format!("Opened {{ total: Some({}) }}", z.len()));
        assert!(events[2].contains("complete: true"), "{events:?}");
        // file:// through the same path.
        let src = tmp.path().join(format!("src.{ext}"));
        std::fs::write(&src, z).unwrap();
        let target = tmp.path().join(format!("file-{ext}/rootfs.img"));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let mut req = request(
            &format!("file://{}", src.display()),
            Some(*c),
            target.clone(),
        );
        req.expected.sha256 = Some(sha256(z));
        download(&req, |_| {}).await.unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), data, "file {ext}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_file_kept_as_it_is_is_copied_whole_and_private() {
    use std::os::unix::fs::PermissionsExt;
    // Several chunks and a short last one; an empty file too.
    for len in [5 * 64 * 1024 + 17, 0] {
        let data = sample(len);
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("vmlinux");
        std::fs::write(&src, &data).unwrap();
        let target = tmp.path().join("out/vmlinux");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let mut req = request(&format!("file://{}", src.display()), None, target.clone());
        req.expected.sha256 = Some(sha256(&data));
        let mut last_progress = 0;
        let done = download(&req, |e| {
            if let DownloadEvent::Progress { downloaded } = e {
                last_progress = downloaded;
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{len} bytes: {e}"));
        assert_eq!((done.size, done.written), (len as u64, len as u64));
        assert_eq!(done.sha256, sha256(&data));
        assert_eq!(last_progress, len as u64);
        assert!(
            std::fs::read(&target).unwrap() == data,
            "{len} bytes copied"
        );
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["vmlinux"], "no partial file left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_match_and_mismatch_leaves_nothing() {
    let data = sample(100_000);
    let z = compress(Compression::Xz, &data);
    let base = serve(HashMap::from([("/a.img.xz".to_string(), z.clone())])).await;
    let url = format!("{base}/a.img.xz");
    let tmp = tempfile::tempdir().unwrap();
    let good = Checksums {
        md5: Some(format!("{:x}", md5::Md5::digest(&z))),
        sha256: Some(sha256(&z)),
        sha512: Some(format!("{:x}", sha2::Sha512::digest(&z))),
    };
    let target = tmp.path().join("ok/a.img");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let mut req = request(&url, Some(Compression::Xz), target);
    req.expected = good.clone();
    let done = download(&req, |_| {}).await.unwrap();
    assert_eq!(done.md5, good.md5);
    assert_eq!(done.sha512, good.sha512);

    for (name, bad) in [
        (
            "sha256",
            Checksums {
                sha256: Some("00".repeat(32)),
                ..Default::default()
            },
        ),
        (
            "md5",
            Checksums {
                md5: Some("0".repeat(32)),
                ..Default::default()
            },
        ),
        (
            "sha512",
            Checksums {
                sha512: Some("0".repeat(128)),
                ..Default::default()
            },
        ),
    ] {
        let dir = tmp.path().join(format!("bad-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut req = request(&url, Some(Compression::Xz), dir.join("a.img"));
        req.expected = bad;
        let err = download(&req, |_| {}).await.unwrap_err();
        assert_eq!(err.fault(), Fault::Input, "{name}: {err}");
        assert_eq!(
            err.to_string(),
            format!("{name} for '{url}' does not match.")
        );
        let ArtefactError::ChecksumMismatch { mismatch, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(mismatch.algorithm.to_string(), name);
        assert!(dir_is_empty(&dir), "{name}: a file was left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_environment_faults() {
    let data = sample(200_000);
    let base = serve(HashMap::from([("/img".to_string(), data)])).await;
    let tmp = tempfile::tempdir().unwrap();

    let url = format!("{base}/missing.img");
    let err = download(&request(&url, None, tmp.path().join("missing.img")), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Environment);
    assert_eq!(err.to_string(), format!("Unable to download '{url}'"));
    assert!(
        matches!(err, ArtefactError::HttpStatus { status: 404, .. }),
        "{err:?}"
    );

    // The body breaks off after half of the announced length.
    let url = format!("{base}/short/img");
    let mut complete = None;
    let err = download(&request(&url, None, tmp.path().join("img")), |e| {
        if let DownloadEvent::Transferred { complete: c, .. } = e {
            complete = Some(c);
        }
    })
    .await
    .unwrap_err();
    assert_eq!(err.fault(), Fault::Environment, "{err}");
    // Either the body read fails, or it ends early and the size check catches it.
    match &err {
        ArtefactError::Transfer { .. } => assert_eq!(complete, Some(false)),
        ArtefactError::SizeMismatch { .. } => assert_eq!(complete, Some(true)),
        other => panic!("{other:?}"),
    }

    // Nothing listens on port 9 of the loopback.
    let url = "http://127.0.0.1:9/img".to_string();
    let err = download(&request(&url, None, tmp.path().join("img")), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Environment);
    assert!(
        err.to_string()
            .starts_with(&format!("Unable to download '{url}': ")),
        "{err}"
    );
    assert!(dir_is_empty(tmp.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_mislabelled_archive_is_an_input_fault() {
    let data = sample(500_000);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for c in [
        Compression::Gz,
        Compression::Xz,
        Compression::Zstd,
        Compression::Bz2,
    ] {
        let z = compress(c, &data);
        std::fs::write(src.join("cut"), &z[..z.len() / 2]).unwrap();
        let url = format!("file://{}/cut", src.display());
        let err = download(&request(&url, Some(c), out.join("cut")), |_| {})
            .await
            .unwrap_err();
        assert_eq!(err.fault(), Fault::Input, "{c}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("Decompression of '{url}' ({c}) failed: ")),
            "{err}"
        );
        assert!(dir_is_empty(&out), "{c}");
    }

    // A gzip file declared as xz.
    std::fs::write(src.join("wrong.xz"), compress(Compression::Gz, &data)).unwrap();
    let url = format!("file://{}/wrong.xz", src.display());
    let err = download(
        &request(&url, Some(Compression::Xz), out.join("wrong")),
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.fault(), Fault::Input, "{err}");
    assert!(dir_is_empty(&out));

    // A missing source file.
    let url = format!("file://{}/nothing", src.display());
    let err = download(&request(&url, None, out.join("nothing")), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Environment);
    assert!(
        err.to_string()
            .starts_with(&format!("Unable to read from {}/nothing: ", src.display())),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_file_copied_by_the_kernel_is_checked_like_any_download() {
    let data = sample(3 * 64 * 1024 + 5);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("Image");
    std::fs::write(&src, &data).unwrap();
    let url = format!("file://{}", src.display());
    let good = Checksums {
        md5: Some(format!("{:x}", md5::Md5::digest(&data))),
        sha256: Some(sha256(&data)),
        sha512: Some(format!("{:x}", sha2::Sha512::digest(&data))),
    };
    let dir = tmp.path().join("ok");
    std::fs::create_dir_all(&dir).unwrap();
    let mut req = request(&url, None, dir.join("Image"));
    req.expected = good.clone();
    let mut events = Vec::new();
    let done = download(&req, |e| {
        events.push(match e {
            DownloadEvent::Starting { .. } => "starting".to_string(),
            DownloadEvent::Opened { total } => format!("opened {total:?}"),
            DownloadEvent::Progress { .. } => "progress".to_string(),
            DownloadEvent::Transferred { complete, .. } => format!("transferred {complete}"),
        })
    })
    .await
    .unwrap();
    assert_eq!((done.md5, done.sha512), (good.md5, good.sha512));
    events.dedup();
    assert_eq!(
        events,
        [
            "starting".to_string(),
            format!("opened Some({})", data.len()),
            "progress".to_string(),
            "transferred true".to_string()
        ]
    );

    let dir = tmp.path().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let mut req = request(&url, None, dir.join("Image"));
    req.expected.sha512 = Some("0".repeat(128));
    let err = download(&req, |_| {}).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Input, "{err}");
    assert_eq!(
        err.to_string(),
        format!("sha512 for '{url}' does not match.")
    );
    assert!(dir_is_empty(&dir), "a file was left behind");
}
