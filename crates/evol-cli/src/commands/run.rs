//! `evol run`: seeds in, evolved dataset out.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{anyhow, bail};
use evol_core::{Engine, Models, RunStats, Seed, StatsRecorder};
use evol_io::output::{DATASET, EVOLVED, JOURNAL, REJECTED, SEED_ANSWERS, STATS};
use evol_io::seeds::Place;
use evol_io::{read_seeds, OutputDir, ReadOptions, SeedSet};
use evol_journal::SqliteJournal;
use evol_llm::{ChatModel, ChatRequest, ErrorKind, Message, Sampling};
use evol_openai::{ClientConfig, OpenAiClient};
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
    /// False when the run stopped early (error or interruption).
    completed: bool,
    #[serde(flatten)]
    run: &'a RunStats,
    input: InputInfo,
    models: ModelInfo<'a>,
    settings: &'a evol_core::Settings,
}

#[derive(Serialize)]
struct InputInfo {
    file: String,
    seeds: usize,
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

    let seed_set = read_seeds(&args.seeds, ReadOptions { format: settings.format, skip_invalid: args.skip_invalid })?;
    report_skipped(&args, &seed_set);
    let SeedSet { mut seeds, invalid, empty } = seed_set;
    if let Some(limit) = args.limit {
        seeds.truncate(limit);
    }

    let out = OutputDir::prepare(&args.output, args.fresh)?;
    let models = match &settings.endpoint {
        Some(endpoint) => connect(&settings, endpoint, args.quiet).await?,
        None => embedded(&settings, &args)?,
    };
    let endpoint = settings.endpoint.as_deref().unwrap_or("the embedded engine");
    let names =
        (models.evolver.name().to_string(), models.judge.name().to_string(), models.answerer.name().to_string());

    let journal = Arc::new(SqliteJournal::open(&out.path(JOURNAL))?);
    let identity = run_identity(&settings, &seeds, &names, templates.digest());
    let committed = check_identity(&journal, &identity)?;
    if committed > 0 && !args.quiet {
        eprintln!(
            "evol: resuming the run in `{}`: {committed} calls are already committed and will not be sent again",
            out.root().display()
        );
    }

    let stats = Arc::new(StatsRecorder::new(seeds.len() as u64));
    let engine = Engine::new(settings.engine.clone(), models, templates, stats.clone(), journal)?;
    let sink = out.sink()?;
    if !args.quiet {
        eprintln!(
            "evol: {} seeds x {} rounds with `{}` at {} (concurrency {}) -> `{}`",
            seeds.len(),
            settings.engine.rounds,
            names.0,
            endpoint,
            settings.engine.concurrency,
            out.root().display()
        );
    }
    let progress = Progress::start(stats.clone(), seeds.len() as u64, settings.engine.rounds, args.quiet);
    let include: Option<Vec<Seed>> = args.include_seeds.then(|| seeds.clone());
    let run = engine.run(seeds, &sink);
    tokio::pin!(run);
    let interrupted = || Err(Interrupted(out.root().display().to_string()).into());
    let result: anyhow::Result<()> = tokio::select! {
        r = &mut run => r.map_err(anyhow::Error::from),
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
            interrupted()
        }
    };
    progress.finish();

    // Whatever happened, what was decided is on disk: make the merged files.
    let snapshot = stats.snapshot();
    out.sort_records()?;
    let rows = out.write_dataset(include.as_deref(), settings.engine.run_seed)?;
    out.write_json(
        STATS,
        &StatsFile {
            evol_version: env!("CARGO_PKG_VERSION"),
            completed: result.is_ok(),
            run: &snapshot,
            input: InputInfo {
                file: args.seeds.display().to_string(),
                seeds: snapshot.seeds as usize,
                skipped_invalid: invalid.len(),
                skipped_empty: empty.len(),
            },
            models: ModelInfo { endpoint, evolve: &names.0, judge: &names.1, answer: &names.2 },
            settings: &settings.engine,
        },
    )?;
    if !args.quiet || result.is_err() {
        eprint!("{}", summary(&snapshot, rows, &out, args.include_seeds));
    }
    result
}

/// What makes a run's results what they are: the seeds, the settings that
/// change results (not concurrency, timeouts or retries), the models and
/// the prompt templates. A journal only resumes a run of the same identity.
fn run_identity(
    settings: &RunSettings,
    seeds: &[Seed],
    names: &(String, String, String),
    templates: &str,
) -> serde_json::Value {
    let mut engine = serde_json::to_value(&settings.engine).expect("serializable");
    engine.as_object_mut().expect("an object").remove("concurrency");
    serde_json::json!({
        "seeds": evol_core::journal::digest(serde_json::to_string(seeds).expect("serializable").as_bytes()),
        "seed_count": seeds.len(),
        "settings": engine,
        "models": { "evolve": names.0, "judge": names.1, "answer": names.2 },
        "templates": templates,
    })
}

/// Records the run's identity in a new journal, or checks it against the one
/// there; returns how many calls the journal already holds.
fn check_identity(journal: &SqliteJournal, identity: &serde_json::Value) -> anyhow::Result<u64> {
    const KEY: &str = "identity";
    let Some(stored) = journal.meta(KEY)? else {
        journal.set_meta(KEY, &identity.to_string())?;
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

fn report_skipped(args: &RunArgs, set: &SeedSet) {
    let file = args.seeds.display();
    let show = |what: &str, places: Vec<(Place, String)>| {
        for (place, message) in places.iter().take(5) {
            eprintln!("warning: `{file}` {place}: {message}; {what}");
        }
        if places.len() > 5 {
            eprintln!("warning: ... and {} more {what}", places.len() - 5);
        }
    };
    show("skipped", set.invalid.clone());
    show("skipped", set.empty.iter().map(|p| (*p, "empty instruction".to_string())).collect());
}

/// Builds the clients and checks, before any work, that the server answers
/// and knows the model: a wrong URL or key fails in seconds, not after
/// minutes of retries.
async fn connect(settings: &RunSettings, endpoint: &str, quiet: bool) -> anyhow::Result<Models> {
    let mut config = ClientConfig::new(endpoint, settings.model.clone().unwrap_or_default());
    config.api_key = settings.api_key.clone();
    config.timeout = settings.timeout;
    config.retry = settings.retry;
    let client = OpenAiClient::new(config).map_err(|e| UsageError(e.to_string()))?;
    let url = client.base_url().to_string();

    let listed = match client.list_models().await {
        Ok(listed) => listed,
        Err(e) if e.kind == ErrorKind::Auth => {
            bail!(
                "the server at `{url}` refused the credentials: {e}\nhint: set the API key in ${}",
                settings.api_key_env
            )
        }
        Err(e) => bail!("cannot reach the server at `{url}`: {e}\nhint: is it running, and does the URL end in /v1?"),
    };
    let model = match (&settings.model, &listed) {
        (Some(m), _) => m.clone(),
        (None, Some(list)) if list.len() == 1 => {
            if !quiet {
                eprintln!("evol: using `{}`, the model the server offers", list[0]);
            }
            list[0].clone()
        }
        (None, Some(list)) if !list.is_empty() => {
            bail!(UsageError(format!("pass --model; the server offers: {}", shorten(list))))
        }
        (None, _) => bail!(UsageError("pass --model: the server does not list its models".into())),
    };
    let client = client.with_model(&model);
    match &listed {
        Some(list) if !list.is_empty() => {
            for m in [Some(&model), settings.answer_model.as_ref(), settings.judge_model.as_ref()].into_iter().flatten()
            {
                if !list.contains(m) {
                    eprintln!("warning: the server does not list the model `{m}` (it offers: {})", shorten(list));
                }
            }
        }
        _ => trial_call(&client, &url).await?,
    }
    let role = |name: &Option<String>| -> Arc<dyn ChatModel> {
        Arc::new(name.as_ref().map(|n| client.with_model(n)).unwrap_or_else(|| client.clone()))
    };
    Ok(Models {
        evolver: Arc::new(client.clone()),
        judge: role(&settings.judge_model),
        answerer: role(&settings.answer_model),
    })
}

/// Starts the embedded engine: every role uses the one model.
fn embedded(settings: &RunSettings, args: &RunArgs) -> anyhow::Result<Models> {
    let (name, path) = crate::local::resolve(settings.model.as_deref(), &args.engine, args.quiet)?;
    #[cfg(feature = "embedded")]
    {
        let engine = crate::local::start(name, path, &args.engine)?;
        if !args.quiet {
            eprintln!("evol: embedded engine: {}", crate::local::describe(&engine));
        }
        let model: Arc<dyn ChatModel> = Arc::new(engine);
        Ok(Models { evolver: model.clone(), judge: model.clone(), answerer: model })
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
    let path = |f: &str| out.path(f).display().to_string();
    let mut files = vec![format!("{} ({rows} rows)", path(DATASET)), path(EVOLVED), path(REJECTED)];
    if seeds_file && out.path(SEED_ANSWERS).exists() {
        files.push(path(SEED_ANSWERS));
    }
    files.push(path(STATS));
    let _ = writeln!(text, "evol: wrote {}", files.join(", "));
    text
}
