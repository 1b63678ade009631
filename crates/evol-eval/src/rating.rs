//! Bradley-Terry ratings on the Elo scale, with bootstrap intervals.
//!
//! The model: model `i` beats model `j` with probability
//! `1 / (1 + 10^((R_j - R_i) / 400))`, a tie counting as half a win to
//! each side. The ratings are the maximum-likelihood fit of the battles,
//! found by Newton's method with a backtracking line search over the
//! counts of each pair's outcomes (so a million battles cost one pass to
//! count, and each fit then costs as much as the number of pairs).
//!
//! **A model that never wins** (or never loses) has no finite maximum
//! likelihood: its rating would run off to minus infinity. The fit adds a
//! weak Gaussian prior on the log-strengths, [`PRIOR`] (a penalty of
//! `PRIOR / 2 * theta^2`, theta in natural-log odds), which keeps every
//! rating finite and moves ratings backed by a few dozen battles by well
//! under one Elo point; a model that lost all of its `n` battles against
//! one opponent lands far below it but finite (about 970 points for 10
//! battles, 1,320 for 100, 1,680 for 1,000).
//!
//! **A disconnected comparison graph** (models that never met, directly or
//! through others) is refused with [`RatingError::Disconnected`], naming
//! the groups: ratings across groups would be set by the prior alone.
//!
//! Intervals: `rounds` bootstrap rounds, each resampling every pair's
//! outcome counts (a multinomial draw of the pair's battle count: the
//! battles resampled within each pair) from their shares smoothed by half
//! a game of each outcome ([`SMOOTHING`]: a pair with a perfect record of
//! six games is not certain, and its interval must say so; for many games
//! the smoothing vanishes), and fitting again from the full fit; the interval is the 2.5th to 97.5th
//! percentile of each model's rating over the rounds. Each round's
//! generator is keyed by (seed, round), so results do not depend on the
//! number of threads.

use std::f64::consts::LN_10;

use evol_digest::Digest;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};
use rayon::prelude::*;
use serde::Serialize;

use crate::quantile;

/// Elo points per unit of natural-log odds: 400 per factor of 10.
pub const ELO_PER_NAT: f64 = 400.0 / LN_10;

/// The prior's weight on each log-strength (see the module's notes).
pub const PRIOR: f64 = 0.01;

/// Pseudo-games of each outcome (win, tie, loss) added to a pair's counts
/// when its battles are resampled (Jeffreys' prior: half a game each).
pub const SMOOTHING: f64 = 0.5;

/// A pair with fewer games than this has a wide interval, whatever its
/// record: the arena warns of it.
pub const FEW_GAMES: u64 = 10;

/// The mean rating when no model is anchored.
pub const MEAN_RATING: f64 = 1000.0;

/// The interval's level.
pub const LEVEL: f64 = 0.95;

/// Who won a game.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Winner {
    ModelA,
    ModelB,
    Tie,
}

impl Winner {
    /// Model A's points: 1, 0.5 or 0.
    pub fn points_a(self) -> f64 {
        match self {
            Winner::ModelA => 1.0,
            Winner::Tie => 0.5,
            Winner::ModelB => 0.0,
        }
    }

    /// The winner of a game scored `a` to `b`: the higher score, equal a tie.
    pub fn of_scores(a: f64, b: f64) -> Winner {
        match a.partial_cmp(&b) {
            Some(std::cmp::Ordering::Greater) => Winner::ModelA,
            Some(std::cmp::Ordering::Less) => Winner::ModelB,
            _ => Winner::Tie,
        }
    }
}

/// One judged game between two models (by index).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Battle {
    pub a: usize,
    pub b: usize,
    pub winner: Winner,
}

/// How ratings are fitted and reported.
#[derive(Debug, Clone, Copy)]
pub struct RatingSettings {
    /// Bootstrap rounds (0: no intervals; they then equal the rating).
    pub rounds: usize,
    pub seed: u64,
    /// This model gets this rating (in every round, so its interval is a
    /// point); otherwise the mean rating is [`MEAN_RATING`].
    pub anchor: Option<(usize, f64)>,
}

/// One model's place on a leaderboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rated {
    /// The fit on every battle.
    pub rating: f64,
    /// The interval; none without bootstrap rounds (a zero-width interval
    /// would claim a certainty nobody measured).
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The median over the bootstrap rounds.
    pub median: Option<f64>,
    /// 1 + the number of models whose interval lies wholly above this
    /// one's (without intervals: whose rating is higher).
    pub rank: usize,
    pub battles: u64,
    pub wins: u64,
    pub ties: u64,
    pub losses: u64,
}

/// Ratings of every model, in model order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratings {
    pub models: Vec<Rated>,
    /// The interval's level (0.95).
    pub level: f64,
    pub rounds: usize,
    /// Style coefficients, per standard deviation of each covariate, in
    /// Elo points (style-controlled fits only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coefficients: Option<Vec<f64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingError {
    #[error("there are no battles to rate")]
    NoBattles,
    #[error("fewer than two models took part in the battles")]
    OneModel,
    #[error("a battle names model {0}, beyond the models given")]
    UnknownModel(usize),
    /// The models fall into groups that never met: ratings across them
    /// would mean nothing.
    #[error("the battles do not connect every model: {} groups never met (directly or through other models)", groups.len())]
    Disconnected { groups: Vec<Vec<usize>> },
}

/// Each pair's outcomes: (a, b, [a's wins, ties, b's wins]), a < b.
#[derive(Debug, Clone, PartialEq)]
pub struct PairCounts {
    pub models: usize,
    pub pairs: Vec<(usize, usize, [u64; 3])>,
}

impl PairCounts {
    /// Counts the battles among `models` models; a model's battles with
    /// itself are left out.
    pub fn count(models: usize, battles: &[Battle]) -> Result<PairCounts, RatingError> {
        let mut cells = vec![[0u64; 3]; models * models];
        for battle in battles {
            for m in [battle.a, battle.b] {
                if m >= models {
                    return Err(RatingError::UnknownModel(m));
                }
            }
            if battle.a == battle.b {
                continue;
            }
            let (lo, hi, winner) = match battle.a < battle.b {
                true => (battle.a, battle.b, battle.winner),
                false => (
                    battle.b,
                    battle.a,
                    match battle.winner {
                        Winner::ModelA => Winner::ModelB,
                        Winner::ModelB => Winner::ModelA,
                        Winner::Tie => Winner::Tie,
                    },
                ),
            };
            let slot = match winner {
                Winner::ModelA => 0,
                Winner::Tie => 1,
                Winner::ModelB => 2,
            };
            cells[lo * models + hi][slot] += 1;
        }
        let mut pairs = Vec::new();
        for a in 0..models {
            for b in a + 1..models {
                let c = cells[a * models + b];
                if c.iter().sum::<u64>() > 0 {
                    pairs.push((a, b, c));
                }
            }
        }
        Ok(PairCounts { models, pairs })
    }

    /// Each model's battles, wins, ties and losses.
    /// The pairs that met fewer than [`FEW_GAMES`] times: (model, model,
    /// games).
    pub fn thin_pairs(&self) -> Vec<(usize, usize, u64)> {
        self.pairs
            .iter()
            .map(|&(a, b, c)| (a, b, c.iter().sum::<u64>()))
            .filter(|&(_, _, games)| games < FEW_GAMES)
            .collect()
    }

    fn records(&self) -> Vec<[u64; 4]> {
        let mut r = vec![[0u64; 4]; self.models];
        for &(a, b, [wa, t, wb]) in &self.pairs {
            let n = wa + t + wb;
            r[a] = [r[a][0] + n, r[a][1] + wa, r[a][2] + t, r[a][3] + wb];
            r[b] = [r[b][0] + n, r[b][1] + wb, r[b][2] + t, r[b][3] + wa];
        }
        r
    }

    /// The groups of models connected by battles, each sorted, in order of
    /// their first model; models with no battle at all form no group.
    pub fn groups(&self) -> Vec<Vec<usize>> {
        let mut parent: Vec<usize> = (0..self.models).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        let mut played = vec![false; self.models];
        for &(a, b, _) in &self.pairs {
            played[a] = true;
            played[b] = true;
            let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
            parent[ra.max(rb)] = ra.min(rb);
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut index_of = vec![usize::MAX; self.models];
        for m in (0..self.models).filter(|&m| played[m]) {
            let r = root(&mut parent, m);
            if index_of[r] == usize::MAX {
                index_of[r] = groups.len();
                groups.push(Vec::new());
            }
            groups[index_of[r]].push(m);
        }
        groups
    }

    fn check(&self) -> Result<(), RatingError> {
        if self.pairs.is_empty() {
            return Err(RatingError::NoBattles);
        }
        let mut groups = self.groups();
        let unplayed: Vec<usize> = (0..self.models).filter(|m| !groups.iter().any(|g| g.contains(m))).collect();
        groups.extend(unplayed.into_iter().map(|m| vec![m]));
        match groups.len() {
            1 => Ok(()),
            _ => Err(RatingError::Disconnected { groups }),
        }
    }
}

/// Fits the ratings of `models` models from their battles, with bootstrap
/// intervals.
pub fn rate(models: usize, battles: &[Battle], settings: &RatingSettings) -> Result<Ratings, RatingError> {
    rate_counts(&PairCounts::count(models, battles)?, settings)
}

/// [`rate`] over counts already made.
pub fn rate_counts(counts: &PairCounts, settings: &RatingSettings) -> Result<Ratings, RatingError> {
    if counts.models < 2 {
        return Err(RatingError::OneModel);
    }
    counts.check()?;
    let n = counts.models;
    let observed: Vec<(usize, usize, [f64; 3])> =
        counts.pairs.iter().map(|&(a, b, c)| (a, b, c.map(|x| x as f64))).collect();
    let mut theta = vec![0.0; n];
    fit_pairs(n, &observed, &mut theta);
    let full = to_elo(&theta, settings.anchor);
    let samples: Vec<Vec<f64>> = (0..settings.rounds)
        .into_par_iter()
        .map(|round| {
            let mut rng = round_rng(settings.seed, round);
            let resampled: Vec<(usize, usize, [f64; 3])> =
                counts.pairs.iter().map(|&(a, b, c)| (a, b, multinomial(&mut rng, c))).collect();
            let mut t = theta.clone();
            fit_pairs(n, &resampled, &mut t);
            to_elo(&t, settings.anchor)
        })
        .collect();
    Ok(leaderboard(full, &samples, &counts.records(), settings.rounds, None))
}

/// Style covariates of one game: model A's and model B's raw features
/// (answer length, markdown density).
pub type Style = ([f64; STYLE_FEATURES], [f64; STYLE_FEATURES]);

/// Covariates of the style-controlled fit.
pub const STYLE_FEATURES: usize = 2;

/// Ratings with style as covariates, as Chatbot Arena's style control
/// does: per game, each feature's normalized difference `(a - b) / (a +
/// b)` (0 when both are 0), standardized over the games, enters the
/// logistic model beside the ratings, so a rating says how strong a model
/// is apart from how long and how formatted its answers are. Fitted on the
/// games themselves (the covariates differ per game); intervals from a
/// Poisson bootstrap (each game weighted by a Poisson(1) draw per round).
pub fn rate_styled(
    models: usize,
    battles: &[Battle],
    styles: &[Style],
    settings: &RatingSettings,
) -> Result<Ratings, RatingError> {
    styled(models, battles, styles, settings, false)
}

/// [`rate_styled`]; `exact`: each bootstrap round refitted by Newton's
/// method to convergence (what the shortcut is tested against).
fn styled(
    models: usize,
    battles: &[Battle],
    styles: &[Style],
    settings: &RatingSettings,
    exact: bool,
) -> Result<Ratings, RatingError> {
    assert_eq!(battles.len(), styles.len(), "one style per battle");
    let counts = PairCounts::count(models, battles)?;
    if models < 2 {
        return Err(RatingError::OneModel);
    }
    counts.check()?;
    let rows = style_rows(battles, styles);
    let weights = vec![1.0; rows.len()];
    let mut params = vec![0.0; models + STYLE_FEATURES];
    fit_rows(models, &rows, &weights, &mut params);
    let full = to_elo(&params[..models], settings.anchor);
    let coefficients = params[models..].iter().map(|b| b * ELO_PER_NAT).collect();
    let at_fit = AtFit::new(models, &rows, &params);
    let samples: Vec<Vec<f64>> = (0..settings.rounds)
        .into_par_iter()
        .map(|round| {
            let mut rng = round_rng(settings.seed, round);
            let table = poisson_table();
            let weights: Vec<u8> = rows.iter().map(|_| poisson_draw(table, &mut rng)).collect();
            let p = match exact {
                true => refit(models, &rows, &weights, params.clone()),
                false => at_fit.round(&weights).unwrap_or_else(|near| refit(models, &rows, &weights, near)),
            };
            to_elo(&p[..models], settings.anchor)
        })
        .collect();
    Ok(leaderboard(full, &samples, &counts.records(), settings.rounds, Some(coefficients)))
}

/// The games of the style-controlled fit: each feature's normalized
/// difference, standardized over the games.
fn style_rows(battles: &[Battle], styles: &[Style]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::with_capacity(battles.len());
    for (battle, (sa, sb)) in battles.iter().zip(styles) {
        if battle.a == battle.b {
            continue;
        }
        let mut x = [0.0; STYLE_FEATURES];
        for k in 0..STYLE_FEATURES {
            let sum = sa[k] + sb[k];
            x[k] = if sum.abs() > 0.0 && sum.is_finite() { (sa[k] - sb[k]) / sum } else { 0.0 };
        }
        rows.push(Row { a: battle.a, b: battle.b, y: battle.winner.points_a(), x });
    }
    for k in 0..STYLE_FEATURES {
        let mean = rows.iter().map(|r| r.x[k]).sum::<f64>() / rows.len() as f64;
        let var = rows.iter().map(|r| (r.x[k] - mean).powi(2)).sum::<f64>() / rows.len() as f64;
        let sd = var.sqrt();
        for r in &mut rows {
            r.x[k] = if sd > 1e-12 { (r.x[k] - mean) / sd } else { 0.0 };
        }
    }
    rows
}

/// The fit of a bootstrap round by Newton's method from `start`.
fn refit(models: usize, rows: &[Row], weights: &[u8], mut start: Vec<f64>) -> Vec<f64> {
    let weights: Vec<f64> = weights.iter().map(|&w| f64::from(w)).collect();
    fit_rows(models, rows, &weights, &mut start);
    start
}

/// A bootstrap round's fit taken as one Newton step from the full fit
/// with a second-order correction, when no parameter moves more than this
/// (in natural-log odds, about 17 Elo points): what is left is of the third
/// order of the step, under a twentieth of a point at this length and far
/// less for the usual steps of a large log. A longer step (a small log) is
/// finished by Newton's method.
const FAST_STEP: f64 = 0.1;

/// Per-pair sums a round keeps (`w` the game's bootstrap weight; `h`, `r`
/// and `c` the game's variance, residual and the variance's derivative at
/// the full fit; `x` its two covariates): Σwh, Σwr, Σwh·x (2), Σwr·x (2),
/// Σwh·x·x (3), Σwc, Σwc·x (2), Σwc·x·x (3), Σwc·x·x·x (4).
const SUMS: usize = 19;

/// What every bootstrap round of the style-controlled fit shares: each
/// game's quantities at the full fit, so a round passes over the games
/// once, adding its weights into sums per pair of models, and solves from
/// those (the sufficient statistics of a Newton step and of its
/// second-order correction). The rounds' random draws are those of the
/// refit they stand for, so the intervals are the same.
struct AtFit {
    models: usize,
    params: Vec<f64>,
    /// The distinct (a, b) of the games, and where each one's games start
    /// in the games sorted by pair (one more at the end).
    pairs: Vec<(usize, usize)>,
    starts: Vec<usize>,
    /// The games sorted by pair: each one's place in the log (its bootstrap
    /// weight's), and `[h, r, c, x0, x1]`: `h = q(1 - q)`, `r = y - q`,
    /// `c = h(1 - 2q)` at the fit, and its covariates.
    from: Vec<u32>,
    games: Vec<[f64; 5]>,
}

impl AtFit {
    fn new(models: usize, rows: &[Row], params: &[f64]) -> AtFit {
        const { assert!(STYLE_FEATURES == 2, "the sums are written out for two covariates") };
        let mut index: std::collections::HashMap<(usize, usize), usize> = std::collections::HashMap::new();
        let mut pairs = Vec::new();
        let pair: Vec<usize> = rows
            .iter()
            .map(|r| {
                *index.entry((r.a, r.b)).or_insert_with(|| {
                    pairs.push((r.a, r.b));
                    pairs.len() - 1
                })
            })
            .collect();
        let mut from: Vec<u32> = (0..rows.len() as u32).collect();
        from.sort_by_key(|&i| pair[i as usize]);
        let mut starts = vec![0; pairs.len() + 1];
        for &p in &pair {
            starts[p + 1] += 1;
        }
        for i in 0..pairs.len() {
            starts[i + 1] += starts[i];
        }
        let games = from
            .iter()
            .map(|&i| {
                let r = &rows[i as usize];
                let q = sigmoid(eta(params, models, r));
                let h = q * (1.0 - q);
                [h, r.y - q, h * (1.0 - 2.0 * q), r.x[0], r.x[1]]
            })
            .collect();
        AtFit { models, params: params.to_vec(), pairs, starts, from, games }
    }

    /// The round's fit, or where its first step led when that step is too
    /// long for the shortcut.
    fn round(&self, weights: &[u8]) -> Result<Vec<f64>, Vec<f64>> {
        let (models, p) = (self.models, self.models + STYLE_FEATURES);
        let mut sums = vec![[0.0f64; SUMS]; self.pairs.len()];
        for (k, sum) in sums.iter_mut().enumerate() {
            let mut s = [0.0f64; SUMS];
            let range = self.starts[k]..self.starts[k + 1];
            for (&i, &[h, res, c, x0, x1]) in self.from[range.clone()].iter().zip(&self.games[range]) {
                // No branch on a weight of 0 (a third of them, at random).
                let w = f64::from(weights[i as usize]);
                let (wh, wr, wc) = (w * h, w * res, w * c);
                s[0] += wh;
                s[1] += wr;
                s[2] += wh * x0;
                s[3] += wh * x1;
                s[4] += wr * x0;
                s[5] += wr * x1;
                s[6] += wh * x0 * x0;
                s[7] += wh * x0 * x1;
                s[8] += wh * x1 * x1;
                s[9] += wc;
                s[10] += wc * x0;
                s[11] += wc * x1;
                let (c00, c01, c11) = (wc * x0 * x0, wc * x0 * x1, wc * x1 * x1);
                s[12] += c00;
                s[13] += c01;
                s[14] += c11;
                s[15] += c00 * x0;
                s[16] += c00 * x1;
                s[17] += c01 * x1;
                s[18] += c11 * x1;
            }
            *sum = s;
        }
        // The Newton step from the full fit, as `fit_rows` would take it.
        let mut grad: Vec<f64> = self.params.iter().map(|t| -PRIOR * t).collect();
        let mut info = vec![0.0; p * p];
        for i in 0..p {
            info[i * p + i] = PRIOR;
        }
        let (f0, f1) = (models, models + 1);
        for (&(a, b), s) in self.pairs.iter().zip(&sums) {
            grad[a] += s[1];
            grad[b] -= s[1];
            info[a * p + a] += s[0];
            info[b * p + b] += s[0];
            info[a * p + b] -= s[0];
            info[b * p + a] -= s[0];
            for (k, c) in [f0, f1].into_iter().enumerate() {
                grad[c] += s[4 + k];
                let hx = s[2 + k];
                info[a * p + c] += hx;
                info[c * p + a] += hx;
                info[b * p + c] -= hx;
                info[c * p + b] -= hx;
            }
            info[f0 * p + f0] += s[6];
            info[f0 * p + f1] += s[7];
            info[f1 * p + f0] += s[7];
            info[f1 * p + f1] += s[8];
        }
        let start = self.params.clone();
        if !cholesky(&mut info, p) {
            return Err(start);
        }
        let step = solve_factored(&info, &grad, p);
        let mut moved: Vec<f64> = start.iter().zip(&step).map(|(t, d)| t + d).collect();
        if step.iter().any(|d| d.abs() > FAST_STEP || !d.is_finite()) {
            return Err(if moved.iter().all(|t| t.is_finite()) { moved } else { start });
        }
        // The gradient left at the step's end, to second order: each
        // game's probability moved by h·Δη + c·Δη²/2, of which the step
        // accounted for the first term.
        let (b0, b1) = (step[f0], step[f1]);
        let mut left = vec![0.0; p];
        for (&(a, b), s) in self.pairs.iter().zip(&sums) {
            let d = step[a] - step[b];
            let along = d * d * s[9]
                + 2.0 * d * (b0 * s[10] + b1 * s[11])
                + b0 * b0 * s[12]
                + 2.0 * b0 * b1 * s[13]
                + b1 * b1 * s[14];
            left[a] -= along / 2.0;
            left[b] += along / 2.0;
            let x0 = d * d * s[10]
                + 2.0 * d * (b0 * s[12] + b1 * s[13])
                + b0 * b0 * s[15]
                + 2.0 * b0 * b1 * s[16]
                + b1 * b1 * s[17];
            let x1 = d * d * s[11]
                + 2.0 * d * (b0 * s[13] + b1 * s[14])
                + b0 * b0 * s[16]
                + 2.0 * b0 * b1 * s[17]
                + b1 * b1 * s[18];
            left[f0] -= x0 / 2.0;
            left[f1] -= x1 / 2.0;
        }
        let correction = solve_factored(&info, &left, p);
        for (t, d) in moved.iter_mut().zip(&correction) {
            *t += d;
        }
        // What the correction leaves is about its own size times the
        // step's: past a few hundredths of a point, Newton's method ends
        // the fit.
        let longest = |v: &[f64]| v.iter().fold(0.0f64, |m, d| m.max(d.abs()));
        if longest(&step) * longest(&correction) > LEFT_OVER || !moved.iter().all(|t| t.is_finite()) {
            return Err(if moved.iter().all(|t| t.is_finite()) { moved } else { start });
        }
        Ok(moved)
    }
}

/// The third-order error the shortcut may leave, in natural-log odds
/// (about 0.02 Elo points; on a million battles among 50 models the rounds
/// leave a tenth of that and less).
const LEFT_OVER: f64 = 1e-4;

/// One game of the style-controlled fit: A's points and the standardized
/// covariates.
struct Row {
    a: usize,
    b: usize,
    y: f64,
    x: [f64; STYLE_FEATURES],
}

fn round_rng(seed: u64, round: usize) -> ChaCha8Rng {
    let key = Digest::new().raw(b"evol-eval bootstrap").raw(seed.to_le_bytes()).raw((round as u64).to_le_bytes());
    ChaCha8Rng::from_seed(key.bytes())
}

/// A resampling of one pair's outcome counts, from their shares smoothed
/// by [`SMOOTHING`].
fn multinomial(rng: &mut ChaCha8Rng, [wa, t, wb]: [u64; 3]) -> [f64; 3] {
    let n = wa + t + wb;
    let (sa, st, sb) = (wa as f64 + SMOOTHING, t as f64 + SMOOTHING, wb as f64 + SMOOTHING);
    let draw = |rng: &mut ChaCha8Rng, n: u64, p: f64| -> u64 {
        if n == 0 || p <= 0.0 {
            0
        } else if p >= 1.0 {
            n
        } else {
            Binomial::new(n, p).expect("a valid binomial").sample(rng)
        }
    };
    let a = draw(rng, n, sa / (sa + st + sb));
    let rest = n - a;
    let ties = draw(rng, rest, st / (st + sb));
    [a as f64, ties as f64, (rest - ties) as f64]
}

/// Elo ratings from log-strengths: anchored, or with mean [`MEAN_RATING`].
fn to_elo(theta: &[f64], anchor: Option<(usize, f64)>) -> Vec<f64> {
    let shift = match anchor {
        Some((m, rating)) => rating - theta[m] * ELO_PER_NAT,
        None => MEAN_RATING - theta.iter().sum::<f64>() / theta.len() as f64 * ELO_PER_NAT,
    };
    theta.iter().map(|t| t * ELO_PER_NAT + shift).collect()
}

fn leaderboard(
    full: Vec<f64>,
    samples: &[Vec<f64>],
    records: &[[u64; 4]],
    rounds: usize,
    coefficients: Option<Vec<f64>>,
) -> Ratings {
    let tail = (1.0 - LEVEL) / 2.0;
    let intervals: Vec<Option<(f64, f64, f64)>> = (0..full.len())
        .map(|m| {
            if samples.is_empty() {
                return None;
            }
            let mut v: Vec<f64> = samples.iter().map(|s| s[m]).collect();
            v.sort_by(f64::total_cmp);
            Some((quantile(&v, tail), quantile(&v, 0.5), quantile(&v, 1.0 - tail)))
        })
        .collect();
    let models = (0..full.len())
        .map(|m| {
            let above = match intervals[m] {
                Some((_, _, high)) => intervals.iter().flatten().filter(|(other_low, _, _)| *other_low > high).count(),
                None => full.iter().filter(|&&r| r > full[m]).count(),
            };
            let [battles, wins, ties, losses] = records[m];
            Rated {
                rating: full[m],
                ci_low: intervals[m].map(|i| i.0),
                ci_high: intervals[m].map(|i| i.2),
                median: intervals[m].map(|i| i.1),
                rank: 1 + above,
                battles,
                wins,
                ties,
                losses,
            }
        })
        .collect();
    Ratings { models, level: LEVEL, rounds, coefficients }
}

fn ln_sigmoid(x: f64) -> f64 {
    if x > 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The penalized log-likelihood of pair counts.
fn objective_pairs(pairs: &[(usize, usize, [f64; 3])], theta: &[f64]) -> f64 {
    let mut f = -0.5 * PRIOR * theta.iter().map(|t| t * t).sum::<f64>();
    for &(a, b, [wa, t, wb]) in pairs {
        let d = theta[a] - theta[b];
        f += (wa + t / 2.0) * ln_sigmoid(d) + (wb + t / 2.0) * ln_sigmoid(-d);
    }
    f
}

/// Newton's method from `theta` to the penalized maximum likelihood.
fn fit_pairs(n: usize, pairs: &[(usize, usize, [f64; 3])], theta: &mut [f64]) {
    newton(
        theta,
        |theta, grad, info| {
            for i in 0..n {
                grad[i] = -PRIOR * theta[i];
                info[i * n + i] = PRIOR;
            }
            for &(a, b, [wa, t, wb]) in pairs {
                let total = wa + t + wb;
                let p = sigmoid(theta[a] - theta[b]);
                let r = wa + t / 2.0 - total * p;
                grad[a] += r;
                grad[b] -= r;
                let w = total * p * (1.0 - p);
                info[a * n + a] += w;
                info[b * n + b] += w;
                info[a * n + b] -= w;
                info[b * n + a] -= w;
            }
        },
        |theta| objective_pairs(pairs, theta),
    );
}

/// Newton's method over games with covariates (weights: the bootstrap's).
fn fit_rows(models: usize, rows: &[Row], weights: &[f64], params: &mut [f64]) {
    let p = models + STYLE_FEATURES;
    let objective = |params: &[f64]| {
        let mut f = -0.5 * PRIOR * params.iter().map(|t| t * t).sum::<f64>();
        for (r, &w) in rows.iter().zip(weights) {
            if w == 0.0 {
                continue;
            }
            let z = eta(params, models, r);
            f += w * (r.y * ln_sigmoid(z) + (1.0 - r.y) * ln_sigmoid(-z));
        }
        f
    };
    newton(
        params,
        |params, grad, info| {
            for i in 0..p {
                grad[i] = -PRIOR * params[i];
                info[i * p + i] = PRIOR;
            }
            for (r, &w) in rows.iter().zip(weights) {
                if w == 0.0 {
                    continue;
                }
                let q = sigmoid(eta(params, models, r));
                let resid = w * (r.y - q);
                let h = w * q * (1.0 - q);
                grad[r.a] += resid;
                grad[r.b] -= resid;
                info[r.a * p + r.a] += h;
                info[r.b * p + r.b] += h;
                info[r.a * p + r.b] -= h;
                info[r.b * p + r.a] -= h;
                for k in 0..STYLE_FEATURES {
                    let c = models + k;
                    grad[c] += resid * r.x[k];
                    let hx = h * r.x[k];
                    info[r.a * p + c] += hx;
                    info[c * p + r.a] += hx;
                    info[r.b * p + c] -= hx;
                    info[c * p + r.b] -= hx;
                    for l in 0..STYLE_FEATURES {
                        info[c * p + models + l] += hx * r.x[l];
                    }
                }
            }
        },
        objective,
    );
}

fn eta(params: &[f64], models: usize, r: &Row) -> f64 {
    let mut z = params[r.a] - params[r.b];
    for k in 0..STYLE_FEATURES {
        z += params[models + k] * r.x[k];
    }
    z
}

/// Maximizes a concave objective: `derivatives` fills the gradient and the
/// information (minus the Hessian, positive definite thanks to the prior).
/// A Newton step longer than [`TRUST`] is halved until the objective does
/// not fall; a shorter one, near the maximum where the objective is close
/// to its quadratic model, is taken whole without evaluating it (which
/// saves a pass over the games per step in the bootstrap's warm starts).
fn newton(x: &mut [f64], derivatives: impl Fn(&[f64], &mut [f64], &mut [f64]), objective: impl Fn(&[f64]) -> f64) {
    let p = x.len();
    let mut grad = vec![0.0; p];
    let mut info = vec![0.0; p * p];
    let mut f: Option<f64> = None;
    let mut trial = vec![0.0; p];
    for _ in 0..200 {
        info.iter_mut().for_each(|v| *v = 0.0);
        derivatives(x, &mut grad, &mut info);
        let Some(step) = solve_spd(&mut info, &grad, p) else { break };
        let longest = step.iter().fold(0.0f64, |m, s| m.max(s.abs()));
        if longest <= TRUST {
            for i in 0..p {
                x[i] += step[i];
            }
            f = None;
            if longest < 1e-8 {
                break;
            }
            continue;
        }
        let here = *f.get_or_insert_with(|| objective(x));
        let mut scale = 1.0;
        let mut moved = false;
        for _ in 0..60 {
            for i in 0..p {
                trial[i] = x[i] + scale * step[i];
            }
            let g = objective(&trial);
            if g >= here - 1e-12 * here.abs().max(1.0) {
                x.copy_from_slice(&trial);
                f = Some(g);
                moved = true;
                break;
            }
            scale /= 2.0;
        }
        if !moved {
            break;
        }
    }
}

/// The longest Newton step (in natural-log odds, about 43 Elo points)
/// taken without checking that the objective rose.
const TRUST: f64 = 0.25;

/// The cumulative probabilities of Poisson(1) counts 0 to 29.
fn poisson_table() -> &'static [f64; 30] {
    static CUMULATIVE: std::sync::OnceLock<[f64; 30]> = std::sync::OnceLock::new();
    CUMULATIVE.get_or_init(|| {
        let mut table = [0.0; 30];
        let (mut p, mut sum) = ((-1f64).exp(), (-1f64).exp());
        table[0] = sum;
        for (k, slot) in table.iter_mut().enumerate().skip(1) {
            p /= k as f64;
            sum += p;
            *slot = sum;
        }
        table
    })
}

/// A Poisson(1) draw by its inverse distribution function (the bootstrap
/// draws one per game per round, so it must be cheap): the first count
/// whose cumulative probability reaches a uniform draw, up to 30, found as
/// the count of cumulative probabilities below the draw. The first four are compared without a
/// branch (counts 0 to 3 come at random, 98% of the draws); the rest only
/// past them.
fn poisson_draw(cumulative: &[f64; 30], rng: &mut ChaCha8Rng) -> u8 {
    use rand::Rng;
    let u: f64 = rng.random();
    let head = cumulative[..4].iter().map(|&c| u8::from(u > c)).sum::<u8>();
    match head {
        4 => 4 + cumulative[4..].iter().map(|&c| u8::from(u > c)).sum::<u8>(),
        k => k,
    }
}

/// Solves `a x = b` for a symmetric positive definite `a` (row-major,
/// overwritten with its Cholesky factor). Written here because the systems
/// are small and dense (one row per model); a linear-algebra crate would
/// be a large dependency for these twenty lines.
fn solve_spd(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    cholesky(a, n).then(|| solve_factored(a, b, n))
}

/// Overwrites `a` (symmetric positive definite, row-major) with its
/// Cholesky factor in the lower triangle; false if it is not positive
/// definite.
fn cholesky(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return false;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    true
}

/// Solves `a x = b` with `a` as [`cholesky`] left it.
fn solve_factored(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut y = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            y[i] -= a[i * n + k] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            y[i] -= a[k * n + i] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn games(a: usize, b: usize, wins_a: usize, ties: usize, wins_b: usize) -> Vec<Battle> {
        let mut v = Vec::new();
        v.extend((0..wins_a).map(|_| Battle { a, b, winner: Winner::ModelA }));
        v.extend((0..ties).map(|_| Battle { a, b, winner: Winner::Tie }));
        v.extend((0..wins_b).map(|_| Battle { a, b, winner: Winner::ModelB }));
        v
    }

    fn settings(rounds: usize) -> RatingSettings {
        RatingSettings { rounds, seed: 7, anchor: None }
    }

    #[test]
    fn two_models_recover_the_log_odds_by_hand() {
        // 30 wins to 10: odds 3, so the gap is 400 * log10(3) = 190.85
        // (the prior moves it by about 0.1 points).
        let r = rate(2, &games(0, 1, 30, 0, 10), &settings(0)).unwrap();
        let gap = r.models[0].rating - r.models[1].rating;
        assert!((gap - 400.0 * 3f64.log10()).abs() < 0.5, "gap {gap}");
        assert!((r.models[0].rating + r.models[1].rating - 2000.0).abs() < 1e-6);
        // Ties count half to each side: 20 wins, 20 ties, 0 losses is 30
        // points to 10, the same gap.
        let t = rate(2, &games(0, 1, 20, 20, 0), &settings(0)).unwrap();
        let tied_gap = t.models[0].rating - t.models[1].rating;
        assert!((tied_gap - gap).abs() < 1e-6, "{tied_gap} vs {gap}");
        assert_eq!((t.models[0].wins, t.models[0].ties, t.models[0].losses), (20, 20, 0));
        assert_eq!((t.models[1].wins, t.models[1].ties, t.models[1].losses), (0, 20, 20));
    }

    #[test]
    fn three_models_by_hand_and_orientation_does_not_matter() {
        // A beats B 2:1, B beats C 2:1, C beats A 1:2: a cycle-free chain.
        let mut battles = games(0, 1, 20, 0, 10);
        battles.extend(games(1, 2, 20, 0, 10));
        battles.extend(games(0, 2, 20, 0, 10));
        let r = rate(3, &battles, &settings(0)).unwrap();
        // The MLE satisfies: each model's points equal its expected points.
        let theta: Vec<f64> = r.models.iter().map(|m| m.rating / ELO_PER_NAT).collect();
        let p = |i: usize, j: usize| sigmoid(theta[i] - theta[j]);
        let expected_a = 30.0 * p(0, 1) + 30.0 * p(0, 2);
        assert!((expected_a - 40.0).abs() < 0.05, "{expected_a}");
        // Swapping the sides of every battle changes nothing.
        let flipped: Vec<Battle> = battles
            .iter()
            .map(|b| Battle {
                a: b.b,
                b: b.a,
                winner: match b.winner {
                    Winner::ModelA => Winner::ModelB,
                    Winner::ModelB => Winner::ModelA,
                    Winner::Tie => Winner::Tie,
                },
            })
            .collect();
        let f = rate(3, &flipped, &settings(0)).unwrap();
        for (x, y) in r.models.iter().zip(&f.models) {
            assert!((x.rating - y.rating).abs() < 1e-6);
        }
        assert!(r.models[0].rating > r.models[1].rating && r.models[1].rating > r.models[2].rating);
    }

    #[test]
    fn a_model_that_never_wins_stays_finite() {
        let mut battles = games(0, 1, 0, 0, 50);
        battles.extend(games(1, 2, 25, 10, 25));
        battles.extend(games(0, 2, 0, 0, 50));
        let r = rate(3, &battles, &settings(200)).unwrap();
        let loser = &r.models[0];
        assert!(loser.rating.is_finite() && loser.ci_low.unwrap().is_finite(), "{loser:?}");
        // Far below the others, and last by rank.
        assert!(r.models[1].rating - loser.rating > 600.0, "{r:?}");
        assert!(r.models[1].rating - loser.rating < 400.0 * (100.0 / PRIOR).log10() + 400.0);
        assert_eq!(loser.rank, 3);
        assert_eq!(loser.wins, 0);
    }

    #[test]
    fn a_disconnected_graph_is_refused_naming_the_groups() {
        let mut battles = games(0, 1, 5, 0, 5);
        battles.extend(games(2, 3, 5, 1, 5));
        match rate(4, &battles, &settings(0)) {
            Err(RatingError::Disconnected { groups }) => assert_eq!(groups, vec![vec![0, 1], vec![2, 3]]),
            other => panic!("{other:?}"),
        }
        // A model with no battle at all is its own group.
        match rate(3, &games(0, 1, 5, 0, 5), &settings(0)) {
            Err(RatingError::Disconnected { groups }) => assert_eq!(groups, vec![vec![0, 1], vec![2]]),
            other => panic!("{other:?}"),
        }
        assert_eq!(rate(2, &[], &settings(0)), Err(RatingError::NoBattles));
        assert_eq!(
            rate(2, &[Battle { a: 0, b: 5, winner: Winner::Tie }], &settings(0)),
            Err(RatingError::UnknownModel(5))
        );
    }

    /// Battles simulated from known strengths: the fit recovers each rating
    /// within its interval and ranks the models in order.
    #[test]
    fn simulated_strengths_are_recovered_within_their_intervals() {
        let truth = [1200.0, 1100.0, 1000.0, 900.0, 800.0];
        let mean = truth.iter().sum::<f64>() / truth.len() as f64;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut battles = Vec::new();
        for _ in 0..6000 {
            let a = rng.random_range(0..5);
            let b = (a + rng.random_range(1..5)) % 5;
            let p_a = 1.0 / (1.0 + 10f64.powf((truth[b] - truth[a]) / 400.0));
            // Ties as the model counts them (half a win each): a tie with
            // chance t, A's win with p_a - t/2, so A's expected points stay p_a.
            let t = 0.4 * p_a.min(1.0 - p_a);
            let u = rng.random::<f64>();
            let winner = if u < t {
                Winner::Tie
            } else if u < t + p_a - t / 2.0 {
                Winner::ModelA
            } else {
                Winner::ModelB
            };
            battles.push(Battle { a, b, winner });
        }
        let r = rate(5, &battles, &settings(300)).unwrap();
        for (m, rated) in r.models.iter().enumerate() {
            let t = truth[m] - mean + MEAN_RATING;
            assert!(rated.ci_low.unwrap() <= t && t <= rated.ci_high.unwrap(), "model {m}: {t} outside {rated:?}");
            assert!(rated.ci_high.unwrap() - rated.ci_low.unwrap() < 80.0, "{rated:?}");
            assert_eq!(rated.rank, m + 1, "{r:?}");
        }
        // The same seed gives the same intervals; another seed others.
        let again = rate(5, &battles, &settings(300)).unwrap();
        assert_eq!(again, r);
        let other = rate(5, &battles, &RatingSettings { seed: 8, ..settings(300) }).unwrap();
        assert_ne!(other.models[0].ci_low, r.models[0].ci_low);
    }

    #[test]
    fn an_anchor_fixes_one_rating_and_ranks_share_overlapping_intervals() {
        let mut battles = games(0, 1, 11, 0, 9);
        battles.extend(games(1, 2, 40, 0, 5));
        let anchored = rate(3, &battles, &RatingSettings { anchor: Some((1, 1500.0)), ..settings(200) }).unwrap();
        let b = &anchored.models[1];
        assert_eq!((b.rating, b.ci_low, b.ci_high), (1500.0, Some(1500.0), Some(1500.0)));
        let free = rate(3, &battles, &settings(200)).unwrap();
        let gap = |r: &Ratings| r.models[0].rating - r.models[2].rating;
        assert!((gap(&anchored) - gap(&free)).abs() < 1e-6);
        // Models 0 and 1 are close (11:9): their intervals overlap, so
        // both rank first; model 2 is far below.
        assert_eq!(free.models[0].rank, 1);
        assert_eq!(free.models[1].rank, 1);
        assert_eq!(free.models[2].rank, 3);
    }

    #[test]
    fn the_poisson_table_draws_what_the_distribution_function_says() {
        // Every count's band of the uniform draw gives that count.
        let table = poisson_table();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200_000 {
            let mut copy = rng.clone();
            let u: f64 = copy.random();
            let k = poisson_draw(table, &mut rng);
            let below = if k == 0 { 0.0 } else { table[k as usize - 1] };
            assert!(below < u && (k == 30 || u <= table[k as usize]), "{u} gave {k}");
        }
    }

    #[test]
    fn poisson_draws_have_mean_and_variance_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let draws: Vec<f64> = (0..200_000).map(|_| f64::from(poisson_draw(poisson_table(), &mut rng))).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((mean - 1.0).abs() < 0.01 && (var - 1.0).abs() < 0.02, "{mean} {var}");
        let zeros = draws.iter().filter(|&&d| d == 0.0).count() as f64 / draws.len() as f64;
        assert!((zeros - (-1f64).exp()).abs() < 0.005);
    }

    #[test]
    fn style_control_takes_out_a_length_preference() {
        // Two equally strong models; the judge prefers the longer answer,
        // and model 0 writes longer answers more often. Without style
        // control model 0 looks stronger; with it, the gap mostly goes and
        // the length coefficient is positive.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut battles = Vec::new();
        let mut styles = Vec::new();
        for i in 0..4000 {
            let (a, b) = if i % 2 == 0 { (0, 1) } else { (1, 0) };
            let long = |m: usize, rng: &mut ChaCha8Rng| {
                if rng.random::<f64>() < if m == 0 { 0.8 } else { 0.2 } {
                    400.0
                } else {
                    100.0
                }
            };
            let (la, lb) = (long(a, &mut rng), long(b, &mut rng));
            let p_a = if la > lb {
                0.8
            } else if la < lb {
                0.2
            } else {
                0.5
            };
            let winner = if rng.random::<f64>() < p_a { Winner::ModelA } else { Winner::ModelB };
            battles.push(Battle { a, b, winner });
            styles.push(([la, 0.0], [lb, 0.0]));
        }
        let plain = rate(2, &battles, &settings(0)).unwrap();
        let styled = rate_styled(2, &battles, &styles, &settings(50)).unwrap();
        let plain_gap = plain.models[0].rating - plain.models[1].rating;
        let styled_gap = styled.models[0].rating - styled.models[1].rating;
        assert!(plain_gap > 100.0, "{plain_gap}");
        assert!(styled_gap.abs() < 30.0, "{styled_gap}");
        let coefficients = styled.coefficients.unwrap();
        assert!(coefficients[0] > 100.0, "{coefficients:?}");
        assert!(coefficients[1].abs() < 1e-6, "a constant feature has no effect: {coefficients:?}");
        assert!(
            styled.models[0].ci_low.unwrap() <= styled.models[0].rating
                && styled.models[0].rating <= styled.models[0].ci_high.unwrap()
        );
    }

    /// A log of `n` battles among `models` models of spread strengths,
    /// the judge swayed by length and markdown too, with ties.
    fn swayed_log(n: usize, models: usize, seed: u64) -> (Vec<Battle>, Vec<Style>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut battles, mut styles) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let a = rng.random_range(0..models);
            let b = (a + rng.random_range(1..models)) % models;
            let (la, lb) = (rng.random_range(100.0..2000.0), rng.random_range(100.0..2000.0));
            let (ma, mb) = (rng.random_range(0.0..10.0f64).floor(), rng.random_range(0.0..10.0f64).floor());
            let z = (a as f64 - b as f64) * 0.15 + 0.6 * (la - lb) / (la + lb) + 0.2 * (ma - mb) / (ma + mb).max(1.0);
            let p = 1.0 / (1.0 + (-z).exp());
            let u: f64 = rng.random();
            let winner = if u < 0.1 {
                Winner::Tie
            } else if u < 0.1 + 0.9 * p {
                Winner::ModelA
            } else {
                Winner::ModelB
            };
            battles.push(Battle { a, b, winner });
            styles.push(([la, ma], [lb, mb]));
        }
        (battles, styles)
    }

    #[test]
    fn the_bootstrap_shortcut_gives_the_refits_intervals() {
        // Large enough that every round takes the shortcut; 40 rounds of
        // both, the refits' draws the same.
        let (battles, styles) = swayed_log(200_000, 8, 5);
        let fast = styled(8, &battles, &styles, &settings(40), false).unwrap();
        let exact = styled(8, &battles, &styles, &settings(40), true).unwrap();
        assert_eq!(fast.coefficients, exact.coefficients);
        let mut worst = 0.0f64;
        for (f, e) in fast.models.iter().zip(&exact.models) {
            assert_eq!(f.rating, e.rating, "the full fit is the same fit");
            for (x, y) in [(f.ci_low, e.ci_low), (f.ci_high, e.ci_high), (f.median, e.median)] {
                worst = worst.max((x.unwrap() - y.unwrap()).abs());
            }
        }
        assert!(worst < 0.01, "the shortcut is {worst} Elo points from the refit");
        let gap = fast.models[7].rating - fast.models[0].rating;
        assert!(gap > 120.0, "the strengths are recovered (1.05 nats apart, ties as halves): {gap}");
        // The rounds took the shortcut, not its fallback.
        let rows = style_rows(&battles, &styles);
        let mut params = vec![0.0; 8 + STYLE_FEATURES];
        fit_rows(8, &rows, &vec![1.0; rows.len()], &mut params);
        let at_fit = AtFit::new(8, &rows, &params);
        for round in 0..5 {
            let mut rng = round_rng(1, round);
            let weights: Vec<u8> = rows.iter().map(|_| poisson_draw(poisson_table(), &mut rng)).collect();
            assert!(at_fit.round(&weights).is_ok(), "round {round} fell back to the refit");
        }
        // A small log: its longer steps are finished by Newton's method or
        // left within a twentieth of a point.
        let (battles, styles) = swayed_log(600, 4, 9);
        let fast = styled(4, &battles, &styles, &settings(30), false).unwrap();
        let exact = styled(4, &battles, &styles, &settings(30), true).unwrap();
        for (f, e) in fast.models.iter().zip(&exact.models) {
            assert!((f.ci_low.unwrap() - e.ci_low.unwrap()).abs() < 0.05, "{f:?} {e:?}");
            assert!((f.ci_high.unwrap() - e.ci_high.unwrap()).abs() < 0.05, "{f:?} {e:?}");
        }
    }

    #[test]
    fn a_perfect_record_of_few_games_has_a_wide_interval() {
        // Three models, each pair six games, each won by the stronger.
        let mut battles = games(0, 1, 6, 0, 0);
        battles.extend(games(1, 2, 6, 0, 0));
        battles.extend(games(0, 2, 6, 0, 0));
        let r = rate(3, &battles, &settings(200)).unwrap();
        for m in &r.models {
            let width = m.ci_high.unwrap() - m.ci_low.unwrap();
            assert!(width > 50.0, "six games say little: {m:?}");
        }
        assert!(r.models.iter().any(|m| m.rank > 1), "the ranks still see the gaps");
        let counts = PairCounts::count(3, &battles).unwrap();
        assert_eq!(counts.thin_pairs().len(), 3);
        // No bootstrap: no interval, not a zero-width one.
        let none = rate(3, &battles, &settings(0)).unwrap();
        assert!(none.models.iter().all(|m| m.ci_low.is_none() && m.ci_high.is_none()));
        let ranks: Vec<usize> = none.models.iter().map(|m| m.rank).collect();
        assert_eq!(ranks, [1, 2, 3], "ranked by rating without intervals");
    }
}
