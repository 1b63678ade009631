//! `evol answer TESTSET -o OUT`: a model's answers to a test set.
//!
//! One call per turn (a conversation's turns in order, each seeing the
//! answers before it), keyed by (question id, turn, `answer`) in OUT's
//! journal, so a rerun sends only what is missing. The answers are
//! written in test-set order at the end of every attempt, finished or
//! stopped.

use std::sync::Mutex;

use anyhow::Context;
use evol_core::stats::Slice;
use evol_core::{CallError, CallKey, CallSpec, Prompt, Role};
use evol_llm::{Message, Role as Speaker, Usage};
use evol_store::output::{ANSWERS, STATS};
use evol_store::{JobKind, RunState};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};

use super::testset::{read_testset_with, request_seed, Asked, Question};
use crate::observe::{human, Observer};
use crate::results::CallSummary;
use crate::session::{drain, Session};
use crate::settings::{AnswerSettings, Pick};
use crate::shutdown::Shutdown;

/// One question's outcome: the answers to its turns, or the error that
/// stopped them.
struct Outcome {
    answers: Vec<String>,
    /// Each answer's thinking trace (a reasoning model's), in turn order.
    reasonings: Vec<Option<String>>,
    finish_reason: Option<String>,
    usage: Usage,
    error: Option<String>,
    /// With `--answers K`: every answer sampled, checked against the
    /// reference; `answers` then holds the one picked, if any is correct.
    samples: Vec<Sample>,
    /// With `--pick score`: the ranking reply, when some score could not
    /// be read from it (or the error of its call).
    ranking: Option<String>,
    /// Whether a ranking was asked for, and read whole.
    ranked: Option<bool>,
    /// Which sample `answers` holds.
    kept: Option<usize>,
}

/// One of a question's K sampled answers.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<String>,
    /// `correct`, `wrong`, `unreadable` (no final answer to read), or
    /// `failed` (the call failed: `error`); without a reference,
    /// `answered`.
    verdict: &'static str,
    /// The judge's quality score (1 to 6), with `--pick score`.
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Against a `ground_truth` reference: the constraint the answer broke
    /// (or why the reference cannot be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    broken: Option<String>,
}

/// A reference that is a row's constraints (the `ground_truth` of
/// `--ops verifiable`, open-instruct's layout): `None` when it is not one,
/// else the constraints or why they cannot be read.
fn constraints_of(reference: &str) -> Option<Result<Vec<evol_constraints::Constraint>, String>> {
    let truth = evol_constraints::GroundTruth::from_label(reference).ok()?;
    Some(truth.constraints().map_err(|e| format!("the reference's {e}")))
}

impl Sample {
    /// The sample as the choice among K sees it: a correct answer (any
    /// answer, without a reference) may be kept.
    fn candidate(&self) -> evol_core::best_of::Candidate {
        use evol_core::best_of::{Candidate, Standing};
        let standing = match self.verdict {
            "correct" | "answered" => Standing::Usable,
            "failed" => Standing::Failed,
            _ => Standing::Unusable,
        };
        let chars = self.answer.as_deref().map_or(0, |a| a.chars().count());
        Candidate { standing, chars, score: self.score }
    }
}

/// What checking (against a reference) and ranking (`--pick score`) the
/// sampled answers found, over every question sampled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Verification {
    pub samples: u32,
    pub correct: usize,
    pub wrong: usize,
    pub unreadable: usize,
    pub failed: usize,
    /// Answers made without a reference to check them against.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub answered: usize,
    /// With `--pick score`: rankings read whole, and those where some
    /// score could not be read (the first answer that may be kept is).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ranked: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreadable_rankings: usize,
    /// Questions with no correct answer among their samples: left without
    /// an answer (rejection sampling), their error `no_correct_answer`.
    pub none_correct: usize,
    /// Preference pairs written (a correct answer and a wrong one).
    pub pairs: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Answers every question of the test set (what a rerun finds in OUT's
/// journal is not asked again) and writes `answers.jsonl` and `stats.json`.
pub async fn answer(
    settings: AnswerSettings,
    observer: &dyn Observer,
    mut shutdown: Shutdown,
) -> anyhow::Result<AnswerReport> {
    let questions =
        read_testset_with(&settings.testset, settings.format, settings.limit, settings.reference_field.as_deref())?;
    let k = u64::from(settings.samples.max(1));
    let calls: u64 = questions.iter().map(|q| if q.conversation { q.turns.len() as u64 } else { k }).sum();
    let n = questions.len() as u64;
    let eval = &settings.eval;
    let ranks = settings.samples > 1 && settings.pick == Pick::Score;
    let session = Session::open_with_scorer(
        (&settings.output, settings.fresh, JobKind::Answer),
        &eval.model,
        &eval.execution,
        Role::Answer,
        ranks.then(|| settings.judge_model.clone()),
        n,
        observer,
    )
    .await?;
    // What the calls are asked with: sampling several answers is part of
    // it (an older job, one answer a question, records none of it).
    let job = match settings.samples {
        0 | 1 => json!({ "system": settings.system }),
        n => json!({
            "system": settings.system,
            "samples": n,
            "reference_field": settings.reference_field,
            "pick": settings.pick,
            "judge": session.scorer.as_ref().map(|s| s.name()),
        }),
    };
    let asked = Asked::new(session.model.name(), eval, job);
    session.begin("answer_identity", &asked, "answers")?;
    let name = settings.name.clone().unwrap_or_else(|| session.model.name().to_string());
    observer.say(&format!(
        "evol: answering {} questions ({calls} calls) with `{}` as `{name}` -> `{}`",
        questions.len(),
        session.model.name(),
        session.out.root().display()
    ));
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new((0..questions.len()).map(|_| None).collect());
    let asked = futures::stream::iter(questions.iter().enumerate())
        .map(|(i, q)| answer_one(&session, &settings, i, q))
        .buffer_unordered(session.connected.admitted.max(1));
    let work = drain(asked, &session.caller, |(i, outcome)| results.lock().unwrap()[i] = Some(outcome));
    let ended = session.run(work, (n, "questions"), &mut shutdown, observer).await;
    let results = results.into_inner().unwrap();

    let path = session.out.path(ANSWERS);
    let mut writer = evol_io::RowWriter::create(&path, evol_io::Layout::Jsonl)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    let (mut answered, mut failed) = (0, 0);
    let mut verification =
        (settings.samples > 1).then(|| Verification { samples: settings.samples, ..Default::default() });
    let pairs_path = session.out.path(PAIRS);
    let mut pairs = match &verification {
        Some(_) => Some(
            evol_io::RowWriter::create(&pairs_path, evol_io::Layout::Jsonl)
                .with_context(|| format!("cannot write `{}`", pairs_path.display()))?,
        ),
        None => None,
    };
    for (q, outcome) in questions.iter().zip(&results) {
        let Some(outcome) = outcome else { continue };
        match outcome.error {
            Some(_) => failed += 1,
            None => answered += 1,
        }
        writer.write_json(&row(q, &name, outcome)).with_context(|| format!("cannot write `{}`", path.display()))?;
        if let (Some(v), Some(pairs)) = (&mut verification, &mut pairs) {
            if outcome.samples.is_empty() {
                continue;
            }
            for s in &outcome.samples {
                match s.verdict {
                    "correct" => v.correct += 1,
                    "wrong" => v.wrong += 1,
                    "unreadable" => v.unreadable += 1,
                    "answered" => v.answered += 1,
                    _ => v.failed += 1,
                }
            }
            match outcome.ranked {
                Some(true) => v.ranked += 1,
                Some(false) => v.unreadable_rankings += 1,
                None => {}
            }
            if outcome.error.as_deref() == Some(NO_CORRECT_ANSWER) {
                v.none_correct += 1;
            }
            // Chosen: the answer kept; rejected: the worst answered sample
            // (one that is not correct, else the lowest scored below it).
            let candidates: Vec<_> = outcome.samples.iter().map(Sample::candidate).collect();
            let pair = outcome.kept.and_then(|kept| evol_core::best_of::pair(&candidates, kept));
            if let Some(pair) = pair {
                let (chosen, rejected) = (&outcome.samples[pair.chosen], &outcome.samples[pair.rejected]);
                let line = PairLine {
                    id: &q.id,
                    prompt: &q.turns[0],
                    chosen: chosen.answer.as_deref().unwrap_or_default(),
                    rejected: rejected.answer.as_deref().unwrap_or_default(),
                    margin: pair.margin,
                    chosen_score: chosen.score,
                    rejected_score: rejected.score,
                    rejected_verdict: rejected.verdict,
                    reference: q.reference.as_deref(),
                    model: &name,
                };
                pairs.write_json(&line).with_context(|| format!("cannot write `{}`", pairs_path.display()))?;
                v.pairs += 1;
            }
        }
    }
    writer.finish().with_context(|| format!("cannot write `{}`", path.display()))?;
    if let Some(pairs) = pairs {
        pairs.finish().with_context(|| format!("cannot write `{}`", pairs_path.display()))?;
    }
    let state = ended.state(answered + failed == questions.len());
    session.journal.set_state(state)?;
    let snapshot = session.stats.snapshot();
    let report = AnswerReport {
        evol_version: env!("CARGO_PKG_VERSION").to_string(),
        state,
        questions: questions.len(),
        answered,
        failed,
        calls,
        calls_made: CallSummary::of(&snapshot, &session.journal)?,
        model: session.model.name().to_string(),
        name: name.clone(),
        sampling: settings.eval.sampling,
        verification: verification.clone(),
    };
    session.out.write_json(STATS, &report)?;
    observer.say(&format!(
        "evol: answered {answered} of {} questions ({failed} failed) in {}; wrote {}",
        questions.len(),
        human(std::time::Duration::from_secs_f64(snapshot.wall_seconds)),
        path.display()
    ));
    if let Some(v) = &report.verification {
        let checked = match settings.reference_field.is_some() {
            true => format!(
                "checked against its reference: {} correct, {} wrong, {} unreadable, {} failed; {} questions with no correct answer are left without one",
                v.correct, v.wrong, v.unreadable, v.failed, v.none_correct
            ),
            false => format!("{} answered, {} failed", v.answered, v.failed),
        };
        let ranked = match (v.ranked, v.unreadable_rankings) {
            (0, 0) => String::new(),
            (read, unread) => format!("; {read} rankings read, {unread} not read whole"),
        };
        observer.say(&format!(
            "evol: {} answers a question {checked}{ranked}; {} preference pairs in {}",
            v.samples,
            v.pairs,
            session.out.path(PAIRS).display()
        ));
    }
    let what = format!("no question of {} was answered ({failed} calls failed)", questions.len());
    ended.exit_producing(session.stall_after(), session.out_name(), answered > 0, &what).map(|()| report)
}

/// Answers one question's turns in order.
async fn answer_one(
    session: &Session,
    settings: &AnswerSettings,
    i: usize,
    q: &Question,
) -> Result<(usize, Outcome), CallError> {
    let mut messages: Vec<Message> = settings.system.iter().map(Message::system).collect();
    let mut outcome = Outcome {
        answers: Vec::new(),
        reasonings: Vec::new(),
        finish_reason: None,
        usage: Usage::default(),
        error: None,
        samples: Vec::new(),
        kept: None,
        ranking: None,
        ranked: None,
    };
    let slice = Slice { round: 0, operation: "answer" };
    if settings.samples > 1 && !q.conversation {
        sample(session, settings, i, q, &mut outcome).await?;
        session.stats.outcome(slice, None);
        return Ok((i, outcome));
    }
    for (turn, text) in q.turns.iter().enumerate() {
        messages.push(Message::user(text.as_str()));
        let mut sampling = settings.eval.sampling;
        sampling.seed = request_seed(&settings.eval, &[b"answer", q.id.as_bytes(), &(turn as u64).to_le_bytes()]);
        let key = CallKey { item: &q.id, round: turn as u32, stage: "answer" };
        let spec = CallSpec::new(&session.model, key, Prompt::Messages(messages.clone()), sampling)
            .counted_as(slice)
            .tagged("answer")
            .priority(i as u64);
        match session.caller.call(spec).await? {
            Ok(reply) => {
                outcome.usage.prompt_tokens += reply.usage.prompt_tokens;
                outcome.usage.completion_tokens += reply.usage.completion_tokens;
                outcome.usage.reasoning_tokens += reply.usage.reasoning_tokens;
                outcome.reasonings.push(reply.reasoning);
                outcome.finish_reason = Some(reply.finish_reason.as_str().to_string());
                messages.push(Message { role: Speaker::Assistant, content: reply.text.clone() });
                outcome.answers.push(reply.text);
            }
            Err(error) => {
                outcome.error = Some(error);
                break;
            }
        }
    }
    session.stats.outcome(slice, None);
    Ok((i, outcome))
}

/// Samples `settings.samples` answers to a one-turn question, each its own
/// call (the first keyed as a single answer is, the others `answer#K`) with
/// its own request seed; checks each against the reference, when there is
/// one; with `--pick score`, has the judge rank those that may be kept
/// (one call, keyed `rank`); and keeps the one `settings.pick` picks.
async fn sample(
    session: &Session,
    settings: &AnswerSettings,
    i: usize,
    q: &Question,
    outcome: &mut Outcome,
) -> Result<(), CallError> {
    let mut messages: Vec<Message> = settings.system.iter().map(Message::system).collect();
    messages.push(Message::user(q.turns[0].as_str()));
    let slice = Slice { round: 0, operation: "answer" };
    let constraints = q.reference.as_deref().and_then(constraints_of);
    let stages: Vec<String> = (0..settings.samples)
        .map(|k| if k == 0 { "answer".to_string() } else { format!("answer#{}", k + 1) })
        .collect();
    for (k, stage) in stages.iter().enumerate() {
        let mut sampling = settings.eval.sampling;
        let (turn, nth) = (0u64.to_le_bytes(), (k as u64).to_le_bytes());
        let mut key_bytes: Vec<&[u8]> = vec![b"answer", q.id.as_bytes(), &turn];
        if k > 0 {
            key_bytes.push(&nth);
        }
        sampling.seed = request_seed(&settings.eval, &key_bytes);
        let key = CallKey { item: &q.id, round: 0, stage };
        let spec = CallSpec::new(&session.model, key, Prompt::Messages(messages.clone()), sampling)
            .counted_as(slice)
            .tagged("answer")
            .priority(i as u64);
        let one = match session.caller.call(spec).await? {
            Ok(reply) => {
                outcome.usage.prompt_tokens += reply.usage.prompt_tokens;
                outcome.usage.completion_tokens += reply.usage.completion_tokens;
                outcome.usage.reasoning_tokens += reply.usage.reasoning_tokens;
                let mut broken = None;
                let verdict = match (q.reference.as_deref(), &constraints) {
                    (None, _) => "answered",
                    // Constraints: correct when the answer keeps them all.
                    (Some(_), Some(Ok(constraints))) => match evol_constraints::check_all(constraints, &reply.text) {
                        Ok(()) => "correct",
                        Err(b) => {
                            broken = Some(b.to_string());
                            "wrong"
                        }
                    },
                    (Some(_), Some(Err(e))) => {
                        broken = Some(e.clone());
                        "unreadable"
                    }
                    (Some(reference), None) => match evol_eval::verify::check(&reply.text, reference) {
                        evol_eval::verify::Check::Correct => "correct",
                        evol_eval::verify::Check::Wrong => "wrong",
                        evol_eval::verify::Check::Unreadable => "unreadable",
                    },
                };
                Sample {
                    answer: Some(reply.text),
                    reasoning: reply.reasoning,
                    finish_reason: Some(reply.finish_reason.as_str().to_string()),
                    verdict,
                    score: None,
                    error: None,
                    broken,
                }
            }
            Err(error) => Sample {
                answer: None,
                reasoning: None,
                finish_reason: None,
                verdict: "failed",
                score: None,
                error: Some(error),
                broken: None,
            },
        };
        outcome.samples.push(one);
    }
    let usable: Vec<usize> = (0..outcome.samples.len())
        .filter(|&k| outcome.samples[k].candidate().standing == evol_core::best_of::Standing::Usable)
        .collect();
    if let (Pick::Score, Some(judge), 2..) = (settings.pick, session.scorer.as_ref(), usable.len()) {
        let texts: Vec<&str> = usable.iter().map(|&k| outcome.samples[k].answer.as_deref().unwrap_or("")).collect();
        let question = TEMPLATES.quality_prompt(&q.turns[0], &texts).expect("the built-in quality template renders");
        let sampling = evol_llm::Sampling { temperature: 0.0, top_p: 1.0, seed: None, ..settings.eval.sampling };
        let key = CallKey { item: &q.id, round: 0, stage: "rank" };
        let spec = CallSpec::new(judge, key, Prompt::User(&question), sampling)
            .counted_as(slice)
            .tagged("rank")
            .priority(i as u64);
        match session.caller.call(spec).await? {
            Ok(reply) => {
                let (low, high) = evol_core::score::Measure::Quality.range();
                let scores = evol_core::score::parse_scores(&reply.text, usable.len(), low, high);
                for (&k, score) in usable.iter().zip(&scores) {
                    outcome.samples[k].score = *score;
                }
                let whole = scores.iter().all(Option::is_some);
                outcome.ranked = Some(whole);
                outcome.ranking = (!whole).then_some(reply.text);
            }
            Err(error) => (outcome.ranked, outcome.ranking) = (Some(false), Some(error)),
        }
    }
    let candidates: Vec<_> = outcome.samples.iter().map(Sample::candidate).collect();
    outcome.kept = evol_core::best_of::pick(&candidates, settings.pick);
    match outcome.kept.map(|k| &outcome.samples[k]) {
        Some(s) => {
            outcome.answers.push(s.answer.clone().expect("a kept sample has an answer"));
            outcome.reasonings.push(s.reasoning.clone());
            outcome.finish_reason = s.finish_reason.clone();
        }
        None if outcome.samples.iter().all(|s| s.verdict == "failed") => {
            outcome.error = outcome.samples.iter().find_map(|s| s.error.clone());
        }
        None => outcome.error = Some(NO_CORRECT_ANSWER.to_string()),
    }
    Ok(())
}

/// The built-in prompts (the ranking's), made once.
static TEMPLATES: std::sync::LazyLock<evol_core::Templates> = std::sync::LazyLock::new(evol_core::Templates::builtin);

/// A line of `pairs.jsonl`: TRL's `prompt`, `chosen`, `rejected`, and
/// what decided it.
#[derive(Serialize)]
struct PairLine<'a> {
    id: &'a str,
    prompt: &'a str,
    chosen: &'a str,
    rejected: &'a str,
    margin: Option<f64>,
    chosen_score: Option<f64>,
    rejected_score: Option<f64>,
    rejected_verdict: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    model: &'a str,
}

/// The preference pairs of `--answers K` (TRL's `prompt`, `chosen`,
/// `rejected`).
pub const PAIRS: &str = "pairs.jsonl";

/// The error of a question none of whose samples is correct.
const NO_CORRECT_ANSWER: &str = "no_correct_answer: no sampled answer matches the reference";

/// A question's row in `answers.jsonl`.
#[derive(Serialize)]
struct AnswerRow<'a> {
    id: &'a str,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instruction: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    turns: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skill: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    difficulty: Option<Value>,
    /// The answer (a conversation's: in `answers`); null when a call failed.
    #[serde(skip_serializing_if = "is_conversation")]
    answer: Answer<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answers: Option<&'a [String]>,
    /// A reasoning model's thinking trace of the answer (a conversation's,
    /// turn by turn, in `reasonings`); absent when it did not think.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasonings: Option<&'a [Option<String>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'a str>,
    usage: Value,
    /// With `--answers K`: the reference, and every sample with its verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    #[serde(skip_serializing_if = "<[Sample]>::is_empty")]
    samples: &'a [Sample],
    /// With `--pick score`: the ranking reply whose scores could not all
    /// be read (or the error of its call).
    #[serde(skip_serializing_if = "Option::is_none")]
    ranking: Option<&'a str>,
}

/// A row's `answer`: the text, null (failed), or left out (a conversation
/// answered in full).
#[derive(Serialize)]
#[serde(untagged)]
enum Answer<'a> {
    Text(&'a str),
    Failed(Option<()>),
    Conversation,
}

fn is_conversation(a: &Answer) -> bool {
    matches!(a, Answer::Conversation)
}

fn row<'a>(q: &'a Question, name: &'a str, outcome: &'a Outcome) -> AnswerRow<'a> {
    let complete = outcome.error.is_none();
    AnswerRow {
        id: &q.id,
        model: name,
        instruction: (!q.conversation).then(|| q.turns[0].as_str()),
        turns: q.conversation.then_some(q.turns.as_slice()),
        skill: q.skill.as_deref(),
        // A whole number as written in the test set (3, not 3.0).
        difficulty: q.difficulty.map(|d| match d.fract() == 0.0 && d.abs() < 1e15 {
            true => json!(d as i64),
            false => json!(d),
        }),
        answer: match (complete, q.conversation) {
            (false, _) => Answer::Failed(None),
            (true, false) => Answer::Text(&outcome.answers[0]),
            (true, true) => Answer::Conversation,
        },
        answers: (complete && q.conversation).then_some(outcome.answers.as_slice()),
        reasoning: (complete && !q.conversation).then(|| outcome.reasonings[0].as_deref()).flatten(),
        reasonings: (complete && q.conversation && outcome.reasonings.iter().any(Option::is_some))
            .then_some(outcome.reasonings.as_slice()),
        error: outcome.error.as_deref(),
        finish_reason: outcome.finish_reason.as_deref(),
        usage: match outcome.usage.reasoning_tokens {
            0 => {
                json!({ "prompt_tokens": outcome.usage.prompt_tokens, "completion_tokens": outcome.usage.completion_tokens })
            }
            thinking => {
                json!({ "prompt_tokens": outcome.usage.prompt_tokens, "completion_tokens": outcome.usage.completion_tokens, "reasoning_tokens": thinking })
            }
        },
        reference: (!outcome.samples.is_empty()).then_some(q.reference.as_deref()).flatten(),
        samples: &outcome.samples,
        ranking: outcome.ranking.as_deref(),
    }
}

/// What `evol answer` did: its report, and what `stats.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AnswerReport {
    pub evol_version: String,
    pub state: RunState,
    pub questions: usize,
    pub answered: usize,
    pub failed: usize,
    pub calls: u64,
    /// The calls: replayed, made by this attempt, and held by the journal.
    #[serde(flatten)]
    pub calls_made: CallSummary,
    pub model: String,
    /// The name the answers are recorded under (`--name`).
    pub name: String,
    pub sampling: evol_llm::Sampling,
    /// With `--answers K`: what checking the samples found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}
