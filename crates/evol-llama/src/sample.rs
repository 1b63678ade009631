//! Choosing the next token from a row of logits: greedy at temperature 0,
//! else temperature, top-p and a draw from a generator seeded per request.
//!
//! Written by hand instead of using llama.cpp's samplers because those need
//! the context, which only the engine thread may touch; working on plain
//! logit rows lets the engine sample every sequence of a step in parallel
//! while the decode threads would otherwise sit idle.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Candidates less likely than this (relative to the best) are dropped:
/// exp(-30) is below one in 10^13.
const MIN_LOG_RATIO: f32 = -30.0;

/// One request's sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    rng: ChaCha8Rng,
    /// Scratch space, reused between tokens.
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Sampler {
        Sampler { temperature, top_p, rng: ChaCha8Rng::seed_from_u64(seed), candidates: Vec::new() }
    }

    /// The next token for this row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let (best, max) =
            logits
                .iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) });
        if self.temperature <= 0.0 || !max.is_finite() {
            return best as u32;
        }
        let scale = 1.0 / self.temperature;
        self.candidates.clear();
        for (i, &l) in logits.iter().enumerate() {
            let x = (l - max) * scale;
            if x > MIN_LOG_RATIO {
                self.candidates.push((i as u32, x.exp()));
            }
        }
        let mut total: f32 = self.candidates.iter().map(|c| c.1).sum();
        if self.top_p < 1.0 {
            self.candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let limit = self.top_p * total;
            let mut sum = 0.0;
            let mut keep = self.candidates.len();
            for (k, c) in self.candidates.iter().enumerate() {
                sum += c.1;
                if sum >= limit {
                    keep = k + 1;
                    break;
                }
            }
            self.candidates.truncate(keep);
            total = sum.min(total);
        }
        let mut r = self.rng.random::<f32>() * total;
        for &(token, weight) in &self.candidates {
            if r < weight {
                return token;
            }
            r -= weight;
        }
        self.candidates.last().map(|c| c.0).unwrap_or(best as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(0.0, 1.0, 1);
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 2.0]), 1);
    }

    #[test]
    fn same_seed_same_draws_other_seed_other_draws() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32 * 0.3).collect();
        let draws = |seed| {
            let mut s = Sampler::new(1.0, 1.0, seed);
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Token 0 holds about 88% of the mass at temperature 1.
        let logits = [3.0, 1.0, 0.0, 0.0, 0.0];
        let mut s = Sampler::new(1.0, 0.5, 9);
        assert!((0..200).all(|_| s.sample(&logits) == 0));
        let mut s = Sampler::new(1.0, 1.0, 9);
        assert!((0..500).any(|_| s.sample(&logits) != 0));
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        let logits = [0.0f32, (3.0f32).ln()]; // probabilities 1/4 and 3/4
        let mut s = Sampler::new(1.0, 1.0, 5);
        let ones = (0..20_000).filter(|_| s.sample(&logits) == 1).count();
        assert!((14_600..15_400).contains(&ones), "{ones}");
    }

    #[test]
    fn low_temperature_sharpens() {
        let logits = [1.0, 0.9];
        let mut s = Sampler::new(0.01, 1.0, 2);
        assert!((0..200).all(|_| s.sample(&logits) == 0));
    }
}
