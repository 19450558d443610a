//! Downloads: `download-retry` (a retry action) with one handler chosen by the URL
//! scheme (`http-download`, `file-download`, `scp-download`, `rclone-download`,
//! `pre-downloaded`), plus the image `overlays` LAVA appends to the image.

use super::apply_overlay::AppendOverlays;
use super::lava_overlay::CreateOverlay;
use lava_pipeline::BlockLookups;
use lava_pipeline::params::namespace;
use lava_pipeline::{
    Action, ErrorKind, LavaError, LavaResult, Pipeline, PipelineBuilder, RunContext,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// Compression formats a download may declare.
pub const COMPRESSIONS: [&str; 5] = ["gz", "bz2", "xz", "zip", "zstd"];
/// Formats decompressed while downloading (the file name loses its last suffix).
pub const DECOMPRESSED_WHILE_DOWNLOADING: [&str; 4] = ["bz2", "gz", "xz", "zstd"];

/// A temporary directory name for an action's downloads, unique in the job (LAVA's
/// `mkdtemp`); resolved under the job's temporary directory at run time.
pub fn download_dir(pipeline: &PipelineBuilder<'_>, purpose: &str) -> String {
    format!("{}-{purpose}", pipeline.parent_level().unwrap_or("0"))
}

/// Where the image `key` is downloaded at run time: `<job scratch>/downloads/<key>`, one
/// directory per image (two images may share a file name).
pub fn download_path(ctx: &RunContext, key: &str) -> std::path::PathBuf {
    crate::runtime::test_overlay::job_tmp_dir(ctx)
        .join("downloads")
        .join(key)
}

/// The parts of a URL LAVA uses (Python's `urlparse`: scheme, netloc, path).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Url {
    /// The scheme before `:`, lowercased (`http`, `file`, `scp`...); empty when there is none.
    pub scheme: String,
    /// The host part after `//` (with user and port), empty when there is none.
    pub netloc: String,
    /// The path, without query or fragment.
    pub path: String,
    /// The whole URL as given.
    pub full: String,
}

impl Url {
    /// Splits `text` into scheme, netloc and path the way Python's `urlparse` does.
    pub fn parse(text: &str) -> Url {
        let mut scheme = String::new();
        let mut rest = text;
        if let Some(colon) = text.find(':') {
            let candidate = &text[..colon];
            let valid = candidate
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && candidate
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if valid {
                scheme = candidate.to_ascii_lowercase();
                rest = &text[colon + 1..];
            }
        }
        let mut netloc = String::new();
        if let Some(after) = rest.strip_prefix("//") {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            netloc = after[..end].to_string();
            rest = &after[end..];
        }
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        Url {
            scheme,
            netloc,
            path: rest[..end].to_string(),
            full: text.to_string(),
        }
    }

    /// The last component of the path.
    pub fn basename(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }
}

/// Which handler downloads a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// `http:` and `https:` URLs: `http-download`.
    Http,
    /// `file:` URLs: `file-download`.
    File,
    /// `scp:` URLs: `scp-download`.
    Scp,
    /// `rclone:` URLs: `rclone-download`.
    Rclone,
    /// `downloads:` URLs: a file already fetched by an earlier `downloads` deploy.
    PreDownloaded,
}

impl Handler {
    /// The handler for a URL scheme, or LAVA's error for an unsupported one.
    pub fn for_scheme(scheme: &str) -> LavaResult<Handler> {
        match scheme {
            "http" | "https" => Ok(Handler::Http),
            "file" => Ok(Handler::File),
            "scp" => Ok(Handler::Scp),
            "rclone" => Ok(Handler::Rclone),
            "downloads" => Ok(Handler::PreDownloaded),
            other => Err(LavaError::job(format!(
                "Unsupported url protocol scheme: {other}"
            ))),
        }
    }
    fn identity(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Handler::Http => (
                "http-download",
                "HttpDownloadAction",
                "use http to download the file",
                "http download",
            ),
            Handler::File => (
                "file-download",
                "FileDownloadAction",
                "copy a local file",
                "local file copy",
            ),
            Handler::Scp => (
                "scp-download",
                "ScpDownloadAction",
                "Use scp to copy the file",
                "scp download",
            ),
            Handler::Rclone => (
                "rclone-download",
                "RcloneDownloadAction",
                "use rclone to download the file",
                "rclone download",
            ),
            Handler::PreDownloaded => (
                "pre-downloaded",
                "PreDownloadedAction",
                "Map to the correct downloaded path",
                "pre downloaded",
            ),
        }
    }
}

/// `download-retry`: download `params.url` into `path` (retried).
#[derive(Debug)]
pub struct DownloaderAction {
    /// The image key (`kernel`, `rootfs`, ...): the label of the downloaded file.
    pub key: String,
    /// Download directory.
    pub path: String,
    /// The image parameters (`url`, `compression`, `overlays`, ...).
    pub params: Mapping,
    /// Store under `<path>/<key>` (default, unless `params.uniquify` is false).
    pub uniquify: bool,
}

impl DownloaderAction {
    /// Downloads the image `key` described by `params` into the directory `path` (`uniquify` defaults to true).
    pub fn new(key: &str, path: &str, params: Mapping) -> Self {
        let uniquify = params.flag_or("uniquify", true);
        DownloaderAction {
            key: key.to_string(),
            path: path.to_string(),
            params,
            uniquify,
        }
    }

    /// Store directly in `path` rather than `<path>/<key>`.
    pub fn without_uniquify(mut self) -> Self {
        self.uniquify = false;
        self
    }
}

#[async_trait]
impl Action for DownloaderAction {
    action_identity!(
        "download-retry",
        "DownloaderAction",
        "download with retry",
        "download-retry"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let url = match self.params.get("url") {
            None | Some(Value::Null) => {
                return Err(LavaError::job(format!(
                    "Invalid deploy action: 'url' is missing for '{}'",
                    self.key
                )));
            }
            Some(v) => lava_pipeline::value::scalar_string(v).unwrap_or_default(),
        };
        let url = Url::parse(&url);
        let handler = Handler::for_scheme(&url.scheme)?;
        let path = if self.uniquify {
            format!("{}/{}", self.path.trim_end_matches('/'), self.key)
        } else {
            self.path.clone()
        };
        pipeline.add(DownloadHandler {
            handler,
            key: self.key.clone(),
            path,
            url,
            params: self.params.clone(),
        })?;
        let overlays = self
            .params
            .get("overlays")
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        for (name, overlay) in &overlays {
            let name = lava_pipeline::value::scalar_string(name).unwrap_or_default();
            if name == "lava" {
                continue;
            }
            pipeline.add(DownloaderAction::new(
                &format!("{}.{name}", self.key),
                &self.path,
                overlay.as_mapping().cloned().unwrap_or_default(),
            ))?;
        }
        if !overlays.is_empty() {
            let ns = namespace(pipeline.parameters()).to_string();
            if overlays.contains_key("lava") && !pipeline.job().test_needs_overlay(&ns) {
                pipeline.add(CreateOverlay::new())?;
            }
            pipeline.add(AppendOverlays::new(&self.key, self.params.clone()))?;
        }
        Ok(())
    }
}

/// One download: the handler chosen by the URL scheme.
#[derive(Debug)]
pub struct DownloadHandler {
    /// The handler chosen by the URL's scheme.
    pub handler: Handler,
    /// The deploy image key (e.g. `kernel`, `rootfs`).
    pub key: String,
    /// The directory the file goes to.
    pub path: String,
    /// The image's URL.
    pub url: Url,
    /// The image's block (`url`, `compression`, `sha256sum`...).
    pub params: Mapping,
}

impl DownloadHandler {
    /// Where the file lands: the URL's file name, without the compression suffix when it
    /// is decompressed while downloading (never for a ramdisk).
    pub fn file_name(&self) -> String {
        let name = self.url.basename();
        let compression = if self.key == "ramdisk" {
            None
        } else {
            self.params.get("compression").and_then(Value::as_str)
        };
        let stripped = match compression {
            Some(c) if DECOMPRESSED_WHILE_DOWNLOADING.contains(&c) => match name.rsplit_once('.') {
                Some((stem, _)) => stem,
                None => name,
            },
            _ => name,
        };
        format!("{}/{stripped}", self.path.trim_end_matches('/'))
    }

    fn check(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if self.handler == Handler::PreDownloaded {
            if self.url.scheme != "downloads" {
                ctx.error("downloads:// url scheme is invalid");
            }
            if self.url.path.is_empty() && self.url.netloc.is_empty() {
                ctx.error("Invalid path in downloads:// url");
            }
            return Ok(());
        }
        if self.key.is_empty() || self.key.contains('/') {
            return Err(LavaError::job(format!(
                "Invalid key {}",
                lava_python::str_repr(&self.key)
            )));
        }
        if self.file_name().ends_with('/') {
            return Err(LavaError::job(format!(
                "Cannot download a directory for {}",
                self.key
            )));
        }
        if let Some(c) = self.params.truthy_value("compression") {
            let c = lava_pipeline::value::scalar_string(c).unwrap_or_default();
            if !COMPRESSIONS.contains(&c.as_str()) {
                ctx.error(format!("Unknown 'compression' format '{c}'"));
            }
        }
        if let Some(a) = self.params.truthy_value("archive") {
            let a = lava_pipeline::value::scalar_string(a).unwrap_or_default();
            if a != "tar" {
                ctx.error(format!("Unknown 'archive' format '{a}'"));
            }
        }
        if self.handler == Handler::File && std::fs::metadata(&self.url.path).is_err() {
            ctx.error(format!(
                "Image file '{}' does not exist or is not readable",
                self.url.path
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Action for DownloadHandler {
    fn name(&self) -> &str {
        self.handler.identity().0
    }
    fn class_name(&self) -> &str {
        self.handler.identity().1
    }
    fn description(&self) -> &str {
        self.handler.identity().2
    }
    fn summary(&self) -> &str {
        self.handler.identity().3
    }
    fn url(&self) -> Option<String> {
        Some(self.url.full.clone())
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        self.check(ctx)
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        // A deployment serving the files (TFTP) gives an absolute directory; the others
        // download into the job's scratch directory, one directory per image (two
        // images may share a file name).
        let dir = if Path::new(&self.path).is_absolute() {
            PathBuf::from(&self.path)
        } else {
            download_path(ctx, &self.key)
        };
        let file =
            crate::runtime::image_download::download_image(ctx, &self.key, &dir, &self.params)
                .await?;
        // LAVA's TFTP deployments name the file relative to the TFTP root (an `nbd`
        // deployment's `nbdroot` is not under it).
        let to = ctx.meta().param("to").and_then(Value::as_str);
        let served = ctx
            .get_data("tftp-deploy", "tftp", "tftp_dir")
            .and_then(Value::as_str)
            .is_some_and(|tftp_dir| Path::new(&self.path).starts_with(tftp_dir));
        if matches!(to, Some("tftp" | "nbd"))
            && served
            && let Some(suffix) = ctx
                .get_data("tftp-deploy", "tftp", "suffix")
                .and_then(Value::as_str)
                .map(str::to_string)
        {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            let relative = Path::new(&suffix).join(&self.key).join(name.as_ref());
            ctx.set_data(
                "download-action",
                "file",
                &self.key,
                relative.display().to_string(),
            );
        }
        Ok(())
    }
}
