//! Getting test definitions onto the worker: git clones (the `git` binary, by argv,
//! never through a shell), archive downloads behind the [`ArchiveDownloader`]
//! trait ([`UrlDownloader`]: `file://`, `http://`, `https://`, bounded in time and size),
//! and archive unpacking that refuses to leave its directory.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::error::{Result, ShellError};
use crate::paths::{checked_relative, resolve_inside};

/// Downloads one archive for a `from: url` definition.
pub trait ArchiveDownloader: Send + Sync {
    /// Fetches `url` (with the definition's `headers`) into `dest_dir` and returns
    /// the path of the downloaded file.
    fn download(
        &self,
        url: &str,
        headers: &IndexMap<String, String>,
        dest_dir: &Path,
    ) -> Result<PathBuf>;
}

/// Downloads `from: url` archives: `file://` URLs are copied, `http://` and `https://`
/// URLs fetched with reqwest (the job's `headers` sent, redirects followed, proxies from
/// the environment honoured). Every fetch is bounded: [`UrlDownloader::timeout`] for the
/// whole transfer, [`UrlDownloader::connect_timeout`] to connect, and at most
/// [`UrlDownloader::max_bytes`] kept (a larger archive fails without filling the disk).
/// Errors are [`ShellError::DownloadFailed`] naming the URL; other schemes are
/// [`ShellError::Unsupported`].
#[derive(Debug, Clone, Copy)]
pub struct UrlDownloader {
    /// The longest a whole download may take.
    pub timeout: Duration,
    /// The longest connecting may take.
    pub connect_timeout: Duration,
    /// The largest archive accepted, in bytes.
    pub max_bytes: u64,
}

/// [`UrlDownloader::timeout`] by default: test definition archives are small.
pub const DEFAULT_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// [`UrlDownloader::max_bytes`] by default.
pub const DEFAULT_MAX_ARCHIVE_BYTES: u64 = 512 * 1024 * 1024;

impl Default for UrlDownloader {
    fn default() -> Self {
        UrlDownloader {
            timeout: DEFAULT_DOWNLOAD_TIMEOUT,
            connect_timeout: Duration::from_secs(30),
            max_bytes: DEFAULT_MAX_ARCHIVE_BYTES,
        }
    }
}

impl ArchiveDownloader for UrlDownloader {
    fn download(
        &self,
        url: &str,
        headers: &IndexMap<String, String>,
        dest_dir: &Path,
    ) -> Result<PathBuf> {
        let failed = |detail: String| ShellError::DownloadFailed {
            url: url.to_string(),
            detail,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| failed(format!("invalid URL: {e}")))?;
        let name = parsed
            .path_segments()
            .and_then(|mut segments| segments.next_back())
            .filter(|name| !name.is_empty() && *name != "." && *name != "..")
            .ok_or_else(|| failed("the URL names no file".into()))?;
        let target = dest_dir.join(name);
        match parsed.scheme() {
            "file" => {
                let source = parsed
                    .to_file_path()
                    .map_err(|()| failed("not a local file path".into()))?;
                let size = fs::metadata(&source)
                    .map_err(|e| failed(e.to_string()))?
                    .len();
                if size > self.max_bytes {
                    return Err(failed(too_large(self.max_bytes)));
                }
                fs::copy(&source, &target).map_err(|e| failed(e.to_string()))?;
            }
            "http" | "https" => {
                // A thread of its own with its own runtime: callers are synchronous (the
                // overlay is built on a blocking thread), and the transfer never blocks an
                // async worker of theirs.
                let fetch = http_fetch(*self, parsed.clone(), headers.clone(), target.clone());
                std::thread::scope(|scope| {
                    scope
                        .spawn(|| {
                            tokio::runtime::Builder::new_current_thread()
                                .enable_all()
                                .build()
                                .map_err(|e| format!("cannot start the HTTP client: {e}"))?
                                .block_on(fetch)
                        })
                        .join()
                        .unwrap_or_else(|_| Err("the download thread panicked".into()))
                })
                .map_err(|detail| {
                    let _ = fs::remove_file(&target);
                    failed(detail)
                })?;
            }
            other => {
                return Err(ShellError::Unsupported(format!(
                    "no downloader for '{url}' (scheme '{other}'; file, http and https are handled)"
                )));
            }
        }
        Ok(target)
    }
}

fn too_large(max_bytes: u64) -> String {
    format!("the archive is larger than the {max_bytes} bytes accepted")
}

/// GET `url` into `target`, within the downloader's limits.
async fn http_fetch(
    limits: UrlDownloader,
    url: reqwest::Url,
    headers: IndexMap<String, String>,
    target: PathBuf,
) -> std::result::Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let transfer = async {
        let client = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .build()
            .map_err(|e| error_chain(&e))?;
        let mut request = client.get(url);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let mut response = request.send().await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the server answered {status}"));
        }
        if response
            .content_length()
            .is_some_and(|length| length > limits.max_bytes)
        {
            return Err(too_large(limits.max_bytes));
        }
        let mut file = tokio::fs::File::create(&target)
            .await
            .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
        let mut received: u64 = 0;
        while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
            received += chunk.len() as u64;
            if received > limits.max_bytes {
                return Err(too_large(limits.max_bytes));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        }
        file.flush()
            .await
            .map_err(|e| format!("cannot write {}: {e}", target.display()))
    };
    tokio::time::timeout(limits.timeout, transfer)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no complete answer within {} s",
                limits.timeout.as_secs_f64()
            ))
        })
}

/// An error and its sources, on one line (reqwest's own text leaves the cause out).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The outcome of one external command.
#[derive(Debug)]
pub struct CommandOutput {
    /// Whether the command exited with status 0.
    pub success: bool,
    /// Its stdout followed by its stderr.
    pub output: String,
}

/// Runs `argv` (no shell) with a time limit, killing it on expiry; stdout and
/// stderr are merged into the returned text.
pub fn run_command(
    argv: &[&str],
    cwd: Option<&Path>,
    timeout: Duration,
) -> io::Result<CommandOutput> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::other("empty command"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C");
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut output = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    output.push_str(&String::from_utf8_lossy(
        &err_reader.join().unwrap_or_default(),
    ));
    match status {
        Some(status) => Ok(CommandOutput {
            success: status.success(),
            output,
        }),
        None => Ok(CommandOutput {
            success: false,
            output: format!("{output}\ntimed out after {timeout:?}"),
        }),
    }
}

/// Options of one clone (`branch`, `revision`, `shallow`, `history`, `recursive`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloneOptions {
    /// Branch to check out (`branch:`).
    pub branch: Option<String>,
    /// Revision to check out after cloning (`revision:`).
    pub revision: Option<String>,
    /// Whether to clone with `--depth=1` (not done when a revision is given).
    pub shallow: bool,
    /// Whether to keep the `.git` directory (`history:`).
    pub history: bool,
    /// Whether to clone submodules too (`recursive:`).
    pub recursive: bool,
}

/// Clones git repositories with the `git` binary.
#[derive(Debug, Clone)]
pub struct GitClient {
    /// The `git` program to run.
    pub binary: PathBuf,
    /// Attempts in all (LAVA: 1 + 6 retries).
    pub attempts: u32,
    /// Pause between attempts.
    pub retry_delay: Duration,
    /// Limit for each git command.
    pub command_timeout: Duration,
}

impl Default for GitClient {
    fn default() -> Self {
        GitClient {
            binary: PathBuf::from("git"),
            attempts: 7,
            retry_delay: Duration::from_secs(5),
            command_timeout: Duration::from_secs(600),
        }
    }
}

impl GitClient {
    /// Clones `url` into `dest` (which must not exist yet, or is replaced) and
    /// returns the checked-out commit id.
    pub fn clone_repository(
        &self,
        url: &str,
        dest: &Path,
        options: &CloneOptions,
    ) -> Result<String> {
        if url.is_empty() || url.starts_with('-') {
            return Err(ShellError::InvalidEntry(format!("invalid git URL '{url}'")));
        }
        for value in [&options.branch, &options.revision].into_iter().flatten() {
            if value.is_empty() || value.starts_with('-') {
                return Err(ShellError::InvalidEntry(format!(
                    "invalid git branch or revision '{value}'"
                )));
            }
        }
        let mut last_error = String::new();
        for attempt in 0..self.attempts.max(1) {
            if attempt > 0 {
                tracing::warn!(url, attempt, "retrying git clone: {last_error}");
                std::thread::sleep(self.retry_delay);
            }
            match self.clone_once(url, dest, options) {
                Ok(commit) => return Ok(commit),
                Err(CloneFailure::Missing(detail)) => return Err(ShellError::GitMissing(detail)),
                Err(CloneFailure::Failed(detail)) => last_error = detail,
            }
        }
        Err(ShellError::GitFailed {
            repository: url.to_string(),
            detail: last_error,
        })
    }

    fn git(
        &self,
        args: &[&str],
        cwd: Option<&Path>,
    ) -> std::result::Result<CommandOutput, CloneFailure> {
        let binary = self.binary.to_string_lossy();
        let mut argv = vec![binary.as_ref()];
        argv.extend_from_slice(args);
        run_command(&argv, cwd, self.command_timeout).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                CloneFailure::Missing(format!("{}: {e}", self.binary.display()))
            } else {
                CloneFailure::Failed(e.to_string())
            }
        })
    }

    fn clone_once(
        &self,
        url: &str,
        dest: &Path,
        options: &CloneOptions,
    ) -> std::result::Result<String, CloneFailure> {
        if fs::symlink_metadata(dest).is_ok() {
            fs::remove_dir_all(dest).map_err(|e| CloneFailure::Failed(e.to_string()))?;
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| CloneFailure::Failed(e.to_string()))?;
        }
        let dest_text = dest.to_string_lossy().into_owned();
        let shallow = options.shallow && options.revision.is_none();
        let mut args: Vec<&str> = vec!["clone"];
        if options.recursive {
            args.push("--recurse-submodules");
        }
        if let Some(branch) = &options.branch {
            args.extend(["-b", branch]);
        }
        if shallow {
            args.push("--depth=1");
        }
        args.extend(["--", url, &dest_text]);
        let mut result = self.git(&args, None)?;
        if !result.success && shallow && result.output.contains("does not support shallow") {
            tracing::warn!(url, "server refused a shallow clone, cloning in full");
            args.retain(|a| *a != "--depth=1");
            let _ = fs::remove_dir_all(dest);
            result = self.git(&args, None)?;
        }
        if !result.success {
            return Err(CloneFailure::Failed(result.output.trim().to_string()));
        }
        if let Some(revision) = &options.revision {
            let checkout = self.git(
                &["-C", &dest_text, "checkout", revision.as_str(), "--"],
                None,
            )?;
            if !checkout.success {
                return Err(CloneFailure::Failed(checkout.output.trim().to_string()));
            }
        }
        let log = self.git(&["-C", &dest_text, "log", "-1", "--pretty=%H"], None)?;
        if !log.success {
            return Err(CloneFailure::Failed(log.output.trim().to_string()));
        }
        let commit = log.output.trim().to_string();
        if !options.history {
            fs::remove_dir_all(dest.join(".git"))
                .map_err(|e| CloneFailure::Failed(e.to_string()))?;
        }
        Ok(commit)
    }
}

enum CloneFailure {
    Missing(String),
    Failed(String),
}

/// Unpacks a tar archive (plain or gzip; `compression` as in the job, autodetected
/// when absent) into `dest`, dropping `strip_components` leading components.
/// Entries that would land outside `dest` — `..`, absolute names, links pointing
/// out, writes through links — make the whole unpack fail. Device files and FIFOs
/// are skipped.
pub fn unpack_archive(
    archive: &Path,
    compression: Option<&str>,
    strip_components: u32,
    dest: &Path,
    url: &str,
) -> Result<()> {
    let bad = |detail: String| ShellError::BadArchive {
        url: url.to_string(),
        detail,
    };
    let mut file =
        fs::File::open(archive).map_err(|e| ShellError::io("cannot open archive", archive, e))?;
    let mut magic = [0u8; 2];
    let is_gzip = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file =
        fs::File::open(archive).map_err(|e| ShellError::io("cannot open archive", archive, e))?;
    let reader: Box<dyn Read> = match compression {
        Some("gz") | Some("gzip") | Some("tgz") => Box::new(flate2::read::GzDecoder::new(file)),
        None | Some("") | Some("none") if is_gzip => Box::new(flate2::read::GzDecoder::new(file)),
        None | Some("") | Some("none") => Box::new(file),
        Some(other) => {
            return Err(ShellError::Unsupported(format!(
                "archive compression '{other}'"
            )));
        }
    };
    fs::create_dir_all(dest).map_err(|e| ShellError::io("cannot create", dest, e))?;
    let mut tarball = tar::Archive::new(reader);
    for entry in tarball.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let kept: PathBuf = name
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .skip(strip_components as usize)
            .collect();
        if kept.as_os_str().is_empty() {
            continue;
        }
        let kept_text = kept.to_string_lossy().into_owned();
        let relative = checked_relative(&kept_text)?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink() || kind.is_hard_link()) {
            continue;
        }
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| bad(e.to_string()))?
                .ok_or_else(|| bad(format!("link {kept_text} without target")))?
                .into_owned();
            let start = if kind.is_symlink() {
                relative.parent().unwrap_or(Path::new("")).to_path_buf()
            } else {
                PathBuf::new()
            };
            if !stays_inside(&start, &target) {
                return Err(ShellError::UnsafePath {
                    path: kept_text,
                    reason: format!("link to '{}' points out of the tree", target.display()),
                });
            }
            if kind.is_hard_link() {
                // Hard link targets are archive names; apply the same stripping.
                let stripped: PathBuf = target
                    .components()
                    .skip(strip_components as usize)
                    .collect();
                let source = resolve_inside(dest, &stripped.to_string_lossy())?;
                let link = resolve_inside(dest, &kept_text)?;
                if let Some(parent) = link.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|e| ShellError::io("cannot create", parent, e))?;
                }
                fs::hard_link(&source, &link)
                    .map_err(|e| ShellError::io("cannot link", &link, e))?;
                continue;
            }
        }
        let target = match relative.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => {
                let parent = resolve_inside(dest, &parent.to_string_lossy())?;
                fs::create_dir_all(&parent)
                    .map_err(|e| ShellError::io("cannot create", &parent, e))?;
                resolve_inside(dest, &kept_text)?
            }
            None => dest.join(&relative),
        };
        if fs::symlink_metadata(&target)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            return Err(ShellError::UnsafePath {
                path: kept_text,
                reason: "replaces a symbolic link".into(),
            });
        }
        entry.set_preserve_permissions(false);
        entry.set_unpack_xattrs(false);
        entry
            .unpack(&target)
            .map_err(|e| bad(format!("{kept_text}: {e}")))?;
    }
    Ok(())
}

/// Whether `target`, read from directory `start` (both relative to the tree
/// root), stays inside the tree.
fn stays_inside(start: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: usize = start
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use lava_error::ErrorKind;

    #[test]
    fn link_targets_are_checked_lexically() {
        assert!(stays_inside(Path::new("a/b"), Path::new("../c")));
        assert!(stays_inside(Path::new("a"), Path::new("..")));
        assert!(!stays_inside(Path::new("a"), Path::new("../..")));
        assert!(!stays_inside(Path::new(""), Path::new("/etc/passwd")));
    }

    #[test]
    fn commands_run_without_a_shell_and_time_out() {
        let out = run_command(&["echo", "$(id)", ";", "x"], None, Duration::from_secs(5)).unwrap();
        assert!(out.success);
        assert_eq!(out.output, "$(id) ; x\n");
        let out = run_command(&["sleep", "5"], None, Duration::from_millis(100)).unwrap();
        assert!(!out.success);
        assert!(out.output.contains("timed out"));
    }

    /// A one-connection HTTP server on 127.0.0.1 started for a test: it reads the request
    /// head, sends it back through the receiver, then writes `response` as it is and closes
    /// (or, with `None`, keeps the connection open without answering for 5 s).
    fn serve(response: Option<Vec<u8>>) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = sender.send(String::from_utf8_lossy(&head).into_owned());
            match response {
                Some(bytes) => {
                    let _ = stream.write_all(&bytes);
                }
                None => std::thread::sleep(Duration::from_secs(5)),
            }
        });
        (base, receiver)
    }

    fn ok_response(body: &[u8], content_length: bool) -> Vec<u8> {
        let mut response = b"HTTP/1.1 200 OK\r\nConnection: close\r\n".to_vec();
        if content_length {
            response.extend(format!("Content-Length: {}\r\n", body.len()).bytes());
        }
        response.extend(b"\r\n");
        response.extend(body);
        response
    }

    #[test]
    fn http_archives_are_fetched_with_the_job_headers() {
        let (base, request) = serve(Some(ok_response(b"archive bytes", true)));
        let dir = tempfile::tempdir().unwrap();
        let headers = IndexMap::from([("X-Token".to_string(), "t0ken".to_string())]);
        let url = format!("{base}/defs/tests.tar.gz?ref=main");
        let path = UrlDownloader::default()
            .download(&url, &headers, dir.path())
            .unwrap();
        assert_eq!(path, dir.path().join("tests.tar.gz"));
        assert_eq!(fs::read(&path).unwrap(), b"archive bytes");
        let head = request.recv().unwrap();
        assert!(
            head.starts_with("GET /defs/tests.tar.gz?ref=main HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase().contains("x-token: t0ken\r\n"),
            "{head}"
        );
    }

    #[test]
    fn http_errors_name_the_url() {
        let (base, _request) = serve(Some(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        ));
        let dir = tempfile::tempdir().unwrap();
        let url = format!("{base}/missing.tgz");
        let error = UrlDownloader::default()
            .download(&url, &IndexMap::new(), dir.path())
            .unwrap_err();
        assert!(matches!(error, ShellError::DownloadFailed { .. }));
        assert_eq!(
            error.to_string(),
            format!("Unable to download {url}: the server answered 404 Not Found")
        );
        assert_eq!(error.kind(), ErrorKind::Job);
        assert!(
            fs::read_dir(dir.path()).unwrap().next().is_none(),
            "nothing kept"
        );

        // Nothing listening: connection refused, named.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/t.tgz", closed.local_addr().unwrap());
        drop(closed);
        let error = UrlDownloader::default()
            .download(&url, &IndexMap::new(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("Unable to download {url}: ")),
            "{error}"
        );
    }

    #[test]
    fn downloads_are_capped_in_size_and_time() {
        let small = UrlDownloader {
            max_bytes: 1000,
            ..UrlDownloader::default()
        };
        let dir = tempfile::tempdir().unwrap();
        for content_length in [true, false] {
            let (base, _request) = serve(Some(ok_response(&[b'x'; 4096], content_length)));
            let error = small
                .download(&format!("{base}/big.tgz"), &IndexMap::new(), dir.path())
                .unwrap_err()
                .to_string();
            assert!(
                error.ends_with("the archive is larger than the 1000 bytes accepted"),
                "{error}"
            );
            assert!(
                !dir.path().join("big.tgz").exists(),
                "the partial file is removed"
            );
        }
        // A local file over the cap is refused too.
        let local = dir.path().join("local.tgz");
        fs::write(&local, [b'x'; 4096]).unwrap();
        let url = format!("file://{}", local.display());
        let out = tempfile::tempdir().unwrap();
        assert!(small.download(&url, &IndexMap::new(), out.path()).is_err());
        let copied = UrlDownloader::default()
            .download(&url, &IndexMap::new(), out.path())
            .unwrap();
        assert_eq!(fs::read(copied).unwrap().len(), 4096);

        // A server that never answers: the timeout ends the wait.
        let (base, _request) = serve(None);
        let quick = UrlDownloader {
            timeout: Duration::from_millis(300),
            ..UrlDownloader::default()
        };
        let started = Instant::now();
        let error = quick
            .download(&format!("{base}/slow.tgz"), &IndexMap::new(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            error.ends_with("no complete answer within 0.3 s"),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn other_schemes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = UrlDownloader::default()
            .download("ftp://example.invalid/x.tgz", &IndexMap::new(), dir.path())
            .unwrap_err();
        assert!(matches!(error, ShellError::Unsupported(_)), "{error}");
        let error = UrlDownloader::default()
            .download("http://127.0.0.1:9/", &IndexMap::new(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("the URL names no file"), "{error}");
    }
}
