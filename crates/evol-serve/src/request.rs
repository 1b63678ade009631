//! A request body deserialized into `evol_wire`'s typed request, then
//! validated into a [`ChatRequest`] before the engine sees it.

use evol_llm::{ChatRequest, Message, Role, Sampling};
use evol_wire::{ChatCompletionRequest, Content};
use serde_json::Number;

use crate::error::ApiError;

/// A validated request.
#[derive(Debug)]
pub struct Valid {
    pub request: ChatRequest,
    pub stream: bool,
    pub include_usage: bool,
}

/// Reads and checks a body: JSON of the right types (a wrong type names
/// its parameter), a known model, messages of known roles with text
/// content, sampling in range; refuses what would change the reply's shape
/// (tools, JSON formats, logprobs) rather than silently ignoring it.
pub fn validate(body: &[u8], model: &str, max_tokens_cap: u32) -> Result<Valid, ApiError> {
    check_fields(body)?;
    let mut json = serde_json::Deserializer::from_slice(body);
    let parsed: ChatCompletionRequest = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let param = e.path().iter().find_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        });
        match param {
            Some(param) => ApiError::invalid(param, format!("`{}`: {}", e.path(), e.inner())),
            None => ApiError::invalid("body", format!("the body is not a valid JSON request: {}", e.inner())),
        }
    })?;
    if let Some(asked) = &parsed.model {
        if asked != model {
            return Err(ApiError {
                status: axum::http::StatusCode::NOT_FOUND,
                message: format!("the model `{asked}` does not exist; this server runs `{model}`"),
                kind: "invalid_request_error",
                param: Some("model".into()),
            });
        }
    }
    if parsed.messages.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` must be a non-empty array"));
    }
    let mut messages = Vec::with_capacity(parsed.messages.len());
    for (i, m) in parsed.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(ApiError::invalid(
                    "messages",
                    format!("messages[{i}].role must be one of system, developer, user, assistant (got `{other}`)"),
                ))
            }
        };
        let content = match &m.content {
            Some(Content::Text(text)) => text.clone(),
            Some(Content::Parts(parts)) => {
                if let Some(part) = parts.iter().find(|p| p.kind != "text" || p.text.is_none()) {
                    return Err(ApiError::invalid(
                        "messages",
                        format!("messages[{i}].content: only text parts are supported (got `{}`)", part.kind),
                    ));
                }
                parts.iter().filter_map(|p| p.text.as_deref()).collect()
            }
            None if role == Role::Assistant => String::new(),
            None => return Err(ApiError::invalid("messages", format!("messages[{i}].content is missing"))),
        };
        messages.push(Message { role, content });
    }

    let max_tokens = match parsed.max_completion_tokens.as_ref().or(parsed.max_tokens.as_ref()) {
        Some(n) => match whole(n) {
            Some(n) if n >= 1 => n.min(i128::from(max_tokens_cap)) as u32,
            _ => return Err(ApiError::invalid("max_tokens", "`max_tokens` must be a positive integer")),
        },
        None => max_tokens_cap,
    };
    let temperature = parsed.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid("temperature", "`temperature` must be between 0 and 2"));
    }
    let top_p = parsed.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid("top_p", "`top_p` must be above 0 and at most 1"));
    }
    if let Some(n) = &parsed.n {
        if whole(n) != Some(1) {
            return Err(ApiError::invalid("n", "only `n` = 1 is supported"));
        }
    }
    let seed = match &parsed.seed {
        None => None,
        Some(n) => match whole(n) {
            // Negative seeds are taken as their two's complement, as
            // clients that only send signed integers expect.
            Some(s) if (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(&s) => Some(s as u64),
            _ => return Err(ApiError::invalid("seed", "`seed` must be an integer")),
        },
    };
    let stop = parsed.stop.map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > 4 {
        return Err(ApiError::invalid("stop", "`stop` must be a string or an array of at most 4 strings"));
    }
    // Features that change what a client gets back are refused rather than
    // ignored: a client asking for tool calls, JSON or logprobs must not
    // silently get plain text.
    let unsupported = |name: &str, what: &str| ApiError::invalid(name, format!("{what} not supported by this server"));
    if parsed.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(unsupported("tools", "tools (function calling) are"));
    }
    match &parsed.tool_choice {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(s)) if s == "none" || s == "auto" => {}
        Some(_) => return Err(unsupported("tool_choice", "`tool_choice` other than `none` or `auto` is")),
    }
    match &parsed.response_format {
        None | Some(serde_json::Value::Null) => {}
        Some(f) if f.get("type").and_then(serde_json::Value::as_str) == Some("text") => {}
        Some(_) => return Err(unsupported("response_format", "`response_format` other than `text` is")),
    }
    if parsed.logprobs == Some(true) || parsed.top_logprobs.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported("logprobs", "logprobs are"));
    }
    let stream = parsed.stream.unwrap_or(false);
    if parsed.stream_options.is_some() && !stream {
        return Err(ApiError::invalid("stream_options", "`stream_options` is only allowed with `stream: true`"));
    }
    let include_usage = parsed.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
    // The chat template's switches: `enable_thinking` reaches the
    // template; any other variable would be ignored, so it is refused.
    let mut thinking = evol_llm::Thinking::default();
    for (key, value) in parsed.chat_template_kwargs.iter().flatten() {
        match (key.as_str(), value) {
            ("enable_thinking", serde_json::Value::Bool(on)) => thinking.enabled = Some(*on),
            ("enable_thinking", _) => {
                return Err(ApiError::invalid("chat_template_kwargs", "`enable_thinking` must be true or false"))
            }
            (other, _) => {
                return Err(ApiError::invalid(
                    "chat_template_kwargs",
                    format!(
                        "the chat template variable `{other}` is not supported by this server (only `enable_thinking`)"
                    ),
                ))
            }
        }
    }
    let sampling = Sampling { temperature, top_p, max_tokens, seed, thinking };
    Ok(Valid { request: ChatRequest { messages, sampling, stop, tag: None, completion: None }, stream, include_usage })
}

/// Fields read by [`validate`] (the typed request).
const KNOWN: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "response_format",
    "logprobs",
    "top_logprobs",
    "chat_template_kwargs",
];
/// Fields that do not change the reply: accepted and ignored.
const HARMLESS: &[&str] = &["user", "metadata", "store", "service_tier", "parallel_tool_calls"];
/// Sampling fields this server does not implement, with the value that
/// means "off": accepted only at that value (or null).
const OFF_AT: &[(&str, f64)] = &[
    ("frequency_penalty", 0.0),
    ("presence_penalty", 0.0),
    ("repetition_penalty", 1.0),
    ("min_p", 0.0),
    ("top_k", -1.0),
    ("typical_p", 1.0),
];

/// Refuses fields that would change the reply but that this server does
/// not implement: a client must not get a reply made without them as if
/// they had been honoured.
fn check_fields(body: &[u8]) -> Result<(), ApiError> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(()); // the typed parse names the problem
    };
    for (key, value) in &map {
        if KNOWN.contains(&key.as_str()) || HARMLESS.contains(&key.as_str()) || value.is_null() {
            continue;
        }
        if let Some((_, off)) = OFF_AT.iter().find(|(name, _)| name == key) {
            let is_off = value.as_f64() == Some(*off) || (key == "top_k" && value.as_f64() == Some(0.0));
            if is_off {
                continue;
            }
            return Err(ApiError::invalid(
                key.clone(),
                format!("`{key}` is not supported by this server (only {off})"),
            ));
        }
        if key == "logit_bias" && value.as_object().is_some_and(|m| m.is_empty()) {
            continue;
        }
        return Err(ApiError::invalid(key.clone(), format!("`{key}` is not supported by this server")));
    }
    if let Some(options) = map.get("stream_options").and_then(|o| o.as_object()) {
        if let Some(other) = options.keys().find(|k| *k != "include_usage") {
            return Err(ApiError::invalid(
                "stream_options",
                format!("`stream_options.{other}` is not supported by this server (only `include_usage`)"),
            ));
        }
    }
    Ok(())
}

/// A JSON number that is a whole number (`5` or `5.0`).
fn whole(n: &Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u));
    }
    n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e30).map(|f| f as i128)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Result<Valid, String> {
        validate(body.as_bytes(), "m", 64).map_err(|e| format!("{}: {}", e.param.unwrap_or_default(), e.message))
    }

    #[test]
    fn wrong_types_name_their_parameter() {
        for (body, param) in [
            (r#"{"messages":[{"role":"user","content":5}]}"#, "messages"),
            (r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#, "temperature"),
            (r#"{"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#, "stream"),
            (r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":1.5}"#, "max_tokens"),
            (r#"{"messages":[{"role":"user","content":"x"}],"seed":"abc"}"#, "seed"),
            ("[1, 2]", "body"),
            ("not json", "body"),
        ] {
            let err = check(body).unwrap_err();
            assert!(err.starts_with(&format!("{param}:")), "{body}: {err}");
        }
    }

    #[test]
    fn valid_requests_become_chat_requests() {
        let v = check(
            r#"{"model":"m","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],
                "max_tokens":1000,"seed":-1,"stop":"END","stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(v.request.messages[0].role, Role::System);
        assert_eq!(v.request.messages[1].content, "hi");
        assert_eq!(v.request.sampling.max_tokens, 64, "capped");
        assert_eq!(v.request.sampling.seed, Some(u64::MAX));
        assert_eq!(v.request.stop, ["END"]);
        assert!(v.stream && v.include_usage);
        let err = check(r#"{"model":"other","messages":[{"role":"user","content":"x"}]}"#).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        let v =
            check(r#"{"messages":[{"role":"user","content":"x"}],"chat_template_kwargs":{"enable_thinking":false}}"#)
                .unwrap();
        assert_eq!(v.request.sampling.thinking.enabled, Some(false), "the switch reaches the template");
    }

    #[test]
    fn what_would_change_the_reply_is_refused_not_ignored() {
        let m = r#""messages":[{"role":"user","content":"x"}]"#;
        for (extra, param) in [
            (r#""frequency_penalty":0.5"#, "frequency_penalty"),
            (r#""presence_penalty":1"#, "presence_penalty"),
            (r#""logit_bias":{"50256":-100}"#, "logit_bias"),
            (r#""top_k":40"#, "top_k"),
            (r#""min_p":0.1"#, "min_p"),
            (r#""guided_json":{}"#, "guided_json"),
            (r#""stream_options":{"include_usage":true}"#, "stream_options"),
            (r#""stream":true,"stream_options":{"include_usage":true,"include_obfuscation":true}"#, "stream_options"),
            (r#""stream":true,"stream_options":{"include_usage":"yes"}"#, "stream_options"),
            (r#""reasoning_effort":"high""#, "reasoning_effort"),
            (r#""chat_template_kwargs":{"thinking_budget":512}"#, "chat_template_kwargs"),
            (r#""chat_template_kwargs":{"enable_thinking":"no"}"#, "chat_template_kwargs"),
        ] {
            let err = check(&format!("{{{m},{extra}}}")).unwrap_err();
            assert!(err.starts_with(&format!("{param}:")), "{extra}: {err}");
        }
        for extra in [
            r#""frequency_penalty":0"#,
            r#""presence_penalty":null"#,
            r#""logit_bias":{}"#,
            r#""top_k":-1"#,
            r#""user":"u1""#,
            r#""metadata":{"a":"b"}"#,
        ] {
            assert!(check(&format!("{{{m},{extra}}}")).is_ok(), "{extra}");
        }
    }
}
