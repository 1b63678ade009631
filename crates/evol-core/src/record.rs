//! The records a run produces, with their lineage.
//!
//! Ids are derived, not drawn: an evolution made from seed `S` in round `r`
//! is `S.r{r}`, so the same run always names the same record the same way.

use evol_llm::Usage;
use serde::{Deserialize, Serialize};

use crate::eliminate::Reason;
use crate::ops::Operation;

/// A seed instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seed {
    pub id: String,
    pub instruction: String,
}

/// The id of the attempt to evolve `seed_id` in `round`.
pub fn evolution_id(seed_id: &str, round: u32) -> String {
    format!("{seed_id}.r{round}")
}

/// An accepted evolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evolution {
    pub id: String,
    /// The original seed's id.
    pub seed_id: String,
    /// The instruction this one was evolved from: the seed or an earlier
    /// accepted evolution of it.
    pub parent_id: String,
    pub round: u32,
    pub operation: Operation,
    /// The data format drawn for `complicate_input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_format: Option<String>,
    pub instruction: String,
    /// The answer, or null when answering is off.
    pub response: Option<String>,
    /// The model that evolved the instruction.
    pub model: String,
    /// The model that answered it, when answering is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_model: Option<String>,
    /// The answer was cut by the token limit (`--retry-failed` asks again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answer_truncated: bool,
    /// Tokens of every call this evolution took (evolve, judge, answer).
    pub usage: Usage,
}

/// A failed evolution: the same lineage, the failed text and the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub id: String,
    pub seed_id: String,
    pub parent_id: String,
    pub round: u32,
    pub operation: Operation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_format: Option<String>,
    /// The evolved text, or null when the evolving call itself failed.
    pub instruction: Option<String>,
    pub response: Option<String>,
    pub reason: Reason,
    /// What the rule or the failure said: the judge's reply, the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub model: String,
    pub usage: Usage,
}

/// A seed's own answer, made when seeds go into the final dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedAnswer {
    pub id: String,
    pub instruction: String,
    pub response: Option<String>,
    /// Why there is no response, when the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub model: String,
    pub usage: Usage,
}
