//! Connecting a backend: servers behind a pool, provider batches, or the
//! embedded engine; each server checked before any work (a trial call
//! where it does not list the model), so a wrong URL, key or model fails
//! in seconds.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{anyhow, bail};
use evol_core::{Role, Roles};
use evol_llm::{ChatModel, ChatRequest, ErrorKind, Message, RetryPolicy, Sampling};
use evol_openai::{BatchLedger, BatchSettings, Batches, ClientConfig, OpenAiClient};
use evol_pool::{Endpoint, EndpointConfig, Pool};
use evol_store::{BatchServer, SqliteJournal};

use crate::observe::Observer;
use crate::settings::{Backend, EngineSettings, Execution, ModelSettings, RoleModels, Servers};
use crate::UsageError;

/// The limits a server was used with, for `stats.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerLimits {
    pub url: String,
    /// The most calls in flight on it (the ceiling its adapted concurrency
    /// moves under).
    pub max_concurrency: usize,
    pub weight: f64,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
}

/// The models of a run and how many calls may be in flight in all.
pub struct Connected {
    pub roles: Roles,
    /// The most calls in flight in all (the sum of the servers' ceilings).
    pub concurrency: usize,
    /// The most calls let into the models at once: `concurrency`, or more
    /// when a pool holds each server to its own limit.
    pub admitted: usize,
    /// Each server's limits, as used.
    pub limits: Vec<ServerLimits>,
    /// The servers' pool, for their statistics.
    pub pool: Option<Pool>,
    /// The provider batches, with `--batch-api` (watched for a stall).
    pub batches: Option<Batches>,
    /// The embedded engine's activity so far, for `stats.json`.
    pub engine: Option<Box<dyn Fn() -> serde_json::Value + Send + Sync>>,
}

/// Connects the models of `roles` on `backend`: the servers (or their
/// batch API), or the embedded engine. `journal` keeps a batch run's
/// batches.
pub async fn connect_models(
    backend: &Backend,
    wanted: &RoleModels,
    roles: &[Role],
    concurrency: usize,
    journal: &Arc<SqliteJournal>,
    observer: &dyn Observer,
) -> anyhow::Result<Connected> {
    match backend {
        Backend::Servers(servers) => match servers.batch {
            Some(batch) => connect_batches(servers, wanted, roles, batch, journal.clone(), observer).await,
            None => connect(servers, wanted, roles, concurrency, observer).await,
        },
        Backend::Embedded(engine) => embedded(engine, wanted, roles, concurrency, observer),
    }
}

/// Connects the one model of a job that plays `role` (the model flags'
/// `--model`).
pub async fn connect_role(
    model: &ModelSettings,
    execution: &Execution,
    role: Role,
    journal: &Arc<SqliteJournal>,
    observer: &dyn Observer,
) -> anyhow::Result<Connected> {
    let wanted = RoleModels { evolve: model.model.clone(), ..RoleModels::default() };
    connect_models(&model.backend, &wanted, &[role], execution.concurrency, journal, observer).await
}

/// Where the models are, in words (URLs without credentials).
pub fn describe_backend(backend: &Backend) -> String {
    match backend {
        Backend::Servers(servers) => match servers.endpoints.len() {
            1 => evol_text::redact_url(&servers.endpoints[0].url).into_owned(),
            n => format!("{n} servers"),
        },
        Backend::Embedded(_) => "the embedded engine".to_string(),
    }
}

/// Builds one client per server and role, checks before any work that each
/// server answers and knows its model (a wrong URL or key fails in seconds,
/// not after minutes of retries), and puts them behind one pool. With
/// several servers, one that fails the check is left out with a warning.
pub async fn connect(
    servers: &Servers,
    wanted: &RoleModels,
    roles: &[Role],
    concurrency: usize,
    observer: &dyn Observer,
) -> anyhow::Result<Connected> {
    let many = servers.endpoints.len() > 1;
    let mut endpoints = Vec::new();
    let mut limits = Vec::new();
    let mut names: Option<std::collections::BTreeMap<Role, String>> = None;
    let mut failures = Vec::new();
    for endpoint in &servers.endpoints {
        match check_endpoint(servers, wanted, endpoint, observer).await {
            Ok((client, model)) => {
                let role_models = role_models(wanted, &model, roles);
                let clients = role_models
                    .iter()
                    .map(|(role, m)| (role.name().to_string(), Arc::new(client.with_model(m)) as Arc<dyn ChatModel>))
                    .collect();
                names.get_or_insert(role_models);
                let max_concurrency = endpoint.max_concurrency.unwrap_or(concurrency);
                let config = EndpointConfig {
                    weight: endpoint.weight,
                    adaptive: servers.adaptive,
                    requests_per_minute: endpoint.rpm.map(u64::from),
                    tokens_per_minute: endpoint.tpm,
                    // Replies taking half the timeout: the server is close to
                    // timing requests out; send it less.
                    slow_after: Some(servers.timeout / 2),
                    ..EndpointConfig::new(evol_text::redact_url(client.base_url()), max_concurrency)
                };
                limits.push(ServerLimits {
                    url: evol_text::redact_url(client.base_url()).into_owned(),
                    max_concurrency,
                    weight: endpoint.weight,
                    rpm: endpoint.rpm,
                    tpm: endpoint.tpm,
                });
                endpoints.push(Endpoint { config, clients });
            }
            Err(e) if many => {
                observer
                    .say(&format!("warning: leaving out the server `{}`: {e:#}", evol_text::redact_url(&endpoint.url)));
                failures.push(e);
            }
            Err(e) => return Err(e),
        }
    }
    let Some(names) = names else {
        bail!("none of the {} servers can be used (see the warnings above)", servers.endpoints.len());
    };
    let total = endpoints.iter().map(|e| e.config.max_concurrency).sum::<usize>().min(100_000);
    let pool = Pool::new(endpoints, servers.retry);
    let roles =
        names.into_iter().fold(Roles::new(), |roles, (role, name)| roles.with(role, pool.role(role.name(), name)));
    // The pool holds each server to its limit; the caller lets in a
    // quarter more, so that calls backing off before a retry do not keep
    // the servers' slots idle (more costs the oldest-chain-first order:
    // `scripts/bench-pipeline` measured 0.955 at a quarter, 0.947 at twice).
    Ok(Connected {
        roles,
        concurrency: total,
        admitted: total + total / 4,
        limits,
        pool: Some(pool),
        batches: None,
        engine: None,
    })
}

/// The model of each role of a command: the one asked for, else the
/// server's (a scorer defaults to the judge's model).
fn role_models(wanted: &RoleModels, evolve: &str, roles: &[Role]) -> std::collections::BTreeMap<Role, String> {
    roles
        .iter()
        .map(|&role| {
            let asked = match role {
                Role::Evolve => None,
                Role::Judge => wanted.judge.as_ref(),
                Role::Answer => wanted.answer.as_ref(),
                Role::Score => wanted.score.as_ref().or(wanted.judge.as_ref()),
                Role::Optimize => wanted.optimize.as_ref(),
                // The evaluation commands' one model (`-m`).
                Role::Compare => None,
            };
            (role, asked.cloned().unwrap_or_else(|| evolve.to_string()))
        })
        .collect()
}

/// Sends the calls as provider batches on the one server: its batches are
/// journaled, and those a stopped run left unsettled are adopted.
pub async fn connect_batches(
    servers: &Servers,
    wanted: &RoleModels,
    roles: &[Role],
    batch: BatchSettings,
    journal: Arc<SqliteJournal>,
    observer: &dyn Observer,
) -> anyhow::Result<Connected> {
    let endpoint = &servers.endpoints[0];
    let (client, model) = check_endpoint(servers, wanted, endpoint, observer).await?;
    let url = client.base_url().to_string();
    let key_env = endpoint.api_key_env.clone().unwrap_or_else(|| servers.api_key_env.clone());
    journal.set_batch_server(&BatchServer { url: url.clone(), api_key_env: key_env })?;
    let adopted = journal.unsettled_batches()?.len();
    if adopted > 0 {
        observer.say(&format!(
            "evol: adopting {adopted} batches of the earlier attempt (their results are not paid again)"
        ));
    }
    let client = OpenAiClient::new(ClientConfig { retry: servers.retry, ..client_config(servers, endpoint) })
        .map_err(|e| UsageError(e.to_string()))?;
    let ledger: Arc<dyn BatchLedger> = Arc::new(JournalLedger(journal));
    let batches =
        Batches::start(client, ledger, batch).await.map_err(|e| anyhow!("cannot adopt the run's batches: {e}"))?;
    let roles = role_models(wanted, &model, roles)
        .into_iter()
        .fold(Roles::new(), |roles, (role, name)| roles.with(role, batches.role(&name)));
    let limits = vec![ServerLimits {
        url,
        max_concurrency: batch.max_requests,
        weight: endpoint.weight,
        rpm: endpoint.rpm,
        tpm: endpoint.tpm,
    }];
    Ok(Connected {
        roles,
        concurrency: batch.max_requests,
        admitted: batch.max_requests,
        limits,
        pool: None,
        batches: Some(batches),
        engine: None,
    })
}

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

fn client_config(servers: &Servers, endpoint: &crate::settings::Endpoint) -> ClientConfig {
    let mut config = ClientConfig::new(&endpoint.url, String::new());
    config.api_key = endpoint.api_key.clone();
    config.timeout = servers.timeout;
    config.retry = RetryPolicy { max_retries: 0, ..servers.retry };
    config
}

/// Checks one server; returns its client (making single attempts: the pool
/// retries) and the model to evolve with.
async fn check_endpoint(
    servers: &Servers,
    wanted: &RoleModels,
    endpoint: &crate::settings::Endpoint,
    observer: &dyn Observer,
) -> anyhow::Result<(OpenAiClient, String)> {
    let client = OpenAiClient::new(client_config(servers, endpoint)).map_err(|e| UsageError(e.to_string()))?;
    let url = client.base_url().to_string();
    let key_var = endpoint.api_key_env.as_deref().unwrap_or(&servers.api_key_env);

    let listed = match client.list_models().await {
        Ok(listed) => listed,
        Err(e) if e.kind == ErrorKind::Auth => {
            bail!("the server at `{url}` refused the credentials: {e}\nhint: set the API key in ${key_var}")
        }
        Err(e) => bail!("cannot reach the server at `{url}`: {e}\nhint: is it running, and does the URL end in /v1?"),
    };
    let model = match (endpoint.model.as_ref().or(wanted.evolve.as_ref()), &listed) {
        (Some(m), _) => m.clone(),
        (None, Some(list)) if list.len() == 1 => {
            observer.say(&format!("evol: using `{}`, the model `{url}` offers", list[0]));
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
            // A model the server does not list may still be served (an
            // alias): one trial call tells, before any work and before the
            // run leaves anything behind.
            for m in [Some(&model), wanted.answer.as_ref(), wanted.judge.as_ref(), wanted.optimize.as_ref()]
                .into_iter()
                .flatten()
            {
                if !list.contains(m) {
                    trial_call(&client.with_model(m), &url).await.map_err(|e| {
                        anyhow!("the server `{url}` does not list the model `{m}` (it offers: {}): {e}", shorten(list))
                    })?;
                }
            }
        }
        _ => trial_call(&client, &url).await?,
    }
    Ok((client, model))
}

/// Starts the embedded engine: every role uses the one model.
pub fn embedded(
    engine: &EngineSettings,
    wanted: &RoleModels,
    roles: &[Role],
    concurrency: usize,
    observer: &dyn Observer,
) -> anyhow::Result<Connected> {
    let (name, path) = crate::engine::resolve(wanted.evolve.as_deref(), engine, observer)?;
    #[cfg(feature = "embedded")]
    {
        let engine = crate::engine::start(name, path, engine)?;
        observer.say(&format!("evol: embedded engine: {}", crate::engine::describe(&engine)));
        let report = engine.clone();
        let model: Arc<dyn ChatModel> = Arc::new(engine);
        Ok(Connected {
            roles: Roles::all(roles, model),
            concurrency,
            admitted: concurrency,
            limits: Vec::new(),
            pool: None,
            batches: None,
            engine: Some(Box::new(move || crate::engine::activity(&report))),
        })
    }
    #[cfg(not(feature = "embedded"))]
    {
        let _ = concurrency;
        match crate::engine::start(name, path, engine)? {}
    }
}

/// A one-token request, for servers without `/models`.
async fn trial_call(client: &OpenAiClient, url: &str) -> anyhow::Result<()> {
    let request = ChatRequest::new(
        vec![Message::user("Say OK.")],
        Sampling { temperature: 0.0, top_p: 1.0, max_tokens: 1, seed: None, thinking: Default::default() },
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
