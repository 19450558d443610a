//! Artefact inputs the download and ramdisk tests share (lava-artefacts' own and
//! lava-actions' run-time ones): sample data, the four compressions, cpio entries and a
//! gzip check by Debian's own tool.

use lava_artefacts::Compression;
use lava_artefacts::newc::CpioEntry;
use std::io::Write;
use std::path::Path;

/// `len` bytes that compress well but not trivially.
pub fn sample(len: usize) -> Vec<u8> {
    let mut x: u32 = 12345;
    (0..len)
        .map(|i| {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            if i % 7 == 0 {
                (x >> 16) as u8
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect()
}

/// `data` compressed in the format `c` names, with each encoder's default level.
pub fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
    match c {
        Compression::Gz => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
        Compression::Bz2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
    }
}

/// A newc entry owned by root with LAVA's fixed test mtime: `name`, `mode` (type and
/// permission bits), inode `ino` and contents `data`.
pub fn cpio_entry(name: &str, mode: u32, ino: u32, data: &[u8]) -> CpioEntry {
    CpioEntry {
        name: name.into(),
        ino,
        mode,
        uid: 0,
        gid: 0,
        nlink: 1,
        mtime: 1_700_000_000,
        devmajor: 0,
        devminor: 0,
        rdevmajor: 0,
        rdevminor: 0,
        data: data.to_vec(),
    }
}

/// The decompressed contents of the gzip file at `path`, read by `gzip -dc` (a check
/// independent of the flate2 decoder under test); panics with gzip's message on failure.
pub fn gunzip(path: &Path) -> Vec<u8> {
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
