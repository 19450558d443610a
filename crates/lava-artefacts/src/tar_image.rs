//! A tar image with a job's `overlays:` appended, in one streaming pass (LAVA's
//! `append-overlays` on a `format: tar` image).
//!
//! LAVA unpacks the image into a directory, untars each overlay at its `path` (or copies a
//! file there) and archives the directory again. Here the image is never unpacked: its
//! members are read one by one (decompressed by magic) and copied into the new archive
//! header for header, with the GNU long-name and pax records that precede them; members an
//! overlay replaces are left out (a directory keeps the image's entry), and the overlays'
//! members, with any missing parent directory (mode 0755, root's), follow at the end, with
//! their modes, owners and times. The merge rules are the cpio image's
//! ([`OverlayMerge`]): a later overlay wins a path. Only the overlays are held in memory;
//! an image without overlays is copied member for member, byte for byte. Member names that
//! are absolute or climb out with `..` are refused (an input fault). The new archive is
//! compressed as the caller says and replaces the output only once complete.
//!
//! ```no_run
//! use lava_artefacts::ramdisk::OverlaySource;
//! use lava_artefacts::tar_image::append_overlays_blocking;
//!
//! let overlays = [OverlaySource::Tarball { archive: "overlay.tar.gz".into(), at: "/".into() }];
//! let done = append_overlays_blocking("rootfs.tar".as_ref(), &overlays, None, "rootfs.tar".as_ref())?;
//! println!("{} members, {} new", done.entries, done.added);
//! # Ok::<(), lava_artefacts::ArtefactError>(())
//! ```

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::ArtefactError;
use crate::compression::{Compression, Encoder, open_decompressed};
use crate::newc::{CpioEntry, S_IFDIR, S_IFLNK, S_IFMT};
use crate::ramdisk::{
    OverlayMerge, OverlaySource, Repacked, Written, overlay_members, replace_when_written,
};

type Result<T> = std::result::Result<T, ArtefactError>;

/// Buffer size of the file writer under the compression stream.
const IO_BUFFER: usize = 64 * 1024;

/// Longest GNU long name or pax record block accepted: a corrupt header cannot make us
/// allocate more.
const MAX_EXTENSION: u64 = 1024 * 1024;

fn bad(msg: impl Into<String>) -> ArtefactError {
    ArtefactError::InvalidArchive(msg.into())
}

/// An error reading the image: an OS error is the worker's, anything else (a bad header,
/// a decompressor's complaint, a short archive) is the image's.
fn read_error(image: &Path, error: std::io::Error) -> ArtefactError {
    if error.raw_os_error().is_some() {
        ArtefactError::io(format!("Unable to read {}", image.display()), error)
    } else {
        bad(format!(
            "Unable to read the tar image {}: {error}",
            image.display()
        ))
    }
}

/// A NUL-terminated field or body as text.
fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The `path` of a pax extended header's records, if it has one.
fn pax_path(body: &[u8]) -> Option<String> {
    let mut rest = body;
    let mut path = None;
    while let Some(space) = rest.iter().position(|b| *b == b' ') {
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            break;
        }
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"path=") {
            path = Some(String::from_utf8_lossy(value).into_owned());
        }
        rest = &rest[len..];
    }
    path
}

/// Blocking: stream the tar `image` (compressed or not, by magic) into `output` with
/// `overlays` merged in (see [`OverlaySource`]), compressed as `compression` says
/// (`None`: plain tar). `output` may be `image` itself: it is replaced only once the new
/// archive is complete. On error nothing is left beside `output` and it is unchanged.
pub fn append_overlays_blocking(
    image: &Path,
    overlays: &[OverlaySource],
    compression: Option<Compression>,
    output: &Path,
) -> Result<Repacked> {
    let merge = OverlayMerge::new(overlay_members(overlays)?)?;
    replace_when_written(output, |partial| {
        write_merged(image, merge, compression, partial)
    })
}

/// [`append_overlays_blocking`] on tokio's blocking pool.
pub async fn append_overlays(
    image: PathBuf,
    overlays: Vec<OverlaySource>,
    compression: Option<Compression>,
    output: PathBuf,
) -> Result<Repacked> {
    tokio::task::spawn_blocking(move || {
        append_overlays_blocking(&image, &overlays, compression, &output)
    })
    .await
    .map_err(|e| ArtefactError::Bug(format!("tar image overlay append panicked: {e}")))?
}

/// The copy: image members the overlays keep (each with the extension records before it),
/// then the overlays' members. Returns (members, added).
fn write_merged(
    image: &Path,
    mut merge: OverlayMerge,
    compression: Option<Compression>,
    partial: &Path,
) -> Result<Written> {
    let failed =
        |e: std::io::Error| ArtefactError::io(format!("Unable to write {}", partial.display()), e);
    let file = std::fs::File::create(partial).map_err(failed)?;
    let encoder =
        Encoder::new(compression, BufWriter::with_capacity(IO_BUFFER, file)).map_err(failed)?;
    let mut builder = tar::Builder::new(encoder);
    let mut archive = tar::Archive::new(open_decompressed(image)?);
    let mut entries = 0;
    // Extension records (GNU long name or link, pax) waiting for the member they describe.
    let mut pending: Vec<(tar::Header, Vec<u8>)> = Vec::new();
    let mut long_name: Option<String> = None;
    let members = archive
        .entries()
        .map_err(|e| read_error(image, e))?
        .raw(true);
    for member in members {
        let mut member = member.map_err(|e| read_error(image, e))?;
        let header = member.header().clone();
        let kind = header.entry_type();
        if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions() {
            let size = header.size().map_err(|e| read_error(image, e))?;
            if size > MAX_EXTENSION {
                return Err(bad(format!(
                    "Tar image {}: an extension record of {size} bytes",
                    image.display()
                )));
            }
            let mut body = Vec::with_capacity(size as usize);
            member
                .read_to_end(&mut body)
                .map_err(|e| read_error(image, e))?;
            if kind.is_gnu_longname() {
                long_name = Some(text(&body));
            } else if kind.is_pax_local_extensions()
                && let Some(path) = pax_path(&body)
            {
                long_name = Some(path);
            }
            pending.push((header, body));
            continue;
        }
        let name = match long_name.take() {
            Some(name) => name,
            None => String::from_utf8_lossy(&member.path_bytes()).into_owned(),
        };
        let extensions = std::mem::take(&mut pending);
        // Global pax headers describe the archive, not a member: always kept.
        let keep = kind.is_pax_global_extensions() || merge.keep_path(&name, kind.is_dir())?;
        if !keep {
            continue;
        }
        for (extension, body) in &extensions {
            builder.append(extension, body.as_slice()).map_err(failed)?;
        }
        builder.append(&header, &mut member).map_err(|e| {
            if e.raw_os_error().is_some() {
                failed(e)
            } else {
                read_error(image, e)
            }
        })?;
        if !kind.is_pax_global_extensions() {
            entries += 1;
        }
    }
    if !pending.is_empty() {
        return Err(bad(format!(
            "Tar image {}: extension records without a member at its end",
            image.display()
        )));
    }
    let (additions, added) = merge.additions();
    for entry in &additions {
        append_member(&mut builder, entry).map_err(failed)?;
    }
    builder
        .into_inner()
        .map_err(failed)?
        .finish()
        .map_err(failed)?
        .into_inner()
        .map_err(|e| failed(e.into_error()))?;
    Ok(Written {
        entries: entries + additions.len(),
        added,
        spliced: false,
    })
}

/// One overlay member as a ustar member (GNU long names when a path needs one).
fn append_member<W: Write>(
    builder: &mut tar::Builder<W>,
    entry: &CpioEntry,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_mode(entry.mode & 0o7777);
    header.set_uid(entry.uid.into());
    header.set_gid(entry.gid.into());
    header.set_mtime(entry.mtime.into());
    match entry.mode & S_IFMT {
        S_IFDIR => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            let name = format!("{}/", entry.name.trim_end_matches('/'));
            builder.append_data(&mut header, name, std::io::empty())
        }
        S_IFLNK => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            let target = String::from_utf8_lossy(&entry.data).into_owned();
            builder.append_link(&mut header, &entry.name, target)
        }
        _ => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(entry.data.len() as u64);
            builder.append_data(&mut header, &entry.name, entry.data.as_slice())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_give_the_path() {
        let body = b"18 linkpath=a/b/c\n16 path=x/y/zzz\n";
        assert_eq!(pax_path(body).as_deref(), Some("x/y/zzz"));
        assert_eq!(pax_path(b"12 mtime=10\n"), None);
        assert_eq!(pax_path(b"999 path=short\n"), None, "a length past the end");
    }
}
