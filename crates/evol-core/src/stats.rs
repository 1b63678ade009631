//! Run statistics: what was attempted, accepted and rejected, and what the
//! model calls cost, per round and per operation.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use evol_llm::Usage;
use serde::{Deserialize, Serialize};

use crate::eliminate::{Reason, Verdict};

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Counters for one slice of a run (a round, an operation, or all of it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub attempted: u64,
    pub accepted: u64,
    /// Rejections by the rule that made them.
    pub rejected: BTreeMap<String, u64>,
    /// Model calls (each counted once, however many retries it took).
    pub requests: u64,
    /// Extra attempts made by retries.
    pub retries: u64,
    /// Calls that failed for good.
    pub failures: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens the server took from its prefix cache.
    pub cached_prompt_tokens: u64,
    /// Completion tokens a reasoning model spent thinking, where the server
    /// reports them (part of `completion_tokens`; absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
    /// What the calls cost, from the price table (0 without prices).
    pub cost: f64,
    /// Sum of the durations of this slice's calls.
    pub busy_seconds: f64,
    /// From the first call of this slice to the end of its last one.
    pub wall_seconds: f64,
    #[serde(skip)]
    span: Option<(Duration, Duration)>,
}

impl Tally {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    fn add_call(&mut self, start: Duration, end: Duration, call: Call) {
        let Call { usage, cost, retries, failed } = call;
        self.requests += 1;
        self.retries += u64::from(retries);
        self.failures += u64::from(failed);
        self.prompt_tokens += usage.prompt_tokens;
        self.completion_tokens += usage.completion_tokens;
        self.cached_prompt_tokens += usage.cached_tokens;
        self.reasoning_tokens += usage.reasoning_tokens;
        self.cost += cost;
        self.busy_seconds += (end - start).as_secs_f64();
        let (first, last) = self.span.get_or_insert((start, end));
        *first = (*first).min(start);
        *last = (*last).max(end);
        self.wall_seconds = (*last - *first).as_secs_f64();
    }

    fn add_outcome(&mut self, rejected: Option<Reason>) {
        self.attempted += 1;
        match rejected {
            None => self.accepted += 1,
            Some(reason) => *self.rejected.entry(reason.name().to_string()).or_default() += 1,
        }
    }
}

/// The statistics of a whole run, as written to `stats.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    pub seeds: u64,
    pub seeds_done: u64,
    pub wall_seconds: f64,
    /// Calls answered from the journal of an earlier, interrupted run.
    pub replayed_calls: u64,
    pub total: Tally,
    /// Per round (round 0 holds the seeds' own answers).
    #[serde(deserialize_with = "by_round")]
    pub rounds: BTreeMap<u32, Tally>,
    /// Per operation (`seed_answer` holds the seeds' own answers).
    pub operations: BTreeMap<String, Tally>,
    /// What the judge said when asked for information gain.
    #[serde(default)]
    pub judge: Verdicts,
    /// Difficulty scores per round (round 0: the seeds), with
    /// `--score-difficulty`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "by_round")]
    pub difficulty: BTreeMap<u32, ScoreTally>,
    /// Difficulty scores of Tree-Instruct evolutions, per number of nodes
    /// added.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "by_round")]
    pub difficulty_by_nodes: BTreeMap<u32, ScoreTally>,
    /// With `--answers K`: what became of the K answers of each instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<BestOfTally>,
    /// With `--improve-answers N`: what became of the rounds of improvement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub improve: Option<ImproveTally>,
    /// For a run that keeps each text's language: per language (ISO 639-1;
    /// `und` for seeds whose language could not be told).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub languages: BTreeMap<String, LanguageTally>,
}

/// One language's seeds and evolutions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LanguageTally {
    pub seeds: u64,
    pub attempted: u64,
    pub accepted: u64,
    /// Rejections by the rule that made them.
    pub rejected: BTreeMap<String, u64>,
    /// Texts the language rule let through because their language could not
    /// be told (too short, mostly code or maths, or unsure).
    pub undetermined: u64,
    /// Attempted and accepted per round.
    #[serde(deserialize_with = "by_round")]
    pub rounds: BTreeMap<u32, RoundCounts>,
}

/// How many evolutions a round attempted and accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundCounts {
    pub attempted: u64,
    pub accepted: u64,
}

/// The rounds of answer improvement (Evol-Answer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImproveTally {
    /// Rounds begun (a critique asked for).
    pub rounds: u64,
    /// Rewrites that scored higher and replaced the answer.
    pub kept: u64,
    /// Rewrites that scored no higher.
    pub not_better: u64,
    /// Comparisons whose scores could not be read (the answer stays).
    pub unreadable: u64,
    /// Rounds ended by a rule or a failed call, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Evolutions whose answer was improved at least once.
    pub improved_answers: u64,
}

/// The K answers of the instructions answered with `--answers K`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BestOfTally {
    /// Instructions answered K times.
    pub instructions: u64,
    /// Answers made (failed calls included).
    pub answers: u64,
    /// Answers an answer rule rejected, by the rule (`request_failed`:
    /// the call failed).
    pub rejected: BTreeMap<String, u64>,
    /// Instructions none of whose answers could be kept (the evolution is
    /// rejected).
    pub none_kept: u64,
    /// With `--pick score`: ranking replies whose scores were all read,
    /// and those where some could not be (or the call failed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ranked: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreadable_rankings: u64,
}

/// A map by round number, read from JSON's text keys whether or not the
/// map sits in a flattened struct (where serde hands the keys over as
/// text, not as numbers).
fn by_round<'de, D, T>(d: D) -> Result<BTreeMap<u32, T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let text: BTreeMap<String, T> = BTreeMap::deserialize(d)?;
    text.into_iter()
        .map(|(k, v)| k.parse().map(|k| (k, v)).map_err(|_| serde::de::Error::custom(format!("`{k}` is not a round"))))
        .collect()
}

/// Scores of one slice: how many were read, unreadable or failed, and the
/// mean and standard deviation of those read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreTally {
    pub scored: u64,
    /// Replies with no score in range (kept with the record, never given a
    /// default value).
    pub unreadable: u64,
    /// Calls that failed.
    pub failed: u64,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    #[serde(skip)]
    sum: f64,
    #[serde(skip)]
    sum_squares: f64,
}

impl ScoreTally {
    /// Counts one outcome: a score, an unreadable reply, or a failed call.
    pub fn add(&mut self, scored: &crate::score::Scored) {
        match scored.score {
            Some(v) => {
                self.scored += 1;
                self.sum += v;
                self.sum_squares += v * v;
                let n = self.scored as f64;
                let mean = self.sum / n;
                self.mean = Some(mean);
                self.std = Some((self.sum_squares / n - mean * mean).max(0.0).sqrt());
            }
            None if scored.error.is_some() => self.failed += 1,
            None => self.unreadable += 1,
        }
    }
}

/// The judge's verdicts: only `Equal` rejects an evolution, so an unclear
/// reply passes it; many unclear replies mean the check is not working.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdicts {
    pub equal: u64,
    pub not_equal: u64,
    pub unclear: u64,
}

impl Verdicts {
    pub fn total(&self) -> u64 {
        self.equal + self.not_equal + self.unclear
    }
}

impl RunStats {
    fn add_call(&mut self, slice: Slice<'_>, start: Duration, end: Duration, call: Call) {
        self.total.add_call(start, end, call);
        self.rounds.entry(slice.round).or_default().add_call(start, end, call);
        self.operations.entry(slice.operation.to_string()).or_default().add_call(start, end, call);
    }
}

/// The slice a call or outcome belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Slice<'a> {
    pub round: u32,
    pub operation: &'a str,
}

/// What one call used.
#[derive(Debug, Clone, Copy, Default)]
pub struct Call {
    pub usage: Usage,
    pub cost: f64,
    pub retries: u32,
    pub failed: bool,
}

/// Collects statistics from concurrent chains.
#[derive(Debug)]
pub struct StatsRecorder {
    start: Instant,
    inner: Mutex<RunStats>,
}

impl StatsRecorder {
    pub fn new(seeds: u64) -> StatsRecorder {
        StatsRecorder { start: Instant::now(), inner: Mutex::new(RunStats { seeds, ..RunStats::default() }) }
    }

    /// Records one model call that ran from `started` to now.
    pub fn call(&self, slice: Slice<'_>, started: Instant, call: Call) {
        let start = started.saturating_duration_since(self.start);
        let end = self.start.elapsed();
        self.inner.lock().unwrap().add_call(slice, start, end, call);
    }

    /// Records a call replayed from the journal (counted like the call it
    /// was, with no time spent).
    pub fn replayed(&self, slice: Slice<'_>, call: Call) {
        let now = self.start.elapsed();
        let mut s = self.inner.lock().unwrap();
        s.replayed_calls += 1;
        s.add_call(slice, now, now, call);
    }

    /// Records the outcome of one evolution attempt.
    pub fn outcome(&self, slice: Slice<'_>, rejected: Option<Reason>) {
        let mut s = self.inner.lock().unwrap();
        s.total.add_outcome(rejected);
        s.rounds.entry(slice.round).or_default().add_outcome(rejected);
        s.operations.entry(slice.operation.to_string()).or_default().add_outcome(rejected);
    }

    /// Records the judge's verdict on one evolution.
    pub fn verdict(&self, verdict: Verdict) {
        let mut s = self.inner.lock().unwrap();
        match verdict {
            Verdict::Equal => s.judge.equal += 1,
            Verdict::NotEqual => s.judge.not_equal += 1,
            Verdict::Unclear => s.judge.unclear += 1,
        }
    }

    /// Records a difficulty score of round `round` (0: a seed).
    pub fn difficulty(&self, round: u32, scored: &crate::score::Scored) {
        self.inner.lock().unwrap().difficulty.entry(round).or_default().add(scored);
    }

    /// Records a difficulty score of an evolution that added `nodes` nodes.
    pub fn difficulty_by_nodes(&self, nodes: u32, scored: &crate::score::Scored) {
        self.inner.lock().unwrap().difficulty_by_nodes.entry(nodes).or_default().add(scored);
    }

    /// Records the K answers of one instruction; `ranking`: whether a
    /// ranking was asked for and read whole.
    pub fn best_of(&self, answers: &[crate::record::AnswerCandidate], ranking: Option<bool>) {
        let mut s = self.inner.lock().unwrap();
        let t = s.best_of.get_or_insert_with(BestOfTally::default);
        t.instructions += 1;
        t.answers += answers.len() as u64;
        for a in answers {
            if let Some(reason) = a.rejected {
                *t.rejected.entry(reason.name().to_string()).or_default() += 1;
            }
        }
        t.none_kept += u64::from(!answers.iter().any(|a| a.kept));
        match ranking {
            Some(true) => t.ranked += 1,
            Some(false) => t.unreadable_rankings += 1,
            None => {}
        }
    }

    /// Records an evolution's rounds of answer improvement.
    pub fn improvements(&self, rounds: &[crate::record::Improvement]) {
        let mut s = self.inner.lock().unwrap();
        let t = s.improve.get_or_insert_with(ImproveTally::default);
        for r in rounds {
            t.rounds += 1;
            match (r.kept, r.rejected) {
                (true, _) => t.kept += 1,
                (false, Some(reason)) => *t.rejected.entry(reason.name().to_string()).or_default() += 1,
                (false, None) if r.score_before.is_some() && r.score_after.is_some() => t.not_better += 1,
                (false, None) => t.unreadable += 1,
            }
        }
        t.improved_answers += u64::from(rounds.iter().any(|r| r.kept));
    }

    /// Counts a seed of `language`.
    pub fn seed_language(&self, language: &str) {
        self.inner.lock().unwrap().languages.entry(language.to_string()).or_default().seeds += 1;
    }

    /// Counts an evolution attempt of `language` in `round`.
    pub fn language_outcome(&self, language: &str, round: u32, rejected: Option<Reason>) {
        let mut s = self.inner.lock().unwrap();
        let t = s.languages.entry(language.to_string()).or_default();
        t.attempted += 1;
        let r = t.rounds.entry(round).or_default();
        r.attempted += 1;
        match rejected {
            None => {
                t.accepted += 1;
                r.accepted += 1;
            }
            Some(reason) => *t.rejected.entry(reason.name().to_string()).or_default() += 1,
        }
    }

    /// Counts a text of `language` whose language could not be told.
    pub fn language_undetermined(&self, language: &str) {
        self.inner.lock().unwrap().languages.entry(language.to_string()).or_default().undetermined += 1;
    }

    pub fn seed_done(&self) {
        self.inner.lock().unwrap().seeds_done += 1;
    }

    /// A copy of the statistics so far.
    pub fn snapshot(&self) -> RunStats {
        let mut s = self.inner.lock().unwrap().clone();
        s.wall_seconds = self.start.elapsed().as_secs_f64();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_outcomes_land_in_every_slice() {
        let r = StatsRecorder::new(2);
        let slice = Slice { round: 1, operation: "deepen" };
        let usage = Usage { prompt_tokens: 10, completion_tokens: 5, cached_tokens: 4, ..Default::default() };
        r.call(slice, Instant::now(), Call { usage, cost: 0.25, retries: 2, failed: false });
        r.call(
            Slice { round: 2, operation: "breadth" },
            Instant::now(),
            Call { usage, failed: true, ..Call::default() },
        );
        r.outcome(slice, None);
        r.outcome(slice, Some(Reason::AnswerSorry));
        r.verdict(Verdict::Unclear);
        r.verdict(Verdict::NotEqual);
        r.verdict(Verdict::Unclear);
        r.seed_done();
        let s = r.snapshot();
        assert_eq!(s.total.requests, 2);
        assert_eq!(s.total.retries, 2);
        assert_eq!(s.total.failures, 1);
        assert_eq!(s.total.prompt_tokens, 20);
        assert_eq!(s.total.cost, 0.25);
        assert_eq!(s.total.cached_prompt_tokens, 8);
        assert_eq!(s.rounds[&1].requests, 1);
        assert_eq!(s.rounds[&1].attempted, 2);
        assert_eq!(s.rounds[&1].accepted, 1);
        assert_eq!(s.rounds[&1].rejected["answer_sorry"], 1);
        assert_eq!(s.operations["breadth"].failures, 1);
        assert_eq!(s.seeds_done, 1);
        assert_eq!(s.judge, Verdicts { equal: 0, not_equal: 1, unclear: 2 });
        assert_eq!(s.judge.total(), 3);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["rounds"]["1"]["rejected"]["answer_sorry"], 1);
    }
}
