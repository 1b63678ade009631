//! The OpenAI chat-completions wire format, in one place.
//!
//! The HTTP client (`evol-openai`) sends [`ChatCompletionRequest`]s and
//! reads [`ChatCompletion`]s; the simulator (`evol-mock`) and `evol serve`
//! (`evol-serve`) read requests and answer with completions,
//! [`ChatCompletionChunk`]s and [`ErrorBody`]s. Types are lenient where
//! real servers differ (optional fields, unknown fields ignored, content
//! as a string or an array of parts) and exact where evol writes.
//!
//! A request is serialized through a JSON map whose keys are sorted, so the
//! bytes of a request depend only on its values: the simulator derives its
//! replies from them and provider batches name requests by their digest.

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub messages: Vec<RequestMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<Value>,
    /// How hard a reasoning model thinks (`minimal`, `low`, `medium`,
    /// `high`), as OpenAI's API takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Variables for the server's chat template (vLLM, SGLang), such as
    /// Qwen3's `enable_thinking`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
}

impl ChatCompletionRequest {
    /// The request as a JSON value with sorted keys (what is sent).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a request serializes")
    }

    /// The text of every message, joined by newlines.
    pub fn prompt_text(&self) -> String {
        self.messages
            .iter()
            .map(|m| m.content.as_ref().map(Content::text).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One message of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// Message content: text, or an array of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text of the content (the text parts, joined).
    pub fn text(&self) -> String {
        match self {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => parts.iter().filter_map(|p| p.text.as_deref()).collect(),
        }
    }
}

/// One part of an array content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `stop`: one string or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(list) => list,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// A chat-completions reply, as a server writes it (clients read replies
/// through [`CompletionReply`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<CompletionUsage>,
}

/// One choice of a reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<ResponseMessage>,
    /// Legacy completions put the text here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// The message of a reply, as a server writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseMessage {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    /// A reasoning model's thinking trace, as DeepSeek's API and vLLM's or
    /// SGLang's reasoning parsers send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

impl ResponseMessage {
    /// An assistant message with text content.
    pub fn assistant(text: impl Into<String>) -> ResponseMessage {
        ResponseMessage { role: Some("assistant".into()), content: Some(text.into()), reasoning_content: None }
    }
}

/// A reply as a client reads it: only the choices and the usage; every
/// other field, of whatever type, is skipped unread (servers differ in
/// them, and reading them would cost time on every reply).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CompletionReply {
    #[serde(default)]
    pub choices: Vec<ReplyChoice>,
    #[serde(default)]
    pub usage: Option<CompletionUsage>,
}

/// One choice of a reply, as a client reads it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ReplyChoice {
    #[serde(default)]
    pub message: Option<ReplyMessage>,
    /// Legacy completions put the text here.
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The message of a reply, as a client reads it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ReplyMessage {
    /// A string, an array of parts, or null.
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default)]
    pub reasoning_content: Option<String>,
    /// Some servers (Ollama, OpenRouter) call it `reasoning`.
    #[serde(default)]
    pub reasoning: Option<String>,
}

impl ReplyMessage {
    /// The content as text: a string, or the text parts of an array.
    pub fn text(&self) -> String {
        match &self.content {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str).or_else(|| p.as_str()))
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        }
    }
}

/// Token counts of a reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionUsage {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub total_tokens: Option<u64>,
    /// OpenAI and vLLM report prefix-cache hits as `cached_tokens` here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// DeepSeek's name for prefix-cache hits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_hit_tokens: Option<u64>,
    /// OpenAI, DeepSeek and vLLM report a reasoning model's thinking
    /// tokens as `reasoning_tokens` here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

impl CompletionUsage {
    /// Counts as evol reports them.
    pub fn new(prompt: u64, completion: u64, cached: u64) -> CompletionUsage {
        CompletionUsage {
            prompt_tokens: Some(prompt),
            completion_tokens: Some(completion),
            total_tokens: Some(prompt + completion),
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: Some(cached) }),
            prompt_cache_hit_tokens: None,
            completion_tokens_details: None,
        }
    }

    /// Completion tokens spent thinking, where reported.
    pub fn reasoning(&self) -> u64 {
        self.completion_tokens_details.as_ref().and_then(|d| d.reasoning_tokens).unwrap_or(0)
    }

    /// Prompt tokens served from the prefix cache, in either reported form.
    pub fn cached(&self) -> u64 {
        self.prompt_tokens_details.as_ref().and_then(|d| d.cached_tokens).or(self.prompt_cache_hit_tokens).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

/// What a reply's completion tokens were spent on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

/// One server-sent event of a streamed reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<CompletionUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub finish_reason: Option<String>,
    pub logprobs: Option<Value>,
}

/// What a chunk adds to the message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// An error answer: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub code: Option<Value>,
}

impl ErrorBody {
    pub fn new(message: impl Into<String>, kind: &str, param: Option<&str>, code: Option<&str>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: message.into(),
                kind: kind.to_string(),
                param: param.map(String::from),
                code: code.map(|c| Value::String(c.to_string())),
            },
        }
    }
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

impl ModelList {
    /// A list of the given model ids.
    pub fn of(ids: &[&str], owned_by: &str) -> ModelList {
        ModelList {
            object: "list".into(),
            data: ids
                .iter()
                .map(|id| ModelEntry {
                    id: id.to_string(),
                    object: "model".into(),
                    created: 0,
                    owned_by: owned_by.into(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_serialize_with_sorted_keys_and_read_back() {
        let request = ChatCompletionRequest {
            model: Some("m".into()),
            messages: vec![RequestMessage { role: "user".into(), content: Some(Content::Text("hi".into())) }],
            temperature: Some(0.9),
            top_p: Some(1.0),
            max_tokens: Some(16.into()),
            seed: Some(7.into()),
            stop: Some(Stop::Many(vec!["x".into()])),
            ..Default::default()
        };
        let text = request.to_value().to_string();
        assert_eq!(
            text,
            r#"{"max_tokens":16,"messages":[{"content":"hi","role":"user"}],"model":"m","seed":7,"stop":["x"],"temperature":0.8999999761581421,"top_p":1.0}"#
        );
        // (An f32 is sent widened to f64, as evol always has sent it.)
        assert_eq!(serde_json::from_str::<ChatCompletionRequest>(&text).unwrap(), request);
    }

    #[test]
    fn replies_with_odd_fields_are_read() {
        // A client reads only choices and usage: odd types elsewhere pass.
        let c: CompletionReply = serde_json::from_str(
            r#"{"id":null,"created":1.7e9,"model":7,"choices":[{"index":"0","message":{"role":5,"content":"hi"}}]}"#,
        )
        .unwrap();
        assert_eq!(c.choices[0].message.as_ref().unwrap().text(), "hi");
        assert_eq!(c.usage, None);
    }

    #[test]
    fn content_is_text_or_parts() {
        let r: ChatCompletionRequest = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":null}],"stop":"END","unknown":1}"#,
        )
        .unwrap();
        assert_eq!(r.prompt_text(), "ab\n");
        assert_eq!(r.stop.unwrap().into_vec(), ["END"]);
    }
}
