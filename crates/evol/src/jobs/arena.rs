//! `evol arena`: battles between models on the same questions, ratings
//! from them, and Arena Learning data.
//!
//! Every pair of models that answered a question (or `--pairs-per-question`
//! pairs drawn with a generator keyed by the seed and the question) plays
//! two games, one per order. A game's call key is (question, the pair's
//! names in sorted order, `pairwise`) with the order as its round, so the
//! order of `--answers` does not matter and a rerun with more models
//! judges only the new pairs. Prompts are rendered only when a call may be
//! sent. The ratings are `evol_eval::rating`'s; `--battles` refits them
//! from battle logs alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use evol_core::stats::Slice;
use evol_core::{CallError, CallKey, CallSpec, Prompt, Role};
use evol_eval::language::LanguageCounts;
use evol_eval::prompts::{self, JudgeKind};
use evol_eval::rating::{self, Battle, Rated, RatingSettings, Ratings, Style, Winner};
use evol_store::output::{BATTLES, LEADERBOARD, RATINGS, STATS, UNJUDGED};
use evol_store::{JobKind, OutputDir, RunState};
use futures::StreamExt;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::testset::{cell, read_answers, request_seed, same_question, Asked};
use crate::observe::{human, Observer};
use crate::results::CallSummary;
use crate::session::{drain, Session};
use crate::settings::{ArenaSettings, ArenaSource};
use crate::shutdown::Shutdown;

/// A question of the arena, with each model's answers to it.
struct Question {
    id: String,
    turns: Vec<String>,
    conversation: bool,
    kind: JudgeKind,
    /// Per model (by index), its answers to the turns, when it answered.
    answers: Vec<Option<Vec<String>>>,
}

/// One game to judge: a question, the pair (by index, the first name
/// first in sorted order) and the order (0: `a` shown first).
#[derive(Clone, Copy)]
struct GameSpec {
    question: usize,
    a: usize,
    b: usize,
    order: u32,
}

impl GameSpec {
    /// The models as shown: first, second.
    fn shown(self) -> (usize, usize) {
        if self.order == 0 {
            (self.a, self.b)
        } else {
            (self.b, self.a)
        }
    }
}

/// One judged game, as `battles.jsonl` holds it (`model_a` was shown first).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BattleRow {
    #[serde(default)]
    id: Option<Value>,
    model_a: String,
    model_b: String,
    winner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    score_a: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    score_b: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    judge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    game: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    length_a: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    length_b: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    markdown_a: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    markdown_b: Option<f64>,
}

impl BattleRow {
    fn winner(&self) -> Option<Winner> {
        match self.winner.as_str() {
            "model_a" => Some(Winner::ModelA),
            "model_b" => Some(Winner::ModelB),
            // Chatbot Arena's logs also say "tie (bothbad)".
            w if w == "tie" || w.starts_with("tie ") => Some(Winner::Tie),
            _ => None,
        }
    }

    fn style(&self) -> Option<Style> {
        Some(([self.length_a?, self.markdown_a?], [self.length_b?, self.markdown_b?]))
    }
}

/// A game the judge did not decide: its reply held no scores, or the call
/// failed.
#[derive(Serialize)]
struct UnjudgedRow<'a> {
    id: &'a str,
    model_a: &'a str,
    model_b: &'a str,
    game: u32,
    judge: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    unreadable: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// What became of a game's call.
enum Judged {
    Scores(f64, f64),
    Unreadable(String),
    Failed(String),
}

/// Battles among the models' answers, judged (or battle logs refitted,
/// calling no model), with their ratings, leaderboard and, for a target,
/// Arena Learning data.
pub async fn arena(
    settings: ArenaSettings,
    observer: &dyn Observer,
    shutdown: Shutdown,
) -> anyhow::Result<ArenaReport> {
    match &settings.source {
        ArenaSource::Battles(files) => refit(&settings, files, observer),
        ArenaSource::Answers(files) => battle(&settings, files, observer, shutdown).await,
    }
}

/// The models' names (sorted) and the arena's questions.
fn read_arena(files: &[(Option<String>, PathBuf)]) -> anyhow::Result<(Vec<String>, Vec<Question>)> {
    let mut named = Vec::new();
    for (name, path) in files {
        let file = read_answers(path)?;
        let name = match (name, &file.model) {
            (Some(n), _) => n.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => bail!(
                "`{}` does not name its model (a `model` field): pass it as NAME={}",
                file.path.display(),
                path.display()
            ),
        };
        named.push((name, file));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    for pair in named.windows(2) {
        if pair[0].0 == pair[1].0 {
            bail!(
                "`{}` and `{}` both hold answers of `{}`: name them apart (NAME=PATH)",
                pair[0].1.path.display(),
                pair[1].1.path.display(),
                pair[0].0
            );
        }
    }
    let names: Vec<String> = named.iter().map(|(n, _)| n.clone()).collect();
    // Questions in the order the first file that has them gives.
    let mut order: Vec<String> = Vec::new();
    let mut questions: BTreeMap<String, Question> = BTreeMap::new();
    let mut stated: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (m, (_, file)) in named.iter().enumerate() {
        for id in &file.order {
            let row = &file.rows[id];
            let Some(turns) = &row.turns else {
                bail!(
                    "`{}`: the answer to `{id}` does not state its question (`instruction` or `turns`), which the judge needs",
                    file.path.display()
                );
            };
            let q = questions.entry(id.clone()).or_insert_with(|| {
                order.push(id.clone());
                stated.insert(id.clone(), file.path.clone());
                Question {
                    id: id.clone(),
                    turns: turns.clone(),
                    conversation: turns.len() > 1,
                    kind: JudgeKind::for_skill(row.skill.as_deref()),
                    answers: vec![None; names.len()],
                }
            });
            if !same_question(&q.turns, turns) {
                bail!(
                    "the question `{id}` reads differently in `{}` and `{}`: are they answers to the same test set?",
                    stated[id].display(),
                    file.path.display()
                );
            }
            if row.error.is_none() && row.answers.len() == turns.len() {
                q.answers[m] = Some(row.answers.clone());
            }
        }
    }
    let questions = order.into_iter().map(|id| questions.remove(&id).expect("listed")).collect();
    Ok((names, questions))
}

/// The games of every question: every pair of models that answered it, or
/// `per_question` pairs drawn, each in both orders.
fn plan(questions: &[Question], per_question: Option<usize>, seed: u64) -> Vec<GameSpec> {
    let mut games = Vec::new();
    for (qi, q) in questions.iter().enumerate() {
        let answered: Vec<usize> = (0..q.answers.len()).filter(|&m| q.answers[m].is_some()).collect();
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for (i, &a) in answered.iter().enumerate() {
            for &b in &answered[i + 1..] {
                pairs.push((a, b));
            }
        }
        if let Some(k) = per_question {
            if k < pairs.len() {
                let mut rng = evol_core::rng::keyed_rng(seed, &[b"arena-pairs", q.id.as_bytes()]);
                pairs.shuffle(&mut rng);
                pairs.truncate(k);
                pairs.sort_unstable();
            }
        }
        for (a, b) in pairs {
            for order in 0..2 {
                games.push(GameSpec { question: qi, a, b, order });
            }
        }
    }
    games
}

async fn battle(
    settings: &ArenaSettings,
    files: &[(Option<String>, PathBuf)],
    observer: &dyn Observer,
    mut shutdown: Shutdown,
) -> anyhow::Result<ArenaReport> {
    let (names, questions) = read_arena(files)?;
    let index = |name: &str, flag: &str| {
        names.iter().position(|n| n == name).ok_or_else(|| {
            crate::UsageError(format!(
                "{flag}: no model `{name}` among the answers ({})",
                names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            ))
        })
    };
    let anchor =
        settings.anchor.as_ref().map(|(m, r)| Ok::<_, anyhow::Error>((index(m, "--anchor")?, *r))).transpose()?;
    let target = settings.learn.as_ref().map(|(t, _)| index(t, "--target")).transpose()?;
    let games = plan(&questions, settings.pairs_per_question, settings.eval.seed);
    // Each question's language (the judge is told it), and the answers
    // that left it, by model.
    let question_languages: Vec<Option<&str>> =
        questions.iter().map(|q| evol_eval::language::of_question(&q.turns)).collect();
    let mut languages = LanguageCounts::default();
    for (q, language) in questions.iter().zip(&question_languages) {
        languages.question(*language);
        for (name, answers) in names.iter().zip(&q.answers) {
            if let Some(found) = answers.as_deref().and_then(|a| evol_eval::language::wrong(*language, a)) {
                languages.wrong_answer(name, found);
            }
        }
    }
    if games.is_empty() {
        bail!("no question was answered by two of the models: there is no battle to judge");
    }
    let eval = &settings.eval;
    let n = games.len() as u64;
    let session = Session::open(
        (&settings.output, settings.fresh, JobKind::Arena),
        &eval.model,
        &eval.execution,
        Role::Compare,
        n,
        observer,
    )
    .await?;
    let asked = Asked::new(
        session.model.name(),
        eval,
        serde_json::json!({ "pairs_per_question": settings.pairs_per_question }),
    );
    session.begin("arena_identity", &asked, "an arena")?;
    let judge = session.model.name().to_string();
    observer.say(&format!(
        "evol: arena of {} models on {} questions: {} games (both orders) judged by `{judge}` -> `{}`",
        names.len(),
        questions.len(),
        games.len(),
        session.out.root().display()
    ));
    let results: Mutex<Vec<Option<Judged>>> = Mutex::new((0..games.len()).map(|_| None).collect());
    let work = {
        let done = futures::stream::iter(games.iter().enumerate())
            .map(|(i, &game)| {
                let (session, questions, names, question_languages) =
                    (&session, &questions, &names, &question_languages);
                async move {
                    let q = &questions[game.question];
                    let (first, second) = game.shown();
                    let answers = |m: usize| q.answers[m].as_deref().expect("a model that answered");
                    let prompt = prompts::render(
                        q.kind,
                        &q.turns,
                        answers(first),
                        answers(second),
                        question_languages[game.question],
                    );
                    let item = format!("{}\t{}\t{}", q.id, names[game.a], names[game.b]);
                    let mut sampling = settings.eval.sampling;
                    sampling.seed = request_seed(&settings.eval, &[b"arena", item.as_bytes(), &[game.order as u8]]);
                    let slice = Slice { round: 0, operation: q.kind.name() };
                    let key = CallKey { item: &item, round: game.order, stage: "pairwise" };
                    let spec = CallSpec::new(&session.model, key, Prompt::User(&prompt), sampling)
                        .counted_as(slice)
                        .tagged("pairwise")
                        .priority(i as u64);
                    let outcome = session.caller.call(spec).await?;
                    session.stats.outcome(slice, None);
                    let judged = match outcome {
                        Err(e) => Judged::Failed(e),
                        Ok(reply) => match evol_eval::reply::parse_pair(&reply.text) {
                            Some((x, y)) => Judged::Scores(x, y),
                            None => Judged::Unreadable(reply.text),
                        },
                    };
                    Ok::<_, CallError>((i, judged))
                }
            })
            .buffer_unordered(session.connected.admitted.max(1));
        drain(done, &session.caller, |(i, judged)| results.lock().unwrap()[i] = Some(judged))
    };
    let ended = session.run(work, (n, "games"), &mut shutdown, observer).await;
    let results = results.into_inner().unwrap();

    // The battle log and the games without a verdict, whatever happened.
    let battles_path = session.out.path(BATTLES);
    let unjudged_path = session.out.path(UNJUDGED);
    let cannot = |p: &Path| format!("cannot write `{}`", p.display());
    let mut battle_log =
        evol_io::RowWriter::create(&battles_path, evol_io::Layout::Jsonl).with_context(|| cannot(&battles_path))?;
    let mut unjudged_log =
        evol_io::RowWriter::create(&unjudged_path, evol_io::Layout::Jsonl).with_context(|| cannot(&unjudged_path))?;
    let mut battles = Vec::new();
    let mut styles = Vec::new();
    let mut learned = Vec::new();
    let (mut unreadable, mut failed) = (0usize, 0usize);
    for (game, result) in games.iter().zip(&results) {
        let Some(result) = result else { continue };
        let q = &questions[game.question];
        let (first, second) = game.shown();
        match result {
            Judged::Scores(x, y) => {
                let winner = Winner::of_scores(*x, *y);
                let style = |m: usize| {
                    let text: String = q.answers[m].as_deref().expect("answered").join("\n");
                    evol_eval::style::features(&text)
                };
                let (sa, sb) = (style(first), style(second));
                let row = BattleRow {
                    id: Some(Value::String(q.id.clone())),
                    model_a: names[first].clone(),
                    model_b: names[second].clone(),
                    winner: match winner {
                        Winner::ModelA => "model_a",
                        Winner::ModelB => "model_b",
                        Winner::Tie => "tie",
                    }
                    .to_string(),
                    score_a: Some(*x),
                    score_b: Some(*y),
                    judge: Some(judge.clone()),
                    game: Some(game.order),
                    length_a: Some(sa[0]),
                    length_b: Some(sb[0]),
                    markdown_a: Some(sa[1]),
                    markdown_b: Some(sb[1]),
                };
                battle_log.write_json(&row).with_context(|| cannot(&battles_path))?;
                battles.push(Battle { a: first, b: second, winner });
                styles.push((sa, sb));
                learned.push(evol_eval::learn::Game { question: &q.id, a: first, b: second, score_a: *x, score_b: *y });
            }
            Judged::Unreadable(reply) | Judged::Failed(reply) => {
                let is_failed = matches!(result, Judged::Failed(_));
                if is_failed {
                    failed += 1;
                } else {
                    unreadable += 1;
                }
                let row = UnjudgedRow {
                    id: &q.id,
                    model_a: &names[first],
                    model_b: &names[second],
                    game: game.order,
                    judge: &judge,
                    unreadable: (!is_failed).then_some(reply.as_str()),
                    error: is_failed.then_some(reply.as_str()),
                };
                unjudged_log.write_json(&row).with_context(|| cannot(&unjudged_path))?;
            }
        }
    }
    battle_log.finish().with_context(|| cannot(&battles_path))?;
    unjudged_log.finish().with_context(|| cannot(&unjudged_path))?;
    let done = results.iter().filter(|r| r.is_some()).count();
    let state = ended.state(done == games.len());
    session.journal.set_state(state)?;

    let counts = Counts { games: games.len(), judged: battles.len(), unreadable, failed };
    let fitted = fit(
        settings,
        &names,
        &battles,
        Some(&styles),
        anchor,
        Some(&judge),
        &counts,
        Some(&languages),
        &session.out,
        observer,
    );
    let lessons = match (target, &settings.learn) {
        (Some(t), Some((_, dir))) => Some(write_lessons(dir, t, &names, &questions, &learned, settings.min_margin)?),
        _ => None,
    };
    let snapshot = session.stats.snapshot();
    let report = BattleReport {
        evol_version: env!("CARGO_PKG_VERSION").to_string(),
        state,
        models: names.clone(),
        questions: questions.len(),
        games: counts,
        fit_seconds: fitted.as_ref().ok().map(|f| f.seconds),
        rating_error: fitted.as_ref().err().map(|e| format!("{e:#}")),
        lessons: lessons.clone(),
        languages,
        calls_made: CallSummary::of(&snapshot, &session.journal)?,
        judge: judge.clone(),
        sampling: settings.eval.sampling,
        prompts: prompts::digest(),
    };
    session.out.write_json(STATS, &report)?;
    let fitted = fitted?;
    observer.say(fitted.terminal.trim_end());
    if let (Some(l), Some((_, dir))) = (&lessons, &settings.learn) {
        observer.say(&format!(
            "evol: Arena Learning for `{}`: {} SFT records, {} DPO pairs ({} battles undecided) -> `{}`",
            evol_text::shown_inline(&names[target.expect("a target")]),
            l.sft,
            l.dpo,
            l.undecided,
            dir.display()
        ));
    }
    observer.say(&format!(
        "evol: {} games judged in {}; wrote {}, {}, {}",
        counts.judged,
        human(std::time::Duration::from_secs_f64(snapshot.wall_seconds)),
        session.out.path(RATINGS).display(),
        session.out.path(LEADERBOARD).display(),
        battles_path.display()
    ));
    let what = format!(
        "no game of {} has a readable verdict ({} unreadable, {} failed)",
        counts.games, counts.unreadable, counts.failed
    );
    ended
        .exit_producing(session.stall_after(), session.out_name(), counts.judged > 0, &what)
        .map(|()| ArenaReport::Battled(Box::new(report)))
}

/// The questions' languages and each model's answers in another one (the
/// models that wrote any), when there is something to tell.
fn language_line(languages: &LanguageCounts) -> Option<String> {
    languages.line(languages.wrong.keys().map(String::as_str), |model| format!("`{}`", cell(model)))
}

/// Games by what became of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counts {
    pub games: usize,
    pub judged: usize,
    /// Verdicts that could not be read.
    pub unreadable: usize,
    pub failed: usize,
}

/// What an arena job did: its report, and what `stats.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum ArenaReport {
    /// Battles judged from the models' answers.
    Battled(Box<BattleReport>),
    /// Ratings fitted again from battle logs (`--battles`).
    Refitted(RefitReport),
}

/// An arena of answers: the games judged and the ratings fitted.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct BattleReport {
    pub evol_version: String,
    pub state: RunState,
    pub models: Vec<String>,
    pub questions: usize,
    pub games: Counts,
    pub fit_seconds: Option<f64>,
    /// Why no ratings could be fitted, if none could.
    pub rating_error: Option<String>,
    /// What Arena Learning wrote (`--learn`).
    pub lessons: Option<LessonCounts>,
    /// The questions by language, and by model the answers written in
    /// another language than the question's.
    #[serde(default)]
    pub languages: LanguageCounts,
    /// The calls: replayed, made by this attempt, and held by the journal.
    #[serde(flatten)]
    pub calls_made: CallSummary,
    pub judge: String,
    pub sampling: evol_llm::Sampling,
    /// A digest of the judge prompts.
    pub prompts: String,
}

/// Ratings fitted again from battle logs.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RefitReport {
    pub evol_version: String,
    pub state: RunState,
    pub battle_logs: Vec<std::path::PathBuf>,
    pub battles: usize,
    pub models: Vec<String>,
    /// Battles by the judge that decided them.
    pub judges: BTreeMap<String, u64>,
    pub read_seconds: f64,
    pub fit_seconds: f64,
}

/// A fit written out: its terminal table and how long it took.
struct Fitted {
    terminal: String,
    seconds: f64,
}

/// Fits the ratings (and the style-controlled ones), writes
/// `ratings.json` and `leaderboard.md`.
#[allow(clippy::too_many_arguments)]
fn fit(
    settings: &ArenaSettings,
    names: &[String],
    battles: &[Battle],
    styles: Option<&[Style]>,
    anchor: Option<(usize, f64)>,
    judge: Option<&str>,
    counts: &Counts,
    languages: Option<&LanguageCounts>,
    out: &OutputDir,
    observer: &dyn Observer,
) -> anyhow::Result<Fitted> {
    let rating_settings = RatingSettings { rounds: settings.bootstrap, seed: settings.eval.seed, anchor };
    let named_error = |e: rating::RatingError| {
        match e {
        rating::RatingError::Disconnected { groups } => anyhow!(
            "the battles do not connect every model, so no rating compares them: {} never met (directly or through other models); add battles between them",
            groups
                .iter()
                .map(|g| format!("[{}]", g.iter().map(|&m| format!("`{}`", names[m])).collect::<Vec<_>>().join(", ")))
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        other => anyhow!("{other}"),
    }
    };
    if let Ok(pairs) = rating::PairCounts::count(names.len(), battles) {
        let thin = pairs.thin_pairs();
        if let Some(&(a, b, games)) = thin.first() {
            observer.say(&format!(
                "warning: {} pair{} of models met fewer than {} times (`{}` and `{}`: {games} games); {} intervals are wide, whatever the record",
                thin.len(),
                if thin.len() == 1 { "" } else { "s" },
                rating::FEW_GAMES,
                names[a],
                names[b],
                if thin.len() == 1 { "its" } else { "their" }
            ));
        }
    }
    let started = Instant::now();
    let plain = rating::rate(names.len(), battles, &rating_settings).map_err(named_error)?;
    let styled = match (settings.style_control, styles) {
        (true, Some(styles)) => {
            Some(rating::rate_styled(names.len(), battles, styles, &rating_settings).map_err(named_error)?)
        }
        (true, None) => bail!("--style-control needs the answers' lengths and markdown densities in the battle logs"),
        _ => None,
    };
    let seconds = started.elapsed().as_secs_f64();
    let board = |r: &Ratings| -> Vec<Standing> {
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|&x, &y| r.models[y].rating.total_cmp(&r.models[x].rating).then(x.cmp(&y)));
        order
            .into_iter()
            .map(|m| {
                let Rated { rating, ci_low, ci_high, median, rank, battles, wins, ties, losses } = r.models[m].clone();
                let model = names[m].clone();
                Standing { battles, ci_high, ci_low, losses, median, model, rank, rating, ties, wins }
            })
            .collect()
    };
    let file = RatingsFile {
        anchor: anchor.map(|(m, rating)| Anchor { model: names[m].clone(), rating }),
        games: *counts,
        judge: judge.map(str::to_string),
        leaderboard: board(&plain),
        level: plain.level,
        mean_rating: anchor.is_none().then_some(rating::MEAN_RATING),
        prior: rating::PRIOR,
        rounds: plain.rounds,
        seed: settings.eval.seed,
        style_controlled: styled.as_ref().map(|s| {
            let c = s.coefficients.clone().unwrap_or_default();
            StyleControlled {
                coefficients: StyleCoefficients { length: c.first().copied(), markdown_density: c.get(1).copied() },
                leaderboard: board(s),
            }
        }),
    };
    out.write_json(RATINGS, &file)?;
    let mut md = String::from("# Leaderboard\n\n");
    let _ = writeln!(
        md,
        "Bradley-Terry ratings on the Elo scale ({}), {:.0}% intervals from {} bootstrap rounds. {} games judged{}.\n",
        match anchor {
            Some((m, r)) => format!("`{}` anchored at {r}", cell(&names[m])),
            None => "mean 1000".to_string(),
        },
        plain.level * 100.0,
        plain.rounds,
        counts.judged,
        judge.map_or(String::new(), |j| format!(" by `{}`", cell(j)))
    );
    let mut terminal = String::new();
    for (title, r) in [("Ratings", Some(&plain)), ("Style-controlled ratings", styled.as_ref())] {
        let Some(r) = r else { continue };
        let rows = board(r);
        let _ = writeln!(md, "## {title}\n");
        if let Some(c) = &r.coefficients {
            let _ = writeln!(
                md,
                "Style coefficients (Elo points per standard deviation): length {:.1}, markdown density {:.1}.\n",
                c[0], c[1]
            );
        }
        md.push_str("| rank | model | rating | 95% interval | battles | wins | ties | losses |\n");
        md.push_str("|---:|---|---:|---|---:|---:|---:|---:|\n");
        let _ = writeln!(terminal, "{title} ({:.0}% intervals, {} rounds):", r.level * 100.0, r.rounds);
        let _ = writeln!(
            terminal,
            "{:>4}  {:<32} {:>8}  {:>19}  {:>7} {:>6} {:>6} {:>6}",
            "rank", "model", "rating", "95% interval", "battles", "wins", "ties", "losses"
        );
        for row in &rows {
            // No bootstrap rounds: no interval, shown as such.
            let interval = |open: &str, sep: &str, close: &str| match (row.ci_low, row.ci_high) {
                (Some(low), Some(high)) => format!("{open}{low:.1}{sep}{high:.1}{close}"),
                _ => "-".to_string(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {} | {} | {} | {} | {} |",
                row.rank,
                cell(&row.model),
                row.rating,
                interval("", " – ", ""),
                row.battles,
                row.wins,
                row.ties,
                row.losses
            );
            let shown = evol_text::cell_of_width(&row.model, 32);
            let _ = writeln!(
                terminal,
                "{:>4}  {shown} {:>8.1}  {:>19}  {:>7} {:>6} {:>6} {:>6}",
                row.rank,
                row.rating,
                interval("[", ", ", "]"),
                row.battles,
                row.wins,
                row.ties,
                row.losses
            );
        }
        if let Some(c) = &r.coefficients {
            let _ = writeln!(terminal, "style coefficients: length {:.1}, markdown density {:.1}", c[0], c[1]);
        }
        md.push('\n');
    }
    if let Some(line) = languages.and_then(language_line) {
        let _ = writeln!(md, "{line}");
        let _ = writeln!(terminal, "{line}");
    }
    out.write_text(LEADERBOARD, &md)?;
    Ok(Fitted { terminal, seconds })
}

/// `ratings.json`: the fit's leaderboard (and the style-controlled one),
/// how it was fitted, and the games it was fitted on. (Fields in the
/// order the file has always listed them.)
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RatingsFile {
    /// The model the ratings are anchored to, if any.
    pub anchor: Option<Anchor>,
    pub games: Counts,
    /// The judge (none for battle logs of several judges).
    pub judge: Option<String>,
    /// Highest rating first.
    pub leaderboard: Vec<Standing>,
    /// The intervals' level (0.95).
    pub level: f64,
    /// The mean rating, when not anchored.
    pub mean_rating: Option<f64>,
    /// The weak prior that keeps a model that never wins finite.
    pub prior: f64,
    /// Bootstrap rounds.
    pub rounds: usize,
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style_controlled: Option<StyleControlled>,
}

/// `--anchor MODEL=RATING`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Anchor {
    pub model: String,
    pub rating: f64,
}

/// One model's line of a leaderboard.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Standing {
    pub battles: u64,
    pub ci_high: Option<f64>,
    pub ci_low: Option<f64>,
    pub losses: u64,
    pub median: Option<f64>,
    pub model: String,
    pub rank: usize,
    pub rating: f64,
    pub ties: u64,
    pub wins: u64,
}

/// The style-controlled fit (`--style-control`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StyleControlled {
    pub coefficients: StyleCoefficients,
    pub leaderboard: Vec<Standing>,
}

/// Elo points per standard deviation of each style covariate.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StyleCoefficients {
    pub length: Option<f64>,
    pub markdown_density: Option<f64>,
}

/// What Arena Learning wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LessonCounts {
    pub sft: usize,
    pub dpo: usize,
    /// Battles with no margin wide enough to learn from.
    pub undecided: usize,
}

/// Writes DIR/sft.jsonl and DIR/dpo.jsonl for the target.
fn write_lessons(
    dir: &Path,
    target: usize,
    names: &[String],
    questions: &[Question],
    games: &[evol_eval::learn::Game],
    min_margin: f64,
) -> anyhow::Result<LessonCounts> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let lessons = evol_eval::learn::lessons(target, games, min_margin);
    let by_id: BTreeMap<&str, &Question> = questions.iter().map(|q| (q.id.as_str(), q)).collect();
    let answers = |q: &Question, m: usize| q.answers[m].clone().expect("a model that battled answered");
    let conversation = |q: &Question, m: usize| {
        let exchanges = q.turns.iter().cloned().zip(answers(q, m).into_iter().map(Some)).collect();
        evol_io::Dialogue { system: None, exchanges }.turns(evol_io::ChatLayout::Messages)
    };
    let path = dir.join("sft.jsonl");
    let mut sft = evol_io::RowWriter::create(&path, evol_io::Layout::Jsonl)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    for d in &lessons.sft {
        let q = by_id[d.question.as_str()];
        let mut row = serde_json::Map::from_iter([("id".to_string(), json!(q.id))]);
        match q.conversation {
            false => row.extend(evol_io::layout::alpaca(&q.turns[0], &answers(q, d.winner)[0])),
            true => {
                row.insert(evol_io::ChatLayout::Messages.field().into(), conversation(q, d.winner));
            }
        }
        row.extend([
            ("model".to_string(), json!(names[d.winner])),
            ("target".to_string(), json!(names[target])),
            ("margin".to_string(), json!(d.margin)),
        ]);
        sft.write_json(&row).with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    sft.finish().with_context(|| format!("cannot write `{}`", path.display()))?;
    let path = dir.join("dpo.jsonl");
    let mut dpo = evol_io::RowWriter::create(&path, evol_io::Layout::Jsonl)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    for d in &lessons.dpo {
        let q = by_id[d.question.as_str()];
        // One pair per question and opponent: the id names both, so it is
        // unique when the target met several opponents on a question.
        let opponent = if d.winner == target { d.loser } else { d.winner };
        let id = format!("{}/{}", q.id, names[opponent]);
        let [prompt, chosen, rejected] = evol_io::layout::PREFERENCE;
        let mut row = serde_json::Map::from_iter([("id".to_string(), json!(id)), ("question_id".into(), json!(q.id))]);
        match q.conversation {
            false => row.extend([
                (prompt.to_string(), json!(q.turns[0])),
                (chosen.to_string(), json!(answers(q, d.winner)[0])),
                (rejected.to_string(), json!(answers(q, d.loser)[0])),
            ]),
            // TRL's conversational form: the whole conversations, the
            // prompt implicit in them.
            true => row.extend([
                (chosen.to_string(), conversation(q, d.winner)),
                (rejected.to_string(), conversation(q, d.loser)),
            ]),
        }
        row.extend([
            ("chosen_model".to_string(), json!(names[d.winner])),
            ("rejected_model".to_string(), json!(names[d.loser])),
            ("margin".to_string(), json!(d.margin)),
        ]);
        dpo.write_json(&row).with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    dpo.finish().with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(LessonCounts { sft: lessons.sft.len(), dpo: lessons.dpo.len(), undecided: lessons.undecided })
}

/// `evol arena --battles FILE...`: ratings from battle logs alone.
fn refit(settings: &ArenaSettings, files: &[PathBuf], observer: &dyn Observer) -> anyhow::Result<ArenaReport> {
    let started = Instant::now();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut rows: Vec<(usize, usize, Winner, Option<Style>)> = Vec::new();
    let mut judges: BTreeMap<String, u64> = BTreeMap::new();
    for path in files {
        let file = std::fs::File::open(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("cannot read `{}`", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let place = || format!("`{}` line {}", path.display(), n + 1);
            let row: BattleRow = serde_json::from_str(&line).with_context(|| format!("{}: not a battle", place()))?;
            let winner = row.winner().ok_or_else(|| {
                anyhow!(
                    "{}: `winner` is `{}`; it must be model_a, model_b or tie",
                    place(),
                    evol_text::shown_inline(&row.winner)
                )
            })?;
            let style = row.style();
            if settings.style_control && style.is_none() {
                bail!("{}: --style-control needs length_a, length_b, markdown_a and markdown_b", place());
            }
            if let Some(j) = &row.judge {
                *judges.entry(j.clone()).or_default() += 1;
            }
            let mut seen = |m: String| {
                let next = index.len();
                *index.entry(m).or_insert(next)
            };
            let (a, b) = (seen(row.model_a), seen(row.model_b));
            rows.push((a, b, winner, style));
        }
    }
    if rows.is_empty() {
        bail!("the battle logs hold no battle");
    }
    // Models by name, so the result does not depend on the files' order.
    let names: Vec<String> = index.keys().cloned().collect();
    let position: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut sorted = vec![0; names.len()];
    for (name, &seen) in &index {
        sorted[seen] = position[name.as_str()];
    }
    let battles: Vec<Battle> =
        rows.iter().map(|&(a, b, winner, _)| Battle { a: sorted[a], b: sorted[b], winner }).collect();
    let styles: Option<Vec<Style>> =
        settings.style_control.then(|| rows.iter().map(|r| r.3.expect("checked")).collect());
    let anchor = match &settings.anchor {
        Some((m, r)) => Some((
            *position
                .get(m.as_str())
                .ok_or_else(|| crate::UsageError(format!("--anchor: no model `{m}` in the battle logs")))?,
            *r,
        )),
        None => None,
    };
    let read_seconds = started.elapsed().as_secs_f64();
    let out = OutputDir::prepare(&settings.output, settings.fresh, JobKind::Arena)?;
    let journal = out.journal()?;
    let judge = match judges.len() {
        1 => judges.keys().next().cloned(),
        _ => None,
    };
    let counts = Counts { games: battles.len(), judged: battles.len(), unreadable: 0, failed: 0 };
    let fitted =
        fit(settings, &names, &battles, styles.as_deref(), anchor, judge.as_deref(), &counts, None, &out, observer)?;
    journal.set_state(RunState::Completed)?;
    let report = RefitReport {
        evol_version: env!("CARGO_PKG_VERSION").to_string(),
        state: RunState::Completed,
        battle_logs: files.to_vec(),
        battles: battles.len(),
        models: names.clone(),
        judges: judges.clone(),
        read_seconds,
        fit_seconds: fitted.seconds,
    };
    out.write_json(STATS, &report)?;
    observer.say(fitted.terminal.trim_end());
    observer.say(&format!(
        "evol: {} battles of {} models read in {:.2}s, rated in {:.2}s; wrote {}, {}",
        battles.len(),
        names.len(),
        read_seconds,
        fitted.seconds,
        out.path(RATINGS).display(),
        out.path(LEADERBOARD).display()
    ));
    Ok(ArenaReport::Refitted(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Questions answered by `models` models (all but the ones in `silent`
    /// for the question of that index).
    fn questions(n: usize, models: usize, silent: &[(usize, usize)]) -> Vec<Question> {
        (0..n)
            .map(|q| Question {
                id: format!("q{q}"),
                turns: vec!["?".into()],
                conversation: false,
                kind: JudgeKind::for_skill(None),
                answers: (0..models).map(|m| (!silent.contains(&(q, m))).then(|| vec!["a".to_string()])).collect(),
            })
            .collect()
    }

    fn pairs(games: &[GameSpec]) -> Vec<(usize, usize, usize)> {
        games.iter().filter(|g| g.order == 0).map(|g| (g.question, g.a, g.b)).collect()
    }

    #[test]
    fn every_pair_of_the_models_that_answered_battles_in_both_orders() {
        let games = plan(&questions(2, 3, &[(1, 2)]), None, 0);
        assert_eq!(pairs(&games), [(0, 0, 1), (0, 0, 2), (0, 1, 2), (1, 0, 1)], "a model that did not answer sits out");
        for pair in games.chunks(2) {
            assert_eq!((pair[0].order, pair[1].order), (0, 1), "each pair twice, each model first once");
            assert_eq!((pair[0].a, pair[0].b), (pair[1].a, pair[1].b));
        }
    }

    #[test]
    fn sampled_pairs_are_seeded_per_question_and_cover_every_model() {
        let qs = questions(40, 4, &[]);
        let drawn = pairs(&plan(&qs, Some(2), 1));
        assert_eq!(drawn.len(), 80, "two pairs a question");
        assert_eq!(drawn, pairs(&plan(&qs, Some(2), 1)), "the same seed draws the same pairs");
        assert_ne!(drawn, pairs(&plan(&qs, Some(2), 2)), "another seed, other pairs");
        let mut seen = [false; 4];
        for &(_, a, b) in &drawn {
            (seen[a], seen[b]) = (true, true);
        }
        assert_eq!(seen, [true; 4], "every model battles");
        // The draw of a question depends on its id, not on the others.
        let one = pairs(&plan(&qs[3..4], Some(2), 1));
        let again: Vec<(usize, usize)> = drawn.iter().filter(|p| p.0 == 3).map(|p| (p.1, p.2)).collect();
        assert_eq!(one.iter().map(|p| (p.1, p.2)).collect::<Vec<_>>(), again);
        assert_eq!(pairs(&plan(&qs, Some(10), 1)).len(), 40 * 6, "more than there are: every pair");
    }
}
