//! The evolution engine: one chain of rounds per seed, all chains at once.
//!
//! Each seed runs its own chain of `rounds` steps and starts a step as soon
//! as its own previous step is done; there is no barrier between rounds
//! across seeds, so a slow seed never holds up a fast one. A step is:
//! draw an operation, evolve, clean, check for copied prompt words, ask the
//! judge for information gain, answer, check the answer (the calls are
//! those of [`Method::step_calls`]). A failed step leaves the parent in
//! place for the next round, as in the method.
//!
//! Every model call goes through the one [`Caller`], which journals,
//! budgets and limits them. Failures of one call are recorded against their
//! item; only errors that doom every later call (bad credentials, unknown
//! model, no quota, a dead backend), a failing journal or sink, or a seed
//! source that cannot be read stop the run.

use std::sync::Arc;

use evol_constraints::Constraint;
use evol_llm::{FinishReason, Message, Usage};
use futures::StreamExt;

use crate::caller::{seeded, CallError, CallKey, CallSpec, Caller, Prompt};
use crate::constrain;
use crate::cost::CapReached;
use crate::dedup::{Ancestors, Duplicate, SeedIndex};
use crate::eliminate::{self, parse_verdict, Reason, Verdict};
use crate::method::{Method, PlannedCall, Stage};
use crate::record::{
    evolution_id, AnswerCandidate, Evolution, Improvement, Lineage, Rejection, Seed, SeedAnswer, SeedScore,
};
use crate::rng::{keyed_rng, step_rng};
use crate::roles::{MissingRole, Role, Roles};
use crate::score::{Measure, Scored};
use crate::stats::{Slice, StatsRecorder};
use crate::templates::{Extra, TemplateError, Templates};

/// An error from a [`Sink`] (for instance a full disk).
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// An error from the source of seeds (for instance a failing read of the
/// journal's seed pages).
pub type SeedSourceError = Box<dyn std::error::Error + Send + Sync>;

/// Where records go as soon as they are decided.
pub trait Sink: Send + Sync {
    fn accepted(&self, evolution: &Evolution) -> Result<(), SinkError>;
    fn rejected(&self, rejection: &Rejection) -> Result<(), SinkError>;
    fn seed_answered(&self, answer: &SeedAnswer) -> Result<(), SinkError>;
    /// A seed's difficulty score (with the method's scoring).
    fn seed_scored(&self, _score: &SeedScore) -> Result<(), SinkError> {
        Ok(())
    }
    /// A seed's chain is done: all its records have been given.
    fn seed_done(&self, _seed: &Seed) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Errors that stop a run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{stage} call to model `{model}` failed: {source}")]
    Model {
        stage: String,
        model: String,
        #[source]
        source: Box<evol_llm::ChatError>,
    },
    #[error("could not write a record: {0}")]
    Sink(#[source] SinkError),
    #[error("the journal failed: {0}")]
    Journal(#[source] crate::journal::JournalError),
    #[error("reading the seeds failed: {0}")]
    Seeds(#[source] SeedSourceError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("the run was stopped")]
    Stopped,
    #[error(transparent)]
    Cap(#[from] CapReached),
}

impl From<CallError> for EngineError {
    fn from(e: CallError) -> EngineError {
        match e {
            CallError::Model { stage, model, source } => EngineError::Model { stage, model, source },
            CallError::Journal(e) => EngineError::Journal(e),
            CallError::Stopped => EngineError::Stopped,
            CallError::Cap(reached) => EngineError::Cap(reached),
        }
    }
}

impl From<MissingRole> for EngineError {
    fn from(e: MissingRole) -> EngineError {
        EngineError::Settings(e.to_string())
    }
}

/// A rejection's detail when none of an instruction's K answers can be
/// kept: how many of each fate.
fn none_kept(candidates: &[AnswerCandidate]) -> String {
    let mut fates = std::collections::BTreeMap::<&str, usize>::new();
    for c in candidates {
        *fates.entry(c.rejected.map_or("kept", Reason::name)).or_default() += 1;
    }
    let fates: Vec<String> = fates.iter().map(|(fate, n)| format!("{n} {fate}")).collect();
    format!("none of the {} answers could be kept ({})", candidates.len(), fates.join(", "))
}

/// The slice name under which seeds' own answers are counted.
pub const SEED_ANSWER: &str = "seed_answer";

/// The slice name under which seeds' difficulty scores are counted.
pub const SEED_SCORE: &str = "seed_score";

/// How many chains run at once, per unit of concurrency. Chains spend most
/// of their time waiting for a call slot, so several per slot keep every
/// slot busy until the very end while bounding memory for huge seed files.
const CHAINS_PER_SLOT: usize = 16;

/// Runs Evol-Instruct over seeds.
pub struct Engine {
    method: Method,
    /// Each operation's step calls (`Method::step_calls`), by position.
    plans: Vec<Vec<PlannedCall>>,
    /// The model name records carry for their evolver.
    evolver: String,
    roles: Roles,
    templates: Templates,
    stats: Arc<StatsRecorder>,
    caller: Arc<Caller>,
    /// With the method's near-duplicate check: its hasher, and the seeds.
    hasher: Option<evol_dedup::Hasher>,
    seed_index: Option<Arc<SeedIndex>>,
    benchmarks: Option<Arc<evol_dedup::Benchmarks>>,
    /// The refusal phrases of the sorry rule.
    refusals: Arc<evol_lang::Refusals>,
}

/// What a seed's chain is written in: the seed's language, when told, and
/// the language its texts must be in (the run's target, else the seed's).
#[derive(Debug, Clone, Copy)]
struct Language<'a> {
    /// The run keeps each text's language (and counts per language).
    kept: bool,
    source: Option<&'a str>,
    expected: Option<&'a str>,
}

/// The language of a chain whose seed's could not be told, in the
/// statistics (ISO 639-2's "undetermined").
pub use evol_lang::UNDETERMINED;

/// The instruction a chain currently evolves.
struct Current {
    id: String,
    instruction: String,
    /// The constraints the instruction states.
    constraints: Vec<Constraint>,
    /// In a conversation: the turns before this instruction's.
    history: Vec<Message>,
}

impl Engine {
    /// An engine for `method`, calling `roles`' models through `caller`.
    /// Every role the method calls must have a model.
    pub fn new(
        method: Method,
        roles: Roles,
        templates: Templates,
        stats: Arc<StatsRecorder>,
        caller: Arc<Caller>,
    ) -> Result<Engine, EngineError> {
        if method.operations.is_empty() {
            return Err(EngineError::Settings("no operation is enabled".into()));
        }
        for role in method.roles() {
            roles.get(role)?;
        }
        let plans = method.operations.iter().map(|op| method.step_calls(op)).collect();
        let evolver = roles.get(Role::Evolve)?.name().to_string();
        let hasher = method.dedup.map(evol_dedup::Hasher::new);
        Ok(Engine {
            method,
            plans,
            evolver,
            roles,
            templates,
            stats,
            caller,
            hasher,
            seed_index: None,
            benchmarks: None,
            refusals: Arc::new(evol_lang::Refusals::builtin()),
        })
    }

    /// The seeds an evolution must not duplicate, with the method's
    /// near-duplicate check (without it, only a chain's own seed and
    /// evolutions are compared). The index's settings must be the method's.
    pub fn with_seed_index(mut self, index: Arc<SeedIndex>) -> Engine {
        debug_assert_eq!(Some(*index.hasher().params()), self.method.dedup);
        self.seed_index = Some(index);
        self
    }

    /// The benchmarks evolutions must not overlap (`contaminated`): an
    /// instruction is checked before its judge and answer calls are made,
    /// an answer when it arrives.
    pub fn with_benchmarks(mut self, benchmarks: Arc<evol_dedup::Benchmarks>) -> Engine {
        self.benchmarks = Some(benchmarks);
        self
    }

    /// The refusal phrases the sorry rule reads (default: the built-in
    /// ones). The method's `refusals` must name them.
    pub fn with_refusals(mut self, refusals: Arc<evol_lang::Refusals>) -> Engine {
        self.refusals = refusals;
        self
    }

    /// The benchmark item `text` overlaps, as a rejection's detail.
    fn contaminated(&self, text: &str) -> Option<String> {
        let hit = self.benchmarks.as_ref()?.find(text)?;
        Some(format!("{}: \"{}\"", hit.item, hit.words))
    }

    /// Evolves every seed through every round, sending records to `sink` as
    /// they are decided. Returns when all chains are done or the run fails.
    ///
    /// Seeds are taken from the source only as chains start (a bounded
    /// window of them), so a source of any size runs in flat memory. A seed
    /// the source cannot give ends the run as a stop does (nothing new is
    /// sent, the calls in flight finish) with [`EngineError::Seeds`].
    ///
    /// After [`Engine::stop`], no new call is sent: calls in flight finish
    /// and are committed, then `run` returns [`EngineError::Stopped`]. When a
    /// budget cap is reached the same happens and `run` returns
    /// [`EngineError::Cap`].
    pub async fn run<E>(
        &self,
        seeds: impl IntoIterator<Item = Result<Seed, E>>,
        sink: &dyn Sink,
    ) -> Result<(), EngineError>
    where
        E: Into<SeedSourceError>,
    {
        // Past a few thousand slots (batch APIs), more chains than slots
        // only cost memory.
        let concurrency = self.caller.settings().concurrency;
        let window = concurrency.saturating_mul(CHAINS_PER_SLOT).min(concurrency + 16_384);
        // Each chain's calls go before those of chains started after it
        // (see `CallSpec::priority`): the window keeps every slot busy, and
        // yet chains finish in about the order they started, so records
        // come steadily from the start instead of all near the end.
        //
        // Near the end that order would leave a tail: the last chains to
        // start would run alone, one call after another, while slots idle.
        // So once every seed is admitted, slots go to the calls whose chains
        // have the most calls left (the critical path first): the chains
        // left finish together, when the longest of them must.
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        let exhausted = AtomicBool::new(false);
        let mut source = seeds.into_iter();
        let seeds = std::iter::from_fn(|| {
            let next = source.next();
            if next.is_none() {
                exhausted.store(true, SeqCst);
            }
            next
        });
        let mut chains = futures::stream::iter(seeds)
            .take_while(|_| std::future::ready(!self.caller.is_stopping()))
            .enumerate()
            .map(|(order, seed)| async move {
                match seed {
                    Ok(seed) => self.chain(order as u64, seed, sink).await,
                    Err(e) => {
                        self.stop();
                        Err(EngineError::Seeds(e.into()))
                    }
                }
            })
            .buffer_unordered(window);
        let mut stopped = false;
        let mut cap = None;
        let mut unreadable = None;
        let mut critical = false;
        loop {
            if !critical && exhausted.load(SeqCst) {
                self.caller.critical_path();
                critical = true;
            }
            let Some(result) = chains.next().await else { break };
            match result {
                Err(EngineError::Stopped) => stopped = true,
                Err(EngineError::Cap(reached)) => cap = Some(reached),
                Err(EngineError::Seeds(e)) => unreadable = Some(e),
                other => other?,
            }
        }
        if let Some(e) = unreadable {
            return Err(EngineError::Seeds(e));
        }
        if let Some(reached) = cap {
            return Err(EngineError::Cap(reached));
        }
        if stopped || self.caller.is_stopping() {
            return Err(EngineError::Stopped);
        }
        Ok(())
    }

    /// Asks a running [`Engine::run`] to send no new call and return once
    /// the calls in flight are done.
    pub fn stop(&self) {
        self.caller.stop();
    }

    async fn chain(&self, order: u64, seed: Seed, sink: &dyn Sink) -> Result<(), EngineError> {
        let mut seed_answer = None;
        for planned in self.method.seed_calls() {
            match planned.stage {
                Stage::Score => self.score_seed(order, &seed, planned, sink).await?,
                _ => seed_answer = self.answer_seed(order, &seed, planned, sink).await?,
            }
        }
        // A conversation opens with the seed and its answer; a seed whose
        // answer failed or was rejected has none.
        let (instruction, history) = match (self.method.conversation, seed_answer) {
            (false, _) => (seed.instruction.clone(), Vec::new()),
            (true, Some(answer)) => {
                let (context, last) = seed.opening();
                let mut history = context.to_vec();
                history.extend([Message::user(last), Message::assistant(answer)]);
                (last.to_string(), history)
            }
            (true, None) => {
                sink.seed_done(&seed).map_err(EngineError::Sink)?;
                self.stats.seed_done();
                return Ok(());
            }
        };
        let mut current = Current { id: seed.id.clone(), instruction, constraints: Vec::new(), history };
        let mut ancestors = Ancestors::default();
        if let Some(hasher) = &self.hasher {
            ancestors.push(&seed.id, hasher.fingerprint(&seed.instruction));
        }
        // The language each text of the chain is written in: the run's
        // target, else the seed's own (when it can be told).
        let source = self.method.language.as_ref().and_then(|_| evol_lang::detect(&seed.instruction).language());
        let expected = self.method.language.as_ref().and_then(|p| p.target.as_deref().or(source));
        let kept = self.method.language.is_some();
        if kept {
            self.stats.seed_language(expected.unwrap_or(UNDETERMINED));
        }
        let language = Language { kept, source, expected };
        for round in 1..=self.method.rounds {
            match self.step(order, &seed.id, &current, round, &mut ancestors, language).await? {
                Ok(evolution) => {
                    sink.accepted(&evolution).map_err(EngineError::Sink)?;
                    let mut history = std::mem::take(&mut current.history);
                    if self.method.conversation {
                        history.push(Message::user(&evolution.instruction));
                        history.push(Message::assistant(evolution.response.clone().unwrap_or_default()));
                    }
                    current = Current {
                        id: evolution.lineage.id,
                        instruction: evolution.instruction,
                        constraints: evolution.constraints,
                        history,
                    };
                }
                Err(rejection) => {
                    sink.rejected(&rejection).map_err(EngineError::Sink)?;
                    // A failed turn ends the conversation: it is kept up
                    // to its last good turn.
                    if self.method.conversation {
                        break;
                    }
                }
            }
        }
        sink.seed_done(&seed).map_err(EngineError::Sink)?;
        self.stats.seed_done();
        Ok(())
    }

    async fn answer_seed(
        &self,
        order: u64,
        seed: &Seed,
        planned: PlannedCall,
        sink: &dyn Sink,
    ) -> Result<Option<String>, EngineError> {
        let mut rng = keyed_rng(self.method.run_seed, &[b"seed-answer", seed.id.as_bytes()]);
        let slice = Slice { round: 0, operation: SEED_ANSWER };
        let model = self.roles.get(planned.role)?;
        // A conversation run answers a seed that is a conversation at its
        // last user turn, in the context of the turns before it.
        let (context, instruction) = match self.method.conversation {
            true => seed.opening(),
            false => (&[][..], seed.instruction.as_str()),
        };
        // A seed that overlaps a benchmark stays out of the dataset, and
        // its answer is not paid for.
        if let Some(detail) = self.contaminated(instruction) {
            let answer = SeedAnswer {
                id: seed.id.clone(),
                instruction: instruction.to_string(),
                response: None,
                response_reasoning: None,
                error: None,
                model: model.name().to_string(),
                usage: Usage::default(),
                rejected: Some(Reason::Contaminated.name().to_string()),
                detail: Some(detail),
                answer_truncated: false,
            };
            return sink.seed_answered(&answer).map(|()| None).map_err(EngineError::Sink);
        }
        let language = Language { kept: false, source: None, expected: None };
        let spec = self.spec(order, &seed.id, 0, planned, slice, instruction, &mut rng)?;
        let spec = self.answering(spec, instruction, language, context)?;
        let (response, response_reasoning, error, usage, rejected, answer_truncated, detail) =
            match self.caller.call(spec).await? {
                Ok(reply) => {
                    // The answer rules an evolution's answer passes, a seed's
                    // answer passes too.
                    let rejected = eliminate::check_answer_reply_with(&self.method.rules, &self.refusals, &reply);
                    let truncated = reply.finish_reason == FinishReason::Length;
                    let overlap = rejected.is_none().then(|| self.contaminated(&reply.text)).flatten();
                    let rejected =
                        rejected.or(overlap.as_ref().map(|_| Reason::Contaminated)).map(|r| r.name().to_string());
                    (Some(reply.text), reply.reasoning, None, reply.usage, rejected, truncated, overlap)
                }
                Err(e) => (None, None, Some(e), Usage::default(), None, false, None),
            };
        let answer = SeedAnswer {
            id: seed.id.clone(),
            instruction: instruction.to_string(),
            response,
            response_reasoning,
            error,
            model: model.name().to_string(),
            usage,
            rejected,
            detail,
            answer_truncated,
        };
        sink.seed_answered(&answer).map_err(EngineError::Sink)?;
        Ok(answer.response.filter(|_| answer.rejected.is_none() && answer.error.is_none()))
    }

    async fn score_seed(
        &self,
        order: u64,
        seed: &Seed,
        planned: PlannedCall,
        sink: &dyn Sink,
    ) -> Result<(), EngineError> {
        let mut rng = keyed_rng(self.method.run_seed, &[b"seed-score", seed.id.as_bytes()]);
        let slice = Slice { round: 0, operation: SEED_SCORE };
        let model = self.roles.get(planned.role)?;
        let prompt = self.templates.difficulty_prompt(&seed.instruction)?;
        let (difficulty, usage) =
            match self.caller.call(self.spec(order, &seed.id, 0, planned, slice, &prompt, &mut rng)?).await? {
                Ok(reply) => (Scored::read(&reply.text, Measure::Difficulty), reply.usage),
                Err(e) => (Scored::failed(e), Usage::default()),
            };
        self.stats.difficulty(0, &difficulty);
        let score = SeedScore {
            id: seed.id.clone(),
            instruction: seed.instruction.clone(),
            difficulty,
            model: model.name().to_string(),
            usage,
        };
        sink.seed_scored(&score).map_err(EngineError::Sink)
    }

    /// One evolution attempt. The outer error stops the run; the inner
    /// result is the item's fate.
    async fn step(
        &self,
        order: u64,
        seed_id: &str,
        parent: &Current,
        round: u32,
        ancestors: &mut Ancestors,
        language: Language<'_>,
    ) -> Result<Result<Evolution, Rejection>, EngineError> {
        let m = &self.method;
        let history = parent.history.as_slice();
        let mut rng = step_rng(m.run_seed, seed_id, round, 0);
        let drawn = m.operations.draw_index(&mut rng);
        let operation = m.operations.at(drawn);
        let rules = m.rules.for_operation(operation);
        // A verifiable operation adds one constraint it draws (none when
        // none fits: the step fails before any call).
        let mut constraints = parent.constraints.clone();
        let drawn_constraint = (!operation.constraints.is_empty()).then(|| {
            let context = constrain::Context {
                instruction: &parent.instruction,
                held: &parent.constraints,
                language_fixed: language.expected.is_some(),
            };
            constrain::draw(&operation.constraints, context, &mut rng)
        });
        constraints.extend(drawn_constraint.clone().flatten());
        let wording = drawn_constraint.as_ref().map(|c| c.as_ref().map(Constraint::describe).unwrap_or_default());
        // A follow-up operation sees the conversation so far.
        let transcript = operation.is_follow_up().then(|| transcript(history));
        let extra = Extra { constraint: wording.as_deref(), conversation: transcript.as_deref() };
        let mut prompt = self.templates.evolve_prompt(operation, &parent.instruction, extra, &mut rng)?;
        if let Some(expected) = language.expected {
            prompt.text =
                format!("{}\n\n{}", self.templates.language_note(language.source, expected)?.trim_end(), prompt.text);
        }
        // The language rule: a text told to be in another language fails.
        let wrong_language = |text: &str| -> Option<String> {
            let expected = language.expected.filter(|_| rules.language)?;
            match eliminate::language_changed(text, expected) {
                eliminate::LanguageCheck::Kept => None,
                eliminate::LanguageCheck::Changed(detail) => Some(detail),
                eliminate::LanguageCheck::Undetermined => {
                    self.stats.language_undetermined(expected);
                    None
                }
            }
        };
        // The constraint rule: an answer that breaks one the instruction
        // states fails, naming it.
        let broken = |text: &str| evol_constraints::check_all(&constraints, text).err().map(|b| b.to_string());
        let slice = Slice { round, operation: operation.name() };
        // Built when the step's fate is known (kept small while it waits).
        let lineage = || Lineage {
            id: evolution_id(seed_id, round),
            seed_id: seed_id.to_string(),
            parent_id: parent.id.clone(),
            round,
            operation: operation.name().to_string(),
            data_format: prompt.data_format.clone(),
            nodes: prompt.nodes,
        };
        let mut usage = Usage::default();
        // The thinking traces of the evolving and answering replies, kept
        // with the record whatever becomes of it.
        let traces: std::cell::RefCell<(Option<String>, Option<String>)> = Default::default();

        let rejection = |reason: Reason,
                         instruction: Option<String>,
                         response: Option<String>,
                         detail: Option<String>,
                         usage: Usage| {
            self.stats.outcome(slice, Some(reason));
            if language.kept {
                self.stats.language_outcome(language.expected.unwrap_or(UNDETERMINED), round, Some(reason));
            }
            let (instruction_reasoning, response_reasoning) = traces.borrow().clone();
            Rejection {
                lineage: lineage(),
                instruction,
                instruction_reasoning,
                response,
                response_reasoning,
                reason,
                detail,
                duplicate_of: None,
                similarity: None,
                model: self.evolver.clone(),
                usage,
                language: language.expected.map(String::from),
                answers: Vec::new(),
                constraints: constraints.clone(),
                history: history.to_vec(),
            }
        };
        let reject = |reason, instruction, response, detail, usage| {
            Ok(Err(rejection(reason, instruction, response, detail, usage)))
        };
        let mut print = None;
        if let Some(None) = drawn_constraint {
            let held: Vec<&str> = parent.constraints.iter().map(Constraint::id).collect();
            let detail = format!(
                "no constraint of `{}` fits this instruction{}",
                operation.name(),
                if held.is_empty() {
                    String::new()
                } else {
                    format!(" beside the ones it holds ({})", held.join(", "))
                }
            );
            return reject(Reason::NoConstraintFits, None, None, Some(detail), usage);
        }

        let mut instruction = String::new();
        let mut response = None;
        let mut answer_model = None;
        let mut answer_truncated = false;
        let mut difficulty = None;
        // With `--answers K`: the answers so far, and the ranking's outcome
        // (`Some(None)`: read whole).
        let k = m.best_of.map_or(1, |b| b.answers.max(1));
        let mut candidates: Vec<AnswerCandidate> = Vec::new();
        let mut ranking: Option<Option<Scored>> = None;
        let mut best_kept = false;
        // With `--improve-answers N`: the rounds so far, the one going on,
        // and the answer before the first rewrite kept.
        let mut improvements: Vec<Improvement> = Vec::new();
        let mut improving: Option<Improvement> = None;
        let mut original_response = None;
        for &planned in &self.plans[drawn] {
            if !candidates.is_empty() && !best_kept && !matches!(planned.stage, Stage::Answer | Stage::Rank) {
                let c = self.keep_best(&mut candidates, &ranking);
                (response, answer_truncated) = (c.response.clone(), c.truncated);
                traces.borrow_mut().1 = c.response_reasoning.clone();
                answer_model = Some(self.roles.get(Role::Answer)?.name().to_string());
                best_kept = true;
            }
            match planned.stage {
                Stage::Evolve => {
                    let reply = match self
                        .caller
                        .call(self.spec(order, seed_id, round, planned, slice, &prompt.text, &mut rng)?)
                        .await?
                    {
                        Ok(reply) => reply,
                        Err(e) => return reject(Reason::RequestFailed, None, None, Some(e), usage),
                    };
                    usage += reply.usage;
                    traces.borrow_mut().0 = reply.reasoning.clone();
                    instruction = match eliminate::read_evolution(operation, &rules, &reply.text, reply.finish_reason) {
                        Ok(instruction) => instruction,
                        Err((reason, text)) => return reject(reason, Some(text), None, None, usage),
                    };
                    if let Some((constraint, text)) = constrain::lost(&constraints, &instruction) {
                        let detail = format!("{}: the instruction no longer states \"{text}\"", constraint.id());
                        return reject(Reason::ConstraintLost, Some(instruction), None, Some(detail), usage);
                    }
                    if let Some(hasher) = &self.hasher {
                        let this = hasher.fingerprint(&instruction);
                        let threshold = hasher.params().threshold;
                        let found = ancestors
                            .find(&this, threshold)
                            .or_else(|| self.seed_index.as_ref().and_then(|seeds| seeds.find(&this)));
                        if let Some(Duplicate { id, similarity }) = found {
                            let mut r = rejection(Reason::NearDuplicate, Some(instruction), None, None, usage);
                            (r.duplicate_of, r.similarity) = (Some(id), Some(evol_dedup::shown_similarity(similarity)));
                            return Ok(Err(r));
                        }
                        print = Some(this);
                    }
                    if let Some(detail) = self.contaminated(&instruction) {
                        return reject(Reason::Contaminated, Some(instruction), None, Some(detail), usage);
                    }
                    if let Some(detail) = wrong_language(&instruction) {
                        return reject(Reason::LanguageChanged, Some(instruction), None, Some(detail), usage);
                    }
                }
                Stage::Judge => {
                    let question = self.judging(
                        self.templates.equality_prompt(&parent.instruction, &instruction)?,
                        language,
                        false,
                    )?;
                    match self
                        .caller
                        .call(self.spec(order, seed_id, round, planned, slice, &question, &mut rng)?)
                        .await?
                    {
                        Ok(verdict) => {
                            usage += verdict.usage;
                            let said = parse_verdict(&verdict.text);
                            self.stats.verdict(said);
                            if said == Verdict::Equal {
                                let detail = Some(verdict.text.trim().to_string());
                                return reject(Reason::NoInformationGain, Some(instruction), None, detail, usage);
                            }
                        }
                        Err(e) => return reject(Reason::RequestFailed, Some(instruction), None, Some(e), usage),
                    }
                }
                // The K answers are asked for together (the first of them
                // in the plan sends all K; their request seeds are drawn in
                // order, so the choices do not depend on which comes back
                // first).
                Stage::Answer if k > 1 && planned.sample > 0 => continue,
                Stage::Answer if k > 1 => {
                    let planned: Vec<PlannedCall> =
                        self.plans[drawn].iter().filter(|p| p.stage == Stage::Answer).copied().collect();
                    let stages: Vec<_> = planned.iter().map(PlannedCall::key_stage).collect();
                    let mut specs = Vec::with_capacity(planned.len());
                    for (p, stage) in planned.iter().zip(&stages) {
                        let spec = self.spec(order, seed_id, round, *p, slice, &instruction, &mut rng)?.keyed(stage);
                        specs.push(self.answering(spec, &instruction, language, history)?);
                    }
                    let replies = futures::future::join_all(specs.into_iter().map(|spec| self.caller.call(spec))).await;
                    for reply in replies {
                        candidates.push(match reply? {
                            Ok(answer) => {
                                usage += answer.usage;
                                let mut rejected = eliminate::check_answer_reply_with(&rules, &self.refusals, &answer);
                                let mut detail = None;
                                if rejected.is_none() {
                                    detail = self.contaminated(&answer.text);
                                    rejected = detail.as_ref().map(|_| Reason::Contaminated);
                                }
                                if rejected.is_none() {
                                    detail = wrong_language(&answer.text);
                                    rejected = detail.as_ref().map(|_| Reason::LanguageChanged);
                                }
                                if rejected.is_none() {
                                    detail = broken(&answer.text);
                                    rejected = detail.as_ref().map(|_| Reason::ConstraintFailed);
                                }
                                AnswerCandidate {
                                    truncated: answer.finish_reason == FinishReason::Length,
                                    response: Some(answer.text),
                                    response_reasoning: answer.reasoning,
                                    rejected,
                                    detail,
                                    score: None,
                                    kept: false,
                                }
                            }
                            Err(e) => AnswerCandidate {
                                response: None,
                                response_reasoning: None,
                                rejected: Some(Reason::RequestFailed),
                                detail: Some(e),
                                score: None,
                                truncated: false,
                                kept: false,
                            },
                        });
                    }
                    if !candidates.iter().any(|c| c.rejected.is_none()) {
                        // None can be kept: the evolution fails as its first
                        // answer with a text does (or its first call).
                        self.stats.best_of(&candidates, None);
                        let first = candidates.iter().find(|c| c.response.is_some()).unwrap_or(&candidates[0]);
                        let reason = first.rejected.expect("every candidate is rejected");
                        let detail = Some(none_kept(&candidates));
                        let mut r = rejection(reason, Some(instruction), first.response.clone(), detail, usage);
                        r.response_reasoning = first.response_reasoning.clone();
                        r.answers = candidates;
                        return Ok(Err(r));
                    }
                }
                Stage::Answer => match self
                    .caller
                    .call(self.answering(
                        self.spec(order, seed_id, round, planned, slice, &instruction, &mut rng)?,
                        &instruction,
                        language,
                        history,
                    )?)
                    .await?
                {
                    Ok(answer) => {
                        usage += answer.usage;
                        traces.borrow_mut().1 = answer.reasoning.clone();
                        if let Some(reason) = eliminate::check_answer_reply_with(&rules, &self.refusals, &answer) {
                            return reject(reason, Some(instruction), Some(answer.text), None, usage);
                        }
                        answer_truncated = answer.finish_reason == FinishReason::Length;
                        if let Some(detail) = self.contaminated(&answer.text) {
                            return reject(
                                Reason::Contaminated,
                                Some(instruction),
                                Some(answer.text),
                                Some(detail),
                                usage,
                            );
                        }
                        if let Some(detail) = wrong_language(&answer.text) {
                            return reject(
                                Reason::LanguageChanged,
                                Some(instruction),
                                Some(answer.text),
                                Some(detail),
                                usage,
                            );
                        }
                        if let Some(detail) = broken(&answer.text) {
                            return reject(
                                Reason::ConstraintFailed,
                                Some(instruction),
                                Some(answer.text),
                                Some(detail),
                                usage,
                            );
                        }
                        answer_model = Some(self.roles.get(planned.role)?.name().to_string());
                        response = Some(answer.text);
                    }
                    Err(e) => return reject(Reason::RequestFailed, Some(instruction), None, Some(e), usage),
                },
                // The usable answers ranked together by the judge, one
                // quality score each (a single usable answer needs none).
                Stage::Rank => {
                    let usable: Vec<usize> =
                        (0..candidates.len()).filter(|&i| candidates[i].rejected.is_none()).collect();
                    if usable.len() < 2 {
                        continue;
                    }
                    let texts: Vec<&str> =
                        usable.iter().map(|&i| candidates[i].response.as_deref().unwrap_or("")).collect();
                    let question =
                        self.judging(self.templates.quality_prompt(&instruction, &texts)?, language, true)?;
                    let read = match self
                        .caller
                        .call(self.spec(order, seed_id, round, planned, slice, &question, &mut rng)?)
                        .await?
                    {
                        Ok(reply) => {
                            usage += reply.usage;
                            let (low, high) = Measure::Quality.range();
                            let scores = crate::score::parse_scores(&reply.text, usable.len(), low, high);
                            for (&i, score) in usable.iter().zip(&scores) {
                                candidates[i].score = *score;
                            }
                            match scores.iter().all(Option::is_some) {
                                true => None,
                                false => Some(Scored { score: None, unreadable: Some(reply.text), error: None }),
                            }
                        }
                        Err(e) => Some(Scored::failed(e)),
                    };
                    ranking = Some(read);
                }
                // Evol-Answer: a critique of the answer, a rewrite with it,
                // and the two compared; the rewrite replaces the answer only
                // if it scores higher. A round that fails ends there (the
                // answer stays); the next starts from the answer kept.
                Stage::Critique => {
                    improvements.extend(improving.take());
                    let Some(answer) = response.as_deref() else { continue };
                    let question = self.templates.critique_prompt(&instruction, answer)?;
                    let stage = planned.key_stage();
                    let spec = self.spec(order, seed_id, round, planned, slice, &question, &mut rng)?;
                    let mut this = Improvement {
                        round: planned.sample + 1,
                        critique: None,
                        response: None,
                        response_reasoning: None,
                        score_before: None,
                        score_after: None,
                        kept: false,
                        rejected: None,
                        detail: None,
                    };
                    match self.caller.call(spec.keyed(&stage)).await? {
                        Ok(reply) => {
                            usage += reply.usage;
                            this.critique = Some(reply.text);
                            improving = Some(this);
                        }
                        Err(e) => {
                            (this.rejected, this.detail) = (Some(Reason::RequestFailed), Some(e));
                            improvements.push(this);
                        }
                    }
                }
                Stage::Improve => {
                    let (Some(mut this), Some(answer)) = (improving.take(), response.as_deref()) else { continue };
                    let critique = this.critique.as_deref().unwrap_or_default();
                    let mut question = self.templates.improve_prompt(&instruction, answer, critique)?;
                    if let Some(expected) = language.expected {
                        let note = self.templates.language_note(language.source, expected)?;
                        question = format!("{}\n\n{question}", note.trim_end());
                    }
                    let stage = planned.key_stage();
                    let spec = self.spec(order, seed_id, round, planned, slice, &question, &mut rng)?;
                    match self.caller.call(spec.keyed(&stage)).await? {
                        Ok(reply) => {
                            usage += reply.usage;
                            // A rewrite passes the answer rules, and one cut
                            // off by the token limit never replaces an answer.
                            let mut rejected = eliminate::check_answer_reply_with(&rules, &self.refusals, &reply);
                            if rejected.is_none() && reply.finish_reason == FinishReason::Length {
                                rejected = Some(Reason::TruncatedAnswer);
                            }
                            if rejected.is_none() {
                                this.detail = self.contaminated(&reply.text);
                                rejected = this.detail.as_ref().map(|_| Reason::Contaminated);
                            }
                            if rejected.is_none() {
                                this.detail = wrong_language(&reply.text);
                                rejected = this.detail.as_ref().map(|_| Reason::LanguageChanged);
                            }
                            if rejected.is_none() {
                                this.detail = broken(&reply.text);
                                rejected = this.detail.as_ref().map(|_| Reason::ConstraintFailed);
                            }
                            (this.response, this.response_reasoning, this.rejected) =
                                (Some(reply.text), reply.reasoning, rejected);
                            match rejected {
                                Some(_) => improvements.push(this),
                                None => improving = Some(this),
                            }
                        }
                        Err(e) => {
                            (this.rejected, this.detail) = (Some(Reason::RequestFailed), Some(e));
                            improvements.push(this);
                        }
                    }
                }
                Stage::Compare => {
                    let Some(mut this) = improving.take() else { continue };
                    let (Some(before), Some(after)) = (response.clone(), this.response.clone()) else {
                        improvements.push(this);
                        continue;
                    };
                    // Which is shown first is drawn: judges favour a position.
                    let swap = rand::Rng::random_bool(&mut rng, 0.5);
                    let items =
                        if swap { [after.as_str(), before.as_str()] } else { [before.as_str(), after.as_str()] };
                    let question =
                        self.judging(self.templates.quality_prompt(&instruction, &items)?, language, true)?;
                    let stage = planned.key_stage();
                    let spec = self.spec(order, seed_id, round, planned, slice, &question, &mut rng)?;
                    match self.caller.call(spec.keyed(&stage)).await? {
                        Ok(reply) => {
                            usage += reply.usage;
                            let (low, high) = Measure::Quality.range();
                            let scores = crate::score::parse_scores(&reply.text, 2, low, high);
                            let (b, a) = if swap { (scores[1], scores[0]) } else { (scores[0], scores[1]) };
                            (this.score_before, this.score_after) = (b, a);
                            match (b, a) {
                                (Some(b), Some(a)) if a > b => {
                                    this.kept = true;
                                    original_response.get_or_insert(before);
                                    response = Some(after);
                                    answer_truncated = false;
                                    traces.borrow_mut().1 = this.response_reasoning.clone();
                                }
                                (Some(_), Some(_)) => {}
                                _ => this.detail = Some(reply.text),
                            }
                        }
                        Err(e) => (this.rejected, this.detail) = (Some(Reason::RequestFailed), Some(e)),
                    }
                    improvements.push(this);
                }
                // The evolution is accepted: its score is recorded with it,
                // whatever the score (or its failure).
                Stage::Score => {
                    let question = self.templates.difficulty_prompt(&instruction)?;
                    let scored = match self
                        .caller
                        .call(self.spec(order, seed_id, round, planned, slice, &question, &mut rng)?)
                        .await?
                    {
                        Ok(reply) => {
                            usage += reply.usage;
                            Scored::read(&reply.text, Measure::Difficulty)
                        }
                        Err(e) => Scored::failed(e),
                    };
                    self.stats.difficulty(round, &scored);
                    if let Some(nodes) = prompt.nodes {
                        self.stats.difficulty_by_nodes(nodes, &scored);
                    }
                    difficulty = Some(scored);
                }
            }
        }

        if !candidates.is_empty() && !best_kept {
            let c = self.keep_best(&mut candidates, &ranking);
            (response, answer_truncated) = (c.response.clone(), c.truncated);
            traces.borrow_mut().1 = c.response_reasoning.clone();
            answer_model = Some(self.roles.get(Role::Answer)?.name().to_string());
        }
        improvements.extend(improving.take());
        if !improvements.is_empty() {
            self.stats.improvements(&improvements);
        }
        self.stats.outcome(slice, None);
        if language.kept {
            self.stats.language_outcome(language.expected.unwrap_or(UNDETERMINED), round, None);
        }
        if let Some(print) = print {
            ancestors.push(&evolution_id(seed_id, round), print);
        }
        let (instruction_reasoning, response_reasoning) = traces.into_inner();
        Ok(Ok(Evolution {
            lineage: lineage(),
            instruction,
            instruction_reasoning,
            response,
            response_reasoning,
            model: self.evolver.clone(),
            answer_model,
            answer_truncated,
            usage,
            language: language.expected.map(String::from),
            difficulty,
            answers: candidates,
            ranking: ranking.flatten(),
            improvements,
            original_response,
            constraints,
            history: history.to_vec(),
        }))
    }

    /// Every answer is in, at least one usable: marks the one the pick
    /// keeps (and counts them all).
    fn keep_best<'c>(
        &self,
        candidates: &'c mut [AnswerCandidate],
        ranking: &Option<Option<Scored>>,
    ) -> &'c AnswerCandidate {
        let pick = self.method.best_of.map_or(crate::best_of::Pick::First, |b| b.pick);
        let seen: Vec<_> = candidates.iter().map(AnswerCandidate::as_candidate).collect();
        let kept = crate::best_of::pick(&seen, pick).expect("a usable answer");
        candidates[kept].kept = true;
        self.stats.best_of(candidates, ranking.as_ref().map(Option::is_none));
        &candidates[kept]
    }

    /// A judging prompt (equality, ranking, comparing) with the note that
    /// names the chain's language, when it has one.
    fn judging(&self, prompt: String, language: Language<'_>, answers: bool) -> Result<String, EngineError> {
        let Some(expected) = language.expected else { return Ok(prompt) };
        let note = self.templates.judge_language_note(expected, answers)?;
        Ok(format!("{}\n\n{prompt}", note.trim_end()))
    }

    /// An answering call's spec, asking for the answer in the chain's
    /// language (a system message before the instruction) when it has one.
    fn answering<'a>(
        &self,
        spec: CallSpec<'a>,
        instruction: &str,
        language: Language<'_>,
        history: &[Message],
    ) -> Result<CallSpec<'a>, EngineError> {
        if language.expected.is_none() && history.is_empty() {
            return Ok(spec);
        }
        let mut messages = Vec::with_capacity(history.len() + 2);
        if let Some(expected) = language.expected {
            messages.push(Message::system(self.templates.answer_language_note(expected)?.trim()));
        }
        // A conversation's turn is answered in the context of the turns
        // before it.
        messages.extend(history.iter().cloned());
        messages.push(Message::user(instruction));
        Ok(CallSpec { prompt: Prompt::Messages(messages), ..spec })
    }

    /// What one planned call sends, for the caller. Draws the request seed
    /// from `rng` whether or not it is sent.
    #[allow(clippy::too_many_arguments)]
    fn spec<'a>(
        &'a self,
        order: u64,
        seed_id: &'a str,
        round: u32,
        planned: PlannedCall,
        slice: Slice<'a>,
        prompt: &'a str,
        rng: &mut impl rand::RngCore,
    ) -> Result<CallSpec<'a>, EngineError> {
        let stage = planned.stage.name();
        let sampling = seeded(planned.sampling, self.method.request_seeds, rng);
        let key = CallKey { item: seed_id, round, stage };
        Ok(CallSpec::new(self.roles.get(planned.role)?, key, Prompt::User(prompt), sampling)
            .counted_as(slice)
            .tagged(stage)
            .priority(order)
            .remaining(self.remaining(round, planned)))
    }

    /// The calls a chain has left at this one, this one included, at most:
    /// each round left makes the longest step's calls (a step that fails a
    /// check makes fewer).
    fn remaining(&self, round: u32, planned: PlannedCall) -> u32 {
        let longest = self.plans.iter().map(Vec::len).max().unwrap_or(1) as u32;
        let same = |c: &PlannedCall| c.stage == planned.stage && c.sample == planned.sample;
        let (in_step, rounds_after) = match round {
            0 => {
                let seed = self.method.seed_calls();
                (seed.len() - seed.iter().position(same).unwrap_or(0), self.method.rounds)
            }
            r => {
                let at = self.plans.iter().find_map(|p| p.iter().position(same)).unwrap_or(0);
                (longest as usize - at.min(longest as usize - 1), self.method.rounds.saturating_sub(r))
            }
        };
        (in_step as u32).saturating_add(rounds_after.saturating_mul(longest))
    }
}

/// A conversation as a follow-up operation reads it: each message on its
/// speaker's line, `User:` or `Assistant:`, a blank line between.
fn transcript(history: &[Message]) -> String {
    let lines: Vec<String> = history
        .iter()
        .map(|m| {
            let speaker = match m.role {
                evol_llm::Role::User => "User",
                evol_llm::Role::Assistant => "Assistant",
                evol_llm::Role::System => "System",
            };
            format!("{speaker}: {}", m.content)
        })
        .collect();
    lines.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::CallerSettings;
    use crate::eliminate::Rules;
    use crate::journal::{call_key, CallRecord, Journal, NoJournal};
    use crate::ops::OperationSet;
    use evol_llm::ErrorKind;
    use evol_llm::{ChatError, ChatModel, ChatRequest, ChatResponse, Sampling};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// A scripted model: replies by the kind of prompt.
    struct Scripted {
        equal: bool,
        answer: String,
        answer_finish: FinishReason,
        fail_answers: Option<ErrorKind>,
        score: String,
        /// Replies carry a thinking trace (as a reasoning model's do).
        think: bool,
        /// When not empty: the n-th answer to one prompt is `answers[n]`
        /// (cycling), instead of `answer`.
        answers: Vec<String>,
        /// The reply to a ranking of K answers.
        rank: String,
        /// The rewrite an improvement makes, and whether the comparison
        /// scores it higher than the answer (else lower).
        improved: String,
        better: bool,
        /// A rewrite that adds a requirement leaves it out.
        drop_requirement: bool,
        asked: Mutex<BTreeMap<String, usize>>,
        calls: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new() -> Scripted {
            Scripted {
                equal: false,
                answer: "A long and useful answer about the topic.".into(),
                answer_finish: FinishReason::Stop,
                fail_answers: None,
                score: "I would rate it a 7 out of 10.".into(),
                think: false,
                answers: Vec::new(),
                rank: String::new(),
                improved: "An improved answer, with an example of the topic.".into(),
                better: true,
                drop_requirement: false,
                asked: Mutex::default(),
                calls: Mutex::new(vec![]),
            }
        }
    }

    #[async_trait::async_trait]
    impl ChatModel for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, ChatError> {
            let prompt = request.messages[0].content.clone();
            self.calls.lock().unwrap().push(prompt.clone());
            let mut finish_reason = FinishReason::Stop;
            let section = |heading: &str| {
                prompt.split(heading).nth(1).map(|rest| rest.split("\n\n#").next().unwrap().trim().to_string())
            };
            let text =
                if let (Some("evolve"), Some(requirement)) = (request.tag.as_deref(), section("#Requirement#:\n")) {
                    let given = section("#Instruction#:\n").unwrap();
                    match self.drop_requirement {
                        true => format!("{given} Be brief."),
                        false => format!("{given} {requirement}"),
                    }
                } else if request.tag.as_deref() == Some("evolve") {
                    let given = prompt.split("Prompt#:\n").nth(1).unwrap().split("\n\n#").next().unwrap();
                    format!("#Rewritten Prompt#: \"{given} More.\"")
                } else if request.tag.as_deref() == Some("score") {
                    self.score.clone()
                } else if request.tag.as_deref() == Some("rank") {
                    self.rank.clone()
                } else if request.tag.as_deref() == Some("critique") {
                    "1. It lacks an example.".into()
                } else if request.tag.as_deref() == Some("improve") {
                    self.improved.clone()
                } else if request.tag.as_deref() == Some("compare") {
                    let first_is_rewrite = prompt.contains(&format!("[Response 1]\n{}", self.improved));
                    match first_is_rewrite == self.better {
                        true => "1: 5\n2: 3".into(),
                        false => "1: 3\n2: 5".into(),
                    }
                } else if request.tag.as_deref() == Some("judge") {
                    if self.equal {
                        "Equal".into()
                    } else {
                        "Not Equal".into()
                    }
                } else {
                    if let Some(kind) = self.fail_answers {
                        return Err(ChatError { retries: 3, ..ChatError::new(kind, "boom") });
                    }
                    finish_reason = self.answer_finish.clone();
                    let mut asked = self.asked.lock().unwrap();
                    let n = asked.entry(prompt.clone()).or_default();
                    *n += 1;
                    match self.answers.is_empty() {
                        true => self.answer.clone(),
                        false => self.answers[(*n - 1) % self.answers.len()].clone(),
                    }
                };
            let tag = request.tag.as_deref().unwrap_or_default();
            let reasoning = self.think.then(|| format!("考えています ({tag}): sorry, I must weigh this."));
            let reasoning_tokens = if self.think { 1 } else { 0 };
            Ok(ChatResponse {
                text,
                reasoning,
                finish_reason,
                usage: Usage { prompt_tokens: 3, completion_tokens: 2, cached_tokens: 0, reasoning_tokens },
                retries: 0,
                signals: Default::default(),
            })
        }
    }

    #[derive(Default)]
    struct Collect {
        accepted: Mutex<Vec<Evolution>>,
        rejected: Mutex<Vec<Rejection>>,
        seeds: Mutex<Vec<SeedAnswer>>,
        scores: Mutex<Vec<SeedScore>>,
    }

    impl Sink for Collect {
        fn accepted(&self, e: &Evolution) -> Result<(), SinkError> {
            self.accepted.lock().unwrap().push(e.clone());
            Ok(())
        }
        fn rejected(&self, r: &Rejection) -> Result<(), SinkError> {
            self.rejected.lock().unwrap().push(r.clone());
            Ok(())
        }
        fn seed_answered(&self, a: &SeedAnswer) -> Result<(), SinkError> {
            self.seeds.lock().unwrap().push(a.clone());
            Ok(())
        }
        fn seed_scored(&self, s: &SeedScore) -> Result<(), SinkError> {
            self.scores.lock().unwrap().push(s.clone());
            Ok(())
        }
    }

    fn sampling() -> Sampling {
        Sampling { temperature: 1.0, top_p: 0.9, max_tokens: 64, seed: None, thinking: Default::default() }
    }

    /// The method and the caller's settings, in one struct for the tests.
    #[derive(Clone)]
    struct Settings {
        rounds: u32,
        ops: OperationSet,
        run_seed: u64,
        rules: Rules,
        answer: bool,
        answer_seeds: bool,
        evolve_sampling: Sampling,
        answer_sampling: Sampling,
        judge_sampling: Sampling,
        request_seeds: bool,
        dedup: Option<evol_dedup::Params>,
        difficulty: Option<Sampling>,
        best_of: Option<crate::method::BestOf>,
        improve_answers: u32,
        language: Option<crate::method::LanguagePolicy>,
        concurrency: usize,
        retry_failed: bool,
        /// The operator set the operations come from, when not `evol`.
        set: Option<crate::ops::OperatorSet>,
    }

    /// An engine over one model for every role.
    fn engine(s: Settings, model: Arc<dyn ChatModel>, stats: Arc<StatsRecorder>, journal: Arc<dyn Journal>) -> Engine {
        engine_with(s, model, stats, journal, |c| c)
    }

    fn engine_with(
        s: Settings,
        model: Arc<dyn ChatModel>,
        stats: Arc<StatsRecorder>,
        journal: Arc<dyn Journal>,
        costs: impl FnOnce(Caller) -> Caller,
    ) -> Engine {
        let method = Method {
            rounds: s.rounds,
            operations: s.ops,
            run_seed: s.run_seed,
            rules: s.rules,
            answer: s.answer,
            answer_seeds: s.answer_seeds,
            evolve_sampling: s.evolve_sampling,
            answer_sampling: s.answer_sampling,
            judge_sampling: s.judge_sampling,
            request_seeds: s.request_seeds,
            dedup: s.dedup,
            difficulty: s.difficulty,
            contamination: None,
            best_of: s.best_of,
            improve_answers: s.improve_answers,
            language: s.language.clone(),
            refusals: None,
            conversation: false,
        };
        let templates = match &s.set {
            Some(set) => Templates::new(BTreeMap::new(), set, &method.operations).unwrap(),
            None => Templates::builtin(),
        };
        let caller = CallerSettings { concurrency: s.concurrency, retry_failed: s.retry_failed };
        let caller = Arc::new(costs(Caller::new(caller, journal, stats.clone()).unwrap()));
        Engine::new(
            method,
            Roles::all(&[Role::Evolve, Role::Judge, Role::Answer, Role::Score], model),
            templates,
            stats,
            caller,
        )
        .unwrap()
    }

    fn seeds(n: usize) -> Vec<Result<Seed, SeedSourceError>> {
        (0..n).map(|i| Ok(Seed::new(format!("s{i}"), format!("Question {i}?")))).collect()
    }

    fn settings() -> Settings {
        Settings {
            rounds: 3,
            ops: OperationSet::builtin(),
            run_seed: 42,
            rules: Rules::default(),
            answer: true,
            answer_seeds: false,
            evolve_sampling: sampling(),
            answer_sampling: sampling(),
            judge_sampling: Sampling { temperature: 0.0, ..sampling() },
            request_seeds: true,
            dedup: None,
            difficulty: None,
            best_of: None,
            improve_answers: 0,
            language: None,
            concurrency: 4,
            retry_failed: false,
            set: None,
        }
    }

    async fn run(model: Scripted, settings: Settings, n: usize) -> (Collect, crate::stats::RunStats) {
        let model: Arc<dyn ChatModel> = Arc::new(model);
        let stats = Arc::new(StatsRecorder::new(n as u64));
        let engine = engine(settings, model, stats.clone(), Arc::new(NoJournal));
        let sink = Collect::default();
        engine.run(seeds(n), &sink).await.unwrap();
        (sink, stats.snapshot())
    }

    #[tokio::test]
    async fn chains_evolve_from_their_last_accepted_instruction() {
        let (sink, stats) = run(Scripted::new(), settings(), 5).await;
        let accepted = sink.accepted.lock().unwrap();
        assert_eq!(accepted.len(), 15);
        let by_id: BTreeMap<_, _> = accepted.iter().map(|e| (e.lineage.id.clone(), e)).collect();
        let third = by_id["s2.r3"];
        assert_eq!(third.lineage.parent_id, "s2.r2");
        assert_eq!(by_id["s2.r1"].lineage.parent_id, "s2");
        assert_eq!(third.instruction, "Question 2? More. More. More.");
        assert_eq!(third.response.as_deref(), Some("A long and useful answer about the topic."));
        assert_eq!(third.usage.prompt_tokens, 9);
        assert_eq!(stats.total.requests, 45);
        assert_eq!(stats.total.accepted, 15);
        assert_eq!(stats.seeds_done, 5);
    }

    #[tokio::test]
    async fn near_duplicates_of_an_ancestor_or_a_seed_are_rejected_before_the_judge() {
        // The scripted model appends one word: a near duplicate of a long
        // parent, not of a short one. Seed `b` is what seed `a` becomes.
        let long = (0..40).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ");
        let seeds = vec![
            Seed::new("a", "Name a fruit"),
            Seed::new("b", "NAME a fruit, more!"),
            Seed::new("long", long.clone()),
        ];
        let params = evol_dedup::Params::default();
        let mut index = SeedIndex::new(params);
        for seed in &seeds {
            index.add(&seed.id, &seed.instruction);
        }
        let model: Arc<dyn ChatModel> = Arc::new(Scripted::new());
        let stats = Arc::new(StatsRecorder::new(3));
        let s = Settings { rounds: 1, dedup: Some(params), ..settings() };
        let engine = engine(s, model, stats.clone(), Arc::new(NoJournal)).with_seed_index(Arc::new(index.finish()));
        let sink = Collect::default();
        engine.run(seeds.into_iter().map(Ok::<_, SeedSourceError>), &sink).await.unwrap();
        let rejected = sink.rejected.lock().unwrap();
        let by_id: BTreeMap<_, _> = rejected.iter().map(|r| (r.lineage.id.as_str(), r)).collect();
        let a = by_id["a.r1"];
        assert_eq!((a.reason, a.duplicate_of.as_deref(), a.similarity), (Reason::NearDuplicate, Some("b"), Some(1.0)));
        let long = by_id["long.r1"];
        assert_eq!((long.reason, long.duplicate_of.as_deref()), (Reason::NearDuplicate, Some("long")));
        assert!(long.similarity.unwrap() > 0.9 && long.similarity.unwrap() < 1.0, "{long:?}");
        let accepted = sink.accepted.lock().unwrap();
        assert_eq!(accepted.iter().map(|e| e.lineage.id.as_str()).collect::<Vec<_>>(), ["b.r1"]);
        // Neither rejected step asked the judge or the answerer.
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.total.requests, 3 + 2);
        assert_eq!(snapshot.total.rejected["near_duplicate"], 2);
        let json = serde_json::to_string(a).unwrap();
        assert!(json.contains(r#""reason":"near_duplicate","duplicate_of":"b","similarity":1.0"#), "{json}");
    }

    #[tokio::test]
    async fn difficulty_is_scored_for_seeds_and_accepted_evolutions_and_unreadable_replies_are_kept() {
        let s = Settings { rounds: 2, difficulty: Some(Sampling { temperature: 0.0, ..sampling() }), ..settings() };
        let (sink, stats) = run(Scripted::new(), s.clone(), 3).await;
        let scores = sink.scores.lock().unwrap().clone();
        assert_eq!(scores.len(), 3);
        assert!(scores.iter().all(|s| s.difficulty.score == Some(7.0)));
        let accepted = sink.accepted.lock().unwrap().clone();
        assert_eq!(accepted.len(), 6);
        assert!(accepted.iter().all(|e| e.difficulty.as_ref().unwrap().score == Some(7.0)));
        // Evolve, judge, answer and score per step; a score per seed.
        assert_eq!(stats.total.requests, 6 * 4 + 3);
        assert_eq!(stats.difficulty[&0].scored, 3);
        assert_eq!((stats.difficulty[&2].mean, stats.difficulty[&2].std), (Some(7.0), Some(0.0)));

        let model = Scripted { score: "Hard to say.".into(), ..Scripted::new() };
        let (sink, stats) = run(model, s, 2).await;
        let accepted = sink.accepted.lock().unwrap().clone();
        let unreadable = accepted[0].difficulty.as_ref().unwrap();
        assert_eq!((unreadable.score, unreadable.unreadable.as_deref()), (None, Some("Hard to say.")));
        assert_eq!(
            (stats.difficulty[&1].unreadable, stats.difficulty[&1].scored, stats.difficulty[&1].mean),
            (2, 0, None)
        );
        // A rejected step is not scored.
        let model = Scripted { equal: true, ..Scripted::new() };
        let s = Settings { rounds: 1, difficulty: Some(sampling()), ..settings() };
        let (_, stats) = run(model, s, 2).await;
        assert!(!stats.difficulty.contains_key(&1));
    }

    #[tokio::test]
    async fn equal_verdicts_keep_the_parent() {
        let model = Scripted { equal: true, ..Scripted::new() };
        let (sink, stats) = run(model, settings(), 2).await;
        assert!(sink.accepted.lock().unwrap().is_empty());
        let rejected = sink.rejected.lock().unwrap();
        assert_eq!(rejected.len(), 6);
        assert!(rejected
            .iter()
            .all(|r| r.reason == Reason::NoInformationGain && r.lineage.parent_id == r.lineage.seed_id));
        assert_eq!(stats.total.rejected["no_information_gain"], 6);
        // No answer is requested for a rejected evolution.
        assert_eq!(stats.total.requests, 12);
    }

    #[tokio::test]
    async fn sorry_answers_are_rejected_with_their_text() {
        let model = Scripted { answer: "Sorry, I cannot.".into(), ..Scripted::new() };
        let (sink, _) = run(model, settings(), 1).await;
        let rejected = sink.rejected.lock().unwrap();
        assert_eq!(rejected.len(), 3);
        assert_eq!(rejected[0].reason, Reason::AnswerSorry);
        assert_eq!(rejected[0].response.as_deref(), Some("Sorry, I cannot."));
    }

    #[tokio::test]
    async fn switched_off_rules_let_evolutions_through() {
        let model = Scripted { equal: true, answer: "Sorry.".into(), ..Scripted::new() };
        let mut s = settings();
        s.rules = Rules::OFF;
        let (sink, stats) = run(model, s, 2).await;
        assert_eq!(sink.accepted.lock().unwrap().len(), 6);
        assert_eq!(stats.total.requests, 12, "no judge calls when the rule is off");
    }

    #[tokio::test]
    async fn item_failures_are_recorded_and_the_run_goes_on() {
        let model = Scripted { fail_answers: Some(ErrorKind::Exhausted), ..Scripted::new() };
        let (sink, stats) = run(model, settings(), 3).await;
        let rejected = sink.rejected.lock().unwrap();
        assert_eq!(rejected.len(), 9);
        assert!(rejected.iter().all(|r| r.reason == Reason::RequestFailed));
        assert!(rejected[0].detail.as_deref().unwrap().contains("answer call failed: boom"));
        assert_eq!(stats.total.failures, 9);
        assert_eq!(stats.total.retries, 27);
        assert_eq!(stats.seeds_done, 3);
    }

    #[tokio::test]
    async fn fatal_failures_stop_the_run() {
        let model: Arc<dyn ChatModel> = Arc::new(Scripted { fail_answers: Some(ErrorKind::Auth), ..Scripted::new() });
        let engine = engine(settings(), model, Arc::new(StatsRecorder::new(3)), Arc::new(NoJournal));
        let err = engine.run(seeds(3), &Collect::default()).await.unwrap_err();
        assert!(err.to_string().contains("answer call to model `scripted` failed"), "{err}");
    }

    #[tokio::test]
    async fn a_backend_failure_stops_the_run_and_commits_nothing_it_caused() {
        let journal = Arc::new(MemoryJournal::default());
        let model: Arc<dyn ChatModel> =
            Arc::new(Scripted { fail_answers: Some(ErrorKind::Backend), ..Scripted::new() });
        let engine = engine(settings(), model, Arc::new(StatsRecorder::new(3)), journal.clone());
        let sink = Collect::default();
        let err = engine.run(seeds(3), &sink).await.unwrap_err();
        assert!(matches!(&err, EngineError::Model { stage, .. } if stage == "answer"), "{err}");
        assert!(sink.rejected.lock().unwrap().is_empty(), "no item is blamed for a dead backend");
        let answers = journal.0.lock().unwrap().keys().filter(|k| k.contains("answer")).count();
        assert_eq!(answers, 0, "no failed answer was committed");
    }

    #[tokio::test]
    async fn an_unreadable_seed_ends_the_run_like_a_stop() {
        let model = Arc::new(Scripted::new());
        let as_model: Arc<dyn ChatModel> = model.clone();
        let s = Settings { concurrency: 1, ..settings() };
        let engine = engine(s, as_model, Arc::new(StatsRecorder::new(4)), Arc::new(NoJournal));
        let mut source = seeds(4);
        source[2] = Err("page 3 of the seeds cannot be read".into());
        let sink = Collect::default();
        let err = engine.run(source, &sink).await.unwrap_err();
        assert!(matches!(err, EngineError::Seeds(_)), "{err}");
        assert!(err.to_string().contains("page 3"), "{err}");
        let records: Vec<String> = sink.accepted.lock().unwrap().iter().map(|e| e.lineage.seed_id.clone()).collect();
        assert!(!records.contains(&"s3".to_string()), "no seed after the bad one is started");
    }

    #[tokio::test]
    async fn choices_do_not_depend_on_concurrency() {
        let ops = |concurrency| async move {
            let s = Settings { concurrency, ..settings() };
            let (sink, _) = run(Scripted::new(), s, 20).await;
            let mut v: Vec<(String, String, Option<String>)> = sink
                .accepted
                .lock()
                .unwrap()
                .iter()
                .map(|e| (e.lineage.id.clone(), e.lineage.operation.clone(), e.lineage.data_format.clone()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(ops(1).await, ops(16).await);
    }

    #[tokio::test]
    async fn operations_are_drawn_uniformly() {
        let s = Settings { rounds: 1, ..settings() };
        let (sink, _) = run(Scripted::new(), s, 3000).await;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for e in sink.accepted.lock().unwrap().iter() {
            *counts.entry(e.lineage.operation.clone()).or_default() += 1;
        }
        assert_eq!(counts.len(), 6);
        for (op, n) in counts {
            // 500 expected; 4 sigma is about 80.
            assert!((420..=580).contains(&n), "{op}: {n}");
        }
    }

    #[tokio::test]
    async fn seeds_are_answered_when_asked() {
        let s = Settings { answer_seeds: true, rounds: 1, ..settings() };
        let (sink, stats) = run(Scripted::new(), s, 4).await;
        assert_eq!(sink.seeds.lock().unwrap().len(), 4);
        assert_eq!(stats.rounds[&0].requests, 4);
        assert_eq!(stats.operations[SEED_ANSWER].requests, 4);
    }

    fn best_of(answers: u32, pick: crate::best_of::Pick) -> Settings {
        let rules = Rules { equality: false, ..Rules::default() };
        Settings { rounds: 1, rules, best_of: Some(crate::method::BestOf { answers, pick }), ..settings() }
    }

    const SHORT: &str = "A short, useful answer.";
    const LONG: &str = "A longer answer, with more useful detail about the topic.";

    #[tokio::test]
    async fn the_best_of_k_answers_is_kept_with_all_of_them() {
        use crate::best_of::Pick;
        let answers = vec!["Sorry, I cannot.".to_string(), LONG.to_string(), SHORT.to_string()];
        let model = Scripted { answers: answers.clone(), ..Scripted::new() };
        let (sink, stats) = run(model, best_of(3, Pick::Shortest), 2).await;
        let accepted = sink.accepted.lock().unwrap().clone();
        assert_eq!(accepted.len(), 2);
        for e in accepted.iter() {
            assert_eq!(e.response.as_deref(), Some(SHORT), "the shortest usable answer");
            let texts: Vec<_> = e.answers.iter().map(|a| a.response.clone().unwrap()).collect();
            assert_eq!(texts, answers, "every answer kept, in sampling order");
            assert_eq!(e.answers[0].rejected, Some(Reason::AnswerSorry));
            assert_eq!(e.answers.iter().map(|a| a.kept).collect::<Vec<_>>(), [false, false, true]);
            // The kept answer against the worst: the refusal.
            let (chosen, rejected, margin) = crate::record::preference_pair(&e.answers).unwrap();
            assert_eq!(
                (chosen.response.as_deref(), rejected.response.as_deref(), margin),
                (Some(SHORT), Some("Sorry, I cannot."), None)
            );
        }
        let t = stats.best_of.unwrap();
        assert_eq!((t.instructions, t.answers, t.rejected["answer_sorry"], t.none_kept), (2, 6, 2, 0));
        // Three answers a step, each its own request seed: 2 x (evolve + 3).
        assert_eq!(stats.total.requests, 8);

        // By the judge's score: the ranking covers the usable answers only.
        let model = Scripted { answers: answers.clone(), rank: "1: 5\n2: 3".into(), ..Scripted::new() };
        let (sink, stats) = run(model, best_of(3, Pick::Score), 1).await;
        let e = sink.accepted.lock().unwrap()[0].clone();
        assert_eq!(e.response.as_deref(), Some(LONG));
        assert_eq!(e.answers.iter().map(|a| a.score).collect::<Vec<_>>(), [None, Some(5.0), Some(3.0)]);
        assert!(e.ranking.is_none(), "read whole");
        assert_eq!(stats.best_of.unwrap().ranked, 1);
        assert_eq!(stats.total.requests, 5, "evolve, 3 answers, 1 ranking");

        // A ranking that cannot be read is kept, counted, and the first
        // usable answer kept; never a made-up score.
        let model = Scripted { answers: answers.clone(), rank: "Both are fine.".into(), ..Scripted::new() };
        let (sink, stats) = run(model, best_of(3, Pick::Score), 1).await;
        let e = sink.accepted.lock().unwrap()[0].clone();
        assert_eq!(e.response.as_deref(), Some(LONG));
        assert_eq!(e.ranking.as_ref().and_then(|r| r.unreadable.as_deref()), Some("Both are fine."));
        assert!(e.answers.iter().all(|a| a.score.is_none()));
        assert_eq!(stats.best_of.unwrap().unreadable_rankings, 1);
    }

    #[tokio::test]
    async fn an_instruction_none_of_whose_answers_can_be_kept_is_rejected_with_them() {
        use crate::best_of::Pick;
        let model = Scripted { answers: vec!["Sorry.".into(), "Sorry, no.".into()], ..Scripted::new() };
        let (sink, stats) = run(model, best_of(2, Pick::Score), 1).await;
        assert!(sink.accepted.lock().unwrap().is_empty());
        let r = sink.rejected.lock().unwrap()[0].clone();
        assert_eq!(r.reason, Reason::AnswerSorry);
        assert_eq!(r.response.as_deref(), Some("Sorry."));
        assert_eq!(r.detail.as_deref(), Some("none of the 2 answers could be kept (2 answer_sorry)"));
        assert_eq!(r.answers.len(), 2);
        assert_eq!(stats.best_of.unwrap().none_kept, 1);
        assert_eq!(stats.total.requests, 3, "no ranking of nothing usable");
        // Failed calls are candidates too: counted, never kept.
        let model = Scripted { fail_answers: Some(ErrorKind::Exhausted), ..Scripted::new() };
        let (sink, _) = run(model, best_of(2, Pick::First), 1).await;
        let r = sink.rejected.lock().unwrap()[0].clone();
        assert_eq!(r.reason, Reason::RequestFailed);
        assert!(r.answers.iter().all(|a| a.response.is_none() && a.detail.as_deref().unwrap().contains("boom")));
    }

    #[tokio::test]
    async fn improved_answers_replace_the_answer_only_when_they_score_higher() {
        let rules = Rules { equality: false, ..Rules::default() };
        let s = Settings { rounds: 1, rules, improve_answers: 2, ..settings() };
        let (sink, stats) = run(Scripted::new(), s.clone(), 3).await;
        let accepted = sink.accepted.lock().unwrap().clone();
        assert_eq!(accepted.len(), 3);
        for e in &accepted {
            let improved = "An improved answer, with an example of the topic.";
            assert_eq!(e.response.as_deref(), Some(improved));
            assert_eq!(e.original_response.as_deref(), Some("A long and useful answer about the topic."));
            assert_eq!(e.improvements.len(), 2);
            let first = &e.improvements[0];
            assert!(first.kept && first.round == 1 && first.critique.as_deref() == Some("1. It lacks an example."));
            assert_eq!((first.score_before, first.score_after), (Some(3.0), Some(5.0)), "read in the order shown");
            // The second round rewrites the improved answer into itself: a
            // rewrite scores higher than the answer it would replace (here,
            // the same text) only if the judge says so, and it did.
            assert_eq!(e.improvements[1].round, 2);
        }
        let t = stats.improve.clone().unwrap();
        assert_eq!((t.rounds, t.improved_answers), (6, 3));
        assert_eq!(stats.total.requests, 3 * (2 + 2 * 3), "evolve, answer, 2 x (critique, improve, compare)");

        // Scored lower: the answer stays, nothing is replaced.
        let model = Scripted { better: false, ..Scripted::new() };
        let (sink, stats) = run(model, s.clone(), 1).await;
        let e = sink.accepted.lock().unwrap()[0].clone();
        assert_eq!(e.response.as_deref(), Some("A long and useful answer about the topic."));
        assert!(e.original_response.is_none() && e.improvements.iter().all(|r| !r.kept && r.rejected.is_none()));
        assert_eq!(stats.improve.unwrap().not_better, 2);

        // A rewrite an answer rule rejects ends its round without a
        // comparison.
        let model = Scripted { improved: "Sorry, I cannot.".into(), ..Scripted::new() };
        let (sink, stats) = run(model, s, 1).await;
        let e = sink.accepted.lock().unwrap()[0].clone();
        assert!(e.improvements.iter().all(|r| r.rejected == Some(Reason::AnswerSorry) && r.score_after.is_none()));
        assert_eq!(stats.total.requests, 2 + 2 * 2);
    }

    #[tokio::test]
    async fn texts_that_leave_the_seeds_language_are_rejected_and_counted_by_language() {
        let rules = Rules { equality: false, ..Rules::default() };
        let language = Some(crate::method::LanguagePolicy { target: None });
        let s = Settings { rounds: 1, rules, language, ..settings() };
        // A Hindi seed ("Explain how photosynthesis turns sunlight into
        // chemical energy.") answered in English; a Chinese one answered in
        // Chinese ("Photosynthesis turns light into chemical energy.").
        let seeds: Vec<Result<Seed, SeedSourceError>> = vec![
            Ok(Seed::new("hi", "समझाइए कि प्रकाश संश्लेषण सूर्य के प्रकाश को रासायनिक ऊर्जा में कैसे बदलता है।")),
            Ok(Seed::new("zh", "请解释光合作用是如何把阳光转化为化学能的。")),
        ];
        let model = Scripted {
            answer: "光合作用把光能转化为化学能，储存在葡萄糖中。".into(), ..Scripted::new()
        };
        let model = Arc::new(model);
        let stats = Arc::new(StatsRecorder::new(2));
        let engine = engine(s, model.clone(), stats.clone(), Arc::new(NoJournal));
        let sink = Collect::default();
        engine.run(seeds, &sink).await.unwrap();
        let rejected = sink.rejected.lock().unwrap().clone();
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!((rejected[0].reason, rejected[0].language.as_deref()), (Reason::LanguageChanged, Some("hi")));
        assert!(rejected[0].detail.as_deref().unwrap().contains("written in Chinese (zh"), "{:?}", rejected[0].detail);
        let accepted = sink.accepted.lock().unwrap().clone();
        assert_eq!((accepted.len(), accepted[0].language.as_deref()), (1, Some("zh")));
        // Every prompt said which language to write in.
        let calls = model.calls.lock().unwrap().clone();
        assert!(calls.iter().any(|c| c.starts_with("The instruction below is written in Hindi.")), "{calls:?}");
        let stats = stats.snapshot();
        assert_eq!((stats.languages["hi"].seeds, stats.languages["hi"].rejected["language_changed"]), (1, 1));
        assert_eq!((stats.languages["zh"].accepted, stats.languages["zh"].rounds[&1].accepted), (1, 1));
    }

    #[tokio::test]
    async fn no_answer_means_null_responses_and_fewer_calls() {
        let s = Settings { answer: false, ..settings() };
        let (sink, stats) = run(Scripted::new(), s, 2).await;
        let accepted = sink.accepted.lock().unwrap();
        assert!(accepted.iter().all(|e| e.response.is_none() && e.answer_model.is_none()));
        assert_eq!(stats.total.requests, 12);
    }

    /// A journal in memory, for tests.
    #[derive(Default)]
    struct MemoryJournal(Mutex<std::collections::HashMap<String, CallRecord>>);

    impl Journal for MemoryJournal {
        fn lookup(&self, key: &str) -> Result<Option<CallRecord>, crate::journal::JournalError> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        fn commit(&self, key: &str, record: &CallRecord) -> Result<(), crate::journal::JournalError> {
            self.0.lock().unwrap().insert(key.to_string(), record.clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_journal_replays_a_run_without_calling_the_model() {
        let journal = Arc::new(MemoryJournal::default());
        let run_once = |model: Arc<Scripted>| {
            let journal = journal.clone();
            async move {
                let as_model: Arc<dyn ChatModel> = model.clone();
                let stats = Arc::new(StatsRecorder::new(6));
                let engine = engine(settings(), as_model, stats.clone(), journal);
                let sink = Collect::default();
                engine.run(seeds(6), &sink).await.unwrap();
                let mut accepted: Vec<String> =
                    sink.accepted.lock().unwrap().iter().map(|e| serde_json::to_string(e).unwrap()).collect();
                accepted.sort();
                (accepted, model.calls.lock().unwrap().len(), stats.snapshot())
            }
        };
        let (first, calls, stats) = run_once(Arc::new(Scripted::new())).await;
        assert_eq!(calls, 54);
        assert_eq!(stats.replayed_calls, 0);
        let (second, calls, stats) = run_once(Arc::new(Scripted::new())).await;
        assert_eq!(calls, 0, "every call comes from the journal");
        assert_eq!(second, first);
        assert_eq!(stats.replayed_calls, 54);
        assert_eq!(stats.total.requests, 54);
    }

    /// A model that takes a millisecond, so that calls wait for slots.
    struct Slow(Arc<Scripted>);

    #[async_trait::async_trait]
    impl ChatModel for Slow {
        fn name(&self) -> &str {
            self.0.name()
        }
        async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, ChatError> {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            self.0.chat(request).await
        }
    }

    /// Counts the calls made when each seed's chain ends.
    struct DoneAt {
        model: Arc<Scripted>,
        done: Mutex<Vec<usize>>,
    }

    impl Sink for DoneAt {
        fn accepted(&self, _: &Evolution) -> Result<(), SinkError> {
            Ok(())
        }
        fn rejected(&self, _: &Rejection) -> Result<(), SinkError> {
            Ok(())
        }
        fn seed_answered(&self, _: &SeedAnswer) -> Result<(), SinkError> {
            Ok(())
        }
        fn seed_done(&self, _: &Seed) -> Result<(), SinkError> {
            self.done.lock().unwrap().push(self.model.calls.lock().unwrap().len());
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn chains_finish_steadily_from_the_start() {
        // 4 slots, a window of 64 chains, 9 calls a chain: were slots given
        // first come, first served, every chain would make its first calls
        // before any finished. Older chains go first: the first finishes
        // after a few chains' worth of calls, and they keep finishing.
        let scripted = Arc::new(Scripted::new());
        let model: Arc<dyn ChatModel> = Arc::new(Slow(scripted.clone()));
        let n = 200;
        let stats = Arc::new(StatsRecorder::new(n as u64));
        let engine = engine(settings(), model, stats, Arc::new(NoJournal));
        let sink = DoneAt { model: scripted.clone(), done: Mutex::new(Vec::new()) };
        engine.run(seeds(n), &sink).await.unwrap();
        let done = sink.done.lock().unwrap();
        assert_eq!(done.len(), n);
        let per_chain = scripted.calls.lock().unwrap().len() / n;
        assert!(done[0] <= 6 * per_chain, "the first chain ended after {} calls ({per_chain} a chain)", done[0]);
        // A tenth of the seeds are done once about a tenth of the calls are.
        let tenth = done[n / 10 - 1];
        assert!(tenth <= (n / 10 + 8) * per_chain, "{} calls before a tenth was done", tenth);
    }

    #[tokio::test]
    async fn retry_failed_sends_failed_calls_again_with_another_seed() {
        let journal = Arc::new(MemoryJournal::default());
        let attempt = |model: Scripted, retry_failed: bool| {
            let journal = journal.clone();
            async move {
                let model = Arc::new(model);
                let as_model: Arc<dyn ChatModel> = model.clone();
                let s = Settings { retry_failed, rounds: 1, ..settings() };
                let stats = Arc::new(StatsRecorder::new(2));
                let engine = engine(s, as_model, stats.clone(), journal);
                let sink = Collect::default();
                engine.run(seeds(2), &sink).await.unwrap();
                let calls = model.calls.lock().unwrap().len();
                let accepted = sink.accepted.lock().unwrap().len();
                let total = stats.snapshot().total;
                (calls, accepted, total.requests + total.retries)
            }
        };
        let failing = Scripted { fail_answers: Some(ErrorKind::Exhausted), ..Scripted::new() };
        assert_eq!(attempt(failing, false).await, (6, 0, 12), "each failed answer made 4 attempts");
        // A plain resume replays the failures.
        assert_eq!(attempt(Scripted::new(), false).await, (0, 0, 12));
        // --retry-failed sends only the failed answers again; the failed
        // attempts they replace stay counted: 12 + 2 requests were paid.
        assert_eq!(attempt(Scripted::new(), true).await, (2, 2, 14));
        let record = journal.lookup(&call_key("s0", 1, "answer")).unwrap().unwrap();
        assert_eq!((record.attempt, record.error, record.retries), (1, None, 4));
        assert_eq!(attempt(Scripted::new(), true).await, (0, 2, 14), "nothing failed is left, nothing paid is lost");
    }

    #[tokio::test]
    async fn a_changed_question_is_not_replayed() {
        let journal = Arc::new(MemoryJournal::default());
        let once = |answer_max_tokens: u32| {
            let journal = journal.clone();
            async move {
                let model = Arc::new(Scripted::new());
                let as_model: Arc<dyn ChatModel> = model.clone();
                let mut s = Settings { rounds: 1, ..settings() };
                s.answer_sampling.max_tokens = answer_max_tokens;
                let engine = engine(s, as_model, Arc::new(StatsRecorder::new(1)), journal);
                engine.run(seeds(1), &Collect::default()).await.unwrap();
                let calls = model.calls.lock().unwrap().len();
                calls
            }
        };
        assert_eq!(once(64).await, 3);
        assert_eq!(once(64).await, 0);
        assert_eq!(once(65).await, 1, "only the answer, whose settings changed, is asked again");
    }

    #[tokio::test]
    async fn a_cap_stops_sending_and_a_higher_cap_continues() {
        use crate::cost::{Budget, Caps, Price, Prices};
        let journal = Arc::new(MemoryJournal::default());
        let prices =
            Prices([("scripted".to_string(), Price { prompt: 1e6, completion: 0.0, cached_prompt: None })].into());
        let once = |caps: Caps| {
            let journal = journal.clone();
            let prices = prices.clone();
            async move {
                let model = Arc::new(Scripted::new());
                let as_model: Arc<dyn ChatModel> = model.clone();
                let s = Settings { concurrency: 1, ..settings() };
                let stats = Arc::new(StatsRecorder::new(4));
                let engine = engine_with(s, as_model, stats.clone(), journal, |c| {
                    c.with_costs(prices, Arc::new(Budget::new(caps)))
                });
                let result = engine.run(seeds(4), &Collect::default()).await;
                let calls = model.calls.lock().unwrap().len();
                (result, calls, stats.snapshot())
            }
        };
        let (result, calls, _) = once(Caps { max_requests: Some(10), ..Caps::default() }).await;
        assert!(matches!(result, Err(EngineError::Cap(CapReached::Requests { cap: 10 }))), "{result:?}");
        assert_eq!(calls, 10);
        // Each call costs 3 (3 prompt tokens at 1e6 per million): the cost
        // cap counts the 10 replayed calls, then allows 2 more.
        let (result, calls, stats) = once(Caps { max_cost: Some(36.0), ..Caps::default() }).await;
        assert!(matches!(result, Err(EngineError::Cap(CapReached::Cost { .. }))), "{result:?}");
        assert_eq!(calls, 2);
        assert_eq!(stats.total.cost, 36.0);
        let (result, calls, stats) = once(Caps::default()).await;
        assert!(result.is_ok());
        assert_eq!(calls, 36 - 12);
        assert_eq!(stats.seeds_done, 4);
        assert_eq!(stats.total.cost, 108.0);
    }

    #[tokio::test]
    async fn filtered_answers_are_rejected_and_cut_ones_are_marked() {
        let model = Scripted { answer_finish: FinishReason::ContentFilter, ..Scripted::new() };
        let (sink, stats) = run(model, Settings { rounds: 1, ..settings() }, 2).await;
        assert_eq!(stats.total.rejected["content_filtered"], 2);
        assert!(sink.accepted.lock().unwrap().is_empty());

        let model = Scripted { answer_finish: FinishReason::Length, ..Scripted::new() };
        let (sink, _) = run(model, Settings { rounds: 1, ..settings() }, 2).await;
        let accepted = sink.accepted.lock().unwrap();
        assert_eq!(accepted.len(), 2);
        assert!(accepted.iter().all(|e| e.answer_truncated));
        assert!(serde_json::to_string(&accepted[0]).unwrap().contains("\"answer_truncated\":true"));
    }

    #[tokio::test]
    async fn thinking_traces_are_kept_apart_and_never_judged() {
        // Each trace says "sorry": the answer rules read the answer alone.
        let model = Scripted { think: true, ..Scripted::new() };
        let (sink, stats) = run(model, Settings { rounds: 1, answer_seeds: true, ..settings() }, 2).await;
        let accepted = sink.accepted.lock().unwrap().clone();
        assert_eq!(accepted.len(), 2, "{:?}", stats.total.rejected);
        for e in accepted.iter() {
            assert!(e.instruction_reasoning.as_deref().unwrap().contains("(evolve)"));
            assert!(e.response_reasoning.as_deref().unwrap().contains("(answer)"));
            assert!(!e.instruction.contains("考え") && !e.response.as_deref().unwrap().contains("考え"));
        }
        let seeds = sink.seeds.lock().unwrap().clone();
        assert!(seeds.iter().all(|a| a.response_reasoning.as_deref().is_some_and(|r| r.contains("(answer)"))));
        assert_eq!(stats.total.reasoning_tokens, stats.total.requests, "one thinking token a call, counted apart");

        // Cut off while thinking: a truncation with no answer, not an empty
        // answer; the trace stays with the rejection.
        let model =
            Scripted { think: true, answer: String::new(), answer_finish: FinishReason::Length, ..Scripted::new() };
        let (sink, stats) = run(model, Settings { rounds: 1, ..settings() }, 2).await;
        assert_eq!(stats.total.rejected["truncated_answer"], 2);
        let rejected = sink.rejected.lock().unwrap();
        assert!(rejected.iter().all(|r| r.response_reasoning.is_some() && r.instruction_reasoning.is_some()));
    }

    #[tokio::test]
    async fn an_evolution_that_copies_a_benchmark_item_is_rejected_before_its_judge_is_paid() {
        let long = "Explain how a hash map resolves collisions with open addressing and linear probing in detail";
        let mut benchmarks = evol_dedup::Benchmarks::new(evol_dedup::contamination::DEFAULT_NGRAM);
        benchmarks.add("bench.jsonl#42".into(), long);
        let model = Arc::new(Scripted::new());
        let stats = Arc::new(StatsRecorder::new(2));
        let engine = engine(Settings { rounds: 1, ..settings() }, model.clone(), stats.clone(), Arc::new(NoJournal))
            .with_benchmarks(Arc::new(benchmarks));
        let seeds: Vec<Result<Seed, SeedSourceError>> =
            vec![Ok(Seed::new("copy", format!("{long}?"))), Ok(Seed::new("fresh", "Question 1?"))];
        let sink = Collect::default();
        engine.run(seeds, &sink).await.unwrap();
        let rejected = sink.rejected.lock().unwrap().clone();
        let [r] = rejected.as_slice() else { panic!("one rejection: {rejected:?}") };
        assert_eq!((r.reason, r.lineage.seed_id.as_str()), (Reason::Contaminated, "copy"));
        assert!(r.detail.as_deref().unwrap().starts_with("bench.jsonl#42: \"explain how a hash map"), "{r:?}");
        assert_eq!(sink.accepted.lock().unwrap().len(), 1);
        // The copy cost its evolving call alone: no judge, no answer.
        assert_eq!(stats.snapshot().total.requests, 1 + 3);
    }

    /// A set of one verifiable operation drawing from `ids`.
    fn verifiable(ids: &[&str]) -> Settings {
        let list = ids.iter().map(|id| format!("\"{id}\"")).collect::<Vec<_>>().join(", ");
        let set = crate::ops::OperatorSet::parse(&format!(
            "name = \"v\"\n[[operator]]\nname = \"add\"\nkind = \"verifiable\"\ntemplate = \"t\"\nconstraints = [{list}]\n[templates]\nt = \"Add it.\\n\\n#Requirement#:\\n{{{{ constraint }}}}\\n\\n#Instruction#:\\n{{{{ instruction }}}}\\n\\n#New Instruction#:\\n\"\n"
        ))
        .unwrap();
        let rules = Rules { equality: false, ..Rules::default() };
        Settings { rules, ops: set.operations.clone(), set: Some(set), ..settings() }
    }

    #[tokio::test]
    async fn verifiable_rounds_add_constraints_that_every_answer_is_checked_against() {
        let model = Scripted { answer: "<<Tides>>\nThe moon pulls the sea every day.".into(), ..Scripted::new() };
        let (sink, stats) = run(model, verifiable(&["punctuation:no_comma", "detectable_format:title"]), 2).await;
        let accepted = sink.accepted.into_inner().unwrap();
        assert_eq!(accepted.len(), 4, "rounds 1 and 2 of each seed add one constraint each");
        for e in &accepted {
            assert_eq!(e.constraints.len(), e.lineage.round as usize, "{e:?}");
            for c in &e.constraints {
                assert!(e.instruction.contains(&c.describe()), "the rewrite states {c:?}: {}", e.instruction);
            }
            assert!(evol_constraints::check_all(&e.constraints, e.response.as_deref().unwrap()).is_ok());
        }
        let rejected = sink.rejected.into_inner().unwrap();
        assert_eq!(rejected.len(), 2, "round 3 finds no kind left");
        for r in &rejected {
            assert_eq!(r.reason, Reason::NoConstraintFits);
            assert_eq!(r.constraints.len(), 2);
            let detail = r.detail.as_deref().unwrap();
            assert!(
                detail.contains("no constraint of `add` fits") && detail.contains("punctuation:no_comma"),
                "{detail}"
            );
        }
        assert_eq!(stats.total.rejected.get("no_constraint_fits"), Some(&2));
    }

    #[tokio::test]
    async fn an_answer_that_breaks_a_constraint_is_rejected_naming_it() {
        let model = Scripted { answer: "The moon, and the sun, pull the sea.".into(), ..Scripted::new() };
        let (sink, _) = run(model, Settings { rounds: 1, ..verifiable(&["punctuation:no_comma"]) }, 1).await;
        let r = &sink.rejected.into_inner().unwrap()[0];
        assert_eq!(r.reason, Reason::ConstraintFailed);
        assert_eq!(r.detail.as_deref(), Some("punctuation:no_comma: a comma (`,`)"));
        assert_eq!(r.response.as_deref(), Some("The moon, and the sun, pull the sea."));
        assert_eq!(r.constraints, vec![Constraint::NoComma {}]);
    }

    #[tokio::test]
    async fn of_k_answers_only_one_that_keeps_the_constraints_is_kept() {
        use crate::best_of::Pick;
        let answers = vec![
            "First, a comma.".to_string(),
            "Then none at all.".to_string(),
            "And here is another one, with a comma.".to_string(),
        ];
        let model = Scripted { answers, ..Scripted::new() };
        let settings = Settings {
            best_of: Some(crate::method::BestOf { answers: 3, pick: Pick::First }),
            rounds: 1,
            ..verifiable(&["punctuation:no_comma"])
        };
        let (sink, _) = run(model, settings, 1).await;
        let e = &sink.accepted.into_inner().unwrap()[0];
        assert_eq!(e.response.as_deref(), Some("Then none at all."));
        let failed: Vec<_> = e.answers.iter().filter(|a| a.rejected == Some(Reason::ConstraintFailed)).collect();
        assert_eq!(failed.len(), 2, "{:?}", e.answers);
        assert!(failed.iter().all(|a| a.detail.as_deref().unwrap().starts_with("punctuation:no_comma: ")));
    }

    #[tokio::test]
    async fn a_rewrite_without_the_named_text_lost_its_constraint() {
        let model = Scripted { drop_requirement: true, ..Scripted::new() };
        let (sink, _) = run(model, Settings { rounds: 1, ..verifiable(&["startend:end_checker"]) }, 1).await;
        let r = &sink.rejected.into_inner().unwrap()[0];
        assert_eq!(r.reason, Reason::ConstraintLost);
        let detail = r.detail.as_deref().unwrap();
        assert!(detail.starts_with("startend:end_checker: the instruction no longer states \""), "{detail}");
        assert!(r.response.is_none(), "no answer is paid for");
    }

    #[test]
    fn a_calls_remaining_work_counts_its_step_and_the_rounds_after() {
        // Three rounds of evolve, judge, answer; seeds answered first.
        let s = Settings { rounds: 3, answer_seeds: true, ..settings() };
        let engine = engine(s, Arc::new(Scripted::new()), Arc::new(StatsRecorder::new(1)), Arc::new(NoJournal));
        let step = engine.plans[0].clone();
        assert_eq!(step.len(), 3);
        let [evolve, judge, answer] = [step[0], step[1], step[2]];
        assert_eq!(engine.remaining(1, evolve), 9, "this step's three calls and two more steps");
        assert_eq!(engine.remaining(1, judge), 8);
        assert_eq!(engine.remaining(3, answer), 1, "the chain's last call");
        let seed_answer = engine.method.seed_calls()[0];
        assert_eq!(engine.remaining(0, seed_answer), 10, "before the first step");
    }
}
