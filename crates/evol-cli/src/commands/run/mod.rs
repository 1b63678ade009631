//! `evol run`: seeds in, evolved dataset out.

pub(crate) mod models;

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::bail;
use evol_core::cost::{Budget, CapReached, Caps, Prices};
use evol_core::{Caller, CallerSettings, Engine, EngineError, Method, Role, RunStats, StatsRecorder};
use evol_store::ingest::{ingest, Input};
use evol_store::output::{RunSink, DATASET, EVOLVED, REJECTED, SEED_ANSWERS, STATS};
use evol_store::{OutputDir, RunIdentity, RunState, SqliteJournal};
use serde::Serialize;

use crate::cli::RunArgs;
use crate::progress::{human, Counting, Progress, Watched};
use crate::settings::{Backend, RunSettings};

use models::{connect, connect_batches, embedded, ServerLimits};

/// How long a first Ctrl-C waits for the calls in flight.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// The run was stopped with Ctrl-C or SIGTERM (exit code 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted; what was done is in `{0}` (rerun the same command to resume)")]
pub struct Interrupted(pub String);

/// The run stopped because no server answered for `--stall-timeout`
/// (exit code 4).
#[derive(Debug, thiserror::Error)]
#[error("stopped: no call succeeded for {waited} (last error: {last}); what was done is in `{out}`: rerun the same command once a server answers, the calls that were waiting are sent then")]
pub struct Stalled {
    pub waited: String,
    pub last: String,
    pub out: String,
}

/// Why a run was stopped before its end.
pub(crate) enum Stop {
    Signal,
    Stalled(String),
}

/// How a command's work ended.
pub(crate) enum Ended<T> {
    /// It ran to its end (or to an error of its own).
    Done(T),
    /// Ctrl-C, SIGTERM or a stall stopped it.
    Stopped(Stop),
}

/// An error a command's work (calls through a [`evol_core::Caller`]) may
/// end with: a caller's own, or another that wraps one.
pub(crate) trait WorkError: Into<anyhow::Error> + Sized {
    fn as_call(&self) -> Option<&evol_core::CallError>;
    fn into_call(self) -> Result<evol_core::CallError, Self>;
}

impl WorkError for evol_core::CallError {
    fn as_call(&self) -> Option<&evol_core::CallError> {
        Some(self)
    }

    fn into_call(self) -> Result<evol_core::CallError, Self> {
        Ok(self)
    }
}

impl<T, E: WorkError> Ended<Result<T, E>> {
    /// The state the work leaves its job in; `complete`: all of it was
    /// done (work that ended well but not complete failed).
    pub(crate) fn state(&self, complete: bool) -> RunState {
        use evol_core::CallError;
        match self {
            Ended::Done(Ok(_)) if complete => RunState::Completed,
            Ended::Done(Err(e)) => match e.as_call() {
                Some(CallError::Cap(_)) => RunState::Capped,
                Some(CallError::Stopped) => RunState::Interrupted,
                _ => RunState::Failed,
            },
            Ended::Stopped(_) => RunState::Interrupted,
            Ended::Done(Ok(_)) => RunState::Failed,
        }
    }

    /// The command's result: a cap, a stop and a stall are their own
    /// errors (and exit codes), naming the directory `out` to rerun on.
    pub(crate) fn exit(self, stall_after: std::time::Duration, out: String) -> anyhow::Result<()> {
        use evol_core::CallError;
        match self {
            Ended::Done(Ok(_)) => Ok(()),
            Ended::Stopped(Stop::Signal) => Err(Interrupted(out).into()),
            Ended::Stopped(Stop::Stalled(last)) => Err(Stalled { waited: human(stall_after), last, out }.into()),
            Ended::Done(Err(e)) => match e.into_call() {
                Ok(CallError::Cap(reached)) => Err(CapStop { reached, out }.into()),
                Ok(CallError::Stopped) => Err(Interrupted(out).into()),
                Ok(e) => Err(e.into()),
                Err(e) => Err(e.into()),
            },
        }
    }
}

/// Records a job's identity in its journal the first time; after that, a
/// job of another identity on the same directory is refused (`what` names
/// the job: "a scoring job").
pub(crate) fn check_job_identity(
    journal: &SqliteJournal,
    key: &str,
    identity: &str,
    out: &std::path::Path,
    what: &str,
) -> anyhow::Result<()> {
    match journal.fact(key)? {
        Some(stored) if stored != identity => bail!(
            "`{}` holds {what} of other inputs or other settings; rerun with the same ones to resume it, or pass --fresh to start over",
            out.display()
        ),
        Some(_) => Ok(()),
        None => Ok(journal.set_fact(key, identity)?),
    }
}

/// Runs `work` (every model call of a command) until it ends, Ctrl-C or
/// SIGTERM, or a stall of the servers (`stall_after`). A stop makes
/// `stop_work` send nothing new, closes the pool (or the batches) so calls
/// waiting for a server return unsent (a rerun makes them), and gives the
/// calls in flight [`STOP_GRACE`] to finish and be committed; a second
/// signal aborts.
pub(crate) async fn until_stopped<T>(
    work: impl std::future::Future<Output = T>,
    stop_work: impl FnOnce(),
    pool: Option<&evol_pool::Pool>,
    batches: Option<&evol_openai::Batches>,
    stall_after: std::time::Duration,
    progress: &Progress,
) -> Ended<T> {
    tokio::pin!(work);
    let stop = tokio::select! {
        r = &mut work => return Ended::Done(r),
        _ = stop_signal() => Stop::Signal,
        last = stalled(pool.cloned(), batches.cloned(), stall_after) => Stop::Stalled(last),
    };
    stop_work();
    let waiting = pool.map_or(0, |p| p.health().waiting);
    if let Some(pool) = pool {
        pool.close();
    }
    if let Some(batches) = batches {
        batches.close();
    }
    let why = match &stop {
        Stop::Signal => "stopping".to_string(),
        Stop::Stalled(last) => evol_text::shown(&format!(
            "no call succeeded for {}; stopping, {waiting} calls waiting for a server are left for the rerun (last error: {last})",
            human(stall_after)
        ))
        .into_owned(),
    };
    progress.println(&format!(
        "evol: {why}: waiting up to {}s for the calls in flight (press Ctrl-C again to abort)",
        STOP_GRACE.as_secs()
    ));
    tokio::select! {
        _ = &mut work => {}
        _ = stop_signal() => {}
        _ = tokio::time::sleep(STOP_GRACE) => {}
    }
    Ended::Stopped(stop)
}

/// Drives a command's calls to their end, handing each result to `each`.
/// On the first error the caller stops sending, the calls already in
/// flight still finish (so what was paid for is committed and handed on),
/// and that first error is returned.
pub(crate) async fn drain<T>(
    calls: impl futures::Stream<Item = Result<T, evol_core::CallError>>,
    caller: &evol_core::Caller,
    mut each: impl FnMut(T),
) -> Result<(), evol_core::CallError> {
    use futures::StreamExt;
    futures::pin_mut!(calls);
    let mut first = None;
    while let Some(done) = calls.next().await {
        match done {
            Ok(value) => each(value),
            Err(e) => {
                if first.is_none() {
                    caller.stop();
                    first = Some(e);
                }
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Resolves at Ctrl-C or SIGTERM (what `docker stop`, Kubernetes, systemd
/// and `timeout` send).
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves with the last error once the servers (the pool, or the batch
/// server) have had no success for `after` while requests failed; never
/// on the embedded engine.
async fn stalled(
    pool: Option<evol_pool::Pool>,
    batches: Option<evol_openai::Batches>,
    after: std::time::Duration,
) -> String {
    if pool.is_none() && batches.is_none() {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let last = pool.as_ref().and_then(|p| p.stalled(after)).or_else(|| batches.as_ref()?.stalled(after));
        if let Some(last) = last {
            return last;
        }
    }
}

/// What `stats.json` holds.
#[derive(Serialize)]
struct StatsFile<'a> {
    evol_version: &'static str,
    /// False when the run stopped early (error, interruption, budget cap).
    completed: bool,
    state: RunState,
    #[serde(flatten)]
    run: &'a RunStats,
    input: InputInfo,
    /// The dataset as written: its rows, and the rows left out as exact or
    /// near duplicates of earlier rows (listed in `duplicates.jsonl`).
    dataset: evol_store::Exported,
    models: ModelInfo<'a>,
    budget: BudgetInfo<'a>,
    /// The method: every setting that changes the results.
    settings: &'a Method,
    /// How this attempt ran: the settings that may change between attempts,
    /// as used.
    execution: ExecutionInfo,
    /// Per server (with `--endpoint`): calls, failures, the adapted
    /// concurrency at the end, and why a server is out if it is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    endpoints: Vec<EndpointInfo>,
    /// Every call the journal holds, of this attempt and the earlier ones,
    /// with their retries and tokens: what was paid, as `evol status` shows
    /// it (calls whose questions no later attempt asked again included).
    journal: evol_store::CallTotals,
    /// The embedded engine's activity: decode steps, the mean number of
    /// sequences in its batch, tokens computed, busy and decode seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    engine: Option<serde_json::Value>,
    /// What makes the run's results what they are: lets `evol merge` check
    /// exported shards without their journals.
    identity: &'a RunIdentity,
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
struct ExecutionInfo {
    /// The most calls in flight in all.
    concurrency: usize,
    /// Each server's limits (none for the embedded engine).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    servers: Vec<ServerLimits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adaptive: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_api: Option<bool>,
    retry_failed: bool,
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
    /// How the seeds held their instruction (Alpaca, ShareGPT, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    layout: Option<String>,
}

#[derive(Serialize)]
struct ModelInfo<'a> {
    endpoint: &'a str,
    evolve: &'a str,
    judge: &'a str,
    answer: &'a str,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let settings = RunSettings::from_args(args)?;
    if settings.dry_run {
        return crate::commands::estimate::dry_run(&settings);
    }

    let out = OutputDir::prepare(&settings.output, settings.fresh)?;
    let new_run = !out.has_journal();
    let journal = Arc::new(out.journal()?);
    let Begun { mut input, models, endpoint, identity, committed } = match begin(&settings, &journal).await {
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
    let quiet = settings.quiet;
    if committed > 0 && !quiet {
        eprintln!(
            "evol: resuming the run in `{}`: {committed} calls are already committed and will not be sent again",
            out.root().display()
        );
    }
    journal.set_state(RunState::Running)?;

    let seeds = journal.seed_count()?;
    let stats = Arc::new(StatsRecorder::new(seeds));
    let names: Vec<&str> = run_roles(&settings.method).iter().map(|r| identity.model(*r)).collect();
    let prices = settings.execution.prices_for(&names);
    if settings.execution.caps.max_cost.is_some() && !quiet {
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        for name in unique {
            if prices.get(name).is_none() {
                eprintln!(
                    "warning: no price for the model `{name}`: its calls count as free against --max-cost (set --price-prompt/--price-completion or [prices] in --config)"
                );
            }
        }
    }
    let budget = Arc::new(Budget::new(settings.execution.caps));
    let caller_settings =
        CallerSettings { concurrency: models.admitted, retry_failed: settings.execution.retry_failed };
    let caller = Arc::new(
        Caller::new(caller_settings, journal.clone(), stats.clone())?.with_costs(prices.clone(), budget.clone()),
    );
    let pool = models.pool;
    let batches = models.batches.clone();
    let engine_activity = models.engine;
    let mut engine =
        Engine::new(settings.method.clone(), models.roles, settings.templates.clone(), stats.clone(), caller.clone())?;
    if let Some(index) = input.seed_index.clone() {
        engine = engine.with_seed_index(index);
    }
    let sink = RunSink::new(journal.clone(), out.sink()?, settings.method.run_seed);
    if !quiet {
        let shard = settings.ingest.shard.map(|s| format!(" (shard {s})")).unwrap_or_default();
        let layout = input.layout.as_deref().map(|l| format!(" read as {l},")).unwrap_or_default();
        eprintln!(
            "evol: {seeds} seeds{shard}{layout} x {} rounds with `{}` at {endpoint} (concurrency {}) -> `{}`",
            settings.method.rounds,
            identity.model(Role::Evolve),
            models.concurrency,
            out.root().display()
        );
    }
    let watched = Watched { stats: stats.clone(), budget: budget.clone(), pool: pool.clone() };
    let progress = Progress::start(watched, Counting::Steps { seeds, rounds: settings.method.rounds }, quiet);
    let run = engine.run(journal.seeds(), &sink);
    let stall_after = settings.backend.stall_after();
    let ended = until_stopped(run, || engine.stop(), pool.as_ref(), batches.as_ref(), stall_after, &progress).await;
    let (result, stop): (Result<(), EngineError>, Option<Stop>) = match ended {
        Ended::Done(r) => (r, None),
        Ended::Stopped(stop) => (Err(EngineError::Stopped), Some(stop)),
    };
    progress.finish();
    // The seeds' index is done with: its memory goes before the export's.
    drop(engine);
    input.seed_index = None;

    // Whatever happened, what was decided is on disk: export the files.
    let snapshot = stats.snapshot();
    let exported = out.export(&journal, settings.include_seeds, settings.method.dedup)?;
    if result.is_ok() {
        // Every result of every batch is committed: none need adopting.
        journal.settle_batches()?;
    }
    let state = match &result {
        Ok(()) => RunState::Completed,
        Err(EngineError::Stopped) => RunState::Interrupted,
        Err(EngineError::Cap(_)) => RunState::Capped,
        Err(_) => RunState::Failed,
    };
    journal.set_state(state)?;
    let servers = settings.servers();
    out.write_json(
        STATS,
        &StatsFile {
            evol_version: env!("CARGO_PKG_VERSION"),
            completed: result.is_ok(),
            state,
            run: &snapshot,
            dataset: exported,
            input: InputInfo {
                file: settings.seeds.display().to_string(),
                seeds: snapshot.seeds as usize,
                shard: settings.ingest.shard.map(|s| s.to_string()),
                skipped_invalid: input.invalid_count,
                skipped_empty: input.empty_count,
                layout: input.layout.clone(),
            },
            models: ModelInfo {
                endpoint: &endpoint,
                evolve: identity.model(Role::Evolve),
                judge: identity.model(Role::Judge),
                answer: identity.model(Role::Answer),
            },
            budget: BudgetInfo { caps: budget.caps(), prices: &prices },
            settings: &settings.method,
            execution: ExecutionInfo {
                concurrency: models.concurrency,
                servers: models.limits,
                timeout_seconds: servers.map(|s| s.timeout.as_secs_f64()),
                max_retries: servers.map(|s| s.retry.max_retries),
                adaptive: servers.map(|s| s.adaptive),
                batch_api: servers.map(|s| s.batch.is_some()),
                retry_failed: settings.execution.retry_failed,
            },
            identity: &identity,
            endpoints: endpoint_info(pool.as_ref(), quiet),
            journal: journal.call_totals()?,
            engine: engine_activity.as_ref().map(|report| report()),
        },
    )?;
    // `--quiet` shows only errors: the summary and warnings are in
    // stats.json.
    if !quiet {
        eprint!("{}", evol_text::shown(&summary(&snapshot, exported, &out, settings.include_seeds)));
        if let Some(warning) = judge_warning(&snapshot.judge, identity.model(Role::Judge)) {
            eprintln!("{}", evol_text::shown(&warning));
        }
    }
    match result {
        Ok(()) => Ok(()),
        Err(EngineError::Stopped) => match stop {
            Some(Stop::Stalled(last)) => {
                Err(Stalled { waited: human(stall_after), last, out: out.root().display().to_string() }.into())
            }
            _ => Err(Interrupted(out.root().display().to_string()).into()),
        },
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
    identity: RunIdentity,
    /// Calls already in the journal (a resumed run).
    committed: u64,
}

/// Loads the seeds, connects the models and records (or checks) the run's
/// identity: everything that can fail before the first call.
async fn begin(settings: &RunSettings, journal: &Arc<SqliteJournal>) -> anyhow::Result<Begun> {
    let input = ingest(&settings.seeds, settings.ingest.clone(), journal)?;
    report_skipped(settings, &input);
    let concurrency = settings.execution.concurrency;
    let roles = run_roles(&settings.method);
    let (models, endpoint) = match &settings.backend {
        Backend::Servers(servers) => {
            let models = match servers.batch {
                Some(batch) => {
                    connect_batches(servers, &settings.models, &roles, batch, journal.clone(), settings.quiet).await?
                }
                None => connect(servers, &settings.models, &roles, concurrency, settings.quiet).await?,
            };
            let endpoint = match servers.endpoints.len() {
                1 => evol_text::redact_url(&servers.endpoints[0].url).into_owned(),
                n => format!("{n} servers"),
            };
            (models, endpoint)
        }
        Backend::Embedded(engine) => {
            let connected = embedded(engine, &settings.models, &roles, concurrency, settings.quiet)?;
            (connected, "the embedded engine".to_string())
        }
    };
    let identity = RunIdentity {
        seeds: input.digest.clone(),
        seed_count: input.total,
        shard: settings.ingest.shard,
        settings: settings.method.clone(),
        models: models.roles.names(),
        templates: settings.templates.digest().to_string(),
        score_templates: settings.method.difficulty.map(|_| settings.templates.score_digest().to_string()),
        include_seeds: settings.include_seeds,
    };
    let committed = check_identity(journal, &identity)?;
    Ok(Begun { input, models, endpoint, identity, committed })
}

/// The roles a run connects: evolve, judge and answer (as every run has
/// recorded them), and the scorer when it scores.
fn run_roles(method: &Method) -> Vec<Role> {
    let mut roles = Role::RUN.to_vec();
    if method.difficulty.is_some() {
        roles.push(Role::Score);
    }
    roles
}

fn report_skipped(settings: &RunSettings, input: &Input) {
    if settings.quiet {
        return; // counted in stats.json (`input`)
    }
    let file = settings.seeds.display();
    for (place, message) in &input.invalid {
        eprintln!("{}", evol_text::shown(&format!("warning: `{file}` {place}: {message}; skipped")));
    }
    for place in &input.empty {
        eprintln!("{}", evol_text::shown(&format!("warning: `{file}` {place}: empty instruction; skipped")));
    }
    let more = (input.invalid_count - input.invalid.len()) + (input.empty_count - input.empty.len());
    if more > 0 {
        eprintln!("warning: ... and {more} more skipped");
    }
}

/// How each server of the pool did; warns about those taken out.
fn endpoint_info(pool: Option<&evol_pool::Pool>, quiet: bool) -> Vec<EndpointInfo> {
    let Some(pool) = pool else { return Vec::new() };
    pool.status()
        .into_iter()
        .map(|s| {
            if let Some(why) = s.out.as_ref().filter(|_| !quiet) {
                let line = format!("warning: the server `{}` was out of the run at its end: {why}", s.name);
                eprintln!("{}", evol_text::shown(&line));
            }
            EndpointInfo { url: s.name, requests: s.requests, failures: s.failures, concurrency: s.limit, out: s.out }
        })
        .collect()
}

/// A warning when the judge often gave neither verdict: those evolutions
/// passed the equality check unchecked.
fn judge_warning(judge: &evol_core::stats::Verdicts, model: &str) -> Option<String> {
    let total = judge.total();
    // Two unclear replies or more, and one in five or more.
    if judge.unclear < 2 || judge.unclear * 5 < total {
        return None;
    }
    Some(format!(
        "warning: the judge `{model}` answered neither \"Equal\" nor \"Not Equal\" to {} of {total} equality questions; those evolutions passed the check unjudged (use a stronger --judge-model; a reasoning judge may need a larger --judge-max-tokens)",
        judge.unclear
    ))
}

/// A budget cap stopped the run (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("stopped: {reached}; what was done is in `{out}` (raise {flag} and rerun the same command to continue)", flag = cap_flag(reached))]
pub struct CapStop {
    pub reached: CapReached,
    pub out: String,
}

/// The flag that sets a cap.
fn cap_flag(reached: &CapReached) -> &'static str {
    match reached {
        CapReached::Requests { .. } => "--max-requests",
        CapReached::Tokens { .. } => "--max-tokens-total",
        CapReached::Cost { .. } => "--max-cost",
    }
}

/// Records the run's identity in a new journal, or checks it against the one
/// there; returns how many calls the journal already holds.
fn check_identity(journal: &SqliteJournal, identity: &RunIdentity) -> anyhow::Result<u64> {
    // A run that never began (killed before its first call) is started
    // afresh with this command's settings.
    let stored = match journal.identity()? {
        Some(stored) if journal.has_begun()? => stored,
        _ => {
            journal.set_identity(identity)?;
            return Ok(0);
        }
    };
    let differences = identity.differences(&stored);
    if !differences.is_empty() {
        // A run begun before the near-duplicate check existed has none.
        let hint = match (&stored.settings.dedup, &identity.settings.dedup) {
            (None, Some(_)) => " (the run was begun without the near-duplicate check: add --no-dedup to resume it)",
            _ => "",
        };
        bail!(
            "this output directory holds a run made with other settings (changed: {}){hint}; rerun with the same settings to resume it, or pass --fresh to start over",
            differences.join(", ")
        );
    }
    Ok(journal.calls()?)
}

/// The mean difficulty per round with its spread: the method's own proof
/// of working is that it rises.
fn difficulty_line(rounds: &std::collections::BTreeMap<u32, evol_core::stats::ScoreTally>) -> String {
    let parts: Vec<String> = rounds
        .iter()
        .map(|(round, t)| {
            let name = if *round == 0 { "seeds".to_string() } else { format!("round {round}") };
            match (t.mean, t.std) {
                (Some(mean), Some(std)) => format!("{name} {mean:.2} ± {std:.2} (n {})", t.scored),
                _ => format!("{name} - (n 0)"),
            }
        })
        .collect();
    let unreadable: u64 = rounds.values().map(|t| t.unreadable).sum();
    let failed: u64 = rounds.values().map(|t| t.failed).sum();
    let mut line = format!("difficulty, mean ± std: {}", parts.join(", "));
    if unreadable + failed > 0 {
        let _ =
            write!(line, "; {unreadable} replies unreadable, {failed} scoring calls failed (not counted in the means)");
    }
    line
}

fn summary(s: &RunStats, exported: evol_store::Exported, out: &OutputDir, seeds_file: bool) -> String {
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
    if !s.difficulty.is_empty() {
        let _ = writeln!(text, "evol: {}", difficulty_line(&s.difficulty));
    }
    let path = |f: &str| out.path(f).display().to_string();
    let removed = exported.exact_duplicates + exported.near_duplicates;
    let dataset = match removed {
        0 => format!("{} ({} rows)", path(DATASET), exported.rows),
        _ => format!(
            "{} ({} rows; {removed} duplicates of earlier rows left out, listed in {})",
            path(DATASET),
            exported.rows,
            path(evol_store::output::DUPLICATES)
        ),
    };
    let mut files = vec![dataset, path(EVOLVED), path(REJECTED)];
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

    use super::{cap_flag, judge_warning};

    #[test]
    fn each_cap_names_its_flag() {
        use evol_core::cost::CapReached;
        assert_eq!(cap_flag(&CapReached::Cost { cap: 0.01, used: 0.01 }), "--max-cost");
        assert_eq!(cap_flag(&CapReached::Requests { cap: 1 }), "--max-requests");
        assert_eq!(cap_flag(&CapReached::Tokens { cap: 1, used: 1 }), "--max-tokens-total");
    }

    #[test]
    fn the_judge_warning_needs_many_unclear_replies() {
        assert_eq!(judge_warning(&Verdicts { equal: 1, not_equal: 0, unclear: 1 }, "m"), None, "one may be chance");
        assert!(judge_warning(&Verdicts { equal: 1, not_equal: 1, unclear: 2 }, "m").unwrap().contains("2 of 4"));
        assert_eq!(judge_warning(&Verdicts { equal: 10, not_equal: 80, unclear: 9 }, "m"), None, "under one in five");
        let warning = judge_warning(&Verdicts { equal: 1, not_equal: 6, unclear: 3 }, "tiny").unwrap();
        assert!(warning.contains("`tiny`") && warning.contains("3 of 10"), "{warning}");
    }
}
