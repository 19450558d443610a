//! Run-time: ramdisk surgery (`extract-overlay-ramdisk`, `apply-overlay-tftp` on the
//! ramdisk, `compress-ramdisk`), in pure Rust and in one streaming pass.
//!
//! LAVA unpacks the ramdisk with `cpio`, untars the overlay at its root and repacks it with
//! `find . | cpio --create --format=newc` and `gzip`. Here the archive is never unpacked:
//! the decompressed cpio `newc` stream is read member by member ([`super::newc`]) and
//! copied into a gzip `newc` stream, members the overlay replaces are left out, and the
//! overlay's members (with any missing parent directories, mode 0755) are added at the end
//! of the last archive. Only the overlay (a few kilobytes of scripts) is held in memory.
//! Entries are kept byte for byte (inode numbers, modes, owners, times, hard links, archive
//! boundaries), so a ramdisk without an overlay round-trips to the same cpio bytes. Member
//! names that are absolute or climb out with `..` are refused (JobError), in the ramdisk
//! and in the overlay alike. The work runs on tokio's blocking pool; a failed repack
//! leaves no file behind.

pub use super::newc::{CpioEntry, checked_member, read_newc, write_newc};
use super::newc::{NewcReader, NewcWriter, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use lava_pipeline::{LavaError, LavaResult, RunContext};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

fn bad(msg: impl Into<String>) -> LavaError {
    LavaError::job(msg.into())
}

/// Buffer size of the file reader and writer around the compression streams.
const IO_BUFFER: usize = 64 * 1024;

/// What [`repack_with_overlay`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repacked {
    pub path: PathBuf,
    /// Members in the new archive (not counting trailers).
    pub entries: usize,
    /// Members the overlay added (not counting replaced ones).
    pub added: usize,
}

/// Merges an overlay into a stream of ramdisk members as untarring it at the ramdisk root
/// would. Feed every ramdisk member to [`OverlayMerge::keep`] in order (it says whether
/// the member stays), then [`OverlayMerge::additions`] gives the members to append:
/// overlay members replace ramdisk members of the same path (a directory keeps the
/// ramdisk's entry), missing parent directories are created (mode 0755), and new members
/// get fresh inode numbers. When the overlay names a path twice, the last one wins.
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

/// One member of a tar archive, as needed for the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarMember {
    pub name: String,
    pub mode: u32,
    /// Contents (regular files) or link target (symlinks).
    pub data: Vec<u8>,
}

impl TarMember {
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

fn octal(field: &[u8]) -> LavaResult<u64> {
    // GNU base-256 for large values.
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v = (field[0] & 0x7f) as u64;
        for b in &field[1..] {
            v = (v << 8) | *b as u64;
        }
        return Ok(v);
    }
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| bad(format!("Invalid tar header field {text:?}")))
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Reads the regular files, directories and symlinks of an (uncompressed) tar archive:
/// ustar, GNU long names and pax `path`/`linkpath` records.
pub fn read_tar(data: &[u8]) -> LavaResult<Vec<TarMember>> {
    let mut members = Vec::new();
    let mut pos = 0;
    let mut long_name: Option<String> = None;
    let mut long_link: Option<String> = None;
    while pos + 512 <= data.len() {
        let h = &data[pos..pos + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let size = octal(&h[124..136])? as usize;
        let typeflag = h[156];
        let start = pos + 512;
        let end = start + size;
        if end > data.len() {
            return Err(bad("Truncated tar archive"));
        }
        let body = &data[start..end];
        pos = start + size.div_ceil(512) * 512;
        let mut name = cstr(&h[0..100]);
        if &h[257..262] == b"ustar" {
            let prefix = cstr(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        let mut link = cstr(&h[157..257]);
        match typeflag {
            b'L' => {
                long_name = Some(cstr(body));
                continue;
            }
            b'K' => {
                long_link = Some(cstr(body));
                continue;
            }
            b'x' => {
                for (k, v) in pax_records(body) {
                    match k.as_str() {
                        "path" => long_name = Some(v),
                        "linkpath" => long_link = Some(v),
                        _ => {}
                    }
                }
                continue;
            }
            b'g' => continue,
            _ => {}
        }
        if let Some(n) = long_name.take() {
            name = n;
        }
        if let Some(l) = long_link.take() {
            link = l;
        }
        let perm = (octal(&h[100..108])? as u32) & 0o7777;
        let member = match typeflag {
            b'0' | 0 | b'7' => TarMember {
                name,
                mode: S_IFREG | perm,
                data: body.to_vec(),
            },
            b'5' => TarMember {
                name,
                mode: S_IFDIR | perm,
                data: Vec::new(),
            },
            b'2' => TarMember {
                name,
                mode: S_IFLNK | 0o777,
                data: link.into_bytes(),
            },
            // Hard links, devices and fifos are not part of test overlays.
            _ => continue,
        };
        checked_member(&member.name)?;
        members.push(member);
    }
    Ok(members)
}

fn pax_records(body: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let text = String::from_utf8_lossy(body);
    let mut rest: &str = &text;
    while let Some((len, _)) = rest.split_once(' ') {
        let Ok(n) = len.parse::<usize>() else { break };
        if n == 0 || n > rest.len() {
            break;
        }
        let record = &rest[len.len() + 1..n];
        if let Some((k, v)) = record.trim_end_matches('\n').split_once('=') {
            out.push((k.to_string(), v.to_string()));
        }
        rest = &rest[n..];
    }
    out
}

impl OverlayMerge {
    /// Checks every overlay member's path (JobError for one leaving the root).
    pub fn new(overlay: Vec<TarMember>) -> LavaResult<Self> {
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
    pub fn keep(&mut self, entry: &CpioEntry) -> LavaResult<bool> {
        let path = checked_member(&entry.name)?;
        self.max_ino = self.max_ino.max(entry.ino);
        if path != "." {
            self.dot_prefix = entry.name.starts_with("./");
        }
        if !self.wanted.contains(&path) {
            return Ok(true);
        }
        let keep = match self.by_path.get(&path) {
            None => true,
            Some(&member_is_dir) => entry.is_dir() && member_is_dir,
        };
        self.present.insert(path, entry.is_dir());
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
        let mut push = |out: &mut Vec<CpioEntry>, path: &str, mode: u32, data: Vec<u8>| {
            let mut entry = CpioEntry::new(format!("{prefix}{path}"), mode, data);
            entry.ino = next_ino;
            next_ino += 1;
            out.push(entry);
        };
        for (path, member) in self.members {
            for parent in parents(&path) {
                if !self.present.contains_key(&parent) && !emitted.contains_key(&parent) {
                    push(&mut out, &parent, S_IFDIR | 0o755, Vec::new());
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
            push(&mut out, &path, member.mode, member.data);
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
pub fn merge_overlay(entries: &mut Vec<CpioEntry>, overlay: &[TarMember]) -> LavaResult<usize> {
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

/// A reader that decompresses `file` by its magic: gzip, xz, zstd or bzip2 (each with
/// concatenated members), or the bytes as they are.
fn decompressing_reader(file: std::fs::File) -> std::io::Result<Box<dyn Read + Send>> {
    let mut buffered = BufReader::with_capacity(IO_BUFFER, file);
    let magic = buffered.fill_buf()?;
    Ok(if magic.starts_with(b"\x1f\x8b") {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if magic.starts_with(b"\xfd7zXZ\x00") {
        Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buffered))
    } else if magic.starts_with(b"\x28\xb5\x2f\xfd") {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?)
    } else if magic.starts_with(b"BZh") {
        Box::new(bzip2::bufread::MultiBzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    })
}

fn open_decompressing(path: &Path) -> LavaResult<BufReader<Box<dyn Read + Send>>> {
    let reader = std::fs::File::open(path)
        .and_then(decompressing_reader)
        .map_err(|e| {
            LavaError::infrastructure(format!("Unable to read {}: {e}", path.display()))
        })?;
    Ok(BufReader::with_capacity(IO_BUFFER, reader))
}

/// The overlay tarball's members (gzip or plain tar).
fn read_overlay(path: &Path) -> LavaResult<Vec<TarMember>> {
    let mut tar = Vec::new();
    open_decompressing(path)?
        .read_to_end(&mut tar)
        .map_err(|e| {
            LavaError::job(format!(
                "Unable to decompress the overlay {}: {e}",
                path.display()
            ))
        })?;
    read_tar(&tar)
}

/// Blocking: stream `ramdisk` (cpio newc; gzip, xz, zstd, bzip2 or plain, by magic) into
/// `output` as gzip cpio newc, with the overlay tarball (gzip or plain tar) merged in if
/// given. Call from a blocking thread (see [`repack_with_overlay`]). On error nothing is
/// left at `output` or beside it.
pub fn repack_blocking(
    ramdisk: &Path,
    overlay: Option<&Path>,
    output: &Path,
) -> LavaResult<Repacked> {
    let merge = OverlayMerge::new(match overlay {
        Some(path) => read_overlay(path)?,
        None => Vec::new(),
    })?;
    let partial = output.with_extension("partial");
    let written = write_merged(ramdisk, merge, &partial).and_then(|done| {
        std::fs::rename(&partial, output).map_err(|e| {
            LavaError::infrastructure(format!("Unable to write {}: {e}", output.display()))
        })?;
        Ok(done)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    let (entries, added) = written?;
    Ok(Repacked {
        path: output.to_path_buf(),
        entries,
        added,
    })
}

/// The copy itself: ramdisk members the overlay keeps, archive boundaries as they were,
/// then the overlay's members and the last trailer. Returns (members, added).
fn write_merged(
    ramdisk: &Path,
    mut merge: OverlayMerge,
    partial: &Path,
) -> LavaResult<(usize, usize)> {
    let file = std::fs::File::create(partial).map_err(|e| {
        LavaError::infrastructure(format!("Unable to write {}: {e}", partial.display()))
    })?;
    // The repacked ramdisk lives for one job: gzip's fastest level takes about a third
    // of the default level's time for some 10% more bytes, and unpacks as fast.
    let gzip = flate2::write::GzEncoder::new(
        BufWriter::with_capacity(IO_BUFFER, file),
        flate2::Compression::fast(),
    );
    let mut reader = NewcReader::new(open_decompressing(ramdisk)?);
    let mut writer = NewcWriter::new(gzip);
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
    let finish = |e: std::io::Error| {
        LavaError::infrastructure(format!("Unable to write {}: {e}", partial.display()))
    };
    let file = writer
        .into_inner()?
        .finish()
        .map_err(finish)?
        .into_inner()
        .map_err(|e| finish(e.into_error()))?;
    file.sync_all().map_err(finish)?;
    Ok((entries + additions.len(), added))
}

/// [`repack_blocking`] on tokio's blocking pool.
pub async fn repack_with_overlay(
    ramdisk: PathBuf,
    overlay: Option<PathBuf>,
    output: PathBuf,
) -> LavaResult<Repacked> {
    tokio::task::spawn_blocking(move || repack_blocking(&ramdisk, overlay.as_deref(), &output))
        .await
        .map_err(|e| LavaError::bug(format!("ramdisk repack panicked: {e}")))?
}

/// The ramdisk overlay step (`extract-overlay-ramdisk` + `apply-overlay-tftp` +
/// `compress-ramdisk` for a ramdisk that gets the overlay): read the downloaded ramdisk
/// (`download-action/ramdisk/file`) and the overlay tarball
/// (`compress-overlay/output/file`), write `<ramdisk dir>/ramdisk.cpio.gz` with the
/// overlay applied, and point `download-action/ramdisk/file` (what QEMU's `{ramdisk}`
/// and the TFTP deploy use) and `compress-ramdisk/file/ramdisk` at it.
pub async fn apply_overlay_to_ramdisk(ctx: &mut RunContext) -> LavaResult<PathBuf> {
    let ramdisk = ctx
        .get_data("download-action", "ramdisk", "file")
        .and_then(serde_yaml::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| LavaError::bug("Unable to find the downloaded ramdisk"))?;
    let overlay = ctx
        .get_data("compress-overlay", "output", "file")
        .and_then(serde_yaml::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    if overlay.is_none() {
        ctx.logger
            .debug("No overlay tarball: repacking the ramdisk unchanged");
    }
    let dir = ramdisk.parent().unwrap_or(Path::new(".")).to_path_buf();
    let output = dir.join("ramdisk.cpio.gz");
    let output = if output == ramdisk {
        dir.join("ramdisk-overlay.cpio.gz")
    } else {
        output
    };
    ctx.logger.debug(format!(
        "Applying the overlay to the ramdisk {} in {}",
        ramdisk.display(),
        output.display()
    ));
    let done = repack_with_overlay(ramdisk, overlay, output).await?;
    ctx.logger.info(format!(
        "ramdisk repacked with {} members ({} added by the overlay): {}",
        done.entries,
        done.added,
        done.path.display()
    ));
    let file = done.path.display().to_string();
    ctx.set_data("download-action", "ramdisk", "file", file.clone());
    ctx.set_data("download-action", "file", "ramdisk", file.clone());
    ctx.set_data("compress-ramdisk", "file", "ramdisk", file);
    Ok(done.path)
}
