//! Reading seed instructions from JSONL, a JSON array, CSV or TSV (with a
//! header row), Parquet, or plain text with one instruction per line.
//!
//! A record holds its instruction in one of the ecosystem's layouts, found
//! per record when unambiguous: Alpaca (`instruction` or `prompt`, any
//! case, with an `input` joined after a blank line), ShareGPT
//! (`conversations` of `{from, value}` turns: the first human turn), chat
//! messages (`messages` of `{role, content}` turns: the first user turn),
//! or any field named by [`Fields`]. Its id is `id` or `idx` (text or
//! number) or the field [`Fields::id`] names; records without one get an id
//! from their place in the file (`line-12`, `item-3`, `row-4`), which does
//! not move when other records are skipped.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

pub use crate::container::{Place, SeedError, SeedFormat};
use crate::source::{self, Raw, Records};

use evol_core::Seed;
use evol_llm::Message;
use serde_json::{Map, Value};

/// The longest instruction accepted, in characters.
pub const MAX_INSTRUCTION_CHARS: usize = 100_000;

/// Options for reading.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub format: SeedFormat,
    /// Skip malformed records (and count them) instead of failing.
    pub skip_invalid: bool,
    pub fields: Fields,
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

/// Which fields hold a record's instruction and id, when the record's
/// layout does not say (`--instruction-field`, `--id-field`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// The instruction's field: a text, or a list of chat turns (the first
    /// user turn is taken).
    pub instruction: Option<String>,
    /// The id's field (a text or a number).
    pub id: Option<String>,
}

/// How a record holds its instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordLayout {
    /// `instruction` (or `prompt`) with an optional `input`.
    Alpaca,
    /// `conversations` of `{from, value}` turns: the first human turn.
    ShareGpt,
    /// `messages` of `{role, content}` turns: the first user turn.
    Messages,
    /// A field named by `--instruction-field`.
    Field(String),
    /// A line of plain text.
    Text,
}

impl std::fmt::Display for RecordLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordLayout::Alpaca => f.write_str("Alpaca (`instruction`, `input`)"),
            RecordLayout::ShareGpt => f.write_str("ShareGPT (`conversations`, the first human turn)"),
            RecordLayout::Messages => f.write_str("chat messages (`messages`, the first user turn)"),
            RecordLayout::Field(name) => write!(f, "the field `{name}`"),
            RecordLayout::Text => f.write_str("plain text, one instruction per line"),
        }
    }
}

/// Reads a seed file one record at a time, so files of any size are read
/// in flat memory (a JSON array is the exception: it is parsed whole).
/// Duplicate ids are not checked here (that needs every id seen so far).
pub struct SeedReader {
    records: Records,
    fields: Fields,
    layout: Option<RecordLayout>,
    mixed: bool,
}

/// Opens a seed file for reading record by record.
pub fn open_seeds(path: &Path, format: SeedFormat, fields: &Fields) -> Result<SeedReader, SeedError> {
    Ok(SeedReader::from_records(source::open(path, format)?, fields))
}

impl SeedReader {
    /// Reads seeds from any reader; `name` is used in messages.
    pub fn new(
        reader: Box<dyn BufRead + Send>,
        name: &str,
        format: SeedFormat,
        fields: &Fields,
    ) -> Result<SeedReader, SeedError> {
        Ok(SeedReader::from_records(Records::new(reader, name, format)?, fields))
    }

    fn from_records(records: Records, fields: &Fields) -> SeedReader {
        SeedReader { records, fields: fields.clone(), layout: None, mixed: false }
    }

    /// The file's name, as used in messages.
    pub fn name(&self) -> &str {
        self.records.name()
    }

    /// The container the file turned out to be.
    pub fn format(&self) -> SeedFormat {
        self.records.format()
    }

    /// How the records read so far hold their instruction, and whether
    /// they differ (then the first one's).
    pub fn layout(&self) -> Option<(&RecordLayout, bool)> {
        self.layout.as_ref().map(|l| (l, self.mixed))
    }

    fn seen(&mut self, layout: RecordLayout) {
        match &self.layout {
            None => self.layout = Some(layout),
            Some(first) if *first != layout => self.mixed = true,
            Some(_) => {}
        }
    }
}

impl Iterator for SeedReader {
    type Item = Result<Item, SeedError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (place, raw) = match self.records.next()? {
            Ok(next) => next,
            Err(e) => return Some(Err(e)),
        };
        let value = match raw {
            Raw::Invalid(message) => return Some(Ok(Item::Invalid(place, message))),
            Raw::Text(text) => {
                self.seen(RecordLayout::Text);
                return Some(Ok(seed(place, None, text)));
            }
            Raw::Line(line) => match serde_json::from_str::<Value>(&line) {
                Ok(value) => value,
                Err(e) => return Some(Ok(Item::Invalid(place, format!("not valid JSON ({e})")))),
            },
            Raw::Value(value) => value,
        };
        Some(Ok(match record(value, &self.fields) {
            Ok((id, instruction, layout, turns)) => {
                self.seen(layout);
                match seed(place, id, instruction) {
                    Item::Seed(place, seed) => with_turns(place, seed, turns),
                    other => other,
                }
            }
            Err(message) => Item::Invalid(place, message),
        }))
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
        Place::Row(n) => format!("row-{n}"),
    });
    Item::Seed(place, Seed::new(id, instruction.trim()))
}

/// A seed with the turns of the conversation it was read from, each held
/// to the instruction's limit.
fn with_turns(place: Place, mut seed: Seed, turns: Vec<Message>) -> Item {
    for (i, turn) in turns.iter().enumerate() {
        let chars = turn.content.chars().count();
        if chars > MAX_INSTRUCTION_CHARS {
            return Item::Invalid(
                place,
                format!(
                    "turn {} of the conversation has {chars} characters; the limit is {MAX_INSTRUCTION_CHARS}",
                    i + 1
                ),
            );
        }
    }
    seed.turns = turns;
    Item::Seed(place, seed)
}

/// The user and assistant turns of a record read as a conversation
/// (ShareGPT `conversations`, chat `messages`, TRL's `prompt` list), when
/// it has more than one; none otherwise. System and tool turns are left
/// out, and so are empty turns.
fn conversation_of(map: &Map<String, Value>, layout: &RecordLayout) -> Result<Vec<Message>, String> {
    use crate::layout::ChatLayout;
    let (name, value) = match layout {
        RecordLayout::ShareGpt => (ChatLayout::ShareGpt.field(), field(map, &[ChatLayout::ShareGpt.field()])?),
        RecordLayout::Messages => match field(map, &[ChatLayout::Messages.field()])? {
            Some(value) => (ChatLayout::Messages.field(), Some(value)),
            None => ("prompt", field(map, &["prompt"])?),
        },
        _ => return Ok(Vec::new()),
    };
    let Some(value) = value else { return Ok(Vec::new()) };
    let turns: Vec<Message> = chat_turns(value, name)?
        .into_iter()
        .filter(|t| !t.text.trim().is_empty())
        .filter_map(|t| match t.speaker {
            Speaker::User => Some(Message::user(t.text.trim())),
            Speaker::Assistant => Some(Message::assistant(t.text.trim())),
            _ => None,
        })
        .collect();
    Ok(if turns.len() > 1 { turns } else { Vec::new() })
}

/// Reads a whole seed file into memory, checking that ids are unique.
pub fn read_seeds(path: &Path, options: ReadOptions) -> Result<SeedSet, SeedError> {
    collect(open_seeds(path, options.format, &options.fields)?, options)
}

/// Reads seeds from any reader; `name` is used in messages.
pub fn parse_seeds(
    reader: impl BufRead + Send + 'static,
    name: &str,
    options: ReadOptions,
) -> Result<SeedSet, SeedError> {
    collect(SeedReader::new(Box::new(reader), name, options.format, &options.fields)?, options)
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

/// The id, instruction, layout and conversation turns (see
/// [`Seed::turns`]) of one JSON record.
fn record(value: Value, fields: &Fields) -> Result<(Option<String>, String, RecordLayout, Vec<Message>), String> {
    let Value::Object(map) = value else {
        return Err(format!("expected a JSON object with an instruction, found {}", kind(&value)));
    };
    let (instruction, layout) = instruction_in(&map, fields)?;
    let (id_value, id_name) = match &fields.id {
        Some(name) => match field(&map, &[name.as_str()])? {
            Some(v) => (Some(v), name.as_str()),
            None => return Err(missing(&map, &format!("the `{name}` field (--id-field)"))),
        },
        None => (field(&map, &["id", "idx"])?, "id"),
    };
    let id = match id_value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().any(|c| c.is_control() || evol_text::is_unsafe(c)) => {
            return Err(format!("`{id_name}` must not hold control characters, found {:?}", s))
        }
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 256 => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(format!(
                "`{id_name}` must be a non-empty string (at most 256 bytes) or a number, found {}",
                kind(other)
            ))
        }
    };
    let turns = conversation_of(&map, &layout)?;
    Ok((id, instruction, layout, turns))
}

/// A record's instruction: the Alpaca `instruction` (with `input` joined
/// after a blank line), as seeds are read by default.
pub(crate) fn instruction_of(map: &Map<String, Value>) -> Result<String, String> {
    instruction_in(map, &Fields::default()).map(|(text, _)| text)
}

/// A record's instruction and the layout it was found in: the field
/// `fields` names, else the one layout the record has.
pub(crate) fn instruction_in(map: &Map<String, Value>, fields: &Fields) -> Result<(String, RecordLayout), String> {
    if let Some(name) = &fields.instruction {
        return match field(map, &[name.as_str()])? {
            Some(value) => Ok((text_or_first_turn(value, name)?, RecordLayout::Field(name.clone()))),
            None => Err(missing(map, &format!("the `{name}` field (--instruction-field)"))),
        };
    }
    let alpaca = field(map, &["instruction", "prompt"])?;
    use crate::layout::ChatLayout;
    let sharegpt = field(map, &[ChatLayout::ShareGpt.field()])?;
    let messages = field(map, &[ChatLayout::Messages.field()])?;
    let found: Vec<&str> = [(alpaca.is_some(), "instruction"), (sharegpt.is_some(), "conversations")]
        .into_iter()
        .chain([(messages.is_some(), "messages")])
        .filter_map(|(present, name)| present.then_some(name))
        .collect();
    if found.len() > 1 {
        let names: Vec<String> = found.iter().map(|n| format!("`{n}`")).collect();
        return Err(format!(
            "the record has both {}; name the field to read with --instruction-field",
            names.join(" and ")
        ));
    }
    if let Some(value) = sharegpt {
        return Ok((first_turn(value, ChatLayout::ShareGpt.field())?, RecordLayout::ShareGpt));
    }
    if let Some(value) = messages {
        return Ok((first_turn(value, ChatLayout::Messages.field())?, RecordLayout::Messages));
    }
    let instruction = match alpaca {
        Some(Value::String(s)) => s.clone(),
        // TRL's conversational prompt: a list of turns.
        Some(value @ Value::Array(_)) if field(map, &["prompt"])?.is_some() => {
            return Ok((first_turn(value, "prompt")?, RecordLayout::Messages))
        }
        Some(other) => return Err(format!("`instruction` must be a string, found {}", kind(other))),
        None => return Err(missing(map, "an instruction (`instruction`, `prompt`, `conversations` or `messages`)")),
    };
    let text = match field(map, &["input"])? {
        None | Some(Value::Null) => instruction,
        Some(Value::String(input)) if input.trim().is_empty() => instruction,
        Some(Value::String(input)) => format!("{}\n\n{}", instruction.trim_end(), input.trim()),
        Some(other) => return Err(format!("`input` must be a string, found {}", kind(other))),
    };
    Ok((text, RecordLayout::Alpaca))
}

/// "missing WHAT; the record has `a`, `b`": the fields that were found, so
/// a user sees which one to name.
pub(crate) fn missing(map: &Map<String, Value>, what: &str) -> String {
    format!("missing {what}; {}", fields_found(map))
}

/// "the record has `a`, `b`" (the first 20 fields, their names shown
/// safely), or "the record has no fields".
pub fn fields_found(map: &Map<String, Value>) -> String {
    const SHOWN: usize = 20;
    if map.is_empty() {
        return "the record has no fields".to_string();
    }
    let mut keys: Vec<String> = map.keys().take(SHOWN).map(|k| format!("`{}`", evol_text::shown_inline(k))).collect();
    if map.len() > SHOWN {
        keys.push(format!("and {} more", map.len() - SHOWN));
    }
    format!("the record has {}", keys.join(", "))
}

/// A field's number: a JSON number, or a text that reads as one (the cells
/// of CSV and TSV files are texts). `Err` for a value of another kind, and
/// for a number that is not finite.
pub fn number(value: &Value) -> Result<Option<f64>, String> {
    let number = match value {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        other => return Err(format!("expected a number, found {}", kind(other))),
    };
    match number {
        Some(n) if n.is_finite() => Ok(Some(n)),
        _ => Err(format!("expected a number, found `{}`", evol_text::shown_inline(&value.to_string()))),
    }
}

/// A field's text: a string as it is, or a list of chat turns' first user
/// turn.
pub(crate) fn text_or_first_turn(value: &Value, name: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(_) => first_turn(value, name),
        other => Err(format!("`{name}` must be a string or a list of chat turns, found {}", kind(other))),
    }
}

/// Who speaks a turn of a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Speaker {
    System,
    User,
    Assistant,
    /// A tool, a function, or a name of its own: kept as it is named.
    Other(String),
}

/// One turn of a chat, as a record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub speaker: Speaker,
    pub text: String,
}

/// Every turn of a list of chat turns (ShareGPT's `{from, value}` or chat
/// messages' `{role, content}`), in order: `human`/`user`, `gpt`/
/// `assistant`/`model`, `system`, or another speaker by its name.
pub fn chat_turns(value: &Value, name: &str) -> Result<Vec<Turn>, String> {
    let Value::Array(turns) = value else {
        return Err(format!("`{name}` must be a list of turns, found {}", kind(value)));
    };
    let mut out = Vec::with_capacity(turns.len());
    for (i, turn) in turns.iter().enumerate() {
        let Value::Object(turn) = turn else {
            return Err(format!("`{name}[{i}]` must be an object, found {}", kind(turn)));
        };
        let speaker = match field(turn, &crate::layout::SPEAKER_KEYS)? {
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "human" | "user" => Speaker::User,
                "gpt" | "assistant" | "model" | "chatgpt" | "bard" => Speaker::Assistant,
                "system" => Speaker::System,
                other => Speaker::Other(other.to_string()),
            },
            Some(other) => return Err(format!("`{name}[{i}]`: the speaker must be a string, found {}", kind(other))),
            None => return Err(format!("`{name}[{i}]` names no speaker (`from` or `role`)")),
        };
        let text = match field(turn, &crate::layout::TEXT_KEYS)? {
            Some(Value::String(s)) => s.clone(),
            // OpenAI-style content parts: their text, joined.
            Some(Value::Array(parts)) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
            }
            Some(other) => return Err(format!("`{name}[{i}]`: the text must be a string, found {}", kind(other))),
            None => return Err(format!("`{name}[{i}]` has no text (`value` or `content`)")),
        };
        out.push(Turn { speaker, text });
    }
    Ok(out)
}

/// Every user turn of a list of chat turns, in order.
pub fn user_turns(value: &Value, name: &str) -> Result<Vec<String>, String> {
    Ok(chat_turns(value, name)?.into_iter().filter(|t| t.speaker == Speaker::User).map(|t| t.text).collect())
}

/// A record's conversation: its system prompt and its exchanges (a user
/// turn and the answer to it, when there is one), whatever layout holds
/// it: ShareGPT `conversations`, chat `messages`, or an instruction (with
/// an Alpaca `input`) and `output` / `response`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dialogue {
    pub system: Option<String>,
    pub exchanges: Vec<(String, Option<String>)>,
}

impl Dialogue {
    /// The dialogue of a chat's turns: each user turn with the assistant
    /// turn after it. Two assistant turns in a row, an answer before any
    /// question, or a system turn after the first are refused (they would
    /// not survive a conversion), and so is a speaker other than the
    /// system, the user and the assistant (a tool's turn).
    pub fn from_turns(turns: Vec<Turn>, name: &str) -> Result<Dialogue, String> {
        let mut dialogue = Dialogue::default();
        for (i, turn) in turns.into_iter().enumerate() {
            match turn.speaker {
                Speaker::System if i == 0 => dialogue.system = Some(turn.text),
                Speaker::System => return Err(format!("`{name}[{i}]`: a system turn after the first turn")),
                Speaker::User => dialogue.exchanges.push((turn.text, None)),
                Speaker::Assistant => match dialogue.exchanges.last_mut() {
                    Some((_, answer @ None)) => *answer = Some(turn.text),
                    Some(_) => return Err(format!("`{name}[{i}]`: two assistant turns in a row")),
                    None => return Err(format!("`{name}[{i}]`: an assistant turn before any user turn")),
                },
                Speaker::Other(who) => {
                    return Err(format!(
                        "`{name}[{i}]`: a turn of `{who}` (only system, user and assistant turns can be carried over)"
                    ))
                }
            }
        }
        if dialogue.exchanges.is_empty() {
            return Err(format!("`{name}` has no user turn"));
        }
        Ok(dialogue)
    }

    /// The dialogue a record holds in `conversations` or `messages`; none
    /// when it holds neither (an instruction record).
    pub fn of_chat(record: &Map<String, Value>) -> Result<Option<Dialogue>, String> {
        let [sharegpt, messages] = crate::layout::ChatLayout::ALL.map(|l| l.field());
        let chat = [(sharegpt, field(record, &[sharegpt])?), (messages, field(record, &[messages])?)];
        match chat {
            [(name, Some(v)), (_, None)] | [(_, None), (name, Some(v))] => {
                Ok(Some(Dialogue::from_turns(chat_turns(v, name)?, name)?))
            }
            [(_, Some(_)), (_, Some(_))] => Err("the record holds both `conversations` and `messages`".into()),
            _ => Ok(None),
        }
    }
}

fn first_turn(value: &Value, name: &str) -> Result<String, String> {
    let count = value.as_array().map_or(0, Vec::len);
    user_turns(value, name)?.into_iter().next().ok_or_else(|| format!("`{name}` has no user turn (of {count} turns)"))
}

/// A field by any of its names, matched case-insensitively; two keys that
/// both match (`Instruction` and `instruction`, or `id` and `idx`) are an
/// error, not a silent choice.
/// The one field-lookup rule of every command: a top-level field whose
/// name is one of `names`, in any ASCII case; a record that gives it under
/// two spellings is an error naming both.
pub fn field<'a>(map: &'a Map<String, Value>, names: &[&str]) -> Result<Option<&'a Value>, String> {
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

/// What kind of JSON value this is, in words.
pub fn kind(v: &Value) -> &'static str {
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
    #[test]
    fn a_dialogue_keeps_every_turn_or_refuses() {
        let chat = serde_json::json!({"conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "你好"},
            {"from": "gpt", "value": "नमस्ते"},
            {"from": "human", "value": "And then?"}
        ]});
        let d = Dialogue::of_chat(chat.as_object().unwrap()).unwrap().unwrap();
        assert_eq!(d.system.as_deref(), Some("Be brief."));
        assert_eq!(d.exchanges, vec![("你好".into(), Some("नमस्ते".into())), ("And then?".into(), None)]);
        let tool = serde_json::json!({"messages": [
            {"role": "user", "content": "x"}, {"role": "tool", "content": "y"}
        ]});
        let err = Dialogue::of_chat(tool.as_object().unwrap()).unwrap_err();
        assert!(err.contains("`tool`"), "{err}");
        assert_eq!(user_turns(&tool["messages"], "messages").unwrap(), vec!["x"], "seeds skip a tool's turn");
        let twice = serde_json::json!({"messages": [
            {"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}
        ]});
        assert!(Dialogue::of_chat(twice.as_object().unwrap()).unwrap_err().contains("two assistant turns"));
        let plain = serde_json::json!({"instruction": "x"});
        assert_eq!(Dialogue::of_chat(plain.as_object().unwrap()).unwrap(), None);
    }

    use super::*;

    fn parse(text: &str, format: SeedFormat, skip: bool) -> Result<SeedSet, SeedError> {
        parse_seeds(
            std::io::Cursor::new(text.to_string()),
            "seeds",
            ReadOptions { format, skip_invalid: skip, ..Default::default() },
        )
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
        assert_eq!(
            err.to_string(),
            "`seeds` item 2: missing an instruction (`instruction`, `prompt`, `conversations` or `messages`); \
             the record has `text`"
        );
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
            ReadOptions { format: SeedFormat::Jsonl, ..Default::default() },
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

    fn reader(text: &str, format: SeedFormat, fields: &Fields) -> SeedReader {
        SeedReader::new(Box::new(std::io::Cursor::new(text.as_bytes().to_vec())), "seeds", format, fields).unwrap()
    }

    #[test]
    fn sharegpt_and_chat_layouts_take_the_first_user_turn() {
        let text = concat!(
            r#"{"id": "a", "conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Name a prime."}, {"from": "gpt", "value": "7"}]}"#,
            "\n",
            r#"{"id": "b", "conversations": [{"from": "gpt", "value": "Hi"}, {"from": "human", "value": "Why?"}]}"#,
            "\n"
        );
        let mut r = reader(text, SeedFormat::Auto, &Fields::default());
        let items: Vec<Item> = r.by_ref().map(Result::unwrap).collect();
        assert_eq!(r.layout(), Some((&RecordLayout::ShareGpt, false)));
        let instructions: Vec<&str> = items
            .iter()
            .map(|i| match i {
                Item::Seed(_, s) => s.instruction.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(instructions, ["Name a prime.", "Why?"]);
        // Each keeps its user and assistant turns (not the system's), for
        // a conversation run.
        let turns: Vec<Vec<Message>> = items
            .iter()
            .map(|i| match i {
                Item::Seed(_, s) => s.turns.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(turns[0], [Message::user("Name a prime."), Message::assistant("7")]);
        assert_eq!(turns[1], [Message::assistant("Hi"), Message::user("Why?")]);
        let chat = r#"{"messages": [{"role": "user", "content": "写一首诗"}, {"role": "assistant", "content": "春眠不觉晓"}, {"role": "tool", "content": "{}"}, {"role": "user", "content": "再短一点"}]}"#;
        let set = parse(chat, SeedFormat::Jsonl, false).unwrap();
        let seed = &set.seeds[0];
        assert_eq!(seed.instruction, "写一首诗", "a one-turn run evolves the first user turn");
        assert_eq!(seed.opening(), (&[Message::user("写一首诗"), Message::assistant("春眠不觉晓")][..], "再短一点"));
        let one =
            parse(r#"{"messages": [{"role": "user", "content": "Only one"}]}"#, SeedFormat::Jsonl, false).unwrap();
        assert!(one.seeds[0].turns.is_empty(), "one turn is a plain seed");
        let long = format!(
            r#"{{"messages": [{{"role": "user", "content": "a"}}, {{"role": "assistant", "content": "{}"}}]}}"#,
            "x".repeat(MAX_INSTRUCTION_CHARS + 1)
        );
        let err = parse(&long, SeedFormat::Jsonl, false).unwrap_err().to_string();
        assert!(err.contains("turn 2 of the conversation has"), "{err}");

        let text = concat!(
            r#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "Part one"}, {"type": "text", "text": "part two"}]}]}"#,
            "\n",
            r#"{"prompt": [{"role": "user", "content": "TRL prompt"}], "chosen": [], "rejected": []}"#,
            "\n",
            r#"{"instruction": "Alpaca one"}"#,
            "\n"
        );
        let mut r = reader(text, SeedFormat::Jsonl, &Fields::default());
        let items: Vec<Item> = r.by_ref().map(Result::unwrap).collect();
        assert_eq!(r.layout(), Some((&RecordLayout::Messages, true)), "a mixed file says so");
        assert!(matches!(&items[0], Item::Seed(_, s) if s.instruction == "Part one\npart two"));
        assert!(matches!(&items[1], Item::Seed(_, s) if s.instruction == "TRL prompt"));

        let err = parse(r#"{"messages": [{"role": "assistant", "content": "x"}]}"#, SeedFormat::Jsonl, false)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "`seeds` line 1: `messages` has no user turn (of 1 turns)");
        let err = parse(r#"{"messages": [{"content": "x"}]}"#, SeedFormat::Jsonl, false).unwrap_err().to_string();
        assert!(err.contains("`messages[0]` names no speaker"), "{err}");
        let err = parse(r#"{"instruction": "a", "messages": []}"#, SeedFormat::Jsonl, false).unwrap_err().to_string();
        assert!(err.contains("both `instruction` and `messages`") && err.contains("--instruction-field"), "{err}");
    }

    #[test]
    fn named_fields_and_their_absence() {
        let fields = Fields { instruction: Some("question".into()), id: Some("qid".into()) };
        let text = "{\"qid\": 17, \"question\": \"Why is the sky blue?\", \"instruction\": \"ignored\"}\n{\"question\": \"Q\"}\n";
        let mut r = reader(text, SeedFormat::Jsonl, &fields);
        let first = r.next().unwrap().unwrap();
        assert_eq!(first, Item::Seed(Place::Line(1), Seed::new("17", "Why is the sky blue?")));
        assert_eq!(r.layout(), Some((&RecordLayout::Field("question".into()), false)));
        assert_eq!(
            r.next().unwrap().unwrap(),
            Item::Invalid(Place::Line(2), "missing the `qid` field (--id-field); the record has `question`".into())
        );
        let only = Fields { instruction: Some("body".into()), id: None };
        let err = parse_seeds(
            std::io::Cursor::new(b"{\"title\": \"t\", \"text\": \"x\"}\n".to_vec()),
            "seeds",
            ReadOptions { fields: only, ..Default::default() },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`seeds` line 1: missing the `body` field (--instruction-field); the record has `text`, `title`"
        );
    }

    #[test]
    fn csv_and_tsv_with_a_header() {
        let csv =
            "\u{FEFF}id,instruction,input\n1,\"Sum, please\",\"1, 2\"\n\n2,\"Say \"\"hi\"\"\nnicely\",\nshort,row\n";
        let mut r = reader(csv, SeedFormat::Csv, &Fields::default());
        let items: Vec<Item> = r.by_ref().map(Result::unwrap).collect();
        assert_eq!(r.format(), SeedFormat::Csv);
        assert_eq!(
            items,
            [
                Item::Seed(Place::Row(1), Seed::new("1", "Sum, please\n\n1, 2")),
                Item::Seed(Place::Row(2), Seed::new("2", "Say \"hi\"\nnicely")),
                Item::Invalid(Place::Row(3), "has 2 fields; the header has 3".into()),
            ]
        );
        let tsv = "prompt\tnotes\nFirst one\tx\nSecond\ty\n";
        let set = parse(tsv, SeedFormat::Tsv, false).unwrap();
        assert_eq!(ids(&set), ["row-1", "row-2"]);
        assert_eq!(set.seeds[1].instruction, "Second");
        let err = parse("question,notes\nWhy?,x\n", SeedFormat::Csv, false).unwrap_err().to_string();
        assert!(
            err.starts_with("`seeds` row 1: missing an instruction") && err.ends_with("`notes`, `question`"),
            "{err}"
        );
    }

    #[test]
    fn parquet_rows_are_records() {
        use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
        let batch = RecordBatch::try_from_iter([
            ("idx", std::sync::Arc::new(Int64Array::from(vec![5, 6])) as ArrayRef),
            ("instruction", std::sync::Arc::new(StringArray::from(vec![Some("Parquet A"), None])) as ArrayRef),
        ])
        .unwrap();
        let mut bytes = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let mut r =
            SeedReader::new(Box::new(std::io::Cursor::new(bytes)), "s", SeedFormat::Auto, &Fields::default()).unwrap();
        assert_eq!(r.format(), SeedFormat::Parquet, "found by its magic bytes");
        assert_eq!(r.next().unwrap().unwrap(), Item::Seed(Place::Row(1), Seed::new("5", "Parquet A")));
        assert_eq!(
            r.next().unwrap().unwrap(),
            Item::Invalid(
                Place::Row(2),
                "missing an instruction (`instruction`, `prompt`, `conversations` or `messages`); the record has `idx`"
                    .into()
            ),
            "a null is an absent field"
        );
        let err = SeedReader::new(
            Box::new(std::io::Cursor::new(b"PAR1 not really".to_vec())),
            "s",
            SeedFormat::Auto,
            &Fields::default(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().starts_with("`s` row 1: not a readable Parquet file"), "{err}");
    }

    #[test]
    fn real_test_set_layout() {
        let line = r#"{"idx": 1, "Skill": "Math", "Difficulty": 1, "Instruction": "If a car travels 120 miles in 2 hours, what is its average speed?"}"#;
        let set = parse(line, SeedFormat::Auto, false).unwrap();
        assert_eq!(set.seeds[0].id, "1");
        assert!(set.seeds[0].instruction.starts_with("If a car"));
    }
}
