//! `evol optimize SEEDS -o METHOD_DIR`: Auto Evol-Instruct.
//!
//! The seeds are split (seeded shuffle) into a pool for the mini-batches
//! and `--dev` held-out seeds; [`Optimizer`] runs the loop, every call
//! through one journaled [`Caller`] over METHOD_DIR's journal, so a rerun
//! replays what is done and goes on. After each step `method.toml` (the
//! best method so far, an operator file) and `history.jsonl` are
//! rewritten; `stats.json` at the end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use evol_core::cost::Budget;
use evol_core::journal::Journal;
use evol_core::ops::{OperatorSet, SetTemplate};
use evol_core::optimize::{max_calls, OptimizeError, OptimizeSettings, Optimized, Optimizer, StepRecord};
use evol_core::{CallError, Caller, CallerSettings, Role, StatsRecorder};
use evol_store::output::{HISTORY, METHOD, STATS};
use evol_store::{OutputDir, RunState};
use serde::Serialize;

use crate::backend::connect_models;
use crate::observe::{human, Counting, Observer, Watched};
use crate::results::CallSummary;
use crate::session::{check_job_identity, until_stopped, Ended, WorkError};
use crate::settings::OptimizeRunSettings;
use crate::shutdown::Shutdown;

/// The journal fact holding the optimisation's identity.
const IDENTITY: &str = "optimize_identity";

/// What makes an optimisation's results what they are.
#[derive(Serialize)]
struct Identity<'a> {
    seeds: String,
    dev: usize,
    settings: &'a OptimizeSettings,
    models: BTreeMap<Role, String>,
    templates: &'a str,
    operator: &'a evol_core::Operation,
    method: &'a str,
}

/// Optimises the method of one operator on the seeds (a rerun replays
/// what OUT's journal holds), writing `method.toml` and `history.jsonl`
/// after each step and `stats.json` at the end.
pub async fn optimize(
    settings: OptimizeRunSettings,
    observer: &dyn Observer,
    mut shutdown: Shutdown,
) -> anyhow::Result<OptimizeReport> {
    let read =
        evol_io::read_seeds(&settings.seeds, evol_io::ReadOptions { format: settings.format, ..Default::default() })?;
    let seeds = read.seeds;
    if seeds.len() <= settings.dev {
        bail!(crate::UsageError(format!(
            "`{}` has {} seeds: --dev {} held out leaves none to evolve (pass a smaller --dev or more seeds)",
            settings.seeds.display(),
            seeds.len(),
            settings.dev
        )));
    }
    let digest = seeds.iter().fold(evol_digest::Digest::new(), |d, seed| d.part(&seed.id).part(&seed.instruction));
    let digest = digest.full_hex();
    let (pool, dev) = evol_core::optimize::split(seeds, settings.dev, settings.optimize.run_seed);

    let (operation, method_name, start) = (&settings.operation, &settings.method_name, &settings.start_method);

    let out = OutputDir::prepare(&settings.output, settings.fresh, evol_store::JobKind::Optimize)?;
    let journal = Arc::new(out.journal()?);
    let roles = [Role::Evolve, Role::Judge, Role::Answer, Role::Optimize];
    let concurrency = settings.execution.concurrency;
    let connected =
        connect_models(&settings.model.backend, &settings.models, &roles, concurrency, &journal, observer).await?;
    let names = connected.roles.names();
    let identity = Identity {
        seeds: digest,
        dev: settings.dev,
        settings: &settings.optimize,
        models: names.clone(),
        templates: settings.templates.digest(),
        operator: operation,
        method: start,
    };
    check_job_identity(&journal, IDENTITY, &identity, &settings.output, "an optimisation")?;
    journal.set_state(RunState::Running)?;

    let optimizer_settings = &settings.optimize;
    let total = max_calls(optimizer_settings, operation, settings.optimize.batch.min(pool.len()), dev.len());
    let stats = Arc::new(StatsRecorder::new(total));
    let model_names: Vec<&str> = names.values().map(String::as_str).collect();
    let prices = settings.execution.prices_for(&model_names);
    let budget = Arc::new(Budget::new(settings.execution.caps));
    let caller_settings =
        CallerSettings { concurrency: connected.admitted, retry_failed: settings.execution.retry_failed };
    let caller = Caller::new(caller_settings, journal.clone() as Arc<dyn Journal>, stats.clone())?
        .with_costs(prices, budget.clone());
    observer.say(&format!(
        "evol: optimising the method of `{}` ({}) on {} seeds, {} held out: at most {} steps, {} calls -> `{}`",
        operation.name,
        settings.set.name,
        pool.len(),
        dev.len(),
        optimizer_settings.steps,
        total,
        out.root().display()
    ));
    let watched = Watched { stats: stats.clone(), budget: budget.clone(), pool: connected.pool.clone() };
    observer.watch(watched, Counting::Items { total, unit: "calls" });

    let history: Mutex<Vec<StepRecord>> = Mutex::new(Vec::new());
    let optimizer = Optimizer {
        caller: &caller,
        roles: &connected.roles,
        templates: &settings.templates,
        operation,
        settings: optimizer_settings,
        stats: &stats,
    };
    let write_step = |record: &StepRecord| -> Result<(), String> {
        let mut steps = history.lock().unwrap();
        steps.push(record.clone());
        write_outputs(&out, &settings.set, method_name, &steps, None).map_err(|e| format!("{e:#}"))
    };
    let work = optimizer.run(&pool, &dev, start.clone(), write_step);
    let stall_after = settings.model.backend.stall_after();
    let ended = until_stopped(work, || caller.stop(), &connected, stall_after, &mut shutdown, observer).await;
    observer.unwatch();
    let steps = history.into_inner().unwrap();
    let result = match &ended {
        Ended::Done(Ok(result)) => Some(result.clone()),
        _ => None,
    };
    write_outputs(&out, &settings.set, method_name, &steps, result.as_ref())?;
    let state = ended.state(true);
    journal.set_state(state)?;
    let snapshot = stats.snapshot();
    let report = OptimizeReport {
        evol_version: env!("CARGO_PKG_VERSION").to_string(),
        state,
        result: result.clone(),
        steps_recorded: steps.len(),
        pool: pool.len(),
        dev: dev.len(),
        max_calls: total,
        calls_made: CallSummary::of(&snapshot, &journal)?,
        models: names.clone(),
        identity: serde_json::to_value(&identity)?,
    };
    out.write_json(STATS, &report)?;
    {
        if let Some(r) = &result {
            let ending = match r.ending {
                evol_core::optimize::Ending::NoImprovement => "no candidate failed less",
                evol_core::optimize::Ending::StepLimit => "the step limit",
                evol_core::optimize::Ending::NoFailures => "no failure left",
            };
            observer.say(&format!(
                "evol: failure rate {:.3} at the start, {:.3} after {} steps (kept from step {}; stopped at {ending}) in {}",
                r.start.failure_rate,
                r.failure_rate,
                r.steps,
                r.from_step,
                human(std::time::Duration::from_secs_f64(snapshot.wall_seconds))
            ));
        }
        observer.say(&format!(
            "evol: wrote {}, {}, {}; use it with `evol run --ops-file {}`",
            out.path(METHOD).display(),
            out.path(HISTORY).display(),
            out.path(STATS).display(),
            out.path(METHOD).display()
        ));
    }
    ended.exit(stall_after, out.root().display().to_string()).map(|()| report)
}

impl WorkError for OptimizeError {
    fn as_call(&self) -> Option<&CallError> {
        match self {
            OptimizeError::Call(e) => Some(e),
            _ => None,
        }
    }

    fn into_call(self) -> Result<CallError, Self> {
        match self {
            OptimizeError::Call(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// What an optimisation did: its report, and what `stats.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct OptimizeReport {
    pub evol_version: String,
    pub state: RunState,
    /// The start's measurement, the best method's failure rate, the step
    /// it came from, and why it ended (absent when it did not finish).
    pub result: Option<Optimized>,
    pub steps_recorded: usize,
    /// Seeds evolved, and seeds held out to measure each method on.
    pub pool: usize,
    pub dev: usize,
    pub max_calls: u64,
    /// The calls: replayed, made by this attempt, and held by the journal.
    #[serde(flatten)]
    pub calls_made: CallSummary,
    pub models: BTreeMap<Role, String>,
    /// What makes the optimisation's results what they are.
    pub identity: serde_json::Value,
}

/// Writes `history.jsonl` and `method.toml`: the method of the last step
/// recorded (or the finished result's), as an operator file.
fn write_outputs(
    out: &OutputDir,
    set: &OperatorSet,
    method_name: &str,
    steps: &[StepRecord],
    result: Option<&Optimized>,
) -> anyhow::Result<()> {
    let mut lines = String::new();
    for step in steps {
        lines.push_str(&serde_json::to_string(step)?);
        lines.push('\n');
    }
    out.write_text(HISTORY, &lines).with_context(|| format!("cannot write `{}`", out.path(HISTORY).display()))?;
    let (method, rate, from) = match (result, steps.last()) {
        (Some(r), _) => (r.method.clone(), Some(r.failure_rate), r.from_step),
        (None, Some(last)) => {
            let from = steps.iter().rev().find(|s| s.chosen.is_some()).map_or(0, |s| s.step);
            (last.method_after.clone(), Some(last.failure_rate_after), from)
        }
        (None, None) => match set.templates.get(method_name) {
            Some(t) => (t.text().to_string(), None, 0),
            None => return Ok(()),
        },
    };
    let mut best = set.clone();
    best.templates.insert(method_name.to_string(), SetTemplate::Literal(format!("{}\n", method.trim())));
    let note = match rate {
        Some(rate) => format!("failure rate {rate:.3} on the held-out seeds, from step {from}"),
        None => "the starting method (no step done yet)".to_string(),
    };
    best.description = format!(
        "{} (optimised by evol optimize: {note})",
        set.description.split(" (optimised by").next().unwrap_or("")
    );
    let extra = evol_core::Templates::builtin_used_by(&best);
    let text = format!(
        "# Written by `evol optimize` ({note}).\n# Use it with `evol run --ops-file method.toml`, or continue with `evol optimize --from method.toml`.\n\n{}",
        best.to_toml(&extra)
    );
    out.write_text(METHOD, &text).with_context(|| format!("cannot write `{}`", out.path(METHOD).display()))?;
    Ok(())
}
