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
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use evol_llama::{finish_reason_name, Event, LlamaEngine};
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
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig { api_key: None, max_tokens_cap: 4096, max_body_bytes: 4 * 1024 * 1024 }
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
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(Arc::new(AppState { engine, config }))
}

/// Serves `app` on `listener` until `shutdown` resolves (then lets the
/// requests in progress finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Liveness, and what the engine has done (batch fill, tokens, time).
async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "status": "ok", "engine": state.engine.activity().report() }))
}

fn check_key(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.config.api_key else {
        return Ok(());
    };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
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
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_key(&state, &headers)?;
    let body = body.map_err(|e| ApiError {
        status: e.status(),
        message: format!("cannot read the request body: {}", e.body_text()),
        kind: "invalid_request_error",
        param: None,
    })?;
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
                message: Some(ResponseMessage::assistant(reply.text)),
                finish_reason: Some(finish_reason_name(&reply.finish_reason).to_string()),
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
    let body = UnboundedReceiverStream::new(events).map(move |event| match event {
        Event::Text(piece) => data(text(&chunk(Delta { content: Some(piece), ..Delta::default() }, None))),
        Event::Done(Ok(f)) => {
            let mut last = chunk(Delta::default(), Some(finish_reason_name(&f.reason)));
            if include_usage {
                let (prompt, completion, cached) =
                    (f.prompt_tokens.into(), f.completion_tokens.into(), f.cached_tokens.into());
                last.usage = Some(CompletionUsage::new(prompt, completion, cached));
            }
            data(text(&last))
        }
        Event::Done(Err(message)) => {
            data(json!({ "error": { "message": message, "type": "invalid_request_error" } }).to_string())
        }
    });
    let done = futures::stream::iter([Ok(SseEvent::default().data("[DONE]"))]);
    Ok(Sse::new(head.chain(body).chain(done)).into_response())
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}
