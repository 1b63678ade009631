//! The journal: every model call's outcome is committed here before the run
//! acts on it, so that a run stopped at any moment can be replayed without
//! sending a completed call again.
//!
//! Calls are named by a [`call_key`] derived from the seed, the round and
//! the stage; since every prompt and every random choice follows from the
//! inputs and the earlier outcomes, replaying the journal retraces the run
//! exactly. This module only defines the interface; storage lives elsewhere.

use std::collections::HashMap;

use evol_llm::{FinishReason, Usage};
use serde::{Deserialize, Serialize};

/// An error from a journal's storage.
pub type JournalError = Box<dyn std::error::Error + Send + Sync>;

/// A committed call outcome: the reply, or the item failure it ended in.
/// (Failures that stop the run are not committed: the call is made again
/// when the run resumes.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub text: Option<String>,
    /// The reasoning model's thinking trace, kept apart from the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    pub finish_reason: Option<FinishReason>,
    /// What the call's requests used, those of earlier failed attempts
    /// (retried with `--retry-failed`) included: what was paid.
    pub usage: Usage,
    /// Requests beyond the first: retries, and earlier failed attempts.
    pub retries: u32,
    /// The failure message when the call failed.
    pub error: Option<String>,
    /// The digest of what was asked (model, prompt, sampling without the
    /// seed): an outcome is replayed only for the same question.
    #[serde(default)]
    pub prompt: String,
    /// How many times the call was sent again to retry a failure.
    #[serde(default)]
    pub attempt: u32,
}

impl CallRecord {
    /// Whether retrying failures sends this call again: it failed, or its
    /// reply was cut by the token limit or a content filter.
    pub fn is_failure(&self) -> bool {
        self.error.is_some() || matches!(self.finish_reason, Some(FinishReason::Length | FinishReason::ContentFilter))
    }
}

/// Where call outcomes are committed.
pub trait Journal: Send + Sync {
    fn lookup(&self, key: &str) -> Result<Option<CallRecord>, JournalError>;
    fn commit(&self, key: &str, record: &CallRecord) -> Result<(), JournalError>;

    /// The vectors `model` gave for the texts of these digests, where
    /// kept (none, for a journal that keeps no vectors).
    fn vectors(&self, _model: &str, _digests: &[String]) -> Result<HashMap<String, Vec<f32>>, JournalError> {
        Ok(HashMap::new())
    }

    /// Keeps vectors of `model` by text digest, all or none.
    fn commit_vectors(&self, _model: &str, _items: &[(String, Vec<f32>)]) -> Result<(), JournalError> {
        Ok(())
    }
}

/// No journal: every call is made.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoJournal;

impl Journal for NoJournal {
    fn lookup(&self, _key: &str) -> Result<Option<CallRecord>, JournalError> {
        Ok(None)
    }
    fn commit(&self, _key: &str, _record: &CallRecord) -> Result<(), JournalError> {
        Ok(())
    }
}

/// The key of one call: the seed, the round (0 for a seed's own answer) and
/// the stage, as a JSON array so that no seed id can collide with another.
pub fn call_key(seed_id: &str, round: u32, stage: &str) -> String {
    serde_json::json!([seed_id, round, stage]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_do_not_collide() {
        assert_ne!(call_key("a\",1", 2, "judge"), call_key("a", 1, "judge"));
        assert_eq!(call_key("s", 1, "evolve"), r#"["s",1,"evolve"]"#);
    }
}
