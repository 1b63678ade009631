//! `evol-mock`: an OpenAI-compatible load-test simulator.
//!
//! It is a fixture, not a model. It answers `POST /v1/chat/completions` with
//! content derived from a hash of the request, so the same request always
//! gets the same reply:
//! - an evolving prompt (ending in `#Rewritten Prompt#:` or
//!   `#Created Prompt#:`) gets a plausible harder or new instruction;
//! - an equality question (mentioning "Not Equal") gets `Equal` at a set
//!   rate, else `Not Equal`;
//! - anything else gets an answer paragraph of a set length (or, at a set
//!   rate, a short apology).
//!
//! Latency is drawn from a log-normal with a given median and sigma; faults
//! (429 with `Retry-After`, 500, malformed JSON, dropped connections, slow
//! bodies) are injected at given rates. `GET /stats` reports the requests,
//! the summed simulated busy time and the mean and peak number in flight,
//! which is what benchmarks divide by to measure a client's efficiency.

mod batch;
pub mod follow;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use evol_wire::{ChatCompletion, ChatCompletionRequest, Choice, CompletionUsage, ErrorBody, ResponseMessage};
use rand::Rng;
use rand_distr::{Distribution, LogNormal};
use serde::Serialize;
use serde_json::{json, Value};

/// Rates of injected faults, each a probability per request.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// 429 with a `Retry-After` header.
    pub rate_429: f64,
    /// 500 with an error body.
    pub rate_500: f64,
    /// 200 with a body that is not JSON.
    pub malformed: f64,
    /// The connection is cut in the middle of the body.
    pub drop: f64,
    /// The body stalls for `slow_ms` before it completes.
    pub slow: f64,
    /// The `Retry-After` sent with 429s, in seconds (may be fractional; it is
    /// sent as `retry-after-ms` too).
    pub retry_after_secs: f64,
    pub slow_ms: u64,
}

impl Faults {
    /// The sum of all fault rates.
    pub fn total(&self) -> f64 {
        self.rate_429 + self.rate_500 + self.malformed + self.drop + self.slow
    }
}

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub latency_median_ms: f64,
    pub latency_sigma: f64,
    /// Share of equality questions answered `Equal`.
    pub equal_rate: f64,
    /// Share of answers that are a short apology.
    pub sorry_rate: f64,
    /// Share of evolutions that leak the words "rewritten prompt".
    pub leak_rate: f64,
    /// Words in an answer.
    pub answer_words: usize,
    /// Share of scoring replies that hold no score.
    pub unreadable_rate: f64,
    pub faults: Faults,
    /// Served model names; empty serves any name.
    pub models: Vec<String>,
    /// A bearer token to require.
    pub api_key: Option<String>,
    pub batch: BatchConfig,
    /// A real rate limit: a token bucket of this many requests a second
    /// (a tenth of a second of burst); requests above it get 429.
    pub rate_limit: Option<f64>,
    /// Error bodies quote the request's `Authorization` header and carry
    /// terminal escape sequences, as a careless proxy's might (for tests
    /// that secrets and escapes never reach the user).
    pub hostile_errors: bool,
    /// Per served model, its strength as a pairwise judge sees it (score
    /// points above the others'). When set, every answer ends with
    /// `(mock answer by MODEL)` and the pairwise judge scores each answer
    /// `6 + strength + noise` (noise: a normal draw with deviation 1.5 from
    /// the request's hash), rounded and held to 1..=10, so a test knows the
    /// ranking a judge should find.
    pub strengths: std::collections::BTreeMap<String, f64>,
    /// Score points the pairwise judge adds to the answer shown first.
    pub position_bias: f64,
    /// Reply as a reasoning model: a thinking trace before every reply, in
    /// this shape, its tokens reported as `reasoning_tokens`.
    pub trace: Option<TraceShape>,
    /// Answer arithmetic questions (`A + B`, `A - B`, `A * B` with whole
    /// numbers, the last such in the question) with a worked answer ending
    /// in `\boxed{RESULT}`, wrong (off by one) at this rate; `None`: off.
    pub maths: Option<f64>,
    /// Share of evolutions and answers to a Hindi, Chinese, Japanese or
    /// Arabic request written in English instead (as models drift). Such
    /// requests are otherwise answered in their own language, and refused
    /// in it at `sorry_rate`.
    pub switch_rate: f64,
    /// Share of answers to an instruction with constraints (in `evol`'s
    /// wording) that break one of them; the others keep every one.
    pub break_rate: f64,
}

/// Where a reasoning model's server puts the thinking trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceShape {
    /// In `reasoning_content` (DeepSeek's API; vLLM and SGLang with a
    /// reasoning parser).
    Field,
    /// In the text, as `<think>...</think>` before the answer (a server
    /// without a reasoning parser).
    Inline,
    /// In the text, ended by `</think>` alone: the chat template opened the
    /// block in the prompt (R1 distills, QwQ).
    Opened,
}

impl std::str::FromStr for TraceShape {
    type Err = String;
    fn from_str(s: &str) -> Result<TraceShape, String> {
        match s {
            "field" => Ok(TraceShape::Field),
            "inline" => Ok(TraceShape::Inline),
            "opened" => Ok(TraceShape::Opened),
            other => Err(format!("`{other}` is no trace shape (field, inline or opened)")),
        }
    }
}

/// How the batch API (`/v1/files`, `/v1/batches`) behaves.
#[derive(Debug, Clone, Default)]
pub struct BatchConfig {
    /// How long a batch takes from creation to its end.
    pub delay_ms: u64,
    /// Share of a batch's requests left undone: a batch with any undone
    /// ends `expired`, with the done ones in its output file.
    pub expire_rate: f64,
}

impl Default for MockConfig {
    fn default() -> MockConfig {
        MockConfig {
            latency_median_ms: 0.0,
            latency_sigma: 0.0,
            equal_rate: 0.1,
            sorry_rate: 0.02,
            leak_rate: 0.02,
            answer_words: 120,
            unreadable_rate: 0.0,
            faults: Faults { retry_after_secs: 0.05, slow_ms: 2_000, ..Faults::default() },
            models: Vec::new(),
            api_key: None,
            batch: BatchConfig::default(),
            rate_limit: None,
            hostile_errors: false,
            strengths: std::collections::BTreeMap::new(),
            position_bias: 0.0,
            trace: None,
            maths: None,
            switch_rate: 0.0,
            break_rate: 0.1,
        }
    }
}

/// What `GET /stats` reports.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct MockStats {
    pub requests: u64,
    pub completed: u64,
    pub rewrite: u64,
    pub judge: u64,
    pub answer: u64,
    /// Scoring requests (difficulty, complexity, quality).
    #[serde(default)]
    pub score: u64,
    /// Optimiser requests answered (Auto Evol-Instruct's method proposals).
    #[serde(default)]
    pub optimize: u64,
    /// Pairwise judge requests answered (two answers scored).
    #[serde(default)]
    pub pairwise: u64,
    /// Texts embedded (`/v1/embeddings` inputs).
    #[serde(default)]
    pub embedded: u64,
    pub faults: u64,
    /// Requests refused by the rate limit (`rate_limit`).
    #[serde(default)]
    pub rate_limited: u64,
    /// Text completions answered (`/v1/completions`: instructions written
    /// from a user turn's opening, as Magpie asks).
    #[serde(default)]
    pub generated: u64,
    /// Sum of the simulated latencies of all requests.
    pub busy_seconds: f64,
    /// Time-weighted mean number of requests in flight, from the first
    /// request's arrival to the last one's end.
    pub mean_in_flight: f64,
    pub max_in_flight: u64,
    /// From the first request's arrival to the last one's end.
    pub active_seconds: f64,
    /// Batches created, requests answered inside batches, batches cancelled.
    #[serde(default)]
    pub batches: u64,
    #[serde(default)]
    pub batch_requests: u64,
    #[serde(default)]
    pub batches_cancelled: u64,
}

#[derive(Default)]
struct Flight {
    now: u64,
    max: u64,
    area: f64,
    first: Option<Instant>,
    last: Option<Instant>,
}

pub(crate) struct Shared {
    pub(crate) config: MockConfig,
    latency: Option<LogNormal<f64>>,
    pub(crate) requests: AtomicU64,
    pub(crate) completed: AtomicU64,
    rewrite: AtomicU64,
    judge: AtomicU64,
    answer: AtomicU64,
    score: AtomicU64,
    optimize: AtomicU64,
    pairwise: AtomicU64,
    embedded: AtomicU64,
    generated: AtomicU64,
    faults: AtomicU64,
    busy_micros: AtomicU64,
    flight: Mutex<Flight>,
    pub(crate) store: Mutex<batch::Store>,
    /// The rate limiter's bucket: its level and when it was last filled.
    bucket: Mutex<(f64, Instant)>,
    rate_limited: AtomicU64,
}

impl Shared {
    fn change_flight(&self, delta: i64) {
        let now = Instant::now();
        let mut f = self.flight.lock().unwrap();
        if let Some(last) = f.last {
            f.area += f.now as f64 * (now - last).as_secs_f64();
        }
        f.first.get_or_insert(now);
        f.last = Some(now);
        f.now = f.now.saturating_add_signed(delta);
        f.max = f.max.max(f.now);
    }

    fn stats(&self) -> MockStats {
        let store = self.store.lock().unwrap();
        let f = self.flight.lock().unwrap();
        let active = match (f.first, f.last) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        MockStats {
            requests: self.requests.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            rewrite: self.rewrite.load(Ordering::Relaxed),
            judge: self.judge.load(Ordering::Relaxed),
            answer: self.answer.load(Ordering::Relaxed),
            score: self.score.load(Ordering::Relaxed),
            optimize: self.optimize.load(Ordering::Relaxed),
            pairwise: self.pairwise.load(Ordering::Relaxed),
            embedded: self.embedded.load(Ordering::Relaxed),
            faults: self.faults.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            generated: self.generated.load(Ordering::Relaxed),
            busy_seconds: self.busy_micros.load(Ordering::Relaxed) as f64 / 1e6,
            mean_in_flight: if active > 0.0 { f.area / active } else { 0.0 },
            max_in_flight: f.max,
            active_seconds: active,
            batches: store.created,
            batch_requests: store.answered,
            batches_cancelled: store.cancelled,
        }
    }

    pub(crate) fn count(&self, kind: Kind) {
        match kind {
            Kind::Rewrite => &self.rewrite,
            Kind::Judge => &self.judge,
            Kind::Answer => &self.answer,
            Kind::Score => &self.score,
            Kind::Optimize => &self.optimize,
            Kind::Pairwise => &self.pairwise,
            Kind::Generate => &self.generated,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn reset(&self) {
        for c in [
            &self.requests,
            &self.completed,
            &self.rewrite,
            &self.judge,
            &self.answer,
            &self.score,
            &self.optimize,
            &self.pairwise,
            &self.generated,
            &self.faults,
            &self.busy_micros,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        let mut f = self.flight.lock().unwrap();
        *f = Flight { now: f.now, ..Flight::default() };
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: Arc<Shared>) -> InFlight {
        shared.change_flight(1);
        InFlight(shared)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.completed.fetch_add(1, Ordering::Relaxed);
        self.0.change_flight(-1);
    }
}

/// The simulator's router.
pub fn app(config: MockConfig) -> Router {
    let latency = (config.latency_median_ms > 0.0).then(|| {
        LogNormal::new(config.latency_median_ms.ln(), config.latency_sigma.max(0.0)).expect("valid log-normal")
    });
    let shared = Arc::new(Shared {
        config,
        latency,
        requests: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        rewrite: AtomicU64::new(0),
        judge: AtomicU64::new(0),
        answer: AtomicU64::new(0),
        score: AtomicU64::new(0),
        optimize: AtomicU64::new(0),
        pairwise: AtomicU64::new(0),
        embedded: AtomicU64::new(0),
        generated: AtomicU64::new(0),
        faults: AtomicU64::new(0),
        busy_micros: AtomicU64::new(0),
        flight: Mutex::new(Flight::default()),
        store: Mutex::new(batch::Store::default()),
        bucket: Mutex::new((0.0, Instant::now())),
        rate_limited: AtomicU64::new(0),
    });
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(chat))
        .route("/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/health", get(|| async { "ok" }))
        .route("/v1/files", post(batch::upload))
        .route("/v1/files/{id}/content", get(batch::content))
        .route("/v1/batches", post(batch::create))
        .route("/v1/batches/{id}", get(batch::get))
        .route("/v1/batches/{id}/cancel", post(batch::cancel))
        .route("/stats", get(|State(s): State<Arc<Shared>>| async move { Json(s.stats()) }))
        // Forgets every batch and file, as a provider that deleted them (or
        // a restarted server): their ids then get 404.
        .route(
            "/batches/forget",
            post(|State(s): State<Arc<Shared>>| async move {
                s.store.lock().unwrap().forget();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/stats/reset",
            post(|State(s): State<Arc<Shared>>| async move {
                s.reset();
                StatusCode::NO_CONTENT
            }),
        )
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(shared)
}

/// Serves on an already-bound listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: MockConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(config)).with_graceful_shutdown(shutdown).await
}

/// Starts the simulator on a free loopback port in the background and
/// returns its base URL (`http://127.0.0.1:PORT/v1`). For tests.
pub async fn spawn(config: MockConfig) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, config, std::future::pending()));
    Ok(format!("http://{addr}/v1"))
}

pub(crate) fn error(status: StatusCode, message: &str, code: &str) -> Response {
    (status, Json(json!({ "error": { "message": message, "type": "mock_error", "code": code } }))).into_response()
}

pub(crate) fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    match &shared.config.api_key {
        None => true,
        Some(key) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| given == key),
    }
}

/// `POST /v1/embeddings`: a deterministic 64-dimension vector per input,
/// a hashed bag of its lower-cased words, so that texts sharing words are
/// close (cosine) and unrelated ones far apart.
async fn embeddings(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "invalid API key", "invalid_api_key");
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}"), "invalid_request"),
    };
    let inputs: Vec<String> = match &request["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect(),
        _ => {
            return error(StatusCode::BAD_REQUEST, "`input` must be a string or an array of strings", "invalid_request")
        }
    };
    // As slow as a chat reply (the configured latency), so a test can stop
    // a job while its embeddings are in flight.
    let latency = shared.latency.map(|d| d.sample(&mut rand::rng())).unwrap_or(0.0);
    if latency > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(latency / 1000.0)).await;
    }
    shared.embedded.fetch_add(inputs.len() as u64, Ordering::Relaxed);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| json!({ "object": "embedding", "index": index, "embedding": embed(text) }))
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    Json(json!({
        "object": "list",
        "data": data,
        "model": request["model"].as_str().unwrap_or("mock"),
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    }))
    .into_response()
}

/// A hashed bag of words, L2-normalised.
fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; 64];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let h = splitmix(word.to_lowercase().bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
        v[(h % 64) as usize] += if h & (1 << 40) == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        v[0] = 1.0;
    }
    v
}

async fn models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "invalid API key", "invalid_api_key");
    }
    let names = if shared.config.models.is_empty() { vec!["mock".to_string()] } else { shared.config.models.clone() };
    let data: Vec<Value> =
        names.iter().map(|n| json!({ "id": n, "object": "model", "owned_by": "evol-mock" })).collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}

/// The completion for a request body, without faults or latency; an invalid
/// request gets its error status and body.
pub(crate) fn complete(
    config: &MockConfig,
    body: &[u8],
    tag: Option<&str>,
) -> Result<(Kind, Value), (StatusCode, Value)> {
    let fail = |status: StatusCode, message: &str, code: &str| {
        let body = ErrorBody::new(message, "mock_error", None, Some(code));
        Err((status, serde_json::to_value(body).expect("serializable")))
    };
    let request: ChatCompletionRequest = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return fail(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}"), "invalid_request"),
    };
    // A text completion (`/v1/completions`): a `prompt`, no `messages`.
    if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) {
        if let Some(prompt) = fields.get("prompt") {
            let Some(prompt) = prompt.as_str().filter(|p| !p.is_empty()) else {
                return fail(StatusCode::BAD_REQUEST, "`prompt` must be a non-empty string", "invalid_request");
            };
            let model = request.model.clone().unwrap_or_default();
            if !config.models.is_empty() && !config.models.contains(&model) {
                return fail(StatusCode::NOT_FOUND, &format!("model `{model}` does not exist"), "model_not_found");
            }
            let hash = evol_digest::Digest::new().raw(body);
            let max_tokens = request.max_tokens.as_ref().and_then(|n| n.as_u64()).unwrap_or(u64::MAX);
            let (text, finish) = cap_tokens(&user_turn(prompt, hash.u64()), max_tokens);
            let (prompt_tokens, completion_tokens) = (tokens(prompt), tokens(&text));
            let reply = json!({
                "id": format!("mock-{}", hash.hex(16)),
                "object": "text_completion",
                "created": 0,
                "model": model,
                "choices": [{ "index": 0, "text": text, "finish_reason": finish, "logprobs": null }],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            });
            return Ok((Kind::Generate, reply));
        }
    }
    if request.messages.is_empty() {
        return fail(StatusCode::BAD_REQUEST, "`messages` must be a non-empty array", "invalid_request");
    }
    let model = request.model.clone().unwrap_or_default();
    if !config.models.is_empty() && !config.models.contains(&model) {
        return fail(StatusCode::NOT_FOUND, &format!("model `{model}` does not exist"), "model_not_found");
    }
    let prompt = request.prompt_text();
    let max_tokens = request.max_tokens.as_ref().and_then(|n| n.as_u64()).unwrap_or(u64::MAX);
    let hash = evol_digest::Digest::new().raw(body);
    let h = hash.u64();
    let unit = |salt: u64| -> f64 { (splitmix(h ^ salt) >> 11) as f64 / (1u64 << 53) as f64 };
    let (kind, text) = reply_for(config, stage(tag, &prompt), &prompt, &model, h, unit);
    let (message, finish, thinking_tokens, completion_tokens) = match config.trace {
        None => {
            let (text, finish) = cap_tokens(&text, max_tokens);
            let n = tokens(&text);
            (ResponseMessage::assistant(text), finish, None, n)
        }
        Some(shape) => {
            // The trace comes first and spends the token limit first: a
            // small limit cuts the reply off while it is still thinking.
            let trace = thinking(h);
            let (trace, trace_finish) = cap_tokens(&trace, max_tokens);
            let thought = tokens(&trace);
            let (text, finish) = match trace_finish {
                "stop" => cap_tokens(&text, max_tokens.saturating_sub(thought)),
                cut => (String::new(), cut),
            };
            let closed = trace_finish == "stop";
            let content = match (shape, closed) {
                (TraceShape::Field, _) => text.clone(),
                (TraceShape::Inline, true) => format!("<think>\n{trace}\n</think>\n\n{text}"),
                (TraceShape::Inline, false) => format!("<think>\n{trace}"),
                (TraceShape::Opened, true) => format!("{trace}\n</think>\n\n{text}"),
                (TraceShape::Opened, false) => trace.clone(),
            };
            let mut message = ResponseMessage::assistant(content);
            if shape == TraceShape::Field {
                message.reasoning_content = Some(trace);
            }
            (message, finish, Some(thought), thought + tokens(&text))
        }
    };
    let prompt_tokens = tokens(&prompt);
    let completion = ChatCompletion {
        id: format!("mock-{}", hash.hex(16)),
        object: "chat.completion".into(),
        created: 0,
        model,
        choices: vec![Choice {
            index: 0,
            message: Some(message),
            finish_reason: Some(finish.to_string()),
            ..Choice::default()
        }],
        usage: Some(CompletionUsage {
            prompt_tokens: Some(prompt_tokens),
            completion_tokens: Some(completion_tokens),
            total_tokens: Some(prompt_tokens + completion_tokens),
            completion_tokens_details: thinking_tokens
                .map(|n| evol_wire::CompletionTokensDetails { reasoning_tokens: Some(n) }),
            ..CompletionUsage::default()
        }),
    };
    Ok((kind, serde_json::to_value(completion).expect("serializable")))
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let _flight = InFlight::new(shared.clone());
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "invalid API key", "invalid_api_key");
    }
    let tag = headers.get("x-evol-stage").and_then(|v| v.to_str().ok());
    let (kind, completion) = match complete(&shared.config, &body, tag) {
        Ok(done) => done,
        Err((status, body)) => return (status, Json(body)).into_response(),
    };
    // Faults that answer at once.
    let faults = &shared.config.faults;
    let draw: f64 = rand::rng().random();
    if draw < faults.rate_429 {
        shared.faults.fetch_add(1, Ordering::Relaxed);
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate limited", "rate_limit_exceeded");
        let secs = faults.retry_after_secs;
        let h = r.headers_mut();
        h.insert("retry-after", format!("{}", secs.ceil() as u64).parse().unwrap());
        h.insert("retry-after-ms", format!("{}", (secs * 1000.0).round() as u64).parse().unwrap());
        return r;
    }
    if draw < faults.rate_429 + faults.rate_500 {
        shared.faults.fetch_add(1, Ordering::Relaxed);
        if shared.config.hostile_errors {
            let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
            let message =
                format!("simulated server error \u{1b}]0;owned\u{7}\u{1b}[2J(request had authorization: {auth})");
            return error(StatusCode::INTERNAL_SERVER_ERROR, &message, "server_error");
        }
        return error(StatusCode::INTERNAL_SERVER_ERROR, "simulated server error", "server_error");
    }
    if let Some(rate) = shared.config.rate_limit {
        let mut bucket = shared.bucket.lock().unwrap();
        let now = Instant::now();
        let (level, at) = &mut *bucket;
        *level = (*level + (now - *at).as_secs_f64() * rate).min((rate / 10.0).max(1.0));
        *at = now;
        if *level < 1.0 {
            drop(bucket);
            shared.rate_limited.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::TOO_MANY_REQUESTS, "rate limit reached", "rate_limit_exceeded");
        }
        *level -= 1.0;
    }

    // Simulated work.
    let latency = shared.latency.map(|d| d.sample(&mut rand::rng())).unwrap_or(0.0);
    shared.busy_micros.fetch_add((latency * 1000.0) as u64, Ordering::Relaxed);
    if latency > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(latency / 1000.0)).await;
    }

    shared.count(kind);
    let payload = completion.to_string();

    let draw = draw - faults.rate_429 - faults.rate_500;
    if draw >= 0.0 && draw < faults.malformed + faults.drop + faults.slow {
        shared.faults.fetch_add(1, Ordering::Relaxed);
        if draw < faults.malformed {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                payload[..payload.len() / 2].to_string(),
            )
                .into_response();
        }
        let (head, tail) = payload.split_at(half(&payload));
        let (head, tail) = (Bytes::from(head.to_string()), Bytes::from(tail.to_string()));
        if draw < faults.malformed + faults.drop {
            let chunks: Vec<Result<Bytes, std::io::Error>> =
                vec![Ok(head), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated drop"))];
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(futures::stream::iter(chunks)),
            )
                .into_response();
        }
        let stall = Duration::from_millis(faults.slow_ms);
        let stream = futures::stream::unfold(0u8, move |step| {
            let (head, tail) = (head.clone(), tail.clone());
            async move {
                match step {
                    0 => Some((Ok::<Bytes, std::io::Error>(head), 1)),
                    1 => {
                        tokio::time::sleep(stall).await;
                        Some((Ok(tail), 2))
                    }
                    _ => None,
                }
            }
        });
        return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream))
            .into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], payload).into_response()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A text completion: an instruction written from a user turn's
    /// opening.
    Generate,
    Rewrite,
    Judge,
    Answer,
    Score,
    Optimize,
    Pairwise,
}

/// The clauses an English evolution adds, one chosen by the prompt's hash
/// (public so benchmarks can make the texts this server makes).
pub const CLAUSES: &[&str] = &[
    "Explain each step of your reasoning.",
    "Limit the answer to three short paragraphs.",
    "Give one concrete example from everyday life.",
    "Compare at least two different approaches.",
    "Include a brief table that summarises the key points.",
    "Address one common misconception about it.",
    "Consider how the answer changes for a beginner.",
    "Justify every assumption you make.",
    "Cite the main trade-offs involved.",
    "Finish with a one-sentence summary.",
    "Avoid technical jargon where possible.",
    "Mention one historical development that matters here.",
];

const TOPICS: &[&str] = &[
    "medieval cartography",
    "soil microbiology",
    "Byzantine coinage",
    "tidal energy",
    "Baltic folk music",
    "compiler bootstrapping",
    "lichen ecology",
    "Andean textiles",
    "glacier hydrology",
    "early printing presses",
];

const WORDS: &[&str] = &[
    "the",
    "approach",
    "works",
    "because",
    "each",
    "part",
    "depends",
    "on",
    "clear",
    "steps",
    "and",
    "careful",
    "checks",
    "which",
    "make",
    "result",
    "reliable",
    "data",
    "shows",
    "that",
    "a",
    "simple",
    "model",
    "often",
    "explains",
    "most",
    "cases",
    "while",
    "edge",
    "conditions",
    "need",
    "more",
    "attention",
    "in",
    "practice",
];

/// What a request is for: its tag (`evolve`, `judge`, `answer`), which evol
/// sends with every request; for clients that send none, a guess from the
/// prompt's wording.
fn stage(tag: Option<&str>, prompt: &str) -> Kind {
    match tag {
        Some("evolve") => Kind::Rewrite,
        Some("judge") => Kind::Judge,
        Some("score" | "rank" | "compare") => Kind::Score,
        Some("optimize") => Kind::Optimize,
        Some("pairwise") => Kind::Pairwise,
        Some(_) => Kind::Answer,
        None => {
            let trimmed = prompt.trim_end();
            if prompt.contains("#Improved Method#") {
                Kind::Optimize
            } else if prompt.contains("[Answer 1 begins]") || prompt.contains("[Conversation 1 begins]") {
                Kind::Pairwise
            } else if trimmed.ends_with("#:") || prompt.contains(FINAL_MARKER) {
                Kind::Rewrite
            } else if prompt.contains("Not Equal") {
                Kind::Judge
            } else {
                Kind::Answer
            }
        }
    }
}

/// The language a request is in, by the script of its letters: the mock
/// writes Hindi, Chinese, Japanese and Arabic as well as English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tongue {
    English,
    Hindi,
    Chinese,
    Japanese,
    Arabic,
}

impl Tongue {
    fn of(text: &str) -> Tongue {
        let (mut deva, mut han, mut kana, mut arabic) = (0, 0, 0, 0);
        for c in text.chars() {
            match c as u32 {
                0x0900..=0x097F => deva += 1,
                0x3040..=0x30FF => kana += 1,
                0x4E00..=0x9FFF => han += 1,
                0x0600..=0x06FF => arabic += 1,
                _ => {}
            }
        }
        match [deva, han, kana, arabic].iter().max() {
            Some(0) | None => Tongue::English,
            _ if kana > 0 => Tongue::Japanese,
            Some(&m) if m == deva => Tongue::Hindi,
            Some(&m) if m == han => Tongue::Chinese,
            _ => Tongue::Arabic,
        }
    }

    /// Words an answer is made of (written for the simulator: "light",
    /// "energy", "plant", "water", "sun", "life", "process", "cell",
    /// "food", "air", "soil", "seed", "leaf", "root", "growth", "time").
    fn words(self) -> &'static [&'static str] {
        match self {
            Tongue::English => WORDS,
            Tongue::Hindi => &[
                "प्रकाश",
                "ऊर्जा",
                "पौधे",
                "पानी",
                "सूर्य",
                "जीवन",
                "प्रक्रिया",
                "कोशिका",
                "भोजन",
                "हवा",
                "मिट्टी",
                "बीज",
                "पत्ती",
                "जड़",
                "विकास",
                "समय",
                "और",
                "में",
                "से",
                "है",
            ],
            Tongue::Chinese => &[
                "光合作用",
                "能量",
                "植物",
                "水",
                "阳光",
                "生命",
                "过程",
                "细胞",
                "食物",
                "空气",
                "土壤",
                "种子",
                "叶子",
                "根",
                "生长",
                "时间",
                "和",
                "的",
                "在",
                "是",
            ],
            Tongue::Japanese => &[
                "光合成",
                "は",
                "エネルギー",
                "を",
                "植物",
                "が",
                "水",
                "と",
                "太陽",
                "の",
                "光",
                "で",
                "生命",
                "に",
                "細胞",
                "作ります",
                "大切です",
                "食べ物",
                "空気",
                "時間",
            ],
            Tongue::Arabic => &[
                "الضوء",
                "الطاقة",
                "النبات",
                "الماء",
                "الشمس",
                "الحياة",
                "العملية",
                "الخلية",
                "الغذاء",
                "الهواء",
                "التربة",
                "البذرة",
                "الورقة",
                "الجذر",
                "النمو",
                "الوقت",
                "في",
                "من",
                "و",
                "هو",
            ],
        }
    }

    /// Between words: nothing in Chinese and Japanese.
    fn space(self) -> &'static str {
        match self {
            Tongue::Chinese | Tongue::Japanese => "",
            _ => " ",
        }
    }

    /// A clause an evolution adds: `CLAUSES`, translated ("Explain each
    /// step of your reasoning.", "Give one concrete example from everyday
    /// life.", ...), as many in every language, so near duplicates are as
    /// likely in each.
    fn clause(self, h: u64) -> &'static str {
        let clauses: &[&str; 12] = match self {
            Tongue::English => return CLAUSES[(h % CLAUSES.len() as u64) as usize],
            Tongue::Hindi => &[
                "अपने तर्क का हर चरण समझाइए।",
                "उत्तर को तीन छोटे अनुच्छेदों तक सीमित रखिए।",
                "रोज़मर्रा के जीवन से एक ठोस उदाहरण दीजिए।",
                "कम से कम दो अलग-अलग तरीकों की तुलना कीजिए।",
                "मुख्य बातों का सार देने वाली एक छोटी तालिका शामिल कीजिए।",
                "इसके बारे में एक आम गलतफ़हमी को दूर कीजिए।",
                "सोचिए कि किसी शुरुआती के लिए उत्तर कैसे बदलेगा।",
                "अपनी हर धारणा का औचित्य बताइए।",
                "इसमें शामिल मुख्य समझौतों का उल्लेख कीजिए।",
                "एक वाक्य के सारांश के साथ समाप्त कीजिए।",
                "जहाँ तक हो सके तकनीकी शब्दजाल से बचिए।",
                "यहाँ महत्वपूर्ण एक ऐतिहासिक विकास का उल्लेख कीजिए।",
            ],
            Tongue::Chinese => &[
                "请解释你推理的每一步。",
                "请把回答限制在三个短段落以内。",
                "请举一个日常生活中的具体例子。",
                "请至少比较两种不同的方法。",
                "请附上一个总结要点的简短表格。",
                "请澄清一个关于它的常见误解。",
                "请考虑对于初学者来说答案会有什么不同。",
                "请为你所做的每一个假设给出理由。",
                "请指出其中涉及的主要权衡。",
                "请用一句话总结作为结尾。",
                "请尽量避免使用专业术语。",
                "请提到一个与此相关的重要历史发展。",
            ],
            Tongue::Japanese => &[
                "推論の各ステップを説明してください。",
                "回答は三つの短い段落にまとめてください。",
                "日常生活から具体的な例を一つ挙げてください。",
                "少なくとも二つの異なる方法を比較してください。",
                "要点をまとめた短い表を入れてください。",
                "それに関するよくある誤解を一つ取り上げてください。",
                "初心者にとって答えがどう変わるかを考えてください。",
                "置いた前提の一つ一つに理由を示してください。",
                "関係する主なトレードオフを挙げてください。",
                "最後に一文で要約してください。",
                "できるだけ専門用語を避けてください。",
                "ここで重要な歴史的な出来事を一つ挙げてください。",
            ],
            Tongue::Arabic => &[
                "اشرح كل خطوة من خطوات تفكيرك.",
                "اقتصر في إجابتك على ثلاث فقرات قصيرة.",
                "أعط مثالاً واحداً ملموساً من الحياة اليومية.",
                "قارن بين طريقتين مختلفتين على الأقل.",
                "أدرج جدولاً موجزاً يلخص النقاط الرئيسية.",
                "تناول مفهوماً خاطئاً شائعاً عنه.",
                "فكر في كيف تتغير الإجابة بالنسبة إلى المبتدئ.",
                "برر كل افتراض تضعه.",
                "اذكر أهم المفاضلات المعنية.",
                "اختم بملخص من جملة واحدة.",
                "تجنب المصطلحات التقنية قدر الإمكان.",
                "اذكر تطوراً تاريخياً واحداً مهماً هنا.",
            ],
        };
        clauses[(h % 12) as usize]
    }

    /// A new instruction on a topic near the given one ("Write a new
    /// question on a topic close to this one:").
    fn created(self) -> &'static str {
        match self {
            Tongue::English => "Describe how",
            Tongue::Hindi => "इस विषय से जुड़ा एक नया प्रश्न लिखिए:",
            Tongue::Chinese => "请围绕与此相近的主题提出一个新问题：",
            Tongue::Japanese => "これに近い話題について新しい質問を書いてください：",
            Tongue::Arabic => "اكتب سؤالاً جديداً عن موضوع قريب من هذا:",
        }
    }

    /// A refusal ("Sorry, I cannot help with that request.").
    fn sorry(self) -> &'static str {
        match self {
            Tongue::English => "Sorry, I cannot help with that request.",
            Tongue::Hindi => "माफ़ कीजिए, मैं इस अनुरोध में मदद नहीं कर सकता।",
            Tongue::Chinese => "抱歉，我无法帮助完成这个请求。",
            Tongue::Japanese => "申し訳ありませんが、このご依頼にはお応えできません。",
            Tongue::Arabic => "عذراً، لا يمكنني المساعدة في هذا الطلب.",
        }
    }
}

/// What a drifting model writes instead of an evolution in the asked
/// language.
const SWITCHED_EVOLUTION: &str =
    "Explain in detail how this process works in practice, and give one concrete example of it from everyday life.";

fn reply_for(
    config: &MockConfig,
    kind: Kind,
    prompt: &str,
    model: &str,
    h: u64,
    unit: impl Fn(u64) -> f64,
) -> (Kind, String) {
    if kind == Kind::Pairwise {
        return (Kind::Pairwise, pairwise_reply(config, prompt, unit));
    }
    if kind == Kind::Optimize {
        return (Kind::Optimize, optimizer_reply(prompt, h));
    }
    if kind == Kind::Rewrite && prompt.contains(FINAL_MARKER) {
        return (Kind::Rewrite, auto_reply(prompt, h, unit));
    }
    if kind == Kind::Rewrite && prompt.contains("#Conversation#:") {
        return (Kind::Rewrite, follow_up_reply(prompt, h));
    }
    if kind == Kind::Rewrite && prompt.contains("#New Tree#:") {
        return (Kind::Rewrite, tree_reply(prompt, h));
    }
    if kind == Kind::Rewrite {
        // The instruction is what follows the prompt's last `#...#:`
        // heading but one (the whole prompt if it has none); a prompt that
        // ends by asking for a created prompt gets a new instruction, any
        // other a harder one.
        let trimmed = prompt.trim_end();
        let (body, created) = match trimmed.strip_suffix("#Created Prompt#:") {
            Some(body) => (body, true),
            None => (strip_heading(trimmed), false),
        };
        let given = match body.rfind("#:") {
            Some(i) if body[..i].rfind('#').is_some() => body[i + 2..].trim(),
            _ => body.trim(),
        };
        let leak = if unit(3) < config.leak_rate { " (as the rewritten prompt asks)" } else { "" };
        let tongue = Tongue::of(given);
        if tongue != Tongue::English && unit(6) < config.switch_rate {
            return (Kind::Rewrite, SWITCHED_EVOLUTION.to_string());
        }
        let text = if created && tongue != Tongue::English {
            format!("{} {}{leak}", tongue.created(), first_words(given, 12))
        } else if created {
            let topic = TOPICS[(h % TOPICS.len() as u64) as usize];
            format!("Describe how {topic} relates to this: {}{leak}", first_words(given, 12))
        } else {
            format!("{given} {}{leak}", tongue.clause(h))
        };
        // A requirement to add (the `verifiable` set's prompts) is added.
        let text = match requirement(prompt) {
            Some(requirement) => format!("{text} {requirement}"),
            None => text,
        };
        return (Kind::Rewrite, text);
    }
    if kind == Kind::Score {
        return (Kind::Score, score_reply(config, prompt, h, unit));
    }
    if kind == Kind::Judge {
        let verdict = if unit(1) < config.equal_rate { "Equal" } else { "Not Equal" };
        return (Kind::Judge, verdict.to_string());
    }
    if let Some(wrong_rate) = config.maths {
        if let Some((a, op, b)) = arithmetic(prompt) {
            let right = match op {
                '+' => a.checked_add(b),
                '-' => a.checked_sub(b),
                _ => a.checked_mul(b),
            };
            if let Some(right) = right {
                let result = if unit(5) < wrong_rate { right + 1 } else { right };
                return (
                    Kind::Answer,
                    format!("We compute {a} {op} {b} step by step.\n\nThe answer is \\boxed{{{result}}}."),
                );
            }
        }
    }
    let mut tongue = Tongue::of(prompt);
    if tongue != Tongue::English && unit(6) < config.switch_rate {
        tongue = Tongue::English;
    }
    if unit(2) < config.sorry_rate {
        return (Kind::Answer, tongue.sorry().to_string());
    }
    let vocabulary = tongue.words();
    let constraints = follow::recognise(prompt);
    if !constraints.is_empty() {
        let skip = (unit(7) < config.break_rate).then(|| (h % constraints.len() as u64) as usize);
        return (Kind::Answer, follow::follow(&constraints, vocabulary, tongue.space(), skip));
    }
    let mut x = h;
    let words: Vec<&str> = (0..config.answer_words.max(1))
        .map(|_| {
            x = splitmix(x);
            vocabulary[(x % vocabulary.len() as u64) as usize]
        })
        .collect();
    let mut text = words.join(tongue.space());
    if let Some(first) = text.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    text.push('.');
    if !config.strengths.is_empty() {
        text.push_str(&format!(" {SIGNATURE}{model})"));
    }
    (Kind::Answer, text)
}

/// The requirement an evolving prompt asks to add: the text under its
/// `#Requirement#:` heading.
fn requirement(prompt: &str) -> Option<&str> {
    let rest = prompt.split("#Requirement#:").nth(1)?;
    Some(rest.split("\n\n#").next().unwrap_or(rest).trim()).filter(|r| !r.is_empty())
}

/// The last `A op B` of whole numbers in a question (`op`: `+`, `-`, `*`,
/// `x` or `×`).
fn arithmetic(prompt: &str) -> Option<(i64, char, i64)> {
    let words: Vec<&str> = prompt.split_whitespace().collect();
    words.windows(3).rev().find_map(|w| {
        let number = |s: &str| s.trim_matches(|c: char| !c.is_ascii_digit()).replace(',', "").parse::<i64>().ok();
        let op = match w[1] {
            "+" => '+',
            "-" => '-',
            "*" | "x" | "×" => '*',
            _ => return None,
        };
        Some((number(w[0])?, op, number(w[2])?))
    })
}

/// How an answer names its model when strengths are set.
const SIGNATURE: &str = "(mock answer by ";

/// A pairwise judge's reply: the two scores on the first line (from each
/// answer's model's strength, the first answer's position bias and hashed
/// noise), then a reason; with `unreadable_rate`, a reply without scores.
fn pairwise_reply(config: &MockConfig, prompt: &str, unit: impl Fn(u64) -> f64) -> String {
    if unit(4) < config.unreadable_rate {
        return "Both answers have their merits, and I cannot choose between them.".to_string();
    }
    let score = |side: u64| {
        let open = [format!("[Answer {side} begins]"), format!("[Conversation {side} begins]")];
        let start = open.iter().find_map(|o| prompt.find(o.as_str()).map(|i| i + o.len())).unwrap_or(0);
        let end = [format!("[Answer {side} ends]"), format!("[Conversation {side} ends]")]
            .iter()
            .find_map(|c| prompt[start..].find(c.as_str()).map(|i| start + i))
            .unwrap_or(prompt.len());
        let section = &prompt[start..end];
        let strength = section
            .rfind(SIGNATURE)
            .and_then(|i| section[i + SIGNATURE.len()..].split(')').next())
            .and_then(|name| config.strengths.get(name))
            .copied()
            .unwrap_or(0.0);
        // Box-Muller from two hashed uniforms.
        let (u1, u2) = (unit(20 + side).max(1e-12), unit(30 + side));
        let noise = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * 1.5;
        let bias = if side == 1 { config.position_bias } else { 0.0 };
        (6.0 + strength + bias + noise).round().clamp(1.0, 10.0)
    };
    let (a, b) = (score(1), score(2));
    let reason = match a.partial_cmp(&b) {
        Some(std::cmp::Ordering::Greater) => "Answer 1 is more helpful and more accurate.",
        Some(std::cmp::Ordering::Less) => "Answer 2 is more helpful and more accurate.",
        _ => "Both answers are about as good.",
    };
    format!("{a} {b}\n{reason}")
}

/// The final line Auto Evol-Instruct's evolving prompts ask for.
const FINAL_MARKER: &str = "#Finally Rewritten Instruction#:";

/// `text` without a last line that is a `#Heading#:`.
fn strip_heading(text: &str) -> &str {
    match text.rfind('\n') {
        Some(i) if text[i + 1..].trim_start().starts_with('#') && text.ends_with("#:") => &text[..i],
        None if text.starts_with('#') && text.ends_with("#:") => "",
        _ => text,
    }
}

/// A reply to an Auto Evol-Instruct evolving prompt: the steps, then the
/// final line with a harder instruction. It leaves the final line out
/// (an unreadable reply) with a chance that halves with every `Check`
/// line of the method, so a method the optimiser improved fails less.
fn auto_reply(prompt: &str, h: u64, unit: impl Fn(u64) -> f64) -> String {
    let given = prompt.rfind("#Instruction#:").map_or(prompt, |i| &prompt[i + "#Instruction#:".len()..]).trim();
    let checks = prompt.lines().filter(|l| l.trim_start().starts_with("Check ")).count() as i32;
    let clause = CLAUSES[(h % CLAUSES.len() as u64) as usize];
    let steps = format!(
        "Step 1 #Methods List#: add a requirement; ask for an example.\nStep 2 #Plan#: add one requirement.\n\
         Step 3 #Rewritten Instruction#: {given} {clause}\nStep 4 #Review#: it is harder and still answerable."
    );
    if unit(5) < 0.6 * 0.5f64.powi(checks) {
        return steps;
    }
    format!("{steps}\n{FINAL_MARKER} {given} {clause}")
}

/// What an aligned model writes when a prompt ends where a user's turn
/// begins (Magpie): a user's request, on the topic the system message
/// names (`... about TOPIC.`) or one of the simulator's own, then the
/// turn's end. The requests come from a small set, so some repeat.
fn user_turn(prompt: &str, h: u64) -> String {
    static ABOUT: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"about ([^.\n<]+)").expect("valid"));
    const ASKS: &[&str] = &[
        "Can you explain the basics of {}?",
        "What are the most common mistakes people make with {}?",
        "Write a short guide to {} for a beginner.",
        "How has {} changed over the last hundred years?",
        "Compare two different approaches to {}.",
        "Give me three surprising facts about {}.",
    ];
    let topic = match ABOUT.captures(prompt) {
        Some(c) => c[1].trim().to_string(),
        None => TOPICS[(splitmix(h) % TOPICS.len() as u64) as usize].to_string(),
    };
    let ask = ASKS[(splitmix(h ^ 7) % ASKS.len() as u64) as usize];
    ask.replace("{}", &topic)
}

/// A reply to a follow-up prompt (`evol run --turns`): the user's next
/// message, in the language of the conversation's first user turn.
fn follow_up_reply(prompt: &str, h: u64) -> String {
    const ASKS: &[&str] = &[
        "Can you go deeper into the second point?",
        "Could you rewrite that for a complete beginner?",
        "Are you sure about that? One step seems to be missing.",
        "Now apply the same idea to a related problem.",
    ];
    let first = prompt.split("User: ").nth(1).unwrap_or(prompt);
    let tongue = Tongue::of(first.split("\n\n").next().unwrap_or(first));
    match tongue {
        Tongue::English => format!("{} {}", ASKS[(splitmix(h) % ASKS.len() as u64) as usize], tongue.clause(h)),
        _ => tongue.clause(h).to_string(),
    }
}

/// A reply to a Tree-Instruct prompt: the tree, the tree with its new
/// nodes, and the new instruction: the given one with one clause a node
/// asked for (so more nodes make a longer, harder-scored instruction).
fn tree_reply(prompt: &str, h: u64) -> String {
    static NODES: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"adding exactly (\d+) new nodes").expect("valid"));
    let nodes: u64 = NODES.captures(prompt).and_then(|c| c[1].parse().ok()).unwrap_or(1).min(50);
    let given = prompt.rfind("#Instruction#:").map_or(prompt, |i| &prompt[i + "#Instruction#:".len()..]).trim();
    let tongue = Tongue::of(given);
    let added: Vec<&str> = (0..nodes).map(|i| tongue.clause(splitmix(h.wrapping_add(i)))).collect();
    let tree: String = added.iter().map(|c| format!("  - {c} (+)\n")).collect();
    format!(
        "#Tree#:\n- {}\n#New Tree#:\n- {}\n{tree}#New Instruction#: {given}{}{}",
        first_words(given, 6),
        first_words(given, 6),
        tongue.space(),
        added.join(tongue.space())
    )
}

/// A reply to an optimiser prompt: an analysis, then the current method
/// (between `#Current Method#:` and `#End of Current Method#`) with 0 to 2
/// `Check` lines added, by the request; one reply in five has no method
/// heading (an unparsable proposal).
fn optimizer_reply(prompt: &str, h: u64) -> String {
    let method = match (prompt.find("#Current Method#:"), prompt.find("#End of Current Method#")) {
        (Some(a), Some(b)) if a < b => prompt[a + "#Current Method#:".len()..b].trim(),
        _ => "Step 1: Rewrite the instruction to be more complex.",
    };
    let analysis = "#Analysis#:\n1. Some rewrites stop before the final line, so the rewrite is lost.";
    if h % 5 == 4 {
        return format!("{analysis}\nThe method looks fine to me otherwise.");
    }
    let checks = prompt.lines().filter(|l| l.trim_start().starts_with("Check ")).count();
    let added: String = (0..h % 3)
        .map(|i| {
            format!("\nCheck {}: make sure the reply ends with the final rewritten instruction.", checks as u64 + i + 1)
        })
        .collect();
    format!("{analysis}\n\n#Improved Method#:\n{method}{added}")
}

/// A score for a scoring prompt that rises with the length of what it
/// scores (so evolved instructions score higher than their seeds): a
/// difficulty from 1 to 10 for the text between `<<<` and `>>>` (else the
/// whole prompt), in a few wordings; for a prompt of numbered items
/// (`[Instruction 2]`, `[Response 2]`), one `N: SCORE` line each, 1 to 6
/// (an item too long for the scale, 4 to 6 by the request's hash).
fn score_reply(config: &MockConfig, prompt: &str, h: u64, unit: impl Fn(u64) -> f64) -> String {
    if unit(4) < config.unreadable_rate {
        return "That is hard to say without more context.".to_string();
    }
    let mut items = Vec::new();
    for heading in ["\n[Instruction ", "\n[Response "] {
        for part in prompt.split(heading).skip(1) {
            let body = part.split_once('\n').map_or("", |(_, b)| b);
            let body = body.split("\n[").next().unwrap_or(body).split("\nReply with").next().unwrap_or(body);
            items.push(body.split_whitespace().count());
        }
    }
    if !items.is_empty() {
        return items
            .iter()
            .enumerate()
            .map(|(i, words)| {
                // Past the scale's top (long answers), 4 to 6 by the
                // request's hash, so that answers compared still differ.
                let score = match 1 + words / 12 {
                    long if long > 6 => 4 + (h as usize >> (2 * i)) % 3,
                    base => (base + (h as usize >> i) % 2).min(6),
                };
                format!("{}: {score}", i + 1)
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    let text = match (prompt.rfind("<<<"), prompt.rfind(">>>")) {
        (Some(a), Some(b)) if a < b => &prompt[a + 3..b],
        _ => prompt,
    };
    let score = (1 + text.split_whitespace().count() / 10 + (h % 2) as usize).min(10);
    match h % 3 {
        0 => score.to_string(),
        1 => format!("Score: {score}"),
        _ => format!("I would rate this instruction a {score} out of 10."),
    }
}

/// A char boundary near the middle of `s`.
fn half(s: &str) -> usize {
    (s.len() / 2..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(s.len())
}

fn first_words(s: &str, n: usize) -> String {
    s.split_whitespace().take(n).collect::<Vec<_>>().join(" ")
}

/// A rough token count: 4 tokens per 3 words.
/// A reasoning model's thinking, derived from the request's hash: a few
/// sentences, some of them words the elimination rules would catch in an
/// answer ("sorry", "rewritten prompt"), so a test sees that the rules read
/// the answer alone.
fn thinking(h: u64) -> String {
    const STEPS: [&str; 6] = [
        "Okay, let me think about what is being asked here.",
        "Sorry, first I should restate the rewritten prompt in my own words.",
        "The key constraint seems to be the format of the answer.",
        "Let me check an edge case before I commit to an approach.",
        "That works; now I can write the final answer clearly.",
        "Wait, I should double-check the numbers once more.",
    ];
    let n = 3 + (h % 3) as usize;
    (0..n).map(|i| STEPS[(h as usize).wrapping_add(i * 5) % STEPS.len()]).collect::<Vec<_>>().join(" ")
}

fn tokens(s: &str) -> u64 {
    (s.split_whitespace().count() as u64 * 4).div_ceil(3)
}

/// Cuts `text` to about `max_tokens`, reporting `length` when it does.
fn cap_tokens(text: &str, max_tokens: u64) -> (String, &'static str) {
    if tokens(text) <= max_tokens {
        return (text.to_string(), "stop");
    }
    let words = (max_tokens * 3 / 4) as usize;
    (first_words(text, words), "length")
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(prompt: &str, h: u64) -> (String, &'static str) {
        let config = MockConfig { leak_rate: 0.0, ..MockConfig::default() };
        let (kind, text) = reply_for(&config, stage(None, prompt), prompt, "mock", h, |s| {
            (splitmix(h ^ s) >> 11) as f64 / (1u64 << 53) as f64
        });
        let kind = match kind {
            Kind::Rewrite => "rewrite",
            Kind::Judge => "judge",
            Kind::Answer => "answer",
            Kind::Score => "score",
            Kind::Optimize => "optimize",
            Kind::Pairwise => "pairwise",
            Kind::Generate => "generate",
        };
        (text, kind)
    }

    #[test]
    fn other_sets_and_auto_evol_instruct_are_understood() {
        let code = "Make it harder.\n\n#Original Question#:\nWrite fizzbuzz.\n\n#Harder Question#:\n";
        let (text, kind) = reply(code, 3);
        assert!(kind == "rewrite" && text.starts_with("Write fizzbuzz. "), "{text}");
        let auto = "Follow the method.\nStep 1: list.\nEnd with \"#Finally Rewritten Instruction#:\".\n\n#Instruction#:\nName a colour.\n";
        let config = MockConfig::default();
        let (_, never) = reply_for(&config, Kind::Rewrite, auto, "mock", 1, |_| 0.99);
        assert!(never.ends_with(&format!("{FINAL_MARKER} Name a colour. {}", CLAUSES[1])), "{never}");
        let (_, fails) = reply_for(&config, Kind::Rewrite, auto, "mock", 1, |_| 0.5);
        assert!(!fails.contains(FINAL_MARKER), "p = 0.6 without checks: {fails}");
        let checked = auto.replace("Step 1: list.", "Step 1: list.\nCheck 1: x.");
        let (_, passes) = reply_for(&config, Kind::Rewrite, &checked, "mock", 1, |_| 0.5);
        assert!(passes.contains(FINAL_MARKER), "p = 0.3 with one check: {passes}");
        let optimizer = "#Current Method#:\nStep 1: list.\n#End of Current Method#\nRewrite 1: x";
        let proposed = |h| reply_for(&config, Kind::Optimize, optimizer, "mock", h, |_| 0.0).1;
        assert!(proposed(2).ends_with("#Improved Method#:\nStep 1: list.\nCheck 1: make sure the reply ends with the final rewritten instruction.\nCheck 2: make sure the reply ends with the final rewritten instruction."), "{}", proposed(2));
        assert!(proposed(0).ends_with("#Improved Method#:\nStep 1: list."));
        assert!(!proposed(4).contains("#Improved Method#"));
    }

    #[test]
    fn the_tag_decides_the_stage_whatever_the_wording() {
        assert_eq!(stage(Some("evolve"), "Anything at all"), Kind::Rewrite);
        assert_eq!(stage(Some("judge"), "Anything at all"), Kind::Judge);
        assert_eq!(stage(Some("answer"), "Reply \"Equal\" or \"Not Equal\"."), Kind::Answer);
        let (kind, text) =
            reply_for(&MockConfig::default(), Kind::Rewrite, "Harder, please:\nName a fruit.", "mock", 5, |_| 1.0);
        assert_eq!(kind, Kind::Rewrite);
        assert!(text.starts_with("Harder, please:\nName a fruit. "), "{text}");
    }

    #[test]
    fn scores_rise_with_the_length_of_what_is_scored() {
        let config = MockConfig::default();
        let one = |prompt: &str, h| score_reply(&config, prompt, h, |_| 1.0);
        let short = one("Rate it.\n<<<\nName a fruit.\n>>>\nReply with a number.", 0);
        let long = one(&format!("Rate it.\n<<<\n{}\n>>>\nReply.", "word ".repeat(60)), 0);
        assert_eq!((short.as_str(), long.as_str()), ("1", "7"));
        assert_eq!(one("<<< a b >>>", 1), "Score: 2");
        let ranked = one("Rank them.\n\n[Instruction 1]\nshort one\n\n[Instruction 2]\n".to_string().as_str(), 0);
        assert_eq!(ranked, "1: 1\n2: 1");
        let unreadable = score_reply(&MockConfig { unreadable_rate: 1.0, ..config.clone() }, "x", 0, |_| 0.5);
        assert!(!unreadable.chars().any(|c| c.is_ascii_digit()), "{unreadable}");
    }

    #[test]
    fn classifies_and_rewrites() {
        let (text, kind) = reply("Make it harder.\n#The Given Prompt#:\nName a fruit.\n\n#Rewritten Prompt#:\n", 5);
        assert_eq!(kind, "rewrite");
        assert!(text.starts_with("Name a fruit. "), "{text}");
        let (text, kind) = reply("New one.\n#Given Prompt#:\nName a fruit.\n#Created Prompt#:", 5);
        assert_eq!(kind, "rewrite");
        assert!(text.contains("Name a fruit."));
        assert_eq!(reply("Reply \"Equal\" or \"Not Equal\".", 1).1, "judge");
        let (text, kind) = reply("What is 2+2?", 9);
        assert_eq!(kind, "answer");
        assert!(text.split_whitespace().count() >= 100 || text.starts_with("Sorry"));
    }

    #[test]
    fn token_cap_reports_length() {
        let (text, finish) = cap_tokens(&"w ".repeat(100), 8);
        assert_eq!(finish, "length");
        assert_eq!(text.split_whitespace().count(), 6);
        assert_eq!(cap_tokens("a b", 100).1, "stop");
    }

    #[test]
    fn equal_rate_is_respected() {
        let config = MockConfig { equal_rate: 0.3, ..MockConfig::default() };
        let equal = (0..10_000u64)
            .filter(|&h| {
                let (_, text) = reply_for(&config, Kind::Judge, "Is it equal?", "mock", h, |s| {
                    (splitmix(h ^ s) >> 11) as f64 / (1u64 << 53) as f64
                });
                text == "Equal"
            })
            .count();
        assert!((2_800..3_200).contains(&equal), "{equal}");
    }

    #[test]
    fn the_pairwise_judge_follows_strengths_and_position_bias() {
        let config = MockConfig {
            strengths: [("strong".to_string(), 2.0), ("weak".to_string(), -2.0)].into_iter().collect(),
            ..MockConfig::default()
        };
        let (_, answer) = reply_for(&config, Kind::Answer, "Name a fruit.", "strong", 9, |_| 0.5);
        assert!(answer.ends_with("(mock answer by strong)"), "{answer}");
        let prompt = |first: &str, second: &str| {
            format!(
                "Judge.\n[Question]\nq\n\n[Answer 1 begins]\nx (mock answer by {first})\n[Answer 1 ends]\n\n\
                 [Answer 2 begins]\ny (mock answer by {second})\n[Answer 2 ends]\n"
            )
        };
        assert_eq!(stage(None, &prompt("a", "b")), Kind::Pairwise);
        let mut strong_ahead = 0;
        for h in 0..400u64 {
            let unit = |salt: u64| (splitmix(h ^ salt) >> 11) as f64 / (1u64 << 53) as f64;
            let (kind, reply) = reply_for(&config, Kind::Pairwise, &prompt("weak", "strong"), "judge", h, unit);
            assert_eq!(kind, Kind::Pairwise);
            let first = reply.lines().next().unwrap();
            let scores: Vec<f64> = first.split(' ').map(|x| x.parse().unwrap()).collect();
            assert!(scores.iter().all(|s| (1.0..=10.0).contains(s)), "{reply}");
            strong_ahead += usize::from(scores[1] > scores[0]);
        }
        assert!(strong_ahead > 300, "{strong_ahead} of 400");
        let biased = MockConfig { position_bias: 3.0, strengths: Default::default(), ..MockConfig::default() };
        let firsts = (0..200u64)
            .filter(|&h| {
                let unit = |salt: u64| (splitmix(h ^ salt) >> 11) as f64 / (1u64 << 53) as f64;
                let reply = reply_for(&biased, Kind::Pairwise, &prompt("a", "b"), "judge", h, unit).1;
                let s: Vec<f64> = reply.lines().next().unwrap().split(' ').map(|x| x.parse().unwrap()).collect();
                s[0] > s[1]
            })
            .count();
        assert!(firsts > 150, "{firsts} of 200");
        let unreadable = MockConfig { unreadable_rate: 1.0, ..config.clone() };
        let reply = reply_for(&unreadable, Kind::Pairwise, &prompt("a", "b"), "judge", 1, |_| 0.5).1;
        assert!(!reply.lines().next().unwrap().chars().any(|c| c.is_ascii_digit()));
    }

    #[test]
    fn arithmetic_questions_get_checkable_answers_right_or_wrong_at_the_rate() {
        let answer = |wrong_rate: f64, prompt: &str| {
            let config = MockConfig { maths: Some(wrong_rate), ..MockConfig::default() };
            reply_for(&config, Kind::Answer, prompt, "m", 9, |_| 0.5).1
        };
        assert!(answer(0.0, "Compute 1,200 + 34 please.").ends_with("\\boxed{1234}."));
        assert!(answer(1.0, "Compute 12 * 3.").ends_with("\\boxed{37}."), "off by one when wrong");
        assert!(answer(0.0, "問題：7 × 6 は？").ends_with("\\boxed{42}."));
        assert!(!answer(0.0, "Explain photosynthesis.").contains("boxed"), "other questions as before");
    }
}
