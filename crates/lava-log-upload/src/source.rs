//! Where the records come from: the job's `logs.yaml`, read from a byte offset.
//!
//! The logger appends one `- {...}` line per record and flushes it; the uploader reads
//! complete lines only (a line still being written has no `\n` yet and is left for the
//! next read). Reading from the file instead of a queue in memory is what bounds the
//! uploader's memory while the server is away: only the batch in flight is held, however
//! long the outage, and nothing is lost because the file is the log.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A batch of records read from the log file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The records, each one line without its `- ` list marker and newline.
    pub records: Vec<String>,
    /// `ends[i]`: the file offset just after record `i` (where the next read starts once
    /// records `0..=i` are accepted).
    pub ends: Vec<u64>,
}

impl Batch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no complete record was available.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// LAVA's `lines` form field: a YAML block sequence of the records, no final newline.
    pub fn lines_field(&self) -> String {
        let size: usize = self.records.iter().map(|r| r.len() + 3).sum();
        let mut out = String::with_capacity(size);
        for (i, record) in self.records.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str("- ");
            out.push_str(record);
        }
        out
    }
}

/// How much one batch may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// At most this many records (LAVA: 1000).
    pub records: usize,
    /// At most this many bytes of records, unless a single record is larger (it is then
    /// sent alone): keeps a request below the server's upload size limit.
    pub bytes: usize,
}

/// The job's `logs.yaml`, as the logger writes it.
#[derive(Debug, Clone)]
pub struct LogFile {
    path: PathBuf,
}

impl LogFile {
    /// The log file at `path` (it may not exist yet: nothing is read then).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LogFile { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The complete records from byte `offset` on, within `limits` (blocking I/O: call it
    /// off the async threads).
    pub fn read_batch(&self, offset: u64, limits: BatchLimits) -> io::Result<Batch> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Batch::default()),
            Err(e) => return Err(e),
        };
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(offset))?;
        let mut batch = Batch::default();
        let mut position = offset;
        let mut bytes = 0usize;
        let mut line = Vec::new();
        while batch.len() < limits.records.max(1) {
            line.clear();
            let read = reader.read_until(b'\n', &mut line)?;
            if read == 0 || line.last() != Some(&b'\n') {
                break; // end of file, or a record still being written
            }
            if !batch.is_empty() && bytes + read > limits.bytes {
                break;
            }
            position += read as u64;
            bytes += read;
            let text = String::from_utf8_lossy(&line[..read - 1]);
            let record = text.strip_prefix("- ").unwrap_or(&text).to_string();
            batch.records.push(record);
            batch.ends.push(position);
        }
        Ok(batch)
    }

    /// How many complete records follow byte `offset` (for the final report).
    pub fn count_from(&self, offset: u64) -> io::Result<u64> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(offset))?;
        let mut count = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
                return Ok(count);
            }
            count += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const WIDE: BatchLimits = BatchLimits {
        records: 1000,
        bytes: 1 << 20,
    };

    #[test]
    fn reads_complete_records_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.yaml");
        let mut file = File::create(&path).unwrap();
        write!(file, "- {{\"a\": \"1\"}}\n- {{\"b\": \"2\"}}\n- {{\"c\"").unwrap();
        file.flush().unwrap();
        let log = LogFile::new(&path);
        let batch = log.read_batch(0, WIDE).unwrap();
        assert_eq!(batch.records, ["{\"a\": \"1\"}", "{\"b\": \"2\"}"]);
        assert_eq!(batch.lines_field(), "- {\"a\": \"1\"}\n- {\"b\": \"2\"}");
        // The partial third record is read once it is complete.
        writeln!(file, ": \"3\"}}").unwrap();
        let rest = log.read_batch(batch.ends[1], WIDE).unwrap();
        assert_eq!(rest.records, ["{\"c\": \"3\"}"]);
        assert_eq!(rest.ends, [std::fs::metadata(&path).unwrap().len()]);
        assert_eq!(log.count_from(batch.ends[0]).unwrap(), 2);
    }

    #[test]
    fn batches_stop_at_the_record_and_byte_limits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.yaml");
        let lines: String = (0..10).map(|i| format!("- {{\"n\": \"{i}\"}}\n")).collect();
        std::fs::write(&path, &lines).unwrap();
        let log = LogFile::new(&path);
        let by_count = log
            .read_batch(
                0,
                BatchLimits {
                    records: 3,
                    bytes: 1 << 20,
                },
            )
            .unwrap();
        assert_eq!(by_count.len(), 3);
        let line_len = lines.lines().next().unwrap().len() + 1;
        let by_bytes = log
            .read_batch(
                0,
                BatchLimits {
                    records: 1000,
                    bytes: 2 * line_len + 1,
                },
            )
            .unwrap();
        assert_eq!(by_bytes.len(), 2);
        // A record larger than the byte limit is still sent, alone.
        let alone = log
            .read_batch(
                0,
                BatchLimits {
                    records: 1000,
                    bytes: 1,
                },
            )
            .unwrap();
        assert_eq!(alone.len(), 1);
        assert!(
            LogFile::new(dir.path().join("missing"))
                .read_batch(0, WIDE)
                .unwrap()
                .is_empty()
        );
    }
}
