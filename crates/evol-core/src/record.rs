//! The records a run produces, with their lineage.
//!
//! Ids are derived, not drawn: an evolution made from seed `S` in round `r`
//! is `S.r{r}`, so the same run always names the same record the same way.

use evol_llm::{Message, Role, Usage};
use serde::{Deserialize, Serialize};

use crate::eliminate::Reason;

/// A seed instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seed {
    pub id: String,
    /// The instruction; for a seed that is a conversation, its first user
    /// turn (what a one-turn run evolves).
    pub instruction: String,
    /// A seed that is a conversation of more than one turn: its user and
    /// assistant turns, in order (system and tool turns left out). Empty
    /// for a seed of one instruction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<Message>,
}

impl Seed {
    /// A seed of one instruction.
    pub fn new(id: impl Into<String>, instruction: impl Into<String>) -> Seed {
        Seed { id: id.into(), instruction: instruction.into(), turns: Vec::new() }
    }

    /// How a conversation run (`--turns`) opens with this seed: the turns
    /// before its last user turn, and that turn, which is answered in
    /// their context. A seed's own reply to its last user turn is not kept:
    /// the answer model answers it, as it answers every seed. A seed of one
    /// instruction opens with no turns before it.
    pub fn opening(&self) -> (&[Message], &str) {
        match self.turns.iter().rposition(|m| m.role == Role::User) {
            Some(last) => (&self.turns[..last], &self.turns[last].content),
            None => (&[], &self.instruction),
        }
    }
}

/// The id of the attempt to evolve `seed_id` in `round`.
pub fn evolution_id(seed_id: &str, round: u32) -> String {
    format!("{seed_id}.r{round}")
}

/// Where an evolution attempt comes from: shared by accepted and rejected
/// ones (flattened into their JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub id: String,
    /// The original seed's id.
    pub seed_id: String,
    /// The instruction this one was evolved from: the seed or an earlier
    /// accepted evolution of it.
    pub parent_id: String,
    pub round: u32,
    /// The operation's name.
    pub operation: String,
    /// The data format drawn for an operation that draws one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_format: Option<String>,
    /// The number of nodes a Tree-Instruct operation added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u32>,
}

/// An accepted evolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evolution {
    #[serde(flatten)]
    pub lineage: Lineage,
    pub instruction: String,
    /// The evolving model's thinking trace, when it is a reasoning model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction_reasoning: Option<String>,
    /// The answer, or null when answering is off.
    pub response: Option<String>,
    /// The answering model's thinking trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_reasoning: Option<String>,
    /// The model that evolved the instruction.
    pub model: String,
    /// The model that answered it, when answering is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_model: Option<String>,
    /// The answer was cut by the token limit (retrying failures asks again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answer_truncated: bool,
    /// Tokens of every call this evolution took (evolve, judge, answer).
    pub usage: Usage,
    /// The language it is written in (ISO 639-1), for a run that keeps
    /// each text's language; absent when the seed's could not be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Its difficulty score, with `--score-difficulty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<crate::score::Scored>,
    /// With `--answers K`: every answer, what became of it, and which one
    /// `response` is (`kept`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<AnswerCandidate>,
    /// With `--pick score`: the judge's ranking reply when some answer's
    /// score could not be read from it (or the error, when the call
    /// failed); the answer kept is then the best of those scored, or the
    /// first usable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranking: Option<crate::score::Scored>,
    /// With `--improve-answers N`: each round of improvement, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub improvements: Vec<Improvement>,
    /// The answer before any improvement was kept (`response` is the
    /// improved one); absent when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_response: Option<String>,
    /// The constraints the instruction states, each an id with its
    /// arguments (`verifiable` operations add them), which its answer keeps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<evol_constraints::Constraint>,
    /// In a conversation (`--turns`): the turns before this one, the seed
    /// and its answer first; `instruction` and `response` are this turn's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<evol_llm::Message>,
}

/// One round of answer improvement (Evol-Answer): the judge's critique of
/// the current answer, the answerer's rewrite, and the scores that decided
/// whether the rewrite replaced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Improvement {
    /// 1 for the first round.
    pub round: u32,
    /// The critique; null when its call failed (`detail`).
    pub critique: Option<String>,
    /// The rewritten answer; null when it was not made.
    pub response: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_reasoning: Option<String>,
    /// The quality scores (1 to 6) of the answer before and of the rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_before: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_after: Option<f64>,
    /// The rewrite replaced the answer.
    pub kept: bool,
    /// Why it did not: an answer rule's reason, `request_failed`, or
    /// absent when it scored no higher (or the scores could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Reason>,
    /// A failed call's error, or the comparison's reply when its scores
    /// could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One of an instruction's K answers (`--answers K`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerCandidate {
    /// The answer; null when its call failed (`detail`: the error).
    pub response: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_reasoning: Option<String>,
    /// The answer rule that rejects it, or `request_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The judge's quality score, 1 to 6, with `--pick score`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// It was cut off by the token limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// It is the answer the record keeps.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
}

impl AnswerCandidate {
    /// The candidate as the choice among K sees it.
    pub fn as_candidate(&self) -> crate::best_of::Candidate {
        use crate::best_of::Standing;
        let standing = match (&self.response, self.rejected) {
            (None, _) => Standing::Failed,
            (Some(_), Some(_)) => Standing::Unusable,
            (Some(_), None) => Standing::Usable,
        };
        let chars = self.response.as_deref().map_or(0, |r| r.chars().count());
        crate::best_of::Candidate { standing, chars, score: self.score }
    }
}

/// The preference pair an evolution's K answers make (see
/// [`crate::best_of::pair`]): the kept answer against the worst one.
pub fn preference_pair(answers: &[AnswerCandidate]) -> Option<(&AnswerCandidate, &AnswerCandidate, Option<f64>)> {
    let chosen = answers.iter().position(|a| a.kept)?;
    let candidates: Vec<_> = answers.iter().map(AnswerCandidate::as_candidate).collect();
    let pair = crate::best_of::pair(&candidates, chosen)?;
    Some((&answers[pair.chosen], &answers[pair.rejected], pair.margin))
}

/// A failed evolution: the same lineage, the failed text and the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    #[serde(flatten)]
    pub lineage: Lineage,
    /// The evolved text, or null when the evolving call itself failed.
    pub instruction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction_reasoning: Option<String>,
    pub response: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_reasoning: Option<String>,
    pub reason: Reason,
    /// What the rule or the failure said: the judge's reply, the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For a near duplicate: the id of the seed or evolution it duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    /// For a near duplicate: the estimated Jaccard similarity to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
    pub model: String,
    pub usage: Usage,
    /// The language it should have been written in (see [`Evolution`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// With `--answers K`: every answer, none of which could be kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<AnswerCandidate>,
    /// The constraints the instruction was to state (see [`Evolution`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<evol_constraints::Constraint>,
    /// In a conversation: the turns before the one that failed, which the
    /// conversation is kept up to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<evol_llm::Message>,
}

/// A seed's difficulty score, with `--score-difficulty`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedScore {
    pub id: String,
    pub instruction: String,
    pub difficulty: crate::score::Scored,
    pub model: String,
    pub usage: Usage,
}

/// A seed's own answer, made when seeds go into the final dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedAnswer {
    pub id: String,
    pub instruction: String,
    pub response: Option<String>,
    /// The answering model's thinking trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_reasoning: Option<String>,
    /// Why there is no response, when the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub model: String,
    pub usage: Usage,
    /// The answer rule (or the content filter) that rejects the answer,
    /// as a reason name: such a seed is left out of the dataset, as a
    /// rejected evolution is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// What the rule said: for `contaminated`, the benchmark item and the
    /// words shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The answer was cut off by the token limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answer_truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lineage_is_flattened_in_the_order_records_always_had() {
        let e = Evolution {
            lineage: Lineage {
                id: "s.r1".into(),
                seed_id: "s".into(),
                parent_id: "s".into(),
                round: 1,
                operation: "deepen".into(),
                data_format: None,
                nodes: None,
            },
            instruction: "q".into(),
            instruction_reasoning: None,
            response: None,
            response_reasoning: None,
            model: "m".into(),
            answer_model: None,
            answer_truncated: false,
            usage: Usage::default(),
            language: None,
            difficulty: None,
            answers: Vec::new(),
            ranking: None,
            improvements: Vec::new(),
            original_response: None,
            constraints: Vec::new(),
            history: Vec::new(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"id":"s.r1","seed_id":"s","parent_id":"s","round":1,"operation":"deepen","instruction":"q","response":null,"model":"m","usage":{"prompt_tokens":0,"completion_tokens":0}}"#
        );
        assert_eq!(serde_json::from_str::<Evolution>(&json).unwrap(), e);
    }
}
