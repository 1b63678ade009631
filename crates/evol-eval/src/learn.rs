//! Arena Learning's training data: what a target model should learn from
//! the battles it fought.
//!
//! A battle is the target against one opponent on one question, over the
//! games judged (both orders, usually). It is decided when every game
//! names the same winner; its margin is the winner's mean lead in score
//! per game. A battle whose games disagree (the verdict flips with the
//! order) or tie teaches nothing and is left out.
//!
//! - SFT: for every question the target lost, the answer of the opponent
//!   that beat it by the largest margin (the first such opponent on a
//!   tie), as the target's next training answer;
//! - DPO: every decided battle, the winner's answer chosen and the loser's
//!   rejected.
//!
//! Both keep only battles with a margin of at least `min_margin`.

use std::collections::BTreeMap;

use serde::Serialize;

/// One judged game: the question, the two models (by index) and the
/// scores each got.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Game<'a> {
    pub question: &'a str,
    pub a: usize,
    pub b: usize,
    pub score_a: f64,
    pub score_b: f64,
}

/// A decided battle of the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decided {
    pub question: String,
    pub winner: usize,
    pub loser: usize,
    pub margin: f64,
    pub games: usize,
}

/// What the target learns: SFT picks (the winning opponent's answer per
/// question lost) and DPO pairs, in question then opponent order.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Lessons {
    pub sft: Vec<Decided>,
    pub dpo: Vec<Decided>,
    /// Battles of the target whose games disagreed or tied.
    pub undecided: usize,
}

pub fn lessons(target: usize, games: &[Game], min_margin: f64) -> Lessons {
    // (question, opponent) -> per game, the target's lead.
    let mut battles: BTreeMap<(&str, usize), Vec<f64>> = BTreeMap::new();
    for g in games {
        let (opponent, lead) = match (g.a == target, g.b == target) {
            (true, false) => (g.b, g.score_a - g.score_b),
            (false, true) => (g.a, g.score_b - g.score_a),
            _ => continue,
        };
        battles.entry((g.question, opponent)).or_default().push(lead);
    }
    let mut out = Lessons::default();
    let mut lost: BTreeMap<&str, Decided> = BTreeMap::new();
    for ((question, opponent), leads) in battles {
        let won = leads.iter().all(|&l| l > 0.0);
        let beaten = leads.iter().all(|&l| l < 0.0);
        if !(won || beaten) {
            out.undecided += 1;
            continue;
        }
        let margin = leads.iter().map(|l| l.abs()).sum::<f64>() / leads.len() as f64;
        if margin < min_margin {
            continue;
        }
        let (winner, loser) = if won { (target, opponent) } else { (opponent, target) };
        let decided = Decided { question: question.to_string(), winner, loser, margin, games: leads.len() };
        if beaten {
            match lost.get(question) {
                Some(best) if best.margin >= margin => {}
                _ => {
                    lost.insert(question, decided.clone());
                }
            }
        }
        out.dpo.push(decided);
    }
    out.sft = lost.into_values().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn game(question: &str, a: usize, b: usize, score_a: f64, score_b: f64) -> Game<'_> {
        Game { question, a, b, score_a, score_b }
    }

    #[test]
    fn lost_battles_teach_the_best_winner_and_every_decided_battle_a_pair() {
        let target = 0;
        let games = [
            // q1: opponent 1 beats the target in both orders (margin 2.5),
            // opponent 2 too (margin 4): SFT takes opponent 2's answer.
            game("q1", 0, 1, 5.0, 8.0),
            game("q1", 1, 0, 7.0, 5.0),
            game("q1", 0, 2, 4.0, 8.0),
            game("q1", 2, 0, 9.0, 5.0),
            // q2: the target wins against 1 (margin 1), flips against 2.
            game("q2", 0, 1, 8.0, 7.0),
            game("q2", 1, 0, 6.0, 7.0),
            game("q2", 0, 2, 8.0, 6.0),
            game("q2", 2, 0, 8.0, 6.0),
            // Games without the target teach it nothing.
            game("q3", 1, 2, 9.0, 1.0),
        ];
        let l = lessons(target, &games, 0.0);
        assert_eq!(l.undecided, 1);
        assert_eq!(l.sft.len(), 1);
        assert_eq!((l.sft[0].question.as_str(), l.sft[0].winner, l.sft[0].margin), ("q1", 2, 4.0));
        let pairs: Vec<(&str, usize, usize, f64)> =
            l.dpo.iter().map(|d| (d.question.as_str(), d.winner, d.loser, d.margin)).collect();
        assert_eq!(pairs, [("q1", 1, 0, 2.5), ("q1", 2, 0, 4.0), ("q2", 0, 1, 1.0)]);
        // A margin floor drops the close ones.
        let strict = lessons(target, &games, 3.0);
        assert_eq!(strict.dpo.len(), 1);
        assert_eq!(strict.sft.len(), 1);
        assert!(lessons(target, &games, 5.0).sft.is_empty());
        // Ties decide nothing.
        let tie = lessons(0, &[game("q", 0, 1, 6.0, 6.0)], 0.0);
        assert_eq!((tie.dpo.len(), tie.undecided), (0, 1));
    }
}
