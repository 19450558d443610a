//! Downloads (`http://`, `https://`, `file://`) in one streaming pass.
//!
//! The source (a local file or an HTTP(S) response) is read in chunks on the async task;
//! each chunk is fanned out to a hashing thread and to a decompress-and-write thread, both
//! on tokio's blocking pool so the async workers never do the CPU work. As LAVA does, the
//! checksums and the `size` are of the bytes *downloaded* (the compressed stream).
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
/// Chunks buffered between the reader and each worker thread.
const CHANNEL_DEPTH: usize = 4;
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
/// `Opened`, `Progress` per chunk, and `Transferred` once reading and writing stopped.
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
    let (mut source, total) = Source::open(url, headers).await?;
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

    let mut downloaded = 0u64;
    let mut read_error = None;
    loop {
        let chunk = match source.next_chunk(url).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        };
        downloaded += chunk.len() as u64;
        on_event(DownloadEvent::Progress { downloaded });
        // Both workers run ahead independently; a full channel is back-pressure.
        let _ = hash_tx.send(chunk.clone()).await;
        if write_tx.send(chunk).await.is_err() {
            // The writer stopped early (bad stream): its error is reported below.
            break;
        }
    }
    drop(hash_tx);
    drop(write_tx);
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
        /// Chunks read by [`read_file_chunks`] on the blocking pool, in order; the reader
        /// stops when this is dropped.
        chunks: mpsc::Receiver<std::io::Result<Bytes>>,
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
                let (tx, chunks) = mpsc::channel(CHANNEL_DEPTH);
                // Detached: it ends at the end of the file, on an error, or when the
                // receiver is dropped (the download is over or abandoned).
                drop(tokio::task::spawn_blocking(move || {
                    read_file_chunks(file, &tx)
                }));
                let shown = url.trim_start_matches("file://").to_string();
                Ok((Source::File { chunks, shown }, size))
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

    async fn next_chunk(&mut self, url: &str) -> Result<Option<Bytes>, ArtefactError> {
        match self {
            Source::File { chunks, shown } => match chunks.recv().await {
                None => Ok(None),
                Some(Ok(chunk)) => Ok(Some(chunk)),
                Some(Err(e)) => Err(ArtefactError::io(format!("Unable to read from {shown}"), e)),
            },
            Source::Http(response) => response.chunk().await.map_err(|e| ArtefactError::Transfer {
                url: url.to_string(),
                detail: error_chain(&e),
            }),
        }
    }
}

/// The reader of a `file://` source, on a blocking thread: whole chunks of
/// [`CHUNK_SIZE`] bytes (the last one shorter), each read straight into a fresh buffer
/// (no zeroing, no copy) and handed over as [`Bytes`]; then end of file (the sender
/// dropped), or the first read error. A file read through `tokio::fs` costs a trip to the
/// blocking pool and a copy per read, which made the reader, not the hashing, the
/// bottleneck of a local kernel image's download.
fn read_file_chunks(file: std::fs::File, tx: &mpsc::Sender<std::io::Result<Bytes>>) {
    loop {
        let mut chunk = Vec::with_capacity(CHUNK_SIZE);
        // `read_to_end` on the limited reader fills the spare capacity without
        // initialising it first and retries interrupted reads.
        let read = (&file).take(CHUNK_SIZE as u64).read_to_end(&mut chunk);
        let message = match read {
            Ok(0) => return,
            Ok(_) => Ok(Bytes::from(chunk)),
            Err(e) => Err(e),
        };
        let failed = message.is_err();
        if tx.blocking_send(message).is_err() || failed {
            return;
        }
    }
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
