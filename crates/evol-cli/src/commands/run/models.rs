//! The models of a run: servers behind a pool, provider batches, or the
//! embedded engine; each server checked before any work.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{anyhow, bail};
use evol_core::Models;
use evol_journal::SqliteJournal;
use evol_llm::{ChatModel, ChatRequest, ErrorKind, Message, RetryPolicy, Sampling};
use evol_openai::{BatchLedger, BatchSettings, Batches, ClientConfig, OpenAiClient};
use evol_pool::{Endpoint, EndpointConfig, Pool};

use crate::cli::RunArgs;
use crate::settings::{RunSettings, UsageError};

/// The models of a run and how many calls may be in flight in all.
pub(super) struct Connected {
    pub models: Models,
    pub concurrency: usize,
    /// The servers' pool, for their statistics.
    pub pool: Option<Pool>,
    /// The embedded engine's activity so far, for `stats.json`.
    pub engine: Option<Box<dyn Fn() -> serde_json::Value + Send + Sync>>,
}

/// Builds one client per server and role, checks before any work that each
/// server answers and knows its model (a wrong URL or key fails in seconds,
/// not after minutes of retries), and puts them behind one pool. With
/// several servers, one that fails the check is left out with a warning.
pub(super) async fn connect(settings: &RunSettings, quiet: bool) -> anyhow::Result<Connected> {
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
                    // Replies taking half the timeout: the server is close to
                    // timing requests out; send it less.
                    slow_after: Some(settings.timeout / 2),
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
        pool: Some(pool),
        engine: None,
    })
}

/// Sends the calls as provider batches on the one server: its batches are
/// journaled, and those a stopped run left unsettled are adopted.
pub(super) async fn connect_batches(
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
        pool: None,
        engine: None,
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
pub(super) fn embedded(settings: &RunSettings, args: &RunArgs) -> anyhow::Result<Connected> {
    let (name, path) = crate::local::resolve(settings.model.as_deref(), &args.engine, args.quiet)?;
    #[cfg(feature = "embedded")]
    {
        let engine = crate::local::start(name, path, &args.engine)?;
        if !args.quiet {
            eprintln!("evol: embedded engine: {}", crate::local::describe(&engine));
        }
        let report = engine.clone();
        let model: Arc<dyn ChatModel> = Arc::new(engine);
        Ok(Connected {
            models: Models { evolver: model.clone(), judge: model.clone(), answerer: model },
            concurrency: settings.engine.concurrency,
            pool: None,
            engine: Some(Box::new(move || crate::local::activity(&report))),
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
