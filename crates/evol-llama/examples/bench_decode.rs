//! Raw llama.cpp batched decode throughput, straight through llama-cpp-2
//! with no scheduler: the ceiling the engine is measured against.
//!
//! For each batch size B: B sequences each get a short prompt, then `steps`
//! decode steps feed one token per sequence (greedy). Prints one JSON line
//! per B with generated tokens per second, and the rate at which the
//! prompts were prefilled (one sequence at a time, 512-token chunks). The
//! KV cache uses the engine's default format (8-bit, flash attention), or
//! `EVOL_KV_CACHE` (f16, q8_0, q4_0), so that both are measured alike.
//!
//! `EVOL_BENCH_CONTEXT=N` pads each prompt to about N tokens first, to
//! measure decode at the context lengths a real run reaches (default: a
//! short prompt of a few tokens).
//!
//! cargo run --release -p evol-llama --example bench_decode -- MODEL.gguf [THREADS] [STEPS] [B,B,...]

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

#[allow(clippy::needless_range_loop)] // index-parallel arrays per sequence
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--cores") {
        println!("{}", evol_llama::physical_cores());
        return;
    }
    let path = args.get(1).expect("usage: bench_decode MODEL.gguf [THREADS] [STEPS] [B,B,...]");
    let threads: i32 = args.get(2).map(|t| t.parse().unwrap()).unwrap_or(evol_llama::physical_cores() as i32);
    let steps: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(128);
    let sizes: Vec<usize> =
        args.get(4).map(|s| s.split(',').map(|b| b.parse().unwrap()).collect()).unwrap_or(vec![1, 8, 16, 32]);

    let mut backend = LlamaBackend::init().unwrap();
    backend.void_logs();
    let model = LlamaModel::load_from_file(&backend, path, &LlamaModelParams::default()).unwrap();
    let vocab = model.vocab();
    let (kv, flash) = match std::env::var("EVOL_KV_CACHE").as_deref() {
        Ok("f16") => (KvCacheType::F16, llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO),
        Ok("q4_0") => (KvCacheType::Q4_0, llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED),
        _ => (KvCacheType::Q8_0, llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED),
    };
    for &b in &sizes {
        let context: usize = std::env::var("EVOL_BENCH_CONTEXT").ok().and_then(|c| c.parse().ok()).unwrap_or(0);
        let per_seq = (512 + context as u32).next_multiple_of(256);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(per_seq * b as u32))
            .with_n_batch(512)
            .with_n_ubatch(512)
            .with_n_seq_max(b as u32)
            .with_kv_unified(false)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_flash_attention_policy(flash)
            .with_type_k(kv)
            .with_type_v(kv);
        let mut ctx = model.new_context(&backend, params).unwrap();
        let mut batch = LlamaBatch::new(512, 1);
        let mut samplers: Vec<LlamaSampler> = (0..b).map(|_| LlamaSampler::greedy()).collect();
        let mut next = Vec::with_capacity(b);
        let mut pos = Vec::with_capacity(b);
        // Prefill: a short distinct prompt per sequence (timed apart).
        let prompts: Vec<Vec<_>> = (0..b)
            .map(|s| {
                let mut text = format!("Story number {s}: once upon a time");
                while context > 0 && vocab.tokenize(text.as_bytes(), true, false).len() < context {
                    text.push_str(" there was a river that ran past an old mill, and");
                }
                vocab.tokenize(text.as_bytes(), true, false)
            })
            .collect();
        let prefill_started = Instant::now();
        for (s, tokens) in prompts.iter().enumerate() {
            for (c, part) in tokens.chunks(512).enumerate() {
                batch.clear();
                for (i, t) in part.iter().enumerate() {
                    let at = c * 512 + i;
                    batch.add(*t, at as i32, &[s as i32], at + 1 == tokens.len()).unwrap();
                }
                ctx.decode(&mut batch).unwrap();
            }
            next.push(samplers[s].sample(&ctx, batch.n_tokens() - 1));
            pos.push(tokens.len() as i32);
        }
        let prefill_seconds = prefill_started.elapsed().as_secs_f64();
        let prefill_tokens: usize = prompts.iter().map(Vec::len).sum();
        let started = Instant::now();
        for _ in 0..steps {
            batch.clear();
            for s in 0..b {
                batch.add(next[s], pos[s], &[s as i32], true).unwrap();
                pos[s] += 1;
            }
            ctx.decode(&mut batch).unwrap();
            for s in 0..b {
                next[s] = samplers[s].sample(&ctx, s as i32);
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{{\"batch\": {b}, \"threads\": {threads}, \"steps\": {steps}, \"seconds\": {secs:.3}, \"tokens_per_second\": {:.1}, \"prefill_tokens\": {prefill_tokens}, \"prefill_tokens_per_second\": {:.1}}}",
            (b * steps) as f64 / secs,
            prefill_tokens as f64 / prefill_seconds
        );
    }
}
