//! Auto Evol-Instruct: an optimiser model improves the evolving method.
//!
//! The method is the literal text of one operator's method (the built-in
//! `auto` set's plan-rewrite-review steps, or a user's). [`Optimizer::run`]
//! measures its failure rate on held-out seeds, then, step by step: evolves
//! a mini-batch several times in a row (trajectories), asks the optimiser
//! for `candidates` improved methods (one call each, the trajectories and
//! their failures shown), measures each candidate on the held-out seeds,
//! and keeps the best if it fails less than the current method; it stops
//! when none does, or after `steps`.
//!
//! A failure is what `evol run` eliminates (the operator's rules: an
//! unreadable final step, empty, cut off, copied prompt words, "Equal",
//! sorry, stop words, an answer that asks for input). Every call goes
//! through the [`Caller`], keyed by step, candidate and seed, so a stopped
//! optimisation resumes by replaying what the journal holds; an optimiser
//! reply without a method is recorded as unparsable, never replaced.

use std::collections::BTreeMap;

use evol_llm::{FinishReason, Sampling};
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use crate::caller::{seeded, CallError, CallKey, CallSpec, Caller, Prompt};
use crate::eliminate::{self, parse_verdict, Reason, Rules, Verdict};
use crate::ops::Operation;
use crate::record::Seed;
use crate::rng::keyed_rng;
use crate::roles::{MissingRole, Role, Roles};
use crate::stats::{Slice, StatsRecorder};
use crate::templates::{TemplateError, Templates};

/// The template an optimiser call is made from (the `auto` set has it).
pub const OPTIMIZER_TEMPLATE: &str = "optimizer";
/// The heading the optimiser writes its method under.
pub const METHOD_HEADING: &str = "#Improved Method#:";
const ANALYSIS_HEADING: &str = "#Analysis#:";

/// What an optimisation does, apart from its models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizeSettings {
    pub steps: u32,
    /// Seeds evolved per step for the optimiser to see.
    pub batch: usize,
    /// Times each is evolved in a row.
    pub evolutions: u32,
    /// Candidate methods per step.
    pub candidates: u32,
    pub run_seed: u64,
    pub rules: Rules,
    pub evolve_sampling: Sampling,
    pub answer_sampling: Sampling,
    pub judge_sampling: Sampling,
    pub optimizer_sampling: Sampling,
    /// Send a per-request seed (the candidates of a step differ by theirs).
    pub request_seeds: bool,
}

/// One evolution of a trajectory: what it made (or the reply, for a
/// failure) and why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryStep {
    pub text: String,
    pub failure: Option<Reason>,
}

/// A seed evolved several times in a row with one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    pub seed_id: String,
    pub instruction: String,
    pub steps: Vec<TrajectoryStep>,
}

/// A method's failures on the held-out seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub failure_rate: f64,
    pub failed: usize,
    pub measured: usize,
    pub by_reason: BTreeMap<Reason, usize>,
}

/// One candidate method a step proposed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub index: u32,
    /// The optimiser's analysis of the failures.
    pub analysis: Option<String>,
    /// The method it proposed; None when its reply held none (then
    /// `reply` keeps the reply, or `error` the failed call).
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its failures on the held-out seeds (None: not measured).
    pub measured: Option<Measured>,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: u32,
    pub failure_rate_before: f64,
    pub trajectories: Vec<Trajectory>,
    pub candidates: Vec<Candidate>,
    /// The candidate kept (it failed less than the method before).
    pub chosen: Option<u32>,
    pub failure_rate_after: f64,
    pub method_after: String,
}

/// Why an optimisation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// No candidate of the last step failed less than the method before it.
    NoImprovement,
    /// It ran `steps` steps.
    StepLimit,
    /// The method failed on no held-out seed: nothing is left to improve.
    NoFailures,
}

/// The result of an optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Optimized {
    pub start: Measured,
    pub method: String,
    pub failure_rate: f64,
    /// The step whose candidate is the method (0: the start).
    pub from_step: u32,
    pub steps: u32,
    pub ending: Ending,
}

/// What stops an optimisation.
#[derive(Debug, thiserror::Error)]
pub enum OptimizeError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Role(#[from] MissingRole),
    #[error("the history could not be written: {0}")]
    Sink(String),
}

/// The optimisation loop over one operator.
pub struct Optimizer<'a> {
    pub caller: &'a Caller,
    pub roles: &'a Roles,
    pub templates: &'a Templates,
    /// The operator whose method is optimised.
    pub operation: &'a Operation,
    pub settings: &'a OptimizeSettings,
    pub stats: &'a StatsRecorder,
}

/// The calls an optimisation makes at most, for progress and estimates:
/// the start's measurement, then per step the trajectories, the optimiser
/// and every candidate's measurement (evolve, judge, answer per seed).
pub fn max_calls(settings: &OptimizeSettings, operation: &Operation, batch: usize, dev: usize) -> u64 {
    let rules = settings.rules.for_operation(operation);
    let per_seed = 1 + usize::from(rules.equality) + usize::from(answers(&rules));
    let measure = (dev * per_seed) as u64;
    let step = (batch as u64) * u64::from(settings.evolutions)
        + u64::from(settings.candidates)
        + u64::from(settings.candidates) * measure;
    measure + u64::from(settings.steps) * step
}

/// Whether a measurement answers the evolution: some rule reads the answer.
fn answers(rules: &Rules) -> bool {
    rules.sorry || rules.stop_words || rules.asks_for_input
}

impl Optimizer<'_> {
    /// Runs the optimisation from `method`; `pool` gives the mini-batches,
    /// `dev` measures. `on_step` gets each step's record as it ends.
    pub async fn run(
        &self,
        pool: &[Seed],
        dev: &[Seed],
        method: String,
        mut on_step: impl FnMut(&StepRecord) -> Result<(), String>,
    ) -> Result<Optimized, OptimizeError> {
        let start = self.measure(0, 0, &method, dev).await?;
        let mut current = (method, start.failure_rate, 0);
        let mut steps = 0;
        let mut ending = Ending::StepLimit;
        for step in 1..=self.settings.steps {
            if current.1 == 0.0 {
                ending = Ending::NoFailures;
                break;
            }
            steps = step;
            let batch = self.mini_batch(pool, step);
            let trajectories = join_all(batch.iter().map(|seed| self.trajectory(step, &current.0, seed))).await;
            let trajectories = trajectories.into_iter().collect::<Result<Vec<_>, _>>()?;
            let proposals =
                join_all((0..self.settings.candidates).map(|c| self.propose(step, c, &current.0, &trajectories))).await;
            let mut candidates = proposals.into_iter().collect::<Result<Vec<_>, _>>()?;
            let measured = join_all(candidates.iter().map(|c| async move {
                match &c.method {
                    Some(m) => self.measure(step, c.index + 1, m, dev).await.map(Some),
                    None => Ok(None),
                }
            }))
            .await;
            for (candidate, m) in candidates.iter_mut().zip(measured) {
                candidate.measured = m?;
            }
            let best = candidates
                .iter()
                .filter_map(|c| c.measured.as_ref().map(|m| (c, m.failure_rate)))
                .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.index.cmp(&b.0.index)));
            let before = current.1;
            let chosen = match best {
                Some((c, rate)) if rate < before => {
                    current = (c.method.clone().expect("measured"), rate, step);
                    Some(c.index)
                }
                _ => None,
            };
            let record = StepRecord {
                step,
                failure_rate_before: before,
                trajectories,
                candidates,
                chosen,
                failure_rate_after: current.1,
                method_after: current.0.clone(),
            };
            on_step(&record).map_err(OptimizeError::Sink)?;
            if chosen.is_none() {
                ending = Ending::NoImprovement;
                break;
            }
        }
        Ok(Optimized { start, method: current.0, failure_rate: current.1, from_step: current.2, steps, ending })
    }

    /// The step's mini-batch: `batch` seeds of the pool, drawn without
    /// replacement by the run seed and the step.
    fn mini_batch<'s>(&self, pool: &'s [Seed], step: u32) -> Vec<&'s Seed> {
        use rand::seq::SliceRandom;
        let mut rng = keyed_rng(self.settings.run_seed, &[b"mini-batch", &step.to_le_bytes()]);
        let mut chosen: Vec<&Seed> = pool.iter().collect();
        chosen.shuffle(&mut rng);
        chosen.truncate(self.settings.batch);
        chosen
    }

    async fn trajectory(&self, step: u32, method: &str, seed: &Seed) -> Result<Trajectory, OptimizeError> {
        let item = format!("t{step}/{}", seed.id);
        let mut current = seed.instruction.clone();
        let mut steps = Vec::new();
        for k in 1..=self.settings.evolutions {
            let (text, failure) = match self.evolve(&item, k, step, "trajectory", method, &current).await? {
                Ok(evolved) => {
                    current = evolved.clone();
                    (evolved, None)
                }
                Err((reason, text)) => (text, Some(reason)),
            };
            steps.push(TrajectoryStep { text, failure });
        }
        Ok(Trajectory { seed_id: seed.id.clone(), instruction: seed.instruction.clone(), steps })
    }

    /// One evolving call with `method`, read by the operator's rules.
    async fn evolve(
        &self,
        item: &str,
        round: u32,
        step: u32,
        part: &'static str,
        method: &str,
        instruction: &str,
    ) -> Result<Result<String, (Reason, String)>, OptimizeError> {
        let prompt = self.templates.evolve_prompt_with(self.operation, method, instruction)?;
        let rules = self.settings.rules.for_operation(self.operation);
        let slice = Slice { round: step, operation: part };
        let reply =
            self.call(Role::Evolve, item, round, "evolve", slice, &prompt, self.settings.evolve_sampling).await?;
        Ok(match reply {
            Ok(reply) => eliminate::read_evolution(self.operation, &rules, &reply.text, reply.finish_reason),
            Err(e) => Err((Reason::RequestFailed, e)),
        })
    }

    /// A method's failures on the held-out seeds; `candidate` 0 is the
    /// method a step starts from.
    async fn measure(&self, step: u32, candidate: u32, method: &str, dev: &[Seed]) -> Result<Measured, OptimizeError> {
        let outcomes = join_all(dev.iter().map(|seed| self.attempt(step, candidate, method, seed))).await;
        let mut by_reason = BTreeMap::new();
        for outcome in outcomes {
            if let Some(reason) = outcome? {
                *by_reason.entry(reason).or_insert(0) += 1;
            }
        }
        let failed: usize = by_reason.values().sum();
        let measured = dev.len();
        let failure_rate = if measured == 0 { 0.0 } else { failed as f64 / measured as f64 };
        Ok(Measured { failure_rate, failed, measured, by_reason })
    }

    /// One held-out seed with one method: why it failed, if it did.
    async fn attempt(
        &self,
        step: u32,
        candidate: u32,
        method: &str,
        seed: &Seed,
    ) -> Result<Option<Reason>, OptimizeError> {
        let item = format!("m{step}c{candidate}/{}", seed.id);
        let evolved = match self.evolve(&item, 0, step, "measure", method, &seed.instruction).await? {
            Ok(evolved) => evolved,
            Err((reason, _)) => return Ok(Some(reason)),
        };
        let rules = self.settings.rules.for_operation(self.operation);
        let slice = Slice { round: step, operation: "measure" };
        if rules.equality {
            let question = self.templates.equality_prompt(&seed.instruction, &evolved)?;
            match self.call(Role::Judge, &item, 0, "judge", slice, &question, self.settings.judge_sampling).await? {
                Ok(verdict) if parse_verdict(&verdict.text) == Verdict::Equal => {
                    return Ok(Some(Reason::NoInformationGain))
                }
                Ok(_) => {}
                Err(_) => return Ok(Some(Reason::RequestFailed)),
            }
        }
        if answers(&rules) {
            match self.call(Role::Answer, &item, 0, "answer", slice, &evolved, self.settings.answer_sampling).await? {
                Ok(answer) if answer.finish_reason == FinishReason::ContentFilter => {
                    return Ok(Some(Reason::ContentFiltered))
                }
                Ok(answer) => return Ok(eliminate::check_answer(&rules, &answer.text)),
                Err(_) => return Ok(Some(Reason::RequestFailed)),
            }
        }
        Ok(None)
    }

    /// One candidate: the optimiser's analysis and method.
    async fn propose(
        &self,
        step: u32,
        index: u32,
        method: &str,
        trajectories: &[Trajectory],
    ) -> Result<Candidate, OptimizeError> {
        #[derive(Serialize)]
        struct Shown<'a> {
            text: &'a str,
            failure: Option<&'static str>,
        }
        #[derive(Serialize)]
        struct ShownTrajectory<'a> {
            instruction: &'a str,
            steps: Vec<Shown<'a>>,
        }
        let shown: Vec<ShownTrajectory> = trajectories
            .iter()
            .map(|t| ShownTrajectory {
                instruction: &t.instruction,
                steps: t.steps.iter().map(|s| Shown { text: &s.text, failure: s.failure.map(Reason::name) }).collect(),
            })
            .collect();
        #[derive(Serialize)]
        struct Context<'a> {
            method: &'a str,
            trajectories: Vec<ShownTrajectory<'a>>,
        }
        let prompt =
            self.templates.render_named(OPTIMIZER_TEMPLATE, Context { method: method.trim(), trajectories: shown })?;
        let item = format!("o{step}");
        let slice = Slice { round: step, operation: "optimize" };
        let reply = self
            .call(Role::Optimize, &item, index + 1, "optimize", slice, &prompt, self.settings.optimizer_sampling)
            .await?;
        let mut candidate = Candidate { index, analysis: None, method: None, reply: None, error: None, measured: None };
        match reply {
            Ok(reply) => {
                let (analysis, method) = read_proposal(&reply.text);
                candidate.analysis = analysis;
                match method {
                    Some(m) if reply.finish_reason != FinishReason::Length => candidate.method = Some(m),
                    _ => candidate.reply = Some(reply.text),
                }
            }
            Err(e) => candidate.error = Some(e),
        }
        Ok(candidate)
    }

    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        role: Role,
        item: &str,
        round: u32,
        stage: &'static str,
        slice: Slice<'_>,
        prompt: &str,
        sampling: Sampling,
    ) -> Result<Result<evol_llm::ChatResponse, String>, OptimizeError> {
        let model = self.roles.get(role)?;
        let mut rng = keyed_rng(self.settings.run_seed, &[item.as_bytes(), stage.as_bytes(), &round.to_le_bytes()]);
        let sampling = seeded(sampling, self.settings.request_seeds, &mut rng);
        let spec = CallSpec::new(model, CallKey { item, round, stage }, Prompt::User(prompt), sampling)
            .counted_as(slice)
            .tagged(stage)
            .priority(u64::from(slice.round));
        let outcome = self.caller.call(spec).await?;
        self.stats.outcome(slice, None);
        Ok(outcome)
    }
}

/// The seeds split into the mini-batch pool and the last `dev` of a
/// shuffle keyed by the run seed (held out).
pub fn split(mut seeds: Vec<Seed>, dev: usize, run_seed: u64) -> (Vec<Seed>, Vec<Seed>) {
    use rand::seq::SliceRandom;
    seeds.shuffle(&mut keyed_rng(run_seed, &[b"split"]));
    let held = seeds.split_off(seeds.len().saturating_sub(dev));
    (seeds, held)
}

/// An optimiser's reply as analysis and method: the method is what follows
/// the last `#Improved Method#:` (a code fence around it dropped), the
/// analysis what comes between `#Analysis#:` and it. No heading, or nothing
/// after it: no method.
pub fn read_proposal(reply: &str) -> (Option<String>, Option<String>) {
    let lower = reply.to_ascii_lowercase();
    let Some(at) = lower.rfind(&METHOD_HEADING.to_ascii_lowercase()) else {
        return (non_empty(reply), None);
    };
    let mut method = reply[at + METHOD_HEADING.len()..].trim_start_matches('*').trim();
    if let Some(inner) = method.strip_prefix("```").and_then(|m| m.strip_suffix("```")) {
        // A fence's first line is empty or names a language.
        method = match inner.split_once('\n') {
            Some((first, rest)) if !first.trim().contains(' ') => rest,
            _ => inner,
        }
        .trim();
    }
    let before = &reply[..at];
    let analysis = match before.to_ascii_lowercase().rfind(&ANALYSIS_HEADING.to_ascii_lowercase()) {
        Some(a) => &before[a + ANALYSIS_HEADING.len()..],
        None => before,
    };
    let analysis = analysis.trim().trim_end_matches('*');
    (non_empty(analysis), non_empty(method))
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_are_read_from_their_headings() {
        let (a, m) = read_proposal("#Analysis#:\n1. Loses the input.\n\n#Improved Method#:\nStep 1: Keep the input.\n");
        assert_eq!((a.as_deref(), m.as_deref()), (Some("1. Loses the input."), Some("Step 1: Keep the input.")));
        let (a, m) = read_proposal("Some thoughts.\n**#improved method#:**\n```\nStep 1: x\n```");
        assert_eq!((a.as_deref(), m.as_deref()), (Some("Some thoughts."), Some("Step 1: x")));
        let (a, m) = read_proposal("#Improved Method#:\n```text\nStep 1: y\n```");
        assert_eq!((a, m.as_deref()), (None, Some("Step 1: y")));
        assert_eq!(read_proposal("I think the method is fine."), (Some("I think the method is fine.".into()), None));
        assert_eq!(read_proposal("#Analysis#: bad\n#Improved Method#:  \n").1, None, "an empty method is none");
    }
}
