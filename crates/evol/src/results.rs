//! Parts of the result files that more than one job reads, as types that
//! are written and read back as themselves.

use std::path::{Path, PathBuf};

use evol_core::cost::{Caps, Prices};
use evol_core::stats::Tally;
use evol_core::{Method, RunStats};
use evol_store::journal::CallTotals;
use evol_store::output::STATS;
use evol_store::{Exported, RunIdentity, RunState, SqliteJournal};
use serde::{Deserialize, Serialize};

pub use crate::backend::ServerLimits;
use crate::settings::Backend;

/// Where a run's models were served, as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// One OpenAI-compatible server (`--endpoint`).
    Server,
    /// Several servers (`--endpoint` more than once, or a config file).
    Servers,
    /// The embedded llama.cpp engine.
    Embedded,
}

impl BackendKind {
    pub fn of(backend: &Backend) -> BackendKind {
        match backend {
            Backend::Embedded(_) => BackendKind::Embedded,
            Backend::Servers(s) if s.endpoints.len() > 1 => BackendKind::Servers,
            Backend::Servers(_) => BackendKind::Server,
        }
    }
}

/// `stats.json`'s `models`: the model of each role of a run, and where
/// they ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunModels {
    /// Where, in words (URLs without credentials), for a reader.
    #[serde(default)]
    pub endpoint: String,
    /// Where, as data (absent from the stats of older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    #[serde(default)]
    pub evolve: String,
    #[serde(default)]
    pub judge: String,
    #[serde(default)]
    pub answer: String,
}

impl RunModels {
    /// Where the models ran: as recorded, else (a run made before it was
    /// recorded) read from the words older runs wrote.
    pub fn backend(&self) -> Option<BackendKind> {
        self.backend.or(match self.endpoint.as_str() {
            "" => None,
            "the embedded engine" => Some(BackendKind::Embedded),
            e if e.ends_with(" servers") => Some(BackendKind::Servers),
            _ => Some(BackendKind::Server),
        })
    }
}

/// A run's `stats.json`: what `evol run` (and `evol merge`) wrote about it,
/// read back as itself by the dataset card, the report and merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub evol_version: String,
    /// False when the run stopped early (error, interruption, budget cap).
    pub completed: bool,
    pub state: RunState,
    #[serde(flatten)]
    pub run: RunStats,
    pub input: RunInput,
    /// The dataset as written: its rows, and the rows left out as exact or
    /// near duplicates of earlier rows (listed in `duplicates.jsonl`).
    pub dataset: Exported,
    pub models: RunModels,
    pub budget: RunBudget,
    /// The method: every setting that changes the results.
    pub settings: Method,
    /// How this attempt ran: the settings that may change between attempts,
    /// as used.
    pub execution: RunExecution,
    /// Per server (with `--endpoint`): calls, failures, the adapted
    /// concurrency at the end, and why a server is out if it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointReport>,
    /// Every call the journal holds, of this attempt and the earlier ones,
    /// with their retries and tokens: what was paid, as `evol status` shows
    /// it (calls whose questions no later attempt asked again included).
    pub journal: CallTotals,
    /// The embedded engine's activity: decode steps, the mean number of
    /// sequences in its batch, tokens computed, busy and decode seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<serde_json::Value>,
    /// What makes the run's results what they are: lets `evol merge` check
    /// exported shards without their journals.
    pub identity: RunIdentity,
    /// The command line that ran it (the words after `evol`), secrets and
    /// URL credentials removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

impl RunReport {
    /// Reads `DIR/stats.json` as a run's report: `None` when there is none,
    /// an error naming the file when it is not one.
    pub fn read(dir: &Path) -> Result<Option<RunReport>, ResultFileError> {
        read_file(&dir.join(STATS))
    }
}

/// Where a run's seeds came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInput {
    pub file: String,
    pub seeds: usize,
    pub shard: Option<String>,
    pub skipped_invalid: usize,
    pub skipped_empty: usize,
    /// How the seeds held their instruction (Alpaca, ShareGPT, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
}

/// The caps and prices a run was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunBudget {
    pub caps: Caps,
    pub prices: Prices,
}

/// How one attempt of a run ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunExecution {
    /// The most calls in flight in all.
    pub concurrency: usize,
    /// Each server's limits (none for the embedded engine).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_api: Option<bool>,
    pub retry_failed: bool,
}

/// One server of a run at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointReport {
    pub url: String,
    pub requests: u64,
    pub failures: u64,
    pub concurrency: usize,
    pub out: Option<String>,
}

/// What every job that calls models reports of its calls (flattened into
/// its `stats.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallSummary {
    /// Calls answered from the journal (made by an earlier attempt).
    pub replayed_calls: u64,
    /// This attempt's calls.
    pub total: Tally,
    /// Every call the journal holds, of every attempt.
    pub journal: CallTotals,
}

impl CallSummary {
    /// The summary of a job's statistics and its journal's calls.
    pub fn of(stats: &RunStats, journal: &SqliteJournal) -> Result<CallSummary, evol_store::StoreError> {
        Ok(CallSummary {
            replayed_calls: stats.replayed_calls,
            total: stats.total.clone(),
            journal: journal.call_totals()?,
        })
    }
}

/// A result file that is there but cannot be read as what it should hold.
#[derive(Debug, thiserror::Error)]
pub enum ResultFileError {
    #[error("cannot read `{path}`: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("`{path}` is not what evol writes there ({source}); rerun the command that made it to write it again")]
    Invalid { path: PathBuf, source: serde_json::Error },
}

/// Reads a result file as its type: `None` when it does not exist.
pub fn read_file<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ResultFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ResultFileError::Io { path: path.to_path_buf(), source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| ResultFileError::Invalid { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_read_back_as_written_and_older_runs_are_understood() {
        let models = RunModels {
            endpoint: "http://127.0.0.1:8000/v1".into(),
            backend: Some(BackendKind::Servers),
            evolve: "通义千问".into(),
            judge: "j".into(),
            answer: "a".into(),
        };
        let back: RunModels = serde_json::from_value(serde_json::to_value(&models).unwrap()).unwrap();
        assert_eq!(back, models);
        assert_eq!(back.backend(), Some(BackendKind::Servers), "the record wins over the words");
        let older = |endpoint: &str| RunModels { endpoint: endpoint.into(), ..RunModels::default() }.backend();
        assert_eq!(older("the embedded engine"), Some(BackendKind::Embedded));
        assert_eq!(older("3 servers"), Some(BackendKind::Servers));
        assert_eq!(older("http://h/v1"), Some(BackendKind::Server));
        assert_eq!(older(""), None);
    }
}
