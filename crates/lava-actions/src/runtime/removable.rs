//! Run-time: `dd-image`, a removable deployment's image written to the device's secondary
//! media (`to: usb | sata | sd`) by the system the first deployment booted, as LAVA's
//! `DDAction` does.
//!
//! The dispatcher has already downloaded (and decompressed) the image into the job's scratch
//! directory; the device fetches it from the dispatcher's web server, which a lab publishes
//! as `http://<dispatcher_http_ip>/tmp/` over the scratch root (LAVA's
//! `DISPATCHER_DOWNLOAD_DIR`, served by Apache on a LAVA worker), and writes it straight to
//! the media without caching it on the device. One command line is sent on the console:
//!
//! - `download.tool download.options | dd of='<device>' bs=4M [tool.flags]`, or
//! - `download.tool download.options | writer.tool writer.options [tool.flags]`, or, with a
//!   writer and no download tool, `writer.tool writer.options [tool.flags]`,
//!
//! where the options' `{DOWNLOAD_URL}` is the image's URL and `{DEVICE}` the media's
//! `/dev/disk/by-id/<uuid>` path from the device's `parameters.media.<to>.<device>.uuid`.
//! LAVA resolves that path with `realpath` on the *dispatcher*, which only changes it when
//! the dispatcher happens to have a disk of that id; lava-rs sends the by-id path as it is,
//! the name the device's udev (or the lab's equivalent) gives the media.
//!
//! Then it waits for the download (or writer) tool's `prompt`, which says the transfer
//! started, and then for one of the tool prompts (`tool.prompts`, else LAVA's
//! [`DD_PROMPTS`](crate::deploy::removable::DD_PROMPTS): dd's closing statistics). Each wait
//! is bounded by the action's deadline, as LAVA's. Without a downloaded image the action does
//! nothing. The console is the namespace's, else the job's only live connection (LAVA's
//! removable jobs boot the first system in another namespace).
//!
//! One difference from LAVA: when dd reports that it wrote nothing (`0+0 records out`: the
//! download failed), LAVA carries on and the boot from the empty media fails later; lava-rs
//! ends the action with an InfrastructureError naming the cause ([`wrote_nothing`]).

use super::boot_commands::dispatcher_ip;
use super::console::{ConsoleConnection, take_console, wait_error};
use super::overlay_transfer::publish;
use lava_pipeline::value::{python_repr, scalar_string};
use lava_pipeline::{LavaError, LavaResult, RunContext};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// A tool of the job's `download:` or `writer:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// The absolute path of the program on the device.
    pub tool: String,
    /// Its options, with `{DOWNLOAD_URL}` and `{DEVICE}` placeholders.
    pub options: String,
    /// What the device prints once the tool has started.
    pub prompt: Option<String>,
}

impl Tool {
    fn from_value(value: Option<&Value>) -> Option<Tool> {
        let value = value.filter(|v| lava_pipeline::value::truthy(Some(v)))?;
        let get = |k: &str| value.get(k).and_then(scalar_string);
        Some(Tool {
            tool: get("tool").unwrap_or_default(),
            options: get("options").unwrap_or_default(),
            prompt: get("prompt"),
        })
    }
}

/// What `dd-image` sends and waits for, read from the deploy block (already validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSpec {
    /// `download:`: the tool fetching the image, its output piped to the writer.
    pub download: Option<Tool>,
    /// `writer:`: the tool writing the media, instead of dd.
    pub writer: Option<Tool>,
    /// `tool.flags`: appended to the writer's command.
    pub flags: Option<String>,
    /// `tool.prompts`, else LAVA's dd statistics patterns.
    pub tool_prompts: Vec<String>,
}

impl WriteSpec {
    /// The spec of a deploy block's parameters.
    pub fn from_params(params: &Mapping) -> WriteSpec {
        let tool = params.get("tool");
        let tool_prompts = match tool.and_then(|t| t.get("prompts")) {
            Some(Value::Sequence(items)) => items.iter().filter_map(scalar_string).collect(),
            _ => crate::deploy::removable::DD_PROMPTS
                .iter()
                .map(|p| p.to_string())
                .collect(),
        };
        WriteSpec {
            download: Tool::from_value(params.get("download")),
            writer: Tool::from_value(params.get("writer")),
            flags: tool
                .and_then(|t| t.get("flags"))
                .and_then(scalar_string)
                .filter(|f| !f.is_empty()),
            tool_prompts,
        }
    }

    /// The command line sent to the device, for the image at `url` and the media `device`.
    pub fn command_line(&self, url: &str, device: &str) -> String {
        let fill = |options: &str| {
            options
                .replace("{DOWNLOAD_URL}", url)
                .replace("{DEVICE}", device)
        };
        let mut writer = match &self.writer {
            Some(w) => format!("{} {}", w.tool, fill(&w.options)),
            // busybox's dd takes no other flags.
            None => format!("dd of='{device}' bs=4M"),
        };
        if let Some(flags) = &self.flags {
            writer.push(' ');
            writer.push_str(flags);
        }
        match &self.download {
            Some(d) => format!("{} {} | {writer}", d.tool, fill(&d.options)),
            None => writer,
        }
    }

    /// The prompt that says the transfer started: the download tool's, else the writer's.
    pub fn start_prompt(&self) -> Option<&str> {
        self.download
            .as_ref()
            .or(self.writer.as_ref())
            .and_then(|t| t.prompt.as_deref())
    }
}

/// The media's path on the device: `/dev/disk/by-id/<uuid>` of
/// `parameters.media.<to>.<media_device>`.
pub fn media_path(media: Option<&Value>, to: &str, media_device: &str) -> LavaResult<String> {
    media
        .and_then(|m| m.get(to))
        .and_then(|m| m.get(media_device))
        .and_then(|d| d.get("uuid"))
        .and_then(scalar_string)
        .map(|uuid| format!("/dev/disk/by-id/{uuid}"))
        .ok_or_else(|| LavaError::job(format!("Unable to find disk by id for {media_device}")))
}

/// The image's URL on the dispatcher's web server: `http://<ip>/tmp/<file relative to the
/// scratch root>`.
pub fn image_url(ip: &str, file: &Path, root: &Path) -> LavaResult<String> {
    let relative = file.strip_prefix(root).map_err(|_| {
        LavaError::configuration(format!(
            "the image {} is not under the dispatcher's download directory {}",
            file.display(),
            root.display()
        ))
    })?;
    Ok(format!("http://{ip}/tmp/{}", relative.display()))
}

/// `dd-image`: the device downloads the image and writes it to the media.
pub async fn dd_image(ctx: &mut RunContext) -> LavaResult<()> {
    let Some(file) = ctx
        .get_data("download-action", "image", "file")
        .and_then(scalar_string)
        .filter(|f| !f.is_empty())
        .map(PathBuf::from)
    else {
        ctx.logger
            .debug(format!("Skipping {} - nothing downloaded", ctx.meta().name));
        return Ok(());
    };
    let params = ctx.meta().parameters.clone();
    let to = params.get("to").and_then(scalar_string).unwrap_or_default();
    let media_device = params
        .get("device")
        .and_then(scalar_string)
        .unwrap_or_default();
    let device = media_path(ctx.job.device.parameter("media"), &to, &media_device)?;
    let root = ctx
        .job
        .scratch_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dispatcher = ctx.job.parameters.get("dispatcher").cloned();
    let ip = dispatcher_ip(dispatcher.as_ref(), Some("http"))
        .ok_or_else(|| LavaError::infrastructure("Unable to find dispatcher 'default' gateway"))?;
    let url = image_url(&ip, &file, &root)?;
    publish(&root, &file)?;
    let spec = WriteSpec::from_params(&params);
    let line = spec.command_line(&url, &device);
    let key = console_namespace(ctx);
    let Some(mut connection) = ctx.connections.remove(&key) else {
        return take_console(ctx).map(|_| ());
    };
    let result = match connection.as_any_mut().downcast_mut::<ConsoleConnection>() {
        Some(console) => write_media(ctx, console, &spec, &line).await,
        None => Err(LavaError::bug(
            "the namespace's connection is not a console connection",
        )),
    };
    ctx.connections.insert(key, connection);
    result
}

/// Whose console the device is written from: the namespace's connection, else the job's only
/// live connection. LAVA hands one connection from block to block whatever their namespaces,
/// so LAVA's removable jobs boot the first system in one namespace (`boot1`) and deploy to
/// the media in another (`boot2`); with several live connections the job must say which
/// (`connection-namespace`).
fn console_namespace(ctx: &RunContext) -> String {
    let own = ctx.connection_namespace();
    if ctx.connections.contains_key(&own) || ctx.connections.len() != 1 {
        return own;
    }
    let only = ctx.connections.keys().next().cloned().unwrap_or(own);
    ctx.logger
        .debug(format!("Using the connection of namespace '{only}'"));
    only
}

async fn write_media(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    spec: &WriteSpec,
    line: &str,
) -> LavaResult<()> {
    let start = spec
        .start_prompt()
        .ok_or_else(|| LavaError::job("missing prompt for download tool"))?
        .to_string();
    wait_after(ctx, console, Some(line), &[start]).await?;
    let done = wait_after(ctx, console, None, &spec.tool_prompts).await?;
    ctx.logger.debug("Changing prompt back to the shell's");
    if spec.writer.is_none() && wrote_nothing(&done.matched) {
        return Err(LavaError::infrastructure(format!(
            "dd-image: dd wrote nothing to the media ('{}'): the download failed",
            done.matched.trim()
        )));
    }
    Ok(())
}

/// dd's statistics for an empty input (`0+0 records out`, `0 bytes (0B) copied`): the
/// download gave nothing. LAVA takes them as success and fails later, at the boot from the
/// empty media; lava-rs stops here, naming the cause.
pub fn wrote_nothing(statistics: &str) -> bool {
    statistics.starts_with("0+0 records") || statistics.starts_with("0 bytes")
}

/// Sends `line` (if any), then waits for one of `prompts`.
async fn wait_after(
    ctx: &mut RunContext,
    console: &mut ConsoleConnection,
    line: Option<&str>,
    prompts: &[String],
) -> LavaResult<lava_connection::Match> {
    let compiled = lava_connection::Patterns::new(prompts)?;
    ctx.logger.debug(format!(
        "Changing prompt to {}",
        python_repr(&Value::Sequence(
            prompts.iter().map(|p| Value::String(p.clone())).collect()
        ))
    ));
    if let Some(line) = line {
        console.session().sendline(line).await?;
    }
    // As LAVA's: bounded by the action's deadline, not the connection timeout (dd prints
    // nothing until it is done).
    console
        .session()
        .wait_for(&compiled, ctx.deadline())
        .await
        .map_err(|e| wait_error(ctx, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn download_piped_into_dd() {
        let spec = WriteSpec::from_params(&mapping(
            "to: usb\ndevice: SanDisk\ndownload:\n  tool: /usr/bin/wget\n  prompt: HTTP request sent\n  \
             options: -S --progress=dot:giga -O - {DOWNLOAD_URL}\n",
        ));
        assert_eq!(spec.start_prompt(), Some("HTTP request sent"));
        assert_eq!(
            spec.tool_prompts,
            [r"[0-9]+\+[0-9]+ records out", r"[0-9]+ bytes \(.*\) copied"]
        );
        assert_eq!(
            spec.command_line(
                "http://10.0.0.1/tmp/7/downloads/image/disk.img",
                "/dev/disk/by-id/usb-SanDisk-0:0"
            ),
            "/usr/bin/wget -S --progress=dot:giga -O - http://10.0.0.1/tmp/7/downloads/image/disk.img \
             | dd of='/dev/disk/by-id/usb-SanDisk-0:0' bs=4M"
        );
    }

    #[test]
    fn a_writer_replaces_dd_and_flags_follow_it() {
        let writer = "writer:\n  tool: /usr/bin/bmaptool\n  options: copy {DOWNLOAD_URL} {DEVICE}\n  prompt: 'bmaptool: info'\n";
        let spec = WriteSpec::from_params(&mapping(&format!(
            "{writer}tool:\n  prompts: [copied]\n  flags: --nobmap\n"
        )));
        assert_eq!(spec.start_prompt(), Some("bmaptool: info"));
        assert_eq!(spec.tool_prompts, ["copied"]);
        assert_eq!(
            spec.command_line("http://h/tmp/i.img", "/dev/disk/by-id/x"),
            "/usr/bin/bmaptool copy http://h/tmp/i.img /dev/disk/by-id/x --nobmap"
        );
        // With a download tool too, the download's prompt is the one awaited.
        let spec = WriteSpec::from_params(&mapping(&format!(
            "{writer}download:\n  tool: /bin/wget\n  options: -O- {{DOWNLOAD_URL}}\n  prompt: Connecting\n"
        )));
        assert_eq!(spec.start_prompt(), Some("Connecting"));
        assert_eq!(
            spec.command_line("http://h/tmp/i.img", "/dev/sda"),
            "/bin/wget -O- http://h/tmp/i.img | /usr/bin/bmaptool copy http://h/tmp/i.img /dev/sda"
        );
    }

    #[test]
    fn empty_statistics_mean_nothing_was_written() {
        assert!(wrote_nothing("0+0 records out"));
        assert!(wrote_nothing("0 bytes (0B) copied"));
        assert!(!wrote_nothing("10+0 records out"));
        assert!(!wrote_nothing("41943040 bytes (40.0MB) copied"));
    }

    #[test]
    fn media_path_and_url() {
        let media: Value = serde_yaml::from_str(
            "usb: {SanDisk: {uuid: 'usb-SanDisk_Ultra_2006-0:0', device_id: 0}}",
        )
        .unwrap();
        assert_eq!(
            media_path(Some(&media), "usb", "SanDisk").unwrap(),
            "/dev/disk/by-id/usb-SanDisk_Ultra_2006-0:0"
        );
        let err = media_path(Some(&media), "sata", "SanDisk").unwrap_err();
        assert_eq!(err.kind, lava_pipeline::ErrorKind::Job);
        assert_eq!(
            image_url(
                "10.0.0.1:8080",
                Path::new("/var/lib/lava/dispatcher/tmp/7/downloads/image/d.img"),
                Path::new("/var/lib/lava/dispatcher/tmp"),
            )
            .unwrap(),
            "http://10.0.0.1:8080/tmp/7/downloads/image/d.img"
        );
        assert_eq!(
            image_url("h", Path::new("/elsewhere/d.img"), Path::new("/var"))
                .unwrap_err()
                .kind,
            lava_pipeline::ErrorKind::Configuration
        );
    }
}
