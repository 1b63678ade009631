//! Choosing the next token from a row of logits: greedy at temperature 0,
//! else temperature, top-p and a draw from a generator seeded per request.
//!
//! Written by hand instead of using llama.cpp's samplers because those need
//! the context, which only the engine thread may touch; working on plain
//! logit rows lets the engine sample every sequence of a step in parallel
//! while the decode threads would otherwise sit idle.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Tokens at least this likely (relative to the best) are the first
/// candidates for the top-p nucleus; the floor is lowered only when they
/// do not hold enough of the mass.
const NUCLEUS_FLOORS: [f32; 3] = [1e-3, 1e-7, 0.0];

/// One request's sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    rng: ChaCha8Rng,
    /// Scratch space, reused between tokens: the unnormalised
    /// probabilities, and the nucleus candidates.
    weights: Vec<f32>,
    nucleus: Vec<u32>,
}

impl Sampler {
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Sampler {
        Sampler { temperature, top_p, rng: ChaCha8Rng::seed_from_u64(seed), weights: Vec::new(), nucleus: Vec::new() }
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
        self.weights.resize(logits.len(), 0.0);
        let total = softmax_weights(logits, max, 1.0 / self.temperature, &mut self.weights);
        let weights = &self.weights;
        if self.top_p >= 1.0 {
            let mut r = self.rng.random::<f32>() * total;
            for (token, &w) in weights.iter().enumerate() {
                if r < w {
                    return token as u32;
                }
                r -= w;
            }
            return best as u32;
        }
        // The nucleus is the most likely tokens holding top_p of the mass.
        // Sorting the whole vocabulary for it is the slow part of sampling:
        // sort only the tokens above a floor, which hold it whenever their
        // mass reaches the limit (every token left out is less likely than
        // every one kept).
        let limit = self.top_p * total;
        for floor in NUCLEUS_FLOORS {
            self.nucleus.clear();
            self.nucleus.extend((0..weights.len() as u32).filter(|&t| weights[t as usize] > floor || floor == 0.0));
            let mass: f32 = self.nucleus.iter().map(|&t| weights[t as usize]).sum();
            if mass >= limit || floor == 0.0 {
                break;
            }
        }
        self.nucleus.sort_unstable_by(|&a, &b| weights[b as usize].total_cmp(&weights[a as usize]).then(a.cmp(&b)));
        let mut sum = 0.0;
        let mut keep = self.nucleus.len();
        for (k, &t) in self.nucleus.iter().enumerate() {
            sum += weights[t as usize];
            if sum >= limit {
                keep = k + 1;
                break;
            }
        }
        let mut r = self.rng.random::<f32>() * sum.min(total);
        for &t in &self.nucleus[..keep] {
            let w = weights[t as usize];
            if r < w {
                return t;
            }
            r -= w;
        }
        self.nucleus[keep - 1]
    }
}

/// Fills `out` with exp((logit - max) * scale) and returns their sum.
///
/// Written as plain loops over slices with a branch-free exp so that the
/// compiler vectorises them (AVX2: eight lanes); `f32::exp` calls libm one
/// value at a time and made this several times slower. No crate offers a
/// vectorised exp on stable Rust without pulling in a SIMD framework.
fn softmax_weights(logits: &[f32], max: f32, scale: f32, out: &mut [f32]) -> f32 {
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = exp_nonpositive((l - max) * scale);
    }
    // Eight partial sums, for the same reason.
    let mut acc = [0.0f32; 8];
    let chunks = out.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// e^x for x <= 0 (NaN counts as -inf), to about 2e-7 relative error:
/// x = n ln2 + r with |r| <= ln2/2, e^r by its Taylor series to degree 7,
/// 2^n by building the float's exponent bits.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Below this, e^x is under f32's smallest normal: call it 0.
    let x = if x >= -87.0 { x } else { -104.0 };
    let n = (x * std::f32::consts::LOG2_E - 0.5).ceil();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    let bits = ((n as i32 + 127).max(0) as u32) << 23;
    p * f32::from_bits(bits)
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
    fn the_fast_exp_matches_libm() {
        let mut x = 0.0f32;
        while x > -90.0 {
            let (fast, exact) = (exp_nonpositive(x), x.exp());
            assert!((fast - exact).abs() <= exact * 1e-6 + 2e-38, "{x}: {fast} vs {exact}");
            x -= 0.0137;
        }
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(f32::NAN), 0.0);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn a_flat_distribution_still_gets_its_whole_nucleus() {
        // 1000 equal tokens: the first floor holds them all; top_p 0.5 keeps
        // about half, and the draws spread over them.
        let logits = vec![0.0f32; 1000];
        let mut s = Sampler::new(1.0, 0.5, 3);
        let drawn: std::collections::HashSet<u32> = (0..5000).map(|_| s.sample(&logits)).collect();
        assert!(drawn.len() > 400 && drawn.iter().all(|&t| t < 510), "{}", drawn.len());
    }

    #[test]
    fn low_temperature_sharpens() {
        let logits = [1.0, 0.9];
        let mut s = Sampler::new(0.01, 1.0, 2);
        assert!((0..200).all(|_| s.sample(&logits) == 0));
    }
}
