//! `evol judge TESTSET --candidate A --reference B -o OUT`: a candidate
//! model against a reference, judged by a judge model.
//!
//! One call per question and order, keyed by (question id, order,
//! `pairwise`): order 0 shows the candidate first, order 1 the reference
//! first. Replies are read by `evol_eval::reply`; the figures are
//! `evol_eval::report`'s.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use anyhow::{bail, Context};
use evol_core::stats::Slice;
use evol_core::{CallError, CallKey, CallSpec, Prompt, Role};
use evol_eval::language::LanguageCounts;
use evol_eval::prompts::{self, JudgeKind};
use evol_eval::report::{self, Game, Item, Report, Summary};
use evol_store::output::{JUDGMENTS, REPORT_JSON, REPORT_MD, STATS};
use evol_store::{JobKind, RunState};
use futures::StreamExt;
use serde::Serialize;

use super::testset::{cell, read_answers, read_testset, request_seed, same_question, AnswerFile, Asked, Question};
use crate::observe::{human, Observer};
use crate::results::CallSummary;
use crate::session::{drain, Session};
use crate::settings::JudgeSettings;
use crate::shutdown::Shutdown;

/// A question both sides answered, to judge.
struct Job<'a> {
    question: &'a Question,
    kind: JudgeKind,
    candidate: &'a [String],
    reference: &'a [String],
    /// The orders judged: `true` shows the candidate first.
    orders: Vec<bool>,
    /// The question's language, when it can be told (the judge is told it).
    language: Option<&'static str>,
}

/// What one game gave.
#[derive(Debug, Clone, Serialize)]
struct GameRecord {
    candidate_first: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_score: Option<f64>,
    /// The judge's reply (kept whether or not it could be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<String>,
    /// The reply held no two scores from 1 to 10 on its first line.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unreadable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl GameRecord {
    fn read(candidate_first: bool, outcome: Result<evol_llm::ChatResponse, String>) -> GameRecord {
        let empty = GameRecord {
            candidate_first,
            candidate_score: None,
            reference_score: None,
            reply: None,
            unreadable: false,
            error: None,
        };
        match outcome {
            Err(error) => GameRecord { error: Some(error), ..empty },
            Ok(reply) => match evol_eval::reply::parse_pair(&reply.text) {
                Some((first, second)) => {
                    let (c, r) = if candidate_first { (first, second) } else { (second, first) };
                    GameRecord { candidate_score: Some(c), reference_score: Some(r), reply: Some(reply.text), ..empty }
                }
                None => GameRecord { unreadable: true, reply: Some(reply.text), ..empty },
            },
        }
    }

    fn game(&self) -> Option<Game> {
        Some(Game { candidate: self.candidate_score?, reference: self.reference_score? })
    }
}

/// Why a question was not judged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Missing {
    /// No answer of the candidate's.
    pub candidate: usize,
    pub reference: usize,
    /// An answer whose call failed (`error` in the answers file).
    pub failed_answers: usize,
}

/// Judges the candidate's answers against the reference's, question by
/// question (in both orders unless told otherwise), and writes the
/// judgments, `report.json`, `report.md` and `stats.json`.
pub async fn judge(
    settings: JudgeSettings,
    observer: &dyn Observer,
    mut shutdown: Shutdown,
) -> anyhow::Result<JudgeReport> {
    let questions = read_testset(&settings.testset, settings.format, None)?;
    let candidate = read_answers(&settings.candidate)?;
    let reference = read_answers(&settings.reference)?;
    let name = |file: &AnswerFile, default: &str| file.model.clone().unwrap_or_else(|| default.to_string());
    let (candidate_name, reference_name) = (name(&candidate, "candidate"), name(&reference, "reference"));
    let mut missing = Missing::default();
    let mut jobs = Vec::new();
    for (position, q) in questions.iter().enumerate() {
        let mut sides = Vec::new();
        for (file, count) in [(&candidate, &mut missing.candidate), (&reference, &mut missing.reference)] {
            match file.rows.get(&q.id) {
                None => *count += 1,
                Some(a) => {
                    if let Some(turns) = &a.turns {
                        if !same_question(turns, &q.turns) {
                            bail!(
                                "`{}`: the answer to `{}` answers another question than `{}` asks (is it the same test set?)",
                                file.path.display(),
                                q.id,
                                settings.testset.display()
                            );
                        }
                    }
                    sides.push(a);
                }
            }
        }
        let [c, r] = sides[..] else { continue };
        if c.error.is_some()
            || r.error.is_some()
            || c.answers.len() != q.turns.len()
            || r.answers.len() != q.turns.len()
        {
            missing.failed_answers += 1;
            continue;
        }
        let orders = orders(settings.both_orders, &q.id, position);
        jobs.push(Job {
            question: q,
            kind: JudgeKind::for_skill(q.skill.as_deref()),
            candidate: &c.answers,
            reference: &r.answers,
            orders,
            language: evol_eval::language::of_question(&q.turns),
        });
    }
    if jobs.is_empty() {
        bail!(
            "no question of `{}` has answers from both `{}` and `{}`",
            settings.testset.display(),
            candidate.path.display(),
            reference.path.display()
        );
    }
    // The calls, by job and order; each prompt is rendered only when its
    // call is about to be made.
    let calls: Vec<(usize, bool)> =
        jobs.iter().enumerate().flat_map(|(j, job)| job.orders.iter().map(move |&first| (j, first))).collect();

    let eval = &settings.eval;
    let n = calls.len() as u64;
    let session = Session::open(
        (&settings.output, settings.fresh, JobKind::Judge),
        &eval.model,
        &eval.execution,
        Role::Compare,
        n,
        observer,
    )
    .await?;
    let asked = Asked::new(session.model.name(), eval, serde_json::json!({ "single_order": !settings.both_orders }));
    session.begin("judge_identity", &asked, "judgments")?;
    let judge_name = session.model.name().to_string();
    observer.say(&format!(
                "evol: judging `{candidate_name}` against `{reference_name}` on {} questions ({} calls, {}) with `{judge_name}` -> `{}`",
                jobs.len(),
                calls.len(),
                if settings.both_orders { "both orders" } else { "one order each" },
                session.out.root().display()
            ));
    let games: Mutex<Vec<Vec<Option<GameRecord>>>> =
        Mutex::new(jobs.iter().map(|j| vec![None; j.orders.len()]).collect());
    let work = {
        let done = futures::stream::iter(calls.iter().enumerate())
            .map(|(i, (j, candidate_first))| {
                let (session, settings, jobs) = (&session, &settings, &jobs);
                async move {
                    let job = &jobs[*j];
                    let (first, second) =
                        if *candidate_first { (job.candidate, job.reference) } else { (job.reference, job.candidate) };
                    let prompt = prompts::render(job.kind, &job.question.turns, first, second, job.language);
                    let id = &job.question.id;
                    let order = u32::from(!candidate_first);
                    let mut sampling = settings.eval.sampling;
                    sampling.seed = request_seed(&settings.eval, &[b"judge", id.as_bytes(), &[order as u8]]);
                    let slice = Slice { round: 0, operation: jobs[*j].kind.name() };
                    let key = CallKey { item: id, round: order, stage: "pairwise" };
                    let spec = CallSpec::new(&session.model, key, Prompt::User(&prompt), sampling)
                        .counted_as(slice)
                        .tagged("pairwise")
                        .priority(i as u64);
                    let outcome = session.caller.call(spec).await?;
                    session.stats.outcome(slice, None);
                    Ok::<_, CallError>((*j, *candidate_first, GameRecord::read(*candidate_first, outcome)))
                }
            })
            .buffer_unordered(session.connected.admitted.max(1));
        drain(done, &session.caller, |(j, candidate_first, record)| {
            let slot = jobs[j].orders.iter().position(|&o| o == candidate_first).expect("an order judged");
            games.lock().unwrap()[j][slot] = Some(record);
        })
    };
    let ended = session.run(work, (n, "calls"), &mut shutdown, observer).await;
    let games = games.into_inner().unwrap();

    // Whatever happened, what was judged is written out.
    let path = session.out.path(JUDGMENTS);
    let mut writer = evol_io::RowWriter::create(&path, evol_io::Layout::Jsonl)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    let mut items = Vec::new();
    let mut counts = GameCounts::default();
    let mut languages = LanguageCounts::default();
    for (job, records) in jobs.iter().zip(&games) {
        let done: Vec<&GameRecord> = records.iter().flatten().collect();
        if done.is_empty() {
            continue;
        }
        languages.question(job.language);
        let mut wrong_language = BTreeMap::new();
        for (side, answers) in [(CANDIDATE, job.candidate), (REFERENCE, job.reference)] {
            if let Some(found) = evol_eval::language::wrong(job.language, answers) {
                languages.wrong_answer(side, found);
                wrong_language.insert(side, found);
            }
        }
        for r in &done {
            match (r.error.is_some(), r.unreadable) {
                (true, _) => counts.failed += 1,
                (_, true) => counts.unreadable += 1,
                _ => counts.judged += 1,
            }
        }
        let readable: Vec<Game> = done.iter().filter_map(|r| r.game()).collect();
        let length = |answers: &[String]| answers.iter().map(|a| a.chars().count()).sum::<usize>() as f64;
        let item = Item {
            skill: job.question.skill.clone(),
            difficulty: job.question.difficulty,
            games: readable.clone(),
            candidate_length: length(job.candidate),
            reference_length: length(job.reference),
        };
        let row = JudgmentRow {
            id: &job.question.id,
            skill: job.question.skill.as_deref(),
            difficulty: job.question.difficulty,
            judge_prompt: job.kind,
            candidate: &candidate_name,
            reference: &reference_name,
            judge: &judge_name,
            verdict: report::verdict(&readable),
            language: job.language,
            wrong_language,
            games: &done,
        };
        writer.write_json(&row).with_context(|| format!("cannot write `{}`", path.display()))?;
        items.push(item);
    }
    writer.finish().with_context(|| format!("cannot write `{}`", path.display()))?;
    counts.calls = calls.len();
    let report = report::report(&items, settings.bootstrap, settings.eval.seed);
    let file = ReportFile {
        candidate: candidate_name.clone(),
        reference: reference_name.clone(),
        judge: judge_name.clone(),
        both_orders: settings.both_orders,
        questions: questions.len(),
        questions_judged: report.as_ref().map_or(0, |r| r.overall.items),
        not_judged: missing,
        games: counts.clone(),
        languages,
        report,
    };
    session.out.write_json(REPORT_JSON, &file)?;
    session.out.write_text(REPORT_MD, &markdown(&file))?;
    let complete = counts.judged + counts.unreadable + counts.failed == calls.len();
    let state = ended.state(complete);
    session.journal.set_state(state)?;
    let snapshot = session.stats.snapshot();
    let report = JudgeReport {
        evol_version: env!("CARGO_PKG_VERSION").to_string(),
        state,
        games: counts.clone(),
        calls_made: CallSummary::of(&snapshot, &session.journal)?,
        judge: judge_name.clone(),
        sampling: settings.eval.sampling,
        candidate_digest: candidate.digest.clone(),
        reference_digest: reference.digest.clone(),
        prompts: prompts::digest(),
    };
    session.out.write_json(STATS, &report)?;
    observer.say(terminal(&file).trim_end());
    observer.say(&format!(
        "evol: judged in {}; wrote {}, {}, {}",
        human(std::time::Duration::from_secs_f64(snapshot.wall_seconds)),
        session.out.path(REPORT_MD).display(),
        session.out.path(REPORT_JSON).display(),
        path.display()
    ));
    let what = format!(
        "no game of {} has a readable verdict ({} unreadable, {} failed)",
        calls.len(),
        counts.unreadable,
        counts.failed
    );
    ended.exit_producing(session.stall_after(), session.out_name(), counts.judged > 0, &what).map(|()| report)
}

/// Games by what became of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct GameCounts {
    pub calls: usize,
    pub judged: usize,
    /// Replies with no score that could be read.
    pub unreadable: usize,
    pub failed: usize,
}

#[derive(Serialize)]
struct JudgmentRow<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    skill: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    difficulty: Option<f64>,
    judge_prompt: JudgeKind,
    candidate: &'a str,
    reference: &'a str,
    judge: &'a str,
    /// The candidate's result (none: no game could be read).
    verdict: Option<report::Verdict>,
    /// The question's language, when it can be told.
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
    /// The sides that answered in another language, and the language.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    wrong_language: BTreeMap<&'static str, &'static str>,
    games: &'a [&'a GameRecord],
}

/// The sides of a judging job, as its language counts name them.
const CANDIDATE: &str = "candidate";
const REFERENCE: &str = "reference";

/// `report.json`: every figure of a judging job, and what it judged.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ReportFile {
    pub candidate: String,
    pub reference: String,
    pub judge: String,
    pub both_orders: bool,
    pub questions: usize,
    pub questions_judged: usize,
    pub not_judged: Missing,
    pub games: GameCounts,
    /// The judged questions by language, and the answers of each side
    /// (`candidate`, `reference`) written in another language.
    #[serde(default)]
    pub languages: LanguageCounts,
    /// None when no question could be judged.
    pub report: Option<Report>,
}

/// What a judging job did: its report, and what `stats.json` holds (the
/// figures themselves are in `report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct JudgeReport {
    pub evol_version: String,
    pub state: RunState,
    pub games: GameCounts,
    /// The calls: replayed, made by this attempt, and held by the journal.
    #[serde(flatten)]
    pub calls_made: CallSummary,
    pub judge: String,
    pub sampling: evol_llm::Sampling,
    pub candidate_digest: String,
    pub reference_digest: String,
    /// A digest of the judge prompts.
    pub prompts: String,
}

/// The orders a question is judged in (`true`: the candidate shown
/// first): both, or the paper's alternation, the candidate first for odd
/// ids (a non-numeric id: for odd positions, counted from 1, in the test
/// set).
fn orders(both: bool, id: &str, position: usize) -> Vec<bool> {
    match both {
        true => vec![true, false],
        false => vec![id.parse::<i64>().map_or(position.is_multiple_of(2), |n| n % 2 != 0)],
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The rows of the figures: overall, by band, by skill.
fn rows(report: &Report) -> Vec<(String, &Summary)> {
    let mut rows = vec![("overall".to_string(), &report.overall)];
    rows.extend(report.by_band.iter().map(|(band, s)| (format!("difficulty {band}"), s)));
    rows.extend(report.by_skill.iter().map(|(skill, s)| (format!("skill {skill}"), s)));
    rows
}

fn consistency(s: &Summary) -> String {
    s.position_consistency.map_or("-".to_string(), pct)
}

fn terminal(file: &ReportFile) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{}",
        evol_text::shown_inline(&format!(
            "`{}` against `{}`, judged by `{}`: {} of {} questions judged; games: {} read, {} unreadable, {} failed",
            file.candidate,
            file.reference,
            file.judge,
            file.questions_judged,
            file.questions,
            file.games.judged,
            file.games.unreadable,
            file.games.failed
        ))
    );
    if let Some(line) = language_line(&file.languages) {
        let _ = writeln!(t, "{line}");
    }
    let Some(report) = &file.report else {
        t.push_str("no game could be read: no figures\n");
        return t;
    };
    let _ = writeln!(
        t,
        "{:<28} {:>4}  {:>7}  {:>17}  {:>4} {:>4} {:>4}  {:>8}  {:>11}",
        "", "n", "ratio", "95% interval", "win", "tie", "loss", "adj. win", "consistency"
    );
    for (label, s) in rows(report) {
        let label = evol_text::cell_of_width(&label, 28);
        let _ = writeln!(
            t,
            "{label} {:>4}  {:>7}  {:>17}  {:>4} {:>4} {:>4}  {:>8}  {:>11}",
            s.items,
            pct(s.score_ratio),
            format!("[{}, {}]", pct(s.ratio_ci_low), pct(s.ratio_ci_high)),
            s.wins,
            s.ties,
            s.losses,
            pct(s.adjusted_win_rate),
            consistency(s)
        );
    }
    let o = &report.overall;
    let _ = writeln!(
        t,
        "mean answer length: candidate {:.0} characters, reference {:.0} (judges tend to favour longer answers)",
        o.candidate_mean_length, o.reference_mean_length
    );
    t
}

/// The judged questions' languages and the answers each side wrote in
/// another one, when there is something to tell.
fn language_line(languages: &LanguageCounts) -> Option<String> {
    languages.line([CANDIDATE, REFERENCE], |side| side.to_string())
}

fn markdown(file: &ReportFile) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# `{}` against `{}`\n", cell(&file.candidate), cell(&file.reference));
    let _ = writeln!(
        m,
        "Judged by `{}`, {}; {} of {} questions judged. Games: {} read, {} unreadable, {} failed.\n",
        cell(&file.judge),
        if file.both_orders { "both orders" } else { "one order per question" },
        file.questions_judged,
        file.questions,
        file.games.judged,
        file.games.unreadable,
        file.games.failed
    );
    if let Some(line) = language_line(&file.languages) {
        let _ = writeln!(m, "{line}\n");
    }
    let Some(report) = &file.report else {
        m.push_str("No game could be read.\n");
        return m;
    };
    let _ = writeln!(
        m,
        "Score ratio: the sum of the candidate's scores over the sum of the reference's. Intervals: {:.0}%, {} bootstrap rounds over the questions. A verdict that flips with the order counts as a tie.\n",
        report.level * 100.0,
        report.rounds
    );
    m.push_str("| | n | score ratio | 95% interval | win | tie | loss | adjusted win rate | consistency | candidate length | reference length |\n");
    m.push_str("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (label, s) in rows(report) {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} – {} | {} | {} | {} | {} | {} | {:.0} | {:.0} |",
            cell(&label),
            s.items,
            pct(s.score_ratio),
            pct(s.ratio_ci_low),
            pct(s.ratio_ci_high),
            s.wins,
            s.ties,
            s.losses,
            pct(s.adjusted_win_rate),
            consistency(s),
            s.candidate_mean_length,
            s.reference_mean_length
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_order_alternates_by_id_as_the_paper_did() {
        assert_eq!(orders(true, "7", 0), [true, false], "both orders by default");
        let first: Vec<bool> = (1..=4).map(|id| orders(false, &id.to_string(), 99)[0]).collect();
        assert_eq!(first, [true, false, true, false], "the candidate first for odd ids");
        assert_eq!(orders(false, "-3", 0), [true], "a negative odd id is odd");
        // Ids that are not numbers: by position (0 is the first row, an
        // odd position counted from 1).
        let by_position: Vec<bool> = (0..4).map(|p| orders(false, "问题-a", p)[0]).collect();
        assert_eq!(by_position, [true, false, true, false]);
    }
}
