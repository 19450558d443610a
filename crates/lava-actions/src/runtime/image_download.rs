//! Run-time: downloads of a job's images (`http-download`, `file-download`) as LAVA
//! records them.
//!
//! The transfer itself (one streaming pass: fetch, hash, decompress, write, verify,
//! rename) is [`lava_artefacts::download()`]; this module gives it the job's parameters and
//! turns its course into LAVA's log records, namespace data and action results. As LAVA
//! does, the checksums and the recorded `size` are of the bytes *downloaded* (the
//! compressed stream), and the file is named after the URL without its compression suffix.
//!
//! Progress is reported as LAVA does, with `debug` records every 5 % of a known size (at
//! most every 0.1 s) or every 25 MB/every second otherwise, and an `info` summary
//! (`N MB downloaded in S s (R MB/s)`) timed from before the request. When the log is
//! shown on a terminal, the logger's live progress line stands in for those records on
//! the terminal (they still go to `logs.yaml`); it is erased when the download completes
//! and kept where it stopped when it fails.
//!
//! Error classes follow LAVA's `DownloadHandler` (`From<ArtefactError> for LavaError`): the
//! source missing, an HTTP status other than 200, a network failure or a short download
//! are InfrastructureErrors; a checksum mismatch, a stream that does not decompress with
//! the declared `compression` and a directory where the file should go are JobErrors.

use lava_artefacts::download::url_file_name;
use lava_artefacts::{ArtefactError, DownloadEvent, DownloadRequest};
use lava_pipeline::log::progress::ProgressLine;
use lava_pipeline::{JobLogger, LavaError, LavaResult, RunContext};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use lava_artefacts::{Checksums, Compression, Downloaded};

/// `md5sum`, `sha256sum` and `sha512sum` of an image map.
pub fn expected_checksums(params: &Mapping) -> Checksums {
    let get = |k: &str| {
        params
            .get(k)
            .and_then(lava_pipeline::value::scalar_string)
            .map(|s| s.trim().to_string())
    };
    Checksums {
        md5: get("md5sum"),
        sha256: get("sha256sum"),
        sha512: get("sha512sum"),
    }
}

/// Where an image lands: the URL's file name in `dir`, without the compression suffix
/// when it is decompressed while downloading (never for the `ramdisk` key, which LAVA
/// keeps compressed).
pub fn target_path(dir: &Path, key: &str, url: &str, params: &Mapping) -> PathBuf {
    let name = url_file_name(url);
    let name = match effective_compression(key, params) {
        Some(_) => match name.rsplit_once('.') {
            Some((stem, _)) => stem,
            None => name,
        },
        None => name,
    };
    dir.join(name)
}

/// The compression applied while downloading `key` (none for `ramdisk`).
pub fn effective_compression(key: &str, params: &Mapping) -> Option<Compression> {
    if key == "ramdisk" {
        return None;
    }
    params
        .get("compression")
        .and_then(Value::as_str)
        .and_then(Compression::from_name)
}

/// `download-retry` → `http-download` / `file-download`: download image `key` as the
/// job's image map `params` says (`url`, `compression`, checksums, `image_arg`,
/// `headers`, `format`) into `dir` (the action's download directory, `<key>` included
/// when uniquified; created if missing), and record it in the namespace data
/// (`download-action/<key>/{file,compression,decompressed,image_arg,sha256,...}` and
/// `download-action/file/<key>`) and in the action's results (`label`, `size`,
/// `sha256sum`, plus `sha512sum` when computed). Returns the file.
pub async fn download_image(
    ctx: &mut RunContext,
    key: &str,
    dir: &Path,
    params: &Mapping,
) -> LavaResult<PathBuf> {
    let url = params
        .get("url")
        .and_then(lava_pipeline::value::scalar_string)
        .ok_or_else(|| {
            LavaError::job(format!(
                "Invalid deploy action: 'url' is missing for '{key}'"
            ))
        })?;
    if key.is_empty() || key.contains('/') {
        return Err(LavaError::job(format!("Invalid key '{key}'")));
    }
    // Downloads are the dispatcher's alone: 0700 directories (the files are 0600).
    lava_pipeline::scratch::create_private_dir_all(dir).map_err(|e| {
        LavaError::infrastructure(format!("Unable to create {}: {e}", dir.display()))
    })?;
    let target = target_path(dir, key, &url, params);
    let compression = effective_compression(key, params);
    let declared = params.get("compression").and_then(Value::as_str);
    if key == "ramdisk" && declared.is_some() {
        ctx.logger
            .debug("Not decompressing ramdisk as can be used compressed.");
    }
    ctx.set_data(
        "download-action",
        key,
        "decompressed",
        compression.is_some(),
    );
    match (compression, declared) {
        (Some(c), _) => ctx
            .logger
            .info(format!("Using streaming {} decompression", c.name())),
        (None, Some(other)) if key != "ramdisk" => ctx.logger.info(format!(
            "Compression {other} specified but not decompressing during download"
        )),
        (None, None) => ctx.logger.debug("No compression specified"),
        _ => {}
    }
    let expected = expected_checksums(params);
    let headers = params
        .get("headers")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let logger = ctx.logger.clone();
    let done = stream_download(
        &logger,
        &url,
        &headers,
        compression,
        &target,
        &expected,
        |_| {},
    )
    .await?;

    let file = done.path.display().to_string();
    ctx.set_data("download-action", key, "file", file.clone());
    ctx.set_data("download-action", "file", key, file);
    ctx.set_data(
        "download-action",
        key,
        "compression",
        declared.map(Value::from).unwrap_or(Value::Null),
    );
    ctx.set_data("download-action", key, "sha256", done.sha256.clone());
    if let Some(sha512) = &done.sha512 {
        ctx.set_data("download-action", key, "sha512", sha512.clone());
    }
    for (param, data_key) in [
        ("image_arg", "image_arg"),
        ("overlay", "overlay"),
        ("format", "format"),
    ] {
        if let Some(v) = params.get(param).filter(|v| !v.is_null()) {
            ctx.set_data("download-action", key, data_key, v.clone());
        }
    }
    ctx.set_result("label", key);
    ctx.set_result("size", done.size);
    ctx.set_result("sha256sum", done.sha256.clone());
    if let Some(sha512) = done.sha512 {
        ctx.set_result("sha512sum", sha512);
    }
    if let Some(md5) = done.md5 {
        ctx.set_data("download-action", key, "md5", md5.clone());
        ctx.set_result("md5sum", md5);
    }
    Ok(done.path)
}

/// The `cleanup()` of a download action: remove the file of `key` (if any) and clear
/// `download-action/<key>/file`, as LAVA does between retries.
pub fn remove_download(ctx: &mut RunContext, key: &str) {
    let Some(file) = ctx
        .get_data("download-action", key, "file")
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty())
        .map(PathBuf::from)
    else {
        return;
    };
    if file.is_file() {
        ctx.logger
            .debug(format!("Cleaning up downloaded image: {}", file.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => ctx.set_data("download-action", key, "file", ""),
            Err(e) => ctx.logger.debug(e.to_string()),
        }
    }
}

/// LAVA's progress records: every 5 % when the size is known (at most every 0.1 s), else
/// every 25 MB (at most every 0.1 s) or every second.
struct Progress {
    total: Option<u64>,
    last_value: i64,
    last_update: Instant,
}

impl Progress {
    fn new(total: Option<u64>, started: Instant) -> Self {
        Progress {
            total: total.filter(|t| *t > 0),
            last_value: match total {
                Some(t) if t > 0 => -5,
                _ => -25 * 1024 * 1024,
            },
            last_update: started,
        }
    }

    /// The record to log, if one is due at `now` with `downloaded` bytes so far.
    fn update(&mut self, downloaded: u64, now: Instant) -> Option<String> {
        let since = now
            .saturating_duration_since(self.last_update)
            .as_secs_f64();
        let mb = downloaded / (1024 * 1024);
        let (print, value, msg) = match self.total {
            Some(total) => {
                let percent = (downloaded as f64 / total as f64 * 100.0).floor() as i64;
                (
                    percent >= self.last_value + 5 && since >= 0.1,
                    percent,
                    format!("progress {percent:>3} % ({mb} MB)"),
                )
            }
            None => (
                (downloaded as i64 >= self.last_value + 25 * 1024 * 1024 && since >= 0.1)
                    || since >= 1.0,
                downloaded as i64,
                format!("progress {mb} MB"),
            ),
        };
        if print {
            self.last_value = value;
            self.last_update = now;
            Some(msg)
        } else {
            None
        }
    }
}

/// One image downloaded as LAVA logs it, without a job context (the bench uses it
/// directly): [`lava_artefacts::download()`] with `headers` taken from the job's mapping,
/// its course logged on `logger`, and its errors logged and classed as LAVA's.
/// `on_chunk` sees the running downloaded size (the terminal progress line is drawn by
/// the logger itself; this is for other observers).
pub async fn stream_download(
    logger: &JobLogger,
    url: &str,
    headers: &Mapping,
    compression: Option<Compression>,
    target: &Path,
    expected: &Checksums,
    mut on_chunk: impl FnMut(u64) + Send,
) -> LavaResult<Downloaded> {
    let request = DownloadRequest {
        url: url.to_string(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    lava_pipeline::value::scalar_string(k)?,
                    lava_pipeline::value::scalar_string(v)?,
                ))
            })
            .collect(),
        compression,
        target: target.to_path_buf(),
        expected: expected.clone(),
    };
    let label = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut started = Instant::now();
    let mut shown: Option<(Progress, ProgressLine)> = None;
    let result = lava_artefacts::download(&request, |event| match event {
        DownloadEvent::Starting { url, target } => {
            started = Instant::now();
            logger.info(format!("downloading {url}"));
            logger.debug(format!("saving as {}", target.display()));
        }
        DownloadEvent::Opened { total } => {
            match total {
                Some(t) if t > 0 => {
                    logger.debug(format!("total size: {t} ({} MB)", t / (1024 * 1024)))
                }
                _ => logger.debug("total size: unknown"),
            }
            shown = Some((
                Progress::new(total, started),
                logger.progress_line(&label, total),
            ));
        }
        DownloadEvent::Progress { downloaded } => {
            on_chunk(downloaded);
            if let Some((progress, line)) = shown.as_mut() {
                line.update(downloaded);
                if let Some(msg) = progress.update(downloaded, Instant::now()) {
                    line.log_milestone(msg);
                }
            }
        }
        DownloadEvent::Transferred {
            downloaded,
            elapsed,
            complete,
        } => {
            // Before anything else is logged: erased when every byte was read and
            // written (the summary record follows), kept where it stopped otherwise.
            if let Some((_, line)) = shown.take() {
                if complete {
                    line.clear();
                } else {
                    line.interrupt();
                }
            }
            if complete {
                let secs = elapsed.as_secs_f64().max(1e-6);
                let mb = downloaded as f64 / (1024.0 * 1024.0);
                logger.info(format!(
                    "{} MB downloaded in {:.2} s ({:.2} MB/s)",
                    downloaded / (1024 * 1024),
                    secs,
                    mb / secs
                ));
            }
        }
    })
    .await;
    result.map_err(|error| {
        log_failure(logger, &error);
        LavaError::from(error)
    })
}

/// The records LAVA logs before raising a download error.
fn log_failure(logger: &JobLogger, error: &ArtefactError) {
    match error {
        ArtefactError::Request { detail, .. } => {
            logger.error(format!("Resource not available: {detail}"))
        }
        ArtefactError::HttpStatus { url, status } => {
            logger.error(format!("Resource unavailable at '{url}' ({status})"))
        }
        ArtefactError::Decompress {
            url,
            compression,
            detail,
        } => {
            logger.error(format!(
                "Unable to decompress '{url}' as {compression}: {detail}"
            ));
            logger.error("Make sure the 'compression' is corresponding to the image file type.");
        }
        ArtefactError::ChecksumMismatch { url, mismatch } => {
            logger.error(format!(
                "{} sum for '{url}' does not match",
                mismatch.algorithm
            ));
            logger.info(format!("actual  : {}", mismatch.actual));
            logger.info(format!("expected: {}", mismatch.expected));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lava_pipeline::StderrStyle;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn target_drops_the_compression_suffix_except_for_ramdisk() {
        let mut p = Mapping::new();
        p.insert("compression".into(), "xz".into());
        let dir = Path::new("/t");
        assert_eq!(
            target_path(dir, "rootfs", "http://h/a/rootfs.ext4.xz", &p),
            Path::new("/t/rootfs.ext4")
        );
        assert_eq!(
            target_path(dir, "ramdisk", "http://h/a/initrd.cpio.xz?x=1", &p),
            Path::new("/t/initrd.cpio.xz")
        );
        assert_eq!(
            target_path(dir, "kernel", "file:///a/vmlinuz", &p),
            Path::new("/t/vmlinuz")
        );
    }

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn progress_known_total_every_five_percent_at_most_every_tenth_of_a_second() {
        const MB: u64 = 1024 * 1024;
        let t0 = Instant::now();
        let mut p = Progress::new(Some(100), t0);
        assert_eq!(p.update(1, at(t0, 50)), None, "too early");
        assert_eq!(
            p.update(1, at(t0, 100)).as_deref(),
            Some("progress   1 % (0 MB)")
        );
        assert_eq!(p.update(5, at(t0, 1000)), None, "less than 5 % more");
        assert_eq!(
            p.update(6, at(t0, 1000)).as_deref(),
            Some("progress   6 % (0 MB)")
        );
        assert_eq!(p.update(50, at(t0, 1050)), None, "too soon after the last");
        assert_eq!(
            p.update(50, at(t0, 1100)).as_deref(),
            Some("progress  50 % (0 MB)")
        );

        let mut p = Progress::new(Some(4 * MB), t0);
        assert_eq!(
            p.update(4 * MB, at(t0, 100)).as_deref(),
            Some("progress 100 % (4 MB)")
        );
    }

    #[test]
    fn progress_unknown_total_every_25_mb_or_every_second() {
        const MB: u64 = 1024 * 1024;
        let t0 = Instant::now();
        for total in [None, Some(0)] {
            let mut p = Progress::new(total, t0);
            assert_eq!(p.update(MB, at(t0, 50)), None, "too early");
            assert_eq!(p.update(MB, at(t0, 100)).as_deref(), Some("progress 1 MB"));
            assert_eq!(
                p.update(10 * MB, at(t0, 600)),
                None,
                "under 25 MB, under 1 s"
            );
            assert_eq!(
                p.update(10 * MB, at(t0, 1100)).as_deref(),
                Some("progress 10 MB")
            );
            assert_eq!(
                p.update(35 * MB, at(t0, 1200)).as_deref(),
                Some("progress 35 MB")
            );
        }
    }

    /// An in-memory terminal.
    #[derive(Clone, Default)]
    struct Screen(Arc<Mutex<Vec<u8>>>);

    impl Screen {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Erase to the end of the line: only status-line draws write it.
    const STATUS_END: &str = "\x1b[K";

    /// A slow link on 127.0.0.1: one response announcing `len` bytes, sent in small
    /// paced pieces until `screen` shows a status line, then the rest at once (or, when
    /// `cut`, the connection is closed instead). Returns the URL.
    async fn slow_link(len: usize, screen: Screen, cut: bool) -> String {
        const PIECE: usize = 4096;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/rootfs.img", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            sock.write_all(head.as_bytes()).await.unwrap();
            let body = vec![b'x'; len];
            let mut sent = 0;
            // The pacing stands for a slow network; the loop ends on what the screen
            // shows, not after a set time.
            while !screen.text().contains(STATUS_END) {
                assert!(sent + 2 * PIECE < len, "no status line was drawn");
                sock.write_all(&body[sent..sent + PIECE]).await.unwrap();
                sent += PIECE;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if !cut {
                sock.write_all(&body[sent..]).await.unwrap();
            }
        });
        url
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_terminal_the_status_line_replaces_lava_progress_records() {
        let tmp = tempfile::tempdir().unwrap();
        let screen = Screen::default();
        let logger = JobLogger::with_stderr_writer(StderrStyle::Human, screen.clone());
        let log_file = tmp.path().join("logs.yaml");
        logger.open_file(&log_file).unwrap();
        let len = 8 * 1024 * 1024;
        let url = slow_link(len, screen.clone(), false).await;
        let target = tmp.path().join("rootfs.img");
        let done = stream_download(
            &logger,
            &url,
            &Mapping::new(),
            None,
            &target,
            &Checksums::default(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(done.size, len as u64);

        let text = screen.text();
        assert!(text.contains("\rrootfs.img  "), "{text:?}");
        assert!(!text.contains("progress "), "{text:?}");
        // The status line was erased, and the summary record has its row.
        let summary = text.find("MB downloaded in").expect("summary record");
        let last_cr = text[..summary].rfind('\r').unwrap();
        assert!(text[last_cr..summary].starts_with("\r\x1b[K"), "{text:?}");
        assert!(!text[last_cr..summary].contains('\n'), "{text:?}");
        assert!(text.ends_with('\n'));
        // logs.yaml still has LAVA's records.
        let log = std::fs::read_to_string(&log_file).unwrap();
        assert!(log.contains("\"msg\": \"progress   0 % (0 MB)\"}"), "{log}");
        assert!(log.contains(" MB downloaded in "), "{log}");
        assert!(!log.contains(STATUS_END), "{log}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_download_keeps_its_status_line() {
        let tmp = tempfile::tempdir().unwrap();
        let screen = Screen::default();
        let logger = JobLogger::with_stderr_writer(StderrStyle::Human, screen.clone());
        let url = slow_link(8 * 1024 * 1024, screen.clone(), true).await;
        let err = stream_download(
            &logger,
            &url,
            &Mapping::new(),
            None,
            &tmp.path().join("rootfs.img"),
            &Checksums::default(),
            |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, lava_pipeline::ErrorKind::Infrastructure, "{err}");
        let text = screen.text();
        assert!(text.ends_with(&format!("{STATUS_END}\n")), "{text:?}");
        assert!(!text.contains("\r\x1b[K"), "kept, not erased: {text:?}");
    }
}
