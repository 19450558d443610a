//! Inputs the artefact tests share: sample data and the four compressions.

use lava_artefacts::Compression;
use std::io::Write;

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

/// `len` bytes that compress well but not trivially.
pub fn sample(len: usize) -> Vec<u8> {
    // Compressible but not trivial.
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
