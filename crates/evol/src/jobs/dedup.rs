//! `evol dedup IN -o OUT`: removes exact and near duplicates from a dataset
//! file, keeping the first row of each cluster in file order.
//!
//! The corpora of `--against` are indexed first (read, never written), then
//! the input streams through in batches: the rows of a batch are parsed and
//! fingerprinted on every core, then decided one by one in file order, so
//! the result never depends on the number of threads. A kept row is written
//! as it was read; a removed one goes to the clusters file with the row it
//! duplicates.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use evol_dedup::{Explanation, Fingerprint, Hasher, Index, Match};
use evol_io::seeds::Place;
use evol_io::{open_rows, Row, RowWriter, TextField};
use rayon::prelude::*;

use crate::settings::DedupSettings;

/// Rows fingerprinted together.
const BATCH: usize = 16_384;

/// A kept row, as the clusters file names it.
struct Kept {
    /// Index into the file names (0: the input; then each corpus).
    file: u32,
    place: Place,
    id: Option<Box<str>>,
}

/// What the command did.
#[derive(Debug, Default)]
struct Counts {
    read: usize,
    kept: usize,
    exact: usize,
    near: usize,
    /// Removed rows whose kept row is in a corpus.
    against: usize,
    invalid: usize,
    /// The first rows left out as unreadable: file, place and why.
    left_out: Vec<String>,
    corpus_rows: usize,
}

/// Unreadable rows named in the report; the rest are counted.
const NAMED_UNREADABLE: usize = 20;

/// What a deduplication did, as `--json` prints it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DedupReport {
    pub input: std::path::PathBuf,
    pub output: std::path::PathBuf,
    pub clusters: std::path::PathBuf,
    /// The field compared.
    pub field: String,
    pub read: usize,
    pub kept: usize,
    pub removed: usize,
    pub exact: usize,
    pub near: usize,
    /// Removed rows whose kept row is in a corpus (`--against`).
    pub against_corpus: usize,
    pub corpus_rows: usize,
    /// The corpus files compared against (`--against`).
    #[serde(skip)]
    pub corpora: usize,
    /// Rows left out because their text could not be read
    /// (`--skip-invalid`).
    pub unreadable: usize,
    /// The first of them (up to 20): file, place and why.
    #[serde(default)]
    pub unreadable_rows: Vec<String>,
    pub seconds: f64,
}

impl DedupReport {
    /// The summary, in words.
    pub fn text(&self) -> String {
        let mut text = String::new();
        let _ = write!(
            text,
            "{} rows read from `{}` ({} compared, {:.1} s): {} kept, {} removed ({} exact, {} near duplicates",
            self.read,
            self.input.display(),
            self.field,
            self.seconds,
            self.kept,
            self.removed,
            self.exact,
            self.near
        );
        if self.corpora > 0 {
            let _ = write!(text, "; {} of a corpus row, {} corpus rows read", self.against_corpus, self.corpus_rows);
        }
        text.push(')');
        if self.unreadable > 0 {
            let _ = write!(text, ", {} unreadable rows left out", self.unreadable);
            for row in &self.unreadable_rows {
                let _ = write!(text, "\n  left out: {row}");
            }
            if self.unreadable > self.unreadable_rows.len() {
                let _ = write!(text, "\n  left out: and {} more", self.unreadable - self.unreadable_rows.len());
            }
        }
        let _ =
            write!(text, "\n  kept rows: `{}`\n  clusters:  `{}`\n", self.output.display(), self.clusters.display());
        text
    }
}

/// The explanation of the near-duplicate settings (`--explain`): what
/// share of pairs at each similarity is caught.
pub fn explain(settings: &DedupSettings) -> String {
    format!("{}\n", Explanation::new(settings.params))
}

/// Removes the duplicates of the input's rows (among themselves and
/// against the corpora), writing the kept rows as they were read and the
/// clusters file.
pub fn dedup(settings: &DedupSettings, observer: &dyn crate::Observer) -> anyhow::Result<DedupReport> {
    let Some(files) = &settings.files else {
        anyhow::bail!("no input to deduplicate");
    };
    let started = std::time::Instant::now();
    let hasher = Hasher::new(settings.params);
    let mut index = Index::new(settings.params);
    let mut kept: Vec<Kept> = Vec::new();
    let mut names: Vec<String> = vec![files.input.display().to_string()];
    let mut counts = Counts::default();

    for (n, corpus) in settings.against.iter().enumerate() {
        names.push(corpus.display().to_string());
        let file = n as u32 + 1;
        let reader = open_rows(corpus, settings.format)?;
        let shown = (observer, "corpus rows read");
        each_batch(reader, corpus, settings, &hasher, &mut counts, shown, |row, fingerprint, id| {
            if index.check(fingerprint).is_ok() {
                kept.push(Kept { file, place: row.place, id });
            }
            Ok(())
        })?;
    }
    counts.corpus_rows = counts.read;
    counts.read = 0;
    let corpus_kept = kept.len();

    let reader = open_rows(&files.input, settings.format)?;
    let layout = reader.layout();
    let bom = reader.bom();
    let mut out = RowWriter::create(&files.output, layout)
        .and_then(|out| out.with_bom(bom))
        .with_context(|| format!("cannot write `{}`", files.output.display()))?;
    let mut clusters = RowWriter::create(&files.clusters, evol_io::Layout::Jsonl)
        .with_context(|| format!("cannot write `{}`", files.clusters.display()))?;
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| anyhow::anyhow!("cannot write `{path}`: {e}")
    };
    let (mut exact, mut near, mut against) = (0, 0, 0);
    each_batch(
        reader,
        &files.input,
        settings,
        &hasher,
        &mut counts,
        (observer, "rows read"),
        |row, fingerprint, id| match index.check(fingerprint) {
            Ok(_) => {
                kept.push(Kept { file: 0, place: row.place, id });
                out.write(row).map_err(io(&files.output))
            }
            Err(found) => {
                let original = &kept[found.index as usize];
                *if found.exact { &mut exact } else { &mut near } += 1;
                against += usize::from(original.file != 0);
                let line = cluster_line(row.place, id.as_deref(), original, &names, found);
                clusters.write_json(&line).map_err(io(&files.clusters))
            }
        },
    )?;
    observer.stage_done();
    (counts.exact, counts.near, counts.against) = (exact, near, against);
    counts.kept = kept.len() - corpus_kept;
    out.finish().map_err(io(&files.output))?;
    clusters.finish().map_err(io(&files.clusters))?;
    let field = match &settings.field {
        TextField::Instruction => "instruction".to_string(),
        TextField::Named(name) => name.clone(),
    };
    Ok(DedupReport {
        input: files.input.clone(),
        output: files.output.clone(),
        clusters: files.clusters.clone(),
        field,
        read: counts.read,
        kept: counts.kept,
        removed: counts.exact + counts.near,
        exact: counts.exact,
        near: counts.near,
        against_corpus: counts.against,
        corpus_rows: counts.corpus_rows,
        corpora: settings.against.len(),
        unreadable: counts.invalid,
        unreadable_rows: counts.left_out,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One line of the clusters file: a removed row and the row it duplicates,
/// by place and id (the run's duplicates lines, by row).
type ClusterLine<'a> = evol_dedup::DuplicateLine<RowRef<'a>>;

/// A row by file, place and id.
#[derive(serde::Serialize)]
struct RowRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<usize>,
    id: Option<&'a str>,
}

impl<'a> RowRef<'a> {
    fn new(file: Option<&'a str>, place: Place, id: Option<&'a str>) -> RowRef<'a> {
        let (line, item, row) = match place {
            Place::Line(n) => (Some(n), None, None),
            Place::Item(n) => (None, Some(n), None),
            Place::Row(n) => (None, None, Some(n)),
        };
        RowRef { file, line, item, row, id }
    }
}

fn cluster_line<'a>(
    place: Place,
    id: Option<&'a str>,
    kept: &'a Kept,
    names: &'a [String],
    found: Match,
) -> ClusterLine<'a> {
    let removed = RowRef::new(None, place, id);
    ClusterLine::new(removed, RowRef::new(Some(&names[kept.file as usize]), kept.place, kept.id.as_deref()), found)
}

/// Reads `path` in batches, fingerprints each batch on every core, and
/// hands the rows to `decide` in file order. A row whose text cannot be
/// read is an error naming its place, or is counted and left out with
/// `--skip-invalid`. The rows read so far are shown to `observer` in
/// `unit` after each batch.
fn each_batch(
    reader: evol_io::RowReader,
    path: &Path,
    settings: &DedupSettings,
    hasher: &Hasher,
    counts: &mut Counts,
    (observer, unit): (&dyn crate::Observer, &'static str),
    mut decide: impl FnMut(&Row, &Fingerprint, Option<Box<str>>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut reader = reader.peekable();
    let field = &settings.field;
    let leave_out = |counts: &mut Counts, place: Place, message: String| {
        counts.invalid += 1;
        if counts.left_out.len() < NAMED_UNREADABLE {
            counts.left_out.push(format!("`{}` {place}: {message}", path.display()));
        }
    };
    while reader.peek().is_some() {
        // A record the container cannot give (not UTF-8, a table row with
        // the wrong number of fields) is left out like an unreadable text.
        let mut rows: Vec<Row> = Vec::with_capacity(BATCH);
        for row in reader.by_ref().take(BATCH) {
            match row {
                Ok(row) => rows.push(row),
                Err(evol_io::SeedError::Invalid { place, message, .. }) if settings.skip_invalid => {
                    counts.read += 1;
                    leave_out(counts, place, message);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let prints: Vec<Result<(Fingerprint, Option<String>), String>> = rows
            .par_iter()
            .map(|row| {
                let (text, id) = row.text(field)?;
                let print = if settings.exact_only { Hasher::exact(&text) } else { hasher.fingerprint(&text) };
                Ok((print, id))
            })
            .collect();
        for (row, print) in rows.iter().zip(prints) {
            counts.read += 1;
            match print {
                Ok((print, id)) => decide(row, &print, id.map(String::into_boxed_str))?,
                Err(message) if settings.skip_invalid => leave_out(counts, row.place, message),
                Err(message) => anyhow::bail!("`{}` {}: {message}", path.display(), row.place),
            }
        }
        observer.stage(unit, counts.read as u64, None);
    }
    Ok(())
}
