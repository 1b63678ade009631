//! A candidate model against a reference, from the judge's scores: the
//! score ratio ("X% of the reference": the sum of the candidate's scores
//! over the sum of the reference's) overall, per skill and per difficulty
//! band with bootstrap intervals; win / tie / loss; the adjusted win rate;
//! how often the verdict survives swapping the order; and the mean answer
//! lengths of both sides (judges tend to prefer longer answers).
//!
//! An item's verdict: each readable game is a win, tie or loss for the
//! candidate by the higher score; when the games of an item disagree (the
//! verdict flips with the order, or one game is a tie) the item is a tie,
//! as FastChat counts an inconsistent pair. Items with no readable game
//! are left out of every figure (and counted by the caller).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::quantile;

/// One readable game: the candidate's and the reference's scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Game {
    pub candidate: f64,
    pub reference: f64,
}

/// One test item as judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub skill: Option<String>,
    pub difficulty: Option<f64>,
    /// The readable games (one per order judged).
    pub games: Vec<Game>,
    /// The answers' lengths (characters).
    pub candidate_length: f64,
    pub reference_length: f64,
}

/// The candidate's result on an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Win,
    Tie,
    Loss,
}

impl Verdict {
    fn of(game: &Game) -> Verdict {
        match game.candidate.partial_cmp(&game.reference) {
            Some(std::cmp::Ordering::Greater) => Verdict::Win,
            Some(std::cmp::Ordering::Less) => Verdict::Loss,
            _ => Verdict::Tie,
        }
    }
}

/// The item's verdict: the games' common verdict, or a tie when they
/// disagree; none without a readable game.
pub fn verdict(games: &[Game]) -> Option<Verdict> {
    let first = Verdict::of(games.first()?);
    Some(if games.iter().all(|g| Verdict::of(g) == first) { first } else { Verdict::Tie })
}

/// Whether the item's games agree (none with fewer than two games).
pub fn consistent(games: &[Game]) -> Option<bool> {
    (games.len() >= 2).then(|| games.iter().all(|g| Verdict::of(g) == Verdict::of(&games[0])))
}

/// The difficulty band of a difficulty: `1-4`, `5-7`, `8-10`.
pub fn band(difficulty: f64) -> Option<&'static str> {
    match difficulty {
        d if (1.0..=4.0).contains(&d) => Some("1-4"),
        d if d > 4.0 && d <= 7.0 => Some("5-7"),
        d if d > 7.0 && d <= 10.0 => Some("8-10"),
        _ => None,
    }
}

/// The figures of one group of items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Items with at least one readable game.
    pub items: usize,
    pub games: usize,
    /// The sum of the candidate's scores over the sum of the reference's.
    pub score_ratio: f64,
    pub ratio_ci_low: f64,
    pub ratio_ci_high: f64,
    pub candidate_score_sum: f64,
    pub reference_score_sum: f64,
    pub candidate_mean_score: f64,
    pub reference_mean_score: f64,
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    /// (wins + ties / 2) / items.
    pub adjusted_win_rate: f64,
    pub win_rate_ci_low: f64,
    pub win_rate_ci_high: f64,
    /// The share of items judged in both orders whose verdict did not
    /// change with the order (none when no item was).
    pub position_consistency: Option<f64>,
    pub items_in_both_orders: usize,
    pub candidate_mean_length: f64,
    pub reference_mean_length: f64,
}

/// Every figure of a judging job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub overall: Summary,
    pub by_skill: BTreeMap<String, Summary>,
    /// By difficulty band, in band order.
    pub by_band: Vec<(String, Summary)>,
    /// The intervals' level and bootstrap rounds.
    pub level: f64,
    pub rounds: usize,
}

/// The report of `items` with `rounds` bootstrap rounds (items resampled
/// with replacement within each group), seeded.
pub fn report(items: &[Item], rounds: usize, seed: u64) -> Option<Report> {
    let judged: Vec<&Item> = items.iter().filter(|i| !i.games.is_empty()).collect();
    let overall = summary(&judged, rounds, seed, "overall")?;
    let mut skills: BTreeMap<String, Vec<&Item>> = BTreeMap::new();
    let mut bands: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    for item in &judged {
        if let Some(skill) = &item.skill {
            skills.entry(skill.clone()).or_default().push(item);
        }
        if let Some(b) = item.difficulty.and_then(band) {
            bands.entry(b).or_default().push(item);
        }
    }
    let skills: Vec<(String, Vec<&Item>)> = skills.into_iter().collect();
    let by_skill = skills
        .par_iter()
        .filter_map(|(skill, group)| Some((skill.clone(), summary(group, rounds, seed, skill)?)))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let by_band = ["1-4", "5-7", "8-10"]
        .iter()
        .filter_map(|b| Some((b.to_string(), summary(bands.get(b)?, rounds, seed, b)?)))
        .collect();
    Some(Report { overall, by_skill, by_band, level: crate::rating::LEVEL, rounds })
}

/// An item's share of the sums: the candidate's and the reference's score
/// sums, and the candidate's points (1 a win, 0.5 a tie).
#[derive(Clone, Copy)]
struct Totals {
    candidate: f64,
    reference: f64,
    points: f64,
}

impl Totals {
    fn of(item: &Item) -> Totals {
        let points = match verdict(&item.games) {
            Some(Verdict::Win) => 1.0,
            Some(Verdict::Tie) => 0.5,
            _ => 0.0,
        };
        let (candidate, reference) = item.games.iter().fold((0.0, 0.0), |(c, r), g| (c + g.candidate, r + g.reference));
        Totals { candidate, reference, points }
    }
}

fn summary(items: &[&Item], rounds: usize, seed: u64, group: &str) -> Option<Summary> {
    if items.is_empty() {
        return None;
    }
    let n = items.len();
    let per_item: Vec<Totals> = items.iter().map(|i| Totals::of(i)).collect();
    let sum = |picks: &mut dyn Iterator<Item = usize>| {
        picks.fold(Totals { candidate: 0.0, reference: 0.0, points: 0.0 }, |t, i| Totals {
            candidate: t.candidate + per_item[i].candidate,
            reference: t.reference + per_item[i].reference,
            points: t.points + per_item[i].points,
        })
    };
    let t = sum(&mut (0..n));
    let ratio = t.candidate / t.reference;
    let win_rate = t.points / n as f64;
    let (mut ratios, mut rates) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    let key = evol_digest::Digest::new().raw(b"evol-eval report").raw(seed.to_le_bytes()).raw(group);
    let mut rng = ChaCha8Rng::from_seed(key.bytes());
    for _ in 0..rounds {
        let r = sum(&mut (0..n).map(|_| rng.random_range(0..n)));
        ratios.push(r.candidate / r.reference);
        rates.push(r.points / n as f64);
    }
    ratios.sort_by(f64::total_cmp);
    rates.sort_by(f64::total_cmp);
    let tail = (1.0 - crate::rating::LEVEL) / 2.0;
    let interval = |v: &[f64], point: f64| match v.is_empty() {
        true => (point, point),
        false => (quantile(v, tail), quantile(v, 1.0 - tail)),
    };
    let (ratio_ci_low, ratio_ci_high) = interval(&ratios, ratio);
    let (win_rate_ci_low, win_rate_ci_high) = interval(&rates, win_rate);
    let verdicts: Vec<Verdict> = items.iter().filter_map(|i| verdict(&i.games)).collect();
    let count = |v: Verdict| verdicts.iter().filter(|&&x| x == v).count();
    let both: Vec<bool> = items.iter().filter_map(|i| consistent(&i.games)).collect();
    let games = items.iter().map(|i| i.games.len()).sum::<usize>();
    Some(Summary {
        items: n,
        games,
        score_ratio: ratio,
        ratio_ci_low,
        ratio_ci_high,
        candidate_score_sum: t.candidate,
        reference_score_sum: t.reference,
        candidate_mean_score: t.candidate / games as f64,
        reference_mean_score: t.reference / games as f64,
        wins: count(Verdict::Win),
        ties: count(Verdict::Tie),
        losses: count(Verdict::Loss),
        adjusted_win_rate: win_rate,
        win_rate_ci_low,
        win_rate_ci_high,
        position_consistency: (!both.is_empty())
            .then(|| both.iter().filter(|&&c| c).count() as f64 / both.len() as f64),
        items_in_both_orders: both.len(),
        candidate_mean_length: items.iter().map(|i| i.candidate_length).sum::<f64>() / n as f64,
        reference_mean_length: items.iter().map(|i| i.reference_length).sum::<f64>() / n as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(candidate: f64, reference: f64) -> Game {
        Game { candidate, reference }
    }

    fn item(skill: &str, difficulty: f64, games: Vec<Game>) -> Item {
        Item {
            skill: Some(skill.into()),
            difficulty: Some(difficulty),
            games,
            candidate_length: 100.0,
            reference_length: 300.0,
        }
    }

    #[test]
    fn verdicts_count_flips_as_ties() {
        assert_eq!(verdict(&[g(8.0, 6.0), g(7.0, 5.0)]), Some(Verdict::Win));
        assert_eq!(verdict(&[g(4.0, 6.0), g(3.0, 5.0)]), Some(Verdict::Loss));
        assert_eq!(verdict(&[g(8.0, 6.0), g(5.0, 7.0)]), Some(Verdict::Tie), "a flip");
        assert_eq!(verdict(&[g(8.0, 6.0), g(6.0, 6.0)]), Some(Verdict::Tie), "win and tie disagree");
        assert_eq!(verdict(&[g(6.0, 6.0)]), Some(Verdict::Tie));
        assert_eq!(verdict(&[g(9.0, 2.0)]), Some(Verdict::Win));
        assert_eq!(verdict(&[]), None);
        assert_eq!(consistent(&[g(8.0, 6.0), g(5.0, 7.0)]), Some(false));
        assert_eq!(consistent(&[g(8.0, 6.0), g(9.0, 7.0)]), Some(true));
        assert_eq!(consistent(&[g(8.0, 6.0)]), None);
    }

    #[test]
    fn bands_split_at_four_and_seven() {
        assert_eq!(band(1.0), Some("1-4"));
        assert_eq!(band(4.0), Some("1-4"));
        assert_eq!(band(5.0), Some("5-7"));
        assert_eq!(band(7.0), Some("5-7"));
        assert_eq!(band(8.0), Some("8-10"));
        assert_eq!(band(10.0), Some("8-10"));
        assert_eq!(band(0.0), None);
        assert_eq!(band(11.0), None);
    }

    /// Hand-made judge outputs, figures computed by hand.
    #[test]
    fn figures_by_hand() {
        let items = vec![
            item("Math", 2.0, vec![g(8.0, 6.0), g(7.0, 5.0)]), // win, consistent
            item("Math", 8.0, vec![g(4.0, 8.0), g(5.0, 9.0)]), // loss, consistent
            item("Code", 6.0, vec![g(8.0, 6.0), g(5.0, 7.0)]), // flip: tie, inconsistent
            item("Code", 9.0, vec![g(6.0, 6.0)]),              // one game: tie
            item("Code", 3.0, vec![]),                         // unreadable: out
        ];
        let r = report(&items, 200, 1).unwrap();
        let o = &r.overall;
        assert_eq!(o.items, 4);
        assert_eq!(o.games, 7);
        assert_eq!(o.candidate_score_sum, 8.0 + 7.0 + 4.0 + 5.0 + 8.0 + 5.0 + 6.0);
        assert_eq!(o.reference_score_sum, 6.0 + 5.0 + 8.0 + 9.0 + 6.0 + 7.0 + 6.0);
        assert!((o.score_ratio - 43.0 / 47.0).abs() < 1e-12);
        assert_eq!((o.wins, o.ties, o.losses), (1, 2, 1));
        assert!((o.adjusted_win_rate - 0.5).abs() < 1e-12);
        assert_eq!(o.items_in_both_orders, 3);
        assert!((o.position_consistency.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!((o.candidate_mean_length, o.reference_mean_length), (100.0, 300.0));
        assert!(o.ratio_ci_low <= o.score_ratio && o.score_ratio <= o.ratio_ci_high);
        assert!(o.ratio_ci_low < o.ratio_ci_high);
        let math = &r.by_skill["Math"];
        assert_eq!(math.items, 2);
        assert!((math.score_ratio - 24.0 / 28.0).abs() < 1e-12);
        assert_eq!(r.by_skill["Code"].items, 2, "the unreadable item is left out");
        let bands: Vec<(&str, usize)> = r.by_band.iter().map(|(b, s)| (b.as_str(), s.items)).collect();
        assert_eq!(bands, [("1-4", 1), ("5-7", 1), ("8-10", 2)]);
        // Seeded: the same intervals again.
        assert_eq!(report(&items, 200, 1).unwrap(), r);
        assert!(report(&[item("Math", 1.0, vec![])], 10, 1).is_none());
    }

    #[test]
    fn intervals_cover_and_narrow_with_more_items() {
        let few: Vec<Item> = (0..20).map(|i| item("Writing", 5.0, vec![g(6.0 + (i % 3) as f64, 7.0)])).collect();
        let many: Vec<Item> = (0..2000).map(|i| item("Writing", 5.0, vec![g(6.0 + (i % 3) as f64, 7.0)])).collect();
        let (f, m) = (report(&few, 500, 2).unwrap().overall, report(&many, 500, 2).unwrap().overall);
        assert!(f.ratio_ci_high - f.ratio_ci_low > 3.0 * (m.ratio_ci_high - m.ratio_ci_low));
        assert!(m.ratio_ci_low < 1.0 && 1.0 < m.ratio_ci_high, "true ratio 7/7: {m:?}");
    }
}
