//! The records of a dataset file, in whatever container it comes in: JSONL
//! lines, the items of a JSON array, the rows of a CSV or TSV table (with a
//! header row), the rows of a Parquet file, or the lines of a text file.
//! Seeds ([`crate::seeds`]) and rows ([`crate::rows`]) are both read
//! through this one place, so every command accepts the same files.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::Path;

use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde_json::Value;

use crate::bounded::{self, LineBound, MAX_DOCUMENT_BYTES, MAX_LINE_BYTES};
use crate::container::{Place, SeedError, SeedFormat};

/// One record, as the container gives it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw {
    /// A JSONL line, or a table or Parquet row as a JSON object's text,
    /// unparsed, without a line break.
    Line(String),
    /// A JSON array's item.
    Value(Value),
    /// A line of a text file, trimmed.
    Text(String),
    /// A record the container itself cannot give (not UTF-8, a table row
    /// with the wrong number of fields), and what is wrong with it.
    Invalid(String),
}

/// A dataset file's records, one at a time.
pub(crate) struct Records {
    name: String,
    format: SeedFormat,
    inner: Inner,
    /// The file starts with a UTF-8 byte order mark.
    bom: bool,
    /// The last line read ended with CR LF (JSONL and text lines).
    crlf: bool,
}

enum Inner {
    Lines {
        reader: Box<dyn BufRead + Send>,
        number: usize,
        line: Vec<u8>,
    },
    Items(std::iter::Enumerate<std::vec::IntoIter<Value>>),
    Table {
        reader: csv::Reader<LineBound<Box<dyn BufRead + Send>>>,
        header: Vec<String>,
        record: csv::ByteRecord,
        row: usize,
    },
    Parquet {
        reader: ParquetRecordBatchReader,
        pending: VecDeque<String>,
        row: usize,
        /// The parts of a dataset directory still to read, in order.
        rest: VecDeque<std::path::PathBuf>,
    },
    Done,
}

/// Rows of a Parquet file converted per batch.
const PARQUET_BATCH: usize = 1024;

/// Opens a file, or a Hugging Face dataset directory (its Parquet parts,
/// read in order as one table, see [`dataset_parts`]); `format` `Auto`
/// goes by extension, then by content.
pub(crate) fn open(path: &Path, format: SeedFormat) -> Result<Records, SeedError> {
    let name = path.display().to_string();
    if path.is_dir() {
        return open_parts(path, format, name);
    }
    let file = std::fs::File::open(path).map_err(|source| SeedError::Io { path: name.clone(), source })?;
    let format = resolve(path, format);
    if format == SeedFormat::Parquet {
        // Parquet is read from its footer first, so it needs the file
        // itself, not a stream.
        let builder = ParquetRecordBatchReaderBuilder::try_new(file);
        return parquet(builder, name, VecDeque::new());
    }
    Records::new(Box::new(std::io::BufReader::with_capacity(1 << 20, file)), &name, format)
}

/// The data files of a Hugging Face dataset directory (what `evol export
/// --to DIR` writes, and what `datasets` saves): the Parquet files under
/// `data/` (else at its top), sorted by name so `train-00000-of-00002`
/// comes first. `None` when `dir` holds none.
pub fn dataset_parts(dir: &Path) -> Option<Vec<std::path::PathBuf>> {
    let parquet_in = |d: &Path| -> Vec<std::path::PathBuf> {
        let mut parts: Vec<_> = std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && resolve(p, SeedFormat::Auto) == SeedFormat::Parquet)
            .collect();
        parts.sort();
        parts
    };
    [dir.join("data"), dir.to_path_buf()].iter().map(|d| parquet_in(d)).find(|parts| !parts.is_empty())
}

/// A digest (BLAKE3, hex) of what a dataset path holds: a file's bytes,
/// or a dataset directory's parts in order.
pub fn input_digest(path: &Path) -> std::io::Result<String> {
    let parts = match path.is_dir() {
        true => dataset_parts(path).ok_or_else(|| std::io::Error::other("a directory without dataset files"))?,
        false => vec![path.to_path_buf()],
    };
    let mut digest = evol_digest::Digest::new();
    for part in parts {
        digest = digest.read(std::fs::File::open(part)?)?;
    }
    Ok(digest.full_hex())
}

fn open_parts(dir: &Path, format: SeedFormat, name: String) -> Result<Records, SeedError> {
    let Some(parts) = dataset_parts(dir) else {
        return Err(SeedError::Io {
            path: name,
            source: std::io::Error::other(
                "a directory without dataset files (a Hugging Face dataset directory holds data/*.parquet)",
            ),
        });
    };
    if !matches!(format, SeedFormat::Auto | SeedFormat::Parquet) {
        return Err(SeedError::Invalid {
            path: name,
            place: Place::Row(1),
            message: format!("a dataset directory holds Parquet files, not {format:?}"),
        });
    }
    let mut rest: VecDeque<_> = parts.into();
    let first = rest.pop_front().expect("found");
    let file = std::fs::File::open(&first).map_err(|source| SeedError::Io { path: name.clone(), source })?;
    parquet(ParquetRecordBatchReaderBuilder::try_new(file), name, rest)
}

/// The format a path's extension names, when `format` is `Auto` (else
/// `format`); `Auto` when the extension says nothing.
pub(crate) fn resolve(path: &Path, format: SeedFormat) -> SeedFormat {
    match format {
        SeedFormat::Auto => match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("jsonl" | "ndjson") => SeedFormat::Jsonl,
            Some("json") => SeedFormat::Json,
            Some("csv") => SeedFormat::Csv,
            Some("tsv" | "tab") => SeedFormat::Tsv,
            Some("parquet" | "pq") => SeedFormat::Parquet,
            Some("txt" | "text") => SeedFormat::Text,
            _ => SeedFormat::Auto,
        },
        f => f,
    }
}

fn parquet(
    builder: parquet::errors::Result<
        ParquetRecordBatchReaderBuilder<impl parquet::file::reader::ChunkReader + 'static>,
    >,
    name: String,
    rest: VecDeque<std::path::PathBuf>,
) -> Result<Records, SeedError> {
    let invalid = |e: &dyn std::fmt::Display| SeedError::Invalid {
        path: name.clone(),
        place: Place::Row(1),
        message: format!("not a readable Parquet file ({e})"),
    };
    let reader = builder.and_then(|b| b.with_batch_size(PARQUET_BATCH).build()).map_err(|e| invalid(&e))?;
    Ok(Records {
        name: name.clone(),
        format: SeedFormat::Parquet,
        inner: Inner::Parquet { reader, pending: VecDeque::new(), row: 0, rest },
        bom: false,
        crlf: false,
    })
}

impl Records {
    /// Reads records from any reader; `name` is used in messages.
    pub(crate) fn new(
        mut reader: Box<dyn BufRead + Send>,
        name: &str,
        format: SeedFormat,
    ) -> Result<Records, SeedError> {
        let io = |source| SeedError::Io { path: name.to_string(), source };
        let bom = reader.fill_buf().map_err(io)?.starts_with(b"\xEF\xBB\xBF");
        let mut format = format;
        if format == SeedFormat::Auto {
            let head = reader.fill_buf().map_err(io)?;
            let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
            format = if head.starts_with(b"PAR1") {
                SeedFormat::Parquet
            } else {
                match head.iter().find(|b| !b.is_ascii_whitespace()) {
                    Some(b'[') => SeedFormat::Json,
                    Some(b'{') => SeedFormat::Jsonl,
                    _ => SeedFormat::Text,
                }
            };
        }
        let inner = match format {
            SeedFormat::Parquet => {
                let bytes = bounded::read_bytes(reader, MAX_DOCUMENT_BYTES).map_err(io)?;
                return parquet(
                    ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)),
                    name.to_string(),
                    VecDeque::new(),
                );
            }
            SeedFormat::Json => {
                let text = bounded::read_all(reader, MAX_DOCUMENT_BYTES).map_err(io)?;
                let items: Vec<Value> = serde_json::from_str(strip_bom(&text)).map_err(|e| SeedError::Invalid {
                    path: name.to_string(),
                    place: Place::Line(e.line()),
                    message: format!("not a JSON array of objects ({e})"),
                })?;
                Inner::Items(items.into_iter().enumerate())
            }
            SeedFormat::Csv | SeedFormat::Tsv => {
                let delimiter = if format == SeedFormat::Tsv { b'\t' } else { b',' };
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(delimiter)
                    .flexible(true)
                    .from_reader(LineBound::new(reader, MAX_LINE_BYTES));
                let header = reader.byte_headers().map_err(|e| table_error(name, 0, e))?;
                let mut names = Vec::with_capacity(header.len());
                for (i, field) in header.iter().enumerate() {
                    let field = std::str::from_utf8(field).map_err(|_| SeedError::Invalid {
                        path: name.to_string(),
                        place: Place::Line(1),
                        message: "the header row is not valid UTF-8".into(),
                    })?;
                    let field = if i == 0 { strip_bom(field) } else { field };
                    names.push(field.trim().to_string());
                }
                if names.iter().all(String::is_empty) {
                    return Err(SeedError::Invalid {
                        path: name.to_string(),
                        place: Place::Line(1),
                        message: "a table needs a header row naming its columns".into(),
                    });
                }
                Inner::Table { reader, header: names, record: csv::ByteRecord::new(), row: 0 }
            }
            SeedFormat::Jsonl | SeedFormat::Text => Inner::Lines { reader, number: 0, line: Vec::new() },
            SeedFormat::Auto => unreachable!("resolved above"),
        };
        Ok(Records { name: name.to_string(), format, inner, bom, crlf: false })
    }

    /// Whether the file starts with a UTF-8 byte order mark.
    pub(crate) fn bom(&self) -> bool {
        self.bom
    }

    /// Whether the last line read ended with CR LF.
    pub(crate) fn crlf(&self) -> bool {
        self.crlf
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The container, once known (never `Auto`).
    pub(crate) fn format(&self) -> SeedFormat {
        self.format
    }
}

fn table_error(name: &str, row: usize, e: csv::Error) -> SeedError {
    match e.into_kind() {
        csv::ErrorKind::Io(source) => SeedError::Io { path: name.to_string(), source },
        other => SeedError::Invalid {
            path: name.to_string(),
            place: if row == 0 { Place::Line(1) } else { Place::Row(row) },
            message: format!("not a readable table ({other:?})"),
        },
    }
}

impl Iterator for Records {
    type Item = Result<(Place, Raw), SeedError>;

    fn next(&mut self) -> Option<Self::Item> {
        let text = self.format == SeedFormat::Text;
        match &mut self.inner {
            Inner::Done => None,
            Inner::Items(items) => {
                let (i, value) = items.next()?;
                Some(Ok((Place::Item(i + 1), Raw::Value(value))))
            }
            Inner::Lines { reader, number, line } => loop {
                line.clear();
                match bounded::read_line(reader, line, MAX_LINE_BYTES) {
                    Ok(0) => {
                        self.inner = Inner::Done;
                        return None;
                    }
                    Ok(_) => {}
                    Err(source) => {
                        // Not a record to skip: nothing after it can be read.
                        let source = match source.kind() {
                            std::io::ErrorKind::InvalidData => {
                                std::io::Error::new(source.kind(), format!("line {}: {source}", *number + 1))
                            }
                            _ => source,
                        };
                        self.inner = Inner::Done;
                        return Some(Err(SeedError::Io { path: self.name.clone(), source }));
                    }
                }
                *number += 1;
                let place = Place::Line(*number);
                let Ok(content) = std::str::from_utf8(line) else {
                    return Some(Ok((place, Raw::Invalid("not valid UTF-8".into()))));
                };
                let content = if *number == 1 { strip_bom(content) } else { content };
                self.crlf = content.ends_with("\r\n");
                let content = content.strip_suffix('\n').unwrap_or(content);
                let content = content.strip_suffix('\r').unwrap_or(content);
                if content.trim().is_empty() {
                    continue;
                }
                let raw = if text { Raw::Text(content.trim().to_string()) } else { Raw::Line(content.to_string()) };
                return Some(Ok((place, raw)));
            },
            Inner::Table { reader, header, record, row } => loop {
                match reader.read_byte_record(record) {
                    Ok(false) => {
                        self.inner = Inner::Done;
                        return None;
                    }
                    Ok(true) => {}
                    Err(e) => {
                        let e = table_error(&self.name, *row + 1, e);
                        self.inner = Inner::Done;
                        return Some(Err(e));
                    }
                }
                *row += 1;
                let place = Place::Row(*row);
                if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
                    continue;
                }
                if record.len() != header.len() {
                    let message = format!("has {} fields; the header has {}", record.len(), header.len());
                    return Some(Ok((place, Raw::Invalid(message))));
                }
                // A JSON object's text, its keys in the header's order (a
                // row is written back with its columns as they were).
                let mut object = String::from("{");
                for (name, field) in header.iter().zip(record.iter()) {
                    let Ok(field) = std::str::from_utf8(field) else {
                        return Some(Ok((place, Raw::Invalid(format!("the `{name}` field is not valid UTF-8")))));
                    };
                    if !name.is_empty() {
                        if object.len() > 1 {
                            object.push(',');
                        }
                        object.push_str(&Value::String(name.clone()).to_string());
                        object.push(':');
                        object.push_str(&Value::String(field.to_string()).to_string());
                    }
                }
                object.push('}');
                return Some(Ok((place, Raw::Line(object))));
            },
            Inner::Parquet { reader, pending, row, rest } => loop {
                if let Some(line) = pending.pop_front() {
                    *row += 1;
                    return Some(Ok((Place::Row(*row), Raw::Line(line))));
                }
                let next = match reader.next() {
                    Some(next) => next,
                    // The next part of a dataset directory, numbered on.
                    None => {
                        let part = rest.pop_front()?;
                        let opened = std::fs::File::open(&part)
                            .map_err(|e| e.to_string())
                            .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| e.to_string()))
                            .and_then(|b| b.with_batch_size(PARQUET_BATCH).build().map_err(|e| e.to_string()));
                        match opened {
                            Ok(next) => *reader = next,
                            Err(e) => {
                                let e = SeedError::Invalid {
                                    path: self.name.clone(),
                                    place: Place::Row(*row + 1),
                                    message: format!("`{}` is not a readable Parquet file ({e})", part.display()),
                                };
                                self.inner = Inner::Done;
                                return Some(Err(e));
                            }
                        }
                        continue;
                    }
                };
                let batch = match next {
                    Ok(batch) => batch,
                    Err(e) => {
                        let e = SeedError::Invalid {
                            path: self.name.clone(),
                            place: Place::Row(*row + 1),
                            message: format!("cannot read the Parquet rows ({e})"),
                        };
                        self.inner = Inner::Done;
                        return Some(Err(e));
                    }
                };
                match batch_rows(&batch) {
                    Ok(rows) => pending.extend(rows),
                    Err(message) => {
                        let e = SeedError::Invalid { path: self.name.clone(), place: Place::Row(*row + 1), message };
                        self.inner = Inner::Done;
                        return Some(Err(e));
                    }
                }
            },
        }
    }
}

/// A Parquet batch's rows as JSON objects' texts, keys in the schema's
/// order (nested lists and structs become arrays and objects; nulls are
/// left out).
fn batch_rows(batch: &arrow_array::RecordBatch) -> Result<Vec<String>, String> {
    let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
    writer.write(batch).and_then(|()| writer.finish()).map_err(|e| format!("cannot convert the Parquet rows ({e})"))?;
    let bytes = writer.into_inner();
    let text = String::from_utf8(bytes).map_err(|e| format!("cannot convert the Parquet rows ({e})"))?;
    Ok(text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
}

pub(crate) fn strip_bom(s: &str) -> &str {
    s.strip_prefix('\u{FEFF}').unwrap_or(s)
}
