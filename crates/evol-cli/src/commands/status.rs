//! `evol status OUT`: a run's progress, read from its journal (safe while
//! the run is going: the journal is in WAL mode and this only reads).

use std::fmt::Write as _;
use std::time::SystemTime;

use anyhow::anyhow;
use evol_core::Role;
use evol_store::journal::FILE as JOURNAL;
use evol_store::{CallTotals, Kind, RunIdentity, RunState, SqliteJournal};
use serde::Serialize;

use crate::cli::StatusArgs;
use evol::observe::human;

#[derive(Serialize)]
struct Status {
    output: String,
    /// running, completed, interrupted, capped or failed.
    state: RunState,
    /// Seconds since the journal was last written.
    idle_seconds: Option<f64>,
    seeds: u64,
    seeds_done: u64,
    shard: Option<String>,
    rounds: u64,
    steps: u64,
    accepted: u64,
    rejected: u64,
    seed_answers: u64,
    calls: CallTotals,
    /// Provider batches (`--batch-api`) not yet settled.
    batches_in_flight: usize,
    models: std::collections::BTreeMap<Role, String>,
}

/// The stored identity of a run.
pub fn identity(journal: &SqliteJournal, dir: &std::path::Path) -> anyhow::Result<RunIdentity> {
    journal.identity()?.ok_or_else(|| anyhow!("`{}`: the run never started", dir.display()))
}

pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let journal = SqliteJournal::open_read_only(&args.output)?;
    let identity = identity(&journal, &args.output)?;
    let rounds = u64::from(identity.settings.rounds);
    let accepted = journal.record_count(Kind::Evolved)?;
    let rejected = journal.record_count(Kind::Rejected)?;
    let modified = [JOURNAL.to_string(), format!("{JOURNAL}-wal")]
        .iter()
        .filter_map(|f| std::fs::metadata(args.output.join(f)).and_then(|m| m.modified()).ok())
        .max();
    let seeds = journal.seed_count()?;
    let status = Status {
        output: args.output.display().to_string(),
        state: journal.state()?.unwrap_or(RunState::Running),
        idle_seconds: modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
        seeds,
        seeds_done: journal.seeds_done()?,
        shard: identity.shard.map(|s| s.to_string()),
        rounds,
        steps: accepted + rejected,
        accepted,
        rejected,
        seed_answers: journal.record_count(Kind::SeedAnswer)?,
        calls: journal.call_totals()?,
        batches_in_flight: journal.unsettled_batches()?.len(),
        models: identity.models.clone(),
    };
    if args.json {
        return crate::stdout(&(serde_json::to_string_pretty(&status)? + "\n"));
    }
    let mut out = String::new();
    let percent = |a: u64, b: u64| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
    let total_steps = status.seeds * rounds;
    let mut state = status.state.to_string();
    if status.state == RunState::Running {
        if let Some(idle) = status.idle_seconds {
            state = format!(
                "running (last write {} ago; a run killed without a clean exit also shows as running)",
                human(std::time::Duration::from_secs_f64(idle))
            );
        }
    }
    let _ = writeln!(out, "run:     {} ({state})", status.output);
    if let Some(shard) = &status.shard {
        let _ = writeln!(out, "shard:   {shard}");
    }
    let _ = writeln!(
        out,
        "seeds:   {} of {} done ({:.1}%)",
        status.seeds_done,
        status.seeds,
        percent(status.seeds_done, status.seeds)
    );
    let _ = writeln!(
        out,
        "steps:   {} of {total_steps} ({:.1}%): {} accepted, {} rejected",
        status.steps,
        percent(status.steps, total_steps),
        status.accepted,
        status.rejected
    );
    let c = status.calls;
    let _ = writeln!(
        out,
        "calls:   {} committed, {} failed, {} retries; {} prompt + {} completion tokens",
        c.calls, c.failed, c.retries, c.prompt_tokens, c.completion_tokens
    );
    if status.batches_in_flight > 0 {
        let _ = writeln!(
            out,
            "batches: {} not settled (in flight, or of an attempt that stopped)",
            status.batches_in_flight
        );
    }
    let _ = writeln!(
        out,
        "models:  evolve `{}`, judge `{}`, answer `{}`",
        identity.model(Role::Evolve),
        identity.model(Role::Judge),
        identity.model(Role::Answer)
    );
    // Paths, shard and model names are the user's text: shown, not obeyed.
    crate::stdout(&evol_text::shown(&out))
}
