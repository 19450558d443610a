//! A ramdisk repacked with a test overlay merged in, in one streaming pass (what LAVA's
//! `extract-overlay-ramdisk`, `apply-overlay-tftp` and `compress-ramdisk` do together).
//!
//! LAVA unpacks the ramdisk with `cpio`, untars the overlay at its root and repacks it with
//! `find . | cpio --create --format=newc` and `gzip`. Here the archive is never unpacked:
//! the decompressed cpio `newc` stream is read member by member ([`crate::newc`]) and
//! copied into a gzip `newc` stream, members the overlay replaces are left out, and the
//! overlay's members (with any missing parent directories, mode 0755) are added at the end
//! of the last archive. Only the overlay (a few kilobytes of scripts) is held in memory.
//! Entries are kept byte for byte (inode numbers, modes, owners, times, hard links, archive
//! boundaries), so a ramdisk without an overlay round-trips to the same cpio bytes.
//!
//! The same pass serves LAVA's `append-overlays` on a `cpio.newc` image
//! ([`append_overlays`]): several overlays, each a tarball unpacked at a directory of the
//! image or a file copied to a path ([`OverlaySource`]), and the result compressed as the
//! image's `compression:` says (or left plain). Member
//! names that are absolute or climb out with `..` are refused (an input fault), in the
//! ramdisk and in the overlay alike. The work runs on tokio's blocking pool; a failed repack
//! leaves no file behind.
//!
//! What happens when: with gzip output and an image that is one gzip member, the new file
//! is spliced ([`crate::gzip_append`]): the image's compressed bytes are kept up to the last
//! deflate block before the appended members and only the rest is compressed
//! ([`Repacked::spliced`]). Every other case takes the full path: the image decompressed
//! on a thread of its own while this one copies the members and compresses everything
//! again (another output compression, an xz, zstd, bzip2 or plain image, several gzip
//! members, a member the overlay replaces before the image's end, and any error, which the
//! full path reports as it always has). Both write the same uncompressed bytes through one
//! copy loop; [`append_overlays_recompressed_blocking`] forces the full path.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::ArtefactError;
use crate::compression::{Compression, Encoder, open_decompressed, open_decompressed_ahead};
use crate::newc::{CpioEntry, NewcReader, NewcWriter, S_IFDIR, checked_member};
use crate::tar::{TarMember, read_tar};

type Result<T> = std::result::Result<T, ArtefactError>;

/// Buffer size of the file reader and writer around the compression streams.
const IO_BUFFER: usize = 64 * 1024;

/// What [`repack_with_overlay`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repacked {
    /// The repacked ramdisk.
    pub path: PathBuf,
    /// Members in the new archive (not counting trailers).
    pub entries: usize,
    /// Members the overlay added (not counting replaced ones).
    pub added: usize,
    /// Whether the gzip output kept the image's own compressed bytes up to the added
    /// members ([`crate::gzip_append`]) instead of compressing everything again.
    pub spliced: bool,
}

/// What one way of writing an archive did, before the rename ([`replace_when_written`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Members in the new archive (not counting trailers).
    pub entries: usize,
    /// Members the overlays added.
    pub added: usize,
    /// Whether [`crate::gzip_append`] wrote it.
    pub spliced: bool,
}

/// Merges an overlay into a stream of ramdisk members as untarring it at the ramdisk root
/// would. Feed every ramdisk member to [`OverlayMerge::keep`] in order (it says whether
/// the member stays), then [`OverlayMerge::additions`] gives the members to append:
/// overlay members replace ramdisk members of the same path (a directory keeps the
/// ramdisk's entry), missing parent directories are created (mode 0755, root's), new members
/// keep their owners and times and get fresh inode numbers. When the overlay names a path twice, the last one wins.
#[derive(Clone)]
pub struct OverlayMerge {
    /// The overlay's members with their checked paths, last occurrence of each path only.
    members: Vec<(String, TarMember)>,
    /// Overlay member paths, to whether the member is a directory.
    by_path: BTreeMap<String, bool>,
    /// Paths the overlay touches (members and their parents) that the ramdisk has,
    /// and whether the ramdisk's member is a directory.
    present: BTreeMap<String, bool>,
    wanted: BTreeSet<String>,
    max_ino: u32,
    /// Whether the ramdisk's last member is named `./path` (then added members are too:
    /// they land in its archive).
    dot_prefix: bool,
}

impl OverlayMerge {
    /// Checks every overlay member's path (an input fault for one leaving the root).
    pub fn new(overlay: Vec<TarMember>) -> Result<Self> {
        let mut last = BTreeMap::new();
        let mut paths = Vec::with_capacity(overlay.len());
        for (i, member) in overlay.iter().enumerate() {
            let path = checked_member(&member.name)?;
            last.insert(path.clone(), i);
            paths.push(path);
        }
        let mut members = Vec::new();
        let mut by_path = BTreeMap::new();
        let mut wanted = BTreeSet::new();
        for (i, (member, path)) in overlay.into_iter().zip(paths).enumerate() {
            if path == "." || last[&path] != i {
                continue;
            }
            wanted.extend(parents(&path));
            wanted.insert(path.clone());
            by_path.insert(path.clone(), member.is_dir());
            members.push((path, member));
        }
        Ok(OverlayMerge {
            members,
            by_path,
            present: BTreeMap::new(),
            wanted,
            max_ino: 0,
            dot_prefix: false,
        })
    }

    /// Records a ramdisk member; false when the overlay replaces it.
    pub fn keep(&mut self, entry: &CpioEntry) -> Result<bool> {
        self.max_ino = self.max_ino.max(entry.ino);
        self.keep_path(&entry.name, entry.is_dir())
    }

    /// Records an image member by its name as written and whether it is a directory
    /// (archives without inode numbers, such as tar); false when the overlay replaces it.
    pub fn keep_path(&mut self, name: &str, is_dir: bool) -> Result<bool> {
        let path = checked_member(name)?;
        if path != "." {
            self.dot_prefix = name.starts_with("./");
        }
        if !self.wanted.contains(&path) {
            return Ok(true);
        }
        let keep = match self.by_path.get(&path) {
            None => true,
            Some(&member_is_dir) => is_dir && member_is_dir,
        };
        self.present.insert(path, is_dir);
        Ok(keep)
    }

    /// The members to append after the ramdisk's, and how many of them are new paths.
    pub fn additions(self) -> (Vec<CpioEntry>, usize) {
        let prefix = if self.dot_prefix { "./" } else { "" };
        let mut next_ino = self.max_ino + 1;
        let mut out = Vec::new();
        // Paths added so far, and whether each is a directory.
        let mut emitted: BTreeMap<String, bool> = BTreeMap::new();
        let mut added = 0;
        let mut push = |out: &mut Vec<CpioEntry>, path: &str, member: TarMember| {
            let mut entry = CpioEntry::new(format!("{prefix}{path}"), member.mode, member.data);
            entry.ino = next_ino;
            entry.uid = member.uid;
            entry.gid = member.gid;
            entry.mtime = u32::try_from(member.mtime).unwrap_or(u32::MAX);
            next_ino += 1;
            out.push(entry);
        };
        for (path, member) in self.members {
            for parent in parents(&path) {
                if !self.present.contains_key(&parent) && !emitted.contains_key(&parent) {
                    let dir = TarMember::new(parent.clone(), S_IFDIR | 0o755, Vec::new());
                    push(&mut out, &parent, dir);
                    emitted.insert(parent, true);
                    added += 1;
                }
            }
            let is_dir = member.is_dir();
            let existing = self.present.get(&path).or(emitted.get(&path));
            match existing {
                Some(true) if is_dir => continue,
                Some(_) => {}
                None => added += 1,
            }
            push(&mut out, &path, member);
            emitted.insert(path, is_dir);
        }
        (out, added)
    }
}

/// Parent directories of a member path, outermost first.
fn parents(path: &str) -> Vec<String> {
    path.match_indices('/')
        .map(|(i, _)| path[..i].to_string())
        .collect()
}

/// Merges `overlay` into in-memory `entries` (see [`OverlayMerge`]); returns how many
/// members were added (not counting replaced ones).
pub fn merge_overlay(entries: &mut Vec<CpioEntry>, overlay: &[TarMember]) -> Result<usize> {
    let mut merge = OverlayMerge::new(overlay.to_vec())?;
    let mut kept = Vec::with_capacity(entries.len());
    for entry in entries.drain(..) {
        if merge.keep(&entry)? {
            kept.push(entry);
        }
    }
    let (additions, added) = merge.additions();
    kept.extend(additions);
    *entries = kept;
    Ok(added)
}

/// The overlay tarball's members (gzip or plain tar).
fn read_overlay(path: &Path) -> Result<Vec<TarMember>> {
    let mut tar = Vec::new();
    open_decompressed(path)?
        .read_to_end(&mut tar)
        .map_err(|e| {
            ArtefactError::InvalidArchive(format!(
                "Unable to decompress the overlay {}: {e}",
                path.display()
            ))
        })?;
    read_tar(&tar)
}

/// One overlay of an image, placed as a job's `overlays:` entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlaySource {
    /// A tarball (gzip or plain tar) unpacked at the directory `at` of the image (`/`:
    /// its root; the LAVA test overlay goes there).
    Tarball {
        /// The tarball.
        archive: PathBuf,
        /// An absolute directory inside the image.
        at: String,
    },
    /// A file copied to the path `at` of the image (mode 0755 when its owner may execute
    /// it, 0644 otherwise).
    File {
        /// The file.
        file: PathBuf,
        /// An absolute file path inside the image.
        at: String,
    },
}

/// `name` placed under the image directory `at` (`/` is the root).
fn placed(at: &str, name: &str) -> String {
    let dir = at.trim_matches('/');
    let name = name.trim_start_matches("./");
    match (dir.is_empty(), name.is_empty() || name == ".") {
        (true, _) => name.to_string(),
        (false, true) => dir.to_string(),
        (false, false) => format!("{dir}/{name}"),
    }
}

/// The members the overlays add to an image, in order (a later one wins a path), with
/// their paths inside the image. A path leaving the image root is an input fault.
pub fn overlay_members(overlays: &[OverlaySource]) -> Result<Vec<TarMember>> {
    let mut members = Vec::new();
    for overlay in overlays {
        match overlay {
            OverlaySource::Tarball { archive, at } => {
                for mut member in read_overlay(archive)? {
                    member.name = placed(at, &member.name);
                    members.push(member);
                }
            }
            OverlaySource::File { file, at } => {
                let read = |e| ArtefactError::io(format!("Unable to read {}", file.display()), e);
                let data = std::fs::read(file).map_err(read)?;
                let executable = {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::metadata(file).map_err(read)?.permissions().mode() & 0o100 != 0
                };
                let perm = if executable { 0o755 } else { 0o644 };
                members.push(TarMember::new(
                    placed(at, ""),
                    crate::newc::S_IFREG | perm,
                    data,
                ));
            }
        }
    }
    for member in &members {
        checked_member(&member.name)?;
    }
    Ok(members)
}

/// Blocking: stream `ramdisk` (cpio newc; gzip, xz, zstd, bzip2 or plain, by magic) into
/// `output` as gzip cpio newc, with the overlay tarball (gzip or plain tar) merged in if
/// given. Call from a blocking thread (see [`repack_with_overlay`]). On error nothing is
/// left at `output` or beside it.
pub fn repack_blocking(ramdisk: &Path, overlay: Option<&Path>, output: &Path) -> Result<Repacked> {
    let overlays: Vec<OverlaySource> = overlay
        .map(|archive| OverlaySource::Tarball {
            archive: archive.to_path_buf(),
            at: "/".into(),
        })
        .into_iter()
        .collect();
    append_overlays_blocking(ramdisk, &overlays, Some(Compression::Gz), output)
}

/// Blocking: stream the cpio newc `image` (compressed or not, by magic) into `output`
/// with `overlays` merged in (see [`OverlaySource`]), compressed as `compression` says
/// (`None`: plain cpio). `output` may be `image` itself: it is replaced only once the
/// new archive is complete. On error nothing is left beside `output` and it is unchanged.
pub fn append_overlays_blocking(
    image: &Path,
    overlays: &[OverlaySource],
    compression: Option<Compression>,
    output: &Path,
) -> Result<Repacked> {
    let merge = OverlayMerge::new(overlay_members(overlays)?)?;
    replace_when_written(output, |partial| {
        if compression == Some(Compression::Gz)
            && let Some(written) = crate::gzip_append::append(image, merge.clone(), partial)
        {
            return Ok(written);
        }
        write_merged(image, merge, compression, partial)
    })
}

/// [`append_overlays_blocking`] always by the full path: the image decompressed and
/// compressed again as a whole, never spliced ([`crate::gzip_append`]). The reference the
/// splice is compared with (tests, measurements).
pub fn append_overlays_recompressed_blocking(
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

/// Writes `output` through `write` (given a `.partial` path beside it), then renames it
/// into place: `output` changes only once the new archive is complete, and on error
/// nothing is left beside it.
pub(crate) fn replace_when_written(
    output: &Path,
    write: impl FnOnce(&Path) -> Result<Written>,
) -> Result<Repacked> {
    let partial = output.with_extension("partial");
    let written = write(&partial).and_then(|done| {
        std::fs::rename(&partial, output)
            .map_err(|e| ArtefactError::io(format!("Unable to write {}", output.display()), e))?;
        Ok(done)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    let written = written?;
    Ok(Repacked {
        path: output.to_path_buf(),
        entries: written.entries,
        added: written.added,
        spliced: written.spliced,
    })
}

/// The copy both ways of writing share: the ramdisk members the overlay keeps, read from
/// the decompressed `source`, archive boundaries as they were, then the overlay's members
/// and the last trailer, written as cpio `newc` to `out`. Returns `out` and (members,
/// added).
pub(crate) fn copy_merged<R: BufRead, W: Write>(
    source: R,
    mut merge: OverlayMerge,
    out: W,
) -> Result<(W, usize, usize)> {
    let mut reader = NewcReader::new(source);
    let mut writer = NewcWriter::new(out);
    let mut entries = 0;
    // A trailer is written only when another archive follows, so that the overlay
    // lands inside the last archive.
    let mut trailer_pending = false;
    while let Some((entry, size)) = reader.next_member()? {
        if entry.is_trailer() {
            trailer_pending = true;
            continue;
        }
        if std::mem::take(&mut trailer_pending) {
            writer.write_trailer()?;
        }
        if merge.keep(&entry)? {
            writer.write_header(&entry, size)?;
            reader.copy_data(&mut writer)?;
            entries += 1;
        }
    }
    let (additions, added) = merge.additions();
    for entry in &additions {
        writer.write_entry(entry)?;
    }
    writer.write_trailer()?;
    Ok((writer.into_inner()?, entries + additions.len(), added))
}

/// The full path: the image decompressed (on a thread of its own), copied by
/// [`copy_merged`] and compressed again as `compression` says.
fn write_merged(
    ramdisk: &Path,
    merge: OverlayMerge,
    compression: Option<Compression>,
    partial: &Path,
) -> Result<Written> {
    let file = std::fs::File::create(partial)
        .map_err(|e| ArtefactError::io(format!("Unable to write {}", partial.display()), e))?;
    let failed =
        |e: std::io::Error| ArtefactError::io(format!("Unable to write {}", partial.display()), e);
    // The repacked ramdisk lives for one job: each format's fastest level (zlib-rs' gzip
    // level 1 takes under a third of level 6's time for some 30% more bytes, and the
    // test system's TCG guest unpacks it as fast: 0.10 s against 0.12 s for level 6).
    let encoder =
        Encoder::new(compression, BufWriter::with_capacity(IO_BUFFER, file)).map_err(failed)?;
    // Decompressed on a thread of its own while this one parses and compresses again.
    let (encoder, entries, added) = copy_merged(open_decompressed_ahead(ramdisk)?, merge, encoder)?;
    // Flushed, not synced: the image lives for one job, which does not survive a crash of
    // the worker, and the rename after this makes it visible only once complete.
    encoder
        .finish()
        .map_err(failed)?
        .into_inner()
        .map_err(|e| failed(e.into_error()))?;
    Ok(Written {
        entries,
        added,
        spliced: false,
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
    .map_err(|e| ArtefactError::Bug(format!("image overlay append panicked: {e}")))?
}

/// [`repack_blocking`] on tokio's blocking pool.
pub async fn repack_with_overlay(
    ramdisk: PathBuf,
    overlay: Option<PathBuf>,
    output: PathBuf,
) -> Result<Repacked> {
    tokio::task::spawn_blocking(move || repack_blocking(&ramdisk, overlay.as_deref(), &output))
        .await
        .map_err(|e| ArtefactError::Bug(format!("ramdisk repack panicked: {e}")))?
}
