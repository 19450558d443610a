//! The cpio `newc` format (what initramfs images are), read and written as streams.
//!
//! [`NewcReader`] yields one member header at a time over any [`BufRead`] and hands out
//! the member's contents as a bounded reader; [`NewcWriter`] writes headers, contents and
//! trailers to any [`Write`]. Neither holds more than one member's header in memory, so a
//! ramdisk of any size is rewritten in a few buffers. [`read_newc`] and [`write_newc`] are
//! the whole-archive forms over byte slices.
//!
//! Offsets are absolute over the stream (the kernel's initramfs unpacker aligns the same
//! way): names and contents start on 4-byte boundaries and every archive ends with a
//! `TRAILER!!!` member padded to cpio's 512-byte block. Several archives may follow each
//! other, separated by NUL padding, as in images with early firmware.

use std::io::{BufRead, Write};

use crate::ArtefactError;

type Result<T> = std::result::Result<T, ArtefactError>;

/// The newc magic.
const NEWC_MAGIC: &[u8; 6] = b"070701";
/// The name of the member that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
const HEADER_LEN: usize = 110;
/// The file type bits of a mode.
pub const S_IFMT: u32 = 0o170000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;
/// Longest member name accepted (PATH_MAX): a corrupt header cannot make us allocate more.
const MAX_NAME: usize = 4096;

/// One member of a `newc` archive. From [`NewcReader::next_member`] `data` is empty and
/// the contents are read through the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    /// The member's path as written (`bin/sh`, `./init`).
    pub name: String,
    /// Inode number (members sharing one are hard links).
    pub ino: u32,
    /// File type and permission bits ([`S_IFMT`] and friends).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Number of links.
    pub nlink: u32,
    /// Modification time (seconds since the epoch).
    pub mtime: u32,
    /// Major number of the device holding the file.
    pub devmajor: u32,
    /// Minor number of the device holding the file.
    pub devminor: u32,
    /// Major number of a device node.
    pub rdevmajor: u32,
    /// Minor number of a device node.
    pub rdevminor: u32,
    /// File contents or symlink target.
    pub data: Vec<u8>,
}

/// Reads the members of one or more concatenated `newc` archives from a stream.
pub struct NewcReader<R> {
    inner: R,
    /// Bytes consumed from the start of the stream (alignment is absolute).
    offset: u64,
    /// Contents of the current member not read yet.
    remaining: u64,
}

/// Writes `newc` members to a stream.
pub struct NewcWriter<W> {
    inner: W,
    offset: u64,
    /// Contents of the current member still to be written.
    remaining: u64,
}

impl CpioEntry {
    /// A member owned by root with zero times, as the overlay's members are added.
    pub fn new(name: String, mode: u32, data: Vec<u8>) -> Self {
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

    /// Whether the member is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    /// Whether the member is the `TRAILER!!!` that ends an archive.
    pub fn is_trailer(&self) -> bool {
        self.name == TRAILER
    }
}

fn bad(msg: impl Into<String>) -> ArtefactError {
    ArtefactError::InvalidArchive(msg.into())
}

/// An error of the stream under the reader: a short read is a truncated archive, an OS
/// error is the worker's (infrastructure), anything else comes from the decompressor
/// and means corrupt input.
fn read_error(error: std::io::Error, what: &str) -> ArtefactError {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        bad(format!("Truncated cpio archive ({what})"))
    } else if error.raw_os_error().is_some() {
        ArtefactError::io("Unable to read the cpio archive", error)
    } else {
        bad(format!("Unable to decompress the archive: {error}"))
    }
}

fn write_error(error: std::io::Error) -> ArtefactError {
    ArtefactError::io("Unable to write the cpio archive", error)
}

/// The member path without `./` or leading `/` noise, or an error when it would leave
/// the archive root (`..` components or an absolute path).
pub fn checked_member(name: &str) -> Result<String> {
    let trimmed = name.strip_prefix("./").unwrap_or(name);
    if trimmed.starts_with('/') {
        return Err(ArtefactError::UnsafeMemberPath {
            name: name.to_string(),
            why: "with an absolute path",
        });
    }
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(ArtefactError::UnsafeMemberPath {
                    name: name.to_string(),
                    why: "outside the archive root",
                });
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

fn align4(n: u64) -> u64 {
    (n + 3) & !3
}

fn hex_field(header: &[u8; HEADER_LEN], index: usize) -> Result<u32> {
    let start = 6 + index * 8;
    let text = std::str::from_utf8(&header[start..start + 8])
        .map_err(|_| bad("Invalid cpio header (not hexadecimal)"))?;
    u32::from_str_radix(text, 16).map_err(|_| bad(format!("Invalid cpio header field {text:?}")))
}

impl<R: BufRead> NewcReader<R> {
    /// A reader at the start of `inner`.
    pub fn new(inner: R) -> Self {
        NewcReader {
            inner,
            offset: 0,
            remaining: 0,
        }
    }

    /// The next member's header (its `data` empty) and the size of its contents, or `None`
    /// at the end of the stream. Unread contents of the previous member are skipped.
    /// Trailers are returned too ([`CpioEntry::is_trailer`]) so that a copy can keep
    /// archive boundaries. Names that leave the archive root are refused.
    pub fn next_member(&mut self) -> Result<Option<(CpioEntry, u64)>> {
        self.skip_data()?;
        if !self.skip_nul_padding()? {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_LEN];
        self.read_exact(&mut header, "short header")?;
        if &header[..6] != NEWC_MAGIC {
            return Err(bad(format!(
                "Not a cpio newc archive (magic {:?} at offset {})",
                String::from_utf8_lossy(&header[..6]),
                self.offset - HEADER_LEN as u64
            )));
        }
        let field = |i| hex_field(&header, i);
        let name_size = field(11)? as usize;
        let size = u64::from(field(6)?);
        if name_size == 0 || name_size > MAX_NAME {
            return Err(bad(format!("Invalid cpio header (name size {name_size})")));
        }
        let mut raw_name = vec![0u8; name_size];
        self.read_exact(&mut raw_name, "short member name")?;
        raw_name.pop(); // the terminating NUL
        self.skip_to_alignment()?;
        let name = String::from_utf8(raw_name).map_err(|_| bad("cpio member name is not UTF-8"))?;
        let entry = CpioEntry {
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
            data: Vec::new(),
            name,
        };
        if !entry.is_trailer() {
            checked_member(&entry.name)?;
        }
        self.remaining = size;
        Ok(Some((entry, size)))
    }

    /// The current member's whole contents.
    pub fn read_data(&mut self) -> Result<Vec<u8>> {
        let mut data = Vec::with_capacity(self.remaining.min(1 << 20) as usize);
        self.copy_data(&mut data)?;
        Ok(data)
    }

    /// Copies the current member's contents into `out`.
    pub fn copy_data(&mut self, out: &mut impl Write) -> Result<()> {
        while self.remaining > 0 {
            let chunk = self
                .inner
                .fill_buf()
                .map_err(|e| read_error(e, "short member"))?;
            if chunk.is_empty() {
                return Err(bad("Truncated cpio archive (short member)"));
            }
            let n = chunk.len().min(self.remaining as usize);
            out.write_all(&chunk[..n]).map_err(write_error)?;
            self.consume(n);
            self.remaining -= n as u64;
        }
        self.skip_to_alignment()
    }

    fn skip_data(&mut self) -> Result<()> {
        self.copy_data(&mut std::io::sink())
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.offset += n as u64;
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        self.inner
            .read_exact(buf)
            .map_err(|e| read_error(e, what))?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn skip_to_alignment(&mut self) -> Result<()> {
        let pad = (align4(self.offset) - self.offset) as usize;
        let mut scratch = [0u8; 3];
        self.read_exact(&mut scratch[..pad], "short padding")
    }

    /// Skips NUL bytes between archives; false at the end of the stream.
    fn skip_nul_padding(&mut self) -> Result<bool> {
        loop {
            let chunk = self
                .inner
                .fill_buf()
                .map_err(|e| read_error(e, "short header"))?;
            if chunk.is_empty() {
                return Ok(false);
            }
            let zeros = chunk.iter().take_while(|b| **b == 0).count();
            let more = zeros < chunk.len();
            self.consume(zeros);
            if more {
                return Ok(true);
            }
        }
    }
}

impl<W: Write> NewcWriter<W> {
    /// A writer at the start of `inner`.
    pub fn new(inner: W) -> Self {
        NewcWriter {
            inner,
            offset: 0,
            remaining: 0,
        }
    }

    /// Writes `entry`'s header with `size` bytes of contents to follow through
    /// [`NewcWriter::write_data`] (`entry.data` is not written).
    pub fn write_header(&mut self, entry: &CpioEntry, size: u64) -> Result<()> {
        if self.remaining != 0 {
            return Err(ArtefactError::Bug(
                "cpio member header written before the previous member's contents".into(),
            ));
        }
        let size32 = u32::try_from(size)
            .map_err(|_| bad(format!("{} is too large for cpio newc", entry.name)))?;
        let fields = [
            entry.ino,
            entry.mode,
            entry.uid,
            entry.gid,
            entry.nlink,
            entry.mtime,
            size32,
            entry.devmajor,
            entry.devminor,
            entry.rdevmajor,
            entry.rdevminor,
            entry.name.len() as u32 + 1,
            0,
        ];
        let mut header = Vec::with_capacity(HEADER_LEN + entry.name.len() + 4);
        header.extend_from_slice(NEWC_MAGIC);
        for field in fields {
            header.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        header.extend_from_slice(entry.name.as_bytes());
        header.push(0);
        self.put(&header)?;
        // Contents start aligned; with no contents this is also the member's end padding.
        self.pad_to(align4(self.offset))?;
        self.remaining = size;
        Ok(())
    }

    /// Part of the current member's contents; padding follows the last byte.
    pub fn write_data(&mut self, data: &[u8]) -> Result<()> {
        if data.len() as u64 > self.remaining {
            return Err(ArtefactError::Bug(
                "more cpio member contents than its header says".into(),
            ));
        }
        self.put(data)?;
        self.remaining -= data.len() as u64;
        if self.remaining == 0 {
            self.pad_to(align4(self.offset))?;
        }
        Ok(())
    }

    /// A whole in-memory member.
    pub fn write_entry(&mut self, entry: &CpioEntry) -> Result<()> {
        self.write_header(entry, entry.data.len() as u64)?;
        self.write_data(&entry.data)
    }

    /// Ends the current archive: the trailer member, then NULs to the 512-byte block.
    pub fn write_trailer(&mut self) -> Result<()> {
        let trailer = CpioEntry {
            nlink: 1,
            ..CpioEntry::new(TRAILER.to_string(), 0, Vec::new())
        };
        self.write_entry(&trailer)?;
        self.pad_to(self.offset.div_ceil(512) * 512)
    }

    /// The stream, once the last member's contents are complete.
    pub fn into_inner(self) -> Result<W> {
        if self.remaining != 0 {
            return Err(ArtefactError::Bug(
                "cpio archive ended inside a member".into(),
            ));
        }
        Ok(self.inner)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner.write_all(bytes).map_err(write_error)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad_to(&mut self, offset: u64) -> Result<()> {
        const ZEROS: [u8; 512] = [0; 512];
        while self.offset < offset {
            let n = ((offset - self.offset) as usize).min(ZEROS.len());
            self.put(&ZEROS[..n])?;
        }
        Ok(())
    }
}

/// Writing into a [`NewcWriter`] writes the current member's contents, so that
/// [`NewcReader::copy_data`] can stream one archive's member into another.
impl<W: Write> Write for NewcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_data(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Parses every `newc` archive in `data` (several may follow each other, separated by
/// NUL padding, as in kernel initramfs images). Trailers are dropped.
pub fn read_newc(data: &[u8]) -> Result<Vec<CpioEntry>> {
    let mut reader = NewcReader::new(data);
    let mut entries = Vec::new();
    while let Some((mut entry, _)) = reader.next_member()? {
        if entry.is_trailer() {
            continue;
        }
        entry.data = reader.read_data()?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Writes `entries` as one `newc` archive with its trailer.
pub fn write_newc(entries: &[CpioEntry]) -> Vec<u8> {
    let mut writer = NewcWriter::new(Vec::new());
    for entry in entries {
        writer
            .write_entry(entry)
            .expect("writing to memory cannot fail");
    }
    writer
        .write_trailer()
        .expect("writing to memory cannot fail");
    writer.into_inner().expect("every member is complete")
}
