//! `evol run`: seeds in, evolved dataset out.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{anyhow, bail};
use evol_core::cost::{Budget, CapReached, Caps, Prices};
use evol_core::rng::{order_key, shard_of};
use evol_core::{Engine, EngineError, Models, RunStats, StatsRecorder};
use evol_io::output::{RunSink, DATASET, EVOLVED, JOURNAL, REJECTED, SEED_ANSWERS, STATS};
use evol_io::seeds::{open_seeds, Item, Place};
use evol_io::{OutputDir, SeedError};
use evol_journal::{LoadError, SeedRow, SqliteJournal};
use evol_llm::{ChatModel, ChatRequest, ErrorKind, Message, RetryPolicy, Sampling};
use evol_openai::{BatchLedger, BatchSettings, Batches, ClientConfig, OpenAiClient};
use evol_pool::{Endpoint, EndpointConfig, Pool};
use serde::Serialize;

use crate::cli::RunArgs;
use crate::progress::{human, Progress};
use crate::settings::{load_templates, RunSettings, UsageError};

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
    let journal = Arc::new(SqliteJournal::open(&out.path(JOURNAL))?);
    let input = load_seeds(&args, &settings, &journal)?;
    report_skipped(&args, &input);

    let models = match (&settings.batch, settings.endpoints.is_empty()) {
        (Some(batch), _) => connect_batches(&settings, *batch, journal.clone(), args.quiet).await?,
        (None, false) => connect(&settings, args.quiet).await?,
        (None, true) => embedded(&settings, &args)?,
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

    let identity = run_identity(&settings, &input, &names, templates.digest(), args.include_seeds);
    let committed = check_identity(&journal, &identity)?;
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
        },
    )?;
    if !args.quiet || result.is_err() {
        eprint!("{}", summary(&snapshot, rows, &out, args.include_seeds));
    }
    match result {
        Ok(()) => Ok(()),
        Err(EngineError::Stopped) => Err(Interrupted(out.root().display().to_string()).into()),
        Err(EngineError::Cap(reached)) => Err(CapStop { reached, out: out.root().display().to_string() }.into()),
        Err(e) => Err(e.into()),
    }
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

/// What was read from the seed file.
pub struct Input {
    /// The digest of every seed of the file (within --limit), all shards.
    pub digest: String,
    /// How many seeds the file has (within --limit), all shards.
    pub total: u64,
    /// The first few malformed records skipped, and how many there were.
    pub invalid: Vec<(Place, String)>,
    pub invalid_count: usize,
    pub empty: Vec<Place>,
    pub empty_count: usize,
}

/// How many skipped records are named in warnings.
const SHOWN: usize = 5;

/// Reads the seed file once, streaming: on a new run its seeds (of this
/// shard) are loaded into the journal; on a resume they are only digested
/// and counted, to check that the file did not change.
fn load_seeds(args: &RunArgs, settings: &RunSettings, journal: &SqliteJournal) -> anyhow::Result<Input> {
    let reader = open_seeds(&args.seeds, settings.format)?;
    let name = reader.name().to_string();
    let mut input =
        Input { digest: String::new(), total: 0, invalid: vec![], invalid_count: 0, empty: vec![], empty_count: 0 };
    let mut hasher = blake3::Hasher::new();
    let limit = args.limit.map_or(u64::MAX, |l| l as u64);
    let run_seed = settings.engine.run_seed;
    let shard = settings.shard;
    let rows = reader.enumerate().filter_map(|(pos, item)| {
        let item = match item {
            Ok(item) => item,
            Err(e) => return Some(Err(anyhow::Error::from(e))),
        };
        match item {
            Item::Seed(place, seed) => {
                if input.total >= limit {
                    return None;
                }
                input.total += 1;
                for part in [&seed.id, &seed.instruction] {
                    hasher.update(&(part.len() as u64).to_le_bytes());
                    hasher.update(part.as_bytes());
                }
                if shard.is_some_and(|s| shard_of(&seed.id, s.count) != s.index) {
                    return None;
                }
                let order_key = order_key(run_seed, &seed.id);
                Some(Ok(SeedRow { pos: pos as i64, seed, place: format!("`{name}` {place}"), order_key }))
            }
            Item::Invalid(place, message) if args.skip_invalid => {
                input.invalid_count += 1;
                if input.invalid.len() < SHOWN {
                    input.invalid.push((place, message));
                }
                None
            }
            Item::Invalid(place, message) => {
                Some(Err(SeedError::Invalid { path: name.clone(), place, message }.into()))
            }
            Item::Empty(place) => {
                input.empty_count += 1;
                if input.empty.len() < SHOWN {
                    input.empty.push(place);
                }
                None
            }
        }
    });
    if journal.seeds_loaded()? {
        for row in rows {
            row?;
        }
    } else {
        journal.load_seeds(rows).map_err(|e| match e {
            LoadError::Input(e) => e,
            LoadError::Sqlite(e) => anyhow!("the journal failed: {e}"),
            duplicate => anyhow!("{duplicate}"),
        })?;
    }
    if input.total == 0 {
        bail!(SeedError::NoSeeds { path: args.seeds.display().to_string() });
    }
    input.digest = hasher.finalize().to_hex().to_string();
    Ok(input)
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

fn report_skipped(args: &RunArgs, input: &Input) {
    let file = args.seeds.display();
    for (place, message) in &input.invalid {
        eprintln!("warning: `{file}` {place}: {message}; skipped");
    }
    for place in &input.empty {
        eprintln!("warning: `{file}` {place}: empty instruction; skipped");
    }
    let more = (input.invalid_count - input.invalid.len()) + (input.empty_count - input.empty.len());
    if more > 0 {
        eprintln!("warning: ... and {more} more skipped");
    }
}

/// The models of a run and how many calls may be in flight in all.
struct Connected {
    models: Models,
    concurrency: usize,
}

/// Builds one client per server and role, checks before any work that each
/// server answers and knows its model (a wrong URL or key fails in seconds,
/// not after minutes of retries), and puts them behind one pool. With
/// several servers, one that fails the check is left out with a warning.
async fn connect(settings: &RunSettings, quiet: bool) -> anyhow::Result<Connected> {
    let many = settings.endpoints.len() > 1;
    let mut endpoints = Vec::new();
    let mut names: Option<(String, String, String)> = None;
    let mut failures = Vec::new();
    for endpoint in &settings.endpoints {
        match check_endpoint(settings, endpoint, quiet).await {
            Ok((client, model)) => {
                let judge = settings.judge_model.clone().unwrap_or_else(|| model.clone());
                let answer = settings.answer_model.clone().unwrap_or_else(|| model.clone());
                let clients: Vec<Arc<dyn ChatModel>> = vec![
                    Arc::new(client.with_model(&model)),
                    Arc::new(client.with_model(&judge)),
                    Arc::new(client.with_model(&answer)),
                ];
                names.get_or_insert((model, judge, answer));
                let config = EndpointConfig {
                    weight: endpoint.weight,
                    adaptive: settings.adaptive,
                    requests_per_minute: endpoint.rpm.map(u64::from),
                    tokens_per_minute: endpoint.tpm,
                    ..EndpointConfig::new(
                        client.base_url(),
                        endpoint.max_concurrency.unwrap_or(settings.engine.concurrency),
                    )
                };
                endpoints.push(Endpoint { config, clients });
            }
            Err(e) if many => {
                eprintln!("warning: leaving out the server `{}`: {e:#}", endpoint.url);
                failures.push(e);
            }
            Err(e) => return Err(e),
        }
    }
    let Some(names) = names else {
        bail!("none of the {} servers can be used (see the warnings above)", settings.endpoints.len());
    };
    let concurrency = endpoints.iter().map(|e| e.config.max_concurrency).sum::<usize>().min(100_000);
    let pool = Pool::new(endpoints, settings.retry);
    Ok(Connected {
        models: Models {
            evolver: pool.role(0, names.0),
            judge: pool.role(1, names.1),
            answerer: pool.role(2, names.2),
        },
        concurrency,
    })
}

/// Sends the calls as provider batches on the one server: its batches are
/// journaled, and those a stopped run left unsettled are adopted.
async fn connect_batches(
    settings: &RunSettings,
    batch: BatchSettings,
    journal: Arc<SqliteJournal>,
    quiet: bool,
) -> anyhow::Result<Connected> {
    let endpoint = &settings.endpoints[0];
    let (client, model) = check_endpoint(settings, endpoint, quiet).await?;
    let key_env = endpoint.api_key_env.clone().unwrap_or_else(|| settings.api_key_env.clone());
    journal
        .set_meta(BATCH_SERVER, &serde_json::json!({ "url": client.base_url(), "api_key_env": key_env }).to_string())?;
    let adopted = journal.unsettled_batches()?.len();
    if adopted > 0 && !quiet {
        eprintln!("evol: adopting {adopted} batches of the earlier attempt (their results are not paid again)");
    }
    let client = OpenAiClient::new(ClientConfig { retry: settings.retry, ..client_config(settings, endpoint) })
        .map_err(|e| UsageError(e.to_string()))?;
    let ledger: Arc<dyn BatchLedger> = Arc::new(JournalLedger(journal));
    let batches =
        Batches::start(client, ledger, batch).await.map_err(|e| anyhow!("cannot adopt the run's batches: {e}"))?;
    let judge = settings.judge_model.clone().unwrap_or_else(|| model.clone());
    let answer = settings.answer_model.clone().unwrap_or_else(|| model.clone());
    Ok(Connected {
        models: Models { evolver: batches.role(&model), judge: batches.role(&judge), answerer: batches.role(&answer) },
        concurrency: batch.max_requests,
    })
}

/// The journal's meta key for the server of a `--batch-api` run.
pub const BATCH_SERVER: &str = "batch_server";

/// The run's batches, kept in its journal.
struct JournalLedger(Arc<SqliteJournal>);

impl BatchLedger for JournalLedger {
    fn submitted(&self, batch_id: &str) -> Result<(), String> {
        self.0.batch_submitted(batch_id).map_err(|e| format!("the journal failed: {e}"))
    }
    fn unsettled(&self) -> Result<Vec<String>, String> {
        self.0.unsettled_batches().map_err(|e| format!("the journal failed: {e}"))
    }
}

fn client_config(settings: &RunSettings, endpoint: &crate::settings::Endpoint) -> ClientConfig {
    let mut config = ClientConfig::new(&endpoint.url, String::new());
    config.api_key = endpoint.api_key.clone();
    config.timeout = settings.timeout;
    config.retry = RetryPolicy { max_retries: 0, ..settings.retry };
    config
}

/// Checks one server; returns its client (making single attempts: the pool
/// retries) and the model to evolve with.
async fn check_endpoint(
    settings: &RunSettings,
    endpoint: &crate::settings::Endpoint,
    quiet: bool,
) -> anyhow::Result<(OpenAiClient, String)> {
    let client = OpenAiClient::new(client_config(settings, endpoint)).map_err(|e| UsageError(e.to_string()))?;
    let url = client.base_url().to_string();
    let key_var = endpoint.api_key_env.as_deref().unwrap_or(&settings.api_key_env);

    let listed = match client.list_models().await {
        Ok(listed) => listed,
        Err(e) if e.kind == ErrorKind::Auth => {
            bail!("the server at `{url}` refused the credentials: {e}\nhint: set the API key in ${key_var}")
        }
        Err(e) => bail!("cannot reach the server at `{url}`: {e}\nhint: is it running, and does the URL end in /v1?"),
    };
    let model = match (endpoint.model.as_ref().or(settings.model.as_ref()), &listed) {
        (Some(m), _) => m.clone(),
        (None, Some(list)) if list.len() == 1 => {
            if !quiet {
                eprintln!("evol: using `{}`, the model `{url}` offers", list[0]);
            }
            list[0].clone()
        }
        (None, Some(list)) if !list.is_empty() => {
            bail!(UsageError(format!("pass --model; the server `{url}` offers: {}", shorten(list))))
        }
        (None, _) => bail!(UsageError(format!("pass --model: the server `{url}` does not list its models"))),
    };
    let client = client.with_model(&model);
    match &listed {
        Some(list) if !list.is_empty() => {
            for m in [Some(&model), settings.answer_model.as_ref(), settings.judge_model.as_ref()].into_iter().flatten()
            {
                if !list.contains(m) {
                    eprintln!(
                        "warning: the server `{url}` does not list the model `{m}` (it offers: {})",
                        shorten(list)
                    );
                }
            }
        }
        _ => trial_call(&client, &url).await?,
    }
    Ok((client, model))
}

/// Starts the embedded engine: every role uses the one model.
fn embedded(settings: &RunSettings, args: &RunArgs) -> anyhow::Result<Connected> {
    let (name, path) = crate::local::resolve(settings.model.as_deref(), &args.engine, args.quiet)?;
    #[cfg(feature = "embedded")]
    {
        let engine = crate::local::start(name, path, &args.engine)?;
        if !args.quiet {
            eprintln!("evol: embedded engine: {}", crate::local::describe(&engine));
        }
        let model: Arc<dyn ChatModel> = Arc::new(engine);
        Ok(Connected {
            models: Models { evolver: model.clone(), judge: model.clone(), answerer: model },
            concurrency: settings.engine.concurrency,
        })
    }
    #[cfg(not(feature = "embedded"))]
    match crate::local::start(name, path, &args.engine)? {}
}

/// A one-token request, for servers without `/models`.
async fn trial_call(client: &OpenAiClient, url: &str) -> anyhow::Result<()> {
    let request = ChatRequest::new(
        vec![Message::user("Say OK.")],
        Sampling { temperature: 0.0, top_p: 1.0, max_tokens: 1, seed: None },
    );
    match client.chat(request).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind.is_fatal() => Err(anyhow!("the server at `{url}` refused a trial request: {e}")),
        Err(e) => Err(anyhow!("the server at `{url}` did not answer a trial request: {e}")),
    }
}

fn shorten(list: &[String]) -> String {
    let mut s = list.iter().take(10).map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
    if list.len() > 10 {
        let _ = write!(s, " and {} more", list.len() - 10);
    }
    s
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
