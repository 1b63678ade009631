//! The evolution engine: one chain of rounds per seed, all chains at once.
//!
//! Each seed runs its own chain of `rounds` steps and starts a step as soon
//! as its own previous step is done; there is no barrier between rounds
//! across seeds, so a slow seed never holds up a fast one. A step is:
//! draw an operation, evolve, clean, check for copied prompt words, ask the
//! judge for information gain, answer, check the answer. A failed step
//! leaves the parent in place for the next round, as in the method.
//!
//! All model calls of the run share one concurrency limit. Failures of one
//! call are recorded against their item; only errors that doom every later
//! call (bad credentials, unknown model, no quota) or a failing sink stop
//! the run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use evol_llm::{ChatError, ChatModel, ChatRequest, ChatResponse, FinishReason, Message, Sampling, Usage};
use futures::StreamExt;
use rand::{Rng, RngCore};
use tokio::sync::Semaphore;

use crate::clean::clean_reply;
use crate::cost::{Budget, CapReached, Prices};
use crate::eliminate::{self, parse_verdict, Reason, Rules, Verdict};
use crate::journal::{call_key, CallRecord, Journal};
use crate::ops::Operation;
use crate::record::{evolution_id, Evolution, Rejection, Seed, SeedAnswer};
use crate::rng::{keyed_rng, step_rng};
use crate::stats::Call;
use crate::stats::{Slice, StatsRecorder};
use crate::templates::{TemplateError, Templates};

/// What a run does, independent of where its models live.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    pub rounds: u32,
    /// The enabled operations, drawn uniformly.
    pub ops: Vec<Operation>,
    /// The run seed every random choice derives from.
    pub run_seed: u64,
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
    /// The most model calls in flight at once.
    pub concurrency: usize,
    /// Send again the calls the journal holds as failed or cut short.
    pub retry_failed: bool,
}

/// The models a run talks to (they may all be the same one).
#[derive(Clone)]
pub struct Models {
    pub evolver: Arc<dyn ChatModel>,
    pub judge: Arc<dyn ChatModel>,
    pub answerer: Arc<dyn ChatModel>,
}

/// An error from a [`Sink`] (for instance a full disk).
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where records go as soon as they are decided.
pub trait Sink: Send + Sync {
    fn accepted(&self, evolution: &Evolution) -> Result<(), SinkError>;
    fn rejected(&self, rejection: &Rejection) -> Result<(), SinkError>;
    fn seed_answered(&self, answer: &SeedAnswer) -> Result<(), SinkError>;
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
        stage: Stage,
        model: String,
        #[source]
        source: ChatError,
    },
    #[error("could not write a record: {0}")]
    Sink(#[source] SinkError),
    #[error("the journal failed: {0}")]
    Journal(#[source] crate::journal::JournalError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("the run was stopped")]
    Stopped,
    #[error(transparent)]
    Cap(#[from] CapReached),
}

/// Which kind of call of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Evolve,
    Judge,
    Answer,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Evolve => "evolve",
            Stage::Judge => "judge",
            Stage::Answer => "answer",
        })
    }
}

/// The slice name under which seeds' own answers are counted.
pub const SEED_ANSWER: &str = "seed_answer";

/// How many chains run at once, per unit of concurrency. Chains spend most
/// of their time waiting for a call slot, so several per slot keep every
/// slot busy until the very end while bounding memory for huge seed files.
const CHAINS_PER_SLOT: usize = 16;

/// Runs Evol-Instruct over seeds.
pub struct Engine {
    settings: Settings,
    models: Models,
    templates: Templates,
    stats: Arc<StatsRecorder>,
    journal: Arc<dyn Journal>,
    prices: Prices,
    budget: Arc<Budget>,
    limit: Semaphore,
    stopping: AtomicBool,
}

/// The instruction a chain currently evolves.
struct Current {
    id: String,
    instruction: String,
}

impl Engine {
    pub fn new(
        settings: Settings,
        models: Models,
        templates: Templates,
        stats: Arc<StatsRecorder>,
        journal: Arc<dyn Journal>,
    ) -> Result<Engine, EngineError> {
        if settings.ops.is_empty() {
            return Err(EngineError::Settings("no operation is enabled".into()));
        }
        if settings.concurrency == 0 {
            return Err(EngineError::Settings("concurrency must be at least 1".into()));
        }
        let limit = Semaphore::new(settings.concurrency);
        Ok(Engine {
            settings,
            models,
            templates,
            stats,
            journal,
            prices: Prices::default(),
            budget: Arc::new(Budget::default()),
            limit,
            stopping: AtomicBool::new(false),
        })
    }

    /// Prices calls with `prices` and stops sending when `budget` reaches a
    /// cap (the run then ends with [`EngineError::Cap`]).
    pub fn with_costs(mut self, prices: Prices, budget: Arc<Budget>) -> Engine {
        self.prices = prices;
        self.budget = budget;
        self
    }

    /// Evolves every seed through every round, sending records to `sink` as
    /// they are decided. Returns when all chains are done or the run fails.
    ///
    /// Seeds are taken from the iterator only as chains start (a bounded
    /// window of them), so a seed source of any size runs in flat memory.
    ///
    /// After [`Engine::stop`], no new call is sent: calls in flight finish
    /// and are committed, then `run` returns [`EngineError::Stopped`]. When a
    /// budget cap is reached the same happens and `run` returns
    /// [`EngineError::Cap`].
    pub async fn run(&self, seeds: impl IntoIterator<Item = Seed>, sink: &dyn Sink) -> Result<(), EngineError> {
        // Past a few thousand slots (batch APIs), more chains than slots
        // only cost memory.
        let window = self.settings.concurrency.saturating_mul(CHAINS_PER_SLOT).min(self.settings.concurrency + 16_384);
        let mut chains = futures::stream::iter(seeds)
            .take_while(|_| std::future::ready(!self.stopping.load(Ordering::SeqCst)))
            .map(|seed| self.chain(seed, sink))
            .buffer_unordered(window);
        let mut stopped = false;
        let mut cap = None;
        while let Some(result) = chains.next().await {
            match result {
                Err(EngineError::Stopped) => stopped = true,
                Err(EngineError::Cap(reached)) => cap = Some(reached),
                other => other?,
            }
        }
        if let Some(reached) = cap {
            return Err(EngineError::Cap(reached));
        }
        if stopped || self.stopping.load(Ordering::SeqCst) {
            return Err(EngineError::Stopped);
        }
        Ok(())
    }

    /// Asks a running [`Engine::run`] to send no new call and return once
    /// the calls in flight are done.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    async fn chain(&self, seed: Seed, sink: &dyn Sink) -> Result<(), EngineError> {
        if self.settings.answer_seeds {
            self.answer_seed(&seed, sink).await?;
        }
        let mut current = Current { id: seed.id.clone(), instruction: seed.instruction.clone() };
        for round in 1..=self.settings.rounds {
            match self.step(&seed.id, &current, round).await? {
                Ok(evolution) => {
                    sink.accepted(&evolution).map_err(EngineError::Sink)?;
                    current = Current { id: evolution.id, instruction: evolution.instruction };
                }
                Err(rejection) => sink.rejected(&rejection).map_err(EngineError::Sink)?,
            }
        }
        sink.seed_done(&seed).map_err(EngineError::Sink)?;
        self.stats.seed_done();
        Ok(())
    }

    async fn answer_seed(&self, seed: &Seed, sink: &dyn Sink) -> Result<(), EngineError> {
        let mut rng = keyed_rng(self.settings.run_seed, &[b"seed-answer", seed.id.as_bytes()]);
        let sampling = self.sampling(self.settings.answer_sampling, &mut rng);
        let slice = Slice { round: 0, operation: SEED_ANSWER };
        let model = &self.models.answerer;
        let (response, error, usage) =
            match self.call(model, &seed.id, Stage::Answer, slice, &seed.instruction, sampling).await? {
                Ok(reply) => (Some(reply.text), None, reply.usage),
                Err(e) => (None, Some(e.to_string()), Usage::default()),
            };
        let answer = SeedAnswer {
            id: seed.id.clone(),
            instruction: seed.instruction.clone(),
            response,
            error,
            model: model.name().to_string(),
            usage,
        };
        sink.seed_answered(&answer).map_err(EngineError::Sink)
    }

    /// One evolution attempt. The outer error stops the run; the inner
    /// result is the item's fate.
    async fn step(
        &self,
        seed_id: &str,
        parent: &Current,
        round: u32,
    ) -> Result<Result<Evolution, Rejection>, EngineError> {
        let s = &self.settings;
        let mut rng = step_rng(s.run_seed, seed_id, round, 0);
        let operation = s.ops[rng.random_range(0..s.ops.len())];
        let prompt = self.templates.evolve_prompt(operation, &parent.instruction, &mut rng)?;
        let slice = Slice { round, operation: operation.name() };
        let mut usage = Usage::default();

        let reject = |reason: Reason,
                      instruction: Option<String>,
                      response: Option<String>,
                      detail: Option<String>,
                      usage: Usage| {
            self.stats.outcome(slice, Some(reason));
            Ok(Err(Rejection {
                id: evolution_id(seed_id, round),
                seed_id: seed_id.to_string(),
                parent_id: parent.id.clone(),
                round,
                operation,
                data_format: prompt.data_format.clone(),
                instruction,
                response,
                reason,
                detail,
                model: self.models.evolver.name().to_string(),
                usage,
            }))
        };

        // Evolve.
        let sampling = self.sampling(s.evolve_sampling, &mut rng);
        let reply = match self.call(&self.models.evolver, seed_id, Stage::Evolve, slice, &prompt.text, sampling).await?
        {
            Ok(reply) => reply,
            Err(e) => return reject(Reason::RequestFailed, None, None, Some(e), usage),
        };
        usage += reply.usage;
        let instruction = clean_reply(&reply.text);
        if reply.finish_reason == FinishReason::ContentFilter {
            return reject(Reason::ContentFiltered, Some(instruction), None, None, usage);
        }
        if reply.finish_reason == FinishReason::Length {
            return reject(Reason::TruncatedEvolution, Some(instruction), None, None, usage);
        }
        if instruction.is_empty() {
            return reject(Reason::EmptyEvolution, Some(instruction), None, None, usage);
        }
        if s.rules.copied_prompt && eliminate::copies_prompt_words(&instruction) {
            return reject(Reason::CopiedPromptWords, Some(instruction), None, None, usage);
        }

        // Judge the information gain.
        if s.rules.equality {
            let question = self.templates.equality_prompt(&parent.instruction, &instruction)?;
            let sampling = self.sampling(s.judge_sampling, &mut rng);
            match self.call(&self.models.judge, seed_id, Stage::Judge, slice, &question, sampling).await? {
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

        // Answer and check the answer.
        let mut response = None;
        let mut answer_truncated = false;
        if s.answer {
            let sampling = self.sampling(s.answer_sampling, &mut rng);
            match self.call(&self.models.answerer, seed_id, Stage::Answer, slice, &instruction, sampling).await? {
                Ok(answer) => {
                    usage += answer.usage;
                    if answer.finish_reason == FinishReason::ContentFilter {
                        return reject(Reason::ContentFiltered, Some(instruction), Some(answer.text), None, usage);
                    }
                    answer_truncated = answer.finish_reason == FinishReason::Length;
                    if let Some(reason) = eliminate::check_answer(&s.rules, &answer.text) {
                        return reject(reason, Some(instruction), Some(answer.text), None, usage);
                    }
                    response = Some(answer.text);
                }
                Err(e) => return reject(Reason::RequestFailed, Some(instruction), None, Some(e), usage),
            }
        }

        self.stats.outcome(slice, None);
        Ok(Ok(Evolution {
            id: evolution_id(seed_id, round),
            seed_id: seed_id.to_string(),
            parent_id: parent.id.clone(),
            round,
            operation,
            data_format: prompt.data_format,
            instruction,
            response,
            model: self.models.evolver.name().to_string(),
            answer_model: s.answer.then(|| self.models.answerer.name().to_string()),
            answer_truncated,
            usage,
        }))
    }

    /// Draws the request seed (always, so that turning request seeds on or
    /// off does not shift any other choice).
    fn sampling(&self, base: Sampling, rng: &mut impl RngCore) -> Sampling {
        let seed = rng.next_u64() >> 1; // some servers take only non-negative i64
        base.with_seed(self.settings.request_seeds.then_some(seed))
    }

    /// One model call under the shared limit. A fatal error stops the run;
    /// an item error comes back as its message.
    /// Looks the call up in the journal first: a committed outcome is
    /// replayed, not sent again; a new outcome is committed before it is
    /// returned.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        model: &Arc<dyn ChatModel>,
        seed_id: &str,
        stage: Stage,
        slice: Slice<'_>,
        prompt: &str,
        sampling: Sampling,
    ) -> Result<Result<ChatResponse, String>, EngineError> {
        let key = call_key(seed_id, slice.round, &stage.to_string());
        let asked = question_digest(model.name(), prompt, sampling);
        let mut attempt = 0;
        if let Some(record) = self.journal.lookup(&key).map_err(EngineError::Journal)? {
            // An outcome for another question (a parent that changed when an
            // earlier failed call was retried) is not replayed.
            if record.prompt == asked {
                if !(self.settings.retry_failed && record.is_failure()) {
                    return Ok(self.replay(model, slice, record));
                }
                attempt = record.attempt + 1;
            }
        }
        if self.stopping.load(Ordering::SeqCst) {
            return Err(EngineError::Stopped);
        }
        let _permit = self.limit.acquire().await.expect("the limit is never closed");
        if self.stopping.load(Ordering::SeqCst) {
            return Err(EngineError::Stopped);
        }
        if let Err(reached) = self.budget.reserve() {
            self.stop();
            return Err(EngineError::Cap(reached));
        }
        // A retried call gets another request seed, or a deterministic
        // server would give the same failed reply again.
        let sampling = match (attempt, sampling.seed) {
            (0, _) | (_, None) => sampling,
            (n, Some(seed)) => sampling.with_seed(Some(keyed_rng(seed, &[b"retry", &n.to_le_bytes()]).next_u64() >> 1)),
        };
        let started = Instant::now();
        let request = ChatRequest::new(vec![Message::user(prompt)], sampling);
        let result = model.chat(request).await;
        let (outcome, record) = match result {
            Ok(reply) => {
                let cost = self.prices.cost(model.name(), reply.usage);
                self.budget.spend(reply.usage, cost);
                let call = Call { usage: reply.usage, cost, retries: reply.retries, failed: false };
                self.stats.call(slice, started, call);
                let record = CallRecord {
                    text: Some(reply.text.clone()),
                    finish_reason: Some(reply.finish_reason.clone()),
                    usage: reply.usage,
                    retries: reply.retries,
                    error: None,
                    prompt: asked,
                    attempt,
                };
                (Ok(reply), record)
            }
            Err(e) => {
                self.stats.call(slice, started, Call { retries: e.retries, failed: true, ..Call::default() });
                if e.kind.is_fatal() {
                    return Err(EngineError::Model { stage, model: model.name().to_string(), source: e });
                }
                let message = format!("{stage} call failed: {e}");
                let record = CallRecord {
                    text: None,
                    finish_reason: None,
                    usage: Usage::default(),
                    retries: e.retries,
                    error: Some(message.clone()),
                    prompt: asked,
                    attempt,
                };
                (Err(message), record)
            }
        };
        self.journal.commit(&key, &record).map_err(EngineError::Journal)?;
        Ok(outcome)
    }

    /// A committed outcome, counted as the call it was.
    fn replay(&self, model: &Arc<dyn ChatModel>, slice: Slice<'_>, record: CallRecord) -> Result<ChatResponse, String> {
        let cost = self.prices.cost(model.name(), record.usage);
        self.budget.replayed(record.usage, cost);
        let call = Call { usage: record.usage, cost, retries: record.retries, failed: record.error.is_some() };
        self.stats.replayed(slice, call);
        match record.error {
            Some(message) => Err(message),
            None => Ok(ChatResponse {
                text: record.text.unwrap_or_default(),
                reasoning: None,
                finish_reason: record.finish_reason.unwrap_or(FinishReason::Unknown),
                usage: record.usage,
                retries: record.retries,
                signals: Default::default(),
            }),
        }
    }
}

/// The digest of a question: the model, the prompt and the sampling
/// settings other than the request seed (which follows from the call key).
fn question_digest(model: &str, prompt: &str, sampling: Sampling) -> String {
    let sampling = serde_json::to_string(&sampling.with_seed(None)).expect("serializable");
    let mut hasher = blake3::Hasher::new();
    for part in [model, &sampling, prompt] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_hex()[..32].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::NoJournal;
    use evol_llm::ErrorKind;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// A scripted model: replies by the kind of prompt.
    struct Scripted {
        equal: bool,
        answer: String,
        answer_finish: FinishReason,
        fail_answers: Option<ErrorKind>,
        calls: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new() -> Scripted {
            Scripted {
                equal: false,
                answer: "A long and useful answer about the topic.".into(),
                answer_finish: FinishReason::Stop,
                fail_answers: None,
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
            let text = if prompt.contains("#Rewritten Prompt#:") || prompt.contains("#Created Prompt#:") {
                let given = prompt.split("Prompt#:\n").nth(1).unwrap().split("\n\n#").next().unwrap();
                format!("#Rewritten Prompt#: \"{given} More.\"")
            } else if prompt.contains("\"Not Equal\"") {
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
                self.answer.clone()
            };
            Ok(ChatResponse {
                text,
                reasoning: None,
                finish_reason,
                usage: Usage { prompt_tokens: 3, completion_tokens: 2, cached_tokens: 0 },
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
    }

    fn sampling() -> Sampling {
        Sampling { temperature: 1.0, top_p: 0.9, max_tokens: 64, seed: None }
    }

    fn settings() -> Settings {
        Settings {
            rounds: 3,
            ops: Operation::ALL.to_vec(),
            run_seed: 42,
            rules: Rules::default(),
            answer: true,
            answer_seeds: false,
            evolve_sampling: sampling(),
            answer_sampling: sampling(),
            judge_sampling: Sampling { temperature: 0.0, ..sampling() },
            request_seeds: true,
            concurrency: 4,
            retry_failed: false,
        }
    }

    fn seeds(n: usize) -> Vec<Seed> {
        (0..n).map(|i| Seed { id: format!("s{i}"), instruction: format!("Question {i}?") }).collect()
    }

    async fn run(model: Scripted, settings: Settings, n: usize) -> (Collect, crate::stats::RunStats) {
        let model: Arc<dyn ChatModel> = Arc::new(model);
        let models = Models { evolver: model.clone(), judge: model.clone(), answerer: model };
        let stats = Arc::new(StatsRecorder::new(n as u64));
        let engine = Engine::new(settings, models, Templates::builtin(), stats.clone(), Arc::new(NoJournal)).unwrap();
        let sink = Collect::default();
        engine.run(seeds(n), &sink).await.unwrap();
        (sink, stats.snapshot())
    }

    #[tokio::test]
    async fn chains_evolve_from_their_last_accepted_instruction() {
        let (sink, stats) = run(Scripted::new(), settings(), 5).await;
        let accepted = sink.accepted.lock().unwrap();
        assert_eq!(accepted.len(), 15);
        let by_id: BTreeMap<_, _> = accepted.iter().map(|e| (e.id.clone(), e)).collect();
        let third = by_id["s2.r3"];
        assert_eq!(third.parent_id, "s2.r2");
        assert_eq!(by_id["s2.r1"].parent_id, "s2");
        assert_eq!(third.instruction, "Question 2? More. More. More.");
        assert_eq!(third.response.as_deref(), Some("A long and useful answer about the topic."));
        assert_eq!(third.usage.prompt_tokens, 9);
        assert_eq!(stats.total.requests, 45);
        assert_eq!(stats.total.accepted, 15);
        assert_eq!(stats.seeds_done, 5);
    }

    #[tokio::test]
    async fn equal_verdicts_keep_the_parent() {
        let model = Scripted { equal: true, ..Scripted::new() };
        let (sink, stats) = run(model, settings(), 2).await;
        assert!(sink.accepted.lock().unwrap().is_empty());
        let rejected = sink.rejected.lock().unwrap();
        assert_eq!(rejected.len(), 6);
        assert!(rejected.iter().all(|r| r.reason == Reason::NoInformationGain && r.parent_id == r.seed_id));
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
        s.rules = Rules { equality: false, sorry: false, stop_words: false, copied_prompt: false };
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
        let models = Models { evolver: model.clone(), judge: model.clone(), answerer: model };
        let engine =
            Engine::new(settings(), models, Templates::builtin(), Arc::new(StatsRecorder::new(3)), Arc::new(NoJournal))
                .unwrap();
        let err = engine.run(seeds(3), &Collect::default()).await.unwrap_err();
        assert!(err.to_string().contains("answer call to model `scripted` failed"), "{err}");
    }

    #[tokio::test]
    async fn choices_do_not_depend_on_concurrency() {
        let ops = |concurrency| async move {
            let s = Settings { concurrency, ..settings() };
            let (sink, _) = run(Scripted::new(), s, 20).await;
            let mut v: Vec<(String, Operation, Option<String>)> = sink
                .accepted
                .lock()
                .unwrap()
                .iter()
                .map(|e| (e.id.clone(), e.operation, e.data_format.clone()))
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
        let mut counts: BTreeMap<Operation, usize> = BTreeMap::new();
        for e in sink.accepted.lock().unwrap().iter() {
            *counts.entry(e.operation).or_default() += 1;
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
                let models = Models { evolver: as_model.clone(), judge: as_model.clone(), answerer: as_model };
                let stats = Arc::new(StatsRecorder::new(6));
                let engine = Engine::new(settings(), models, Templates::builtin(), stats.clone(), journal).unwrap();
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

    #[tokio::test]
    async fn retry_failed_sends_failed_calls_again_with_another_seed() {
        let journal = Arc::new(MemoryJournal::default());
        let attempt = |model: Scripted, retry_failed: bool| {
            let journal = journal.clone();
            async move {
                let model = Arc::new(model);
                let as_model: Arc<dyn ChatModel> = model.clone();
                let models = Models { evolver: as_model.clone(), judge: as_model.clone(), answerer: as_model };
                let s = Settings { retry_failed, rounds: 1, ..settings() };
                let engine =
                    Engine::new(s, models, Templates::builtin(), Arc::new(StatsRecorder::new(2)), journal).unwrap();
                let sink = Collect::default();
                engine.run(seeds(2), &sink).await.unwrap();
                let calls = model.calls.lock().unwrap().len();
                let accepted = sink.accepted.lock().unwrap().len();
                (calls, accepted)
            }
        };
        let failing = Scripted { fail_answers: Some(ErrorKind::Exhausted), ..Scripted::new() };
        assert_eq!(attempt(failing, false).await, (6, 0));
        // A plain resume replays the failures.
        assert_eq!(attempt(Scripted::new(), false).await, (0, 0));
        // --retry-failed sends only the failed answers again.
        assert_eq!(attempt(Scripted::new(), true).await, (2, 2));
        let record = journal.lookup(&call_key("s0", 1, "answer")).unwrap().unwrap();
        assert_eq!((record.attempt, record.error), (1, None));
        assert_eq!(attempt(Scripted::new(), true).await, (0, 2), "nothing failed is left");
    }

    #[tokio::test]
    async fn a_changed_question_is_not_replayed() {
        let journal = Arc::new(MemoryJournal::default());
        let once = |answer_max_tokens: u32| {
            let journal = journal.clone();
            async move {
                let model = Arc::new(Scripted::new());
                let as_model: Arc<dyn ChatModel> = model.clone();
                let models = Models { evolver: as_model.clone(), judge: as_model.clone(), answerer: as_model };
                let mut s = Settings { rounds: 1, ..settings() };
                s.answer_sampling.max_tokens = answer_max_tokens;
                let engine =
                    Engine::new(s, models, Templates::builtin(), Arc::new(StatsRecorder::new(1)), journal).unwrap();
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
        use crate::cost::{Caps, Price};
        let journal = Arc::new(MemoryJournal::default());
        let prices =
            Prices([("scripted".to_string(), Price { prompt: 1e6, completion: 0.0, cached_prompt: None })].into());
        let once = |caps: Caps| {
            let journal = journal.clone();
            let prices = prices.clone();
            async move {
                let model = Arc::new(Scripted::new());
                let as_model: Arc<dyn ChatModel> = model.clone();
                let models = Models { evolver: as_model.clone(), judge: as_model.clone(), answerer: as_model };
                let s = Settings { concurrency: 1, ..settings() };
                let stats = Arc::new(StatsRecorder::new(4));
                let engine = Engine::new(s, models, Templates::builtin(), stats.clone(), journal)
                    .unwrap()
                    .with_costs(prices, Arc::new(Budget::new(caps)));
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
}
