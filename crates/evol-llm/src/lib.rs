//! The model interface of `evol`.
//!
//! Every model call in the project, whatever serves it (an OpenAI-compatible
//! HTTP server, a hosted API, later the embedded llama.cpp engine), goes
//! through one trait, [`ChatModel`]: chat [`Message`]s and [`Sampling`]
//! settings in, a [`ChatResponse`] (text, finish reason, token usage) or a
//! typed [`ChatError`] out.
//!
//! This crate knows nothing about HTTP: backends live in their own crates and
//! map their wire errors onto [`ErrorKind`], which tells the caller the one
//! thing it must decide, whether a failure belongs to one item (record it and
//! go on) or to the whole run (stop).

use std::fmt;
use std::time::Duration;

use rand::Rng;

use serde::{Deserialize, Serialize};

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One chat message; the content is always plain text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Message {
        Message { role: Role::User, content: content.into() }
    }

    pub fn system(content: impl Into<String>) -> Message {
        Message { role: Role::System, content: content.into() }
    }

    pub fn assistant(content: impl Into<String>) -> Message {
        Message { role: Role::Assistant, content: content.into() }
    }
}

/// Sampling settings of one request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub max_tokens: u32,
    /// A per-request seed for backends that support reproducible sampling.
    pub seed: Option<u64>,
    /// A reasoning model's thinking switches (absent when none is set, so
    /// the settings of runs without them read and digest as they always
    /// did).
    #[serde(default, skip_serializing_if = "Thinking::is_unset")]
    pub thinking: Thinking,
}

impl Sampling {
    /// Sampling without a request seed or thinking switches.
    pub fn new(temperature: f32, top_p: f32, max_tokens: u32) -> Sampling {
        Sampling { temperature, top_p, max_tokens, seed: None, thinking: Thinking::default() }
    }

    /// The same settings with another seed.
    pub fn with_seed(self, seed: Option<u64>) -> Sampling {
        Sampling { seed, ..self }
    }
}

/// How a reasoning model is asked to think: an effort (OpenAI's
/// `reasoning_effort`) and a chat-template switch (Qwen3's
/// `enable_thinking`, sent as `chat_template_kwargs` to vLLM and SGLang,
/// and given to the embedded engine's template). Unset: the model's own
/// default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thinking {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<Effort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl Thinking {
    pub fn is_unset(&self) -> bool {
        self.effort.is_none() && self.enabled.is_none()
    }

    /// These switches, each set one taking the place of `base`'s.
    pub fn or(self, base: Thinking) -> Thinking {
        Thinking { effort: self.effort.or(base.effort), enabled: self.enabled.or(base.enabled) }
    }
}

/// How hard a reasoning model thinks (`reasoning_effort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effort {
    Minimal,
    Low,
    Medium,
    High,
}

impl Effort {
    pub const NAMES: [&'static str; 4] = ["minimal", "low", "medium", "high"];

    pub fn name(self) -> &'static str {
        match self {
            Effort::Minimal => "minimal",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
        }
    }
}

impl std::str::FromStr for Effort {
    type Err = String;

    fn from_str(s: &str) -> Result<Effort, String> {
        match s {
            "minimal" => Ok(Effort::Minimal),
            "low" => Ok(Effort::Low),
            "medium" => Ok(Effort::Medium),
            "high" => Ok(Effort::High),
            other => Err(format!("`{other}` is no reasoning effort ({})", Effort::NAMES.join(", "))),
        }
    }
}

/// A request to a chat model.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub sampling: Sampling,
    /// Strings that end generation (not included in the text).
    pub stop: Vec<String>,
    /// What the call is for (`evolve`, `judge`, `answer`, ...): never part
    /// of the prompt. Test models read it; the HTTP client sends it only as
    /// an `X-Evol-Stage` header, which servers ignore and the simulator
    /// uses to tell stages apart.
    pub tag: Option<std::borrow::Cow<'static, str>>,
    /// A text for the model to continue as it is, in place of the
    /// messages (which are then empty): no chat template is applied.
    pub completion: Option<Completion>,
}

impl ChatRequest {
    /// A request without stop strings or tag.
    pub fn new(messages: Vec<Message>, sampling: Sampling) -> ChatRequest {
        ChatRequest { messages, sampling, stop: Vec::new(), tag: None, completion: None }
    }

    /// A request to continue a text (see [`Completion`]).
    pub fn completion(completion: Completion, sampling: Sampling) -> ChatRequest {
        ChatRequest { completion: Some(completion), ..ChatRequest::new(Vec::new(), sampling) }
    }
}

/// A prompt continued as it is, not a chat: what Magpie asks of an aligned
/// model (write the user's message itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// This text, continued as it is (a server's `/v1/completions`); the
    /// server reads any special tokens it spells as markup.
    Text(String),
    /// The model's own chat template up to where a user's message begins
    /// (after this system message, when there is one). Only a backend that
    /// owns the template (the embedded engine) can make it.
    UserTurn { system: Option<String> },
}

/// Why generation stopped, as the backend said it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ContentFilter,
    /// Any other string a server sends (`tool_calls`, `eos`, ...).
    Other(String),
    /// The server sent none.
    Unknown,
}

impl FinishReason {
    /// The reason as servers write it (`unknown` when none was sent).
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(other) => other,
            FinishReason::Unknown => "unknown",
        }
    }

    /// The reason as an OpenAI-compatible server sends it: one of its
    /// names, `stop` when none is known (clients expect a value).
    pub fn as_sent(&self) -> &str {
        match self {
            FinishReason::Unknown => "stop",
            known => known.as_str(),
        }
    }

    pub fn parse(s: Option<&str>) -> FinishReason {
        match s {
            None => FinishReason::Unknown,
            Some("stop") | Some("eos") | Some("end_turn") => FinishReason::Stop,
            Some("length") | Some("max_tokens") => FinishReason::Length,
            Some("content_filter") => FinishReason::ContentFilter,
            Some(other) => FinishReason::Other(other.to_string()),
        }
    }
}

/// Token counts of one call (zero where the backend reported none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens the server took from its prefix cache instead of
    /// computing (part of `prompt_tokens`; often billed lower).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_tokens: u64,
    /// Completion tokens a reasoning model spent thinking (part of
    /// `completion_tokens`), where the server reports them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        self.prompt_tokens += rhs.prompt_tokens;
        self.completion_tokens += rhs.completion_tokens;
        self.cached_tokens += rhs.cached_tokens;
        self.reasoning_tokens += rhs.reasoning_tokens;
    }
}

/// A model's reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The answer text (never the reasoning).
    pub text: String,
    /// Reasoning text of reasoning models, kept apart from the answer.
    pub reasoning: Option<String>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    /// Extra attempts the backend made before this reply (0: first try).
    pub retries: u32,
    /// What the server said about its limits.
    pub signals: Signals,
}

/// Splits reasoning a model wrote inline from its answer, in the shapes
/// reasoning models write when served without a reasoning parser:
/// - a leading `<think>...</think>` block;
/// - text that ends its reasoning with `</think>` alone, because the chat
///   template opened the block in the prompt (R1 distills, QwQ), or
///   `opened` says the prompt did;
/// - a `<think>` block that never closes (or, with `opened`, no
///   `</think>` at all): the reply was cut off while thinking, so all of it
///   is reasoning and the answer is empty (the finish reason says why).
pub fn split_reasoning(content: &str, opened: bool) -> (String, Option<String>) {
    let trimmed = content.trim_start();
    let inside = match trimmed.strip_prefix("<think>") {
        Some(rest) => Some(rest),
        // `</think>` with no `<think>` before it: the template opened it.
        None if opened || content.find("</think>").is_some_and(|end| !content[..end].contains("<think>")) => {
            Some(trimmed)
        }
        None => None,
    };
    let Some(rest) = inside else { return (content.to_string(), None) };
    match rest.find("</think>") {
        Some(end) => {
            let reasoning = rest[..end].trim().to_string();
            (rest[end + "</think>".len()..].trim_start().to_string(), Some(reasoning))
        }
        // Cut off inside the block: no answer yet.
        None => (String::new(), Some(rest.trim().to_string())),
    }
}

/// What a backend learned about the server's load and limits, for callers
/// that pace themselves (see `evol-pool`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signals {
    /// The failure means the server is overloaded (429, 503, a timeout):
    /// send it less.
    pub overloaded: bool,
    /// How long the server asked callers to wait.
    pub retry_after: Option<std::time::Duration>,
    /// The server's stated limits (from rate-limit headers).
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// The server sent a reply (any status): false when the connection
    /// failed, broke before a status line, or timed out waiting for one.
    /// A caller that hears nothing from any server does not count such a
    /// failure against a request's retries (see `evol-pool`).
    pub answered: bool,
}

/// What kind of failure a call ended in: decides item failure vs run failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Transient failures (connection, timeout, 429, 5xx, garbage body) that
    /// remained after every retry. The item fails; the run goes on.
    Exhausted,
    /// The server refused this request (a 4xx such as 400): the item fails.
    Rejected,
    /// Credentials refused (401/403): every call will fail, stop the run.
    Auth,
    /// Unknown model or endpoint (404): stop the run.
    NotFound,
    /// The account has no quota left (429 `insufficient_quota`): stop the run.
    Quota,
    /// The backend itself failed (the embedded engine stopped): stop the run.
    Backend,
    /// The call was abandoned unsent because the run is stopping: nothing
    /// happened, nothing is recorded, a rerun makes the call.
    Cancelled,
}

impl ErrorKind {
    /// Whether this failure dooms every later call too.
    pub fn is_fatal(self) -> bool {
        matches!(self, ErrorKind::Auth | ErrorKind::NotFound | ErrorKind::Quota | ErrorKind::Backend)
    }
}

/// A failed call. The message never contains credentials.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ChatError {
    pub kind: ErrorKind,
    pub message: String,
    /// Extra attempts made before giving up.
    pub retries: u32,
    pub signals: Signals,
}

impl ChatError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ChatError {
        ChatError { kind, message: message.into(), retries: 0, signals: Signals::default() }
    }
}

/// When to give up on a failing request, and how long to wait between
/// attempts: exponential backoff with jitter, or the server's own hint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Extra attempts after the first one.
    pub max_retries: u32,
    /// The first backoff step; it doubles with every retry.
    pub initial_backoff: Duration,
    /// The longest backoff step.
    pub max_backoff: Duration,
    /// The longest wait a server's `Retry-After` can impose.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before retry number `retry` (0 for the first retry).
    /// A server's hint wins over the computed backoff.
    pub fn delay(&self, retry: u32, server_hint: Option<Duration>, rng: &mut impl Rng) -> Duration {
        if let Some(hint) = server_hint {
            return hint.min(self.max_retry_after);
        }
        let step = self.initial_backoff.saturating_mul(2u32.saturating_pow(retry.min(20))).min(self.max_backoff);
        // "Equal jitter": half fixed, half random, so that many clients that
        // failed together do not come back together.
        let half = step / 2;
        half + half.mul_f64(rng.random::<f64>())
    }
}

/// A chat model: the one door through which `evol` reaches any model.
#[async_trait::async_trait]
pub trait ChatModel: Send + Sync {
    /// The model name recorded with each output.
    fn name(&self) -> &str;

    /// Runs one chat completion, including any retries the backend makes.
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, ChatError>;
}

/// The vectors of a batch of texts, in the order given, and what they
/// cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens read (as `prompt_tokens`; none for a model that does not
    /// count them).
    pub usage: Usage,
    /// Attempts the backend retried before this reply.
    pub retries: u32,
}

/// An embedding model: a server's `/v1/embeddings` or a model run
/// in-process. Like [`ChatModel`], every call to it goes through the
/// journaled caller.
#[async_trait::async_trait]
pub trait EmbeddingModel: Send + Sync {
    /// The model name the vectors are cached under.
    fn name(&self) -> &str;

    /// The vectors of `inputs`, one per input, including any retries the
    /// backend makes.
    async fn embed(&self, inputs: &[String]) -> Result<Embedded, ChatError>;
}

impl Role {
    /// The role's name on the wire and in chat templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finish_reasons_name_themselves_as_servers_do() {
        for name in ["stop", "length", "content_filter", "tool_calls"] {
            assert_eq!(FinishReason::parse(Some(name)).as_str(), name);
        }
        assert_eq!(FinishReason::parse(None).as_str(), "unknown");
        assert_eq!(FinishReason::parse(Some("eos")).as_str(), "stop");
        assert_eq!(FinishReason::Unknown.as_sent(), "stop", "a server always names a reason");
        assert_eq!(FinishReason::Length.as_sent(), "length");
    }

    use super::*;

    #[test]
    fn inline_reasoning_is_split_from_the_answer() {
        assert_eq!(split_reasoning("<think>\nhmm\n</think>\n\nAnswer", false), ("Answer".into(), Some("hmm".into())));
        assert_eq!(split_reasoning("hmm</think>Answer", true), ("Answer".into(), Some("hmm".into())));
        // No block, a block later on, or one cut short: the text as it is.
        assert_eq!(split_reasoning("Answer", false), ("Answer".into(), None));
        assert_eq!(split_reasoning("A <think>x</think> B", false), ("A <think>x</think> B".into(), None));
        // Cut off while thinking: all of it is reasoning, there is no answer.
        assert_eq!(split_reasoning("<think>still going", false), (String::new(), Some("still going".into())));
        assert_eq!(split_reasoning("still going", true), (String::new(), Some("still going".into())));
        // The template opened the block: the reply ends it alone.
        assert_eq!(
            split_reasoning("Let me think: 2+2.\n</think>\n\n答案是 4。", false),
            ("答案是 4。".into(), Some("Let me think: 2+2.".into()))
        );
        assert_eq!(split_reasoning("<think>a</think> and </think>", false), ("and </think>".into(), Some("a".into())));
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = RetryPolicy::default();
        let mut rng = rand::rng();
        for retry in 0..10 {
            let step = (p.initial_backoff * 2u32.pow(retry)).min(p.max_backoff);
            let d = p.delay(retry, None, &mut rng);
            assert!(d >= step / 2 && d <= step, "retry {retry}: {d:?}");
        }
        assert_eq!(p.delay(0, Some(Duration::from_secs(5)), &mut rng), Duration::from_secs(5));
        assert_eq!(p.delay(0, Some(Duration::from_secs(9999)), &mut rng), p.max_retry_after);
    }

    #[test]
    fn finish_reason_accepts_any_string() {
        assert_eq!(FinishReason::parse(Some("stop")), FinishReason::Stop);
        assert_eq!(FinishReason::parse(Some("length")), FinishReason::Length);
        assert_eq!(FinishReason::parse(None), FinishReason::Unknown);
        assert_eq!(FinishReason::parse(Some("tool_calls")), FinishReason::Other("tool_calls".into()));
    }

    #[test]
    fn only_item_errors_are_not_fatal() {
        assert!(!ErrorKind::Exhausted.is_fatal());
        assert!(!ErrorKind::Rejected.is_fatal());
        assert!(ErrorKind::Auth.is_fatal());
        assert!(ErrorKind::NotFound.is_fatal());
        assert!(ErrorKind::Quota.is_fatal());
        assert!(ErrorKind::Backend.is_fatal(), "a dead engine or journal dooms every later call");
        assert!(!ErrorKind::Cancelled.is_fatal(), "a cancelled call is the stop's, not the model's");
    }
}
