//! What a run does: the settings that change its results, apart from the
//! settings that only change how fast or how far it goes.
//!
//! [`Method`] holds every setting the engine needs that changes what the
//! run produces; a run's identity (see `evol-store`) is built from it, so a
//! field added here is part of the identity by construction. Settings that
//! may change between attempts of one run (concurrency, timeouts, retries,
//! servers, budgets) live elsewhere and never reach the identity.
//!
//! [`Method::seed_calls`] and [`Method::step_calls`] describe the calls a
//! seed and a step make; the engine makes them in that order and the dry
//! run counts them, so the two cannot drift apart.

use evol_llm::Sampling;
use serde::{Deserialize, Serialize};

use crate::eliminate::Rules;
use crate::ops::{Operation, OperationSet};
use crate::roles::Role;

/// Every setting of a run that changes its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    pub rounds: u32,
    /// The enabled operations, drawn by weight.
    pub operations: OperationSet,
    /// The run seed every random choice derives from.
    pub run_seed: u64,
    /// The rules switched on for the run.
    pub rules: Rules,
    /// Answer each accepted evolution.
    pub answer: bool,
    /// Also answer the seeds themselves (for a dataset that includes them).
    pub answer_seeds: bool,
    pub evolve_sampling: Sampling,
    pub answer_sampling: Sampling,
    pub judge_sampling: Sampling,
    /// Send a per-request seed derived from the run's RNG.
    pub request_seeds: bool,
    /// Reject evolutions that are near duplicates of an ancestor or a seed,
    /// and drop near duplicates from the dataset; `None`: off (also for a
    /// run begun before there was such a check).
    #[serde(default)]
    pub dedup: Option<evol_dedup::Params>,
    /// Score the difficulty of the seeds and of each accepted evolution
    /// with this sampling (`None`: no scoring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<Sampling>,
    /// Reject evolutions that overlap a benchmark's items (`contaminated`),
    /// before any call is made for them but the evolving one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contamination: Option<Contamination>,
    /// Answer each accepted evolution K times and keep the best answer
    /// (`None`: one answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<BestOf>,
    /// Rounds of answer improvement (Evol-Answer): each a critique by the
    /// score model, a rewrite by the answerer, and a comparison that keeps
    /// the rewrite only if it scores higher (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub improve_answers: u32,
    /// Keep each text in its language: the prompts say which, and the
    /// language rule checks it (`None`: as runs begun before languages
    /// were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<LanguagePolicy>,
    /// A digest of the user's refusal phrases (`--refusals DIR`), which the
    /// sorry rule reads with or instead of the built-in ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusals: Option<String>,
    /// Each round adds a turn to a conversation (`--turns`): the seed's
    /// answer is its first, each round's operation writes the next user
    /// message from the conversation so far, answered in its context, and
    /// a failed turn ends the conversation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub conversation: bool,
}

/// Which language a run's evolutions and answers are written in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguagePolicy {
    /// Every evolution and answer in this language (ISO 639-1), whatever
    /// the seed's: cross-lingual evolution when they differ. `None`: each
    /// seed's own, detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// K answers an instruction, and how the kept one is picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestOf {
    /// Answers per instruction, at least 2.
    pub answers: u32,
    pub pick: crate::best_of::Pick,
}

/// The benchmarks a run keeps out of its data: what they are (a digest of
/// their items) and the run of words that makes an overlap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contamination {
    pub ngram: usize,
    /// Items indexed, and a digest of their names and texts.
    pub items: usize,
    pub digest: String,
}

/// Which kind of call of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Evolve,
    Judge,
    Answer,
    Score,
    /// Ranking an instruction's K answers together (`--pick score`).
    Rank,
    /// Critiquing the answer (Evol-Answer).
    Critique,
    /// Rewriting the answer with the critique.
    Improve,
    /// Scoring the rewrite against the answer it would replace.
    Compare,
}

impl Stage {
    /// The stage's name: in call keys, request tags and messages.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Evolve => "evolve",
            Stage::Judge => "judge",
            Stage::Answer => "answer",
            Stage::Score => "score",
            Stage::Rank => "rank",
            Stage::Critique => "critique",
            Stage::Improve => "improve",
            Stage::Compare => "compare",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One call a seed or a step makes when every check passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedCall {
    pub stage: Stage,
    pub role: Role,
    pub sampling: Sampling,
    /// Which of an instruction's K answers (0 for every other call).
    pub sample: u32,
}

impl PlannedCall {
    fn new(stage: Stage, role: Role, sampling: Sampling) -> PlannedCall {
        PlannedCall { stage, role, sampling, sample: 0 }
    }

    /// The stage's name in call keys: `answer`, then `answer#2`, `answer#3`
    /// for the further answers of `--answers K`.
    pub fn key_stage(&self) -> std::borrow::Cow<'static, str> {
        match self.sample {
            0 => self.stage.name().into(),
            k => format!("{}#{}", self.stage.name(), k + 1).into(),
        }
    }
}

impl Method {
    /// The calls a seed makes before its first step: its own answer, when
    /// seeds are answered, and its difficulty score, when scoring.
    pub fn seed_calls(&self) -> Vec<PlannedCall> {
        let answer = PlannedCall::new(Stage::Answer, Role::Answer, self.answer_sampling);
        let score = self.difficulty.map(|sampling| PlannedCall::new(Stage::Score, Role::Score, sampling));
        self.answer_seeds.then_some(answer).into_iter().chain(score).collect()
    }

    /// The calls of one step with `op`, in order: evolve, judge the
    /// information gain (when the equality rule applies), answer (when
    /// answering is on; K times with `best_of`, then rank the answers
    /// when the pick is by score), score the difficulty (when scoring). A
    /// step that fails a check makes none of the rest.
    pub fn step_calls(&self, op: &Operation) -> Vec<PlannedCall> {
        let rules = self.rules.for_operation(op);
        let mut calls = vec![PlannedCall::new(Stage::Evolve, Role::Evolve, self.evolve_sampling)];
        if rules.equality {
            calls.push(PlannedCall::new(Stage::Judge, Role::Judge, self.judge_sampling));
        }
        if self.answer {
            let k = self.best_of.map_or(1, |b| b.answers.max(1));
            for sample in 0..k {
                calls.push(PlannedCall {
                    sample,
                    ..PlannedCall::new(Stage::Answer, Role::Answer, self.answer_sampling)
                });
            }
            if self.ranks_answers() {
                calls.push(PlannedCall::new(Stage::Rank, Role::Score, self.judge_sampling));
            }
            // A critique needs room to say what is wrong: the answer's
            // token limit, greedy.
            let critique = Sampling { max_tokens: self.answer_sampling.max_tokens, ..self.judge_sampling };
            for sample in 0..self.improve_answers {
                calls.extend([
                    PlannedCall { sample, ..PlannedCall::new(Stage::Critique, Role::Score, critique) },
                    PlannedCall { sample, ..PlannedCall::new(Stage::Improve, Role::Answer, self.answer_sampling) },
                    PlannedCall { sample, ..PlannedCall::new(Stage::Compare, Role::Score, self.judge_sampling) },
                ]);
            }
        }
        if let Some(sampling) = self.difficulty {
            calls.push(PlannedCall::new(Stage::Score, Role::Score, sampling));
        }
        calls
    }

    /// Whether the judge ranks each instruction's K answers (`--pick score`).
    pub fn ranks_answers(&self) -> bool {
        self.answer && self.best_of.is_some_and(|b| b.answers > 1 && b.pick == crate::best_of::Pick::Score)
    }

    /// The roles whose models the run calls.
    pub fn roles(&self) -> Vec<Role> {
        let steps = self.operations.iter().flat_map(|op| self.step_calls(op));
        let mut roles = vec![Role::Evolve];
        for call in self.seed_calls().into_iter().chain(steps) {
            if !roles.contains(&call.role) {
                roles.push(call.role);
            }
        }
        roles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method() -> Method {
        let sampling =
            Sampling { temperature: 1.0, top_p: 0.9, max_tokens: 64, seed: None, thinking: Default::default() };
        Method {
            rounds: 2,
            operations: OperationSet::builtin(),
            run_seed: 0,
            rules: Rules::default(),
            answer: true,
            answer_seeds: false,
            evolve_sampling: sampling,
            answer_sampling: sampling,
            judge_sampling: Sampling { temperature: 0.0, ..sampling },
            request_seeds: true,
            dedup: None,
            difficulty: None,
            contamination: None,
            best_of: None,
            improve_answers: 0,
            language: None,
            refusals: None,
            conversation: false,
        }
    }

    #[test]
    fn the_plan_follows_the_rules_and_switches() {
        let m = method();
        let op = m.operations.get("deepen").unwrap().clone();
        let stages = |m: &Method| m.step_calls(&op).iter().map(|c| c.stage).collect::<Vec<_>>();
        assert_eq!(stages(&m), [Stage::Evolve, Stage::Judge, Stage::Answer]);
        assert!(m.seed_calls().is_empty());
        let quiet = Method { answer: false, rules: Rules { equality: false, ..Rules::default() }, ..m.clone() };
        assert_eq!(stages(&quiet), [Stage::Evolve]);
        assert_eq!(quiet.roles(), [Role::Evolve]);
        let seeds = Method { answer_seeds: true, ..m.clone() };
        assert_eq!(seeds.seed_calls()[0].role, Role::Answer);
        assert_eq!(m.roles(), [Role::Evolve, Role::Judge, Role::Answer]);
        let best = Method { best_of: Some(BestOf { answers: 3, pick: crate::best_of::Pick::Score }), ..m.clone() };
        let calls = best.step_calls(&op);
        let keys: Vec<_> = calls.iter().map(|c| c.key_stage()).collect();
        assert_eq!(keys, ["evolve", "judge", "answer", "answer#2", "answer#3", "rank"]);
        assert_eq!(best.roles(), [Role::Evolve, Role::Judge, Role::Answer, Role::Score]);
        let first = Method { best_of: Some(BestOf { answers: 2, pick: crate::best_of::Pick::First }), ..m.clone() };
        assert_eq!(first.step_calls(&op).len(), 4, "no ranking without --pick score");
        let improved = Method { improve_answers: 2, ..m };
        let keys: Vec<_> = improved.step_calls(&op).iter().map(|c| c.key_stage()).collect();
        assert_eq!(
            keys,
            ["evolve", "judge", "answer", "critique", "improve", "compare", "critique#2", "improve#2", "compare#2"]
        );
        assert!(improved.roles().contains(&Role::Score));
    }
}
