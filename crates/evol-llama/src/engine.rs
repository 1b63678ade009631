//! The engine thread: one thread owns the llama.cpp context and runs a
//! continuous batch.
//!
//! Every step it takes new requests from its channel into free sequence
//! slots (the rest wait in a FIFO queue, never dropped), then builds one
//! batch: one token for every sequence that is generating, and chunks of
//! prompt for sequences still in prefill, up to the batch size. A long
//! prompt is thus fed over several steps while the others keep generating.
//! After the decode, each sequence whose logits were computed samples its
//! next token with its own sampler; finished sequences free their KV cache
//! and their slot at once, so a waiting request starts on the next step.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use evol_llm::FinishReason;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::sample::Sampler;
use crate::stop::TextState;

/// A generation request, already tokenized.
pub(crate) struct Job {
    /// Not empty, and shorter than a sequence's context (checked by
    /// `LlamaEngine::generate`, before any event).
    pub tokens: Vec<LlamaToken>,
    pub temperature: f32,
    pub top_p: f32,
    pub max_tokens: u32,
    pub seed: u64,
    pub stop: Vec<String>,
    pub events: UnboundedSender<Event>,
}

/// What a request hears back.
#[derive(Debug)]
pub enum Event {
    /// New text, in order.
    Text(String),
    /// The end: why, and the token counts.
    Done(Result<Finished, String>),
}

/// How a generation ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub reason: FinishReason,
    pub prompt_tokens: u32,
    /// Prompt tokens reused from the KV cache instead of computed.
    pub cached_tokens: u32,
    pub completion_tokens: u32,
}

/// What the engine thread has done since it started: how well a workload
/// fills the batch and where the time went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Activity {
    /// Sequences the engine decodes together (`--parallel`).
    pub parallel: u32,
    /// Decode steps that computed tokens.
    pub steps: u64,
    /// Seconds with work to do: decoding, sampling and bookkeeping.
    pub busy_seconds: f64,
    /// Seconds of those inside llama.cpp's decode.
    pub decode_seconds: f64,
    /// Prompt tokens computed (not those taken from the KV cache).
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Live sequences times step seconds, summed: divided by
    /// `busy_seconds`, the mean number of sequences in the batch.
    pub sequence_seconds: f64,
    /// Tokens that went through the model: prompt tokens computed, and
    /// each generated token fed back.
    pub decoded_tokens: u64,
    /// The positions of the decoded tokens, summed: divided by their
    /// number, the mean context length a token was computed at.
    pub positions: u64,
}

impl Activity {
    /// What the engine has done, as `stats.json` and `/health` show it:
    /// how full its batch was and where its time went.
    pub fn report(&self) -> serde_json::Value {
        let per_second = |tokens: u64| if self.busy_seconds > 0.0 { tokens as f64 / self.busy_seconds } else { 0.0 };
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        serde_json::json!({
            "parallel": self.parallel,
            "steps": self.steps,
            "busy_seconds": round(self.busy_seconds),
            "decode_seconds": round(self.decode_seconds),
            "mean_sequences": round(self.mean_sequences()),
            "mean_context": round(self.mean_context()),
            "prompt_tokens_computed": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "decoded_tokens": self.decoded_tokens,
            "decoded_tokens_per_busy_second": round(per_second(self.decoded_tokens)),
            "generated_tokens_per_busy_second": round(per_second(self.generated_tokens)),
        })
    }

    /// The mean context length (position in its sequence) of a computed
    /// token.
    pub fn mean_context(&self) -> f64 {
        if self.decoded_tokens > 0 {
            self.positions as f64 / self.decoded_tokens as f64
        } else {
            0.0
        }
    }

    /// The mean number of sequences in the batch while the engine worked.
    pub fn mean_sequences(&self) -> f64 {
        if self.busy_seconds > 0.0 {
            self.sequence_seconds / self.busy_seconds
        } else {
            0.0
        }
    }
}

struct Slot {
    seq: i32,
    job: Job,
    sampler: Sampler,
    /// Prompt tokens already in the KV cache.
    fed: usize,
    /// Position of the next token.
    pos: i32,
    /// The token to feed next while generating.
    next: Option<LlamaToken>,
    generated: u32,
    /// Where this slot's logits are in the current batch.
    logits_at: Option<i32>,
    /// Prompt tokens found in the KV cache (not computed again).
    cached: u32,
    text: TextState,
}

pub(crate) struct Scheduler<'m> {
    pub model: &'m LlamaModel,
    pub ctx: LlamaContext<'m>,
    pub batch_size: usize,
    /// KV cells each sequence may use.
    pub seq_ctx: u32,
    /// The tokens in each sequence's KV cache, kept after a request ends so
    /// that the next one can reuse a shared prefix.
    pub kv: Vec<Vec<LlamaToken>>,
    /// Whether to reuse shared prefixes at all.
    pub prefix_cache: bool,
    /// Threads for sampling.
    pub threads: usize,
    /// Counters, read by other threads.
    pub activity: Arc<Mutex<Activity>>,
}

impl Scheduler<'_> {
    /// Runs until every sender of `jobs` is gone.
    pub fn run(mut self, mut jobs: UnboundedReceiver<Job>, parallel: usize) {
        let mut slots: Vec<Option<Slot>> = (0..parallel).map(|_| None).collect();
        let mut queue: VecDeque<Job> = VecDeque::new();
        let mut batch = LlamaBatch::new(self.batch_size, 1);
        let mut closed = false;
        loop {
            // Intake: block only when there is nothing to do.
            if !closed && queue.is_empty() && slots.iter().all(Option::is_none) {
                match jobs.blocking_recv() {
                    Some(job) => queue.push_back(job),
                    None => return,
                }
            }
            loop {
                match jobs.try_recv() {
                    Ok(job) => queue.push_back(job),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if closed && queue.is_empty() && slots.iter().all(Option::is_none) {
                return;
            }
            let started = Instant::now();
            self.admit(&mut slots, &mut queue);
            let live = slots.iter().filter(|s| s.is_some()).count();
            let step = self.step(&mut slots, &mut batch);
            let seconds = started.elapsed().as_secs_f64();
            let mut a = self.activity.lock().expect("the engine thread holds the lock briefly");
            a.steps += u64::from(step.decoded_tokens > 0);
            a.busy_seconds += seconds;
            a.decode_seconds += step.decode_seconds;
            a.prompt_tokens += step.prompt_tokens;
            a.generated_tokens += step.generated_tokens;
            a.sequence_seconds += live as f64 * seconds;
            a.positions += step.positions;
            a.decoded_tokens += step.decoded_tokens;
        }
    }

    fn admit(&mut self, slots: &mut [Option<Slot>], queue: &mut VecDeque<Job>) {
        // Jobs held back for a prefix another sequence is still computing.
        let mut held = Vec::new();
        // Sequences given a copy this step: their data lands at the next
        // decode, so they cannot be copied from before it.
        let mut copied = Vec::new();
        while slots.iter().any(Option::is_none) {
            let Some(job) = queue.pop_front() else { break };
            if job.events.is_closed() {
                continue;
            }
            debug_assert!(
                !job.tokens.is_empty() && (job.tokens.len() as u64) < u64::from(self.seq_ctx),
                "checked by LlamaEngine::generate"
            );
            // Prefix reuse: take the free sequence whose KV cache shares the
            // longest prefix with this prompt (evolving prompts share their
            // whole scaffold), keep that prefix and feed only the rest.
            let (i, shared) = (0..slots.len())
                .filter(|&i| slots[i].is_none())
                .map(|i| (i, common_prefix(&self.kv[i], &job.tokens)))
                .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
                .expect("a free slot exists");
            // At least one prompt token is fed, for the logits to sample from.
            let most = job.tokens.len() - 1;
            let keep = if !self.prefix_cache {
                self.trim_kv(i, 0)
            } else {
                // Another sequence (busy or not) may hold a longer prefix: copy
                // its cache rather than compute the prefix again.
                let source = (0..slots.len())
                    .filter(|&j| j != i && !copied.contains(&j))
                    .map(|j| (j, common_prefix(&self.kv[j], &job.tokens).min(most)))
                    .filter(|&(_, n)| n >= shared.min(most) + MIN_COPY_GAIN)
                    .max_by_key(|&(j, n)| (n, std::cmp::Reverse(j)));
                let best = source.map_or(shared.min(most), |(_, n)| n);
                // A prompt still being fed that will share much more: wait
                // for it (a step or so) instead of computing the prefix twice.
                let coming = slots.iter().flatten().any(|s| {
                    let n = common_prefix(&s.job.tokens, &job.tokens).min(most);
                    s.fed < n && n >= best + MIN_COPY_GAIN
                });
                if coming {
                    held.push(job);
                    continue;
                }
                match source {
                    Some((j, n)) => {
                        let kept = self.copy_prefix(j, i, n);
                        copied.push(i);
                        kept
                    }
                    None => self.trim_kv(i, shared.min(most)),
                }
            };
            let sampler = Sampler::new(job.temperature, job.top_p, job.seed);
            let text = TextState::new(job.stop.clone());
            slots[i] = Some(Slot {
                seq: i as i32,
                job,
                sampler,
                fed: keep,
                pos: keep as i32,
                next: None,
                generated: 0,
                logits_at: None,
                cached: keep as u32,
                text,
            });
        }
        for job in held.into_iter().rev() {
            queue.push_front(job);
        }
    }

    /// Gives sequence `dst` the first `n` cached tokens of sequence `src`;
    /// returns how many it got (0 if the cache cannot be copied or cut).
    ///
    /// Sequences live in separate KV streams, which llama.cpp copies whole
    /// (at the next decode); the copy is then cut to the prefix. A copy is a
    /// memory copy of the stream, where computing the prefix runs the model
    /// on every token of it.
    fn copy_prefix(&mut self, src: usize, dst: usize, n: usize) -> usize {
        let pruned = self.ctx.kv_cache_seq_pos_min(src as i32) > 0;
        let _ = self.ctx.clear_kv_cache_seq(Some(dst as u32), None, None);
        self.kv[dst].clear();
        if pruned || self.ctx.copy_kv_cache_seq(src as i32, dst as i32, None, None).is_err() {
            return 0;
        }
        if !self.ctx.clear_kv_cache_seq(Some(dst as u32), Some(n as u32), None).unwrap_or(false) {
            let _ = self.ctx.clear_kv_cache_seq(Some(dst as u32), None, None);
            return 0;
        }
        self.kv[dst] = self.kv[src][..n].to_vec();
        n
    }

    /// Drops sequence `i`'s KV cache from position `keep` on; returns how
    /// much was kept (0 if llama.cpp cannot cut this cache there, as with
    /// sliding-window layers that already pruned early positions).
    fn trim_kv(&mut self, i: usize, keep: usize) -> usize {
        let seq = i as u32;
        let pruned = self.ctx.kv_cache_seq_pos_min(i as i32) > 0;
        let keep = if pruned { 0 } else { keep };
        let cut = self.ctx.clear_kv_cache_seq(Some(seq), Some(keep as u32), None).unwrap_or(false);
        if cut && keep > 0 {
            self.kv[i].truncate(keep);
            return keep;
        }
        let _ = self.ctx.clear_kv_cache_seq(Some(seq), None, None);
        self.kv[i].clear();
        0
    }

    fn step(&mut self, slots: &mut [Option<Slot>], batch: &mut LlamaBatch) -> StepCounts {
        let mut counts = StepCounts::default();
        batch.clear();
        let mut budget = self.batch_size;
        let mut members = Vec::new();
        // Generating sequences first: one token each.
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            slot.logits_at = None;
            if let Some(token) = slot.next.take() {
                members.push(i);
                batch.add(token, slot.pos, &[slot.seq], true).expect("batch sized for every slot");
                counts.positions += slot.pos as u64;
                self.kv[i].push(token);
                slot.logits_at = Some(batch.n_tokens() - 1);
                slot.pos += 1;
                budget -= 1;
            }
        }
        // Then prompt chunks, oldest first, in what room is left.
        let mut order: Vec<usize> =
            (0..slots.len()).filter(|&i| slots[i].as_ref().is_some_and(|s| s.fed < s.job.tokens.len())).collect();
        order.sort_by_key(|&i| slots[i].as_ref().map(|s| s.fed == 0));
        for i in order {
            if budget == 0 {
                break;
            }
            members.push(i);
            let slot = slots[i].as_mut().unwrap();
            let end = (slot.fed + budget).min(slot.job.tokens.len());
            for k in slot.fed..end {
                let last = k + 1 == slot.job.tokens.len();
                batch.add(slot.job.tokens[k], slot.pos, &[slot.seq], last).expect("within budget");
                counts.positions += slot.pos as u64;
                self.kv[i].push(slot.job.tokens[k]);
                slot.pos += 1;
                if last {
                    slot.logits_at = Some(batch.n_tokens() - 1);
                }
            }
            budget -= end - slot.fed;
            counts.prompt_tokens += (end - slot.fed) as u64;
            slot.fed = end;
        }
        if batch.n_tokens() == 0 {
            return counts;
        }
        let decode_started = Instant::now();
        let decoded = self.ctx.decode(batch);
        counts.decode_seconds = decode_started.elapsed().as_secs_f64();
        if let Err(e) = decoded {
            // Fail what took part in this step; the others go on.
            for i in members {
                if let Some(slot) = slots[i].take() {
                    self.trim_kv(i, 0);
                    self.finish(slot, Err(format!("llama.cpp could not decode: {e}")));
                }
            }
            // Time spent, nothing computed.
            return StepCounts { decode_seconds: counts.decode_seconds, ..StepCounts::default() };
        }
        counts.decoded_tokens = batch.n_tokens() as u64;
        for entry in slots.iter_mut() {
            if entry.as_ref().is_some_and(|s| s.job.events.is_closed()) {
                // The caller went away: free the slot (its KV cache stays
                // for reuse).
                entry.take();
            }
        }
        let picks = self.sample_all(slots);
        for (i, token) in picks {
            let entry = &mut slots[i];
            let slot = entry.as_mut().expect("sampled slots are live");
            let vocab = self.model.vocab();
            let reason = if vocab.is_eog(token) {
                Some(FinishReason::Stop)
            } else {
                slot.generated += 1;
                counts.generated_tokens += 1;
                let stopped = slot.text.push(&vocab.token_to_piece(token, false, None));
                if let Some(piece) = slot.text.take_stream() {
                    let _ = slot.job.events.send(Event::Text(piece));
                }
                if stopped {
                    Some(FinishReason::Stop)
                // The token just sampled is not in the sequence yet: with it,
                // the sequence holds `pos + 1` tokens, at most the context.
                } else if slot.generated >= slot.job.max_tokens || slot.pos as u32 + 1 >= self.seq_ctx {
                    Some(FinishReason::Length)
                } else {
                    slot.next = Some(token);
                    None
                }
            };
            if let Some(reason) = reason {
                let slot = entry.take().unwrap();
                let finished = Finished {
                    reason,
                    prompt_tokens: slot.job.tokens.len() as u32,
                    cached_tokens: slot.cached,
                    completion_tokens: slot.generated,
                };
                self.finish(slot, Ok(finished));
            }
        }
        counts
    }

    /// Samples the next token of every slot that has logits this step, in
    /// parallel over the engine's threads (the decode threads are idle now).
    fn sample_all(&self, slots: &mut [Option<Slot>]) -> Vec<(usize, LlamaToken)> {
        let mut work: Vec<(usize, &mut Sampler, &[f32])> = slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().and_then(|s| s.logits_at.map(|at| (i, &mut s.sampler, at))))
            .map(|(i, sampler, at)| (i, sampler, self.ctx.get_logits_ith(at)))
            .collect();
        let pick = |chunk: &mut [(usize, &mut Sampler, &[f32])]| -> Vec<(usize, LlamaToken)> {
            chunk.iter_mut().map(|(i, sampler, logits)| (*i, LlamaToken(sampler.sample(logits) as i32))).collect()
        };
        // Spawning the helpers costs more than it saves on a few rows
        // (measured: 0.95 vs 0.75 ms a step at 8 sequences).
        if self.threads <= 1 || work.len() < PARALLEL_SAMPLING_FROM {
            return pick(&mut work);
        }
        let per = work.len().div_ceil(self.threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = work.chunks_mut(per).map(|chunk| scope.spawn(move || pick(chunk))).collect();
            handles.into_iter().flat_map(|h| h.join().expect("sampling does not panic")).collect()
        })
    }

    fn finish(&mut self, mut slot: Slot, result: Result<Finished, String>) {
        if let Some(rest) = slot.text.take_rest() {
            let _ = slot.job.events.send(Event::Text(rest));
        }
        let _ = slot.job.events.send(Event::Done(result));
    }
}

/// What one step computed.
#[derive(Default)]
struct StepCounts {
    decode_seconds: f64,
    decoded_tokens: u64,
    positions: u64,
    prompt_tokens: u64,
    generated_tokens: u64,
}

/// Below this many sequences in a step, sampling stays on the engine thread.
const PARALLEL_SAMPLING_FROM: usize = 16;

/// A copy from another sequence must save at least this many tokens of
/// prompt computation to be worth copying a whole KV stream.
const MIN_COPY_GAIN: usize = 16;

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
