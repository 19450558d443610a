//! The compression formats of LAVA images: gz, xz, zstd and bz2, named as a job's
//! `compression:` value or recognised by their magic bytes, decoded as streams (every
//! format with concatenated members or frames, as `gzip -dc` and friends do).

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use crate::ArtefactError;

/// Buffer size of a file reader around a decoder.
const FILE_BUFFER: usize = 64 * 1024;

/// A compression format decoded while streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (`gz`).
    Gz,
    /// xz (`xz`).
    Xz,
    /// Zstandard (`zstd`).
    Zstd,
    /// bzip2 (`bz2`).
    Bz2,
}

impl Compression {
    /// The format a job's `compression:` value names; `None` for other values (LAVA keeps
    /// `zip` as downloaded).
    pub fn from_name(name: &str) -> Option<Compression> {
        match name {
            "gz" => Some(Compression::Gz),
            "xz" => Some(Compression::Xz),
            "zstd" => Some(Compression::Zstd),
            "bz2" => Some(Compression::Bz2),
            _ => None,
        }
    }

    /// The format whose magic bytes `start` begins with; `None` for anything else.
    pub fn from_magic(start: &[u8]) -> Option<Compression> {
        if start.starts_with(b"\x1f\x8b") {
            Some(Compression::Gz)
        } else if start.starts_with(b"\xfd7zXZ\x00") {
            Some(Compression::Xz)
        } else if start.starts_with(b"\x28\xb5\x2f\xfd") {
            Some(Compression::Zstd)
        } else if start.starts_with(b"BZh") {
            Some(Compression::Bz2)
        } else {
            None
        }
    }

    /// The job's name of the format (`gz`, `xz`, `zstd`, `bz2`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gz => "gz",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Bz2 => "bz2",
        }
    }

    /// A reader of the decompressed bytes of `input` (blocking; concatenated members are
    /// decoded one after the other). A stream that is not of this format, or is cut
    /// short, fails with an I/O error from the read.
    pub fn decoder<'a, R: BufRead + Send + 'a>(
        self,
        input: R,
    ) -> std::io::Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Compression::Gz => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
            Compression::Bz2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        })
    }
}

/// A compressing writer of one of the [`Compression`] formats, or none: what an image
/// modified in place is written back with (LAVA recompresses it as its `compression:`
/// says). Levels are the fastest of each format: a repacked image lives for one job.
pub enum Encoder<W: Write> {
    /// Written as it is.
    Plain(W),
    /// gzip, level 1.
    Gz(flate2::write::GzEncoder<W>),
    /// xz, preset 1.
    Xz(liblzma::write::XzEncoder<W>),
    /// Zstandard, level 1.
    Zstd(zstd::stream::write::Encoder<'static, W>),
    /// bzip2, level 1.
    Bz2(bzip2::write::BzEncoder<W>),
}

impl<W: Write> Encoder<W> {
    /// A writer compressing into `out` as `compression` says (`None`: plain).
    pub fn new(compression: Option<Compression>, out: W) -> std::io::Result<Self> {
        Ok(match compression {
            None => Encoder::Plain(out),
            Some(Compression::Gz) => Encoder::Gz(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::fast(),
            )),
            Some(Compression::Xz) => Encoder::Xz(liblzma::write::XzEncoder::new(out, 1)),
            Some(Compression::Zstd) => Encoder::Zstd(zstd::stream::write::Encoder::new(out, 1)?),
            Some(Compression::Bz2) => Encoder::Bz2(bzip2::write::BzEncoder::new(
                out,
                bzip2::Compression::fast(),
            )),
        })
    }

    /// Ends the stream (trailer written) and gives the inner writer back.
    pub fn finish(self) -> std::io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gz(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Bz2(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gz(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Bz2(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gz(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Bz2(e) => e.flush(),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Blocking: a buffered reader of `path`'s contents, decompressed when its magic says
/// gzip, xz, zstd or bzip2, and as they are otherwise.
pub fn open_decompressed(path: &Path) -> Result<BufReader<Box<dyn Read + Send>>, ArtefactError> {
    let failed = |e| ArtefactError::io(format!("Unable to read {}", path.display()), e);
    let file = std::fs::File::open(path).map_err(failed)?;
    let mut buffered = BufReader::with_capacity(FILE_BUFFER, file);
    let magic = buffered.fill_buf().map_err(failed)?;
    let reader: Box<dyn Read + Send> = match Compression::from_magic(magic) {
        Some(compression) => compression.decoder(buffered).map_err(failed)?,
        None => Box::new(buffered),
    };
    Ok(BufReader::with_capacity(FILE_BUFFER, reader))
}

/// Blocking: [`open_decompressed`] with the decompression on a thread of its own, a few
/// chunks ahead of the reader, so that a consumer compressing the stream again (a ramdisk
/// repack) and the decompression run in parallel instead of taking turns.
pub fn open_decompressed_ahead(path: &Path) -> Result<ReadAhead, ArtefactError> {
    Ok(ReadAhead::spawn(open_decompressed(path)?))
}

/// Chunks of decompressed bytes the [`ReadAhead`] thread may hold ready.
const READ_AHEAD_CHUNKS: usize = 4;

/// A reader whose source is read on a thread of its own ([`open_decompressed_ahead`]).
/// The source's first error is returned by the read that reaches it. Dropping the reader
/// stops the thread and waits for it.
pub struct ReadAhead {
    chunks: Option<std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>>,
    current: Vec<u8>,
    consumed: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts reading `source` on a new thread.
    pub fn spawn(source: impl Read + Send + 'static) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD_CHUNKS);
        let thread = std::thread::spawn(move || {
            let mut source = source;
            loop {
                let mut chunk = Vec::with_capacity(FILE_BUFFER);
                // Fills the spare capacity without initialising it first.
                let message = match (&mut source)
                    .take(FILE_BUFFER as u64)
                    .read_to_end(&mut chunk)
                {
                    Ok(0) => return,
                    Ok(_) => Ok(chunk),
                    Err(e) => Err(e),
                };
                let failed = message.is_err();
                // A send fails once the reader is dropped: nobody wants the rest.
                if tx.send(message).is_err() || failed {
                    return;
                }
            }
        });
        ReadAhead {
            chunks: Some(rx),
            current: Vec::new(),
            consumed: 0,
            thread: Some(thread),
        }
    }
}

/// `Read::read` of a reader whose `BufRead` does the work: what `fill_buf` holds, as much
/// as `out` takes, copied and consumed.
pub(crate) fn read_buffered(reader: &mut impl BufRead, out: &mut [u8]) -> std::io::Result<usize> {
    let available = reader.fill_buf()?;
    let n = available.len().min(out.len());
    out[..n].copy_from_slice(&available[..n]);
    reader.consume(n);
    Ok(n)
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        read_buffered(self, out)
    }
}

impl BufRead for ReadAhead {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.consumed == self.current.len() {
            let next = self.chunks.as_ref().and_then(|rx| rx.recv().ok());
            match next {
                Some(Ok(chunk)) => {
                    self.current = chunk;
                    self.consumed = 0;
                }
                Some(Err(e)) => {
                    // The thread stopped after its error: end of stream from now on.
                    self.chunks = None;
                    return Err(e);
                }
                None => return Ok(&[]),
            }
        }
        Ok(&self.current[self.consumed..])
    }

    fn consume(&mut self, amt: usize) {
        self.consumed = (self.consumed + amt).min(self.current.len());
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Without a receiver the thread's next send fails and it returns.
        self.chunks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
        match c {
            Compression::Gz => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 1).unwrap(),
            Compression::Bz2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
        }
    }

    const ALL: [Compression; 4] = [
        Compression::Gz,
        Compression::Xz,
        Compression::Zstd,
        Compression::Bz2,
    ];

    #[test]
    fn every_encoder_round_trips_through_its_decoder() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
        for c in ALL.map(Some).into_iter().chain([None]) {
            let mut e = Encoder::new(c, Vec::new()).unwrap();
            e.write_all(&data).unwrap();
            let bytes = e.finish().unwrap();
            assert_eq!(c.and_then(|_| Compression::from_magic(&bytes)), c);
            let mut out = Vec::new();
            match c {
                Some(c) => c
                    .decoder(&bytes[..])
                    .unwrap()
                    .read_to_end(&mut out)
                    .unwrap(),
                None => {
                    out = bytes.clone();
                    out.len()
                }
            };
            assert_eq!(out, data, "{c:?}");
        }
    }

    #[test]
    fn names_round_trip_and_zip_is_not_decoded() {
        for c in ALL {
            assert_eq!(Compression::from_name(c.name()), Some(c));
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!(Compression::from_name("zip"), None);
        assert_eq!(Compression::from_name("gzip"), None);
    }

    #[test]
    fn magic_concatenation_and_truncation() {
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 97) as u8)
            .collect();
        for c in ALL {
            let one = compress(c, &data);
            assert_eq!(Compression::from_magic(&one), Some(c), "{c}");
            // Two members back to back decode to both.
            let mut two = one.clone();
            two.extend(compress(c, b"tail"));
            let mut out = Vec::new();
            c.decoder(&two[..]).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out.len(), data.len() + 4, "{c}");
            assert!(out.ends_with(b"tail"), "{c}");
            // A stream cut short is an error, never a short success.
            let cut = &one[..one.len() / 2];
            let mut out = Vec::new();
            let result = c.decoder(cut).and_then(|mut d| d.read_to_end(&mut out));
            assert!(
                result.is_err(),
                "{c}: truncation read as {} bytes",
                out.len()
            );
        }
        assert_eq!(Compression::from_magic(b"070701"), None);
    }

    #[test]
    fn read_ahead_gives_the_whole_stream_in_order_then_the_error() {
        let data: Vec<u8> = (0..5 * FILE_BUFFER + 123)
            .map(|i| (i % 251) as u8)
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("big.gz");
        std::fs::write(&path, compress(Compression::Gz, &data)).unwrap();
        let mut out = Vec::new();
        open_decompressed_ahead(&path)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert!(out == data, "read ahead changed the stream");

        // A stream cut short: the bytes before the cut, then the decoder's error.
        let whole = compress(Compression::Gz, &data);
        std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        let mut reader = open_decompressed_ahead(&path).unwrap();
        let mut out = Vec::new();
        let error = reader.read_to_end(&mut out).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{error}");
        assert!(!out.is_empty() && data.starts_with(&out));
        assert_eq!(
            reader.read(&mut [0u8; 16]).unwrap(),
            0,
            "nothing after the error"
        );

        // Dropped early: the thread is stopped and joined, not left reading.
        std::fs::write(&path, &whole).unwrap();
        let mut reader = open_decompressed_ahead(&path).unwrap();
        let mut first = [0u8; 10];
        reader.read_exact(&mut first).unwrap();
        assert_eq!(first[..], data[..10]);
        drop(reader);
    }

    #[test]
    fn open_decompressed_reads_plain_and_compressed_files() {
        let tmp = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("plain", b"hello".to_vec()),
            ("gz", compress(Compression::Gz, b"hello")),
            ("zstd", compress(Compression::Zstd, b"hello")),
        ] {
            let path = tmp.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let mut out = String::new();
            open_decompressed(&path)
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(out, "hello", "{name}");
        }
        let missing = open_decompressed(&tmp.path().join("missing"))
            .err()
            .unwrap();
        assert_eq!(missing.fault(), crate::Fault::Environment);
        assert!(
            missing.to_string().starts_with("Unable to read "),
            "{missing}"
        );
    }
}
