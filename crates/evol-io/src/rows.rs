//! Dataset files as rows: read, look into, and write back unchanged.
//!
//! The commands that work over any dataset (`evol dedup`, and those that
//! score and select) read the same layouts as seed files (JSONL, a JSON
//! array, plain text) but keep each row whole: a JSONL row is kept as its
//! line, byte for byte, and only parsed when a field is asked for (which
//! callers may do on many threads); a kept row is written back as it was
//! read, in the layout it came in.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::seeds::{field, instruction_of, kind, text_or_first_turn, Place, SeedError, SeedFormat};
use crate::source::{Raw, Records};

/// A dataset file's layout, once known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Jsonl,
    Json,
    Text,
}

/// One row, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub place: Place,
    pub body: Body,
    /// A line that ended with CR LF, written back so.
    pub crlf: bool,
}

/// A row's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A JSONL line, unparsed (without its line break).
    Line(String),
    /// An item of a JSON array.
    Item(Value),
    /// A line of a text file, trimmed: the instruction itself.
    Text(String),
}

/// Which text of a row to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextField {
    /// The instruction: `instruction` or `prompt` (any case), with an
    /// Alpaca `input` joined after a blank line, as seeds are read.
    Instruction,
    /// A top-level field by name (any case): a string, or a list of chat
    /// turns (the first user turn).
    Named(String),
}

impl std::str::FromStr for TextField {
    type Err = String;
    fn from_str(s: &str) -> Result<TextField, String> {
        match s.trim() {
            "" => Err("the field name is empty".into()),
            "instruction" => Ok(TextField::Instruction),
            name => Ok(TextField::Named(name.to_string())),
        }
    }
}

impl Row {
    /// The row as a JSON object (a text line is `{"instruction": line}`).
    pub fn object(&self) -> Result<Map<String, Value>, String> {
        let value = match &self.body {
            Body::Line(line) => serde_json::from_str(line).map_err(|e| format!("not valid JSON ({e})"))?,
            Body::Item(value) => value.clone(),
            Body::Text(text) => return Ok(Map::from_iter([("instruction".to_string(), Value::String(text.clone()))])),
        };
        match value {
            Value::Object(map) => Ok(map),
            other => Err(format!("expected a JSON object, found {}", kind(&other))),
        }
    }

    /// The row's text in `field`, and its `id` (or `idx`) when it has one.
    pub fn text(&self, field_name: &TextField) -> Result<(String, Option<String>), String> {
        if let Body::Text(text) = &self.body {
            return Ok((text.clone(), None));
        }
        let map = self.object()?;
        let text = match field_name {
            TextField::Instruction => instruction_of(&map)?,
            TextField::Named(name) => match field(&map, &[name.as_str()])? {
                Some(value) => text_or_first_turn(value, name)?,
                None => return Err(format!("missing the `{name}` field")),
            },
        };
        let id = match field(&map, &["id", "idx"])? {
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Ok((text, id))
    }
}

/// Reads a dataset file row by row (a JSON array is parsed whole).
pub struct RowReader {
    layout: Layout,
    records: Records,
}

/// Opens a dataset file; the layout comes from `format` as for seeds (by
/// extension, else by content).
pub fn open_rows(path: &Path, format: SeedFormat) -> Result<RowReader, SeedError> {
    let records = crate::source::open(path, format)?;
    let layout = match records.format() {
        SeedFormat::Json => Layout::Json,
        SeedFormat::Text => Layout::Text,
        // Tables and Parquet rows are written back as JSONL objects.
        _ => Layout::Jsonl,
    };
    Ok(RowReader { layout, records })
}

impl RowReader {
    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn name(&self) -> &str {
        self.records.name()
    }

    /// Whether the file starts with a UTF-8 byte order mark.
    pub fn bom(&self) -> bool {
        self.records.bom()
    }
}

impl Iterator for RowReader {
    /// A row, or an error naming the file and the place (a line that is
    /// not UTF-8, a table row with the wrong number of fields).
    type Item = Result<Row, SeedError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (place, raw) = match self.records.next()? {
            Ok(next) => next,
            Err(e) => return Some(Err(e)),
        };
        let body = match raw {
            Raw::Line(line) => Body::Line(line),
            Raw::Value(value) => Body::Item(value),
            Raw::Text(text) => Body::Text(text),
            Raw::Invalid(message) => {
                return Some(Err(SeedError::Invalid { path: self.records.name().to_string(), place, message }))
            }
        };
        Some(Ok(Row { place, body, crlf: self.records.crlf() }))
    }
}

/// Why `path` cannot hold rows written in `layout`, if its extension names
/// another container.
fn misnamed(path: &Path, layout: Layout) -> Option<String> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    let (written, fits): (&str, &[&str]) = match layout {
        Layout::Jsonl => ("JSON lines", &["jsonl", "ndjson", "jsonlines", "jl"]),
        Layout::Json => ("a JSON array", &["json"]),
        Layout::Text => ("text lines", &["txt", "text"]),
    };
    let containers = ["jsonl", "ndjson", "json", "csv", "tsv", "parquet", "pq", "txt", "arrow", "feather"];
    (containers.contains(&ext.as_str()) && !fits.contains(&ext.as_str())).then(|| {
        format!(
            "`{}` names a .{ext} file, but its rows are written as {written} (CSV, TSV and Parquet rows are written as JSON lines): name it .{}",
            path.display(),
            fits[0]
        )
    })
}

/// Writes rows in a layout, to a temporary file renamed into place by
/// [`RowWriter::finish`], so a failed command never leaves half a file
/// under the output's name.
pub struct RowWriter {
    path: PathBuf,
    tmp: PathBuf,
    layout: Layout,
    out: BufWriter<File>,
    rows: usize,
    finished: bool,
}

impl RowWriter {
    /// A name whose extension says another container (`kept.parquet` for
    /// JSON lines) is refused: the file would not be what its name says.
    pub fn create(path: &Path, layout: Layout) -> std::io::Result<RowWriter> {
        if let Some(message) = misnamed(path, layout) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, message));
        }
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let tmp = path.with_file_name(name);
        let out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        Ok(RowWriter { path: path.to_path_buf(), tmp, layout, out, rows: 0, finished: false })
    }

    /// Writes a row as it was read (a JSON array's item as compact JSON).
    pub fn write(&mut self, row: &Row) -> std::io::Result<()> {
        match &row.body {
            Body::Line(line) | Body::Text(line) => self.line_ending(line, if row.crlf { b"\r\n" } else { b"\n" }),
            Body::Item(value) if self.layout == Layout::Json => self.value(value),
            Body::Item(value) => self.line(&serde_json::to_string(value).map_err(std::io::Error::other)?),
        }
    }

    /// Writes a JSON object as a row (a text file gets its instruction).
    pub fn write_object(&mut self, object: &Map<String, Value>) -> std::io::Result<()> {
        match self.layout {
            Layout::Jsonl => self.line(&serde_json::to_string(object).expect("serializable")),
            Layout::Json => self.value(&Value::Object(object.clone())),
            Layout::Text => {
                let text = instruction_of(object).unwrap_or_default();
                self.line(&text.replace(['\n', '\r'], " "))
            }
        }
    }

    /// Writes any serializable value as a JSON row (JSONL or JSON array;
    /// a text file gets its compact JSON on one line).
    pub fn write_json(&mut self, value: &impl serde::Serialize) -> std::io::Result<()> {
        match self.layout {
            Layout::Json => self.value(&serde_json::to_value(value).map_err(std::io::Error::other)?),
            _ => self.line(&serde_json::to_string(value).map_err(std::io::Error::other)?),
        }
    }

    /// Writes a line of text as a row (it must be one JSONL row, or one
    /// line of text, without a line break).
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        debug_assert!(!line.contains('\n'));
        self.line(line)
    }

    /// Starts the file with a UTF-8 byte order mark, as its input did
    /// (JSON lines and text; call before the first row).
    pub fn with_bom(mut self, bom: bool) -> std::io::Result<RowWriter> {
        if bom && self.rows == 0 && self.layout != Layout::Json {
            self.out.write_all(b"\xEF\xBB\xBF")?;
        }
        Ok(self)
    }

    fn line(&mut self, line: &str) -> std::io::Result<()> {
        self.line_ending(line, b"\n")
    }

    fn line_ending(&mut self, line: &str, ending: &[u8]) -> std::io::Result<()> {
        self.rows += 1;
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(ending)
    }

    fn value(&mut self, value: &Value) -> std::io::Result<()> {
        self.out.write_all(if self.rows == 0 { b"[\n" } else { b",\n" })?;
        self.rows += 1;
        serde_json::to_writer(&mut self.out, value).map_err(std::io::Error::other)
    }

    /// Ends the file and puts it in place; returns the rows written.
    pub fn finish(mut self) -> std::io::Result<usize> {
        if self.layout == Layout::Json {
            self.out.write_all(if self.rows == 0 { b"[]\n" } else { b"\n]\n" })?;
        }
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        std::fs::rename(&self.tmp, &self.path)?;
        self.finished = true;
        Ok(self.rows)
    }
}

impl Drop for RowWriter {
    fn drop(&mut self) {
        // Unfinished: no partial file is left under any name.
        if !self.finished {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_file_is_never_named_for_another_container() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["kept.parquet", "kept.csv", "kept.json", "kept.tsv"] {
            let err = RowWriter::create(&dir.path().join(name), Layout::Jsonl).err().expect(name);
            assert!(err.to_string().contains("JSON lines") && err.to_string().contains(".jsonl"), "{err}");
            assert!(!dir.path().join(name).exists());
        }
        assert!(RowWriter::create(&dir.path().join("kept.jsonl"), Layout::Json).is_err());
        for (name, layout) in
            [("a.jsonl", Layout::Jsonl), ("b", Layout::Jsonl), ("c.json", Layout::Json), ("d.txt", Layout::Text)]
        {
            RowWriter::create(&dir.path().join(name), layout).unwrap().finish().unwrap();
        }
    }

    use super::*;

    fn read(dir: &Path, name: &str, text: &str) -> (Layout, Vec<Row>) {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let reader = open_rows(&path, SeedFormat::Auto).unwrap();
        let layout = reader.layout();
        (layout, reader.collect::<Result<Vec<_>, _>>().unwrap())
    }

    #[test]
    fn rows_come_back_byte_for_byte_in_their_layout() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = "\u{FEFF}{\"instruction\": \"A\",  \"x\": 1}\r\n\n{\"Prompt\":\"B\",\"input\":\"in\",\"id\":7}\n";
        let (layout, rows) = read(dir.path(), "a.jsonl", jsonl);
        assert_eq!(layout, Layout::Jsonl);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].place, Place::Line(3));
        assert_eq!(rows[1].text(&TextField::Instruction).unwrap(), ("B\n\nin".to_string(), Some("7".to_string())));
        let out = dir.path().join("out.jsonl");
        let mut w = RowWriter::create(&out, layout).unwrap().with_bom(true).unwrap();
        for row in &rows {
            w.write(row).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 2);
        // The byte order mark and each row's line ending are kept (the
        // blank line is not a row).
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "\u{FEFF}{\"instruction\": \"A\",  \"x\": 1}\r\n{\"Prompt\":\"B\",\"input\":\"in\",\"id\":7}\n"
        );
        assert!(open_rows(&dir.path().join("a.jsonl"), SeedFormat::Auto).unwrap().bom());

        let (layout, rows) = read(dir.path(), "b.json", r#"[{"instruction":"A","output":"o"},{"instruction":"B"}]"#);
        assert_eq!(layout, Layout::Json);
        assert_eq!(rows[0].text(&"output".parse().unwrap()).unwrap().0, "o");
        let err = rows[1].text(&"output".parse().unwrap()).unwrap_err();
        assert_eq!(err, "missing the `output` field");
        let out = dir.path().join("out.json");
        let mut w = RowWriter::create(&out, layout).unwrap();
        w.write(&rows[1]).unwrap();
        w.finish().unwrap();
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(back, serde_json::json!([{"instruction": "B"}]));
        let empty = dir.path().join("empty.json");
        RowWriter::create(&empty, Layout::Json).unwrap().finish().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&std::fs::read_to_string(&empty).unwrap()).unwrap(),
            serde_json::json!([])
        );

        let (layout, rows) = read(dir.path(), "c.txt", "First one\n\n  Second  \n");
        assert_eq!(layout, Layout::Text);
        assert_eq!(rows[1].text(&TextField::Instruction).unwrap(), ("Second".to_string(), None));
        assert_eq!(rows[1].place, Place::Line(3));
    }

    #[test]
    fn bad_rows_say_what_is_wrong_and_an_unfinished_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_, rows) = read(dir.path(), "a.jsonl", "{oops\n[1]\n{\"instruction\": 5}\n");
        assert!(rows[0].text(&TextField::Instruction).unwrap_err().starts_with("not valid JSON"));
        assert_eq!(rows[1].text(&TextField::Instruction).unwrap_err(), "expected a JSON object, found an array");
        assert_eq!(
            rows[2].text(&TextField::Instruction).unwrap_err(),
            "`instruction` must be a string, found a number"
        );
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, b"{\"instruction\":\"a\"}\n\xff\n").unwrap();
        let err = open_rows(&path, SeedFormat::Auto).unwrap().find_map(Result::err).unwrap();
        assert!(err.to_string().ends_with("line 2: not valid UTF-8"), "{err}");
        let out = dir.path().join("never.jsonl");
        let mut w = RowWriter::create(&out, Layout::Jsonl).unwrap();
        w.write(&rows[0]).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "only the two inputs are left");
    }
}
