//! Tar archives as test overlays are: the regular files, directories and symlinks of an
//! uncompressed archive (ustar, GNU long names, pax `path`/`linkpath` records), with their
//! owners and times, read into memory (an overlay is a few kilobytes of scripts). Member
//! paths that leave the archive root are refused.

use crate::ArtefactError;
use crate::newc::{S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, checked_member};

type Result<T> = std::result::Result<T, ArtefactError>;

fn bad(msg: impl Into<String>) -> ArtefactError {
    ArtefactError::InvalidArchive(msg.into())
}

/// One member of a tar archive, as needed for the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarMember {
    /// The member's path as written.
    pub name: String,
    /// File type ([`S_IFREG`], [`S_IFDIR`] or [`S_IFLNK`]) and permission bits.
    pub mode: u32,
    /// Contents (regular files) or link target (symlinks).
    pub data: Vec<u8>,
    /// Owner (numeric).
    pub uid: u32,
    /// Group (numeric).
    pub gid: u32,
    /// Modification time (seconds since the epoch).
    pub mtime: u64,
}

impl TarMember {
    /// A member owned by root with a zero time.
    pub fn new(name: impl Into<String>, mode: u32, data: Vec<u8>) -> Self {
        TarMember {
            name: name.into(),
            mode,
            data,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    /// Whether the member is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

fn octal(field: &[u8]) -> Result<u64> {
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
pub fn read_tar(data: &[u8]) -> Result<Vec<TarMember>> {
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
        let mut member = match typeflag {
            b'0' | 0 | b'7' => TarMember::new(name, S_IFREG | perm, body.to_vec()),
            b'5' => TarMember::new(name, S_IFDIR | perm, Vec::new()),
            b'2' => TarMember::new(name, S_IFLNK | 0o777, link.into_bytes()),
            // Hard links, devices and fifos are not part of test overlays.
            _ => continue,
        };
        member.uid = u32::try_from(octal(&h[108..116])?).unwrap_or(u32::MAX);
        member.gid = u32::try_from(octal(&h[116..124])?).unwrap_or(u32::MAX);
        member.mtime = octal(&h[136..148])?;
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
