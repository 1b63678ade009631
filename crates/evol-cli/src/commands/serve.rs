//! `evol serve`: the embedded engine behind an OpenAI-compatible HTTP API.
//!
//! `POST /v1/chat/completions` (plain, or server-sent events with
//! `stream: true`), `GET /v1/models`, `GET /health`. Requests are validated
//! into a [`ChatRequest`] before the engine sees them; every error is an
//! OpenAI-style JSON body. All clients share the engine's one continuous
//! batch.

use crate::cli::ServeArgs;

#[cfg(not(feature = "embedded"))]
pub async fn serve(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("this evol was built without the embedded engine (cargo feature `embedded`)")
}

#[cfg(feature = "embedded")]
pub use imp::serve;

#[cfg(feature = "embedded")]
mod imp {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::time::{SystemTime, UNIX_EPOCH};

    use anyhow::Context;
    use axum::body::Bytes;
    use axum::extract::rejection::BytesRejection;
    use axum::extract::{DefaultBodyLimit, State};
    use axum::http::{header, HeaderMap, StatusCode};
    use axum::response::sse::{Event as SseEvent, Sse};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use evol_llama::{finish_reason_name, Event, LlamaEngine};
    use evol_llm::{ChatModel, ChatRequest, ErrorKind, Message, Role, Sampling};
    use futures::StreamExt;
    use serde_json::{json, Value};
    use tokio_stream::wrappers::UnboundedReceiverStream;

    use super::ServeArgs;

    struct AppState {
        engine: LlamaEngine,
        api_key: Option<String>,
        max_tokens_cap: u32,
    }

    /// An error answered in OpenAI's shape.
    struct ApiError {
        status: StatusCode,
        message: String,
        kind: &'static str,
        param: Option<&'static str>,
    }

    impl ApiError {
        fn invalid(param: &'static str, message: impl Into<String>) -> ApiError {
            ApiError {
                status: StatusCode::BAD_REQUEST,
                message: message.into(),
                kind: "invalid_request_error",
                param: Some(param),
            }
        }
    }

    impl IntoResponse for ApiError {
        fn into_response(self) -> Response {
            let body = json!({ "error": { "message": self.message, "type": self.kind, "param": self.param, "code": Value::Null } });
            (self.status, Json(body)).into_response()
        }
    }

    pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
        let engine_settings = crate::settings::EngineSettings::from_args(args.engine)?;
        let (name, path) = crate::local::resolve(Some(&args.model), &engine_settings, args.quiet)?;
        let engine = crate::local::start(name, path, &engine_settings)?;
        if !args.quiet {
            eprintln!("evol: embedded engine: {}", crate::local::describe(&engine));
        }
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("cannot listen on `{}`", args.addr))?;
        let addr = listener.local_addr()?;
        let state = AppState {
            engine,
            api_key: args.api_key.filter(|k| !k.is_empty()),
            max_tokens_cap: args.max_tokens_cap.max(1),
        };
        let app = app(state, args.max_body_bytes);
        println!("listening on http://{addr}/v1");
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    }

    fn app(state: AppState, max_body: usize) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/health", get(health))
            .layer(DefaultBodyLimit::max(max_body))
            .with_state(Arc::new(state))
    }

    /// Liveness, and what the engine has done (batch fill, tokens, time).
    async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
        Json(json!({ "status": "ok", "engine": crate::local::activity(&state.engine) }))
    }

    fn check_key(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &state.api_key else {
            return Ok(());
        };
        let given =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if given == Some(key.as_str()) {
            return Ok(());
        }
        Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "missing or wrong API key (send `Authorization: Bearer KEY`)".into(),
            kind: "invalid_request_error",
            param: None,
        })
    }

    async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
        check_key(&state, &headers)?;
        Ok(Json(json!({
            "object": "list",
            "data": [{ "id": state.engine.name(), "object": "model", "created": 0, "owned_by": "evol" }],
        })))
    }

    /// A validated request.
    struct Valid {
        request: ChatRequest,
        stream: bool,
        include_usage: bool,
    }

    fn validate(state: &AppState, body: &Value) -> Result<Valid, ApiError> {
        let Some(object) = body.as_object() else {
            return Err(ApiError::invalid("body", "the body must be a JSON object"));
        };
        if let Some(model) = object.get("model").and_then(Value::as_str) {
            if model != state.engine.name() {
                return Err(ApiError {
                    status: StatusCode::NOT_FOUND,
                    message: format!("the model `{model}` does not exist; this server runs `{}`", state.engine.name()),
                    kind: "invalid_request_error",
                    param: Some("model"),
                });
            }
        }
        let messages = match object.get("messages") {
            Some(Value::Array(list)) if !list.is_empty() => list,
            Some(Value::Array(_)) => return Err(ApiError::invalid("messages", "`messages` must not be empty")),
            Some(_) => return Err(ApiError::invalid("messages", "`messages` must be an array")),
            None => return Err(ApiError::invalid("messages", "missing required parameter `messages`")),
        };
        let mut parsed = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let role = match m.get("role").and_then(Value::as_str) {
                Some("system") | Some("developer") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                other => {
                    return Err(ApiError::invalid(
                        "messages",
                        format!(
                            "messages[{i}].role must be one of system, developer, user, assistant (got {})",
                            other.map_or("none".to_string(), |r| format!("`{r}`"))
                        ),
                    ))
                }
            };
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                            (Some("text"), Some(t)) => text.push_str(t),
                            _ => {
                                return Err(ApiError::invalid(
                                    "messages",
                                    format!("messages[{i}].content: only text parts are supported"),
                                ))
                            }
                        }
                    }
                    text
                }
                Some(Value::Null) | None if role == Role::Assistant => String::new(),
                _ => {
                    return Err(ApiError::invalid(
                        "messages",
                        format!("messages[{i}].content must be a string or an array of text parts"),
                    ))
                }
            };
            parsed.push(Message { role, content });
        }

        let number = |name: &'static str| -> Result<Option<f64>, ApiError> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => Ok(n.as_f64()),
                Some(_) => Err(ApiError::invalid(name, format!("`{name}` must be a number"))),
            }
        };
        let max_tokens = match (number("max_completion_tokens")?, number("max_tokens")?) {
            (Some(n), _) | (None, Some(n)) => {
                if n < 1.0 || n.fract() != 0.0 {
                    return Err(ApiError::invalid("max_tokens", "`max_tokens` must be a positive integer"));
                }
                (n.min(u32::MAX as f64) as u32).min(state.max_tokens_cap)
            }
            (None, None) => state.max_tokens_cap,
        };
        let temperature = number("temperature")?.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid("temperature", "`temperature` must be between 0 and 2"));
        }
        let top_p = number("top_p")?.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid("top_p", "`top_p` must be above 0 and at most 1"));
        }
        if let Some(n) = number("n")? {
            if n != 1.0 {
                return Err(ApiError::invalid("n", "only `n` = 1 is supported"));
            }
        }
        let seed = match object.get("seed") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .map(|s| s as u64)
                    .or_else(|| v.as_u64())
                    .ok_or_else(|| ApiError::invalid("seed", "`seed` must be an integer"))?,
            ),
        };
        let stop = match object.get("stop") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(list)) if list.len() <= 4 && list.iter().all(Value::is_string) => {
                list.iter().filter_map(|v| v.as_str().map(String::from)).collect()
            }
            Some(_) => {
                return Err(ApiError::invalid("stop", "`stop` must be a string or an array of at most 4 strings"))
            }
        };
        let stream = match object.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::invalid("stream", "`stream` must be a boolean")),
        };
        // Features that change what a client gets back are refused rather
        // than ignored: a client asking for tool calls, JSON or logprobs
        // must not silently get plain text.
        let unsupported =
            |name: &'static str, what: &str| ApiError::invalid(name, format!("{what} not supported by this server"));
        match object.get("tools") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) if list.is_empty() => {}
            Some(_) => return Err(unsupported("tools", "tools (function calling) are")),
        }
        match object.get("tool_choice") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "none" || s == "auto" => {}
            Some(_) => return Err(unsupported("tool_choice", "`tool_choice` other than `none` or `auto` is")),
        }
        match object.get("response_format") {
            None | Some(Value::Null) => {}
            Some(f) if f.get("type").and_then(Value::as_str) == Some("text") => {}
            Some(_) => return Err(unsupported("response_format", "`response_format` other than `text` is")),
        }
        if object.get("logprobs").and_then(Value::as_bool) == Some(true)
            || object.get("top_logprobs").is_some_and(|v| !v.is_null())
        {
            return Err(unsupported("logprobs", "logprobs are"));
        }
        let include_usage =
            object.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
        let sampling = Sampling { temperature: temperature as f32, top_p: top_p as f32, max_tokens, seed };
        Ok(Valid { request: ChatRequest { messages: parsed, sampling, stop, tag: None }, stream, include_usage })
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
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid("body", format!("the body is not valid JSON: {e}")))?;
        let valid = validate(&state, &value)?;
        let id = format!("chatcmpl-{:016x}", rand_id());
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let model = state.engine.name().to_string();
        if !valid.stream {
            let reply = state.engine.chat(valid.request).await.map_err(engine_error)?;
            let usage = reply.usage;
            return Ok(Json(json!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": { "role": "assistant", "content": reply.text },
                    "finish_reason": finish_reason_name(&reply.finish_reason),
                    "logprobs": Value::Null,
                }],
                "usage": {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "total_tokens": usage.total(),
                    "prompt_tokens_details": { "cached_tokens": usage.cached_tokens },
                },
            }))
            .into_response());
        }

        let events = state.engine.stream(&valid.request).map_err(engine_error)?;
        let include_usage = valid.include_usage;
        let chunk = move |delta: Value, finish: Option<&str>| -> Value {
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{ "index": 0, "delta": delta, "finish_reason": finish, "logprobs": Value::Null }],
            })
        };
        let data = |v: Value| Ok::<_, Infallible>(SseEvent::default().data(v.to_string()));
        let head = futures::stream::iter([data(chunk(json!({ "role": "assistant", "content": "" }), None))]);
        // The engine closes the channel after `Done`; if the client leaves,
        // axum drops this stream and with it the receiver, which cancels the
        // generation.
        let body = UnboundedReceiverStream::new(events).map(move |event| {
            data(match event {
                Event::Text(piece) => chunk(json!({ "content": piece }), None),
                Event::Done(Ok(f)) => {
                    let mut last = chunk(json!({}), Some(finish_reason_name(&f.reason)));
                    if include_usage {
                        last["usage"] = json!({
                            "prompt_tokens": f.prompt_tokens,
                            "completion_tokens": f.completion_tokens,
                            "total_tokens": f.prompt_tokens + f.completion_tokens,
                            "prompt_tokens_details": { "cached_tokens": f.cached_tokens },
                        });
                    }
                    last
                }
                Event::Done(Err(message)) => {
                    json!({ "error": { "message": message, "type": "invalid_request_error" } })
                }
            })
        });
        let done = futures::stream::iter([Ok(SseEvent::default().data("[DONE]"))]);
        let stream = head.chain(body).chain(done);
        Ok(Sse::new(stream).into_response())
    }

    fn engine_error(e: evol_llm::ChatError) -> ApiError {
        if e.kind.is_fatal() {
            ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: e.message,
                kind: "server_error",
                param: None,
            }
        } else {
            debug_assert!(matches!(e.kind, ErrorKind::Rejected));
            ApiError::invalid("messages", e.message)
        }
    }

    fn rand_id() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
        h.finish()
    }
}
