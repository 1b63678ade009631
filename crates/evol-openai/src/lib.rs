//! An OpenAI-compatible chat-completions client behind [`evol_llm::ChatModel`].
//!
//! It talks to anything that serves `POST {base}/chat/completions`: vLLM,
//! SGLang, llama.cpp's server, Ollama, `evol serve`, and hosted APIs. It is
//! tolerant in what it reads (unknown fields, any `finish_reason`, missing
//! usage, `reasoning_content`), plain in what it sends (message content as a
//! string), and stubborn on transient failures (see [`retry`]).
//!
//! The API key is only ever put in the `Authorization` header: it is not in
//! any error, log line or `Debug` output.

pub mod batch;
pub mod retry;
mod wire;

use std::fmt;
use std::time::{Duration, SystemTime};

use evol_llm::{
    ChatError, ChatModel, ChatRequest, ChatResponse, Completion, Embedded, EmbeddingModel, ErrorKind, Message,
    Sampling, Signals,
};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;

pub use batch::{BatchInfo, BatchLedger, BatchSettings, Batches};
pub use retry::RetryPolicy;

/// Where and how to reach a server.
#[derive(Clone)]
pub struct ClientConfig {
    /// The base URL, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
    /// The longest one attempt may take, body included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    /// The largest reply body read; a larger one fails the call (a server
    /// that ignores `max_tokens` cannot fill memory or the journal).
    pub max_reply_bytes: usize,
}

/// The default [`ClientConfig::max_reply_bytes`]: 32 MiB, hundreds of
/// times what the largest completion's JSON takes.
pub const MAX_REPLY_BYTES: usize = 32 << 20;

impl ClientConfig {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            max_reply_bytes: MAX_REPLY_BYTES,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// A configuration the client cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid endpoint `{0}`: expected an http:// or https:// URL such as http://127.0.0.1:8000/v1")]
    BadUrl(String),
    #[error("the API key contains characters that cannot go in an HTTP header")]
    BadKey,
    #[error("could not set up the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// An OpenAI-compatible chat model.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    base: String,
    model: String,
    retry: RetryPolicy,
    max_reply_bytes: usize,
}

/// A failed attempt, before the retry loop decides its fate.
struct Failure {
    retry: bool,
    kind: ErrorKind,
    signals: Signals,
    message: String,
}

impl Failure {
    fn transient(message: String) -> Failure {
        Failure { retry: true, kind: ErrorKind::Exhausted, signals: Signals::default(), message }
    }

    fn into_error(self, retries: u32) -> ChatError {
        ChatError { kind: self.kind, message: self.message, retries, signals: self.signals }
    }
}

/// Checks a server's base URL (an http:// or https:// URL with a host) and
/// returns it without trailing slashes.
pub fn parse_base_url(url: &str) -> Result<String, ConfigError> {
    let base = url.trim().trim_end_matches('/').to_string();
    let parsed = reqwest::Url::parse(&base).map_err(|_| ConfigError::BadUrl(base.clone()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(ConfigError::BadUrl(base));
    }
    Ok(base)
}

impl OpenAiClient {
    pub fn new(config: ClientConfig) -> Result<OpenAiClient, ConfigError> {
        // Whatever a server echoes, the key and the URL's credentials are
        // scrubbed from every message (see `evol-text`).
        if let Some(key) = &config.api_key {
            evol_text::register(key);
        }
        evol_text::register_url(&config.base_url);
        let base = parse_base_url(&config.base_url)?;
        let mut headers = HeaderMap::new();
        if let Some(key) = config.api_key.as_deref().filter(|k| !k.is_empty()) {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| ConfigError::BadKey)?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("evol/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(OpenAiClient {
            http,
            base,
            model: config.model,
            retry: config.retry,
            max_reply_bytes: config.max_reply_bytes,
        })
    }

    /// The same server and connection pool, another model name.
    pub fn with_model(&self, model: impl Into<String>) -> OpenAiClient {
        OpenAiClient { model: model.into(), ..self.clone() }
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Lists the served models (`GET {base}/models`). `Ok(None)` when the
    /// server has no such route. Not retried: this is the fast check made
    /// before a run starts.
    pub async fn list_models(&self) -> Result<Option<Vec<String>>, ChatError> {
        let url = format!("{}/models", self.base);
        let response = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| ChatError::new(ErrorKind::Exhausted, describe_transport(&e, &url)))?;
        let status = response.status();
        if status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Ok(wire::parse_model_list(&body));
        }
        let body = response.text().await.unwrap_or_default();
        match status.as_u16() {
            401 | 403 => Err(ChatError::new(ErrorKind::Auth, http_message(status, &body, &url))),
            _ => Ok(None),
        }
    }

    /// Embeds `inputs` with the client's model (`POST {base}/embeddings`),
    /// one vector per input, in order, with the tokens the server read;
    /// transient failures are retried as chat calls are.
    async fn embed_texts(&self, inputs: &[String]) -> Result<Embedded, ChatError> {
        let url = format!("{}/embeddings", self.base);
        let body = serde_json::json!({ "model": self.model, "input": inputs });
        let mut retries = 0;
        loop {
            let failure = match self.http.post(&url).json(&body).send().await {
                Err(e) => Failure::transient(describe_transport(&e, &url)),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry::server_hint(response.headers(), SystemTime::now());
                    let text = match read_body(response, self.max_reply_bytes).await {
                        Ok(Some(text)) => text,
                        Ok(None) => {
                            let message = format!(
                                "the embeddings reply from `{url}` is larger than {} MiB; it was not read",
                                self.max_reply_bytes >> 20
                            );
                            return Err(ChatError::new(ErrorKind::Rejected, evol_text::scrub(&message).into_owned()));
                        }
                        Err(_) => String::new(),
                    };
                    if status.is_success() {
                        return wire::parse_embeddings(&text, inputs.len())
                            .map(|(vectors, usage)| Embedded { vectors, usage, retries })
                            .map_err(|e| {
                                ChatError::new(
                                    ErrorKind::Exhausted,
                                    evol_text::scrub(&format!("unreadable embeddings from `{url}`: {e}")).into_owned(),
                                )
                            });
                    }
                    let code = wire::error_code(&text);
                    let message = http_message(status, &text, &url);
                    let mut signals = Signals { answered: true, retry_after, ..Signals::default() };
                    signals.overloaded = matches!(status.as_u16(), 408 | 429 | 503);
                    match retry::classify_status(status, code.as_deref()) {
                        retry::StatusClass::Retry => {
                            Failure { retry: true, kind: ErrorKind::Exhausted, signals, message }
                        }
                        retry::StatusClass::Fail(kind) => Failure { retry: false, kind, signals, message },
                    }
                }
            };
            if !failure.retry || retries >= self.retry.max_retries {
                return Err(failure.into_error(retries));
            }
            let wait = self.retry.delay(retries, failure.signals.retry_after, &mut rand::rng());
            tokio::time::sleep(wait).await;
            retries += 1;
        }
    }

    /// One request to `{base}/{path}` (`chat/completions` or
    /// `completions`), not retried.
    async fn attempt(&self, path: &str, body: &serde_json::Value, tag: Option<&str>) -> Result<ChatResponse, Failure> {
        let url = format!("{}/{path}", self.base);
        let mut post = self.http.post(&url).json(body);
        if let Some(tag) = tag.and_then(|t| HeaderValue::from_str(t).ok()) {
            // What the call is for; servers ignore it, the simulator reads it.
            post = post.header(STAGE_HEADER, tag);
        }
        let response = match post.send().await {
            Ok(r) => r,
            Err(e) => {
                let mut failure = Failure::transient(describe_transport(&e, &url));
                failure.signals.overloaded = e.is_timeout();
                return Err(failure);
            }
        };
        let status = response.status();
        let mut signals = retry::server_limits(response.headers());
        signals.answered = true;
        signals.retry_after = retry::server_hint(response.headers(), SystemTime::now());
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = match read_body(response, self.max_reply_bytes).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                // Not retried: the same question gets the same runaway reply.
                let message = format!(
                    "the reply from `{url}` is larger than {} MiB (did the server ignore max_tokens?); it was not read",
                    self.max_reply_bytes >> 20
                );
                return Err(Failure {
                    retry: false,
                    kind: ErrorKind::Rejected,
                    signals,
                    message: evol_text::scrub(&message).into_owned(),
                });
            }
            Err(e) => {
                let message = format!("reading the reply from `{url}` failed: {}", error_chain(&e));
                let mut failure = Failure::transient(evol_text::scrub(&message).into_owned());
                failure.signals.overloaded = e.is_timeout();
                failure.signals.answered = true;
                return Err(failure);
            }
        };
        if !status.is_success() {
            let code = wire::error_code(&text);
            let message = match html_page(&content_type, &text) {
                true => html_message(status, &content_type, &text, &url),
                false => http_message(status, &text, &url),
            };
            signals.overloaded = matches!(status.as_u16(), 408 | 429 | 503);
            return Err(match retry::classify_status(status, code.as_deref()) {
                retry::StatusClass::Retry => Failure { retry: true, kind: ErrorKind::Exhausted, signals, message },
                retry::StatusClass::Fail(kind) => Failure { retry: false, kind, signals, message },
            });
        }
        let mut reply = wire::parse_completion(&text).map_err(|e| {
            let message = match html_page(&content_type, &text) {
                true => html_message(status, &content_type, &text, &url),
                false => evol_text::scrub(&format!("unreadable reply from `{url}`: {e}")).into_owned(),
            };
            let mut failure = Failure::transient(message);
            failure.signals.answered = true;
            failure
        })?;
        reply.signals = signals;
        Ok(reply)
    }
}

#[async_trait::async_trait]
impl EmbeddingModel for OpenAiClient {
    fn name(&self) -> &str {
        &self.model
    }

    async fn embed(&self, inputs: &[String]) -> Result<Embedded, ChatError> {
        self.embed_texts(inputs).await
    }
}

#[async_trait::async_trait]
impl ChatModel for OpenAiClient {
    fn name(&self) -> &str {
        &self.model
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, ChatError> {
        let (path, body) = match &request.completion {
            None => ("chat/completions", request_body(&self.model, &request.messages, &request.sampling, &request.stop)),
            Some(Completion::Text(prompt)) => {
                ("completions", completion_body(&self.model, prompt, &request.sampling, &request.stop))
            }
            Some(Completion::UserTurn { .. }) => {
                return Err(ChatError::new(
                    ErrorKind::Rejected,
                    "a server's chat template is not known to the client: give the text that opens a user's turn (a template family or the prefix itself)",
                ))
            }
        };
        let mut retries = 0;
        loop {
            match self.attempt(path, &body, request.tag.as_deref()).await {
                Ok(mut reply) => {
                    reply.retries = retries;
                    return Ok(reply);
                }
                Err(f) if !f.retry => return Err(f.into_error(retries)),
                Err(mut f) if retries >= self.retry.max_retries => {
                    if retries > 0 {
                        f.message = format!("gave up after {} attempts; last error: {}", retries + 1, f.message);
                    }
                    return Err(f.into_error(retries));
                }
                Err(f) => {
                    let wait = self.retry.delay(retries, f.signals.retry_after, &mut rand::rng());
                    tokio::time::sleep(wait).await;
                    retries += 1;
                }
            }
        }
    }
}

/// The header that carries a request's tag (`ChatRequest::tag`).
pub const STAGE_HEADER: &str = "x-evol-stage";

/// The JSON body of a chat-completions request.
fn request_body(model: &str, messages: &[Message], sampling: &Sampling, stop: &[String]) -> serde_json::Value {
    use evol_wire::{ChatCompletionRequest, Content, RequestMessage, Stop};
    ChatCompletionRequest {
        model: Some(model.to_string()),
        messages: messages
            .iter()
            .map(|m| RequestMessage {
                role: m.role.as_str().to_string(),
                content: Some(Content::Text(m.content.clone())),
            })
            .collect(),
        temperature: Some(sampling.temperature),
        top_p: Some(sampling.top_p),
        max_tokens: Some(sampling.max_tokens.into()),
        seed: sampling.seed.map(Into::into),
        stop: (!stop.is_empty()).then(|| Stop::Many(stop.to_vec())),
        reasoning_effort: sampling.thinking.effort.map(|e| e.name().to_string()),
        chat_template_kwargs: sampling
            .thinking
            .enabled
            .map(|on| serde_json::Map::from_iter([("enable_thinking".to_string(), serde_json::Value::Bool(on))])),
        ..Default::default()
    }
    .to_value()
}

/// The JSON body of a text-completions request (`/v1/completions`).
fn completion_body(model: &str, prompt: &str, sampling: &Sampling, stop: &[String]) -> serde_json::Value {
    let mut body = serde_json::json!({
        "model": model,
        "prompt": prompt,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
    });
    if let Some(seed) = sampling.seed {
        body["seed"] = seed.into();
    }
    if !stop.is_empty() {
        body["stop"] = stop.into();
    }
    body
}

/// A transport error in words, with its causes (reqwest's top-level message
/// alone is often just "error sending request").
fn describe_transport(e: &reqwest::Error, url: &str) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    evol_text::scrub(&format!("request to `{url}` {what}: {}", error_chain(e))).into_owned()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn http_message(status: StatusCode, body: &str, url: &str) -> String {
    let detail = wire::error_message(body).unwrap_or_else(|| truncate(body.trim(), 300));
    let message = if detail.is_empty() {
        format!("HTTP {status} from `{url}`")
    } else {
        format!("HTTP {status} from `{url}`: {detail}")
    };
    evol_text::scrub(&message).into_owned()
}

/// Reads a reply body, `None` when it is larger than `limit` bytes (the
/// rest is not read).
async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Option<String>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if bytes.len() + chunk.len() > limit {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

/// Whether a body is a web page rather than the API's JSON.
fn html_page(content_type: &str, body: &str) -> bool {
    let head: String = body.trim_start().chars().take(16).collect::<String>().to_ascii_lowercase();
    content_type.to_ascii_lowercase().contains("html")
        || head.starts_with("<!doctype html")
        || head.starts_with("<html")
}

/// What to say of a web page where the API's JSON was expected: the status,
/// the content type, the page's start, and the likely cause.
fn html_message(status: StatusCode, content_type: &str, body: &str, url: &str) -> String {
    let start: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let content_type = if content_type.is_empty() { "none" } else { content_type };
    let message = format!(
        "`{url}` answered with a web page, not the API's JSON (HTTP {status}, content type `{content_type}`): \
         `{}`; is the URL a proxy, a login page or a web site rather than the server's API (usually ending in /v1)?",
        truncate(&start, 160)
    );
    evol_text::scrub(&message).into_owned()
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_key() {
        let mut c = ClientConfig::new("http://127.0.0.1:1/v1", "m");
        c.api_key = Some("sk-very-secret".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        let client = OpenAiClient::new(c).unwrap();
        assert!(!format!("{client:?}").contains("sk-very-secret"));
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in ["localhost:8000", "ftp://x/v1", "", "http://"] {
            assert!(OpenAiClient::new(ClientConfig::new(url, "m")).is_err(), "{url}");
        }
        let c = OpenAiClient::new(ClientConfig::new(" http://127.0.0.1:8000/v1/ ", "m")).unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:8000/v1");
    }

    #[test]
    fn request_body_sends_plain_string_content() {
        let s = Sampling { temperature: 0.0, top_p: 0.9, max_tokens: 7, seed: Some(3), thinking: Default::default() };
        let body = request_body("m", &[Message::user("{{ hi }}")], &s, &["END".to_string()]);
        assert_eq!(body["messages"][0]["content"], "{{ hi }}");
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["max_tokens"], 7);
        assert_eq!(body["seed"], 3);
        assert_eq!(body["stop"][0], "END");
        assert!(body.get("reasoning_effort").is_none() && body.get("chat_template_kwargs").is_none());
        let thinking = evol_llm::Thinking { effort: Some(evol_llm::Effort::Low), enabled: Some(false) };
        let body = request_body("m", &[Message::user("x")], &Sampling { thinking, ..s }, &[]);
        assert_eq!(body["reasoning_effort"], "low");
        assert_eq!(body["chat_template_kwargs"], serde_json::json!({"enable_thinking": false}));
        let body = request_body("m", &[], &s.with_seed(None), &[]);
        assert!(body.get("seed").is_none());
        assert!(body.get("stop").is_none());
    }

    #[test]
    fn long_bodies_are_cut() {
        assert_eq!(truncate("abcdef", 3), "abc...");
        assert_eq!(truncate("ab", 3), "ab");
        assert_eq!(truncate("ééééé", 2), "éé...");
    }
}
