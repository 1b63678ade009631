//! Best of K: which of several answers to one instruction a row keeps, and
//! the preference pair they make.
//!
//! Each candidate answer has a standing (failed, unusable, usable) and may
//! have a judge's score. What makes an answer unusable is the caller's
//! business (an answer rule of `evol run`, a wrong or unreadable final
//! answer against a reference in `evol answer`); here only the choice is
//! made, the same way for every job:
//!
//! - the kept answer is a usable one, picked by [`Pick`];
//! - the pair's chosen side is the kept answer, its rejected side the
//!   worst answer with a text: an unusable one first, else the usable one
//!   with the lowest score below the chosen's. No pair is made when no
//!   answer is worse than the chosen one.

use serde::{Deserialize, Serialize};

/// How the kept answer is picked among the usable ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// The first usable answer, in sampling order.
    #[default]
    First,
    /// The usable answer with the fewest characters.
    Shortest,
    /// The usable answer the judge scores highest (the first of equals);
    /// with no readable score, the first usable answer.
    Score,
}

impl Pick {
    pub const NAMES: [&'static str; 3] = ["first", "shortest", "score"];

    pub fn name(self) -> &'static str {
        match self {
            Pick::First => "first",
            Pick::Shortest => "shortest",
            Pick::Score => "score",
        }
    }

    /// The pick named `name` (one of [`Pick::NAMES`]).
    pub fn parse(name: &str) -> Option<Pick> {
        match name {
            "first" => Some(Pick::First),
            "shortest" => Some(Pick::Shortest),
            "score" => Some(Pick::Score),
            _ => None,
        }
    }
}

/// What a candidate answer amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    /// The call failed: there is no text.
    Failed,
    /// There is a text, but it may not be kept (wrong, unreadable, or
    /// rejected by a rule).
    Unusable,
    /// It may be kept.
    Usable,
}

/// One candidate, as the choice sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub standing: Standing,
    /// Its length in characters (for [`Pick::Shortest`]).
    pub chars: usize,
    /// The judge's score, when there is one.
    pub score: Option<f64>,
}

/// The index of the candidate to keep, or `None` when none is usable.
pub fn pick(candidates: &[Candidate], how: Pick) -> Option<usize> {
    let mut usable = candidates.iter().enumerate().filter(|(_, c)| c.standing == Standing::Usable);
    match how {
        Pick::First => usable.next(),
        Pick::Shortest => usable.min_by_key(|(i, c)| (c.chars, *i)),
        Pick::Score => {
            let usable: Vec<_> = usable.collect();
            let best = usable.iter().filter_map(|&(i, c)| c.score.map(|s| (i, s))).fold(
                None,
                |best: Option<(usize, f64)>, (i, s)| match best {
                    Some((_, b)) if b >= s => best,
                    _ => Some((i, s)),
                },
            );
            return best.map(|(i, _)| i).or(usable.first().map(|(i, _)| *i));
        }
    }
    .map(|(i, _)| i)
}

/// A preference pair among candidates: indices, and the score margin when
/// both sides are scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub chosen: usize,
    pub rejected: usize,
    pub margin: Option<f64>,
}

/// The pair of `chosen` (the kept answer) and the worst candidate with a
/// text worse than it (see the module's documentation), if there is one.
pub fn pair(candidates: &[Candidate], chosen: usize) -> Option<Pair> {
    let best = candidates[chosen];
    let worse = |c: &Candidate| {
        c.standing < best.standing
            || matches!((c.score, best.score), (Some(a), Some(b)) if c.standing == best.standing && a < b)
    };
    let rejected = candidates
        .iter()
        .enumerate()
        .filter(|(i, c)| *i != chosen && c.standing != Standing::Failed && worse(c))
        // The worst: unusable before usable, then the lowest score; the
        // first of equals.
        .min_by(|(i, a), (j, b)| {
            a.standing
                .cmp(&b.standing)
                .then(a.score.unwrap_or(f64::INFINITY).total_cmp(&b.score.unwrap_or(f64::INFINITY)))
                .then(i.cmp(j))
        })
        .map(|(i, _)| i)?;
    let margin = match (best.score, candidates[rejected].score) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    Some(Pair { chosen, rejected, margin })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(standing: Standing, chars: usize, score: Option<f64>) -> Candidate {
        Candidate { standing, chars, score }
    }
    use Standing::{Failed, Unusable, Usable};

    #[test]
    fn each_pick_keeps_a_usable_answer() {
        let all =
            [c(Unusable, 1, Some(6.0)), c(Usable, 50, Some(3.0)), c(Usable, 20, Some(5.0)), c(Usable, 20, Some(5.0))];
        assert_eq!(pick(&all, Pick::First), Some(1));
        assert_eq!(pick(&all, Pick::Shortest), Some(2), "the first of the shortest");
        assert_eq!(pick(&all, Pick::Score), Some(2), "the unusable one's higher score does not count; first of equals");
        let unscored = [c(Failed, 0, None), c(Usable, 9, None), c(Usable, 3, None)];
        assert_eq!(pick(&unscored, Pick::Score), Some(1), "no score read: the first usable");
        assert_eq!(pick(&[c(Failed, 0, None), c(Unusable, 4, None)], Pick::First), None);
        assert_eq!(pick(&[], Pick::Score), None);
    }

    #[test]
    fn pairs_reject_the_worst_answer_below_the_chosen_one() {
        // An unusable answer is worse than any usable one, whatever its score.
        let all = [c(Usable, 5, Some(4.0)), c(Usable, 5, Some(2.0)), c(Unusable, 5, Some(5.0)), c(Failed, 0, None)];
        assert_eq!(pair(&all, 0), Some(Pair { chosen: 0, rejected: 2, margin: Some(-1.0) }));
        // Among usable ones, the lowest score below the chosen's.
        let usable = [c(Usable, 5, Some(3.0)), c(Usable, 5, Some(5.0)), c(Usable, 5, Some(2.0))];
        assert_eq!(pair(&usable, 1), Some(Pair { chosen: 1, rejected: 2, margin: Some(3.0) }));
        // Equal scores, missing scores and failed calls make no pair.
        let even = [c(Usable, 5, Some(4.0)), c(Usable, 5, Some(4.0)), c(Usable, 5, None), c(Failed, 0, None)];
        assert_eq!(pair(&even, 0), None);
        // Without scores, an unusable answer still pairs, with no margin.
        let verified = [c(Unusable, 5, None), c(Usable, 5, None)];
        assert_eq!(pair(&verified, 1), Some(Pair { chosen: 1, rejected: 0, margin: None }));
    }
}
