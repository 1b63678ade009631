//! The S-curve: how likely a pair of a given true similarity is caught.

use std::fmt;

use crate::Params;

/// The probability that two texts whose shingle sets have Jaccard
/// similarity `s` share at least one whole band, and so are compared:
/// `1 - (1 - s^rows)^bands`.
pub fn caught(s: f64, params: &Params) -> f64 {
    1.0 - (1.0 - s.powi(params.rows() as i32)).powi(params.bands as i32)
}

/// The probability that two texts of true similarity `s` are flagged as
/// near duplicates: they share a band and their estimated similarity
/// reaches the threshold. Exact under the model of MinHash (each hash
/// agrees with probability `s`, independently) with 8-bit values (two
/// values that differ still agree in their low bits with probability
/// 1/256).
pub fn flagged(s: f64, params: &Params) -> f64 {
    let n = params.hashes;
    let rows = params.rows();
    let s = s.clamp(0.0, 1.0);
    let full = s;
    let low_only = (1.0 - s) / 256.0;
    let none = (1.0 - s) * 255.0 / 256.0;
    // dp[m][caught][intact]: probability of m agreeing values so far, a
    // band already whole (caught), and the current band whole so far.
    let mut dp = vec![[[0.0f64; 2]; 2]; n + 1];
    dp[0][0][1] = 1.0;
    for position in 0..n {
        let mut next = vec![[[0.0f64; 2]; 2]; n + 1];
        for m in 0..=position {
            for caught in 0..2 {
                for intact in 0..2 {
                    let p = dp[m][caught][intact];
                    if p == 0.0 {
                        continue;
                    }
                    next[m + 1][caught][intact] += p * full;
                    next[m + 1][caught][0] += p * low_only;
                    next[m][caught][0] += p * none;
                }
            }
        }
        if (position + 1).is_multiple_of(rows) {
            // The band ends: a whole band catches the pair, and the next
            // band starts whole.
            for cell in next.iter_mut() {
                let caught = cell[1][0] + cell[1][1] + cell[0][1];
                *cell = [[0.0, cell[0][0]], [0.0, caught]];
            }
        }
        dp = next;
    }
    (0..=n)
        .filter(|&m| estimate(m, n) >= params.threshold)
        .map(|m| dp[m][1][1] + dp[m][1][0])
        .sum::<f64>()
        .clamp(0.0, 1.0)
}

/// The similarity [`crate::similarity`] reports for `m` agreeing values of `n`.
fn estimate(m: usize, n: usize) -> f64 {
    let chance = 1.0 / 256.0;
    ((m as f64 / n as f64 - chance) / (1.0 - chance)).clamp(0.0, 1.0)
}

/// The S-curve of a setting at a few similarities, for `--explain`.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub params: Params,
    /// (true similarity, compared, flagged).
    pub points: Vec<(f64, f64, f64)>,
}

impl Explanation {
    pub fn new(params: Params) -> Explanation {
        let points = [0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]
            .iter()
            .map(|&s| (s, caught(s, &params), flagged(s, &params)))
            .collect();
        Explanation { params, points }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "{}-word shingles, {} hashes in {} bands of {}, threshold {}",
            p.shingle,
            p.hashes,
            p.bands,
            p.rows(),
            p.threshold
        )?;
        writeln!(f, "  true Jaccard   compared   flagged as duplicate")?;
        for (s, compared, flagged) in &self.points {
            writeln!(f, "  {s:>12.2}   {compared:>8.4}   {flagged:>8.4}")?;
        }
        write!(
            f,
            "  (compared: the pair shares a band of {} values; flagged: it also estimates at least {})",
            p.rows(),
            p.threshold
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hasher, Index};

    #[test]
    fn the_curve_rises_steeply_around_the_threshold() {
        let p = Params::default();
        assert!((caught(0.5, &p) - (1.0 - (1.0 - 0.5f64.powi(5)).powi(20))).abs() < 1e-12);
        assert!(caught(0.9, &p) > 0.9999);
        assert_eq!(caught(0.0, &p), 0.0);
        assert!(flagged(0.5, &p) < 0.0001, "{}", flagged(0.5, &p));
        assert!(flagged(0.7, &p) < 0.05, "{}", flagged(0.7, &p));
        assert!(flagged(0.9, &p) > 0.99, "{}", flagged(0.9, &p));
        assert!(flagged(1.0, &p) > 0.9999);
        let mut last = 0.0;
        for i in 0..=20 {
            let f = flagged(i as f64 / 20.0, &p);
            assert!(f >= last - 1e-12 && f <= caught(i as f64 / 20.0, &p) + 1e-9, "at {i}: {f}");
            last = f;
        }
        // Without a real threshold, flagged is caught.
        let loose = Params { threshold: 1e-9, ..p };
        assert!((flagged(0.6, &loose) - caught(0.6, &loose)).abs() < 1e-9);
    }

    #[test]
    fn the_curve_matches_what_the_index_does() {
        // Pairs built to a known true similarity (over shingle sets of 3
        // words), flagged by a real index: the share flagged is close to
        // the predicted probability.
        let p = Params::default();
        let h = Hasher::new(p);
        for (target, pairs) in [(0.8f64, 400usize), (0.9, 400)] {
            let mut hits = 0;
            for pair in 0..pairs {
                let words: Vec<String> = (0..100).map(|i| format!("t{pair}x{i}")).collect();
                let mut other = words.clone();
                // Replacing the last d words leaves 98 - d shingles shared
                // of 98 + d in the union: choose d for the target.
                let d = ((98.0 * (1.0 - target)) / (1.0 + target)).round() as usize;
                for (i, w) in other.iter_mut().enumerate().skip(100 - d) {
                    *w = format!("u{pair}y{i}");
                }
                let mut index = Index::new(p);
                index.insert(&h.fingerprint(&words.join(" ")));
                hits += index.find(&h.fingerprint(&other.join(" "))).is_some() as usize;
            }
            let d = ((98.0 * (1.0 - target)) / (1.0 + target)).round();
            let truth = (98.0 - d) / (98.0 + d);
            let predicted = flagged(truth, &p);
            let seen = hits as f64 / pairs as f64;
            assert!((seen - predicted).abs() < 0.08, "at {truth}: predicted {predicted}, seen {seen}");
        }
    }

    #[test]
    fn explain_names_the_setting_and_the_points() {
        let text = Explanation::new(Params::default()).to_string();
        assert!(text.starts_with("3-word shingles, 100 hashes in 20 bands of 5, threshold 0.8"), "{text}");
        assert!(text.contains("0.50") && text.contains("0.90"), "{text}");
    }
}
