//! Reading seed instructions: JSONL, a JSON array (Alpaca layout), or plain
//! text with one instruction per line.
//!
//! Records may name their instruction `instruction` (any case) or `prompt`,
//! carry an Alpaca `input` (joined to the instruction after a blank line),
//! and an `id` or `idx` (string or number). Records without one get an id
//! from their place in the file (`line-12`, `item-3`), which does not move
//! when other lines are skipped.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::str::FromStr;

use evol_core::Seed;
use serde_json::{Map, Value};

/// The longest instruction accepted, in characters.
pub const MAX_INSTRUCTION_CHARS: usize = 100_000;

/// The layout of a seed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedFormat {
    /// By extension (`.jsonl`, `.json`, `.txt`), else by the first character.
    Auto,
    Jsonl,
    Json,
    Text,
}

impl FromStr for SeedFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<SeedFormat, String> {
        match s {
            "auto" => Ok(SeedFormat::Auto),
            "jsonl" | "ndjson" => Ok(SeedFormat::Jsonl),
            "json" | "alpaca" => Ok(SeedFormat::Json),
            "text" | "txt" => Ok(SeedFormat::Text),
            _ => Err(format!("unknown seed format `{s}` (expected auto, jsonl, json or text)")),
        }
    }
}

/// A place in a seed file: a line, or an item of a JSON array (in JSON,
/// `{"line": 12}` or `{"item": 3}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    Line(usize),
    Item(usize),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Line(n) => write!(f, "line {n}"),
            Place::Item(n) => write!(f, "item {n}"),
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

/// Options for reading.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    pub format: SeedFormat,
    /// Skip malformed records (and count them) instead of failing.
    pub skip_invalid: bool,
}

/// Seeds, with what was left out and why.
#[derive(Debug, Default)]
pub struct SeedSet {
    pub seeds: Vec<Seed>,
    /// Malformed records skipped under `skip_invalid`: place and message.
    pub invalid: Vec<(Place, String)>,
    /// Records whose instruction was empty.
    pub empty: Vec<Place>,
}

/// One record of a seed file, as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Seed(Place, Seed),
    /// A malformed record, with what is wrong with it.
    Invalid(Place, String),
    /// A record whose instruction is empty.
    Empty(Place),
}

/// Reads a seed file one record at a time, so files of any size are read
/// in flat memory (a JSON array is the exception: it is parsed whole).
/// Duplicate ids are not checked here (that needs every id seen so far).
pub struct SeedReader {
    name: String,
    source: Source,
}

enum Source {
    Lines { reader: Box<dyn BufRead + Send>, number: usize, text: bool, line: Vec<u8> },
    Items(std::iter::Enumerate<std::vec::IntoIter<Value>>),
    Done,
}

/// Opens a seed file for reading record by record.
pub fn open_seeds(path: &Path, format: SeedFormat) -> Result<SeedReader, SeedError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| SeedError::Io { path: name.clone(), source })?;
    let format = resolve(path, format);
    SeedReader::new(Box::new(std::io::BufReader::new(file)), &name, format)
}

/// The format a path's extension names, when `format` is `Auto` (else
/// `format`); `Auto` when the extension says nothing.
pub(crate) fn resolve(path: &Path, format: SeedFormat) -> SeedFormat {
    match format {
        SeedFormat::Auto => match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("jsonl" | "ndjson") => SeedFormat::Jsonl,
            Some("json") => SeedFormat::Json,
            Some("txt" | "text") => SeedFormat::Text,
            _ => SeedFormat::Auto,
        },
        f => f,
    }
}

impl SeedReader {
    /// Reads seeds from any reader; `name` is used in messages.
    pub fn new(mut reader: Box<dyn BufRead + Send>, name: &str, format: SeedFormat) -> Result<SeedReader, SeedError> {
        let io = |source| SeedError::Io { path: name.to_string(), source };
        let mut format = format;
        if format == SeedFormat::Auto {
            let head = reader.fill_buf().map_err(io)?;
            let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
            format = match head.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'[') => SeedFormat::Json,
                Some(b'{') => SeedFormat::Jsonl,
                _ => SeedFormat::Text,
            };
        }
        let source = match format {
            SeedFormat::Json => {
                let mut text = String::new();
                reader.read_to_string(&mut text).map_err(io)?;
                let items: Vec<Value> = serde_json::from_str(strip_bom(&text)).map_err(|e| SeedError::Invalid {
                    path: name.to_string(),
                    place: Place::Line(e.line()),
                    message: format!("not a JSON array of seed objects ({e})"),
                })?;
                Source::Items(items.into_iter().enumerate())
            }
            SeedFormat::Jsonl | SeedFormat::Text => {
                Source::Lines { reader, number: 0, text: format == SeedFormat::Text, line: Vec::new() }
            }
            SeedFormat::Auto => unreachable!("resolved above"),
        };
        Ok(SeedReader { name: name.to_string(), source })
    }

    /// The file's name, as used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Iterator for SeedReader {
    type Item = Result<Item, SeedError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match &mut self.source {
                Source::Done => return None,
                Source::Items(items) => {
                    let Some((i, value)) = items.next() else {
                        self.source = Source::Done;
                        return None;
                    };
                    let place = Place::Item(i + 1);
                    return Some(Ok(match record(value) {
                        Ok((id, instruction)) => seed(place, id, instruction),
                        Err(message) => Item::Invalid(place, message),
                    }));
                }
                Source::Lines { reader, number, text, line } => {
                    line.clear();
                    match reader.read_until(b'\n', line) {
                        Ok(0) => {
                            self.source = Source::Done;
                            return None;
                        }
                        Ok(_) => {}
                        Err(source) => {
                            self.source = Source::Done;
                            return Some(Err(SeedError::Io { path: self.name.clone(), source }));
                        }
                    }
                    *number += 1;
                    let place = Place::Line(*number);
                    let Ok(content) = std::str::from_utf8(line) else {
                        return Some(Ok(Item::Invalid(place, "not valid UTF-8".to_string())));
                    };
                    let content = if *number == 1 { strip_bom(content) } else { content };
                    if content.trim().is_empty() {
                        continue;
                    }
                    if *text {
                        return Some(Ok(seed(place, None, content.trim().to_string())));
                    }
                    return Some(Ok(match serde_json::from_str::<Value>(content) {
                        Ok(value) => match record(value) {
                            Ok((id, instruction)) => seed(place, id, instruction),
                            Err(message) => Item::Invalid(place, message),
                        },
                        Err(e) => Item::Invalid(place, format!("not valid JSON ({e})")),
                    }));
                }
            }
        }
    }
}

/// A record's seed: empty and oversized instructions are turned away, and a
/// missing id comes from the record's place.
fn seed(place: Place, id: Option<String>, instruction: String) -> Item {
    if instruction.trim().is_empty() {
        return Item::Empty(place);
    }
    let chars = instruction.chars().count();
    if chars > MAX_INSTRUCTION_CHARS {
        return Item::Invalid(
            place,
            format!("the instruction has {chars} characters; the limit is {MAX_INSTRUCTION_CHARS}"),
        );
    }
    let id = id.unwrap_or_else(|| match place {
        Place::Line(n) => format!("line-{n}"),
        Place::Item(n) => format!("item-{n}"),
    });
    Item::Seed(place, Seed { id, instruction: instruction.trim().to_string() })
}

/// Reads a whole seed file into memory, checking that ids are unique.
pub fn read_seeds(path: &Path, options: ReadOptions) -> Result<SeedSet, SeedError> {
    collect(open_seeds(path, options.format)?, options)
}

/// Reads seeds from any reader; `name` is used in messages.
pub fn parse_seeds(
    reader: impl BufRead + Send + 'static,
    name: &str,
    options: ReadOptions,
) -> Result<SeedSet, SeedError> {
    collect(SeedReader::new(Box::new(reader), name, options.format)?, options)
}

fn collect(reader: SeedReader, options: ReadOptions) -> Result<SeedSet, SeedError> {
    let name = reader.name().to_string();
    let mut set = SeedSet::default();
    let mut ids: HashMap<String, Place> = HashMap::new();
    for item in reader {
        match item? {
            Item::Seed(place, seed) => {
                if let Some(first) = ids.get(&seed.id) {
                    return Err(SeedError::DuplicateId { path: name, place, id: seed.id, first: *first });
                }
                ids.insert(seed.id.clone(), place);
                set.seeds.push(seed);
            }
            Item::Invalid(place, message) if options.skip_invalid => set.invalid.push((place, message)),
            Item::Invalid(place, message) => return Err(SeedError::Invalid { path: name, place, message }),
            Item::Empty(place) => set.empty.push(place),
        }
    }
    if set.seeds.is_empty() {
        return Err(SeedError::NoSeeds { path: name });
    }
    Ok(set)
}

fn strip_bom(s: &str) -> &str {
    s.strip_prefix('\u{FEFF}').unwrap_or(s)
}

/// The id and instruction of one JSON record.
fn record(value: Value) -> Result<(Option<String>, String), String> {
    let Value::Object(map) = value else {
        return Err(format!("expected a JSON object with an `instruction` field, found {}", kind(&value)));
    };
    let instruction = instruction_of(&map)?;
    let id = match field(&map, &["id", "idx"])? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().any(|c| c.is_control() || evol_text::is_unsafe(c)) => {
            return Err(format!("`id` must not hold control characters, found {:?}", s))
        }
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 256 => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(format!(
                "`id` must be a non-empty string (at most 256 bytes) or a number, found {}",
                kind(other)
            ))
        }
    };
    Ok((id, instruction))
}

/// A record's instruction: `instruction` or `prompt`, with an Alpaca
/// `input` joined after a blank line.
pub(crate) fn instruction_of(map: &Map<String, Value>) -> Result<String, String> {
    let instruction = match field(map, &["instruction", "prompt"])? {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(format!("`instruction` must be a string, found {}", kind(other))),
        None => return Err("missing the `instruction` field".to_string()),
    };
    Ok(match field(map, &["input"])? {
        None | Some(Value::Null) => instruction,
        Some(Value::String(input)) if input.trim().is_empty() => instruction,
        Some(Value::String(input)) => format!("{}\n\n{}", instruction.trim_end(), input.trim()),
        Some(other) => return Err(format!("`input` must be a string, found {}", kind(other))),
    })
}

/// A field by any of its names, matched case-insensitively; two keys that
/// both match (`Instruction` and `instruction`, or `id` and `idx`) are an
/// error, not a silent choice.
pub(crate) fn field<'a>(map: &'a Map<String, Value>, names: &[&str]) -> Result<Option<&'a Value>, String> {
    let matching: Vec<(&String, &Value)> =
        map.iter().filter(|(k, _)| names.iter().any(|name| k.eq_ignore_ascii_case(name))).collect();
    match matching.as_slice() {
        [] => Ok(None),
        [(_, v)] => Ok(Some(v)),
        many => {
            let keys: Vec<String> = many.iter().map(|(k, _)| format!("`{k}`")).collect();
            Err(format!("the record gives `{}` more than once: {}", names[0], keys.join(", ")))
        }
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, format: SeedFormat, skip: bool) -> Result<SeedSet, SeedError> {
        parse_seeds(std::io::Cursor::new(text.to_string()), "seeds", ReadOptions { format, skip_invalid: skip })
    }

    fn ids(set: &SeedSet) -> Vec<&str> {
        set.seeds.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn jsonl_with_and_without_ids() {
        let set = parse(
            "{\"instruction\":\"A?\",\"id\":\"x\"}\n\n{\"Instruction\":\"B?\",\"idx\":7}\n{\"instruction\":\"C?\"}\n",
            SeedFormat::Auto,
            false,
        )
        .unwrap();
        assert_eq!(ids(&set), ["x", "7", "line-4"]);
        assert_eq!(set.seeds[1].instruction, "B?");
    }

    #[test]
    fn alpaca_json_joins_input() {
        let set = parse(
            r#"[{"instruction":"Sum these.","input":"1, 2","output":"3"},{"instruction":"Hi","input":""}]"#,
            SeedFormat::Auto,
            false,
        )
        .unwrap();
        assert_eq!(set.seeds[0].instruction, "Sum these.\n\n1, 2");
        assert_eq!(set.seeds[1].instruction, "Hi");
        assert_eq!(ids(&set), ["item-1", "item-2"]);
    }

    #[test]
    fn plain_text_one_per_line() {
        let set = parse("\u{FEFF}First?\r\n\n  Second {{x}}  \n", SeedFormat::Auto, false).unwrap();
        assert_eq!(ids(&set), ["line-1", "line-3"]);
        assert_eq!(set.seeds[1].instruction, "Second {{x}}");
    }

    #[test]
    fn malformed_lines_name_the_place() {
        let err = parse("{\"instruction\":\"A\"}\n{\"instruction\": 3}\n", SeedFormat::Jsonl, false).unwrap_err();
        assert_eq!(err.to_string(), "`seeds` line 2: `instruction` must be a string, found a number");
        let err = parse("{\"instruction\":\"A\"}\n{oops\n", SeedFormat::Jsonl, false).unwrap_err();
        assert!(err.to_string().starts_with("`seeds` line 2: not valid JSON"), "{err}");
        let err = parse("{\"instruction\":\"A\"}\n[1]\n", SeedFormat::Jsonl, false).unwrap_err();
        assert!(err.to_string().contains("line 2: expected a JSON object"), "{err}");
        let err = parse(r#"[{"instruction":"A"},{"text":"B"}]"#, SeedFormat::Json, false).unwrap_err();
        assert_eq!(err.to_string(), "`seeds` item 2: missing the `instruction` field");
        let err = parse("[{\"instruction\":\"A\"},\n{", SeedFormat::Json, false).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn skip_invalid_counts_and_goes_on() {
        let set = parse(
            "{\"instruction\":\"A\"}\nnope\n{\"instruction\":\"\"}\n{\"id\":1}\n{\"instruction\":\"B\"}\n",
            SeedFormat::Jsonl,
            true,
        )
        .unwrap();
        assert_eq!(ids(&set), ["line-1", "line-5"]);
        assert_eq!(set.invalid.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [Place::Line(2), Place::Line(4)]);
        assert_eq!(set.empty, [Place::Line(3)]);
    }

    #[test]
    fn ambiguous_keys_and_control_characters_in_ids_are_refused() {
        let err =
            parse(r#"{"Instruction": "a", "instruction": "b"}"#, SeedFormat::Jsonl, false).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("`Instruction`, `instruction`"), "{err}");
        let err =
            parse(r#"{"id": "x", "idx": 2, "instruction": "b"}"#, SeedFormat::Jsonl, false).unwrap_err().to_string();
        assert!(err.contains("more than once"), "{err}");
        let err = parse("{\"id\": \"a\\u001b[2J\", \"instruction\": \"b\"}", SeedFormat::Jsonl, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("control characters"), "{err}");
        assert_eq!(ids(&parse(r#"{"ID": "x", "Instruction": "b"}"#, SeedFormat::Jsonl, false).unwrap()), ["x"]);
    }

    #[test]
    fn invalid_utf8_is_a_line_error() {
        let bytes: &[u8] = b"{\"instruction\":\"A\"}\n\xff\xfe\n";
        let err = parse_seeds(
            std::io::Cursor::new(bytes.to_vec()),
            "s",
            ReadOptions { format: SeedFormat::Jsonl, skip_invalid: false },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "`s` line 2: not valid UTF-8");
    }

    #[test]
    fn duplicates_huge_and_empty_files() {
        let err = parse(
            "{\"instruction\":\"A\",\"id\":\"a\"}\n{\"instruction\":\"B\",\"id\":\"a\"}\n",
            SeedFormat::Jsonl,
            true,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "`seeds` line 2: the id `a` was already used at line 1");
        let huge = format!("{{\"instruction\":\"{}\"}}\n", "x".repeat(MAX_INSTRUCTION_CHARS + 1));
        let err = parse(&huge, SeedFormat::Jsonl, false).unwrap_err();
        assert!(err.to_string().contains("the limit is 100000"), "{err}");
        assert!(matches!(parse("\n\n", SeedFormat::Auto, false), Err(SeedError::NoSeeds { .. })));
        assert!(matches!(parse("{\"instruction\":\"  \"}", SeedFormat::Auto, false), Err(SeedError::NoSeeds { .. })));
    }

    #[test]
    fn real_test_set_layout() {
        let line = r#"{"idx": 1, "Skill": "Math", "Difficulty": 1, "Instruction": "If a car travels 120 miles in 2 hours, what is its average speed?"}"#;
        let set = parse(line, SeedFormat::Auto, false).unwrap();
        assert_eq!(set.seeds[0].id, "1");
        assert!(set.seeds[0].instruction.starts_with("If a car"));
    }
}
