//! `evol run`: seeds in, evolved dataset out.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{anyhow, bail};
use evol_core::{Engine, Models, RunStats, Seed, StatsRecorder};
use evol_io::output::{DATASET, EVOLVED, REJECTED, SEED_ANSWERS, STATS};
use evol_io::seeds::Place;
use evol_io::{read_seeds, OutputDir, ReadOptions, SeedSet};
use evol_llm::{ChatModel, ChatRequest, ErrorKind, Message, Sampling};
use evol_openai::{ClientConfig, OpenAiClient};
use serde::Serialize;

use crate::cli::RunArgs;
use crate::progress::{human, Progress};
use crate::settings::{load_templates, RunSettings, UsageError};

/// The run was stopped with Ctrl-C (exit code 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted; the records written so far are in `{0}`")]
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

    let stats = Arc::new(StatsRecorder::new(seeds.len() as u64));
    let engine =
        Engine::new(settings.engine.clone(), models, templates, stats.clone(), Arc::new(evol_core::NoJournal))?;
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
    let result = tokio::select! {
        r = engine.run(seeds, &sink) => r.map_err(anyhow::Error::from),
        _ = tokio::signal::ctrl_c() => Err(Interrupted(out.root().display().to_string()).into()),
    };
    progress.finish();

    // Whatever happened, what was decided is on disk: make the merged files.
    let snapshot = stats.snapshot();
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
