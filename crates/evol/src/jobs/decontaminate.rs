//! `evol decontaminate IN --benchmark FILE... -o OUT`: the rows of a
//! dataset that share no run of words with a benchmark's items.
//!
//! Every benchmark item (a test set's question, as `evol answer` reads it:
//! its turns joined) is indexed by its runs of `ngram` words in normal form
//! ([`evol_dedup::contamination`]); each row's instruction and answer are
//! checked against them. A row that overlaps is left out and listed, with
//! the item it overlaps and the words they share; the rows kept are
//! written as they were read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use evol_dedup::Benchmarks;
use evol_io::{open_rows, RowWriter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::observe::Observer;
use crate::settings::DecontaminateSettings;

/// What a decontamination did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecontaminateReport {
    pub input: PathBuf,
    pub output: PathBuf,
    pub contaminated_file: PathBuf,
    /// The run length, in words (characters of unspaced scripts).
    pub ngram: usize,
    pub benchmark_items: usize,
    /// Benchmark items too short to check (fewer than 8 words).
    pub benchmark_items_too_short: usize,
    pub rows: usize,
    pub kept: usize,
    pub contaminated: usize,
    /// Rows left out per benchmark file.
    pub by_benchmark: BTreeMap<String, usize>,
    pub seconds: f64,
}

/// One line of the contaminated rows' file.
#[derive(Serialize)]
struct ContaminatedLine<'a> {
    removed: evol_io::seeds::Place,
    /// Which text overlaps: `instruction` or `output`.
    field: &'static str,
    /// The benchmark item, as `FILE#ID`.
    benchmark: &'a str,
    /// The first run of words they share, in normal form.
    words: &'a str,
}

/// Reads benchmark files (test sets, as `evol answer` reads them: each
/// question's turns joined) into an index of their runs of `ngram` words,
/// with what identifies them for a run's settings (a digest of every item's
/// name and text). Benchmarks without an item long enough to check are an
/// error, not a check that passes everything.
pub fn load_benchmarks(
    files: &[PathBuf],
    ngram: usize,
) -> anyhow::Result<(Benchmarks, evol_core::method::Contamination)> {
    let mut index = Benchmarks::new(ngram);
    let mut digest = evol_digest::Digest::new();
    for file in files {
        let questions = crate::jobs::testset::read_testset(file, evol_io::SeedFormat::Auto, None)
            .with_context(|| format!("the benchmark `{}`", file.display()))?;
        let name = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
        for q in questions {
            let text = q.turns.join("\n");
            digest = digest.part(&name).part(&q.id).part(&text);
            index.add(format!("{}#{}", file.display(), q.id), &text);
        }
    }
    if index.items() == 0 {
        anyhow::bail!(
            "the benchmarks hold no item of at least {} words to check against",
            evol_dedup::contamination::MIN_ITEM_WORDS
        );
    }
    let contamination =
        evol_core::method::Contamination { ngram: index.ngram(), items: index.items(), digest: digest.hex(32) };
    Ok((index, contamination))
}

/// The texts of a row besides its instruction, by field: its answer
/// (`output` or `response`, text), and every turn of a chat (`messages`
/// or `conversations`). A field given twice, or an answer that is not
/// text, is an error, never a row left unchecked.
fn answer_texts(object: &serde_json::Map<String, Value>) -> Result<Vec<(&'static str, &str)>, String> {
    let mut texts = Vec::new();
    for name in ["output", "response"] {
        match evol_io::field(object, &[name])? {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => texts.push((name, text.as_str())),
            Some(other) => return Err(format!("`{name}` is {}, not text", evol_io::seeds::kind(other))),
        }
    }
    for layout in [evol_io::layout::ChatLayout::Messages, evol_io::layout::ChatLayout::ShareGpt] {
        let name = layout.field();
        let Some(Value::Array(turns)) = evol_io::field(object, &[name])? else { continue };
        let (_, said) = layout.keys();
        texts.extend(turns.iter().filter_map(|t| t.get(said)?.as_str()).map(|text| (name, text)));
    }
    Ok(texts)
}

/// Checks every row of the input against the benchmarks; writes the rows
/// kept and the rows left out.
pub fn decontaminate(settings: &DecontaminateSettings, observer: &dyn Observer) -> anyhow::Result<DecontaminateReport> {
    let started = std::time::Instant::now();
    let (index, _) = load_benchmarks(&settings.benchmarks, settings.ngram)?;
    observer.say(&format!(
        "evol: {} benchmark items indexed by runs of {} words{}",
        index.items(),
        index.ngram(),
        match index.too_short() {
            0 => String::new(),
            n => format!(" ({n} too short to check, left out)"),
        }
    ));

    let reader = open_rows(&settings.input, settings.format)?;
    let (layout, bom) = (reader.layout(), reader.bom());
    let io = |path: &PathBuf| {
        let path = path.display().to_string();
        move |e: std::io::Error| anyhow::anyhow!("cannot write `{path}`: {e}")
    };
    let mut out = RowWriter::create(&settings.output, layout)
        .and_then(|w| w.with_bom(bom))
        .with_context(|| format!("cannot write `{}`", settings.output.display()))?;
    let mut listed = RowWriter::create(&settings.contaminated, evol_io::Layout::Jsonl)
        .with_context(|| format!("cannot write `{}`", settings.contaminated.display()))?;
    let (mut rows, mut kept) = (0, 0);
    let mut by_benchmark: BTreeMap<String, usize> = BTreeMap::new();
    for row in reader {
        let row = row?;
        rows += 1;
        let place = row.place;
        let object = row.object().map_err(|e| anyhow::anyhow!("`{}` {place}: {e}", settings.input.display()))?;
        let (instruction, _) =
            row.text(&settings.field).map_err(|e| anyhow::anyhow!("`{}` {place}: {e}", settings.input.display()))?;
        let in_row = |e: String| anyhow::anyhow!("`{}` {place}: {e}", settings.input.display());
        let answer = answer_texts(&object).map_err(in_row)?;
        let hit = index
            .find(&instruction)
            .map(|h| ("instruction", h))
            .or_else(|| answer.iter().find_map(|(field, text)| index.find(text).map(|h| (*field, h))));
        match hit {
            None => {
                kept += 1;
                out.write(&row).map_err(io(&settings.output))?;
            }
            Some((field, hit)) => {
                let file = hit.item.rsplit_once('#').map_or(hit.item, |(file, _)| file);
                *by_benchmark.entry(file.to_string()).or_default() += 1;
                let line = ContaminatedLine { removed: place, field, benchmark: hit.item, words: &hit.words };
                listed.write_json(&line).map_err(io(&settings.contaminated))?;
            }
        }
        if rows % 65_536 == 0 {
            observer.stage("rows checked", rows as u64, None);
        }
    }
    observer.stage_done();
    out.finish().map_err(io(&settings.output))?;
    listed.finish().map_err(io(&settings.contaminated))?;
    let report = DecontaminateReport {
        input: settings.input.clone(),
        output: settings.output.clone(),
        contaminated_file: settings.contaminated.clone(),
        ngram: index.ngram(),
        benchmark_items: index.items(),
        benchmark_items_too_short: index.too_short(),
        rows,
        kept,
        contaminated: rows - kept,
        by_benchmark,
        seconds: started.elapsed().as_secs_f64(),
    };
    observer.say(&format!(
        "evol: {} of {} rows overlap a benchmark item (runs of {} words) and are left out: `{}`; {} kept in `{}`",
        report.contaminated,
        report.rows,
        report.ngram,
        settings.contaminated.display(),
        report.kept,
        settings.output.display()
    ));
    Ok(report)
}

#[cfg(test)]
mod answer_tests {
    use super::answer_texts;
    use serde_json::json;

    fn texts(v: serde_json::Value) -> Result<Vec<(&'static str, String)>, String> {
        let object = v.as_object().unwrap().clone();
        answer_texts(&object).map(|t| t.into_iter().map(|(f, s)| (f, s.to_string())).collect())
    }

    #[test]
    fn every_text_of_a_row_is_checked_and_a_doubtful_one_is_an_error() {
        assert_eq!(texts(json!({"instruction": "q", "output": "a"})).unwrap(), [("output", "a".to_string())]);
        let chat = json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "उत्तर"}]});
        assert_eq!(texts(chat).unwrap(), [("messages", "q".to_string()), ("messages", "उत्तर".to_string())]);
        let sharegpt = json!({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]});
        assert_eq!(texts(sharegpt).unwrap().len(), 2);
        assert!(texts(json!({"output": null})).unwrap().is_empty());
        let twice = texts(json!({"output": "a", "Output": "b"})).unwrap_err();
        assert!(twice.contains("`Output`") && twice.contains("`output`"), "{twice}");
        assert_eq!(texts(json!({"response": ["a"]})).unwrap_err(), "`response` is an array, not text");
    }
}
