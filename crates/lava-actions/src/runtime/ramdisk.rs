//! Run-time: ramdisk surgery (`extract-overlay-ramdisk`, `apply-overlay-tftp` on the
//! ramdisk, `compress-ramdisk`), in pure Rust.
//!
//! LAVA unpacks the ramdisk with `cpio`, untars the overlay at its root and repacks it with
//! `find . | cpio --create --format=newc` and `gzip`. Here the archive never touches the
//! disk unpacked: the (decompressed) cpio `newc` stream is parsed into entries, the
//! overlay tarball's members are merged in (replacing files of the same path, adding
//! missing parent directories), and a new `newc` archive is written and gzip-compressed.
//! Entries are kept byte for byte (inode numbers, modes, owners, times, hard links), so
//! a ramdisk without an overlay round-trips to the same cpio bytes. Member names that
//! are absolute or climb out with `..` are refused (JobError), in the ramdisk and in the
//! overlay alike. All the work runs on tokio's blocking pool.

use lava_pipeline::{LavaError, LavaResult, RunContext};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The newc magic.
const NEWC_MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// One member of a `newc` archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    pub name: String,
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub devmajor: u32,
    pub devminor: u32,
    pub rdevmajor: u32,
    pub rdevminor: u32,
    /// File contents or symlink target.
    pub data: Vec<u8>,
}

impl CpioEntry {
    fn new(name: String, mode: u32, data: Vec<u8>) -> Self {
        CpioEntry {
            name,
            ino: 0,
            mode,
            uid: 0,
            gid: 0,
            nlink: if mode & S_IFMT == S_IFDIR { 2 } else { 1 },
            mtime: 0,
            devmajor: 0,
            devminor: 0,
            rdevmajor: 0,
            rdevminor: 0,
            data,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

fn bad(msg: impl Into<String>) -> LavaError {
    LavaError::job(msg.into())
}

/// The member path without `./` or leading `/` noise, or an error when it would leave
/// the archive root (`..` components or an absolute path).
pub fn checked_member(name: &str) -> LavaResult<String> {
    let trimmed = name.strip_prefix("./").unwrap_or(name);
    if trimmed.starts_with('/') {
        return Err(bad(format!(
            "Refusing archive member with an absolute path: {name:?}"
        )));
    }
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(bad(format!(
                    "Refusing archive member outside the archive root: {name:?}"
                )));
            }
            p => parts.push(p),
        }
    }
    Ok(if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    })
}

fn hex_field(header: &[u8], index: usize) -> LavaResult<u32> {
    let start = 6 + index * 8;
    let text = std::str::from_utf8(&header[start..start + 8])
        .map_err(|_| bad("Invalid cpio header (not hexadecimal)"))?;
    u32::from_str_radix(text, 16).map_err(|_| bad(format!("Invalid cpio header field {text:?}")))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parses every `newc` archive in `data` (several may follow each other, separated by
/// NUL padding, as in kernel initramfs images). Trailers are dropped.
pub fn read_newc(data: &[u8]) -> LavaResult<Vec<CpioEntry>> {
    let mut entries = Vec::new();
    let mut pos = 0;
    loop {
        while pos < data.len() && data[pos] == 0 {
            pos += 1;
        }
        if pos >= data.len() {
            break;
        }
        if data.len() - pos < 110 {
            return Err(bad("Truncated cpio archive (short header)"));
        }
        let header = &data[pos..pos + 110];
        if &header[..6] != NEWC_MAGIC {
            return Err(bad(format!(
                "Not a cpio newc archive (magic {:?} at offset {pos})",
                String::from_utf8_lossy(&header[..6])
            )));
        }
        let field = |i| hex_field(header, i);
        let namesize = field(11)? as usize;
        let filesize = field(6)? as usize;
        if namesize == 0 {
            return Err(bad("Invalid cpio header (empty name)"));
        }
        let name_start = pos + 110;
        let name_end = name_start + namesize;
        let data_start = align4(name_end);
        let data_end = data_start + filesize;
        if data_end > data.len() {
            return Err(bad("Truncated cpio archive (short member)"));
        }
        let raw_name = &data[name_start..name_end - 1];
        let name = String::from_utf8(raw_name.to_vec())
            .map_err(|_| bad("cpio member name is not UTF-8"))?;
        pos = align4(data_end);
        if name == TRAILER {
            continue;
        }
        checked_member(&name)?;
        entries.push(CpioEntry {
            ino: field(0)?,
            mode: field(1)?,
            uid: field(2)?,
            gid: field(3)?,
            nlink: field(4)?,
            mtime: field(5)?,
            devmajor: field(7)?,
            devminor: field(8)?,
            rdevmajor: field(9)?,
            rdevminor: field(10)?,
            data: data[data_start..data_end].to_vec(),
            name,
        });
    }
    Ok(entries)
}

/// Writes `entries` as one `newc` archive with its trailer.
pub fn write_newc(entries: &[CpioEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let trailer = CpioEntry {
        nlink: 1,
        ..CpioEntry::new(TRAILER.to_string(), 0, Vec::new())
    };
    for e in entries.iter().chain(std::iter::once(&trailer)) {
        let fields = [
            e.ino,
            e.mode,
            e.uid,
            e.gid,
            e.nlink,
            e.mtime,
            e.data.len() as u32,
            e.devmajor,
            e.devminor,
            e.rdevmajor,
            e.rdevminor,
            e.name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(NEWC_MAGIC);
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(e.name.as_bytes());
        out.push(0);
        out.resize(align4(out.len()), 0);
        out.extend_from_slice(&e.data);
        out.resize(align4(out.len()), 0);
    }
    // cpio pads the archive to its 512-byte block size.
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// One member of a tar archive, as needed for the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarMember {
    pub name: String,
    pub mode: u32,
    /// Contents (regular files) or link target (symlinks).
    pub data: Vec<u8>,
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

/// Merges `overlay` into `entries` as untarring it at the ramdisk root would: members
/// replace entries of the same path (directories keep the ramdisk's entry), missing
/// parent directories are created (mode 0755). New entries get fresh inode numbers.
pub fn merge_overlay(entries: &mut Vec<CpioEntry>, overlay: &[TarMember]) -> LavaResult<usize> {
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        index.insert(checked_member(&e.name)?, i);
    }
    let mut next_ino = entries.iter().map(|e| e.ino).max().unwrap_or(0) + 1;
    let prefix = entries
        .iter()
        .find(|e| e.name != ".")
        .is_some_and(|e| e.name.starts_with("./"));
    let mut added = 0;
    let mut push = |entries: &mut Vec<CpioEntry>,
                    index: &mut BTreeMap<String, usize>,
                    path: String,
                    mode: u32,
                    data: Vec<u8>| {
        let name = if prefix {
            format!("./{path}")
        } else {
            path.clone()
        };
        let mut entry = CpioEntry::new(name, mode, data);
        entry.ino = next_ino;
        next_ino += 1;
        match index.get(&path) {
            Some(&i) if entries[i].is_dir() && entry.is_dir() => {}
            Some(&i) => entries[i] = entry,
            None => {
                index.insert(path, entries.len());
                entries.push(entry);
                added += 1;
            }
        }
    };
    for member in overlay {
        let path = checked_member(&member.name)?;
        if path == "." {
            continue;
        }
        let mut parents = BTreeSet::new();
        let mut p = path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            parents.insert(parent.to_string());
            p = parent;
        }
        for parent in parents {
            if !index.contains_key(&parent) {
                push(entries, &mut index, parent, S_IFDIR | 0o755, Vec::new());
            }
        }
        push(entries, &mut index, path, member.mode, member.data.clone());
    }
    Ok(added)
}

/// What [`repack_with_overlay`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repacked {
    pub path: PathBuf,
    /// Members in the new archive.
    pub entries: usize,
    /// Members the overlay added (not counting replaced ones).
    pub added: usize,
}

async fn decompress_all(data: Vec<u8>) -> LavaResult<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let magic: &[u8] = &data[..data.len().min(6)];
    let read = if magic.starts_with(b"\x1f\x8b") {
        let mut d = async_compression::tokio::bufread::GzipDecoder::new(&data[..]);
        d.multiple_members(true);
        d.read_to_end(&mut out).await
    } else if magic.starts_with(b"\xfd7zXZ\x00") {
        let mut d = async_compression::tokio::bufread::XzDecoder::new(&data[..]);
        d.multiple_members(true);
        d.read_to_end(&mut out).await
    } else if magic.starts_with(b"\x28\xb5\x2f\xfd") {
        let mut d = async_compression::tokio::bufread::ZstdDecoder::new(&data[..]);
        d.multiple_members(true);
        d.read_to_end(&mut out).await
    } else if magic.starts_with(b"BZh") {
        let mut d = async_compression::tokio::bufread::BzDecoder::new(&data[..]);
        d.multiple_members(true);
        d.read_to_end(&mut out).await
    } else {
        return Ok(data);
    };
    read.map_err(|e| bad(format!("Unable to decompress the archive: {e}")))?;
    Ok(out)
}

async fn gzip(data: &[u8]) -> LavaResult<Vec<u8>> {
    use tokio::io::AsyncWriteExt;
    let mut enc = async_compression::tokio::write::GzipEncoder::new(Vec::new());
    enc.write_all(data)
        .await
        .and(enc.shutdown().await)
        .map_err(|e| LavaError::infrastructure(format!("Unable to compress the ramdisk: {e}")))?;
    Ok(enc.into_inner())
}

/// Blocking: unpack `ramdisk` (cpio newc; gzip, xz, zstd, bzip2 or plain, by magic),
/// merge the overlay tarball (gzip or plain tar) if given, write `output` as gzip cpio
/// newc. Call from a blocking thread (see [`repack_with_overlay`]).
pub fn repack_blocking(
    handle: &tokio::runtime::Handle,
    ramdisk: &Path,
    overlay: Option<&Path>,
    output: &Path,
) -> LavaResult<Repacked> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| LavaError::infrastructure(format!("Unable to read {}: {e}", p.display())))
    };
    let cpio = handle.block_on(decompress_all(read(ramdisk)?))?;
    let mut entries = read_newc(&cpio)?;
    drop(cpio);
    let mut added = 0;
    if let Some(overlay) = overlay {
        let tar = handle.block_on(decompress_all(read(overlay)?))?;
        let members = read_tar(&tar)?;
        added = merge_overlay(&mut entries, &members)?;
    }
    let packed = write_newc(&entries);
    let compressed = handle.block_on(gzip(&packed))?;
    let partial = output.with_extension("partial");
    std::fs::write(&partial, compressed)
        .and_then(|()| std::fs::rename(&partial, output))
        .map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            LavaError::infrastructure(format!("Unable to write {}: {e}", output.display()))
        })?;
    Ok(Repacked {
        path: output.to_path_buf(),
        entries: entries.len(),
        added,
    })
}

/// [`repack_blocking`] on tokio's blocking pool.
pub async fn repack_with_overlay(
    ramdisk: PathBuf,
    overlay: Option<PathBuf>,
    output: PathBuf,
) -> LavaResult<Repacked> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        repack_blocking(&handle, &ramdisk, overlay.as_deref(), &output)
    })
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
