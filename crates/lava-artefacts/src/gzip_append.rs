//! A gzip ramdisk with members appended, without compressing the whole ramdisk again.
//!
//! Appending a job's overlays to a gzip cpio image ([`crate::ramdisk`]) writes the image's
//! members unchanged and adds the overlay's members before the last archive's `TRAILER!!!`.
//! When the image is one gzip member, the new file's deflate stream can therefore start
//! with the image's own: the splice copies the image's compressed bytes up to the last
//! deflate block boundary at or before the point where the new archive first differs from
//! the old one (the last trailer), and a fresh deflater, primed with the bits of the last
//! copied byte that belong to the copied blocks (what zlib's `deflatePrime` is for, as in
//! zlib's `examples/gzappend.c`) and given the 32 KiB before the boundary as its
//! dictionary, compresses the rest: the tail of the block that held the boundary, the added
//! members, the trailer and its padding. That tail's old bytes are not kept while the image
//! is read: the splice keeps only the 32 KiB before the latest boundary and the bytes the
//! cpio reader or the comparison have not reached yet, and at the splice point inflates
//! them again from the image file, with a raw inflater given those 32 KiB as its dictionary
//! and primed with the bits of the boundary's byte that belong to the block (zlib's
//! `inflateSetDictionary` and `inflatePrime`): a block of any size costs no memory. The
//! gzip trailer is the CRC-32 and size of all the new uncompressed bytes. Only that tail is
//! compressed (gzip level 1, as the full path); the whole image is still inflated once, on
//! a thread of its own, to find the block boundaries (zlib-rs' inflate with
//! `InflateFlush::Block` reports each one in the stream's `data_type`), to parse the cpio
//! members and to check the image's CRC-32; the compressed bytes are copied from the file
//! as each block is known to be kept.
//!
//! The new uncompressed bytes are the full path's: the same copy (`ramdisk::copy_merged`)
//! writes them, into a sink that compares every byte with the image's own while they agree
//! and compresses from the first difference. The splice is abandoned, and `append` returns
//! `None` for the caller to take the full path, when the image is not gzip, when the new
//! archive differs from the old one before the whole image was read (a member the overlay
//! replaces, headers or padding written differently than this crate writes them), when the
//! gzip member is followed by more data (a second member), and on any error (corrupt or
//! truncated data, a bad CRC): the full path then reports it with its usual message. A
//! corrupt image never becomes a spliced file.
//!
//! ```no_run
//! # use lava_artefacts::ramdisk::{OverlaySource, append_overlays_blocking};
//! # use lava_artefacts::Compression;
//! # use std::path::Path;
//! let overlay = OverlaySource::Tarball { archive: "overlay.tar.gz".into(), at: "/".into() };
//! let image = Path::new("initramfs.cpio.gz");
//! let done = append_overlays_blocking(image, &[overlay], Some(Compression::Gz), image)?;
//! assert!(done.spliced, "one gzip member, members only added: spliced");
//! # Ok::<(), lava_artefacts::ArtefactError>(())
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, SyncSender};

use zlib_rs::c_api::z_stream;
use zlib_rs::{DeflateConfig, DeflateFlush, InflateConfig, InflateFlush, ReturnCode};

use crate::ArtefactError;
use crate::ramdisk::{OverlayMerge, Written, copy_merged};

type Result<T> = std::result::Result<T, ArtefactError>;

/// The history a deflate stream may refer back to, given to the new deflater.
const WINDOW: usize = 32 * 1024;
/// Buffer size of the file reads and writes and of the chunks handed to the cpio reader.
const IO_BUFFER: usize = 64 * 1024;
/// Buffer size of the compressed bytes read again when the tail of the splice point's
/// block is inflated a second time (see [`Core::inflate_again`]).
const AGAIN_BUFFER: usize = 16 * 1024;
/// The gzip header the full path's encoder writes (flate2 at level 1): no flags, no time,
/// XFL 4 (fastest), OS 255 (unknown).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];
/// zlib's `data_type` bit: inflate stopped at a block boundary (or just after the header).
const AT_BLOCK_BOUNDARY: i32 = 128;
/// zlib's `data_type` bit: the block just decoded (or being decoded) is the final one; a
/// stop at its end is no boundary to continue from.
const IN_LAST_BLOCK: i32 = 64;
/// zlib's `data_type` bits: how many bits of the consumed input inflate holds unused.
const UNUSED_BITS: i32 = 63;

/// Blocking: writes `image` (a gzip cpio `newc` image) with `merge`'s members appended to
/// `partial` by splicing (see the module doc). `None` when the splice does not apply or
/// anything failed: the caller then writes `partial` again by the full path, which
/// reports any error in the image as it always has.
pub(crate) fn append(image: &Path, merge: OverlayMerge, partial: &Path) -> Option<Written> {
    splice(image, merge, partial).ok().flatten()
}

/// [`append`], with errors; `Ok(None)` when the image is not gzip.
fn splice(image: &Path, merge: OverlayMerge, partial: &Path) -> Result<Option<Written>> {
    let Some(core) = Core::open(image, partial)? else {
        return Ok(None);
    };
    let core = Rc::new(RefCell::new(core));
    let source = Source {
        core: Rc::clone(&core),
        chunk: Vec::with_capacity(IO_BUFFER),
        consumed: 0,
    };
    let (sink, entries, added) = copy_merged(source, merge, Sink(Rc::clone(&core)))?;
    drop(sink);
    core.borrow_mut().finish()?;
    Ok(Some(Written {
        entries,
        added,
        spliced: true,
    }))
}

/// A deflate block boundary of the image: the uncompressed offset where the next block's
/// data starts and the bit of the image file where its header starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Boundary {
    plain: u64,
    bit: u64,
}

/// How the new file's bytes are being written.
enum Mode {
    /// The new uncompressed bytes equal the image's so far: nothing compressed yet.
    Matching,
    /// Past the splice point: everything written goes through the new deflater.
    Deflating(RawDeflate),
}

/// Why the splice stopped without an error of the image (the full path takes over).
fn declined(why: &str) -> std::io::Error {
    std::io::Error::other(format!("gzip splice declined: {why}"))
}

/// The image being read and the new file being written, shared by the cpio reader's
/// [`Source`] and the cpio writer's [`Sink`].
struct Core {
    /// The image, read again for the compressed bytes copied to the new file.
    image: File,
    /// The image inflated on a thread of its own.
    inflated: InflateThread,
    /// Inflate reached the end of the gzip member (its CRC-32 and size checked).
    ended: bool,
    /// More data follows the gzip member.
    trailing: bool,
    /// The image's uncompressed bytes kept, from offset `plain_start`: while matching, from
    /// the first byte the cpio reader has not read or the new archive not compared, or the
    /// first of the 32 KiB before a boundary not yet committed, whichever comes first (see
    /// [`Core::make_room`]). Its spare capacity is room for inflate, never written before it
    /// is used: only what is kept counts in the dispatcher's memory.
    plain: Vec<u8>,
    plain_start: u64,
    /// Uncompressed bytes handed to the cpio reader.
    read: u64,
    /// The cpio reader asked for more after the image's last byte.
    source_done: bool,
    /// The new file's uncompressed bytes equal the image's up to here.
    matched: u64,
    /// Block boundaries found after `committed`, not yet reached by `matched`.
    boundaries: VecDeque<Boundary>,
    /// The last boundary whose preceding blocks are copied to the new file.
    committed: Option<Boundary>,
    /// The (up to) 32 KiB of uncompressed bytes before `committed`: the history the image's
    /// next block may refer to, the dictionary of the new deflater and of the inflater that
    /// regenerates that block's bytes.
    window: Vec<u8>,
    /// The image's compressed bytes before this file offset are in the new file.
    written: u64,
    out: BufWriter<File>,
    /// CRC-32 and length of the new file's uncompressed bytes so far.
    crc: u32,
    out_len: u64,
    mode: Mode,
}

impl Core {
    /// The image opened and `partial` created; `None` when the image is not gzip.
    fn open(image: &Path, partial: &Path) -> Result<Option<Core>> {
        let failed = |e| ArtefactError::io(format!("Unable to read {}", image.display()), e);
        let mut file = File::open(image).map_err(failed)?;
        let mut magic = [0u8; 2];
        if file.read_exact(&mut magic).is_err() || magic != GZIP_HEADER[..2] {
            return Ok(None);
        }
        let out = File::create(partial)
            .map_err(|e| ArtefactError::io(format!("Unable to write {}", partial.display()), e))?;
        let inflated = InflateThread::spawn(File::open(image).map_err(failed)?);
        Ok(Some(Core {
            image: file,
            inflated,
            ended: false,
            trailing: false,
            plain: Vec::with_capacity(2 * IO_BUFFER),
            plain_start: 0,
            read: 0,
            source_done: false,
            matched: 0,
            boundaries: VecDeque::new(),
            committed: None,
            window: Vec::with_capacity(WINDOW),
            written: 0,
            out: BufWriter::with_capacity(IO_BUFFER, out),
            crc: 0,
            out_len: 0,
            mode: Mode::Matching,
        }))
    }

    /// Uncompressed offset of the end of what inflate produced.
    fn inflated(&self) -> u64 {
        self.plain_start + self.plain.len() as u64
    }

    /// The inflate thread's next message: uncompressed bytes, a block boundary or the end.
    fn inflate_step(&mut self) -> std::io::Result<()> {
        match self.inflated.next()? {
            Inflated::Bytes(bytes) => {
                self.make_room(bytes.len());
                self.plain.extend_from_slice(&bytes);
                Ok(())
            }
            Inflated::Boundary { bit } => self.record(Boundary {
                plain: self.inflated(),
                bit,
            }),
            Inflated::End { trailing } => {
                self.ended = true;
                self.trailing = trailing;
                Ok(())
            }
        }
    }

    /// A block boundary inflate stopped at. The first one is the end of the gzip header:
    /// the new file's own header replaces the image's there.
    fn record(&mut self, boundary: Boundary) -> std::io::Result<()> {
        if self.committed.is_none() {
            if boundary.plain != 0 || !boundary.bit.is_multiple_of(8) {
                return Err(declined("no boundary at the end of the gzip header"));
            }
            self.out.write_all(&GZIP_HEADER)?;
            self.written = boundary.bit / 8;
            self.committed = Some(boundary);
            return Ok(());
        }
        if self.boundaries.back().is_some_and(|b| *b == boundary) {
            return Ok(());
        }
        self.boundaries.push_back(boundary);
        self.commit_matched()
    }

    /// Copies the image's blocks that end at or before `matched` to the new file, and keeps
    /// the 32 KiB before the last of them.
    fn commit_matched(&mut self) -> std::io::Result<()> {
        if !matches!(self.mode, Mode::Matching) {
            return Ok(());
        }
        let before = self.committed;
        while let Some(&next) = self.boundaries.front() {
            if next.plain > self.matched {
                break;
            }
            self.boundaries.pop_front();
            let length = next.bit / 8 - self.written;
            self.image.seek(SeekFrom::Start(self.written))?;
            let copied = std::io::copy(&mut (&mut self.image).take(length), &mut self.out)?;
            if copied != length {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the image shrank while read",
                ));
            }
            self.written = next.bit / 8;
            self.committed = Some(next);
        }
        if let Some(committed) = self.committed.filter(|_| self.committed != before) {
            // `make_room` kept the 32 KiB before every boundary not yet committed.
            let from = committed.plain.saturating_sub(WINDOW as u64);
            if from < self.plain_start {
                return Err(std::io::Error::other(
                    "gzip splice: the window before a block boundary was not kept",
                ));
            }
            let from = (from - self.plain_start) as usize;
            let to = (committed.plain - self.plain_start) as usize;
            self.window.clear();
            self.window.extend_from_slice(&self.plain[from..to]);
        }
        Ok(())
    }

    /// Makes room for `needed` more uncompressed bytes: the bytes still needed are kept,
    /// the buffer grows when they fill it. While matching those are the bytes the cpio
    /// reader has not read or the new archive not compared yet, and the 32 KiB before every
    /// boundary not committed yet (the next one may be where this message ends), copied to
    /// `window` when it is committed; the committed block's own bytes are not kept: a splice
    /// point in it inflates them again ([`Core::inflate_again`]). Once deflating, only the
    /// bytes the cpio reader has not read.
    fn make_room(&mut self, needed: usize) {
        if self.plain.capacity() - self.plain.len() >= needed {
            return;
        }
        let keep_from = match (&self.mode, self.committed) {
            (Mode::Matching, Some(_)) => {
                let next_boundary = self.boundaries.front().map_or(self.inflated(), |b| b.plain);
                next_boundary
                    .saturating_sub(WINDOW as u64)
                    .min(self.matched)
                    .min(self.read)
            }
            (Mode::Matching, None) => 0,
            (Mode::Deflating(_), _) => self.read,
        }
        .max(self.plain_start);
        let drop = (keep_from - self.plain_start) as usize;
        if drop > 0 {
            self.plain.drain(..drop);
            self.plain_start = keep_from;
        }
        let (len, capacity) = (self.plain.len(), self.plain.capacity());
        if capacity - len < needed {
            // A quarter more at least: a large block grows the buffer a few times, not at
            // every message.
            let grown = (len + needed).max(capacity * 5 / 4);
            self.plain
                .reserve_exact(grown.next_multiple_of(IO_BUFFER) - len);
        }
    }

    /// The next uncompressed bytes for the cpio reader, appended to `chunk`; nothing at the
    /// end of the image.
    fn take(&mut self, chunk: &mut Vec<u8>) -> std::io::Result<()> {
        while self.read == self.inflated() {
            if self.ended {
                self.source_done = true;
                return Ok(());
            }
            self.inflate_step()?;
        }
        let start = (self.read - self.plain_start) as usize;
        let n = (self.plain.len() - start).min(IO_BUFFER);
        chunk.extend_from_slice(&self.plain[start..start + n]);
        self.read += n as u64;
        Ok(())
    }

    /// Bytes of the new archive: compared with the image's while they agree, compressed
    /// from the first difference on.
    fn put(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while matches!(self.mode, Mode::Matching) && !bytes.is_empty() {
            while self.matched == self.inflated() && !self.ended {
                self.inflate_step()?;
            }
            let start = (self.matched - self.plain_start) as usize;
            let original = &self.plain[start..];
            let n = original.len().min(bytes.len());
            let same = common_prefix(&original[..n], &bytes[..n]);
            self.crc = zlib_rs::crc32::crc32(self.crc, &bytes[..same]);
            self.out_len += same as u64;
            self.matched += same as u64;
            bytes = &bytes[same..];
            self.commit_matched()?;
            if same < n || n == 0 {
                self.start_deflating()?;
            }
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let Mode::Deflating(deflate) = &mut self.mode else {
            unreachable!("left the loop above with bytes only when deflating");
        };
        self.crc = zlib_rs::crc32::crc32(self.crc, bytes);
        self.out_len += bytes.len() as u64;
        deflate.compress(bytes, DeflateFlush::NoFlush, &mut self.out)
    }

    /// The splice point (`matched`): the new deflater continues the copied blocks at the
    /// committed boundary and compresses the image's bytes from there to `matched`,
    /// inflated again from the image (they are not kept). Declined when the new archive
    /// differs before the cpio reader reached the image's end (a member left out or
    /// written differently).
    fn start_deflating(&mut self) -> std::io::Result<()> {
        if !self.source_done {
            return Err(declined("the archive differs before the end of the image"));
        }
        let Some(boundary) = self.committed else {
            return Err(declined("no block boundary"));
        };
        let mut deflate = RawDeflate::new()?;
        // A boundary inside a byte: its low `bits` bits end the copied blocks (the new
        // deflater continues them), the others start the block the splice point is in.
        let bits = (boundary.bit % 8) as u8;
        self.image.seek(SeekFrom::Start(boundary.bit / 8))?;
        let boundary_byte = if bits != 0 {
            let mut byte = [0u8; 1];
            self.image.read_exact(&mut byte)?;
            deflate.prime(bits, byte[0] & ((1u8 << bits) - 1))?;
            Some(byte[0])
        } else {
            None
        };
        deflate.set_dictionary(&self.window)?;
        if self.matched > boundary.plain {
            let length = self.matched - boundary.plain;
            self.inflate_again(boundary, boundary_byte, length, &mut deflate)?;
        }
        self.mode = Mode::Deflating(deflate);
        // Only the new deflater refers back to the window from here on; it has its copy.
        self.window = Vec::new();
        Ok(())
    }

    /// The image's first `length` uncompressed bytes from `boundary`, inflated again and
    /// compressed by `deflate`: a raw inflater given the window before the boundary as its
    /// history, primed with the bits of `boundary_byte` (the byte holding a boundary that
    /// falls inside one, already read) that belong to its block, and fed the image's
    /// compressed bytes from the file's position (the first whole byte of the block).
    fn inflate_again(
        &mut self,
        boundary: Boundary,
        boundary_byte: Option<u8>,
        length: u64,
        deflate: &mut RawDeflate,
    ) -> std::io::Result<()> {
        let mut inflate = Inflate::raw()?;
        inflate.set_dictionary(&self.window)?;
        if let Some(byte) = boundary_byte {
            // The low `used` bits end the previous block; the block starts at the next one.
            let used = (boundary.bit % 8) as u8;
            inflate.prime(8 - used, byte >> used)?;
        }
        let mut input = vec![0u8; AGAIN_BUFFER];
        let mut output = vec![0u8; 2 * AGAIN_BUFFER];
        let (mut input_len, mut input_used) = (0, 0);
        let mut remaining = length;
        while remaining > 0 {
            if input_used == input_len {
                input_len = read_some(&mut self.image, &mut input)?;
                input_used = 0;
            }
            let room = output
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let step = inflate.step(
                &input[input_used..input_len],
                &mut output[..room],
                InflateFlush::NoFlush,
            );
            input_used += step.consumed;
            remaining -= step.produced as u64;
            deflate.compress(
                &output[..step.produced],
                DeflateFlush::NoFlush,
                &mut self.out,
            )?;
            let stuck = step.consumed == 0 && step.produced == 0;
            match step.code {
                ReturnCode::Ok | ReturnCode::BufError if !stuck => {}
                ReturnCode::StreamEnd if remaining == 0 => {}
                code => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "gzip splice: the image's block at bit {} inflated again stopped \
                             {remaining} bytes short ({code:?})",
                            boundary.bit
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Ends the new file: the deflate stream finished and the gzip trailer written, once
    /// the image is known to be one gzip member and nothing more.
    fn finish(&mut self) -> Result<()> {
        let failed = |e: std::io::Error| ArtefactError::io("gzip splice", e);
        if matches!(self.mode, Mode::Matching) {
            self.start_deflating().map_err(failed)?;
        }
        if !self.ended || self.trailing {
            return Err(failed(declined("more data after the gzip member")));
        }
        let Mode::Deflating(deflate) = &mut self.mode else {
            unreachable!("deflating after start_deflating");
        };
        deflate
            .compress(&[], DeflateFlush::Finish, &mut self.out)
            .map_err(failed)?;
        self.out
            .write_all(&self.crc.to_le_bytes())
            .map_err(failed)?;
        // ISIZE: the size modulo 2^32.
        self.out
            .write_all(&(self.out_len as u32).to_le_bytes())
            .map_err(failed)?;
        self.out.flush().map_err(failed)
    }
}

/// Length of the common prefix of `a` and `b` (of equal length), compared a block at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    let mut done = 0;
    for (x, y) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        if x == y {
            done += x.len();
        } else {
            return done + x.iter().zip(y).take_while(|(p, q)| p == q).count();
        }
    }
    done
}

/// The image's uncompressed bytes as the cpio reader reads them.
struct Source {
    core: Rc<RefCell<Core>>,
    chunk: Vec<u8>,
    consumed: usize,
}

impl Read for Source {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        crate::compression::read_buffered(self, out)
    }
}

impl BufRead for Source {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.consumed == self.chunk.len() {
            self.chunk.clear();
            self.consumed = 0;
            self.core.borrow_mut().take(&mut self.chunk)?;
        }
        Ok(&self.chunk[self.consumed..])
    }

    fn consume(&mut self, amt: usize) {
        self.consumed = (self.consumed + amt).min(self.chunk.len());
    }
}

/// The new archive's uncompressed bytes as the cpio writer writes them.
struct Sink(Rc<RefCell<Core>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().put(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the inflate thread sends, in stream order.
enum Inflated {
    /// The next uncompressed bytes.
    Bytes(Vec<u8>),
    /// A block boundary after the bytes sent so far (never the end of the final block),
    /// at this bit of the image file.
    Boundary { bit: u64 },
    /// The end of the gzip member, its CRC-32 and size checked; whether more data follows.
    End { trailing: bool },
}

/// Messages the inflate thread may have ready.
const INFLATED_AHEAD: usize = 4;

/// The image inflated on a thread of its own, so that parsing, comparing and checksumming
/// run beside the inflate. Dropping it stops the thread and waits for it.
struct InflateThread {
    messages: Option<Receiver<std::io::Result<Inflated>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InflateThread {
    fn spawn(image: File) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(INFLATED_AHEAD);
        let thread = std::thread::spawn(move || {
            if let Err(e) = inflate_image(image, &tx) {
                // Nobody listening any more is no error: the splice was abandoned.
                let _ = tx.send(Err(e));
            }
        });
        InflateThread {
            messages: Some(rx),
            thread: Some(thread),
        }
    }

    /// The next message; an error once the thread failed or stopped early.
    fn next(&mut self) -> std::io::Result<Inflated> {
        let message = self.messages.as_ref().and_then(|rx| rx.recv().ok());
        match message {
            Some(message) => message,
            None => Err(std::io::Error::other("the inflate thread stopped")),
        }
    }
}

impl Drop for InflateThread {
    fn drop(&mut self) {
        // Without a receiver the thread's next send fails and it returns.
        self.messages = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The inflate thread's work: `image` inflated as one gzip member, its bytes and block
/// boundaries sent in order, then the end. Returns early (`Ok`) when nobody listens.
fn inflate_image(
    mut image: File,
    tx: &SyncSender<std::io::Result<Inflated>>,
) -> std::io::Result<()> {
    let send = |message| tx.send(Ok(message)).is_ok();
    let mut inflate = Inflate::gzip()?;
    let mut input = vec![0u8; IO_BUFFER];
    let (mut input_len, mut input_used) = (0, 0);
    // Compressed bytes consumed before `input`.
    let mut consumed_before: u64 = 0;
    let mut file_done = false;
    let mut output = vec![0u8; IO_BUFFER];
    let mut produced = 0;
    let mut stalls = 0;
    loop {
        if input_used == input_len && !file_done {
            consumed_before += input_len as u64;
            input_len = read_some(&mut image, &mut input)?;
            input_used = 0;
            file_done = input_len == 0;
        }
        let step = inflate.step(
            &input[input_used..input_len],
            &mut output[produced..],
            InflateFlush::Block,
        );
        input_used += step.consumed;
        produced += step.produced;
        let ended = match step.code {
            ReturnCode::StreamEnd => true,
            ReturnCode::Ok | ReturnCode::BufError => false,
            code => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("corrupt gzip stream ({code:?})"),
                ));
            }
        };
        let boundary = !ended
            && step.data_type & AT_BLOCK_BOUNDARY != 0
            && step.data_type & IN_LAST_BLOCK == 0;
        if produced > 0 && (produced == output.len() || boundary || ended) {
            output.truncate(produced);
            let full = std::mem::replace(&mut output, vec![0u8; IO_BUFFER]);
            if !send(Inflated::Bytes(full)) {
                return Ok(());
            }
            produced = 0;
        }
        if boundary {
            let consumed = consumed_before + input_used as u64;
            let unused = (step.data_type & UNUSED_BITS) as u64;
            if !send(Inflated::Boundary {
                bit: consumed * 8 - unused,
            }) {
                return Ok(());
            }
        }
        if ended {
            let trailing = input_used < input_len || read_some(&mut image, &mut input)? > 0;
            send(Inflated::End { trailing });
            return Ok(());
        }
        if step.consumed == 0 && step.produced == 0 {
            if input_used == input_len && file_done {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "gzip stream cut short",
                ));
            }
            stalls += 1;
            if stalls > 2 {
                return Err(std::io::Error::other("inflate made no progress"));
            }
        } else {
            stalls = 0;
        }
    }
}

/// One read of `file` into `buffer` (retried when interrupted); 0 at its end.
fn read_some(file: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match file.read(buffer) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// What one inflate call did.
struct InflateStep {
    consumed: usize,
    produced: usize,
    code: ReturnCode,
    /// zlib's `data_type`: unused bits, last block, at a block boundary.
    data_type: i32,
}

/// zlib-rs' inflate: of one gzip member (header, CRC-32 and size checked by zlib-rs), or of
/// a raw deflate stream started at a block boundary.
struct Inflate {
    /// Boxed: the stream keeps one address from `init` to `end`.
    stream: Box<z_stream>,
}

impl Inflate {
    /// An inflater of one gzip member.
    fn gzip() -> std::io::Result<Self> {
        // 16 + 15: a gzip wrapper, a 32 KiB window.
        Self::new(16 + 15)
    }

    /// An inflater of a raw deflate stream (no wrapper, no checksum).
    fn raw() -> std::io::Result<Self> {
        // Negative: raw deflate, a 32 KiB window.
        Self::new(-15)
    }

    fn new(window_bits: i32) -> std::io::Result<Self> {
        let mut stream = Box::new(z_stream::default());
        let code = zlib_rs::inflate::init(&mut stream, InflateConfig { window_bits });
        if code != ReturnCode::Ok {
            return Err(std::io::Error::other(format!("inflate init: {code:?}")));
        }
        Ok(Inflate { stream })
    }

    /// The inflate stream, for one call that leaves no buffer pointer in it.
    fn with_stream<T>(
        &mut self,
        call: impl FnOnce(&mut zlib_rs::inflate::InflateStream) -> T,
    ) -> std::io::Result<T> {
        // SAFETY: the stream was initialised by `inflate::init` (checked in `new`) and is
        // ended only in `drop`; its buffer pointers are either null or set by `step` for
        // the duration of one call on buffers it borrows.
        match unsafe { zlib_rs::inflate::InflateStream::from_stream_mut(&mut *self.stream) } {
            Some(inflate) => Ok(call(inflate)),
            None => Err(std::io::Error::other("inflate stream not initialised")),
        }
    }

    /// The history the stream's first back-references may reach (zlib's
    /// `inflateSetDictionary`; a raw stream only).
    fn set_dictionary(&mut self, dictionary: &[u8]) -> std::io::Result<()> {
        if dictionary.is_empty() {
            return Ok(());
        }
        match self.with_stream(|i| zlib_rs::inflate::set_dictionary(i, dictionary))? {
            ReturnCode::Ok => Ok(()),
            code => Err(std::io::Error::other(format!(
                "inflate dictionary: {code:?}"
            ))),
        }
    }

    /// Puts the low `bits` bits of `value` before the stream's input (zlib's
    /// `inflatePrime`).
    fn prime(&mut self, bits: u8, value: u8) -> std::io::Result<()> {
        let code =
            self.with_stream(|i| zlib_rs::inflate::prime(i, i32::from(bits), i32::from(value)))?;
        match code {
            ReturnCode::Ok => Ok(()),
            code => Err(std::io::Error::other(format!("inflate prime: {code:?}"))),
        }
    }

    /// Inflates from `input` into `output` until the end of the stream, either buffer runs
    /// out, or (with `InflateFlush::Block`) a block boundary.
    fn step(&mut self, input: &[u8], output: &mut [u8], flush: InflateFlush) -> InflateStep {
        let avail_in = input.len().min(u32::MAX as usize) as u32;
        let avail_out = output.len().min(u32::MAX as usize) as u32;
        let stream = &mut *self.stream;
        stream.next_in = input.as_ptr();
        stream.avail_in = avail_in;
        stream.next_out = output.as_mut_ptr();
        stream.avail_out = avail_out;
        // SAFETY: `stream` was initialised by `inflate::init` (checked in `new`) and is
        // ended only in `drop`; its input and output pointers and lengths describe
        // `input` and `output`, which are borrowed for the whole call and not used
        // through any other path meanwhile.
        let code = unsafe {
            match zlib_rs::inflate::InflateStream::from_stream_mut(stream) {
                Some(inflate) => zlib_rs::inflate::inflate(inflate, flush),
                None => ReturnCode::StreamError,
            }
        };
        let step = InflateStep {
            consumed: (avail_in - stream.avail_in) as usize,
            produced: (avail_out - stream.avail_out) as usize,
            code,
            data_type: stream.data_type,
        };
        // No pointer into the caller's buffers outlives the call.
        stream.next_in = std::ptr::null();
        stream.avail_in = 0;
        stream.next_out = std::ptr::null_mut();
        stream.avail_out = 0;
        step
    }
}

impl Drop for Inflate {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised in `new` and not ended yet (`from_stream_mut`
        // returns `None` otherwise); no buffer pointers are left in it.
        if let Some(inflate) =
            unsafe { zlib_rs::inflate::InflateStream::from_stream_mut(&mut *self.stream) }
        {
            zlib_rs::inflate::end(inflate);
        }
    }
}

/// zlib-rs' raw deflate at level 1 (the full path's level), writing through an output
/// buffer of its own.
struct RawDeflate {
    /// Boxed: the stream keeps one address from `init` to `end`.
    stream: Box<z_stream>,
    buffer: Vec<u8>,
}

impl RawDeflate {
    fn new() -> std::io::Result<Self> {
        let mut stream = Box::new(z_stream::default());
        let config = DeflateConfig {
            level: 1,
            // Raw deflate, a 32 KiB window.
            window_bits: -15,
            ..DeflateConfig::default()
        };
        let code = zlib_rs::deflate::init(&mut stream, config);
        if code != ReturnCode::Ok {
            return Err(std::io::Error::other(format!("deflate init: {code:?}")));
        }
        Ok(RawDeflate {
            stream,
            buffer: vec![0; IO_BUFFER],
        })
    }

    /// The deflate stream, for one call that leaves no buffer pointer in it.
    fn with_stream<T>(
        &mut self,
        call: impl FnOnce(&mut zlib_rs::deflate::DeflateStream) -> T,
    ) -> std::io::Result<T> {
        // SAFETY: the stream was initialised by `deflate::init` (checked in `new`) and is
        // ended only in `drop`; its buffer pointers are either null or set by `step` for
        // the duration of one call on buffers it borrows.
        match unsafe { zlib_rs::deflate::DeflateStream::from_stream_mut(&mut *self.stream) } {
            Some(deflate) => Ok(call(deflate)),
            None => Err(std::io::Error::other("deflate stream not initialised")),
        }
    }

    /// Puts the low `bits` bits of `value` before the stream's first bits (zlib's
    /// `deflatePrime`).
    fn prime(&mut self, bits: u8, value: u8) -> std::io::Result<()> {
        let code =
            self.with_stream(|d| zlib_rs::deflate::prime(d, i32::from(bits), i32::from(value)))?;
        match code {
            ReturnCode::Ok => Ok(()),
            code => Err(std::io::Error::other(format!("deflate prime: {code:?}"))),
        }
    }

    /// The history the stream's first matches may refer to (zlib's `deflateSetDictionary`).
    fn set_dictionary(&mut self, dictionary: &[u8]) -> std::io::Result<()> {
        if dictionary.is_empty() {
            return Ok(());
        }
        let code = self.with_stream(|d| zlib_rs::deflate::set_dictionary(d, dictionary))?;
        match code {
            ReturnCode::Ok => Ok(()),
            code => Err(std::io::Error::other(format!(
                "deflate dictionary: {code:?}"
            ))),
        }
    }

    /// Compresses all of `input` into `out`; with `DeflateFlush::Finish`, ends the stream.
    fn compress(
        &mut self,
        mut input: &[u8],
        flush: DeflateFlush,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        loop {
            let avail_in = input.len().min(u32::MAX as usize) as u32;
            let avail_out = self.buffer.len() as u32;
            let stream = &mut *self.stream;
            stream.next_in = input.as_ptr();
            stream.avail_in = avail_in;
            stream.next_out = self.buffer.as_mut_ptr();
            stream.avail_out = avail_out;
            let code = self.with_stream(|d| zlib_rs::deflate::deflate(d, flush));
            let stream = &mut *self.stream;
            let consumed = (avail_in - stream.avail_in) as usize;
            let produced = (avail_out - stream.avail_out) as usize;
            stream.next_in = std::ptr::null();
            stream.avail_in = 0;
            stream.next_out = std::ptr::null_mut();
            stream.avail_out = 0;
            let code = code?;
            input = &input[consumed..];
            out.write_all(&self.buffer[..produced])?;
            match code {
                ReturnCode::StreamEnd => return Ok(()),
                ReturnCode::Ok | ReturnCode::BufError => {}
                code => return Err(std::io::Error::other(format!("deflate: {code:?}"))),
            }
            let more_output = produced == self.buffer.len();
            if flush != DeflateFlush::Finish && input.is_empty() && !more_output {
                return Ok(());
            }
            if consumed == 0 && produced == 0 && code == ReturnCode::BufError {
                return Err(std::io::Error::other("deflate made no progress"));
            }
        }
    }
}

impl Drop for RawDeflate {
    fn drop(&mut self) {
        let _ = self.with_stream(|d| {
            let _ = zlib_rs::deflate::end(d);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_the_one_the_full_paths_encoder_writes() {
        let mut encoder =
            crate::compression::Encoder::new(Some(crate::Compression::Gz), Vec::new()).unwrap();
        encoder.write_all(b"x").unwrap();
        let bytes = encoder.finish().unwrap();
        assert_eq!(bytes[..10], GZIP_HEADER);
    }

    /// Drives [`Core`] as the cpio copy does, the new archive being the image's bytes and
    /// then `extra`: returns the most uncompressed bytes held at once and the new file's
    /// uncompressed bytes.
    fn splice_held(image: &[u8], extra: &[u8]) -> (usize, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let (input, partial) = (dir.path().join("image.gz"), dir.path().join("out.gz"));
        std::fs::write(&input, image).unwrap();
        let mut core = Core::open(&input, &partial).unwrap().unwrap();
        let mut held = 0;
        let mut chunk = Vec::new();
        loop {
            chunk.clear();
            core.take(&mut chunk).unwrap();
            if chunk.is_empty() {
                break;
            }
            core.put(&chunk).unwrap();
            held = held.max(core.plain.len() + core.window.len());
        }
        core.put(extra).unwrap();
        core.finish().unwrap();
        drop(core);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(File::open(&partial).unwrap())
            .read_to_end(&mut plain)
            .unwrap();
        (held, plain)
    }

    #[test]
    fn a_large_block_before_the_splice_point_is_not_held() {
        // Varied bytes (several blocks), then 3 MiB of zeros: one block of some 12 000
        // matches at level 9, which holds the splice point.
        let mut x: u32 = 0x2545_f491;
        let mut data: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 16) as u8
            })
            .collect();
        data.resize(data.len() + (3 << 20), 0);
        data.extend_from_slice(b"the end");
        for level in [1, 9] {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            encoder.write_all(&data).unwrap();
            let image = encoder.finish().unwrap();
            let (held, plain) = splice_held(&image, b" and more");
            assert_eq!(plain.len(), data.len() + 9, "level {level}");
            assert!(plain.starts_with(&data) && plain.ends_with(b" and more"));
            // The window, what inflate sent ahead, what the copy has not compared yet.
            assert!(
                held <= WINDOW + 3 * IO_BUFFER,
                "level {level}: {held} bytes held"
            );
        }
    }

    #[test]
    fn common_prefix_finds_the_first_difference_in_any_block() {
        let a: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(common_prefix(&a, &a), a.len());
        assert_eq!(common_prefix(&[], &[]), 0);
        for at in [0, 1, 4095, 4096, 4097, 9999] {
            let mut b = a.clone();
            b[at] ^= 1;
            assert_eq!(common_prefix(&a, &b), at, "difference at {at}");
        }
    }
}
