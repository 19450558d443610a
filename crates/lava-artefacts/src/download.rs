//! Downloads (`http://`, `https://`, `file://`) in one streaming pass.
//!
//! The source is read in chunks (an HTTP(S) response on the async task, a local file on a
//! reader thread of its own); each chunk is fanned out to a hashing thread and to a
//! decompress-and-write thread, all on tokio's blocking pool so the async workers never do
//! the CPU work. As LAVA does, the checksums and the `size` are of the bytes *downloaded*
//! (the compressed stream).
//!
//! The output goes to a temporary name next to the target (`.<name>.partial`) and is
//! renamed only when the transfer, the decompression, the size and every checksum are
//! right: an HTTP error, a truncated archive, a checksum mismatch or a timeout (the
//! future dropped) leaves no file behind.
//!
//! The caller follows the transfer through [`DownloadEvent`]s (to log progress, draw a
//! status line, time it); errors say whose fault they are ([`crate::Fault`]).

use std::io::{BufRead, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::checksum::{Checksums, Hasher};
use crate::{ArtefactError, Compression};

/// Bytes read from a file source per chunk (HTTP bodies arrive in the server's chunks).
/// With the channel depth this bounds what a download holds in memory: large enough that
/// per-chunk costs vanish next to hashing and decompressing, small enough that the
/// dispatcher stays lean while a worker catches up.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// How many bytes read from a local file between two progress reports (its
/// [`DownloadEvent::Progress`] events come at least this far apart, and at the end).
const PROGRESS_STEP: u64 = 1024 * 1024;
/// Chunks buffered between the reader and each worker thread.
const CHANNEL_DEPTH: usize = 2;
/// How long an HTTP connection may take to establish.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What to download, and how.
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    /// `http://`, `https://` or `file://` URL.
    pub url: String,
    /// Extra HTTP request headers (name, value).
    pub headers: Vec<(String, String)>,
    /// Decompress while downloading, or keep the bytes as they come.
    pub compression: Option<Compression>,
    /// The file to create (its directory must exist; a file there is replaced).
    pub target: PathBuf,
    /// Checksums the downloaded bytes must have.
    pub expected: Checksums,
}

/// What one download produced.
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
    /// Hex SHA-512 of the downloaded bytes, when expected.
    pub sha512: Option<String>,
    /// Hex MD5 of the downloaded bytes, when expected.
    pub md5: Option<String>,
}

/// The course of a download, in order: `Starting`, then (once the source is open)
/// `Opened`, `Progress` (per HTTP chunk, per megabyte of a local file, and at the end), and
/// `Transferred` once reading and writing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadEvent<'a> {
    /// The target is usable; the source is about to be opened.
    Starting {
        /// The source URL.
        url: &'a str,
        /// The file to be created.
        target: &'a Path,
    },
    /// The source is open.
    Opened {
        /// Its size, when the file or the server tells it.
        total: Option<u64>,
    },
    /// A chunk arrived.
    Progress {
        /// Bytes downloaded so far.
        downloaded: u64,
    },
    /// Reading and writing stopped; checks of size and checksums follow.
    Transferred {
        /// Bytes downloaded.
        downloaded: u64,
        /// Time since `Starting` (LAVA times downloads from before the request).
        elapsed: Duration,
        /// Every byte was read, decoded and written; false when the transfer broke off.
        complete: bool,
    },
}

/// Downloads `request.url` to `request.target`, decompressing, hashing and checking it
/// in one pass; `on_event` follows the transfer.
pub async fn download(
    request: &DownloadRequest,
    mut on_event: impl FnMut(DownloadEvent<'_>),
) -> Result<Downloaded, ArtefactError> {
    let DownloadRequest {
        url,
        headers,
        compression,
        target,
        expected,
    } = request;
    let compression = *compression;
    if target.is_dir() {
        return Err(ArtefactError::TargetIsDirectory(target.clone()));
    }
    if target.exists() {
        let _ = std::fs::remove_file(target);
    }
    on_event(DownloadEvent::Starting { url, target });
    let started = Instant::now();
    let (source, total) = Source::open(url, headers).await?;
    on_event(DownloadEvent::Opened { total });

    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut partial = Partial {
        path: target.with_file_name(format!(".{file_name}.partial")),
        committed: false,
    };
    // Readable by the dispatcher's user only: images may be private.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial.path)
        .map_err(|e| ArtefactError::io(format!("Unable to open {}", partial.path.display()), e))?;

    let (hash_tx, mut hash_rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let (write_tx, write_rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let mut hasher = Hasher::for_expected(expected);
    let hashing = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = hash_rx.blocking_recv() {
            hasher.update(&chunk);
        }
        hasher.finish()
    });
    let writing = tokio::task::spawn_blocking(move || write_worker(write_rx, compression, file));

    let (downloaded, read_error) = match source {
        Source::File { file, shown } => {
            // The reader hands each chunk to both workers itself (no trip through this task
            // per chunk); the count of bytes read follows on a channel of its own.
            let (progress_tx, mut progress_rx) = mpsc::channel::<u64>(CHANNEL_DEPTH);
            let reader = tokio::task::spawn_blocking(move || {
                fan_out_file(&file, &hash_tx, &write_tx, &progress_tx)
            });
            while let Some(downloaded) = progress_rx.recv().await {
                on_event(DownloadEvent::Progress { downloaded });
            }
            let (downloaded, error) = reader
                .await
                .map_err(|e| ArtefactError::Bug(format!("download reader panicked: {e}")))?;
            let error = error.map(|e| ArtefactError::io(format!("Unable to read from {shown}"), e));
            (downloaded, error)
        }
        Source::Http(response) => {
            relay_response(response, url, hash_tx, write_tx, &mut on_event).await
        }
    };
    let write_result = writing
        .await
        .map_err(|e| ArtefactError::Bug(format!("download writer panicked: {e}")))?;
    let digests = hashing
        .await
        .map_err(|e| ArtefactError::Bug(format!("download hasher panicked: {e}")))?;
    on_event(DownloadEvent::Transferred {
        downloaded,
        elapsed: started.elapsed(),
        complete: read_error.is_none() && write_result.is_ok(),
    });

    if let Some(e) = read_error {
        return Err(e);
    }
    let written = match write_result {
        Ok(n) => n,
        Err(WriteError::Decode(compression, e)) => {
            return Err(ArtefactError::Decompress {
                url: url.clone(),
                compression,
                detail: e.to_string(),
            });
        }
        Err(WriteError::Io(e)) => {
            // The partial file is removed when `partial` drops (a full disk gets its space
            // back); the message names the file the job asked for.
            return Err(ArtefactError::io(
                format!(
                    "Unable to write {} (downloading {url}, partial file {} removed)",
                    target.display(),
                    partial.path.display()
                ),
                e,
            ));
        }
    };
    if let Some(expected) = total.filter(|t| *t > 0)
        && expected != downloaded
    {
        return Err(ArtefactError::SizeMismatch {
            downloaded,
            expected,
        });
    }
    digests
        .verify(expected)
        .map_err(|mismatch| ArtefactError::ChecksumMismatch {
            url: url.clone(),
            mismatch,
        })?;

    std::fs::rename(&partial.path, target).map_err(|e| {
        ArtefactError::io(
            format!(
                "Unable to rename {} to {}",
                partial.path.display(),
                target.display()
            ),
            e,
        )
    })?;
    partial.committed = true;
    Ok(Downloaded {
        path: target.clone(),
        size: downloaded,
        written,
        sha256: digests.sha256,
        sha512: digests.sha512,
        md5: digests.md5,
    })
}

/// The last path component of `url` (query and fragment removed): the name LAVA gives a
/// downloaded file before dropping a compression suffix.
pub fn url_file_name(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    match rest.find('/') {
        Some(i) => rest[i..].rsplit('/').next().unwrap_or_default(),
        None => "",
    }
}

/// The local path of a `file://` URL (`file://host/path` uses only the path). `%XX`
/// escapes are kept: LAVA opens the path as written.
pub fn file_url_path(url: &str) -> Result<PathBuf, ArtefactError> {
    let rest = url
        .strip_prefix("file://")
        .ok_or_else(|| ArtefactError::UnsupportedScheme(url.to_string()))?;
    let path = match rest.find('/') {
        Some(i) => &rest[i..],
        None => rest,
    };
    Ok(PathBuf::from(path))
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
    File {
        /// The open file, read by [`fan_out_file`] on the blocking pool.
        file: std::fs::File,
        /// The path as the URL gives it, for messages.
        shown: String,
    },
    Http(reqwest::Response),
}

impl Source {
    /// Opens `url`; the size when known.
    async fn open(
        url: &str,
        headers: &[(String, String)],
    ) -> Result<(Source, Option<u64>), ArtefactError> {
        let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("file") => {
                let path = file_url_path(url)?;
                let opened = {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || {
                        let file = std::fs::File::open(&path)?;
                        let size = file.metadata().ok().map(|m| m.len());
                        Ok::<_, std::io::Error>((file, size))
                    })
                    .await
                    .map_err(|e| ArtefactError::Bug(format!("opening {url}: {e}")))?
                };
                let (file, size) = opened.map_err(|e| {
                    ArtefactError::io(format!("Unable to read from {}", path.display()), e)
                })?;
                let shown = url.trim_start_matches("file://").to_string();
                Ok((Source::File { file, shown }, size))
            }
            Some("http" | "https") => {
                let client = reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build()
                    .map_err(|e| ArtefactError::HttpClient(e.to_string()))?;
                let mut request = client.get(url);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let response = request.send().await.map_err(|e| ArtefactError::Request {
                    url: url.to_string(),
                    detail: error_chain(&e),
                })?;
                if response.status() != reqwest::StatusCode::OK {
                    return Err(ArtefactError::HttpStatus {
                        url: url.to_string(),
                        status: response.status().as_u16(),
                    });
                }
                let size = response.content_length();
                Ok((Source::Http(response), size))
            }
            _ => Err(ArtefactError::UnsupportedScheme(scheme.unwrap_or_default())),
        }
    }
}

/// The transfer of an HTTP(S) body: each chunk as it arrives to both workers, in order.
/// Returns the bytes received and the transfer's error, if any; stops early when the
/// writer stopped (a bad stream: its error is reported by the caller).
async fn relay_response(
    mut response: reqwest::Response,
    url: &str,
    hash_tx: mpsc::Sender<Bytes>,
    write_tx: mpsc::Sender<Bytes>,
    on_event: &mut impl FnMut(DownloadEvent<'_>),
) -> (u64, Option<ArtefactError>) {
    let mut downloaded = 0u64;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return (downloaded, None),
            Err(e) => {
                let error = ArtefactError::Transfer {
                    url: url.to_string(),
                    detail: error_chain(&e),
                };
                return (downloaded, Some(error));
            }
        };
        downloaded += chunk.len() as u64;
        on_event(DownloadEvent::Progress { downloaded });
        // Both workers run ahead independently; a full channel is back-pressure.
        let _ = hash_tx.send(chunk.clone()).await;
        if write_tx.send(chunk).await.is_err() {
            return (downloaded, None);
        }
    }
}

/// The reader of a `file://` source, on a blocking thread: whole chunks of
/// [`CHUNK_SIZE`] bytes (the last one shorter), each read straight into a fresh buffer
/// (no zeroing, no copy) and handed as [`Bytes`] to the hashing and the writing worker
/// directly. The count of bytes read goes to `progress` every [`PROGRESS_STEP`] bytes
/// or more (when it has room), and always at the end; reading stops when `progress` is
/// closed (the download was abandoned) or the writer stopped (a bad stream). Returns the
/// bytes read and the read error, if any.
///
/// Sending every chunk through the async task instead (a wake-up of that task and of
/// each worker per chunk) made a local kernel image's copy 5 to 10 ms slower, and so did
/// waking the task for every chunk's progress.
fn fan_out_file(
    file: &std::fs::File,
    hash_tx: &mpsc::Sender<Bytes>,
    write_tx: &mpsc::Sender<Bytes>,
    progress: &mpsc::Sender<u64>,
) -> (u64, Option<std::io::Error>) {
    let mut downloaded = 0u64;
    let mut reported = 0u64;
    let error = loop {
        if progress.is_closed() {
            break None;
        }
        let mut chunk = Vec::with_capacity(CHUNK_SIZE);
        // `read_to_end` on the limited reader fills the spare capacity without
        // initialising it first and retries interrupted reads.
        match file.take(CHUNK_SIZE as u64).read_to_end(&mut chunk) {
            Ok(0) => break None,
            Ok(n) => downloaded += n as u64,
            Err(e) => break Some(e),
        }
        let chunk = Bytes::from(chunk);
        let _ = hash_tx.blocking_send(chunk.clone());
        if write_tx.blocking_send(chunk).is_err() {
            break None;
        }
        if downloaded - reported >= PROGRESS_STEP && progress.try_send(downloaded).is_ok() {
            reported = downloaded;
        }
    };
    if downloaded != reported {
        let _ = progress.blocking_send(downloaded);
    }
    (downloaded, error)
}

/// An error and its causes, joined by `: ` (reqwest's own message names no cause).
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

/// Why the writer stopped.
enum WriteError {
    /// The stream is not valid for the declared compression.
    Decode(Compression, std::io::Error),
    /// Writing the file failed.
    Io(std::io::Error),
}

/// The decompress-and-write worker, on a blocking thread.
fn write_worker(
    rx: mpsc::Receiver<Bytes>,
    compression: Option<Compression>,
    file: std::fs::File,
) -> Result<u64, WriteError> {
    let mut out = std::io::BufWriter::with_capacity(CHUNK_SIZE, file);
    let mut input = ChunkReader {
        rx,
        current: Bytes::new(),
    };
    let mut written = 0u64;
    match compression {
        None => loop {
            let chunk = input.fill_buf().map_err(WriteError::Io)?;
            if chunk.is_empty() {
                break;
            }
            out.write_all(chunk).map_err(WriteError::Io)?;
            let n = chunk.len();
            input.consume(n);
            written += n as u64;
        },
        Some(c) => {
            let mut decoder = c.decoder(input).map_err(|e| WriteError::Decode(c, e))?;
            let mut buf = vec![0u8; CHUNK_SIZE];
            loop {
                let n = decoder
                    .read(&mut buf)
                    .map_err(|e| WriteError::Decode(c, e))?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).map_err(WriteError::Io)?;
                written += n as u64;
            }
        }
    }
    // No fsync: the file lives only as long as the job's scratch directory (LAVA does not
    // sync its downloads either), and forcing a kernel image to disk cost a QEMU job more
    // than the rest of its deployment. A full disk still fails the write above (the space is
    // reserved at write time on ext4 and tmpfs).
    out.flush().map_err(WriteError::Io)?;
    Ok(written)
}

/// A blocking [`BufRead`] over the chunk channel: decoders read the chunks in place.
struct ChunkReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        crate::compression::read_buffered(self, out)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(&[]),
            }
        }
        Ok(&self.current[..])
    }

    fn consume(&mut self, amt: usize) {
        let _ = self.current.split_to(amt.min(self.current.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_file_names_and_file_paths() {
        assert_eq!(url_file_name("http://h/a/rootfs.ext4.xz"), "rootfs.ext4.xz");
        assert_eq!(
            url_file_name("http://h/a/initrd.cpio.xz?x=1#f"),
            "initrd.cpio.xz"
        );
        assert_eq!(url_file_name("file:///a/vmlinuz"), "vmlinuz");
        assert_eq!(url_file_name("http://host"), "");
        assert_eq!(
            file_url_path("file://host/srv/img").unwrap(),
            Path::new("/srv/img")
        );
        assert_eq!(file_url_path("file:///a%20b").unwrap(), Path::new("/a%20b"));
        let err = file_url_path("file:/x").unwrap_err();
        assert_eq!(err.to_string(), "Unsupported url protocol scheme: file:/x");
    }

    #[tokio::test]
    async fn unknown_scheme_and_directory_target_are_input_faults() {
        let tmp = tempfile::tempdir().unwrap();
        let mut request = DownloadRequest {
            url: "ftp://h/x".into(),
            headers: Vec::new(),
            compression: None,
            target: tmp.path().join("x"),
            expected: Checksums::default(),
        };
        let mut events = Vec::new();
        let err = download(&request, |e| events.push(format!("{e:?}")))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "Unsupported url protocol scheme: ftp");
        assert_eq!(err.fault(), crate::Fault::Input);
        assert_eq!(events.len(), 1, "{events:?}");
        request.target = tmp.path().to_path_buf();
        let err = download(&request, |_| {}).await.unwrap_err();
        assert!(matches!(err, ArtefactError::TargetIsDirectory(_)), "{err}");
    }
}
