//! The overlay tarball (`compress-overlay`): a gzip tar of the results directory,
//! members named by the full results path without its leading `/`
//! (`lava-1234/…`), plus `root/…` when present. Reproducible: entries in sorted
//! order, mtime 0, uid/gid 0 owned by `root`, modes 0755 for directories and
//! executables, 0644 otherwise; the gzip header carries no name or time.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Result, ShellError};

/// The written tarball.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OverlayTarball {
    /// Where the tarball was written.
    pub path: PathBuf,
    /// Hex SHA-256 of the file (LAVA logs the overlay's checksum).
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

fn tar_error(e: impl std::fmt::Display) -> ShellError {
    ShellError::Tarball(e.to_string())
}

/// Packs `<location>/<results_dir>` (and `<location>/root` if it exists) into
/// `output`. Blocking; see [`build_tarball_async`].
pub fn build_tarball(location: &Path, results_dir: &str, output: &Path) -> Result<OverlayTarball> {
    let member = results_dir.trim_start_matches('/').trim_end_matches('/');
    crate::paths::checked_relative(member)?;
    let file =
        fs::File::create(output).map_err(|e| ShellError::io("cannot create tarball", output, e))?;
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .write(file, flate2::Compression::default());
    let mut builder = tar::Builder::new(gzip);
    builder.follow_symlinks(false);
    add_tree(&mut builder, &location.join(member), member)?;
    let root = location.join("root");
    if root.is_dir() {
        add_tree(&mut builder, &root, "root")?;
    }
    let gzip = builder.into_inner().map_err(tar_error)?;
    let mut file = gzip.finish().map_err(tar_error)?;
    file.flush().map_err(tar_error)?;
    drop(file);
    let bytes = fs::read(output).map_err(|e| ShellError::io("cannot read tarball", output, e))?;
    Ok(OverlayTarball {
        path: output.to_path_buf(),
        sha256: format!("{:x}", Sha256::digest(&bytes)),
        size: bytes.len() as u64,
    })
}

/// [`build_tarball`] on tokio's blocking pool.
pub async fn build_tarball_async(
    location: PathBuf,
    results_dir: String,
    output: PathBuf,
) -> Result<OverlayTarball> {
    tokio::task::spawn_blocking(move || build_tarball(&location, &results_dir, &output))
        .await
        .map_err(tar_error)?
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    let _ = header.set_username("root");
    let _ = header.set_groupname("root");
    header
}

fn add_tree<W: Write>(builder: &mut tar::Builder<W>, path: &Path, name: &str) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(|e| ShellError::io("cannot read", path, e))?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target =
            fs::read_link(path).map_err(|e| ShellError::io("cannot read link", path, e))?;
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        builder
            .append_link(&mut h, name, &target)
            .map_err(tar_error)?;
    } else if kind.is_dir() {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        builder
            .append_data(&mut h, format!("{name}/"), std::io::empty())
            .map_err(tar_error)?;
        let mut children: Vec<_> = fs::read_dir(path)
            .map_err(|e| ShellError::io("cannot list", path, e))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| ShellError::io("cannot list", path, e))?;
        children.sort();
        for child in children {
            let child_name = child
                .to_str()
                .ok_or_else(|| tar_error(format!("non UTF-8 file name in {}", path.display())))?;
            add_tree(builder, &path.join(&child), &format!("{name}/{child_name}"))?;
        }
    } else if kind.is_file() {
        let executable = is_executable(&meta);
        let mut h = header(
            tar::EntryType::Regular,
            if executable { 0o755 } else { 0o644 },
            meta.len(),
        );
        let file = fs::File::open(path).map_err(|e| ShellError::io("cannot open", path, e))?;
        builder.append_data(&mut h, name, file).map_err(tar_error)?;
    }
    // Sockets, FIFOs and devices have no place in an overlay: skipped.
    Ok(())
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}
