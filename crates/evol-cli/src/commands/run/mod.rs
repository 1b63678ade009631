//! `evol run`: seeds in, evolved dataset out.

mod models;
mod seeds;

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{anyhow, bail};
use evol_core::cost::{Budget, CapReached, Caps, Prices};
use evol_core::{Engine, EngineError, RunStats, StatsRecorder};
use evol_io::output::{RunSink, DATASET, EVOLVED, JOURNAL, REJECTED, SEED_ANSWERS, STATS};
use evol_io::OutputDir;
use evol_journal::SqliteJournal;
use serde::Serialize;

use crate::cli::RunArgs;
use crate::progress::{human, Progress};
use crate::settings::{load_templates, RunSettings};

pub use models::BATCH_SERVER;
use models::{connect, connect_batches, embedded};
use seeds::{load_seeds, report_skipped, Input};

/// How long a first Ctrl-C waits for the calls in flight.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// The run was stopped with Ctrl-C (exit code 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted; what was done is in `{0}` (rerun the same command to resume)")]
pub struct Interrupted(pub String);

/// What `stats.json` holds.
#[derive(Serialize)]
struct StatsFile<'a> {
    evol_version: &'static str,
    /// False when the run stopped early (error, interruption, budget cap).
    completed: bool,
    /// completed, interrupted, capped or failed.
    state: &'a str,
    #[serde(flatten)]
    run: &'a RunStats,
    input: InputInfo,
    models: ModelInfo<'a>,
    budget: BudgetInfo<'a>,
    settings: &'a evol_core::Settings,
    /// Per server (with `--endpoint`): calls, failures, the adapted
    /// concurrency at the end, and why a server is out if it is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    endpoints: Vec<EndpointInfo>,
    /// The embedded engine's activity: decode steps, the mean number of
    /// sequences in its batch, tokens computed, busy and decode seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    engine: Option<serde_json::Value>,
    /// What makes the run's results what they are (see `run_identity`):
    /// lets `evol merge` check exported shards without their journals.
    identity: &'a serde_json::Value,
}

#[derive(Serialize)]
struct EndpointInfo {
    url: String,
    requests: u64,
    failures: u64,
    concurrency: usize,
    out: Option<String>,
}

#[derive(Serialize)]
struct BudgetInfo<'a> {
    caps: Caps,
    prices: &'a Prices,
}

#[derive(Serialize)]
struct InputInfo {
    file: String,
    seeds: usize,
    shard: Option<String>,
    skipped_invalid: usize,
    skipped_empty: usize,
}

#[derive(Serialize)]
struct ModelInfo<'a> {
    endpoint: &'a str,
    evolve: &'a str,
    judge: &'a str,
    answer: &'a str,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let settings = RunSettings::from_args(&args)?;
    let templates = load_templates(args.templates.as_deref())?;
    if args.dry_run {
        return crate::commands::estimate::dry_run(&args, &settings, &templates);
    }

    let out = OutputDir::prepare(&args.output, args.fresh)?;
    let new_run = !out.has_journal();
    let journal = Arc::new(SqliteJournal::open(&out.path(JOURNAL))?);
    let Begun { input, models, endpoint, names, identity, committed } =
        match begin(&args, &settings, &templates, &journal).await {
            Ok(begun) => begun,
            Err(e) => {
                if new_run {
                    // Nothing was sent: leave no half-made output directory.
                    drop(journal);
                    out.abandon();
                }
                return Err(e);
            }
        };
    if committed > 0 && !args.quiet {
        eprintln!(
            "evol: resuming the run in `{}`: {committed} calls are already committed and will not be sent again",
            out.root().display()
        );
    }
    journal.set_meta(STATE, "running")?;

    let seeds = journal.seed_count()?;
    let stats = Arc::new(StatsRecorder::new(seeds));
    let prices = settings.prices_for(&[&names.0, &names.1, &names.2]);
    if settings.caps.max_cost.is_some() {
        let unique: std::collections::BTreeSet<&String> = [&names.0, &names.1, &names.2].into();
        for name in unique {
            if prices.get(name).is_none() {
                eprintln!(
                    "warning: no price for the model `{name}`: its calls count as free against --max-cost (set --price-prompt/--price-completion or [prices] in --config)"
                );
            }
        }
    }
    let budget = Arc::new(Budget::new(settings.caps));
    let mut engine_settings = settings.engine.clone();
    engine_settings.concurrency = models.concurrency;
    let pool = models.pool;
    let engine_activity = models.engine;
    let engine = Engine::new(engine_settings, models.models, templates, stats.clone(), journal.clone())?
        .with_costs(prices.clone(), budget.clone());
    let sink = RunSink::new(journal.clone(), out.sink()?, settings.engine.run_seed);
    if !args.quiet {
        let shard = settings.shard.map(|s| format!(" (shard {s})")).unwrap_or_default();
        eprintln!(
            "evol: {seeds} seeds{shard} x {} rounds with `{}` at {endpoint} (concurrency {}) -> `{}`",
            settings.engine.rounds,
            names.0,
            models.concurrency,
            out.root().display()
        );
    }
    let progress = Progress::start(stats.clone(), budget.clone(), seeds, settings.engine.rounds, args.quiet);
    let pages = journal.seeds();
    let page_error = pages.error_slot();
    let run = engine.run(pages, &sink);
    tokio::pin!(run);
    let result: Result<(), EngineError> = tokio::select! {
        r = &mut run => r,
        _ = tokio::signal::ctrl_c() => {
            // First Ctrl-C: send nothing new, let the calls in flight finish
            // and be committed. A second one (or the grace period) aborts.
            engine.stop();
            eprintln!(
                "\nevol: stopping: waiting up to {}s for the calls in flight (press Ctrl-C again to abort)",
                STOP_GRACE.as_secs()
            );
            tokio::select! {
                _ = &mut run => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = tokio::time::sleep(STOP_GRACE) => {}
            }
            Err(EngineError::Stopped)
        }
    };
    progress.finish();
    let result = match page_error.lock().unwrap().take() {
        Some(e) => Err(anyhow!("reading the seeds from the journal failed: {e}")),
        None => Ok(result),
    }?;

    // Whatever happened, what was decided is on disk: export the files.
    let snapshot = stats.snapshot();
    let rows = out.export(&journal, args.include_seeds)?;
    if result.is_ok() {
        // Every result of every batch is committed: none need adopting.
        journal.settle_batches()?;
    }
    let state = match &result {
        Ok(()) => "completed",
        Err(EngineError::Stopped) => "interrupted",
        Err(EngineError::Cap(_)) => "capped",
        Err(_) => "failed",
    };
    journal.set_meta(STATE, state)?;
    out.write_json(
        STATS,
        &StatsFile {
            evol_version: env!("CARGO_PKG_VERSION"),
            completed: result.is_ok(),
            state,
            run: &snapshot,
            input: InputInfo {
                file: args.seeds.display().to_string(),
                seeds: snapshot.seeds as usize,
                shard: settings.shard.map(|s| s.to_string()),
                skipped_invalid: input.invalid_count,
                skipped_empty: input.empty_count,
            },
            models: ModelInfo { endpoint: &endpoint, evolve: &names.0, judge: &names.1, answer: &names.2 },
            budget: BudgetInfo { caps: budget.caps(), prices: &prices },
            settings: &settings.engine,
            identity: &identity,
            endpoints: endpoint_info(pool.as_ref()),
            engine: engine_activity.as_ref().map(|report| report()),
        },
    )?;
    if !args.quiet || result.is_err() {
        eprint!("{}", summary(&snapshot, rows, &out, args.include_seeds));
    }
    if let Some(warning) = judge_warning(&snapshot.judge, &names.1) {
        eprintln!("{warning}");
    }
    match result {
        Ok(()) => Ok(()),
        Err(EngineError::Stopped) => Err(Interrupted(out.root().display().to_string()).into()),
        Err(EngineError::Cap(reached)) => Err(CapStop { reached, out: out.root().display().to_string() }.into()),
        Err(e) => Err(e.into()),
    }
}

/// What a run has once it can start: its seeds in the journal, its models
/// connected, and its identity checked against the journal's.
struct Begun {
    input: Input,
    models: models::Connected,
    /// Where the models are, in words.
    endpoint: String,
    /// The evolving, judging and answering models' names.
    names: (String, String, String),
    identity: serde_json::Value,
    /// Calls already in the journal (a resumed run).
    committed: u64,
}

/// Loads the seeds, connects the models and records (or checks) the run's
/// identity: everything that can fail before the first call.
async fn begin(
    args: &RunArgs,
    settings: &RunSettings,
    templates: &evol_core::Templates,
    journal: &Arc<SqliteJournal>,
) -> anyhow::Result<Begun> {
    let input = load_seeds(args, settings, journal)?;
    report_skipped(args, &input);
    let models = match (&settings.batch, settings.endpoints.is_empty()) {
        (Some(batch), _) => connect_batches(settings, *batch, journal.clone(), args.quiet).await?,
        (None, false) => connect(settings, args.quiet).await?,
        (None, true) => embedded(settings, args)?,
    };
    let endpoint = match settings.endpoints.len() {
        0 => "the embedded engine".to_string(),
        1 => settings.endpoints[0].url.clone(),
        n => format!("{n} servers"),
    };
    let names = (
        models.models.evolver.name().to_string(),
        models.models.judge.name().to_string(),
        models.models.answerer.name().to_string(),
    );
    let identity = run_identity(settings, &input, &names, templates.digest(), args.include_seeds);
    let committed = check_identity(journal, &identity)?;
    Ok(Begun { input, models, endpoint, names, identity, committed })
}

/// How each server of the pool did; warns about those taken out.
fn endpoint_info(pool: Option<&evol_pool::Pool>) -> Vec<EndpointInfo> {
    let Some(pool) = pool else { return Vec::new() };
    pool.status()
        .into_iter()
        .map(|s| {
            if let Some(why) = &s.out {
                eprintln!("warning: the server `{}` was out of the run at its end: {why}", s.name);
            }
            EndpointInfo { url: s.name, requests: s.requests, failures: s.failures, concurrency: s.limit, out: s.out }
        })
        .collect()
}

/// A warning when the judge often gave neither verdict: those evolutions
/// passed the equality check unchecked.
fn judge_warning(judge: &evol_core::stats::Verdicts, model: &str) -> Option<String> {
    let total = judge.total();
    // One unclear reply in five or more, over enough replies to mean it.
    if total < 5 || judge.unclear * 5 < total {
        return None;
    }
    Some(format!(
        "warning: the judge `{model}` answered neither \"Equal\" nor \"Not Equal\" to {} of {total} equality questions; those evolutions passed the check unjudged (use a stronger --judge-model; a reasoning judge may need a larger --judge-max-tokens)",
        judge.unclear
    ))
}

/// The journal's meta key for the run's state.
pub const STATE: &str = "state";

/// A budget cap stopped the run (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("stopped: {reached}; what was done is in `{out}` (raise {flag} and rerun the same command to continue)", flag = reached.flag())]
pub struct CapStop {
    pub reached: CapReached,
    pub out: String,
}

/// What makes a run's results what they are: the seeds, the settings that
/// change results (not concurrency, timeouts, retries or budgets), the
/// models, the prompt templates and the shard. A journal only resumes a run
/// of the same identity; `evol merge` joins shards whose identities differ
/// only in the shard.
fn run_identity(
    settings: &RunSettings,
    input: &Input,
    names: &(String, String, String),
    templates: &str,
    include_seeds: bool,
) -> serde_json::Value {
    let mut engine = serde_json::to_value(&settings.engine).expect("serializable");
    for field in ["concurrency", "retry_failed"] {
        engine.as_object_mut().expect("an object").remove(field);
    }
    serde_json::json!({
        "seeds": input.digest,
        "seed_count": input.total,
        "shard": settings.shard.map(|s| s.to_string()),
        "settings": engine,
        "models": { "evolve": names.0, "judge": names.1, "answer": names.2 },
        "templates": templates,
        "include_seeds": include_seeds,
    })
}

/// The journal's meta key for the run's identity.
pub const IDENTITY: &str = "identity";

/// Records the run's identity in a new journal, or checks it against the one
/// there; returns how many calls the journal already holds.
fn check_identity(journal: &SqliteJournal, identity: &serde_json::Value) -> anyhow::Result<u64> {
    let Some(stored) = journal.meta(IDENTITY)? else {
        journal.set_meta(IDENTITY, &identity.to_string())?;
        return Ok(0);
    };
    let stored: serde_json::Value = serde_json::from_str(&stored)?;
    let mut differences = Vec::new();
    for (key, value) in identity.as_object().expect("an object") {
        match (value, &stored[key]) {
            (serde_json::Value::Object(now), serde_json::Value::Object(then)) => {
                for (sub, v) in now {
                    if then.get(sub) != Some(v) {
                        differences.push(if key == "settings" { sub.clone() } else { format!("{key}.{sub}") });
                    }
                }
            }
            (now, then) if now != then => differences.push(key.clone()),
            _ => {}
        }
    }
    if !differences.is_empty() {
        bail!(
            "this output directory holds a run made with other settings (changed: {}); rerun with the same settings to resume it, or pass --fresh to start over",
            differences.join(", ")
        );
    }
    Ok(journal.calls()?)
}

fn summary(s: &RunStats, rows: usize, out: &OutputDir, seeds_file: bool) -> String {
    let t = &s.total;
    let mut text = format!(
        "evol: {} of {} seeds done in {}: {} evolutions attempted, {} accepted, {} rejected",
        s.seeds_done,
        s.seeds,
        human(std::time::Duration::from_secs_f64(s.wall_seconds)),
        t.attempted,
        t.accepted,
        t.rejected_total()
    );
    if !t.rejected.is_empty() {
        let reasons: Vec<String> = t.rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = write!(text, " ({})", reasons.join(", "));
    }
    let _ = writeln!(
        text,
        "; {} requests, {} retries, {} failed; {} prompt + {} completion tokens",
        t.requests, t.retries, t.failures, t.prompt_tokens, t.completion_tokens
    );
    if t.cost > 0.0 {
        let _ = writeln!(text, "evol: cost {:.4} (from the price table)", t.cost);
    }
    let path = |f: &str| out.path(f).display().to_string();
    let mut files = vec![format!("{} ({rows} rows)", path(DATASET)), path(EVOLVED), path(REJECTED)];
    if seeds_file && out.path(SEED_ANSWERS).exists() {
        files.push(path(SEED_ANSWERS));
    }
    files.push(path(STATS));
    let _ = writeln!(text, "evol: wrote {}", files.join(", "));
    text
}

#[cfg(test)]
mod tests {
    use evol_core::stats::Verdicts;

    use super::judge_warning;

    #[test]
    fn the_judge_warning_needs_many_unclear_replies() {
        assert_eq!(judge_warning(&Verdicts { equal: 1, not_equal: 2, unclear: 1 }, "m"), None, "too few replies");
        assert_eq!(judge_warning(&Verdicts { equal: 10, not_equal: 80, unclear: 9 }, "m"), None, "under one in five");
        let warning = judge_warning(&Verdicts { equal: 1, not_equal: 6, unclear: 3 }, "tiny").unwrap();
        assert!(warning.contains("`tiny`") && warning.contains("3 of 10"), "{warning}");
    }
}
