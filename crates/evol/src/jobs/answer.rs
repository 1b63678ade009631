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
    /// `failed` (the call failed: `error`).
    verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// What checking the sampled answers found, over every question sampled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Verification {
    pub samples: u32,
    pub correct: usize,
    pub wrong: usize,
    pub unreadable: usize,
    pub failed: usize,
    /// Questions with no correct answer among their samples: left without
    /// an answer (rejection sampling), their error `no_correct_answer`.
    pub none_correct: usize,
    /// Preference pairs written (a correct answer and a wrong one).
    pub pairs: usize,
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
    let session = Session::open(
        (&settings.output, settings.fresh, JobKind::Answer),
        &eval.model,
        &eval.execution,
        Role::Answer,
        n,
        observer,
    )
    .await?;
    // What the calls are asked with: sampling several answers is part of
    // it (an older job, one answer a question, records none of it).
    let job = match settings.samples {
        0 | 1 => json!({ "system": settings.system }),
        n => {
            json!({ "system": settings.system, "samples": n, "reference_field": settings.reference_field, "pick": settings.pick })
        }
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
                    _ => v.failed += 1,
                }
            }
            if outcome.error.as_deref() == Some(NO_CORRECT_ANSWER) {
                v.none_correct += 1;
            }
            // Chosen: the answer kept; rejected: the first answered sample
            // that is not correct (wrong, or with no final answer at all).
            let rejected = outcome.samples.iter().find(|s| matches!(s.verdict, "wrong" | "unreadable"));
            if let (Some(chosen), Some(rejected)) = (outcome.answers.first(), rejected) {
                let [prompt_key, chosen_key, rejected_key] = evol_io::layout::PREFERENCE;
                let line = json!({
                    "id": q.id,
                    prompt_key: q.turns[0],
                    chosen_key: chosen,
                    rejected_key: rejected.answer,
                    "rejected_verdict": rejected.verdict,
                    "reference": q.reference,
                    "model": name,
                });
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
        observer.say(&format!(
            "evol: {} answers a question checked against its reference: {} correct, {} wrong, {} unreadable, {} failed; {} questions with no correct answer are left without one; {} preference pairs in {}",
            v.samples,
            v.correct,
            v.wrong,
            v.unreadable,
            v.failed,
            v.none_correct,
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
/// its own request seed; checks each against the reference and keeps the
/// one `settings.pick` picks among the correct ones.
async fn sample(
    session: &Session,
    settings: &AnswerSettings,
    i: usize,
    q: &Question,
    outcome: &mut Outcome,
) -> Result<(), CallError> {
    let mut messages: Vec<Message> = settings.system.iter().map(Message::system).collect();
    messages.push(Message::user(q.turns[0].as_str()));
    let reference = q.reference.as_deref().unwrap_or_default();
    let slice = Slice { round: 0, operation: "answer" };
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
                let verdict = match evol_eval::verify::check(&reply.text, reference) {
                    evol_eval::verify::Check::Correct => "correct",
                    evol_eval::verify::Check::Wrong => "wrong",
                    evol_eval::verify::Check::Unreadable => "unreadable",
                };
                Sample {
                    answer: Some(reply.text),
                    reasoning: reply.reasoning,
                    finish_reason: Some(reply.finish_reason.as_str().to_string()),
                    verdict,
                    error: None,
                }
            }
            Err(error) => {
                Sample { answer: None, reasoning: None, finish_reason: None, verdict: "failed", error: Some(error) }
            }
        };
        outcome.samples.push(one);
    }
    let mut correct = outcome.samples.iter().filter(|s| s.verdict == "correct");
    let picked = match settings.pick {
        Pick::First => correct.next(),
        Pick::Shortest => correct.min_by_key(|s| s.answer.as_deref().map_or(usize::MAX, |a| a.chars().count())),
    };
    match picked {
        Some(s) => {
            outcome.answers.push(s.answer.clone().expect("a correct sample has an answer"));
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
