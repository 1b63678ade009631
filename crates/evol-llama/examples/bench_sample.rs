//! How long the sampler takes per token on a vocabulary-sized row of logits
//! (SmolLM2: 49,152), at the settings `evol run` and `evol serve` use.
//!
//! Usage: cargo run --release -p evol-llama --example bench_sample

use evol_llama::sample::Sampler;
use rand::{Rng, SeedableRng};

fn main() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    // Logits of a small model: most near 0, a long upper tail.
    let logits: Vec<f32> = (0..49_152).map(|_| rng.random::<f32>().powi(3) * 25.0 - 5.0).collect();
    for (temperature, top_p) in [(0.0, 1.0), (0.8, 1.0), (1.0, 0.9), (0.7, 0.95)] {
        let mut s = Sampler::new(temperature, top_p, 7);
        let n = 2000;
        let started = std::time::Instant::now();
        let mut sum = 0u64;
        for _ in 0..n {
            sum += u64::from(s.sample(&logits));
        }
        let per = started.elapsed() / n;
        println!("temperature {temperature} top_p {top_p}: {per:?} per token ({sum})");
    }
}
