//! Reading with a size bound, checked while reading: `/dev/zero`, or a
//! large file with no line break, given as seeds or settings, fails at the
//! bound instead of filling memory.

use std::io::{self, BufRead, Read};
use std::path::Path;

/// The largest settings file read whole (`--config`, `--ops-file`, a
/// template): 4 MiB.
pub const MAX_SETTINGS_BYTES: u64 = 4 << 20;

/// The longest line (a JSONL record, a text line, a table row) of a
/// dataset file: 64 MiB.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// The largest file read whole (a JSON array, Parquet from a stream): 1 GiB.
pub const MAX_DOCUMENT_BYTES: u64 = 1 << 30;

/// Reads a text file of at most `limit` bytes.
pub fn read_text(path: &Path, limit: u64) -> io::Result<String> {
    let file = std::fs::File::open(path)?;
    read_all(file, limit)
}

/// Reads a whole text of at most `limit` bytes.
pub(crate) fn read_all(reader: impl Read, limit: u64) -> io::Result<String> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    String::from_utf8(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not valid UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// Reads whole bytes of at most `limit`.
pub(crate) fn read_bytes(reader: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("larger than {}; is it the right file?", size(limit)))
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b => format!("{} MiB", b >> 20),
    }
}

/// Reads up to and including the next `\n` into `line`, at most `limit`
/// bytes; a longer line is an error (and nothing more of it is read).
pub(crate) fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
    let read = reader.by_ref().take(limit as u64 + 1).read_until(b'\n', line)?;
    if line.len() > limit && line.last() != Some(&b'\n') {
        return Err(long_line(limit));
    }
    Ok(read)
}

fn long_line(limit: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("a line longer than {} (no line break); is it a dataset file?", size(limit as u64)),
    )
}

/// A reader that fails once `limit` bytes pass without a line break (for
/// the table reader, which reads a row at a time from it).
pub(crate) struct LineBound<R> {
    inner: R,
    limit: usize,
    run: usize,
}

impl<R: BufRead> LineBound<R> {
    pub(crate) fn new(inner: R, limit: usize) -> LineBound<R> {
        LineBound { inner, limit, run: 0 }
    }
}

impl<R: BufRead> Read for LineBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for LineBound<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.run > self.limit {
            return Err(long_line(self.limit));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if let Ok(buffer) = self.inner.fill_buf() {
            let taken = &buffer[..amount.min(buffer.len())];
            match taken.iter().rposition(|b| *b == b'\n') {
                Some(at) => self.run = taken.len() - at - 1,
                None => self.run += taken.len(),
            }
        }
        self.inner.consume(amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_line_stops_at_the_bound() {
        let mut zeros = io::BufReader::new(io::repeat(0));
        let mut line = Vec::new();
        let e = read_line(&mut zeros, &mut line, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("longer than 1 MiB"), "{e}");
        assert_eq!(line.len(), (1 << 20) + 1, "read no further than the bound");
    }

    #[test]
    fn lines_within_the_bound_are_read_whole() {
        let mut text = io::Cursor::new(b"abc\nde".to_vec());
        let mut line = Vec::new();
        assert_eq!(read_line(&mut text, &mut line, 4).unwrap(), 4);
        assert_eq!(line, b"abc\n");
        line.clear();
        assert_eq!(read_line(&mut text, &mut line, 4).unwrap(), 2);
        assert_eq!(line, b"de");
    }

    #[test]
    fn whole_reads_stop_at_the_bound() {
        let e = read_all(io::repeat(b'a'), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("larger than 1 MiB"), "{e}");
        assert_eq!(read_all(&b"short"[..], 5).unwrap(), "short");
        assert!(read_bytes(io::repeat(1), 1 << 20).is_err());
    }

    #[test]
    fn a_table_without_line_breaks_stops_at_the_bound() {
        let bounded = LineBound::new(io::BufReader::new(io::repeat(b'x')), 1 << 16);
        let mut reader = csv::ReaderBuilder::new().from_reader(bounded);
        let e = reader.byte_headers().unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        // Line breaks reset the count: many short rows are fine.
        let rows = "a,b\n".repeat(100_000);
        let bounded = LineBound::new(io::BufReader::new(rows.as_bytes()), 16);
        let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(bounded);
        assert_eq!(reader.byte_records().count(), 100_000);
    }
}
