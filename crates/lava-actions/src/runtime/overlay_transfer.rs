//! Run-time: `overlay-unpack`, the test overlay fetched by the device itself after login
//! (the boot block's `transfer_overlay`), as LAVA's `OverlayUnpack` does.
//!
//! `transfer_method: http` (the default): the device removes any old copy, runs
//! `download_command http://<dispatcher_http_ip>/tmp/<path>` where `<path>` is the
//! overlay tarball relative to the dispatcher's scratch root (LAVA's
//! `DISPATCHER_DOWNLOAD_DIR`, which a lab's web server publishes as `/tmp`), then
//! `unpack_command <file>`. The tarball and the directories above it are opened to the web
//! server (files 0644, directories searchable). `transfer_method: nfs`: the device mounts
//! the overlay's directory (`download_command <nfs ip>:<location> /<dir>`) and unpacks
//! from it. Each command waits for the shell prompt. zmodem is not written yet.

use super::boot_commands::dispatcher_ip;
use super::console::{on_console, send_and_wait};
use lava_pipeline::value::scalar_string;
use lava_pipeline::{LavaError, LavaResult, RunContext};
use serde_yaml::Value;
use std::path::{Path, PathBuf};

/// The device commands of an http transfer: remove, download, unpack.
pub fn http_commands(
    download: &str,
    unpack: &str,
    ip: &str,
    overlay: &Path,
    root: &Path,
) -> LavaResult<Vec<String>> {
    let relative = overlay.strip_prefix(root).map_err(|_| {
        LavaError::configuration("overlay should already be in DISPATCHER_DOWNLOAD_DIR")
    })?;
    let name = overlay
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    Ok(vec![
        format!("rm {name}"),
        format!("{download} http://{ip}/tmp/{}", relative.display()),
        format!("{unpack} {name}"),
    ])
}

/// The device commands of an nfs transfer: mount, then unpack and unmount.
pub fn nfs_commands(download: &str, unpack: &str, ip: &str, location: &str) -> Vec<String> {
    let base = Path::new(location)
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let mount_dir = format!("/{base}");
    vec![
        format!("mkdir -p {mount_dir}; {download} {ip}:{location} {mount_dir}"),
        format!("{unpack} {mount_dir}/* /; umount {mount_dir}; rm -fr {mount_dir}"),
    ]
}

/// Opens `file` and the directories from `root` down to it to other users (the web
/// server): the file 0644, the directories gain `o+x` (searchable, not listable).
pub(crate) fn publish(root: &Path, file: &Path) -> LavaResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            LavaError::infrastructure(format!("Unable to publish {}: {e}", path.display()))
        })
    };
    set(file, 0o644)?;
    let mut dir = file.parent();
    while let Some(d) = dir {
        if !d.starts_with(root) || d == root {
            break;
        }
        let mode = std::fs::metadata(d)
            .map_err(|e| LavaError::infrastructure(format!("{}: {e}", d.display())))?
            .permissions()
            .mode();
        set(d, (mode & 0o7777) | 0o011)?;
        dir = d.parent();
    }
    Ok(())
}

/// LAVA's error when no dispatcher address is configured and there is no default route.
fn no_gateway() -> LavaError {
    LavaError::infrastructure("Unable to find dispatcher 'default' gateway")
}

/// `overlay-unpack`: the device fetches and unpacks the overlay.
pub async fn transfer_overlay(ctx: &mut RunContext) -> LavaResult<()> {
    let transfer = ctx
        .meta()
        .param("transfer_overlay")
        .cloned()
        .unwrap_or(Value::Null);
    let get = |k: &str| transfer.get(k).and_then(scalar_string).unwrap_or_default();
    let method = transfer
        .get("transfer_method")
        .and_then(scalar_string)
        .unwrap_or_else(|| "http".into());
    let (download, unpack) = (get("download_command"), get("unpack_command"));
    let dispatcher = ctx.job.parameters.get("dispatcher").cloned();
    let commands = match method.as_str() {
        "http" => {
            let overlay = ctx
                .get_data("compress-overlay", "output", "file")
                .and_then(scalar_string)
                .map(PathBuf::from)
                .ok_or_else(|| LavaError::job("No overlay file identified for the transfer."))?;
            let root = ctx
                .job
                .scratch_dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let ip = dispatcher_ip(dispatcher.as_ref(), Some("http")).ok_or_else(no_gateway)?;
            let commands = http_commands(&download, &unpack, &ip, &overlay, &root)?;
            publish(&root, &overlay)?;
            commands
        }
        "nfs" => {
            let location = ctx
                .get_data("test", "shared", "location")
                .and_then(scalar_string)
                .ok_or_else(|| LavaError::job("Test location not defined."))?;
            let ip = dispatcher_ip(dispatcher.as_ref(), Some("nfs")).ok_or_else(no_gateway)?;
            nfs_commands(&download, &unpack, &ip, &location)
        }
        other => {
            return Err(LavaError::job(format!(
                "transfer_method '{other}' of transfer_overlay cannot run in lava-rs yet"
            )));
        }
    };
    on_console!(ctx, console => async {
        for command in &commands {
            send_and_wait(ctx, console, command).await?;
        }
        Ok::<(), LavaError>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_paths_are_relative_to_the_scratch_root() {
        let commands = http_commands(
            "wget -S --progress=dot:giga",
            "tar -C / -xzf",
            "10.0.2.2",
            Path::new("/var/lib/lava/dispatcher/tmp/12/compress-overlay-1.2/overlay-1.2.tar.gz"),
            Path::new("/var/lib/lava/dispatcher/tmp"),
        )
        .unwrap();
        assert_eq!(
            commands,
            [
                "rm overlay-1.2.tar.gz",
                "wget -S --progress=dot:giga http://10.0.2.2/tmp/12/compress-overlay-1.2/overlay-1.2.tar.gz",
                "tar -C / -xzf overlay-1.2.tar.gz",
            ]
        );
        let err = http_commands(
            "w",
            "u",
            "ip",
            Path::new("/elsewhere/o.tgz"),
            Path::new("/var"),
        )
        .unwrap_err();
        assert_eq!(err.kind, lava_pipeline::ErrorKind::Configuration);
    }

    #[test]
    fn nfs_mounts_the_overlay_directory() {
        assert_eq!(
            nfs_commands(
                "mount -t nfs -o nolock",
                "cp -rf",
                "10.0.0.1",
                "/var/lib/lava/dispatcher/tmp/12/lava-overlay-x"
            ),
            [
                "mkdir -p /lava-overlay-x; mount -t nfs -o nolock 10.0.0.1:/var/lib/lava/dispatcher/tmp/12/lava-overlay-x /lava-overlay-x",
                "cp -rf /lava-overlay-x/* /; umount /lava-overlay-x; rm -fr /lava-overlay-x",
            ]
        );
    }

    #[test]
    fn publishing_opens_the_path_to_the_file_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let dir = root.join("12/compress");
        std::fs::create_dir_all(&dir).unwrap();
        for d in [root.join("12"), dir.clone()] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let file = dir.join("o.tar.gz");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        publish(root, &file).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o644);
        assert_eq!(mode(&dir), 0o711);
        assert_eq!(mode(&root.join("12")), 0o711);
    }
}
