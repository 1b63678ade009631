//! `evol serve` as a library: the embedded llama.cpp engine behind an
//! OpenAI-compatible HTTP API.
//!
//! [`app`] builds the [`Router`] over a running [`LlamaEngine`]:
//! `POST /v1/chat/completions` (plain, or server-sent events with
//! `stream: true`), `GET /v1/models`, `GET /health`. Bodies are read into
//! `evol_wire`'s typed request and validated (`request::validate`) before
//! the engine sees them; every error is an OpenAI-style JSON body
//! (`error::ApiError`). All clients share the engine's one continuous
//! batch. [`serve`] runs a router on a listener the caller bound (tests
//! bind port 0, or call the router in-process) until `shutdown` resolves.

mod error;
mod request;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use evol_llama::{Event, LlamaEngine};
use evol_llm::ChatModel;
use evol_wire::{
    ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice, CompletionUsage, Delta, ModelList, ResponseMessage,
};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_stream::wrappers::UnboundedReceiverStream;

pub use error::ApiError;
pub use request::{validate, Valid};

/// How the server treats requests.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Require `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// The most tokens one request may generate; larger `max_tokens` are
    /// capped.
    pub max_tokens_cap: u32,
    /// Largest accepted request body, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's body (longer: 408).
    pub body_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            api_key: None,
            max_tokens_cap: 4096,
            max_body_bytes: 4 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
        }
    }
}

struct AppState {
    engine: LlamaEngine,
    config: ServeConfig,
}

/// The server's routes over `engine`.
pub fn app(engine: LlamaEngine, config: ServeConfig) -> Router {
    let max_body = config.max_body_bytes;
    let config = ServeConfig { api_key: config.api_key.filter(|k| !k.is_empty()), ..config };
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(Arc::new(AppState { engine, config }))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::NOT_FOUND,
        message: format!(
            "no route `{}`: this server has POST /v1/chat/completions, GET /v1/models and GET /health",
            uri.path()
        ),
        kind: "invalid_request_error",
        param: None,
    }
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        message: format!("`{method}` is not allowed on `{}`", uri.path()),
        kind: "invalid_request_error",
        param: None,
    }
}

/// How connections are held to account (see [`serve_with`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request's headers (also the
    /// longest a kept-alive connection may idle).
    pub header_timeout: Duration,
    /// The most connections open at once; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { header_timeout: Duration::from_secs(10), max_connections: 512 }
    }
}
/// How long a shutdown waits for the requests in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` resolves, with the default
/// [`Limits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, shutdown, Limits::default()).await
}

/// Serves `app` on `listener` until `shutdown` resolves (then lets the
/// requests in progress finish, for up to 30 s). A client that does not
/// send its headers within `limits.header_timeout` is disconnected, and at
/// most `limits.max_connections` are open at once, so slow or idle clients
/// cannot take the server away from the others; a body has
/// [`ServeConfig::body_timeout`].
///
/// Written on hyper directly because `axum::serve` sets neither a header
/// timeout nor a connection limit.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: wait, do not spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    Ok(())
}

/// Liveness, and what the engine has done (batch fill, tokens, time).
async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "status": "ok", "engine": state.engine.activity().report() }))
}

fn check_key(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.config.api_key else {
        return Ok(());
    };
    // The scheme is case-insensitive (RFC 9110): `bearer KEY` is fine.
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if given == Some(key.as_str()) {
        return Ok(());
    }
    Err(ApiError::unauthorized())
}

async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<ModelList>, ApiError> {
    check_key(&state, &headers)?;
    Ok(Json(ModelList::of(&[state.engine.name()], "evol")))
}

async fn chat(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    check_key(&state, &headers)?;
    let body = read_body(body, state.config.max_body_bytes, state.config.body_timeout).await?;
    let valid = validate(&body, state.engine.name(), state.config.max_tokens_cap)?;
    let id = format!("chatcmpl-{:016x}", rand_id());
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let model = state.engine.name().to_string();
    if !valid.stream {
        let reply = state.engine.chat(valid.request).await.map_err(ApiError::engine)?;
        let usage = reply.usage;
        let completion = ChatCompletion {
            id,
            object: "chat.completion".into(),
            created,
            model,
            choices: vec![Choice {
                index: 0,
                // A thinking trace apart, as vLLM's reasoning parsers send it.
                message: Some(ResponseMessage {
                    reasoning_content: reply.reasoning,
                    ..ResponseMessage::assistant(reply.text)
                }),
                finish_reason: Some(reply.finish_reason.as_sent().to_string()),
                ..Choice::default()
            }],
            usage: Some(CompletionUsage::new(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)),
        };
        return Ok(Json(completion).into_response());
    }

    let events = state.engine.stream(&valid.request).map_err(ApiError::engine)?;
    let include_usage = valid.include_usage;
    let chunk = move |delta: Delta, finish: Option<&str>| ChatCompletionChunk {
        id: id.clone(),
        object: "chat.completion.chunk".into(),
        created,
        model: model.clone(),
        choices: vec![ChunkChoice { index: 0, delta, finish_reason: finish.map(String::from), logprobs: None }],
        usage: None,
    };
    let data = |text: String| Ok::<_, Infallible>(SseEvent::default().data(text));
    let text = |chunk: &ChatCompletionChunk| serde_json::to_string(chunk).expect("serializable");
    let first = chunk(Delta { role: Some("assistant".into()), content: Some(String::new()) }, None);
    let head = futures::stream::iter([data(text(&first))]);
    // The engine closes the channel after `Done`; if the client leaves,
    // axum drops this stream and with it the receiver, which cancels the
    // generation.
    let body = UnboundedReceiverStream::new(events).flat_map(move |event| {
        let events = match event {
            Event::Text(piece) => vec![data(text(&chunk(Delta { content: Some(piece), ..Delta::default() }, None)))],
            Event::Done(Ok(f)) => {
                let mut events = vec![data(text(&chunk(Delta::default(), Some(f.reason.as_sent()))))];
                if include_usage {
                    // As OpenAI sends it: one more chunk, with no choices.
                    let (prompt, completion, cached) =
                        (f.prompt_tokens.into(), f.completion_tokens.into(), f.cached_tokens.into());
                    let mut usage = chunk(Delta::default(), None);
                    usage.choices.clear();
                    usage.usage = Some(CompletionUsage::new(prompt, completion, cached));
                    events.push(data(text(&usage)));
                }
                events
            }
            Event::Done(Err(message)) => {
                vec![data(json!({ "error": { "message": message, "type": "invalid_request_error" } }).to_string())]
            }
        };
        futures::stream::iter(events)
    });
    let done = futures::stream::iter([Ok(SseEvent::default().data("[DONE]"))]);
    Ok(Sse::new(head.chain(body).chain(done)).into_response())
}

/// The request body, within the size limit and the time limit.
async fn read_body(body: axum::body::Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    use axum::http::StatusCode;
    let read = axum::body::to_bytes(body, limit);
    let error = |status, message: String| ApiError { status, message, kind: "invalid_request_error", param: None };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {:.0} s", timeout.as_secs_f64()),
        )),
        Ok(Err(e)) if is_too_large(&e) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the limit of {limit} bytes"),
        )),
        Ok(Err(e)) => Err(error(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}"))),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

fn is_too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}
