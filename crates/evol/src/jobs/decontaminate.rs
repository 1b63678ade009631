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
        let answer = ["output", "response"].iter().find_map(|k| evol_io::field(&object, &[k]).ok().flatten());
        let answer = answer.and_then(Value::as_str).unwrap_or_default();
        let hit =
            index.find(&instruction).map(|h| ("instruction", h)).or_else(|| index.find(answer).map(|h| ("output", h)));
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
