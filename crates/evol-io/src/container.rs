//! What a dataset file is and where in it: its container ([`SeedFormat`]),
//! a place in it ([`Place`]) and why it could not be read ([`SeedError`]).
//! Both the record source and the seed reader stand on these, so neither
//! needs the other's types.

use std::str::FromStr;

/// The layout of a seed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeedFormat {
    /// By extension (`.jsonl`, `.json`, `.csv`, `.tsv`, `.parquet`,
    /// `.txt`), else by content (Parquet's magic bytes, then the first
    /// character: `[` a JSON array, `{` JSONL, else text).
    #[default]
    Auto,
    Jsonl,
    Json,
    Csv,
    Tsv,
    Parquet,
    Text,
}

impl FromStr for SeedFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<SeedFormat, String> {
        match s {
            "auto" => Ok(SeedFormat::Auto),
            "jsonl" | "ndjson" => Ok(SeedFormat::Jsonl),
            "json" | "alpaca" => Ok(SeedFormat::Json),
            "csv" => Ok(SeedFormat::Csv),
            "tsv" => Ok(SeedFormat::Tsv),
            "parquet" => Ok(SeedFormat::Parquet),
            "text" | "txt" => Ok(SeedFormat::Text),
            _ => Err(format!("unknown format `{s}` (expected auto, jsonl, json, csv, tsv, parquet or text)")),
        }
    }
}

/// A place in a seed file: a line, an item of a JSON array, or a row of a
/// table or Parquet file, counted from 1 without the header (in JSON,
/// `{"line": 12}`, `{"item": 3}` or `{"row": 4}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    Line(usize),
    Item(usize),
    Row(usize),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Line(n) => write!(f, "line {n}"),
            Place::Item(n) => write!(f, "item {n}"),
            Place::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// Why seeds could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` {place}: {message}")]
    Invalid { path: String, place: Place, message: String },
    #[error("`{path}` {place}: the id `{id}` was already used at {first}")]
    DuplicateId { path: String, place: Place, id: String, first: Place },
    #[error("`{path}` holds no usable seed instruction")]
    NoSeeds { path: String },
}
