//! `evol magpie -o OUT --count N`: instructions written from no seeds
//! (Magpie). An aligned model is given only what opens a user's turn in its
//! chat template (after a system message that may steer the topic, the
//! persona or the language), and writes the user's message itself.
//!
//! One call per generation, keyed `magpie-{i}` in OUT's journal with its
//! own request seed, so a rerun sends only what is missing and a larger
//! `--count` adds to what is there. What comes back is cut at the turn's
//! end, checked (empty, cut off by the token limit, too short), and
//! deduplicated in generation order (exact and near duplicates, MinHash):
//! `instructions.jsonl` holds each once, ready as `evol run`'s seeds;
//! `left_out.jsonl` holds the rest with their reason.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::Context;
use evol_core::stats::Slice;
use evol_core::{CallError, CallKey, CallSpec, Prompt, Role};
use evol_llm::{Completion, FinishReason};
use evol_store::output::{INSTRUCTIONS, LEFT_OUT, STATS};
use evol_store::{JobKind, RunState};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use super::testset::{request_seed, Asked};
use crate::observe::{human, Observer};
use crate::results::CallSummary;
use crate::session::{drain, Session};
use crate::settings::{MagpieSettings, Opening, TemplateFamily};
use crate::shutdown::Shutdown;

impl TemplateFamily {
    /// Every family, as `--template` names them.
    pub const ALL: [TemplateFamily; 5] = [
        TemplateFamily::ChatMl,
        TemplateFamily::Llama3,
        TemplateFamily::Gemma,
        TemplateFamily::Phi3,
        TemplateFamily::Mistral,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TemplateFamily::ChatMl => "chatml",
            TemplateFamily::Llama3 => "llama3",
            TemplateFamily::Gemma => "gemma",
            TemplateFamily::Phi3 => "phi3",
            TemplateFamily::Mistral => "mistral",
        }
    }

    /// The family named `name`.
    pub fn parse(name: &str) -> Option<TemplateFamily> {
        TemplateFamily::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The text that opens a user's turn, after `system` when given. No
    /// beginning-of-text token: servers add their own. Families without a
    /// system role (Gemma, Mistral) open the user's turn with the system
    /// text, as their templates do.
    pub fn user_prefix(self, system: Option<&str>) -> String {
        match (self, system) {
            (TemplateFamily::ChatMl, None) => "<|im_start|>user\n".into(),
            (TemplateFamily::ChatMl, Some(s)) => format!("<|im_start|>system\n{s}<|im_end|>\n<|im_start|>user\n"),
            (TemplateFamily::Llama3, None) => "<|start_header_id|>user<|end_header_id|>\n\n".into(),
            (TemplateFamily::Llama3, Some(s)) => format!(
                "<|start_header_id|>system<|end_header_id|>\n\n{s}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
            ),
            (TemplateFamily::Gemma, None) => "<start_of_turn>user\n".into(),
            (TemplateFamily::Gemma, Some(s)) => format!("<start_of_turn>user\n{s}\n\n"),
            (TemplateFamily::Phi3, None) => "<|user|>\n".into(),
            (TemplateFamily::Phi3, Some(s)) => format!("<|system|>\n{s}<|end|>\n<|user|>\n"),
            (TemplateFamily::Mistral, None) => "[INST] ".into(),
            (TemplateFamily::Mistral, Some(s)) => format!("[INST] {s}\n\n"),
        }
    }
}

/// Texts that end a user's turn (or open the next one) in the families
/// known here and in the embedded models' templates: a generation is cut
/// at the first, in case the server did not stop there.
const TURN_ENDS: &[&str] = &[
    "<|im_end|>",
    "<|im_start|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<end_of_turn>",
    "<start_of_turn>",
    "<|end|>",
    "<|assistant|>",
    "<|endoftext|>",
    "[/INST]",
    "</s>",
];

/// A generation's text up to its turn's end, trimmed.
pub fn cut_turn(text: &str) -> &str {
    let end = TURN_ENDS.iter().filter_map(|m| text.find(m)).min().unwrap_or(text.len());
    text[..end].trim()
}

/// Why a generation is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftOut {
    /// The call failed (after retries).
    RequestFailed,
    /// Nothing but the turn's end.
    Empty,
    /// Cut off by the token limit: an unfinished request.
    Truncated,
    /// Fewer words than `--min-words`.
    TooShort,
    /// The same as, or a near duplicate of, an instruction kept before it.
    Duplicate,
}

impl LeftOut {
    fn name(self) -> &'static str {
        match self {
            LeftOut::RequestFailed => "request_failed",
            LeftOut::Empty => "empty",
            LeftOut::Truncated => "truncated",
            LeftOut::TooShort => "too_short",
            LeftOut::Duplicate => "duplicate",
        }
    }
}

/// One generation's outcome, before deduplication.
enum Generated {
    Text { text: String, finish: FinishReason },
    Failed(String),
}

/// A line of `instructions.jsonl`.
#[derive(Serialize)]
struct InstructionLine<'a> {
    id: &'a str,
    instruction: &'a str,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
}

/// A line of `left_out.jsonl`.
#[derive(Serialize)]
struct LeftOutLine<'a> {
    id: &'a str,
    reason: LeftOut,
    /// What was written (absent for a failed call).
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    /// The error of a failed call.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate_of: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    similarity: Option<f64>,
}

/// What `evol magpie` did, as `stats.json` holds it.
#[derive(Debug, Clone, Serialize)]
pub struct MagpieReport {
    pub evol_version: String,
    pub state: RunState,
    /// Generations asked for.
    pub count: u64,
    /// Instructions kept (each once).
    pub kept: u64,
    /// Generations left out, by reason.
    pub left_out: BTreeMap<String, u64>,
    pub model: String,
    /// What the model continued: the system message it followed, and how
    /// the user's turn was opened.
    pub system: Option<String>,
    pub opening: String,
    pub calls_made: CallSummary,
}

/// The id of generation `i`.
fn generation_id(i: u64) -> String {
    format!("magpie-{i}")
}

/// Generates `count` instructions (what a rerun finds in OUT's journal is
/// not asked again), then writes `instructions.jsonl`, `left_out.jsonl` and
/// `stats.json`.
pub async fn magpie(
    settings: MagpieSettings,
    observer: &dyn Observer,
    mut shutdown: Shutdown,
) -> anyhow::Result<MagpieReport> {
    let eval = &settings.eval;
    let session = Session::open(
        (&settings.output, settings.fresh, JobKind::Magpie),
        &eval.model,
        &eval.execution,
        Role::Evolve,
        settings.count,
        observer,
    )
    .await?;
    let system = settings.system.as_deref();
    let (completion, opening) = match &settings.opening {
        Opening::Own => {
            (Completion::UserTurn { system: settings.system.clone() }, "the model's own chat template".to_string())
        }
        Opening::Family(family) => {
            (Completion::Text(family.user_prefix(system)), format!("the `{}` template family", family.name()))
        }
        Opening::Text(text) => {
            let text = match system {
                Some(system) => text.replace("{system}", system),
                None => text.clone(),
            };
            (Completion::Text(text), "the given prefix".to_string())
        }
    };
    // The count is left out: a larger one adds to what is there.
    let job = json!({ "system": system, "opening": settings.opening.identity() });
    let asked = Asked::new(session.model.name(), eval, job);
    session.begin("magpie_identity", &asked, "instructions")?;
    observer.say(&format!(
        "evol: writing {} instructions with `{}` from the opening of a user's turn ({opening}) -> `{}`",
        settings.count,
        session.model.name(),
        session.out.root().display()
    ));

    let results: Mutex<Vec<Option<Generated>>> = Mutex::new((0..settings.count).map(|_| None).collect());
    let calls = futures::stream::iter(0..settings.count)
        .map(|i| {
            let (session, completion) = (&session, completion.clone());
            async move {
                let id = generation_id(i);
                let mut sampling = eval.sampling;
                sampling.seed = request_seed(eval, &[b"magpie", &i.to_le_bytes()]);
                let key = CallKey { item: &id, round: 0, stage: "generate" };
                let spec = CallSpec::new(&session.model, key, Prompt::Completion(completion), sampling)
                    .counted_as(Slice { round: 0, operation: "generate" })
                    .tagged("generate")
                    .priority(i);
                let generated = match session.caller.call(spec).await? {
                    Ok(reply) => Generated::Text { text: reply.text, finish: reply.finish_reason },
                    Err(error) => Generated::Failed(error),
                };
                Ok::<_, CallError>((i, generated))
            }
        })
        .buffer_unordered(session.connected.admitted.max(1));
    let work = drain(calls, &session.caller, |(i, generated)| results.lock().unwrap()[i as usize] = Some(generated));
    let ended = session.run(work, (settings.count, "instructions"), &mut shutdown, observer).await;
    let results = results.into_inner().unwrap();

    // Deduplicated in generation order, whatever order the replies came in.
    let params = settings.dedup.unwrap_or_default();
    let hasher = evol_dedup::Hasher::new(params);
    let mut index = evol_dedup::Index::new(params);
    let mut kept_ids: Vec<String> = Vec::new();
    let path = session.out.path(INSTRUCTIONS);
    let left_path = session.out.path(LEFT_OUT);
    let mut kept = evol_io::RowWriter::create(&path, evol_io::Layout::Jsonl)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    let mut left = evol_io::RowWriter::create(&left_path, evol_io::Layout::Jsonl)
        .with_context(|| format!("cannot write `{}`", left_path.display()))?;
    let mut left_out: BTreeMap<String, u64> = BTreeMap::new();
    let model = session.model.name().to_string();
    for (i, generated) in results.iter().enumerate() {
        let Some(generated) = generated else { continue };
        let id = generation_id(i as u64);
        let mut line = LeftOutLine {
            id: &id,
            reason: LeftOut::Empty,
            text: None,
            detail: None,
            duplicate_of: None,
            similarity: None,
        };
        let reason = match generated {
            Generated::Failed(error) => {
                line.detail = Some(error);
                Some(LeftOut::RequestFailed)
            }
            Generated::Text { text, finish } => {
                let instruction = cut_turn(text);
                line.text = Some(instruction);
                if instruction.is_empty() {
                    Some(LeftOut::Empty)
                } else if *finish == FinishReason::Length {
                    Some(LeftOut::Truncated)
                } else if evol_lang::word_count(instruction) < settings.min_words {
                    Some(LeftOut::TooShort)
                } else {
                    let print = hasher.fingerprint(instruction);
                    let found = match settings.dedup {
                        Some(_) => index.check(&print),
                        // Exact duplicates only.
                        None => match index.find(&print).filter(|m| m.exact) {
                            Some(m) => Err(m),
                            None => Ok(index.insert(&print)),
                        },
                    };
                    match found {
                        Ok(_) => {
                            kept_ids.push(id.clone());
                            let row = InstructionLine { id: &id, instruction, model: &model, system };
                            kept.write_json(&row).with_context(|| format!("cannot write `{}`", path.display()))?;
                            None
                        }
                        Err(m) => {
                            line.duplicate_of = Some(&kept_ids[m.index as usize]);
                            line.similarity = Some(evol_dedup::shown_similarity(m.similarity));
                            Some(LeftOut::Duplicate)
                        }
                    }
                }
            }
        };
        if let Some(reason) = reason {
            line.reason = reason;
            *left_out.entry(reason.name().to_string()).or_default() += 1;
            left.write_json(&line).with_context(|| format!("cannot write `{}`", left_path.display()))?;
        }
    }
    kept.finish().with_context(|| format!("cannot write `{}`", path.display()))?;
    left.finish().with_context(|| format!("cannot write `{}`", left_path.display()))?;
    let done = results.iter().filter(|r| r.is_some()).count() as u64;
    let state = ended.state(done == settings.count);
    session.journal.set_state(state)?;
    let snapshot = session.stats.snapshot();
    let report = MagpieReport {
        evol_version: env!("CARGO_PKG_VERSION").to_string(),
        state,
        count: settings.count,
        kept: kept_ids.len() as u64,
        left_out: left_out.clone(),
        model: model.clone(),
        system: settings.system.clone(),
        opening,
        calls_made: CallSummary::of(&snapshot, &session.journal)?,
    };
    session.out.write_json(STATS, &report)?;
    let reasons: Vec<String> = left_out.iter().map(|(r, n)| format!("{r} {n}")).collect();
    observer.say(&format!(
        "evol: {done} of {} generations done in {}: {} instructions kept, {} left out{}; wrote {} and {}",
        settings.count,
        human(std::time::Duration::from_secs_f64(snapshot.wall_seconds)),
        kept_ids.len(),
        left_out.values().sum::<u64>(),
        if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
        path.display(),
        left_path.display()
    ));
    let what = format!("no instruction of {} generations was kept", settings.count);
    ended.exit_producing(session.stall_after(), session.out_name(), !kept_ids.is_empty(), &what).map(|()| report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_left_out_reason_is_counted_under_the_name_its_record_carries() {
        use LeftOut::*;
        for reason in [RequestFailed, Empty, Truncated, TooShort, Duplicate] {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.name(), "{reason:?}");
        }
    }

    #[test]
    fn each_family_opens_a_user_turn_that_its_end_closes() {
        for family in TemplateFamily::ALL {
            assert_eq!(TemplateFamily::parse(family.name()), Some(family));
            let bare = family.user_prefix(None);
            let steered = family.user_prefix(Some("Ask about tides."));
            assert!(steered.contains("Ask about tides.") && !bare.contains("tides"), "{family:?}");
            assert!(steered.ends_with(&bare) || family == TemplateFamily::Gemma || family == TemplateFamily::Mistral);
        }
        assert_eq!(cut_turn("  How do tides work?<|im_end|>\n<|im_start|>assistant"), "How do tides work?");
        assert_eq!(cut_turn("潮汐是怎么形成的？<|eot_id|>"), "潮汐是怎么形成的？");
        assert_eq!(cut_turn("No end at all "), "No end at all");
        assert_eq!(cut_turn("[/INST]"), "");
    }
}
