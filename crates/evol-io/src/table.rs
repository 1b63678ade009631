//! Writing a dataset in a fixed schema: as JSONL, as one Parquet file, or
//! as a Hugging Face dataset directory (`data/train-0000K-of-0000N.parquet`
//! files of bounded size, which `datasets.load_dataset(DIR)` and the Hub
//! read as they are).
//!
//! Rows arrive as JSON objects that match the schema; Parquet rows are
//! converted with arrow's own JSON decoder (so nested lists of structs,
//! such as chat messages, take arrow's types) and written zstd-compressed.
//! Every file is written under a temporary name and renamed into place by
//! [`TableWriter::finish`], so a failed export leaves nothing half-written
//! under the target's name.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;

/// Why a table could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot write `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{path}` as Parquet: {message}")]
    Parquet { path: String, message: String },
    #[error("`{path}` already exists and is not empty (choose another path, or remove it)")]
    Exists { path: String },
}

/// Where a table goes, by the path's form: `.jsonl`, `.parquet`, or a
/// directory (the Hugging Face layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Jsonl(PathBuf),
    Parquet(PathBuf),
    /// A dataset directory; `max_file_bytes` bounds each Parquet file.
    HubDir {
        dir: PathBuf,
        max_file_bytes: u64,
    },
}

impl Target {
    /// The target a path names: a `.jsonl` or `.parquet` file, else a
    /// directory.
    pub fn from_path(path: &Path, max_file_bytes: u64) -> Target {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("jsonl") => Target::Jsonl(path.to_path_buf()),
            Some("parquet") => Target::Parquet(path.to_path_buf()),
            _ => Target::HubDir { dir: path.to_path_buf(), max_file_bytes },
        }
    }
}

/// A column type: a text, a list of `{a, b}` text pairs (chat turns), an
/// integer or a float; each nullable or not.
pub fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// A list of structs of text fields, such as `[{role, content}]`.
pub fn turns(name: &str, keys: [&str; 2]) -> Field {
    let item = DataType::Struct(keys.iter().map(|k| Field::new(*k, DataType::Utf8, false)).collect());
    Field::new(name, DataType::List(Arc::new(Field::new("item", item, true))), false)
}

pub fn integer(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Int64, nullable)
}

pub fn float(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Float64, nullable)
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    /// The files, relative to a directory target (else the file itself).
    pub files: Vec<PathBuf>,
    /// Their sizes, in bytes.
    pub bytes: u64,
}

/// A row's size as compact JSON text, without writing it out: strings
/// count their bytes, every other value a few.
fn json_size(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.len() as u64 + 2,
        Value::Array(items) => 2 + items.iter().map(|v| json_size(v) + 1).sum::<u64>(),
        Value::Object(map) => 2 + map.iter().map(|(k, v)| k.len() as u64 + 4 + json_size(v)).sum::<u64>(),
        Value::Number(_) => 20,
        Value::Bool(_) | Value::Null => 5,
    }
}

/// Writes `value` as compact JSON with the keys of its objects in the
/// order `shape` gives its fields (the layout's order: `instruction`,
/// `input`, `output`; `role`, `content`), other keys after them.
fn ordered(out: &mut String, value: &Value, shape: &DataType) {
    match (value, shape) {
        (Value::Object(map), DataType::Struct(fields)) => {
            out.push('{');
            let mut first = true;
            let named = fields.iter().filter_map(|f| map.get(f.name()).map(|v| (f.name(), v, Some(f.data_type()))));
            let others = map.iter().filter(|(k, _)| fields.iter().all(|f| f.name() != *k)).map(|(k, v)| (k, v, None));
            for (key, v, shape) in named.chain(others) {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                match shape {
                    Some(shape) => ordered(out, v, shape),
                    None => out.push_str(&v.to_string()),
                }
            }
            out.push('}');
        }
        (Value::Array(items), DataType::List(item) | DataType::LargeList(item)) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ordered(out, v, item.data_type());
            }
            out.push(']');
        }
        (other, _) => out.push_str(&other.to_string()),
    }
}

/// Rows converted to Parquet per batch.
const BATCH: usize = 4096;

/// Writes rows of one schema to a [`Target`].
pub struct TableWriter {
    target: Target,
    schema: SchemaRef,
    inner: Inner,
    rows: u64,
    /// Finished files (temporary path, final relative name), for a
    /// directory target.
    done: Vec<PathBuf>,
    finished: bool,
}

enum Inner {
    Jsonl {
        tmp: PathBuf,
        out: BufWriter<File>,
    },
    Parquet {
        tmp: PathBuf,
        writer: Option<Box<ArrowWriter<File>>>,
        pending: Vec<Value>,
        /// The pending rows' size as JSON text, a bound on what they add
        /// to a Parquet file.
        pending_bytes: u64,
    },
}

/// What a Parquet file's footer and page headers may add beyond its rows'
/// data: kept free under a directory's file bound.
const FOOTER_ALLOWANCE: u64 = 16 << 10;

fn io(path: &Path) -> impl Fn(std::io::Error) -> TableError + '_ {
    move |source| TableError::Io { path: path.display().to_string(), source }
}

fn tmp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

impl TableWriter {
    /// Starts writing. A directory target must not exist yet, or be empty.
    pub fn create(target: Target, schema: Schema) -> Result<TableWriter, TableError> {
        let schema = Arc::new(schema);
        let inner = match &target {
            Target::Jsonl(path) => {
                let tmp = tmp_name(path);
                let out = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io(&tmp))?);
                Inner::Jsonl { tmp, out }
            }
            Target::Parquet(path) => {
                let tmp = tmp_name(path);
                Inner::Parquet {
                    writer: Some(open_parquet(&tmp, &schema)?),
                    tmp,
                    pending: Vec::new(),
                    pending_bytes: 0,
                }
            }
            Target::HubDir { dir, .. } => {
                if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
                    return Err(TableError::Exists { path: dir.display().to_string() });
                }
                let staging = staging(dir);
                let _ = std::fs::remove_dir_all(&staging);
                std::fs::create_dir_all(staging.join("data")).map_err(io(&staging))?;
                let tmp = staging.join("data").join("part-0.parquet");
                Inner::Parquet {
                    writer: Some(open_parquet(&tmp, &schema)?),
                    tmp,
                    pending: Vec::new(),
                    pending_bytes: 0,
                }
            }
        };
        Ok(TableWriter { target, schema, inner, rows: 0, done: Vec::new(), finished: false })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Writes one row: a JSON object with the schema's fields. In a
    /// directory, a row that would take its file past the size bound
    /// starts the next file (a file holds at least one row, however large).
    pub fn write(&mut self, row: Value) -> Result<(), TableError> {
        self.rows += 1;
        let bound = match &self.target {
            Target::HubDir { max_file_bytes, .. } => Some(max_file_bytes.saturating_sub(FOOTER_ALLOWANCE).max(1)),
            _ => None,
        };
        match &mut self.inner {
            Inner::Jsonl { tmp, out } => {
                let mut line = String::new();
                ordered(&mut line, &row, &DataType::Struct(self.schema.fields().clone()));
                line.push('\n');
                out.write_all(line.as_bytes()).map_err(io(tmp))
            }
            Inner::Parquet { pending, pending_bytes, writer, .. } => {
                let bytes = json_size(&row);
                // What the file holds so far (a new file's header aside).
                let (has_rows, in_file) = writer.as_ref().map_or((false, 0), |w| {
                    let rows = w.in_progress_rows() > 0 || !w.flushed_row_groups().is_empty();
                    (rows, w.bytes_written() as u64 + w.in_progress_size() as u64)
                });
                let full = bound
                    .is_some_and(|bound| (has_rows || !pending.is_empty()) && in_file + *pending_bytes + bytes > bound);
                if full {
                    self.flush()?;
                    self.next_file()?;
                }
                let Inner::Parquet { pending, pending_bytes, .. } = &mut self.inner else { unreachable!() };
                pending.push(row);
                *pending_bytes += bytes;
                if pending.len() >= BATCH {
                    self.flush()?;
                }
                Ok(())
            }
        }
    }

    /// Converts the pending rows and writes them to the current file.
    fn flush(&mut self) -> Result<(), TableError> {
        let Inner::Parquet { tmp, writer, pending, pending_bytes } = &mut self.inner else { return Ok(()) };
        if pending.is_empty() {
            return Ok(());
        }
        let err = |message: String| TableError::Parquet { path: tmp.display().to_string(), message };
        let mut decoder = arrow_json::ReaderBuilder::new(self.schema.clone())
            .with_batch_size(pending.len())
            .build_decoder()
            .map_err(|e| err(e.to_string()))?;
        decoder.serialize(pending).map_err(|e| err(e.to_string()))?;
        pending.clear();
        *pending_bytes = 0;
        let Some(batch) = decoder.flush().map_err(|e| err(e.to_string()))? else { return Ok(()) };
        // A directory's next file is opened by the first rows it gets, so
        // no file is ever left empty.
        if writer.is_none() {
            *writer = Some(open_parquet(tmp, &self.schema)?);
        }
        let w = writer.as_mut().expect("just opened");
        w.write(&batch).map_err(|e| err(e.to_string()))?;
        Ok(())
    }

    /// In a directory, ends the current file (if it has rows); the next
    /// rows open the next one.
    fn next_file(&mut self) -> Result<(), TableError> {
        let (Target::HubDir { dir, .. }, Inner::Parquet { tmp, writer, .. }) = (&self.target, &mut self.inner) else {
            return Ok(());
        };
        if let Some(w) = writer.take() {
            w.close().map_err(|e| TableError::Parquet { path: tmp.display().to_string(), message: e.to_string() })?;
            self.done.push(tmp.clone());
            *tmp = staging(dir).join("data").join(format!("part-{}.parquet", self.done.len()));
        }
        Ok(())
    }

    /// Ends the files and puts them in place.
    pub fn finish(mut self) -> Result<Written, TableError> {
        self.flush()?;
        let rows = self.rows;
        let inner = std::mem::replace(
            &mut self.inner,
            Inner::Parquet { tmp: PathBuf::new(), writer: None, pending: Vec::new(), pending_bytes: 0 },
        );
        let written = match inner {
            Inner::Jsonl { tmp, out } => {
                let file = out.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
                file.sync_all().map_err(io(&tmp))?;
                let Target::Jsonl(path) = &self.target else { unreachable!() };
                std::fs::rename(&tmp, path).map_err(io(path))?;
                Written { rows, files: vec![path.clone()], bytes: size(path) }
            }
            Inner::Parquet { tmp, mut writer, .. } => {
                if writer.is_none() && self.done.is_empty() {
                    // An empty dataset still has its one file.
                    writer = Some(open_parquet(&tmp, &self.schema)?);
                }
                if let Some(w) = writer {
                    let file = w
                        .into_inner()
                        .map_err(|e| TableError::Parquet { path: tmp.display().to_string(), message: e.to_string() })?;
                    file.sync_all().map_err(io(&tmp))?;
                    self.done.push(tmp);
                }
                match &self.target {
                    Target::Parquet(path) => {
                        std::fs::rename(&self.done[0], path).map_err(io(path))?;
                        Written { rows, files: vec![path.clone()], bytes: size(path) }
                    }
                    Target::HubDir { dir, .. } => {
                        let staging = staging(dir);
                        let n = self.done.len();
                        let mut files = Vec::with_capacity(n);
                        let mut bytes = 0;
                        for (k, part) in self.done.iter().enumerate() {
                            let name = PathBuf::from("data").join(format!("train-{k:05}-of-{n:05}.parquet"));
                            let to = staging.join(&name);
                            std::fs::rename(part, &to).map_err(io(&to))?;
                            bytes += size(&to);
                            files.push(name);
                        }
                        if dir.exists() {
                            std::fs::remove_dir(dir).map_err(io(dir))?;
                        }
                        std::fs::rename(&staging, dir).map_err(io(dir))?;
                        Written { rows, files, bytes }
                    }
                    Target::Jsonl(_) => unreachable!(),
                }
            }
        };
        self.finished = true;
        Ok(written)
    }
}

impl Drop for TableWriter {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        match &self.target {
            Target::Jsonl(path) | Target::Parquet(path) => {
                let _ = std::fs::remove_file(tmp_name(path));
            }
            Target::HubDir { dir, .. } => {
                let _ = std::fs::remove_dir_all(staging(dir));
            }
        }
    }
}

/// A directory target is built beside it, and renamed into place whole.
fn staging(dir: &Path) -> PathBuf {
    tmp_name(dir)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn open_parquet(tmp: &Path, schema: &SchemaRef) -> Result<Box<ArrowWriter<File>>, TableError> {
    let file = File::create(tmp).map_err(io(tmp))?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("a valid level")))
        .build();
    let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))
        .map_err(|e| TableError::Parquet { path: tmp.display().to_string(), message: e.to_string() })?;
    Ok(Box::new(writer))
}

/// The Hugging Face `features` of a schema, as the dataset card's YAML
/// lists them (`dtype: string`, or `list:` of a struct's fields).
pub fn hub_features(schema: &Schema) -> Vec<Value> {
    schema.fields().iter().map(|f| hub_feature(f.name(), f.data_type())).collect()
}

fn hub_feature(name: &str, data_type: &DataType) -> Value {
    match data_type {
        DataType::List(item) => match item.data_type() {
            DataType::Struct(fields) => serde_json::json!({
                "name": name,
                "list": fields.iter().map(|f| hub_feature(f.name(), f.data_type())).collect::<Vec<_>>(),
            }),
            other => serde_json::json!({ "name": name, "sequence": dtype(other) }),
        },
        other => serde_json::json!({ "name": name, "dtype": dtype(other) }),
    }
}

fn dtype(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 => "string",
        DataType::Int64 => "int64",
        DataType::Float64 => "float64",
        DataType::Boolean => "bool",
        _ => "string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::new(vec![text("id", false), turns("messages", ["role", "content"]), float("difficulty", true)])
    }

    fn row(i: usize) -> Value {
        json!({"id": format!("r{i}"), "messages": [{"role": "user", "content": format!("Q{i}")}, {"role": "assistant", "content": "A"}], "difficulty": if i.is_multiple_of(2) { json!(i as f64 / 2.0) } else { Value::Null }})
    }

    fn read_back(path: &Path) -> Vec<Value> {
        let records = crate::source::open(path, crate::SeedFormat::Parquet).unwrap();
        records
            .map(|r| match r.unwrap().1 {
                crate::source::Raw::Line(line) => serde_json::from_str(&line).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_parquet_file_reads_back_with_its_nested_turns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.parquet");
        let mut w = TableWriter::create(Target::from_path(&path, 1 << 30), schema()).unwrap();
        for i in 0..10 {
            w.write(row(i)).unwrap();
        }
        let written = w.finish().unwrap();
        assert_eq!(written.rows, 10);
        let rows = read_back(&path);
        assert_eq!(rows.len(), 10);
        assert_eq!(rows[3]["messages"][0], json!({"role": "user", "content": "Q3"}));
        assert_eq!(rows[4]["difficulty"], json!(2.0));
        assert!(rows[3].get("difficulty").is_none(), "a null stays null");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn a_directory_gets_bounded_numbered_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("hub");
        // A tiny bound: every row starts a new file.
        let mut w = TableWriter::create(Target::from_path(&target, 1), schema()).unwrap();
        for i in 0..3 {
            w.write(row(i)).unwrap();
        }
        let written = w.finish().unwrap();
        let names: Vec<String> = written.files.iter().map(|f| f.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "data/train-00000-of-00003.parquet",
                "data/train-00001-of-00003.parquet",
                "data/train-00002-of-00003.parquet"
            ]
        );
        assert_eq!(read_back(&target.join(&written.files[2]))[0]["id"], json!("r2"));
        assert!(!tmp_name(&target).exists());

        // Many rows, a bound of a few batches: every row is written once,
        // in order, and no file is left empty.
        let many = dir.path().join("many");
        let mut w = TableWriter::create(Target::from_path(&many, 600 << 10), schema()).unwrap();
        for i in 0..(BATCH * 3 + 5) {
            w.write(row(i)).unwrap();
        }
        let written = w.finish().unwrap();
        assert!(written.files.len() > 1, "{:?}", written.files);
        let ids: Vec<Value> =
            written.files.iter().flat_map(|f| read_back(&many.join(f))).map(|r| r["id"].clone()).collect();
        assert_eq!(ids, (0..BATCH * 3 + 5).map(|i| json!(format!("r{i}"))).collect::<Vec<_>>());

        // A target that holds files is refused; an abandoned one leaves
        // nothing.
        assert!(matches!(TableWriter::create(Target::from_path(&target, 1), schema()), Err(TableError::Exists { .. })));
        let other = dir.path().join("other");
        let mut w = TableWriter::create(Target::from_path(&other, 1 << 30), schema()).unwrap();
        w.write(row(1)).unwrap();
        drop(w);
        assert!(!other.exists() && !tmp_name(&other).exists());
    }

    #[test]
    fn no_file_passes_the_bound_whatever_the_rows_hold() {
        // Rows of 100 KB of text that does not compress, under a 1 MB
        // bound: before, 4,096 rows went into a file before its size was
        // looked at.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("hub");
        let bound = 1 << 20;
        let mut w = TableWriter::create(Target::from_path(&target, bound), schema()).unwrap();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for i in 0..40 {
            let text: String = (0..100_000)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(b'a' + (state % 26) as u8)
                })
                .collect();
            w.write(
                json!({"id": format!("r{i}"), "messages": [{"role": "user", "content": text}], "difficulty": null}),
            )
            .unwrap();
        }
        let written = w.finish().unwrap();
        assert!(written.files.len() >= 4, "{} files", written.files.len());
        for file in &written.files {
            let size = std::fs::metadata(target.join(file)).unwrap().len();
            assert!(size <= bound, "{} is {size} bytes, over {bound}", file.display());
        }
        let rows: usize = written.files.iter().map(|f| read_back(&target.join(f)).len()).sum();
        assert_eq!(rows, 40);
    }

    #[test]
    fn a_row_that_does_not_fit_the_schema_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        let mut w = TableWriter::create(Target::Parquet(path.clone()), schema()).unwrap();
        w.write(json!({"id": "x", "messages": "not a list"})).unwrap();
        let err = w.finish().unwrap_err().to_string();
        assert!(err.starts_with("cannot write `") && err.contains("as Parquet"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn features_for_the_card() {
        let features = hub_features(&schema());
        assert_eq!(features[0], json!({"name": "id", "dtype": "string"}));
        assert_eq!(
            features[1],
            json!({"name": "messages", "list": [{"name": "role", "dtype": "string"}, {"name": "content", "dtype": "string"}]})
        );
        assert_eq!(features[2], json!({"name": "difficulty", "dtype": "float64"}));
    }
}
