//! The run's output directory: records appended as they are decided, and
//! the files exported from the journal (the source of truth) at the end of
//! a run or by `evol export`: record files in id order, the dataset in its
//! shuffled order, the statistics. Export streams from the journal, so it
//! runs in flat memory whatever the size of the run.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use evol_core::rng::order_key;
use evol_core::{Evolution, Rejection, Seed, SeedAnswer, SeedScore, Sink, SinkError};
use serde::{Deserialize, Serialize};

use crate::dir::DirLock;
use crate::journal::{DatasetSource, Kind, SeedRow, SqliteJournal};
use crate::StoreError;

/// Accepted evolutions, one JSON object per line.
pub const EVOLVED: &str = "evolved.jsonl";
/// Failed evolutions with their reason.
pub const REJECTED: &str = "rejected.jsonl";
/// The seeds' own answers (only when seeds join the dataset).
pub const SEED_ANSWERS: &str = "seeds.jsonl";
/// The seeds' difficulty scores (with `--score-difficulty`).
pub const SEED_SCORES: &str = "seed_scores.jsonl";
/// The final merged dataset.
pub const DATASET: &str = "dataset.jsonl";
/// Run statistics.
pub const STATS: &str = "stats.json";
/// The rows of `evol score`, with their scores.
pub const SCORED: &str = "scored.jsonl";
/// The rows `evol select` took, and those it left out as too similar.
pub const SELECTED: &str = "selected.jsonl";
pub const SIMILAR: &str = "similar.jsonl";
/// Dataset rows left out as duplicates of earlier rows.
pub const DUPLICATES: &str = "duplicates.jsonl";
/// Preference pairs from K answers an instruction (TRL's `prompt`,
/// `chosen`, `rejected`).
pub const PAIRS: &str = "pairs.jsonl";
/// The journal of committed calls (SQLite, with its `-wal` and `-shm`).
pub const JOURNAL: &str = "journal.sqlite";
/// `evol optimize`'s best method, an operator file.
pub const METHOD: &str = "method.toml";
/// `evol optimize`'s steps.
pub const HISTORY: &str = "history.jsonl";
/// `evol answer`'s answers.
pub const ANSWERS: &str = "answers.jsonl";
/// `evol magpie`'s instructions, each once (seeds for `evol run`).
pub const INSTRUCTIONS: &str = "instructions.jsonl";
/// `evol magpie`'s generations left out (empty, cut off, duplicates).
pub const LEFT_OUT: &str = "left_out.jsonl";
/// `evol judge`'s games per question, and its figures.
pub const JUDGMENTS: &str = "judgments.jsonl";
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_MD: &str = "report.md";
/// `evol arena`'s judged games, the games without a verdict, and the
/// ratings.
pub const BATTLES: &str = "battles.jsonl";
pub const UNJUDGED: &str = "unjudged.jsonl";
pub const RATINGS: &str = "ratings.json";
pub const LEADERBOARD: &str = "leaderboard.md";

const RUN_FILES: &[&str] = &[
    EVOLVED,
    REJECTED,
    SEED_ANSWERS,
    SEED_SCORES,
    DATASET,
    STATS,
    DUPLICATES,
    SCORED,
    SELECTED,
    SIMILAR,
    METHOD,
    HISTORY,
    ANSWERS,
    JUDGMENTS,
    REPORT_JSON,
    REPORT_MD,
    BATTLES,
    UNJUDGED,
    RATINGS,
    LEADERBOARD,
];
const JOURNAL_FILES: &[&str] = &[JOURNAL, "journal.sqlite-wal", "journal.sqlite-shm"];
/// Which command made the directory (a [`JobKind`], as JSON).
pub const JOB_FILE: &str = "evol.job";

/// Which command's output a directory holds: recorded when a command first
/// prepares it, and checked by every later one, so no command writes into
/// (or, with `--fresh`, removes) another's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Run,
    Score,
    Select,
    Answer,
    Judge,
    Arena,
    Optimize,
    Magpie,
}

impl JobKind {
    pub const ALL: [JobKind; 8] = [
        JobKind::Run,
        JobKind::Score,
        JobKind::Select,
        JobKind::Answer,
        JobKind::Judge,
        JobKind::Arena,
        JobKind::Optimize,
        JobKind::Magpie,
    ];

    /// What such a directory holds, in words.
    pub fn describe(self) -> &'static str {
        match self {
            JobKind::Run => "a run of `evol run`",
            JobKind::Score => "the scores of `evol score`",
            JobKind::Select => "a selection of `evol select`",
            JobKind::Answer => "the answers of `evol answer`",
            JobKind::Judge => "the judgments of `evol judge`",
            JobKind::Arena => "the arena of `evol arena`",
            JobKind::Optimize => "a method of `evol optimize`",
            JobKind::Magpie => "the instructions of `evol magpie`",
        }
    }

    /// The command, for messages.
    pub fn command(self) -> &'static str {
        match self {
            JobKind::Run => "`evol run`",
            JobKind::Score => "`evol score`",
            JobKind::Select => "`evol select`",
            JobKind::Answer => "`evol answer`",
            JobKind::Judge => "`evol judge`",
            JobKind::Arena => "`evol arena`",
            JobKind::Optimize => "`evol optimize`",
            JobKind::Magpie => "`evol magpie`",
        }
    }

    /// The files only this kind writes: how a directory made before the
    /// kind was recorded is known.
    fn own_files(self) -> &'static [&'static str] {
        match self {
            JobKind::Run => &[EVOLVED, REJECTED, DATASET, SEED_ANSWERS, SEED_SCORES, DUPLICATES],
            JobKind::Score => &[SCORED],
            JobKind::Select => &[SELECTED, SIMILAR],
            JobKind::Answer => &[ANSWERS],
            JobKind::Judge => &[JUDGMENTS, REPORT_JSON, REPORT_MD],
            JobKind::Arena => &[BATTLES, UNJUDGED, RATINGS, LEADERBOARD],
            JobKind::Optimize => &[METHOD, HISTORY],
            JobKind::Magpie => &[INSTRUCTIONS, LEFT_OUT],
        }
    }

    /// The kind recorded in `root`, or the one its files betray (a
    /// directory of an older evol); none for a directory without either.
    pub fn of(root: &Path) -> Result<Option<JobKind>, StoreError> {
        let path = root.join(JOB_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let kind = serde_json::from_str::<JobFile>(&text).map_err(|e| StoreError::Corrupt {
                    path: path.display().to_string(),
                    line: e.line(),
                    message: e.to_string(),
                })?;
                return Ok(Some(kind.job));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path)(e)),
        }
        Ok(JobKind::ALL.into_iter().find(|k| k.own_files().iter().any(|f| root.join(f).exists())))
    }
}

/// What `evol.job` holds.
#[derive(Serialize, Deserialize)]
struct JobFile {
    job: JobKind,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.display().to_string(), source }
}

/// A run directory, locked for this command.
#[derive(Debug)]
pub struct OutputDir {
    root: PathBuf,
    /// The directory did not exist before [`OutputDir::prepare`].
    created: bool,
    lock: DirLock,
}

impl OutputDir {
    /// Creates the directory (and parents). With `fresh`, removes an earlier
    /// run's files (and only those). Otherwise a directory with a journal is
    /// a run to resume (its record files are rebuilt from the journal), and
    /// one with run files but no journal is refused.
    ///
    /// A directory holding another command's output ([`JobKind`]) is
    /// refused, `fresh` or not; the kind is recorded in a new one.
    pub fn prepare(root: &Path, fresh: bool, kind: JobKind) -> Result<OutputDir, StoreError> {
        if root.exists() && !root.is_dir() {
            return Err(StoreError::NotADirectory { path: root.display().to_string() });
        }
        let created = !root.exists();
        std::fs::create_dir_all(root).map_err(io_error(root))?;
        // Nothing is looked at or removed before the directory is ours.
        let lock = match DirLock::acquire(root) {
            Ok(lock) => lock,
            Err(e) => {
                if created {
                    // Only if still empty: another process may have begun
                    // to use it in the meantime.
                    let _ = std::fs::remove_file(root.join(crate::dir::LOCK));
                    let _ = std::fs::remove_dir(root);
                }
                return Err(e);
            }
        };
        if let Some(holds) = JobKind::of(root)? {
            if holds != kind {
                return Err(StoreError::OtherJob {
                    path: root.display().to_string(),
                    holds: holds.describe().to_string(),
                    wanted: kind.command().to_string(),
                });
            }
        }
        let resuming = root.join(JOURNAL).exists();
        for file in RUN_FILES.iter().chain(JOURNAL_FILES) {
            let path = root.join(file);
            if !path.exists() {
                continue;
            }
            if !fresh && !resuming {
                return Err(StoreError::NotEmpty { path: root.display().to_string(), file: file.to_string() });
            }
            if fresh {
                std::fs::remove_file(&path).map_err(io_error(&path))?;
            }
        }
        let job = root.join(JOB_FILE);
        if !job.exists() {
            let text = serde_json::to_string(&JobFile { job: kind }).expect("serializable") + "\n";
            write_atomic(&job, text.as_bytes())?;
        }
        Ok(OutputDir { root: root.to_path_buf(), created, lock })
    }

    /// Locks an existing directory of `kind` (one with a journal) for a
    /// command that rewrites it, such as `evol export` a run's.
    pub fn existing(root: &Path, kind: JobKind) -> Result<OutputDir, StoreError> {
        if !root.join(JOURNAL).is_file() {
            return Err(StoreError::NoJournal { path: root.display().to_string() });
        }
        OutputDir::prepare(root, false, kind)
    }

    /// Locks an existing directory of any kind with a journal (`evol
    /// batch cancel`: any job may have sent batches).
    pub fn existing_any(root: &Path) -> Result<OutputDir, StoreError> {
        let kind = JobKind::of(root)?.unwrap_or(JobKind::Run);
        OutputDir::existing(root, kind)
    }

    /// The kind of job the directory holds.
    pub fn kind(root: &Path) -> Result<Option<JobKind>, StoreError> {
        JobKind::of(root)
    }

    /// Undoes a run that failed before its first call: removes the journal
    /// it had just made, and the directory if [`OutputDir::prepare`] made it
    /// and nothing else is in it. Best effort: a file that cannot be
    /// removed stays.
    pub fn abandon(self) {
        for file in JOURNAL_FILES.iter().chain(&[JOB_FILE]) {
            let _ = std::fs::remove_file(self.root.join(file));
        }
        if self.created {
            let _ = std::fs::remove_file(self.lock.path());
            let _ = std::fs::remove_dir(&self.root);
        }
    }

    /// Opens (creating if needed) the directory's journal.
    pub fn journal(&self) -> Result<SqliteJournal, StoreError> {
        SqliteJournal::open(&self.path(JOURNAL))
    }

    /// Whether the directory holds a journal (an earlier run to resume).
    pub fn has_journal(&self) -> bool {
        self.root.join(JOURNAL).exists()
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A sink that appends records to the JSONL files.
    pub fn sink(&self) -> Result<JsonlSink, StoreError> {
        Ok(JsonlSink {
            evolved: Appender::create(&self.path(EVOLVED))?,
            rejected: Appender::create(&self.path(REJECTED))?,
            seeds: Mutex::new(None),
            seeds_path: self.path(SEED_ANSWERS),
        })
    }

    /// Writes `text`, atomically (temporary file + rename).
    pub fn write_text(&self, file: &str, text: &str) -> Result<(), StoreError> {
        write_atomic(&self.path(file), text.as_bytes())
    }

    /// Writes `value` as pretty JSON, atomically (temporary file + rename).
    pub fn write_json(&self, file: &str, value: &impl Serialize) -> Result<(), StoreError> {
        let mut text = serde_json::to_string_pretty(value).expect("serializable");
        text.push('\n');
        write_atomic(&self.path(file), text.as_bytes())
    }

    /// Writes the record files and the dataset from the journal: records
    /// in id order, the dataset shuffled by each row's order key, with the
    /// seeds (and their answers) when `include_seeds`. With `dedup`, a row
    /// that duplicates a row before it in the dataset's order is left out
    /// and listed in `duplicates.jsonl` with the row it duplicates, so the
    /// result never depends on the order replies came in. Each file is
    /// replaced atomically.
    pub fn export(
        &self,
        journal: &SqliteJournal,
        include_seeds: bool,
        dedup: Option<evol_dedup::Params>,
    ) -> Result<Exported, StoreError> {
        self.export_with(journal, include_seeds, dedup, |_| Ok(()))
    }

    /// [`OutputDir::export`], handing every dataset row it writes to
    /// `each` as well, with its lineage (for `evol export --to`, which
    /// writes the same rows in another layout).
    pub fn export_with(
        &self,
        journal: &SqliteJournal,
        include_seeds: bool,
        dedup: Option<evol_dedup::Params>,
        mut each: impl FnMut(&DatasetEntry) -> std::io::Result<()>,
    ) -> Result<Exported, StoreError> {
        // The rows' preference pairs (`--answers K`), beside the dataset.
        let pairs_path = self.path(PAIRS);
        let pairs_tmp = pairs_path.with_extension("tmp");
        let mut pairs: Option<BufWriter<File>> = None;
        let mut pair_count = 0usize;
        let mut each = |entry: &DatasetEntry| -> std::io::Result<()> {
            if let Some(line) = entry.pair_line() {
                let out = match &mut pairs {
                    Some(out) => out,
                    None => pairs.insert(BufWriter::new(File::create(&pairs_tmp)?)),
                };
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
                pair_count += 1;
            }
            each(entry)
        };
        let each: &mut dyn FnMut(&DatasetEntry) -> std::io::Result<()> = &mut each;
        for (file, kind) in RECORD_FILES {
            if matches!(kind, Kind::SeedAnswer | Kind::SeedScore) && journal.record_count(kind)? == 0 {
                continue;
            }
            self.write_lines(file, |out| {
                journal.for_each_record(kind, |body| {
                    out.write_all(body.as_bytes()).and_then(|_| out.write_all(b"\n")).map_err(Export::Io)
                })
            })?;
        }
        let mut pass = None;
        self.write_lines(DATASET, |out| {
            pass = Some(dataset_pass(journal, include_seeds, dedup, out, each)?);
            Ok(())
        })?;
        let (mut exported, duplicates) = pass.expect("filled");
        match pairs {
            Some(out) => {
                let file = out.into_inner().map_err(|e| io_error(&pairs_tmp)(e.into_error()))?;
                file.sync_all().map_err(io_error(&pairs_tmp))?;
                std::fs::rename(&pairs_tmp, &pairs_path).map_err(io_error(&pairs_path))?;
            }
            None => {
                let _ = std::fs::remove_file(&pairs_path);
            }
        }
        exported.pairs = pair_count;
        if dedup.is_some() {
            self.write_lines(DUPLICATES, |out| {
                for line in &duplicates {
                    serde_json::to_writer(&mut *out, line)?;
                    out.write_all(b"\n").map_err(Export::Io)?;
                }
                Ok(())
            })?;
        } else {
            let _ = std::fs::remove_file(self.path(DUPLICATES));
        }
        Ok(exported)
    }

    /// Writes a file through `fill`, atomically (temporary file + rename).
    fn write_lines(
        &self,
        file: &str,
        fill: impl FnOnce(&mut BufWriter<File>) -> Result<(), Export>,
    ) -> Result<(), StoreError> {
        let path = self.path(file);
        let tmp = path.with_extension("tmp");
        let mut out = BufWriter::new(File::create(&tmp).map_err(io_error(&tmp))?);
        match fill(&mut out) {
            Ok(()) => {}
            Err(Export::Io(e)) => return Err(io_error(&tmp)(e)),
            Err(Export::Journal(e)) => return Err(e),
            Err(Export::Record(e)) => return Err(StoreError::Record(e)),
        }
        let file = out.into_inner().map_err(|e| io_error(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_error(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_error(&path))
    }
}

/// The dataset's rows from a journal, as an export gives them (same order,
/// same rows left out), without writing the run's files: a snapshot of a
/// run that may still be going on, taken without its lock.
pub fn snapshot_rows(
    journal: &SqliteJournal,
    include_seeds: bool,
    dedup: Option<evol_dedup::Params>,
    mut each: impl FnMut(&DatasetEntry) -> std::io::Result<()>,
) -> Result<Exported, StoreError> {
    match dataset_pass(journal, include_seeds, dedup, &mut std::io::sink(), &mut each) {
        Ok((exported, _)) => Ok(exported),
        Err(Export::Io(e)) => Err(StoreError::Io { path: "the snapshot".into(), source: e }),
        Err(Export::Journal(e)) => Err(e),
        Err(Export::Record(e)) => Err(StoreError::Record(e)),
    }
}

/// One pass over the dataset's rows: each kept row is written to `out` as
/// a `dataset.jsonl` line and handed to `each`.
fn dataset_pass(
    journal: &SqliteJournal,
    include_seeds: bool,
    dedup: Option<evol_dedup::Params>,
    out: &mut dyn Write,
    each: &mut dyn FnMut(&DatasetEntry) -> std::io::Result<()>,
) -> Result<(Exported, Vec<DuplicateLine>), Export> {
    let mut exported = Exported::default();
    let mut duplicates = Vec::new();
    // With dedup, a first pass indexes every row; the second decides each
    // in order against the rows kept before it.
    let mut dedup = match dedup {
        Some(params) => Some(DatasetDedup::index(journal, include_seeds, params)?),
        None => None,
    };
    for_each_entry(journal, include_seeds, |entry| {
        let Some(entry) = entry else {
            exported.seeds_left_out += 1;
            return Ok(());
        };
        match &mut dedup {
            Some(dedup) => dedup.push(entry, out, &mut exported, &mut duplicates, each),
            None => write_row(out, &entry, &mut exported, each),
        }
    })?;
    if let Some(dedup) = &mut dedup {
        dedup.flush(out, &mut exported, &mut duplicates, each)?;
    }
    Ok((exported, duplicates))
}

/// Every dataset row in order (`None`: a seed left out), a conversation
/// only as its last accepted turn (which holds the turns before it). The
/// last turn of each seed is looked up first, only for a conversation run
/// (its identity says so), so other runs pay nothing for it.
fn for_each_entry(
    journal: &SqliteJournal,
    include_seeds: bool,
    mut f: impl FnMut(Option<DatasetEntry>) -> Result<(), Export>,
) -> Result<(), Export> {
    let conversation = journal.identity()?.is_some_and(|i| i.settings.conversation);
    let mut last_turns: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    if conversation {
        for id in journal.evolved_ids()? {
            if let Some((seed, round)) = id.rsplit_once(".r") {
                if let Ok(round) = round.parse::<u32>() {
                    let slot = last_turns.entry(seed.to_string()).or_default();
                    *slot = (*slot).max(round);
                }
            }
        }
    }
    journal.for_each_dataset_row(include_seeds, |source| {
        let entry = dataset_row(source, conversation)?;
        if let Some(e) = entry.as_ref().filter(|_| conversation) {
            // A seed's row, or a turn before the last, is held by the
            // conversation's last turn.
            let (seed, round) = match &e.lineage {
                Some(lineage) => (lineage.seed_id.as_str(), lineage.round),
                None => (e.id.as_str(), 0),
            };
            if round < last_turns.get(seed).copied().unwrap_or(0) {
                return Ok(());
            }
        }
        f(entry)
    })
}

/// An error while streaming an export.
enum Export {
    Io(std::io::Error),
    Journal(StoreError),
    Record(serde_json::Error),
}

impl From<StoreError> for Export {
    fn from(e: StoreError) -> Export {
        Export::Journal(e)
    }
}

impl From<serde_json::Error> for Export {
    fn from(e: serde_json::Error) -> Export {
        Export::Record(e)
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exported {
    /// Rows of `dataset.jsonl`.
    pub rows: usize,
    /// Rows left out as exact duplicates of an earlier row (after
    /// normalising), and as near duplicates.
    pub exact_duplicates: usize,
    pub near_duplicates: usize,
    /// Seeds (`--include-seeds`) left out because their answer failed or
    /// broke an answer rule.
    pub seeds_left_out: usize,
    /// Rows whose answer was cut off by the token limit (they are in the
    /// dataset, flagged `answer_truncated`).
    pub truncated: usize,
    /// Preference pairs written to `pairs.jsonl` (`--answers K`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pairs: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One line of `duplicates.jsonl`: a dataset row left out, and the row
/// before it that it duplicates, by id.
pub type DuplicateLine = evol_dedup::DuplicateLine<String>;

/// Rows waiting to be fingerprinted together, on every core.
const DEDUP_BATCH: usize = 8192;

/// A dataset row with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetEntry {
    pub id: String,
    /// The evolution's lineage; `None` for a seed (`--include-seeds`).
    pub lineage: Option<evol_core::Lineage>,
    /// The models that evolved and answered it.
    pub model: Option<String>,
    pub answer_model: Option<String>,
    pub row: DatasetRow,
    /// With `--answers K`: the row's kept answer against the worst one.
    pub pair: Option<RowPair>,
}

/// The worse side of a dataset row's preference pair.
#[derive(Debug, Clone, PartialEq)]
pub struct RowPair {
    pub rejected: String,
    /// The rule that rejected it, if one did (else it scored lower).
    pub rejected_reason: Option<evol_core::eliminate::Reason>,
    pub chosen_score: Option<f64>,
    pub rejected_score: Option<f64>,
    pub margin: Option<f64>,
}

impl DatasetEntry {
    /// The text duplicates are found by: a conversation's user turns
    /// together (follow-ups alone repeat across conversations), else the
    /// instruction.
    fn dedup_text(&self) -> std::borrow::Cow<'_, str> {
        if self.row.history.is_empty() {
            return self.row.instruction.as_str().into();
        }
        let users = self.row.history.iter().filter(|m| m.role == evol_llm::Role::User).map(|m| m.content.as_str());
        users.chain([self.row.instruction.as_str()]).collect::<Vec<_>>().join("\n").into()
    }

    /// The row's line of `pairs.jsonl`, if it has a pair.
    fn pair_line(&self) -> Option<PairLine<'_>> {
        let pair = self.pair.as_ref()?;
        Some(PairLine {
            id: &self.id,
            prompt: &self.row.instruction,
            chosen: self.row.output.as_deref().unwrap_or_default(),
            rejected: &pair.rejected,
            margin: pair.margin,
            chosen_score: pair.chosen_score,
            rejected_score: pair.rejected_score,
            rejected_reason: pair.rejected_reason,
            model: self.answer_model.as_deref(),
        })
    }
}

/// A line of `pairs.jsonl`: TRL's preference layout
/// ([`evol_io::layout::PREFERENCE`]), with what decided it.
#[derive(Serialize)]
struct PairLine<'a> {
    id: &'a str,
    prompt: &'a str,
    chosen: &'a str,
    rejected: &'a str,
    margin: Option<f64>,
    chosen_score: Option<f64>,
    rejected_score: Option<f64>,
    rejected_reason: Option<evol_core::eliminate::Reason>,
    model: Option<&'a str>,
}

/// A dataset row from its source in the journal, with its id; none for a
/// seed whose answer failed or was rejected by an answer rule (left out,
/// as a rejected evolution is).
fn dataset_row(source: DatasetSource<'_>, conversation: bool) -> Result<Option<DatasetEntry>, Export> {
    Ok(Some(match source {
        DatasetSource::Evolved(body) => {
            let e: Evolution = serde_json::from_str(body)?;
            let difficulty = e.difficulty.and_then(|d| d.score);
            let pair = evol_core::record::preference_pair(&e.answers).map(|(chosen, rejected, margin)| RowPair {
                rejected: rejected.response.clone().unwrap_or_default(),
                rejected_reason: rejected.rejected,
                chosen_score: chosen.score,
                rejected_score: rejected.score,
                margin,
            });
            DatasetEntry {
                id: e.lineage.id.clone(),
                lineage: Some(e.lineage),
                model: Some(e.model),
                answer_model: e.answer_model,
                row: DatasetRow {
                    instruction: e.instruction,
                    output: e.response,
                    output_reasoning: e.response_reasoning,
                    difficulty,
                    answer_truncated: e.answer_truncated,
                    ground_truth: (!e.constraints.is_empty())
                        .then(|| evol_constraints::GroundTruth::new(&e.constraints).to_label()),
                    history: e.history,
                },
                pair,
            }
        }
        DatasetSource::Seed { id, instruction, answer, score, turns } => {
            // A conversation run opens a seed that is a conversation at its
            // last user turn, after the turns before it.
            let seed = Seed {
                id: id.to_string(),
                instruction: instruction.to_string(),
                turns: match turns.filter(|_| conversation) {
                    Some(turns) => serde_json::from_str(turns)?,
                    None => Vec::new(),
                },
            };
            let (history, instruction) = seed.opening();
            // Without answering there is no answer record: the seed is an
            // instruction alone. With one, a failed or rejected answer
            // leaves the seed out.
            let (output, output_reasoning, answer_truncated) = match answer {
                Some(a) => {
                    let a = serde_json::from_str::<SeedAnswer>(a)?;
                    if a.response.is_none() || a.rejected.is_some() {
                        return Ok(None);
                    }
                    (a.response, a.response_reasoning, a.answer_truncated)
                }
                None => (None, None, false),
            };
            let difficulty = match score {
                Some(s) => serde_json::from_str::<SeedScore>(s)?.difficulty.score,
                None => None,
            };
            DatasetEntry {
                id: id.to_string(),
                lineage: None,
                model: None,
                answer_model: None,
                row: DatasetRow {
                    instruction: instruction.to_string(),
                    output,
                    output_reasoning,
                    difficulty,
                    answer_truncated,
                    ground_truth: None,
                    history: history.to_vec(),
                },
                pair: None,
            }
        }
    }))
}

/// The dataset's rows in order, each kept only if it duplicates no row
/// kept before it: every row indexed first (a frozen index), then each
/// decided in order among the earlier rows kept.
struct DatasetDedup {
    hasher: evol_dedup::Hasher,
    index: evol_dedup::FrozenIndex,
    ids: evol_dedup::Names,
    kept: Vec<bool>,
    /// The position of the next row to decide.
    next: u32,
    pending: Vec<DatasetEntry>,
}

impl DatasetDedup {
    /// Indexes every row of the dataset, in its order.
    fn index(
        journal: &SqliteJournal,
        include_seeds: bool,
        params: evol_dedup::Params,
    ) -> Result<DatasetDedup, StoreError> {
        let hasher = evol_dedup::Hasher::new(params);
        let mut builder = evol_dedup::FrozenBuilder::new(params);
        let mut ids = evol_dedup::Names::default();
        let mut texts: Vec<String> = Vec::new();
        let add = |texts: &mut Vec<String>, builder: &mut evol_dedup::FrozenBuilder| {
            for print in hasher.fingerprints(texts) {
                builder.push(&print);
            }
            texts.clear();
        };
        let result = for_each_entry(journal, include_seeds, |entry| {
            let Some(entry) = entry else { return Ok(()) };
            texts.push(entry.dedup_text().into_owned());
            ids.push(&entry.id);
            if texts.len() >= DEDUP_BATCH {
                add(&mut texts, &mut builder);
            }
            Ok::<(), Export>(())
        });
        match result {
            Ok(()) => {}
            Err(Export::Journal(e)) => return Err(e),
            Err(Export::Record(e)) => return Err(StoreError::Record(e)),
            Err(Export::Io(e)) => return Err(StoreError::Journal(e.to_string())),
        }
        add(&mut texts, &mut builder);
        let kept = vec![false; ids.len()];
        Ok(DatasetDedup { hasher, index: builder.finish(), ids, kept, next: 0, pending: Vec::new() })
    }

    fn push(
        &mut self,
        entry: DatasetEntry,
        out: &mut dyn Write,
        exported: &mut Exported,
        duplicates: &mut Vec<DuplicateLine>,
        each: &mut dyn FnMut(&DatasetEntry) -> std::io::Result<()>,
    ) -> Result<(), Export> {
        self.pending.push(entry);
        if self.pending.len() >= DEDUP_BATCH {
            self.flush(out, exported, duplicates, each)?;
        }
        Ok(())
    }

    fn flush(
        &mut self,
        out: &mut dyn Write,
        exported: &mut Exported,
        duplicates: &mut Vec<DuplicateLine>,
        each: &mut dyn FnMut(&DatasetEntry) -> std::io::Result<()>,
    ) -> Result<(), Export> {
        let owned: Vec<std::borrow::Cow<'_, str>> = self.pending.iter().map(DatasetEntry::dedup_text).collect();
        let texts: Vec<&str> = owned.iter().map(|t| t.as_ref()).collect();
        let prints = self.hasher.fingerprints(&texts);
        drop(texts);
        drop(owned);
        for (entry, print) in self.pending.drain(..).zip(prints) {
            let at = self.next;
            self.next += 1;
            let kept = &self.kept;
            match self.index.find_among(&print, at, |q| kept[q as usize]) {
                None => {
                    self.kept[at as usize] = true;
                    write_row(out, &entry, exported, each)?;
                }
                Some(found) => {
                    if found.exact {
                        exported.exact_duplicates += 1;
                    } else {
                        exported.near_duplicates += 1;
                    }
                    duplicates.push(DuplicateLine::new(entry.id, self.ids.get(found.index).to_string(), found));
                }
            }
        }
        Ok(())
    }
}

fn write_row(
    out: &mut dyn Write,
    entry: &DatasetEntry,
    exported: &mut Exported,
    each: &mut dyn FnMut(&DatasetEntry) -> std::io::Result<()>,
) -> Result<(), Export> {
    serde_json::to_writer(&mut *out, &DatasetLine { id: &entry.id, row: &entry.row })?;
    out.write_all(b"\n").map_err(Export::Io)?;
    each(entry).map_err(Export::Io)?;
    exported.rows += 1;
    exported.truncated += usize::from(entry.row.answer_truncated);
    Ok(())
}

/// A line of `dataset.jsonl`: the row under the id of the evolution (or
/// seed) it came from, so its lineage is found by id.
#[derive(Serialize)]
struct DatasetLine<'a> {
    id: &'a str,
    #[serde(flatten)]
    row: &'a DatasetRow,
}

/// One row of `dataset.jsonl` (its `id` apart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRow {
    pub instruction: String,
    pub output: Option<String>,
    /// The answering model's thinking trace, when it is a reasoning model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_reasoning: Option<String>,
    /// The difficulty score, when the run scored it (`--score-difficulty`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<f64>,
    /// The answer was cut off by the token limit (`--max-tokens`): kept,
    /// and said, so a dataset can leave it out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answer_truncated: bool,
    /// The constraints its answer keeps, as the `ground_truth` of
    /// open-instruct's IFEval verifier
    /// ([`evol_constraints::GroundTruth::to_label`]); absent without any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ground_truth: Option<String>,
    /// A conversation's turns before its last (`--turns`): the seed and its
    /// answer first; `instruction` and `output` are the last turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<evol_llm::Message>,
}

/// The record files, and the kind of record each holds.
const RECORD_FILES: [(&str, Kind); 4] = [
    (EVOLVED, Kind::Evolved),
    (REJECTED, Kind::Rejected),
    (SEED_ANSWERS, Kind::SeedAnswer),
    (SEED_SCORES, Kind::SeedScore),
];

/// Reads a whole JSONL file of `T`, naming the line of any bad record.
pub fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, StoreError> {
    let file = File::open(path).map_err(io_error(path))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_error(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(&line).map_err(|e| StoreError::Corrupt {
            path: path.display().to_string(),
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push(value);
    }
    Ok(out)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// A JSONL file that is appended one flushed line at a time, so a crash
/// loses at most the line being written.
struct Appender {
    path: PathBuf,
    writer: Mutex<BufWriter<File>>,
}

impl Appender {
    fn create(path: &Path) -> Result<Appender, StoreError> {
        // Never truncated: a finished file stays whole until the export
        // replaces it (atomically); a resumed run appends only records that
        // are new or changed, and the export rewrites the file from the
        // journal at the end of every attempt.
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io_error(path))?;
        Ok(Appender { path: path.to_path_buf(), writer: Mutex::new(BufWriter::new(file)) })
    }

    fn append(&self, value: &impl Serialize) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(value)?;
        line.push(b'\n');
        let mut w = self.writer.lock().unwrap();
        w.write_all(&line).and_then(|_| w.flush()).map_err(|e| format!("`{}`: {e}", self.path.display()).into())
    }
}

/// Loads the record files of an exported run (`evolved.jsonl`,
/// `rejected.jsonl`, `seeds.jsonl`) into a journal, with the seeds they name
/// marked done, so that exports can be merged like journals. Seed
/// instructions come from `seeds.jsonl` when the run included its seeds
/// (otherwise the dataset does not need them and they are left empty).
/// Returns how many seeds the records name.
pub fn import_export(dir: &Path, journal: &SqliteJournal, run_seed: u64) -> Result<u64, StoreError> {
    let mut seeds: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for (file, kind) in RECORD_FILES {
        let path = dir.join(file);
        if !path.exists() {
            if matches!(kind, Kind::SeedAnswer | Kind::SeedScore) {
                continue;
            }
            return Err(io_error(&path)(std::io::Error::new(std::io::ErrorKind::NotFound, "missing")));
        }
        let file = File::open(&path).map_err(io_error(&path))?;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io_error(&path))?;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let corrupt = |message: &str| StoreError::Corrupt {
                path: path.display().to_string(),
                line: n + 1,
                message: message.to_string(),
            };
            let record: serde_json::Value = serde_json::from_str(line).map_err(|e| corrupt(&e.to_string()))?;
            let id = record["id"].as_str().unwrap_or_default().to_string();
            if id.is_empty() {
                return Err(corrupt("a record without an `id`"));
            }
            match kind {
                Kind::SeedAnswer | Kind::SeedScore => {
                    seeds.insert(id.clone(), record["instruction"].as_str().unwrap_or_default().to_string());
                }
                _ => {
                    let seed = record["seed_id"].as_str().ok_or_else(|| corrupt("a record without a `seed_id`"))?;
                    seeds.entry(seed.to_string()).or_default();
                }
            }
            // The line as it was: an export is byte for byte what the
            // journal held.
            journal.put_record(kind, &id, line, order_key(run_seed, &id))?;
        }
    }
    let rows = seeds.into_iter().map(|(id, instruction)| {
        // No file positions survive an export: a hash of the id stands in
        // (it only orders a replay).
        let pos = order_key(0, &id);
        let order_key = order_key(run_seed, &id);
        Ok(SeedRow { pos, seed: Seed::new(id, instruction), place: "an export".into(), order_key })
    });
    let n = journal.load_seeds(rows)?;
    journal.mark_all_done()?;
    Ok(n)
}

/// The run's sink: every record goes to the journal (the source of truth)
/// and is appended to its JSONL file, to be read while the run goes on.
pub struct RunSink {
    journal: Arc<SqliteJournal>,
    files: JsonlSink,
    run_seed: u64,
}

impl RunSink {
    pub fn new(journal: Arc<SqliteJournal>, files: JsonlSink, run_seed: u64) -> RunSink {
        RunSink { journal, files, run_seed }
    }

    /// Into the journal; whether the record is new or changed (only then
    /// is it appended to its file: a resumed run replays what its files
    /// already hold).
    fn put(&self, kind: Kind, id: &str, record: &impl Serialize) -> Result<bool, SinkError> {
        let body = serde_json::to_string(record)?;
        Ok(self.journal.put_record(kind, id, &body, order_key(self.run_seed, id))?)
    }
}

impl Sink for RunSink {
    fn accepted(&self, evolution: &Evolution) -> Result<(), SinkError> {
        match self.put(Kind::Evolved, &evolution.lineage.id, evolution)? {
            true => self.files.accepted(evolution),
            false => Ok(()),
        }
    }

    fn rejected(&self, rejection: &Rejection) -> Result<(), SinkError> {
        match self.put(Kind::Rejected, &rejection.lineage.id, rejection)? {
            true => self.files.rejected(rejection),
            false => Ok(()),
        }
    }

    fn seed_answered(&self, answer: &SeedAnswer) -> Result<(), SinkError> {
        match self.put(Kind::SeedAnswer, &answer.id, answer)? {
            true => self.files.seed_answered(answer),
            false => Ok(()),
        }
    }

    /// Into the journal only; `seed_scores.jsonl` is written by the export.
    fn seed_scored(&self, score: &SeedScore) -> Result<(), SinkError> {
        self.put(Kind::SeedScore, &score.id, score).map(|_| ())
    }

    fn seed_done(&self, seed: &Seed) -> Result<(), SinkError> {
        Ok(self.journal.mark_done(&seed.id)?)
    }
}

/// Writes records to `evolved.jsonl`, `rejected.jsonl` and `seeds.jsonl`.
pub struct JsonlSink {
    evolved: Appender,
    rejected: Appender,
    /// Opened on the first seed answer, so runs without them leave no file.
    seeds: Mutex<Option<Appender>>,
    seeds_path: PathBuf,
}

impl Sink for JsonlSink {
    fn accepted(&self, evolution: &Evolution) -> Result<(), SinkError> {
        self.evolved.append(evolution)
    }

    fn rejected(&self, rejection: &Rejection) -> Result<(), SinkError> {
        self.rejected.append(rejection)
    }

    fn seed_answered(&self, answer: &SeedAnswer) -> Result<(), SinkError> {
        let mut seeds = self.seeds.lock().unwrap();
        if seeds.is_none() {
            *seeds = Some(Appender::create(&self.seeds_path).map_err(|e| e.to_string())?);
        }
        seeds.as_ref().unwrap().append(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evol_core::Lineage;

    fn evolution(id: &str, text: &str) -> Evolution {
        Evolution {
            lineage: Lineage {
                id: id.into(),
                seed_id: "s".into(),
                parent_id: "s".into(),
                round: 1,
                operation: "deepen".into(),
                data_format: None,
                nodes: None,
            },
            instruction: text.into(),
            instruction_reasoning: None,
            response: Some(format!("answer to {text}")),
            response_reasoning: None,
            model: "m".into(),
            answer_model: Some("m".into()),
            answer_truncated: false,
            usage: Default::default(),
            language: None,
            difficulty: None,
            answers: Vec::new(),
            ranking: None,
            improvements: Vec::new(),
            original_response: None,
            constraints: Vec::new(),
            history: Vec::new(),
        }
    }

    #[test]
    fn refuses_a_used_directory_unless_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::prepare(dir.path(), false, JobKind::Run).unwrap();
        out.sink().unwrap().accepted(&evolution("a.r1", "x")).unwrap();
        drop(out);
        let err = OutputDir::prepare(dir.path(), false, JobKind::Run).unwrap_err();
        assert!(err.to_string().contains("--fresh"), "{err}");
        std::fs::write(dir.path().join(JOURNAL), "").unwrap();
        assert!(OutputDir::prepare(dir.path(), false, JobKind::Run).unwrap().has_journal(), "a journal means resume");
        let held = OutputDir::prepare(dir.path(), false, JobKind::Run).unwrap();
        let err = OutputDir::prepare(dir.path(), false, JobKind::Run).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        drop(held);
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        OutputDir::prepare(dir.path(), true, JobKind::Run).unwrap();
        assert!(!dir.path().join(EVOLVED).exists());
        assert!(!dir.path().join(JOURNAL).exists());
        assert!(dir.path().join("notes.txt").exists(), "only run files are removed");
        let file = dir.path().join("notes.txt");
        assert!(matches!(OutputDir::prepare(&file, false, JobKind::Run), Err(StoreError::NotADirectory { .. })));
    }

    #[test]
    fn rows_with_a_worse_answer_give_preference_pairs_and_a_rerun_without_leaves_no_file() {
        use evol_core::eliminate::Reason;
        use evol_core::AnswerCandidate;
        let candidate = |text: &str, rejected: Option<Reason>, score: Option<f64>, kept: bool| AnswerCandidate {
            response: Some(text.into()),
            response_reasoning: None,
            rejected,
            detail: None,
            score,
            truncated: false,
            kept,
        };
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::prepare(dir.path(), false, JobKind::Run).unwrap();
        let journal = Arc::new(SqliteJournal::open(&out.path(JOURNAL)).unwrap());
        let seed =
            SeedRow { pos: 0, seed: Seed::new("s", "seed q"), place: "line 1".into(), order_key: order_key(9, "s") };
        journal.load_seeds([Ok(seed)].into_iter()).unwrap();
        let sink = RunSink::new(journal.clone(), out.sink().unwrap(), 9);
        let mut scored = evolution("a.r1", "q a");
        scored.response = Some("better".into());
        scored.answers = vec![candidate("worse", None, Some(2.0), false), candidate("better", None, Some(5.0), true)];
        let mut even = evolution("b.r1", "q b");
        even.answers = vec![candidate("x", None, Some(4.0), true), candidate("y", None, Some(4.0), false)];
        let mut refused = evolution("c.r1", "q c");
        refused.answers =
            vec![candidate("Sorry.", Some(Reason::AnswerSorry), None, false), candidate("ok", None, None, true)];
        for e in [&scored, &even, &refused] {
            sink.accepted(e).unwrap();
        }
        let exported = out.export(&journal, false, None).unwrap();
        assert_eq!(exported.pairs, 2, "equal scores make no pair");
        let text = std::fs::read_to_string(out.path(PAIRS)).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let a = lines.iter().find(|l| l["id"] == "a.r1").unwrap();
        let [prompt, chosen, rejected] = evol_io::layout::PREFERENCE;
        assert_eq!((&a[prompt], &a[chosen], &a[rejected]), (&"q a".into(), &"better".into(), &"worse".into()));
        assert_eq!(a["margin"], 3.0);
        let c = lines.iter().find(|l| l["id"] == "c.r1").unwrap();
        assert_eq!(
            (&c[rejected], &c["rejected_reason"], &c["margin"]),
            (&"Sorry.".into(), &"answer_sorry".into(), &serde_json::Value::Null)
        );
        // Exported again from a journal with no pairs: no stale file left.
        let dir2 = tempfile::tempdir().unwrap();
        std::fs::copy(out.path(PAIRS), dir2.path().join(PAIRS)).unwrap();
        let out2 = OutputDir::prepare(dir2.path(), false, JobKind::Run).unwrap();
        let journal2 = SqliteJournal::open(&out2.path(JOURNAL)).unwrap();
        assert_eq!(out2.export(&journal2, false, None).unwrap().pairs, 0);
        assert!(!out2.path(PAIRS).exists());
    }

    #[test]
    fn export_is_the_same_whatever_the_completion_order() {
        let build = |order: &[&str]| {
            let dir = tempfile::tempdir().unwrap();
            let out = OutputDir::prepare(dir.path(), false, JobKind::Run).unwrap();
            let journal = Arc::new(SqliteJournal::open(&out.path(JOURNAL)).unwrap());
            let seed = SeedRow {
                pos: 0,
                seed: Seed::new("s", "seed q"),
                place: "line 1".into(),
                order_key: order_key(9, "s"),
            };
            journal.load_seeds([Ok(seed)].into_iter()).unwrap();
            let sink = RunSink::new(journal.clone(), out.sink().unwrap(), 9);
            for id in order {
                sink.accepted(&evolution(id, &format!("q {id}"))).unwrap();
            }
            assert_eq!(out.export(&journal, true, None).unwrap().rows, order.len() + 1);
            assert!(!out.path(DUPLICATES).exists());
            assert!(!out.path(SEED_ANSWERS).exists(), "no seed answers, no file");
            let evolved = std::fs::read_to_string(out.path(EVOLVED)).unwrap();
            assert!(evolved.find("a.r1").unwrap() < evolved.find("d.r1").unwrap());
            std::fs::read_to_string(out.path(DATASET)).unwrap()
        };
        let a = build(&["a.r1", "b.r1", "c.r1", "d.r1"]);
        let b = build(&["d.r1", "b.r1", "a.r1", "c.r1"]);
        assert_eq!(a, b);
        let rows: Vec<DatasetRow> = a.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let plain = |instruction: &str, output: Option<&str>| DatasetRow {
            instruction: instruction.into(),
            output: output.map(String::from),
            output_reasoning: None,
            difficulty: None,
            answer_truncated: false,
            ground_truth: None,
            history: Vec::new(),
        };
        assert!(rows.contains(&plain("seed q", None)));
        assert!(rows.contains(&plain("q c.r1", Some("answer to q c.r1"))));
    }

    #[test]
    fn duplicates_across_seeds_leave_the_dataset_in_its_order_whatever_the_completion_order() {
        let long: Vec<String> = (0..40).map(|i| format!("word{i}")).collect();
        let near = format!("{} changed", long[..39].join(" "));
        let texts = [
            ("a.r1", "Name a fruit.".to_string()),
            ("b.r1", "NAME a fruit!".to_string()),
            ("c.r1", long.join(" ")),
            ("d.r1", near),
            ("e.r1", "Something else entirely.".to_string()),
        ];
        let build = |order: &[usize]| {
            let dir = tempfile::tempdir().unwrap();
            let out = OutputDir::prepare(dir.path(), false, JobKind::Run).unwrap();
            let journal = Arc::new(SqliteJournal::open(&out.path(JOURNAL)).unwrap());
            let sink = RunSink::new(journal.clone(), out.sink().unwrap(), 9);
            for &i in order {
                sink.accepted(&evolution(texts[i].0, &texts[i].1)).unwrap();
            }
            let exported = out.export(&journal, false, Some(evol_dedup::Params::default())).unwrap();
            assert_eq!(exported, Exported { rows: 3, exact_duplicates: 1, near_duplicates: 1, ..Exported::default() });
            let read = |f| std::fs::read_to_string(out.path(f)).unwrap();
            assert_eq!(read(EVOLVED).lines().count(), 5, "the records keep every accepted evolution");
            (read(DATASET), read(DUPLICATES))
        };
        let (dataset, duplicates) = build(&[0, 1, 2, 3, 4]);
        assert_eq!(build(&[4, 3, 2, 1, 0]), (dataset.clone(), duplicates.clone()));
        let lines: Vec<DuplicateLine> = duplicates.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        for line in &lines {
            // The row kept is the one first in the dataset's order.
            assert!(order_key(9, &line.kept) < order_key(9, &line.removed), "{line:?}");
            let pair = [line.kept.as_str(), line.removed.as_str()];
            assert!(
                pair.contains(&"a.r1") && pair.contains(&"b.r1") || pair.contains(&"c.r1") && pair.contains(&"d.r1")
            );
            assert_eq!(line.exact, pair.contains(&"a.r1"));
        }
    }

    #[test]
    fn corrupt_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, "{\"instruction\":\"a\",\"output\":null}\n{bad\n").unwrap();
        let err = read_jsonl::<DatasetRow>(&path).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn a_directory_belongs_to_the_command_that_made_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::prepare(dir.path(), false, JobKind::Score).unwrap();
        out.write_text(SCORED, "{}\n").unwrap();
        drop(out);
        assert_eq!(JobKind::of(dir.path()).unwrap(), Some(JobKind::Score));
        for fresh in [false, true] {
            let err = OutputDir::prepare(dir.path(), fresh, JobKind::Run).unwrap_err();
            assert!(matches!(err, StoreError::OtherJob { .. }), "{err}");
            assert!(err.to_string().contains("the scores of `evol score`"), "{err}");
            assert!(dir.path().join(SCORED).exists(), "nothing removed, fresh {fresh}");
        }
        assert!(OutputDir::prepare(dir.path(), true, JobKind::Score).is_ok(), "its own command may start over");

        // A directory of an older evol, without the record, is known by its files.
        let old = tempfile::tempdir().unwrap();
        std::fs::write(old.path().join(EVOLVED), "").unwrap();
        std::fs::write(old.path().join(JOURNAL), "").unwrap();
        assert_eq!(JobKind::of(old.path()).unwrap(), Some(JobKind::Run));
        let err = OutputDir::prepare(old.path(), true, JobKind::Answer).unwrap_err();
        assert!(err.to_string().contains("a run of `evol run`") && err.to_string().contains("`evol answer`"), "{err}");
        assert!(old.path().join(JOURNAL).exists());
    }

    #[test]
    fn seed_answers_pass_the_answer_rules_and_truncation_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::prepare(dir.path(), false, JobKind::Run).unwrap();
        let journal = Arc::new(SqliteJournal::open(&out.path(JOURNAL)).unwrap());
        let seeds = ["ok", "sorry", "failed", "cut"].map(|id| {
            Ok(SeedRow {
                pos: 0,
                seed: Seed::new(id, format!("q {id}")),
                place: "line 1".into(),
                order_key: order_key(9, id),
            })
        });
        journal
            .load_seeds(seeds.into_iter().enumerate().map(|(i, s)| s.map(|s| SeedRow { pos: i as i64, ..s })))
            .unwrap();
        let sink = RunSink::new(journal.clone(), out.sink().unwrap(), 9);
        let answer = |id: &str, response: Option<&str>, rejected: Option<&str>, truncated: bool| SeedAnswer {
            id: id.into(),
            instruction: format!("q {id}"),
            response: response.map(String::from),
            response_reasoning: None,
            error: response.is_none().then(|| "HTTP 500".to_string()),
            model: "m".into(),
            usage: Default::default(),
            rejected: rejected.map(String::from),
            detail: None,
            answer_truncated: truncated,
        };
        sink.seed_answered(&answer("ok", Some("fine"), None, false)).unwrap();
        sink.seed_answered(&answer("sorry", Some("Sorry, I cannot."), Some("answer_sorry"), false)).unwrap();
        sink.seed_answered(&answer("failed", None, None, false)).unwrap();
        sink.seed_answered(&answer("cut", Some("half an ans"), None, true)).unwrap();
        let exported = out.export(&journal, true, None).unwrap();
        assert_eq!((exported.rows, exported.seeds_left_out, exported.truncated), (2, 2, 1));
        let dataset = std::fs::read_to_string(out.path(DATASET)).unwrap();
        assert!(!dataset.contains("Sorry") && !dataset.contains("q failed"), "{dataset}");
        assert!(
            dataset.lines().any(|l| l.contains("half an ans") && l.contains("\"answer_truncated\":true")),
            "{dataset}"
        );
        assert!(dataset.lines().any(|l| l.contains("fine") && !l.contains("answer_truncated")), "{dataset}");
    }
}
