//! Run-time: downloads (`http-download`, `file-download`).
//!
//! One streaming pass per image: the source (a local file or an HTTP(S) response) is read
//! in chunks on the async task; each chunk is fanned out to a hashing thread (SHA-256
//! always, SHA-512 when asked) and to a decompress-and-write thread, both on tokio's
//! blocking pool so the async workers never do the CPU work. As LAVA does, the checksums
//! and the recorded `size` are of the bytes *downloaded* (the compressed stream), and the
//! file is named after the URL without its compression suffix.
//!
//! The output goes to a temporary name next to the target and is renamed only when the
//! download, the decompression and every checksum succeeded: an HTTP error, a truncated
//! archive, a checksum mismatch or a timeout (the future dropped) leaves no file behind.
//!
//! Progress is reported as LAVA does, with `debug` records every 5 % of a known size (at
//! most every 0.1 s) or every 25 MB/every second otherwise, and an `info` summary
//! (`N MB downloaded in S s (R MB/s)`) timed from before the request. When the log is
//! shown on a terminal, the logger's live progress line stands in for those records on
//! the terminal (they still go to `logs.yaml`); it is erased when the download completes
//! and kept where it stopped when it fails.
//!
//! Error classes follow LAVA's `DownloadHandler`: the source missing, an HTTP status
//! other than 200, a network failure or a short download are InfrastructureErrors; a
//! checksum mismatch, a stream that does not decompress with the declared `compression`
//! and a directory where the file should go are JobErrors.

use bytes::Bytes;
use lava_pipeline::{JobLogger, LavaError, LavaResult, RunContext};
use serde_yaml::{Mapping, Value};
use sha2::Digest;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Bytes read from a file source per chunk (HTTP bodies arrive in the server's chunks).
/// With [`CHANNEL_DEPTH`] this bounds what a download holds in memory: large enough
/// that per-chunk costs vanish next to hashing and decompressing, small enough that
/// the dispatcher stays lean while a worker catches up.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Chunks buffered between the reader and each worker thread (both workers share them).
const CHANNEL_DEPTH: usize = 4;

/// The formats decompressed while downloading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gz,
    Xz,
    Zstd,
    Bz2,
}

impl Compression {
    /// The format for a `compression:` value; `None` for no compression and for formats
    /// kept compressed (LAVA keeps `zip` as downloaded).
    pub fn from_param(value: Option<&str>) -> Option<Compression> {
        match value? {
            "gz" => Some(Compression::Gz),
            "xz" => Some(Compression::Xz),
            "zstd" => Some(Compression::Zstd),
            "bz2" => Some(Compression::Bz2),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gz => "gz",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Bz2 => "bz2",
        }
    }
}

/// What one streaming download produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The final file (renamed from its temporary name).
    pub path: PathBuf,
    /// Bytes downloaded (before decompression).
    pub size: u64,
    /// Bytes written (after decompression).
    pub written: u64,
    /// Hex SHA-256 of the downloaded bytes.
    pub sha256: String,
    /// Hex SHA-512 of the downloaded bytes, when asked for.
    pub sha512: Option<String>,
    /// Hex MD5 of the downloaded bytes, when asked for.
    pub md5: Option<String>,
}

/// Checksums to verify after the download, as given in the job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    pub md5: Option<String>,
    pub sha256: Option<String>,
    pub sha512: Option<String>,
}

impl Expected {
    /// `md5sum`, `sha256sum` and `sha512sum` of an image map.
    pub fn from_params(params: &Mapping) -> Expected {
        let get = |k: &str| {
            params
                .get(k)
                .and_then(lava_pipeline::value::scalar_string)
                .map(|s| s.trim().to_string())
        };
        Expected {
            md5: get("md5sum"),
            sha256: get("sha256sum"),
            sha512: get("sha512sum"),
        }
    }
}

/// Where an image lands: the URL's file name in `dir`, without the compression suffix
/// when it is decompressed while downloading (never for the `ramdisk` key, which LAVA
/// keeps compressed).
pub fn target_path(dir: &Path, key: &str, url: &str, params: &Mapping) -> PathBuf {
    let path = url_path(url);
    let name = path.rsplit('/').next().unwrap_or_default();
    let compression = effective_compression(key, params);
    let name = match compression {
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
    Compression::from_param(params.get("compression").and_then(Value::as_str))
}

fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    match rest.find('/') {
        Some(i) => &rest[i..],
        None => "",
    }
}

/// Decode `%XX` escapes of a `file://` path (Python's `urlparse` keeps them; LAVA opens
/// the path as given, so only a literal path is supported, like LAVA).
fn file_url_path(url: &str) -> LavaResult<PathBuf> {
    let rest = url
        .strip_prefix("file://")
        .ok_or_else(|| LavaError::job(format!("Unsupported url protocol scheme: {url}")))?;
    // `file://host/path`: LAVA uses only the path part.
    let path = match rest.find('/') {
        Some(i) => &rest[i..],
        None => rest,
    };
    Ok(PathBuf::from(path))
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
    std::fs::create_dir_all(dir).map_err(|e| {
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
            .info(format!("Using streaming {} decompression", c.as_str())),
        (None, Some(other)) if key != "ramdisk" => ctx.logger.info(format!(
            "Compression {other} specified but not decompressing during download"
        )),
        (None, None) => ctx.logger.debug("No compression specified"),
        _ => {}
    }
    let expected = Expected::from_params(params);
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

/// Removes the temporary file unless the download was committed.
struct Partial {
    path: PathBuf,
    committed: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

enum Source {
    File(tokio::fs::File),
    Http(reqwest::Response),
}

impl Source {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        match self {
            Source::File(f) => {
                let mut chunk = bytes::BytesMut::zeroed(CHUNK_SIZE);
                let mut filled = 0;
                // Fill whole chunks: fewer, larger messages to the workers.
                while filled < CHUNK_SIZE {
                    let n = f
                        .read(&mut chunk[filled..])
                        .await
                        .map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                chunk.truncate(filled);
                Ok((filled > 0).then(|| chunk.freeze()))
            }
            Source::Http(res) => res.chunk().await.map_err(|e| error_chain(&e)),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn http_client() -> LavaResult<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| LavaError::infrastructure(format!("Unable to build the HTTP client: {e}")))
}

async fn open_source(
    logger: &JobLogger,
    url: &str,
    headers: &Mapping,
) -> LavaResult<(Source, Option<u64>)> {
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("file") => {
            let path = file_url_path(url)?;
            let file = tokio::fs::File::open(&path).await.map_err(|e| {
                LavaError::infrastructure(format!("Unable to read from {}: {e}", path.display()))
            })?;
            let size = file.metadata().await.ok().map(|m| m.len());
            Ok((Source::File(file), size))
        }
        Some("http" | "https") => {
            let client = http_client()?;
            let mut request = client.get(url);
            for (k, v) in headers {
                if let (Some(k), Some(v)) = (
                    lava_pipeline::value::scalar_string(k),
                    lava_pipeline::value::scalar_string(v),
                ) {
                    request = request.header(k, v);
                }
            }
            let res = request.send().await.map_err(|e| {
                logger.error(format!("Resource not available: {}", error_chain(&e)));
                LavaError::infrastructure(format!(
                    "Unable to download '{url}': {}",
                    error_chain(&e)
                ))
            })?;
            if res.status() != reqwest::StatusCode::OK {
                logger.error(format!(
                    "Resource unavailable at '{url}' ({})",
                    res.status().as_u16()
                ));
                return Err(LavaError::infrastructure(format!(
                    "Unable to download '{url}'"
                )));
            }
            let size = res.content_length();
            Ok((Source::Http(res), size))
        }
        _ => Err(LavaError::job(format!(
            "Unsupported url protocol scheme: {}",
            scheme.unwrap_or_default()
        ))),
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

/// The hashing worker: SHA-256 always, SHA-512 when asked.
fn hash_worker(mut rx: mpsc::Receiver<Bytes>, want_sha512: bool, want_md5: bool) -> Hashes {
    let mut sha256 = sha2::Sha256::new();
    let mut sha512 = want_sha512.then(sha2::Sha512::new);
    let mut md5 = want_md5.then(md5::Md5::new);
    while let Some(chunk) = rx.blocking_recv() {
        sha256.update(&chunk);
        if let Some(h) = sha512.as_mut() {
            h.update(&chunk);
        }
        if let Some(h) = md5.as_mut() {
            h.update(&chunk);
        }
    }
    Hashes {
        sha256: hex(&sha256.finalize()),
        sha512: sha512.map(|h| hex(&h.finalize())),
        md5: md5.map(|h| hex(&h.finalize())),
    }
}

struct Hashes {
    sha256: String,
    sha512: Option<String>,
    md5: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Why the writer stopped.
enum WriteError {
    /// The stream is not valid for the declared compression (the job's fault).
    Decode(String),
    /// Writing the file failed (the worker's fault).
    Io(String),
}

/// The decompress-and-write worker, on a blocking thread. The async-compression decoders
/// are driven by `Handle::block_on` here, so their CPU work stays off the async workers.
fn write_worker(
    handle: tokio::runtime::Handle,
    rx: mpsc::Receiver<Bytes>,
    compression: Option<Compression>,
    file: std::fs::File,
) -> Result<u64, WriteError> {
    use async_compression::tokio::bufread::{BzDecoder, GzipDecoder, XzDecoder, ZstdDecoder};
    use tokio::io::AsyncRead;

    let mut out = std::io::BufWriter::with_capacity(CHUNK_SIZE, file);
    let mut written = 0u64;
    match compression {
        None => {
            let mut rx = rx;
            while let Some(chunk) = rx.blocking_recv() {
                out.write_all(&chunk)
                    .map_err(|e| WriteError::Io(e.to_string()))?;
                written += chunk.len() as u64;
            }
        }
        Some(c) => {
            let stream = ChunkReader {
                rx,
                current: Bytes::new(),
            };
            let mut decoder: std::pin::Pin<Box<dyn AsyncRead + Send>> = match c {
                Compression::Gz => {
                    let mut d = GzipDecoder::new(stream);
                    d.multiple_members(true);
                    Box::pin(d)
                }
                Compression::Xz => {
                    let mut d = XzDecoder::new(stream);
                    d.multiple_members(true);
                    Box::pin(d)
                }
                Compression::Zstd => {
                    let mut d = ZstdDecoder::new(stream);
                    d.multiple_members(true);
                    Box::pin(d)
                }
                Compression::Bz2 => {
                    let mut d = BzDecoder::new(stream);
                    d.multiple_members(true);
                    Box::pin(d)
                }
            };
            let mut buf = vec![0u8; CHUNK_SIZE];
            handle.block_on(async {
                loop {
                    let n = decoder
                        .read(&mut buf)
                        .await
                        .map_err(|e| WriteError::Decode(e.to_string()))?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buf[..n])
                        .map_err(|e| WriteError::Io(e.to_string()))?;
                    written += n as u64;
                }
                Ok::<(), WriteError>(())
            })?;
        }
    }
    out.flush().map_err(|e| WriteError::Io(e.to_string()))?;
    out.get_ref()
        .sync_data()
        .map_err(|e| WriteError::Io(e.to_string()))?;
    Ok(written)
}

/// An `AsyncBufRead` over the chunk channel: the decoders read the chunks in place.
struct ChunkReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl tokio::io::AsyncRead for ChunkReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use tokio::io::AsyncBufRead;
        let available = match self.as_mut().poll_fill_buf(cx) {
            std::task::Poll::Ready(Ok(b)) => b,
            std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
            std::task::Poll::Pending => return std::task::Poll::Pending,
        };
        let n = available.len().min(out.remaining());
        out.put_slice(&available[..n]);
        self.consume(n);
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncBufRead for ChunkReader {
    fn poll_fill_buf(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.current.is_empty() {
            match this.rx.poll_recv(cx) {
                std::task::Poll::Ready(Some(chunk)) => this.current = chunk,
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(Ok(&[])),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
        std::task::Poll::Ready(Ok(&this.current[..]))
    }

    fn consume(self: std::pin::Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        let _ = this.current.split_to(amt.min(this.current.len()));
    }
}

/// The streaming core, without a job context (the bench uses it directly): read `url`,
/// hash, decompress into a temporary name next to `target`, verify `expected`, rename.
/// `on_chunk` sees the running downloaded size (the terminal progress line is drawn by
/// the logger itself; this is for other observers).
pub async fn stream_download(
    logger: &JobLogger,
    url: &str,
    headers: &Mapping,
    compression: Option<Compression>,
    target: &Path,
    expected: &Expected,
    mut on_chunk: impl FnMut(u64),
) -> LavaResult<Downloaded> {
    if target.is_dir() {
        return Err(LavaError::job(format!(
            "Download '{}' is a directory, not a file",
            target.display()
        )));
    }
    if target.exists() {
        let _ = std::fs::remove_file(target);
    }
    logger.info(format!("downloading {url}"));
    logger.debug(format!("saving as {}", target.display()));
    // LAVA times the download from before the request.
    let started = Instant::now();
    let (mut source, total) = open_source(logger, url, headers).await?;
    match total {
        Some(t) if t > 0 => logger.debug(format!("total size: {t} ({} MB)", t / (1024 * 1024))),
        _ => logger.debug("total size: unknown"),
    }

    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial_path = target.with_file_name(format!(".{file_name}.partial"));
    let file = std::fs::File::create(&partial_path).map_err(|e| {
        LavaError::infrastructure(format!("Unable to open {}: {e}", partial_path.display()))
    })?;
    let mut partial = Partial {
        path: partial_path,
        committed: false,
    };

    let (hash_tx, hash_rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let (write_tx, write_rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let want_sha512 = expected.sha512.is_some();
    let want_md5 = expected.md5.is_some();
    let hasher = tokio::task::spawn_blocking(move || hash_worker(hash_rx, want_sha512, want_md5));
    let handle = tokio::runtime::Handle::current();
    let writer =
        tokio::task::spawn_blocking(move || write_worker(handle, write_rx, compression, file));

    let mut progress = Progress::new(total, started);
    let mut indicator = logger.progress_line(&file_name, total);
    let mut downloaded = 0u64;
    let mut read_error = None;
    loop {
        let chunk = match source.next_chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        };
        downloaded += chunk.len() as u64;
        on_chunk(downloaded);
        indicator.update(downloaded);
        if let Some(msg) = progress.update(downloaded, Instant::now()) {
            indicator.log_milestone(msg);
        }
        // Both workers run ahead independently; a full channel is back-pressure.
        let _ = hash_tx.send(chunk.clone()).await;
        if write_tx.send(chunk).await.is_err() {
            // The writer stopped early (bad stream): its error is reported below.
            break;
        }
    }
    drop(hash_tx);
    drop(write_tx);
    let write_result = writer
        .await
        .map_err(|e| LavaError::bug(format!("download writer panicked: {e}")))?;
    let Hashes {
        sha256,
        sha512,
        md5,
    } = hasher
        .await
        .map_err(|e| LavaError::bug(format!("download hasher panicked: {e}")))?;
    // Before anything else is logged: erased when every byte was read and written (the
    // summary record follows), kept where it stopped otherwise.
    if read_error.is_none() && write_result.is_ok() {
        indicator.clear();
    } else {
        indicator.interrupt();
    }

    if let Some(e) = read_error {
        let msg = if url.starts_with("file:") {
            format!(
                "Unable to read from {}: {e}",
                url.trim_start_matches("file://")
            )
        } else {
            format!("Unable to download '{url}': {e}")
        };
        return Err(LavaError::infrastructure(msg));
    }
    let written = match write_result {
        Ok(n) => n,
        Err(WriteError::Decode(e)) => {
            let c = compression.map(Compression::as_str).unwrap_or("none");
            logger.error(format!("Unable to decompress '{url}' as {c}: {e}"));
            logger.error("Make sure the 'compression' is corresponding to the image file type.");
            return Err(LavaError::job(format!(
                "Decompression of '{url}' ({c}) failed: {e}"
            )));
        }
        Err(WriteError::Io(e)) => {
            return Err(LavaError::infrastructure(format!(
                "Unable to write {}: {e}",
                partial.path.display()
            )));
        }
    };

    let secs = started.elapsed().as_secs_f64().max(1e-6);
    let mb = downloaded as f64 / (1024.0 * 1024.0);
    logger.info(format!(
        "{} MB downloaded in {:.2} s ({:.2} MB/s)",
        downloaded / (1024 * 1024),
        secs,
        mb / secs
    ));
    if let Some(t) = total.filter(|t| *t > 0)
        && t != downloaded
    {
        return Err(LavaError::infrastructure(format!(
            "Download finished ({downloaded} bytes) but was not expected size ({t} bytes), check your networking."
        )));
    }

    if let Some(md5) = &md5 {
        check_sum(logger, url, "md5", md5, expected.md5.as_deref())?;
    }
    check_sum(logger, url, "sha256", &sha256, expected.sha256.as_deref())?;
    if let Some(sha512) = &sha512 {
        check_sum(logger, url, "sha512", sha512, expected.sha512.as_deref())?;
    }

    std::fs::rename(&partial.path, target).map_err(|e| {
        LavaError::infrastructure(format!(
            "Unable to rename {} to {}: {e}",
            partial.path.display(),
            target.display()
        ))
    })?;
    partial.committed = true;
    Ok(Downloaded {
        path: target.to_path_buf(),
        size: downloaded,
        written,
        sha256,
        sha512,
        md5,
    })
}

fn check_sum(
    logger: &JobLogger,
    url: &str,
    algorithm: &str,
    actual: &str,
    expected: Option<&str>,
) -> LavaResult<()> {
    let Some(expected) = expected else {
        return Ok(());
    };
    if actual.eq_ignore_ascii_case(expected) {
        return Ok(());
    }
    logger.error(format!("{algorithm} sum for '{url}' does not match"));
    logger.info(format!("actual  : {actual}"));
    logger.info(format!("expected: {expected}"));
    Err(LavaError::job(format!(
        "{algorithm} for '{url}' does not match."
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lava_pipeline::StderrStyle;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

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
            &Expected::default(),
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
            &Expected::default(),
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
