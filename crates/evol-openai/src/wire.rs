//! Reading OpenAI-style JSON leniently: only what is needed, unknown fields
//! ignored, nulls and missing fields allowed where real servers omit them.
//! The reply types are `evol_wire`'s; error bodies and model lists come in
//! so many shapes that they are read as plain JSON.

use evol_llm::{ChatResponse, FinishReason, Usage};
use evol_wire::CompletionReply;
use serde_json::Value;

/// Parses a chat-completions reply body.
pub fn parse_completion(body: &str) -> Result<ChatResponse, String> {
    let completion: CompletionReply = serde_json::from_str(body).map_err(|e| format!("not a chat completion ({e})"))?;
    let choice = completion.choices.into_iter().next().ok_or("the reply has no choices")?;
    let (content, mut reasoning) = match choice.message {
        Some(m) => (m.text(), m.reasoning_content.or(m.reasoning)),
        None => (choice.text.unwrap_or_default(), None),
    };
    let (text, inline_reasoning) = evol_llm::split_reasoning(&content, false);
    if reasoning.is_none() {
        reasoning = inline_reasoning;
    }
    let usage = completion
        .usage
        .map(|u| Usage {
            prompt_tokens: u.prompt_tokens.unwrap_or(0),
            completion_tokens: u.completion_tokens.unwrap_or(0),
            cached_tokens: u.cached(),
            reasoning_tokens: u.reasoning(),
        })
        .unwrap_or_default();
    Ok(ChatResponse {
        text,
        reasoning: reasoning.filter(|r| !r.is_empty()),
        finish_reason: FinishReason::parse(choice.finish_reason.as_deref()),
        usage,
        retries: 0,
        signals: Default::default(),
    })
}

/// The `error.code` of an error body, if any.
pub fn error_code(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let code = v.get("error")?.get("code")?;
    code.as_str().map(String::from).or_else(|| Some(code.to_string()))
}

/// The human message of an error body, in the shapes servers use.
pub fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let text = match v.get("error") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(e) => e.get("message").and_then(Value::as_str).map(String::from),
        None => None,
    }
    .or_else(|| v.get("message").and_then(Value::as_str).map(String::from))
    .or_else(|| v.get("detail").map(|d| d.as_str().map(String::from).unwrap_or_else(|| d.to_string())))?;
    Some(super::truncate(&text, 300))
}

/// The ids of a `/models` listing, `None` when the body is not one.
pub fn parse_model_list(body: &str) -> Option<Vec<String>> {
    let v: Value = serde_json::from_str(body).ok()?;
    let data = v.get("data").or_else(|| v.get("models"))?.as_array()?;
    Some(
        data.iter()
            .filter_map(|m| m.get("id").or_else(|| m.get("name")).and_then(Value::as_str).map(String::from))
            .collect(),
    )
}

/// The vectors of an embeddings reply (`data[].embedding`, put in the
/// order of `data[].index`), which must hold one per input.
pub(crate) fn parse_embeddings(text: &str, inputs: usize) -> Result<(Vec<Vec<f32>>, Usage), String> {
    #[derive(serde::Deserialize)]
    struct Reply {
        data: Vec<Item>,
        #[serde(default)]
        usage: Option<Tokens>,
    }
    #[derive(serde::Deserialize)]
    struct Tokens {
        #[serde(default)]
        prompt_tokens: Option<u64>,
        #[serde(default)]
        total_tokens: Option<u64>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        index: Option<usize>,
        embedding: Vec<f32>,
    }
    let reply: Reply = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for (position, item) in reply.data.into_iter().enumerate() {
        let index = item.index.unwrap_or(position);
        if index >= inputs || vectors[index].is_some() {
            return Err(format!("an embedding for input {index} of {inputs}"));
        }
        if item.embedding.is_empty() || item.embedding.iter().any(|x| !x.is_finite()) {
            return Err(format!("the embedding of input {index} is empty or not finite"));
        }
        vectors[index] = Some(item.embedding);
    }
    let vectors: Vec<Vec<f32>> = vectors.into_iter().flatten().collect();
    if vectors.len() != inputs {
        return Err(format!("{} embeddings for {inputs} inputs", vectors.len()));
    }
    if vectors.iter().any(|v| v.len() != vectors[0].len()) {
        return Err("embeddings of different lengths".into());
    }
    let read = reply.usage.and_then(|u| u.prompt_tokens.or(u.total_tokens)).unwrap_or(0);
    Ok((vectors, Usage { prompt_tokens: read, ..Usage::default() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_read_in_index_order_and_checked() {
        let text = r#"{"object":"list","data":[{"index":1,"embedding":[0.0,1.0]},{"index":0,"embedding":[1.0,0.0]}],"usage":{"prompt_tokens":3}}"#;
        let (vectors, usage) = parse_embeddings(text, 2).unwrap();
        assert_eq!(vectors, [vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert_eq!(usage.prompt_tokens, 3, "the tokens read are counted");
        let (_, usage) = parse_embeddings(r#"{"data":[{"embedding":[1.0]}],"usage":{"total_tokens":5}}"#, 1).unwrap();
        assert_eq!(usage.prompt_tokens, 5, "a server that gives only the total");
        assert!(parse_embeddings(text, 3).unwrap_err().contains("2 embeddings for 3"));
        assert!(parse_embeddings(r#"{"data":[{"embedding":[1.0]},{"embedding":[1.0,2.0]}]}"#, 2).is_err());
        assert!(parse_embeddings(r#"{"data":[{"index":5,"embedding":[1.0]}]}"#, 1).is_err());
        assert!(parse_embeddings("oops", 1).is_err());
    }

    #[test]
    fn minimal_and_rich_replies() {
        let r = parse_completion(r#"{"choices":[{"message":{"content":"hi"}}]}"#).unwrap();
        assert_eq!(r.text, "hi");
        assert_eq!(r.finish_reason, FinishReason::Unknown);
        assert_eq!(r.usage, Usage::default());

        let r = parse_completion(
            r#"{"id":"x","object":"chat.completion","extra":{"a":1},
                "choices":[{"index":0,"message":{"role":"assistant","content":"ok",
                "reasoning_content":"thinking","tool_calls":[]},"finish_reason":"weird_reason","logprobs":null}],
                "usage":{"prompt_tokens":5,"completion_tokens":null,"total_tokens":5}}"#,
        )
        .unwrap();
        assert_eq!(r.text, "ok");
        assert_eq!(r.reasoning.as_deref(), Some("thinking"));
        assert_eq!(r.finish_reason, FinishReason::Other("weird_reason".into()));
        assert_eq!(r.usage, Usage { prompt_tokens: 5, ..Usage::default() });
    }

    #[test]
    fn content_arrays_nulls_and_think_blocks() {
        let r = parse_completion(
            r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#,
        )
        .unwrap();
        assert_eq!(r.text, "ab");
        let r =
            parse_completion(r#"{"choices":[{"message":{"content":null},"finish_reason":"content_filter"}]}"#).unwrap();
        assert_eq!(r.text, "");
        assert_eq!(r.finish_reason, FinishReason::ContentFilter);
        let r = parse_completion(r#"{"choices":[{"message":{"content":"<think>hmm</think>\n\nAnswer"}}]}"#).unwrap();
        assert_eq!(r.text, "Answer");
        assert_eq!(r.reasoning.as_deref(), Some("hmm"));
        // The chat template opened the block: the reply closes it alone.
        let r = parse_completion(
            r#"{"choices":[{"message":{"content":"Okay, 7 is prime.\n</think>\n\n7"}}],
                "usage":{"prompt_tokens":9,"completion_tokens":20,"completion_tokens_details":{"reasoning_tokens":12}}}"#,
        )
        .unwrap();
        assert_eq!((r.text.as_str(), r.reasoning.as_deref()), ("7", Some("Okay, 7 is prime.")));
        assert_eq!(r.usage.reasoning_tokens, 12, "thinking tokens are counted apart");
        // Cut off while thinking: a truncation with no answer, the trace kept.
        let r =
            parse_completion(r#"{"choices":[{"message":{"content":"<think>first, the"},"finish_reason":"length"}]}"#)
                .unwrap();
        assert_eq!((r.text.as_str(), r.reasoning.as_deref()), ("", Some("first, the")));
        assert_eq!(r.finish_reason, FinishReason::Length);
        let r = parse_completion(r#"{"choices":[{"text":"legacy","finish_reason":"length"}]}"#).unwrap();
        assert_eq!(r.text, "legacy");
        assert_eq!(r.finish_reason, FinishReason::Length);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_completion("<html>502</html>").is_err());
        assert!(parse_completion(r#"{"choices":[]}"#).is_err());
        assert!(parse_completion(r#"{"choices":"#).is_err());
        assert!(parse_completion("[1,2]").is_err());
    }

    #[test]
    fn error_bodies() {
        let body = r#"{"error":{"message":"You exceeded your quota","type":"x","code":"insufficient_quota"}}"#;
        assert_eq!(error_code(body).as_deref(), Some("insufficient_quota"));
        assert_eq!(error_message(body).as_deref(), Some("You exceeded your quota"));
        assert_eq!(error_message(r#"{"error":"model not found"}"#).as_deref(), Some("model not found"));
        assert_eq!(error_message(r#"{"detail":"Not Found"}"#).as_deref(), Some("Not Found"));
        assert_eq!(error_message("plain"), None);
        assert_eq!(error_code(r#"{"error":{"code":429}}"#).as_deref(), Some("429"));
    }

    #[test]
    fn model_lists() {
        assert_eq!(
            parse_model_list(r#"{"object":"list","data":[{"id":"a"},{"id":"b"}]}"#),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(parse_model_list(r#"{"models":[{"name":"llama3"}]}"#), Some(vec!["llama3".to_string()]));
        assert_eq!(parse_model_list("nope"), None);
    }
}
