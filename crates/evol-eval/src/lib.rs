//! Evaluation arithmetic, with no I/O: what `evol judge` and `evol arena`
//! compute from the judge's replies.
//!
//! - [`prompts`]: the pairwise judge prompts (general, code, maths, chosen
//!   by skill), rendered with the question and answers passed as values;
//! - [`reply`]: the two scores on the first line of a judge's reply, or
//!   nothing (an unreadable reply is counted, never guessed);
//! - [`report`]: a candidate against a reference: the score ratio overall,
//!   per skill and per difficulty band with bootstrap intervals, win / tie
//!   / loss with order flips as ties, position consistency, answer lengths;
//! - [`rating`]: Bradley-Terry ratings on the Elo scale with bootstrap
//!   intervals and ranks, optionally with style covariates;
//! - [`learn`]: Arena Learning's training data from battles;
//! - [`language`]: a question's language and the answers that leave it;
//! - [`verify`]: a maths answer checked against a reference answer.

pub mod language;
pub mod learn;
pub mod prompts;
pub mod rating;
pub mod reply;
pub mod report;
pub mod style;
pub mod verify;

/// The `q` quantile of sorted `values` (linear between order statistics,
/// as numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "a quantile of nothing");
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(super::quantile(&v, 0.5), 3.0);
        assert_eq!(super::quantile(&v, 0.0), 1.0);
        assert_eq!(super::quantile(&v, 1.0), 5.0);
        assert!((super::quantile(&v, 0.125) - 1.5).abs() < 1e-12);
    }
}
