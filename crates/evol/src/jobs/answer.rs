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

use super::testset::{read_testset, request_seed, Asked, Question};
use crate::observe::{human, Observer};
use crate::results::CallSummary;
use crate::session::{drain, Session};
use crate::settings::AnswerSettings;
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
}

/// Answers every question of the test set (what a rerun finds in OUT's
/// journal is not asked again) and writes `answers.jsonl` and `stats.json`.
pub async fn answer(
    settings: AnswerSettings,
    observer: &dyn Observer,
    mut shutdown: Shutdown,
) -> anyhow::Result<AnswerReport> {
    let questions = read_testset(&settings.testset, settings.format, settings.limit)?;
    let calls: u64 = questions.iter().map(|q| q.turns.len() as u64).sum();
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
    let asked = Asked::new(session.model.name(), eval, json!({ "system": settings.system }));
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
    for (q, outcome) in questions.iter().zip(&results) {
        let Some(outcome) = outcome else { continue };
        match outcome.error {
            Some(_) => failed += 1,
            None => answered += 1,
        }
        writer.write_json(&row(q, &name, outcome)).with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    writer.finish().with_context(|| format!("cannot write `{}`", path.display()))?;
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
    };
    session.out.write_json(STATS, &report)?;
    observer.say(&format!(
        "evol: answered {answered} of {} questions ({failed} failed) in {}; wrote {}",
        questions.len(),
        human(std::time::Duration::from_secs_f64(snapshot.wall_seconds)),
        path.display()
    ));
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
    };
    let slice = Slice { round: 0, operation: "answer" };
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
}
