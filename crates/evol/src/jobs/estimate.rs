//! `evol run --dry-run`: what a run would cost, without calling any model.
//!
//! The seeds are read as the run reads them (`evol_store::ingest`), and
//! each seed's calls are those the engine makes (`Method::seed_calls`,
//! `Method::step_calls`), so the count is exact as an upper bound (a
//! rejected evolution skips its later calls). Tokens are estimated from
//! text lengths (about four bytes a token) under stated assumptions; a
//! second figure assumes every reply runs to its token limit, the most the
//! run can use.

use std::fmt::Write as _;

use evol_core::{Method, Stage, Templates};
use evol_store::ingest::{IngestOptions, Scan};

use crate::settings::RunSettings;

/// Bytes per token, for estimates.
const BYTES_PER_TOKEN: f64 = 4.0;
/// Assumed growth of an instruction per accepted evolution.
const GROWTH: f64 = 1.5;
/// Assumed length of an answer, in tokens, when the limit is higher.
const ANSWER_TOKENS: f64 = 400.0;
/// The judge's verdict, in tokens.
const VERDICT_TOKENS: f64 = 3.0;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Tokens {
    calls: u64,
    prompt: f64,
    completion: f64,
    /// Completion tokens if every reply used its whole limit.
    completion_max: f64,
}

/// `evol run --dry-run`: the estimate of a run, as text.
pub fn dry_run(settings: &RunSettings) -> anyhow::Result<String> {
    let mut seeds = 0u64;
    let mut total = Tokens::default();
    let overheads = Overheads::of(&settings.method, &settings.templates)?;
    // The estimate needs no index of the seeds.
    let mut scan = Scan::open(&settings.seeds, IngestOptions { dedup: None, ..settings.ingest.clone() })?;
    for row in &mut scan {
        let row = row?;
        seeds += 1;
        let t = per_seed(&settings.method, overheads, row.seed.instruction.len() as f64 / BYTES_PER_TOKEN);
        total.calls += t.calls;
        total.prompt += t.prompt;
        total.completion += t.completion;
        total.completion_max += t.completion_max;
    }
    scan.finish()?;
    let m = &settings.models;
    let names = [
        m.evolve.clone().unwrap_or_else(|| "(the server's model)".into()),
        m.judge.clone().or(m.evolve.clone()).unwrap_or_default(),
        m.answer.clone().or(m.evolve.clone()).unwrap_or_default(),
    ];
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let prices = settings.execution.prices_for(&refs);
    // One price for the estimate: the evolving model's (roles that use
    // other models are priced alike; the run itself prices each call).
    let price = prices.get(&names[0]).or(settings.execution.default_price);

    let mut text = String::new();
    let shard = settings.ingest.shard.map(|s| format!(" in shard {s}")).unwrap_or_default();
    let _ =
        writeln!(text, "evol: dry run: {seeds} seeds{shard} x {} rounds; no model is called", settings.method.rounds);
    let _ = writeln!(text, "  calls:             at most {} (fewer when evolutions are rejected)", total.calls);
    let _ = writeln!(text, "  prompt tokens:     about {}", round(total.prompt));
    let _ = writeln!(
        text,
        "  completion tokens: about {} (at most {} if every reply reaches its limit)",
        round(total.completion),
        round(total.completion_max)
    );
    match price {
        Some(p) => {
            let cost = (total.prompt * p.prompt + total.completion * p.completion) / 1e6;
            let most = (total.prompt * p.prompt + total.completion_max * p.completion) / 1e6;
            let _ = writeln!(text, "  cost:              about {cost:.4} (at most {most:.4})");
        }
        None => {
            let _ = writeln!(text, "  cost:              no price set (--price-prompt/--price-completion or --config)");
        }
    }
    let _ = writeln!(
        text,
        "  assumptions: {BYTES_PER_TOKEN} bytes a token; each round's instruction {GROWTH}x its parent's; answers of {ANSWER_TOKENS} tokens (or the limit if lower); verdicts of {VERDICT_TOKENS} tokens"
    );
    Ok(text)
}

/// The tokens the prompt templates add around the instructions.
#[derive(Debug, Clone, Copy)]
struct Overheads {
    /// An evolving prompt, averaged over the enabled operations.
    evolve: f64,
    /// An equality question.
    judge: f64,
    /// A difficulty question.
    score: f64,
    /// A ranking of answers (without them).
    rank: f64,
    /// A critique and an improvement (without their texts).
    critique: f64,
    improve: f64,
}

impl Overheads {
    fn of(method: &Method, templates: &Templates) -> anyhow::Result<Overheads> {
        let ops = &method.operations;
        let mut rng = evol_core::rng::keyed_rng(0, &[b"estimate"]);
        let mut evolve = 0.0;
        for op in ops.iter() {
            evolve += templates
                .evolve_prompt(
                    op,
                    "",
                    evol_core::templates::Extra {
                        constraint: (!op.constraints.is_empty()).then_some(""),
                        conversation: op.is_follow_up().then_some(""),
                    },
                    &mut rng,
                )?
                .text
                .len() as f64
                / BYTES_PER_TOKEN;
        }
        let judge = templates.equality_prompt("", "")?.len() as f64 / BYTES_PER_TOKEN;
        let score = templates.difficulty_prompt("")?.len() as f64 / BYTES_PER_TOKEN;
        let rank = templates.quality_prompt("", &["", ""])?.len() as f64 / BYTES_PER_TOKEN;
        let critique = templates.critique_prompt("", "")?.len() as f64 / BYTES_PER_TOKEN;
        let improve = templates.improve_prompt("", "", "")?.len() as f64 / BYTES_PER_TOKEN;
        Ok(Overheads { evolve: evolve / ops.len().max(1) as f64, judge, score, rank, critique, improve })
    }
}

/// The calls and tokens of one seed's chain, assuming every step passes:
/// the calls the engine makes, from the method's own description of them.
/// Where operations differ in their calls, the one with the most counts (an
/// upper bound).
fn per_seed(method: &Method, overheads: Overheads, instruction: f64) -> Tokens {
    let answer_tokens = f64::from(method.answer_sampling.max_tokens).min(ANSWER_TOKENS);
    let mut t = Tokens::default();
    for call in method.seed_calls() {
        t.calls += 1;
        t.completion_max += f64::from(call.sampling.max_tokens);
        if call.stage == Stage::Score {
            t.prompt += overheads.score + instruction;
            t.completion += VERDICT_TOKENS;
        } else {
            t.prompt += instruction;
            t.completion += answer_tokens;
        }
    }
    let step =
        method.operations.iter().map(|op| method.step_calls(op)).max_by_key(|calls| calls.len()).unwrap_or_default();
    let mut parent = instruction;
    for _ in 0..method.rounds {
        let child = parent * GROWTH;
        for call in &step {
            t.calls += 1;
            t.completion_max += f64::from(call.sampling.max_tokens);
            match call.stage {
                Stage::Evolve => {
                    t.prompt += overheads.evolve + parent;
                    t.completion += child;
                }
                Stage::Judge => {
                    t.prompt += overheads.judge + parent + child;
                    t.completion += VERDICT_TOKENS;
                }
                Stage::Answer => {
                    t.prompt += child;
                    t.completion += answer_tokens;
                }
                Stage::Score => {
                    t.prompt += overheads.score + child;
                    t.completion += VERDICT_TOKENS;
                }
                Stage::Critique => {
                    t.prompt += overheads.critique + child + answer_tokens;
                    t.completion += answer_tokens;
                }
                Stage::Improve => {
                    t.prompt += overheads.improve + child + 2.0 * answer_tokens;
                    t.completion += answer_tokens;
                }
                Stage::Compare => {
                    t.prompt += overheads.rank + child + 2.0 * answer_tokens;
                    t.completion += 2.0 * VERDICT_TOKENS;
                }
                Stage::Rank => {
                    let k = f64::from(method.best_of.map_or(1, |b| b.answers));
                    t.prompt += overheads.rank + child + k * answer_tokens;
                    t.completion += k * VERDICT_TOKENS;
                }
            }
        }
        parent = child;
    }
    t
}

fn round(x: f64) -> u64 {
    x.round() as u64
}
