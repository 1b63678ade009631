//! The run's output directory: records appended as they are decided, the
//! merged dataset and the statistics written at the end.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use evol_core::{Evolution, Rejection, Seed, SeedAnswer, Sink, SinkError};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Accepted evolutions, one JSON object per line.
pub const EVOLVED: &str = "evolved.jsonl";
/// Failed evolutions with their reason.
pub const REJECTED: &str = "rejected.jsonl";
/// The seeds' own answers (only when seeds join the dataset).
pub const SEED_ANSWERS: &str = "seeds.jsonl";
/// The final merged dataset.
pub const DATASET: &str = "dataset.jsonl";
/// Run statistics.
pub const STATS: &str = "stats.json";
/// The journal of committed calls (SQLite, with its `-wal` and `-shm`).
pub const JOURNAL: &str = "journal.sqlite";

const RUN_FILES: &[&str] = &[EVOLVED, REJECTED, SEED_ANSWERS, DATASET, STATS];
const JOURNAL_FILES: &[&str] = &[JOURNAL, "journal.sqlite-wal", "journal.sqlite-shm"];

/// An output problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("`{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a directory")]
    NotADirectory { path: String },
    #[error("`{path}` already holds the output of a run without a journal (`{file}`); pass --fresh to replace it, or choose another directory")]
    NotEmpty { path: String, file: String },
    #[error("`{path}` line {line}: {message}")]
    Corrupt { path: String, line: usize, message: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io { path: path.display().to_string(), source }
}

/// An output directory ready for a run.
#[derive(Debug, Clone)]
pub struct OutputDir {
    root: PathBuf,
}

impl OutputDir {
    /// Creates the directory (and parents). With `fresh`, removes an earlier
    /// run's files (and only those). Otherwise a directory with a journal is
    /// a run to resume (its record files are rebuilt from the journal), and
    /// one with run files but no journal is refused.
    pub fn prepare(root: &Path, fresh: bool) -> Result<OutputDir, OutputError> {
        if root.exists() && !root.is_dir() {
            return Err(OutputError::NotADirectory { path: root.display().to_string() });
        }
        std::fs::create_dir_all(root).map_err(io_error(root))?;
        let resuming = root.join(JOURNAL).exists();
        for file in RUN_FILES.iter().chain(JOURNAL_FILES) {
            let path = root.join(file);
            if !path.exists() {
                continue;
            }
            if !fresh && !resuming {
                return Err(OutputError::NotEmpty { path: root.display().to_string(), file: file.to_string() });
            }
            if fresh {
                std::fs::remove_file(&path).map_err(io_error(&path))?;
            }
        }
        Ok(OutputDir { root: root.to_path_buf() })
    }

    /// Whether the directory holds a journal (an earlier run to resume).
    pub fn has_journal(&self) -> bool {
        self.root.join(JOURNAL).exists()
    }

    /// Rewrites the record files in id order, so that a run's files do not
    /// depend on the order in which replies arrived.
    pub fn sort_records(&self) -> Result<(), OutputError> {
        for file in [EVOLVED, REJECTED, SEED_ANSWERS] {
            let path = self.path(file);
            if !path.exists() {
                continue;
            }
            let mut records: Vec<serde_json::Value> = read_jsonl(&path)?;
            records.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            let mut text = Vec::new();
            for r in &records {
                serde_json::to_writer(&mut text, r).expect("serializable");
                text.push(b'\n');
            }
            write_atomic(&path, &text)?;
        }
        Ok(())
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A sink that appends records to the JSONL files.
    pub fn sink(&self) -> Result<JsonlSink, OutputError> {
        Ok(JsonlSink {
            evolved: Appender::create(&self.path(EVOLVED))?,
            rejected: Appender::create(&self.path(REJECTED))?,
            seeds: Mutex::new(None),
            seeds_path: self.path(SEED_ANSWERS),
        })
    }

    /// Writes `value` as pretty JSON, atomically (temporary file + rename).
    pub fn write_json(&self, file: &str, value: &impl Serialize) -> Result<(), OutputError> {
        let mut text = serde_json::to_string_pretty(value).expect("serializable");
        text.push('\n');
        write_atomic(&self.path(file), text.as_bytes())
    }

    /// Builds `dataset.jsonl` from the accepted evolutions (and, when
    /// `seeds` is given, the seeds with their answers), shuffled with a
    /// generator keyed by `run_seed` so the same run gives the same order.
    /// Returns the number of rows.
    pub fn write_dataset(&self, seeds: Option<&[Seed]>, run_seed: u64) -> Result<usize, OutputError> {
        let mut rows: Vec<(String, DatasetRow)> = Vec::new();
        for evolution in read_jsonl::<Evolution>(&self.path(EVOLVED))? {
            rows.push((evolution.id, DatasetRow { instruction: evolution.instruction, output: evolution.response }));
        }
        if let Some(seeds) = seeds {
            let answers_path = self.path(SEED_ANSWERS);
            let mut answers: HashMap<String, Option<String>> = HashMap::new();
            if answers_path.exists() {
                for a in read_jsonl::<SeedAnswer>(&answers_path)? {
                    answers.insert(a.id, a.response);
                }
            }
            for seed in seeds {
                let output = answers.get(&seed.id).cloned().flatten();
                rows.push((seed.id.clone(), DatasetRow { instruction: seed.instruction.clone(), output }));
            }
        }
        // Sort first: the files are in completion order, which varies.
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.shuffle(&mut evol_core::rng::keyed_rng(run_seed, &[b"dataset-shuffle"]));
        let mut text = Vec::new();
        for (_, row) in &rows {
            serde_json::to_writer(&mut text, row).expect("serializable");
            text.push(b'\n');
        }
        write_atomic(&self.path(DATASET), &text)?;
        Ok(rows.len())
    }
}

/// One row of `dataset.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRow {
    pub instruction: String,
    pub output: Option<String>,
}

/// Reads a whole JSONL file of `T`, naming the line of any bad record.
pub fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, OutputError> {
    let file = File::open(path).map_err(io_error(path))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_error(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(&line).map_err(|e| OutputError::Corrupt {
            path: path.display().to_string(),
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push(value);
    }
    Ok(out)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
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
    fn create(path: &Path) -> Result<Appender, OutputError> {
        // Truncated: on a resumed run the journal replays every record.
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(path).map_err(io_error(path))?;
        Ok(Appender { path: path.to_path_buf(), writer: Mutex::new(BufWriter::new(file)) })
    }

    fn append(&self, value: &impl Serialize) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(value)?;
        line.push(b'\n');
        let mut w = self.writer.lock().unwrap();
        w.write_all(&line).and_then(|_| w.flush()).map_err(|e| format!("`{}`: {e}", self.path.display()).into())
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
    use evol_core::Operation;

    fn evolution(id: &str, text: &str) -> Evolution {
        Evolution {
            id: id.into(),
            seed_id: "s".into(),
            parent_id: "s".into(),
            round: 1,
            operation: Operation::Deepen,
            data_format: None,
            instruction: text.into(),
            response: Some(format!("answer to {text}")),
            model: "m".into(),
            answer_model: Some("m".into()),
            usage: Default::default(),
        }
    }

    #[test]
    fn refuses_a_used_directory_unless_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::prepare(dir.path(), false).unwrap();
        out.sink().unwrap().accepted(&evolution("a.r1", "x")).unwrap();
        let err = OutputDir::prepare(dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("--fresh"), "{err}");
        std::fs::write(dir.path().join(JOURNAL), "").unwrap();
        assert!(OutputDir::prepare(dir.path(), false).unwrap().has_journal(), "a journal means resume");
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        OutputDir::prepare(dir.path(), true).unwrap();
        assert!(!dir.path().join(EVOLVED).exists());
        assert!(!dir.path().join(JOURNAL).exists());
        assert!(dir.path().join("notes.txt").exists(), "only run files are removed");
        let file = dir.path().join("notes.txt");
        assert!(matches!(OutputDir::prepare(&file, false), Err(OutputError::NotADirectory { .. })));
    }

    #[test]
    fn dataset_is_the_same_whatever_the_completion_order() {
        let build = |order: &[&str]| {
            let dir = tempfile::tempdir().unwrap();
            let out = OutputDir::prepare(dir.path(), false).unwrap();
            let sink = out.sink().unwrap();
            for id in order {
                sink.accepted(&evolution(id, &format!("q {id}"))).unwrap();
            }
            let seeds = vec![Seed { id: "s".into(), instruction: "seed q".into() }];
            assert_eq!(out.write_dataset(Some(&seeds), 9).unwrap(), order.len() + 1);
            std::fs::read_to_string(out.path(DATASET)).unwrap()
        };
        let a = build(&["a.r1", "b.r1", "c.r1", "d.r1"]);
        let b = build(&["d.r1", "b.r1", "a.r1", "c.r1"]);
        assert_eq!(a, b);
        let rows: Vec<DatasetRow> = a.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(rows.contains(&DatasetRow { instruction: "seed q".into(), output: None }));
        assert!(rows.contains(&DatasetRow { instruction: "q c.r1".into(), output: Some("answer to q c.r1".into()) }));
    }

    #[test]
    fn corrupt_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, "{\"instruction\":\"a\",\"output\":null}\n{bad\n").unwrap();
        let err = read_jsonl::<DatasetRow>(&path).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
