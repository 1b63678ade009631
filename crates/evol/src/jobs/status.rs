//! A run's progress, read from its journal: safe while the run is going
//! (the journal is in WAL mode and this only reads).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use anyhow::anyhow;
use evol_core::Role;
use evol_store::journal::FILE as JOURNAL;
use evol_store::{CallTotals, Kind, RunState, SqliteJournal};
use serde::Serialize;

/// Where a run stands (`evol status`, and `--json` as is).
#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    pub output: String,
    /// running, completed, interrupted, capped or failed.
    pub state: RunState,
    /// Seconds since the journal was last written.
    pub idle_seconds: Option<f64>,
    pub seeds: u64,
    pub seeds_done: u64,
    pub shard: Option<String>,
    pub rounds: u64,
    /// Evolution steps decided (accepted and rejected) of `seeds * rounds`.
    pub steps: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub seed_answers: u64,
    pub calls: CallTotals,
    /// Provider batches (`--batch-api`) not yet settled.
    pub batches_in_flight: usize,
    pub models: BTreeMap<Role, String>,
    /// The whole journal was read and found sound (`--check`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub checked: bool,
}

impl RunStatus {
    /// The steps a finished run decides.
    pub fn total_steps(&self) -> u64 {
        self.seeds * self.rounds
    }

    /// The model that plays `role`, or `?` when the run records none.
    pub fn model(&self, role: Role) -> &str {
        self.models.get(&role).map_or("?", String::as_str)
    }
}

/// Reads where the run in `output` stands, without writing to it.
/// A run's status; with `check`, after reading its whole journal and
/// checking every page and index (a damaged journal is the error).
pub fn status(output: &Path, check: bool) -> anyhow::Result<RunStatus> {
    let journal = SqliteJournal::open_read_only(output)?;
    if check {
        journal.check_integrity()?;
    }
    let identity = journal.identity()?.ok_or_else(|| anyhow!("`{}`: the run never started", output.display()))?;
    let accepted = journal.record_count(Kind::Evolved)?;
    let rejected = journal.record_count(Kind::Rejected)?;
    let modified = [JOURNAL.to_string(), format!("{JOURNAL}-wal")]
        .iter()
        .filter_map(|f| std::fs::metadata(output.join(f)).and_then(|m| m.modified()).ok())
        .max();
    Ok(RunStatus {
        output: output.display().to_string(),
        state: journal.state()?.unwrap_or(RunState::Running),
        idle_seconds: modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
        seeds: journal.seed_count()?,
        seeds_done: journal.seeds_done()?,
        shard: identity.shard.map(|s| s.to_string()),
        rounds: u64::from(identity.settings.rounds),
        steps: accepted + rejected,
        accepted,
        rejected,
        seed_answers: journal.record_count(Kind::SeedAnswer)?,
        calls: journal.call_totals()?,
        batches_in_flight: journal.unsettled_batches()?.len(),
        models: identity.models,
        checked: check,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_a_run_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", status(dir.path(), false).unwrap_err());
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }
}
