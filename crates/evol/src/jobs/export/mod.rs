//! `evol export OUT [--to PATH --format F]`: rewrites a run's record files
//! and dataset from its journal (for instance after a crash), and with
//! `--to` writes the same dataset rows in one of the ecosystem's layouts,
//! as JSONL, Parquet or a Hugging Face dataset directory with its card. It
//! holds the directory's lock, so it waits for no run and no run starts
//! while it writes. An `evol arena --learn` directory exports its SFT
//! records or preference pairs the same way.

mod card;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use arrow_schema::{Field, Schema};
use evol_io::layout::{ALPACA, PREFERENCE};
use evol_io::table::{self, TableWriter, Target};
use evol_io::{ChatLayout, Dialogue, Speaker};
use evol_store::{DatasetEntry, OutputDir};
use serde_json::{json, Map, Value};

use crate::observe::Observer;
use crate::settings::{ExportFormat as Format, ExportSettings, TraceExport};

/// The layout's own columns.
fn fields(format: Format, conversational: bool) -> Vec<Field> {
    match format {
        Format::Alpaca => {
            let [instruction, input, output] = ALPACA;
            vec![table::text(instruction, false), table::text(input, false), table::text(output, true)]
        }
        Format::Jsonl => vec![table::text(ALPACA[0], false), table::text(ALPACA[2], true)],
        Format::ShareGpt => vec![chat_column(ChatLayout::ShareGpt)],
        Format::Messages => vec![chat_column(ChatLayout::Messages)],
        Format::Dpo if conversational => {
            let (who, what) = ChatLayout::Messages.keys();
            PREFERENCE.iter().map(|name| table::turns(name, [who, what])).collect()
        }
        Format::Dpo => PREFERENCE.iter().map(|name| table::text(name, false)).collect(),
    }
}

/// One SFT example: its dialogue (a system prompt, user texts and the
/// answers there are) and its extra columns.
struct Example {
    id: String,
    dialogue: Dialogue,
    extra: Map<String, Value>,
}

/// What an export wrote, as `--json` prints it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum ExportReport {
    /// A run's files rewritten from its journal (no `--to`).
    Rewritten { rows: usize, exact_duplicates: usize, near_duplicates: usize },
    /// Rows written in a layout to `to`.
    Written { rows: u64, format: String, to: PathBuf, files: Vec<PathBuf>, bytes: u64 },
}

/// What an export read, for the card and the summary.
#[derive(Default)]
pub(crate) struct Made {
    /// Rows without an answer.
    pub unanswered: u64,
    /// Per round: (sum of difficulty, how many scored).
    pub difficulty: BTreeMap<u32, (f64, u64)>,
    pub rounds: BTreeMap<u32, u64>,
    /// Rows left out as cut off by the token limit (`--drop-truncated`).
    pub dropped_truncated: u64,
    /// Rows whose answer has a thinking trace, and where it went.
    pub traced: u64,
    pub traces: TraceExport,
    /// Rows with constraints (`ground_truth`), and how many of each kind.
    pub constrained: u64,
    pub constraint_kinds: BTreeMap<String, u64>,
}

/// Rewrites a run's files from its journal and, with a target, writes its
/// dataset (or any dataset file's rows, or an Arena Learning directory's
/// records) in a layout there.
pub fn export(settings: ExportSettings, observer: &dyn Observer) -> anyhow::Result<ExportReport> {
    let args = &settings;
    let format = settings.format;
    if let Some(to) = &args.to {
        refuse_target(to, &args.output)?;
    }
    if let Some(file) = rows_file(&args.output) {
        let Some(to) = &args.to else {
            bail!("`{}` is a dataset file: name where to write it with --to", file.display())
        };
        if format == Format::Dpo {
            bail!("--format dpo writes the preference pairs of a run or an `evol answer` directory (made with --answers K), or of an `evol arena --learn` directory: `{}` is a dataset file", file.display());
        }
        if args.reasoning != TraceExport::None {
            bail!(
                "--reasoning {} places the traces of a run's answers: export the run's directory (a dataset file's `output_reasoning` is carried as a column as it is)",
                args.reasoning.name()
            );
        }
        return export_rows(args, format, &file, to, observer);
    }
    let learn = args.output.join("sft.jsonl").is_file() && !args.output.join(evol_store::output::JOURNAL).exists();
    if learn {
        let Some(to) = &args.to else {
            bail!("`{}` is an `evol arena --learn` directory: name where to write it with --to", args.output.display())
        };
        return export_learned(args, format, to, observer);
    }
    if format == Format::Dpo {
        let pairs = args.output.join(evol_store::output::PAIRS);
        let Some(to) = args.to.as_ref().filter(|_| pairs.is_file()) else {
            bail!(
                "--format dpo writes preference pairs: those of a run or of `evol answer` made with --answers K (`{}`), or of an `evol arena --learn` directory{}",
                pairs.display(),
                if args.to.is_none() { "; name where to write them with --to" } else { "" }
            );
        };
        return export_pairs(args, &pairs, to, observer);
    }
    match evol_store::JobKind::of(&args.output)? {
        Some(evol_store::JobKind::Run) => {}
        Some(kind) => bail!(
            "`{}` holds {}, not a run: `evol export` takes a run's directory or a dataset file",
            args.output.display(),
            kind.describe()
        ),
        None => {}
    }
    // A run going on holds its directory: an export elsewhere takes a
    // snapshot from the journal, read only, and leaves the run's own files
    // to the run.
    let (out, journal) = match OutputDir::existing(&args.output, evol_store::JobKind::Run) {
        Ok(out) => {
            let journal = out.journal()?;
            (Some(out), journal)
        }
        Err(evol_store::StoreError::Locked { path, holder }) if args.to.is_some() => {
            observer.say(&format!(
                "evol: `{path}` is in use by {holder}: exporting a snapshot of its rows so far (its own files are left to it)"
            ));
            (None, evol_store::SqliteJournal::open_read_only(&args.output)?)
        }
        Err(e @ evol_store::StoreError::Locked { .. }) => {
            return Err(anyhow::Error::from(e).context(
                "a run's own files are rewritten only when nothing else writes them; \
                 `evol export OUT --to PATH` writes a snapshot elsewhere while the run goes on",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let identity =
        journal.identity()?.ok_or_else(|| anyhow::anyhow!("`{}`: the run never started", args.output.display()))?;
    let plain = args.plain;
    let mut made = Made { traces: args.reasoning, ..Made::default() };
    let mut fields = run_extra_fields();
    if args.reasoning == TraceExport::Field {
        // The trace is content, not lineage: written with --plain too.
        fields.insert(0, table::text(TRACE_COLUMN, true));
    }
    let mut writer = match &args.to {
        Some(to) => Some(create(to, args, schema(format, false, plain, &fields))?),
        None => None,
    };
    let mut failure: Option<anyhow::Error> = None;
    let each = |entry: &evol_store::DatasetEntry| {
        let Some(writer) = &mut writer else { return Ok(()) };
        if args.drop_truncated && entry.row.answer_truncated {
            made.dropped_truncated += 1;
            return Ok(());
        }
        let example = run_example(entry, args.reasoning);
        note(&mut made, entry);
        match layout(format, &example, plain).and_then(|row| writer.write(row).map_err(anyhow::Error::from)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let message = e.to_string();
                failure = Some(e);
                Err(std::io::Error::other(message))
            }
        }
    };
    let (include_seeds, dedup) = (identity.include_seeds, identity.settings.dedup);
    let exported = match &out {
        Some(out) => out.export_with(&journal, include_seeds, dedup, each),
        None => evol_store::output::snapshot_rows(&journal, include_seeds, dedup, each),
    };
    if let Some(e) = failure {
        return Err(e);
    }
    let exported = exported?;
    let removed = exported.exact_duplicates + exported.near_duplicates;
    let left_out = if removed > 0 { format!(" ({removed} duplicates left out)") } else { String::new() };
    if out.is_some() {
        observer.say(&format!(
            "evol: exported {} dataset rows{left_out} and the record files to `{}`",
            exported.rows,
            args.output.display()
        ));
    }
    let Some(writer) = writer else {
        return Ok(ExportReport::Rewritten {
            rows: exported.rows,
            exact_duplicates: exported.exact_duplicates,
            near_duplicates: exported.near_duplicates,
        });
    };
    let to = args.to.as_ref().expect("a writer has a target");
    let stats = crate::results::RunReport::read(&args.output);
    if let Err(e) = &stats {
        observer.say(&format!("warning: {e}; the dataset card does not tell how the data was made"));
    }
    let source = card::Source::Run { stats: &stats, made: &made };
    finish(writer, to, args, format, source, observer)
}

/// The extra columns of a run's rows.
fn run_extra_fields() -> Vec<Field> {
    vec![
        table::text("id", false),
        table::text("seed_id", false),
        table::text("parent_id", true),
        table::integer("round", false),
        table::text("operation", true),
        table::text("model", true),
        table::text("answer_model", true),
        table::float("difficulty", true),
        arrow_schema::Field::new("answer_truncated", arrow_schema::DataType::Boolean, false),
        table::text("ground_truth", true),
    ]
}

fn schema(format: Format, conversational: bool, plain: bool, extra: &[Field]) -> Schema {
    let mut fields = fields(format, conversational);
    for field in extra {
        if !plain || field.name() == TRACE_COLUMN {
            fields.push(field.clone());
        }
    }
    Schema::new(fields)
}

/// The column a trace goes in with `--reasoning field`.
const TRACE_COLUMN: &str = "reasoning_content";

/// Refuses a target that would overwrite a file (the run's own dataset, a
/// seed file, the input itself): an export never replaces what is there.
fn refuse_target(to: &Path, input: &Path) -> anyhow::Result<()> {
    let same = |a: &Path, b: &Path| a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    if same(to, input) {
        bail!("--to `{}` is the input: write the export elsewhere", to.display());
    }
    if to.is_file() {
        bail!("--to `{}` exists: an export does not overwrite a file (remove it, or name another)", to.display());
    }
    Ok(())
}

fn create(to: &Path, args: &ExportSettings, schema: Schema) -> anyhow::Result<TableWriter> {
    let target = Target::from_path(to, args.max_file_bytes);
    if let Target::Jsonl(path) | Target::Parquet(path) = &target {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
    }
    Ok(TableWriter::create(target, schema)?)
}

fn run_example(entry: &DatasetEntry, traces: TraceExport) -> Example {
    let mut extra = Map::new();
    let (seed_id, parent_id, round, operation) = match &entry.lineage {
        Some(l) => (l.seed_id.clone(), Some(l.parent_id.clone()), l.round, Some(l.operation.clone())),
        None => (entry.id.clone(), None, 0, None),
    };
    extra.insert("id".into(), json!(entry.id));
    extra.insert("seed_id".into(), json!(seed_id));
    extra.insert("parent_id".into(), json!(parent_id));
    extra.insert("round".into(), json!(round));
    extra.insert("operation".into(), json!(operation));
    extra.insert("model".into(), json!(entry.model));
    extra.insert("answer_model".into(), json!(entry.answer_model));
    extra.insert("difficulty".into(), json!(entry.row.difficulty));
    extra.insert("answer_truncated".into(), json!(entry.row.answer_truncated));
    extra.insert("ground_truth".into(), json!(entry.row.ground_truth));
    let trace = entry.row.output_reasoning.as_deref().filter(|t| !t.trim().is_empty());
    let output = match (traces, trace, &entry.row.output) {
        // As open-r1 and OpenThoughts publish: the trace opens the answer.
        (TraceExport::Inline, Some(trace), Some(answer)) => Some(format!("<think>\n{trace}\n</think>\n\n{answer}")),
        _ => entry.row.output.clone(),
    };
    if traces == TraceExport::Field {
        extra.insert(TRACE_COLUMN.into(), json!(trace));
    }
    // A conversation's earlier turns come first, each user turn with the
    // answer after it.
    let mut exchanges: Vec<(String, Option<String>)> = Vec::new();
    for m in &entry.row.history {
        match m.role {
            evol_llm::Role::User => exchanges.push((m.content.clone(), None)),
            _ => {
                if let Some(last) = exchanges.last_mut() {
                    last.1 = Some(m.content.clone());
                }
            }
        }
    }
    exchanges.push((entry.row.instruction.clone(), output));
    let dialogue = Dialogue { system: None, exchanges };
    Example { id: entry.id.clone(), dialogue, extra }
}

fn note(made: &mut Made, entry: &DatasetEntry) {
    if entry.row.output.is_none() {
        made.unanswered += 1;
    }
    if entry.row.output_reasoning.as_deref().is_some_and(|t| !t.trim().is_empty()) {
        made.traced += 1;
    }
    if let Some(label) = &entry.row.ground_truth {
        made.constrained += 1;
        if let Ok(truth) = evol_constraints::GroundTruth::from_label(label) {
            for id in truth.instruction_id {
                *made.constraint_kinds.entry(id).or_default() += 1;
            }
        }
    }
    let round = entry.lineage.as_ref().map_or(0, |l| l.round);
    *made.rounds.entry(round).or_default() += 1;
    if let Some(d) = entry.row.difficulty {
        let slot = made.difficulty.entry(round).or_default();
        slot.0 += d;
        slot.1 += 1;
    }
}

/// An example in a layout, with its extra columns unless `plain`.
fn layout(format: Format, example: &Example, plain: bool) -> anyhow::Result<Value> {
    let mut row = Map::new();
    match format {
        Format::Alpaca | Format::Jsonl => {
            let [(instruction, output)] = example.dialogue.exchanges.as_slice() else {
                bail!(
                    "`{}` is a conversation of {} exchanges; --format {} holds one: use --format messages or sharegpt",
                    example.id,
                    example.dialogue.exchanges.len(),
                    format.name()
                )
            };
            if example.dialogue.system.is_some() {
                bail!(
                    "`{}` has a system prompt; --format {} has no place for it: use --format messages or sharegpt",
                    example.id,
                    format.name()
                );
            }
            let [instruction_key, input_key, output_key] = ALPACA;
            row.insert(instruction_key.into(), json!(instruction));
            if format == Format::Alpaca {
                row.insert(input_key.into(), json!(""));
            }
            row.insert(output_key.into(), json!(output));
        }
        Format::ShareGpt | Format::Messages => {
            let layout = if format == Format::ShareGpt { ChatLayout::ShareGpt } else { ChatLayout::Messages };
            row.insert(layout.field().into(), example.dialogue.turns(layout));
        }
        Format::Dpo => unreachable!("preference pairs are written by export_learned"),
    }
    if !plain {
        row.extend(example.extra.clone());
    } else if let Some(trace) = example.extra.get(TRACE_COLUMN) {
        row.insert(TRACE_COLUMN.into(), trace.clone());
    }
    Ok(Value::Object(row))
}

/// Ends the target, writes a directory's card, and says what was written.
fn finish(
    writer: TableWriter,
    to: &Path,
    args: &ExportSettings,
    format: Format,
    source: card::Source,
    observer: &dyn Observer,
) -> anyhow::Result<ExportReport> {
    let schema = writer.schema().clone();
    let written = writer.finish()?;
    if matches!(Target::from_path(to, 1), Target::HubDir { .. }) {
        let text = card::card(&card::Card {
            format,
            plain: args.plain,
            schema: &schema,
            written: &written,
            source,
            out: &args.output,
            to,
        });
        std::fs::write(to.join("README.md"), text)
            .with_context(|| format!("cannot write `{}`", to.join("README.md").display()))?;
    }
    observer.say(&format!(
        "evol: wrote {} rows as {} to `{}` ({} file{}, {})",
        written.rows,
        format.name(),
        to.display(),
        written.files.len(),
        if written.files.len() == 1 { "" } else { "s" },
        card::human_bytes(written.bytes)
    ));
    Ok(ExportReport::Written {
        rows: written.rows,
        format: format.name().to_string(),
        to: to.to_path_buf(),
        files: written.files.clone(),
        bytes: written.bytes,
    })
}

/// `evol export OUT --format dpo --to PATH`: the preference pairs of K
/// answers an instruction (a run's or `evol answer`'s `pairs.jsonl`), in
/// TRL's layout, with every other field of the pairs as a column (a number
/// column when every value is a number, else text).
fn export_pairs(
    args: &ExportSettings,
    file: &Path,
    to: &Path,
    observer: &dyn Observer,
) -> anyhow::Result<ExportReport> {
    let rows = read_rows(file)?;
    let mut extra: Vec<(String, bool)> = Vec::new();
    if !args.plain {
        for (_, row) in &rows {
            for (key, value) in row {
                if evol_io::layout::PREFERENCE.contains(&key.as_str()) {
                    continue;
                }
                let numeric = value.is_number() || value.is_null();
                match extra.iter_mut().find(|(k, _)| k == key) {
                    Some((_, n)) => *n &= numeric,
                    None => extra.push((key.clone(), numeric)),
                }
            }
        }
    }
    let columns: Vec<_> = extra
        .iter()
        .map(|(key, numeric)| if *numeric { table::float(key, true) } else { table::text(key, true) })
        .collect();
    let mut writer = create(to, args, schema(Format::Dpo, false, args.plain, &columns))?;
    for (place, row) in &rows {
        let mut out = dpo_row(row, false).with_context(|| format!("`{}` {place}", file.display()))?;
        for (key, numeric) in &extra {
            let value = match row.get(key) {
                None | Some(Value::Null) => Value::Null,
                Some(v) if *numeric => v.clone(),
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(v) => Value::String(v.to_string()),
            };
            out.insert(key.clone(), value);
        }
        writer.write(Value::Object(out))?;
    }
    finish(writer, to, args, Format::Dpo, card::Source::Pairs { file }, observer)
}

/// `evol export LEARN_DIR --to PATH`: the SFT records (`sft.jsonl`) in an
/// SFT layout, or the preference pairs (`dpo.jsonl`) with `--format dpo`.
fn export_learned(
    args: &ExportSettings,
    format: Format,
    to: &Path,
    observer: &dyn Observer,
) -> anyhow::Result<ExportReport> {
    let file: PathBuf = args.output.join(if format == Format::Dpo { "dpo.jsonl" } else { "sft.jsonl" });
    let rows = read_rows(&file)?;
    if format == Format::Dpo {
        let conversational = rows.iter().any(|(_, r)| !r.get("chosen").is_some_and(Value::is_string));
        let extra = vec![
            table::text("id", false),
            table::text("chosen_model", true),
            table::text("rejected_model", true),
            table::float("margin", true),
        ];
        let mut writer = create(to, args, schema(Format::Dpo, conversational, args.plain, &extra))?;
        for (place, row) in &rows {
            let mut out = dpo_row(row, conversational).with_context(|| format!("`{}` {place}", file.display()))?;
            if !args.plain {
                for key in ["id", "chosen_model", "rejected_model", "margin"] {
                    out.insert(key.into(), id_or(row, key));
                }
            }
            writer.write(Value::Object(out))?;
        }
        return finish(writer, to, args, format, card::Source::Learned { pairs: true }, observer);
    }
    let extra = vec![
        table::text("id", false),
        table::text("model", true),
        table::text("target", true),
        table::float("margin", true),
    ];
    let mut writer = create(to, args, schema(format, false, args.plain, &extra))?;
    for (place, row) in &rows {
        let example = learned_example(row).with_context(|| format!("`{}` {place}", file.display()))?;
        writer.write(layout(format, &example, args.plain).with_context(|| format!("`{}` {place}", file.display()))?)?;
    }
    finish(writer, to, args, format, card::Source::Learned { pairs: false }, observer)
}

/// The dataset file `path` names: a file itself, or the output of `evol
/// select` or `evol score` (`selected.jsonl`, else `scored.jsonl`).
fn rows_file(path: &Path) -> Option<PathBuf> {
    // A file, or a dataset directory (such as one `evol export` wrote).
    let dataset =
        path.is_dir() && !path.join(evol_store::output::JOURNAL).exists() && evol_io::dataset_parts(path).is_some();
    if path.is_file() || dataset {
        return Some(path.to_path_buf());
    }
    [evol_store::output::SELECTED, evol_store::output::SCORED].iter().map(|f| path.join(f)).find(|p| p.is_file())
}

/// Keys a dataset row's layout holds (not extra columns).
const LAYOUT_KEYS: [&str; 8] =
    ["instruction", "input", "output", "response", "prompt", "messages", "conversations", "id"];

/// `evol export FILE --to PATH`: any dataset file's rows (such as `evol
/// score`'s, with their scores), the instruction read as seeds are and the
/// answer from `output` or `response`; the other scalar fields become
/// columns, typed from every row (integers, floats, texts, booleans).
fn export_rows(
    args: &ExportSettings,
    format: Format,
    file: &Path,
    to: &Path,
    observer: &dyn Observer,
) -> anyhow::Result<ExportReport> {
    let mut rows = Vec::new();
    for row in evol_io::open_rows(file, evol_io::SeedFormat::Auto)? {
        let row = row?;
        let place = format!("`{}` {}", file.display(), row.place);
        let object = row.object().map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
        // A chat is carried over whole, every turn; an instruction record
        // is read as seeds are, its answer from `output` or `response`.
        let (dialogue, id) = match Dialogue::of_chat(&object).map_err(|e| anyhow::anyhow!("{place}: {e}"))? {
            Some(dialogue) => {
                let id = crate::jobs::testset::field(&object, &["id", "idx"]).and_then(crate::jobs::testset::id_text);
                (dialogue, id)
            }
            None => {
                let (instruction, id) =
                    row.text(&evol_io::TextField::Instruction).map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
                let output = match crate::jobs::testset::field(&object, &["output", "response"]) {
                    Some(Value::String(s)) => Some(s.clone()),
                    _ => None,
                };
                (Dialogue { system: None, exchanges: vec![(instruction, output)] }, id)
            }
        };
        rows.push((place, dialogue, id, object));
    }
    // The extra columns and their types, over every row.
    let mut kinds: BTreeMap<String, &'static str> = BTreeMap::new();
    for (place, _, _, object) in &rows {
        for (key, value) in object {
            if LAYOUT_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k)) {
                continue;
            }
            let kind = match value {
                Value::Null | Value::Array(_) | Value::Object(_) => continue,
                Value::Bool(_) => "bool",
                Value::Number(n) if n.is_i64() => "int",
                Value::Number(_) => "float",
                Value::String(_) => "text",
            };
            let entry = kinds.entry(key.clone()).or_insert(kind);
            match (*entry, kind) {
                (a, b) if a == b => {}
                ("int", "float") | ("float", "int") => *entry = "float",
                (a, b) => {
                    bail!("{place}: the field `{}` is {b} here and {a} in an earlier row", evol_text::shown_inline(key))
                }
            }
        }
    }
    let mut extra = vec![table::text("id", false)];
    for (key, kind) in &kinds {
        extra.push(match *kind {
            "int" => table::integer(key, true),
            "float" => table::float(key, true),
            "bool" => arrow_schema::Field::new(key, arrow_schema::DataType::Boolean, true),
            _ => table::text(key, true),
        });
    }
    let mut writer = create(to, args, schema(format, false, args.plain, &extra))?;
    let mut made = Made::default();
    for (n, (place, dialogue, id, object)) in rows.into_iter().enumerate() {
        if args.drop_truncated && object.get("answer_truncated") == Some(&Value::Bool(true)) {
            made.dropped_truncated += 1;
            continue;
        }
        let mut columns = Map::new();
        columns.insert("id".into(), json!(id.unwrap_or_else(|| (n + 1).to_string())));
        for key in kinds.keys() {
            let value = object.get(key).cloned().unwrap_or(Value::Null);
            columns.insert(key.clone(), value);
        }
        made.unanswered += u64::from(dialogue.exchanges.iter().any(|(_, a)| a.is_none()));
        let example = Example { id: place.clone(), dialogue, extra: columns };
        writer.write(layout(format, &example, args.plain).with_context(|| place.clone())?)?;
    }
    finish(writer, to, args, format, card::Source::Rows { file, made: &made }, observer)
}

fn read_rows(file: &Path) -> anyhow::Result<Vec<(String, Map<String, Value>)>> {
    let mut rows = Vec::new();
    for row in evol_io::open_rows(file, evol_io::SeedFormat::Jsonl)? {
        let row = row?;
        let object = row.object().map_err(|e| anyhow::anyhow!("`{}` {}: {e}", file.display(), row.place))?;
        rows.push((row.place.to_string(), object));
    }
    Ok(rows)
}

fn id_or(row: &Map<String, Value>, key: &str) -> Value {
    match row.get(key) {
        Some(Value::Number(n)) if key == "id" => json!(n.to_string()),
        Some(v) => v.clone(),
        None => Value::Null,
    }
}

fn text(row: &Map<String, Value>, key: &str) -> anyhow::Result<String> {
    match row.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => bail!("`{key}` is missing or not a text"),
    }
}

/// A chat layout's column: its field, a list of its turns.
fn chat_column(layout: ChatLayout) -> Field {
    let (who, what) = layout.keys();
    table::turns(layout.field(), [who, what])
}

/// A list of chat turns (either layout), checked.
fn turns(value: Option<&Value>, key: &str) -> anyhow::Result<Vec<(Speaker, String)>> {
    let Some(value) = value else { bail!("`{key}` is missing or not a list of turns") };
    Ok(evol_io::chat_turns(value, key).map_err(anyhow::Error::msg)?.into_iter().map(|t| (t.speaker, t.text)).collect())
}

fn learned_example(row: &Map<String, Value>) -> anyhow::Result<Example> {
    let id = match id_or(row, "id") {
        Value::String(s) => s,
        _ => bail!("`id` is missing"),
    };
    let dialogue = match Dialogue::of_chat(row).map_err(anyhow::Error::msg)? {
        Some(dialogue) => dialogue,
        None => Dialogue { system: None, exchanges: vec![(text(row, "instruction")?, Some(text(row, "output")?))] },
    };
    let mut extra = Map::new();
    for key in ["id", "model", "target", "margin"] {
        extra.insert(key.into(), id_or(row, key));
    }
    Ok(Example { id, dialogue, extra })
}

/// A preference pair in TRL's layout: `prompt`, `chosen`, `rejected` as
/// texts, or, when any pair is a conversation, as lists of messages (a
/// text pair becomes one user and one assistant turn; the turns two
/// conversations share before their answers differ become the prompt).
fn dpo_row(row: &Map<String, Value>, conversational: bool) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    let [prompt, chosen, rejected] = evol_io::layout::PREFERENCE;
    match (row.get(chosen), conversational) {
        (Some(Value::String(_)), false) => {
            for key in evol_io::layout::PREFERENCE {
                out.insert(key.into(), json!(text(row, key)?));
            }
        }
        (Some(Value::String(_)), true) => {
            let turn = |speaker: Speaker, key: &str| -> anyhow::Result<Value> {
                Ok(json!([ChatLayout::Messages.turn(&speaker, &text(row, key)?)]))
            };
            out.insert(prompt.into(), turn(Speaker::User, prompt)?);
            out.insert(chosen.into(), turn(Speaker::Assistant, chosen)?);
            out.insert(rejected.into(), turn(Speaker::Assistant, rejected)?);
        }
        _ => {
            let (chosen_key, rejected_key) = (chosen, rejected);
            let chosen = turns(row.get(chosen_key), chosen_key)?;
            let rejected = turns(row.get(rejected_key), rejected_key)?;
            // The turns both share (up to the first answer that differs)
            // are the prompt.
            let shared = chosen.iter().zip(&rejected).take_while(|(a, b)| a == b).count();
            if shared == 0 || shared == chosen.len() || shared == rejected.len() {
                bail!("`chosen` and `rejected` must be conversations that start alike and then differ");
            }
            let as_json = |t: &[(Speaker, String)]| -> Value {
                t.iter().map(|(speaker, text)| ChatLayout::Messages.turn(speaker, text)).collect()
            };
            out.insert(prompt.into(), as_json(&chosen[..shared]));
            out.insert(chosen_key.into(), as_json(&chosen[shared..]));
            out.insert(rejected_key.into(), as_json(&rejected[shared..]));
        }
    }
    Ok(out)
}
