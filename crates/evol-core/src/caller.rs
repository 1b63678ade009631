//! The journaled caller: the one door through which every command calls a
//! model.
//!
//! [`Caller::call`] looks the call up in the [`Journal`] by its key (item,
//! round, stage) and replays a committed outcome when the stored question
//! digest (model, messages, sampling without the request seed) matches;
//! otherwise it reserves the call in the [`Budget`] (a reached cap stops
//! the caller), takes a concurrency permit, sends the request, prices the
//! usage, counts it in the statistics and commits the outcome before
//! returning it. Item failures come back as the inner `Err` (a message to
//! record); what dooms every later call (a fatal model error, a failing
//! journal, a cap, a stop) is a [`CallError`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use evol_digest::Digest;
use evol_llm::{
    ChatError, ChatModel, ChatRequest, ChatResponse, EmbeddingModel, ErrorKind, FinishReason, Message, Role as Speaker,
    Sampling, Usage,
};
use rand::RngCore;

use crate::cost::{Budget, CapReached, Prices};
use crate::journal::{call_key, CallRecord, Journal, JournalError};
use crate::rng::keyed_rng;
use crate::slots::Slots;
use crate::stats::{Call, Slice, StatsRecorder};

/// What stops a caller: nothing it sends after this can succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A failure that dooms every later call (bad credentials, unknown
    /// model, no quota, a dead backend). Nothing is committed for it.
    #[error("{stage} call to model `{model}` failed: {source}")]
    Model {
        stage: String,
        model: String,
        #[source]
        source: Box<ChatError>,
    },
    #[error("the journal failed: {0}")]
    Journal(#[source] JournalError),
    /// [`Caller::stop`] was called: nothing new is sent.
    #[error("the run was stopped")]
    Stopped,
    #[error(transparent)]
    Cap(#[from] CapReached),
}

/// How a caller paces and replays calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerSettings {
    /// The most calls in flight at once.
    pub concurrency: usize,
    /// Send again the calls the journal holds as failed or cut short.
    pub retry_failed: bool,
}

/// Which call this is, for the journal: an item (a seed), a round (0 for
/// work on the item itself) and a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallKey<'a> {
    pub item: &'a str,
    pub round: u32,
    pub stage: &'a str,
}

/// What a call asks: one user message (borrowed, the common case) or a
/// whole conversation. The request itself is built only once the call may
/// be sent, so the many calls waiting for a permit hold no copy of their
/// prompt.
#[derive(Debug, Clone)]
pub enum Prompt<'a> {
    User(&'a str),
    Messages(Vec<Message>),
    /// A text continued as it is, not a chat (Magpie).
    Completion(evol_llm::Completion),
}

/// One call to make.
pub struct CallSpec<'a> {
    pub model: &'a Arc<dyn ChatModel>,
    pub key: CallKey<'a>,
    /// Where the call is counted in the statistics.
    pub slice: Slice<'a>,
    pub prompt: Prompt<'a>,
    pub sampling: Sampling,
    /// What the call is for, sent as the request's tag (usually the stage).
    pub tag: Option<&'static str>,
    /// Which waiting call gets the next free slot: the lowest priority
    /// first, calls of one priority in arrival order. `evol run` gives
    /// each chain the order it started in, so older chains finish first.
    pub priority: u64,
    /// The calls its chain has left, this one included, at most: once the
    /// caller is told [`Caller::critical_path`], the call with the most
    /// goes first.
    pub remaining: u32,
}

impl<'a> CallSpec<'a> {
    /// A call of `model` journaled under `key`, asking `prompt` with
    /// `sampling`; counted under the key's round and stage, untagged, at
    /// the first priority until told otherwise.
    pub fn new(model: &'a Arc<dyn ChatModel>, key: CallKey<'a>, prompt: Prompt<'a>, sampling: Sampling) -> Self {
        let slice = Slice { round: key.round, operation: key.stage };
        CallSpec { model, key, slice, prompt, sampling, tag: None, priority: 0, remaining: 0 }
    }

    /// Counts the call under `slice` in the statistics.
    pub fn counted_as(self, slice: Slice<'a>) -> Self {
        CallSpec { slice, ..self }
    }

    /// Sends `tag` as the request's tag.
    /// Keys the call under another stage name (`answer#2`).
    pub fn keyed(self, stage: &'a str) -> Self {
        CallSpec { key: CallKey { stage, ..self.key }, ..self }
    }

    pub fn tagged(self, tag: &'static str) -> Self {
        CallSpec { tag: Some(tag), ..self }
    }

    /// Gives the call its place among waiting calls (lowest first).
    pub fn priority(self, priority: u64) -> Self {
        CallSpec { priority, ..self }
    }

    /// Says how many calls its chain has left, this one included.
    pub fn remaining(self, remaining: u32) -> Self {
        CallSpec { remaining, ..self }
    }
}

/// The journaled, budgeted, rate-limited caller shared by a command.
pub struct Caller {
    settings: CallerSettings,
    journal: Arc<dyn Journal>,
    stats: Arc<StatsRecorder>,
    prices: Prices,
    budget: Arc<Budget>,
    limit: Slots,
    stopping: AtomicBool,
}

/// A caller that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("concurrency must be at least 1")]
pub struct NoConcurrency;

impl Caller {
    pub fn new(
        settings: CallerSettings,
        journal: Arc<dyn Journal>,
        stats: Arc<StatsRecorder>,
    ) -> Result<Caller, NoConcurrency> {
        if settings.concurrency == 0 {
            return Err(NoConcurrency);
        }
        Ok(Caller {
            settings,
            journal,
            stats,
            prices: Prices::default(),
            budget: Arc::new(Budget::default()),
            limit: Slots::new(settings.concurrency),
            stopping: AtomicBool::new(false),
        })
    }

    /// Prices calls with `prices` and stops sending when `budget` reaches a
    /// cap.
    pub fn with_costs(mut self, prices: Prices, budget: Arc<Budget>) -> Caller {
        self.prices = prices;
        self.budget = budget;
        self
    }

    pub fn settings(&self) -> CallerSettings {
        self.settings
    }

    /// Sends nothing new from now on: calls waiting for a permit return
    /// [`CallError::Stopped`]; calls in flight finish and are committed.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// From now on, free slots go to the waiting calls whose chains have
    /// the most calls left (for the end of a run: the run then ends when
    /// its longest chain must, not when the last chain to start gets its
    /// turns one by one).
    pub fn critical_path(&self) {
        self.limit.critical_path();
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// A slot for one request, and its place in the budget: none once the
    /// caller is stopping (before or while waiting), and a cap reached
    /// stops it.
    async fn admit(&self, place: crate::slots::Place) -> Result<crate::slots::Slot<'_>, CallError> {
        if self.is_stopping() {
            return Err(CallError::Stopped);
        }
        let slot = self.limit.acquire(place).await;
        if self.is_stopping() {
            return Err(CallError::Stopped);
        }
        if let Err(reached) = self.budget.reserve() {
            self.stop();
            return Err(CallError::Cap(reached));
        }
        Ok(slot)
    }

    /// Makes one call (or replays it from the journal). The outer error
    /// stops the command; the inner one is the item's failure, as recorded.
    pub async fn call(&self, spec: CallSpec<'_>) -> Result<Result<ChatResponse, String>, CallError> {
        let CallSpec { model, key, slice, prompt, sampling, tag, priority, remaining } = spec;
        let journal_key = call_key(key.item, key.round, key.stage);
        let asked = question_digest(model.name(), &prompt, sampling);
        let mut attempt = 0;
        // What the call's earlier, replaced record was paid: it stays counted
        // in the new record (requests, tokens, cost, budget).
        let mut earlier = Paid::default();
        if let Some(record) = self.journal.lookup(&journal_key).map_err(CallError::Journal)? {
            // An outcome for another question (a parent that changed when an
            // earlier failed call was retried) is not replayed.
            if record.prompt == asked {
                if !(self.settings.retry_failed && record.is_failure()) {
                    return Ok(self.replay(model, slice, record));
                }
                attempt = record.attempt + 1;
            }
            // Retried, or asked again because its question changed: the
            // record is replaced, and what it was paid moves to the new one.
            earlier = Paid { usage: record.usage, attempts: record.retries + 1 };
        }
        let _slot = self.admit(crate::slots::Place { priority, remaining }).await?;
        // A retried call gets another request seed, or a deterministic
        // server would give the same failed reply again.
        let mut sampling = sampling;
        if let (1.., Some(seed)) = (attempt, sampling.seed) {
            let reseeded = keyed_rng(seed, &[b"retry", &attempt.to_le_bytes()]).next_u64() >> 1;
            sampling = sampling.with_seed(Some(reseeded));
        }
        let mut request = match prompt {
            Prompt::User(text) => ChatRequest::new(vec![Message::user(text)], sampling),
            Prompt::Messages(messages) => ChatRequest::new(messages, sampling),
            Prompt::Completion(completion) => ChatRequest::completion(completion, sampling),
        };
        request.tag = tag.map(std::borrow::Cow::Borrowed);
        let started = Instant::now();
        let (outcome, record) = match model.chat(request).await {
            Ok(reply) => {
                let mut usage = reply.usage;
                usage += earlier.usage;
                let retries = reply.retries + earlier.attempts;
                let cost = self.prices.cost(model.name(), usage);
                self.budget.spend(usage, cost);
                let overlong = overlong(&reply, sampling.max_tokens);
                self.stats.call(slice, started, Call { usage, cost, retries, failed: overlong.is_some() });
                if let Some(why) = overlong {
                    // Paid for, recorded as the failure it is: never kept.
                    let message = format!("{} call failed: {why}", key.stage);
                    let record = CallRecord {
                        text: None,
                        reasoning: None,
                        finish_reason: None,
                        usage,
                        retries,
                        error: Some(message.clone()),
                        prompt: asked,
                        attempt,
                    };
                    self.journal.commit(&journal_key, &record).map_err(CallError::Journal)?;
                    return Ok(Err(message));
                }
                let record = CallRecord {
                    text: Some(reply.text.clone()),
                    reasoning: reply.reasoning.clone(),
                    finish_reason: Some(reply.finish_reason.clone()),
                    usage,
                    retries,
                    error: None,
                    prompt: asked,
                    attempt,
                };
                (Ok(reply), record)
            }
            // Abandoned unsent because the run is stopping: nothing to
            // record, a rerun makes the call.
            Err(e) if e.kind == ErrorKind::Cancelled => {
                self.budget.release();
                return Err(CallError::Stopped);
            }
            Err(e) => {
                let retries = e.retries + earlier.attempts;
                let cost = self.prices.cost(model.name(), earlier.usage);
                self.budget.spend(earlier.usage, cost);
                self.stats.call(slice, started, Call { usage: earlier.usage, cost, retries, failed: true });
                if e.kind.is_fatal() {
                    return Err(CallError::Model {
                        stage: key.stage.to_string(),
                        model: model.name().to_string(),
                        source: Box::new(e),
                    });
                }
                let message = format!("{} call failed: {e}", key.stage);
                let record = CallRecord {
                    text: None,
                    reasoning: None,
                    finish_reason: None,
                    usage: earlier.usage,
                    retries,
                    error: Some(message.clone()),
                    prompt: asked,
                    attempt,
                };
                (Err(message), record)
            }
        };
        self.journal.commit(&journal_key, &record).map_err(CallError::Journal)?;
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
                reasoning: record.reasoning,
                finish_reason: record.finish_reason.unwrap_or(FinishReason::Unknown),
                usage: record.usage,
                retries: record.retries,
                signals: Default::default(),
            }),
        }
    }
}

impl Caller {
    /// Embeds a batch of texts with `model` (or replays their vectors from
    /// the journal, where each is kept by the model's name and the text's
    /// digest): only the texts not kept are sent, as one request, through
    /// the same slots, budget, statistics and stop as every chat call. The
    /// outer error stops the job; the inner one is the batch's failure,
    /// counted (vectors are never made up).
    pub async fn embed(&self, spec: EmbedSpec<'_>) -> Result<Result<Vec<Vec<f32>>, String>, CallError> {
        let EmbedSpec { model, texts, slice, priority } = spec;
        let digests: Vec<String> = texts.iter().map(|(digest, _)| digest.to_string()).collect();
        let mut known = self.journal.vectors(model.name(), &digests).map_err(CallError::Journal)?;
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| !known.contains_key(texts[i].0)).collect();
        let in_order = |known: &mut HashMap<String, Vec<f32>>| {
            texts.iter().map(|(digest, _)| known.remove(*digest).expect("every text has its vector")).collect()
        };
        if missing.is_empty() {
            // Kept vectors carry no record of their request: nothing is
            // counted twice.
            return Ok(Ok(in_order(&mut known)));
        }
        let _slot = self.admit(crate::slots::Place { priority, remaining: 0 }).await?;
        let inputs: Vec<String> = missing.iter().map(|&i| texts[i].1.to_string()).collect();
        let started = Instant::now();
        match model.embed(&inputs).await {
            Ok(reply) => {
                let cost = self.prices.cost(model.name(), reply.usage);
                self.budget.spend(reply.usage, cost);
                let wrong = reply.vectors.len() != inputs.len();
                let call = Call { usage: reply.usage, cost, retries: reply.retries, failed: wrong };
                self.stats.call(slice, started, call);
                if wrong {
                    return Ok(Err(format!(
                        "embed call failed: {} vectors for {} texts",
                        reply.vectors.len(),
                        inputs.len()
                    )));
                }
                let items: Vec<(String, Vec<f32>)> =
                    missing.iter().map(|&i| texts[i].0.to_string()).zip(reply.vectors).collect();
                self.journal.commit_vectors(model.name(), &items).map_err(CallError::Journal)?;
                known.extend(items);
                Ok(Ok(in_order(&mut known)))
            }
            Err(e) if e.kind == ErrorKind::Cancelled => {
                self.budget.release();
                Err(CallError::Stopped)
            }
            Err(e) => {
                self.budget.spend(Usage::default(), 0.0);
                self.stats.call(
                    slice,
                    started,
                    Call { usage: Usage::default(), cost: 0.0, retries: e.retries, failed: true },
                );
                if e.kind.is_fatal() {
                    return Err(CallError::Model {
                        stage: "embed".to_string(),
                        model: model.name().to_string(),
                        source: Box::new(e),
                    });
                }
                Ok(Err(format!("embed call failed: {e}")))
            }
        }
    }
}

/// A batch of texts to embed.
pub struct EmbedSpec<'a> {
    pub model: &'a Arc<dyn EmbeddingModel>,
    /// Each text with its digest (what its vector is kept under).
    pub texts: &'a [(&'a str, &'a str)],
    /// Where the call is counted in the statistics.
    pub slice: Slice<'a>,
    /// Which waiting call gets the next free slot (lowest first).
    pub priority: u64,
}

/// The most bytes a reply may take per token it was allowed: a token is a
/// few bytes of text in every script (the longest, runs of spaces in code,
/// a few dozen), so a reply past this ignored `max_tokens`.
pub const MAX_BYTES_PER_TOKEN: usize = 64;

/// Why a reply is too long to have obeyed `max_tokens`, if it is.
fn overlong(reply: &ChatResponse, max_tokens: u32) -> Option<String> {
    let limit = (max_tokens as usize).saturating_mul(MAX_BYTES_PER_TOKEN).saturating_add(1024);
    let bytes = reply.text.len() + reply.reasoning.as_ref().map_or(0, String::len);
    (bytes > limit).then(|| {
        format!(
            "the reply holds {bytes} bytes, more than {max_tokens} tokens can (at most {limit}): \
             the server ignored max_tokens, so the reply was not kept"
        )
    })
}

/// What the earlier attempts of a call cost.
#[derive(Debug, Clone, Copy, Default)]
struct Paid {
    usage: Usage,
    /// Requests sent (each attempt with its retries).
    attempts: u32,
}

/// The digest of a question: the model, the messages and the sampling
/// settings other than the request seed (which follows from the call key).
/// A single user message is digested as its text alone, as journals have
/// always stored it.
pub fn question_digest(model: &str, prompt: &Prompt<'_>, sampling: Sampling) -> String {
    let sampling = serde_json::to_string(&sampling.with_seed(None)).expect("serializable");
    let prompt: std::borrow::Cow<'_, str> = match prompt {
        Prompt::User(text) => (*text).into(),
        Prompt::Messages(messages) => match messages.as_slice() {
            [only] if only.role == Speaker::User => only.content.as_str().into(),
            messages => serde_json::to_string(messages).expect("serializable").into(),
        },
        // Tagged, so that no chat digests the same.
        Prompt::Completion(completion) => {
            serde_json::to_string(&serde_json::json!({ "completion": completion })).expect("serializable").into()
        }
    };
    Digest::new().part(model).part(&sampling).part(&*prompt).hex(32)
}

/// The sampling of a call with its request seed drawn from `rng` (always
/// drawn, so that turning request seeds on or off shifts no other choice).
pub fn seeded(base: Sampling, send_seed: bool, rng: &mut impl RngCore) -> Sampling {
    let seed = rng.next_u64() >> 1; // some servers take only non-negative i64
    base.with_seed(send_seed.then_some(seed))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A model whose reply is `len` bytes of text.
    struct Long(usize);

    #[async_trait::async_trait]
    impl ChatModel for Long {
        fn name(&self) -> &str {
            "long"
        }
        async fn chat(&self, _request: ChatRequest) -> Result<ChatResponse, evol_llm::ChatError> {
            Ok(ChatResponse {
                text: "語".repeat(self.0 / 3),
                reasoning: None,
                finish_reason: FinishReason::Stop,
                usage: Usage { prompt_tokens: 1, completion_tokens: 7, ..Default::default() },
                retries: 0,
                signals: Default::default(),
            })
        }
    }

    #[derive(Default)]
    struct Kept(Mutex<Vec<CallRecord>>);

    impl Journal for Kept {
        fn lookup(&self, _key: &str) -> Result<Option<CallRecord>, JournalError> {
            Ok(None)
        }
        fn commit(&self, _key: &str, record: &CallRecord) -> Result<(), JournalError> {
            self.0.lock().unwrap().push(record.clone());
            Ok(())
        }
    }

    async fn call(len: usize, max_tokens: u32) -> (Result<ChatResponse, String>, CallRecord) {
        let journal = Arc::new(Kept::default());
        let settings = CallerSettings { concurrency: 1, retry_failed: false };
        let caller = Caller::new(settings, journal.clone(), Arc::new(StatsRecorder::new(1))).unwrap();
        let model: Arc<dyn ChatModel> = Arc::new(Long(len));
        let sampling = Sampling { temperature: 0.0, top_p: 1.0, max_tokens, seed: None, thinking: Default::default() };
        let spec =
            CallSpec::new(&model, CallKey { item: "a", round: 1, stage: "evolve" }, Prompt::User("hi"), sampling)
                .counted_as(Slice { round: 1, operation: "deepen" });
        let outcome = caller.call(spec).await.unwrap();
        let record = journal.0.lock().unwrap().pop().unwrap();
        (outcome, record)
    }

    #[tokio::test]
    async fn a_reply_that_ignored_max_tokens_is_recorded_as_a_failure() {
        let (outcome, record) = call(3 << 20, 100).await;
        let message = outcome.unwrap_err();
        assert!(message.contains("ignored max_tokens"), "{message}");
        assert_eq!(record.error.as_deref(), Some(message.as_str()));
        assert_eq!(record.text, None, "the runaway text is not journaled");
        assert_eq!(record.usage.completion_tokens, 7, "what was paid stays counted");
    }

    #[tokio::test]
    async fn a_long_reply_within_its_tokens_is_kept() {
        // 100 tokens of three-byte characters, a generous reading.
        let (outcome, record) = call(100 * 3 * 4, 100).await;
        assert_eq!(outcome.unwrap().text.len(), 1200);
        assert!(record.error.is_none());
    }

    /// A model that embeds each text as `[chars, 1]` and counts what it
    /// was sent; `fail` makes every request fail after its retries.
    #[derive(Default)]
    struct Lengths {
        sent: Mutex<Vec<String>>,
        fail: bool,
    }

    #[async_trait::async_trait]
    impl EmbeddingModel for Lengths {
        fn name(&self) -> &str {
            "lengths"
        }
        async fn embed(&self, inputs: &[String]) -> Result<evol_llm::Embedded, evol_llm::ChatError> {
            self.sent.lock().unwrap().extend(inputs.iter().cloned());
            if self.fail {
                return Err(evol_llm::ChatError::new(ErrorKind::Exhausted, "503 after 6 retries"));
            }
            let vectors = inputs.iter().map(|t| vec![t.chars().count() as f32, 1.0]).collect();
            let usage = Usage { prompt_tokens: inputs.len() as u64 * 2, ..Usage::default() };
            Ok(evol_llm::Embedded { vectors, usage, retries: 1 })
        }
    }

    /// A journal that keeps vectors.
    #[derive(Default)]
    struct Vectors(Mutex<HashMap<(String, String), Vec<f32>>>);

    impl Journal for Vectors {
        fn lookup(&self, _key: &str) -> Result<Option<CallRecord>, JournalError> {
            Ok(None)
        }
        fn commit(&self, _key: &str, _record: &CallRecord) -> Result<(), JournalError> {
            Ok(())
        }
        fn vectors(&self, model: &str, digests: &[String]) -> Result<HashMap<String, Vec<f32>>, JournalError> {
            let kept = self.0.lock().unwrap();
            Ok(digests
                .iter()
                .filter_map(|d| Some((d.clone(), kept.get(&(model.into(), d.clone()))?.clone())))
                .collect())
        }
        fn commit_vectors(&self, model: &str, items: &[(String, Vec<f32>)]) -> Result<(), JournalError> {
            let mut kept = self.0.lock().unwrap();
            for (digest, vector) in items {
                kept.insert((model.to_string(), digest.clone()), vector.clone());
            }
            Ok(())
        }
    }

    fn embedder(journal: Arc<Vectors>, caps: crate::cost::Caps) -> (Caller, Arc<StatsRecorder>, Arc<Budget>) {
        let stats = Arc::new(StatsRecorder::new(1));
        let budget = Arc::new(Budget::new(caps));
        let settings = CallerSettings { concurrency: 2, retry_failed: false };
        let caller =
            Caller::new(settings, journal, stats.clone()).unwrap().with_costs(Prices::default(), budget.clone());
        (caller, stats, budget)
    }

    #[tokio::test]
    async fn embeddings_are_journaled_counted_and_never_sent_twice() {
        let journal = Arc::new(Vectors::default());
        let (caller, stats, _) = embedder(journal.clone(), Default::default());
        let lengths = Arc::new(Lengths::default());
        let model: Arc<dyn EmbeddingModel> = lengths.clone();
        let slice = Slice { round: 0, operation: "embed" };
        let first = [("d1", "नमस्ते"), ("d2", "こんにちは世界")];
        let spec = EmbedSpec { model: &model, texts: &first, slice, priority: 0 };
        assert_eq!(caller.embed(spec).await.unwrap().unwrap(), [vec![6.0, 1.0], vec![7.0, 1.0]]);
        // A batch with one text kept: only the other is sent, and the
        // vectors come back in the batch's order.
        let second = [("d3", "สวัสดี"), ("d1", "नमस्ते")];
        let spec = EmbedSpec { model: &model, texts: &second, slice, priority: 0 };
        assert_eq!(caller.embed(spec).await.unwrap().unwrap(), [vec![6.0, 1.0], vec![6.0, 1.0]]);
        assert_eq!(lengths.sent.lock().unwrap().len(), 3, "a kept text is not sent again");
        // All kept: replayed, nothing sent.
        let spec = EmbedSpec { model: &model, texts: &first, slice, priority: 0 };
        caller.embed(spec).await.unwrap().unwrap();
        assert_eq!(lengths.sent.lock().unwrap().len(), 3);
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.total.requests, snapshot.total.retries), (2, 2), "two calls, each retried once");
        assert_eq!(snapshot.total.prompt_tokens, 6, "the tokens the server read are counted");
        assert_eq!(journal.0.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_failed_embedding_is_counted_kept_out_of_the_journal_and_a_cap_stops_sending() {
        let journal = Arc::new(Vectors::default());
        let (caller, stats, _) = embedder(journal.clone(), Default::default());
        let model: Arc<dyn EmbeddingModel> = Arc::new(Lengths { fail: true, ..Lengths::default() });
        let texts = [("d1", "a")];
        let spec =
            EmbedSpec { model: &model, texts: &texts, slice: Slice { round: 0, operation: "embed" }, priority: 0 };
        let failure = caller.embed(spec).await.unwrap().unwrap_err();
        assert!(failure.contains("503"), "{failure}");
        assert_eq!(stats.snapshot().total.failures, 1);
        assert!(journal.0.lock().unwrap().is_empty(), "no vector is made up");

        let caps = crate::cost::Caps { max_requests: Some(1), ..Default::default() };
        let (caller, _, _) = embedder(Arc::new(Vectors::default()), caps);
        let model: Arc<dyn EmbeddingModel> = Arc::new(Lengths::default());
        let slice = Slice { round: 0, operation: "embed" };
        let spec = EmbedSpec { model: &model, texts: &texts, slice, priority: 0 };
        caller.embed(spec).await.unwrap().unwrap();
        let more = [("d2", "b")];
        let spec = EmbedSpec { model: &model, texts: &more, slice, priority: 0 };
        assert!(matches!(caller.embed(spec).await, Err(CallError::Cap(_))), "the cap stops the second request");
    }

    /// A journal holding one committed call.
    struct Holding(CallRecord);

    impl Journal for Holding {
        fn lookup(&self, _key: &str) -> Result<Option<CallRecord>, JournalError> {
            Ok(Some(self.0.clone()))
        }
        fn commit(&self, _key: &str, _record: &CallRecord) -> Result<(), JournalError> {
            unreachable!("a replayed call commits nothing")
        }
    }

    #[tokio::test]
    async fn a_replayed_call_keeps_its_thinking_trace() {
        let model: Arc<dyn ChatModel> = Arc::new(Long(9));
        let sampling =
            Sampling { temperature: 0.0, top_p: 1.0, max_tokens: 100, seed: None, thinking: Default::default() };
        let asked = question_digest(model.name(), &Prompt::User("hi"), sampling);
        let record = CallRecord {
            text: Some("答え".into()),
            reasoning: Some("まず考える。".into()),
            finish_reason: Some(FinishReason::Stop),
            usage: Usage { prompt_tokens: 1, completion_tokens: 9, reasoning_tokens: 6, ..Default::default() },
            retries: 0,
            error: None,
            prompt: asked,
            attempt: 0,
        };
        let stats = Arc::new(StatsRecorder::new(1));
        let settings = CallerSettings { concurrency: 1, retry_failed: false };
        let caller = Caller::new(settings, Arc::new(Holding(record)), stats.clone()).unwrap();
        let spec =
            CallSpec::new(&model, CallKey { item: "a", round: 1, stage: "answer" }, Prompt::User("hi"), sampling);
        let reply = caller.call(spec).await.unwrap().unwrap();
        assert_eq!((reply.text.as_str(), reply.reasoning.as_deref()), ("答え", Some("まず考える。")));
        assert_eq!(stats.snapshot().total.reasoning_tokens, 6, "a replay counts its thinking tokens too");
    }
}
